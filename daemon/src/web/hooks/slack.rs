//! Slack: `POST /hooks/slack/interactivity` (the Approve/Deny buttons of
//! approval messages) and `POST /hooks/slack/command` (`/homeostat status |
//! pause | resume | run`).
//!
//! Every request must carry Slack's signature (`X-Slack-Signature: v0=` +
//! hex HMAC-SHA256 of `v0:<timestamp>:<body>` with the signing secret), a
//! timestamp within `max_age` of now, and a signature not used before.
//! Only `allowed_users` may change anything; anyone else gets a polite
//! refusal and nothing changes.

use std::time::Duration;

use axum::body::{Body, Bytes};
use axum::extract::State;
use axum::http::request::Parts;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde_json::{json, Value};

use super::{header, hmac_matches, AppState, Hooks, SlackHook};
use crate::collect::now_ms;
use crate::playbooks::TriggerRequest;
use crate::state::RunFilter;

const HOOK: &str = "slack";

/// The `action_id`s of the notifier's approval buttons.
pub const APPROVE: &str = "homeostat_approve";
pub const DENY: &str = "homeostat_deny";

/// Checks signature, age and replay; returns the config and the raw body,
/// or the refusal.
async fn verified(s: &AppState, parts: &Parts, body: Body) -> Result<(SlackHook, Bytes), Response> {
    let h = &s.hooks;
    let cfg = h.config();
    let Some(sl) = cfg.slack.clone() else {
        return Err(h.refuse(
            HOOK,
            "not_configured",
            StatusCode::NOT_FOUND,
            "hooks.slack is not configured",
        ));
    };
    let (Some(ts), Some(sig)) = (
        header(&parts.headers, "x-slack-request-timestamp"),
        header(&parts.headers, "x-slack-signature"),
    ) else {
        return Err(h.refuse(
            HOOK,
            "unauthorized",
            StatusCode::UNAUTHORIZED,
            "X-Slack-Request-Timestamp and X-Slack-Signature are required",
        ));
    };
    let Ok(ts_secs) = ts.trim().parse::<i64>() else {
        return Err(h.refuse(
            HOOK,
            "unauthorized",
            StatusCode::UNAUTHORIZED,
            "X-Slack-Request-Timestamp is not a unix time",
        ));
    };
    let now = now_ms();
    let max_age_ms = sl.max_age.0.as_millis() as i64;
    if (now - ts_secs.saturating_mul(1000)).abs() > max_age_ms {
        return Err(h.refuse(
            HOOK,
            "stale",
            StatusCode::UNAUTHORIZED,
            &format!(
                "request timestamp is more than hooks.slack.max_age ({}) from now",
                sl.max_age
            ),
        ));
    }
    let (ts, sig) = (ts.trim().to_string(), sig.trim().to_ascii_lowercase());
    let bytes = h.body(HOOK, body, cfg.max_body).await?;
    let valid = sig.strip_prefix("v0=").is_some_and(|hex| {
        hmac_matches(
            sl.signing_secret.expose().as_bytes(),
            &[b"v0:", ts.as_bytes(), b":", &bytes],
            hex,
        )
    });
    if !valid {
        return Err(h.refuse(
            HOOK,
            "bad_signature",
            StatusCode::UNAUTHORIZED,
            "X-Slack-Signature does not match hooks.slack.signing_secret",
        ));
    }
    // A signature is only remembered once it proved valid, so nobody can
    // block a request in advance. Twice max_age covers both directions.
    match s
        .playbooks
        .state_db()
        .claim_delivery(HOOK, &sig, now, now - 2 * max_age_ms)
        .await
    {
        Ok(true) => Ok((sl, bytes)),
        Ok(false) => Err(h.refuse(
            HOOK,
            "replayed",
            StatusCode::UNAUTHORIZED,
            "this signed request was already used",
        )),
        Err(e) => {
            tracing::error!(error = %e, "cannot record a Slack request signature");
            Err(h.refuse(
                HOOK,
                "error",
                StatusCode::INTERNAL_SERVER_ERROR,
                "state database error",
            ))
        }
    }
}

fn form(bytes: &[u8]) -> Vec<(String, String)> {
    form_urlencoded::parse(bytes).into_owned().collect()
}

