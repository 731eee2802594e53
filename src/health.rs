//! The HTTP endpoints a platform probes: `/healthz` (the process is alive),
//! `/readyz` (rules are loaded and SQS answered within the last minute) and
//! `/metrics` (Prometheus text); and [`probe`], the client side of
//! `trailwatch healthcheck`.
//!
//! Clients are not trusted to behave: each connection holds one of
//! [`MAX_CONNECTIONS`] slots (a connection over the cap is closed as soon as it is
//! accepted), must deliver a request's header within [`HEADER_READ_TIMEOUT`], and
//! is closed after [`KEEP_ALIVE_TIMEOUT`] without a new request or without progress
//! on an answer. Idle connections thus never hold the descriptors the worker needs
//! for S3 and SQS.

use std::future::{Future, IntoFuture};
use std::io;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use axum::Router;
use axum::extract::State;
use axum::http::StatusCode;
use axum::routing::get;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{OwnedSemaphorePermit, Semaphore, watch};
use tokio::time::Sleep;

use crate::metrics::Metrics;

/// How recent the last successful SQS poll must be for `/readyz`.
pub const READY_WITHIN: Duration = Duration::from_secs(60);

/// Connections served at once; one more is closed as soon as it is accepted.
pub const MAX_CONNECTIONS: usize = 64;

/// How long a client has to send a request's header: from its connection, or from
/// the first byte of a request on a kept-alive connection. Probes on loopback take
/// milliseconds.
pub const HEADER_READ_TIMEOUT: Duration = Duration::from_secs(5);

/// How long a kept-alive connection may wait for its next request, and how long an
/// answer may wait for the client to take it, before the connection is closed.
pub const KEEP_ALIVE_TIMEOUT: Duration = Duration::from_secs(10);

/// Where `trailwatch healthcheck` looks by default: the images' loopback port.
pub const DEFAULT_PROBE_URL: &str = "http://127.0.0.1:8080/healthz";

/// What readiness is judged on, updated by the worker.
#[derive(Debug, Default)]
pub struct Health {
    rules_loaded: AtomicBool,
    sqs: std::sync::Mutex<Polls>,
}

/// SQS receives as readiness sees them.
#[derive(Debug, Default)]
struct Polls {
    last_ok: Option<Instant>,
    /// Since when receives fail (reset by a success), and the latest reason.
    failing: Option<(Instant, String)>,
}

impl Health {
    pub fn set_rules_loaded(&self, v: bool) {
        self.rules_loaded.store(v, Ordering::SeqCst);
    }

    fn polls(&self) -> std::sync::MutexGuard<'_, Polls> {
        self.sqs.lock().unwrap_or_else(|e| e.into_inner())
    }

    pub fn poll_ok(&self) {
        let mut p = self.polls();
        p.last_ok = Some(Instant::now());
        p.failing = None;
    }

    /// A ReceiveMessage failed with `error_text` (the SDK's description, which can
    /// hold the service's message: the caller's role ARN, account ids). Only the
    /// error code or a fixed category taken from it is kept (see [`failure_reason`]).
    pub fn poll_failed(&self, error_text: String) {
        self.poll_failed_reason(&failure_reason(&error_text));
    }

    /// A ReceiveMessage failed for `reason`: a service error code (`AccessDenied`,
    /// `AWS.SimpleQueueService.NonExistentQueue`) or a short category such as
    /// `timeout`. Anything else is shown as `error`: `/readyz` is served without
    /// authentication and never repeats free text.
    pub fn poll_failed_reason(&self, reason: &str) {
        let reason = sanitize_reason(reason);
        let mut p = self.polls();
        let since = p.failing.as_ref().map_or_else(Instant::now, |(t, _)| *t);
        p.failing = Some((since, reason));
    }

    /// `Ok` when ready, otherwise why not (e.g. `sqs: ReceiveMessage failing for 45s
    /// (AccessDenied)`).
    pub fn readiness(&self) -> Result<(), String> {
        if !self.rules_loaded.load(Ordering::SeqCst) {
            return Err("rules not loaded".into());
        }
        let p = self.polls();
        if p.last_ok.is_some_and(|t| t.elapsed() <= READY_WITHIN) {
            return Ok(());
        }
        Err(match (&p.failing, p.last_ok) {
            (Some((since, reason)), _) => format!(
                "sqs: ReceiveMessage failing for {}s ({reason})",
                since.elapsed().as_secs()
            ),
            (None, Some(t)) => format!(
                "sqs: no ReceiveMessage answered in the last {}s (the last {}s ago)",
                READY_WITHIN.as_secs(),
                t.elapsed().as_secs()
            ),
            (None, None) => "sqs: no ReceiveMessage answered yet".into(),
        })
    }
}

