use std::collections::HashSet;
use std::io::{Read, Write};
use std::net::TcpListener;
use std::sync::{Arc, Mutex};

use serde_json::{Value, json};

use crate::support::worker::*;
use crate::support::*;

fn ids(alerts: &[Value]) -> HashSet<String> {
    alerts
        .iter()
        .map(|a| a["alert_id"].as_str().unwrap().to_owned())
        .collect()
}

/// The alert ids `trailwatch scan` finds in `dir` with `rules`.
fn scan_ids(dir: &std::path::Path, rules: &std::path::Path) -> HashSet<String> {
    let (code, out, err) = run(trailwatch().args(["scan", "--rules"]).arg(rules).arg(dir));
    assert_eq!(code, 0, "{err}");
    ids(&jsonl(&out))
}

/// A CloudTrail file with one SSO delete by `user` (one high alert, one info alert).
fn delete_file(n: usize, user: &str) -> Vec<u8> {
    gzip(&cloudtrail(&[s3_event(n, "DeleteObject", user, None)]))
}

/// A file uploaded to the trail bucket comes out as alerts on the file sink and on
/// SNS (high and above, with filterable attributes), as CloudWatch sums, and leaves
/// the queue empty; the worker and `scan` agree on the alert ids.
#[test]
fn end_to_end_from_upload_to_sinks_and_metrics() {
    let bed = Bed::new(3);
    for f in trailwatch::input::local_files(&seed()).unwrap() {
        let key = f
            .strip_prefix(seed())
            .unwrap()
            .to_string_lossy()
            .into_owned();
        bed.put(&key, std::fs::read(&f).unwrap());
    }
    // The three S3 rules of the seed scenario (the full pack has more).
    let rules = bed.dir.path().join("rules");
    for r in [
        "s3-assumed-role-object-ops",
        "s3-sso-object-delete",
        "repeated-access-denied",
    ] {
        write(
            &rules.join(format!("{r}.toml")),
            std::fs::read(root().join(format!("rules/{r}.toml"))).unwrap(),
        );
    }
    let cfg = bed.config(&rules, "");
    let mut w = bed.spawn(&cfg, &["--until-idle", "3s"]);
    assert_eq!(bed.wait_exit(&mut w, 90), 0, "{}", bed.log());

    let alerts = bed.alerts();
    assert_eq!(alerts.len(), 6, "{}", bed.log());
    assert_eq!(ids(&alerts), scan_ids(&seed(), &rules));
    assert!(alerts.iter().all(|a| a["source"]["bucket"] == BUCKET));

    let sns = bed.inbox();
    assert_eq!(sns.len(), 2, "two high alerts reach SNS");
    for m in &sns {
        assert_eq!(m["Type"], "Notification");
        let alert: Value = serde_json::from_str(m["Message"].as_str().unwrap()).unwrap();
        assert_eq!(alert["rule_id"], "s3-sso-object-delete");
        // The title (ASCII here), cut to the 99 characters an SNS subject holds.
        let title = alert["title"].as_str().unwrap();
        assert_eq!(m["Subject"], title.chars().take(99).collect::<String>());
        assert_eq!(m["MessageAttributes"]["severity"]["Value"], "high");
        assert_eq!(
            m["MessageAttributes"]["rule_id"]["Value"],
            "s3-sso-object-delete"
        );
    }

    assert_eq!(bed.depth(&bed.queue), 0);
    assert_eq!(bed.depth(&bed.dlq), 0);
    assert_eq!(bed.metric("FilesProcessed", None), 2.0);
    assert_eq!(bed.metric("EventsProcessed", None), 7.0);
    assert_eq!(
        bed.metric("Alerts", Some(("RuleId", "s3-sso-object-delete"))),
        2.0
    );
    assert_eq!(
        bed.metric("Alerts", Some(("RuleId", "s3-assumed-role-object-ops"))),
        4.0
    );
    assert_eq!(bed.metric("Alerts", Some(("Severity", "high"))), 2.0);
    assert_eq!(
        bed.metric("RuleMatches", Some(("RuleId", "s3-sso-object-delete"))),
        2.0
    );
    assert_eq!(bed.metric("ObjectsSkipped", None), 1.0, "the digest file");
    assert!(bed.log().contains("s3:TestEvent received"), "{}", bed.log());
}

