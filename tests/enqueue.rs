//! `trailwatch enqueue` against the emulator: which objects a date range sends,
//! and the worker, fed by it, finding what `scan` finds.

use std::collections::{BTreeMap, BTreeSet, HashSet};
use std::time::{Duration, Instant};

use serde_json::Value;
use trailwatch::worker::notification::{Notification, parse};

use crate::support::moto::Moto;
use crate::support::worker::*;
use crate::support::*;

const ACCOUNT_TRAIL: &str = "AWSLogs/111122223333/CloudTrail/us-east-1";

async fn put(s3: &aws_sdk_s3::Client, bucket: &str, key: &str, body: Vec<u8>) {
    s3.put_object()
        .bucket(bucket)
        .key(key)
        .body(body.into())
        .send()
        .await
        .unwrap();
}

/// `trailwatch enqueue ARGS...` against the emulator: (exit code, stdout, stderr).
fn enqueue(moto: &Moto, args: &[&str]) -> (i32, String, String) {
    let mut cmd = trailwatch();
    moto.apply(&mut cmd);
    run(cmd.arg("enqueue").args(args))
}

/// Every message on `queue`, as (body, decoded key), until `want` arrived (or the
/// deadline passed) and one more receive came back empty.
async fn receive_all(
    sqs: &aws_sdk_sqs::Client,
    queue: &str,
    want: usize,
) -> BTreeMap<String, Value> {
    let mut got = BTreeMap::new();
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let msgs = sqs
            .receive_message()
            .queue_url(queue)
            .max_number_of_messages(10)
            .wait_time_seconds(1)
            .send()
            .await
            .unwrap()
            .messages
            .unwrap_or_default();
        if msgs.is_empty() && (got.len() >= want || Instant::now() > deadline) {
            return got;
        }
        for m in msgs {
            let body = m.body.unwrap();
            let Ok(Notification::Objects(objects)) = parse(&body) else {
                panic!("the worker does not read {body}");
            };
            assert_eq!(objects.len(), 1, "one object per message: {body}");
            let raw: Value = serde_json::from_str(&body).unwrap();
            let previous = got.insert(objects[0].key.clone(), raw);
            assert!(previous.is_none(), "sent twice: {body}");
        }
    }
}

/// With `--since/--until` covering one day: that day's objects (an account trail
/// and an organization trail), the keys outside the layout and nothing else — not
/// the other days, the digest files or the folder marker; the final line counts
/// them. A missing queue is an error that says how many were not sent.
#[test]
fn a_range_sends_its_days_and_what_is_outside_the_layout() {
    let moto = Moto::start();
    let rt = tokio::runtime::Runtime::new().unwrap();
    let bucket = "ct-logs";
    let inside = [
        format!(
            "{ACCOUNT_TRAIL}/2024/11/05/111122223333_CloudTrail_us-east-1_20241105T1015Z_a.json.gz"
        ),
        format!("{ACCOUNT_TRAIL}/2024/11/05/with space+plus%25 ü.json.gz"),
        "AWSLogs/o-abcdef1234/111122223333/CloudTrail/eu-west-1/2024/11/05/org.json.gz".to_owned(),
        "manual exports/café ✓.json.gz".to_owned(),
        // A control character, which a listing's XML cannot carry unencoded.
        "manual exports/\u{1b}[2J.json.gz".to_owned(),
        format!("{ACCOUNT_TRAIL}/exports/stray.json.gz"),
    ];
    let outside = [
        format!("{ACCOUNT_TRAIL}/2024/11/04/before.json.gz"),
        format!("{ACCOUNT_TRAIL}/2024/11/06/after.json.gz"),
        format!("{ACCOUNT_TRAIL}/2023/12/31/last-year.json.gz"),
        "AWSLogs/111122223333/CloudTrail-Digest/us-east-1/2024/11/05/digest.json.gz".to_owned(),
        format!("{ACCOUNT_TRAIL}/2024/11/05/"),
    ];
    let queue = rt.block_on(async {
        let conf = moto.sdk_config().await;
        let s3 = moto.s3().await;
        s3.create_bucket().bucket(bucket).send().await.unwrap();
        for (n, key) in inside.iter().chain(&outside).enumerate() {
            let body = match key.ends_with('/') {
                true => Vec::new(),
                false => vec![b'x'; 100 + n],
            };
            put(&s3, bucket, key, body).await;
        }
        let sqs = aws_sdk_sqs::Client::new(&conf);
        sqs.create_queue()
            .queue_name("backfill")
            .send()
            .await
            .unwrap()
            .queue_url
            .unwrap()
    });

    let (code, out, err) = enqueue(
        &moto,
        &[
            "--queue-url",
            &queue,
            "--since",
            "2024-11-05T00:00:00Z",
            "--until",
            "2024-11-06T00:00:00Z",
            &format!("s3://{bucket}/"),
        ],
    );
    assert_eq!(code, 0, "{err}");
    let bytes: usize = (0..inside.len()).map(|n| 100 + n).sum();
    let line = out.lines().last().unwrap_or_default();
    assert!(
        line.starts_with(&format!(
            "enqueued {} objects ({bytes} bytes) to {queue} in ",
            inside.len()
        )),
        "{out}"
    );
    assert!(
        line.ends_with(
            "skipped 2 days, 1 year outside --since/--until, 1 digest folder, 1 folder marker"
        ),
        "{out}"
    );

    let got = rt.block_on(async {
        let sqs = aws_sdk_sqs::Client::new(&moto.sdk_config().await);
        receive_all(&sqs, &queue, inside.len()).await
    });
    let want: BTreeSet<&str> = inside.iter().map(String::as_str).collect();
    assert_eq!(
        got.keys().map(String::as_str).collect::<BTreeSet<_>>(),
        want
    );
    for (n, key) in inside.iter().enumerate() {
        let r = &got[key]["Records"][0];
        assert_eq!(r["eventSource"], "aws:s3");
        assert_eq!(r["eventName"], "ObjectCreated:Put");
        assert_eq!(r["s3"]["bucket"]["name"], bucket);
        assert_eq!(r["s3"]["object"]["size"], 100 + n, "{key}");
    }
    let spaced = &got[&inside[1]]["Records"][0]["s3"]["object"]["key"];
    assert_eq!(
        spaced.as_str().unwrap(),
        format!("{ACCOUNT_TRAIL}/2024/11/05/with+space%2Bplus%2525+%C3%BC.json.gz"),
        "keys are encoded as S3 encodes them"
    );

    // A queue that does not exist: nothing is sent, and the error says so.
    let missing = queue.replace("backfill", "no-such-queue");
    let (code, out, err) = enqueue(
        &moto,
        &[
            "--queue-url",
            &missing,
            &format!("s3://{bucket}/manual exports/caf"),
        ],
    );
    assert_eq!(code, 2, "{out}{err}");
    assert!(out.starts_with("enqueued 0 objects (0 bytes)"), "{out}");
    assert!(
        err.contains("1 of 1 objects were not sent") && err.contains("check --queue-url"),
        "{err}"
    );

    // Arguments that cannot be right are refused before anything is listed.
    let (code, _, err) = enqueue(&moto, &["--queue-url", &queue, "rules/"]);
    assert_eq!(code, 2);
    assert!(err.contains("is not an S3 location"), "{err}");
    let (code, _, err) = enqueue(&moto, &["--queue-url", "backfill", "s3://ct-logs/"]);
    assert_eq!(code, 2);
    assert!(err.contains("is not a queue URL"), "{err}");
}

