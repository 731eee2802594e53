//! One CloudTrail record as rules see it: the raw JSON (every field addressable by a
//! dotted path) plus the normalised `actor.*`, `s3.*` and `event.*` fields.

use std::borrow::Cow;
use std::ops::Range;
use std::sync::{Arc, OnceLock};

use serde_json::Value;
use serde_json::value::RawValue;
use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;

use crate::identity::{self, Actor};
use crate::input::records::{Syntax, quote_or_backslash};

/// A normalised field, computed once per record (see the `identity` module).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum NormField {
    ActorKind,
    ActorName,
    ActorArn,
    ActorAccount,
    ActorPrincipalId,
    ActorRole,
    ActorSession,
    ActorPermissionSet,
    ActorUserId,
    ActorViaConsole,
    ActorMfa,
    S3Bucket,
    S3Key,
    EventDenied,
    EventSuccess,
}

impl NormField {
    /// Every normalised field with the name rules use for it.
    pub const ALL: [(&'static str, NormField); 15] = [
        ("actor.kind", NormField::ActorKind),
        ("actor.name", NormField::ActorName),
        ("actor.arn", NormField::ActorArn),
        ("actor.account", NormField::ActorAccount),
        ("actor.principal_id", NormField::ActorPrincipalId),
        ("actor.role", NormField::ActorRole),
        ("actor.session", NormField::ActorSession),
        ("actor.permission_set", NormField::ActorPermissionSet),
        ("actor.user_id", NormField::ActorUserId),
        ("actor.via_console", NormField::ActorViaConsole),
        ("actor.mfa", NormField::ActorMfa),
        ("s3.bucket", NormField::S3Bucket),
        ("s3.key", NormField::S3Key),
        ("event.denied", NormField::EventDenied),
        ("event.success", NormField::EventSuccess),
    ];

    /// The prefixes reserved for normalised fields: a path under them must name one.
    pub const PREFIXES: [&'static str; 3] = ["actor.", "s3.", "event."];

    pub fn parse(name: &str) -> Option<NormField> {
        Self::ALL.iter().find(|(n, _)| *n == name).map(|(_, f)| *f)
    }

    pub fn name(self) -> &'static str {
        Self::ALL
            .iter()
            .find(|(_, f)| *f == self)
            .map(|(n, _)| *n)
            .unwrap_or("?")
    }
}

/// A field a rule refers to, resolved once when the rule is compiled.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum FieldRef {
    Norm(NormField),
    /// Keys into the raw record; arrays on the way are crossed element by element.
    /// `known` is the first key's number among CloudTrail's documented top-level
    /// keys ([`known_key`]): a record finds those by number, not by name.
    Raw {
        path: Vec<String>,
        known: Option<usize>,
    },
}

impl FieldRef {
    /// Resolves a dotted path. `Err` names the problem for a path under a reserved
    /// prefix that is not a normalised field.
    pub fn parse(path: &str) -> Result<FieldRef, String> {
        if let Some(f) = NormField::parse(path) {
            return Ok(FieldRef::Norm(f));
        }
        if let Some(prefix) = NormField::PREFIXES.iter().find(|p| path.starts_with(*p)) {
            let known: Vec<&str> = NormField::ALL
                .iter()
                .map(|(n, _)| *n)
                .filter(|n| n.starts_with(prefix))
                .collect();
            return Err(format!(
                "unknown field `{path}`; `{prefix}` fields are: {}",
                known.join(", ")
            ));
        }
        if path.is_empty() || path.split('.').any(str::is_empty) {
            return Err(format!(
                "invalid field path `{path}`: use dot-separated keys such as `userIdentity.type`"
            ));
        }
        Ok(FieldRef::raw(path.split('.').map(str::to_owned).collect()))
    }

    /// The raw path `path` (keys, not a dotted string).
    pub fn raw(path: Vec<String>) -> FieldRef {
        let known = path.first().and_then(|k| known_key(k));
        FieldRef::Raw { path, known }
    }
}

