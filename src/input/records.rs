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

use std::io::{self, Read};

use memchr::{memchr, memchr2};

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

/// What the splitter learned of a record's JSON syntax while finding its end.
///
/// Checking the grammar costs little here, since the splitter already steps over
/// every byte outside strings, and it spares the parser a second full pass over
/// the record (which measured as the largest single cost of reading).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Syntax {
    /// Well-formed JSON (grammar, escapes, no raw control characters in strings;
    /// UTF-8 is left to the parser).
    Valid,
    /// Not checked (a JSON line, whose white space between tokens was dropped
    /// without a check beyond [`compact`]'s; a bare number or literal; a record
    /// over the size cap): the parser must check it.
    Unchecked,
    /// Malformed: the offset, from the record's first byte, of the first byte that
    /// breaks JSON's grammar (0 when it is a raw control character in a string).
    Invalid(u64),
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

    /// Captures one value as a record, counting it.
    fn capture(&mut self, out: &mut Vec<u8>) -> Result<Slot, SplitError> {
        let offset = self.offset;
        self.max_depth = 0;
        self.multiline = false;
        let (size, closed) = self.capture_raw(out, self.max_record)?;
        let index = self.records;
        self.records += 1;
        let oversized = (size > self.max_record as u64).then(|| {
            out.clear();
            size
        });
        if self.max_depth > self.max_nesting {
            out.clear();
            self.separators.clear();
        }
        if !closed {
            // Skipped to the end of the stream, which ended inside it.
            self.state = State::Truncated;
        }
        Ok(Slot {
            index,
            offset,
            oversized,
            depth: self.max_depth,
            syntax: self.syntax,
        })
    }

    /// Consumes one JSON value starting at the current (non-white-space) byte, copying
    /// at most `cap` bytes of it into `out`; returns its full size, and whether it
    /// closed (`false` only for a value nested deeper than the stack limit, skipped
    /// to the end of the stream: other unclosed values are [`SplitError::Truncated`]).
    fn capture_raw(&mut self, out: &mut Vec<u8>, cap: usize) -> Result<(u64, bool), SplitError> {
        let first = self.buf[self.pos];
        let scalar = !matches!(first, b'{' | b'[' | b'"');
        if matches!(first, b',' | b']' | b'}' | b':') {
            return Err(self.syntax(format!("unexpected {}", show(first))));
        }
        let mut seps = std::mem::take(&mut self.separators);
        seps.clear();
        let from = out.len();
        let result = self.capture_loop(out, cap, scalar, &mut seps);
        self.separators = seps;
        if let (Ok((size, _)), Syntax::Valid) = (&result, self.syntax) {
            // The grammar was checked as the bytes went by; raw control characters
            // inside strings are looked for here, in one pass the compiler
            // vectorises: the copy has no white space left outside strings, so any
            // byte below 0x20 in it is inside a string. (A record over the cap was
            // not copied whole: it is left unchecked.)
            if *size > cap as u64 {
                self.syntax = Syntax::Unchecked;
            } else if out[from..].iter().fold(false, |c, &b| c | (b < 0x20)) {
                self.syntax = Syntax::Invalid(0);
            }
        }
        result
    }

    fn capture_loop(
        &mut self,
        out: &mut Vec<u8>,
        cap: usize,
        scalar: bool,
        seps: &mut Vec<u32>,
    ) -> Result<(u64, bool), SplitError> {
        let mut size: u64 = 0;
        let mut depth: u32 = 0;
        let limit = self.stack_limit;
        // Set when the value nests deeper than `limit`: the rest is only counted.
        let mut deep = false;
        let mut in_str = false;
        let mut escaped = false;
        // The grammar check: what may come next, and how many hex digits of a
        // `\u` escape are still due. Once the record is found malformed, `Broken`
        // stays, and the loop only finds the record's end.
        let mut next = match scalar {
            true => Next::Broken,
            false => Next::Value,
        };
        let mut hex_due = 0u8;
        let mut fault = None;
        let mut open = std::mem::take(&mut self.open);
        open.clear();
        let result = loop {
            if self.pos == self.end && !self.fill()? {
                if scalar && size > 0 {
                    break Ok((size, true));
                }
                break Err(SplitError::Truncated {
                    offset: self.offset,
                });
            }
            let chunk = &self.buf[self.pos..self.end];
            let mut i = 0;
            // Start of the bytes not yet copied: white space between tokens is
            // dropped, so records come out compact (ready to be an alert's `record`).
            let mut seg = 0;
            let mut newline = false;
            let mut done = false;
            while i < chunk.len() {
                if in_str {
                    if hex_due > 0 {
                        if chunk[i].is_ascii_hexdigit() {
                            hex_due -= 1;
                            i += 1;
                            continue;
                        }
                        hex_due = 0;
                        next.break_at(&mut fault, size + i as u64);
                    }
                    if escaped {
                        escaped = false;
                        match chunk[i] {
                            b'"' | b'\\' | b'/' | b'b' | b'f' | b'n' | b'r' | b't' => {}
                            b'u' => hex_due = 4,
                            _ => next.break_at(&mut fault, size + i as u64),
                        }
                        i += 1;
                        continue;
                    }
                    match quote_or_backslash(&chunk[i..]) {
                        None => {
                            i = chunk.len();
                            break;
                        }
                        Some(j) => {
                            i += j;
                            i += 1;
                            if chunk[i - 1] == b'\\' {
                                escaped = true;
                                continue;
                            }
                            in_str = false;
                            if depth == 0 {
                                done = true;
                                break;
                            }
                            // Most strings are followed by `:"` (a key) or `,"` (a
                            // member's string value): taken here in one step, these
                            // spare the general dispatch below, which mispredicts.
                            if chunk.get(i + 1) == Some(&b'"') {
                                let after = match (chunk[i], next) {
                                    (b':', Next::Colon) => Some(Next::Comma),
                                    (b',', Next::Comma) => match open.last() {
                                        Some(b'{') => Some(Next::Colon),
                                        _ => Some(Next::Comma),
                                    },
                                    _ => None,
                                };
                                if let Some(after) = after {
                                    if depth == 1 {
                                        seps.push((out.len() + i - seg) as u32);
                                    }
                                    next = after;
                                    in_str = true;
                                    i += 2;
                                }
                            }
                            continue;
                        }
                    }
                }
                let b = chunk[i];
                if scalar {
                    if matches!(b, b',' | b']' | b'}' | b' ' | b'\t' | b'\r' | b'\n') {
                        done = true;
                        break;
                    }
                    i += 1;
                    continue;
                }
                // A number or literal in progress takes the byte, or ends before it.
                match next {
                    Next::Number(n) => match n.then(b) {
                        Some(n) => {
                            next = Next::Number(n);
                            i += 1;
                            continue;
                        }
                        None if n.complete() => next = Next::Comma,
                        None => next.break_at(&mut fault, size + i as u64),
                    },
                    Next::Literal(rest) => {
                        if rest[0] == b {
                            next = match rest.len() {
                                1 => Next::Comma,
                                _ => Next::Literal(&rest[1..]),
                            };
                            i += 1;
                            continue;
                        }
                        next.break_at(&mut fault, size + i as u64);
                    }
                    _ => {}
                }
                match b {
                    b'"' => {
                        in_str = true;
                        next = match next {
                            Next::Key | Next::KeyOrClose => Next::Colon,
                            Next::Value | Next::ValueOrClose => Next::Comma,
                            _ => Next::Broken,
                        };
                    }
                    b' ' | b'\t' | b'\r' | b'\n' => {
                        newline |= b == b'\n';
                        if size + (i as u64) <= cap as u64 {
                            out.extend_from_slice(&chunk[seg..i]);
                        }
                        seg = i + 1;
                    }
                    b'{' | b'[' => {
                        depth += 1;
                        self.max_depth = self.max_depth.max(depth);
                        if depth > limit {
                            // Too deep to stack: the rest is counted, not kept.
                            i += 1;
                            deep = true;
                            break;
                        }
                        next = match next {
                            Next::Value | Next::ValueOrClose => {
                                open.push(b);
                                match b {
                                    b'{' => Next::KeyOrClose,
                                    _ => Next::ValueOrClose,
                                }
                            }
                            _ => Next::Broken,
                        };
                    }
                    b',' | b':' => {
                        if depth == 1 {
                            seps.push((out.len() + i - seg) as u32);
                        }
                        next = match (b, next) {
                            (b',', Next::Comma) => match open.last() {
                                Some(b'{') => Next::Key,
                                _ => Next::Value,
                            },
                            (b':', Next::Colon) => Next::Value,
                            _ => Next::Broken,
                        };
                    }
                    b'}' | b']' => {
                        let opener = if b == b'}' { b'{' } else { b'[' };
                        let empty = matches!(
                            (b, next),
                            (b'}', Next::KeyOrClose) | (b']', Next::ValueOrClose)
                        );
                        next = match (next == Next::Comma || empty) && open.pop() == Some(opener) {
                            true => Next::Comma,
                            false => Next::Broken,
                        };
                        depth = depth.saturating_sub(1);
                        if depth == 0 {
                            seps.push((out.len() + i - seg) as u32);
                            i += 1;
                            done = true;
                            break;
                        }
                    }
                    b'-' | b'0'..=b'9' if matches!(next, Next::Value | Next::ValueOrClose) => {
                        next = Next::Number(match b {
                            b'-' => Number::Minus,
                            b'0' => Number::Zero,
                            _ => Number::Int,
                        });
                    }
                    b't' | b'f' | b'n' if matches!(next, Next::Value | Next::ValueOrClose) => {
                        next = Next::Literal(match b {
                            b't' => b"rue",
                            b'f' => b"alse",
                            _ => b"ull",
                        });
                    }
                    _ => next = Next::Broken,
                }
                if next == Next::Broken {
                    next.break_at(&mut fault, size + i as u64);
                }
                i += 1;
            }
            if size + (i as u64) <= cap as u64 {
                out.extend_from_slice(&chunk[seg..i]);
            }
            self.multiline |= newline;
            size += i as u64;
            self.advance(i);
            if done {
                break Ok((size, true));
            }
            if size > cap as u64 {
                // Past the cap the separators point nowhere: keep them from
                // growing with the record (at most a chunk's worth are held).
                seps.clear();
            }
            if deep {
                break self
                    .skip_nested(u64::from(depth))
                    .map(|(rest, closed)| (size + rest, closed));
            }
        };
        if deep {
            seps.clear();
        }
        self.syntax = match (scalar, fault, next) {
            _ if deep => Syntax::Unchecked,
            (true, _, _) => Syntax::Unchecked,
            (false, Some(at), _) => Syntax::Invalid(at),
            (false, None, Next::Comma) => Syntax::Valid,
            (false, None, _) => Syntax::Invalid(size),
        };
        self.open = open;
        result
    }

    /// Consumes the rest of a value that is `depth` arrays and objects deep at the
    /// current byte (outside any string), without keeping any of it: only its
    /// brackets are counted, to its end, and the deepest nesting is noted in
    /// `max_depth`. Returns the bytes consumed and whether the value closed (or the
    /// stream ended first).
    ///
    /// Only a value past the stack limit comes here (a nesting bomb: millions of
    /// `[`), so it goes eight bytes at a time through runs of brackets.
    fn skip_nested(&mut self, mut depth: u64) -> Result<(u64, bool), SplitError> {
        const CASE: u64 = u64::from_ne_bytes([0x20; 8]);
        const OPEN: u64 = u64::from_ne_bytes([b'{'; 8]);
        const CLOSE: u64 = u64::from_ne_bytes([b'}'; 8]);
        const QUOTES: u64 = u64::from_ne_bytes([b'"'; 8]);
        let mut deepest = depth;
        let (mut in_str, mut escaped) = (false, false);
        let mut size = 0u64;
        let closed = loop {
            if self.pos == self.end && !self.fill()? {
                break false;
            }
            let chunk = &self.buf[self.pos..self.end];
            let mut i = 0;
            let mut done = false;
            while i < chunk.len() {
                if escaped {
                    escaped = false;
                    i += 1;
                    continue;
                }
                if in_str {
                    match quote_or_backslash(&chunk[i..]) {
                        None => i = chunk.len(),
                        Some(j) => {
                            i += j;
                            escaped = chunk[i] == b'\\';
                            in_str = escaped;
                            i += 1;
                        }
                    }
                    continue;
                }
                if let Some(word) = chunk.get(i..i + 8) {
                    // No quote among eight bytes: count their brackets at once
                    // (`[` and `]` are `{` and `}` with bit 5 clear), unless they
                    // both open and close, or may close the value.
                    let w = u64::from_le_bytes(word.try_into().expect("eight bytes"));
                    if zero_bytes(w ^ QUOTES) == 0 {
                        let opens = u64::from(zero_bytes((w | CASE) ^ OPEN).count_ones());
                        let closes = u64::from(zero_bytes((w | CASE) ^ CLOSE).count_ones());
                        if closes == 0 {
                            depth += opens;
                            deepest = deepest.max(depth);
                            i += 8;
                            continue;
                        }
                        if opens == 0 && closes < depth {
                            depth -= closes;
                            i += 8;
                            continue;
                        }
                    }
                }
                match chunk[i] {
                    b'"' => in_str = true,
                    b'[' | b'{' => {
                        depth += 1;
                        deepest = deepest.max(depth);
                    }
                    b']' | b'}' => {
                        depth -= 1;
                        if depth == 0 {
                            i += 1;
                            done = true;
                            break;
                        }
                    }
                    _ => {}
                }
                i += 1;
            }
            size += i as u64;
            self.advance(i);
            if done {
                break true;
            }
        };
        let deepest = u32::try_from(deepest).unwrap_or(u32::MAX);
        self.max_depth = self.max_depth.max(deepest);
        Ok((size, closed))
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

/// Follows JSON text byte by byte to tell string contents from structure.
#[derive(Debug, Default)]
pub struct JsonStrings {
    in_str: bool,
    escaped: bool,
}

impl JsonStrings {
    /// Feeds one byte; true when it belongs to a string (its quotes included).
    pub fn in_string(&mut self, b: u8) -> bool {
        if self.in_str {
            if self.escaped {
                self.escaped = false;
            } else if b == b'\\' {
                self.escaped = true;
            } else if b == b'"' {
                self.in_str = false;
            }
            true
        } else if b == b'"' {
            self.in_str = true;
            true
        } else {
            false
        }
    }
}

/// The index of the first `"` or `\\` in `s`: where a JSON string that `s`
/// continues ends or has an escape.
///
/// Strings in CloudTrail records are short (keys of a dozen bytes, values of a few
/// dozen), and for those a call to `memchr2` costs more than the search itself. This
/// looks at eight bytes at a time inline, and hands longer strings (policy
/// documents, user agents) to `memchr2` after the first 32 bytes.
#[inline]
pub fn quote_or_backslash(s: &[u8]) -> Option<usize> {
    let mut i = 0;
    while i + 8 <= s.len() && i < 32 {
        let w = u64::from_le_bytes(s[i..i + 8].try_into().expect("eight bytes"));
        let hits = word_marks(w, false);
        if hits != 0 {
            return Some(i + (hits.trailing_zeros() / 8) as usize);
        }
        i += 8;
    }
    if i < 32 {
        // Fewer than eight bytes left.
        return s[i..]
            .iter()
            .position(|&c| c == b'"' || c == b'\\')
            .map(|j| i + j);
    }
    memchr2(b'"', b'\\', &s[i..]).map(|j| i + j)
}

/// Eight bytes at a time (`w`, little-endian): the high bit of each byte that is `"`
/// or `\\` (or, with `control`, below 0x20) is set. The lowest mark is exact; a
/// borrow can only add false marks above a true one, so a word has a mark exactly
/// when it has such a byte. Shared by the string scans here and the JSON writer.
#[inline]
pub fn word_marks(w: u64, control: bool) -> u64 {
    const ONES: u64 = u64::from_ne_bytes([1; 8]);
    const HIGH: u64 = u64::from_ne_bytes([0x80; 8]);
    const QUOTES: u64 = u64::from_ne_bytes([b'"'; 8]);
    const BACKSLASHES: u64 = u64::from_ne_bytes([b'\\'; 8]);
    const SPACES: u64 = u64::from_ne_bytes([0x20; 8]);
    // A byte of `x` is zero where `w` holds the byte looked for, and then
    // `(x - ONES) & !x` has its high bit set; `w - SPACES` borrows at a byte below
    // 0x20, and `!w` keeps bytes below 0x80.
    let (q, b) = (w ^ QUOTES, w ^ BACKSLASHES);
    let mut marks = q.wrapping_sub(ONES) & !q | b.wrapping_sub(ONES) & !b;
    if control {
        marks |= w.wrapping_sub(SPACES) & !w;
    }
    marks & HIGH
}

/// How deeply a value is stacked while it is captured: the nesting cap, or the
/// size cap when lower.
fn stack_limit(max_nesting: u32, max_record: usize) -> u32 {
    // One below `u32::MAX`, so that the depth counted up to it cannot overflow.
    max_nesting
        .min(u32::try_from(max_record).unwrap_or(u32::MAX))
        .min(u32::MAX - 1)
}

/// The high bit of each byte of `w` that is zero, exactly (no borrow between bytes).
#[inline]
fn zero_bytes(w: u64) -> u64 {
    const LOW: u64 = u64::from_ne_bytes([0x7f; 8]);
    !(((w & LOW).wrapping_add(LOW)) | w | LOW)
}

/// How deeply arrays and objects nest in `json` (strings are skipped).
pub fn nesting_depth(json: &[u8]) -> u32 {
    let (mut depth, mut max) = (0u32, 0u32);
    let mut strings = JsonStrings::default();
    for &b in json {
        if strings.in_string(b) {
            continue;
        }
        match b {
            b'{' | b'[' => {
                depth += 1;
                max = max.max(depth);
            }
            b'}' | b']' => depth = depth.saturating_sub(1),
            _ => {}
        }
    }
    max
}

/// What JSON's grammar allows next in a record being captured.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Next {
    Value,
    /// After `[`.
    ValueOrClose,
    /// After `,` in an object.
    Key,
    /// After `{`.
    KeyOrClose,
    Colon,
    /// After a value: `,` or the closing bracket (or the end of the record).
    Comma,
    Number(Number),
    /// The rest of `true`, `false` or `null`.
    Literal(&'static [u8]),
    /// The record is malformed.
    Broken,
}

impl Next {
    /// Marks the record malformed at `at`, the first time only.
    #[inline]
    fn break_at(&mut self, fault: &mut Option<u64>, at: u64) {
        *self = Next::Broken;
        fault.get_or_insert(at);
    }
}

/// How far into a number: `-? (0 | [1-9][0-9]*) (. [0-9]+)? ([eE] [+-]? [0-9]+)?`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Number {
    Minus,
    Zero,
    Int,
    Dot,
    Fraction,
    E,
    ExponentSign,
    Exponent,
}

