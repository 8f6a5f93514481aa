//! Handler tests without a socket: every refusal changes nothing and is
//! counted; signatures, rotation, replay and redelivery.

use std::sync::atomic::AtomicBool;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::body::Body;
use axum::http::{Request, StatusCode};
use serde_json::{json, Value};
use tower::ServiceExt;

use super::*;
use crate::collect::TargetRegistry;
use crate::daemon::ReloadHandle;
use crate::playbooks::PlaybookEngine;
use crate::rules::RuleManager;
use crate::state::{RunFilter, StateDb};
use crate::store::{Store, StoreConfig};
use crate::telemetry::Telemetry;
use crate::web::{router, WebConfig};

const AM_TOKEN: &str = "am-token-7f3a";
const PD_OLD: &str = "pd-secret-old-91c2";
const PD_NEW: &str = "pd-secret-new-44d8";
const SLACK_SECRET: &str = "slack-signing-5e6f";

fn hooks_yaml() -> String {
    format!(
        r#"
max_body: 4KiB
alertmanager:
  bearer_token: {AM_TOKEN}
pagerduty:
  secrets: [{PD_OLD}, {PD_NEW}]
  services:
    - service_id: PMAPPED
      target: inference-api
slack:
  signing_secret: {SLACK_SECRET}
  allowed_users: [UOK]
  max_age: 5m
"#
    )
}

/// Runs wait for approval, so nothing is ever executed by these tests.
const PLAYBOOKS: [&str; 3] = [
    r#"name: am
trigger: {alert: GpuHot}
target: '{{ $labels.instance }}'
guards: {approval: {timeout: 1h}}
steps: [{name: s, action: exec, params: {argv: ['true']}}]
"#,
    r#"name: pd
trigger: {alert: PagerDutyIncident}
target: '{{ $labels.target }}'
guards: {approval: {timeout: 1h}}
steps: [{name: s, action: exec, params: {argv: ['true']}}]
"#,
    r#"name: gated
trigger: {manual: true}
guards: {approval: {timeout: 1h}}
steps: [{name: s, action: exec, params: {argv: ['true']}}]
"#,
];

struct T {
    app: Router,
    hooks: Hooks,
    engine: PlaybookEngine,
    db: StateDb,
    telemetry: Arc<Telemetry>,
    _dir: tempfile::TempDir,
}

async fn setup(hooks_cfg: &str) -> T {
    let dir = tempfile::tempdir().unwrap();
    let db = StateDb::open(&dir.path().join("state.db")).await.unwrap();
    let (app, hooks, engine, telemetry) = build(db.clone(), hooks_cfg).await;
    T {
        app,
        hooks,
        engine,
        db,
        telemetry,
        _dir: dir,
    }
}

