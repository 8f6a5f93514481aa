//! Actions against real systems: a Redis namespace flush on 100k keys
//! (exactness and server latency while it runs), circuit breakers with a
//! Redis subscriber and a restart, and `scale` on a Container App through
//! the wire-checking ARM stand-in.

use std::time::{Duration, Instant};

use homeostat_e2e::arm::ArmStandIn;
use homeostat_e2e::db::start_redis;
use homeostat_e2e::{get_json, Homeostat};
use serde_json::json;

fn config(dir: &std::path::Path, extra: &str) -> String {
    format!(
        "global:\n  scrape_interval: 1s\n  evaluation_interval: 1s\nweb:\n  listen_address: '{{listen}}'\nstate:\n  path: '{{state}}'\nplaybook_files: ['{}/*.yml']\n{extra}\n",
        dir.display()
    )
}

async fn redis_conn(addr: std::net::SocketAddr) -> redis::aio::MultiplexedConnection {
    redis::Client::open(format!("redis://{addr}"))
        .unwrap()
        .get_multiplexed_async_connection()
        .await
        .unwrap()
}

async fn count(c: &mut redis::aio::MultiplexedConnection, pattern: &str) -> usize {
    let mut n = 0;
    let mut cursor: u64 = 0;
    loop {
        let (next, keys): (u64, Vec<String>) = redis::cmd("SCAN")
            .arg(cursor)
            .arg("MATCH")
            .arg(pattern)
            .arg("COUNT")
            .arg(5000)
            .query_async(c)
            .await
            .unwrap();
        n += keys.len();
        if next == 0 {
            return n;
        }
        cursor = next;
    }
}

#[tokio::test]
async fn pattern_flush_removes_exactly_the_namespace_without_blocking_redis() {
    let Some((_redis, addr)) = start_redis(None).await else {
        return;
    };
    let mut c = redis_conn(addr).await;
    // 100k keys: 60k in the poisoned namespace, 40k that must survive.
    for (prefix, n) in [
        ("sess:poisoned:", 60_000),
        ("sess:ok:", 20_000),
        ("model:", 20_000),
    ] {
        for chunk in (0..n).collect::<Vec<u32>>().chunks(5000) {
            let mut p = redis::pipe();
            for i in chunk {
                p.cmd("SET").arg(format!("{prefix}{i}")).arg("v").ignore();
            }
            let _: () = p.query_async(&mut c).await.unwrap();
        }
    }
    let books = tempfile::tempdir().unwrap();
    let d = books.path();
    for (name, max) in [("flush", 100_000), ("flush-guarded", 1_000)] {
        std::fs::write(
            d.join(format!("{name}.yml")),
            format!(
                "name: {name}\ntrigger: {{manual: true}}\nsteps:\n  - name: flush\n    action: redis.flush\n    timeout: 2m\n    params: {{server: cache, pattern: 'sess:{{{{ $target }}}}:*', max_keys: {max}, batch: 1000}}\n"
            ),
        )
        .unwrap();
    }
    let extra = format!(
        "collectors:\n  redis:\n    servers:\n      - name: cache\n        url: redis://{addr}\n"
    );
    let h = Homeostat::start(&config(d, &extra)).await;

    // The key-count guard refuses before touching anything.
    let (_, r) = h
        .post(
            "/api/v1/playbooks/flush-guarded/run",
            json!({"target": "poisoned"}),
        )
        .await;
    let done = h
        .wait_run_state(
            r["data"]["id"].as_str().unwrap(),
            &["escalated", "failed"],
            Duration::from_secs(30),
        )
        .await;
    assert_eq!(done["steps"][0]["state"], "refused", "{done:#}");
    assert_eq!(count(&mut c, "sess:poisoned:*").await, 60_000);

    // Probe the server's latency while the flush runs.
    let probe = tokio::spawn(async move {
        let mut c = redis_conn(addr).await;
        let mut worst = Duration::ZERO;
        let mut n = 0u32;
        let until = Instant::now() + Duration::from_secs(60);
        while Instant::now() < until {
            let t = Instant::now();
            let _: String = redis::cmd("PING").query_async(&mut c).await.unwrap();
            worst = worst.max(t.elapsed());
            n += 1;
            let left: i64 = redis::cmd("EXISTS")
                .arg("sess:poisoned:59999")
                .query_async(&mut c)
                .await
                .unwrap();
            if left == 0 && n > 10 {
                break;
            }
        }
        (worst, n)
    });
    let t = Instant::now();
    let (_, r) = h
        .post("/api/v1/playbooks/flush/run", json!({"target": "poisoned"}))
        .await;
    let done = h
        .wait_run_state(
            r["data"]["id"].as_str().unwrap(),
            &["succeeded"],
            Duration::from_secs(120),
        )
        .await;
    let took = t.elapsed();
    let (worst, pings) = probe.await.unwrap();
    let out = &done["steps"][0]["output"];
    assert_eq!(out["matched"], 60_000, "{out}");
    assert_eq!(out["deleted"], 60_000, "{out}");
    assert_eq!(count(&mut c, "sess:poisoned:*").await, 0);
    assert_eq!(count(&mut c, "sess:ok:*").await, 20_000);
    assert_eq!(count(&mut c, "model:*").await, 20_000);
    let size: u64 = redis::cmd("DBSIZE").query_async(&mut c).await.unwrap();
    assert_eq!(size, 40_000);
    println!(
        "flush of 60k of 100k keys: {:.2}s in {} batches; worst PING during it {:.2} ms over {pings} pings",
        took.as_secs_f64(),
        out["batches"],
        worst.as_secs_f64() * 1e3
    );
}

