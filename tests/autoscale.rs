//! Predictive autoscaling end to end: a scrape target whose demand repeats a
//! compressed "day" (a 40-second cycle with one sharp peak), the real daemon learning
//! it from its own downsampled history (1-second grid), and the Container Apps
//! stand-in receiving the replica floor through the autoscale playbook's `scale` step.
//! The floor must rise before the peak arrives, while demand is still low.

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use homeostat_e2e::arm::ArmStandIn;
use homeostat_e2e::{Behavior, Homeostat, TestTarget};

const PERIOD_S: f64 = 40.0;
const PEAK_AT_S: f64 = 30.0;

/// Demand at `secs` since the start: 10 at rest, 95 at the peak.
fn demand(secs: f64) -> f64 {
    let phase = secs.rem_euclid(PERIOD_S);
    10.0 + 85.0 * (-((phase - PEAK_AT_S) / 2.5).powi(2)).exp()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn replica_floor_rises_before_the_daily_peak() {
    let arm = ArmStandIn::start().await;
    arm.set_provision_delay(Duration::from_millis(50));
    let app = "/subscriptions/sub-1/resourceGroups/rg-1/providers/Microsoft.App/containerApps/llm";
    let start = Instant::now();
    let target = TestTarget::start(Behavior::Generated(Arc::new(move || {
        format!(
            "# TYPE llm_demand gauge\nllm_demand {}\n",
            demand(start.elapsed().as_secs_f64())
        )
    })))
    .await;
    let books = tempfile::tempdir().unwrap();
    std::fs::write(
        books.path().join("autoscale.yml"),
        format!(
            "name: autoscale-llm\ntrigger: {{manual: true}}\nsteps:\n  - name: floor\n    action: scale\n    timeout: 20s\n    idempotent: true\n    params: {{container_app: '{app}', replicas: '{{{{ $labels.replicas }}}}', min: 1, max: 10}}\n"
        ),
    )
    .unwrap();
    let config = format!(
        "global:\n  scrape_interval: 1s\n  evaluation_interval: 1s\nweb:\n  listen_address: '{{listen}}'\nstate:\n  path: '{{state}}'\nplaybook_files: ['{books}/*.yml']\nscrape_configs:\n  - job_name: llm\n    static_configs: [{{targets: ['{target}']}}]\ncollectors:\n  azure:\n    scrape_interval: 30s\n    management_endpoint: {u}\n    authority_host: {u}\n    container_apps: ['{app}']\nautoscale:\n  - name: llm\n    demand: llm_demand\n    capacity_per_replica: 10\n    min: 1\n    max: 10\n    lead_time: 6s\n    interval: 1s\n    scale_down_stabilization: 4s\n    forecast: {{step: 1s, retrain: 15s, history: 10m}}\n    playbook: autoscale-llm\nforecasts:\n  - name: llm-demand\n    expr: llm_demand\n    horizon: 10s\n    step: 1s\n    retrain: 15s\n    history: 10m\n",
        books = books.path().display(),
        target = target.addr,
        u = arm.url(),
    );
    let h = Homeostat::start_with_env(
        &config,
        &[
            ("AZURE_CREDENTIAL_KIND", "clientsecret"),
            ("AZURE_TENANT_ID", "tenant-1"),
            ("AZURE_CLIENT_ID", "client-1"),
            ("AZURE_CLIENT_SECRET", "secret-1"),
        ],
    )
    .await;

    // Watch the floor the stand-in holds, with the demand at each moment.
    let seen: Arc<Mutex<Vec<(f64, u32)>>> = Arc::default();
    let watcher = {
        let deadline = Instant::now() + Duration::from_secs(420);
        let mut early_raise = None;
        while Instant::now() < deadline {
            let t = start.elapsed().as_secs_f64();
            let floor = arm.scale_of("llm").0;
            seen.lock().unwrap().push((t, floor));
            let phase = t.rem_euclid(PERIOD_S);
            // Before the peak, while demand still fits in 3 replicas at full
            // capacity, the floor is already at 6 or more: that is the forecast.
            if (PEAK_AT_S - 7.0..PEAK_AT_S - 2.5).contains(&phase) && demand(t) < 30.0 && floor >= 6
            {
                early_raise = Some((t, phase, demand(t), floor));
                break;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        early_raise
    };
    let metrics = reqwest::get(format!("http://{}/metrics", h.addr))
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    let log = h.process.log();
    assert!(
        watcher.is_some(),
        "the floor never rose ahead of a peak.\nfloors (t, minReplicas): {:?}\nmetrics:\n{}\nlog:\n{}",
        {
            let all = seen.lock().unwrap();
            all.windows(2)
                .filter(|w| w[0].1 != w[1].1)
                .map(|w| (w[1].0, w[1].1))
                .collect::<Vec<_>>()
        },
        metrics
            .lines()
            .filter(|l| l.starts_with("homeostat_autoscale")
                || l.starts_with("homeostat_playbook_runs")
                || l.starts_with("homeostat_playbook_guard"))
            .collect::<Vec<_>>()
            .join("\n"),
        log.lines()
            .filter(|l| l.contains("autoscale") && !l.contains("scale run started"))
            .collect::<Vec<_>>()
            .join("\n")
    );
    let (t, phase, d, floor) = watcher.unwrap();
    eprintln!(
        "floor {floor} set at t={t:.1}s, {:.1}s before the peak, while demand was {d:.1} (needs {} replicas)",
        PEAK_AT_S - phase,
        (d / 10.0).ceil()
    );
    assert!(
        metrics.contains("homeostat_autoscale_predictive{autoscale=\"llm\"} 1"),
        "{metrics}"
    );
    assert!(log.contains("forecast trusted"), "{log}");
    assert!(arm.violations().is_empty(), "{:?}", arm.violations());
    // The `forecasts` entry on the same demand publishes its forecast as series, one
    // per step ahead, and a peak is expected within the 10 s horizon somewhere in
    // every cycle it has seen.
    let hi = h
        .query("max without (horizon) (homeostat_forecast{forecast=\"llm-demand\",bound=\"hi\"})")
        .await;
    assert_eq!(hi.len(), 1, "{hi:?}");
    let steps = h
        .query("count(homeostat_forecast{forecast=\"llm-demand\",bound=\"yhat\"})")
        .await;
    assert_eq!(steps.first().map(|s| s.1), Some(10.0), "{steps:?}");
    let trained = homeostat_e2e::metric_sum(
        &metrics,
        "homeostat_forecast_trainings_total",
        &[("forecast", "llm-demand")],
    );
    assert!(trained.is_some_and(|n| n >= 1.0), "{metrics}");
    assert!(
        metrics.contains("homeostat_forecast_mase{forecast=\"llm-demand\"}"),
        "{metrics}"
    );
    // The runs are in the audit trail of the playbook, triggered by the autoscaler.
    let runs = h.runs("autoscale-llm").await;
    assert!(runs.iter().any(|r| r["trigger"] == "autoscale"), "{runs:?}");
}

/// Two days of a daily pattern, 1-minute resolution, ending a minute ago.
fn two_days_openmetrics(now_s: i64) -> String {
    let mut s = String::from("# TYPE llm_demand gauge\n");
    let end = now_s - now_s.rem_euclid(60) - 60;
    for i in (0..2 * 1440).rev() {
        let t = end - i * 60;
        s.push_str(&format!("llm_demand {} {t}\n", daily(t as f64)));
    }
    s.push_str("# EOF\n");
    s
}

/// Demand over a real day: 100 at night, 200 in the afternoon.
fn daily(t_s: f64) -> f64 {
    150.0 + 50.0 * (2.0 * std::f64::consts::PI * t_s / 86_400.0).sin()
}

/// A forecast added to a fresh daemon learns the day at once from a real
/// Prometheus that already holds two days (blocks written by promtool), instead
/// of waiting days for its own history.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn history_is_filled_from_a_real_prometheus() {
    let Some(prom_bin) = homeostat_e2e::required_program(&["prometheus"], "prometheus") else {
        return;
    };
    let Some(promtool) = homeostat_e2e::required_program(&["promtool"], "prometheus") else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let now_s = homeostat_e2e::unix_now() as i64;
    let om = dir.path().join("history.om");
    std::fs::write(&om, two_days_openmetrics(now_s)).unwrap();
    let data = dir.path().join("data");
    let out = std::process::Command::new(&promtool)
        .args(["tsdb", "create-blocks-from", "openmetrics"])
        .arg(&om)
        .arg(&data)
        .output()
        .expect("promtool");
    assert!(
        out.status.success(),
        "promtool: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let cfg = dir.path().join("prometheus.yml");
    std::fs::write(&cfg, "global:\n  scrape_interval: 1m\n").unwrap();
    let addr: std::net::SocketAddr = format!("127.0.0.1:{}", homeostat_e2e::free_port())
        .parse()
        .unwrap();
    let mut prom = homeostat_e2e::ServerProcess::spawn(
        "prometheus",
        &prom_bin,
        &[
            &format!("--config.file={}", cfg.display()),
            &format!("--storage.tsdb.path={}", data.display()),
            "--storage.tsdb.retention.time=30d",
            &format!("--web.listen-address={addr}"),
        ],
        &[],
    )
    .expect("spawn prometheus");
    prom.wait_for_port(addr, Duration::from_secs(30)).await;
    // Prometheus answers before it has loaded its blocks; wait for the data.
    let probe =
        format!("http://{addr}/api/v1/query?query=count_over_time(llm_demand[3d])&time={now_s}");
    let mut loaded = 0.0;
    for _ in 0..60 {
        if let Ok(r) = reqwest::get(&probe).await {
            if let Ok(v) = r.json::<serde_json::Value>().await {
                loaded = v["data"]["result"][0]["value"][1]
                    .as_str()
                    .and_then(|x| x.parse().ok())
                    .unwrap_or(0.0);
                if loaded > 0.0 {
                    break;
                }
            }
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    assert_eq!(
        loaded,
        2880.0,
        "Prometheus did not load the blocks\n{}",
        prom.log()
    );

    let h = Homeostat::start(&format!(
        "global:\n  scrape_interval: 15s\nweb:\n  listen_address: '{{listen}}'\nstate:\n  path: '{{state}}'\nhistory:\n  prometheus_url: http://{addr}\n  timeout: 20s\nforecasts:\n  - name: day\n    expr: llm_demand\n    horizon: 1h\n    step: 1m\n    retrain: 6h\n    history: 3d\n"
    ))
    .await;
    let url = format!("http://{}/api/v1/forecasts", h.addr);
    let mut f = serde_json::Value::Null;
    for _ in 0..120 {
        f = homeostat_e2e::get_json(&url).await["data"]["forecasts"][0].clone();
        if f["forecast"].as_array().is_some_and(|a| !a.is_empty()) {
            break;
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    let points = f["forecast"].as_array().cloned().unwrap_or_default();
    assert_eq!(
        points.len(),
        60,
        "no forecast from the backfilled history: {f}\n{}",
        h.process.log()
    );
    assert!(f["model"]["trained_at"].is_number(), "{f}");
    // The afternoon rise is known from yesterday: the forecast follows the day,
    // not the last value.
    let mut worst: f64 = 0.0;
    for p in &points {
        let t = p["t"].as_f64().unwrap();
        let yhat = p["yhat"].as_f64().unwrap();
        worst = worst.max((yhat - daily(t)).abs());
        assert!(p["lo"].as_f64().unwrap() <= yhat && yhat <= p["hi"].as_f64().unwrap());
    }
    eprintln!("forecast from backfilled history: worst error {worst:.2} over the next hour");
    assert!(
        worst < 10.0,
        "forecast misses the daily shape by {worst:.1}: {f}"
    );
    let log = h.process.log();
    assert!(
        log.contains("history filled from the remote Prometheus"),
        "{log}"
    );
}