async fn build(db: StateDb, hooks_cfg: &str) -> (Router, Hooks, PlaybookEngine, Arc<Telemetry>) {
    let cfg: HooksConfig = serde_norway::from_str(hooks_cfg).unwrap();
    let mut v = Validator::new();
    cfg.validate("hooks", &mut v);
    assert!(v.issues.is_empty(), "{:?}", v.issues);
    let store = Arc::new(Store::new(StoreConfig {
        retention_ms: 3_600_000,
        max_series: 1000,
    }));
    let mut telemetry = Telemetry::new(store.clone());
    let sender = crate::notify::AlertmanagerSender::new(&mut telemetry.registry);
    let breakers = crate::act::BreakerRegistry::new(&mut telemetry.registry);
    let query = Arc::new(parking_lot::RwLock::new(crate::query::Engine::default()));
    let deps = Arc::new(crate::act::ActDeps::empty(
        breakers.clone(),
        crate::act::Escalator::detached(),
    ));
    let engine = PlaybookEngine::new(
        db.clone(),
        store.clone(),
        query.clone(),
        deps.clone(),
        &mut telemetry.registry,
        tokio_util::task::TaskTracker::new(),
        tokio_util::sync::CancellationToken::new(),
    );
    let books = PLAYBOOKS
        .iter()
        .map(|t| {
            crate::playbooks::file::load_str(t, std::path::Path::new("t.yml"), engine.actions())
                .unwrap()
        })
        .collect();
    engine.apply(books, Default::default(), deps, Duration::from_secs(60));
    engine.recover().await.unwrap();
    let rules = RuleManager::new(
        store.clone(),
        db,
        sender,
        &mut telemetry.registry,
        crate::rules::RuleSettings {
            engine: crate::query::Engine::default(),
            default_interval: Duration::from_secs(60),
            external_labels: Vec::new(),
            external_url: "http://x".into(),
            resend_delay: Duration::from_secs(60),
            evaluate_after_scrape: true,
            outage_tolerance: Duration::from_secs(3600),
        },
        tokio_util::task::TaskTracker::new(),
        tokio_util::sync::CancellationToken::new(),
    )
    .await;
    let hooks = Hooks::new(cfg, &mut telemetry.registry, reqwest::Client::new());
    let (reload, _rx) = ReloadHandle::channel();
    let telemetry = Arc::new(telemetry);
    let app = router(
        AppState {
            store,
            engine: query,
            targets: TargetRegistry::default(),
            rules,
            telemetry: telemetry.clone(),
            reload,
            ready: Arc::new(AtomicBool::new(true)),
            playbooks: engine.clone(),
            breakers,
            auth: crate::web::auth::Auth::new(None, Default::default()),
            forecasts: None,
            autoscalers: None,
            dispatcher: crate::notify::Dispatcher::new(
                crate::notify::silence::Silences::new(None),
                Default::default(),
            ),
            hooks: hooks.clone(),
        },
        &WebConfig::default(),
    );
    (app, hooks, engine, telemetry)
}

async fn send(t: &T, uri: &str, headers: &[(&str, String)], body: &[u8]) -> (StatusCode, String) {
    let mut req = Request::builder()
        .method("POST")
        .uri(uri)
        .header("content-length", body.len());
    for (k, v) in headers {
        req = req.header(*k, v);
    }
    let rsp = t
        .app
        .clone()
        .oneshot(req.body(Body::from(body.to_vec())).unwrap())
        .await
        .unwrap();
    let status = rsp.status();
    let bytes = axum::body::to_bytes(rsp.into_body(), 1 << 20)
        .await
        .unwrap();
    (status, String::from_utf8_lossy(&bytes).into_owned())
}

async fn runs(t: &T, playbook: &str) -> Vec<crate::state::RunRecord> {
    t.engine
        .runs(&RunFilter {
            playbook: Some(playbook.into()),
            limit: 100,
            ..Default::default()
        })
        .await
        .unwrap()
}

fn am_payload(fingerprint: &str, status: &str, instance: &str) -> Vec<u8> {
    json!({
        "version": "4", "groupKey": "{}:{alertname=\"GpuHot\"}", "status": status,
        "receiver": "homeostat", "groupLabels": {"alertname": "GpuHot"},
        "commonLabels": {"alertname": "GpuHot"}, "commonAnnotations": {},
        "externalURL": "http://am:9093", "truncatedAlerts": 0,
        "alerts": [{
            "status": status,
            "labels": {"alertname": "GpuHot", "instance": instance},
            "annotations": {"summary": "hot"},
            "startsAt": "2026-01-01T00:00:00Z", "endsAt": "0001-01-01T00:00:00Z",
            "generatorURL": "http://prom/graph", "fingerprint": fingerprint,
        }],
    })
    .to_string()
    .into_bytes()
}

fn bearer(token: &str) -> (&'static str, String) {
    ("authorization", format!("Bearer {token}"))
}

