//! End-to-end tests of the notify stage (issue #7): the routing tree,
//! grouping, silences and inhibition compared with the real Alertmanager
//! 0.25, and every channel against a stand-in that checks the service's wire
//! contract (Slack, PagerDuty) or the real server (SMTP via aiosmtpd, a
//! webhook sink). Alerts go in through homeostat's Alertmanager-compatible
//! `POST /api/v2/alerts`, so no rule timing is involved.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use homeostat_e2e::pagerduty::{PagerDutyStandIn, ROUTING_KEY};
use homeostat_e2e::sign::verify_homeostat_signature;
use homeostat_e2e::slack::{self, SlackStandIn, BOT_TOKEN};
use homeostat_e2e::smtp::{start_smtp, SmtpMode};
use homeostat_e2e::{
    free_port, homeostat_bin, metric_sum, start_alertmanager, temp_dir, unix_now, wait_until, Fail,
    Homeostat, Sink,
};
use serde_json::{json, Value};
use sha2::{Digest, Sha256};

// ---------------------------------------------------------------- helpers

/// RFC 3339 UTC time of a Unix timestamp (milliseconds kept).
fn rfc3339(unix: f64) -> String {
    let ms = (unix * 1000.0).round() as i64;
    let (secs, ms) = (ms.div_euclid(1000), ms.rem_euclid(1000));
    let (days, sod) = (secs.div_euclid(86_400), secs.rem_euclid(86_400));
    // Howard Hinnant's civil_from_days.
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + i64::from(m <= 2);
    format!(
        "{y:04}-{m:02}-{d:02}T{:02}:{:02}:{:02}.{ms:03}Z",
        sod / 3600,
        sod % 3600 / 60,
        sod % 60
    )
}

#[test]
fn rfc3339_formats_known_instants() {
    assert_eq!(rfc3339(0.0), "1970-01-01T00:00:00.000Z");
    assert_eq!(rfc3339(951_782_400.5), "2000-02-29T00:00:00.500Z");
    assert_eq!(rfc3339(1_700_000_000.0), "2023-11-14T22:13:20.000Z");
}

/// One alert as Alertmanager's `POST /api/v2/alerts` takes it.
fn alert(labels: &[(&str, &str)], annotations: &[(&str, &str)], starts: f64, ends: f64) -> Value {
    let l: serde_json::Map<String, Value> = labels
        .iter()
        .map(|(k, v)| (k.to_string(), json!(v)))
        .collect();
    let a: serde_json::Map<String, Value> = annotations
        .iter()
        .map(|(k, v)| (k.to_string(), json!(v)))
        .collect();
    json!({
        "labels": l,
        "annotations": a,
        "startsAt": rfc3339(starts),
        "endsAt": rfc3339(ends),
        "generatorURL": "http://e2e.test/graph",
    })
}

/// POSTs alerts to an Alertmanager API v2 (the real one or homeostat's).
async fn post_alerts(addr: SocketAddr, alerts: &[Value]) {
    let r = reqwest::Client::new()
        .post(format!("http://{addr}/api/v2/alerts"))
        .header("X-Homeostat-User", "e2e")
        .json(&alerts)
        .timeout(Duration::from_secs(10))
        .send()
        .await
        .unwrap_or_else(|e| panic!("POST {addr}/api/v2/alerts: {e}"));
    let status = r.status();
    let body = r.text().await.unwrap_or_default();
    assert!(
        status.is_success(),
        "POST {addr}/api/v2/alerts: {status} {body}"
    );
}

/// Creates a silence through API v2; returns its id.
async fn post_silence(addr: SocketAddr, silence: &Value) -> String {
    let r = reqwest::Client::new()
        .post(format!("http://{addr}/api/v2/silences"))
        .header("X-Homeostat-User", "e2e")
        .json(silence)
        .send()
        .await
        .unwrap();
    let status = r.status();
    let v: Value = r.json().await.unwrap_or(Value::Null);
    assert!(
        status.is_success(),
        "POST {addr}/api/v2/silences: {status} {v}"
    );
    v["silenceID"]
        .as_str()
        .unwrap_or_else(|| panic!("no silenceID in {v}"))
        .to_string()
}

async fn metrics(addr: SocketAddr) -> String {
    reqwest::get(format!("http://{addr}/metrics"))
        .await
        .unwrap()
        .text()
        .await
        .unwrap()
}

fn indent(text: &str, n: usize) -> String {
    let pad = " ".repeat(n);
    text.lines()
        .map(|l| {
            if l.is_empty() {
                String::new()
            } else {
                format!("{pad}{l}")
            }
        })
        .collect::<Vec<_>>()
        .join("\n")
        + "\n"
}

/// A homeostat config with `notify` (YAML text at column 0) under `notify:`.
fn homeostat_config(notify: &str) -> String {
    format!(
        "web:\n  listen_address: {{listen}}\nstate:\n  path: {{state}}\nnotify:\n{}",
        indent(notify, 2)
    )
}

/// Fast retries and timeouts so failure paths finish within a test.
const FAST_RETRY: &str = "queue_capacity: 100
retry:
  max_attempts: 5
  initial_backoff: 100ms
  max_backoff: 2s
timeout: 5s
";

