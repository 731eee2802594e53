//! Splits a decoded CloudTrail log stream into one raw JSON record at a time.
//!
//! Three layouts are recognised by content: CloudTrail's own `{"Records":[...]}` (several
//! such objects may be concatenated), a top-level JSON array of records, and JSON lines
//! (`jq -c '.Records[]'`). Only the record being split is ever held in memory, so peak
//! memory follows the largest record, not the file. Splitting tracks JSON strings and
//! nesting, and checks the JSON grammar of each record it captures on the way through
//! ([`Syntax`]), so the parser need not read the record once more just to validate
//! it (JSON lines after the first are cut at line ends and left to the parser). A
//! record that is malformed inside but balanced is handed out and fails only itself.
//!
//! Both caps hold while a record is read, not only once it is whole: past
//! [`RecordSplitter::set_max_depth`] levels of nesting (or past the size cap) the
//! splitter stops stacking and copying the record and only counts its brackets to
//! its end, so a nesting bomb costs no more memory than the caps allow.
//!
//! The splitter is one state machine over one buffer, in two files: this one
//! follows the stream's layout (which form, where each record starts, refilling the
//! buffer), `capture.rs` the byte loop that copies one value and checks its
//! grammar. The scanning helpers and the grammar's states are in [`crate::json`].

mod capture;

use std::io::{self, Read};

use memchr::memchr;

use crate::json::{Syntax, compact, nesting_depth};

/// Default cap on one record: CloudTrail events are at most a few hundred KiB.
pub const DEFAULT_MAX_RECORD_BYTES: usize = 16 << 20;

const READ_CHUNK: usize = 256 * 1024;

/// Why a stream could not be split any further. Records already handed out stay valid.
#[derive(Debug, thiserror::Error)]
pub enum SplitError {
    /// Reading or decompressing failed (corrupt or truncated gzip, the size cap, I/O).
    #[error("{0}")]
    Io(#[from] io::Error),
    /// The bytes are not laid out as any supported CloudTrail form.
    #[error("not a CloudTrail log at byte {offset}: {what}")]
    Syntax { offset: u64, what: String },
    /// The stream stopped in the middle of a record or of the `Records` array.
    #[error(
        "unexpected end of data at byte {offset} inside a record or the Records array (truncated file?)"
    )]
    Truncated { offset: u64 },
    /// Nothing but white space.
    #[error("empty file: no CloudTrail records")]
    Empty,
}

/// What [`RecordSplitter::next_into`] produced.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Slot {
    /// 0-based index of the record in its file.
    pub index: u64,
    /// Byte offset of the record's first byte in the decoded stream.
    pub offset: u64,
    /// `Some(size)` when the record was larger than the cap: it was skipped, not buffered.
    pub oversized: Option<u64>,
    /// How deeply the record's arrays and objects nest (1 for a flat object; at
    /// most `u32::MAX`). Over the depth cap ([`RecordSplitter::set_max_depth`]) the
    /// record was skipped, not buffered, as an oversized one is: its text is empty.
    pub depth: u32,
    /// What the splitter found of the record's JSON syntax.
    pub syntax: Syntax,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    /// Before the first value, or between concatenated `{"Records":[...]}` objects.
    Start,
    /// Inside a `Records` array (`wrapper`) or a top-level array.
    InArray {
        wrapper: bool,
        first: bool,
    },
    /// After the `Records` array, before the wrapper's closing brace.
    AfterWrapperArray,
    /// One record per line.
    Lines,
    /// Records concatenated with white space between them (pretty-printed).
    Concat,
    /// The last record handed out never closed: the stream ended inside it.
    Truncated,
    Done,
}

/// Streams raw records out of any [`Read`]; see the module docs.
pub struct RecordSplitter<R> {
    src: R,
    buf: Box<[u8]>,
    pos: usize,
    end: usize,
    eof: bool,
    /// Absolute offset of `buf[pos]` in the stream.
    offset: u64,
    state: State,
    started: bool,
    records: u64,
    max_record: usize,
    /// Deepest nesting seen in the value being captured.
    max_depth: u32,
    /// Whether the last captured value spanned lines (its line breaks are dropped
    /// from the copy).
    multiline: bool,
    /// See [`RecordSplitter::separators`].
    separators: Vec<u32>,
    /// The syntax of the last captured value.
    syntax: Syntax,
    /// The open arrays and objects (`[` or `{`) of the value being captured.
    open: Vec<u8>,
    /// How deeply a record may nest: beyond it, the record is skipped.
    max_nesting: u32,
    /// How deeply a value is stacked while it is captured: the nesting cap, or the
    /// size cap when that is lower (a value cannot nest deeper than it is long), so
    /// that `open` stays within both.
    stack_limit: u32,
}

