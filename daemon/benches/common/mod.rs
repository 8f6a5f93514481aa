//! Shared bench fixtures: realistic label sets and sample generators.
//! Bench-only; no store internals.
#![allow(dead_code)]

use homeostat::store::{Labels, SeriesRef, Store, StoreConfig};

pub const NAMES: [&str; 20] = [
    "http_requests_total",
    "http_request_duration_seconds_count",
    "http_request_duration_seconds_sum",
    "http_response_size_bytes_count",
    "http_response_size_bytes_sum",
    "rpc_calls_total",
    "rpc_errors_total",
    "rpc_latency_seconds_count",
    "rpc_latency_seconds_sum",
    "db_queries_total",
    "db_query_errors_total",
    "cache_hits_total",
    "cache_misses_total",
    "queue_depth",
    "queue_processed_total",
    "worker_busy",
    "process_cpu_seconds_total",
    "process_resident_memory_bytes",
    "go_goroutines",
    "go_gc_duration_seconds_count",
];
pub const JOBS: [&str; 10] = [
    "api", "web", "db", "cache", "queue", "auth", "search", "billing", "mail", "admin",
];
pub const HANDLERS: [&str; 10] = [
    "/api/v1/query",
    "/api/v1/query_range",
    "/api/v1/series",
    "/api/v1/labels",
    "/api/v1/write",
    "/metrics",
    "/healthz",
    "/login",
    "/static",
    "/",
];
pub const CODES: [&str; 3] = ["200", "404", "500"];

/// Series i of n (n <= 100k stays unique): 20 names x 500 instances x 10
/// handlers; job follows instance; 6 labels in total.
pub fn labels_for(i: usize) -> Labels {
    let name = NAMES[i % 20];
    let rest = i / 20;
    let inst = rest % 500;
    let handler = (rest / 500) % 10;
    Labels::from_pairs([
        ("__name__", name.to_string()),
        ("job", JOBS[inst % 10].to_string()),
        (
            "instance",
            format!("10.0.{}.{}:9100", inst / 256, inst % 256),
        ),
        ("handler", HANDLERS[handler].to_string()),
        (
            "method",
            if handler.is_multiple_of(3) {
                "POST"
            } else {
                "GET"
            }
            .to_string(),
        ),
        ("code", CODES[(rest / 7) % 3].to_string()),
    ])
}

pub fn build(n: usize) -> (Store, Vec<SeriesRef>) {
    let store = Store::new(StoreConfig::default());
    let refs = (0..n)
        .map(|i| store.get_or_create(&labels_for(i)).expect("create"))
        .collect();
    (store, refs)
}

/// xorshift64*: deterministic, dependency-free.
pub struct Rng(u64);
impl Rng {
    pub fn new(seed: u64) -> Self {
        Rng(seed.wrapping_mul(0x9E3779B97F4A7C15) | 1)
    }
    pub fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545F4914F6CDD1D)
    }
    pub fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }
}

/// Per-series value model: busy counter, slow counter, integer gauge,
/// float cpu-seconds counter, small-increment counter.
pub fn next_value(kind: usize, prev: f64, rng: &mut Rng) -> f64 {
    match kind % 5 {
        0 => prev + rng.below(50) as f64,
        1 => prev + if rng.below(10) == 0 { 1.0 } else { 0.0 },
        2 => (prev + rng.below(7) as f64 - 3.0).max(0.0),
        3 => prev + 0.01 * rng.below(20) as f64,
        _ => prev + rng.below(5) as f64,
    }
}

/// Scrape timestamps jitter by a few ms around the 5 s grid.
pub fn ts(start: i64, step: i64, k: i64, rng: &mut Rng) -> i64 {
    start + k * step + rng.below(3) as i64
}
