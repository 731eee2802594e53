//! Nothing is lost: the worker against the emulator behind a fault-injecting proxy.
//! Each scenario uploads files with real S3 notifications, runs the worker until the
//! queue is idle, and compares the alert ids delivered to the file sink (and to the
//! webhook, when one is configured) with the ids `trailwatch scan` finds in the same
//! files. The short form runs in the test suite; `scripts/reliability` runs the full
//! form (more files) and prints the table.
//!
//! The DynamoDB scenarios run the worker with its detection state in a table on
//! the emulator (created with `trailwatch state create-table`, past the proxy),
//! reached through the proxy like every other service, and rules with thresholds
//! and suppression beside a stateless one.

use std::collections::{HashMap, HashSet};
use std::io::{Read, Seek, Write};
use std::net::TcpListener;
use std::path::PathBuf;
use std::process::Child;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use crate::support::faults::{Action, DynamoOp, Fault, Kind, Proxy};
use crate::support::worker::*;
use crate::support::*;

struct Row {
    name: &'static str,
    files: usize,
    lost: usize,
    unexpected: usize,
    redeliveries: usize,
    /// The `AlertsRepeated` metric: windowed alerts sent again by a file processed
    /// again (a repeat claim of its own window).
    repeated: u64,
    queue: u64,
    dlq: u64,
    secs: f64,
    /// Seconds from the end of the fault (the last injected fault, the restart, the
    /// webhook's return) until every expected alert was delivered.
    recovery: Option<f64>,
    faulted: usize,
    peak_rss_mib: f64,
}

/// How the worker is run in a scenario.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Run {
    /// One worker until the queue is idle.
    Once,
    /// SIGTERM when `stop_when` holds, then a second worker until idle.
    Sigterm,
    /// `kill -9` when `stop_when` holds, then a second worker until idle.
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
    /// For [`Run::Sigterm`] and [`Run::Kill`]: the moment to stop the first worker.
    stop_when: fn(&Proxy, &Watch) -> bool,
    /// Corrupt, truncated, invalid, non-CloudTrail and empty files among the good
    /// ones: each must reach the dead-letter queue.
    poison: bool,
    /// Every object's notification sent a second time.
    duplicates: bool,
    /// A gzip bomb, an oversized record and a deeply nested record among the good
    /// files: each rejected with a clear error (and reaching the dead-letter queue)
    /// while memory stays bounded.
    hostile: bool,
    /// One more file, `AWSLogs/big.json.gz`, of [`BIG`] alerting records.
    big: bool,
    /// A webhook sink that answers 503, then hangs, then recovers.
    webhook: bool,
    /// While files flow: a rule file with invalid TOML, then one with a bad regex,
    /// each followed by SIGHUP.
    reload: bool,
    /// `/readyz` is polled throughout: it must report the outage, then recover.
    readiness: bool,
    /// Detection state in DynamoDB (a table on the emulator, reached through the
    /// proxy), with the threshold and suppression rules of [`STATEFUL_RULES`] beside
    /// the stateless one, and a denied call in every file for them.
    dynamodb: bool,
    /// The queue's maxReceiveCount.
    max_receive: u32,
    /// `--until-idle` for the (last) worker, when not the default.
    idle: Option<&'static str>,
    inject: fn(&Proxy) -> Action,
}

/// Records in the big file.
const BIG: usize = 400;

impl Plan {
    fn new(name: &'static str, files: usize) -> Plan {
        Plan {
            name,
            files,
            extra: "",
            run: Run::Once,
            stop_when: |_, w| w.delivered > 0,
            poison: false,
            duplicates: false,
            hostile: false,
            big: false,
            webhook: false,
            reload: false,
            readiness: false,
            dynamodb: false,
            max_receive: 3,
            idle: None,
            inject: |_| Action::Other,
        }
    }
}

/// Follows the file sink while the worker runs: the alert ids delivered so far, and
/// when the last expected one arrived.
struct Watch {
    path: PathBuf,
    offset: u64,
    partial: Vec<u8>,
    expected: HashSet<String>,
    /// Alert ids in delivery order (the poison and hostile files' alerts left out).
    ids: Vec<String>,
    /// Each id's rule and the key of the object it came from.
    origin: HashMap<String, (String, String)>,
    unique: HashSet<String>,
    /// Alerts delivered, and how many of them come from the big file.
    delivered: usize,
    big: usize,
    missing: usize,
    complete_at: Option<Instant>,
}

impl Watch {
    fn new(path: PathBuf, expected: HashSet<String>) -> Watch {
        Watch {
            path,
            offset: 0,
            partial: Vec::new(),
            missing: expected.len(),
            expected,
            ids: Vec::new(),
            origin: HashMap::new(),
            unique: HashSet::new(),
            delivered: 0,
            big: 0,
            complete_at: None,
        }
    }

