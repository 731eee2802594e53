use std::collections::HashMap;

use serde_json::Value;
use trailwatch::alert::Alert;
use trailwatch::identity::{ActorKind, actor};

use crate::support::*;

fn panther_records() -> Vec<Value> {
    let path = corpus().join("cloudtrail/panther-test-events/records.json");
    let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    let v: Value = serde_json::from_str(&text).unwrap();
    v["Records"].as_array().unwrap().clone()
}

fn find(records: &[Value], pred: impl Fn(&Value) -> bool) -> &Value {
    records
        .iter()
        .find(|r| pred(r))
        .expect("the corpus holds such a record")
}

/// Every identity type in real records normalises as documented.
#[test]
fn identities_of_real_records() {
    let recs = panther_records();
    let ui_type = |r: &Value| r["userIdentity"]["type"].as_str().map(str::to_owned);

    // SSO: the session name, never userName; the permission set from the role.
    let sso = find(&recs, |r| {
        r["userIdentity"]["arn"]
            .as_str()
            .is_some_and(|a| a.contains("AWSReservedSSO_DevAdmin_635426549a280cc6"))
    });
    let a = actor(sso);
    assert_eq!(a.kind, ActorKind::SsoUser);
    assert_eq!(a.name.as_deref(), Some("nicholas.hakmiller"));
    assert_eq!(a.permission_set.as_deref(), Some("DevAdmin"));
    assert_eq!(a.account.as_deref(), Some("187901811700"));

    let iam = find(&recs, |r| {
        ui_type(r).as_deref() == Some("IAMUser") && r["userIdentity"]["userName"].is_string()
    });
    let a = actor(iam);
    assert_eq!(a.kind, ActorKind::IamUser);
    assert_eq!(a.name.as_deref(), iam["userIdentity"]["userName"].as_str());

    let root = find(&recs, |r| ui_type(r).as_deref() == Some("Root"));
    assert_eq!(
        (actor(root).kind, actor(root).name.as_deref()),
        (ActorKind::Root, Some("root"))
    );

    let svc = find(&recs, |r| ui_type(r).as_deref() == Some("AWSService"));
    assert_eq!(actor(svc).kind, ActorKind::AwsService);
    assert_eq!(actor(svc).name.as_deref(), Some("lambda.amazonaws.com"));

    let fed = find(&recs, |r| ui_type(r).as_deref() == Some("FederatedUser"));
    assert_eq!(
        (actor(fed).kind, actor(fed).name.as_deref()),
        (ActorKind::FederatedUser, Some("federated-user"))
    );

    let acct = find(&recs, |r| ui_type(r).as_deref() == Some("AWSAccount"));
    assert_eq!(actor(acct).kind, ActorKind::AwsAccount);
    assert_eq!(
        actor(acct).name.as_deref(),
        acct["userIdentity"]["principalId"].as_str()
    );

    let role = find(&recs, |r| {
        ui_type(r).as_deref() == Some("AssumedRole")
            && r["userIdentity"]["arn"]
                .as_str()
                .is_some_and(|a| !a.contains("AWSReservedSSO") && a.matches('/').count() == 2)
            && r["userIdentity"]["sessionContext"]["sessionIssuer"]["userName"].is_string()
    });
    let a = actor(role);
    assert_eq!(a.kind, ActorKind::AssumedRole);
    let name = a.name.unwrap();
    assert_eq!(name, format!("{}/{}", a.role.unwrap(), a.session.unwrap()));

    // Every record normalises to something, and every AWSReservedSSO_ role is an SSO user.
    let mut kinds: HashMap<&str, usize> = HashMap::new();
    for r in &recs {
        let a = actor(r);
        *kinds.entry(a.kind.as_str()).or_default() += 1;
        if r["userIdentity"]["arn"]
            .as_str()
            .is_some_and(|x| x.contains(":assumed-role/AWSReservedSSO_"))
        {
            assert_eq!(a.kind, ActorKind::SsoUser, "{}", r["userIdentity"]);
        }
    }
    // A malformed ARN without a session still names the role.
    let odd = find(&recs, |r| {
        r["userIdentity"]["arn"] == "arn:aws:sts::123456789012:assumed-role/tester"
    });
    assert_eq!(actor(odd).name.as_deref(), Some("Tester"));
    assert!(kinds["sso_user"] >= 10, "{kinds:?}");
    assert!(kinds["unknown"] >= 18, "records without a type: {kinds:?}");
}