fn sha256_hex(s: &str) -> String {
    hex::encode(Sha256::digest(s.as_bytes()))
}

// ------------------------------------------- equivalence with Alertmanager

/// The routing tree and inhibit rule, written once for both servers.
const TREE: &str = r#"route:
  receiver: default
  group_by: [alertname]
  group_wait: 1s
  group_interval: 1s
  repeat_interval: 1h
  routes:
    - matchers: ['severity="page"']
      receiver: pager
      group_by: [alertname, cluster]
      continue: true
    - matchers: ['team=~"db|cache"']
      receiver: team
      group_by: ['...']
inhibit_rules:
  - source_matchers: ['alertname="ClusterDown"']
    target_matchers: ['severity="warning"']
    equal: [cluster]
"#;

fn webhook_receivers(base: &str, names: &[&str]) -> String {
    let mut s = String::from("receivers:\n");
    for n in names {
        s.push_str(&format!(
            "  - name: {n}\n    webhook_configs:\n      - url: '{base}{n}'\n"
        ));
    }
    s
}

/// What a webhook notification says, independent of timing: receiver,
/// group key, status, group labels, and each alert's labels and status.
fn summary(body: &Value) -> String {
    let mut alerts: Vec<String> = body["alerts"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|a| {
            let labels: BTreeMap<String, String> = a["labels"]
                .as_object()
                .into_iter()
                .flatten()
                .map(|(k, v)| (k.clone(), v.as_str().unwrap_or("").to_string()))
                .collect();
            format!("{}:{labels:?}", a["status"].as_str().unwrap_or("?"))
        })
        .collect();
    alerts.sort();
    let group_labels: BTreeMap<String, String> = body["groupLabels"]
        .as_object()
        .into_iter()
        .flatten()
        .map(|(k, v)| (k.clone(), v.as_str().unwrap_or("").to_string()))
        .collect();
    format!(
        "receiver={} groupKey={} status={} groupLabels={group_labels:?} alerts={alerts:?}",
        body["receiver"].as_str().unwrap_or("?"),
        body["groupKey"].as_str().unwrap_or("?"),
        body["status"].as_str().unwrap_or("?"),
    )
}

