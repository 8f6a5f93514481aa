//! Runs the loaded rule groups: one task per group, reloads that keep alert
//! state, evaluation right after relevant scrapes, persistence of alert
//! state, `homeostat_rule_*` metrics, and the alert-event channel.
//!
//! Owns the schedule and the hand-offs; the evaluation itself is
//! [`Group::eval`]. It must not format notifications (the notify stage does)
//! or touch HTTP.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use parking_lot::{Mutex, RwLock};
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::Histogram;
use prometheus_client::registry::Registry;
use rustc_hash::FxHashSet;
use tokio::sync::{broadcast, Notify};
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use super::file::{GroupSpec, RuleKind};
use super::group::{Alert, AlertEvent, AlertState, EvalEnv, Group};
use crate::collect::{now_ms, ScrapeEvent};
use crate::notify::alertmanager::{rfc3339_ms, AmAlert};
use crate::notify::AlertmanagerSender;
use crate::query::Engine;
use crate::state::{StateDb, StoredAlert, StoredGroup};
use crate::store::{Labels, Store};

/// Everything a group needs besides its rules; replaced on reload.
#[derive(Clone, Debug)]
pub struct RuleSettings {
    pub engine: Engine,
    /// `global.evaluation_interval`: groups without their own interval.
    pub default_interval: Duration,
    pub external_labels: Vec<(String, String)>,
    pub external_url: String,
    pub resend_delay: Duration,
    pub evaluate_after_scrape: bool,
    pub outage_tolerance: Duration,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct GroupLabels {
    rule_group: String,
}

#[derive(Clone)]
struct RuleMetrics {
    last_duration: Family<GroupLabels, Gauge<f64, AtomicU64>>,
    last_eval: Family<GroupLabels, Gauge<f64, AtomicU64>>,
    last_samples: Family<GroupLabels, Gauge>,
    interval: Family<GroupLabels, Gauge<f64, AtomicU64>>,
    rules: Family<GroupLabels, Gauge>,
    iterations: Family<GroupLabels, Counter>,
    missed: Family<GroupLabels, Counter>,
    evaluations: Family<GroupLabels, Counter>,
    failures: Family<GroupLabels, Counter>,
    duration: Histogram,
    events_dropped: Counter,
}

impl RuleMetrics {
    fn register(reg: &mut Registry) -> Self {
        let m = RuleMetrics {
            last_duration: Family::default(),
            last_eval: Family::default(),
            last_samples: Family::default(),
            interval: Family::default(),
            rules: Family::default(),
            iterations: Family::default(),
            missed: Family::default(),
            evaluations: Family::default(),
            failures: Family::default(),
            duration: Histogram::new([
                0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0,
            ]),
            events_dropped: Counter::default(),
        };
        reg.register(
            "homeostat_rule_group_last_duration_seconds",
            "Duration of the last evaluation of the rule group.",
            m.last_duration.clone(),
        );
        reg.register(
            "homeostat_rule_group_last_evaluation_timestamp_seconds",
            "Unix time of the last evaluation of the rule group.",
            m.last_eval.clone(),
        );
        reg.register(
            "homeostat_rule_group_last_evaluation_samples",
            "Samples returned by the last evaluation of the rule group.",
            m.last_samples.clone(),
        );
        reg.register(
            "homeostat_rule_group_interval_seconds",
            "Evaluation interval of the rule group.",
            m.interval.clone(),
        );
        reg.register(
            "homeostat_rule_group_rules",
            "Rules in the rule group.",
            m.rules.clone(),
        );
        reg.register(
            "homeostat_rule_group_iterations",
            "Scheduled evaluations of the rule group, run or missed.",
            m.iterations.clone(),
        );
        reg.register(
            "homeostat_rule_group_iterations_missed",
            "Evaluations skipped because the previous one ran past the interval.",
            m.missed.clone(),
        );
        reg.register(
            "homeostat_rule_evaluations",
            "Rule evaluations, per group.",
            m.evaluations.clone(),
        );
        reg.register(
            "homeostat_rule_evaluation_failures",
            "Rule evaluations that failed, per group.",
            m.failures.clone(),
        );
        reg.register(
            "homeostat_rule_group_duration_seconds",
            "Duration of rule group evaluations.",
            m.duration.clone(),
        );
        reg.register(
            "homeostat_rule_alert_events_dropped",
            "Alert events a slow subscriber missed.",
            m.events_dropped.clone(),
        );
        m
    }

