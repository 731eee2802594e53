//! Reading CloudTrail log files: where they are (local paths, stdin, S3), how their
//! bytes are decoded ([`decode`]), and how records are split out of them
//! ([`records`]). [`read_events`] ties the stages together for one stream.

pub mod access_log;
pub mod decode;
pub mod records;
pub mod s3;

use std::io::{self, BufRead, BufReader, Cursor, Read};
use std::path::{Path, PathBuf};

use crate::record::{Event, RecordError};
use records::{RecordSplitter, SplitError};

/// Default nesting cap: real CloudTrail records nest about ten levels; JSON parsers
/// refuse beyond 128.
pub const DEFAULT_MAX_NESTING_DEPTH: u32 = 100;

/// Record errors of one file reported one by one (by `scan` on stderr, by the
/// worker in its log); past that they are only counted.
pub const RECORD_ERRORS_SHOWN: u64 = 10;

/// Per-file limits against hostile or broken input.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// Decompressed bytes per file before the file is rejected (gzip bombs).
    pub max_decompressed_bytes: u64,
    /// Bytes per record before the record is rejected (it is skipped, not buffered).
    pub max_record_bytes: usize,
    /// How deeply a record's arrays and objects may nest before it is rejected.
    pub max_nesting_depth: u32,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            max_decompressed_bytes: decode::DEFAULT_MAX_DECOMPRESSED,
            max_record_bytes: records::DEFAULT_MAX_RECORD_BYTES,
            max_nesting_depth: DEFAULT_MAX_NESTING_DEPTH,
        }
    }
}

/// A scan input as given on the command line.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum InputSpec {
    /// A file, or a directory read recursively.
    Path(PathBuf),
    /// `-`.
    Stdin,
    /// `s3://bucket/prefix`.
    S3 { bucket: String, prefix: String },
}

impl InputSpec {
    pub fn parse(s: &str) -> InputSpec {
        if s == "-" {
            return InputSpec::Stdin;
        }
        if let Some(rest) = s.strip_prefix("s3://") {
            let (bucket, prefix) = rest.split_once('/').unwrap_or((rest, ""));
            return InputSpec::S3 {
                bucket: bucket.to_owned(),
                prefix: prefix.to_owned(),
            };
        }
        InputSpec::Path(PathBuf::from(s))
    }
}

/// CloudTrail digest files (integrity hashes, not events) live under
/// `CloudTrail-Digest/`; they are skipped.
pub fn is_digest(path_or_key: &str) -> bool {
    path_or_key.contains("CloudTrail-Digest")
}

/// The files under `path` (itself when a file), recursively, in path order;
/// symlinked directories are followed, each directory read once.
pub fn local_files(path: &Path) -> io::Result<Vec<PathBuf>> {
    let meta = std::fs::metadata(path)
        .map_err(|e| io::Error::new(e.kind(), format!("{}: {e}", path.display())))?;
    if !meta.is_dir() {
        return Ok(vec![path.to_path_buf()]);
    }
    let mut out = Vec::new();
    // Symlinked directories are followed (log trees are often mounted or linked
    // together), each real directory once: a link back up the tree is not a loop.
    let mut seen = std::collections::HashSet::new();
    let mut stack = vec![path.to_path_buf()];
    while let Some(dir) = stack.pop() {
        if !seen.insert(std::fs::canonicalize(&dir)?) {
            continue;
        }
        for entry in std::fs::read_dir(&dir)? {
            let p = entry?.path();
            if p.is_dir() {
                stack.push(p);
            } else {
                out.push(p);
            }
        }
    }
    out.sort();
    Ok(out)
}

/// Where in a file an item was.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Position {
    /// A CloudTrail record: its 0-based index and byte offset.
    Record { index: u64, offset: u64 },
    /// A line of an S3 server access log (1-based).
    Line(u64),
}

impl std::fmt::Display for Position {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Position::Record { index, offset } => write!(f, "record {index} (byte {offset})"),
            Position::Line(n) => write!(f, "line {n}"),
        }
    }
}

/// One item read from a stream.
#[allow(
    clippy::large_enum_variant,
    reason = "nearly every item is an event: boxing it would allocate once per record"
)]
pub enum Item {
    /// A parsed record (its text, for CloudTrail records, is [`Event::raw_text`]).
    Event { index: u64, event: Event },
    /// A record or line that failed on its own; the rest of the file goes on.
    Bad {
        position: Position,
        error: RecordError,
    },
}

