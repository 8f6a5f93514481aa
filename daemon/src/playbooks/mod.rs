//! The playbooks stage: remediation playbook files, the run engine with its
//! guards, approvals, verification, rollback and escalation, and the
//! durable record of every run.
//!
//! Reads alert events from the rules stage and acts only through the
//! [`Action`](crate::act::Action)s of the act stage; it never talks to a
//! managed system itself, and never formats notifications beyond the
//! escalation message.

pub mod engine;
pub mod file;

use serde::Deserialize;

use crate::act::EscalationConfig;
use crate::config::Validator;

pub use engine::{EngineError, PlaybookEngine, TriggerRequest};
pub use file::{load_all, load_file, Playbook};

/// The `playbooks:` section.
#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct PlaybooksConfig {
    /// Start with automatic runs paused (a pause set through the API is
    /// remembered across restarts either way).
    pub paused: bool,
    /// Every run is a dry run: steps are described and recorded, nothing is
    /// touched. For trying homeostat out on a live platform.
    pub dry_run: bool,
    /// Where failed runs, refused actions and tripped playbook breakers page
    /// a human.
    pub escalation: EscalationConfig,
    /// Also send info-level notices when a run starts, waits for approval
    /// and succeeds (default false: only failures page).
    pub notify_lifecycle: bool,
}

impl PlaybooksConfig {
    pub fn validate(&self, path: &str, v: &mut Validator) {
        self.escalation.validate(&format!("{path}.escalation"), v);
    }
}
