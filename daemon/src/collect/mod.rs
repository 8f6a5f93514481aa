//! The collect stage: everything that turns the outside world into samples.
//!
//! One trait, [`Collector`], is the extension point: a collector fills a
//! [`ScrapeBatch`] once per round and knows nothing else. Everything around it is
//! written once here, as Prometheus's scrape loop does it: the interval and its
//! per-target offset, the timeout, the synthetic series (`up`,
//! `scrape_duration_seconds`, `scrape_samples_scraped`,
//! `scrape_samples_post_metric_relabeling`, `scrape_series_added`), the
//! per-target series cache, target labels with `honor_labels`,
//! `metric_relabel_configs`, staleness markers, and target health for
//! `/api/v1/targets`.
//!
//! This stage writes to the store and to its own health records; it never reads
//! the store and never evaluates rules.

pub mod azure;
pub mod azure_read;
pub mod cgroup;
pub mod discovery;
pub mod exposition;
pub mod gpu;
pub mod manager;
pub mod native;
pub mod nvml_read;
pub mod postgres;
pub mod probe;
pub mod prometheus;
pub mod redis;
pub mod relabel;

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use parking_lot::Mutex;
use rustc_hash::{FxHashMap, FxHashSet};
use tokio_util::sync::CancellationToken;

use crate::store::{stale_nan, AppendError, Labels, SeriesRef, Store};
use crate::telemetry::ScrapeMetrics;

pub use manager::{ScrapeManager, TargetRegistry};

/// Why one round of collection failed. The message becomes the target's
/// `lastError`, so it is written for the on-call engineer reading it.
#[derive(Debug, thiserror::Error)]
pub enum CollectError {
    #[error("{0}")]
    Http(String),
    #[error("server returned HTTP status {0}")]
    Status(String),
    #[error("body size limit exceeded: the target sent more than {limit} bytes")]
    BodyTooLarge { limit: u64 },
    #[error("{0}")]
    Parse(#[from] exposition::ParseError),
    #[error("invalid label set: {0}")]
    Labels(String),
    #[error("scrape timed out after {0:?}")]
    Timeout(Duration),
    #[error("{0}")]
    Other(String),
}

/// A source of samples: a Prometheus endpoint, a GPU, a database.
///
/// Implementations only produce samples for one round; they are driven by a
/// [`ScrapeLoop`], which owns timing, timeouts, health and staleness.
pub trait Collector: Send + 'static {
    fn collect(
        &mut self,
        out: &mut ScrapeBatch<'_>,
    ) -> impl Future<Output = Result<(), CollectError>> + Send;
}

/// [`Collector`] behind a pointer, so one scrape manager can run collectors of
/// different kinds side by side. Every `Collector` is one.
pub trait DynCollector: Send + 'static {
    fn collect_boxed<'a>(
        &'a mut self,
        out: &'a mut ScrapeBatch<'_>,
    ) -> Pin<Box<dyn Future<Output = Result<(), CollectError>> + Send + 'a>>;
}

impl<C: Collector> DynCollector for C {
    fn collect_boxed<'a>(
        &'a mut self,
        out: &'a mut ScrapeBatch<'_>,
    ) -> Pin<Box<dyn Future<Output = Result<(), CollectError>> + Send + 'a>> {
        Box::pin(self.collect(out))
    }
}

/// A boxed collector is driven like any other.
pub struct BoxedCollector(pub Box<dyn DynCollector>);

impl Collector for BoxedCollector {
    async fn collect(&mut self, out: &mut ScrapeBatch<'_>) -> Result<(), CollectError> {
        self.0.collect_boxed(out).await
    }
}

/// The labels a loop puts on everything it collects, and how conflicts with
/// the collected labels are resolved.
#[derive(Debug, Clone)]
pub struct LabelShaping {
    /// Target labels (`job`, `instance`, static and discovered labels), sorted.
    pub target: Vec<(String, String)>,
    /// Keep collected labels on conflict (`honor_labels: true`) instead of
    /// renaming them to `exported_<name>`.
    pub honor_labels: bool,
    /// Use timestamps the target exposes (`honor_timestamps`, default true).
    pub honor_timestamps: bool,
    pub metric_relabel: Vec<relabel::Relabeler>,
}