    /// Reads what was appended since the last call.
    fn poll(&mut self) {
        let Ok(mut f) = std::fs::File::open(&self.path) else {
            return;
        };
        if f.seek(std::io::SeekFrom::Start(self.offset)).is_err() {
            return;
        }
        let mut more = Vec::new();
        let Ok(n) = f.read_to_end(&mut more) else {
            return;
        };
        self.offset += n as u64;
        self.partial.extend(more);
        let Some(last) = self.partial.iter().rposition(|&b| b == b'\n') else {
            return;
        };
        let lines: Vec<u8> = self.partial.drain(..=last).collect();
        for line in lines.split(|&b| b == b'\n').filter(|l| !l.is_empty()) {
            let a: serde_json::Value = serde_json::from_slice(line).unwrap();
            let actor = a["actor"]["name"].as_str().unwrap_or("");
            if actor == "x@example.com" {
                continue;
            }
            self.delivered += 1;
            if actor.starts_with("big") {
                self.big += 1;
            }
            let id = a["alert_id"].as_str().unwrap().to_owned();
            let rule = a["rule_id"].as_str().unwrap_or("").to_owned();
            let key = a["source"]["key"].as_str().unwrap_or("").to_owned();
            self.origin.entry(id.clone()).or_insert((rule, key));
            if self.unique.insert(id.clone()) && self.expected.contains(&id) {
                self.missing -= 1;
            }
            self.ids.push(id);
        }
        if self.missing == 0 && self.complete_at.is_none() {
            self.complete_at = Some(Instant::now());
        }
    }
}

/// Waits for `child` to exit, following the alerts and sampling the worker's peak
/// resident set; returns (exit code, KiB).
fn wait_with_rss(child: &mut Child, secs: u64, watch: &mut Watch) -> (i32, u64) {
    let mut peak = 0;
    let mut code = None;
    wait_for("the worker to exit", secs, || {
        peak = peak.max(rss(child));
        watch.poll();
        code = child.try_wait().unwrap().map(|s| s.code().unwrap_or(-1));
        code.is_some()
    });
    watch.poll();
    (code.unwrap(), peak)
}

/// The peak resident set of a running child, in KiB (0 once it has exited).
fn rss(child: &Child) -> u64 {
    std::fs::read_to_string(format!("/proc/{}/status", child.id()))
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("VmHWM:"))
                .and_then(|l| l.split_whitespace().nth(1))
                .and_then(|v| v.parse().ok())
        })
        .unwrap_or(0)
}

/// A webhook that answers 503 for its first few seconds (from the first request),
/// then accepts requests without ever answering, then recovers. It records the
/// alert ids it accepted.
struct Hook {
    port: u16,
    ids: Arc<Mutex<Vec<String>>>,
    /// Requests refused or left hanging.
    faulted: Arc<Mutex<usize>>,
    /// When it started accepting again (once it has been reached).
    recovered: Arc<Mutex<Option<Instant>>>,
}

const HOOK_503: Duration = Duration::from_secs(4);
const HOOK_HANG: Duration = Duration::from_secs(4);

impl Hook {
    fn start() -> Hook {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        let ids = Arc::new(Mutex::new(Vec::new()));
        let faulted = Arc::new(Mutex::new(0));
        let recovered = Arc::new(Mutex::new(None));
        let (i, f, r) = (ids.clone(), faulted.clone(), recovered.clone());
        std::thread::spawn(move || {
            let mut first: Option<Instant> = None;
            for conn in listener.incoming() {
                let Ok(mut conn) = conn else { return };
                let t0 = *first.get_or_insert_with(Instant::now);
                *r.lock().unwrap() = Some(t0 + HOOK_503 + HOOK_HANG);
                let (i, f) = (i.clone(), f.clone());
                std::thread::spawn(move || {
                    let body = read_http_body(&mut conn);
                    let age = t0.elapsed();
                    if age < HOOK_503 {
                        *f.lock().unwrap() += 1;
                        respond(&mut conn, "503 Service Unavailable");
                    } else if age < HOOK_503 + HOOK_HANG {
                        // Hang: never answer; the sink's timeout must give up.
                        *f.lock().unwrap() += 1;
                        std::thread::sleep(HOOK_503 + HOOK_HANG - age + Duration::from_secs(2));
                    } else {
                        let a: serde_json::Value = serde_json::from_str(&body).unwrap();
                        i.lock()
                            .unwrap()
                            .push(a["alert_id"].as_str().unwrap().to_owned());
                        respond(&mut conn, "200 OK");
                    }
                });
            }
        });
        Hook {
            port,
            ids,
            faulted,
            recovered,
        }
    }
}

