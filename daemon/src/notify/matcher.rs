//! Alertmanager's label matchers: `name="value"`, `name!=value`,
//! `name=~"re"`, `name!~"re"`, several per string, braces optional, values
//! quoted or not. Used by routes, inhibition rules and silences.
//!
//! Owns parsing, matching and the canonical text form (the one Alertmanager
//! puts into route keys, so group keys come out identical). Knows nothing
//! about routes or alerts.

use std::collections::BTreeMap;
use std::fmt;

use regex::Regex;

/// The comparison, ordered as Alertmanager's `MatchType` (it sorts by it).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum MatchOp {
    Eq,
    Ne,
    Re,
    NotRe,
}

impl MatchOp {
    pub fn as_str(self) -> &'static str {
        match self {
            MatchOp::Eq => "=",
            MatchOp::Ne => "!=",
            MatchOp::Re => "=~",
            MatchOp::NotRe => "!~",
        }
    }
}

#[derive(Debug, Clone)]
pub struct Matcher {
    pub name: String,
    pub op: MatchOp,
    pub value: String,
    re: Option<Regex>,
}

impl PartialEq for Matcher {
    fn eq(&self, o: &Self) -> bool {
        self.name == o.name && self.op == o.op && self.value == o.value
    }
}

impl Matcher {
    pub fn new(name: &str, op: MatchOp, value: &str) -> Result<Matcher, String> {
        let re = match op {
            MatchOp::Re | MatchOp::NotRe => Some(
                // Anchored, as everywhere in Prometheus.
                Regex::new(&format!("^(?:{value})$"))
                    .map_err(|e| format!("invalid regular expression {value:?}: {e}"))?,
            ),
            _ => None,
        };
        Ok(Matcher {
            name: name.to_string(),
            op,
            value: value.to_string(),
            re,
        })
    }

    /// Whether `v` (the label's value, "" when absent) satisfies this.
    pub fn matches(&self, v: &str) -> bool {
        match self.op {
            MatchOp::Eq => v == self.value,
            MatchOp::Ne => v != self.value,
            MatchOp::Re => self.re.as_ref().is_some_and(|r| r.is_match(v)),
            MatchOp::NotRe => !self.re.as_ref().is_some_and(|r| r.is_match(v)),
        }
    }

    /// Whether a label set satisfies this; an absent label is "".
    pub fn matches_labels(&self, labels: &BTreeMap<String, String>) -> bool {
        self.matches(labels.get(&self.name).map_or("", String::as_str))
    }
}

/// `name op "value"` with Go's escapes, as Alertmanager prints it.
impl fmt::Display for Matcher {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}{}\"", self.name, self.op.as_str())?;
        for c in self.value.chars() {
            match c {
                '\\' => f.write_str("\\\\")?,
                '"' => f.write_str("\\\"")?,
                '\n' => f.write_str("\\n")?,
                c => write!(f, "{c}")?,
            }
        }
        f.write_str("\"")
    }
}

/// All matchers hold.
pub fn matches_all(ms: &[Matcher], labels: &BTreeMap<String, String>) -> bool {
    ms.iter().all(|m| m.matches_labels(labels))
}

/// Alertmanager's sort order for a route's matchers: name, value, type.
pub fn sort(ms: &mut [Matcher]) {
    ms.sort_by(|a, b| {
        a.name
            .cmp(&b.name)
            .then_with(|| a.value.cmp(&b.value))
            .then_with(|| a.op.cmp(&b.op))
    });
}

/// `{a="b",c=~"d"}`: the form route keys are made of.
pub fn to_string(ms: &[Matcher]) -> String {
    let parts: Vec<String> = ms.iter().map(ToString::to_string).collect();
    format!("{{{}}}", parts.join(","))
}

