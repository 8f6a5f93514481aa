//! homeostat keeps an AI inference platform healthy: it **watches** (scrapes
//! Prometheus targets, later GPUs, databases and containers), **judges**
//! (alert rules, forecasts), **acts** (playbooks), **verifies** and **tells**.
//!
//! The crate follows the data flow in DESIGN.md, one module per stage:
//!
//! ```text
//! collect ──► store ──► query ──► rules ──► alerts ──► notify
//!               │                           └──► playbooks ──► act
//!               └──► forecast (homeostat-ml) ──► autoscale ──► playbooks
//!                 web: reads every stage · state: the durable record · daemon: wiring
//! ```
//!
//! Stages meet only through handles injected by [`daemon`]; each extension
//! point is one trait ([`collect::Collector`] so far).

pub mod act;
pub mod autoscale;
pub mod collect;
pub mod config;
pub mod daemon;
pub mod forecast;
pub mod notify;
pub mod playbooks;
pub mod query;
pub mod rules;
pub mod state;
pub mod store;
pub mod telemetry;
pub mod web;

/// Git revision this binary was built from.
pub const BUILD_REVISION: &str = env!("HOMEOSTAT_REVISION");
/// Compiler that built this binary.
pub const RUSTC_VERSION: &str = env!("HOMEOSTAT_RUSTC");
