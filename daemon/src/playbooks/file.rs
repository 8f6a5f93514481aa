//! Playbook files: one playbook per YAML file, parsed, validated and
//! compiled (templates, matchers, PromQL) at load time, so a bad file is
//! refused with its file, line and field before it can ever run.
//!
//! Templates are the alert-template language (Go `text/template` with
//! Prometheus's functions) with `$labels` and `$value` of whatever triggered
//! the run, plus `$target`, `$playbook` and `$run_id`. Numbers in action
//! parameters are not templated; strings are.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use serde::Deserialize;
use serde_json::Value;

use crate::act::Actions;
use crate::config::locate::LineIndex;
use crate::config::{parse_tracked, ConfigError, ConfigIssue, PromDuration};
use crate::rules::template::{no_query, Template, TemplateData};
use crate::store::Matcher;

/// Variables playbook templates may use besides the alert-template ones.
pub const EXTRA_VARS: [&str; 3] = ["$target", "$playbook", "$run_id"];

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(default)]
pub struct ConditionSpec {
    /// PromQL; each series of its result is one target.
    pub expr: String,
    /// How long a series must hold before the playbook runs (default 0s).
    #[serde(rename = "for")]
    pub hold: PromDuration,
    /// Evaluation interval (default `global.evaluation_interval`).
    pub every: Option<PromDuration>,
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(default)]
pub struct ForecastSpec {
    /// The `forecast` label of `homeostat_forecast` series.
    pub name: String,
    /// Which bound to watch: `yhat`, `lo` or `hi` (default `hi`).
    pub bound: Option<String>,
    pub above: Option<f64>,
    pub below: Option<f64>,
    #[serde(rename = "for")]
    pub hold: PromDuration,
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(default)]
pub struct ScheduleSpec {
    pub every: PromDuration,
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(default)]
pub struct WebhookSpec {
    /// Bearer token the caller presents (use `${ENV}` in the file).
    pub token: String,
}

/// What starts a run. Exactly one kind; every playbook can also be run by
/// hand from the API or CLI.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(default)]
pub struct TriggerSpec {
    /// An alert name (homeostat's rules, or Alertmanager webhooks in).
    pub alert: Option<String>,
    /// Label matchers the alert must also satisfy (`severity="critical"`).
    pub matchers: Vec<String>,
    /// `firing` (default) or `resolved`.
    pub on: Option<String>,
    pub condition: Option<ConditionSpec>,
    /// A forecast crossing a threshold (series written by the forecasting
    /// stage): a condition on `homeostat_forecast`.
    pub forecast: Option<ForecastSpec>,
    pub schedule: Option<ScheduleSpec>,
    pub webhook: Option<WebhookSpec>,
    /// Manual only (`manual: true`).
    pub manual: Option<bool>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(default)]
pub struct ApprovalSpec {
    /// A run waits at most this long for a decision, then expires.
    pub timeout: PromDuration,
}

impl Default for ApprovalSpec {
    fn default() -> Self {
        ApprovalSpec {
            timeout: PromDuration::from_secs(15 * 60),
        }
    }
}

#[derive(Debug, Clone, Deserialize)]
#[serde(default)]
pub struct SelfBreakerSpec {
    /// Failed runs within `window` that stop automatic runs (default 3).
    pub failures: u32,
    pub window: PromDuration,
}

impl Default for SelfBreakerSpec {
    fn default() -> Self {
        SelfBreakerSpec {
            failures: 3,
            window: PromDuration::from_secs(3600),
        }
    }
}

#[derive(Debug, Clone, Deserialize)]
#[serde(default)]
pub struct GuardsSpec {
    /// After a run of a target ends, further triggers for it are skipped
    /// this long.
    pub cooldown: PromDuration,
    /// At most this many runs (all targets) per `window`.
    pub max_runs: Option<u32>,
    pub window: PromDuration,
    /// Runs wait in `awaiting_approval` until approved or denied.
    pub approval: Option<ApprovalSpec>,
    /// Describe and record every step, touch nothing.
    pub dry_run: bool,
    /// The playbook's own breaker.
    pub breaker: SelfBreakerSpec,
}

