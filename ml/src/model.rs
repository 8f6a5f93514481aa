//! The forecaster: one ridge regression per horizon step (linfa-linear's least squares
//! on the penalty-augmented data), fitted on the features of [`crate::features`], with split-conformal
//! prediction intervals.
//!
//! Owns fitting, predicting and the serialized model. Must not know where the series
//! came from (store, database, CSV) or what the forecast is used for.
//!
//! Why direct per-step models: a recursive model feeds its own errors back and its
//! intervals are hard to calibrate; a direct one is fitted for exactly the lead time the
//! autoscaler asks about, and its held-out residuals are the honest error at that step.
//!
//! Intervals are normalised split-conformal: the most recent slice of the training
//! windows is held out, the model fitted on the rest predicts it, and the residuals,
//! divided by how much the series was moving at each origin (see `local_scale`), give
//! per-step quantiles. The band widens when the series moves (a taxi rush hour, a
//! traffic spike) and narrows at night, which a fixed band cannot. How "moving" is
//! measured (recent change, level, or a mix) is chosen per fit from the held-out
//! errors. Each step also keeps its score quantiles across the upper tail, so a caller
//! can ask how likely a given level is to be exceeded, not just for one bound.

use crate::features::Layout;
use crate::season;
use crate::series::Series;
use crate::MlError;
use linfa::prelude::*;
use linfa_linear::LinearRegression;
use ndarray::{Array1, Array2};
use serde::{Deserialize, Serialize};

/// How to fit. The defaults are what the backtest in the README was run with.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ModelConfig {
    /// Steps ahead to forecast.
    pub horizon: usize,
    /// Central coverage of the interval (0.9 → 5% and 95% bounds).
    pub coverage: f64,
    /// Recent lags used as features.
    pub lags: usize,
    /// Ridge penalty on standardised features.
    pub penalty: f64,
    /// At most this many of the newest origins are used per step (bounds training time).
    pub max_rows: usize,
    /// Share of the newest training origins held out to calibrate the intervals.
    pub calibration: f64,
    /// Autocorrelation a calendar period must show to be used.
    pub season_threshold: f64,
}

impl Default for ModelConfig {
    fn default() -> Self {
        ModelConfig {
            horizon: 12,
            coverage: 0.9,
            lags: 12,
            penalty: 0.01,
            max_rows: 6000,
            calibration: 0.25,
            season_threshold: 0.2,
        }
    }
}

impl ModelConfig {
    pub fn validate(&self) -> Result<(), MlError> {
        let bad = |field: &'static str, why: &str| {
            Err(MlError::Config {
                field,
                reason: why.to_string(),
            })
        };
        if self.horizon == 0 {
            return bad("horizon", "must be at least 1 step");
        }
        if !(self.coverage > 0.0 && self.coverage < 1.0) {
            return bad("coverage", "must be between 0 and 1 (exclusive)");
        }
        if !(self.calibration > 0.0 && self.calibration < 0.9) {
            return bad("calibration", "must be between 0 and 0.9");
        }
        if self.penalty < 0.0 || !self.penalty.is_finite() {
            return bad("penalty", "must be a finite number >= 0");
        }
        if self.max_rows < 50 {
            return bad("max_rows", "must be at least 50");
        }
        Ok(())
    }
}

/// One horizon step's fitted regression and its conformal quantiles.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
struct StepModel {
    weights: Vec<f64>,
    intercept: f64,
    col_mean: Vec<f64>,
    col_scale: Vec<f64>,
    /// Quantiles of (actual − predicted) / recent change, for the low and high bound.
    q_lo: f64,
    q_hi: f64,
    /// The same scores' quantiles at [`TAIL_LEVELS`], for exceedance probabilities
    /// (empty in models saved before they were kept).
    #[serde(default)]
    tail: Vec<f64>,
    /// Mean absolute error on the held-out origins, and that of "no change" on the
    /// same origins: the model's track record before it has a live one.
    #[serde(default)]
    held_mae: f64,
    #[serde(default)]
    held_naive_mae: f64,
}

/// Levels at which each step keeps its conformal score quantiles: enough of the upper
/// tail to price a replica count (see [`Forecaster::exceedance`]).
const TAIL_LEVELS: [f64; 16] = [
    0.1, 0.25, 0.5, 0.6, 0.7, 0.8, 0.85, 0.9, 0.925, 0.95, 0.96, 0.97, 0.975, 0.98, 0.99, 0.995,
];