/// One value found at a field: raw JSON, or a normalised string or flag.
#[derive(Debug, Clone, Copy)]
pub enum Val<'a> {
    Json(&'a Value),
    Str(&'a str),
    Bool(bool),
    /// An integer as written in the record (at most 18 digits, so it is exact).
    Int(&'a str),
}

impl<'a> Val<'a> {
    /// The value as text, for string operators: strings as they are, numbers and
    /// booleans in their JSON form; objects and arrays have none.
    pub fn text(&self) -> Option<Cow<'a, str>> {
        match *self {
            Val::Str(s) | Val::Int(s) => Some(Cow::Borrowed(s)),
            Val::Bool(b) => Some(Cow::Borrowed(if b { "true" } else { "false" })),
            Val::Json(Value::String(s)) => Some(Cow::Borrowed(s)),
            Val::Json(Value::Bool(b)) => Some(Cow::Borrowed(if *b { "true" } else { "false" })),
            Val::Json(Value::Number(n)) => Some(Cow::Owned(n.to_string())),
            Val::Json(_) => None,
        }
    }

    /// The value as a number, from a JSON number or a numeric string.
    pub fn number(&self) -> Option<f64> {
        match *self {
            Val::Json(Value::Number(n)) => n.as_f64(),
            Val::Json(Value::String(s)) => s.trim().parse().ok(),
            Val::Str(s) => s.trim().parse().ok(),
            Val::Int(s) => s.parse::<i64>().ok().map(|n| n as f64),
            _ => None,
        }
    }

    /// The value for output: JSON as it is.
    pub fn to_json(&self) -> Value {
        match *self {
            Val::Json(v) => v.clone(),
            Val::Str(s) => Value::String(s.to_owned()),
            Val::Bool(b) => Value::Bool(b),
            Val::Int(s) => serde_json::from_str(s).unwrap_or(Value::Null),
        }
    }

    /// The value for titles and CSV cells: text, or compact JSON for objects/arrays.
    pub fn display(&self) -> String {
        let mut out = String::new();
        self.display_to(&mut out);
        out
    }

    /// [`Val::display`], appended to `out` (titles are built without a string per
    /// placeholder).
    pub fn display_to(&self, out: &mut String) {
        match self.text() {
            Some(t) => out.push_str(&t),
            None => out.push_str(&self.to_json().to_string()),
        }
    }
}

/// Why a record could not be used.
#[derive(Debug, thiserror::Error)]
pub enum RecordError {
    #[error("invalid JSON: {0}")]
    Json(#[from] serde_json::Error),
    #[error("invalid JSON at byte {0} of the record: white space inside a number or a literal")]
    SplitToken(u64),
    #[error("not a CloudTrail record: expected a JSON object, found {0}")]
    NotAnObject(&'static str),
    #[error(
        "not a CloudTrail record: none of eventName, eventSource, eventTime, eventVersion, userIdentity"
    )]
    NotCloudTrail,
    #[error(
        "record is {0} bytes, over the per-record cap (raise max_record_bytes if this is a genuine record)"
    )]
    TooLarge(u64),
    #[error("malformed S3 access log line: {0}")]
    AccessLog(String),
    #[error(
        "record nests {0} levels deep, over the cap of {1} (raise max_nesting_depth if this is a genuine record)"
    )]
    TooDeep(u32, u32),
}

/// Which kind of log a record came from; a rule applies to one kind.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum LogType {
    #[default]
    Cloudtrail,
    /// S3 server access logs.
    S3Access,
}

impl LogType {
    pub const ALL: [LogType; 2] = [LogType::Cloudtrail, LogType::S3Access];

    pub fn as_str(self) -> &'static str {
        match self {
            LogType::Cloudtrail => "cloudtrail",
            LogType::S3Access => "s3_access",
        }
    }
}

/// A parsed record with its normalised fields.
///
/// A record read from a log file is kept as its (validated) text with the position
/// of each top-level field. Rules and the identity normaliser read plain strings,
/// integers and booleans straight from the text, locating an object's members on
/// first use; a field is parsed into a tree only for what the text cannot lend
/// (escaped strings, fractions, whole objects). Most rules look at `eventName` and a
/// few more fields, and an event is usually matched by no rule at all. Normalised
/// fields are computed on first use too.
#[derive(Debug, Clone)]
pub struct Event {
    log_type: LogType,
    body: Body,
    actor: OnceLock<Actor>,
    s3: OnceLock<(Option<String>, Option<String>)>,
    denied: bool,
    success: bool,
    time_ms: OnceLock<Option<i64>>,
}

#[derive(Debug, Clone)]
enum Body {
    /// A JSON object as a tree (test events, access log lines).
    Tree(Value),
    /// A record's text with its top-level fields located, parsed on demand.
    Lazy(Lazy),
}

#[derive(Debug, Clone)]
struct Lazy {
    /// The record's text, validated once when it was read; alerts share it as it is.
    raw: RecordJson,
    fields: Vec<Field>,
    /// For each of [`KNOWN_KEYS`]: 1 + the index of its (last) field, 0 if absent.
    known: [u32; KNOWN_KEYS],
    /// Whether every key is one of [`KNOWN_KEYS`] (as in CloudTrail's own files),
    /// so that any other key is absent without comparing names.
    all_known: bool,
    /// Whether the text has a backslash anywhere. Most records have none, and then
    /// no key or string needs looking at for escapes.
    escapes: bool,
}

/// A record's JSON text, known to be valid: shared between an event and its alerts.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RecordJson(Arc<str>);

impl RecordJson {
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// A JSON string holding `text` (for a note in place of a record).
    pub fn string(text: &str) -> RecordJson {
        RecordJson(Arc::from(Value::from(text).to_string()))
    }
}

/// As the JSON it is (not as a string holding it). Through serde, that takes
/// serde_json's [`RawValue`], which checks the text once more; the JSON lines that
/// `scan` writes copy it as it is (see [`crate::alert::AlertRef::write_json`]).
impl serde::Serialize for RecordJson {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        RawValue::from_string(self.0.to_string())
            .map_err(serde::ser::Error::custom)?
            .serialize(s)
    }
}

