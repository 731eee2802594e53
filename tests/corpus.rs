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

/// A generated corpus (examples/gen_corpus, all identity types including
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

// The corpus generator (examples/gen_corpus): what the tests and benchmarks above
// rely on it for.

mod generator {
    use std::collections::{BTreeSet, HashMap};
    use std::io::Read;
    use std::path::{Path, PathBuf};

    use serde::de::{Deserializer, IgnoredAny, MapAccess, Visitor};
    use serde_json::Value;
    use trailwatch::identity::{ActorKind, actor};

    use crate::support::gen_corpus::{self, Layout, Options};
    use crate::support::*;

    /// CloudTrail's usual key order.
    const KEY_ORDER: [&str; 26] = [
        "eventVersion",
        "userIdentity",
        "eventTime",
        "eventSource",
        "eventName",
        "awsRegion",
        "sourceIPAddress",
        "userAgent",
        "errorCode",
        "errorMessage",
        "requestParameters",
        "responseElements",
        "additionalEventData",
        "requestID",
        "eventID",
        "readOnly",
        "resources",
        "eventType",
        "managementEvent",
        "recipientAccountId",
        "sharedEventID",
        "vpcEndpointId",
        "vpcEndpointAccountId",
        "eventCategory",
        "tlsDetails",
        "sessionCredentialFromConsole",
    ];

    fn gunzip(path: &Path) -> String {
        let mut s = String::new();
        flate2::read::MultiGzDecoder::new(std::fs::File::open(path).unwrap())
            .read_to_string(&mut s)
            .unwrap();
        s
    }

    /// Each file's path, JSON text and records.
    fn files(dir: &Path) -> Vec<(PathBuf, String, Vec<Value>)> {
        trailwatch::input::local_files(dir)
            .unwrap()
            .into_iter()
            .map(|p| {
                let text = gunzip(&p);
                let v: Value = serde_json::from_str(&text).unwrap();
                let recs = v["Records"].as_array().unwrap().clone();
                (p, text, recs)
            })
            .collect()
    }

    fn bytes_of(dir: &Path) -> Vec<(String, Vec<u8>)> {
        trailwatch::input::local_files(dir)
            .unwrap()
            .into_iter()
            .map(|p| {
                let rel = p.strip_prefix(dir).unwrap().to_string_lossy().into_owned();
                (rel, std::fs::read(&p).unwrap())
            })
            .collect()
    }

    /// The keys of a JSON object's text, in the order they are written.
    struct Keys(Vec<String>);

