//! The scaling policy: from the demand history up to now, how many replicas to ask for.
//!
//! Owns the decision and everything it remembers between cycles (the model, the
//! stabilization window, the accuracy record). Must not read clocks, the store or the
//! network: the daemon and `homeostat replay` both drive it with `(now, history)`, so a
//! replay runs exactly the daemon's logic in simulated time.
//!
//! Each cycle:
//! - **reactive need**: `ceil(demand_now / (capacity_per_replica × target_utilization))`,
//!   Kubernetes HPA's formula, with its tolerance. This is the decision while there is
//!   no model or too little history, and whenever the forecast has not earned its
//!   keep: once both rules have been replayed side by side on the live demand for
//!   long enough (see `Shadow`), when following the forecast would have cost more
//!   than reacting, in replicas plus the shortage cost of every interval found short;
//!   until then, when the MASE against "no change" is above `max_mase` (live once
//!   forecasts have been scored, before that as measured on the origins held out at
//!   fit time). Point accuracy is the wrong test once the cost is known: a bursty
//!   series whose forecasts are no better than "no change" still gains from a
//!   headroom sized by its error distribution instead of HPA's fixed 30%.
//! - **predictive need** otherwise: the replica count `r`, never below what the
//!   demand needs now at full capacity, that minimises
//!   `r + shortage_cost × typical fleet × P(demand outgrows r before a replica asked
//!   for at the next cycle could serve)`, the probability read from the model's
//!   held-out errors (see `Forecaster::exceedance`). This is the newsvendor rule with
//!   "time under-provisioned" as the shortage: a fixed quantile (or HPA's fixed 30%
//!   headroom) buys the same cover for a quiet, predictable series as for a bursty one,
//!   where each extra point of cover costs many replicas; pricing both lets the cover
//!   follow what it costs. It is what lets the predictive policy be both earlier and
//!   cheaper than the reactive one (README, "Predictive autoscaling").
//! - the decision is clamped to `[min, max]`, held for the scale-down stabilization
//!   window (the highest recommendation in it wins, as HPA does) and moved at most
//!   `max_step` per cycle.

use std::collections::VecDeque;

use homeostat_ml::{Forecaster, Kind, ModelConfig, Series};
use serde::Serialize;

/// The numbers the policy runs on (durations in milliseconds).
#[derive(Debug, Clone, PartialEq)]
pub struct PolicySettings {
    pub capacity_per_replica: f64,
    pub target_utilization: f64,
    pub tolerance: f64,
    pub headroom: f64,
    pub min: u32,
    pub max: u32,
    pub max_step: Option<u32>,
    pub lead_time_ms: i64,
    pub interval_ms: i64,
    pub stabilization_ms: i64,
    pub retrain_ms: i64,
    pub history_ms: i64,
    pub coverage: f64,
    pub shortage_cost: f64,
    pub max_mase: f64,
    pub accuracy_window_ms: i64,
    pub predictive: bool,
}

/// Why the decision came out as it did.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "snake_case", tag = "mode", content = "reason")]
pub enum Mode {
    Predictive,
    Reactive(String),
}

/// One cycle's outcome.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Decision {
    pub at_ms: i64,
    pub desired: u32,
    pub reactive: u32,
    pub predictive: Option<u32>,
    /// Highest upper bound over the lead window, when a forecast was made.
    pub upper: Option<f64>,
    pub demand: f64,
    #[serde(flatten)]
    pub mode: Mode,
    /// What limited the move (stabilization, max_step, min/max), if anything.
    pub limited: Option<String>,
    pub trained: bool,
    /// Rolling MASE of the forecasts over the lead window, once measured.
    pub mase: Option<f64>,
}

/// One forecast kept until its outcome is known.
struct Pending {
    origin_ms: i64,
    step_ms: i64,
    yhat: Vec<f64>,
    /// "Demand stays where it is" for the same steps: the assumption of reactive
    /// scaling, which the model must beat to be worth following.
    naive: Vec<f64>,
}