impl LabelShaping {
    /// Merges target labels into `collected` and applies metric relabeling;
    /// `None` when a rule dropped the series.
    fn shape(&self, mut collected: Vec<(String, String)>) -> Option<Labels> {
        for (name, value) in &self.target {
            match collected.iter().position(|(n, _)| n == name) {
                Some(i) if self.honor_labels => {
                    // An empty exposed value means "absent": the target's wins.
                    if collected[i].1.is_empty() {
                        collected[i].1 = value.clone();
                    }
                }
                Some(i) => {
                    let exported = std::mem::take(&mut collected[i].1);
                    collected[i].1 = value.clone();
                    let mut ename = format!("exported_{name}");
                    while collected.iter().any(|(n, _)| *n == ename) {
                        ename = format!("exported_{ename}");
                    }
                    collected.push((ename, exported));
                }
                None => collected.push((name.clone(), value.clone())),
            }
        }
        if !relabel::apply(&self.metric_relabel, &mut collected) {
            return None;
        }
        collected.retain(|(_, v)| !v.is_empty());
        if collected.is_empty() {
            return None;
        }
        Some(Labels::from_pairs(collected))
    }
}

#[derive(Debug, Clone, Copy)]
struct CacheEntry {
    /// `None`: dropped by relabeling; remembered so it is not re-evaluated.
    series: Option<SeriesRef>,
    last_seen: u64,
    explicit_ts: bool,
}

/// Per-target memory of series seen before: raw series text → store ref. The
/// common scrape hits this map for every sample and never builds labels.
#[derive(Default)]
pub struct SeriesCache {
    entries: FxHashMap<Box<[u8]>, CacheEntry>,
    /// Metric names this target has written (a superset: names of series
    /// that went away stay until the cache is cleared). Rules use it to
    /// know which scrapes can change their result.
    names: FxHashSet<Arc<str>>,
    names_changed: bool,
}

impl SeriesCache {
    fn clear(&mut self) {
        self.entries.clear();
        self.names.clear();
        self.names_changed = true;
    }
}

/// Sent after every scrape round, so stages that read what scrapes write
/// (rule evaluation) can react at once instead of on their own timer.
#[derive(Clone, Debug)]
pub struct ScrapeEvent {
    pub job: Arc<str>,
    /// Metric names the target's last rounds wrote, synthetic series included.
    pub names: Arc<FxHashSet<Arc<str>>>,
}

/// Names of the series every scrape writes besides the target's own.
pub const SYNTHETIC_NAMES: [&str; 5] = [
    "up",
    "scrape_duration_seconds",
    "scrape_samples_scraped",
    "scrape_samples_post_metric_relabeling",
    "scrape_series_added",
];

struct Pending {
    series: SeriesRef,
    t: i64,
    v: f64,
}

/// Samples of one round, staged until the round succeeds (a failed scrape
/// must not leave half its samples behind, as in Prometheus).
pub struct ScrapeBatch<'a> {
    store: &'a Store,
    shaping: &'a LabelShaping,
    cache: &'a mut SeriesCache,
    pending: &'a mut Vec<Pending>,
    iteration: u64,
    ts: i64,
    scraped: u64,
    post_relabel: u64,
    added: u64,
    series_limit_hits: u64,
    warning: Option<String>,
}

impl ScrapeBatch<'_> {
    /// Records a problem that did not fail the round (a failed probe, a GPU
    /// field that could not be read). It becomes the target's last error in
    /// `/api/v1/targets` while the target stays up.
    pub fn warn(&mut self, message: String) {
        match &mut self.warning {
            Some(w) => {
                w.push_str("; ");
                w.push_str(&message);
            }
            None => self.warning = Some(message),
        }
    }

    /// The round's timestamp (ms): samples without their own timestamp get it.
    pub fn timestamp_ms(&self) -> i64 {
        self.ts
    }

    /// Adds one sample. `key` identifies the series within this target between
    /// rounds (the raw exposition text for scraped series); `labels` is called
    /// only the first time a key is seen and must push the series' labels,
    /// including `__name__`.
    pub fn add_with<F>(
        &mut self,
        key: &[u8],
        labels: F,
        ts: Option<i64>,
        value: f64,
    ) -> Result<(), CollectError>
    where
        F: FnOnce(&mut Vec<(String, String)>) -> Result<(), CollectError>,
    {
        self.scraped += 1;
        let ts = if self.shaping.honor_timestamps {
            ts
        } else {
            None
        };
        let entry = match self.cache.entries.get_mut(key) {
            Some(e) => {
                e.last_seen = self.iteration;
                e.explicit_ts = ts.is_some();
                *e
            }
            None => {
                let mut raw = Vec::with_capacity(8);
                labels(&mut raw)?;
                let series = match self.shaping.shape(raw) {
                    None => None,
                    Some(l) => match self.store.get_or_create(&l) {
                        Ok(r) => {
                            self.added += 1;
                            if let Some(n) = l.metric_name() {
                                if !self.cache.names.contains(n) {
                                    self.cache.names.insert(Arc::from(n));
                                    self.cache.names_changed = true;
                                }
                            }
                            Some(r)
                        }
                        Err(AppendError::SeriesLimit { .. }) => {
                            // Not cached: it is retried once the store has room.
                            self.series_limit_hits += 1;
                            return Ok(());
                        }
                        Err(e) => return Err(CollectError::Other(e.to_string())),
                    },
                };
                let e = CacheEntry {
                    series,
                    last_seen: self.iteration,
                    explicit_ts: ts.is_some(),
                };
                self.cache.entries.insert(key.into(), e);
                e
            }
        };
        if let Some(series) = entry.series {
            self.post_relabel += 1;
            self.pending.push(Pending {
                series,
                t: ts.unwrap_or(self.ts),
                v: value,
            });
        }
        Ok(())
    }

    /// Adds a sample from a native collector, keyed by its label pairs.
    pub fn add(
        &mut self,
        name: &str,
        labels: &[(&str, &str)],
        value: f64,
    ) -> Result<(), CollectError> {
        let mut key = Vec::with_capacity(64);
        key.extend_from_slice(name.as_bytes());
        for (n, v) in labels {
            key.push(0xff);
            key.extend_from_slice(n.as_bytes());
            key.push(0xfe);
            key.extend_from_slice(v.as_bytes());
        }
        self.add_with(
            &key,
            |out| {
                out.push(("__name__".into(), name.into()));
                out.extend(labels.iter().map(|(n, v)| (n.to_string(), v.to_string())));
                Ok(())
            },
            None,
            value,
        )
    }
}

