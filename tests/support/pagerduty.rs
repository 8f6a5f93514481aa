//! A local stand-in for PagerDuty's Events API v2 (`POST /v2/enqueue`), for
//! tests of homeostat's PagerDuty notifier.
//!
//! Checks each event against PagerDuty's published contract
//! (developer.pagerduty.com, "Send an Alert Event" and the Events API v2
//! overview) and records a breach in [`PagerDutyStandIn::violations`]:
//!
//! * `Content-Type: application/json`; body ≤ 512 KB; a JSON object with
//!   only the documented top-level fields (`routing_key`, `event_action`,
//!   `dedup_key`, `payload`, `images`, `links`, `client`, `client_url`);
//! * `routing_key`: a 32-character integration key;
//! * `event_action`: `trigger`, `acknowledge` or `resolve`;
//! * `dedup_key`: a string of at most 255 characters, required for
//!   `acknowledge` and `resolve` (optional for `trigger`, where PagerDuty
//!   makes one up and returns it);
//! * for `trigger`, `payload` with `summary` (1..=1024 characters),
//!   `source` (non-empty), `severity` ∈ critical|error|warning|info, and
//!   optionally `timestamp` (ISO 8601), `component`, `group`, `class`
//!   (strings) and `custom_details` (this stand-in demands an object, the
//!   type the docs give); no other payload fields;
//! * `links`: objects with a string `href` and optional string `text`;
//!   `images`: objects with a string `src` (PagerDuty wants it https) and
//!   optional `href`, `alt`.
//!
//! A valid event gets `202 {"status":"success","message":"Event processed",
//! "dedup_key":…}`; an invalid one `400 {"status":"invalid event","message":
//! "Event object is invalid","errors":[…]}`. [`PagerDutyStandIn::fail_next`]
//! queues programmed failures first (429 `Retry-After`, 5xx, hangs). The real
//! service documents no `Retry-After` on its 429 ("retry after some time"),
//! so a client must back off by itself too; use `Fail::Status(429)` for that.
//!
//! [`PagerDutyStandIn::alerts`] keeps PagerDuty's alert state per
//! `dedup_key` (`triggered` / `acknowledged` / `resolved`), as the service
//! would after the events accepted so far.

use std::collections::{BTreeMap, VecDeque};
use std::net::SocketAddr;
use std::sync::{Arc, Mutex, MutexGuard};

use axum::body::Bytes;
use axum::extract::State;
use axum::http::{header, HeaderMap, HeaderValue, StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use axum::{Json, Router};
use serde_json::{json, Value};

use crate::{header_map, Fail};

/// A well-formed routing (integration) key: 32 characters.
pub const ROUTING_KEY: &str = "e2e0routing0key00000000000000032";

/// One accepted event.
#[derive(Debug, Clone)]
pub struct PdEvent {
    pub headers: BTreeMap<String, String>,
    pub body: Value,
    /// The dedup_key it applied to (made up for a trigger without one).
    pub dedup_key: String,
}

#[derive(Default)]
struct Inner {
    events: Vec<PdEvent>,
    violations: Vec<String>,
    failures: VecDeque<Fail>,
    attempts: usize,
    alerts: BTreeMap<String, String>,
    generated: u64,
}

type Shared = Arc<Mutex<Inner>>;

fn lock(s: &Shared) -> MutexGuard<'_, Inner> {
    s.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}

/// The running stand-in; stops when dropped.
pub struct PagerDutyStandIn {
    pub addr: SocketAddr,
    state: Shared,
    server: tokio::task::JoinHandle<()>,
}

impl PagerDutyStandIn {
    pub async fn start() -> PagerDutyStandIn {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("cannot bind the PagerDuty stand-in");
        let addr = listener.local_addr().expect("PagerDuty stand-in address");
        let state: Shared = Default::default();
        let app = Router::new()
            .route("/v2/enqueue", post(enqueue))
            .fallback(unknown)
            .with_state(state.clone());
        let server = tokio::spawn(async move {
            let _ = axum::serve(listener, app).await;
        });
        PagerDutyStandIn {
            addr,
            state,
            server,
        }
    }

    /// The `url` of a pagerduty_config.
    pub fn url(&self) -> String {
        format!("http://{}/v2/enqueue", self.addr)
    }

    pub fn fail_next(&self, failures: Vec<Fail>) {
        lock(&self.state).failures.extend(failures);
    }

    /// Accepted events, in arrival order.
    pub fn events(&self) -> Vec<PdEvent> {
        lock(&self.state).events.clone()
    }

    pub fn violations(&self) -> Vec<String> {
        lock(&self.state).violations.clone()
    }

