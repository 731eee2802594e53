//! Shared helpers for the integration tests: running the binary, temporary trees,
//! gzip, and a real AWS emulator (`moto_server`) on loopback.

#![allow(dead_code)]

pub mod faults;
pub mod moto;
pub mod worker;

use std::io::{BufRead, BufReader, Read, Write};
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

/// The project root (where `rules/` and `tests/data/` live).
pub fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// The vendored field data (real records, peer tests, Sigma rules): see its PROVENANCE.md.
pub fn corpus() -> PathBuf {
    root().join("tests/data/field")
}

/// The seed scenario's CloudTrail files.
pub fn seed() -> PathBuf {
    root().join("tests/data/seed")
}

/// A `trailwatch` command with a clean environment: no AWS settings from the host,
/// no rules directory from the environment.
pub fn trailwatch() -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_trailwatch"));
    for (k, _) in std::env::vars() {
        if k.starts_with("AWS_") || k.starts_with("TRAILWATCH_") {
            c.env_remove(k);
        }
    }
    c.env("AWS_EC2_METADATA_DISABLED", "true");
    c.current_dir(root());
    c
}

/// Runs and returns (exit code, stdout, stderr).
pub fn run(c: &mut Command) -> (i32, String, String) {
    let Output {
        status,
        stdout,
        stderr,
    } = c.output().expect("trailwatch runs");
    (
        status.code().unwrap_or(-1),
        String::from_utf8(stdout).expect("utf-8 stdout"),
        String::from_utf8(stderr).expect("utf-8 stderr"),
    )
}

/// Parses JSON-lines output.
pub fn jsonl(s: &str) -> Vec<serde_json::Value> {
    s.lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("bad JSON line {l}: {e}")))
        .collect()
}

pub fn gzip(data: &[u8]) -> Vec<u8> {
    let mut e = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
    e.write_all(data).unwrap();
    e.finish().unwrap()
}

pub fn write(path: &Path, data: impl AsRef<[u8]>) {
    if let Some(p) = path.parent() {
        std::fs::create_dir_all(p).unwrap();
    }
    std::fs::write(path, data).unwrap();
}

/// A CloudTrail log file body holding `records`.
pub fn cloudtrail(records: &[serde_json::Value]) -> Vec<u8> {
    serde_json::to_vec(&serde_json::json!({ "Records": records })).unwrap()
}

/// A minimal but realistic S3 data event.
pub fn s3_event(n: usize, name: &str, user: &str, error: Option<&str>) -> serde_json::Value {
    let mut v = serde_json::json!({
        "eventVersion": "1.10",
        "userIdentity": {
            "type": "AssumedRole",
            "principalId": format!("AROA3EXAMPLEID7X2KQ5:{user}"),
            "arn": format!("arn:aws:sts::111122223333:assumed-role/AWSReservedSSO_S3DataAdmins_0a1b2c3d4e5f6789/{user}"),
            "accountId": "111122223333",
            "sessionContext": {"sessionIssuer": {"type": "Role", "userName": "AWSReservedSSO_S3DataAdmins_0a1b2c3d4e5f6789"}}
        },
        "eventTime": format!("2024-11-05T10:{:02}:{:02}Z", (n / 60) % 60, n % 60),
        "eventSource": "s3.amazonaws.com",
        "eventName": name,
        "awsRegion": "eu-west-1",
        "sourceIPAddress": "198.51.100.24",
        "userAgent": "aws-cli/2.17.45",
        "requestParameters": {"bucketName": "finance-reports-prod", "key": format!("data/{n}.csv")},
        "responseElements": null,
        "requestID": format!("REQ{n:013}"),
        "eventID": format!("00000000-0000-4000-8000-{n:012}"),
        "readOnly": name.starts_with("Get"),
        "eventType": "AwsApiCall",
        "managementEvent": false,
        "recipientAccountId": "111122223333",
        "eventCategory": "Data"
    });
    if let Some(code) = error {
        v["errorCode"] = code.into();
        v["errorMessage"] = "Access Denied".into();
    }
    v
}

/// Reads one HTTP request from a test server's connection and returns its body.
pub fn read_http_body(conn: &mut std::net::TcpStream) -> String {
    let mut r = BufReader::new(conn.try_clone().unwrap());
    let mut len = 0;
    loop {
        let mut line = String::new();
        if r.read_line(&mut line).unwrap_or(0) == 0 {
            return String::new();
        }
        let l = line.trim_end();
        if l.is_empty() {
            break;
        }
        if let Some(v) = l.to_ascii_lowercase().strip_prefix("content-length:") {
            len = v.trim().parse().unwrap_or(0);
        }
    }
    let mut body = vec![0; len];
    let _ = r.read_exact(&mut body);
    String::from_utf8_lossy(&body).into_owned()
}

/// Answers an HTTP request with `status` (e.g. `"503 Service Unavailable"`), no
/// body, and closes the connection.
pub fn respond(conn: &mut std::net::TcpStream, status: &str) {
    let _ = conn.write_all(
        format!("HTTP/1.1 {status}\r\ncontent-length: 0\r\nconnection: close\r\n\r\n").as_bytes(),
    );
}

/// The project's CloudTrail corpus generator (`examples/gen_corpus`), in process.
#[path = "../../examples/gen_corpus/generator.rs"]
pub mod gen_corpus;

/// Writes a generated CloudTrail corpus: `files` gzip files of `records` records,
/// seeded, into `out`.
pub fn generate(seed: u32, files: usize, records: usize, out: &Path) {
    let opts = gen_corpus::Options::new(u64::from(seed), files, records);
    gen_corpus::write_corpus(&opts, out)
        .unwrap_or_else(|e| panic!("generating into {}: {e}", out.display()));
}
