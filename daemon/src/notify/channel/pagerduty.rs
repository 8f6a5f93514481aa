//! PagerDuty Events API v2: `trigger`, `acknowledge` and `resolve` with a
//! `dedup_key` from the group key (SHA-256, as Alertmanager), so one
//! incident follows one alert group. Playbook runs get their own incident:
//! awaiting approval, failed or escalated triggers it, started acknowledges
//! it (someone or something is on it), succeeded resolves it.

use serde::Deserialize;
use serde_json::{json, Value};
use sha2::{Digest, Sha256};

use super::{alert_summary, send_http, Notification, Notifier, SendError};
use crate::config::{Secret, Validator};
use crate::notify::alertmanager::rfc3339_ms;

pub const EVENTS_URL: &str = "https://events.pagerduty.com/v2/enqueue";

#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PagerdutyConfig {
    /// The integration's routing key (Events API v2).
    pub routing_key: Secret,
    /// Default `notify.global.pagerduty_url`, else PagerDuty's.
    #[serde(default)]
    pub url: Option<String>,
    /// Fixed severity; default maps the alerts' `severity` label.
    #[serde(default)]
    pub severity: Option<String>,
    #[serde(default = "yes")]
    pub send_resolved: bool,
    #[serde(default)]
    pub client: Option<String>,
    #[serde(default)]
    pub client_url: Option<String>,
    #[serde(default)]
    pub source: Option<String>,
    #[serde(default)]
    pub component: Option<String>,
    #[serde(default)]
    pub group: Option<String>,
    #[serde(default)]
    pub class: Option<String>,
}

fn yes() -> bool {
    true
}

const SEVERITIES: [&str; 4] = ["critical", "error", "warning", "info"];

impl PagerdutyConfig {
    pub fn validate(&self, path: &str, v: &mut Validator) {
        if self.routing_key.is_empty() {
            v.error(format!("{path}.routing_key"), "is required");
        }
        if let Some(u) = &self.url {
            super::webhook::check_url(u, &format!("{path}.url"), v);
        }
        if let Some(s) = &self.severity {
            if !SEVERITIES.contains(&s.as_str()) {
                v.error(
                    format!("{path}.severity"),
                    format!("{s:?} is not one of critical, error, warning, info"),
                );
            }
        }
    }
}

/// Alert severities as PagerDuty knows them.
pub fn map_severity(s: &str) -> &'static str {
    match s.to_ascii_lowercase().as_str() {
        "critical" | "page" | "fatal" | "emergency" => "critical",
        "error" | "high" => "error",
        "warning" | "warn" | "medium" => "warning",
        _ => "info",
    }
}

/// Hex SHA-256 of the group key: stable across restarts and processes.
pub fn dedup_key(key: &str) -> String {
    hex::encode(Sha256::digest(key.as_bytes()))
}

pub struct Pagerduty {
    pub cfg: PagerdutyConfig,
    pub url: String,
    pub http: reqwest::Client,
}