/// A top-level member of a record.
#[derive(Debug, Clone)]
struct Field {
    key: KeyText,
    /// Where the value is in the record's text.
    span: Range<usize>,
    /// The value as a tree, for what needs one (identity, output, numbers).
    tree: OnceLock<Value>,
    /// When the value is an object: its members, located on first use, so that
    /// rules read nested strings straight from the text (see [`Lazy::walk`]).
    members: OnceLock<Vec<(KeyText, Range<usize>)>>,
}

/// CloudTrail's documented top-level keys. A record's fields are found by number
/// for these (rules look fields up many times per event), by comparing names for
/// any other key.
const KNOWN_KEYS: usize = 31;

fn known_key(key: &str) -> Option<usize> {
    Some(match key {
        "eventVersion" => 0,
        "userIdentity" => 1,
        "eventTime" => 2,
        "eventSource" => 3,
        "eventName" => 4,
        "awsRegion" => 5,
        "sourceIPAddress" => 6,
        "userAgent" => 7,
        "errorCode" => 8,
        "errorMessage" => 9,
        "requestParameters" => 10,
        "responseElements" => 11,
        "additionalEventData" => 12,
        "requestID" => 13,
        "eventID" => 14,
        "readOnly" => 15,
        "resources" => 16,
        "eventType" => 17,
        "apiVersion" => 18,
        "managementEvent" => 19,
        "recipientAccountId" => 20,
        "sharedEventID" => 21,
        "vpcEndpointId" => 22,
        "vpcEndpointAccountId" => 23,
        "eventCategory" => 24,
        "tlsDetails" => 25,
        "sessionCredentialFromConsole" => 26,
        "serviceEventDetails" => 27,
        "insightDetails" => 28,
        "edgeDeviceDetails" => 29,
        "addendum" => 30,
        _ => return None,
    })
}

/// A top-level key: where it is in the text, or (rarely: it had escapes) its
/// unescaped text. Keeping spans saves an allocation per field per record.
#[derive(Debug, Clone)]
enum KeyText {
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
    fn text<'t>(&'t self, text: &'t str) -> &'t str {
        match self {
            KeyText::Span(r) => &text[r.clone()],
            KeyText::Owned(k) => k,
        }
    }
}

