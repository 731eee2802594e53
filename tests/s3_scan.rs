use crate::support::moto::Moto;
use crate::support::*;

/// `scan s3://bucket/prefix` lists the prefix, skips digests and finds what a local
/// scan of the same files finds.
#[test]
fn scan_an_s3_prefix() {
    let moto = Moto::start();
    let rt = tokio::runtime::Runtime::new().unwrap();
    rt.block_on(async {
        let s3 = moto.s3().await;
        s3.create_bucket()
            .bucket("trail-logs")
            .send()
            .await
            .unwrap();
        let base = seed();
        for f in trailwatch::input::local_files(&base).unwrap() {
            let rel = f
                .strip_prefix(&base)
                .unwrap()
                .to_string_lossy()
                .into_owned();
            if !rel.starts_with("AWSLogs") {
                continue;
            }
            s3.put_object()
                .bucket("trail-logs")
                .key(rel)
                .body(std::fs::read(&f).unwrap().into())
                .send()
                .await
                .unwrap();
        }
    });

    let mut cmd = trailwatch();
    moto.apply(&mut cmd);
    let (code, out, err) = run(cmd.args([
        "scan",
        "--rules",
        "rules/s3-assumed-role-object-ops.toml",
        "--format",
        "csv",
        "s3://trail-logs/AWSLogs/111122223333/",
    ]));
    assert_eq!(code, 0, "{err}");
    assert_eq!(
        out,
        std::fs::read_to_string(root().join("tests/data/seed-expected.csv")).unwrap()
    );
    assert!(
        err.contains("scanned 2 files (0 failed, 1 digest files skipped)"),
        "{err}"
    );

    let mut cmd = trailwatch();
    moto.apply(&mut cmd);
    let (_, out, _) = run(cmd.args([
        "scan",
        "--rules",
        "rules/s3-sso-object-delete.toml",
        "s3://trail-logs/AWSLogs/",
    ]));
    let alerts = jsonl(&out);
    assert_eq!(alerts.len(), 2);
    assert_eq!(alerts[0]["source"]["bucket"], "trail-logs");
    assert!(
        alerts[0]["source"]["key"]
            .as_str()
            .unwrap()
            .ends_with(".json")
    );

    // A missing bucket is a clear error, not a crash.
    let mut cmd = trailwatch();
    moto.apply(&mut cmd);
    let (code, _, err) = run(cmd.args(["scan", "s3://no-such-bucket/x"]));
    assert_eq!(code, 2);
    assert!(
        err.contains("listing s3://no-such-bucket/x") && err.contains("NoSuchBucket"),
        "{err}"
    );
}
