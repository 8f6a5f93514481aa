//! PostgreSQL and PgBouncer collectors, with postgres_exporter's and
//! pgbouncer_exporter's metric names so their dashboards and alerts work
//! unchanged.
//!
//! Owns one connection per server (opened lazily, dropped on any error and
//! reopened next round) and the catalog queries. Everything it reads is in
//! `pg_monitor`'s reach, so a read-only role is enough. Never writes to the
//! server, never touches the store directly (samples go through the batch).

use std::collections::BTreeMap;
use std::str::FromStr;
use std::time::Duration;

use serde::Deserialize;
use sqlx::postgres::{PgConnectOptions, PgConnection, PgRow};
use sqlx::{ConnectOptions, Connection, Row};

use super::native::{validate_target_labels, NativeSpec, NativeTarget};
use super::{CollectError, Collector, ScrapeBatch};
use crate::config::Validator;

/// One PostgreSQL server under `collectors.postgres.servers`.
#[derive(Debug, Clone, PartialEq, Default, Deserialize)]
#[serde(default)]
pub struct PostgresServer {
    /// The `instance` label (default: `host:port` of the DSN).
    pub name: Option<String>,
    /// Connection URL, libpq style:
    /// `postgres://user:password@host:5432/postgres?sslmode=prefer`. Use
    /// `${ENV}` for the password.
    pub dsn: String,
    /// `primary` or `replica`: the `role` label on every series. What the
    /// server is right now is `pg_replication_is_replica`.
    pub role: String,
    /// Extra labels on every series of this server.
    pub labels: BTreeMap<String, String>,
}

/// One PgBouncer under `collectors.pgbouncer.servers`.
#[derive(Debug, Clone, PartialEq, Default, Deserialize)]
#[serde(default)]
pub struct PgbouncerServer {
    /// The `instance` label (default: `host:port` of the DSN).
    pub name: Option<String>,
    /// The admin console: `postgres://stats_user:password@host:6432/pgbouncer`
    /// (the user must be in `stats_users` or `admin_users`).
    pub dsn: String,
    pub labels: BTreeMap<String, String>,
}

/// `host:port/db` of a DSN, without credentials, for the target list.
fn describe(dsn: &str) -> (String, String) {
    match PgConnectOptions::from_str(dsn) {
        Ok(o) => {
            let hp = format!("{}:{}", o.get_host(), o.get_port());
            let db = o.get_database().unwrap_or_default().to_string();
            (hp.clone(), format!("postgres://{hp}/{db}"))
        }
        Err(_) => ("invalid-dsn".into(), "postgres://invalid-dsn".into()),
    }
}

fn validate_dsn(path: &str, dsn: &str, v: &mut Validator) {
    if dsn.is_empty() {
        v.error(format!("{path}.dsn"), "dsn is required");
    } else if !dsn.starts_with("postgres://") && !dsn.starts_with("postgresql://") {
        v.error(
            format!("{path}.dsn"),
            "must be a postgres:// or postgresql:// URL",
        );
    } else if let Err(e) = PgConnectOptions::from_str(dsn) {
        // The error text never includes the DSN, so no password leaks here.
        v.error(
            format!("{path}.dsn"),
            format!("not a valid PostgreSQL URL: {e}"),
        );
    }
}

impl PostgresServer {
    pub(crate) fn target(&self) -> NativeTarget {
        let (hp, display) = describe(&self.dsn);
        let mut labels = self.labels.clone();
        labels.insert("role".into(), self.role.clone());
        NativeTarget {
            instance: self.name.clone().unwrap_or(hp),
            display,
            labels,
            spec: NativeSpec::Postgres(self.clone()),
        }
    }

    pub(crate) fn validate(&self, path: &str, v: &mut Validator) {
        validate_dsn(path, &self.dsn, v);
        if self.role != "primary" && self.role != "replica" {
            v.error(
                format!("{path}.role"),
                format!(
                    "role must be \"primary\" or \"replica\", not {:?}",
                    self.role
                ),
            );
        }
        validate_target_labels(path, &self.labels, v);
    }
}

impl PgbouncerServer {
    pub(crate) fn target(&self) -> NativeTarget {
        let (hp, display) = describe(&self.dsn);
        NativeTarget {
            instance: self.name.clone().unwrap_or(hp),
            display,
            labels: self.labels.clone(),
            spec: NativeSpec::Pgbouncer(self.clone()),
        }
    }

    pub(crate) fn validate(&self, path: &str, v: &mut Validator) {
        validate_dsn(path, &self.dsn, v);
        validate_target_labels(path, &self.labels, v);
    }
}

