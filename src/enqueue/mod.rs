//! `trailwatch enqueue`: backfills on the fleet. Every object under an S3 prefix
//! is announced to the workers' queue as the S3 event notification S3 itself would
//! have sent, so the workers that already watch the queue read the history too,
//! with their sinks, their state and their delivery guarantees — instead of one
//! `scan` on one machine.
//!
//! With `--since`/`--until`, the CloudTrail layout
//! (`[prefix/]AWSLogs/[o-org/]ACCOUNT/CloudTrail/REGION/YYYY/MM/DD/file.json.gz`)
//! is walked with `ListObjectsV2` and `Delimiter="/"` down to the day folders, and
//! only the days that overlap [since, until) are listed: years, months and days
//! outside the range cost one folder name, not their objects. Keys that do not
//! follow the layout (a folder of manual exports, an access log prefix, another
//! service under `AWSLogs/`) are listed and kept: the range only prunes what the
//! layout dates. CloudTrail digest files and folder markers are skipped.
//!
//! The pure parts (the body, which folders to list, batching, what a batch answer
//! leaves to retry) take no AWS types and are unit-tested here; the S3 listing and
//! the SQS sends are a thin edge at the bottom.

use std::future::Future;
use std::ops::Range;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::anyhow;
use percent_encoding::{AsciiSet, NON_ALPHANUMERIC, utf8_percent_encode};
use serde::Serialize;
use time::{Date, Month, OffsetDateTime};

use crate::input;
use crate::worker::notification::decode_s3_key;

mod batch;
mod edge;
mod layout;

pub use batch::*;
pub use edge::*;
pub use layout::*;

// ---------------------------------------------------------------------------
// The notification body
// ---------------------------------------------------------------------------

/// An object the listing found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Listed {
    pub key: String,
    pub size: u64,
    /// The ETag without its quotes, as S3 notifications carry it (the worker
    /// remembers completed objects by bucket, key and ETag).
    pub etag: Option<String>,
    /// When the object was written: the notification's `eventTime`.
    pub last_modified_ms: Option<i64>,
}

/// What S3 leaves as is in a notification's key: letters, digits, `-_.*` and `/`
/// (Java's form encoding, with the path separator kept). A space becomes `+`
/// (see [`encode_s3_key`]), so a literal `+` must be escaped.
const S3_KEY_KEEP: &AsciiSet = &NON_ALPHANUMERIC
    .remove(b'-')
    .remove(b'_')
    .remove(b'.')
    .remove(b'*')
    .remove(b'/');

/// Encodes a key the way S3 event notifications do: spaces as `+`, then every
/// other byte outside [`S3_KEY_KEEP`] as `%XX` of its UTF-8. The inverse of
/// [`crate::worker::notification::decode_s3_key`].
pub fn encode_s3_key(key: &str) -> String {
    key.split(' ')
        .map(|part| utf8_percent_encode(part, S3_KEY_KEEP).to_string())
        .collect::<Vec<_>>()
        .join("+")
}

/// The ARN partition of a region: buckets in China and GovCloud have their own.
fn partition(region: &str) -> &'static str {
    if region.starts_with("cn-") {
        "aws-cn"
    } else if region.starts_with("us-gov-") {
        "aws-us-gov"
    } else {
        "aws"
    }
}

/// `eventTime` as S3 writes it: UTC with milliseconds.
fn event_time(ms: i64) -> String {
    let t = OffsetDateTime::from_unix_timestamp_nanos(i128::from(ms) * 1_000_000)
        .unwrap_or(OffsetDateTime::UNIX_EPOCH);
    t.format(time::macros::format_description!(
        "[year]-[month]-[day]T[hour]:[minute]:[second].[subsecond digits:3]Z"
    ))
    .unwrap_or_default()
}

#[derive(Serialize)]
struct Notification<'a> {
    #[serde(rename = "Records")]
    records: [Record<'a>; 1],
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct Record<'a> {
    event_version: &'static str,
    event_source: &'static str,
    aws_region: &'a str,
    event_time: String,
    event_name: &'static str,
    s3: Entity<'a>,
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct Entity<'a> {
    s3_schema_version: &'static str,
    /// Real notifications name the bucket's notification configuration here; this
    /// one says who sent the message, for whoever reads the queue.
    configuration_id: &'static str,
    bucket: Bucket<'a>,
    object: Object<'a>,
}

