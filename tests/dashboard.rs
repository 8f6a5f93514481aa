//! The on-call dashboard driven in a real headless Chromium (Debian
//! `chromium` + `chromium-driver`, over WebDriver with fantoccini) against a
//! daemon with real data: a scraped target whose metric fires an alert, a
//! playbook run that waits for approval, configured users and roles.
//!
//! What must hold: an alert that starts firing appears on the open overview
//! without a reload; an anonymous action is refused; a silence made in the
//! page mutes the alert; a run approved in the page proceeds and the audit
//! log names who approved; a forged cross-site request with a valid session
//! is refused. Each page is screenshotted into `target/dashboard-screenshots`
//! (or `$HOMEOSTAT_ARTIFACTS`), and the page weight, render times and the
//! overview's refresh cost with 1,000 active alerts and 100 runs are printed
//! (the README records them; nothing is asserted on timing).

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use fantoccini::{Client, ClientBuilder, Locator};
use homeostat_e2e::{
    free_port, get_json, homeostat_bin, required_program, wait_until, Behavior, Homeostat,
    ServerProcess, TestTarget,
};
use serde_json::{json, Value};

const ADMIN_TOKEN: &str = "dash-admin-token";

struct Browser {
    client: Client,
    _driver: ServerProcess,
}

/// chromedriver on a free port and a headless Chromium session; `None` (with
/// a SKIP line) when they are not installed outside CI.
async fn start_browser() -> Option<Browser> {
    let chrome = required_program(&["chromium", "chromium-browser"], "chromium")?;
    let driver_bin = required_program(&["chromedriver"], "chromium-driver")?;
    let port = free_port();
    let mut driver = ServerProcess::spawn(
        "chromedriver",
        &driver_bin,
        &[&format!("--port={port}")],
        &[],
    )
    .expect("spawn chromedriver");
    driver
        .wait_for_port(
            format!("127.0.0.1:{port}").parse().expect("addr"),
            Duration::from_secs(30),
        )
        .await;
    let mut caps = serde_json::Map::new();
    caps.insert(
        "goog:chromeOptions".into(),
        json!({
            "binary": chrome.display().to_string(),
            "args": ["--headless=new", "--no-sandbox", "--disable-gpu",
                     "--disable-dev-shm-usage", "--window-size=1280,900",
                     "--disable-extensions", "--no-first-run"],
        }),
    );
    let client = ClientBuilder::new(hyper_util::client::legacy::connect::HttpConnector::new())
        .capabilities(caps)
        .connect(&format!("http://127.0.0.1:{port}"))
        .await
        .unwrap_or_else(|e| panic!("WebDriver session: {e}\n{}", driver.log()));
    Some(Browser {
        client,
        _driver: driver,
    })
}

fn artifacts_dir() -> PathBuf {
    let dir = std::env::var_os("HOMEOSTAT_ARTIFACTS")
        .map(PathBuf::from)
        .unwrap_or_else(|| {
            Path::new(env!("CARGO_MANIFEST_DIR")).join("../target/dashboard-screenshots")
        });
    std::fs::create_dir_all(&dir).expect("artifacts dir");
    dir
}

async fn screenshot(c: &Client, name: &str) {
    let png = c.screenshot().await.expect("screenshot");
    let path = artifacts_dir().join(format!("{name}.png"));
    std::fs::write(&path, png).expect("write screenshot");
    eprintln!("screenshot: {}", path.display());
}

fn hash_password(pw: &str) -> String {
    use std::io::Write;
    let mut child = std::process::Command::new(homeostat_bin())
        .arg("hash-password")
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .spawn()
        .expect("homeostat hash-password");
    writeln!(child.stdin.take().expect("stdin"), "{pw}").expect("write password");
    let out = child.wait_with_output().expect("hash-password output");
    assert!(out.status.success());
    let h = String::from_utf8(out.stdout)
        .expect("utf8")
        .trim()
        .to_string();
    assert!(h.starts_with("$argon2id$"), "{h}");
    h
}

