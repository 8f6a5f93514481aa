//! `homeostat-ml`: learned forecasts for predictive scaling.
//!
//! Turns a regular series into features (recent lags, seasonal lags at the detected
//! periods, time-of-day and day-of-week Fourier terms, rolling statistics), fits one
//! ridge regression per horizon step with linfa, and wraps each forecast in a
//! split-conformal interval. Also the accuracy measures and the rolling-origin backtest.
//!
//! This crate does no I/O and has no runtime: the daemon, the CLI and the benchmarks
//! hand it values and get numbers back, so every caller runs the same code.

pub mod backtest;
pub mod features;
pub mod metrics;
pub mod model;
pub mod season;
pub mod series;

pub use backtest::{backtest, BacktestRow};
pub use model::{Forecast, Forecaster, Kind, ModelConfig};
pub use series::Series;

/// Why a series could not be modelled.
#[derive(Debug, thiserror::Error)]
pub enum MlError {
    #[error("series too short: need at least {needed} points, got {got}")]
    TooShort { needed: usize, got: usize },
    #[error("timestamps must be strictly increasing")]
    NotIncreasing,
    #[error("history step {got} ms does not match the model's {expected} ms")]
    GridMismatch { expected: i64, got: i64 },
    #[error("invalid model setting `{field}`: {reason}")]
    Config { field: &'static str, reason: String },
    #[error("origin {0} ms is not a timestamp of the series")]
    UnknownOrigin(i64),
    #[error("fitting failed: {0}")]
    Fit(String),
}
