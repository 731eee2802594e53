//! `trailwatch enqueue`: backfills on the fleet. Every object under an S3 prefix
//! is announced to the workers' queue as the S3 event notification S3 itself would
//! have sent, so the workers that already watch the queue read the history too,
//! with their sinks, their state and their delivery guarantees — instead of one
//! `scan` on one machine.
//!
//! With `--since`/`--until`, the CloudTrail layout
//! (`[prefix/]AWSLogs/[o-org/]ACCOUNT/CloudTrail/REGION/YYYY/MM/DD/file.json.gz`)
//! is walked with `ListObjectsV2` and `Delimiter="/"` down to the day folders, and
//! only the days that overlap [since, until) are listed: years, months and days
//! outside the range cost one folder name, not their objects. Keys that do not
//! follow the layout (a folder of manual exports, an access log prefix, another
//! service under `AWSLogs/`) are listed and kept: the range only prunes what the
//! layout dates. CloudTrail digest files and folder markers are skipped.
//!
//! The pure parts (the body, which folders to list, batching, what a batch answer
//! leaves to retry) take no AWS types and are unit-tested here; the S3 listing and
//! the SQS sends are a thin edge at the bottom.

use std::future::Future;
use std::ops::Range;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::anyhow;
use percent_encoding::{AsciiSet, NON_ALPHANUMERIC, utf8_percent_encode};
use serde::Serialize;
use time::{Date, Month, OffsetDateTime};

use crate::input;
use crate::worker::notification::decode_s3_key;

// ---------------------------------------------------------------------------
// The notification body
// ---------------------------------------------------------------------------

/// An object the listing found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Listed {
    pub key: String,
    pub size: u64,
    /// The ETag without its quotes, as S3 notifications carry it (the worker
    /// remembers completed objects by bucket, key and ETag).
    pub etag: Option<String>,
    /// When the object was written: the notification's `eventTime`.
    pub last_modified_ms: Option<i64>,
}

/// What S3 leaves as is in a notification's key: letters, digits, `-_.*` and `/`
/// (Java's form encoding, with the path separator kept). A space becomes `+`
/// (see [`encode_s3_key`]), so a literal `+` must be escaped.
const S3_KEY_KEEP: &AsciiSet = &NON_ALPHANUMERIC
    .remove(b'-')
    .remove(b'_')
    .remove(b'.')
    .remove(b'*')
    .remove(b'/');

/// Encodes a key the way S3 event notifications do: spaces as `+`, then every
/// other byte outside [`S3_KEY_KEEP`] as `%XX` of its UTF-8. The inverse of
/// [`crate::worker::notification::decode_s3_key`].
pub fn encode_s3_key(key: &str) -> String {
    key.split(' ')
        .map(|part| utf8_percent_encode(part, S3_KEY_KEEP).to_string())
        .collect::<Vec<_>>()
        .join("+")
}

/// The ARN partition of a region: buckets in China and GovCloud have their own.
fn partition(region: &str) -> &'static str {
    if region.starts_with("cn-") {
        "aws-cn"
    } else if region.starts_with("us-gov-") {
        "aws-us-gov"
    } else {
        "aws"
    }
}

/// `eventTime` as S3 writes it: UTC with milliseconds.
fn event_time(ms: i64) -> String {
    let t = OffsetDateTime::from_unix_timestamp_nanos(i128::from(ms) * 1_000_000)
        .unwrap_or(OffsetDateTime::UNIX_EPOCH);
    t.format(time::macros::format_description!(
        "[year]-[month]-[day]T[hour]:[minute]:[second].[subsecond digits:3]Z"
    ))
    .unwrap_or_default()
}

#[derive(Serialize)]
struct Notification<'a> {
    #[serde(rename = "Records")]
    records: [Record<'a>; 1],
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct Record<'a> {
    event_version: &'static str,
    event_source: &'static str,
    aws_region: &'a str,
    event_time: String,
    event_name: &'static str,
    s3: Entity<'a>,
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct Entity<'a> {
    s3_schema_version: &'static str,
    /// Real notifications name the bucket's notification configuration here; this
    /// one says who sent the message, for whoever reads the queue.
    configuration_id: &'static str,
    bucket: Bucket<'a>,
    object: Object<'a>,
}

#[derive(Serialize)]
struct Bucket<'a> {
    name: &'a str,
    arn: String,
}

#[derive(Serialize)]
struct Object<'a> {
    key: String,
    size: u64,
    #[serde(rename = "eTag", skip_serializing_if = "Option::is_none")]
    etag: Option<&'a str>,
}

/// The message body for one object: an `ObjectCreated:Put` record shaped as S3
/// sends it, so the worker treats a backfill exactly like a new file. `now_ms`
/// stands in for an object without a modification time.
pub fn notification_body(bucket: &str, region: &str, obj: &Listed, now_ms: i64) -> String {
    let body = Notification {
        records: [Record {
            event_version: "2.1",
            event_source: "aws:s3",
            aws_region: region,
            event_time: event_time(obj.last_modified_ms.unwrap_or(now_ms)),
            event_name: "ObjectCreated:Put",
            s3: Entity {
                s3_schema_version: "1.0",
                configuration_id: "trailwatch-enqueue",
                bucket: Bucket {
                    name: bucket,
                    arn: format!("arn:{}:s3:::{bucket}", partition(region)),
                },
                object: Object {
                    key: encode_s3_key(&obj.key),
                    size: obj.size,
                    etag: obj.etag.as_deref(),
                },
            },
        }],
    };
    serde_json::to_string(&body).expect("plain strings and numbers serialise")
}

// ---------------------------------------------------------------------------
// Which folders to list
// ---------------------------------------------------------------------------

/// `--since`/`--until` as epoch milliseconds: [since, until), open where absent.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Window {
    pub since_ms: Option<i64>,
    pub until_ms: Option<i64>,
}

