//! A local stand-in for Azure Resource Manager (ARM) and the Entra ID token
//! endpoint, for tests of homeostat's Azure collection.
//!
//! Azure itself cannot run on a test machine, so this serves the few calls
//! homeostat makes, with the JSON shapes of the azure-rest-api-specs
//! examples, and *checks the wire contract* of every request: the bearer
//! token, the exact `api-version` each API answers to, the path (no `//`),
//! the metrics query (`metricnames`, `timespan`, `aggregation`), and the
//! client-credentials form. A request that breaks the contract gets the error
//! ARM would give and is recorded in [`ArmStandIn::violations`], which tests
//! assert is empty, so a wrong client fails here rather than in production.
//!
//! Routes:
//! * `POST /{tenant}/oauth2/v2.0/token`: client-credentials grant;
//! * `GET /subscriptions/{sub}/resourceGroups/{rg}/providers/Microsoft.App/containerApps/{app}`
//!   and its `/revisions`, `/revisions/{rev}`, `/revisions/{rev}/replicas`
//!   (`api-version` [`CONTAINER_APPS_API_VERSION`]);
//! * `PATCH` of that Container App (ContainerApps_Update, a JSON Merge Patch)
//!   to change `properties.template.scale`, answered like ARM's long-running
//!   operation: 202 with `Azure-AsyncOperation` and `Location`, the app in
//!   `provisioningState` `InProgress` until [`ArmStandIn::set_provision_delay`]
//!   has passed, then `Succeeded`;
//! * `GET /subscriptions/{sub}/providers/Microsoft.App/locations/{loc}/containerappOperationResults/{id}`:
//!   the status of such an operation;
//! * `GET /{resourceUri}/providers/Microsoft.Insights/metrics`
//!   (`api-version` [`METRICS_API_VERSION`]).
//!
//! ARM resource ids have a variable number of segments, so everything but the
//! token route goes to one fallback handler that parses the path itself.
//!
//! Every Container App has two revisions, `{app}--rev1` (inactive, no
//! replicas) and `{app}--rev2` (active, Healthy, Running, 100 % traffic, with
//! [`ArmStandIn::set_replicas`] replicas, 1 by default), and scales between
//! `minReplicas` 1 and `maxReplicas` 10 until a PATCH changes that.
//!
//! The PATCH contract: `Content-Type: application/json`; a JSON object with
//! `location` (ARM requires it on a tracked resource even in a patch) and
//! `properties.template.scale` holding `minReplicas` and/or `maxReplicas`
//! (integers 0..=1000) and nothing but those and `rules`. A patch that would
//! leave min above max, after merging with the current values, is refused
//! with 400 `ContainerAppInvalidScaleRange` as Azure does; that is the
//! client's decision to test, not a contract violation.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::{header, HeaderMap, HeaderValue, Method, StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use axum::{Json, Router};
use serde_json::{json, Value};

/// The api-version `azure_mgmt_app` 0.21 sends with feature
/// `package-preview-2023-05`.
pub const CONTAINER_APPS_API_VERSION: &str = "2023-05-02-preview";
/// The api-version of Azure Monitor `Metrics_List` in `azure_mgmt_monitor`
/// 0.21 (`package-preview-2023-09`).
pub const METRICS_API_VERSION: &str = "2024-02-01";
/// The access token the token endpoint hands out and ARM routes demand.
pub const TOKEN: &str = "stand-in-token";

/// The client secret the token endpoint accepts (`AZURE_CLIENT_SECRET`).
pub const CLIENT_SECRET: &str = "secret-1";

/// How ARM routes answer (the token endpoint always works).
#[derive(Debug, Clone, PartialEq)]
pub enum ArmMode {
    Normal,
    /// 401 InvalidAuthenticationToken with `WWW-Authenticate`, as for a
    /// revoked or wrong-tenant token.
    Unauthorized,
    /// 404 ResourceNotFound.
    NotFound,
    /// 403 AuthorizationFailed: a valid token for a principal without a role
    /// assignment on the resource.
    Forbidden,
    /// 429 SubscriptionRequestsThrottled with `Retry-After`.
    Throttle {
        retry_after_secs: u64,
    },
    /// Answer normally after sleeping this long.
    Slow(Duration),
}

/// The region the stand-in's async operations are tracked in (ARM puts it
/// in the operation URL).
const OPERATION_REGION: &str = "eastus";
/// Upper bound Azure Container Apps accepts for `maxReplicas`.
const MAX_REPLICAS_LIMIT: u64 = 1000;

/// What PATCH can change on one Container App.
#[derive(Debug, Clone)]
struct AppState {
    min_replicas: u32,
    max_replicas: u32,
    provisioning_state: &'static str,
    /// Bumped by every accepted PATCH, so that a slow earlier operation
    /// finishing cannot mark a newer one's app `Succeeded`.
    generation: u64,
}

impl Default for AppState {
    fn default() -> Self {
        AppState {
            min_replicas: 1,
            max_replicas: 10,
            provisioning_state: "Succeeded",
            generation: 0,
        }
    }
}

