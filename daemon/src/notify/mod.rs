//! The notify stage: getting alerts to people and to the systems that page
//! them.
//!
//! This part is delivery to existing Alertmanagers (API v2), so a
//! team keeps its routing, silences and receivers while homeostat evaluates
//! the rules. The stage takes finished alerts from the rules stage and never
//! evaluates anything itself.

pub mod alertmanager;

pub use alertmanager::{AlertingConfig, AlertmanagerSender, AmAlert};
