//! Webhooks in, under `/hooks/`: Alertmanager (payload v4), PagerDuty (V3,
//! signed) and Slack (interactivity and a slash command, signed).
//!
//! Owns the `hooks:` config section, signature checks, replay protection
//! and the refusal counters. It changes nothing itself: every accepted
//! request becomes a call on the playbook engine. A refused request changes
//! nothing, is logged (never with a secret or a signature) and counted in
//! `homeostat_webhook_requests_total{hook,result}`.

mod alertmanager;
mod pagerduty;
mod slack;

use std::sync::Arc;
use std::time::Duration;

use axum::body::{Body, Bytes};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use axum::{Json, Router};
use hmac::{Hmac, Mac};
use parking_lot::RwLock;
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::registry::Registry;
use serde::Deserialize;
use serde_json::{json, Value};
use sha2::Sha256;

use super::AppState;
use crate::config::{ByteSize, PromDuration, Secret, Validator};

type HmacSha256 = Hmac<Sha256>;

/// How long Alertmanager and PagerDuty delivery keys are remembered after
/// they were last seen.
const DELIVERY_MEMORY: Duration = Duration::from_secs(7 * 24 * 3600);

/// The `hooks:` section.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct HooksConfig {
    /// Largest body a hook route accepts; larger ones get 413 (and are
    /// counted). `web.max_request_body` still caps every request first.
    pub max_body: ByteSize,
    /// `POST /hooks/alertmanager`; absent: that route answers 404.
    pub alertmanager: Option<AlertmanagerHook>,
    /// `POST /hooks/pagerduty`; absent: 404.
    pub pagerduty: Option<PagerDutyHook>,
    /// `POST /hooks/slack/interactivity` and `/hooks/slack/command`;
    /// absent: 404.
    pub slack: Option<SlackHook>,
}

impl Default for HooksConfig {
    fn default() -> Self {
        HooksConfig {
            max_body: ByteSize(256 << 10),
            alertmanager: None,
            pagerduty: None,
            slack: None,
        }
    }
}

/// Alertmanager's `webhook_configs` receiver.
#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct AlertmanagerHook {
    /// When set, `Authorization: Bearer <token>` must match (Alertmanager's
    /// `http_config.authorization.credentials`).
    pub bearer_token: Option<Secret>,
}

/// PagerDuty V3 webhook subscriptions.
#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct PagerDutyHook {
    /// Subscription signing secrets; several during a rotation.
    pub secrets: Vec<Secret>,
    /// PagerDuty service → homeostat target; unlisted services use the
    /// service's name.
    pub services: Vec<PagerDutyService>,
}

#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct PagerDutyService {
    pub service_id: String,
    pub target: String,
}

/// A Slack app's interactivity and slash-command endpoints.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct SlackHook {
    /// The app's signing secret.
    pub signing_secret: Secret,
    /// Slack user IDs that may approve, deny, pause, resume and run.
    pub allowed_users: Vec<String>,
    /// How far a request's timestamp may be from now, either way.
    pub max_age: PromDuration,
}

impl Default for SlackHook {
    fn default() -> Self {
        SlackHook {
            signing_secret: Secret::default(),
            allowed_users: Vec::new(),
            max_age: PromDuration::from_secs(300),
        }
    }
}

impl HooksConfig {
    pub fn validate(&self, path: &str, v: &mut Validator) {
        if self.max_body.0 == 0 {
            v.error(format!("{path}.max_body"), "must be greater than 0");
        }
        if let Some(am) = &self.alertmanager {
            if am.bearer_token.as_ref().is_some_and(Secret::is_empty) {
                v.error(
                    format!("{path}.alertmanager.bearer_token"),
                    "must not be empty (leave it out to accept any caller)",
                );
            }
        }
        if let Some(pd) = &self.pagerduty {
            if pd.secrets.is_empty() {
                v.error(
                    format!("{path}.pagerduty.secrets"),
                    "at least one signing secret is required",
                );
            }
            for (i, s) in pd.secrets.iter().enumerate() {
                if s.is_empty() {
                    v.error(format!("{path}.pagerduty.secrets.{i}"), "must not be empty");
                }
            }
            for (i, s) in pd.services.iter().enumerate() {
                if s.service_id.is_empty() {
                    v.error(
                        format!("{path}.pagerduty.services.{i}.service_id"),
                        "must not be empty",
                    );
                }
                if s.target.is_empty() {
                    v.error(
                        format!("{path}.pagerduty.services.{i}.target"),
                        "must not be empty",
                    );
                }
            }
        }
        if let Some(sl) = &self.slack {
            if sl.signing_secret.is_empty() {
                v.error(
                    format!("{path}.slack.signing_secret"),
                    "the Slack app's signing secret is required",
                );
            }
            if sl.max_age.0.is_zero() {
                v.error(format!("{path}.slack.max_age"), "must be greater than 0");
            }
        }
    }
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct HookLabels {
    hook: &'static str,
    result: &'static str,
}

/// The hooks' live config, counters and HTTP client (for Slack's
/// `response_url`); cheap to clone.
#[derive(Clone)]
pub struct Hooks {
    cfg: Arc<RwLock<HooksConfig>>,
    requests: Family<HookLabels, Counter>,
    client: reqwest::Client,
}

impl Hooks {
    pub fn new(cfg: HooksConfig, registry: &mut Registry, client: reqwest::Client) -> Self {
        let requests = Family::<HookLabels, Counter>::default();
        registry.register(
            "homeostat_webhook_requests",
            "Requests to the webhook-in routes (/hooks/alertmanager, /hooks/pagerduty, /hooks/slack/*), by hook and result.",
            requests.clone(),
        );
        Hooks {
            cfg: Arc::new(RwLock::new(cfg)),
            requests,
            client,
        }
    }