/// The notifications one sink got for `receiver`, as sorted summaries.
fn notifications(sink: &Sink, receiver: &str) -> Vec<String> {
    let mut v: Vec<String> = sink
        .requests_to(&format!("/{receiver}"))
        .iter()
        .map(|r| summary(&r.json))
        .collect();
    v.sort();
    v
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn routing_grouping_silences_and_inhibition_match_alertmanager() {
    let sink_am = Sink::start().await;
    let sink_hs = Sink::start().await;
    let names = ["default", "pager", "team"];
    let am_cfg = format!("{TREE}{}", webhook_receivers(&sink_am.url(), &names));
    let Some((_am, am)) = start_alertmanager(&am_cfg).await else {
        return;
    };
    let hs_notify = format!("{TREE}{}", webhook_receivers(&sink_hs.url(), &names));
    let hs = Homeostat::start(&homeostat_config(&hs_notify)).await;

    // The same silence on both; both answer {"silenceID": …}.
    let now = unix_now();
    let silence = json!({
        "matchers": [{"name": "instance", "value": "silenced:9100", "isRegex": false, "isEqual": true}],
        "startsAt": rfc3339(now - 1.0),
        "endsAt": rfc3339(now + 3600.0),
        "createdBy": "e2e",
        "comment": "equivalence test",
    });
    let am_sid = post_silence(am, &silence).await;
    let hs_sid = post_silence(hs.addr, &silence).await;

    // GET of the silence: the same fields as Alertmanager's.
    let am_one = homeostat_e2e::get_json(&format!("http://{am}/api/v2/silence/{am_sid}")).await;
    let hs_one =
        homeostat_e2e::get_json(&format!("http://{}/api/v2/silence/{hs_sid}", hs.addr)).await;
    let keys = |v: &Value| -> Vec<String> {
        let mut k: Vec<String> = v
            .as_object()
            .map(|o| o.keys().cloned().collect())
            .unwrap_or_default();
        k.sort();
        k
    };
    assert_eq!(
        keys(&hs_one),
        keys(&am_one),
        "homeostat {hs_one}\nalertmanager {am_one}"
    );
    assert_eq!(hs_one["status"]["state"], "active", "{hs_one}");
    assert_eq!(hs_one["matchers"], am_one["matchers"]);
    assert_eq!(hs_one["createdBy"], "e2e");
    let hs_all = homeostat_e2e::get_json(&format!("http://{}/api/v2/silences", hs.addr)).await;
    assert!(
        hs_all
            .as_array()
            .is_some_and(|a| a.iter().any(|s| s["id"] == hs_sid.as_str())),
        "{hs_all}"
    );

    // Alerts that start now wait group_wait: an alert that started long
    // ago flushes at once, racing Alertmanager's inhibitor, which learns
    // of source alerts on its own subscription.
    let (start, end) = (unix_now(), now + 3600.0);
    let runbook = ("runbook_url", "https://runbooks.e2e.test/x");
    let set = |ends: f64| -> Vec<Value> {
        vec![
            // Inhibited by ClusterDown in cluster a.
            alert(
                &[
                    ("alertname", "HighLatency"),
                    ("severity", "warning"),
                    ("cluster", "a"),
                    ("team", "web"),
                    ("instance", "w1:9100"),
                ],
                &[runbook],
                start,
                end,
            ),
            alert(
                &[
                    ("alertname", "HighLatency"),
                    ("severity", "warning"),
                    ("cluster", "b"),
                    ("team", "web"),
                    ("instance", "w2:9100"),
                ],
                &[runbook],
                start,
                ends,
            ),
            alert(
                &[
                    ("alertname", "HighLatency"),
                    ("severity", "page"),
                    ("cluster", "b"),
                    ("team", "web"),
                    ("instance", "w3:9100"),
                ],
                &[],
                start,
                end,
            ),
            // pager and (continue) team.
            alert(
                &[
                    ("alertname", "DiskFull"),
                    ("severity", "page"),
                    ("cluster", "a"),
                    ("team", "db"),
                    ("instance", "db1:9100"),
                ],
                &[],
                start,
                end,
            ),
            alert(
                &[
                    ("alertname", "DiskFull"),
                    ("severity", "warning"),
                    ("cluster", "b"),
                    ("team", "cache"),
                    ("instance", "c1:9100"),
                ],
                &[],
                start,
                ends,
            ),
            // Inhibited in the team route too.
            alert(
                &[
                    ("alertname", "ReplicaLag"),
                    ("severity", "warning"),
                    ("cluster", "a"),
                    ("team", "db"),
                    ("instance", "db2:9100"),
                ],
                &[],
                start,
                end,
            ),
            alert(
                &[
                    ("alertname", "ClusterDown"),
                    ("severity", "page"),
                    ("cluster", "a"),
                ],
                &[],
                start,
                end,
            ),
            // Silenced.
            alert(
                &[
                    ("alertname", "CPUHigh"),
                    ("severity", "info"),
                    ("cluster", "b"),
                    ("team", "web"),
                    ("instance", "silenced:9100"),
                ],
                &[],
                start,
                end,
            ),
            alert(
                &[
                    ("alertname", "CPUHigh"),
                    ("severity", "info"),
                    ("cluster", "b"),
                    ("team", "web"),
                    ("instance", "n1:9100"),
                ],
                &[],
                start,
                end,
            ),
        ]
    };
    let firing = set(end);
    post_alerts(am, &firing).await;
    post_alerts(hs.addr, &firing).await;
    tokio::time::sleep(Duration::from_secs(4)).await;
    // Resolve w2 (the default HighLatency group's only visible alert) and
    // c1 (a team singleton group).
    let resolved_at = unix_now();
    let resolve: Vec<Value> = set(resolved_at)
        .into_iter()
        .filter(|a| {
            matches!(
                a["labels"]["instance"].as_str(),
                Some("w2:9100" | "c1:9100")
            )
        })
        .collect();
    assert_eq!(resolve.len(), 2);
    post_alerts(am, &resolve).await;
    post_alerts(hs.addr, &resolve).await;
    tokio::time::sleep(Duration::from_secs(4)).await;

    // The scenario is not trivial: Alertmanager's own answer has several
    // groups, resolved notifications, and neither the silenced nor the
    // inhibited alerts.
    let all: Vec<String> = names
        .iter()
        .flat_map(|r| notifications(&sink_am, r))
        .collect();
    let text = all.join("\n");
    assert!(all.len() >= 8, "{text}");
    assert!(text.contains("status=resolved"), "{text}");
    for absent in ["silenced:9100", "w1:9100", "db2:9100"] {
        assert!(!text.contains(absent), "{absent} should be muted:\n{text}");
    }
    for present in [
        "w2:9100",
        "w3:9100",
        "db1:9100",
        "c1:9100",
        "n1:9100",
        "ClusterDown",
    ] {
        assert!(text.contains(present), "{present} missing:\n{text}");
    }
    for r in names {
        let a = notifications(&sink_am, r);
        let h = notifications(&sink_hs, r);
        assert_eq!(
            h,
            a,
            "receiver {r}: homeostat (left) and Alertmanager (right) differ\nhomeostat log:\n{}",
            hs.process.log()
        );
    }
    for r in sink_hs.requests() {
        assert_eq!(r.json["version"], "4", "{}", r.json);
        assert!(
            r.headers
                .get("content-type")
                .is_some_and(|c| c.starts_with("application/json")),
            "{:?}",
            r.headers
        );
    }

    // DELETE expires the silence on homeostat as on Alertmanager.
    let r = reqwest::Client::new()
        .delete(format!("http://{}/api/v2/silence/{hs_sid}", hs.addr))
        .header("X-Homeostat-User", "e2e")
        .send()
        .await
        .unwrap();
    assert!(r.status().is_success(), "{}", r.status());
    let hs_one =
        homeostat_e2e::get_json(&format!("http://{}/api/v2/silence/{hs_sid}", hs.addr)).await;
    assert_eq!(hs_one["status"]["state"], "expired", "{hs_one}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn repeat_interval_matches_alertmanager() {
    let tree = r#"route:
  receiver: rep
  group_by: [alertname]
  group_wait: 1s
  group_interval: 1s
  repeat_interval: 3s
"#;
    let sink_am = Sink::start().await;
    let sink_hs = Sink::start().await;
    let Some((_am, am)) = start_alertmanager(&format!(
        "{tree}{}",
        webhook_receivers(&sink_am.url(), &["rep"])
    ))
    .await
    else {
        return;
    };
    let hs = Homeostat::start(&homeostat_config(&format!(
        "{tree}{}",
        webhook_receivers(&sink_hs.url(), &["rep"])
    )))
    .await;
    let now = unix_now();
    let alerts = vec![
        alert(
            &[("alertname", "RepeatA"), ("instance", "a:1")],
            &[],
            now,
            now + 3600.0,
        ),
        alert(
            &[("alertname", "RepeatB"), ("instance", "b:1")],
            &[],
            now,
            now + 3600.0,
        ),
    ];
    post_alerts(am, &alerts).await;
    post_alerts(hs.addr, &alerts).await;
    // Alerts that start now wait group_wait (~1 s); the repeat comes once
    // 3 s have passed, at a group_interval tick (~4-5 s); the next not
    // before ~7 s. (Alerts that started earlier would flush at once and
    // put the third send right at the window's end, on both sides.)
    tokio::time::sleep(Duration::from_millis(6500)).await;
    let count = |s: &Sink| -> BTreeMap<String, usize> {
        let mut m = BTreeMap::new();
        for r in s.requests_to("/rep") {
            *m.entry(r.json["groupKey"].as_str().unwrap_or("?").to_string())
                .or_insert(0) += 1;
        }
        m
    };
    let (a, h) = (count(&sink_am), count(&sink_hs));
    assert_eq!(a.len(), 2, "Alertmanager: {a:?}");
    assert!(
        a.values().all(|n| *n >= 2),
        "Alertmanager repeated nothing: {a:?}"
    );
    assert_eq!(
        h,
        a,
        "homeostat (left) vs Alertmanager (right)\n{}",
        hs.process.log()
    );
}

// ------------------------------------------------------------------ Slack

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn slack_bot_token_retries_then_posts_block_kit_once() {
    let slack = SlackStandIn::start().await;
    let notify = format!(
        r#"{FAST_RETRY}route:
  receiver: slack-bot
  group_by: [alertname]
  group_wait: 100ms
  group_interval: 1s
  repeat_interval: 1h
  routes:
    - matchers: ['via="webhook"']
      receiver: slack-hook
receivers:
  - name: slack-bot
    slack_configs:
      - token: {BOT_TOKEN}
        api_url: {api}
        channel: '#alerts'
  - name: slack-hook
    slack_configs:
      - api_url: {hook}
"#,
        api = slack.api_url(),
        hook = slack.webhook_url()
    );
    let hs = Homeostat::start(&homeostat_config(&notify)).await;
    slack.fail_next(vec![
        Fail::RateLimited { retry_after_s: 1 },
        Fail::Status(500),
    ]);
    let now = unix_now();
    let t0 = Instant::now();
    post_alerts(
        hs.addr,
        &[alert(
            &[
                ("alertname", "HighLatency"),
                ("severity", "page"),
                ("instance", "web-1:9100"),
                ("service", "checkout"),
            ],
            &[
                ("summary", "p99 latency above 2s"),
                ("value", "2.5"),
                ("runbook_url", "https://runbooks.e2e.test/high-latency"),
            ],
            now - 30.0,
            now + 3600.0,
        )],
    )
    .await;
    assert!(
        wait_until(Duration::from_secs(20), || {
            let n = slack.requests().len();
            async move { n >= 1 }
        })
        .await,
        "no Slack message; attempts {}, violations {:?}\nlog:\n{}",
        slack.attempts(),
        slack.violations(),
        hs.process.log()
    );
    // Retry-After: 1 was honoured before the second attempt.
    assert!(t0.elapsed() >= Duration::from_secs(1));
    tokio::time::sleep(Duration::from_secs(2)).await;
    assert_eq!(slack.attempts(), 3, "429, 500, then success");
    let reqs = slack.requests();
    assert_eq!(reqs.len(), 1, "exactly one message: {reqs:?}");
    assert!(slack.violations().is_empty(), "{:?}", slack.violations());
    let m = &reqs[0];
    assert_eq!(m.path, "/api/chat.postMessage");
    assert_eq!(m.headers["authorization"], format!("Bearer {BOT_TOKEN}"));
    assert_eq!(m.body["channel"], "#alerts");
    assert!(
        m.body["blocks"].is_array(),
        "Block Kit blocks expected: {}",
        m.body
    );
    let text = slack::message_text(&json!({"blocks": m.body["blocks"]}));
    for needle in [
        "HighLatency",
        "page",
        "web-1:9100",
        "checkout",
        "2.5",
        "https://runbooks.e2e.test/high-latency",
    ] {
        assert!(
            text.contains(needle),
            "{needle:?} not in the blocks:\n{text}"
        );
    }

    let m = metrics(hs.addr).await;
    let sent = metric_sum(
        &m,
        "homeostat_notifications_total",
        &[("channel", "slack"), ("result", "sent")],
    );
    assert!(sent.is_some_and(|v| v >= 1.0), "sent {sent:?}\n{m}");
    let retries = metric_sum(
        &m,
        "homeostat_notification_retries_total",
        &[("channel", "slack")],
    );
    assert!(
        retries.is_some_and(|v| v >= 2.0),
        "retries {retries:?}\n{m}"
    );

    // Incoming-webhook mode.
    post_alerts(
        hs.addr,
        &[alert(
            &[
                ("alertname", "QueueBacklog"),
                ("severity", "warning"),
                ("via", "webhook"),
            ],
            &[("runbook_url", "https://runbooks.e2e.test/queue")],
            now - 30.0,
            now + 3600.0,
        )],
    )
    .await;
    assert!(
        wait_until(Duration::from_secs(15), || {
            let n = slack.requests().len();
            async move { n >= 2 }
        })
        .await,
        "no webhook message; violations {:?}\nlog:\n{}",
        slack.violations(),
        hs.process.log()
    );
    let w = &slack.requests()[1];
    assert_eq!(w.path, "/services/T000/B000/XXXX");
    assert!(!w.headers.contains_key("authorization"), "{:?}", w.headers);
    let text = slack::message_text(&w.body);
    assert!(
        text.contains("QueueBacklog") && text.contains("https://runbooks.e2e.test/queue"),
        "{text}"
    );
    assert!(slack.violations().is_empty(), "{:?}", slack.violations());
}

// -------------------------------------------------------------- PagerDuty

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pagerduty_trigger_retry_and_resolve_with_one_dedup_key() {
    let pd = PagerDutyStandIn::start().await;
    let notify = format!(
        r#"{FAST_RETRY}route:
  receiver: pd
  group_by: [alertname]
  group_wait: 100ms
  group_interval: 1s
  repeat_interval: 1h
receivers:
  - name: pd
    pagerduty_configs:
      - routing_key: {ROUTING_KEY}
        url: {url}
"#,
        url = pd.url()
    );
    let hs = Homeostat::start(&homeostat_config(&notify)).await;
    pd.fail_next(vec![Fail::Status(500)]);
    let now = unix_now();
    let mk = |name: &str, sev: &str, ends: f64| {
        alert(
            &[
                ("alertname", name),
                ("severity", sev),
                ("instance", "db-1:5432"),
                ("cluster", "prod"),
            ],
            &[
                ("summary", "something broke"),
                ("runbook_url", "https://runbooks.e2e.test/pd"),
            ],
            now - 30.0,
            ends,
        )
    };
    let cases = [
        ("PgDown", "page", "critical"),
        ("PgErrors", "error", "error"),
        ("PgSlow", "warning", "warning"),
        ("PgNote", "low", "info"),
    ];
    let firing: Vec<Value> = cases
        .iter()
        .map(|(n, s, _)| mk(n, s, now + 3600.0))
        .collect();
    post_alerts(hs.addr, &firing).await;
    assert!(
        wait_until(Duration::from_secs(20), || {
            let n = pd.events().len();
            async move { n >= 4 }
        })
        .await,
        "events {:?}, violations {:?}\nlog:\n{}",
        pd.events(),
        pd.violations(),
        hs.process.log()
    );
    assert!(pd.attempts() >= 5, "the 500 was retried");
    for (name, _, severity) in cases {
        let ev: Vec<_> = pd
            .events()
            .into_iter()
            .filter(|e| {
                e.body["payload"]["summary"]
                    .as_str()
                    .is_some_and(|s| s.contains(name))
                    || e.body["payload"]["custom_details"]
                        .to_string()
                        .contains(name)
            })
            .collect();
        assert_eq!(ev.len(), 1, "{name}: {ev:?}");
        let e = &ev[0].body;
        assert_eq!(e["event_action"], "trigger", "{e}");
        assert_eq!(e["payload"]["severity"], severity, "{name}: {e}");
        let details = e["payload"]["custom_details"].to_string();
        assert!(
            details.contains("db-1:5432") && details.contains("prod"),
            "{details}"
        );
        let group_key = format!("{{}}:{{alertname=\"{name}\"}}");
        assert_eq!(e["dedup_key"], sha256_hex(&group_key), "{name}: {e}");
    }

    // Resolve PgDown: a resolve event with the same dedup_key.
    post_alerts(hs.addr, &[mk("PgDown", "page", unix_now())]).await;
    let key = sha256_hex("{}:{alertname=\"PgDown\"}");
    assert!(
        wait_until(Duration::from_secs(15), || {
            let done = pd.alerts().get(&key).map(String::as_str) == Some("resolved");
            async move { done }
        })
        .await,
        "no resolve for {key}: {:?}\nlog:\n{}",
        pd.events(),
        hs.process.log()
    );
    let resolves: Vec<_> = pd
        .events()
        .into_iter()
        .filter(|e| e.body["event_action"] == "resolve")
        .collect();
    assert_eq!(resolves.len(), 1, "{resolves:?}");
    assert_eq!(resolves[0].dedup_key, key);
    assert_eq!(
        pd.alerts().values().filter(|s| *s == "triggered").count(),
        3
    );
    assert!(pd.violations().is_empty(), "{:?}", pd.violations());

    let m = metrics(hs.addr).await;
    let sent = metric_sum(
        &m,
        "homeostat_notifications_total",
        &[("channel", "pagerduty"), ("result", "sent")],
    );
    assert!(sent.is_some_and(|v| v >= 5.0), "sent {sent:?}\n{m}");
    let retries = metric_sum(
        &m,
        "homeostat_notification_retries_total",
        &[("channel", "pagerduty")],
    );
    assert!(
        retries.is_some_and(|v| v >= 1.0),
        "retries {retries:?}\n{m}"
    );
}

// ------------------------------------------------------------------ email

async fn email_group_of_two(mode: SmtpMode) {
    let Some(smtp) = start_smtp(mode).await else {
        return;
    };
    let tls = match mode {
        SmtpMode::StartTls => "require_tls: true\n",
        // Not on port 465, so implicit TLS is asked for explicitly.
        SmtpMode::ImplicitTls => "require_tls: false\ntls: implicit\n",
    };
    let notify = format!(
        r#"{FAST_RETRY}route:
  receiver: mail
  group_by: [alertname]
  group_wait: 1s
  group_interval: 1s
  repeat_interval: 1h
receivers:
  - name: mail
    email_configs:
      - to: oncall@e2e.test
        from: homeostat@e2e.test
        smarthost: {smarthost}
        auth_username: '{user}'
        auth_password: '{password}'
{tls}        tls_config:
          ca_file: {ca}
          server_name: localhost
"#,
        smarthost = smtp.smarthost(),
        user = smtp.user,
        password = smtp.password,
        tls = indent(tls, 8),
        ca = smtp.ca_cert_path.display(),
    );
    let hs = Homeostat::start(&homeostat_config(&notify)).await;
    let now = unix_now();
    let alerts: Vec<Value> = ["web-1:9100", "web-2:9100"]
        .iter()
        .map(|i| {
            alert(
                &[
                    ("alertname", "HighLatency"),
                    ("severity", "page"),
                    ("instance", i),
                ],
                &[
                    ("summary", "p99 latency high"),
                    ("runbook_url", "https://runbooks.e2e.test/hl"),
                ],
                now - 30.0,
                now + 3600.0,
            )
        })
        .collect();
    post_alerts(hs.addr, &alerts).await;
    let mails = smtp.wait_messages(1, Duration::from_secs(20)).await;
    assert!(
        !mails.is_empty(),
        "no mail\nhomeostat log:\n{}\nsmtp log:\n{}",
        hs.process.log(),
        smtp.process.log()
    );
    tokio::time::sleep(Duration::from_secs(2)).await;
    let mails = smtp.messages();
    assert_eq!(
        mails.len(),
        1,
        "one message for the group: {:?}",
        mails
            .iter()
            .map(|m| m.subject().to_string())
            .collect::<Vec<_>>()
    );
    let m = &mails[0];
    assert!(
        m.tls && m.login.as_deref() == Some(smtp.user.as_str()),
        "{m:?}"
    );
    assert_eq!(m.rcpt_tos, vec!["oncall@e2e.test".to_string()]);
    assert!(m
        .header("from")
        .is_some_and(|f| f.contains("homeostat@e2e.test")));
    assert!(m
        .header("to")
        .is_some_and(|f| f.contains("oncall@e2e.test")));
    assert!(
        m.header("date").is_some() && m.header("message-id").is_some(),
        "{:?}",
        m.headers
    );
    let subject = m.subject();
    assert!(
        subject.contains("FIRING") && subject.contains("HighLatency"),
        "{subject}"
    );
    assert!(subject.contains("[FIRING:2]"), "{subject}");
    let plain = m
        .part("text/plain")
        .unwrap_or_else(|| panic!("no text/plain: {m:?}"));
    let html = m
        .part("text/html")
        .unwrap_or_else(|| panic!("no text/html: {m:?}"));
    for body in [plain, html] {
        assert!(
            body.contains("web-1:9100") && body.contains("web-2:9100"),
            "{body}"
        );
        assert!(body.contains("https://runbooks.e2e.test/hl"), "{body}");
    }
    assert!(
        html.to_ascii_lowercase().contains("<html")
            || html.contains("<table")
            || html.contains("<p"),
        "{html}"
    );
    let metrics = metrics(hs.addr).await;
    let sent = metric_sum(
        &metrics,
        "homeostat_notifications_total",
        &[("channel", "email"), ("result", "sent")],
    );
    assert_eq!(sent, Some(1.0), "{metrics}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn email_starttls_auth_one_message_per_group() {
    email_group_of_two(SmtpMode::StartTls).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn email_implicit_tls() {
    email_group_of_two(SmtpMode::ImplicitTls).await;
}

// ---------------------------------------------------------------- webhook

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn webhook_v4_payload_signed_with_hmac() {
    let sink = Sink::start().await;
    let secret = "e2e-webhook-secret";
    let notify = format!(
        r#"{FAST_RETRY}route:
  receiver: hook
  group_by: [alertname]
  group_wait: 100ms
  group_interval: 1s
  repeat_interval: 1h
  routes:
    - matchers: ['alertname="Many"']
      receiver: capped
receivers:
  - name: hook
    webhook_configs:
      - url: {base}hook
        hmac_secret: {secret}
  - name: capped
    webhook_configs:
      - url: {base}capped
        max_alerts: 1
"#,
        base = sink.url()
    );
    let hs = Homeostat::start(&homeostat_config(&notify)).await;
    let now = unix_now();
    post_alerts(
        hs.addr,
        &[
            alert(
                &[("alertname", "Signed"), ("instance", "x:1")],
                &[("summary", "s")],
                now - 5.0,
                now + 3600.0,
            ),
            alert(
                &[("alertname", "Many"), ("instance", "m:1")],
                &[],
                now - 5.0,
                now + 3600.0,
            ),
            alert(
                &[("alertname", "Many"), ("instance", "m:2")],
                &[],
                now - 5.0,
                now + 3600.0,
            ),
        ],
    )
    .await;
    assert!(
        wait_until(Duration::from_secs(15), || {
            let n = sink.requests_to("/hook").len() + sink.requests_to("/capped").len();
            async move { n >= 2 }
        })
        .await,
        "{:?}\nlog:\n{}",
        sink.requests(),
        hs.process.log()
    );
    let r = &sink.requests_to("/hook")[0];
    let sig = r
        .headers
        .get("x-homeostat-signature")
        .unwrap_or_else(|| panic!("no X-Homeostat-Signature: {:?}", r.headers));
    assert!(
        verify_homeostat_signature(secret, &r.body, sig),
        "bad signature {sig}"
    );
    assert!(!verify_homeostat_signature("other", &r.body, sig));
    let b = &r.json;
    assert_eq!(b["version"], "4");
    assert_eq!(b["receiver"], "hook");
    assert_eq!(b["status"], "firing");
    assert_eq!(b["groupKey"], "{}:{alertname=\"Signed\"}");
    assert_eq!(b["groupLabels"], json!({"alertname": "Signed"}));
    assert_eq!(b["truncatedAlerts"], 0);
    assert_eq!(b["alerts"][0]["labels"]["instance"], "x:1");
    assert_eq!(b["alerts"][0]["status"], "firing");
    assert!(b["alerts"][0]["fingerprint"].is_string(), "{b}");
    assert!(
        b.get("externalURL").is_some() && b.get("commonLabels").is_some(),
        "{b}"
    );

    let c = &sink.requests_to("/capped")[0];
    assert!(
        !c.headers.contains_key("x-homeostat-signature"),
        "no secret, no signature"
    );
    assert_eq!(
        c.json["alerts"].as_array().map(Vec::len),
        Some(1),
        "{}",
        c.json
    );
    assert_eq!(c.json["truncatedAlerts"], 1, "{}", c.json);
}

// -------------------------------------------------------------------- CLI

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn notify_test_cli_sends_sample_or_names_the_failing_receiver() {
    let slack = SlackStandIn::start().await;
    let dead = format!("http://127.0.0.1:{}/hook", free_port());
    let dir = temp_dir();
    let cfg = dir.path().join("homeostat.yaml");
    let notify = format!(
        r#"retry:
  max_attempts: 1
  initial_backoff: 100ms
  max_backoff: 100ms
timeout: 2s
route:
  receiver: slack-ok
receivers:
  - name: slack-ok
    slack_configs:
      - token: {BOT_TOKEN}
        api_url: {api}
        channel: '#alerts'
  - name: broken-hook
    webhook_configs:
      - url: {dead}
"#,
        api = slack.api_url()
    );
    let text = homeostat_config(&notify)
        .replace("{listen}", &format!("127.0.0.1:{}", free_port()))
        .replace(
            "{state}",
            &dir.path().join("state.db").display().to_string(),
        );
    std::fs::write(&cfg, text).unwrap();

    let run = |receiver: &'static str| {
        let cfg = cfg.clone();
        tokio::task::spawn_blocking(move || {
            std::process::Command::new(homeostat_bin())
                .args(["notify", "test", receiver, "--config"])
                .arg(&cfg)
                .output()
                .unwrap()
        })
    };
    let out = run("slack-ok").await.unwrap();
    let said = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(out.status.success(), "{said}");
    assert_eq!(slack.requests().len(), 1, "{said}");
    assert!(slack.violations().is_empty(), "{:?}", slack.violations());
    assert_eq!(slack.requests()[0].body["channel"], "#alerts");

    let t = Instant::now();
    let out = run("broken-hook").await.unwrap();
    let said = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(!out.status.success(), "{said}");
    assert!(
        said.contains("broken-hook"),
        "the error names the receiver: {said}"
    );
    assert!(t.elapsed() < Duration::from_secs(30));

    let out = run("no-such-receiver").await.unwrap();
    assert!(!out.status.success());
    assert_eq!(slack.requests().len(), 1);
}

#[test]
fn check_config_points_at_bad_routing_tree_entries() {
    let dir = temp_dir();
    let path = dir.path().join("bad.yaml");
    let yaml = r#"web:
  listen_address: 127.0.0.1:9400
notify:
  route:
    receiver: default
    routes:
      - matchers: ['team="db"']
        receiver: nosuch
      - matchers: ['severity=~"("']
        receiver: default
      - matchers: ['team="web"']
        receiver: default
        mute_time_intervals: [nosuch-interval]
  receivers:
    - name: default
      webhook_configs:
        - url: http://127.0.0.1:1/
"#;
    std::fs::write(&path, yaml).unwrap();
    let line_of = |needle: &str| yaml.lines().position(|l| l.contains(needle)).unwrap() + 1;
    let out = std::process::Command::new(homeostat_bin())
        .args(["check", "config"])
        .arg(&path)
        .output()
        .unwrap();
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(out.status.code(), Some(1), "{text}");
    // Field paths as `a.b[0].c` or `a.b.0.c`.
    let flat = text.replace('[', ".").replace(']', "");
    for (needle, field) in [
        ("receiver: nosuch", "route.routes.0.receiver"),
        ("severity=~", "route.routes.1.matchers"),
        ("nosuch-interval", "route.routes.2.mute_time_intervals"),
    ] {
        let line = line_of(needle);
        let hit = text
            .lines()
            .zip(flat.lines())
            .find(|(_, f)| f.contains(field));
        let (orig, _) = hit.unwrap_or_else(|| panic!("{field} not reported:\n{text}"));
        assert!(
            orig.contains(&format!("bad.yaml:{line}:")),
            "{field} should point at bad.yaml line {line}: {orig}"
        );
    }
    assert!(text.contains("nosuch"), "{text}");
}

// ------------------------------------------------------------- silences

/// Silences survive a restart; an expired one is kept (and listed) for
/// audit; the active one still mutes after the restart; bad silences are
/// refused with 400 and change nothing.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn silences_persist_across_restart_and_expired_ones_are_kept() {
    let sink = Sink::start().await;
    let tree = "route:\n  receiver: hook\n  group_by: [alertname]\n  group_wait: 0s\n  group_interval: 1s\n";
    let mut hs = Homeostat::start(&homeostat_config(&format!(
        "{tree}{}",
        webhook_receivers(&sink.url(), &["hook"])
    )))
    .await;
    let now = unix_now();
    let silence = |name: &str| {
        json!({
            "matchers": [{"name": "alertname", "value": name, "isRegex": false, "isEqual": true}],
            "startsAt": rfc3339(now),
            "endsAt": rfc3339(now + 3600.0),
            "createdBy": "alice",
            "comment": "maintenance window",
        })
    };
    let keep = post_silence(hs.addr, &silence("Muted")).await;
    let gone = post_silence(hs.addr, &silence("Other")).await;
    let del = reqwest::Client::new()
        .delete(format!("http://{}/api/v2/silence/{gone}", hs.addr))
        .send()
        .await
        .unwrap();
    assert_eq!(del.status(), 200);
    // Refused: no comment, and a matcher set that matches everything.
    for mut bad in [silence("X"), silence("X")] {
        if bad["comment"] == "maintenance window" && bad["matchers"][0]["value"] == "X" {
            bad["comment"] = json!("");
        }
        let r = reqwest::Client::new()
            .post(format!("http://{}/api/v2/silences", hs.addr))
            .json(&bad)
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 400);
    }
    let mut everything = silence("X");
    everything["matchers"] =
        json!([{"name": "alertname", "value": ".*", "isRegex": true, "isEqual": true}]);
    let r = reqwest::Client::new()
        .post(format!("http://{}/api/v2/silences", hs.addr))
        .json(&everything)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 400);

    hs.restart().await;
    let list: Value = reqwest::get(format!("http://{}/api/v2/silences", hs.addr))
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let state = |id: &str| {
        list.as_array()
            .unwrap()
            .iter()
            .find(|s| s["id"] == id)
            .map(|s| s["status"]["state"].as_str().unwrap_or("").to_string())
    };
    assert_eq!(list.as_array().unwrap().len(), 2, "{list}");
    assert_eq!(state(&keep).as_deref(), Some("active"));
    assert_eq!(state(&gone).as_deref(), Some("expired"));
    let one: Value = reqwest::get(format!("http://{}/api/v2/silence/{keep}", hs.addr))
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(one["createdBy"], "alice");
    assert_eq!(one["comment"], "maintenance window");

    post_alerts(
        hs.addr,
        &[
            alert(
                &[("alertname", "Muted"), ("instance", "a")],
                &[],
                unix_now(),
                unix_now() + 3600.0,
            ),
            alert(
                &[("alertname", "Other"), ("instance", "a")],
                &[],
                unix_now(),
                unix_now() + 3600.0,
            ),
        ],
    )
    .await;
    assert!(
        wait_until(Duration::from_secs(10), || {
            let n = sink.requests_to("/hook").len();
            async move { n >= 1 }
        })
        .await
    );
    tokio::time::sleep(Duration::from_secs(2)).await;
    let got = notifications(&sink, "hook");
    assert!(got.iter().all(|n| !n.contains("Muted")), "{got:?}");
    assert!(got.iter().any(|n| n.contains("Other")), "{got:?}");
    let alerts: Value = reqwest::get(format!("http://{}/api/v2/alerts", hs.addr))
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let muted = alerts
        .as_array()
        .unwrap()
        .iter()
        .find(|a| a["labels"]["alertname"] == "Muted")
        .unwrap();
    assert_eq!(muted["status"]["state"], "suppressed");
    assert_eq!(muted["status"]["silencedBy"][0], keep.as_str());
}
