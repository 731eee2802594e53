//! Who deleted which keys: joining CloudTrail `DeleteObjects` events with S3 server
//! access log lines.
//!
//! CloudTrail records a `DeleteObjects` batch as one event without its keys; the
//! bucket's server access log has one `BATCH.DELETE.OBJECT` line per key, with the
//! same request ID. This module pairs them, like a FULL OUTER JOIN on request ID:
//! alerts on `DeleteObjects` events gain a `deleted_keys` list, and lines whose
//! request matches no CloudTrail event are reported on their own. Pure logic; the
//! scan command and the worker feed it.

use std::collections::{HashMap, HashSet};

use serde_json::Value;

use crate::alert::Alert;
use crate::record::{Event, LogType};

/// The access log operation of one key of a multi-object delete.
pub const BATCH_DELETE: &str = "BATCH.DELETE.OBJECT";

pub use crate::alert::DeletedKey;

impl DeletedKey {
    /// The key line an access log event holds, when it is a batch delete.
    pub fn from_event(e: &Event) -> Option<DeletedKey> {
        if e.log_type() != LogType::S3Access || e.str("operation") != Some(BATCH_DELETE) {
            return None;
        }
        let r = e.record();
        let s = |k: &str| r.get(k).and_then(Value::as_str).map(str::to_owned);
        Some(DeletedKey {
            key: s("key_decoded").or_else(|| s("key")).unwrap_or_default(),
            http_status: r.get("http_status").and_then(Value::as_u64),
            error_code: s("error_code"),
            version_id: s("version_id"),
            request_id: s("request_id")?,
            bucket: s("bucket"),
            time: s("eventTime"),
            requester: s("requester"),
            remote_ip: s("remote_ip"),
            user_agent: s("user_agent"),
        })
    }
}

/// The request ID of a CloudTrail `DeleteObjects` event.
pub fn delete_objects_request(e: &Event) -> Option<&str> {
    (e.log_type() == LogType::Cloudtrail && e.str("eventName") == Some("DeleteObjects"))
        .then(|| e.str("requestID"))
        .flatten()
        .filter(|r| !r.is_empty())
}

/// The offline join: collects both sides, then pairs them.
#[derive(Debug, Default)]
pub struct DeleteJoin {
    /// `DeleteObjects` alerts waiting for their keys, in arrival order.
    held: Vec<(String, Alert)>,
    /// Request IDs of every `DeleteObjects` event seen (alerted or not).
    requests: HashSet<String>,
    keys: HashMap<String, Vec<DeletedKey>>,
    /// Whether any access log line was read (otherwise alerts go out unchanged).
    saw_access_log: bool,
}

/// One row of the join, for `--columns deleted-keys`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct JoinRow {
    pub alert: Option<Alert>,
    pub key: Option<DeletedKey>,
}

impl DeleteJoin {
    /// Notes an event; returns true when `alerts` about it must be held (a
    /// `DeleteObjects` event's alerts wait for the end of the scan).
    pub fn observe(&mut self, e: &Event) -> bool {
        if e.log_type() == LogType::S3Access {
            self.saw_access_log = true;
            if let Some(k) = DeletedKey::from_event(e) {
                self.keys.entry(k.request_id.clone()).or_default().push(k);
            }
            return false;
        }
        match delete_objects_request(e) {
            Some(id) => {
                self.requests.insert(id.to_owned());
                true
            }
            None => false,
        }
    }

    /// Whether [`DeleteJoin::observe`] does anything with `e`: an access log line
    /// or a `DeleteObjects` call.
    pub fn interested(e: &Event) -> bool {
        e.log_type() == LogType::S3Access || delete_objects_request(e).is_some()
    }

    pub fn hold(&mut self, request_id: &str, alert: Alert) {
        self.held.push((request_id.to_owned(), alert));
    }

    /// The held alerts with their keys attached (when access logs were read).
    /// One at a time, so that writing them does not hold a second copy of all.
    pub fn finish_alerts(&self) -> impl Iterator<Item = Alert> + '_ {
        self.held.iter().map(|(id, a)| {
            let mut a = a.clone();
            if self.saw_access_log {
                attach(&mut a, self.keys.get(id).cloned().unwrap_or_default());
            }
            a
        })
    }

    /// FULL OUTER JOIN rows: one per (alerted event, key); an alerted event without
    /// lines once; lines of requests without any CloudTrail event once each.
    pub fn rows(&self) -> Vec<JoinRow> {
        let mut out = Vec::new();
        let mut seen_alert_requests = HashSet::new();
        for (id, a) in &self.held {
            // Several rules may alert on the same event: one set of rows per event.
            if !seen_alert_requests.insert((id.clone(), a.event.event_id.clone())) {
                continue;
            }
            match self.keys.get(id) {
                Some(keys) if !keys.is_empty() => out.extend(keys.iter().map(|k| JoinRow {
                    alert: Some(a.clone()),
                    key: Some(k.clone()),
                })),
                _ => out.push(JoinRow {
                    alert: Some(a.clone()),
                    key: None,
                }),
            }
        }
        let mut orphan: Vec<&String> = self
            .keys
            .keys()
            .filter(|id| !self.requests.contains(*id))
            .collect();
        orphan.sort();
        for id in orphan {
            out.extend(self.keys[id].iter().map(|k| JoinRow {
                alert: None,
                key: Some(k.clone()),
            }));
        }
        out
    }
}

