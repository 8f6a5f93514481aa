//! Generic webhook: Alertmanager's payload version 4, so receivers written
//! for Alertmanager work unchanged, optionally signed with HMAC-SHA256
//! (`X-Homeostat-Signature: sha256=<hex>` over the body, as GitHub signs).

use hmac::{Hmac, Mac};
use serde::Deserialize;
use sha2::Sha256;

use super::{send_http, Notification, Notifier, SendError};
use crate::config::{Secret, Validator};

#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct WebhookConfig {
    pub url: Secret,
    #[serde(default = "yes")]
    pub send_resolved: bool,
    /// Most alerts per message; the rest are counted in `truncatedAlerts`
    /// (0: all).
    #[serde(default)]
    pub max_alerts: usize,
    /// Signs the body; the receiver checks `X-Homeostat-Signature`.
    #[serde(default)]
    pub hmac_secret: Option<Secret>,
}

fn yes() -> bool {
    true
}

impl WebhookConfig {
    pub fn validate(&self, path: &str, v: &mut Validator) {
        check_url(self.url.expose(), &format!("{path}.url"), v);
    }
}

/// An http(s) URL check that never prints the URL (webhook URLs carry
/// tokens).
pub fn check_url(u: &str, path: &str, v: &mut Validator) {
    if !reqwest::Url::parse(u).is_ok_and(|u| matches!(u.scheme(), "http" | "https")) {
        v.error(path, "is not an http(s) URL");
    }
}

/// `sha256=<hex>` of the body under `secret`.
pub fn signature(secret: &[u8], body: &[u8]) -> String {
    // new_from_slice accepts keys of any length for HMAC.
    let mut mac = Hmac::<Sha256>::new_from_slice(secret).expect("HMAC takes any key length");
    mac.update(body);
    format!("sha256={}", hex::encode(mac.finalize().into_bytes()))
}

pub struct Webhook {
    pub cfg: WebhookConfig,
    pub http: reqwest::Client,
}

#[async_trait::async_trait]
impl Notifier for Webhook {
    fn kind(&self) -> &'static str {
        "webhook"
    }

    fn send_resolved(&self) -> bool {
        self.cfg.send_resolved
    }

    async fn notify(&self, n: &Notification) -> Result<(), SendError> {
        let body = serde_json::to_vec(&n.webhook_payload(self.cfg.max_alerts))
            .map_err(|e| SendError::Fatal(e.to_string()))?;
        let mut req = self
            .http
            .post(self.cfg.url.expose())
            .header(reqwest::header::CONTENT_TYPE, "application/json");
        if let Some(s) = &self.cfg.hmac_secret {
            req = req.header(
                "X-Homeostat-Signature",
                signature(s.expose().as_bytes(), &body),
            );
        }
        send_http(req.body(body)).await.map(drop)
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn signature_is_hmac_sha256_hex() {
        // RFC 4231 test case 2.
        assert_eq!(
            super::signature(b"Jefe", b"what do ya want for nothing?"),
            "sha256=5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843"
        );
    }
}
