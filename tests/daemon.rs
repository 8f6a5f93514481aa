//! End-to-end tests of the `homeostat` binary itself: the embedded default,
//! reload by SIGHUP and by `POST /-/reload` (a bad file keeps the running
//! config), graceful SIGTERM, and `check config`.

use std::net::SocketAddr;
use std::time::Duration;

use homeostat_e2e::{
    free_port, homeostat_bin, http_get, wait_until, Behavior, ServerProcess, TestTarget, SIGHUP,
};

fn metric_value(metrics: &str, name: &str) -> Option<f64> {
    metrics
        .lines()
        .find(|l| l.starts_with(name) && l[name.len()..].starts_with([' ', '{']))
        .and_then(|l| l.rsplit(' ').next())
        .and_then(|v| v.parse().ok())
}

async fn get(addr: SocketAddr, path: &str) -> String {
    reqwest::get(format!("http://{addr}{path}"))
        .await
        .unwrap()
        .text()
        .await
        .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn embedded_default_scrapes_itself() {
    let port = free_port();
    let addr: SocketAddr = format!("127.0.0.1:{port}").parse().unwrap();
    let state = homeostat_e2e::temp_dir();
    let db = state.path().join("state.db");
    let mut p = ServerProcess::spawn(
        "homeostat",
        &homeostat_bin(),
        &["run"],
        &[
            ("HOMEOSTAT_LISTEN", &addr.to_string()),
            ("HOMEOSTAT_STATE", db.to_str().unwrap()),
        ],
    )
    .unwrap();
    p.wait_for_port(addr, Duration::from_secs(20)).await;
    assert_eq!(get(addr, "/-/ready").await, "Homeostat is Ready.\n");
    // The default scrape interval is 15s; the first scrape lands within it.
    let up = wait_until(Duration::from_secs(20), || async move {
        let t: serde_json::Value =
            serde_json::from_str(&get(addr, "/api/v1/targets").await).unwrap_or_default();
        t["data"]["activeTargets"][0]["health"] == "up"
    })
    .await;
    assert!(
        up,
        "embedded config did not scrape itself; log:\n{}",
        p.log()
    );
    let t: serde_json::Value = serde_json::from_str(&get(addr, "/api/v1/targets").await).unwrap();
    assert_eq!(t["data"]["activeTargets"][0]["labels"]["job"], "homeostat");
    assert!(
        db.exists(),
        "state database was not created at {}",
        db.display()
    );
    let status = p.stop(Duration::from_secs(10)).unwrap();
    assert!(
        status.success(),
        "SIGTERM should exit 0, got {status:?}; log:\n{}",
        p.log()
    );
    assert!(p.log().contains("stopped cleanly"), "log:\n{}", p.log());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_reload_keeps_running_config() {
    let t1 = TestTarget::start(Behavior::Text("first 1\n".into())).await;
    let t2 = TestTarget::start(Behavior::Text("second 2\n".into())).await;
    let dir = homeostat_e2e::temp_dir();
    let cfg = dir.path().join("homeostat.yaml");
    let port = free_port();
    let addr: SocketAddr = format!("127.0.0.1:{port}").parse().unwrap();
    let good = format!(
        "web:\n  listen_address: {addr}\nstate:\n  path: state.db\nscrape_configs:\n  - job_name: one\n    scrape_interval: 1s\n    scrape_timeout: 1s\n    static_configs:\n      - targets: ['{}']\n",
        t1.addr
    );
    std::fs::write(&cfg, &good).unwrap();
    let mut p = ServerProcess::spawn(
        "homeostat",
        &homeostat_bin(),
        &["run", "--config", cfg.to_str().unwrap()],
        &[],
    )
    .unwrap();
    p.wait_for_port(addr, Duration::from_secs(20)).await;
    let m = get(addr, "/metrics").await;
    assert_eq!(
        metric_value(&m, "homeostat_config_last_reload_successful"),
        Some(1.0),
        "{m}"
    );

    // A broken file: SIGHUP keeps the old config and reports failure.
    std::fs::write(
        &cfg,
        format!("{good}  - job_name: two\n    scrape_interval: never\n"),
    )
    .unwrap();
    let scrapes_before = t1.scrapes();
    p.signal(SIGHUP);
    let failed = wait_until(Duration::from_secs(5), || async move {
        metric_value(
            &get(addr, "/metrics").await,
            "homeostat_config_last_reload_successful",
        ) == Some(0.0)
    })
    .await;
    assert!(
        failed,
        "bad reload did not set homeostat_config_last_reload_successful 0; log:\n{}",
        p.log()
    );
    assert!(
        p.log().contains("keeping the running config"),
        "log:\n{}",
        p.log()
    );
    tokio::time::sleep(Duration::from_millis(2500)).await;
    assert!(
        t1.scrapes() > scrapes_before,
        "scraping stopped after a bad reload"
    );

    // The API reload says why, naming file and line.
    let resp = reqwest::Client::new()
        .post(format!("http://{addr}/-/reload"))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 500);
    let body = resp.text().await.unwrap();
    assert!(
        body.contains("homeostat.yaml:12:") && body.contains("scrape_interval"),
        "{body}"
    );

    // A good file: the new job starts.
    std::fs::write(
        &cfg,
        format!("{good}  - job_name: two\n    scrape_interval: 1s\n    scrape_timeout: 1s\n    static_configs:\n      - targets: ['{}']\n", t2.addr),
    )
    .unwrap();
    let resp = reqwest::Client::new()
        .post(format!("http://{addr}/-/reload"))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    let m = get(addr, "/metrics").await;
    assert_eq!(
        metric_value(&m, "homeostat_config_last_reload_successful"),
        Some(1.0)
    );
    let scraped = wait_until(Duration::from_secs(5), || {
        let n = t2.scrapes();
        async move { n > 0 }
    })
    .await;
    assert!(scraped, "job added by reload was not scraped");
    assert!(http_get(addr, "/-/healthy").unwrap().contains("Healthy"));
    let status = p.stop(Duration::from_secs(10)).unwrap();
    assert!(status.success(), "{status:?}");
}

#[test]
fn check_config_reports_every_error_and_exit_code() {
    let dir = homeostat_e2e::temp_dir();
    let good = dir.path().join("good.yaml");
    std::fs::write(
        &good,
        "scrape_configs:\n  - job_name: a\n    static_configs:\n      - targets: ['h:1']\n",
    )
    .unwrap();
    let bad = dir.path().join("bad.yaml");
    std::fs::write(&bad, "global:\n  scrape_intervall: 5s\nscrape_configs:\n  - job_name: a\n    scrape_timeout: 1m\n").unwrap();
    let out = std::process::Command::new(homeostat_bin())
        .args(["check", "config"])
        .arg(&good)
        .output()
        .unwrap();
    assert!(out.status.success(), "{out:?}");
    assert!(String::from_utf8_lossy(&out.stdout).starts_with("SUCCESS"));
    let out = std::process::Command::new(homeostat_bin())
        .args(["check", "config"])
        .arg(&good)
        .arg(&bad)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        text.contains("bad.yaml:2:3: global.scrape_intervall: unknown field"),
        "{text}"
    );
    assert!(text.contains("bad.yaml:5:5: scrape_configs[0].scrape_timeout: scrape_timeout 1m is greater than scrape_interval 15s"), "{text}");
}
