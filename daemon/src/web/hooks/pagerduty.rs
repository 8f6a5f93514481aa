//! `POST /hooks/pagerduty`: PagerDuty V3 webhooks, signed with
//! `X-PagerDuty-Signature: v1=<hex>[,v1=<hex>…]` (HMAC-SHA256 of the raw
//! body with a subscription's secret).
//!
//! `incident.triggered` becomes the alert `PagerDutyIncident` (playbooks
//! with `trigger: {alert: PagerDutyIncident}` start for the incident's
//! service); `incident.acknowledged` holds automatic runs for that target
//! while a person works on it; `incident.resolved` lifts the hold and
//! resolves the alert (`on: resolved` playbooks run). Each event id is
//! acted on once.

use axum::body::Body;
use axum::extract::State;
use axum::http::request::Parts;
use axum::http::StatusCode;
use axum::response::Response;
use serde::Deserialize;
use serde_json::{json, Value};

use super::{hmac_matches, AppState, DELIVERY_MEMORY};
use crate::collect::now_ms;

const HOOK: &str = "pagerduty";

/// The alert name incidents become.
pub const ALERTNAME: &str = "PagerDutyIncident";

#[derive(Deserialize)]
struct Envelope {
    event: Event,
}

#[derive(Deserialize)]
struct Event {
    id: String,
    event_type: String,
    #[serde(default)]
    resource_type: String,
    #[serde(default)]
    occurred_at: String,
    #[serde(default)]
    agent: Option<Reference>,
    #[serde(default)]
    data: Value,
}

#[derive(Deserialize, Default)]
struct Reference {
    #[serde(default)]
    id: String,
    #[serde(default)]
    summary: String,
}

#[derive(Deserialize, Default)]
#[serde(default)]
struct Incident {
    id: String,
    number: Option<u64>,
    title: String,
    status: String,
    urgency: String,
    html_url: String,
    incident_key: Option<String>,
    service: Option<Reference>,
}

/// Whether any `v1=` signature in the header is HMAC-SHA256(secret, body)
/// for any secret.
fn signed(header: &str, secrets: &[crate::config::Secret], body: &[u8]) -> bool {
    let mut ok = false;
    for sig in header
        .split(',')
        .filter_map(|p| p.trim().strip_prefix("v1="))
    {
        for s in secrets {
            // No early exit: every pair is checked.
            ok |= hmac_matches(s.expose().as_bytes(), &[body], sig);
        }
    }
    ok
}

