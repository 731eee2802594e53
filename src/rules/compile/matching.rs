//! Compiling field conditions: what a field must satisfy (a literal, a list, or an
//! operator table with `ci`, `expand`, `extract` and `not`) into the matcher's
//! [`FieldTest`], and a table of them into a [`Selection`]. Its own module because
//! the operators are most of the language, and `[match]`, `[selection.NAME]` and
//! `[[exclude]]` all compile through it.

use std::ops::Range;

use ipnet::IpNet;
use regex::Regex;
use toml::de::{DeTable, DeValue};

use super::values::{key_of, kind};
use super::{FileCx, SValue};
use crate::rules::diagnostics::suggest;
use crate::rules::matcher::{
    CmpOp, ExpandKind, FieldCond, FieldTest, Op, Scalar, Selection, glob_to_regex,
};

const OPERATORS: [&str; 17] = [
    "eq", "in", "prefix", "suffix", "contains", "glob", "regex", "cidr", "gt", "gte", "lt", "lte",
    "exists", "not", "ci", "expand", "extract",
];

impl FileCx<'_> {
    /// A literal usable by `eq`/`in` and the comparisons.
    fn scalar(&mut self, v: &SValue<'_>, op: &str) -> Option<Scalar> {
        match v.get_ref() {
            DeValue::String(s) => Some(Scalar::Str(s.to_string())),
            DeValue::Integer(i) => {
                match i64::from_str_radix(&i.as_str().replace('_', ""), i.radix()) {
                    Ok(n) => Some(Scalar::Int(n)),
                    Err(_) => {
                        self.err(v.span(), format!("`{op}`: integer out of range"));
                        None
                    }
                }
            }
            DeValue::Float(f) => match f.as_str().replace('_', "").parse::<f64>() {
                Ok(x) => Some(Scalar::Float(x)),
                Err(_) => {
                    self.err(v.span(), format!("`{op}`: invalid number"));
                    None
                }
            },
            DeValue::Boolean(b) => Some(Scalar::Bool(*b)),
            DeValue::Datetime(d) => Some(Scalar::Str(d.to_string())),
            other => {
                self.err(
                    v.span(),
                    format!(
                        "`{op}` takes a string, number or boolean here, found {}",
                        kind(other)
                    ),
                );
                None
            }
        }
    }

    fn scalars(&mut self, v: &SValue<'_>, op: &str) -> Option<Vec<Scalar>> {
        match v.get_ref() {
            DeValue::Array(items) if items.is_empty() => {
                self.err(v.span(), format!("`{op}` needs at least one value"));
                None
            }
            DeValue::Array(items) => {
                let mut out = Vec::new();
                for i in items.iter() {
                    out.push(self.scalar(i, op)?);
                }
                Some(out)
            }
            _ => Some(vec![self.scalar(v, op)?]),
        }
    }

    /// Compiles what a field must satisfy: a scalar (equals), a list (any of), or an
    /// operator table.
    fn field_test(&mut self, v: &SValue<'_>) -> Option<FieldTest> {
        self.field_test_ci(v, false)
    }

    /// A nested `not`: `ci` and `expand` of the enclosing table carry over.
    fn nested_not(&mut self, v: &SValue<'_>, ci: bool, expand: bool) -> Option<FieldTest> {
        let saved = std::mem::replace(&mut self.inherited_expand, expand);
        let t = self.field_test_ci(v, ci);
        self.inherited_expand = saved;
        t
    }

    /// An `expand = true` string operator: its operands become templates.
    fn expand_op(&mut self, name: &str, list: Vec<(String, Range<usize>)>, ci: bool) -> Option<Op> {
        let kind = match name {
            "eq" | "in" => ExpandKind::Eq,
            "prefix" => ExpandKind::Prefix,
            "suffix" => ExpandKind::Suffix,
            _ => ExpandKind::Contains,
        };
        let mut any = Vec::new();
        for (text, span) in list {
            match crate::rules::Template::parse(&text) {
                Ok(t) => any.push(t),
                Err((_, msg)) => {
                    self.err(span, format!("`{name}` with expand: {msg}"));
                    return None;
                }
            }
        }
        Some(Op::Expand { kind, any, ci })
    }

    /// As [`Self::field_test`], with `ci` inherited from an enclosing table (a `not`
    /// inside a `ci = true` table is case-insensitive too).
    fn field_test_ci(&mut self, v: &SValue<'_>, inherited_ci: bool) -> Option<FieldTest> {
        let scalar_list = !matches!(v.get_ref(), DeValue::Table(_))
            && match v.get_ref() {
                DeValue::Array(items) => items
                    .iter()
                    .all(|i| matches!(i.get_ref(), DeValue::String(_))),
                DeValue::String(_) => true,
                _ => false,
            };
        if self.inherited_expand && scalar_list {
            // `not = "{field}"` inside an `expand = true` table.
            let op = self
                .strings(v, "eq")
                .and_then(|l| self.expand_op("eq", l, inherited_ci))?;
            return Some(FieldTest::Table {
                ops: vec![op],
                exists: None,
                not: None,
                extract: None,
            });
        }
        match v.get_ref() {
            DeValue::Table(t) => self.op_table(t, v.span(), inherited_ci),
            DeValue::Array(items) if items.is_empty() => {
                self.err(
                    v.span(),
                    "an empty list matches nothing; give at least one value",
                );
                None
            }
            DeValue::Array(items)
                if items
                    .iter()
                    .all(|i| !matches!(i.get_ref(), DeValue::Table(_) | DeValue::Array(_))) =>
            {
                Some(FieldTest::Table {
                    ops: vec![eq_op(self.scalars(v, "eq")?, inherited_ci)],
                    exists: None,
                    not: None,
                    extract: None,
                })
            }
            DeValue::Array(items) => {
                let mut alts = Vec::new();
                for i in items.iter() {
                    alts.push(self.field_test_ci(i, inherited_ci)?);
                }
                Some(FieldTest::AnyOf(alts))
            }
            _ => Some(FieldTest::Table {
                ops: vec![eq_op(vec![self.scalar(v, "eq")?], inherited_ci)],
                exists: None,
                not: None,
                extract: None,
            }),
        }
    }

    fn op_table(
        &mut self,
        t: &DeTable<'_>,
        span: Range<usize>,
        inherited_ci: bool,
    ) -> Option<FieldTest> {
        if t.is_empty() {
            self.err(
                span,
                format!("empty operator table; use one of: {}", OPERATORS.join(", ")),
            );
            return None;
        }
        let ci = match key_of(t, "ci") {
            Some((_, v)) => self.bool(v, "ci")?,
            None => inherited_ci,
        };
        let lower = |s: String| if ci { s.to_lowercase() } else { s };
        let expand = match key_of(t, "expand") {
            Some((_, v)) => self.bool(v, "expand")?,
            None => self.inherited_expand,
        };
        let expandable = ["eq", "in", "prefix", "suffix", "contains", "not"];
        if let Some((k, _)) = key_of(t, "expand")
            && expand
            && !t
                .iter()
                .any(|(k, _)| expandable.contains(&k.get_ref().as_ref()))
        {
            self.err(k.span(), "`expand = true` needs an `eq`, `in`, `prefix`, `suffix`, `contains` or `not` in the same table");
            return None;
        }
        let extract = match key_of(t, "extract") {
            None => None,
            Some((_, v)) => {
                let pat = self.string(v, "extract")?;
                match Regex::new(&if ci {
                    format!("(?i){pat}")
                } else {
                    pat.clone()
                }) {
                    Ok(r) if r.captures_len() == 2 => Some(r),
                    Ok(_) => {
                        self.err(v.span(), format!("`extract` needs a regex with exactly one capture group, such as '^arn:aws:kms:[^:]*:([^:]*):'; `{pat}` has {}", r_groups(&pat)));
                        return None;
                    }
                    Err(e) => {
                        let msg = e
                            .to_string()
                            .lines()
                            .map(str::trim)
                            .filter(|l| !l.is_empty())
                            .collect::<Vec<_>>()
                            .join(" ");
                        self.err(v.span(), format!("invalid extract regex `{pat}`: {msg}"));
                        return None;
                    }
                }
            }
        };
        let mut ops = Vec::new();
        let mut exists = None;
        let mut not = None;
        let mut ok = true;
        for (k, v) in t.iter() {
            let name = k.get_ref().as_ref();
            let op = match name {
                "ci" | "expand" | "extract" => continue,
                "eq" | "in" | "prefix" | "suffix" | "contains" if expand => {
                    self.strings(v, name).and_then(|l| self.expand_op(name, l, ci))
                }
                "glob" | "regex" | "cidr" | "gt" | "gte" | "lt" | "lte" if expand => {
                    self.err(k.span(), format!("`expand` applies to eq, in, prefix, suffix and contains, not to `{name}`; put `{name}` in a table without expand"));
                    None
                }
                "eq" | "in" => self.scalars(v, name).map(|any| eq_op(any, ci)),
                "prefix" | "suffix" | "contains" => self.strings(v, name).map(|l| {
                    let any: Vec<String> = l.into_iter().map(|(s, _)| lower(s)).collect();
                    match name {
                        "prefix" => Op::Prefix { any, ci },
                        "suffix" => Op::Suffix { any, ci },
                        _ => Op::Contains { any, ci },
                    }
                }),
                "glob" | "regex" => self.strings(v, name).and_then(|l| {
                    let mut any = Vec::new();
                    for (pat, span) in l {
                        let compiled = if name == "glob" {
                            glob_to_regex(&pat, ci)
                        } else {
                            Regex::new(&if ci { format!("(?i){pat}") } else { pat.clone() })
                        };
                        match compiled {
                            Ok(r) => any.push(r),
                            Err(e) => {
                                let msg = e.to_string().lines().map(str::trim).filter(|l| !l.is_empty()).collect::<Vec<_>>().join(" ");
                                self.err(span, format!("invalid {name} `{pat}`: {msg}"));
                                return None;
                            }
                        }
                    }
                    Some(Op::Regex { any })
                }),
                "cidr" => self.strings(v, name).and_then(|l| {
                    let mut any = Vec::new();
                    for (s, span) in l {
                        match s.parse::<IpNet>().or_else(|_| s.parse::<std::net::IpAddr>().map(IpNet::from)) {
                            Ok(n) => any.push(n),
                            Err(_) => {
                                self.err(span, format!("invalid CIDR `{s}`: write e.g. \"10.0.0.0/8\" or \"2001:db8::/32\""));
                                return None;
                            }
                        }
                    }
                    Some(Op::Cidr { any })
                }),
                "gt" | "gte" | "lt" | "lte" => {
                    let op = match name {
                        "gt" => CmpOp::Gt,
                        "gte" => CmpOp::Gte,
                        "lt" => CmpOp::Lt,
                        _ => CmpOp::Lte,
                    };
                    match self.scalar(v, name) {
                        Some(Scalar::Bool(_)) => {
                            self.err(v.span(), format!("`{name}` compares numbers or strings, not booleans"));
                            None
                        }
                        Some(bound) => Some(Op::Cmp { op, bound }),
                        None => None,
                    }
                }
                "exists" => {
                    exists = self.bool(v, "exists");
                    if exists.is_none() {
                        ok = false;
                    }
                    continue;
                }
                "not" => {
                    not = self.nested_not(v, ci, expand).map(Box::new);
                    if not.is_none() {
                        ok = false;
                    }
                    continue;
                }
                other => {
                    let hint = suggest(other, &OPERATORS).map(|s| format!(" (did you mean `{s}`?)")).unwrap_or_default();
                    self.err(k.span(), format!("unknown operator `{other}`{hint}; operators are: {}", OPERATORS.join(", ")));
                    None
                }
            };
            match op {
                Some(op) => ops.push(op),
                None => ok = false,
            }
        }
        if ops.is_empty() && exists.is_none() && not.is_none() && ok {
            self.err(
                span,
                "`ci`, `expand` or `extract` alone test nothing; add an operator such as `eq`",
            );
            return None;
        }
        ok.then_some(FieldTest::Table {
            ops,
            exists,
            not,
            extract,
        })
    }

    /// A selection: every key is a field path, every value what it must satisfy.
    pub(super) fn selection(
        &mut self,
        name: &str,
        t: &DeTable<'_>,
        span: Range<usize>,
        reserved: &[&str],
    ) -> Option<Selection> {
        let mut fields = Vec::new();
        let mut ok = true;
        for (k, v) in t.iter() {
            let path = k.get_ref().as_ref();
            if reserved.contains(&path) {
                continue;
            }
            let field = self.field(path, k.span());
            let test = self.field_test(v);
            match (field, test) {
                (Some(field), Some(test)) => fields.push(FieldCond {
                    path: path.to_owned(),
                    field,
                    test,
                }),
                _ => ok = false,
            }
        }
        if fields.is_empty() && ok {
            self.err(span, format!("selection `{name}` has no field conditions"));
            return None;
        }
        ok.then(|| Selection {
            name: name.to_owned(),
            fields,
        })
    }
}

