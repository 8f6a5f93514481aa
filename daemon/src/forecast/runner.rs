//! The `forecasts` entries in the daemon: sample, train on schedule, publish.
//!
//! Each cycle (one `step`) the expression's history gains a point, the model is
//! refitted when `retrain` has passed, and the forecast is written to the store as
//!
//! ```text
//! homeostat_forecast{forecast="<name>", bound="yhat|lo|hi", horizon="<offset>"}
//! ```
//!
//! stamped *now*: the sample with `horizon="30m"` is what the model expects 30 minutes
//! from now (one series per step up to `horizon`). Rules, playbook `forecast`
//! triggers, the API and the dashboard read them like any series; `max without
//! (horizon)` gives the peak over the whole horizon.
//!
//! Accuracy: every forecast is kept until its steps have happened, then scored
//! against the history; `homeostat_forecast_mase` is the rolling mean over a day.

use std::collections::VecDeque;
use std::sync::Arc;

use homeostat_ml::{Forecaster, ModelConfig};
use parking_lot::Mutex;
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::registry::Registry;
use serde::Deserialize;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use super::history::HistoryFeed;
use crate::collect::now_ms;
use crate::config::units::format_duration;
use crate::config::{PromDuration, Validator};
use crate::store::Labels;

/// One `forecasts` entry.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(default)]
pub struct ForecastConfig {
    /// The `forecast` label of the published series.
    pub name: String,
    /// PromQL; several result series are summed.
    pub expr: String,
    /// How far ahead to forecast.
    pub horizon: PromDuration,
    /// Grid of the history and the forecast (also the publishing interval).
    pub step: PromDuration,
    pub retrain: PromDuration,
    /// Training history kept and used (at most 20,160 points of `step`).
    pub history: PromDuration,
    /// Central coverage of the lo/hi interval.
    pub coverage: f64,
}

impl Default for ForecastConfig {
    fn default() -> Self {
        ForecastConfig {
            name: String::new(),
            expr: String::new(),
            horizon: PromDuration::from_secs(3600),
            step: PromDuration::from_secs(60),
            retrain: PromDuration::from_secs(3600),
            history: PromDuration::from_secs(14 * 86400),
            coverage: 0.9,
        }
    }
}

impl ForecastConfig {
    pub fn steps(&self) -> usize {
        (self.horizon.as_millis() / self.step.as_millis().max(1)).max(1) as usize
    }
}

