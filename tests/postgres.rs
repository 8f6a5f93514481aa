//! The PostgreSQL and PgBouncer collectors against a real PostgreSQL primary,
//! its streaming replica and a real PgBouncer, plus every failure a database
//! target can have: down, auth refused, permission denied, too slow.

use std::time::Duration;

use homeostat_e2e::db::{start_pgbouncer, start_postgres_pair};
use homeostat_e2e::Homeostat;
use sqlx::{Connection, PgConnection};

async fn connect(url: &str) -> PgConnection {
    PgConnection::connect(url)
        .await
        .unwrap_or_else(|e| panic!("connect {url}: {e}"))
}

async fn exec(c: &mut PgConnection, sql: &str) {
    sqlx::query(sql)
        .execute(&mut *c)
        .await
        .unwrap_or_else(|e| panic!("{sql}: {e}"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn primary_replica_pgbouncer_and_failures() {
    let Some((primary, replica, _dirs)) = start_postgres_pair().await else {
        return;
    };
    let mut admin = connect(&primary.url("postgres")).await;
    // The collector's role: read-only, pg_monitor only.
    exec(&mut admin, "CREATE ROLE homeostat LOGIN").await;
    exec(&mut admin, "GRANT pg_monitor TO homeostat").await;
    // A role that may not even connect: "permission denied".
    exec(&mut admin, "CREATE ROLE locked_out LOGIN").await;
    exec(&mut admin, "CREATE DATABASE guarded").await;
    exec(&mut admin, "REVOKE CONNECT ON DATABASE guarded FROM PUBLIC").await;
    exec(&mut admin, "CREATE TABLE t (id serial primary key, v text)").await;
    exec(
        &mut admin,
        "INSERT INTO t (v) SELECT 'x' FROM generate_series(1, 100)",
    )
    .await;

    let Some((_pgb, pgb_addr, _pgb_dir)) = start_pgbouncer(primary.addr, "homeostat").await else {
        return;
    };
    // A port that accepts connections and never answers: too slow.
    let silent = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    let silent_addr = silent.local_addr().expect("addr");
    let closed = homeostat_e2e::free_port();

    let config = format!(
        r#"
global:
  scrape_interval: 1s
  scrape_timeout: 1s
web:
  listen_address: {{listen}}
state:
  path: {{state}}
collectors:
  postgres:
    scrape_interval: 1s
    scrape_timeout: 900ms
    servers:
      - name: primary
        dsn: postgres://homeostat@{primary}/postgres
        role: primary
        labels: {{cluster: main}}
      - name: replica
        dsn: postgres://homeostat@{replica}/postgres
        role: replica
        labels: {{cluster: main}}
      - name: down
        dsn: postgres://homeostat@127.0.0.1:{closed}/postgres
        role: primary
      - name: auth-refused
        dsn: postgres://nosuchrole@{primary}/postgres
        role: primary
      - name: permission-denied
        dsn: postgres://locked_out@{primary}/guarded
        role: primary
      - name: slow
        dsn: postgres://homeostat@{silent}/postgres?connect_timeout=30
        role: replica
  pgbouncer:
    scrape_interval: 1s
    servers:
      - name: pgb
        dsn: postgres://homeostat@{pgb}/pgbouncer
      - name: pgb-down
        dsn: postgres://homeostat@127.0.0.1:{closed}/pgbouncer
      - name: pgb-auth-refused
        dsn: postgres://nosuchrole@{pgb}/pgbouncer
      - name: pgb-permission-denied
        dsn: postgres://app@{pgb}/pgbouncer
      - name: pgb-slow
        dsn: postgres://homeostat@{silent}/pgbouncer?connect_timeout=30
"#,
        primary = primary.addr,
        replica = replica.addr,
        silent = silent_addr,
        pgb = pgb_addr,
    );
    let h = Homeostat::start(&config).await;
    let t = Duration::from_secs(30);

    let primary_t = h.wait_target("postgres", "primary", "up", t).await;
    assert_eq!(primary_t["labels"]["role"], "primary");
    assert_eq!(primary_t["labels"]["cluster"], "main");
    assert!(
        !primary_t["scrapeUrl"]
            .as_str()
            .unwrap_or("")
            .contains("homeostat@"),
        "credentials must not show: {primary_t}"
    );
    h.wait_target("postgres", "replica", "up", t).await;
    h.wait_target("pgbouncer", "pgb", "up", t).await;

    // postgres_exporter's families, with the server's real values.
    let q = |e: &str| e.to_string();
    for (expr, why) in [
        (
            q(r#"pg_up{instance="primary",role="primary",cluster="main"} == 1"#),
            "pg_up",
        ),
        (
            q(r#"pg_static{instance="primary",short_version=~"15\\..*"}"#),
            "version",
        ),
        (
            q(r#"pg_settings_max_connections{instance="primary"} > 0"#),
            "max_connections",
        ),
        (
            q(r#"pg_stat_database_xact_commit{instance="primary",datname="postgres"} > 0"#),
            "commits",
        ),
        (
            q(r#"pg_stat_database_tup_inserted{instance="primary",datname="postgres"} >= 100"#),
            "inserts",
        ),
        (
            q(r#"pg_stat_database_blks_hit{instance="primary",datname="postgres"} > 0"#),
            "blocks hit",
        ),
        (
            q(r#"pg_stat_database_blks_read{instance="primary",datname="postgres"} >= 0"#),
            "blocks read",
        ),
        (
            q(r#"pg_stat_database_xact_rollback{instance="primary",datname="postgres"} >= 0"#),
            "rollbacks",
        ),
        (
            q(r#"pg_stat_database_deadlocks{instance="primary",datname="postgres"} == 0"#),
            "no deadlock yet",
        ),
        (
            q(r#"pg_stat_database_temp_bytes{instance="primary",datname="postgres"} >= 0"#),
            "temp bytes",
        ),
        (
            q(r#"pg_static{instance="replica",role="replica",short_version=~"15\\..*"}"#),
            "replica version",
        ),
        (
            q(r#"pg_stat_database_sessions{instance="primary",datname="postgres"} >= 1"#),
            "sessions (PostgreSQL 14+)",
        ),
        (
            q(
                r#"pg_stat_database_conflicts_confl_snapshot{instance="replica",datname="postgres"} == 0"#,
            ),
            "recovery conflicts on the replica",
        ),
        (
            q(r#"pg_stat_bgwriter_buffers_alloc_total{instance="primary"} > 0"#),
            "background writer",
        ),
        (
            q(r#"pg_stat_bgwriter_checkpoints_req_total{instance="primary"} >= 0"#),
            "checkpoints",
        ),
        (
            q(r#"pg_stat_archiver_failed_count{instance="primary"} == 0"#),
            "archiver",
        ),
        (
            q(r#"pg_settings_shared_buffers_bytes{instance="primary"} >= 131072"#),
            "server settings, in bytes",
        ),
        (
            q(r#"pg_settings_hot_standby{instance="replica"} == 1"#),
            "server settings, booleans",
        ),
        (
            q(r#"pg_database_size_bytes{instance="primary",datname="postgres"} > 1e6"#),
            "size",
        ),
        (
            q(
                r#"pg_stat_activity_count{instance="primary",datname="postgres",state="active"} >= 1"#,
            ),
            "activity",
        ),
        (
            q(
                r#"pg_stat_activity_count{instance="primary",datname="postgres",state="idle in transaction"} == 0"#,
            ),
            "zero states present",
        ),
        (
            q(
                r#"pg_locks_count{instance="primary",datname="postgres",mode="accesssharelock"} >= 1"#,
            ),
            "locks",
        ),
        (
            q(r#"pg_replication_is_replica{instance="primary"} == 0"#),
            "primary is not a replica",
        ),
        (
            q(r#"pg_replication_is_replica{instance="replica",role="replica"} == 1"#),
            "replica is a replica",
        ),
        (
            q(
                r#"pg_stat_replication_pg_wal_lsn_diff{instance="primary",application_name="replica1",state="streaming"}"#,
            ),
            "replication on primary",
        ),
        (
            q(r#"pgbouncer_pools_client_active_connections{instance="pgb",database="pgbouncer"}"#),
            "pgbouncer pools",
        ),
        (
            q(r#"pgbouncer_stats_queries_pooled_total{instance="pgb"}"#),
            "pgbouncer stats",
        ),
        (
            q(r#"pgbouncer_config_max_client_connections{instance="pgb"} > 0"#),
            "pgbouncer config",
        ),
    ] {
        assert!(
            h.wait_value(&expr, t).await.is_some(),
            "{why}: no result for {expr}\nlog:\n{}",
            h.process.log()
        );
    }

    // Each failure is that target's own `up 0` with the reason.
    for (instance, reason) in [
        ("down", "connect"),
        ("auth-refused", "nosuchrole"),
        ("permission-denied", "permission denied"),
        ("slow", "timed out"),
    ] {
        let tg = h.wait_target("postgres", instance, "down", t).await;
        let err = tg["lastError"].as_str().unwrap_or_default().to_lowercase();
        assert!(
            err.contains(reason),
            "{instance}: lastError {err:?} should mention {reason:?}"
        );
    }
    for (instance, reason) in [
        ("pgb-down", "connect"),
        ("pgb-auth-refused", "auth refused"),
        (
            "pgb-permission-denied",
            "permission denied: add the user to pgbouncer's stats_users",
        ),
        ("pgb-slow", "timed out"),
    ] {
        let tg = h.wait_target("pgbouncer", instance, "down", t).await;
        let err = tg["lastError"].as_str().unwrap_or_default().to_lowercase();
        assert!(
            err.contains(reason),
            "{instance}: lastError {err:?} should mention {reason:?}"
        );
    }
    // ...while the healthy ones keep being scraped.
    let before = h
        .query(r#"scrape_duration_seconds{job="postgres",instance="primary"}"#)
        .await;
    assert_eq!(before.len(), 1);

    // A transaction left open: the oldest one's age, by state.
    let mut idle = connect(&primary.url("postgres")).await;
    let mut tx = idle.begin().await.expect("begin");
    exec(&mut tx, "SELECT txid_current()").await;
    assert!(
        h.wait_value(
            r#"pg_stat_activity_max_tx_duration{instance="primary",datname="postgres",state="idle in transaction"} > 1"#,
            t
        )
        .await
        .is_some(),
        "an open transaction should age: {:?}",
        h.query("pg_stat_activity_max_tx_duration").await
    );
    tx.rollback().await.expect("rollback");
    let _ = idle.close().await;

    // A real deadlock: two transactions take two rows in opposite orders.
    let (mut a, mut b) = (
        connect(&primary.url("postgres")).await,
        connect(&primary.url("postgres")).await,
    );
    let (mut ta, mut tb) = (
        a.begin().await.expect("begin"),
        b.begin().await.expect("begin"),
    );
    exec(&mut ta, "UPDATE t SET v = 'a' WHERE id = 1").await;
    exec(&mut tb, "UPDATE t SET v = 'b' WHERE id = 2").await;
    let (ra, rb) = tokio::join!(
        sqlx::query("UPDATE t SET v = 'a' WHERE id = 2").execute(&mut *ta),
        async {
            tokio::time::sleep(Duration::from_millis(200)).await;
            sqlx::query("UPDATE t SET v = 'b' WHERE id = 1")
                .execute(&mut *tb)
                .await
        }
    );
    let failed = [ra.err(), rb.err()];
    assert!(
        failed
            .iter()
            .flatten()
            .any(|e| e.to_string().contains("deadlock detected")),
        "{failed:?}"
    );
    // Ended explicitly: a dropped sqlx transaction only queues its ROLLBACK,
    // and a backend flushes its statistics once it is idle.
    ta.rollback().await.expect("rollback");
    tb.rollback().await.expect("rollback");
    let _ = a.close().await;
    let _ = b.close().await;
    assert!(
        h.wait_value(
            r#"pg_stat_database_deadlocks{instance="primary",datname="postgres"} >= 1"#,
            t
        )
        .await
        .is_some(),
        "the deadlock should be counted"
    );

    // Caught up: no lag. One replayed commit first, so the replica has a
    // replay timestamp to measure lag from.
    exec(&mut admin, "INSERT INTO t (v) VALUES ('before pause')").await;
    assert!(
        h.wait_value(r#"pg_replication_lag{instance="replica"} == 0"#, t)
            .await
            .is_some(),
        "replica should report no lag while caught up"
    );
    // Pause replay on the replica and keep writing on the primary: lag
    // appears in seconds on the replica and in bytes on the primary.
    let mut rep = connect(&replica.url("postgres")).await;
    exec(&mut rep, "SELECT pg_wal_replay_pause()").await;
    tokio::time::sleep(Duration::from_millis(1500)).await;
    for _ in 0..5 {
        exec(
            &mut admin,
            "INSERT INTO t (v) SELECT 'y' FROM generate_series(1, 1000)",
        )
        .await;
    }
    assert!(
        h.wait_value(r#"pg_replication_lag{instance="replica"} > 1"#, t)
            .await
            .is_some(),
        "pg_replication_lag should rise while replay is paused: {:?}",
        h.query(r#"pg_replication_lag"#).await
    );
    assert!(
        h.wait_value(
            r#"pg_stat_replication_pg_wal_lsn_diff{instance="primary"} > 10000"#,
            t
        )
        .await
        .is_some(),
        "the primary should see the replica's replay fall behind in bytes"
    );
    assert!(
        h.wait_value(
            r#"pg_stat_replication_replay_lag_seconds{instance="primary",application_name="replica1"} > 1"#,
            t
        )
        .await
        .is_some(),
        "the primary should see the replica's replay fall behind in seconds: {:?}",
        h.query("pg_stat_replication_replay_lag_seconds").await
    );
    assert!(
        h.wait_value(
            r#"pg_replication_replay_lag_bytes{instance="replica"} > 0"#,
            t
        )
        .await
        .is_some(),
        "received-but-not-replayed bytes on the replica"
    );
    exec(&mut rep, "SELECT pg_wal_replay_resume()").await;
    assert!(
        h.wait_value(r#"pg_replication_lag{instance="replica"} == 0"#, t)
            .await
            .is_some(),
        "lag should return to 0 once replay resumes"
    );
    drop(silent);
}