/// One long-running operation started by a PATCH.
#[derive(Debug)]
struct Operation {
    /// `/subscriptions/{sub}/providers/Microsoft.App/locations/{loc}/containerappOperationResults/{id}`
    id: String,
    status: &'static str,
}

#[derive(Debug)]
struct Inner {
    mode: ArmMode,
    requests: Vec<String>,
    violations: Vec<String>,
    token_requests: usize,
    /// The workload-identity assertion the token endpoint accepts now, and
    /// the last one it was sent.
    federated_assertion: String,
    last_assertion: Option<String>,
    /// `expires_in` of the tokens handed out.
    token_lifetime_secs: u64,
    replicas: u32,
    /// `http://127.0.0.1:PORT`, for the operation URLs of 202 answers.
    base_url: String,
    /// By lower-cased app name (ARM names are case-insensitive).
    apps: HashMap<String, AppState>,
    /// By operation name (the last path segment).
    operations: HashMap<String, Operation>,
    operations_started: u64,
    patches: Vec<Value>,
    provision_delay: Duration,
}

type Shared = Arc<Mutex<Inner>>;

fn lock(state: &Shared) -> MutexGuard<'_, Inner> {
    // A panicking test thread must not hide the record from the next assert.
    state
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
}

/// The running stand-in; stops when dropped.
pub struct ArmStandIn {
    pub addr: SocketAddr,
    state: Shared,
    server: tokio::task::JoinHandle<()>,
}

impl ArmStandIn {
    /// Serves on a free port of 127.0.0.1 until dropped.
    pub async fn start() -> ArmStandIn {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("cannot bind the ARM stand-in");
        let addr = listener.local_addr().expect("ARM stand-in has no address");
        let state: Shared = Arc::new(Mutex::new(Inner {
            mode: ArmMode::Normal,
            requests: Vec::new(),
            violations: Vec::new(),
            token_requests: 0,
            federated_assertion: "federated-assertion-1".into(),
            last_assertion: None,
            token_lifetime_secs: 3599,
            replicas: 1,
            base_url: format!("http://{addr}"),
            apps: HashMap::new(),
            operations: HashMap::new(),
            operations_started: 0,
            patches: Vec::new(),
            provision_delay: Duration::from_millis(300),
        }));
        let app = Router::new()
            .route("/{tenant}/oauth2/v2.0/token", post(token))
            .fallback(arm)
            .with_state(state.clone());
        let server = tokio::spawn(async move {
            let _ = axum::serve(listener, app).await;
        });
        ArmStandIn {
            addr,
            state,
            server,
        }
    }

    /// `http://127.0.0.1:PORT`: both the management endpoint and the
    /// authority host.
    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    pub fn set_mode(&self, mode: ArmMode) {
        lock(&self.state).mode = mode;
    }

    /// `"METHOD path?query"` of every request received, token requests
    /// included, in arrival order (query as sent, still percent-encoded).
    pub fn requests(&self) -> Vec<String> {
        lock(&self.state).requests.clone()
    }

    /// Wire-contract violations seen so far.
    pub fn violations(&self) -> Vec<String> {
        lock(&self.state).violations.clone()
    }

    pub fn token_requests(&self) -> usize {
        lock(&self.state).token_requests
    }

    /// The federated (workload identity) assertion the token endpoint
    /// accepts from now on; any other is refused as Entra ID refuses an
    /// expired one.
    pub fn set_federated_assertion(&self, assertion: &str) {
        lock(&self.state).federated_assertion = assertion.into();
    }

    /// The assertion of the last workload-identity token request.
    pub fn last_assertion(&self) -> Option<String> {
        lock(&self.state).last_assertion.clone()
    }

    /// `expires_in` of tokens handed out from now on (3599 s by default).
    /// azure_identity refreshes a token 20 s before it expires.
    pub fn set_token_lifetime(&self, secs: u64) {
        lock(&self.state).token_lifetime_secs = secs;
    }

    /// Replica count of the active revision `{app}--rev2` (its `replicas`
    /// property, the length of its replica list, and the `Replicas` metric).
    pub fn set_replicas(&self, n: u32) {
        lock(&self.state).replicas = n;
    }

    /// `(minReplicas, maxReplicas)` of `app` as the last accepted PATCH left
    /// them; `(1, 10)` before any.
    pub fn scale_of(&self, app: &str) -> (u32, u32) {
        let inner = lock(&self.state);
        let a = inner
            .apps
            .get(&app.to_ascii_lowercase())
            .cloned()
            .unwrap_or_default();
        (a.min_replicas, a.max_replicas)
    }

    /// `properties.provisioningState` of `app`: `InProgress` from an
    /// accepted PATCH until the provisioning delay has passed, else
    /// `Succeeded`.
    pub fn provisioning_state(&self, app: &str) -> String {
        let inner = lock(&self.state);
        inner
            .apps
            .get(&app.to_ascii_lowercase())
            .map_or("Succeeded", |a| a.provisioning_state)
            .to_string()
    }

    /// Bodies of every PATCH received, accepted or not, in arrival order (a
    /// body that is not JSON appears as a JSON string of its text).
    pub fn patches(&self) -> Vec<Value> {
        lock(&self.state).patches.clone()
    }

