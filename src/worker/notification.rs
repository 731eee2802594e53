//! What an SQS message says: which S3 objects to read.
//!
//! Teams wire the queue up in several ways, and each leaves a different body:
//! S3 event notifications (`Records[].s3`), the same wrapped in an SNS envelope,
//! EventBridge "Object Created" events, and CloudTrail's own SNS notification
//! (`{"s3Bucket": ..., "s3ObjectKey": [...]}`). Set-up messages (`s3:TestEvent`,
//! CloudTrail's "validation message") carry no objects. Pure parsing: no I/O.

use percent_encoding::percent_decode_str;
use serde_json::Value;

/// One object a notification names.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ObjectRef {
    pub bucket: String,
    /// The key, decoded.
    pub key: String,
    /// The key exactly as the notification spelled it, when that differs and the
    /// encoding is uncertain (EventBridge): tried when `key` does not exist.
    pub alt_key: Option<String>,
    pub etag: Option<String>,
    pub size: Option<u64>,
    /// The account the notification says the bucket belongs to (EventBridge's
    /// `account`), checked against the source's `expected_bucket_owner`.
    pub account: Option<String>,
}

/// The meaning of one message body.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Notification {
    /// Objects to read, in order.
    Objects(Vec<ObjectRef>),
    /// `s3:TestEvent`, sent when a bucket notification is configured.
    TestEvent,
    /// CloudTrail's plain-text SNS validation message.
    Validation,
    /// A recognised notification that names no new objects (e.g. only
    /// `ObjectRemoved` records).
    NothingToDo(String),
}

/// A body that is not any known notification.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error(
    "unrecognised SQS message body ({0}); expected an S3, SNS, EventBridge or CloudTrail notification"
)]
pub struct UnknownNotification(pub String);

/// Decodes an S3 event notification key: `+` is a space, then `%XX` escapes.
pub fn decode_s3_key(key: &str) -> String {
    let plus = key.replace('+', " ");
    percent_decode_str(&plus).decode_utf8_lossy().into_owned()
}

fn str_at<'a>(v: &'a Value, path: &[&str]) -> Option<&'a str> {
    let mut cur = v;
    for k in path {
        cur = cur.get(k)?;
    }
    cur.as_str()
}

/// Parses a message body.
pub fn parse(body: &str) -> Result<Notification, UnknownNotification> {
    let trimmed = body.trim();
    if trimmed.starts_with("CloudTrail validation message") {
        return Ok(Notification::Validation);
    }
    let v: Value =
        serde_json::from_str(trimmed).map_err(|e| UnknownNotification(format!("not JSON: {e}")))?;
    parse_value(&v, 0)
}

