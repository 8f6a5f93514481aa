//! Azure reading: turns Azure Resource Manager (ARM) answers into samples.
//!
//! This module owns the ARM calls: Container Apps revisions, replicas and scale
//! settings through `azure_mgmt_app` (package `2023-05-02-preview`, the
//! smallest package that carries every field used here), and Azure Monitor
//! metrics (`Metrics_List`, api-version `2024-02-01`). It also owns the
//! throttle state that ARM imposes on this client. It knows nothing of
//! homeostat's types and must not touch the store: the caller turns
//! [`AzureSample`]s into series.
//!
//! Metrics are one GET sent through an azure_core [`Pipeline`] built with the
//! same options (transport, no retries, throttle policy) and credential as the
//! Container Apps client, decoded into the few serde types below. Not through
//! `azure_mgmt_monitor`: 0.21's only package with a metrics client,
//! `package-preview-2023-09`, does not compile (its models derive `Default`
//! on structs holding a `Resource` that has none), and it would be 22k
//! generated lines for one operation.
//!
//! Retries are off (`RetryOptions::none()`): the SDK's default policy would
//! sleep up to a minute inside one scrape and retry 429s against a subscription
//! that is already over its quota. Instead a per-retry pipeline policy
//! (`ThrottlePolicy`) sees every raw response; a 429 (or a 503 carrying
//! `Retry-After`) records "throttled until now + Retry-After", and until then
//! every call fails at once with [`AzureError::Throttled`] without asking for
//! a token or sending a request. The next scrape round is the retry.
//!
//! Each HTTP request is bounded by the `timeout` given to [`AzureClient::new`]
//! (a reqwest client timeout: azure_core 0.21 has no timeout of its own).
//!
//! Samples, all with labels `resource_id` (as given by the caller) and `app`:
//! * per revision (`revision` label): `azure_containerapp_revision_active`,
//!   `_replicas`, `_traffic_weight`, `_healthy{health_state}`,
//!   `_running{running_state}`, `_created_timestamp_seconds`;
//! * per replica of an active revision (`revision`, `replica`):
//!   `azure_containerapp_replica_running`, and per container (`container`)
//!   `azure_containerapp_replica_container_restarts_total` and `_ready`;
//! * per app: `azure_containerapp_min_replicas`, `azure_containerapp_max_replicas`;
//! * Azure Monitor: `azure_monitor_metric{resource_id, resource_type,
//!   resource_name, metric, aggregation, unit, dim_<dimension>...}`.
//!
//! A field ARM leaves out produces no sample rather than a made-up value.

use std::borrow::Cow;
use std::error::Error as StdError;
use std::sync::Arc;
use std::time::{Duration, Instant};

use azure_core::auth::TokenCredential;
use azure_core::error::ErrorKind;
use azure_core::headers::{Headers, RETRY_AFTER, RETRY_AFTER_MS, X_MS_RETRY_AFTER_MS};
use azure_core::{
    ClientOptions, Context, HttpClient, Method, Pipeline, Policy, PolicyResult, Request,
    RetryOptions, TransportOptions, Url,
};
use azure_identity::{
    DefaultAzureCredentialBuilder, SpecificAzureCredential, TokenCredentialOptions,
    WorkloadIdentityCredential, AZURE_CREDENTIAL_KIND,
};
use azure_mgmt_app::package_preview_2023_05 as aca;
use futures_util::StreamExt as _;
use parking_lot::Mutex;
use time::format_description::well_known::Rfc3339;
use time::OffsetDateTime;

/// Appended to the management endpoint to form the OAuth scope
/// (`https://management.azure.com/.default`).
pub const ARM_SCOPE_SUFFIX: &str = "/.default";

/// Wait assumed when ARM throttles without saying for how long.
const DEFAULT_THROTTLE_WAIT: Duration = Duration::from_secs(60);
/// Upper bound on a Retry-After we obey: a garbled header must not silence
/// Azure collection for days.
const MAX_THROTTLE_WAIT: Duration = Duration::from_secs(3600);
/// Azure Monitor refuses more than 20 metric names in one request.
const MAX_METRICS_PER_CALL: usize = 20;
/// `Metrics_List` api-version: the stable one the monitor SDK would send.
const METRICS_API_VERSION: &str = "2024-02-01";

/// The parts of a `Metrics_List` answer that are read; serde skips the rest.
/// Optional wherever Azure may leave a field out or send `null`, so an
/// unexpected shape loses one value instead of the whole answer.
mod wire {
    use serde::Deserialize;

    #[derive(Debug, Deserialize)]
    pub struct MetricsResponse {
        pub value: Vec<Metric>,
    }

    #[derive(Debug, Deserialize)]
    #[serde(rename_all = "camelCase")]
    pub struct Metric {
        pub name: LocalizableString,
        pub unit: Option<String>,
        pub error_code: Option<String>,
        pub timeseries: Option<Vec<TimeSeries>>,
    }

    #[derive(Debug, Deserialize)]
    pub struct LocalizableString {
        pub value: String,
    }

    #[derive(Debug, Deserialize)]
    pub struct TimeSeries {
        pub metadatavalues: Option<Vec<MetadataValue>>,
        pub data: Option<Vec<MetricValue>>,
    }

    #[derive(Debug, Deserialize)]
    pub struct MetadataValue {
        pub name: Option<LocalizableString>,
        pub value: Option<String>,
    }

    /// One bucket; only the requested aggregations are present, and none in
    /// a bucket that has no data yet.
    #[derive(Debug, Deserialize)]
    pub struct MetricValue {
        pub average: Option<f64>,
        pub minimum: Option<f64>,
        pub maximum: Option<f64>,
        pub total: Option<f64>,
        pub count: Option<f64>,
    }
}

/// One reading: metric name, labels in exposition order, value.
///
/// Label names are `Cow` because Azure Monitor dimensions (`dim_revisionname`,
/// `dim_shardid`, …) are only known at run time; every other name is static.
#[derive(Debug, Clone, PartialEq)]
pub struct AzureSample {
    pub name: &'static str,
    pub labels: Vec<(Cow<'static, str>, String)>,
    pub value: f64,
}

/// Why an Azure call failed. The text becomes a target's `lastError`, so it
/// is written for the on-call engineer reading it.
#[derive(Debug, thiserror::Error)]
pub enum AzureError {
    /// ARM answered 429 (or 503 with Retry-After), or an earlier answer said
    /// to wait and that wait is not over (nothing was sent then).
    #[error(
        "ARM throttled this client ({status}); next call after {}s (Retry-After)",
        ceil_secs(retry_after)
    )]
    Throttled { status: u16, retry_after: Duration },
    #[error("resource not found (404 {code}): {message}")]
    NotFound { code: String, message: String },
    /// Any other non-2xx answer: 401 InvalidAuthenticationToken, 403
    /// AuthorizationFailed, 400 InvalidApiVersionParameter, 5xx, ….
    #[error("ARM answered {status} ({code}): {message}")]
    Status {
        status: u16,
        code: String,
        message: String,
    },
    #[error("cannot get a token: {0}")]
    Credential(String),
    #[error("ARM call timed out after {}", human_duration(.0))]
    Timeout(Duration),
    #[error("cannot reach ARM: {0}")]
    Transport(String),
    #[error("ARM answered with a body that cannot be read: {0}")]
    Decode(String),
    #[error("malformed resource id {id:?}: {reason}")]
    BadResourceId { id: String, reason: String },
    #[error("invalid Azure settings: {0}")]
    Config(String),
    #[error("Azure call failed: {0}")]
    Other(String),
}

