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

use serde::Serialize;
use serde_json::Value;

use crate::alert::Alert;
use crate::record::{Event, LogType};

/// The access log operation of one key of a multi-object delete.
pub const BATCH_DELETE: &str = "BATCH.DELETE.OBJECT";

/// One key of a batch delete, from its access log line.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct DeletedKey {
    pub key: String,
    pub http_status: Option<u64>,
    /// `AccessDenied` for a key the caller may not delete.
    pub error_code: Option<String>,
    pub version_id: Option<String>,
    #[serde(skip)]
    pub request_id: String,
    #[serde(skip)]
    pub bucket: Option<String>,
    #[serde(skip)]
    pub time: Option<String>,
}

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

    pub fn hold(&mut self, request_id: &str, alert: Alert) {
        self.held.push((request_id.to_owned(), alert));
    }

    /// The held alerts with their keys attached (when access logs were read).
    pub fn finish_alerts(&self) -> Vec<Alert> {
        self.held
            .iter()
            .map(|(id, a)| {
                let mut a = a.clone();
                if self.saw_access_log {
                    attach(&mut a, self.keys.get(id).cloned().unwrap_or_default());
                }
                a
            })
            .collect()
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
    /// per-key columns from the access log line; absent values are empty.
    pub fn cells(&self) -> [String; 12] {
        let o = |v: &Option<String>| v.clone().unwrap_or_default();
        let a = self.alert.as_ref();
        let k = self.key.as_ref();
        let error_code = match (k, a) {
            (Some(k), _) => o(&k.error_code),
            (None, Some(a)) => o(&a.event.error_code),
            _ => String::new(),
        };
        [
            a.map(|a| o(&a.event.event_time)).unwrap_or_default(),
            a.map(|a| o(&a.s3.bucket))
                .or_else(|| k.map(|k| o(&k.bucket)))
                .unwrap_or_default(),
            a.map(|a| o(&a.event.event_name)).unwrap_or_default(),
            k.map(|k| k.key.clone()).unwrap_or_default(),
            a.map(|a| o(&a.actor.arn)).unwrap_or_default(),
            a.map(|a| o(&a.event.source_ip_address)).unwrap_or_default(),
            a.map(|a| o(&a.event.user_agent)).unwrap_or_default(),
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
