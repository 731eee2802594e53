//! A fleet: workers sharing detection state in DynamoDB find what `scan` finds,
//! whatever the order files come in, with every object notified twice and a
//! worker killed midway; `scan` itself does not depend on the order of its files;
//! the table's set-up and the `[state]` configuration's errors.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::process::Child;

use serde_json::Value;

use crate::support::worker::*;
use crate::support::*;

/// The request ID of the corpus's one `DeleteObjects` joined with access log lines.
const JOIN_REQUEST: &str = "FLEETJOIN0000001";

/// Alert ids by rule.
type ByRule = BTreeMap<String, BTreeSet<String>>;

fn by_rule<'a>(alerts: impl IntoIterator<Item = &'a Value>) -> ByRule {
    let mut out = ByRule::new();
    for a in alerts {
        out.entry(a["rule_id"].as_str().unwrap().to_owned())
            .or_default()
            .insert(a["alert_id"].as_str().unwrap().to_owned());
    }
    out
}

/// Per rule, the ids only `want` has and those only `got` has; empty when equal.
fn differences(want: &ByRule, got: &ByRule, want_name: &str, got_name: &str) -> String {
    let none = BTreeSet::new();
    let rules: BTreeSet<&String> = want.keys().chain(got.keys()).collect();
    let mut out = String::new();
    for r in rules {
        let (w, g) = (want.get(r).unwrap_or(&none), got.get(r).unwrap_or(&none));
        if w == g {
            continue;
        }
        let only_w: Vec<&String> = w.difference(g).collect();
        let only_g: Vec<&String> = g.difference(w).collect();
        out.push_str(&format!(
            "  {r}: {} in {want_name}, {} in {got_name}; only in {want_name} ({}): {only_w:?}; only in {got_name} ({}): {only_g:?}\n",
            w.len(),
            g.len(),
            only_w.len(),
            only_g.len()
        ));
    }
    out
}

/// The alerts of a file sink. A worker killed by SIGKILL may have left its last
/// line cut short (`killed`): that line is left out (its message was not deleted,
/// so the alert comes again from whichever worker reads the file next).
fn sink_alerts(path: &Path, killed: bool) -> Vec<Value> {
    let text = std::fs::read_to_string(path).unwrap_or_default();
    let complete = match text.rfind('\n') {
        Some(i) => &text[..=i],
        None => "",
    };
    let rest = &text[complete.len()..];
    assert!(
        killed || rest.is_empty(),
        "{}: a line without its end from a worker that was not killed: {rest}",
        path.display()
    );
    jsonl(complete)
}

/// The DeleteObjects event the access log below answers: an SSO user's batch
/// delete of three keys (two deleted, one refused).
fn join_files(dir: &Path) -> Vec<PathBuf> {
    let mut batch = s3_event(9 * 60 + 3, "DeleteObjects", "jane.doe@example.com", None);
    batch["requestID"] = JOIN_REQUEST.into();
    batch["requestParameters"] =
        serde_json::json!({"bucketName": "finance-reports-prod", "delete": ""});
    let trail =
        dir.join("111122223333_CloudTrail_eu-west-1_20241105T1010Z_FleetJoin0000001.json.gz");
    write(&trail, gzip(&cloudtrail(&[batch])));
    let sample = std::fs::read_to_string(root().join(
        "tests/data/access-logs/111122223333/eu-west-1/finance-reports-prod/2024/11/05/2024-11-05-10-25-00-6F1A2B3C4D5E6F70",
    ))
    .unwrap();
    let log = dir.join("access-logs/2024-11-05-10-25-00-F1EE7J0125000000");
    write(&log, sample.replace("Q7W3E9R1T5Y2U8I4", JOIN_REQUEST));
    vec![trail, log]
}

/// The fleet's corpus: seed 11, 8 files of 1,500 records (enough for thresholds
/// such as `repeated-access-denied` to fire), one DeleteObjects and its access
/// log; every file, sorted.
fn fleet_corpus(dir: &Path) -> Vec<PathBuf> {
    generate(11, 8, 1500, dir);
    join_files(dir);
    let mut files = trailwatch::input::local_files(dir).unwrap();
    files.sort();
    assert_eq!(files.len(), 10, "{files:?}");
    files
}