    /// Takes a reloaded `hooks:` section into use.
    pub fn apply(&self, cfg: &HooksConfig) {
        *self.cfg.write() = cfg.clone();
    }

    fn config(&self) -> HooksConfig {
        self.cfg.read().clone()
    }

    fn count(&self, hook: &'static str, result: &'static str) {
        self.requests
            .get_or_create(&HookLabels { hook, result })
            .inc();
    }

    /// Requests counted with this hook and result (tests).
    pub fn requests(&self, hook: &'static str, result: &'static str) -> u64 {
        self.requests
            .get_or_create(&HookLabels { hook, result })
            .get()
    }

    /// Counts and logs a refused request and renders the answer. `why`
    /// must never contain a secret or a signature.
    fn refuse(
        &self,
        hook: &'static str,
        result: &'static str,
        status: StatusCode,
        why: &str,
    ) -> Response {
        self.count(hook, result);
        tracing::warn!(
            hook,
            result,
            status = status.as_u16(),
            "webhook refused: {why}"
        );
        (
            status,
            Json(json!({"status": "error", "errorType": result, "error": why})),
        )
            .into_response()
    }

    /// Counts an accepted request and answers 200 with `data`.
    fn accept(&self, hook: &'static str, result: &'static str, data: Value) -> Response {
        self.count(hook, result);
        (
            StatusCode::OK,
            Json(json!({"status": "success", "data": data})),
        )
            .into_response()
    }

    /// Reads the body, at most `max` bytes; `Err` is the 413 answer.
    #[allow(clippy::result_large_err)]
    async fn body(&self, hook: &'static str, body: Body, max: ByteSize) -> Result<Bytes, Response> {
        axum::body::to_bytes(body, max.0 as usize)
            .await
            .map_err(|_| {
                self.refuse(
                    hook,
                    "too_large",
                    StatusCode::PAYLOAD_TOO_LARGE,
                    &format!("body larger than hooks.max_body ({} bytes)", max.0),
                )
            })
    }
}

pub fn router() -> Router<AppState> {
    Router::new()
        .route("/hooks/alertmanager", post(alertmanager::receive))
        .route("/hooks/pagerduty", post(pagerduty::receive))
        .route("/hooks/slack/interactivity", post(slack::interactivity))
        .route("/hooks/slack/command", post(slack::command))
}

/// hex(HMAC-SHA256(key, parts…)) (tests sign requests with it).
#[cfg(test)]
fn hmac_hex(key: &[u8], parts: &[&[u8]]) -> String {
    let mut mac = HmacSha256::new_from_slice(key).expect("HMAC takes any key length");
    for p in parts {
        mac.update(p);
    }
    hex::encode(mac.finalize().into_bytes())
}

/// Whether `given_hex` is HMAC-SHA256(key, parts…), compared in constant
/// time.
fn hmac_matches(key: &[u8], parts: &[&[u8]], given_hex: &str) -> bool {
    let Ok(given) = hex::decode(given_hex.trim()) else {
        return false;
    };
    let mut mac = HmacSha256::new_from_slice(key).expect("HMAC takes any key length");
    for p in parts {
        mac.update(p);
    }
    mac.verify_slice(&given).is_ok()
}

fn header<'a>(h: &'a axum::http::HeaderMap, name: &str) -> Option<&'a str> {
    h.get(name)
        .and_then(|v| v.to_str().ok())
        .filter(|v| !v.is_empty())
}

#[cfg(test)]
mod tests;
