//! SNS sink: one Publish per alert, the alert JSON as message, the title as
//! subject, and `severity` / `rule_id` message attributes for subscription filters.

use std::sync::Arc;

use aws_sdk_sns::Client;
use aws_sdk_sns::types::MessageAttributeValue;

use crate::alert::Alert;
use crate::record::RecordJson;

/// SNS messages are limited to 256 KiB.
const MAX_MESSAGE: usize = 256 * 1024;

pub struct Sns {
    client: Client,
    topic: String,
}

/// SNS subjects: ASCII, no line breaks, under 100 characters.
pub fn subject(title: &str) -> String {
    let clean: String = title
        .chars()
        .map(|c| {
            if c.is_ascii() && !c.is_ascii_control() {
                c
            } else {
                '?'
            }
        })
        .collect();
    let trimmed =
        clean.trim_start_matches(|c: char| !c.is_ascii_alphanumeric() && !c.is_ascii_punctuation());
    let s: String = trimmed.chars().take(99).collect();
    if s.is_empty() {
        "trailwatch alert".to_owned()
    } else {
        s
    }
}

/// The message body: the alert JSON; an alert too large for SNS is sent without
/// its raw record (the record's eventID stays in `event`).
pub fn message(a: &Alert) -> Result<String, String> {
    let full = a.to_json();
    if full.len() <= MAX_MESSAGE {
        return Ok(full);
    }
    // The same members in the same order, the record replaced by a note.
    let mut small = a.clone();
    small.record = RecordJson::string(&format!(
        "omitted: the record made the alert {} bytes, over SNS's 256 KiB",
        full.len()
    ));
    Ok(small.to_json())
}

impl Sns {
    pub fn new(aws: &aws_config::SdkConfig, topic: String) -> Sns {
        Sns {
            client: Client::new(aws),
            topic,
        }
    }

    pub async fn publish(&self, alerts: &[Arc<Alert>]) -> Result<(), (usize, String)> {
        for (i, a) in alerts.iter().enumerate() {
            let attr = |v: &str| {
                MessageAttributeValue::builder()
                    .data_type("String")
                    .string_value(v)
                    .build()
                    .expect("data_type is set")
            };
            let body = message(a).map_err(|e| (i, e))?;
            self.client
                .publish()
                .topic_arn(&self.topic)
                .subject(subject(&a.title))
                .message(body)
                .message_attributes("severity", attr(a.severity.as_str()))
                .message_attributes("rule_id", attr(&a.rule_id))
                .send()
                .await
                .map_err(|e| {
                    (
                        i,
                        format!("Publish to {}: {}", self.topic, crate::aws::error_text(&e)),
                    )
                })?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::{MAX_MESSAGE, message, subject};
    use crate::alert::{Alert, SourceRef};
    use crate::engine::Detection;
    use crate::record::Event;
    use crate::rules::{RuleSet, Strictness};

    /// An alert too large for SNS goes without its record, every other member
    /// in place and in order.
    #[test]
    fn oversized_alerts_go_without_their_record() {
        let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("rules");
        let rules = RuleSet::load(&dir, Strictness::Run).unwrap();
        let rule = rules
            .rules
            .iter()
            .find(|r| r.id == "s3-sso-object-delete")
            .unwrap();
        let event = |big: usize| {
            Event::from_value(serde_json::json!({
                "eventName": "DeleteObject", "eventSource": "s3.amazonaws.com",
                "userIdentity": {"type": "AssumedRole",
                    "arn": "arn:aws:sts::1:assumed-role/AWSReservedSSO_A_0123456789abcdef/j@x"},
                "requestParameters": {"bucketName": "b", "key": "k", "pad": "x".repeat(big)},
            }))
            .unwrap()
        };
        let d = Detection { rule: 0, hit: None };
        let small = Alert::new(rule, &d, &event(10), SourceRef::file("f", 0));
        assert_eq!(message(&small).unwrap(), small.to_json());
        let big = Alert::new(rule, &d, &event(MAX_MESSAGE), SourceRef::file("f", 0));
        let m = message(&big).unwrap();
        assert!(m.len() < 4096, "{} bytes", m.len());
        let v: serde_json::Value = serde_json::from_str(&m).unwrap();
        assert!(
            v["record"]
                .as_str()
                .unwrap()
                .starts_with("omitted: the record made")
        );
        let keys = |s: &str| -> Vec<String> {
            let v: serde_json::Map<String, serde_json::Value> = serde_json::from_str(s).unwrap();
            v.keys().cloned().collect()
        };
        assert_eq!(keys(&m), keys(&big.to_json()));
        assert!(m.starts_with(r#"{"alert_id":"#), "{m}");
    }

    #[test]
    fn subjects_are_ascii_and_short() {
        assert_eq!(
            subject("SSO user jöhn deleted x"),
            "SSO user j?hn deleted x"
        );
        assert_eq!(subject(&"a".repeat(300)).len(), 99);
        assert_eq!(subject("line\nbreak"), "line?break");
        assert_eq!(subject(""), "trailwatch alert");
    }
}