/// How the forecast is made.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Kind {
    /// Ridge regressions on the feature layout.
    Ridge,
    /// Too little history for the regressions: the last value, with quantiles of the
    /// observed h-step changes. Honest about what it is, and replaced at the next
    /// retrain once history has grown.
    Persistence,
}

/// A fitted model; serializes so a restart does not throw away training.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Forecaster {
    pub kind: Kind,
    pub layout: Layout,
    pub config: ModelConfig,
    steps: Vec<StepModel>,
    /// Never forecast below zero when the history never went below it (demand, rates).
    nonnegative: bool,
    /// Points the model was fitted on (the newest index is `n_train - 1`).
    pub n_train: usize,
    /// Timestamp of the newest point seen in training.
    pub trained_until_ms: i64,
    /// In-sample mean absolute error of the seasonal-naive forecast: the MASE scale.
    pub mase_scale: f64,
    /// Lowest value of the interval's local scale: a quarter of its mean over the
    /// training history, so a flat stretch cannot shrink the band to nothing and
    /// blow the normalised residuals up.
    #[serde(default)]
    pub scale_floor: f64,
    /// How the local scale combines recent change and level, chosen at fit time.
    #[serde(default)]
    pub scale_shape: ScaleShape,
}

/// The interval's local scale is `change^change_pow × level^level_pow` over the last
/// 12 steps (see `local_scale`). Which mix makes the normalised residuals most alike
/// depends on the series: counts of independent requests spread with the root of
/// their level, bursty traffic with how much it has just moved, a CPU percentage with
/// neither. Each fit tries a small grid and keeps the shape under which the held-out
/// errors are likeliest (see `choose_shape`); the default is what models saved before
/// the choice existed were fitted with.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct ScaleShape {
    pub change_pow: f64,
    pub level_pow: f64,
}

impl Default for ScaleShape {
    fn default() -> Self {
        ScaleShape {
            change_pow: 0.5,
            level_pow: 0.25,
        }
    }
}

impl ScaleShape {
    /// The grid tried at fit time (the default first, so it wins ties).
    fn candidates() -> impl Iterator<Item = ScaleShape> {
        const POWS: [f64; 5] = [0.0, 0.25, 0.5, 0.75, 1.0];
        let grid = POWS.iter().flat_map(|&c| {
            POWS.iter().map(move |&l| ScaleShape {
                change_pow: c,
                level_pow: l,
            })
        });
        std::iter::once(ScaleShape::default()).chain(grid.filter(|s| *s != ScaleShape::default()))
    }
}

/// H steps ahead from one origin.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Forecast {
    pub origin_ms: i64,
    pub step_ms: i64,
    pub yhat: Vec<f64>,
    pub lo: Vec<f64>,
    pub hi: Vec<f64>,
    /// The local scale at the origin the intervals were widened by.
    #[serde(default)]
    pub scale: f64,
}

impl Forecast {
    pub fn time_of_step(&self, step: usize) -> i64 {
        self.origin_ms + step as i64 * self.step_ms
    }
}

impl Forecaster {
    /// Fits on the whole of `series` (its last point is the newest known).
    pub fn fit(series: &Series, config: &ModelConfig) -> Result<Forecaster, MlError> {
        config.validate()?;
        let n = series.len();
        if n < 8 {
            return Err(MlError::TooShort { needed: 8, got: n });
        }
        let periods =
            season::detect_periods(&series.values, series.step_ms, config.season_threshold);
        let nonnegative = series.values.iter().all(|v| *v >= 0.0);
        let mase_scale = mase_scale(&series.values, periods.first().copied().unwrap_or(1));
        let layout = choose_layout(series, config, periods);
        let stats = LocalStats::of(&series.values);
        let h_max = config.horizon;
        // Enough origins to fit and to calibrate the longest step, or fall back.
        let usable = n.saturating_sub(h_max + layout.first_origin(h_max));
        if usable < 6 * layout.width().max(10) {
            return Ok(Self::persistence(
                series,
                config,
                layout,
                nonnegative,
                mase_scale,
                &stats,
            ));
        }
        let mut fits = Vec::with_capacity(h_max);
        for h in 1..=h_max {
            fits.push(fit_step(series, &layout, config, h)?);
        }
        let shape = choose_shape(&stats, &fits);
        let floor = stats.floor(shape);
        let steps = fits
            .into_iter()
            .map(|f| {
                let mut scores: Vec<f64> = f
                    .held
                    .iter()
                    .map(|&(t, r)| r / stats.scale(t, shape, floor))
                    .collect();
                let (q_lo, q_hi) = interval_quantiles(&mut scores, config.coverage);
                let tail = tail_quantiles(&scores);
                StepModel {
                    q_lo,
                    q_hi,
                    tail,
                    ..f.model
                }
            })
            .collect();
        Ok(Forecaster {
            kind: Kind::Ridge,
            layout,
            config: config.clone(),
            steps,
            nonnegative,
            n_train: n,
            trained_until_ms: series.time_at(n as i64 - 1),
            mase_scale,
            scale_floor: floor,
            scale_shape: shape,
        })
    }