/// How many capture groups a pattern has, for the `extract` error message.
fn r_groups(pat: &str) -> String {
    match Regex::new(pat) {
        Ok(r) => format!("{} capture groups", r.captures_len() - 1),
        Err(_) => "an error".into(),
    }
}

/// `eq`/`in`: string literals are lower-cased for case-insensitive matching.
fn eq_op(any: Vec<Scalar>, ci: bool) -> Op {
    let any = any
        .into_iter()
        .map(|s| match s {
            Scalar::Str(x) if ci => Scalar::Str(x.to_lowercase()),
            other => other,
        })
        .collect();
    Op::Eq { any, ci }
}

#[cfg(test)]
mod tests {
    use std::path::Path;

    use crate::record::Event;
    use crate::rules::Strictness;
    use crate::rules::load::Loader;
    use serde_json::json;

    /// Compiles a rule whose [match] is `body` and tells whether it matches `event`.
    fn matches(body: &str, event: serde_json::Value) -> bool {
        let src = format!("id = \"t\"\ntitle = \"t\"\nseverity = \"low\"\n[match]\n{body}\n");
        let mut l = Loader::new(Strictness::Check, (2026, 1, 1));
        l.add(Path::new("t.toml"), &src);
        let set = l.finish().unwrap_or_else(|d| panic!("{body}: {d}"));
        set.rules[0].matches(&Event::from_value(event).unwrap(), (2026, 1, 1))
    }

