use std::path::Path;

use crate::support::*;

const GOOD: &str = r#"
id = "good-rule"
title = "{actor.name} did {eventName}"
severity = "low"
[match]
eventName = "GetObject"
[[test]]
name = "matches"
expect = 1
events = ['{"eventName": "GetObject"}']
"#;

fn check(dir: &Path) -> (i32, String, String) {
    run(trailwatch().args(["rules", "check"]).arg(dir))
}

/// `rules check` reports every problem of every file at once, each at its
/// file:line:col, and exits 2.
#[test]
fn check_reports_every_problem_with_its_position() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    write(&d.join("a-good.toml"), GOOD);
    write(&d.join("b-dup.toml"), GOOD);
    write(
        &d.join("c-syntax.toml"),
        "id = \"x\"\ntitle = \"unterminated\nseverity = \"low\"\n",
    );
    write(
        &d.join("d-many.toml"),
        r#"id = "Bad_Id"
title = "t {actor.nmae}"
severity = "urgent"
condition = "match and servce"
[match]
eventName = { prefx = "x" }
sourceIPAddress = { cidr = "10.0.0.0/33" }
userAgent = { regex = "(unclosed" }
"actor.kind" = "sso_user"
"actor.team" = "x"
[selection.service]
eventSource = "s3.amazonaws.com"
[[exclude]]
reason = "old migration"
expires = 2020-01-31
eventName = "PutObject"
[threshold]
count = 0
window = "five minutes"
"#,
    );
    write(
        &d.join("e-unknown-key.toml"),
        "id = \"e\"\ntitle = \"t\"\nseverity = \"low\"\nrunbok = \"x\"\neventName = \"x\"\n[match]\neventName = \"x\"\n",
    );
    write(
        &d.join("sub/f-no-match.toml"),
        "id = \"f\"\ntitle = \"t\"\nseverity = \"low\"\n",
    );
    write(&d.join("not-a-rule.txt"), "ignored");

    let (code, out, err) = check(d);
    assert_eq!(code, 2, "{out}{err}");
    let p = |f: &str| d.join(f).display().to_string();
    let expected = [
        format!(
            "{}:2:6: duplicate rule id `good-rule`: already used at {}:2:6",
            p("b-dup.toml"),
            p("a-good.toml")
        ),
        format!(
            "{}:2:22: TOML syntax: invalid basic string",
            p("c-syntax.toml")
        ),
        format!("{}:1:6: invalid rule id `Bad_Id`", p("d-many.toml")),
        format!(
            "{}:2:12: title: unknown field `actor.nmae`",
            p("d-many.toml")
        ),
        format!("{}:3:12: unknown severity `urgent`", p("d-many.toml")),
        format!(
            "{}:4:24: unknown selection `servce` in condition",
            p("d-many.toml")
        ),
        format!(
            "{}:6:15: unknown operator `prefx` (did you mean `prefix`?)",
            p("d-many.toml")
        ),
        format!("{}:7:28: invalid CIDR `10.0.0.0/33`", p("d-many.toml")),
        format!("{}:8:23: invalid regex `(unclosed`", p("d-many.toml")),
        format!("{}:10:1: unknown field `actor.team`", p("d-many.toml")),
        format!(
            "{}:15:11: exception `old migration` expired on 2020-01-31",
            p("d-many.toml")
        ),
        format!("{}:18:9: `count` must be at least 1", p("d-many.toml")),
        format!(
            "{}:19:10: `window`: invalid duration `five minutes`",
            p("d-many.toml")
        ),
        format!(
            "{}:4:1: unknown key `runbok` (did you mean `runbook`?)",
            p("e-unknown-key.toml")
        ),
        format!(
            "{}:5:1: unknown key `eventName`; field conditions go under [match]",
            p("e-unknown-key.toml")
        ),
        format!(
            "{}:1:1: rule has no [match] table",
            p("sub/f-no-match.toml")
        ),
    ];
    for e in &expected {
        assert!(
            err.lines().any(|l| l.starts_with(e.as_str())),
            "missing `{e}` in:\n{err}"
        );
    }
    // Within a file, problems come in file order.
    let many: Vec<&str> = err.lines().filter(|l| l.contains("d-many.toml:")).collect();
    let lines: Vec<usize> = many
        .iter()
        .map(|l| l.split(':').nth(1).unwrap().parse().unwrap())
        .collect();
    assert!(lines.windows(2).all(|w| w[0] <= w[1]), "{many:?}");
    assert!(
        err.ends_with(&format!("problem(s) in rules under {}\n", d.display())),
        "{err}"
    );
}

