use serde_json::Value;

use crate::support::*;

fn scan(args: &[&str]) -> (i32, String, String) {
    run(trailwatch().args(["scan"]).args(args))
}

/// The seed scenario: an SSO user's DeleteObjects on three keys, two deleted and one
/// refused, yields one alert listing the three keys with their HTTP statuses.
#[test]
fn delete_objects_alert_lists_the_keys_from_access_logs() {
    let (code, out, err) = scan(&[
        "--rules",
        "rules/s3-sso-object-delete.toml",
        "tests/data/seed",
        "tests/data/access-logs",
    ]);
    assert_eq!(code, 0, "the sample data is clean: {err}");
    let alerts = jsonl(&out);
    let batch: Vec<&Value> = alerts
        .iter()
        .filter(|a| a["event"]["eventName"] == "DeleteObjects")
        .collect();
    assert_eq!(batch.len(), 1);
    let keys: Vec<(String, u64, Value)> = batch[0]["deleted_keys"]
        .as_array()
        .unwrap()
        .iter()
        .map(|k| {
            (
                k["key"].as_str().unwrap().to_owned(),
                k["http_status"].as_u64().unwrap(),
                k["error_code"].clone(),
            )
        })
        .collect();
    assert_eq!(
        keys,
        vec![
            ("2024/q2/board minutes.docx".to_owned(), 204, Value::Null),
            ("2024/q2/payroll.csv".to_owned(), 204, Value::Null),
            (
                "legal/hold/contract.pdf".to_owned(),
                403,
                Value::String("AccessDenied".into())
            ),
        ]
    );
    // The single DeleteObject (not a batch) carries no key list.
    let single = alerts
        .iter()
        .find(|a| a["event"]["eventName"] == "DeleteObject")
        .unwrap();
    assert!(single.get("deleted_keys").is_none());
}

/// A line that is not an access log record fails alone, with its file and line
/// number; the lines around it still join.
#[test]
fn a_malformed_access_log_line_fails_alone() {
    let dir = tempfile::tempdir().unwrap();
    let sample = root().join(SAMPLE_LOG);
    let mut log = std::fs::read_to_string(&sample).unwrap();
    let lines: Vec<&str> = log.lines().collect();
    log = format!(
        "{}\nthis line is not an access log record\n{}\n",
        lines[..3].join("\n"),
        lines[3..].join("\n")
    );
    let bad = dir.path().join("2024-11-05-10-25-00-BADLINE000000000");
    write(&bad, &log);
    let (code, out, err) = run(trailwatch()
        .args([
            "scan",
            "--rules",
            "rules/s3-sso-object-delete.toml",
            "tests/data/seed",
        ])
        .arg(&bad));
    assert_eq!(code, 2, "a malformed line is an error: {err}");
    assert!(
        err.contains("2024-11-05-10-25-00-BADLINE000000000: line 4: malformed S3 access log line"),
        "{err}"
    );
    let alerts = jsonl(&out);
    let batch = alerts
        .iter()
        .find(|a| a["event"]["eventName"] == "DeleteObjects")
        .unwrap();
    assert_eq!(
        batch["deleted_keys"].as_array().unwrap().len(),
        3,
        "{batch}"
    );
}

/// The sample server access log beside the seed scenario.
const SAMPLE_LOG: &str = "tests/data/access-logs/111122223333/eu-west-1/finance-reports-prod/2024/11/05/2024-11-05-10-25-00-6F1A2B3C4D5E6F70";

