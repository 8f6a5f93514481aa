//! A local stand-in for Slack: incoming webhooks, the Web API's
//! `chat.postMessage`, and `response_url`s of interactive messages, for
//! tests of homeostat's Slack notifier.
//!
//! Like [`crate::arm`], it checks the wire contract of every request and
//! records a breach in [`SlackStandIn::violations`] (tests assert it is
//! empty), so a client that real Slack would refuse fails here:
//!
//! * `POST /services/{T}/{B}/{X}` (incoming webhook): `Content-Type:
//!   application/json` (a charset parameter is fine), a JSON object with a
//!   non-empty `text` and/or valid `blocks`. Answers `200 ok` (text/html, as
//!   Slack does); a breach gets `400 invalid_payload` (or `no_text`).
//! * `POST /api/chat.postMessage`: `Authorization: Bearer xoxb-…` (the token
//!   goes in the header when the body is JSON), JSON content type, body with
//!   `channel` and `text` or `blocks`. Answers
//!   `{"ok":true,"channel":…,"ts":"…","message":{…}}`. As the real Web API
//!   does, errors are HTTP **200** with `{"ok":false,"error":…}`: a wrong
//!   token gets `invalid_auth` (the client's configuration, not a breach,
//!   counted in [`SlackStandIn::auth_failures`]); no Authorization header
//!   gets `not_authed`, bad blocks `invalid_blocks`, no text `no_text`, no
//!   channel `channel_not_found` (all breaches). A JSON body without a
//!   charset works but carries Slack's `missing_charset` warning.
//! * `POST /actions/{…}` (a `response_url`): JSON with `text` and/or valid
//!   `blocks`, optionally `replace_original` / `delete_original` /
//!   `response_type`; recorded in [`SlackStandIn::responses`].
//!
//! Block Kit is checked for the blocks homeostat uses, with Slack's
//! documented limits: at most 50 blocks; each an object of `type` `section`
//! (`text` ≤ 3000 chars and/or ≤ 10 `fields` of ≤ 2000), `header`
//! (`plain_text` ≤ 150), `context` (1..=10 text or image elements),
//! `actions` (1..=25 buttons) or `divider`, with no unknown keys and an
//! optional `block_id` ≤ 255 chars, unique within the message. A button is
//! `{type: button, text: plain_text ≤ 75, action_id ≤ 255, value ≤ 2000,
//! style?: primary|danger, url?}` (this stand-in also demands `action_id`
//! and `value`, which homeostat's approval buttons must carry). Text objects
//! are `{type: plain_text|mrkdwn, text: non-empty, emoji? (plain_text only),
//! verbatim? (mrkdwn only)}`.
//!
//! [`SlackStandIn::fail_next`] queues failures ([`Fail`]) that the next
//! webhook / chat.postMessage requests get before normal answers resume: a
//! 429 carries `Retry-After` and, on the Web API, `{"ok":false,"error":
//! "ratelimited"}`.

use std::collections::{BTreeMap, HashSet, VecDeque};
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

/// The bot token the Web API accepts unless [`SlackStandIn::start_with_token`]
/// says otherwise.
pub const BOT_TOKEN: &str = "xoxb-1234-5678-e2eTestToken";

/// One accepted request.
#[derive(Debug, Clone)]
pub struct SlackRequest {
    pub path: String,
    /// Header names lower-cased.
    pub headers: BTreeMap<String, String>,
    pub body: Value,
}

#[derive(Default)]
struct Inner {
    token: String,
    requests: Vec<SlackRequest>,
    responses: Vec<SlackRequest>,
    violations: Vec<String>,
    failures: VecDeque<Fail>,
    attempts: usize,
    auth_failures: usize,
    ts: u64,
}

type Shared = Arc<Mutex<Inner>>;

fn lock(s: &Shared) -> MutexGuard<'_, Inner> {
    s.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}

