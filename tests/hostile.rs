//! Hostile input: what a record, a file or a message written by the people we watch
//! can do to the reader, the engine and the worker, and the limits that hold.

use std::io::{Read, Write};
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::Duration;

use serde_json::{Value, json};

use crate::support::*;

/// What a scan of hostile input may take at its peak with default limits: the
/// limits, not the input, decide (a normal scan stays well below).
const RSS_CAP_KIB: u64 = 256 * 1024;

/// Runs `c` like [`run`], and also returns the child's peak resident set in KiB:
/// GNU time's `%M` (the kernel's `ru_maxrss`) when `/usr/bin/time` works, else the
/// `VmHWM` high-water mark of `/proc/<pid>/status`, polled while the child runs.
fn run_measured(c: &mut Command) -> (i32, String, String, u64) {
    const TIME: &str = "/usr/bin/time";
    let dir = tempfile::tempdir().unwrap();
    let report = dir.path().join("peak");
    let time_works = Command::new(TIME)
        .args(["-f", "%M", "-o"])
        .arg(&report)
        .arg("true")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success())
        && std::fs::read_to_string(&report).is_ok_and(|s| s.trim().parse::<u64>().is_ok());
    if time_works {
        let mut timed = Command::new(TIME);
        timed.args(["-f", "%M", "-o"]).arg(&report);
        timed.arg(c.get_program()).args(c.get_args());
        for (k, v) in c.get_envs() {
            match v {
                Some(v) => timed.env(k, v),
                None => timed.env_remove(k),
            };
        }
        if let Some(d) = c.get_current_dir() {
            timed.current_dir(d);
        }
        let (code, out, err) = run(&mut timed);
        let text = std::fs::read_to_string(&report).unwrap();
        // The last line: GNU time puts "Command exited with non-zero status" first.
        let peak = text
            .lines()
            .last()
            .and_then(|l| l.trim().parse().ok())
            .unwrap_or_else(|| panic!("no peak RSS from time: {text:?}"));
        return (code, out, err, peak);
    }
    let mut child = c
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("trailwatch runs");
    let drain = |mut r: Box<dyn Read + Send>| {
        std::thread::spawn(move || {
            let mut s = String::new();
            r.read_to_string(&mut s).unwrap();
            s
        })
    };
    let out = drain(Box::new(child.stdout.take().unwrap()));
    let err = drain(Box::new(child.stderr.take().unwrap()));
    let status = format!("/proc/{}/status", child.id());
    let mut peak = 0;
    let code = loop {
        if let Some(s) = child.try_wait().unwrap() {
            break s.code().unwrap_or(-1);
        }
        let hwm = std::fs::read_to_string(&status).ok().and_then(|s| {
            s.lines()
                .find_map(|l| l.strip_prefix("VmHWM:"))
                .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<u64>().ok())
        });
        peak = peak.max(hwm.unwrap_or(0));
        std::thread::sleep(Duration::from_millis(2));
    };
    assert!(peak > 0, "VmHWM was never read");
    (code, out.join().unwrap(), err.join().unwrap(), peak)
}

/// Streams a gzip file to `path`; `fill` writes its decompressed bytes.
fn write_gzip(path: &Path, fill: impl FnOnce(&mut flate2::write::GzEncoder<Vec<u8>>)) {
    let mut e = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
    fill(&mut e);
    write(path, e.finish().unwrap());
}

/// An AccessDenied call by `user`, `n` seconds after 2024-11-05T10:00:00Z.
fn denied(n: usize, user: &str) -> Value {
    s3_event(n, "GetObject", user, Some("AccessDenied"))
}

/// How many `repeated-access-denied` alerts JSON-lines output holds.
fn denial_alerts(out: &str) -> usize {
    jsonl(out)
        .iter()
        .filter(|a| a["rule_id"] == "repeated-access-denied")
        .count()
}

/// The stderr line that mentions `what`.
fn line_with<'a>(err: &'a str, what: &str) -> &'a str {
    err.lines()
        .find(|l| l.contains(what))
        .unwrap_or_else(|| panic!("no line with {what:?} in:\n{err}"))
}

const MIB: usize = 1 << 20;

