//! The run engine: turns triggers into runs, checks guards, waits for
//! approval, executes steps with timeouts, verifies, rolls back and
//! escalates, and resumes what a restart interrupted.
//!
//! Write-ahead: the run row exists before anything happens, each step row is
//! written before its action starts and updated when it ends. After a crash
//! a step left `running` is `interrupted`; the run resumes at that step only
//! if the step is declared idempotent, otherwise it escalates. A step that
//! finished is never run again. This module decides *whether* and *when*;
//! actions decide *how*, the state stage remembers.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use parking_lot::{Mutex, RwLock};
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::registry::Registry;
use serde_json::{json, Value};
use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use super::file::{render, render_value, Playbook, RenderData, StepSpec, Trigger};
use super::PlaybooksConfig;
use crate::act::notify::Message;
use crate::act::{ActDeps, ActionError, Actions, Ctx};
use crate::collect::now_ms;
use crate::query::{Engine, QueryValue};
use crate::rules::AlertEvent;
use crate::state::{RunFilter, RunRecord, StateDb, StateError, StepRecord};
use crate::store::Store;

/// Run states.
pub mod run_state {
    pub const SKIPPED: &str = "skipped";
    pub const AWAITING_APPROVAL: &str = "awaiting_approval";
    pub const APPROVED: &str = "approved";
    pub const PENDING: &str = "pending";
    pub const RUNNING: &str = "running";
    pub const VERIFYING: &str = "verifying";
    pub const ROLLING_BACK: &str = "rolling_back";
    pub const SUCCEEDED: &str = "succeeded";
    pub const FAILED: &str = "failed";
    pub const ESCALATED: &str = "escalated";
    pub const DENIED: &str = "denied";
    pub const EXPIRED: &str = "expired";
    pub const INTERRUPTED: &str = "interrupted";

    /// A run in one of these is in progress (dedup looks at these).
    pub const ACTIVE: [&str; 6] = [
        AWAITING_APPROVAL,
        APPROVED,
        PENDING,
        RUNNING,
        VERIFYING,
        ROLLING_BACK,
    ];
    /// Runs that acted on the target (cooldown counts from their end).
    pub const ACTED: [&str; 9] = [
        APPROVED,
        PENDING,
        RUNNING,
        VERIFYING,
        ROLLING_BACK,
        SUCCEEDED,
        FAILED,
        ESCALATED,
        INTERRUPTED,
    ];
    /// Runs that count towards a playbook's own breaker.
    pub const FAILURES: [&str; 3] = [FAILED, ESCALATED, INTERRUPTED];
}
use run_state as rs;

