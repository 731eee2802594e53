//! Capturing one value: the splitter's inner loop, which copies a record without
//! the white space between its tokens, checks its JSON grammar, tracks its nesting
//! and notes its top-level separators, all in one pass over each byte; and the
//! bracket counting that takes over past the stack limit.
//!
//! The grammar's states ([`Next`], [`Number`], [`Syntax`]) are in
//! [`crate::json`], but their transitions on structural bytes stay in this loop:
//! each byte's one `match` drives the grammar, the nesting stack, the separators
//! and the copy together, and the fast path for `:"` and `,"` after a string
//! steps all of them at once. Split into per-byte calls, that would be a rewrite
//! of the hottest loop in the program, not a move.

use std::io::Read;

use super::{RecordSplitter, Slot, SplitError, State, show};
use crate::json::{Next, Number, Syntax, quote_or_backslash, zero_bytes};

impl<R: Read> RecordSplitter<R> {
    /// Captures one value as a record, counting it.
    pub(super) fn capture(&mut self, out: &mut Vec<u8>) -> Result<Slot, SplitError> {
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
    pub(super) fn capture_raw(
        &mut self,
        out: &mut Vec<u8>,
        cap: usize,
    ) -> Result<(u64, bool), SplitError> {
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
}

#[cfg(test)]
mod tests {
    use std::io::{self, Read};

    use super::super::READ_CHUNK;
    use super::*;
    use crate::json::{JsonStrings, nesting_depth};

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
}
