//! Criterion benches: append throughput and select latency at 100k series.

mod common;

use std::hint::black_box;
use std::time::Duration;

use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use homeostat::store::{MatchOp, Matcher};

use common::*;

const N: usize = 100_000;
const START: i64 = 1_700_000_000_000;

fn append(c: &mut Criterion) {
    let (store, refs) = build(N);
    let mut vals = vec![0.0f64; N];
    let mut rng = Rng::new(1);
    let mut k = 0i64;
    let mut g = c.benchmark_group("append");
    g.throughput(Throughput::Elements(N as u64));
    g.sample_size(20).measurement_time(Duration::from_secs(8));
    g.bench_function("100k_series_one_sample_each", |b| {
        b.iter(|| {
            for (i, r) in refs.iter().enumerate() {
                vals[i] = next_value(i, vals[i], &mut rng);
                let t = ts(START, 5000, k, &mut rng);
                let _ = black_box(store.append(*r, t, vals[i]));
            }
            k += 1;
        })
    });
    g.finish();
}

fn select(c: &mut Criterion) {
    // 1h at 10s per series: 360 samples x 100k series.
    let (store, refs) = build(N);
    let mut rng = Rng::new(2);
    let mut vals = vec![0.0f64; N];
    for k in 0..360 {
        for (i, r) in refs.iter().enumerate() {
            vals[i] = next_value(i, vals[i], &mut rng);
            store
                .append(*r, ts(START, 10_000, k, &mut rng), vals[i])
                .unwrap();
        }
    }
    let end = START + 3_600_000;
    let m = |op, n: &str, v: &str| Matcher::new(op, n, v).unwrap();
    let cases: Vec<(&str, Vec<Matcher>)> = vec![
        (
            "name_eq_job_eq",
            vec![
                m(MatchOp::Equal, "__name__", "http_requests_total"),
                m(MatchOp::Equal, "job", "api"),
            ],
        ),
        (
            "name_eq_handler_regex",
            vec![
                m(MatchOp::Equal, "__name__", "http_requests_total"),
                m(MatchOp::RegexMatch, "handler", "/api/v1/.*"),
            ],
        ),
        (
            "name_regex_code_eq",
            vec![
                m(MatchOp::RegexMatch, "__name__", "http_.*"),
                m(MatchOp::Equal, "code", "500"),
            ],
        ),
        (
            "name_eq_instance_regex_neq",
            vec![
                m(MatchOp::Equal, "__name__", "go_goroutines"),
                m(MatchOp::RegexMatch, "instance", "10\\.0\\.1\\..*"),
                m(MatchOp::NotEqual, "method", "POST"),
            ],
        ),
    ];
    let mut g = c.benchmark_group("select_1h");
    g.sample_size(20).measurement_time(Duration::from_secs(4));
    for (name, ms) in &cases {
        let res = store.select(ms, START, end);
        let samples: usize = res.iter().map(|s| s.samples.len()).sum();
        eprintln!("{name}: {} series, {samples} samples", res.len());
        g.bench_function(*name, |b| {
            b.iter(|| black_box(store.select(ms, START, end)))
        });
    }
    // Index-only cost: a range with no data still resolves postings.
    let (_, ms) = &cases[0];
    g.bench_function("name_eq_job_eq_postings_only_series_api", |b| {
        b.iter(|| black_box(store.series(ms, START, end)))
    });
    g.finish();
}

criterion_group!(benches, append, select);
criterion_main!(benches);