fn field<'a>(f: &'a [(String, String)], name: &str) -> &'a str {
    f.iter()
        .find(|(k, _)| k == name)
        .map_or("", |(_, v)| v.as_str())
}

/// POSTs `body` to a Slack `response_url` in the background; failures are
/// logged, never fatal. The URL is a capability and is not logged.
fn respond(h: &Hooks, url: &str, body: Value) {
    if url.is_empty() {
        return;
    }
    let req = h
        .client
        .post(url)
        .timeout(Duration::from_secs(10))
        .json(&body);
    tokio::spawn(async move {
        match req.send().await {
            Ok(r) if r.status().is_success() => {}
            Ok(r) => {
                tracing::warn!(
                    status = r.status().as_u16(),
                    "Slack response_url refused the message"
                )
            }
            Err(e) => {
                tracing::warn!(error = %e.without_url(), "cannot post to Slack's response_url")
            }
        }
    });
}

fn ephemeral(text: &str) -> Value {
    json!({"response_type": "ephemeral", "replace_original": false, "text": text})
}

pub(super) async fn interactivity(State(s): State<AppState>, parts: Parts, body: Body) -> Response {
    let (sl, bytes) = match verified(&s, &parts, body).await {
        Ok(v) => v,
        Err(r) => return r,
    };
    let h = &s.hooks;
    let f = form(&bytes);
    let p: Value = match serde_json::from_str(field(&f, "payload")) {
        Ok(p) => p,
        Err(e) => {
            return h.refuse(
                HOOK,
                "bad_request",
                StatusCode::BAD_REQUEST,
                &format!("the payload field is not JSON: {e}"),
            )
        }
    };
    let kind = p["type"].as_str().unwrap_or_default();
    let action = &p["actions"][0];
    let action_id = action["action_id"].as_str().unwrap_or_default();
    if kind != "block_actions" || (action_id != APPROVE && action_id != DENY) {
        return h.accept(HOOK, "accepted", json!({"ignored": kind}));
    }
    let run_id = action["value"].as_str().unwrap_or_default();
    let user = p["user"]["id"].as_str().unwrap_or_default();
    let name = p["user"]["username"]
        .as_str()
        .or_else(|| p["user"]["name"].as_str())
        .unwrap_or_default();
    let url = p["response_url"].as_str().unwrap_or_default();
    let approve = action_id == APPROVE;
    let verb = if approve { "approve" } else { "deny" };
    if !sl.allowed_users.iter().any(|u| u == user) {
        tracing::warn!(
            user,
            name,
            run = run_id,
            "Slack user may not {verb} runs (not in hooks.slack.allowed_users)"
        );
        respond(
            h,
            url,
            ephemeral(&format!(
                "Sorry <@{user}>, you are not allowed to {verb} homeostat runs. Ask someone listed in hooks.slack.allowed_users."
            )),
        );
        h.count(HOOK, "forbidden_user");
        return (StatusCode::OK, "").into_response();
    }
    let by = format!("slack:{user}");
    match s.playbooks.decide(run_id, approve, &by).await {
        Ok(run) => {
            let text = format!(
                "*{}* by <@{user}> — run `{}` of {} on {}",
                if approve { "Approved" } else { "Denied" },
                run.id,
                run.playbook,
                run.target
            );
            tracing::info!(run = %run.id, by = %by, approve, "run decided from Slack");
            respond(
                h,
                url,
                json!({
                    "replace_original": true,
                    "text": text,
                    "blocks": [{"type": "section", "text": {"type": "mrkdwn", "text": text}}],
                }),
            );
        }
        Err(e) => {
            respond(
                h,
                url,
                ephemeral(&format!("Could not {verb} run `{run_id}`: {e}")),
            );
        }
    }
    h.count(HOOK, "accepted");
    (StatusCode::OK, "").into_response()
}

const HELP: &str = "Usage: `/homeostat status` · `/homeostat pause [playbook]` · `/homeostat resume [playbook]` · `/homeostat run <playbook> <target>`";

