//! `storage:` config section: retention and the series limit.

use serde::Deserialize;

use crate::config::{PromDuration, Validator};

/// The in-memory series store.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(default)]
pub struct StorageConfig {
    /// How long raw samples are kept (default 6h). Whole chunks older than
    /// this are dropped every minute.
    pub retention: PromDuration,
    /// Most series held at once (default 2,000,000). New series beyond it are
    /// refused and counted in `homeostat_store_series_limit_rejections_total`;
    /// existing series keep being written.
    pub max_series: usize,
}

impl Default for StorageConfig {
    fn default() -> Self {
        StorageConfig {
            retention: PromDuration::from_secs(6 * 3600),
            max_series: 2_000_000,
        }
    }
}

impl StorageConfig {
    pub fn validate(&self, path: &str, v: &mut Validator) {
        if self.retention.0.as_secs() < 60 {
            v.error(format!("{path}.retention"), "must be at least 1m");
        }
        if self.max_series == 0 {
            v.error(format!("{path}.max_series"), "must be greater than 0");
        }
    }

    pub fn store_config(&self) -> super::StoreConfig {
        super::StoreConfig {
            retention_ms: self.retention.as_millis(),
            max_series: self.max_series,
        }
    }
}