impl Number {
    /// The state after `b`, or `None` when `b` does not continue the number.
    #[inline]
    fn then(self, b: u8) -> Option<Number> {
        use Number::*;
        Some(match (self, b) {
            (Minus, b'0') => Zero,
            (Minus | Int, b'0'..=b'9') => Int,
            (Zero | Int, b'.') => Dot,
            (Dot | Fraction, b'0'..=b'9') => Fraction,
            (Zero | Int | Fraction, b'e' | b'E') => E,
            (E, b'+' | b'-') => ExponentSign,
            (E | ExponentSign | Exponent, b'0'..=b'9') => Exponent,
            _ => return None,
        })
    }

    /// Whether the number may end here.
    fn complete(self) -> bool {
        matches!(
            self,
            Number::Zero | Number::Int | Number::Fraction | Number::Exponent
        )
    }
}

fn show(b: u8) -> String {
    if b.is_ascii_graphic() {
        format!("`{}`", b as char)
    } else {
        format!("byte 0x{b:02x}")
    }
}

/// Drops the white space between JSON tokens in place (strings and their escapes are
/// kept byte for byte), as [`RecordSplitter`] does while it captures a record.
///
/// Returns the offset of the first byte after white space that split a number or a
/// literal (`1 2`, `tr ue`): dropping it would make another, valid, token, so the
/// caller must refuse the record rather than trust the copy.
pub fn compact(json: &mut Vec<u8>) -> Option<u64> {
    /// A byte of a number or of `true`/`false`/`null`.
    fn scalar(b: u8) -> bool {
        b.is_ascii_alphanumeric() || matches!(b, b'-' | b'+' | b'.')
    }
    let mut strings = JsonStrings::default();
    let (mut write, mut split) = (0, None);
    // The last byte kept, and whether white space was dropped since.
    let (mut last, mut gap) = (None, false);
    for read in 0..json.len() {
        let b = json[read];
        if !strings.in_string(b) {
            if matches!(b, b' ' | b'\t' | b'\n' | b'\r') {
                gap = true;
                continue;
            }
            if gap && last.is_some_and(scalar) && scalar(b) {
                split.get_or_insert(read as u64);
            }
        }
        gap = false;
        last = Some(b);
        json[write] = b;
        write += 1;
    }
    json.truncate(write);
    split
}