/// The running stand-in; stops when dropped.
pub struct SlackStandIn {
    pub addr: SocketAddr,
    state: Shared,
    server: tokio::task::JoinHandle<()>,
}

impl SlackStandIn {
    /// Serves on a free port of 127.0.0.1, accepting [`BOT_TOKEN`].
    pub async fn start() -> SlackStandIn {
        Self::start_with_token(BOT_TOKEN).await
    }

    pub async fn start_with_token(token: &str) -> SlackStandIn {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("cannot bind the Slack stand-in");
        let addr = listener.local_addr().expect("Slack stand-in address");
        let state: Shared = Arc::new(Mutex::new(Inner {
            token: token.to_string(),
            ts: 1_700_000_000_000_100,
            ..Default::default()
        }));
        let app = Router::new()
            .route("/services/{t}/{b}/{x}", post(incoming_webhook))
            .route("/api/chat.postMessage", post(post_message))
            .route("/actions/{*rest}", post(response_url))
            .fallback(unknown)
            .with_state(state.clone());
        let server = tokio::spawn(async move {
            let _ = axum::serve(listener, app).await;
        });
        SlackStandIn {
            addr,
            state,
            server,
        }
    }

    /// An incoming-webhook URL (`api_url` of a webhook-mode slack_config).
    pub fn webhook_url(&self) -> String {
        format!("http://{}/services/T000/B000/XXXX", self.addr)
    }

    /// The `chat.postMessage` URL (`api_url` of a token-mode slack_config).
    pub fn api_url(&self) -> String {
        format!("http://{}/api/chat.postMessage", self.addr)
    }

    /// A `response_url` as Slack puts into an interaction payload.
    pub fn response_url(&self, id: &str) -> String {
        format!("http://{}/actions/T000/{id}/e2eResponse", self.addr)
    }

    /// Queues failures for the next webhook / chat.postMessage requests.
    pub fn fail_next(&self, failures: Vec<Fail>) {
        lock(&self.state).failures.extend(failures);
    }

    /// Accepted webhook and chat.postMessage requests, in arrival order.
    pub fn requests(&self) -> Vec<SlackRequest> {
        lock(&self.state).requests.clone()
    }

    /// The JSON bodies of accepted messages.
    pub fn messages(&self) -> Vec<Value> {
        self.requests().into_iter().map(|r| r.body).collect()
    }

    /// Bodies POSTed to `response_url`s.
    pub fn responses(&self) -> Vec<SlackRequest> {
        lock(&self.state).responses.clone()
    }

    /// Contract breaches seen so far; tests assert this is empty.
    pub fn violations(&self) -> Vec<String> {
        lock(&self.state).violations.clone()
    }

    /// Every webhook / chat.postMessage request, failed ones included.
    pub fn attempts(&self) -> usize {
        lock(&self.state).attempts
    }

    /// chat.postMessage requests with a well-formed but wrong token.
    pub fn auth_failures(&self) -> usize {
        lock(&self.state).auth_failures
    }
}

impl Drop for SlackStandIn {
    fn drop(&mut self) {
        self.server.abort();
    }
}

/// Every text a message shows: `text`, and the text of every block, field,
/// context element and button, joined with newlines (for "mentions X"
/// assertions).
pub fn message_text(body: &Value) -> String {
    fn walk(v: &Value, out: &mut Vec<String>) {
        match v {
            Value::Object(m) => {
                for (k, x) in m {
                    match (k.as_str(), x) {
                        ("text" | "alt_text" | "url" | "value", Value::String(s)) => {
                            out.push(s.clone())
                        }
                        _ => walk(x, out),
                    }
                }
            }
            Value::Array(a) => a.iter().for_each(|x| walk(x, out)),
            _ => {}
        }
    }
    let mut out = Vec::new();
    walk(body, &mut out);
    out.join("\n")
}