/// Metric families the PostgreSQL collector writes: (name, type, help).
pub const PG_FAMILIES: &[(&str, &str, &str)] = &[
    ("pg_up", "gauge", "Whether the last scrape could query the server (1 while reachable; a failed scrape is up 0)."),
    ("pg_static", "gauge", "Server version, as labels."),
    ("pg_postmaster_start_time_seconds", "gauge", "When the server started, unix seconds."),
    ("pg_settings_max_connections", "gauge", "max_connections; every other numeric or boolean setting is pg_settings_<name>[_seconds|_bytes], converted as postgres_exporter does."),
    ("pg_stat_activity_count", "gauge", "Backends by database and state."),
    ("pg_stat_activity_max_tx_duration", "gauge", "Oldest open transaction by database and state, seconds."),
    ("pg_stat_activity_max_query_duration", "gauge", "Longest running statement by database and state, seconds."),
    ("pg_stat_database_numbackends", "gauge", "Backends connected to the database."),
    ("pg_stat_database_xact_commit", "counter", "Transactions committed."),
    ("pg_stat_database_xact_rollback", "counter", "Transactions rolled back."),
    ("pg_stat_database_blks_read", "counter", "Disk blocks read."),
    ("pg_stat_database_blks_hit", "counter", "Disk blocks found in the buffer cache."),
    ("pg_stat_database_tup_returned", "counter", "Rows returned by queries."),
    ("pg_stat_database_tup_fetched", "counter", "Rows fetched by queries."),
    ("pg_stat_database_tup_inserted", "counter", "Rows inserted."),
    ("pg_stat_database_tup_updated", "counter", "Rows updated."),
    ("pg_stat_database_tup_deleted", "counter", "Rows deleted."),
    ("pg_stat_database_conflicts", "counter", "Queries canceled by recovery conflicts."),
    ("pg_stat_database_temp_files", "counter", "Temporary files created."),
    ("pg_stat_database_temp_bytes", "counter", "Bytes written to temporary files."),
    ("pg_stat_database_deadlocks", "counter", "Deadlocks detected."),
    ("pg_stat_database_blk_read_time", "counter", "Time spent reading blocks, milliseconds."),
    ("pg_stat_database_blk_write_time", "counter", "Time spent writing blocks, milliseconds."),
    ("pg_stat_database_stats_reset", "gauge", "When these statistics were last reset, unix seconds."),
    ("pg_stat_database_checksum_failures", "counter", "Data page checksum failures (NaN without data checksums)."),
    ("pg_stat_database_checksum_last_failure", "gauge", "Last checksum failure, unix seconds."),
    ("pg_stat_database_session_time", "counter", "Time spent by sessions, milliseconds (PostgreSQL 14+)."),
    ("pg_stat_database_active_time", "counter", "Time spent executing statements, milliseconds (PostgreSQL 14+)."),
    ("pg_stat_database_idle_in_transaction_time", "counter", "Time spent idle in transaction, milliseconds (PostgreSQL 14+)."),
    ("pg_stat_database_sessions", "counter", "Sessions established (PostgreSQL 14+)."),
    ("pg_stat_database_sessions_abandoned", "counter", "Sessions ended by the client going away (PostgreSQL 14+)."),
    ("pg_stat_database_sessions_fatal", "counter", "Sessions ended by fatal errors (PostgreSQL 14+)."),
    ("pg_stat_database_sessions_killed", "counter", "Sessions ended by an operator (PostgreSQL 14+)."),
    ("pg_stat_database_conflicts_confl_tablespace", "counter", "Replica: queries canceled by dropped tablespaces."),
    ("pg_stat_database_conflicts_confl_lock", "counter", "Replica: queries canceled by lock timeouts."),
    ("pg_stat_database_conflicts_confl_snapshot", "counter", "Replica: queries canceled by old snapshots."),
    ("pg_stat_database_conflicts_confl_bufferpin", "counter", "Replica: queries canceled by pinned buffers."),
    ("pg_stat_database_conflicts_confl_deadlock", "counter", "Replica: queries canceled by deadlocks."),
    ("pg_stat_bgwriter_checkpoints_timed_total", "counter", "Scheduled checkpoints performed."),
    ("pg_stat_bgwriter_checkpoints_req_total", "counter", "Requested checkpoints performed."),
    ("pg_stat_bgwriter_checkpoint_write_time_total", "counter", "Time writing checkpoint files, milliseconds."),
    ("pg_stat_bgwriter_checkpoint_sync_time_total", "counter", "Time syncing checkpoint files, milliseconds."),
    ("pg_stat_bgwriter_buffers_checkpoint_total", "counter", "Buffers written during checkpoints."),
    ("pg_stat_bgwriter_buffers_clean_total", "counter", "Buffers written by the background writer."),
    ("pg_stat_bgwriter_maxwritten_clean_total", "counter", "Cleaning scans stopped for writing too many buffers."),
    ("pg_stat_bgwriter_buffers_backend_total", "counter", "Buffers written directly by backends (before PostgreSQL 17)."),
    ("pg_stat_bgwriter_buffers_backend_fsync_total", "counter", "fsyncs backends had to do themselves (before PostgreSQL 17)."),
    ("pg_stat_bgwriter_buffers_alloc_total", "counter", "Buffers allocated."),
    ("pg_stat_bgwriter_stats_reset_total", "counter", "When these statistics were last reset, unix seconds."),
    ("pg_stat_archiver_archived_count", "counter", "WAL files archived."),
    ("pg_stat_archiver_failed_count", "counter", "Failed attempts to archive WAL files."),
    ("pg_stat_archiver_last_archive_age", "gauge", "Seconds since the last WAL file was archived (NaN before the first)."),
    ("pg_database_size_bytes", "gauge", "Disk space used by the database."),
    ("pg_locks_count", "gauge", "Locks held or awaited, by database and mode."),
    ("pg_replication_is_replica", "gauge", "1 when the server is in recovery (a replica)."),
    ("pg_replication_lag", "gauge", "Replica: seconds since the last replayed transaction, 0 when replay has caught up with what was received."),
    ("pg_replication_replay_lag_bytes", "gauge", "Replica: WAL received but not yet replayed, bytes."),
    ("pg_stat_replication_pg_current_wal_lsn_bytes", "gauge", "Primary: current WAL position, bytes."),
    ("pg_stat_replication_pg_wal_lsn_diff", "gauge", "Primary: how far each replica's replay is behind, bytes."),
    ("pg_stat_replication_write_lag_seconds", "gauge", "Primary: replica write lag (pg_stat_replication.write_lag)."),
    ("pg_stat_replication_flush_lag_seconds", "gauge", "Primary: replica flush lag (pg_stat_replication.flush_lag)."),
    ("pg_stat_replication_replay_lag_seconds", "gauge", "Primary: replica replay lag (pg_stat_replication.replay_lag)."),
];

