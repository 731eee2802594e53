//! Which folders of the CloudTrail layout a date range needs: years, months and
//! days outside it are skipped without listing their objects.

use super::*;
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
