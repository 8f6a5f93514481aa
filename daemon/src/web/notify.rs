//! Alertmanager's API v2 on homeostat's own router: `POST/GET
//! /api/v2/alerts` and silences (`/api/v2/silences`, `/api/v2/silence/{id}`),
//! in Alertmanager's JSON shapes, so Prometheus can send here and `amtool`
//! habits and scripts carry over. Changes (posting alerts, silences)
//! need the admin token or a loopback client, like every other change.

use axum::extract::{Path, State};
use axum::http::request::Parts;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::{delete, get};
use axum::{Json, Router};
use serde_json::json;

use super::{authorize, AppState};
use crate::collect::now_ms;
use crate::notify::dispatch::PostableAlert;
use crate::notify::silence::{PostableSilence, SilenceError};

pub fn router() -> Router<AppState> {
    Router::new()
        .route("/api/v2/alerts", get(list_alerts).post(post_alerts))
        .route("/api/v2/silences", get(list_silences).post(post_silence))
        .route(
            "/api/v2/silence/{id}",
            get(get_silence).delete(expire_silence),
        )
        .route("/api/v2/silence/{id}/", delete(expire_silence))
}

/// Alertmanager answers errors as a bare JSON string.
fn error(status: StatusCode, msg: impl Into<String>) -> Response {
    (status, Json(json!(msg.into()))).into_response()
}

async fn list_alerts(State(s): State<AppState>) -> Response {
    Json(s.dispatcher.alerts_json(now_ms())).into_response()
}

async fn post_alerts(State(s): State<AppState>, parts: Parts, body: axum::body::Bytes) -> Response {
    if let Err(r) = authorize(&s, &parts) {
        return r;
    }
    let alerts: Vec<PostableAlert> = match serde_json::from_slice(&body) {
        Ok(a) => a,
        Err(e) => return error(StatusCode::BAD_REQUEST, format!("invalid alerts: {e}")),
    };
    let now = now_ms();
    let rt = s.dispatcher.resolve_timeout();
    let mut ok = Vec::with_capacity(alerts.len());
    let mut errs = Vec::new();
    for (i, a) in alerts.into_iter().enumerate() {
        match a.into_alert(now, rt) {
            Ok(a) => ok.push(a),
            Err(e) => errs.push(format!("alert {i}: {e}")),
        }
    }
    // Alertmanager keeps the valid ones and reports the rest.
    s.dispatcher.put(ok, now);
    if errs.is_empty() {
        StatusCode::OK.into_response()
    } else {
        error(StatusCode::BAD_REQUEST, errs.join("; "))
    }
}

async fn list_silences(State(s): State<AppState>) -> Response {
    let now = now_ms();
    let mut list = s.dispatcher.silences().list();
    // Active first, then pending, then expired; newest first within each.
    let rank = |st: &str| match st {
        "active" => 0,
        "pending" => 1,
        _ => 2,
    };
    list.sort_by_key(|x| (rank(x.state(now)), -x.updated_at_ms));
    Json(list.iter().map(|x| x.to_json(now)).collect::<Vec<_>>()).into_response()
}

async fn get_silence(State(s): State<AppState>, Path(id): Path<String>) -> Response {
    match s.dispatcher.silences().get(&id) {
        Some(x) => Json(x.to_json(now_ms())).into_response(),
        None => error(StatusCode::NOT_FOUND, format!("silence {id} not found")),
    }
}

/// A silence change in the audit log; a failure to write it is logged, the
/// change itself already happened.
async fn audit(s: &AppState, user: &str, action: &str, id: &str, detail: &str) {
    let r = s
        .playbooks
        .state_db()
        .audit(now_ms(), user, action, &format!("silence/{id}"), detail)
        .await;
    if let Err(e) = r {
        tracing::warn!(error = %e, action, "cannot write the audit log");
    }
}

fn silence_error(e: SilenceError) -> Response {
    let status = match &e {
        SilenceError::Invalid(_) | SilenceError::Expired(_) => StatusCode::BAD_REQUEST,
        SilenceError::NotFound(_) => StatusCode::NOT_FOUND,
        SilenceError::State(_) => StatusCode::INTERNAL_SERVER_ERROR,
    };
    error(status, e.to_string())
}

async fn post_silence(
    State(s): State<AppState>,
    parts: Parts,
    body: axum::body::Bytes,
) -> Response {
    let user = match authorize(&s, &parts) {
        Ok(u) => u,
        Err(r) => return r,
    };
    let p: PostableSilence = match serde_json::from_slice(&body) {
        Ok(p) => p,
        Err(e) => return error(StatusCode::BAD_REQUEST, format!("invalid silence: {e}")),
    };
    let summary = format!("{} ({})", p.comment, p.created_by);
    match s.dispatcher.silences().upsert(p, now_ms()).await {
        Ok(id) => {
            audit(&s, &user, "silence.create", &id, &summary).await;
            Json(json!({"silenceID": id})).into_response()
        }
        Err(e) => silence_error(e),
    }
}

async fn expire_silence(
    State(s): State<AppState>,
    Path(id): Path<String>,
    parts: Parts,
) -> Response {
    let user = match authorize(&s, &parts) {
        Ok(u) => u,
        Err(r) => return r,
    };
    match s.dispatcher.silences().expire(&id, now_ms()).await {
        Ok(()) => {
            audit(&s, &user, "silence.expire", &id, "").await;
            StatusCode::OK.into_response()
        }
        Err(e) => silence_error(e),
    }
}