    /// Each operator as written in TOML, on a realistic event.
    #[test]
    fn operators_as_written() {
        let e = json!({
            "eventName": "PutBucketPolicy",
            "sourceIPAddress": "10.1.2.3",
            "userAgent": "Boto3/1.34.0 Python/3.12",
            "eventTime": "2024-05-01T10:00:00Z",
            "requestParameters": {"bucketName": "Prod-Data", "policy": {"Statement": [{"Effect": "Allow", "Principal": "*"}]}},
            "additionalEventData": {"bytesTransferredOut": 2048},
            "readOnly": false
        });
        let cases: &[(&str, bool)] = &[
            (r#"eventName = "PutBucketPolicy""#, true),
            (
                r#"eventName = ["DeleteBucketPolicy", "PutBucketPolicy"]"#,
                true,
            ),
            (r#"eventName = { in = ["A", "B"] }"#, false),
            (r#"eventName = { eq = "putbucketpolicy", ci = true }"#, true),
            (r#"eventName = { eq = "putbucketpolicy" }"#, false),
            (
                r#""requestParameters.bucketName" = { prefix = "prod-", ci = true }"#,
                true,
            ),
            (
                r#""requestParameters.bucketName" = { prefix = "prod-" }"#,
                false,
            ),
            (r#"userAgent = { contains = ["aws-cli", "Boto3"] }"#, true),
            (r#"userAgent = { suffix = "Python/3.12" }"#, true),
            (r#"userAgent = { glob = "Boto3/1.*" }"#, true),
            (r#"userAgent = { glob = "Boto3" }"#, false),
            (r#"userAgent = { regex = "^Boto3/1\\.3[0-9]" }"#, true),
            (
                r#"sourceIPAddress = { cidr = ["10.0.0.0/8", "fd00::/8"] }"#,
                true,
            ),
            (r#"sourceIPAddress = { cidr = "10.1.2.3" }"#, true),
            (
                r#"sourceIPAddress = { not = { cidr = "10.0.0.0/8" } }"#,
                false,
            ),
            (
                r#""additionalEventData.bytesTransferredOut" = { gt = 1024 }"#,
                true,
            ),
            (
                r#""additionalEventData.bytesTransferredOut" = { gte = 1024, lt = 2048 }"#,
                false,
            ),
            (
                r#"eventTime = { gte = "2024-05-01T00:00:00Z", lt = "2024-05-02T00:00:00Z" }"#,
                true,
            ),
            (r#"eventTime = { gte = 2024-05-01T00:00:00Z }"#, true),
            (
                r#""requestParameters.policy.Statement.Principal" = "*""#,
                true,
            ),
            (
                r#""requestParameters.policy.Statement.Effect" = { not = "Deny" }"#,
                true,
            ),
            (r#"errorCode = { exists = false }"#, true),
            (r#"errorCode = { not = { eq = "AccessDenied" } }"#, true),
            (r#"errorCode = { eq = "AccessDenied" }"#, false),
            (r#"readOnly = false"#, true),
            (r#"readOnly = "false""#, true),
            (r#"eventName = ["Nope", { prefix = "PutBucket" }]"#, true),
            (r#""s3.bucket" = "Prod-Data""#, true),
            (
                r#""requestParameters.bucketName" = { eq = "{s3.bucket}", expand = true }"#,
                true,
            ),
            (
                r#""requestParameters.bucketName" = { not = { eq = "{nosuchfield}", expand = true } }"#,
                true,
            ),
            (
                r#"userAgent = { prefix = "{requestParameters.bucketName}", expand = true }"#,
                false,
            ),
            (
                r#"userAgent = { extract = '^Boto3/([0-9]+)\.', eq = "1" }"#,
                true,
            ),
            (
                r#"userAgent = { extract = '^Boto3/([0-9]+)\.', gt = 1 }"#,
                false,
            ),
            (
                r#"eventName = { extract = '^(Get)', exists = true }"#,
                false,
            ),
            (
                r#""requestParameters.bucketName" = { expand = true, not = { eq = "{s3.bucket}" } }"#,
                false,
            ),
            (
                r#""requestParameters.bucketName" = { expand = true, not = "{s3.bucket}" }"#,
                false,
            ),
            (
                r#""requestParameters.bucketName" = { expand = true, not = "{eventName}" }"#,
                true,
            ),
            (
                r#"userAgent = { extract = '^(BOTO3)/', ci = true, eq = "boto3" }"#,
                true,
            ),
            (
                r#"userAgent = { ci = true, not = { prefix = "BOTO3" } }"#,
                false,
            ),
            (
                r#"userAgent = { ci = true, not = ["x", { suffix = "PYTHON/3.12" }] }"#,
                false,
            ),
            (r#""event.success" = true"#, true),
        ];
        for (body, want) in cases {
            assert_eq!(matches(body, e.clone()), *want, "{body}");
        }
    }
}
