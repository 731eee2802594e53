//! One CloudTrail record as rules see it: the raw JSON (every field addressable by a
//! dotted path) plus the normalised `actor.*`, `s3.*` and `event.*` fields.

use std::borrow::Cow;
use std::sync::OnceLock;

use serde_json::Value;
use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;

use crate::identity::{self, Actor};

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
    Raw(Vec<String>),
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
        Ok(FieldRef::Raw(path.split('.').map(str::to_owned).collect()))
    }
}

/// One value found at a field: raw JSON, or a normalised string or flag.
#[derive(Debug, Clone, Copy)]
pub enum Val<'a> {
    Json(&'a Value),
    Str(&'a str),
    Bool(bool),
}

impl<'a> Val<'a> {
    /// The value as text, for string operators: strings as they are, numbers and
    /// booleans in their JSON form; objects and arrays have none.
    pub fn text(&self) -> Option<Cow<'a, str>> {
        match *self {
            Val::Str(s) => Some(Cow::Borrowed(s)),
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
            _ => None,
        }
    }

    /// The value for output: JSON as it is.
    pub fn to_json(&self) -> Value {
        match *self {
            Val::Json(v) => v.clone(),
            Val::Str(s) => Value::String(s.to_owned()),
            Val::Bool(b) => Value::Bool(b),
        }
    }

    /// The value for titles and CSV cells: text, or compact JSON for objects/arrays.
    pub fn display(&self) -> String {
        match self.text() {
            Some(t) => t.into_owned(),
            None => self.to_json().to_string(),
        }
    }
}

