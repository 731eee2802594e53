//! The rule engine: evaluates each event against every enabled rule and applies
//! thresholds and suppression. Pure and synchronous: the scan command and the worker
//! both drive it, one event at a time.
//!
//! This module holds the engine and what it hands out ([`Detection`],
//! [`Observation`]); its children hold its two halves' machinery:
//!
//! - `index`: which rules an event can satisfy, so that it meets only those.
//! - [`windows`]: the windowed state of thresholds and suppression, in event time.

mod index;
pub mod windows;

use std::sync::atomic::{AtomicU32, Ordering};

use crate::record::{Event, FieldRef};
use crate::rules::{Rule, RuleSet};
use index::RuleIndex;
use windows::{Hit, Key, SuppressState, ThresholdState};

/// How rules are applied.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct EngineOptions {
    /// Match conditions only: one detection per matching event, no thresholds and no
    /// suppression (for tuning rules and for tests of match logic).
    pub ignore_thresholds: bool,
    /// Evaluate every rule on every event instead of using the rule index (the
    /// reference behaviour the index is tested against).
    pub no_index: bool,
    /// The wall clock, in milliseconds since the epoch, when it is not the
    /// system's (tests): events dated more than
    /// [`windows::FUTURE_TOLERANCE_MS`] after it move no rule's marks.
    pub now_ms: Option<i64>,
}

/// A rule that fired on an event.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Detection {
    /// Index into [`Engine::rules`].
    pub rule: usize,
    /// Present when the rule has a threshold that this event completed.
    pub hit: Option<Hit>,
}

#[derive(Debug, Default)]
struct RuleState {
    threshold: ThresholdState,
    suppress: SuppressState,
    /// The newest event time among the rule's matches, used for events that carry
    /// no usable `eventTime`.
    newest_ms: Option<i64>,
}

/// Rules plus their windowed state.
pub struct Engine {
    rules: Vec<Rule>,
    /// Which rules can match an event, by its `eventName` (see [`RuleIndex`]).
    index: RuleIndex,
    state: Vec<RuleState>,
    options: EngineOptions,
    /// Today's date (UTC), which decides whether exceptions have expired, packed
    /// by [`pack_date`]: an atomic, so that an engine shared read-only by the
    /// worker's files ([`Engine::matching`]) can still be told the date changed.
    today: AtomicU32,
    /// The latest event time trusted to move rules' marks: the wall clock plus
    /// [`windows::FUTURE_TOLERANCE_MS`]. Re-read when an event lies beyond it.
    horizon_ms: i64,
    /// Events that matched each rule's condition (before thresholds/suppression).
    matches: Vec<u64>,
    scratch: Vec<usize>,
}

impl Engine {
    /// An engine over the enabled rules of `set`.
    ///
    /// The engine keeps no rule tests: their events are only for `rules test`, and
    /// with every reader thread holding an engine they would cost memory many times.
    pub fn new(set: &RuleSet, options: EngineOptions) -> Engine {
        let rules = set
            .enabled()
            .map(|r| Rule {
                tests: Vec::new(),
                ..r.clone()
            })
            .collect();
        Engine::from_rules(rules, options)
    }

    pub fn from_rules(rules: Vec<Rule>, options: EngineOptions) -> Engine {
        let n = rules.len();
        Engine {
            index: if options.no_index {
                RuleIndex::unindexed(&rules)
            } else {
                RuleIndex::new(&rules)
            },
            rules,
            state: (0..n).map(|_| RuleState::default()).collect(),
            options,
            today: AtomicU32::new(pack_date(crate::rules::today())),
            horizon_ms: horizon(options.now_ms),
            matches: vec![0; n],
            scratch: Vec::new(),
        }
    }

    /// Re-reads today's date, which decides whether exceptions have expired. Call
    /// it between files in long-running processes.
    pub fn refresh_clock(&mut self) {
        self.refresh_date();
        self.horizon_ms = horizon(self.options.now_ms);
    }

    /// Re-reads today's date only: what [`Engine::matching`] depends on, through a
    /// shared reference.
    pub fn refresh_date(&self) {
        self.today
            .store(pack_date(crate::rules::today()), Ordering::Relaxed);
    }

    /// Whether rule `i`'s detections depend on windowed state (a threshold or
    /// suppression that applies): only those need [`Engine::record`]; for the
    /// others a match is the detection.
    pub fn is_windowed(&self, i: usize) -> bool {
        let r = &self.rules[i];
        !self.options.ignore_thresholds && (r.threshold.is_some() || r.suppress.is_some())
    }

    /// Whether an event at `t` is too far ahead of the wall clock to move any
    /// rule's marks. The clock is only read again for such an event (rare), so
    /// that a long stream does not judge by a stale one.
    fn ahead(&mut self, t: i64) -> bool {
        if t <= self.horizon_ms {
            return false;
        }
        self.horizon_ms = horizon(self.options.now_ms);
        t > self.horizon_ms
    }

    pub fn rules(&self) -> &[Rule] {
        &self.rules
    }