/// `--columns deleted-keys` gives the rows of the classic FULL OUTER JOIN on request
/// ID: one per key of an alerted DeleteObjects, and log lines that no alerted
/// DeleteObjects matched, with who, from where and when as the access log says.
#[test]
fn join_csv_rows() {
    let (code, out, err) = scan(&[
        "--rules",
        "rules/s3-sso-object-delete.toml",
        "--format",
        "csv",
        "--columns",
        "deleted-keys",
        "tests/data/seed",
        "tests/data/access-logs",
    ]);
    assert_eq!(code, 0, "{err}");
    assert_eq!(
        out,
        std::fs::read_to_string(root().join("tests/data/access-logs-join-expected.csv")).unwrap()
    );
    let rows: Vec<&str> = out.lines().collect();
    assert_eq!(
        rows[0],
        "operation_time,bucket_name,operation,object_key,user_arn,source_ip,user_agent,httpstatus,access_denied,error_code,error_message,request_id"
    );
    assert_eq!(rows.len(), 5);
    assert!(
        rows[3].contains("legal/hold/contract.pdf") && rows[3].contains(",403,Yes,AccessDenied,")
    );
    assert_eq!(
        rows[4],
        "2024-11-05T10:15:40Z,finance-reports-prod,BATCH.DELETE.OBJECT,tmp/export-1.csv,arn:aws:iam::111122223333:user/cleanup-bot,203.0.113.50,Boto3/1.34.0,204,No,,,ZZ00ORPHANREQ001"
    );

    // A DeleteObjects alert without any log line still appears once.
    let (_, out, _) = scan(&[
        "--rules",
        "rules/s3-sso-object-delete.toml",
        "--format",
        "csv",
        "--columns",
        "deleted-keys",
        "tests/data/seed",
    ]);
    let rows: Vec<&str> = out.lines().collect();
    assert_eq!(rows.len(), 2, "{out}");
    assert!(
        rows[1].contains(",DeleteObjects,,") && rows[1].ends_with(",Q7W3E9R1T5Y2U8I4"),
        "{out}"
    );

    let (code, _, err) = scan(&["--columns", "deleted-keys", "tests/data/seed"]);
    assert_eq!(code, 2);
    assert!(
        err.contains("--columns deleted-keys goes with --format csv"),
        "{err}"
    );
}

/// Rules with `log_type = "s3_access"` see access log lines (and only them), with
/// AWS's field names and the normalised actor of the requester.
#[test]
fn access_log_rules() {
    let dir = tempfile::tempdir().unwrap();
    write(
        &dir.path().join("r.toml"),
        r#"
id = "who-deleted"
log_type = "s3_access"
title = "{actor.name} ({actor.kind}) deleted {s3.key}: {http_status}"
severity = "low"
[match]
operation = "BATCH.DELETE.OBJECT"
"#,
    );
    let (_, out, _) = run(trailwatch()
        .args(["scan", "--rules"])
        .arg(dir.path())
        .args(["tests/data/seed", "tests/data/access-logs"]));
    let alerts = jsonl(&out);
    let titles: Vec<&str> = alerts
        .iter()
        .map(|a| a["title"].as_str().unwrap())
        .collect();
    assert_eq!(
        titles,
        [
            "jane.doe@example.com (sso_user) deleted 2024/q2/board minutes.docx: 204",
            "jane.doe@example.com (sso_user) deleted 2024/q2/payroll.csv: 204",
            "jane.doe@example.com (sso_user) deleted legal/hold/contract.pdf: 403",
            "cleanup-bot (iam_user) deleted tmp/export-1.csv: 204",
        ]
    );
    assert_eq!(alerts[0]["record"]["request_id"], "Q7W3E9R1T5Y2U8I4");
    assert_eq!(alerts[0]["event_time"], "2024-11-05T10:09:03Z");
    assert_eq!(alerts[0]["source"]["index"], 2, "0-based line index");

    // The bundled access log rules, at match level.
    let (_, out, _) = scan(&[
        "--ignore-thresholds",
        "--rules",
        "rules/access-log",
        "tests/data/access-logs",
    ]);
    let ids: Vec<String> = jsonl(&out)
        .iter()
        .map(|a| a["rule_id"].as_str().unwrap().to_owned())
        .collect();
    let count = |id: &str| ids.iter().filter(|i| *i == id).count();
    assert_eq!(count("access-log-batch-delete-volume"), 3, "{ids:?}");
    assert_eq!(count("access-log-403-burst"), 1, "{ids:?}");
}
