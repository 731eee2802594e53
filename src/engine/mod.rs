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
use windows::{FileWindows, Gate, Hit, Key, Member, MemoryWindows};

/// How rules are applied.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct EngineOptions {
    /// Match conditions only: one detection per matching event, no thresholds and no
    /// suppression (for tuning rules and for tests of match logic).
    pub ignore_thresholds: bool,
    /// Evaluate every rule on every event instead of using the rule index (the
    /// reference behaviour the index is tested against).
    pub no_index: bool,
}

/// A rule that fired on an event.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Detection {
    /// Index into [`Engine::rules`].
    pub rule: usize,
    /// Present when the rule has a threshold whose window this completed.
    pub hit: Option<Hit>,
    /// The window that let the alert out (a threshold's, or the suppression
    /// bucket's), for windowed rules: the alert's id is the window's.
    pub gate: Option<Gate>,
}

impl Detection {
    /// A detection that no window decides: the rule matched.
    pub fn matched(rule: usize) -> Detection {
        Detection {
            rule,
            hit: None,
            gate: None,
        }
    }
}

/// Rules plus their windowed state.
pub struct Engine {
    rules: Vec<Rule>,
    /// Which rules can match an event, by its `eventName` (see [`RuleIndex`]).
    index: RuleIndex,
    /// Windowed state for [`Engine::record`] (one event at a time; drivers that
    /// read files use [`FileWindows`] with their own store).
    windows: MemoryWindows,
    /// Numbers the events [`Engine::record`] settles one by one.
    seq: u64,
    options: EngineOptions,
    /// Today's date (UTC), which decides whether exceptions have expired, packed
    /// by [`pack_date`]: an atomic, so that an engine shared read-only by the
    /// worker's files ([`Engine::matching`]) can still be told the date changed.
    today: AtomicU32,
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
            windows: MemoryWindows::default(),
            seq: 0,
            index: if options.no_index {
                RuleIndex::unindexed(&rules)
            } else {
                RuleIndex::new(&rules)
            },
            rules,
            options,
            today: AtomicU32::new(pack_date(crate::rules::today())),
            matches: vec![0; n],
            scratch: Vec::new(),
        }
    }

    /// Re-reads today's date, which decides whether exceptions have expired. Call
    /// it between files in long-running processes.
    pub fn refresh_clock(&mut self) {
        self.refresh_date();
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
            member: th.and_then(|th| match &th.distinct {
                // The value's text (a number as written) is what counts.
                Some((_, f)) => e.first_value(f).map(|v| match v.text() {
                    Some(t) => windows::member(t.as_bytes()),
                    None => windows::member(v.display().as_bytes()),
                }),
                None => Some(event_member(e)),
            }),
            suppress: rule
                .suppress
                .as_ref()
                .filter(|_| windowed)
                .map(|s| key(e, &s.key))
                .unwrap_or_default(),
        }
    }

    /// The suppression bucket that an alert of rule `i` (without a threshold)
    /// with observation `o` falls into: its id is the bucket's.
    pub fn suppress_gate(&self, i: usize, o: &Observation) -> Option<Gate> {
        let rule = &self.rules[i];
        if !self.is_windowed(i) || rule.threshold.is_some() {
            return None;
        }
        windows::suppress_gate(rule, o.suppress.clone(), o.time_ms.unwrap_or(0))
    }

    /// Counts a match of rule `i` with what [`Engine::observation`] found, as a
    /// file of one event: returns the detection when the event completes its
    /// threshold window or opens its suppression bucket. Drivers that read files
    /// settle a whole file's windows at once ([`FileWindows`]); the results are
    /// the same alert ids.
    pub fn record(&mut self, i: usize, o: Observation) -> Option<Detection> {
        self.matches[i] += 1;
        if !self.is_windowed(i) {
            return Some(Detection::matched(i));
        }
        let mut file = FileWindows::default();
        file.observe(&self.rules, i, o, || ());
        self.seq += 1;
        let name = format!("event#{}", self.seq);
        let settled = file
            .settle(&self.rules, &mut self.windows, &name)
            .expect("memory windows always answer");
        settled.into_iter().next().map(|s| s.detection)
    }
}

