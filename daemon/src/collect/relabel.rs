//! Prometheus relabeling (`metric_relabel_configs`): config, validation and
//! application to one label set.
//!
//! Applied only when a series is first seen by a scrape loop (the result is
//! cached per series), so clarity wins over allocation-avoidance here. Owns no
//! state; never touches the store.

use regex::Regex;
use serde::Deserialize;

use crate::config::Validator;

/// What a relabel rule does, with Prometheus's names and defaults.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum RelabelAction {
    /// Set `target_label` to `replacement` expanded with the regex's groups.
    #[default]
    Replace,
    /// Keep only series whose joined `source_labels` match.
    Keep,
    /// Drop series whose joined `source_labels` match.
    Drop,
    /// Keep series where the joined `source_labels` equal `target_label`'s value.
    Keepequal,
    /// Drop series where the joined `source_labels` equal `target_label`'s value.
    Dropequal,
    /// Remove every label whose name matches.
    Labeldrop,
    /// Remove every label whose name does not match.
    Labelkeep,
    /// Copy labels whose name matches to the name `replacement` expands to.
    Labelmap,
    /// Set `target_label` to the lower-cased joined `source_labels`.
    Lowercase,
    /// Set `target_label` to the upper-cased joined `source_labels`.
    Uppercase,
}

/// One rule of `metric_relabel_configs`, written as in `prometheus.yml`.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(default)]
pub struct RelabelConfig {
    pub source_labels: Vec<String>,
    pub separator: String,
    /// Fully anchored, as in Prometheus.
    pub regex: String,
    pub target_label: String,
    pub replacement: String,
    pub action: RelabelAction,
}

impl Default for RelabelConfig {
    fn default() -> Self {
        RelabelConfig {
            source_labels: Vec::new(),
            separator: ";".into(),
            regex: "(.*)".into(),
            target_label: String::new(),
            replacement: "$1".into(),
            action: RelabelAction::Replace,
        }
    }
}

pub fn valid_label_name(s: &str) -> bool {
    let mut b = s.bytes();
    matches!(b.next(), Some(c) if c.is_ascii_alphabetic() || c == b'_')
        && b.all(|c| c.is_ascii_alphanumeric() || c == b'_')
}

impl RelabelConfig {
    pub fn validate(&self, path: &str, v: &mut Validator) {
        if let Err(e) = anchored(&self.regex) {
            v.error(format!("{path}.regex"), format!("invalid regex: {e}"));
        }
        for (i, l) in self.source_labels.iter().enumerate() {
            if !valid_label_name(l) {
                v.error(
                    format!("{path}.source_labels.{i}"),
                    format!("{l:?} is not a valid label name"),
                );
            }
        }
        use RelabelAction::*;
        let needs_target = matches!(
            self.action,
            Replace | Lowercase | Uppercase | Keepequal | Dropequal
        );
        if needs_target && self.target_label.is_empty() {
            v.error(
                format!("{path}.target_label"),
                format!("relabel action {:?} requires target_label", self.action),
            );
        }
        if matches!(self.action, Lowercase | Uppercase | Keepequal | Dropequal)
            && !valid_label_name(&self.target_label)
        {
            v.error(
                format!("{path}.target_label"),
                format!("{:?} is not a valid label name", self.target_label),
            );
        }
        if matches!(
            self.action,
            Keep | Drop | Keepequal | Dropequal | Lowercase | Uppercase
        ) && self.source_labels.is_empty()
        {
            v.error(
                format!("{path}.source_labels"),
                format!("relabel action {:?} requires source_labels", self.action),
            );
        }
        if matches!(self.action, Labeldrop | Labelkeep)
            && (!self.source_labels.is_empty()
                || !self.target_label.is_empty()
                || self.replacement != "$1")
        {
            v.error(
                path.to_string(),
                format!(
                    "{:?} action requires only 'regex', and no other fields",
                    self.action
                ),
            );
        }
    }

    pub fn compile(&self) -> Result<Relabeler, regex::Error> {
        Ok(Relabeler {
            cfg: self.clone(),
            regex: anchored(&self.regex)?,
        })
    }
}

fn anchored(re: &str) -> Result<Regex, regex::Error> {
    Regex::new(&format!("^(?:{re})$"))
}

/// A compiled rule.
#[derive(Debug, Clone)]
pub struct Relabeler {
    cfg: RelabelConfig,
    regex: Regex,
}

fn get<'a>(labels: &'a [(String, String)], name: &str) -> &'a str {
    labels
        .iter()
        .find(|(n, _)| n == name)
        .map(|(_, v)| v.as_str())
        .unwrap_or("")
}

fn set(labels: &mut Vec<(String, String)>, name: &str, value: String) {
    labels.retain(|(n, _)| n != name);
    if !value.is_empty() {
        labels.push((name.to_string(), value));
    }
}

/// Applies `rules` in order; `false` means the series is dropped.
pub fn apply(rules: &[Relabeler], labels: &mut Vec<(String, String)>) -> bool {
    rules.iter().all(|r| r.apply(labels))
}

