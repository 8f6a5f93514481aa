//! The scrape manager: turns scrape jobs and their discovered targets into
//! running scrape loops, and keeps them in step with config reloads and
//! file_sd changes.
//!
//! It is one actor task fed by a channel (config applies, target updates), so
//! reconciliation never races itself. A job whose config did not change keeps
//! its loops untouched across a reload; a target that disappears gets
//! staleness markers; one that stays but whose job changed is handed over
//! without them. Never reads the store.

use std::collections::{BTreeMap, HashMap};
use std::hash::{Hash, Hasher};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use parking_lot::{Mutex, RwLock};
use tokio::sync::{mpsc, oneshot};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use super::discovery::{static_groups, FileSd, TargetGroup};
use super::native::NativeJob;
use super::prometheus::{HttpCollector, ScrapeConfig};
use super::{BoxedCollector, Health, LabelShaping, ScrapeLoop, StopReason, TargetHealth};
use crate::store::Store;
use crate::telemetry::ScrapeMetrics;

/// (job, target key) → that target's health, updated by its loop.
type HealthMap = BTreeMap<(String, String), Arc<Mutex<TargetHealth>>>;

/// Health of every active target, shared with the web stage.
#[derive(Clone, Default)]
pub struct TargetRegistry {
    inner: Arc<RwLock<HealthMap>>,
}

impl TargetRegistry {
    pub fn snapshot(&self) -> Vec<TargetHealth> {
        self.inner
            .read()
            .values()
            .map(|h| h.lock().clone())
            .collect()
    }

    /// Metadata of every metric family across targets, for
    /// `/api/v1/metadata`: distinct entries per family name.
    pub fn metadata(&self) -> BTreeMap<String, Vec<super::MetricMeta>> {
        let mut out: BTreeMap<String, Vec<super::MetricMeta>> = BTreeMap::new();
        for h in self.inner.read().values() {
            let meta = h.lock().metadata.clone();
            for (name, m) in meta.lock().iter() {
                let list = out.entry(name.clone()).or_default();
                if !list.contains(m) {
                    list.push(m.clone());
                }
            }
        }
        out
    }

    pub fn count_by_health(&self) -> (usize, usize, usize) {
        let mut c = (0, 0, 0);
        for h in self.inner.read().values() {
            match h.lock().health {
                Health::Up => c.0 += 1,
                Health::Down => c.1 += 1,
                Health::Unknown => c.2 += 1,
            }
        }
        c
    }
}

enum Msg {
    Apply {
        jobs: Vec<ScrapeConfig>,
        native: Vec<NativeJob>,
        base_dir: PathBuf,
        done: oneshot::Sender<()>,
    },
    Groups {
        job: String,
        generation: u64,
        provider: usize,
        groups: Vec<TargetGroup>,
    },
}

/// Handle to the manager actor.
#[derive(Clone)]
pub struct ScrapeManager {
    tx: mpsc::Sender<Msg>,
    pub registry: TargetRegistry,
    events: tokio::sync::broadcast::Sender<super::ScrapeEvent>,
}

struct LoopHandle {
    stop: CancellationToken,
    reason: Arc<Mutex<StopReason>>,
}

impl LoopHandle {
    fn stop(&self, reason: StopReason) {
        *self.reason.lock() = reason;
        self.stop.cancel();
    }
}

/// A job's config: a Prometheus scrape job or a native collector.
#[derive(PartialEq)]
enum JobConfig {
    Scrape(ScrapeConfig),
    Native(NativeJob),
}

impl JobConfig {
    fn interval(&self) -> Duration {
        match self {
            JobConfig::Scrape(c) => c.interval(),
            JobConfig::Native(n) => n.interval,
        }
    }

    fn timeout(&self) -> Duration {
        match self {
            JobConfig::Scrape(c) => c.timeout(),
            JobConfig::Native(n) => n.timeout,
        }
    }
}

struct Job {
    cfg: JobConfig,
    generation: u64,
    client: reqwest::Client,
    shaping_rules: Vec<super::relabel::Relabeler>,
    /// Index 0: static_configs; 1..: one per file_sd_configs entry.
    providers: Vec<Vec<TargetGroup>>,
    watchers: CancellationToken,
    loops: HashMap<String, LoopHandle>,
}

