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
use crate::input::{self, InputSpec, Item, Limits, Position};
use crate::output::AlertWriter;
use crate::record::{Event, RecordError};
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
    /// Threads: with more than one, that many threads read files (a file each)
    /// ahead of the ordered alerting on the calling thread, which mostly waits; 0
    /// or 1 does everything on the calling thread.
    pub threads: usize,
    /// The output wants the DeleteObjects join rows (`--columns deleted-keys`):
    /// DeleteObjects alerts are held to the end even when no input looks like an
    /// S3 server access log.
    pub join_rows: bool,
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
    /// Where record `index` of this object (called `name`) comes from, for its
    /// alerts.
    fn source(&self, name: &str, index: u64) -> SourceRef {
        match self {
            Object::S3 { bucket, key } => SourceRef::object(bucket, key, index),
            _ => SourceRef::file(name, index),
        }
    }

    /// Whether the object may be an S3 server access log (those are named without
    /// an extension); CloudTrail files end in `.json.gz`, exports in `.json`,
    /// `.jsonl` or `.ndjson`.
    fn may_be_access_log(&self) -> bool {
        let name = match self {
            Object::Local(p) => p.to_string_lossy().into_owned(),
            Object::Stdin => return true,
            Object::S3 { key, .. } => key.clone(),
        };
        ![
            ".json.gz",
            ".json",
            ".jsonl",
            ".ndjson",
            ".jsonl.gz",
            ".ndjson.gz",
        ]
        .iter()
        .any(|ext| name.ends_with(ext))
    }

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

    // DeleteObjects alerts wait for the end of the scan, to carry the keys that
    // access log lines name, only when an input may be an access log: memory stays
    // flat for CloudTrail alone.
    let hold_deletes = opts.join_rows || objects.iter().any(Object::may_be_access_log);
    let mut c = Consumer {
        engine: Engine::new(rules, opts.engine),
        hold_deletes,
        join: crate::join::DeleteJoin::default(),
        detections: Vec::new(),
        summary,
        opts,
        write_err: None,
        shown: 0,
        bar: bar.as_ref(),
        started,
    };
    if opts.threads > 1 && objects.len() > 1 {
        read_ahead(&mut c, rules, &objects, s3.as_ref(), out, diag)?;
    } else {
        for obj in &objects {
            let name = obj.name();
            let reader = match open(obj, s3.as_ref()) {
                Ok(r) => r,
                Err(msg) => {
                    c.open_failed(&msg, diag)?;
                    continue;
                }
            };
            let result = input::read_events(reader, opts.limits, |item| match item {
                Item::Bad { position, error } => c.bad(&name, position, &error, diag),
                Item::Event { index, event, .. } => c.event(obj, &name, index, &event, None, out),
            });
            c.end_file(&name, result, diag)?;
        }
    }
    let Consumer {
        mut summary, join, ..
    } = c;
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

/// Opens an object for reading; `Err` is the message to print.
fn open(obj: &Object, s3: Option<&S3>) -> Result<Box<dyn Read + Send>, String> {
    match obj {
        Object::Local(p) => std::fs::File::open(p)
            .map(|f| Box::new(f) as Box<dyn Read + Send>)
            .map_err(|e| format!("trailwatch: {}: {e}", obj.name())),
        Object::Stdin => Ok(Box::new(std::io::stdin())),
        Object::S3 { bucket, key } => {
            let s3 = s3.expect("built while listing");
            match s3.rt.block_on(input::s3::open(&s3.client, bucket, key)) {
                Ok((body, _etag)) => Ok(Box::new(tokio_util::io::SyncIoBridge::new_with_handle(
                    body.into_async_read(),
                    s3.rt.handle().clone(),
                ))),
                Err(e) => Err(format!("trailwatch: {e:#}")),
            }
        }
    }
}

/// The ordered half of a scan: thresholds, suppression, the DeleteObjects join,
/// alerts and the summary, fed one file after another in input order (by the
/// calling thread, or by [`read_ahead`]'s reader threads).
struct Consumer<'a> {
    engine: Engine,
    hold_deletes: bool,
    join: crate::join::DeleteJoin,
    detections: Vec<Detection>,
    summary: Summary,
    opts: &'a ScanOptions,
    /// The first error writing alerts; the scan stops at the end of the file.
    write_err: Option<std::io::Error>,
    /// Record errors shown for the current file.
    shown: u64,
    bar: Option<&'a indicatif::ProgressBar>,
    started: Instant,
}