/// pg_stat_bgwriter's families, in the column order of the collector's query.
const BGWRITER_FAMILIES: [&str; 11] = [
    "pg_stat_bgwriter_checkpoints_timed_total",
    "pg_stat_bgwriter_checkpoints_req_total",
    "pg_stat_bgwriter_checkpoint_write_time_total",
    "pg_stat_bgwriter_checkpoint_sync_time_total",
    "pg_stat_bgwriter_buffers_checkpoint_total",
    "pg_stat_bgwriter_buffers_clean_total",
    "pg_stat_bgwriter_maxwritten_clean_total",
    "pg_stat_bgwriter_buffers_backend_total",
    "pg_stat_bgwriter_buffers_backend_fsync_total",
    "pg_stat_bgwriter_buffers_alloc_total",
    "pg_stat_bgwriter_stats_reset_total",
];

/// Metric families the PgBouncer collector writes.
pub const PGBOUNCER_FAMILIES: &[(&str, &str, &str)] = &[
    (
        "pgbouncer_up",
        "gauge",
        "Whether the admin console answered.",
    ),
    (
        "pgbouncer_version_info",
        "gauge",
        "PgBouncer version, as a label.",
    ),
    (
        "pgbouncer_pools_client_active_connections",
        "gauge",
        "Clients linked to a server connection.",
    ),
    (
        "pgbouncer_pools_client_waiting_connections",
        "gauge",
        "Clients waiting for a server connection.",
    ),
    (
        "pgbouncer_pools_server_active_connections",
        "gauge",
        "Server connections linked to a client.",
    ),
    (
        "pgbouncer_pools_server_idle_connections",
        "gauge",
        "Server connections idle and ready.",
    ),
    (
        "pgbouncer_pools_server_used_connections",
        "gauge",
        "Server connections idle past server_check_delay.",
    ),
    (
        "pgbouncer_pools_server_testing_connections",
        "gauge",
        "Server connections being tested.",
    ),
    (
        "pgbouncer_pools_server_login_connections",
        "gauge",
        "Server connections logging in.",
    ),
    (
        "pgbouncer_pools_client_maxwait_seconds",
        "gauge",
        "Age of the oldest waiting client, seconds.",
    ),
    (
        "pgbouncer_stats_sql_transactions_pooled_total",
        "counter",
        "SQL transactions pooled.",
    ),
    (
        "pgbouncer_stats_queries_pooled_total",
        "counter",
        "SQL queries pooled.",
    ),
    (
        "pgbouncer_stats_received_bytes_total",
        "counter",
        "Bytes received from clients.",
    ),
    (
        "pgbouncer_stats_sent_bytes_total",
        "counter",
        "Bytes sent to clients.",
    ),
    (
        "pgbouncer_stats_server_in_transaction_seconds_total",
        "counter",
        "Time server connections spent in transactions.",
    ),
    (
        "pgbouncer_stats_queries_duration_seconds_total",
        "counter",
        "Time server connections spent running queries.",
    ),
    (
        "pgbouncer_stats_client_wait_seconds_total",
        "counter",
        "Time clients spent waiting for a server.",
    ),
    (
        "pgbouncer_config_max_client_connections",
        "gauge",
        "max_client_conn.",
    ),
    (
        "pgbouncer_config_max_user_connections",
        "gauge",
        "max_user_conn.",
    ),
];

fn sql_err(what: &str, e: sqlx::Error) -> CollectError {
    CollectError::Other(format!("{what}: {e}"))
}

/// Reads PostgreSQL's statistics views.
pub struct PostgresCollector {
    server: PostgresServer,
    timeout: Duration,
    conn: Option<PgConnection>,
}

impl PostgresCollector {
    pub fn new(server: PostgresServer, timeout: Duration) -> Self {
        PostgresCollector {
            server,
            timeout,
            conn: None,
        }
    }

    fn options(&self) -> Result<PgConnectOptions, CollectError> {
        let o = PgConnectOptions::from_str(&self.server.dsn)
            .map_err(|e| CollectError::Other(format!("invalid dsn: {e}")))?;
        // The server enforces the deadline too, so an abandoned scrape does
        // not leave a query running behind it.
        let ms = self.timeout.as_millis().max(100);
        Ok(o.application_name("homeostat")
            .options([("statement_timeout", ms.to_string())])
            .log_statements(tracing::log::LevelFilter::Trace))
    }

