//! SNS sink: one Publish per alert, the alert JSON as message, the title as
//! subject, and `severity` / `rule_id` message attributes for subscription filters.

use std::sync::Arc;

use aws_sdk_sns::Client;
use aws_sdk_sns::types::MessageAttributeValue;

use crate::alert::Alert;

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
    let mut v = serde_json::to_value(a).map_err(|e| e.to_string())?;
    v["record"] = serde_json::Value::String(format!(
        "omitted: the record made the alert {} bytes, over SNS's 256 KiB",
        full.len()
    ));
    serde_json::to_string(&v).map_err(|e| e.to_string())
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
    use super::subject;

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
