//! Throughput of the exposition parser on a synthetic but realistic scrape:
//! ~5,000 series (counters, gauges, histograms) with 3-6 labels, ~500 KB.

use std::hint::black_box;

use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use homeostat::collect::exposition::{Entry, Format, Parser};

/// Deterministic body so figures are comparable between runs.
fn build_body() -> (String, u64) {
    use std::fmt::Write;
    let mut s = String::with_capacity(600 * 1024);
    let mut samples = 0u64;
    let methods = ["GET", "POST", "PUT", "DELETE"];
    let codes = ["200", "201", "404", "500"];
    let handlers = [
        "/api/v1/users",
        "/api/v1/orders",
        "/api/v1/items",
        "/healthz",
        "/api/v2/search",
    ];

    // Counters: 5 handlers x 4 methods x 4 codes x 40 instances = 3,200 series.
    s.push_str("# HELP api_http_requests_total Total HTTP requests handled, by handler, method and code.\n");
    s.push_str("# TYPE api_http_requests_total counter\n");
    for inst in 0..40 {
        for (hi, h) in handlers.iter().enumerate() {
            for m in methods {
                for c in codes {
                    let v = (inst * 7919 + hi * 104_729 + c.len() * 31) as u64 * 13 + 123_456;
                    writeln!(
                        s,
                        "api_http_requests_total{{handler=\"{h}/{}\",method=\"{m}\",code=\"{c}\",instance=\"10.0.{}.{}:9100\",job=\"api\"}} {v}",
                        inst % 10,
                        inst / 10,
                        inst % 250 + 1
                    )
                    .unwrap();
                    samples += 1;
                }
            }
        }
    }

    // Gauges: 3 metrics x 200 series, 3 labels, float values.
    for (name, help) in [
        (
            "node_memory_available_bytes",
            "Memory available to userspace.",
        ),
        ("process_open_fds", "Number of open file descriptors."),
        ("node_load1", "1m load average."),
    ] {
        writeln!(s, "# HELP {name} {help}\n# TYPE {name} gauge").unwrap();
        for i in 0..200 {
            writeln!(
                s,
                "{name}{{instance=\"10.0.{}.{}:9100\",job=\"node\",zone=\"eu-west-{}\"}} {}",
                i / 100,
                i % 100,
                i % 3,
                (i as f64) * 1234.5678 + 0.125
            )
            .unwrap();
            samples += 1;
        }
    }

    // Histograms: 80 series x (12 buckets + sum + count), 4-6 labels.
    s.push_str("# HELP api_request_duration_seconds Request latency.\n# TYPE api_request_duration_seconds histogram\n");
    let les = [
        "0.005", "0.01", "0.025", "0.05", "0.1", "0.25", "0.5", "1", "2.5", "5", "10", "+Inf",
    ];
    for i in 0..80 {
        let base = format!(
            "handler=\"{}\",method=\"{}\",instance=\"10.0.1.{}:9100\",job=\"api\"",
            handlers[i % handlers.len()],
            methods[i % methods.len()],
            i
        );
        let mut cum = 0u64;
        for (bi, le) in les.iter().enumerate() {
            cum += (i as u64 + 1) * (bi as u64 + 3);
            writeln!(
                s,
                "api_request_duration_seconds_bucket{{{base},le=\"{le}\"}} {cum}"
            )
            .unwrap();
            samples += 1;
        }
        writeln!(
            s,
            "api_request_duration_seconds_sum{{{base}}} {}",
            cum as f64 * 0.0421
        )
        .unwrap();
        writeln!(s, "api_request_duration_seconds_count{{{base}}} {cum}").unwrap();
        samples += 2;
    }
    (s, samples)
}

fn parse_sum(body: &[u8]) -> f64 {
    let mut sum = 0.0;
    for e in Parser::new(body, Format::Text) {
        if let Entry::Sample(s) = e.expect("bench body is valid") {
            sum += s.value;
            black_box(s.series);
        }
    }
    sum
}

fn parse_with_labels(body: &[u8]) -> (f64, usize) {
    let mut sum = 0.0;
    let mut label_bytes = 0;
    for e in Parser::new(body, Format::Text) {
        if let Entry::Sample(s) = e.expect("bench body is valid") {
            sum += s.value;
            for l in s.labels() {
                let (n, v) = l.expect("bench labels are valid");
                label_bytes += n.len() + v.len();
            }
        }
    }
    (sum, label_bytes)
}

fn bench(c: &mut Criterion) {
    let (body, samples) = build_body();
    let body = body.into_bytes();
    assert_eq!(
        Parser::new(&body, Format::Text)
            .filter(|e| matches!(e, Ok(Entry::Sample(_))))
            .count() as u64,
        samples
    );
    eprintln!("bench body: {} bytes, {} samples", body.len(), samples);

    let mut g = c.benchmark_group("bytes");
    g.throughput(Throughput::Bytes(body.len() as u64));
    g.bench_function("hot_parse", |b| b.iter(|| parse_sum(black_box(&body))));
    g.bench_function("cold_parse_labels", |b| {
        b.iter(|| parse_with_labels(black_box(&body)))
    });
    g.finish();

    let mut g = c.benchmark_group("samples");
    g.throughput(Throughput::Elements(samples));
    g.bench_function("hot_parse", |b| b.iter(|| parse_sum(black_box(&body))));
    g.bench_function("cold_parse_labels", |b| {
        b.iter(|| parse_with_labels(black_box(&body)))
    });
    g.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
