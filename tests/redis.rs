//! The Redis collector against a real redis-server and its replica, and the
//! ways a Redis target fails: down, auth refused, permission denied (ACL),
//! too slow.

use std::time::Duration;

use homeostat_e2e::db::start_redis;
use homeostat_e2e::Homeostat;

async fn cmd(addr: std::net::SocketAddr, args: &[&str]) -> redis::Value {
    let client = redis::Client::open(format!("redis://{addr}")).expect("client");
    let mut c = client
        .get_multiplexed_async_connection()
        .await
        .expect("connect");
    let mut cmd = redis::cmd(args[0]);
    for a in &args[1..] {
        cmd.arg(*a);
    }
    cmd.query_async(&mut c)
        .await
        .unwrap_or_else(|e| panic!("{args:?}: {e}"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn master_replica_and_failures() {
    let Some((mut master, m_addr)) = start_redis(None).await else {
        return;
    };
    let Some((_replica, r_addr)) = start_redis(Some(m_addr)).await else {
        return;
    };
    // A user that may PING but not read INFO.
    cmd(
        m_addr,
        &["ACL", "SETUSER", "limited", "on", ">pw", "-@all", "+ping"],
    )
    .await;
    for i in 0..50 {
        cmd(m_addr, &["SET", &format!("k{i}"), "v"]).await;
    }
    cmd(m_addr, &["EXPIRE", "k0", "600"]).await;
    for _ in 0..30 {
        cmd(m_addr, &["GET", "k1"]).await;
    }
    for _ in 0..10 {
        cmd(m_addr, &["GET", "missing"]).await;
    }
    // Every command goes to the slow log; one wrong-type call is an error
    // reply, counted by prefix.
    cmd(m_addr, &["CONFIG", "SET", "slowlog-log-slower-than", "0"]).await;
    cmd(m_addr, &["LPUSH", "list", "x"]).await;
    {
        let client = redis::Client::open(format!("redis://{m_addr}")).expect("client");
        let mut c = client
            .get_multiplexed_async_connection()
            .await
            .expect("connect");
        let wrong: Result<redis::Value, _> =
            redis::cmd("INCR").arg("list").query_async(&mut c).await;
        assert!(wrong.is_err(), "INCR on a list must fail");
    }
    let silent = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    let silent_addr = silent.local_addr().expect("addr");
    let closed = homeostat_e2e::free_port();
    let config = format!(
        r#"
web:
  listen_address: {{listen}}
state:
  path: {{state}}
collectors:
  redis:
    scrape_interval: 1s
    scrape_timeout: 900ms
    servers:
      - name: master
        url: redis://{m_addr}
        labels: {{tier: cache}}
      - name: replica
        url: redis://{r_addr}
      - name: down
        url: redis://127.0.0.1:{closed}
      - name: auth-refused
        url: redis://limited:wrong@{m_addr}
      - name: permission-denied
        url: redis://limited:pw@{m_addr}
      - name: slow
        url: redis://{silent_addr}
"#
    );
    let h = Homeostat::start(&config).await;
    let t = Duration::from_secs(30);
    let m = h.wait_target("redis", "master", "up", t).await;
    assert_eq!(m["labels"]["tier"], "cache");
    h.wait_target("redis", "replica", "up", t).await;

    for expr in [
        r#"redis_up{instance="master"} == 1"#,
        r#"redis_instance_info{instance="master",role="master",redis_version=~"[0-9].*"}"#,
        r#"redis_instance_info{instance="replica",role="slave"}"#,
        r#"redis_db_keys{instance="master",db="db0"} == 51"#,
        r#"redis_db_keys_expiring{instance="master",db="db0"} == 1"#,
        r#"redis_keyspace_hits_total{instance="master"} >= 30"#,
        r#"redis_keyspace_misses_total{instance="master"} >= 10"#,
        r#"redis_memory_used_bytes{instance="master"} > 100000"#,
        r#"redis_memory_max_bytes{instance="master"} == 0"#,
        r#"redis_connected_clients{instance="master"} >= 1"#,
        r#"redis_commands_processed_total{instance="master"} > 90"#,
        r#"redis_evicted_keys_total{instance="master"} == 0"#,
        r#"redis_config_maxclients{instance="master"} > 0"#,
        r#"redis_config_io_threads{instance="master"} >= 1"#,
        r#"redis_connected_slaves{instance="master"} == 1"#,
        r#"redis_connected_slave_offset_bytes{instance="master",slave_state="online"} > 0"#,
        r#"redis_master_link_up{instance="replica"} == 1"#,
        r#"redis_connected_slave_lag_seconds{instance="master",slave_state="online"} >= 0"#,
        r#"redis_master_repl_offset{instance="master"} > 0"#,
        r#"redis_slave_repl_offset{instance="replica"} > 0"#,
        r#"redis_slave_info{instance="replica",read_only="1"}"#,
        r#"redis_db_keys{instance="replica",db="db0"} == 51"#,
        r#"redis_exporter_last_scrape_ping_time_seconds{instance="master"} > 0"#,
        r#"redis_commands_total{instance="master",cmd="get"} >= 40"#,
        r#"redis_commands_duration_seconds_total{instance="master",cmd="set"} > 0"#,
        r#"redis_commands_failed_calls_total{instance="master",cmd="incr"} == 1"#,
        r#"redis_errors_total{instance="master",err="WRONGTYPE"} == 1"#,
        r#"redis_total_error_replies{instance="master"} >= 1"#,
        r#"redis_latency_percentiles_usec{instance="master",cmd="get",quantile="99"} > 0"#,
        r#"redis_latency_percentiles_usec_count{instance="master",cmd="get"} >= 40"#,
        r#"redis_slowlog_length{instance="master"} > 0"#,
        r#"redis_slowlog_last_id{instance="master"} > 0"#,
        r#"redis_last_slow_execution_duration_seconds{instance="master"} >= 0"#,
        r#"redis_rdb_last_bgsave_status{instance="master"} == 1"#,
        r#"redis_aof_last_write_status{instance="master"} == 1"#,
        r#"redis_latest_fork_seconds{instance="master"} >= 0"#,
        r#"abs(redis_start_time_seconds{instance="master"} - time()) < 600"#,
        r#"redis_cpu_user_main_thread_seconds_total{instance="master"} > 0"#,
        r#"redis_allocator_allocated_bytes{instance="master"} > 0"#,
    ] {
        assert!(
            h.wait_value(expr, t).await.is_some(),
            "no result for {expr}\nlog:\n{}",
            h.process.log()
        );
    }

    for (instance, reason) in [
        ("down", "connect"),
        ("auth-refused", "authentication failed"),
        ("permission-denied", "noperm"),
        ("slow", "timed out"),
    ] {
        let tg = h.wait_target("redis", instance, "down", t).await;
        let err = tg["lastError"].as_str().unwrap_or_default().to_lowercase();
        assert!(
            err.contains(reason),
            "{instance}: lastError {err:?} should mention {reason:?}"
        );
    }

    // The master goes away: the replica reports its link down.
    master.stop(Duration::from_secs(5));
    assert!(
        h.wait_value(r#"redis_master_link_up{instance="replica"} == 0"#, t)
            .await
            .is_some(),
        "replica link should go down"
    );
    h.wait_target("redis", "master", "down", t).await;
    drop(silent);
}
