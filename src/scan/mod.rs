//! `trailwatch scan`: the offline driver. Reads local files, stdin or an S3 prefix
//! ([`objects`]), runs every record through the evaluator ([`crate::evaluate`]) and
//! writes alerts ([`consumer`]), reading files ahead on several threads when asked
//! ([`read_ahead`]); problems with single records or files are reported and
//! counted, and the scan goes on.

mod consumer;
mod objects;
mod read_ahead;

use std::collections::BTreeMap;
use std::io::{IsTerminal, Write};
use std::time::{Duration, Instant};

use anyhow::Context;

use crate::engine::windows::MemoryWindows;
use crate::engine::{Engine, EngineOptions};
use crate::evaluate::{Prepared, TimeRange, prepare};
use crate::input::{self, InputSpec, Item, Limits};
use crate::join::{DeleteJoin, Policy};
use crate::output::AlertWriter;
use crate::rules::{RuleSet, Severity};
use crate::state::Memory;
use consumer::Consumer;
use objects::Object;

/// How to scan.
#[derive(Debug, Clone, Default)]
pub struct ScanOptions {
    pub engine: EngineOptions,
    /// Keep only events with `eventTime` at or after this (epoch ms).
    pub since_ms: Option<i64>,
    /// Keep only events with `eventTime` before this (epoch ms).
    pub until_ms: Option<i64>,
    pub limits: Limits,
    /// Show a progress line (only when stderr is a terminal).
    pub progress: bool,
    /// Threads: with more than one, that many threads read files (a file each)
    /// ahead of the ordered alerting on the calling thread, which mostly waits; 0
    /// or 1 does everything on the calling thread.
    pub threads: usize,
    /// The output wants the DeleteObjects join rows (`--columns deleted-keys`):
    /// DeleteObjects alerts are held to the end even when no input looks like an
    /// S3 server access log.
    pub join_rows: bool,
}

impl ScanOptions {
    fn range(&self) -> TimeRange {
        TimeRange {
            since_ms: self.since_ms,
            until_ms: self.until_ms,
        }
    }
}

/// What a scan did.
#[derive(Debug, Clone, Default)]
pub struct Summary {
    pub files: u64,
    pub files_failed: u64,
    pub digests_skipped: u64,
    pub records: u64,
    pub record_errors: u64,
    /// Events outside `--since`/`--until`.
    pub filtered: u64,
    pub alerts: u64,
    pub alerts_by_rule: BTreeMap<String, u64>,
    /// Alerts per severity, indexed by `Severity as usize` (info first).
    pub alerts_by_severity: [u64; 5],
    pub max_severity: Option<Severity>,
    pub bytes: u64,
    pub elapsed: Duration,
}

impl Summary {
    /// Whether any file or record failed.
    pub fn had_errors(&self) -> bool {
        self.files_failed > 0 || self.record_errors > 0
    }

    pub fn events_per_sec(&self) -> f64 {
        self.records as f64 / self.elapsed.as_secs_f64().max(1e-9)
    }

    pub fn write(&self, w: &mut dyn Write) -> std::io::Result<()> {
        writeln!(
            w,
            "scanned {} files ({} failed, {} digest files skipped), {} records ({} record errors, {} outside the time range) in {:.2}s: {:.0} events/s, {:.1} MB/s",
            self.files,
            self.files_failed,
            self.digests_skipped,
            self.records,
            self.record_errors,
            self.filtered,
            self.elapsed.as_secs_f64(),
            self.events_per_sec(),
            self.bytes as f64 / 1e6 / self.elapsed.as_secs_f64().max(1e-9)
        )?;
        writeln!(w, "{} alerts", self.alerts)?;
        for (rule, n) in &self.alerts_by_rule {
            writeln!(w, "  {n:>8}  {rule}")?;
        }
        // Last, so that it is what a reader sees first: how much of it matters.
        let by_severity: Vec<String> = Severity::ALL
            .iter()
            .rev()
            .map(|&s| format!("{} {}", self.alerts_by_severity[s as usize], s.as_str()))
            .collect();
        writeln!(w, "alerts by severity: {}", by_severity.join(", "))?;
        Ok(())
    }
}

/// Runs a scan, writing alerts to `out` and problems and the progress line to `diag`.
pub fn run(
    rules: &RuleSet,
    inputs: &[InputSpec],
    opts: &ScanOptions,
    out: &mut dyn AlertWriter,
    diag: &mut dyn Write,
) -> anyhow::Result<Summary> {
    let started = Instant::now();
    let (objects, s3, digests_skipped) = objects::list(inputs)?;
    let summary = Summary {
        digests_skipped,
        ..Summary::default()
    };

    let bar = (opts.progress && std::io::stderr().is_terminal()).then(|| {
        let b = indicatif::ProgressBar::new(objects.len() as u64);
        b.set_style(
            indicatif::ProgressStyle::with_template("{spinner} {pos}/{len} files  {msg}")
                .unwrap_or_else(|_| indicatif::ProgressStyle::default_bar()),
        );
        b
    });

    // DeleteObjects alerts wait for the end of the scan, to carry the keys that
    // access log lines name, only when an input may be an access log: memory stays
    // flat for CloudTrail alone.
    let hold = opts.join_rows || objects.iter().any(Object::may_be_access_log);
    let state = Memory {
        windows: MemoryWindows::default(),
        join: DeleteJoin::new(Policy::Batch { hold }),
    };
    // The pure half of evaluation, shared by every reader.
    let engine = Engine::new(rules, opts.engine);
    let mut c = Consumer::new(state, summary, bar.as_ref(), started);
    if opts.threads > 1 && objects.len() > 1 {
        read_ahead::read_ahead(&mut c, &engine, opts, &objects, s3.as_ref(), out, diag)?;
    } else {
        let (render, range) = (out.renderer(), opts.range());
        let mut scratch = Vec::new();
        for obj in &objects {
            let name = obj.name();
            let reader = match objects::open(obj, s3.as_ref()) {
                Ok(r) => r,
                Err(msg) => {
                    c.open_failed(&msg, diag)?;
                    continue;
                }
            };
            let source = |index| obj.source(&name, index);
            let mut file = c.begin(&engine, render, &source, &name);
            let result = input::read_events(reader, opts.limits, |item| {
                let p = match item {
                    Item::Bad { position, error } => Prepared::Bad { position, error },
                    Item::Event { index, event } => {
                        prepare(&engine, range, render, &source, index, event, &mut scratch)
                    }
                };
                c.take(&mut file, p, out, diag);
            });
            c.end_file(file, result, out, diag)?;
        }
    }
    let mut summary = std::mem::take(&mut c.summary);
    let join = c.state.join;
    if let Some(b) = bar {
        b.finish_and_clear();
    }
    // `DeleteObjects` alerts were held until every file was read, to carry the keys
    // the access logs name.
    for a in join.finish_alerts() {
        out.write(&a).context("writing alerts")?;
    }
    out.write_join(&join.rows()).context("writing alerts")?;
    out.flush().context("writing alerts")?;
    summary.elapsed = started.elapsed();
    Ok(summary)
}
