//! Redis actions: `redis.flush` (one namespace by pattern, SCAN + UNLINK in
//! bounded batches — never KEYS, which blocks the server for the whole
//! keyspace), `redis.flushdb` and `redis.failover` (REPLICAOF NO ONE).
//!
//! Both flushes count first and refuse above `max_keys`, so a pattern typo
//! cannot empty a cache that the platform depends on.

use std::time::{Duration, Instant};

use redis::aio::MultiplexedConnection;
use serde::Deserialize;
use serde_json::{json, Value};

use super::{typed, Action, ActionError, Ctx, ParamIssue};
use crate::config::PromDuration;

/// Connects with the step's deadline on both the connection and each reply.
pub async fn connect(url: &str, timeout: Duration) -> Result<MultiplexedConnection, ActionError> {
    let client = redis::Client::open(url)
        .map_err(|e| ActionError::Params(format!("invalid Redis URL ({:?})", e.kind())))?;
    let cfg = redis::AsyncConnectionConfig::new()
        .set_connection_timeout(Some(timeout))
        .set_response_timeout(Some(timeout));
    client
        .get_multiplexed_async_connection_with_config(&cfg)
        .await
        .map_err(|e| ActionError::Failed(format!("connecting to Redis: {e}")))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct FlushParams {
    /// A `collectors.redis` name or a `redis://` URL.
    server: String,
    /// A SCAN MATCH pattern such as `sess:tenant42:*`.
    pattern: String,
    /// Keys per SCAN page and per UNLINK (default 500).
    #[serde(default = "default_batch")]
    batch: usize,
    /// Refuse when more keys match (blast radius).
    max_keys: u64,
    /// Sleep between batches, to leave the server to its clients.
    pause: Option<PromDuration>,
}

fn default_batch() -> usize {
    500
}

fn check_flush(p: &FlushParams) -> Result<(), ParamIssue> {
    if p.pattern.is_empty() || p.pattern == "*" {
        return Err(ParamIssue::new(
            "pattern",
            "must name a namespace; use redis.flushdb to empty a database",
        ));
    }
    if p.batch == 0 || p.batch > 10_000 {
        return Err(ParamIssue::new("batch", "must be between 1 and 10000"));
    }
    Ok(())
}

/// One SCAN MATCH page: the next cursor (0 when done) and its keys.
async fn scan_page(
    conn: &mut MultiplexedConnection,
    cursor: u64,
    pattern: &str,
    batch: usize,
) -> Result<(u64, Vec<String>), ActionError> {
    redis::cmd("SCAN")
        .arg(cursor)
        .arg("MATCH")
        .arg(pattern)
        .arg("COUNT")
        .arg(batch)
        .query_async(conn)
        .await
        .map_err(|e| ActionError::Failed(format!("SCAN: {e}")))
}

pub struct Flush;

#[async_trait::async_trait]
impl Action for Flush {
    fn name(&self) -> &'static str {
        "redis.flush"
    }

    fn validate(&self, params: &Value) -> Result<(), ParamIssue> {
        check_flush(&typed::<FlushParams>(params)?)
    }

    fn describe(&self, params: &Value) -> String {
        match typed::<FlushParams>(params) {
            Ok(p) => format!(
                "UNLINK keys matching {:?} on {} in batches of {} (refused above {} keys)",
                p.pattern, p.server, p.batch, p.max_keys
            ),
            Err(e) => format!("redis.flush (invalid: {})", e.message),
        }
    }

    async fn execute(&self, ctx: &Ctx<'_>, params: &Value) -> Result<Value, ActionError> {
        let p: FlushParams = typed(params).map_err(|e| ActionError::Params(e.message))?;
        check_flush(&p).map_err(|e| ActionError::Params(format!("{}: {}", e.field, e.message)))?;
        let url = ctx.deps.redis_url(&p.server)?;
        let started = Instant::now();
        let mut conn = connect(&url, ctx.timeout).await?;
        // Pass 1: count, touching nothing. SCAN may return a key twice, so
        // the count errs high, which is the safe side for a guard.
        let mut matched: u64 = 0;
        let mut cursor = 0;
        loop {
            let (next, keys) = scan_page(&mut conn, cursor, &p.pattern, p.batch).await?;
            matched += keys.len() as u64;
            if next == 0 {
                break;
            }
            cursor = next;
        }
        if matched > p.max_keys {
            return Err(ActionError::Refused(format!(
                "{matched} keys match {:?}, above max_keys {}; nothing deleted",
                p.pattern, p.max_keys
            )));
        }
        // Pass 2: UNLINK page by page; the memory is freed off Redis's main
        // thread, and no single command holds it for long.
        let (mut deleted, mut batches, mut cursor) = (0u64, 0u64, 0u64);
        loop {
            let (next, keys) = scan_page(&mut conn, cursor, &p.pattern, p.batch).await?;
            if !keys.is_empty() {
                let n: u64 = redis::cmd("UNLINK")
                    .arg(&keys)
                    .query_async(&mut conn)
                    .await
                    .map_err(|e| ActionError::Failed(format!("UNLINK: {e}")))?;
                deleted += n;
                batches += 1;
                if let Some(d) = p.pause {
                    tokio::time::sleep(d.0).await;
                }
            }
            if next == 0 {
                break;
            }
            cursor = next;
        }
        Ok(json!({
            "pattern": p.pattern,
            "matched": matched,
            "deleted": deleted,
            "batches": batches,
            "seconds": started.elapsed().as_secs_f64(),
        }))
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct FlushDbParams {
    server: String,
    /// Refuse when the database holds more keys.
    max_keys: u64,
}

pub struct FlushDb;

#[async_trait::async_trait]
impl Action for FlushDb {
    fn name(&self) -> &'static str {
        "redis.flushdb"
    }

    fn validate(&self, params: &Value) -> Result<(), ParamIssue> {
        typed::<FlushDbParams>(params).map(|_| ())
    }

    fn describe(&self, params: &Value) -> String {
        match typed::<FlushDbParams>(params) {
            Ok(p) => format!(
                "FLUSHDB ASYNC on {} (refused above {} keys)",
                p.server, p.max_keys
            ),
            Err(e) => format!("redis.flushdb (invalid: {})", e.message),
        }
    }

    async fn execute(&self, ctx: &Ctx<'_>, params: &Value) -> Result<Value, ActionError> {
        let p: FlushDbParams = typed(params).map_err(|e| ActionError::Params(e.message))?;
        let url = ctx.deps.redis_url(&p.server)?;
        let mut conn = connect(&url, ctx.timeout).await?;
        let size: u64 = redis::cmd("DBSIZE")
            .query_async(&mut conn)
            .await
            .map_err(|e| ActionError::Failed(format!("DBSIZE: {e}")))?;
        if size > p.max_keys {
            return Err(ActionError::Refused(format!(
                "the database holds {size} keys, above max_keys {}; nothing deleted",
                p.max_keys
            )));
        }
        let _: () = redis::cmd("FLUSHDB")
            .arg("ASYNC")
            .query_async(&mut conn)
            .await
            .map_err(|e| ActionError::Failed(format!("FLUSHDB: {e}")))?;
        Ok(json!({ "deleted": size }))
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct FailoverParams {
    /// The replica to promote.
    server: String,
}

pub struct Failover;

#[async_trait::async_trait]
impl Action for Failover {
    fn name(&self) -> &'static str {
        "redis.failover"
    }

    fn validate(&self, params: &Value) -> Result<(), ParamIssue> {
        typed::<FailoverParams>(params).map(|_| ())
    }

    fn describe(&self, params: &Value) -> String {
        match typed::<FailoverParams>(params) {
            Ok(p) => format!("REPLICAOF NO ONE on {}", p.server),
            Err(e) => format!("redis.failover (invalid: {})", e.message),
        }
    }

    async fn execute(&self, ctx: &Ctx<'_>, params: &Value) -> Result<Value, ActionError> {
        let p: FailoverParams = typed(params).map_err(|e| ActionError::Params(e.message))?;
        let url = ctx.deps.redis_url(&p.server)?;
        let mut conn = connect(&url, ctx.timeout).await?;
        let info: String = redis::cmd("INFO")
            .arg("replication")
            .query_async(&mut conn)
            .await
            .map_err(|e| ActionError::Failed(format!("INFO: {e}")))?;
        if info.lines().any(|l| l.trim() == "role:master") {
            return Ok(
                json!({ "server": p.server, "changed": false, "note": "already a primary" }),
            );
        }
        let _: () = redis::cmd("REPLICAOF")
            .arg("NO")
            .arg("ONE")
            .query_async(&mut conn)
            .await
            .map_err(|e| ActionError::Failed(format!("REPLICAOF NO ONE: {e}")))?;
        Ok(json!({ "server": p.server, "changed": true }))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn flush_refuses_whole_keyspace_patterns() {
        let e = Flush
            .validate(&json!({"server": "r", "pattern": "*", "max_keys": 10}))
            .unwrap_err();
        assert_eq!(e.field, "pattern");
        Flush
            .validate(&json!({"server": "r", "pattern": "sess:*", "max_keys": 10}))
            .unwrap();
        assert_eq!(
            Flush
                .validate(&json!({"server": "r", "pattern": "a:*"}))
                .unwrap_err()
                .message,
            "missing field `max_keys`"
        );
    }
}
