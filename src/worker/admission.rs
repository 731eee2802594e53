//! Which objects a source may read: the allow-list between a forged SQS message
//! and the worker's S3 role.
//!
//! Anyone allowed to send to the queue chooses what the worker reads. IAM bounds
//! what the role *can* read; this bounds what the worker *will* read: the source's
//! buckets, an optional key prefix and the account that must own the buckets. A
//! message naming anything else is not read: it is rejected (deleted, logged with
//! its sender, counted as `NotificationsRejected`) and raised as an alert of its own
//! through the built-in rule `trailwatch-forged-notification`, since someone is
//! feeding the detector. Pure logic: no I/O, no AWS types.

use std::path::Path;

use serde_json::json;

use super::notification::ObjectRef;
use crate::config::SourceConfig;
use crate::record::Event;
use crate::rules::{Rule, RuleSet};

/// The built-in rule's file, compiled into the binary.
const FORGED_RULE: &str = include_str!("forged-notification.toml");

/// What a source admits, resolved from its configuration once.
#[derive(Debug, Clone, Default)]
pub struct Admission {
    buckets: Vec<String>,
    key_prefix: Option<String>,
    owner: Option<String>,
}

/// Why an object was not admitted.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Rejection {
    #[error("bucket not in the source's buckets")]
    Bucket,
    #[error("key outside the source's key_prefix")]
    KeyPrefix,
    /// The notification says the bucket belongs to another account.
    #[error("bucket owned by account {0}, not the expected_bucket_owner")]
    Owner(String),
}

impl Admission {
    pub fn new(cfg: &SourceConfig) -> Admission {
        Admission {
            buckets: cfg.buckets.clone(),
            key_prefix: cfg.key_prefix.clone().filter(|p| !p.is_empty()),
            owner: cfg.expected_bucket_owner.clone(),
        }
    }

    /// Whether the source reads objects of any bucket (no allow-list configured).
    pub fn is_open(&self) -> bool {
        self.buckets.is_empty()
    }

    /// The account that must own the buckets, for S3's `ExpectedBucketOwner`.
    pub fn expected_owner(&self) -> Option<&str> {
        self.owner.as_deref()
    }

    pub fn check(&self, obj: &ObjectRef) -> Result<(), Rejection> {
        if !self.buckets.is_empty() && !self.buckets.contains(&obj.bucket) {
            return Err(Rejection::Bucket);
        }
        if let Some(p) = &self.key_prefix
            && !obj.key.starts_with(p.as_str())
        {
            return Err(Rejection::KeyPrefix);
        }
        if let (Some(want), Some(stated)) = (&self.owner, &obj.account)
            && want != stated
        {
            return Err(Rejection::Owner(stated.clone()));
        }
        Ok(())
    }
}

/// The SQS message a rejected object came in.
#[derive(Debug, Clone, Default)]
pub struct MessageMeta {
    pub queue_url: String,
    pub message_id: String,
    /// SQS's `SenderId`: the account or principal that sent the message.
    pub sender_id: Option<String>,
    /// SQS's `SentTimestamp` (ms): the event time, so that a redelivered message
    /// gives the same alert id.
    pub sent_ms: Option<i64>,
}

/// The built-in rule that turns a rejection into an alert.
pub fn forged_rule() -> Rule {
    let set = RuleSet::from_text(
        Path::new("<built-in>/forged-notification.toml"),
        FORGED_RULE,
    )
    .unwrap_or_else(|d| panic!("the built-in rule compiles: {d}"));
    set.rules
        .into_iter()
        .next()
        .expect("the built-in file holds one rule")
}