/// Every notification shape teams wire up is understood; keys are URL-decoded;
/// set-up messages are deleted; an unreadable body goes to the dead-letter queue.
#[test]
fn every_notification_shape() {
    let bed = Bed::new(2);
    // Objects in a bucket without notifications: only the messages below name them.
    let other = "other-logs";
    bed.rt
        .block_on(async { bed.s3.create_bucket().bucket(other).send().await.unwrap() });
    let put_other = |key: &str, user: &str, n| {
        bed.rt.block_on(async {
            bed.s3
                .put_object()
                .bucket(other)
                .key(key)
                .body(delete_file(n, user).into())
                .send()
                .await
                .unwrap();
        })
    };
    put_other("sns/a.json.gz", "sns@example.com", 1);
    put_other("eb/with space.json.gz", "eventbridge@example.com", 2);
    put_other("ct/one.json.gz", "ct1@example.com", 3);
    put_other("ct/two.json.gz", "ct2@example.com", 4);
    put_other("raw/café ✓ + plus.json.gz", "encoded@example.com", 5);

    let s3_event = |key: &str| {
        json!({"Records": [{"eventVersion": "2.1", "eventSource": "aws:s3", "eventName": "ObjectCreated:Put",
            "s3": {"bucket": {"name": other}, "object": {"key": key, "size": 1}}}]})
        .to_string()
    };
    bed.send(&json!({"Type": "Notification", "Message": s3_event("sns/a.json.gz")}).to_string());
    bed.send(
        &json!({"version": "0", "detail-type": "Object Created", "source": "aws.s3",
                "detail": {"bucket": {"name": other}, "object": {"key": "eb/with space.json.gz"}}})
        .to_string(),
    );
    bed.send(
        &json!({"Type": "Notification",
                "Message": json!({"s3Bucket": other, "s3ObjectKey": ["ct/one.json.gz", "ct/two.json.gz"]}).to_string()})
        .to_string(),
    );
    bed.send(&s3_event("raw/caf%C3%A9+%E2%9C%93+%2B+plus.json.gz"));
    bed.send(
        &json!({"Service": "Amazon S3", "Event": "s3:TestEvent", "Bucket": other}).to_string(),
    );
    bed.send("CloudTrail validation message.");
    bed.send("this is not a notification");
    // And a real S3 notification for a key with spaces and unicode.
    bed.put(
        "AWSLogs/1/CloudTrail/us-east-1/é x/real.json.gz",
        delete_file(6, "real@example.com"),
    );

    bed.drain(&root().join("rules/s3-sso-object-delete.toml"));

    let users: HashSet<String> = bed.actor_names().into_iter().collect();
    for u in ["sns", "eventbridge", "ct1", "ct2", "encoded", "real"] {
        assert!(
            users.contains(&format!("{u}@example.com")),
            "{u}: {users:?}\n{}",
            bed.log()
        );
    }
    assert_eq!(bed.depth(&bed.queue), 0);
    assert_eq!(bed.depth(&bed.dlq), 1, "the unreadable body");
    assert!(bed.metric("NotificationErrors", None) >= 2.0);
    let log = bed.log();
    assert!(
        log.contains("CloudTrail validation message received"),
        "{log}"
    );
    assert!(
        log.contains("unrecognised SQS message body (not JSON"),
        "{log}"
    );
}

/// A corrupt object among good ones: the good ones are processed and deleted, the
/// corrupt one reaches the dead-letter queue after maxReceiveCount.
#[test]
fn corrupt_object_reaches_the_dlq_and_blocks_nothing() {
    let bed = Bed::new(2);
    bed.put(
        "AWSLogs/a-good.json.gz",
        delete_file(1, "first@example.com"),
    );
    bed.put(
        "AWSLogs/b-corrupt.json.gz",
        b"\x1f\x8b\x08\x00 this is not deflate".to_vec(),
    );
    bed.put(
        "AWSLogs/c-not-cloudtrail.json",
        b"{\"hello\": \"world\"}".to_vec(),
    );
    bed.put(
        "AWSLogs/d-good.json.gz",
        delete_file(2, "second@example.com"),
    );
    bed.drain(&root().join("rules/s3-sso-object-delete.toml"));

    let users = bed.actor_names();
    assert!(
        users.contains(&"first@example.com".to_owned())
            && users.contains(&"second@example.com".to_owned())
    );
    assert_eq!(bed.depth(&bed.queue), 0);
    assert_eq!(bed.depth(&bed.dlq), 2, "{}", bed.log());
    assert!(
        bed.metric("FileErrors", None) >= 4.0,
        "each bad file failed on every receive"
    );
    let log = bed.log();
    assert!(
        log.contains("b-corrupt.json.gz") && log.contains("file failed"),
        "{log}"
    );
    assert!(
        log.contains("none of its 1 records is a valid CloudTrail record"),
        "{log}"
    );
}

