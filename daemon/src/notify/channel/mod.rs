//! Channels: one [`Notifier`] per kind (Slack, PagerDuty, email, webhook)
//! and the worker every configured channel gets: a bounded send queue that
//! counts what it drops, a timeout per attempt, and bounded retries with
//! exponential backoff and jitter (honouring `Retry-After`).
//!
//! Owns delivery and the `homeostat_notifications_total{channel,result}`
//! metrics. It decides nothing about *whether* to notify; the dispatcher
//! does, and hears back whether the notification went out.

pub mod email;
pub mod pagerduty;
pub mod slack;
pub mod webhook;

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::registry::Registry;
use serde::Deserialize;
use tokio::sync::{mpsc, oneshot};

use crate::config::PromDuration;
use crate::notify::alertmanager::rfc3339_ms;

/// One alert as a notification carries it.
#[derive(Debug, Clone, PartialEq)]
pub struct NotifAlert {
    /// `firing` or `resolved`.
    pub status: &'static str,
    pub labels: BTreeMap<String, String>,
    pub annotations: BTreeMap<String, String>,
    pub starts_at_ms: i64,
    /// Only for resolved alerts; firing ones show Go's zero time, as
    /// Alertmanager does.
    pub ends_at_ms: Option<i64>,
    pub generator_url: String,
    pub fingerprint: u64,
    pub value: Option<f64>,
}

/// A playbook run a notification is about.
#[derive(Debug, Clone, PartialEq)]
pub struct RunEvent {
    pub run_id: String,
    pub playbook: String,
    pub target: String,
    /// `started`, `awaiting_approval`, `succeeded`, `failed`, `escalated`.
    pub event: String,
    pub summary: String,
}

/// What one receiver is told about one group, as Alertmanager's template
/// data.
#[derive(Debug, Clone, PartialEq)]
pub struct Notification {
    pub receiver: String,
    pub group_key: String,
    /// `firing` when any alert fires, else `resolved`.
    pub status: &'static str,
    pub group_labels: BTreeMap<String, String>,
    pub common_labels: BTreeMap<String, String>,
    pub common_annotations: BTreeMap<String, String>,
    pub external_url: String,
    pub alerts: Vec<NotifAlert>,
    pub run: Option<RunEvent>,
}

impl Notification {
    /// Builds the group-level fields from the alerts.
    pub fn new(
        receiver: &str,
        group_key: &str,
        group_labels: BTreeMap<String, String>,
        alerts: Vec<NotifAlert>,
        external_url: &str,
    ) -> Notification {
        let common = |f: fn(&NotifAlert) -> &BTreeMap<String, String>| {
            let mut it = alerts.iter();
            let mut c = it.next().map(|a| f(a).clone()).unwrap_or_default();
            for a in it {
                c.retain(|k, v| f(a).get(k) == Some(v));
            }
            c
        };
        let common_labels = common(|a| &a.labels);
        let common_annotations = common(|a| &a.annotations);
        let status = if alerts.iter().any(|a| a.status == "firing") {
            "firing"
        } else {
            "resolved"
        };
        Notification {
            receiver: receiver.to_string(),
            group_key: group_key.to_string(),
            status,
            group_labels,
            common_labels,
            common_annotations,
            external_url: external_url.to_string(),
            alerts,
            run: None,
        }
    }