/// Why a record could not be used.
#[derive(Debug, thiserror::Error)]
pub enum RecordError {
    #[error("invalid JSON: {0}")]
    Json(#[from] serde_json::Error),
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
/// A record read from a log file is kept as its text with the position of each
/// top-level field; a field is parsed only when a rule, a normalised field or an
/// alert needs it (most rules look at `eventName` and a few more fields, and an
/// event is usually matched by no rule at all). Normalised fields are computed on
/// first use too.
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
    raw: Box<str>,
    /// (key, byte range of the value in `raw`, the value once parsed).
    fields: Vec<(KeyText, std::ops::Range<usize>, OnceLock<Value>)>,
    /// For each of [`KNOWN_KEYS`]: 1 + the index of its (last) field, 0 if absent.
    known: [u32; KNOWN_KEYS],
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

impl Lazy {
    fn find(&self, key: &str) -> Option<usize> {
        if let Some(id) = known_key(key) {
            return self.known[id].checked_sub(1).map(|i| i as usize);
        }
        // The last occurrence wins, as when parsing into a map.
        self.fields.iter().rposition(|(k, _, _)| match k {
            KeyText::Span(r) => &self.raw[r.clone()] == key,
            KeyText::Owned(k) => &**k == key,
        })
    }

    fn value(&self, i: usize) -> &Value {
        let (_, range, cell) = &self.fields[i];
        cell.get_or_init(|| serde_json::from_str(&self.raw[range.clone()]).unwrap_or(Value::Null))
    }

    /// A top-level string without escapes, straight from the text.
    fn plain_str(&self, i: usize) -> Option<&str> {
        let text = &self.raw[self.fields[i].1.clone()];
        let inner = text.strip_prefix('"')?.strip_suffix('"')?;
        (!inner.contains('\\')).then_some(inner)
    }
}

/// The top-level fields of a record, borrowed from its text.
struct TopLevel<'de>(Vec<(std::borrow::Cow<'de, str>, &'de serde_json::value::RawValue)>);

impl<'de> serde::Deserialize<'de> for TopLevel<'de> {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct Key<'de>(std::borrow::Cow<'de, str>);
        impl<'de> serde::Deserialize<'de> for Key<'de> {
            fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
                struct V;
                impl<'de> serde::de::Visitor<'de> for V {
                    type Value = Key<'de>;
                    fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
                        f.write_str("a string key")
                    }
                    fn visit_borrowed_str<E>(self, v: &'de str) -> Result<Key<'de>, E> {
                        Ok(Key(std::borrow::Cow::Borrowed(v)))
                    }
                    fn visit_str<E>(self, v: &str) -> Result<Key<'de>, E> {
                        Ok(Key(std::borrow::Cow::Owned(v.to_owned())))
                    }
                }
                d.deserialize_str(V)
            }
        }
        struct M;
        impl<'de> serde::de::Visitor<'de> for M {
            type Value = TopLevel<'de>;
            fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
                f.write_str("a JSON object")
            }
            fn visit_map<A: serde::de::MapAccess<'de>>(
                self,
                mut m: A,
            ) -> Result<TopLevel<'de>, A::Error> {
                let mut out = Vec::with_capacity(m.size_hint().unwrap_or(24));
                while let Some((k, v)) =
                    m.next_entry::<Key<'de>, &'de serde_json::value::RawValue>()?
                {
                    out.push((k.0, v));
                }
                Ok(TopLevel(out))
            }
        }
        d.deserialize_map(M)
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
    pub fn parse(bytes: &[u8]) -> Result<Event, RecordError> {
        let text = std::str::from_utf8(bytes).map_err(|e| {
            RecordError::Json(serde_json::Error::io(std::io::Error::new(
                std::io::ErrorKind::InvalidData,
                e,
            )))
        })?;
        let top = match serde_json::from_str::<TopLevel<'_>>(text) {
            Ok(t) => t,
            Err(e) => {
                // Say what the record is when it is valid JSON but not an object.
                return Err(match serde_json::from_str::<Value>(text) {
                    Ok(v) if !v.is_object() => RecordError::NotAnObject(type_name(&v)),
                    _ => RecordError::Json(e),
                });
            }
        };
        // Exports sometimes lower-case the keys (Athena's table does), so the test for
        // "looks like CloudTrail" ignores case; rules still address keys exactly.
        const MARKERS: [&str; 5] = [
            "eventName",
            "eventSource",
            "eventTime",
            "eventVersion",
            "userIdentity",
        ];
        if !top
            .0
            .iter()
            .any(|(k, _)| MARKERS.iter().any(|m| m.eq_ignore_ascii_case(k)))
        {
            return Err(RecordError::NotCloudTrail);
        }
        let base = text.as_ptr() as usize;
        let fields: Vec<_> = top
            .0
            .into_iter()
            .map(|(k, v)| {
                let start = v.get().as_ptr() as usize - base;
                let key = match k {
                    std::borrow::Cow::Borrowed(k) => {
                        let at = k.as_ptr() as usize - base;
                        KeyText::Span(at..at + k.len())
                    }
                    std::borrow::Cow::Owned(k) => KeyText::Owned(k.into_boxed_str()),
                };
                (key, start..start + v.get().len(), OnceLock::new())
            })
            .collect();
        let mut known = [0u32; KNOWN_KEYS];
        for (i, (k, _, _)) in fields.iter().enumerate() {
            let name = match k {
                KeyText::Span(r) => &text[r.clone()],
                KeyText::Owned(k) => k,
            };
            if let (Some(id), Ok(n)) = (known_key(name), u32::try_from(i + 1)) {
                known[id] = n;
            }
        }
        let lazy = Lazy {
            raw: text.into(),
            fields,
            known,
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
            Body::Lazy(l) => Some(&l.raw),
        }
    }

    /// The whole record as a JSON tree (parsed anew for a record from a file: for
    /// output and tests, not for matching).
    pub fn record(&self) -> std::borrow::Cow<'_, Value> {
        match &self.body {
            Body::Tree(v) => std::borrow::Cow::Borrowed(v),
            Body::Lazy(l) => {
                std::borrow::Cow::Owned(serde_json::from_str(&l.raw).unwrap_or(Value::Null))
            }
        }
    }

    pub fn actor(&self) -> &Actor {
        self.actor
            .get_or_init(|| identity::actor_with(&|k| self.top(k)))
    }

    fn s3(&self) -> &(Option<String>, Option<String>) {
        self.s3.get_or_init(|| s3_target(&|k| self.top(k)))
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
            FieldRef::Raw(path) => match path.split_first() {
                Some((first, rest)) => self.top(first).is_some_and(|v| walk(v, rest, f)),
                None => false,
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
fn s3_target<'a>(top: &dyn Fn(&str) -> Option<&'a Value>) -> (Option<String>, Option<String>) {
    let params = top("requestParameters");
    let str_param = |k: &str| {
        params
            .and_then(|p| p.get(k))
            .and_then(Value::as_str)
            .filter(|s| !s.is_empty())
            .map(str::to_owned)
    };
    let mut bucket = str_param("bucketName");
    let mut key = str_param("key");
    if bucket.is_none() || key.is_none() {
        if let Some(resources) = top("resources").and_then(Value::as_array) {
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
            FieldRef::Raw(vec!["eventName".into()])
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

    #[test]
    fn event_time_round_trips() {
        let ms = parse_time_ms("2024-03-01T12:34:56Z").unwrap();
        assert_eq!(format_time_ms(ms), "2024-03-01T12:34:56Z");
        assert_eq!(parse_time_ms("yesterday"), None);
    }
}
