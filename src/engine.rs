//! The rule engine: evaluates each event against every enabled rule and applies
//! thresholds and suppression. Pure and synchronous: the scan command and the worker
//! both drive it, one event at a time.

use crate::record::{Event, FieldRef};
use crate::rules::threshold::{Hit, Key, SuppressState, ThresholdState};
use crate::rules::{Rule, RuleSet};

/// How rules are applied.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct EngineOptions {
    /// Match conditions only: one detection per matching event, no thresholds and no
    /// suppression (for tuning rules and for tests of match logic).
    pub ignore_thresholds: bool,
    /// Evaluate every rule on every event instead of using the eventName index (the
    /// reference behaviour the index is tested against).
    pub no_index: bool,
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
    today: (i32, u8, u8),
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
                RuleIndex {
                    by_name: Default::default(),
                    unindexed: (0..rules.len()).collect(),
                }
            } else {
                RuleIndex::new(&rules)
            },
            rules,
            state: (0..n).map(|_| RuleState::default()).collect(),
            options,
            today: crate::rules::today(),
            matches: vec![0; n],
            scratch: Vec::new(),
        }
    }

    /// Re-reads today's date, which decides whether exceptions have expired. Call
    /// it between files in long-running processes.
    pub fn refresh_clock(&mut self) {
        self.today = crate::rules::today();
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
        let name = match e.log_type() {
            crate::record::LogType::Cloudtrail => e.str("eventName"),
            crate::record::LogType::S3Access => None,
        };
        let named = name
            .and_then(|n| self.index.by_name.get(n))
            .map_or(&[][..], Vec::as_slice);
        // Candidates in rule order: rules without an eventName constraint, merged
        // with the rules this eventName can satisfy.
        let (mut a, mut b) = (0, 0);
        let rest = &self.index.unindexed;
        loop {
            let i = match (rest.get(a), named.get(b)) {
                (Some(&x), Some(&y)) if x < y => {
                    a += 1;
                    x
                }
                (Some(_), Some(&y)) => {
                    b += 1;
                    y
                }
                (Some(&x), None) => {
                    a += 1;
                    x
                }
                (None, Some(&y)) => {
                    b += 1;
                    y
                }
                (None, None) => break,
            };
            if self.rules[i].matches(e, self.today) {
                out.push(i);
            }
        }
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
                .map(|v| v.display()),
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
        let rule = &self.rules[i];
        self.matches[i] += 1;
        if self.options.ignore_thresholds {
            return Some(Detection { rule: i, hit: None });
        }
        let st = &mut self.state[i];
        // An event without a usable eventTime counts at the newest time seen.
        let t = match o.time_ms {
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
                Some(st.threshold.observe(th, t, o.group, o.distinct)?)
            }
            None => None,
        };
        if let Some(s) = &rule.suppress {
            if !st.suppress.admit(s, o.suppress, t) {
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
    distinct: Option<String>,
    /// The suppression key (empty without suppression).
    suppress: Key,
}

/// Rules indexed by the `eventName` values their condition requires, so that an
/// event is only evaluated against rules it can satisfy. Purely an optimisation:
/// a rule whose condition does not pin `eventName` to literal values (case-sensitive
/// `eq`/`in`) is always evaluated.
#[derive(Debug, Default)]
struct RuleIndex {
    by_name: rustc_hash::FxHashMap<String, Vec<usize>>,
    unindexed: Vec<usize>,
}

impl RuleIndex {
    fn new(rules: &[Rule]) -> RuleIndex {
        let mut idx = RuleIndex::default();
        for (i, r) in rules.iter().enumerate() {
            match required_names(r) {
                Some(names) if r.log_type == crate::record::LogType::Cloudtrail => {
                    for n in names {
                        let v = idx.by_name.entry(n).or_default();
                        if v.last() != Some(&i) {
                            v.push(i);
                        }
                    }
                }
                _ => idx.unindexed.push(i),
            }
        }
        idx
    }
}

/// The `eventName` values without which `rule` cannot match, if its condition
/// implies such a set.
fn required_names(rule: &Rule) -> Option<Vec<String>> {
    use crate::rules::condition::Cond;
    fn sel(rule: &Rule, i: usize) -> Option<Vec<String>> {
        rule.selections[i]
            .fields
            .iter()
            .find_map(|c| literal_names(c))
    }
    fn walk(rule: &Rule, c: &Cond) -> Option<Vec<String>> {
        match c {
            Cond::Sel(i) => sel(rule, *i),
            // Any constrained conjunct is a necessary condition.
            Cond::And(items) => items.iter().find_map(|x| walk(rule, x)),
            // Every alternative must be constrained; the union is necessary.
            Cond::Or(items) => {
                let mut all = Vec::new();
                for x in items {
                    all.extend(walk(rule, x)?);
                }
                Some(all)
            }
            Cond::Not(_) => None,
        }
    }
    walk(rule, &rule.condition)
}

/// `eventName = "X"` / `["X", "Y"]` / `{ eq = ..., in = ... }` without `ci`,
/// `not`, `exists = false` or `extract`: the literal names.
fn literal_names(c: &crate::rules::matcher::FieldCond) -> Option<Vec<String>> {
    use crate::rules::matcher::{FieldTest, Op, Scalar};
    if c.field != FieldRef::raw(vec!["eventName".to_owned()]) {
        return None;
    }
    let FieldTest::Table {
        ops,
        exists,
        extract: None,
        ..
    } = &c.test
    else {
        return None;
    };
    if *exists == Some(false) {
        return None;
    }
    ops.iter().find_map(|op| match op {
        Op::Eq { any, ci: false } => any
            .iter()
            .map(|s| match s {
                Scalar::Str(x) => Some(x.clone()),
                _ => None,
            })
            .collect(),
        _ => None,
    })
}

/// The values of `fields` for `e` (first value of each; `None` when absent).
pub fn key(e: &Event, fields: &[(String, FieldRef)]) -> Key {
    fields
        .iter()
        .map(|(_, f)| e.first_value(f).map(|v| v.display()))
        .collect()
}
