use std::collections::HashSet;

use serde_json::json;

use crate::support::*;

/// The seed scenario: the four S3 object calls of an SSO user, spread over a gzip and
/// a plain JSON file beside noise and a digest file, give exactly the four rows of
/// the classic Athena query.
#[test]
fn seed_csv_matches_the_athena_rows() {
    let (code, out, err) = run(trailwatch().args([
        "scan",
        "--rules",
        "rules/s3-assumed-role-object-ops.toml",
        "--format",
        "csv",
        "tests/data/seed",
    ]));
    assert_eq!(code, 0, "{err}");
    let expected = std::fs::read_to_string(root().join("tests/data/seed-expected.csv")).unwrap();
    assert_eq!(out, expected);
    assert_eq!(out.lines().count(), 5, "header and four rows");
    let first_row: Vec<&str> = out.lines().nth(1).unwrap().split(',').take(12).collect();
    assert_eq!(
        first_row,
        [
            "2024-11-05T10:02:31Z",
            "GetObject",
            "eu-west-1",
            "finance-reports-prod",
            "2024/q3/revenue.xlsx",
            "AROA3EXAMPLEID7X2KQ5:jane.doe@example.com",
            "arn:aws:sts::111122223333:assumed-role/AWSReservedSSO_S3DataAdmins_0a1b2c3d4e5f6789/jane.doe@example.com",
            "198.51.100.24",
            "aws-cli/2.17.45 md/awscrt#0.21.2 ua/2.0 os/macos#23.6.0 md/arch#arm64 lang/python#3.11.9 md/pyimpl#CPython cfg/retry-mode#standard md/command#s3.cp",
            "No",
            "",
            ""
        ]
    );
    assert!(
        out.contains(",Yes,AccessDenied,"),
        "the denied delete shows access_denied=Yes"
    );
    assert!(err.contains("1 digest files skipped"), "{err}");
    assert!(err.contains("7 records (0 record errors"), "{err}");
}

/// JSON-lines alerts carry the documented fields, and their ids are the same on
/// every run and whatever the input layout.
#[test]
fn jsonl_alerts_are_complete_and_ids_deterministic() {
    let (code, out, err) = run(trailwatch().args(["scan", "tests/data/seed"]));
    assert_eq!(code, 0, "{err}");
    let alerts = jsonl(&out);
    let rules: Vec<&str> = alerts
        .iter()
        .map(|a| a["rule_id"].as_str().unwrap())
        .collect();
    assert_eq!(
        rules
            .iter()
            .filter(|r| **r == "s3-assumed-role-object-ops")
            .count(),
        4
    );
    assert_eq!(
        rules
            .iter()
            .filter(|r| **r == "s3-sso-object-delete")
            .count(),
        2
    );
    let del = alerts
        .iter()
        .find(|a| a["rule_id"] == "s3-sso-object-delete")
        .unwrap();
    assert_eq!(del["severity"], "high");
    assert_eq!(
        del["title"],
        "SSO user jane.doe@example.com (S3DataAdmins) deleted 2024/q3/revenue.xlsx in finance-reports-prod"
    );
    assert_eq!(del["actor"]["kind"], "sso_user");
    assert_eq!(del["actor"]["permission_set"], "S3DataAdmins");
    assert_eq!(del["event"]["errorCode"], "AccessDenied");
    assert_eq!(del["event"]["requestID"], "R1D2ZC8Y5N6B3K0E");
    assert_eq!(del["s3"]["key"], "2024/q3/revenue.xlsx");
    assert_eq!(
        del["record"]["eventID"],
        "a7c3e9d1-2b4f-4e6a-8c0d-1f2e3d4c5b6a"
    );
    assert_eq!(del["source"]["index"], 1);
    assert!(
        del["source"]["file"]
            .as_str()
            .unwrap()
            .ends_with("Pp7nM2vLc8dE5fG6.json")
    );
    assert!(del.get("threshold").is_none());
    assert_eq!(del["alert_id"].as_str().unwrap().len(), 32);

    let ids: Vec<String> = alerts
        .iter()
        .map(|a| a["alert_id"].as_str().unwrap().to_owned())
        .collect();
    assert_eq!(
        ids.iter().collect::<HashSet<_>>().len(),
        ids.len(),
        "ids are unique"
    );
    let (_, again, _) = run(trailwatch().args(["scan", "tests/data/seed"]));
    let ids_again: Vec<String> = jsonl(&again)
        .iter()
        .map(|a| a["alert_id"].as_str().unwrap().to_owned())
        .collect();
    assert_eq!(ids, ids_again);

    // The same records as JSON lines on stdin give the same ids for those records.
    let mut lines = String::new();
    let mut fed = HashSet::new();
    for a in &alerts {
        if a["rule_id"] == "s3-assumed-role-object-ops" {
            lines.push_str(&a["record"].to_string());
            lines.push('\n');
            fed.insert(a["event"]["eventID"].clone());
        }
    }
    let expected: Vec<&String> = alerts
        .iter()
        .zip(&ids)
        .filter(|(a, _)| fed.contains(&a["event"]["eventID"]))
        .map(|(_, id)| id)
        .collect();
    assert!(expected.len() >= 4);
    let mut child = trailwatch()
        .args(["scan", "-"])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    use std::io::Write;
    child
        .stdin
        .take()
        .unwrap()
        .write_all(lines.as_bytes())
        .unwrap();
    let o = child.wait_with_output().unwrap();
    let from_stdin: HashSet<String> = jsonl(&String::from_utf8(o.stdout).unwrap())
        .iter()
        .map(|a| a["alert_id"].as_str().unwrap().to_owned())
        .collect();
    assert!(
        expected.iter().all(|id| from_stdin.contains(*id)),
        "stdin alerts: {from_stdin:?}"
    );
}