pub(super) async fn command(State(s): State<AppState>, parts: Parts, body: Body) -> Response {
    let (sl, bytes) = match verified(&s, &parts, body).await {
        Ok(v) => v,
        Err(r) => return r,
    };
    let h = &s.hooks;
    let f = form(&bytes);
    let user = field(&f, "user_id").to_string();
    let words: Vec<&str> = field(&f, "text").split_whitespace().collect();
    let sub = words.first().copied().unwrap_or("help");
    let reply = |text: String| -> Response {
        Json(json!({"response_type": "ephemeral", "text": text})).into_response()
    };
    if sub == "status" {
        h.count(HOOK, "accepted");
        return reply(status(&s).await);
    }
    if !matches!(sub, "pause" | "resume" | "run") {
        h.count(HOOK, "accepted");
        return reply(HELP.to_string());
    }
    if !sl.allowed_users.contains(&user) {
        tracing::warn!(user = %user, command = sub, "Slack user may not change homeostat (not in hooks.slack.allowed_users)");
        h.count(HOOK, "forbidden_user");
        return reply(format!(
            "Sorry <@{user}>, you are not allowed to {sub} homeostat playbooks. Ask someone listed in hooks.slack.allowed_users."
        ));
    }
    let by = format!("slack:{user}");
    let text = match (sub, &words[1..]) {
        ("pause", [] | [_]) => {
            let pb = words.get(1).copied();
            match s.playbooks.pause(pb, &by).await {
                Ok(()) => format!(
                    "Automatic runs paused for {}.",
                    pb.unwrap_or("all playbooks")
                ),
                Err(e) => format!("Could not pause: {e}"),
            }
        }
        ("resume", [] | [_]) => {
            let pb = words.get(1).copied();
            match s.playbooks.resume_runs(pb, &by).await {
                Ok(()) => format!(
                    "Automatic runs resumed for {}.",
                    pb.unwrap_or("all playbooks")
                ),
                Err(e) => format!("Could not resume: {e}"),
            }
        }
        ("run", [pb, target]) => {
            let req = TriggerRequest {
                playbook: pb.to_string(),
                target: Some(target.to_string()),
                labels: Vec::new(),
                value: 0.0,
                kind: "manual".into(),
                detail: json!({"by": by, "via": "slack"}),
                dry_run: false,
                requested_by: by.clone(),
            };
            match s.playbooks.trigger(req).await {
                Ok(r) => format!(
                    "Run `{}` of {} on {}: {}{}",
                    r.id,
                    r.playbook,
                    r.target,
                    r.state,
                    r.reason.map(|w| format!(" ({w})")).unwrap_or_default()
                ),
                Err(e) => format!("Could not start {pb}: {e}"),
            }
        }
        _ => HELP.to_string(),
    };
    h.count(HOOK, "accepted");
    reply(text)
}

async fn status(s: &AppState) -> String {
    let e = &s.playbooks;
    let mut out = format!(
        "*homeostat* — automatic runs {}",
        if e.is_paused(None) {
            "*paused* for all playbooks"
        } else {
            "active"
        }
    );
    let paused: Vec<String> = e
        .playbooks()
        .iter()
        .map(|p| p.spec.name.clone())
        .filter(|n| e.is_paused(Some(n)))
        .collect();
    if !paused.is_empty() {
        out += &format!("\nPaused playbooks: {}", paused.join(", "));
    }
    for (t, why) in e.holds() {
        out += &format!("\nHeld: {t} ({why})");
    }
    let waiting = e
        .runs(&RunFilter {
            states: vec!["awaiting_approval".into()],
            limit: 20,
            ..Default::default()
        })
        .await
        .unwrap_or_default();
    if waiting.is_empty() {
        out += "\nNo runs awaiting approval.";
    } else {
        out += "\nAwaiting approval:";
        for r in waiting {
            out += &format!("\n• `{}` {} on {}", r.id, r.playbook, r.target);
        }
    }
    let recent = e
        .runs(&RunFilter {
            limit: 5,
            ..Default::default()
        })
        .await
        .unwrap_or_default();
    if !recent.is_empty() {
        out += "\nRecent runs:";
        for r in recent {
            out += &format!("\n• `{}` {} on {}: {}", r.id, r.playbook, r.target, r.state);
        }
    }
    out
}
