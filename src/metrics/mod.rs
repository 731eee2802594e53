//! Internal metrics: one registry that the worker updates, read by the CloudWatch
//! publisher ([`cloudwatch`]) and rendered as Prometheus text for `/metrics`.
//!
//! Updating is a short mutex-protected add, so metrics never slow intake; what
//! CloudWatch has not accepted yet stays pending in a bounded form (one number per
//! series) until it is sent or dropped.

pub mod cloudwatch;
pub mod events;

use std::collections::BTreeMap;
use std::fmt::Write;
use std::sync::Mutex;

/// Every counter, with its CloudWatch name.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Counter {
    EventsProcessed,
    FilesProcessed,
    FileErrors,
    RecordErrors,
    /// Per rule (dimension `RuleId`) and per severity (dimension `Severity`).
    Alerts,
    /// Condition matches before thresholds and suppression, per rule.
    RuleMatches,
    MessagesDeleted,
    /// Messages whose body is not a known notification.
    NotificationErrors,
    /// Objects a notification named outside its source's buckets, key prefix or
    /// owner: not read, and alerted on (`trailwatch-forged-notification`).
    NotificationsRejected,
    /// Objects skipped by the include/exclude filters or as already processed.
    ObjectsSkipped,
    SinkErrors,
    SqsErrors,
    ReloadFailures,
    /// Datapoints CloudWatch never accepted, dropped after the retry budget.
    DroppedDatapoints,
    /// Follow-up alerts carrying the keys of a `DeleteObjects` request.
    JoinFollowUps,
    /// `DeleteObjects` alerts whose access log lines never arrived within the window.
    JoinExpired,
    /// Pending join entries dropped because the bound was reached.
    JoinEvicted,
    /// Windowed alerts sent again, with the same id, by a file processed again
    /// after a crash or redelivery (at-least-once delivery; consumers drop them by
    /// id).
    AlertsRepeated,
}

impl Counter {
    pub fn name(self) -> &'static str {
        match self {
            Counter::EventsProcessed => "EventsProcessed",
            Counter::FilesProcessed => "FilesProcessed",
            Counter::FileErrors => "FileErrors",
            Counter::RecordErrors => "RecordErrors",
            Counter::Alerts => "Alerts",
            Counter::RuleMatches => "RuleMatches",
            Counter::MessagesDeleted => "MessagesDeleted",
            Counter::NotificationErrors => "NotificationErrors",
            Counter::NotificationsRejected => "NotificationsRejected",
            Counter::ObjectsSkipped => "ObjectsSkipped",
            Counter::SinkErrors => "SinkErrors",
            Counter::SqsErrors => "SqsErrors",
            Counter::ReloadFailures => "ReloadFailures",
            Counter::DroppedDatapoints => "DroppedDatapoints",
            Counter::JoinFollowUps => "JoinFollowUps",
            Counter::JoinExpired => "JoinExpired",
            Counter::JoinEvicted => "JoinEvicted",
            Counter::AlertsRepeated => "AlertsRepeated",
        }
    }

    fn prometheus(self) -> &'static str {
        match self {
            Counter::EventsProcessed => "trailwatch_events_processed_total",
            Counter::FilesProcessed => "trailwatch_files_processed_total",
            Counter::FileErrors => "trailwatch_file_errors_total",
            Counter::RecordErrors => "trailwatch_record_errors_total",
            Counter::Alerts => "trailwatch_alerts_total",
            Counter::RuleMatches => "trailwatch_rule_matches_total",
            Counter::MessagesDeleted => "trailwatch_messages_deleted_total",
            Counter::NotificationErrors => "trailwatch_notification_errors_total",
            Counter::NotificationsRejected => "trailwatch_notifications_rejected_total",
            Counter::ObjectsSkipped => "trailwatch_objects_skipped_total",
            Counter::SinkErrors => "trailwatch_sink_errors_total",
            Counter::SqsErrors => "trailwatch_sqs_errors_total",
            Counter::ReloadFailures => "trailwatch_reload_failures_total",
            Counter::DroppedDatapoints => "trailwatch_dropped_datapoints_total",
            Counter::JoinFollowUps => "trailwatch_join_follow_ups_total",
            Counter::JoinExpired => "trailwatch_join_expired_total",
            Counter::JoinEvicted => "trailwatch_join_evicted_total",
            Counter::AlertsRepeated => "trailwatch_alerts_repeated_total",
        }
    }
}

/// A series: a counter, optionally with one dimension.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Series {
    pub counter: Counter,
    /// (dimension name, value), e.g. ("RuleId", "s3-sso-object-delete").
    pub dim: Option<(&'static str, String)>,
}

/// Min/max/sum/count of a distribution (CloudWatch statistic set).
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct StatSet {
    pub count: u64,
    pub sum: f64,
    pub min: f64,
    pub max: f64,
}

impl StatSet {
    pub fn add(&mut self, x: f64) {
        if self.count == 0 {
            self.min = x;
            self.max = x;
        } else {
            self.min = self.min.min(x);
            self.max = self.max.max(x);
        }
        self.count += 1;
        self.sum += x;
    }

    pub fn merge(&mut self, o: &StatSet) {
        if o.count == 0 {
            return;
        }
        if self.count == 0 {
            *self = *o;
            return;
        }
        self.min = self.min.min(o.min);
        self.max = self.max.max(o.max);
        self.count += o.count;
        self.sum += o.sum;
    }
}

