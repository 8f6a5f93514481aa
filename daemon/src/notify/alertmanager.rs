//! Delivery to Alertmanager's API v2 (`POST /api/v2/alerts`), as
//! Prometheus's notifier does it: a bounded queue that drops the oldest
//! alerts when full, batches of at most 64, every batch to every configured
//! Alertmanager concurrently, a timeout per request, and counters for what
//! was sent, failed and dropped.
//!
//! Owns the `alerting:` config section and the HTTP client. It does not
//! decide when an alert is (re)sent; the rules stage does (resend delay,
//! resolved retention) and hands over finished [`AmAlert`]s.

use std::collections::VecDeque;
use std::sync::Arc;
use std::time::{Duration, Instant, UNIX_EPOCH};

use parking_lot::Mutex;
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::Histogram;
use prometheus_client::registry::Registry;
use serde::{Deserialize, Serialize};
use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;

use crate::config::{PromDuration, Validator};

/// Most alerts in one request, as in Prometheus.
const MAX_BATCH: usize = 64;

/// The `alerting:` section, written as in `prometheus.yml`.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(default)]
pub struct AlertingConfig {
    pub alertmanagers: Vec<AlertmanagerConfig>,
    /// Alerts held while Alertmanagers are slow or down; beyond it the
    /// oldest are dropped and counted (Prometheus's
    /// `--alertmanager.notification-queue-capacity`).
    pub queue_capacity: usize,
}