    fn forget(&self, key: &str) {
        let l = GroupLabels {
            rule_group: key.to_owned(),
        };
        self.last_duration.remove(&l);
        self.last_eval.remove(&l);
        self.last_samples.remove(&l);
        self.interval.remove(&l);
        self.rules.remove(&l);
        self.iterations.remove(&l);
        self.missed.remove(&l);
        self.evaluations.remove(&l);
        self.failures.remove(&l);
    }
}

/// A running group: its state (shared with the API) and its schedule.
pub struct GroupTask {
    pub key: String,
    pub group: Mutex<Group>,
    fingerprint: String,
    /// Metric names the group's rules read; `None` if not all are known.
    deps: Option<FxHashSet<String>>,
    wake: Notify,
    /// A scrape this group reads finished since the last evaluation began.
    scraped: AtomicBool,
    stop: CancellationToken,
}

struct Inner {
    groups: RwLock<Vec<Arc<GroupTask>>>,
    settings: RwLock<Arc<RuleSettings>>,
    store: Arc<Store>,
    state: StateDb,
    sender: AlertmanagerSender,
    events: broadcast::Sender<AlertEvent>,
    tracker: TaskTracker,
    shutdown: CancellationToken,
    /// Saved state, consumed by the first load of each group.
    restore: Mutex<HashMap<String, StoredGroup>>,
    metrics: RuleMetrics,
    /// Groups woken by the same scrape would otherwise all evaluate at
    /// once, stretching each other's wall time and starving scrapes; at
    /// most half the cores evaluate rules at a time.
    eval_slots: tokio::sync::Semaphore,
}

/// Handle to the rule stage; cheap to clone.
#[derive(Clone)]
pub struct RuleManager {
    inner: Arc<Inner>,
}

/// What identifies a group's definition: if it is unchanged on reload, the
/// running task is kept as is.
fn fingerprint(spec: &GroupSpec, default_interval: Duration) -> String {
    let mut s = format!(
        "{:?}|{}|{}",
        spec.interval.unwrap_or(default_interval),
        spec.limit,
        spec.rules.len()
    );
    for r in &spec.rules {
        s.push_str(&format!("|{}|{}|{:?}", r.name(), r.expr_text, r.labels));
        if let RuleKind::Alerting {
            hold,
            keep_firing_for,
            annotations,
            ..
        } = &r.kind
        {
            s.push_str(&format!("|{hold:?}|{keep_firing_for:?}|{annotations:?}"));
        }
    }
    s
}

fn dependencies(spec: &GroupSpec) -> Option<FxHashSet<String>> {
    let mut out = FxHashSet::default();
    for r in &spec.rules {
        out.extend(r.expr.metric_names()?);
    }
    Some(out)
}

impl RuleManager {
    /// Creates the stage, loading saved alert state, and registers metrics.
    /// Groups start with [`RuleManager::apply`].
    pub async fn new(
        store: Arc<Store>,
        state: StateDb,
        sender: AlertmanagerSender,
        registry: &mut Registry,
        settings: RuleSettings,
        tracker: TaskTracker,
        shutdown: CancellationToken,
    ) -> RuleManager {
        let restore = match state.load_groups().await {
            Ok(r) => r,
            Err(e) => {
                tracing::error!(error = %e, "cannot read saved alert state; alerts start fresh");
                HashMap::new()
            }
        };
        let (events, _) = broadcast::channel(4096);
        RuleManager {
            inner: Arc::new(Inner {
                groups: RwLock::new(Vec::new()),
                settings: RwLock::new(Arc::new(settings)),
                store,
                state,
                sender,
                events,
                tracker,
                shutdown,
                restore: Mutex::new(restore),
                metrics: RuleMetrics::register(registry),
                eval_slots: tokio::sync::Semaphore::new(
                    std::thread::available_parallelism()
                        .map(|n| (n.get() / 2).max(1))
                        .unwrap_or(1),
                ),
            }),
        }
    }

    /// Alert lifecycle events (pending, firing, resolved, inactive).
    pub fn subscribe(&self) -> broadcast::Receiver<AlertEvent> {
        self.inner.events.subscribe()
    }

    /// The running groups, in load order.
    pub fn groups(&self) -> Vec<Arc<GroupTask>> {
        self.inner.groups.read().clone()
    }

