//! `trailwatch scan`: the offline driver. Reads local files, stdin or an S3 prefix,
//! runs every record through the engine and writes alerts; problems with single
//! records or files are reported and counted, and the scan goes on.

use std::collections::BTreeMap;
use std::io::{IsTerminal, Read, Write};
use std::path::PathBuf;
use std::time::{Duration, Instant};

use anyhow::Context;

use crate::alert::{Alert, AlertRef, SourceRef};
use crate::engine::{Detection, Engine, EngineOptions, Observation};
use crate::input::{self, InputSpec, Item, Limits, Position, RECORD_ERRORS_SHOWN};
use crate::json::Syntax;
// Diagnostics name files and keys from outside: written escaped, like the logs.
use crate::logging::Escaped;
use crate::output::AlertWriter;
use crate::record::{Event, RecordError, RecordJson};
use crate::rules::{RuleSet, Severity};

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
                        tracing::debug!(file = ?name, "skipping CloudTrail digest file");
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
                        tracing::debug!(key = ?key, "skipping CloudTrail digest file");
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
        line: Vec::new(),
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
            match s3
                .rt
                .block_on(input::s3::open(&s3.client, bucket, key, None))
            {
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
    /// An alert rendered for the output (reused).
    line: Vec<u8>,
    bar: Option<&'a indicatif::ProgressBar>,
    started: Instant,
}

