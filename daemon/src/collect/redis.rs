//! Redis collector, with redis_exporter's metric names so its dashboards and
//! alerts work unchanged.
//!
//! Owns one multiplexed connection per server (reopened after any error), the
//! INFO parser and the INFO → metric-name table. Reads only (`PING`, `INFO ALL`
//! with its commandstats, errorstats and latencystats sections, `SLOWLOG
//! LEN`/`GET 1`, `CONFIG GET maxclients|maxmemory|io-threads`; the last two optional,
//! because managed Redis and ACLs often disable them). Never touches the
//! store directly.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use serde::Deserialize;

use super::native::{validate_target_labels, NativeSpec, NativeTarget};
use super::{CollectError, Collector, ScrapeBatch};
use crate::config::Validator;

/// One Redis server under `collectors.redis.servers`.
#[derive(Debug, Clone, PartialEq, Default, Deserialize)]
#[serde(default)]
pub struct RedisServer {
    /// The `instance` label (default: `host:port` of the URL).
    pub name: Option<String>,
    /// `redis://[:password@]host:6379[/db]`, or `rediss://` for TLS. Use
    /// `${ENV}` for the password.
    pub url: String,
    pub labels: BTreeMap<String, String>,
}

impl RedisServer {
    fn host_port(&self) -> String {
        match reqwest::Url::parse(&self.url) {
            Ok(u) => format!(
                "{}:{}",
                u.host_str().unwrap_or("localhost"),
                u.port().unwrap_or(6379)
            ),
            Err(_) => "invalid-url".into(),
        }
    }

    pub(crate) fn target(&self) -> NativeTarget {
        let scheme = self.url.split("://").next().unwrap_or("redis");
        NativeTarget {
            instance: self.name.clone().unwrap_or_else(|| self.host_port()),
            display: format!("{scheme}://{}", self.host_port()),
            labels: self.labels.clone(),
            spec: NativeSpec::Redis(self.clone()),
        }
    }

    pub(crate) fn validate(&self, path: &str, v: &mut Validator) {
        if self.url.is_empty() {
            v.error(format!("{path}.url"), "url is required");
        } else if let Err(e) = redis::Client::open(self.url.as_str()) {
            // The error names the problem, never the URL (which may hold a
            // password).
            v.error(
                format!("{path}.url"),
                format!("not a valid Redis URL ({:?}): use redis://[:password@]host:port[/db] or rediss://", e.kind()),
            );
        }
        validate_target_labels(path, &self.labels, v);
    }
}

