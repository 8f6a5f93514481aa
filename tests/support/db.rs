//! Real PostgreSQL (primary + streaming replica), PgBouncer and Redis for the
//! collector tests: Debian packages started on 127.0.0.1 with free ports and
//! temp dirs. PostgreSQL and PgBouncer refuse to run as root, so under root
//! (CI) they run as the `postgres` user through `setpriv`, which execs the
//! server in place so our signals reach it.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use super::{free_port, required_program, temp_dir, ServerProcess};

/// A PostgreSQL binary: on the PATH, or in Debian's versioned directory.
pub fn pg_program(name: &str) -> Option<PathBuf> {
    if let Some(p) = super::find_program(name) {
        return Some(p);
    }
    let mut dirs: Vec<PathBuf> = std::fs::read_dir("/usr/lib/postgresql")
        .ok()?
        .filter_map(Result::ok)
        .map(|e| e.path().join("bin"))
        .collect();
    dirs.sort();
    dirs.into_iter()
        .rev()
        .map(|d| d.join(name))
        .find(|p| p.exists())
}

pub(crate) fn is_root() -> bool {
    // SAFETY: geteuid has no preconditions.
    unsafe { geteuid() == 0 }
}

extern "C" {
    fn geteuid() -> u32;
}

/// `(program, args)` that run `cmd` as the `postgres` user when we are root.
fn as_db_user(program: &Path, args: &[String]) -> (PathBuf, Vec<String>) {
    if !is_root() {
        return (program.to_path_buf(), args.to_vec());
    }
    let mut a = vec![
        "--reuid=postgres".to_string(),
        "--regid=postgres".into(),
        "--init-groups".into(),
        "--".into(),
        program.display().to_string(),
    ];
    a.extend(args.iter().cloned());
    (PathBuf::from("setpriv"), a)
}

fn chown_to_db_user(p: &Path) {
    if is_root() {
        let st = Command::new("chown")
            .args(["-R", "postgres:postgres"])
            .arg(p)
            .status()
            .expect("chown");
        assert!(st.success(), "chown {}", p.display());
    }
}