/// Attaches keys to an alert (or notes that none arrived).
pub fn attach(a: &mut Alert, keys: Vec<DeletedKey>) {
    if keys.is_empty() {
        a.note = Some("no S3 server access log lines arrived for this request".into());
    }
    a.deleted_keys = Some(keys);
}

/// The join's CSV columns (the classic Athena FULL OUTER JOIN of CloudTrail and
/// server access logs on request ID).
pub const JOIN_COLUMNS: [&str; 12] = [
    "operation_time",
    "bucket_name",
    "operation",
    "object_key",
    "user_arn",
    "source_ip",
    "user_agent",
    "httpstatus",
    "access_denied",
    "error_code",
    "error_message",
    "request_id",
];

impl JoinRow {
    /// The row's cells in [`JOIN_COLUMNS`] order: CloudTrail columns from the alert,
    /// per-key columns from the access log line; absent values are empty. A line
    /// that no alerted `DeleteObjects` matched (the FULL OUTER JOIN's other side)
    /// takes its time, operation (`BATCH.DELETE.OBJECT`), requester, address and
    /// user agent from the access log, so the row still says who deleted the key.
    pub fn cells(&self) -> [String; 12] {
        let o = |v: &Option<String>| v.clone().unwrap_or_default();
        let a = self.alert.as_ref();
        let k = self.key.as_ref();
        let error_code = match (k, a) {
            (Some(k), _) => o(&k.error_code),
            (None, Some(a)) => o(&a.event.error_code),
            _ => String::new(),
        };
        // The alert's column when there is an alert, else the access log's.
        let pick = |from_alert: fn(&Alert) -> &Option<String>,
                    from_key: fn(&DeletedKey) -> &Option<String>| match (a, k) {
            (Some(a), _) => o(from_alert(a)),
            (None, Some(k)) => o(from_key(k)),
            (None, None) => String::new(),
        };
        [
            pick(|a| &a.event.event_time, |k| &k.time),
            a.map(|a| o(&a.s3.bucket))
                .or_else(|| k.map(|k| o(&k.bucket)))
                .unwrap_or_default(),
            match (a, k) {
                (Some(a), _) => o(&a.event.event_name),
                (None, Some(_)) => BATCH_DELETE.to_owned(),
                (None, None) => String::new(),
            },
            k.map(|k| k.key.clone()).unwrap_or_default(),
            pick(|a| &a.actor.arn, |k| &k.requester),
            pick(|a| &a.event.source_ip_address, |k| &k.remote_ip),
            pick(|a| &a.event.user_agent, |k| &k.user_agent),
            k.and_then(|k| k.http_status)
                .map(|s| s.to_string())
                .unwrap_or_default(),
            if error_code == "AccessDenied" {
                "Yes"
            } else {
                "No"
            }
            .to_owned(),
            error_code,
            a.map(|a| o(&a.event.error_message)).unwrap_or_default(),
            a.and_then(|a| a.event.request_id.clone())
                .or_else(|| k.map(|k| k.request_id.clone()))
                .unwrap_or_default(),
        ]
    }
}

/// The streaming join in the worker: `DeleteObjects` alerts wait (bounded, up to
/// `window`) for their access log lines, and lines wait for their alert, since
/// server access logs arrive minutes to hours after CloudTrail. When both sides are
/// there, a follow-up alert with the same `alert_id` and the `deleted_keys` goes out;
/// alerts that never get lines go out as-is with a note when they expire.
#[derive(Debug)]
pub struct PendingJoin {
    window_ms: u64,
    max_entries: usize,
    alerts: HashMap<String, PendingAlerts>,
    keys: HashMap<String, PendingKeys>,
    /// Entries dropped to stay within `max_entries` since the last call to
    /// [`PendingJoin::take_evicted`].
    evicted: u64,
    /// Whether alerts wait at all: from the start when configured, otherwise from
    /// the first access log line seen (a worker that never reads access logs sends
    /// each alert once, with no follow-up).
    active: bool,
}