impl Default for GuardsSpec {
    fn default() -> Self {
        GuardsSpec {
            cooldown: PromDuration::from_secs(0),
            max_runs: None,
            window: PromDuration::from_secs(3600),
            approval: None,
            dry_run: false,
            breaker: SelfBreakerSpec::default(),
        }
    }
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(default)]
pub struct StepSpec {
    pub name: String,
    pub action: String,
    pub params: Value,
    /// Default 1m.
    pub timeout: Option<PromDuration>,
    /// Safe to run again if homeostat stopped while it was running. A
    /// non-idempotent step cut short escalates instead of repeating.
    pub idempotent: bool,
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(default)]
pub struct VerifySpec {
    /// PromQL (templated) that must return a result within `within`.
    pub expr: String,
    pub within: PromDuration,
    /// Default 5s.
    pub interval: Option<PromDuration>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(default)]
pub struct OnFailureSpec {
    pub rollback: Vec<StepSpec>,
    /// Page a human through `playbooks.escalation` (default true).
    pub escalate: bool,
}

impl Default for OnFailureSpec {
    fn default() -> Self {
        OnFailureSpec {
            rollback: Vec::new(),
            escalate: true,
        }
    }
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(default)]
pub struct PlaybookSpec {
    pub name: String,
    pub description: String,
    pub trigger: TriggerSpec,
    /// Template naming what the run acts on (`{{ $labels.instance }}`).
    pub target: String,
    pub guards: GuardsSpec,
    pub steps: Vec<StepSpec>,
    pub verify: Option<VerifySpec>,
    pub on_failure: OnFailureSpec,
}

/// The trigger, compiled.
#[derive(Debug, Clone)]
pub enum Trigger {
    Alert {
        name: String,
        matchers: Vec<Matcher>,
        on_resolved: bool,
    },
    Condition {
        expr: String,
        hold: std::time::Duration,
        every: Option<std::time::Duration>,
    },
    Schedule {
        every: std::time::Duration,
    },
    Webhook {
        token: String,
    },
    Manual,
}

impl Trigger {
    pub fn kind(&self) -> &'static str {
        match self {
            Trigger::Alert { .. } => "alert",
            Trigger::Condition { .. } => "condition",
            Trigger::Schedule { .. } => "schedule",
            Trigger::Webhook { .. } => "webhook",
            Trigger::Manual => "manual",
        }
    }
}

/// A loaded, validated playbook.
#[derive(Debug, Clone)]
pub struct Playbook {
    pub file: PathBuf,
    pub spec: PlaybookSpec,
    pub trigger: Trigger,
    /// The forecast trigger's spec when the condition came from one.
    pub forecast: Option<String>,
}

/// What templates are rendered with.
pub struct RenderData<'a> {
    pub labels: &'a [(String, String)],
    pub value: f64,
    pub target: &'a str,
    pub playbook: &'a str,
    pub run_id: &'a str,
}

/// Renders one template string (parsed again: runs are rare, files are
/// validated at load, and this keeps `Playbook` plain data).
pub fn render(text: &str, d: &RenderData<'_>) -> Result<String, String> {
    if !text.contains("{{") {
        return Ok(text.to_string());
    }
    let t = Template::parse_with_vars("playbook", text, &EXTRA_VARS).map_err(|e| e.to_string())?;
    let data = TemplateData {
        labels: d.labels,
        external_labels: &[],
        external_url: "",
        value: d.value,
    };
    t.render_with_vars(
        &data,
        &no_query(),
        &[
            ("$target", d.target),
            ("$playbook", d.playbook),
            ("$run_id", d.run_id),
        ],
    )
    .map_err(|e| e.to_string())
}

/// Renders every string in a parameter tree.
pub fn render_value(v: &Value, d: &RenderData<'_>) -> Result<Value, String> {
    Ok(match v {
        Value::String(s) => Value::String(render(s, d)?),
        Value::Array(a) => Value::Array(
            a.iter()
                .map(|x| render_value(x, d))
                .collect::<Result<_, _>>()?,
        ),
        Value::Object(m) => Value::Object(
            m.iter()
                .map(|(k, x)| Ok((k.clone(), render_value(x, d)?)))
                .collect::<Result<_, String>>()?,
        ),
        other => other.clone(),
    })
}