#[derive(Serialize)]
struct Bucket<'a> {
    name: &'a str,
    arn: String,
}

#[derive(Serialize)]
struct Object<'a> {
    key: String,
    size: u64,
    #[serde(rename = "eTag", skip_serializing_if = "Option::is_none")]
    etag: Option<&'a str>,
}

/// The message body for one object: an `ObjectCreated:Put` record shaped as S3
/// sends it, so the worker treats a backfill exactly like a new file. `now_ms`
/// stands in for an object without a modification time.
pub fn notification_body(bucket: &str, region: &str, obj: &Listed, now_ms: i64) -> String {
    let body = Notification {
        records: [Record {
            event_version: "2.1",
            event_source: "aws:s3",
            aws_region: region,
            event_time: event_time(obj.last_modified_ms.unwrap_or(now_ms)),
            event_name: "ObjectCreated:Put",
            s3: Entity {
                s3_schema_version: "1.0",
                configuration_id: "trailwatch-enqueue",
                bucket: Bucket {
                    name: bucket,
                    arn: format!("arn:{}:s3:::{bucket}", partition(region)),
                },
                object: Object {
                    key: encode_s3_key(&obj.key),
                    size: obj.size,
                    etag: obj.etag.as_deref(),
                },
            },
        }],
    };
    serde_json::to_string(&body).expect("plain strings and numbers serialise")
}

// ---------------------------------------------------------------------------
// Which folders to list
// ---------------------------------------------------------------------------

#[cfg(test)]
mod tests {
    use super::*;
    use crate::worker::notification::{Notification, parse};

    fn listed(key: &str) -> Listed {
        Listed {
            key: key.to_owned(),
            size: 1234,
            etag: Some("0123abcd".into()),
            last_modified_ms: Some(1_730_801_700_000),
        }
    }

    /// What S3 sends for a key, and what the worker reads back: the same key,
    /// bucket, size and ETag, for spaces, `+`, `%` and non-ASCII alike.
    #[test]
    fn bodies_round_trip_through_the_worker_parser() {
        for key in [
            "AWSLogs/111122223333/CloudTrail/us-east-1/2024/11/05/a.json.gz",
            "manual exports/with space.json.gz",
            "plus+sign/and%percent%2B.json.gz",
            "café/✓ ü 日本.json.gz",
            "odd:chars=(1)&~'!\"#.json",
        ] {
            let body = notification_body("trail-logs", "eu-west-1", &listed(key), 0);
            let Ok(Notification::Objects(objects)) = parse(&body) else {
                panic!("{body} is not read as objects");
            };
            assert_eq!(objects.len(), 1);
            let o = &objects[0];
            assert_eq!(
                (o.bucket.as_str(), o.key.as_str()),
                ("trail-logs", key),
                "{body}"
            );
            assert_eq!((o.size, o.etag.as_deref()), (Some(1234), Some("0123abcd")));
        }
    }

    #[test]
    fn keys_are_encoded_as_s3_encodes_them() {
        assert_eq!(encode_s3_key("a b+c%d/é.json"), "a+b%2Bc%25d/%C3%A9.json");
        assert_eq!(
            encode_s3_key("AWSLogs/1/CloudTrail/x_y-z.json.gz"),
            "AWSLogs/1/CloudTrail/x_y-z.json.gz"
        );
        assert_eq!(encode_s3_key("t=10:00"), "t%3D10%3A00");
    }