/// A clean rule set passes and summarises itself; an expired exception only warns
/// outside `rules check`, and stops applying.
#[test]
fn check_passes_clean_rules_and_expired_exceptions_stop_applying() {
    let dir = tempfile::tempdir().unwrap();
    let rule = format!(
        "{GOOD}\n[[exclude]]\nreason = \"temporary\"\nexpires = 2021-06-30\neventName = \"GetObject\"\n"
    );
    write(&dir.path().join("r.toml"), &rule);
    let (code, _, err) = check(dir.path());
    assert_eq!(code, 2);
    assert!(err.contains("expired on 2021-06-30"), "{err}");

    let (code, out, err) = run(trailwatch().args(["rules", "test"]).arg(dir.path()));
    assert_eq!(code, 0, "{out}{err}");
    assert!(
        err.contains("warning: ") && err.contains("it no longer applies"),
        "{err}"
    );
    assert!(
        out.ends_with("1 passed, 0 failed\n"),
        "the expired exclusion no longer hides the event: {out}"
    );

    write(&dir.path().join("r.toml"), GOOD);
    let (code, out, _) = check(dir.path());
    assert_eq!(code, 0);
    assert_eq!(out, "1 rules OK (1 enabled, 0 disabled, 1 tests)\n");
}

/// A failing test shows expected vs got and which condition failed; exit 1.
#[test]
fn failing_tests_explain_themselves() {
    let dir = tempfile::tempdir().unwrap();
    write(
        &dir.path().join("r.toml"),
        r#"
id = "explain-me"
title = "t"
severity = "low"
[match]
eventSource = "s3.amazonaws.com"
eventName = "DeleteObject"
[[test]]
name = "wrong event name"
expect = 1
events = ['{"eventSource": "s3.amazonaws.com", "eventName": "GetObject"}']
[[test]]
name = "right"
expect = 1
events = ['{"eventSource": "s3.amazonaws.com", "eventName": "DeleteObject"}']
"#,
    );
    let (code, out, _) = run(trailwatch()
        .args(["rules", "test", "--rules"])
        .arg(dir.path()));
    assert_eq!(code, 1, "{out}");
    assert!(
        out.contains("FAIL  explain-me: wrong event name: expected 1 alert(s), got 0"),
        "{out}"
    );
    assert!(
        out.contains("condition does not hold: selection `match` failed on `eventName` (value: \"GetObject\")"),
        "{out}"
    );
    assert!(out.contains("ok    explain-me: right"), "{out}");
    assert!(out.ends_with("1 passed, 1 failed\n"), "{out}");
}

/// Test events can come from a file in any log layout.
#[test]
fn test_events_from_a_file() {
    let dir = tempfile::tempdir().unwrap();
    let events: Vec<_> = (0..3)
        .map(|n| s3_event(n, "DeleteObject", "x@example.com", None))
        .collect();
    write(
        &dir.path().join("events/deletes.json.gz"),
        gzip(&cloudtrail(&events)),
    );
    write(
        &dir.path().join("r.toml"),
        r#"
id = "from-file"
title = "t"
severity = "low"
[match]
eventName = "DeleteObject"
[[test]]
name = "three deletes"
expect = 3
file = "events/deletes.json.gz"
[[test]]
name = "missing file"
expect = 0
file = "events/nope.json"
"#,
    );
    let (code, _, err) = check(dir.path());
    assert_eq!(code, 2);
    assert!(
        err.contains("r.toml:14:8: test `missing file`: cannot use"),
        "{err}"
    );
}

/// The bundled rules are valid and their tests pass.
#[test]
fn bundled_rules_check_and_test() {
    let (code, out, err) = run(trailwatch().args(["rules", "check", "rules"]));
    assert_eq!(code, 0, "{out}{err}");
    let (code, out, err) = run(trailwatch().args(["rules", "test", "rules"]));
    assert_eq!(code, 0, "{out}{err}");
    assert!(out.lines().last().unwrap().ends_with(" 0 failed"), "{out}");
    for id in [
        "s3-assumed-role-object-ops",
        "s3-sso-object-delete",
        "repeated-access-denied",
    ] {
        assert!(
            out.contains(&format!("ok    {id}:")),
            "{id} has passing tests: {out}"
        );
    }
}

/// The rules directory comes from --rules, then TRAILWATCH_RULES, then ./rules.
#[test]
fn rules_directory_resolution() {
    let dir = tempfile::tempdir().unwrap();
    write(&dir.path().join("r.toml"), GOOD);
    let (code, out, _) = run(trailwatch()
        .args(["rules", "check"])
        .env("TRAILWATCH_RULES", dir.path()));
    assert_eq!(code, 0);
    assert!(out.starts_with("1 rules OK"), "{out}");
    let (code, out, _) = run(trailwatch().args(["rules", "check"]));
    assert_eq!(code, 0);
    assert!(
        !out.starts_with("1 rules OK"),
        "./rules holds the bundled pack: {out}"
    );
    let (code, _, err) = run(trailwatch().args(["rules", "check", "--rules", "no/such/dir"]));
    assert_eq!(code, 2);
    assert!(
        err.contains("cannot read rules") && err.contains("TRAILWATCH_RULES"),
        "{err}"
    );
}