/// Waits for a CSS selector to match, up to `secs`.
async fn wait_css(c: &Client, css: &str, secs: u64) -> fantoccini::elements::Element {
    c.wait()
        .at_most(Duration::from_secs(secs))
        .for_element(Locator::Css(css))
        .await
        .unwrap_or_else(|e| panic!("{css} did not appear within {secs}s: {e}"))
}

async fn flash_text(c: &Client) -> String {
    c.find(Locator::Css("#flash"))
        .await
        .expect("#flash")
        .text()
        .await
        .unwrap_or_default()
}

/// Page weight and render times of the page now loaded, from the browser's
/// Performance API: bytes over the wire (navigation + resources), first
/// contentful paint, and the dashboard's own mark for "data on screen".
async fn page_metrics(c: &Client) -> Value {
    c.execute(
        r#"const nav = performance.getEntriesByType('navigation')[0];
           const res = performance.getEntriesByType('resource');
           const fcp = performance.getEntriesByName('first-contentful-paint')[0];
           const data = performance.getEntriesByName('homeostat-rendered')[0];
           return {
             transfer: (nav ? nav.transferSize : 0) + res.reduce((a, r) => a + r.transferSize, 0),
             decoded: (nav ? nav.decodedBodySize : 0) + res.reduce((a, r) => a + r.decodedBodySize, 0),
             requests: 1 + res.length,
             fcp_ms: fcp ? fcp.startTime : null,
             data_ms: data ? data.startTime : null,
           };"#,
        vec![],
    )
    .await
    .expect("performance entries")
}

async fn api(h: &Homeostat, method: &str, path: &str, body: Value) -> (u16, Value) {
    let c = reqwest::Client::new();
    let url = format!("http://{}{path}", h.addr);
    let req = match method {
        "POST" => c.post(&url).json(&body),
        "DELETE" => c.delete(&url),
        _ => c.get(&url),
    };
    let rsp = req
        .bearer_auth(ADMIN_TOKEN)
        .timeout(Duration::from_secs(30))
        .send()
        .await
        .expect("API call");
    let status = rsp.status().as_u16();
    (status, rsp.json().await.unwrap_or(Value::Null))
}

fn config(dir: &Path, target: std::net::SocketAddr) -> String {
    let admin = hash_password("alice-pw");
    let viewer = hash_password("victor-pw");
    std::fs::create_dir_all(dir.join("books")).expect("books dir");
    std::fs::write(
        dir.join("rules.yml"),
        r#"groups:
  - name: dashboard
    rules:
      - alert: QueueBacklog
        expr: queue_depth > 10
        labels: {severity: critical}
        annotations:
          summary: 'queue depth is {{ $value }}'
          runbook_url: 'https://runbooks.example/queue-backlog'
      - alert: ShardHot
        expr: shard_load > 0
        labels: {severity: warning}
        annotations: {summary: 'shard {{ $labels.shard }} is hot'}
"#,
    )
    .expect("rules");
    let out = dir.join("approved.txt");
    std::fs::write(
        dir.join("books/gated.yml"),
        format!(
            r#"name: gated
description: restarts the target after a person approves
trigger:
  manual: true
target: '{{{{ $labels.instance }}}}'
guards:
  approval: {{timeout: 10m}}
steps:
  - name: record
    action: exec
    params:
      argv: ['/bin/sh', '-c', 'echo "approved $HOMEOSTAT_TARGET" >> {}']
"#,
            out.display()
        ),
    )
    .expect("playbook");
    std::fs::write(
        dir.join("books/scale.yml"),
        r#"name: scale-vllm
description: sets the replica floor the autoscaler asks for
trigger:
  manual: true
target: vllm
steps:
  - name: floor
    action: exec
    params:
      argv: ['/bin/true']
"#,
    )
    .expect("scale playbook");
    format!(
        r#"global:
  scrape_interval: 1s
  evaluation_interval: 1s
web:
  listen_address: '{{listen}}'
  admin_token: {ADMIN_TOKEN}
  auth:
    anonymous_read: loopback
    users:
      - {{name: alice, password_hash: '{admin}', role: admin}}
      - {{name: victor, password_hash: '{viewer}', role: viewer}}
state:
  path: '{{state}}'
rule_files: ['{dir}/rules.yml']
playbook_files: ['{dir}/books/*.yml']
breakers:
  breakers:
    - name: llm-api
    - name: vector-db
scrape_configs:
  - job_name: vllm
    static_configs:
      - targets: ['{target}']
autoscale:
  - name: vllm
    demand: queue_depth
    capacity_per_replica: 10
    min: 1
    max: 8
    lead_time: 5s
    interval: 1s
    scale_down_stabilization: 5s
    forecast: {{step: 1s, retrain: 10s, history: 10m}}
    playbook: scale-vllm
forecasts:
  - name: queue
    expr: queue_depth
    horizon: 30s
    step: 1s
    retrain: 10s
    history: 10m
"#,
        dir = dir.display(),
    )
}