/// What one round did, for the synthetic series and health.
#[derive(Debug, Clone, Default)]
pub struct RoundReport {
    pub samples_scraped: u64,
    pub samples_post_relabel: u64,
    pub series_added: u64,
    pub out_of_order: u64,
    pub duplicates: u64,
    pub series_limit_hits: u64,
}

/// What a target says about a metric family (`# TYPE`, `# HELP`, `# UNIT`).
#[derive(Debug, Clone, Default, PartialEq, Eq, PartialOrd, Ord)]
pub struct MetricMeta {
    pub kind: String,
    pub help: String,
    pub unit: String,
}

/// Metric family name → metadata, as last scraped from one target.
pub type MetadataMap = std::collections::BTreeMap<String, MetricMeta>;

/// Health of one target, as `/api/v1/targets` shows it.
#[derive(Debug, Clone, Default)]
pub struct TargetHealth {
    /// Shared with the collector, which replaces it after each good scrape.
    pub metadata: Arc<Mutex<MetadataMap>>,
    pub scrape_pool: String,
    pub scrape_url: String,
    pub discovered_labels: Vec<(String, String)>,
    pub labels: Vec<(String, String)>,
    pub health: Health,
    pub last_error: String,
    pub last_scrape: Option<SystemTime>,
    pub last_scrape_duration: Duration,
    pub last_samples: u64,
    pub interval: Duration,
    pub timeout: Duration,
    /// Which part of the platform the target belongs to (`gpu`, `postgres`,
    /// `redis`, `containers`, `probes`, `inference`, `other`), for the
    /// dashboard's overview.
    pub group: &'static str,
}

impl TargetHealth {
    pub fn group(&self) -> &'static str {
        if self.group.is_empty() {
            "other"
        } else {
            self.group
        }
    }
}

/// The group of a scraped (not native) job: inference servers are
/// Prometheus targets, recognised by their job's name.
pub fn scrape_group(job: &str) -> &'static str {
    let j = job.to_ascii_lowercase();
    if ["vllm", "tgi", "triton", "inference", "llm", "model"]
        .iter()
        .any(|k| j.contains(k))
    {
        "inference"
    } else {
        "other"
    }
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum Health {
    #[default]
    Unknown,
    Up,
    Down,
}

impl Health {
    pub fn as_str(self) -> &'static str {
        match self {
            Health::Unknown => "unknown",
            Health::Up => "up",
            Health::Down => "down",
        }
    }
}

/// Why a loop ends: only a target that is gone gets staleness markers; a loop
/// replaced by a reload hands over to its successor without a gap.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StopReason {
    TargetGone,
    Replaced,
    Shutdown,
}

pub fn now_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or(0)
}

