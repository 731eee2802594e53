//! Hostile senders: whoever may send to the queue chooses what a message names. The
//! worker reads only the objects its source admits (buckets, key prefix, owner);
//! anything else is rejected, counted and alerted on, and never read.

use serde_json::{Value, json};

use crate::support::worker::*;
use crate::support::*;

/// An S3 event notification body naming `bucket`/`key`, as S3 would write it.
fn s3_notification(bucket: &str, key: &str) -> String {
    json!({"Records": [{
        "eventVersion": "2.1", "eventSource": "aws:s3", "awsRegion": "us-east-1",
        "eventTime": "2024-11-05T10:15:00.000Z", "eventName": "ObjectCreated:Put",
        "s3": {"s3SchemaVersion": "1.0", "bucket": {"name": bucket, "arn": format!("arn:aws:s3:::{bucket}")},
               "object": {"key": key, "size": 100}}
    }]})
    .to_string()
}

/// An EventBridge "Object Created" event from `account`.
fn eventbridge_notification(account: &str, bucket: &str, key: &str) -> String {
    json!({"version": "0", "id": "6a7e8feb-b491-4cf7-a9f1-bf3703467718", "detail-type": "Object Created",
           "source": "aws.s3", "account": account, "time": "2024-11-05T10:15:00Z", "region": "us-east-1",
           "resources": [format!("arn:aws:s3:::{bucket}")],
           "detail": {"version": "0", "bucket": {"name": bucket}, "object": {"key": key, "size": 100}}})
    .to_string()
}

/// Messages naming another bucket, a key outside the prefix and a bucket of another
/// account are not read: each is deleted, logged with its sender, counted as
/// NotificationsRejected and raised as a high `trailwatch-forged-notification`
/// alert (on SNS too); the real file beside them is read as usual.
#[test]
fn forged_notifications_are_rejected_alerted_and_never_read() {
    let bed = Bed::new(3);
    // What the attacker planted: records that would alert (and name them) if read.
    let forged = gzip(&cloudtrail(&[s3_event(
        1,
        "DeleteObject",
        "forger@example.com",
        None,
    )]));
    bed.rt.block_on(async {
        bed.s3
            .create_bucket()
            .bucket("attacker-bucket")
            .send()
            .await
            .unwrap();
        bed.s3
            .put_object()
            .bucket("attacker-bucket")
            .key("AWSLogs/forged.json.gz")
            .body(forged.clone().into())
            .send()
            .await
            .unwrap();
    });
    // Planted in the trail bucket itself: S3's own notification names it too, and
    // is rejected like the forged one (its key is outside the prefix).
    bed.put("planted/forged.json.gz", forged.clone());
    // The real file, with its real notification.
    bed.put(
        "AWSLogs/111122223333/CloudTrail/eu-west-1/2024/11/05/real.json.gz",
        gzip(&cloudtrail(&[s3_event(
            2,
            "DeleteObject",
            "jane.doe@example.com",
            None,
        )])),
    );
    bed.send(&s3_notification(
        "attacker-bucket",
        "AWSLogs/forged.json.gz",
    ));
    bed.send(&s3_notification(BUCKET, "planted/forged.json.gz"));
    bed.send(&eventbridge_notification(
        "999999999999",
        BUCKET,
        "AWSLogs/x/forged.json.gz",
    ));

    let rules = bed.dir.path().join("rules");
    write(
        &rules.join("s3-sso-object-delete.toml"),
        std::fs::read(root().join("rules/s3-sso-object-delete.toml")).unwrap(),
    );
    let cfg = bed.config(&rules, "");
    let mut w = bed.spawn_with(
        &cfg,
        &["--until-idle", "3s"],
        &[
            ("TRAILWATCH_BUCKETS", BUCKET),
            ("TRAILWATCH_KEY_PREFIX", "AWSLogs/"),
            ("TRAILWATCH_EXPECTED_BUCKET_OWNER", "123456789012"),
        ],
    );
    assert_eq!(bed.wait_exit(&mut w, 90), 0, "{}", bed.log());

    let alerts = bed.alerts();
    let by_rule =
        |id: &str| -> Vec<&Value> { alerts.iter().filter(|a| a["rule_id"] == id).collect() };
    let real = by_rule("s3-sso-object-delete");
    assert_eq!(real.len(), 1, "only the real file was read: {alerts:#?}");
    assert_eq!(real[0]["actor"]["name"], "jane.doe@example.com");
    assert!(
        !alerts
            .iter()
            .any(|a| a["actor"]["name"] == "forger@example.com")
    );

    let forged: Vec<&Value> = by_rule("trailwatch-forged-notification");
    assert_eq!(forged.len(), 4, "{alerts:#?}\n{}", bed.log());
    let mut reasons: Vec<String> = forged
        .iter()
        .map(|a| {
            assert_eq!(a["severity"], "high");
            let t = a["title"].as_str().unwrap();
            assert!(t.starts_with("A message on trailwatch named s3://"), "{t}");
            assert!(t.contains("sender "), "{t}");
            a["record"]["trailwatch"]["reason"]
                .as_str()
                .unwrap()
                .to_owned()
        })
        .collect();
    reasons.sort();
    assert_eq!(
        reasons,
        [
            "bucket not in the source's buckets",
            "bucket owned by account 999999999999, not the expected_bucket_owner",
            "key outside the source's key_prefix",
            "key outside the source's key_prefix",
        ]
    );
    let named: Vec<&str> = forged
        .iter()
        .map(|a| a["s3"]["bucket"].as_str().unwrap())
        .collect();
    assert!(named.contains(&"attacker-bucket"), "{named:?}");
    // Each has a sender: SQS's SenderId of whoever sent it.
    assert!(
        forged
            .iter()
            .all(|a| a["record"]["trailwatch"]["sender_id"].is_string())
    );

    let sns = bed.inbox();
    let on_sns = sns
        .iter()
        .filter(|m| m["MessageAttributes"]["rule_id"]["Value"] == "trailwatch-forged-notification")
        .count();
    assert_eq!(on_sns, 4, "high alerts reach the alert topic");

    let log = bed.log();
    assert_eq!(log.matches("notification rejected").count(), 4, "{log}");
    assert!(log.contains("sender_id=Some("), "{log}");
    assert_eq!(bed.depth(&bed.queue), 0, "rejected messages are deleted");
    assert_eq!(bed.depth(&bed.dlq), 0);
    wait_for("NotificationsRejected", 30, || {
        bed.metric("NotificationsRejected", None) == 4.0
    });
}

/// Without `buckets`, the worker says at start-up that it reads whatever a message
/// names.
#[test]
fn an_open_source_is_warned_about() {
    let bed = Bed::new(3);
    let rules = bed.dir.path().join("rules");
    write(
        &rules.join("s3-sso-object-delete.toml"),
        std::fs::read(root().join("rules/s3-sso-object-delete.toml")).unwrap(),
    );
    let cfg = bed.config(&rules, "");
    let mut w = bed.spawn(&cfg, &["--until-idle", "1s"]);
    assert_eq!(bed.wait_exit(&mut w, 60), 0, "{}", bed.log());
    assert!(bed.log().contains("no [source] buckets"), "{}", bed.log());
}