    async fn scrape(
        conn: &mut PgConnection,
        out: &mut ScrapeBatch<'_>,
    ) -> Result<(), CollectError> {
        let row = sqlx::query(
            "SELECT version(), current_setting('server_version'), \
             current_setting('max_connections')::float8, pg_is_in_recovery(), \
             extract(epoch from pg_postmaster_start_time())::float8, \
             current_setting('server_version_num')::int4",
        )
        .fetch_one(&mut *conn)
        .await
        .map_err(|e| sql_err("reading server settings", e))?;
        let version: String = row.try_get(0).map_err(|e| sql_err("version", e))?;
        let short: String = row.try_get(1).map_err(|e| sql_err("server_version", e))?;
        let max_conn: f64 = row.try_get(2).map_err(|e| sql_err("max_connections", e))?;
        let in_recovery: bool = row
            .try_get(3)
            .map_err(|e| sql_err("pg_is_in_recovery", e))?;
        let started: f64 = row.try_get(4).map_err(|e| sql_err("start time", e))?;
        let version_num: i32 = row
            .try_get(5)
            .map_err(|e| sql_err("server_version_num", e))?;
        // postgres_exporter's short_version is major.minor.patch.
        let short_version = short
            .split_whitespace()
            .next()
            .map(|v| {
                if v.matches('.').count() == 1 {
                    format!("{v}.0")
                } else {
                    v.to_string()
                }
            })
            .unwrap_or_default();
        out.add("pg_up", &[], 1.0)?;
        out.add(
            "pg_static",
            &[("short_version", &short_version), ("version", &version)],
            1.0,
        )?;
        out.add("pg_postmaster_start_time_seconds", &[], started)?;
        out.add("pg_settings_max_connections", &[], max_conn)?;
        // Every other numeric or boolean server setting, as postgres_exporter
        // names and converts them (pg_settings_shared_buffers_bytes,
        // pg_settings_checkpoint_timeout_seconds, …). Settings whose source is
        // `client` were set by homeostat's own connection (statement_timeout,
        // to the scrape timeout): their value describes this session, not
        // the server, so they are left out.
        for r in &fetch(
            conn,
            "pg_settings",
            "SELECT name, setting, COALESCE(unit, ''), vartype FROM pg_settings \
             WHERE vartype IN ('bool', 'integer', 'real') AND name <> 'max_connections' \
               AND source <> 'client'",
        )
        .await?
        {
            let (name, setting, unit, vartype) = (text(r, 0), text(r, 1), text(r, 2), text(r, 3));
            if let Some((metric, v)) = setting_sample(&name, &setting, &unit, &vartype) {
                out.add(&metric, &[], v)?;
            }
        }
        out.add(
            "pg_replication_is_replica",
            &[],
            if in_recovery { 1.0 } else { 0.0 },
        )?;

        // Every (database, state) pair, zeros included, as postgres_exporter
        // does: an alert on a count must see 0, not nothing.
        let rows = fetch(
            conn,
            "activity",
            "SELECT d.datname::text, s.state, COALESCE(a.n, 0)::float8, \
                    COALESCE(a.max_tx, 0)::float8, COALESCE(a.max_q, 0)::float8 \
             FROM (VALUES ('active'), ('idle'), ('idle in transaction'), \
                          ('idle in transaction (aborted)'), ('fastpath function call'), \
                          ('disabled')) AS s(state) \
             CROSS JOIN pg_database d \
             LEFT JOIN (SELECT datname, state, count(*) AS n, \
                          max(extract(epoch from now() - xact_start)) AS max_tx, \
                          max(extract(epoch from now() - query_start)) \
                            FILTER (WHERE state = 'active') AS max_q \
                        FROM pg_stat_activity GROUP BY datname, state) a \
               ON a.datname = d.datname AND a.state = s.state",
        )
        .await?;
        for r in &rows {
            let (db, state) = (text(r, 0), text(r, 1));
            let l = [("datname", db.as_str()), ("state", state.as_str())];
            out.add("pg_stat_activity_count", &l, num(r, 2))?;
            out.add("pg_stat_activity_max_tx_duration", &l, num(r, 3))?;
            out.add("pg_stat_activity_max_query_duration", &l, num(r, 4))?;
        }

        const DB_COLS: [&str; 17] = [
            "numbackends",
            "xact_commit",
            "xact_rollback",
            "blks_read",
            "blks_hit",
            "tup_returned",
            "tup_fetched",
            "tup_inserted",
            "tup_updated",
            "tup_deleted",
            "conflicts",
            "temp_files",
            "temp_bytes",
            "deadlocks",
            "blk_read_time",
            "blk_write_time",
            "stats_reset",
        ];
        // Newer columns, where the server has them; `checksum_*` are NULL
        // (NaN, as postgres_exporter shows them) without data checksums, and
        // the session times are milliseconds, as the view and the exporter
        // give them.
        let mut db_cols: Vec<&str> = DB_COLS.to_vec();
        if version_num >= 120000 {
            db_cols.extend(["checksum_failures", "checksum_last_failure"]);
        }
        if version_num >= 140000 {
            db_cols.extend([
                "session_time",
                "active_time",
                "idle_in_transaction_time",
                "sessions",
                "sessions_abandoned",
                "sessions_fatal",
                "sessions_killed",
            ]);
        }
        let cols: Vec<String> = db_cols
            .iter()
            .map(|c| match *c {
                "stats_reset" => "COALESCE(extract(epoch from stats_reset), 0)::float8".to_string(),
                "checksum_last_failure" => {
                    "extract(epoch from checksum_last_failure)::float8".to_string()
                }
                _ => format!("{c}::float8"),
            })
            .collect();
        let sql = format!(
            "SELECT datid::text, datname::text, {} FROM pg_stat_database WHERE datname IS NOT NULL",
            cols.join(", ")
        );
        for r in &fetch(conn, "pg_stat_database", &sql).await? {
            let (id, db) = (text(r, 0), text(r, 1));
            let l = [("datid", id.as_str()), ("datname", db.as_str())];
            for (i, c) in db_cols.iter().enumerate() {
                out.add(&format!("pg_stat_database_{c}"), &l, num(r, i + 2))?;
            }
        }

        // Queries canceled on a replica by recovery conflicts, by cause.
        for r in &fetch(
            conn,
            "pg_stat_database_conflicts",
            "SELECT datid::text, datname::text, confl_tablespace::float8, confl_lock::float8, \
                    confl_snapshot::float8, confl_bufferpin::float8, confl_deadlock::float8 \
             FROM pg_stat_database_conflicts WHERE datname IS NOT NULL",
        )
        .await?
        {
            let (id, db) = (text(r, 0), text(r, 1));
            let l = [("datid", id.as_str()), ("datname", db.as_str())];
            for (i, c) in ["tablespace", "lock", "snapshot", "bufferpin", "deadlock"]
                .iter()
                .enumerate()
            {
                out.add(
                    &format!("pg_stat_database_conflicts_confl_{c}"),
                    &l,
                    num(r, i + 2),
                )?;
            }
        }

        // Checkpoint and background-writer pressure. PostgreSQL 17 moved the
        // checkpoint counters to pg_stat_checkpointer and dropped the
        // backend-write ones; those families are then absent.
        let bgwriter = if version_num >= 170000 {
            "SELECT c.num_timed::float8, c.num_requested::float8, c.write_time::float8, \
                    c.sync_time::float8, c.buffers_written::float8, b.buffers_clean::float8, \
                    b.maxwritten_clean::float8, NULL::float8, NULL::float8, \
                    b.buffers_alloc::float8, extract(epoch from b.stats_reset)::float8 \
             FROM pg_stat_bgwriter b, pg_stat_checkpointer c"
        } else {
            "SELECT checkpoints_timed::float8, checkpoints_req::float8, \
                    checkpoint_write_time::float8, checkpoint_sync_time::float8, \
                    buffers_checkpoint::float8, buffers_clean::float8, maxwritten_clean::float8, \
                    buffers_backend::float8, buffers_backend_fsync::float8, buffers_alloc::float8, \
                    extract(epoch from stats_reset)::float8 \
             FROM pg_stat_bgwriter"
        };
        if let Some(r) = fetch(conn, "pg_stat_bgwriter", bgwriter).await?.first() {
            for (i, name) in BGWRITER_FAMILIES.iter().enumerate() {
                if let Ok(Some(v)) = r.try_get::<Option<f64>, _>(i) {
                    out.add(name, &[], v)?;
                }
            }
        }

        // WAL archiving; the age is NaN until a first segment is archived,
        // as postgres_exporter reports it.
        if let Some(r) = fetch(
            conn,
            "pg_stat_archiver",
            "SELECT archived_count::float8, failed_count::float8, \
                    extract(epoch from now() - last_archived_time)::float8 \
             FROM pg_stat_archiver",
        )
        .await?
        .first()
        {
            out.add("pg_stat_archiver_archived_count", &[], num(r, 0))?;
            out.add("pg_stat_archiver_failed_count", &[], num(r, 1))?;
            out.add("pg_stat_archiver_last_archive_age", &[], num(r, 2))?;
        }

        for r in &fetch(
            conn,
            "database sizes",
            "SELECT datname::text, pg_database_size(datname)::float8 FROM pg_database \
             WHERE datallowconn AND has_database_privilege(datname, 'CONNECT')",
        )
        .await?
        {
            out.add(
                "pg_database_size_bytes",
                &[("datname", &text(r, 0))],
                num(r, 1),
            )?;
        }

        for r in &fetch(
            conn,
            "pg_locks",
            "SELECT d.datname::text, m.mode, COALESCE(l.n, 0)::float8 \
             FROM (VALUES ('accesssharelock'), ('rowsharelock'), ('rowexclusivelock'), \
                          ('shareupdateexclusivelock'), ('sharelock'), \
                          ('sharerowexclusivelock'), ('exclusivelock'), \
                          ('accessexclusivelock'), ('sireadlock')) AS m(mode) \
             CROSS JOIN pg_database d \
             LEFT JOIN (SELECT database, lower(mode) AS mode, count(*) AS n FROM pg_locks \
                        WHERE database IS NOT NULL GROUP BY database, lower(mode)) l \
               ON l.database = d.oid AND l.mode = m.mode",
        )
        .await?
        {
            let (db, mode) = (text(r, 0), text(r, 1));
            out.add(
                "pg_locks_count",
                &[("datname", db.as_str()), ("mode", mode.as_str())],
                num(r, 2),
            )?;
        }

        if in_recovery {
            // postgres_exporter's definition: lag is 0 while replay has
            // applied everything received, so an idle primary does not look
            // like a lagging replica.
            let r = sqlx::query(
                "SELECT CASE WHEN pg_last_wal_receive_lsn() = pg_last_wal_replay_lsn() THEN 0 \
                        ELSE GREATEST(0, extract(epoch from now() - pg_last_xact_replay_timestamp())) \
                        END::float8, \
                        COALESCE(pg_wal_lsn_diff(pg_last_wal_receive_lsn(), pg_last_wal_replay_lsn()), 0)::float8",
            )
            .fetch_one(&mut *conn)
            .await
            .map_err(|e| sql_err("replication lag", e))?;
            out.add("pg_replication_lag", &[], num(&r, 0))?;
            out.add("pg_replication_replay_lag_bytes", &[], num(&r, 1))?;
        } else {
            let r = sqlx::query("SELECT pg_wal_lsn_diff(pg_current_wal_lsn(), '0/0')::float8")
                .fetch_one(&mut *conn)
                .await
                .map_err(|e| sql_err("current WAL position", e))?;
            out.add(
                "pg_stat_replication_pg_current_wal_lsn_bytes",
                &[],
                num(&r, 0),
            )?;
            for r in &fetch(
                conn,
                "pg_stat_replication",
                "SELECT COALESCE(application_name, ''), COALESCE(client_addr::text, ''), \
                        COALESCE(state, ''), COALESCE(sync_state, ''), \
                        COALESCE(pg_wal_lsn_diff(pg_current_wal_lsn(), replay_lsn), 0)::float8, \
                        COALESCE(extract(epoch from write_lag), 0)::float8, \
                        COALESCE(extract(epoch from flush_lag), 0)::float8, \
                        COALESCE(extract(epoch from replay_lag), 0)::float8 \
                 FROM pg_stat_replication",
            )
            .await?
            {
                let (app, addr, state, sync) = (text(r, 0), text(r, 1), text(r, 2), text(r, 3));
                let l = [
                    ("application_name", app.as_str()),
                    ("client_addr", addr.as_str()),
                    ("state", state.as_str()),
                    ("sync_state", sync.as_str()),
                ];
                out.add("pg_stat_replication_pg_wal_lsn_diff", &l, num(r, 4))?;
                out.add("pg_stat_replication_write_lag_seconds", &l, num(r, 5))?;
                out.add("pg_stat_replication_flush_lag_seconds", &l, num(r, 6))?;
                out.add("pg_stat_replication_replay_lag_seconds", &l, num(r, 7))?;
            }
        }
        Ok(())
    }
}

