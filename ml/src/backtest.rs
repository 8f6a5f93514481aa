//! Rolling-origin backtest: what the forecaster would have said at each origin, using
//! only the points at or before it.
//!
//! Owns the refit schedule of a backtest; the CLI owns the files and the progress bar.

use crate::model::{Forecaster, ModelConfig};
use crate::series::Series;
use crate::MlError;

/// One forecast step from one origin.
#[derive(Debug, Clone, PartialEq)]
pub struct BacktestRow {
    pub origin_ms: i64,
    pub step: usize,
    pub timestamp_ms: i64,
    pub yhat: f64,
    pub lo: f64,
    pub hi: f64,
}

/// Forecasts `config.horizon` steps after every origin (timestamps of `series`, in any
/// order). The model is refitted on the history up to the origin whenever
/// `refit_every` origins have passed since the last fit (1 = every origin), so no
/// forecast ever sees a point after its origin. `progress` is called once per origin.
pub fn backtest(
    series: &Series,
    origins_ms: &[i64],
    config: &ModelConfig,
    refit_every: usize,
    mut progress: impl FnMut(usize),
) -> Result<Vec<BacktestRow>, MlError> {
    let mut idx = Vec::with_capacity(origins_ms.len());
    for &o in origins_ms {
        idx.push(series.index_of(o).ok_or(MlError::UnknownOrigin(o))?);
    }
    idx.sort_unstable();
    let mut rows = Vec::with_capacity(idx.len() * config.horizon);
    let mut model: Option<Forecaster> = None;
    for (k, &origin) in idx.iter().enumerate() {
        let history = series.up_to(origin);
        if model.is_none() || k % refit_every.max(1) == 0 {
            model = Some(Forecaster::fit(&history, config)?);
        }
        let Some(m) = model.as_ref() else { continue };
        let f = m.predict(&history)?;
        for step in 1..=f.yhat.len() {
            rows.push(BacktestRow {
                origin_ms: f.origin_ms,
                step,
                timestamp_ms: f.time_of_step(step),
                yhat: f.yhat[step - 1],
                lo: f.lo[step - 1],
                hi: f.hi[step - 1],
            });
        }
        progress(k + 1);
    }
    Ok(rows)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn forecasts_do_not_change_when_the_future_does() {
        let values: Vec<f64> = (0..600)
            .map(|i| ((i % 48) as f64).sin() * 10.0 + 50.0)
            .collect();
        let a = Series::new(0, 60_000, values.clone());
        let mut poisoned = values;
        for v in poisoned.iter_mut().skip(401) {
            *v = 1e9;
        }
        let b = Series::new(0, 60_000, poisoned);
        let cfg = ModelConfig {
            horizon: 5,
            ..ModelConfig::default()
        };
        let origins = [300 * 60_000, 400 * 60_000];
        let ra = backtest(&a, &origins, &cfg, 1, |_| {}).unwrap();
        let rb = backtest(&b, &origins, &cfg, 1, |_| {}).unwrap();
        assert_eq!(ra.len(), 10);
        assert_eq!(ra, rb);
    }

    #[test]
    fn unknown_origin_is_an_error() {
        let s = Series::new(0, 60_000, vec![1.0; 100]);
        let err = backtest(&s, &[30_001], &ModelConfig::default(), 1, |_| {}).unwrap_err();
        assert!(matches!(err, MlError::UnknownOrigin(30_001)));
    }
}
