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
