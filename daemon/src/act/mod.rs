//! The act stage: one [`Action`] trait and one file per action family
//! (scale, postgres, redis, breaker, exec, http, wait, notify), plus the
//! `act:` config (pools homeostat may re-point, the exec environment).
//!
//! An action validates its parameters when a playbook loads, describes what
//! it would do (dry-run), and executes with a context, returning a JSON
//! outcome for the audit log. Actions hold their own blast-radius limits
//! (clamps, RPO, key counts, minimum pool size). They never decide *whether*
//! to run — guards, approvals and verification are the playbook engine's —
//! and never write the state database themselves.

pub mod breaker;
pub mod exec;
pub mod http;
pub mod notify;
pub mod pool;
pub mod postgres;
pub mod redis;
pub mod scale;
pub mod wait;

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use serde::de::DeserializeOwned;
use serde::Deserialize;
use serde_json::Value;

use crate::config::{PromDuration, Validator};

pub use breaker::{BreakerConfig, BreakerRegistry, BreakersConfig};
pub use notify::{EscalationConfig, Escalator};

/// Why an action did not do its job.
#[derive(Debug, thiserror::Error)]
pub enum ActionError {
    /// Parameters that passed load-time validation but not after templates
    /// were rendered.
    #[error("invalid parameters: {0}")]
    Params(String),
    /// A blast-radius limit stopped the action before it touched anything.
    #[error("refused: {0}")]
    Refused(String),
    #[error("{0}")]
    Failed(String),
}

impl ActionError {
    pub fn failed(e: impl std::fmt::Display) -> Self {
        ActionError::Failed(e.to_string())
    }
}

/// A parameter problem found at load time: the field (dotted, under
/// `params`) and what is wrong.
#[derive(Debug, Clone, PartialEq)]
pub struct ParamIssue {
    pub field: String,
    pub message: String,
}

impl ParamIssue {
    pub fn new(field: impl Into<String>, message: impl Into<String>) -> Self {
        ParamIssue {
            field: field.into(),
            message: message.into(),
        }
    }
}

/// Deserializes an action's parameters, naming the offending field.
pub fn typed<T: DeserializeOwned>(params: &Value) -> Result<T, ParamIssue> {
    let mut track = serde_path_to_error::Track::new();
    let de = serde_path_to_error::Deserializer::new(params, &mut track);
    T::deserialize(de).map_err(|e| {
        let path = track.path().to_string();
        let mut field = if path == "." { String::new() } else { path };
        let msg = e.to_string();
        // serde names an unknown field in the message, not the path.
        if let Some(rest) = msg.strip_prefix("unknown field `") {
            if let Some(name) = rest.split('`').next() {
                let named = field == name || field.ends_with(&format!(".{name}"));
                field = if named {
                    field
                } else if field.is_empty() {
                    name.to_string()
                } else {
                    format!("{field}.{name}")
                };
            }
        }
        ParamIssue::new(field, msg)
    })
}

/// What an action runs with.
pub struct Ctx<'a> {
    pub run_id: &'a str,
    pub playbook: &'a str,
    pub target: &'a str,
    /// Bounds the whole step; actions that wait (provisioning, promotion)
    /// stop waiting before it.
    pub timeout: Duration,
    pub deps: &'a ActDeps,
}

/// One kind of remediation.
#[async_trait::async_trait]
pub trait Action: Send + Sync {
    /// The name playbooks use (`scale`, `postgres.promote`, …).
    fn name(&self) -> &'static str;
    /// Checks parameters at load time; template strings are not rendered
    /// yet, so only their shape is checked.
    fn validate(&self, params: &Value) -> Result<(), ParamIssue>;
    /// One line saying what `execute` would do with these (rendered)
    /// parameters; a dry run records this and touches nothing.
    fn describe(&self, params: &Value) -> String;
    /// Does it. The outcome is recorded as the step's output.
    async fn execute(&self, ctx: &Ctx<'_>, params: &Value) -> Result<Value, ActionError>;
}

/// Every action by name.
#[derive(Clone)]
pub struct Actions {
    map: Arc<BTreeMap<&'static str, Arc<dyn Action>>>,
}

impl Default for Actions {
    fn default() -> Self {
        let list: Vec<Arc<dyn Action>> = vec![
            Arc::new(scale::Scale),
            Arc::new(postgres::Promote),
            Arc::new(postgres::Fence),
            Arc::new(postgres::EjectReplica),
            Arc::new(postgres::RestoreReplica),
            Arc::new(redis::Flush),
            Arc::new(redis::FlushDb),
            Arc::new(redis::Failover),
            Arc::new(breaker::BreakerAction),
            Arc::new(notify::Notify),
            Arc::new(exec::Exec),
            Arc::new(http::Http),
            Arc::new(wait::Wait),
        ];
        Actions {
            map: Arc::new(list.into_iter().map(|a| (a.name(), a)).collect()),
        }
    }
}

impl Actions {
    pub fn get(&self, name: &str) -> Option<&Arc<dyn Action>> {
        self.map.get(name)
    }

    pub fn names(&self) -> Vec<&'static str> {
        self.map.keys().copied().collect()
    }
}

/// `act.haproxy[]`: an HAProxy whose runtime API homeostat may use to move
/// servers in and out of a backend.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HaproxyConfig {
    pub name: String,
    /// The stats socket with `level admin`: a path (`/run/haproxy/admin.sock`)
    /// or `host:port` for a TCP socket.
    pub socket: String,
    /// Per command (default 5s).
    #[serde(default = "default_pool_timeout")]
    pub timeout: PromDuration,
}