#[tokio::test]
async fn breakers_open_half_open_close_publish_and_survive_restarts() {
    let Some((_redis, addr)) = start_redis(None).await else {
        return;
    };
    let books = tempfile::tempdir().unwrap();
    let extra = format!(
        "breakers:\n  redis_url: redis://{addr}\n  defaults: {{failure_threshold: 3, recovery_timeout: 1s, half_open_trials: 5}}\n  breakers:\n    - name: llm-api\n    - name: vector-db\n      recovery_timeout: 1h\n"
    );
    // A subscriber sees every transition as it happens.
    let client = redis::Client::open(format!("redis://{addr}")).unwrap();
    let (mut sink, mut stream) = client.get_async_pubsub().await.unwrap().split();
    sink.psubscribe("homeostat:breaker:*").await.unwrap();
    let seen = std::sync::Arc::new(std::sync::Mutex::new(Vec::<serde_json::Value>::new()));
    let s2 = seen.clone();
    let listener = tokio::spawn(async move {
        use futures_util::StreamExt;
        while let Some(m) = stream.next().await {
            let p: String = m.get_payload().unwrap_or_default();
            s2.lock()
                .unwrap()
                .push(serde_json::from_str(&p).unwrap_or_default());
        }
    });
    let mut h = Homeostat::start(&config(books.path(), &extra)).await;
    let base = format!("http://{}/api/v1/breakers/llm-api", h.addr);
    let report = |outcome: &'static str| {
        let url = format!("{base}/report");
        async move {
            reqwest::Client::new()
                .post(url)
                .json(&json!({ "outcome": outcome }))
                .send()
                .await
                .unwrap()
                .json::<serde_json::Value>()
                .await
                .unwrap()
        }
    };
    for _ in 0..2 {
        assert_eq!(report("failure").await["data"]["state"], "closed");
    }
    let v = report("failure").await;
    assert_eq!(
        (v["data"]["state"].as_str(), v["data"]["allow"].as_bool()),
        (Some("open"), Some(false))
    );
    tokio::time::sleep(Duration::from_millis(1300)).await;
    let v = get_json(&base).await;
    assert_eq!(v["data"]["state"], "half_open", "{v}");
    assert_eq!(v["data"]["trials_left"], 5);
    for _ in 0..4 {
        assert_eq!(report("success").await["data"]["state"], "half_open");
    }
    assert_eq!(report("success").await["data"]["state"], "closed");
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        let got: Vec<(String, String)> = seen
            .lock()
            .unwrap()
            .iter()
            .map(|m| {
                (
                    m["from"].as_str().unwrap_or("").into(),
                    m["to"].as_str().unwrap_or("").into(),
                )
            })
            .collect();
        let want: Vec<(String, String)> = [
            ("closed", "open"),
            ("open", "half_open"),
            ("half_open", "closed"),
        ]
        .iter()
        .map(|(a, b)| (a.to_string(), b.to_string()))
        .collect();
        if got == want {
            break;
        }
        assert!(Instant::now() < deadline, "subscriber saw {got:?}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    // Open the other breaker by hand; its state survives a restart.
    let (s, _) = h
        .post("/api/v1/breakers/vector-db/state", json!({"state": "open"}))
        .await;
    assert_eq!(s, 200);
    tokio::time::sleep(Duration::from_millis(300)).await;
    h.restart().await;
    let v = get_json(&format!("http://{}/api/v1/breakers/vector-db", h.addr)).await;
    assert_eq!(v["data"]["state"], "open", "{v}");
    let t = get_json(&format!(
        "http://{}/api/v1/breakers/llm-api/transitions",
        h.addr
    ))
    .await;
    assert_eq!(t["data"].as_array().unwrap().len(), 3, "{t}");
    let metrics = reqwest::get(format!("http://{}/metrics", h.addr))
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(
        metrics.contains("homeostat_breaker_state{breaker=\"vector-db\",state=\"open\"} 1"),
        "{metrics}"
    );
    listener.abort();
}

