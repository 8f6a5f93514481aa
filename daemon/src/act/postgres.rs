//! PostgreSQL failover actions: `postgres.promote` (RPO-guarded promotion,
//! fencing the old primary, re-pointing the write pool), `postgres.fence`,
//! and `postgres.eject_replica` / `postgres.restore_replica` for the read
//! pool.
//!
//! The RPO guard reads the candidate itself: how much WAL it has received
//! but not replayed, and how old its last replayed transaction is while it
//! is behind. WAL the primary never sent is invisible to a replica, so with
//! asynchronous replication the guard bounds, not eliminates, loss; a zero
//! RPO needs synchronous replication.

use std::str::FromStr;
use std::time::Duration;

use serde::Deserialize;
use serde_json::{json, Value};
use sqlx::postgres::{PgConnectOptions, PgConnection};
use sqlx::{Connection, Row};

use super::pool::{self, ServerState};
use super::{typed, within, Action, ActionError, Ctx, ParamIssue};
use crate::config::PromDuration;

/// Connecting to a server that may be dead gets this long at most.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(3);

async fn connect(dsn: &str, timeout: Duration) -> Result<PgConnection, ActionError> {
    let o = PgConnectOptions::from_str(dsn)
        .map_err(|e| ActionError::Params(format!("invalid DSN: {e}")))?
        .application_name("homeostat-act");
    let shown = format!("{}:{}", o.get_host(), o.get_port());
    match tokio::time::timeout(timeout, PgConnection::connect_with(&o)).await {
        Ok(Ok(c)) => Ok(c),
        Ok(Err(e)) => Err(ActionError::Failed(format!(
            "cannot connect to {shown}: {e}"
        ))),
        Err(_) => Err(ActionError::Failed(format!(
            "cannot connect to {shown}: no answer within {}",
            PromDuration(timeout)
        ))),
    }
}

fn host_port(dsn: &str) -> Result<(String, u16), ActionError> {
    let o = PgConnectOptions::from_str(dsn)
        .map_err(|e| ActionError::Params(format!("invalid DSN: {e}")))?;
    Ok((o.get_host().to_string(), o.get_port()))
}

/// Where writes go: an HAProxy backend whose servers are switched.
#[derive(Deserialize, Clone)]
#[serde(deny_unknown_fields)]
struct HaproxySwitch {
    /// An `act.haproxy` name.
    name: String,
    backend: String,
    /// The server (in `backend`) that is the candidate.
    new_server: String,
    /// The server that was the primary; put in maintenance.
    old_server: Option<String>,
}

