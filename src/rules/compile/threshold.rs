//! Compiling `[threshold]` and `[suppress]` into [`Threshold`] and [`Suppress`]:
//! counts, windows (at most [`MAX_WINDOW`]) and the fields that group and key
//! them. This is what a rule asks for; the state they keep while events pass is
//! the engine's ([`crate::engine::windows`]).

use toml::de::DeValue;

use super::values::key_of;
use super::{FileCx, SValue};
use crate::rules::{Suppress, Threshold};

impl FileCx<'_> {
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

    pub(super) fn threshold(&mut self, v: &SValue<'_>) -> Option<Threshold> {
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
            if n > MAX_COUNT {
                self.err(
                    c.span(),
                    format!("`count` must be at most {MAX_COUNT}: a window keeps up to `count` members, in one state item of at most 400 KB"),
                );
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

    pub(super) fn suppress(
        &mut self,
        v: &SValue<'_>,
        threshold: Option<&Threshold>,
    ) -> Option<Suppress> {
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
}

/// The largest `[threshold] count`: a window keeps up to `count` members (32
/// bytes each in the state table, whose items hold at most 400 KB).
pub const MAX_COUNT: u64 = 10_000;

/// The longest `[threshold]` or `[suppress]` window: a window's members are kept
/// (in memory or in the state table) until it fires or its retention passes, so a
/// week bounds that and still covers slow patterns over a working week; longer
/// baselines belong in a data lake.
pub const MAX_WINDOW: std::time::Duration = std::time::Duration::from_secs(7 * 24 * 60 * 60);

#[cfg(test)]
mod tests {
    use std::path::Path;

    use super::super::tests::error;
    use crate::rules::Strictness;
    use crate::rules::load::Loader;

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
    fn a_count_fits_one_state_item() {
        let rule = |count: u64| {
            format!(
                "id = \"x\"\ntitle = \"t\"\nseverity = \"low\"\n[match]\na = 1\n[threshold]\ncount = {count}\nwindow = \"5m\"\n"
            )
        };
        let mut l = Loader::new(Strictness::Check, (2026, 1, 1));
        l.add(Path::new("t.toml"), &rule(super::MAX_COUNT));
        assert!(l.finish().is_ok(), "the largest count loads");
        let e = error(&rule(super::MAX_COUNT + 1));
        assert!(
            e.contains("t.toml:7:9: `count` must be at most 10000"),
            "{e}"
        );
    }
}
