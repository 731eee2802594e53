//! The rule engine: evaluates each event against every enabled rule and applies
//! thresholds and suppression. Pure and synchronous: the scan command and the worker
//! both drive it, one event at a time.

use std::sync::atomic::{AtomicU32, Ordering};

use crate::record::{Event, FieldRef, NormField, Val};
use crate::rules::threshold::{self, Hit, Key, SuppressState, ThresholdState};
use crate::rules::{Rule, RuleSet};

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
    /// [`threshold::FUTURE_TOLERANCE_MS`] after it move no rule's marks.
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
    /// [`threshold::FUTURE_TOLERANCE_MS`]. Re-read when an event lies beyond it.
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
                    Some(t) => threshold::Value::from(&*t),
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
    distinct: Option<threshold::Value>,
    /// The suppression key (empty without suppression).
    suppress: Key,
}

/// Rules indexed by values their condition requires, so that an event is only
/// evaluated against the rules it can satisfy. Purely an optimisation (tested
/// against evaluating every rule): a rule is indexed by one necessary condition of
/// the form "this field has one of these literal values" (or "starts with one of
/// these prefixes", or "is true"/"is false"), and a rule without one is always
/// evaluated.
///
/// Most rules pin `eventName`; the others are indexed by what else they require:
/// `event.denied = true`, `eventSource`, `userIdentity.type`, `eventType`, a
/// prefix of `eventName`. A rule whose condition ORs selections is indexed by every
/// alternative's requirement (as the rules ported with a lower-cased twin of each
/// selection are).
#[derive(Debug, Default)]
struct RuleIndex {
    /// The fields looked up on every CloudTrail event, each with the rules its
    /// values can satisfy.
    probes: Vec<Probe>,
    /// Rules evaluated on every CloudTrail event.
    cloudtrail: Vec<usize>,
    /// Rules evaluated on every access log line (those are not indexed).
    access_log: Vec<usize>,
}

/// One indexed field.
#[derive(Debug)]
struct Probe {
    field: FieldRef,
    /// Rules that need the field to equal a text exactly.
    exact: rustc_hash::FxHashMap<String, Vec<usize>>,
    /// Rules that need the field to start with a text.
    prefixes: Vec<(String, Vec<usize>)>,
    /// Rules that need the field to be false (`[0]`) or true (`[1]`).
    flags: [Vec<usize>; 2],
}

/// A literal a necessary condition asks a field's value to satisfy.
#[derive(Debug, Clone, PartialEq)]
enum Lit {
    Exact(String),
    Prefix(String),
    Flag(bool),
}

/// A necessary condition: some value of some listed field satisfies its literal
/// (a disjunction), with how much it costs to test and how much it leaves out
/// (lower is better; see [`rank`]).
#[derive(Debug, Clone)]
struct Need {
    any: Vec<(FieldRef, Lit)>,
    rank: u8,
}

impl RuleIndex {
    /// Every rule evaluated on every event: the reference the index is tested
    /// against.
    fn unindexed(rules: &[Rule]) -> RuleIndex {
        let mut idx = RuleIndex::default();
        for (i, r) in rules.iter().enumerate() {
            idx.always(i, r.log_type);
        }
        idx
    }

    fn new(rules: &[Rule]) -> RuleIndex {
        let mut idx = RuleIndex::default();
        for (i, r) in rules.iter().enumerate() {
            let need = match r.log_type {
                crate::record::LogType::Cloudtrail => necessary(r, &r.condition),
                crate::record::LogType::S3Access => None,
            };
            let Some(need) = need else {
                idx.always(i, r.log_type);
                continue;
            };
            for (field, lit) in need.any {
                let p = match idx.probes.iter().position(|p| p.field == field) {
                    Some(p) => p,
                    None => {
                        idx.probes.push(Probe {
                            field,
                            exact: Default::default(),
                            prefixes: Vec::new(),
                            flags: Default::default(),
                        });
                        idx.probes.len() - 1
                    }
                };
                let probe = &mut idx.probes[p];
                let list = match lit {
                    Lit::Exact(x) => probe.exact.entry(x).or_default(),
                    Lit::Prefix(x) => match probe.prefixes.iter().position(|(p, _)| *p == x) {
                        Some(j) => &mut probe.prefixes[j].1,
                        None => {
                            probe.prefixes.push((x, Vec::new()));
                            &mut probe.prefixes.last_mut().expect("just pushed").1
                        }
                    },
                    Lit::Flag(b) => &mut probe.flags[usize::from(b)],
                };
                if list.last() != Some(&i) {
                    list.push(i);
                }
            }
        }
        idx
    }

