//! The autoscalers in the daemon: one task per `autoscale` entry.
//!
//! Owns the cycle (sample the demand history, run the policy, hand a changed count to
//! the playbook engine), model persistence and the `homeostat_autoscale_*` metrics.
//! Must not decide anything itself (that is [`super::policy`], shared with
//! `homeostat replay`) nor touch the platform directly (that is the playbook's `scale`
//! step, under the engine's guards and audit).

use std::sync::Arc;

use parking_lot::Mutex;
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::registry::Registry;
use serde_json::json;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use super::{AutoscaleConfig, Mode, Policy};
use crate::collect::now_ms;
use crate::forecast::history::HistoryFeed;
use crate::playbooks::{PlaybookEngine, TriggerRequest};

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct Name {
    autoscale: String,
}

#[derive(Clone, Default)]
struct Metrics {
    desired: Family<Name, Gauge>,
    reactive: Family<Name, Gauge>,
    predictive_need: Family<Name, Gauge>,
    predictive: Family<Name, Gauge>,
    upper: Family<Name, Gauge<f64, std::sync::atomic::AtomicU64>>,
    mase: Family<Name, Gauge<f64, std::sync::atomic::AtomicU64>>,
}

/// Decisions kept per autoscaler for the API (at one a minute, six hours).
const KEEP_DECISIONS: usize = 360;

/// What one autoscaler last did, for `/api/v1/autoscalers` and the dashboard.
#[derive(Default)]
struct View {
    decisions: std::collections::VecDeque<super::Decision>,
    /// The count last handed to the playbook (a run was created for it).
    applied: Option<u32>,
    forecast: Option<serde_json::Value>,
    trained_at_ms: Option<i64>,
    periods_s: Vec<f64>,
    train_error: Option<String>,
}

/// Starts and stops the per-entry tasks; `apply` replaces them on reload.
#[derive(Clone)]
pub struct Autoscalers {
    running: Arc<Mutex<(Vec<AutoscaleConfig>, CancellationToken)>>,
    metrics: Metrics,
    deps: Arc<Deps>,
    views: Arc<Mutex<std::collections::BTreeMap<String, View>>>,
}

/// What the autoscaler tasks read and act through.
pub struct Deps {
    pub history: crate::forecast::history::Sources,
    pub playbooks: PlaybookEngine,
    pub tracker: TaskTracker,
    pub shutdown: CancellationToken,
}

impl Autoscalers {
    pub fn new(reg: &mut Registry, deps: Deps) -> Self {
        let metrics = Metrics::default();
        reg.register(
            "homeostat_autoscale_desired_replicas",
            "Replicas the autoscaler last asked for.",
            metrics.desired.clone(),
        );
        reg.register(
            "homeostat_autoscale_reactive_replicas",
            "Reactive need: current demand at the target utilization (HPA's formula).",
            metrics.reactive.clone(),
        );
        reg.register(
            "homeostat_autoscale_predictive_replicas",
            "Predictive need: the forecast's upper bound over the lead time at full capacity.",
            metrics.predictive_need.clone(),
        );
        reg.register(
            "homeostat_autoscale_predictive",
            "1 while the autoscaler trusts its forecast, 0 while it falls back to reactive.",
            metrics.predictive.clone(),
        );
        reg.register(
            "homeostat_autoscale_forecast_upper",
            "Highest forecast upper bound over the lead window, in demand units.",
            metrics.upper.clone(),
        );
        reg.register(
            "homeostat_autoscale_forecast_mase",
            "Rolling MASE of the autoscaler's recent forecasts over the lead window.",
            metrics.mase.clone(),
        );
        Autoscalers {
            running: Arc::new(Mutex::new((Vec::new(), CancellationToken::new()))),
            views: Arc::default(),
            metrics,
            deps: Arc::new(deps),
        }
    }

    /// Runs exactly `list`; unchanged lists keep their tasks (and in-memory state).
    pub fn apply(&self, list: &[AutoscaleConfig]) {
        let mut running = self.running.lock();
        if running.0 == list {
            return;
        }
        running.1.cancel();
        self.views
            .lock()
            .retain(|name, _| list.iter().any(|c| &c.name == name));
        let token = self.deps.shutdown.child_token();
        for cfg in list {
            let task = Task {
                cfg: cfg.clone(),
                metrics: self.metrics.clone(),
                deps: self.deps.clone(),
                views: self.views.clone(),
            };
            self.deps.tracker.spawn(task.run(token.clone()));
        }
        *running = (list.to_vec(), token);
    }

