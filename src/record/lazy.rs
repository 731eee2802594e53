//! The lazy index over a record's text: its top-level fields located once, the
//! members of an object found on first use, and values read straight from the
//! text where it can lend them (plain strings, integers, booleans), from a tree
//! only where it cannot. Its own module because it is the event's hot read path
//! and the only part of it that knows the text's layout; the text walking it
//! calls is in [`crate::json`].

use std::ops::Range;
use std::sync::OnceLock;

use serde_json::Value;

use super::fields::{KNOWN_KEYS, known_key};
use super::{RecordJson, Val, walk};
use crate::identity;
use crate::json::{KeyText, elements, member, member_at, members};

#[derive(Debug, Clone)]
pub(super) struct Lazy {
    /// The record's text, validated once when it was read; alerts share it as it is.
    pub(super) raw: RecordJson,
    pub(super) fields: Vec<Field>,
    /// For each of [`KNOWN_KEYS`]: 1 + the index of its (last) field, 0 if absent.
    pub(super) known: [u32; KNOWN_KEYS],
    /// Whether every key is one of [`KNOWN_KEYS`] (as in CloudTrail's own files),
    /// so that any other key is absent without comparing names.
    pub(super) all_known: bool,
    /// Whether the text has a backslash anywhere. Most records have none, and then
    /// no key or string needs looking at for escapes.
    pub(super) escapes: bool,
}

/// A top-level member of a record.
#[derive(Debug, Clone)]
pub(super) struct Field {
    pub(super) key: KeyText,
    /// Where the value is in the record's text.
    pub(super) span: Range<usize>,
    /// The value as a tree, for what needs one (identity, output, numbers).
    pub(super) tree: OnceLock<Value>,
    /// When the value is an object: its members, located on first use, so that
    /// rules read nested strings straight from the text (see [`Lazy::walk`]).
    pub(super) members: OnceLock<Vec<(KeyText, Range<usize>)>>,
}

impl Lazy {
    pub(super) fn find(&self, key: &str) -> Option<usize> {
        if let Some(id) = known_key(key) {
            return self.find_known(id);
        }
        if self.all_known {
            return None; // (rules ask for `eventname` and the like)
        }
        // The last occurrence wins, as when parsing into a map.
        self.fields
            .iter()
            .rposition(|f| f.key.text(self.raw.as_str()) == key)
    }

    /// The field whose key is [`known_key`] number `id`.
    pub(super) fn find_known(&self, id: usize) -> Option<usize> {
        self.known[id].checked_sub(1).map(|i| i as usize)
    }

    pub(super) fn value(&self, i: usize) -> &Value {
        let f = &self.fields[i];
        f.tree.get_or_init(|| {
            serde_json::from_str(&self.raw.as_str()[f.span.clone()]).unwrap_or(Value::Null)
        })
    }

    /// Calls `f` on the values at `rest` inside top-level field `i`: read from the
    /// text when they are plain strings, integers or booleans (the common case,
    /// with no tree built), from the field's tree otherwise.
    pub(super) fn walk<'a>(
        &'a self,
        i: usize,
        rest: &[String],
        f: &mut dyn FnMut(Val<'a>) -> bool,
    ) -> bool {
        let field = &self.fields[i];
        if field.tree.get().is_none() {
            let text = self.raw.as_str();
            let members_of = match (rest.is_empty(), text.as_bytes().get(field.span.start)) {
                (false, Some(b'{')) => Some(
                    field
                        .members
                        .get_or_init(|| members(text.as_bytes(), field.span.start, self.escapes))
                        .as_slice(),
                ),
                _ => None,
            };
            let mut found = Found::new();
            let span = field.span.clone();
            if walk_text(text, self.escapes, span, members_of, rest, &mut found).is_ok() {
                return found.any(f);
            }
        }
        walk(self.value(i), rest, f)
    }

