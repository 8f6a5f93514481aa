//! PostgreSQL failover end to end: a real primary and streaming replica
//! behind a real HAProxy, a writer that records every acknowledged commit,
//! and homeostat's rules + playbooks doing the work (promote with an RPO
//! guard, fence a returning old primary, eject/restore a lagging replica,
//! escalate to a human when the guard refuses).
//!
//! Each test skips with a SKIP line when PostgreSQL or HAProxy is not
//! installed. They run one at a time (a process-wide lock): every test
//! starts two PostgreSQL servers, HAProxy and homeostat, and their timing
//! assertions (lag, RPO) should not compete for the CPU with each other.

use std::collections::BTreeSet;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use homeostat_e2e::db::{crash_postgres, restart_postgres, start_postgres_pair_with, Postgres};
use homeostat_e2e::haproxy::{start_haproxy, Haproxy, READ_BACKEND, WRITE_BACKEND};
use homeostat_e2e::pgwriter::Writer;
use homeostat_e2e::{get_json, temp_dir, wait_until, Homeostat, TempDir};
use serde_json::Value;
use sqlx::{Connection, PgConnection};

/// One test at a time (see the module doc).
/// A tokio mutex: each test has its own runtime, and the guard is held
/// across awaits (a panicking test does not poison it).
static SERIAL: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

// ---------------------------------------------------------------------------
// Helpers

/// Records every JSON body POSTed to it: the escalation webhook.
struct Receiver {
    addr: SocketAddr,
    bodies: Arc<Mutex<Vec<Value>>>,
    task: tokio::task::JoinHandle<()>,
}

impl Receiver {
    async fn start() -> Receiver {
        let bodies: Arc<Mutex<Vec<Value>>> = Arc::default();
        let b = bodies.clone();
        let app = axum::Router::new().fallback(move |body: axum::body::Bytes| {
            let b = b.clone();
            async move {
                let v = serde_json::from_slice(&body).unwrap_or(Value::Null);
                b.lock().unwrap_or_else(|e| e.into_inner()).push(v);
                "ok"
            }
        });
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind webhook receiver");
        let addr = listener.local_addr().expect("receiver addr");
        let task = tokio::spawn(async move {
            let _ = axum::serve(listener, app).await;
        });
        Receiver { addr, bodies, task }
    }

    fn url(&self) -> String {
        format!("http://{}/hook", self.addr)
    }

    fn bodies(&self) -> Vec<Value> {
        self.bodies
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }

    fn escalations(&self) -> Vec<Value> {
        self.bodies()
            .into_iter()
            .filter(|b| b["commonLabels"]["alertname"] == "HomeostatPlaybookEscalation")
            .collect()
    }
}

impl Drop for Receiver {
    fn drop(&mut self) {
        self.task.abort();
    }
}

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

async fn in_recovery(pg: &Postgres) -> bool {
    let mut c = connect(&pg.url("postgres")).await;
    let r: bool = sqlx::query_scalar("SELECT pg_is_in_recovery()")
        .fetch_one(&mut c)
        .await
        .expect("pg_is_in_recovery");
    let _ = c.close().await;
    r
}

/// Every id in `writes` on `pg`.
async fn ids_on(pg: &Postgres) -> BTreeSet<i64> {
    let mut c = connect(&pg.url("postgres")).await;
    let ids: Vec<i64> = sqlx::query_scalar("SELECT id FROM writes")
        .fetch_all(&mut c)
        .await
        .expect("SELECT id FROM writes");
    let _ = c.close().await;
    ids.into_iter().collect()
}

async fn wait_acked(w: &Writer, n: usize, timeout: Duration) {
    let ok = wait_until(timeout, || {
        let len = w.acked().len();
        async move { len >= n }
    })
    .await;
    assert!(
        ok,
        "writer acked only {} rows in {timeout:?} (errors {}, last {:?})",
        w.acked().len(),
        w.errors(),
        w.last_error()
    );
}