#[cfg(test)]
mod tests {
    #[test]
    fn compaction_keeps_strings_and_order() {
        let mut raw = b"{\n  \"b\": \"a  b\\\" c\",\r\n  \"a\": [1, 2]\n}".to_vec();
        assert_eq!(super::compact(&mut raw), None);
        assert_eq!(raw, br#"{"b":"a  b\" c","a":[1,2]}"#);
        // White space that split a number or a literal is reported, not hidden.
        for (line, want) in [
            (&br#"{"a": 1 2}"#[..], Some(8)),
            (br#"{"a":tr ue}"#, Some(8)),
            (br#"{"a":-  1}"#, Some(8)),
            (br#"{"a": "1 2" , "b" : true }"#, None),
        ] {
            let mut raw = line.to_vec();
            assert_eq!(
                super::compact(&mut raw),
                want,
                "{}",
                String::from_utf8_lossy(line)
            );
        }
    }

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
    fn quote_or_backslash_finds_the_first_of_either() {
        // Every length up to past the inline part, every position, and neighbours
        // that trip up word-at-a-time tricks (high bits, bytes one off the target).
        let fillers = [
            b'a', 0x00, 0x01, 0x21, 0x23, 0x5b, 0x5d, 0x80, 0xa2, 0xdc, 0xff,
        ];
        for len in 0..80 {
            for &fill in &fillers {
                let plain = vec![fill; len];
                assert_eq!(quote_or_backslash(&plain), None, "{len} {fill:#x}");
                for at in 0..len {
                    for target in [b'"', b'\\'] {
                        let mut s = plain.clone();
                        s[at] = target;
                        if at + 1 < len {
                            s[at + 1] = b'"'; // a later hit must not win
                        }
                        assert_eq!(quote_or_backslash(&s), Some(at), "{len} {at} {fill:#x}");
                    }
                }
            }
        }
    }

    /// Hands out at most `step` bytes per read, so that every token, escape and
    /// string can straddle the splitter's buffer refills.
    struct Trickle<'a> {
        data: &'a [u8],
        step: usize,
    }

    impl Read for Trickle<'_> {
        fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
            let n = self.step.min(buf.len()).min(self.data.len());
            buf[..n].copy_from_slice(&self.data[..n]);
            self.data = &self.data[n..];
            Ok(n)
        }
    }

    /// The splitter's verdict on `record` as the only element of an array read
    /// `step` bytes at a time; `None` when the mutation made it something other
    /// than one record (two records, an unbalanced bracket).
    fn verdict(record: &[u8], step: usize) -> Option<Syntax> {
        let mut input = b"[".to_vec();
        input.extend_from_slice(record);
        input.push(b']');
        let mut s = RecordSplitter::new(Trickle { data: &input, step }, usize::MAX);
        let mut out = Vec::new();
        let slot = s.next_into(&mut out).ok()??;
        matches!(s.next_into(&mut out), Ok(None)).then_some(slot.syntax)
    }

    fn serde_accepts(record: &[u8]) -> bool {
        serde_json::from_slice::<serde::de::IgnoredAny>(record).is_ok()
    }

    #[test]
    fn record_syntax_is_judged_as_serde_json_judges_it() {
        let cases: &[&str] = &[
            r#"{}"#,
            r#"[]"#,
            r#"{"a":1}"#,
            r#"{ "a" : [ 1 , -0 , 0.5 , -1.5e-3 , 2E+10 , 1e5 ] , "b" : { } }"#,
            r#"{"t":true,"f":false,"n":null,"s":"x\"\\\/\b\f\n\r\t\u00e9\uD83D"}"#,
            r#"{"a":[[[]],{},[{}]]}"#,
            r#""a string""#,
            r#"{"a":01}"#,
            r#"{"a":-}"#,
            r#"{"a":1.}"#,
            r#"{"a":.5}"#,
            r#"{"a":1e}"#,
            r#"{"a":1e+}"#,
            r#"{"a":+1}"#,
            r#"{"a":1.5.2}"#,
            r#"{"a":tru}"#,
            r#"{"a":truex}"#,
            r#"{"a":nul}"#,
            r#"{"a":True}"#,
            r#"{"a":1 2}"#,
            r#"{"a":tr ue}"#,
            r#"{"a":"\x"}"#,
            r#"{"a":"\u12G4"}"#,
            r#"{"a":"\u12"}"#,
            "{\"a\":\"tab\there\"}",
            "{\"a\":\"line\nbreak\"}",
            r#"{"a" 1}"#,
            r#"{"a":1,}"#,
            r#"{,"a":1}"#,
            r#"{"a":1 "b":2}"#,
            r#"{"a":1,,"b":2}"#,
            r#"{"a"::1}"#,
            r#"{1:1}"#,
            r#"{"a"}"#,
            r#"{"a":[1,]}"#,
            r#"{"a":[,1]}"#,
            r#"{"a":[1}}"#,
            r#"{"a":{"b":1]}"#,
            r#"{"a":"b":"c"}"#,
            r#"{"a":x}"#,
            r#"{"a":[1]"b"}"#,
            r#"{"a":{}"b":1}"#,
        ];
        for case in cases {
            for step in [1, 2, 3, READ_CHUNK] {
                let got = verdict(case.as_bytes(), step)
                    .unwrap_or_else(|| panic!("{case:?} is not one record"));
                assert_eq!(
                    got == Syntax::Valid,
                    serde_accepts(case.as_bytes()),
                    "{case:?} read {step} bytes at a time: {got:?}"
                );
            }
        }
    }

    /// Real records from the vendored field data, each changed by a few random edits with
    /// bytes that matter to JSON's grammar: wherever the result is still one
    /// record, the splitter calls it valid exactly when serde_json accepts it.
    #[test]
    fn mutated_corpus_records_are_judged_as_serde_json_judges_them() {
        let f = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("tests/data/field/cloudtrail/panther-test-events/records.json");
        let text = std::fs::read(&f).expect("the vendored field data is present");
        let mut s = RecordSplitter::new(&text[..], usize::MAX);
        let mut records = Vec::new();
        let mut out = Vec::new();
        while let Some(slot) = s.next_into(&mut out).unwrap() {
            assert_eq!(
                slot.syntax,
                Syntax::Valid,
                "{}",
                String::from_utf8_lossy(&out)
            );
            records.push(out.clone());
        }
        assert!(records.len() > 100, "{} records", records.len());
        const BYTES: &[u8] = b"{}[]:,\"\\ \n\t\x010123456789-+.eEtrufalsnxuA/";
        let mut rng = fastrand::Rng::with_seed(7);
        let mut rand = |n: usize| rng.usize(..n);
        let (mut valid, mut invalid) = (0, 0);
        for round in 0..6000 {
            let mut r = records[round % records.len()].clone();
            for _ in 0..1 + rand(3) {
                let at = rand(r.len());
                let b = BYTES[rand(BYTES.len())];
                match rand(3) {
                    0 => r[at] = b,
                    1 => r.insert(at, b),
                    _ => {
                        r.remove(at);
                    }
                }
            }
            let step = if round % 4 == 0 {
                1 + rand(7)
            } else {
                READ_CHUNK
            };
            let Some(got) = verdict(&r, step) else {
                continue;
            };
            let want = serde_accepts(&r);
            assert_eq!(
                got == Syntax::Valid && std::str::from_utf8(&r).is_ok(),
                want,
                "{:?} read {step} bytes at a time: {got:?}",
                String::from_utf8_lossy(&r)
            );
            match want {
                true => valid += 1,
                false => invalid += 1,
            }
        }
        // Both verdicts were exercised, many times.
        assert!(
            valid > 1000 && invalid > 1000,
            "{valid} valid, {invalid} invalid"
        );
    }

    /// Splits `input` read `step` bytes at a time with a depth cap: each record as
    /// its depth and text, then the final error if any.
    fn split_deep(
        input: &[u8],
        step: usize,
        max_depth: u32,
        max_record: usize,
    ) -> (Vec<(u32, String)>, Option<String>) {
        let mut s = RecordSplitter::new(Trickle { data: input, step }, max_record);
        s.set_max_depth(max_depth);
        let mut out = Vec::new();
        let mut got = Vec::new();
        loop {
            match s.next_into(&mut out) {
                Ok(Some(slot)) => got.push((slot.depth, String::from_utf8(out.clone()).unwrap())),
                Ok(None) => return (got, None),
                Err(e) => return (got, Some(e.to_string())),
            }
        }
    }

    #[test]
    fn a_nesting_bomb_is_counted_not_stacked() {
        const N: usize = 3_000_000;
        let mut input = br#"{"Records":["#.to_vec();
        input.resize(input.len() + N, b'[');
        let mut s = RecordSplitter::new(&input[..], 65536);
        s.set_max_depth(10);
        let mut out = Vec::new();
        let slot = s.next_into(&mut out).unwrap().unwrap();
        assert_eq!((slot.index, slot.offset, slot.depth), (0, 12, N as u32));
        assert!(out.is_empty());
        // Nothing grew with the input: the stack stopped at the cap.
        assert!(s.open.capacity() <= 64, "{}", s.open.capacity());
        assert!(out.capacity() <= 1024, "{}", out.capacity());
        // The stream ended inside the record: the file is truncated.
        let e = s.next_into(&mut out).unwrap_err();
        assert!(matches!(e, SplitError::Truncated { offset } if offset == input.len() as u64));
        assert!(matches!(s.next_into(&mut out), Ok(None)));
        // The same for a record that is the first value of the stream.
        let mut input = br#"{"a":"#.to_vec();
        input.resize(input.len() + 1000, b'{');
        let (r, e) = split_deep(&input, READ_CHUNK, 10, 65536);
        assert_eq!(r, vec![(1001, String::new())]);
        assert!(e.unwrap().contains("truncated"));
    }

    #[test]
    fn a_record_too_deep_fails_alone_and_the_next_is_read() {
        let bomb = format!("{}{}", "[".repeat(100_000), "]".repeat(100_000));
        for step in [1, 3, 7, 4096, READ_CHUNK] {
            for input in [
                format!(r#"{{"Records":[{{"a":1}},{bomb},{{"b":2}}]}}"#),
                format!("[{{\"a\":1}}, {bomb} ,{{\"b\":2}}]"),
                format!("{{\"a\":1}}\n{{\"x\":{bomb}}}\n{{\"b\":2}}\n"),
                format!("{{\"a\":\n1}}\n{{\"x\":{bomb}}}\n{{\"b\":2}}\n"),
            ] {
                let (r, e) = split_deep(input.as_bytes(), step, 100, usize::MAX);
                let inner = u32::from(input.contains("\"x\""));
                assert_eq!(
                    r,
                    vec![
                        (1, r#"{"a":1}"#.to_owned()),
                        (100_000 + inner, String::new()),
                        (1, r#"{"b":2}"#.to_owned())
                    ],
                    "{step}: {}",
                    &input[..20]
                );
                assert_eq!(e, None);
            }
        }
        // Records just within the cap are kept; the depth is exact either side.
        let at = |d: usize| format!("[{}{}]", "{\"k\":[".repeat(d), "]}".repeat(d));
        let (r, _) = split_deep(at(4).as_bytes(), 5, 8, usize::MAX);
        assert_eq!(r, vec![(8, at(4)[1..at(4).len() - 1].to_owned())]);
        let (r, _) = split_deep(at(5).as_bytes(), 5, 8, usize::MAX);
        assert_eq!(r, vec![(10, String::new())]);
    }

    /// Past the depth cap the brackets are counted as JSON counts them: those in
    /// strings (escaped quotes included) do not count, and the record ends where
    /// its outermost bracket closes, however the input is cut into reads.
    #[test]
    fn skipped_records_end_where_their_brackets_balance() {
        const PIECES: &[&str] = &[
            "[",
            "[",
            "{",
            "]",
            "}",
            "\"]\"",
            "\"[[[\"",
            r#""\"]""#,
            r#""\\""#,
            "1,",
            "[[[[[[[[",
            "]]]]]]]]",
            "\"\\\\\\\"]]\"",
            " ",
            "\n",
        ];
        let mut rng = fastrand::Rng::with_seed(3);
        let mut checked = 0;
        for round in 0..2000 {
            // A random value of depth at least 4; closed with what it lacks.
            let mut v = String::from("[[[[");
            for _ in 0..rng.usize(..40) {
                v.push_str(PIECES[rng.usize(..PIECES.len())]);
            }
            let want = nesting_depth(v.as_bytes());
            let mut d = 0i64;
            let mut strings = JsonStrings::default();
            for &b in v.as_bytes() {
                if !strings.in_string(b) {
                    match b {
                        b'[' | b'{' => d += 1,
                        b']' | b'}' => d -= 1,
                        _ => {}
                    }
                }
                if d == 0 {
                    break; // closed early: not one value; skip this round
                }
            }
            if d <= 0 {
                continue;
            }
            v.push_str(&"]".repeat(d as usize));
            let input = format!(r#"{{"Records":[{v},{{"next":{round}}}]}}"#);
            let step = 1 + rng.usize(..12);
            let (r, e) = split_deep(input.as_bytes(), step, 3, usize::MAX);
            assert_eq!(e, None, "{input}");
            assert_eq!(
                r,
                vec![(want, String::new()), (1, format!(r#"{{"next":{round}}}"#))],
                "{input} read {step} at a time"
            );
            checked += 1;
        }
        assert!(checked > 1000, "only {checked} values checked");
    }

    #[test]
    fn the_size_cap_bounds_what_an_oversized_record_holds() {
        // Nesting under a lifted depth cap stops at the size cap.
        let mut input = b"[".to_vec();
        input.resize(1 + 1_000_000, b'[');
        input.resize(1 + 2_000_000, b']');
        input.extend_from_slice(br#",{"b":1}]"#);
        let mut s = RecordSplitter::new(&input[..], 4096);
        s.set_max_depth(u32::MAX);
        let mut out = Vec::new();
        let slot = s.next_into(&mut out).unwrap().unwrap();
        assert_eq!(slot.oversized, Some(2_000_000));
        assert_eq!(slot.depth, 1_000_000);
        assert!(s.open.capacity() <= 8192, "{}", s.open.capacity());
        let slot = s.next_into(&mut out).unwrap().unwrap();
        assert_eq!((slot.index, &out[..]), (1, &br#"{"b":1}"#[..]));
        // A flat record has separators everywhere: they do not grow past the cap.
        for record in [
            "1,".repeat(1_000_000) + "1",
            "\"a\":1,".repeat(500_000) + "\"a\":1",
        ] {
            let wrapped = match record.starts_with('"') {
                true => format!("[{{{record}}},{{\"b\":1}}]"),
                false => format!("[[{record}],{{\"b\":1}}]"),
            };
            let mut s = RecordSplitter::new(wrapped.as_bytes(), 4096);
            let slot = s.next_into(&mut out).unwrap().unwrap();
            assert!(slot.oversized.is_some());
            assert!(
                s.separators.capacity() <= READ_CHUNK,
                "{}",
                s.separators.capacity()
            );
            assert!(s.next_into(&mut out).unwrap().is_some());
            assert_eq!(out, br#"{"b":1}"#);
        }
    }

    #[test]
    fn zero_bytes_marks_exactly_the_zero_bytes() {
        let mut rng = fastrand::Rng::with_seed(5);
        for _ in 0..20_000 {
            let mut bytes = [0u8; 8];
            for b in &mut bytes {
                *b = match rng.u8(..4) {
                    0 => 0,
                    1 => 0x80,
                    2 => 1,
                    _ => rng.u8(..),
                };
            }
            let w = u64::from_le_bytes(bytes);
            let want = bytes
                .iter()
                .enumerate()
                .filter(|(_, b)| **b == 0)
                .fold(0u64, |m, (i, _)| m | 0x80 << (8 * i));
            assert_eq!(zero_bytes(w), want, "{bytes:02x?}");
        }
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
