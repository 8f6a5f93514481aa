//! The routing tree, as Alertmanager's: matchers, `continue`, `group_by`
//! (with `...`), the three timers, and time intervals, inherited down the
//! tree. Route keys are Alertmanager's (`{}/{severity="page"}`), so group
//! keys, and everything keyed by them (PagerDuty dedup keys, webhook
//! `groupKey`), are the same as a team's Alertmanager produced.

use std::collections::BTreeMap;
use std::time::Duration;

use serde::Deserialize;

use super::matcher::{self, MatchOp, Matcher};
use crate::config::{PromDuration, Validator};

#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct RouteConfig {
    pub receiver: Option<String>,
    pub group_by: Option<Vec<String>>,
    pub matchers: Vec<String>,
    /// Deprecated in Alertmanager, still read: equality matchers.
    #[serde(rename = "match")]
    pub match_eq: BTreeMap<String, String>,
    /// Deprecated in Alertmanager, still read: regex matchers.
    pub match_re: BTreeMap<String, String>,
    #[serde(rename = "continue")]
    pub continue_matching: bool,
    pub routes: Vec<RouteConfig>,
    pub group_wait: Option<PromDuration>,
    pub group_interval: Option<PromDuration>,
    pub repeat_interval: Option<PromDuration>,
    pub mute_time_intervals: Vec<String>,
    pub active_time_intervals: Vec<String>,
}

#[derive(Debug, Clone, PartialEq)]
pub enum GroupBy {
    /// `...`: every label.
    All,
    Labels(Vec<String>),
}

/// A route with everything inherited resolved.
#[derive(Debug, Clone)]
pub struct Route {
    pub key: String,
    pub matchers: Vec<Matcher>,
    pub continue_matching: bool,
    pub receiver: String,
    pub group_by: GroupBy,
    pub group_wait: Duration,
    pub group_interval: Duration,
    pub repeat_interval: Duration,
    pub mute_time_intervals: Vec<String>,
    pub active_time_intervals: Vec<String>,
    pub routes: Vec<Route>,
}

pub const DEFAULT_GROUP_WAIT: Duration = Duration::from_secs(30);
pub const DEFAULT_GROUP_INTERVAL: Duration = Duration::from_secs(300);
pub const DEFAULT_REPEAT_INTERVAL: Duration = Duration::from_secs(4 * 3600);

impl Route {
    /// Compiles the tree; problems go to `v` under `path`.
    pub fn compile(
        c: &RouteConfig,
        parent: Option<&Route>,
        path: &str,
        receivers: &[String],
        intervals: &[String],
        v: &mut Validator,
    ) -> Route {
        let mut ms = Vec::new();
        for (k, val) in &c.match_eq {
            ms.extend(Matcher::new(k, MatchOp::Eq, val).ok());
        }
        for (k, val) in &c.match_re {
            match Matcher::new(k, MatchOp::Re, val) {
                Ok(m) => ms.push(m),
                Err(e) => v.error(format!("{path}.match_re.{k}"), e),
            }
        }
        for (i, s) in c.matchers.iter().enumerate() {
            match matcher::parse(s) {
                Ok(m) => ms.extend(m),
                Err(e) => v.error(format!("{path}.matchers.{i}"), e),
            }
        }
        matcher::sort(&mut ms);
        if parent.is_none() && !ms.is_empty() {
            v.error(
                format!("{path}.matchers"),
                "the root route must not have matchers",
            );
        }
        if parent.is_none() && c.continue_matching {
            v.error(
                format!("{path}.continue"),
                "cannot be set on the root route",
            );
        }
        let receiver = c
            .receiver
            .clone()
            .or_else(|| parent.map(|p| p.receiver.clone()))
            .unwrap_or_default();
        if receiver.is_empty() {
            v.error(
                format!("{path}.receiver"),
                "the root route must name a receiver",
            );
        } else if !receivers.contains(&receiver) {
            v.error(
                format!("{path}.receiver"),
                format!("undefined receiver {receiver:?} used in route"),
            );
        }
        let group_by = match &c.group_by {
            Some(g) if g.iter().any(|l| l == "...") => {
                if g.len() > 1 {
                    v.error(
                        format!("{path}.group_by"),
                        "cannot have grouping labels and ... at the same time",
                    );
                }
                GroupBy::All
            }
            Some(g) => {
                let mut seen = std::collections::BTreeSet::new();
                for (i, l) in g.iter().enumerate() {
                    if !crate::collect::relabel::valid_label_name(l) {
                        v.error(
                            format!("{path}.group_by.{i}"),
                            format!("{l:?} is not a valid label name"),
                        );
                    }
                    if !seen.insert(l) {
                        v.error(
                            format!("{path}.group_by.{i}"),
                            format!("duplicated label {l:?} in group_by"),
                        );
                    }
                }
                GroupBy::Labels(g.clone())
            }
            None => parent.map_or(GroupBy::Labels(Vec::new()), |p| p.group_by.clone()),
        };
        let inherit = |own: Option<PromDuration>, p: Option<Duration>, d: Duration| {
            own.map(|x| x.0).or(p).unwrap_or(d)
        };
        let group_wait = inherit(
            c.group_wait,
            parent.map(|p| p.group_wait),
            DEFAULT_GROUP_WAIT,
        );
        let group_interval = inherit(
            c.group_interval,
            parent.map(|p| p.group_interval),
            DEFAULT_GROUP_INTERVAL,
        );
        let repeat_interval = inherit(
            c.repeat_interval,
            parent.map(|p| p.repeat_interval),
            DEFAULT_REPEAT_INTERVAL,
        );
        if group_interval.is_zero() {
            v.error(format!("{path}.group_interval"), "cannot be zero");
        }
        if repeat_interval.is_zero() {
            v.error(format!("{path}.repeat_interval"), "cannot be zero");
        }
        for (field, names) in [
            ("mute_time_intervals", &c.mute_time_intervals),
            ("active_time_intervals", &c.active_time_intervals),
        ] {
            if parent.is_none() && !names.is_empty() {
                v.error(format!("{path}.{field}"), "cannot be set on the root route");
            }
            for (i, n) in names.iter().enumerate() {
                if !intervals.contains(n) {
                    v.error(
                        format!("{path}.{field}.{i}"),
                        format!("undefined time interval {n:?} used in route"),
                    );
                }
            }
        }
        let key = match parent {
            Some(p) => format!("{}/{}", p.key, matcher::to_string(&ms)),
            None => matcher::to_string(&ms),
        };
        let mut r = Route {
            key,
            matchers: ms,
            continue_matching: c.continue_matching,
            receiver,
            group_by,
            group_wait,
            group_interval,
            repeat_interval,
            mute_time_intervals: c.mute_time_intervals.clone(),
            active_time_intervals: c.active_time_intervals.clone(),
            routes: Vec::new(),
        };
        r.routes = c
            .routes
            .iter()
            .enumerate()
            .map(|(i, child)| {
                Route::compile(
                    child,
                    Some(&r),
                    &format!("{path}.routes.{i}"),
                    receivers,
                    intervals,
                    v,
                )
            })
            .collect();
        r
    }

