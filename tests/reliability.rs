//! Nothing is lost: the worker against the emulator behind a fault-injecting proxy.
//! Each scenario uploads files with real S3 notifications, runs the worker until the
//! queue is idle, and compares the alert ids delivered to the file sink with the ids
//! `trailwatch scan` finds in the same files. The short form runs in the test suite;
//! `scripts/reliability` runs the full form (more files) and prints the table.

use std::collections::HashSet;
use std::process::Child;
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
    peak_rss_mib: f64,
}

/// How the worker is run in a scenario.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Run {
    /// One worker until the queue is idle.
    Once,
    /// SIGTERM once alerts flow, then a second worker until idle.
    Sigterm,
    /// `kill -9` once alerts flow, then a second worker until idle.
    Kill,
    /// Two workers on the queue at once, until idle.
    TwoWorkers,
}

/// A scenario: files, faults, how the worker runs, what else is in the queue.
struct Plan {
    name: &'static str,
    files: usize,
    /// `key = value` lines replacing the test bed's worker settings.
    extra: &'static str,
    run: Run,
    /// Corrupt, truncated, invalid, non-CloudTrail and empty files among the good
    /// ones: each must reach the dead-letter queue.
    poison: bool,
    /// Every object's notification sent a second time.
    duplicates: bool,
    /// A gzip bomb, an oversized record and a deeply nested record among the good
    /// files: each rejected with a clear error (and reaching the dead-letter queue)
    /// while memory stays bounded.
    hostile: bool,
    inject: fn(&Proxy) -> Action,
}

impl Plan {
    fn new(name: &'static str, files: usize) -> Plan {
        Plan {
            name,
            files,
            extra: "",
            run: Run::Once,
            poison: false,
            duplicates: false,
            hostile: false,
            inject: |_| Action::Other,
        }
    }
}

/// Waits for `child` to exit, sampling its peak resident set; returns (code, KiB).
fn wait_with_rss(bed: &Bed, child: &mut Child, secs: u64) -> (i32, u64) {
    let status = format!("/proc/{}/status", child.id());
    let mut peak = 0;
    let mut code = None;
    wait_for("the worker to exit", secs, || {
        if let Ok(s) = std::fs::read_to_string(&status) {
            if let Some(kib) = s
                .lines()
                .find(|l| l.starts_with("VmHWM:"))
                .and_then(|l| l.split_whitespace().nth(1))
                .and_then(|v| v.parse::<u64>().ok())
            {
                peak = peak.max(kib);
            }
        }
        code = child.try_wait().unwrap().map(|s| s.code().unwrap_or(-1));
        code.is_some()
    });
    let _ = bed;
    (code.unwrap(), peak)
}