/// The buttons of the `actions` block with `block_id`, if any.
pub fn buttons(body: &Value, block_id: &str) -> Vec<Value> {
    body["blocks"]
        .as_array()
        .into_iter()
        .flatten()
        .filter(|b| b["type"] == "actions" && b["block_id"] == block_id)
        .flat_map(|b| b["elements"].as_array().cloned().unwrap_or_default())
        .collect()
}

fn is_json(headers: &HeaderMap) -> (bool, bool) {
    let ct = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("")
        .to_ascii_lowercase();
    let mut parts = ct.split(';').map(str::trim);
    let json = parts.next() == Some("application/json");
    let charset = parts.any(|p| p.starts_with("charset="));
    (json, charset)
}

fn take_failure(state: &Shared) -> Option<Fail> {
    let mut s = lock(state);
    s.attempts += 1;
    s.failures.pop_front()
}

/// The answer to a programmed failure; `None` for [`Fail::Hang`] after the
/// wait (the request then proceeds normally).
async fn failure_response(f: Fail, web_api: bool) -> Option<Response> {
    match f {
        Fail::RateLimited { retry_after_s } => {
            let mut r = if web_api {
                Json(json!({"ok": false, "error": "ratelimited"})).into_response()
            } else {
                "rate_limited".into_response()
            };
            *r.status_mut() = StatusCode::TOO_MANY_REQUESTS;
            r.headers_mut().insert(
                header::RETRY_AFTER,
                HeaderValue::from_str(&retry_after_s.to_string()).expect("digits"),
            );
            Some(r)
        }
        Fail::Status(code) => {
            let status = StatusCode::from_u16(code).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
            Some(if web_api {
                (
                    status,
                    Json(json!({"ok": false, "error": "internal_error"})),
                )
                    .into_response()
            } else {
                (status, "internal_error").into_response()
            })
        }
        Fail::Hang(d) => {
            tokio::time::sleep(d).await;
            None
        }
        Fail::Drop => {
            // Never answering is the closest axum gets to a dropped
            // connection; the client's timeout ends it.
            std::future::pending::<()>().await;
            None
        }
    }
}

async fn incoming_webhook(
    State(state): State<Shared>,
    uri: Uri,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    if let Some(f) = take_failure(&state) {
        if let Some(r) = failure_response(f, false).await {
            return r;
        }
    }
    let mut errs = Vec::new();
    if !is_json(&headers).0 {
        errs.push(format!(
            "webhook: Content-Type must be application/json, got {:?}",
            headers.get(header::CONTENT_TYPE)
        ));
    }
    let v: Value = match serde_json::from_slice(&body) {
        Ok(v) => v,
        Err(e) => {
            errs.push(format!("webhook: body is not JSON: {e}"));
            Value::Null
        }
    };
    let mut code = "invalid_payload";
    if v.is_object() {
        let has_text = v["text"].as_str().is_some_and(|t| !t.is_empty());
        if !has_text && v.get("blocks").is_none() {
            errs.push("webhook: neither `text` nor `blocks`".into());
            code = "no_text";
        }
        if let Some(b) = v.get("blocks") {
            validate_blocks(b, "webhook: blocks", &mut errs);
        }
    } else if !v.is_null() {
        errs.push("webhook: body is not a JSON object".into());
    }
    let mut s = lock(&state);
    if !errs.is_empty() {
        s.violations.extend(errs);
        return (StatusCode::BAD_REQUEST, code).into_response();
    }
    s.requests.push(SlackRequest {
        path: uri.path().to_string(),
        headers: header_map(&headers),
        body: v,
    });
    (
        [(header::CONTENT_TYPE, "text/html; charset=utf-8")],
        "ok".to_string(),
    )
        .into_response()
}

