//! The worker's notable events, each a small struct whose [`InternalEvent::emit`]
//! writes its log line and adds its metric: a log line and the counter that goes
//! with it are written in one place, and cannot drift apart (Vector's internal
//! events, without the macro).
//!
//! Each line keeps the target of the module that raises it (`target:`), so that
//! `TRAILWATCH_LOG` filters and the log lines read the same as when the calls
//! were made in place.

use std::fmt::Display;
use std::path::Path;
use std::time::Duration;

use crate::metrics::{Counter, Metrics};

const WORKER: &str = "trailwatch::worker";
const PROCESS: &str = "trailwatch::worker::process";
const CLOUDWATCH: &str = "trailwatch::metrics::cloudwatch";

/// Something worth a log line, a metric, or both.
pub trait InternalEvent {
    fn emit(&self, metrics: &Metrics);
}

/// ReceiveMessage failed; the intake pauses for `retry_in`.
pub struct ReceiveFailed<'a> {
    /// As [`crate::aws::error_text`] describes it.
    pub error: &'a str,
    pub retry_in: Duration,
}

impl InternalEvent for ReceiveFailed<'_> {
    fn emit(&self, metrics: &Metrics) {
        metrics.add(Counter::SqsErrors, 1);
        tracing::warn!(target: WORKER, error = %self.error, retry_in = ?self.retry_in, "ReceiveMessage failed");
    }
}

/// ChangeMessageVisibility failed (a heartbeat, or releasing a message).
pub struct VisibilityChangeFailed<'a> {
    pub error: &'a str,
}

impl InternalEvent for VisibilityChangeFailed<'_> {
    fn emit(&self, metrics: &Metrics) {
        metrics.add(Counter::SqsErrors, 1);
        tracing::warn!(target: PROCESS, error = %self.error, "ChangeMessageVisibility failed");
    }
}

/// One DeleteMessage attempt failed.
pub struct DeleteFailed<'a> {
    pub message_id: &'a str,
    pub attempt: u32,
    pub error: &'a str,
}

impl InternalEvent for DeleteFailed<'_> {
    fn emit(&self, metrics: &Metrics) {
        metrics.add(Counter::SqsErrors, 1);
        tracing::warn!(target: PROCESS, message_id = %self.message_id, attempt = self.attempt,
            error = %self.error, "DeleteMessage failed");
    }
}

/// A message body that is no known notification; `body` is shown cut to 200
/// characters.
pub struct NotificationUnreadable<'a> {
    pub message_id: &'a str,
    pub error: &'a dyn Display,
    pub body: &'a str,
}

impl InternalEvent for NotificationUnreadable<'_> {
    fn emit(&self, metrics: &Metrics) {
        metrics.add(Counter::NotificationErrors, 1);
        let preview: String = self.body.chars().take(200).collect();
        tracing::error!(target: PROCESS, message_id = %self.message_id, error = %self.error,
            body = ?preview, "cannot read SQS message");
    }
}

/// An object outside the source's allow-list (see [`crate::worker::admission`]).
pub struct NotificationRejected<'a> {
    pub message_id: &'a str,
    pub sender_id: Option<&'a str>,
    pub bucket: &'a str,
    pub key: &'a str,
    pub reason: &'a dyn Display,
}

impl InternalEvent for NotificationRejected<'_> {
    fn emit(&self, metrics: &Metrics) {
        metrics.add(Counter::NotificationsRejected, 1);
        tracing::warn!(target: PROCESS, message_id = ?self.message_id, sender_id = ?self.sender_id,
            bucket = ?self.bucket, key = ?self.key, reason = %self.reason,
            "notification rejected: it names an object outside this source's allow-list; the object is not read");
    }
}

/// An object the include/exclude key filters skip.
pub struct ObjectFiltered<'a> {
    pub bucket: &'a str,
    pub key: &'a str,
}

impl InternalEvent for ObjectFiltered<'_> {
    fn emit(&self, metrics: &Metrics) {
        tracing::debug!(target: PROCESS, bucket = ?self.bucket, key = ?self.key,
            "skipped by the include/exclude key filters");
        metrics.add(Counter::ObjectsSkipped, 1);
    }
}

/// An object that could not be read, evaluated or delivered; its message is kept.
pub struct FileFailed<'a> {
    pub message_id: &'a str,
    pub bucket: &'a str,
    pub key: &'a str,
    pub error: &'a dyn Display,
}