/// A corrupt file, a truncated file and a malformed record each fail only
/// themselves: the other records are scanned, the problems are reported with file
/// and position, and the exit status is 2.
#[test]
fn bad_input_fails_only_itself() {
    let dir = tempfile::tempdir().unwrap();
    let good: Vec<_> = (0..3)
        .map(|n| s3_event(n, "DeleteObject", "a@example.com", None))
        .collect();
    write(&dir.path().join("1-good.json.gz"), gzip(&cloudtrail(&good)));
    write(
        &dir.path().join("2-corrupt.json.gz"),
        b"\x1f\x8b\x08\x00garbage that is not deflate at all",
    );
    let more: Vec<_> = (10..20)
        .map(|n| s3_event(n, "DeleteObject", "b@example.com", None))
        .collect();
    let full = gzip(&cloudtrail(&more));
    write(
        &dir.path().join("3-truncated.json.gz"),
        &full[..full.len() * 2 / 3],
    );
    let mut body = String::from("{\"Records\":[");
    body.push_str(&s3_event(30, "DeleteObject", "c@example.com", None).to_string());
    body.push_str(",{\"eventName\": \"DeleteObject\", \"broken\": tru},");
    body.push_str(&s3_event(31, "DeleteObject", "c@example.com", None).to_string());
    body.push_str(",{\"justJson\": 1}]}");
    write(&dir.path().join("4-bad-record.json"), body);

    let (code, out, err) = run(trailwatch()
        .args(["scan", "--rules", "rules/s3-sso-object-delete.toml"])
        .arg(dir.path()));
    assert_eq!(code, 2, "{err}");
    let alerts = jsonl(&out);
    let users: Vec<&str> = alerts
        .iter()
        .map(|a| a["actor"]["name"].as_str().unwrap())
        .collect();
    assert_eq!(users.iter().filter(|u| **u == "a@example.com").count(), 3);
    assert_eq!(users.iter().filter(|u| **u == "c@example.com").count(), 2);
    let from_truncated = users.iter().filter(|u| **u == "b@example.com").count();
    assert!(
        from_truncated < 10,
        "the truncated file cannot yield all its records"
    );
    assert!(
        err.contains("2-corrupt.json.gz: ") && err.contains("0 records read before the error"),
        "{err}"
    );
    assert!(
        err.contains("3-truncated.json.gz: ")
            && err.contains(&format!("{from_truncated} records read before the error")),
        "{err}"
    );
    assert!(err.contains("4-bad-record.json: record 1 (byte "), "{err}");
    assert!(err.contains("invalid JSON"), "{err}");
    assert!(
        err.contains("4-bad-record.json: record 3 (byte ")
            && err.contains("not a CloudTrail record"),
        "{err}"
    );
    assert!(err.contains("(2 failed"), "{err}");
}

