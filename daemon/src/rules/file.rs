//! Rule files in Prometheus 2.42's format (`groups:` of `record`/`alert`
//! rules): reading, validation with promtool's messages, and the
//! duplicate-rule lint.
//!
//! Owns turning text into checked [`GroupSpec`]s with parsed expressions and
//! templates, so evaluation never meets a bad rule. Errors carry the file and
//! the line and column of the offending value, formatted the way promtool
//! prints them (`file: 7:15: group "g", rule 1, "x": ...`), so people can
//! compare the two tools' output line by line. Nothing here evaluates.

use std::collections::BTreeMap;
use std::fmt;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::{Deserialize, Deserializer};

use super::template::Template;
use crate::collect::relabel::valid_label_name;
use crate::config::locate::LineIndex;
use crate::config::{parse_tracked, PromDuration};
use crate::query::Expr;

/// A rule group as loaded: its rules parsed and validated.
#[derive(Clone, Debug)]
pub struct GroupSpec {
    /// The file the group came from, as listed (globs expanded).
    pub file: String,
    pub name: String,
    /// The group's own `interval`, if it sets one.
    pub interval: Option<Duration>,
    /// Most series (recording) or alerts (alerting) a rule may produce; 0 is
    /// no limit.
    pub limit: usize,
    pub rules: Vec<RuleSpec>,
}

impl GroupSpec {
    /// `file;name`, Prometheus's group key (the `rule_group` label).
    pub fn key(&self) -> String {
        format!("{};{}", self.file, self.name)
    }
}

#[derive(Clone, Debug)]
pub struct RuleSpec {
    pub kind: RuleKind,
    pub expr: Expr,
    /// The expression as written in the file.
    pub expr_text: String,
    /// Extra labels, in name order; templates for alerting rules.
    pub labels: Vec<(String, String)>,
}

#[derive(Clone, Debug)]
pub enum RuleKind {
    Recording {
        record: String,
    },
    Alerting {
        alert: String,
        hold: Duration,
        keep_firing_for: Duration,
        /// Parsed label templates, in the order of `RuleSpec::labels`.
        label_templates: Vec<Template>,
        annotations: Vec<(String, String)>,
        annotation_templates: Vec<Template>,
    },
}

impl RuleSpec {
    /// `record` or `alert`: the rule's name.
    pub fn name(&self) -> &str {
        match &self.kind {
            RuleKind::Recording { record } => record,
            RuleKind::Alerting { alert, .. } => alert,
        }
    }
}

/// Every problem in one rule file, each already formatted like promtool's.
#[derive(Clone, Debug, thiserror::Error)]
pub struct RuleFileError {
    pub file: String,
    pub errors: Vec<String>,
}

impl fmt::Display for RuleFileError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, e) in self.errors.iter().enumerate() {
            if i > 0 {
                f.write_str("\n")?;
            }
            write!(f, "{}: {e}", self.file)?;
        }
        Ok(())
    }
}

/// A YAML scalar read as text, the way Go's YAML decoder fills a `string`
/// (`expr: 1` is the expression "1").
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Text(pub String);

impl<'de> Deserialize<'de> for Text {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl serde::de::Visitor<'_> for V {
            type Value = Text;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a string")
            }
            fn visit_str<E>(self, v: &str) -> Result<Text, E> {
                Ok(Text(v.to_owned()))
            }
            fn visit_string<E>(self, v: String) -> Result<Text, E> {
                Ok(Text(v))
            }
            fn visit_i64<E>(self, v: i64) -> Result<Text, E> {
                Ok(Text(v.to_string()))
            }
            fn visit_u64<E>(self, v: u64) -> Result<Text, E> {
                Ok(Text(v.to_string()))
            }
            fn visit_f64<E>(self, v: f64) -> Result<Text, E> {
                Ok(Text(v.to_string()))
            }
            fn visit_bool<E>(self, v: bool) -> Result<Text, E> {
                Ok(Text(v.to_string()))
            }
            fn visit_unit<E>(self) -> Result<Text, E> {
                Ok(Text::default())
            }
            fn visit_none<E>(self) -> Result<Text, E> {
                Ok(Text::default())
            }
        }
        // deserialize_str hands over the scalar as written (`0x10` stays
        // `0x10`, not 16), which is what Go's decoder does for strings.
        d.deserialize_str(V)
    }
}

#[derive(Deserialize, Default)]
#[serde(default)]
struct RawFile {
    groups: Vec<RawGroup>,
}