/// Counts for one stream.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct StreamStats {
    pub records: u64,
    pub record_errors: u64,
    pub bytes: u64,
}

/// A stream that could not be read to its end.
#[derive(Debug, thiserror::Error)]
#[error("{error} ({records} records read before the error)")]
pub struct StreamError {
    pub records: u64,
    pub stats: StreamStats,
    #[source]
    pub error: SplitError,
}

/// Bytes looked at to tell an access log from CloudTrail JSON.
const SNIFF: usize = 4096;

/// Decodes `input` and hands every record to `on_item`, in order. CloudTrail JSON
/// (any layout) and S3 server access logs are told apart by content. Returns the
/// stream's counts, or the error that stopped it (after the records before it).
pub fn read_events(
    input: impl Read,
    limits: Limits,
    on_item: impl FnMut(Item),
) -> Result<StreamStats, StreamError> {
    let fail = |e: io::Error| StreamError {
        records: 0,
        stats: StreamStats::default(),
        error: SplitError::Io(e),
    };
    let mut reader = decode::open(input, limits.max_decompressed_bytes).map_err(fail)?;
    let mut head = Vec::with_capacity(SNIFF);
    (&mut reader)
        .take(SNIFF as u64)
        .read_to_end(&mut head)
        .map_err(fail)?;
    let first_line = head
        .split(|b| *b == b'\n')
        .find(|l| !l.iter().all(u8::is_ascii_whitespace));
    let is_access_log =
        first_line.is_some_and(|l| access_log::looks_like_access_log(&String::from_utf8_lossy(l)));
    let whole = Cursor::new(head).chain(reader);
    if is_access_log {
        read_access_log(whole, limits, on_item)
    } else {
        read_cloudtrail(whole, limits, on_item)
    }
}

fn read_access_log(
    input: impl Read,
    limits: Limits,
    mut on_item: impl FnMut(Item),
) -> Result<StreamStats, StreamError> {
    let mut stats = StreamStats::default();
    let mut r = BufReader::with_capacity(128 * 1024, input);
    let mut line = Vec::with_capacity(1024);
    let mut n = 0u64;
    let io_err = |stats: StreamStats, e: io::Error| StreamError {
        records: stats.records,
        stats,
        error: SplitError::Io(e),
    };
    // A line is written by the requester (key, URI, user agent): it is read up to
    // the access log's own cap, far below the record cap, and no further.
    let cap = limits.max_record_bytes.min(access_log::MAX_LINE_BYTES);
    loop {
        line.clear();
        let got = (&mut r)
            .take(cap as u64 + 1)
            .read_until(b'\n', &mut line)
            .map_err(|e| io_err(stats, e))?;
        if got == 0 {
            break;
        }
        stats.bytes += got as u64;
        n += 1;
        if line.len() > cap && line.last() != Some(&b'\n') {
            // Skip the rest of an oversized line without buffering it.
            let mut size = line.len() as u64;
            loop {
                let buf = r.fill_buf().map_err(|e| io_err(stats, e))?;
                if buf.is_empty() {
                    break;
                }
                let (take, done) = match memchr::memchr(b'\n', buf) {
                    Some(i) => (i + 1, true),
                    None => (buf.len(), false),
                };
                r.consume(take);
                size += take as u64;
                stats.bytes += take as u64;
                if done {
                    break;
                }
            }
            stats.records += 1;
            stats.record_errors += 1;
            on_item(Item::Bad {
                position: Position::Line(n),
                error: if cap < access_log::MAX_LINE_BYTES {
                    RecordError::TooLarge(size)
                } else {
                    RecordError::AccessLog(access_log::too_long(size))
                },
            });
            continue;
        }
        let text = String::from_utf8_lossy(&line);
        if text.trim().is_empty() {
            continue;
        }
        stats.records += 1;
        match access_log::parse_line(&text) {
            Ok(fields) => on_item(Item::Event {
                index: n - 1,
                event: Event::from_access_log(fields),
            }),
            Err(why) => {
                stats.record_errors += 1;
                on_item(Item::Bad {
                    position: Position::Line(n),
                    error: RecordError::AccessLog(why),
                });
            }
        }
    }
    Ok(stats)
}