async fn post_message(
    State(state): State<Shared>,
    uri: Uri,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    if let Some(f) = take_failure(&state) {
        if let Some(r) = failure_response(f, true).await {
            return r;
        }
    }
    let fail = |state: &Shared, error: &str, breach: Option<String>| {
        let mut s = lock(state);
        if let Some(b) = breach {
            s.violations.push(b);
        }
        Json(json!({"ok": false, "error": error})).into_response()
    };
    let token = lock(&state).token.clone();
    let auth = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .map(str::to_string);
    match auth.as_deref().and_then(|a| a.strip_prefix("Bearer ")) {
        None => {
            return fail(
                &state,
                "not_authed",
                Some(format!(
                    "chat.postMessage: no `Authorization: Bearer xoxb-…` header (got {auth:?})"
                )),
            )
        }
        Some(t) if !t.starts_with("xox") => {
            return fail(
                &state,
                "invalid_auth",
                Some(format!("chat.postMessage: {t:?} is not a Slack token")),
            )
        }
        Some(t) if t != token => {
            lock(&state).auth_failures += 1;
            return fail(&state, "invalid_auth", None);
        }
        Some(_) => {}
    }
    let (json_ct, charset) = is_json(&headers);
    if !json_ct {
        return fail(
            &state,
            "invalid_form_data",
            Some(format!(
                "chat.postMessage: Content-Type must be application/json, got {:?}",
                headers.get(header::CONTENT_TYPE)
            )),
        );
    }
    let v: Value = match serde_json::from_slice(&body) {
        Ok(v @ Value::Object(_)) => v,
        Ok(_) => {
            return fail(
                &state,
                "invalid_json",
                Some("chat.postMessage: body is not a JSON object".into()),
            )
        }
        Err(e) => {
            return fail(
                &state,
                "invalid_json",
                Some(format!("chat.postMessage: body is not JSON: {e}")),
            )
        }
    };
    let channel = v["channel"].as_str().unwrap_or("").to_string();
    if channel.is_empty() {
        return fail(
            &state,
            "channel_not_found",
            Some("chat.postMessage: no `channel`".into()),
        );
    }
    let has_text = v["text"].as_str().is_some_and(|t| !t.is_empty());
    if !has_text && v.get("blocks").is_none() && v.get("attachments").is_none() {
        return fail(
            &state,
            "no_text",
            Some("chat.postMessage: neither `text` nor `blocks`".into()),
        );
    }
    if let Some(b) = v.get("blocks") {
        let mut errs = Vec::new();
        validate_blocks(b, "chat.postMessage: blocks", &mut errs);
        if !errs.is_empty() {
            let mut s = lock(&state);
            s.violations.extend(errs);
            return Json(json!({"ok": false, "error": "invalid_blocks"})).into_response();
        }
    }
    let mut s = lock(&state);
    s.ts += 100;
    let ts = format!("{}.{:06}", s.ts / 1_000_000, s.ts % 1_000_000);
    s.requests.push(SlackRequest {
        path: uri.path().to_string(),
        headers: header_map(&headers),
        body: v.clone(),
    });
    let mut answer = json!({
        "ok": true,
        "channel": channel,
        "ts": ts,
        "message": {"type": "message", "text": v["text"], "blocks": v["blocks"], "ts": ts},
    });
    if !charset {
        answer["warning"] = json!("missing_charset");
        answer["response_metadata"] = json!({"warnings": ["missing_charset"]});
    }
    Json(answer).into_response()
}

async fn response_url(
    State(state): State<Shared>,
    uri: Uri,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let mut errs = Vec::new();
    if !is_json(&headers).0 {
        errs.push(format!(
            "response_url: Content-Type must be application/json, got {:?}",
            headers.get(header::CONTENT_TYPE)
        ));
    }
    let v: Value = serde_json::from_slice(&body).unwrap_or(Value::Null);
    if !v.is_object() {
        errs.push("response_url: body is not a JSON object".into());
    } else {
        let has_text = v["text"].as_str().is_some_and(|t| !t.is_empty());
        let delete = v["delete_original"] == true;
        if !has_text && v.get("blocks").is_none() && !delete {
            errs.push("response_url: neither `text` nor `blocks`".into());
        }
        if let Some(b) = v.get("blocks") {
            validate_blocks(b, "response_url: blocks", &mut errs);
        }
        for k in ["replace_original", "delete_original"] {
            if v.get(k).is_some_and(|x| !x.is_boolean()) {
                errs.push(format!("response_url: `{k}` must be a boolean"));
            }
        }
        if let Some(t) = v.get("response_type") {
            if t != "in_channel" && t != "ephemeral" {
                errs.push(format!("response_url: response_type {t}"));
            }
        }
    }
    let mut s = lock(&state);
    if !errs.is_empty() {
        s.violations.extend(errs);
        return (StatusCode::BAD_REQUEST, "invalid_payload").into_response();
    }
    s.responses.push(SlackRequest {
        path: uri.path().to_string(),
        headers: header_map(&headers),
        body: v,
    });
    Json(json!({"ok": true})).into_response()
}