    /// Each autoscaler's settings, state, latest forecast and recent decisions.
    pub fn snapshot(&self) -> Vec<serde_json::Value> {
        use crate::forecast::finite;
        let running = self.running.lock();
        let views = self.views.lock();
        running
            .0
            .iter()
            .map(|c| {
                let v = views.get(&c.name);
                let last = v.and_then(|v| v.decisions.back());
                let (mode, reason) = match last.map(|d| &d.mode) {
                    Some(Mode::Predictive) => ("predictive", String::new()),
                    Some(Mode::Reactive(r)) => ("reactive", r.clone()),
                    None => ("reactive", "no decision yet (waiting for demand)".into()),
                };
                let decisions: Vec<_> = v
                    .map(|v| {
                        v.decisions
                            .iter()
                            .map(|d| {
                                json!({
                                    "t": d.at_ms as f64 / 1000.0,
                                    "desired": d.desired,
                                    "reactive": d.reactive,
                                    "predictive": d.predictive,
                                    "demand": finite(d.demand),
                                    "upper": d.upper.and_then(finite),
                                    "mode": match &d.mode { Mode::Predictive => "predictive", Mode::Reactive(_) => "reactive" },
                                    "reason": match &d.mode { Mode::Predictive => d.limited.clone().unwrap_or_default(), Mode::Reactive(r) => r.clone() },
                                })
                            })
                            .collect()
                    })
                    .unwrap_or_default();
                json!({
                    "name": c.name,
                    "target": c.name,
                    "playbook": c.playbook,
                    "demand": c.demand,
                    "capacity_per_replica": c.capacity_per_replica,
                    "target_utilization": c.target_utilization,
                    "min": c.min,
                    "max": c.max,
                    "lead_time_seconds": c.lead_time.as_duration().as_secs_f64(),
                    "mode": mode,
                    "reason": reason,
                    "current_replicas": v.and_then(|v| v.applied),
                    "desired_replicas": last.map(|d| d.desired),
                    "model": {
                        "trained_at": v.and_then(|v| v.trained_at_ms).map(|t| t as f64 / 1000.0),
                        "mase": last.and_then(|d| d.mase).and_then(finite),
                        "period_seconds": v.and_then(|v| v.periods_s.first().copied()),
                        "error": v.and_then(|v| v.train_error.clone()),
                    },
                    "forecast": v.and_then(|v| v.forecast.clone()).unwrap_or_else(|| json!([])),
                    "decisions": decisions,
                })
            })
            .collect()
    }
}

struct Task {
    cfg: AutoscaleConfig,
    metrics: Metrics,
    deps: Arc<Deps>,
    views: Arc<Mutex<std::collections::BTreeMap<String, View>>>,
}

impl Task {
    fn model_key(&self) -> String {
        format!("autoscale:{}", self.cfg.name)
    }

