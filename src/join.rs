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

/// How the join waits for the other side.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Policy {
    /// `scan`: with `hold`, alerts on `DeleteObjects` events wait for the end of
    /// the scan and go out once, carrying every key the access logs name (and the
    /// rows for `--columns deleted-keys`). Without it (no input can be an access
    /// log) they go out at once and memory stays flat.
    Batch { hold: bool },
    /// The worker: alerts go out at once, and wait (bounded, up to `window`) for
    /// their access log lines, since server access logs arrive minutes to hours
    /// after CloudTrail; lines wait for their alert too. When both sides are there,
    /// a follow-up alert with the same `alert_id` and the `deleted_keys` goes out;
    /// alerts that never get lines go out again with a note when they expire. With
    /// `active` false the join waits for nothing until the first key line arrives
    /// (a worker that never reads access logs sends each alert once).
    Streaming {
        window: std::time::Duration,
        max_entries: usize,
        active: bool,
    },
}

/// Both sides of the join, paired by request ID under one [`Policy`]. The
/// stateful step of the evaluator feeds it: [`DeleteJoin::on_request`] and
/// [`DeleteJoin::on_alerts`] as `DeleteObjects` events go by, and
/// [`DeleteJoin::on_file`] with the key lines of each file read to its end.
#[derive(Debug)]
pub struct DeleteJoin {
    policy: Policy,
    /// Whether alerts wait: `hold` in a batch, `active` when streaming.
    holds: bool,
    alerts: HashMap<String, PendingAlerts>,
    keys: HashMap<String, PendingKeys>,
    /// Batch: the request IDs of every `DeleteObjects` event seen (alerted or not):
    /// lines of other requests are the FULL OUTER JOIN's other side.
    requests: HashSet<String>,
    /// Batch: whether any access log line was read (otherwise alerts go out
    /// unchanged, without a note about missing lines).
    saw_access_log: bool,
    /// Arrival order of held alerts, so that a batch gives them out as they came.
    arrived: u64,
    /// Streaming: entries dropped to stay within `max_entries` since the last call
    /// to [`DeleteJoin::take_evicted`].
    evicted: u64,
}

#[derive(Debug)]
struct PendingAlerts {
    since_ms: u64,
    /// With their arrival number.
    alerts: Vec<(u64, Alert)>,
    followed_up: bool,
}

#[derive(Debug)]
struct PendingKeys {
    since_ms: u64,
    keys: Vec<DeletedKey>,
}

/// The access log side of one file, collected while it is read and handed to
/// the join once the file is read to its end ([`DeleteJoin::on_file`]): a file
/// that fails half-way contributes no keys, and its redelivery contributes them
/// once.
#[derive(Debug, Default, Clone)]
pub struct FileKeys {
    saw_access_log: bool,
    by_request: HashMap<String, Vec<DeletedKey>>,
}

impl FileKeys {
    /// Notes an event of the file: a batch-delete key line is kept.
    pub fn observe(&mut self, e: &Event) {
        if e.log_type() != LogType::S3Access {
            return;
        }
        self.saw_access_log = true;
        if let Some(k) = DeletedKey::from_event(e) {
            self.by_request
                .entry(k.request_id.clone())
                .or_default()
                .push(k);
        }
    }

    pub fn is_empty(&self) -> bool {
        !self.saw_access_log && self.by_request.is_empty()
    }

    /// The key lines by request.
    pub fn into_requests(self) -> HashMap<String, Vec<DeletedKey>> {
        self.by_request
    }
}

/// One row of the join, for `--columns deleted-keys`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct JoinRow {
    pub alert: Option<Alert>,
    pub key: Option<DeletedKey>,
}

/// A follow-up of `a`: the same alert (and id) with the request's keys.
pub fn with_keys(a: &Alert, keys: &[DeletedKey]) -> Alert {
    let mut f = a.clone();
    f.deleted_keys = Some(keys.to_vec());
    f.note = Some(
        "follow-up: the keys of this DeleteObjects request, from S3 server access logs".into(),
    );
    f
}

impl DeleteJoin {
    pub fn new(policy: Policy) -> DeleteJoin {
        let holds = match policy {
            Policy::Batch { hold } => hold,
            Policy::Streaming { active, .. } => active,
        };
        DeleteJoin {
            policy,
            holds,
            alerts: HashMap::new(),
            keys: HashMap::new(),
            requests: HashSet::new(),
            saw_access_log: false,
            arrived: 0,
            evicted: 0,
        }
    }

    /// Whether an event is any business of the join: an access log line or a
    /// `DeleteObjects` call.
    pub fn interested(e: &Event) -> bool {
        e.log_type() == LogType::S3Access || delete_objects_request(e).is_some()
    }

    /// Whether alerts on `DeleteObjects` events go through
    /// [`DeleteJoin::on_alerts`] now; when not, they go out as any other.
    pub fn holds(&self) -> bool {
        self.holds
    }

    /// A `DeleteObjects` event was seen, whether or not a rule alerted on it.
    pub fn on_request(&mut self, request_id: &str) {
        if matches!(self.policy, Policy::Batch { .. }) && !self.requests.contains(request_id) {
            self.requests.insert(request_id.to_owned());
        }
    }