impl Default for AlertingConfig {
    fn default() -> Self {
        AlertingConfig {
            alertmanagers: Vec::new(),
            queue_capacity: 10_000,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(default)]
pub struct AlertmanagerConfig {
    pub static_configs: Vec<AmStaticConfig>,
    /// `http` or `https`.
    pub scheme: String,
    /// Prefix of Alertmanager's API path (Alertmanager's `--web.route-prefix`).
    pub path_prefix: String,
    /// Per-request timeout.
    pub timeout: PromDuration,
    /// Only `v2` exists in Alertmanager 0.25 and later.
    pub api_version: String,
}

impl Default for AlertmanagerConfig {
    fn default() -> Self {
        AlertmanagerConfig {
            static_configs: Vec::new(),
            scheme: "http".into(),
            path_prefix: "/".into(),
            timeout: PromDuration::from_secs(10),
            api_version: "v2".into(),
        }
    }
}

#[derive(Debug, Clone, PartialEq, Default, Deserialize)]
#[serde(default)]
pub struct AmStaticConfig {
    pub targets: Vec<String>,
}

impl AlertingConfig {
    pub fn validate(&self, path: &str, v: &mut Validator) {
        if self.queue_capacity == 0 {
            v.error(format!("{path}.queue_capacity"), "must be greater than 0");
        }
        for (i, am) in self.alertmanagers.iter().enumerate() {
            let p = format!("{path}.alertmanagers.{i}");
            if am.scheme != "http" && am.scheme != "https" {
                v.error(
                    format!("{p}.scheme"),
                    format!("{:?} is not http or https", am.scheme),
                );
            }
            if am.api_version != "v2" {
                v.error(
                    format!("{p}.api_version"),
                    format!(
                        "{:?} is not supported; Alertmanager 0.25 and later only speak v2",
                        am.api_version
                    ),
                );
            }
            if am.timeout.0.is_zero() {
                v.error(format!("{p}.timeout"), "must be greater than 0");
            }
            for (j, sc) in am.static_configs.iter().enumerate() {
                for (k, t) in sc.targets.iter().enumerate() {
                    if !t.contains(':') || t.contains('/') {
                        v.error(
                            format!("{p}.static_configs.{j}.targets.{k}"),
                            format!("{t:?} is not a host:port address"),
                        );
                    }
                }
            }
        }
    }

    /// Every Alertmanager's alerts endpoint with its timeout.
    pub fn endpoints(&self) -> Vec<(String, Duration)> {
        let mut out = Vec::new();
        for am in &self.alertmanagers {
            let prefix = am.path_prefix.trim_end_matches('/');
            for sc in &am.static_configs {
                for t in &sc.targets {
                    out.push((
                        format!("{}://{t}{prefix}/api/v2/alerts", am.scheme),
                        am.timeout.0,
                    ));
                }
            }
        }
        out
    }
}

/// An alert in Alertmanager's v2 `postableAlert` shape.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct AmAlert {
    pub labels: std::collections::BTreeMap<String, String>,
    pub annotations: std::collections::BTreeMap<String, String>,
    #[serde(rename = "startsAt")]
    pub starts_at: String,
    #[serde(rename = "endsAt")]
    pub ends_at: String,
    #[serde(rename = "generatorURL")]
    pub generator_url: String,
    /// The expression's value, for channels that show it; not part of
    /// Alertmanager's API.
    #[serde(skip)]
    pub value: Option<f64>,
}

/// Milliseconds since the epoch as RFC 3339 with milliseconds, UTC.
pub fn rfc3339_ms(ms: i64) -> String {
    let t = UNIX_EPOCH + Duration::from_millis(ms.max(0) as u64);
    humantime::format_rfc3339_millis(t).to_string()
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct AmLabels {
    alertmanager: String,
}

#[derive(Clone)]
struct Metrics {
    sent: Family<AmLabels, Counter>,
    errors: Family<AmLabels, Counter>,
    latency: Family<AmLabels, Histogram>,
    dropped: Counter,
    queued: Counter,
    queue_length: Gauge,
    queue_capacity: Gauge,
    discovered: Gauge,
}

struct Shared {
    queue: Mutex<VecDeque<AmAlert>>,
    /// Endpoints and capacity; replaced on reload.
    config: Mutex<(Vec<(String, Duration)>, usize)>,
    more: Notify,
    metrics: Metrics,
    local: Mutex<Option<super::Dispatcher>>,
}

/// Handle to the delivery queue; cheap to clone.
#[derive(Clone)]
pub struct AlertmanagerSender {
    shared: Arc<Shared>,
}

impl AlertmanagerSender {
    /// Creates the queue and registers its metrics.
    pub fn new(registry: &mut Registry) -> Self {
        let metrics = Metrics {
            sent: Family::default(),
            errors: Family::default(),
            latency: Family::new_with_constructor(|| {
                Histogram::new([
                    0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0,
                ])
            }),
            dropped: Counter::default(),
            queued: Counter::default(),
            queue_length: Gauge::default(),
            queue_capacity: Gauge::default(),
            discovered: Gauge::default(),
        };
        registry.register(
            "homeostat_notifications_sent",
            "Alerts sent, per Alertmanager.",
            metrics.sent.clone(),
        );
        registry.register(
            "homeostat_notifications_errors",
            "Alerts whose delivery failed, per Alertmanager.",
            metrics.errors.clone(),
        );
        registry.register(
            "homeostat_notifications_latency_seconds",
            "Time taken to send a batch of alerts, per Alertmanager.",
            metrics.latency.clone(),
        );
        registry.register(
            "homeostat_notifications_dropped",
            "Alerts dropped: the queue was full, or no Alertmanager took them.",
            metrics.dropped.clone(),
        );
        registry.register(
            "homeostat_notifications_queued",
            "Alerts queued for delivery to Alertmanagers.",
            metrics.queued.clone(),
        );
        registry.register(
            "homeostat_notifications_queue_length",
            "Alerts waiting in the delivery queue.",
            metrics.queue_length.clone(),
        );
        registry.register(
            "homeostat_notifications_queue_capacity",
            "Capacity of the delivery queue (alerting.queue_capacity).",
            metrics.queue_capacity.clone(),
        );
        registry.register(
            "homeostat_notifications_alertmanagers_discovered",
            "Alertmanagers alerts are sent to.",
            metrics.discovered.clone(),
        );
        AlertmanagerSender {
            shared: Arc::new(Shared {
                queue: Mutex::new(VecDeque::new()),
                config: Mutex::new((Vec::new(), 10_000)),
                more: Notify::new(),
                metrics,
                local: Mutex::new(None),
            }),
        }
    }

    /// Applies (re)loaded settings.
    pub fn apply(&self, cfg: &AlertingConfig) {
        let endpoints = cfg.endpoints();
        let m = &self.shared.metrics;
        m.discovered.set(endpoints.len() as i64);
        m.queue_capacity.set(cfg.queue_capacity as i64);
        *self.shared.config.lock() = (endpoints, cfg.queue_capacity);
    }

    /// Also hands every alert to homeostat's own router.
    pub fn route_locally(&self, d: super::Dispatcher) {
        *self.shared.local.lock() = Some(d);
    }

    /// Queues alerts; the oldest are dropped when the queue is full.
    pub fn send(&self, alerts: Vec<AmAlert>) {
        if alerts.is_empty() {
            return;
        }
        let local = self.shared.local.lock().clone();
        if let Some(d) = local {
            d.put_am(&alerts);
        }
        let (has_targets, cap) = {
            let c = self.shared.config.lock();
            (!c.0.is_empty(), c.1)
        };
        if !has_targets {
            return;
        }
        let m = &self.shared.metrics;
        m.queued.inc_by(alerts.len() as u64);
        let mut q = self.shared.queue.lock();
        q.extend(alerts);
        if q.len() > cap {
            let over = q.len() - cap;
            q.drain(..over);
            m.dropped.inc_by(over as u64);
            tracing::warn!(
                dropped = over,
                "alert queue full, dropped the oldest alerts"
            );
        }
        m.queue_length.set(q.len() as i64);
        drop(q);
        self.shared.more.notify_one();
    }

    /// Delivers queued alerts until `stop`; what is queued at stop is sent
    /// once more (bounded by the request timeout).
    pub async fn run(self, client: reqwest::Client, stop: CancellationToken) {
        loop {
            tokio::select! {
                _ = stop.cancelled() => {
                    self.drain(&client).await;
                    break;
                }
                _ = self.shared.more.notified() => self.drain(&client).await,
            }
        }
    }

    async fn drain(&self, client: &reqwest::Client) {
        loop {
            let batch: Vec<AmAlert> = {
                let mut q = self.shared.queue.lock();
                let n = q.len().min(MAX_BATCH);
                let b = q.drain(..n).collect();
                self.shared.metrics.queue_length.set(q.len() as i64);
                b
            };
            if batch.is_empty() {
                return;
            }
            let endpoints = self.shared.config.lock().0.clone();
            let body = match serde_json::to_vec(&batch) {
                Ok(b) => b,
                Err(e) => {
                    tracing::error!(error = %e, "cannot encode alerts");
                    continue;
                }
            };
            let sends = endpoints
                .iter()
                .map(|(url, timeout)| self.post(client, url, *timeout, body.clone(), batch.len()));
            let ok = futures_util::future::join_all(sends).await;
            if !ok.iter().any(|x| *x) {
                self.shared.metrics.dropped.inc_by(batch.len() as u64);
            }
        }
    }

    async fn post(
        &self,
        client: &reqwest::Client,
        url: &str,
        timeout: Duration,
        body: Vec<u8>,
        n: usize,
    ) -> bool {
        let labels = AmLabels {
            alertmanager: url.to_owned(),
        };
        let m = &self.shared.metrics;
        let started = Instant::now();
        let res = client
            .post(url)
            .timeout(timeout)
            .header(reqwest::header::CONTENT_TYPE, "application/json")
            .body(body)
            .send()
            .await;
        m.latency
            .get_or_create(&labels)
            .observe(started.elapsed().as_secs_f64());
        let err = match res {
            Ok(r) if r.status().is_success() => None,
            Ok(r) => {
                let status = r.status();
                let text = r.text().await.unwrap_or_default();
                Some(format!("HTTP {status}: {}", text.trim()))
            }
            Err(e) => Some(e.to_string()),
        };
        match err {
            None => {
                m.sent.get_or_create(&labels).inc_by(n as u64);
                true
            }
            Some(e) => {
                m.errors.get_or_create(&labels).inc_by(n as u64);
                tracing::error!(alertmanager = %url, count = n, error = %e, "error sending alerts");
                false
            }
        }
    }

    /// Alerts waiting (for tests and the dashboard).
    pub fn queue_len(&self) -> usize {
        self.shared.queue.lock().len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn endpoints_and_timestamps() {
        let cfg = AlertingConfig {
            alertmanagers: vec![AlertmanagerConfig {
                static_configs: vec![AmStaticConfig {
                    targets: vec!["a:9093".into(), "b:9093".into()],
                }],
                path_prefix: "/am/".into(),
                ..Default::default()
            }],
            ..Default::default()
        };
        let e = cfg.endpoints();
        assert_eq!(e[0].0, "http://a:9093/am/api/v2/alerts");
        assert_eq!(e[1].0, "http://b:9093/am/api/v2/alerts");
        assert_eq!(rfc3339_ms(1_500_000_000_123), "2017-07-14T02:40:00.123Z");
    }

    #[test]
    fn full_queue_drops_oldest() {
        let mut reg = Registry::default();
        let s = AlertmanagerSender::new(&mut reg);
        s.apply(&AlertingConfig {
            alertmanagers: vec![AlertmanagerConfig {
                static_configs: vec![AmStaticConfig {
                    targets: vec!["127.0.0.1:1".into()],
                }],
                ..Default::default()
            }],
            queue_capacity: 2,
        });
        let a = |n: &str| AmAlert {
            labels: [("alertname".to_string(), n.to_string())].into(),
            annotations: Default::default(),
            starts_at: rfc3339_ms(0),
            ends_at: rfc3339_ms(0),
            generator_url: String::new(),
            value: None,
        };
        s.send(vec![a("1"), a("2"), a("3")]);
        assert_eq!(s.queue_len(), 2);
        assert_eq!(s.shared.metrics.dropped.get(), 1);
        assert_eq!(s.shared.queue.lock()[0].labels["alertname"], "2");
    }
}