impl Window {
    /// No bound: nothing to prune, so the prefix is listed in one pass.
    pub fn is_open(&self) -> bool {
        self.since_ms.is_none() && self.until_ms.is_none()
    }

    /// Whether [start, end) meets the window.
    fn overlaps(&self, span: Range<i64>) -> bool {
        self.since_ms.is_none_or(|s| span.end > s) && self.until_ms.is_none_or(|u| span.start < u)
    }
}

/// A dated folder of the CloudTrail layout.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Dated {
    Year(i32),
    Month(i32, Month),
    Day(Date),
}

impl Dated {
    /// The milliseconds the folder's files were delivered in (UTC).
    fn span(self) -> Range<i64> {
        let (first, next) = match self {
            Dated::Year(y) => (ymd(y, Month::January, 1), ymd(y + 1, Month::January, 1)),
            Dated::Month(y, m) => {
                let next_year = if m == Month::December { y + 1 } else { y };
                (ymd(y, m, 1), ymd(next_year, m.next(), 1))
            }
            Dated::Day(d) => (Some(d), d.next_day()),
        };
        let ms = |d: Option<Date>, edge: i64| {
            d.map_or(edge, |d| d.midnight().assume_utc().unix_timestamp() * 1000)
        };
        ms(first, i64::MIN)..ms(next, i64::MAX)
    }
}

fn ymd(y: i32, m: Month, d: u8) -> Option<Date> {
    Date::from_calendar_date(y, m, d).ok()
}

/// Where a folder sits in the CloudTrail layout.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Place {
    /// Above the dates (a custom prefix, `AWSLogs/`, an account, `CloudTrail/`, a
    /// region): what is below is not known until it is listed.
    Above,
    /// A year, month or day folder (or a folder inside a day).
    Dated(Dated),
    /// `CloudTrail-Digest/`: integrity hashes, not events.
    Digest,
    /// A folder that breaks the layout: not dated, so kept whole.
    Outside,
}

/// The layout's levels below `AWSLogs/` (after an optional `o-` organization id).
#[derive(Clone, Copy)]
enum Level {
    Account,
    Service,
    Region,
    Year,
    Month,
    Day,
}

const LEVELS: [Level; 6] = [
    Level::Account,
    Level::Service,
    Level::Region,
    Level::Year,
    Level::Month,
    Level::Day,
];

/// Whether `s` is exactly `n` ASCII digits.
fn is_digits(s: &str, n: usize) -> bool {
    s.len() == n && s.bytes().all(|b| b.is_ascii_digit())
}

/// The value of a date segment of exactly `n` digits (a year, month or day).
fn digits(s: &str, n: usize) -> Option<u16> {
    is_digits(s, n).then(|| s.parse().ok()).flatten()
}

/// An organization id: `o-` and 10 to 32 lowercase letters or digits.
fn is_org(s: &str) -> bool {
    s.strip_prefix("o-").is_some_and(|id| {
        (10..=32).contains(&id.len())
            && id
                .bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit())
    })
}

/// Classifies a folder (a key prefix ending in `/`, or `""` for the bucket) by
/// the CloudTrail layout. Before an `AWSLogs` segment everything is [`Place::Above`]
/// (trails may write under a custom prefix of any depth).
pub fn place(folder: &str) -> Place {
    let segments: Vec<&str> = folder.split('/').filter(|s| !s.is_empty()).collect();
    let Some(at) = segments.iter().position(|s| *s == "AWSLogs") else {
        return Place::Above;
    };
    let mut rest = &segments[at + 1..];
    if let [org, tail @ ..] = rest
        && is_org(org)
    {
        rest = tail;
    }
    let (mut year, mut month) = (0, Month::January);
    let mut dated = None;
    for (segment, level) in rest.iter().zip(LEVELS) {
        match level {
            Level::Account if !is_digits(segment, 12) => return Place::Outside,
            Level::Service if segment.starts_with("CloudTrail-Digest") => return Place::Digest,
            Level::Service if !matches!(*segment, "CloudTrail" | "CloudTrail-Insight") => {
                return Place::Outside;
            }
            Level::Account | Level::Service | Level::Region => {}
            Level::Year => match digits(segment, 4) {
                Some(y) => {
                    year = i32::from(y);
                    dated = Some(Dated::Year(year));
                }
                None => return Place::Outside,
            },
            Level::Month => match digits(segment, 2)
                .and_then(|m| u8::try_from(m).ok().and_then(|m| Month::try_from(m).ok()))
            {
                Some(m) => {
                    month = m;
                    dated = Some(Dated::Month(year, m));
                }
                None => return Place::Outside,
            },
            Level::Day => {
                match digits(segment, 2).and_then(|d| ymd(year, month, u8::try_from(d).ok()?)) {
                    Some(d) => dated = Some(Dated::Day(d)),
                    None => return Place::Outside,
                }
            }
        }
    }
    dated.map_or(Place::Above, Place::Dated)
}

/// Why a folder was not listed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Pruned {
    Day,
    Month,
    Year,
    Digests,
}

/// What to do with a folder of the walk.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Step {
    /// List it one level at a time (`Delimiter="/"`): its folders decide.
    Descend,
    /// List everything under it in one pass.
    ListAll,
    /// Do not list it.
    Skip(Pruned),
}

/// What to do with `folder` given the window: days in the window are listed,
/// years and months in it descended into, dated folders outside it skipped,
/// folders outside the layout listed whole.
pub fn step(folder: &str, window: &Window) -> Step {
    match place(folder) {
        Place::Above => Step::Descend,
        Place::Outside => Step::ListAll,
        Place::Digest => Step::Skip(Pruned::Digests),
        Place::Dated(d) if !window.overlaps(d.span()) => Step::Skip(match d {
            Dated::Year(_) => Pruned::Year,
            Dated::Month(..) => Pruned::Month,
            Dated::Day(_) => Pruned::Day,
        }),
        Place::Dated(Dated::Day(_)) => Step::ListAll,
        Place::Dated(_) => Step::Descend,
    }
}

