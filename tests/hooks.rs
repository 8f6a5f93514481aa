//! Webhooks in, end to end against the real binary: a real Alertmanager
//! delivering (and re-delivering) to `/hooks/alertmanager`, signed
//! PagerDuty V3 events holding and releasing a target, Slack buttons and
//! the slash command, and no configured secret ever reaching the log.
//!
//! Playbook steps are `exec` commands appending to a file, so each test
//! counts exactly what was done.

use std::path::Path;
use std::time::Duration;

use hmac::{Hmac, Mac};
use homeostat_e2e::{start_alertmanager, wait_until, Homeostat, Sink};
use serde_json::{json, Value};
use sha2::Sha256;

const AM_TOKEN: &str = "am-bearer-2b9c41f7";
const PD_OLD: &str = "pd-whsec-old-8d1e55";
const PD_NEW: &str = "pd-whsec-new-3f0a92";
const SLACK_SECRET: &str = "slack-signing-c0ffee42";

fn write(dir: &Path, name: &str, text: &str) {
    std::fs::write(dir.join(name), text).expect("write file");
}

fn lines(p: &Path) -> Vec<String> {
    std::fs::read_to_string(p)
        .unwrap_or_default()
        .lines()
        .map(str::to_string)
        .collect()
}

/// A playbook whose one step appends `<name> $target` to `out`.
fn append_playbook(name: &str, trigger: &str, target: &str, guards: &str, out: &Path) -> String {
    format!(
        r#"name: {name}
trigger:
{trigger}
target: '{target}'
guards:
{guards}
steps:
  - name: append
    action: exec
    params:
      argv: ['/bin/sh', '-c', 'echo "{name} $HOMEOSTAT_TARGET" >> {out}']
"#,
        out = out.display()
    )
}

fn config(dir: &Path) -> String {
    format!(
        r#"global:
  scrape_interval: 1s
  evaluation_interval: 1s
web:
  listen_address: '{{listen}}'
state:
  path: '{{state}}'
playbook_files: ['{}/*.yml']
hooks:
  alertmanager:
    bearer_token: {AM_TOKEN}
  pagerduty:
    secrets: [{PD_OLD}, {PD_NEW}]
    services:
      - service_id: PMAPPED
        target: inference-api
  slack:
    signing_secret: {SLACK_SECRET}
    allowed_users: [UALLOWED]
"#,
        dir.display()
    )
}

fn hmac_hex(key: &str, parts: &[&[u8]]) -> String {
    let mut mac = Hmac::<Sha256>::new_from_slice(key.as_bytes()).unwrap();
    for p in parts {
        mac.update(p);
    }
    hex::encode(mac.finalize().into_bytes())
}

/// `homeostat_webhook_requests_total{hook,result}` from `/metrics`.
async fn hook_count(h: &Homeostat, hook: &str, result: &str) -> f64 {
    let text = reqwest::get(format!("http://{}/metrics", h.addr))
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    let want = format!("homeostat_webhook_requests_total{{hook=\"{hook}\",result=\"{result}\"}} ");
    text.lines()
        .find_map(|l| l.strip_prefix(&want))
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or(0.0)
}

async fn metric_line(h: &Homeostat, prefix: &str) -> Option<String> {
    let text = reqwest::get(format!("http://{}/metrics", h.addr))
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    text.lines()
        .find(|l| l.starts_with(prefix))
        .map(str::to_string)
}

