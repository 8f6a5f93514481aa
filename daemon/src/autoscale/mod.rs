//! Predictive autoscaling: one policy per `autoscale` entry, driven once per
//! `interval` from the demand's downsampled history, acting through a playbook's
//! `scale` step so the engine's guards, pause and audit apply to every move.
//!
//! Owns the `autoscale` config section, the per-target loop and its metrics. The
//! decision itself lives in [`policy`] and is shared with `homeostat replay`; the loop
//! must not decide anything the replay cannot see.

pub mod policy;
pub mod replay;
pub mod runner;

use serde::Deserialize;

use crate::config::{PromDuration, Validator};
pub use policy::{Decision, Mode, Policy, PolicySettings};

/// How the forecast behind an autoscaler is trained.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(default)]
pub struct AutoForecastConfig {
    /// Off: purely reactive (HPA's formula), still with stabilization and limits.
    pub enabled: bool,
    /// Grid of the training history and the forecast (default 1m). Points are kept
    /// for `history` (at most 20,160 of them); finer grids also keep 5-minute means
    /// for 40 days.
    pub step: PromDuration,
    /// How often the model is refitted.
    pub retrain: PromDuration,
    /// How much history a fit uses at most.
    pub history: PromDuration,
    /// Central coverage of the forecast band shown in the API and the dashboard
    /// (default 0.95). Decisions price the whole error distribution instead (see
    /// `shortage_cost`).
    pub coverage: f64,
    /// What one interval of running short is worth, in intervals of the average fleet
    /// the demand needs (default 16, the setting of the README's replay table). Each
    /// predictive decision takes the replica count that minimises replicas + this ×
    /// average fleet × the forecast's probability that demand outgrows them before
    /// the next replica could be serving. Higher buys fewer short intervals with more
    /// replicas.
    pub shortage_cost: f64,
    /// Until the side-by-side record below exists, fall back to reactive while the
    /// MASE of the forecasts over the lead window, scaled by the error of "demand
    /// stays where it is" on the same outcomes (the reactive assumption), is above
    /// this: the live MASE once forecasts have been scored, before that the one
    /// measured on the origins held out at fit time.
    pub max_mase: f64,
    /// How far back the rolling MASE and the side-by-side record look. The record
    /// replays both rules on the live demand, each with its own stabilization and its
    /// own replicas still starting; once it holds enough cycles, the autoscaler
    /// follows the forecast only while that would have cost no more than reactive
    /// scaling, in replicas plus `shortage_cost` for every interval found short.
    pub accuracy_window: PromDuration,
}

impl Default for AutoForecastConfig {
    fn default() -> Self {
        AutoForecastConfig {
            enabled: true,
            step: PromDuration::from_secs(60),
            retrain: PromDuration::from_secs(6 * 3600),
            history: PromDuration::from_secs(35 * 86400),
            coverage: 0.95,
            shortage_cost: 16.0,
            max_mase: 1.0,
            accuracy_window: PromDuration::from_secs(86400),
        }
    }
}

/// One autoscaled target.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(default)]
pub struct AutoscaleConfig {
    pub name: String,
    /// PromQL giving the demand as one series (wrap in `sum()`), in the same unit as
    /// `capacity_per_replica`, e.g. requests per second. Ignored by `homeostat replay`,
    /// where the input file is the demand.
    pub demand: String,
    /// Demand one replica serves at full utilization.
    pub capacity_per_replica: f64,
    /// Reactive target, as HPA's (default 0.7).
    pub target_utilization: f64,
    /// Reactive tolerance: no move while demand is within this share of the target
    /// (default 0.1, as HPA).
    pub tolerance: f64,
    /// Multiplier on the forecast's upper bound (default 1.0: the interval is the
    /// headroom).
    pub headroom: f64,
    pub min: u32,
    pub max: u32,
    /// At most this many replicas up or down per cycle.
    pub max_step: Option<u32>,
    /// How long a new replica takes to serve (pull, load the model, warm up).
    pub lead_time: PromDuration,
    /// Scale-down waits until the highest recommendation in this window allows it.
    pub scale_down_stabilization: PromDuration,
    /// How often the policy runs (replay: every input timestamp).
    pub interval: PromDuration,
    pub forecast: AutoForecastConfig,
    /// The playbook whose steps apply the decision; it receives the labels
    /// `replicas`, `autoscale`, `mode` and `reason` (use `{{ $labels.replicas }}` in
    /// its `scale` step). Guards, pause, dry-run and audit are the playbook's.
    pub playbook: String,
}