async fn unknown(State(state): State<Shared>, uri: Uri) -> Response {
    lock(&state)
        .violations
        .push(format!("request to unknown path {uri}"));
    (StatusCode::NOT_FOUND, "no_service").into_response()
}

fn char_len(s: &str) -> usize {
    s.chars().count()
}

/// Checks a text object; `plain_only` for places Slack allows only
/// `plain_text` (headers, buttons).
fn validate_text(t: &Value, at: &str, max: usize, plain_only: bool, errs: &mut Vec<String>) {
    let Some(o) = t.as_object() else {
        errs.push(format!("{at}: text object expected, got {t}"));
        return;
    };
    let ty = o.get("type").and_then(Value::as_str).unwrap_or("");
    match ty {
        "plain_text" => {}
        "mrkdwn" if !plain_only => {}
        _ => errs.push(format!(
            "{at}: text type must be {}, got {ty:?}",
            if plain_only {
                "plain_text"
            } else {
                "plain_text or mrkdwn"
            }
        )),
    }
    match o.get("text").and_then(Value::as_str) {
        Some("") => errs.push(format!("{at}: empty text")),
        Some(s) if char_len(s) > max => errs.push(format!(
            "{at}: text of {} characters (max {max})",
            char_len(s)
        )),
        Some(_) => {}
        None => errs.push(format!("{at}: text object without a `text` string")),
    }
    for k in o.keys() {
        let ok = match k.as_str() {
            "type" | "text" => true,
            "emoji" => ty == "plain_text" && o[k].is_boolean(),
            "verbatim" => ty == "mrkdwn" && o[k].is_boolean(),
            _ => false,
        };
        if !ok {
            errs.push(format!(
                "{at}: unexpected field `{k}` in a {ty} text object"
            ));
        }
    }
}

fn unknown_keys(
    o: &serde_json::Map<String, Value>,
    allowed: &[&str],
    at: &str,
    errs: &mut Vec<String>,
) {
    for k in o.keys() {
        if !allowed.contains(&k.as_str()) {
            errs.push(format!("{at}: unexpected field `{k}`"));
        }
    }
}

fn validate_button(e: &Value, at: &str, errs: &mut Vec<String>) {
    let Some(o) = e.as_object() else {
        errs.push(format!("{at}: element is not an object"));
        return;
    };
    if o.get("type").and_then(Value::as_str) != Some("button") {
        errs.push(format!(
            "{at}: element type must be button, got {}",
            e["type"]
        ));
        return;
    }
    unknown_keys(
        o,
        &[
            "type",
            "text",
            "action_id",
            "value",
            "style",
            "url",
            "confirm",
            "accessibility_label",
        ],
        at,
        errs,
    );
    match o.get("text") {
        Some(t) => validate_text(t, &format!("{at}.text"), 75, true, errs),
        None => errs.push(format!("{at}: button without `text`")),
    }
    match o.get("action_id").and_then(Value::as_str) {
        Some(a) if !a.is_empty() && char_len(a) <= 255 => {}
        other => errs.push(format!(
            "{at}: action_id must be 1..=255 chars, got {other:?}"
        )),
    }
    match o.get("value").and_then(Value::as_str) {
        Some(v) if char_len(v) <= 2000 => {}
        other => errs.push(format!(
            "{at}: value must be a string ≤ 2000 chars, got {other:?}"
        )),
    }
    if let Some(s) = o.get("style") {
        if s != "primary" && s != "danger" {
            errs.push(format!("{at}: style must be primary or danger, got {s}"));
        }
    }
}