    /// Every request to /v2/enqueue, failed ones included.
    pub fn attempts(&self) -> usize {
        lock(&self.state).attempts
    }

    /// Alert state per dedup_key after the accepted events.
    pub fn alerts(&self) -> BTreeMap<String, String> {
        lock(&self.state).alerts.clone()
    }
}

impl Drop for PagerDutyStandIn {
    fn drop(&mut self) {
        self.server.abort();
    }
}

/// Loose ISO 8601 date-time check: `YYYY-MM-DDTHH:MM:SS[.frac](Z|±HH:MM|±HHMM)`.
pub fn is_iso8601(s: &str) -> bool {
    let b = s.as_bytes();
    let digits =
        |r: std::ops::Range<usize>| b.get(r).is_some_and(|x| x.iter().all(u8::is_ascii_digit));
    if b.len() < 20
        || !digits(0..4)
        || b[4] != b'-'
        || !digits(5..7)
        || b[7] != b'-'
        || !digits(8..10)
        || !(b[10] == b'T' || b[10] == b't' || b[10] == b' ')
        || !digits(11..13)
        || b[13] != b':'
        || !digits(14..16)
        || b[16] != b':'
        || !digits(17..19)
    {
        return false;
    }
    let mut rest = &s[19..];
    if let Some(r) = rest.strip_prefix('.') {
        let n = r.bytes().take_while(u8::is_ascii_digit).count();
        if n == 0 {
            return false;
        }
        rest = &r[n..];
    }
    match rest {
        "Z" | "z" => true,
        r if (r.starts_with('+') || r.starts_with('-')) => {
            let t = &r[1..];
            let ok5 = t.len() == 5 && t.as_bytes()[2] == b':';
            let ok4 = t.len() == 4;
            (ok5 || ok4) && t.bytes().filter(|c| *c != b':').all(|c| c.is_ascii_digit())
        }
        _ => false,
    }
}

/// The breaches of one Events API v2 body (empty when valid).
pub fn validate_event(headers: &HeaderMap, body: &[u8]) -> Vec<String> {
    let mut errs = Vec::new();
    let ct = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("")
        .to_ascii_lowercase();
    if ct.split(';').next().map(str::trim) != Some("application/json") {
        errs.push(format!("Content-Type must be application/json, got {ct:?}"));
    }
    if body.len() > 512 * 1024 {
        errs.push(format!("body of {} bytes exceeds 512 KB", body.len()));
    }
    let v: Value = match serde_json::from_slice(body) {
        Ok(v) => v,
        Err(e) => {
            errs.push(format!("body is not JSON: {e}"));
            return errs;
        }
    };
    let Some(o) = v.as_object() else {
        errs.push("body is not a JSON object".into());
        return errs;
    };
    for k in o.keys() {
        if ![
            "routing_key",
            "event_action",
            "dedup_key",
            "payload",
            "images",
            "links",
            "client",
            "client_url",
        ]
        .contains(&k.as_str())
        {
            errs.push(format!("unknown field `{k}`"));
        }
    }
    match o.get("routing_key").and_then(Value::as_str) {
        Some(k) if k.chars().count() == 32 => {}
        other => errs.push(format!("routing_key must be 32 characters, got {other:?}")),
    }
    let action = o.get("event_action").and_then(Value::as_str).unwrap_or("");
    if !["trigger", "acknowledge", "resolve"].contains(&action) {
        errs.push(format!(
            "event_action must be trigger, acknowledge or resolve, got {:?}",
            o.get("event_action")
        ));
    }
    match o.get("dedup_key") {
        None | Some(Value::Null) if action != "trigger" => {
            errs.push(format!("dedup_key is required for {action}"))
        }
        None => {}
        Some(Value::String(d)) if d.is_empty() || d.chars().count() > 255 => errs.push(format!(
            "dedup_key must be 1..=255 characters, got {}",
            d.chars().count()
        )),
        Some(Value::String(_)) => {}
        Some(other) => errs.push(format!("dedup_key must be a string, got {other}")),
    }
    for k in ["client", "client_url"] {
        if o.get(k).is_some_and(|x| !x.is_string()) {
            errs.push(format!("{k} must be a string"));
        }
    }
    if let Some(p) = o.get("payload") {
        match p.as_object() {
            None => errs.push("payload must be an object".into()),
            Some(p) => {
                for k in p.keys() {
                    if ![
                        "summary",
                        "source",
                        "severity",
                        "timestamp",
                        "component",
                        "group",
                        "class",
                        "custom_details",
                    ]
                    .contains(&k.as_str())
                    {
                        errs.push(format!("unknown field `payload.{k}`"));
                    }
                }
                match p.get("summary").and_then(Value::as_str) {
                    Some(s) if !s.is_empty() && s.chars().count() <= 1024 => {}
                    Some(s) => errs.push(format!(
                        "payload.summary must be 1..=1024 characters, got {}",
                        s.chars().count()
                    )),
                    None => errs.push("payload.summary is required".into()),
                }
                match p.get("source").and_then(Value::as_str) {
                    Some(s) if !s.is_empty() => {}
                    _ => errs.push("payload.source is required".into()),
                }
                match p.get("severity").and_then(Value::as_str) {
                    Some("critical" | "error" | "warning" | "info") => {}
                    other => errs.push(format!(
                        "payload.severity must be critical, error, warning or info, got {other:?}"
                    )),
                }
                if let Some(t) = p.get("timestamp") {
                    if !t.as_str().is_some_and(is_iso8601) {
                        errs.push(format!("payload.timestamp is not ISO 8601: {t}"));
                    }
                }
                for k in ["component", "group", "class"] {
                    if p.get(k).is_some_and(|x| !x.is_string()) {
                        errs.push(format!("payload.{k} must be a string"));
                    }
                }
                if p.get("custom_details").is_some_and(|x| !x.is_object()) {
                    errs.push("payload.custom_details must be an object".into());
                }
            }
        }
    } else if action == "trigger" {
        errs.push("payload is required for trigger".into());
    }
    if let Some(l) = o.get("links") {
        match l.as_array() {
            Some(l) => {
                for (i, x) in l.iter().enumerate() {
                    if !x["href"].is_string() {
                        errs.push(format!("links[{i}].href is required"));
                    }
                    if x.get("text").is_some_and(|t| !t.is_string()) {
                        errs.push(format!("links[{i}].text must be a string"));
                    }
                }
            }
            None => errs.push("links must be an array".into()),
        }
    }
    if let Some(l) = o.get("images") {
        match l.as_array() {
            Some(l) => {
                for (i, x) in l.iter().enumerate() {
                    if !x["src"].is_string() {
                        errs.push(format!("images[{i}].src is required"));
                    }
                }
            }
            None => errs.push("images must be an array".into()),
        }
    }
    errs
}

