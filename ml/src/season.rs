//! Seasonality detection: which calendar periods (hour, day, week) a series repeats at.
//!
//! Owns the autocorrelation test. Load on an inference platform follows people, so the
//! candidates are the periods people keep; a period is kept when the series shows it
//! (autocorrelation at that lag above a threshold) and at least two full cycles exist.

const HOUR_MS: i64 = 3_600_000;
pub const DAY_MS: i64 = 24 * HOUR_MS;
pub const WEEK_MS: i64 = 7 * DAY_MS;

/// Autocorrelation at `lag`, after removing the mean and a linear trend, so slow growth
/// does not read as seasonality.
pub fn autocorrelation(values: &[f64], lag: usize) -> f64 {
    let n = values.len();
    if lag == 0 || lag >= n {
        return 0.0;
    }
    let detrended = detrend(values);
    let var: f64 = detrended.iter().map(|v| v * v).sum();
    if var <= f64::EPSILON {
        return 0.0;
    }
    let cov: f64 = (lag..n).map(|i| detrended[i] * detrended[i - lag]).sum();
    cov / var
}

fn detrend(values: &[f64]) -> Vec<f64> {
    let n = values.len() as f64;
    let mean_x = (n - 1.0) / 2.0;
    let mean_y = values.iter().sum::<f64>() / n;
    let (mut sxy, mut sxx) = (0.0, 0.0);
    for (i, v) in values.iter().enumerate() {
        let dx = i as f64 - mean_x;
        sxy += dx * (v - mean_y);
        sxx += dx * dx;
    }
    let slope = if sxx > 0.0 { sxy / sxx } else { 0.0 };
    values
        .iter()
        .enumerate()
        .map(|(i, v)| v - mean_y - slope * (i as f64 - mean_x))
        .collect()
}

/// The periods, in steps and ascending, that the series shows. `threshold` is the
/// autocorrelation a period must reach (0.2 works for the NAB and Azure traces: their
/// daily peaks sit at 0.4 to 0.9 while non-seasonal CPU series stay under 0.15).
pub fn detect_periods(values: &[f64], step_ms: i64, threshold: f64) -> Vec<usize> {
    let mut found = Vec::new();
    if step_ms <= 0 {
        return found;
    }
    for period_ms in [HOUR_MS, DAY_MS, WEEK_MS] {
        if period_ms % step_ms != 0 {
            continue;
        }
        let p = (period_ms / step_ms) as usize;
        // Two cycles to see it, plus some slack to learn from.
        if p < 2 || values.len() < 2 * p + p / 2 {
            continue;
        }
        // A peak, not a point on the slope of a longer cycle: a smooth daily curve
        // correlates strongly at one hour too.
        let a = autocorrelation(values, p);
        if a >= threshold && a > autocorrelation(values, p / 2) {
            found.push(p);
        }
    }
    if found.is_empty() {
        found.extend(strongest_cycle(values));
    }
    found
}

/// Without a calendar period, the lag with the strongest autocorrelation peak, when it
/// is clearly a cycle (≥ 0.5, at least 2.5 cycles seen). This is what finds a
/// batch job's 10-minute rhythm, or the compressed "day" of a test.
fn strongest_cycle(values: &[f64]) -> Option<usize> {
    // The newest 3,000 points are plenty to see a cycle and keep this cheap.
    let v = &values[values.len().saturating_sub(3000)..];
    let max_lag = (v.len() as f64 / 2.5) as usize;
    if max_lag < 8 {
        return None;
    }
    let detrended = detrend(v);
    let var: f64 = detrended.iter().map(|x| x * x).sum();
    if var <= f64::EPSILON {
        return None;
    }
    let acf: Vec<f64> = (0..=max_lag + 1)
        .map(|lag| {
            (lag..v.len())
                .map(|i| detrended[i] * detrended[i - lag])
                .sum::<f64>()
                / var
        })
        .collect();
    // The first local maximum after the autocorrelation has dipped below zero: the
    // fundamental period rather than one of its multiples.
    let dip = acf.iter().position(|a| *a < 0.0)?;
    (dip.max(4)..=max_lag)
        .filter(|&l| acf[l] >= acf[l - 1] && acf[l] >= acf[l + 1])
        .find(|&l| acf[l] >= 0.5)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn daily(n: usize, step_ms: i64, noise: f64) -> Vec<f64> {
        let mut rng = 12345u64;
        (0..n)
            .map(|i| {
                rng = rng.wrapping_mul(6364136223846793005).wrapping_add(1);
                let u = (rng >> 11) as f64 / (1u64 << 53) as f64 - 0.5;
                let t = i as f64 * step_ms as f64 / DAY_MS as f64;
                10.0 + 5.0 * (2.0 * std::f64::consts::PI * t).sin() + noise * u
            })
            .collect()
    }

    #[test]
    fn finds_a_daily_cycle_and_no_weekly_one_in_five_days() {
        let step = 300_000;
        let v = daily(288 * 5, step, 2.0);
        assert_eq!(detect_periods(&v, step, 0.2), vec![288]);
    }

    #[test]
    fn finds_a_cycle_that_is_no_calendar_period() {
        // A 30-step cycle at a 1 s step: a compressed "day".
        let v: Vec<f64> = (0..300)
            .map(|i| 10.0 + 50.0 * (-(((i % 30) as f64 - 15.0) / 3.0).powi(2)).exp())
            .collect();
        assert_eq!(detect_periods(&v, 1000, 0.2), vec![30]);
    }

    #[test]
    fn noise_has_no_period() {
        let step = 300_000;
        let v = daily(288 * 5, step, 2.0);
        // Shuffle the order deterministically: the same values without the cycle.
        let mut w: Vec<f64> = Vec::with_capacity(v.len());
        let mut idx: Vec<usize> = (0..v.len()).collect();
        let mut rng = 99u64;
        for i in (1..idx.len()).rev() {
            rng = rng.wrapping_mul(6364136223846793005).wrapping_add(1);
            idx.swap(i, (rng >> 33) as usize % (i + 1));
        }
        idx.iter().for_each(|&i| w.push(v[i]));
        assert!(detect_periods(&w, step, 0.2).is_empty());
    }
}
