//! Forecasts in the daemon and the file formats of the forecasting CLIs.
//!
//! Owns the `forecasts` config section, the downsampled history that models train
//! on, the training schedule and the `homeostat_forecast` series. Models themselves
//! are `homeostat-ml`'s; this module only feeds them and publishes what they say.

pub mod csvio;
pub mod history;
pub mod runner;

pub use runner::{ForecastConfig, Forecasts};