    /// How long an accepted PATCH stays `InProgress` (300 ms by default).
    pub fn set_provision_delay(&self, d: Duration) {
        lock(&self.state).provision_delay = d;
    }
}

impl Drop for ArmStandIn {
    fn drop(&mut self) {
        self.server.abort();
    }
}

fn record(state: &Shared, method: &Method, uri: &Uri) {
    let target = uri
        .path_and_query()
        .map_or_else(|| uri.path().to_owned(), |pq| pq.as_str().to_owned());
    lock(state).requests.push(format!("{method} {target}"));
}

fn violation(state: &Shared, what: String) {
    lock(state).violations.push(what);
}

fn query_pairs(uri: &Uri) -> Vec<(String, String)> {
    form_urlencoded::parse(uri.query().unwrap_or("").as_bytes())
        .into_owned()
        .collect()
}

fn param<'a>(pairs: &'a [(String, String)], name: &str) -> Option<&'a str> {
    pairs
        .iter()
        .find(|(k, _)| k == name)
        .map(|(_, v)| v.as_str())
}

/// ARM's error body: `{"error":{"code":..,"message":..}}`.
fn arm_error(status: StatusCode, code: &str, message: &str) -> Response {
    let body =
        json!({"error": {"code": code, "message": message, "details": [], "additionalInfo": []}});
    let mut rsp = (status, Json(body)).into_response();
    rsp.headers_mut()
        .insert("x-ms-failure-cause", HeaderValue::from_static("gateway"));
    rsp
}

fn unauthorized(message: &str) -> Response {
    let mut rsp = arm_error(
        StatusCode::UNAUTHORIZED,
        "InvalidAuthenticationToken",
        message,
    );
    rsp.headers_mut().insert(
        header::WWW_AUTHENTICATE,
        HeaderValue::from_static(
            "Bearer authorization_uri=\"https://login.windows.net/\", error=\"invalid_token\", error_description=\"The access token is invalid.\"",
        ),
    );
    rsp
}

/// `POST /{tenant}/oauth2/v2.0/token`, client-credentials grant sent as the
/// oauth2 crate does for `ClientSecretCredential` (credentials in the body).
async fn token(
    State(state): State<Shared>,
    Path(tenant): Path<String>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    record(&state, &method, &uri);
    lock(&state).token_requests += 1;
    let mut problems = Vec::new();
    let content_type = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("");
    if !content_type.starts_with("application/x-www-form-urlencoded") {
        problems.push(format!("token request content-type is {content_type:?}"));
    }
    let form: Vec<(String, String)> = form_urlencoded::parse(&body).into_owned().collect();
    if param(&form, "grant_type") != Some("client_credentials") {
        problems.push(format!(
            "token request grant_type is {:?}, not client_credentials",
            param(&form, "grant_type")
        ));
    }
    if param(&form, "client_id").is_none_or(str::is_empty) {
        problems.push("token request has no client_id".into());
    }
    // Client secret (ClientSecretCredential) or a federated assertion
    // (WorkloadIdentityCredential), exactly one of them.
    let secret = param(&form, "client_secret");
    let assertion = param(&form, "client_assertion");
    match (secret, assertion) {
        (Some(s), None) if !s.is_empty() => {}
        (None, Some(a)) if !a.is_empty() => {
            let kind = param(&form, "client_assertion_type");
            if kind != Some("urn:ietf:params:oauth:client-assertion-type:jwt-bearer") {
                problems.push(format!(
                    "token request client_assertion_type is {kind:?}, not jwt-bearer"
                ));
            }
        }
        _ => problems
            .push("token request needs exactly one of client_secret and client_assertion".into()),
    }
    match param(&form, "scope") {
        Some(scope) if !scope.is_empty() && scope.split(' ').all(|s| s.ends_with("/.default")) => {}
        other => problems.push(format!(
            "token request scope {other:?} does not end in /.default"
        )),
    }
    if tenant.is_empty() {
        problems.push("token request has no tenant in its path".into());
    }
    if !problems.is_empty() {
        let description = problems.join("; ");
        lock(&state).violations.extend(problems);
        return (
            StatusCode::BAD_REQUEST,
            Json(json!({"error": "invalid_request", "error_description": description})),
        )
            .into_response();
    }
    // A wrong credential is not a client bug: Entra ID's refusal, not a
    // violation.
    let refusal = {
        let mut inner = lock(&state);
        if let Some(a) = assertion {
            inner.last_assertion = Some(a.to_string());
            (a != inner.federated_assertion).then_some((
                700024,
                "AADSTS700024: Client assertion is not within its valid time range.",
            ))
        } else if secret != Some(CLIENT_SECRET) {
            Some((
                7000215,
                "AADSTS7000215: Invalid client secret provided. Ensure the secret being sent in the request is the client secret value, not the client secret ID, for a secret added to app 'client-1'.",
            ))
        } else {
            None
        }
    };
    if let Some((code, description)) = refusal {
        return (
            StatusCode::UNAUTHORIZED,
            Json(json!({
                "error": "invalid_client",
                "error_description": description,
                "error_codes": [code],
                "timestamp": "2026-01-01 00:00:00Z",
                "trace_id": "00000000-0000-0000-0000-000000000000",
                "correlation_id": "00000000-0000-0000-0000-000000000000",
                "error_uri": format!("https://login.microsoftonline.com/error?code={code}"),
            })),
        )
            .into_response();
    }
    let lifetime = lock(&state).token_lifetime_secs;
    Json(json!({
        "token_type": "Bearer",
        "expires_in": lifetime,
        "ext_expires_in": lifetime,
        "access_token": TOKEN,
    }))
    .into_response()
}