fn metrics(queue: u32, shards: u32) -> String {
    let mut s = format!("# TYPE queue_depth gauge\nqueue_depth {queue}\n# TYPE shard_load gauge\n");
    for i in 0..shards {
        s.push_str(&format!("shard_load{{shard=\"s{i:04}\"}} 1\n"));
    }
    s
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dashboard_in_headless_chromium() {
    let Some(browser) = start_browser().await else {
        return;
    };
    let c = browser.client.clone();
    let target = TestTarget::start(Behavior::Text(metrics(0, 0))).await;
    let dir = tempfile::tempdir().expect("tempdir");
    let h = Homeostat::start(&config(dir.path(), target.addr)).await;
    let base = format!("http://{}", h.addr);
    assert!(
        wait_until(Duration::from_secs(20), || async {
            !h.query("up").await.is_empty()
        })
        .await,
        "target never scraped"
    );

    // --- Overview, anonymous on loopback (anonymous_read: loopback). No alert yet.
    c.goto(&format!("{base}/ui/")).await.expect("open overview");
    wait_css(&c, "#alert-list", 15).await;
    let first = page_metrics(&c).await;
    eprintln!("overview (cold, anonymous): {first}");
    assert!(c
        .find_all(Locator::Css("#alert-list tr[data-alert='QueueBacklog']"))
        .await
        .expect("find")
        .is_empty());

    // The queue backs up: the alert shows on the open page within a refresh.
    target.set(Behavior::Text(metrics(42, 0)));
    let started = Instant::now();
    wait_css(
        &c,
        "#alert-list tr[data-alert='QueueBacklog'][data-state='firing']",
        30,
    )
    .await;
    eprintln!(
        "alert on screen {:.1}s after the metric changed (scrape 1s, evaluation 1s, page refresh 5s)",
        started.elapsed().as_secs_f64()
    );
    screenshot(&c, "overview").await;

    // --- An anonymous action is refused, and changes nothing.
    c.goto(&format!("{base}/ui/alerts?silence=QueueBacklog"))
        .await
        .expect("alerts page");
    wait_css(&c, "#silence-form", 15).await;
    fill(&c, "#silence-createdby", "someone").await;
    fill(&c, "#silence-comment", "anonymous try").await;
    click(&c, "#silence-submit").await;
    assert!(
        wait_until(Duration::from_secs(10), || async {
            flash_text(&c).await.to_lowercase().contains("log in")
        })
        .await,
        "no refusal shown: {:?}",
        flash_text(&c).await
    );
    let silences = get_json(&format!("{base}/api/v2/silences")).await;
    assert_eq!(silences.as_array().map(Vec::len), Some(0), "{silences}");
    let err_class = c
        .find(Locator::Css("#flash"))
        .await
        .expect("#flash")
        .attr("class")
        .await
        .expect("class")
        .unwrap_or_default();
    assert!(err_class.contains("error"), "{err_class}");

    // --- Log in as the admin.
    c.goto(&format!(
        "{base}/ui/login?next=/ui/alerts%3Fsilence%3DQueueBacklog"
    ))
    .await
    .expect("login page");
    fill(&c, "#username", "alice").await;
    fill(&c, "#password", "alice-pw").await;
    click(&c, "#login-submit").await;
    wait_css(&c, "#silence-form", 15).await;
    assert!(c
        .current_url()
        .await
        .expect("url")
        .as_str()
        .contains("/ui/alerts"));

    // --- Silence from the page; the alert is muted.
    fill(&c, "#silence-comment", "investigating the backlog").await;
    click(&c, "#silence-submit").await;
    assert!(
        wait_until(Duration::from_secs(10), || async {
            get_json(&format!("{base}/api/v2/silences"))
                .await
                .as_array()
                .is_some_and(|a| a.iter().any(|s| s["status"]["state"] == "active"))
        })
        .await,
        "no silence created; flash: {:?}",
        flash_text(&c).await
    );
    let silences = get_json(&format!("{base}/api/v2/silences")).await;
    let s = &silences[0];
    assert_eq!(s["comment"], "investigating the backlog");
    assert!(
        s["matchers"]
            .as_array()
            .expect("matchers")
            .iter()
            .any(|m| m["name"] == "alertname" && m["value"] == "QueueBacklog"),
        "{s}"
    );
    assert!(
        wait_until(Duration::from_secs(15), || async {
            get_json(&format!("{base}/api/v2/alerts"))
                .await
                .as_array()
                .is_some_and(|a| {
                    a.iter().any(|x| {
                        x["labels"]["alertname"] == "QueueBacklog"
                            && x["status"]["state"] == "suppressed"
                    })
                })
        })
        .await,
        "the alert is not muted"
    );
    wait_css(
        &c,
        "#alert-list tr[data-alert='QueueBacklog'][data-state='suppressed']",
        20,
    )
    .await;
    screenshot(&c, "alerts").await;
    let audit = get_json(&format!("{base}/api/v1/audit?limit=50")).await;
    assert!(
        audit["data"]
            .as_array()
            .expect("audit")
            .iter()
            .any(|e| e["action"] == "silence.create" && e["actor"] == "alice"),
        "{audit}"
    );

    // --- A run waiting for approval is approved in the page and proceeds.
    let (code, v) = api(
        &h,
        "POST",
        "/api/v1/playbooks/gated/run",
        json!({"target": "vllm-0"}),
    )
    .await;
    assert_eq!(code, 200, "{v}");
    let id = v["data"]["id"].as_str().expect("run id").to_string();
    assert_eq!(v["data"]["state"], "awaiting_approval");
    // The overview shows it waiting, with its buttons (the README's picture).
    c.goto(&format!("{base}/ui/")).await.expect("overview");
    wait_css(&c, &format!("#ov-runs .approve-btn[data-run='{id}']"), 15).await;
    tokio::time::sleep(Duration::from_secs(1)).await;
    screenshot(&c, "overview-awaiting-approval").await;
    c.goto(&format!("{base}/ui/runs")).await.expect("runs page");
    let btn = wait_css(&c, &format!(".approve-btn[data-run='{id}']"), 15).await;
    btn.click().await.expect("click approve");
    let done = h
        .wait_run_state(&id, &["succeeded"], Duration::from_secs(20))
        .await;
    assert_eq!(done["decided_by"], "alice", "{done}");
    let written = std::fs::read_to_string(dir.path().join("approved.txt")).unwrap_or_default();
    assert!(written.contains("approved vllm-0"), "{written:?}");
    wait_css(
        &c,
        &format!("tr[data-run='{id}'][data-state='succeeded']"),
        20,
    )
    .await;
    c.goto(&format!("{base}/ui/runs?run={id}"))
        .await
        .expect("run detail");
    wait_css(&c, "#run-detail", 15).await;
    screenshot(&c, "runs").await;

    // --- CSRF: alice's session cookie on a request from another site, or
    // without the page's token, changes nothing.
    let cookie = c
        .get_named_cookie("homeostat_session")
        .await
        .expect("session cookie");
    let forged = reqwest::Client::new()
        .post(format!("{base}/api/v1/pause"))
        .header("Cookie", format!("homeostat_session={}", cookie.value()))
        .header("Origin", "https://evil.example")
        .json(&json!({}))
        .send()
        .await
        .expect("forged post");
    assert_eq!(forged.status().as_u16(), 403);
    let no_token = reqwest::Client::new()
        .post(format!("{base}/api/v1/pause"))
        .header("Cookie", format!("homeostat_session={}", cookie.value()))
        .json(&json!({}))
        .send()
        .await
        .expect("post without token");
    assert_eq!(no_token.status().as_u16(), 403);
    let pb = get_json(&format!("{base}/api/v1/playbooks")).await;
    assert_eq!(pb["data"]["paused"], false, "{pb}");

    // --- The remaining pages, as screenshots.
    c.goto(&format!("{base}/ui/breakers"))
        .await
        .expect("breakers");
    wait_css(&c, "[data-breaker='llm-api']", 15).await;
    // Open a breaker by hand from the page.
    click(&c, ".breaker-btn[data-breaker='llm-api'][data-to='open']").await;
    assert!(
        wait_until(Duration::from_secs(10), || async {
            get_json(&format!("{base}/api/v1/breakers/llm-api")).await["data"]["state"] == "open"
        })
        .await,
        "breaker not opened from the page: {:?}",
        flash_text(&c).await
    );
    wait_css(&c, "tr[data-breaker='llm-api'][data-state='open']", 15).await;
    screenshot(&c, "breakers").await;
    click(&c, ".breaker-btn[data-breaker='llm-api'][data-to='closed']").await;
    assert!(
        wait_until(Duration::from_secs(10), || async {
            get_json(&format!("{base}/api/v1/breakers/llm-api")).await["data"]["state"] == "closed"
        })
        .await
    );
    // The pause switch on the overview.
    c.goto(&format!("{base}/ui/")).await.expect("overview");
    click(&c, "#pause-toggle[data-paused='false']").await;
    assert!(
        wait_until(Duration::from_secs(10), || async {
            get_json(&format!("{base}/api/v1/playbooks")).await["data"]["paused"] == true
        })
        .await,
        "pause from the page failed: {:?}",
        flash_text(&c).await
    );
    click(&c, "#pause-toggle[data-paused='true']").await;
    assert!(
        wait_until(Duration::from_secs(10), || async {
            get_json(&format!("{base}/api/v1/playbooks")).await["data"]["paused"] == false
        })
        .await
    );
    c.goto(&format!("{base}/ui/scaling?range=2m"))
        .await
        .expect("scaling");
    wait_css(&c, "#scalers section[data-key='vllm']", 15).await;
    tokio::time::sleep(Duration::from_secs(2)).await;
    screenshot(&c, "scaling").await;
    let scalers = get_json(&format!("{base}/api/v1/autoscalers")).await;
    let a = &scalers["data"]["autoscalers"][0];
    assert_eq!(a["name"], "vllm", "{scalers}");
    // Demand 42 at 10 per replica and 0.7 utilization: 6 replicas.
    assert_eq!(a["desired_replicas"], 6, "{a}");
    assert!(!a["decisions"].as_array().expect("decisions").is_empty());
    c.goto(&format!(
        "{base}/ui/targets?expr={}&range=15m",
        form_urlencoded::byte_serialize(b"queue_depth").collect::<String>()
    ))
    .await
    .expect("targets");
    wait_css(&c, "#query-expr", 15).await;
    tokio::time::sleep(Duration::from_secs(2)).await;
    screenshot(&c, "targets").await;

    // --- A viewer sees the pages but may not act.
    let viewer = login_session(&base, "victor", "victor-pw").await;
    let r = reqwest::Client::new()
        .post(format!("{base}/api/v1/pause"))
        .header("Cookie", format!("homeostat_session={}", viewer.0))
        .header("X-CSRF-Token", &viewer.1)
        .json(&json!({}))
        .send()
        .await
        .expect("viewer post");
    assert_eq!(r.status().as_u16(), 403);

    // --- Load: 1,000 active alerts and 100 runs; the overview stays usable.
    target.set(Behavior::Text(metrics(42, 1000)));
    for i in 0..100 {
        let (code, v) = api(
            &h,
            "POST",
            "/api/v1/playbooks/gated/run",
            json!({"target": format!("replica-{i}"), "dry_run": true}),
        )
        .await;
        assert_eq!(code, 200, "{v}");
    }
    assert!(
        wait_until(Duration::from_secs(30), || async {
            get_json(&format!("{base}/api/v1/alerts")).await["data"]["alerts"]
                .as_array()
                .is_some_and(|a| a.len() >= 1000)
        })
        .await,
        "1,000 alerts never became active"
    );
    c.goto(&format!("{base}/ui/")).await.expect("overview");
    wait_css(&c, "#alert-list tr[data-alert='ShardHot']", 20).await;
    tokio::time::sleep(Duration::from_secs(6)).await;
    let loaded = page_metrics(&c).await;
    let refresh = c
        .execute(
            r#"const m = performance.getEntriesByName('homeostat-refresh');
               return m.map(x => x.duration);"#,
            vec![],
        )
        .await
        .expect("refresh measures");
    let long_tasks = c
        .execute("return window.__homeostatLongTasks || [];", vec![])
        .await
        .expect("long tasks");
    eprintln!(
        "overview with 1,000 alerts and 100 runs: {loaded}; refresh cycles (ms): {refresh}; main-thread tasks over 50 ms (ms): {long_tasks}"
    );
    screenshot(&c, "overview-1000-alerts").await;
    c.goto(&format!("{base}/ui/alerts")).await.expect("alerts");
    wait_css(&c, "#alert-list tr[data-alert='ShardHot']", 20).await;
    tokio::time::sleep(Duration::from_secs(6)).await;
    let alerts_page = page_metrics(&c).await;
    let long_tasks = c
        .execute("return window.__homeostatLongTasks || [];", vec![])
        .await
        .expect("long tasks");
    let refresh = c
        .execute(
            "return performance.getEntriesByName('homeostat-refresh').map(x => x.duration);",
            vec![],
        )
        .await
        .expect("refresh measures");
    eprintln!(
        "alerts page with 1,000 alerts: {alerts_page}; refresh cycles (ms): {refresh}; main-thread tasks over 50 ms (ms): {long_tasks}"
    );
    c.goto(&format!("{base}/ui/runs")).await.expect("runs");
    wait_css(&c, "tr[data-run]", 20).await;
    eprintln!("runs page with 100+ runs: {}", page_metrics(&c).await);

    // --- And on a phone.
    c.set_window_size(390, 844).await.expect("resize");
    c.goto(&format!("{base}/ui/")).await.expect("overview");
    wait_css(&c, "#alert-list tr[data-alert]", 20).await;
    screenshot(&c, "overview-phone").await;

    // No page raised a script error.
    let errors = c
        .execute("return window.__homeostatErrors || [];", vec![])
        .await
        .expect("errors");
    assert_eq!(errors, json!([]), "script errors: {errors}");
    c.close().await.expect("close browser");
}

async fn fill(c: &Client, css: &str, text: &str) {
    let el = wait_css(c, css, 10).await;
    el.clear().await.expect("clear");
    el.send_keys(text).await.expect("type");
}

async fn click(c: &Client, css: &str) {
    wait_css(c, css, 10).await.click().await.expect("click");
}

/// Logs in over plain HTTP as the login form would; returns (session id,
/// CSRF token from the page).
async fn login_session(base: &str, user: &str, pw: &str) -> (String, String) {
    let client = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .expect("client");
    let rsp = client
        .post(format!("{base}/ui/login"))
        .form(&[("username", user), ("password", pw), ("next", "/ui/")])
        .send()
        .await
        .expect("login");
    assert_eq!(rsp.status().as_u16(), 303, "login as {user}");
    let set = rsp
        .headers()
        .get("set-cookie")
        .and_then(|v| v.to_str().ok())
        .expect("set-cookie")
        .to_string();
    assert!(
        set.contains("HttpOnly") && set.contains("SameSite=Strict"),
        "{set}"
    );
    let id = set
        .split(';')
        .next()
        .and_then(|kv| kv.split_once('='))
        .map(|(_, v)| v.to_string())
        .expect("session id");
    let page = client
        .get(format!("{base}/ui/"))
        .header("Cookie", format!("homeostat_session={id}"))
        .send()
        .await
        .expect("page")
        .text()
        .await
        .expect("body");
    let csrf = page
        .split("name=\"csrf-token\" content=\"")
        .nth(1)
        .and_then(|s| s.split('"').next())
        .expect("csrf meta")
        .to_string();
    assert!(page.contains("victor") || user != "victor");
    (id, csrf)
}