/// Drives one [`Collector`] for one target.
pub struct ScrapeLoop<C: Collector> {
    pub collector: C,
    pub store: Arc<Store>,
    pub shaping: LabelShaping,
    pub interval: Duration,
    pub timeout: Duration,
    /// Where in each interval this target is scraped, so that many targets do
    /// not all fire at once.
    pub offset: Duration,
    pub health: Arc<Mutex<TargetHealth>>,
    pub metrics: ScrapeMetrics,
    pub job: String,
    /// Where to announce finished rounds; `None` when nobody listens.
    pub events: Option<tokio::sync::broadcast::Sender<ScrapeEvent>>,
    event_names: Arc<FxHashSet<Arc<str>>>,
    cache: SeriesCache,
    pending: Vec<Pending>,
    synthetic: FxHashMap<&'static str, SeriesRef>,
    iteration: u64,
    last_ts: i64,
}

impl<C: Collector> ScrapeLoop<C> {
    #[allow(clippy::too_many_arguments)]
    pub fn new(
        collector: C,
        store: Arc<Store>,
        shaping: LabelShaping,
        job: String,
        interval: Duration,
        timeout: Duration,
        offset: Duration,
        health: Arc<Mutex<TargetHealth>>,
        metrics: ScrapeMetrics,
    ) -> Self {
        ScrapeLoop {
            collector,
            store,
            shaping,
            interval,
            timeout,
            offset,
            health,
            metrics,
            job,
            events: None,
            event_names: Arc::default(),
            cache: SeriesCache::default(),
            pending: Vec::new(),
            synthetic: FxHashMap::default(),
            iteration: 0,
            last_ts: 0,
        }
    }