/// The first step for the prefix the user gave. A prefix that stops inside a
/// segment (`.../2024/11/0`) is judged by the folder it is in, so a prefix into
/// a day outside the window lists nothing.
pub fn first_step(prefix: &str, window: &Window) -> Step {
    if window.is_open() {
        return Step::ListAll;
    }
    let folder = &prefix[..prefix.rfind('/').map_or(0, |i| i + 1)];
    step(folder, window)
}

// ---------------------------------------------------------------------------
// What is kept, what was skipped
// ---------------------------------------------------------------------------

/// What the walk did not send, by reason.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Skipped {
    /// Day, month and year folders outside the window (not listed).
    pub days: u64,
    pub months: u64,
    pub years: u64,
    /// `CloudTrail-Digest/` folders (not listed) and digest files (listed).
    pub digest_folders: u64,
    pub digest_files: u64,
    /// Zero-byte "folder" objects (keys ending in `/`), which are not log files.
    pub folder_markers: u64,
}

impl Skipped {
    pub fn pruned(&mut self, why: Pruned) {
        match why {
            Pruned::Day => self.days += 1,
            Pruned::Month => self.months += 1,
            Pruned::Year => self.years += 1,
            Pruned::Digests => self.digest_folders += 1,
        }
    }

    /// Keeps `obj` unless it is a folder marker or a digest file.
    pub fn admit(&mut self, obj: Listed, into: &mut Vec<Listed>) {
        if obj.key.ends_with('/') {
            self.folder_markers += 1;
        } else if input::is_digest(&obj.key) {
            self.digest_files += 1;
        } else {
            into.push(obj);
        }
    }

    /// "2 days, 1 month outside --since/--until, 1 digest folder", or "" when
    /// nothing was skipped.
    pub fn describe(&self) -> String {
        let n = |count: u64, one: &str, many: &str| {
            (count > 0).then(|| format!("{count} {}", if count == 1 { one } else { many }))
        };
        let dated: Vec<String> = [
            n(self.days, "day", "days"),
            n(self.months, "month", "months"),
            n(self.years, "year", "years"),
        ]
        .into_iter()
        .flatten()
        .collect();
        let mut parts = Vec::new();
        if !dated.is_empty() {
            parts.push(format!("{} outside --since/--until", dated.join(", ")));
        }
        parts.extend(
            [
                n(self.digest_folders, "digest folder", "digest folders"),
                n(self.digest_files, "digest file", "digest files"),
                n(self.folder_markers, "folder marker", "folder markers"),
            ]
            .into_iter()
            .flatten(),
        );
        parts.join(", ")
    }
}

/// The final line on stdout.
pub fn summary_line(
    objects: u64,
    bytes: u64,
    queue: &str,
    elapsed: Duration,
    skipped: &Skipped,
) -> String {
    let mut line = format!(
        "enqueued {objects} objects ({bytes} bytes) to {queue} in {:.1} s",
        elapsed.as_secs_f64()
    );
    let skipped = skipped.describe();
    if !skipped.is_empty() {
        line.push_str("; skipped ");
        line.push_str(&skipped);
    }
    line
}

// ---------------------------------------------------------------------------
// Batching and retries
// ---------------------------------------------------------------------------

/// What SendMessageBatch takes in one call: ten messages, 256 KiB of them in all.
const BATCH_ENTRIES: usize = 10;
const BATCH_BYTES: usize = 256 * 1024;

/// Consecutive runs of messages (by body length) for SendMessageBatch calls: at
/// most [`BATCH_ENTRIES`] and [`BATCH_BYTES`] each; a message that weighs more
/// goes alone (SQS then says why it was refused).
pub fn batches(weights: &[usize]) -> Vec<Range<usize>> {
    let mut out = Vec::new();
    let mut start = 0;
    let mut bytes = 0;
    for (i, &w) in weights.iter().enumerate() {
        if i > start && (i - start == BATCH_ENTRIES || bytes + w > BATCH_BYTES) {
            out.push(start..i);
            start = i;
            bytes = 0;
        }
        bytes += w;
    }
    if start < weights.len() {
        out.push(start..weights.len());
    }
    out
}

/// One entry SendMessageBatch reported as `Failed` (by object index).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Failure {
    pub index: usize,
    pub reason: String,
    /// SQS blames the request (a malformed or oversized message): sending it again
    /// fails the same way, so it is not retried.
    pub sender_fault: bool,
}

/// What one SendMessageBatch call answered.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Answer {
    pub accepted: Vec<usize>,
    pub failed: Vec<Failure>,
}

/// A call that got no per-entry answer (throttled, unreachable, refused).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CallFailed {
    pub message: String,
    /// Retrying cannot help (access denied, no such queue): stop at once.
    pub permanent: bool,
}

/// An object that was not sent, and why.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Unsent {
    pub index: usize,
    pub reason: String,
}

/// Sorts a batch's pending entries by the answer: those to send again, and those
/// given up on (refused as the sender's fault). An entry the answer does not
/// mention was not sent: it is retried.
pub fn sort_out(pending: &[usize], answer: &Answer) -> (Vec<Unsent>, Vec<Unsent>) {
    let (mut again, mut refused) = (Vec::new(), Vec::new());
    for &index in pending {
        if answer.accepted.contains(&index) {
            continue;
        }
        match answer.failed.iter().find(|f| f.index == index) {
            Some(f) if f.sender_fault => refused.push(Unsent {
                index,
                reason: f.reason.clone(),
            }),
            Some(f) => again.push(Unsent {
                index,
                reason: f.reason.clone(),
            }),
            None => again.push(Unsent {
                index,
                reason: "no result for the entry".into(),
            }),
        }
    }
    (again, refused)
}

