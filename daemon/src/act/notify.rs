//! Telling people from a playbook: the `notify` action and the
//! [`Escalator`] the engine pages a human through when a run fails, a guard
//! refuses, or a playbook's own breaker trips.
//!
//! A message about a run goes through the notify stage's routing tree
//! (label `alertname="HomeostatPlaybookRun"`, with `event`), so Slack,
//! PagerDuty and email receive it as a team routes it, with Approve / Deny
//! buttons when it waits for approval. Escalations (and lifecycle notices
//! with `playbooks.notify_lifecycle`) also go where homeostat's alerts go:
//! as an alert to the configured Alertmanagers and, in Alertmanager's
//! webhook format v4, to `webhook_urls`. Both are bounded: a timeout per
//! request, three attempts.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use parking_lot::Mutex;
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::registry::Registry;
use serde::Deserialize;
use serde_json::{json, Value};

use super::{typed, Action, ActionError, Ctx, ParamIssue};
use crate::collect::now_ms;
use crate::config::{PromDuration, Validator};
use crate::notify::alertmanager::rfc3339_ms;
use crate::notify::{AlertmanagerSender, AmAlert};

/// `playbooks.escalation`: where failures go.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct EscalationConfig {
    /// Send escalations as alerts to `alerting.alertmanagers` (default true).
    pub alertmanager: bool,
    /// Also POST them, in Alertmanager's webhook format v4, here.
    pub webhook_urls: Vec<String>,
    /// `severity` label of escalations (default `page`).
    pub severity: String,
    /// Per request (default 10s).
    pub timeout: PromDuration,
    /// How long an escalation alert stays active in Alertmanager (default 1h).
    pub resolve_after: PromDuration,
}

impl Default for EscalationConfig {
    fn default() -> Self {
        EscalationConfig {
            alertmanager: true,
            webhook_urls: Vec::new(),
            severity: "page".into(),
            timeout: PromDuration::from_secs(10),
            resolve_after: PromDuration::from_secs(3600),
        }
    }
}

impl EscalationConfig {
    pub fn validate(&self, path: &str, v: &mut Validator) {
        for (i, u) in self.webhook_urls.iter().enumerate() {
            if !reqwest::Url::parse(u).is_ok_and(|u| matches!(u.scheme(), "http" | "https")) {
                v.error(
                    format!("{path}.webhook_urls.{i}"),
                    format!("{u:?} is not an http(s) URL"),
                );
            }
        }
        if self.timeout.0.is_zero() {
            v.error(format!("{path}.timeout"), "must be greater than 0");
        }
    }
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ResultLabels {
    kind: String,
    result: String,
}

/// A message for people: what, about which run, how bad.
#[derive(Debug, Clone)]
pub struct Message {
    /// `HomeostatPlaybookEscalation` or `HomeostatPlaybookNotice`.
    pub alertname: String,
    pub severity: String,
    pub summary: String,
    pub labels: BTreeMap<String, String>,
    pub annotations: BTreeMap<String, String>,
}

/// Sends escalations and notices; cheap to clone.
#[derive(Clone)]
pub struct Escalator {
    cfg: Arc<Mutex<EscalationConfig>>,
    lifecycle: Arc<std::sync::atomic::AtomicBool>,
    dispatcher: Option<crate::notify::Dispatcher>,
    sender: Option<AlertmanagerSender>,
    http: reqwest::Client,
    external_url: Arc<Mutex<String>>,
    sent: Family<ResultLabels, Counter>,
}

impl Escalator {
    pub fn new(
        registry: &mut Registry,
        sender: Option<AlertmanagerSender>,
        dispatcher: Option<crate::notify::Dispatcher>,
    ) -> Self {
        let sent = Family::<ResultLabels, Counter>::default();
        registry.register(
            "homeostat_playbook_messages",
            "Escalations and notices sent by playbooks, by kind and result.",
            sent.clone(),
        );
        Escalator {
            cfg: Arc::new(Mutex::new(EscalationConfig::default())),
            lifecycle: Arc::new(std::sync::atomic::AtomicBool::new(false)),
            dispatcher,
            sender,
            http: reqwest::Client::new(),
            external_url: Arc::new(Mutex::new(String::new())),
            sent,
        }
    }

    pub fn detached() -> Self {
        Self::new(&mut Registry::default(), None, None)
    }

    /// `lifecycle`: also send lifecycle notices to Alertmanager and the
    /// escalation webhooks (`playbooks.notify_lifecycle`).
    pub fn apply(&self, cfg: &EscalationConfig, external_url: &str, lifecycle: bool) {
        self.lifecycle
            .store(lifecycle, std::sync::atomic::Ordering::Release);
        *self.cfg.lock() = cfg.clone();
        *self.external_url.lock() = external_url.to_string();
    }

