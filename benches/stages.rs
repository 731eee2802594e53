//! The stages of the hot path, one at a time, on one generated CloudTrail file of
//! 10,000 records (~19 MB of JSON, ~3 MB of gzip): inflating, splitting records
//! out of the stream, validating them and locating their top-level fields, matching the whole bundled
//! rule pack, building alerts, and the whole file end to end. Throughput is in
//! bytes of JSON, so the stages compare directly with each other and with `zcat`.
//!
//! `cargo bench` (the corpus is generated into `target/bench-data` on first use).

use std::io::Read;
use std::path::PathBuf;

use criterion::{BatchSize, Criterion, Throughput, criterion_group, criterion_main};
use trailwatch::alert::{Alert, SourceRef};
use trailwatch::engine::{Engine, EngineOptions};
use trailwatch::input::records::RecordSplitter;
use trailwatch::input::{Item, Limits, read_events};
use trailwatch::json::Syntax;
use trailwatch::record::Event;
use trailwatch::rules::{RuleSet, Strictness};

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// The project's CloudTrail corpus generator (`examples/gen_corpus`).
#[path = "../examples/gen_corpus/generator.rs"]
#[allow(dead_code)]
mod gen_corpus;

/// One gzip file of 10,000 generated records (seed 1), written once into
/// target/bench-data.
fn gz_file() -> Vec<u8> {
    let dir = root().join("target/bench-data");
    if !dir.join("complete-gen_corpus").exists() {
        gen_corpus::write_corpus(&gen_corpus::Options::new(1, 1, 10_000), &dir)
            .expect("the corpus generator writes into target/bench-data");
        std::fs::write(dir.join("complete-gen_corpus"), "").unwrap();
    }
    let file = trailwatch::input::local_files(&dir)
        .unwrap()
        .into_iter()
        .find(|p| p.to_string_lossy().ends_with(".json.gz"))
        .expect("a generated file");
    std::fs::read(file).unwrap()
}

fn gunzip(gz: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    flate2::read::MultiGzDecoder::new(gz)
        .read_to_end(&mut out)
        .unwrap();
    out
}

/// Each record's compact text with its top-level separators and the syntax the
/// splitter checked, as the splitter hands them to [`Event::parse_split`].
fn records(json: &[u8]) -> Vec<(Vec<u8>, Vec<u32>, Syntax)> {
    let mut split = RecordSplitter::new(json, 1 << 20);
    let mut out = Vec::new();
    let mut buf = Vec::new();
    while let Some(slot) = split.next_into(&mut buf).unwrap() {
        out.push((buf.clone(), split.separators().to_vec(), slot.syntax));
    }
    out
}

fn stages(c: &mut Criterion) {
    let gz = gz_file();
    let json = gunzip(&gz);
    let recs = records(&json);
    let rules = RuleSet::load(&root().join("rules"), Strictness::Run).unwrap();
    let mut g = c.benchmark_group("stages");
    g.sample_size(10);
    g.throughput(Throughput::Bytes(json.len() as u64));

    g.bench_function("inflate", |b| b.iter(|| gunzip(&gz).len()));
    g.bench_function("split", |b| b.iter(|| records(&json).len()));
    g.bench_function("locate fields", |b| {
        b.iter(|| {
            recs.iter().fold(0, |n, (r, seps, syntax)| {
                std::hint::black_box(Event::parse_split(r, seps, *syntax).unwrap());
                n + 1
            })
        })
    });
    // Matching parses the fields rules look at: each run starts from fresh events.
    let fresh = || -> Vec<Event> {
        recs.iter()
            .map(|(r, seps, syntax)| Event::parse_split(r, seps, *syntax).unwrap())
            .collect()
    };
    g.bench_function("match the rule pack", |b| {
        b.iter_batched(
            fresh,
            |events| {
                let mut engine = Engine::new(&rules, EngineOptions::default());
                let mut out = Vec::new();
                let mut n = 0;
                for e in &events {
                    out.clear();
                    engine.evaluate(e, &mut out);
                    n += out.len();
                }
                n
            },
            BatchSize::LargeInput,
        )
    });
    // The detections of the pack, turned into alerts and serialised as JSON lines.
    let events = fresh();
    let mut engine = Engine::new(&rules, EngineOptions::default());
    let mut detections = Vec::new();
    for (i, e) in events.iter().enumerate() {
        let mut out = Vec::new();
        engine.evaluate(e, &mut out);
        detections.extend(out.into_iter().map(|d| (i, d)));
    }
    // As `scan` writes JSON lines: straight from the event, no owned alert.
    g.bench_function("build and write alerts", |b| {
        b.iter(|| {
            let mut sink = Vec::with_capacity(64 << 20);
            for (i, d) in &detections {
                let source = SourceRef::file("bench.json.gz", *i as u64);
                Alert::with_ref(&engine.rules()[d.rule], d, &events[*i], &source, |a| {
                    a.write_json(&mut sink)
                });
                sink.push(b'\n');
            }
            sink.len()
        })
    });
    g.bench_function("whole file, no alerts built", |b| {
        b.iter(|| {
            let mut engine = Engine::new(&rules, EngineOptions::default());
            let mut out = Vec::new();
            let mut n = 0;
            read_events(&gz[..], Limits::default(), |item| {
                if let Item::Event { event, .. } = item {
                    out.clear();
                    engine.evaluate(&event, &mut out);
                    n += out.len();
                }
            })
            .unwrap();
            n
        })
    });
    g.finish();
    println!(
        "file: {} records, {:.1} MB of JSON, {:.1} MB gzip; the pack fires {} detections",
        recs.len(),
        json.len() as f64 / 1e6,
        gz.len() as f64 / 1e6,
        detections.len()
    );
}

criterion_group!(benches, stages);
criterion_main!(benches);
