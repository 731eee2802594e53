//! The HTTP endpoints a platform probes: `/healthz` (the process is alive),
//! `/readyz` (rules are loaded, SQS answered within the last minute, detection
//! state answers) and `/metrics` (Prometheus text), served by [`serve`]
//! (`server.rs`, with the limits on clients); and [`probe`], the client side of
//! `trailwatch healthcheck`. Here: [`Health`], what readiness is judged on, and
//! what of an SQS or detection-state failure `/readyz` may show.

mod probe;
mod server;

use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

pub use probe::{DEFAULT_PROBE_URL, probe, probe_url};
pub use server::{HEADER_READ_TIMEOUT, KEEP_ALIVE_TIMEOUT, MAX_CONNECTIONS, serve};

/// How recent the last successful SQS poll must be for `/readyz`.
pub const READY_WITHIN: Duration = Duration::from_secs(60);

/// What readiness is judged on, updated by the worker.
#[derive(Debug, Default)]
pub struct Health {
    rules_loaded: AtomicBool,
    sqs: std::sync::Mutex<Polls>,
    /// Since when detection state (the DynamoDB table) fails, and what failed
    /// (reset by the next file it answered for).
    state: std::sync::Mutex<Option<(Instant, StateFailure)>>,
}

/// A detection-state failure as `/readyz` may show it.
#[derive(Debug, Clone, PartialEq, Eq)]
struct StateFailure {
    /// The backend's call, e.g. `DynamoDB UpdateItem` (empty when not known).
    call: String,
    /// An error code or a category, as for SQS.
    reason: String,
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

    fn state_failure(&self) -> std::sync::MutexGuard<'_, Option<(Instant, StateFailure)>> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Detection state answered for a file (its reads and writes went through):
    /// a failure before it is over.
    pub fn state_ok(&self) {
        *self.state_failure() = None;
    }

    /// Detection state failed for a file with `error_text` (the backend's
    /// description, e.g. `DynamoDB UpdateItem (threshold window): Code: message`).
    /// Only the call and the error code or a category are kept, as for SQS.
    pub fn state_failed(&self, error_text: &str) {
        let failure = state_failure(error_text);
        let mut f = self.state_failure();
        let since = f.as_ref().map_or_else(Instant::now, |(t, _)| *t);
        *f = Some((since, failure));
    }

    /// `Ok` when ready, otherwise why not (e.g. `sqs: ReceiveMessage failing for 45s
    /// (AccessDenied)`, `detection state: DynamoDB UpdateItem failing for 12s
    /// (ProvisionedThroughputExceededException)`; both, joined by `; `).
    pub fn readiness(&self) -> Result<(), String> {
        if !self.rules_loaded.load(Ordering::SeqCst) {
            return Err("rules not loaded".into());
        }
        let state = self.state_failure().clone().map(|(since, f)| {
            let call = match f.call.is_empty() {
                true => String::new(),
                false => format!(" {}", f.call),
            };
            format!(
                "detection state:{call} failing for {}s ({})",
                since.elapsed().as_secs(),
                f.reason
            )
        });
        match (self.sqs_readiness(), state) {
            (Ok(()), None) => Ok(()),
            (Ok(()), Some(s)) => Err(s),
            (Err(q), None) => Err(q),
            (Err(q), Some(s)) => Err(format!("{q}; {s}")),
        }
    }

    fn sqs_readiness(&self) -> Result<(), String> {
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

/// What may be shown of a detection-state failure: the backend's call when the text
/// names one (`DynamoDB GetItem (completed object): ...` gives `DynamoDB GetItem`;
/// operation names are codes), and the [`failure_reason`] of the rest.
fn state_failure(error_text: &str) -> StateFailure {
    let text = error_text.trim();
    // `DynamoDB <Operation> (<what for>): <the SDK's description>`.
    let call = text
        .strip_prefix("DynamoDB ")
        .and_then(|rest| rest.split_once(' '))
        .filter(|(op, _)| is_code(op) && op.starts_with(|c: char| c.is_ascii_uppercase()))
        .and_then(|(op, after)| {
            let detail = after.strip_prefix('(')?.split_once("): ")?.1;
            Some((op, detail))
        });
    match call {
        Some((op, detail)) => StateFailure {
            call: format!("DynamoDB {op}"),
            reason: failure_reason(detail),
        },
        None => StateFailure {
            call: String::new(),
            reason: failure_reason(text),
        },
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

    /// A detection-state failure names the call and the code, never the message;
    /// the next file it answers for clears it; with SQS failing too, both show.
    #[test]
    fn readiness_names_a_failing_state_table() {
        let h = Health::default();
        h.set_rules_loaded(true);
        h.poll_ok();
        h.state_failed(
            "DynamoDB UpdateItem (threshold window): ProvisionedThroughputExceededException: The level of configured provisioned throughput for the table arn:aws:dynamodb:eu-west-1:123456789012:table/tw was exceeded",
        );
        let why = h.readiness().unwrap_err();
        assert_eq!(
            why,
            "detection state: DynamoDB UpdateItem failing for 0s (ProvisionedThroughputExceededException)"
        );
        assert!(!why.contains("123456789012"), "{why}");
        // The failure lasts from the first one; the latest reason shows.
        h.state_failure().as_mut().unwrap().0 = Instant::now() - Duration::from_secs(12);
        h.state_failed(
            "DynamoDB GetItem (completed object): dispatch failure: io error: client error (Connect): tcp connect error: Connection refused (os error 111)",
        );
        assert_eq!(
            h.readiness().unwrap_err(),
            "detection state: DynamoDB GetItem failing for 12s (connection refused)"
        );
        h.poll_failed(DENIED.to_owned());
        h.polls().last_ok = None;
        assert_eq!(
            h.readiness().unwrap_err(),
            "sqs: ReceiveMessage failing for 0s (AccessDenied); detection state: DynamoDB GetItem failing for 12s (connection refused)"
        );
        h.poll_ok();
        h.state_ok();
        assert_eq!(h.readiness(), Ok(()));
        // A failure that names no call (a state task that panicked) is shown as one.
        h.state_failed("task 12 panicked with message \"arn:aws:iam::1:role/x\"");
        assert_eq!(
            h.readiness().unwrap_err(),
            "detection state: failing for 0s (error)"
        );
        for (text, shown) in [
            (
                "DynamoDB PutItem (claim): ServiceUnavailable",
                "(ServiceUnavailable)",
            ),
            (
                "DynamoDB Query (join): unhandled error (HTTP 503: <html>arn:aws:x</html>)",
                "(HTTP 503)",
            ),
            (
                "DynamoDB PutItem (completed object): request has timed out",
                "(timeout)",
            ),
            ("DynamoDB arn:aws:iam::1:role/x: AccessDenied", "(error)"),
        ] {
            let h = Health::default();
            h.set_rules_loaded(true);
            h.poll_ok();
            h.state_failed(text);
            let why = h.readiness().unwrap_err();
            assert!(why.ends_with(shown), "{text}: {why}");
            assert!(!why.contains("arn:"), "{text}: {why}");
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
}