async fn post_raw(
    h: &Homeostat,
    path: &str,
    headers: &[(&str, String)],
    body: Vec<u8>,
) -> (u16, String) {
    let mut req = reqwest::Client::new()
        .post(format!("http://{}{path}", h.addr))
        .timeout(Duration::from_secs(30))
        .body(body);
    for (k, v) in headers {
        req = req.header(*k, v);
    }
    let rsp = req.send().await.expect("POST to homeostat");
    let status = rsp.status().as_u16();
    (status, rsp.text().await.unwrap_or_default())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn alertmanager_delivers_and_a_playbook_runs_exactly_once_across_resends() {
    let books = tempfile::tempdir().unwrap();
    let d = books.path();
    let out = d.join("out.txt");
    write(
        d,
        "gpu.yml",
        &append_playbook(
            "gpu",
            "  alert: GpuHot",
            "{{ $labels.instance }}",
            "  cooldown: 0s",
            &out,
        ),
    );
    write(
        d,
        "gpu-ok.yml",
        &append_playbook(
            "gpu-ok",
            "  alert: GpuHot\n  on: resolved",
            "{{ $labels.instance }}",
            "  cooldown: 0s",
            &out,
        ),
    );
    let h = Homeostat::start(&config(d)).await;
    let am_config = format!(
        r#"route:
  receiver: homeostat
  group_by: ['alertname']
  group_wait: 0s
  group_interval: 1s
  repeat_interval: 2s
receivers:
  - name: homeostat
    webhook_configs:
      - url: http://{}/hooks/alertmanager
        send_resolved: true
        http_config:
          authorization:
            credentials: {AM_TOKEN}
"#,
        h.addr
    );
    let Some((am_proc, am)) = start_alertmanager(&am_config).await else {
        return;
    };
    let now = std::time::SystemTime::now();
    let ts = |t: std::time::SystemTime| humantime::format_rfc3339_millis(t).to_string();
    let alert = |ends: std::time::SystemTime| {
        json!([{
            "labels": {"alertname": "GpuHot", "instance": "gpu-7"},
            "annotations": {"summary": "GPU is hot"},
            "startsAt": ts(now),
            "endsAt": ts(ends),
        }])
    };
    let rsp = reqwest::Client::new()
        .post(format!("http://{am}/api/v2/alerts"))
        .json(&alert(now + Duration::from_secs(3600)))
        .send()
        .await
        .unwrap();
    assert!(rsp.status().is_success(), "{:?}", rsp.text().await);

    assert!(
        wait_until(Duration::from_secs(30), || async {
            h.runs("gpu")
                .await
                .iter()
                .any(|r| r["state"] == "succeeded")
        })
        .await,
        "no run from Alertmanager's delivery\nhomeostat:\n{}\nalertmanager:\n{}",
        h.process.log(),
        am_proc.log()
    );
    // Alertmanager re-sends the group every repeat_interval; wait for two
    // re-sends to arrive and be recognised.
    assert!(
        wait_until(Duration::from_secs(30), || async {
            hook_count(&h, "alertmanager", "duplicate").await >= 2.0
        })
        .await,
        "Alertmanager never re-sent\n{}",
        am_proc.log()
    );
    assert_eq!(h.runs("gpu").await.len(), 1, "{:?}", h.runs("gpu").await);
    assert_eq!(lines(&out), ["gpu gpu-7"]);
    assert_eq!(hook_count(&h, "alertmanager", "accepted").await, 1.0);
    let run = &h.runs("gpu").await[0];
    assert_eq!(run["trigger"], "alert");
    assert_eq!(run["trigger_detail"]["receiver"], "homeostat");
    assert!(!run["trigger_detail"]["fingerprint"]
        .as_str()
        .unwrap_or("")
        .is_empty());

    // Resolving the alert runs the `on: resolved` playbook, once.
    reqwest::Client::new()
        .post(format!("http://{am}/api/v2/alerts"))
        .json(&alert(std::time::SystemTime::now()))
        .send()
        .await
        .unwrap();
    assert!(
        wait_until(Duration::from_secs(30), || async {
            h.runs("gpu-ok")
                .await
                .iter()
                .any(|r| r["state"] == "succeeded")
        })
        .await,
        "resolution never ran the on: resolved playbook\n{}",
        h.process.log()
    );
    assert_eq!(h.runs("gpu-ok").await.len(), 1);
    assert_eq!(lines(&out), ["gpu gpu-7", "gpu-ok gpu-7"]);
    assert_eq!(hook_count(&h, "alertmanager", "unauthorized").await, 0.0);
}

fn pd_event(id: &str, kind: &str, incident: &str) -> Vec<u8> {
    json!({"event": {
        "id": id, "event_type": kind, "resource_type": "incident",
        "occurred_at": "2026-05-20T14:00:00.000Z",
        "agent": {"id": "PUSER1", "summary": "Grace Hopper", "type": "user_reference"},
        "client": {"name": "PagerDuty"},
        "data": {
            "id": incident, "type": "incident", "number": 7, "title": "latency high",
            "status": kind.trim_start_matches("incident."), "urgency": "high",
            "html_url": format!("https://x.pagerduty.com/incidents/{incident}"),
            "service": {"id": "PMAPPED", "summary": "Inference API", "type": "service_reference"},
        },
    }})
    .to_string()
    .into_bytes()
}

async fn pd_post(h: &Homeostat, body: Vec<u8>, secret: &str) -> (u16, String) {
    let sig = format!("v1={}", hmac_hex(secret, &[&body]));
    post_raw(
        h,
        "/hooks/pagerduty",
        &[
            ("x-pagerduty-signature", sig),
            ("content-type", "application/json".into()),
        ],
        body,
    )
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pagerduty_triggers_holds_on_acknowledge_and_releases_on_resolve() {
    let books = tempfile::tempdir().unwrap();
    let d = books.path();
    let out = d.join("out.txt");
    let trigger = "  alert: PagerDutyIncident\n  matchers: ['urgency=\"high\"']";
    write(
        d,
        "pd.yml",
        &append_playbook(
            "pd",
            trigger,
            "{{ $labels.target }}",
            "  cooldown: 0s",
            &out,
        ),
    );
    write(
        d,
        "pd-closed.yml",
        &append_playbook(
            "pd-closed",
            &format!("{trigger}\n  on: resolved"),
            "{{ $labels.target }}",
            "  cooldown: 0s",
            &out,
        ),
    );
    let mut h = Homeostat::start(&config(d)).await;

    // Triggered: the playbook runs for the mapped target.
    let (st, b) = pd_post(&h, pd_event("E1", "incident.triggered", "P1"), PD_OLD).await;
    assert_eq!(st, 200, "{b}");
    let r = h.runs("pd").await;
    assert_eq!(r.len(), 1);
    let first = h
        .wait_run_state(
            r[0]["id"].as_str().unwrap(),
            &["succeeded"],
            Duration::from_secs(20),
        )
        .await;
    assert_eq!(first["target"], "inference-api");
    let labels = first["labels"].as_array().cloned().unwrap_or_default();
    assert!(labels.contains(&json!(["incident_id", "P1"])), "{labels:?}");
    assert!(
        labels.contains(&json!(["service", "Inference API"])),
        "{labels:?}"
    );
    // A redelivery (same event id), signed with the rotated-in secret,
    // starts nothing.
    let (st, _) = pd_post(&h, pd_event("E1", "incident.triggered", "P1"), PD_NEW).await;
    assert_eq!(st, 200);
    assert_eq!(h.runs("pd").await.len(), 1);
    assert_eq!(hook_count(&h, "pagerduty", "duplicate").await, 1.0);

    // Acknowledged: automatic runs for the target are held, across a
    // restart.
    let (st, _) = pd_post(&h, pd_event("E2", "incident.acknowledged", "P1"), PD_OLD).await;
    assert_eq!(st, 200);
    h.restart().await;
    let (st, _) = pd_post(&h, pd_event("E3", "incident.triggered", "P2"), PD_OLD).await;
    assert_eq!(st, 200);
    let r = h.runs("pd").await;
    assert_eq!(r.len(), 2);
    assert_eq!(r[0]["state"], "skipped", "{:#}", r[0]);
    let reason = r[0]["reason"].as_str().unwrap_or_default();
    assert!(
        reason.contains("held") && reason.contains("Grace Hopper"),
        "{reason}"
    );
    assert_eq!(
        metric_line(
            &h,
            "homeostat_playbook_guard_blocks_total{playbook=\"pd\",guard=\"held\"}"
        )
        .await
        .as_deref(),
        Some("homeostat_playbook_guard_blocks_total{playbook=\"pd\",guard=\"held\"} 1")
    );
    assert_eq!(lines(&out), ["pd inference-api"]);

    // Resolved: released, and the `on: resolved` playbook closes the loop.
    let (st, _) = pd_post(&h, pd_event("E4", "incident.resolved", "P1"), PD_OLD).await;
    assert_eq!(st, 200);
    assert!(
        wait_until(Duration::from_secs(20), || async {
            h.runs("pd-closed")
                .await
                .iter()
                .any(|r| r["state"] == "succeeded")
        })
        .await,
        "{}",
        h.process.log()
    );
    let (st, _) = pd_post(&h, pd_event("E5", "incident.triggered", "P3"), PD_OLD).await;
    assert_eq!(st, 200);
    let r = h.runs("pd").await;
    assert_eq!(r.len(), 3);
    h.wait_run_state(
        r[0]["id"].as_str().unwrap(),
        &["succeeded"],
        Duration::from_secs(20),
    )
    .await;
    assert_eq!(
        lines(&out),
        [
            "pd inference-api",
            "pd-closed inference-api",
            "pd inference-api"
        ]
    );
    let audit = homeostat_e2e::get_json(&format!(
        "http://{}/api/v1/audit?subject=target/inference-api",
        h.addr
    ))
    .await;
    let actions: Vec<&str> = audit["data"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|a| a["action"].as_str())
        .collect();
    assert!(
        actions.contains(&"hold") && actions.contains(&"release"),
        "{audit}"
    );
}

fn slack_headers(body: &[u8], secret: &str) -> Vec<(&'static str, String)> {
    let ts = (homeostat_e2e::unix_now() as i64).to_string();
    let sig = hmac_hex(secret, &[b"v0:", ts.as_bytes(), b":", body]);
    vec![
        ("x-slack-request-timestamp", ts),
        ("x-slack-signature", format!("v0={sig}")),
        ("content-type", "application/x-www-form-urlencoded".into()),
    ]
}

fn form(pairs: &[(&str, &str)]) -> Vec<u8> {
    let mut s = form_urlencoded::Serializer::new(String::new());
    for (k, v) in pairs {
        s.append_pair(k, v);
    }
    s.finish().into_bytes()
}

fn button(user: &str, action: &str, run: &str, response_url: &str) -> Vec<u8> {
    let payload = json!({
        "type": "block_actions",
        "user": {"id": user, "username": "person", "name": "person"},
        "response_url": response_url,
        "actions": [{"action_id": action, "block_id": "homeostat_approval", "value": run, "type": "button"}],
    });
    form(&[("payload", &payload.to_string())])
}

async fn slash(h: &Homeostat, text: &str, user: &str) -> Value {
    let body = form(&[
        ("command", "/homeostat"),
        ("text", text),
        ("user_id", user),
        ("user_name", "person"),
        ("response_url", "http://127.0.0.1:9/unused"),
        (
            "trigger_id",
            &format!("{text}-{user}-{}", homeostat_e2e::unix_now()),
        ),
    ]);
    let (st, b) = post_raw(
        h,
        "/hooks/slack/command",
        &slack_headers(&body, SLACK_SECRET),
        body,
    )
    .await;
    assert_eq!(st, 200, "{b}");
    serde_json::from_str(&b).unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn slack_approves_for_allowed_users_and_answers_the_slash_command() {
    let books = tempfile::tempdir().unwrap();
    let d = books.path();
    let out = d.join("out.txt");
    write(
        d,
        "gated.yml",
        &append_playbook(
            "gated",
            "  manual: true",
            "{{ $labels.instance }}",
            "  approval: {timeout: 5m}",
            &out,
        ),
    );
    let h = Homeostat::start(&config(d)).await;
    let sink = Sink::start().await;
    let (st, v) = h
        .post("/api/v1/playbooks/gated/run", json!({"target": "box-1"}))
        .await;
    assert_eq!(st, 200, "{v}");
    let id = v["data"]["id"].as_str().unwrap().to_string();
    assert_eq!(v["data"]["state"], "awaiting_approval");

    // Anyone may ask for the status; it lists the waiting run.
    let s = slash(&h, "status", "USTRANGER").await;
    assert_eq!(s["response_type"], "ephemeral");
    assert!(s["text"].as_str().unwrap().contains(&id), "{s}");

    // A user not allowed gets a polite ephemeral refusal; nothing changes.
    let body = button("USTRANGER", "homeostat_approve", &id, &sink.url());
    let (st, _) = post_raw(
        &h,
        "/hooks/slack/interactivity",
        &slack_headers(&body, SLACK_SECRET),
        body,
    )
    .await;
    assert_eq!(st, 200);
    assert!(
        wait_until(Duration::from_secs(10), || async {
            !sink.bodies().is_empty()
        })
        .await,
        "no ephemeral refusal posted"
    );
    let b = sink.bodies();
    assert_eq!(b[0]["response_type"], "ephemeral");
    assert_eq!(b[0]["replace_original"], false);
    assert_eq!(h.run(&id).await["state"], "awaiting_approval");
    assert_eq!(hook_count(&h, "slack", "forbidden_user").await, 1.0);

    // A forged click is refused.
    let body = button("UALLOWED", "homeostat_approve", &id, &sink.url());
    let (st, _) = post_raw(
        &h,
        "/hooks/slack/interactivity",
        &slack_headers(&body, "guess"),
        body.clone(),
    )
    .await;
    assert_eq!(st, 401);
    assert_eq!(h.run(&id).await["state"], "awaiting_approval");

    // The allowed user's click approves; the run proceeds and the message
    // is replaced.
    let headers = slack_headers(&body, SLACK_SECRET);
    let (st, _) = post_raw(&h, "/hooks/slack/interactivity", &headers, body.clone()).await;
    assert_eq!(st, 200);
    let run = h
        .wait_run_state(&id, &["succeeded"], Duration::from_secs(20))
        .await;
    assert_eq!(run["decided_by"], "slack:UALLOWED");
    assert_eq!(lines(&out), ["gated box-1"]);
    assert!(
        wait_until(Duration::from_secs(10), || async {
            sink.bodies().len() >= 2
        })
        .await,
        "no replacement posted"
    );
    let b = sink.bodies();
    assert_eq!(b[1]["replace_original"], true);
    let text = b[1]["text"].as_str().unwrap();
    assert!(
        text.contains("*Approved* by <@UALLOWED>") && text.contains(&id),
        "{text}"
    );
    // The same signed click again is a replay.
    let (st, _) = post_raw(&h, "/hooks/slack/interactivity", &headers, body).await;
    assert_eq!(st, 401);
    assert_eq!(hook_count(&h, "slack", "replayed").await, 1.0);

    // `pause` from a stranger is refused, from an allowed user it pauses.
    let s = slash(&h, "pause", "USTRANGER").await;
    assert!(s["text"].as_str().unwrap().contains("not allowed"), "{s}");
    let pb = homeostat_e2e::get_json(&format!("http://{}/api/v1/playbooks", h.addr)).await;
    assert_eq!(pb["data"]["paused"], false);
    let s = slash(&h, "pause", "UALLOWED").await;
    assert!(s["text"].as_str().unwrap().contains("paused"), "{s}");
    let pb = homeostat_e2e::get_json(&format!("http://{}/api/v1/playbooks", h.addr)).await;
    assert_eq!(pb["data"]["paused"], true);
    let s = slash(&h, "status", "USTRANGER").await;
    assert!(s["text"].as_str().unwrap().contains("*paused*"), "{s}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_secret_or_signature_reaches_the_log_even_at_debug() {
    let books = tempfile::tempdir().unwrap();
    let d = books.path();
    let out = d.join("out.txt");
    write(
        d,
        "pd.yml",
        &append_playbook(
            "pd",
            "  alert: PagerDutyIncident",
            "{{ $labels.target }}",
            "  cooldown: 0s",
            &out,
        ),
    );
    let h = Homeostat::start_with_env(&config(d), &[("HOMEOSTAT_LOG_LEVEL", "debug")]).await;
    let mut signatures: Vec<String> = Vec::new();

    // Alertmanager: right token, wrong token, no token.
    let am = json!({"version": "4", "groupKey": "g", "status": "firing", "receiver": "r",
        "alerts": [{"status": "firing", "labels": {"alertname": "X", "instance": "i"},
        "startsAt": "2026-01-01T00:00:00Z", "fingerprint": "f"}]})
    .to_string()
    .into_bytes();
    for (token, want) in [(AM_TOKEN, 200), ("not-it", 401)] {
        let (st, _) = post_raw(
            &h,
            "/hooks/alertmanager",
            &[("authorization", format!("Bearer {token}"))],
            am.clone(),
        )
        .await;
        assert_eq!(st, want);
    }
    assert_eq!(post_raw(&h, "/hooks/alertmanager", &[], am).await.0, 401);

    // PagerDuty: each secret, a forged signature, a redelivery.
    for (id, secret, want) in [
        ("S1", PD_OLD, 200),
        ("S2", PD_NEW, 200),
        ("S3", "forged", 401),
        ("S1", PD_NEW, 200),
    ] {
        let body = pd_event(id, "incident.triggered", id);
        signatures.push(hmac_hex(secret, &[&body]));
        assert_eq!(pd_post(&h, body, secret).await.0, want);
    }

    // Slack: a good command, its replay, a forged one, a stale one.
    let body = form(&[
        ("command", "/homeostat"),
        ("text", "status"),
        ("user_id", "U1"),
    ]);
    let headers = slack_headers(&body, SLACK_SECRET);
    signatures.push(headers[1].1.clone());
    assert_eq!(
        post_raw(&h, "/hooks/slack/command", &headers, body.clone())
            .await
            .0,
        200
    );
    assert_eq!(
        post_raw(&h, "/hooks/slack/command", &headers, body.clone())
            .await
            .0,
        401
    );
    let forged = slack_headers(&body, "forged");
    signatures.push(forged[1].1.clone());
    assert_eq!(
        post_raw(&h, "/hooks/slack/command", &forged, body.clone())
            .await
            .0,
        401
    );
    let mut stale = headers.clone();
    stale[0].1 = "1000000000".into();
    assert_eq!(
        post_raw(&h, "/hooks/slack/command", &stale, body).await.0,
        401
    );

    // The log is at debug and did record the traffic and the refusals…
    let log = h.process.log();
    assert!(log.contains("DEBUG"), "not a debug log:\n{log}");
    for r in ["bad_signature", "replayed", "stale", "unauthorized"] {
        assert!(log.contains(r), "refusal {r} not logged:\n{log}");
    }
    // …and holds no secret and no signature.
    for s in [AM_TOKEN, PD_OLD, PD_NEW, SLACK_SECRET] {
        assert!(!log.contains(s), "secret {s} in the log:\n{log}");
    }
    for s in &signatures {
        let hex = s.trim_start_matches("v0=");
        assert!(!log.contains(hex), "signature {hex} in the log");
    }
}

/// The whole approval loop through the notify stage: a gated run is
/// announced in Slack with Approve / Deny buttons and paged in PagerDuty;
/// the click on the button Slack received approves it; PagerDuty's
/// incident for the run is acknowledged when it starts and resolved when
/// it succeeds.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn slack_buttons_from_the_notification_approve_the_run_and_pagerduty_follows_it() {
    use homeostat_e2e::pagerduty::PagerDutyStandIn;
    use homeostat_e2e::slack::{self, SlackStandIn, BOT_TOKEN};

    let books = tempfile::tempdir().unwrap();
    let d = books.path();
    let out = d.join("out.txt");
    write(
        d,
        "gated.yml",
        &append_playbook(
            "gated",
            "  manual: true",
            "{{ $labels.instance }}",
            "  approval: {timeout: 5m}",
            &out,
        ),
    );
    let slack = SlackStandIn::start().await;
    let pd = PagerDutyStandIn::start().await;
    let cfg = format!(
        r#"{}notify:
  route:
    receiver: chat
    group_by: [alertname]
    group_wait: 0s
    routes:
      - matchers: ['alertname="HomeostatPlaybookRun"']
        receiver: oncall
  receivers:
    - name: chat
    - name: oncall
      slack_configs:
        - token: {BOT_TOKEN}
          api_url: {}
          channel: '#ops'
          send_resolved: true
      pagerduty_configs:
        - routing_key: {}
          url: {}
"#,
        config(d),
        slack.api_url(),
        homeostat_e2e::pagerduty::ROUTING_KEY,
        pd.url(),
    );
    let h = Homeostat::start(&cfg).await;
    let (st, v) = h
        .post("/api/v1/playbooks/gated/run", json!({"target": "box-9"}))
        .await;
    assert_eq!(st, 200, "{v}");
    let id = v["data"]["id"].as_str().unwrap().to_string();

    // The awaiting-approval message arrives with both buttons for this run.
    let approval = |m: &Value| !slack::buttons(m, "homeostat_approval").is_empty();
    assert!(
        wait_until(Duration::from_secs(15), || {
            let n = slack.messages().iter().filter(|m| approval(m)).count();
            async move { n >= 1 }
        })
        .await,
        "no approval message in Slack: {:?}\n{}",
        slack.messages(),
        h.process.log()
    );
    assert!(slack.violations().is_empty(), "{:?}", slack.violations());
    let msg = slack.messages().into_iter().find(|m| approval(m)).unwrap();
    let buttons = slack::buttons(&msg, "homeostat_approval");
    let approve = buttons
        .iter()
        .find(|b| b["action_id"] == "homeostat_approve")
        .expect("approve button");
    assert!(buttons.iter().any(|b| b["action_id"] == "homeostat_deny"));
    assert_eq!(approve["value"], id.as_str());
    assert!(slack::message_text(&msg).contains("box-9"));

    // Click it, as Slack would post the click.
    let body = button(
        "UALLOWED",
        approve["action_id"].as_str().unwrap(),
        approve["value"].as_str().unwrap(),
        &slack.response_url("approval"),
    );
    let (st, _) = post_raw(
        &h,
        "/hooks/slack/interactivity",
        &slack_headers(&body, SLACK_SECRET),
        body,
    )
    .await;
    assert_eq!(st, 200);
    h.wait_run_state(&id, &["succeeded"], Duration::from_secs(20))
        .await;
    assert_eq!(lines(&out), ["gated box-9"]);
    assert!(
        wait_until(Duration::from_secs(10), || {
            let n = slack.responses().len();
            async move { n >= 1 }
        })
        .await,
        "the approval message was not replaced"
    );
    assert_eq!(slack.responses()[0].body["replace_original"], true);

    // PagerDuty: one incident for the run, triggered, acknowledged, resolved.
    assert!(
        wait_until(Duration::from_secs(15), || {
            let n = pd.events().len();
            async move { n >= 3 }
        })
        .await,
        "PagerDuty events: {:?}",
        pd.events()
    );
    let ev = pd.events();
    let actions: Vec<String> = ev
        .iter()
        .map(|e| e.body["event_action"].as_str().unwrap_or("").to_string())
        .collect();
    assert_eq!(actions, ["trigger", "acknowledge", "resolve"], "{ev:?}");
    assert!(ev
        .iter()
        .all(|e| e.body["dedup_key"] == ev[0].body["dedup_key"]));
    assert_eq!(
        ev[0].body["payload"]["custom_details"]["run_id"],
        id.as_str()
    );
    assert!(pd.violations().is_empty(), "{:?}", pd.violations());
}