    fn always(&mut self, i: usize, log_type: crate::record::LogType) {
        match log_type {
            crate::record::LogType::Cloudtrail => self.cloudtrail.push(i),
            crate::record::LogType::S3Access => self.access_log.push(i),
        }
    }

    /// Appends the rules `e` may satisfy, in no particular order and possibly
    /// more than once.
    fn candidates(&self, e: &Event, out: &mut Vec<usize>) {
        if e.log_type() == crate::record::LogType::S3Access {
            out.extend_from_slice(&self.access_log);
            return;
        }
        out.extend_from_slice(&self.cloudtrail);
        for p in &self.probes {
            e.any_value(&p.field, &mut |v| {
                p.candidates(v, out);
                false // every value of the field
            });
        }
    }
}

impl Probe {
    /// The rules one value satisfies, with the semantics of the operators the
    /// literals come from (see [`crate::rules::matcher::Op::holds`]): text compares
    /// exactly, a flag equals a boolean or the text `true`/`false` in any case.
    fn candidates(&self, v: Val<'_>, out: &mut Vec<usize>) {
        let Some(text) = v.text() else { return };
        if let Some(list) = self.exact.get(text.as_ref()) {
            out.extend_from_slice(list);
        }
        for (prefix, list) in &self.prefixes {
            if text.starts_with(prefix.as_str()) {
                out.extend_from_slice(list);
            }
        }
        if self.flags.iter().all(Vec::is_empty) {
            return; // (most fields: no rule asks them for true or false)
        }
        let flag = match v {
            Val::Bool(b) => Some(b),
            Val::Json(serde_json::Value::Bool(b)) => Some(*b),
            _ if text.eq_ignore_ascii_case("true") => Some(true),
            _ if text.eq_ignore_ascii_case("false") => Some(false),
            _ => None,
        };
        if let Some(b) = flag {
            out.extend_from_slice(&self.flags[usize::from(b)]);
        }
    }
}

/// A necessary condition for `c` to hold, if the condition implies one.
fn necessary(rule: &Rule, c: &crate::rules::condition::Cond) -> Option<Need> {
    use crate::rules::condition::Cond;
    match c {
        Cond::Sel(i) => rule.selections[*i]
            .fields
            .iter()
            .filter_map(field_need)
            .min_by_key(|n| n.rank),
        // Any conjunct's requirement is necessary: take the best.
        Cond::And(items) => items
            .iter()
            .filter_map(|x| necessary(rule, x))
            .min_by_key(|n| n.rank),
        // Every alternative must require something; their union is necessary.
        Cond::Or(items) => {
            let mut all = Need {
                any: Vec::new(),
                rank: 0,
            };
            for x in items {
                let n = necessary(rule, x)?;
                all.any.extend(n.any);
                all.rank = all.rank.max(n.rank);
            }
            Some(all)
        }
        Cond::Not(_) => None,
    }
}

/// What one `field = test` line requires of the field's values, when its test
/// names literals: case-sensitive `eq`/`in` of strings or booleans, or a
/// case-sensitive `prefix` (in a table without `extract` and without
/// `exists = false`; `not` and further operators only narrow it down).
fn field_need(c: &crate::rules::matcher::FieldCond) -> Option<Need> {
    use crate::rules::matcher::{FieldTest, Op, Scalar};
    fn lits(t: &FieldTest) -> Option<Vec<Lit>> {
        match t {
            // Any alternative may hold: all must name literals.
            FieldTest::AnyOf(alts) => {
                let mut all = Vec::new();
                for a in alts {
                    all.extend(lits(a)?);
                }
                Some(all)
            }
            FieldTest::Table {
                ops,
                exists,
                extract: None,
                ..
            } if *exists != Some(false) => ops.iter().find_map(|op| match op {
                Op::Eq { any, ci: false } => any
                    .iter()
                    .map(|s| match s {
                        Scalar::Str(x) => Some(Lit::Exact(x.clone())),
                        Scalar::Bool(b) => Some(Lit::Flag(*b)),
                        // Numbers compare by value ("443" = "443.0").
                        Scalar::Int(_) | Scalar::Float(_) => None,
                    })
                    .collect(),
                Op::Prefix { any, ci: false } => {
                    Some(any.iter().map(|p| Lit::Prefix(p.clone())).collect())
                }
                _ => None,
            }),
            FieldTest::Table { .. } => None,
        }
    }
    // Only fields that cost little to read on every event: the record's own
    // (not the normalised actor or S3 target, which are worked out on demand)
    // and the two flags every event carries.
    match &c.field {
        FieldRef::Norm(NormField::EventDenied | NormField::EventSuccess) | FieldRef::Raw { .. } => {
        }
        FieldRef::Norm(_) => return None,
    }
    let lits = lits(&c.test)?;
    let rank = rank(&c.field, &lits);
    Some(Need {
        any: lits.into_iter().map(|l| (c.field.clone(), l)).collect(),
        rank,
    })
}

