//! Features for a direct forecast of `y[t+h]` made at origin `t`.
//!
//! Owns the feature layout, so training and prediction cannot disagree on it. Every
//! value is relative to `y[t]` (the target too), which lets one linear model serve a
//! series whose level drifts; the layout depends on the horizon step `h` only through
//! which seasonal slot lines up with the target.

use crate::season::{DAY_MS, WEEK_MS};
use crate::series::Series;
use serde::{Deserialize, Serialize};
use std::f64::consts::PI;

/// What the feature rows are built from; fixed at training time and stored with the model.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Layout {
    /// Recent lags `y[t-1] … y[t-lags]`.
    pub lags: usize,
    /// Detected periods, in steps.
    pub periods: Vec<usize>,
    /// Seasonal cycles averaged per period (1 to 3, as history allows).
    pub cycles: Vec<usize>,
    /// Window of the rolling mean and spread, in steps.
    pub window: usize,
    pub step_ms: i64,
    /// Fourier pairs of time of day / day of week (0 when the series is too short or
    /// too coarse for them).
    pub day_terms: usize,
    pub week_terms: usize,
}

impl Layout {
    pub fn width(&self) -> usize {
        self.lags + 3 + 4 * self.periods.len() + 4 * (self.day_terms + self.week_terms)
    }

    /// The earliest origin whose features are all defined for horizon step `h`.
    pub fn first_origin(&self, h: usize) -> usize {
        let mut first = self.lags.max(self.window);
        for (k, &p) in self.periods.iter().enumerate() {
            let back = back_cycles(h, p) + self.cycles[k] - 1;
            first = first.max(back * p + 1);
        }
        first
    }

    /// Appends the row for origin `t` (index into `y`) and horizon step `h` to `out`.
    /// `y[..=t]` must be known; nothing after `t` is read.
    pub fn row(&self, series: &Series, t: usize, h: usize, out: &mut Vec<f64>) {
        let y = &series.values;
        let now = y[t];
        for i in 1..=self.lags {
            out.push(y[t - i] - now);
        }
        let w = &y[t + 1 - self.window..=t];
        let mean = w.iter().sum::<f64>() / w.len() as f64;
        let spread = w.iter().map(|v| (v - mean).abs()).sum::<f64>() / w.len() as f64;
        out.push(mean - now);
        out.push(spread);
        let short = &y[t + 1 - self.lags.clamp(1, 3)..=t];
        out.push(short.iter().sum::<f64>() / short.len() as f64 - now);
        for (k, &p) in self.periods.iter().enumerate() {
            let back = back_cycles(h, p);
            let (mut at_target, mut at_origin) = (0.0, 0.0);
            let cycles = self.cycles[k];
            for c in 0..cycles {
                let shift = (back + c) * p;
                at_target += smoothed(y, t + h - shift, t);
                at_origin += y[t - shift];
            }
            let first_target = y[t + h - back * p];
            out.push(first_target - now);
            out.push(y[t - back * p] - now);
            out.push(at_target / cycles as f64 - now);
            out.push(at_origin / cycles as f64 - now);
        }
        let target_ms = series.time_at((t + h) as i64);
        let origin_ms = series.time_at(t as i64);
        for (terms, period) in [(self.day_terms, DAY_MS), (self.week_terms, WEEK_MS)] {
            for k in 1..=terms {
                for ms in [target_ms, origin_ms] {
                    let phase =
                        2.0 * PI * k as f64 * (ms.rem_euclid(period)) as f64 / period as f64;
                    out.push(phase.sin());
                    out.push(phase.cos());
                }
            }
        }
    }
}

/// How many whole periods back the slot aligned with `t + h` lies, so it is known at `t`.
fn back_cycles(h: usize, p: usize) -> usize {
    h.div_ceil(p).max(1)
}

/// Mean of the slot and its known neighbours: one seasonal observation is noisy, and the
/// neighbours at the same time of day carry the same pattern.
fn smoothed(y: &[f64], i: usize, known_until: usize) -> f64 {
    let lo = i.saturating_sub(1);
    let hi = (i + 1).min(known_until);
    let s = &y[lo..=hi];
    s.iter().sum::<f64>() / s.len() as f64
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rows_have_the_declared_width_and_read_nothing_after_the_origin() {
        let layout = Layout {
            lags: 4,
            periods: vec![6],
            cycles: vec![2],
            window: 6,
            step_ms: 60_000,
            day_terms: 1,
            week_terms: 0,
        };
        let values: Vec<f64> = (0..40).map(|i| (i % 6) as f64).collect();
        let mut poisoned = values.clone();
        let t = 30;
        for v in poisoned.iter_mut().skip(t + 1) {
            *v = f64::NAN;
        }
        for h in 1..=8 {
            assert!(t >= layout.first_origin(h));
            let mut a = Vec::new();
            layout.row(&Series::new(0, 60_000, values.clone()), t, h, &mut a);
            let mut b = Vec::new();
            layout.row(&Series::new(0, 60_000, poisoned.clone()), t, h, &mut b);
            assert_eq!(a.len(), layout.width());
            assert_eq!(a, b, "h={h} read past the origin");
        }
    }
}
