//! Reading typed values out of a rule file's spanned TOML: a string, a boolean, a
//! whole number, a string or list of strings, a field path, a required key. Each
//! reader reports a value of the wrong type where it is written and gives `None`,
//! so every part of the compiler checks values alike, with the same messages.

use std::ops::Range;

use toml::Spanned;
use toml::de::{DeTable, DeValue};

use super::{FileCx, SValue};
use crate::record::FieldRef;
use crate::rules::diagnostics::{Diagnostic, line_col};

pub(super) fn key_of<'t>(
    t: &'t DeTable<'_>,
    key: &str,
) -> Option<(&'t Spanned<std::borrow::Cow<'t, str>>, &'t SValue<'t>)> {
    t.iter().find(|(k, _)| k.get_ref() == key)
}

pub(super) fn kind(v: &DeValue<'_>) -> &'static str {
    match v {
        DeValue::String(_) => "a string",
        DeValue::Integer(_) => "an integer",
        DeValue::Float(_) => "a float",
        DeValue::Boolean(_) => "a boolean",
        DeValue::Datetime(_) => "a date",
        DeValue::Array(_) => "an array",
        DeValue::Table(_) => "a table",
    }
}

impl FileCx<'_> {
    pub(super) fn err(&mut self, span: Range<usize>, message: impl Into<String>) {
        let (line, col) = line_col(self.src, span.start);
        self.errors.push(Diagnostic {
            path: self.path.to_path_buf(),
            line,
            col,
            message: message.into(),
        });
    }

    pub(super) fn warn(&mut self, span: Range<usize>, message: impl Into<String>) {
        let (line, col) = line_col(self.src, span.start);
        self.warnings.push(Diagnostic {
            path: self.path.to_path_buf(),
            line,
            col,
            message: message.into(),
        });
    }

    /// Where a string value's content starts, past its opening quote(s) (and the
    /// newline a multi-line string may open with). Offsets into the content map to
    /// the source exactly unless the string has escapes.
    pub(super) fn content_start(&self, span: Range<usize>) -> usize {
        let raw = &self.src[span.start.min(self.src.len())..];
        let mut start = span.start;
        if raw.starts_with("'''") || raw.starts_with("\"\"\"") {
            start += 3;
            let after = &self.src[start.min(self.src.len())..];
            if after.starts_with("\r\n") {
                start += 2;
            } else if after.starts_with('\n') {
                start += 1;
            }
        } else if raw.starts_with('"') || raw.starts_with('\'') {
            start += 1;
        }
        start
    }

    pub(super) fn string(&mut self, v: &SValue<'_>, what: &str) -> Option<String> {
        match v.get_ref() {
            DeValue::String(s) => Some(s.to_string()),
            other => {
                self.err(
                    v.span(),
                    format!("`{what}` must be a string, found {}", kind(other)),
                );
                None
            }
        }
    }

    pub(super) fn bool(&mut self, v: &SValue<'_>, what: &str) -> Option<bool> {
        match v.get_ref() {
            DeValue::Boolean(b) => Some(*b),
            other => {
                self.err(
                    v.span(),
                    format!("`{what}` must be true or false, found {}", kind(other)),
                );
                None
            }
        }
    }

    pub(super) fn uint(&mut self, v: &SValue<'_>, what: &str) -> Option<u64> {
        match v.get_ref() {
            DeValue::Integer(i) => {
                match u64::from_str_radix(&i.as_str().replace('_', ""), i.radix()) {
                    Ok(n) => Some(n),
                    Err(_) => {
                        self.err(
                            v.span(),
                            format!("`{what}` must be a whole number of 0 or more"),
                        );
                        None
                    }
                }
            }
            other => {
                self.err(
                    v.span(),
                    format!("`{what}` must be a whole number, found {}", kind(other)),
                );
                None
            }
        }
    }

    /// A string or an array of strings.
    pub(super) fn strings(
        &mut self,
        v: &SValue<'_>,
        what: &str,
    ) -> Option<Vec<(String, Range<usize>)>> {
        match v.get_ref() {
            DeValue::String(s) => Some(vec![(s.to_string(), v.span())]),
            DeValue::Array(items) if !items.is_empty() => {
                let mut out = Vec::new();
                for item in items.iter() {
                    out.push((self.string(item, what)?, item.span()));
                }
                Some(out)
            }
            DeValue::Array(_) => {
                self.err(v.span(), format!("`{what}` needs at least one value"));
                None
            }
            other => {
                self.err(
                    v.span(),
                    format!(
                        "`{what}` must be a string or an array of strings, found {}",
                        kind(other)
                    ),
                );
                None
            }
        }
    }

    pub(super) fn field(&mut self, path: &str, span: Range<usize>) -> Option<FieldRef> {
        match FieldRef::parse(path) {
            Ok(f) => Some(f),
            Err(m) => {
                self.err(span, m);
                None
            }
        }
    }

    pub(super) fn fields(&mut self, v: &SValue<'_>, what: &str) -> Option<Vec<(String, FieldRef)>> {
        let list = self.strings(v, what)?;
        let mut out = Vec::new();
        for (p, span) in list {
            out.push((p.clone(), self.field(&p, span)?));
        }
        Some(out)
    }

    pub(super) fn required<'t>(
        &mut self,
        t: &'t DeTable<'t>,
        key: &str,
        within: &str,
    ) -> Option<&'t SValue<'t>> {
        match key_of(t, key) {
            Some((_, v)) => Some(v),
            None => {
                self.err(0..0, format!("missing required key `{key}`{within}"));
                None
            }
        }
    }
}