fn run_as_db_user(program: &Path, args: &[String]) {
    let (p, a) = as_db_user(program, args);
    let out = Command::new(&p).args(&a).output().expect("run");
    assert!(
        out.status.success(),
        "{} {:?} failed:\n{}{}",
        p.display(),
        a,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

/// One running PostgreSQL server.
pub struct Postgres {
    pub process: ServerProcess,
    pub addr: SocketAddr,
    pub data: PathBuf,
}

impl Postgres {
    /// `postgres://user@127.0.0.1:port/db`
    pub fn url(&self, user: &str) -> String {
        format!("postgres://{user}@{}/postgres", self.addr)
    }
}

async fn start_server(data: &Path, port: u16) -> Postgres {
    let postgres = pg_program("postgres").expect("postgres binary");
    let args = vec!["-D".to_string(), data.display().to_string()];
    let (p, a) = as_db_user(&postgres, &args);
    let a: Vec<&str> = a.iter().map(String::as_str).collect();
    let mut process = ServerProcess::spawn("postgres", &p, &a, &[]).expect("spawn postgres");
    let addr: SocketAddr = format!("127.0.0.1:{port}").parse().expect("addr");
    process.wait_for_port(addr, Duration::from_secs(60)).await;
    Postgres {
        process,
        addr,
        data: data.to_path_buf(),
    }
}

/// A primary and a streaming replica of it (PostgreSQL from Debian's
/// `postgresql` package); `None` with a SKIP line when it is not installed.
pub async fn start_postgres_pair() -> Option<(Postgres, Postgres, tempfile::TempDir)> {
    let Some(initdb) = pg_program("initdb") else {
        // Same rule as required_program: absent is a skip here, a failure in CI.
        required_program(&["initdb"], "postgresql");
        return None;
    };
    let basebackup = pg_program("pg_basebackup")?;
    let root = temp_dir();
    chown_to_db_user(root.path());
    let primary_dir = root.path().join("primary");
    let replica_dir = root.path().join("replica");
    let sockets = root.path().display().to_string();
    run_as_db_user(
        &initdb,
        &[
            "-D".into(),
            primary_dir.display().to_string(),
            "-U".into(),
            "postgres".into(),
            "--auth=trust".into(),
            "--no-sync".into(),
            "-E".into(),
            "UTF8".into(),
        ],
    );
    let port = free_port();
    let conf = format!(
        "\nlisten_addresses = '127.0.0.1'\nport = {port}\nunix_socket_directories = '{sockets}'\n\
         wal_level = replica\nmax_wal_senders = 5\nhot_standby = on\nfsync = off\n\
         synchronous_commit = off\nshared_buffers = 16MB\n"
    );
    append(&primary_dir.join("postgresql.conf"), &conf);
    let primary = start_server(&primary_dir, port).await;

    run_as_db_user(
        &basebackup,
        &[
            "-h".into(),
            "127.0.0.1".into(),
            "-p".into(),
            port.to_string(),
            "-U".into(),
            "postgres".into(),
            "-D".into(),
            replica_dir.display().to_string(),
            "-R".into(),
            "-X".into(),
            "stream".into(),
            "--no-sync".into(),
        ],
    );
    let rport = free_port();
    append(
        &replica_dir.join("postgresql.conf"),
        &format!("\nport = {rport}\n"),
    );
    // Names the replica in pg_stat_replication.
    append(
        &replica_dir.join("postgresql.auto.conf"),
        &format!(
            "\nprimary_conninfo = 'host=127.0.0.1 port={port} user=postgres application_name=replica1'\n"
        ),
    );
    let replica = start_server(&replica_dir, rport).await;
    Some((primary, replica, root))
}

fn append(p: &Path, text: &str) {
    use std::io::Write;
    let mut f = std::fs::OpenOptions::new()
        .append(true)
        .open(p)
        .unwrap_or_else(|e| panic!("open {}: {e}", p.display()));
    f.write_all(text.as_bytes()).expect("append");
}

/// PgBouncer (Debian `pgbouncer`) in front of `pg`, trust auth, with
/// `stats_user` allowed on the admin console, and a user `app` that is not.
pub async fn start_pgbouncer(
    pg: SocketAddr,
    stats_user: &str,
) -> Option<(ServerProcess, SocketAddr, tempfile::TempDir)> {
    let bin = required_program(&["pgbouncer"], "pgbouncer")?;
    let dir = temp_dir();
    let port = free_port();
    let users = dir.path().join("userlist.txt");
    std::fs::write(
        &users,
        // `app`: a pool user that may not use the admin console.
        format!("\"postgres\" \"\"\n\"{stats_user}\" \"\"\n\"app\" \"\"\n"),
    )
    .ok()?;
    let ini = dir.path().join("pgbouncer.ini");
    std::fs::write(
        &ini,
        format!(
            "[databases]\npostgres = host={} port={} dbname=postgres\n\n[pgbouncer]\n\
             listen_addr = 127.0.0.1\nlisten_port = {port}\nunix_socket_dir =\n\
             auth_type = trust\nauth_file = {}\nadmin_users = postgres\nstats_users = {stats_user}\n\
             pool_mode = session\nignore_startup_parameters = extra_float_digits\n",
            pg.ip(),
            pg.port(),
            users.display()
        ),
    )
    .ok()?;
    chown_to_db_user(dir.path());
    let (p, a) = as_db_user(&bin, &[ini.display().to_string()]);
    let a: Vec<&str> = a.iter().map(String::as_str).collect();
    let mut process = ServerProcess::spawn("pgbouncer", &p, &a, &[]).ok()?;
    let addr: SocketAddr = format!("127.0.0.1:{port}").parse().ok()?;
    process.wait_for_port(addr, Duration::from_secs(30)).await;
    Some((process, addr, dir))
}

/// redis-server (Debian `redis-server`) on a free port, no persistence;
/// a replica of `master` when given.
pub async fn start_redis(master: Option<SocketAddr>) -> Option<(ServerProcess, SocketAddr)> {
    let bin = required_program(&["redis-server"], "redis-server")?;
    let dir = temp_dir();
    let port = free_port();
    let mut args = vec![
        "--port".to_string(),
        port.to_string(),
        "--bind".into(),
        "127.0.0.1".into(),
        "--save".into(),
        "".into(),
        "--appendonly".into(),
        "no".into(),
        "--dir".into(),
        dir.path().display().to_string(),
    ];
    if let Some(m) = master {
        args.extend([
            "--replicaof".into(),
            m.ip().to_string(),
            m.port().to_string(),
        ]);
    }
    let a: Vec<&str> = args.iter().map(String::as_str).collect();
    let mut process = ServerProcess::spawn("redis-server", &bin, &a, &[]).ok()?;
    process.keep.push(dir);
    let addr: SocketAddr = format!("127.0.0.1:{port}").parse().ok()?;
    process.wait_for_port(addr, Duration::from_secs(30)).await;
    Some((process, addr))
}

// ---------------------------------------------------------------------------
// Failover helpers (tests/failover.rs): synchronous replication, a crash
// that takes every process of a server down at once, a restart on the same
// data directory.

/// As [`start_postgres_pair`], with replication made synchronous when `sync`
/// is true: the primary names the replica (`application_name=replica1`) in
/// `synchronous_standby_names` with `synchronous_commit = on` (ALTER SYSTEM,
/// which overrides the `synchronous_commit = off` of postgresql.conf), and
/// this returns once `pg_stat_replication` reports the replica as `sync`.
/// The settings are made after the base backup, so the replica does not
/// inherit `synchronous_standby_names` (a promoted replica that did would
/// wait forever for a standby it does not have).
pub async fn start_postgres_pair_with(
    sync: bool,
) -> Option<(Postgres, Postgres, tempfile::TempDir)> {
    use sqlx::Connection;
    let (primary, replica, dirs) = start_postgres_pair().await?;
    if !sync {
        return Some((primary, replica, dirs));
    }
    let mut c = sqlx::PgConnection::connect(&primary.url("postgres"))
        .await
        .unwrap_or_else(|e| panic!("connect {}: {e}", primary.addr));
    for sql in [
        "ALTER SYSTEM SET synchronous_standby_names = 'replica1'",
        "ALTER SYSTEM SET synchronous_commit = on",
        "SELECT pg_reload_conf()",
    ] {
        sqlx::query(sql)
            .execute(&mut c)
            .await
            .unwrap_or_else(|e| panic!("{sql}: {e}"));
    }
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    loop {
        let state: Option<String> = sqlx::query_scalar(
            "SELECT sync_state FROM pg_stat_replication WHERE application_name = 'replica1'",
        )
        .fetch_optional(&mut c)
        .await
        .unwrap_or_else(|e| panic!("pg_stat_replication: {e}"));
        if state.as_deref() == Some("sync") {
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "replica never became a synchronous standby (sync_state {state:?}); primary log:\n{}",
            primary.process.log()
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let _ = c.close().await;
    Some((primary, replica, dirs))
}

extern "C" {
    #[link_name = "kill"]
    fn kill_pid(pid: i32, sig: i32) -> i32;
}

/// Pids whose parent is `ppid`, from /proc.
fn children_of(ppid: i32) -> Vec<i32> {
    let Ok(dir) = std::fs::read_dir("/proc") else {
        return Vec::new();
    };
    dir.filter_map(Result::ok)
        .filter_map(|e| e.file_name().to_str()?.parse::<i32>().ok())
        .filter(|pid| {
            // /proc/<pid>/stat: "pid (comm) state ppid ..."; comm may hold
            // spaces and parentheses, so parse after the last ')'.
            std::fs::read_to_string(format!("/proc/{pid}/stat"))
                .ok()
                .and_then(|s| {
                    let rest = &s[s.rfind(')')? + 1..];
                    rest.split_whitespace().nth(1)?.parse::<i32>().ok()
                })
                == Some(ppid)
        })
        .collect()
}

/// Crashes a PostgreSQL server as a lost host would: SIGKILL to the
/// postmaster and every one of its processes (backends, walsenders, the
/// WAL writer) at once, so nothing gets to flush, send or answer; then the
/// postmaster is reaped, so [`restart_postgres`] can start on the same data
/// directory. (SIGKILL to the postmaster alone leaves its children running
/// until they notice, and `ServerProcess::stop` is a smart shutdown.)
pub fn crash_postgres(pg: &mut Postgres) {
    let pid = pg.process.pid() as i32;
    if pid <= 0 {
        return;
    }
    let children = children_of(pid);
    // SAFETY: kill(2) on pids of the server we started and its children.
    unsafe {
        kill_pid(pid, super::SIGKILL);
        for c in &children {
            kill_pid(*c, super::SIGKILL);
        }
    }
    // Reaps the postmaster (already dead: stop only waits for it).
    pg.process.stop(Duration::from_secs(5));
    // The children are reparented and reaped elsewhere; wait until they are
    // gone (or zombies) so their shared memory is released.
    let deadline = std::time::Instant::now() + Duration::from_secs(5);
    while std::time::Instant::now() < deadline {
        let alive = children.iter().any(|c| {
            std::fs::read_to_string(format!("/proc/{c}/stat"))
                .ok()
                .and_then(|s| {
                    let rest = &s[s.rfind(')')? + 1..];
                    rest.split_whitespace().next().map(|st| st != "Z")
                })
                .unwrap_or(false)
        });
        if !alive {
            break;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// Starts PostgreSQL again on an existing data directory and port (a
/// crashed server coming back: it runs crash recovery first).
pub async fn restart_postgres(data: &Path, port: u16) -> Postgres {
    start_server(data, port).await
}
