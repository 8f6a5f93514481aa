//! The HTTP stage (axum): `/metrics`, health and readiness, reload, and the
//! Prometheus-compatible API as far as it exists (`/api/v1/targets`,
//! `/api/v1/status/buildinfo`).
//!
//! One state struct of cheap clones, one error type that renders Prometheus's
//! JSON error shape, one file per resource as the API grows. Handlers read the
//! other stages through their handles and never mutate them directly; the only
//! write, reload, goes through the daemon's reload channel. Every request has a
//! timeout and a body limit (layers below).

mod api;
mod breakers;
pub mod hooks;
mod notify;
mod playbooks;
mod query;
mod rules;

use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use axum::extract::State;
use axum::http::{header, StatusCode};
use axum::response::{Html, IntoResponse, Response};
use axum::routing::{get, post};
use axum::Router;
use serde::Deserialize;
use tower_http::limit::RequestBodyLimitLayer;
use tower_http::timeout::TimeoutLayer;
use tower_http::trace::TraceLayer;

use crate::collect::TargetRegistry;
use crate::config::{ByteSize, PromDuration, Validator};
use crate::daemon::ReloadHandle;
use crate::query::Engine;
use crate::rules::RuleManager;
use crate::store::Store;
use crate::telemetry::Telemetry;

/// The HTTP server.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(default)]
pub struct WebConfig {
    /// `host:port` to listen on. Changing it needs a restart.
    pub listen_address: String,
    /// Requests taking longer are answered 408 and dropped.
    pub request_timeout: PromDuration,
    /// Largest request body accepted; larger ones get 413.
    pub max_request_body: ByteSize,
    /// URL under which homeostat is reachable from outside (for links in
    /// notifications); defaults to `http://<listen_address>`.
    pub external_url: Option<String>,
    /// Bearer token required by the API calls that change something
    /// (approve, deny, pause, resume, run, breaker state). Unset: those
    /// calls are accepted only from loopback clients.
    pub admin_token: Option<String>,
}

impl Default for WebConfig {
    fn default() -> Self {
        WebConfig {
            listen_address: "127.0.0.1:9400".into(),
            request_timeout: PromDuration::from_secs(30),
            max_request_body: ByteSize(1 << 20),
            external_url: None,
            admin_token: None,
        }
    }
}

impl WebConfig {
    pub fn validate(&self, path: &str, v: &mut Validator) {
        if self.listen_address.parse::<SocketAddr>().is_err() {
            v.error(
                format!("{path}.listen_address"),
                format!(
                    "{:?} is not an ip:port address (e.g. 127.0.0.1:9400)",
                    self.listen_address
                ),
            );
        }
        if self.request_timeout.0.is_zero() {
            v.error(format!("{path}.request_timeout"), "must be greater than 0");
        }
        if self.max_request_body.0 == 0 {
            v.error(format!("{path}.max_request_body"), "must be greater than 0");
        }
    }

    pub fn external_url(&self) -> String {
        self.external_url
            .clone()
            .unwrap_or_else(|| format!("http://{}", self.listen_address))
    }
}

/// Everything the handlers need; cheap to clone.
#[derive(Clone)]
pub struct AppState {
    pub store: Arc<Store>,
    /// Replaced on reload when `query:` limits change.
    pub engine: Arc<parking_lot::RwLock<Engine>>,
    pub targets: TargetRegistry,
    pub rules: RuleManager,
    pub telemetry: Arc<Telemetry>,
    pub reload: ReloadHandle,
    pub ready: Arc<AtomicBool>,
    pub playbooks: crate::playbooks::PlaybookEngine,
    pub breakers: crate::act::BreakerRegistry,
    pub admin_token: Option<String>,
    pub dispatcher: crate::notify::Dispatcher,
    /// Webhooks in: live `hooks:` config (reloadable) and counters.
    pub hooks: hooks::Hooks,
}

/// Builds the router with its layers.
pub fn router(state: AppState, cfg: &WebConfig) -> Router {
    let timeout: Duration = cfg.request_timeout.0;
    Router::new()
        .route("/", get(index))
        .route("/metrics", get(metrics))
        .route("/-/healthy", get(healthy).head(healthy))
        .route("/-/ready", get(ready).head(ready))
        .route("/-/reload", post(reload).put(reload))
        .merge(api::router())
        .merge(query::router())
        .merge(rules::router())
        .merge(playbooks::router())
        .merge(breakers::router())
        .merge(notify::router())
        .merge(hooks::router())
        .with_state(state)
        .layer(RequestBodyLimitLayer::new(cfg.max_request_body.0 as usize))
        .layer(TimeoutLayer::with_status_code(
            StatusCode::REQUEST_TIMEOUT,
            timeout,
        ))
        .layer(TraceLayer::new_for_http())
}