/// Checks that every template string in a tree parses.
fn check_templates(v: &Value, path: &str, issues: &mut Vec<ConfigIssue>) {
    match v {
        Value::String(s) if s.contains("{{") => {
            if let Err(e) = Template::parse_with_vars("playbook", s, &EXTRA_VARS) {
                issues.push(ConfigIssue::at_path(path, format!("bad template: {e}")));
            }
        }
        Value::Array(a) => {
            for (i, x) in a.iter().enumerate() {
                check_templates(x, &format!("{path}.{i}"), issues);
            }
        }
        Value::Object(m) => {
            for (k, x) in m {
                check_templates(x, &format!("{path}.{k}"), issues);
            }
        }
        _ => {}
    }
}

fn valid_name(s: &str) -> bool {
    !s.is_empty()
        && s.bytes()
            .all(|c| c.is_ascii_alphanumeric() || b"-_.".contains(&c))
}

fn check_steps(steps: &[StepSpec], path: &str, actions: &Actions, issues: &mut Vec<ConfigIssue>) {
    let mut names = std::collections::HashSet::new();
    for (i, s) in steps.iter().enumerate() {
        let p = format!("{path}.{i}");
        if s.name.is_empty() {
            issues.push(ConfigIssue::at_path(
                format!("{p}.name"),
                "every step needs a name (it is how the audit log and a resumed run refer to it)",
            ));
        } else if !names.insert(&s.name) {
            issues.push(ConfigIssue::at_path(
                format!("{p}.name"),
                format!("duplicate step name {:?}", s.name),
            ));
        }
        if s.timeout.is_some_and(|t| t.0.is_zero()) {
            issues.push(ConfigIssue::at_path(
                format!("{p}.timeout"),
                "must be greater than 0",
            ));
        }
        let Some(action) = actions.get(&s.action) else {
            issues.push(ConfigIssue::at_path(
                format!("{p}.action"),
                format!(
                    "unknown action {:?}; known actions: {}",
                    s.action,
                    actions.names().join(", ")
                ),
            ));
            continue;
        };
        let params = if s.params.is_null() {
            Value::Object(Default::default())
        } else {
            s.params.clone()
        };
        check_templates(&params, &format!("{p}.params"), issues);
        if let Err(e) = action.validate(&params) {
            let field = if e.field.is_empty() {
                format!("{p}.params")
            } else {
                format!("{p}.params.{}", e.field)
            };
            issues.push(ConfigIssue::at_path(field, e.message));
        }
    }
}

/// Whether a PromQL expression (templated) parses once rendered with
/// placeholder data.
fn check_promql(expr: &str, path: &str, issues: &mut Vec<ConfigIssue>) {
    if expr.contains("{{") {
        if let Err(e) = Template::parse_with_vars("playbook", expr, &EXTRA_VARS) {
            issues.push(ConfigIssue::at_path(path, format!("bad template: {e}")));
            return;
        }
    }
    let d = RenderData {
        labels: &[],
        value: 0.0,
        target: "target",
        playbook: "playbook",
        run_id: "run",
    };
    // A template that cannot render without real labels is checked when it runs.
    if let Ok(q) = render(expr, &d) {
        if let Err(e) = crate::query::Expr::parse(&q) {
            issues.push(ConfigIssue::at_path(path, format!("bad PromQL: {e}")));
        }
    }
}