/// Checks a `blocks` array; appends one line per breach to `errs`.
pub fn validate_blocks(blocks: &Value, at: &str, errs: &mut Vec<String>) {
    let Some(list) = blocks.as_array() else {
        errs.push(format!("{at}: not an array"));
        return;
    };
    if list.len() > 50 {
        errs.push(format!("{at}: {} blocks (max 50)", list.len()));
    }
    let mut ids = HashSet::new();
    for (i, b) in list.iter().enumerate() {
        let at = format!("{at}[{i}]");
        let Some(o) = b.as_object() else {
            errs.push(format!("{at}: block is not an object"));
            continue;
        };
        if let Some(id) = o.get("block_id") {
            match id.as_str() {
                Some(s) if !s.is_empty() && char_len(s) <= 255 => {
                    if !ids.insert(s.to_string()) {
                        errs.push(format!("{at}: duplicate block_id {s:?}"));
                    }
                }
                _ => errs.push(format!("{at}: block_id must be 1..=255 chars, got {id}")),
            }
        }
        let ty = o.get("type").and_then(Value::as_str).unwrap_or("");
        match ty {
            "section" => {
                unknown_keys(o, &["type", "block_id", "text", "fields", "accessory"], &at, errs);
                if o.get("text").is_none() && o.get("fields").is_none() {
                    errs.push(format!("{at}: section needs `text` or `fields`"));
                }
                if let Some(t) = o.get("text") {
                    validate_text(t, &format!("{at}.text"), 3000, false, errs);
                }
                if let Some(f) = o.get("fields") {
                    match f.as_array() {
                        Some(f) if !f.is_empty() && f.len() <= 10 => {
                            for (j, t) in f.iter().enumerate() {
                                validate_text(t, &format!("{at}.fields[{j}]"), 2000, false, errs);
                            }
                        }
                        _ => errs.push(format!("{at}: fields must be 1..=10 text objects")),
                    }
                }
                if let Some(a) = o.get("accessory") {
                    if a["type"] == "button" {
                        validate_button(a, &format!("{at}.accessory"), errs);
                    } else if a["type"] != "image" {
                        errs.push(format!("{at}: accessory type {}", a["type"]));
                    }
                }
            }
            "header" => {
                unknown_keys(o, &["type", "block_id", "text"], &at, errs);
                match o.get("text") {
                    Some(t) => validate_text(t, &format!("{at}.text"), 150, true, errs),
                    None => errs.push(format!("{at}: header without `text`")),
                }
            }
            "context" => {
                unknown_keys(o, &["type", "block_id", "elements"], &at, errs);
                match o.get("elements").and_then(Value::as_array) {
                    Some(els) if !els.is_empty() && els.len() <= 10 => {
                        for (j, e) in els.iter().enumerate() {
                            let at = format!("{at}.elements[{j}]");
                            if e["type"] == "image" {
                                if !e["image_url"].is_string() || !e["alt_text"].is_string() {
                                    errs.push(format!("{at}: image needs image_url and alt_text"));
                                }
                            } else {
                                validate_text(e, &at, 3000, false, errs);
                            }
                        }
                    }
                    _ => errs.push(format!("{at}: context needs 1..=10 elements")),
                }
            }
            "actions" => {
                unknown_keys(o, &["type", "block_id", "elements"], &at, errs);
                match o.get("elements").and_then(Value::as_array) {
                    Some(els) if !els.is_empty() && els.len() <= 25 => {
                        let mut action_ids = HashSet::new();
                        for (j, e) in els.iter().enumerate() {
                            validate_button(e, &format!("{at}.elements[{j}]"), errs);
                            if let Some(a) = e["action_id"].as_str() {
                                if !action_ids.insert(a.to_string()) {
                                    errs.push(format!("{at}: duplicate action_id {a:?}"));
                                }
                            }
                        }
                    }
                    _ => errs.push(format!("{at}: actions needs 1..=25 elements")),
                }
            }
            "divider" => unknown_keys(o, &["type", "block_id"], &at, errs),
            other => errs.push(format!(
                "{at}: block type must be section, header, context, actions or divider, got {other:?}"
            )),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::{Duration, Instant};

    fn good_blocks() -> Value {
        json!([
            {"type": "header", "text": {"type": "plain_text", "text": "HighLatency firing"}},
            {"type": "section", "text": {"type": "mrkdwn", "text": "*severity* page"},
             "fields": [{"type": "mrkdwn", "text": "*instance*\nweb-1"}]},
            {"type": "context", "elements": [{"type": "mrkdwn", "text": "<https://runbooks/x|runbook>"}]},
            {"type": "divider"},
            {"type": "actions", "block_id": "homeostat_approval", "elements": [
                {"type": "button", "text": {"type": "plain_text", "text": "Approve"},
                 "action_id": "homeostat_approve", "value": "run-1", "style": "primary"},
                {"type": "button", "text": {"type": "plain_text", "text": "Deny"},
                 "action_id": "homeostat_deny", "value": "run-1", "style": "danger"}
            ]}
        ])
    }

    #[test]
    fn good_blocks_pass_and_bad_ones_are_named() {
        let mut errs = Vec::new();
        validate_blocks(&good_blocks(), "b", &mut errs);
        assert!(errs.is_empty(), "{errs:?}");

        let bad = json!([
            {"type": "image"},
            {"type": "header", "text": {"type": "mrkdwn", "text": "x"}},
            {"type": "section"},
            {"type": "actions", "elements": [
                {"type": "button", "text": {"type": "plain_text", "text": "A"}, "value": "1", "style": "green"}
            ]},
            {"type": "divider", "text": "no"},
            {"type": "context", "elements": [{"type": "markdown", "text": "x"}]},
            {"type": "section", "text": {"type": "plain_text", "text": ""}}
        ]);
        let mut errs = Vec::new();
        validate_blocks(&bad, "b", &mut errs);
        let all = errs.join("\n");
        for needle in [
            "b[0]: block type must be",
            "b[1].text: text type must be plain_text",
            "b[2]: section needs",
            "b[3].elements[0]: action_id",
            "b[3].elements[0]: style",
            "b[4]: unexpected field `text`",
            "b[5].elements[0]: text type",
            "b[6].text: empty text",
        ] {
            assert!(all.contains(needle), "missing {needle:?} in:\n{all}");
        }
    }

    #[tokio::test]
    async fn web_api_contract_failures_and_recording() {
        let s = SlackStandIn::start().await;
        let c = reqwest::Client::new();
        let msg = json!({"channel": "#alerts", "text": "HighLatency", "blocks": good_blocks()});

        // Wrong token: 200 ok:false invalid_auth, not a breach.
        let r = c
            .post(s.api_url())
            .bearer_auth("xoxb-wrong")
            .json(&msg)
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 200);
        let v: Value = r.json().await.unwrap();
        assert_eq!(v, json!({"ok": false, "error": "invalid_auth"}));
        assert_eq!(s.auth_failures(), 1);
        assert!(s.violations().is_empty());

        // Programmed failures come first, then success.
        s.fail_next(vec![
            Fail::RateLimited { retry_after_s: 1 },
            Fail::Status(500),
        ]);
        let r = c
            .post(s.api_url())
            .bearer_auth(BOT_TOKEN)
            .json(&msg)
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 429);
        assert_eq!(r.headers()["retry-after"], "1");
        let r = c
            .post(s.api_url())
            .bearer_auth(BOT_TOKEN)
            .json(&msg)
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 500);
        let r = c
            .post(s.api_url())
            .bearer_auth(BOT_TOKEN)
            .header("content-type", "application/json; charset=utf-8")
            .body(msg.to_string())
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 200);
        let v: Value = r.json().await.unwrap();
        assert_eq!(v["ok"], true, "{v}");
        assert_eq!(v["channel"], "#alerts");
        assert!(v["ts"].as_str().unwrap().contains('.'));
        assert!(v.get("warning").is_none(), "charset was given: {v}");
        // reqwest's .json() sends no charset: Slack warns, still posts.
        let r = c
            .post(s.api_url())
            .bearer_auth(BOT_TOKEN)
            .json(&msg)
            .send()
            .await
            .unwrap();
        let v: Value = r.json().await.unwrap();
        assert_eq!(
            (v["ok"].clone(), v["warning"].clone()),
            (json!(true), json!("missing_charset"))
        );
        assert_eq!(s.attempts(), 5);
        assert_eq!(s.requests().len(), 2);
        assert!(s.violations().is_empty(), "{:?}", s.violations());
        let m = &s.messages()[0];
        assert!(message_text(m).contains("runbooks/x"));
        let b = buttons(m, "homeostat_approval");
        assert_eq!(b.len(), 2);
        assert_eq!(b[0]["action_id"], "homeostat_approve");
        assert_eq!(
            s.requests()[0].headers["authorization"],
            format!("Bearer {BOT_TOKEN}")
        );

        // Breaches: no auth header, no channel, bad blocks.
        let r = c.post(s.api_url()).json(&msg).send().await.unwrap();
        assert_eq!(r.json::<Value>().await.unwrap()["error"], "not_authed");
        let r = c
            .post(s.api_url())
            .bearer_auth(BOT_TOKEN)
            .json(&json!({"text": "x"}))
            .send()
            .await
            .unwrap();
        assert_eq!(
            r.json::<Value>().await.unwrap()["error"],
            "channel_not_found"
        );
        let r = c
            .post(s.api_url())
            .bearer_auth(BOT_TOKEN)
            .json(&json!({"channel": "C1", "blocks": [{"type": "table"}]}))
            .send()
            .await
            .unwrap();
        assert_eq!(r.json::<Value>().await.unwrap()["error"], "invalid_blocks");
        assert_eq!(s.violations().len(), 3, "{:?}", s.violations());
        assert_eq!(s.requests().len(), 2);
    }

    #[tokio::test]
    async fn incoming_webhook_and_response_url() {
        let s = SlackStandIn::start().await;
        let c = reqwest::Client::new();
        s.fail_next(vec![Fail::Hang(Duration::from_millis(300))]);
        let t = Instant::now();
        let r = c
            .post(s.webhook_url())
            .json(&json!({"text": "hi", "blocks": good_blocks()}))
            .send()
            .await
            .unwrap();
        assert!(t.elapsed() >= Duration::from_millis(300));
        assert_eq!(r.status(), 200);
        assert_eq!(r.text().await.unwrap(), "ok");
        assert_eq!(s.requests()[0].path, "/services/T000/B000/XXXX");

        let r = c
            .post(s.webhook_url())
            .header("content-type", "text/plain")
            .body("{\"text\":\"x\"}")
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 400);
        let r = c
            .post(s.webhook_url())
            .json(&json!({"username": "x"}))
            .send()
            .await
            .unwrap();
        assert_eq!(
            (r.status().as_u16(), r.text().await.unwrap()),
            (400, "no_text".into())
        );
        assert_eq!(s.violations().len(), 2, "{:?}", s.violations());

        let r = c
            .post(s.response_url("42"))
            .json(&json!({"replace_original": true, "text": "Approved by @alice"}))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 200);
        assert_eq!(s.responses().len(), 1);
        assert_eq!(s.responses()[0].body["text"], "Approved by @alice");
        assert_eq!(s.requests().len(), 1);
    }
}