fn parse_value(v: &Value, depth: u8) -> Result<Notification, UnknownNotification> {
    // SNS envelope (no raw message delivery): the real body is the Message string.
    if v.get("Type").and_then(Value::as_str) == Some("Notification")
        && let Some(msg) = v.get("Message").and_then(Value::as_str)
    {
        if depth > 2 {
            return Err(UnknownNotification("SNS envelopes nested too deep".into()));
        }
        let msg = msg.trim();
        if msg.starts_with("CloudTrail validation message") {
            return Ok(Notification::Validation);
        }
        let inner: Value = serde_json::from_str(msg)
            .map_err(|e| UnknownNotification(format!("SNS Message is not JSON: {e}")))?;
        return parse_value(&inner, depth + 1);
    }
    if v.get("Event").and_then(Value::as_str) == Some("s3:TestEvent") {
        return Ok(Notification::TestEvent);
    }
    if let Some(records) = v.get("Records").and_then(Value::as_array) {
        let mut objects = Vec::new();
        let mut other = Vec::new();
        for r in records {
            let name = r.get("eventName").and_then(Value::as_str).unwrap_or("");
            let is_s3 = r.get("eventSource").and_then(Value::as_str) == Some("aws:s3");
            if !is_s3 || !name.starts_with("ObjectCreated:") {
                other.push(name.to_owned());
                continue;
            }
            let (Some(bucket), Some(raw_key)) = (
                str_at(r, &["s3", "bucket", "name"]),
                str_at(r, &["s3", "object", "key"]),
            ) else {
                return Err(UnknownNotification(
                    "an S3 record without s3.bucket.name or s3.object.key".into(),
                ));
            };
            objects.push(ObjectRef {
                bucket: bucket.to_owned(),
                key: decode_s3_key(raw_key),
                alt_key: None,
                etag: str_at(r, &["s3", "object", "eTag"]).map(str::to_owned),
                size: r.pointer("/s3/object/size").and_then(Value::as_u64),
                account: None,
            });
        }
        return Ok(if objects.is_empty() {
            Notification::NothingToDo(format!(
                "no ObjectCreated records (got: {})",
                other.join(", ")
            ))
        } else {
            Notification::Objects(objects)
        });
    }
    if v.get("source").and_then(Value::as_str) == Some("aws.s3") {
        if v.get("detail-type").and_then(Value::as_str) != Some("Object Created") {
            return Ok(Notification::NothingToDo(format!(
                "EventBridge `{}` event",
                v.get("detail-type").and_then(Value::as_str).unwrap_or("?")
            )));
        }
        let (Some(bucket), Some(raw_key)) = (
            str_at(v, &["detail", "bucket", "name"]),
            str_at(v, &["detail", "object", "key"]),
        ) else {
            return Err(UnknownNotification(
                "an EventBridge event without detail.bucket.name or detail.object.key".into(),
            ));
        };
        // Whether EventBridge URL-encodes keys is not documented: decode `%XX`, and
        // keep the key as sent to try if the decoded one does not exist.
        let decoded = percent_decode_str(raw_key).decode_utf8_lossy().into_owned();
        let alt_key = (decoded != raw_key).then(|| raw_key.to_owned());
        return Ok(Notification::Objects(vec![ObjectRef {
            bucket: bucket.to_owned(),
            key: decoded,
            alt_key,
            etag: str_at(v, &["detail", "object", "etag"]).map(str::to_owned),
            size: v.pointer("/detail/object/size").and_then(Value::as_u64),
            account: str_at(v, &["account"]).map(str::to_owned),
        }]));
    }
    if let (Some(bucket), Some(keys)) = (
        v.get("s3Bucket").and_then(Value::as_str),
        v.get("s3ObjectKey").and_then(Value::as_array),
    ) {
        let objects: Vec<ObjectRef> = keys
            .iter()
            .filter_map(Value::as_str)
            .map(|k| ObjectRef {
                bucket: bucket.to_owned(),
                key: k.to_owned(),
                alt_key: None,
                etag: None,
                size: None,
                account: None,
            })
            .collect();
        return Ok(if objects.is_empty() {
            Notification::NothingToDo("CloudTrail notification without keys".into())
        } else {
            Notification::Objects(objects)
        });
    }
    let keys: Vec<&str> = v
        .as_object()
        .map(|o| o.keys().map(String::as_str).take(6).collect())
        .unwrap_or_default();
    Err(UnknownNotification(format!(
        "top-level keys: {}",
        keys.join(", ")
    )))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn s3_body(key: &str) -> String {
        json!({"Records": [{
            "eventVersion": "2.1", "eventSource": "aws:s3", "awsRegion": "us-east-1",
            "eventTime": "2024-11-05T10:15:00.000Z", "eventName": "ObjectCreated:Put",
            "s3": {"s3SchemaVersion": "1.0", "configurationId": "trailwatch",
                   "bucket": {"name": "trail-logs", "arn": "arn:aws:s3:::trail-logs"},
                   "object": {"key": key, "size": 1234, "eTag": "abc123", "sequencer": "0062"}}
        }]})
        .to_string()
    }

    fn objects(n: Notification) -> Vec<(String, String)> {
        match n {
            Notification::Objects(o) => o.into_iter().map(|o| (o.bucket, o.key)).collect(),
            other => panic!("expected objects, got {other:?}"),
        }
    }

    #[test]
    fn s3_event_notification_with_url_encoded_keys() {
        let cases = [
            (
                "AWSLogs/1/CloudTrail/x.json.gz",
                "AWSLogs/1/CloudTrail/x.json.gz",
            ),
            (
                "with+space/and%2Bplus.json.gz",
                "with space/and+plus.json.gz",
            ),
            ("caf%C3%A9/%E2%9C%93.json", "café/✓.json"),
        ];
        for (raw, want) in cases {
            let got = objects(parse(&s3_body(raw)).unwrap());
            assert_eq!(
                got,
                vec![("trail-logs".to_owned(), want.to_owned())],
                "key {raw}"
            );
        }
        let Notification::Objects(o) = parse(&s3_body("k")).unwrap() else {
            panic!()
        };
        assert_eq!(
            (o[0].etag.as_deref(), o[0].size),
            (Some("abc123"), Some(1234))
        );
    }

    #[test]
    fn every_record_of_a_notification_is_used() {
        let mut v: Value = serde_json::from_str(&s3_body("a")).unwrap();
        let mut second = v["Records"][0].clone();
        second["s3"]["object"]["key"] = "b".into();
        let mut removed = v["Records"][0].clone();
        removed["eventName"] = "ObjectRemoved:Delete".into();
        v["Records"]
            .as_array_mut()
            .unwrap()
            .extend([second, removed]);
        let got = objects(parse(&v.to_string()).unwrap());
        assert_eq!(
            got.iter().map(|(_, k)| k.as_str()).collect::<Vec<_>>(),
            ["a", "b"]
        );
    }

    #[test]
    fn sns_wrapped() {
        let body = json!({"Type": "Notification", "MessageId": "m", "TopicArn": "arn:aws:sns:us-east-1:1:t",
                          "Subject": "Amazon S3 Notification", "Message": s3_body("x%20y"), "Timestamp": "t"});
        assert_eq!(objects(parse(&body.to_string()).unwrap())[0].1, "x y");
    }

    #[test]
    fn eventbridge_object_created() {
        let body = json!({"version": "0", "detail-type": "Object Created", "source": "aws.s3",
            "account": "1", "time": "t", "region": "us-east-1", "resources": ["arn:aws:s3:::trail-logs"],
            "detail": {"version": "0", "bucket": {"name": "trail-logs"},
                       "object": {"key": "a%20b.json.gz", "size": 5, "etag": "e"}, "reason": "PutObject"}});
        let Notification::Objects(o) = parse(&body.to_string()).unwrap() else {
            panic!()
        };
        assert_eq!(o[0].key, "a b.json.gz");
        assert_eq!(
            o[0].alt_key.as_deref(),
            Some("a%20b.json.gz"),
            "the key as sent is kept as a fallback"
        );
        let deleted = body.to_string().replace("Object Created", "Object Deleted");
        assert!(matches!(
            parse(&deleted).unwrap(),
            Notification::NothingToDo(_)
        ));
    }

    #[test]
    fn cloudtrail_sns_notification_lists_every_key() {
        let msg = json!({"s3Bucket": "trail-logs", "s3ObjectKey": [
            "AWSLogs/1/CloudTrail/us-east-1/2024/11/05/a.json.gz",
            "AWSLogs/1/CloudTrail/eu-west-1/2024/11/05/b.json.gz"]});
        let body = json!({"Type": "Notification", "Message": msg.to_string()});
        let got = objects(parse(&body.to_string()).unwrap());
        assert_eq!(got.len(), 2);
        assert!(got[1].1.contains("eu-west-1"));
        // Raw delivery (no envelope) too.
        assert_eq!(objects(parse(&msg.to_string()).unwrap()).len(), 2);
    }

    #[test]
    fn set_up_messages() {
        let test = json!({"Service": "Amazon S3", "Event": "s3:TestEvent", "Time": "t", "Bucket": "trail-logs",
                          "RequestId": "r", "HostId": "h"});
        assert_eq!(parse(&test.to_string()).unwrap(), Notification::TestEvent);
        assert_eq!(
            parse("CloudTrail validation message.").unwrap(),
            Notification::Validation
        );
        let wrapped = json!({"Type": "Notification", "Message": "CloudTrail validation message."});
        assert_eq!(
            parse(&wrapped.to_string()).unwrap(),
            Notification::Validation
        );
    }

    #[test]
    fn unknown_bodies_are_errors_that_say_what_was_seen() {
        let e = parse("hello").unwrap_err();
        assert!(e.to_string().contains("not JSON"), "{e}");
        let e = parse(r#"{"foo": 1, "bar": 2}"#).unwrap_err();
        assert!(
            e.to_string().contains("foo, bar") || e.to_string().contains("bar, foo"),
            "{e}"
        );
        let e = parse(r#"{"Type": "Notification", "Message": "{not json"}"#).unwrap_err();
        assert!(e.to_string().contains("SNS Message is not JSON"), "{e}");
    }
}