/// SIGTERM mid-run loses nothing, and a restart after `kill -9` processes the
/// undeleted messages with the same alert ids.
#[test]
fn shutdown_and_kill_lose_nothing() {
    let bed = Bed::new(10);
    let dir = tempfile::tempdir().unwrap();
    for n in 0..24 {
        let body = delete_file(n, &format!("user{n}@example.com"));
        write(&dir.path().join(format!("f{n:02}.json.gz")), &body);
        bed.put(&format!("AWSLogs/f{n:02}.json.gz"), body);
    }
    let rules = root().join("rules/s3-sso-object-delete.toml");
    let expected = scan_ids(dir.path(), &rules);
    assert_eq!(expected.len(), 24);
    let cfg = bed.config(&rules, "");
    std::fs::write(
        &cfg,
        std::fs::read_to_string(&cfg)
            .unwrap()
            .replace("\"30s\"", "\"4s\""),
    )
    .unwrap();

    // Graceful stop once alerts flow.
    let mut w = bed.spawn(&cfg, &[]);
    wait_for("first alerts", 60, || !bed.alerts().is_empty());
    signal(&w, "TERM");
    assert_eq!(bed.wait_exit(&mut w, 30), 0, "{}", bed.log());
    assert!(bed.log().contains("worker stopped"));

    // Hard kill of a second run.
    let before = bed.alerts().len();
    let mut w = bed.spawn(&cfg, &[]);
    wait_for("more alerts", 60, || {
        bed.alerts().len() > before || bed.depth(&bed.queue) == 0
    });
    signal(&w, "KILL");
    let _ = w.wait();

    // A restart finishes the rest, including messages the killed worker held.
    let mut w = bed.spawn(&cfg, &["--until-idle", "8s"]);
    assert_eq!(bed.wait_exit(&mut w, 120), 0, "{}", bed.log());
    let got = ids(&bed.alerts());
    assert_eq!(got, expected, "every alert, with the ids scan gives");
    assert_eq!(bed.depth(&bed.queue), 0);
    assert_eq!(bed.depth(&bed.dlq), 0);
}

/// SIGHUP reloads the rules; an invalid rule set is rejected and the old one stays.
/// Readiness and Prometheus metrics are served meanwhile.
#[test]
fn rule_reload_and_health_endpoints() {
    let bed = Bed::new(3);
    let rules = bed.dir.path().join("rules");
    std::fs::create_dir_all(&rules).unwrap();
    std::fs::copy(
        root().join("rules/s3-sso-object-delete.toml"),
        rules.join("a.toml"),
    )
    .unwrap();
    let port = TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let cfg = bed.config(&rules, "");
    std::fs::write(
        &cfg,
        std::fs::read_to_string(&cfg)
            .unwrap()
            .replace("listen = \"\"", &format!("listen = \"127.0.0.1:{port}\"")),
    )
    .unwrap();
    let mut w = bed.spawn(&cfg, &[]);

    bed.put("AWSLogs/1.json.gz", delete_file(1, "one@example.com"));
    wait_for("the first alert", 60, || bed.alerts().len() == 1);
    assert!(http_get(port, "/healthz").starts_with("HTTP/1.1 200"));
    wait_for("readiness", 30, || {
        http_get(port, "/readyz").starts_with("HTTP/1.1 200")
    });
    // The file counts once its alerts are delivered, just after they appear.
    wait_for("the file to count", 30, || {
        http_get(port, "/metrics").contains("trailwatch_files_processed_total 1")
    });
    let metrics = http_get(port, "/metrics");
    assert!(
        metrics.contains("trailwatch_alerts_total{rule_id=\"s3-sso-object-delete\"} 1"),
        "{metrics}"
    );

    std::fs::copy(
        root().join("rules/s3-assumed-role-object-ops.toml"),
        rules.join("b.toml"),
    )
    .unwrap();
    signal(&w, "HUP");
    wait_for("the reload", 30, || bed.log().contains("rules reloaded"));
    bed.put("AWSLogs/2.json.gz", delete_file(2, "two@example.com"));
    wait_for("alerts of both rules", 60, || bed.alerts().len() == 3);

    std::fs::write(
        rules.join("c.toml"),
        "id = \"bad\"\ntitle = \"t\"\nseverity = \"low\"\n[match]\nx = { regex = \"(\" }\n",
    )
    .unwrap();
    signal(&w, "HUP");
    wait_for("the rejected reload", 30, || {
        bed.log().contains("rule reload rejected")
    });
    bed.put("AWSLogs/3.json.gz", delete_file(3, "three@example.com"));
    wait_for("alerts of the old rules", 60, || bed.alerts().len() == 5);
    assert!(http_get(port, "/metrics").contains("trailwatch_reload_failures_total 1"));

    signal(&w, "TERM");
    assert_eq!(bed.wait_exit(&mut w, 30), 0, "{}", bed.log());
    assert_eq!(bed.metric("ReloadFailures", None), 1.0);
    assert!(
        bed.log().contains("c.toml:5:15: invalid regex"),
        "{}",
        bed.log()
    );
}

