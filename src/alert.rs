//! The alert a detection becomes: the record it fired on, who did it, and where the
//! record came from, with a deterministic id.

use std::borrow::Cow;

use serde::{Deserialize, Serialize};
use serde_json::Value;
use sha2::{Digest, Sha256};

use crate::engine::Detection;
use crate::identity::Actor;
use crate::json::writer::{self, Object};
use crate::record::{Event, RecordJson, format_time_ms};
use crate::rules::Rule;

/// Where a record was read from.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
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
#[derive(Debug, Clone, Serialize, Deserialize)]
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

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct S3Out {
    pub bucket: Option<String>,
    pub key: Option<String>,
}

/// The threshold that fired.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ThresholdOut {
    pub count: u64,
    pub window: String,
    /// `group_by` field → value.
    pub group: serde_json::Map<String, Value>,
    /// The window that reached the count: `[window_start, window_end)`, aligned
    /// to the epoch, the same whatever order its events were read in.
    pub window_start: String,
    pub window_end: String,
}

/// One alert, as written to JSON lines and sinks.
#[derive(Debug, Clone, Serialize, Deserialize)]
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
    pub deleted_keys: Option<Vec<DeletedKey>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub note: Option<String>,
    /// The raw record as read from its file (with the white space between tokens
    /// dropped), shared with the event and the event's other alerts.
    pub record: RecordJson,
}

/// One key of a batch delete, from its access log line (see [`crate::join`],
/// which reads it and pairs it with its `DeleteObjects` alert).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
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
    /// Who sent the request, from where and with what, as the access log has them:
    /// the who and where of a row whose request no alerted `DeleteObjects` matched.
    #[serde(skip)]
    pub requester: Option<String>,
    #[serde(skip)]
    pub remote_ip: Option<String>,
    #[serde(skip)]
    pub user_agent: Option<String>,
}

impl PartialEq for Alert {
    fn eq(&self, o: &Alert) -> bool {
        self.alert_id == o.alert_id && self.deleted_keys == o.deleted_keys
    }
}

impl Eq for Alert {}

/// The CloudTrail members of [`EventOut`], in its order: each is read from the
/// record under the name it is written with.
const EVENT_MEMBERS: [&str; 11] = [
    "eventTime",
    "eventSource",
    "eventName",
    "awsRegion",
    "sourceIPAddress",
    "userAgent",
    "errorCode",
    "errorMessage",
    "requestID",
    "eventID",
    "recipientAccountId",
];

impl EventOut {
    /// The members in [`EVENT_MEMBERS`]' order.
    fn from_members(m: [Option<String>; 11]) -> EventOut {
        let [
            event_time,
            event_source,
            event_name,
            aws_region,
            source_ip_address,
            user_agent,
            error_code,
            error_message,
            request_id,
            event_id,
            recipient_account_id,
        ] = m;
        EventOut {
            event_time,
            event_source,
            event_name,
            aws_region,
            source_ip_address,
            user_agent,
            error_code,
            error_message,
            request_id,
            event_id,
            recipient_account_id,
        }
    }

    /// The members, borrowed, in [`EVENT_MEMBERS`]' order.
    fn members(&self) -> [Option<&str>; 11] {
        [
            &self.event_time,
            &self.event_source,
            &self.event_name,
            &self.aws_region,
            &self.source_ip_address,
            &self.user_agent,
            &self.error_code,
            &self.error_message,
            &self.request_id,
            &self.event_id,
            &self.recipient_account_id,
        ]
        .map(Option::as_deref)
    }
}

/// What an alert works out from its rule, detection and event; the rest of it is
/// the event's and the rule's own text.
struct Derived {
    alert_id: String,
    title: String,
    detected_at: String,
    threshold: Option<ThresholdOut>,
}

impl Derived {
    fn new(rule: &Rule, d: &Detection, e: &Event) -> Derived {
        Derived {
            alert_id: alert_id(rule, d, e),
            title: rule.title.render(e),
            detected_at: detected_at(),
            threshold: d
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
                    window_start: format_time_ms(hit.start_ms),
                    window_end: format_time_ms(hit.end_ms),
                }),
        }
    }
}