impl Pagerduty {
    /// The event for a notification, or None when there is nothing to say.
    pub fn event(&self, n: &Notification) -> Option<Value> {
        let client = self
            .cfg
            .client
            .clone()
            .unwrap_or_else(|| "homeostat".into());
        let client_url = self
            .cfg
            .client_url
            .clone()
            .unwrap_or_else(|| n.external_url.clone());
        let (action, key, severity, summary) = match &n.run {
            Some(run) => {
                let action = match run.event.as_str() {
                    "awaiting_approval" | "failed" | "escalated" => "trigger",
                    "started" => "acknowledge",
                    "succeeded" => "resolve",
                    _ => return None,
                };
                let sev = if run.event == "awaiting_approval" {
                    "warning"
                } else {
                    "critical"
                };
                (
                    action,
                    dedup_key(&format!("homeostat-run:{}", run.run_id)),
                    sev,
                    format!(
                        "playbook {} on {}: {}",
                        run.playbook, run.target, run.summary
                    ),
                )
            }
            None => {
                let action = if n.status == "firing" {
                    "trigger"
                } else {
                    "resolve"
                };
                let sev = self.cfg.severity.clone().map_or_else(
                    || {
                        let worst = n
                            .firing()
                            .filter_map(|a| a.labels.get("severity"))
                            .map(|s| map_severity(s))
                            .min_by_key(|s| SEVERITIES.iter().position(|x| x == s))
                            .unwrap_or("info");
                        worst
                    },
                    |s| {
                        SEVERITIES
                            .iter()
                            .find(|x| **x == s)
                            .copied()
                            .unwrap_or("info")
                    },
                );
                let mut summary = n.title();
                if let Some(first) = n.firing().next() {
                    summary.push_str(&format!(": {}", alert_summary(first)));
                }
                (action, dedup_key(&n.group_key), sev, summary)
            }
        };
        let mut ev = json!({
            "routing_key": self.cfg.routing_key.expose(),
            "event_action": action,
            "dedup_key": key,
        });
        if action == "trigger" {
            let summary: String = summary.chars().take(1024).collect();
            let alerts: Vec<Value> = n
                .alerts
                .iter()
                .map(|a| json!({"status": a.status, "labels": a.labels, "annotations": a.annotations, "value": a.value}))
                .collect();
            let mut details = json!({
                "firing": n.firing().count(),
                "resolved": n.resolved().count(),
                "group_labels": n.group_labels,
                "common_labels": n.common_labels,
                "alerts": alerts,
            });
            if let Some(run) = &n.run {
                details["run_id"] = json!(run.run_id);
                details["playbook"] = json!(run.playbook);
                details["target"] = json!(run.target);
            }
            let mut payload = json!({
                "summary": summary,
                "source": self.cfg.source.clone().unwrap_or_else(|| client.clone()),
                "severity": severity,
                "custom_details": details,
            });
            if let Some(a) = n.alerts.first() {
                payload["timestamp"] = json!(rfc3339_ms(a.starts_at_ms));
            }
            for (k, v) in [
                ("component", &self.cfg.component),
                ("group", &self.cfg.group),
                ("class", &self.cfg.class),
            ] {
                if let Some(v) = v {
                    payload[k] = json!(v);
                }
            }
            ev["payload"] = payload;
            let mut links = Vec::new();
            for a in &n.alerts {
                if let Some(r) = a.annotations.get("runbook_url") {
                    links.push(json!({"href": r, "text": "Runbook"}));
                }
                if !a.generator_url.is_empty() {
                    links.push(json!({"href": a.generator_url, "text": "Source"}));
                }
            }
            links.dedup();
            ev["links"] = json!(links);
            ev["client"] = json!(client);
            ev["client_url"] = json!(client_url);
        }
        Some(ev)
    }
}

#[async_trait::async_trait]
impl Notifier for Pagerduty {
    fn kind(&self) -> &'static str {
        "pagerduty"
    }

    fn send_resolved(&self) -> bool {
        self.cfg.send_resolved
    }

    async fn notify(&self, n: &Notification) -> Result<(), SendError> {
        let Some(ev) = self.event(n) else {
            return Ok(());
        };
        send_http(self.http.post(&self.url).json(&ev))
            .await
            .map(drop)
    }
}

#[cfg(test)]
mod tests {
    use super::super::tests::alert;
    use super::*;

    fn pd() -> Pagerduty {
        Pagerduty {
            cfg: serde_json::from_value(json!({"routing_key": "R0123456789abcdef0123456789abcd"}))
                .unwrap(),
            url: EVENTS_URL.into(),
            http: reqwest::Client::new(),
        }
    }

    #[test]
    fn trigger_then_resolve_share_the_dedup_key() {
        let key = "{}:{alertname=\"X\"}";
        let f = Notification::new(
            "r",
            key,
            Default::default(),
            vec![
                alert("firing", &[("alertname", "X"), ("severity", "warning")]),
                alert("firing", &[("alertname", "X"), ("severity", "page")]),
            ],
            "http://h",
        );
        let t = pd().event(&f).unwrap();
        assert_eq!(t["event_action"], "trigger");
        assert_eq!(t["payload"]["severity"], "critical");
        assert_eq!(t["payload"]["custom_details"]["firing"], 2);
        let r = Notification::new(
            "r",
            key,
            Default::default(),
            vec![alert("resolved", &[("alertname", "X")])],
            "http://h",
        );
        let r = pd().event(&r).unwrap();
        assert_eq!(r["event_action"], "resolve");
        assert_eq!(r["dedup_key"], t["dedup_key"]);
        assert_eq!(t["dedup_key"].as_str().unwrap().len(), 64);
        assert!(r.get("payload").is_none());
    }
}