#[derive(Deserialize, Default)]
#[serde(default)]
struct RawGroup {
    name: Text,
    interval: Option<PromDuration>,
    limit: usize,
    rules: Vec<RawRule>,
}

#[derive(Deserialize, Default)]
#[serde(default)]
struct RawRule {
    record: Text,
    alert: Text,
    expr: Text,
    #[serde(rename = "for")]
    for_: Option<PromDuration>,
    keep_firing_for: Option<PromDuration>,
    labels: BTreeMap<String, Text>,
    annotations: BTreeMap<String, Text>,
}

/// Prometheus's metric-name rule (`[a-zA-Z_:][a-zA-Z0-9_:]*`).
pub fn valid_metric_name(s: &str) -> bool {
    let mut b = s.bytes();
    matches!(b.next(), Some(c) if c.is_ascii_alphabetic() || c == b'_' || c == b':')
        && b.all(|c| c.is_ascii_alphanumeric() || c == b'_' || c == b':')
}

/// Reads and validates one rule file. `name` is how errors refer to it.
pub fn parse_file(path: &Path) -> Result<Vec<GroupSpec>, RuleFileError> {
    let name = path.display().to_string();
    let text = std::fs::read_to_string(path).map_err(|e| RuleFileError {
        file: name.clone(),
        errors: vec![format!("cannot read rule file: {e}")],
    })?;
    parse_str(&name, &text)
}

/// Validates rule-file text; every problem is reported, not just the first.
pub fn parse_str(file: &str, text: &str) -> Result<Vec<GroupSpec>, RuleFileError> {
    let index = LineIndex::build(text);
    let (raw, issues) = parse_tracked::<RawFile>(text, &index);
    let mut errors: Vec<String> = issues
        .into_iter()
        .map(|i| {
            let pos = match (i.line, i.column) {
                (Some(l), Some(c)) => format!("{l}:{c}: "),
                _ => String::new(),
            };
            let field = i
                .path
                .map(|p| format!("{}: ", crate::config::locate::display_path(&p)))
                .unwrap_or_default();
            format!("{pos}{field}{}", i.message)
        })
        .collect();
    let Some(raw) = raw else {
        return Err(RuleFileError {
            file: file.to_owned(),
            errors,
        });
    };
    let at = |path: &str| -> String {
        index
            .locate_value(path)
            .map(|(l, c)| format!("{l}:{c}: "))
            .unwrap_or_default()
    };
    let mut groups = Vec::with_capacity(raw.groups.len());
    let mut seen = std::collections::HashSet::new();
    for (j, g) in raw.groups.into_iter().enumerate() {
        let gpath = format!("groups.{j}");
        if g.name.0.is_empty() {
            errors.push(format!("{}Groupname must not be empty", at(&gpath)));
        }
        if !seen.insert(g.name.0.clone()) {
            errors.push(format!(
                "{}groupname: \"{}\" is repeated in the same file",
                at(&gpath),
                g.name.0
            ));
        }
        let mut rules = Vec::with_capacity(g.rules.len());
        for (i, r) in g.rules.into_iter().enumerate() {
            let rpath = format!("{gpath}.rules.{i}");
            let rule_name = if r.alert.0.is_empty() {
                r.record.0.clone()
            } else {
                r.alert.0.clone()
            };
            let prefix = |field: Option<&str>| {
                let pos = match field {
                    Some(f) => at(&format!("{rpath}.{f}")),
                    None => at(&rpath),
                };
                format!(
                    "{pos}group {:?}, rule {}, {:?}: ",
                    g.name.0,
                    i + 1,
                    rule_name
                )
            };
            match validate_rule(r, &rule_name) {
                Ok(spec) => rules.push(spec),
                Err(problems) => {
                    for (field, msg) in problems {
                        errors.push(format!("{}{msg}", prefix(field.as_deref())));
                    }
                }
            }
        }
        groups.push(GroupSpec {
            file: file.to_owned(),
            name: g.name.0,
            interval: g.interval.map(|d| d.0).filter(|d| !d.is_zero()),
            limit: g.limit,
            rules,
        });
    }
    if errors.is_empty() {
        Ok(groups)
    } else {
        Err(RuleFileError {
            file: file.to_owned(),
            errors,
        })
    }
}

/// A problem and the rule field it is about (for its position).
type Problems = Vec<(Option<String>, String)>;