/// A PgBouncer database entry re-pointed at the candidate.
#[derive(Deserialize, Clone)]
#[serde(deny_unknown_fields)]
struct PgbouncerSwitch {
    /// An `act.pgbouncer` name.
    name: String,
    database: String,
    /// Default: host and port of the candidate's DSN.
    host: Option<String>,
    port: Option<u16>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct PromoteParams {
    /// A `collectors.postgres` name or a DSN: the replica to promote.
    candidate: String,
    /// The failed primary, fenced read-only if it answers.
    old_primary: Option<String>,
    /// Recovery point objective: refuse when the candidate's replay is
    /// further behind than this (unless `force`).
    rpo: PromDuration,
    /// And refuse when more than this much received WAL is not replayed.
    rpo_bytes: Option<u64>,
    #[serde(default)]
    force: bool,
    haproxy: Option<HaproxySwitch>,
    pgbouncer: Option<PgbouncerSwitch>,
    /// How long `pg_promote` may take (default 60s).
    wait: Option<PromDuration>,
}

/// The candidate's replication position.
#[derive(Debug, Clone, Copy)]
struct Lag {
    in_recovery: bool,
    seconds: f64,
    bytes: f64,
}

async fn lag_of(c: &mut PgConnection) -> Result<Lag, ActionError> {
    // postgres_exporter's pg_replication_lag: 0 when everything received
    // is replayed, else the age of the last replayed transaction.
    let row = sqlx::query(
        "SELECT pg_is_in_recovery(), \
         COALESCE(CASE WHEN NOT pg_is_in_recovery() OR pg_last_wal_receive_lsn() = pg_last_wal_replay_lsn() THEN 0 \
              ELSE EXTRACT(EPOCH FROM now() - pg_last_xact_replay_timestamp()) END, 0)::float8, \
         COALESCE(pg_wal_lsn_diff(pg_last_wal_receive_lsn(), pg_last_wal_replay_lsn()), 0)::float8",
    )
    .fetch_one(&mut *c)
    .await
    .map_err(ActionError::failed)?;
    Ok(Lag {
        in_recovery: row.get(0),
        seconds: row.get::<f64, _>(1).max(0.0),
        bytes: row.get::<f64, _>(2).max(0.0),
    })
}

/// Makes a server refuse writes: `default_transaction_read_only` for every
/// new transaction (persisted with ALTER SYSTEM, so a restart keeps it) and
/// the open sessions ended. Needs a superuser. A session can still `SET
/// transaction_read_only = off` on purpose; this fences accidents, which is
/// what a returning old primary is. homeostat's own (read-only) sessions
/// are left alone: ending the collector's would read as the server being
/// down and re-trigger the failover.
async fn fence(dsn: &str) -> Result<Value, ActionError> {
    let mut c = connect(dsn, CONNECT_TIMEOUT).await?;
    for sql in [
        "ALTER SYSTEM SET default_transaction_read_only = on",
        "SELECT pg_reload_conf()",
    ] {
        sqlx::query(sql)
            .execute(&mut c)
            .await
            .map_err(|e| ActionError::Failed(format!("{sql}: {e}")))?;
    }
    let ended: i64 = sqlx::query_scalar(
        "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity \
         WHERE backend_type = 'client backend' AND pid <> pg_backend_pid() \
         AND application_name NOT IN ('homeostat', 'homeostat-act')",
    )
    .fetch_one(&mut c)
    .await
    .map_err(ActionError::failed)?;
    let _ = c.close().await;
    Ok(json!({ "read_only": true, "sessions_ended": ended }))
}

pub struct Promote;

fn promote_params(v: &Value) -> Result<PromoteParams, ActionError> {
    typed(v).map_err(|e| ActionError::Params(format!("{}: {}", e.field, e.message)))
}

#[async_trait::async_trait]
impl Action for Promote {
    fn name(&self) -> &'static str {
        "postgres.promote"
    }

    fn validate(&self, params: &Value) -> Result<(), ParamIssue> {
        let p: PromoteParams = typed(params)?;
        if p.candidate.is_empty() {
            return Err(ParamIssue::new("candidate", "must name a server"));
        }
        Ok(())
    }

    fn describe(&self, params: &Value) -> String {
        match promote_params(params) {
            Ok(p) => format!(
                "promote {} if its lag is within {}{}{}{}",
                p.candidate,
                p.rpo,
                p.old_primary
                    .as_ref()
                    .map(|o| format!(", fence {o}"))
                    .unwrap_or_default(),
                p.haproxy
                    .as_ref()
                    .map(|h| format!(
                        ", switch HAProxy {}/{} to {}",
                        h.name, h.backend, h.new_server
                    ))
                    .unwrap_or_default(),
                p.pgbouncer
                    .as_ref()
                    .map(|b| format!(", re-point PgBouncer {} database {}", b.name, b.database))
                    .unwrap_or_default()
            ),
            Err(e) => format!("postgres.promote (invalid: {e})"),
        }
    }