impl<R: Read> RecordSplitter<R> {
    pub fn new(src: R, max_record: usize) -> Self {
        RecordSplitter {
            src,
            buf: vec![0; READ_CHUNK].into_boxed_slice(),
            pos: 0,
            end: 0,
            eof: false,
            offset: 0,
            state: State::Start,
            started: false,
            records: 0,
            max_record,
            max_depth: 0,
            multiline: false,
            separators: Vec::with_capacity(64),
            syntax: Syntax::Unchecked,
            open: Vec::with_capacity(16),
            max_nesting: super::DEFAULT_MAX_NESTING_DEPTH,
            stack_limit: stack_limit(super::DEFAULT_MAX_NESTING_DEPTH, max_record),
        }
    }

    /// Sets how deeply a record's arrays and objects may nest (default
    /// [`super::DEFAULT_MAX_NESTING_DEPTH`]). A deeper record is not buffered: the
    /// splitter counts its brackets to its end and hands it out with its depth and
    /// no text ([`Slot::depth`]), so it fails alone and memory stays within the cap.
    pub fn set_max_depth(&mut self, depth: u32) {
        self.max_nesting = depth;
        self.stack_limit = stack_limit(depth, self.max_record);
    }

    /// Where the last record's top-level members are: the positions, in the text
    /// [`RecordSplitter::next_into`] wrote, of each `:` and `,` at the record's own
    /// level and of its closing `}`. The splitter passes over these bytes anyway,
    /// so [`crate::record::Event::parse_split`] need not look for them again.
    pub fn separators(&self) -> &[u32] {
        &self.separators
    }

    /// Records handed out so far (including oversized ones).
    pub fn records(&self) -> u64 {
        self.records
    }

    /// Bytes of decoded input consumed so far.
    pub fn bytes_read(&self) -> u64 {
        self.offset
    }

    /// Copies the next record's raw bytes into `out` (cleared first). `Ok(None)` at the
    /// end of the stream.
    pub fn next_into(&mut self, out: &mut Vec<u8>) -> Result<Option<Slot>, SplitError> {
        out.clear();
        // Only a record captured by this call has separators (JSON lines after the
        // first do not): never leave those of an earlier record behind.
        self.separators.clear();
        loop {
            match self.state {
                State::Done => return Ok(None),
                State::Truncated => {
                    self.state = State::Done;
                    return Err(SplitError::Truncated {
                        offset: self.offset,
                    });
                }
                State::Start => {
                    self.skip_bom();
                    let Some(b) = self.skip_ws()? else {
                        self.state = State::Done;
                        return if self.started {
                            Ok(None)
                        } else {
                            Err(SplitError::Empty)
                        };
                    };
                    self.started = true;
                    match b {
                        b'[' => {
                            self.advance(1);
                            self.state = State::InArray {
                                wrapper: false,
                                first: true,
                            };
                        }
                        b'{' => {
                            if let Some(len) = self.wrapper_prefix()? {
                                self.advance(len);
                                self.state = State::InArray {
                                    wrapper: true,
                                    first: true,
                                };
                            } else {
                                // The first value is itself a record: JSON lines when it
                                // sits on one line, otherwise concatenated objects.
                                let slot = self.capture(out)?;
                                if self.state == State::Truncated {
                                    return Ok(Some(slot));
                                }
                                let one_line = slot.oversized.is_none() && !self.multiline;
                                self.state = if one_line && self.line_ends_here()? {
                                    State::Lines
                                } else {
                                    State::Concat
                                };
                                return Ok(Some(slot));
                            }
                        }
                        other => {
                            return Err(self.syntax(format!(
                                "expected `{{\"Records\":[...]}}`, a JSON array or JSON lines, found {}",
                                show(other)
                            )));
                        }
                    }
                }
                State::InArray { wrapper, first } => {
                    let Some(b) = self.skip_ws()? else {
                        return Err(SplitError::Truncated {
                            offset: self.offset,
                        });
                    };
                    if b == b']' {
                        self.advance(1);
                        self.state = if wrapper {
                            State::AfterWrapperArray
                        } else {
                            State::Start
                        };
                        continue;
                    }
                    if !first {
                        if b != b',' {
                            return Err(self.syntax(format!(
                                "expected `,` or `]` between records, found {}",
                                show(b)
                            )));
                        }
                        self.advance(1);
                        if self.skip_ws()?.is_none() {
                            return Err(SplitError::Truncated {
                                offset: self.offset,
                            });
                        }
                    }
                    self.state = State::InArray {
                        wrapper,
                        first: false,
                    };
                    return self.capture(out).map(Some);
                }
                State::AfterWrapperArray => {
                    let Some(b) = self.skip_ws()? else {
                        return Err(SplitError::Truncated {
                            offset: self.offset,
                        });
                    };
                    match b {
                        b'}' => {
                            self.advance(1);
                            self.state = State::Start;
                        }
                        b',' => {
                            // Another top-level key after Records: skip `"key": value`.
                            self.advance(1);
                            let mut scratch = Vec::new();
                            self.skip_ws()?;
                            self.capture_raw(&mut scratch, 1 << 20)?;
                            match self.skip_ws()? {
                                Some(b':') => self.advance(1),
                                Some(b) => {
                                    return Err(
                                        self.syntax(format!("expected `:`, found {}", show(b)))
                                    );
                                }
                                None => {
                                    return Err(SplitError::Truncated {
                                        offset: self.offset,
                                    });
                                }
                            }
                            if self.skip_ws()?.is_none() {
                                return Err(SplitError::Truncated {
                                    offset: self.offset,
                                });
                            }
                            scratch.clear();
                            self.capture_raw(&mut scratch, 0)?;
                        }
                        other => {
                            return Err(self.syntax(format!(
                                "expected `}}` after the Records array, found {}",
                                show(other)
                            )));
                        }
                    }
                }
                State::Lines => return self.next_line(out),
                State::Concat => {
                    if self.skip_ws()?.is_none() {
                        self.state = State::Done;
                        return Ok(None);
                    }
                    return self.capture(out).map(Some);
                }
            }
        }
    }

