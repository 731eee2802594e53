//! The `condition` expression: selection names combined with `and`, `or`, `not` and
//! parentheses. `not` binds tightest, then `and`, then `or`.

/// A parsed condition over selection indices.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Cond {
    Sel(usize),
    Not(Box<Cond>),
    And(Vec<Cond>),
    Or(Vec<Cond>),
}

impl Cond {
    /// Evaluates with `sel(i)` telling whether selection `i` matched. Short-circuits,
    /// so selections are evaluated lazily.
    pub fn eval(&self, sel: &mut dyn FnMut(usize) -> bool) -> bool {
        match self {
            Cond::Sel(i) => sel(*i),
            Cond::Not(c) => !c.eval(sel),
            Cond::And(cs) => cs.iter().all(|c| c.eval(sel)),
            Cond::Or(cs) => cs.iter().any(|c| c.eval(sel)),
        }
    }

    /// Every selection index the condition mentions.
    pub fn selections(&self, out: &mut Vec<usize>) {
        match self {
            Cond::Sel(i) => out.push(*i),
            Cond::Not(c) => c.selections(out),
            Cond::And(cs) | Cond::Or(cs) => cs.iter().for_each(|c| c.selections(out)),
        }
    }
}

/// A problem in a condition, with the byte offset into the condition text.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CondError {
    pub offset: usize,
    pub message: String,
}

#[derive(Debug, Clone, PartialEq)]
enum Tok<'a> {
    Ident(&'a str),
    And,
    Or,
    Not,
    Open,
    Close,
}

fn tokenize(src: &str) -> Result<Vec<(usize, Tok<'_>)>, CondError> {
    let mut out = Vec::new();
    let bytes = src.as_bytes();
    let mut i = 0;
    while i < bytes.len() {
        let c = bytes[i];
        if c.is_ascii_whitespace() {
            i += 1;
        } else if c == b'(' {
            out.push((i, Tok::Open));
            i += 1;
        } else if c == b')' {
            out.push((i, Tok::Close));
            i += 1;
        } else if c.is_ascii_alphanumeric() || c == b'_' || c == b'-' {
            let start = i;
            while i < bytes.len()
                && (bytes[i].is_ascii_alphanumeric() || bytes[i] == b'_' || bytes[i] == b'-')
            {
                i += 1;
            }
            let word = &src[start..i];
            let tok = match word {
                "and" => Tok::And,
                "or" => Tok::Or,
                "not" => Tok::Not,
                w => Tok::Ident(w),
            };
            out.push((start, tok));
        } else {
            let ch = src[i..].chars().next().unwrap_or('?');
            return Err(CondError {
                offset: i,
                message: format!(
                    "unexpected `{ch}` in condition; use selection names with and, or, not and parentheses"
                ),
            });
        }
    }
    Ok(out)
}

struct Parser<'a, 'n> {
    toks: Vec<(usize, Tok<'a>)>,
    pos: usize,
    end: usize,
    names: &'n [&'n str],
}

