//! Slack: an incoming webhook, or `chat.postMessage` with a bot token.
//! Block Kit messages show each alert's name, severity, summary, value,
//! labels and runbook link; a playbook run awaiting approval gets Approve
//! and Deny buttons, answered at `/hooks/slack/interactivity`.

use serde::Deserialize;
use serde_json::{json, Value};

use super::{alert_summary, label_text, send_http, value_text, Notification, Notifier, SendError};
use crate::config::{Secret, Validator};

/// Slack's default Web API endpoint for bot tokens.
pub const POST_MESSAGE_URL: &str = "https://slack.com/api/chat.postMessage";

/// `block_id` and `action_id`s the interactivity hook understands.
pub const APPROVAL_BLOCK: &str = "homeostat_approval";
pub const APPROVE_ACTION: &str = "homeostat_approve";
pub const DENY_ACTION: &str = "homeostat_deny";

/// Slack shows at most 50 blocks; keep room for header and footer.
const MAX_ALERT_BLOCKS: usize = 20;

#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SlackConfig {
    /// Incoming-webhook URL; with `token`, the Web API URL (default
    /// `https://slack.com/api/chat.postMessage`). Falls back to
    /// `notify.global.slack_api_url`.
    #[serde(default, alias = "app_url")]
    pub api_url: Option<Secret>,
    /// Bot token (`xoxb-…`): send with `chat.postMessage` instead of a
    /// webhook.
    /// Also read as `app_token`, Alertmanager's later name for it.
    #[serde(default, alias = "app_token")]
    pub token: Option<Secret>,
    /// Required with `token`; with a webhook it overrides the webhook's
    /// channel where Slack allows it.
    #[serde(default)]
    pub channel: Option<String>,
    #[serde(default)]
    pub send_resolved: bool,
    #[serde(default)]
    pub username: Option<String>,
    #[serde(default)]
    pub icon_emoji: Option<String>,
}

impl SlackConfig {
    pub fn validate(&self, path: &str, global_url: Option<&Secret>, v: &mut Validator) {
        match (&self.token, self.api_url.as_ref().or(global_url)) {
            (Some(_), url) => {
                if let Some(u) = url {
                    super::webhook::check_url(u.expose(), &format!("{path}.api_url"), v);
                }
                if self.channel.as_deref().unwrap_or("").is_empty() {
                    v.error(format!("{path}.channel"), "is required with a bot token");
                }
            }
            (None, Some(u)) => super::webhook::check_url(u.expose(), &format!("{path}.api_url"), v),
            (None, None) => v.error(
                format!("{path}.api_url"),
                "an incoming-webhook api_url (or notify.global.slack_api_url), or a bot token, is required",
            ),
        }
    }
}

pub struct Slack {
    pub cfg: SlackConfig,
    /// Resolved at load: own api_url, global, or the Web API default.
    pub url: Secret,
    pub http: reqwest::Client,
}

fn severity_emoji(sev: &str) -> &'static str {
    match sev {
        "critical" | "page" => ":red_circle:",
        "error" => ":large_orange_circle:",
        "warning" => ":large_yellow_circle:",
        _ => ":large_blue_circle:",
    }
}

fn plain(t: &str) -> Value {
    // Header text is limited to 150 characters.
    let t: String = t.chars().take(150).collect();
    json!({"type": "plain_text", "text": t, "emoji": true})
}

fn mrkdwn(t: &str) -> Value {
    let t: String = t.chars().take(3000).collect();
    json!({"type": "mrkdwn", "text": t})
}