    /// JSON lines: the record is the rest of the line; blank lines are skipped.
    fn next_line(&mut self, out: &mut Vec<u8>) -> Result<Option<Slot>, SplitError> {
        let Some(_) = self.skip_ws()? else {
            self.state = State::Done;
            return Ok(None);
        };
        let start = self.offset;
        let mut size: u64 = 0;
        loop {
            if self.pos == self.end && !self.fill()? {
                break;
            }
            let chunk = &self.buf[self.pos..self.end];
            let (take, done) = match memchr(b'\n', chunk) {
                Some(i) => (i, true),
                None => (chunk.len(), false),
            };
            if size + take as u64 <= self.max_record as u64 {
                out.extend_from_slice(&chunk[..take]);
            }
            size += take as u64;
            self.advance(take + usize::from(done));
            if done {
                break;
            }
        }
        let split = compact(out);
        let index = self.records;
        self.records += 1;
        let oversized = (size > self.max_record as u64).then_some(size);
        if oversized.is_some() {
            out.clear();
        }
        // A line is cut at its end, within the size cap, and measured once whole.
        let depth = nesting_depth(out);
        if depth > self.max_nesting {
            out.clear();
        }
        Ok(Some(Slot {
            index,
            offset: start,
            oversized,
            depth,
            syntax: match split {
                Some(at) => Syntax::Invalid(at),
                None => Syntax::Unchecked,
            },
        }))
    }

    /// When the buffered bytes start with `{ "Records" : [`, the length of that prefix.
    fn wrapper_prefix(&mut self) -> Result<Option<usize>, SplitError> {
        self.ensure(4096)?;
        let s = &self.buf[self.pos..self.end];
        let mut i = 1; // past '{'
        let ws = |s: &[u8], mut i: usize| {
            while i < s.len() && matches!(s[i], b' ' | b'\t' | b'\r' | b'\n') {
                i += 1;
            }
            i
        };
        i = ws(s, i);
        const KEY: &[u8] = b"\"Records\"";
        if !s[i..].starts_with(KEY) {
            return Ok(None);
        }
        i = ws(s, i + KEY.len());
        if s.get(i) != Some(&b':') {
            return Ok(None);
        }
        i = ws(s, i + 1);
        if s.get(i) != Some(&b'[') {
            return Ok(None);
        }
        Ok(Some(i + 1))
    }