/// The categories [`failure_reason`] gives transport failures, and that
/// [`Health::poll_failed_reason`] accepts besides error codes.
const CATEGORIES: &[&str] = &[
    "connection failed",
    "connection refused",
    "too many open files",
    "dns failure",
    "tls failure",
    "timeout",
    "request not built",
    "unreadable response",
    "error",
];

/// An error code: a letter, then letters, digits, `.`, `_` or `-` (no spaces, colons
/// or slashes, so never an ARN, a URL or a sentence), at most 64 characters.
fn is_code(s: &str) -> bool {
    s.len() <= 64
        && s.starts_with(|c: char| c.is_ascii_alphabetic())
        && s.chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-'))
}

fn sanitize_reason(reason: &str) -> String {
    let r = reason.trim();
    let http_status = r
        .strip_prefix("HTTP ")
        .is_some_and(|n| n.len() == 3 && n.bytes().all(|b| b.is_ascii_digit()));
    if is_code(r) || http_status || CATEGORIES.contains(&r) {
        r.to_owned()
    } else {
        "error".to_owned()
    }
}

/// What may be shown of an SDK error description (`crate::aws::error_text`): the
/// service's error code (`AccessDenied: User: arn:aws:sts::...` gives `AccessDenied`),
/// the HTTP status of an answer the SDK could not read, or a fixed category of
/// transport failure. Never the message itself.
pub fn failure_reason(error_text: &str) -> String {
    let text = error_text.trim();
    let head = text.split(':').next().unwrap_or("").trim();
    // "Code: message" or "Code" alone; the SDK's own descriptions have spaces.
    if is_code(head) && (head.len() == text.len() || text[head.len()..].starts_with(':')) {
        return head.to_owned();
    }
    let lower = text.to_ascii_lowercase();
    if let Some(i) = lower.find("(http ") {
        let status = &text[i + 6..];
        if status.len() >= 3 && status.as_bytes()[..3].iter().all(u8::is_ascii_digit) {
            return format!("HTTP {}", &status[..3]);
        }
    }
    let category = if lower.starts_with("request has timed out") || lower.contains("timed out") {
        "timeout"
    } else if lower.starts_with("dispatch failure") {
        if lower.contains("too many open files") {
            "too many open files"
        } else if lower.contains("connection refused") {
            "connection refused"
        } else if lower.contains("dns") || lower.contains("lookup") {
            "dns failure"
        } else if lower.contains("tls") || lower.contains("certificate") {
            "tls failure"
        } else {
            "connection failed"
        }
    } else if lower.starts_with("failed to construct request") {
        "request not built"
    } else if lower.starts_with("response error") {
        "unreadable response"
    } else {
        "error"
    };
    category.to_owned()
}

#[derive(Clone)]
struct AppState {
    health: Arc<Health>,
    metrics: Arc<Metrics>,
}

/// Serves the endpoints on `listener` until `shutdown` turns true.
pub async fn serve(
    listener: TcpListener,
    health: Arc<Health>,
    metrics: Arc<Metrics>,
    shutdown: watch::Receiver<bool>,
) -> io::Result<()> {
    let app = Router::new()
        .route("/healthz", get(|| async { "ok\n" }))
        .route(
            "/readyz",
            get(|State(s): State<AppState>| async move {
                match s.health.readiness() {
                    Ok(()) => (StatusCode::OK, "ready\n".to_owned()),
                    Err(why) => (
                        StatusCode::SERVICE_UNAVAILABLE,
                        format!("not ready: {why}\n"),
                    ),
                }
            }),
        )
        .route(
            "/metrics",
            get(|State(s): State<AppState>| async move {
                (
                    [("content-type", "text/plain; version=0.0.4")],
                    s.metrics.render_prometheus(),
                )
            }),
        )
        .with_state(AppState { health, metrics });
    let listener = Guarded {
        inner: listener,
        slots: Arc::new(Semaphore::new(MAX_CONNECTIONS)),
        warned: None,
    };
    let (mut graceful, mut stop) = (shutdown.clone(), shutdown);
    let server = axum::serve(listener, app)
        .with_graceful_shutdown(async move { crate::shutdown::stopped(&mut graceful).await });
    tokio::select! {
        r = server.into_future() => r,
        // A connection still busy a second after the stop does not hold up the exit.
        _ = async {
            crate::shutdown::stopped(&mut stop).await;
            tokio::time::sleep(Duration::from_secs(1)).await;
        } => Ok(()),
    }
}