    async fn execute(&self, ctx: &Ctx<'_>, params: &Value) -> Result<Value, ActionError> {
        let p = promote_params(params)?;
        let dsn = ctx.deps.postgres_dsn(&p.candidate)?;
        let mut c = connect(&dsn, CONNECT_TIMEOUT.min(ctx.timeout)).await?;
        let lag = lag_of(&mut c).await?;
        let mut out = json!({
            "candidate": p.candidate,
            "lag_seconds": lag.seconds,
            "lag_bytes": lag.bytes,
        });
        if lag.in_recovery {
            let over_time = lag.seconds > p.rpo.0.as_secs_f64();
            let over_bytes = p.rpo_bytes.is_some_and(|b| lag.bytes > b as f64);
            if (over_time || over_bytes) && !p.force {
                return Err(ActionError::Refused(format!(
                    "candidate {} is {:.1}s / {} bytes behind, beyond the RPO of {}{}; not promoting (force: true overrides)",
                    p.candidate,
                    lag.seconds,
                    lag.bytes,
                    p.rpo,
                    p.rpo_bytes.map(|b| format!(" / {b} bytes")).unwrap_or_default()
                )));
            }
            let wait = p.wait.map(|d| d.0).unwrap_or(Duration::from_secs(60));
            let secs = wait.as_secs().clamp(1, i32::MAX as u64) as i32;
            let promoted: bool = within(ctx.timeout, "pg_promote", async {
                sqlx::query_scalar("SELECT pg_promote(wait => true, wait_seconds => $1)")
                    .bind(secs)
                    .fetch_one(&mut c)
                    .await
                    .map_err(|e| ActionError::Failed(format!("pg_promote: {e}")))
            })
            .await?;
            if !promoted {
                return Err(ActionError::Failed(format!(
                    "pg_promote did not finish within {}",
                    PromDuration(wait)
                )));
            }
            out["promoted"] = json!(true);
        } else {
            // Already a primary: a resumed run, or someone was faster.
            out["promoted"] = json!(false);
            out["note"] = json!("candidate was already a primary");
        }
        // A promoted server that kept `default_transaction_read_only` from an
        // earlier fence would refuse the writes it now must take.
        let _ = sqlx::query("ALTER SYSTEM RESET default_transaction_read_only")
            .execute(&mut c)
            .await;
        let _ = sqlx::query("SELECT pg_reload_conf()").execute(&mut c).await;
        let _ = c.close().await;

        if let Some(old) = &p.old_primary {
            let old_dsn = ctx.deps.postgres_dsn(old)?;
            out["fence"] = match fence(&old_dsn).await {
                Ok(v) => v,
                // The usual case: it is down. The pool switch below keeps it
                // out; the split-brain playbook fences it if it returns.
                Err(e) => json!({ "read_only": false, "unreachable": e.to_string() }),
            };
        }
        if let Some(h) = &p.haproxy {
            let cfg = ctx.deps.haproxy(&h.name)?;
            pool::set_server_state(cfg, &h.backend, &h.new_server, "ready").await?;
            if let Some(old) = &h.old_server {
                pool::set_server_state(cfg, &h.backend, old, "maint").await?;
                pool::shutdown_sessions(cfg, &h.backend, old).await?;
            }
            out["haproxy"] = json!({
                "backend": h.backend, "ready": h.new_server, "maint": h.old_server,
            });
        }
        if let Some(b) = &p.pgbouncer {
            let cfg = ctx.deps.pgbouncer(&b.name)?;
            let (host, port) = host_port(&dsn)?;
            let host = b.host.clone().unwrap_or(host);
            let port = b.port.unwrap_or(port);
            pool::pgbouncer_repoint(cfg, &b.database, &host, port).await?;
            out["pgbouncer"] = json!({ "database": b.database, "host": host, "port": port });
        }
        Ok(out)
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct FenceParams {
    server: String,
}

pub struct Fence;

#[async_trait::async_trait]
impl Action for Fence {
    fn name(&self) -> &'static str {
        "postgres.fence"
    }

    fn validate(&self, params: &Value) -> Result<(), ParamIssue> {
        typed::<FenceParams>(params).map(|_| ())
    }

    fn describe(&self, params: &Value) -> String {
        match typed::<FenceParams>(params) {
            Ok(p) => format!(
                "make {} read-only (default_transaction_read_only) and end its sessions",
                p.server
            ),
            Err(e) => format!("postgres.fence (invalid: {})", e.message),
        }
    }

    async fn execute(&self, ctx: &Ctx<'_>, params: &Value) -> Result<Value, ActionError> {
        let p: FenceParams = typed(params).map_err(|e| ActionError::Params(e.message))?;
        let dsn = ctx.deps.postgres_dsn(&p.server)?;
        fence(&dsn).await
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct ReadPoolParams {
    /// An `act.haproxy` name, its read backend and the replica's server.
    haproxy: String,
    backend: String,
    server: String,
    /// Eject: refuse when fewer than this many servers would still serve
    /// (default 1: never empty the pool).
    #[serde(default = "one")]
    min_serving: usize,
    /// Restore: the replica (`collectors.postgres` name or DSN) must be at
    /// most `max_lag` behind first.
    replica: Option<String>,
    max_lag: Option<PromDuration>,
}

fn one() -> usize {
    1
}

fn find<'a>(
    list: &'a [ServerState],
    name: &str,
    backend: &str,
) -> Result<&'a ServerState, ActionError> {
    list.iter().find(|s| s.name == name).ok_or_else(|| {
        ActionError::Params(format!("no server {name:?} in HAProxy backend {backend:?}"))
    })
}

pub struct EjectReplica;

#[async_trait::async_trait]
impl Action for EjectReplica {
    fn name(&self) -> &'static str {
        "postgres.eject_replica"
    }

