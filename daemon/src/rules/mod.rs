//! The judge stage: Prometheus rule files, evaluated on schedule, with the
//! alert lifecycle persisted in the state database.
//!
//! - [`file`]: reading and validating rule files (promtool's checks).
//! - [`template`]: Go text/template as Prometheus uses it for labels and
//!   annotations.
//! - [`group`]: evaluating a group at one instant and the alert state
//!   machine; shared by the daemon and `homeostat test rules`.
//! - [`manager`]: one task per group, reloads that keep state, evaluation
//!   right after the scrapes a group reads, persistence, metrics, and the
//!   alert-event channel later stages subscribe to.
//! - [`unittest`]: promtool's rule unit-test format.
//!
//! This stage reads the store through the query engine and writes only rule
//! results back; it hands alerts to the notify stage and never speaks HTTP.

pub mod file;
pub mod group;
pub mod manager;
pub mod template;
pub mod unittest;

use serde::Deserialize;

use crate::config::{PromDuration, Validator};

pub use group::{Alert, AlertEvent, AlertState};
pub use manager::{GroupTask, RuleManager, RuleSettings};

/// The `rules:` section: how rules are evaluated. The files themselves are
/// listed in the top-level `rule_files`, as in `prometheus.yml`.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(default)]
pub struct RulesConfig {
    /// Evaluate a group right after a scrape that wrote a metric it reads
    /// (at most once per group interval), instead of on a free-running
    /// timer. This takes detection latency from up to two intervals down to
    /// the scrape itself. Groups whose selectors are not pinned to metric
    /// names (`{job="x"}`) always run on their timer.
    pub evaluate_after_scrape: bool,
    /// Firing alerts are re-sent to Alertmanager this often (Prometheus's
    /// `--rules.alert.resend-delay`).
    pub resend_delay: PromDuration,
    /// Alert state saved before a stop is restored only if homeostat was
    /// away for less than this (Prometheus's
    /// `--rules.alert.for-outage-tolerance`).
    pub outage_tolerance: PromDuration,
}

impl Default for RulesConfig {
    fn default() -> Self {
        RulesConfig {
            evaluate_after_scrape: true,
            resend_delay: PromDuration::from_secs(60),
            outage_tolerance: PromDuration::from_secs(3600),
        }
    }
}

impl RulesConfig {
    pub fn validate(&self, path: &str, v: &mut Validator) {
        if self.resend_delay.0.is_zero() {
            v.error(format!("{path}.resend_delay"), "must be greater than 0");
        }
    }
}
