//! Reading rule files: TOML with spans → [`Rule`], collecting every problem as a
//! [`Diagnostic`] (`file:line:col: message`) instead of stopping at the first.
//!
//! The document is parsed into toml's spanned tree and walked by hand, so that every
//! check — unknown keys, bad regexes, unknown fields, a condition naming a missing
//! selection — can point at the exact place in the file.

use std::collections::HashMap;
use std::ops::Range;
use std::path::{Path, PathBuf};

use ipnet::IpNet;
use regex::Regex;
use toml::Spanned;
use toml::de::{DeTable, DeValue};

use super::condition;
use super::matcher::{
    CmpOp, ExpandKind, FieldCond, FieldTest, Op, Scalar, Selection, glob_to_regex,
};
use super::{
    Diagnostic, Diagnostics, Exclude, Origin, Rule, RuleSet, RuleTest, Severity, Strictness,
    Suppress, Template, Threshold,
};
use crate::input::decode;
use crate::input::records::RecordSplitter;
use crate::record::{FieldRef, LogType};

type SValue<'a> = Spanned<DeValue<'a>>;

const TOP_KEYS: [&str; 18] = [
    "id",
    "log_type",
    "title",
    "severity",
    "description",
    "tags",
    "references",
    "runbook",
    "enabled",
    "condition",
    "origin",
    "match",
    "selection",
    "exclude",
    "threshold",
    "suppress",
    "test",
    "author",
];

const OPERATORS: [&str; 17] = [
    "eq", "in", "prefix", "suffix", "contains", "glob", "regex", "cidr", "gt", "gte", "lt", "lte",
    "exists", "not", "ci", "expand", "extract",
];

/// Collects rules and problems across files.
pub struct Loader {
    strictness: Strictness,
    /// Skip `[[test]]` tables (see [`Loader::without_tests`]).
    skip_tests: bool,
    today: (i32, u8, u8),
    rules: Vec<Rule>,
    errors: Vec<Diagnostic>,
    warnings: Vec<Diagnostic>,
    ids: HashMap<String, (PathBuf, usize, usize)>,
    /// The rules directory, resolved (see [`Loader::with_root`]).
    root: Option<PathBuf>,
}

impl Loader {
    pub fn new(strictness: Strictness, today: (i32, u8, u8)) -> Loader {
        Loader {
            strictness,
            skip_tests: false,
            today,
            rules: Vec::new(),
            errors: Vec::new(),
            warnings: Vec::new(),
            ids: HashMap::new(),
            root: None,
        }
    }

    /// The rules directory (resolved, as [`Path::canonicalize`] gives it): the
    /// `file` of a `[[test]]` must be inside it. Without one, each rule file's own
    /// directory is.
    pub fn with_root(mut self, root: &Path) -> Loader {
        self.root = Some(root.to_path_buf());
        self
    }

    /// A loader that leaves `[[test]]` tables alone: for runs that only detect,
    /// which need neither the tests' events in memory nor the time to read them
    /// (`rules check` and `rules test` read and check them).
    pub fn without_tests(mut self) -> Loader {
        self.skip_tests = true;
        self
    }

    /// Compiles one rule file's text.
    pub fn add(&mut self, path: &Path, src: &str) {
        let mut cx = FileCx {
            path,
            src,
            errors: Vec::new(),
            warnings: Vec::new(),
            strictness: self.strictness,
            skip_tests: self.skip_tests,
            today: self.today,
            inherited_expand: false,
            root: self.root.as_deref(),
        };
        let rule = cx.rule();
        let FileCx {
            mut errors,
            warnings,
            ..
        } = cx;
        errors.sort_by_key(|d| (d.line, d.col));
        self.warnings.extend(warnings);
        let clean = errors.is_empty();
        self.errors.extend(errors);
        if let (Some((rule, id_span)), true) = (rule, clean) {
            let (line, col) = line_col(src, id_span.start);
            if let Some((first, l, c)) = self.ids.get(&rule.id) {
                self.errors.push(Diagnostic {
                    path: path.to_path_buf(),
                    line,
                    col,
                    message: format!(
                        "duplicate rule id `{}`: already used at {}:{l}:{c}",
                        rule.id,
                        first.display()
                    ),
                });
                return;
            }
            self.ids
                .insert(rule.id.clone(), (path.to_path_buf(), line, col));
            self.rules.push(rule);
        }
    }

    pub fn error_at_file(&mut self, path: &Path, message: String) {
        self.errors.push(Diagnostic {
            path: path.to_path_buf(),
            line: 1,
            col: 1,
            message,
        });
    }

    pub fn warning_at_file(&mut self, path: &Path, message: String) {
        self.warnings.push(Diagnostic {
            path: path.to_path_buf(),
            line: 1,
            col: 1,
            message,
        });
    }

    pub fn finish(self) -> Result<RuleSet, Diagnostics> {
        if self.errors.is_empty() {
            Ok(RuleSet {
                rules: self.rules,
                warnings: self.warnings,
            })
        } else {
            Err(Diagnostics(self.errors))
        }
    }
}

/// 1-based line and column (in characters) of a byte offset.
pub fn line_col(src: &str, offset: usize) -> (usize, usize) {
    let offset = offset.min(src.len());
    let before = &src[..floor_char_boundary(src, offset)];
    let line = before.matches('\n').count() + 1;
    let line_start = before.rfind('\n').map_or(0, |i| i + 1);
    (line, before[line_start..].chars().count() + 1)
}

fn floor_char_boundary(s: &str, mut i: usize) -> usize {
    while i > 0 && !s.is_char_boundary(i) {
        i -= 1;
    }
    i
}

struct FileCx<'a> {
    path: &'a Path,
    src: &'a str,
    errors: Vec<Diagnostic>,
    warnings: Vec<Diagnostic>,
    strictness: Strictness,
    skip_tests: bool,
    today: (i32, u8, u8),
    /// `expand = true` of an enclosing table, for a nested `not`.
    inherited_expand: bool,
    /// The rules directory, resolved ([`Loader::with_root`]).
    root: Option<&'a Path>,
}

fn key_of<'t>(
    t: &'t DeTable<'_>,
    key: &str,
) -> Option<(&'t Spanned<std::borrow::Cow<'t, str>>, &'t SValue<'t>)> {
    t.iter().find(|(k, _)| k.get_ref() == key)
}

fn kind(v: &DeValue<'_>) -> &'static str {
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

/// The closest candidate to `word`, when close enough to suggest.
fn suggest<'c>(word: &str, candidates: &[&'c str]) -> Option<&'c str> {
    fn dist(a: &str, b: &str) -> usize {
        let b: Vec<char> = b.chars().collect();
        let mut prev: Vec<usize> = (0..=b.len()).collect();
        for (i, ca) in a.chars().enumerate() {
            let mut cur = vec![i + 1];
            for (j, cb) in b.iter().enumerate() {
                cur.push(
                    (prev[j] + usize::from(ca != *cb))
                        .min(prev[j + 1] + 1)
                        .min(cur[j] + 1),
                );
            }
            prev = cur;
        }
        prev[b.len()]
    }
    candidates
        .iter()
        .map(|c| (dist(word, c), *c))
        .filter(|(d, c)| *d <= 2.max(c.len() / 3))
        .min()
        .map(|(_, c)| c)
}

