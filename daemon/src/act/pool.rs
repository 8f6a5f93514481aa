//! Connection pools homeostat re-points during a failover or an ejection:
//! HAProxy backends through the runtime API (`set server <b>/<s> state
//! maint|ready`) and PgBouncer `[databases]` entries (rewrite the ini file,
//! then `RELOAD` through the admin console).
//!
//! Shared by the postgres actions; knows nothing of playbooks.

use std::str::FromStr;
use std::time::Duration;

use sqlx::postgres::{PgConnectOptions, PgConnection};
use sqlx::Connection;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use super::{within, ActionError, HaproxyConfig, PgbouncerConfig};

/// Largest runtime-API answer read (a `show servers state` of a big backend).
const MAX_ANSWER: u64 = 4 << 20;

/// Sends one command to HAProxy's runtime API and returns the answer. The
/// socket is in non-interactive mode: one command, then HAProxy closes.
pub async fn haproxy_command(h: &HaproxyConfig, command: &str) -> Result<String, ActionError> {
    let what = format!("HAProxy {} runtime API", h.name);
    within(h.timeout.0, &what, async {
        let line = format!("{command}\n");
        let mut buf = Vec::new();
        let io = |e: std::io::Error| ActionError::Failed(format!("{what} ({}): {e}", h.socket));
        if h.socket.starts_with('/') {
            let mut s = tokio::net::UnixStream::connect(&h.socket)
                .await
                .map_err(io)?;
            s.write_all(line.as_bytes()).await.map_err(io)?;
            s.take(MAX_ANSWER).read_to_end(&mut buf).await.map_err(io)?;
        } else {
            let mut s = tokio::net::TcpStream::connect(&h.socket)
                .await
                .map_err(io)?;
            s.write_all(line.as_bytes()).await.map_err(io)?;
            s.take(MAX_ANSWER).read_to_end(&mut buf).await.map_err(io)?;
        }
        Ok(String::from_utf8_lossy(&buf).into_owned())
    })
    .await
}

/// One server of a backend as `show servers state` reports it.
#[derive(Debug, Clone, PartialEq)]
pub struct ServerState {
    pub name: String,
    pub addr: String,
    /// 0 stopped, 1 starting, 2 running, 3 stopping.
    pub op_state: u32,
    /// Bit field: 0x01 forced maint, 0x02 inherited maint, 0x04 "was
    /// `disabled` in the config" (kept after `state ready`, so not itself
    /// maintenance), 0x08 forced drain, 0x10 inherited drain, 0x20 maint
    /// from DNS resolution.
    pub admin_state: u32,
}

impl ServerState {
    pub fn in_maint(&self) -> bool {
        self.admin_state & (0x01 | 0x02 | 0x20) != 0
    }

    /// Takes traffic: not in maintenance or drain, and up.
    pub fn serving(&self) -> bool {
        !self.in_maint() && self.admin_state & (0x08 | 0x10) == 0 && self.op_state == 2
    }
}

/// Parses `show servers state <backend>` (format version 1: a version
/// line, a `#` header naming the columns, then one line per server).
pub fn parse_servers_state(text: &str) -> Vec<ServerState> {
    let mut cols: Vec<&str> = Vec::new();
    let mut out = Vec::new();
    for line in text.lines() {
        if let Some(h) = line.strip_prefix("# ") {
            cols = h.split_whitespace().collect();
            continue;
        }
        if cols.is_empty() || line.trim().is_empty() {
            continue;
        }
        let vals: Vec<&str> = line.split_whitespace().collect();
        let get = |name: &str| {
            cols.iter()
                .position(|c| *c == name)
                .and_then(|i| vals.get(i).copied())
        };
        let num = |name: &str| get(name).and_then(|v| v.parse().ok());
        if let (Some(name), Some(op), Some(admin)) =
            (get("srv_name"), num("srv_op_state"), num("srv_admin_state"))
        {
            out.push(ServerState {
                name: name.to_string(),
                addr: get("srv_addr").unwrap_or_default().to_string(),
                op_state: op,
                admin_state: admin,
            });
        }
    }
    out
}

pub async fn servers(h: &HaproxyConfig, backend: &str) -> Result<Vec<ServerState>, ActionError> {
    let answer = haproxy_command(h, &format!("show servers state {backend}")).await?;
    let list = parse_servers_state(&answer);
    if list.is_empty() {
        return Err(ActionError::Failed(format!(
            "HAProxy {}: no servers in backend {backend:?}: {}",
            h.name,
            answer.trim()
        )));
    }
    Ok(list)
}

/// `set server <backend>/<server> state <state>`; HAProxy answers nothing
/// on success and a message otherwise.
pub async fn set_server_state(
    h: &HaproxyConfig,
    backend: &str,
    server: &str,
    state: &str,
) -> Result<(), ActionError> {
    let answer =
        haproxy_command(h, &format!("set server {backend}/{server} state {state}")).await?;
    if !answer.trim().is_empty() {
        return Err(ActionError::Failed(format!(
            "HAProxy {}: set server {backend}/{server} state {state}: {}",
            h.name,
            answer.trim()
        )));
    }
    Ok(())
}

/// Closes the sessions still open to a server (clients reconnect through
/// the pool and land on a server that is in service).
pub async fn shutdown_sessions(
    h: &HaproxyConfig,
    backend: &str,
    server: &str,
) -> Result<(), ActionError> {
    let answer =
        haproxy_command(h, &format!("shutdown sessions server {backend}/{server}")).await?;
    if !answer.trim().is_empty() {
        return Err(ActionError::Failed(format!(
            "HAProxy {}: shutdown sessions server {backend}/{server}: {}",
            h.name,
            answer.trim()
        )));
    }
    Ok(())
}

