//! The rule index: which rules an event can satisfy, found from values their
//! conditions require, so that each event is evaluated against those rules only.
//! Its own module because it is purely an optimisation of [`super::Engine::matching`],
//! tested against evaluating every rule ([`super::EngineOptions::no_index`]).

use crate::record::{Event, FieldRef, NormField, Val};
use crate::rules::Rule;

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
pub(super) struct RuleIndex {
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
    pub(super) fn unindexed(rules: &[Rule]) -> RuleIndex {
        let mut idx = RuleIndex::default();
        for (i, r) in rules.iter().enumerate() {
            idx.always(i, r.log_type);
        }
        idx
    }

    pub(super) fn new(rules: &[Rule]) -> RuleIndex {
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
    pub(super) fn candidates(&self, e: &Event, out: &mut Vec<usize>) {
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

#[cfg(test)]
mod tests {
    use crate::engine::tests::{engine, event};
    use crate::engine::{Engine, EngineOptions};
    use crate::record::Event;

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