/// A megabyte of gzip that inflates to a gigabyte of `[` after `{"Records":[` (one
/// record that never closes): the record fails as too deep once it passes the cap,
/// without its brackets being stacked, and the file as truncated; the next file's
/// records still alert, and memory stays flat.
#[test]
fn an_unclosed_nesting_bomb_fails_its_file_in_flat_memory() {
    let dir = tempfile::tempdir().unwrap();
    write_gzip(&dir.path().join("a-bomb.json.gz"), |e| {
        e.write_all(b"{\"Records\":[").unwrap();
        let brackets = vec![b'['; MIB];
        while e.get_ref().len() < MIB {
            e.write_all(&brackets).unwrap();
        }
    });
    let burst: Vec<Value> = (0..5).map(|n| denied(n, "mallory")).collect();
    write(&dir.path().join("b-burst.json"), cloudtrail(&burst));
    let (code, out, err, peak) = run_measured(
        trailwatch()
            .args(["scan", "--rules", "rules/repeated-access-denied.toml"])
            .arg(dir.path()),
    );
    assert_eq!(code, 2, "{err}");
    let bad = line_with(&err, "a-bomb.json.gz: record 0 (byte 12)");
    assert!(
        bad.contains("levels deep, over the cap of 100"),
        "the bomb fails as too deep: {bad}"
    );
    let file = line_with(&err, "a-bomb.json.gz: unexpected end of data");
    assert!(file.contains("truncated"), "{file}");
    assert_eq!(denial_alerts(&out), 1, "the next file is read: {err}");
    assert!(
        peak < RSS_CAP_KIB,
        "peak RSS {peak} KiB, over {RSS_CAP_KIB} KiB"
    );
}

/// A record of 150 million nested arrays that does close (300 MB inflated) fails
/// alone: the records after it in the same file still count towards the same
/// threshold. With the nesting cap lifted, the record-size cap stops it instead,
/// as it is read, in the same flat memory.
#[test]
fn a_closed_nesting_bomb_fails_only_itself_in_flat_memory() {
    let dir = tempfile::tempdir().unwrap();
    const DEPTH: usize = 150 * MIB;
    let record = |n: usize| serde_json::to_vec(&denied(n, "mallory")).unwrap();
    write_gzip(&dir.path().join("bomb.json.gz"), |e| {
        e.write_all(b"{\"Records\":[").unwrap();
        e.write_all(&record(0)).unwrap();
        e.write_all(b",").unwrap();
        for b in [b'[', b']'] {
            let run = vec![b; MIB];
            for _ in 0..DEPTH / MIB {
                e.write_all(&run).unwrap();
            }
        }
        for n in 1..5 {
            e.write_all(b",").unwrap();
            e.write_all(&record(n)).unwrap();
        }
        e.write_all(b"]}").unwrap();
    });
    let offset = 12 + record(0).len() + 1;
    for (limits, want) in [
        (
            &[][..],
            format!("nests {DEPTH} levels deep, over the cap of 100"),
        ),
        (
            &[
                "--max-nesting-depth",
                "4000000000",
                "--max-record-bytes",
                "65536",
            ][..],
            format!("record is {} bytes, over the per-record cap", 2 * DEPTH),
        ),
    ] {
        let (code, out, err, peak) = run_measured(
            trailwatch()
                .args(["scan", "--rules", "rules/repeated-access-denied.toml"])
                .args(limits)
                .arg(dir.path()),
        );
        assert_eq!(code, 2, "{limits:?}: {err}");
        let bad = line_with(&err, &format!("record 1 (byte {offset}): "));
        assert!(bad.contains(&want), "{limits:?}: {bad}");
        assert!(
            err.contains("6 records (1 record errors"),
            "{limits:?}: {err}"
        );
        assert_eq!(
            denial_alerts(&out),
            1,
            "{limits:?}: the records around the bomb count together: {err}"
        );
        assert!(
            peak < RSS_CAP_KIB,
            "{limits:?}: peak RSS {peak} KiB, over {RSS_CAP_KIB} KiB"
        );
    }
}