    /// The alerts on one `DeleteObjects` event (when [`DeleteJoin::holds`]);
    /// returns what goes out now. A batch holds them all; streaming gives them
    /// back with a follow-up for each when the request's lines came first (and
    /// any alert that the bound evicted).
    pub fn on_alerts(&mut self, request_id: &str, alerts: Vec<Alert>, now_ms: u64) -> Vec<Alert> {
        let streaming = matches!(self.policy, Policy::Streaming { .. });
        let mut out = Vec::new();
        let entry = self
            .alerts
            .entry(request_id.to_owned())
            .or_insert_with(|| PendingAlerts {
                since_ms: now_ms,
                alerts: Vec::new(),
                followed_up: false,
            });
        if streaming {
            out.extend(alerts.iter().cloned());
            if let Some(k) = self.keys.get(request_id) {
                out.extend(alerts.iter().map(|a| with_keys(a, &k.keys)));
                entry.followed_up = true;
            }
        }
        for a in alerts {
            entry.alerts.push((self.arrived, a));
            self.arrived += 1;
        }
        if streaming {
            out.extend(self.bound());
        }
        out
    }

    /// The key lines of one file read to its end; returns the follow-ups due now
    /// (streaming: for the alerts already waiting, with every key seen so far for
    /// their request).
    pub fn on_file(&mut self, file: FileKeys, now_ms: u64) -> Vec<Alert> {
        self.saw_access_log |= file.saw_access_log;
        let mut out = Vec::new();
        for (request_id, keys) in file.by_request {
            if let Policy::Streaming { .. } = self.policy {
                self.holds = true;
            }
            let entry = self
                .keys
                .entry(request_id.clone())
                .or_insert_with(|| PendingKeys {
                    since_ms: now_ms,
                    keys: Vec::new(),
                });
            entry.keys.extend(keys);
            if matches!(self.policy, Policy::Batch { .. }) {
                continue;
            }
            let all = entry.keys.clone();
            if let Some(p) = self.alerts.get_mut(&request_id) {
                out.extend(p.alerts.iter().map(|(_, a)| with_keys(a, &all)));
                p.followed_up = true;
            }
            out.extend(self.bound());
        }
        out
    }