/// `trailwatch scan --threads N --rules RULES FILES...` (in that order): its alerts.
fn scan_files(rules: &Path, files: &[PathBuf], threads: usize) -> Vec<Value> {
    let (code, out, err) = run(trailwatch()
        .args(["scan", "--threads", &threads.to_string(), "--rules"])
        .arg(rules)
        .args(files));
    assert_eq!(code, 0, "{err}");
    jsonl(&out)
}

/// The rules the fleet runs: the whole bundled pack.
fn pack() -> PathBuf {
    root().join("rules")
}

/// Asserts the scan exercises what the fleet must agree on: threshold rules,
/// suppression, and the DeleteObjects join; returns the joined alert's id.
fn assert_exercised(alerts: &[Value], ids: &ByRule) -> String {
    for rule in [
        // thresholds (the first suppressed as well)
        "repeated-access-denied",
        "panther-aws-iamuser-reconaccessdenied",
        "panther-aws-cloudtrail-unauthorizedapicall",
        // suppression alone
        "iam-admin-policy-attached",
        "iam-access-key-created-for-user",
        "cis-iam-policy-changes",
    ] {
        assert!(
            ids.get(rule).is_some_and(|s| !s.is_empty()),
            "{rule} does not fire on the corpus: {:?}",
            ids.keys().collect::<Vec<_>>()
        );
    }
    let joined = alerts
        .iter()
        .find(|a| a["rule_id"] == "s3-sso-object-delete" && a["event"]["requestID"] == JOIN_REQUEST)
        .expect("the DeleteObjects alert");
    assert_eq!(
        joined["deleted_keys"].as_array().map(Vec::len),
        Some(3),
        "scan joins the access log lines: {joined}"
    );
    joined["alert_id"].as_str().unwrap().to_owned()
}

/// `trailwatch state ARGS...` against the bed's emulator.
fn state_cmd(bed: &Bed, args: &[&str]) -> (i32, String, String) {
    let mut c = trailwatch();
    bed.moto.apply(&mut c);
    run(c.arg("state").args(args))
}

/// A worker of the fleet: its config, sink and log, by name.
fn fleet_config(bed: &Bed, name: &str, table: &str) -> (PathBuf, PathBuf) {
    let alerts = bed.dir.path().join(format!("alerts-{name}.jsonl"));
    let config = bed.dir.path().join(format!("{name}.toml"));
    write(
        &config,
        format!(
            r#"
[source]
queue_url = "{queue}"
buckets = ["{BUCKET}"]
wait_time = "1s"
visibility_timeout = "10s"
retry_delay = "0s"
shutdown_grace = "30s"
max_in_flight = 2

[rules]
dir = "{rules}"

[state]
backend = "dynamodb"
table = "{table}"

[[sink]]
type = "file"
path = "{alerts}"

[metrics]
enabled = false

[health]
listen = ""
"#,
            queue = bed.queue,
            rules = pack().display(),
            alerts = alerts.display(),
        ),
    );
    (config, alerts)
}

/// Workers that are killed if the test ends before they do (a failed wait).
struct Running(Vec<Child>);

impl Drop for Running {
    fn drop(&mut self) {
        for c in &mut self.0 {
            if c.try_wait().ok().flatten().is_none() {
                let _ = c.kill();
                let _ = c.wait();
            }
        }
    }
}

fn spawn_worker(bed: &Bed, config: &Path, name: &str) -> Child {
    bed.spawn_logged(config, &[], &bed.moto.endpoint, &[], &format!("{name}.log"))
}