fn ids(alerts: &[Value]) -> HashSet<String> {
    alerts
        .iter()
        .map(|a| a["alert_id"].as_str().unwrap().to_owned())
        .collect()
}

/// A backfill through the fleet: the worker, fed only by what `enqueue` sent for a
/// bucket without notifications, raises the alerts `scan` raises over the same
/// prefix (keys with spaces, `+`, `%` and non-ASCII included).
#[test]
fn the_worker_finds_what_scan_finds_in_an_enqueued_prefix() {
    let bed = Bed::new(3);
    let bucket = "backfill-logs";
    let files = [
        (format!("{ACCOUNT_TRAIL}/2024/11/05/one.json.gz"), "alice"),
        (
            format!("{ACCOUNT_TRAIL}/2024/11/05/two words+plus%.json.gz"),
            "bob",
        ),
        ("manual/café ✓.json.gz".to_owned(), "carol"),
    ];
    bed.rt.block_on(async {
        bed.s3.create_bucket().bucket(bucket).send().await.unwrap();
        for (n, (key, user)) in files.iter().enumerate() {
            let events = [
                s3_event(2 * n, "DeleteObject", &format!("{user}@example.com"), None),
                s3_event(2 * n + 1, "GetObject", &format!("{user}@example.com"), None),
            ];
            put(&bed.s3, bucket, key, gzip(&cloudtrail(&events))).await;
        }
        let digest = "AWSLogs/111122223333/CloudTrail-Digest/us-east-1/2024/11/05/d.json.gz";
        put(&bed.s3, bucket, digest, gzip(b"{}")).await;
    });
    let rules = bed.dir.path().join("rules");
    for r in ["s3-assumed-role-object-ops", "s3-sso-object-delete"] {
        write(
            &rules.join(format!("{r}.toml")),
            std::fs::read(root().join(format!("rules/{r}.toml"))).unwrap(),
        );
    }

    let prefix = format!("s3://{bucket}/");
    let (code, out, err) = enqueue(&bed.moto, &["--queue-url", &bed.queue, &prefix]);
    assert_eq!(code, 0, "{err}");
    assert!(
        out.starts_with("enqueued 3 objects (") && out.contains("1 digest file"),
        "{out}"
    );

    bed.drain(&rules);
    let alerts = bed.alerts();
    let mut scan = trailwatch();
    bed.moto.apply(&mut scan);
    let (code, out, err) = run(scan.args(["scan", "--rules"]).arg(&rules).arg(&prefix));
    assert_eq!(code, 0, "{err}");
    let scanned = jsonl(&out);
    assert_eq!(
        scanned.len(),
        9,
        "a delete alert and two object-op alerts a file: {out}"
    );
    assert_eq!(ids(&alerts), ids(&scanned), "{}", bed.log());
    let users: BTreeSet<&str> = alerts
        .iter()
        .filter_map(|a| a["actor"]["name"].as_str())
        .collect();
    assert_eq!(
        users,
        BTreeSet::from(["alice@example.com", "bob@example.com", "carol@example.com"])
    );
    assert!(alerts.iter().all(|a| a["source"]["bucket"] == bucket));
    assert_eq!(bed.depth(&bed.queue), 0);
    assert_eq!(bed.depth(&bed.dlq), 0, "{}", bed.log());
}