impl Consumer<'_> {
    fn open_failed(&mut self, msg: &str, diag: &mut dyn Write) -> std::io::Result<()> {
        self.summary.files += 1;
        self.summary.files_failed += 1;
        writeln!(diag, "{}", Escaped(msg))
    }

    fn bad(&mut self, name: &str, position: Position, error: &RecordError, diag: &mut dyn Write) {
        self.shown += 1;
        if self.shown <= RECORD_ERRORS_SHOWN {
            let line = format_args!("trailwatch: {name}: {position}: {error}");
            let _ = writeln!(diag, "{}", Escaped(line));
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
            let prebuilt = if ahead_built && !self.engine.is_windowed(d.rule) {
                built.next()
            } else {
                None
            };
            let render = out.renderer().filter(|_| !hold && prebuilt.is_none());
            if let Some(render) = render {
                // Written straight from the event: the owned alert is never built.
                let mut line = std::mem::take(&mut self.line);
                line.clear();
                let source = obj.source(name, index);
                Alert::with_ref(rule, d, event, &source, |a| render(a, &mut line));
                self.count(d.rule);
                self.emit(out, |out| out.write_rendered(&line));
                self.line = line;
                continue;
            }
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

    /// A [`Pre::Windowed`] record's turn: each matched rule's windowed state takes
    /// the observation worked out ahead; alerts built ahead go out as they are
    /// admitted, and a completed threshold builds its alert from the record's text.
    #[allow(
        clippy::too_many_arguments,
        reason = "what the reader handed over, taken apart where the loop matches it"
    )]
    fn windowed(
        &mut self,
        obj: &Object,
        name: &str,
        index: u64,
        record: Option<&RecordJson>,
        steps: Vec<Step>,
        rendered: &[u8],
        out: &mut dyn AlertWriter,
    ) {
        let mut event = None;
        for step in steps {
            let Some(d) = self.engine.record(step.rule, step.observation) else {
                continue;
            };
            self.count(d.rule);
            match step.alert {
                Some(Ready::Alert(a)) => self.write(&a, out),
                Some(Ready::Rendered(r)) => self.emit(out, |out| out.write_rendered(&rendered[r])),
                None => {
                    let event = event.get_or_insert_with(|| {
                        let text = record.expect("a record with a threshold step keeps its text");
                        Event::parse_split(text.as_str().as_bytes(), &[], Syntax::Valid)
                            .expect("a record's text parses again as it did when it was read")
                    });
                    let rule = &self.engine.rules()[d.rule];
                    let alert = Alert::new(rule, &d, event, obj.source(name, index));
                    self.write(&alert, out);
                }
            }
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
        s.alerts_by_severity[rule.severity as usize] += 1;
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
        if self.write_err.is_none()
            && let Err(e) = write(out)
        {
            self.write_err = Some(e);
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
                "trailwatch: {}: {} more record errors not shown",
                Escaped(name),
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
                writeln!(diag, "{}", Escaped(format_args!("trailwatch: {name}: {e}")))?;
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
enum Chunk<'a> {
    /// Records, and what they weigh against their reader's [`Budget`].
    Items(Vec<Pre>, usize, &'a Budget),
    OpenFailed(String),
    End(Result<input::StreamStats, input::StreamError>),
}

/// A record read (and matched against the rules' conditions) ahead of its turn.
enum Pre {
    /// A record the DeleteObjects join wants (or one without a text to parse
    /// again), handed over whole.
    Event {
        index: u64,
        event: Box<Event>,
        matched: Vec<usize>,
        /// The alerts of the matched rules that keep no state (no threshold, no
        /// suppression): they fire whenever they match, so they are built here.
        built: Vec<Alert>,
    },
    /// A record that a rule with a threshold or suppression matched: what each
    /// matched rule's windowed state needs of it, and the alerts that no threshold
    /// decides, built (or rendered into `rendered`) ahead. The record's text stays
    /// only when a threshold may complete (its alert is built then), so a reader
    /// can run far ahead in little memory.
    Windowed {
        index: u64,
        record: Option<RecordJson>,
        steps: Vec<Step>,
        rendered: Vec<u8>,
    },
    /// A record whose turn needs nothing but its ready alerts: every rule it
    /// matched is stateless and the DeleteObjects join has no interest in it. The
    /// record itself is not handed over (most records match nothing).
    Done { matched: Vec<usize>, built: Built },
    /// A record outside `--since`/`--until`.
    Filtered,
    Bad {
        position: Position,
        error: RecordError,
    },
}

impl Pre {
    /// Roughly the memory a record held ahead takes (for the [`Budget`]).
    fn weight(&self) -> usize {
        std::mem::size_of::<Pre>()
            + match self {
                Pre::Event { event, built, .. } => event.footprint() + built.len() * ALERT_WEIGHT,
                Pre::Windowed {
                    record,
                    steps,
                    rendered,
                    ..
                } => {
                    record.as_ref().map_or(0, |r| r.as_str().len())
                        + rendered.len()
                        + steps.len() * std::mem::size_of::<Step>()
                        + steps
                            .iter()
                            .filter(|s| matches!(s.alert, Some(Ready::Alert(_))))
                            .count()
                            * ALERT_WEIGHT
                }
                Pre::Done { matched, built } => {
                    matched.len() * 8
                        + match built {
                            Built::Alerts(a) => a.len() * ALERT_WEIGHT,
                            Built::Rendered(b) => b.len(),
                        }
                }
                Pre::Filtered | Pre::Bad { .. } => 0,
            }
    }
}

/// What an alert built ahead weighs: the struct, its strings and its share of the
/// record's text, roughly.
const ALERT_WEIGHT: usize = 4096;

/// One matched rule of a [`Pre::Windowed`] record.
struct Step {
    rule: usize,
    observation: Observation,
    /// The alert, when the rule has no threshold (it goes out unless suppressed).
    alert: Option<Ready>,
}

enum Ready {
    Alert(Box<Alert>),
    /// A span of the record's `rendered` bytes.
    Rendered(std::ops::Range<usize>),
}

/// The alerts of a [`Pre::Done`] record: as built, or already rendered for the
/// output (JSON lines), so that the writing thread only copies bytes.
enum Built {
    Alerts(Vec<Alert>),
    Rendered(Vec<u8>),
}

/// What a reader thread works out for one record ahead of its turn: whether it
/// is in the time range, the rules whose condition holds, what their windowed
/// state needs, and the alerts that no threshold decides (rendered when the
/// output can take them so).
fn ahead(
    engine: &Engine,
    opts: &ScanOptions,
    render: Option<fn(&AlertRef<'_>, &mut Vec<u8>)>,
    source: impl Fn(u64) -> SourceRef,
    index: u64,
    event: Event,
    scratch: &mut Vec<usize>,
) -> Pre {
    if !Consumer::in_range(opts, &event) {
        return Pre::Filtered;
    }
    // Matched in the reader's own list: what is handed over is allocated only
    // when a rule matched (most records match none), and exactly to size.
    scratch.clear();
    engine.matching(&event, scratch);
    let matched = scratch.to_vec();
    let rules = engine.rules();
    let detection = |r: usize| Detection { rule: r, hit: None };
    let build = |r: usize| Alert::new(&rules[r], &detection(r), &event, source(index));
    // Rendered straight from the event: the owned alert is never built.
    let render_into = |render: fn(&AlertRef<'_>, &mut Vec<u8>), r: usize, out: &mut Vec<u8>| {
        Alert::with_ref(&rules[r], &detection(r), &event, &source(index), |a| {
            render(a, out)
        })
    };
    // About what one rendered alert takes (it carries the record), so that a
    // record's buffer is not grown as its alerts are written.
    let line = event.raw_text().map_or(2048, str::len) + 2048;
    let all_stateless = matched.iter().all(|&r| !engine.is_windowed(r));
    if crate::join::DeleteJoin::interested(&event) || (!all_stateless && event.raw_text().is_none())
    {
        let built = matched
            .iter()
            .filter(|&&r| !engine.is_windowed(r))
            .map(|&r| build(r))
            .collect();
        return Pre::Event {
            index,
            event: Box::new(event),
            matched,
            built,
        };
    }
    if !all_stateless {
        let ready = matched.iter().filter(|&&r| rules[r].threshold.is_none());
        let mut rendered = Vec::with_capacity(render.map_or(0, |_| ready.count() * line));
        let mut keep_record = false;
        let steps = matched
            .iter()
            .map(|&r| Step {
                rule: r,
                observation: engine.observation(r, &event),
                alert: if rules[r].threshold.is_some() {
                    keep_record = true;
                    None
                } else {
                    Some(match render {
                        Some(render) => {
                            let start = rendered.len();
                            render_into(render, r, &mut rendered);
                            Ready::Rendered(start..rendered.len())
                        }
                        None => Ready::Alert(Box::new(build(r))),
                    })
                },
            })
            .collect();
        return Pre::Windowed {
            index,
            record: keep_record.then(|| event.record_json()),
            steps,
            rendered,
        };
    }
    let built = match render {
        Some(render) if !matched.is_empty() => {
            let mut bytes = Vec::with_capacity(matched.len() * line);
            matched
                .iter()
                .for_each(|&r| render_into(render, r, &mut bytes));
            Built::Rendered(bytes)
        }
        _ => Built::Alerts(matched.iter().map(|&r| build(r)).collect()),
    };
    Pre::Done { matched, built }
}

/// Records per chunk, and the memory that a reader's records may take while they
/// wait for their turn ([`Pre::weight`]). A reader on a later file than the
/// consumer's must get far enough ahead to keep its core busy until its turn: most
/// records weigh little ([`Pre::Done`] without alerts, [`Pre::Windowed`]), but a
/// file's rendered alerts are held too, and with the whole pack on S3 data events
/// they come to about as much as the file's JSON. 24 MiB holds a whole file of the
/// benchmark corpus (10,000 records, larger than most CloudTrail files) with its
/// alerts: with 12, the second reader of two waited for a third of each file, and
/// the scan took 8% longer. Memory stays bounded whatever the file sizes.
const CHUNK: usize = 128;
const BUDGET: usize = 24 << 20;

/// The memory a reader's records take until the consumer has taken them.
///
/// No deadlock: a reader waits only while records of its own are held, and those
/// belong to files up to the one it reads. When that is the consumer's file, the
/// consumer is taking them; when it is a later one, the consumer gets there.
struct Budget {
    limit: usize,
    used: std::sync::Mutex<usize>,
    freed: std::sync::Condvar,
}

impl Budget {
    fn new(limit: usize) -> Budget {
        Budget {
            limit,
            used: std::sync::Mutex::new(0),
            freed: std::sync::Condvar::new(),
        }
    }

    /// Waits until `weight` more fits (or nothing is held, so that one chunk always
    /// goes), unless `stop` says the consumer is gone.
    fn take(&self, weight: usize, stop: &std::sync::atomic::AtomicBool) {
        let mut used = self.used.lock().unwrap_or_else(|e| e.into_inner());
        while *used > 0
            && *used + weight > self.limit
            && !stop.load(std::sync::atomic::Ordering::Relaxed)
        {
            used = self.freed.wait(used).unwrap_or_else(|e| e.into_inner());
        }
        *used += weight;
    }

    fn give(&self, weight: usize) {
        let mut used = self.used.lock().unwrap_or_else(|e| e.into_inner());
        *used = used.saturating_sub(weight);
        self.freed.notify_all();
    }

    /// Wakes a reader waiting in [`Budget::take`] (after `stop` was set).
    fn wake(&self) {
        let _held = self.used.lock().unwrap_or_else(|e| e.into_inner());
        self.freed.notify_all();
    }
}

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
    use std::sync::mpsc::channel;

    // Declared before the channels, whose chunks borrow them.
    let budgets: Vec<Budget> = (0..c.opts.threads.clamp(1, objects.len()))
        .map(|_| Budget::new(BUDGET))
        .collect();
    let (txs, rxs): (Vec<_>, Vec<_>) = objects.iter().map(|_| channel()).unzip();
    let txs: Vec<Mutex<Option<std::sync::mpsc::Sender<Chunk>>>> =
        txs.into_iter().map(|t| Mutex::new(Some(t))).collect();
    let next = AtomicUsize::new(0);
    let stop = AtomicBool::new(false);
    let opts = c.opts;
    let render = out.renderer();
    std::thread::scope(|scope| {
        for budget in &budgets {
            let (next, stop, txs) = (&next, &stop, &txs);
            scope.spawn(move || {
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
                    let mut scratch = Vec::new();
                    let mut weight = 0;
                    let mut gone = false;
                    let result = input::read_events(reader, opts.limits, |item| {
                        if gone {
                            return;
                        }
                        let pre = match item {
                            Item::Bad { position, error } => Pre::Bad { position, error },
                            Item::Event { index, event } => ahead(
                                &engine,
                                opts,
                                render,
                                |index| objects[i].source(&name, index),
                                index,
                                event,
                                &mut scratch,
                            ),
                        };
                        weight += pre.weight();
                        chunk.push(pre);
                        if chunk.len() == CHUNK {
                            let full = std::mem::replace(&mut chunk, Vec::with_capacity(CHUNK));
                            budget.take(weight, stop);
                            gone = tx.send(Chunk::Items(full, weight, budget)).is_err();
                            weight = 0;
                        }
                    });
                    if !gone && !chunk.is_empty() {
                        budget.take(weight, stop);
                        gone = tx.send(Chunk::Items(chunk, weight, budget)).is_err();
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
                        Chunk::Items(items, weight, budget) => {
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
                                    Pre::Windowed {
                                        index,
                                        record,
                                        steps,
                                        rendered,
                                    } => c.windowed(
                                        obj,
                                        &name,
                                        index,
                                        record.as_ref(),
                                        steps,
                                        &rendered,
                                        out,
                                    ),
                                    Pre::Done { matched, built } => c.done(&matched, built, out),
                                    Pre::Filtered => c.summary.filtered += 1,
                                }
                            }
                            budget.give(weight);
                        }
                        Chunk::End(result) => c.end_file(&name, result, diag)?,
                    }
                }
            }
            Ok(())
        })();
        stop.store(true, Ordering::Relaxed);
        budgets.iter().for_each(Budget::wake);
        drop(rxs);
        consumed
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicBool, Ordering};
    use std::sync::mpsc::channel;

    const DEADLINE: Duration = Duration::from_secs(20);

    #[test]
    fn a_reader_within_its_budget_goes_on() {
        let b = Budget::new(10);
        let stop = AtomicBool::new(false);
        b.take(6, &stop);
        b.take(4, &stop);
        assert_eq!(*b.used.lock().unwrap(), 10);
        // Nothing held: one chunk always goes, however heavy.
        let b = Budget::new(10);
        b.take(50, &stop);
        assert_eq!(*b.used.lock().unwrap(), 50);
    }

    /// A reader waits to add 5 to a budget of 10 with 8 held; `release` must let
    /// it go on (within the deadline). Returns the budget afterwards.
    fn waiting_reader_released_by(release: impl FnOnce(&Budget, &AtomicBool), why: &str) -> Budget {
        let b = Budget::new(10);
        let stop = AtomicBool::new(false);
        b.take(8, &stop);
        let (done, finished) = channel();
        std::thread::scope(|s| {
            s.spawn(|| {
                b.take(5, &stop);
                done.send(()).unwrap();
            });
            release(&b, &stop);
            finished.recv_timeout(DEADLINE).expect(why);
        });
        b
    }

    #[test]
    fn a_reader_over_its_budget_waits_until_the_consumer_takes_its_records() {
        let b = waiting_reader_released_by(
            |b, _| b.give(8),
            "the reader goes on once the consumer took its records",
        );
        assert_eq!(*b.used.lock().unwrap(), 5);
    }

    #[test]
    fn a_waiting_reader_is_released_when_the_consumer_stops() {
        waiting_reader_released_by(
            |b, stop| {
                // The consumer gave up (an output error): nothing is given back.
                stop.store(true, Ordering::Relaxed);
                b.wake();
            },
            "a stopped consumer does not leave readers waiting",
        );
    }
}
