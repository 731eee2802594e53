//! The inline `[[test]]` runner behind `trailwatch rules test`: each test feeds its
//! events, in order, to a fresh engine holding only its rule and counts the alerts.
//!
//! It drives the engine, so it sits above it rather than in [`crate::rules`];
//! [`report`] is the conformance report built from its outcomes.

pub mod report;

use crate::engine::{Engine, EngineOptions};
use crate::record::{Event, LogType};
use crate::rules::{Rule, RuleTest};

/// The result of one test.
#[derive(Debug, Clone)]
pub struct Outcome {
    pub rule_id: String,
    pub test: String,
    pub expected: u64,
    pub got: u64,
    /// Why it failed, line by line (empty when it passed).
    pub details: Vec<String>,
}

impl Outcome {
    pub fn passed(&self) -> bool {
        self.expected == self.got
    }
}

/// Runs one test of `rule`.
pub fn run_test(rule: &Rule, test: &RuleTest) -> Outcome {
    let mut r = rule.clone();
    r.enabled = true;
    let mut engine = Engine::from_rules(
        vec![r],
        EngineOptions {
            ignore_thresholds: test.ignore_thresholds,
            ..EngineOptions::default()
        },
    );
    let mut got = 0;
    let mut out = Vec::new();
    let mut details = Vec::new();
    let mut events = Vec::new();
    for (i, v) in test.events.iter().enumerate() {
        let parsed = match (rule.log_type, v) {
            (LogType::S3Access, serde_json::Value::Object(m)) => {
                Ok(Event::from_access_log(m.clone()))
            }
            _ => Event::from_value(v.clone()),
        };
        match parsed {
            Ok(e) => {
                out.clear();
                engine.evaluate(&e, &mut out);
                got += out.len() as u64;
                events.push(e);
            }
            Err(err) => details.push(format!("event {}: {err}", i + 1)),
        }
    }
    if got != test.expect {
        let today = crate::rules::today();
        if events.len() == 1 {
            details.push(rule.explain(&events[0], today));
        } else {
            let matched = events.iter().filter(|e| rule.matches(e, today)).count();
            details.push(format!(
                "{matched} of {} events match the condition",
                events.len()
            ));
            if let Some(th) = &rule.threshold {
                details.push(format!(
                    "threshold: {} {} within {} per {}",
                    th.count,
                    if th.distinct.is_some() {
                        "distinct values"
                    } else {
                        "events"
                    },
                    th.window_text,
                    if th.group_by.is_empty() {
                        "rule".to_owned()
                    } else {
                        th.group_by
                            .iter()
                            .map(|(n, _)| n.as_str())
                            .collect::<Vec<_>>()
                            .join(", ")
                    }
                ));
            }
        }
    }
    Outcome {
        rule_id: rule.id.clone(),
        test: test.name.clone(),
        expected: test.expect,
        got,
        details,
    }
}

/// Runs every test of every rule (enabled or not), in rule order.
pub fn run_all<'r>(rules: impl IntoIterator<Item = &'r Rule>) -> Vec<Outcome> {
    rules
        .into_iter()
        .flat_map(|r| r.tests.iter().map(move |t| run_test(r, t)))
        .collect()
}