/// The listener with the connection cap: every accepted connection holds a slot
/// until it closes.
struct Guarded {
    inner: TcpListener,
    slots: Arc<Semaphore>,
    /// When the cap was last logged (at most once a minute).
    warned: Option<Instant>,
}

impl axum::serve::Listener for Guarded {
    type Io = Bounded;
    type Addr = SocketAddr;

    async fn accept(&mut self) -> (Bounded, SocketAddr) {
        loop {
            let (stream, addr) = match self.inner.accept().await {
                Ok(c) => c,
                Err(e) => {
                    accept_failed(e).await;
                    continue;
                }
            };
            match self.slots.clone().try_acquire_owned() {
                Ok(slot) => return (Bounded::new(stream, slot), addr),
                Err(_) => {
                    // Reset rather than closed: nothing lingers, not even TIME_WAIT.
                    let _ = stream.set_zero_linger();
                    drop(stream);
                    if self
                        .warned
                        .is_none_or(|t| t.elapsed() >= Duration::from_secs(60))
                    {
                        self.warned = Some(Instant::now());
                        tracing::warn!(
                            limit = MAX_CONNECTIONS,
                            "health server: connection limit reached; new connections are closed at once"
                        );
                    }
                }
            }
        }
    }

    fn local_addr(&self) -> io::Result<SocketAddr> {
        self.inner.local_addr()
    }
}

/// Per-connection errors are the client's; others (out of descriptors) pause
/// accepting for a second, as axum's own listener does.
async fn accept_failed(e: io::Error) {
    use io::ErrorKind::{ConnectionAborted, ConnectionRefused, ConnectionReset};
    if matches!(
        e.kind(),
        ConnectionAborted | ConnectionRefused | ConnectionReset
    ) {
        return;
    }
    tracing::error!(error = %e, "health server: accept failed; retrying in 1 s");
    tokio::time::sleep(Duration::from_secs(1)).await;
}

/// A connection with deadlines (hyper's own header-read timeout needs a timer that
/// `axum::serve` does not give it): the request header within
/// [`HEADER_READ_TIMEOUT`] of the connection or of the request's first byte; the
/// next request, or progress on an answer, within [`KEEP_ALIVE_TIMEOUT`] of the
/// last progress. A missed deadline fails the read or write, and the server closes
/// the connection.
struct Bounded {
    stream: TcpStream,
    _slot: OwnedSemaphorePermit,
    deadline: Pin<Box<Sleep>>,
    /// Between requests: the next byte read starts a request's header.
    between: bool,
}

impl Bounded {
    fn new(stream: TcpStream, slot: OwnedSemaphorePermit) -> Bounded {
        Bounded {
            stream,
            _slot: slot,
            deadline: Box::pin(tokio::time::sleep(HEADER_READ_TIMEOUT)),
            between: false,
        }
    }

    fn extend(&mut self, by: Duration) {
        self.deadline
            .as_mut()
            .reset(tokio::time::Instant::now() + by);
    }

    /// `Pending` from the stream: still within the deadline (its timer armed to
    /// wake the task), or the connection's time is up.
    fn pending<T>(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<T>> {
        match self.deadline.as_mut().poll(cx) {
            Poll::Ready(()) => Poll::Ready(Err(timed_out())),
            Poll::Pending => Poll::Pending,
        }
    }

    fn expired(&self) -> bool {
        self.deadline.deadline() <= tokio::time::Instant::now()
    }
}

fn timed_out() -> io::Error {
    io::Error::new(io::ErrorKind::TimedOut, "health client too slow or idle")
}

impl AsyncRead for Bounded {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        // A client dribbling its header a byte at a time is cut off all the same.
        if this.expired() {
            return Poll::Ready(Err(timed_out()));
        }
        let before = buf.filled().len();
        match Pin::new(&mut this.stream).poll_read(cx, buf) {
            Poll::Pending => this.pending(cx),
            Poll::Ready(Ok(())) => {
                if buf.filled().len() > before && this.between {
                    this.between = false;
                    this.extend(HEADER_READ_TIMEOUT);
                }
                Poll::Ready(Ok(()))
            }
            other => other,
        }
    }
}