/// Everything a failover test runs: the pair, HAProxy, homeostat, the
/// escalation receiver and the temp dir holding rules and playbooks.
struct Rig {
    primary: Postgres,
    replica: Postgres,
    haproxy: Haproxy,
    homeostat: Homeostat,
    hook: Receiver,
    _files: TempDir,
    _pg_dirs: TempDir,
}

/// A failing test prints every server's log (most assertions also include
/// them); `FAILOVER_LOGS=1` prints them for passing tests too.
impl Drop for Rig {
    fn drop(&mut self) {
        if std::thread::panicking() || std::env::var_os("FAILOVER_LOGS").is_some() {
            eprintln!("{}", self.logs());
        }
    }
}

impl Rig {
    /// `None` (with a SKIP line) when PostgreSQL or HAProxy is missing.
    /// `read` names the `pg_read` servers ("primary"/"replica").
    async fn start(
        sync: bool,
        read: &[&str],
        rules: &str,
        playbooks: &[(&str, &str)],
    ) -> Option<Rig> {
        let (primary, replica, pg_dirs) = start_postgres_pair_with(sync).await?;
        let addr_of = |n: &str| {
            if n == "primary" {
                primary.addr
            } else {
                replica.addr
            }
        };
        let read: Vec<(&str, SocketAddr)> = read.iter().map(|n| (*n, addr_of(n))).collect();
        let haproxy = start_haproxy(
            &[("primary", primary.addr), ("replica", replica.addr)],
            &read,
        )
        .await?;
        let hook = Receiver::start().await;
        let files = temp_dir();
        std::fs::write(files.path().join("rules.yml"), rules).expect("write rules");
        let pb_dir = files.path().join("playbooks");
        std::fs::create_dir(&pb_dir).expect("mkdir playbooks");
        for (name, text) in playbooks {
            std::fs::write(pb_dir.join(format!("{name}.yml")), text).expect("write playbook");
        }
        let config = format!(
            r#"
global:
  scrape_interval: 1s
  evaluation_interval: 1s
web:
  listen_address: {{listen}}
state:
  path: {{state}}
rule_files:
  - {rules}
playbook_files:
  - {playbooks}/*.yml
playbooks:
  escalation:
    alertmanager: false
    webhook_urls: ['{hook}']
    timeout: 2s
act:
  haproxy:
    - name: pg
      socket: {socket}
collectors:
  postgres:
    scrape_interval: 1s
    scrape_timeout: 900ms
    servers:
      - name: primary
        dsn: postgres://postgres@{primary}/postgres
        role: primary
      - name: replica
        dsn: postgres://postgres@{replica}/postgres
        role: replica
"#,
            rules = files.path().join("rules.yml").display(),
            playbooks = pb_dir.display(),
            hook = hook.url(),
            socket = haproxy.socket.display(),
            primary = primary.addr,
            replica = replica.addr,
        );
        let homeostat = Homeostat::start(&config).await;
        let t = Duration::from_secs(30);
        homeostat.wait_target("postgres", "primary", "up", t).await;
        homeostat.wait_target("postgres", "replica", "up", t).await;
        Some(Rig {
            primary,
            replica,
            haproxy,
            homeostat,
            hook,
            _files: files,
            _pg_dirs: pg_dirs,
        })
    }

    /// Everything that helps explain a failure.
    fn logs(&self) -> String {
        format!(
            "--- homeostat log:\n{}\n--- haproxy log:\n{}\n--- primary log:\n{}\n--- replica log:\n{}\n--- webhook bodies: {:?}",
            self.homeostat.process.log(),
            self.haproxy.log(),
            self.primary.process.log(),
            self.replica.process.log(),
            self.hook.bodies()
        )
    }

    async fn runs(&self, playbook: &str) -> Vec<Value> {
        let v = get_json(&format!(
            "http://{}/api/v1/runs?playbook={playbook}",
            self.homeostat.addr
        ))
        .await;
        v["data"].as_array().cloned().unwrap_or_default()
    }

    async fn run(&self, id: &str) -> Value {
        get_json(&format!("http://{}/api/v1/runs/{id}", self.homeostat.addr)).await["data"].clone()
    }

    /// The first run of `playbook` (oldest) that reaches one of `states`,
    /// with its steps and audit trail; panics with every log otherwise.
    async fn wait_run(&self, playbook: &str, states: &[&str], timeout: Duration) -> Value {
        let deadline = Instant::now() + timeout;
        loop {
            let runs = self.runs(playbook).await;
            if let Some(r) = runs
                .iter()
                .rev()
                .find(|r| states.iter().any(|s| r["state"] == *s))
            {
                return self.run(r["id"].as_str().unwrap_or_default()).await;
            }
            if Instant::now() > deadline {
                let mut detail = Vec::new();
                for r in &runs {
                    detail.push(self.run(r["id"].as_str().unwrap_or_default()).await);
                }
                panic!(
                    "no run of {playbook} reached {states:?} within {timeout:?}; runs: {detail:#?}\n{}",
                    self.logs()
                );
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }

    async fn wait_haproxy(&self, backend: &str, server: &str, want: &[&str], timeout: Duration) {
        let ok = wait_until(timeout, || async {
            let s = self.haproxy.server_state(backend, server).await;
            s.is_some_and(|s| want.contains(&s.as_str()))
        })
        .await;
        assert!(
            ok,
            "HAProxy {backend}/{server} never became {want:?}: {:?}\n{}",
            self.haproxy.servers(backend).await,
            self.logs()
        );
    }
}

const PRIMARY_DOWN_RULES: &str = r#"
groups:
  - name: failover
    interval: 1s
    rules:
      - alert: PostgresPrimaryDown
        expr: up{job="postgres",instance="primary"} == 0
        for: 0s
      - alert: PostgresTwoPrimaries
        expr: pg_replication_is_replica{instance="primary"} == 0 and on() pg_replication_is_replica{instance="replica"} == 0
        for: 0s
"#;

fn promote_playbook(rpo: &str) -> String {
    format!(
        r#"
name: promote-replica
description: The primary is down; promote the replica within the RPO and move writes to it.
trigger:
  alert: PostgresPrimaryDown
target: '{{{{ $labels.instance }}}}'
steps:
  - name: promote
    action: postgres.promote
    timeout: 30s
    params:
      candidate: replica
      old_primary: primary
      rpo: {rpo}
      haproxy: {{name: pg, backend: pg_write, new_server: replica, old_server: primary}}
verify:
  expr: 'pg_replication_is_replica{{instance="replica"}} == 0'
  within: 30s
  interval: 1s
"#
    )
}

const FENCE_PLAYBOOK: &str = r#"
name: fence-returning-primary
description: Two servers say they are the primary; make the old one read-only.
trigger:
  alert: PostgresTwoPrimaries
target: '{{ $labels.instance }}'
steps:
  - name: fence
    action: postgres.fence
    timeout: 20s
    params:
      server: primary
"#;

/// Writes through HAProxy until `n` rows are acked, then crashes the
/// primary; returns the writer, the ids acked about 1s before the crash,
/// the ids acked at the crash, and when it happened.
async fn write_then_crash(rig: &mut Rig, n: usize) -> (Writer, Vec<i64>, Vec<i64>, Instant) {
    let writer = Writer::start(format!(
        "postgres://postgres@{}/postgres",
        rig.haproxy.write_addr
    ));
    wait_acked(&writer, n, Duration::from_secs(30)).await;
    let before = writer.acked();
    tokio::time::sleep(Duration::from_secs(1)).await;
    let crashed = Instant::now();
    crash_postgres(&mut rig.primary);
    // Read after the kill: a commit acked between a read taken before it and
    // the kill itself belongs to the crash's last moment too. Nothing is
    // acked again until the promotion, seconds later.
    let at_crash = writer.acked();
    (writer, before, at_crash, crashed)
}

// ---------------------------------------------------------------------------
// Tests

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn promotes_replica_when_primary_dies_sync() {
    let _serial = SERIAL.lock().await;
    let started = Instant::now();
    let Some(mut rig) = Rig::start(
        true,
        &["replica"],
        PRIMARY_DOWN_RULES,
        &[
            ("promote", &promote_playbook("30s")),
            ("fence", FENCE_PLAYBOOK),
        ],
    )
    .await
    else {
        return;
    };
    assert_eq!(
        rig.haproxy.active_write_server().await.as_deref(),
        Some("primary")
    );
    let (writer, _, at_crash, crashed) = write_then_crash(&mut rig, 300).await;
    println!(
        "sync: crashed the primary after {} acked rows ({:?} into the test)",
        at_crash.len(),
        started.elapsed()
    );

    assert!(
        writer
            .wait_acked_after(crashed, Duration::from_secs(30))
            .await,
        "writer never resumed (errors {}, last {:?})\n{}",
        writer.errors(),
        writer.last_error(),
        rig.logs()
    );
    println!(
        "sync: writes refused for {:?} (crash to the first ack on the new primary, 50ms polling)",
        crashed.elapsed()
    );

    let run = rig
        .wait_run(
            "promote-replica",
            &["succeeded", "failed", "escalated", "interrupted"],
            Duration::from_secs(30),
        )
        .await;
    assert_eq!(run["state"], "succeeded", "run: {run:#}\n{}", rig.logs());
    let step = &run["steps"][0];
    assert_eq!(step["state"], "ok", "{step:#}");
    assert_eq!(step["output"]["promoted"], true, "{step:#}");
    assert_eq!(step["output"]["haproxy"]["ready"], "replica", "{step:#}");
    assert_eq!(
        step["output"]["fence"]["read_only"], false,
        "the dead primary cannot be fenced: {step:#}"
    );
    assert_eq!(run["verify"]["held"], true, "{run:#}");
    println!(
        "sync: promotion run succeeded {:?} after the crash; step output {}",
        crashed.elapsed(),
        step["output"]
    );
    assert_eq!(
        rig.haproxy.active_write_server().await.as_deref(),
        Some("replica"),
        "{:?}",
        rig.haproxy.servers(WRITE_BACKEND).await
    );
    assert_eq!(
        rig.haproxy
            .server_state(WRITE_BACKEND, "primary")
            .await
            .as_deref(),
        Some("maint")
    );
    assert!(
        !in_recovery(&rig.replica).await,
        "replica should be promoted"
    );

    // The old primary comes back (crash recovery, as a primary): HAProxy
    // keeps it out of the write pool and homeostat fences it.
    let port = rig.primary.addr.port();
    let data = rig.primary.data.clone();
    rig.primary = restart_postgres(&data, port).await;
    let acked_at_return = writer.acked().last().copied().unwrap_or(0);
    let fence = rig
        .wait_run(
            "fence-returning-primary",
            &["succeeded", "failed", "escalated", "interrupted"],
            Duration::from_secs(30),
        )
        .await;
    assert_eq!(
        fence["state"],
        "succeeded",
        "fence run: {fence:#}\n{}",
        rig.logs()
    );
    assert_eq!(fence["steps"][0]["output"]["read_only"], true, "{fence:#}");
    println!("sync: fence run {}", fence["steps"][0]["output"]);

    let mut old = connect(&rig.primary.url("postgres")).await;
    let err = sqlx::query("INSERT INTO writes (id) VALUES (-1)")
        .execute(&mut old)
        .await
        .expect_err("the fenced old primary must refuse writes");
    assert!(
        err.to_string()
            .contains("cannot execute INSERT in a read-only transaction"),
        "unexpected error from the fenced primary: {err}"
    );
    let _ = old.close().await;

    // Writes through HAProxy still land on the new primary.
    let mut via = connect(&format!(
        "postgres://postgres@{}/postgres",
        rig.haproxy.write_addr
    ))
    .await;
    let port_via: i32 = sqlx::query_scalar("SELECT inet_server_port()")
        .fetch_one(&mut via)
        .await
        .expect("inet_server_port");
    assert_eq!(
        port_via as u16,
        rig.replica.addr.port(),
        "writes must go to the new primary"
    );
    let _ = via.close().await;
    let n = writer.acked().len();
    wait_acked(&writer, n + 50, Duration::from_secs(10)).await;
    assert_eq!(
        rig.haproxy.active_write_server().await.as_deref(),
        Some("replica")
    );

    let acked = writer.acked();
    writer.stop().await;
    let on_new = ids_on(&rig.replica).await;
    let lost: Vec<i64> = acked
        .iter()
        .copied()
        .filter(|id| !on_new.contains(id))
        .collect();
    println!(
        "sync: {} acked rows, {} lost; test took {:?}",
        acked.len(),
        lost.len(),
        started.elapsed()
    );
    assert!(
        lost.is_empty(),
        "synchronous replication must lose no acknowledged commit; lost {lost:?}"
    );
    // Nothing the writer acked while the old primary was back went to it.
    let on_old = ids_on(&rig.primary).await;
    let leaked: Vec<i64> = on_old
        .iter()
        .copied()
        .filter(|id| *id > acked_at_return)
        .collect();
    assert!(
        leaked.is_empty(),
        "rows written after the old primary returned reached it: {leaked:?}"
    );
    println!(
        "sync: old primary holds {} rows (acked before the crash: {})",
        on_old.len(),
        at_crash.len()
    );

    // Last, so that everything above is checked even while this fails: one
    // failover is one promotion and one fence. The fence ends every client
    // session on the old primary, homeostat's own collector connection
    // included; the collector's next scrape fails on that dead connection
    // (`up` 0 for a round), which re-fires PostgresPrimaryDown (another
    // promotion, which fences again) and resolves then re-fires
    // PostgresTwoPrimaries (another fence): a loop every ~2s, for ever.
    tokio::time::sleep(Duration::from_secs(5)).await;
    let promotions = rig.runs("promote-replica").await;
    let fences = rig.runs("fence-returning-primary").await;
    let states = |runs: &[Value]| runs.iter().map(|r| r["state"].clone()).collect::<Vec<_>>();
    println!(
        "sync: runs by the end: promote-replica {:?}, fence-returning-primary {:?}",
        states(&promotions),
        states(&fences)
    );
    assert!(
        promotions.len() == 1 && fences.len() == 1,
        "one failover must be one promotion and one fence, got {} promotions and {} fences \
         (the fence's pg_terminate_backend ends homeostat's own collector session; see the \
         'terminating connection due to administrator command' scrape errors)\n{}",
        promotions.len(),
        fences.len(),
        rig.homeostat.process.log()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn async_loss_is_reported_within_rpo() {
    let _serial = SERIAL.lock().await;
    let started = Instant::now();
    let Some(mut rig) = Rig::start(
        false,
        &["replica"],
        PRIMARY_DOWN_RULES,
        &[("promote", &promote_playbook("30s"))],
    )
    .await
    else {
        return;
    };
    let (writer, before, at_crash, crashed) = write_then_crash(&mut rig, 300).await;
    let run = rig
        .wait_run(
            "promote-replica",
            &["succeeded", "failed", "escalated", "interrupted"],
            Duration::from_secs(30),
        )
        .await;
    assert_eq!(run["state"], "succeeded", "run: {run:#}\n{}", rig.logs());
    assert_eq!(run["steps"][0]["output"]["promoted"], true, "{run:#}");
    assert!(
        writer
            .wait_acked_after(crashed, Duration::from_secs(30))
            .await,
        "writer never resumed (errors {}, last {:?})\n{}",
        writer.errors(),
        writer.last_error(),
        rig.logs()
    );
    let acked = writer.acked();
    writer.stop().await;
    let on_new = ids_on(&rig.replica).await;
    let lost: Vec<i64> = acked
        .iter()
        .copied()
        .filter(|id| !on_new.contains(id))
        .collect();
    let last_second = at_crash.len() - before.len();
    println!(
        "async: {} rows acked before the crash, {} in its last second; {} acked rows lost {:?}; \
         promotion lag {}s / {} bytes; test took {:?}",
        at_crash.len(),
        last_second,
        lost.len(),
        lost,
        run["steps"][0]["output"]["lag_seconds"],
        run["steps"][0]["output"]["lag_bytes"],
        started.elapsed()
    );
    // Only commits acked in the last moment before the crash may be lost
    // (WAL the primary had not sent yet), never one acked after the switch.
    let floor = before.last().copied().unwrap_or(0);
    let ceiling = at_crash.last().copied().unwrap_or(0);
    assert!(
        lost.iter().all(|id| *id > floor && *id <= ceiling),
        "lost rows outside the last second before the crash ({floor}..={ceiling}): {lost:?}"
    );
    assert!(
        lost.len() <= last_second,
        "lost {} > {last_second}",
        lost.len()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn promotion_refused_beyond_rpo_pages_human() {
    let _serial = SERIAL.lock().await;
    let started = Instant::now();
    let Some(mut rig) = Rig::start(
        false,
        &["replica"],
        PRIMARY_DOWN_RULES,
        &[("promote", &promote_playbook("2s"))],
    )
    .await
    else {
        return;
    };
    let writer = Writer::start(format!(
        "postgres://postgres@{}/postgres",
        rig.haproxy.write_addr
    ));
    wait_acked(&writer, 100, Duration::from_secs(30)).await;
    let mut rep = connect(&rig.replica.url("postgres")).await;
    exec(&mut rep, "SELECT pg_wal_replay_pause()").await;
    let _ = rep.close().await;
    let n = writer.acked().len();
    tokio::time::sleep(Duration::from_secs(4)).await;
    assert!(
        writer.acked().len() > n + 50,
        "the writer should keep writing"
    );
    crash_postgres(&mut rig.primary);
    let run = rig
        .wait_run(
            "promote-replica",
            &["succeeded", "failed", "escalated", "interrupted"],
            Duration::from_secs(30),
        )
        .await;
    assert_eq!(run["state"], "escalated", "run: {run:#}\n{}", rig.logs());
    let step = &run["steps"][0];
    assert_eq!(step["state"], "refused", "{step:#}");
    let err = step["error"].as_str().unwrap_or_default();
    assert!(err.contains("beyond the RPO"), "{err}");
    println!("rpo: step refused: {err}");
    assert!(
        in_recovery(&rig.replica).await,
        "the replica must not be promoted"
    );
    assert_eq!(
        rig.haproxy.active_write_server().await.as_deref(),
        Some("primary"),
        "the write pool must not be switched"
    );
    let ok = wait_until(Duration::from_secs(10), || {
        let n = rig.hook.escalations().len();
        async move { n > 0 }
    })
    .await;
    assert!(ok, "no escalation reached the webhook\n{}", rig.logs());
    let page = &rig.hook.escalations()[0];
    assert_eq!(page["version"], "4");
    assert_eq!(
        page["alerts"][0]["labels"]["playbook"], "promote-replica",
        "{page:#}"
    );
    assert_eq!(page["alerts"][0]["labels"]["target"], "primary", "{page:#}");
    assert_eq!(
        page["alerts"][0]["annotations"]["run_id"], run["id"],
        "{page:#}"
    );
    let audit: Vec<&str> = run["audit"]
        .as_array()
        .map(|a| a.iter().filter_map(|e| e["action"].as_str()).collect())
        .unwrap_or_default();
    assert!(audit.contains(&"run.escalated"), "audit: {audit:?}");
    writer.stop().await;
    println!("rpo: test took {:?}", started.elapsed());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn lagging_replica_ejected_and_restored() {
    let _serial = SERIAL.lock().await;
    let started = Instant::now();
    let rules = r#"
groups:
  - name: lag
    interval: 1s
    rules:
      - alert: ReplicaLagging
        expr: pg_replication_lag{instance="replica"} > 2
        for: 0s
"#;
    let eject = r#"
name: eject-lagging-replica
trigger:
  alert: ReplicaLagging
target: '{{ $labels.instance }}'
steps:
  - name: eject
    action: postgres.eject_replica
    params: {haproxy: pg, backend: pg_read, server: replica}
"#;
    let restore = r#"
name: restore-replica
trigger:
  alert: ReplicaLagging
  on: resolved
target: '{{ $labels.instance }}'
steps:
  - name: restore
    action: postgres.restore_replica
    params: {haproxy: pg, backend: pg_read, server: replica, replica: replica, max_lag: 5s}
"#;
    let Some(rig) = Rig::start(
        false,
        &["replica", "primary"],
        rules,
        &[("eject", eject), ("restore", restore)],
    )
    .await
    else {
        return;
    };
    rig.wait_haproxy(READ_BACKEND, "replica", &["up"], Duration::from_secs(10))
        .await;
    let writer = Writer::start(format!(
        "postgres://postgres@{}/postgres",
        rig.haproxy.write_addr
    ));
    wait_acked(&writer, 50, Duration::from_secs(30)).await;
    let mut rep = connect(&rig.replica.url("postgres")).await;
    exec(&mut rep, "SELECT pg_wal_replay_pause()").await;
    let paused = Instant::now();

    let ejected = rig
        .wait_run(
            "eject-lagging-replica",
            &["succeeded", "failed", "escalated"],
            Duration::from_secs(30),
        )
        .await;
    assert_eq!(ejected["state"], "succeeded", "{ejected:#}\n{}", rig.logs());
    assert_eq!(
        ejected["steps"][0]["output"]["changed"], true,
        "{ejected:#}"
    );
    assert_eq!(
        rig.haproxy
            .server_state(READ_BACKEND, "replica")
            .await
            .as_deref(),
        Some("maint")
    );
    assert_ne!(
        rig.haproxy
            .server_state(READ_BACKEND, "primary")
            .await
            .as_deref(),
        Some("maint"),
        "the other reader stays in service"
    );
    println!(
        "lag: replica ejected {:?} after replay was paused",
        paused.elapsed()
    );

    exec(&mut rep, "SELECT pg_wal_replay_resume()").await;
    let resumed = Instant::now();
    let restored = rig
        .wait_run(
            "restore-replica",
            &["succeeded", "failed", "escalated"],
            Duration::from_secs(30),
        )
        .await;
    assert_eq!(
        restored["state"],
        "succeeded",
        "{restored:#}\n{}",
        rig.logs()
    );
    assert_eq!(
        restored["steps"][0]["output"]["changed"], true,
        "{restored:#}"
    );
    rig.wait_haproxy(READ_BACKEND, "replica", &["up"], Duration::from_secs(10))
        .await;
    println!(
        "lag: replica restored {:?} after replay resumed",
        resumed.elapsed()
    );

    for r in [&ejected, &restored] {
        let audit: Vec<&str> = r["audit"]
            .as_array()
            .map(|a| a.iter().filter_map(|e| e["action"].as_str()).collect())
            .unwrap_or_default();
        assert!(
            audit.contains(&"run.created") && audit.contains(&"run.succeeded"),
            "audit of {}: {audit:?}",
            r["id"]
        );
        assert_eq!(r["trigger"], "alert");
        assert_eq!(r["target"], "replica");
    }
    let _ = rep.close().await;
    writer.stop().await;
    println!("lag: test took {:?}", started.elapsed());
}