#[test]
fn config_validates_and_never_prints_secrets() {
    let cfg: HooksConfig = serde_norway::from_str(&hooks_yaml()).unwrap();
    assert_eq!(cfg.max_body, ByteSize(4096));
    let shown = format!("{cfg:?}");
    for s in [AM_TOKEN, PD_OLD, PD_NEW, SLACK_SECRET] {
        assert!(!shown.contains(s), "{shown}");
    }
    let bad: HooksConfig = serde_norway::from_str(
        "max_body: 0\npagerduty: {secrets: []}\nslack: {allowed_users: [U1], max_age: 0s}\nalertmanager: {bearer_token: ''}",
    )
    .unwrap();
    let mut v = Validator::new();
    bad.validate("hooks", &mut v);
    let paths: Vec<String> = v
        .issues
        .iter()
        .map(|i| i.path.clone().unwrap_or_default())
        .collect();
    for p in [
        "hooks.max_body",
        "hooks.pagerduty.secrets",
        "hooks.slack.signing_secret",
        "hooks.slack.max_age",
        "hooks.alertmanager.bearer_token",
    ] {
        assert!(paths.iter().any(|x| x == p), "{p} not in {paths:?}");
    }
    assert!(serde_norway::from_str::<HooksConfig>("slack: {signing: x}").is_err());
    // Defaults.
    let d = HooksConfig::default();
    assert_eq!(d.max_body, ByteSize(256 << 10));
    assert!(d.alertmanager.is_none() && d.pagerduty.is_none() && d.slack.is_none());
    let s: HooksConfig = serde_norway::from_str("slack: {signing_secret: x}").unwrap();
    assert_eq!(s.slack.unwrap().max_age, PromDuration::from_secs(300));
}

#[test]
fn slack_signature_matches_slacks_documented_example() {
    // From Slack's "Verifying requests from Slack" walk-through.
    let body = "token=xyzz0WbapA4vBCDEFasx0q6G&team_id=T1DC2JH3J&team_domain=testteamnow&channel_id=G8PSS9T3V&channel_name=foobar&user_id=U2CERLKJA&user_name=roadrunner&command=%2Fwebhook-collect&text=&response_url=https%3A%2F%2Fhooks.slack.com%2Fcommands%2FT1DC2JH3J%2F397700885554%2F96rGlfmibIGlgcZRskXaIFfN&trigger_id=398738663015.47445629121.803a0bc887a14d10d2c447fce8b6703c";
    let secret = b"8f742231b10e8888abcd99yyyzzz85a5";
    let expected = "a2114d57b48eac39b9ad189dd8316235a7b4a8d21a10bd27519666489c69b503";
    let parts: [&[u8]; 4] = [b"v0:", b"1531420618", b":", body.as_bytes()];
    assert_eq!(hmac_hex(secret, &parts), expected);
    assert!(hmac_matches(secret, &parts, expected));
    assert!(!hmac_matches(b"another secret", &parts, expected));
    assert!(!hmac_matches(secret, &parts, "zz"));
}

#[tokio::test]
async fn unconfigured_hooks_answer_404() {
    let t = setup("{}").await;
    for (uri, hook) in [
        ("/hooks/alertmanager", "alertmanager"),
        ("/hooks/pagerduty", "pagerduty"),
        ("/hooks/slack/command", "slack"),
        ("/hooks/slack/interactivity", "slack"),
    ] {
        assert_eq!(send(&t, uri, &[], b"{}").await.0, StatusCode::NOT_FOUND);
        assert!(t.hooks.requests(hook, "not_configured") >= 1);
    }
}

#[tokio::test]
async fn alertmanager_refusals_change_nothing_and_are_counted() {
    let t = setup(&hooks_yaml()).await;
    let body = am_payload("fp1", "firing", "gpu-1");
    let uri = "/hooks/alertmanager";
    assert_eq!(send(&t, uri, &[], &body).await.0, StatusCode::UNAUTHORIZED);
    assert_eq!(
        send(&t, uri, &[bearer("wrong")], &body).await.0,
        StatusCode::UNAUTHORIZED
    );
    assert_eq!(t.hooks.requests("alertmanager", "unauthorized"), 2);
    let big = vec![b' '; 5000];
    assert_eq!(
        send(&t, uri, &[bearer(AM_TOKEN)], &big).await.0,
        StatusCode::PAYLOAD_TOO_LARGE
    );
    assert_eq!(t.hooks.requests("alertmanager", "too_large"), 1);
    assert_eq!(
        send(&t, uri, &[bearer(AM_TOKEN)], b"{not json").await.0,
        StatusCode::BAD_REQUEST
    );
    let v3 = String::from_utf8(body.clone())
        .unwrap()
        .replace("\"version\":\"4\"", "\"version\":\"3\"");
    assert_eq!(
        send(&t, uri, &[bearer(AM_TOKEN)], v3.as_bytes()).await.0,
        StatusCode::BAD_REQUEST
    );
    assert_eq!(t.hooks.requests("alertmanager", "bad_request"), 2);
    assert!(runs(&t, "am").await.is_empty());
    assert_eq!(t.hooks.requests("alertmanager", "accepted"), 0);
}