/// How often and how patiently a batch is sent.
#[derive(Clone, Copy)]
pub struct Retry {
    pub max_attempts: u32,
    /// The pause after attempt n (1-based).
    pub delay: fn(u32) -> Duration,
}

impl Default for Retry {
    fn default() -> Retry {
        Retry {
            max_attempts: 5,
            delay: crate::retry::backoff,
        }
    }
}

/// Sends one batch until every entry is accepted, refused, or out of attempts;
/// each retry sends only the entries still pending. `Ok` holds the entries that
/// were not sent; `Err` means the queue itself failed (every attempt, or once for
/// good) and nothing more should be tried.
pub async fn send_batch<F, Fut>(
    batch: Vec<usize>,
    retry: Retry,
    mut send: F,
) -> Result<Vec<Unsent>, CallFailed>
where
    F: FnMut(Vec<usize>) -> Fut,
    Fut: Future<Output = Result<Answer, CallFailed>>,
{
    let mut pending: Vec<Unsent> = Vec::new();
    let mut indices = batch;
    let mut given_up = Vec::new();
    for attempt in 1..=retry.max_attempts {
        match send(indices.clone()).await {
            Ok(answer) => {
                let (again, refused) = sort_out(&indices, &answer);
                given_up.extend(refused);
                pending = again;
                if pending.is_empty() {
                    return Ok(given_up);
                }
                indices = pending.iter().map(|u| u.index).collect();
            }
            Err(e) if e.permanent => return Err(e),
            Err(e) if attempt == retry.max_attempts => {
                return Err(CallFailed {
                    message: format!("{} (after {attempt} attempts)", e.message),
                    permanent: false,
                });
            }
            Err(_) => {}
        }
        if attempt < retry.max_attempts {
            tokio::time::sleep((retry.delay)(attempt)).await;
        }
    }
    let attempts = retry.max_attempts;
    given_up.extend(pending.into_iter().map(|u| Unsent {
        reason: format!("{} (after {attempts} attempts)", u.reason),
        ..u
    }));
    Ok(given_up)
}

// ---------------------------------------------------------------------------
// The AWS edge
// ---------------------------------------------------------------------------

/// What `trailwatch enqueue` was asked to do.
#[derive(Debug, Clone)]
pub struct Options {
    pub queue_url: String,
    pub bucket: String,
    pub prefix: String,
    pub window: Window,
    /// Show a progress bar (only drawn when stderr is a terminal).
    pub progress: bool,
}

/// How a run ended: the counts of the final line, and what was not sent.
#[derive(Debug, Default)]
pub struct Report {
    pub sent: u64,
    pub bytes: u64,
    pub listed: u64,
    pub skipped: Skipped,
    /// Objects given up on (each with its key and why).
    pub unsent: Vec<(String, String)>,
    /// Why sending stopped early, when it did: the objects not confirmed sent are
    /// `listed - sent`.
    pub stopped: Option<String>,
    pub elapsed: Duration,
}

impl Report {
    pub fn summary_line(&self, queue: &str) -> String {
        summary_line(self.sent, self.bytes, queue, self.elapsed, &self.skipped)
    }

    /// The error for a run that did not send everything, or `None`. A partial run
    /// says how to send the rest: objects already sent go again, which costs a
    /// second evaluation but no new alert ids.
    pub fn failure(&self, queue: &str, bucket: &str) -> Option<String> {
        let missing = self.listed - self.sent;
        if missing == 0 {
            return None;
        }
        let why = match (&self.stopped, self.unsent.first()) {
            (Some(stop), _) => format!("sending stopped: {stop}"),
            (None, Some((key, reason))) => format!("the first: s3://{bucket}/{key}: {reason}"),
            (None, None) => "no answer from SQS".into(),
        };
        let mut e = format!(
            "{missing} of {} objects were not sent to {queue} ({why})",
            self.listed
        );
        if self.sent > 0 {
            e.push_str(
                "; rerunning with a narrower prefix or --since/--until sends them again (an \
                 object sent twice is evaluated twice, with the same alert ids)",
            );
        }
        Some(e)
    }
}

/// Batches sent at once: one call at a time caps a backfill at a few hundred
/// objects a second.
const SENDS_IN_FLIGHT: usize = 8;

/// Lists the prefix (pruned by the window), then sends a notification per object.
pub async fn run(opts: &Options, aws: &aws_config::SdkConfig) -> anyhow::Result<Report> {
    let started = Instant::now();
    let s3 = crate::aws::s3_client(aws);
    let sqs = aws_sdk_sqs::Client::new(aws);
    let bar = progress_bar(opts.progress);
    let (objects, skipped) = walk(&s3, opts, bar.as_ref()).await?;
    let region = aws.region().map_or("us-east-1", |r| r.as_ref());
    let now_ms = OffsetDateTime::now_utc().unix_timestamp() * 1000;
    let bodies: Vec<String> = objects
        .iter()
        .map(|o| notification_body(&opts.bucket, region, o, now_ms))
        .collect();
    if let Some(b) = &bar {
        b.set_length(objects.len() as u64);
        b.set_position(0);
        b.set_style(bar_style("{bar:40} {pos}/{len} objects sent  {msg}"));
    }
    let mut report = send_all(&sqs, &opts.queue_url, &objects, bodies, bar.as_ref()).await;
    if let Some(b) = bar {
        b.finish_and_clear();
    }
    report.skipped = skipped;
    report.elapsed = started.elapsed();
    Ok(report)
}

fn bar_style(template: &str) -> indicatif::ProgressStyle {
    indicatif::ProgressStyle::with_template(template)
        .unwrap_or_else(|_| indicatif::ProgressStyle::default_bar())
}