/// How good an index entry a requirement makes (lower is better): the event's
/// name first, then what few events carry (a denial, an error code), then exact
/// values of other top-level fields, nested ones, prefixes; `event.success = true`
/// (most events succeed) and anything asking for `false` last.
fn rank(field: &FieldRef, lits: &[Lit]) -> u8 {
    let prefix = lits.iter().any(|l| matches!(l, Lit::Prefix(_)));
    let flag_false = lits.contains(&Lit::Flag(false));
    match field {
        FieldRef::Raw { path, .. } if path.len() == 1 && path[0] == "eventName" => {
            if prefix {
                2
            } else {
                0
            }
        }
        FieldRef::Norm(NormField::EventDenied) if !flag_false => 1,
        FieldRef::Raw { path, .. } if path.len() == 1 && path[0] == "errorCode" && !prefix => 1,
        FieldRef::Norm(_) => 6,
        _ if flag_false => 6,
        FieldRef::Raw { path, .. } => match (path.len(), prefix) {
            (1, false) => 3,
            (_, false) => 4,
            (_, true) => 5,
        },
    }
}

/// The latest event time trusted to move rules' marks when the wall clock reads
/// `now_ms` (the system's when `None`).
/// A date as one word: year, month and day in bits 16.., 8..16 and 0..8.
fn pack_date((y, m, d): (i32, u8, u8)) -> u32 {
    ((y.clamp(0, 65_535) as u32) << 16) | (u32::from(m) << 8) | u32::from(d)
}

fn unpack_date(p: u32) -> (i32, u8, u8) {
    ((p >> 16) as i32, (p >> 8) as u8, p as u8)
}