struct Actor {
    store: Arc<Store>,
    events: tokio::sync::broadcast::Sender<super::ScrapeEvent>,
    metrics: ScrapeMetrics,
    registry: TargetRegistry,
    jobs: HashMap<String, Job>,
    tracker: TaskTracker,
    shutdown: CancellationToken,
    tx: mpsc::WeakSender<Msg>,
    next_generation: u64,
}

/// A target as the manager sees it before a loop exists.
struct TargetSpec {
    key: String,
    url: String,
    /// Set for native collectors' targets.
    native: Option<super::native::NativeSpec>,
    labels: Vec<(String, String)>,
    discovered: Vec<(String, String)>,
}

impl ScrapeManager {
    /// Starts the actor; its tasks and loops are tracked by `tracker` and stop
    /// when `shutdown` is cancelled.
    pub fn start(
        store: Arc<Store>,
        metrics: ScrapeMetrics,
        tracker: TaskTracker,
        shutdown: CancellationToken,
    ) -> Self {
        let (tx, mut rx) = mpsc::channel(64);
        let registry = TargetRegistry::default();
        // Sized for a round of every target at once; a slow reader only
        // loses early evaluations, never data.
        let (events, _) = tokio::sync::broadcast::channel(1024);
        let mut actor = Actor {
            store,
            events: events.clone(),
            metrics,
            registry: registry.clone(),
            jobs: HashMap::new(),
            tracker: tracker.clone(),
            shutdown: shutdown.clone(),
            tx: tx.downgrade(),
            next_generation: 0,
        };
        tracker.spawn(async move {
            loop {
                tokio::select! {
                    _ = actor.shutdown.cancelled() => break,
                    msg = rx.recv() => match msg {
                        Some(m) => actor.handle(m),
                        None => break,
                    }
                }
            }
            actor.stop_all(StopReason::Shutdown);
        });
        ScrapeManager {
            tx,
            registry,
            events,
        }
    }

    /// Announcements of finished scrape rounds.
    pub fn subscribe(&self) -> tokio::sync::broadcast::Receiver<super::ScrapeEvent> {
        self.events.subscribe()
    }

    /// Applies a (validated) set of jobs and waits until loops are in place.
    pub async fn apply(&self, jobs: Vec<ScrapeConfig>, native: Vec<NativeJob>, base_dir: PathBuf) {
        let (done, wait) = oneshot::channel();
        if self
            .tx
            .send(Msg::Apply {
                jobs,
                native,
                base_dir,
                done,
            })
            .await
            .is_ok()
        {
            let _ = wait.await;
        }
    }
}

pub(crate) fn stable_hash(s: &str) -> u64 {
    let mut h = rustc_hash::FxHasher::default();
    s.hash(&mut h);
    h.finish()
}

impl Actor {
    fn handle(&mut self, msg: Msg) {
        match msg {
            Msg::Apply {
                jobs,
                native,
                base_dir,
                done,
            } => {
                self.apply(jobs, native, base_dir);
                let _ = done.send(());
            }
            Msg::Groups {
                job,
                generation,
                provider,
                groups,
            } => {
                let Some(j) = self.jobs.get_mut(&job) else {
                    return;
                };
                // A late update from a job that was since replaced is ignored.
                if j.generation != generation {
                    return;
                }
                if let Some(slot) = j.providers.get_mut(provider) {
                    *slot = groups;
                }
                self.sync(&job);
            }
        }
    }