    fn persistence(
        series: &Series,
        config: &ModelConfig,
        layout: Layout,
        nonnegative: bool,
        mase_scale: f64,
        stats: &LocalStats,
    ) -> Forecaster {
        let y = &series.values;
        let n = y.len();
        let shape = ScaleShape::default();
        let floor = stats.floor(shape);
        let steps = (1..=config.horizon)
            .map(|h| {
                let mut scores: Vec<f64> = (1..n.saturating_sub(h))
                    .map(|t| (y[t + h] - y[t]) / stats.scale(t, shape, floor))
                    .collect();
                let (q_lo, q_hi) = if scores.is_empty() {
                    (-(h as f64), h as f64)
                } else {
                    interval_quantiles(&mut scores, config.coverage)
                };
                StepModel {
                    weights: Vec::new(),
                    intercept: 0.0,
                    col_mean: Vec::new(),
                    col_scale: Vec::new(),
                    q_lo,
                    q_hi,
                    tail: tail_quantiles(&scores),
                    held_mae: 0.0,
                    held_naive_mae: 0.0,
                }
            })
            .collect();
        Forecaster {
            kind: Kind::Persistence,
            layout,
            config: config.clone(),
            steps,
            nonnegative,
            n_train: n,
            trained_until_ms: series.time_at(n as i64 - 1),
            mase_scale,
            scale_floor: floor,
            scale_shape: shape,
        }
    }

    /// The seasonal periods (in steps) the model uses.
    pub fn periods(&self) -> &[usize] {
        &self.layout.periods
    }

    /// Forecasts the steps after the last point of `history`, which must be on the
    /// training grid and may extend past what the model was trained on.
    pub fn predict(&self, history: &Series) -> Result<Forecast, MlError> {
        if history.step_ms != self.layout.step_ms {
            return Err(MlError::GridMismatch {
                expected: self.layout.step_ms,
                got: history.step_ms,
            });
        }
        let n = history.len();
        if n == 0 {
            return Err(MlError::TooShort { needed: 1, got: 0 });
        }
        let t = n - 1;
        let y = &history.values;
        let mut out = Forecast {
            origin_ms: history.time_at(t as i64),
            step_ms: history.step_ms,
            yhat: Vec::with_capacity(self.steps.len()),
            lo: Vec::with_capacity(self.steps.len()),
            hi: Vec::with_capacity(self.steps.len()),
            scale: 0.0,
        };
        let (change, level) = window_stats(y, t);
        let change = local_scale(change, level, self.scale_shape, self.scale_floor);
        out.scale = change;
        let mut row = Vec::with_capacity(self.layout.width());
        for (i, step) in self.steps.iter().enumerate() {
            let h = i + 1;
            let delta = match self.kind {
                Kind::Ridge if t >= self.layout.first_origin(h) => {
                    row.clear();
                    self.layout.row(history, t, h, &mut row);
                    step.apply(&row)
                }
                // Not enough history behind this origin for the features: persistence.
                _ => 0.0,
            };
            let mut yhat = y[t] + delta;
            let mut lo = yhat + step.q_lo * change;
            let mut hi = yhat + step.q_hi * change;
            if self.nonnegative {
                yhat = yhat.max(0.0);
                lo = lo.max(0.0);
                hi = hi.max(0.0);
            }
            out.yhat.push(yhat);
            out.lo.push(lo.min(yhat));
            out.hi.push(hi.max(yhat));
        }
        Ok(out)
    }