/// Three workers on one queue with their state in DynamoDB, every object notified
/// twice (by the bucket, uploaded in a shuffled order, and by hand, in another),
/// one worker killed with SIGKILL in the middle of a file and started again:
/// together they write exactly the alert ids `scan` finds in the same files, rule
/// by rule, and leave the queue and the dead-letter queue empty.
#[test]
fn three_workers_with_dynamodb_state_find_what_scan_finds() {
    let bed = Bed::new(5);
    let table = "trailwatch-state";
    let (code, out, err) = state_cmd(&bed, &["create-table", "--table", table]);
    assert_eq!(code, 0, "{out}{err}");

    let corpus = bed.dir.path().join("corpus");
    let files = fleet_corpus(&corpus);
    let scanned = scan_files(&pack(), &files, 2);
    let want = by_rule(&scanned);
    let joined_id = assert_exercised(&scanned, &want);

    let names = ["w0", "w1", "w2"];
    let configs: Vec<(PathBuf, PathBuf)> =
        names.iter().map(|n| fleet_config(&bed, n, table)).collect();
    let mut running = Running(
        names
            .iter()
            .zip(&configs)
            .map(|(n, (c, _))| spawn_worker(&bed, c, n))
            .collect(),
    );
    let workers = &mut running.0;

    let mut rng = fastrand::Rng::with_seed(11);
    let mut order: Vec<&PathBuf> = files.iter().collect();
    rng.shuffle(&mut order);
    let mut sent = Vec::new();
    for f in &order {
        let key = format!(
            "AWSLogs/{}",
            f.strip_prefix(&corpus).unwrap().to_string_lossy()
        );
        let body = std::fs::read(f).unwrap();
        let size = body.len() as u64;
        let etag = bed.put_etag(&key, body);
        sent.push(s3_notification(&key, size, &etag));
    }
    rng.shuffle(&mut sent);
    for body in &sent {
        bed.send(body);
    }
    eprintln!(
        "uploaded in this order: {:?}",
        order
            .iter()
            .map(|f| f.file_name().unwrap().to_string_lossy())
            .collect::<Vec<_>>()
    );

    // Worker 0 dies without warning as soon as it has delivered alerts: in the
    // middle of a file (alerts go to the sinks as the file is read), with the
    // file's windows and claims written and the object not marked done. It
    // starts again with a sink of its own.
    wait_for("w0 to deliver alerts", 300, || {
        std::fs::metadata(&configs[0].1).is_ok_and(|m| m.len() > 0)
    });
    signal(&workers[0], "KILL");
    assert_eq!(bed.wait_exit(&mut workers[0], 30), -1, "killed by a signal");
    eprintln!(
        "w0 killed after {} files processed, with {} alerts on its sink",
        bed.log_of("w0.log").matches("file processed").count(),
        sink_alerts(&configs[0].1, true).len()
    );
    let (restart_cfg, _) = fleet_config(&bed, "w0-restarted", table);
    workers[0] = spawn_worker(&bed, &restart_cfg, "w0-restarted");

    wait_for(
        "the queue and the dead-letter queue to be empty",
        600,
        || bed.depth(&bed.queue) == 0 && bed.depth(&bed.dlq) == 0,
    );
    let logs = ["w0", "w0-restarted", "w1", "w2"];
    for w in workers.iter() {
        signal(w, "TERM");
    }
    for (w, name) in workers.iter_mut().zip(["w0-restarted", "w1", "w2"]) {
        assert_eq!(
            bed.wait_exit(w, 60),
            0,
            "{name}: {}",
            bed.log_of(&format!("{name}.log"))
        );
    }
    assert_eq!(bed.depth(&bed.queue), 0);
    assert_eq!(bed.depth(&bed.dlq), 0);

    let mut alerts = sink_alerts(&configs[0].1, true);
    for name in ["w0-restarted", "w1", "w2"] {
        alerts.extend(sink_alerts(
            &bed.dir.path().join(format!("alerts-{name}.jsonl")),
            false,
        ));
    }
    let got = by_rule(&alerts);
    let diff = differences(&want, &got, "scan", "the fleet");
    let log_tails: String = logs
        .iter()
        .map(|n| {
            format!(
                "--- {n}.log\n{}\n",
                tail(&bed.log_of(&format!("{n}.log")), 2000)
            )
        })
        .collect();
    assert!(
        diff.is_empty(),
        "the fleet's alert ids differ from scan's:\n{diff}\nlogs (tails):\n{log_tails}"
    );

    // The join ran through the table: some worker followed the DeleteObjects
    // alert up with its three keys.
    assert!(
        alerts.iter().any(|a| a["alert_id"] == joined_id.as_str()
            && a["deleted_keys"].as_array().map(Vec::len) == Some(3)),
        "no alert {joined_id} with the three deleted keys: {:?}",
        alerts
            .iter()
            .filter(|a| a["alert_id"] == joined_id.as_str())
            .collect::<Vec<_>>()
    );
    // Each worker that stopped says what it asked of the table.
    for name in ["w0-restarted", "w1", "w2"] {
        let log = bed.log_of(&format!("{name}.log"));
        let usage = log
            .lines()
            .find(|l| l.contains("DynamoDB state usage"))
            .unwrap_or_else(|| panic!("{name} logs no DynamoDB state usage: {}", tail(&log, 3000)));
        for field in ["reads=", "writes=", "read_units=", "write_units="] {
            assert!(usage.contains(field), "{usage}");
        }
    }
    let processed: usize = logs
        .iter()
        .map(|n| {
            bed.log_of(&format!("{n}.log"))
                .matches("file processed")
                .count()
        })
        .sum();
    let skipped: usize = logs
        .iter()
        .map(|n| {
            bed.log_of(&format!("{n}.log"))
                .matches("already processed (redelivery)")
                .count()
        })
        .sum();
    eprintln!(
        "fleet: {} alerts ({} distinct ids) from {processed} files processed and {skipped} redeliveries skipped, for {} objects notified twice",
        alerts.len(),
        got.values().map(BTreeSet::len).sum::<usize>(),
        files.len()
    );
}