    /// After a first record: is the rest of its line blank (so the file is JSON lines)?
    fn line_ends_here(&mut self) -> Result<bool, SplitError> {
        loop {
            if self.pos == self.end && !self.fill()? {
                return Ok(true);
            }
            match self.buf[self.pos] {
                b' ' | b'\t' | b'\r' => self.advance(1),
                b'\n' => return Ok(true),
                _ => return Ok(false),
            }
        }
    }

    fn skip_bom(&mut self) {
        if self.offset == 0
            && self.ensure(3).is_ok()
            && self.buf[self.pos..self.end].starts_with(b"\xEF\xBB\xBF")
        {
            self.advance(3);
        }
    }

    /// Skips white space; returns the next byte without consuming it (`None` at EOF).
    fn skip_ws(&mut self) -> Result<Option<u8>, SplitError> {
        loop {
            if self.pos == self.end && !self.fill()? {
                return Ok(None);
            }
            let b = self.buf[self.pos];
            if matches!(b, b' ' | b'\t' | b'\r' | b'\n') {
                self.advance(1);
            } else {
                return Ok(Some(b));
            }
        }
    }

    fn advance(&mut self, n: usize) {
        self.pos += n;
        self.offset += n as u64;
    }

    /// Refills an exhausted buffer; `false` at end of stream.
    fn fill(&mut self) -> io::Result<bool> {
        debug_assert_eq!(self.pos, self.end);
        self.pos = 0;
        self.end = 0;
        if self.eof {
            return Ok(false);
        }
        self.read_more()?;
        Ok(self.end > 0)
    }

    /// Makes at least `n` bytes available from `pos` unless the stream ends first.
    fn ensure(&mut self, n: usize) -> io::Result<()> {
        if self.end - self.pos >= n {
            return Ok(());
        }
        self.buf.copy_within(self.pos..self.end, 0);
        self.end -= self.pos;
        self.pos = 0;
        while self.end - self.pos < n && !self.eof {
            self.read_more()?;
        }
        Ok(())
    }

    fn read_more(&mut self) -> io::Result<()> {
        loop {
            match self.src.read(&mut self.buf[self.end..]) {
                Ok(0) => {
                    self.eof = true;
                    return Ok(());
                }
                Ok(n) => {
                    self.end += n;
                    return Ok(());
                }
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => return Err(e),
            }
        }
    }

    fn syntax(&self, what: String) -> SplitError {
        SplitError::Syntax {
            offset: self.offset,
            what,
        }
    }
}

/// How deeply a value is stacked while it is captured: the nesting cap, or the
/// size cap when lower.
fn stack_limit(max_nesting: u32, max_record: usize) -> u32 {
    // One below `u32::MAX`, so that the depth counted up to it cannot overflow.
    max_nesting
        .min(u32::try_from(max_record).unwrap_or(u32::MAX))
        .min(u32::MAX - 1)
}