/// Which ARM resource a path names.
enum Route {
    App {
        sub: String,
        rg: String,
        app: String,
    },
    Revisions {
        app: String,
    },
    Revision {
        app: String,
        rev: String,
    },
    Replicas {
        sub: String,
        rg: String,
        app: String,
        rev: String,
    },
    Metrics {
        resource_uri: String,
    },
    Operation {
        name: String,
    },
}

fn route(path: &str) -> Option<Route> {
    let eq = |a: &str, b: &str| a.eq_ignore_ascii_case(b);
    let lower = path.to_ascii_lowercase();
    if let Some(uri_len) = lower
        .strip_suffix("/providers/microsoft.insights/metrics")
        .map(str::len)
    {
        let resource_uri = path[1..uri_len].to_owned();
        return (!resource_uri.is_empty()).then_some(Route::Metrics { resource_uri });
    }
    let segments: Vec<&str> = path.trim_start_matches('/').split('/').collect();
    if let [subs, _sub, providers, namespace, locations, _loc, kind, name] = segments.as_slice() {
        if eq(subs, "subscriptions")
            && eq(providers, "providers")
            && eq(namespace, "Microsoft.App")
            && eq(locations, "locations")
            && eq(kind, "containerappOperationResults")
        {
            return Some(Route::Operation {
                name: (*name).to_owned(),
            });
        }
    }
    let [subs, sub, groups, rg, providers, namespace, kind, app, rest @ ..] = segments.as_slice()
    else {
        return None;
    };
    if !(eq(subs, "subscriptions")
        && eq(groups, "resourceGroups")
        && eq(providers, "providers")
        && eq(namespace, "Microsoft.App")
        && eq(kind, "containerApps"))
    {
        return None;
    }
    let (sub, rg, app) = ((*sub).to_owned(), (*rg).to_owned(), (*app).to_owned());
    match rest {
        [] => Some(Route::App { sub, rg, app }),
        [revs] if eq(revs, "revisions") => Some(Route::Revisions { app }),
        [revs, rev] if eq(revs, "revisions") => Some(Route::Revision {
            app,
            rev: (*rev).to_owned(),
        }),
        [revs, rev, reps] if eq(revs, "revisions") && eq(reps, "replicas") => {
            Some(Route::Replicas {
                sub,
                rg,
                app,
                rev: (*rev).to_owned(),
            })
        }
        _ => None,
    }
}

/// Strict enough for a contract check: `YYYY-MM-DDTHH:MM:SS[.f+](Z|±HH:MM)`.
fn is_rfc3339(s: &str) -> bool {
    let b = s.as_bytes();
    let digits =
        |r: std::ops::Range<usize>| b.get(r).is_some_and(|d| d.iter().all(u8::is_ascii_digit));
    let fixed = b.len() >= 20
        && digits(0..4)
        && b[4] == b'-'
        && digits(5..7)
        && b[7] == b'-'
        && digits(8..10)
        && matches!(b[10], b'T' | b't')
        && digits(11..13)
        && b[13] == b':'
        && digits(14..16)
        && b[16] == b':'
        && digits(17..19);
    if !fixed {
        return false;
    }
    let mut rest = &s[19..];
    if let Some(frac) = rest.strip_prefix('.') {
        let n = frac.bytes().take_while(u8::is_ascii_digit).count();
        if n == 0 {
            return false;
        }
        rest = &frac[n..];
    }
    rest == "Z"
        || rest == "z"
        || (rest.len() == 6
            && matches!(rest.as_bytes()[0], b'+' | b'-')
            && rest.as_bytes()[3] == b':'
            && rest[1..3]
                .bytes()
                .chain(rest[4..].bytes())
                .all(|c| c.is_ascii_digit()))
}

fn check_timespan(timespan: &str) -> Result<(), String> {
    let Some((start, end)) = timespan.split_once('/') else {
        return Err(format!("metrics timespan {timespan:?} is not start/end"));
    };
    if !is_rfc3339(start) || !is_rfc3339(end) {
        return Err(format!(
            "metrics timespan {timespan:?} is not two RFC 3339 date-times"
        ));
    }
    // Same-format UTC stamps compare correctly as text.
    if start.ends_with('Z') && end.ends_with('Z') && start.len() == end.len() && start >= end {
        return Err(format!(
            "metrics timespan {timespan:?} does not move forward"
        ));
    }
    Ok(())
}