impl Bounded {
    fn wrote(
        &mut self,
        r: Poll<io::Result<usize>>,
        cx: &mut Context<'_>,
    ) -> Poll<io::Result<usize>> {
        match r {
            Poll::Pending => self.pending(cx),
            Poll::Ready(Ok(n)) => {
                if n > 0 {
                    // An answer going out: the request is in; the next one may come.
                    self.between = true;
                    self.extend(KEEP_ALIVE_TIMEOUT);
                }
                Poll::Ready(Ok(n))
            }
            other => other,
        }
    }
}

impl AsyncWrite for Bounded {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        if this.expired() {
            return Poll::Ready(Err(timed_out()));
        }
        let r = Pin::new(&mut this.stream).poll_write(cx, buf);
        this.wrote(r, cx)
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        if this.expired() {
            return Poll::Ready(Err(timed_out()));
        }
        let r = Pin::new(&mut this.stream).poll_write_vectored(cx, bufs);
        this.wrote(r, cx)
    }

    fn is_write_vectored(&self) -> bool {
        self.stream.is_write_vectored()
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().stream).poll_flush(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().stream).poll_shutdown(cx)
    }
}

/// The URL `trailwatch healthcheck` probes without `--url`: `/healthz` on the port
/// of `listen` (`TRAILWATCH_HEALTH_LISTEN`), on loopback when it names all
/// interfaces; [`DEFAULT_PROBE_URL`] when it is unset, empty or not an address.
pub fn probe_url(listen: Option<&str>) -> String {
    match listen.and_then(|l| l.trim().parse::<SocketAddr>().ok()) {
        Some(mut addr) => {
            if addr.ip().is_unspecified() {
                addr.set_ip(match addr {
                    SocketAddr::V4(_) => std::net::Ipv4Addr::LOCALHOST.into(),
                    SocketAddr::V6(_) => std::net::Ipv6Addr::LOCALHOST.into(),
                });
            }
            format!("http://{addr}/healthz")
        }
        None => DEFAULT_PROBE_URL.to_owned(),
    }
}

