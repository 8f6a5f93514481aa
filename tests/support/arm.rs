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
//! * `GET /{resourceUri}/providers/Microsoft.Insights/metrics`
//!   (`api-version` [`METRICS_API_VERSION`]).
//!
//! ARM resource ids have a variable number of segments, so everything but the
//! token route goes to one fallback handler that parses the path itself.
//!
//! Every Container App has two revisions, `{app}--rev1` (inactive, no
//! replicas) and `{app}--rev2` (active, Healthy, Running, 100 % traffic, with
//! [`ArmStandIn::set_replicas`] replicas, 1 by default).

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

/// How ARM routes answer (the token endpoint always works).
#[derive(Debug, Clone, PartialEq)]
pub enum ArmMode {
    Normal,
    /// 401 InvalidAuthenticationToken with `WWW-Authenticate`, as for a
    /// revoked or wrong-tenant token.
    Unauthorized,
    /// 404 ResourceNotFound.
    NotFound,
    /// 429 SubscriptionRequestsThrottled with `Retry-After`.
    Throttle {
        retry_after_secs: u64,
    },
    /// Answer normally after sleeping this long.
    Slow(Duration),
}

#[derive(Debug)]
struct Inner {
    mode: ArmMode,
    requests: Vec<String>,
    violations: Vec<String>,
    token_requests: usize,
    replicas: u32,
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
        let state: Shared = Arc::new(Mutex::new(Inner {
            mode: ArmMode::Normal,
            requests: Vec::new(),
            violations: Vec::new(),
            token_requests: 0,
            replicas: 1,
        }));
        let app = Router::new()
            .route("/{tenant}/oauth2/v2.0/token", post(token))
            .fallback(arm)
            .with_state(state.clone());
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("cannot bind the ARM stand-in");
        let addr = listener.local_addr().expect("ARM stand-in has no address");
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

    /// Replica count of the active revision `{app}--rev2` (its `replicas`
    /// property, the length of its replica list, and the `Replicas` metric).
    pub fn set_replicas(&self, n: u32) {
        lock(&self.state).replicas = n;
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
    for field in ["client_id", "client_secret"] {
        if param(&form, field).is_none_or(str::is_empty) {
            problems.push(format!("token request has no {field}"));
        }
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
    Json(json!({
        "token_type": "Bearer",
        "expires_in": 3599,
        "ext_expires_in": 3599,
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
    if method != Method::GET {
        violation(&state, format!("unexpected {method} {path}"));
        return arm_error(
            StatusCode::METHOD_NOT_ALLOWED,
            "MethodNotAllowed",
            "The stand-in serves only GET.",
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
    match mode {
        ArmMode::Unauthorized => return unauthorized("The access token is invalid."),
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
                &format!("Number of 'read' requests for subscription actor exceeded. Please try again after '{retry_after_secs}' seconds after additional tokens are available."),
            );
            rsp.headers_mut()
                .insert(header::RETRY_AFTER, HeaderValue::from(retry_after_secs));
            return rsp;
        }
        ArmMode::Normal | ArmMode::Slow(_) => {}
    }
    let body = match route {
        Route::App { sub, rg, app } => container_app(&sub, &rg, &app),
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

/// ContainerApps_Get example shape, abridged; `location` is required by the SDK.
fn container_app(sub: &str, rg: &str, app: &str) -> Value {
    json!({
        "id": format!("/subscriptions/{sub}/resourceGroups/{rg}/providers/Microsoft.App/containerApps/{app}"),
        "name": app,
        "type": "Microsoft.App/containerApps",
        "location": "East US",
        "properties": {
            "provisioningState": "Succeeded",
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
                    "minReplicas": 1,
                    "maxReplicas": 10,
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