/// The Block Kit message for a notification.
pub fn blocks(n: &Notification) -> Vec<Value> {
    let mut out = vec![json!({"type": "header", "text": plain(&n.title())})];
    if let Some(run) = &n.run {
        out.push(json!({"type": "section", "text": mrkdwn(&format!(
            "*Playbook* `{}` on `{}`: *{}*\n{}\nRun `{}`",
            run.playbook, run.target, run.event.replace('_', " "), run.summary, run.run_id
        ))}));
        if run.event == "awaiting_approval" {
            out.push(json!({
                "type": "actions",
                "block_id": APPROVAL_BLOCK,
                "elements": [
                    {"type": "button", "text": plain("Approve"), "style": "primary",
                     "action_id": APPROVE_ACTION, "value": run.run_id},
                    {"type": "button", "text": plain("Deny"), "style": "danger",
                     "action_id": DENY_ACTION, "value": run.run_id},
                ]
            }));
        }
    } else {
        for a in n.alerts.iter().take(MAX_ALERT_BLOCKS) {
            let sev = a.labels.get("severity").map_or("none", String::as_str);
            let mut text = format!(
                "{} *{}* ({}) — severity *{}*\n{}",
                if a.status == "resolved" {
                    ":white_check_mark:"
                } else {
                    severity_emoji(sev)
                },
                a.labels.get("alertname").map_or("", String::as_str),
                a.status,
                sev,
                alert_summary(a)
            );
            // The expression's value from the rules stage; for alerts
            // posted by others, a `value` annotation if they set one.
            match (a.value, a.annotations.get("value")) {
                (Some(v), _) => text.push_str(&format!("\n*Value:* {}", value_text(v))),
                (None, Some(v)) => text.push_str(&format!("\n*Value:* {v}")),
                (None, None) => {}
            }
            let labels = label_text(&a.labels);
            if !labels.is_empty() {
                text.push_str(&format!("\n*Labels:* `{labels}`"));
            }
            let mut links = Vec::new();
            if let Some(r) = a.annotations.get("runbook_url") {
                links.push(format!("<{r}|Runbook>"));
            }
            if !a.generator_url.is_empty() {
                links.push(format!("<{}|Source>", a.generator_url));
            }
            if !links.is_empty() {
                text.push_str(&format!("\n{}", links.join(" · ")));
            }
            out.push(json!({"type": "section", "text": mrkdwn(&text)}));
        }
        if n.alerts.len() > MAX_ALERT_BLOCKS {
            out.push(json!({"type": "section", "text": mrkdwn(&format!(
                "…and {} more", n.alerts.len() - MAX_ALERT_BLOCKS))}));
        }
    }
    out.push(json!({"type": "context", "elements": [mrkdwn(&format!(
        "receiver `{}` · <{}|homeostat>", n.receiver, n.external_url))]}));
    out
}

impl Slack {
    pub fn message(&self, n: &Notification) -> Value {
        let mut m = json!({"text": n.title(), "blocks": blocks(n)});
        if let Some(c) = &self.cfg.channel {
            m["channel"] = json!(c);
        }
        if let Some(u) = &self.cfg.username {
            m["username"] = json!(u);
        }
        if let Some(e) = &self.cfg.icon_emoji {
            m["icon_emoji"] = json!(e);
        }
        m
    }
}

#[async_trait::async_trait]
impl Notifier for Slack {
    fn kind(&self) -> &'static str {
        "slack"
    }

    fn send_resolved(&self) -> bool {
        self.cfg.send_resolved
    }

    async fn notify(&self, n: &Notification) -> Result<(), SendError> {
        let mut req = self.http.post(self.url.expose()).json(&self.message(n));
        if let Some(t) = &self.cfg.token {
            req = req.bearer_auth(t.expose());
        }
        let body = send_http(req).await?;
        if self.cfg.token.is_some() {
            // The Web API answers 200 with {"ok": false, "error": …}.
            let v: Value = serde_json::from_str(&body)
                .map_err(|_| SendError::retry("chat.postMessage answered non-JSON"))?;
            if v["ok"] != json!(true) {
                let err = v["error"].as_str().unwrap_or("unknown error").to_string();
                return Err(match err.as_str() {
                    "ratelimited"
                    | "internal_error"
                    | "fatal_error"
                    | "service_unavailable"
                    | "request_timeout" => SendError::retry(format!("slack: {err}")),
                    _ => SendError::Fatal(format!("slack: {err}")),
                });
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::super::{Notification, RunEvent};
    use super::*;

    #[test]
    fn approval_message_has_the_buttons_the_hook_reads() {
        let mut n = Notification::new("r", "k", Default::default(), vec![], "http://h");
        n.run = Some(RunEvent {
            run_id: "r-1".into(),
            playbook: "p".into(),
            target: "t".into(),
            event: "awaiting_approval".into(),
            summary: "s".into(),
        });
        let b = blocks(&n);
        let actions = b.iter().find(|b| b["type"] == "actions").unwrap();
        assert_eq!(actions["block_id"], APPROVAL_BLOCK);
        assert_eq!(actions["elements"][0]["action_id"], APPROVE_ACTION);
        assert_eq!(actions["elements"][1]["value"], "r-1");
    }

    #[test]
    fn alert_blocks_show_value_labels_and_runbook() {
        let mut a = super::super::tests::alert(
            "firing",
            &[("alertname", "X"), ("severity", "page"), ("job", "api")],
        );
        a.value = Some(0.93);
        a.annotations
            .insert("runbook_url".into(), "https://rb/x".into());
        let n = Notification::new("r", "k", Default::default(), vec![a], "http://h");
        let text = blocks(&n)[1]["text"]["text"].as_str().unwrap().to_string();
        for want in ["*X*", "*page*", "0.93", "job=api", "<https://rb/x|Runbook>"] {
            assert!(text.contains(want), "{want} missing in {text}");
        }
    }
}