/// INFO field → (metric name without `redis_`, type). The names are
/// redis_exporter's.
const INFO_FIELDS: &[(&str, &str, &str)] = &[
    ("uptime_in_seconds", "uptime_in_seconds", "gauge"),
    ("process_id", "process_id", "gauge"),
    ("connected_clients", "connected_clients", "gauge"),
    ("blocked_clients", "blocked_clients", "gauge"),
    ("tracking_clients", "tracking_clients", "gauge"),
    ("maxclients", "max_clients", "gauge"),
    ("used_memory", "memory_used_bytes", "gauge"),
    ("used_memory_rss", "memory_used_rss_bytes", "gauge"),
    ("used_memory_peak", "memory_used_peak_bytes", "gauge"),
    ("used_memory_lua", "memory_used_lua_bytes", "gauge"),
    (
        "used_memory_overhead",
        "memory_used_overhead_bytes",
        "gauge",
    ),
    ("used_memory_startup", "memory_used_startup_bytes", "gauge"),
    ("used_memory_dataset", "memory_used_dataset_bytes", "gauge"),
    ("used_memory_scripts", "memory_used_scripts_bytes", "gauge"),
    ("maxmemory", "memory_max_bytes", "gauge"),
    ("total_system_memory", "total_system_memory_bytes", "gauge"),
    (
        "mem_fragmentation_ratio",
        "mem_fragmentation_ratio",
        "gauge",
    ),
    (
        "mem_fragmentation_bytes",
        "mem_fragmentation_bytes",
        "gauge",
    ),
    ("loading", "loading_dump_file", "gauge"),
    (
        "rdb_changes_since_last_save",
        "rdb_changes_since_last_save",
        "gauge",
    ),
    ("rdb_bgsave_in_progress", "rdb_bgsave_in_progress", "gauge"),
    (
        "rdb_last_save_time",
        "rdb_last_save_timestamp_seconds",
        "gauge",
    ),
    (
        "rdb_last_bgsave_time_sec",
        "rdb_last_bgsave_duration_sec",
        "gauge",
    ),
    ("aof_enabled", "aof_enabled", "gauge"),
    (
        "aof_rewrite_in_progress",
        "aof_rewrite_in_progress",
        "gauge",
    ),
    ("connected_slaves", "connected_slaves", "gauge"),
    ("master_repl_offset", "master_repl_offset", "gauge"),
    ("second_repl_offset", "second_repl_offset", "gauge"),
    ("repl_backlog_active", "repl_backlog_is_active", "gauge"),
    ("repl_backlog_size", "replication_backlog_bytes", "gauge"),
    (
        "repl_backlog_first_byte_offset",
        "repl_backlog_first_byte_offset",
        "gauge",
    ),
    (
        "repl_backlog_histlen",
        "repl_backlog_history_bytes",
        "gauge",
    ),
    (
        "master_last_io_seconds_ago",
        "master_last_io_seconds_ago",
        "gauge",
    ),
    (
        "master_link_down_since_seconds",
        "master_link_down_since_seconds",
        "gauge",
    ),
    (
        "master_sync_in_progress",
        "master_sync_in_progress",
        "gauge",
    ),
    ("slave_repl_offset", "slave_repl_offset", "gauge"),
    ("slave_priority", "slave_priority", "gauge"),
    (
        "instantaneous_ops_per_sec",
        "instantaneous_ops_per_sec",
        "gauge",
    ),
    (
        "instantaneous_input_kbps",
        "instantaneous_input_kbps",
        "gauge",
    ),
    (
        "instantaneous_output_kbps",
        "instantaneous_output_kbps",
        "gauge",
    ),
    ("pubsub_channels", "pubsub_channels", "gauge"),
    ("pubsub_patterns", "pubsub_patterns", "gauge"),
    ("mem_clients_normal", "mem_clients_normal", "gauge"),
    ("mem_clients_slaves", "mem_clients_slaves", "gauge"),
    (
        "mem_not_counted_for_evict",
        "mem_not_counted_for_eviction_bytes",
        "gauge",
    ),
    ("allocator_active", "allocator_active_bytes", "gauge"),
    ("allocator_allocated", "allocator_allocated_bytes", "gauge"),
    ("allocator_frag_bytes", "allocator_frag_bytes", "gauge"),
    ("allocator_frag_ratio", "allocator_frag_ratio", "gauge"),
    ("allocator_resident", "allocator_resident_bytes", "gauge"),
    ("allocator_rss_bytes", "allocator_rss_bytes", "gauge"),
    ("allocator_rss_ratio", "allocator_rss_ratio", "gauge"),
    (
        "lazyfree_pending_objects",
        "lazyfree_pending_objects",
        "gauge",
    ),
    ("active_defrag_running", "active_defrag_running", "gauge"),
    ("active_defrag_hits", "defrag_hits", "gauge"),
    ("active_defrag_misses", "defrag_misses", "gauge"),
    ("active_defrag_key_hits", "defrag_key_hits", "gauge"),
    ("active_defrag_key_misses", "defrag_key_misses", "gauge"),
    (
        "rdb_current_bgsave_time_sec",
        "rdb_current_bgsave_duration_sec",
        "gauge",
    ),
    ("rdb_last_cow_size", "rdb_last_cow_size_bytes", "gauge"),
    ("aof_rewrite_scheduled", "aof_rewrite_scheduled", "gauge"),
    (
        "aof_current_rewrite_time_sec",
        "aof_current_rewrite_duration_sec",
        "gauge",
    ),
    (
        "aof_last_rewrite_time_sec",
        "aof_last_rewrite_duration_sec",
        "gauge",
    ),
    ("aof_last_cow_size", "aof_last_cow_size_bytes", "gauge"),
    (
        "module_fork_in_progress",
        "module_fork_in_progress",
        "gauge",
    ),
    (
        "module_fork_last_cow_size",
        "module_fork_last_cow_size",
        "gauge",
    ),
    (
        "client_recent_max_input_buffer",
        "client_recent_max_input_buffer_bytes",
        "gauge",
    ),
    (
        "client_recent_max_output_buffer",
        "client_recent_max_output_buffer_bytes",
        "gauge",
    ),
    (
        "clients_in_timeout_table",
        "clients_in_timeout_table",
        "gauge",
    ),
    ("cluster_enabled", "cluster_enabled", "gauge"),
    ("cluster_connections", "cluster_connections", "gauge"),
    (
        "number_of_cached_scripts",
        "number_of_cached_scripts",
        "gauge",
    ),
    ("expired_stale_perc", "expired_stale_percentage", "gauge"),
    (
        "expired_time_cap_reached_count",
        "expired_time_cap_reached_total",
        "gauge",
    ),
    (
        "migrate_cached_sockets",
        "migrate_cached_sockets_total",
        "gauge",
    ),
    (
        "slave_expires_tracked_keys",
        "slave_expires_tracked_keys",
        "gauge",
    ),
    ("tracking_total_keys", "tracking_total_keys", "gauge"),
    ("tracking_total_items", "tracking_total_items", "gauge"),
    (
        "tracking_total_prefixes",
        "tracking_total_prefixes",
        "gauge",
    ),
    ("io_threads_active", "io_threads_active", "gauge"),
    (
        "io_threaded_reads_processed",
        "io_threaded_reads_processed",
        "counter",
    ),
    (
        "io_threaded_writes_processed",
        "io_threaded_writes_processed",
        "counter",
    ),
    ("total_reads_processed", "total_reads_processed", "counter"),
    (
        "total_writes_processed",
        "total_writes_processed",
        "counter",
    ),
    (
        "dump_payload_sanitizations",
        "dump_payload_sanitizations",
        "counter",
    ),
    (
        "unexpected_error_replies",
        "unexpected_error_replies",
        "counter",
    ),
    (
        "total_connections_received",
        "connections_received_total",
        "counter",
    ),
    (
        "total_commands_processed",
        "commands_processed_total",
        "counter",
    ),
    (
        "rejected_connections",
        "rejected_connections_total",
        "counter",
    ),
    ("total_net_input_bytes", "net_input_bytes_total", "counter"),
    (
        "total_net_output_bytes",
        "net_output_bytes_total",
        "counter",
    ),
    ("expired_keys", "expired_keys_total", "counter"),
    ("evicted_keys", "evicted_keys_total", "counter"),
    ("keyspace_hits", "keyspace_hits_total", "counter"),
    ("keyspace_misses", "keyspace_misses_total", "counter"),
    ("sync_full", "replica_resyncs_full", "counter"),
    (
        "sync_partial_ok",
        "replica_partial_resync_accepted",
        "counter",
    ),
    (
        "sync_partial_err",
        "replica_partial_resync_denied",
        "counter",
    ),
    ("total_error_replies", "total_error_replies", "counter"),
    ("used_cpu_sys", "cpu_sys_seconds_total", "counter"),
    ("used_cpu_user", "cpu_user_seconds_total", "counter"),
    (
        "used_cpu_sys_children",
        "cpu_sys_children_seconds_total",
        "counter",
    ),
    (
        "used_cpu_user_children",
        "cpu_user_children_seconds_total",
        "counter",
    ),
    (
        "used_cpu_sys_main_thread",
        "cpu_sys_main_thread_seconds_total",
        "counter",
    ),
    (
        "used_cpu_user_main_thread",
        "cpu_user_main_thread_seconds_total",
        "counter",
    ),
];

