//! `/api/v1/rules` and `/api/v1/alerts` in Prometheus 2.42's JSON shapes,
//! so Grafana's alerting view and Alertmanager tooling read them unchanged.
//!
//! Reads rule groups through the rule manager's handles (a short lock per
//! group); never changes rule state.

use std::collections::BTreeMap;

use axum::extract::{Query, State};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::Router;
use serde::Deserialize;
use serde_json::{json, Value};

use super::api::{success, ApiError};
use super::AppState;
use crate::notify::alertmanager::rfc3339_ms;
use crate::rules::file::RuleKind;
use crate::rules::group::{Alert, AlertState, Rule};

pub fn router() -> Router<AppState> {
    Router::new()
        .route("/api/v1/rules", get(rules))
        .route("/api/v1/alerts", get(alerts))
}

fn pairs_json<'a>(it: impl Iterator<Item = (&'a str, &'a str)>) -> Value {
    Value::Object(
        it.map(|(k, v)| (k.to_owned(), Value::String(v.to_owned())))
            .collect(),
    )
}

/// Go's `strconv.FormatFloat(v, 'e', -1, 64)`, which the alerts API uses
/// for `value`.
fn go_float_e_lower(v: f64) -> String {
    crate::rules::unittest::go_float_e(v).replace('E', "e")
}

fn alert_json(a: &Alert) -> Value {
    let mut v = json!({
        "labels": pairs_json(a.labels.iter().map(|l| (&*l.name, &*l.value))),
        "annotations": pairs_json(a.annotations.iter().map(|(k, v)| (k.as_str(), v.as_str()))),
        "state": a.state.as_str(),
        "activeAt": rfc3339_ms(a.active_at),
        "value": go_float_e_lower(a.value),
    });
    if let Some(k) = a.keep_firing_since {
        v["keepFiringSince"] = json!(rfc3339_ms(k));
    }
    v
}

/// Active alerts counted by `severity` label and by dashboard target group;
/// silenced and inhibited ones only in `suppressed`.
#[derive(Default)]
pub(super) struct AlertCounts {
    pub by_severity: BTreeMap<String, u64>,
    pub by_group: BTreeMap<&'static str, u64>,
    /// Silenced or inhibited (kept out of the two maps).
    pub suppressed: u64,
}

/// (firing, pending) counts. An alert belongs to the group of the targets of
/// its `job` label, else to the group its name starts with (the bundled rules'
/// `Gpu…`, `Postgres…`, `Redis…`, `Vllm…` names).
pub(super) fn alert_counts(s: &AppState) -> (AlertCounts, AlertCounts) {
    // Silenced or inhibited in the router: counted apart, since someone is on them.
    let muted: std::collections::HashSet<BTreeMap<String, String>> = s
        .dispatcher
        .alerts_json(crate::collect::now_ms())
        .iter()
        .filter(|x| x["status"]["state"] == "suppressed")
        .filter_map(|x| serde_json::from_value(x["labels"].clone()).ok())
        .collect();
    let job_group: BTreeMap<String, &'static str> = s
        .targets
        .snapshot()
        .iter()
        .map(|t| (t.scrape_pool.clone(), t.group()))
        .collect();
    let (mut firing, mut pending) = (AlertCounts::default(), AlertCounts::default());
    for t in s.rules.groups() {
        let g = t.group.lock();
        for r in &g.rules {
            for a in active(r) {
                let get = |n: &str| {
                    a.labels
                        .iter()
                        .find(|l| &*l.name == n)
                        .map(|l| l.value.to_string())
                };
                let labels: BTreeMap<String, String> = a
                    .labels
                    .iter()
                    .map(|l| (l.name.to_string(), l.value.to_string()))
                    .collect();
                if muted.contains(&labels) {
                    firing.suppressed += 1;
                    continue;
                }
                let c = if a.state == AlertState::Firing {
                    &mut firing
                } else {
                    &mut pending
                };
                let sev = get("severity").unwrap_or_else(|| "none".into());
                *c.by_severity.entry(sev).or_default() += 1;
                let group = get("job")
                    .and_then(|j| job_group.get(&j).copied())
                    .unwrap_or_else(|| group_by_name(&get("alertname").unwrap_or_default()));
                *c.by_group.entry(group).or_default() += 1;
            }
        }
    }
    (firing, pending)
}