/// The event's members of an alert: [`EVENT_MEMBERS`], then the S3 bucket and key.
fn event_members(e: &Event) -> ([Option<&str>; 11], [Option<Cow<'_, str>>; 2]) {
    let s3 = |f| {
        e.norm(f)
            .map(|v| v.text().unwrap_or_else(|| Cow::Owned(v.display())))
    };
    (
        EVENT_MEMBERS.map(|k| e.str(k)),
        [
            s3(crate::record::NormField::S3Bucket),
            s3(crate::record::NormField::S3Key),
        ],
    )
}

impl Alert {
    /// Builds the alert for `d` on `e`.
    pub fn new(rule: &Rule, d: &Detection, e: &Event, source: SourceRef) -> Alert {
        let Derived {
            alert_id,
            title,
            detected_at,
            threshold,
        } = Derived::new(rule, d, e);
        let (event, s3) = event_members(e);
        let event = EventOut::from_members(event.map(|v| v.map(str::to_owned)));
        let [bucket, key] = s3.map(|v| v.map(Cow::into_owned));
        Alert {
            alert_id,
            rule_id: rule.id.clone(),
            title,
            severity: rule.severity,
            tags: rule.tags.clone(),
            event_time: event.event_time.clone(),
            detected_at,
            actor: e.actor().clone(),
            event,
            s3: S3Out { bucket, key },
            threshold,
            source,
            deleted_keys: None,
            note: None,
            // Records from files arrive compact (the splitter drops the white
            // space between tokens), so they fit on one JSON line as they are.
            record: e.record_json(),
        }
    }

    /// The alert for `d` on `e` as [`Alert::new`] would build it, borrowed from the
    /// event, the rule and `source` for as long as `f` looks at it: writing an alert
    /// this way makes only what is not in the event or the rule (the id, the title,
    /// `detected_at`, a threshold's summary), not the owned alert's thirty-odd
    /// strings.
    pub fn with_ref<R>(
        rule: &Rule,
        d: &Detection,
        e: &Event,
        source: &SourceRef,
        f: impl FnOnce(&AlertRef<'_>) -> R,
    ) -> R {
        let derived = Derived::new(rule, d, e);
        let (event, s3) = event_members(e);
        let record = e.record_json();
        f(&AlertRef {
            alert_id: &derived.alert_id,
            rule_id: &rule.id,
            title: &derived.title,
            severity: rule.severity,
            tags: &rule.tags,
            event_time: event[0],
            detected_at: &derived.detected_at,
            actor: e.actor(),
            event,
            s3: [s3[0].as_deref(), s3[1].as_deref()],
            threshold: derived.threshold.as_ref(),
            source,
            deleted_keys: None,
            note: None,
            record: record.as_str(),
        })
    }

    /// The alert, borrowed.
    pub fn view(&self) -> AlertRef<'_> {
        AlertRef {
            alert_id: &self.alert_id,
            rule_id: &self.rule_id,
            title: &self.title,
            severity: self.severity,
            tags: &self.tags,
            event_time: self.event_time.as_deref(),
            detected_at: &self.detected_at,
            actor: &self.actor,
            event: self.event.members(),
            s3: [self.s3.bucket.as_deref(), self.s3.key.as_deref()],
            threshold: self.threshold.as_ref(),
            source: &self.source,
            deleted_keys: self.deleted_keys.as_deref(),
            note: self.note.as_deref(),
            record: self.record.as_str(),
        }
    }

    /// See [`AlertRef::write_json`].
    pub fn write_json(&self, out: &mut Vec<u8>) {
        self.view().write_json(out);
    }

    /// [`Alert::write_json`] as a string.
    pub fn to_json(&self) -> String {
        let mut out = Vec::with_capacity(1024 + self.record.as_str().len());
        self.write_json(&mut out);
        String::from_utf8(out).expect("JSON is UTF-8")
    }
}

/// An alert's members, borrowed: from an [`Alert`] ([`Alert::view`]) or from
/// the event it fires on ([`Alert::with_ref`]). Both are written by the one
/// [`AlertRef::write_json`].
#[derive(Debug)]
pub struct AlertRef<'a> {
    pub alert_id: &'a str,
    pub rule_id: &'a str,
    pub title: &'a str,
    pub severity: crate::rules::Severity,
    pub tags: &'a [String],
    pub event_time: Option<&'a str>,
    pub detected_at: &'a str,
    pub actor: &'a Actor,
    /// [`EventOut`]'s members in its order.
    pub event: [Option<&'a str>; 11],
    /// The S3 bucket and key.
    pub s3: [Option<&'a str>; 2],
    pub threshold: Option<&'a ThresholdOut>,
    pub source: &'a SourceRef,
    pub deleted_keys: Option<&'a [DeletedKey]>,
    pub note: Option<&'a str>,
    pub record: &'a str,
}

impl AlertRef<'_> {
    /// The alert as one JSON object: what serde writes for an [`Alert`], except
    /// that the record's text is copied as it is (serde takes raw JSON only through
    /// serde_json's `RawValue`, which would check the record once more; the
    /// splitter checked it when it was read), and plain strings are copied without
    /// being escaped a byte at a time. `scan` and the sinks write every alert this
    /// way.
    pub fn write_json(&self, out: &mut Vec<u8>) {
        let mut o = Object::new(out);
        o.str("alert_id", self.alert_id);
        o.str("rule_id", self.rule_id);
        o.str("title", self.title);
        o.str("severity", self.severity.as_str());
        o.with("tags", |out| {
            out.push(b'[');
            for (i, t) in self.tags.iter().enumerate() {
                if i > 0 {
                    out.push(b',');
                }
                writer::string(out, t);
            }
            out.push(b']');
        });
        o.opt_str("event_time", self.event_time);
        o.str("detected_at", self.detected_at);
        o.with("actor", |out| {
            let a = self.actor;
            let mut o = Object::new(out);
            o.str("kind", a.kind.as_str());
            o.opt_str("name", a.name.as_deref());
            o.opt_str("arn", a.arn.as_deref());
            o.opt_str("account", a.account.as_deref());
            o.opt_str("principal_id", a.principal_id.as_deref());
            o.opt_str("role", a.role.as_deref());
            o.opt_str("session", a.session.as_deref());
            o.opt_str("permission_set", a.permission_set.as_deref());
            o.opt_str("user_id", a.user_id.as_deref());
            o.value("via_console", &a.via_console);
            o.value("mfa", &a.mfa);
            o.end();
        });
        o.with("event", |out| {
            let mut o = Object::new(out);
            for (name, v) in EVENT_MEMBERS.iter().zip(self.event) {
                o.opt_str(name, v);
            }
            o.end();
        });
        o.with("s3", |out| {
            let mut o = Object::new(out);
            o.opt_str("bucket", self.s3[0]);
            o.opt_str("key", self.s3[1]);
            o.end();
        });
        if let Some(t) = self.threshold {
            o.value("threshold", t);
        }
        o.with("source", |out| {
            let s = self.source;
            let mut o = Object::new(out);
            for (name, v) in [("file", &s.file), ("bucket", &s.bucket), ("key", &s.key)] {
                if let Some(v) = v {
                    o.str(name, v);
                }
            }
            o.value("index", &s.index);
            o.end();
        });
        if let Some(k) = self.deleted_keys {
            o.value("deleted_keys", k);
        }
        if let Some(n) = self.note {
            o.str("note", n);
        }
        o.with("record", |out| {
            out.extend_from_slice(self.record.as_bytes())
        });
        o.end();
    }
}

/// Now, in RFC 3339: when an alert was made.
fn detected_at() -> String {
    time::OffsetDateTime::now_utc()
        .format(&time::format_description::well_known::Rfc3339)
        .unwrap_or_default()
}

/// A stable id, so consumers can drop duplicates from at-least-once delivery. A
/// rule that no window decides: the same rule on the same event always gives the
/// same id, across processes and restarts; events are identified by `eventID`, or by
/// their canonical JSON when they have none. A windowed rule's alert is its
/// window's ([`Detection::gate`]: the threshold window that reached its count, or
/// the suppression bucket that let it out), whichever event completed it.
pub fn alert_id(rule: &Rule, d: &Detection, e: &Event) -> String {
    let mut h = Sha256::new();
    match &d.gate {
        Some(gate) => {
            h.update(b"window\0");
            h.update(gate.text().as_bytes());
        }
        None => {
            h.update(rule.id.as_bytes());
            h.update([0]);
            match e.str("eventID") {
                Some(id) => h.update(id.as_bytes()),
                None => h.update(e.record().to_string().as_bytes()),
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
