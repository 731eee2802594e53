//! Compiled field conditions and their evaluation against an [`Event`].
//!
//! Patterns are compiled once at load time (regexes, globs, CIDRs, lower-cased
//! strings for `ci`), so evaluating a rule never re-parses anything.

use std::cmp::Ordering;

use ipnet::IpNet;
use regex::Regex;

use crate::record::{Event, FieldRef, Val};

/// A literal from a rule file.
#[derive(Debug, Clone, PartialEq)]
pub enum Scalar {
    Str(String),
    Int(i64),
    Float(f64),
    Bool(bool),
}

impl Scalar {
    fn as_f64(&self) -> Option<f64> {
        match self {
            Scalar::Int(i) => Some(*i as f64),
            Scalar::Float(f) => Some(*f),
            _ => None,
        }
    }
}

/// `gt`, `gte`, `lt`, `lte`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CmpOp {
    Gt,
    Gte,
    Lt,
    Lte,
}

impl CmpOp {
    fn holds(self, o: Ordering) -> bool {
        match self {
            CmpOp::Gt => o == Ordering::Greater,
            CmpOp::Gte => o != Ordering::Less,
            CmpOp::Lt => o == Ordering::Less,
            CmpOp::Lte => o != Ordering::Greater,
        }
    }
}

/// One operator that tests a single value. Lists mean "any of".
#[derive(Debug, Clone)]
pub enum Op {
    /// `eq` / `in` / a bare scalar or list of scalars.
    Eq {
        any: Vec<Scalar>,
        ci: bool,
    },
    Prefix {
        any: Vec<String>,
        ci: bool,
    },
    Suffix {
        any: Vec<String>,
        ci: bool,
    },
    Contains {
        any: Vec<String>,
        ci: bool,
    },
    /// `eq`/`in`/`prefix`/`suffix`/`contains` with `expand = true`: operands are
    /// templates whose `{field}` placeholders take the event's values; an operand
    /// whose field is absent does not hold.
    Expand {
        kind: ExpandKind,
        any: Vec<crate::rules::Template>,
        ci: bool,
    },
    /// `regex` and `glob` (globs are translated to anchored regexes).
    Regex {
        any: Vec<Regex>,
    },
    Cidr {
        any: Vec<IpNet>,
    },
    Cmp {
        op: CmpOp,
        bound: Scalar,
    },
}

/// The string operators `expand` applies to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ExpandKind {
    Eq,
    Prefix,
    Suffix,
    Contains,
}

/// A field's values, as a test reads them: called with a test for one value, it
/// calls the test on each value until one passes, and says whether one did.
type Values<'a> = dyn FnMut(&mut dyn FnMut(Val<'_>) -> bool) -> bool + 'a;

/// What a field must satisfy.
#[derive(Debug, Clone)]
pub enum FieldTest {
    /// An operator table: `exists`, `not` and the value operators must all hold; the
    /// value operators must all hold for one and the same value of the field.
    Table {
        ops: Vec<Op>,
        exists: Option<bool>,
        not: Option<Box<FieldTest>>,
        /// `extract`: the table tests the first capture group of this regex in
        /// each value instead of the value (values it does not match fail).
        extract: Option<Regex>,
    },
    /// A list mixing scalars and tables: any alternative holds.
    AnyOf(Vec<FieldTest>),
}

/// One `key = test` line of a selection.
#[derive(Debug, Clone)]
pub struct FieldCond {
    /// The path as written, for messages.
    pub path: String,
    pub field: FieldRef,
    pub test: FieldTest,
}

/// A named set of field conditions, all of which must hold.
#[derive(Debug, Clone)]
pub struct Selection {
    pub name: String,
    pub fields: Vec<FieldCond>,
}

impl Selection {
    pub fn matches(&self, e: &Event) -> bool {
        self.fields.iter().all(|c| c.test.holds(e, &c.field))
    }

    /// The first condition that does not hold, for explaining a failed test.
    pub fn first_failure(&self, e: &Event) -> Option<&FieldCond> {
        self.fields.iter().find(|c| !c.test.holds(e, &c.field))
    }
}

impl FieldTest {
    pub fn holds(&self, e: &Event, field: &FieldRef) -> bool {
        self.holds_in(e, &mut |f| e.any_value(field, &mut |v| f(v)))
    }