fn progress_bar(wanted: bool) -> Option<indicatif::ProgressBar> {
    use std::io::IsTerminal;
    (wanted && std::io::stderr().is_terminal()).then(|| {
        let b = indicatif::ProgressBar::new_spinner();
        b.set_style(bar_style("{spinner} listing: {pos} objects  {msg}"));
        b.enable_steady_tick(Duration::from_millis(200));
        b
    })
}

/// Every object to send, sorted by key, and what was skipped.
async fn walk(
    s3: &aws_sdk_s3::Client,
    opts: &Options,
    bar: Option<&indicatif::ProgressBar>,
) -> anyhow::Result<(Vec<Listed>, Skipped)> {
    let mut skipped = Skipped::default();
    let mut kept = Vec::new();
    let mut todo = vec![(opts.prefix.clone(), first_step(&opts.prefix, &opts.window))];
    while let Some((prefix, what)) = todo.pop() {
        let delimited = match what {
            Step::Skip(why) => {
                skipped.pruned(why);
                continue;
            }
            Step::Descend => true,
            Step::ListAll => false,
        };
        if let Some(b) = bar {
            b.set_message(prefix.clone());
        }
        let (objects, folders) = list_level(s3, &opts.bucket, &prefix, delimited).await?;
        for obj in objects {
            skipped.admit(obj, &mut kept);
        }
        if let Some(b) = bar {
            b.set_position(kept.len() as u64);
        }
        todo.extend(folders.into_iter().rev().map(|f| {
            let s = step(&f, &opts.window);
            (f, s)
        }));
    }
    kept.sort_by(|a, b| a.key.cmp(&b.key));
    Ok((kept, skipped))
}

/// One `ListObjectsV2` walk of `prefix` (every page): its objects and, with the
/// delimiter, its folders. Keys are asked for URL-encoded and decoded here: a key
/// with a control character (which XML cannot carry) would otherwise make the
/// whole listing unreadable, and whoever can write to the bucket could stop
/// backfills with one object.
async fn list_level(
    s3: &aws_sdk_s3::Client,
    bucket: &str,
    prefix: &str,
    delimited: bool,
) -> anyhow::Result<(Vec<Listed>, Vec<String>)> {
    let mut pages = s3
        .list_objects_v2()
        .bucket(bucket)
        .prefix(prefix)
        .set_delimiter(delimited.then(|| "/".to_owned()))
        .encoding_type(aws_sdk_s3::types::EncodingType::Url)
        .into_paginator()
        .send();
    let (mut objects, mut folders) = (Vec::new(), Vec::new());
    while let Some(page) = pages.next().await {
        let page = page.map_err(|e| {
            let hint = match crate::aws::error_code(&e) {
                Some("AccessDenied") => "; the caller needs s3:ListBucket on the bucket",
                _ => "",
            };
            anyhow!(
                "listing s3://{bucket}/{prefix}: {}{hint}",
                crate::aws::error_text(&e)
            )
        })?;
        objects.extend(page.contents().iter().filter_map(|o| {
            Some(Listed {
                key: decode_s3_key(o.key()?),
                size: o.size().and_then(|s| u64::try_from(s).ok()).unwrap_or(0),
                etag: o.e_tag().map(|e| e.trim_matches('"').to_owned()),
                last_modified_ms: o.last_modified().and_then(|t| t.to_millis().ok()),
            })
        }));
        folders.extend(
            page.common_prefixes()
                .iter()
                .filter_map(|p| p.prefix().map(decode_s3_key)),
        );
    }
    Ok((objects, folders))
}

/// Sends every body, [`SENDS_IN_FLIGHT`] batches at a time, and counts what went.
async fn send_all(
    sqs: &aws_sdk_sqs::Client,
    queue: &str,
    objects: &[Listed],
    bodies: Vec<String>,
    bar: Option<&indicatif::ProgressBar>,
) -> Report {
    let weights: Vec<usize> = bodies.iter().map(String::len).collect();
    let bodies = Arc::new(bodies);
    let mut report = Report {
        listed: objects.len() as u64,
        ..Report::default()
    };
    let mut todo = batches(&weights).into_iter();
    let mut running = tokio::task::JoinSet::new();
    loop {
        while report.stopped.is_none() && running.len() < SENDS_IN_FLIGHT {
            let Some(batch) = todo.next() else { break };
            let (sqs, queue, bodies) = (sqs.clone(), queue.to_owned(), bodies.clone());
            running.spawn(async move {
                let indices: Vec<usize> = batch.clone().collect();
                let sent = send_batch(indices, Retry::default(), |pending| {
                    call(sqs.clone(), queue.clone(), bodies.clone(), pending)
                })
                .await;
                (batch, sent)
            });
        }
        let Some(joined) = running.join_next().await else {
            break;
        };
        let (batch, sent) = match joined {
            Ok(done) => done,
            Err(e) => {
                report
                    .stopped
                    .get_or_insert_with(|| format!("a send task failed: {e}"));
                continue;
            }
        };
        match sent {
            Ok(unsent) => {
                let accepted = batch
                    .clone()
                    .filter(|i| !unsent.iter().any(|u| u.index == *i));
                for i in accepted {
                    report.sent += 1;
                    report.bytes += objects[i].size;
                }
                report.unsent.extend(
                    unsent
                        .into_iter()
                        .map(|u| (objects[u.index].key.clone(), u.reason)),
                );
                if let Some(b) = bar {
                    b.inc(batch.len() as u64);
                }
            }
            Err(e) => {
                report.stopped.get_or_insert(e.message);
                running.abort_all();
            }
        }
    }
    report
}

