//! The Azure collector: Container Apps revisions and replicas, and Azure
//! Monitor metrics, as scrape targets (one per Container App, one per
//! monitored resource).
//!
//! Owns the `collectors.azure` config, the targets it becomes, and the
//! credential shared by all of them (one token cache per authority host, so
//! ten targets do not fetch ten tokens). The ARM calls, their throttling
//! (Retry-After is honoured across rounds: a throttled target fails fast
//! without calling ARM until the time has passed) and the sample names live
//! in [`azure_read`](super::azure_read). Never touches the store directly.

use std::collections::HashMap;
use std::sync::{Arc, LazyLock};
use std::time::Duration;

use parking_lot::Mutex;
use serde::Deserialize;

use super::azure_read::{self, AzureClient, AzureSample};
use super::native::{AzureSection, NativeSpec, NativeTarget};
use super::{CollectError, Collector, ScrapeBatch};
use crate::config::{PromDuration, Validator};

/// The public cloud's Resource Manager.
pub const DEFAULT_MANAGEMENT_ENDPOINT: &str = "https://management.azure.com";

/// One resource under `collectors.azure.metrics`.
#[derive(Debug, Clone, PartialEq, Default, Deserialize)]
#[serde(default)]
pub struct MetricsTarget {
    /// Full ARM resource ID (`/subscriptions/…/providers/Microsoft.App/containerApps/api`).
    pub resource_id: String,
    /// The `instance` label (default: `<resource name>/metrics`).
    pub name: Option<String>,
    /// Azure Monitor metric names as the REST API spells them (`Requests`,
    /// `cpu_percent`, `usedmemorypercentage`, …).
    pub metrics: Vec<String>,
    /// Aggregations to read for every metric (`average`, `minimum`,
    /// `maximum`, `total`, `count`). Default: each metric's primary
    /// aggregation as the portal shows it (`Requests` total, `Replicas`
    /// maximum, …; average for metrics homeostat does not know).
    pub aggregations: Vec<String>,
    /// Time grain (default 1m, Azure Monitor's finest for most metrics).
    pub interval: Option<PromDuration>,
}

/// What one Azure target reads.
#[derive(Debug, Clone, PartialEq)]
pub enum AzureKind {
    ContainerApp(String),
    Metrics(MetricsTarget),
}

/// One Azure target with the connection settings of its section.
#[derive(Debug, Clone, PartialEq)]
pub struct AzureTarget {
    pub management_endpoint: String,
    pub authority_host: Option<String>,
    pub kind: AzureKind,
}

/// The last path segment of a resource ID: the resource's name.
fn resource_name(id: &str) -> String {
    id.trim_end_matches('/')
        .rsplit('/')
        .next()
        .unwrap_or(id)
        .to_string()
}

/// The targets of a `collectors.azure` section.
pub(crate) fn targets(s: &AzureSection) -> Vec<NativeTarget> {
    let endpoint = s
        .management_endpoint
        .clone()
        .unwrap_or_else(|| DEFAULT_MANAGEMENT_ENDPOINT.into());
    let target = |instance: String, kind: AzureKind| {
        let display = match &kind {
            AzureKind::ContainerApp(id) => format!("{endpoint}{id}"),
            AzureKind::Metrics(m) => format!(
                "{endpoint}{}/providers/Microsoft.Insights/metrics",
                m.resource_id
            ),
        };
        NativeTarget {
            instance,
            display,
            labels: Default::default(),
            spec: NativeSpec::Azure(AzureTarget {
                management_endpoint: endpoint.clone(),
                authority_host: s.authority_host.clone(),
                kind,
            }),
        }
    };
    let mut out: Vec<NativeTarget> = s
        .container_apps
        .iter()
        .map(|id| target(resource_name(id), AzureKind::ContainerApp(id.clone())))
        .collect();
    out.extend(s.metrics.iter().map(|m| {
        target(
            // `<name>/metrics`: a Container App can be both kinds of target,
            // and each target needs its own `instance` for `up`.
            m.name
                .clone()
                .unwrap_or_else(|| format!("{}/metrics", resource_name(&m.resource_id))),
            AzureKind::Metrics(m.clone()),
        )
    }));
    out
}

