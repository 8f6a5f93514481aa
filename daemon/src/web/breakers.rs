//! Circuit breakers over HTTP for the platform's applications: a cheap,
//! cacheable read (`ETag`, `Cache-Control: max-age=1`, `304` on
//! `If-None-Match`), outcome reports, and a manual state change.

use axum::extract::{Path, State};
use axum::http::request::Parts;
use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use serde::Deserialize;
use serde_json::json;

use super::api::{success, ApiError};
use super::{authorize, bearer_is, AppState};
use crate::act::breaker::{BreakerView, State as BState};

pub fn router() -> Router<AppState> {
    Router::new()
        .route("/api/v1/breakers", get(list))
        .route("/api/v1/breakers/{name}", get(one))
        .route("/api/v1/breakers/{name}/report", post(report))
        .route("/api/v1/breakers/{name}/state", post(set_state))
        .route("/api/v1/breakers/{name}/transitions", get(transitions))
}

fn unknown(name: &str) -> Response {
    ApiError {
        status: StatusCode::NOT_FOUND,
        error_type: "not_found",
        message: format!("no breaker named {name:?}"),
    }
    .into_response()
}

fn etag(v: &BreakerView) -> String {
    format!(
        "\"{}-{}-{}-{}\"",
        v.state.as_str(),
        v.since_ms,
        v.failures,
        v.trials_left
    )
}

async fn list(State(s): State<AppState>) -> Response {
    success(s.breakers.list())
}

async fn one(State(s): State<AppState>, Path(name): Path<String>, parts: Parts) -> Response {
    let Some(v) = s.breakers.get(&name) else {
        return unknown(&name);
    };
    let tag = etag(&v);
    let matches = parts
        .headers
        .get(header::IF_NONE_MATCH)
        .and_then(|h| h.to_str().ok())
        .is_some_and(|h| h.split(',').any(|t| t.trim() == tag));
    let mut r = if matches {
        StatusCode::NOT_MODIFIED.into_response()
    } else {
        success(&v)
    };
    let h = r.headers_mut();
    if let Ok(t) = HeaderValue::from_str(&tag) {
        h.insert(header::ETAG, t);
    }
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static("max-age=1"));
    r
}

#[derive(Deserialize, Default)]
#[serde(default, deny_unknown_fields)]
struct ReportBody {
    /// `success` or `failure`: one outcome.
    outcome: Option<String>,
    /// Or counts, for a client that batches.
    success: u32,
    failure: u32,
}

async fn report(
    State(s): State<AppState>,
    Path(name): Path<String>,
    parts: Parts,
    Json(b): Json<ReportBody>,
) -> Response {
    if let Some(token) = s.breakers.report_token() {
        if !bearer_is(&parts.headers, &token) {
            return ApiError {
                status: StatusCode::UNAUTHORIZED,
                error_type: "unauthorized",
                message: "a valid bearer token (breakers.report_token) is required".into(),
            }
            .into_response();
        }
    }
    let (mut ok, mut bad) = (b.success, b.failure);
    match b.outcome.as_deref() {
        Some("success") => ok += 1,
        Some("failure") => bad += 1,
        Some(o) => {
            return ApiError::bad_data(format!("outcome {o:?}: use success or failure"))
                .into_response()
        }
        None => {}
    }
    if ok == 0 && bad == 0 {
        return ApiError::bad_data("report an outcome, or success/failure counts").into_response();
    }
    match s.breakers.report(&name, ok, bad) {
        Ok(v) => success(v),
        Err(_) => unknown(&name),
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct StateBody {
    state: String,
}

async fn set_state(
    State(s): State<AppState>,
    Path(name): Path<String>,
    parts: Parts,
    Json(b): Json<StateBody>,
) -> Response {
    let who = match authorize(&s, &parts) {
        Ok(w) => w,
        Err(r) => return r,
    };
    let Some(to) = BState::parse(&b.state) else {
        return ApiError::bad_data("state must be open, half_open or closed").into_response();
    };
    match s.breakers.set(&name, to, &who) {
        Ok(v) => {
            let _ = s
                .playbooks
                .state_db()
                .audit(
                    crate::collect::now_ms(),
                    &who,
                    "breaker.set",
                    &format!("breaker/{name}"),
                    to.as_str(),
                )
                .await;
            success(v)
        }
        Err(_) => unknown(&name),
    }
}

async fn transitions(State(s): State<AppState>, Path(name): Path<String>) -> Response {
    if s.breakers.get(&name).is_none() {
        return unknown(&name);
    }
    match s.playbooks.state_db().breaker_transitions(&name, 100).await {
        Ok(t) => success(json!(t)),
        Err(e) => ApiError {
            status: StatusCode::INTERNAL_SERVER_ERROR,
            error_type: "internal",
            message: e.to_string(),
        }
        .into_response(),
    }
}