    /// MASE against "no change" of the first `steps` steps on the origins held out at
    /// fit time (None for a persistence model, or one saved before it was kept).
    pub fn held_out_mase(&self, steps: usize) -> Option<f64> {
        let (mut model, mut naive) = (0.0, 0.0);
        for m in self.steps.iter().take(steps) {
            model += m.held_mae;
            naive += m.held_naive_mae;
        }
        (self.kind == Kind::Ridge && naive > 0.0).then(|| model / naive)
    }

    /// The probability, from the held-out errors, that the value `step + 1` steps after
    /// the origin of `f` (a forecast of this model) exceeds `x`: the conformal score
    /// distribution interpolated between [`TAIL_LEVELS`], with an exponential tail
    /// beyond the last level fitted to the last two. Models saved without the tail
    /// answer from the interval alone: 1 below its upper bound, 0 above.
    pub fn exceedance(&self, f: &Forecast, step: usize, x: f64) -> f64 {
        let (Some(m), Some(&yhat), Some(&hi)) =
            (self.steps.get(step), f.yhat.get(step), f.hi.get(step))
        else {
            return 1.0;
        };
        if self.nonnegative && x < 0.0 {
            return 1.0;
        }
        if m.tail.len() != TAIL_LEVELS.len() || f.scale <= 0.0 {
            return if x < hi { 1.0 } else { 0.0 };
        }
        // Forecasts are clipped at zero for non-negative series; the scores are not.
        let z = (x - yhat) / f.scale;
        let q = &m.tail;
        if z < q[0] {
            return 1.0 - TAIL_LEVELS[0];
        }
        for i in 1..q.len() {
            if z < q[i] {
                let (l0, l1) = (TAIL_LEVELS[i - 1], TAIL_LEVELS[i]);
                let w = if q[i] > q[i - 1] {
                    (z - q[i - 1]) / (q[i] - q[i - 1])
                } else {
                    1.0
                };
                return 1.0 - (l0 + w * (l1 - l0));
            }
        }
        let k = q.len() - 1;
        let (l0, l1) = (TAIL_LEVELS[k - 1], TAIL_LEVELS[k]);
        let decay = (q[k] - q[k - 1]) / ((1.0 - l0) / (1.0 - l1)).ln();
        if decay <= 0.0 {
            return 0.0;
        }
        (1.0 - l1) * (-(z - q[k]) / decay).exp()
    }
}

impl StepModel {
    fn apply(&self, row: &[f64]) -> f64 {
        let terms = row
            .iter()
            .zip(&self.weights)
            .zip(self.col_mean.iter().zip(&self.col_scale));
        self.intercept + terms.map(|((x, w), (m, sc))| w * (x - m) / sc).sum::<f64>()
    }
}

fn choose_layout(series: &Series, config: &ModelConfig, periods: Vec<usize>) -> Layout {
    let n = series.len();
    let lags = config.lags.min(n / 8).max(1);
    let window = periods
        .first()
        .copied()
        .unwrap_or(24)
        .clamp(lags.max(2), 288);
    // As many cycles (up to 3) as leave at least half the history for training origins.
    let cycles = periods
        .iter()
        .map(|&p| {
            let back = config.horizon.div_ceil(p).max(1);
            (1..=3)
                .rev()
                .find(|c| (back + c - 1) * p < n / 2)
                .unwrap_or(1)
        })
        .collect();
    let span = n as i64 * series.step_ms;
    let day_terms = if series.step_ms < season::DAY_MS / 8 && span >= 2 * season::DAY_MS {
        3
    } else {
        0
    };
    let week_terms = if span >= 2 * season::WEEK_MS { 2 } else { 0 };
    Layout {
        lags,
        periods,
        cycles,
        window,
        step_ms: series.step_ms,
        day_terms,
        week_terms,
    }
}

/// How much the series is moving at `t`: the mean absolute change and the mean
/// level over the last 12 steps. Change alone makes the band balloon after every
/// spike; level alone ignores that a quiet series is predictable; demand that counts
/// requests (Poisson-like) has a spread growing with the root of its level. How the
/// two combine is the model's [`ScaleShape`]. Any constant factor cancels in the
/// conformal quantiles, so the band does not depend on the unit of the series.
fn window_stats(y: &[f64], t: usize) -> (f64, f64) {
    let from = t.saturating_sub(12);
    let k = t - from;
    let change = if k == 0 {
        0.0
    } else {
        (from + 1..=t).map(|i| (y[i] - y[i - 1]).abs()).sum::<f64>() / k as f64
    };
    let level = (from..=t).map(|i| y[i].abs()).sum::<f64>() / (k + 1) as f64;
    (change, level)
}

