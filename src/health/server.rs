//! The endpoints' server. Clients are not trusted to behave: each connection
//! holds one of [`MAX_CONNECTIONS`] slots (a connection over the cap is closed as
//! soon as it is accepted), must deliver a request's header within
//! [`HEADER_READ_TIMEOUT`], and is closed after [`KEEP_ALIVE_TIMEOUT`] without a
//! new request or without progress on an answer. Idle connections thus never hold
//! the descriptors the worker needs for S3 and SQS.

use std::future::{Future, IntoFuture};
use std::io;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
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

use super::Health;
use crate::metrics::Metrics;

/// The target its log lines had before the server had a module of its own.
const TARGET: &str = "trailwatch::health";

/// Connections served at once; one more is closed as soon as it is accepted.
pub const MAX_CONNECTIONS: usize = 64;

/// How long a client has to send a request's header: from its connection, or from
/// the first byte of a request on a kept-alive connection. Probes on loopback take
/// milliseconds.
pub const HEADER_READ_TIMEOUT: Duration = Duration::from_secs(5);

/// How long a kept-alive connection may wait for its next request, and how long an
/// answer may wait for the client to take it, before the connection is closed.
pub const KEEP_ALIVE_TIMEOUT: Duration = Duration::from_secs(10);

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
                            target: TARGET,
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
    tracing::error!(target: TARGET, error = %e, "health server: accept failed; retrying in 1 s");
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