/// A webhook that fails twice and then accepts: the alerts are retried, delivered,
/// and only then is the message deleted.
#[test]
fn webhook_is_retried_until_it_accepts() {
    let bed = Bed::new(5);
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    let bodies = Arc::new(Mutex::new(Vec::<String>::new()));
    let seen = bodies.clone();
    std::thread::spawn(move || {
        for (i, conn) in listener.incoming().enumerate() {
            let Ok(mut conn) = conn else { return };
            let body = read_http_body(&mut conn);
            let status = if i < 2 {
                "503 Service Unavailable"
            } else {
                "200 OK"
            };
            if i >= 2 {
                seen.lock().unwrap().push(body);
            }
            respond(&mut conn, status);
        }
    });
    bed.put("AWSLogs/1.json.gz", delete_file(1, "hook@example.com"));
    let cfg = bed.config(
        &root().join("rules/s3-sso-object-delete.toml"),
        &format!("\n[[sink]]\ntype = \"webhook\"\nurl = \"http://127.0.0.1:{port}/hook\"\nallow_insecure_http = true\nslack = true\nmax_attempts = 5\n"),
    );
    // The [[sink]] appended after [health] is still a top-level array entry.
    let mut w = bed.spawn(&cfg, &["--until-idle", "3s"]);
    assert_eq!(bed.wait_exit(&mut w, 90), 0, "{}", bed.log());
    let got = bodies.lock().unwrap().clone();
    assert_eq!(got.len(), 1, "{got:?}\n{}", bed.log());
    let v: Value = serde_json::from_str(&got[0]).unwrap();
    assert!(
        v["text"]
            .as_str()
            .unwrap()
            .starts_with("[HIGH] SSO user hook@example.com"),
        "{v}"
    );
    assert!(bed.log().contains("alert delivery failed; retrying"));
    assert_eq!(bed.depth(&bed.queue), 0);
}

/// A sink outage longer than a round of attempts holds the message: with
/// maxReceiveCount 1, a release and a second receive would send the file to the
/// dead-letter queue.
#[test]
fn a_sink_outage_holds_the_message() {
    let bed = Bed::new(1);
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    let bodies = Arc::new(Mutex::new(Vec::<String>::new()));
    let seen = bodies.clone();
    std::thread::spawn(move || {
        let mut first = None;
        for conn in listener.incoming() {
            let Ok(mut conn) = conn else { return };
            let body = read_http_body(&mut conn);
            let t0 = *first.get_or_insert_with(std::time::Instant::now);
            // Down for 5 s: longer than two rounds of two attempts.
            let status = if t0.elapsed() < std::time::Duration::from_secs(5) {
                "503 Service Unavailable"
            } else {
                seen.lock().unwrap().push(body);
                "200 OK"
            };
            respond(&mut conn, status);
        }
    });
    bed.put("AWSLogs/1.json.gz", delete_file(1, "held@example.com"));
    let cfg = bed.config(
        &root().join("rules/s3-sso-object-delete.toml"),
        &format!("\n[[sink]]\ntype = \"webhook\"\nurl = \"http://127.0.0.1:{port}/hook\"\nallow_insecure_http = true\nmax_attempts = 2\n"),
    );
    let mut w = bed.spawn(&cfg, &["--until-idle", "3s"]);
    assert_eq!(bed.wait_exit(&mut w, 90), 0, "{}", bed.log());
    assert_eq!(bodies.lock().unwrap().len(), 1, "{}", bed.log());
    let log = bed.log();
    assert!(
        log.contains("the file's message is held and delivery retried"),
        "{log}"
    );
    assert_eq!(
        (bed.depth(&bed.queue), bed.depth(&bed.dlq)),
        (0, 0),
        "{log}"
    );
    // Received once: the file sink has the alert once.
    assert_eq!(bed.alerts().len(), 1);
}