/// A rule file with invalid TOML, and one with a regex that does not compile.
const BROKEN_TOML: &str = "id = \"broken\"\ntitle = \n";
const BAD_REGEX: &str =
    "id = \"bad\"\ntitle = \"t\"\nseverity = \"low\"\n[match]\neventName = { regex = \"(\" }\n";

/// The windowed rules of the DynamoDB scenarios, by file name: a threshold with
/// suppression on the denied call each file holds (four actors, one call a second
/// in event time: every actor's one-minute windows reach 3, and suppression lets
/// one alert per actor and two minutes out), and suppression alone on the deletes
/// (one alert per bucket and minute).
const STATEFUL_RULES: &[(&str, &str)] = &[
    (
        "denied-burst.toml",
        r#"id = "denied-burst"
title = "{actor.name} was denied 3 times within a minute"
severity = "medium"

[match]
"event.denied" = true

[threshold]
count = 3
window = "1m"
group_by = "actor.name"

[suppress]
window = "2m"
"#,
    ),
    (
        "sso-delete-per-minute.toml",
        r#"id = "sso-delete-per-minute"
title = "SSO users deleted objects in {s3.bucket}"
severity = "low"

[match]
eventSource = "s3.amazonaws.com"
eventName = "DeleteObject"
"actor.kind" = "sso_user"

[suppress]
window = "1m"
key = "s3.bucket"
"#,
    ),
];

/// The state table of the DynamoDB scenarios.
const STATE_TABLE: &str = "trailwatch-state";

/// Whether an alert of `rule` is windowed (its id is its window's, claimed in the
/// state table), as opposed to one alert per matching event.
fn windowed(rule: &str) -> bool {
    STATEFUL_RULES
        .iter()
        .any(|(f, _)| f.strip_suffix(".toml") == Some(rule))
}

/// The records of the `n`th file: an SSO user's DeleteObject (an alert of its own),
/// and with `denied`, a call refused to one of four actors, one second later in
/// event time per file.
fn records(n: usize, denied: bool) -> Vec<serde_json::Value> {
    let mut out = vec![s3_event(
        n,
        "DeleteObject",
        &format!("user{n}@example.com"),
        None,
    )];
    if denied {
        let mut e = s3_event(
            n,
            "GetObject",
            &format!("prober{}@example.com", n % 4),
            Some("AccessDenied"),
        );
        e["eventID"] = format!("00000000-0000-4000-9000-{n:012}").into();
        e["requestID"] = format!("DEN{n:013}").into();
        out.push(e);
    }
    out
}

