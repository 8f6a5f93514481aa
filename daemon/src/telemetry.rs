//! homeostat's own metrics, exposed at `/metrics` through prometheus-client.
//!
//! The registry is built once at start. Each stage gets a cheap clone of the
//! handles it updates (`ScrapeMetrics`, `ConfigMetrics`); figures that already
//! live elsewhere (store statistics, process CPU and memory) are read at
//! exposition time by collectors, so they are never stale and never doubled.
//! Names follow `homeostat_<stage>_<name>_<unit>[_total]`.

use std::fmt;
use std::sync::atomic::AtomicU64;
use std::sync::Arc;
use std::time::Duration;

use prometheus_client::collector::Collector;
use prometheus_client::encoding::{DescriptorEncoder, EncodeLabelSet, EncodeMetric};
use prometheus_client::metrics::counter::{ConstCounter, Counter};
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::{ConstGauge, Gauge};
use prometheus_client::metrics::histogram::Histogram;
use prometheus_client::metrics::info::Info;
use prometheus_client::registry::Registry;

use crate::collect::RoundReport;
use crate::store::Store;

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct JobLabels {
    pub job: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct JobResultLabels {
    pub job: String,
    pub result: &'static str,
}

/// Handles the scrape loops update.
#[derive(Clone)]
pub struct ScrapeMetrics {
    duration: Family<JobLabels, Histogram>,
    scrapes: Family<JobResultLabels, Counter>,
    samples: Family<JobLabels, Counter>,
    out_of_order: Family<JobLabels, Counter>,
    targets: Family<JobLabels, Gauge>,
}

impl ScrapeMetrics {
    fn new() -> Self {
        ScrapeMetrics {
            duration: Family::new_with_constructor(|| {
                Histogram::new([
                    0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0,
                ])
            }),
            scrapes: Family::default(),
            samples: Family::default(),
            out_of_order: Family::default(),
            targets: Family::default(),
        }
    }

    pub fn observe(&self, job: &str, elapsed: Duration, ok: bool, r: &RoundReport) {
        let jl = JobLabels {
            job: job.to_string(),
        };
        self.duration
            .get_or_create(&jl)
            .observe(elapsed.as_secs_f64());
        self.scrapes
            .get_or_create(&JobResultLabels {
                job: job.to_string(),
                result: if ok { "success" } else { "failure" },
            })
            .inc();
        self.samples
            .get_or_create(&jl)
            .inc_by(r.samples_post_relabel);
        if r.out_of_order + r.duplicates > 0 {
            self.out_of_order
                .get_or_create(&jl)
                .inc_by(r.out_of_order + r.duplicates);
        }
    }

    pub fn set_targets(&self, job: &str, n: usize) {
        self.targets
            .get_or_create(&JobLabels {
                job: job.to_string(),
            })
            .set(n as i64);
    }
}

/// Handles the config loader updates.
#[derive(Clone, Default)]
pub struct ConfigMetrics {
    pub last_reload_successful: Gauge,
    pub last_reload_success_timestamp: Gauge<f64, AtomicU64>,
}

/// Every metric homeostat exposes about itself.
pub struct Telemetry {
    pub registry: Registry,
    pub scrape: ScrapeMetrics,
    pub config: ConfigMetrics,
}

impl Telemetry {
    pub fn new(store: Arc<Store>) -> Self {
        let mut registry = Registry::default();
        let scrape = ScrapeMetrics::new();
        let config = ConfigMetrics::default();
        registry.register(
            "homeostat_build",
            "Build information: version, git revision, compiler.",
            Info::new(vec![
                ("version", env!("CARGO_PKG_VERSION").to_string()),
                ("revision", crate::BUILD_REVISION.to_string()),
                ("rustc", crate::RUSTC_VERSION.to_string()),
            ]),
        );
        registry.register(
            "homeostat_config_last_reload_successful",
            "Whether the last configuration reload attempt was successful (1) or not (0).",
            config.last_reload_successful.clone(),
        );
        registry.register(
            "homeostat_config_last_reload_success_timestamp_seconds",
            "Unix time of the last successful configuration reload.",
            config.last_reload_success_timestamp.clone(),
        );
        registry.register(
            "homeostat_scrape_duration_seconds",
            "Time taken by each scrape, per job.",
            scrape.duration.clone(),
        );
        registry.register(
            "homeostat_scrapes",
            "Scrapes performed, per job and result (success, failure).",
            scrape.scrapes.clone(),
        );
        registry.register(
            "homeostat_scrape_samples",
            "Samples ingested by scrapes after metric relabeling, per job.",
            scrape.samples.clone(),
        );
        registry.register(
            "homeostat_scrape_samples_rejected",
            "Scraped samples rejected as out of order or duplicate timestamps, per job.",
            scrape.out_of_order.clone(),
        );
        registry.register(
            "homeostat_scrape_targets",
            "Active scrape targets, per job.",
            scrape.targets.clone(),
        );
        registry.register_collector(Box::new(StoreCollector { store }));
        registry.register_collector(Box::new(ProcessCollector::new()));
        Telemetry {
            registry,
            scrape,
            config,
        }
    }

    /// The OpenMetrics text for `/metrics`.
    pub fn encode(&self) -> Result<String, fmt::Error> {
        let mut out = String::with_capacity(16 * 1024);
        prometheus_client::encoding::text::encode(&mut out, &self.registry)?;
        Ok(out)
    }
}

fn gauge(enc: &mut DescriptorEncoder, name: &str, help: &str, v: f64) -> fmt::Result {
    let g = ConstGauge::new(v);
    g.encode(enc.encode_descriptor(name, help, None, g.metric_type())?)
}

fn counter(enc: &mut DescriptorEncoder, name: &str, help: &str, v: u64) -> fmt::Result {
    let c = ConstCounter::new(v);
    c.encode(enc.encode_descriptor(name, help, None, c.metric_type())?)
}

/// Store statistics, read when `/metrics` is scraped.
#[derive(Debug)]
struct StoreCollector {
    store: Arc<Store>,
}

impl Collector for StoreCollector {
    fn encode(&self, mut enc: DescriptorEncoder) -> fmt::Result {
        let s = self.store.stats();
        gauge(
            &mut enc,
            "homeostat_store_series",
            "Series held in memory.",
            s.num_series as f64,
        )?;
        gauge(
            &mut enc,
            "homeostat_store_series_limit",
            "Configured maximum number of series (storage.max_series).",
            self.store.max_series() as f64,
        )?;
        counter(
            &mut enc,
            "homeostat_store_samples_appended",
            "Samples appended to the store.",
            s.samples_appended_total,
        )?;
        counter(
            &mut enc,
            "homeostat_store_out_of_order_samples",
            "Samples rejected because they were older than the series' newest sample.",
            s.out_of_order_total,
        )?;
        counter(
            &mut enc,
            "homeostat_store_duplicate_samples",
            "Samples rejected because their timestamp was taken with a different value.",
            s.duplicate_total,
        )?;
        counter(
            &mut enc,
            "homeostat_store_series_limit_rejections",
            "New series refused because storage.max_series was reached. Non-zero means data is being lost: raise the limit or drop series with metric_relabel_configs.",
            s.series_limit_rejections_total,
        )?;
        gauge(
            &mut enc,
            "homeostat_store_chunks",
            "Compressed sample chunks held in memory.",
            s.chunks as f64,
        )?;
        gauge(
            &mut enc,
            "homeostat_store_memory_bytes",
            "Estimated bytes used by series, index and chunks.",
            s.memory_bytes as f64,
        )?;
        Ok(())
    }
}

/// The standard `process_*` metrics, read from /proc.
#[derive(Debug)]
struct ProcessCollector {
    ticks_per_sec: f64,
    page_size: f64,
    boot_time: f64,
}

impl ProcessCollector {
    fn new() -> Self {
        // SAFETY: sysconf only reads a system constant.
        let (ticks, page) = unsafe {
            (
                libc::sysconf(libc::_SC_CLK_TCK),
                libc::sysconf(libc::_SC_PAGESIZE),
            )
        };
        let boot_time = std::fs::read_to_string("/proc/stat")
            .ok()
            .and_then(|s| {
                s.lines()
                    .find_map(|l| l.strip_prefix("btime ").and_then(|v| v.trim().parse().ok()))
            })
            .unwrap_or(0.0);
        ProcessCollector {
            ticks_per_sec: if ticks > 0 { ticks as f64 } else { 100.0 },
            page_size: if page > 0 { page as f64 } else { 4096.0 },
            boot_time,
        }
    }
}

impl ProcessCollector {
    fn read(&self) -> Option<(f64, f64, f64, f64, f64)> {
        let stat = std::fs::read_to_string("/proc/self/stat").ok()?;
        // Fields after the parenthesised command name, which may hold spaces.
        let rest = &stat[stat.rfind(')')? + 2..];
        let f: Vec<&str> = rest.split_whitespace().collect();
        let num = |i: usize| f.get(i).and_then(|v| v.parse::<f64>().ok()).unwrap_or(0.0);
        // Indexes are the proc(5) field numbers minus 3.
        let cpu = (num(11) + num(12)) / self.ticks_per_sec;
        let threads = num(17);
        let start = self.boot_time + num(19) / self.ticks_per_sec;
        let vsz = num(20);
        let rss = num(21) * self.page_size;
        Some((cpu, rss, vsz, start, threads))
    }
}

impl Collector for ProcessCollector {
    fn encode(&self, mut enc: DescriptorEncoder) -> fmt::Result {
        if let Some((cpu, rss, vsz, start, threads)) = self.read() {
            let c = ConstCounter::new(cpu);
            c.encode(enc.encode_descriptor(
                "process_cpu_seconds",
                "Total user and system CPU time spent in seconds.",
                None,
                c.metric_type(),
            )?)?;
            gauge(
                &mut enc,
                "process_resident_memory_bytes",
                "Resident memory size in bytes.",
                rss,
            )?;
            gauge(
                &mut enc,
                "process_virtual_memory_bytes",
                "Virtual memory size in bytes.",
                vsz,
            )?;
            gauge(
                &mut enc,
                "process_start_time_seconds",
                "Start time of the process since unix epoch in seconds.",
                start,
            )?;
            gauge(
                &mut enc,
                "process_threads",
                "Number of OS threads in the process.",
                threads,
            )?;
        }
        if let Ok(d) = std::fs::read_dir("/proc/self/fd") {
            gauge(
                &mut enc,
                "process_open_fds",
                "Number of open file descriptors.",
                d.count() as f64,
            )?;
        }
        Ok(())
    }
}
