//! End-to-end: homeostat scrapes real HTTP targets served by the test — a
//! healthy one, one that returns garbage, one that hangs past the timeout, one
//! that disappears, one that gzips, one that speaks OpenMetrics — and each
//! misbehaving target fails alone while the others' data stays right.

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use homeostat::daemon::{Daemon, RunOptions};
use homeostat::store::{is_stale_nan, MatchOp, Matcher, Store};
use homeostat_e2e::{wait_until, Behavior, TestTarget};

fn eq(name: &str, value: &str) -> Matcher {
    Matcher::new(MatchOp::Equal, name, value).unwrap()
}

/// Latest sample of the series matching `matchers` (exactly one expected).
fn latest(store: &Store, matchers: &[Matcher]) -> Option<f64> {
    let now = homeostat::collect::now_ms();
    let got = store.select(matchers, now - 600_000, now + 1000);
    assert!(
        got.len() <= 1,
        "expected one series for {matchers:?}, got {}",
        got.len()
    );
    got.first().and_then(|s| s.samples.last()).map(|&(_, v)| v)
}

fn up(store: &Store, target: &TestTarget) -> Option<f64> {
    latest(
        store,
        &[
            eq("__name__", "up"),
            eq("job", "app"),
            eq("instance", &target.addr.to_string()),
        ],
    )
}

async fn targets_json(addr: std::net::SocketAddr) -> serde_json::Value {
    reqwest::get(format!("http://{addr}/api/v1/targets"))
        .await
        .unwrap()
        .json()
        .await
        .unwrap()
}

fn last_error(targets: &serde_json::Value, t: &TestTarget) -> String {
    targets["data"]["activeTargets"]
        .as_array()
        .unwrap()
        .iter()
        .find(|x| x["scrapePool"] == "app" && x["labels"]["instance"] == t.addr.to_string())
        .map(|x| x["lastError"].as_str().unwrap_or_default().to_string())
        .unwrap_or_else(|| panic!("target {} missing from /api/v1/targets: {targets}", t.addr))
}

fn write_config(dir: &Path, jobs: &BTreeMap<&str, Vec<String>>, extra: &str) -> std::path::PathBuf {
    let mut yaml = String::from(
        "global:\n  scrape_interval: 1s\n  scrape_timeout: 500ms\nstate:\n  path: state.db\nscrape_configs:\n",
    );
    for (job, targets) in jobs {
        yaml.push_str(&format!(
            "  - job_name: {job}\n    static_configs:\n      - targets: [{}]\n        labels:\n          team: infra\n",
            targets.iter().map(|t| format!("'{t}'")).collect::<Vec<_>>().join(", ")
        ));
    }
    yaml.push_str(extra);
    let path = dir.join("homeostat.yaml");
    std::fs::write(&path, yaml).unwrap();
    path
}

