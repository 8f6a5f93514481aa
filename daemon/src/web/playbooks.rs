//! Playbooks, runs, approvals, pause switches and the audit log over HTTP,
//! plus `/hooks/playbooks/<name>` for playbooks triggered by a webhook.
//!
//! Handlers call the playbook engine; every change needs [`authorize`] and
//! is recorded by the engine with who asked.

use std::collections::BTreeMap;

use axum::extract::{Path, Query, State};
use axum::http::request::Parts;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use serde::Deserialize;
use serde_json::{json, Value};

use super::api::{success, ApiError};
use super::{authorize, bearer_is, peer, AppState};
use crate::playbooks::file::Trigger;
use crate::playbooks::{EngineError, TriggerRequest};
use crate::state::RunFilter;

pub fn router() -> Router<AppState> {
    Router::new()
        .route("/api/v1/playbooks", get(list))
        .route("/api/v1/playbooks/{name}/run", post(run))
        .route("/api/v1/playbooks/{name}/pause", post(pause_one))
        .route("/api/v1/playbooks/{name}/resume", post(resume_one))
        .route("/api/v1/pause", post(pause_all))
        .route("/api/v1/resume", post(resume_all))
        .route("/api/v1/runs", get(runs))
        .route("/api/v1/runs/{id}", get(run_detail))
        .route("/api/v1/runs/{id}/approve", post(approve))
        .route("/api/v1/runs/{id}/deny", post(deny))
        .route("/api/v1/audit", get(audit))
        .route("/hooks/playbooks/{name}", post(hook))
}

fn engine_error(e: EngineError) -> Response {
    let (status, kind) = match &e {
        EngineError::UnknownPlaybook(_) | EngineError::UnknownRun(_) => {
            (StatusCode::NOT_FOUND, "not_found")
        }
        EngineError::BadRequest(_) => (StatusCode::BAD_REQUEST, "bad_data"),
        EngineError::Conflict(_) => (StatusCode::CONFLICT, "conflict"),
        EngineError::State(_) => (StatusCode::INTERNAL_SERVER_ERROR, "internal"),
    };
    ApiError {
        status,
        error_type: kind,
        message: e.to_string(),
    }
    .into_response()
}

async fn list(State(s): State<AppState>) -> Response {
    let out: Vec<Value> = s
        .playbooks
        .playbooks()
        .iter()
        .map(|p| {
            let trigger = match &p.trigger {
                Trigger::Alert {
                    name, on_resolved, ..
                } => json!({"kind": "alert", "alert": name, "matchers": p.spec.trigger.matchers,
                    "on": if *on_resolved { "resolved" } else { "firing" }}),
                Trigger::Condition { expr, hold, .. } => json!({"kind": if p.forecast.is_some() { "forecast" } else { "condition" },
                    "expr": expr, "for_seconds": hold.as_secs_f64()}),
                Trigger::Schedule { every } => json!({"kind": "schedule", "every_seconds": every.as_secs_f64()}),
                Trigger::Webhook { .. } => json!({"kind": "webhook", "url": format!("/hooks/playbooks/{}", p.spec.name)}),
                Trigger::Manual => json!({"kind": "manual"}),
            };
            let g = &p.spec.guards;
            json!({
                "name": p.spec.name,
                "description": p.spec.description,
                "file": p.file.display().to_string(),
                "trigger": trigger,
                "target": p.spec.target,
                "steps": p.spec.steps.iter().map(|s| json!({"name": s.name, "action": s.action})).collect::<Vec<_>>(),
                "rollback": p.spec.on_failure.rollback.iter().map(|s| json!({"name": s.name, "action": s.action})).collect::<Vec<_>>(),
                "verify": p.spec.verify.as_ref().map(|v| json!({"expr": v.expr, "within_seconds": v.within.0.as_secs_f64()})),
                "guards": {
                    "cooldown_seconds": g.cooldown.0.as_secs_f64(),
                    "max_runs": g.max_runs,
                    "window_seconds": g.window.0.as_secs_f64(),
                    "approval": g.approval.as_ref().map(|a| json!({"timeout_seconds": a.timeout.0.as_secs_f64()})),
                    "dry_run": g.dry_run,
                },
                "paused": s.playbooks.is_paused(Some(&p.spec.name)),
                "breaker_open_since_ms": s.playbooks.breaker_tripped_at(&p.spec.name),
            })
        })
        .collect();
    success(json!({ "paused": s.playbooks.is_paused(None), "playbooks": out }))
}

#[derive(Deserialize, Default)]
#[serde(default, deny_unknown_fields)]
struct RunBody {
    target: Option<String>,
    labels: BTreeMap<String, String>,
    value: f64,
    dry_run: bool,
}

async fn run(
    State(s): State<AppState>,
    Path(name): Path<String>,
    parts: Parts,
    body: Option<Json<RunBody>>,
) -> Response {
    let who = match authorize(&s, &parts) {
        Ok(w) => w,
        Err(r) => return r,
    };
    let b = body.map(|Json(b)| b).unwrap_or_default();
    let req = TriggerRequest {
        playbook: name,
        target: b.target,
        labels: b.labels.into_iter().collect(),
        value: b.value,
        kind: "manual".into(),
        detail: json!({ "by": who }),
        dry_run: b.dry_run,
        requested_by: who,
    };
    match s.playbooks.trigger(req).await {
        Ok(r) => success(r),
        Err(e) => engine_error(e),
    }
}