pub struct Policy {
    s: PolicySettings,
    model: Option<Forecaster>,
    last_train_ms: Option<i64>,
    train_error: Option<String>,
    current: Option<u32>,
    recommendations: VecDeque<(i64, u32)>,
    pending: VecDeque<Pending>,
    /// (when measured, model's absolute error, no-change forecast's) of past steps.
    errors: VecDeque<(i64, f64, f64)>,
    /// The last forecast made, for the dashboard.
    last_forecast: Option<homeostat_ml::Forecast>,
    /// Mean replicas the training history's demand needed at full capacity: the unit
    /// `shortage_cost` is counted in.
    typical: f64,
    shadow: Shadow,
}

/// Both rules replayed side by side on the live demand, each with its own
/// stabilization and its own replicas in flight, as if each alone had been scaling.
#[derive(Default)]
struct Shadow {
    /// (when, reactive desired, predictive desired).
    desired: VecDeque<(i64, u32, u32)>,
    /// (when, reactive recommendation, predictive recommendation).
    recs: VecDeque<(i64, u32, u32)>,
    /// (when, predictive cost, reactive cost, whether a forecast was made): replicas
    /// asked plus the shortage cost when the replicas ready fell short of demand.
    costs: VecDeque<(i64, f64, f64, bool)>,
}

impl Policy {
    pub fn new(s: PolicySettings) -> Self {
        Policy {
            s,
            model: None,
            last_train_ms: None,
            train_error: None,
            current: None,
            recommendations: VecDeque::new(),
            pending: VecDeque::new(),
            errors: VecDeque::new(),
            last_forecast: None,
            typical: 1.0,
            shadow: Shadow::default(),
        }
    }

    /// The forecast the last decision used, if it made one.
    pub fn last_forecast(&self) -> Option<&homeostat_ml::Forecast> {
        self.last_forecast.as_ref()
    }

    /// When the model in use was fitted.
    pub fn trained_at_ms(&self) -> Option<i64> {
        self.model.as_ref().and(self.last_train_ms)
    }

    /// Steps ahead the decision must cover: everything until a replica asked for at
    /// the *next* cycle could be serving.
    pub fn horizon_steps(&self, step_ms: i64) -> usize {
        let reach = self.s.lead_time_ms + self.s.interval_ms;
        let steps = (reach + step_ms - 1) / step_ms.max(1) - 1;
        steps.max(1) as usize
    }

    pub fn model(&self) -> Option<&Forecaster> {
        self.model.as_ref()
    }

    /// Restores a saved model (the daemon keeps models across restarts).
    pub fn set_model(&mut self, model: Forecaster, trained_at_ms: i64) {
        self.model = Some(model);
        self.last_train_ms = Some(trained_at_ms);
    }

    pub fn train_error(&self) -> Option<&str> {
        self.train_error.as_deref()
    }

    /// Whether `cycle` at `now_ms` will retrain first.
    pub fn retrain_due(&self, now_ms: i64) -> bool {
        // Without a usable model (too little history so far), try again every ten
        // cycles rather than waiting a whole retrain interval.
        let every = match self.model.as_ref() {
            Some(m) if m.kind == Kind::Ridge => self.s.retrain_ms,
            _ => self.s.retrain_ms.min(10 * self.s.interval_ms),
        };
        self.s.predictive && self.last_train_ms.is_none_or(|t| now_ms - t >= every)
    }

    /// Fits a new model on `history` (its last point is now). Returns whether it trained.
    pub fn train(&mut self, now_ms: i64, history: &Series) -> bool {
        self.last_train_ms = Some(now_ms);
        let keep = (self.s.history_ms / history.step_ms.max(1)) as usize;
        let from = history.len().saturating_sub(keep.max(1));
        let recent = Series::new(
            history.time_at(from as i64),
            history.step_ms,
            history.values[from..].to_vec(),
        );
        let cfg = ModelConfig {
            horizon: self.horizon_steps(history.step_ms),
            coverage: self.s.coverage,
            ..ModelConfig::default()
        };
        let eff = self.s.capacity_per_replica / self.s.headroom;
        let fleet = recent
            .values
            .iter()
            .map(|v| (v.max(0.0) / eff).ceil())
            .sum::<f64>();
        self.typical = (fleet / recent.values.len().max(1) as f64).max(1.0);
        match Forecaster::fit(&recent, &cfg) {
            Ok(m) => {
                self.model = Some(m);
                self.train_error = None;
                true
            }
            Err(e) => {
                self.train_error = Some(e.to_string());
                false
            }
        }
    }