impl PlaybookSpec {
    /// Every problem, with field paths; compiles the trigger when valid.
    fn compile(&self, actions: &Actions) -> (Option<(Trigger, Option<String>)>, Vec<ConfigIssue>) {
        let mut issues = Vec::new();
        if !valid_name(&self.name) {
            issues.push(ConfigIssue::at_path(
                "name",
                "required: letters, digits, '-', '_' or '.'",
            ));
        }
        let t = &self.trigger;
        let kinds = [
            t.alert.is_some(),
            t.condition.is_some(),
            t.forecast.is_some(),
            t.schedule.is_some(),
            t.webhook.is_some(),
            t.manual == Some(true),
        ]
        .iter()
        .filter(|k| **k)
        .count();
        let mut trigger = None;
        let mut forecast = None;
        if kinds != 1 {
            issues.push(ConfigIssue::at_path(
                "trigger",
                "name exactly one of alert, condition, forecast, schedule, webhook or manual: true",
            ));
        } else if let Some(name) = &t.alert {
            let mut matchers = Vec::new();
            if name.is_empty() {
                issues.push(ConfigIssue::at_path("trigger.alert", "must name an alert"));
            }
            for (i, m) in t.matchers.iter().enumerate() {
                match crate::query::parse_label_matchers(m) {
                    Ok(ms) => matchers.extend(ms),
                    Err(e) => issues.push(ConfigIssue::at_path(
                        format!("trigger.matchers.{i}"),
                        format!("bad matcher {m:?}: {e}"),
                    )),
                }
            }
            let on_resolved = match t.on.as_deref() {
                None | Some("firing") => false,
                Some("resolved") => true,
                Some(o) => {
                    issues.push(ConfigIssue::at_path(
                        "trigger.on",
                        format!("{o:?}: use firing or resolved"),
                    ));
                    false
                }
            };
            trigger = Some(Trigger::Alert {
                name: name.clone(),
                matchers,
                on_resolved,
            });
        } else if let Some(c) = &t.condition {
            if c.expr.contains("{{") {
                issues.push(ConfigIssue::at_path(
                    "trigger.condition.expr",
                    "a trigger's expression is not templated",
                ));
            } else {
                check_promql(&c.expr, "trigger.condition.expr", &mut issues);
            }
            trigger = Some(Trigger::Condition {
                expr: c.expr.clone(),
                hold: c.hold.0,
                every: c.every.map(|d| d.0),
            });
        } else if let Some(f) = &t.forecast {
            let bound = f.bound.clone().unwrap_or_else(|| "hi".into());
            if !["yhat", "lo", "hi"].contains(&bound.as_str()) {
                issues.push(ConfigIssue::at_path(
                    "trigger.forecast.bound",
                    "use yhat, lo or hi",
                ));
            }
            if f.name.is_empty() {
                issues.push(ConfigIssue::at_path(
                    "trigger.forecast.name",
                    "must name a forecast",
                ));
            }
            // Over the whole horizon: the peak for `above`, the trough for `below`.
            let (agg, cmp) = match (f.above, f.below) {
                (Some(a), None) => ("max", format!("> {a}")),
                (None, Some(b)) => ("min", format!("< {b}")),
                _ => {
                    issues.push(ConfigIssue::at_path(
                        "trigger.forecast",
                        "give exactly one of above or below",
                    ));
                    ("max", String::new())
                }
            };
            let expr = format!(
                "{agg} without (horizon) (homeostat_forecast{{forecast={:?},bound={:?}}}) {cmp}",
                f.name, bound
            );
            forecast = Some(f.name.clone());
            trigger = Some(Trigger::Condition {
                expr,
                hold: f.hold.0,
                every: None,
            });
        } else if let Some(s) = &t.schedule {
            if s.every.0.is_zero() {
                issues.push(ConfigIssue::at_path(
                    "trigger.schedule.every",
                    "must be greater than 0",
                ));
            }
            trigger = Some(Trigger::Schedule { every: s.every.0 });
        } else if let Some(w) = &t.webhook {
            if w.token.len() < 16 {
                issues.push(ConfigIssue::at_path(
                    "trigger.webhook.token",
                    "must be at least 16 characters (use ${ENV} to keep it out of the file)",
                ));
            }
            trigger = Some(Trigger::Webhook {
                token: w.token.clone(),
            });
        } else {
            trigger = Some(Trigger::Manual);
        }
        let manual = matches!(trigger, Some(Trigger::Manual));
        if self.target.is_empty() && !manual {
            issues.push(ConfigIssue::at_path(
                "target",
                "missing target: say what a run acts on, e.g. '{{ $labels.instance }}'",
            ));
        }
        if self.target.contains("{{") {
            if let Err(e) = Template::parse_with_vars("target", &self.target, &EXTRA_VARS) {
                issues.push(ConfigIssue::at_path("target", format!("bad template: {e}")));
            }
        }
        if matches!(trigger, Some(Trigger::Schedule { .. })) && self.target.contains("{{") {
            issues.push(ConfigIssue::at_path(
                "target",
                "a scheduled run has no labels to template from; name the target",
            ));
        }
        let g = &self.guards;
        if g.max_runs == Some(0) {
            issues.push(ConfigIssue::at_path(
                "guards.max_runs",
                "must be at least 1",
            ));
        }
        if g.window.0.is_zero() {
            issues.push(ConfigIssue::at_path(
                "guards.window",
                "must be greater than 0",
            ));
        }
        if g.breaker.failures == 0 {
            issues.push(ConfigIssue::at_path(
                "guards.breaker.failures",
                "must be at least 1",
            ));
        }
        if g.approval.as_ref().is_some_and(|a| a.timeout.0.is_zero()) {
            issues.push(ConfigIssue::at_path(
                "guards.approval.timeout",
                "must be greater than 0",
            ));
        }
        if self.steps.is_empty() {
            issues.push(ConfigIssue::at_path(
                "steps",
                "a playbook needs at least one step",
            ));
        }
        check_steps(&self.steps, "steps", actions, &mut issues);
        check_steps(
            &self.on_failure.rollback,
            "on_failure.rollback",
            actions,
            &mut issues,
        );
        if let Some(v) = &self.verify {
            if v.expr.is_empty() {
                issues.push(ConfigIssue::at_path("verify.expr", "required"));
            } else {
                check_promql(&v.expr, "verify.expr", &mut issues);
            }
            if v.within.0.is_zero() {
                issues.push(ConfigIssue::at_path(
                    "verify.within",
                    "must be greater than 0",
                ));
            }
        }
        match trigger {
            Some(t) if issues.is_empty() => (Some((t, forecast)), issues),
            _ => (None, issues),
        }
    }
}