/// Prometheus's `RuleNode.Validate`, in its order, plus template parsing.
fn validate_rule(r: RawRule, name: &str) -> Result<RuleSpec, Problems> {
    let mut p: Problems = Vec::new();
    let (record, alert) = (r.record.0, r.alert.0);
    if !record.is_empty() && !alert.is_empty() {
        p.push((
            Some("record".into()),
            "only one of 'record' and 'alert' must be set".into(),
        ));
    }
    if record.is_empty() && alert.is_empty() {
        p.push((None, "one of 'record' or 'alert' must be set".into()));
    }
    let expr = if r.expr.0.is_empty() {
        p.push((None, "field 'expr' must be set in rule".into()));
        None
    } else {
        match Expr::parse(&r.expr.0) {
            Ok(e) => Some(e),
            // The engine's parse errors already read `parse error: …`,
            // Prometheus's framing (the wording is the parser crate's).
            Err(e) => {
                p.push((
                    Some("expr".into()),
                    format!("could not parse expression: {e}"),
                ));
                None
            }
        }
    };
    let hold = r.for_.map(|d| d.0).unwrap_or_default();
    let keep = r.keep_firing_for.map(|d| d.0).unwrap_or_default();
    if !record.is_empty() {
        if !r.annotations.is_empty() {
            p.push((
                Some("record".into()),
                "invalid field 'annotations' in recording rule".into(),
            ));
        }
        if !hold.is_zero() {
            p.push((
                Some("record".into()),
                "invalid field 'for' in recording rule".into(),
            ));
        }
        if !keep.is_zero() {
            p.push((
                Some("record".into()),
                "invalid field 'keep_firing_for' in recording rule".into(),
            ));
        }
        if !valid_metric_name(&record) {
            p.push((
                Some("record".into()),
                format!("invalid recording rule name: {record}"),
            ));
        }
    }
    for k in r.labels.keys() {
        if !valid_label_name(k) || k == "__name__" {
            p.push((
                Some(format!("labels.{k}")),
                format!("invalid label name: {k}"),
            ));
        }
    }
    for k in r.annotations.keys() {
        if !valid_label_name(k) {
            p.push((
                Some(format!("annotations.{k}")),
                format!("invalid annotation name: {k}"),
            ));
        }
    }
    let labels: Vec<(String, String)> = r.labels.into_iter().map(|(k, v)| (k, v.0)).collect();
    let annotations: Vec<(String, String)> =
        r.annotations.into_iter().map(|(k, v)| (k, v.0)).collect();
    let mut label_templates = Vec::new();
    let mut annotation_templates = Vec::new();
    if !alert.is_empty() {
        let tname = format!("__alert_{name}");
        for (k, v) in &labels {
            match Template::parse(&tname, v) {
                Ok(t) => label_templates.push(t),
                Err(e) => p.push((Some(format!("labels.{k}")), format!("label {k:?}: {e}"))),
            }
        }
        for (k, v) in &annotations {
            match Template::parse(&tname, v) {
                Ok(t) => annotation_templates.push(t),
                Err(e) => p.push((
                    Some(format!("annotations.{k}")),
                    format!("annotation {k:?}: {e}"),
                )),
            }
        }
    }
    let Some(expr) = expr.filter(|_| p.is_empty()) else {
        return Err(p);
    };
    let kind = if alert.is_empty() {
        RuleKind::Recording { record }
    } else {
        RuleKind::Alerting {
            alert,
            hold,
            keep_firing_for: keep,
            label_templates,
            annotations,
            annotation_templates,
        }
    };
    Ok(RuleSpec {
        kind,
        expr,
        expr_text: r.expr.0,
        labels,
    })
}

/// Expands `patterns` (globs, relative to `base`) into rule files, in a
/// stable order. A pattern matching nothing is not an error (Prometheus).
pub fn expand_globs(patterns: &[String], base: &Path) -> Result<Vec<PathBuf>, String> {
    let mut out = Vec::new();
    for p in patterns {
        let full = if Path::new(p).is_absolute() {
            PathBuf::from(p)
        } else {
            base.join(p)
        };
        let pat = full.to_string_lossy().into_owned();
        let paths = glob::glob(&pat).map_err(|e| format!("rule_files: bad pattern {p:?}: {e}"))?;
        let mut found: Vec<PathBuf> = paths.filter_map(Result::ok).collect();
        found.sort();
        for f in found {
            if !out.contains(&f) {
                out.push(f);
            }
        }
    }
    Ok(out)
}

/// Loads every file; all files' errors together, or all groups.
pub fn load_files(files: &[PathBuf]) -> Result<Vec<GroupSpec>, Vec<RuleFileError>> {
    let mut groups = Vec::new();
    let mut errors = Vec::new();
    for f in files {
        match parse_file(f) {
            Ok(g) => groups.extend(g),
            Err(e) => errors.push(e),
        }
    }
    if errors.is_empty() {
        Ok(groups)
    } else {
        Err(errors)
    }
}

