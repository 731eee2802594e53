//! Property-style robustness: arbitrary and mutated inputs thrown at every parser
//! (the CloudTrail reader, the notification parser, the rule loader, the access log
//! parser) never panic, never allocate without bound, and fail with a message.
//! Seeds are fixed, so failures reproduce.

use trailwatch::input::{Item, Limits, read_events};

use crate::support::*;

/// Mutations of `seed`: bit flips, truncation, duplication of a slice, insertion of
/// structural bytes.
fn mutants(seed: &[u8], n: usize, rng_seed: u64) -> Vec<Vec<u8>> {
    let mut rng = fastrand::Rng::with_seed(rng_seed);
    let structural = [
        b'{', b'}', b'[', b']', b'"', b'\\', b',', b':', b'\n', 0x1f, 0x8b, 0xff,
    ];
    (0..n)
        .map(|_| {
            let mut m = seed.to_vec();
            for _ in 0..rng.usize(1..6) {
                if m.is_empty() {
                    m.push(rng.u8(..));
                    continue;
                }
                let at = rng.usize(..m.len());
                match rng.u8(..5) {
                    0 => m[at] ^= 1 << rng.u8(..8),
                    1 => m.truncate(at),
                    2 => {
                        let end = (at + rng.usize(..64)).min(m.len());
                        let copy = m[at..end].to_vec();
                        m.splice(at..at, copy);
                    }
                    3 => m.insert(at, structural[rng.usize(..structural.len())]),
                    _ => {
                        m.remove(at);
                    }
                }
            }
            m
        })
        .collect()
}

fn small_limits() -> Limits {
    Limits {
        max_decompressed_bytes: 1 << 20,
        max_record_bytes: 64 << 10,
        ..Limits::default()
    }
}

/// Whatever the bytes, reading ends with records, record errors or one stream
/// error, each with a message.
fn read_all(bytes: &[u8]) -> usize {
    let mut items = 0;
    let r = read_events(bytes, small_limits(), |item| {
        items += 1;
        if let Item::Bad { error, .. } = item {
            assert!(!error.to_string().is_empty());
        }
    });
    if let Err(e) = r {
        assert!(!e.to_string().is_empty());
    }
    items
}

#[test]
fn cloudtrail_reader_survives_mutations() {
    let plain = std::fs::read(
        seed().join("AWSLogs/111122223333/CloudTrail/eu-west-1/2024/11/05/111122223333_CloudTrail_eu-west-1_20241105T1010Z_Pp7nM2vLc8dE5fG6.json"),
    )
    .unwrap();
    let gz = gzip(&plain);
    let lines: Vec<u8> = plain.iter().copied().filter(|b| *b != b'\n').collect();
    for (i, base) in [plain, gz, lines].iter().enumerate() {
        for m in mutants(base, 400, 7 + i as u64) {
            read_all(&m);
        }
    }
}

#[test]
fn cloudtrail_reader_survives_random_bytes_and_deep_nesting() {
    let mut rng = fastrand::Rng::with_seed(11);
    for _ in 0..300 {
        let n = rng.usize(..2048);
        let bytes: Vec<u8> = (0..n).map(|_| rng.u8(..)).collect();
        read_all(&bytes);
    }
    // Nesting far deeper than any record: a clear per-record error, no stack overflow.
    let deep = format!(
        "{{\"Records\":[{{\"eventName\":\"X\",\"a\":{}1{}}}]}}",
        "[".repeat(50_000),
        "]".repeat(50_000)
    );
    let mut errors = Vec::new();
    read_events(deep.as_bytes(), Limits::default(), |item| {
        if let Item::Bad { error, .. } = item {
            errors.push(error.to_string());
        }
    })
    .unwrap();
    assert_eq!(errors.len(), 1);
    assert!(
        errors[0].contains("nests 50001 levels deep, over the cap of 100"),
        "{errors:?}"
    );
    // The same as JSON lines.
    let line = format!(
        "{{\"eventName\":\"X\",\"a\":{}1{}}}\n",
        "[".repeat(200),
        "]".repeat(200)
    );
    let mut errors = Vec::new();
    read_events(line.as_bytes(), Limits::default(), |item| {
        if let Item::Bad { error, .. } = item {
            errors.push(error.to_string());
        }
    })
    .unwrap();
    assert!(errors[0].contains("nests 201 levels deep"), "{errors:?}");
}