    #[test]
    fn the_body_has_the_shape_s3_sends() {
        let body = notification_body("trail-logs", "cn-north-1", &listed("k"), 0);
        let v: serde_json::Value = serde_json::from_str(&body).unwrap();
        let r = &v["Records"][0];
        assert_eq!(r["eventVersion"], "2.1");
        assert_eq!(r["eventSource"], "aws:s3");
        assert_eq!(r["awsRegion"], "cn-north-1");
        assert_eq!(r["eventTime"], "2024-11-05T10:15:00.000Z");
        assert_eq!(r["eventName"], "ObjectCreated:Put");
        assert_eq!(r["s3"]["s3SchemaVersion"], "1.0");
        assert_eq!(r["s3"]["bucket"]["name"], "trail-logs");
        assert_eq!(r["s3"]["bucket"]["arn"], "arn:aws-cn:s3:::trail-logs");
        assert_eq!(r["s3"]["object"]["key"], "k");
        assert_eq!(r["s3"]["object"]["size"], 1234);
        assert_eq!(r["s3"]["object"]["eTag"], "0123abcd");
        let no_time = Listed {
            last_modified_ms: None,
            etag: None,
            ..listed("k")
        };
        let v: serde_json::Value =
            serde_json::from_str(&notification_body("b", "us-east-1", &no_time, 0)).unwrap();
        assert_eq!(v["Records"][0]["eventTime"], "1970-01-01T00:00:00.000Z");
        assert!(v["Records"][0]["s3"]["object"].get("eTag").is_none());
    }

    fn day(y: i32, m: u8, d: u8) -> Place {
        Place::Dated(Dated::Day(
            Date::from_calendar_date(y, Month::try_from(m).unwrap(), d).unwrap(),
        ))
    }

    #[test]
    fn folders_are_placed_in_the_cloudtrail_layout() {
        let base = "AWSLogs/111122223333/CloudTrail/us-east-1/";
        assert_eq!(place(""), Place::Above);
        assert_eq!(place("custom/prefix/"), Place::Above);
        assert_eq!(place("AWSLogs/"), Place::Above);
        assert_eq!(place("AWSLogs/o-abcdef1234/"), Place::Above);
        assert_eq!(place(base), Place::Above);
        assert_eq!(
            place(&format!("{base}2024/")),
            Place::Dated(Dated::Year(2024))
        );
        assert_eq!(
            place(&format!("{base}2024/11/")),
            Place::Dated(Dated::Month(2024, Month::November))
        );
        assert_eq!(place(&format!("{base}2024/11/05/")), day(2024, 11, 5));
        assert_eq!(
            place(&format!("{base}2024/11/05/deeper/")),
            day(2024, 11, 5)
        );
        assert_eq!(
            place("trail/AWSLogs/o-abcdef1234/111122223333/CloudTrail/eu-west-1/2024/02/29/"),
            day(2024, 2, 29)
        );
        assert_eq!(
            place("AWSLogs/111122223333/CloudTrail-Insight/us-east-1/2024/11/05/"),
            day(2024, 11, 5)
        );
        assert_eq!(
            place("AWSLogs/111122223333/CloudTrail-Digest/"),
            Place::Digest
        );
        for outside in [
            "AWSLogs/notes/",
            "AWSLogs/111122223333/elasticloadbalancing/",
            &format!("{base}latest/"),
            &format!("{base}2024/13/"),
            &format!("{base}2023/02/29/"),
            &format!("{base}2024/1/"),
        ] {
            assert_eq!(place(outside), Place::Outside, "{outside}");
        }
    }

    fn window(since: &str, until: &str) -> Window {
        Window {
            since_ms: crate::record::parse_time_ms(since),
            until_ms: crate::record::parse_time_ms(until),
        }
    }

    /// Days overlapping [since, until) are listed, their years and months
    /// descended into; the rest is skipped without listing.
    #[test]
    fn only_days_in_the_window_are_listed() {
        let base = "AWSLogs/111122223333/CloudTrail/us-east-1/";
        let w = window("2024-11-05T12:00:00Z", "2024-11-06T00:00:00Z");
        let at = |f: &str| step(&format!("{base}{f}"), &w);
        assert_eq!(at("2024/11/05/"), Step::ListAll);
        assert_eq!(at("2024/11/04/"), Step::Skip(Pruned::Day));
        assert_eq!(
            at("2024/11/06/"),
            Step::Skip(Pruned::Day),
            "until is exclusive"
        );
        assert_eq!(at("2024/11/"), Step::Descend);
        assert_eq!(at("2024/10/"), Step::Skip(Pruned::Month));
        assert_eq!(at("2024/12/"), Step::Skip(Pruned::Month));
        assert_eq!(at("2024/"), Step::Descend);
        assert_eq!(at("2023/"), Step::Skip(Pruned::Year));
        assert_eq!(at("latest/"), Step::ListAll, "outside the layout: kept");
        assert_eq!(step("", &w), Step::Descend);
        assert_eq!(
            step("AWSLogs/111122223333/CloudTrail-Digest/", &w),
            Step::Skip(Pruned::Digests)
        );
        // Open ends.
        let since = Window {
            until_ms: None,
            ..w
        };
        assert_eq!(step(&format!("{base}2030/"), &since), Step::Descend);
        assert_eq!(
            step(&format!("{base}2024/11/04/"), &since),
            Step::Skip(Pruned::Day)
        );
        let until = Window {
            since_ms: None,
            ..w
        };
        assert_eq!(step(&format!("{base}1999/01/01/"), &until), Step::ListAll);
        // December's month ends with the year.
        let dec = window("2024-12-31T23:00:00Z", "2025-01-01T00:00:00Z");
        assert_eq!(step(&format!("{base}2024/12/"), &dec), Step::Descend);
        assert_eq!(
            step(&format!("{base}2025/01/"), &dec),
            Step::Skip(Pruned::Month)
        );
    }