    /// One firing test alert, for `homeostat notify test`.
    pub fn sample(receiver: &str, external_url: &str) -> Notification {
        let labels: BTreeMap<String, String> = [
            ("alertname", "HomeostatTestNotification"),
            ("severity", "info"),
            ("receiver", receiver),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
        let now = crate::collect::now_ms();
        let alert = NotifAlert {
            status: "firing",
            fingerprint: crate::notify::dispatch::fingerprint(&labels),
            labels: labels.clone(),
            annotations: [(
                "summary".to_string(),
                "Test notification from `homeostat notify test`; nothing is wrong.".to_string(),
            )]
            .into(),
            starts_at_ms: now,
            ends_at_ms: None,
            generator_url: external_url.to_string(),
            value: Some(1.0),
        };
        let key = format!(
            "{{}}:{{alertname=\"HomeostatTestNotification\", receiver={:?}}}",
            receiver
        );
        Notification::new(
            receiver,
            &key,
            [(
                "alertname".to_string(),
                "HomeostatTestNotification".to_string(),
            )]
            .into(),
            vec![alert],
            external_url,
        )
    }

    pub fn firing(&self) -> impl Iterator<Item = &NotifAlert> {
        self.alerts.iter().filter(|a| a.status == "firing")
    }

    pub fn resolved(&self) -> impl Iterator<Item = &NotifAlert> {
        self.alerts.iter().filter(|a| a.status == "resolved")
    }

    /// `[FIRING:2] HighLatency (api prod)`: Alertmanager's default title,
    /// group label values then the other common label values.
    pub fn title(&self) -> String {
        let mut t = format!("[{}", self.status.to_uppercase());
        if self.status == "firing" {
            t.push_str(&format!(":{}", self.firing().count()));
        }
        t.push(']');
        let group: Vec<&str> = self.group_labels.values().map(String::as_str).collect();
        if !group.is_empty() {
            t.push(' ');
            t.push_str(&group.join(" "));
        }
        let rest: Vec<&str> = self
            .common_labels
            .iter()
            .filter(|(k, _)| !self.group_labels.contains_key(*k))
            .map(|(_, v)| v.as_str())
            .collect();
        if !rest.is_empty() {
            t.push_str(&format!(" ({})", rest.join(" ")));
        }
        t
    }

    /// Alertmanager's webhook payload, version 4.
    pub fn webhook_payload(&self, max_alerts: usize) -> serde_json::Value {
        let n = if max_alerts == 0 {
            self.alerts.len()
        } else {
            max_alerts.min(self.alerts.len())
        };
        let alerts: Vec<serde_json::Value> = self.alerts[..n]
            .iter()
            .map(|a| {
                serde_json::json!({
                    "status": a.status,
                    "labels": a.labels,
                    "annotations": a.annotations,
                    "startsAt": rfc3339_ms(a.starts_at_ms),
                    "endsAt": a.ends_at_ms.map_or_else(|| "0001-01-01T00:00:00Z".to_string(), rfc3339_ms),
                    "generatorURL": a.generator_url,
                    "fingerprint": format!("{:016x}", a.fingerprint),
                })
            })
            .collect();
        serde_json::json!({
            "version": "4",
            "groupKey": self.group_key,
            "truncatedAlerts": self.alerts.len() - n,
            "status": self.status,
            "receiver": self.receiver,
            "groupLabels": self.group_labels,
            "commonLabels": self.common_labels,
            "commonAnnotations": self.common_annotations,
            "externalURL": self.external_url,
            "alerts": alerts,
        })
    }
}

/// Why a send failed, and whether trying again can help.
#[derive(Debug, Clone, thiserror::Error)]
pub enum SendError {
    /// Timeouts, 429, 5xx, refused connections.
    #[error("{message}")]
    Retryable {
        message: String,
        /// From `Retry-After`, when the service said.
        after: Option<Duration>,
    },
    /// A 4xx or a refusal that the same request will meet again.
    #[error("{0}")]
    Fatal(String),
}

impl SendError {
    pub fn retry(m: impl Into<String>) -> Self {
        SendError::Retryable {
            message: m.into(),
            after: None,
        }
    }

    /// Classifies an HTTP answer the way every HTTP channel needs it.
    pub fn from_status(
        status: reqwest::StatusCode,
        headers: &reqwest::header::HeaderMap,
        body: &str,
    ) -> Self {
        let body: String = body.chars().take(300).collect();
        let message = format!("answered {status}: {body}");
        if status == reqwest::StatusCode::TOO_MANY_REQUESTS || status.is_server_error() {
            let after = headers
                .get(reqwest::header::RETRY_AFTER)
                .and_then(|v| v.to_str().ok())
                .and_then(|v| v.trim().parse::<u64>().ok())
                .map(Duration::from_secs);
            SendError::Retryable { message, after }
        } else {
            SendError::Fatal(message)
        }
    }