    /// One decision at `now_ms` from the demand `history` up to now (last point = now).
    pub fn cycle(&mut self, now_ms: i64, history: &Series) -> Decision {
        if self.retrain_due(now_ms) && !history.is_empty() {
            self.train(now_ms, history);
        }
        let demand = history.values.last().copied().unwrap_or(0.0).max(0.0);
        self.score(now_ms, history);
        let k = self.horizon_steps(history.step_ms);
        let mase = self
            .mase()
            .or_else(|| self.model.as_ref().and_then(|m| m.held_out_mase(k)));
        let current = self.current.unwrap_or(self.s.min);

        let reactive = hpa_need(&self.s, demand, self.current);

        let (mut predictive, mut upper, mut mode) = (None, None, Mode::Predictive);
        let mut shadowed = false;
        self.last_forecast = None;
        match self.model.as_ref() {
            _ if !self.s.predictive => mode = Mode::Reactive("predictive scaling is off".into()),
            None => {
                mode = Mode::Reactive(match &self.train_error {
                    Some(e) => format!("no model: {e}"),
                    None => "no model yet".into(),
                })
            }
            Some(m) if m.kind != Kind::Ridge => {
                mode = Mode::Reactive(format!(
                    "not enough history to learn from yet ({} points)",
                    m.n_train
                ))
            }
            Some(m) => match m.predict(history) {
                Err(e) => mode = Mode::Reactive(format!("forecast failed: {e}")),
                Ok(f) => {
                    let k = self.horizon_steps(history.step_ms).min(f.hi.len());
                    let hi = f.hi[..k].iter().copied().fold(demand, f64::max);
                    upper = Some(hi);
                    let naive = vec![demand; k];
                    self.pending.push_back(Pending {
                        origin_ms: f.origin_ms,
                        step_ms: f.step_ms,
                        yhat: f.yhat[..k].to_vec(),
                        naive,
                    });
                    let need = self.cheapest(m, &f, k, demand);
                    let ratio = self.shadow_step(now_ms, demand, Some(need));
                    shadowed = true;
                    match (ratio, mase) {
                        (Some(r), _) if r > 1.0 => {
                            mode = Mode::Reactive(format!(
                                "replayed over the last {}, following the forecast would have cost {r:.2}x what reactive scaling did",
                                crate::config::PromDuration(std::time::Duration::from_millis(self.s.accuracy_window_ms.max(0) as u64))
                            ))
                        }
                        (Some(_), _) => predictive = Some(need),
                        (_, Some(v)) if v > self.s.max_mase => {
                            mode = Mode::Reactive(format!(
                                "recent forecasts too inaccurate (MASE {v:.2} > {:.2})",
                                self.s.max_mase
                            ))
                        }
                        _ => predictive = Some(need),
                    }
                    self.last_forecast = Some(f);
                }
            },
        }

        if !shadowed && self.s.predictive {
            self.shadow_step(now_ms, demand, None);
        }
        let raw = match (&mode, predictive) {
            (Mode::Predictive, Some(p)) => p,
            _ => reactive,
        };
        let mut limited = None;
        let mut want = raw.clamp(self.s.min, self.s.max);
        if want != raw {
            limited = Some(format!(
                "clamped from {raw} to [{}, {}]",
                self.s.min, self.s.max
            ));
        }
        self.recommendations.push_back((now_ms, want));
        while self
            .recommendations
            .front()
            .is_some_and(|(t, _)| *t < now_ms - self.s.stabilization_ms)
        {
            self.recommendations.pop_front();
        }
        if want < current {
            let held = self
                .recommendations
                .iter()
                .map(|(_, r)| *r)
                .max()
                .unwrap_or(want);
            if held > want {
                limited = Some(format!(
                    "scale-down stabilization holds {held} (wanted {want})"
                ));
                want = held.min(current);
            }
        }
        if let (Some(step), Some(_)) = (self.s.max_step, self.current) {
            let diff = i64::from(want) - i64::from(current);
            if diff.unsigned_abs() > u64::from(step) {
                let to = if diff > 0 {
                    current + step
                } else {
                    current - step
                };
                limited = Some(format!(
                    "moved {step} of the {} asked (max_step)",
                    diff.abs()
                ));
                want = to;
            }
        }
        self.current = Some(want);
        Decision {
            at_ms: now_ms,
            desired: want,
            reactive,
            predictive,
            upper,
            demand,
            mode,
            limited,
            trained: self.model.as_ref().is_some_and(|m| m.kind == Kind::Ridge),
            mase,
        }
    }