    impl<'de> serde::Deserialize<'de> for Keys {
        fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Keys, D::Error> {
            struct V;
            impl<'de> Visitor<'de> for V {
                type Value = Keys;
                fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
                    f.write_str("an object")
                }
                fn visit_map<A: MapAccess<'de>>(self, mut m: A) -> Result<Keys, A::Error> {
                    let mut keys = Vec::new();
                    while let Some((k, _)) = m.next_entry::<String, IgnoredAny>()? {
                        keys.push(k);
                    }
                    Ok(Keys(keys))
                }
            }
            d.deserialize_map(V)
        }
    }

    #[derive(serde::Deserialize)]
    struct RawFile<'a> {
        #[serde(borrow, rename = "Records")]
        records: Vec<&'a serde_json::value::RawValue>,
    }

    /// The same options give the same bytes (names included); another seed gives
    /// other bytes.
    #[test]
    fn generator_is_deterministic() {
        let dir = tempfile::tempdir().unwrap();
        let (a, b, c) = (
            dir.path().join("a"),
            dir.path().join("b"),
            dir.path().join("c"),
        );
        generate(11, 3, 300, &a);
        generate(11, 3, 300, &b);
        generate(12, 3, 300, &c);
        let (a, b, c) = (bytes_of(&a), bytes_of(&b), bytes_of(&c));
        assert_eq!(a.len(), 3);
        assert!(a == b, "the same seed gives the same files");
        for ((na, da), (nc, dc)) in a.iter().zip(&c) {
            assert_ne!(na, nc);
            assert_ne!(da, dc);
        }
        // The gzip header carries no time and no name.
        assert_eq!(&a[0].1[..10], b"\x1f\x8b\x08\x00\x00\x00\x00\x00\x00\xff");
    }

    /// Files are named as CloudTrail names them, five minutes apart, flat or in a
    /// trail bucket's layout; events happened in the 15 minutes before their file,
    /// not in order.
    #[test]
    fn generator_names_layout_and_times() {
        let dir = tempfile::tempdir().unwrap();
        let mut opts = Options::new(4, 4, 500);
        opts.layout = Layout::S3;
        let paths = gen_corpus::write_corpus(&opts, dir.path()).unwrap();
        assert_eq!(paths.len(), 4);
        let mut ends = HashMap::new();
        for (i, p) in paths.iter().enumerate() {
            let name = p.file_name().unwrap().to_str().unwrap();
            let parts: Vec<&str> = name.strip_suffix(".json.gz").unwrap().split('_').collect();
            let [account, "CloudTrail", region, stamp, suffix] = parts[..] else {
                panic!("{name}");
            };
            assert!(account.len() == 12 && account.bytes().all(|b| b.is_ascii_digit()));
            assert!(suffix.len() == 16 && suffix.bytes().all(|b| b.is_ascii_alphanumeric()));
            assert_eq!(stamp.len(), "20250430T1600Z".len());
            let rel = p
                .strip_prefix(dir.path())
                .unwrap()
                .to_string_lossy()
                .into_owned();
            let date = format!("{}/{}/{}", &stamp[..4], &stamp[4..6], &stamp[6..8]);
            assert_eq!(
                rel,
                format!("AWSLogs/{account}/CloudTrail/{region}/{date}/{name}")
            );
            // 2025-04-30T16:00Z, then every five minutes.
            let minutes = 16 * 60 + 5 * i;
            assert_eq!(
                stamp,
                format!("20250430T{:02}{:02}Z", minutes / 60, minutes % 60)
            );
            ends.insert(p.clone(), minutes as i64 * 60);
        }
        let secs = |t: &str| -> i64 {
            let h: i64 = t[11..13].parse().unwrap();
            let m: i64 = t[14..16].parse().unwrap();
            let s: i64 = t[17..19].parse().unwrap();
            assert_eq!(&t[..11], "2025-04-30T");
            h * 3600 + m * 60 + s
        };
        for (path, _, recs) in files(dir.path()) {
            let end = ends[&path];
            let times: Vec<i64> = recs
                .iter()
                .map(|r| secs(r["eventTime"].as_str().unwrap()))
                .collect();
            assert!(times.iter().all(|&t| t <= end && t >= end - 900));
            assert!(times.windows(2).any(|w| w[0] > w[1]), "not sorted");
            assert!(times.iter().max().unwrap() - times.iter().min().unwrap() > 600);
        }
        // The flat layout holds the same files.
        let flat = tempfile::tempdir().unwrap();
        opts.layout = Layout::Flat;
        let flat_paths = gen_corpus::write_corpus(&opts, flat.path()).unwrap();
        for (a, b) in paths.iter().zip(&flat_paths) {
            assert_eq!(a.file_name(), b.file_name());
            assert_eq!(b.parent().unwrap(), flat.path());
            assert_eq!(std::fs::read(a).unwrap(), std::fs::read(b).unwrap());
        }
    }

    /// About 60% S3 data events, 35% management events and 5% errors, by every
    /// identity type (IAM Identity Center sessions and IdentityCenterUser included),
    /// over the APIs the rules look at.
    #[test]
    fn generator_mix() {
        let dir = tempfile::tempdir().unwrap();
        generate(2, 4, 2500, dir.path());
        let recs: Vec<Value> = files(dir.path()).into_iter().flat_map(|f| f.2).collect();
        let n = recs.len() as f64;
        assert_eq!(recs.len(), 10_000);
        let share =
            |pred: &dyn Fn(&Value) -> bool| recs.iter().filter(|r| pred(r)).count() as f64 / n;
        let failed = |r: &Value| r.get("errorCode").is_some() || r.get("errorMessage").is_some();
        let data =
            share(&|r| r["eventCategory"] == "Data" && r["eventSource"] == "s3.amazonaws.com");
        let errors = share(&failed);
        let mgmt = share(&|r| r["eventCategory"] == "Management" && !failed(r));
        assert!((0.50..=0.70).contains(&data), "S3 data events: {data}");
        assert!((0.03..=0.08).contains(&errors), "errors: {errors}");
        assert!((0.25..=0.45).contains(&mgmt), "management events: {mgmt}");

        let mut kinds: HashMap<&str, usize> = HashMap::new();
        let mut types: BTreeSet<&str> = BTreeSet::new();
        let mut names: BTreeSet<(&str, &str)> = BTreeSet::new();
        let mut codes: BTreeSet<&str> = BTreeSet::new();
        let (mut fas, mut idc, mut failed_logins) = (0, 0, 0);
        for r in &recs {
            let ui = &r["userIdentity"];
            types.insert(ui["type"].as_str().unwrap());
            names.insert((
                r["eventSource"].as_str().unwrap(),
                r["eventName"].as_str().unwrap(),
            ));
            if let Some(c) = r["errorCode"].as_str() {
                codes.insert(c);
            }
            let a = actor(r);
            *kinds.entry(a.kind.as_str()).or_default() += 1;
            if a.kind == ActorKind::SsoUser {
                let arn = ui["sessionContext"]["sessionIssuer"]["arn"]
                    .as_str()
                    .unwrap();
                assert!(
                    arn.contains(":role/aws-reserved/sso.amazonaws.com/"),
                    "{arn}"
                );
                let set = a.permission_set.as_deref().unwrap();
                let role = ui["sessionContext"]["sessionIssuer"]["userName"]
                    .as_str()
                    .unwrap();
                let hex = role
                    .strip_prefix(&format!("AWSReservedSSO_{set}_"))
                    .unwrap();
                assert!(hex.len() == 16 && hex.bytes().all(|b| b.is_ascii_hexdigit()));
                assert!(a.session.as_deref().unwrap().contains('@'), "{ui}");
            }
            if ui["type"] == "AssumedRole" && ui["invokedBy"].is_string() {
                fas += 1;
                assert_eq!(r["sourceIPAddress"], ui["invokedBy"]);
            }
            if ui["type"] == "IdentityCenterUser" {
                idc += 1;
                assert!(ui["onBehalfOf"]["userId"].is_string());
                assert!(
                    ui["onBehalfOf"]["identityStoreArn"]
                        .as_str()
                        .unwrap()
                        .contains(":identitystore/d-")
                );
                assert!(ui["credentialId"].is_string());
            }
            if r["eventName"] == "ConsoleLogin"
                && r["responseElements"]["ConsoleLogin"] == "Failure"
            {
                failed_logins += 1;
                assert_eq!(r["errorMessage"], "Failed authentication");
            }
        }
        for t in [
            "IAMUser",
            "AssumedRole",
            "AWSService",
            "Root",
            "IdentityCenterUser",
        ] {
            assert!(types.contains(t), "{t} in {types:?}");
        }
        for k in [
            "iam_user",
            "assumed_role",
            "sso_user",
            "aws_service",
            "root",
            "identity_center_user",
        ] {
            assert!(kinds.get(k).is_some_and(|&n| n >= 10), "{k}: {kinds:?}");
        }
        assert!(
            fas >= 50 && idc >= 50 && failed_logins >= 3,
            "{fas} {idc} {failed_logins}"
        );
        for code in [
            "AccessDenied",
            "Client.UnauthorizedOperation",
            "AccessDeniedException",
        ] {
            assert!(codes.contains(code), "{code} in {codes:?}");
        }
        for (source, name) in [
            ("s3", "GetObject"),
            ("s3", "HeadObject"),
            ("s3", "PutObject"),
            ("s3", "ListObjects"),
            ("s3", "DeleteObject"),
            ("s3", "DeleteObjects"),
            ("s3", "GetObjectTagging"),
            ("s3", "GetObjectAcl"),
            ("sts", "AssumeRole"),
            ("sts", "GetCallerIdentity"),
            ("ec2", "DescribeInstances"),
            ("kms", "Decrypt"),
            ("kms", "GenerateDataKey"),
            ("iam", "CreateAccessKey"),
            ("iam", "AttachUserPolicy"),
            ("iam", "PutUserPolicy"),
            ("iam", "ListUsers"),
            ("signin", "ConsoleLogin"),
            ("ssm", "GetParameter"),
            ("secretsmanager", "GetSecretValue"),
        ] {
            let source = format!("{source}.amazonaws.com");
            assert!(
                names.iter().any(|&(s, n)| s == source && n == name),
                "{source} {name}"
            );
        }
    }

    /// Records are compact, in CloudTrail's key order, ~1.9 KB on average with long
    /// user agents, and each file is one `{"Records":[...]}` object.
    #[test]
    fn generator_record_shape_and_size() {
        let dir = tempfile::tempdir().unwrap();
        generate(9, 2, 3000, dir.path());
        let (mut n, mut bytes, mut ua_bytes) = (0usize, 0usize, 0usize);
        for (path, text, _) in files(dir.path()) {
            assert!(
                text.starts_with(r#"{"Records":[{"eventVersion":"#),
                "{}",
                path.display()
            );
            assert!(text.ends_with("}]}"));
            let file: RawFile = serde_json::from_str(&text).unwrap();
            for raw in file.records {
                // Compact: as long as serde_json writes it.
                let v: Value = serde_json::from_str(raw.get()).unwrap();
                assert_eq!(raw.get().len(), serde_json::to_string(&v).unwrap().len());
                let Keys(keys) = serde_json::from_str(raw.get()).unwrap();
                let at: Vec<usize> = keys
                    .iter()
                    .map(|k| {
                        KEY_ORDER
                            .iter()
                            .position(|o| o == k)
                            .unwrap_or_else(|| panic!("{k}"))
                    })
                    .collect();
                assert!(at.windows(2).all(|w| w[0] < w[1]), "{keys:?}");
                assert_eq!(keys[..3], ["eventVersion", "userIdentity", "eventTime"]);
                ua_bytes += v["userAgent"].as_str().unwrap().len();
                n += 1;
                bytes += raw.get().len();
            }
        }
        let mean = bytes / n;
        assert!((1500..=2100).contains(&mean), "mean record: {mean} bytes");
        assert!(ua_bytes / n >= 80, "user agents: {} bytes", ua_bytes / n);
    }

    /// Over the bundled rules the corpus scans cleanly, and its episodes trip the
    /// threshold rules: bursts of denials by one principal.
    #[test]
    fn generated_corpus_trips_thresholds() {
        let dir = tempfile::tempdir().unwrap();
        generate(1, 3, 3000, dir.path());
        let (code, out, err) = run(trailwatch()
            .args(["scan", "--rules"])
            .arg(root().join("rules"))
            .arg(dir.path()));
        assert_eq!(code, 0, "{err}");
        assert!(err.contains("9000 records (0 record errors"), "{err}");
        let alerts = jsonl(&out);
        let fired = |id: &str| alerts.iter().filter(|a| a["rule_id"] == id).count();
        let denied = alerts
            .iter()
            .filter(|a| a["rule_id"] == "repeated-access-denied")
            .collect::<Vec<_>>();
        assert!(!denied.is_empty(), "repeated-access-denied fires");
        assert!(denied.iter().all(|a| a["threshold"].is_object()));
        assert!(fired("s3-sso-object-delete") > 0);
        assert!(fired("s3-assumed-role-object-ops") > 1000);
    }
}
