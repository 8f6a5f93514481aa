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