/// Everything but the token endpoint: ARM.
async fn arm(
    State(state): State<Shared>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    record(&state, &method, &uri);
    let (mode, replicas) = {
        let inner = lock(&state);
        (inner.mode.clone(), inner.replicas)
    };
    if let ArmMode::Slow(delay) = &mode {
        tokio::time::sleep(*delay).await;
    }
    let path = uri.path();
    if method != Method::GET && method != Method::PATCH {
        violation(&state, format!("unexpected {method} {path}"));
        return arm_error(
            StatusCode::METHOD_NOT_ALLOWED,
            "MethodNotAllowed",
            "The stand-in serves only GET, and PATCH of a Container App.",
        );
    }
    if path.contains("//") {
        violation(&state, format!("double slash in path {path}"));
        return arm_error(
            StatusCode::BAD_REQUEST,
            "InvalidResourceId",
            &format!("The path '{path}' contains an empty segment."),
        );
    }
    let expected = format!("Bearer {TOKEN}");
    match headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
    {
        Some(auth) if auth == expected => {}
        Some(other) => {
            let scheme = other.split(' ').next().unwrap_or("");
            violation(
                &state,
                format!("wrong Authorization ({scheme} …) on {path}"),
            );
            return unauthorized("The access token is invalid.");
        }
        None => {
            violation(&state, format!("no Authorization header on {path}"));
            return unauthorized(
                "The request has no Authorization header. Send a bearer token from Entra ID.",
            );
        }
    }
    let Some(route) = route(path) else {
        violation(&state, format!("no such ARM route: {path}"));
        return arm_error(
            StatusCode::NOT_FOUND,
            "InvalidResourceType",
            &format!("The resource type could not be found for '{path}'."),
        );
    };
    let patch = method == Method::PATCH;
    if patch && !matches!(route, Route::App { .. }) {
        violation(&state, format!("unexpected PATCH {path}"));
        return arm_error(
            StatusCode::METHOD_NOT_ALLOWED,
            "MethodNotAllowed",
            &format!("The resource at '{path}' does not support PATCH."),
        );
    }
    let pairs = query_pairs(&uri);
    let want_version = match route {
        Route::Metrics { .. } => METRICS_API_VERSION,
        _ => CONTAINER_APPS_API_VERSION,
    };
    match param(&pairs, "api-version") {
        Some(v) if v == want_version => {}
        Some(v) => {
            violation(
                &state,
                format!("api-version {v} on {path}; want {want_version}"),
            );
            return arm_error(
                StatusCode::BAD_REQUEST,
                "InvalidApiVersionParameter",
                &format!("The api-version '{v}' is invalid. The supported versions are '{want_version}'."),
            );
        }
        None => {
            violation(&state, format!("no api-version on {path}"));
            return arm_error(
                StatusCode::BAD_REQUEST,
                "MissingApiVersionParameter",
                "The api-version query parameter (?api-version=) is required for all requests.",
            );
        }
    }
    if let Route::Metrics { .. } = route {
        let mut problems = Vec::new();
        for name in ["metricnames", "timespan", "aggregation"] {
            if param(&pairs, name).is_none_or(str::is_empty) {
                problems.push(format!("metrics query has no {name}"));
            }
        }
        if let Some(timespan) = param(&pairs, "timespan").filter(|t| !t.is_empty()) {
            if let Err(problem) = check_timespan(timespan) {
                problems.push(problem);
            }
        }
        if !problems.is_empty() {
            let message = problems.join("; ");
            lock(&state).violations.extend(problems);
            return arm_error(StatusCode::BAD_REQUEST, "BadRequest", &message);
        }
    }
    // The contract of a PATCH is checked before the injected failures, so a
    // wrong body is reported whatever mode the test put the stand-in in.
    let scale_patch = if patch {
        match check_patch(&state, path, &headers, &body) {
            Ok(scale) => Some(scale),
            Err(rsp) => return rsp,
        }
    } else {
        None
    };
    match mode {
        ArmMode::Unauthorized => return unauthorized("The access token is invalid."),
        ArmMode::Forbidden => {
            return arm_error(
                StatusCode::FORBIDDEN,
                "AuthorizationFailed",
                &format!(
                    "The client 'client-1' with object id '00000000-0000-0000-0000-0000000000c1' does not have authorization to perform action 'Microsoft.App/containerApps/read' over scope '{path}' or the scope is invalid. If access was recently granted, please refresh your credentials."
                ),
            )
        }
        ArmMode::NotFound => {
            return arm_error(
                StatusCode::NOT_FOUND,
                "ResourceNotFound",
                "The Resource 'Microsoft.App/containerApps/myapp' under resource group 'rg' was not found. For more details please go to https://aka.ms/ARMResourceNotFoundFix",
            )
        }
        ArmMode::Throttle { retry_after_secs } => {
            let mut rsp = arm_error(
                StatusCode::TOO_MANY_REQUESTS,
                "SubscriptionRequestsThrottled",
                &format!(
                    "Number of '{}' requests for subscription actor exceeded. Please try again after '{retry_after_secs}' seconds after additional tokens are available.",
                    if patch { "write" } else { "read" }
                ),
            );
            rsp.headers_mut()
                .insert(header::RETRY_AFTER, HeaderValue::from(retry_after_secs));
            return rsp;
        }
        ArmMode::Normal | ArmMode::Slow(_) => {}
    }
    if let (Some(scale), Route::App { sub, app, .. }) = (scale_patch, &route) {
        return apply_patch(&state, sub, app, scale);
    }
    let body = match route {
        Route::App { sub, rg, app } => {
            let current = lock(&state)
                .apps
                .get(&app.to_ascii_lowercase())
                .cloned()
                .unwrap_or_default();
            container_app(&sub, &rg, &app, &current)
        }
        Route::Operation { name } => match lock(&state).operations.get(&name) {
            Some(op) => json!({"id": op.id, "name": name, "status": op.status}),
            None => {
                return arm_error(
                    StatusCode::NOT_FOUND,
                    "ResourceNotFound",
                    &format!("The operation '{name}' was not found."),
                )
            }
        },
        Route::Revisions { app } => json!({
            "value": [revision(path, &app, 1, replicas), revision(path, &app, 2, replicas)],
            "nextLink": null,
        }),
        Route::Revision { app, rev } => match revision_number(&app, &rev) {
            Some(n) => revision(path.trim_end_matches(&format!("/{rev}")), &app, n, replicas),
            None => return revision_not_found(&rev),
        },
        Route::Replicas { sub, rg, app, rev } => match revision_number(&app, &rev) {
            Some(n) => {
                let count = if n == 2 { replicas } else { 0 };
                json!({"value": (0..count).map(|i| replica(&sub, &rg, &app, &rev, i)).collect::<Vec<_>>()})
            }
            None => return revision_not_found(&rev),
        },
        Route::Metrics { resource_uri } => metrics(&resource_uri, &pairs, replicas),
    };
    Json(body).into_response()
}