/// The whole messy corpus file scans without a record error.
#[test]
fn panther_corpus_scans_cleanly() {
    let (code, out, err) = run(trailwatch()
        .args(["scan"])
        .arg(corpus().join("cloudtrail/panther-test-events/records.json")));
    assert_eq!(code, 0, "{err}");
    assert!(err.contains("439 records (0 record errors"), "{err}");
    assert!(
        !out.is_empty(),
        "the S3 rules find SSO activity in the corpus"
    );
}

/// A generated corpus (the shared generator, all identity types including
/// IdentityCenterUser) scans with no errors and every record counted.
#[test]
fn generated_corpus_scans_cleanly() {
    let dir = tempfile::tempdir().unwrap();
    generate(7, 3, 400, &dir.path().join("ct"));
    write(
        &dir.path().join("rules/idc.toml"),
        "id = \"idc\"\ntitle = \"{actor.name}\"\nseverity = \"info\"\n[match]\n\"actor.kind\" = \"identity_center_user\"\n\"actor.name\" = { exists = true }\n",
    );
    let (code, out, err) = run(trailwatch()
        .args(["scan", "--rules"])
        .arg(dir.path().join("rules"))
        .arg(dir.path().join("ct")));
    assert_eq!(code, 0, "{err}");
    assert!(err.contains("scanned 3 files (0 failed"), "{err}");
    assert!(err.contains("1200 records (0 record errors"), "{err}");
    let alerts = jsonl(&out);
    assert!(
        !alerts.is_empty(),
        "IdentityCenterUser records are recognised"
    );
    assert!(alerts.iter().all(|a| a["actor"]["user_id"].is_string()));
}

/// The rule index and the lazily parsed records are only optimisations: over a
/// generated corpus and the panther corpus, with the whole bundled rule pack, they
/// fire exactly what evaluating every rule on fully parsed records fires, with the
/// same alerts.
#[test]
fn the_rule_index_changes_nothing() {
    use trailwatch::alert::SourceRef;
    use trailwatch::engine::{Engine, EngineOptions};
    use trailwatch::input::{Item, Limits, read_events};

    let dir = tempfile::tempdir().unwrap();
    generate(3, 2, 2000, dir.path());
    let set =
        trailwatch::rules::RuleSet::load(&root().join("rules"), trailwatch::rules::Strictness::Run)
            .unwrap();
    let mut fast = Engine::new(&set, EngineOptions::default());
    let mut slow = Engine::new(
        &set,
        EngineOptions {
            no_index: true,
            ..EngineOptions::default()
        },
    );
    let mut files = trailwatch::input::local_files(dir.path()).unwrap();
    files.push(corpus().join("cloudtrail/panther-test-events/records.json"));
    let (mut a, mut b) = (Vec::new(), Vec::new());
    let (mut fired, mut thresholds) = (0, 0);
    for f in files {
        read_events(
            std::fs::File::open(&f).unwrap(),
            Limits::default(),
            |item| {
                if let Item::Event { event, .. } = item {
                    a.clear();
                    b.clear();
                    fast.evaluate(&event, &mut a);
                    slow.evaluate(&event, &mut b);
                    assert_eq!(a, b, "{}", event.record());
                    fired += a.len();
                    for d in &a {
                        let (rule, source) = (&fast.rules()[d.rule], SourceRef::file("f", 1));
                        let alert = Alert::new(rule, d, &event, source.clone());
                        same_json(&alert);
                        // Written straight from the event, the alert is the same
                        // (but for when it was made).
                        let mut direct = Vec::new();
                        Alert::with_ref(rule, d, &event, &source, |a| a.write_json(&mut direct));
                        let direct = String::from_utf8(direct).unwrap();
                        assert_eq!(
                            without_detected_at(&direct),
                            without_detected_at(&alert.to_json())
                        );
                        thresholds += usize::from(alert.threshold.is_some());
                    }
                }
            },
        )
        .unwrap();
    }
    assert!(fired > 1000, "the pack fires on the corpus: {fired}");
    assert!(thresholds > 0, "a threshold fires on the corpus");
}

