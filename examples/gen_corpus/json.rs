//! A small JSON text writer that keeps keys in the order they are written.
//!
//! CloudTrail's records have a conventional key order (eventVersion first, then
//! userIdentity, ...) and readers of real logs see it; serde_json's `Value` maps
//! sort their keys unless its `preserve_order` feature is on, which it is not here.
//! So records are written as text, straight into the output buffer, with closures
//! for nested objects and arrays.

use std::fmt::Write as _;

/// Appends `s` as a JSON string literal (quotes included).
pub fn push_str_lit(out: &mut String, s: &str) {
    out.push('"');
    let mut start = 0;
    for (i, b) in s.bytes().enumerate() {
        let esc = match b {
            b'"' => "\\\"",
            b'\\' => "\\\\",
            b'\n' => "\\n",
            b'\r' => "\\r",
            b'\t' => "\\t",
            0..=0x1f => "",
            _ => continue,
        };
        out.push_str(&s[start..i]);
        if esc.is_empty() {
            let _ = write!(out, "\\u{b:04x}");
        } else {
            out.push_str(esc);
        }
        start = i + 1;
    }
    out.push_str(&s[start..]);
    out.push('"');
}

/// Writes one object into `out`.
pub fn object(out: &mut String, f: impl FnOnce(&mut Obj)) {
    out.push('{');
    f(&mut Obj { out, empty: true });
    out.push('}');
}

/// One object as a new string.
pub fn to_object(f: impl FnOnce(&mut Obj)) -> String {
    let mut s = String::with_capacity(256);
    object(&mut s, f);
    s
}

/// One array as a new string.
pub fn to_array(f: impl FnOnce(&mut Arr)) -> String {
    let mut s = String::with_capacity(256);
    s.push('[');
    f(&mut Arr {
        out: &mut s,
        empty: true,
    });
    s.push(']');
    s
}

/// The members of an object being written.
pub struct Obj<'a> {
    out: &'a mut String,
    empty: bool,
}

impl Obj<'_> {
    fn key(&mut self, k: &str) {
        if !self.empty {
            self.out.push(',');
        }
        self.empty = false;
        push_str_lit(self.out, k);
        self.out.push(':');
    }

    pub fn str(&mut self, k: &str, v: &str) -> &mut Self {
        self.key(k);
        push_str_lit(self.out, v);
        self
    }

    /// A member whose value is already JSON text.
    pub fn raw(&mut self, k: &str, json: &str) -> &mut Self {
        self.key(k);
        self.out.push_str(json);
        self
    }

    /// A member whose value is JSON text, or `null`.
    pub fn raw_or_null(&mut self, k: &str, json: Option<&str>) -> &mut Self {
        self.raw(k, json.unwrap_or("null"))
    }

    pub fn int(&mut self, k: &str, v: u64) -> &mut Self {
        self.key(k);
        let _ = write!(self.out, "{v}");
        self
    }

    /// An integral number written as a float (`1024.0`), as S3 data events often
    /// write their byte counts.
    pub fn float(&mut self, k: &str, v: u64) -> &mut Self {
        self.key(k);
        let _ = write!(self.out, "{v}.0");
        self
    }

    pub fn bool(&mut self, k: &str, v: bool) -> &mut Self {
        self.raw(k, if v { "true" } else { "false" })
    }

    pub fn obj(&mut self, k: &str, f: impl FnOnce(&mut Obj)) -> &mut Self {
        self.key(k);
        object(self.out, f);
        self
    }

    /// `"k":{}`
    pub fn empty_obj(&mut self, k: &str) -> &mut Self {
        self.raw(k, "{}")
    }

    pub fn arr(&mut self, k: &str, f: impl FnOnce(&mut Arr)) -> &mut Self {
        self.key(k);
        self.out.push('[');
        f(&mut Arr {
            out: self.out,
            empty: true,
        });
        self.out.push(']');
        self
    }

    /// An array of strings.
    pub fn strs(&mut self, k: &str, items: &[&str]) -> &mut Self {
        self.arr(k, |a| {
            for s in items {
                a.str(s);
            }
        })
    }
}

/// The elements of an array being written.
pub struct Arr<'a> {
    out: &'a mut String,
    empty: bool,
}

impl Arr<'_> {
    fn sep(&mut self) {
        if !self.empty {
            self.out.push(',');
        }
        self.empty = false;
    }

    pub fn str(&mut self, v: &str) -> &mut Self {
        self.sep();
        push_str_lit(self.out, v);
        self
    }

    pub fn obj(&mut self, f: impl FnOnce(&mut Obj)) -> &mut Self {
        self.sep();
        object(self.out, f);
        self
    }
}