/// A file that inflates past the cap is rejected with a clear error.
#[test]
fn gzip_bomb_is_stopped_by_the_cap() {
    let dir = tempfile::tempdir().unwrap();
    let mut body = b"{\"Records\":[".to_vec();
    body.extend(std::iter::repeat_n(b' ', 5_000_000));
    body.extend(b"]}");
    write(&dir.path().join("bomb.json.gz"), gzip(&body));
    let (code, _, err) = run(trailwatch()
        .args([
            "scan",
            "--rules",
            "rules",
            "--max-decompressed-bytes",
            "1000000",
        ])
        .arg(dir.path()));
    assert_eq!(code, 2);
    assert!(err.contains("exceeds the cap of 1000000 bytes"), "{err}");
}

/// Oversized records are skipped and reported, not buffered.
#[test]
fn oversized_record_is_skipped() {
    let dir = tempfile::tempdir().unwrap();
    let mut big = s3_event(1, "DeleteObject", "big@example.com", None);
    big["padding"] = "x".repeat(50_000).into();
    let small = s3_event(2, "DeleteObject", "small@example.com", None);
    write(&dir.path().join("f.json"), cloudtrail(&[big, small]));
    let (code, out, err) = run(trailwatch()
        .args([
            "scan",
            "--rules",
            "rules/s3-sso-object-delete.toml",
            "--max-record-bytes",
            "10000",
        ])
        .arg(dir.path()));
    assert_eq!(code, 2);
    assert_eq!(jsonl(&out).len(), 1);
    assert!(err.contains("record 0 (byte 12): record is 5"), "{err}");
}

/// Multi-member gzip (concatenated members) is read to the end.
#[test]
fn multi_member_gzip() {
    let dir = tempfile::tempdir().unwrap();
    let mut lines = Vec::new();
    for n in 0..4 {
        lines.push(gzip(
            format!("{}\n", s3_event(n, "DeleteObject", "m@example.com", None)).as_bytes(),
        ));
    }
    write(&dir.path().join("multi.jsonl.gz"), lines.concat());
    let (code, out, err) = run(trailwatch()
        .args(["scan", "--rules", "rules/s3-sso-object-delete.toml"])
        .arg(dir.path()));
    assert_eq!(code, 0, "{err}");
    assert_eq!(jsonl(&out).len(), 4);
}

/// `--since`/`--until` keep events in [since, until).
#[test]
fn time_range() {
    let (code, out, err) = run(trailwatch().args([
        "scan",
        "--rules",
        "rules/s3-assumed-role-object-ops.toml",
        "--since",
        "2024-11-05T10:05:12Z",
        "--until",
        "2024-11-05T10:09:03Z",
        "tests/data/seed",
    ]));
    assert_eq!(code, 0, "{err}");
    let names: Vec<String> = jsonl(&out)
        .iter()
        .map(|a| a["event"]["eventName"].as_str().unwrap().to_owned())
        .collect();
    assert_eq!(names, ["PutObject", "DeleteObject"]);
    assert!(err.contains("5 outside the time range"), "{err}");
    let (code, _, err) =
        run(trailwatch().args(["scan", "--since", "yesterday", "tests/data/seed"]));
    assert_eq!(code, 2);
    assert!(err.contains("not an RFC 3339 time"), "{err}");
}

/// `--fail-on` turns alerts at or above a severity into exit status 1.
#[test]
fn fail_on_severity() {
    let code = |sev: &str| run(trailwatch().args(["scan", "--fail-on", sev, "tests/data/seed"])).0;
    assert_eq!(code("high"), 1);
    assert_eq!(code("info"), 1);
    assert_eq!(code("critical"), 0);
    assert_eq!(code("bogus"), 2);
}

