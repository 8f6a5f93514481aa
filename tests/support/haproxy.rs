//! A real HAProxy (Debian `haproxy`) in TCP mode in front of PostgreSQL, for
//! the failover tests: a `pg_write` listener that sends traffic to exactly one
//! server, a `pg_read` listener balancing over all replicas, and the runtime
//! API on a unix socket, which is what homeostat drives to re-point writes.
//!
//! Write routing is done the way homeostat does it in production: every
//! write server is a normal server, all but the first start `disabled`
//! (maintenance), and a switch is `set server pg_write/<new> state ready`
//! plus `set server pg_write/<old> state maint` over the runtime API. No
//! `backup` servers: HAProxy would fail over to those by itself, and then the
//! test could not tell homeostat's switch from HAProxy's. The order of the
//! two commands matters: `maint` first leaves `pg_write` without a server
//! for a moment (new connections wait, then fail); `ready` first has both
//! servers take writes round robin for a moment.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::UnixStream;

use super::{free_port, required_program, temp_dir, wait_until, ServerProcess, TempDir};

/// The write listener's proxy name in HAProxy (for `set server pg_write/x`).
pub const WRITE_BACKEND: &str = "pg_write";
/// The read listener's proxy name in HAProxy.
pub const READ_BACKEND: &str = "pg_read";

/// `srv_admin_state` bits of HAProxy 2.6 (`include/haproxy/server-t.h`,
/// `enum srv_admin`). The maintenance mask is FMAINT|IMAINT|RMAINT (0x23)
/// and deliberately leaves out CMAINT (0x04): that bit only records that
/// the configuration said `disabled`, and it *stays set* after
/// `set server .. state ready` takes the server out of maintenance (checked
/// against haproxy 2.6.12: admin state 5 while disabled, 4 once ready).
const ADMF_MAINT: u32 = 0x01 | 0x02 | 0x20;
/// FDRAIN|IDRAIN.
const ADMF_DRAIN: u32 = 0x08 | 0x10;

/// A running HAProxy; stops when dropped.
pub struct Haproxy {
    /// `pg_write`: one server at a time gets the traffic.
    pub write_addr: SocketAddr,
    /// `pg_read`: round robin over every read server.
    pub read_addr: SocketAddr,
    /// The runtime API (`level admin`).
    pub socket: PathBuf,
    // Declared before `dir` so that HAProxy is stopped before its config and
    // socket directory are removed (fields drop in declaration order).
    process: ServerProcess,
    dir: TempDir,
}

/// Server lines for one listener; every server is health-checked twice a
/// second and marked down after two failures, so a stopped PostgreSQL shows
/// up as DOWN within about a second.
fn server_lines(servers: &[(&str, SocketAddr)], disable_all_but_first: bool) -> String {
    servers
        .iter()
        .enumerate()
        .map(|(i, (name, addr))| {
            let disabled = if disable_all_but_first && i > 0 {
                " disabled"
            } else {
                ""
            };
            format!("    server {name} {addr}{disabled}\n")
        })
        .collect()
}

/// Starts HAProxy on two free ports of 127.0.0.1 with `write` servers
/// behind `pg_write` (only the first one ready, the others in maintenance)
/// and `read` servers behind `pg_read` (all ready); `None` with a SKIP line
/// when haproxy is not installed.
pub async fn start_haproxy(
    write: &[(&str, SocketAddr)],
    read: &[(&str, SocketAddr)],
) -> Option<Haproxy> {
    let bin = required_program(&["haproxy"], "haproxy")?;
    let dir = temp_dir();
    let socket = dir.path().join("admin.sock");
    let write_addr: SocketAddr = format!("127.0.0.1:{}", free_port()).parse().ok()?;
    let read_addr: SocketAddr = format!("127.0.0.1:{}", free_port()).parse().ok()?;
    // No `daemon`, no `master-worker`, no `user`/`group`: HAProxy stays the
    // child we spawned (so ServerProcess's signals reach it) and runs as
    // whoever runs the tests, root included.
    // `on-marked-down shutdown-sessions` closes client connections to a
    // server that goes DOWN or into maintenance, so the writer reconnects
    // and lands on the new primary instead of staying on the old one:
    // without it, `state maint` leaves established sessions open (seen with
    // haproxy 2.6.12).
    let defaults_server =
        "    default-server check inter 500ms fall 2 rise 1 on-marked-down shutdown-sessions\n";
    let cfg = format!(
        "global\n\
         \x20   stats socket {socket} mode 600 level admin\n\
         \x20   stats timeout 30s\n\
         \n\
         defaults\n\
         \x20   mode tcp\n\
         \x20   timeout connect 1s\n\
         \x20   timeout client 30s\n\
         \x20   timeout server 30s\n\
         \n\
         listen {WRITE_BACKEND}\n\
         \x20   bind {write_addr}\n\
         {defaults_server}{write_servers}\n\
         listen {READ_BACKEND}\n\
         \x20   bind {read_addr}\n\
         \x20   balance roundrobin\n\
         {defaults_server}{read_servers}",
        socket = socket.display(),
        write_servers = server_lines(write, true),
        read_servers = server_lines(read, false),
    );
    let cfg_path = dir.path().join("haproxy.cfg");
    std::fs::write(&cfg_path, &cfg).ok()?;
    // -db: stay in the foreground, log to stderr (our log file).
    let cfg_arg = cfg_path.display().to_string();
    let mut process = ServerProcess::spawn("haproxy", &bin, &["-db", "-f", &cfg_arg], &[]).ok()?;
    process
        .wait_for_port(write_addr, Duration::from_secs(30))
        .await;
    process
        .wait_for_port(read_addr, Duration::from_secs(30))
        .await;
    let ready = wait_until(Duration::from_secs(10), || {
        let s = socket.clone();
        async move { UnixStream::connect(&s).await.is_ok() }
    })
    .await;
    assert!(
        ready,
        "haproxy runtime socket {} never accepted; config:\n{cfg}\nlog:\n{}",
        socket.display(),
        process.log()
    );
    Some(Haproxy {
        write_addr,
        read_addr,
        socket,
        process,
        dir,
    })
}

