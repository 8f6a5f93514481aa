//! `/api/v1/autoscalers` and `/api/v1/forecasts`: what each autoscaler and
//! forecast last decided and predicted, for the dashboard and for scripts.
//!
//! Read-only views of the runners' in-memory state; the series themselves
//! (`homeostat_forecast`, `homeostat_autoscale_*`) are in the store.

use axum::extract::State;
use axum::response::Response;
use axum::routing::get;
use axum::Router;
use serde_json::json;

use super::api::success;
use super::AppState;

pub fn router() -> Router<AppState> {
    Router::new()
        .route("/api/v1/autoscalers", get(autoscalers))
        .route("/api/v1/forecasts", get(forecasts))
}

async fn autoscalers(State(s): State<AppState>) -> Response {
    let list = s
        .autoscalers
        .as_ref()
        .map(|a| a.snapshot())
        .unwrap_or_default();
    success(json!({ "autoscalers": list }))
}

async fn forecasts(State(s): State<AppState>) -> Response {
    let list = s
        .forecasts
        .as_ref()
        .map(|f| f.snapshot())
        .unwrap_or_default();
    success(json!({ "forecasts": list }))
}