/// Parses and validates one playbook's text.
pub fn load_str(text: &str, file: &Path, actions: &Actions) -> Result<Playbook, ConfigError> {
    let index = LineIndex::build(text);
    let (spec, mut issues) = parse_tracked::<PlaybookSpec>(text, &index);
    let mut compiled = None;
    if let Some(s) = &spec {
        let (c, more) = s.compile(actions);
        issues.extend(more);
        compiled = c;
    }
    for i in &mut issues {
        if i.line.is_none() {
            // A field inside params may not exist (missing field): point
            // at the nearest enclosing one that does.
            let mut p = i.path.clone().unwrap_or_default();
            loop {
                if let Some((l, c)) = index.locate(&p) {
                    i.line = Some(l);
                    i.column = Some(c);
                    break;
                }
                match p.rfind('.') {
                    Some(k) => p.truncate(k),
                    None => break,
                }
            }
        }
    }
    issues.sort_by_key(|i| (i.line.unwrap_or(0), i.column.unwrap_or(0)));
    match (spec, compiled) {
        (Some(spec), Some((trigger, forecast))) if issues.is_empty() => Ok(Playbook {
            file: file.to_path_buf(),
            spec,
            trigger,
            forecast,
        }),
        _ => Err(ConfigError {
            file: file.display().to_string(),
            issues,
        }),
    }
}

pub fn load_file(path: &Path, actions: &Actions) -> Result<Playbook, ConfigError> {
    let text = std::fs::read_to_string(path).map_err(|e| ConfigError {
        file: path.display().to_string(),
        issues: vec![ConfigIssue {
            path: None,
            line: None,
            column: None,
            message: format!("cannot read playbook file: {e}"),
        }],
    })?;
    let text = crate::config::interpolate_env(&text).map_err(|issues| ConfigError {
        file: path.display().to_string(),
        issues,
    })?;
    load_str(&text, path, actions)
}