/// Webhook failures never show the URL's secret (a Slack webhook's token is its
/// path): not for a refused connection, where reqwest's error carries the full
/// URL, nor for a redirect, which is not followed (its target gets nothing) and
/// counts as a failure. An `http://` webhook needs `allow_insecure_http`, in the
/// file or in `TRAILWATCH_SINKS`.
#[test]
fn webhook_failures_keep_the_url_secret_and_redirects_are_not_followed() {
    let dead = TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let secret = format!("http://127.0.0.1:{dead}/services/T0/B0/s3cretpath?token=s3cretquery");

    // `--check-config` with the sinks from the environment: refused without the
    // flag, accepted with it; the URL is never shown.
    let dir = tempfile::tempdir().unwrap();
    let cfg = dir.path().join("c.toml");
    write(
        &cfg,
        "[source]\nqueue_url = \"https://sqs.us-east-1.amazonaws.com/1/q\"\n",
    );
    let check = |sinks: &str| {
        run(trailwatch()
            .env("TRAILWATCH_SINKS", sinks)
            .args(["run", "--check-config", "--config"])
            .arg(&cfg))
    };
    let (code, out, err) = check(&format!("stdout,webhook:{secret}"));
    assert_eq!(code, 2, "{out}{err}");
    assert!(
        err.contains("sink #2 (webhook): `url` must be https://")
            && err.contains(";allow_insecure_http=true"),
        "{err}"
    );
    assert!(
        !err.contains("s3cret") && !out.contains("s3cret"),
        "{out}{err}"
    );
    let (code, out, err) = check(&format!("webhook:{secret};allow_insecure_http=true"));
    assert_eq!(code, 0, "{err}");
    assert!(
        !err.contains("s3cret") && !out.contains("s3cret"),
        "{out}{err}"
    );

    // A redirect target that counts what reaches it.
    let target = TcpListener::bind("127.0.0.1:0").unwrap();
    let target_port = target.local_addr().unwrap().port();
    let reached = Arc::new(Mutex::new(0usize));
    let r = reached.clone();
    std::thread::spawn(move || {
        let mut held = Vec::new();
        for conn in target.incoming().flatten() {
            *r.lock().unwrap() += 1;
            held.push(conn);
        }
    });
    // A webhook that redirects twice, then accepts.
    let hook = TcpListener::bind("127.0.0.1:0").unwrap();
    let hook_port = hook.local_addr().unwrap().port();
    let bodies = Arc::new(Mutex::new(Vec::<String>::new()));
    let seen = bodies.clone();
    std::thread::spawn(move || {
        for (i, conn) in hook.incoming().enumerate() {
            let Ok(mut conn) = conn else { return };
            let body = read_http_body(&mut conn);
            if i < 2 {
                let _ = write!(
                    conn,
                    "HTTP/1.1 302 Found\r\nlocation: http://127.0.0.1:{target_port}/s3cretpath\r\ncontent-length: 0\r\nconnection: close\r\n\r\n"
                );
            } else {
                seen.lock().unwrap().push(body);
                respond(&mut conn, "200 OK");
            }
        }
    });

    let bed = Bed::new(5);
    bed.put("AWSLogs/1.json.gz", delete_file(1, "hook@example.com"));
    let cfg = bed.config(
        &root().join("rules/s3-sso-object-delete.toml"),
        &format!(
            "\n[[sink]]\ntype = \"webhook\"\nurl = \"http://127.0.0.1:{hook_port}/hook\"\nallow_insecure_http = true\nmax_attempts = 5\n\n[[sink]]\ntype = \"webhook\"\nurl = \"{secret}\"\nallow_insecure_http = true\ntimeout = \"1s\"\nmax_attempts = 1\n"
        ),
    );
    let mut w = bed.spawn(&cfg, &[]);
    wait_for("the refused webhook's failures", 60, || {
        bed.log()
            .matches("alert delivery failed; the file's message is held")
            .count()
            >= 2
    });
    signal(&w, "TERM");
    bed.wait_exit(&mut w, 60);
    let log = bed.log();
    assert!(!log.contains("s3cret"), "{log}");
    assert!(!log.contains("services/T0"), "{log}");
    assert!(log.contains(&format!("127.0.0.1:{dead}/***")), "{log}");
    assert!(log.contains("Connection refused"), "{log}");
    assert!(log.contains("HTTP 302 Found"), "{log}");
    assert_eq!(*reached.lock().unwrap(), 0, "the redirect was followed");
    assert_eq!(bodies.lock().unwrap().len(), 1, "{log}");
}

fn http_get(port: u16, path: &str) -> String {
    let Ok(mut s) = std::net::TcpStream::connect(("127.0.0.1", port)) else {
        return String::new();
    };
    let _ = write!(
        s,
        "GET {path} HTTP/1.1\r\nhost: localhost\r\nconnection: close\r\n\r\n"
    );
    let mut out = String::new();
    let _ = s.read_to_string(&mut out);
    out
}