impl Consumer<'_> {
    fn open_failed(&mut self, msg: &str, diag: &mut dyn Write) -> std::io::Result<()> {
        self.summary.files += 1;
        self.summary.files_failed += 1;
        writeln!(diag, "{msg}")
    }

    fn bad(&mut self, name: &str, position: Position, error: &RecordError, diag: &mut dyn Write) {
        self.shown += 1;
        if self.shown <= RECORD_ERRORS_SHOWN {
            let _ = writeln!(diag, "trailwatch: {name}: {position}: {error}");
        }
    }

    /// Whether `--since`/`--until` keep the event.
    fn in_range(opts: &ScanOptions, event: &Event) -> bool {
        if opts.since_ms.is_none() && opts.until_ms.is_none() {
            return true;
        }
        event.time_ms().is_some_and(|t| {
            opts.since_ms.is_none_or(|s| t >= s) && opts.until_ms.is_none_or(|u| t < u)
        })
    }

    /// One event; `ahead` is what a reader thread already worked out: the rules
    /// whose condition holds, and the alerts of the stateless ones among them.
    fn event(
        &mut self,
        obj: &Object,
        name: &str,
        index: u64,
        event: &Event,
        ahead: Option<(&[usize], Vec<Alert>)>,
        out: &mut dyn AlertWriter,
    ) {
        if !Self::in_range(self.opts, event) {
            self.summary.filtered += 1;
            return;
        }
        self.detections.clear();
        let ahead_built = ahead.is_some();
        let mut built = match ahead {
            Some((m, built)) => {
                self.engine.apply(event, m, &mut self.detections);
                built
            }
            None => {
                self.engine.evaluate(event, &mut self.detections);
                Vec::new()
            }
        }
        .into_iter();
        let hold = self.join.observe(event) && self.hold_deletes;
        let detections = std::mem::take(&mut self.detections);
        for d in &detections {
            let rule = &self.engine.rules()[d.rule];
            let prebuilt = if ahead_built && stateless(rule, self.opts) {
                built.next()
            } else {
                None
            };
            let alert = match prebuilt {
                Some(a) => a,
                None => Alert::new(rule, d, event, obj.source(name, index)),
            };
            self.count(d.rule);
            if hold {
                let id = crate::join::delete_objects_request(event)
                    .unwrap_or_default()
                    .to_owned();
                self.join.hold(&id, alert);
            } else {
                self.write(&alert, out);
            }
        }
        self.detections = detections;
    }

    /// A [`Pre::Done`] record's turn: its rules are all stateless, so what
    /// [`Consumer::event`] would do comes down to counting and writing its alerts.
    fn done(&mut self, matched: &[usize], built: Built, out: &mut dyn AlertWriter) {
        self.engine.count_matches(matched);
        matched.iter().for_each(|&r| self.count(r));
        match built {
            Built::Alerts(alerts) => alerts.iter().for_each(|a| self.write(a, out)),
            Built::Rendered(bytes) => self.emit(out, |out| out.write_rendered(&bytes)),
        }
    }

    fn count(&mut self, rule: usize) {
        let rule = &self.engine.rules()[rule];
        let s = &mut self.summary;
        s.alerts += 1;
        match s.alerts_by_rule.get_mut(&rule.id) {
            Some(n) => *n += 1,
            None => {
                s.alerts_by_rule.insert(rule.id.clone(), 1);
            }
        }
        s.max_severity = s.max_severity.max(Some(rule.severity));
    }

    fn write(&mut self, alert: &Alert, out: &mut dyn AlertWriter) {
        self.emit(out, |out| out.write(alert));
    }

    /// Writes to the output unless an earlier write failed; the first error is
    /// kept for the end of the file.
    fn emit(
        &mut self,
        out: &mut dyn AlertWriter,
        write: impl FnOnce(&mut dyn AlertWriter) -> std::io::Result<()>,
    ) {
        if self.write_err.is_none() {
            if let Err(e) = write(out) {
                self.write_err = Some(e);
            }
        }
    }

    /// The end of a file: its counts or the error that stopped it.
    fn end_file(
        &mut self,
        name: &str,
        result: Result<input::StreamStats, input::StreamError>,
        diag: &mut dyn Write,
    ) -> anyhow::Result<()> {
        let s = &mut self.summary;
        s.files += 1;
        if let Some(e) = self.write_err.take() {
            return Err(e).context("writing alerts");
        }
        if self.shown > RECORD_ERRORS_SHOWN {
            writeln!(
                diag,
                "trailwatch: {name}: {} more record errors not shown",
                self.shown - RECORD_ERRORS_SHOWN
            )?;
        }
        self.shown = 0;
        match result {
            Ok(stats) => {
                s.records += stats.records;
                s.record_errors += stats.record_errors;
                s.bytes += stats.bytes;
            }
            Err(e) => {
                s.records += e.stats.records;
                s.record_errors += e.stats.record_errors;
                s.bytes += e.stats.bytes;
                s.files_failed += 1;
                writeln!(diag, "trailwatch: {name}: {e}")?;
            }
        }
        if let Some(b) = self.bar {
            b.inc(1);
            let secs = self.started.elapsed().as_secs_f64().max(1e-9);
            b.set_message(format!(
                "{} records, {:.0} events/s",
                s.records,
                s.records as f64 / secs
            ));
        }
        // A long scan crosses midnight: exceptions with an expiry date follow.
        self.engine.refresh_clock();
        Ok(())
    }
}

