//! Detection rules: one TOML file per rule, compiled once and evaluated per event.
//! This module holds the types of a compiled rule ([`Rule`], [`RuleSet`],
//! [`Severity`] …); its children load and compile them:
//!
//! - [`load`]: the rule files under a directory, read and compiled together, every
//!   problem of every file reported.
//! - [`compile`]: one rule file's TOML, with spans, into a [`Rule`].
//! - [`diagnostics`]: problems as `file:line:col: message`, with suggestions.
//! - [`matcher`]: compiled field operators.
//! - [`condition`]: the `condition` expression.
//! - `test_events`: the events of a `[[test]]` read from a file.
//!
//! Evaluating rules is the [`crate::engine`]'s; running their inline tests and the
//! conformance report are [`crate::testing`]'s.
//!
//! The language is specified in `docs/rules.md`.

pub mod compile;
pub mod condition;
pub mod diagnostics;
pub mod load;
pub mod matcher;
mod test_events;

use std::fmt;
use std::path::{Path, PathBuf};

use crate::record::{Event, FieldRef, LogType};
use condition::Cond;
use diagnostics::{Diagnostic, Diagnostics};
use matcher::Selection;

/// Alert severity, ordered from `info` to `critical`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Severity {
    Info,
    Low,
    Medium,
    High,
    Critical,
}

impl Severity {
    pub const ALL: [Severity; 5] = [
        Severity::Info,
        Severity::Low,
        Severity::Medium,
        Severity::High,
        Severity::Critical,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Severity::Info => "info",
            Severity::Low => "low",
            Severity::Medium => "medium",
            Severity::High => "high",
            Severity::Critical => "critical",
        }
    }
}

impl std::str::FromStr for Severity {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        Severity::ALL
            .into_iter()
            .find(|v| v.as_str() == s)
            .ok_or_else(|| {
                format!(
                    "unknown severity `{s}`; expected one of: info, low, medium, high, critical"
                )
            })
    }
}

impl fmt::Display for Severity {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Where a ported or imported rule came from.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct Origin {
    pub project: String,
    pub id: String,
    pub license: Option<String>,
    pub url: Option<String>,
}

/// A title with `{field}` placeholders, resolved at load time.
#[derive(Debug, Clone)]
pub struct Template {
    parts: Vec<TemplatePart>,
}

#[derive(Debug, Clone)]
enum TemplatePart {
    Lit(String),
    /// Alternatives: the first present one is used; when none is, the fallback
    /// (`{a|b|'text'}`), else `-`.
    Field(Vec<FieldRef>, Option<String>),
}

impl Template {
    /// Parses a template; `Err((byte offset, message))` for a bad placeholder.
    pub fn parse(src: &str) -> Result<Template, (usize, String)> {
        let mut parts = Vec::new();
        let mut lit = String::new();
        let mut rest = src;
        let mut base = 0;
        while let Some(open) = rest.find(['{', '}']) {
            if rest[open..].starts_with("{{") || rest[open..].starts_with("}}") {
                lit.push_str(&rest[..open + 1]);
                rest = &rest[open + 2..];
                base += open + 2;
                continue;
            }
            if rest.as_bytes()[open] == b'}' {
                return Err((
                    base + open,
                    "unmatched `}`; write `}}` for a literal brace".into(),
                ));
            }
            lit.push_str(&rest[..open]);
            let Some(close) = rest[open..].find('}') else {
                return Err((
                    base + open,
                    "unclosed `{`; write `{{` for a literal brace".into(),
                ));
            };
            // `{a|b}`: the first of the fields that is present; a last alternative
            // in single quotes is the text written when none is.
            let inner = &rest[open + 1..open + close];
            let (fields, fallback) = match inner.split_once('\'') {
                Some((fields, quoted)) => {
                    let Some(end) = quoted.rfind('\'') else {
                        return Err((
                            base + open,
                            "unclosed `'` in a placeholder's fallback text".into(),
                        ));
                    };
                    let text = &quoted[..end];
                    let fields = fields.trim_end().strip_suffix('|');
                    let Some(fields) = fields.filter(|_| quoted[end + 1..].trim().is_empty())
                    else {
                        return Err((
                            base + open,
                            "a placeholder's fallback text comes last, after `|`: `{s3.key|'a batch of objects'}`".into(),
                        ));
                    };
                    if text.contains('\'') {
                        return Err((
                            base + open,
                            "a placeholder's fallback text cannot hold `'`".into(),
                        ));
                    }
                    (fields, Some(text.to_owned()))
                }
                None => (inner, None),
            };
            let field = fields
                .split('|')
                .map(|p| FieldRef::parse(p.trim()).map_err(|m| (base + open, m)))
                .collect::<Result<Vec<_>, _>>()?;
            if !lit.is_empty() {
                parts.push(TemplatePart::Lit(std::mem::take(&mut lit)));
            }
            parts.push(TemplatePart::Field(field, fallback));
            rest = &rest[open + close + 1..];
            base += open + close + 1;
        }
        lit.push_str(rest);
        if !lit.is_empty() {
            parts.push(TemplatePart::Lit(lit));
        }
        Ok(Template { parts })
    }