/// One SendMessageBatch call with the entries `pending` (ids are object indices).
async fn call(
    sqs: aws_sdk_sqs::Client,
    queue: String,
    bodies: Arc<Vec<String>>,
    pending: Vec<usize>,
) -> Result<Answer, CallFailed> {
    use aws_sdk_sqs::types::SendMessageBatchRequestEntry;
    let entries = pending
        .iter()
        .map(|&i| {
            SendMessageBatchRequestEntry::builder()
                .id(i.to_string())
                .message_body(&bodies[i])
                .build()
                .expect("id and body are set")
        })
        .collect();
    let out = sqs
        .send_message_batch()
        .queue_url(&queue)
        .set_entries(Some(entries))
        .send()
        .await
        .map_err(|e| call_failed(&queue, &e))?;
    Ok(Answer {
        accepted: out
            .successful()
            .iter()
            .filter_map(|s| s.id().parse().ok())
            .collect(),
        failed: out
            .failed()
            .iter()
            .filter_map(|f| {
                Some(Failure {
                    index: f.id().parse().ok()?,
                    reason: match f.message() {
                        Some(m) => format!("{}: {m}", f.code()),
                        None => f.code().to_owned(),
                    },
                    sender_fault: f.sender_fault(),
                })
            })
            .collect(),
    })
}

