//! Writing JSON objects member by member, for the alerts `scan` writes by the
//! hundred thousand: byte for byte what serde_json writes, with plain strings
//! (no quote, backslash or control character, nearly all of them) copied as they are
//! instead of being escaped a byte at a time.

use serde::Serialize;

use super::scan::word_marks;

/// Writes `s` as a JSON string, exactly as serde_json does.
pub fn string(out: &mut Vec<u8>, s: &str) {
    if needs_escape(s.as_bytes()) {
        serde_json::to_writer(&mut *out, s).expect("a string serialises");
    } else {
        out.reserve(s.len() + 2);
        out.push(b'"');
        out.extend_from_slice(s.as_bytes());
        out.push(b'"');
    }
}

/// Whether `s` has a byte JSON escapes (as serde_json does): `"`, `\` or one below
/// 0x20. Eight bytes at a time.
fn needs_escape(s: &[u8]) -> bool {
    let mut words = s.chunks_exact(8);
    for w in &mut words {
        let w = u64::from_le_bytes(w.try_into().expect("eight bytes"));
        if word_marks(w, true) != 0 {
            return true;
        }
    }
    words
        .remainder()
        .iter()
        .any(|&c| c < 0x20 || c == b'"' || c == b'\\')
}

/// One JSON object being written: `{`, then `"name":value` members, then `}`.
pub struct Object<'a> {
    out: &'a mut Vec<u8>,
    empty: bool,
}

impl<'a> Object<'a> {
    pub fn new(out: &'a mut Vec<u8>) -> Object<'a> {
        out.push(b'{');
        Object { out, empty: true }
    }

    /// `"name":` (names are plain: they are written as they are).
    fn name(&mut self, name: &str) -> &mut Vec<u8> {
        if !self.empty {
            self.out.push(b',');
        }
        self.empty = false;
        self.out.push(b'"');
        self.out.extend_from_slice(name.as_bytes());
        self.out.extend_from_slice(b"\":");
        self.out
    }

    pub fn str(&mut self, name: &str, v: &str) {
        string(self.name(name), v);
    }

    /// A string, or `null`.
    pub fn opt_str(&mut self, name: &str, v: Option<&str>) {
        match v {
            Some(v) => self.str(name, v),
            None => self.name(name).extend_from_slice(b"null"),
        }
    }

    /// A member serde writes.
    pub fn value<T: Serialize + ?Sized>(&mut self, name: &str, v: &T) {
        serde_json::to_writer(self.name(name), v).expect("a member serialises");
    }

    /// A member whose value is written by `f` (a nested object, raw JSON).
    pub fn with(&mut self, name: &str, f: impl FnOnce(&mut Vec<u8>)) {
        f(self.name(name));
    }

    pub fn end(self) {
        self.out.push(b'}');
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn strings_are_written_as_serde_json_writes_them() {
        let mut cases: Vec<String> = ["", "plain", "é and 😀", "a/b", "\u{7f}", " ~"]
            .iter()
            .map(|s| s.to_string())
            .collect();
        // Every byte JSON escapes, and its neighbours, at every position of words
        // and remainders.
        for special in ['"', '\\', '\u{0}', '\n', '\u{1f}', ' ', '!', '#', '[', ']'] {
            for len in 0..20 {
                for at in 0..len {
                    let mut s: String = "x".repeat(len);
                    s.replace_range(at..at + 1, &special.to_string());
                    cases.push(s);
                }
            }
        }
        for s in &cases {
            let mut out = Vec::new();
            string(&mut out, s);
            assert_eq!(out, serde_json::to_vec(s).unwrap(), "{s:?}");
            let plain = !s.bytes().any(|c| c < 0x20 || c == b'"' || c == b'\\');
            assert_eq!(needs_escape(s.as_bytes()), !plain, "{s:?}");
        }
    }
}