/// One `pg_settings` row as postgres_exporter exposes it: the name with `.`
/// as `_`, durations in seconds (`_seconds`) and sizes in bytes (`_bytes`),
/// booleans as 1/0, and -1 ("disabled") left as it is. `None` for a value
/// that is not a number or a unit PostgreSQL does not document.
fn setting_sample(name: &str, setting: &str, unit: &str, vartype: &str) -> Option<(String, f64)> {
    let base = format!("pg_settings_{}", name.replace('.', "_"));
    if vartype == "bool" {
        return Some((base, if setting == "on" { 1.0 } else { 0.0 }));
    }
    let v: f64 = setting.parse().ok()?;
    let (suffix, scale) = match unit {
        "" => return Some((base, v)),
        "ms" => ("seconds", 1e-3),
        "s" => ("seconds", 1.0),
        "min" => ("seconds", 60.0),
        "h" => ("seconds", 3600.0),
        "d" => ("seconds", 86400.0),
        "B" => ("bytes", 1.0),
        "kB" => ("bytes", 1024.0),
        "MB" => ("bytes", 1024.0 * 1024.0),
        "GB" => ("bytes", 1024.0 * 1024.0 * 1024.0),
        "TB" => ("bytes", 1024.0 * 1024.0 * 1024.0 * 1024.0),
        // Sizes counted in pages or WAL segments: "8kB", "16MB", ….
        u => {
            let (n, per) = if let Some(n) = u.strip_suffix("kB") {
                (n, 1024.0)
            } else {
                (u.strip_suffix("MB")?, 1024.0 * 1024.0)
            };
            ("bytes", n.parse::<f64>().ok()? * per)
        }
    };
    let v = if v == -1.0 { v } else { v * scale };
    Some((format!("{base}_{suffix}"), v))
}

