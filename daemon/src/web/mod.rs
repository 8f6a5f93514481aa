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
pub mod auth;
mod autoscale;
mod breakers;
pub mod hooks;
mod notify;
mod playbooks;
mod query;
mod rules;
mod ui;

use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use axum::extract::State;
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
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
    /// (approve, deny, pause, resume, run, breaker state). Unset, and with no
    /// `auth` users or tokens: those calls are accepted only from loopback
    /// clients.
    pub admin_token: Option<String>,
    /// Dashboard users, API tokens with roles, and who may read without
    /// credentials (see [`auth`]).
    pub auth: auth::AuthConfig,
}

impl Default for WebConfig {
    fn default() -> Self {
        WebConfig {
            listen_address: "127.0.0.1:9400".into(),
            request_timeout: PromDuration::from_secs(30),
            max_request_body: ByteSize(1 << 20),
            external_url: None,
            admin_token: None,
            auth: auth::AuthConfig::default(),
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
        if self
            .admin_token
            .as_deref()
            .is_some_and(|t| t.trim().is_empty())
        {
            // An empty token would match an empty `Authorization: Bearer `.
            v.error(
                format!("{path}.admin_token"),
                "must not be empty (unset it to allow changes from loopback only)",
            );
        }
        self.auth.validate(&format!("{path}.auth"), v);
        let no_credentials =
            self.admin_token.is_none() && self.auth.users.is_empty() && self.auth.tokens.is_empty();
        if no_credentials && self.auth.anonymous_read == auth::AnonymousRead::None {
            v.error(
                format!("{path}.auth.anonymous_read"),
                "is none but no users, tokens or admin_token are configured: nobody could read",
            );
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
    /// Credentials, roles and dashboard sessions (reloadable).
    pub auth: auth::Auth,
    /// What the forecasts and autoscalers last did, for the API and dashboard.
    pub forecasts: Option<crate::forecast::Forecasts>,
    pub autoscalers: Option<crate::autoscale::runner::Autoscalers>,
    pub dispatcher: crate::notify::Dispatcher,
    /// Webhooks in: live `hooks:` config (reloadable) and counters.
    pub hooks: hooks::Hooks,
}

/// Builds the router with its layers.
pub fn router(state: AppState, cfg: &WebConfig) -> Router {
    let timeout: Duration = cfg.request_timeout.0;
    Router::new()
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
        .merge(ui::router())
        .merge(autoscale::router())
        .layer(axum::middleware::from_fn_with_state(
            state.clone(),
            identify,
        ))
        .with_state(state)
        .layer(RequestBodyLimitLayer::new(cfg.max_request_body.0 as usize))
        // The dashboard's assets and the JSON it polls compress 3-5x; small
        // answers are left alone by the layer's default predicate.
        .layer(tower_http::compression::CompressionLayer::new())
        .layer(TimeoutLayer::with_status_code(
            StatusCode::REQUEST_TIMEOUT,
            timeout,
        ))
        .layer(TraceLayer::new_for_http())
}

/// May the caller of this request change something? Returns the name the
/// audit log records. Who the caller is was settled by [`identify`]; the
/// rules (roles, loopback trust, CSRF) are in [`auth`].
// The refusal is the response itself, as axum handlers return it; boxing
// it would only move the allocation.
#[allow(clippy::result_large_err)]
pub(crate) fn authorize(
    s: &AppState,
    parts: &axum::http::request::Parts,
) -> Result<String, Response> {
    let p = match parts.extensions.get::<auth::Principal>() {
        Some(p) => p.clone(),
        // Handler tests call routes without the middleware.
        None => s
            .auth
            .principal(&parts.headers)
            .map_err(|e| api_error(StatusCode::UNAUTHORIZED, "unauthorized", &e.to_string()))?,
    };
    s.auth.may_change(&p, &parts.headers, peer(parts))?;
    Ok(match p.via {
        // Loopback trust (no credentials configured): the CLI names its user.
        auth::Via::Anonymous => auth::claimed_user(&parts.headers),
        _ => p.name,
    })
}

/// Paths that are open whatever `web.auth.anonymous_read` says: health
/// checks, the self-scraped `/metrics`, webhooks and breaker reports (each
/// checks its own signature or token), the login page and the dashboard's
/// static assets.
fn open_path(path: &str) -> bool {
    matches!(
        path,
        "/-/healthy" | "/-/ready" | "/metrics" | "/ui/login" | "/favicon.ico"
    ) || path.starts_with("/hooks/")
        || path.starts_with("/ui/static/")
        || (path.starts_with("/api/v1/breakers/") && path.ends_with("/report"))
}

/// Middleware: identifies the caller once per request (bearer token, basic
/// credentials or session cookie), refuses bad credentials, applies the
/// read rule, and leaves the [`auth::Principal`] for handlers.
async fn identify(
    State(s): State<AppState>,
    mut req: axum::extract::Request,
    next: axum::middleware::Next,
) -> Response {
    let peer = req
        .extensions()
        .get::<axum::extract::ConnectInfo<SocketAddr>>()
        .map(|c| c.0);
    let path = req.uri().path().to_string();
    let p = match s.auth.principal(req.headers()) {
        Ok(p) => p,
        // Routes with their own tokens (webhooks, breaker reports) judge
        // them; elsewhere an unknown token counts as no credentials.
        Err(auth::AuthError::BadToken) => auth::Principal::anonymous(),
        Err(_) if open_path(&path) && !path.starts_with("/ui/") => auth::Principal::anonymous(),
        Err(e) => {
            let mut r = api_error(StatusCode::UNAUTHORIZED, "unauthorized", &e.to_string());
            r.headers_mut().insert(
                header::WWW_AUTHENTICATE,
                axum::http::HeaderValue::from_static("Basic realm=\"homeostat\""),
            );
            return r;
        }
    };
    if !open_path(&path) && !s.auth.may_read(&p, peer) {
        if path == "/" || path.starts_with("/ui") {
            let q = req
                .uri()
                .path_and_query()
                .map(|x| x.as_str())
                .unwrap_or("/ui/");
            let next_url: String = form_urlencoded::byte_serialize(q.as_bytes()).collect();
            return axum::response::Redirect::to(&format!("/ui/login?next={next_url}"))
                .into_response();
        }
        return api_error(
            StatusCode::UNAUTHORIZED,
            "unauthorized",
            "credentials required (web.auth.anonymous_read does not allow anonymous reads from here)",
        );
    }
    req.extensions_mut().insert(p);
    next.run(req).await
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