async fn enqueue(State(state): State<Shared>, headers: HeaderMap, body: Bytes) -> Response {
    let f = {
        let mut s = lock(&state);
        s.attempts += 1;
        s.failures.pop_front()
    };
    match f {
        Some(Fail::RateLimited { retry_after_s }) => {
            let mut r = (
                StatusCode::TOO_MANY_REQUESTS,
                Json(json!({"status": "throttle event", "message": "Requests for this service are arriving too quickly. Please retry later."})),
            )
                .into_response();
            r.headers_mut().insert(
                header::RETRY_AFTER,
                HeaderValue::from_str(&retry_after_s.to_string()).expect("digits"),
            );
            return r;
        }
        Some(Fail::Status(code)) => {
            let status = StatusCode::from_u16(code).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
            return (
                status,
                Json(json!({"status": "error", "message": "Internal Server Error"})),
            )
                .into_response();
        }
        Some(Fail::Hang(d)) => tokio::time::sleep(d).await,
        Some(Fail::Drop) => std::future::pending::<()>().await,
        None => {}
    }
    let errs = validate_event(&headers, &body);
    let mut s = lock(&state);
    if !errs.is_empty() {
        s.violations
            .extend(errs.iter().map(|e| format!("enqueue: {e}")));
        return (
            StatusCode::BAD_REQUEST,
            Json(json!({"status": "invalid event", "message": "Event object is invalid", "errors": errs})),
        )
            .into_response();
    }
    let v: Value = serde_json::from_slice(&body).unwrap_or(Value::Null);
    let dedup_key = match v["dedup_key"].as_str() {
        Some(d) => d.to_string(),
        None => {
            s.generated += 1;
            format!("{:032x}", 0xe2e0_0000_u128 + u128::from(s.generated))
        }
    };
    let action = v["event_action"].as_str().unwrap_or("");
    let current = s.alerts.get(&dedup_key).cloned();
    match (action, current.as_deref()) {
        ("trigger", _) => {
            s.alerts.insert(dedup_key.clone(), "triggered".into());
        }
        // Acknowledge/resolve of an unknown or resolved alert are dropped
        // by PagerDuty (still 202).
        ("acknowledge", Some("triggered" | "acknowledged")) => {
            s.alerts.insert(dedup_key.clone(), "acknowledged".into());
        }
        ("resolve", Some("triggered" | "acknowledged")) => {
            s.alerts.insert(dedup_key.clone(), "resolved".into());
        }
        _ => {}
    }
    s.events.push(PdEvent {
        headers: header_map(&headers),
        body: v,
        dedup_key: dedup_key.clone(),
    });
    (
        StatusCode::ACCEPTED,
        Json(json!({"status": "success", "message": "Event processed", "dedup_key": dedup_key})),
    )
        .into_response()
}