fn local_scale(change: f64, level: f64, shape: ScaleShape, floor: f64) -> f64 {
    let raw = change.powf(shape.change_pow) * level.powf(shape.level_pow);
    let pow = shape.change_pow + shape.level_pow;
    raw.max(floor).max(1e-3 * level.powf(pow)).max(1e-9)
}

/// [`window_stats`] at every point of a training series.
struct LocalStats {
    change: Vec<f64>,
    level: Vec<f64>,
}

impl LocalStats {
    fn of(y: &[f64]) -> Self {
        let (change, level) = (0..y.len()).map(|t| window_stats(y, t)).unzip();
        LocalStats { change, level }
    }

    fn scale(&self, t: usize, shape: ScaleShape, floor: f64) -> f64 {
        local_scale(self.change[t], self.level[t], shape, floor)
    }

    /// A quarter of the mean local scale over the history (see
    /// [`Forecaster::scale_floor`]).
    fn floor(&self, shape: ScaleShape) -> f64 {
        let n = self.change.len();
        if n < 2 {
            return 0.0;
        }
        let sum: f64 = (1..n).map(|t| self.scale(t, shape, 0.0)).sum();
        0.25 * sum / (n - 1) as f64
    }
}

/// The shape under which the held-out errors of every step are most likely, taking
/// each error as Laplace with a spread proportional to the local scale: the mean
/// log-scale plus the log of the mean scaled error, which does not depend on the
/// scale's unit. A likelihood uses every held-out error; the width of the tail
/// quantile itself rests on a handful of points and would pick a different shape at
/// every retrain.
fn choose_shape(stats: &LocalStats, fits: &[StepFit]) -> ScaleShape {
    let mut best = (f64::INFINITY, ScaleShape::default());
    for shape in ScaleShape::candidates() {
        let floor = stats.floor(shape);
        let mut nll = 0.0;
        for f in fits.iter().filter(|f| !f.held.is_empty()) {
            let (mut abs, mut logs) = (0.0, 0.0);
            for &(t, r) in &f.held {
                let sc = stats.scale(t, shape, floor);
                abs += r.abs() / sc;
                logs += sc.ln();
            }
            let k = f.held.len() as f64;
            nll += (abs / k).max(1e-300).ln() + logs / k;
        }
        if nll.is_finite() && nll < best.0 {
            best = (nll, shape);
        }
    }
    best.1
}

/// The seasonal-naive in-sample mean absolute error: MASE's denominator.
pub fn mase_scale(y: &[f64], period: usize) -> f64 {
    let m = period.max(1);
    if y.len() <= m {
        return 1.0;
    }
    let s = (m..y.len()).map(|i| (y[i] - y[i - m]).abs()).sum::<f64>() / (y.len() - m) as f64;
    if s > 0.0 {
        s
    } else {
        1.0
    }
}

/// Scores' quantiles at [`TAIL_LEVELS`] (empty without scores). `scores` is sorted.
fn tail_quantiles(sorted: &[f64]) -> Vec<f64> {
    let n = sorted.len();
    if n == 0 {
        return Vec::new();
    }
    TAIL_LEVELS
        .iter()
        .map(|l| {
            let rank = (((n + 1) as f64) * l).ceil() as usize;
            sorted[rank.clamp(1, n) - 1]
        })
        .collect()
}

/// Finite-sample split-conformal bounds: the ⌈(n+1)(1−α/2)⌉-th order statistic and its
/// mirror, so coverage holds for exchangeable residuals.
fn interval_quantiles(scores: &mut [f64], coverage: f64) -> (f64, f64) {
    scores.sort_by(|a, b| a.total_cmp(b));
    let n = scores.len();
    let tail = (1.0 - coverage) / 2.0;
    let hi_rank = (((n + 1) as f64) * (1.0 - tail)).ceil() as usize;
    let lo_rank = (((n + 1) as f64) * tail).floor() as usize;
    let hi = scores[hi_rank.clamp(1, n) - 1];
    let lo = scores[lo_rank.clamp(1, n) - 1];
    (lo, hi)
}