    #[test]
    fn the_first_step_judges_a_partial_prefix_by_its_folder() {
        let w = window("2024-11-05T00:00:00Z", "2024-11-06T00:00:00Z");
        let base = "AWSLogs/111122223333/CloudTrail/us-east-1/";
        assert_eq!(first_step("", &w), Step::Descend);
        assert_eq!(first_step("AWS", &w), Step::Descend);
        assert_eq!(first_step(&format!("{base}2024/11/0"), &w), Step::Descend);
        assert_eq!(
            first_step(&format!("{base}2024/11/05/x"), &w),
            Step::ListAll
        );
        assert_eq!(
            first_step(&format!("{base}2024/11/04/"), &w),
            Step::Skip(Pruned::Day)
        );
        assert_eq!(first_step("manual/ex", &Window::default()), Step::ListAll);
        assert_eq!(first_step(base, &Window::default()), Step::ListAll);
    }

    #[test]
    fn folder_markers_and_digests_are_not_kept() {
        let (mut skipped, mut kept) = (Skipped::default(), Vec::new());
        for key in [
            "AWSLogs/1/CloudTrail/us-east-1/2024/11/05/",
            "AWSLogs/1/CloudTrail-Digest/us-east-1/2024/11/05/d.json.gz",
            "AWSLogs/1/CloudTrail/us-east-1/2024/11/05/a.json.gz",
        ] {
            skipped.admit(listed(key), &mut kept);
        }
        assert_eq!(
            kept,
            [listed(
                "AWSLogs/1/CloudTrail/us-east-1/2024/11/05/a.json.gz"
            )]
        );
        assert_eq!((skipped.folder_markers, skipped.digest_files), (1, 1));
    }

    #[test]
    fn the_summary_line_says_what_was_sent_and_skipped() {
        let mut s = Skipped::default();
        let line = |s: &Skipped| summary_line(3, 4096, "Q", Duration::from_millis(1250), s);
        assert_eq!(line(&s), "enqueued 3 objects (4096 bytes) to Q in 1.2 s");
        s.pruned(Pruned::Day);
        s.pruned(Pruned::Day);
        s.pruned(Pruned::Year);
        s.pruned(Pruned::Digests);
        assert_eq!(
            line(&s),
            "enqueued 3 objects (4096 bytes) to Q in 1.2 s; skipped 2 days, 1 year outside \
             --since/--until, 1 digest folder"
        );
    }

    #[test]
    fn batches_hold_ten_messages_and_256_kib() {
        assert_eq!(batches(&[]), Vec::<Range<usize>>::new());
        assert_eq!(batches(&[600; 25]), [0..10, 10..20, 20..25]);
        let big = 100 * 1024;
        assert_eq!(batches(&[big, big, big, 10]), [0..2, 2..4]);
        assert_eq!(
            batches(&[300 * 1024, 10]),
            [0..1, 1..2],
            "too big goes alone"
        );
    }