    /// Starts the task that wakes groups after the scrapes they read.
    pub fn watch_scrapes(&self, mut rx: broadcast::Receiver<ScrapeEvent>) {
        let inner = self.inner.clone();
        let stop = self.inner.shutdown.clone();
        self.inner.tracker.spawn(async move {
            loop {
                let ev = tokio::select! {
                    _ = stop.cancelled() => break,
                    r = rx.recv() => match r {
                        Ok(ev) => ev,
                        // Missed events only cost an early evaluation.
                        Err(broadcast::error::RecvError::Lagged(_)) => continue,
                        Err(broadcast::error::RecvError::Closed) => break,
                    },
                };
                for g in inner.groups.read().iter() {
                    let Some(deps) = &g.deps else { continue };
                    if deps.iter().any(|d| ev.names.contains(d.as_str())) {
                        g.scraped.store(true, Ordering::Release);
                        g.wake.notify_one();
                    }
                }
            }
        });
    }

    /// Loads a new set of groups: unchanged groups keep running, changed
    /// ones restart with their rules' alert state carried over, removed
    /// ones stop and their series go stale.
    pub async fn apply(&self, specs: Vec<GroupSpec>, settings: RuleSettings) {
        let inner = &self.inner;
        let default_interval = settings.default_interval;
        *inner.settings.write() = Arc::new(settings);
        let mut old: HashMap<String, Arc<GroupTask>> = inner
            .groups
            .read()
            .iter()
            .map(|g| (g.key.clone(), g.clone()))
            .collect();
        let mut next = Vec::with_capacity(specs.len());
        let now = now_ms();
        for spec in specs {
            let key = spec.key();
            let fp = fingerprint(&spec, default_interval);
            if let Some(t) = old.get(&key) {
                if t.fingerprint == fp {
                    next.push(t.clone());
                    old.remove(&key);
                    continue;
                }
            }
            let deps = dependencies(&spec);
            let mut group = Group::new(spec, default_interval);
            if let Some(prev) = old.remove(&key) {
                prev.stop.cancel();
                group.copy_state_from(&mut prev.group.lock());
            } else if let Some(saved) = inner.restore.lock().remove(&key) {
                let tolerance = inner.settings.read().outage_tolerance;
                restore(&mut group, saved, now, tolerance);
            }
            let l = GroupLabels {
                rule_group: key.clone(),
            };
            inner
                .metrics
                .interval
                .get_or_create(&l)
                .set(group.interval.as_secs_f64());
            inner
                .metrics
                .rules
                .get_or_create(&l)
                .set(group.rules.len() as i64);
            let task = Arc::new(GroupTask {
                key,
                group: Mutex::new(group),
                fingerprint: fp,
                deps,
                wake: Notify::new(),
                scraped: AtomicBool::new(false),
                stop: inner.shutdown.child_token(),
            });
            inner.tracker.spawn(run_group(inner.clone(), task.clone()));
            next.push(task);
        }
        let ts = now_ms();
        for (key, t) in old {
            t.stop.cancel();
            t.group.lock().mark_stale(&inner.store, ts);
            inner.metrics.forget(&key);
            if let Err(e) = inner.state.delete_group(&key).await {
                tracing::warn!(group = %key, error = %e, "cannot forget removed group's state");
            }
        }
        *inner.groups.write() = next;
    }
}

/// Puts saved alerts back. A restart pauses `for` timers rather than
/// resetting them: time pending before the stop counts, the time away does
/// not (nobody knows whether the condition held then), so pending alerts'
/// `activeAt` moves forward by the downtime, as Prometheus's restore does.
fn restore(group: &mut Group, saved: StoredGroup, now: i64, tolerance: Duration) {
    let away = (now - saved.last_eval_ms).max(0);
    if away > tolerance.as_millis() as i64 {
        tracing::info!(group = %group.key(), away_s = away / 1000, "saved alert state is older than rules.outage_tolerance; not restored");
        return;
    }
    let mut restored = 0;
    for sa in saved.alerts {
        let Some(rule) = group.rules.iter_mut().find(|r| r.identity() == sa.rule) else {
            continue;
        };
        let Some(state) = AlertState::parse(&sa.state) else {
            continue;
        };
        let labels = Labels::from_pairs(sa.labels);
        let active_at = if state == AlertState::Pending {
            sa.active_at_ms + away
        } else {
            sa.active_at_ms
        };
        rule.active.insert(
            labels.fingerprint(),
            Alert {
                labels,
                annotations: sa.annotations,
                state,
                value: sa.value,
                active_at,
                fired_at: sa.fired_at_ms,
                resolved_at: sa.resolved_at_ms,
                // Re-sent at once: Alertmanager may have expired it.
                last_sent_at: None,
                valid_until: 0,
                keep_firing_since: sa.keep_firing_since_ms,
            },
        );
        restored += 1;
    }
    if restored > 0 {
        tracing::info!(group = %group.key(), alerts = restored, away_ms = away, "restored alert state");
    }
}

fn snapshot(group: &Group) -> Vec<StoredAlert> {
    let mut out = Vec::new();
    for r in &group.rules {
        let id = r.identity();
        for a in r.active.values() {
            out.push(StoredAlert {
                rule: id.clone(),
                labels: a
                    .labels
                    .iter()
                    .map(|l| (l.name.to_string(), l.value.to_string()))
                    .collect(),
                annotations: a.annotations.clone(),
                state: a.state.as_str().to_owned(),
                value: a.value,
                active_at_ms: a.active_at,
                fired_at_ms: a.fired_at,
                resolved_at_ms: a.resolved_at,
                keep_firing_since_ms: a.keep_firing_since,
            });
        }
    }
    out
}

/// Prometheus's `generatorURL`: the expression's table view.
pub fn generator_url(external_url: &str, expr: &str) -> String {
    let q: String = form_urlencoded::byte_serialize(expr.as_bytes()).collect();
    format!(
        "{}/graph?g0.expr={q}&g0.tab=1",
        external_url.trim_end_matches('/')
    )
}

fn to_am(a: &Alert, expr: &str, s: &RuleSettings) -> AmAlert {
    let mut labels: std::collections::BTreeMap<String, String> = a
        .labels
        .iter()
        .map(|l| (l.name.to_string(), l.value.to_string()))
        .collect();
    // External labels never override the alert's own (Prometheus).
    for (k, v) in &s.external_labels {
        labels.entry(k.clone()).or_insert_with(|| v.clone());
    }
    AmAlert {
        labels,
        annotations: a.annotations.iter().cloned().collect(),
        starts_at: rfc3339_ms(a.fired_at.unwrap_or(a.active_at)),
        ends_at: rfc3339_ms(a.resolved_at.unwrap_or(a.valid_until)),
        generator_url: generator_url(&s.external_url, expr),
        value: Some(a.value),
    }
}

/// How close to its due time a scrape may land and still count as the data
/// for this evaluation: keeps a group locked just behind its scrape despite
/// jitter, while costing at most 2% more evaluations.
fn tolerance(interval: Duration) -> Duration {
    (interval / 50).min(Duration::from_millis(50))
}

async fn run_group(inner: Arc<Inner>, task: Arc<GroupTask>) {
    let interval = task.group.lock().interval.max(Duration::from_millis(1));
    let stop = task.stop.clone();
    let tol = tolerance(interval);
    let heartbeat = Duration::from_secs(30);
    let mut last_start: Option<Instant> = None;
    let mut last_saved = Instant::now();
    let labels = GroupLabels {
        rule_group: task.key.clone(),
    };
    loop {
        let aligned = inner.settings.read().evaluate_after_scrape && task.deps.is_some();
        let (due, hard) = match last_start {
            Some(ls) if aligned => (ls + interval - tol, ls + interval + tol),
            Some(ls) => (ls + interval, ls + interval),
            None if aligned => (Instant::now(), Instant::now() + interval),
            None => {
                // Spread groups over the interval, stably across restarts
                // (Prometheus hashes the group key the same way).
                let iv = interval.as_millis().max(1) as i64;
                let offset = (crate::collect::manager::stable_hash(&task.key) % iv as u64) as i64;
                let now = now_ms();
                let mut first = now - now.rem_euclid(iv) + offset;
                if first < now {
                    first += iv;
                }
                let at = Instant::now() + Duration::from_millis((first - now) as u64);
                (at, at)
            }
        };
        tokio::select! {
            _ = stop.cancelled() => break,
            _ = tokio::time::sleep_until(due) => {}
        }
        if aligned {
            // Evaluate as soon as fresh data for this group lands, but no
            // later than the deadline (rules like absent() need evaluating
            // even when nothing arrives).
            while !task.scraped.load(Ordering::Acquire) {
                tokio::select! {
                    _ = stop.cancelled() => break,
                    _ = tokio::time::sleep_until(hard) => break,
                    _ = task.wake.notified() => {}
                }
            }
        }
        if stop.is_cancelled() {
            break;
        }
        task.scraped.store(false, Ordering::Release);
        let start = Instant::now();
        if let Some(ls) = last_start {
            let el = start - ls;
            if el >= interval * 2 {
                let missed = (el.as_millis() / interval.as_millis().max(1)) as u64 - 1;
                inner.metrics.missed.get_or_create(&labels).inc_by(missed);
                inner
                    .metrics
                    .iterations
                    .get_or_create(&labels)
                    .inc_by(missed);
            }
        }
        last_start = Some(start);
        inner.metrics.iterations.get_or_create(&labels).inc();

        let Ok(_slot) = inner.eval_slots.acquire().await else {
            break;
        };
        let settings = inner.settings.read().clone();
        let (t, s, st) = (task.clone(), settings.clone(), inner.store.clone());
        let evaluated = tokio::task::spawn_blocking(move || {
            let mut g = t.group.lock();
            // A reload may have taken this group's state since the loop
            // checked; a stopped task must not evaluate on what is left.
            if t.stop.is_cancelled() {
                return None;
            }
            let env = EvalEnv {
                engine: &s.engine,
                store: &st,
                external_labels: &s.external_labels,
                external_url: &s.external_url,
                resend_delay_ms: s.resend_delay.as_millis() as i64,
            };
            let ts = now_ms();
            let out = g.eval(&env, ts);
            let saved = out.alerts_changed.then(|| snapshot(&g));
            let rules = g.rules.len() as u64;
            Some((out, saved, ts, g.last_duration, rules))
        })
        .await;
        let Ok(Some((out, saved, ts, took, rules))) = evaluated else {
            continue;
        };
        let m = &inner.metrics;
        m.last_duration
            .get_or_create(&labels)
            .set(took.as_secs_f64());
        m.last_eval.get_or_create(&labels).set(ts as f64 / 1000.0);
        m.last_samples
            .get_or_create(&labels)
            .set(out.samples as i64);
        m.evaluations.get_or_create(&labels).inc_by(rules);
        if out.failures > 0 {
            m.failures
                .get_or_create(&labels)
                .inc_by(out.failures as u64);
        }
        m.duration.observe(took.as_secs_f64());
        if !out.to_send.is_empty() {
            let alerts = out
                .to_send
                .iter()
                .map(|(expr, a)| to_am(a, expr, &settings))
                .collect();
            inner.sender.send(alerts);
        }
        for ev in out.events {
            tracing::info!(group = %ev.group, alert = %ev.rule, transition = ev.transition, labels = %ev.alert.labels, "alert state changed");
            // No subscriber yet is normal; a lagging one is counted there.
            let _ = inner.events.send(ev);
        }
        if let Some(alerts) = saved {
            if let Err(e) = inner.state.save_group_alerts(&task.key, ts, &alerts).await {
                tracing::warn!(group = %task.key, error = %e, "cannot save alert state");
            }
            last_saved = Instant::now();
        } else if last_saved.elapsed() >= heartbeat {
            if let Err(e) = inner.state.touch_group(&task.key, ts).await {
                tracing::debug!(group = %task.key, error = %e, "cannot save group heartbeat");
            }
            last_saved = Instant::now();
        }
    }
    // The last evaluation time tells the next start how long it was away.
    // Only at shutdown: a group stopped by a reload is replaced or deleted.
    let last = task.group.lock().last_eval_ms;
    if last > 0 && inner.shutdown.is_cancelled() {
        if let Err(e) = inner.state.touch_group(&task.key, last).await {
            tracing::debug!(group = %task.key, error = %e, "cannot save group heartbeat at stop");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn generator_url_is_prometheus_table_link() {
        assert_eq!(
            generator_url("http://h:9400/", "up == 0"),
            "http://h:9400/graph?g0.expr=up+%3D%3D+0&g0.tab=1"
        );
    }

    #[test]
    fn fingerprint_changes_with_rules_only() {
        let g = |expr: &str| {
            super::super::file::parse_str(
                "f",
                &format!(
                    "groups:\n  - name: g\n    rules:\n      - alert: A\n        expr: {expr}\n"
                ),
            )
            .unwrap()
            .remove(0)
        };
        let d = Duration::from_secs(60);
        assert_eq!(fingerprint(&g("up"), d), fingerprint(&g("up"), d));
        assert_ne!(fingerprint(&g("up"), d), fingerprint(&g("up == 0"), d));
        assert_ne!(
            fingerprint(&g("up"), d),
            fingerprint(&g("up"), Duration::from_secs(5))
        );
        assert_eq!(
            dependencies(&g("sum(rate(a[5m])) / b")).map(|d| d.len()),
            Some(2)
        );
        assert!(dependencies(&g("'{job=\"x\"}'")).is_none());
    }
}
