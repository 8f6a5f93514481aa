//! One rule group's evaluation and the alert state machine, with Prometheus
//! 2.42's semantics (`rules/group.go`, `rules/alerting.go`,
//! `rules/recording.go`).
//!
//! Owns: evaluating every rule of a group at one timestamp, writing recording
//! results and `ALERTS`/`ALERTS_FOR_STATE` back to the store (with staleness
//! markers for series that disappear), the inactive → pending → firing →
//! resolved lifecycle with `for` and `keep_firing_for`, and deciding which
//! alerts are due to be sent. It is synchronous and clock-free (time is an
//! argument), so `homeostat test rules` and the daemon share it exactly. It
//! must not talk to the network or the state database: it returns what
//! changed and the caller ships it.

use std::time::Duration;

use rustc_hash::{FxHashMap, FxHashSet};

use super::file::{GroupSpec, RuleKind, RuleSpec};
use super::template::{QuerySample, TemplateData, TemplateQuery};
use crate::query::{Engine, QueryValue};
use crate::store::{stale_nan, Labels, SeriesRef, Store};

/// Resolved alerts are kept (and re-sent) this long, as in Prometheus.
pub const RESOLVED_RETENTION_MS: i64 = 15 * 60 * 1000;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum AlertState {
    Inactive,
    Pending,
    Firing,
}

impl AlertState {
    pub fn as_str(self) -> &'static str {
        match self {
            AlertState::Inactive => "inactive",
            AlertState::Pending => "pending",
            AlertState::Firing => "firing",
        }
    }

    pub fn parse(s: &str) -> Option<AlertState> {
        match s {
            "inactive" => Some(AlertState::Inactive),
            "pending" => Some(AlertState::Pending),
            "firing" => Some(AlertState::Firing),
            _ => None,
        }
    }
}

/// One alert instance of an alerting rule; times are Unix milliseconds.
#[derive(Clone, Debug, PartialEq)]
pub struct Alert {
    /// Result labels without `__name__`, the rule's labels and `alertname`.
    pub labels: Labels,
    pub annotations: Vec<(String, String)>,
    pub state: AlertState,
    pub value: f64,
    pub active_at: i64,
    pub fired_at: Option<i64>,
    pub resolved_at: Option<i64>,
    pub last_sent_at: Option<i64>,
    pub valid_until: i64,
    pub keep_firing_since: Option<i64>,
}

impl Alert {
    /// Prometheus's `needsSending`.
    fn needs_sending(&self, ts: i64, resend_delay_ms: i64) -> bool {
        if self.state == AlertState::Pending {
            return false;
        }
        if let Some(r) = self.resolved_at {
            if self.last_sent_at.is_none_or(|s| r > s) {
                return true;
            }
        }
        self.last_sent_at.is_none_or(|s| s + resend_delay_ms < ts)
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Health {
    Unknown,
    Ok,
    Err,
}

impl Health {
    pub fn as_str(self) -> &'static str {
        match self {
            Health::Unknown => "unknown",
            Health::Ok => "ok",
            Health::Err => "err",
        }
    }
}

/// A rule with its evaluation state.
#[derive(Debug)]
pub struct Rule {
    pub spec: RuleSpec,
    /// Alert instances by label fingerprint (alerting rules only).
    pub active: FxHashMap<u64, Alert>,
    pub health: Health,
    pub last_error: Option<String>,
    pub last_eval_ms: i64,
    pub last_duration: Duration,
    pub last_samples: usize,
    /// Series written at the previous evaluation, to mark the ones that
    /// disappear stale.
    written: FxHashMap<u64, SeriesRef>,
}

impl Rule {
    pub fn new(spec: RuleSpec) -> Rule {
        Rule {
            spec,
            active: FxHashMap::default(),
            health: Health::Unknown,
            last_error: None,
            last_eval_ms: 0,
            last_duration: Duration::ZERO,
            last_samples: 0,
            written: FxHashMap::default(),
        }
    }

    /// Identity across reloads (Prometheus's `nameAndLabels`): the same name
    /// and static labels carry alert state over.
    pub fn identity(&self) -> String {
        let mut s = self.spec.name().to_owned();
        for (k, v) in &self.spec.labels {
            s.push('\u{0}');
            s.push_str(k);
            s.push('=');
            s.push_str(v);
        }
        s
    }

    pub fn is_alerting(&self) -> bool {
        matches!(self.spec.kind, RuleKind::Alerting { .. })
    }