fn scenario(p: Plan) -> Row {
    let bed = Bed::new(3);
    let proxy = Proxy::start(&bed.moto.endpoint);
    let dir = tempfile::tempdir().unwrap();
    let rules = root().join("rules/s3-sso-object-delete.toml");
    for n in 0..p.files {
        let body = gzip(&cloudtrail(&[s3_event(
            n,
            "DeleteObject",
            &format!("user{n}@example.com"),
            None,
        )]));
        write(&dir.path().join(format!("{n:05}.json.gz")), &body);
        bed.put(&format!("AWSLogs/{n:05}.json.gz"), body);
    }
    if p.poison {
        let good = gzip(&cloudtrail(&[s3_event(
            9999,
            "DeleteObject",
            "x@example.com",
            None,
        )]));
        bed.put(
            "AWSLogs/poison-corrupt.json.gz",
            b"\x1f\x8b\x08\x00 not deflate".to_vec(),
        );
        bed.put(
            "AWSLogs/poison-truncated.json.gz",
            good[..good.len() / 2].to_vec(),
        );
        bed.put(
            "AWSLogs/poison-invalid.json",
            b"{\"Records\": [ {\"eventName\": ".to_vec(),
        );
        bed.put(
            "AWSLogs/poison-not-cloudtrail.json",
            b"{\"hello\": \"world\"}".to_vec(),
        );
        bed.put("AWSLogs/poison-empty.json.gz", Vec::new());
    }
    if p.hostile {
        // 60 MB of zeros inside a record, a few dozen KB of gzip; the cap is 32 MB.
        let mut bomb = b"{\"Records\":[{\"eventName\":\"X\",\"pad\":\"".to_vec();
        bomb.extend(std::iter::repeat_n(b'0', 60 << 20));
        bomb.extend(b"\"}]}");
        bed.put("AWSLogs/hostile-bomb.json.gz", gzip(&bomb));
        let mut big = s3_event(9998, "DeleteObject", "x@example.com", None);
        big["pad"] = "y".repeat(20 << 20).into();
        bed.put(
            "AWSLogs/hostile-big-record.json.gz",
            gzip(&cloudtrail(&[big])),
        );
        let deep = format!(
            "{{\"Records\":[{{\"eventName\":\"X\",\"a\":{}1{}}}]}}",
            "[".repeat(100_000),
            "]".repeat(100_000)
        );
        bed.put("AWSLogs/hostile-deep.json.gz", gzip(deep.as_bytes()));
    }
    if p.duplicates {
        for n in 0..p.files {
            bed.send(
                &serde_json::json!({"Records": [{"eventVersion": "2.1", "eventSource": "aws:s3",
                    "eventName": "ObjectCreated:Put",
                    "s3": {"bucket": {"name": BUCKET}, "object": {"key": format!("AWSLogs/{n:05}.json.gz")}}}]})
                .to_string(),
            );
        }
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
    assert_eq!(expected.len(), p.files);

    let action = (p.inject)(&proxy);
    let mut cfg = bed.config(&rules, "");
    if p.hostile {
        let text = std::fs::read_to_string(&cfg).unwrap()
            + "\n[limits]\nmax_decompressed_bytes = 33554432\n";
        std::fs::write(&cfg, text).unwrap();
    }
    if !p.extra.is_empty() {
        let mut text = std::fs::read_to_string(&cfg).unwrap();
        for line in p.extra.lines().filter(|l| l.contains('=')) {
            let key = line.split('=').next().unwrap().trim();
            // Replace the key, or add it to [source].
            match text
                .lines()
                .find(|l| l.trim_start().starts_with(&format!("{key} =")))
            {
                Some(old) => text = text.replace(&old.to_owned(), line),
                None => text = text.replacen("[source]\n", &format!("[source]\n{line}\n"), 1),
            }
        }
        cfg = bed.dir.path().join("trailwatch-scenario.toml");
        std::fs::write(&cfg, text).unwrap();
    }
    let started = Instant::now();
    // After a kill (or a long poll abandoned at SIGTERM), the messages the first
    // worker held come back when their visibility runs out: wait longer than that
    // before calling the queue idle.
    let idle = [
        "--until-idle",
        if matches!(p.run, Run::Kill | Run::Sigterm) {
            "10s"
        } else {
            "4s"
        },
    ];
    let mut peak = 0;
    if matches!(p.run, Run::Sigterm | Run::Kill) {
        let mut w = bed.spawn_at(&cfg, &[], &proxy.endpoint);
        wait_for("alerts to flow", 120, || !bed.alerts().is_empty());
        signal(&w, if p.run == Run::Kill { "KILL" } else { "TERM" });
        let (code, rss) = wait_with_rss(&bed, &mut w, 60);
        peak = peak.max(rss);
        if p.run == Run::Sigterm {
            assert_eq!(code, 0, "{}: SIGTERM exits 0\n{}", p.name, bed.log());
            assert!(started.elapsed() < Duration::from_secs(120));
        }
    }
    let mut workers = vec![bed.spawn_at(&cfg, &idle, &proxy.endpoint)];
    if p.run == Run::TwoWorkers {
        workers.push(bed.spawn_at(&cfg, &idle, &proxy.endpoint));
    }
    for w in &mut workers {
        let (code, rss) = wait_with_rss(&bed, w, 600);
        assert_eq!(code, 0, "{}: {}", p.name, bed.log());
        peak = peak.max(rss);
    }
    let delivered: Vec<String> = bed
        .alerts()
        .iter()
        .filter(|a| a["actor"]["name"] != "x@example.com")
        .map(|a| a["alert_id"].as_str().unwrap().to_owned())
        .collect();
    let unique: HashSet<String> = delivered.iter().cloned().collect();
    Row {
        name: p.name,
        files: p.files,
        lost: expected.difference(&unique).count(),
        unexpected: unique.difference(&expected).count(),
        redeliveries: delivered.len() - unique.len(),
        queue: bed.depth(&bed.queue),
        dlq: bed.depth(&bed.dlq),
        secs: started.elapsed().as_secs_f64(),
        faulted: proxy.count(action).1,
        peak_rss_mib: peak as f64 / 1024.0,
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
    let plans = vec![
        Plan::new("baseline, no faults", if full { 1000 } else { 20 }),
        Plan {
            run: Run::Kill,
            extra: "visibility_timeout = \"4s\"",
            ..Plan::new("kill -9 while files flow, then restart", n)
        },
        Plan {
            run: Run::Sigterm,
            // A long poll abandoned at shutdown may hold a message until its
            // visibility timeout: keep that short so the restart sees it.
            extra: "visibility_timeout = \"4s\"",
            ..Plan::new("SIGTERM while files flow, then restart", n)
        },
        Plan {
            inject: |p| {
                p.add(Fault {
                    action: Action::GetObject,
                    kind: Kind::Latency(Duration::from_secs(6)),
                    times: None,
                    until: None,
                });
                Action::GetObject
            },
            extra: "visibility_timeout = \"2s\"",
            ..Plan::new("slow S3: 6 s per GetObject, visibility 2 s", 4)
        },
        Plan {
            inject: |p| {
                p.add(Fault {
                    action: Action::DeleteMessage,
                    kind: Kind::ServerError,
                    times: Some(12),
                    until: None,
                });
                Action::DeleteMessage
            },
            ..Plan::new("DeleteMessage failing", n)
        },
        Plan {
            inject: |p| {
                p.add(Fault {
                    action: Action::GetObject,
                    kind: Kind::ResetMidBody,
                    times: Some(3),
                    until: None,
                });
                Action::GetObject
            },
            ..Plan::new("S3 GetObject reset mid-body", n)
        },
        Plan {
            inject: |p| {
                p.add(Fault {
                    action: Action::GetObject,
                    kind: Kind::ServerError,
                    times: Some(8),
                    until: None,
                });
                Action::GetObject
            },
            ..Plan::new("S3 GetObject HTTP 500s", n)
        },
        Plan {
            poison: true,
            ..Plan::new("poison files among good ones", n)
        },
        Plan {
            hostile: true,
            ..Plan::new("gzip bomb, 20 MB record, deep nesting", n)
        },
        Plan {
            inject: |p| {
                p.add(Fault {
                    action: Action::Publish,
                    kind: Kind::Throttle,
                    times: None,
                    until: until(6),
                });
                Action::Publish
            },
            ..Plan::new("SNS Publish throttled for 6 s", n)
        },
        Plan {
            inject: |p| {
                p.add(Fault {
                    action: Action::PutMetricData,
                    kind: Kind::ServerError,
                    times: None,
                    until: None,
                });
                Action::PutMetricData
            },
            ..Plan::new("CloudWatch PutMetricData failing", n)
        },
        Plan {
            duplicates: true,
            extra: "max_in_flight = 1",
            ..Plan::new("duplicate notifications", n)
        },
        Plan {
            inject: |p| {
                p.add(Fault {
                    action: Action::ReceiveMessage,
                    kind: Kind::ServerError,
                    times: None,
                    until: until(6),
                });
                Action::ReceiveMessage
            },
            ..Plan::new("SQS ReceiveMessage failing for 6 s", n)
        },
        Plan {
            run: Run::TwoWorkers,
            extra: "visibility_timeout = \"3s\"",
            inject: |p| {
                p.add(Fault {
                    action: Action::GetObject,
                    kind: Kind::Latency(Duration::from_millis(1500)),
                    times: None,
                    until: None,
                });
                Action::GetObject
            },
            ..Plan::new("two workers, short visibility, slow files", n.min(12))
        },
    ];
    let rows: Vec<Row> = plans.into_iter().map(scenario).collect();
    println!(
        "{:<44} {:>6} {:>5} {:>10} {:>12} {:>6} {:>4} {:>7} {:>8} {:>9}",
        "scenario",
        "files",
        "lost",
        "unexpected",
        "redeliveries",
        "queue",
        "dlq",
        "faults",
        "seconds",
        "peak MiB"
    );
    for r in &rows {
        println!(
            "{:<44} {:>6} {:>5} {:>10} {:>12} {:>6} {:>4} {:>7} {:>8.1} {:>9.1}",
            r.name,
            r.files,
            r.lost,
            r.unexpected,
            r.redeliveries,
            r.queue,
            r.dlq,
            r.faulted,
            r.secs,
            r.peak_rss_mib
        );
    }
    let lost: usize = rows.iter().map(|r| r.lost).sum();
    let unexpected: usize = rows.iter().map(|r| r.unexpected).sum();
    println!(
        "reliability: {} scenarios, lost={lost}, duplicate_ids={unexpected}",
        rows.len()
    );
    for r in &rows {
        let dlq = match r.name {
            n if n.starts_with("poison") => 5,
            n if n.starts_with("gzip bomb") => 3,
            _ => 0,
        };
        assert_eq!(
            (r.lost, r.unexpected, r.queue, r.dlq),
            (0, 0, 0, dlq),
            "{}",
            r.name
        );
        if r.faulted == 0 {
            assert!(
                ![
                    "slow",
                    "DeleteMessage",
                    "S3 GetObject",
                    "SNS",
                    "CloudWatch",
                    "SQS"
                ]
                .iter()
                .any(|p| r.name.starts_with(p)),
                "{}: the fault was injected",
                r.name
            );
        }
        // The heartbeat keeps slow files invisible, and the completed-object cache
        // turns a redelivered message into a skip: neither repeats an alert.
        if ["slow S3", "DeleteMessage", "duplicate", "two workers"]
            .iter()
            .any(|p| r.name.starts_with(p))
        {
            assert_eq!(r.redeliveries, 0, "{}", r.name);
        }
        assert!(
            r.peak_rss_mib < 256.0,
            "{}: peak RSS {} MiB",
            r.name,
            r.peak_rss_mib
        );
    }
}
