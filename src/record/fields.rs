//! What rules name and get back: the normalised fields ([`NormField`]), a field
//! reference resolved when a rule is compiled ([`FieldRef`]), and a value found
//! at one ([`Val`]), with the numbering of CloudTrail's documented top-level keys
//! that field references and the lazy index share. Apart from the event so that
//! the rule language's side of the record reads on its own.

use std::borrow::Cow;

use serde_json::Value;

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

/// CloudTrail's documented top-level keys. A record's fields are found by number
/// for these (rules look fields up many times per event), by comparing names for
/// any other key.
pub(super) const KNOWN_KEYS: usize = 31;

pub(super) fn known_key(key: &str) -> Option<usize> {
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