/// Whole seconds, rounded up, so "after 0s" never appears while still waiting.
fn ceil_secs(d: &Duration) -> u64 {
    d.as_secs() + u64::from(d.subsec_nanos() > 0)
}

fn human_duration(d: &Duration) -> String {
    if d.subsec_nanos() == 0 {
        format!("{}s", d.as_secs())
    } else if d.as_secs() == 0 {
        format!("{}ms", d.as_millis())
    } else {
        format!("{:.1}s", d.as_secs_f64())
    }
}

/// Shared "do not call ARM before" state, written by [`ThrottlePolicy`] and
/// read before every call.
#[derive(Debug, Default)]
struct Throttle {
    until: Mutex<Option<(Instant, u16)>>,
}

impl Throttle {
    /// The status that caused the throttle and the wait left, if any.
    fn active(&self) -> Option<(u16, Duration)> {
        let mut guard = self.until.lock();
        let (until, status) = (*guard)?;
        let left = until.saturating_duration_since(Instant::now());
        if left.is_zero() {
            *guard = None;
            return None;
        }
        Some((status, left))
    }

    fn check(&self) -> Result<(), AzureError> {
        match self.active() {
            Some((status, retry_after)) => Err(AzureError::Throttled {
                status,
                retry_after,
            }),
            None => Ok(()),
        }
    }

    /// Keeps the later of the current and the new deadline: two concurrent
    /// calls may both be throttled, and the longer wait is the binding one.
    fn record(&self, status: u16, wait: Duration) {
        let until = Instant::now() + wait.min(MAX_THROTTLE_WAIT);
        let mut guard = self.until.lock();
        if guard.is_none_or(|(current, _)| current < until) {
            *guard = Some((until, status));
        }
    }
}

/// Returned by [`ThrottlePolicy`] instead of sending while throttled;
/// [`AzureClient`] turns it into [`AzureError::Throttled`].
#[derive(Debug, thiserror::Error)]
#[error("not sent: ARM throttled this client ({status}) for another {wait:?}")]
struct ThrottleRefusal {
    status: u16,
    wait: Duration,
}

/// Pipeline policy installed per retry, i.e. between the (disabled) retry
/// policy and the transport. That position matters: only there is the raw
/// response visible, headers included; above the retry policy a 429 is
/// already an `HttpError` whose headers have no public accessor.
#[derive(Debug)]
struct ThrottlePolicy(Arc<Throttle>);

#[async_trait::async_trait]
impl Policy for ThrottlePolicy {
    async fn send(
        &self,
        ctx: &Context,
        request: &mut Request,
        next: &[Arc<dyn Policy>],
    ) -> PolicyResult {
        // Also checked here, not only at the top of each AzureClient call, so
        // that follow-up requests of a call (next pages, replicas of further
        // revisions) stop as soon as one of them is throttled.
        if let Some((status, wait)) = self.0.active() {
            return Err(azure_core::Error::new(
                ErrorKind::Other,
                ThrottleRefusal { status, wait },
            ));
        }
        let Some((first, rest)) = next.split_first() else {
            return Err(azure_core::Error::message(
                ErrorKind::Other,
                "throttle policy has no transport after it",
            ));
        };
        let response = first.send(ctx, request, rest).await?;
        let status = u16::from(response.status());
        match (status, retry_after(response.headers())) {
            (429, wait) => self.0.record(status, wait.unwrap_or(DEFAULT_THROTTLE_WAIT)),
            // A 503 without Retry-After is an outage, not a request to back off.
            (503, Some(wait)) => self.0.record(status, wait),
            _ => {}
        }
        Ok(response)
    }
}

/// The wait a 429/503 asks for, in azure_core's lookup order:
/// `retry-after-ms`, `x-ms-retry-after-ms`, then `Retry-After` (seconds or an
/// HTTP-date).
fn retry_after(headers: &Headers) -> Option<Duration> {
    for name in [RETRY_AFTER_MS, X_MS_RETRY_AFTER_MS] {
        if let Some(ms) = headers
            .get_optional_str(&name)
            .and_then(|v| v.trim().parse::<u64>().ok())
        {
            return Some(Duration::from_millis(ms));
        }
    }
    let value = headers.get_optional_str(&RETRY_AFTER)?.trim();
    if let Ok(secs) = value.parse::<u64>() {
        return Some(Duration::from_secs(secs));
    }
    let when = azure_core::date::parse_rfc1123(value).ok()?;
    Some(Duration::try_from(when - OffsetDateTime::now_utc()).unwrap_or(Duration::ZERO))
}

/// The parts of `/subscriptions/{sub}/resourceGroups/{rg}/providers/Microsoft.App/containerApps/{app}`.
#[derive(Debug, Clone, PartialEq)]
struct ContainerAppId {
    subscription: String,
    resource_group: String,
    name: String,
}

const CONTAINER_APP_ID_SHAPE: &str =
    "expected /subscriptions/{subscription}/resourceGroups/{group}/providers/Microsoft.App/containerApps/{app}";

impl ContainerAppId {
    /// ARM ids are case-insensitive in their fixed segments (the portal
    /// shows `resourcegroups`, the CLI `resourceGroups`), so those are
    /// compared ignoring case; the names are kept as written.
    fn parse(id: &str) -> Result<Self, AzureError> {
        let bad = |reason: &str| AzureError::BadResourceId {
            id: id.to_owned(),
            reason: format!("{reason}; {CONTAINER_APP_ID_SHAPE}"),
        };
        let segments = id_segments(id).map_err(|reason| bad(&reason))?;
        let [subs, sub, groups, rg, providers, namespace, kind, app] = segments.as_slice() else {
            return Err(bad(&format!(
                "{} path segments instead of 8",
                segments.len()
            )));
        };
        let fixed = [
            (subs, "subscriptions"),
            (groups, "resourceGroups"),
            (providers, "providers"),
            (namespace, "Microsoft.App"),
            (kind, "containerApps"),
        ];
        for (got, want) in fixed {
            if !got.eq_ignore_ascii_case(want) {
                return Err(bad(&format!("found {got:?} where {want:?} belongs")));
            }
        }
        Ok(ContainerAppId {
            subscription: (*sub).to_owned(),
            resource_group: (*rg).to_owned(),
            name: (*app).to_owned(),
        })
    }
}