async fn pause_one(State(s): State<AppState>, Path(name): Path<String>, parts: Parts) -> Response {
    switch(s, Some(name), parts, true).await
}

async fn resume_one(State(s): State<AppState>, Path(name): Path<String>, parts: Parts) -> Response {
    switch(s, Some(name), parts, false).await
}

async fn pause_all(State(s): State<AppState>, parts: Parts) -> Response {
    switch(s, None, parts, true).await
}

async fn resume_all(State(s): State<AppState>, parts: Parts) -> Response {
    switch(s, None, parts, false).await
}

async fn switch(s: AppState, name: Option<String>, parts: Parts, pause: bool) -> Response {
    let who = match authorize(&s, &parts) {
        Ok(w) => w,
        Err(r) => return r,
    };
    let r = if pause {
        s.playbooks.pause(name.as_deref(), &who).await
    } else {
        s.playbooks.resume_runs(name.as_deref(), &who).await
    };
    match r {
        Ok(()) => success(json!({ "playbook": name, "paused": pause })),
        Err(e) => engine_error(e),
    }
}

#[derive(Deserialize, Default)]
#[serde(default)]
struct RunsQuery {
    playbook: Option<String>,
    target: Option<String>,
    state: Option<String>,
    limit: Option<i64>,
}

async fn runs(State(s): State<AppState>, Query(q): Query<RunsQuery>) -> Response {
    let f = RunFilter {
        playbook: q.playbook,
        target: q.target,
        states: q
            .state
            .map(|s| s.split(',').map(str::to_string).collect())
            .unwrap_or_default(),
        limit: q.limit.unwrap_or(100).clamp(1, 1000),
    };
    match s.playbooks.runs(&f).await {
        Ok(r) => success(r),
        Err(e) => engine_error(e.into()),
    }
}

async fn run_detail(State(s): State<AppState>, Path(id): Path<String>) -> Response {
    match s.playbooks.run_with_steps(&id).await {
        Ok(Some((run, steps))) => {
            let audit = s
                .playbooks
                .state_db()
                .recent_audit(&format!("run/{id}"), 100)
                .await
                .unwrap_or_default();
            let mut v = serde_json::to_value(run).unwrap_or(Value::Null);
            v["steps"] = json!(steps);
            v["audit"] = json!(audit);
            success(v)
        }
        Ok(None) => engine_error(EngineError::UnknownRun(id)),
        Err(e) => engine_error(e.into()),
    }
}

async fn approve(State(s): State<AppState>, Path(id): Path<String>, parts: Parts) -> Response {
    decide(s, id, parts, true).await
}

async fn deny(State(s): State<AppState>, Path(id): Path<String>, parts: Parts) -> Response {
    decide(s, id, parts, false).await
}

async fn decide(s: AppState, id: String, parts: Parts, approve: bool) -> Response {
    let who = match authorize(&s, &parts) {
        Ok(w) => w,
        Err(r) => return r,
    };
    match s.playbooks.decide(&id, approve, &who).await {
        Ok(r) => success(r),
        Err(e) => engine_error(e),
    }
}

#[derive(Deserialize, Default)]
#[serde(default)]
struct AuditQuery {
    subject: String,
    limit: Option<i64>,
}

async fn audit(State(s): State<AppState>, Query(q): Query<AuditQuery>) -> Response {
    match s
        .playbooks
        .state_db()
        .recent_audit(&q.subject, q.limit.unwrap_or(100).clamp(1, 1000))
        .await
    {
        Ok(a) => success(a),
        Err(e) => engine_error(e.into()),
    }
}

#[derive(Deserialize, Default)]
#[serde(default, deny_unknown_fields)]
struct HookBody {
    labels: BTreeMap<String, String>,
    value: f64,
}

/// A webhook-triggered playbook: `Authorization: Bearer <trigger.webhook.token>`.
async fn hook(
    State(s): State<AppState>,
    Path(name): Path<String>,
    parts: Parts,
    body: Option<Json<HookBody>>,
) -> Response {
    let Some(pb) = s.playbooks.playbook(&name) else {
        return engine_error(EngineError::UnknownPlaybook(name));
    };
    let Trigger::Webhook { token } = &pb.trigger else {
        return ApiError {
            status: StatusCode::NOT_FOUND,
            error_type: "not_found",
            message: format!("playbook {name} is not triggered by a webhook"),
        }
        .into_response();
    };
    if !bearer_is(&parts.headers, token) {
        return ApiError {
            status: StatusCode::UNAUTHORIZED,
            error_type: "unauthorized",
            message: "missing or wrong bearer token".into(),
        }
        .into_response();
    }
    let b = body.map(|Json(b)| b).unwrap_or_default();
    let req = TriggerRequest {
        playbook: name,
        target: None,
        labels: b.labels.into_iter().collect(),
        value: b.value,
        kind: "webhook".into(),
        detail: json!({ "remote": peer(&parts).map(|p| p.to_string()) }),
        dry_run: false,
        requested_by: "webhook".into(),
    };
    match s.playbooks.trigger(req).await {
        Ok(r) => (
            StatusCode::ACCEPTED,
            Json(json!({"status": "success", "data": r})),
        )
            .into_response(),
        Err(e) => engine_error(e),
    }
}
