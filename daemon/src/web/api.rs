//! `/api/v1/*` handlers in Prometheus's JSON shapes, so Grafana and existing
//! tooling read them unchanged. Grows with the query issue (`query`,
//! `query_range`, `series`, …).

use std::collections::BTreeMap;

use axum::extract::{Query, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router};
use serde::{Deserialize, Serialize};
use serde_json::json;

use super::AppState;
use crate::collect::TargetHealth;
use crate::config::units::format_duration;

pub fn router() -> Router<AppState> {
    Router::new()
        .route("/api/v1/targets", get(targets))
        .route("/api/v1/status/buildinfo", get(buildinfo))
}

/// Prometheus's API error envelope.
#[derive(Debug)]
pub struct ApiError {
    pub status: StatusCode,
    pub error_type: &'static str,
    pub message: String,
}

impl ApiError {
    pub fn bad_data(message: impl Into<String>) -> Self {
        ApiError {
            status: StatusCode::BAD_REQUEST,
            error_type: "bad_data",
            message: message.into(),
        }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        (
            self.status,
            Json(json!({"status": "error", "errorType": self.error_type, "error": self.message})),
        )
            .into_response()
    }
}

pub(super) fn success<T: Serialize>(data: T) -> Response {
    Json(json!({"status": "success", "data": data})).into_response()
}

#[derive(Deserialize)]
pub struct TargetsQuery {
    state: Option<String>,
    #[serde(rename = "scrapePool")]
    scrape_pool: Option<String>,
}

/// Go's zero time, which Prometheus reports for never-scraped targets.
const ZERO_TIME: &str = "0001-01-01T00:00:00Z";

fn target_json(t: &TargetHealth) -> serde_json::Value {
    let map = |ls: &[(String, String)]| ls.iter().cloned().collect::<BTreeMap<_, _>>();
    let last = t
        .last_scrape
        .map(|ts| humantime::format_rfc3339_nanos(ts).to_string())
        .unwrap_or_else(|| ZERO_TIME.to_string());
    json!({
        "discoveredLabels": map(&t.discovered_labels),
        "labels": map(&t.labels),
        "scrapePool": t.scrape_pool,
        "scrapeUrl": t.scrape_url,
        "globalUrl": t.scrape_url,
        "lastError": t.last_error,
        "lastScrape": last,
        "lastScrapeDuration": t.last_scrape_duration.as_secs_f64(),
        "health": t.health.as_str(),
        "scrapeInterval": format_duration(t.interval),
        "scrapeTimeout": format_duration(t.timeout),
    })
}

async fn targets(State(s): State<AppState>, Query(q): Query<TargetsQuery>) -> Response {
    let state = q.state.as_deref().unwrap_or("any");
    if !matches!(state, "any" | "active" | "dropped") {
        return ApiError::bad_data(format!(
            "invalid state {state:?}: use active, dropped or any"
        ))
        .into_response();
    }
    let active: Vec<_> = if state == "dropped" {
        Vec::new()
    } else {
        s.targets
            .snapshot()
            .iter()
            .filter(|t| q.scrape_pool.as_deref().is_none_or(|p| p == t.scrape_pool))
            .map(target_json)
            .collect()
    };
    // Targets are never dropped before scraping: target relabeling
    // (relabel_configs) is not supported, so the list is always empty.
    success(json!({"activeTargets": active, "droppedTargets": []}))
}

async fn buildinfo() -> Response {
    success(json!({
        "version": env!("CARGO_PKG_VERSION"),
        "revision": crate::BUILD_REVISION,
        "branch": "",
        "buildUser": "",
        "buildDate": "",
        // The key Grafana reads; the value is honest about the toolchain.
        "goVersion": crate::RUSTC_VERSION,
    }))
}