    /// Renders for one event, or `None` when a placeholder's field is absent.
    pub fn render_all(&self, e: &Event) -> Option<String> {
        let mut out = String::with_capacity(128);
        for p in &self.parts {
            match p {
                TemplatePart::Lit(s) => out.push_str(s),
                TemplatePart::Field(f, fallback) => match first_of(e, f) {
                    Some(v) => v.display_to(&mut out),
                    None => out.push_str(fallback.as_deref()?),
                },
            }
        }
        Some(out)
    }

    /// Renders for one event; absent fields show as `-`.
    pub fn render(&self, e: &Event) -> String {
        let mut out = String::with_capacity(128);
        for p in &self.parts {
            match p {
                TemplatePart::Lit(s) => out.push_str(s),
                TemplatePart::Field(f, fallback) => match first_of(e, f) {
                    Some(v) => v.display_to(&mut out),
                    None => out.push_str(fallback.as_deref().unwrap_or("-")),
                },
            }
        }
        out
    }
}

fn first_of<'e>(e: &'e Event, alternatives: &[FieldRef]) -> Option<crate::record::Val<'e>> {
    alternatives.iter().find_map(|f| e.first_value(f))
}

/// An exception: an event matching it never alerts.
#[derive(Debug, Clone)]
pub struct Exclude {
    pub reason: Option<String>,
    /// `(year, month, day)` after which the exception no longer applies.
    pub expires: Option<(i32, u8, u8)>,
    pub selection: Selection,
}

/// `[threshold]`: alert when `count` matching events (or distinct values) of one
/// group fall within `window`.
#[derive(Debug, Clone)]
pub struct Threshold {
    pub count: u64,
    pub window_ms: i64,
    /// The window as written, for output.
    pub window_text: String,
    pub group_by: Vec<(String, FieldRef)>,
    pub distinct: Option<(String, FieldRef)>,
}

/// `[suppress]`: after an alert, drop alerts with the same key for `window`.
#[derive(Debug, Clone)]
pub struct Suppress {
    pub window_ms: i64,
    pub key: Vec<(String, FieldRef)>,
}

/// An inline `[[test]]`.
#[derive(Debug, Clone)]
pub struct RuleTest {
    pub name: String,
    pub expect: u64,
    /// Evaluate match conditions only: one alert per matching event.
    pub ignore_thresholds: bool,
    pub events: Vec<serde_json::Value>,
}

/// A compiled rule.
#[derive(Debug, Clone)]
pub struct Rule {
    pub id: String,
    pub title: Template,
    pub title_text: String,
    pub severity: Severity,
    /// Which records the rule sees: CloudTrail (default) or S3 server access logs.
    pub log_type: LogType,
    pub description: Option<String>,
    pub tags: Vec<String>,
    pub references: Vec<String>,
    pub runbook: Option<String>,
    pub enabled: bool,
    pub origin: Option<Origin>,
    pub selections: Vec<Selection>,
    pub condition: Cond,
    pub condition_text: String,
    pub excludes: Vec<Exclude>,
    pub threshold: Option<Threshold>,
    pub suppress: Option<Suppress>,
    pub tests: Vec<RuleTest>,
    pub path: PathBuf,
}

impl Rule {
    /// Whether the rule's condition holds and no active exception applies.
    pub fn matches(&self, e: &Event, today: (i32, u8, u8)) -> bool {
        self.log_type == e.log_type()
            && self.condition.eval(&mut |i| self.selections[i].matches(e))
            && !self
                .excludes
                .iter()
                .any(|x| x.expires.is_none_or(|d| d >= today) && x.selection.matches(e))
    }

    /// A one-line account of why the rule did not match `e` (or that it did).
    pub fn explain(&self, e: &Event, today: (i32, u8, u8)) -> String {
        if self.log_type != e.log_type() {
            return format!(
                "the rule applies to {} records, this is a {} record",
                self.log_type.as_str(),
                e.log_type().as_str()
            );
        }
        if let Some(x) = self
            .excludes
            .iter()
            .find(|x| x.expires.is_none_or(|d| d >= today) && x.selection.matches(e))
            && self.condition.eval(&mut |i| self.selections[i].matches(e))
        {
            return format!(
                "matched, but the exception `{}` applies",
                x.reason.as_deref().unwrap_or("(no reason given)")
            );
        }
        let mut parts = Vec::new();
        for s in &self.selections {
            match s.first_failure(e) {
                None => parts.push(format!("selection `{}` matched", s.name)),
                Some(c) => {
                    let got = e
                        .first_value(&c.field)
                        .map_or("absent".to_string(), |v| format!("{}", v.to_json()));
                    parts.push(format!(
                        "selection `{}` failed on `{}` (value: {got})",
                        s.name, c.path
                    ))
                }
            }
        }
        let verdict = if self.condition.eval(&mut |i| self.selections[i].matches(e)) {
            "condition holds"
        } else {
            "condition does not hold"
        };
        format!("{verdict}: {}", parts.join("; "))
    }
}