    /// What [`identity::Fields::leaf`] asks: the scalar at a path of object keys,
    /// from the text unless it is a string with escapes.
    pub(super) fn leaf(&self, path: &[&str]) -> Option<identity::Leaf<'_>> {
        use identity::{Fields, Leaf};
        let (first, rest) = path.split_first()?;
        let i = self.find(first)?;
        let field = &self.fields[i];
        let text = self.raw.as_str();
        let b = text.as_bytes();
        let mut span = field.span.clone();
        for (depth, k) in rest.iter().enumerate() {
            if b.get(span.start) != Some(&b'{') {
                return None; // a key into a string, number, array or null
            }
            span = if depth == 0 {
                let list = field
                    .members
                    .get_or_init(|| members(b, span.start, self.escapes));
                member(text, list, k)?
            } else {
                member_at(text, span.start, k, self.escapes)?
            };
        }
        match b.get(span.start) {
            None | Some(b'n') => None,
            Some(b'"') => {
                let inner = &text[span.start + 1..span.end - 1];
                if self.escapes && inner.contains('\\') {
                    (&self.value(i)).leaf(rest)
                } else {
                    Some(Leaf::Str(inner))
                }
            }
            Some(b't') => Some(Leaf::Bool(true)),
            Some(b'f') => Some(Leaf::Bool(false)),
            Some(_) => Some(Leaf::Other),
        }
    }

    /// A top-level string without escapes, straight from the text.
    pub(super) fn plain_str(&self, i: usize) -> Option<&str> {
        let text = &self.raw.as_str()[self.fields[i].span.clone()];
        let inner = text.strip_prefix('"')?.strip_suffix('"')?;
        (!self.escapes || !inner.contains('\\')).then_some(inner)
    }
}

/// A value the text walk leaves to the tree: an escaped string, a number other
/// than a plain integer, or an object or array at the end of a path.
struct Complex;

/// The values found at a path, in order (most paths find none or one).
struct Found<'a> {
    first: [Option<Val<'a>>; 2],
    more: Vec<Val<'a>>,
}

impl<'a> Found<'a> {
    fn new() -> Found<'a> {
        Found {
            first: [None, None],
            more: Vec::new(),
        }
    }

    fn push(&mut self, v: Val<'a>) {
        match self.first.iter_mut().find(|s| s.is_none()) {
            Some(slot) => *slot = Some(v),
            None => self.more.push(v),
        }
    }

    fn any(self, f: &mut dyn FnMut(Val<'a>) -> bool) -> bool {
        self.first.into_iter().flatten().chain(self.more).any(f)
    }
}

/// The values at `path` inside the value at `span`, read from the text as
/// [`walk`] reads them from a tree: `null` is absent, arrays yield their elements,
/// the last of duplicate keys wins. `members_of` is the value's member list when
/// already located; `escapes` whether the text has a backslash anywhere.
fn walk_text<'a>(
    text: &'a str,
    escapes: bool,
    span: Range<usize>,
    members_of: Option<&[(KeyText, Range<usize>)]>,
    path: &[String],
    found: &mut Found<'a>,
) -> Result<(), Complex> {
    let b = text.as_bytes();
    match b.get(span.start) {
        None | Some(b'n') => Ok(()),
        Some(b'[') => elements(b, span.start, &mut |el| {
            walk_text(text, escapes, el, None, path, found)
        }),
        Some(b'{') => {
            let Some((k, rest)) = path.split_first() else {
                return Err(Complex);
            };
            let child = match members_of {
                Some(list) => member(text, list, k),
                None => member_at(text, span.start, k, escapes),
            };
            match child {
                Some(child) => walk_text(text, escapes, child, None, rest, found),
                None => Ok(()),
            }
        }
        Some(_) if !path.is_empty() => Ok(()),
        Some(b'"') => {
            let inner = &text[span.start + 1..span.end - 1];
            if escapes && inner.contains('\\') {
                return Err(Complex);
            }
            found.push(Val::Str(inner));
            Ok(())
        }
        Some(b't') => {
            found.push(Val::Bool(true));
            Ok(())
        }
        Some(b'f') => {
            found.push(Val::Bool(false));
            Ok(())
        }
        Some(_) => {
            let num = &text[span];
            let digits = num.strip_prefix('-').unwrap_or(num);
            // A plain integer reads the same as text and as a tree number; other
            // numbers (fractions, exponents, beyond 64 bits) go through the tree.
            if !digits.is_empty()
                && digits.len() <= 18
                && digits.bytes().all(|c| c.is_ascii_digit())
                && num != "-0"
            {
                found.push(Val::Int(num));
                Ok(())
            } else {
                Err(Complex)
            }
        }
    }
}
