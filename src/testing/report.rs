//! The conformance report of ported rules against their upstream project's tests
//! (`trailwatch rules test --report`): per upstream rule, ported or not (and why),
//! and how many of its tests pass.

use std::collections::BTreeMap;
use std::fmt::Write;
use std::path::Path;

use serde::Deserialize;

use super::Outcome;
use crate::rules::Rule;

/// `_not_ported.toml` in a rules directory: upstream rules the language cannot
/// express yet.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NotPorted {
    #[serde(default, rename = "rule")]
    pub rules: Vec<NotPortedRule>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NotPortedRule {
    pub id: String,
    pub reason: String,
    #[serde(default)]
    pub needs: Option<String>,
}

impl NotPorted {
    /// Reads `dir/_not_ported.toml` (an empty list when there is none).
    pub fn load(dir: &Path) -> anyhow::Result<NotPorted> {
        let p = dir.join("_not_ported.toml");
        match std::fs::read_to_string(&p) {
            Ok(t) => toml::from_str(&t).map_err(|e| anyhow::anyhow!("{}: {e}", p.display())),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(NotPorted::default()),
            Err(e) => Err(anyhow::anyhow!("{}: {e}", p.display())),
        }
    }
}

/// Upstream rule ids with their number of tests, from the peer's test files
/// (`<RuleID>.json` with `rule_id` and `tests`).
pub fn upstream(dir: &Path) -> anyhow::Result<BTreeMap<String, usize>> {
    #[derive(Deserialize)]
    struct Peer {
        rule_id: String,
        #[serde(default)]
        tests: Vec<serde_json::Value>,
    }
    let mut out = BTreeMap::new();
    for entry in std::fs::read_dir(dir).map_err(|e| anyhow::anyhow!("{}: {e}", dir.display()))? {
        let p = entry?.path();
        if p.extension().is_some_and(|x| x == "json") {
            let peer: Peer = serde_json::from_str(&std::fs::read_to_string(&p)?)
                .map_err(|e| anyhow::anyhow!("{}: {e}", p.display()))?;
            out.insert(peer.rule_id, peer.tests.len());
        }
    }
    Ok(out)
}

/// Totals of a report.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Totals {
    pub ported: usize,
    pub rules: usize,
    pub passing: usize,
    pub tests: usize,
}

/// Renders the report. Rules are matched to upstream ids by `origin.id`; with
/// `upstream` (id → number of tests) the totals count every upstream rule and
/// test, otherwise only the ported and listed ones.
pub fn render(
    rules: &[Rule],
    outcomes: &[Outcome],
    not_ported: &NotPorted,
    upstream: Option<&BTreeMap<String, usize>>,
) -> (String, Totals) {
    let mut per: BTreeMap<String, (String, usize, usize)> = BTreeMap::new();
    for r in rules {
        if let Some(o) = &r.origin {
            per.entry(o.id.clone()).or_insert((r.id.clone(), 0, 0));
        }
    }
    let origin_of: BTreeMap<&str, &str> = rules
        .iter()
        .filter_map(|r| r.origin.as_ref().map(|o| (r.id.as_str(), o.id.as_str())))
        .collect();
    for o in outcomes {
        if let Some(up) = origin_of.get(o.rule_id.as_str()) {
            let e = per.get_mut(*up).expect("entry made above");
            e.2 += 1;
            if o.passed() {
                e.1 += 1;
            }
        }
    }
    let mut ids: Vec<String> = per.keys().cloned().collect();
    ids.extend(not_ported.rules.iter().map(|r| r.id.clone()));
    if let Some(up) = upstream {
        ids.extend(up.keys().cloned());
    }
    ids.sort();
    ids.dedup();

    let mut out = String::new();
    let mut t = Totals {
        ported: 0,
        rules: 0,
        passing: 0,
        tests: 0,
    };
    for id in &ids {
        t.rules += 1;
        let upstream_tests = upstream.and_then(|u| u.get(id)).copied();
        if let Some((rule, pass, total)) = per.get(id) {
            t.ported += 1;
            t.passing += pass;
            t.tests += upstream_tests.unwrap_or(*total).max(*total);
            let _ = writeln!(
                out,
                "ported      {id:<60} {pass}/{total} tests pass  ({rule})"
            );
        } else if let Some(np) = not_ported.rules.iter().find(|r| &r.id == id) {
            t.tests += upstream_tests.unwrap_or(0);
            let needs = np
                .needs
                .as_deref()
                .map(|n| format!("[{n}] "))
                .unwrap_or_default();
            let _ = writeln!(out, "not ported  {id:<60} {needs}{}", np.reason);
        } else {
            t.tests += upstream_tests.unwrap_or(0);
            let _ = writeln!(
                out,
                "missing     {id:<60} neither ported nor listed in _not_ported.toml"
            );
        }
    }
    let _ = writeln!(
        out,
        "rules ported {}/{}, tests passing {}/{}",
        t.ported, t.rules, t.passing, t.tests
    );
    (out, t)
}