    /// Sends to every channel; Ok when at least one took it (or none is
    /// configured, which the log says).
    pub async fn send(&self, m: Message) -> Result<Value, String> {
        let cfg = self.cfg.lock().clone();
        let escalation = m.alertname.ends_with("Escalation");
        let mut routed = 0;
        if let (Some(d), Some(run_id)) = (&self.dispatcher, m.annotations.get("run_id")) {
            let event = if escalation {
                "escalated".to_string()
            } else {
                m.labels
                    .get("event")
                    .cloned()
                    .unwrap_or_else(|| "notify".into())
            };
            let get = |k: &str| m.labels.get(k).cloned().unwrap_or_default();
            routed = d.playbook_event(
                crate::notify::channel::RunEvent {
                    run_id: run_id.clone(),
                    playbook: get("playbook"),
                    target: get("target"),
                    event,
                    summary: m.summary.clone(),
                },
                &m.severity,
                m.annotations.clone(),
            );
        }
        let is_notice = m.alertname == "HomeostatPlaybookNotice" && m.labels.contains_key("event");
        if is_notice && !self.lifecycle.load(std::sync::atomic::Ordering::Acquire) {
            return Ok(json!({ "routed": routed }));
        }
        let mut labels = m.labels.clone();
        labels.insert("alertname".into(), m.alertname.clone());
        labels.insert("severity".into(), m.severity.clone());
        let mut annotations = m.annotations.clone();
        annotations.insert("summary".into(), m.summary.clone());
        let now = now_ms();
        let alert = AmAlert {
            labels: labels.clone(),
            annotations: annotations.clone(),
            starts_at: rfc3339_ms(now),
            ends_at: rfc3339_ms(now + cfg.resolve_after.0.as_millis() as i64),
            generator_url: self.external_url.lock().clone(),
            value: None,
        };
        let kind = if escalation { "escalation" } else { "notice" };
        let mut delivered = Vec::new();
        let mut errors = Vec::new();
        if cfg.alertmanager {
            if let Some(s) = &self.sender {
                s.send(vec![alert.clone()]);
                delivered.push("alertmanager".to_string());
            }
        }
        for url in &cfg.webhook_urls {
            let body = webhook_body(&alert, &labels, &self.external_url.lock());
            match self.post(url, &body, cfg.timeout.0).await {
                Ok(()) => delivered.push(url.clone()),
                Err(e) => errors.push(format!("{url}: {e}")),
            }
        }
        let result = if errors.is_empty() {
            "success"
        } else {
            "error"
        };
        self.sent
            .get_or_create(&ResultLabels {
                kind: kind.into(),
                result: result.into(),
            })
            .inc();
        if delivered.is_empty() && errors.is_empty() && routed == 0 {
            tracing::warn!(summary = %m.summary, "no escalation channel configured (playbooks.escalation); logged only");
        }
        if delivered.is_empty() && !errors.is_empty() {
            return Err(errors.join("; "));
        }
        Ok(json!({ "delivered": delivered, "errors": errors, "routed": routed }))
    }

    async fn post(&self, url: &str, body: &Value, timeout: Duration) -> Result<(), String> {
        let mut last = String::new();
        for attempt in 0..3u32 {
            if attempt > 0 {
                tokio::time::sleep(Duration::from_millis(200 * 2u64.pow(attempt))).await;
            }
            match self.http.post(url).json(body).timeout(timeout).send().await {
                Ok(r) if r.status().is_success() => return Ok(()),
                // A 4xx will not improve with retries.
                Ok(r) if r.status().is_client_error() => {
                    return Err(format!("answered {}", r.status()))
                }
                Ok(r) => last = format!("answered {}", r.status()),
                Err(e) => last = e.to_string(),
            }
        }
        Err(last)
    }
}

/// Alertmanager's webhook payload, version 4, for one alert.
fn webhook_body(a: &AmAlert, labels: &BTreeMap<String, String>, external_url: &str) -> Value {
    json!({
        "version": "4",
        "groupKey": format!("{{}}:{{alertname=\"{}\"}}", labels.get("alertname").cloned().unwrap_or_default()),
        "truncatedAlerts": 0,
        "status": "firing",
        "receiver": "homeostat",
        "groupLabels": { "alertname": labels.get("alertname") },
        "commonLabels": labels,
        "commonAnnotations": a.annotations,
        "externalURL": external_url,
        "alerts": [{
            "status": "firing",
            "labels": labels,
            "annotations": a.annotations,
            "startsAt": a.starts_at,
            "endsAt": "0001-01-01T00:00:00Z",
            "generatorURL": a.generator_url,
            "fingerprint": format!("{:016x}", fingerprint(labels)),
        }],
    })
}

fn fingerprint(labels: &BTreeMap<String, String>) -> u64 {
    // FNV-1a over name\xffvalue\xff pairs: stable across processes.
    let mut h: u64 = 0xcbf29ce484222325;
    for (k, v) in labels {
        for b in k.bytes().chain([0xff]).chain(v.bytes()).chain([0xff]) {
            h ^= u64::from(b);
            h = h.wrapping_mul(0x100000001b3);
        }
    }
    h
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Params {
    message: String,
    /// Default `info`; `page` for something a person must act on.
    #[serde(default = "info")]
    severity: String,
    #[serde(default)]
    labels: BTreeMap<String, String>,
}

fn info() -> String {
    "info".into()
}

/// `notify`: send a message to the escalation channels.
pub struct Notify;

#[async_trait::async_trait]
impl Action for Notify {
    fn name(&self) -> &'static str {
        "notify"
    }

    fn validate(&self, params: &Value) -> Result<(), ParamIssue> {
        typed::<Params>(params).map(|_| ())
    }

    fn describe(&self, params: &Value) -> String {
        match typed::<Params>(params) {
            Ok(p) => format!("notify ({}): {}", p.severity, p.message),
            Err(e) => format!("notify (invalid: {})", e.message),
        }
    }

    async fn execute(&self, ctx: &Ctx<'_>, params: &Value) -> Result<Value, ActionError> {
        let p: Params = typed(params).map_err(|e| ActionError::Params(e.message))?;
        let mut labels = p.labels.clone();
        labels.insert("playbook".into(), ctx.playbook.into());
        labels.insert("target".into(), ctx.target.into());
        let mut annotations = BTreeMap::new();
        annotations.insert("run_id".into(), ctx.run_id.into());
        ctx.deps
            .escalator
            .send(Message {
                alertname: "HomeostatPlaybookNotice".into(),
                severity: p.severity,
                summary: p.message,
                labels,
                annotations,
            })
            .await
            .map_err(ActionError::Failed)
    }
}