    pub fn from_reqwest(e: &reqwest::Error) -> Self {
        // reqwest's Display for a failed request includes the URL, which for
        // Slack incoming webhooks is the secret itself.
        SendError::retry(format!("request failed: {}", describe_reqwest(e)))
    }
}

/// Sends an HTTP request and classifies the answer; the body of a 2xx
/// answer is returned for channels that read it (Slack's Web API).
pub async fn send_http(req: reqwest::RequestBuilder) -> Result<String, SendError> {
    let r = req.send().await.map_err(|e| SendError::from_reqwest(&e))?;
    let (status, headers) = (r.status(), r.headers().clone());
    let body = r.text().await.unwrap_or_default();
    if status.is_success() {
        Ok(body)
    } else {
        Err(SendError::from_status(status, &headers, &body))
    }
}

/// A reqwest error without its URL.
pub fn describe_reqwest(e: &reqwest::Error) -> String {
    let kind = if e.is_timeout() {
        "timed out"
    } else if e.is_connect() {
        "connection failed"
    } else if e.is_body() || e.is_decode() {
        "bad response body"
    } else {
        "request error"
    };
    let mut cause = String::new();
    let mut src = std::error::Error::source(e);
    while let Some(s) = src {
        cause = s.to_string();
        src = s.source();
    }
    if cause.is_empty() {
        kind.to_string()
    } else {
        format!("{kind}: {cause}")
    }
}

/// One kind of channel.
#[async_trait::async_trait]
pub trait Notifier: Send + Sync {
    /// `slack`, `pagerduty`, `email`, `webhook`: the `channel` label.
    fn kind(&self) -> &'static str;
    /// Whether resolved alerts are sent.
    fn send_resolved(&self) -> bool;
    /// One attempt; the worker times it out and retries.
    async fn notify(&self, n: &Notification) -> Result<(), SendError>;
}

/// `notify.retry`.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct RetryConfig {
    /// Attempts per notification, the first included (default 5).
    pub max_attempts: u32,
    /// Wait after the first failure; doubles each time (default 500ms).
    pub initial_backoff: PromDuration,
    /// Longest wait between attempts, `Retry-After` included (default 30s).
    pub max_backoff: PromDuration,
}

impl Default for RetryConfig {
    fn default() -> Self {
        RetryConfig {
            max_attempts: 5,
            initial_backoff: PromDuration(Duration::from_millis(500)),
            max_backoff: PromDuration::from_secs(30),
        }
    }
}