/// S3 server access logs through a second queue (`[[source]]`): the DeleteObjects
/// alert goes out at once, and a follow-up with the same id lists the keys when
/// the access log arrives; an alert whose lines never come expires with a note.
#[test]
fn streaming_join_with_access_logs_on_a_second_queue() {
    let bed = Bed::new(3);
    let logs_queue = bed.bucket_with_queue("access-logs", "access-logs");
    let cfg = bed.config(
        &root().join("rules/s3-sso-object-delete.toml"),
        "\n[join]\nenabled = true\nwindow = \"4s\"\n",
    );
    let text = std::fs::read_to_string(&cfg).unwrap().replacen(
        "[source]",
        &format!("[[source]]\nqueue_url = \"{logs_queue}\"\nwait_time = \"1s\"\nretry_delay = \"0s\"\n\n[[source]]"),
        1,
    );
    std::fs::write(&cfg, text).unwrap();
    let mut w = bed.spawn(&cfg, &[]);

    // CloudTrail first: the seed's DeleteObject and DeleteObjects.
    for f in trailwatch::input::local_files(&seed()).unwrap() {
        let key = f
            .strip_prefix(seed())
            .unwrap()
            .to_string_lossy()
            .into_owned();
        bed.put(&key, std::fs::read(&f).unwrap());
    }
    wait_for("the CloudTrail alerts", 60, || bed.alerts().len() == 2);
    let first = bed
        .alerts()
        .into_iter()
        .find(|a| a["event"]["eventName"] == "DeleteObjects")
        .unwrap();
    assert!(
        first.get("deleted_keys").is_none(),
        "the first alert goes out without waiting"
    );

    // The access log lands later, through the other queue.
    let log = std::fs::read(root().join(
        "tests/data/access-logs/111122223333/eu-west-1/finance-reports-prod/2024/11/05/2024-11-05-10-25-00-6F1A2B3C4D5E6F70",
    ))
    .unwrap();
    bed.rt.block_on(async {
        bed.s3
            .put_object()
            .bucket("access-logs")
            .key("111122223333/eu-west-1/finance-reports-prod/2024/11/05/2024-11-05-10-25-00-6F1A2B3C4D5E6F70")
            .body(log.into())
            .send()
            .await
            .unwrap();
    });
    wait_for("the follow-up", 60, || {
        bed.alerts().iter().any(|a| a.get("deleted_keys").is_some())
    });
    let follow = bed
        .alerts()
        .into_iter()
        .find(|a| a.get("deleted_keys").is_some())
        .unwrap();
    assert_eq!(follow["alert_id"], first["alert_id"]);
    let keys: Vec<(String, u64)> = follow["deleted_keys"]
        .as_array()
        .unwrap()
        .iter()
        .map(|k| {
            (
                k["key"].as_str().unwrap().to_owned(),
                k["http_status"].as_u64().unwrap(),
            )
        })
        .collect();
    assert_eq!(
        keys,
        [
            ("2024/q2/board minutes.docx".to_owned(), 204),
            ("2024/q2/payroll.csv".to_owned(), 204),
            ("legal/hold/contract.pdf".to_owned(), 403)
        ]
    );

    // A batch delete whose access log never comes expires with a note.
    let mut lonely = s3_event(7, "DeleteObjects", "lonely@example.com", None);
    lonely["requestID"] = "NOLOGSEVERCAME01".into();
    bed.put("AWSLogs/lonely.json.gz", gzip(&cloudtrail(&[lonely])));
    wait_for("the expired alert", 60, || {
        bed.alerts()
            .iter()
            .any(|a| a["actor"]["name"] == "lonely@example.com" && a.get("note").is_some())
    });
    let expired = bed
        .alerts()
        .into_iter()
        .find(|a| a.get("note").is_some() && a["actor"]["name"] == "lonely@example.com")
        .unwrap();
    assert_eq!(expired["deleted_keys"], json!([]));
    assert!(
        expired["note"]
            .as_str()
            .unwrap()
            .contains("no S3 server access log lines")
    );

    signal(&w, "TERM");
    assert_eq!(bed.wait_exit(&mut w, 30), 0, "{}", bed.log());
    assert_eq!(bed.depth(&bed.queue), 0);
    assert_eq!(bed.depth(&logs_queue), 0);
    assert_eq!(bed.metric("JoinFollowUps", None), 1.0);
    assert_eq!(bed.metric("JoinExpired", None), 1.0);
}

/// `--check-config` validates, prints the effective configuration with secrets
/// masked, and exits 0; a bad configuration exits 2 with every problem.
#[test]
fn check_config() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = dir.path().join("c.toml");
    write(
        &cfg,
        "[source]\nqueue_url = \"https://sqs.us-east-1.amazonaws.com/1/q\"\n[[sink]]\ntype = \"webhook\"\nurl = \"https://hooks.example.com/services/T0/B0/s3cret\"\n",
    );
    let (code, out, err) = run(trailwatch()
        .args(["run", "--check-config", "--config"])
        .arg(&cfg));
    assert_eq!(code, 0, "{err}");
    assert!(
        out.contains("queue_url = \"https://sqs.us-east-1.amazonaws.com/1/q\""),
        "{out}"
    );
    assert!(
        out.contains("https://hooks.example.com/***") && !out.contains("s3cret"),
        "{out}"
    );
    assert!(out.contains("# configuration OK;"), "{out}");

    write(&cfg, "[source]\nmax_in_flight = 0\n");
    let (code, _, err) = run(trailwatch()
        .args(["run", "--check-config", "--config"])
        .arg(&cfg));
    assert_eq!(code, 2);
    assert!(
        err.contains("source.queue_url is required")
            && err.contains("max_in_flight must be at least 1"),
        "{err}"
    );
    assert!(err.contains("at least one [[sink]] is required"), "{err}");
}

/// CloudWatch being down never holds up intake: files are processed and deleted,
/// and the datapoints that could not be sent are dropped and counted.
#[test]
fn cloudwatch_outage_does_not_block_intake() {
    let bed = Bed::new(3);
    let port = TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let dead = TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let cfg = bed.config(&root().join("rules/s3-sso-object-delete.toml"), "");
    let text = std::fs::read_to_string(&cfg)
        .unwrap()
        .replace("listen = \"\"", &format!("listen = \"127.0.0.1:{port}\""))
        .replace(
            "flush_interval = \"1s\"",
            "flush_interval = \"1s\"\nmax_pending_flushes = 2",
        );
    std::fs::write(&cfg, text).unwrap();
    for n in 0..3 {
        bed.put(
            &format!("AWSLogs/{n}.json.gz"),
            delete_file(n, &format!("u{n}@example.com")),
        );
    }
    let mut c = trailwatch();
    bed.moto.apply(&mut c);
    let log = std::fs::File::create(bed.dir.path().join("worker.log")).unwrap();
    let mut w = c
        .env(
            "AWS_ENDPOINT_URL_CLOUDWATCH",
            format!("http://127.0.0.1:{dead}"),
        )
        .args(["run", "--config"])
        .arg(&cfg)
        .stderr(std::process::Stdio::from(log))
        .stdout(std::process::Stdio::null())
        .spawn()
        .unwrap();
    wait_for("the files", 60, || {
        bed.alerts().len() == 3 && bed.depth(&bed.queue) == 0
    });
    wait_for("dropped datapoints", 60, || {
        http_get(port, "/metrics")
            .lines()
            .any(|l| l.starts_with("trailwatch_dropped_datapoints_total ") && !l.ends_with(" 0"))
    });
    signal(&w, "TERM");
    assert_eq!(bed.wait_exit(&mut w, 40), 0, "{}", bed.log());
    assert!(
        bed.log()
            .contains("CloudWatch keeps failing; dropping metric datapoints"),
        "{}",
        bed.log()
    );
}