    /// Evaluates against the values `each` yields (it calls its argument on each
    /// value until that returns true, and says whether it did).
    fn holds_in(&self, e: &Event, each: &mut Values<'_>) -> bool {
        match self {
            FieldTest::AnyOf(alts) => alts.iter().any(|t| t.holds_in(e, each)),
            FieldTest::Table {
                ops,
                exists,
                not,
                extract: Some(re),
            } => {
                let mut extracted = |f: &mut dyn FnMut(Val<'_>) -> bool| {
                    each(&mut |v: Val<'_>| {
                        let Some(t) = v.text() else { return false };
                        match re.captures(&t).and_then(|c| c.get(1)) {
                            Some(m) => f(Val::Str(m.as_str())),
                            None => false,
                        }
                    })
                };
                table(e, &mut extracted, ops, *exists, not.as_deref())
            }
            FieldTest::Table {
                ops,
                exists,
                not,
                extract: None,
            } => table(e, each, ops, *exists, not.as_deref()),
        }
    }
}

fn table(
    e: &Event,
    each: &mut Values<'_>,
    ops: &[Op],
    exists: Option<bool>,
    not: Option<&FieldTest>,
) -> bool {
    if let Some(want) = exists
        && each(&mut |_| true) != want
    {
        return false;
    }
    if let Some(inner) = not
        && inner.holds_in(e, each)
    {
        return false;
    }
    ops.is_empty() || each(&mut |v| ops.iter().all(|op| op.holds(v, e)))
}

fn lower_if(ci: bool, s: &str) -> std::borrow::Cow<'_, str> {
    if ci {
        std::borrow::Cow::Owned(s.to_lowercase())
    } else {
        std::borrow::Cow::Borrowed(s)
    }
}

impl Op {
    /// Whether one value satisfies the operator. Patterns of `ci` operators were
    /// lower-cased at compile time; the value is lower-cased here.
    pub fn holds(&self, v: Val<'_>, e: &Event) -> bool {
        match self {
            Op::Expand { kind, any, ci } => v.text().is_some_and(|t| {
                let t = lower_if(*ci, &t);
                any.iter().filter_map(|tpl| tpl.render_all(e)).any(|want| {
                    let want = lower_if(*ci, &want);
                    match kind {
                        ExpandKind::Eq => t == want,
                        ExpandKind::Prefix => t.starts_with(want.as_ref()),
                        ExpandKind::Suffix => t.ends_with(want.as_ref()),
                        ExpandKind::Contains => t.contains(want.as_ref()),
                    }
                })
            }),
            Op::Eq { any, ci } => any.iter().any(|s| scalar_eq(s, v, *ci)),
            Op::Prefix { any, ci } => v.text().is_some_and(|t| {
                any.iter()
                    .any(|p| lower_if(*ci, &t).starts_with(p.as_str()))
            }),
            Op::Suffix { any, ci } => v
                .text()
                .is_some_and(|t| any.iter().any(|p| lower_if(*ci, &t).ends_with(p.as_str()))),
            Op::Contains { any, ci } => v
                .text()
                .is_some_and(|t| any.iter().any(|p| lower_if(*ci, &t).contains(p.as_str()))),
            Op::Regex { any } => v.text().is_some_and(|t| any.iter().any(|r| r.is_match(&t))),
            Op::Cidr { any } => v
                .text()
                .and_then(|t| t.trim().parse::<std::net::IpAddr>().ok())
                .is_some_and(|ip| any.iter().any(|net| net.contains(&ip))),
            Op::Cmp { op, bound } => match bound.as_f64() {
                Some(b) => v
                    .number()
                    .and_then(|n| n.partial_cmp(&b))
                    .is_some_and(|o| op.holds(o)),
                None => match bound {
                    Scalar::Str(b) => v
                        .text()
                        .is_some_and(|t| op.holds(t.as_ref().cmp(b.as_str()))),
                    _ => false,
                },
            },
        }
    }
}

/// Equality between a rule literal and a record value. Numbers compare numerically
/// (`443` equals `"443"`), booleans equal `true`/`false` in any case, strings compare
/// as text.
fn scalar_eq(s: &Scalar, v: Val<'_>, ci: bool) -> bool {
    match s {
        Scalar::Str(want) => v.text().is_some_and(|t| lower_if(ci, &t) == want.as_str()),
        Scalar::Int(_) | Scalar::Float(_) => v.number() == s.as_f64(),
        Scalar::Bool(b) => match v {
            Val::Bool(x) => x == *b,
            Val::Json(serde_json::Value::Bool(x)) => x == b,
            _ => v
                .text()
                .is_some_and(|t| t.eq_ignore_ascii_case(if *b { "true" } else { "false" })),
        },
    }
}

