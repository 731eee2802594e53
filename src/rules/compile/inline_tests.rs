//! Compiling `[[test]]` tables into [`RuleTest`]s: a name, the number of alerts
//! expected, and the events, written inline (JSON, or access log lines for an
//! `s3_access` rule) or read from a `file` (see `test_events`). Its own module
//! because tests are data for `rules check` and `rules test`, not part of what a
//! rule detects: runs that only detect skip them.

use toml::de::{DeTable, DeValue};

use super::values::{key_of, kind};
use super::{FileCx, SValue};
use crate::record::LogType;
use crate::rules::{RuleTest, test_events};

impl FileCx<'_> {
    pub(super) fn tests(&mut self, t: &DeTable<'_>, log_type: LogType) -> Option<Vec<RuleTest>> {
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
                match test_events::test_file(self.path, self.root, &rel)
                    .and_then(|f| test_events::read_event_file(&f))
                {
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
