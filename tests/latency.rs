//! How soon the worker alerts on a new file: 100 CloudTrail files of about 1 MB of
//! gzip (3,400 records each, a busy account's five minutes) uploaded one at a time
//! to the emulator's trail bucket, with the whole bundled rule pack. The latency of
//! a file runs from the moment its upload returned (the S3 notification is then in
//! the queue) to the moment its last record's alert is on the file sink.
//!
//! The sink is a file: the emulator's SNS (a Python process on the same two cores)
//! would be what is measured otherwise. The emulator's long poll spins, so the
//! worker polls for 1 s at a time.
//!
//! A measurement, not a check: it is ignored by the test suite and run by
//! `scripts/bench --worker`, which prints p50, p99 and the maximum.

use std::io::{Read, Seek};
use std::time::{Duration, Instant};

use crate::support::worker::*;
use crate::support::*;

const FILES: usize = 100;
const DISTINCT: usize = 10;
const RECORDS: usize = 3400;

#[test]
#[ignore = "a measurement; run by scripts/bench --worker"]
fn worker_latency() {
    let dir = tempfile::tempdir().unwrap();
    generate(11, DISTINCT, RECORDS, dir.path());
    let bases: Vec<serde_json::Value> = trailwatch::input::local_files(dir.path())
        .unwrap()
        .iter()
        .map(|f| {
            let mut text = Vec::new();
            flate2::read::MultiGzDecoder::new(std::fs::File::open(f).unwrap())
                .read_to_end(&mut text)
                .unwrap();
            serde_json::from_slice(&text).unwrap()
        })
        .collect();

    let bed = Bed::new(3);
    let cfg = bed.dir.path().join("latency.toml");
    std::fs::write(
        &cfg,
        format!(
            "[source]\nqueue_url = \"{}\"\nwait_time = \"1s\"\n\n[rules]\ndir = \"{}\"\n\n[[sink]]\ntype = \"file\"\npath = \"{}\"\nmin_severity = \"medium\"\n\n[health]\nlisten = \"\"\n",
            bed.queue,
            root().join("rules").display(),
            bed.alerts_path().display(),
        ),
    )
    .unwrap();
    let mut worker = bed.spawn(&cfg, &[]);
    let mut offset = 0;
    let mut latencies = Vec::new();
    let mut sizes = Vec::new();
    for n in 0..FILES {
        // The last record: an SSO user's delete, a high-severity alert to wait for.
        let mut doc = bases[n % DISTINCT].clone();
        let marker = format!("latency{n}@example.com");
        doc["Records"].as_array_mut().unwrap().push(s3_event(
            900_000 + n,
            "DeleteObject",
            &marker,
            None,
        ));
        let body = gzip(&serde_json::to_vec(&doc).unwrap());
        sizes.push(body.len());
        bed.put(&format!("AWSLogs/latency/{n:03}.json.gz"), body);
        let put = Instant::now();
        // Polled every 5 ms (the 100 ms of `wait_for` would blur the figures).
        let deadline = put + Duration::from_secs(60);
        loop {
            let mut more = Vec::new();
            if let Ok(mut f) = std::fs::File::open(bed.alerts_path()) {
                f.seek(std::io::SeekFrom::Start(offset)).unwrap();
                f.read_to_end(&mut more).unwrap();
            }
            if more.windows(marker.len()).any(|w| w == marker.as_bytes()) {
                offset += more.len() as u64;
                break;
            }
            assert!(
                Instant::now() < deadline,
                "no alert for file {n}\n{}",
                bed.log()
            );
            std::thread::sleep(Duration::from_millis(5));
        }
        latencies.push(put.elapsed());
    }
    signal(&worker, "TERM");
    assert_eq!(bed.wait_exit(&mut worker, 30), 0, "{}", bed.log());
    latencies.sort();
    let pct = |p: f64| latencies[((latencies.len() as f64 * p).ceil() as usize).min(FILES) - 1];
    let ms = |d: Duration| d.as_secs_f64() * 1000.0;
    println!(
        "worker latency over {FILES} files of {:.2} MB gzip ({} records, the whole rule pack): p50 {:.0} ms, p99 {:.0} ms, max {:.0} ms",
        sizes.iter().sum::<usize>() as f64 / FILES as f64 / 1e6,
        RECORDS + 1,
        ms(pct(0.50)),
        ms(pct(0.99)),
        ms(*latencies.last().unwrap())
    );
}