    /// The replica count that minimises replicas + λ × P(demand over the next `k`
    /// steps outgrows them), λ = `shortage_cost` × the typical fleet, never below
    /// what the demand needs now. The search stops once the count alone costs more
    /// than the best total found, so it is short.
    fn cheapest(&self, m: &Forecaster, f: &homeostat_ml::Forecast, k: usize, demand: f64) -> u32 {
        let eff = self.s.capacity_per_replica / self.s.headroom;
        let lambda = self.s.shortage_cost * self.typical;
        // Of the steps ahead, the likeliest to outgrow r: a replica asked for now is
        // the one serving all of them if the next asks are no higher.
        let risk = |r: u32| {
            (0..k)
                .map(|h| m.exceedance(f, h, f64::from(r) * eff))
                .fold(0.0, f64::max)
        };
        let lo = (demand / eff).ceil().max(0.0) as u32;
        let mut best = (f64::INFINITY, lo);
        let mut r = lo;
        while f64::from(r) < best.0 && r <= self.s.max.saturating_add(1) {
            let cost = f64::from(r) + lambda * risk(r);
            if cost < best.0 {
                best = (cost, r);
            }
            r += 1;
        }
        best.1
    }

    /// Advances both shadow rules by one cycle and returns what the predictive one
    /// cost over the accuracy window relative to the reactive one, once a day's worth
    /// (or at least 12 cycles) is on record.
    fn shadow_step(&mut self, now_ms: i64, demand: f64, need: Option<u32>) -> Option<f64> {
        let s = &self.s;
        let cap = s.capacity_per_replica;
        let sh = &mut self.shadow;
        let now_running = self.current.unwrap_or(s.min);
        let (prev_r, prev_p) = sh
            .desired
            .back()
            .map_or((now_running, now_running), |d| (d.1, d.2));
        let rec_r = hpa_need(s, demand, Some(prev_r)).clamp(s.min, s.max);
        let rec_p = need.unwrap_or(rec_r).clamp(s.min, s.max);
        sh.recs.push_back((now_ms, rec_r, rec_p));
        while sh
            .recs
            .front()
            .is_some_and(|r| r.0 < now_ms - s.stabilization_ms)
        {
            sh.recs.pop_front();
        }
        let held = |want: u32, prev: u32, pick: fn(&(i64, u32, u32)) -> u32| {
            if want < prev {
                sh.recs.iter().map(pick).max().unwrap_or(want).min(prev)
            } else {
                want
            }
        };
        let d_r = held(rec_r, prev_r, |r| r.1);
        let d_p = held(rec_p, prev_p, |r| r.2);
        sh.desired.push_back((now_ms, d_r, d_p));
        let reach = s.lead_time_ms + s.interval_ms;
        while sh.desired.front().is_some_and(|d| d.0 <= now_ms - reach) {
            sh.desired.pop_front();
        }
        let ready_r = sh.desired.iter().map(|d| d.1).min().unwrap_or(d_r);
        let ready_p = sh.desired.iter().map(|d| d.2).min().unwrap_or(d_p);
        let lambda = s.shortage_cost * self.typical;
        let cost = |asked: u32, ready: u32| {
            f64::from(asked)
                + if demand > f64::from(ready) * cap {
                    lambda
                } else {
                    0.0
                }
        };
        sh.costs.push_back((
            now_ms,
            cost(d_p, ready_p),
            cost(d_r, ready_r),
            need.is_some(),
        ));
        while sh
            .costs
            .front()
            .is_some_and(|c| c.0 < now_ms - s.accuracy_window_ms)
        {
            sh.costs.pop_front();
        }
        let forecasts = sh.costs.iter().filter(|c| c.3).count() as i64;
        if forecasts < 12 || forecasts * s.interval_ms < 2 * reach {
            return None;
        }
        let p: f64 = sh.costs.iter().map(|c| c.1).sum();
        let r: f64 = sh.costs.iter().map(|c| c.2).sum();
        (r > 0.0).then(|| p / r)
    }

