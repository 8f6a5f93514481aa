//! Webhooks in, under `/hooks/`: Alertmanager (payload v4), PagerDuty (V3,
//! signed) and Slack (interactivity and a slash command, signed).
//!
//! Owns the `hooks:` config section, signature checks, replay protection
//! and the refusal counters. It changes nothing itself: every accepted
//! request becomes a call on the playbook engine.

use serde::Deserialize;

use crate::config::Validator;

/// The `hooks:` section.
#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct HooksConfig {}

impl HooksConfig {
    pub fn validate(&self, _path: &str, _v: &mut Validator) {}
}
