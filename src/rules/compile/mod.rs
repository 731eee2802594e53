//! Compiling one rule file: its TOML, parsed into toml's spanned tree, becomes a
//! [`Rule`], with every problem collected as a [`Diagnostic`] (`file:line:col:
//! message`) instead of stopping at the first.
//!
//! The document is walked by hand, so that every check — unknown keys, bad regexes,
//! unknown fields, a condition naming a missing selection — can point at the exact
//! place in the file. This module walks the top level (the keys, id, title,
//! severity, selections and condition, origin and exceptions); the parts compile
//! in their own modules, each of them `impl FileCx`:
//!
//! - `values`: typed values read with their spans, the readers all parts share.
//! - `matching`: field conditions and selections, the operators.
//! - [`threshold`]: `[threshold]` and `[suppress]`.
//! - `inline_tests`: `[[test]]` tables.
//!
//! [`Diagnostic`]: crate::rules::diagnostics::Diagnostic

mod inline_tests;
mod matching;
pub mod threshold;
mod values;

use std::ops::Range;
use std::path::Path;

use toml::Spanned;
use toml::de::{DeTable, DeValue};

use super::condition;
use super::diagnostics::{Diagnostic, suggest};
use super::matcher::Selection;
use super::{Exclude, Origin, Rule, Severity, Strictness, Template};
use crate::record::LogType;
use values::{key_of, kind};

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

/// One rule file being compiled: its text, and the problems found in it so far.
pub(super) struct FileCx<'a> {
    pub(super) path: &'a Path,
    pub(super) src: &'a str,
    pub(super) errors: Vec<Diagnostic>,
    pub(super) warnings: Vec<Diagnostic>,
    pub(super) strictness: Strictness,
    pub(super) skip_tests: bool,
    pub(super) today: (i32, u8, u8),
    /// `expand = true` of an enclosing table, for a nested `not`.
    pub(super) inherited_expand: bool,
    /// The rules directory, resolved ([`crate::rules::load::Loader::with_root`]).
    pub(super) root: Option<&'a Path>,
}

impl FileCx<'_> {
    pub(super) fn rule(&mut self) -> Option<(Rule, Range<usize>)> {
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
}

#[cfg(test)]
mod tests {
    use std::path::Path;

    use crate::record::Event;
    use crate::rules::Strictness;
    use crate::rules::load::Loader;
    use serde_json::json;

    pub(super) fn error(src: &str) -> String {
        let mut l = Loader::new(Strictness::Check, (2026, 1, 1));
        l.add(Path::new("t.toml"), src);
        l.finish().unwrap_err().to_string()
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
}