    /// Per-rule counts of condition matches since the last call, by rule id; resets
    /// them.
    pub fn take_match_counts(&mut self) -> Vec<(String, u64)> {
        let out = self
            .rules
            .iter()
            .zip(&self.matches)
            .filter(|(_, n)| **n > 0)
            .map(|(r, n)| (r.id.clone(), *n))
            .collect();
        self.matches.iter_mut().for_each(|n| *n = 0);
        out
    }

    /// Evaluates one event, appending what fired to `out`.
    pub fn evaluate(&mut self, e: &Event, out: &mut Vec<Detection>) {
        let mut matched = std::mem::take(&mut self.scratch);
        matched.clear();
        self.matching(e, &mut matched);
        self.apply(e, &matched, out);
        self.scratch = matched;
    }

    /// The pure half of [`Engine::evaluate`]: the rules whose condition holds for
    /// `e`, in rule order. It reads no windowed state, so reader threads run it
    /// ahead of [`Engine::apply`] (each with its own engine over the same rules).
    pub fn matching(&self, e: &Event, out: &mut Vec<usize>) {
        // The candidates go into `out` first, then are sorted into rule order and
        // evaluated in place: no allocation per event.
        let start = out.len();
        self.index.candidates(e, out);
        out[start..].sort_unstable();
        let today = unpack_date(self.today.load(Ordering::Relaxed));
        let mut kept = start;
        let mut previous = None;
        for r in start..out.len() {
            let i = out[r];
            if previous == Some(i) {
                continue; // found through two probes
            }
            previous = Some(i);
            if self.rules[i].matches(e, today) {
                out[kept] = i;
                kept += 1;
            }
        }
        out.truncate(kept);
    }

    /// Counts condition matches for rules whose [`Engine::apply`] would only count
    /// them (rules without threshold or suppression).
    pub fn count_matches(&mut self, matched: &[usize]) {
        for &i in matched {
            self.matches[i] += 1;
        }
    }

    /// The stateful half of [`Engine::evaluate`]: thresholds and suppression for
    /// the rules `matched` (from [`Engine::matching`]), events in order.
    pub fn apply(&mut self, e: &Event, matched: &[usize], out: &mut Vec<Detection>) {
        for &i in matched {
            let o = self.observation(i, e);
            out.extend(self.record(i, o));
        }
    }

    /// What rule `i`'s windowed state needs to know of `e` (its time, group,
    /// distinct value and suppression key). Pure, like [`Engine::matching`]: a
    /// reader thread works it out ahead, so that the ordered thread need not hold
    /// on to the whole event.
    pub fn observation(&self, i: usize, e: &Event) -> Observation {
        let rule = &self.rules[i];
        let windowed = !self.options.ignore_thresholds;
        let th = rule.threshold.as_ref().filter(|_| windowed);
        Observation {
            time_ms: e.time_ms(),
            group: th.map(|th| key(e, &th.group_by)).unwrap_or_default(),
            distinct: th
                .and_then(|th| th.distinct.as_ref())
                .and_then(|(_, f)| e.first_value(f))
                // Straight into the shared form the threshold keeps.
                .map(|v| match v.text() {
                    Some(t) => windows::Value::from(&*t),
                    None => v.display().into(),
                }),
            suppress: rule
                .suppress
                .as_ref()
                .filter(|_| windowed)
                .map(|s| key(e, &s.key))
                .unwrap_or_default(),
        }
    }

    /// Counts a match of rule `i` with what [`Engine::observation`] found, in event
    /// order; returns the detection unless a threshold is not reached yet or
    /// suppression drops it.
    pub fn record(&mut self, i: usize, o: Observation) -> Option<Detection> {
        self.matches[i] += 1;
        if self.options.ignore_thresholds {
            return Some(Detection { rule: i, hit: None });
        }
        // An event dated beyond the trusted horizon is evaluated like any other,
        // but moves no mark: one forged record from 2099 must not make every
        // real event after it late.
        let ahead = o.time_ms.is_some_and(|t| self.ahead(t));
        let rule = &self.rules[i];
        let st = &mut self.state[i];
        // An event without a usable eventTime counts at the newest time seen.
        let t = match o.time_ms {
            Some(t) if ahead => t,
            Some(t) => {
                st.newest_ms = Some(st.newest_ms.map_or(t, |n| n.max(t)));
                t
            }
            None => st.newest_ms.unwrap_or(0),
        };
        let hit = match &rule.threshold {
            Some(th) => {
                if th.distinct.is_some() && o.distinct.is_none() {
                    // No value to count: the event cannot add a distinct value.
                    return None;
                }
                Some(match ahead {
                    false => st.threshold.observe(th, t, o.group, o.distinct)?,
                    true => st.threshold.observe_ahead(th, t, o.group, o.distinct)?,
                })
            }
            None => None,
        };
        if let Some(s) = &rule.suppress {
            let admitted = match ahead {
                false => st.suppress.admit(s, o.suppress, t),
                true => st.suppress.admit_ahead(s, o.suppress, t),
            };
            if !admitted {
                return None;
            }
        }
        Some(Detection { rule: i, hit })
    }
}