fn horizon(now_ms: Option<i64>) -> i64 {
    let now = now_ms.unwrap_or_else(|| {
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_millis() as i64)
    });
    now.saturating_add(threshold::FUTURE_TOLERANCE_MS)
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
    use crate::rules::syntax::Loader;

    fn engine(rules: &[(&str, &str)], options: EngineOptions) -> Engine {
        let mut loader = Loader::new(Strictness::Run, crate::rules::today());
        for (id, body) in rules {
            let src = format!("id = \"{id}\"\ntitle = \"t\"\nseverity = \"low\"\n{body}");
            loader.add(std::path::Path::new(&format!("{id}.toml")), &src);
        }
        Engine::new(&loader.finish().expect("the rules compile"), options)
    }

    /// The rules of `e` that `candidates` offers, by id, sorted.
    fn candidates(engine: &Engine, e: &Event) -> Vec<String> {
        let mut out = Vec::new();
        engine.index.candidates(e, &mut out);
        let mut ids: Vec<String> = out.iter().map(|&i| engine.rules[i].id.clone()).collect();
        ids.sort();
        ids.dedup();
        ids
    }

    const RULES: [(&str, &str); 7] = [
        (
            "by-name",
            "[match]\neventName = [\"GetObject\", \"HeadObject\"]\n",
        ),
        (
            "by-denial",
            "[match]\neventSource = \"s3.amazonaws.com\"\n\"event.denied\" = true\n",
        ),
        (
            "by-prefix",
            "[match]\neventName = { prefix = \"DeleteBucket\" }\n\"event.success\" = true\n",
        ),
        (
            "by-either",
            "condition = \"upper or lower\"\n[selection.upper]\neventName = \"ConsoleLogin\"\n[selection.lower]\neventname = \"ConsoleLogin\"\n",
        ),
        (
            "by-nested",
            "[match]\n\"userIdentity.type\" = \"Root\"\neventType = { not = \"AwsServiceEvent\" }\n",
        ),
        (
            "by-source",
            "[match]\neventSource = \"iam.amazonaws.com\"\neventName = { regex = \"^Create\" }\n",
        ),
        // Nothing literal to go by: evaluated on every event.
        ("always", "[match]\neventName = { not = \"GetObject\" }\n"),
    ];

    fn event(json: serde_json::Value) -> Event {
        Event::from_value(json).unwrap()
    }

    #[test]
    fn events_meet_only_the_rules_their_values_can_satisfy() {
        let engine = engine(&RULES, EngineOptions::default());
        let cases = [
            (
                serde_json::json!({"eventName": "GetObject", "eventSource": "s3.amazonaws.com"}),
                vec!["always", "by-name"],
            ),
            (
                serde_json::json!({"eventName": "GetObject", "eventSource": "s3.amazonaws.com", "errorCode": "AccessDenied"}),
                vec!["always", "by-denial", "by-name"],
            ),
            (
                serde_json::json!({"eventName": "DeleteBucketPolicy", "eventSource": "s3.amazonaws.com"}),
                vec!["always", "by-prefix"],
            ),
            (
                serde_json::json!({"eventname": "ConsoleLogin"}),
                vec!["always", "by-either"],
            ),
            (
                serde_json::json!({"eventName": "ConsoleLogin", "userIdentity": {"type": "Root"}}),
                vec!["always", "by-either", "by-nested"],
            ),
            (
                serde_json::json!({"eventName": "CreateUser", "eventSource": "iam.amazonaws.com"}),
                vec!["always", "by-source"],
            ),
        ];
        for (json, want) in cases {
            assert_eq!(candidates(&engine, &event(json.clone())), want, "{json}");
        }
    }

    #[test]
    fn the_index_keeps_the_operators_semantics() {
        // Flags equal booleans and the text `true` in any case; exact text and
        // prefixes are case-sensitive; every element of an array counts.
        let engine = engine(
            &[
                ("flag", "[match]\nreadOnly = true\n"),
                ("name", "[match]\neventName = \"GetObject\"\n"),
                (
                    "arn",
                    "[match]\n\"resources.ARN\" = { prefix = \"arn:aws:s3:::secret\" }\n",
                ),
            ],
            EngineOptions::default(),
        );
        let cases = [
            (serde_json::json!({"readOnly": true}), vec!["flag"]),
            (serde_json::json!({"readOnly": "TRUE"}), vec!["flag"]),
            (serde_json::json!({"readOnly": false}), vec![]),
            (serde_json::json!({"eventName": "getobject"}), vec![]),
            (
                serde_json::json!({"resources": [{"ARN": "arn:aws:s3:::public"}, {"ARN": "arn:aws:s3:::secret/x"}]}),
                vec!["arn"],
            ),
        ];
        for (json, want) in cases {
            assert_eq!(candidates(&engine, &event(json.clone())), want, "{json}");
        }
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

    #[test]
    fn indexed_and_unindexed_engines_fire_alike() {
        let mut fast = engine(&RULES, EngineOptions::default());
        let mut slow = engine(
            &RULES,
            EngineOptions {
                no_index: true,
                ..EngineOptions::default()
            },
        );
        let events = [
            serde_json::json!({"eventName": "HeadObject", "eventSource": "s3.amazonaws.com", "errorCode": "AccessDenied"}),
            serde_json::json!({"eventName": "DeleteBucket", "eventSource": "s3.amazonaws.com"}),
            serde_json::json!({"eventName": "CreateRole", "eventSource": "iam.amazonaws.com", "userIdentity": {"type": "Root"}}),
            serde_json::json!({"eventname": "ConsoleLogin", "eventType": "AwsServiceEvent", "userIdentity": {"type": "Root"}}),
        ];
        let mut fired = 0;
        for json in events {
            let (mut a, mut b) = (Vec::new(), Vec::new());
            fast.evaluate(&event(json.clone()), &mut a);
            slow.evaluate(&event(json.clone()), &mut b);
            assert_eq!(a, b, "{json}");
            fired += a.len();
        }
        assert!(fired >= 6, "the rules fire: {fired}");
    }
}