/// Parses one matchers string: `a="b", c=~d` or `{a="b"}`.
pub fn parse(input: &str) -> Result<Vec<Matcher>, String> {
    let mut s = input.trim();
    if let Some(inner) = s.strip_prefix('{') {
        s = inner
            .strip_suffix('}')
            .ok_or_else(|| format!("{input:?}: missing closing '}}'"))?
            .trim();
    }
    let b = s.as_bytes();
    let mut i = 0;
    let mut out = Vec::new();
    while i < b.len() {
        while i < b.len() && (b[i] == b' ' || b[i] == b',') {
            i += 1;
        }
        if i >= b.len() {
            break;
        }
        let start = i;
        while i < b.len() && (b[i].is_ascii_alphanumeric() || b[i] == b'_' || b[i] == b'.') {
            i += 1;
        }
        let name = &s[start..i];
        if name.is_empty() || name.as_bytes()[0].is_ascii_digit() {
            return Err(format!(
                "{input:?}: expected a label name at position {start}"
            ));
        }
        while i < b.len() && b[i] == b' ' {
            i += 1;
        }
        let rest = &s[i..];
        let op = if rest.starts_with("=~") {
            MatchOp::Re
        } else if rest.starts_with("!~") {
            MatchOp::NotRe
        } else if rest.starts_with("!=") {
            MatchOp::Ne
        } else if rest.starts_with('=') {
            MatchOp::Eq
        } else {
            return Err(format!(
                "{input:?}: expected one of = != =~ !~ after {name:?}"
            ));
        };
        i += op.as_str().len();
        while i < b.len() && b[i] == b' ' {
            i += 1;
        }
        let value = if i < b.len() && b[i] == b'"' {
            i += 1;
            let mut v = String::new();
            let mut closed = false;
            let mut chars = s[i..].char_indices();
            while let Some((off, c)) = chars.next() {
                match c {
                    '"' => {
                        i += off + 1;
                        closed = true;
                        break;
                    }
                    '\\' => match chars.next() {
                        Some((_, 'n')) => v.push('\n'),
                        Some((_, 't')) => v.push('\t'),
                        Some((_, c)) => v.push(c),
                        None => break,
                    },
                    c => v.push(c),
                }
            }
            if !closed {
                return Err(format!("{input:?}: unterminated quoted value"));
            }
            v
        } else {
            let start = i;
            while i < b.len() && b[i] != b',' {
                i += 1;
            }
            s[start..i].trim().to_string()
        };
        while i < b.len() && b[i] == b' ' {
            i += 1;
        }
        if i < b.len() && b[i] != b',' {
            return Err(format!(
                "{input:?}: unexpected {:?} after the value of {name:?}",
                &s[i..]
            ));
        }
        out.push(Matcher::new(name, op, &value).map_err(|e| format!("{input:?}: {e}"))?);
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn labels(p: &[(&str, &str)]) -> BTreeMap<String, String> {
        p.iter()
            .map(|(a, b)| (a.to_string(), b.to_string()))
            .collect()
    }

    #[test]
    fn parses_alertmanager_forms() {
        let m = parse(r#"{severity="page", team=~"db|cache",env!=prod, x!~"a\"b"}"#).unwrap();
        assert_eq!(m.len(), 4);
        assert_eq!(m[0].to_string(), r#"severity="page""#);
        assert_eq!(m[1].to_string(), r#"team=~"db|cache""#);
        assert_eq!(m[2].to_string(), r#"env!="prod""#);
        assert_eq!(m[3].value, "a\"b");
        assert_eq!(m[3].to_string(), r#"x!~"a\"b""#);
        let l = labels(&[("severity", "page"), ("team", "db"), ("x", "c")]);
        assert!(matches_all(&m, &l));
        assert!(!matches_all(
            &m,
            &labels(&[("severity", "page"), ("team", "dbx")])
        ));
        // Absent label is "".
        assert!(Matcher::new("a", MatchOp::Eq, "")
            .unwrap()
            .matches_labels(&l));
    }

    #[test]
    fn refuses_bad_input() {
        assert!(parse("severity").is_err());
        assert!(parse(r#"a="b"#).is_err());
        assert!(parse(r#"a=~"(""#).is_err());
        assert!(parse(r#"{a="b""#).is_err());
        assert!(parse(r#"a="b" c="d""#).is_err());
    }

    #[test]
    fn sorts_and_prints_like_alertmanager() {
        let mut m = parse(r#"team=~"x",alertname="A",team="x""#).unwrap();
        sort(&mut m);
        assert_eq!(to_string(&m), r#"{alertname="A",team="x",team=~"x"}"#);
        assert_eq!(to_string(&[]), "{}");
    }
}
