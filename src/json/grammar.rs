//! The state of the JSON grammar check the record splitter runs as it copies a
//! record: the verdict it hands out ([`Syntax`]), what may come next ([`Next`])
//! and how far into a number it is ([`Number`]).
//!
//! Only the states and their self-contained steps (a number's next byte, the
//! first fault) are here. The transitions on `{`, `[`, `,`, `:` and quotes stay in
//! the splitter's capture loop (`input::records::capture`): they share each byte
//! with the copy, the nesting stack and the member separators in one pass, and
//! pulling them out would rewrite the hottest loop rather than move it.

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
    ///
    /// [`compact`]: super::compact
    Unchecked,
    /// Malformed: the offset, from the record's first byte, of the first byte that
    /// breaks JSON's grammar (0 when it is a raw control character in a string).
    Invalid(u64),
}

/// What JSON's grammar allows next in a record being captured.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Next {
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
    pub(crate) fn break_at(&mut self, fault: &mut Option<u64>, at: u64) {
        *self = Next::Broken;
        fault.get_or_insert(at);
    }
}

/// How far into a number: `-? (0 | [1-9][0-9]*) (. [0-9]+)? ([eE] [+-]? [0-9]+)?`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Number {
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
    pub(crate) fn then(self, b: u8) -> Option<Number> {
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
    pub(crate) fn complete(self) -> bool {
        matches!(
            self,
            Number::Zero | Number::Int | Number::Fraction | Number::Exponent
        )
    }
}