impl Default for AutoscaleConfig {
    fn default() -> Self {
        AutoscaleConfig {
            name: String::new(),
            demand: String::new(),
            capacity_per_replica: 0.0,
            target_utilization: 0.7,
            tolerance: 0.1,
            headroom: 1.0,
            min: 1,
            max: 0,
            max_step: None,
            lead_time: PromDuration::from_secs(0),
            scale_down_stabilization: PromDuration::from_secs(300),
            interval: PromDuration::from_secs(60),
            forecast: AutoForecastConfig::default(),
            playbook: String::new(),
        }
    }
}

impl AutoscaleConfig {
    /// Checks the numbers. `daemon` also requires what only the daemon uses (the
    /// demand query and the playbook).
    pub fn validate(&self, path: &str, daemon: bool, v: &mut Validator) {
        let mut err = |field: &str, msg: String| v.error(format!("{path}.{field}"), msg);
        if self.name.is_empty() {
            err("name", "required".into());
        }
        if !(self.capacity_per_replica > 0.0 && self.capacity_per_replica.is_finite()) {
            err(
                "capacity_per_replica",
                "must be a number greater than 0".into(),
            );
        }
        if !(self.target_utilization > 0.0 && self.target_utilization <= 1.0) {
            err("target_utilization", "must be in (0, 1]".into());
        }
        if !(0.0..1.0).contains(&self.tolerance) {
            err("tolerance", "must be in [0, 1)".into());
        }
        if !(self.headroom >= 1.0 && self.headroom.is_finite()) {
            err("headroom", "must be a number >= 1".into());
        }
        if self.max == 0 {
            err("max", "required, at least 1".into());
        } else if self.min > self.max {
            err(
                "min",
                format!("min {} is greater than max {}", self.min, self.max),
            );
        }
        if self.max_step == Some(0) {
            err("max_step", "must be at least 1".into());
        }
        if self.lead_time.0.is_zero() {
            err(
                "lead_time",
                "required: how long a new replica takes to serve (e.g. 3m)".into(),
            );
        }
        if self.interval.0.is_zero() {
            err("interval", "must be greater than 0".into());
        }
        let f = &self.forecast;
        if f.step.0.as_millis() < 1000 {
            err("forecast.step", "must be at least 1s".into());
        }
        if !(f.coverage > 0.0 && f.coverage < 1.0) {
            err("forecast.coverage", "must be between 0 and 1".into());
        }
        if !(f.shortage_cost > 0.0 && f.shortage_cost.is_finite()) {
            err(
                "forecast.shortage_cost",
                "must be a number greater than 0".into(),
            );
        }
        if f.retrain.0.is_zero() {
            err("forecast.retrain", "must be greater than 0".into());
        }
        if f.max_mase.is_nan() || f.max_mase <= 0.0 {
            err("forecast.max_mase", "must be greater than 0".into());
        }
        if daemon {
            if self.demand.is_empty() {
                err(
                    "demand",
                    "required: a PromQL expression returning one series".into(),
                );
            } else if let Err(e) = promql_parser::parser::parse(&self.demand) {
                err("demand", format!("invalid PromQL: {e}"));
            }
            if self.playbook.is_empty() {
                err(
                    "playbook",
                    "required: the playbook whose scale step applies the decision".into(),
                );
            }
        }
    }

    /// The policy's numbers; `interval_ms` is the cycle (the daemon's `interval`, or
    /// the input grid in a replay).
    pub fn settings(&self, interval_ms: i64) -> PolicySettings {
        PolicySettings {
            capacity_per_replica: self.capacity_per_replica,
            target_utilization: self.target_utilization,
            tolerance: self.tolerance,
            headroom: self.headroom,
            min: self.min,
            max: self.max,
            max_step: self.max_step,
            lead_time_ms: self.lead_time.as_millis(),
            interval_ms,
            stabilization_ms: self.scale_down_stabilization.as_millis(),
            retrain_ms: self.forecast.retrain.as_millis(),
            history_ms: self.forecast.history.as_millis(),
            coverage: self.forecast.coverage,
            shortage_cost: self.forecast.shortage_cost,
            max_mase: self.forecast.max_mase,
            accuracy_window_ms: self.forecast.accuracy_window.as_millis(),
            predictive: self.forecast.enabled,
        }
    }
}

/// Validates the `autoscale` list: each entry, and unique names.
pub fn validate_all(list: &[AutoscaleConfig], path: &str, v: &mut Validator) {
    let mut seen = std::collections::HashSet::new();
    for (i, a) in list.iter().enumerate() {
        let p = format!("{path}.{i}");
        a.validate(&p, true, v);
        if !a.name.is_empty() && !seen.insert(a.name.clone()) {
            v.error(format!("{p}.name"), format!("duplicate name {:?}", a.name));
        }
    }
}