fn read_cloudtrail(
    reader: impl Read,
    limits: Limits,
    mut on_item: impl FnMut(Item),
) -> Result<StreamStats, StreamError> {
    let mut stats = StreamStats::default();
    let mut split = RecordSplitter::new(reader, limits.max_record_bytes);
    // The splitter enforces the depth cap as it reads: a deeper record is counted
    // to its end, not buffered, and handed out without its text.
    split.set_max_depth(limits.max_nesting_depth);
    let mut buf = Vec::with_capacity(8 * 1024);
    loop {
        match split.next_into(&mut buf) {
            Ok(None) => break,
            Ok(Some(slot)) => {
                stats.records += 1;
                // Depth first: the splitter stops at the depth cap before the size
                // cap, so a nesting bomb is reported as what it is.
                let parsed = match slot.oversized {
                    _ if slot.depth > limits.max_nesting_depth => {
                        Err(RecordError::TooDeep(slot.depth, limits.max_nesting_depth))
                    }
                    Some(size) => Err(RecordError::TooLarge(size)),
                    None => Event::parse_split(&buf, split.separators(), slot.syntax),
                };
                match parsed {
                    Ok(event) => on_item(Item::Event {
                        index: slot.index,
                        event,
                    }),
                    Err(error) => {
                        stats.record_errors += 1;
                        on_item(Item::Bad {
                            position: Position::Record {
                                index: slot.index,
                                offset: slot.offset,
                            },
                            error,
                        })
                    }
                }
            }
            Err(error) => {
                stats.bytes = split.bytes_read();
                return Err(StreamError {
                    records: split.records(),
                    stats,
                    error,
                });
            }
        }
    }
    stats.bytes = split.bytes_read();
    Ok(stats)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Everything read from `input`: events as `event <index>`, bad items as
    /// `<position>: <error>`, then the stream's error if any.
    fn read_all(input: &[u8], limits: Limits) -> (Vec<String>, Option<String>) {
        let mut got = Vec::new();
        let result = read_events(input, limits, |item| {
            got.push(match item {
                Item::Event { index, .. } => format!("event {index}"),
                Item::Bad { position, error } => format!("{position}: {error}"),
            })
        });
        (got, result.err().map(|e| e.to_string()))
    }

    #[test]
    fn an_overlong_access_log_line_fails_alone() {
        let ok = |s: u32| {
            format!(
                "owner bkt [05/Nov/2024:10:00:{s:02} +0000] 192.0.2.3 - R{s} REST.GET.OBJECT k \"GET /k HTTP/1.1\" 200\n"
            )
        };
        let long = format!(
            "owner bkt [05/Nov/2024:10:00:01 +0000] {}\n",
            "x ".repeat(access_log::MAX_LINE_BYTES)
        );
        let input = [ok(0), long.clone(), ok(2)].concat();
        let (got, e) = read_all(input.as_bytes(), Limits::default());
        assert_eq!(
            got,
            [
                "event 0".to_owned(),
                format!(
                    "line 2: malformed S3 access log line: line is {} bytes, over the cap of 65536 bytes for an access log line",
                    long.len()
                ),
                "event 2".to_owned(),
            ]
        );
        assert_eq!(e, None);
        // A lower record cap is the one that applies, and says so.
        let limits = Limits {
            max_record_bytes: 1000,
            ..Limits::default()
        };
        let (got, _) = read_all(input.as_bytes(), limits);
        assert!(got[1].starts_with("line 2: record is "), "{got:?}");
        assert_eq!(got[2], "event 2");
    }

    #[test]
    fn the_depth_cap_holds_while_a_record_is_read() {
        let limits = Limits {
            max_nesting_depth: 10,
            max_record_bytes: 65536,
            ..Limits::default()
        };
        // Closed: it fails alone, and is reported as too deep, not as too large.
        let bomb = format!("{}{}", "[".repeat(200_000), "]".repeat(200_000));
        let input = format!(r#"{{"Records":[{bomb},{{"eventName":"X"}}]}}"#);
        let (got, e) = read_all(input.as_bytes(), limits);
        assert_eq!(
            got,
            [
                "record 0 (byte 12): record nests 200000 levels deep, over the cap of 10 (raise max_nesting_depth if this is a genuine record)",
                "event 1"
            ]
        );
        assert_eq!(e, None);
        // Never closed: the record fails, then the file as truncated.
        let input = format!(
            r#"{{"Records":[{{"eventName":"X"}},{}"#,
            "{\"a\":".repeat(100_000)
        );
        let (got, e) = read_all(input.as_bytes(), limits);
        assert_eq!(got.len(), 2);
        assert!(got[1].contains("nests 100000 levels deep"), "{got:?}");
        assert!(e.unwrap().contains("truncated"));
    }
}