/// The rules loaded from a directory.
#[derive(Debug, Clone, Default)]
pub struct RuleSet {
    pub rules: Vec<Rule>,
    /// Non-fatal notes from loading (expired exceptions), `file:line:col: message`.
    pub warnings: Vec<Diagnostic>,
}

/// What loading checks beyond syntax.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Strictness {
    /// `rules check`: an expired exception is an error.
    Check,
    /// `scan`/`run`: an expired exception is a warning and stops applying.
    Run,
}

impl RuleSet {
    /// Loads every `*.toml` under `path` (recursively, in path order), or the one file
    /// `path` names. All problems of all files are reported together.
    pub fn load(path: &Path, strictness: Strictness) -> Result<RuleSet, Diagnostics> {
        load::load_with(path, load::Loader::new(strictness, today()))
    }

    /// [`RuleSet::load`] without the rules' `[[test]]` tables, for a scan: it only
    /// detects, and the tests' events would cost memory and load time.
    pub fn load_without_tests(path: &Path, strictness: Strictness) -> Result<RuleSet, Diagnostics> {
        load::load_with(path, load::Loader::new(strictness, today()).without_tests())
    }

    /// One rule file held in memory (a rule built into the binary); `path` names it
    /// in diagnostics.
    pub fn from_text(path: &Path, src: &str) -> Result<RuleSet, Diagnostics> {
        let mut loader = load::Loader::new(Strictness::Check, today()).without_tests();
        loader.add(path, src);
        loader.finish()
    }

    /// Rules that are enabled.
    pub fn enabled(&self) -> impl Iterator<Item = &Rule> {
        self.rules.iter().filter(|r| r.enabled)
    }
}

/// Today's date (UTC) as `(year, month, day)`, for exception expiry.
pub fn today() -> (i32, u8, u8) {
    let now = time::OffsetDateTime::now_utc();
    (now.year(), now.month() as u8, now.day())
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn templates_render_fields_and_dashes() {
        let t = Template::parse("{actor.name} did {eventName} on {s3.key} {{x}} {requestParameters.userName | actor.name}").unwrap();
        let e = Event::from_value(json!({"eventName": "GetObject", "userIdentity": {"type": "IAMUser", "userName": "al"}})).unwrap();
        assert_eq!(t.render(&e), "al did GetObject on - {x} al");
    }

    #[test]
    fn a_fallback_text_stands_in_for_absent_fields() {
        let t =
            Template::parse("deleted {s3.key | 'a batch of objects'} in {s3.bucket|''}").unwrap();
        let batch = Event::from_value(json!({"eventName": "DeleteObjects"})).unwrap();
        assert_eq!(t.render(&batch), "deleted a batch of objects in ");
        assert_eq!(
            t.render_all(&batch).as_deref(),
            Some("deleted a batch of objects in ")
        );
        let one =
            Event::from_value(json!({"requestParameters": {"bucketName": "b", "key": "k.csv"}}))
                .unwrap();
        assert_eq!(t.render(&one), "deleted k.csv in b");
        for (bad, says) in [
            ("{s3.key|'open}", "unclosed `'`"),
            ("{'text'}", "comes last"),
            ("{'text'|s3.key}", "comes last"),
            ("{s3.key|'it's'}", "cannot hold"),
        ] {
            let e = Template::parse(bad).unwrap_err();
            assert!(e.1.contains(says), "{bad}: {}", e.1);
        }
    }

    #[test]
    fn template_errors() {
        assert!(
            Template::parse("{actor.nope}")
                .unwrap_err()
                .1
                .contains("unknown field")
        );
        assert_eq!(Template::parse("a {b").unwrap_err().0, 2);
        assert!(
            Template::parse("a } b")
                .unwrap_err()
                .1
                .contains("unmatched")
        );
    }

    #[test]
    fn severities_order_and_parse() {
        assert!(Severity::Critical > Severity::High && Severity::Low > Severity::Info);
        assert_eq!("medium".parse::<Severity>().unwrap(), Severity::Medium);
        assert!(
            "warn"
                .parse::<Severity>()
                .unwrap_err()
                .contains("expected one of")
        );
    }
}