#[tokio::test]
async fn scale_raises_the_container_app_floor_within_limits() {
    let arm = ArmStandIn::start().await;
    arm.set_provision_delay(Duration::from_millis(500));
    let app = "/subscriptions/sub-1/resourceGroups/rg-1/providers/Microsoft.App/containerApps/llm";
    let books = tempfile::tempdir().unwrap();
    std::fs::write(
        books.path().join("scale.yml"),
        format!(
            "name: scale-llm\ntrigger: {{manual: true}}\nsteps:\n  - name: floor\n    action: scale\n    timeout: 30s\n    params: {{container_app: '{app}', replicas: '{{{{ $labels.step }}}}', min: 1, max: 4, max_step: 2}}\n"
        ),
    )
    .unwrap();
    let extra = format!(
        "collectors:\n  azure:\n    scrape_interval: 30s\n    management_endpoint: {u}\n    authority_host: {u}\n    container_apps: ['{app}']\n",
        u = arm.url()
    );
    let h = Homeostat::start_with_env(
        &config(books.path(), &extra),
        &[
            ("AZURE_CREDENTIAL_KIND", "clientsecret"),
            ("AZURE_TENANT_ID", "tenant-1"),
            ("AZURE_CLIENT_ID", "client-1"),
            ("AZURE_CLIENT_SECRET", "secret-1"),
        ],
    )
    .await;
    assert_eq!(arm.scale_of("llm"), (1, 10));
    // +2 from 1: 3, once ARM says the app is provisioned again.
    let (_, r) = h
        .post(
            "/api/v1/playbooks/scale-llm/run",
            json!({"target": "llm", "labels": {"step": "+2"}}),
        )
        .await;
    let done = h
        .wait_run_state(
            r["data"]["id"].as_str().unwrap(),
            &["succeeded"],
            Duration::from_secs(30),
        )
        .await;
    let out = &done["steps"][0]["output"];
    assert_eq!(
        (out["from"].as_u64(), out["to"].as_u64()),
        (Some(1), Some(3)),
        "{out}"
    );
    assert_eq!(out["provisioning_state"], "Succeeded");
    assert_eq!(arm.scale_of("llm"), (3, 10));
    // x4 would be 12: clamped to max 4, and to max_step 2 from 3 → 4.
    let (_, r) = h
        .post(
            "/api/v1/playbooks/scale-llm/run",
            json!({"target": "llm", "labels": {"step": "x4"}}),
        )
        .await;
    let done = h
        .wait_run_state(
            r["data"]["id"].as_str().unwrap(),
            &["succeeded"],
            Duration::from_secs(30),
        )
        .await;
    assert_eq!(done["steps"][0]["output"]["to"], 4);
    assert!(done["steps"][0]["output"]["limited"]
        .as_str()
        .unwrap()
        .contains("max 4"));
    assert_eq!(arm.scale_of("llm"), (4, 10));
    let patches = arm.patches();
    assert_eq!(patches.len(), 2);
    assert_eq!(
        patches[0]["properties"]["template"]["scale"],
        json!({"minReplicas": 3})
    );
    assert!(arm.violations().is_empty(), "{:?}", arm.violations());
    assert!(arm
        .requests()
        .iter()
        .all(|r| !r.contains("api-version") || r.contains("2023-05-02-preview")));
}