/// INFO fields that say `ok` or `err`: 1 for ok, as redis_exporter reports
/// them (an alert on `== 0` catches a failing save or AOF write).
const STATUS_FIELDS: &[(&str, &str)] = &[
    ("rdb_last_bgsave_status", "rdb_last_bgsave_status"),
    ("aof_last_write_status", "aof_last_write_status"),
    ("aof_last_bgrewrite_status", "aof_last_bgrewrite_status"),
];

/// Families written besides [`INFO_FIELDS`].
const OTHER_FAMILIES: &[(&str, &str, &str)] = &[
    (
        "redis_up",
        "gauge",
        "Whether the last scrape could talk to the server.",
    ),
    (
        "redis_instance_info",
        "gauge",
        "Server identity, as labels (role is master or slave).",
    ),
    (
        "redis_slave_info",
        "gauge",
        "On a replica: its master, as labels.",
    ),
    (
        "redis_master_link_up",
        "gauge",
        "On a replica: 1 while the link to the master is up.",
    ),
    (
        "redis_connected_slave_offset_bytes",
        "gauge",
        "On a master: each replica's acknowledged offset.",
    ),
    (
        "redis_connected_slave_lag_seconds",
        "gauge",
        "On a master: seconds since each replica's last ack.",
    ),
    ("redis_db_keys", "gauge", "Keys per database."),
    (
        "redis_db_keys_expiring",
        "gauge",
        "Keys with an expiry per database.",
    ),
    (
        "redis_db_avg_ttl_seconds",
        "gauge",
        "Average TTL of expiring keys per database.",
    ),
    (
        "redis_config_maxclients",
        "gauge",
        "CONFIG GET maxclients (absent where CONFIG is disabled).",
    ),
    (
        "redis_config_maxmemory",
        "gauge",
        "CONFIG GET maxmemory (absent where CONFIG is disabled).",
    ),
    (
        "redis_config_io_threads",
        "gauge",
        "CONFIG GET io-threads (absent where CONFIG is disabled).",
    ),
    (
        "redis_exporter_last_scrape_ping_time_seconds",
        "gauge",
        "Round trip of a PING, seconds.",
    ),
    (
        "redis_latest_fork_seconds",
        "gauge",
        "Duration of the latest fork (INFO latest_fork_usec), seconds.",
    ),
    (
        "redis_start_time_seconds",
        "gauge",
        "When the server started, unix seconds (server_time_usec - uptime).",
    ),
    (
        "redis_rdb_last_bgsave_status",
        "gauge",
        "1 when the last RDB save succeeded.",
    ),
    (
        "redis_aof_last_write_status",
        "gauge",
        "1 when the last AOF write succeeded.",
    ),
    (
        "redis_aof_last_bgrewrite_status",
        "gauge",
        "1 when the last AOF rewrite succeeded.",
    ),
    (
        "redis_commands_total",
        "counter",
        "Calls per command (INFO commandstats).",
    ),
    (
        "redis_commands_duration_seconds_total",
        "counter",
        "Time spent per command, seconds.",
    ),
    (
        "redis_commands_failed_calls_total",
        "counter",
        "Calls per command that failed while running.",
    ),
    (
        "redis_commands_rejected_calls_total",
        "counter",
        "Calls per command rejected before running (ACL, OOM, bad arguments).",
    ),
    (
        "redis_errors_total",
        "counter",
        "Error replies by error prefix (INFO errorstats).",
    ),
    (
        "redis_latency_percentiles_usec",
        "summary",
        "Per-command latency percentiles, microseconds (INFO latencystats).",
    ),
    ("redis_slowlog_length", "gauge", "Entries in the slow log."),
    (
        "redis_slowlog_last_id",
        "gauge",
        "ID of the newest slow log entry.",
    ),
    (
        "redis_last_slow_execution_duration_seconds",
        "gauge",
        "Duration of the newest slow log entry, seconds.",
    ),
];