/// An alert's JSON with its `detected_at` member's value cut out.
fn without_detected_at(json: &str) -> String {
    let (head, rest) = json
        .split_once(r#""detected_at":""#)
        .expect("has detected_at");
    let (_, tail) = rest.split_once('"').expect("a closed string");
    format!("{head}{tail}")
}

/// `scan` and the sinks write alerts with `AlertRef::write_json` (an owned alert's
/// through [`Alert::write_json`]), which copies the record's text as it is;
/// everything else is what serde writes, member for member.
fn same_json(alert: &Alert) {
    let serde = serde_json::to_string(alert).unwrap();
    assert_eq!(alert.to_json(), serde);
    let mut more = alert.clone();
    more.deleted_keys = Some(vec![trailwatch::join::DeletedKey {
        key: "a \"b\"/\u{e9}".to_owned(),
        http_status: Some(204),
        error_code: None,
        version_id: Some("v".to_owned()),
        request_id: String::new(),
        bucket: None,
        time: None,
        requester: None,
        remote_ip: None,
        user_agent: None,
    }]);
    more.note = Some("a\nnote".to_owned());
    assert_eq!(more.to_json(), serde_json::to_string(&more).unwrap());
}

/// Reading files on several threads is only an optimisation: with the whole pack
/// (thresholds included) over a generated corpus, a corrupt file and the seed, the
/// alerts, their order and the summary are those of a single thread.
#[test]
fn threads_change_nothing() {
    let dir = tempfile::tempdir().unwrap();
    generate(5, 6, 1500, &dir.path().join("ct"));
    write(
        &dir.path().join("ct/zz-corrupt.json.gz"),
        b"\x1f\x8b\x08\x00 not deflate",
    );
    let scan = |threads: &str, since: Option<&str>| {
        let (code, out, err) = run(trailwatch()
            .args(["scan", "--threads", threads])
            .args(since.map(|s| ["--since", s]).into_iter().flatten())
            .arg("--rules")
            .arg(root().join("rules"))
            .arg(dir.path().join("ct"))
            .arg(seed()));
        // The corrupt file makes the scan report an error.
        assert_eq!(code, 2, "{err}");
        let alerts: Vec<serde_json::Value> = jsonl(&out)
            .into_iter()
            .map(|mut a| {
                a.as_object_mut().unwrap().remove("detected_at");
                a
            })
            .collect();
        // The summary without its timing.
        let err: Vec<String> = err
            .lines()
            .map(|l| l.split(" in ").next().unwrap().to_owned())
            .collect();
        (alerts, err)
    };
    let one = scan("1", None);
    assert!(one.0.len() > 1000, "the pack fires: {}", one.0.len());
    assert!(
        one.1.iter().any(|l| l.contains("zz-corrupt.json.gz")),
        "{:?}",
        one.1
    );
    assert!(one.0.iter().any(|a| a.get("threshold").is_some()));
    let four = scan("4", None);
    assert_eq!(one.1, four.1);
    assert_eq!(one.0.len(), four.0.len());
    for (a, b) in one.0.iter().zip(&four.0) {
        assert_eq!(a, b);
    }
    // Records outside the time range are counted the same by readers ahead.
    let since = "2025-04-30T17:00:00Z";
    let (one, two) = (scan("1", Some(since)), scan("2", Some(since)));
    let filtered: Option<String> = one.1.iter().find_map(|l| {
        l.split(", ")
            .find(|p| p.ends_with("outside the time range)"))
            .map(str::to_owned)
    });
    let filtered = filtered.expect("the summary counts records outside the range");
    assert!(!filtered.starts_with("0 "), "{filtered}");
    // CSV rows (written by the ordered thread, where JSON lines come rendered by
    // the readers) are the same too.
    let csv = |threads: &str| {
        let (_, out, _) = run(trailwatch()
            .args(["scan", "--format", "csv", "--threads", threads, "--rules"])
            .arg(root().join("rules"))
            .arg(dir.path().join("ct")));
        out
    };
    let rows = csv("1");
    assert!(rows.lines().count() > 1000, "{} rows", rows.lines().count());
    assert_eq!(rows, csv("3"));
    assert_eq!(one, two);
}