async fn fetch(conn: &mut PgConnection, what: &str, sql: &str) -> Result<Vec<PgRow>, CollectError> {
    sqlx::query(sql)
        .fetch_all(conn)
        .await
        .map_err(|e| sql_err(&format!("reading {what}"), e))
}

fn text(r: &PgRow, i: usize) -> String {
    r.try_get::<Option<String>, _>(i)
        .ok()
        .flatten()
        .unwrap_or_default()
}

fn num(r: &PgRow, i: usize) -> f64 {
    r.try_get::<Option<f64>, _>(i)
        .ok()
        .flatten()
        .unwrap_or(f64::NAN)
}

impl Collector for PostgresCollector {
    async fn collect(&mut self, out: &mut ScrapeBatch<'_>) -> Result<(), CollectError> {
        // A kept connection the server ended since the last round (a fence,
        // idle_session_timeout, a DBA's pg_terminate_backend) must not read
        // as the server being down: one cheap round trip finds out, and the
        // round goes on with a fresh connection.
        if let Some(c) = self.conn.as_mut() {
            if sqlx::Connection::ping(c).await.is_err() {
                self.conn = None;
            }
        }
        if self.conn.is_none() {
            let opts = self.options()?;
            let conn = PgConnection::connect_with(&opts)
                .await
                .map_err(|e| sql_err("connecting", e))?;
            self.conn = Some(conn);
        }
        let Some(conn) = self.conn.as_mut() else {
            return Err(CollectError::Other("no connection".into()));
        };
        let r = Self::scrape(conn, out).await;
        if r.is_err() {
            // A connection that failed mid-round may be in any state; the
            // next round starts clean.
            self.conn = None;
        }
        r
    }
}

