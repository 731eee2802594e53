//! The alert a detection becomes: the record it fired on, who did it, and where the
//! record came from, with a deterministic id.

use std::sync::Arc;

use serde::Serialize;
use serde_json::Value;
use serde_json::value::RawValue;
use sha2::{Digest, Sha256};

use crate::engine::Detection;
use crate::identity::Actor;
use crate::record::{Event, format_time_ms};
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
    pub record: Arc<RawValue>,
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
        Alert {
            alert_id: alert_id(rule, d, e),
            rule_id: rule.id.clone(),
            title: rule.title.render(e),
            severity: rule.severity,
            tags: rule.tags.clone(),
            event_time: text("eventTime"),
            detected_at: time::OffsetDateTime::now_utc()
                .format(&time::format_description::well_known::Rfc3339)
                .unwrap_or_default(),
            actor: e.actor().clone(),
            event: EventOut {
                event_time: text("eventTime"),
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