impl RetryConfig {
    /// Backoff before attempt `n` (1-based retries), with full jitter in
    /// [half, whole] so that many channels failing together spread out.
    pub fn backoff(&self, retry: u32, after: Option<Duration>) -> Duration {
        let base = self
            .initial_backoff
            .0
            .saturating_mul(1u32 << retry.saturating_sub(1).min(20));
        let capped = base.min(self.max_backoff.0);
        let jittered = capped.mul_f64(0.5 + fastrand::f64() * 0.5);
        match after {
            Some(a) => a.min(self.max_backoff.0).max(jittered),
            None => jittered,
        }
    }
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ChannelResult {
    pub channel: String,
    pub result: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ChannelLabel {
    pub channel: String,
}

/// The channel metrics, registered once and shared by every worker.
#[derive(Clone, Default)]
pub struct ChannelMetrics {
    pub total: Family<ChannelResult, Counter>,
    pub retries: Family<ChannelLabel, Counter>,
    pub queue_length: Family<ChannelLabel, Gauge>,
}

impl ChannelMetrics {
    pub fn register(registry: &mut Registry) -> Self {
        let m = ChannelMetrics::default();
        registry.register(
            "homeostat_notifications",
            "Notifications by channel and result: sent, failed (after the last retry), dropped (queue full).",
            m.total.clone(),
        );
        registry.register(
            "homeostat_notification_retries",
            "Send attempts after the first, by channel.",
            m.retries.clone(),
        );
        registry.register(
            "homeostat_notification_queue_length",
            "Notifications waiting in channel send queues, by channel.",
            m.queue_length.clone(),
        );
        m
    }

    fn count(&self, channel: &str, result: &str) {
        self.total
            .get_or_create(&ChannelResult {
                channel: channel.to_string(),
                result: result.to_string(),
            })
            .inc();
    }
}

/// A notification waiting to go out, and who wants to hear how it went.
pub struct Job {
    pub notification: Notification,
    pub done: Option<oneshot::Sender<Result<(), String>>>,
}

/// A channel with its queue. Dropping every clone lets the worker drain
/// what is queued and stop.
#[derive(Clone)]
pub struct Channel {
    pub notifier: Arc<dyn Notifier>,
    tx: mpsc::Sender<Job>,
    metrics: ChannelMetrics,
}

impl Channel {
    /// Starts the worker; it ends when every handle is dropped and the
    /// queue is empty.
    pub fn start(
        notifier: Arc<dyn Notifier>,
        capacity: usize,
        retry: RetryConfig,
        timeout: Duration,
        metrics: ChannelMetrics,
    ) -> Channel {
        let (tx, rx) = mpsc::channel(capacity.max(1));
        tokio::spawn(worker(
            notifier.clone(),
            rx,
            retry,
            timeout,
            metrics.clone(),
        ));
        Channel {
            notifier,
            tx,
            metrics,
        }
    }

    /// Queues without waiting; a full queue drops the notification, counts
    /// it and tells `done`.
    pub fn enqueue(&self, job: Job) {
        let kind = self.notifier.kind();
        match self.tx.try_send(job) {
            Ok(()) => {
                self.metrics
                    .queue_length
                    .get_or_create(&ChannelLabel {
                        channel: kind.into(),
                    })
                    .inc();
            }
            Err(e) => {
                self.metrics.count(kind, "dropped");
                tracing::warn!(
                    channel = kind,
                    "notification queue full, notification dropped"
                );
                let job = match e {
                    mpsc::error::TrySendError::Full(j) | mpsc::error::TrySendError::Closed(j) => j,
                };
                if let Some(d) = job.done {
                    let _ = d.send(Err("queue full".into()));
                }
            }
        }
    }

    /// Sends now, with the worker's retries, and waits for the outcome
    /// (for `homeostat notify test`).
    pub async fn send_now(&self, n: Notification) -> Result<(), String> {
        let (tx, rx) = oneshot::channel();
        self.enqueue(Job {
            notification: n,
            done: Some(tx),
        });
        rx.await.unwrap_or_else(|_| Err("channel stopped".into()))
    }
}

/// Sends in flight at once per channel: enough that thousands of groups
/// flushing together do not queue behind one slow request, few enough to
/// stay inside chat services' rate limits (a 429 is honoured anyway). The
/// dispatcher never has two sends of the same group in flight, so a
/// group's notifications stay in order.
const CONCURRENT_SENDS: usize = 4;

async fn worker(
    notifier: Arc<dyn Notifier>,
    mut rx: mpsc::Receiver<Job>,
    retry: RetryConfig,
    timeout: Duration,
    metrics: ChannelMetrics,
) {
    let kind = notifier.kind();
    let permits = Arc::new(tokio::sync::Semaphore::new(CONCURRENT_SENDS));
    let mut running = tokio::task::JoinSet::new();
    while let Some(job) = rx.recv().await {
        metrics
            .queue_length
            .get_or_create(&ChannelLabel {
                channel: kind.into(),
            })
            .dec();
        let Ok(permit) = permits.clone().acquire_owned().await else {
            break;
        };
        let (notifier, retry, metrics) = (notifier.clone(), retry.clone(), metrics.clone());
        running.spawn(async move {
            let outcome = deliver(
                notifier.as_ref(),
                &job.notification,
                &retry,
                timeout,
                &metrics,
            )
            .await;
            if let Some(d) = job.done {
                let _ = d.send(outcome);
            }
            drop(permit);
        });
        while running.try_join_next().is_some() {}
    }
    // The queue is closed (reload or shutdown): finish what was taken.
    while running.join_next().await.is_some() {}
}

/// One notification, with retries; counted once by its outcome.
async fn deliver(
    notifier: &dyn Notifier,
    n: &Notification,
    retry: &RetryConfig,
    timeout: Duration,
    metrics: &ChannelMetrics,
) -> Result<(), String> {
    let kind = notifier.kind();
    let mut attempt = 0u32;
    let outcome = loop {
        attempt += 1;
        let r = match tokio::time::timeout(timeout, notifier.notify(n)).await {
            Ok(r) => r,
            Err(_) => Err(SendError::retry(format!("timed out after {timeout:?}"))),
        };
        match r {
            Ok(()) => break Ok(()),
            Err(SendError::Fatal(m)) => break Err(m),
            Err(SendError::Retryable { message, after }) => {
                if attempt >= retry.max_attempts.max(1) {
                    break Err(format!("{message} (gave up after {attempt} attempts)"));
                }
                let wait = retry.backoff(attempt, after);
                tracing::debug!(channel = kind, receiver = %n.receiver, attempt, error = %message, ?wait, "notification failed, retrying");
                metrics
                    .retries
                    .get_or_create(&ChannelLabel {
                        channel: kind.into(),
                    })
                    .inc();
                tokio::time::sleep(wait).await;
            }
        }
    };
    match &outcome {
        Ok(()) => {
            metrics.count(kind, "sent");
            tracing::debug!(channel = kind, receiver = %n.receiver, group = %n.group_key, "notification sent");
        }
        Err(e) => {
            metrics.count(kind, "failed");
            tracing::warn!(channel = kind, receiver = %n.receiver, group = %n.group_key, error = %e, "notification failed");
        }
    }
    outcome
}

/// Text of the labels worth showing: all but alertname.
pub fn label_text(labels: &BTreeMap<String, String>) -> String {
    labels
        .iter()
        .filter(|(k, _)| k.as_str() != "alertname")
        .map(|(k, v)| format!("{k}={v}"))
        .collect::<Vec<_>>()
        .join(", ")
}

/// The summary of an alert: `summary`, else `description`, else the name.
pub fn alert_summary(a: &NotifAlert) -> String {
    a.annotations
        .get("summary")
        .or_else(|| a.annotations.get("description"))
        .or_else(|| a.labels.get("alertname"))
        .cloned()
        .unwrap_or_default()
}

/// `1.234` or `1.2e+06` as Prometheus's `humanize` would not bother with:
/// short and exact enough for a chat line.
pub fn value_text(v: f64) -> String {
    if v.fract() == 0.0 && v.abs() < 1e15 {
        format!("{v:.0}")
    } else {
        format!("{v:.4}")
            .trim_end_matches('0')
            .trim_end_matches('.')
            .to_string()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    pub(crate) fn alert(status: &'static str, labels: &[(&str, &str)]) -> NotifAlert {
        NotifAlert {
            status,
            labels: labels
                .iter()
                .map(|(a, b)| (a.to_string(), b.to_string()))
                .collect(),
            annotations: BTreeMap::new(),
            starts_at_ms: 1_700_000_000_000,
            ends_at_ms: (status == "resolved").then_some(1_700_000_060_000),
            generator_url: String::new(),
            fingerprint: 1,
            value: None,
        }
    }

    #[test]
    fn common_labels_title_and_payload() {
        let n = Notification::new(
            "team",
            "{}:{alertname=\"HighLatency\"}",
            [("alertname".to_string(), "HighLatency".to_string())].into(),
            vec![
                alert(
                    "firing",
                    &[("alertname", "HighLatency"), ("env", "prod"), ("i", "a")],
                ),
                alert(
                    "resolved",
                    &[("alertname", "HighLatency"), ("env", "prod"), ("i", "b")],
                ),
            ],
            "http://h:9400",
        );
        assert_eq!(n.common_labels.len(), 2);
        assert_eq!(n.title(), "[FIRING:1] HighLatency (prod)");
        let p = n.webhook_payload(1);
        assert_eq!(p["version"], "4");
        assert_eq!(p["truncatedAlerts"], 1);
        assert_eq!(p["alerts"][0]["endsAt"], "0001-01-01T00:00:00Z");
        assert_eq!(p["alerts"][0]["fingerprint"], "0000000000000001");
    }

    #[test]
    fn backoff_grows_is_capped_and_honours_retry_after() {
        let r = RetryConfig::default();
        for _ in 0..50 {
            let b1 = r.backoff(1, None);
            assert!(b1 >= Duration::from_millis(250) && b1 <= Duration::from_millis(500));
            let b4 = r.backoff(4, None);
            assert!(b4 >= Duration::from_secs(2) && b4 <= Duration::from_secs(4));
            assert!(r.backoff(30, None) <= Duration::from_secs(30));
            assert!(r.backoff(1, Some(Duration::from_secs(3))) >= Duration::from_secs(3));
            assert_eq!(
                r.backoff(1, Some(Duration::from_secs(99))),
                Duration::from_secs(30)
            );
        }
    }

    struct Flaky(parking_lot::Mutex<Vec<SendError>>);

    #[async_trait::async_trait]
    impl Notifier for Flaky {
        fn kind(&self) -> &'static str {
            "webhook"
        }
        fn send_resolved(&self) -> bool {
            true
        }
        async fn notify(&self, _n: &Notification) -> Result<(), SendError> {
            match self.0.lock().pop() {
                Some(e) => Err(e),
                None => Ok(()),
            }
        }
    }

    /// Never answers, so the queue behind it fills.
    struct Stuck;

    #[async_trait::async_trait]
    impl Notifier for Stuck {
        fn kind(&self) -> &'static str {
            "slack"
        }
        fn send_resolved(&self) -> bool {
            true
        }
        async fn notify(&self, _n: &Notification) -> Result<(), SendError> {
            std::future::pending().await
        }
    }

    #[tokio::test]
    async fn a_full_queue_drops_and_counts() {
        let metrics = ChannelMetrics::default();
        let ch = Channel::start(
            Arc::new(Stuck),
            2,
            RetryConfig::default(),
            Duration::from_secs(3600),
            metrics.clone(),
        );
        let n = Notification::new("r", "k", BTreeMap::new(), vec![], "");
        // One taken by the worker, two queued, the rest dropped.
        ch.enqueue(Job {
            notification: n.clone(),
            done: None,
        });
        tokio::time::sleep(Duration::from_millis(20)).await;
        for _ in 0..2 {
            ch.enqueue(Job {
                notification: n.clone(),
                done: None,
            });
        }
        let dropped = ch.send_now(n.clone()).await;
        assert_eq!(dropped, Err("queue full".to_string()));
        ch.enqueue(Job {
            notification: n,
            done: None,
        });
        let count = metrics
            .total
            .get_or_create(&ChannelResult {
                channel: "slack".into(),
                result: "dropped".into(),
            })
            .get();
        assert_eq!(count, 2);
        let queued = metrics
            .queue_length
            .get_or_create(&ChannelLabel {
                channel: "slack".into(),
            })
            .get();
        assert_eq!(queued, 2);
    }

    #[tokio::test]
    async fn worker_retries_then_gives_up_on_fatal() {
        let metrics = ChannelMetrics::default();
        let retry = RetryConfig {
            max_attempts: 3,
            initial_backoff: PromDuration(Duration::from_millis(1)),
            max_backoff: PromDuration(Duration::from_millis(5)),
        };
        let n = Notification::new("r", "k", BTreeMap::new(), vec![], "");
        let flaky = Arc::new(Flaky(parking_lot::Mutex::new(vec![
            SendError::retry("500"),
            SendError::retry("429"),
        ])));
        let ch = Channel::start(
            flaky,
            4,
            retry.clone(),
            Duration::from_secs(1),
            metrics.clone(),
        );
        assert_eq!(ch.send_now(n.clone()).await, Ok(()));
        let get = |r: &str| {
            metrics
                .total
                .get_or_create(&ChannelResult {
                    channel: "webhook".into(),
                    result: r.into(),
                })
                .get()
        };
        assert_eq!(get("sent"), 1);
        let retries = metrics
            .retries
            .get_or_create(&ChannelLabel {
                channel: "webhook".into(),
            })
            .get();
        assert_eq!(retries, 2);
        let fatal = Arc::new(Flaky(parking_lot::Mutex::new(vec![SendError::Fatal(
            "400".into(),
        )])));
        let ch = Channel::start(fatal, 4, retry, Duration::from_secs(1), metrics.clone());
        assert!(ch.send_now(n).await.is_err());
        assert_eq!(get("failed"), 1);
    }
}