/// The SNS sink publishes ten alerts to a PublishBatch call and never more than
/// 256 KiB in one: alerts around and over that size (one over what an SNS message
/// holds goes without its record) all arrive, each once, with subject and
/// attributes.
#[test]
fn sns_publishes_alerts_in_batches() {
    use trailwatch::alert::{Alert, SourceRef};
    use trailwatch::engine::Detection;
    use trailwatch::record::Event;
    use trailwatch::rules::{RuleSet, Strictness};

    let bed = Bed::new(2);
    let rules = RuleSet::load(&root().join("rules"), Strictness::Run).unwrap();
    let rule = rules
        .rules
        .iter()
        .find(|r| r.id == "s3-sso-object-delete")
        .unwrap();
    let pads = (0..23).map(|i| match i {
        5 | 6 => 150 * 1024,
        12 => 300 * 1024,
        _ => 10,
    });
    let alerts: Vec<Arc<Alert>> = pads
        .enumerate()
        .map(|(i, pad)| {
            let event = Event::from_value(json!({
                "eventName": "DeleteObject", "eventSource": "s3.amazonaws.com",
                "eventID": format!("e{i}"),
                "userIdentity": {"type": "AssumedRole",
                    "arn": "arn:aws:sts::1:assumed-role/AWSReservedSSO_A_0123456789abcdef/j@x"},
                "requestParameters": {"bucketName": "b", "key": format!("k{i}"), "pad": "x".repeat(pad)},
            }))
            .unwrap();
            let d = Detection::matched(0);
            Arc::new(Alert::new(rule, &d, &event, SourceRef::file("f", i as u64)))
        })
        .collect();
    let sink: trailwatch::config::SinkConfig =
        toml::from_str(&format!("type = \"sns\"\ntopic_arn = \"{}\"", bed.topic)).unwrap();
    bed.rt.block_on(async {
        let sink = trailwatch::sinks::Sink::new(&sink, &bed.moto.sdk_config().await).unwrap();
        sink.deliver(&alerts).await.unwrap();
    });

    let inbox = bed.inbox();
    let got: Vec<Value> = inbox
        .iter()
        .map(|m| serde_json::from_str(m["Message"].as_str().unwrap()).unwrap())
        .collect();
    assert_eq!(got.len(), alerts.len(), "each alert once");
    let want: HashSet<String> = alerts.iter().map(|a| a.alert_id.clone()).collect();
    assert_eq!(ids(&got), want);
    for (m, a) in inbox.iter().zip(&got) {
        assert_eq!(m["Subject"], a["title"]);
        assert_eq!(m["MessageAttributes"]["severity"]["Value"], "high");
        assert_eq!(
            m["MessageAttributes"]["rule_id"]["Value"],
            "s3-sso-object-delete"
        );
        let pad = &a["record"]["requestParameters"]["pad"];
        match a["event"]["eventID"].as_str().unwrap() {
            "e12" => assert!(a["record"].as_str().unwrap().starts_with("omitted:")),
            "e5" | "e6" => assert_eq!(pad.as_str().unwrap().len(), 150 * 1024),
            _ => assert_eq!(pad, "xxxxxxxxxx"),
        }
    }
}