fn scenario(p: Plan) -> Row {
    let bed = Bed::new(p.max_receive);
    let proxy = Proxy::start(&bed.moto.endpoint);
    let dir = tempfile::tempdir().unwrap();
    let rules = if p.dynamodb {
        let d = bed.dir.path().join("rules");
        std::fs::create_dir_all(&d).unwrap();
        std::fs::copy(
            root().join("rules/s3-sso-object-delete.toml"),
            d.join("s3-sso-object-delete.toml"),
        )
        .unwrap();
        for (name, text) in STATEFUL_RULES {
            std::fs::write(d.join(name), text).unwrap();
        }
        d
    } else if p.reload {
        let d = bed.dir.path().join("rules");
        std::fs::create_dir_all(&d).unwrap();
        std::fs::copy(
            root().join("rules/s3-sso-object-delete.toml"),
            d.join("s3-sso-object-delete.toml"),
        )
        .unwrap();
        d
    } else {
        root().join("rules/s3-sso-object-delete.toml")
    };
    for n in 0..p.files {
        let body = gzip(&cloudtrail(&records(n, p.dynamodb)));
        write(&dir.path().join(format!("{n:05}.json.gz")), &body);
        bed.put(&format!("AWSLogs/{n:05}.json.gz"), body);
    }
    if p.big {
        let records: Vec<_> = (0..BIG)
            .map(|i| {
                s3_event(
                    100_000 + i,
                    "DeleteObject",
                    &format!("big{i}@example.com"),
                    None,
                )
            })
            .collect();
        let body = gzip(&cloudtrail(&records));
        write(&dir.path().join("big.json.gz"), &body);
        bed.put("AWSLogs/big.json.gz", body);
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
        // Compressed as a stream: neither the bomb nor the record is ever whole in
        // memory here, and the worker must not hold them either.
        let streamed = |head: &[u8], fill: u8, len: usize, tail: &[u8]| {
            let mut e = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
            e.write_all(head).unwrap();
            let block = vec![fill; 1 << 20];
            for _ in 0..len >> 20 {
                e.write_all(&block).unwrap();
            }
            e.write_all(tail).unwrap();
            e.finish().unwrap()
        };
        // 300 MB of zeros inside a record, a few hundred KB of gzip; the cap is
        // 256 MiB.
        bed.put(
            "AWSLogs/hostile-bomb.json.gz",
            streamed(
                b"{\"Records\":[{\"eventName\":\"X\",\"pad\":\"",
                b'0',
                300 << 20,
                b"\"}]}",
            ),
        );
        // One 100 MB record (under the decompression cap, over the record cap).
        let mut big = s3_event(9998, "DeleteObject", "x@example.com", None);
        big["pad"] = "".into();
        let text = serde_json::to_string(&big).unwrap();
        let (head, tail) = text.split_at(text.rfind("\"\"").unwrap() + 1);
        bed.put(
            "AWSLogs/hostile-big-record.json.gz",
            streamed(
                format!("{{\"Records\":[{head}").as_bytes(),
                b'y',
                100 << 20,
                format!("{tail}]}}").as_bytes(),
            ),
        );
        let deep = format!(
            "{{\"Records\":[{{\"eventName\":\"X\",\"a\":{}1{}}}]}}",
            "[".repeat(100_000),
            "]".repeat(100_000)
        );
        bed.put("AWSLogs/hostile-deep.json.gz", gzip(deep.as_bytes()));
    }
    if p.duplicates {
        // Each object again in a second message; every other one of those names
        // its object twice.
        for n in 0..p.files {
            let record = serde_json::json!({"eventVersion": "2.1", "eventSource": "aws:s3",
                "eventName": "ObjectCreated:Put",
                "s3": {"bucket": {"name": BUCKET}, "object": {"key": format!("AWSLogs/{n:05}.json.gz")}}});
            let records = if n % 2 == 0 {
                vec![record.clone(), record]
            } else {
                vec![record]
            };
            bed.send(&serde_json::json!({ "Records": records }).to_string());
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
    if p.dynamodb {
        // The stateless rule's alert per file, and windowed ones.
        let w = jsonl(&out)
            .iter()
            .filter(|a| windowed(a["rule_id"].as_str().unwrap()))
            .count();
        assert!(w > 0, "{}: no windowed alert expected\n{out}", p.name);
        assert_eq!(expected.len(), p.files + w);
    } else {
        assert_eq!(expected.len(), p.files + if p.big { BIG } else { 0 });
    }
    if p.dynamodb {
        // Straight to the emulator, not through the proxy.
        let mut c = trailwatch();
        bed.moto.apply(&mut c);
        let (code, out, err) = run(c.args(["state", "create-table", "--table", STATE_TABLE]));
        assert_eq!(code, 0, "{out}{err}");
    }

    let action = (p.inject)(&proxy);
    let hook = p.webhook.then(Hook::start);
    let sinks = match &hook {
        Some(h) => format!(
            "\n[[sink]]\ntype = \"webhook\"\nurl = \"http://127.0.0.1:{}/hook\"\nallow_insecure_http = true\ntimeout = \"1s\"\nmax_attempts = 2\n",
            h.port
        ),
        None => String::new(),
    };
    let sinks = match p.dynamodb {
        true => format!("{sinks}\n[state]\nbackend = \"dynamodb\"\ntable = \"{STATE_TABLE}\"\n"),
        false => sinks,
    };
    let mut cfg = bed.config(&rules, &sinks);
    if p.hostile {
        let text = std::fs::read_to_string(&cfg).unwrap()
            + "\n[limits]\nmax_decompressed_bytes = 268435456\n";
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
    // Readiness as seen from outside: ready or not, and the answer, for every poll.
    let ready_log = Arc::new(Mutex::new(Vec::<(bool, String)>::new()));
    let polling = Arc::new(std::sync::atomic::AtomicBool::new(p.readiness));
    // Often enough, with DynamoDB, to see a throttled file's failure before the
    // next file clears it.
    let poll_every = Duration::from_millis(if p.dynamodb { 25 } else { 200 });
    if p.readiness {
        let port = TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let text = std::fs::read_to_string(&cfg)
            .unwrap()
            .replace("listen = \"\"", &format!("listen = \"127.0.0.1:{port}\""));
        std::fs::write(&cfg, text).unwrap();
        let (log, on) = (ready_log.clone(), polling.clone());
        std::thread::spawn(move || {
            while on.load(std::sync::atomic::Ordering::SeqCst) {
                if let Ok(mut c) = std::net::TcpStream::connect(("127.0.0.1", port)) {
                    let _ = c
                        .write_all(b"GET /readyz HTTP/1.1\r\nhost: x\r\nconnection: close\r\n\r\n");
                    let mut answer = String::new();
                    let _ = c.read_to_string(&mut answer);
                    if let Some(status) = answer.split_whitespace().nth(1) {
                        let body = answer.split("\r\n\r\n").nth(1).unwrap_or("");
                        log.lock()
                            .unwrap()
                            .push((status == "200", body.trim().to_owned()));
                    }
                }
                std::thread::sleep(poll_every);
            }
        });
    }
    let started = Instant::now();
    // After a kill (or a long poll abandoned at SIGTERM), the messages the first
    // worker held come back when their visibility runs out: wait longer than that
    // before calling the queue idle.
    let idle = [
        "--until-idle",
        match p.idle {
            Some(idle) => idle,
            None if matches!(p.run, Run::Kill | Run::Sigterm) => "10s",
            None => "4s",
        },
    ];
    // A fault armed for a period ends then: a worker must not have given up before.
    let armed_until = proxy.armed_until();
    let mut watch = Watch::new(bed.alerts_path(), expected.clone());
    let mut peak = 0;
    let mut restarted = None;
    if matches!(p.run, Run::Sigterm | Run::Kill) {
        let mut w = bed.spawn_at(&cfg, &[], &proxy.endpoint);
        wait_for("the moment to stop the worker", 120, || {
            peak = peak.max(rss(&w));
            watch.poll();
            (p.stop_when)(&proxy, &watch)
        });
        signal(&w, if p.run == Run::Kill { "KILL" } else { "TERM" });
        if p.run == Run::Kill {
            // The fault marked the moment to kill; the restart runs without it.
            proxy.clear();
        }
        let (code, rss) = wait_with_rss(&mut w, 60, &mut watch);
        peak = peak.max(rss);
        if p.run == Run::Sigterm {
            assert_eq!(code, 0, "{}: SIGTERM exits 0\n{}", p.name, bed.log());
            assert!(started.elapsed() < Duration::from_secs(120));
        }
        restarted = Some(Instant::now());
    }
    let mut workers = vec![bed.spawn_at(&cfg, &idle, &proxy.endpoint)];
    if p.run == Run::TwoWorkers {
        workers.push(bed.spawn_at(&cfg, &idle, &proxy.endpoint));
    }
    if p.reload {
        let broken = rules.join("zz-broken.toml");
        let rejected = || bed.log().matches("rule reload rejected").count();
        wait_for("alerts to flow", 120, || {
            watch.poll();
            watch.delivered > 0
        });
        for text in [BROKEN_TOML, BAD_REGEX] {
            let before = rejected();
            std::fs::write(&broken, text).unwrap();
            signal(&workers[0], "HUP");
            wait_for("the reload to be rejected", 30, || rejected() > before);
        }
        watch.poll();
        // No gap: files were still flowing when both reloads were rejected, and
        // every one of them is alerted on (checked with `lost` below).
        assert!(
            watch.delivered < expected.len(),
            "{}: the reloads came after the last file; slow the files down",
            p.name
        );
    }
    for w in &mut workers {
        let (code, rss) = wait_with_rss(w, 600, &mut watch);
        assert_eq!(code, 0, "{}: {}", p.name, bed.log());
        peak = peak.max(rss);
    }
    if let Some(until) = armed_until.filter(|_| matches!(p.run, Run::Once | Run::TwoWorkers)) {
        assert!(
            Instant::now() > until,
            "{}: the worker exited before the fault was over\n{}",
            p.name,
            bed.log()
        );
    }
    polling.store(false, std::sync::atomic::Ordering::SeqCst);
    if p.readiness {
        let answers = ready_log.lock().unwrap().clone();
        let seen: Vec<bool> = answers.iter().map(|(ok, _)| *ok).collect();
        // Down for the outage (2 s at least: a healthy start shows a few hundred
        // milliseconds), then ready again. Throttling of a share of the calls fails
        // a file now and then: each such failure shows until the next file goes
        // through.
        let down = seen.iter().filter(|r| !**r).count();
        let last_down = seen.iter().rposition(|r| !r);
        let partial = p.name.contains("throttled");
        let down_for = poll_every * down as u32;
        assert!(
            (partial && down > 0 || down_for >= Duration::from_secs(2))
                && last_down.is_some_and(|i| seen[i..].contains(&true)),
            "{}: /readyz reports the outage, then recovers: {seen:?}",
            p.name
        );
        if p.dynamodb {
            // And says why: detection state, the call, the error code.
            let why: Vec<&String> = answers
                .iter()
                .filter(|(ok, _)| !ok)
                .map(|(_, a)| a)
                .collect();
            assert!(
                why.iter()
                    .any(|a| a.starts_with("not ready: detection state: DynamoDB ")),
                "{}: /readyz names detection state: {why:?}",
                p.name
            );
        }
    }
    if p.reload {
        assert_eq!(bed.metric("ReloadFailures", None), 2.0, "{}", p.name);
        let log = bed.log();
        assert!(log.contains("zz-broken.toml:"), "{log}");
        assert!(log.contains("invalid regex"), "{log}");
    }
    let repeated = bed.metric("AlertsRepeated", None) as u64;
    if p.dynamodb {
        account_for_repeats(&p, &proxy, &watch, repeated);
    }
    if p.dynamodb && p.run == Run::Kill {
        // Files done before the kill (state written, DeleteMessage not answered)
        // are skipped by the restart, not evaluated again.
        assert!(
            bed.metric("ObjectsSkipped", None) >= 1.0,
            "{}: the kill point was missed (no completed file skipped)\n{}",
            p.name,
            bed.log()
        );
    }
    let unique = &watch.unique;
    let mut lost = expected.difference(unique).count();
    let mut faulted = proxy.count(action).1;
    // A restart ends the fault it follows (a kill or SIGTERM); otherwise the last
    // injected fault does.
    let mut fault_end = restarted.or(proxy.last_fault());
    if let Some(h) = &hook {
        let got: HashSet<String> = h.ids.lock().unwrap().iter().cloned().collect();
        lost = lost.max(expected.difference(&got).count());
        faulted = *h.faulted.lock().unwrap();
        fault_end = *h.recovered.lock().unwrap();
    }
    if p.reload {
        // Not an outage: the point is that nothing stopped.
        fault_end = None;
    }
    let recovery = match (fault_end, watch.complete_at) {
        (Some(end), Some(done)) => Some(done.saturating_duration_since(end).as_secs_f64()),
        _ => None,
    };
    Row {
        name: p.name,
        files: p.files + usize::from(p.big),
        lost,
        unexpected: unique.difference(&expected).count(),
        redeliveries: watch.ids.len() - unique.len(),
        repeated,
        queue: bed.depth(&bed.queue),
        dlq: bed.depth(&bed.dlq),
        secs: started.elapsed().as_secs_f64(),
        recovery,
        faulted,
        peak_rss_mib: peak as f64 / 1024.0,
    }
}

/// Every alert id delivered more than once is accounted for: a windowed alert by a
/// repeat claim of its window (`AlertsRepeated`, counted by the worker that sent it
/// again), an alert of the stateless rule by its file being read again (a file that
/// failed on detection state after its stateless alerts went out, or one in flight
/// at a kill, is read again and sends them again, as in the memory rows).
fn account_for_repeats(p: &Plan, proxy: &Proxy, watch: &Watch, repeated: u64) {
    let mut times: HashMap<&str, usize> = HashMap::new();
    for id in &watch.ids {
        *times.entry(id.as_str()).or_default() += 1;
    }
    let mut windowed_again = 0;
    for (id, n) in times.into_iter().filter(|(_, n)| *n > 1) {
        let (rule, key) = &watch.origin[id];
        if windowed(rule) {
            windowed_again += n - 1;
            continue;
        }
        let reads = proxy.count_path(Action::GetObject, key).0;
        assert!(
            reads >= n,
            "{}: {id} ({rule}, {key}) delivered {n} times, its file read {reads} times",
            p.name
        );
    }
    assert!(
        windowed_again as u64 <= repeated,
        "{}: windowed alerts delivered again {windowed_again} times, AlertsRepeated = {repeated}",
        p.name
    );
}

fn full_form() -> bool {
    std::env::var_os("TRAILWATCH_RELIABILITY_FULL").is_some()
}

/// How long the SNS and SQS outages last: the issue's minute in the full form.
fn outage_secs() -> u64 {
    if full_form() { 60 } else { 6 }
}

/// The scenario matrix. Every scenario must lose nothing and deliver no unexpected
/// alert; raw redeliveries (the same id twice) are allowed and counted.
#[test]
fn nothing_is_lost_under_faults() {
    use Action::*;
    let full = full_form();
    let n = if full { 200 } else { 12 };
    let plans = vec![
        Plan::new("baseline, no faults", if full { 1000 } else { 20 }),
        Plan {
            run: Run::Kill,
            extra: "visibility_timeout = \"4s\"",
            inject: |p| {
                p.add(Fault::on(GetObject, Kind::Latency(Duration::from_secs(4))).times(1));
                GetObject
            },
            stop_when: |p, _| p.count(GetObject).0 >= 1,
            ..Plan::new("kill -9 during GetObject, then restart", n)
        },
        Plan {
            run: Run::Kill,
            extra: "visibility_timeout = \"4s\"",
            big: true,
            inject: |p| {
                p.add(
                    Fault::on(GetObject, Kind::StallMidBody(Duration::from_secs(20)))
                        .path("big.json.gz")
                        .times(1),
                );
                GetObject
            },
            // Half the big file read and evaluated, some of its alerts delivered,
            // the rest of the body stalled. (The SDK gives up on a stalled body
            // after 5 s and the file is read again: a kill that late would find it
            // fully delivered, and the wait times out instead of passing.)
            stop_when: |p, w| p.stalled() >= 1 && w.big > 0 && w.big < BIG,
            ..Plan::new("kill -9 mid-file, alerts partly delivered", n)
        },
        Plan {
            run: Run::Kill,
            extra: "visibility_timeout = \"4s\"",
            inject: |p| {
                // Every delete hangs and is dropped until the kill (the restarted
                // worker runs without faults).
                p.add(Fault::on(
                    DeleteMessage,
                    Kind::Hang(Duration::from_secs(30)),
                ));
                DeleteMessage
            },
            // The first delete is the bucket's s3:TestEvent; the second follows a
            // data file whose alerts were delivered.
            stop_when: |p, w| w.delivered > 0 && p.count(DeleteMessage).0 >= 2,
            ..Plan::new("kill -9 between delivery and delete", n)
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
                p.add(Fault::on(GetObject, Kind::Latency(Duration::from_secs(6))));
                GetObject
            },
            extra: "visibility_timeout = \"2s\"",
            ..Plan::new("slow S3: 6 s per GetObject, visibility 2 s", 4)
        },
        Plan {
            inject: |p| {
                p.add(Fault::on(DeleteMessage, Kind::ServerError).times(12));
                DeleteMessage
            },
            ..Plan::new("DeleteMessage failing", n)
        },
        Plan {
            inject: |p| {
                p.add(Fault::on(GetObject, Kind::ResetMidBody).times(3));
                GetObject
            },
            ..Plan::new("S3 GetObject reset mid-body", n)
        },
        Plan {
            inject: |p| {
                p.add(Fault::on(GetObject, Kind::ServerError).times(8));
                GetObject
            },
            ..Plan::new("S3 GetObject HTTP 500s", n)
        },
        Plan {
            poison: true,
            ..Plan::new("poison files among good ones", n)
        },
        Plan {
            hostile: true,
            ..Plan::new("gzip bomb, 100 MB record, deep nesting", n)
        },
        Plan {
            inject: |p| {
                p.add(Fault::on(Publish, Kind::Throttle).for_secs(outage_secs()));
                Publish
            },
            ..Plan::new(
                if full {
                    "SNS Publish throttled for 60 s"
                } else {
                    "SNS Publish throttled for 6 s"
                },
                n,
            )
        },
        Plan {
            inject: |p| {
                p.add(Fault::on(Publish, Kind::ServerError).ratio(0.5));
                Publish
            },
            ..Plan::new("SNS Publish: half the calls failing", n)
        },
        Plan {
            webhook: true,
            ..Plan::new("webhook 503 4 s, hanging 4 s, then OK", n)
        },
        Plan {
            inject: |p| {
                p.add(Fault::on(PutMetricData, Kind::ServerError));
                PutMetricData
            },
            ..Plan::new("CloudWatch PutMetricData failing", n)
        },
        Plan {
            duplicates: true,
            extra: "max_in_flight = 1",
            ..Plan::new("duplicate notifications", n)
        },
        Plan {
            reload: true,
            // One file at a time, each slowed down, so the reloads land mid-stream.
            extra: "max_in_flight = 1",
            inject: |p| {
                p.add(Fault::on(
                    GetObject,
                    Kind::Latency(Duration::from_millis(800)),
                ));
                Other
            },
            ..Plan::new("rule reload: invalid TOML, bad regex", n)
        },
        Plan {
            inject: |p| {
                p.add(Fault::on(ReceiveMessage, Kind::ServerError).for_secs(outage_secs()));
                ReceiveMessage
            },
            readiness: true,
            ..Plan::new(
                if full {
                    "SQS ReceiveMessage failing for 60 s"
                } else {
                    "SQS ReceiveMessage failing for 6 s"
                },
                n,
            )
        },
        Plan {
            run: Run::TwoWorkers,
            extra: "visibility_timeout = \"3s\"",
            inject: |p| {
                p.add(Fault::on(
                    GetObject,
                    Kind::Latency(Duration::from_millis(1500)),
                ));
                GetObject
            },
            ..Plan::new("two workers, short visibility, slow files", n.min(12))
        },
        // Detection state that does not answer holds a file and its message (the
        // calls are retried with backoff): with the bed's settings (no retry delay,
        // three receives), a file released for every failure would reach the
        // dead-letter queue within seconds of the fault.
        Plan {
            dynamodb: true,
            readiness: true,
            inject: |p| {
                p.add(
                    Fault::on(DynamoDb(DynamoOp::All), Kind::Throttle)
                        .ratio(0.5)
                        .for_secs(outage_secs()),
                );
                DynamoDb(DynamoOp::All)
            },
            ..Plan::new(
                if full {
                    "DynamoDB throttled (half the calls) for 60 s"
                } else {
                    "DynamoDB throttled (half the calls) for 6 s"
                },
                n,
            )
        },
        Plan {
            dynamodb: true,
            readiness: true,
            inject: |p| {
                p.add(
                    Fault::on(DynamoDb(DynamoOp::All), Kind::Unavailable).for_secs(outage_secs()),
                );
                DynamoDb(DynamoOp::All)
            },
            ..Plan::new(
                if full {
                    "DynamoDB unavailable (503) for 60 s"
                } else {
                    "DynamoDB unavailable (503) for 6 s"
                },
                n,
            )
        },
        Plan {
            dynamodb: true,
            max_receive: 5,
            run: Run::Kill,
            extra: "visibility_timeout = \"4s\"",
            inject: |p| {
                // Every delete hangs and is dropped until the kill: files finish
                // (alerts delivered, windows, claims and the completed object written
                // to the table) and wait on their delete.
                p.add(Fault::on(
                    DeleteMessage,
                    Kind::Hang(Duration::from_secs(30)),
                ));
                DeleteMessage
            },
            // The first delete is the bucket's s3:TestEvent; two more follow data
            // files whose state is written.
            stop_when: |p, w| w.delivered > 0 && p.count(DeleteMessage).0 >= 3,
            ..Plan::new("DynamoDB: kill -9 between state and delete", n)
        },
    ];
    // TRAILWATCH_RELIABILITY_ONLY=text runs the scenarios whose name contains it.
    let only = std::env::var("TRAILWATCH_RELIABILITY_ONLY").unwrap_or_default();
    let rows: Vec<Row> = plans
        .into_iter()
        .filter(|p| p.name.contains(&only))
        .map(scenario)
        .collect();
    assert!(!rows.is_empty(), "no scenario matches `{only}`");
    println!(
        "{:<44} {:>6} {:>5} {:>10} {:>12} {:>8} {:>6} {:>4} {:>7} {:>9} {:>8} {:>9}",
        "scenario",
        "files",
        "lost",
        "unexpected",
        "redeliveries",
        "repeated",
        "queue",
        "dlq",
        "faults",
        "recovery",
        "seconds",
        "peak MiB"
    );
    for r in &rows {
        println!(
            "{:<44} {:>6} {:>5} {:>10} {:>12} {:>8} {:>6} {:>4} {:>7} {:>9} {:>8.1} {:>9.1}",
            r.name,
            r.files,
            r.lost,
            r.unexpected,
            r.redeliveries,
            r.repeated,
            r.queue,
            r.dlq,
            r.faulted,
            r.recovery.map_or("-".to_owned(), |s| format!("{s:.1}")),
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
                    "SQS",
                    "kill -9",
                    "webhook",
                    "DynamoDB",
                ]
                .iter()
                .any(|p| r.name.starts_with(p)),
                "{}: the fault was injected",
                r.name
            );
        }
        // The heartbeat keeps slow files invisible, the completed-object cache
        // turns a redelivered message into a skip, and a sink outage holds the
        // message rather than releasing it: none of them repeats an alert.
        if [
            "slow S3",
            "DeleteMessage",
            "duplicate",
            "two workers",
            "SNS",
            "webhook",
        ]
        .iter()
        .any(|p| r.name.starts_with(p))
        {
            assert_eq!(r.redeliveries, 0, "{}", r.name);
        }
        // Killed after alerts were delivered but before the delete: the restart
        // sends them again (at least once), with the same ids.
        if ["kill -9 mid-file", "kill -9 between"]
            .iter()
            .any(|p| r.name.starts_with(p))
        {
            assert!(r.redeliveries >= 1, "{}: the kill point was missed", r.name);
        }
        assert!(
            r.peak_rss_mib < 256.0,
            "{}: peak RSS {} MiB",
            r.name,
            r.peak_rss_mib
        );
    }
}
