//! Rules and alerting end to end: homeostat scrapes a local target, evaluates
//! a rule file, shows the alert go pending → firing in its API, delivers it
//! to a real Alertmanager 0.25 and resolves it; a restart in the middle of
//! `for` does not reset the timer; a bad rule file on reload keeps the old
//! rules running.

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use homeostat_e2e::{
    free_port, get_json, homeostat_bin, start_alertmanager, temp_dir, wait_until, Behavior,
    ServerProcess, TestTarget,
};
use serde_json::Value;

const RULES: &str = r#"groups:
  - name: fault
    interval: 1s
    rules:
      - alert: FaultInjected
        expr: fault_injected > 0
        for: 6s
        labels:
          severity: critical
        annotations:
          summary: 'fault on {{ $labels.instance }} at {{ $value | humanize }}'
      - record: fault:sum
        expr: sum(fault_injected)
"#;

const AM_CONFIG: &str = r#"route:
  receiver: blackhole
  group_by: ['alertname']
  group_wait: 0s
  group_interval: 1s
receivers:
  - name: blackhole
"#;

fn config(target: SocketAddr, am: SocketAddr, listen: SocketAddr, dir: &std::path::Path) -> String {
    format!(
        r#"global:
  scrape_interval: 1s
  evaluation_interval: 1s
  external_labels:
    cluster: e2e
web:
  listen_address: {listen}
state:
  path: {state}
rule_files:
  - rules/*.yml
alerting:
  alertmanagers:
    - static_configs:
        - targets: ['{am}']
      timeout: 2s
scrape_configs:
  - job_name: app
    static_configs:
      - targets: ['{target}']
"#,
        state = dir.join("state.db").display()
    )
}

async fn start(cfg: &std::path::Path, listen: SocketAddr) -> ServerProcess {
    let mut p = ServerProcess::spawn(
        "homeostat",
        &homeostat_bin(),
        &["run", "--config", &cfg.display().to_string()],
        &[("HOMEOSTAT_LOG_LEVEL", "info")],
    )
    .expect("spawn homeostat");
    p.wait_for_port(listen, Duration::from_secs(30)).await;
    p
}

/// The homeostat alert with this alertname, if active.
async fn alert(listen: SocketAddr, name: &str) -> Option<Value> {
    let v = get_json(&format!("http://{listen}/api/v1/alerts")).await;
    v["data"]["alerts"]
        .as_array()?
        .iter()
        .find(|a| a["labels"]["alertname"] == name)
        .cloned()
}

async fn wait_state(listen: SocketAddr, state: &str, timeout: Duration) -> Option<Value> {
    let deadline = Instant::now() + timeout;
    while Instant::now() < deadline {
        if let Some(a) = alert(listen, "FaultInjected").await {
            if a["state"] == state {
                return Some(a);
            }
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    None
}

async fn am_alerts(am: SocketAddr) -> Vec<Value> {
    get_json(&format!("http://{am}/api/v2/alerts"))
        .await
        .as_array()
        .cloned()
        .unwrap_or_default()
}

fn rfc3339_secs(s: &str) -> f64 {
    humantime::parse_rfc3339(s)
        .ok()
        .and_then(|t| t.duration_since(std::time::UNIX_EPOCH).ok())
        .map(|d| d.as_secs_f64())
        .unwrap_or_else(|| panic!("not RFC 3339: {s}"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn alert_lifecycle_reaches_alertmanager_and_survives_restart() {
    let Some((_am_proc, am)) = start_alertmanager(AM_CONFIG).await else {
        return;
    };
    let target = TestTarget::start(Behavior::Text("fault_injected 0\n".into())).await;
    let dir = temp_dir();
    std::fs::create_dir(dir.path().join("rules")).unwrap();
    std::fs::write(dir.path().join("rules/fault.yml"), RULES).unwrap();
    let listen: SocketAddr = format!("127.0.0.1:{}", free_port()).parse().unwrap();
    let cfg = dir.path().join("homeostat.yml");
    std::fs::write(&cfg, config(target.addr, am, listen, dir.path())).unwrap();
    let mut hs = start(&cfg, listen).await;

    // The rules API lists both rules, healthy once evaluated.
    assert!(
        wait_until(Duration::from_secs(10), || async {
            let v = get_json(&format!("http://{listen}/api/v1/rules")).await;
            v["data"]["groups"][0]["rules"][1]["health"] == "ok"
        })
        .await,
        "rules never evaluated; log:\n{}",
        hs.log()
    );
    let rules = get_json(&format!("http://{listen}/api/v1/rules")).await;
    let g = &rules["data"]["groups"][0];
    assert_eq!(g["name"], "fault");
    assert_eq!(g["interval"], 1.0);
    assert!(
        g["file"].as_str().unwrap().ends_with("rules/fault.yml"),
        "{g}"
    );
    assert_eq!(g["rules"][0]["type"], "alerting");
    assert_eq!(g["rules"][0]["state"], "inactive");
    assert_eq!(g["rules"][0]["duration"], 6.0);
    assert_eq!(g["rules"][1]["type"], "recording");
    let only_alerts = get_json(&format!("http://{listen}/api/v1/rules?type=alert")).await;
    assert_eq!(
        only_alerts["data"]["groups"][0]["rules"]
            .as_array()
            .unwrap()
            .len(),
        1
    );

    // Flip the metric: pending first, in homeostat's API...
    target.set(Behavior::Text("fault_injected 3\n".into()));
    let flipped = Instant::now();
    let pending = wait_state(listen, "pending", Duration::from_secs(10))
        .await
        .unwrap_or_else(|| panic!("alert never went pending; log:\n{}", hs.log()));
    assert_eq!(pending["labels"]["severity"], "critical");
    assert_eq!(
        pending["annotations"]["summary"],
        format!("fault on {} at 3", target.addr)
    );
    assert_eq!(pending["value"], "3e+00");
    // ...and not in Alertmanager: pending alerts are not sent.
    assert!(am_alerts(am).await.is_empty());

    // ...then firing after `for`, and delivered to Alertmanager.
    let firing = wait_state(listen, "firing", Duration::from_secs(15))
        .await
        .expect("alert never fired");
    assert!(
        flipped.elapsed() >= Duration::from_secs(5),
        "fired before `for` elapsed"
    );
    let rules = get_json(&format!("http://{listen}/api/v1/rules")).await;
    assert_eq!(rules["data"]["groups"][0]["rules"][0]["state"], "firing");
    assert!(
        wait_until(Duration::from_secs(10), || async {
            !am_alerts(am).await.is_empty()
        })
        .await,
        "Alertmanager never received the alert; log:\n{}",
        hs.log()
    );
    let got = am_alerts(am).await;
    let a = &got[0];
    assert_eq!(a["labels"]["alertname"], "FaultInjected");
    assert_eq!(a["labels"]["severity"], "critical");
    assert_eq!(a["labels"]["cluster"], "e2e", "external labels are added");
    assert_eq!(a["labels"]["instance"], target.addr.to_string());
    assert_eq!(
        a["annotations"]["summary"],
        format!("fault on {} at 3", target.addr)
    );
    assert_eq!(a["status"]["state"], "active");
    assert!(a["generatorURL"].as_str().unwrap().contains(&format!(
        "http://{listen}/graph?g0.expr=fault_injected+%3E+0"
    )));
    // startsAt is when it fired; endsAt is in the future while it fires.
    let starts = rfc3339_secs(a["startsAt"].as_str().unwrap());
    assert!(starts >= rfc3339_secs(firing["activeAt"].as_str().unwrap()) + 5.0);
    assert!(rfc3339_secs(a["endsAt"].as_str().unwrap()) > homeostat_e2e::unix_now());

    // ALERTS and the recording rule are queryable like in Prometheus.
    let q = get_json(&format!(
        "http://{listen}/api/v1/query?query=ALERTS%7Balertstate%3D%22firing%22%7D"
    ))
    .await;
    assert_eq!(
        q["data"]["result"][0]["metric"]["alertname"],
        "FaultInjected"
    );
    let q = get_json(&format!("http://{listen}/api/v1/query?query=fault:sum")).await;
    assert_eq!(q["data"]["result"][0]["value"][1], "3");

    // Resolve: gone from homeostat's active alerts, resolved in Alertmanager.
    target.set(Behavior::Text("fault_injected 0\n".into()));
    assert!(
        wait_until(Duration::from_secs(10), || async {
            alert(listen, "FaultInjected").await.is_none()
        })
        .await,
        "alert never resolved in homeostat"
    );
    assert!(
        wait_until(Duration::from_secs(10), || async {
            am_alerts(am).await.is_empty()
        })
        .await,
        "Alertmanager still shows the alert active: {:?}",
        am_alerts(am).await
    );

    // Restart in the middle of `for`: the timer is paused, not reset.
    target.set(Behavior::Text("fault_injected 5\n".into()));
    let pending = wait_state(listen, "pending", Duration::from_secs(10))
        .await
        .expect("alert never went pending again");
    let active_at = rfc3339_secs(pending["activeAt"].as_str().unwrap());
    tokio::time::sleep(Duration::from_secs(3)).await;
    let status = hs.stop(Duration::from_secs(10));
    assert!(
        status.is_some_and(|s| s.success()),
        "stop failed: {}",
        hs.log()
    );
    let stopped = homeostat_e2e::unix_now();
    drop(hs);
    let mut hs = start(&cfg, listen).await;
    let restarted = homeostat_e2e::unix_now();
    let restored = wait_state(listen, "pending", Duration::from_secs(5))
        .await
        .unwrap_or_else(|| panic!("pending alert not restored; log:\n{}", hs.log()));
    let restored_at = rfc3339_secs(restored["activeAt"].as_str().unwrap());
    // activeAt moves forward by the downtime only (about one second here),
    // never to the restart time.
    assert!(
        restored_at < restarted - 2.0,
        "activeAt {restored_at} reset to the restart ({restarted}); it was {active_at}"
    );
    assert!(restored_at >= active_at);
    assert!(restored_at - active_at <= (restarted - stopped) + 2.0);
    wait_state(listen, "firing", Duration::from_secs(10))
        .await
        .expect("restored alert never fired");
    let fired_after_restart = homeostat_e2e::unix_now() - restarted;
    assert!(
        fired_after_restart < 5.0,
        "took {fired_after_restart:.1}s after restart to fire: the 6s `for` timer was reset"
    );

    // A broken rule file on reload keeps the running rules, names the error.
    std::fs::write(
        dir.path().join("rules/broken.yml"),
        "groups:\n  - name: broken\n    rules:\n      - alert: X\n        expr: 'sum(('\n",
    )
    .unwrap();
    let resp = reqwest::Client::new()
        .post(format!("http://{listen}/-/reload"))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 500);
    let text = resp.text().await.unwrap();
    assert!(
        text.contains(
            "broken.yml: 5:15: group \"broken\", rule 1, \"X\": could not parse expression"
        ),
        "{text}"
    );
    let rules = get_json(&format!("http://{listen}/api/v1/rules")).await;
    assert_eq!(rules["data"]["groups"].as_array().unwrap().len(), 1);
    assert_eq!(rules["data"]["groups"][0]["rules"][0]["state"], "firing");
    let metrics = reqwest::get(format!("http://{listen}/metrics"))
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(metrics.contains("homeostat_config_last_reload_successful 0"));
    assert!(
        metrics.contains("homeostat_rule_group_last_duration_seconds{rule_group=\""),
        "{metrics}"
    );
    assert!(metrics.contains("homeostat_notifications_sent_total{alertmanager=\""));
    hs.stop(Duration::from_secs(10));
}