    /// Runs until `stop` is cancelled; `reason` is read at that moment.
    pub async fn run(mut self, stop: CancellationToken, reason: Arc<Mutex<StopReason>>) {
        // First tick at the next point in wall-clock time that is `offset` into
        // an interval, so the schedule is stable across restarts.
        let interval_ms = self.interval.as_millis().max(1) as i64;
        let now = now_ms();
        let offset_ms = self.offset.as_millis() as i64;
        let mut first = now - now.rem_euclid(interval_ms) + offset_ms;
        if first < now {
            first += interval_ms;
        }
        let start = tokio::time::Instant::now() + Duration::from_millis((first - now) as u64);
        let mut ticker = tokio::time::interval_at(start, self.interval);
        ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Skip);
        loop {
            tokio::select! {
                _ = stop.cancelled() => break,
                _ = ticker.tick() => {}
            }
            let ts = self.aligned(now_ms());
            tokio::select! {
                _ = stop.cancelled() => break,
                _ = self.round(ts) => {}
            }
        }
        if *reason.lock() == StopReason::TargetGone {
            self.mark_all_stale(now_ms());
        }
    }

    /// Snaps a scrape time that is within 2ms of the schedule onto it, as
    /// Prometheus does (`scrape.timestamp-tolerance`): regular timestamps
    /// compress to almost nothing, and nothing queries at millisecond scale.
    fn aligned(&mut self, now: i64) -> i64 {
        const TOLERANCE_MS: i64 = 2;
        let interval = self.interval.as_millis() as i64;
        let expected = self.last_ts + interval;
        let ts = if self.last_ts > 0
            && interval > 100 * TOLERANCE_MS
            && (now - expected).abs() <= TOLERANCE_MS
        {
            expected
        } else {
            now
        };
        self.last_ts = ts;
        ts
    }

    /// One scrape at wall-clock time `ts` (ms). Public so tests can drive time.
    pub async fn round(&mut self, ts: i64) -> Result<RoundReport, CollectError> {
        self.iteration += 1;
        let started = Instant::now();
        self.pending.clear();
        let mut batch = ScrapeBatch {
            store: &self.store,
            shaping: &self.shaping,
            cache: &mut self.cache,
            pending: &mut self.pending,
            iteration: self.iteration,
            ts,
            scraped: 0,
            post_relabel: 0,
            added: 0,
            series_limit_hits: 0,
            warning: None,
        };
        let result =
            match tokio::time::timeout(self.timeout, self.collector.collect(&mut batch)).await {
                Ok(r) => r,
                Err(_) => Err(CollectError::Timeout(self.timeout)),
            };
        let mut report = RoundReport {
            samples_scraped: batch.scraped,
            samples_post_relabel: batch.post_relabel,
            series_added: batch.added,
            series_limit_hits: batch.series_limit_hits,
            ..Default::default()
        };
        let warning = batch.warning.take();
        let elapsed = started.elapsed();
        match &result {
            Ok(()) => {
                let mut forgotten = Vec::new();
                for p in &self.pending {
                    match self.store.append(p.series, p.t, p.v) {
                        Ok(()) => {}
                        Err(AppendError::OutOfOrder) => report.out_of_order += 1,
                        Err(AppendError::DuplicateTimestamp) => report.duplicates += 1,
                        // Retention deleted a series this target had not written
                        // for its whole window; the next round re-creates it.
                        Err(AppendError::UnknownSeries) => forgotten.push(p.series),
                        Err(_) => {}
                    }
                }
                if !forgotten.is_empty() {
                    self.cache
                        .entries
                        .retain(|_, e| !e.series.is_some_and(|r| forgotten.contains(&r)));
                }
                self.stale_unseen(ts);
            }
            Err(_) => {
                // Prometheus semantics: a failed scrape makes every series of the
                // last good scrape stale, and counts as zero samples.
                self.mark_series_stale(ts);
                report = RoundReport::default();
            }
        }
        self.pending.clear();
        let up = if result.is_ok() { 1.0 } else { 0.0 };
        self.append_synthetic(ts, up, elapsed, &report);
        self.metrics
            .observe(&self.job, elapsed, result.is_ok(), &report);
        let (was_down, old_error) = {
            let h = self.health.lock();
            (h.health == Health::Down, h.last_error.clone())
        };
        {
            let mut h = self.health.lock();
            h.health = if result.is_ok() {
                Health::Up
            } else {
                Health::Down
            };
            h.last_error = match &result {
                Err(e) => e.to_string(),
                Ok(()) => warning.unwrap_or_default(),
            };
            h.last_scrape = Some(UNIX_EPOCH + Duration::from_millis(ts.max(0) as u64));
            h.last_scrape_duration = elapsed;
            h.last_samples = report.samples_scraped;
        }
        // Said once per change, not every round: a GPU-less host or a
        // database that is down for an hour must not flood the log.
        let url = self.health.lock().scrape_url.clone();
        match &result {
            Err(e) if !was_down || old_error != e.to_string() => {
                tracing::warn!(job = %self.job, target = %url, error = %e, "target is down");
            }
            Err(e) => tracing::debug!(job = %self.job, target = %url, error = %e, "scrape failed"),
            Ok(()) if was_down => {
                tracing::info!(job = %self.job, target = %url, "target is up again")
            }
            Ok(()) => {}
        }
        self.announce();
        result.map(|()| report)
    }

    fn announce(&mut self) {
        let Some(tx) = &self.events else { return };
        if self.cache.names_changed || self.event_names.is_empty() {
            let mut names = self.cache.names.clone();
            names.extend(SYNTHETIC_NAMES.iter().map(|n| Arc::from(*n)));
            self.event_names = Arc::new(names);
            self.cache.names_changed = false;
        }
        // No receiver is fine: nothing evaluates on scrapes right now.
        let _ = tx.send(ScrapeEvent {
            job: Arc::from(self.job.as_str()),
            names: self.event_names.clone(),
        });
    }

    fn stale_unseen(&mut self, ts: i64) {
        let iteration = self.iteration;
        let store = &self.store;
        self.cache.entries.retain(|_, e| {
            if e.last_seen == iteration {
                return true;
            }
            // Series with their own timestamps are never marked stale: their
            // owner decides their time.
            if let (Some(r), false) = (e.series, e.explicit_ts) {
                let _ = store.append(r, ts, stale_nan());
            }
            false
        });
    }

    fn mark_series_stale(&mut self, ts: i64) {
        for e in self.cache.entries.values() {
            if let (Some(r), false) = (e.series, e.explicit_ts) {
                let _ = self.store.append(r, ts, stale_nan());
            }
        }
        self.cache.clear();
    }

    fn mark_all_stale(&mut self, ts: i64) {
        self.mark_series_stale(ts);
        for r in self.synthetic.values() {
            let _ = self.store.append(*r, ts, stale_nan());
        }
    }

    fn append_synthetic(&mut self, ts: i64, up: f64, elapsed: Duration, report: &RoundReport) {
        let values: [(&'static str, f64); 5] = [
            ("up", up),
            ("scrape_duration_seconds", elapsed.as_secs_f64()),
            ("scrape_samples_scraped", report.samples_scraped as f64),
            (
                "scrape_samples_post_metric_relabeling",
                report.samples_post_relabel as f64,
            ),
            ("scrape_series_added", report.series_added as f64),
        ];
        for (name, v) in values {
            let r = match self.synthetic.get(name) {
                Some(r) => *r,
                None => {
                    let mut pairs = self.shaping.target.clone();
                    pairs.push(("__name__".into(), name.into()));
                    match self.store.get_or_create(&Labels::from_pairs(pairs)) {
                        Ok(r) => {
                            self.synthetic.insert(name, r);
                            r
                        }
                        Err(_) => continue,
                    }
                }
            };
            if let Err(AppendError::UnknownSeries) = self.store.append(r, ts, v) {
                self.synthetic.remove(name);
            }
        }
    }
}