/// `act.pgbouncer[]`: a PgBouncer whose `[databases]` entries homeostat may
/// rewrite (then `RELOAD` through the admin console).
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PgbouncerConfig {
    pub name: String,
    /// Admin console DSN (`postgres://pgbouncer@127.0.0.1:6432/pgbouncer`),
    /// a user listed in `admin_users`.
    pub admin_dsn: String,
    /// The ini file PgBouncer was started with; homeostat must be able to
    /// write it.
    pub config_file: std::path::PathBuf,
    #[serde(default = "default_pool_timeout")]
    pub timeout: PromDuration,
}

fn default_pool_timeout() -> PromDuration {
    PromDuration::from_secs(5)
}

/// `act.exec`: what commands may see of homeostat's environment.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ExecConfig {
    /// Variables passed through from homeostat's own environment (default
    /// `PATH`, `HOME`, `LANG`); everything else is cleared, so a secret in
    /// homeostat's environment never reaches a script by accident.
    pub env_allow: Vec<String>,
}

impl Default for ExecConfig {
    fn default() -> Self {
        ExecConfig {
            env_allow: vec!["PATH".into(), "HOME".into(), "LANG".into()],
        }
    }
}

/// The `act:` section.
#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
#[serde(default)]
pub struct ActConfig {
    pub haproxy: Vec<HaproxyConfig>,
    pub pgbouncer: Vec<PgbouncerConfig>,
    pub exec: ExecConfig,
}

impl ActConfig {
    pub fn validate(&self, path: &str, v: &mut Validator) {
        let mut seen = std::collections::HashSet::new();
        for (i, h) in self.haproxy.iter().enumerate() {
            if h.name.is_empty() {
                v.error(format!("{path}.haproxy.{i}.name"), "must not be empty");
            } else if !seen.insert(("haproxy", h.name.clone())) {
                v.error(
                    format!("{path}.haproxy.{i}.name"),
                    format!("duplicate name {:?}", h.name),
                );
            }
            if h.socket.is_empty() {
                v.error(format!("{path}.haproxy.{i}.socket"), "must not be empty");
            }
        }
        for (i, p) in self.pgbouncer.iter().enumerate() {
            if p.name.is_empty() {
                v.error(format!("{path}.pgbouncer.{i}.name"), "must not be empty");
            } else if !seen.insert(("pgbouncer", p.name.clone())) {
                v.error(
                    format!("{path}.pgbouncer.{i}.name"),
                    format!("duplicate name {:?}", p.name),
                );
            }
            if !p.admin_dsn.starts_with("postgres://") && !p.admin_dsn.starts_with("postgresql://")
            {
                v.error(
                    format!("{path}.pgbouncer.{i}.admin_dsn"),
                    "must be a postgres:// URL",
                );
            }
        }
    }
}

/// What actions reach besides their parameters; rebuilt on reload.
pub struct ActDeps {
    pub act: ActConfig,
    /// `collectors.postgres` servers by name → DSN.
    pub postgres: BTreeMap<String, String>,
    /// `collectors.redis` servers by name → URL.
    pub redis: BTreeMap<String, String>,
    /// `collectors.azure` connection settings, for `scale` on Container Apps.
    pub azure_endpoint: String,
    pub azure_authority: Option<String>,
    pub breakers: BreakerRegistry,
    pub escalator: Escalator,
    pub http: reqwest::Client,
}

impl ActDeps {
    /// Deps with nothing configured (validation, tests).
    pub fn empty(breakers: BreakerRegistry, escalator: Escalator) -> Self {
        ActDeps {
            act: ActConfig::default(),
            postgres: BTreeMap::new(),
            redis: BTreeMap::new(),
            azure_endpoint: crate::collect::azure::DEFAULT_MANAGEMENT_ENDPOINT.into(),
            azure_authority: None,
            breakers,
            escalator,
            http: reqwest::Client::new(),
        }
    }

    /// A PostgreSQL DSN: a `collectors.postgres` name, or a URL as is.
    pub fn postgres_dsn(&self, server: &str) -> Result<String, ActionError> {
        if server.starts_with("postgres://") || server.starts_with("postgresql://") {
            return Ok(server.to_string());
        }
        self.postgres.get(server).cloned().ok_or_else(|| {
            ActionError::Params(format!(
                "no PostgreSQL server named {server:?} under collectors.postgres"
            ))
        })
    }

    /// A Redis URL: a `collectors.redis` name, or a URL as is.
    pub fn redis_url(&self, server: &str) -> Result<String, ActionError> {
        if server.starts_with("redis://") || server.starts_with("rediss://") {
            return Ok(server.to_string());
        }
        self.redis.get(server).cloned().ok_or_else(|| {
            ActionError::Params(format!(
                "no Redis server named {server:?} under collectors.redis"
            ))
        })
    }

    pub fn haproxy(&self, name: &str) -> Result<&HaproxyConfig, ActionError> {
        self.act
            .haproxy
            .iter()
            .find(|h| h.name == name)
            .ok_or_else(|| ActionError::Params(format!("no act.haproxy entry named {name:?}")))
    }

    pub fn pgbouncer(&self, name: &str) -> Result<&PgbouncerConfig, ActionError> {
        self.act
            .pgbouncer
            .iter()
            .find(|h| h.name == name)
            .ok_or_else(|| ActionError::Params(format!("no act.pgbouncer entry named {name:?}")))
    }
}

/// Runs `fut` with a deadline, as an action failure when it passes.
pub async fn within<T>(
    d: Duration,
    what: &str,
    fut: impl std::future::Future<Output = Result<T, ActionError>>,
) -> Result<T, ActionError> {
    match tokio::time::timeout(d, fut).await {
        Ok(r) => r,
        Err(_) => Err(ActionError::Failed(format!(
            "{what} timed out after {}",
            PromDuration(d)
        ))),
    }
}