/// Reads PgBouncer's admin console (`SHOW POOLS`, `SHOW STATS`, `SHOW CONFIG`).
pub struct PgbouncerCollector {
    server: PgbouncerServer,
    conn: Option<PgConnection>,
}

impl PgbouncerCollector {
    pub fn new(server: PgbouncerServer) -> Self {
        PgbouncerCollector { server, conn: None }
    }

    /// The admin console speaks only the simple query protocol and rejects
    /// startup parameters it does not track, so nothing optional is sent.
    async fn connect(&self) -> Result<PgConnection, CollectError> {
        let o = PgConnectOptions::from_str(&self.server.dsn)
            .map_err(|e| CollectError::Other(format!("invalid dsn: {e}")))?
            .extra_float_digits(None)
            .statement_cache_capacity(0)
            .log_statements(tracing::log::LevelFilter::Trace);
        PgConnection::connect_with(&o).await.map_err(|e| {
            // PgBouncer's own words are terse; say what to change.
            let hint = match e.as_database_error().map(|d| d.message()) {
                Some("not allowed") => {
                    " (permission denied: add the user to pgbouncer's stats_users or admin_users)"
                }
                Some(m) if m.contains("authentication failed") => {
                    " (auth refused: the user must be in pgbouncer's auth_file with that password)"
                }
                _ => "",
            };
            CollectError::Other(format!("connecting to the admin console: {e}{hint}"))
        })
    }

    async fn scrape(
        conn: &mut PgConnection,
        out: &mut ScrapeBatch<'_>,
    ) -> Result<(), CollectError> {
        out.add("pgbouncer_up", &[], 1.0)?;
        if let Some(row) = show(conn, "VERSION").await?.first() {
            if let Some(v) = row.values().next() {
                let v = v.trim_start_matches("PgBouncer ").to_string();
                out.add("pgbouncer_version_info", &[("version", &v)], 1.0)?;
            }
        }
        const POOL_COLS: [(&str, &str); 7] = [
            ("cl_active", "pgbouncer_pools_client_active_connections"),
            ("cl_waiting", "pgbouncer_pools_client_waiting_connections"),
            ("sv_active", "pgbouncer_pools_server_active_connections"),
            ("sv_idle", "pgbouncer_pools_server_idle_connections"),
            ("sv_used", "pgbouncer_pools_server_used_connections"),
            ("sv_tested", "pgbouncer_pools_server_testing_connections"),
            ("sv_login", "pgbouncer_pools_server_login_connections"),
        ];
        for row in show(conn, "POOLS").await? {
            let db = row.get("database").cloned().unwrap_or_default();
            let user = row.get("user").cloned().unwrap_or_default();
            let l = [("database", db.as_str()), ("user", user.as_str())];
            for (col, name) in POOL_COLS {
                if let Some(v) = row.get(col).and_then(|v| v.parse::<f64>().ok()) {
                    out.add(name, &l, v)?;
                }
            }
            let wait = row.get("maxwait").and_then(|v| v.parse::<f64>().ok());
            let wait_us = row
                .get("maxwait_us")
                .and_then(|v| v.parse::<f64>().ok())
                .unwrap_or(0.0);
            if let Some(w) = wait {
                out.add(
                    "pgbouncer_pools_client_maxwait_seconds",
                    &l,
                    w + wait_us / 1e6,
                )?;
            }
        }
        // (column, metric, divisor): times are microseconds.
        const STAT_COLS: [(&str, &str, f64); 7] = [
            (
                "total_xact_count",
                "pgbouncer_stats_sql_transactions_pooled_total",
                1.0,
            ),
            (
                "total_query_count",
                "pgbouncer_stats_queries_pooled_total",
                1.0,
            ),
            (
                "total_received",
                "pgbouncer_stats_received_bytes_total",
                1.0,
            ),
            ("total_sent", "pgbouncer_stats_sent_bytes_total", 1.0),
            (
                "total_xact_time",
                "pgbouncer_stats_server_in_transaction_seconds_total",
                1e6,
            ),
            (
                "total_query_time",
                "pgbouncer_stats_queries_duration_seconds_total",
                1e6,
            ),
            (
                "total_wait_time",
                "pgbouncer_stats_client_wait_seconds_total",
                1e6,
            ),
        ];
        for row in show(conn, "STATS").await? {
            let db = row.get("database").cloned().unwrap_or_default();
            for (col, name, div) in STAT_COLS {
                if let Some(v) = row.get(col).and_then(|v| v.parse::<f64>().ok()) {
                    out.add(name, &[("database", &db)], v / div)?;
                }
            }
        }
        for row in show(conn, "CONFIG").await? {
            let key = row.get("key").map(String::as_str).unwrap_or_default();
            let name = match key {
                "max_client_conn" => "pgbouncer_config_max_client_connections",
                "max_user_connections" => "pgbouncer_config_max_user_connections",
                _ => continue,
            };
            if let Some(v) = row.get("value").and_then(|v| v.parse::<f64>().ok()) {
                out.add(name, &[], v)?;
            }
        }
        Ok(())
    }
}

