//! The alert a detection becomes: the record it fired on, who did it, and where the
//! record came from, with a deterministic id.

use serde::Serialize;
use serde_json::Value;
use sha2::{Digest, Sha256};

use crate::engine::Detection;
use crate::identity::Actor;
use crate::output::json::{self, Object};
use crate::record::{Event, RecordJson, format_time_ms};
use crate::rules::Rule;

/// Where a record was read from.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct SourceRef {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub file: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub bucket: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub key: Option<String>,
    /// 0-based index of the record in its file.
    pub index: u64,
}

impl SourceRef {
    pub fn file(path: &str, index: u64) -> SourceRef {
        SourceRef {
            file: Some(path.to_owned()),
            bucket: None,
            key: None,
            index,
        }
    }

    pub fn object(bucket: &str, key: &str, index: u64) -> SourceRef {
        SourceRef {
            file: None,
            bucket: Some(bucket.to_owned()),
            key: Some(key.to_owned()),
            index,
        }
    }
}

/// The CloudTrail fields every alert repeats, under their CloudTrail names.
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct EventOut {
    pub event_time: Option<String>,
    pub event_source: Option<String>,
    pub event_name: Option<String>,
    pub aws_region: Option<String>,
    #[serde(rename = "sourceIPAddress")]
    pub source_ip_address: Option<String>,
    pub user_agent: Option<String>,
    pub error_code: Option<String>,
    pub error_message: Option<String>,
    #[serde(rename = "requestID")]
    pub request_id: Option<String>,
    #[serde(rename = "eventID")]
    pub event_id: Option<String>,
    pub recipient_account_id: Option<String>,
}

#[derive(Debug, Clone, Serialize)]
pub struct S3Out {
    pub bucket: Option<String>,
    pub key: Option<String>,
}

/// The threshold that fired.
#[derive(Debug, Clone, Serialize)]
pub struct ThresholdOut {
    pub count: u64,
    pub window: String,
    /// `group_by` field → value.
    pub group: serde_json::Map<String, Value>,
    pub first_event_time: String,
    pub last_event_time: String,
}

/// One alert, as written to JSON lines and sinks.
#[derive(Debug, Clone, Serialize)]
pub struct Alert {
    pub alert_id: String,
    pub rule_id: String,
    pub title: String,
    pub severity: crate::rules::Severity,
    pub tags: Vec<String>,
    pub event_time: Option<String>,
    pub detected_at: String,
    pub actor: Actor,
    pub event: EventOut,
    pub s3: S3Out,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub threshold: Option<ThresholdOut>,
    pub source: SourceRef,
    /// For `DeleteObjects` events: the keys from the S3 server access log lines with
    /// the same request ID (see [`crate::join`]).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub deleted_keys: Option<Vec<crate::join::DeletedKey>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub note: Option<String>,
    /// The raw record as read from its file (with the white space between tokens
    /// dropped), shared with the event and the event's other alerts.
    pub record: RecordJson,
}

impl PartialEq for Alert {
    fn eq(&self, o: &Alert) -> bool {
        self.alert_id == o.alert_id && self.deleted_keys == o.deleted_keys
    }
}

impl Eq for Alert {}

impl Alert {
    /// Builds the alert for `d` on `e`.
    pub fn new(rule: &Rule, d: &Detection, e: &Event, source: SourceRef) -> Alert {
        let text = |k: &str| e.str(k).map(str::to_owned);
        // Records from files arrive compact (the splitter drops the white space
        // between tokens), so they fit on one JSON line as they are.
        let record = e.record_json();
        let threshold = d
            .hit
            .as_ref()
            .zip(rule.threshold.as_ref())
            .map(|(hit, th)| ThresholdOut {
                count: hit.count,
                window: th.window_text.clone(),
                group: th
                    .group_by
                    .iter()
                    .zip(&hit.group)
                    .map(|((name, _), v)| {
                        (name.clone(), v.clone().map_or(Value::Null, Value::String))
                    })
                    .collect(),
                first_event_time: format_time_ms(hit.first_ms),
                last_event_time: format_time_ms(hit.last_ms),
            });
        let s3 = |f| e.norm(f).map(|v| v.display());
        let event_time = text("eventTime");
        Alert {
            alert_id: alert_id(rule, d, e),
            rule_id: rule.id.clone(),
            title: rule.title.render(e),
            severity: rule.severity,
            tags: rule.tags.clone(),
            event_time: event_time.clone(),
            detected_at: detected_at(),
            actor: e.actor().clone(),
            event: EventOut {
                event_time,
                event_source: text("eventSource"),
                event_name: text("eventName"),
                aws_region: text("awsRegion"),
                source_ip_address: text("sourceIPAddress"),
                user_agent: text("userAgent"),
                error_code: text("errorCode"),
                error_message: text("errorMessage"),
                request_id: text("requestID"),
                event_id: text("eventID"),
                recipient_account_id: text("recipientAccountId"),
            },
            s3: S3Out {
                bucket: s3(crate::record::NormField::S3Bucket),
                key: s3(crate::record::NormField::S3Key),
            },
            threshold,
            source,
            deleted_keys: None,
            note: None,
            record,
        }
    }
}