    /// Alerts in a stable order (by labels), for APIs and tests.
    pub fn alerts_sorted(&self) -> Vec<&Alert> {
        let mut v: Vec<&Alert> = self.active.values().collect();
        v.sort_by(|a, b| a.labels.cmp(&b.labels));
        v
    }
}

/// A lifecycle transition, for the stages that react to alerts.
#[derive(Clone, Debug, PartialEq)]
pub struct AlertEvent {
    pub at_ms: i64,
    pub group: String,
    pub rule: String,
    /// `pending`, `firing`, `resolved`, or `inactive` (a pending alert whose
    /// condition went away before it fired).
    pub transition: &'static str,
    pub alert: Alert,
}

/// What one evaluation produced besides store writes.
#[derive(Debug, Default)]
pub struct EvalOutcome {
    pub events: Vec<AlertEvent>,
    /// Alerts due for delivery (Prometheus's `sendAlerts`), with the
    /// expression they came from.
    pub to_send: Vec<(String, Alert)>,
    pub samples: usize,
    pub failures: usize,
    /// Whether any alert's persisted state changed.
    pub alerts_changed: bool,
}

/// What a group evaluation needs from the daemon.
pub struct EvalEnv<'a> {
    pub engine: &'a Engine,
    pub store: &'a Store,
    pub external_labels: &'a [(String, String)],
    pub external_url: &'a str,
    pub resend_delay_ms: i64,
}

/// A loaded group with the state of its rules.
#[derive(Debug)]
pub struct Group {
    pub file: String,
    pub name: String,
    pub interval: Duration,
    pub limit: usize,
    pub rules: Vec<Rule>,
    pub last_eval_ms: i64,
    pub last_duration: Duration,
    pub last_samples: usize,
}

impl Group {
    pub fn new(spec: GroupSpec, default_interval: Duration) -> Group {
        Group {
            interval: spec.interval.unwrap_or(default_interval),
            file: spec.file,
            name: spec.name,
            limit: spec.limit,
            rules: spec.rules.into_iter().map(Rule::new).collect(),
            last_eval_ms: 0,
            last_duration: Duration::ZERO,
            last_samples: 0,
        }
    }

    pub fn key(&self) -> String {
        format!("{};{}", self.file, self.name)
    }

    /// Takes over alert state from the same rules of a previous version of
    /// this group (reload), as Prometheus's `CopyState` does.
    pub fn copy_state_from(&mut self, old: &mut Group) {
        let mut by_id: FxHashMap<String, Vec<&mut Rule>> = FxHashMap::default();
        for r in &mut old.rules {
            by_id.entry(r.identity()).or_default().push(r);
        }
        for r in &mut self.rules {
            if let Some(olds) = by_id.get_mut(&r.identity()) {
                if let Some(o) = olds.pop() {
                    r.active = std::mem::take(&mut o.active);
                    r.written = std::mem::take(&mut o.written);
                    r.health = o.health;
                    r.last_error = o.last_error.take();
                    r.last_eval_ms = o.last_eval_ms;
                }
            }
        }
        self.last_eval_ms = old.last_eval_ms;
    }

    /// Marks every series this group wrote stale (the group was removed).
    pub fn mark_stale(&mut self, store: &Store, ts: i64) {
        for r in &mut self.rules {
            for (_, s) in r.written.drain() {
                let _ = store.append(s, ts, stale_nan());
            }
        }
    }

    /// Evaluates every rule at `ts` (ms), in order, so later rules see the
    /// results of earlier ones.
    pub fn eval(&mut self, env: &EvalEnv<'_>, ts: i64) -> EvalOutcome {
        let started = std::time::Instant::now();
        let mut out = EvalOutcome::default();
        let key = self.key();
        let limit = self.limit;
        let interval_ms = self.interval.as_millis() as i64;
        for rule in &mut self.rules {
            let t0 = std::time::Instant::now();
            let result = match &rule.spec.kind {
                RuleKind::Recording { .. } => eval_recording(rule, env, ts, limit),
                RuleKind::Alerting { .. } => eval_alerting(rule, env, ts, limit, &key, &mut out),
            };
            match result {
                Ok(series) => {
                    rule.health = Health::Ok;
                    rule.last_error = None;
                    rule.last_samples = series.len();
                    out.samples += series.len();
                    write_series(rule, env.store, ts, series);
                }
                Err(e) => {
                    rule.health = Health::Err;
                    rule.last_error = Some(e);
                    rule.last_samples = 0;
                    out.failures += 1;
                    // Prometheus keeps the previous series until they go
                    // stale on their own; a failing rule writes nothing.
                }
            }
            if rule.is_alerting() {
                let expr = rule.spec.expr_text.clone();
                let delta = env.resend_delay_ms.max(interval_ms);
                for a in rule.active.values_mut() {
                    if a.needs_sending(ts, env.resend_delay_ms) {
                        a.last_sent_at = Some(ts);
                        a.valid_until = ts + 4 * delta;
                        out.to_send.push((expr.clone(), a.clone()));
                    }
                }
            }
            rule.last_eval_ms = ts;
            rule.last_duration = t0.elapsed();
        }
        self.last_eval_ms = ts;
        self.last_duration = started.elapsed();
        self.last_samples = out.samples;
        out
    }
}