/// Validates the `forecasts` list.
pub fn validate_all(list: &[ForecastConfig], path: &str, v: &mut Validator) {
    let mut seen = std::collections::HashSet::new();
    for (i, f) in list.iter().enumerate() {
        let p = format!("{path}.{i}");
        if f.name.is_empty() {
            v.error(format!("{p}.name"), "required");
        } else if !seen.insert(f.name.clone()) {
            v.error(format!("{p}.name"), format!("duplicate name {:?}", f.name));
        }
        if f.expr.is_empty() {
            v.error(format!("{p}.expr"), "required: a PromQL expression");
        } else if let Err(e) = promql_parser::parser::parse(&f.expr) {
            v.error(format!("{p}.expr"), format!("invalid PromQL: {e}"));
        }
        if f.step.0.as_millis() < 1000 {
            v.error(format!("{p}.step"), "must be at least 1s");
        }
        if f.horizon < f.step {
            v.error(format!("{p}.horizon"), "must be at least one step");
        } else if f.steps() > 500 {
            v.error(
                format!("{p}.horizon"),
                format!(
                    "{} steps ahead; at most 500 (use a coarser step)",
                    f.steps()
                ),
            );
        }
        if f.retrain.0.is_zero() {
            v.error(format!("{p}.retrain"), "must be greater than 0");
        }
        if !(f.coverage > 0.0 && f.coverage < 1.0) {
            v.error(format!("{p}.coverage"), "must be between 0 and 1");
        }
    }
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct Name {
    forecast: String,
}

#[derive(Clone, Default)]
struct Metrics {
    trainings: Family<Name, Counter>,
    failures: Family<Name, Counter>,
    last_trained: Family<Name, Gauge<f64, std::sync::atomic::AtomicU64>>,
    train_seconds: Family<Name, Gauge<f64, std::sync::atomic::AtomicU64>>,
    mase: Family<Name, Gauge<f64, std::sync::atomic::AtomicU64>>,
}

#[derive(Clone)]
pub struct Forecasts {
    running: Arc<Mutex<(Vec<ForecastConfig>, CancellationToken)>>,
    /// Latest forecast, fit time and MASE per entry, for the API.
    views: Arc<Mutex<std::collections::BTreeMap<String, serde_json::Value>>>,
    metrics: Metrics,
    sources: super::history::Sources,
    tracker: TaskTracker,
    shutdown: CancellationToken,
}

impl Forecasts {
    pub fn new(
        reg: &mut Registry,
        sources: super::history::Sources,
        tracker: TaskTracker,
        shutdown: CancellationToken,
    ) -> Self {
        let metrics = Metrics::default();
        reg.register(
            "homeostat_forecast_trainings",
            "Model fits, successful or not.",
            metrics.trainings.clone(),
        );
        reg.register(
            "homeostat_forecast_training_failures",
            "Model fits that failed (the previous model stays in use).",
            metrics.failures.clone(),
        );
        reg.register(
            "homeostat_forecast_last_training_timestamp_seconds",
            "When the model in use was fitted.",
            metrics.last_trained.clone(),
        );
        reg.register(
            "homeostat_forecast_training_duration_seconds",
            "How long the last fit took.",
            metrics.train_seconds.clone(),
        );
        reg.register(
            "homeostat_forecast_mase",
            "Rolling (1 day) MASE of past forecasts against what then happened.",
            metrics.mase.clone(),
        );
        Forecasts {
            running: Arc::new(Mutex::new((Vec::new(), CancellationToken::new()))),
            views: Arc::default(),
            metrics,
            sources,
            tracker,
            shutdown,
        }
    }

    pub fn apply(&self, list: &[ForecastConfig]) {
        let mut running = self.running.lock();
        if running.0 == list {
            return;
        }
        running.1.cancel();
        self.views
            .lock()
            .retain(|name, _| list.iter().any(|c| &c.name == name));
        let token = self.shutdown.child_token();
        for f in list {
            self.tracker
                .spawn(self.clone().run_one(f.clone(), token.clone()));
        }
        *running = (list.to_vec(), token);
    }

    /// Each entry's expression, latest forecast and model state.
    pub fn snapshot(&self) -> Vec<serde_json::Value> {
        let running = self.running.lock();
        let views = self.views.lock();
        running
            .0
            .iter()
            .map(|c| {
                let mut v = views.get(&c.name).cloned().unwrap_or_else(|| {
                    serde_json::json!({"forecast": [], "model": {"trained_at": null, "mase": null}})
                });
                v["name"] = c.name.clone().into();
                v["expr"] = c.expr.clone().into();
                v["horizon_seconds"] = c.horizon.as_duration().as_secs_f64().into();
                v["step_seconds"] = c.step.as_duration().as_secs_f64().into();
                v
            })
            .collect()
    }

    async fn run_one(self, cfg: ForecastConfig, stop: CancellationToken) {
        let name = Name {
            forecast: cfg.name.clone(),
        };
        let key = format!("forecast:{}", cfg.name);
        let step = cfg.step.as_millis();
        let mut feed = match HistoryFeed::open(
            &cfg.expr,
            step,
            cfg.history.as_millis(),
            now_ms(),
            &self.sources,
        )
        .await
        {
            Ok(f) => f,
            Err(e) => {
                tracing::error!(forecast = %cfg.name, error = %e, "cannot read history; forecast not started");
                return;
            }
        };
        let mut model: Option<(Forecaster, i64)> = match self.sources.db.load_model(&key).await {
            Ok(Some((at, body))) => serde_json::from_str(&body).ok().map(|m| (m, at)),
            _ => None,
        };
        let model_cfg = ModelConfig {
            horizon: cfg.steps(),
            coverage: cfg.coverage,
            ..ModelConfig::default()
        };
        let mut pending: VecDeque<(i64, Vec<f64>, f64)> = VecDeque::new();
        let mut errors: VecDeque<(i64, f64)> = VecDeque::new();
        let mut tick = tokio::time::interval(cfg.step.as_duration());
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                _ = stop.cancelled() => return,
                _ = tick.tick() => {}
            }
            let now = now_ms();
            if let Err(e) = feed.sample(now).await {
                tracing::warn!(forecast = %cfg.name, error = %e, "cannot store history");
            }
            if feed.is_empty() {
                continue;
            }
            let history = feed.series();
            if model.as_ref().is_none_or(|(m, at)| {
                now - at >= cfg.retrain.as_millis() || m.layout.step_ms != step
            }) {
                let (h, c) = (history.clone(), model_cfg.clone());
                let started = std::time::Instant::now();
                let fitted = tokio::task::spawn_blocking(move || Forecaster::fit(&h, &c)).await;
                self.metrics.trainings.get_or_create(&name).inc();
                match fitted {
                    Ok(Ok(m)) => {
                        self.metrics
                            .train_seconds
                            .get_or_create(&name)
                            .set(started.elapsed().as_secs_f64());
                        self.metrics
                            .last_trained
                            .get_or_create(&name)
                            .set(now as f64 / 1000.0);
                        if let Ok(body) = serde_json::to_string(&m) {
                            if let Err(e) = self.sources.db.save_model(&key, now, &body).await {
                                tracing::warn!(forecast = %cfg.name, error = %e, "cannot save the model");
                            }
                        }
                        model = Some((m, now));
                    }
                    Ok(Err(e)) => {
                        self.metrics.failures.get_or_create(&name).inc();
                        tracing::warn!(forecast = %cfg.name, error = %e, "training failed; keeping the previous model");
                        // Try again at the next retrain, not every step.
                        if let Some((_, at)) = model.as_mut() {
                            *at = now;
                        }
                    }
                    Err(e) => {
                        self.metrics.failures.get_or_create(&name).inc();
                        tracing::error!(forecast = %cfg.name, error = %e, "training panicked");
                    }
                }
            }
            let Some((m, _)) = model.as_ref() else {
                continue;
            };
            let f = match m.predict(&history) {
                Ok(f) => f,
                Err(e) => {
                    tracing::warn!(forecast = %cfg.name, error = %e, "forecast failed");
                    continue;
                }
            };
            self.publish(&cfg.name, now, &f);
            // Accuracy against what then happened.
            pending.push_back((f.origin_ms, f.yhat.clone(), m.mase_scale));
            while let Some((origin, yhat, scale)) = pending.front() {
                if origin + step * yhat.len() as i64 > history.time_at(history.len() as i64 - 1) {
                    break;
                }
                for (i, y) in yhat.iter().enumerate() {
                    let ts = origin + step * (i as i64 + 1);
                    if let Some(idx) = history.index_of(ts) {
                        errors.push_back((ts, (history.values[idx] - y).abs() / scale.max(1e-12)));
                    }
                }
                pending.pop_front();
            }
            while errors.front().is_some_and(|(t, _)| *t < now - 86_400_000) {
                errors.pop_front();
            }
            let mase = (!errors.is_empty())
                .then(|| errors.iter().map(|(_, e)| e).sum::<f64>() / errors.len() as f64);
            if let Some(mase) = mase {
                self.metrics.mase.get_or_create(&name).set(mase);
            }
            let trained_at = model.as_ref().map(|(_, at)| *at as f64 / 1000.0);
            self.views.lock().insert(
                cfg.name.clone(),
                serde_json::json!({
                    "forecast": super::points_json(&f),
                    "model": {"trained_at": trained_at, "mase": mase.and_then(super::finite)},
                }),
            );
        }
    }

    fn publish(&self, name: &str, now: i64, f: &homeostat_ml::Forecast) {
        for (i, ((y, lo), hi)) in f.yhat.iter().zip(&f.lo).zip(&f.hi).enumerate() {
            let offset = format_duration(std::time::Duration::from_millis(
                (f.step_ms * (i as i64 + 1)) as u64,
            ));
            for (bound, v) in [("yhat", *y), ("lo", *lo), ("hi", *hi)] {
                let labels = Labels::from_pairs([
                    ("__name__", "homeostat_forecast"),
                    ("forecast", name),
                    ("bound", bound),
                    ("horizon", offset.as_str()),
                ]);
                match self.sources.store.get_or_create(&labels) {
                    Ok(r) => {
                        let _ = self.sources.store.append(r, now, v);
                    }
                    Err(e) => {
                        tracing::warn!(forecast = %name, error = %e, "cannot write forecast series");
                        return;
                    }
                }
            }
        }
    }
}