#[tokio::test]
async fn alertmanager_alert_acts_once_per_instance_across_redeliveries() {
    let t = setup(&hooks_yaml()).await;
    let uri = "/hooks/alertmanager";
    let h = [bearer(AM_TOKEN)];
    let (status, body) = send(&t, uri, &h, &am_payload("fp1", "firing", "gpu-1")).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let r = runs(&t, "am").await;
    assert_eq!(r.len(), 1);
    assert_eq!(r[0].target, "gpu-1");
    assert_eq!(r[0].state, "awaiting_approval");
    assert_eq!(r[0].trigger_detail["fingerprint"], "fp1");
    assert_eq!(r[0].trigger_detail["receiver"], "homeostat");
    assert!(r[0].requested_by.contains("alertmanager"));
    // Deny it, so a second start would not be stopped by dedup: only the
    // delivery memory can stop it.
    t.engine.decide(&r[0].id, false, "test").await.unwrap();
    for _ in 0..3 {
        let (status, body) = send(&t, uri, &h, &am_payload("fp1", "firing", "gpu-1")).await;
        assert_eq!(status, StatusCode::OK);
        assert!(body.contains("\"duplicates\":1"), "{body}");
    }
    assert_eq!(runs(&t, "am").await.len(), 1);
    assert_eq!(t.hooks.requests("alertmanager", "duplicate"), 3);
    // A different alert instance acts.
    send(&t, uri, &h, &am_payload("fp2", "firing", "gpu-2")).await;
    assert_eq!(runs(&t, "am").await.len(), 2);
    assert_eq!(t.hooks.requests("alertmanager", "accepted"), 2);
    // The delivery memory is durable: a restart does not forget it.
    let (app2, hooks2, engine2, _) = build(t.db.clone(), &hooks_yaml()).await;
    let t2 = T {
        app: app2,
        hooks: hooks2,
        engine: engine2,
        db: t.db.clone(),
        telemetry: t.telemetry.clone(),
        _dir: tempfile::tempdir().unwrap(),
    };
    send(&t2, uri, &h, &am_payload("fp1", "firing", "gpu-1")).await;
    assert_eq!(t2.hooks.requests("alertmanager", "duplicate"), 1);
    assert_eq!(runs(&t2, "am").await.len(), 2);
}

fn pd_event(id: &str, kind: &str, service_id: &str, service: &str) -> Vec<u8> {
    json!({"event": {
        "id": id, "event_type": kind, "resource_type": "incident",
        "occurred_at": "2026-05-20T14:00:00.000Z",
        "agent": {"id": "PUSER1", "summary": "Ada Lovelace", "type": "user_reference"},
        "client": {"name": "PagerDuty"},
        "data": {
            "id": "PINC1", "type": "incident", "number": 42, "title": "GPU on fire",
            "status": kind.trim_start_matches("incident."), "urgency": "high",
            "html_url": "https://x.pagerduty.com/incidents/PINC1", "incident_key": "k",
            "service": {"id": service_id, "summary": service, "type": "service_reference"},
        },
    }})
    .to_string()
    .into_bytes()
}

fn pd_sig(secret: &str, body: &[u8]) -> String {
    format!("v1={}", hmac_hex(secret.as_bytes(), &[body]))
}