/// Loads every file the globs match; all errors together (each with its
/// file), including a name used by two files.
pub fn load_all(globs: &[String], base: &Path, actions: &Actions) -> Result<Vec<Playbook>, String> {
    let files = crate::rules::file::expand_globs(globs, base)
        .map_err(|e| e.replace("rule_files", "playbook_files"))?;
    let mut out: Vec<Playbook> = Vec::new();
    let mut errors = Vec::new();
    let mut seen: BTreeMap<String, PathBuf> = BTreeMap::new();
    for f in files {
        match load_file(&f, actions) {
            Ok(p) => {
                if let Some(first) = seen.insert(p.spec.name.clone(), f.clone()) {
                    errors.push(format!(
                        "{}: playbook name {:?} is already used by {}",
                        f.display(),
                        p.spec.name,
                        first.display()
                    ));
                } else {
                    out.push(p);
                }
            }
            Err(e) => errors.push(e.to_string()),
        }
    }
    if errors.is_empty() {
        Ok(out)
    } else {
        Err(errors.join("\n"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn load(text: &str) -> Result<Playbook, String> {
        load_str(text, Path::new("pb.yml"), &Actions::default()).map_err(|e| e.to_string())
    }

    const GOOD: &str = r#"
name: flush-sessions
description: Flush a poisoned session namespace.
trigger:
  alert: SessionCachePoisoned
  matchers: ['severity=~"warning|critical"']
target: '{{ $labels.namespace }}'
guards:
  cooldown: 10m
  max_runs: 3
steps:
  - name: flush
    action: redis.flush
    params:
      server: cache
      pattern: 'sess:{{ $target }}:*'
      max_keys: 100000
verify:
  expr: 'redis_up{instance="cache"} == 1'
  within: 1m
"#;

    #[test]
    fn loads_a_valid_playbook_and_renders_params() {
        let p = load(GOOD).unwrap();
        let Trigger::Alert {
            name,
            matchers,
            on_resolved,
        } = &p.trigger
        else {
            panic!("{:?}", p.trigger)
        };
        assert_eq!(name, "SessionCachePoisoned");
        assert!(!on_resolved);
        assert!(matchers[0].matches("critical") && !matchers[0].matches("info"));
        let labels = vec![("namespace".to_string(), "tenant7".to_string())];
        let d = RenderData {
            labels: &labels,
            value: 1.0,
            target: "tenant7",
            playbook: "flush-sessions",
            run_id: "r1",
        };
        assert_eq!(render(&p.spec.target, &d).unwrap(), "tenant7");
        let params = render_value(&p.spec.steps[0].params, &d).unwrap();
        assert_eq!(params["pattern"], "sess:tenant7:*");
        assert_eq!(params["max_keys"], 100000);
    }

    #[test]
    fn errors_name_line_and_field() {
        let bad = GOOD
            .replace("action: redis.flush", "action: redis.flushall")
            .replace("'{{ $labels.namespace }}'", "'{{ $labels.namespace '")
            .replace("redis_up{instance=\"cache\"} == 1", "redis_up{instance=")
            .replace("      max_keys: 100000\n", "");
        let e = load(&bad).unwrap_err();
        assert!(e.contains("pb.yml:7:1: target: bad template"), "{e}");
        assert!(
            e.contains("pb.yml:13:5: steps[0].action: unknown action \"redis.flushall\""),
            "{e}"
        );
        assert!(e.contains("verify.expr: bad PromQL"), "{e}");
        let missing = GOOD.replace("      max_keys: 100000\n", "");
        let e = load(&missing).unwrap_err();
        assert!(
            e.contains("steps[0].params: missing field `max_keys`"),
            "{e}"
        );
        assert!(e.contains("pb.yml:14:"), "{e}");
        let no_target = GOOD.replace("target: '{{ $labels.namespace }}'\n", "");
        assert!(load(&no_target)
            .unwrap_err()
            .contains("target: missing target"));
        let unknown = GOOD.replace("  cooldown: 10m", "  cooldwn: 10m");
        assert!(load(&unknown)
            .unwrap_err()
            .contains("unknown field \"cooldwn\""));
        let two = GOOD.replace(
            "  alert: SessionCachePoisoned",
            "  alert: X\n  manual: true",
        );
        assert!(load(&two).unwrap_err().contains("exactly one of"));
    }

    #[test]
    fn forecast_triggers_are_conditions_on_forecast_series() {
        let text = GOOD.replace(
            "  alert: SessionCachePoisoned\n  matchers: ['severity=~\"warning|critical\"']",
            "  forecast: {name: llm-demand, above: 100, for: 5m}",
        );
        let p = load(&text).unwrap();
        let Trigger::Condition { expr, hold, .. } = &p.trigger else {
            panic!()
        };
        assert_eq!(
            expr,
            "max without (horizon) (homeostat_forecast{forecast=\"llm-demand\",bound=\"hi\"}) > 100"
        );
        assert_eq!(hold.as_secs(), 300);
    }
}

#[cfg(test)]
mod readme {
    /// Every ```yml block of the README is a playbook that loads.
    #[test]
    fn readme_playbooks_load() {
        let readme = include_str!("../../../README.md");
        let mut n = 0;
        for block in readme.split("```yml\n").skip(1) {
            let Some((yaml, _)) = block.split_once("```") else {
                continue;
            };
            n += 1;
            super::load_str(
                yaml,
                std::path::Path::new("README.md"),
                &crate::act::Actions::default(),
            )
            .unwrap_or_else(|e| panic!("README playbook fails to load: {e}\n{yaml}"));
        }
        assert!(n >= 1, "README lost its playbook example");
    }
}