/// Runs `trailwatch ARGS` with a deadline: kills it and fails the test when it
/// has not finished by then. Returns (exit code, stdout, stderr).
fn run_with_deadline(c: &mut std::process::Command, secs: u64) -> (i32, String, String) {
    use std::process::Stdio;
    use std::time::{Duration, Instant};
    let out = tempfile::tempdir().unwrap();
    let (o, e) = (out.path().join("stdout"), out.path().join("stderr"));
    let mut child = c
        .stdin(Stdio::null())
        .stdout(std::fs::File::create(&o).unwrap())
        .stderr(std::fs::File::create(&e).unwrap())
        .spawn()
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(secs);
    let status = loop {
        if let Some(s) = child.try_wait().unwrap() {
            break Some(s);
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            break None;
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    let read = |p: &Path| String::from_utf8_lossy(&std::fs::read(p).unwrap()).into_owned();
    let status = status.unwrap_or_else(|| {
        panic!(
            "trailwatch did not finish within {secs}s; stderr so far:\n{}",
            read(&e)
        )
    });
    (status.code().unwrap_or(-1), read(&o), read(&e))
}

/// A symlink loop in the rules directory (`loop -> .`) is not followed: loading
/// terminates, the rules load once and the link is reported as a warning. (Before,
/// two such links made the walk visit 2^40 paths.)
#[test]
#[cfg(unix)]
fn a_symlink_loop_in_the_rules_directory_is_not_followed() {
    use std::os::unix::fs::symlink;
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    write(&d.join("r.toml"), GOOD);
    write(&d.join("sub/s.toml"), GOOD.replace("good-rule", "sub-rule"));
    symlink(".", d.join("loop")).unwrap();
    symlink("..", d.join("sub/up")).unwrap();
    for args in [&["rules", "check"][..], &["rules", "test"]] {
        let (code, out, err) = run_with_deadline(trailwatch().args(args).arg(d), 30);
        assert_eq!(code, 0, "{args:?}: {out}{err}");
        assert!(
            out.starts_with("2 rules OK") || out.ends_with("2 passed, 0 failed\n"),
            "{args:?}: each rule once: {out}{err}"
        );
        for link in ["loop", "sub/up"] {
            assert!(
                err.contains(&format!(
                    "warning: {}:1:1: symlinked directory not followed",
                    d.join(link).display()
                )),
                "{args:?}: {err}"
            );
        }
    }
}

/// A symlinked rule file is read when it points inside the rules directory; one
/// pointing outside is an error at the link.
#[test]
#[cfg(unix)]
fn symlinked_rule_files_must_point_inside_the_rules_directory() {
    use std::os::unix::fs::symlink;
    let top = tempfile::tempdir().unwrap();
    let d = top.path().join("rules");
    write(&d.join("store/good.rule"), GOOD);
    symlink("store/good.rule", d.join("linked.toml")).unwrap();
    let (code, out, err) = check(&d);
    assert_eq!(code, 0, "{out}{err}");
    assert!(out.starts_with("1 rules OK"), "{out}");

    write(
        &top.path().join("elsewhere.toml"),
        GOOD.replace("good-rule", "elsewhere"),
    );
    symlink("../elsewhere.toml", d.join("outside.toml")).unwrap();
    let (code, out, err) = check(&d);
    assert_eq!(code, 2, "{out}{err}");
    assert!(
        err.contains(&format!(
            "{}:1:1: the symlink leads outside the rules directory",
            d.join("outside.toml").display()
        )),
        "{err}"
    );
}

/// `[[test]] file` names a file inside the rules directory: absolute paths, `..`
/// out of it and symlinks leading out are refused at the key's position, while
/// relative files (through `..` too, when they stay inside) still work.
#[test]
fn test_files_stay_inside_the_rules_directory() {
    let top = tempfile::tempdir().unwrap();
    let d = top.path().join("rules");
    let events = cloudtrail(&[s3_event(0, "DeleteObject", "x@example.com", None)]);
    write(&top.path().join("secret.json"), &events);
    write(&d.join("data/ok.json"), &events);
    let rule = |id: &str, file: &str| {
        format!(
            "id = \"{id}\"\ntitle = \"t\"\nseverity = \"low\"\n[match]\neventName = \"DeleteObject\"\n[[test]]\nname = \"from a file\"\nexpect = 1\nfile = {}\n",
            toml_string(file)
        )
    };
    write(&d.join("a.toml"), rule("a", "data/ok.json"));
    write(&d.join("sub/b.toml"), rule("b", "../data/ok.json"));
    let (code, out, err) = run(trailwatch().args(["rules", "test"]).arg(&d));
    assert_eq!(code, 0, "{out}{err}");
    assert!(out.ends_with("2 passed, 0 failed\n"), "{out}");

    let secret = top.path().join("secret.json");
    let mut bad = vec![
        ("c.toml", "../secret.json".to_string()),
        ("d.toml", secret.display().to_string()),
        ("e.toml", "/etc/passwd".to_string()),
        ("sub/f.toml", "../../secret.json".to_string()),
    ];
    #[cfg(unix)]
    {
        std::os::unix::fs::symlink(&secret, d.join("data/link.json")).unwrap();
        bad.push(("g.toml", "data/link.json".to_string()));
    }
    for (n, (file, target)) in bad.iter().enumerate() {
        write(&d.join(file), rule(&format!("bad-{n}"), target));
    }
    let (code, out, err) = check(&d);
    assert_eq!(code, 2, "{out}{err}");
    for (file, target) in &bad {
        let want = format!("{}:9:8: test `from a file`: ", d.join(file).display());
        let line = err
            .lines()
            .find(|l| l.starts_with(&want))
            .unwrap_or_else(|| panic!("no error for {file} ({target}) in:\n{err}"));
        assert!(
            line.contains("outside the rules directory"),
            "{file}: {line}"
        );
    }
    assert!(!err.contains("root:"), "/etc/passwd was read: {err}");
}

/// A TOML basic string holding `s`.
fn toml_string(s: &str) -> String {
    format!("\"{}\"", s.replace('\\', "\\\\").replace('"', "\\\""))
}

/// Threshold and suppression windows are at most 7 days, reported at the value.
#[test]
fn windows_longer_than_seven_days_are_refused() {
    let dir = tempfile::tempdir().unwrap();
    let body = |threshold: &str, suppress: &str| {
        format!(
            "id = \"w\"\ntitle = \"t\"\nseverity = \"low\"\n[match]\neventName = \"x\"\n[threshold]\ncount = 2\nwindow = \"{threshold}\"\n[suppress]\nwindow = \"{suppress}\"\n"
        )
    };
    write(&dir.path().join("w.toml"), body("7d", "1w"));
    let (code, out, err) = check(dir.path());
    assert_eq!(code, 0, "exactly 7 days is allowed: {out}{err}");
    write(&dir.path().join("w.toml"), body("7d 1s", "100000000000y"));
    let (code, out, err) = check(dir.path());
    assert_eq!(code, 2, "{out}{err}");
    let p = dir.path().join("w.toml").display().to_string();
    assert!(
        err.contains(&format!("{p}:8:10: `window` must be at most 7d")),
        "{err}"
    );
    assert!(err.contains(&format!("{p}:10:10: `window`")), "{err}");
}

/// Text logs and scan diagnostics escape control characters from file names and
/// records: a newline cannot forge a log line, an escape sequence cannot reach
/// the terminal.
#[test]
#[cfg(unix)]
fn logs_escape_control_characters_from_file_names() {
    let dir = tempfile::tempdir().unwrap();
    let forged = "\n2099-01-01T00:00:00.000000Z  INFO trailwatch::worker::process: file processed \u{1b}]0;owned\u{7}\u{1b}[31m";
    let records =
        br#"{"Records":[{"eventName":"GetObject","eventTime":"2024-01-01T00:00:00Z"}, 42]}"#;
    // A data file with a bad record (its name is in the record error line) and a
    // digest file (its name is in a debug log line).
    write(&dir.path().join(format!("data{forged}.json")), records);
    write(
        &dir.path()
            .join(format!("x_CloudTrail-Digest_{forged}.json")),
        records,
    );
    let (_, _, err) = run_with_deadline(
        trailwatch()
            .env("TRAILWATCH_LOG", "debug")
            .args(["scan", "--rules", "rules"])
            .arg(dir.path()),
        60,
    );
    assert!(
        err.contains("skipping CloudTrail digest file"),
        "the digest line is logged: {err}"
    );
    assert!(
        err.contains("record 1"),
        "the bad record is reported: {err}"
    );
    assert!(!err.contains('\u{1b}'), "a raw ESC in stderr: {err:?}");
    assert!(!err.contains('\u{7}'), "a raw BEL in stderr: {err:?}");
    assert!(
        !err.lines().any(|l| l.starts_with("2099-")),
        "a forged log line: {err}"
    );
    assert!(
        err.contains("\\n2099-"),
        "the newline is shown escaped: {err}"
    );
}