/// The worker's own record of a rejected object: what the built-in rule matches.
/// `n` is the object's place in its message, so each object has its own event id.
pub fn rejection_event(msg: &MessageMeta, n: usize, obj: &ObjectRef, why: &Rejection) -> Event {
    let time = msg
        .sent_ms
        .and_then(|ms| {
            time::OffsetDateTime::from_unix_timestamp_nanos(i128::from(ms) * 1_000_000).ok()
        })
        .and_then(|t| {
            t.format(&time::format_description::well_known::Rfc3339)
                .ok()
        });
    let queue = msg.queue_url.rsplit('/').next().unwrap_or(&msg.queue_url);
    Event::from_value(json!({
        "eventVersion": "1.0",
        "eventTime": time,
        "eventSource": "trailwatch",
        "eventName": "RejectedNotification",
        "requestParameters": {"bucketName": obj.bucket, "key": obj.key},
        "eventID": format!("{}/{n}", msg.message_id),
        "trailwatch": {
            "queue": queue,
            "queue_url": msg.queue_url,
            "message_id": msg.message_id,
            "sender_id": msg.sender_id,
            "reason": why.to_string(),
            "stated_owner": obj.account,
        },
    }))
    .expect("an object is a record")
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::alert::{Alert, SourceRef};
    use crate::engine::{Engine, EngineOptions};

    fn obj(bucket: &str, key: &str, account: Option<&str>) -> ObjectRef {
        ObjectRef {
            bucket: bucket.into(),
            key: key.into(),
            alt_key: None,
            etag: None,
            size: None,
            account: account.map(str::to_owned),
        }
    }

    fn admission(buckets: &[&str], prefix: Option<&str>, owner: Option<&str>) -> Admission {
        Admission::new(&SourceConfig {
            buckets: buckets.iter().map(|b| b.to_string()).collect(),
            key_prefix: prefix.map(str::to_owned),
            expected_bucket_owner: owner.map(str::to_owned),
            ..SourceConfig::default()
        })
    }

    #[test]
    fn only_the_listed_buckets_under_the_prefix_and_owner_are_read() {
        let a = admission(
            &["trail", "access-logs"],
            Some("AWSLogs/"),
            Some("111122223333"),
        );
        assert_eq!(a.check(&obj("trail", "AWSLogs/x.json.gz", None)), Ok(()));
        assert_eq!(
            a.check(&obj("access-logs", "AWSLogs/y", Some("111122223333"))),
            Ok(())
        );
        assert_eq!(
            a.check(&obj("other", "AWSLogs/x.json.gz", None)),
            Err(Rejection::Bucket)
        );
        // Bucket names are exact: no prefix or case games.
        assert_eq!(
            a.check(&obj("trail-evil", "AWSLogs/x", None)),
            Err(Rejection::Bucket)
        );
        assert_eq!(
            a.check(&obj("TRAIL", "AWSLogs/x", None)),
            Err(Rejection::Bucket)
        );
        assert_eq!(
            a.check(&obj("trail", "planted/x.json", None)),
            Err(Rejection::KeyPrefix)
        );
        assert_eq!(
            a.check(&obj("trail", "AWSLogs/x", Some("999999999999"))),
            Err(Rejection::Owner("999999999999".into()))
        );
    }

    #[test]
    fn no_allow_list_reads_any_bucket() {
        let a = admission(&[], None, None);
        assert!(a.is_open());
        assert_eq!(a.check(&obj("anything", "k", Some("1"))), Ok(()));
    }

    #[test]
    fn a_rejection_alerts_through_the_built_in_rule_with_a_stable_id() {
        let rule = forged_rule();
        assert_eq!(rule.id, "trailwatch-forged-notification");
        let set = RuleSet {
            rules: vec![rule],
            warnings: Vec::new(),
        };
        let meta = MessageMeta {
            queue_url: "https://sqs.eu-west-1.amazonaws.com/111122223333/trailwatch".into(),
            message_id: "m-1".into(),
            sender_id: Some("AIDAEVIL".into()),
            sent_ms: Some(1_730_801_100_000),
        };
        let o = obj("victim-bucket", "secrets/\u{1b}[2Jx.json", None);
        let e = rejection_event(&meta, 0, &o, &Rejection::Bucket);
        let mut engine = Engine::new(&set, EngineOptions::default());
        let mut d = Vec::new();
        engine.evaluate(&e, &mut d);
        assert_eq!(d.len(), 1);
        let a = Alert::new(
            &engine.rules()[0],
            &d[0],
            &e,
            SourceRef::object("victim-bucket", "k", 0),
        );
        assert_eq!(a.severity.as_str(), "high");
        assert_eq!(a.event_time.as_deref(), Some("2024-11-05T10:05:00Z"));
        assert_eq!(
            a.title,
            "A message on trailwatch named s3://victim-bucket/secrets/\u{1b}[2Jx.json, which this worker may not read (bucket not in the source's buckets); sender AIDAEVIL"
        );
        // The same message delivered again gives the same alert.
        let again = rejection_event(&meta, 0, &o, &Rejection::Bucket);
        let a2 = Alert::new(
            &engine.rules()[0],
            &d[0],
            &again,
            SourceRef::object("victim-bucket", "k", 0),
        );
        assert_eq!(a.alert_id, a2.alert_id);
    }
}