    /// Entries held (requests whose alerts wait plus requests whose lines wait).
    pub fn len(&self) -> usize {
        self.alerts.len() + self.keys.len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Streaming: entries older than the window go; alerts that never got lines
    /// go out again with a note.
    pub fn expire(&mut self, now_ms: u64) -> Vec<Alert> {
        let Policy::Streaming { window, .. } = self.policy else {
            return Vec::new();
        };
        let w = window.as_millis() as u64;
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

    /// Streaming: drops the oldest entries beyond `max_entries` (alerts go out as
    /// expired).
    fn bound(&mut self) -> Vec<Alert> {
        let Policy::Streaming { max_entries, .. } = self.policy else {
            return Vec::new();
        };
        let mut out = Vec::new();
        while self.len() > max_entries.max(1) {
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

    /// Batch: the held alerts in arrival order, with their request ID.
    fn held(&self) -> Vec<(&str, &Alert)> {
        let mut held: Vec<(u64, &str, &Alert)> = self
            .alerts
            .iter()
            .flat_map(|(id, p)| p.alerts.iter().map(move |(n, a)| (*n, id.as_str(), a)))
            .collect();
        held.sort_unstable_by_key(|(n, _, _)| *n);
        held.into_iter().map(|(_, id, a)| (id, a)).collect()
    }

    /// Batch: the held alerts with their keys attached (when access logs were
    /// read). One at a time, so that writing them does not hold a second copy of
    /// all.
    pub fn finish_alerts(&self) -> impl Iterator<Item = Alert> + '_ {
        self.held().into_iter().map(|(id, a)| {
            let mut a = a.clone();
            if self.saw_access_log {
                let keys = self.keys.get(id).map(|k| k.keys.clone());
                attach(&mut a, keys.unwrap_or_default());
            }
            a
        })
    }

    /// Batch: FULL OUTER JOIN rows: one per (alerted event, key); an alerted event
    /// without lines once; lines of requests without any CloudTrail event once
    /// each.
    pub fn rows(&self) -> Vec<JoinRow> {
        let mut out = Vec::new();
        let mut seen_alert_requests = HashSet::new();
        for (id, a) in self.held() {
            // Several rules may alert on the same event: one set of rows per event.
            if !seen_alert_requests.insert((id, a.event.event_id.clone())) {
                continue;
            }
            match self.keys.get(id) {
                Some(k) if !k.keys.is_empty() => out.extend(k.keys.iter().map(|k| JoinRow {
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
            out.extend(self.keys[id].keys.iter().map(|k| JoinRow {
                alert: None,
                key: Some(k.clone()),
            }));
        }
        out
    }
}

fn expired(p: PendingAlerts) -> Vec<Alert> {
    if p.followed_up {
        return Vec::new();
    }
    p.alerts
        .into_iter()
        .map(|(_, mut a)| {
            a.deleted_keys = Some(Vec::new());
            a.note = Some(
                "no S3 server access log lines arrived for this request within the join window"
                    .into(),
            );
            a
        })
        .collect()
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
            &Detection::matched(0),
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

    fn streaming(max_entries: usize, active: bool) -> DeleteJoin {
        DeleteJoin::new(Policy::Streaming {
            window: Duration::from_secs(7200),
            max_entries,
            active,
        })
    }

    /// A file whose access log lines are `keys`.
    fn file(keys: Vec<DeletedKey>) -> FileKeys {
        let mut f = FileKeys {
            saw_access_log: true,
            ..FileKeys::default()
        };
        for k in keys {
            f.by_request
                .entry(k.request_id.clone())
                .or_default()
                .push(k);
        }
        f
    }

    #[test]
    fn lines_after_the_alert_give_a_follow_up_with_the_same_id() {
        let mut j = streaming(100, true);
        let a = alert("R1");
        let now = j.on_alerts("R1", vec![a.clone()], 0);
        assert_eq!(
            now,
            vec![a.clone()],
            "the alert goes out at once, unchanged"
        );
        let f = j.on_file(
            file(vec![key("R1", "a", 204), key("R1", "b", 403)]),
            10 * MIN,
        );
        assert_eq!(f.len(), 1);
        assert_eq!(f[0].alert_id, a.alert_id);
        assert_eq!(f[0].deleted_keys.as_ref().unwrap().len(), 2);
        // More lines of the same request: another follow-up with every key.
        let f = j.on_file(file(vec![key("R1", "c", 204)]), 11 * MIN);
        assert_eq!(f[0].deleted_keys.as_ref().unwrap().len(), 3);
        // Once followed up, expiry emits nothing more.
        assert!(j.expire(200 * MIN).is_empty());
        assert!(j.is_empty());
    }

    #[test]
    fn lines_before_the_alert_are_held() {
        let mut j = streaming(100, true);
        assert!(j.on_file(file(vec![key("R2", "x", 204)]), 0).is_empty());
        let f = j.on_alerts("R2", vec![alert("R2")], MIN);
        assert_eq!(f.len(), 2, "the alert and its follow-up");
        assert_eq!(f[0].deleted_keys, None);
        assert_eq!(f[1].deleted_keys.as_ref().unwrap()[0].key, "x");
    }

    #[test]
    fn alerts_without_lines_expire_with_a_note() {
        let mut j = streaming(100, true);
        j.on_alerts("R3", vec![alert("R3")], 0);
        j.on_file(file(vec![key("ORPHAN", "y", 204)]), 0);
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
        let mut j = streaming(100, false);
        assert!(!j.holds(), "nothing is held, so nothing is sent again");
        assert!(j.expire(200 * MIN).is_empty());
        j.on_file(file(vec![key("K", "k", 204)]), 0);
        assert!(j.holds(), "the first access log line switches the join on");
        j.on_alerts("R2", vec![alert("R2")], 0);
        assert_eq!(j.len(), 2);
    }

    #[test]
    fn the_bound_evicts_the_oldest_and_counts_it() {
        let mut j = streaming(2, true);
        j.on_alerts("A", vec![alert("A")], 0);
        j.on_file(file(vec![key("K", "k", 204)]), 1);
        let out = j.on_alerts("B", vec![alert("B")], 2);
        assert_eq!(out.len(), 2, "B itself, and the oldest alert as expired");
        assert_eq!(out[1].deleted_keys, Some(vec![]));
        assert_eq!(j.len(), 2);
        assert_eq!(j.take_evicted(), 1);
        assert_eq!(j.take_evicted(), 0);
    }

    #[test]
    fn a_batch_holds_alerts_to_the_end_in_arrival_order_with_every_key() {
        let mut j = DeleteJoin::new(Policy::Batch { hold: true });
        j.on_request("B");
        assert!(j.on_alerts("B", vec![alert("B")], 0).is_empty(), "held");
        j.on_request("A");
        assert!(j.on_alerts("A", vec![alert("A")], 0).is_empty(), "held");
        assert!(j.on_file(file(vec![key("A", "a1", 204)]), 0).is_empty());
        assert!(
            j.on_file(file(vec![key("A", "a2", 204), key("Z", "z", 204)]), 0)
                .is_empty()
        );
        let out: Vec<Alert> = j.finish_alerts().collect();
        assert_eq!(
            out[0].event.request_id.as_deref(),
            Some("B"),
            "arrival order"
        );
        assert_eq!(out[0].deleted_keys, Some(vec![]), "no lines: noted");
        let keys: Vec<&str> = out[1]
            .deleted_keys
            .as_ref()
            .unwrap()
            .iter()
            .map(|k| k.key.as_str())
            .collect();
        assert_eq!(keys, ["a1", "a2"], "both files' keys, in file order");
        let rows = j.rows();
        assert_eq!(
            rows.len(),
            4,
            "B without lines, A's two keys, Z's orphan line"
        );
        assert!(rows[3].alert.is_none() && rows[3].key.as_ref().unwrap().key == "z");
    }
}