impl Lazy {
    fn find(&self, key: &str) -> Option<usize> {
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
    fn find_known(&self, id: usize) -> Option<usize> {
        self.known[id].checked_sub(1).map(|i| i as usize)
    }

    fn value(&self, i: usize) -> &Value {
        let f = &self.fields[i];
        f.tree.get_or_init(|| {
            serde_json::from_str(&self.raw.as_str()[f.span.clone()]).unwrap_or(Value::Null)
        })
    }

    /// Calls `f` on the values at `rest` inside top-level field `i`: read from the
    /// text when they are plain strings, integers or booleans (the common case,
    /// with no tree built), from the field's tree otherwise.
    fn walk<'a>(&'a self, i: usize, rest: &[String], f: &mut dyn FnMut(Val<'a>) -> bool) -> bool {
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
    fn leaf(&self, path: &[&str]) -> Option<identity::Leaf<'_>> {
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
    fn plain_str(&self, i: usize) -> Option<&str> {
        let text = &self.raw.as_str()[self.fields[i].span.clone()];
        let inner = text.strip_prefix('"')?.strip_suffix('"')?;
        (!self.escapes || !inner.contains('\\')).then_some(inner)
    }
}

/// The members of the JSON object that opens at `b[at]`: each key (a span of `b`,
/// or its unescaped text when it has escapes) and the span of its value.
///
/// `b` must be valid JSON, as the splitter or serde_json has already checked (see
/// [`Event::parse_split`]): this walks the structure without checking it again,
/// which costs a fraction of a second parse. Strings are skipped eight bytes at a
/// time ([`quote_or_backslash`]).
fn members(b: &[u8], at: usize, escapes: bool) -> Vec<(KeyText, Range<usize>)> {
    let mut out = Vec::with_capacity(16);
    out.extend(Members::new(b, at, escapes));
    out
}

/// The span of `key`'s value in the object that opens at `text[at]` (the last
/// one, as when parsing into a map), without making a list of its members: for
/// objects below the top level, which are looked into once or twice.
fn member_at(text: &str, at: usize, key: &str, escapes: bool) -> Option<Range<usize>> {
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
fn members_at_separators(
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

/// Calls `f` on the span of each element of the array that opens at `b[at]`.
fn elements(
    b: &[u8],
    at: usize,
    f: &mut dyn FnMut(Range<usize>) -> Result<(), Complex>,
) -> Result<(), Complex> {
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
fn member(text: &str, members: &[(KeyText, Range<usize>)], key: &str) -> Option<Range<usize>> {
    members
        .iter()
        .rev()
        .find(|(k, _)| k.text(text) == key)
        .map(|(_, v)| v.clone())
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

/// The index just past the string that opens at `b[at]` (a `"`).
fn string_end(b: &[u8], at: usize) -> usize {
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
fn value_end(b: &[u8], at: usize) -> usize {
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

/// The error codes CloudTrail uses for "not authorised".
const DENIED_CODES: [&str; 4] = [
    "AccessDenied",
    "AccessDeniedException",
    "UnauthorizedOperation",
    "Client.UnauthorizedOperation",
];

fn denied_success(error_code: Option<&str>) -> (bool, bool) {
    let code = error_code.filter(|c| !c.is_empty());
    (
        code.is_some_and(|c| DENIED_CODES.contains(&c) || c.contains("AccessDenied")),
        code.is_none(),
    )
}

impl Event {
    /// Parses one record as read from a log file; it must look like CloudTrail.
    ///
    /// The record is validated by serde_json once, into the text that alerts carry
    /// (records from the splitter are validated by the splitter instead: see
    /// [`Event::parse_split`]); its top-level members are then located by
    /// [`members`] without parsing again.
    pub fn parse(bytes: &[u8]) -> Result<Event, RecordError> {
        Event::parse_split(bytes, &[], Syntax::Unchecked)
    }

    /// [`Event::parse`] for a record from [`crate::input::records::RecordSplitter`]:
    /// with the positions of its top-level separators (they are checked, and found
    /// again when they do not fit the text), and what the splitter found of its
    /// syntax (a record it checked is not validated again).
    pub fn parse_split(
        bytes: &[u8],
        separators: &[u32],
        syntax: Syntax,
    ) -> Result<Event, RecordError> {
        let text = std::str::from_utf8(bytes).map_err(|e| {
            RecordError::Json(serde_json::Error::io(std::io::Error::new(
                std::io::ErrorKind::InvalidData,
                e,
            )))
        })?;
        let text = match syntax {
            Syntax::Valid => text,
            // Validated here, without white space around it.
            Syntax::Unchecked => serde_json::from_str::<&RawValue>(text)?.get(),
            Syntax::Invalid(at) => {
                // serde_json says what is wrong, in its words; it can only accept
                // the copy when white space the splitter dropped split a token
                // (`tr ue`, `1 2`).
                serde_json::from_str::<&RawValue>(text)?;
                return Err(RecordError::SplitToken(at));
            }
        };
        let raw = RecordJson(Arc::from(text));
        let text = raw.as_str();
        if !text.starts_with('{') {
            // Say what the record is: valid JSON, but not an object.
            return Err(RecordError::NotAnObject(match text.as_bytes()[0] {
                b'[' => "an array",
                b'"' => "a string",
                b't' | b'f' => "a boolean",
                b'n' => "null",
                _ => "a number",
            }));
        }
        let escapes = memchr::memchr(b'\\', text.as_bytes()).is_some();
        let located = match text.len() == bytes.len() {
            true => members_at_separators(text.as_bytes(), separators, escapes),
            false => None,
        };
        let fields: Vec<Field> = located
            .unwrap_or_else(|| members(text.as_bytes(), 0, escapes))
            .into_iter()
            .map(|(key, span)| Field {
                key,
                span,
                tree: OnceLock::new(),
                members: OnceLock::new(),
            })
            .collect();
        // Exports sometimes lower-case the keys (Athena's table does), so the test for
        // "looks like CloudTrail" ignores case; rules still address keys exactly.
        const MARKERS: [&str; 5] = [
            "eventName",
            "eventSource",
            "eventTime",
            "eventVersion",
            "userIdentity",
        ];
        if !fields.iter().any(|f| {
            MARKERS
                .iter()
                .any(|m| m.eq_ignore_ascii_case(f.key.text(text)))
        }) {
            return Err(RecordError::NotCloudTrail);
        }
        let mut known = [0u32; KNOWN_KEYS];
        let mut all_known = true;
        for (i, f) in fields.iter().enumerate() {
            match (known_key(f.key.text(text)), u32::try_from(i + 1)) {
                (Some(id), Ok(n)) => known[id] = n,
                _ => all_known = false,
            }
        }
        let lazy = Lazy {
            raw: raw.clone(),
            fields,
            known,
            all_known,
            escapes,
        };
        let code = lazy
            .find("errorCode")
            .and_then(|i| lazy.plain_str(i).or_else(|| lazy.value(i).as_str()));
        let (denied, success) = denied_success(code);
        Ok(Event {
            log_type: LogType::Cloudtrail,
            body: Body::Lazy(lazy),
            actor: OnceLock::new(),
            s3: OnceLock::new(),
            denied,
            success,
            time_ms: OnceLock::new(),
        })
    }

    /// Builds an event from any JSON object (rule tests may use partial records).
    pub fn from_value(record: Value) -> Result<Event, RecordError> {
        if !record.is_object() {
            return Err(RecordError::NotAnObject(type_name(&record)));
        }
        let (denied, success) = denied_success(record.get("errorCode").and_then(Value::as_str));
        Ok(Event {
            log_type: LogType::Cloudtrail,
            body: Body::Tree(record),
            actor: OnceLock::new(),
            s3: OnceLock::new(),
            denied,
            success,
            time_ms: OnceLock::new(),
        })
    }

    /// An S3 server access log line, parsed by [`crate::input::access_log`].
    pub fn from_access_log(fields: serde_json::Map<String, Value>) -> Event {
        let get = |k: &str| fields.get(k).and_then(Value::as_str).map(str::to_owned);
        let actor = identity::actor_from_requester(fields.get("requester").and_then(Value::as_str));
        let status = fields
            .get("http_status")
            .and_then(Value::as_u64)
            .unwrap_or(0);
        let error = get("error_code");
        let denied = status == 403 || error.as_deref().is_some_and(|c| c.contains("AccessDenied"));
        let success = error.is_none() && (1..400).contains(&status);
        let s3 = (get("bucket"), get("key_decoded"));
        Event {
            log_type: LogType::S3Access,
            body: Body::Tree(Value::Object(fields)),
            actor: OnceLock::from(actor),
            s3: OnceLock::from(s3),
            denied,
            success,
            time_ms: OnceLock::new(),
        }
    }

    pub fn log_type(&self) -> LogType {
        self.log_type
    }

    /// A top-level field of the record (parsed on first use).
    pub fn top(&self, key: &str) -> Option<&Value> {
        match &self.body {
            Body::Tree(v) => v.get(key),
            Body::Lazy(l) => l.find(key).map(|i| l.value(i)),
        }
    }

    /// The record's original text, when it was read from a log file.
    pub fn raw_text(&self) -> Option<&str> {
        match &self.body {
            Body::Tree(_) => None,
            Body::Lazy(l) => Some(l.raw.as_str()),
        }
    }

    /// Roughly the memory the event takes: its text and its fields (for bounding
    /// what reader threads hold ahead).
    pub fn footprint(&self) -> usize {
        std::mem::size_of::<Event>()
            + match &self.body {
                Body::Lazy(l) => {
                    l.raw.as_str().len() + l.fields.len() * std::mem::size_of::<Field>()
                }
                // A tree takes several times its text; access log lines are short.
                Body::Tree(_) => 4096,
            }
    }

    /// The record as JSON text for alerts: shared, not copied, when it was read from
    /// a file (it was validated then); serialised from the tree otherwise.
    pub fn record_json(&self) -> RecordJson {
        match &self.body {
            Body::Lazy(l) => l.raw.clone(),
            Body::Tree(v) => RecordJson(Arc::from(v.to_string())),
        }
    }

    /// The whole record as a JSON tree (parsed anew for a record from a file: for
    /// output and tests, not for matching).
    pub fn record(&self) -> std::borrow::Cow<'_, Value> {
        match &self.body {
            Body::Tree(v) => std::borrow::Cow::Borrowed(v),
            Body::Lazy(l) => {
                std::borrow::Cow::Owned(serde_json::from_str(l.raw.as_str()).unwrap_or(Value::Null))
            }
        }
    }

    pub fn actor(&self) -> &Actor {
        self.actor.get_or_init(|| identity::actor_with(&self))
    }

    fn s3(&self) -> &(Option<String>, Option<String>) {
        self.s3.get_or_init(|| s3_target(&self))
    }

    /// `eventTime` in milliseconds since the Unix epoch, when present and valid.
    pub fn time_ms(&self) -> Option<i64> {
        *self
            .time_ms
            .get_or_init(|| self.str("eventTime").and_then(parse_time_ms))
    }

    /// A top-level string field of the raw record.
    pub fn str(&self, key: &str) -> Option<&str> {
        match &self.body {
            Body::Tree(v) => v.get(key).and_then(Value::as_str),
            Body::Lazy(l) => {
                let i = l.find(key)?;
                l.plain_str(i).or_else(|| l.value(i).as_str())
            }
        }
    }

    /// A normalised field's value, `None` when absent.
    pub fn norm(&self, f: NormField) -> Option<Val<'_>> {
        if let (NormField::EventDenied, _) | (NormField::EventSuccess, _) = (f, ()) {
            return Some(Val::Bool(if f == NormField::EventDenied {
                self.denied
            } else {
                self.success
            }));
        }
        if let NormField::S3Bucket | NormField::S3Key = f {
            let (b, k) = self.s3();
            return (if f == NormField::S3Bucket { b } else { k })
                .as_deref()
                .map(Val::Str);
        }
        let a = self.actor();
        fn s(o: &Option<String>) -> Option<Val<'_>> {
            o.as_deref().map(Val::Str)
        }
        match f {
            NormField::ActorKind => Some(Val::Str(a.kind.as_str())),
            NormField::ActorName => s(&a.name),
            NormField::ActorArn => s(&a.arn),
            NormField::ActorAccount => s(&a.account),
            NormField::ActorPrincipalId => s(&a.principal_id),
            NormField::ActorRole => s(&a.role),
            NormField::ActorSession => s(&a.session),
            NormField::ActorPermissionSet => s(&a.permission_set),
            NormField::ActorUserId => s(&a.user_id),
            NormField::ActorViaConsole => a.via_console.map(Val::Bool),
            NormField::ActorMfa => a.mfa.map(Val::Bool),
            NormField::S3Bucket
            | NormField::S3Key
            | NormField::EventDenied
            | NormField::EventSuccess => {
                unreachable!("answered above")
            }
        }
    }

    /// Calls `f` on each value at `field` until it returns true; returns whether it
    /// did. JSON `null` counts as absent; arrays on the path and at its end yield
    /// their elements.
    pub fn any_value<'a>(&'a self, field: &FieldRef, f: &mut dyn FnMut(Val<'a>) -> bool) -> bool {
        match field {
            FieldRef::Norm(n) => self.norm(*n).is_some_and(f),
            FieldRef::Raw { path, known } => match (path.split_first(), &self.body) {
                (Some((first, rest)), Body::Lazy(l)) => {
                    let i = match known {
                        Some(id) => l.find_known(*id),
                        None => l.find(first),
                    };
                    i.is_some_and(|i| l.walk(i, rest, f))
                }
                (Some((first, rest)), Body::Tree(t)) => {
                    t.get(first.as_str()).is_some_and(|v| walk(v, rest, f))
                }
                (None, _) => false,
            },
        }
    }

    /// The first value at `field` (for titles, grouping and output).
    pub fn first_value(&self, field: &FieldRef) -> Option<Val<'_>> {
        let mut found = None;
        self.any_value(field, &mut |v| {
            found = Some(v);
            true
        });
        found
    }

    /// Whether `field` has at least one non-null value.
    pub fn exists(&self, field: &FieldRef) -> bool {
        self.any_value(field, &mut |_| true)
    }
}

impl<'a> identity::Fields<'a> for &'a Event {
    fn leaf(&self, path: &[&str]) -> Option<identity::Leaf<'a>> {
        match &self.body {
            Body::Tree(v) => v.leaf(path),
            Body::Lazy(l) => l.leaf(path),
        }
    }

    fn tree(&self, key: &str) -> Option<&'a Value> {
        self.top(key)
    }
}

fn walk<'a>(v: &'a Value, path: &[String], f: &mut dyn FnMut(Val<'a>) -> bool) -> bool {
    match v {
        Value::Null => false,
        Value::Array(items) => items.iter().any(|i| walk(i, path, f)),
        Value::Object(map) => match path.split_first() {
            Some((k, rest)) => map
                .get(k.as_str())
                .is_some_and(|child| walk(child, rest, f)),
            None => f(Val::Json(v)),
        },
        _ if path.is_empty() => f(Val::Json(v)),
        _ => false,
    }
}

fn type_name(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "an array",
        Value::Object(_) => "an object",
    }
}