/// Runs a rule's expression; a scalar becomes one sample without labels.
fn query_vector(env: &EvalEnv<'_>, rule: &RuleSpec, ts: i64) -> Result<Vec<(Labels, f64)>, String> {
    let out = env
        .engine
        .instant_expr(env.store, &rule.expr, ts)
        .map_err(|e| e.to_string())?;
    match out.value {
        QueryValue::Vector(v) => Ok(v.into_iter().map(|s| (s.labels, s.v)).collect()),
        QueryValue::Scalar { v, .. } => Ok(vec![(Labels::default(), v)]),
        _ => Err("rule result is not a vector or scalar".into()),
    }
}

fn eval_recording(
    rule: &mut Rule,
    env: &EvalEnv<'_>,
    ts: i64,
    limit: usize,
) -> Result<Vec<(Labels, f64)>, String> {
    let RuleKind::Recording { record } = &rule.spec.kind else {
        return Ok(Vec::new());
    };
    let mut v = query_vector(env, &rule.spec, ts)?;
    for (l, _) in &mut v {
        let mut b = l.builder();
        b.set("__name__", record);
        for (k, val) in &rule.spec.labels {
            b.set(k, val);
        }
        *l = b.build();
    }
    let mut seen = FxHashSet::default();
    if v.iter().any(|(l, _)| !seen.insert(l.fingerprint())) {
        return Err(
            "vector contains metrics with the same labelset after applying rule labels".into(),
        );
    }
    if limit > 0 && v.len() > limit {
        return Err(format!("exceeded limit of {limit} with {} series", v.len()));
    }
    Ok(v)
}

/// Answers `query` in templates from the same store at the same time.
struct EnvQuery<'a, 'b> {
    env: &'a EvalEnv<'b>,
    ts: i64,
}

impl TemplateQuery for EnvQuery<'_, '_> {
    fn query(&self, q: &str) -> Result<Vec<QuerySample>, String> {
        let out = self
            .env
            .engine
            .instant_query(self.env.store, q, self.ts)
            .map_err(|e| e.to_string())?;
        let pairs = |l: &Labels| -> Vec<(String, String)> {
            l.iter()
                .map(|x| (x.name.to_string(), x.value.to_string()))
                .collect()
        };
        match out.value {
            QueryValue::Vector(v) => Ok(v
                .iter()
                .map(|s| QuerySample {
                    labels: pairs(&s.labels),
                    value: s.v,
                })
                .collect()),
            QueryValue::Scalar { v, .. } => Ok(vec![QuerySample {
                labels: Vec::new(),
                value: v,
            }]),
            _ => Err("query result is not a vector or scalar".into()),
        }
    }
}