/// Splits an ARM resource id into its segments, refusing what would corrupt
/// the request URL: the generated clients paste ids into the path unescaped.
fn id_segments(id: &str) -> Result<Vec<&str>, String> {
    let Some(rest) = id.strip_prefix('/') else {
        return Err("it must start with '/'".into());
    };
    let segments: Vec<&str> = rest.trim_end_matches('/').split('/').collect();
    if segments.iter().any(|s| s.is_empty()) {
        return Err("it has an empty path segment ('//')".into());
    }
    if let Some(c) = rest
        .chars()
        .find(|c| c.is_whitespace() || c.is_control() || matches!(c, '?' | '#' | '%' | '\\'))
    {
        return Err(format!("it contains {c:?}"));
    }
    Ok(segments)
}

/// What the metrics labels say about a resource: `microsoft.app/containerapps`
/// and `myapp` for a Container App; nested types join with '/', as ARM does
/// (`microsoft.storage/storageaccounts/blobservices`, `acct/default`).
#[derive(Debug, Clone, PartialEq)]
struct MonitoredResource {
    /// The id without its leading '/': the request path is
    /// `/{resourceUri}/providers/...`, and a leading slash would make `//`.
    uri: String,
    resource_type: String,
    resource_name: String,
}

impl MonitoredResource {
    fn parse(id: &str) -> Result<Self, AzureError> {
        let bad = |reason: String| AzureError::BadResourceId {
            id: id.to_owned(),
            reason,
        };
        let segments = id_segments(id).map_err(bad)?;
        if !segments
            .first()
            .is_some_and(|s| s.eq_ignore_ascii_case("subscriptions"))
        {
            return Err(bad("it must start with /subscriptions/".into()));
        }
        // The last `providers` segment starts the resource's own type path
        // (extension resources nest one provider inside another).
        let Some(at) = segments
            .iter()
            .rposition(|s| s.eq_ignore_ascii_case("providers"))
        else {
            return Err(bad("it names no provider (no /providers/ segment)".into()));
        };
        let tail = &segments[at + 1..];
        // namespace, then (type, name) pairs: an odd, non-empty count.
        if tail.len() < 3 || tail.len() % 2 == 0 {
            return Err(bad(
                "after /providers/ it must be {namespace}/{type}/{name}[/{type}/{name}...]".into(),
            ));
        }
        let mut resource_type = tail[0].to_ascii_lowercase();
        let mut names = Vec::new();
        for pair in tail[1..].chunks(2) {
            resource_type.push('/');
            resource_type.push_str(&pair[0].to_ascii_lowercase());
            names.push(pair[1]);
        }
        Ok(MonitoredResource {
            uri: segments.join("/"),
            resource_type,
            resource_name: names.join("/"),
        })
    }
}

/// The default aggregation of a metric: the one the Azure portal charts,
/// from the supported-metrics tables. `Average` for metrics not listed.
pub fn default_aggregation(metric: &str) -> &'static str {
    const TABLE: &[(&str, &str)] = &[
        // Microsoft.App/containerApps
        ("Requests", "Total"),
        ("Replicas", "Maximum"),
        ("UsageNanoCores", "Average"),
        ("WorkingSetBytes", "Average"),
        ("RestartCount", "Maximum"),
        ("RxBytes", "Total"),
        ("TxBytes", "Total"),
        // Microsoft.DBforPostgreSQL/flexibleServers
        ("cpu_percent", "Average"),
        ("active_connections", "Average"),
        ("physical_replication_delay_in_seconds", "Maximum"),
        // Microsoft.Cache/redis
        ("usedmemorypercentage", "Maximum"),
        ("serverLoad", "Maximum"),
        ("cachehits", "Total"),
        ("cachemisses", "Total"),
    ];
    TABLE
        .iter()
        .find(|(name, _)| name.eq_ignore_ascii_case(metric))
        .map_or("Average", |(_, agg)| agg)
}

/// Canonical (lowercase) aggregation name, or None when Azure has no such one.
fn aggregation_name(agg: &str) -> Option<&'static str> {
    ["average", "minimum", "maximum", "total", "count"]
        .into_iter()
        .find(|known| known.eq_ignore_ascii_case(agg.trim()))
}

fn aggregation_value(point: &wire::MetricValue, agg: &str) -> Option<f64> {
    match agg {
        "average" => point.average,
        "minimum" => point.minimum,
        "maximum" => point.maximum,
        "total" => point.total,
        "count" => point.count,
        _ => None,
    }
}

/// The string an SDK enum has on the wire (`Healthy`, `Running`, or
/// whatever new value ARM sent), via its `Serialize`, so new values pass
/// through untouched instead of being matched variant by variant.
fn wire_name<T: serde::Serialize>(value: &T) -> String {
    match serde_json::to_value(value) {
        Ok(serde_json::Value::String(s)) => s,
        _ => String::new(),
    }
}

/// `dim_` + the dimension name made a valid Prometheus label name.
fn dimension_label(name: &str) -> String {
    let mut out = String::with_capacity(name.len() + 4);
    out.push_str("dim_");
    out.extend(name.chars().map(|c| {
        if c.is_ascii_alphanumeric() {
            c.to_ascii_lowercase()
        } else {
            '_'
        }
    }));
    out
}

/// `start/end` in RFC 3339 UTC, whole seconds, ending now.
fn timespan(lookback: Duration) -> Result<String, AzureError> {
    let bad = |e: &dyn std::fmt::Display| AzureError::Config(format!("metrics lookback: {e}"));
    let end = OffsetDateTime::now_utc()
        .replace_nanosecond(0)
        .map_err(|e| bad(&e))?;
    let back = time::Duration::try_from(lookback).map_err(|e| bad(&e))?;
    let start = end
        .checked_sub(back)
        .ok_or_else(|| bad(&format!("{lookback:?} reaches before year 0")))?;
    let (start, end) = (
        start.format(&Rfc3339).map_err(|e| bad(&e))?,
        end.format(&Rfc3339).map_err(|e| bad(&e))?,
    );
    Ok(format!("{start}/{end}"))
}

fn bool_value(b: bool) -> f64 {
    if b {
        1.0
    } else {
        0.0
    }
}

