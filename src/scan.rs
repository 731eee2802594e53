//! `trailwatch scan`: the offline driver. Reads local files, stdin or an S3 prefix,
//! runs every record through the engine and writes alerts; problems with single
//! records or files are reported and counted, and the scan goes on.

use std::collections::BTreeMap;
use std::io::{IsTerminal, Read, Write};
use std::path::PathBuf;
use std::time::{Duration, Instant};

use anyhow::Context;

use crate::alert::{Alert, SourceRef};
use crate::engine::{Detection, Engine, EngineOptions};
use crate::input::{self, InputSpec, Item, Limits};
use crate::output::AlertWriter;
use crate::rules::{RuleSet, Severity};

/// At most this many record errors are printed per file; all are counted.
const RECORD_ERRORS_SHOWN: u64 = 10;

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
        Ok(())
    }
}

/// One thing to read.
enum Object {
    Local(PathBuf),
    Stdin,
    S3 { bucket: String, key: String },
}

impl Object {
    fn name(&self) -> String {
        match self {
            Object::Local(p) => p.display().to_string(),
            Object::Stdin => "<stdin>".into(),
            Object::S3 { bucket, key } => format!("s3://{bucket}/{key}"),
        }
    }
}

/// Lazily built S3 access (only when an `s3://` input is given).
struct S3 {
    rt: tokio::runtime::Runtime,
    client: aws_sdk_s3::Client,
}

impl S3 {
    fn new() -> anyhow::Result<S3> {
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .enable_all()
            .build()
            .context("starting the async runtime for S3")?;
        let client = rt.block_on(input::s3::client());
        Ok(S3 { rt, client })
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
    let mut summary = Summary::default();
    let mut s3: Option<S3> = None;
    let mut objects = Vec::new();
    for spec in inputs {
        match spec {
            InputSpec::Stdin => objects.push(Object::Stdin),
            InputSpec::Path(p) => {
                for f in
                    input::local_files(p).with_context(|| format!("cannot read {}", p.display()))?
                {
                    let name = f.to_string_lossy();
                    if input::is_digest(&name) {
                        tracing::debug!(file = %name, "skipping CloudTrail digest file");
                        summary.digests_skipped += 1;
                    } else {
                        objects.push(Object::Local(f));
                    }
                }
            }
            InputSpec::S3 { bucket, prefix } => {
                if s3.is_none() {
                    s3 = Some(S3::new()?);
                }
                let s3 = s3.as_ref().expect("just built");
                for key in s3
                    .rt
                    .block_on(input::s3::list(&s3.client, bucket, prefix))?
                {
                    if input::is_digest(&key) {
                        tracing::debug!(key = %key, "skipping CloudTrail digest file");
                        summary.digests_skipped += 1;
                    } else {
                        objects.push(Object::S3 {
                            bucket: bucket.clone(),
                            key,
                        });
                    }
                }
            }
        }
    }

    let bar = (opts.progress && std::io::stderr().is_terminal()).then(|| {
        let b = indicatif::ProgressBar::new(objects.len() as u64);
        b.set_style(
            indicatif::ProgressStyle::with_template("{spinner} {pos}/{len} files  {msg}")
                .unwrap_or_else(|_| indicatif::ProgressStyle::default_bar()),
        );
        b
    });

    let mut engine = Engine::new(rules, opts.engine);
    let mut join = crate::join::DeleteJoin::default();
    let mut detections: Vec<Detection> = Vec::new();
    for obj in &objects {
        let name = obj.name();
        let reader: Box<dyn Read> = match obj {
            Object::Local(p) => match std::fs::File::open(p) {
                Ok(f) => Box::new(f),
                Err(e) => {
                    summary.files += 1;
                    summary.files_failed += 1;
                    writeln!(diag, "trailwatch: {name}: {e}")?;
                    continue;
                }
            },
            Object::Stdin => Box::new(std::io::stdin().lock()),
            Object::S3 { bucket, key } => {
                let s3 = s3.as_ref().expect("built while listing");
                match s3.rt.block_on(input::s3::open(&s3.client, bucket, key)) {
                    Ok((body, _etag)) => Box::new(tokio_util::io::SyncIoBridge::new_with_handle(
                        body.into_async_read(),
                        s3.rt.handle().clone(),
                    )),
                    Err(e) => {
                        summary.files += 1;
                        summary.files_failed += 1;
                        writeln!(diag, "trailwatch: {e:#}")?;
                        continue;
                    }
                }
            }
        };
        summary.files += 1;
        let mut write_err: Option<std::io::Error> = None;
        let mut shown = 0u64;
        let result = input::read_events(reader, opts.limits, |item| match item {
            Item::Bad { position, error } => {
                shown += 1;
                if shown <= RECORD_ERRORS_SHOWN {
                    let _ = writeln!(diag, "trailwatch: {name}: {position}: {error}");
                }
            }
            Item::Event { index, raw, event } => {
                if opts.since_ms.is_some() || opts.until_ms.is_some() {
                    let keep = event.time_ms().is_some_and(|t| {
                        opts.since_ms.is_none_or(|s| t >= s) && opts.until_ms.is_none_or(|u| t < u)
                    });
                    if !keep {
                        summary.filtered += 1;
                        return;
                    }
                }
                detections.clear();
                engine.evaluate(&event, &mut detections);
                let hold = join.observe(&event);
                for d in &detections {
                    let rule = &engine.rules()[d.rule];
                    let source = match obj {
                        Object::S3 { bucket, key } => SourceRef::object(bucket, key, index),
                        _ => SourceRef::file(&name, index),
                    };
                    let alert = Alert::new(rule, d, &event, raw, source);
                    summary.alerts += 1;
                    *summary.alerts_by_rule.entry(rule.id.clone()).or_default() += 1;
                    summary.max_severity = summary.max_severity.max(Some(rule.severity));
                    if hold {
                        let id = crate::join::delete_objects_request(&event)
                            .unwrap_or_default()
                            .to_owned();
                        join.hold(&id, alert);
                    } else if write_err.is_none() {
                        if let Err(e) = out.write(&alert) {
                            write_err = Some(e);
                        }
                    }
                }
            }
        });
        if let Some(e) = write_err {
            return Err(e).context("writing alerts");
        }
        if shown > RECORD_ERRORS_SHOWN {
            writeln!(
                diag,
                "trailwatch: {name}: {} more record errors not shown",
                shown - RECORD_ERRORS_SHOWN
            )?;
        }
        match result {
            Ok(stats) => {
                summary.records += stats.records;
                summary.record_errors += stats.record_errors;
                summary.bytes += stats.bytes;
            }
            Err(e) => {
                summary.records += e.stats.records;
                summary.record_errors += e.stats.record_errors;
                summary.bytes += e.stats.bytes;
                summary.files_failed += 1;
                writeln!(diag, "trailwatch: {name}: {e}")?;
            }
        }
        if let Some(b) = &bar {
            b.inc(1);
            let secs = started.elapsed().as_secs_f64().max(1e-9);
            b.set_message(format!(
                "{} records, {:.0} events/s",
                summary.records,
                summary.records as f64 / secs
            ));
        }
    }
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
