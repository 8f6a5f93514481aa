//! The notify stage: getting alerts to people and to the systems that page
//! them.
//!
//! Two paths: delivery to existing Alertmanagers (API v2), so a team can
//! keep its routing there, and homeostat's own Alertmanager-compatible
//! routing tree with silences, inhibition and channels (Slack, PagerDuty,
//! email, webhook). The stage takes finished alerts from the rules stage and
//! playbook events from the engine; it never evaluates anything itself.

pub mod alertmanager;

use serde::Deserialize;

use crate::config::Validator;

pub use alertmanager::{AlertingConfig, AlertmanagerSender, AmAlert};

/// The `notify:` section.
#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
#[serde(default)]
pub struct NotifyConfig {}

impl NotifyConfig {
    pub fn validate(&self, _path: &str, _v: &mut Validator) {}
}