/// `TRAILWATCH_SINKS` alone configures the sinks (as the CloudFormation task
/// definition does), each with its own minimum severity: every alert to the file,
/// the high ones to SNS.
#[test]
fn environment_sinks_keep_their_minimum_severity() {
    let bed = Bed::new(5);
    let rules = bed.dir.path().join("rules");
    for r in ["s3-assumed-role-object-ops", "s3-sso-object-delete"] {
        write(
            &rules.join(format!("{r}.toml")),
            std::fs::read(root().join(format!("rules/{r}.toml"))).unwrap(),
        );
    }
    bed.put("AWSLogs/1.json.gz", delete_file(1, "ana@example.com"));
    bed.put("AWSLogs/2.json.gz", delete_file(2, "bo@example.com"));
    let cfg = bed.config(&rules, "");
    let sinks = format!(
        "file:{};min_severity=info, sns:{};min_severity=high",
        bed.alerts_path().display(),
        bed.topic
    );
    let mut w = bed.spawn_with(
        &cfg,
        &["--until-idle", "3s"],
        &[("TRAILWATCH_SINKS", &sinks)],
    );
    assert_eq!(bed.wait_exit(&mut w, 90), 0, "{}", bed.log());

    let alerts = bed.alerts();
    assert_eq!(alerts.len(), 4, "{}", bed.log());
    let high: HashSet<String> = alerts
        .iter()
        .filter(|a| a["severity"] == "high")
        .map(|a| a["alert_id"].as_str().unwrap().to_owned())
        .collect();
    assert_eq!(high.len(), 2);
    let sns: Vec<Value> = bed
        .inbox()
        .iter()
        .map(|m| serde_json::from_str(m["Message"].as_str().unwrap()).unwrap())
        .collect();
    assert_eq!(sns.len(), 2, "{sns:?}");
    assert_eq!(ids(&sns), high);
}

/// A backlog of generated files drained by the worker (files evaluated at once, on
/// several threads) gives, for every rule without a threshold or suppression,
/// exactly the alerts `scan` finds in the same files.
#[test]
fn a_drained_backlog_alerts_as_scan_does() {
    let bed = Bed::new(3);
    let corpus = bed.dir.path().join("corpus");
    generate(21, 6, 400, &corpus);
    let files = trailwatch::input::local_files(&corpus).unwrap();
    for f in &files {
        let name = f.file_name().unwrap().to_string_lossy().into_owned();
        bed.put(&format!("AWSLogs/{name}"), std::fs::read(f).unwrap());
    }
    let rules = root().join("rules");
    let set = trailwatch::rules::RuleSet::load(&rules, trailwatch::rules::Strictness::Run).unwrap();
    let windowed: HashSet<&str> = set
        .enabled()
        .filter(|r| r.threshold.is_some() || r.suppress.is_some())
        .map(|r| r.id.as_str())
        .collect();
    let cfg = bed.config(&rules, "");
    let mut w = bed.spawn_with(
        &cfg,
        &["--until-idle", "3s"],
        &[("TRAILWATCH_MAX_IN_FLIGHT", "6")],
    );
    assert_eq!(bed.wait_exit(&mut w, 180), 0, "{}", bed.log());
    assert_eq!(bed.log().matches("file processed").count(), files.len());

    let stateless = |alerts: &[Value]| -> HashSet<String> {
        alerts
            .iter()
            .filter(|a| !windowed.contains(a["rule_id"].as_str().unwrap()))
            .map(|a| a["alert_id"].as_str().unwrap().to_owned())
            .collect()
    };
    let worker = bed.alerts();
    let (code, out, err) = run(trailwatch()
        .args(["scan", "--rules"])
        .arg(&rules)
        .arg(&corpus));
    assert_eq!(code, 0, "{err}");
    let scan = jsonl(&out);
    let want = stateless(&scan);
    assert!(
        want.len() > 500,
        "the pack alerts on the corpus: {}",
        want.len()
    );
    assert_eq!(stateless(&worker), want);
    assert_eq!(worker.len(), ids(&worker).len(), "no alert twice");
    assert_eq!(bed.depth(&bed.queue), 0);
}

/// `--until-idle` does not call the queue idle while a message it released for a
/// retry is still due back: the first attempt fails (the object is not there
/// yet), the object then arrives with a notification of its own, and the worker
/// waits for the released message to come back before it exits, leaving nothing
/// in flight.
#[test]
fn until_idle_waits_for_a_released_message_to_come_back() {
    let bed = Bed::new(5);
    let key = "AWSLogs/late.json.gz";
    bed.send(
        &json!({"Records": [{"eventSource": "aws:s3", "eventName": "ObjectCreated:Put",
            "s3": {"bucket": {"name": BUCKET}, "object": {"key": key}}}]})
        .to_string(),
    );
    let rules = root().join("rules/s3-sso-object-delete.toml");
    let cfg = bed.config(&rules, "");
    let text = std::fs::read_to_string(&cfg)
        .unwrap()
        .replace("retry_delay = \"0s\"", "retry_delay = \"5s\"");
    std::fs::write(&cfg, text).unwrap();
    let mut w = bed.spawn(&cfg, &["--until-idle", "1s"]);
    wait_for(
        "the first attempt to fail and release its message",
        30,
        || bed.log().contains("message kept for redelivery"),
    );
    bed.put(key, delete_file(1, "late@example.com"));
    assert_eq!(bed.wait_exit(&mut w, 60), 0, "{}", bed.log());
    assert!(bed.actor_names().contains(&"late@example.com".to_owned()));
    assert_eq!(
        bed.depth(&bed.queue),
        0,
        "the released message came back and was done with before the exit: {}",
        bed.log()
    );
    assert_eq!(bed.depth(&bed.dlq), 0);
}