fn eval_alerting(
    rule: &mut Rule,
    env: &EvalEnv<'_>,
    ts: i64,
    limit: usize,
    group: &str,
    out: &mut EvalOutcome,
) -> Result<Vec<(Labels, f64)>, String> {
    let RuleKind::Alerting {
        alert: name,
        hold,
        keep_firing_for,
        label_templates,
        annotations,
        annotation_templates,
    } = &rule.spec.kind
    else {
        return Ok(Vec::new());
    };
    let hold_ms = hold.as_millis() as i64;
    let keep_ms = keep_firing_for.as_millis() as i64;
    let res = query_vector(env, &rule.spec, ts)?;
    let q = EnvQuery { env, ts };
    let mut fresh: FxHashMap<u64, Alert> = FxHashMap::default();
    for (metric, value) in res {
        let pairs: Vec<(String, String)> = metric
            .iter()
            .filter(|l| &*l.name != "__name__")
            .map(|l| (l.name.to_string(), l.value.to_string()))
            .collect();
        let data = TemplateData {
            labels: &pairs,
            external_labels: env.external_labels,
            external_url: env.external_url,
            value,
        };
        let expand = |t: &super::template::Template| match t.render(&data, &q) {
            Ok(s) => s,
            Err(e) => {
                tracing::warn!(alert = %name, error = %e, "expanding alert template failed");
                format!("<error expanding template: {e}>")
            }
        };
        let mut b = metric.builder();
        b.del("__name__");
        for ((k, _), t) in rule.spec.labels.iter().zip(label_templates) {
            b.set(k, expand(t));
        }
        b.set("alertname", name);
        let labels = b.build();
        let anns: Vec<(String, String)> = annotations
            .iter()
            .zip(annotation_templates)
            .map(|((k, _), t)| (k.clone(), expand(t)))
            .collect();
        let fp = labels.fingerprint();
        if fresh.contains_key(&fp) {
            return Err(
                "vector contains metrics with the same labelset after applying alert labels".into(),
            );
        }
        fresh.insert(
            fp,
            Alert {
                labels,
                annotations: anns,
                state: AlertState::Pending,
                value,
                active_at: ts,
                fired_at: None,
                resolved_at: None,
                last_sent_at: None,
                valid_until: 0,
                keep_firing_since: None,
            },
        );
    }
    let event = |transition: &'static str, a: &Alert| AlertEvent {
        at_ms: ts,
        group: group.to_owned(),
        rule: name.clone(),
        transition,
        alert: a.clone(),
    };
    let result_fps: FxHashSet<u64> = fresh.keys().copied().collect();
    for (fp, a) in fresh {
        match rule.active.get_mut(&fp) {
            Some(old) if old.state != AlertState::Inactive => {
                if old.annotations != a.annotations {
                    out.alerts_changed = true;
                }
                old.value = a.value;
                old.annotations = a.annotations;
            }
            _ => {
                out.events.push(event("pending", &a));
                out.alerts_changed = true;
                rule.active.insert(fp, a);
            }
        }
    }
    let mut series = Vec::new();
    let mut remove = Vec::new();
    let mut active_pending = 0;
    for (fp, a) in rule.active.iter_mut() {
        if !result_fps.contains(fp) {
            let mut keep_firing = false;
            if a.state == AlertState::Firing && keep_ms > 0 {
                let since = *a.keep_firing_since.get_or_insert(ts);
                keep_firing = ts - since < keep_ms;
            }
            if a.state == AlertState::Pending
                || a.resolved_at
                    .is_some_and(|r| ts - r > RESOLVED_RETENTION_MS)
            {
                remove.push(*fp);
            }
            if a.state != AlertState::Inactive && !keep_firing {
                let was = a.state;
                a.state = AlertState::Inactive;
                a.resolved_at = Some(ts);
                out.alerts_changed = true;
                out.events.push(event(
                    if was == AlertState::Firing {
                        "resolved"
                    } else {
                        "inactive"
                    },
                    a,
                ));
            }
            if !keep_firing {
                continue;
            }
        } else {
            a.keep_firing_since = None;
        }
        active_pending += 1;
        if a.state == AlertState::Pending && ts - a.active_at >= hold_ms {
            a.state = AlertState::Firing;
            a.fired_at = Some(ts);
            out.alerts_changed = true;
            out.events.push(event("firing", a));
        }
        series.push((alert_series(&a.labels, "ALERTS", Some(a.state)), 1.0));
        series.push((
            alert_series(&a.labels, "ALERTS_FOR_STATE", None),
            (a.active_at / 1000) as f64,
        ));
    }
    for fp in remove {
        rule.active.remove(&fp);
        out.alerts_changed = true;
    }
    if limit > 0 && active_pending > limit {
        rule.active.clear();
        return Err(format!(
            "exceeded limit of {limit} with {active_pending} alerts"
        ));
    }
    Ok(series)
}

fn alert_series(labels: &Labels, name: &str, state: Option<AlertState>) -> Labels {
    let mut b = labels.builder();
    b.set("__name__", name);
    if let Some(s) = state {
        b.set("alertstate", s.as_str());
    }
    b.build()
}

/// Appends a rule's output at `ts` and marks the series it no longer
/// produces stale, so queries stop seeing them at once (Prometheus).
fn write_series(rule: &mut Rule, store: &Store, ts: i64, series: Vec<(Labels, f64)>) {
    let mut now: FxHashMap<u64, SeriesRef> = FxHashMap::default();
    for (labels, v) in series {
        let fp = labels.fingerprint();
        let r = match rule.written.get(&fp) {
            Some(r) => *r,
            None => match store.get_or_create(&labels) {
                Ok(r) => r,
                Err(e) => {
                    tracing::debug!(error = %e, "rule output not stored");
                    continue;
                }
            },
        };
        match store.append(r, ts, v) {
            Ok(()) => {}
            // Retention removed the series while the rule kept writing it.
            Err(crate::store::AppendError::UnknownSeries) => {
                if let Ok(r2) = store.get_or_create(&labels) {
                    let _ = store.append(r2, ts, v);
                    now.insert(fp, r2);
                }
                continue;
            }
            Err(_) => {}
        }
        now.insert(fp, r);
    }
    for (fp, r) in &rule.written {
        if !now.contains_key(fp) {
            let _ = store.append(*r, ts, stale_nan());
        }
    }
    rule.written = now;
}
