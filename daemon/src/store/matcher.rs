//! Label matchers with Prometheus semantics.
//!
//! Owns `MatchOp`/`Matcher`: compiling fully anchored regexes and deciding
//! whether a single label value matches. A missing label is matched as the
//! empty string. Must not touch the index or storage (the index decides how
//! to use a matcher), nor parse PromQL: the PromQL engine builds matchers.

use std::fmt;

use regex::Regex;

use super::StoreError;

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum MatchOp {
    Equal,
    NotEqual,
    RegexMatch,
    RegexNoMatch,
}

impl fmt::Display for MatchOp {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            MatchOp::Equal => "=",
            MatchOp::NotEqual => "!=",
            MatchOp::RegexMatch => "=~",
            MatchOp::RegexNoMatch => "!~",
        })
    }
}

#[derive(Clone, Debug)]
pub struct Matcher {
    pub name: String,
    pub op: MatchOp,
    pub value: String,
    re: Option<Regex>,
    /// For regexes that are just `a|b|c` of plain literals, the literals: the
    /// index can then look postings up directly instead of testing every
    /// value of the label.
    literals: Option<Vec<String>>,
}

impl Matcher {
    pub fn new(
        op: MatchOp,
        name: impl Into<String>,
        value: impl Into<String>,
    ) -> Result<Self, StoreError> {
        let name = name.into();
        let value = value.into();
        let (re, literals) = match op {
            MatchOp::Equal | MatchOp::NotEqual => (None, None),
            MatchOp::RegexMatch | MatchOp::RegexNoMatch => {
                // `^(?:...)$` exactly as Prometheus 2.42 compiles matchers:
                // anchored, so `foo` does not match `xfoox`, and `.` does not
                // match a newline (Prometheus 2.45 changed that; we follow the
                // version our users' rules were tested against).
                let re = Regex::new(&format!("^(?:{value})$")).map_err(|e| {
                    StoreError::InvalidRegex {
                        pattern: value.clone(),
                        message: e.to_string(),
                    }
                })?;
                (Some(re), literal_alternatives(&value))
            }
        };
        Ok(Matcher {
            name,
            op,
            value,
            re,
            literals,
        })
    }

    /// Shorthand for the common `name="value"` case, which cannot fail.
    pub fn equal(name: impl Into<String>, value: impl Into<String>) -> Self {
        Matcher {
            name: name.into(),
            op: MatchOp::Equal,
            value: value.into(),
            re: None,
            literals: None,
        }
    }

    pub fn matches(&self, v: &str) -> bool {
        match self.op {
            MatchOp::Equal => self.value == v,
            MatchOp::NotEqual => self.value != v,
            MatchOp::RegexMatch => self.re_matches(v),
            MatchOp::RegexNoMatch => !self.re_matches(v),
        }
    }

    fn re_matches(&self, v: &str) -> bool {
        if let Some(lits) = &self.literals {
            return lits.iter().any(|l| l == v);
        }
        self.re.as_ref().is_some_and(|re| re.is_match(v))
    }

    /// Values that make the *positive* form of this matcher true, when that
    /// set is finite and known without looking at the index: `=` gives one
    /// value, `=~"a|b"` gives its literals. For `!=`/`!~` this is the set of
    /// values that the matcher rejects.
    pub(super) fn literal_set(&self) -> Option<LiteralSet<'_>> {
        match self.op {
            MatchOp::Equal | MatchOp::NotEqual => Some(LiteralSet::One(&self.value)),
            MatchOp::RegexMatch | MatchOp::RegexNoMatch => {
                self.literals.as_deref().map(LiteralSet::Many)
            }
        }
    }

    /// Whether the positive form (`=`/`=~`) is being asked for.
    pub(super) fn is_positive_op(&self) -> bool {
        matches!(self.op, MatchOp::Equal | MatchOp::RegexMatch)
    }
}

pub(super) enum LiteralSet<'a> {
    One(&'a str),
    Many(&'a [String]),
}

impl<'a> LiteralSet<'a> {
    pub(super) fn for_each(&self, mut f: impl FnMut(&'a str)) {
        match self {
            LiteralSet::One(s) => f(s),
            LiteralSet::Many(v) => v.iter().for_each(|s| f(s)),
        }
    }
}

impl fmt::Display for Matcher {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}{}{:?}", self.name, self.op, self.value)
    }
}

/// Recognises `lit|lit|...` with no regex metacharacters. Conservative: any
/// doubt returns None and the full regex is used.
fn literal_alternatives(pattern: &str) -> Option<Vec<String>> {
    const META: &[char] = &[
        '\\', '.', '+', '*', '?', '(', ')', '[', ']', '{', '}', '^', '$',
    ];
    if pattern.contains(META) {
        return None;
    }
    let mut v: Vec<String> = pattern.split('|').map(str::to_owned).collect();
    v.sort();
    v.dedup();
    Some(v)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn m(op: MatchOp, v: &str) -> Matcher {
        Matcher::new(op, "x", v).unwrap()
    }

    #[test]
    fn dot_does_not_match_newline_as_in_prometheus_2_42() {
        let m = Matcher::new(MatchOp::RegexMatch, "a", "x.*").unwrap();
        assert!(m.matches("xyz"));
        assert!(!m.matches("x\ny"));
    }

    #[test]
    fn equal_and_not_equal_on_missing() {
        // missing label is "", so `x=""` matches absence and `x!=""` requires presence
        assert!(m(MatchOp::Equal, "").matches(""));
        assert!(!m(MatchOp::Equal, "").matches("a"));
        assert!(!m(MatchOp::NotEqual, "").matches(""));
        assert!(m(MatchOp::NotEqual, "").matches("a"));
        assert!(m(MatchOp::NotEqual, "a").matches(""));
    }

    #[test]
    fn regex_is_anchored() {
        let r = m(MatchOp::RegexMatch, "foo");
        assert!(r.matches("foo"));
        assert!(!r.matches("xfoo"));
        assert!(!r.matches("foox"));
        let r = m(MatchOp::RegexMatch, "a|b.*");
        assert!(r.matches("a"));
        assert!(r.matches("bcd"));
        assert!(!r.matches("ab"));
        assert!(m(MatchOp::RegexMatch, ".*").matches(""));
        assert!(!m(MatchOp::RegexMatch, ".+").matches(""));
        assert!(!m(MatchOp::RegexMatch, ".*").matches("a\nb"));
        assert!(!m(MatchOp::RegexNoMatch, "fo+").matches("foo"));
        assert!(m(MatchOp::RegexNoMatch, "fo+").matches("xfoo"));
    }

    #[test]
    fn literal_alternation_fast_path_agrees() {
        let r = m(MatchOp::RegexMatch, "GET|POST|");
        assert!(r.literals.is_some());
        assert!(r.matches("GET") && r.matches("POST") && r.matches(""));
        assert!(!r.matches("GETX"));
        assert!(m(MatchOp::RegexMatch, "a.b").literals.is_none());
    }

    #[test]
    fn bad_regex_is_error() {
        let e = Matcher::new(MatchOp::RegexMatch, "x", "(").unwrap_err();
        assert!(matches!(e, StoreError::InvalidRegex { .. }));
        assert!(e.to_string().contains("("));
    }
}