    #[test]
    fn answers_leave_what_failed_to_retry() {
        let answer = Answer {
            accepted: vec![10],
            failed: vec![
                Failure {
                    index: 11,
                    reason: "InternalError".into(),
                    sender_fault: false,
                },
                Failure {
                    index: 12,
                    reason: "InvalidMessageContents".into(),
                    sender_fault: true,
                },
            ],
        };
        let (again, refused) = sort_out(&[10, 11, 12, 13], &answer);
        assert_eq!(
            again.iter().map(|u| u.index).collect::<Vec<_>>(),
            [11, 13],
            "an entry not in the answer was not sent"
        );
        assert_eq!(refused.iter().map(|u| u.index).collect::<Vec<_>>(), [12]);
    }

    fn no_wait() -> Retry {
        Retry {
            max_attempts: 3,
            delay: |_| Duration::ZERO,
        }
    }

    fn failure(index: usize, sender_fault: bool) -> Failure {
        Failure {
            index,
            reason: "ServiceUnavailable".into(),
            sender_fault,
        }
    }

    /// A retry sends only what is still pending; what keeps failing is reported
    /// with its reason and the number of attempts.
    #[tokio::test]
    async fn failed_entries_are_retried_then_reported() {
        let mut calls: Vec<Vec<usize>> = Vec::new();
        let unsent = send_batch(vec![0, 1, 2, 3], no_wait(), |pending| {
            calls.push(pending.clone());
            let n = calls.len();
            async move {
                let failed: Vec<Failure> = pending
                    .iter()
                    .filter(|&&i| i == 3 || (i == 1 && n == 1) || i == 2)
                    .map(|&i| failure(i, i == 2))
                    .collect();
                let accepted = pending
                    .iter()
                    .copied()
                    .filter(|i| !failed.iter().any(|f| f.index == *i))
                    .collect();
                Ok(Answer { accepted, failed })
            }
        })
        .await
        .unwrap();
        assert_eq!(calls, [vec![0, 1, 2, 3], vec![1, 3], vec![3]]);
        assert_eq!(
            unsent,
            [
                Unsent {
                    index: 2,
                    reason: "ServiceUnavailable".into()
                },
                Unsent {
                    index: 3,
                    reason: "ServiceUnavailable (after 3 attempts)".into()
                }
            ]
        );
    }

    #[tokio::test]
    async fn failed_calls_are_retried_unless_retrying_cannot_help() {
        let mut n = 0;
        let flaky = send_batch(vec![0, 1], no_wait(), |pending| {
            n += 1;
            let first = n == 1;
            async move {
                match first {
                    true => Err(CallFailed {
                        message: "timeout".into(),
                        permanent: false,
                    }),
                    false => Ok(Answer {
                        accepted: pending,
                        failed: vec![],
                    }),
                }
            }
        })
        .await;
        assert_eq!(flaky, Ok(vec![]));

        let mut n = 0;
        let denied = send_batch(vec![0], no_wait(), |_| {
            n += 1;
            async {
                Err(CallFailed {
                    message: "AccessDenied".into(),
                    permanent: true,
                })
            }
        })
        .await;
        assert_eq!(n, 1, "not retried");
        assert!(denied.unwrap_err().message.contains("AccessDenied"));

        let down = send_batch(vec![0], no_wait(), |_| async {
            Err(CallFailed {
                message: "connection refused".into(),
                permanent: false,
            })
        })
        .await;
        assert_eq!(
            down.unwrap_err().message,
            "connection refused (after 3 attempts)"
        );
    }

    #[test]
    fn a_partial_run_is_an_error_that_counts_what_is_missing() {
        let mut r = Report {
            listed: 5,
            sent: 5,
            ..Report::default()
        };
        assert_eq!(r.failure("Q", "b"), None);
        r.sent = 3;
        r.unsent = vec![("k".into(), "InternalError (after 5 attempts)".into())];
        let e = r.failure("Q", "b").unwrap();
        assert!(
            e.starts_with("2 of 5 objects were not sent to Q (the first: s3://b/k: InternalError"),
            "{e}"
        );
        assert!(
            e.contains("rerunning"),
            "a partial run says how to send the rest: {e}"
        );
        r.sent = 0;
        r.stopped = Some("SendMessageBatch to Q: AccessDenied".into());
        let e = r.failure("Q", "b").unwrap();
        assert!(e.contains("(sending stopped: SendMessageBatch"), "{e}");
        assert!(
            !e.contains("rerunning"),
            "nothing went: fix the cause first: {e}"
        );
    }
}
