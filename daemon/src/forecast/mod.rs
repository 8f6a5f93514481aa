//! Forecasts in the daemon and the file formats of the forecasting CLIs.
//!
//! Owns the `forecasts` config section, the downsampled history that models train
//! on, the training schedule and the `homeostat_forecast` series. Models themselves
//! are `homeostat-ml`'s; this module only feeds them and publishes what they say.

pub mod csvio;
pub mod history;
pub mod remote;
pub mod runner;

pub use runner::{ForecastConfig, Forecasts};

/// A forecast as the API shows it: one point per step ahead, times in Unix
/// seconds.
pub fn points_json(f: &homeostat_ml::Forecast) -> serde_json::Value {
    let pts: Vec<_> = f
        .yhat
        .iter()
        .zip(&f.lo)
        .zip(&f.hi)
        .enumerate()
        .map(|(i, ((y, lo), hi))| {
            serde_json::json!({
                "t": f.time_of_step(i + 1) as f64 / 1000.0,
                "yhat": finite(*y), "lo": finite(*lo), "hi": finite(*hi),
            })
        })
        .collect();
    serde_json::Value::Array(pts)
}

/// JSON has no NaN or infinity; an unknown number is null.
pub fn finite(v: f64) -> Option<f64> {
    v.is_finite().then_some(v)
}