pub(crate) fn validate(s: &AzureSection, path: &str, v: &mut Validator) {
    for (field, value) in [
        ("management_endpoint", &s.management_endpoint),
        ("authority_host", &s.authority_host),
    ] {
        if let Some(u) = value {
            match reqwest::Url::parse(u) {
                Ok(url) if url.scheme() == "https" || url.scheme() == "http" => {}
                _ => v.error(
                    format!("{path}.{field}"),
                    format!("{u:?} is not an http(s) URL"),
                ),
            }
        }
    }
    let check_id = |p: String, id: &str, v: &mut Validator| {
        if !id.starts_with("/subscriptions/") || !id.to_lowercase().contains("/providers/") {
            v.error(
                p,
                format!("{id:?} is not an ARM resource ID (/subscriptions/<sub>/resourceGroups/<rg>/providers/<type>/<name>)"),
            );
        }
    };
    for (i, id) in s.container_apps.iter().enumerate() {
        let p = format!("{path}.container_apps.{i}");
        check_id(p.clone(), id, v);
        if !id
            .to_lowercase()
            .contains("/providers/microsoft.app/containerapps/")
        {
            v.error(
                p,
                "not a Container App (…/providers/Microsoft.App/containerApps/<name>)",
            );
        }
    }
    for (i, m) in s.metrics.iter().enumerate() {
        let p = format!("{path}.metrics.{i}");
        check_id(format!("{p}.resource_id"), &m.resource_id, v);
        if m.metrics.is_empty() {
            v.error(format!("{p}.metrics"), "name at least one metric");
        }
        if m.metrics.len() > 20 {
            v.error(
                format!("{p}.metrics"),
                "Azure Monitor takes at most 20 metrics per request",
            );
        }
        for (j, a) in m.aggregations.iter().enumerate() {
            if !["average", "minimum", "maximum", "total", "count"]
                .contains(&a.to_lowercase().as_str())
            {
                v.error(
                    format!("{p}.aggregations.{j}"),
                    format!(
                        "unknown aggregation {a:?}: use average, minimum, maximum, total or count"
                    ),
                );
            }
        }
        if let Some(i) = m.interval {
            if i.0 < Duration::from_secs(60) {
                v.error(
                    format!("{p}.interval"),
                    "Azure Monitor's finest time grain is 1m",
                );
            }
        }
    }
    if s.container_apps.is_empty() && s.metrics.is_empty() {
        v.error(
            path.to_string(),
            "list container_apps or metrics (or remove the section)",
        );
    }
}

pub const FAMILIES: &[(&str, &str, &str)] = &[
    (
        "azure_containerapp_revision_active",
        "gauge",
        "1 when the revision is active.",
    ),
    (
        "azure_containerapp_revision_replicas",
        "gauge",
        "Replicas of the revision (properties.replicas).",
    ),
    (
        "azure_containerapp_revision_traffic_weight",
        "gauge",
        "Percent of traffic the revision gets.",
    ),
    (
        "azure_containerapp_revision_healthy",
        "gauge",
        "1 when the revision's healthState is Healthy (label health_state).",
    ),
    (
        "azure_containerapp_revision_running",
        "gauge",
        "1 when the revision's runningState is Running (label running_state).",
    ),
    (
        "azure_containerapp_revision_created_timestamp_seconds",
        "gauge",
        "When the revision was created.",
    ),
    (
        "azure_containerapp_replica_running",
        "gauge",
        "1 when the replica is running.",
    ),
    (
        "azure_containerapp_replica_container_restarts_total",
        "counter",
        "Restarts of each container of a replica.",
    ),
    (
        "azure_containerapp_replica_container_ready",
        "gauge",
        "1 when the container is ready.",
    ),
    (
        "azure_containerapp_min_replicas",
        "gauge",
        "template.scale.minReplicas of the app.",
    ),
    (
        "azure_containerapp_max_replicas",
        "gauge",
        "template.scale.maxReplicas of the app.",
    ),
    (
        "azure_monitor_metric",
        "gauge",
        "Latest complete Azure Monitor data point, by metric and aggregation.",
    ),
];

/// One ARM client per (endpoint, authority host, timeout) for the whole
/// process: its clones share the throttle state, because ARM's read quota is
/// per subscription, so a 429 on one target must pause the others too.
type ClientKey = (String, Option<String>, Duration);
static CLIENTS: LazyLock<Mutex<HashMap<ClientKey, AzureClient>>> =
    LazyLock::new(|| Mutex::new(HashMap::new()));

/// The shared client for an endpoint, for the `scale` action: the same
/// credential, token cache and throttle state the collector uses.
pub(crate) fn client_for(
    endpoint: &str,
    authority_host: Option<&str>,
    timeout: Duration,
) -> Result<AzureClient, CollectError> {
    shared_client(
        &AzureTarget {
            management_endpoint: endpoint.to_string(),
            authority_host: authority_host.map(str::to_string),
            kind: AzureKind::ContainerApp(String::new()),
        },
        timeout,
    )
}

fn shared_client(t: &AzureTarget, timeout: Duration) -> Result<AzureClient, CollectError> {
    let key = (
        t.management_endpoint.clone(),
        t.authority_host.clone(),
        timeout,
    );
    if let Some(c) = CLIENTS.lock().get(&key) {
        return Ok(c.clone());
    }
    let cred = shared_credential(t.authority_host.as_deref())?;
    // Each request stays under the scrape timeout; the loop's own deadline
    // covers the round.
    let c = AzureClient::new(&t.management_endpoint, cred, timeout)
        .map_err(|e| CollectError::Other(e.to_string()))?;
    CLIENTS.lock().insert(key, c.clone());
    Ok(c)
}