/// What the windowed state of one rule needs to know of an event; see
/// [`Engine::observation`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Observation {
    time_ms: Option<i64>,
    /// The threshold's group (empty without a threshold).
    group: Key,
    /// The threshold's distinct value, when it counts distinct values.
    distinct: Option<windows::Value>,
    /// The suppression key (empty without suppression).
    suppress: Key,
}

/// A date as one word: year, month and day in bits 16.., 8..16 and 0..8.
fn pack_date((y, m, d): (i32, u8, u8)) -> u32 {
    ((y.clamp(0, 65_535) as u32) << 16) | (u32::from(m) << 8) | u32::from(d)
}

fn unpack_date(p: u32) -> (i32, u8, u8) {
    ((p >> 16) as i32, (p >> 8) as u8, p as u8)
}

/// The latest event time trusted to move rules' marks when the wall clock reads
/// `now_ms` (the system's when `None`).
fn horizon(now_ms: Option<i64>) -> i64 {
    let now = now_ms.unwrap_or_else(|| {
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_millis() as i64)
    });
    now.saturating_add(windows::FUTURE_TOLERANCE_MS)
}

/// The values of `fields` for `e` (first value of each; `None` when absent).
pub fn key(e: &Event, fields: &[(String, FieldRef)]) -> Key {
    fields
        .iter()
        .map(|(_, f)| e.first_value(f).map(|v| v.display()))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::rules::Strictness;
    use crate::rules::load::Loader;

    pub(super) fn engine(rules: &[(&str, &str)], options: EngineOptions) -> Engine {
        let mut loader = Loader::new(Strictness::Run, crate::rules::today());
        for (id, body) in rules {
            let src = format!("id = \"{id}\"\ntitle = \"t\"\nseverity = \"low\"\n{body}");
            loader.add(std::path::Path::new(&format!("{id}.toml")), &src);
        }
        Engine::new(&loader.finish().expect("the rules compile"), options)
    }

    pub(super) fn event(json: serde_json::Value) -> Event {
        Event::from_value(json).unwrap()
    }

    /// The clock the tests below set: 2024-11-05T12:00:00Z.
    const NOW_MS: i64 = 1_730_808_000_000;

    fn denial(time: &str, user: &str) -> Event {
        event(serde_json::json!({
            "eventTime": time, "eventName": "GetObject", "errorCode": "AccessDenied",
            "userIdentity": {"type": "IAMUser", "userName": user, "accountId": "111122223333"}
        }))
    }

    #[test]
    fn events_dated_ahead_of_the_clock_are_evaluated_but_move_no_mark() {
        let rules = [
            (
                "burst",
                "[match]\n\"event.denied\" = true\n[threshold]\ncount = 3\nwindow = \"5m\"\ngroup_by = \"actor.name\"\n",
            ),
            (
                "each",
                "[match]\n\"event.denied\" = true\n[suppress]\nwindow = \"30m\"\n",
            ),
        ];
        let options = EngineOptions {
            now_ms: Some(NOW_MS),
            ..EngineOptions::default()
        };
        let fired = |events: &[Event]| {
            let mut engine = engine(&rules, options);
            let mut out = Vec::new();
            let mut ids = Vec::new();
            for e in events {
                out.clear();
                engine.evaluate(e, &mut out);
                ids.push(
                    out.iter()
                        .map(|d| engine.rules[d.rule].id.as_str())
                        .collect::<Vec<_>>()
                        .join(","),
                );
            }
            ids
        };
        // Dated 2099: it alerts where a single event can (and is suppressed for
        // itself), while the real burst after it still fires and is let through.
        assert_eq!(
            fired(&[
                denial("2099-01-01T00:00:00Z", "mallory"),
                denial("2099-01-01T00:00:01Z", "mallory"),
                denial("2024-11-05T10:00:00Z", "mallory"),
                denial("2024-11-05T10:01:00Z", "mallory"),
                denial("2024-11-05T10:02:00Z", "mallory"),
            ]),
            ["each", "", "each", "", "burst"]
        );
        // Within the tolerance (15 minutes) an event is trusted: it moves the
        // marks as before, and the events over an hour behind it are late (the
        // burst's are forgotten at once, and so are the alerts they let through).
        let trusted = fired(&[
            denial("2024-11-05T12:14:00Z", "mallory"),
            denial("2024-11-05T10:00:00Z", "mallory"),
            denial("2024-11-05T10:01:00Z", "mallory"),
            denial("2024-11-05T10:02:00Z", "mallory"),
        ]);
        assert_eq!(trusted, ["each", "each", "each", "each"]);
        // The same event 16 minutes ahead of the clock no longer moves them.
        let ahead = fired(&[
            denial("2024-11-05T12:16:00Z", "mallory"),
            denial("2024-11-05T10:00:00Z", "mallory"),
            denial("2024-11-05T10:01:00Z", "mallory"),
            denial("2024-11-05T10:02:00Z", "mallory"),
        ]);
        assert_eq!(ahead, ["each", "each", "", "burst"]);
    }
}