impl Alert {
    /// The alert as one JSON object: what serde writes for it, except that the
    /// record's text is copied as it is (serde takes raw JSON only through
    /// serde_json's `RawValue`, which would check the record once more; the
    /// splitter checked it when it was read), and plain strings are copied without
    /// being escaped a byte at a time. `scan` and the sinks write every alert this
    /// way.
    pub fn write_json(&self, out: &mut Vec<u8>) {
        let mut o = Object::new(out);
        o.str("alert_id", &self.alert_id);
        o.str("rule_id", &self.rule_id);
        o.str("title", &self.title);
        o.str("severity", self.severity.as_str());
        o.with("tags", |out| {
            out.push(b'[');
            for (i, t) in self.tags.iter().enumerate() {
                if i > 0 {
                    out.push(b',');
                }
                json::string(out, t);
            }
            out.push(b']');
        });
        o.opt_str("event_time", &self.event_time);
        o.str("detected_at", &self.detected_at);
        o.with("actor", |out| {
            let a = &self.actor;
            let mut o = Object::new(out);
            o.str("kind", a.kind.as_str());
            o.opt_str("name", &a.name);
            o.opt_str("arn", &a.arn);
            o.opt_str("account", &a.account);
            o.opt_str("principal_id", &a.principal_id);
            o.opt_str("role", &a.role);
            o.opt_str("session", &a.session);
            o.opt_str("permission_set", &a.permission_set);
            o.opt_str("user_id", &a.user_id);
            o.value("via_console", &a.via_console);
            o.value("mfa", &a.mfa);
            o.end();
        });
        o.with("event", |out| {
            let e = &self.event;
            let mut o = Object::new(out);
            o.opt_str("eventTime", &e.event_time);
            o.opt_str("eventSource", &e.event_source);
            o.opt_str("eventName", &e.event_name);
            o.opt_str("awsRegion", &e.aws_region);
            o.opt_str("sourceIPAddress", &e.source_ip_address);
            o.opt_str("userAgent", &e.user_agent);
            o.opt_str("errorCode", &e.error_code);
            o.opt_str("errorMessage", &e.error_message);
            o.opt_str("requestID", &e.request_id);
            o.opt_str("eventID", &e.event_id);
            o.opt_str("recipientAccountId", &e.recipient_account_id);
            o.end();
        });
        o.with("s3", |out| {
            let mut o = Object::new(out);
            o.opt_str("bucket", &self.s3.bucket);
            o.opt_str("key", &self.s3.key);
            o.end();
        });
        if let Some(t) = &self.threshold {
            o.value("threshold", t);
        }
        o.with("source", |out| {
            let s = &self.source;
            let mut o = Object::new(out);
            for (name, v) in [("file", &s.file), ("bucket", &s.bucket), ("key", &s.key)] {
                if let Some(v) = v {
                    o.str(name, v);
                }
            }
            o.value("index", &s.index);
            o.end();
        });
        if let Some(k) = &self.deleted_keys {
            o.value("deleted_keys", k);
        }
        if let Some(n) = &self.note {
            o.str("note", n);
        }
        o.with("record", |out| {
            out.extend_from_slice(self.record.as_str().as_bytes())
        });
        o.end();
    }

    /// [`Alert::write_json`] as a string.
    pub fn to_json(&self) -> String {
        let mut out = Vec::with_capacity(1024 + self.record.as_str().len());
        self.write_json(&mut out);
        String::from_utf8(out).expect("JSON is UTF-8")
    }
}

/// Now, in RFC 3339: when an alert was made.
fn detected_at() -> String {
    time::OffsetDateTime::now_utc()
        .format(&time::format_description::well_known::Rfc3339)
        .unwrap_or_default()
}

/// A stable id: the same rule on the same event (and, for thresholds, the same group)
/// always gives the same id, across processes and restarts, so consumers can drop
/// duplicates from at-least-once delivery. Events are identified by `eventID`, or by
/// their canonical JSON when they have none.
pub fn alert_id(rule: &Rule, d: &Detection, e: &Event) -> String {
    let mut h = Sha256::new();
    h.update(rule.id.as_bytes());
    h.update([0]);
    match e.str("eventID") {
        Some(id) => h.update(id.as_bytes()),
        None => h.update(e.record().to_string().as_bytes()),
    }
    if let Some(hit) = &d.hit {
        for v in &hit.group {
            h.update([0]);
            if let Some(v) = v {
                h.update(v.as_bytes());
            }
        }
    }
    let digest = h.finalize();
    const HEX: &[u8; 16] = b"0123456789abcdef";
    let mut id = String::with_capacity(32);
    for b in &digest[..16] {
        id.push(HEX[usize::from(b >> 4)] as char);
        id.push(HEX[usize::from(b & 15)] as char);
    }
    id
}