/// One token cache per authority host for the whole process.
type Credential = Arc<dyn azure_core::auth::TokenCredential>;
static CREDENTIALS: LazyLock<Mutex<HashMap<Option<String>, Credential>>> =
    LazyLock::new(|| Mutex::new(HashMap::new()));

/// Token requests get this long; ARM calls get the scrape timeout.
const TOKEN_TIMEOUT: Duration = Duration::from_secs(10);

fn shared_credential(
    authority_host: Option<&str>,
) -> Result<Arc<dyn azure_core::auth::TokenCredential>, CollectError> {
    let key = authority_host.map(str::to_string);
    if let Some(c) = CREDENTIALS.lock().get(&key) {
        return Ok(c.clone());
    }
    let http = reqwest::Client::builder()
        .timeout(TOKEN_TIMEOUT)
        .build()
        .map_err(|e| CollectError::Other(format!("cannot build HTTP client: {e}")))?;
    let c = azure_read::credential(authority_host, Arc::new(http))
        .map_err(|e| CollectError::Other(e.to_string()))?;
    CREDENTIALS.lock().insert(key, c.clone());
    Ok(c)
}

/// Reads one Azure target.
pub struct AzureCollector {
    target: AzureTarget,
    timeout: Duration,
    client: Option<AzureClient>,
}

impl AzureCollector {
    pub fn new(target: AzureTarget, timeout: Duration) -> Self {
        AzureCollector {
            target,
            timeout,
            client: None,
        }
    }
}

/// ISO 8601 time grain of a duration of whole minutes (`PT1M`, `PT1H`).
fn time_grain(d: Duration) -> String {
    let mins = (d.as_secs() / 60).max(1);
    if mins.is_multiple_of(24 * 60) {
        format!("P{}D", mins / (24 * 60))
    } else if mins.is_multiple_of(60) {
        format!("PT{}H", mins / 60)
    } else {
        format!("PT{mins}M")
    }
}

impl Collector for AzureCollector {
    async fn collect(&mut self, out: &mut ScrapeBatch<'_>) -> Result<(), CollectError> {
        if self.client.is_none() {
            self.client = Some(shared_client(&self.target, self.timeout)?);
        }
        let Some(client) = self.client.as_ref() else {
            return Err(CollectError::Other("no ARM client".into()));
        };
        let mut samples: Vec<AzureSample> = Vec::new();
        let r = match &self.target.kind {
            AzureKind::ContainerApp(id) => client.container_app(id, &mut samples).await,
            AzureKind::Metrics(m) => {
                let grain = m.interval.map(|d| d.0).unwrap_or(Duration::from_secs(60));
                // Five grains back: Monitor's newest bucket is often still
                // empty, and the one before may arrive late.
                client
                    .metrics(
                        &m.resource_id,
                        &m.metrics,
                        &m.aggregations,
                        &time_grain(grain),
                        grain * 5,
                        &mut samples,
                    )
                    .await
            }
        };
        r.map_err(|e| CollectError::Other(e.to_string()))?;
        for s in &samples {
            let l: Vec<(&str, &str)> = s
                .labels
                .iter()
                .map(|(k, v)| (k.as_ref(), v.as_str()))
                .collect();
            out.add(s.name, &l, s.value)?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn grains_and_names() {
        assert_eq!(time_grain(Duration::from_secs(60)), "PT1M");
        assert_eq!(time_grain(Duration::from_secs(300)), "PT5M");
        assert_eq!(time_grain(Duration::from_secs(3600)), "PT1H");
        assert_eq!(time_grain(Duration::from_secs(86400)), "P1D");
        assert_eq!(
            resource_name(
                "/subscriptions/s/resourceGroups/rg/providers/Microsoft.App/containerApps/api"
            ),
            "api"
        );
    }

    #[test]
    fn validation_names_fields() {
        let s = AzureSection {
            container_apps: vec![
                "/subscriptions/s/resourceGroups/rg/providers/Microsoft.Web/sites/x".into(),
            ],
            metrics: vec![MetricsTarget {
                resource_id: "not-an-id".into(),
                aggregations: vec!["median".into()],
                ..Default::default()
            }],
            ..Default::default()
        };
        let mut v = Validator::new();
        validate(&s, "collectors.azure", &mut v);
        let text = format!("{:?}", v.issues);
        for want in [
            "collectors.azure.container_apps.0",
            "collectors.azure.metrics.0.resource_id",
            "collectors.azure.metrics.0.metrics",
            "collectors.azure.metrics.0.aggregations.0",
        ] {
            assert!(text.contains(want), "{want} in {text}");
        }
    }
}