struct Rows {
    x: Array2<f64>,
    y: Array1<f64>,
}

fn build_rows(series: &Series, layout: &Layout, h: usize, from: usize, to: usize) -> Rows {
    let width = layout.width();
    let count = to.saturating_sub(from);
    let mut flat = Vec::with_capacity(count * width);
    let mut y = Vec::with_capacity(count);
    let v = &series.values;
    for t in from..to {
        layout.row(series, t, h, &mut flat);
        y.push(v[t + h] - v[t]);
    }
    let x =
        Array2::from_shape_vec((count, width), flat).unwrap_or_else(|_| Array2::zeros((0, width)));
    Rows {
        x,
        y: Array1::from(y),
    }
}

struct Fitted {
    weights: Vec<f64>,
    intercept: f64,
    col_mean: Vec<f64>,
    col_scale: Vec<f64>,
}

impl Fitted {
    fn predict_row(&self, row: ndarray::ArrayView1<f64>) -> f64 {
        let mut acc = self.intercept;
        for (j, x) in row.iter().enumerate() {
            acc += self.weights[j] * (x - self.col_mean[j]) / self.col_scale[j];
        }
        acc
    }
}

/// Ridge on standardised columns; the target is winsorised so one anomaly in the
/// history (NAB is full of them) does not bend every coefficient.
fn ridge(rows: &Rows, penalty: f64) -> Result<Fitted, MlError> {
    let (n, width) = rows.x.dim();
    let mut col_mean = vec![0.0; width];
    let mut col_scale = vec![1.0; width];
    let mut x = rows.x.clone();
    for j in 0..width {
        let col = x.column(j);
        let mean = col.sum() / n as f64;
        let var = col.iter().map(|v| (v - mean).powi(2)).sum::<f64>() / n as f64;
        col_mean[j] = mean;
        col_scale[j] = if var > 1e-18 { var.sqrt() } else { 1.0 };
        x.column_mut(j)
            .mapv_inplace(|v| (v - col_mean[j]) / col_scale[j]);
    }
    // Winsorised at the 0.25% and 99.75% quantiles: quantiles rather than MADs, so
    // a series that is flat most of the time and jumps at fixed hours keeps its jumps.
    let mut y = rows.y.clone();
    let mut sorted: Vec<f64> = y.to_vec();
    sorted.sort_by(|a, b| a.total_cmp(b));
    let q = |p: f64| sorted[((n - 1) as f64 * p).round() as usize];
    let (lo, hi) = (q(0.0025), q(0.9975));
    y.mapv_inplace(|v| v.clamp(lo, hi));
    // Fit in units of the target's spread so the penalty means the same on every series.
    let ys = {
        let m = y.sum() / n as f64;
        let v = y.iter().map(|a| (a - m).powi(2)).sum::<f64>() / n as f64;
        if v > 1e-18 {
            v.sqrt()
        } else {
            1.0
        }
    };
    // Ridge as least squares on the data stacked over sqrt(n·penalty)·I with zero
    // targets: the exact minimiser of ||y − Xw||² + n·penalty·||w||², solved by
    // linfa-linear's QR. Columns are standardised and the target centred, so the
    // intercept is the target's mean and stays unpenalised.
    let y_mean = y.sum() / n as f64;
    let mut stacked = Array2::zeros((n + width, width));
    stacked.slice_mut(ndarray::s![..n, ..]).assign(&x);
    // Scarce data gets more shrinkage: with few rows per feature the least-squares
    // fit chases noise (a young history, a short backtest origin).
    let scarcity = (20.0 * width as f64 / n as f64).max(1.0);
    let k = (n as f64 * penalty * scarcity).sqrt();
    for j in 0..width {
        stacked[[n + j, j]] = k;
    }
    let mut target = Array1::zeros(n + width);
    for i in 0..n {
        target[i] = (y[i] - y_mean) / ys;
    }
    let model = LinearRegression::new()
        .with_intercept(false)
        .fit(&Dataset::new(stacked, target))
        .map_err(|e| MlError::Fit(e.to_string()))?;
    Ok(Fitted {
        weights: model.params().iter().map(|w| w * ys).collect(),
        intercept: y_mean,
        col_mean,
        col_scale,
    })
}

/// One step's regression with its raw held-out errors, before the intervals are scaled.
struct StepFit {
    model: StepModel,
    /// (origin index, actual − predicted) on the newest origins, by a fit that did not
    /// see them.
    held: Vec<(usize, f64)>,
}

