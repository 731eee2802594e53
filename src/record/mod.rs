//! One CloudTrail record as rules see it: the raw JSON (every field addressable by a
//! dotted path) plus the normalised `actor.*`, `s3.*` and `event.*` fields.
//!
//! This file holds the event and its accessors. The rest is split by what it is
//! for: `fields.rs` the names rules use (normalised fields, field references, the
//! values found), `lazy.rs` the index over a record's text that fields are read
//! from without a tree, `time.rs` `eventTime` to milliseconds and back. Walking
//! the JSON text itself is [`crate::json`]'s.

mod fields;
mod lazy;
mod time;

use std::sync::{Arc, OnceLock};

use serde_json::Value;
use serde_json::value::RawValue;

use crate::identity::{self, Actor};
use crate::json::{Syntax, members, members_at_separators};
pub use fields::{FieldRef, NormField, Val};
use fields::{KNOWN_KEYS, known_key};
use lazy::{Field, Lazy};
pub use time::{format_time_ms, now_ms, parse_time_ms};

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

/// A record's JSON text, known to be valid: shared between an event and its alerts.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RecordJson(Arc<str>);

impl RecordJson {
    /// `null`: a record left out (an alert kept where its record does not fit).
    pub fn null() -> RecordJson {
        RecordJson(Arc::from("null"))
    }

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
/// Read back from an alert's JSON (an alert kept in shared state): the record
/// as it is written there, compact.
impl<'de> serde::Deserialize<'de> for RecordJson {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let raw = Box::<RawValue>::deserialize(d)?;
        Ok(RecordJson(Arc::from(raw.get())))
    }
}

impl serde::Serialize for RecordJson {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        RawValue::from_string(self.0.to_string())
            .map_err(serde::ser::Error::custom)?
            .serialize(s)
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