/// What a reader thread hands over for one file, in order.
enum Chunk {
    Items(Vec<Pre>),
    OpenFailed(String),
    End(Result<input::StreamStats, input::StreamError>),
}

/// A record read (and matched against the rules' conditions) ahead of its turn.
enum Pre {
    Event {
        index: u64,
        event: Event,
        matched: Vec<usize>,
        /// The alerts of the matched rules that keep no state (no threshold, no
        /// suppression): they fire whenever they match, so they are built here.
        built: Vec<Alert>,
    },
    /// A record whose turn needs nothing but its ready alerts: every rule it
    /// matched is stateless and the DeleteObjects join has no interest in it. The
    /// record itself is not handed over (most records match nothing), so a
    /// reader can run far ahead of the consumer in little memory.
    Done { matched: Vec<usize>, built: Built },
    /// A record outside `--since`/`--until`.
    Filtered,
    Bad {
        position: Position,
        error: RecordError,
    },
}

/// The alerts of a [`Pre::Done`] record: as built, or already rendered for the
/// output (JSON lines), so that the writing thread only copies bytes.
enum Built {
    Alerts(Vec<Alert>),
    Rendered(Vec<u8>),
}

/// What a reader thread works out for one record ahead of its turn: whether it
/// is in the time range, the rules whose condition holds, and the alerts of the
/// stateless ones (rendered when the output can take them so).
fn ahead(
    engine: &Engine,
    opts: &ScanOptions,
    render: Option<fn(&Alert, &mut Vec<u8>)>,
    source: impl Fn(u64) -> SourceRef,
    index: u64,
    event: Event,
) -> Pre {
    if !Consumer::in_range(opts, &event) {
        return Pre::Filtered;
    }
    let mut matched = Vec::new();
    let mut built = Vec::new();
    let mut all_stateless = true;
    engine.matching(&event, &mut matched);
    for &r in &matched {
        let rule = &engine.rules()[r];
        if stateless(rule, opts) {
            let d = Detection { rule: r, hit: None };
            built.push(Alert::new(rule, &d, &event, source(index)));
        } else {
            all_stateless = false;
        }
    }
    if !all_stateless || crate::join::DeleteJoin::interested(&event) {
        return Pre::Event {
            index,
            event,
            matched,
            built,
        };
    }
    let built = match render {
        Some(render) if !built.is_empty() => {
            let mut bytes = Vec::with_capacity(4096);
            built.iter().for_each(|a| render(a, &mut bytes));
            Built::Rendered(bytes)
        }
        _ => Built::Alerts(built),
    };
    Pre::Done { matched, built }
}

/// Whether a rule fires on every match (nothing windowed decides), so that its
/// alerts can be built ahead of their turn.
fn stateless(rule: &crate::rules::Rule, opts: &ScanOptions) -> bool {
    opts.engine.ignore_thresholds || (rule.threshold.is_none() && rule.suppress.is_none())
}