fn group_by_name(alertname: &str) -> &'static str {
    let n = alertname.to_ascii_lowercase();
    for (prefix, group) in [
        ("gpu", "gpu"),
        ("dcgm", "gpu"),
        ("postgres", "postgres"),
        ("pg", "postgres"),
        ("pgbouncer", "postgres"),
        ("redis", "redis"),
        ("vllm", "inference"),
        ("tgi", "inference"),
        ("triton", "inference"),
        ("inference", "inference"),
        ("container", "containers"),
        ("azure", "containers"),
        ("probe", "probes"),
    ] {
        if n.starts_with(prefix) {
            return group;
        }
    }
    "other"
}

fn active(r: &Rule) -> impl Iterator<Item = &Alert> {
    r.alerts_sorted()
        .into_iter()
        .filter(|a| a.state != AlertState::Inactive)
}

fn last_eval(ms: i64) -> String {
    if ms == 0 {
        "0001-01-01T00:00:00Z".into()
    } else {
        rfc3339_ms(ms)
    }
}

fn rule_json(r: &Rule) -> Value {
    let labels = pairs_json(r.spec.labels.iter().map(|(k, v)| (k.as_str(), v.as_str())));
    let common = |mut v: Value| {
        v["name"] = json!(r.spec.name());
        v["query"] = json!(r.spec.expr.to_query_string());
        v["labels"] = labels.clone();
        v["health"] = json!(r.health.as_str());
        v["lastError"] = json!(r.last_error.clone().unwrap_or_default());
        v["evaluationTime"] = json!(r.last_duration.as_secs_f64());
        v["lastEvaluation"] = json!(last_eval(r.last_eval_ms));
        v
    };
    match &r.spec.kind {
        RuleKind::Recording { .. } => common(json!({"type": "recording"})),
        RuleKind::Alerting {
            hold,
            keep_firing_for,
            annotations,
            ..
        } => {
            let alerts: Vec<&Alert> = active(r).collect();
            let state = if alerts.iter().any(|a| a.state == AlertState::Firing) {
                "firing"
            } else if alerts.is_empty() {
                "inactive"
            } else {
                "pending"
            };
            common(json!({
                "type": "alerting",
                "state": state,
                "duration": hold.as_secs_f64(),
                "keepFiringFor": keep_firing_for.as_secs_f64(),
                "annotations": pairs_json(annotations.iter().map(|(k, v)| (k.as_str(), v.as_str()))),
                "alerts": alerts.into_iter().map(alert_json).collect::<Vec<_>>(),
            }))
        }
    }
}

#[derive(Deserialize)]
struct RulesQuery {
    #[serde(rename = "type")]
    kind: Option<String>,
}

async fn rules(State(s): State<AppState>, Query(q): Query<RulesQuery>) -> Response {
    let (want_alert, want_record) = match q.kind.as_deref() {
        None | Some("") => (true, true),
        Some("alert") => (true, false),
        Some("record") => (false, true),
        Some(other) => {
            return ApiError::bad_data(format!("invalid type {other:?}: use alert or record"))
                .into_response()
        }
    };
    let mut groups = Vec::new();
    for t in s.rules.groups() {
        let g = t.group.lock();
        let rules: Vec<Value> = g
            .rules
            .iter()
            .filter(|r| {
                if r.is_alerting() {
                    want_alert
                } else {
                    want_record
                }
            })
            .map(rule_json)
            .collect();
        // Prometheus leaves out groups the filter emptied.
        if rules.is_empty() && !g.rules.is_empty() {
            continue;
        }
        groups.push(json!({
            "name": g.name,
            "file": g.file,
            "rules": rules,
            "interval": g.interval.as_secs_f64(),
            "limit": g.limit,
            "evaluationTime": g.last_duration.as_secs_f64(),
            "lastEvaluation": last_eval(g.last_eval_ms),
        }));
    }
    success(json!({ "groups": groups }))
}

async fn alerts(State(s): State<AppState>) -> Response {
    let mut out = Vec::new();
    for t in s.rules.groups() {
        let g = t.group.lock();
        for r in &g.rules {
            out.extend(active(r).map(alert_json));
        }
    }
    success(json!({ "alerts": out }))
}