/// Rewrites the `host` and `port` of one `[databases]` entry of an ini
/// text, keeping its other settings and every other line as they are.
/// Returns the new text, or an error naming what is missing.
pub fn rewrite_database(
    ini: &str,
    database: &str,
    host: &str,
    port: u16,
) -> Result<String, String> {
    let mut out = String::with_capacity(ini.len() + 32);
    let mut section = String::new();
    let mut done = false;
    for line in ini.split_inclusive('\n') {
        let t = line.trim();
        if t.starts_with('[') && t.ends_with(']') {
            section = t[1..t.len() - 1].trim().to_ascii_lowercase();
        }
        let entry = (section == "databases")
            .then(|| t.split_once('='))
            .flatten()
            .filter(|(k, _)| k.trim() == database && !t.starts_with(';') && !t.starts_with('#'));
        match entry {
            Some((_, value)) if !done => {
                let mut parts: Vec<String> = value
                    .split_whitespace()
                    .filter(|kv| !kv.starts_with("host=") && !kv.starts_with("port="))
                    .map(str::to_string)
                    .collect();
                parts.insert(0, format!("port={port}"));
                parts.insert(0, format!("host={host}"));
                out.push_str(&format!("{database} = {}\n", parts.join(" ")));
                done = true;
            }
            _ => out.push_str(line),
        }
    }
    if !done {
        return Err(format!("no entry {database:?} under [databases]"));
    }
    Ok(out)
}

/// Points a PgBouncer database at `host:port`: rewrites the ini file
/// atomically (write beside, rename) and sends `RELOAD`.
pub async fn pgbouncer_repoint(
    p: &PgbouncerConfig,
    database: &str,
    host: &str,
    port: u16,
) -> Result<(), ActionError> {
    let path = &p.config_file;
    let text = tokio::fs::read_to_string(path)
        .await
        .map_err(|e| ActionError::Failed(format!("cannot read {}: {e}", path.display())))?;
    let new = rewrite_database(&text, database, host, port)
        .map_err(|e| ActionError::Failed(format!("{}: {e}", path.display())))?;
    if new != text {
        let tmp = path.with_extension("homeostat-tmp");
        tokio::fs::write(&tmp, &new)
            .await
            .map_err(|e| ActionError::Failed(format!("cannot write {}: {e}", tmp.display())))?;
        tokio::fs::rename(&tmp, path)
            .await
            .map_err(|e| ActionError::Failed(format!("cannot replace {}: {e}", path.display())))?;
    }
    pgbouncer_admin(p, "RELOAD").await
}

/// One command on the PgBouncer admin console (simple query protocol; the
/// console rejects the startup parameters it does not track).
pub async fn pgbouncer_admin(p: &PgbouncerConfig, command: &str) -> Result<(), ActionError> {
    let what = format!("PgBouncer {} {command}", p.name);
    within(p.timeout.0, &what, async {
        let o = PgConnectOptions::from_str(&p.admin_dsn)
            .map_err(|e| ActionError::Params(format!("act.pgbouncer {}: admin_dsn: {e}", p.name)))?
            .extra_float_digits(None)
            .statement_cache_capacity(0);
        let mut c = PgConnection::connect_with(&o)
            .await
            .map_err(|e| ActionError::Failed(format!("{what}: {e}")))?;
        sqlx::Executor::execute(&mut c, command)
            .await
            .map_err(|e| ActionError::Failed(format!("{what}: {e}")))?;
        let _ = tokio::time::timeout(Duration::from_secs(1), c.close()).await;
        Ok(())
    })
    .await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_show_servers_state() {
        let text = "1\n# be_id be_name srv_id srv_name srv_addr srv_op_state srv_admin_state srv_uweight srv_iweight srv_time_since_last_change srv_check_status srv_check_result srv_check_health srv_check_state srv_agent_state bk_f_forced_id srv_f_forced_id srv_fqdn srv_port srvrecord srv_use_ssl srv_check_port srv_check_addr srv_agent_addr srv_agent_port\n3 pg_read 1 r1 127.0.0.1 2 0 1 1 12 6 3 4 6 0 0 0 - 5433 - 0 0 - - 0\n3 pg_read 2 r2 127.0.0.1 2 1 1 1 3 6 3 4 6 0 0 0 - 5434 - 0 0 - - 0\n3 pg_read 3 r3 127.0.0.1 2 4 1 1 3 6 3 4 6 0 0 0 - 5435 - 0 0 - - 0\n";
        let s = parse_servers_state(text);
        assert_eq!(s.len(), 3);
        // Disabled in the config, then set ready: serving.
        assert!(s[2].serving());
        assert!(s[0].serving());
        assert!(s[1].in_maint() && !s[1].serving());
        assert_eq!(s[1].name, "r2");
    }

    #[test]
    fn rewrites_only_the_named_database() {
        let ini = "[databases]\n; app = host=old\napp = host=10.0.0.1 port=5432 dbname=app pool_size=20\nother = host=10.0.0.9\n\n[pgbouncer]\nlisten_port = 6432\n";
        let out = rewrite_database(ini, "app", "10.0.0.2", 5433).unwrap();
        assert!(out.contains("app = host=10.0.0.2 port=5433 dbname=app pool_size=20\n"));
        assert!(out.contains("; app = host=old\n"));
        assert!(out.contains("other = host=10.0.0.9\n"));
        assert!(out.contains("listen_port = 6432"));
        assert!(rewrite_database(ini, "nope", "h", 1).is_err());
    }
}