/// Records per chunk, and chunks a file may run ahead of the consumer: memory stays
/// bounded by threads x `AHEAD` x `CHUNK` records whatever the file sizes. A reader
/// on a later file than the consumer's must get far enough ahead to keep its core
/// busy until its turn; records that match nothing take a few bytes ([`Pre::Done`]).
const CHUNK: usize = 128;
const AHEAD: usize = 24;

/// Several files at once: `opts.threads` reader threads each take the next file,
/// then decompress, split, parse and match it against the rules' conditions (the
/// pure, costly part), while this thread consumes the files strictly in input
/// order. Thresholds, suppression, the join and the output therefore see exactly
/// the sequence a single thread would: the output is identical.
fn read_ahead(
    c: &mut Consumer<'_>,
    rules: &RuleSet,
    objects: &[Object],
    s3: Option<&S3>,
    out: &mut dyn AlertWriter,
    diag: &mut dyn Write,
) -> anyhow::Result<()> {
    use std::sync::Mutex;
    use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
    use std::sync::mpsc::sync_channel;

    let (txs, rxs): (Vec<_>, Vec<_>) = objects.iter().map(|_| sync_channel(AHEAD)).unzip();
    let txs: Vec<Mutex<Option<std::sync::mpsc::SyncSender<Chunk>>>> =
        txs.into_iter().map(|t| Mutex::new(Some(t))).collect();
    let next = AtomicUsize::new(0);
    let stop = AtomicBool::new(false);
    let opts = c.opts;
    let render = out.renderer();
    std::thread::scope(|scope| {
        for _ in 0..opts.threads.clamp(1, objects.len()) {
            scope.spawn(|| {
                let engine = Engine::new(rules, opts.engine);
                loop {
                    let i = next.fetch_add(1, Ordering::Relaxed);
                    if i >= objects.len() || stop.load(Ordering::Relaxed) {
                        return;
                    }
                    let tx = txs[i]
                        .lock()
                        .unwrap_or_else(|e| e.into_inner())
                        .take()
                        .expect("each file is taken once");
                    let name = objects[i].name();
                    let reader = match open(&objects[i], s3) {
                        Ok(r) => r,
                        Err(msg) => {
                            let _ = tx.send(Chunk::OpenFailed(msg));
                            continue;
                        }
                    };
                    let mut chunk = Vec::with_capacity(CHUNK);
                    let mut gone = false;
                    let result = input::read_events(reader, opts.limits, |item| {
                        if gone {
                            return;
                        }
                        chunk.push(match item {
                            Item::Bad { position, error } => Pre::Bad { position, error },
                            Item::Event { index, event } => ahead(
                                &engine,
                                opts,
                                render,
                                |index| objects[i].source(&name, index),
                                index,
                                event,
                            ),
                        });
                        if chunk.len() == CHUNK {
                            let full = std::mem::replace(&mut chunk, Vec::with_capacity(CHUNK));
                            gone = tx.send(Chunk::Items(full)).is_err();
                        }
                    });
                    if !gone && !chunk.is_empty() {
                        gone = tx.send(Chunk::Items(chunk)).is_err();
                    }
                    if gone || tx.send(Chunk::End(result)).is_err() {
                        // The consumer stopped (an output error): so do the readers.
                        stop.store(true, Ordering::Relaxed);
                        return;
                    }
                }
            });
        }
        let consumed = (|| -> anyhow::Result<()> {
            for (obj, rx) in objects.iter().zip(&rxs) {
                let name = obj.name();
                // A reader holds the sender until the file's end: the loop ends there.
                for chunk in rx {
                    match chunk {
                        Chunk::OpenFailed(msg) => c.open_failed(&msg, diag)?,
                        Chunk::Items(items) => {
                            for p in items {
                                match p {
                                    Pre::Bad { position, error } => {
                                        c.bad(&name, position, &error, diag)
                                    }
                                    Pre::Event {
                                        index,
                                        event,
                                        matched,
                                        built,
                                    } => c.event(
                                        obj,
                                        &name,
                                        index,
                                        &event,
                                        Some((&matched, built)),
                                        out,
                                    ),
                                    Pre::Done { matched, built } => c.done(&matched, built, out),
                                    Pre::Filtered => c.summary.filtered += 1,
                                }
                            }
                        }
                        Chunk::End(result) => c.end_file(&name, result, diag)?,
                    }
                }
            }
            Ok(())
        })();
        stop.store(true, Ordering::Relaxed);
        drop(rxs);
        consumed
    })
}