/// Thresholds fire once per window with the group in the alert;
/// `--ignore-thresholds` gives one alert per matching event.
#[test]
fn thresholds_and_ignore_thresholds() {
    let dir = tempfile::tempdir().unwrap();
    // Denials 70 s apart; the third arrives last, in another file. Without it no
    // 5-minute window holds five; with it, [10:00:00, 10:05:00] does.
    let at = |k: usize| s3_event(k * 70, "GetObject", "eve@example.com", Some("AccessDenied"));
    write(
        &dir.path().join("a.json"),
        cloudtrail(&[at(0), at(1), at(3), at(4), at(5)]),
    );
    write(&dir.path().join("b.json"), cloudtrail(&[at(2)]));
    let (code, out, err) = run(trailwatch()
        .args(["scan", "--rules", "rules/repeated-access-denied.toml"])
        .arg(dir.path()));
    assert_eq!(code, 0, "{err}");
    let alerts = jsonl(&out);
    assert_eq!(alerts.len(), 1, "{out}");
    let th = &alerts[0]["threshold"];
    assert_eq!(th["count"], 5);
    assert_eq!(th["window"], "5m");
    assert_eq!(th["group"]["actor.name"], "eve@example.com");
    assert_eq!(th["group"]["actor.account"], "111122223333");
    assert_eq!(th["window_start"], "2024-11-05T10:00:00Z");
    assert_eq!(th["window_end"], "2024-11-05T10:05:00Z");
    assert_eq!(
        alerts[0]["event"]["eventTime"], "2024-11-05T10:02:20Z",
        "the file that completed the window names its first event of the window"
    );

    let (_, out, _) = run(trailwatch()
        .args([
            "scan",
            "--ignore-thresholds",
            "--rules",
            "rules/repeated-access-denied.toml",
        ])
        .arg(dir.path()));
    assert_eq!(jsonl(&out).len(), 6);
}

/// Non-CloudTrail input gets a specific error.
#[test]
fn not_cloudtrail() {
    let dir = tempfile::tempdir().unwrap();
    write(&dir.path().join("notes.txt"), "hello world\n");
    write(&dir.path().join("empty.json"), "");
    let (code, _, err) = run(trailwatch().args(["scan"]).arg(dir.path()));
    assert_eq!(code, 2);
    assert!(
        err.contains("notes.txt: not a CloudTrail log at byte 0"),
        "{err}"
    );
    assert!(err.contains("empty.json: empty file"), "{err}");
    let (code, _, err) = run(trailwatch().args(["scan", "no/such/path"]));
    assert_eq!(code, 2);
    assert!(err.contains("no/such/path"), "{err}");
    let _ = json!(null);
}

/// A scan only detects: it loads rules without their `[[test]]` tables (the tests'
/// events are for `rules check`/`rules test`), so a rule whose test data is missing
/// still scans, while `rules check` reports the test.
#[test]
fn scan_leaves_rule_tests_to_the_rules_commands() {
    let dir = tempfile::tempdir().unwrap();
    let rule = std::fs::read_to_string(root().join("rules/s3-assumed-role-object-ops.toml"))
        .unwrap()
        + "\n[[test]]\nname = \"data that is not there\"\nexpect = 1\nfile = \"missing.json\"\n";
    write(&dir.path().join("rule.toml"), rule.as_bytes());
    let (code, _, err) = run(trailwatch().args(["rules", "check"]).arg(dir.path()));
    assert_ne!(code, 0);
    assert!(err.contains("missing.json"), "{err}");
    let (code, out, err) = run(trailwatch()
        .args(["scan", "--format", "csv", "--rules"])
        .arg(dir.path())
        .arg("tests/data/seed"));
    assert_eq!(code, 0, "{err}");
    assert_eq!(out.lines().count(), 5, "header and the four rows: {out}");
}

