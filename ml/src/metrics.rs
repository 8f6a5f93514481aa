//! Forecast accuracy: MASE, sMAPE, interval coverage and pinball loss.
//!
//! Owns the definitions the README's tables and the daemon's accuracy metrics share.

/// Mean absolute scaled error: mean |actual − forecast| divided by `scale` (the
/// in-sample seasonal-naive error, see [`crate::model::mase_scale`]).
pub fn mase(actual: &[f64], yhat: &[f64], scale: f64) -> f64 {
    mean(actual.iter().zip(yhat).map(|(a, f)| (a - f).abs())) / scale
}

/// Symmetric MAPE in percent; a pair of zeros counts as no error.
pub fn smape(actual: &[f64], yhat: &[f64]) -> f64 {
    mean(actual.iter().zip(yhat).map(|(a, f)| {
        let d = a.abs() + f.abs();
        if d == 0.0 {
            0.0
        } else {
            200.0 * (a - f).abs() / d
        }
    }))
}

/// Share of actuals inside [lo, hi].
pub fn coverage(actual: &[f64], lo: &[f64], hi: &[f64]) -> f64 {
    mean(
        actual
            .iter()
            .zip(lo.iter().zip(hi))
            .map(|(a, (l, h))| f64::from(u8::from(*l <= *a && *a <= *h))),
    )
}

/// Quantile (pinball) loss of `q` at level `tau`.
pub fn pinball(actual: f64, q: f64, tau: f64) -> f64 {
    let d = actual - q;
    if d >= 0.0 {
        tau * d
    } else {
        (tau - 1.0) * d
    }
}

fn mean(it: impl Iterator<Item = f64>) -> f64 {
    let (mut s, mut n) = (0.0, 0usize);
    for v in it {
        s += v;
        n += 1;
    }
    if n == 0 {
        0.0
    } else {
        s / n as f64
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn definitions() {
        assert_eq!(mase(&[1.0, 3.0], &[2.0, 2.0], 2.0), 0.5);
        assert!((smape(&[100.0, 0.0], &[50.0, 0.0]) - 33.333333).abs() < 1e-4);
        assert_eq!(coverage(&[1.0, 5.0], &[0.0, 0.0], &[2.0, 2.0]), 0.5);
        assert_eq!(pinball(10.0, 8.0, 0.95), 0.95 * 2.0);
        assert!((pinball(10.0, 12.0, 0.05) - 0.95 * 2.0).abs() < 1e-12);
    }
}