impl Parser<'_, '_> {
    fn peek(&self) -> Option<&Tok<'_>> {
        self.toks.get(self.pos).map(|(_, t)| t)
    }

    fn offset(&self) -> usize {
        self.toks.get(self.pos).map_or(self.end, |(o, _)| *o)
    }

    fn or(&mut self) -> Result<Cond, CondError> {
        let mut items = vec![self.and()?];
        while self.peek() == Some(&Tok::Or) {
            self.pos += 1;
            items.push(self.and()?);
        }
        Ok(if items.len() == 1 {
            items.pop().unwrap()
        } else {
            Cond::Or(items)
        })
    }

    fn and(&mut self) -> Result<Cond, CondError> {
        let mut items = vec![self.unary()?];
        while self.peek() == Some(&Tok::And) {
            self.pos += 1;
            items.push(self.unary()?);
        }
        Ok(if items.len() == 1 {
            items.pop().unwrap()
        } else {
            Cond::And(items)
        })
    }

    fn unary(&mut self) -> Result<Cond, CondError> {
        let offset = self.offset();
        match self.toks.get(self.pos).map(|(_, t)| t.clone()) {
            Some(Tok::Not) => {
                self.pos += 1;
                Ok(Cond::Not(Box::new(self.unary()?)))
            }
            Some(Tok::Open) => {
                self.pos += 1;
                let inner = self.or()?;
                if self.peek() != Some(&Tok::Close) {
                    return Err(CondError {
                        offset: self.offset(),
                        message: "missing `)` in condition".into(),
                    });
                }
                self.pos += 1;
                Ok(inner)
            }
            Some(Tok::Ident(name)) => {
                self.pos += 1;
                match self.names.iter().position(|n| *n == name) {
                    Some(i) => Ok(Cond::Sel(i)),
                    None => Err(CondError {
                        offset,
                        message: format!(
                            "unknown selection `{name}` in condition; defined selections: {}",
                            self.names.join(", ")
                        ),
                    }),
                }
            }
            Some(t) => Err(CondError {
                offset,
                message: format!(
                    "expected a selection name, `not` or `(`, found {}",
                    describe(&t)
                ),
            }),
            None => Err(CondError {
                offset,
                message: "condition ends too early: expected a selection name".into(),
            }),
        }
    }
}

fn describe(t: &Tok<'_>) -> &'static str {
    match t {
        Tok::And => "`and`",
        Tok::Or => "`or`",
        Tok::Not => "`not`",
        Tok::Open => "`(`",
        Tok::Close => "`)`",
        Tok::Ident(_) => "a name",
    }
}

/// Parses `src` against the selection `names` (a condition refers to them by index).
pub fn parse(src: &str, names: &[&str]) -> Result<Cond, CondError> {
    let toks = tokenize(src)?;
    if toks.is_empty() {
        return Err(CondError {
            offset: 0,
            message: "empty condition".into(),
        });
    }
    let mut p = Parser {
        toks,
        pos: 0,
        end: src.len(),
        names,
    };
    let c = p.or()?;
    if p.pos < p.toks.len() {
        let (off, t) = &p.toks[p.pos];
        return Err(CondError {
            offset: *off,
            message: format!(
                "unexpected {} in condition; join selections with `and` or `or`",
                describe(t)
            ),
        });
    }
    Ok(c)
}

#[cfg(test)]
mod tests {
    use super::*;

    const NAMES: [&str; 3] = ["match", "service", "noisy_one"];

    fn eval(src: &str, truth: [bool; 3]) -> bool {
        parse(src, &NAMES).unwrap().eval(&mut |i| truth[i])
    }

    #[test]
    fn precedence_not_then_and_then_or() {
        // match or service and not noisy_one  ==  match or (service and (not noisy_one))
        assert!(eval(
            "match or service and not noisy_one",
            [true, false, true]
        ));
        assert!(!eval(
            "match or service and not noisy_one",
            [false, true, true]
        ));
        assert!(eval(
            "match or service and not noisy_one",
            [false, true, false]
        ));
        assert!(!eval(
            "(match or service) and not noisy_one",
            [true, false, true]
        ));
        assert!(eval("not not match", [true, false, false]));
        assert!(eval("not (match and service)", [true, false, false]));
    }

    #[test]
    fn structure() {
        assert_eq!(parse("match", &NAMES).unwrap(), Cond::Sel(0));
        assert_eq!(
            parse("match and not service", &NAMES).unwrap(),
            Cond::And(vec![Cond::Sel(0), Cond::Not(Box::new(Cond::Sel(1)))])
        );
    }

    #[test]
    fn errors_point_at_the_problem() {
        let cases = [
            ("match and servce", 10, "unknown selection `servce`"),
            ("match and", 9, "ends too early"),
            ("(match", 6, "missing `)`"),
            ("match service", 6, "unexpected a name"),
            ("match && service", 6, "unexpected `&`"),
            ("", 0, "empty condition"),
            ("and match", 0, "found `and`"),
        ];
        for (src, offset, msg) in cases {
            let e = parse(src, &NAMES).unwrap_err();
            assert_eq!(e.offset, offset, "{src}: {}", e.message);
            assert!(e.message.contains(msg), "{src}: {}", e.message);
        }
    }
}