/// Parses an RFC 3339 timestamp (CloudTrail's `eventTime`) to epoch milliseconds.
pub fn parse_time_ms(s: &str) -> Option<i64> {
    OffsetDateTime::parse(s, &Rfc3339)
        .ok()
        .map(|t| (t.unix_timestamp_nanos() / 1_000_000) as i64)
}

/// Formats epoch milliseconds as RFC 3339 UTC, second precision (CloudTrail's form).
pub fn format_time_ms(ms: i64) -> String {
    let t = OffsetDateTime::from_unix_timestamp_nanos(ms as i128 * 1_000_000)
        .unwrap_or(OffsetDateTime::UNIX_EPOCH);
    let t = t.replace_nanosecond(0).unwrap_or(t);
    t.format(&Rfc3339).unwrap_or_default()
}

/// The bucket and key a call touched: `requestParameters` first, else the
/// `resources` ARNs (`arn:aws:s3:::bucket/key`).
fn s3_target<'a>(r: &dyn identity::Fields<'a>) -> (Option<String>, Option<String>) {
    let str_param = |k: &str| match r.leaf(&["requestParameters", k]) {
        Some(identity::Leaf::Str(x)) if !x.is_empty() => Some(x.to_owned()),
        _ => None,
    };
    let mut bucket = str_param("bucketName");
    let mut key = str_param("key");
    if (bucket.is_none() || key.is_none())
        && let Some(resources) = r.tree("resources").and_then(Value::as_array)
    {
        for r in resources {
            let Some(arn) = r.get("ARN").and_then(Value::as_str) else {
                continue;
            };
            let Some(path) = arn.strip_prefix("arn:aws:s3:::").or_else(|| {
                arn.strip_prefix("arn:")
                    .and_then(|x| x.split_once(":s3:::"))
                    .map(|(_, p)| p)
            }) else {
                continue;
            };
            match path.split_once('/') {
                Some((b, k)) => {
                    bucket.get_or_insert_with(|| b.to_owned());
                    if key.is_none() && !k.is_empty() {
                        key = Some(k.to_owned());
                    }
                }
                None if !path.is_empty() => {
                    bucket.get_or_insert_with(|| path.to_owned());
                }
                None => {}
            }
        }
    }
    (bucket, key)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn ev(v: Value) -> Event {
        Event::from_value(v).unwrap()
    }

    fn values(e: &Event, path: &str) -> Vec<String> {
        let mut out = Vec::new();
        e.any_value(&FieldRef::parse(path).unwrap(), &mut |v| {
            out.push(v.display());
            false
        });
        out
    }

    #[test]
    fn paths_cross_arrays_and_treat_null_as_absent() {
        let e = ev(json!({
            "resources": [{"ARN": "arn:aws:s3:::b1"}, {"ARN": "arn:aws:s3:::b1/k"}],
            "requestParameters": null,
            "responseElements": {"ids": ["a", "b"], "n": 3}
        }));
        assert_eq!(
            values(&e, "resources.ARN"),
            ["arn:aws:s3:::b1", "arn:aws:s3:::b1/k"]
        );
        assert_eq!(values(&e, "responseElements.ids"), ["a", "b"]);
        assert_eq!(values(&e, "responseElements.n"), ["3"]);
        assert!(values(&e, "requestParameters").is_empty());
        assert!(values(&e, "requestParameters.bucketName").is_empty());
        assert!(!e.exists(&FieldRef::parse("requestParameters").unwrap()));
    }

    #[test]
    fn s3_target_from_request_parameters_then_resources() {
        let e = ev(json!({"requestParameters": {"bucketName": "b", "key": "a/b.txt"}}));
        assert_eq!(
            (e.s3().0.as_deref(), e.s3().1.as_deref()),
            (Some("b"), Some("a/b.txt"))
        );
        let e = ev(json!({"requestParameters": "odd string", "resources": [
            {"type": "AWS::S3::Object", "ARN": "arn:aws:s3:::logs/2024/x.gz"},
            {"type": "AWS::S3::Bucket", "ARN": "arn:aws:s3:::logs"}]}));
        assert_eq!(
            (e.s3().0.as_deref(), e.s3().1.as_deref()),
            (Some("logs"), Some("2024/x.gz"))
        );
        let e = ev(json!({"resources": [{"ARN": "arn:aws-us-gov:s3:::gov-bucket"}]}));
        assert_eq!(e.s3().0.as_deref(), Some("gov-bucket"));
    }

    #[test]
    fn denied_and_success() {
        let cases = [
            (json!({}), false, true),
            (json!({"errorCode": "AccessDenied"}), true, false),
            (
                json!({"errorCode": "Client.UnauthorizedOperation"}),
                true,
                false,
            ),
            (json!({"errorCode": "AccessDeniedException"}), true, false),
            (json!({"errorCode": "S3.AccessDenied.Foo"}), true, false),
            (json!({"errorCode": "NoSuchKey"}), false, false),
            (json!({"errorCode": ""}), false, true),
        ];
        for (r, denied, success) in cases {
            let e = ev(r.clone());
            assert_eq!((e.denied, e.success), (denied, success), "{r}");
        }
    }

    #[test]
    fn reserved_prefixes_must_name_a_normalised_field() {
        let err = FieldRef::parse("actor.nmae").unwrap_err();
        assert!(
            err.contains("actor.name") && err.contains("unknown field `actor.nmae`"),
            "{err}"
        );
        assert!(FieldRef::parse("s3.bucket").is_ok());
        assert!(FieldRef::parse("a..b").is_err());
        assert_eq!(
            FieldRef::parse("eventName").unwrap(),
            FieldRef::Raw {
                path: vec!["eventName".into()],
                known: Some(4)
            }
        );
    }

    #[test]
    fn parse_requires_a_cloudtrail_object() {
        assert!(matches!(
            Event::parse(b"[1]"),
            Err(RecordError::NotAnObject(_))
        ));
        assert!(matches!(
            Event::parse(b"{\"foo\":1}"),
            Err(RecordError::NotCloudTrail)
        ));
        assert!(matches!(
            Event::parse(b"{\"eventName\":"),
            Err(RecordError::Json(_))
        ));
        assert!(Event::parse(b"{\"eventName\":\"X\"}").is_ok());
    }

    /// Every value at `path` as text, read from the record's text (the lazy event)
    /// and from its tree: the two must agree.
    fn both_ways(raw: &str, path: &str) -> (Vec<String>, Vec<String>) {
        let lazy = Event::parse(raw.as_bytes()).unwrap();
        let tree = Event::from_value(serde_json::from_str(raw).unwrap()).unwrap();
        (values(&lazy, path), values(&tree, path))
    }

    #[test]
    fn text_walk_reads_what_the_tree_reads() {
        let raw = r#"{"eventName":"X","eventName":"Y","n":-12,"f":1.50,"z":-0,"big":123456789012345678901,
            "esc":"a\"b","t":true,"nul":null,"o":{"k":"v","k":"w","arr":[{"x":"1"},{"x":"2"},null,{"x":["3","4"]}],
            "deep":{"e":"\u0041"},"num":[1,2.5]},"list":["p",{"q":"r"}],"k\u0065y":"escaped key"}"#;
        for path in [
            "eventName",
            "n",
            "f",
            "z",
            "big",
            "esc",
            "t",
            "nul",
            "o",
            "o.k",
            "o.arr.x",
            "o.arr",
            "o.deep.e",
            "o.deep",
            "o.num",
            "list",
            "list.q",
            "key",
            "missing",
            "o.missing.x",
            "n.x",
            "esc.x",
        ] {
            let (lazy, tree) = both_ways(raw, path);
            assert_eq!(lazy, tree, "{path}");
        }
        // Duplicate keys: the last wins, as in a tree.
        assert_eq!(both_ways(raw, "eventName").0, ["Y"]);
        assert_eq!(both_ways(raw, "o.arr.x").0, ["1", "2", "3", "4"]);
    }

    #[test]
    fn identity_reads_the_text_as_it_reads_a_tree() {
        let raw = r#"{"eventVersion":"1.08","userIdentity":{"type":"AssumedRole","principalId":"AROA:jane@example.com",
            "arn":"arn:aws:sts::111122223333:assumed-role/AWSReservedSSO_Admin_0123456789abcdef/jane@example.com",
            "accountId":"111122223333","sessionContext":{"sessionIssuer":{"type":"Role","userName":"AWSReservedSSO_Admin_0123456789abcdef"},
            "attributes":{"mfaAuthenticated":"true"}}},"sessionCredentialFromConsole":"true",
            "requestParameters":{"bucketName":"b","key":"a\/b.txt"},"resources":[{"ARN":"arn:aws:s3:::b/a/b.txt"}]}"#;
        let lazy = Event::parse(raw.as_bytes()).unwrap();
        let tree = Event::from_value(serde_json::from_str(raw).unwrap()).unwrap();
        assert_eq!(lazy.actor(), tree.actor());
        assert_eq!(lazy.actor().name.as_deref(), Some("jane@example.com"));
        assert_eq!(lazy.actor().mfa, Some(true));
        assert_eq!(lazy.s3(), tree.s3());
        assert_eq!(lazy.s3().1.as_deref(), Some("a/b.txt"));
    }

    #[test]
    fn separators_locate_the_members_serde_finds() {
        use crate::input::records::RecordSplitter;
        // Real records from public sources (see the corpus README), laid out with
        // white space that the splitter drops.
        let f = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("tests/data/field/cloudtrail/panther-test-events/records.json");
        let mut checked = 0;
        {
            let file = std::fs::File::open(&f).expect("the vendored field data is present");
            let r = crate::input::decode::open(file, 1 << 30).unwrap();
            let mut split = RecordSplitter::new(r, 1 << 24);
            let mut buf = Vec::new();
            while let Ok(Some(_)) = split.next_into(&mut buf) {
                let Ok(text) = std::str::from_utf8(&buf) else {
                    continue;
                };
                let Ok(tree) = serde_json::from_str::<serde_json::Map<String, Value>>(text) else {
                    continue;
                };
                let seps = members_at_separators(&buf, split.separators(), true)
                    .expect("the splitter's separators fit its record");
                let scanned = members(&buf, 0, true);
                assert_eq!(seps.len(), scanned.len());
                for ((k1, v1), (k2, v2)) in seps.iter().zip(&scanned) {
                    assert_eq!(v1, v2);
                    let (k1, k2) = (k1.text(text), k2.text(text));
                    assert_eq!(k1, k2);
                    let want: Value = serde_json::from_str(&text[v1.clone()]).unwrap();
                    assert_eq!(tree.get(k1), Some(&want), "{k1} in {}", f.display());
                }
                let lazy = Event::parse_split(&buf, split.separators(), Syntax::Valid).unwrap();
                let from_tree = Event::from_value(Value::Object(tree.clone())).unwrap();
                assert_eq!(lazy.actor(), from_tree.actor(), "{text}");
                assert_eq!(lazy.s3(), from_tree.s3(), "{text}");
                checked += 1;
            }
        }
        assert!(checked > 100, "only {checked} corpus records checked");
        // Separators that do not fit the text are refused, not trusted.
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

    /// JSON lines: only the first line is captured with separators. Those of an
    /// earlier record must never be applied to a later one, even where they happen
    /// to fit its text (as they would here, cutting `ab` out of the second record).
    #[test]
    fn json_lines_do_not_reuse_an_earlier_record_s_separators() {
        let input = concat!(
            r#"{"eventName":"GetObject","a":"b"}"#,
            "\n",
            r#"{"eventName":1,"ab":true,"x":"x"}"#,
            "\n"
        );
        let mut events = Vec::new();
        crate::input::read_events(input.as_bytes(), Default::default(), |item| {
            if let crate::input::Item::Event { event, .. } = item {
                events.push(event);
            }
        })
        .unwrap();
        assert_eq!(events.len(), 2);
        assert_eq!(values(&events[1], "eventName"), ["1"]);
        assert_eq!(values(&events[1], "ab"), ["true"]);
        assert_eq!(values(&events[1], "x"), ["x"]);
    }

    #[test]
    fn event_time_round_trips() {
        let ms = parse_time_ms("2024-03-01T12:34:56Z").unwrap();
        assert_eq!(format_time_ms(ms), "2024-03-01T12:34:56Z");
        assert_eq!(parse_time_ms("yesterday"), None);
    }
}