#[derive(Debug)]
struct PendingAlerts {
    since_ms: u64,
    alerts: Vec<Alert>,
    followed_up: bool,
}

#[derive(Debug)]
struct PendingKeys {
    since_ms: u64,
    keys: Vec<DeletedKey>,
}

fn with_keys(a: &Alert, keys: &[DeletedKey]) -> Alert {
    let mut f = a.clone();
    f.deleted_keys = Some(keys.to_vec());
    f.note = Some(
        "follow-up: the keys of this DeleteObjects request, from S3 server access logs".into(),
    );
    f
}

impl PendingJoin {
    pub fn new(window: std::time::Duration, max_entries: usize, active: bool) -> PendingJoin {
        PendingJoin {
            window_ms: window.as_millis() as u64,
            max_entries: max_entries.max(1),
            alerts: HashMap::new(),
            keys: HashMap::new(),
            evicted: 0,
            active,
        }
    }

    /// Entries held (alerts waiting plus requests whose lines wait).
    pub fn len(&self) -> usize {
        self.alerts.len() + self.keys.len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// A `DeleteObjects` alert; returns a follow-up at once if its lines came first.
    pub fn on_alert(&mut self, request_id: &str, alert: Alert, now_ms: u64) -> Vec<Alert> {
        if !self.active {
            return Vec::new();
        }
        let mut out = Vec::new();
        let entry = self
            .alerts
            .entry(request_id.to_owned())
            .or_insert_with(|| PendingAlerts {
                since_ms: now_ms,
                alerts: Vec::new(),
                followed_up: false,
            });
        if let Some(k) = self.keys.get(request_id) {
            out.push(with_keys(&alert, &k.keys));
            entry.followed_up = true;
        }
        entry.alerts.push(alert);
        out.extend(self.bound(now_ms));
        out
    }

    /// Key lines of one request; returns follow-ups for the alerts already waiting
    /// (with every key seen so far for the request).
    pub fn on_keys(&mut self, request_id: &str, keys: Vec<DeletedKey>, now_ms: u64) -> Vec<Alert> {
        self.active = true;
        let entry = self
            .keys
            .entry(request_id.to_owned())
            .or_insert_with(|| PendingKeys {
                since_ms: now_ms,
                keys: Vec::new(),
            });
        entry.keys.extend(keys);
        let all = entry.keys.clone();
        let mut out = Vec::new();
        if let Some(p) = self.alerts.get_mut(request_id) {
            out.extend(p.alerts.iter().map(|a| with_keys(a, &all)));
            p.followed_up = true;
        }
        out.extend(self.bound(now_ms));
        out
    }

    /// Entries older than the window: alerts that never got lines go out with a note.
    pub fn expire(&mut self, now_ms: u64) -> Vec<Alert> {
        let w = self.window_ms;
        let is_old = |since: u64| now_ms.saturating_sub(since) >= w;
        let old: Vec<String> = self
            .alerts
            .iter()
            .filter(|(_, p)| is_old(p.since_ms))
            .map(|(k, _)| k.clone())
            .collect();
        let mut out = Vec::new();
        for id in old {
            if let Some(p) = self.alerts.remove(&id) {
                out.extend(expired(p));
            }
        }
        self.keys.retain(|_, k| !is_old(k.since_ms));
        out
    }

    /// Drops the oldest entries beyond `max_entries` (alerts go out as expired).
    fn bound(&mut self, _now_ms: u64) -> Vec<Alert> {
        let mut out = Vec::new();
        while self.len() > self.max_entries {
            let oldest_alert = self
                .alerts
                .iter()
                .min_by_key(|(_, p)| p.since_ms)
                .map(|(k, p)| (k.clone(), p.since_ms));
            let oldest_keys = self
                .keys
                .iter()
                .min_by_key(|(_, p)| p.since_ms)
                .map(|(k, p)| (k.clone(), p.since_ms));
            self.evicted += 1;
            match (oldest_alert, oldest_keys) {
                (Some((a, ta)), Some((_, tk))) if ta <= tk => {
                    if let Some(p) = self.alerts.remove(&a) {
                        out.extend(expired(p));
                    }
                }
                (_, Some((k, _))) => {
                    self.keys.remove(&k);
                }
                (Some((a, _)), None) => {
                    if let Some(p) = self.alerts.remove(&a) {
                        out.extend(expired(p));
                    }
                }
                (None, None) => break,
            }
        }
        out
    }

    /// Entries dropped to respect the bound since the last call.
    pub fn take_evicted(&mut self) -> u64 {
        std::mem::take(&mut self.evicted)
    }
}

fn expired(p: PendingAlerts) -> Vec<Alert> {
    if p.followed_up {
        return Vec::new();
    }
    p.alerts
        .into_iter()
        .map(|mut a| {
            a.deleted_keys = Some(Vec::new());
            a.note = Some(
                "no S3 server access log lines arrived for this request within the join window"
                    .into(),
            );
            a
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::alert::SourceRef;
    use crate::engine::Detection;
    use std::time::Duration;

    fn alert(request: &str) -> Alert {
        let set = crate::rules::RuleSet::load(
            std::path::Path::new(concat!(
                env!("CARGO_MANIFEST_DIR"),
                "/rules/s3-sso-object-delete.toml"
            )),
            crate::rules::Strictness::Run,
        )
        .unwrap();
        let e = Event::from_value(serde_json::json!({"eventName": "DeleteObjects", "requestID": request, "eventID": request}))
            .unwrap();
        Alert::new(
            &set.rules[0],
            &Detection { rule: 0, hit: None },
            &e,
            SourceRef::file("f", 0),
        )
    }

    fn key(request: &str, k: &str, status: u64) -> DeletedKey {
        DeletedKey {
            key: k.into(),
            http_status: Some(status),
            error_code: None,
            version_id: None,
            request_id: request.into(),
            bucket: None,
            time: None,
            requester: None,
            remote_ip: None,
            user_agent: None,
        }
    }

    const MIN: u64 = 60_000;

    #[test]
    fn lines_after_the_alert_give_a_follow_up_with_the_same_id() {
        let mut j = PendingJoin::new(Duration::from_secs(7200), 100, true);
        let a = alert("R1");
        assert!(j.on_alert("R1", a.clone(), 0).is_empty());
        let f = j.on_keys(
            "R1",
            vec![key("R1", "a", 204), key("R1", "b", 403)],
            10 * MIN,
        );
        assert_eq!(f.len(), 1);
        assert_eq!(f[0].alert_id, a.alert_id);
        assert_eq!(f[0].deleted_keys.as_ref().unwrap().len(), 2);
        // More lines of the same request: another follow-up with every key.
        let f = j.on_keys("R1", vec![key("R1", "c", 204)], 11 * MIN);
        assert_eq!(f[0].deleted_keys.as_ref().unwrap().len(), 3);
        // Once followed up, expiry emits nothing more.
        assert!(j.expire(200 * MIN).is_empty());
        assert!(j.is_empty());
    }

    #[test]
    fn lines_before_the_alert_are_held() {
        let mut j = PendingJoin::new(Duration::from_secs(7200), 100, true);
        assert!(j.on_keys("R2", vec![key("R2", "x", 204)], 0).is_empty());
        let f = j.on_alert("R2", alert("R2"), MIN);
        assert_eq!(f.len(), 1);
        assert_eq!(f[0].deleted_keys.as_ref().unwrap()[0].key, "x");
    }

    #[test]
    fn alerts_without_lines_expire_with_a_note() {
        let mut j = PendingJoin::new(Duration::from_secs(7200), 100, true);
        j.on_alert("R3", alert("R3"), 0);
        j.on_keys("ORPHAN", vec![key("ORPHAN", "y", 204)], 0);
        assert!(j.expire(119 * MIN).is_empty(), "still within the window");
        let out = j.expire(120 * MIN);
        assert_eq!(out.len(), 1);
        assert_eq!(out[0].deleted_keys, Some(vec![]));
        assert!(
            out[0]
                .note
                .as_deref()
                .unwrap()
                .contains("no S3 server access log lines")
        );
        assert!(j.is_empty(), "orphan lines expire too");
    }

    #[test]
    fn without_access_logs_alerts_do_not_wait() {
        let mut j = PendingJoin::new(Duration::from_secs(7200), 100, false);
        assert!(j.on_alert("R", alert("R"), 0).is_empty());
        assert!(j.is_empty(), "nothing held");
        assert!(j.expire(200 * MIN).is_empty(), "so nothing is sent again");
        j.on_keys("K", vec![key("K", "k", 204)], 0);
        j.on_alert("R2", alert("R2"), 0);
        assert_eq!(j.len(), 2, "the first access log line switches the join on");
    }

    #[test]
    fn the_bound_evicts_the_oldest_and_counts_it() {
        let mut j = PendingJoin::new(Duration::from_secs(7200), 2, true);
        j.on_alert("A", alert("A"), 0);
        j.on_keys("K", vec![key("K", "k", 204)], 1);
        let out = j.on_alert("B", alert("B"), 2);
        assert_eq!(out.len(), 1, "the oldest alert goes out as expired");
        assert_eq!(j.len(), 2);
        assert_eq!(j.take_evicted(), 1);
        assert_eq!(j.take_evicted(), 0);
    }
}