    fn validate(&self, params: &Value) -> Result<(), ParamIssue> {
        typed::<ReadPoolParams>(params).map(|_| ())
    }

    fn describe(&self, params: &Value) -> String {
        match typed::<ReadPoolParams>(params) {
            Ok(p) => format!(
                "put {}/{} in maintenance on HAProxy {} unless fewer than {} would serve",
                p.backend, p.server, p.haproxy, p.min_serving
            ),
            Err(e) => format!("postgres.eject_replica (invalid: {})", e.message),
        }
    }

    async fn execute(&self, ctx: &Ctx<'_>, params: &Value) -> Result<Value, ActionError> {
        let p: ReadPoolParams = typed(params).map_err(|e| ActionError::Params(e.message))?;
        let cfg = ctx.deps.haproxy(&p.haproxy)?;
        let list = pool::servers(cfg, &p.backend).await?;
        let me = find(&list, &p.server, &p.backend)?;
        if me.in_maint() {
            return Ok(
                json!({ "server": p.server, "changed": false, "note": "already in maintenance" }),
            );
        }
        let others = list
            .iter()
            .filter(|s| s.name != p.server && s.serving())
            .count();
        if others < p.min_serving {
            return Err(ActionError::Refused(format!(
                "ejecting {} would leave {others} serving server(s) in {}, below min_serving {}",
                p.server, p.backend, p.min_serving
            )));
        }
        pool::set_server_state(cfg, &p.backend, &p.server, "maint").await?;
        pool::shutdown_sessions(cfg, &p.backend, &p.server).await?;
        Ok(json!({ "server": p.server, "changed": true, "still_serving": others }))
    }
}

pub struct RestoreReplica;

#[async_trait::async_trait]
impl Action for RestoreReplica {
    fn name(&self) -> &'static str {
        "postgres.restore_replica"
    }

    fn validate(&self, params: &Value) -> Result<(), ParamIssue> {
        let p: ReadPoolParams = typed(params)?;
        if p.max_lag.is_some() != p.replica.is_some() {
            return Err(ParamIssue::new(
                "max_lag",
                "replica and max_lag go together: the lag is read from the replica",
            ));
        }
        Ok(())
    }

    fn describe(&self, params: &Value) -> String {
        match typed::<ReadPoolParams>(params) {
            Ok(p) => format!(
                "return {}/{} to service on HAProxy {}{}",
                p.backend,
                p.server,
                p.haproxy,
                p.max_lag
                    .map(|l| format!(" once it is within {l}"))
                    .unwrap_or_default()
            ),
            Err(e) => format!("postgres.restore_replica (invalid: {})", e.message),
        }
    }

    async fn execute(&self, ctx: &Ctx<'_>, params: &Value) -> Result<Value, ActionError> {
        let p: ReadPoolParams = typed(params).map_err(|e| ActionError::Params(e.message))?;
        let mut out = json!({ "server": p.server });
        if let (Some(r), Some(max)) = (&p.replica, p.max_lag) {
            let dsn = ctx.deps.postgres_dsn(r)?;
            let mut c = connect(&dsn, CONNECT_TIMEOUT.min(ctx.timeout)).await?;
            let lag = lag_of(&mut c).await?;
            let _ = c.close().await;
            if lag.seconds > max.0.as_secs_f64() {
                return Err(ActionError::Refused(format!(
                    "{} is still {:.1}s behind (max_lag {max})",
                    r, lag.seconds
                )));
            }
            out["lag_seconds"] = json!(lag.seconds);
        }
        let cfg = ctx.deps.haproxy(&p.haproxy)?;
        let list = pool::servers(cfg, &p.backend).await?;
        let me = find(&list, &p.server, &p.backend)?;
        if !me.in_maint() {
            out["changed"] = json!(false);
            return Ok(out);
        }
        pool::set_server_state(cfg, &p.backend, &p.server, "ready").await?;
        out["changed"] = json!(true);
        Ok(out)
    }
}