pub(super) async fn receive(State(s): State<AppState>, parts: Parts, body: Body) -> Response {
    let h = &s.hooks;
    let cfg = h.config();
    let Some(pd) = &cfg.pagerduty else {
        return h.refuse(
            HOOK,
            "not_configured",
            StatusCode::NOT_FOUND,
            "hooks.pagerduty is not configured",
        );
    };
    let Some(sig) = super::header(&parts.headers, "x-pagerduty-signature").map(str::to_string)
    else {
        return h.refuse(
            HOOK,
            "unauthorized",
            StatusCode::UNAUTHORIZED,
            "X-PagerDuty-Signature is missing",
        );
    };
    let bytes = match h.body(HOOK, body, cfg.max_body).await {
        Ok(b) => b,
        Err(r) => return r,
    };
    if !signed(&sig, &pd.secrets, &bytes) {
        return h.refuse(
            HOOK,
            "bad_signature",
            StatusCode::UNAUTHORIZED,
            "no signature in X-PagerDuty-Signature matches a configured secret",
        );
    }
    let ev = match serde_json::from_slice::<Envelope>(&bytes) {
        Ok(e) if !e.event.id.is_empty() => e.event,
        Ok(_) => {
            return h.refuse(
                HOOK,
                "bad_request",
                StatusCode::BAD_REQUEST,
                "event.id is empty",
            )
        }
        Err(e) => {
            return h.refuse(
                HOOK,
                "bad_request",
                StatusCode::BAD_REQUEST,
                &format!("not a PagerDuty V3 webhook: {e}"),
            )
        }
    };
    let acts = matches!(
        ev.event_type.as_str(),
        "incident.triggered" | "incident.acknowledged" | "incident.resolved"
    );
    if !acts {
        tracing::debug!(event = %ev.id, event_type = %ev.event_type, "PagerDuty event ignored");
        return h.accept(HOOK, "accepted", json!({"ignored": ev.event_type}));
    }
    let inc: Incident = match serde_json::from_value(ev.data.clone()) {
        Ok(i) => i,
        Err(e) => {
            return h.refuse(
                HOOK,
                "bad_request",
                StatusCode::BAD_REQUEST,
                &format!("event.data is not an incident: {e}"),
            )
        }
    };
    let service = inc.service.unwrap_or_default();
    let target = pd
        .services
        .iter()
        .find(|m| m.service_id == service.id)
        .map(|m| m.target.clone())
        .unwrap_or_else(|| service.summary.clone());
    if target.is_empty() {
        return h.refuse(
            HOOK,
            "bad_request",
            StatusCode::BAD_REQUEST,
            "the incident names no service (event.data.service)",
        );
    }
    let now = now_ms();
    match s
        .playbooks
        .state_db()
        .claim_delivery(HOOK, &ev.id, now, now - DELIVERY_MEMORY.as_millis() as i64)
        .await
    {
        Ok(true) => {}
        Ok(false) => {
            tracing::info!(event = %ev.id, event_type = %ev.event_type, "PagerDuty event already handled; ignoring the redelivery");
            return h.accept(HOOK, "duplicate", json!({"duplicate": ev.id}));
        }
        Err(e) => {
            tracing::error!(error = %e, "cannot record a PagerDuty delivery; answering 500 so it is retried");
            return h.refuse(
                HOOK,
                "error",
                StatusCode::INTERNAL_SERVER_ERROR,
                "state database error",
            );
        }
    }
    let agent = ev.agent.unwrap_or_default();
    let by = format!(
        "pagerduty:{}",
        if agent.summary.is_empty() {
            if agent.id.is_empty() {
                "unknown"
            } else {
                &agent.id
            }
        } else {
            &agent.summary
        }
    );
    let number = inc.number.map(|n| n.to_string()).unwrap_or_default();
    let labels: Vec<(String, String)> = [
        ("alertname", ALERTNAME.to_string()),
        ("service", service.summary.clone()),
        ("service_id", service.id.clone()),
        ("incident_id", inc.id.clone()),
        ("incident_number", number.clone()),
        ("urgency", inc.urgency.clone()),
        ("target", target.clone()),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_string(), v))
    .collect();
    let detail = json!({
        "event_id": ev.id,
        "event_type": ev.event_type,
        "resource_type": ev.resource_type,
        "occurred_at": ev.occurred_at,
        "agent": agent.summary,
        "incident": {
            "id": inc.id, "number": inc.number, "title": inc.title, "status": inc.status,
            "urgency": inc.urgency, "html_url": inc.html_url, "incident_key": inc.incident_key,
        },
        "service": {"id": service.id, "summary": service.summary},
    });
    tracing::info!(event = %ev.id, event_type = %ev.event_type, incident = %inc.id, target = %target, "PagerDuty event received");
    let outcome = match ev.event_type.as_str() {
        "incident.triggered" => {
            s.playbooks
                .on_alert_labels(ALERTNAME, &labels, 1.0, false, detail, HOOK)
                .await;
            json!({"triggered": target})
        }
        "incident.acknowledged" => {
            let why = format!(
                "PagerDuty incident {}{} acknowledged by {}",
                if number.is_empty() { "" } else { "#" },
                if number.is_empty() { &inc.id } else { &number },
                by.trim_start_matches("pagerduty:")
            );
            if let Err(e) = s.playbooks.hold(&target, &why, &by).await {
                tracing::error!(error = %e, target = %target, "cannot hold automatic runs");
            }
            json!({"held": target})
        }
        _ => {
            if let Err(e) = s.playbooks.release(&target, &by).await {
                tracing::error!(error = %e, target = %target, "cannot release held runs");
            }
            s.playbooks
                .on_alert_labels(ALERTNAME, &labels, 1.0, true, detail, HOOK)
                .await;
            json!({"released": target})
        }
    };
    h.accept(HOOK, "accepted", outcome)
}