impl<'a> FileCx<'a> {
    fn err(&mut self, span: Range<usize>, message: impl Into<String>) {
        let (line, col) = line_col(self.src, span.start);
        self.errors.push(Diagnostic {
            path: self.path.to_path_buf(),
            line,
            col,
            message: message.into(),
        });
    }

    fn warn(&mut self, span: Range<usize>, message: impl Into<String>) {
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
    fn content_start(&self, span: Range<usize>) -> usize {
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

    fn string(&mut self, v: &SValue<'_>, what: &str) -> Option<String> {
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

    fn bool(&mut self, v: &SValue<'_>, what: &str) -> Option<bool> {
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

    fn uint(&mut self, v: &SValue<'_>, what: &str) -> Option<u64> {
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
    fn strings(&mut self, v: &SValue<'_>, what: &str) -> Option<Vec<(String, Range<usize>)>> {
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

    fn duration_ms(&mut self, v: &SValue<'_>, what: &str) -> Option<(i64, String)> {
        let text = self.string(v, what)?;
        match humantime::parse_duration(&text) {
            Ok(d) if d > MAX_WINDOW => {
                self.err(v.span(), format!("`{what}` must be at most 7d (7 days), found `{text}`: a rule keeps its matching events for the window plus 1h of lateness, in memory"));
                None
            }
            Ok(d) if d.as_secs() >= 1 => Some((d.as_millis() as i64, text)),
            Ok(_) => {
                self.err(v.span(), format!("`{what}` must be at least 1s"));
                None
            }
            Err(e) => {
                self.err(v.span(), format!("`{what}`: invalid duration `{text}` ({e}); write e.g. \"30s\", \"5m\", \"1h\", \"2d\""));
                None
            }
        }
    }

    fn field(&mut self, path: &str, span: Range<usize>) -> Option<FieldRef> {
        match FieldRef::parse(path) {
            Ok(f) => Some(f),
            Err(m) => {
                self.err(span, m);
                None
            }
        }
    }

    fn fields(&mut self, v: &SValue<'_>, what: &str) -> Option<Vec<(String, FieldRef)>> {
        let list = self.strings(v, what)?;
        let mut out = Vec::new();
        for (p, span) in list {
            out.push((p.clone(), self.field(&p, span)?));
        }
        Some(out)
    }

    /// A literal usable by `eq`/`in` and the comparisons.
    fn scalar(&mut self, v: &SValue<'_>, op: &str) -> Option<Scalar> {
        match v.get_ref() {
            DeValue::String(s) => Some(Scalar::Str(s.to_string())),
            DeValue::Integer(i) => {
                match i64::from_str_radix(&i.as_str().replace('_', ""), i.radix()) {
                    Ok(n) => Some(Scalar::Int(n)),
                    Err(_) => {
                        self.err(v.span(), format!("`{op}`: integer out of range"));
                        None
                    }
                }
            }
            DeValue::Float(f) => match f.as_str().replace('_', "").parse::<f64>() {
                Ok(x) => Some(Scalar::Float(x)),
                Err(_) => {
                    self.err(v.span(), format!("`{op}`: invalid number"));
                    None
                }
            },
            DeValue::Boolean(b) => Some(Scalar::Bool(*b)),
            DeValue::Datetime(d) => Some(Scalar::Str(d.to_string())),
            other => {
                self.err(
                    v.span(),
                    format!(
                        "`{op}` takes a string, number or boolean here, found {}",
                        kind(other)
                    ),
                );
                None
            }
        }
    }

    fn scalars(&mut self, v: &SValue<'_>, op: &str) -> Option<Vec<Scalar>> {
        match v.get_ref() {
            DeValue::Array(items) if items.is_empty() => {
                self.err(v.span(), format!("`{op}` needs at least one value"));
                None
            }
            DeValue::Array(items) => {
                let mut out = Vec::new();
                for i in items.iter() {
                    out.push(self.scalar(i, op)?);
                }
                Some(out)
            }
            _ => Some(vec![self.scalar(v, op)?]),
        }
    }

    /// Compiles what a field must satisfy: a scalar (equals), a list (any of), or an
    /// operator table.
    fn field_test(&mut self, v: &SValue<'_>) -> Option<FieldTest> {
        self.field_test_ci(v, false)
    }

    /// A nested `not`: `ci` and `expand` of the enclosing table carry over.
    fn nested_not(&mut self, v: &SValue<'_>, ci: bool, expand: bool) -> Option<FieldTest> {
        let saved = std::mem::replace(&mut self.inherited_expand, expand);
        let t = self.field_test_ci(v, ci);
        self.inherited_expand = saved;
        t
    }

    /// An `expand = true` string operator: its operands become templates.
    fn expand_op(&mut self, name: &str, list: Vec<(String, Range<usize>)>, ci: bool) -> Option<Op> {
        let kind = match name {
            "eq" | "in" => ExpandKind::Eq,
            "prefix" => ExpandKind::Prefix,
            "suffix" => ExpandKind::Suffix,
            _ => ExpandKind::Contains,
        };
        let mut any = Vec::new();
        for (text, span) in list {
            match crate::rules::Template::parse(&text) {
                Ok(t) => any.push(t),
                Err((_, msg)) => {
                    self.err(span, format!("`{name}` with expand: {msg}"));
                    return None;
                }
            }
        }
        Some(Op::Expand { kind, any, ci })
    }

    /// As [`Self::field_test`], with `ci` inherited from an enclosing table (a `not`
    /// inside a `ci = true` table is case-insensitive too).
    fn field_test_ci(&mut self, v: &SValue<'_>, inherited_ci: bool) -> Option<FieldTest> {
        let scalar_list = !matches!(v.get_ref(), DeValue::Table(_))
            && match v.get_ref() {
                DeValue::Array(items) => items
                    .iter()
                    .all(|i| matches!(i.get_ref(), DeValue::String(_))),
                DeValue::String(_) => true,
                _ => false,
            };
        if self.inherited_expand && scalar_list {
            // `not = "{field}"` inside an `expand = true` table.
            let op = self
                .strings(v, "eq")
                .and_then(|l| self.expand_op("eq", l, inherited_ci))?;
            return Some(FieldTest::Table {
                ops: vec![op],
                exists: None,
                not: None,
                extract: None,
            });
        }
        match v.get_ref() {
            DeValue::Table(t) => self.op_table(t, v.span(), inherited_ci),
            DeValue::Array(items) if items.is_empty() => {
                self.err(
                    v.span(),
                    "an empty list matches nothing; give at least one value",
                );
                None
            }
            DeValue::Array(items)
                if items
                    .iter()
                    .all(|i| !matches!(i.get_ref(), DeValue::Table(_) | DeValue::Array(_))) =>
            {
                Some(FieldTest::Table {
                    ops: vec![eq_op(self.scalars(v, "eq")?, inherited_ci)],
                    exists: None,
                    not: None,
                    extract: None,
                })
            }
            DeValue::Array(items) => {
                let mut alts = Vec::new();
                for i in items.iter() {
                    alts.push(self.field_test_ci(i, inherited_ci)?);
                }
                Some(FieldTest::AnyOf(alts))
            }
            _ => Some(FieldTest::Table {
                ops: vec![eq_op(vec![self.scalar(v, "eq")?], inherited_ci)],
                exists: None,
                not: None,
                extract: None,
            }),
        }
    }

    fn op_table(
        &mut self,
        t: &DeTable<'_>,
        span: Range<usize>,
        inherited_ci: bool,
    ) -> Option<FieldTest> {
        if t.is_empty() {
            self.err(
                span,
                format!("empty operator table; use one of: {}", OPERATORS.join(", ")),
            );
            return None;
        }
        let ci = match key_of(t, "ci") {
            Some((_, v)) => self.bool(v, "ci")?,
            None => inherited_ci,
        };
        let lower = |s: String| if ci { s.to_lowercase() } else { s };
        let expand = match key_of(t, "expand") {
            Some((_, v)) => self.bool(v, "expand")?,
            None => self.inherited_expand,
        };
        let expandable = ["eq", "in", "prefix", "suffix", "contains", "not"];
        if let Some((k, _)) = key_of(t, "expand")
            && expand
            && !t
                .iter()
                .any(|(k, _)| expandable.contains(&k.get_ref().as_ref()))
        {
            self.err(k.span(), "`expand = true` needs an `eq`, `in`, `prefix`, `suffix`, `contains` or `not` in the same table");
            return None;
        }
        let extract = match key_of(t, "extract") {
            None => None,
            Some((_, v)) => {
                let pat = self.string(v, "extract")?;
                match Regex::new(&if ci {
                    format!("(?i){pat}")
                } else {
                    pat.clone()
                }) {
                    Ok(r) if r.captures_len() == 2 => Some(r),
                    Ok(_) => {
                        self.err(v.span(), format!("`extract` needs a regex with exactly one capture group, such as '^arn:aws:kms:[^:]*:([^:]*):'; `{pat}` has {}", r_groups(&pat)));
                        return None;
                    }
                    Err(e) => {
                        let msg = e
                            .to_string()
                            .lines()
                            .map(str::trim)
                            .filter(|l| !l.is_empty())
                            .collect::<Vec<_>>()
                            .join(" ");
                        self.err(v.span(), format!("invalid extract regex `{pat}`: {msg}"));
                        return None;
                    }
                }
            }
        };
        let mut ops = Vec::new();
        let mut exists = None;
        let mut not = None;
        let mut ok = true;
        for (k, v) in t.iter() {
            let name = k.get_ref().as_ref();
            let op = match name {
                "ci" | "expand" | "extract" => continue,
                "eq" | "in" | "prefix" | "suffix" | "contains" if expand => {
                    self.strings(v, name).and_then(|l| self.expand_op(name, l, ci))
                }
                "glob" | "regex" | "cidr" | "gt" | "gte" | "lt" | "lte" if expand => {
                    self.err(k.span(), format!("`expand` applies to eq, in, prefix, suffix and contains, not to `{name}`; put `{name}` in a table without expand"));
                    None
                }
                "eq" | "in" => self.scalars(v, name).map(|any| eq_op(any, ci)),
                "prefix" | "suffix" | "contains" => self.strings(v, name).map(|l| {
                    let any: Vec<String> = l.into_iter().map(|(s, _)| lower(s)).collect();
                    match name {
                        "prefix" => Op::Prefix { any, ci },
                        "suffix" => Op::Suffix { any, ci },
                        _ => Op::Contains { any, ci },
                    }
                }),
                "glob" | "regex" => self.strings(v, name).and_then(|l| {
                    let mut any = Vec::new();
                    for (pat, span) in l {
                        let compiled = if name == "glob" {
                            glob_to_regex(&pat, ci)
                        } else {
                            Regex::new(&if ci { format!("(?i){pat}") } else { pat.clone() })
                        };
                        match compiled {
                            Ok(r) => any.push(r),
                            Err(e) => {
                                let msg = e.to_string().lines().map(str::trim).filter(|l| !l.is_empty()).collect::<Vec<_>>().join(" ");
                                self.err(span, format!("invalid {name} `{pat}`: {msg}"));
                                return None;
                            }
                        }
                    }
                    Some(Op::Regex { any })
                }),
                "cidr" => self.strings(v, name).and_then(|l| {
                    let mut any = Vec::new();
                    for (s, span) in l {
                        match s.parse::<IpNet>().or_else(|_| s.parse::<std::net::IpAddr>().map(IpNet::from)) {
                            Ok(n) => any.push(n),
                            Err(_) => {
                                self.err(span, format!("invalid CIDR `{s}`: write e.g. \"10.0.0.0/8\" or \"2001:db8::/32\""));
                                return None;
                            }
                        }
                    }
                    Some(Op::Cidr { any })
                }),
                "gt" | "gte" | "lt" | "lte" => {
                    let op = match name {
                        "gt" => CmpOp::Gt,
                        "gte" => CmpOp::Gte,
                        "lt" => CmpOp::Lt,
                        _ => CmpOp::Lte,
                    };
                    match self.scalar(v, name) {
                        Some(Scalar::Bool(_)) => {
                            self.err(v.span(), format!("`{name}` compares numbers or strings, not booleans"));
                            None
                        }
                        Some(bound) => Some(Op::Cmp { op, bound }),
                        None => None,
                    }
                }
                "exists" => {
                    exists = self.bool(v, "exists");
                    if exists.is_none() {
                        ok = false;
                    }
                    continue;
                }
                "not" => {
                    not = self.nested_not(v, ci, expand).map(Box::new);
                    if not.is_none() {
                        ok = false;
                    }
                    continue;
                }
                other => {
                    let hint = suggest(other, &OPERATORS).map(|s| format!(" (did you mean `{s}`?)")).unwrap_or_default();
                    self.err(k.span(), format!("unknown operator `{other}`{hint}; operators are: {}", OPERATORS.join(", ")));
                    None
                }
            };
            match op {
                Some(op) => ops.push(op),
                None => ok = false,
            }
        }
        if ops.is_empty() && exists.is_none() && not.is_none() && ok {
            self.err(
                span,
                "`ci`, `expand` or `extract` alone test nothing; add an operator such as `eq`",
            );
            return None;
        }
        ok.then_some(FieldTest::Table {
            ops,
            exists,
            not,
            extract,
        })
    }

    /// A selection: every key is a field path, every value what it must satisfy.
    fn selection(
        &mut self,
        name: &str,
        t: &DeTable<'_>,
        span: Range<usize>,
        reserved: &[&str],
    ) -> Option<Selection> {
        let mut fields = Vec::new();
        let mut ok = true;
        for (k, v) in t.iter() {
            let path = k.get_ref().as_ref();
            if reserved.contains(&path) {
                continue;
            }
            let field = self.field(path, k.span());
            let test = self.field_test(v);
            match (field, test) {
                (Some(field), Some(test)) => fields.push(FieldCond {
                    path: path.to_owned(),
                    field,
                    test,
                }),
                _ => ok = false,
            }
        }
        if fields.is_empty() && ok {
            self.err(span, format!("selection `{name}` has no field conditions"));
            return None;
        }
        ok.then(|| Selection {
            name: name.to_owned(),
            fields,
        })
    }

    fn required<'t>(
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

    fn rule(&mut self) -> Option<(Rule, Range<usize>)> {
        let (doc, errors) = DeTable::parse_recoverable(self.src);
        if !errors.is_empty() {
            for e in errors {
                let span = e.span().unwrap_or(0..0);
                let msg = e.message().trim().to_owned();
                self.err(span, format!("TOML syntax: {msg}"));
            }
            return None;
        }
        let t = doc.get_ref();

        for (k, _) in t.iter() {
            let key = k.get_ref().as_ref();
            if !TOP_KEYS.contains(&key) {
                let hint = suggest(key, &TOP_KEYS)
                    .map(|s| format!(" (did you mean `{s}`?)"))
                    .unwrap_or_default();
                let extra = if key.contains('.')
                    || key.chars().next().is_some_and(|c| c.is_ascii_lowercase())
                {
                    "; field conditions go under [match] or [selection.NAME]"
                } else {
                    ""
                };
                self.err(k.span(), format!("unknown key `{key}`{hint}{extra}"));
            }
        }

        let id_v = self.required(t, "id", "");
        let id_span = id_v.map_or(0..0, |v| v.span());
        let id = id_v.and_then(|v| self.string(v, "id"));
        if let Some(id) = &id {
            let valid = id
                .bytes()
                .next()
                .is_some_and(|b| b.is_ascii_lowercase() || b.is_ascii_digit())
                && id
                    .bytes()
                    .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-');
            if !valid {
                self.err(id_span.clone(), format!("invalid rule id `{id}`: use lowercase letters, digits and `-`, starting with a letter or digit"));
            }
        }
        let title_v = self.required(t, "title", "");
        let title_text = title_v.and_then(|v| self.string(v, "title"));
        let title = match (&title_text, title_v) {
            (Some(text), Some(v)) => match Template::parse(text) {
                Ok(tpl) => Some(tpl),
                Err((off, msg)) => {
                    self.err(
                        v.span().start + 1 + off..v.span().end,
                        format!("title: {msg}"),
                    );
                    None
                }
            },
            _ => None,
        };
        let severity = self.required(t, "severity", "").and_then(|v| {
            let s = self.string(v, "severity")?;
            match s.parse::<Severity>() {
                Ok(sev) => Some(sev),
                Err(m) => {
                    self.err(v.span(), m);
                    None
                }
            }
        });
        let opt_string =
            |cx: &mut Self, key: &str| key_of(t, key).and_then(|(_, v)| cx.string(v, key));
        let description = opt_string(self, "description");
        let runbook = opt_string(self, "runbook");
        let list = |cx: &mut Self, key: &str| {
            key_of(t, key)
                .and_then(|(_, v)| cx.strings(v, key))
                .map(|l| l.into_iter().map(|(s, _)| s).collect())
                .unwrap_or_default()
        };
        let tags: Vec<String> = list(self, "tags");
        let references: Vec<String> = list(self, "references");
        let log_type = match key_of(t, "log_type") {
            None => Some(LogType::Cloudtrail),
            Some((_, v)) => self.string(v, "log_type").and_then(|s| {
                let found = LogType::ALL.into_iter().find(|l| l.as_str() == s);
                if found.is_none() {
                    self.err(
                        v.span(),
                        format!("unknown log_type `{s}`; expected \"cloudtrail\" or \"s3_access\""),
                    );
                }
                found
            }),
        };
        let enabled = key_of(t, "enabled")
            .and_then(|(_, v)| self.bool(v, "enabled"))
            .unwrap_or(true);
        let origin = key_of(t, "origin").and_then(|(_, v)| self.origin(v));

        // Selections: [match] first, then [selection.NAME] in file order. Names are
        // collected even when a selection fails to compile, so the condition is
        // checked against what the file declares, without cascading errors.
        let mut declared: Vec<(String, Range<usize>, Option<Selection>)> = Vec::new();
        if let Some((_, v)) = key_of(t, "match") {
            match v.get_ref() {
                DeValue::Table(mt) => {
                    let sel = self.selection("match", mt, v.span(), &[]);
                    declared.push(("match".to_owned(), v.span(), sel));
                }
                other => self.err(
                    v.span(),
                    format!(
                        "`match` must be a table of field conditions, found {}",
                        kind(other)
                    ),
                ),
            }
        }
        if let Some((_, v)) = key_of(t, "selection") {
            match v.get_ref() {
                DeValue::Table(st) => {
                    for (k, sv) in st.iter() {
                        let name = k.get_ref().as_ref();
                        let valid = !name.is_empty()
                            && name
                                .bytes()
                                .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-')
                            && !["and", "or", "not", "match"].contains(&name);
                        if !valid {
                            self.err(k.span(), format!("invalid selection name `{name}`: use letters, digits, `_` and `-` (not and/or/not/match)"));
                            continue;
                        }
                        match sv.get_ref() {
                            DeValue::Table(tbl) => {
                                let sel = self.selection(name, tbl, sv.span(), &[]);
                                declared.push((name.to_owned(), k.span(), sel));
                            }
                            other => self.err(
                                sv.span(),
                                format!(
                                    "selection `{name}` must be a table, found {}",
                                    kind(other)
                                ),
                            ),
                        }
                    }
                }
                other => self.err(
                    v.span(),
                    format!(
                        "`selection` must hold tables such as [selection.NAME], found {}",
                        kind(other)
                    ),
                ),
            }
        }
        let names: Vec<&str> = declared.iter().map(|(n, _, _)| n.as_str()).collect();
        let (condition_text, cond) = match key_of(t, "condition") {
            Some((_, v)) => {
                let text = self.string(v, "condition");
                let cond = text
                    .as_ref()
                    .and_then(|text| match condition::parse(text, &names) {
                        Ok(c) => Some(c),
                        Err(e) => {
                            let start = self.content_start(v.span()) + e.offset;
                            self.err(start..start + 1, e.message);
                            None
                        }
                    });
                (text.unwrap_or_default(), cond)
            }
            None if names.contains(&"match") => {
                ("match".to_owned(), condition::parse("match", &names).ok())
            }
            None => {
                self.err(0..0, "rule has no [match] table; add one, or a `condition` naming [selection.NAME] tables");
                ("match".to_owned(), None)
            }
        };
        if let Some(c) = &cond {
            let mut used = Vec::new();
            c.selections(&mut used);
            for (i, (name, span, _)) in declared.iter().enumerate() {
                if !used.contains(&i) {
                    self.err(
                        span.clone(),
                        format!(
                            "selection `{name}` is not used in `condition` (`{condition_text}`)"
                        ),
                    );
                }
            }
        }
        let selections: Option<Vec<Selection>> = declared.into_iter().map(|(_, _, s)| s).collect();

        let excludes = self.excludes(t);
        let threshold = key_of(t, "threshold").and_then(|(_, v)| self.threshold(v));
        let suppress =
            key_of(t, "suppress").and_then(|(_, v)| self.suppress(v, threshold.as_ref()));
        let tests = match self.skip_tests {
            true => Some(Vec::new()),
            false => self.tests(t, log_type.unwrap_or_default()),
        };

        Some((
            Rule {
                id: id?,
                title: title?,
                title_text: title_text?,
                severity: severity?,
                log_type: log_type?,
                description,
                tags,
                references,
                runbook,
                enabled,
                origin,
                selections: selections?,
                condition: cond?,
                condition_text,
                excludes: excludes?,
                threshold,
                suppress,
                tests: tests?,
                path: self.path.to_path_buf(),
            },
            id_span,
        ))
    }

    fn origin(&mut self, v: &SValue<'_>) -> Option<Origin> {
        let DeValue::Table(t) = v.get_ref() else {
            self.err(v.span(), "`origin` must be a table such as { project = \"...\", id = \"...\", license = \"...\" }");
            return None;
        };
        for (k, _) in t.iter() {
            if !["project", "id", "license", "url"].contains(&k.get_ref().as_ref()) {
                self.err(
                    k.span(),
                    format!(
                        "unknown key `{}` in `origin`; expected project, id, license, url",
                        k.get_ref()
                    ),
                );
            }
        }
        let get = |cx: &mut Self, key: &str| {
            key_of(t, key).and_then(|(_, v)| cx.string(v, &format!("origin.{key}")))
        };
        let project = get(self, "project");
        let id = get(self, "id");
        if project.is_none() || id.is_none() {
            self.err(v.span(), "`origin` needs both `project` and `id`");
            return None;
        }
        Some(Origin {
            project: project?,
            id: id?,
            license: get(self, "license"),
            url: get(self, "url"),
        })
    }

    fn excludes(&mut self, t: &DeTable<'_>) -> Option<Vec<Exclude>> {
        let Some((_, v)) = key_of(t, "exclude") else {
            return Some(Vec::new());
        };
        let DeValue::Array(items) = v.get_ref() else {
            self.err(
                v.span(),
                "`exclude` must be an array of tables: write [[exclude]]",
            );
            return None;
        };
        let mut out = Vec::new();
        let mut ok = true;
        for (n, item) in items.iter().enumerate() {
            let DeValue::Table(xt) = item.get_ref() else {
                self.err(item.span(), "each [[exclude]] must be a table");
                ok = false;
                continue;
            };
            let reason = key_of(xt, "reason").and_then(|(_, v)| self.string(v, "reason"));
            let expires = match key_of(xt, "expires") {
                None => None,
                Some((_, ev)) => {
                    match ev.get_ref() {
                        DeValue::Datetime(d) if d.date.is_some() && d.time.is_none() => {
                            let d = d.date.unwrap();
                            let date = (i32::from(d.year), d.month, d.day);
                            if date < self.today {
                                let msg = format!(
                                    "exception {} expired on {:04}-{:02}-{:02}: remove it or move `expires` forward",
                                    reason
                                        .as_deref()
                                        .map_or(format!("#{}", n + 1), |r| format!("`{r}`")),
                                    date.0,
                                    date.1,
                                    date.2
                                );
                                match self.strictness {
                                    Strictness::Check => self.err(ev.span(), msg),
                                    Strictness::Run => self
                                        .warn(ev.span(), format!("{msg} (it no longer applies)")),
                                }
                            }
                            Some(date)
                        }
                        _ => {
                            self.err(ev.span(), "`expires` must be a TOML date such as 2027-03-31 (no quotes, no time)");
                            ok = false;
                            None
                        }
                    }
                }
            };
            match self.selection(
                &format!("exclude #{}", n + 1),
                xt,
                item.span(),
                &["reason", "expires"],
            ) {
                Some(selection) => out.push(Exclude {
                    reason,
                    expires,
                    selection,
                }),
                None => ok = false,
            }
        }
        ok.then_some(out)
    }

    fn threshold(&mut self, v: &SValue<'_>) -> Option<Threshold> {
        let DeValue::Table(t) = v.get_ref() else {
            self.err(v.span(), "`threshold` must be a table: write [threshold]");
            return None;
        };
        for (k, _) in t.iter() {
            if !["count", "window", "group_by", "distinct"].contains(&k.get_ref().as_ref()) {
                self.err(k.span(), format!("unknown key `{}` in [threshold]; expected count, window, group_by, distinct", k.get_ref()));
            }
        }
        let count = self.required(t, "count", " in [threshold]").and_then(|c| {
            let n = self.uint(c, "count")?;
            if n == 0 {
                self.err(c.span(), "`count` must be at least 1");
                return None;
            }
            Some(n)
        });
        let window = self
            .required(t, "window", " in [threshold]")
            .and_then(|w| self.duration_ms(w, "window"));
        let group_by = match key_of(t, "group_by") {
            Some((_, g)) => self.fields(g, "group_by"),
            None => Some(Vec::new()),
        };
        let distinct = match key_of(t, "distinct") {
            Some((_, d)) => {
                let path = self.string(d, "distinct")?;
                Some(Some((path.clone(), self.field(&path, d.span())?)))
            }
            None => Some(None),
        };
        let (window_ms, window_text) = window?;
        Some(Threshold {
            count: count?,
            window_ms,
            window_text,
            group_by: group_by?,
            distinct: distinct?,
        })
    }

    fn suppress(&mut self, v: &SValue<'_>, threshold: Option<&Threshold>) -> Option<Suppress> {
        let DeValue::Table(t) = v.get_ref() else {
            self.err(v.span(), "`suppress` must be a table: write [suppress]");
            return None;
        };
        for (k, _) in t.iter() {
            if !["window", "key"].contains(&k.get_ref().as_ref()) {
                self.err(
                    k.span(),
                    format!(
                        "unknown key `{}` in [suppress]; expected window, key",
                        k.get_ref()
                    ),
                );
            }
        }
        let window = self
            .required(t, "window", " in [suppress]")
            .and_then(|w| self.duration_ms(w, "window"));
        let key = match key_of(t, "key") {
            Some((_, k)) => self.fields(k, "key")?,
            None => threshold.map(|t| t.group_by.clone()).unwrap_or_default(),
        };
        Some(Suppress {
            window_ms: window?.0,
            key,
        })
    }

    fn tests(&mut self, t: &DeTable<'_>, log_type: LogType) -> Option<Vec<RuleTest>> {
        let Some((_, v)) = key_of(t, "test") else {
            return Some(Vec::new());
        };
        let DeValue::Array(items) = v.get_ref() else {
            self.err(
                v.span(),
                "`test` must be an array of tables: write [[test]]",
            );
            return None;
        };
        let mut out = Vec::new();
        let mut ok = true;
        for (n, item) in items.iter().enumerate() {
            match self.test(item, n, log_type) {
                Some(test) => out.push(test),
                None => ok = false,
            }
        }
        ok.then_some(out)
    }

    fn test(&mut self, item: &SValue<'_>, n: usize, log_type: LogType) -> Option<RuleTest> {
        let DeValue::Table(tt) = item.get_ref() else {
            self.err(item.span(), "each [[test]] must be a table");
            return None;
        };
        for (k, _) in tt.iter() {
            if !["name", "expect", "events", "file", "ignore_thresholds"]
                .contains(&k.get_ref().as_ref())
            {
                self.err(k.span(), format!("unknown key `{}` in [[test]]; expected name, expect, events, file, ignore_thresholds", k.get_ref()));
            }
        }
        let name = key_of(tt, "name")
            .and_then(|(_, v)| self.string(v, "name"))
            .unwrap_or_else(|| format!("test #{}", n + 1));
        let expect = match key_of(tt, "expect") {
            Some((_, v)) => self.uint(v, "expect"),
            None => {
                self.err(item.span(), format!("test `{name}` needs `expect` (the number of alerts its events must produce)"));
                None
            }
        };
        let ignore_thresholds = key_of(tt, "ignore_thresholds")
            .and_then(|(_, v)| self.bool(v, "ignore_thresholds"))
            .unwrap_or(false);
        let mut events = Vec::new();
        let mut ok = true;
        if let Some((_, ev)) = key_of(tt, "events") {
            match ev.get_ref() {
                DeValue::Array(list) => {
                    for e in list.iter() {
                        let Some(text) = self.string(e, "events") else {
                            ok = false;
                            continue;
                        };
                        let trimmed = text.trim();
                        if log_type == LogType::S3Access && !trimmed.starts_with('{') {
                            // An access log line as AWS writes it.
                            match crate::input::access_log::parse_line(trimmed) {
                                Ok(m) => events.push(serde_json::Value::Object(m)),
                                Err(why) => {
                                    self.err(
                                        e.span(),
                                        format!("test `{name}`: malformed access log line: {why}"),
                                    );
                                    ok = false;
                                }
                            }
                            continue;
                        }
                        match serde_json::from_str::<serde_json::Value>(&text) {
                            Ok(j) if j.is_object() => events.push(j),
                            Ok(_) => {
                                self.err(
                                    e.span(),
                                    format!("test `{name}`: each event must be a JSON object"),
                                );
                                ok = false;
                            }
                            Err(err) => {
                                self.err(
                                    e.span(),
                                    format!("test `{name}`: invalid JSON in event: {err}"),
                                );
                                ok = false;
                            }
                        }
                    }
                }
                other => {
                    self.err(
                        ev.span(),
                        format!(
                            "`events` must be an array of JSON strings, found {}",
                            kind(other)
                        ),
                    );
                    ok = false;
                }
            }
        }
        if let Some((_, fv)) = key_of(tt, "file") {
            if let Some(rel) = self.string(fv, "file") {
                match self.test_file(&rel).and_then(|f| read_event_file(&f)) {
                    Ok(list) => events.extend(list),
                    Err(e) => {
                        self.err(fv.span(), format!("test `{name}`: {e}"));
                        ok = false;
                    }
                }
            } else {
                ok = false;
            }
        }
        if events.is_empty() && ok {
            self.err(item.span(), format!("test `{name}` has no events: add `events = ['''{{...}}''']` or `file = \"...\"`"));
            return None;
        }
        if !ok {
            return None;
        }
        Some(RuleTest {
            name,
            expect: expect?,
            ignore_thresholds,
            events,
        })
    }
}

impl FileCx<'_> {
    /// Where a test's `file` is: `rel` from the rule file's directory, which must
    /// stay inside the rules directory. Refused before anything is opened when it
    /// leads out as written (an absolute path, `..`), and after resolving when a
    /// symlink leads out. `Err` is the message.
    fn test_file(&self, rel: &str) -> Result<PathBuf, String> {
        let dir = self
            .path
            .parent()
            .filter(|p| !p.as_os_str().is_empty())
            .unwrap_or(Path::new("."));
        let cannot =
            |e: &dyn std::fmt::Display| format!("cannot use {}: {e}", dir.join(rel).display());
        let dir = dir.canonicalize().map_err(|e| cannot(&e))?;
        let root = self.root.unwrap_or(&dir);
        let outside = || {
            format!(
                "`{rel}` is outside the rules directory {}: a test file is named relative to the rule file and must be inside that directory",
                root.display()
            )
        };
        if !lexically_normal(&dir.join(rel)).starts_with(root) {
            return Err(outside());
        }
        let file = dir.join(rel).canonicalize().map_err(|e| cannot(&e))?;
        if !file.starts_with(root) {
            return Err(outside());
        }
        if !std::fs::metadata(&file).map_err(|e| cannot(&e))?.is_file() {
            return Err(cannot(&"not a regular file"));
        }
        Ok(file)
    }
}

/// `p` with `.` and `..` components resolved as written (no file system access).
fn lexically_normal(p: &Path) -> PathBuf {
    use std::path::Component;
    let mut out = PathBuf::new();
    for c in p.components() {
        match c {
            Component::CurDir => {}
            Component::ParentDir => {
                out.pop();
            }
            other => out.push(other),
        }
    }
    out
}

/// The longest `[threshold]` or `[suppress]` window. State is kept in memory for
/// the window plus [`super::threshold::LATENESS_MS`], for the whole of a scan or
/// the life of `trailwatch run`: a week bounds that and still covers slow
/// patterns over a working week; longer baselines belong in a data lake.
pub const MAX_WINDOW: std::time::Duration = std::time::Duration::from_secs(7 * 24 * 60 * 60);

/// How many capture groups a pattern has, for the `extract` error message.
fn r_groups(pat: &str) -> String {
    match Regex::new(pat) {
        Ok(r) => format!("{} capture groups", r.captures_len() - 1),
        Err(_) => "an error".into(),
    }
}

/// `eq`/`in`: string literals are lower-cased for case-insensitive matching.
fn eq_op(any: Vec<Scalar>, ci: bool) -> Op {
    let any = any
        .into_iter()
        .map(|s| match s {
            Scalar::Str(x) if ci => Scalar::Str(x.to_lowercase()),
            other => other,
        })
        .collect();
    Op::Eq { any, ci }
}

/// Reads test events from a file in any supported log layout (gzip or not).
fn read_event_file(path: &Path) -> Result<Vec<serde_json::Value>, String> {
    let f = std::fs::File::open(path).map_err(|e| e.to_string())?;
    let r = decode::open(f, decode::DEFAULT_MAX_DECOMPRESSED).map_err(|e| e.to_string())?;
    let mut split = RecordSplitter::new(r, crate::input::records::DEFAULT_MAX_RECORD_BYTES);
    let mut buf = Vec::new();
    let mut out = Vec::new();
    while let Some(slot) = split.next_into(&mut buf).map_err(|e| e.to_string())? {
        let v: serde_json::Value =
            serde_json::from_slice(&buf).map_err(|e| format!("record {}: {e}", slot.index))?;
        out.push(v);
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::record::Event;
    use serde_json::json;

    /// Compiles a rule whose [match] is `body` and tells whether it matches `event`.
    fn matches(body: &str, event: serde_json::Value) -> bool {
        let src = format!("id = \"t\"\ntitle = \"t\"\nseverity = \"low\"\n[match]\n{body}\n");
        let mut l = Loader::new(Strictness::Check, (2026, 1, 1));
        l.add(Path::new("t.toml"), &src);
        let set = l.finish().unwrap_or_else(|d| panic!("{body}: {d}"));
        set.rules[0].matches(&Event::from_value(event).unwrap(), (2026, 1, 1))
    }

    fn error(src: &str) -> String {
        let mut l = Loader::new(Strictness::Check, (2026, 1, 1));
        l.add(Path::new("t.toml"), src);
        l.finish().unwrap_err().to_string()
    }

    /// Each operator as written in TOML, on a realistic event.
    #[test]
    fn operators_as_written() {
        let e = json!({
            "eventName": "PutBucketPolicy",
            "sourceIPAddress": "10.1.2.3",
            "userAgent": "Boto3/1.34.0 Python/3.12",
            "eventTime": "2024-05-01T10:00:00Z",
            "requestParameters": {"bucketName": "Prod-Data", "policy": {"Statement": [{"Effect": "Allow", "Principal": "*"}]}},
            "additionalEventData": {"bytesTransferredOut": 2048},
            "readOnly": false
        });
        let cases: &[(&str, bool)] = &[
            (r#"eventName = "PutBucketPolicy""#, true),
            (
                r#"eventName = ["DeleteBucketPolicy", "PutBucketPolicy"]"#,
                true,
            ),
            (r#"eventName = { in = ["A", "B"] }"#, false),
            (r#"eventName = { eq = "putbucketpolicy", ci = true }"#, true),
            (r#"eventName = { eq = "putbucketpolicy" }"#, false),
            (
                r#""requestParameters.bucketName" = { prefix = "prod-", ci = true }"#,
                true,
            ),
            (
                r#""requestParameters.bucketName" = { prefix = "prod-" }"#,
                false,
            ),
            (r#"userAgent = { contains = ["aws-cli", "Boto3"] }"#, true),
            (r#"userAgent = { suffix = "Python/3.12" }"#, true),
            (r#"userAgent = { glob = "Boto3/1.*" }"#, true),
            (r#"userAgent = { glob = "Boto3" }"#, false),
            (r#"userAgent = { regex = "^Boto3/1\\.3[0-9]" }"#, true),
            (
                r#"sourceIPAddress = { cidr = ["10.0.0.0/8", "fd00::/8"] }"#,
                true,
            ),
            (r#"sourceIPAddress = { cidr = "10.1.2.3" }"#, true),
            (
                r#"sourceIPAddress = { not = { cidr = "10.0.0.0/8" } }"#,
                false,
            ),
            (
                r#""additionalEventData.bytesTransferredOut" = { gt = 1024 }"#,
                true,
            ),
            (
                r#""additionalEventData.bytesTransferredOut" = { gte = 1024, lt = 2048 }"#,
                false,
            ),
            (
                r#"eventTime = { gte = "2024-05-01T00:00:00Z", lt = "2024-05-02T00:00:00Z" }"#,
                true,
            ),
            (r#"eventTime = { gte = 2024-05-01T00:00:00Z }"#, true),
            (
                r#""requestParameters.policy.Statement.Principal" = "*""#,
                true,
            ),
            (
                r#""requestParameters.policy.Statement.Effect" = { not = "Deny" }"#,
                true,
            ),
            (r#"errorCode = { exists = false }"#, true),
            (r#"errorCode = { not = { eq = "AccessDenied" } }"#, true),
            (r#"errorCode = { eq = "AccessDenied" }"#, false),
            (r#"readOnly = false"#, true),
            (r#"readOnly = "false""#, true),
            (r#"eventName = ["Nope", { prefix = "PutBucket" }]"#, true),
            (r#""s3.bucket" = "Prod-Data""#, true),
            (
                r#""requestParameters.bucketName" = { eq = "{s3.bucket}", expand = true }"#,
                true,
            ),
            (
                r#""requestParameters.bucketName" = { not = { eq = "{nosuchfield}", expand = true } }"#,
                true,
            ),
            (
                r#"userAgent = { prefix = "{requestParameters.bucketName}", expand = true }"#,
                false,
            ),
            (
                r#"userAgent = { extract = '^Boto3/([0-9]+)\.', eq = "1" }"#,
                true,
            ),
            (
                r#"userAgent = { extract = '^Boto3/([0-9]+)\.', gt = 1 }"#,
                false,
            ),
            (
                r#"eventName = { extract = '^(Get)', exists = true }"#,
                false,
            ),
            (
                r#""requestParameters.bucketName" = { expand = true, not = { eq = "{s3.bucket}" } }"#,
                false,
            ),
            (
                r#""requestParameters.bucketName" = { expand = true, not = "{s3.bucket}" }"#,
                false,
            ),
            (
                r#""requestParameters.bucketName" = { expand = true, not = "{eventName}" }"#,
                true,
            ),
            (
                r#"userAgent = { extract = '^(BOTO3)/', ci = true, eq = "boto3" }"#,
                true,
            ),
            (
                r#"userAgent = { ci = true, not = { prefix = "BOTO3" } }"#,
                false,
            ),
            (
                r#"userAgent = { ci = true, not = ["x", { suffix = "PYTHON/3.12" }] }"#,
                false,
            ),
            (r#""event.success" = true"#, true),
        ];
        for (body, want) in cases {
            assert_eq!(matches(body, e.clone()), *want, "{body}");
        }
    }

    /// Selections combine through `condition`; exceptions win.
    #[test]
    fn conditions_and_exceptions() {
        let src = r#"
id = "c"
title = "t"
severity = "low"
condition = "match and not internal"
[match]
eventName = "GetObject"
[selection.internal]
sourceIPAddress = { cidr = "10.0.0.0/8" }
[[exclude]]
reason = "backup job"
"actor.name" = "backup"
"#;
        let mut l = Loader::new(Strictness::Check, (2026, 1, 1));
        l.add(Path::new("c.toml"), src);
        let rule = &l.finish().unwrap().rules[0];
        let ev = |ip: &str, user: &str| {
            Event::from_value(json!({"eventName": "GetObject", "sourceIPAddress": ip,
                "userIdentity": {"type": "IAMUser", "userName": user}}))
            .unwrap()
        };
        let today = (2026, 1, 1);
        assert!(rule.matches(&ev("203.0.113.1", "alice"), today));
        assert!(!rule.matches(&ev("10.0.0.1", "alice"), today));
        assert!(!rule.matches(&ev("203.0.113.1", "backup"), today));
        assert!(
            rule.explain(&ev("203.0.113.1", "backup"), today)
                .contains("exception `backup job` applies")
        );
    }

    #[test]
    fn structural_errors() {
        let head = "id = \"x\"\ntitle = \"t\"\nseverity = \"low\"\n";
        let cases = [
            ("[match]\n", "selection `match` has no field conditions"),
            ("[match]\neventName = []\n", "an empty list matches nothing"),
            ("[match]\neventName = {}\n", "empty operator table"),
            ("[match]\neventName = { ci = true }\n", "alone test nothing"),
            (
                "[match]\na = { extract = \"x\", eq = \"y\" }\n",
                "exactly one capture group",
            ),
            (
                "[match]\na = { expand = true, eq = \"x\", regex = \"{b}\" }\n",
                "`expand` applies to eq, in, prefix, suffix and contains",
            ),
            (
                "[match]\na = { expand = true, exists = true }\n",
                "`expand = true` needs an `eq`",
            ),
            (
                "[match]\na = { expand = true, eq = \"{actor.nope}\" }\n",
                "unknown field `actor.nope`",
            ),
            (
                "[match]\neventName = { gt = true }\n",
                "compares numbers or strings, not booleans",
            ),
            (
                "[match]\neventName = { exists = \"yes\" }\n",
                "`exists` must be true or false",
            ),
            (
                "[match]\na = 1\n[selection.extra]\nb = 2\n",
                "selection `extra` is not used in `condition`",
            ),
            ("condition = \"x\"\n[selection.x]\na = 1\n", ""),
            (
                "[match]\na = 1\n[threshold]\ncount = 2\n",
                "missing required key `window` in [threshold]",
            ),
            (
                "[match]\na = 1\n[threshold]\ncount = 2\nwindow = \"1m\"\ngroup_by = [\"actor.nope\"]\n",
                "unknown field `actor.nope`",
            ),
            (
                "[match]\na = 1\n[suppress]\nwindow = \"1h\"\nkeys = []\n",
                "unknown key `keys` in [suppress]",
            ),
            ("[match]\na = 1\n[[test]]\nexpect = 1\n", "has no events"),
            (
                "[match]\na = 1\n[[test]]\nexpect = 1\nevents = ['{\"a\": ']\n",
                "invalid JSON in event",
            ),
            (
                "[match]\na = 1\n[[test]]\nevents = ['{\"a\": 1}']\n",
                "needs `expect`",
            ),
            (
                "[match]\na = 1\n[[exclude]]\nexpires = \"2030-01-01\"\nb = 1\n",
                "`expires` must be a TOML date",
            ),
            ("[match]\n\"a..b\" = 1\n", "invalid field path `a..b`"),
            (
                "condition = '''\nmatch and nope'''\n[match]\na = 1\n",
                "t.toml:5:11: unknown selection `nope`",
            ),
            (
                "[match]\na = 1\n[threshold]\ncount = 2\nwindow = \"500ms\"\n",
                "`window` must be at least 1s",
            ),
            (
                "origin = { project = \"p\" }\n[match]\na = 1\n",
                "`origin` needs both `project` and `id`",
            ),
        ];
        for (body, want) in cases {
            let src = format!("{head}{body}");
            let mut l = Loader::new(Strictness::Check, (2026, 1, 1));
            l.add(Path::new("t.toml"), &src);
            match l.finish() {
                Ok(_) => assert!(want.is_empty(), "{body:?} should fail with {want}"),
                Err(d) => {
                    assert!(!want.is_empty(), "{body:?} should load: {d}");
                    assert!(d.to_string().contains(want), "{body:?}: {d}");
                }
            }
        }
        assert!(error("id = \"x\"\n").contains("missing required key `title`"));
    }

    #[test]
    fn windows_are_at_most_seven_days() {
        let rule = |section: &str, window: &str| {
            let count = if section == "threshold" {
                "count = 2\n"
            } else {
                ""
            };
            format!(
                "id = \"x\"\ntitle = \"t\"\nseverity = \"low\"\n[match]\na = 1\n[{section}]\n{count}window = \"{window}\"\n"
            )
        };
        for (section, line) in [("threshold", 8), ("suppress", 7)] {
            for ok in ["7d", "1w", "168h", "6d 23h 59m 59s"] {
                let mut l = Loader::new(Strictness::Check, (2026, 1, 1));
                l.add(Path::new("t.toml"), &rule(section, ok));
                if let Err(d) = l.finish() {
                    panic!("[{section}] window = {ok:?} loads: {d}");
                }
            }
            for bad in ["7d 1s", "30d", "100000000000y", "18446744073709551615s"] {
                let e = error(&rule(section, bad));
                let at = format!("t.toml:{line}:10: `window`");
                assert!(e.contains(&at), "[{section}] window = {bad:?}: {e}");
            }
            let e = error(&rule(section, "8d"));
            assert!(
                e.contains("`window` must be at most 7d"),
                "[{section}]: {e}"
            );
        }
    }

    #[test]
    fn line_and_column_count_characters() {
        assert_eq!(line_col("ab\ncd", 0), (1, 1));
        assert_eq!(line_col("ab\ncd", 4), (2, 2));
        assert_eq!(
            line_col("é=1\nx", 2),
            (1, 2),
            "é is one character of two bytes"
        );
        assert_eq!(line_col("x", 99), (1, 2));
    }
}