/// Who is calling an endpoint that changes something: the bearer token
/// when `web.admin_token` is set (constant-time compared), otherwise only
/// loopback clients. The name recorded in the audit log is the caller's
/// `X-Homeostat-User` header (or `api`).
// The refusal is the response itself, as axum handlers return it; boxing
// it would only move the allocation.
#[allow(clippy::result_large_err)]
pub(crate) fn authorize(
    s: &AppState,
    headers: &axum::http::HeaderMap,
    peer: Option<SocketAddr>,
) -> Result<String, Response> {
    let user = headers
        .get("x-homeostat-user")
        .and_then(|v| v.to_str().ok())
        .filter(|u| !u.is_empty() && u.len() <= 128)
        .unwrap_or("api")
        .to_string();
    match &s.admin_token {
        Some(token) => {
            if bearer_is(headers, token) {
                Ok(user)
            } else {
                Err(api_error(
                    StatusCode::UNAUTHORIZED,
                    "unauthorized",
                    "a valid bearer token (web.admin_token) is required",
                ))
            }
        }
        None if peer.is_some_and(|p| p.ip().is_loopback()) => Ok(user),
        None => Err(api_error(
            StatusCode::FORBIDDEN,
            "forbidden",
            "set web.admin_token to allow changes from other hosts",
        )),
    }
}

fn api_error(status: StatusCode, kind: &'static str, msg: &str) -> Response {
    api::ApiError {
        status,
        error_type: kind,
        message: msg.to_string(),
    }
    .into_response()
}

/// The client's address (set by the server's connect info; absent in
/// handler tests without a socket).
pub(crate) fn peer(parts: &axum::http::request::Parts) -> Option<SocketAddr> {
    parts
        .extensions
        .get::<axum::extract::ConnectInfo<SocketAddr>>()
        .map(|c| c.0)
}

/// Whether the request carries `Authorization: Bearer <token>`, compared in
/// constant time.
pub(crate) fn bearer_is(headers: &axum::http::HeaderMap, token: &str) -> bool {
    let given = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .unwrap_or("");
    constant_time_eq(given.as_bytes(), token.as_bytes())
}

/// Compares without an early exit, so timing does not reveal a prefix.
pub(crate) fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    let mut diff = a.len() ^ b.len();
    for i in 0..a.len().max(b.len()) {
        let x = a.get(i).copied().unwrap_or(0);
        let y = b.get(i).copied().unwrap_or(0);
        diff |= usize::from(x ^ y);
    }
    diff == 0
}
async fn index(State(s): State<AppState>) -> Html<String> {
    let (up, down, unknown) = s.targets.count_by_health();
    Html(format!(
        "<!doctype html><meta charset=utf-8><meta name=viewport content='width=device-width'>\
         <title>homeostat</title><h1>homeostat {}</h1>\
         <p>Targets: {up} up, {down} down, {unknown} not yet scraped. Series in memory: {}.</p>\
         <ul><li><a href='/api/v1/targets'>/api/v1/targets</a></li>\
         <li><a href='/api/v1/alerts'>/api/v1/alerts</a></li>\
         <li><a href='/api/v1/rules'>/api/v1/rules</a></li>\
         <li><a href='/metrics'>/metrics</a></li>\
         <li><a href='/api/v1/status/buildinfo'>/api/v1/status/buildinfo</a></li></ul>",
        env!("CARGO_PKG_VERSION"),
        s.store.stats().num_series
    ))
}

async fn metrics(State(s): State<AppState>) -> Response {
    match s.telemetry.encode() {
        Ok(body) => (
            [(
                header::CONTENT_TYPE,
                "application/openmetrics-text; version=1.0.0; charset=utf-8",
            )],
            body,
        )
            .into_response(),
        Err(_) => (StatusCode::INTERNAL_SERVER_ERROR, "metrics encoding failed").into_response(),
    }
}

async fn healthy() -> &'static str {
    "Homeostat is Healthy.\n"
}

async fn ready(State(s): State<AppState>) -> Response {
    if s.ready.load(Ordering::Acquire) {
        (StatusCode::OK, "Homeostat is Ready.\n").into_response()
    } else {
        (StatusCode::SERVICE_UNAVAILABLE, "Service Unavailable\n").into_response()
    }
}

async fn reload(State(s): State<AppState>) -> Response {
    match s.reload.reload("api").await {
        Ok(()) => (StatusCode::OK, "").into_response(),
        // Prometheus answers 500 with the reason; keep that contract.
        Err(e) => (
            StatusCode::INTERNAL_SERVER_ERROR,
            format!("failed to reload config: {e}\n"),
        )
            .into_response(),
    }
}

#[cfg(test)]
mod tests;