#[derive(Debug, thiserror::Error)]
pub enum EngineError {
    #[error("no playbook named {0:?}")]
    UnknownPlaybook(String),
    #[error("no run {0:?}")]
    UnknownRun(String),
    #[error("{0}")]
    BadRequest(String),
    #[error("{0}")]
    Conflict(String),
    #[error("{0}")]
    State(#[from] StateError),
}

/// Something asking for a run.
#[derive(Debug, Clone)]
pub struct TriggerRequest {
    pub playbook: String,
    /// Explicit target (manual runs); otherwise the playbook's `target`
    /// template rendered with `labels`.
    pub target: Option<String>,
    pub labels: Vec<(String, String)>,
    pub value: f64,
    /// alert | condition | schedule | webhook | manual
    pub kind: String,
    pub detail: Value,
    pub dry_run: bool,
    pub requested_by: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct RunLabels {
    playbook: String,
    result: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct GuardLabels {
    playbook: String,
    guard: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct StepLabels {
    action: String,
    result: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct PlaybookLabel {
    playbook: String,
}

struct Metrics {
    runs: Family<RunLabels, Counter>,
    blocked: Family<GuardLabels, Counter>,
    steps: Family<StepLabels, Counter>,
    active: Gauge,
    paused: Gauge,
    breaker_open: Family<PlaybookLabel, Gauge>,
}

impl Metrics {
    fn register(reg: &mut Registry) -> Self {
        let m = Metrics {
            runs: Family::default(),
            blocked: Family::default(),
            steps: Family::default(),
            active: Gauge::default(),
            paused: Gauge::default(),
            breaker_open: Family::default(),
        };
        reg.register(
            "homeostat_playbook_runs",
            "Playbook runs that ended, by final state.",
            m.runs.clone(),
        );
        reg.register(
            "homeostat_playbook_guard_blocks",
            "Triggers a guard stopped, by guard.",
            m.blocked.clone(),
        );
        reg.register(
            "homeostat_playbook_steps",
            "Playbook steps executed, by action and result.",
            m.steps.clone(),
        );
        reg.register(
            "homeostat_playbook_runs_active",
            "Runs in progress or awaiting approval.",
            m.active.clone(),
        );
        reg.register(
            "homeostat_playbooks_paused",
            "1 while automatic runs are paused for all playbooks.",
            m.paused.clone(),
        );
        reg.register(
            "homeostat_playbook_breaker_open",
            "1 while a playbook's own breaker has stopped its automatic runs.",
            m.breaker_open.clone(),
        );
        m
    }
}

struct Inner {
    db: StateDb,
    store: Arc<Store>,
    query: Arc<RwLock<Engine>>,
    actions: Actions,
    deps: RwLock<Arc<ActDeps>>,
    playbooks: RwLock<BTreeMap<String, Arc<Playbook>>>,
    cfg: RwLock<PlaybooksConfig>,
    default_every: RwLock<Duration>,
    /// Serializes guard checks with the run insert they allow.
    gate: tokio::sync::Mutex<()>,
    /// Waiting approvals by run id.
    waiting: Mutex<HashMap<String, Arc<Notify>>>,
    paused_all: AtomicBool,
    paused: Mutex<HashSet<String>>,
    /// Playbook → when its own breaker tripped.
    tripped: Mutex<HashMap<String, i64>>,
    /// Target → why automatic runs for it are held (an incident a person
    /// acknowledged).
    held: Mutex<HashMap<String, String>>,
    trigger_loops: Mutex<CancellationToken>,
    tracker: TaskTracker,
    shutdown: CancellationToken,
    metrics: Metrics,
    seq: AtomicU64,
}

/// The engine; cheap to clone.
#[derive(Clone)]
pub struct PlaybookEngine {
    inner: Arc<Inner>,
}

/// What a step run returned.
enum StepEnd {
    Ok,
    Failed(String),
}

const GLOBAL_PAUSE: &str = "pause:*";

impl PlaybookEngine {
    #[allow(clippy::too_many_arguments)]
    pub fn new(
        db: StateDb,
        store: Arc<Store>,
        query: Arc<RwLock<Engine>>,
        deps: Arc<ActDeps>,
        registry: &mut Registry,
        tracker: TaskTracker,
        shutdown: CancellationToken,
    ) -> Self {
        PlaybookEngine {
            inner: Arc::new(Inner {
                db,
                store,
                query,
                actions: Actions::default(),
                deps: RwLock::new(deps),
                playbooks: RwLock::new(BTreeMap::new()),
                cfg: RwLock::new(PlaybooksConfig::default()),
                default_every: RwLock::new(Duration::from_secs(60)),
                gate: tokio::sync::Mutex::new(()),
                waiting: Mutex::new(HashMap::new()),
                paused_all: AtomicBool::new(false),
                paused: Mutex::new(HashSet::new()),
                tripped: Mutex::new(HashMap::new()),
                held: Mutex::new(HashMap::new()),
                trigger_loops: Mutex::new(CancellationToken::new()),
                tracker,
                shutdown,
                metrics: Metrics::register(registry),
                seq: AtomicU64::new(0),
            }),
        }
    }

    pub fn actions(&self) -> &Actions {
        &self.inner.actions
    }

    /// Applies a (re)loaded set of playbooks and settings; restarts the
    /// condition and schedule loops.
    pub fn apply(
        &self,
        playbooks: Vec<Playbook>,
        cfg: PlaybooksConfig,
        deps: Arc<ActDeps>,
        default_every: Duration,
    ) {
        let map: BTreeMap<String, Arc<Playbook>> = playbooks
            .into_iter()
            .map(|p| (p.spec.name.clone(), Arc::new(p)))
            .collect();
        *self.inner.playbooks.write() = map.clone();
        *self.inner.cfg.write() = cfg;
        *self.inner.deps.write() = deps;
        *self.inner.default_every.write() = default_every;
        let token = self.inner.shutdown.child_token();
        let old = std::mem::replace(&mut *self.inner.trigger_loops.lock(), token.clone());
        old.cancel();
        for p in map.values() {
            match &p.trigger {
                Trigger::Condition { expr, hold, every } => {
                    let every = every.unwrap_or(default_every);
                    self.inner.tracker.spawn(self.clone().condition_loop(
                        p.spec.name.clone(),
                        expr.clone(),
                        *hold,
                        every,
                        token.clone(),
                    ));
                }
                Trigger::Schedule { every } => {
                    self.inner.tracker.spawn(self.clone().schedule_loop(
                        p.spec.name.clone(),
                        *every,
                        token.clone(),
                    ));
                }
                _ => {}
            }
        }
    }

    /// Loads persisted switches and resumes interrupted runs. Call once at
    /// start, after the first [`PlaybookEngine::apply`].
    pub async fn recover(&self) -> Result<(), StateError> {
        let cfg_paused = self.inner.cfg.read().paused;
        for (key, value, at, _) in self.inner.db.flags().await? {
            if key == GLOBAL_PAUSE {
                self.inner.paused_all.store(true, Ordering::Release);
            } else if let Some(p) = key.strip_prefix("pause:") {
                self.inner.paused.lock().insert(p.to_string());
            } else if let Some(t) = key.strip_prefix("hold:") {
                self.inner.held.lock().insert(t.to_string(), value);
            } else if let Some(p) = key.strip_prefix("breaker:") {
                self.inner.tripped.lock().insert(p.to_string(), at);
                self.inner
                    .metrics
                    .breaker_open
                    .get_or_create(&PlaybookLabel {
                        playbook: p.to_string(),
                    })
                    .set(1);
            }
        }
        if cfg_paused {
            self.inner.paused_all.store(true, Ordering::Release);
        }
        self.inner
            .metrics
            .paused
            .set(i64::from(self.inner.paused_all.load(Ordering::Acquire)));
        let runs = self
            .inner
            .db
            .list_runs(&RunFilter {
                states: rs::ACTIVE.iter().map(|s| s.to_string()).collect(),
                limit: 10_000,
                ..Default::default()
            })
            .await?;
        for run in runs {
            self.resume(run).await?;
        }
        Ok(())
    }

    async fn resume(&self, run: RunRecord) -> Result<(), StateError> {
        let db = &self.inner.db;
        let Some(pb) = self.playbook(&run.playbook) else {
            db.set_run_state(
                &run.id,
                rs::INTERRUPTED,
                Some("the playbook no longer exists after a restart"),
                Some(now_ms()),
            )
            .await?;
            return Ok(());
        };
        if run.state == rs::AWAITING_APPROVAL {
            self.inner.metrics.active.inc();
            self.spawn_run(pb, run, Start::Approval);
            return Ok(());
        }
        let steps = db.steps_of(&run.id).await?;
        // Steps cut short by the restart.
        let mut cut: Option<StepRecord> = None;
        for s in steps.iter().filter(|s| s.state == "running") {
            db.finish_step(
                &run.id,
                s.seq,
                "interrupted",
                None,
                Some("homeostat stopped while this step was running"),
                now_ms(),
            )
            .await?;
            cut = Some(s.clone());
        }
        let done = |phase: &str| {
            steps
                .iter()
                .filter(|s| s.phase == phase && (s.state == "ok" || s.state == "dry_run"))
                .map(|s| s.idx as usize)
                .max()
                .map_or(0, |i| i + 1)
        };
        let spec_of = |s: &StepRecord| -> Option<&StepSpec> {
            let list = if s.phase == "rollback" {
                &pb.spec.on_failure.rollback
            } else {
                &pb.spec.steps
            };
            list.get(s.idx as usize)
        };
        if let Some(s) = &cut {
            let idempotent = spec_of(s).is_some_and(|sp| sp.idempotent && sp.name == s.name);
            if !idempotent {
                let why = format!(
                    "step {:?} ({}) was interrupted by a restart and is not declared idempotent; it was not repeated",
                    s.name, s.action
                );
                db.audit(
                    now_ms(),
                    "homeostat",
                    "run.interrupted",
                    &format!("run/{}", run.id),
                    &why,
                )
                .await?;
                db.set_run_state(&run.id, rs::INTERRUPTED, Some(&why), Some(now_ms()))
                    .await?;
                self.count_end(&run.playbook, rs::INTERRUPTED);
                self.escalate(&pb, &run, &why).await;
                self.after_failure(&pb).await;
                return Ok(());
            }
        }
        let start = match (run.state.as_str(), &cut) {
            (_, Some(s)) if s.phase == "rollback" => Start::Rollback(s.idx as usize),
            (_, Some(s)) => Start::Steps(s.idx as usize),
            (rs::ROLLING_BACK, None) => Start::Rollback(done("rollback")),
            (rs::VERIFYING, None) => Start::Verify,
            (rs::APPROVED, None) | (rs::PENDING, None) | (rs::RUNNING, None) => {
                Start::Steps(done("step"))
            }
            _ => Start::Steps(done("step")),
        };
        db.audit(
            now_ms(),
            "homeostat",
            "run.resumed",
            &format!("run/{}", run.id),
            &format!("resumed after a restart at {start:?}"),
        )
        .await?;
        tracing::info!(run = %run.id, playbook = %run.playbook, ?start, "resuming run after restart");
        self.inner.metrics.active.inc();
        self.spawn_run(pb, run, start);
        Ok(())
    }

    pub fn playbook(&self, name: &str) -> Option<Arc<Playbook>> {
        self.inner.playbooks.read().get(name).cloned()
    }

    pub fn playbooks(&self) -> Vec<Arc<Playbook>> {
        self.inner.playbooks.read().values().cloned().collect()
    }

    pub fn is_paused(&self, playbook: Option<&str>) -> bool {
        match playbook {
            None => self.inner.paused_all.load(Ordering::Acquire),
            Some(p) => self.inner.paused.lock().contains(p),
        }
    }

    pub fn breaker_tripped_at(&self, playbook: &str) -> Option<i64> {
        self.inner.tripped.lock().get(playbook).copied()
    }

    /// Pauses automatic runs of one playbook or (None) all.
    pub async fn pause(&self, playbook: Option<&str>, by: &str) -> Result<(), EngineError> {
        let key = match playbook {
            None => {
                self.inner.paused_all.store(true, Ordering::Release);
                self.inner.metrics.paused.set(1);
                GLOBAL_PAUSE.to_string()
            }
            Some(p) => {
                self.require(p)?;
                self.inner.paused.lock().insert(p.to_string());
                format!("pause:{p}")
            }
        };
        let at = now_ms();
        self.inner.db.set_flag(&key, "paused", at, by).await?;
        self.inner
            .db
            .audit(
                at,
                by,
                "pause",
                playbook.unwrap_or("*"),
                "automatic runs paused",
            )
            .await?;
        tracing::warn!(playbook = playbook.unwrap_or("*"), by, "playbooks paused");
        Ok(())
    }

    /// Resumes automatic runs; for one playbook this also resets its own
    /// breaker.
    pub async fn resume_runs(&self, playbook: Option<&str>, by: &str) -> Result<(), EngineError> {
        let at = now_ms();
        match playbook {
            None => {
                self.inner.paused_all.store(false, Ordering::Release);
                self.inner.metrics.paused.set(0);
                self.inner.db.clear_flag(GLOBAL_PAUSE).await?;
            }
            Some(p) => {
                self.require(p)?;
                self.inner.paused.lock().remove(p);
                self.inner.tripped.lock().remove(p);
                self.inner
                    .metrics
                    .breaker_open
                    .get_or_create(&PlaybookLabel {
                        playbook: p.to_string(),
                    })
                    .set(0);
                self.inner.db.clear_flag(&format!("pause:{p}")).await?;
                self.inner.db.clear_flag(&format!("breaker:{p}")).await?;
            }
        }
        self.inner
            .db
            .audit(
                at,
                by,
                "resume",
                playbook.unwrap_or("*"),
                "automatic runs resumed",
            )
            .await?;
        tracing::info!(playbook = playbook.unwrap_or("*"), by, "playbooks resumed");
        Ok(())
    }

    /// Why automatic runs for `target` are held, if they are.
    pub fn held(&self, target: &str) -> Option<String> {
        self.inner.held.lock().get(target).cloned()
    }

    /// Every held target with the reason, sorted.
    pub fn holds(&self) -> Vec<(String, String)> {
        let mut v: Vec<_> = self
            .inner
            .held
            .lock()
            .iter()
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect();
        v.sort();
        v
    }

    /// Holds automatic runs whose target is `target` (a person is working
    /// on it, e.g. acknowledged the incident); manual runs still go.
    /// Survives a restart.
    pub async fn hold(&self, target: &str, reason: &str, by: &str) -> Result<(), EngineError> {
        let at = now_ms();
        self.inner
            .held
            .lock()
            .insert(target.to_string(), reason.to_string());
        let db = &self.inner.db;
        db.set_flag(&format!("hold:{target}"), reason, at, by)
            .await?;
        db.audit(at, by, "hold", &format!("target/{target}"), reason)
            .await?;
        tracing::warn!(target = %target, by, reason, "automatic runs held for target");
        Ok(())
    }

    /// Lifts a [`PlaybookEngine::hold`]; returns whether there was one.
    pub async fn release(&self, target: &str, by: &str) -> Result<bool, EngineError> {
        if self.inner.held.lock().remove(target).is_none() {
            return Ok(false);
        }
        let at = now_ms();
        let db = &self.inner.db;
        db.clear_flag(&format!("hold:{target}")).await?;
        db.audit(
            at,
            by,
            "release",
            &format!("target/{target}"),
            "automatic runs no longer held",
        )
        .await?;
        tracing::info!(target = %target, by, "automatic runs released for target");
        Ok(true)
    }

    fn require(&self, name: &str) -> Result<Arc<Playbook>, EngineError> {
        self.playbook(name)
            .ok_or_else(|| EngineError::UnknownPlaybook(name.to_string()))
    }

    /// Approves or denies a run waiting for approval.
    pub async fn decide(
        &self,
        id: &str,
        approve: bool,
        by: &str,
    ) -> Result<RunRecord, EngineError> {
        let at = now_ms();
        if !self.inner.db.decide_run(id, approve, by, at).await? {
            return match self.inner.db.get_run(id).await? {
                None => Err(EngineError::UnknownRun(id.to_string())),
                Some(r) => Err(EngineError::Conflict(format!(
                    "run {id} is {}, not awaiting approval",
                    r.state
                ))),
            };
        }
        self.inner
            .db
            .audit(
                at,
                by,
                if approve { "run.approve" } else { "run.deny" },
                &format!("run/{id}"),
                "",
            )
            .await?;
        if let Some(n) = self.inner.waiting.lock().get(id) {
            n.notify_one();
        }
        self.inner
            .db
            .get_run(id)
            .await?
            .ok_or_else(|| EngineError::UnknownRun(id.to_string()))
    }

    /// Reacts to an alert transition from the rules stage.
    pub async fn on_alert(&self, ev: &AlertEvent) {
        let resolved = match ev.transition {
            "firing" => false,
            "resolved" => true,
            _ => return,
        };
        let labels: Vec<(String, String)> = ev
            .alert
            .labels
            .iter()
            .map(|l| (l.name.to_string(), l.value.to_string()))
            .collect();
        let detail = json!({
            "alertname": ev.rule,
            "group": ev.group,
            "transition": ev.transition,
            "active_at_ms": ev.alert.active_at,
            "fired_at_ms": ev.alert.fired_at,
            "event_at_ms": ev.at_ms,
        });
        self.on_alert_labels(&ev.rule, &labels, ev.alert.value, resolved, detail, "rules")
            .await;
    }

    /// Starts every playbook whose alert trigger matches; shared by the
    /// rules stage and alerts arriving by webhook.
    pub async fn on_alert_labels(
        &self,
        alertname: &str,
        labels: &[(String, String)],
        value: f64,
        resolved: bool,
        detail: Value,
        source: &str,
    ) {
        let get = |n: &str| {
            labels
                .iter()
                .find(|(k, _)| k == n)
                .map_or("", |(_, v)| v.as_str())
        };
        let matching: Vec<String> = self
            .inner
            .playbooks
            .read()
            .values()
            .filter(|p| match &p.trigger {
                Trigger::Alert {
                    name,
                    matchers,
                    on_resolved,
                } => {
                    name == alertname
                        && *on_resolved == resolved
                        && matchers.iter().all(|m| m.matches(get(&m.name)))
                }
                _ => false,
            })
            .map(|p| p.spec.name.clone())
            .collect();
        for name in matching {
            let req = TriggerRequest {
                playbook: name.clone(),
                target: None,
                labels: labels.to_vec(),
                value,
                kind: "alert".into(),
                detail: detail.clone(),
                dry_run: false,
                requested_by: format!("alert {alertname} ({source})"),
            };
            if let Err(e) = self.trigger(req).await {
                tracing::warn!(playbook = %name, alert = alertname, error = %e, "cannot start playbook");
            }
        }
    }

    /// Consumes alert events until shutdown.
    pub async fn watch_alerts(self, mut rx: tokio::sync::broadcast::Receiver<AlertEvent>) {
        loop {
            let ev = tokio::select! {
                _ = self.inner.shutdown.cancelled() => return,
                ev = rx.recv() => ev,
            };
            match ev {
                Ok(ev) => self.on_alert(&ev).await,
                Err(tokio::sync::broadcast::error::RecvError::Lagged(n)) => {
                    tracing::warn!(missed = n, "playbook engine missed alert events");
                }
                Err(_) => return,
            }
        }
    }

    async fn condition_loop(
        self,
        name: String,
        expr: String,
        hold: Duration,
        every: Duration,
        stop: CancellationToken,
    ) {
        // Per series: since when it holds, and whether it already triggered.
        let mut since: HashMap<String, (i64, bool)> = HashMap::new();
        let mut tick = tokio::time::interval(every);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Skip);
        loop {
            tokio::select! {
                _ = stop.cancelled() => return,
                _ = tick.tick() => {}
            }
            let now = now_ms();
            let result = {
                let q = self.inner.query.read().clone();
                let store = self.inner.store.clone();
                let e = expr.clone();
                tokio::task::spawn_blocking(move || q.instant_query(store.as_ref(), &e, now)).await
            };
            let samples: Vec<(Vec<(String, String)>, f64)> = match result {
                Ok(Ok(out)) => match out.value {
                    QueryValue::Vector(v) => v
                        .into_iter()
                        .map(|s| {
                            (
                                s.labels
                                    .iter()
                                    .filter(|l| &*l.name != "__name__")
                                    .map(|l| (l.name.to_string(), l.value.to_string()))
                                    .collect(),
                                s.v,
                            )
                        })
                        .collect(),
                    QueryValue::Scalar { v, .. } if v != 0.0 => vec![(Vec::new(), v)],
                    _ => Vec::new(),
                },
                Ok(Err(e)) => {
                    tracing::warn!(playbook = %name, error = %e, "trigger condition failed");
                    continue;
                }
                Err(_) => continue,
            };
            let mut seen = HashSet::new();
            for (labels, v) in samples {
                let key = format!("{labels:?}");
                seen.insert(key.clone());
                let e = since.entry(key).or_insert((now, false));
                if !e.1 && now - e.0 >= hold.as_millis() as i64 {
                    e.1 = true;
                    let req = TriggerRequest {
                        playbook: name.clone(),
                        target: None,
                        labels,
                        value: v,
                        kind: "condition".into(),
                        detail: json!({ "expr": expr, "held_since_ms": e.0 }),
                        dry_run: false,
                        requested_by: "condition".into(),
                    };
                    if let Err(err) = self.trigger(req).await {
                        tracing::warn!(playbook = %name, error = %err, "cannot start playbook");
                    }
                }
            }
            // A series that stopped holding starts over.
            since.retain(|k, _| seen.contains(k));
        }
    }

    async fn schedule_loop(self, name: String, every: Duration, stop: CancellationToken) {
        let mut tick = tokio::time::interval_at(tokio::time::Instant::now() + every, every);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Skip);
        loop {
            tokio::select! {
                _ = stop.cancelled() => return,
                _ = tick.tick() => {}
            }
            let req = TriggerRequest {
                playbook: name.clone(),
                target: None,
                labels: Vec::new(),
                value: 0.0,
                kind: "schedule".into(),
                detail: json!({ "every_seconds": every.as_secs_f64() }),
                dry_run: false,
                requested_by: "schedule".into(),
            };
            if let Err(e) = self.trigger(req).await {
                tracing::warn!(playbook = %name, error = %e, "cannot start scheduled playbook");
            }
        }
    }

    fn next_id(&self) -> String {
        let n = self.inner.seq.fetch_add(1, Ordering::Relaxed);
        format!("{:x}-{:x}-{n}", now_ms(), std::process::id())
    }

    /// Checks guards and records a run: started, awaiting approval, or
    /// skipped with the guard that stopped it.
    pub async fn trigger(&self, req: TriggerRequest) -> Result<RunRecord, EngineError> {
        let pb = self.require(&req.playbook)?;
        let id = self.next_id();
        let target = match &req.target {
            Some(t) if !t.is_empty() => t.clone(),
            _ if pb.spec.target.is_empty() => {
                return Err(EngineError::BadRequest(format!(
                    "playbook {} has no target template; give a target",
                    pb.spec.name
                )))
            }
            _ => render(
                &pb.spec.target,
                &RenderData {
                    labels: &req.labels,
                    value: req.value,
                    target: "",
                    playbook: &pb.spec.name,
                    run_id: &id,
                },
            )
            .map_err(|e| EngineError::BadRequest(format!("target template: {e}")))?,
        };
        if target.is_empty() {
            return Err(EngineError::BadRequest(format!(
                "the target of playbook {} rendered empty (missing label?)",
                pb.spec.name
            )));
        }
        let automatic = req.kind != "manual";
        let g = &pb.spec.guards;
        let dry_run = req.dry_run || g.dry_run || self.inner.cfg.read().dry_run;
        let now = now_ms();
        let _gate = self.inner.gate.lock().await;
        let db = &self.inner.db;
        let mut blocked: Option<(&str, String)> = None;
        if automatic && self.inner.paused_all.load(Ordering::Acquire) {
            blocked = Some((
                "pause",
                "automatic runs are paused for all playbooks".into(),
            ));
        } else if automatic && self.inner.paused.lock().contains(&pb.spec.name) {
            blocked = Some(("pause", format!("playbook {} is paused", pb.spec.name)));
        } else if automatic && self.breaker_tripped_at(&pb.spec.name).is_some() {
            blocked = Some((
                "breaker",
                format!(
                    "playbook {} failed too often and its breaker is open; resume it once fixed",
                    pb.spec.name
                ),
            ));
        } else if let Some(why) = automatic.then(|| self.held(&target)).flatten() {
            blocked = Some((
                "held",
                format!("automatic runs for target {target} are held: {why}"),
            ));
        }
        if blocked.is_none() {
            let active = db
                .list_runs(&RunFilter {
                    playbook: Some(pb.spec.name.clone()),
                    target: Some(target.clone()),
                    states: rs::ACTIVE.iter().map(|s| s.to_string()).collect(),
                    limit: 10,
                })
                .await?;
            if let Some(r) = active.iter().find(|r| r.dry_run == dry_run) {
                blocked = Some((
                    "dedup",
                    format!("run {} for this target is still {}", r.id, r.state),
                ));
            }
        }
        if blocked.is_none() && automatic && !dry_run && !g.cooldown.0.is_zero() {
            if let Some(last) = db
                .last_acting_run_ms(&pb.spec.name, &target, &rs::ACTED)
                .await?
            {
                let until = last + g.cooldown.0.as_millis() as i64;
                if now < until {
                    blocked = Some((
                        "cooldown",
                        format!(
                            "cooldown {}: the last run for this target ended {}s ago",
                            g.cooldown,
                            (now - last) / 1000
                        ),
                    ));
                }
            }
        }
        if let (None, Some(max), true, false) = (&blocked, g.max_runs, automatic, dry_run) {
            let since = now - g.window.0.as_millis() as i64;
            let n = db
                .count_runs_since(&pb.spec.name, None, since, &rs::ACTED)
                .await?;
            if n >= i64::from(max) {
                blocked = Some((
                    "max_runs",
                    format!("{n} runs in the last {}, at the limit of {max}", g.window),
                ));
            }
        }
        let approval = g.approval.as_ref().filter(|_| !dry_run);
        let (state, reason, expires) = match (&blocked, approval) {
            (Some((_, why)), _) => (rs::SKIPPED, Some(why.clone()), None),
            (None, Some(a)) => (
                rs::AWAITING_APPROVAL,
                None,
                Some(now + a.timeout.0.as_millis() as i64),
            ),
            (None, None) => (rs::PENDING, None, None),
        };
        let run = RunRecord {
            id,
            playbook: pb.spec.name.clone(),
            target,
            trigger: req.kind.clone(),
            trigger_detail: req.detail.clone(),
            labels: req.labels.clone(),
            value: req.value,
            dry_run,
            state: state.to_string(),
            reason,
            requested_by: req.requested_by.clone(),
            decided_by: None,
            decided_at_ms: None,
            created_ms: now,
            started_ms: None,
            finished_ms: blocked.as_ref().map(|_| now),
            expires_ms: expires,
            verify: None,
        };
        db.insert_run(&run).await?;
        drop(_gate);
        let subject = format!("run/{}", run.id);
        if let Some((guard, why)) = &blocked {
            self.inner
                .metrics
                .blocked
                .get_or_create(&GuardLabels {
                    playbook: run.playbook.clone(),
                    guard: guard.to_string(),
                })
                .inc();
            db.audit(now, &req.requested_by, "run.skipped", &subject, why)
                .await?;
            tracing::info!(run = %run.id, playbook = %run.playbook, target = %run.target, guard, reason = %why, "playbook run skipped by guard");
            if *guard == "breaker" {
                self.escalate(&pb, &run, why).await;
            }
            return Ok(run);
        }
        db.audit(
            now,
            &req.requested_by,
            "run.created",
            &subject,
            &format!(
                "{} trigger, target {}{}",
                run.trigger,
                run.target,
                if dry_run { ", dry run" } else { "" }
            ),
        )
        .await?;
        tracing::info!(run = %run.id, playbook = %run.playbook, target = %run.target, trigger = %run.trigger, dry_run, state, "playbook run created");
        self.inner.metrics.active.inc();
        let start = if state == rs::AWAITING_APPROVAL {
            self.notice(&pb, &run, "awaiting approval").await;
            Start::Approval
        } else {
            Start::Steps(0)
        };
        self.spawn_run(pb, run.clone(), start);
        Ok(run)
    }

    fn spawn_run(&self, pb: Arc<Playbook>, run: RunRecord, start: Start) {
        let me = self.clone();
        self.inner.tracker.spawn(async move {
            let id = run.id.clone();
            if let Err(e) = me.drive(pb, run, start).await {
                tracing::error!(run = %id, error = %e, "playbook run stopped: state database error");
            }
            me.inner.metrics.active.dec();
        });
    }

    async fn drive(
        &self,
        pb: Arc<Playbook>,
        run: RunRecord,
        start: Start,
    ) -> Result<(), StateError> {
        let db = &self.inner.db;
        let mut start = start;
        if let Start::Approval = start {
            match self.await_approval(&run).await? {
                Some(true) => start = Start::Steps(0),
                Some(false) => {
                    self.count_end(&run.playbook, rs::DENIED);
                    return Ok(());
                }
                // Shutting down: the run stays waiting and resumes at start.
                None => return Ok(()),
            }
        }
        if !matches!(start, Start::Rollback(_)) {
            db.set_run_started(&run.id, now_ms()).await?;
        }
        if let Start::Steps(from) = start {
            self.notice(&pb, &run, "started").await;
            for (idx, step) in pb.spec.steps.iter().enumerate().skip(from) {
                if self.inner.shutdown.is_cancelled() {
                    return Ok(());
                }
                if let StepEnd::Failed(why) = self.run_step(&pb, &run, "step", idx, step).await? {
                    return self.fail(&pb, &run, &why, 0).await;
                }
            }
        }
        if matches!(start, Start::Steps(_) | Start::Verify) {
            if let Some(v) = pb.spec.verify.as_ref().filter(|_| !run.dry_run) {
                db.set_run_state(&run.id, rs::VERIFYING, None, None).await?;
                let outcome = self.verify(&pb, &run, v).await;
                db.set_run_verify(&run.id, &outcome.1).await?;
                if !outcome.0 {
                    let why = format!(
                        "verification {:?} did not hold within {}",
                        outcome.1["expr"].as_str().unwrap_or_default(),
                        v.within
                    );
                    return self.fail(&pb, &run, &why, 0).await;
                }
            }
            db.set_run_state(&run.id, rs::SUCCEEDED, None, Some(now_ms()))
                .await?;
            db.audit(
                now_ms(),
                "homeostat",
                "run.succeeded",
                &format!("run/{}", run.id),
                "",
            )
            .await?;
            tracing::info!(run = %run.id, playbook = %run.playbook, target = %run.target, dry_run = run.dry_run, "playbook run succeeded");
            self.count_end(&run.playbook, rs::SUCCEEDED);
            self.notice(&pb, &run, "succeeded").await;
            return Ok(());
        }
        if let Start::Rollback(from) = start {
            let why = run
                .reason
                .clone()
                .unwrap_or_else(|| "resumed rollback".into());
            return self.fail(&pb, &run, &why, from).await;
        }
        Ok(())
    }

    /// Waits for a decision; Some(approved) or None on shutdown.
    async fn await_approval(&self, run: &RunRecord) -> Result<Option<bool>, StateError> {
        let notify = Arc::new(Notify::new());
        self.inner
            .waiting
            .lock()
            .insert(run.id.clone(), notify.clone());
        let result = loop {
            let cur = self.inner.db.get_run(&run.id).await?;
            match cur.as_ref().map(|r| r.state.as_str()) {
                Some(rs::APPROVED) => break Some(true),
                Some(rs::AWAITING_APPROVAL) => {}
                _ => break Some(false),
            }
            let left = run.expires_ms.unwrap_or(i64::MAX) - now_ms();
            if left <= 0 {
                // Conditional: a decision that just landed wins.
                if self
                    .inner
                    .db
                    .decide_run(&run.id, false, "homeostat (approval expired)", now_ms())
                    .await?
                {
                    self.inner
                        .db
                        .set_run_state(
                            &run.id,
                            rs::EXPIRED,
                            Some("no decision before the approval timeout"),
                            Some(now_ms()),
                        )
                        .await?;
                    self.inner
                        .db
                        .audit(
                            now_ms(),
                            "homeostat",
                            "run.expired",
                            &format!("run/{}", run.id),
                            "",
                        )
                        .await?;
                    self.count_end(&run.playbook, rs::EXPIRED);
                    break Some(false);
                }
                continue;
            }
            tokio::select! {
                _ = notify.notified() => {}
                _ = tokio::time::sleep(Duration::from_millis(left.min(60_000) as u64)) => {}
                _ = self.inner.shutdown.cancelled() => break None,
            }
        };
        self.inner.waiting.lock().remove(&run.id);
        Ok(result)
    }

    async fn run_step(
        &self,
        pb: &Playbook,
        run: &RunRecord,
        phase: &str,
        idx: usize,
        step: &StepSpec,
    ) -> Result<StepEnd, StateError> {
        let db = &self.inner.db;
        let seq = db.steps_of(&run.id).await?.len() as i64;
        let data = RenderData {
            labels: &run.labels,
            value: run.value,
            target: &run.target,
            playbook: &run.playbook,
            run_id: &run.id,
        };
        let raw = if step.params.is_null() {
            Value::Object(Default::default())
        } else {
            step.params.clone()
        };
        let rendered = render_value(&raw, &data);
        let inputs = rendered.clone().unwrap_or(Value::Null);
        let started = now_ms();
        let mut rec = StepRecord {
            run_id: run.id.clone(),
            seq,
            phase: phase.into(),
            idx: idx as i64,
            name: step.name.clone(),
            action: step.action.clone(),
            state: "running".into(),
            inputs: inputs.clone(),
            output: None,
            error: None,
            started_ms: started,
            finished_ms: None,
        };
        db.begin_step(&rec).await?;
        let Some(action) = self.inner.actions.get(&step.action).cloned() else {
            let why = format!("unknown action {:?}", step.action);
            db.finish_step(&run.id, seq, "failed", None, Some(&why), now_ms())
                .await?;
            return Ok(StepEnd::Failed(why));
        };
        let params = match rendered {
            Ok(p) => p,
            Err(e) => {
                let why = format!("step {:?}: template: {e}", step.name);
                db.finish_step(&run.id, seq, "failed", None, Some(&why), now_ms())
                    .await?;
                return Ok(StepEnd::Failed(why));
            }
        };
        if run.dry_run {
            let d = action.describe(&params);
            tracing::info!(run = %run.id, step = %step.name, "dry run: would {d}");
            db.finish_step(
                &run.id,
                seq,
                "dry_run",
                Some(&json!({ "would": d })),
                None,
                now_ms(),
            )
            .await?;
            self.count_step(&step.action, "dry_run");
            return Ok(StepEnd::Ok);
        }
        let timeout = step.timeout.map(|t| t.0).unwrap_or(Duration::from_secs(60));
        let deps = self.inner.deps.read().clone();
        let ctx = Ctx {
            run_id: &run.id,
            playbook: &pb.spec.name,
            target: &run.target,
            timeout,
            deps: &deps,
        };
        tracing::info!(run = %run.id, step = %step.name, action = %step.action, phase, "step started");
        let result = match tokio::time::timeout(timeout, action.execute(&ctx, &params)).await {
            Ok(r) => r,
            Err(_) => Err(ActionError::Failed(format!(
                "step {:?} timed out after {}",
                step.name,
                crate::config::PromDuration(timeout)
            ))),
        };
        let end = now_ms();
        let (state, out) = match result {
            Ok(v) => {
                rec.output = Some(v);
                ("ok", StepEnd::Ok)
            }
            Err(e) => {
                let refused = matches!(e, ActionError::Refused(_));
                rec.error = Some(e.to_string());
                (
                    if refused { "refused" } else { "failed" },
                    StepEnd::Failed(format!("step {:?} ({}): {e}", step.name, step.action)),
                )
            }
        };
        db.finish_step(
            &run.id,
            seq,
            state,
            rec.output.as_ref(),
            rec.error.as_deref(),
            end,
        )
        .await?;
        self.count_step(&step.action, state);
        tracing::info!(run = %run.id, step = %step.name, state, duration_ms = end - started, error = rec.error.as_deref().unwrap_or(""), "step finished");
        Ok(out)
    }

    /// Polls the verify expression until it returns something or the
    /// deadline passes.
    async fn verify(
        &self,
        pb: &Playbook,
        run: &RunRecord,
        v: &super::file::VerifySpec,
    ) -> (bool, Value) {
        let data = RenderData {
            labels: &run.labels,
            value: run.value,
            target: &run.target,
            playbook: &pb.spec.name,
            run_id: &run.id,
        };
        let expr = match render(&v.expr, &data) {
            Ok(e) => e,
            Err(e) => return (false, json!({ "expr": v.expr, "error": e })),
        };
        let started = now_ms();
        let deadline = started + v.within.0.as_millis() as i64;
        let every = v.interval.map(|d| d.0).unwrap_or(Duration::from_secs(5));
        let mut last_error = None;
        let mut checks = 0u32;
        loop {
            checks += 1;
            let now = now_ms();
            let q = self.inner.query.read().clone();
            let store = self.inner.store.clone();
            let e = expr.clone();
            let r =
                tokio::task::spawn_blocking(move || q.instant_query(store.as_ref(), &e, now)).await;
            let held = match r {
                Ok(Ok(out)) => match out.value {
                    QueryValue::Vector(v) => !v.is_empty(),
                    QueryValue::Scalar { v, .. } => v != 0.0,
                    _ => false,
                },
                Ok(Err(e)) => {
                    last_error = Some(e.to_string());
                    false
                }
                Err(_) => false,
            };
            if held {
                return (
                    true,
                    json!({ "expr": expr, "held": true, "after_ms": now - started, "checks": checks }),
                );
            }
            if now + every.as_millis() as i64 > deadline {
                return (
                    false,
                    json!({ "expr": expr, "held": false, "checks": checks, "error": last_error }),
                );
            }
            tokio::select! {
                _ = tokio::time::sleep(every) => {}
                _ = self.inner.shutdown.cancelled() => {
                    return (false, json!({ "expr": expr, "held": false, "error": "homeostat stopped" }));
                }
            }
        }
    }

    /// Rollback (from `from`), escalation, the playbook's own breaker.
    async fn fail(
        &self,
        pb: &Playbook,
        run: &RunRecord,
        why: &str,
        from: usize,
    ) -> Result<(), StateError> {
        let db = &self.inner.db;
        tracing::warn!(run = %run.id, playbook = %run.playbook, target = %run.target, reason = why, "playbook run failed");
        let rollback = &pb.spec.on_failure.rollback;
        let mut why = why.to_string();
        if !rollback.is_empty() && !run.dry_run {
            db.set_run_state(&run.id, rs::ROLLING_BACK, Some(&why), None)
                .await?;
            for (idx, step) in rollback.iter().enumerate().skip(from) {
                if self.inner.shutdown.is_cancelled() {
                    return Ok(());
                }
                if let StepEnd::Failed(e) = self.run_step(pb, run, "rollback", idx, step).await? {
                    why = format!("{why}; rollback failed: {e}");
                    break;
                }
            }
        }
        let escalate = pb.spec.on_failure.escalate;
        let state = if escalate { rs::ESCALATED } else { rs::FAILED };
        db.set_run_state(&run.id, state, Some(&why), Some(now_ms()))
            .await?;
        db.audit(
            now_ms(),
            "homeostat",
            &format!("run.{state}"),
            &format!("run/{}", run.id),
            &why,
        )
        .await?;
        self.count_end(&run.playbook, state);
        if escalate {
            self.escalate(pb, run, &why).await;
        } else {
            self.notice(pb, run, "failed").await;
        }
        if !run.dry_run {
            self.after_failure(pb).await;
        }
        Ok(())
    }

    /// Trips the playbook's own breaker when it failed too often.
    async fn after_failure(&self, pb: &Playbook) {
        let b = &pb.spec.guards.breaker;
        let since = now_ms() - b.window.0.as_millis() as i64;
        let n = match self
            .inner
            .db
            .count_runs_since(&pb.spec.name, None, since, &rs::FAILURES)
            .await
        {
            Ok(n) => n,
            Err(e) => {
                tracing::warn!(error = %e, "cannot count failed runs");
                return;
            }
        };
        if n < i64::from(b.failures) || self.breaker_tripped_at(&pb.spec.name).is_some() {
            return;
        }
        let at = now_ms();
        self.inner.tripped.lock().insert(pb.spec.name.clone(), at);
        self.inner
            .metrics
            .breaker_open
            .get_or_create(&PlaybookLabel {
                playbook: pb.spec.name.clone(),
            })
            .set(1);
        let why = format!(
            "{n} failed runs within {}: automatic runs stop until a person resumes the playbook",
            b.window
        );
        let _ = self
            .inner
            .db
            .set_flag(
                &format!("breaker:{}", pb.spec.name),
                "open",
                at,
                "homeostat",
            )
            .await;
        let _ = self
            .inner
            .db
            .audit(
                at,
                "homeostat",
                "playbook.breaker_open",
                &pb.spec.name,
                &why,
            )
            .await;
        tracing::error!(playbook = %pb.spec.name, reason = %why, "playbook breaker tripped");
        let mut labels = BTreeMap::new();
        labels.insert("playbook".to_string(), pb.spec.name.clone());
        let escalator = self.inner.deps.read().escalator.clone();
        let _ = escalator
            .send(Message {
                alertname: "HomeostatPlaybookEscalation".into(),
                severity: self.severity(),
                summary: format!("playbook {} stopped: {why}", pb.spec.name),
                labels,
                annotations: BTreeMap::new(),
            })
            .await;
    }

    fn severity(&self) -> String {
        self.inner.cfg.read().escalation.severity.clone()
    }

    async fn escalate(&self, pb: &Playbook, run: &RunRecord, why: &str) {
        let mut labels = BTreeMap::new();
        labels.insert("playbook".to_string(), pb.spec.name.clone());
        labels.insert("target".to_string(), run.target.clone());
        let mut annotations = BTreeMap::new();
        annotations.insert("run_id".to_string(), run.id.clone());
        annotations.insert("description".to_string(), pb.spec.description.clone());
        let escalator = self.inner.deps.read().escalator.clone();
        let r = escalator
            .send(Message {
                alertname: "HomeostatPlaybookEscalation".into(),
                severity: self.severity(),
                summary: format!("{} on {}: {why}", pb.spec.name, run.target),
                labels,
                annotations,
            })
            .await;
        let detail = match &r {
            Ok(v) => v.to_string(),
            Err(e) => format!("escalation failed: {e}"),
        };
        let _ = self
            .inner
            .db
            .audit(
                now_ms(),
                "homeostat",
                "run.escalation",
                &format!("run/{}", run.id),
                &detail,
            )
            .await;
    }

    /// Lifecycle notices (started, awaiting approval, succeeded, failed
    /// without escalation). The escalator routes them through the notify
    /// stage; to Alertmanager and webhooks only with
    /// `playbooks.notify_lifecycle`.
    async fn notice(&self, pb: &Playbook, run: &RunRecord, what: &str) {
        let mut labels = BTreeMap::new();
        labels.insert("playbook".to_string(), pb.spec.name.clone());
        labels.insert("target".to_string(), run.target.clone());
        labels.insert("event".to_string(), what.replace(' ', "_"));
        let mut annotations = BTreeMap::new();
        annotations.insert("run_id".to_string(), run.id.clone());
        let escalator = self.inner.deps.read().escalator.clone();
        let _ = escalator
            .send(Message {
                alertname: "HomeostatPlaybookNotice".into(),
                severity: "info".into(),
                summary: format!("{} on {}: {what}", pb.spec.name, run.target),
                labels,
                annotations,
            })
            .await;
    }

    fn count_end(&self, playbook: &str, state: &str) {
        self.inner
            .metrics
            .runs
            .get_or_create(&RunLabels {
                playbook: playbook.to_string(),
                result: state.to_string(),
            })
            .inc();
    }

    fn count_step(&self, action: &str, result: &str) {
        self.inner
            .metrics
            .steps
            .get_or_create(&StepLabels {
                action: action.to_string(),
                result: result.to_string(),
            })
            .inc();
    }

    pub async fn runs(&self, f: &RunFilter) -> Result<Vec<RunRecord>, StateError> {
        self.inner.db.list_runs(f).await
    }

    pub async fn run_with_steps(
        &self,
        id: &str,
    ) -> Result<Option<(RunRecord, Vec<StepRecord>)>, StateError> {
        let Some(r) = self.inner.db.get_run(id).await? else {
            return Ok(None);
        };
        let steps = self.inner.db.steps_of(id).await?;
        Ok(Some((r, steps)))
    }

    pub fn state_db(&self) -> &StateDb {
        &self.inner.db
    }
}

/// Where a run (re)starts.
#[derive(Debug, Clone, Copy)]
enum Start {
    Approval,
    Steps(usize),
    Verify,
    Rollback(usize),
}