/// What has not been sent to CloudWatch yet.
#[derive(Debug, Clone, Default)]
pub struct Pending {
    pub counters: BTreeMap<Series, u64>,
    /// `DeliveryLagSeconds`: detection time minus eventTime.
    pub lag: StatSet,
    /// Flushes this data has already failed.
    pub failures: u32,
}

impl Pending {
    pub fn is_empty(&self) -> bool {
        self.counters.is_empty() && self.lag.count == 0
    }

    /// Datapoints it would send.
    pub fn datapoints(&self) -> u64 {
        self.counters.len() as u64 + u64::from(self.lag.count > 0)
    }
}

#[derive(Debug, Default)]
struct Inner {
    totals: BTreeMap<Series, u64>,
    lag_total: StatSet,
    pending: Pending,
}

/// The registry.
#[derive(Debug, Default)]
pub struct Metrics {
    inner: Mutex<Inner>,
}

impl Metrics {
    pub fn add(&self, counter: Counter, n: u64) {
        self.add_series(Series { counter, dim: None }, n);
    }

    pub fn add_dim(&self, counter: Counter, dim: &'static str, value: &str, n: u64) {
        self.add_series(
            Series {
                counter,
                dim: Some((dim, value.to_owned())),
            },
            n,
        );
    }

    fn add_series(&self, s: Series, n: u64) {
        if n == 0 {
            return;
        }
        let mut g = self.inner.lock().unwrap_or_else(|e| e.into_inner());
        *g.totals.entry(s.clone()).or_default() += n;
        *g.pending.counters.entry(s).or_default() += n;
    }

    pub fn add_lag(&self, s: &StatSet) {
        let mut g = self.inner.lock().unwrap_or_else(|e| e.into_inner());
        g.lag_total.merge(s);
        g.pending.lag.merge(s);
    }

    /// Current total of a series (for tests and readiness).
    pub fn total(&self, counter: Counter) -> u64 {
        let g = self.inner.lock().unwrap_or_else(|e| e.into_inner());
        g.totals
            .iter()
            .filter(|(s, _)| s.counter == counter && s.dim.is_none())
            .map(|(_, v)| *v)
            .sum()
    }

    /// Takes what is pending for CloudWatch.
    pub fn take_pending(&self) -> Pending {
        let mut g = self.inner.lock().unwrap_or_else(|e| e.into_inner());
        std::mem::take(&mut g.pending)
    }

    /// Puts back data a flush could not send, merged with what arrived since.
    pub fn restore_pending(&self, p: Pending) {
        let mut g = self.inner.lock().unwrap_or_else(|e| e.into_inner());
        for (s, n) in p.counters {
            *g.pending.counters.entry(s).or_default() += n;
        }
        g.pending.lag.merge(&p.lag);
        g.pending.failures = g.pending.failures.max(p.failures);
    }

    /// Prometheus text exposition of every total.
    pub fn render_prometheus(&self) -> String {
        let g = self.inner.lock().unwrap_or_else(|e| e.into_inner());
        let mut out = String::new();
        let mut last = None;
        for (s, v) in &g.totals {
            let name = s.counter.prometheus();
            if last != Some(name) {
                let _ = writeln!(out, "# TYPE {name} counter");
                last = Some(name);
            }
            match &s.dim {
                Some((k, val)) => {
                    let label = match *k {
                        "RuleId" => "rule_id",
                        "Severity" => "severity",
                        other => other,
                    };
                    let escaped = val
                        .replace('\\', "\\\\")
                        .replace('"', "\\\"")
                        .replace('\n', "\\n");
                    let _ = writeln!(out, "{name}{{{label}=\"{escaped}\"}} {v}");
                }
                None => {
                    let _ = writeln!(out, "{name} {v}");
                }
            }
        }
        let lag = g.lag_total;
        let _ = writeln!(out, "# TYPE trailwatch_delivery_lag_seconds summary");
        let _ = writeln!(out, "trailwatch_delivery_lag_seconds_sum {}", lag.sum);
        let _ = writeln!(out, "trailwatch_delivery_lag_seconds_count {}", lag.count);
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn totals_pending_and_restore() {
        let m = Metrics::default();
        m.add(Counter::EventsProcessed, 10);
        m.add_dim(Counter::Alerts, "RuleId", "r1", 2);
        let mut lag = StatSet::default();
        lag.add(3.0);
        lag.add(1.0);
        m.add_lag(&lag);
        let mut p = m.take_pending();
        assert_eq!(p.datapoints(), 3);
        assert!(m.take_pending().is_empty());
        m.add(Counter::EventsProcessed, 5);
        p.failures = 1;
        m.restore_pending(p);
        let p = m.take_pending();
        assert_eq!(
            p.counters[&Series {
                counter: Counter::EventsProcessed,
                dim: None
            }],
            15
        );
        assert_eq!((p.lag.min, p.lag.max, p.lag.count), (1.0, 3.0, 2));
        assert_eq!(p.failures, 1);
        assert_eq!(m.total(Counter::EventsProcessed), 15);
    }

    #[test]
    fn prometheus_text() {
        let m = Metrics::default();
        m.add(Counter::FilesProcessed, 1);
        m.add_dim(Counter::Alerts, "RuleId", "a\"b", 2);
        let t = m.render_prometheus();
        assert!(t.contains("# TYPE trailwatch_files_processed_total counter\ntrailwatch_files_processed_total 1\n"), "{t}");
        assert!(
            t.contains("trailwatch_alerts_total{rule_id=\"a\\\"b\"} 2"),
            "{t}"
        );
        assert!(t.contains("trailwatch_delivery_lag_seconds_count 0"), "{t}");
    }
}