impl InternalEvent for FileFailed<'_> {
    fn emit(&self, metrics: &Metrics) {
        metrics.add(Counter::FileErrors, 1);
        tracing::error!(target: PROCESS, message_id = %self.message_id, bucket = ?self.bucket,
            key = ?self.key, error = %self.error, "file failed");
    }
}

/// A message not done with, left to come back after `retry_in`.
pub struct MessageKept<'a> {
    pub message_id: &'a str,
    /// SQS's `ApproximateReceiveCount`, as it came.
    pub receive_count: &'a str,
    pub retry_in: Duration,
}

impl InternalEvent for MessageKept<'_> {
    fn emit(&self, _: &Metrics) {
        tracing::warn!(target: PROCESS, message_id = %self.message_id, receive_count = %self.receive_count,
            retry_in = ?self.retry_in,
            "message kept for redelivery (the queue's redrive policy moves it to the dead-letter queue after maxReceiveCount)");
    }
}

/// A sink's delivery round failed. `retry`: the round's number and the wait
/// before the next; `None` when the worker is stopping and does not retry (the
/// file fails, and its failure is logged with this error).
pub struct SinkDeliveryFailed<'a> {
    pub sink: &'a str,
    pub error: &'a dyn Display,
    pub retry: Option<(u32, Duration)>,
}

impl InternalEvent for SinkDeliveryFailed<'_> {
    fn emit(&self, metrics: &Metrics) {
        metrics.add(Counter::SinkErrors, 1);
        if let Some((round, retry_in)) = self.retry {
            tracing::error!(target: PROCESS, sink = %self.sink, error = %self.error, round,
                retry_in = ?retry_in, "alert delivery failed; the file's message is held and delivery retried");
        }
    }
}

/// `DeleteObjects` alerts out of the join window that a sink did not take.
pub struct ExpiredAlertsUndelivered<'a> {
    pub error: &'a dyn Display,
    pub alerts: usize,
}

impl InternalEvent for ExpiredAlertsUndelivered<'_> {
    fn emit(&self, metrics: &Metrics) {
        metrics.add(Counter::SinkErrors, 1);
        tracing::error!(target: WORKER, error = %self.error, alerts = self.alerts,
            "could not deliver expired DeleteObjects alerts");
    }
}

/// SIGHUP's reload took the rules in `dir`.
pub struct RulesReloaded<'a> {
    pub rules: usize,
    pub dir: &'a Path,
}

impl InternalEvent for RulesReloaded<'_> {
    fn emit(&self, _: &Metrics) {
        tracing::info!(target: WORKER, rules = self.rules, dir = %self.dir.display(), "rules reloaded");
    }
}

/// SIGHUP's reload found problems; the rules in force stay.
pub struct ReloadRejected<'a> {
    pub dir: &'a Path,
    pub problems: &'a dyn Display,
}

impl InternalEvent for ReloadRejected<'_> {
    fn emit(&self, metrics: &Metrics) {
        metrics.add(Counter::ReloadFailures, 1);
        tracing::error!(target: WORKER, dir = %self.dir.display(), problems = %self.problems,
            "rule reload rejected; the previous rules stay active");
    }
}

/// Datapoints CloudWatch kept refusing, given up on.
pub struct DatapointsDropped<'a> {
    pub error: &'a str,
    pub dropped: u64,
}

impl InternalEvent for DatapointsDropped<'_> {
    fn emit(&self, metrics: &Metrics) {
        tracing::warn!(target: CLOUDWATCH, error = %self.error, dropped = self.dropped,
            "CloudWatch keeps failing; dropping metric datapoints");
        metrics.add(Counter::DroppedDatapoints, self.dropped);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Emitting counts, whatever the log level lets through.
    #[test]
    fn an_event_counts_as_it_logs() {
        let m = Metrics::default();
        FileFailed {
            message_id: "m",
            bucket: "b",
            key: "k",
            error: &"boom",
        }
        .emit(&m);
        SinkDeliveryFailed {
            sink: "stdout",
            error: &"closed",
            retry: None,
        }
        .emit(&m);
        DatapointsDropped {
            error: "down",
            dropped: 7,
        }
        .emit(&m);
        assert_eq!(m.total(Counter::FileErrors), 1);
        assert_eq!(m.total(Counter::SinkErrors), 1);
        assert_eq!(m.total(Counter::DroppedDatapoints), 7);
    }
}