    /// The routes an alert ends up in: Alertmanager's depth-first walk,
    /// stopping at the first matching child unless it continues.
    pub fn match_labels<'a>(&'a self, labels: &BTreeMap<String, String>) -> Vec<&'a Route> {
        if !matcher::matches_all(&self.matchers, labels) {
            return Vec::new();
        }
        let mut all = Vec::new();
        for child in &self.routes {
            let m = child.match_labels(labels);
            let matched = !m.is_empty();
            all.extend(m);
            if matched && !child.continue_matching {
                break;
            }
        }
        if all.is_empty() {
            all.push(self);
        }
        all
    }

    /// The labels an alert is grouped by on this route.
    pub fn group_labels(&self, labels: &BTreeMap<String, String>) -> BTreeMap<String, String> {
        match &self.group_by {
            GroupBy::All => labels.clone(),
            GroupBy::Labels(names) => names
                .iter()
                .filter_map(|n| labels.get(n).map(|v| (n.clone(), v.clone())))
                .collect(),
        }
    }
}

/// `{a="b", c="d"}`: Go's `model.LabelSet.String()`, the second half of a
/// group key.
pub fn labelset_string(l: &BTreeMap<String, String>) -> String {
    let parts: Vec<String> = l
        .iter()
        .map(|(k, v)| format!("{k}={}", serde_json::Value::String(v.clone())))
        .collect();
    format!("{{{}}}", parts.join(", "))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tree(yaml: &str) -> Route {
        let c: RouteConfig = serde_norway::from_str(yaml).unwrap();
        let mut v = Validator::new();
        let r = Route::compile(
            &c,
            None,
            "route",
            &["default".into(), "pager".into(), "team".into()],
            &[],
            &mut v,
        );
        assert!(v.issues.is_empty(), "{:?}", v.issues);
        r
    }

    fn l(p: &[(&str, &str)]) -> BTreeMap<String, String> {
        p.iter()
            .map(|(a, b)| (a.to_string(), b.to_string()))
            .collect()
    }

    #[test]
    fn walks_like_alertmanager() {
        let r = tree(
            r#"
receiver: default
group_by: [alertname]
group_wait: 1s
routes:
  - matchers: ['severity="page"']
    receiver: pager
    group_by: [alertname, cluster]
    continue: true
  - matchers: ['team=~"db|cache"']
    receiver: team
    group_by: ['...']
    group_wait: 5s
"#,
        );
        let m = r.match_labels(&l(&[("severity", "page"), ("team", "db")]));
        let names: Vec<&str> = m.iter().map(|r| r.receiver.as_str()).collect();
        assert_eq!(names, ["pager", "team"]);
        assert_eq!(m[0].key, r#"{}/{severity="page"}"#);
        assert_eq!(m[1].key, r#"{}/{team=~"db|cache"}"#);
        assert_eq!(m[0].group_wait, Duration::from_secs(1));
        assert_eq!(m[1].group_wait, Duration::from_secs(5));
        assert_eq!(m[1].group_by, GroupBy::All);
        let m = r.match_labels(&l(&[("severity", "warning")]));
        assert_eq!(m[0].receiver, "default");
        assert_eq!(m[0].key, "{}");
        assert_eq!(
            labelset_string(&m[0].group_labels(&l(&[("alertname", "A\"x"), ("b", "c")]))),
            r#"{alertname="A\"x"}"#
        );
    }

    #[test]
    fn errors_name_the_field() {
        let c: RouteConfig = serde_norway::from_str(
            "receiver: nope\nroutes: [{matchers: ['a=~\"(\"'], active_time_intervals: [x]}]",
        )
        .unwrap();
        let mut v = Validator::new();
        Route::compile(&c, None, "notify.route", &["default".into()], &[], &mut v);
        let paths: Vec<String> = v.issues.iter().filter_map(|i| i.path.clone()).collect();
        assert!(
            paths.contains(&"notify.route.receiver".to_string()),
            "{paths:?}"
        );
        assert!(paths.contains(&"notify.route.routes.0.matchers.0".to_string()));
        assert!(paths.contains(&"notify.route.routes.0.active_time_intervals.0".to_string()));
    }
}
