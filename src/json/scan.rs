//! Byte-level scanning of JSON text: where strings end, where values end, how
//! deeply brackets nest, and white space dropped between tokens.
//!
//! These are the word-at-a-time tricks the hot paths share. The record splitter
//! ([`crate::input::records`]) uses them while it reads a stream, the lazy field
//! lookup while it walks a record's text ([`super::members()`]), and the writer
//! ([`super::writer`]) to tell a plain string from one to escape. They assume
//! nothing about what the bytes mean beyond JSON's strings and brackets, so they
//! live apart from every caller.

use memchr::memchr2;

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

/// The high bit of each byte of `w` that is zero, exactly (no borrow between bytes).
#[inline]
pub(crate) fn zero_bytes(w: u64) -> u64 {
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

/// Drops the white space between JSON tokens in place (strings and their escapes are
/// kept byte for byte), as [`RecordSplitter`] does while it captures a record.
///
/// Returns the offset of the first byte after white space that split a number or a
/// literal (`1 2`, `tr ue`): dropping it would make another, valid, token, so the
/// caller must refuse the record rather than trust the copy.
///
/// [`RecordSplitter`]: crate::input::records::RecordSplitter
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

/// The index just past the string that opens at `b[at]` (a `"`).
pub(super) fn string_end(b: &[u8], at: usize) -> usize {
    let mut i = at + 1;
    while let Some(n) = quote_or_backslash(b.get(i..).unwrap_or_default()) {
        i += n;
        if b[i] == b'"' {
            return i + 1;
        }
        i += 2; // an escape and the character it escapes
    }
    b.len()
}

/// The index just past the value that starts at `b[at]`.
pub(super) fn value_end(b: &[u8], at: usize) -> usize {
    match b.get(at) {
        Some(b'"') => string_end(b, at),
        Some(b'{' | b'[') => {
            let mut depth = 0usize;
            let mut i = at;
            while i < b.len() {
                match b[i] {
                    b'"' => {
                        i = string_end(b, i);
                        continue;
                    }
                    b'{' | b'[' => depth += 1,
                    b'}' | b']' => {
                        depth -= 1;
                        if depth == 0 {
                            return i + 1;
                        }
                    }
                    _ => {}
                }
                i += 1;
            }
            b.len()
        }
        // A number, true, false or null: up to the next delimiter.
        _ => {
            let rest = &b[at..];
            at + rest
                .iter()
                .position(|c| matches!(c, b',' | b'}' | b']') || c.is_ascii_whitespace())
                .unwrap_or(rest.len())
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

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
}