#[tokio::test]
async fn pagerduty_signatures_rotation_and_refusals() {
    let t = setup(&hooks_yaml()).await;
    let uri = "/hooks/pagerduty";
    let body = pd_event("E1", "incident.triggered", "PX", "llm-api");
    let s = "x-pagerduty-signature";
    assert_eq!(send(&t, uri, &[], &body).await.0, StatusCode::UNAUTHORIZED);
    assert_eq!(t.hooks.requests("pagerduty", "unauthorized"), 1);
    for bad in [
        pd_sig("not-the-secret", &body),
        "v1=zz".to_string(),
        format!("v0={}", &pd_sig(PD_OLD, &body)[3..]),
        pd_sig(PD_OLD, b"another body"),
    ] {
        assert_eq!(
            send(&t, uri, &[(s, bad)], &body).await.0,
            StatusCode::UNAUTHORIZED
        );
    }
    assert_eq!(t.hooks.requests("pagerduty", "bad_signature"), 4);
    let big = vec![b' '; 5000];
    assert_eq!(
        send(&t, uri, &[(s, pd_sig(PD_OLD, &big))], &big).await.0,
        StatusCode::PAYLOAD_TOO_LARGE
    );
    assert_eq!(
        send(&t, uri, &[(s, pd_sig(PD_OLD, b"[]"))], b"[]").await.0,
        StatusCode::BAD_REQUEST
    );
    assert!(runs(&t, "pd").await.is_empty());
    // Rotation: the second secret is valid, and the header may carry
    // several signatures of which one matches.
    let (status, b) = send(&t, uri, &[(s, pd_sig(PD_NEW, &body))], &body).await;
    assert_eq!(status, StatusCode::OK, "{b}");
    let body2 = pd_event("E2", "incident.triggered", "PMAPPED", "Inference API");
    let multi = format!(
        "{},{}",
        pd_sig("retired-secret", &body2),
        pd_sig(PD_OLD, &body2)
    );
    let (status, b) = send(&t, uri, &[(s, multi)], &body2).await;
    assert_eq!(status, StatusCode::OK, "{b}");
    let r = runs(&t, "pd").await;
    assert_eq!(r.len(), 2);
    // Unmapped services use the service name; mapped ones the target.
    let mut targets: Vec<&str> = r.iter().map(|r| r.target.as_str()).collect();
    targets.sort();
    assert_eq!(targets, ["inference-api", "llm-api"]);
    assert_eq!(t.hooks.requests("pagerduty", "accepted"), 2);
}