/// Translates a glob (`*` any run, `?` one character, everything else literal) into an
/// anchored regex.
pub fn glob_to_regex(glob: &str, ci: bool) -> Result<Regex, regex::Error> {
    let mut re = String::with_capacity(glob.len() + 8);
    re.push_str(if ci { "(?is)^" } else { "(?s)^" });
    for c in glob.chars() {
        match c {
            '*' => re.push_str(".*"),
            '?' => re.push('.'),
            c => re.push_str(&regex::escape(c.encode_utf8(&mut [0; 4]))),
        }
    }
    re.push('$');
    Regex::new(&re)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn event() -> Event {
        Event::from_value(json!({
            "eventName": "GetObject",
            "sourceIPAddress": "203.0.113.7",
            "userAgent": "aws-cli/2.15.0 Python/3.11",
            "eventTime": "2024-05-01T10:00:00Z",
            "readOnly": true,
            "requestParameters": {"bucketName": "Finance-Data", "port": "443", "n": 12},
            "resources": [{"ARN": "arn:aws:s3:::finance-data"}, {"ARN": "arn:aws:s3:::finance-data/q1.csv"}],
            "vpcIp": "2001:db8::1",
            "emptyList": []
        }))
        .unwrap()
    }

    fn table(ops: Vec<Op>) -> FieldTest {
        FieldTest::Table {
            ops,
            exists: None,
            not: None,
            extract: None,
        }
    }

    fn holds(path: &str, t: &FieldTest) -> bool {
        t.holds(&event(), &FieldRef::parse(path).unwrap())
    }

    fn s(x: &str) -> String {
        x.to_owned()
    }

    #[test]
    fn eq_is_exact_unless_ci_and_lists_mean_any() {
        let eq = |v: &[&str], ci| {
            table(vec![Op::Eq {
                any: v.iter().map(|x| Scalar::Str(s(x))).collect(),
                ci,
            }])
        };
        assert!(holds("eventName", &eq(&["GetObject"], false)));
        assert!(!holds("eventName", &eq(&["getobject"], false)));
        assert!(holds("eventName", &eq(&["getobject"], true)));
        assert!(holds("eventName", &eq(&["PutObject", "GetObject"], false)));
        assert!(!holds("eventName", &eq(&["GetObjec"], false)));
    }

    #[test]
    fn numbers_and_booleans_compare_by_value() {
        let eqv = |x: Scalar| {
            table(vec![Op::Eq {
                any: vec![x],
                ci: false,
            }])
        };
        assert!(holds("requestParameters.port", &eqv(Scalar::Int(443))));
        assert!(holds("requestParameters.n", &eqv(Scalar::Float(12.0))));
        assert!(holds("requestParameters.n", &eqv(Scalar::Str(s("12")))));
        assert!(holds("readOnly", &eqv(Scalar::Bool(true))));
        assert!(!holds("readOnly", &eqv(Scalar::Bool(false))));
        assert!(holds("readOnly", &eqv(Scalar::Str(s("true")))));
    }

    #[test]
    fn string_operators() {
        let cases: Vec<(&str, Op, bool)> = vec![
            (
                "userAgent",
                Op::Prefix {
                    any: vec![s("aws-cli/")],
                    ci: false,
                },
                true,
            ),
            (
                "userAgent",
                Op::Prefix {
                    any: vec![s("AWS-CLI/")],
                    ci: false,
                },
                false,
            ),
            (
                "userAgent",
                Op::Prefix {
                    any: vec![s("aws-cli/")],
                    ci: true,
                },
                true,
            ),
            (
                "userAgent",
                Op::Suffix {
                    any: vec![s(".amazonaws.com"), s("3.11")],
                    ci: false,
                },
                true,
            ),
            (
                "userAgent",
                Op::Contains {
                    any: vec![s("python")],
                    ci: true,
                },
                true,
            ),
            (
                "userAgent",
                Op::Contains {
                    any: vec![s("python")],
                    ci: false,
                },
                false,
            ),
            (
                "eventName",
                Op::Regex {
                    any: vec![Regex::new("Object$").unwrap()],
                },
                true,
            ),
            (
                "eventName",
                Op::Regex {
                    any: vec![Regex::new("^Object").unwrap()],
                },
                false,
            ),
            (
                "eventName",
                Op::Regex {
                    any: vec![glob_to_regex("Get*", false).unwrap()],
                },
                true,
            ),
            (
                "eventName",
                Op::Regex {
                    any: vec![glob_to_regex("get?bject", true).unwrap()],
                },
                true,
            ),
            (
                "eventName",
                Op::Regex {
                    any: vec![glob_to_regex("Get", false).unwrap()],
                },
                false,
            ),
            (
                "eventName",
                Op::Regex {
                    any: vec![glob_to_regex("G.t*", false).unwrap()],
                },
                false,
            ),
        ];
        for (path, op, want) in cases {
            assert_eq!(holds(path, &table(vec![op.clone()])), want, "{path} {op:?}");
        }
    }

    #[test]
    fn cidr_matches_v4_and_v6_and_never_hostnames() {
        let cidr = |nets: &[&str]| {
            table(vec![Op::Cidr {
                any: nets.iter().map(|n| n.parse().unwrap()).collect(),
            }])
        };
        assert!(holds("sourceIPAddress", &cidr(&["203.0.113.0/24"])));
        assert!(!holds("sourceIPAddress", &cidr(&["198.51.100.0/24"])));
        assert!(holds("vpcIp", &cidr(&["10.0.0.0/8", "2001:db8::/32"])));
        assert!(!holds("eventName", &cidr(&["0.0.0.0/0", "::/0"])));
    }

    #[test]
    fn comparisons_are_numeric_or_lexical() {
        let cmp = |op, bound| table(vec![Op::Cmp { op, bound }]);
        assert!(holds(
            "requestParameters.n",
            &cmp(CmpOp::Gt, Scalar::Int(11))
        ));
        assert!(!holds(
            "requestParameters.n",
            &cmp(CmpOp::Gt, Scalar::Int(12))
        ));
        assert!(holds(
            "requestParameters.n",
            &cmp(CmpOp::Gte, Scalar::Int(12))
        ));
        assert!(holds(
            "requestParameters.port",
            &cmp(CmpOp::Lt, Scalar::Float(1024.0))
        ));
        assert!(holds(
            "requestParameters.port",
            &cmp(CmpOp::Lte, Scalar::Int(443))
        ));
        assert!(holds(
            "eventTime",
            &cmp(CmpOp::Gte, Scalar::Str(s("2024-05-01T00:00:00Z")))
        ));
        assert!(!holds(
            "eventTime",
            &cmp(CmpOp::Lt, Scalar::Str(s("2024-05-01T00:00:00Z")))
        ));
        assert!(
            !holds("eventName", &cmp(CmpOp::Gt, Scalar::Int(0))),
            "text is not a number"
        );
    }

    #[test]
    fn missing_fields_fail_everything_but_exists_false_and_not() {
        let prefix = Op::Prefix {
            any: vec![s("")],
            ci: false,
        };
        assert!(!holds("nope", &table(vec![prefix.clone()])));
        let exists = |b| FieldTest::Table {
            ops: vec![],
            exists: Some(b),
            not: None,
            extract: None,
        };
        assert!(holds("nope", &exists(false)));
        assert!(!holds("nope", &exists(true)));
        assert!(holds("eventName", &exists(true)));
        assert!(
            holds("emptyList", &exists(false)),
            "an empty array has no values"
        );
        let not = FieldTest::Table {
            ops: vec![],
            exists: None,
            not: Some(Box::new(table(vec![prefix]))),
            extract: None,
        };
        assert!(holds("nope", &not));
        assert!(!holds("eventName", &not));
    }

    #[test]
    fn arrays_hold_when_any_element_holds_and_not_means_none() {
        let suffix = |x: &str| {
            table(vec![Op::Suffix {
                any: vec![s(x)],
                ci: false,
            }])
        };
        assert!(holds("resources.ARN", &suffix("/q1.csv")));
        let not_q1 = FieldTest::Table {
            ops: vec![],
            exists: None,
            not: Some(Box::new(suffix("/q1.csv"))),
            extract: None,
        };
        assert!(
            !holds("resources.ARN", &not_q1),
            "one element matched, so `not` fails"
        );
        // Value operators in one table must hold for the same element.
        let both = table(vec![
            Op::Prefix {
                any: vec![s("arn:aws:s3:::finance-data/")],
                ci: false,
            },
            Op::Suffix {
                any: vec![s("finance-data")],
                ci: false,
            },
        ]);
        assert!(!holds("resources.ARN", &both));
    }

    #[test]
    fn any_of_alternatives() {
        let t = FieldTest::AnyOf(vec![
            table(vec![Op::Eq {
                any: vec![Scalar::Str(s("PutObject"))],
                ci: false,
            }]),
            table(vec![Op::Prefix {
                any: vec![s("Get")],
                ci: false,
            }]),
        ]);
        assert!(holds("eventName", &t));
    }
}