/// The replica bounds a PATCH asks for; `None` leaves the current value.
struct ScalePatch {
    min: Option<u32>,
    max: Option<u32>,
}

/// Checks a ContainerApps_Update request against the contract (see the
/// module doc), recording its body and any violation; `Err` is the answer
/// ARM would give to a broken request.
// The refusal is the response itself, as axum handlers return it.
#[allow(clippy::result_large_err)]
fn check_patch(
    state: &Shared,
    path: &str,
    headers: &HeaderMap,
    body: &[u8],
) -> Result<ScalePatch, Response> {
    let parsed: Result<Value, _> = serde_json::from_slice(body);
    lock(state).patches.push(match &parsed {
        Ok(v) => v.clone(),
        Err(_) => Value::String(String::from_utf8_lossy(body).into_owned()),
    });
    let refuse = |status: StatusCode, code: &str, problem: String| {
        violation(state, format!("PATCH {path}: {problem}"));
        Err(arm_error(status, code, &problem))
    };
    let content_type = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("");
    if !content_type
        .split(';')
        .next()
        .is_some_and(|t| t.trim().eq_ignore_ascii_case("application/json"))
    {
        return refuse(
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "UnsupportedMediaType",
            format!("content-type {content_type:?} is not application/json"),
        );
    }
    let body = match parsed {
        Ok(Value::Object(o)) => o,
        Ok(other) => {
            return refuse(
                StatusCode::BAD_REQUEST,
                "InvalidRequestContent",
                format!("the body is not a JSON object but {other}"),
            )
        }
        Err(e) => {
            return refuse(
                StatusCode::BAD_REQUEST,
                "InvalidRequestContent",
                format!("the body is not JSON: {e}"),
            )
        }
    };
    if !body.get("location").is_some_and(Value::is_string) {
        return refuse(
            StatusCode::BAD_REQUEST,
            "LocationRequired",
            "the body has no \"location\" string; it is required for this resource".into(),
        );
    }
    let Some(scale) = body
        .get("properties")
        .and_then(|p| p.get("template"))
        .and_then(|t| t.get("scale"))
        .and_then(Value::as_object)
    else {
        return refuse(
            StatusCode::BAD_REQUEST,
            "InvalidRequestContent",
            "the body has no properties.template.scale object".into(),
        );
    };
    let unknown: Vec<&str> = scale
        .keys()
        .map(String::as_str)
        .filter(|k| !matches!(*k, "minReplicas" | "maxReplicas" | "rules"))
        .collect();
    if !unknown.is_empty() {
        return refuse(
            StatusCode::BAD_REQUEST,
            "InvalidRequestContent",
            format!("properties.template.scale has unknown members {unknown:?}"),
        );
    }
    let mut bounds = [None, None];
    for (slot, name) in bounds.iter_mut().zip(["minReplicas", "maxReplicas"]) {
        let Some(v) = scale.get(name) else { continue };
        match v.as_u64().filter(|n| *n <= MAX_REPLICAS_LIMIT) {
            Some(n) => *slot = Some(n as u32),
            None => {
                return refuse(
                    StatusCode::BAD_REQUEST,
                    "InvalidRequestContent",
                    format!(
                        "properties.template.scale.{name} is {v}, not an integer in 0..={MAX_REPLICAS_LIMIT}"
                    ),
                )
            }
        }
    }
    let [min, max] = bounds;
    if min.is_none() && max.is_none() {
        return refuse(
            StatusCode::BAD_REQUEST,
            "InvalidRequestContent",
            "properties.template.scale has neither minReplicas nor maxReplicas".into(),
        );
    }
    Ok(ScalePatch { min, max })
}