/// One rule that another in the same file duplicates (promtool's lint:
/// same name and same labels, whatever the expression).
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub struct Duplicate {
    pub metric: String,
    pub labels: Vec<(String, String)>,
}

/// promtool's `checkDuplicates`: every (name, labels) pair that occurs more
/// than once across the file's groups, reported once each, sorted.
pub fn duplicates(groups: &[GroupSpec]) -> Vec<Duplicate> {
    let mut all: Vec<Duplicate> = groups
        .iter()
        .flat_map(|g| g.rules.iter())
        .map(|r| Duplicate {
            metric: r.name().to_owned(),
            labels: r.labels.clone(),
        })
        .collect();
    all.sort();
    let mut out: Vec<Duplicate> = Vec::new();
    for w in all.windows(2) {
        if w[0] == w[1] && out.last() != Some(&w[1]) {
            out.push(w[1].clone());
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_both_rule_kinds() {
        let g = parse_str(
            "r.yml",
            "groups:\n  - name: g\n    interval: 30s\n    limit: 5\n    rules:\n      - record: job:up:sum\n        expr: sum by (job) (up)\n        labels: {team: a}\n      - alert: Down\n        expr: up == 0\n        for: 5m\n        keep_firing_for: 1m\n        labels: {severity: page}\n        annotations:\n          summary: '{{ $labels.instance }} down'\n      - record: one\n        expr: 1\n",
        )
        .unwrap();
        assert_eq!(g.len(), 1);
        assert_eq!(g[0].interval, Some(Duration::from_secs(30)));
        assert_eq!(g[0].limit, 5);
        assert_eq!(g[0].key(), "r.yml;g");
        assert_eq!(g[0].rules.len(), 3);
        assert_eq!(g[0].rules[2].expr_text, "1");
        match &g[0].rules[1].kind {
            RuleKind::Alerting {
                hold,
                keep_firing_for,
                annotations,
                ..
            } => {
                assert_eq!(*hold, Duration::from_secs(300));
                assert_eq!(*keep_firing_for, Duration::from_secs(60));
                assert_eq!(annotations[0].0, "summary");
            }
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn reports_promtool_style_errors_with_positions() {
        let err = parse_str(
            "bad.yml",
            "groups:\n  - name: g\n    rules:\n      - record: x\n        expr: 'test +'\n      - record: 'bad name'\n        expr: up\n        for: 1m\n      - alert: A\n        expr: up\n        annotations:\n          s: '{{ humanise $value }}'\n  - name: g\n    rules: []\n",
        )
        .unwrap_err();
        let text = err.to_string();
        assert!(
            text.contains("bad.yml: 5:15: group \"g\", rule 1, \"x\": could not parse expression:"),
            "{text}"
        );
        assert!(
            text.contains(
                "group \"g\", rule 2, \"bad name\": invalid field 'for' in recording rule"
            ),
            "{text}"
        );
        assert!(
            text.contains("invalid recording rule name: bad name"),
            "{text}"
        );
        assert!(
            text.contains("rule 3, \"A\": annotation \"s\": template: __alert_A:1: function \"humanise\" not defined"),
            "{text}"
        );
        assert!(
            text.contains("bad.yml: 13:5: groupname: \"g\" is repeated in the same file"),
            "{text}"
        );
    }

    #[test]
    fn unknown_fields_are_errors_with_lines() {
        let err = parse_str(
            "u.yml",
            "groups:\n  - name: g\n    rules:\n      - record: x\n        expr: up\n        lables: {a: b}\n",
        )
        .unwrap_err();
        assert!(
            err.to_string()
                .contains("u.yml: 6:9: groups[0].rules[0].lables: unknown field"),
            "{err}"
        );
    }

    #[test]
    fn duplicate_lint_matches_promtool() {
        let g = parse_str(
            "d.yml",
            "groups:\n  - name: a\n    rules:\n      - record: x\n        expr: up\n      - record: x\n        expr: down\n      - record: y\n        expr: up\n        labels: {j: '1'}\n  - name: b\n    rules:\n      - record: x\n        expr: up\n      - record: y\n        expr: up\n        labels: {j: '2'}\n",
        )
        .unwrap();
        let d = duplicates(&g);
        assert_eq!(
            d,
            vec![Duplicate {
                metric: "x".into(),
                labels: vec![]
            }]
        );
    }
}