#[tokio::test]
async fn pagerduty_acknowledge_holds_the_target_and_resolve_releases_it() {
    let t = setup(&hooks_yaml()).await;
    let uri = "/hooks/pagerduty";
    let tr = &t;
    let post = |body: Vec<u8>| {
        let sig = pd_sig(PD_OLD, &body);
        async move { send(tr, uri, &[("x-pagerduty-signature", sig)], &body).await }
    };
    let (st, b) = post(pd_event("A1", "incident.acknowledged", "PMAPPED", "X")).await;
    assert_eq!(st, StatusCode::OK, "{b}");
    let why = t.engine.held("inference-api").expect("held");
    assert!(why.contains("#42") && why.contains("Ada Lovelace"), "{why}");
    // A redelivered acknowledge is a duplicate.
    post(pd_event("A1", "incident.acknowledged", "PMAPPED", "X")).await;
    assert_eq!(t.hooks.requests("pagerduty", "duplicate"), 1);
    // An automatic run for the held target is skipped by the guard…
    post(pd_event("T1", "incident.triggered", "PMAPPED", "X")).await;
    let r = runs(&t, "pd").await;
    assert_eq!(r.len(), 1);
    assert_eq!(r[0].state, "skipped");
    assert!(
        r[0].reason.as_deref().unwrap_or("").contains("held"),
        "{:?}",
        r[0].reason
    );
    let m = t.telemetry.encode().unwrap();
    assert!(
        m.contains(r#"homeostat_playbook_guard_blocks_total{playbook="pd",guard="held"} 1"#),
        "{m}"
    );
    assert!(
        m.contains(r#"homeostat_webhook_requests_total{hook="pagerduty",result="duplicate"} 1"#),
        "{m}"
    );
    // …a manual one is not.
    let manual = t
        .engine
        .trigger(crate::playbooks::TriggerRequest {
            playbook: "pd".into(),
            target: Some("inference-api".into()),
            labels: Vec::new(),
            value: 0.0,
            kind: "manual".into(),
            detail: Value::Null,
            dry_run: false,
            requested_by: "test".into(),
        })
        .await
        .unwrap();
    assert_eq!(manual.state, "awaiting_approval");
    t.engine.decide(&manual.id, false, "test").await.unwrap();
    // The hold survives a restart (a new engine over the same database).
    let (_, _, engine2, _) = build(t.db.clone(), &hooks_yaml()).await;
    assert!(engine2.held("inference-api").is_some());
    // Resolve releases it; the next trigger starts a run.
    post(pd_event("R1", "incident.resolved", "PMAPPED", "X")).await;
    assert!(t.engine.held("inference-api").is_none());
    post(pd_event("T2", "incident.triggered", "PMAPPED", "X")).await;
    let r = runs(&t, "pd").await;
    assert_eq!(r[0].state, "awaiting_approval", "{r:?}");
    // Other events are accepted and ignored.
    let (st, _) = post(pd_event("N1", "incident.annotated", "PMAPPED", "X")).await;
    assert_eq!(st, StatusCode::OK);
    assert_eq!(runs(&t, "pd").await.len(), 3);
    let audit = t.db.recent_audit("target/inference-api", 10).await.unwrap();
    let actions: Vec<&str> = audit.iter().map(|a| a.action.as_str()).collect();
    assert!(
        actions.contains(&"hold") && actions.contains(&"release"),
        "{actions:?}"
    );
}

fn slack_headers(ts: i64, body: &[u8], secret: &str) -> Vec<(&'static str, String)> {
    let ts = ts.to_string();
    let sig = hmac_hex(secret.as_bytes(), &[b"v0:", ts.as_bytes(), b":", body]);
    vec![
        ("x-slack-request-timestamp", ts),
        ("x-slack-signature", format!("v0={sig}")),
        (
            "content-type",
            "application/x-www-form-urlencoded".to_string(),
        ),
    ]
}

fn now_s() -> i64 {
    now_ms_() / 1000
}

fn now_ms_() -> i64 {
    crate::collect::now_ms()
}

fn command_body(text: &str, user: &str, nonce: &str) -> Vec<u8> {
    form_urlencoded::Serializer::new(String::new())
        .append_pair("command", "/homeostat")
        .append_pair("text", text)
        .append_pair("user_id", user)
        .append_pair("user_name", "someone")
        .append_pair("response_url", "http://127.0.0.1:9/unused")
        .append_pair("trigger_id", nonce)
        .finish()
        .into_bytes()
}

#[tokio::test]
async fn slack_refuses_unsigned_stale_forged_replayed_and_oversized_requests() {
    let t = setup(&hooks_yaml()).await;
    let uri = "/hooks/slack/command";
    let body = command_body("pause", "UOK", "1");
    assert_eq!(send(&t, uri, &[], &body).await.0, StatusCode::UNAUTHORIZED);
    assert_eq!(t.hooks.requests("slack", "unauthorized"), 1);
    for ts in [now_s() - 301, now_s() + 301] {
        assert_eq!(
            send(&t, uri, &slack_headers(ts, &body, SLACK_SECRET), &body)
                .await
                .0,
            StatusCode::UNAUTHORIZED
        );
    }
    assert_eq!(t.hooks.requests("slack", "stale"), 2);
    assert_eq!(
        send(&t, uri, &slack_headers(now_s(), &body, "forged"), &body)
            .await
            .0,
        StatusCode::UNAUTHORIZED
    );
    // Signed for another body.
    let mut h = slack_headers(now_s(), &body, SLACK_SECRET);
    let other = command_body("resume", "UOK", "1");
    assert_eq!(send(&t, uri, &h, &other).await.0, StatusCode::UNAUTHORIZED);
    assert_eq!(t.hooks.requests("slack", "bad_signature"), 2);
    let big = vec![b'a'; 5000];
    assert_eq!(
        send(&t, uri, &slack_headers(now_s(), &big, SLACK_SECRET), &big)
            .await
            .0,
        StatusCode::PAYLOAD_TOO_LARGE
    );
    assert_eq!(t.hooks.requests("slack", "too_large"), 1);
    assert!(
        !t.engine.is_paused(None),
        "a refused request changed something"
    );
    // The genuine request works once; the same request again is a replay.
    let (st, b) = send(&t, uri, &h, &body).await;
    assert_eq!(st, StatusCode::OK, "{b}");
    assert!(t.engine.is_paused(None));
    t.engine.resume_runs(None, "test").await.unwrap();
    let (st, _) = send(&t, uri, &h, &body).await;
    assert_eq!(st, StatusCode::UNAUTHORIZED);
    assert_eq!(t.hooks.requests("slack", "replayed"), 1);
    assert!(!t.engine.is_paused(None), "a replay changed something");
    // Upper-case hex is the same signature, so still a replay.
    h[1].1 = h[1].1.to_ascii_uppercase().replacen("V0=", "v0=", 1);
    assert_eq!(send(&t, uri, &h, &body).await.0, StatusCode::UNAUTHORIZED);
    assert_eq!(t.hooks.requests("slack", "replayed"), 2);
}

async fn slack_command(t: &T, text: &str, user: &str) -> (StatusCode, Value) {
    let body = command_body(text, user, &format!("{}", now_ms_()));
    let (st, b) = send(
        t,
        "/hooks/slack/command",
        &slack_headers(now_s(), &body, SLACK_SECRET),
        &body,
    )
    .await;
    (st, serde_json::from_str(&b).unwrap_or(Value::String(b)))
}

#[tokio::test]
async fn slack_command_status_pause_resume_run_and_forbidden_users() {
    let t = setup(&hooks_yaml()).await;
    let (st, v) = slack_command(&t, "pause", "UNOPE").await;
    assert_eq!(st, StatusCode::OK);
    assert_eq!(v["response_type"], "ephemeral");
    assert!(v["text"].as_str().unwrap().contains("not allowed"), "{v}");
    assert!(!t.engine.is_paused(None));
    let (_, v) = slack_command(&t, "run gated box-1", "UNOPE").await;
    assert!(v["text"].as_str().unwrap().contains("not allowed"), "{v}");
    assert!(runs(&t, "gated").await.is_empty());
    assert_eq!(t.hooks.requests("slack", "forbidden_user"), 2);

    let (_, v) = slack_command(&t, "run gated box-1", "UOK").await;
    let text = v["text"].as_str().unwrap();
    assert!(text.contains("awaiting_approval"), "{text}");
    let r = runs(&t, "gated").await;
    assert_eq!(r[0].requested_by, "slack:UOK");
    // Anyone signed may ask for the status.
    let (_, v) = slack_command(&t, "status", "UNOPE").await;
    let text = v["text"].as_str().unwrap();
    assert!(text.contains("active") && text.contains(&r[0].id), "{text}");
    slack_command(&t, "pause gated", "UOK").await;
    assert!(t.engine.is_paused(Some("gated")));
    slack_command(&t, "pause", "UOK").await;
    assert!(t.engine.is_paused(None));
    let (_, v) = slack_command(&t, "status", "UOK").await;
    assert!(v["text"].as_str().unwrap().contains("*paused*"), "{v}");
    slack_command(&t, "resume", "UOK").await;
    assert!(!t.engine.is_paused(None));
    let (_, v) = slack_command(&t, "pause nosuch", "UOK").await;
    assert!(v["text"].as_str().unwrap().contains("Could not"), "{v}");
    let (_, v) = slack_command(&t, "frobnicate", "UOK").await;
    assert!(v["text"].as_str().unwrap().contains("Usage"), "{v}");
    let audit = t.db.recent_audit("gated", 10).await.unwrap();
    assert!(audit
        .iter()
        .any(|a| a.actor == "slack:UOK" && a.action == "pause"));
}

/// A local `response_url`: records every JSON body posted to it.
async fn response_sink() -> (String, Arc<Mutex<Vec<Value>>>) {
    let got: Arc<Mutex<Vec<Value>>> = Default::default();
    let g = got.clone();
    let app = Router::new().fallback(move |body: Bytes| {
        let g = g.clone();
        async move {
            g.lock()
                .unwrap()
                .push(serde_json::from_slice(&body).unwrap_or(Value::Null));
            "ok"
        }
    });
    let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = l.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(l, app).await });
    (format!("http://{addr}/respond"), got)
}