impl Haproxy {
    /// One runtime API command (non-interactive: HAProxy answers and closes).
    /// Commands that succeed silently (`set server ...`) answer `"\n"`;
    /// errors answer text such as `"No such server.\n\n"`.
    pub async fn runtime(&self, command: &str) -> String {
        let talk = async {
            let mut s = UnixStream::connect(&self.socket).await?;
            s.write_all(format!("{command}\n").as_bytes()).await?;
            let mut out = String::new();
            s.read_to_string(&mut out).await?;
            Ok::<_, std::io::Error>(out)
        };
        match tokio::time::timeout(Duration::from_secs(5), talk).await {
            Ok(Ok(out)) => out,
            Ok(Err(e)) => panic!(
                "haproxy runtime command {command:?} on {}: {e}\nlog:\n{}",
                self.socket.display(),
                self.process.log()
            ),
            Err(_) => panic!(
                "haproxy runtime command {command:?} got no answer in 5s\nlog:\n{}",
                self.process.log()
            ),
        }
    }

    /// Every server of `backend` with its state word (see
    /// [`Haproxy::server_state`]), in configuration order; `None` when the
    /// backend does not exist.
    pub async fn servers(&self, backend: &str) -> Option<Vec<(String, String)>> {
        let out = self.runtime(&format!("show servers state {backend}")).await;
        parse_servers_state(&out)
    }

    /// The state of `backend/server` as one word, from
    /// `show servers state <backend>`: "maint", "drain", or else the
    /// operational state "up", "down", "starting" or "stopping". `None` when
    /// the backend or the server does not exist.
    pub async fn server_state(&self, backend: &str, server: &str) -> Option<String> {
        self.servers(backend)
            .await?
            .into_iter()
            .find(|(name, _)| name == server)
            .map(|(_, state)| state)
    }

    /// The `pg_write` server that is not in maintenance (up or down), i.e.
    /// where write traffic goes; `None` when all are in maintenance. With
    /// several out of maintenance (a half-done switch) the first is named;
    /// [`Haproxy::ready_write_servers`] lists them all.
    pub async fn active_write_server(&self) -> Option<String> {
        self.ready_write_servers().await.into_iter().next()
    }

    /// Every `pg_write` server not in maintenance, in configuration order;
    /// exactly one outside of a switch.
    pub async fn ready_write_servers(&self) -> Vec<String> {
        self.servers(WRITE_BACKEND)
            .await
            .unwrap_or_default()
            .into_iter()
            .filter(|(_, state)| state != "maint")
            .map(|(name, _)| name)
            .collect()
    }

    /// What HAProxy logged so far (health-check transitions, state changes).
    pub fn log(&self) -> String {
        self.process.log()
    }

    /// The generated haproxy.cfg, for failure messages.
    pub fn config(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("haproxy.cfg")).unwrap_or_default()
    }
}

/// Parses the answer to `show servers state <backend>`: a format version
/// line ("1"), a header naming the columns ("# be_id be_name srv_id srv_name
/// srv_addr srv_op_state srv_admin_state ..."), then one line per server.
/// Columns are looked up by name rather than trusted by position. `None`
/// when there is no header (the answer was an error such as
/// "Can't find backend.").
fn parse_servers_state(out: &str) -> Option<Vec<(String, String)>> {
    let mut lines = out.lines();
    let header: Vec<&str> = lines
        .by_ref()
        .find_map(|l| l.strip_prefix("# "))?
        .split_whitespace()
        .collect();
    let col = |name: &str| header.iter().position(|c| *c == name);
    let (name_i, op_i, admin_i) = (
        col("srv_name")?,
        col("srv_op_state")?,
        col("srv_admin_state")?,
    );
    let servers = lines
        .map(|l| l.split_whitespace().collect::<Vec<_>>())
        .filter(|f| f.len() > name_i.max(op_i).max(admin_i))
        .filter_map(|f| {
            let op: u32 = f[op_i].parse().ok()?;
            let admin: u32 = f[admin_i].parse().ok()?;
            Some((f[name_i].to_string(), state_word(op, admin)))
        })
        .collect();
    Some(servers)
}

/// Maintenance wins over drain, which wins over the operational state
/// (HAProxy's own precedence when it prints MAINT/DRAIN/UP/DOWN).
fn state_word(op: u32, admin: u32) -> String {
    if admin & ADMF_MAINT != 0 {
        "maint".into()
    } else if admin & ADMF_DRAIN != 0 {
        "drain".into()
    } else {
        match op {
            0 => "down".into(),
            1 => "starting".into(),
            2 => "up".into(),
            3 => "stopping".into(),
            other => format!("op_state {other}"),
        }
    }
}