fn show(b: u8) -> String {
    if b.is_ascii_graphic() {
        format!("`{}`", b as char)
    } else {
        format!("byte 0x{b:02x}")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Splits `input` fully; records as strings, then the final error if any.
    fn split(input: &str, max: usize) -> (Vec<String>, Option<String>) {
        let mut s = RecordSplitter::new(input.as_bytes(), max);
        let mut out = Vec::new();
        let mut got = Vec::new();
        loop {
            match s.next_into(&mut out) {
                Ok(Some(slot)) => match slot.oversized {
                    Some(n) => got.push(format!("<oversized {n}>")),
                    None => got.push(String::from_utf8(out.clone()).unwrap()),
                },
                Ok(None) => return (got, None),
                Err(e) => return (got, Some(e.to_string())),
            }
        }
    }

    #[test]
    fn cloudtrail_wrapper() {
        let (r, e) = split(r#"{"Records":[{"a":1},{"b":"}]{"}]}"#, 1000);
        assert_eq!(r, vec![r#"{"a":1}"#, r#"{"b":"}]{"}"#]);
        assert_eq!(e, None);
    }

    #[test]
    fn records_come_out_compact_with_strings_untouched() {
        let (r, e) = split(
            "{\"Records\": [\n  {\n    \"a\": \"x  y\",\n    \"b\": [1, {\"c\" : null}]\n  }\n]}",
            1000,
        );
        assert_eq!(r, vec![r#"{"a":"x  y","b":[1,{"c":null}]}"#]);
        assert_eq!(e, None);
        let (r, _) = split("{\"a\": \"x  y\"}\n{ \"b\" : 2 }\n", 1000);
        assert_eq!(r, vec![r#"{"a":"x  y"}"#, r#"{"b":2}"#]);
    }

    #[test]
    fn wrapper_with_white_space_and_an_empty_array() {
        let (r, e) = split(" \n{ \"Records\" :\n [ ]\n}\n", 1000);
        assert!(r.is_empty());
        assert_eq!(e, None);
    }

    #[test]
    fn concatenated_wrappers_and_trailing_keys() {
        let (r, e) = split(
            r#"{"Records":[{"a":1}],"x":{"y":[1]}}{"Records":[{"b":2}]}"#,
            1000,
        );
        assert_eq!(r, vec![r#"{"a":1}"#, r#"{"b":2}"#]);
        assert_eq!(e, None);
    }

    #[test]
    fn json_lines_fail_one_line_at_a_time() {
        let (r, e) = split("{\"a\":1}\n{\"broken\":\n{\"c\":\"x\\\"}\"}\r\n\n", 1000);
        assert_eq!(r, vec![r#"{"a":1}"#, r#"{"broken":"#, r#"{"c":"x\"}"}"#]);
        assert_eq!(e, None);
    }

    #[test]
    fn top_level_array() {
        let (r, e) = split("[{\"a\":[1,2]} , {\"b\":{}}]", 1000);
        assert_eq!(r, vec![r#"{"a":[1,2]}"#, r#"{"b":{}}"#]);
        assert_eq!(e, None);
    }

    #[test]
    fn pretty_printed_records_are_concatenated_values() {
        let (r, e) = split("{\n  \"a\": 1\n}\n{\n  \"b\": 2\n}\n", 1000);
        assert_eq!(r.len(), 2);
        assert!(r[1].contains("\"b\""));
        assert_eq!(e, None);
    }

    #[test]
    fn escaped_backslash_before_a_quote_closes_the_string() {
        let (r, _) = split(r#"{"Records":[{"p":"C:\\"},{"q":1}]}"#, 1000);
        assert_eq!(r, vec![r#"{"p":"C:\\"}"#, r#"{"q":1}"#]);
    }

    #[test]
    fn oversized_records_are_skipped_not_buffered() {
        let big = "x".repeat(100);
        let input = format!(r#"{{"Records":[{{"a":"{big}"}},{{"b":1}}]}}"#);
        let (r, e) = split(&input, 50);
        assert_eq!(
            r,
            vec!["<oversized 108>".to_string(), r#"{"b":1}"#.to_string()]
        );
        assert_eq!(e, None);
    }

    #[test]
    fn truncated_wrapper_reports_truncation_after_the_complete_records() {
        let (r, e) = split(r#"{"Records":[{"a":1},{"b":"#, 1000);
        assert_eq!(r, vec![r#"{"a":1}"#]);
        assert!(e.unwrap().contains("truncated"));
    }

    #[test]
    fn garbage_between_records_is_a_syntax_error_with_offset() {
        let (r, e) = split(r#"{"Records":[{"a":1} x {"b":1}]}"#, 1000);
        assert_eq!(r.len(), 1);
        let e = e.unwrap();
        assert!(e.contains("byte 20") && e.contains("`x`"), "{e}");
    }

    #[test]
    fn stray_closing_brace_is_a_syntax_error_not_a_loop() {
        let (r, e) = split("{\n\"a\": 1\n}\n}", 100);
        assert_eq!(r.len(), 1);
        assert!(e.unwrap().contains("unexpected `}`"));
    }

    #[test]
    fn empty_and_non_json_inputs() {
        assert_eq!(
            split("  \n", 10).1.unwrap(),
            "empty file: no CloudTrail records"
        );
        let e = split("hello", 10).1.unwrap();
        assert!(e.contains("found `h`"), "{e}");
    }

    #[test]
    fn records_larger_than_the_read_buffer() {
        let big = "y".repeat(READ_CHUNK * 2 + 17);
        let input = format!("{{\"Records\":[{{\"k\":\"{big}\"}}]}}");
        let (r, e) = split(&input, usize::MAX);
        assert_eq!(r.len(), 1);
        assert_eq!(r[0].len(), big.len() + 8);
        assert_eq!(e, None);
    }
}