async fn wait_for(got: &Arc<Mutex<Vec<Value>>>, n: usize) -> Vec<Value> {
    for _ in 0..200 {
        if got.lock().unwrap().len() >= n {
            break;
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    got.lock().unwrap().clone()
}

fn block_actions(user: &str, action_id: &str, run: &str, url: &str) -> Vec<u8> {
    let p = json!({
        "type": "block_actions",
        "user": {"id": user, "username": "someone", "name": "someone"},
        "response_url": url,
        "actions": [{"action_id": action_id, "block_id": "homeostat_approval", "value": run, "type": "button"}],
    });
    form_urlencoded::Serializer::new(String::new())
        .append_pair("payload", &p.to_string())
        .finish()
        .into_bytes()
}

#[tokio::test]
async fn slack_buttons_approve_for_allowed_users_only() {
    let t = setup(&hooks_yaml()).await;
    let (url, got) = response_sink().await;
    let run = t
        .engine
        .trigger(crate::playbooks::TriggerRequest {
            playbook: "gated".into(),
            target: Some("box-1".into()),
            labels: Vec::new(),
            value: 0.0,
            kind: "manual".into(),
            detail: Value::Null,
            dry_run: false,
            requested_by: "test".into(),
        })
        .await
        .unwrap();
    let uri = "/hooks/slack/interactivity";
    let body = block_actions("UNOPE", APPROVE_ID, &run.id, &url);
    let (st, _) = send(&t, uri, &slack_headers(now_s(), &body, SLACK_SECRET), &body).await;
    assert_eq!(st, StatusCode::OK);
    let msgs = wait_for(&got, 1).await;
    assert_eq!(msgs[0]["response_type"], "ephemeral");
    assert_eq!(msgs[0]["replace_original"], false);
    assert!(msgs[0]["text"].as_str().unwrap().contains("not allowed"));
    assert_eq!(runs(&t, "gated").await[0].state, "awaiting_approval");
    assert_eq!(t.hooks.requests("slack", "forbidden_user"), 1);
    // A forged approval changes nothing either.
    let body = block_actions("UOK", APPROVE_ID, &run.id, &url);
    let (st, _) = send(&t, uri, &slack_headers(now_s(), &body, "forged"), &body).await;
    assert_eq!(st, StatusCode::UNAUTHORIZED);
    assert_eq!(runs(&t, "gated").await[0].state, "awaiting_approval");

    let (st, _) = send(&t, uri, &slack_headers(now_s(), &body, SLACK_SECRET), &body).await;
    assert_eq!(st, StatusCode::OK);
    let r = &runs(&t, "gated").await[0];
    assert_ne!(r.state, "awaiting_approval");
    assert_eq!(r.decided_by.as_deref(), Some("slack:UOK"));
    let msgs = wait_for(&got, 2).await;
    assert_eq!(msgs[1]["replace_original"], true);
    let text = msgs[1]["text"].as_str().unwrap();
    assert!(
        text.contains("*Approved* by <@UOK>") && text.contains(&run.id) && text.contains("gated"),
        "{text}"
    );
    assert_eq!(msgs[1]["blocks"][0]["text"]["type"], "mrkdwn");
    // Deciding again is reported to the clicker, not an error.
    let body = block_actions("UOK", DENY_ID, &run.id, &url);
    let (st, _) = send(&t, uri, &slack_headers(now_s(), &body, SLACK_SECRET), &body).await;
    assert_eq!(st, StatusCode::OK);
    let msgs = wait_for(&got, 3).await;
    assert!(msgs[2]["text"].as_str().unwrap().contains("Could not deny"));
    // Malformed payloads are 400.
    let body = b"payload=%7Bnot".to_vec();
    let (st, _) = send(&t, uri, &slack_headers(now_s(), &body, SLACK_SECRET), &body).await;
    assert_eq!(st, StatusCode::BAD_REQUEST);
}

const APPROVE_ID: &str = slack::APPROVE;
const DENY_ID: &str = slack::DENY;

#[tokio::test]
async fn reload_takes_new_hook_config_into_use() {
    let t = setup("{}").await;
    assert_eq!(
        send(
            &t,
            "/hooks/alertmanager",
            &[],
            &am_payload("f", "firing", "g")
        )
        .await
        .0,
        StatusCode::NOT_FOUND
    );
    t.hooks
        .apply(&serde_norway::from_str("alertmanager: {}").unwrap());
    assert_eq!(
        send(
            &t,
            "/hooks/alertmanager",
            &[],
            &am_payload("f", "firing", "g")
        )
        .await
        .0,
        StatusCode::OK
    );
    assert_eq!(runs(&t, "am").await.len(), 1);
}