fn tail(s: &str, n: usize) -> &str {
    let mut i = s.len().saturating_sub(n);
    while !s.is_char_boundary(i) {
        i += 1;
    }
    &s[i..]
}

/// `scan` gives the same alert ids whatever the order of its files (forward,
/// reverse, shuffled; the access log before or after its DeleteObjects), on one
/// reader thread or two.
#[test]
fn scan_is_independent_of_file_order() {
    let dir = tempfile::tempdir().unwrap();
    let files = fleet_corpus(dir.path());
    let forward = scan_files(&pack(), &files, 1);
    let want = by_rule(&forward);
    assert_exercised(&forward, &want);

    let mut reverse = files.clone();
    reverse.reverse();
    let mut shuffled = files.clone();
    fastrand::Rng::with_seed(7).shuffle(&mut shuffled);
    let mut access_log_first = files.clone();
    access_log_first.sort_by_key(|f| !f.to_string_lossy().contains("access-logs"));
    for (name, order) in [
        ("forward", &files),
        ("reverse", &reverse),
        ("shuffled", &shuffled),
        ("access log first", &access_log_first),
    ] {
        for threads in [1, 2] {
            if name == "forward" && threads == 1 {
                continue;
            }
            let alerts = scan_files(&pack(), order, threads);
            let got = by_rule(&alerts);
            let diff = differences(&want, &got, "forward --threads 1", name);
            assert!(
                diff.is_empty(),
                "{name} with --threads {threads} differs:\n{diff}"
            );
            assert_exercised(&alerts, &got);
        }
    }
}