#[test]
fn notification_parser_survives_mutations() {
    let body = serde_json::json!({"Type": "Notification", "Message": serde_json::json!({"Records": [{
        "eventVersion": "2.1", "eventSource": "aws:s3", "eventName": "ObjectCreated:Put",
        "s3": {"bucket": {"name": "b"}, "object": {"key": "a%20b+c.json.gz", "size": 1, "eTag": "e"}}}]}).to_string()})
    .to_string();
    for m in mutants(body.as_bytes(), 2000, 3) {
        let text = String::from_utf8_lossy(&m);
        if let Err(e) = trailwatch::worker::notification::parse(&text) {
            assert!(
                e.to_string().contains("unrecognised SQS message body"),
                "{e}"
            );
        }
    }
}

#[test]
fn rule_loader_survives_mutations() {
    let src = std::fs::read(root().join("rules/repeated-access-denied.toml")).unwrap();
    let dir = tempfile::tempdir().unwrap();
    for (i, m) in mutants(&src, 300, 5).into_iter().enumerate() {
        let p = dir.path().join(format!("r{i}.toml"));
        std::fs::write(&p, &m).unwrap();
        match trailwatch::rules::RuleSet::load(&p, trailwatch::rules::Strictness::Run) {
            Ok(set) => assert_eq!(set.rules.len(), 1),
            Err(d) => {
                for diag in &d.0 {
                    assert!(!diag.message.is_empty());
                    assert!(diag.line >= 1 && diag.col >= 1);
                }
            }
        }
        std::fs::remove_file(&p).unwrap();
    }
}

#[test]
fn access_log_parser_survives_mutations() {
    let log = std::fs::read(root().join(
        "tests/data/access-logs/111122223333/eu-west-1/finance-reports-prod/2024/11/05/2024-11-05-10-25-00-6F1A2B3C4D5E6F70",
    ))
    .unwrap();
    for m in mutants(&log, 500, 9) {
        read_all(&m);
        for line in String::from_utf8_lossy(&m).lines() {
            if let Err(e) = trailwatch::input::access_log::parse_line(line) {
                assert!(!e.is_empty());
            }
        }
    }
}

/// A record the splitter finds malformed fails alone, with serde_json's account of
/// what is wrong or, where only white space inside a token is wrong (which the
/// compact copy would hide), with the byte it is at; the records around it are read.
#[test]
fn a_malformed_record_fails_alone_and_says_where() {
    /// The event names read from `bytes`, and the record errors.
    fn read(bytes: &[u8]) -> (Vec<String>, Vec<String>) {
        let (mut names, mut errors) = (Vec::new(), Vec::new());
        read_events(bytes, Limits::default(), |item| match item {
            Item::Event { event, .. } => names.push(event.str("eventName").unwrap().to_owned()),
            Item::Bad { error, .. } => errors.push(error.to_string()),
        })
        .unwrap();
        (names, errors)
    }
    let file = br#"{"Records":[{"eventName":"A"},{"eventName":"B","n":1 2},{"eventName":"C","s":"\q"},{"eventName":"D","t":tr ue},{"eventName":"E"}]}"#;
    let (names, errors) = read(file);
    assert_eq!(names, ["A", "E"]);
    assert_eq!(
        errors,
        [
            "invalid JSON at byte 23 of the record: white space inside a number or a literal",
            "invalid JSON: invalid escape at line 1 column 24",
            "invalid JSON at byte 23 of the record: white space inside a number or a literal",
        ]
    );
    // JSON lines after the first are cut at line ends, not captured: the same holds.
    let lines = b"{\"eventName\":\"A\"}\n{\"eventName\":\"B\",\"n\":1 2}\n{\"eventName\":\"E\"}\n";
    let (names, errors) = read(lines);
    assert_eq!(names, ["A", "E"]);
    assert_eq!(
        errors,
        ["invalid JSON at byte 23 of the record: white space inside a number or a literal"]
    );
}