/// Merges an accepted scale patch into the app and starts its long-running
/// operation: 202 now, `Succeeded` after the provisioning delay.
fn apply_patch(state: &Shared, sub: &str, app: &str, scale: ScalePatch) -> Response {
    let mut inner = lock(state);
    let key = app.to_ascii_lowercase();
    let current = inner.apps.get(&key).cloned().unwrap_or_default();
    let min = scale.min.unwrap_or(current.min_replicas);
    let max = scale.max.unwrap_or(current.max_replicas);
    if min > max {
        return arm_error(
            StatusCode::BAD_REQUEST,
            "ContainerAppInvalidScaleRange",
            &format!(
                "Container App '{app}' minReplicas ({min}) cannot be greater than maxReplicas ({max})."
            ),
        );
    }
    let generation = current.generation + 1;
    inner.apps.insert(
        key.clone(),
        AppState {
            min_replicas: min,
            max_replicas: max,
            provisioning_state: "InProgress",
            generation,
        },
    );
    inner.operations_started += 1;
    let n = inner.operations_started;
    // Shaped like the GUIDs ARM uses, unique within this stand-in.
    let name = format!("00000000-0000-4000-8000-{n:012x}");
    let id = format!(
        "/subscriptions/{sub}/providers/Microsoft.App/locations/{OPERATION_REGION}/containerappOperationResults/{name}"
    );
    let url = format!(
        "{}{id}?api-version={CONTAINER_APPS_API_VERSION}",
        inner.base_url
    );
    inner.operations.insert(
        name.clone(),
        Operation {
            id,
            status: "InProgress",
        },
    );
    let delay = inner.provision_delay;
    drop(inner);
    let state = state.clone();
    tokio::spawn(async move {
        tokio::time::sleep(delay).await;
        let mut inner = lock(&state);
        if let Some(op) = inner.operations.get_mut(&name) {
            op.status = "Succeeded";
        }
        if let Some(a) = inner.apps.get_mut(&key) {
            if a.generation == generation {
                a.provisioning_state = "Succeeded";
            }
        }
    });
    let mut rsp = StatusCode::ACCEPTED.into_response();
    let value = HeaderValue::from_str(&url).expect("operation URL is a valid header");
    rsp.headers_mut()
        .insert("azure-asyncoperation", value.clone());
    rsp.headers_mut().insert(header::LOCATION, value);
    // ARM's long-running operations say when to poll next; SDK pollers
    // otherwise wait their own default, which is long for a test.
    rsp.headers_mut()
        .insert(header::RETRY_AFTER, HeaderValue::from_static("1"));
    rsp
}

fn revision_number(app: &str, rev: &str) -> Option<u32> {
    match rev.strip_prefix(app)? {
        "--rev1" => Some(1),
        "--rev2" => Some(2),
        _ => None,
    }
}

fn revision_not_found(rev: &str) -> Response {
    arm_error(
        StatusCode::NOT_FOUND,
        "ResourceNotFound",
        &format!("The Resource 'Microsoft.App/containerApps/revisions/{rev}' was not found."),
    )
}

/// ContainerApps_Get example shape, abridged; `location` is required by the
/// SDK. Scale and provisioning state are what PATCHes left.
fn container_app(sub: &str, rg: &str, app: &str, current: &AppState) -> Value {
    json!({
        "id": format!("/subscriptions/{sub}/resourceGroups/{rg}/providers/Microsoft.App/containerApps/{app}"),
        "name": app,
        "type": "Microsoft.App/containerApps",
        "location": "East US",
        "properties": {
            "provisioningState": current.provisioning_state,
            "managedEnvironmentId": format!("/subscriptions/{sub}/resourceGroups/{rg}/providers/Microsoft.App/managedEnvironments/demokube"),
            "latestRevisionName": format!("{app}--rev2"),
            "latestReadyRevisionName": format!("{app}--rev2"),
            "latestRevisionFqdn": format!("{app}--rev2.demokube-t24clv0g.eastus.azurecontainerapps.io"),
            "configuration": {
                "activeRevisionsMode": "Single",
                "ingress": {
                    "external": true,
                    "targetPort": 3000,
                    "traffic": [{"weight": 100, "revisionName": format!("{app}--rev2")}]
                }
            },
            "template": {
                "containers": [{"image": "repo/inference:v4", "name": "inference", "resources": {"cpu": 0.5, "memory": "1Gi"}}],
                "scale": {
                    "minReplicas": current.min_replicas,
                    "maxReplicas": current.max_replicas,
                    "rules": [{"name": "httpscalingrule", "http": {"metadata": {"concurrentRequests": "50"}}}]
                }
            }
        }
    })
}

