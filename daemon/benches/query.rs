//! PromQL evaluation over 100k series: the typical alerting queries the issue
//! names, evaluated in-process (no HTTP), one instant query per iteration.
//! `bench/query_side_by_side.py` measures the same kinds of query against
//! Prometheus 2.42 over HTTP.

mod common;

use std::hint::black_box;
use std::time::Duration;

use criterion::{criterion_group, criterion_main, Criterion};
use homeostat::query::{Engine, EngineOptions};
use homeostat::store::{Labels, Store};

use common::*;

const STEP_MS: i64 = 15_000;
const POINTS: i64 = 40; // 10 minutes: enough for [5m] windows

/// 100k series from the shared fixtures plus histogram buckets and an info
/// metric for the join, all with 10 minutes of samples every 15s.
fn populate() -> Store {
    let (store, refs) = build(100_000);
    let mut rng = Rng::new(7);
    let mut vals = vec![0.0f64; refs.len()];
    let mut extra = Vec::new();
    for inst in 0..500 {
        let instance = format!("10.0.{}.{}:9100", inst / 256, inst % 256);
        let job = JOBS[inst % 10];
        for (i, le) in [
            "0.005", "0.01", "0.025", "0.05", "0.1", "0.25", "0.5", "1", "2.5", "5", "10", "+Inf",
        ]
        .iter()
        .enumerate()
        {
            let l = Labels::from_pairs([
                ("__name__", "http_request_duration_seconds_bucket"),
                ("job", job),
                ("instance", &instance),
                ("le", le),
            ]);
            extra.push((store.get_or_create(&l).unwrap(), (i + 1) as f64));
        }
        let l = Labels::from_pairs([
            ("__name__", "build_info"),
            ("job", job),
            ("instance", &instance),
            ("version", "1.2.3"),
        ]);
        extra.push((store.get_or_create(&l).unwrap(), 0.0));
    }
    for k in 0..POINTS {
        let t = k * STEP_MS;
        for (i, r) in refs.iter().enumerate() {
            vals[i] = next_value(i % 5, vals[i], &mut rng);
            let _ = store.append(*r, t, vals[i]);
        }
        for (r, slope) in &extra {
            let v = if *slope == 0.0 {
                1.0
            } else {
                slope * k as f64 * 3.0
            };
            let _ = store.append(*r, t, v);
        }
    }
    store
}

fn bench(c: &mut Criterion) {
    let store = populate();
    let engine = Engine::new(EngineOptions::default());
    let at = (POINTS - 1) * STEP_MS;
    let queries = [
        ("sum_by_job_rate", "sum by (job) (rate(http_requests_total[5m]))"),
        ("histogram_quantile_p95", "histogram_quantile(0.95, sum by (le) (rate(http_request_duration_seconds_bucket[5m])))"),
        ("group_left_join", "sum by (job, instance) (rate(http_requests_total[5m])) * on (job, instance) group_left (version) build_info"),
        ("topk", "topk(10, rate(http_requests_total[5m]))"),
    ];
    let mut g = c.benchmark_group("promql_100k_series");
    g.measurement_time(Duration::from_secs(5)).sample_size(20);
    for (name, q) in queries {
        let n = match engine.instant_query(&store, q, at).expect(q).value {
            homeostat::query::QueryValue::Vector(v) => v.len(),
            _ => 0,
        };
        println!("{name}: {n} result series");
        g.bench_function(name, |b| {
            b.iter(|| black_box(engine.instant_query(&store, q, at).expect(q)))
        });
    }
    g.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