/// What a threshold without `distinct` counts for an event: its `eventID` (the
/// same event in two files is one event), or its whole record without one.
fn event_member(e: &Event) -> Member {
    match e.str("eventID") {
        Some(id) => windows::member(id.as_bytes()),
        None => windows::member(e.record().to_string().as_bytes()),
    }
}

/// What the windowed state of one rule needs to know of an event; see
/// [`Engine::observation`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Observation {
    time_ms: Option<i64>,
    /// The threshold's group (empty without a threshold).
    group: Key,
    /// What the threshold counts of the event (its identity, or its distinct
    /// value); `None` without a threshold, or without a value to count.
    member: Option<Member>,
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

    fn denial(time: &str, user: &str, id: &str) -> Event {
        event(serde_json::json!({
            "eventTime": time, "eventName": "GetObject", "errorCode": "AccessDenied", "eventID": id,
            "userIdentity": {"type": "IAMUser", "userName": user, "accountId": "111122223333"}
        }))
    }

    const RULES: [(&str, &str); 3] = [
        (
            "burst",
            "[match]\n\"event.denied\" = true\n[threshold]\ncount = 3\nwindow = \"5m\"\ngroup_by = \"actor.name\"\n",
        ),
        (
            "each",
            "[match]\n\"event.denied\" = true\n[suppress]\nwindow = \"30m\"\n",
        ),
        (
            "quiet-burst",
            "[match]\n\"event.denied\" = true\n[threshold]\ncount = 2\nwindow = \"5m\"\n[suppress]\nwindow = \"1h\"\n",
        ),
    ];

    /// The windows (as gate texts) whose alerts go out for `events` in this order.
    fn gates(events: &[&Event]) -> Vec<String> {
        let mut engine = engine(&RULES, EngineOptions::default());
        let mut out = Vec::new();
        for e in events {
            engine.evaluate(e, &mut out);
        }
        let mut g: Vec<String> = out
            .iter()
            .map(|d| d.gate.as_ref().unwrap().text())
            .collect();
        g.sort();
        g
    }

    #[test]
    fn the_windows_that_alert_do_not_depend_on_the_order_of_events() {
        let events = [
            denial("2024-11-05T10:00:00Z", "mallory", "a"),
            denial("2024-11-05T10:01:00Z", "mallory", "b"),
            denial("2024-11-05T10:04:59Z", "mallory", "c"),
            denial("2024-11-05T10:05:00Z", "mallory", "d"),
            denial("2024-11-05T10:06:00Z", "mallory", "e"),
            denial("2024-11-05T10:40:00Z", "trent", "f"),
            // The same event again (overlapping files): it counts once.
            denial("2024-11-05T10:05:00Z", "mallory", "d"),
        ];
        let mut order: Vec<&Event> = events.iter().collect();
        let expected = gates(&order);
        // burst: 10:00-10:05 holds a, b, c (d is 10:05, the next window, which has
        // only d and e); each: one per half hour (10:00 and 10:30); quiet-burst:
        // its 5-minute windows 10:00 and 10:05 both reach 2, one alert in the hour.
        let rules: Vec<&str> = expected
            .iter()
            .map(|g| g.split('\0').next().unwrap())
            .collect();
        assert_eq!(
            rules,
            ["burst", "each", "each", "quiet-burst"],
            "{expected:?}"
        );
        // Every rotation and the reverse give the same windows.
        for _ in 0..order.len() {
            order.rotate_left(1);
            assert_eq!(gates(&order), expected);
        }
        order.reverse();
        assert_eq!(gates(&order), expected);
    }

    #[test]
    fn an_event_dated_far_ahead_does_not_blind_the_windows_of_real_ones() {
        let real = [
            denial("2024-11-05T10:00:00Z", "mallory", "a"),
            denial("2024-11-05T10:01:00Z", "mallory", "b"),
            denial("2024-11-05T10:02:00Z", "mallory", "c"),
        ];
        let forged = denial("2099-01-01T00:00:00Z", "mallory", "z");
        let alone = gates(&real.iter().collect::<Vec<_>>());
        let with_forged: Vec<&Event> = std::iter::once(&forged).chain(&real).collect();
        let g = gates(&with_forged);
        assert!(
            alone.iter().all(|x| g.contains(x)),
            "{alone:?} within {g:?}"
        );
        assert_eq!(
            g.len(),
            alone.len() + 1,
            "the forged event has its own suppression bucket"
        );
    }
}