const GOOD: &str = "# HELP http_requests_total Requests.\n# TYPE http_requests_total counter\nhttp_requests_total{code=\"200\",handler=\"/api\"} 1027\nhttp_requests_total{code=\"500\",handler=\"/api\"} 3\n# TYPE queue_depth gauge\nqueue_depth 42\n";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn misbehaving_targets_fail_alone() {
    let good = TestTarget::start(Behavior::Text(GOOD.into())).await;
    let garbage = TestTarget::start(Behavior::Text("this is { not a metric\n".into())).await;
    let hang = TestTarget::start(Behavior::Hang(Duration::from_secs(5))).await;
    let vanish = TestTarget::start(Behavior::Text("vanishing_metric{a=\"b\"} 7\n".into())).await;
    let gzip = TestTarget::start(Behavior::Gzip(
        "zipped_metric 3.5\nzipped_metric_total{k=\"v\"} +Inf\n".into(),
    ))
    .await;
    let om = TestTarget::start(Behavior::OpenMetrics(
        "# TYPE om_requests counter\nom_requests_total{path=\"/x\"} 17 # {trace_id=\"abc\"} 1.0\nom_requests_created{path=\"/x\"} 1700000000\n# EOF\n".into(),
    ))
    .await;
    let s500 = TestTarget::start(Behavior::Status(500)).await;

    let dir = homeostat_e2e::temp_dir();
    let mut jobs = BTreeMap::new();
    jobs.insert(
        "app",
        [&good, &garbage, &hang, &vanish, &gzip, &om, &s500]
            .iter()
            .map(|t| t.addr.to_string())
            .collect(),
    );
    // Same healthy target, but a job whose body limit it exceeds.
    let small = format!(
        "  - job_name: small\n    body_size_limit: 64\n    static_configs:\n      - targets: ['{}']\n",
        good.addr
    );
    let cfg = write_config(dir.path(), &jobs, &small);
    let daemon = Daemon::start(RunOptions {
        config_path: Some(cfg),
        listen: Some("127.0.0.1:0".into()),
    })
    .await
    .expect("daemon starts");
    let store: Arc<Store> = daemon.store.clone();

    // Every target has been tried at least once.
    let all_tried = wait_until(Duration::from_secs(10), || {
        let s = store.clone();
        let ts = [&good, &garbage, &hang, &vanish, &gzip, &om, &s500].map(|t| up(&s, t).is_some());
        let small = latest(&s, &[eq("__name__", "up"), eq("job", "small")]).is_some();
        async move { small && ts.iter().all(|x| *x) }
    })
    .await;
    assert!(all_tried, "not every target was scraped within 10s");

    assert_eq!(up(&store, &good), Some(1.0));
    assert_eq!(up(&store, &gzip), Some(1.0));
    assert_eq!(up(&store, &om), Some(1.0));
    assert_eq!(up(&store, &vanish), Some(1.0));
    assert_eq!(up(&store, &garbage), Some(0.0));
    assert_eq!(up(&store, &hang), Some(0.0));
    assert_eq!(up(&store, &s500), Some(0.0));

    // Target labels, static labels and values arrive intact.
    let inst = good.addr.to_string();
    let v = latest(
        &store,
        &[
            eq("__name__", "http_requests_total"),
            eq("code", "500"),
            eq("instance", &inst),
            eq("job", "app"),
            eq("team", "infra"),
        ],
    );
    assert_eq!(v, Some(3.0));
    assert_eq!(
        latest(&store, &[eq("__name__", "zipped_metric")]),
        Some(3.5)
    );
    assert_eq!(
        latest(&store, &[eq("__name__", "zipped_metric_total")]),
        Some(f64::INFINITY)
    );
    assert_eq!(
        latest(&store, &[eq("__name__", "om_requests_total")]),
        Some(17.0)
    );
    assert_eq!(
        latest(&store, &[eq("__name__", "om_requests_created")]),
        Some(1_700_000_000.0)
    );
    assert_eq!(
        latest(
            &store,
            &[
                eq("__name__", "scrape_samples_scraped"),
                eq("job", "app"),
                eq("instance", &inst)
            ]
        ),
        Some(3.0)
    );
    assert!(latest(
        &store,
        &[
            eq("__name__", "scrape_duration_seconds"),
            eq("job", "app"),
            eq("instance", &inst)
        ]
    )
    .is_some());
    assert!(latest(
        &store,
        &[
            eq("__name__", "scrape_series_added"),
            eq("job", "app"),
            eq("instance", &inst)
        ]
    )
    .is_some());
    // A failed scrape stores nothing of the body.
    assert_eq!(latest(&store, &[eq("__name__", "late_metric")]), None);

    // The reasons are in /api/v1/targets.
    let t = targets_json(daemon.addr).await;
    assert_eq!(last_error(&t, &good), "");
    let e = last_error(&t, &garbage);
    assert!(
        e.contains("line 1"),
        "garbage error should name the line: {e}"
    );
    let e = last_error(&t, &hang);
    assert!(e.contains("timed out"), "hang error: {e}");
    let e = last_error(&t, &s500);
    assert!(e.contains("500"), "status error: {e}");
    let small = t["data"]["activeTargets"]
        .as_array()
        .unwrap()
        .iter()
        .find(|x| x["scrapePool"] == "small")
        .expect("job small in targets");
    assert_eq!(small["health"], "down");
    assert!(
        small["lastError"]
            .as_str()
            .unwrap()
            .contains("body size limit exceeded"),
        "{small}"
    );
    assert_eq!(
        latest(&store, &[eq("__name__", "up"), eq("job", "small")]),
        Some(0.0)
    );

    // HELP and TYPE lines are served by /api/v1/metadata, as Prometheus does.
    let meta: serde_json::Value = reqwest::get(format!(
        "http://{}/api/v1/metadata?metric=http_requests_total",
        daemon.addr
    ))
    .await
    .unwrap()
    .json()
    .await
    .unwrap();
    assert_eq!(
        meta["data"]["http_requests_total"][0]["type"], "counter",
        "{meta}"
    );
    assert_eq!(
        meta["data"]["http_requests_total"][0]["help"], "Requests.",
        "{meta}"
    );
    assert_eq!(meta["data"].as_object().unwrap().len(), 1, "{meta}");

    // The hanging target does not hold back the healthy one: with a 1s
    // interval over ~4s, the good target is scraped repeatedly.
    let before = good.scrapes();
    tokio::time::sleep(Duration::from_millis(3200)).await;
    assert!(
        good.scrapes() >= before + 2,
        "good target scraped {} times in 3.2s",
        good.scrapes() - before
    );

    // The vanishing target goes away: up drops to 0 and its series get a
    // staleness marker.
    vanish.close();
    let gone = wait_until(Duration::from_secs(5), || {
        let s = store.clone();
        let v = up(&s, &vanish);
        async move { v == Some(0.0) }
    })
    .await;
    assert!(gone, "up for the vanished target never went to 0");
    let v = latest(&store, &[eq("__name__", "vanishing_metric")]).unwrap();
    assert!(
        is_stale_nan(v),
        "vanished series should end in a staleness marker, got {v}"
    );
    let e = last_error(&targets_json(daemon.addr).await, &vanish);
    assert!(
        e.contains("onnection refused"),
        "vanished target error: {e}"
    );

    // A series that disappears from a healthy target's output gets a
    // staleness marker; the others keep their values.
    good.set(Behavior::Text(
        "http_requests_total{code=\"200\",handler=\"/api\"} 1030\nqueue_depth 40\n".into(),
    ));
    let staled = wait_until(Duration::from_secs(5), || {
        let s = store.clone();
        let v = latest(
            &s,
            &[eq("__name__", "http_requests_total"), eq("code", "500")],
        );
        async move { v.is_some_and(is_stale_nan) }
    })
    .await;
    assert!(
        staled,
        "series that left the exposition was not marked stale"
    );
    assert_eq!(latest(&store, &[eq("__name__", "queue_depth")]), Some(40.0));
    assert_eq!(
        latest(
            &store,
            &[eq("__name__", "http_requests_total"), eq("code", "200")]
        ),
        Some(1030.0)
    );

    // The garbage target recovers as soon as it serves good data.
    garbage.set(Behavior::Text("recovered 1\n".into()));
    let ok = wait_until(Duration::from_secs(5), || {
        let s = store.clone();
        let v = up(&s, &garbage);
        async move { v == Some(1.0) }
    })
    .await;
    assert!(ok, "target that served garbage did not recover");

    daemon.stop().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn relabeling_honor_labels_and_file_sd() {
    let a = TestTarget::start(Behavior::Text(
        "app_info{instance=\"exposed\",job=\"exposed-job\",version=\"1.2\"} 1\ndebug_noise 5\nkeep_me{pod_uid=\"x\",pod=\"p\"} 2\n".into(),
    ))
    .await;
    let b = TestTarget::start(Behavior::Text("from_file 1\n".into())).await;
    let c = TestTarget::start(Behavior::Text("from_file 2\n".into())).await;
    let dir = homeostat_e2e::temp_dir();
    std::fs::write(
        dir.path().join("targets.json"),
        format!(
            r#"[{{"targets":["{}"],"labels":{{"env":"prod"}}}}]"#,
            b.addr
        ),
    )
    .unwrap();
    let extra = format!(
        "  - job_name: honor\n    honor_labels: true\n    static_configs:\n      - targets: ['{a}']\n  - job_name: plain\n    metric_relabel_configs:\n      - source_labels: [__name__]\n        regex: debug_.*\n        action: drop\n      - regex: pod_uid\n        action: labeldrop\n      - source_labels: [pod]\n        target_label: workload\n        replacement: 'wl-$1'\n    static_configs:\n      - targets: ['{a}']\n  - job_name: files\n    file_sd_configs:\n      - files: ['*.json']\n",
        a = a.addr
    );
    let cfg = write_config(dir.path(), &BTreeMap::new(), &extra);
    let daemon = Daemon::start(RunOptions {
        config_path: Some(cfg),
        listen: Some("127.0.0.1:0".into()),
    })
    .await
    .expect("daemon starts");
    let store = daemon.store.clone();
    let ready = wait_until(Duration::from_secs(10), || {
        let s = store.clone();
        let v = latest(&s, &[eq("__name__", "from_file")]);
        let w = latest(&s, &[eq("__name__", "keep_me"), eq("job", "plain")]);
        let x = latest(&s, &[eq("__name__", "debug_noise"), eq("job", "honor")]);
        async move { v.is_some() && w.is_some() && x.is_some() }
    })
    .await;
    assert!(ready, "file_sd target or relabeled series never appeared");

    // honor_labels keeps the exposed labels; the default renames them.
    assert_eq!(
        latest(
            &store,
            &[
                eq("__name__", "app_info"),
                eq("job", "exposed-job"),
                eq("instance", "exposed")
            ]
        ),
        Some(1.0)
    );
    let inst = a.addr.to_string();
    assert_eq!(
        latest(
            &store,
            &[
                eq("__name__", "app_info"),
                eq("job", "plain"),
                eq("instance", &inst),
                eq("exported_job", "exposed-job"),
                eq("exported_instance", "exposed")
            ]
        ),
        Some(1.0)
    );
    // drop, labeldrop and replace.
    assert_eq!(
        latest(&store, &[eq("__name__", "debug_noise"), eq("job", "plain")]),
        None
    );
    assert_eq!(
        latest(&store, &[eq("__name__", "debug_noise"), eq("job", "honor")]),
        Some(5.0)
    );
    assert_eq!(
        latest(
            &store,
            &[
                eq("__name__", "keep_me"),
                eq("job", "plain"),
                eq("pod_uid", ""),
                eq("workload", "wl-p")
            ]
        ),
        Some(2.0)
    );
    // The file's labels arrive.
    assert_eq!(
        latest(&store, &[eq("__name__", "from_file"), eq("env", "prod")]),
        Some(1.0)
    );

    // Rewrite the file: the new target is picked up, the old one is marked stale.
    std::fs::write(
        dir.path().join("targets.json"),
        format!(r#"[{{"targets":["{}"]}}]"#, c.addr),
    )
    .unwrap();
    let switched = wait_until(Duration::from_secs(8), || {
        let s = store.clone();
        let new = latest(
            &s,
            &[
                eq("__name__", "from_file"),
                eq("instance", &c.addr.to_string()),
            ],
        );
        let old = latest(
            &s,
            &[
                eq("__name__", "from_file"),
                eq("instance", &b.addr.to_string()),
            ],
        );
        async move { new == Some(2.0) && old.is_some_and(is_stale_nan) }
    })
    .await;
    assert!(
        switched,
        "file_sd change was not followed (new target scraped, old one stale)"
    );
    daemon.stop().await.unwrap();
}