    fn apply(&mut self, jobs: Vec<ScrapeConfig>, native: Vec<NativeJob>, base_dir: PathBuf) {
        let mut wanted: HashMap<String, JobConfig> = jobs
            .into_iter()
            .map(|j| (j.job_name.clone(), JobConfig::Scrape(j)))
            .collect();
        wanted.extend(
            native
                .into_iter()
                .map(|j| (j.job_name.clone(), JobConfig::Native(j))),
        );
        let gone: Vec<String> = self
            .jobs
            .keys()
            .filter(|k| !wanted.contains_key(*k))
            .cloned()
            .collect();
        for name in gone {
            if let Some(job) = self.jobs.remove(&name) {
                job.watchers.cancel();
                for (key, h) in job.loops {
                    h.stop(StopReason::TargetGone);
                    self.registry.inner.write().remove(&(name.clone(), key));
                }
            }
        }
        for (name, cfg) in wanted {
            if self.jobs.get(&name).is_some_and(|j| j.cfg == cfg) {
                continue;
            }
            let client = match HttpCollector::client(cfg.timeout()) {
                Ok(c) => c,
                Err(e) => {
                    tracing::error!(job = %name, error = %e, "cannot build HTTP client; job not started");
                    continue;
                }
            };
            let (shaping_rules, static_cfgs, file_sds) = match &cfg {
                JobConfig::Scrape(c) => (
                    c.metric_relabel_configs
                        .iter()
                        .filter_map(|r| r.compile().ok())
                        .collect(),
                    c.static_configs.as_slice(),
                    c.file_sd_configs.as_slice(),
                ),
                JobConfig::Native(_) => (Vec::new(), &[][..], &[][..]),
            };
            let generation = self.next_generation;
            self.next_generation += 1;
            let mut providers = vec![static_groups(static_cfgs)];
            let watchers = self.shutdown.child_token();
            for (i, fsd) in file_sds.iter().enumerate() {
                let mut sd = FileSd::new(fsd, &base_dir);
                providers.push(sd.poll().unwrap_or_default());
                let tx = self.tx.clone();
                let stop = watchers.clone();
                let job = name.clone();
                self.tracker.spawn(async move {
                    let mut tick = tokio::time::interval(Duration::from_secs(1));
                    loop {
                        tokio::select! {
                            _ = stop.cancelled() => break,
                            _ = tick.tick() => {}
                        }
                        // Stat calls are cheap but blocking; keep them off the
                        // scheduler's threads.
                        let (back, changed) = match tokio::task::spawn_blocking(move || {
                            let c = sd.poll();
                            (sd, c)
                        })
                        .await
                        {
                            Ok(v) => v,
                            Err(_) => break,
                        };
                        sd = back;
                        if let Some(groups) = changed {
                            let Some(tx) = tx.upgrade() else { break };
                            let msg = Msg::Groups {
                                job: job.clone(),
                                generation,
                                provider: i + 1,
                                groups,
                            };
                            if tx.send(msg).await.is_err() {
                                break;
                            }
                        }
                    }
                });
            }
            let old = self.jobs.insert(
                name.clone(),
                Job {
                    cfg,
                    generation,
                    client,
                    shaping_rules,
                    providers,
                    watchers,
                    loops: HashMap::new(),
                },
            );
            // Loops of the old version of this job: the ones whose target
            // survives are replaced by sync() below without staleness markers.
            let mut old_loops = HashMap::new();
            if let Some(old) = old {
                old.watchers.cancel();
                old_loops = old.loops;
            }
            let specs = self.targets(&name);
            for (key, h) in old_loops {
                let reason = if specs.iter().any(|s| s.key == key) {
                    StopReason::Replaced
                } else {
                    self.registry.inner.write().remove(&(name.clone(), key));
                    StopReason::TargetGone
                };
                h.stop(reason);
            }
            self.sync(&name);
        }
    }

    fn targets(&self, job: &str) -> Vec<TargetSpec> {
        let Some(j) = self.jobs.get(job) else {
            return Vec::new();
        };
        let cfg = match &j.cfg {
            JobConfig::Scrape(c) => c,
            JobConfig::Native(n) => return native_targets(n),
        };
        let mut out: Vec<TargetSpec> = Vec::new();
        for group in j.providers.iter().flatten() {
            for addr in &group.targets {
                let mut labels: BTreeMap<String, String> = group.labels.clone();
                labels.insert("job".into(), cfg.job_name.clone());
                // As in Prometheus, `instance` is a target label derived after
                // discovery, so it is not among the discovered labels.
                let mut discovered = labels.clone();
                labels
                    .entry("instance".into())
                    .or_insert_with(|| addr.clone());
                discovered.insert("__address__".into(), addr.clone());
                discovered.insert("__scheme__".into(), cfg.scheme.clone());
                discovered.insert("__metrics_path__".into(), cfg.metrics_path.clone());
                if !group.source.starts_with("static/") {
                    discovered.insert("__meta_filepath".into(), group.source.clone());
                }
                let labels: Vec<(String, String)> = labels
                    .into_iter()
                    .filter(|(k, _)| !k.starts_with("__"))
                    .collect();
                let mut url = format!("{}://{}{}", cfg.scheme, addr, cfg.metrics_path);
                let mut sep = '?';
                for (k, vs) in &cfg.params {
                    for v in vs {
                        url.push(sep);
                        url.push_str(&format!("{}={}", urlencode(k), urlencode(v)));
                        sep = '&';
                    }
                }
                let key = format!("{url}|{labels:?}");
                if out.iter().any(|s| s.key == key) {
                    continue;
                }
                out.push(TargetSpec {
                    key,
                    url,
                    native: None,
                    labels,
                    discovered: discovered.into_iter().collect(),
                });
            }
        }
        out
    }

