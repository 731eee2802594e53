//! Walking the members of an object, and the elements of an array, in JSON text
//! already known to be valid: each key and the span of its value, without building
//! a tree.
//!
//! This is how [`crate::record`] reads a record lazily: it locates the top-level
//! fields once (from the splitter's separators when they fit), then the members of
//! a nested object on first use. It is its own module because it is pure text
//! walking, with no idea of what an event is.

use std::ops::Range;

use super::scan::{string_end, value_end};

/// A top-level key: where it is in the text, or (rarely: it had escapes) its
/// unescaped text. Keeping spans saves an allocation per field per record.
#[derive(Debug, Clone)]
pub(crate) enum KeyText {
    Span(std::ops::Range<usize>),
    Owned(Box<str>),
}

impl KeyText {
    /// The key whose quoted text is `b[quoted]`: its span, or its unescaped text
    /// when it has escapes (`None` if those do not unescape).
    fn of(b: &[u8], quoted: Range<usize>, escapes: bool) -> Option<KeyText> {
        let inner = quoted.start + 1..quoted.end - 1;
        if !escapes || !b[inner.clone()].contains(&b'\\') {
            return Some(KeyText::Span(inner));
        }
        serde_json::from_slice::<String>(&b[quoted])
            .ok()
            .map(|k| KeyText::Owned(k.into_boxed_str()))
    }

    /// The key's text, given the record's.
    pub(crate) fn text<'t>(&'t self, text: &'t str) -> &'t str {
        match self {
            KeyText::Span(r) => &text[r.clone()],
            KeyText::Owned(k) => k,
        }
    }
}

/// The members of the JSON object that opens at `b[at]`: each key (a span of `b`,
/// or its unescaped text when it has escapes) and the span of its value.
///
/// `b` must be valid JSON, as the splitter or serde_json has already checked (see
/// [`Event::parse_split`]): this walks the structure without checking it again,
/// which costs a fraction of a second parse. Strings are skipped eight bytes at a
/// time ([`quote_or_backslash`]).
///
/// [`Event::parse_split`]: crate::record::Event::parse_split
/// [`quote_or_backslash`]: super::quote_or_backslash
pub(crate) fn members(b: &[u8], at: usize, escapes: bool) -> Vec<(KeyText, Range<usize>)> {
    let mut out = Vec::with_capacity(16);
    out.extend(Members::new(b, at, escapes));
    out
}

/// The span of `key`'s value in the object that opens at `text[at]` (the last
/// one, as when parsing into a map), without making a list of its members: for
/// objects below the top level, which are looked into once or twice.
pub(crate) fn member_at(text: &str, at: usize, key: &str, escapes: bool) -> Option<Range<usize>> {
    Members::new(text.as_bytes(), at, escapes)
        .filter(|(k, _)| k.text(text) == key)
        .last()
        .map(|(_, v)| v)
}

/// Iterates over the members of an object; see [`members`].
struct Members<'b> {
    b: &'b [u8],
    /// Where the next member starts, `None` past the end.
    i: Option<usize>,
    escapes: bool,
}

impl<'b> Members<'b> {
    fn new(b: &'b [u8], at: usize, escapes: bool) -> Members<'b> {
        Members {
            b,
            i: Some(at + 1), // past `{`
            escapes,
        }
    }
}

impl Iterator for Members<'_> {
    type Item = (KeyText, Range<usize>);

    fn next(&mut self) -> Option<Self::Item> {
        let b = self.b;
        let mut i = self.i.take()?;
        skip_ws(b, &mut i);
        if i >= b.len() || b[i] != b'"' {
            return None; // `}`: the end (or, with invalid input, nothing more to find)
        }
        let key_end = string_end(b, i);
        let key =
            KeyText::of(b, i..key_end, self.escapes).unwrap_or(KeyText::Owned(Box::default()));
        i = key_end;
        skip_ws(b, &mut i);
        i += 1; // `:`
        skip_ws(b, &mut i);
        let start = i;
        i = value_end(b, i);
        let value = start..i;
        skip_ws(b, &mut i);
        if i < b.len() && b[i] == b',' {
            self.i = Some(i + 1);
        }
        Some((key, value))
    }
}

/// [`members`] from the positions of an object's top-level `:`, `,` and closing
/// `}` in a compact text (`:` `,` `:` ... `}`); `None` when they do not describe `b`.
pub(crate) fn members_at_separators(
    b: &[u8],
    seps: &[u32],
    escapes: bool,
) -> Option<Vec<(KeyText, Range<usize>)>> {
    let (&close, rest) = seps.split_last()?;
    let close = close as usize;
    if close + 1 != b.len() || b.first() != Some(&b'{') || b[close] != b'}' {
        return None;
    }
    if rest.is_empty() {
        return (close == 1).then(Vec::new);
    }
    if rest.len() % 2 != 1 {
        return None;
    }
    let mut out = Vec::with_capacity(rest.len() / 2 + 1);
    let mut key_start = 1;
    for pair in rest.chunks(2) {
        let colon = pair[0] as usize;
        let end = pair.get(1).map_or(close, |&c| c as usize);
        let fits = colon >= key_start + 2
            && end > colon + 1
            && b[colon] == b':'
            && (end == close || b[end] == b',')
            && b[key_start] == b'"'
            && b[colon - 1] == b'"';
        if !fits {
            return None;
        }
        out.push((KeyText::of(b, key_start..colon, escapes)?, colon + 1..end));
        key_start = end + 1;
    }
    Some(out)
}

/// Calls `f` on the span of each element of the array that opens at `b[at]`; the
/// first error `f` returns stops the walk and is returned.
pub(crate) fn elements<E>(
    b: &[u8],
    at: usize,
    f: &mut dyn FnMut(Range<usize>) -> Result<(), E>,
) -> Result<(), E> {
    let mut i = at + 1; // past `[`
    loop {
        skip_ws(b, &mut i);
        if i >= b.len() || b[i] == b']' {
            return Ok(());
        }
        let start = i;
        i = value_end(b, i);
        f(start..i)?;
        skip_ws(b, &mut i);
        if i >= b.len() || b[i] != b',' {
            return Ok(());
        }
        i += 1;
    }
}

fn skip_ws(b: &[u8], i: &mut usize) {
    while *i < b.len() && b[*i].is_ascii_whitespace() {
        *i += 1;
    }
}

/// The span of the value of `key` among an object's `members` (the last one, as
/// when parsing into a map).
pub(crate) fn member(
    text: &str,
    members: &[(KeyText, Range<usize>)],
    key: &str,
) -> Option<Range<usize>> {
    members
        .iter()
        .rev()
        .find(|(k, _)| k.text(text) == key)
        .map(|(_, v)| v.clone())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Separators that do not fit the text are refused, not trusted.
    #[test]
    fn separators_that_do_not_fit_the_text_are_refused() {
        assert_eq!(
            members_at_separators(br#"{"a":1}"#, &[4, 6], false).map(|m| m.len()),
            Some(1)
        );
        assert!(members_at_separators(br#"{"a":1}"#, &[3, 6], false).is_none());
        assert!(members_at_separators(br#"{"a":1}"#, &[5], false).is_none());
        assert_eq!(
            members_at_separators(b"{}", &[1], false).map(|m| m.len()),
            Some(0)
        );
    }
}
