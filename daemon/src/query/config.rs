//! `query:` config section: the engine's limits, reloadable.

use serde::Deserialize;

use super::EngineOptions;
use crate::config::{PromDuration, Validator};

/// PromQL engine limits. The defaults are Prometheus's.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(default)]
pub struct QueryConfig {
    /// How far back an instant selector looks for a sample (default 5m,
    /// Prometheus's `--query.lookback-delta`).
    pub lookback_delta: PromDuration,
    /// Longest a query may run (default 2m); the API's `timeout=` can only
    /// shorten it.
    pub timeout: PromDuration,
    /// Most samples one query may hold in memory (default 50,000,000).
    pub max_samples: usize,
}

impl Default for QueryConfig {
    fn default() -> Self {
        QueryConfig {
            lookback_delta: PromDuration::from_secs(300),
            timeout: PromDuration::from_secs(120),
            max_samples: 50_000_000,
        }
    }
}

impl QueryConfig {
    pub fn validate(&self, path: &str, v: &mut Validator) {
        if self.lookback_delta.0.is_zero() {
            v.error(format!("{path}.lookback_delta"), "must be greater than 0");
        }
        if self.timeout.0.is_zero() {
            v.error(format!("{path}.timeout"), "must be greater than 0");
        }
        if self.max_samples == 0 {
            v.error(format!("{path}.max_samples"), "must be greater than 0");
        }
    }

    pub fn engine_options(&self) -> EngineOptions {
        EngineOptions {
            lookback_delta_ms: self.lookback_delta.as_millis(),
            timeout: self.timeout.0,
            max_samples: self.max_samples,
        }
    }
}
