//! Detection rules: one TOML file per rule, compiled once and evaluated per event.
//!
//! - [`syntax`]: reading a rule file into a [`Rule`], with every problem reported as
//!   `file:line:col: message`.
//! - [`matcher`]: compiled field operators.
//! - [`condition`]: the `condition` expression.
//! - [`threshold`]: counting windows and suppression, in event time.
//! - [`testing`]: the inline `[[test]]` runner behind `trailwatch rules test`.
//!
//! The language is specified in `docs/rules.md`.

pub mod condition;
pub mod matcher;
pub mod report;
pub mod syntax;
pub mod testing;
pub mod threshold;

use std::fmt;
use std::path::{Path, PathBuf};

use crate::record::{Event, FieldRef, LogType};
use condition::Cond;
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

/// One problem in a rule file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Diagnostic {
    pub path: PathBuf,
    pub line: usize,
    pub col: usize,
    pub message: String,
}

impl fmt::Display for Diagnostic {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{}:{}:{}: {}",
            self.path.display(),
            self.line,
            self.col,
            self.message
        )
    }
}

/// Every problem found while loading a rule set.
#[derive(Debug, Clone)]
pub struct Diagnostics(pub Vec<Diagnostic>);

impl fmt::Display for Diagnostics {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for d in &self.0 {
            writeln!(f, "{d}")?;
        }
        write!(f, "{} problem(s) in rules", self.0.len())
    }
}

impl std::error::Error for Diagnostics {}

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
        RuleSet::load_with(path, syntax::Loader::new(strictness, today()))
    }

    /// [`RuleSet::load`] without the rules' `[[test]]` tables, for a scan: it only
    /// detects, and the tests' events would cost memory and load time.
    pub fn load_without_tests(path: &Path, strictness: Strictness) -> Result<RuleSet, Diagnostics> {
        RuleSet::load_with(
            path,
            syntax::Loader::new(strictness, today()).without_tests(),
        )
    }

    /// One rule file held in memory (a rule built into the binary); `path` names it
    /// in diagnostics.
    pub fn from_text(path: &Path, src: &str) -> Result<RuleSet, Diagnostics> {
        let mut loader = syntax::Loader::new(Strictness::Check, today()).without_tests();
        loader.add(path, src);
        loader.finish()
    }

    fn load_with(path: &Path, loader: syntax::Loader) -> Result<RuleSet, Diagnostics> {
        let cannot = |e: std::io::Error| {
            Diagnostics(vec![Diagnostic {
                path: path.to_path_buf(),
                line: 1,
                col: 1,
                message: format!(
                    "cannot read rules: {e} (set --rules or TRAILWATCH_RULES to the rules directory)"
                ),
            }])
        };
        let tree = walk(path).map_err(cannot)?;
        // The rules directory, resolved: rule files (through symlinks) and the
        // tests' `file`s must be inside it. For a single rule file, its directory.
        let root = if tree.single_file {
            path.parent()
                .filter(|p| !p.as_os_str().is_empty())
                .unwrap_or(Path::new("."))
                .canonicalize()
        } else {
            path.canonicalize()
        }
        .map_err(cannot)?;
        let mut loader = loader.with_root(&root);
        for d in &tree.skipped_dirs {
            loader.warning_at_file(
                d,
                "symlinked directory not followed: rules are read from real directories only (a link such as `loop -> .` would make the walk endless); link the rule files themselves instead".into(),
            );
        }
        for f in &tree.files {
            if !tree.single_file
                && f.symlink_metadata()
                    .is_ok_and(|m| m.file_type().is_symlink())
                && f.canonicalize().is_ok_and(|t| !t.starts_with(&root))
            {
                loader.error_at_file(
                    f,
                    format!(
                        "the symlink leads outside the rules directory {}: a symlinked rule file must point to a file inside it",
                        root.display()
                    ),
                );
                continue;
            }
            match std::fs::read_to_string(f) {
                Ok(src) => loader.add(f, &src),
                Err(e) => loader.error_at_file(f, format!("cannot read rule file: {e}")),
            }
        }
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

/// `*.toml` files under `path` (except those named `_*`), sorted; `path` itself
/// when it is a file. Symlinked directories are not followed (see [`walk`]).
pub fn rule_files(path: &Path) -> std::io::Result<Vec<PathBuf>> {
    Ok(walk(path)?.files)
}

/// What [`walk`] found.
struct RuleTree {
    files: Vec<PathBuf>,
    /// Symlinks to directories, not followed.
    skipped_dirs: Vec<PathBuf>,
    /// `path` named one file.
    single_file: bool,
}

/// The rule files under `path`, recursively, in path order. `path` itself is
/// followed when it is a symlink; below it, symlinks to directories are not (a
/// link such as `loop -> .` or `up -> ..` would make the walk endless, and a
/// directory tree has no cycles without them), while symlinks to files are kept:
/// [`RuleSet::load`] reads them when they point inside the rules directory.
fn walk(path: &Path) -> std::io::Result<RuleTree> {
    let meta = std::fs::metadata(path)
        .map_err(|e| std::io::Error::new(e.kind(), format!("{}: {e}", path.display())))?;
    if !meta.is_dir() {
        return Ok(RuleTree {
            files: vec![path.to_path_buf()],
            skipped_dirs: Vec::new(),
            single_file: true,
        });
    }
    // Files whose name starts with `_` hold data for tools, not rules.
    let is_rule = |p: &Path| {
        p.extension().is_some_and(|x| x == "toml")
            && !p
                .file_name()
                .is_some_and(|n| n.to_string_lossy().starts_with('_'))
    };
    let mut files = Vec::new();
    let mut skipped_dirs = Vec::new();
    let mut stack = vec![path.to_path_buf()];
    while let Some(dir) = stack.pop() {
        for entry in std::fs::read_dir(&dir)? {
            let entry = entry?;
            let p = entry.path();
            // The entry itself, not what a symlink points to.
            let kind = entry.file_type()?;
            if kind.is_dir() {
                stack.push(p);
            } else if kind.is_symlink() && p.is_dir() {
                skipped_dirs.push(p);
            } else if is_rule(&p) {
                files.push(p);
            }
        }
    }
    files.sort();
    skipped_dirs.sort();
    Ok(RuleTree {
        files,
        skipped_dirs,
        single_file: false,
    })
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
