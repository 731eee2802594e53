//! SNS sink: alerts go ten to a PublishBatch call, each the alert JSON as message,
//! the title as subject, and `severity` / `rule_id` message attributes for
//! subscription filters.

use std::ops::Range;
use std::sync::Arc;

use aws_sdk_sns::Client;
use aws_sdk_sns::types::{MessageAttributeValue, PublishBatchRequestEntry};

use super::Unsent;
use crate::alert::Alert;
use crate::record::RecordJson;

/// SNS messages are limited to 256 KiB, subject and attributes included: the
/// alert JSON may take all but 1 KiB of it (a subject is under 100 characters).
const MAX_MESSAGE: usize = 255 * 1024;

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
        "omitted: the record made the alert {} bytes, more than an SNS message holds",
        full.len()
    ));
    Ok(small.to_json())
}

/// What PublishBatch takes in one call: ten messages, 256 KiB of them in all.
const BATCH_ENTRIES: usize = 10;
const BATCH_BYTES: usize = 256 * 1024;

/// What an entry weighs against [`BATCH_BYTES`]: its message, subject and
/// attributes (SNS counts attributes in a message's size).
fn weight(body: &str, subject: &str, severity: &str, rule_id: &str) -> usize {
    body.len()
        + subject.len()
        + "severity".len()
        + severity.len()
        + "rule_id".len()
        + rule_id.len()
        + 2 * "String".len()
}

/// Consecutive runs of entries (by weight) for PublishBatch calls: at most ten
/// entries and [`BATCH_BYTES`] each; an entry that weighs more goes alone (SNS
/// then says why it was refused).
fn batches(weights: &[usize]) -> Vec<Range<usize>> {
    crate::aws::batches(weights, BATCH_ENTRIES, BATCH_BYTES)
}

/// The entries of a batch that SNS did not report as published (by index into
/// the alerts); entry ids are their index in the batch.
fn not_published(batch: &Range<usize>, published: &[&str]) -> Vec<usize> {
    batch
        .clone()
        .filter(|i| !published.contains(&(i - batch.start).to_string().as_str()))
        .collect()
}

impl Sns {
    pub fn new(aws: &aws_config::SdkConfig, topic: String) -> Sns {
        Sns {
            client: Client::new(aws),
            topic,
        }
    }

    /// Publishes the alerts ten to a PublishBatch call (one call per alert would
    /// cap a worker at a few dozen alerts a second). On failure: the alerts not
    /// published, by index, and why; the batches after a failed one are not tried.
    pub async fn publish(&self, alerts: &[Arc<Alert>]) -> Result<(), Unsent> {
        let attr = |v: &str| {
            MessageAttributeValue::builder()
                .data_type("String")
                .string_value(v)
                .build()
                .expect("data_type is set")
        };
        let mut entries = Vec::with_capacity(alerts.len());
        let mut weights = Vec::with_capacity(alerts.len());
        for (i, a) in alerts.iter().enumerate() {
            let body = message(a).map_err(|e| Unsent::from(i, alerts.len(), e))?;
            let subject = subject(&a.title);
            weights.push(weight(&body, &subject, a.severity.as_str(), &a.rule_id));
            entries.push((body, subject));
        }
        let mut entries = entries.into_iter();
        let batches = batches(&weights);
        for (n, batch) in batches.iter().enumerate() {
            let mut call = self.client.publish_batch().topic_arn(&self.topic);
            for (i, (body, subject)) in entries.by_ref().take(batch.len()).enumerate() {
                let a = &alerts[batch.start + i];
                let entry = PublishBatchRequestEntry::builder()
                    .id(i.to_string())
                    .message(body)
                    .subject(subject)
                    .message_attributes("severity", attr(a.severity.as_str()))
                    .message_attributes("rule_id", attr(&a.rule_id))
                    .build()
                    .expect("id and message are set");
                call = call.publish_batch_request_entries(entry);
            }
            let rest = || batches[n + 1..].iter().flat_map(Range::clone);
            let out = call.send().await.map_err(|e| Unsent {
                left: batch.clone().chain(rest()).collect(),
                message: format!(
                    "PublishBatch to {}: {}",
                    self.topic,
                    crate::aws::error_text(&e)
                ),
            })?;
            let published: Vec<&str> = out.successful().iter().filter_map(|e| e.id()).collect();
            let left = not_published(batch, &published);
            if !left.is_empty() {
                let why = match out.failed().first() {
                    Some(f) => format!(
                        "{}{}{}",
                        f.code(),
                        f.message().map(|m| format!(": {m}")).unwrap_or_default(),
                        if f.sender_fault() {
                            " (sender fault)"
                        } else {
                            ""
                        }
                    ),
                    None => "no result for the entry".to_owned(),
                };
                return Err(Unsent {
                    message: format!(
                        "PublishBatch to {}: {} of {} messages not published: {why}",
                        self.topic,
                        left.len(),
                        batch.len()
                    ),
                    left: left.into_iter().chain(rest()).collect(),
                });
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::{BATCH_BYTES, MAX_MESSAGE, batches, message, not_published, subject};
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
        let d = Detection::matched(0);
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

    /// Batches keep the alerts' order, take each alert once, and hold at most ten
    /// entries and 256 KiB; an entry over 256 KiB goes alone.
    #[test]
    fn batches_hold_ten_entries_and_256_kib() {
        let kib = 1024;
        assert_eq!(batches(&[]), Vec::<std::ops::Range<usize>>::new());
        assert_eq!(batches(&[100; 25]), vec![0..10, 10..20, 20..25]);
        assert_eq!(batches(&[100; 10]), vec![0..10]);
        // 100 KiB each: two fit, a third would pass 256 KiB.
        assert_eq!(batches(&[100 * kib; 5]), vec![0..2, 2..4, 4..5]);
        assert_eq!(batches(&[BATCH_BYTES - 10, 10, 1]), vec![0..2, 2..3]);
        assert_eq!(
            batches(&[10, BATCH_BYTES + 1, 10, 10]),
            vec![0..1, 1..2, 2..4]
        );
        let weights: Vec<usize> = (0..500).map(|i| (i * 7919) % (90 * kib) + 1).collect();
        let got = batches(&weights);
        let flat: Vec<usize> = got.iter().flat_map(|r| r.clone()).collect();
        assert_eq!(flat, (0..500).collect::<Vec<_>>());
        for r in &got {
            assert!(r.len() <= 10, "{r:?}");
            assert!(
                weights[r.clone()].iter().sum::<usize>() <= BATCH_BYTES,
                "{r:?}"
            );
        }
    }

    /// An entry SNS did not report as published (failed, or missing from the
    /// answer) is sent again; the others are not.
    #[test]
    fn entries_not_reported_published_are_left() {
        assert_eq!(
            not_published(&(20..25), &["0", "1", "2", "3", "4"]),
            Vec::<usize>::new()
        );
        assert_eq!(not_published(&(20..25), &["0", "2", "4"]), vec![21, 23]);
        assert_eq!(not_published(&(0..3), &[]), vec![0, 1, 2]);
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