/// `SHOW <what>` on the admin console, rows as column name → text.
async fn show(
    conn: &mut PgConnection,
    what: &str,
) -> Result<Vec<BTreeMap<String, String>>, CollectError> {
    let sql = format!("SHOW {what}");
    // A plain string with no arguments goes over the simple query protocol,
    // the only one the admin console speaks.
    let rows = sqlx::Executor::fetch_all(conn, sql.as_str())
        .await
        .map_err(|e| sql_err(&sql, e))?;
    Ok(rows.iter().map(columns).collect())
}

/// A simple-protocol row as column name → text (everything arrives as text).
fn columns(r: &PgRow) -> BTreeMap<String, String> {
    use sqlx::Column;
    r.columns()
        .iter()
        .map(|c| {
            let v = r
                .try_get_unchecked::<Option<String>, _>(c.ordinal())
                .ok()
                .flatten()
                .unwrap_or_default();
            (c.name().to_string(), v)
        })
        .collect()
}

impl Collector for PgbouncerCollector {
    async fn collect(&mut self, out: &mut ScrapeBatch<'_>) -> Result<(), CollectError> {
        if self.conn.is_none() {
            self.conn = Some(self.connect().await?);
        }
        let Some(conn) = self.conn.as_mut() else {
            return Err(CollectError::Other("no connection".into()));
        };
        let r = Self::scrape(conn, out).await;
        if r.is_err() {
            self.conn = None;
        }
        r
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn settings_are_named_and_converted_as_postgres_exporter_does() {
        let cases = [
            (
                "shared_buffers",
                "16384",
                "8kB",
                "integer",
                "pg_settings_shared_buffers_bytes",
                134217728.0,
            ),
            (
                "checkpoint_timeout",
                "300",
                "s",
                "integer",
                "pg_settings_checkpoint_timeout_seconds",
                300.0,
            ),
            (
                "deadlock_timeout",
                "1000",
                "ms",
                "integer",
                "pg_settings_deadlock_timeout_seconds",
                1.0,
            ),
            (
                "max_wal_size",
                "1024",
                "MB",
                "integer",
                "pg_settings_max_wal_size_bytes",
                1073741824.0,
            ),
            (
                "wal_segment_size",
                "16777216",
                "B",
                "integer",
                "pg_settings_wal_segment_size_bytes",
                16777216.0,
            ),
            (
                "work_mem",
                "4096",
                "kB",
                "integer",
                "pg_settings_work_mem_bytes",
                4194304.0,
            ),
            (
                "statement_timeout",
                "0",
                "ms",
                "integer",
                "pg_settings_statement_timeout_seconds",
                0.0,
            ),
            (
                "log_min_duration_statement",
                "-1",
                "ms",
                "integer",
                "pg_settings_log_min_duration_statement_seconds",
                -1.0,
            ),
            ("fsync", "on", "", "bool", "pg_settings_fsync", 1.0),
            (
                "hot_standby",
                "off",
                "",
                "bool",
                "pg_settings_hot_standby",
                0.0,
            ),
            (
                "random_page_cost",
                "1.1",
                "",
                "real",
                "pg_settings_random_page_cost",
                1.1,
            ),
            (
                "pg_stat_statements.max",
                "5000",
                "",
                "integer",
                "pg_settings_pg_stat_statements_max",
                5000.0,
            ),
        ];
        for (name, setting, unit, vartype, metric, value) in cases {
            assert_eq!(
                setting_sample(name, setting, unit, vartype),
                Some((metric.to_string(), value)),
                "{name}"
            );
        }
        assert_eq!(setting_sample("x", "1", "furlong", "integer"), None);
        assert_eq!(setting_sample("x", "many", "", "integer"), None);
    }

    #[test]
    fn target_hides_credentials_and_labels_role() {
        let s = PostgresServer {
            name: None,
            dsn: "postgres://mon:s3cret@db1:5433/app".into(),
            role: "replica".into(),
            labels: BTreeMap::from([("cluster".into(), "main".into())]),
        };
        let t = s.target();
        assert_eq!(t.instance, "db1:5433");
        assert_eq!(t.display, "postgres://db1:5433/app");
        assert!(!format!("{}{:?}", t.display, t.labels).contains("s3cret"));
        assert_eq!(t.labels.get("role").map(String::as_str), Some("replica"));
    }

    #[test]
    fn validation_names_fields() {
        let mut v = Validator::new();
        PostgresServer {
            dsn: "mysql://x".into(),
            role: "leader".into(),
            ..Default::default()
        }
        .validate("collectors.postgres.servers.0", &mut v);
        let text = format!("{:?}", v.issues);
        assert!(text.contains("collectors.postgres.servers.0.dsn"), "{text}");
        assert!(
            text.contains("collectors.postgres.servers.0.role"),
            "{text}"
        );
    }
}