/// A flat record of 75 million members (150 MB inflated): over the record cap, it
/// is skipped without holding anything that grows with it (not its text, nor where
/// its members are), and the records after it still count.
#[test]
fn a_flat_record_of_millions_of_members_is_held_to_the_size_cap() {
    let dir = tempfile::tempdir().unwrap();
    const MEMBERS: usize = 75 * MIB;
    let record = |n: usize| serde_json::to_vec(&denied(n, "mallory")).unwrap();
    write_gzip(&dir.path().join("flat.json.gz"), |e| {
        e.write_all(b"{\"Records\":[").unwrap();
        e.write_all(&record(0)).unwrap();
        e.write_all(b",[").unwrap();
        let run = b"1,".repeat(MIB);
        for _ in 0..MEMBERS / MIB {
            e.write_all(&run).unwrap();
        }
        e.write_all(b"1]").unwrap();
        for n in 1..5 {
            e.write_all(b",").unwrap();
            e.write_all(&record(n)).unwrap();
        }
        e.write_all(b"]}").unwrap();
    });
    let (code, out, err, peak) = run_measured(
        trailwatch()
            .args(["scan", "--rules", "rules/repeated-access-denied.toml"])
            .arg(dir.path()),
    );
    assert_eq!(code, 2, "{err}");
    let bad = line_with(&err, "record 1 (byte ");
    assert!(
        bad.contains(&format!(
            "record is {} bytes, over the per-record cap",
            2 * MEMBERS + 3
        )),
        "{bad}"
    );
    assert_eq!(denial_alerts(&out), 1, "{err}");
    assert!(
        peak < RSS_CAP_KIB,
        "peak RSS {peak} KiB, over {RSS_CAP_KIB} KiB"
    );
}

/// An anonymous object read, as an S3 server access log line.
fn anonymous_get(second: u32, key: &str) -> String {
    format!(
        "79a59df900b949e5 finance-reports-prod [05/Nov/2024:10:00:{second:02} +0000] 203.0.113.9 - REQ{second} REST.GET.OBJECT {key} \"GET /finance-reports-prod/{key} HTTP/1.1\" 200 - 1024 1024 10 9 \"-\" \"curl/8.5.0\" -\n"
    )
}

/// A 15 MB access-log line of seven million fields is refused as it is read, with
/// its line number; the line after it is still read and alerts.
#[test]
fn an_overlong_access_log_line_is_skipped_in_flat_memory() {
    let dir = tempfile::tempdir().unwrap();
    let long = anonymous_get(1, "long").replace(" -\n", &" x".repeat(15 * MIB / 2)) + "\n";
    assert!(long.len() > 15 * MIB);
    let text = [
        anonymous_get(0, "first"),
        long.clone(),
        anonymous_get(2, "last"),
    ]
    .concat();
    write(
        &dir.path().join("2024-11-05-10-00-00-0123456789ABCDEF"),
        text,
    );
    let (code, out, err, peak) = run_measured(
        trailwatch()
            .args([
                "scan",
                "--rules",
                "rules/access-log/access-log-anonymous-object-read.toml",
            ])
            .arg(dir.path()),
    );
    assert_eq!(code, 2, "{err}");
    let bad = line_with(&err, ": line 2: ");
    assert!(
        bad.contains(&format!("line is {} bytes", long.len()))
            && bad.contains("over the cap of 65536 bytes"),
        "{bad}"
    );
    assert!(err.contains("3 records (1 record errors"), "{err}");
    let keys: Vec<Value> = jsonl(&out).iter().map(|a| a["s3"]["key"].clone()).collect();
    assert_eq!(keys, [json!("first"), json!("last")], "{err}");
    assert!(
        peak < RSS_CAP_KIB,
        "peak RSS {peak} KiB, over {RSS_CAP_KIB} KiB"
    );
}

/// A record dated 2099 falls into a window of its own: the real burst of denials
/// after it still completes `repeated-access-denied`'s window.
#[test]
fn a_record_from_the_future_does_not_blind_threshold_rules() {
    let dir = tempfile::tempdir().unwrap();
    let mut future = denied(0, "mallory");
    future["eventTime"] = "2099-01-01T00:00:00Z".into();
    let mut records = vec![future];
    records.extend((0..5).map(|n| denied(n, "mallory")));
    write(&dir.path().join("f.json"), cloudtrail(&records));
    let (code, out, err) = run(trailwatch()
        .args(["scan", "--rules", "rules/repeated-access-denied.toml"])
        .arg(dir.path()));
    assert_eq!(code, 0, "{err}");
    let alerts = jsonl(&out);
    assert_eq!(alerts.len(), 1, "{out}\n{err}");
    let th = &alerts[0]["threshold"];
    assert_eq!(th["window_start"], "2024-11-05T10:00:00Z", "{out}");
    assert_eq!(th["window_end"], "2024-11-05T10:05:00Z", "{out}");
    assert!(err.contains("6 records (0 record errors"), "{err}");
}