/// Revisions_List item shape; `collection` is the `.../revisions` path.
fn revision(collection: &str, app: &str, n: u32, replicas: u32) -> Value {
    let name = format!("{app}--rev{n}");
    let active = n == 2;
    json!({
        "id": format!("{collection}/{name}"),
        "name": name,
        "type": "Microsoft.App/containerApps/revisions",
        "properties": {
            "createdTime": if active { "2024-05-01T10:00:00+00:00" } else { "2024-04-01T09:30:00+00:00" },
            "lastActiveTime": "2024-05-01T10:00:00+00:00",
            "fqdn": format!("{name}.demokube-t24clv0g.eastus.azurecontainerapps.io"),
            "template": {
                "containers": [{"image": format!("repo/inference:v{n}"), "name": "inference", "resources": {"cpu": 0.5, "memory": "1Gi"}}],
                "scale": {"minReplicas": 1, "maxReplicas": 10}
            },
            "active": active,
            "replicas": if active { replicas } else { 0 },
            "trafficWeight": if active { 100 } else { 0 },
            "healthState": if active { "Healthy" } else { "None" },
            "provisioningState": if active { "Provisioned" } else { "Deprovisioned" },
            "runningState": if active { "Running" } else { "Stopped" }
        }
    })
}

/// Replicas_List item shape.
fn replica(sub: &str, rg: &str, app: &str, rev: &str, i: u32) -> Value {
    let name = format!("{rev}-5d9774cff-r{i}");
    json!({
        "id": format!("/subscriptions/{sub}/resourceGroups/{rg}/providers/Microsoft.App/containerApps/{app}/revisions/{rev}/replicas/{name}"),
        "name": name,
        "type": "Microsoft.App/containerApps/revisions/replicas",
        "properties": {
            "createdTime": "2024-05-01T10:01:00Z",
            "runningState": "Running",
            "runningStateDetails": "",
            "containers": [{
                "name": "inference",
                "containerId": format!("containerd://{:064x}", i + 1),
                "ready": true,
                "started": true,
                "restartCount": 2,
                "runningState": "Running",
                "runningStateDetails": "",
                "logStreamEndpoint": "https://example.invalid/logstream",
                "execEndpoint": "https://example.invalid/exec"
            }],
            "initContainers": []
        }
    })
}

fn unit_of(metric: &str) -> &'static str {
    match metric.to_ascii_lowercase().as_str() {
        "usagenanocores" => "NanoCores",
        "workingsetbytes" | "rxbytes" | "txbytes" => "Bytes",
        "cpu_percent" | "usedmemorypercentage" | "serverload" | "cpupercentage" => "Percent",
        "physical_replication_delay_in_seconds" => "Seconds",
        _ => "Count",
    }
}

/// The value every requested aggregation of `metric` carries in the first
/// data point: fixed, except `Replicas`, which follows [`ArmStandIn::set_replicas`].
pub fn metric_value(metric: &str, replicas: u32) -> f64 {
    match metric.to_ascii_lowercase().as_str() {
        "requests" => 42.0,
        "replicas" => f64::from(replicas),
        "usagenanocores" => 150_000_000.0,
        "workingsetbytes" => 268_435_456.0,
        _ => 7.5,
    }
}

/// GetMetric example shape: per requested metric one timeseries with two
/// data points, the newest still without values (Azure's current bucket).
/// Container Apps metrics carry the `revisionName` dimension.
fn metrics(resource_uri: &str, pairs: &[(String, String)], replicas: u32) -> Value {
    let names = param(pairs, "metricnames").unwrap_or("");
    let aggregations: Vec<String> = param(pairs, "aggregation")
        .unwrap_or("")
        .split(',')
        .map(|a| a.trim().to_ascii_lowercase())
        .filter(|a| !a.is_empty())
        .collect();
    let container_app = resource_uri
        .to_ascii_lowercase()
        .contains("/providers/microsoft.app/containerapps/");
    let app = resource_uri.rsplit('/').next().unwrap_or("");
    let value: Vec<Value> = names
        .split(',')
        .filter(|n| !n.is_empty())
        .map(|name| {
            let mut point = json!({"timeStamp": "2024-05-01T12:00:00Z"});
            for agg in &aggregations {
                point[agg.as_str()] = json!(metric_value(name, replicas));
            }
            let metadatavalues = if container_app {
                json!([{"name": {"value": "revisionName", "localizedValue": "revisionName"}, "value": format!("{app}--rev2")}])
            } else {
                json!([])
            };
            json!({
                "id": format!("/{resource_uri}/providers/Microsoft.Insights/metrics/{name}"),
                "type": "Microsoft.Insights/metrics",
                "name": {"value": name, "localizedValue": name},
                "displayDescription": format!("{name} of the resource."),
                "unit": unit_of(name),
                "timeseries": [{
                    "metadatavalues": metadatavalues,
                    "data": [point, {"timeStamp": "2024-05-01T12:01:00Z"}]
                }],
                "errorCode": "Success"
            })
        })
        .collect();
    json!({
        "cost": 59,
        "timespan": param(pairs, "timespan").unwrap_or(""),
        "interval": param(pairs, "interval").unwrap_or("PT1M"),
        "value": value,
        "namespace": if container_app { "microsoft.app/containerapps" } else { "" },
        "resourceregion": "eastus"
    })
}