    /// Scores kept forecasts whose steps have now happened.
    fn score(&mut self, now_ms: i64, history: &Series) {
        while let Some(p) = self.pending.front() {
            let last = p.origin_ms + p.step_ms * p.yhat.len() as i64;
            if last > now_ms {
                break;
            }
            for (i, (yhat, naive)) in p.yhat.iter().zip(&p.naive).enumerate() {
                let ts = p.origin_ms + p.step_ms * (i as i64 + 1);
                if let Some(idx) = history.index_of(ts) {
                    let actual = history.values[idx];
                    self.errors
                        .push_back((ts, (actual - yhat).abs(), (actual - naive).abs()));
                }
            }
            self.pending.pop_front();
        }
        let keep_from = now_ms - self.s.accuracy_window_ms;
        while self.errors.front().is_some_and(|(t, _, _)| *t < keep_from) {
            self.errors.pop_front();
        }
    }

    /// Rolling MASE over the accuracy window, once 12 outcomes are known: the model's
    /// mean absolute error over that of "demand stays where it is" (what a reactive
    /// policy assumes) on the same outcomes. Above 1 the forecast is worse than not
    /// forecasting, so following it would be worse than reacting.
    pub fn mase(&self) -> Option<f64> {
        if self.errors.len() < 12 {
            return None;
        }
        let model: f64 = self.errors.iter().map(|(_, e, _)| e).sum();
        let naive: f64 = self.errors.iter().map(|(_, _, b)| b).sum();
        Some(if naive > 0.0 {
            model / naive
        } else if model > 0.0 {
            f64::INFINITY
        } else {
            0.0
        })
    }
}