impl Relabeler {
    fn apply(&self, labels: &mut Vec<(String, String)>) -> bool {
        use RelabelAction::*;
        let c = &self.cfg;
        let joined = || {
            c.source_labels
                .iter()
                .map(|n| get(labels, n))
                .collect::<Vec<_>>()
                .join(&c.separator)
        };
        match c.action {
            Keep => return self.regex.is_match(&joined()),
            Drop => return !self.regex.is_match(&joined()),
            Keepequal => return joined() == get(labels, &c.target_label),
            Dropequal => return joined() != get(labels, &c.target_label),
            Replace => {
                let val = joined();
                if let Some(caps) = self.regex.captures(&val) {
                    let mut target = String::new();
                    caps.expand(&c.target_label, &mut target);
                    if valid_label_name(&target) {
                        let mut res = String::new();
                        caps.expand(&c.replacement, &mut res);
                        set(labels, &target, res);
                    }
                }
            }
            Lowercase => {
                let v = joined().to_lowercase();
                set(labels, &c.target_label, v);
            }
            Uppercase => {
                let v = joined().to_uppercase();
                set(labels, &c.target_label, v);
            }
            Labeldrop => labels.retain(|(n, _)| !self.regex.is_match(n)),
            Labelkeep => labels.retain(|(n, _)| self.regex.is_match(n)),
            Labelmap => {
                let mut add = Vec::new();
                for (n, v) in labels.iter() {
                    if let Some(caps) = self.regex.captures(n) {
                        let mut target = String::new();
                        caps.expand(&c.replacement, &mut target);
                        add.push((target, v.clone()));
                    }
                }
                for (n, v) in add {
                    set(labels, &n, v);
                }
            }
        }
        true
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rule(yaml: &str) -> Relabeler {
        let c: RelabelConfig = serde_norway::from_str(yaml).unwrap();
        c.compile().unwrap()
    }

    fn ls(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
        pairs
            .iter()
            .map(|(a, b)| (a.to_string(), b.to_string()))
            .collect()
    }

    #[test]
    fn keep_and_drop() {
        let keep = rule("source_labels: [__name__]\nregex: 'http_.*'\naction: keep\n");
        assert!(apply(
            std::slice::from_ref(&keep),
            &mut ls(&[("__name__", "http_requests_total")])
        ));
        assert!(!apply(&[keep], &mut ls(&[("__name__", "go_goroutines")])));
        let drop = rule("source_labels: [__name__, code]\nregex: 'http_.*;5..'\naction: drop\n");
        assert!(!apply(
            std::slice::from_ref(&drop),
            &mut ls(&[("__name__", "http_x"), ("code", "503")])
        ));
        assert!(apply(
            &[drop],
            &mut ls(&[("__name__", "http_x"), ("code", "200")])
        ));
    }

    #[test]
    fn regex_is_anchored() {
        let keep = rule("source_labels: [__name__]\nregex: 'http'\naction: keep\n");
        assert!(!apply(
            &[keep],
            &mut ls(&[("__name__", "http_requests_total")])
        ));
    }

    #[test]
    fn replace_with_groups_and_empty_deletes() {
        let r = rule("source_labels: [instance]\nregex: '(.*):(\\d+)'\ntarget_label: host\nreplacement: '${1}'\n");
        let mut l = ls(&[("instance", "db1:9100")]);
        assert!(apply(&[r], &mut l));
        assert_eq!(get(&l, "host"), "db1");
        let del = rule("source_labels: [nothing]\nregex: '(.*)'\ntarget_label: instance\n");
        let mut l = ls(&[("instance", "db1:9100")]);
        assert!(apply(&[del], &mut l));
        assert_eq!(get(&l, "instance"), "");
    }

    #[test]
    fn replace_without_match_changes_nothing() {
        let r = rule("source_labels: [a]\nregex: 'x(.*)'\ntarget_label: b\n");
        let mut l = ls(&[("a", "y"), ("b", "keep")]);
        assert!(apply(&[r], &mut l));
        assert_eq!(get(&l, "b"), "keep");
    }

    #[test]
    fn labeldrop_labelkeep_labelmap() {
        let mut l = ls(&[("__name__", "m"), ("pod_uid", "1"), ("pod_name", "x")]);
        assert!(apply(
            &[rule("regex: 'pod_uid'\naction: labeldrop\n")],
            &mut l
        ));
        assert_eq!(l.len(), 2);
        assert!(apply(
            &[rule(
                "regex: 'pod_(.*)'\nreplacement: 'k8s_$1'\naction: labelmap\n"
            )],
            &mut l
        ));
        assert_eq!(get(&l, "k8s_name"), "x");
        assert!(apply(
            &[rule("regex: '__name__|k8s_.*'\naction: labelkeep\n")],
            &mut l
        ));
        assert_eq!(l.len(), 2);
    }

    #[test]
    fn case_and_equal_actions() {
        let mut l = ls(&[("a", "MiXed"), ("b", "mixed")]);
        assert!(apply(
            &[rule(
                "source_labels: [a]\ntarget_label: c\naction: lowercase\n"
            )],
            &mut l
        ));
        assert_eq!(get(&l, "c"), "mixed");
        assert!(apply(
            &[rule(
                "source_labels: [c]\ntarget_label: b\naction: keepequal\n"
            )],
            &mut l
        ));
        assert!(!apply(
            &[rule(
                "source_labels: [c]\ntarget_label: b\naction: dropequal\n"
            )],
            &mut l
        ));
    }
}
