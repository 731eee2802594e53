//! Reading CloudTrail log files: where they are (local paths, stdin, S3), how their
//! bytes are decoded ([`decode`]), and how records are split out of them
//! ([`records`]). [`read_events`] ties the stages together for one stream.

pub mod decode;
pub mod records;
pub mod s3;

use std::io::{self, Read};
use std::path::{Path, PathBuf};

use crate::record::{Event, RecordError};
use records::{RecordSplitter, SplitError};

/// Per-file limits against hostile or broken input.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// Decompressed bytes per file before the file is rejected (gzip bombs).
    pub max_decompressed_bytes: u64,
    /// Bytes per record before the record is rejected (it is skipped, not buffered).
    pub max_record_bytes: usize,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            max_decompressed_bytes: decode::DEFAULT_MAX_DECOMPRESSED,
            max_record_bytes: records::DEFAULT_MAX_RECORD_BYTES,
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

/// The files under `path` (itself when a file), recursively, in path order.
pub fn local_files(path: &Path) -> io::Result<Vec<PathBuf>> {
    let meta = std::fs::metadata(path)
        .map_err(|e| io::Error::new(e.kind(), format!("{}: {e}", path.display())))?;
    if !meta.is_dir() {
        return Ok(vec![path.to_path_buf()]);
    }
    let mut out = Vec::new();
    let mut stack = vec![path.to_path_buf()];
    while let Some(dir) = stack.pop() {
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

/// One item read from a stream.
pub enum Item<'a> {
    /// A parsed record and its original bytes.
    Event {
        index: u64,
        raw: &'a [u8],
        event: Event,
    },
    /// A record that failed on its own; the rest of the file goes on.
    Bad {
        index: u64,
        offset: u64,
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

/// Decodes `input` and hands every record to `on_item`, in order. Returns the
/// stream's counts, or the error that stopped it (after the records before it).
pub fn read_events(
    input: impl Read,
    limits: Limits,
    mut on_item: impl FnMut(Item<'_>),
) -> Result<StreamStats, StreamError> {
    let mut stats = StreamStats::default();
    let reader = decode::open(input, limits.max_decompressed_bytes).map_err(|e| StreamError {
        records: 0,
        stats,
        error: SplitError::Io(e),
    })?;
    let mut split = RecordSplitter::new(reader, limits.max_record_bytes);
    let mut buf = Vec::with_capacity(8 * 1024);
    loop {
        match split.next_into(&mut buf) {
            Ok(None) => break,
            Ok(Some(slot)) => {
                stats.records += 1;
                let parsed = match slot.oversized {
                    Some(size) => Err(RecordError::TooLarge(size)),
                    None => Event::parse(&buf),
                };
                match parsed {
                    Ok(event) => on_item(Item::Event {
                        index: slot.index,
                        raw: &buf,
                        event,
                    }),
                    Err(error) => {
                        stats.record_errors += 1;
                        on_item(Item::Bad {
                            index: slot.index,
                            offset: slot.offset,
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
