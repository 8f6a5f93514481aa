//! End-to-end: homeostat and the real Prometheus 2.42 scrape the same targets;
//! the same instant and range queries through both HTTP APIs must give the
//! same label sets and values (within 1e-6 relative). Also checks the request
//! shapes Grafana sends (form POST, RFC 3339 and float times, duration and
//! float steps).

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use homeostat::daemon::{Daemon, RunOptions};
use homeostat_e2e::{start_prometheus, unix_now, Behavior, TestTarget};
use serde_json::Value;

/// Counters grow at exact rates and carry their own timestamps, so every
/// sample either scraper stores lies on the same line and both compute the
/// same rate whenever they scrape; gauges are constant.
fn body(instance: usize) -> String {
    let ms = (unix_now() * 1000.0) as i64;
    let t = ms as f64 / 1000.0;
    let mut s = String::new();
    for (code, rate) in [("200", 10.0), ("500", 0.5)] {
        s.push_str(&format!(
            "app_requests_total{{code=\"{code}\"}} {} {ms}\n",
            rate * t * (instance + 1) as f64
        ));
    }
    let buckets = [("0.1", 2.0), ("0.5", 6.0), ("1", 9.0), ("+Inf", 10.0)];
    for (le, r) in buckets {
        s.push_str(&format!(
            "app_latency_seconds_bucket{{le=\"{le}\"}} {} {ms}\n",
            r * t
        ));
    }
    s.push_str(&format!("app_latency_seconds_count {} {ms}\n", 10.0 * t));
    s.push_str(&format!("app_queue_depth {}\n", 40 + 7 * instance));
    s.push_str(&format!("app_info{{version=\"1.{instance}\"}} 1\n"));
    s
}

async fn api(addr: SocketAddr, path: &str, params: &[(&str, String)]) -> Value {
    let url = format!("http://{addr}{path}");
    let resp = reqwest::Client::new()
        .get(&url)
        .query(params)
        .send()
        .await
        .unwrap();
    resp.json().await.unwrap()
}

/// labels → values of a vector or matrix result (scalars under the key "").
fn by_labels(v: &Value) -> BTreeMap<String, Vec<(f64, f64)>> {
    let data = &v["data"];
    let mut out = BTreeMap::new();
    let parse = |p: &Value| {
        (
            p[0].as_f64().unwrap(),
            p[1].as_str().unwrap().parse::<f64>().unwrap(),
        )
    };
    match data["resultType"].as_str().unwrap_or_default() {
        "scalar" => {
            out.insert(String::new(), vec![parse(&data["result"])]);
        }
        "vector" => {
            for r in data["result"].as_array().unwrap() {
                out.insert(r["metric"].to_string(), vec![parse(&r["value"])]);
            }
        }
        "matrix" => {
            for r in data["result"].as_array().unwrap() {
                out.insert(
                    r["metric"].to_string(),
                    r["values"].as_array().unwrap().iter().map(parse).collect(),
                );
            }
        }
        other => panic!("unexpected result type {other:?} in {v}"),
    }
    out
}

fn close(a: f64, b: f64) -> bool {
    (a.is_nan() && b.is_nan()) || a == b || (a - b).abs() <= 1e-6 * a.abs().max(b.abs())
}

