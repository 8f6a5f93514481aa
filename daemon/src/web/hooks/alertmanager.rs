//! `POST /hooks/alertmanager`: Alertmanager's webhook (payload version 4).
//!
//! Each alert instance (fingerprint, status, startsAt) is acted on once:
//! Alertmanager re-sends a group every `repeat_interval` and retries failed
//! deliveries, and those must not start playbooks again.

use std::collections::BTreeMap;

use axum::body::Body;
use axum::extract::State;
use axum::http::request::Parts;
use axum::http::StatusCode;
use axum::response::Response;
use serde::Deserialize;
use serde_json::json;

use super::{AppState, DELIVERY_MEMORY};
use crate::collect::now_ms;
use crate::web::bearer_is;

const HOOK: &str = "alertmanager";

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct Payload {
    version: String,
    #[serde(default)]
    group_key: String,
    #[serde(default)]
    receiver: String,
    #[serde(default)]
    external_url: String,
    alerts: Vec<Alert>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct Alert {
    status: String,
    labels: BTreeMap<String, String>,
    #[serde(default)]
    annotations: BTreeMap<String, String>,
    #[serde(default)]
    starts_at: String,
    #[serde(default)]
    ends_at: String,
    #[serde(default, rename = "generatorURL")]
    generator_url: String,
    #[serde(default)]
    fingerprint: String,
}

pub(super) async fn receive(State(s): State<AppState>, parts: Parts, body: Body) -> Response {
    let h = &s.hooks;
    let cfg = h.config();
    let Some(am) = &cfg.alertmanager else {
        return h.refuse(
            HOOK,
            "not_configured",
            StatusCode::NOT_FOUND,
            "hooks.alertmanager is not configured",
        );
    };
    if let Some(token) = &am.bearer_token {
        if !parts
            .headers
            .contains_key(axum::http::header::AUTHORIZATION)
        {
            return h.refuse(
                HOOK,
                "unauthorized",
                StatusCode::UNAUTHORIZED,
                "a bearer token (hooks.alertmanager.bearer_token) is required",
            );
        }
        if !bearer_is(&parts.headers, token.expose()) {
            return h.refuse(
                HOOK,
                "unauthorized",
                StatusCode::UNAUTHORIZED,
                "wrong bearer token",
            );
        }
    }
    let bytes = match h.body(HOOK, body, cfg.max_body).await {
        Ok(b) => b,
        Err(r) => return r,
    };
    let p: Payload = match serde_json::from_slice(&bytes) {
        Ok(p) => p,
        Err(e) => {
            return h.refuse(
                HOOK,
                "bad_request",
                StatusCode::BAD_REQUEST,
                &format!("not an Alertmanager webhook payload: {e}"),
            )
        }
    };
    if p.version != "4" {
        return h.refuse(
            HOOK,
            "bad_request",
            StatusCode::BAD_REQUEST,
            &format!(
                "Alertmanager webhook payload version {:?}; only \"4\" is understood",
                p.version
            ),
        );
    }
    let db = s.playbooks.state_db();
    let now = now_ms();
    let forget = now - DELIVERY_MEMORY.as_millis() as i64;
    let (mut acted, mut duplicates, mut ignored) = (0u32, 0u32, 0u32);
    for a in &p.alerts {
        let Some(alertname) = a.labels.get("alertname").filter(|n| !n.is_empty()) else {
            ignored += 1;
            continue;
        };
        let resolved = match a.status.as_str() {
            "firing" => false,
            "resolved" => true,
            _ => {
                ignored += 1;
                continue;
            }
        };
        // The fingerprint identifies the label set; without one (not sent
        // by Alertmanager itself) the labels do.
        let identity = if a.fingerprint.is_empty() {
            serde_json::to_string(&a.labels).unwrap_or_default()
        } else {
            a.fingerprint.clone()
        };
        let key = format!("{identity}|{}|{}", a.status, a.starts_at);
        match db.claim_delivery(HOOK, &key, now, forget).await {
            Ok(true) => {}
            Ok(false) => {
                duplicates += 1;
                continue;
            }
            Err(e) => {
                tracing::error!(error = %e, "cannot record an Alertmanager delivery; answering 500 so it is retried");
                return h.refuse(
                    HOOK,
                    "error",
                    StatusCode::INTERNAL_SERVER_ERROR,
                    "state database error",
                );
            }
        }
        acted += 1;
        let labels: Vec<(String, String)> = a
            .labels
            .iter()
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect();
        let detail = json!({
            "alertname": alertname,
            "groupKey": p.group_key,
            "receiver": p.receiver,
            "externalURL": p.external_url,
            "annotations": a.annotations,
            "startsAt": a.starts_at,
            "endsAt": a.ends_at,
            "generatorURL": a.generator_url,
            "fingerprint": a.fingerprint,
            "status": a.status,
        });
        tracing::info!(alert = %alertname, status = %a.status, fingerprint = %a.fingerprint, "alert received from Alertmanager");
        s.playbooks
            .on_alert_labels(alertname, &labels, 1.0, resolved, detail, HOOK)
            .await;
    }
    let result = if acted == 0 && duplicates > 0 {
        "duplicate"
    } else {
        "accepted"
    };
    h.accept(
        HOOK,
        result,
        json!({"acted": acted, "duplicates": duplicates, "ignored": ignored}),
    )
}