/// Transparent huge pages are off for the process: with them on ("always"), memory
/// is faulted in 2 MiB at a time and a two-thread scan's peak RSS went over 100 MiB.
/// A scan that waits on stdin is looked at from outside.
#[test]
#[cfg(target_os = "linux")]
fn transparent_huge_pages_are_off() {
    use std::process::Stdio;
    use std::time::{Duration, Instant};
    let mut child = trailwatch()
        .args(["scan", "--rules", "rules", "-"])
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let status = format!("/proc/{}/status", child.id());
    let deadline = Instant::now() + Duration::from_secs(10);
    let disabled = loop {
        let text = std::fs::read_to_string(&status).unwrap();
        // The kernel says from 5.0 on; before, there is nothing to look at.
        let Some(line) = text.lines().find(|l| l.starts_with("THP_enabled:")) else {
            break None;
        };
        if line.split_whitespace().nth(1) == Some("0") {
            break Some(true);
        }
        if Instant::now() > deadline {
            break Some(false);
        }
        std::thread::sleep(Duration::from_millis(10));
    };
    let record = json!({"eventTime": "2024-11-05T10:00:00Z", "eventSource": "s3.amazonaws.com",
        "eventName": "ListBuckets", "userIdentity": {"type": "Root"}});
    let mut stdin = child.stdin.take().unwrap();
    std::io::Write::write_all(&mut stdin, &cloudtrail(&[record])).unwrap();
    drop(stdin);
    assert!(child.wait().unwrap().success());
    assert_ne!(disabled, Some(false), "{status}: THP_enabled is still 1");
}

/// The summary on stderr ends with the alerts by severity, most severe first, and
/// they add up to the alerts written.
#[test]
fn summary_ends_with_alerts_by_severity() {
    let (code, out, err) = run(trailwatch().args(["scan", "tests/data/seed"]));
    assert_eq!(code, 0, "{err}");
    let alerts = jsonl(&out);
    let last = err.lines().last().unwrap();
    let count = |sev: &str| alerts.iter().filter(|a| a["severity"] == sev).count();
    assert_eq!(
        last,
        format!(
            "alerts by severity: {} critical, {} high, {} medium, {} low, {} info",
            count("critical"),
            count("high"),
            count("medium"),
            count("low"),
            count("info")
        )
    );
    assert!(count("high") > 0 && count("info") > 0, "{last}");
}

/// `--help` is plain text: no rustdoc links or markup leak from doc comments.
#[test]
fn help_is_plain_text() {
    for args in [
        &[][..],
        &["run"],
        &["scan"],
        &["rules"],
        &["rules", "check"],
        &["rules", "test"],
    ] {
        let (code, out, _) = run(trailwatch().args(args).arg("--help"));
        assert_eq!(code, 0);
        assert!(out.contains("Usage: trailwatch"), "{out}");
        for markup in ["[`", "`]", "](", "crate::", "::"] {
            assert!(
                !out.contains(markup),
                "`{args:?} --help` shows {markup:?}:\n{out}"
            );
        }
    }
}

/// Logs written anywhere but a terminal carry no colour codes.
#[test]
fn logs_have_no_colours_outside_a_terminal() {
    let (code, _, err) = run(trailwatch()
        .env("TRAILWATCH_LOG", "debug")
        .args(["scan", "tests/data/seed"]));
    assert_eq!(code, 0, "{err}");
    assert!(err.contains("skipping CloudTrail digest file"), "{err}");
    assert!(!err.contains('\u{1b}'), "an escape code in stderr: {err:?}");
}

/// A directory tree with a symlink back up to itself is scanned once, and ends.
#[test]
fn a_symlink_loop_in_the_input_is_scanned_once() {
    let dir = tempfile::tempdir().unwrap();
    let logs = dir.path().join("logs");
    let f = seed().join("AWSLogs/111122223333/CloudTrail/eu-west-1/2024/11/05/111122223333_CloudTrail_eu-west-1_20241105T1010Z_Pp7nM2vLc8dE5fG6.json");
    write(&logs.join("a/one.json"), std::fs::read(&f).unwrap());
    std::os::unix::fs::symlink(&logs, logs.join("a/back-up")).unwrap();
    std::os::unix::fs::symlink(&logs, logs.join("again")).unwrap();
    let mut child = trailwatch()
        .args(["scan", "--rules", "rules/s3-sso-object-delete.toml"])
        .arg(&logs)
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
    while child.try_wait().unwrap().is_none() {
        if std::time::Instant::now() > deadline {
            child.kill().unwrap();
            panic!("scan did not finish on a symlink loop");
        }
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
    let out = child.wait_with_output().unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.starts_with("scanned 1 files"), "{err}");
}