/// `state create-table` creates the table the workers expect (keys pk and sk, on
/// demand, TTL on `expires_at`); a second run finds it and exits 0.
#[test]
fn state_create_table_twice() {
    let bed = Bed::new(3);
    let (code, out, err) = state_cmd(&bed, &["create-table", "--table", "fleet-state"]);
    assert_eq!(code, 0, "{out}{err}");
    assert!(out.contains("created DynamoDB table fleet-state"), "{out}");

    let ddb = bed.dynamodb();
    let (table, ttl) = bed.rt.block_on(async {
        let t = ddb
            .describe_table()
            .table_name("fleet-state")
            .send()
            .await
            .unwrap()
            .table
            .unwrap();
        let ttl = ddb
            .describe_time_to_live()
            .table_name("fleet-state")
            .send()
            .await
            .unwrap()
            .time_to_live_description
            .unwrap();
        (t, ttl)
    });
    use aws_sdk_dynamodb::types::{BillingMode, KeyType, ScalarAttributeType, TimeToLiveStatus};
    let keys: Vec<(String, KeyType)> = table
        .key_schema()
        .iter()
        .map(|k| (k.attribute_name().to_owned(), k.key_type().clone()))
        .collect();
    assert_eq!(
        keys,
        [
            ("pk".to_owned(), KeyType::Hash),
            ("sk".to_owned(), KeyType::Range)
        ]
    );
    let mut attrs: Vec<(String, ScalarAttributeType)> = table
        .attribute_definitions()
        .iter()
        .map(|a| (a.attribute_name().to_owned(), a.attribute_type().clone()))
        .collect();
    attrs.sort_by(|a, b| a.0.cmp(&b.0));
    assert_eq!(
        attrs,
        [
            ("pk".to_owned(), ScalarAttributeType::S),
            ("sk".to_owned(), ScalarAttributeType::S)
        ]
    );
    assert_eq!(
        table
            .billing_mode_summary()
            .and_then(|b| b.billing_mode().cloned()),
        Some(BillingMode::PayPerRequest),
        "{table:?}"
    );
    assert_eq!(ttl.attribute_name(), Some("expires_at"));
    assert_eq!(ttl.time_to_live_status(), Some(&TimeToLiveStatus::Enabled));

    let (code, out, err) = state_cmd(&bed, &["create-table", "--table", "fleet-state"]);
    assert_eq!(code, 0, "{out}{err}");
    assert!(out.contains("fleet-state exists"), "{out}");
}

/// `--check-config` refuses a `[state]` it cannot use, saying what is wrong.
#[test]
fn bad_state_config_at_check_config() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = dir.path().join("c.toml");
    let base = "[source]\nqueue_url = \"https://sqs.us-east-1.amazonaws.com/1/q\"\n[[sink]]\ntype = \"stdout\"\n";
    let check = |env: &[(&str, &str)]| {
        run(trailwatch()
            .args(["run", "--check-config", "--config"])
            .arg(&cfg)
            .envs(env.iter().copied()))
    };

    // The base is fine, and so is DynamoDB with a table.
    write(&cfg, base);
    let (code, _, err) = check(&[]);
    assert_eq!(code, 0, "{err}");
    let (code, out, err) = check(&[
        ("TRAILWATCH_STATE_BACKEND", "dynamodb"),
        ("TRAILWATCH_STATE_TABLE", "t"),
    ]);
    assert_eq!(code, 0, "{err}");
    assert!(out.contains("backend = \"dynamodb\""), "{out}");

    // DynamoDB without a table, from the file and from the environment.
    write(&cfg, format!("{base}[state]\nbackend = \"dynamodb\"\n"));
    let (code, out, err) = check(&[]);
    assert_ne!(code, 0, "{out}");
    assert!(
        err.contains("state.table") && err.contains("create-table"),
        "{err}"
    );
    write(&cfg, base);
    let (code, out, err) = check(&[("TRAILWATCH_STATE_BACKEND", "dynamodb")]);
    assert_ne!(code, 0, "{out}");
    assert!(err.contains("state.table"), "{err}");

    // A backend that does not exist.
    let (code, out, err) = check(&[("TRAILWATCH_STATE_BACKEND", "bogus")]);
    assert_ne!(code, 0, "{out}");
    assert!(
        err.contains("TRAILWATCH_STATE_BACKEND") && err.contains("bogus"),
        "{err}"
    );
    write(&cfg, format!("{base}[state]\nbackend = \"bogus\"\n"));
    let (code, out, err) = check(&[]);
    assert_ne!(code, 0, "{out}");
    assert!(err.contains("bogus") && err.contains("backend"), "{err}");
}