    /// Starts loops for new targets and stops loops whose target is gone.
    fn sync(&mut self, job_name: &str) {
        let specs = self.targets(job_name);
        let Some(job) = self.jobs.get_mut(job_name) else {
            return;
        };
        let gone: Vec<String> = job
            .loops
            .keys()
            .filter(|k| !specs.iter().any(|s| &s.key == *k))
            .cloned()
            .collect();
        for key in gone {
            if let Some(h) = job.loops.remove(&key) {
                h.stop(StopReason::TargetGone);
            }
            self.registry
                .inner
                .write()
                .remove(&(job_name.to_string(), key));
        }
        let interval = job.cfg.interval();
        let timeout = job.cfg.timeout();
        for spec in specs {
            if job.loops.contains_key(&spec.key) {
                continue;
            }
            let health = Arc::new(Mutex::new(TargetHealth {
                scrape_pool: job_name.to_string(),
                scrape_url: spec.url.clone(),
                discovered_labels: spec.discovered.clone(),
                labels: spec.labels.clone(),
                interval,
                timeout,
                group: match &spec.native {
                    Some(n) => n.group(),
                    None => super::scrape_group(job_name),
                },
                ..Default::default()
            }));
            self.registry
                .inner
                .write()
                .insert((job_name.to_string(), spec.key.clone()), health.clone());
            let metadata = health.lock().metadata.clone();
            let (collector, shaping) = match (&job.cfg, &spec.native) {
                (JobConfig::Scrape(cfg), _) => (
                    BoxedCollector(Box::new(HttpCollector::new(
                        job.client.clone(),
                        spec.url.clone(),
                        timeout,
                        cfg.body_limit(),
                        metadata,
                    ))),
                    LabelShaping {
                        target: spec.labels.clone(),
                        honor_labels: cfg.honor_labels,
                        honor_timestamps: cfg.honor_timestamps,
                        metric_relabel: job.shaping_rules.clone(),
                    },
                ),
                (JobConfig::Native(_), Some(native)) => (
                    native.build(timeout, metadata),
                    LabelShaping {
                        target: spec.labels.clone(),
                        honor_labels: false,
                        honor_timestamps: true,
                        metric_relabel: Vec::new(),
                    },
                ),
                (JobConfig::Native(_), None) => continue,
            };
            let offset = Duration::from_millis(
                stable_hash(&spec.key) % (interval.as_millis().max(1) as u64),
            );
            let mut sl = ScrapeLoop::new(
                collector,
                self.store.clone(),
                shaping,
                job_name.to_string(),
                interval,
                timeout,
                offset,
                health,
                self.metrics.clone(),
            );
            sl.events = Some(self.events.clone());
            let stop = self.shutdown.child_token();
            let reason = Arc::new(Mutex::new(StopReason::Shutdown));
            self.tracker.spawn(sl.run(stop.clone(), reason.clone()));
            job.loops.insert(spec.key, LoopHandle { stop, reason });
        }
        self.metrics.set_targets(job_name, job.loops.len());
    }

    fn stop_all(&mut self, reason: StopReason) {
        for (_, job) in self.jobs.drain() {
            job.watchers.cancel();
            for (_, h) in job.loops {
                h.stop(reason);
            }
        }
    }
}

/// A native job's targets: `instance` is the server's name, and the loop
/// key holds the whole spec, so any change to a server restarts its loop.
fn native_targets(job: &NativeJob) -> Vec<TargetSpec> {
    job.targets
        .iter()
        .map(|t| {
            let mut labels = t.labels.clone();
            labels.insert("job".into(), job.job_name.clone());
            labels.insert("instance".into(), t.instance.clone());
            let labels: Vec<(String, String)> = labels.into_iter().collect();
            TargetSpec {
                key: format!("{}|{:?}|{:?}", t.instance, labels, t.spec),
                url: t.display.clone(),
                native: Some(t.spec.clone()),
                discovered: labels.clone(),
                labels,
            }
        })
        .collect()
}

fn urlencode(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.' | b'~') {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}