/// A failed call, with what to do about the failures that retrying cannot fix.
fn call_failed<E>(
    queue: &str,
    e: &aws_sdk_sqs::error::SdkError<E, aws_sdk_s3::config::http::HttpResponse>,
) -> CallFailed
where
    E: aws_sdk_sqs::error::ProvideErrorMetadata + std::error::Error + 'static,
{
    let text = crate::aws::error_text(e);
    let code = crate::aws::error_code(e).unwrap_or_default();
    let hint = if code.contains("AccessDenied") {
        Some(
            "the queue policy must let your principal send: add its ARN to the stack's \
             BackfillPrincipalArns parameter, and allow sqs:SendMessage in its IAM policy",
        )
    } else if code.contains("NonExistentQueue") || code.contains("QueueDoesNotExist") {
        Some("check --queue-url (the queue's URL, as `aws sqs get-queue-url` prints it)")
    } else {
        None
    };
    let text = text.trim_end_matches('.');
    CallFailed {
        message: match hint {
            Some(h) => format!("SendMessageBatch to {queue}: {text}; {h}"),
            None => format!("SendMessageBatch to {queue}: {text}"),
        },
        permanent: hint.is_some(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::worker::notification::{Notification, parse};

    fn listed(key: &str) -> Listed {
        Listed {
            key: key.to_owned(),
            size: 1234,
            etag: Some("0123abcd".into()),
            last_modified_ms: Some(1_730_801_700_000),
        }
    }

    /// What S3 sends for a key, and what the worker reads back: the same key,
    /// bucket, size and ETag, for spaces, `+`, `%` and non-ASCII alike.
    #[test]
    fn bodies_round_trip_through_the_worker_parser() {
        for key in [
            "AWSLogs/111122223333/CloudTrail/us-east-1/2024/11/05/a.json.gz",
            "manual exports/with space.json.gz",
            "plus+sign/and%percent%2B.json.gz",
            "café/✓ ü 日本.json.gz",
            "odd:chars=(1)&~'!\"#.json",
        ] {
            let body = notification_body("trail-logs", "eu-west-1", &listed(key), 0);
            let Ok(Notification::Objects(objects)) = parse(&body) else {
                panic!("{body} is not read as objects");
            };
            assert_eq!(objects.len(), 1);
            let o = &objects[0];
            assert_eq!(
                (o.bucket.as_str(), o.key.as_str()),
                ("trail-logs", key),
                "{body}"
            );
            assert_eq!((o.size, o.etag.as_deref()), (Some(1234), Some("0123abcd")));
        }
    }

    #[test]
    fn keys_are_encoded_as_s3_encodes_them() {
        assert_eq!(encode_s3_key("a b+c%d/é.json"), "a+b%2Bc%25d/%C3%A9.json");
        assert_eq!(
            encode_s3_key("AWSLogs/1/CloudTrail/x_y-z.json.gz"),
            "AWSLogs/1/CloudTrail/x_y-z.json.gz"
        );
        assert_eq!(encode_s3_key("t=10:00"), "t%3D10%3A00");
    }

    #[test]
    fn the_body_has_the_shape_s3_sends() {
        let body = notification_body("trail-logs", "cn-north-1", &listed("k"), 0);
        let v: serde_json::Value = serde_json::from_str(&body).unwrap();
        let r = &v["Records"][0];
        assert_eq!(r["eventVersion"], "2.1");
        assert_eq!(r["eventSource"], "aws:s3");
        assert_eq!(r["awsRegion"], "cn-north-1");
        assert_eq!(r["eventTime"], "2024-11-05T10:15:00.000Z");
        assert_eq!(r["eventName"], "ObjectCreated:Put");
        assert_eq!(r["s3"]["s3SchemaVersion"], "1.0");
        assert_eq!(r["s3"]["bucket"]["name"], "trail-logs");
        assert_eq!(r["s3"]["bucket"]["arn"], "arn:aws-cn:s3:::trail-logs");
        assert_eq!(r["s3"]["object"]["key"], "k");
        assert_eq!(r["s3"]["object"]["size"], 1234);
        assert_eq!(r["s3"]["object"]["eTag"], "0123abcd");
        let no_time = Listed {
            last_modified_ms: None,
            etag: None,
            ..listed("k")
        };
        let v: serde_json::Value =
            serde_json::from_str(&notification_body("b", "us-east-1", &no_time, 0)).unwrap();
        assert_eq!(v["Records"][0]["eventTime"], "1970-01-01T00:00:00.000Z");
        assert!(v["Records"][0]["s3"]["object"].get("eTag").is_none());
    }

    fn day(y: i32, m: u8, d: u8) -> Place {
        Place::Dated(Dated::Day(
            Date::from_calendar_date(y, Month::try_from(m).unwrap(), d).unwrap(),
        ))
    }

    #[test]
    fn folders_are_placed_in_the_cloudtrail_layout() {
        let base = "AWSLogs/111122223333/CloudTrail/us-east-1/";
        assert_eq!(place(""), Place::Above);
        assert_eq!(place("custom/prefix/"), Place::Above);
        assert_eq!(place("AWSLogs/"), Place::Above);
        assert_eq!(place("AWSLogs/o-abcdef1234/"), Place::Above);
        assert_eq!(place(base), Place::Above);
        assert_eq!(
            place(&format!("{base}2024/")),
            Place::Dated(Dated::Year(2024))
        );
        assert_eq!(
            place(&format!("{base}2024/11/")),
            Place::Dated(Dated::Month(2024, Month::November))
        );
        assert_eq!(place(&format!("{base}2024/11/05/")), day(2024, 11, 5));
        assert_eq!(
            place(&format!("{base}2024/11/05/deeper/")),
            day(2024, 11, 5)
        );
        assert_eq!(
            place("trail/AWSLogs/o-abcdef1234/111122223333/CloudTrail/eu-west-1/2024/02/29/"),
            day(2024, 2, 29)
        );
        assert_eq!(
            place("AWSLogs/111122223333/CloudTrail-Insight/us-east-1/2024/11/05/"),
            day(2024, 11, 5)
        );
        assert_eq!(
            place("AWSLogs/111122223333/CloudTrail-Digest/"),
            Place::Digest
        );
        for outside in [
            "AWSLogs/notes/",
            "AWSLogs/111122223333/elasticloadbalancing/",
            &format!("{base}latest/"),
            &format!("{base}2024/13/"),
            &format!("{base}2023/02/29/"),
            &format!("{base}2024/1/"),
        ] {
            assert_eq!(place(outside), Place::Outside, "{outside}");
        }
    }

    fn window(since: &str, until: &str) -> Window {
        Window {
            since_ms: crate::record::parse_time_ms(since),
            until_ms: crate::record::parse_time_ms(until),
        }
    }

    /// Days overlapping [since, until) are listed, their years and months
    /// descended into; the rest is skipped without listing.
    #[test]
    fn only_days_in_the_window_are_listed() {
        let base = "AWSLogs/111122223333/CloudTrail/us-east-1/";
        let w = window("2024-11-05T12:00:00Z", "2024-11-06T00:00:00Z");
        let at = |f: &str| step(&format!("{base}{f}"), &w);
        assert_eq!(at("2024/11/05/"), Step::ListAll);
        assert_eq!(at("2024/11/04/"), Step::Skip(Pruned::Day));
        assert_eq!(
            at("2024/11/06/"),
            Step::Skip(Pruned::Day),
            "until is exclusive"
        );
        assert_eq!(at("2024/11/"), Step::Descend);
        assert_eq!(at("2024/10/"), Step::Skip(Pruned::Month));
        assert_eq!(at("2024/12/"), Step::Skip(Pruned::Month));
        assert_eq!(at("2024/"), Step::Descend);
        assert_eq!(at("2023/"), Step::Skip(Pruned::Year));
        assert_eq!(at("latest/"), Step::ListAll, "outside the layout: kept");
        assert_eq!(step("", &w), Step::Descend);
        assert_eq!(
            step("AWSLogs/111122223333/CloudTrail-Digest/", &w),
            Step::Skip(Pruned::Digests)
        );
        // Open ends.
        let since = Window {
            until_ms: None,
            ..w
        };
        assert_eq!(step(&format!("{base}2030/"), &since), Step::Descend);
        assert_eq!(
            step(&format!("{base}2024/11/04/"), &since),
            Step::Skip(Pruned::Day)
        );
        let until = Window {
            since_ms: None,
            ..w
        };
        assert_eq!(step(&format!("{base}1999/01/01/"), &until), Step::ListAll);
        // December's month ends with the year.
        let dec = window("2024-12-31T23:00:00Z", "2025-01-01T00:00:00Z");
        assert_eq!(step(&format!("{base}2024/12/"), &dec), Step::Descend);
        assert_eq!(
            step(&format!("{base}2025/01/"), &dec),
            Step::Skip(Pruned::Month)
        );
    }

    #[test]
    fn the_first_step_judges_a_partial_prefix_by_its_folder() {
        let w = window("2024-11-05T00:00:00Z", "2024-11-06T00:00:00Z");
        let base = "AWSLogs/111122223333/CloudTrail/us-east-1/";
        assert_eq!(first_step("", &w), Step::Descend);
        assert_eq!(first_step("AWS", &w), Step::Descend);
        assert_eq!(first_step(&format!("{base}2024/11/0"), &w), Step::Descend);
        assert_eq!(
            first_step(&format!("{base}2024/11/05/x"), &w),
            Step::ListAll
        );
        assert_eq!(
            first_step(&format!("{base}2024/11/04/"), &w),
            Step::Skip(Pruned::Day)
        );
        assert_eq!(first_step("manual/ex", &Window::default()), Step::ListAll);
        assert_eq!(first_step(base, &Window::default()), Step::ListAll);
    }

    #[test]
    fn folder_markers_and_digests_are_not_kept() {
        let (mut skipped, mut kept) = (Skipped::default(), Vec::new());
        for key in [
            "AWSLogs/1/CloudTrail/us-east-1/2024/11/05/",
            "AWSLogs/1/CloudTrail-Digest/us-east-1/2024/11/05/d.json.gz",
            "AWSLogs/1/CloudTrail/us-east-1/2024/11/05/a.json.gz",
        ] {
            skipped.admit(listed(key), &mut kept);
        }
        assert_eq!(
            kept,
            [listed(
                "AWSLogs/1/CloudTrail/us-east-1/2024/11/05/a.json.gz"
            )]
        );
        assert_eq!((skipped.folder_markers, skipped.digest_files), (1, 1));
    }

    #[test]
    fn the_summary_line_says_what_was_sent_and_skipped() {
        let mut s = Skipped::default();
        let line = |s: &Skipped| summary_line(3, 4096, "Q", Duration::from_millis(1250), s);
        assert_eq!(line(&s), "enqueued 3 objects (4096 bytes) to Q in 1.2 s");
        s.pruned(Pruned::Day);
        s.pruned(Pruned::Day);
        s.pruned(Pruned::Year);
        s.pruned(Pruned::Digests);
        assert_eq!(
            line(&s),
            "enqueued 3 objects (4096 bytes) to Q in 1.2 s; skipped 2 days, 1 year outside \
             --since/--until, 1 digest folder"
        );
    }

    #[test]
    fn batches_hold_ten_messages_and_256_kib() {
        assert_eq!(batches(&[]), Vec::<Range<usize>>::new());
        assert_eq!(batches(&[600; 25]), [0..10, 10..20, 20..25]);
        let big = 100 * 1024;
        assert_eq!(batches(&[big, big, big, 10]), [0..2, 2..4]);
        assert_eq!(
            batches(&[300 * 1024, 10]),
            [0..1, 1..2],
            "too big goes alone"
        );
    }

    #[test]
    fn answers_leave_what_failed_to_retry() {
        let answer = Answer {
            accepted: vec![10],
            failed: vec![
                Failure {
                    index: 11,
                    reason: "InternalError".into(),
                    sender_fault: false,
                },
                Failure {
                    index: 12,
                    reason: "InvalidMessageContents".into(),
                    sender_fault: true,
                },
            ],
        };
        let (again, refused) = sort_out(&[10, 11, 12, 13], &answer);
        assert_eq!(
            again.iter().map(|u| u.index).collect::<Vec<_>>(),
            [11, 13],
            "an entry not in the answer was not sent"
        );
        assert_eq!(refused.iter().map(|u| u.index).collect::<Vec<_>>(), [12]);
    }

    fn no_wait() -> Retry {
        Retry {
            max_attempts: 3,
            delay: |_| Duration::ZERO,
        }
    }

    fn failure(index: usize, sender_fault: bool) -> Failure {
        Failure {
            index,
            reason: "ServiceUnavailable".into(),
            sender_fault,
        }
    }

    /// A retry sends only what is still pending; what keeps failing is reported
    /// with its reason and the number of attempts.
    #[tokio::test]
    async fn failed_entries_are_retried_then_reported() {
        let mut calls: Vec<Vec<usize>> = Vec::new();
        let unsent = send_batch(vec![0, 1, 2, 3], no_wait(), |pending| {
            calls.push(pending.clone());
            let n = calls.len();
            async move {
                let failed: Vec<Failure> = pending
                    .iter()
                    .filter(|&&i| i == 3 || (i == 1 && n == 1) || i == 2)
                    .map(|&i| failure(i, i == 2))
                    .collect();
                let accepted = pending
                    .iter()
                    .copied()
                    .filter(|i| !failed.iter().any(|f| f.index == *i))
                    .collect();
                Ok(Answer { accepted, failed })
            }
        })
        .await
        .unwrap();
        assert_eq!(calls, [vec![0, 1, 2, 3], vec![1, 3], vec![3]]);
        assert_eq!(
            unsent,
            [
                Unsent {
                    index: 2,
                    reason: "ServiceUnavailable".into()
                },
                Unsent {
                    index: 3,
                    reason: "ServiceUnavailable (after 3 attempts)".into()
                }
            ]
        );
    }

    #[tokio::test]
    async fn failed_calls_are_retried_unless_retrying_cannot_help() {
        let mut n = 0;
        let flaky = send_batch(vec![0, 1], no_wait(), |pending| {
            n += 1;
            let first = n == 1;
            async move {
                match first {
                    true => Err(CallFailed {
                        message: "timeout".into(),
                        permanent: false,
                    }),
                    false => Ok(Answer {
                        accepted: pending,
                        failed: vec![],
                    }),
                }
            }
        })
        .await;
        assert_eq!(flaky, Ok(vec![]));

        let mut n = 0;
        let denied = send_batch(vec![0], no_wait(), |_| {
            n += 1;
            async {
                Err(CallFailed {
                    message: "AccessDenied".into(),
                    permanent: true,
                })
            }
        })
        .await;
        assert_eq!(n, 1, "not retried");
        assert!(denied.unwrap_err().message.contains("AccessDenied"));

        let down = send_batch(vec![0], no_wait(), |_| async {
            Err(CallFailed {
                message: "connection refused".into(),
                permanent: false,
            })
        })
        .await;
        assert_eq!(
            down.unwrap_err().message,
            "connection refused (after 3 attempts)"
        );
    }

    #[test]
    fn a_partial_run_is_an_error_that_counts_what_is_missing() {
        let mut r = Report {
            listed: 5,
            sent: 5,
            ..Report::default()
        };
        assert_eq!(r.failure("Q", "b"), None);
        r.sent = 3;
        r.unsent = vec![("k".into(), "InternalError (after 5 attempts)".into())];
        let e = r.failure("Q", "b").unwrap();
        assert!(
            e.starts_with("2 of 5 objects were not sent to Q (the first: s3://b/k: InternalError"),
            "{e}"
        );
        assert!(
            e.contains("rerunning"),
            "a partial run says how to send the rest: {e}"
        );
        r.sent = 0;
        r.stopped = Some("SendMessageBatch to Q: AccessDenied".into());
        let e = r.failure("Q", "b").unwrap();
        assert!(e.contains("(sending stopped: SendMessageBatch"), "{e}");
        assert!(
            !e.contains("rerunning"),
            "nothing went: fix the cause first: {e}"
        );
    }
}
