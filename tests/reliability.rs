//! Nothing is lost: the worker against the emulator behind a fault-injecting proxy.
//! Each scenario uploads files with real S3 notifications, runs the worker until the
//! queue is idle, and compares the alert ids delivered to the file sink with the ids
//! `trailwatch scan` finds in the same files. The short form runs in the test suite;
//! `scripts/reliability` runs the full form (more files) and prints the table.

use std::collections::HashSet;
use std::time::{Duration, Instant};

use crate::support::faults::{Action, Fault, Kind, Proxy};
use crate::support::worker::*;
use crate::support::*;

struct Row {
    name: &'static str,
    files: usize,
    lost: usize,
    unexpected: usize,
    redeliveries: usize,
    queue: u64,
    dlq: u64,
    secs: f64,
    faulted: usize,
}

/// Runs one scenario: `files` files, faults from `inject`, worker settings changed by
/// `extra` (`key = value` lines replacing the test bed's).
fn scenario(
    name: &'static str,
    files: usize,
    extra: &str,
    inject: impl FnOnce(&Proxy, &Bed) -> Action,
) -> Row {
    let bed = Bed::new(5);
    let proxy = Proxy::start(&bed.moto.endpoint);
    let dir = tempfile::tempdir().unwrap();
    let rules = root().join("rules/s3-sso-object-delete.toml");
    for n in 0..files {
        let body = gzip(&cloudtrail(&[s3_event(
            n,
            "DeleteObject",
            &format!("user{n}@example.com"),
            None,
        )]));
        write(&dir.path().join(format!("{n:05}.json.gz")), &body);
        bed.put(&format!("AWSLogs/{n:05}.json.gz"), body);
    }
    let (code, out, err) = run(trailwatch()
        .args(["scan", "--rules"])
        .arg(&rules)
        .arg(dir.path()));
    assert_eq!(code, 0, "{err}");
    let expected: HashSet<String> = jsonl(&out)
        .iter()
        .map(|a| a["alert_id"].as_str().unwrap().to_owned())
        .collect();
    assert_eq!(expected.len(), files);

    let action = inject(&proxy, &bed);
    let mut cfg = bed.config(&rules, "");
    if !extra.is_empty() {
        // `extra` replaces keys of the generated config: "key = value" lines.
        let mut text = std::fs::read_to_string(&cfg).unwrap();
        for line in extra.lines().filter(|l| l.contains('=')) {
            let key = line.split('=').next().unwrap().trim();
            let old = text
                .lines()
                .find(|l| l.trim_start().starts_with(&format!("{key} =")))
                .unwrap()
                .to_owned();
            text = text.replace(&old, line);
        }
        cfg = bed.dir.path().join("trailwatch-scenario.toml");
        std::fs::write(&cfg, text).unwrap();
    }
    let started = Instant::now();
    let mut w = bed.spawn_at(&cfg, &["--until-idle", "4s"], &proxy.endpoint);
    let code = bed.wait_exit(&mut w, 300);
    assert_eq!(code, 0, "{name}: {}", bed.log());
    let delivered: Vec<String> = bed
        .alerts()
        .iter()
        .map(|a| a["alert_id"].as_str().unwrap().to_owned())
        .collect();
    let unique: HashSet<String> = delivered.iter().cloned().collect();
    Row {
        name,
        files,
        lost: expected.difference(&unique).count(),
        unexpected: unique.difference(&expected).count(),
        redeliveries: delivered.len() - unique.len(),
        queue: bed.depth(&bed.queue),
        dlq: bed.depth(&bed.dlq),
        secs: started.elapsed().as_secs_f64(),
        faulted: proxy.count(action).1,
    }
}

fn until(secs: u64) -> Option<Instant> {
    Some(Instant::now() + Duration::from_secs(secs))
}

/// The scenario matrix. Every scenario must lose nothing and deliver no unexpected
/// alert; raw redeliveries (the same id twice) are allowed and counted.
#[test]
fn nothing_is_lost_under_faults() {
    let full = std::env::var_os("TRAILWATCH_RELIABILITY_FULL").is_some();
    let n = if full { 200 } else { 12 };
    let rows = vec![
        scenario(
            "baseline, no faults",
            if full { 1000 } else { 20 },
            "",
            |_, _| Action::Other,
        ),
        scenario("S3 GetObject reset mid-body", n, "", |p, _| {
            p.add(Fault {
                action: Action::GetObject,
                kind: Kind::ResetMidBody,
                times: Some(3),
                until: None,
            });
            Action::GetObject
        }),
        scenario("S3 GetObject 500s", n, "", |p, _| {
            p.add(Fault {
                action: Action::GetObject,
                kind: Kind::ServerError,
                times: Some(8),
                until: None,
            });
            Action::GetObject
        }),
        scenario("DeleteMessage failing", n, "", |p, _| {
            p.add(Fault {
                action: Action::DeleteMessage,
                kind: Kind::ServerError,
                times: Some(12),
                until: None,
            });
            Action::DeleteMessage
        }),
        scenario("SNS Publish throttled for 6 s", n, "", |p, _| {
            p.add(Fault {
                action: Action::Publish,
                kind: Kind::Throttle,
                times: None,
                until: until(6),
            });
            Action::Publish
        }),
        scenario("SQS ReceiveMessage failing for 6 s", n, "", |p, _| {
            p.add(Fault {
                action: Action::ReceiveMessage,
                kind: Kind::ServerError,
                times: None,
                until: until(6),
            });
            Action::ReceiveMessage
        }),
        scenario("CloudWatch PutMetricData failing", n, "", |p, _| {
            p.add(Fault {
                action: Action::PutMetricData,
                kind: Kind::ServerError,
                times: None,
                until: None,
            });
            Action::PutMetricData
        }),
        scenario(
            "slow S3: 6 s per GetObject, visibility 2 s",
            4,
            "visibility_timeout = \"2s\"",
            |p, _| {
                p.add(Fault {
                    action: Action::GetObject,
                    kind: Kind::Latency(Duration::from_secs(6)),
                    times: None,
                    until: None,
                });
                Action::GetObject
            },
        ),
    ];
    println!(
        "{:<44} {:>6} {:>5} {:>10} {:>12} {:>6} {:>4} {:>8} {:>8}",
        "scenario",
        "files",
        "lost",
        "unexpected",
        "redeliveries",
        "queue",
        "dlq",
        "faults",
        "seconds"
    );
    for r in &rows {
        println!(
            "{:<44} {:>6} {:>5} {:>10} {:>12} {:>6} {:>4} {:>8} {:>8.1}",
            r.name,
            r.files,
            r.lost,
            r.unexpected,
            r.redeliveries,
            r.queue,
            r.dlq,
            r.faulted,
            r.secs
        );
    }
    let lost: usize = rows.iter().map(|r| r.lost).sum();
    let unexpected: usize = rows.iter().map(|r| r.unexpected).sum();
    println!(
        "reliability: {} scenarios, lost={lost}, duplicate_ids={unexpected}",
        rows.len()
    );
    for r in &rows {
        assert_eq!(
            (r.lost, r.unexpected, r.queue, r.dlq),
            (0, 0, 0, 0),
            "{}",
            r.name
        );
        if r.name != "baseline, no faults" {
            assert!(r.faulted > 0, "{}: the fault was injected", r.name);
        }
        // The heartbeat keeps slow files invisible, and the completed-object cache
        // turns a redelivered message into a skip: neither repeats an alert.
        if r.name.starts_with("slow S3") || r.name.starts_with("DeleteMessage") {
            assert_eq!(r.redeliveries, 0, "{}", r.name);
        }
    }
}