async fn unknown(State(state): State<Shared>, uri: Uri) -> Response {
    lock(&state)
        .violations
        .push(format!("request to unknown path {uri}"));
    (StatusCode::NOT_FOUND, "Not Found").into_response()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn trigger() -> Value {
        json!({
            "routing_key": ROUTING_KEY,
            "event_action": "trigger",
            "dedup_key": "abc",
            "payload": {
                "summary": "HighLatency on web-1",
                "source": "homeostat",
                "severity": "critical",
                "timestamp": "2015-07-17T08:42:58.315+0000",
                "custom_details": {"instance": "web-1"}
            },
            "links": [{"href": "https://runbooks/x", "text": "runbook"}],
            "client": "homeostat",
            "client_url": "http://127.0.0.1:9400/"
        })
    }

    #[test]
    fn iso8601() {
        for ok in [
            "2015-07-17T08:42:58.315+0000",
            "2024-01-02T03:04:05Z",
            "2024-01-02T03:04:05.123456789+01:00",
        ] {
            assert!(is_iso8601(ok), "{ok}");
        }
        for bad in [
            "2024-01-02",
            "2024-01-02T03:04:05",
            "yesterday",
            "2024-01-02T03:04:05+1",
        ] {
            assert!(!is_iso8601(bad), "{bad}");
        }
    }

    #[tokio::test]
    async fn trigger_resolve_and_breaches() {
        let pd = PagerDutyStandIn::start().await;
        let c = reqwest::Client::new();
        pd.fail_next(vec![
            Fail::Status(500),
            Fail::RateLimited { retry_after_s: 2 },
        ]);
        let r = c.post(pd.url()).json(&trigger()).send().await.unwrap();
        assert_eq!(r.status(), 500);
        let r = c.post(pd.url()).json(&trigger()).send().await.unwrap();
        assert_eq!(r.status(), 429);
        assert_eq!(r.headers()["retry-after"], "2");
        let r = c.post(pd.url()).json(&trigger()).send().await.unwrap();
        assert_eq!(r.status(), 202);
        let v: Value = r.json().await.unwrap();
        assert_eq!(
            v,
            json!({"status": "success", "message": "Event processed", "dedup_key": "abc"})
        );
        assert_eq!(pd.alerts()["abc"], "triggered");
        let r = c
            .post(pd.url())
            .json(
                &json!({"routing_key": ROUTING_KEY, "event_action": "resolve", "dedup_key": "abc"}),
            )
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 202);
        assert_eq!(pd.alerts()["abc"], "resolved");
        // A trigger without dedup_key gets one made up.
        let mut t = trigger();
        t.as_object_mut().unwrap().remove("dedup_key");
        let v: Value = c
            .post(pd.url())
            .json(&t)
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        assert_eq!(v["dedup_key"].as_str().unwrap().len(), 32);
        assert_eq!(pd.attempts(), 5);
        assert!(pd.violations().is_empty(), "{:?}", pd.violations());

        // Breaches: 400 with errors, recorded.
        let bad = json!({
            "routing_key": "short",
            "event_action": "resolve",
            "payload": {"summary": "", "source": "x", "severity": "page", "timestamp": "now", "extra": 1},
            "links": [{"text": "no href"}],
            "unknown": true
        });
        let r = c.post(pd.url()).json(&bad).send().await.unwrap();
        assert_eq!(r.status(), 400);
        let v: Value = r.json().await.unwrap();
        assert_eq!(v["status"], "invalid event");
        assert_eq!(v["message"], "Event object is invalid");
        let errs = pd.violations().join("\n");
        for needle in [
            "routing_key must be 32",
            "dedup_key is required for resolve",
            "payload.summary must be 1..=1024",
            "payload.severity must be",
            "payload.timestamp is not ISO 8601",
            "unknown field `payload.extra`",
            "links[0].href is required",
            "unknown field `unknown`",
        ] {
            assert!(errs.contains(needle), "missing {needle:?} in:\n{errs}");
        }
        let r = c
            .post(pd.url())
            .header("content-type", "text/plain")
            .body(trigger().to_string())
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 400);
        assert!(pd
            .violations()
            .join("\n")
            .contains("Content-Type must be application/json"));
        assert_eq!(pd.events().len(), 3);
    }
}