type Labels = Vec<(Cow<'static, str>, String)>;

fn with(base: &Labels, extra: &[(&'static str, &str)]) -> Labels {
    let mut labels = base.clone();
    labels.extend(
        extra
            .iter()
            .map(|(k, v)| (Cow::Borrowed(*k), (*v).to_owned())),
    );
    labels
}

fn push(out: &mut Vec<AzureSample>, name: &'static str, labels: Labels, value: f64) {
    out.push(AzureSample {
        name,
        labels,
        value,
    });
}

/// The text of an error and of every error under it, without repeats
/// (azure_core wraps the same cause under several messages).
fn error_chain(err: &(dyn StdError + 'static)) -> String {
    let mut text = err.to_string();
    let mut cause = err.source();
    while let Some(e) = cause {
        let part = e.to_string();
        if !part.is_empty() && !text.contains(&part) {
            text.push_str(": ");
            text.push_str(&part);
        }
        cause = e.source();
    }
    text
}

fn is_timeout(err: &(dyn StdError + 'static)) -> bool {
    let mut cause = Some(err);
    while let Some(e) = cause {
        if e.downcast_ref::<reqwest::Error>()
            .is_some_and(reqwest::Error::is_timeout)
            || e.downcast_ref::<std::io::Error>()
                .is_some_and(|io| io.kind() == std::io::ErrorKind::TimedOut)
        {
            return true;
        }
        cause = e.source();
    }
    false
}

/// What the `scale` action reads of a Container App.
#[derive(Debug, Clone, PartialEq)]
pub struct AppScale {
    pub location: String,
    pub min_replicas: Option<i32>,
    pub max_replicas: Option<i32>,
    /// As ARM spells it: `Succeeded`, `InProgress`, `Failed`, `Canceled`.
    pub provisioning_state: String,
}

/// ARM client for Container Apps and Azure Monitor, sharing one credential,
/// one HTTP client and one throttle state.
#[derive(Clone)]
pub struct AzureClient {
    app: aca::Client,
    /// For the metrics GET: the same policies and transport as `app`.
    pipeline: Pipeline,
    endpoint: Url,
    scope: String,
    credential: Arc<dyn TokenCredential>,
    throttle: Arc<Throttle>,
    timeout: Duration,
}

impl std::fmt::Debug for AzureClient {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AzureClient")
            .field("throttle", &self.throttle)
            .field("timeout", &self.timeout)
            .finish_non_exhaustive()
    }
}

impl AzureClient {
    /// `management_endpoint` e.g. `https://management.azure.com` (or
    /// `http://127.0.0.1:PORT` in tests); credential from the caller (see
    /// [`credential`]); `timeout` bounds each HTTP request.
    pub fn new(
        management_endpoint: &str,
        credential: Arc<dyn TokenCredential>,
        timeout: Duration,
    ) -> Result<Self, AzureError> {
        let endpoint = Url::parse(management_endpoint).map_err(|e| {
            AzureError::Config(format!(
                "management endpoint {management_endpoint:?} is not a URL: {e}"
            ))
        })?;
        // The generated clients replace the endpoint's path with the resource
        // path, so a path prefix (a proxy mount point) would be dropped silently.
        if !matches!(endpoint.scheme(), "http" | "https")
            || endpoint.path() != "/"
            || endpoint.query().is_some()
        {
            return Err(AzureError::Config(format!(
                "management endpoint {management_endpoint:?} must be scheme://host[:port] with no path or query"
            )));
        }
        // The token audience is the endpoint itself, which also holds for the
        // sovereign clouds (https://management.usgovcloudapi.net/.default).
        let scope = format!(
            "{}{ARM_SCOPE_SUFFIX}",
            endpoint.as_str().trim_end_matches('/')
        );
        let http = reqwest::Client::builder()
            .timeout(timeout)
            .connect_timeout(timeout)
            .build()
            .map_err(|e| AzureError::Config(format!("cannot build the HTTP client: {e}")))?;
        let throttle = Arc::new(Throttle::default());
        let options =
            ClientOptions::new(TransportOptions::new(Arc::new(http) as Arc<dyn HttpClient>))
                .retry(RetryOptions::none())
                .per_retry_policies(vec![
                    Arc::new(ThrottlePolicy(throttle.clone())) as Arc<dyn Policy>
                ]);
        Ok(AzureClient {
            app: aca::Client::new(
                endpoint.clone(),
                credential.clone(),
                vec![scope.clone()],
                options.clone(),
            ),
            pipeline: Pipeline::new(
                Some("homeostat"),
                option_env!("CARGO_PKG_VERSION"),
                options,
                Vec::new(),
                Vec::new(),
            ),
            endpoint,
            scope,
            credential,
            throttle,
            timeout,
        })
    }

    /// Revisions and replicas of one Container App, by its full resource id
    /// (`/subscriptions/{sub}/resourceGroups/{rg}/providers/Microsoft.App/containerApps/{app}`).
    ///
    /// Calls: GET the app (scale bounds), list its revisions, and list the
    /// replicas of each *active* revision (inactive ones have none, and each
    /// call spends the subscription's ARM read quota). On error `out` is left
    /// as it was: a partial answer would look like revisions vanishing.
    pub async fn container_app(
        &self,
        resource_id: &str,
        out: &mut Vec<AzureSample>,
    ) -> Result<(), AzureError> {
        let id = ContainerAppId::parse(resource_id)?;
        self.throttle.check()?;
        let (sub, rg, name) = (&id.subscription, &id.resource_group, &id.name);
        let base: Labels = vec![
            (Cow::Borrowed("resource_id"), resource_id.to_owned()),
            (Cow::Borrowed("app"), name.clone()),
        ];
        let mut samples = Vec::new();

        let app = self
            .finish(self.app.container_apps_client().get(sub, rg, name).await)
            .await?;
        let scale = app
            .properties
            .as_ref()
            .and_then(|p| p.template.as_ref())
            .and_then(|t| t.scale.as_ref());
        if let Some(min) = scale.and_then(|s| s.min_replicas) {
            push(
                &mut samples,
                "azure_containerapp_min_replicas",
                base.clone(),
                f64::from(min),
            );
        }
        if let Some(max) = scale.and_then(|s| s.max_replicas) {
            push(
                &mut samples,
                "azure_containerapp_max_replicas",
                base.clone(),
                f64::from(max),
            );
        }

        let mut active = Vec::new();
        let mut pages = self
            .app
            .container_apps_revisions_client()
            .list_revisions(sub, rg, name)
            .into_stream();
        while let Some(page) = pages.next().await {
            let page = self.finish(page).await?;
            for revision in page.value {
                let Some(rev) = revision.proxy_resource.resource.name else {
                    continue;
                };
                let Some(p) = revision.properties else {
                    continue;
                };
                let labels = with(&base, &[("revision", &rev)]);
                if let Some(a) = p.active {
                    push(
                        &mut samples,
                        "azure_containerapp_revision_active",
                        labels.clone(),
                        bool_value(a),
                    );
                }
                if let Some(n) = p.replicas {
                    push(
                        &mut samples,
                        "azure_containerapp_revision_replicas",
                        labels.clone(),
                        f64::from(n),
                    );
                }
                if let Some(w) = p.traffic_weight {
                    push(
                        &mut samples,
                        "azure_containerapp_revision_traffic_weight",
                        labels.clone(),
                        f64::from(w),
                    );
                }
                if let Some(h) = &p.health_state {
                    let state = wire_name(h);
                    let healthy =
                        matches!(h, aca::models::revision::properties::HealthState::Healthy);
                    push(
                        &mut samples,
                        "azure_containerapp_revision_healthy",
                        with(&labels, &[("health_state", &state)]),
                        bool_value(healthy),
                    );
                }
                if let Some(r) = &p.running_state {
                    let state = wire_name(r);
                    let running =
                        matches!(r, aca::models::revision::properties::RunningState::Running);
                    push(
                        &mut samples,
                        "azure_containerapp_revision_running",
                        with(&labels, &[("running_state", &state)]),
                        bool_value(running),
                    );
                }
                if let Some(t) = p.created_time {
                    // i128 nanoseconds → f64 seconds keeps microsecond precision for today's dates.
                    let secs = t.unix_timestamp_nanos() as f64 / 1e9;
                    push(
                        &mut samples,
                        "azure_containerapp_revision_created_timestamp_seconds",
                        labels,
                        secs,
                    );
                }
                if p.active == Some(true) {
                    active.push(rev);
                }
            }
        }

        for rev in &active {
            let replicas = self
                .finish(
                    self.app
                        .container_apps_revision_replicas_client()
                        .list_replicas(sub, rg, name, rev)
                        .await,
                )
                .await?;
            for replica in replicas.value {
                let Some(replica_name) = replica.proxy_resource.resource.name else {
                    continue;
                };
                let Some(p) = replica.properties else {
                    continue;
                };
                let labels = with(&base, &[("revision", rev), ("replica", &replica_name)]);
                if let Some(state) = &p.running_state {
                    let running = matches!(
                        state,
                        aca::models::replica::properties::RunningState::Running
                    );
                    push(
                        &mut samples,
                        "azure_containerapp_replica_running",
                        labels.clone(),
                        bool_value(running),
                    );
                }
                for c in &p.containers {
                    let Some(container) = &c.name else { continue };
                    let labels = with(&labels, &[("container", container)]);
                    if let Some(n) = c.restart_count {
                        push(
                            &mut samples,
                            "azure_containerapp_replica_container_restarts_total",
                            labels.clone(),
                            f64::from(n),
                        );
                    }
                    if let Some(ready) = c.ready {
                        push(
                            &mut samples,
                            "azure_containerapp_replica_container_ready",
                            labels,
                            bool_value(ready),
                        );
                    }
                }
            }
        }

        out.append(&mut samples);
        Ok(())
    }

    /// A Container App's scale bounds, location and provisioning state (one
    /// GET), for the `scale` action.
    pub async fn app_scale(&self, resource_id: &str) -> Result<AppScale, AzureError> {
        let id = ContainerAppId::parse(resource_id)?;
        self.throttle.check()?;
        let app = self
            .finish(
                self.app
                    .container_apps_client()
                    .get(&id.subscription, &id.resource_group, &id.name)
                    .await,
            )
            .await?;
        let props = app.properties.as_ref();
        let scale = props
            .and_then(|p| p.template.as_ref())
            .and_then(|t| t.scale.as_ref());
        Ok(AppScale {
            location: app.tracked_resource.location.clone(),
            min_replicas: scale.and_then(|s| s.min_replicas),
            max_replicas: scale.and_then(|s| s.max_replicas),
            provisioning_state: props
                .and_then(|p| p.provisioning_state.as_ref())
                .map(wire_name)
                .unwrap_or_default(),
        })
    }

    /// Sets `template.scale.minReplicas` (and `maxReplicas` when given) with
    /// one JSON Merge Patch carrying only those fields, so the containers,
    /// rules and everything else in the template stay as they are. Returns
    /// the HTTP status: 200 (done) or 202 (provisioning continues; poll
    /// [`AzureClient::app_scale`]).
    ///
    /// `.send()`, not `.await` on the builder: the SDK's long-running-
    /// operation loop would re-send the PATCH and fails on 202's empty body.
    pub async fn set_app_scale(
        &self,
        resource_id: &str,
        location: &str,
        min_replicas: i32,
        max_replicas: Option<i32>,
    ) -> Result<u16, AzureError> {
        let id = ContainerAppId::parse(resource_id)?;
        self.throttle.check()?;
        let mut body =
            aca::models::ContainerApp::new(aca::models::TrackedResource::new(location.to_string()));
        body.properties = Some(aca::models::container_app::Properties {
            template: Some(aca::models::Template {
                scale: Some(aca::models::Scale {
                    min_replicas: Some(min_replicas),
                    max_replicas,
                    ..Default::default()
                }),
                ..Default::default()
            }),
            ..Default::default()
        });
        let rsp = self
            .finish(
                self.app
                    .container_apps_client()
                    .update(&id.subscription, &id.resource_group, &id.name, body)
                    .send()
                    .await,
            )
            .await?;
        let status = u16::from(rsp.as_raw_response().status());
        if !(200..300).contains(&status) {
            return Err(AzureError::Status {
                status,
                code: String::new(),
                message: "unexpected answer to PATCH".into(),
            });
        }
        Ok(status)
    }

    /// Azure Monitor metrics of one resource: for each metric, timeseries and
    /// aggregation, the newest data point over the last `lookback` (e.g. 5m)
    /// at `interval` (ISO 8601 such as `PT1M`) that carries a value. Azure's
    /// newest bucket is often still empty, so it is skipped, not read as 0.
    ///
    /// `aggregations` (average, minimum, maximum, total, count; any case)
    /// apply to every metric; when empty, each metric gets its
    /// [`default_aggregation`]. More than 20 metrics take several requests.
    /// A metric that Azure reports as failed (its own `errorCode`) yields no
    /// samples; the others still do. On error `out` is left as it was.
    pub async fn metrics(
        &self,
        resource_id: &str,
        metrics: &[String],
        aggregations: &[String],
        interval: &str,
        lookback: Duration,
        out: &mut Vec<AzureSample>,
    ) -> Result<(), AzureError> {
        let resource = MonitoredResource::parse(resource_id)?;
        let explicit = aggregations
            .iter()
            .map(|a| {
                aggregation_name(a).ok_or_else(|| {
                    AzureError::Config(format!(
                        "unknown aggregation {a:?}; use average, minimum, maximum, total or count"
                    ))
                })
            })
            .collect::<Result<Vec<_>, _>>()?;
        let aggregations_of = |metric: &str| -> Vec<&'static str> {
            if explicit.is_empty() {
                aggregation_name(default_aggregation(metric))
                    .into_iter()
                    .collect()
            } else {
                explicit.clone()
            }
        };
        if metrics.is_empty() {
            return Ok(());
        }
        self.throttle.check()?;
        let timespan = timespan(lookback)?;
        let base: Labels = vec![
            (Cow::Borrowed("resource_id"), resource_id.to_owned()),
            (
                Cow::Borrowed("resource_type"),
                resource.resource_type.clone(),
            ),
            (
                Cow::Borrowed("resource_name"),
                resource.resource_name.clone(),
            ),
        ];
        let mut samples = Vec::new();
        for chunk in metrics.chunks(MAX_METRICS_PER_CALL) {
            // One `aggregation` parameter serves every metric of the request:
            // ask for the union, then emit only each metric's own ones.
            let mut wanted: Vec<&'static str> = Vec::new();
            for agg in chunk.iter().flat_map(|m| aggregations_of(m)) {
                if !wanted.contains(&agg) {
                    wanted.push(agg);
                }
            }
            let response = self
                .get_metrics(
                    &resource.uri,
                    &chunk.join(","),
                    &timespan,
                    interval,
                    &wanted.join(","),
                )
                .await?;
            for metric in response.value {
                if metric
                    .error_code
                    .as_deref()
                    .is_some_and(|code| !code.eq_ignore_ascii_case("Success"))
                {
                    continue;
                }
                let name = metric.name.value;
                let unit = metric.unit.unwrap_or_default();
                let timeseries = metric.timeseries.unwrap_or_default();
                let labels = with(&base, &[("metric", &name)]);
                for agg in aggregations_of(&name) {
                    let labels = with(&labels, &[("aggregation", agg), ("unit", &unit)]);
                    for series in &timeseries {
                        let Some(value) = series
                            .data
                            .iter()
                            .flatten()
                            .rev()
                            .find_map(|point| aggregation_value(point, agg))
                        else {
                            continue;
                        };
                        let mut labels = labels.clone();
                        labels.extend(series.metadatavalues.iter().flatten().filter_map(|m| {
                            let dim = m.name.as_ref()?;
                            Some((
                                Cow::Owned(dimension_label(&dim.value)),
                                m.value.clone().unwrap_or_default(),
                            ))
                        }));
                        push(&mut samples, "azure_monitor_metric", labels, value);
                    }
                }
            }
        }
        out.append(&mut samples);
        Ok(())
    }

    /// `GET /{resourceUri}/providers/Microsoft.Insights/metrics`, with the
    /// query parameters in the order and encoding the generated SDK uses.
    async fn get_metrics(
        &self,
        uri: &str,
        metricnames: &str,
        timespan: &str,
        interval: &str,
        aggregation: &str,
    ) -> Result<wire::MetricsResponse, AzureError> {
        let mut url = self.endpoint.clone();
        // `uri` has no leading '/' (see MonitoredResource), so no `//`.
        url.set_path(&format!("/{uri}/providers/Microsoft.Insights/metrics"));
        url.query_pairs_mut()
            .append_pair("api-version", METRICS_API_VERSION)
            .append_pair("timespan", timespan)
            .append_pair("interval", interval)
            .append_pair("metricnames", metricnames)
            .append_pair("aggregation", aggregation);
        let token = self
            .finish(self.credential.get_token(&[self.scope.as_str()]).await)
            .await?;
        let mut request = Request::new(url, Method::Get);
        request.insert_header(
            azure_core::headers::AUTHORIZATION,
            format!("Bearer {}", token.token.secret()),
        );
        let response = self
            .finish(self.pipeline.send(&Context::new(), &mut request).await)
            .await?;
        self.finish(response.json::<wire::MetricsResponse>().await)
            .await
    }

    /// Maps an SDK result to ours. Async because a 401 also empties the
    /// credential's token cache: ARM rejected the cached token (revoked, or
    /// minted for another tenant), and reusing it until it expires would fail
    /// every round for up to an hour.
    async fn finish<T>(&self, result: azure_core::Result<T>) -> Result<T, AzureError> {
        match result {
            Ok(value) => Ok(value),
            Err(err) => Err(self.map_error(err).await),
        }
    }

    async fn map_error(&self, err: azure_core::Error) -> AzureError {
        if let Some(refusal) = err.downcast_ref::<ThrottleRefusal>() {
            return AzureError::Throttled {
                status: refusal.status,
                retry_after: refusal.wait,
            };
        }
        if let Some(http) = err.as_http_error() {
            let status = u16::from(http.status());
            if matches!(status, 429 | 503) {
                if let Some((status, retry_after)) = self.throttle.active() {
                    return AzureError::Throttled {
                        status,
                        retry_after,
                    };
                }
            }
            if status == 401 {
                // Best effort: failing to clear leaves the old behaviour (the
                // token is dropped when it expires).
                let _ = self.credential.clear_cache().await;
            }
            let code = http.error_code().unwrap_or("no error code").to_owned();
            let message = http
                .error_message()
                .unwrap_or("no error message")
                .to_owned();
            return if status == 404 {
                AzureError::NotFound { code, message }
            } else {
                AzureError::Status {
                    status,
                    code,
                    message,
                }
            };
        }
        match err.kind() {
            // A 2xx other than 200 on a paged call: the SDK says only the status.
            ErrorKind::HttpResponse { status, error_code } => AzureError::Status {
                status: u16::from(*status),
                code: error_code.clone().unwrap_or_else(|| "no error code".into()),
                message: "unexpected status for this call".into(),
            },
            ErrorKind::Credential => AzureError::Credential(error_chain(&err)),
            _ if is_timeout(&err) => AzureError::Timeout(self.timeout),
            ErrorKind::Io => AzureError::Transport(error_chain(&err)),
            ErrorKind::DataConversion => AzureError::Decode(error_chain(&err)),
            _ => AzureError::Other(error_chain(&err)),
        }
    }
}

/// The credential for ARM: `DefaultAzureCredential` (environment → App
/// Service/Container Apps managed identity → VM managed identity (IMDS) →
/// Azure CLI), or, when `AZURE_CREDENTIAL_KIND` is set, only that kind
/// (`environment`, `appservice`, `virtualmachine`, `azurecli`,
/// `clientsecret`, `workloadidentity`). The authority host is
/// `authority_host`, else `$AZURE_AUTHORITY_HOST`, else the public cloud's.
/// `http` carries token requests; give it a timeout.
///
/// Workload identity (`AZURE_FEDERATED_TOKEN_FILE` with `AZURE_TENANT_ID` and
/// `AZURE_CLIENT_ID`, as AKS injects them) is served by
/// [`FederatedTokenFile`] instead of the chain's own: azure_identity 0.21
/// reads the file once, but the kubelet rotates it (the projected token lives
/// an hour by default), so a daemon running longer would keep sending an
/// expired assertion. When that file is set, it is the credential; the chain
/// would have picked it first anyway.
pub fn credential(
    authority_host: Option<&str>,
    http: Arc<dyn HttpClient>,
) -> Result<Arc<dyn TokenCredential>, AzureError> {
    // azure_identity reports a refused token request as "Server returned
    // error response", dropping Entra ID's reason; the wrappers keep it.
    let refusal = Arc::new(Mutex::new(None));
    let http: Arc<dyn HttpClient> = Arc::new(TokenHttp {
        inner: http,
        refusal: refusal.clone(),
    });
    Ok(Arc::new(Explained {
        inner: chain(authority_host, http)?,
        refusal,
    }))
}

fn chain(
    authority_host: Option<&str>,
    http: Arc<dyn HttpClient>,
) -> Result<Arc<dyn TokenCredential>, AzureError> {
    // `from(http)` starts from the defaults, which read AZURE_AUTHORITY_HOST.
    let mut options = TokenCredentialOptions::from(http.clone());
    if let Some(host) = authority_host {
        options.set_authority_host(host.to_owned());
    }
    // Checked here so a typo fails at start-up, not at the first token.
    options
        .authority_host()
        .map_err(|e| AzureError::Config(format!("authority host: {}", error_chain(&e))))?;
    let kind = std::env::var(AZURE_CREDENTIAL_KIND).ok();
    let wants_workload = matches!(
        kind.as_deref(),
        None | Some("environment") | Some("workloadidentity")
    );
    if wants_workload {
        if let Some(file) = FederatedTokenFile::from_env(&options, http.clone())? {
            return Ok(Arc::new(file));
        }
    }
    let built: azure_core::Result<Arc<dyn TokenCredential>> = if kind.is_some() {
        SpecificAzureCredential::create(options).map(|c| Arc::new(c) as Arc<dyn TokenCredential>)
    } else {
        DefaultAzureCredentialBuilder::new()
            .with_options(options)
            .build()
            .map(|c| Arc::new(c) as Arc<dyn TokenCredential>)
    };
    built.map_err(|e| AzureError::Credential(error_chain(&e)))
}

/// Carries token requests and remembers why the last one was refused.
#[derive(Debug)]
struct TokenHttp {
    inner: Arc<dyn HttpClient>,
    refusal: Arc<Mutex<Option<String>>>,
}

/// Upper bound on the part of a token refusal kept for the target list.
const MAX_REFUSAL_CHARS: usize = 300;

/// `token endpoint <url> answered 401 invalid_client: AADSTS7000215: Invalid
/// client secret provided. …` from an Entra ID (OAuth 2.0) error body; the
/// status alone when the body is not one. The URL (without its query) says
/// which credential of a chain was refused.
fn describe_refusal(url: &Url, status: u16, body: &[u8]) -> String {
    #[derive(serde::Deserialize)]
    struct OAuthError {
        error: String,
        error_description: Option<String>,
    }
    let mut shown = url.clone();
    shown.set_query(None);
    let mut text = format!("token endpoint {shown} answered {status}");
    if let Ok(e) = serde_json::from_slice::<OAuthError>(body) {
        text.push_str(&format!(" {}", e.error));
        // Entra ID appends "\r\nTrace ID: …" lines: the first line is the reason.
        if let Some(d) = e
            .error_description
            .as_deref()
            .and_then(|d| d.lines().next())
        {
            text.push_str(": ");
            text.push_str(d.trim());
        }
    }
    if text.chars().count() > MAX_REFUSAL_CHARS {
        text = text.chars().take(MAX_REFUSAL_CHARS).collect::<String>() + "…";
    }
    text
}

#[async_trait::async_trait]
impl HttpClient for TokenHttp {
    async fn execute_request(&self, request: &Request) -> azure_core::Result<azure_core::Response> {
        *self.refusal.lock() = None;
        let rsp = self.inner.execute_request(request).await?;
        if rsp.status().is_success() {
            return Ok(rsp);
        }
        let (status, headers, body) = rsp.deconstruct();
        let bytes = body.collect().await?;
        *self.refusal.lock() = Some(describe_refusal(request.url(), u16::from(status), &bytes));
        Ok(azure_core::Response::new(
            status,
            headers,
            Box::pin(azure_core::BytesStream::new(bytes)),
        ))
    }
}

/// A credential whose errors say why the token endpoint refused.
#[derive(Debug)]
struct Explained {
    inner: Arc<dyn TokenCredential>,
    refusal: Arc<Mutex<Option<String>>>,
}

#[async_trait::async_trait]
impl TokenCredential for Explained {
    async fn get_token(
        &self,
        scopes: &[&str],
    ) -> azure_core::Result<azure_core::auth::AccessToken> {
        self.inner
            .get_token(scopes)
            .await
            .map_err(|e| match self.refusal.lock().clone() {
                Some(why) => azure_core::Error::full(ErrorKind::Credential, e, why),
                None => e,
            })
    }

    async fn clear_cache(&self) -> azure_core::Result<()> {
        self.inner.clear_cache().await
    }
}

/// Workload identity that follows the federated token file as the kubelet
/// rotates it: each token request re-reads the file (a few hundred bytes),
/// and a changed assertion replaces the inner credential, and with it the
/// cached ARM token, which was obtained with the old one.
pub struct FederatedTokenFile {
    path: std::path::PathBuf,
    tenant_id: String,
    client_id: String,
    authority_host: Url,
    http: Arc<dyn HttpClient>,
    current: tokio::sync::Mutex<Option<(String, Arc<WorkloadIdentityCredential>)>>,
}

// Written by hand: the cached assertion is a credential and is never printed.
impl std::fmt::Debug for FederatedTokenFile {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("FederatedTokenFile")
            .field("path", &self.path)
            .field("tenant_id", &self.tenant_id)
            .field("client_id", &self.client_id)
            .finish_non_exhaustive()
    }
}

impl FederatedTokenFile {
    /// `None` unless `AZURE_FEDERATED_TOKEN_FILE` is set; then tenant and
    /// client id must be set too.
    fn from_env(
        options: &TokenCredentialOptions,
        http: Arc<dyn HttpClient>,
    ) -> Result<Option<Self>, AzureError> {
        let Some(path) = std::env::var_os("AZURE_FEDERATED_TOKEN_FILE") else {
            return Ok(None);
        };
        let var = |name: &str| {
            std::env::var(name).map_err(|_| {
                AzureError::Credential(format!(
                    "AZURE_FEDERATED_TOKEN_FILE is set but {name} is not (workload identity needs both)"
                ))
            })
        };
        let authority_host = options
            .authority_host()
            .map_err(|e| AzureError::Config(format!("authority host: {}", error_chain(&e))))?;
        Ok(Some(Self {
            path: path.into(),
            tenant_id: var("AZURE_TENANT_ID")?,
            client_id: var("AZURE_CLIENT_ID")?,
            authority_host,
            http,
            current: tokio::sync::Mutex::new(None),
        }))
    }

    async fn inner(&self) -> azure_core::Result<Arc<WorkloadIdentityCredential>> {
        let assertion = tokio::fs::read_to_string(&self.path).await.map_err(|e| {
            azure_core::Error::full(
                ErrorKind::Credential,
                e,
                format!("cannot read federated token file {}", self.path.display()),
            )
        })?;
        let assertion = assertion.trim().to_string();
        let mut current = self.current.lock().await;
        if let Some((seen, cred)) = current.as_ref() {
            if *seen == assertion {
                return Ok(cred.clone());
            }
        }
        let cred = Arc::new(WorkloadIdentityCredential::new(
            self.http.clone(),
            self.authority_host.clone(),
            self.tenant_id.clone(),
            self.client_id.clone(),
            assertion.clone(),
        ));
        *current = Some((assertion, cred.clone()));
        Ok(cred)
    }
}

#[async_trait::async_trait]
impl TokenCredential for FederatedTokenFile {
    async fn get_token(
        &self,
        scopes: &[&str],
    ) -> azure_core::Result<azure_core::auth::AccessToken> {
        self.inner().await?.get_token(scopes).await
    }

    async fn clear_cache(&self) -> azure_core::Result<()> {
        *self.current.lock().await = None;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_container_app_ids_ignoring_case_of_fixed_segments() {
        let id = ContainerAppId::parse(
            "/subscriptions/s-1/resourcegroups/rg_1/providers/microsoft.app/containerapps/my-app/",
        );
        assert_eq!(
            id.ok(),
            Some(ContainerAppId {
                subscription: "s-1".into(),
                resource_group: "rg_1".into(),
                name: "my-app".into(),
            })
        );
        for bad in [
            "subscriptions/s/resourceGroups/rg/providers/Microsoft.App/containerApps/a",
            "/subscriptions/s/resourceGroups/rg/providers/Microsoft.Web/sites/a",
            "/subscriptions/s/resourceGroups/rg/providers/Microsoft.App/containerApps",
            "/subscriptions/s//resourceGroups/rg/providers/Microsoft.App/containerApps/a",
            "/subscriptions/s/resourceGroups/rg/providers/Microsoft.App/containerApps/a?x=1",
        ] {
            let err = ContainerAppId::parse(bad).err().map(|e| e.to_string());
            assert!(
                err.as_deref()
                    .is_some_and(|e| e.contains("malformed resource id")),
                "{bad}: {err:?}"
            );
        }
    }

    #[test]
    fn monitored_resource_labels() {
        let r = MonitoredResource::parse(
            "/subscriptions/s/resourceGroups/rg/providers/Microsoft.App/containerApps/myapp",
        )
        .ok();
        assert_eq!(
            r,
            Some(MonitoredResource {
                uri:
                    "subscriptions/s/resourceGroups/rg/providers/Microsoft.App/containerApps/myapp"
                        .into(),
                resource_type: "microsoft.app/containerapps".into(),
                resource_name: "myapp".into(),
            })
        );
        let nested = MonitoredResource::parse(
            "/subscriptions/s/resourceGroups/rg/providers/Microsoft.Storage/storageAccounts/acct/blobServices/default",
        )
        .ok();
        assert_eq!(
            nested.map(|r| (r.resource_type, r.resource_name)),
            Some((
                "microsoft.storage/storageaccounts/blobservices".into(),
                "acct/default".into()
            ))
        );
        assert!(MonitoredResource::parse("/subscriptions/s/resourceGroups/rg").is_err());
    }

    #[test]
    fn default_aggregations_follow_the_portal() {
        assert_eq!(default_aggregation("Requests"), "Total");
        assert_eq!(default_aggregation("replicas"), "Maximum");
        assert_eq!(default_aggregation("WorkingSetBytes"), "Average");
        assert_eq!(
            default_aggregation("physical_replication_delay_in_seconds"),
            "Maximum"
        );
        assert_eq!(default_aggregation("serverLoad"), "Maximum");
        assert_eq!(default_aggregation("cachemisses"), "Total");
        assert_eq!(default_aggregation("something_else"), "Average");
    }

    #[test]
    fn dimension_labels_are_prometheus_names() {
        assert_eq!(dimension_label("revisionName"), "dim_revisionname");
        assert_eq!(dimension_label("Shard Id"), "dim_shard_id");
    }

    #[test]
    fn timespan_is_rfc3339_utc() {
        let ts = timespan(Duration::from_secs(300)).unwrap_or_default();
        let (start, end) = ts.split_once('/').unwrap_or_default();
        assert!(start.ends_with('Z') && end.ends_with('Z'), "{ts}");
        let parse = |s| OffsetDateTime::parse(s, &Rfc3339).ok();
        let (Some(start), Some(end)) = (parse(start), parse(end)) else {
            panic!("unparsable {ts}");
        };
        assert_eq!(end - start, time::Duration::minutes(5));
    }

    #[test]
    fn token_refusals_keep_entra_ids_reason() {
        let body = br#"{"error":"invalid_client","error_description":"AADSTS7000215: Invalid client secret provided.\r\nTrace ID: 1\r\nCorrelation ID: 2","error_codes":[7000215]}"#;
        let url =
            Url::parse("https://login.microsoftonline.com/t/oauth2/v2.0/token?x=1").expect("url");
        assert_eq!(
            describe_refusal(&url, 401, body),
            "token endpoint https://login.microsoftonline.com/t/oauth2/v2.0/token answered 401 invalid_client: AADSTS7000215: Invalid client secret provided."
        );
        assert_eq!(
            describe_refusal(&url, 502, b"<html>"),
            "token endpoint https://login.microsoftonline.com/t/oauth2/v2.0/token answered 502"
        );
        let long = format!(
            r#"{{"error":"x","error_description":"{}"}}"#,
            "y".repeat(1000)
        );
        assert!(
            describe_refusal(&url, 400, long.as_bytes()).chars().count() <= MAX_REFUSAL_CHARS + 1
        );
    }

    #[test]
    fn retry_after_reads_seconds_ms_and_dates() {
        let mut h = Headers::new();
        h.insert(RETRY_AFTER, "30");
        assert_eq!(retry_after(&h), Some(Duration::from_secs(30)));
        h.insert(RETRY_AFTER_MS, "1500");
        assert_eq!(retry_after(&h), Some(Duration::from_millis(1500)));
        let mut h = Headers::new();
        h.insert(RETRY_AFTER, "Wed, 21 Oct 2015 07:28:00 GMT");
        assert_eq!(retry_after(&h), Some(Duration::ZERO));
        assert_eq!(retry_after(&Headers::new()), None);
    }

    #[test]
    fn throttle_keeps_the_later_deadline_and_expires() {
        let t = Throttle::default();
        assert!(t.check().is_ok());
        t.record(429, Duration::from_secs(30));
        t.record(503, Duration::from_secs(5));
        let err = t.check().err().map(|e| e.to_string()).unwrap_or_default();
        assert!(err.contains("(429)") && err.contains("after 30s"), "{err}");
        // A wait that is already over throttles nothing.
        let t = Throttle::default();
        t.record(429, Duration::ZERO);
        assert!(t.check().is_ok());
    }
}