    async fn run(self, stop: CancellationToken) {
        let cfg = &self.cfg;
        let name = Name {
            autoscale: cfg.name.clone(),
        };
        let step = cfg.forecast.step.as_millis();
        let mut feed = match HistoryFeed::open(
            &cfg.demand,
            step,
            cfg.forecast.history.as_millis(),
            now_ms(),
            &self.deps.history,
        )
        .await
        {
            Ok(f) => f,
            Err(e) => {
                tracing::error!(autoscale = %cfg.name, error = %e, "cannot read the demand history; autoscaler not started");
                return;
            }
        };
        let mut policy = Policy::new(cfg.settings(cfg.interval.as_millis()));
        match self.deps.history.db.load_model(&self.model_key()).await {
            Ok(Some((at, body))) => match serde_json::from_str(&body) {
                Ok(m) => {
                    policy.set_model(m, at);
                    tracing::info!(autoscale = %cfg.name, trained_at_ms = at, "restored the saved model");
                }
                Err(e) => {
                    tracing::warn!(autoscale = %cfg.name, error = %e, "saved model unreadable; will retrain")
                }
            },
            Ok(None) => {}
            Err(e) => {
                tracing::warn!(autoscale = %cfg.name, error = %e, "cannot read the saved model")
            }
        }
        let mut applied: Option<u32> = None;
        let mut last_mode: Option<bool> = None;
        let mut tick = tokio::time::interval(cfg.interval.as_duration());
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                _ = stop.cancelled() => return,
                _ = tick.tick() => {}
            }
            let now = now_ms();
            if let Err(e) = feed.sample(now).await {
                tracing::warn!(autoscale = %cfg.name, error = %e, "cannot store demand history");
            }
            if feed.is_empty() {
                tracing::debug!(autoscale = %cfg.name, "no demand yet");
                continue;
            }
            let history = feed.series();
            let retrain = policy.retrain_due(now);
            let (p, decision) = tokio::task::spawn_blocking(move || {
                let d = policy.cycle(now, &history);
                (policy, d)
            })
            .await
            .unwrap_or_else(|e| panic!("autoscale policy panicked: {e}"));
            policy = p;
            if retrain {
                self.save_model(&policy, now).await;
            }
            self.metrics
                .desired
                .get_or_create(&name)
                .set(i64::from(decision.desired));
            self.metrics
                .reactive
                .get_or_create(&name)
                .set(i64::from(decision.reactive));
            self.metrics
                .predictive_need
                .get_or_create(&name)
                .set(decision.predictive.map(i64::from).unwrap_or(-1));
            let is_predictive = decision.mode == Mode::Predictive;
            self.metrics
                .predictive
                .get_or_create(&name)
                .set(i64::from(is_predictive));
            self.metrics
                .upper
                .get_or_create(&name)
                .set(decision.upper.unwrap_or(f64::NAN));
            self.metrics
                .mase
                .get_or_create(&name)
                .set(decision.mase.unwrap_or(f64::NAN));
            if last_mode != Some(is_predictive) {
                match &decision.mode {
                    Mode::Predictive => {
                        tracing::info!(autoscale = %cfg.name, "forecast trusted: scaling ahead of demand")
                    }
                    Mode::Reactive(why) => {
                        tracing::warn!(autoscale = %cfg.name, reason = %why, "falling back to reactive scaling")
                    }
                }
                last_mode = Some(is_predictive);
            }
            self.record(&policy, &decision, applied);
            if applied == Some(decision.desired) {
                continue;
            }
            if self.act(&decision).await {
                applied = Some(decision.desired);
                if let Some(v) = self.views.lock().get_mut(&cfg.name) {
                    v.applied = applied;
                }
            }
        }
    }

    fn record(&self, policy: &Policy, d: &super::Decision, applied: Option<u32>) {
        let mut views = self.views.lock();
        let v = views.entry(self.cfg.name.clone()).or_default();
        if v.decisions.len() >= KEEP_DECISIONS {
            v.decisions.pop_front();
        }
        v.decisions.push_back(d.clone());
        v.applied = applied;
        v.forecast = policy.last_forecast().map(crate::forecast::points_json);
        v.trained_at_ms = policy.trained_at_ms();
        v.periods_s = policy
            .model()
            .map(|m| {
                m.periods()
                    .iter()
                    .map(|p| (*p as i64 * m.layout.step_ms) as f64 / 1000.0)
                    .collect()
            })
            .unwrap_or_default();
        v.train_error = policy.train_error().map(str::to_string);
    }

    async fn save_model(&self, policy: &Policy, now: i64) {
        let Some(m) = policy.model() else {
            if let Some(e) = policy.train_error() {
                tracing::warn!(autoscale = %self.cfg.name, error = %e, "training failed");
            }
            return;
        };
        match serde_json::to_string(m) {
            Ok(body) => {
                if let Err(e) = self
                    .deps
                    .history
                    .db
                    .save_model(&self.model_key(), now, &body)
                    .await
                {
                    tracing::warn!(autoscale = %self.cfg.name, error = %e, "cannot save the model");
                }
            }
            Err(e) => {
                tracing::warn!(autoscale = %self.cfg.name, error = %e, "cannot encode the model")
            }
        }
    }

    /// Hands the count to the playbook; true when a run was created (not skipped by a
    /// guard), so the same count is not asked for again every cycle.
    async fn act(&self, d: &super::Decision) -> bool {
        let (mode, reason) = match &d.mode {
            Mode::Predictive => ("predictive".to_string(), String::new()),
            Mode::Reactive(r) => ("reactive".to_string(), r.clone()),
        };
        let req = TriggerRequest {
            playbook: self.cfg.playbook.clone(),
            target: Some(self.cfg.name.clone()),
            labels: vec![
                ("autoscale".into(), self.cfg.name.clone()),
                ("replicas".into(), d.desired.to_string()),
                ("mode".into(), mode),
                ("reason".into(), reason),
            ],
            value: f64::from(d.desired),
            kind: "autoscale".into(),
            detail: json!(d),
            dry_run: false,
            requested_by: format!("autoscaler {}", self.cfg.name),
        };
        match self.deps.playbooks.trigger(req).await {
            Ok(run) if run.state == crate::playbooks::engine::run_state::SKIPPED => {
                tracing::debug!(autoscale = %self.cfg.name, reason = ?run.reason, "scale run skipped by a guard");
                false
            }
            Ok(run) => {
                tracing::info!(autoscale = %self.cfg.name, replicas = d.desired, run = %run.id, "scale run started");
                true
            }
            Err(e) => {
                tracing::warn!(autoscale = %self.cfg.name, error = %e, "cannot start the scale run");
                false
            }
        }
    }
}