fn fit_step(
    series: &Series,
    layout: &Layout,
    config: &ModelConfig,
    h: usize,
) -> Result<StepFit, MlError> {
    let n = series.len();
    let first = layout.first_origin(h);
    let last = n - h; // exclusive: origins whose target is known
    let from = first.max(last.saturating_sub(config.max_rows));
    let total = last - from;
    let cal = ((total as f64) * config.calibration).round() as usize;
    let cal = cal.clamp(10.min(total / 2), total / 2);
    let split = last - cal;
    // Calibration: fit on the older origins, score the held-out newer ones. The gap of
    // h keeps a training target from overlapping the first held-out origin.
    let train_end = split.saturating_sub(h).max(from + 1);
    let early = ridge(
        &build_rows(series, layout, h, from, train_end),
        config.penalty,
    )?;
    let rows = build_rows(series, layout, h, split, last);
    let held: Vec<(usize, f64)> = (0..rows.y.len())
        .map(|i| (split + i, rows.y[i] - early.predict_row(rows.x.row(i))))
        .collect();
    let k = held.len().max(1) as f64;
    let held_mae = held.iter().map(|(_, r)| r.abs()).sum::<f64>() / k;
    // The target is the change over h steps, so "no change" errs by all of it.
    let held_naive_mae = rows.y.iter().map(|d| d.abs()).sum::<f64>() / k;
    let full = ridge(&build_rows(series, layout, h, from, last), config.penalty)?;
    Ok(StepFit {
        model: StepModel {
            weights: full.weights,
            intercept: full.intercept,
            col_mean: full.col_mean,
            col_scale: full.col_scale,
            q_lo: 0.0,
            q_hi: 0.0,
            tail: Vec::new(),
            held_mae,
            held_naive_mae,
        },
        held,
    })
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

    fn seasonal(n: usize, noise: f64, seed: u64) -> Series {
        let mut rng = seed;
        let values = (0..n)
            .map(|i| {
                let u = uniform(&mut rng);
                let day = (i % 288) as f64 / 288.0;
                100.0 + 40.0 * (2.0 * std::f64::consts::PI * day).sin() + noise * u
            })
            .collect();
        Series::new(0, 300_000, values)
    }

    #[test]
    fn learns_a_daily_cycle_and_its_interval_covers() {
        let series = seasonal(288 * 10, 10.0, 7);
        let train = series.up_to(288 * 7);
        let cfg = ModelConfig {
            horizon: 24,
            ..ModelConfig::default()
        };
        let model = Forecaster::fit(&train, &cfg).unwrap();
        assert_eq!(model.kind, Kind::Ridge);
        assert_eq!(model.periods(), &[288]);
        let (mut err, mut naive, mut covered, mut total) = (0.0, 0.0, 0, 0);
        for origin in (288 * 7..288 * 10 - 24).step_by(7) {
            let f = model.predict(&series.up_to(origin)).unwrap();
            for h in 1..=24 {
                let actual = series.values[origin + h];
                err += (f.yhat[h - 1] - actual).abs();
                naive += (series.values[origin] - actual).abs();
                covered += usize::from(f.lo[h - 1] <= actual && actual <= f.hi[h - 1]);
                total += 1;
            }
        }
        assert!(err < 0.6 * naive, "model {err} vs last-value {naive}");
        let cov = covered as f64 / total as f64;
        assert!((0.83..=0.97).contains(&cov), "coverage {cov}");
    }

    #[test]
    fn short_history_falls_back_to_persistence_and_says_so() {
        let series = seasonal(40, 1.0, 3);
        let model = Forecaster::fit(&series, &ModelConfig::default()).unwrap();
        assert_eq!(model.kind, Kind::Persistence);
        let f = model.predict(&series).unwrap();
        assert_eq!(f.yhat.len(), 12);
        assert!(f.yhat.iter().all(|v| *v == series.values[39]));
    }

    #[test]
    fn round_trips_through_json() {
        let series = seasonal(288 * 4, 5.0, 11);
        let model = Forecaster::fit(&series, &ModelConfig::default()).unwrap();
        let json = serde_json::to_string(&model).unwrap();
        let back: Forecaster = serde_json::from_str(&json).unwrap();
        assert_eq!(
            back.predict(&series).unwrap(),
            model.predict(&series).unwrap()
        );
    }

    #[test]
    fn exceedance_is_calibrated_and_falls_with_the_level() {
        let series = seasonal(288 * 10, 30.0, 21);
        let train = series.up_to(288 * 7);
        let cfg = ModelConfig {
            horizon: 2,
            ..ModelConfig::default()
        };
        let model = Forecaster::fit(&train, &cfg).unwrap();
        let (mut above, mut total) = (0, 0);
        for origin in 288 * 7..288 * 10 - 2 {
            let f = model.predict(&series.up_to(origin)).unwrap();
            // Falls as the level rises, from 1 far below the forecast to 0 far above.
            let probs: Vec<f64> = (-40..=40)
                .map(|d| model.exceedance(&f, 1, f.yhat[1] + f64::from(d)))
                .collect();
            assert!(probs.windows(2).all(|w| w[1] <= w[0] + 1e-12), "{probs:?}");
            assert!(probs[0] > 0.85 && probs[80] < 0.01, "{probs:?}");
            // The level it prices at 10% should be passed about 10% of the time.
            let mut x = f.yhat[1];
            while model.exceedance(&f, 1, x) > 0.1 {
                x += 0.05;
            }
            above += usize::from(series.values[origin + 2] > x);
            total += 1;
        }
        let rate = above as f64 / total as f64;
        assert!((0.05..=0.16).contains(&rate), "{rate}");
    }

    #[test]
    fn models_saved_without_the_tail_price_from_the_interval() {
        let series = seasonal(288 * 4, 5.0, 11);
        let model = Forecaster::fit(&series, &ModelConfig::default()).unwrap();
        let mut json = serde_json::to_value(&model).unwrap();
        for step in json["steps"].as_array_mut().unwrap() {
            step.as_object_mut().unwrap().remove("tail");
        }
        json.as_object_mut().unwrap().remove("scale_shape");
        let old: Forecaster = serde_json::from_value(json).unwrap();
        assert_eq!(old.scale_shape, ScaleShape::default());
        let f = old.predict(&series).unwrap();
        assert_eq!(old.exceedance(&f, 0, f.hi[0] - 0.01), 1.0);
        assert_eq!(old.exceedance(&f, 0, f.hi[0] + 0.01), 0.0);
    }

    #[test]
    fn the_band_scales_with_what_the_noise_follows() {
        // Noise proportional to a level swinging 20-fold over the day: the chosen
        // scale leans on the level, and the band is tight at night.
        let mut rng = 3u64;
        let values: Vec<f64> = (0..288 * 8)
            .map(|i| {
                let u = uniform(&mut rng);
                let x = (i % 288) as f64 / 288.0;
                let level = 50.0 + 950.0 * (0.5 - 0.5 * (2.0 * std::f64::consts::PI * x).cos());
                level * (1.0 + 0.3 * u)
            })
            .collect();
        let series = Series::new(0, 300_000, values);
        let model = Forecaster::fit(&series, &ModelConfig::default()).unwrap();
        assert!(
            model.scale_shape.level_pow >= 0.5,
            "{:?}",
            model.scale_shape
        );
        let night = model.predict(&series.up_to(288 * 7)).unwrap();
        let noon = model.predict(&series.up_to(288 * 7 + 144)).unwrap();
        let width = |f: &Forecast| f.hi[0] - f.lo[0];
        assert!(
            width(&noon) > 5.0 * width(&night),
            "{} {}",
            width(&noon),
            width(&night)
        );
    }

    #[test]
    fn held_out_mase_says_whether_there_is_anything_to_learn() {
        let cycle = Forecaster::fit(&seasonal(288 * 6, 5.0, 2), &ModelConfig::default()).unwrap();
        let m = cycle.held_out_mase(2).unwrap();
        assert!(m < 0.8, "{m}");
        let short = Forecaster::fit(&seasonal(40, 1.0, 3), &ModelConfig::default()).unwrap();
        assert_eq!(short.held_out_mase(2), None);
    }

    #[test]
    fn bad_config_names_the_field() {
        let cfg = ModelConfig {
            coverage: 1.5,
            ..ModelConfig::default()
        };
        let err = Forecaster::fit(&seasonal(100, 1.0, 1), &cfg).unwrap_err();
        assert!(err.to_string().contains("coverage"), "{err}");
    }
}