/// `trailwatch healthcheck`: GETs `url` (no proxy, no redirects) within `timeout`.
/// `Ok` on a 2xx answer; otherwise a one-line reason (with the start of the body,
/// printable characters only, for a `/readyz` that says why not).
pub async fn probe(url: &str, timeout: Duration) -> Result<(), String> {
    let client = reqwest::Client::builder()
        .no_proxy()
        .redirect(reqwest::redirect::Policy::none())
        .connect_timeout(timeout)
        .timeout(timeout)
        .build()
        .map_err(|e| format!("cannot set up an HTTP client: {e}"))?;
    let fail = |e: reqwest::Error| {
        if e.is_timeout() {
            return format!(
                "{url}: timed out after {}",
                humantime::format_duration(timeout)
            );
        }
        // The innermost cause says most ("Connection refused (os error 111)").
        let mut cause: &dyn std::error::Error = &e;
        while let Some(s) = cause.source() {
            cause = s;
        }
        match e.is_connect() {
            true => format!("{url}: cannot connect: {cause}"),
            false => format!("{url}: {cause}"),
        }
    };
    let mut resp = client.get(url).send().await.map_err(fail)?;
    let status = resp.status();
    if status.is_success() {
        return Ok(());
    }
    let mut body = Vec::new();
    while body.len() < 256 {
        match resp.chunk().await {
            Ok(Some(c)) => body.extend_from_slice(&c),
            _ => break,
        }
    }
    let text: String = String::from_utf8_lossy(&body[..body.len().min(256)])
        .chars()
        .map(|c| if c.is_control() { ' ' } else { c })
        .collect();
    let text = text.split_whitespace().collect::<Vec<_>>().join(" ");
    Err(match text.is_empty() {
        true => format!("{url} answered {status}"),
        false => format!("{url} answered {status}: {text}"),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    const DENIED: &str = "AccessDenied: User: arn:aws:sts::123456789012:assumed-role/trailwatch-task/0f1e is not authorized to perform: sqs:receivemessage on resource: arn:aws:sqs:eu-west-1:123456789012:trailwatch";

    fn ready(h: &Health) -> Result<(), String> {
        h.set_rules_loaded(true);
        h.readiness()
    }

    /// The service's text (role ARN, account id) never reaches `/readyz`: only what
    /// failed, for how long, and the error code.
    #[test]
    fn readiness_names_the_code_not_the_message() {
        let h = Health::default();
        h.poll_failed(DENIED.to_owned());
        let why = ready(&h).unwrap_err();
        assert_eq!(why, "sqs: ReceiveMessage failing for 0s (AccessDenied)");
        for secret in ["arn:", "123456789012", "assumed-role", "authorized"] {
            assert!(!why.contains(secret), "{why}");
        }
        // A success clears it; a later failure counts from then.
        h.poll_ok();
        assert_eq!(ready(&h), Ok(()));
    }

    #[test]
    fn the_failure_lasts_from_the_first_one() {
        let h = Health::default();
        h.set_rules_loaded(true);
        h.polls().failing = Some((Instant::now() - Duration::from_secs(45), "timeout".into()));
        h.poll_failed(DENIED.to_owned());
        assert_eq!(
            h.readiness().unwrap_err(),
            "sqs: ReceiveMessage failing for 45s (AccessDenied)"
        );
        assert_eq!(
            Health::default().readiness().unwrap_err(),
            "rules not loaded"
        );
        assert_eq!(
            ready(&Health::default()).unwrap_err(),
            "sqs: no ReceiveMessage answered yet"
        );
    }

    #[test]
    fn failure_reasons() {
        for (text, reason) in [
            (DENIED, "AccessDenied"),
            ("RequestThrottled", "RequestThrottled"),
            (
                "AWS.SimpleQueueService.NonExistentQueue: The specified queue does not exist",
                "AWS.SimpleQueueService.NonExistentQueue",
            ),
            (
                "unhandled error (HTTP 403: <ErrorResponse> <Message>arn:aws:iam::1:role/x</Message>)",
                "HTTP 403",
            ),
            (
                "dispatch failure: io error: client error (Connect): tcp open error: Too many open files (os error 24)",
                "too many open files",
            ),
            (
                "dispatch failure: io error: client error (Connect): tcp connect error: Connection refused (os error 111)",
                "connection refused",
            ),
            (
                "dispatch failure: other: dns error: failed to lookup address",
                "dns failure",
            ),
            (
                "request has timed out: operation timeout (all attempts) was reached",
                "timeout",
            ),
            (
                "response error: could not parse arn:aws:sqs:eu-west-1:1:q",
                "unreadable response",
            ),
            ("not authorized: arn:aws:sts::1:assumed-role/r/s", "error"),
            ("", "error"),
        ] {
            assert_eq!(failure_reason(text), reason, "{text}");
        }
    }

    /// The reason setter takes codes and categories; free text becomes `error`.
    #[test]
    fn reasons_are_codes_or_categories() {
        for (given, shown) in [
            ("AccessDenied", "AccessDenied"),
            ("timeout", "timeout"),
            ("HTTP 503", "HTTP 503"),
            ("arn:aws:iam::123456789012:role/trailwatch", "error"),
            ("123456789012", "error"),
            ("not authorized to perform sqs:receivemessage", "error"),
            (&"A".repeat(65), "error"),
        ] {
            let h = Health::default();
            h.poll_failed_reason(given);
            let why = ready(&h).unwrap_err();
            assert!(why.ends_with(&format!("({shown})")), "{given}: {why}");
        }
    }

    #[test]
    fn probe_urls() {
        assert_eq!(probe_url(None), DEFAULT_PROBE_URL);
        assert_eq!(probe_url(Some("")), DEFAULT_PROBE_URL);
        assert_eq!(probe_url(Some("nope")), DEFAULT_PROBE_URL);
        assert_eq!(
            probe_url(Some("127.0.0.1:9090")),
            "http://127.0.0.1:9090/healthz"
        );
        assert_eq!(
            probe_url(Some("0.0.0.0:8081")),
            "http://127.0.0.1:8081/healthz"
        );
        assert_eq!(probe_url(Some("[::]:8080")), "http://[::1]:8080/healthz");
    }
}