/// Kubernetes HPA's recommendation: `ceil(demand / (capacity × target))`, or no move
/// while the utilization of what runs is within ±tolerance of the target.
fn hpa_need(s: &PolicySettings, demand: f64, current: Option<u32>) -> u32 {
    let per_replica = s.capacity_per_replica * s.target_utilization;
    match current {
        Some(cur)
            if cur > 0 && (demand / (f64::from(cur) * per_replica) - 1.0).abs() <= s.tolerance =>
        {
            cur
        }
        _ => (demand / per_replica).ceil() as u32,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Deterministic noise in [-0.5, 0.5) (a 64-bit LCG), so the tests need no RNG crate.
    fn uniform(state: &mut u64) -> f64 {
        *state = state
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        (*state >> 11) as f64 / (1u64 << 53) as f64 - 0.5
    }

    fn settings() -> PolicySettings {
        PolicySettings {
            capacity_per_replica: 10.0,
            target_utilization: 0.7,
            tolerance: 0.1,
            headroom: 1.0,
            min: 1,
            max: 50,
            max_step: None,
            lead_time_ms: 600_000,
            interval_ms: 300_000,
            stabilization_ms: 300_000,
            retrain_ms: 6 * 3_600_000,
            history_ms: 35 * 86_400_000,
            coverage: 0.9,
            shortage_cost: 16.0,
            max_mase: 1.0,
            accuracy_window_ms: 86_400_000,
            predictive: true,
        }
    }

    #[test]
    fn untrained_policy_is_reactive_and_says_why() {
        let mut p = Policy::new(settings());
        let s = Series::new(0, 300_000, vec![70.0; 5]);
        let d = p.cycle(4 * 300_000, &s);
        assert_eq!(d.reactive, 10);
        assert_eq!(d.desired, 10);
        assert!(
            matches!(d.mode, Mode::Reactive(ref r) if r.contains("no model")),
            "{d:?}"
        );
    }

    #[test]
    fn horizon_covers_lead_time_plus_one_cycle() {
        let p = Policy::new(settings());
        assert_eq!(p.horizon_steps(300_000), 2);
        let mut s = settings();
        s.lead_time_ms = 120_000;
        assert_eq!(Policy::new(s).horizon_steps(300_000), 1);
    }

    #[test]
    fn stabilization_holds_then_releases_and_max_step_limits() {
        let mut st = settings();
        st.predictive = false;
        st.max_step = Some(3);
        let mut p = Policy::new(st);
        let mut vals = vec![];
        let mut out = vec![];
        for (i, v) in [70.0, 700.0, 700.0, 70.0, 70.0, 70.0, 70.0]
            .iter()
            .enumerate()
        {
            vals.push(*v);
            let s = Series::new(0, 60_000, vals.clone());
            out.push(p.cycle(i as i64 * 60_000, &s).desired);
        }
        // Up at most 3 a cycle; down held for 5 minutes, then 3 a cycle.
        assert_eq!(out, vec![10, 13, 16, 16, 16, 16, 16]);
        let mut more = vals.clone();
        for i in 7..12 {
            more.push(70.0);
            let s = Series::new(0, 60_000, more.clone());
            out.push(p.cycle(i as i64 * 60_000, &s).desired);
        }
        assert_eq!(&out[7..], &[16, 13, 10, 10, 10][..]);
    }

    #[test]
    fn learns_a_daily_peak_and_raises_the_floor_before_it() {
        // Two weeks of 5-minute demand with one peak a day at noon.
        let day = 288usize;
        let demand = |i: usize| {
            let x = (i % day) as f64 / day as f64;
            20.0 + 200.0 * (-((x - 0.5) * 12.0).powi(2)).exp()
        };
        let n = day * 14;
        let values: Vec<f64> = (0..n).map(demand).collect();
        let mut p = Policy::new(settings());
        let full = Series::new(0, 300_000, values);
        let mut predictive_ahead = 0;
        let mut reactive_cycles = 0;
        for t in day * 3..n {
            let d = p.cycle(t as i64 * 300_000, &full.up_to(t));
            // Two steps later demand will be higher than what reacting now covers.
            if t >= day * 10 && t + 2 < n && demand(t + 2) > demand(t) * 1.1 {
                if d.desired as f64 * 10.0 >= demand(t + 2) {
                    predictive_ahead += 1;
                } else {
                    reactive_cycles += 1;
                }
                assert_eq!(d.mode, Mode::Predictive, "{d:?}");
            }
        }
        assert!(
            predictive_ahead > 0 && reactive_cycles == 0,
            "{predictive_ahead} {reactive_cycles}"
        );
    }

    /// A daily cycle with noise, to compare decisions under two shortage costs.
    fn noisy_days(days: usize) -> Series {
        let day = 288usize;
        let mut rng = 17u64;
        let values = (0..day * days)
            .map(|i| {
                let u = uniform(&mut rng);
                let x = (i % day) as f64 / day as f64;
                100.0 + 60.0 * (2.0 * std::f64::consts::PI * x).sin() + 40.0 * u
            })
            .collect();
        Series::new(0, 300_000, values)
    }

    fn run(shortage_cost: f64, series: &Series, from: usize) -> (u64, usize, usize) {
        let mut st = settings();
        st.shortage_cost = shortage_cost;
        st.stabilization_ms = 0;
        let mut p = Policy::new(st);
        let (mut replicas, mut short, mut predictive) = (0u64, 0, 0);
        for t in from..series.len() - 2 {
            let d = p.cycle(t as i64 * 300_000, &series.up_to(t));
            if t >= from + 288 {
                replicas += u64::from(d.desired);
                let next = series.values[t + 1].max(series.values[t + 2]);
                short += usize::from(next > f64::from(d.desired) * 10.0);
                predictive += usize::from(d.mode == Mode::Predictive);
            }
        }
        (replicas, short, predictive)
    }

    #[test]
    fn shortage_cost_trades_replicas_for_cover() {
        let series = noisy_days(9);
        let (cheap_r, cheap_short, cheap_pred) = run(1.0, &series, 288 * 6);
        let (dear_r, dear_short, dear_pred) = run(100.0, &series, 288 * 6);
        assert!(
            cheap_pred > 250 && dear_pred > 250,
            "{cheap_pred} {dear_pred}"
        );
        assert!(dear_r > cheap_r, "replicas {dear_r} vs {cheap_r}");
        assert!(
            dear_short * 3 < cheap_short,
            "short {dear_short} vs {cheap_short}"
        );
        // Priced at 100 fleets, running short is rare (the noise is ±20 around the
        // cycle, so no count short of the top of it is safe).
        assert!(dear_short < 15, "{dear_short} of 576");
    }

    #[test]
    fn side_by_side_record_prefers_whichever_rule_was_cheaper() {
        // Demand jumping between 50 and 150 every three cycles: reacting is short for
        // the two cycles a replica takes to start after each jump; asking ahead is not.
        let demand = |i: i64| -> f64 {
            if (i / 3) % 2 == 0 {
                50.0
            } else {
                150.0
            }
        };
        let mut p = Policy::new(settings());
        let mut ratio = None;
        for i in 0..48 {
            let ahead = ((demand(i + 1).max(demand(i + 2))) / 10.0).ceil() as u32;
            ratio = p.shadow_step(i * 300_000, demand(i), Some(ahead));
            if i < 11 {
                assert_eq!(ratio, None, "no verdict on {} cycles", i + 1);
            }
        }
        assert!(ratio.is_some_and(|r| r < 1.0), "{ratio:?}");
        // Flat demand: asking for twice what is needed only costs.
        let mut p = Policy::new(settings());
        for i in 0..48 {
            ratio = p.shadow_step(i * 300_000, 100.0, Some(20));
        }
        assert!(ratio.is_some_and(|r| r > 1.0), "{ratio:?}");
        // Cycles without a forecast do not count towards a verdict.
        let mut p = Policy::new(settings());
        for i in 0..48 {
            ratio = p.shadow_step(i * 300_000, 100.0, None);
        }
        assert_eq!(ratio, None);
    }

    #[test]
    fn untrusted_model_stays_reactive_until_it_beats_no_change() {
        // A random walk: nothing to learn, and the held-out errors say so at once,
        // before any forecast has been scored live.
        let mut rng = 5u64;
        let mut v = 500.0;
        let values: Vec<f64> = (0..288 * 4)
            .map(|_| {
                v += uniform(&mut rng) * 20.0;
                v
            })
            .collect();
        let series = Series::new(0, 300_000, values);
        let mut p = Policy::new(settings());
        let t = series.len() - 1;
        let m = Forecaster::fit(
            &series,
            &ModelConfig {
                horizon: 2,
                ..ModelConfig::default()
            },
        )
        .unwrap();
        let held = m.held_out_mase(2).unwrap();
        let d = p.cycle(t as i64 * 300_000, &series);
        assert!(d.trained);
        if held > 1.0 {
            assert!(
                matches!(d.mode, Mode::Reactive(ref r) if r.contains("MASE")),
                "held-out MASE {held}: {d:?}"
            );
        } else {
            assert_eq!(d.mode, Mode::Predictive, "held-out MASE {held}");
        }
        assert_eq!(
            d.mase.map(|v| (v * 1e9).round()),
            Some((held * 1e9).round())
        );
    }
}