/// Label sets must be equal; values within 1e-6 relative. A value
/// difference is returned (not asserted) so the caller can retry: when one
/// scraper misses a scrape, rate() extrapolates over a different window and
/// both answers are right for their data.
fn compare(query: &str, ours: &Value, theirs: &Value) -> Result<(), String> {
    assert_eq!(ours["status"], "success", "{query}: homeostat said {ours}");
    assert_eq!(
        theirs["status"], "success",
        "{query}: Prometheus said {theirs}"
    );
    assert_eq!(
        ours["data"]["resultType"], theirs["data"]["resultType"],
        "{query}"
    );
    let (a, b) = (by_labels(ours), by_labels(theirs));
    assert_eq!(
        a.keys().collect::<Vec<_>>(),
        b.keys().collect::<Vec<_>>(),
        "{query}: label sets differ\nhomeostat: {ours}\nPrometheus: {theirs}"
    );
    for (k, pa) in &a {
        let pb = &b[k];
        if pa.len() != pb.len() {
            return Err(format!(
                "{query} {k}: point counts differ\nhomeostat: {pa:?}\nPrometheus: {pb:?}"
            ));
        }
        for ((ta, va), (tb, vb)) in pa.iter().zip(pb) {
            assert!(close(*ta, *tb), "{query} {k}: timestamps {ta} vs {tb}");
            if !close(*va, *vb) {
                return Err(format!("{query} {k}: homeostat {va} vs Prometheus {vb}"));
            }
        }
    }
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn answers_match_prometheus() {
    let mut targets = Vec::new();
    for i in 0..3 {
        targets.push(TestTarget::start(Behavior::Generated(Arc::new(move || body(i)))).await);
    }
    let list = targets
        .iter()
        .map(|t| format!("'{}'", t.addr))
        .collect::<Vec<_>>()
        .join(", ");
    let scrape = format!(
        "global:\n  scrape_interval: 1s\n  scrape_timeout: 1s\nscrape_configs:\n  - job_name: app\n    static_configs:\n      - targets: [{list}]\n"
    );
    let Some((_prom, prom)) = start_prometheus(&scrape).await else {
        return;
    };
    let dir = homeostat_e2e::temp_dir();
    let cfg = dir.path().join("homeostat.yaml");
    std::fs::write(&cfg, format!("{scrape}state:\n  path: state.db\n")).unwrap();
    let daemon = Daemon::start(RunOptions {
        config_path: Some(cfg),
        listen: Some("127.0.0.1:0".into()),
    })
    .await
    .unwrap();
    let ours = daemon.addr;
    // Both must have scraped for a while (Prometheus starts slower): the
    // range queries below look back up to 11s before the evaluation time.
    let settled = homeostat_e2e::wait_until(Duration::from_secs(40), || async move {
        let q = [(
            "query",
            "min(count_over_time(app_queue_depth[14s]))".to_string(),
        )];
        let mut ok = true;
        for addr in [ours, prom] {
            let v = api(addr, "/api/v1/query", &q).await;
            let n = v["data"]["result"][0]["value"][1]
                .as_str()
                .and_then(|x| x.parse::<f64>().ok())
                .unwrap_or(0.0);
            ok &= n >= 13.0;
        }
        ok
    })
    .await;
    assert!(
        settled,
        "Prometheus and homeostat did not both collect 14s of samples in time"
    );

    // Every query at one shared evaluation time both have settled data for;
    // up to three evaluation times, in case a missed scrape made one side's
    // rate() window legitimately different (see `compare`).
    let mut attempt = 0;
    let t = loop {
        attempt += 1;
        let t = (unix_now() - 2.0).floor();
        match compare_all(ours, prom, t).await {
            Ok(()) => break t,
            Err(e) if attempt < 3 => {
                eprintln!("retrying at a later time after: {e}");
                tokio::time::sleep(Duration::from_secs(3)).await;
            }
            Err(e) => panic!("{e}"),
        }
    };

    // Errors have Prometheus's shape and status.
    let bad = reqwest::get(format!("http://{ours}/api/v1/query?query=sum("))
        .await
        .unwrap();
    assert_eq!(bad.status(), 400);
    let v: Value = bad.json().await.unwrap();
    assert_eq!(v["errorType"], "bad_data");

    // Grafana's request shapes: form POST; RFC 3339 or float times; duration
    // or float steps. All give the same answer.
    let rfc = |secs: f64| humantime_rfc3339(secs);
    let client = reqwest::Client::new();
    let mut answers = Vec::new();
    for (start, end, step) in [
        (format!("{}", t - 4.0), format!("{t}"), "1s".to_string()),
        (rfc(t - 4.0), rfc(t), "1".to_string()),
        (format!("{}", t - 4.0), rfc(t), "1.0".to_string()),
    ] {
        let form = [
            ("query", "sum(app_queue_depth)".to_string()),
            ("start", start),
            ("end", end),
            ("step", step),
        ];
        let v: Value = client
            .post(format!("http://{ours}/api/v1/query_range"))
            .form(&form)
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        assert_eq!(v["status"], "success", "{v}");
        answers.push(by_labels(&v));
    }
    assert_eq!(answers[0], answers[1]);
    assert_eq!(answers[0], answers[2]);
    assert_eq!(answers[0].values().next().unwrap().len(), 5);

    // Series and label lookups agree with Prometheus too.
    let m = [("match[]", "app_info".to_string())];
    let (a, b) = (
        api(ours, "/api/v1/series", &m).await,
        api(prom, "/api/v1/series", &m).await,
    );
    assert_eq!(a["data"], b["data"]);
    let a = api(ours, "/api/v1/label/code/values", &[]).await;
    let b = api(prom, "/api/v1/label/code/values", &[]).await;
    assert_eq!(a["data"], b["data"]);
    daemon.stop().await.unwrap();
}

async fn compare_all(ours: SocketAddr, prom: SocketAddr, t: f64) -> Result<(), String> {
    let instant = [
        "up",
        "app_queue_depth",
        "sum by (job) (rate(app_requests_total[5s]))",
        "sum by (code) (increase(app_requests_total[6s]))",
        "histogram_quantile(0.9, sum by (le) (rate(app_latency_seconds_bucket[5s])))",
        "app_queue_depth * on (instance) group_left (version) app_info",
        "topk(2, app_queue_depth)",
        "count_values(\"depth\", app_queue_depth)",
        "rate(app_requests_total{code=\"500\"}[5s]) / ignoring (code) rate(app_requests_total{code=\"200\"}[5s])",
        "app_queue_depth > bool 45",
        "avg_over_time(app_queue_depth[5s]) - app_queue_depth",
        "absent(nonexistent_metric{job=\"app\"})",
        "1 + 2 * 3",
        "time()",
        "label_replace(app_info, \"major\", \"$1\", \"version\", \"(\\\\d+)\\\\..*\")",
    ];
    for q in instant {
        let p = [("query", q.to_string()), ("time", format!("{t}"))];
        compare(
            q,
            &api(ours, "/api/v1/query", &p).await,
            &api(prom, "/api/v1/query", &p).await,
        )?;
    }
    let range = [
        "rate(app_requests_total[5s])",
        "sum(app_queue_depth)",
        "max_over_time(app_queue_depth[3s])",
        "scalar(sum(app_queue_depth))",
    ];
    for q in range {
        let p = [
            ("query", q.to_string()),
            ("start", format!("{}", t - 6.0)),
            ("end", format!("{t}")),
            ("step", "1".to_string()),
        ];
        compare(
            q,
            &api(ours, "/api/v1/query_range", &p).await,
            &api(prom, "/api/v1/query_range", &p).await,
        )?;
    }

    Ok(())
}

fn humantime_rfc3339(secs: f64) -> String {
    // Seconds → "YYYY-MM-DDTHH:MM:SSZ" via the civil-from-days algorithm,
    // kept here so the test does not depend on the code it tests.
    let s = secs as i64;
    let days = s.div_euclid(86_400);
    let rem = s.rem_euclid(86_400);
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let y = yoe + era * 400;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = if m <= 2 { y + 1 } else { y };
    format!(
        "{y:04}-{m:02}-{d:02}T{:02}:{:02}:{:02}Z",
        rem / 3600,
        rem % 3600 / 60,
        rem % 60
    )
}