/// Every family this collector writes, for `/api/v1/metadata`.
pub static FAMILIES: std::sync::LazyLock<Vec<(&'static str, &'static str, &'static str)>> =
    std::sync::LazyLock::new(|| {
        let mut v: Vec<(&str, &str, &str)> = OTHER_FAMILIES.to_vec();
        for (field, name, kind) in INFO_FIELDS {
            // Built once per process for the metadata table.
            let full: &'static str = Box::leak(format!("redis_{name}").into_boxed_str());
            let help: &'static str = Box::leak(format!("INFO field {field}.").into_boxed_str());
            v.push((full, kind, help));
        }
        v
    });

/// INFO's `key:value` lines, section headers and blanks skipped.
pub fn parse_info(text: &str) -> BTreeMap<&str, &str> {
    text.lines()
        .map(str::trim_end)
        .filter(|l| !l.is_empty() && !l.starts_with('#'))
        .filter_map(|l| l.split_once(':'))
        .collect()
}

/// `a=1,b=2` as pairs (keyspace and replica lines).
fn parse_kv_list(v: &str) -> BTreeMap<&str, &str> {
    v.split(',').filter_map(|p| p.split_once('=')).collect()
}

/// A numeric value from INFO's fields or from one of its `a=1,b=2` lists.
fn number(map: &BTreeMap<&str, &str>, key: &str) -> Option<f64> {
    map.get(key).and_then(|v| v.parse::<f64>().ok())
}

/// Turns one INFO reply into samples. Separate from the connection so it can
/// be tested on recorded replies.
pub fn emit_info(info: &str, out: &mut ScrapeBatch<'_>) -> Result<(), CollectError> {
    let fields = parse_info(info);
    for (field, name, _) in INFO_FIELDS {
        if let Some(v) = number(&fields, field) {
            out.add(&format!("redis_{name}"), &[], v)?;
        }
    }
    let get = |k: &str| fields.get(k).copied().unwrap_or_default();
    for (field, name) in STATUS_FIELDS {
        if let Some(v) = fields.get(field) {
            out.add(
                &format!("redis_{name}"),
                &[],
                if *v == "ok" { 1.0 } else { 0.0 },
            )?;
        }
    }
    if let Some(us) = number(&fields, "latest_fork_usec") {
        out.add("redis_latest_fork_seconds", &[], us / 1e6)?;
    }
    if let (Some(now), Some(up)) = (
        number(&fields, "server_time_usec"),
        number(&fields, "uptime_in_seconds"),
    ) {
        out.add("redis_start_time_seconds", &[], (now / 1e6 - up).round())?;
    }
    let role = get("role");
    out.add(
        "redis_instance_info",
        &[
            ("maxmemory_policy", get("maxmemory_policy")),
            ("os", get("os")),
            ("redis_build_id", get("redis_build_id")),
            ("redis_mode", get("redis_mode")),
            ("redis_version", get("redis_version")),
            ("role", role),
            ("run_id", get("run_id")),
            ("tcp_port", get("tcp_port")),
        ],
        1.0,
    )?;
    if role == "slave" {
        out.add(
            "redis_master_link_up",
            &[],
            if get("master_link_status") == "up" {
                1.0
            } else {
                0.0
            },
        )?;
        out.add(
            "redis_slave_info",
            &[
                ("master_host", get("master_host")),
                ("master_port", get("master_port")),
                ("read_only", get("slave_read_only")),
            ],
            1.0,
        )?;
    }
    for (k, v) in &fields {
        // slave0:ip=127.0.0.1,port=6380,state=online,offset=123,lag=0
        if let Some(n) = k.strip_prefix("slave") {
            if n.is_empty() || !n.bytes().all(|b| b.is_ascii_digit()) {
                continue;
            }
            let kv = parse_kv_list(v);
            let l = [
                ("slave_ip", kv.get("ip").copied().unwrap_or_default()),
                ("slave_port", kv.get("port").copied().unwrap_or_default()),
                ("slave_state", kv.get("state").copied().unwrap_or_default()),
            ];
            if let Some(o) = number(&kv, "offset") {
                out.add("redis_connected_slave_offset_bytes", &l, o)?;
            }
            if let Some(lag) = number(&kv, "lag") {
                out.add("redis_connected_slave_lag_seconds", &l, lag)?;
            }
        }
        // cmdstat_get:calls=1,usec=2,usec_per_call=2.00,rejected_calls=0,failed_calls=0
        if let Some(cmd) = k.strip_prefix("cmdstat_") {
            let kv = parse_kv_list(v);
            let num = |f: &str| number(&kv, f);
            let l = [("cmd", cmd)];
            if let Some(x) = num("calls") {
                out.add("redis_commands_total", &l, x)?;
            }
            if let Some(x) = num("usec") {
                out.add("redis_commands_duration_seconds_total", &l, x / 1e6)?;
            }
            if let Some(x) = num("rejected_calls") {
                out.add("redis_commands_rejected_calls_total", &l, x)?;
            }
            if let Some(x) = num("failed_calls") {
                out.add("redis_commands_failed_calls_total", &l, x)?;
            }
            continue;
        }
        // errorstat_ERR:count=1
        if let Some(err) = k.strip_prefix("errorstat_") {
            if let Some(x) = number(&parse_kv_list(v), "count") {
                out.add("redis_errors_total", &[("err", err)], x)?;
            }
            continue;
        }
        // latency_percentiles_usec_get:p50=2.007,p99=2.007,p99.9=2.007; the
        // summary's _sum and _count come from the command's commandstats,
        // as redis_exporter takes them.
        if let Some(cmd) = k.strip_prefix("latency_percentiles_usec_") {
            for (q, x) in parse_kv_list(v) {
                let (Some(q), Ok(x)) = (q.strip_prefix('p'), x.parse::<f64>()) else {
                    continue;
                };
                out.add(
                    "redis_latency_percentiles_usec",
                    &[("cmd", cmd), ("quantile", q)],
                    x,
                )?;
            }
            if let Some(stat) = fields.get(format!("cmdstat_{cmd}").as_str()) {
                let kv = parse_kv_list(stat);
                let num = |f: &str| number(&kv, f);
                if let (Some(usec), Some(calls)) = (num("usec"), num("calls")) {
                    out.add("redis_latency_percentiles_usec_sum", &[("cmd", cmd)], usec)?;
                    out.add(
                        "redis_latency_percentiles_usec_count",
                        &[("cmd", cmd)],
                        calls,
                    )?;
                }
            }
            continue;
        }
        // db0:keys=10,expires=2,avg_ttl=0
        if let Some(n) = k.strip_prefix("db") {
            if n.is_empty() || !n.bytes().all(|b| b.is_ascii_digit()) {
                continue;
            }
            let kv = parse_kv_list(v);
            let l = [("db", *k)];
            let num = |f: &str| number(&kv, f);
            if let Some(x) = num("keys") {
                out.add("redis_db_keys", &l, x)?;
            }
            if let Some(x) = num("expires") {
                out.add("redis_db_keys_expiring", &l, x)?;
            }
            if let Some(x) = num("avg_ttl") {
                out.add("redis_db_avg_ttl_seconds", &l, x / 1000.0)?;
            }
        }
    }
    Ok(())
}

/// `(id, unix time, duration µs)` of one SLOWLOG GET entry.
fn slowlog_entry(v: &redis::Value) -> Option<(i64, i64, i64)> {
    let redis::Value::Array(items) = v else {
        return None;
    };
    let int = |i: usize| match items.get(i) {
        Some(redis::Value::Int(n)) => Some(*n),
        _ => None,
    };
    Some((int(0)?, int(1)?, int(2)?))
}

/// Reads one Redis server.
pub struct RedisCollector {
    server: RedisServer,
    timeout: Duration,
    conn: Option<redis::aio::MultiplexedConnection>,
}

impl RedisCollector {
    pub fn new(server: RedisServer, timeout: Duration) -> Self {
        RedisCollector {
            server,
            timeout,
            conn: None,
        }
    }

    async fn scrape(
        conn: &mut redis::aio::MultiplexedConnection,
        out: &mut ScrapeBatch<'_>,
    ) -> Result<(), CollectError> {
        let err = |what: &str, e: redis::RedisError| CollectError::Other(format!("{what}: {e}"));
        let started = Instant::now();
        redis::cmd("PING")
            .query_async::<String>(conn)
            .await
            .map_err(|e| err("PING", e))?;
        let ping = started.elapsed().as_secs_f64();
        let info: String = redis::cmd("INFO")
            .arg("ALL")
            .query_async(conn)
            .await
            .map_err(|e| err("INFO", e))?;
        out.add("redis_up", &[], 1.0)?;
        out.add("redis_exporter_last_scrape_ping_time_seconds", &[], ping)?;
        emit_info(&info, out)?;
        // The slow log, where an ACL allows it: not an error when it does not.
        let len: Result<f64, _> = redis::cmd("SLOWLOG").arg("LEN").query_async(conn).await;
        if let Ok(len) = len {
            out.add("redis_slowlog_length", &[], len)?;
            // Each entry: [id, unix time, duration in µs, args, …].
            let newest: Result<Vec<(i64, i64, i64)>, _> = redis::cmd("SLOWLOG")
                .arg("GET")
                .arg(1)
                .query_async::<Vec<redis::Value>>(conn)
                .await
                .map(|entries| entries.iter().filter_map(slowlog_entry).collect());
            let (id, micros) = newest
                .ok()
                .and_then(|v| v.first().map(|e| (e.0, e.2)))
                .unwrap_or((0, 0));
            out.add("redis_slowlog_last_id", &[], id as f64)?;
            out.add(
                "redis_last_slow_execution_duration_seconds",
                &[],
                micros as f64 / 1e6,
            )?;
        }
        for key in ["maxclients", "maxmemory", "io-threads"] {
            // Managed Redis renames or disables CONFIG: not an error.
            let r: Result<Vec<String>, _> = redis::cmd("CONFIG")
                .arg("GET")
                .arg(key)
                .query_async(conn)
                .await;
            if let Ok(pair) = r {
                if let Some(v) = pair.get(1).and_then(|v| v.parse::<f64>().ok()) {
                    out.add(&format!("redis_config_{}", key.replace('-', "_")), &[], v)?;
                }
            }
        }
        Ok(())
    }
}

impl Collector for RedisCollector {
    async fn collect(&mut self, out: &mut ScrapeBatch<'_>) -> Result<(), CollectError> {
        if self.conn.is_none() {
            let client = redis::Client::open(self.server.url.as_str())
                .map_err(|e| CollectError::Other(format!("invalid url ({:?})", e.kind())))?;
            let cfg = redis::AsyncConnectionConfig::new()
                .set_connection_timeout(Some(self.timeout))
                .set_response_timeout(Some(self.timeout));
            let conn = client
                .get_multiplexed_async_connection_with_config(&cfg)
                .await
                .map_err(|e| CollectError::Other(format!("connecting: {e}")))?;
            self.conn = Some(conn);
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
    fn info_lines_and_lists() {
        let info = "# Server\r\nredis_version:7.0.15\r\nrole:master\r\n\r\n# Keyspace\r\ndb0:keys=3,expires=1,avg_ttl=5000\r\nslave0:ip=127.0.0.1,port=6380,state=online,offset=42,lag=1\r\n";
        let f = parse_info(info);
        assert_eq!(f.get("redis_version"), Some(&"7.0.15"));
        assert_eq!(f.get("db0"), Some(&"keys=3,expires=1,avg_ttl=5000"));
        let kv = parse_kv_list(f["slave0"]);
        assert_eq!(kv.get("offset"), Some(&"42"));
    }

    #[test]
    fn url_validation_never_echoes_the_password() {
        let mut v = Validator::new();
        RedisServer {
            url: "http://:hunter2@x".into(),
            ..Default::default()
        }
        .validate("collectors.redis.servers.0", &mut v);
        let text = format!("{:?}", v.issues);
        assert!(text.contains("collectors.redis.servers.0.url"), "{text}");
        assert!(!text.contains("hunter2"), "{text}");
    }

    #[test]
    fn target_hides_password() {
        let t = RedisServer {
            url: "redis://:hunter2@cache:6380/0".into(),
            ..Default::default()
        }
        .target();
        assert_eq!(t.instance, "cache:6380");
        assert_eq!(t.display, "redis://cache:6380");
    }
}
