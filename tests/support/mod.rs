//! Test support for end-to-end tests: free ports, temp dirs, real server
//! processes that are waited for and stopped cleanly, and scriptable HTTP
//! targets.
//!
//! Every later end-to-end test (PostgreSQL, Redis, Alertmanager, SMTP, HAProxy,
//! Chromium) starts its servers through [`ServerProcess`]; nothing here mocks a
//! server that can run on this machine.

pub mod arm;
pub mod db;
pub mod haproxy;
pub mod pagerduty;
pub mod pgwriter;
pub mod sign;
pub mod slack;
pub mod smtp;

use std::io::{Read, Write as _};
use std::net::{SocketAddr, TcpListener as StdListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

pub use tempfile::TempDir;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;

/// A port that was free a moment ago on 127.0.0.1.
pub fn free_port() -> u16 {
    StdListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("no free port on 127.0.0.1")
}

pub fn temp_dir() -> TempDir {
    tempfile::Builder::new()
        .prefix("homeostat-e2e-")
        .tempdir()
        .expect("cannot create temp dir")
}

/// Polls `cond` until it holds or `timeout` passes; returns whether it held.
pub async fn wait_until<F, Fut>(timeout: Duration, mut cond: F) -> bool
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let deadline = Instant::now() + timeout;
    loop {
        if cond().await {
            return true;
        }
        if Instant::now() >= deadline {
            return false;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// True once something accepts TCP connections on `addr`.
pub fn port_open(addr: SocketAddr) -> bool {
    TcpStream::connect_timeout(&addr, Duration::from_millis(200)).is_ok()
}

/// Finds an executable on PATH or in the usual Debian locations.
pub fn find_program(name: &str) -> Option<PathBuf> {
    let path = std::env::var_os("PATH").unwrap_or_default();
    std::env::split_paths(&path)
        .chain(
            ["/usr/sbin", "/usr/bin", "/usr/local/bin"]
                .iter()
                .map(PathBuf::from),
        )
        .map(|d| d.join(name))
        .find(|p| p.is_file())
}

/// The `homeostat` binary of this workspace (built by the test command).
pub fn homeostat_bin() -> PathBuf {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("workspace root");
    let target = std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| root.join("target"));
    for profile in ["debug", "release"] {
        let p = target.join(profile).join("homeostat");
        if p.is_file() {
            return p;
        }
    }
    panic!(
        "homeostat binary not found under {}: run `cargo build --workspace --bins` first (scripts/test.sh does)",
        target.display()
    );
}

/// A real server process: output captured to files in its own temp dir,
/// stopped with SIGTERM (then SIGKILL) when dropped.
pub struct ServerProcess {
    pub name: String,
    pub child: Option<Child>,
    pub dir: TempDir,
    pub log_path: PathBuf,
    /// Other directories the server uses (data, config), removed with it.
    pub keep: Vec<TempDir>,
}

impl ServerProcess {
    pub fn spawn(
        name: &str,
        program: &Path,
        args: &[&str],
        envs: &[(&str, &str)],
    ) -> std::io::Result<Self> {
        let dir = temp_dir();
        let log_path = dir.path().join(format!("{name}.log"));
        let log = std::fs::File::create(&log_path)?;
        let mut cmd = Command::new(program);
        cmd.args(args)
            .stdin(Stdio::null())
            .stdout(log.try_clone()?)
            .stderr(log);
        for (k, v) in envs {
            cmd.env(k, v);
        }
        let child = cmd.spawn()?;
        Ok(ServerProcess {
            name: name.to_string(),
            child: Some(child),
            dir,
            log_path,
            keep: Vec::new(),
        })
    }

    pub fn pid(&self) -> u32 {
        self.child.as_ref().map(|c| c.id()).unwrap_or(0)
    }

    /// What the process printed so far.
    pub fn log(&self) -> String {
        std::fs::read_to_string(&self.log_path).unwrap_or_default()
    }

    /// Waits until `addr` accepts connections, failing with the server's log
    /// if it exits or the timeout passes.
    pub async fn wait_for_port(&mut self, addr: SocketAddr, timeout: Duration) {
        let ok = wait_until(timeout, || {
            let alive = self
                .child
                .as_mut()
                .map(|c| matches!(c.try_wait(), Ok(None)))
                .unwrap_or(false);
            async move { !alive || port_open(addr) }
        })
        .await;
        let alive = self
            .child
            .as_mut()
            .map(|c| matches!(c.try_wait(), Ok(None)))
            .unwrap_or(false);
        assert!(
            ok && alive && port_open(addr),
            "{} did not start listening on {addr}; log:\n{}",
            self.name,
            self.log()
        );
    }

    pub fn signal(&self, sig: i32) {
        // SAFETY: kill(2) with a pid we own.
        unsafe {
            libc_kill(self.pid() as i32, sig);
        }
    }

    /// SIGTERM, then SIGKILL after `grace`; returns the exit status.
    pub fn stop(&mut self, grace: Duration) -> Option<std::process::ExitStatus> {
        let mut child = self.child.take()?;
        if let Ok(Some(st)) = child.try_wait() {
            return Some(st);
        }
        // SAFETY: as above.
        unsafe {
            libc_kill(child.id() as i32, 15);
        }
        let deadline = Instant::now() + grace;
        while Instant::now() < deadline {
            if let Ok(Some(st)) = child.try_wait() {
                return Some(st);
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        let _ = child.kill();
        child.wait().ok()
    }
}

impl Drop for ServerProcess {
    fn drop(&mut self) {
        self.stop(Duration::from_secs(5));
    }
}

extern "C" {
    #[link_name = "kill"]
    fn libc_kill(pid: i32, sig: i32) -> i32;
}

pub const SIGHUP: i32 = 1;
pub const SIGKILL: i32 = 9;
pub const SIGTERM: i32 = 15;

/// What a [`TestTarget`] does with the next scrape.
#[derive(Clone)]
pub enum Behavior {
    /// 200 with this body as Prometheus text format.
    Text(String),
    /// 200 with this body as OpenMetrics.
    OpenMetrics(String),
    /// 200 with this body gzip-compressed (`Content-Encoding: gzip`).
    Gzip(String),
    /// Answer only after this long.
    Hang(Duration),
    /// Respond with this HTTP status and no body.
    Status(u16),
    /// 200 with a text-format body computed at scrape time (counters that
    /// grow with the wall clock, for rate()).
    Generated(Arc<dyn Fn() -> String + Send + Sync>),
}

/// A scrape target served by the test, switchable between behaviours at run
/// time; [`TestTarget::close`] makes it disappear (connection refused).
pub struct TestTarget {
    pub addr: SocketAddr,
    behavior: Arc<Mutex<Behavior>>,
    scrapes: Arc<Mutex<u64>>,
    task: tokio::task::JoinHandle<()>,
}

impl TestTarget {
    pub async fn start(behavior: Behavior) -> TestTarget {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind target");
        let addr = listener.local_addr().expect("target addr");
        let behavior = Arc::new(Mutex::new(behavior));
        let scrapes = Arc::new(Mutex::new(0));
        let (b, s) = (behavior.clone(), scrapes.clone());
        let task = tokio::spawn(async move {
            while let Ok((mut sock, _)) = listener.accept().await {
                let (b, s) = (b.clone(), s.clone());
                tokio::spawn(async move {
                    let mut buf = vec![0u8; 8192];
                    let mut got = 0;
                    loop {
                        match sock.read(&mut buf[got..]).await {
                            Ok(0) | Err(_) => return,
                            Ok(n) => got += n,
                        }
                        if buf[..got].windows(4).any(|w| w == b"\r\n\r\n") || got == buf.len() {
                            break;
                        }
                    }
                    *s.lock().unwrap() += 1;
                    let behavior = b.lock().unwrap().clone();
                    let (status, ctype, enc, body): (u16, &str, Option<&str>, Vec<u8>) =
                        match behavior {
                            Behavior::Text(t) => (
                                200,
                                "text/plain; version=0.0.4; charset=utf-8",
                                None,
                                t.into_bytes(),
                            ),
                            Behavior::OpenMetrics(t) => (
                                200,
                                "application/openmetrics-text; version=1.0.0; charset=utf-8",
                                None,
                                t.into_bytes(),
                            ),
                            Behavior::Gzip(t) => {
                                let mut enc = flate2::write::GzEncoder::new(
                                    Vec::new(),
                                    flate2::Compression::default(),
                                );
                                let _ = enc.write_all(t.as_bytes());
                                (
                                    200,
                                    "text/plain; version=0.0.4",
                                    Some("gzip"),
                                    enc.finish().unwrap_or_default(),
                                )
                            }
                            Behavior::Hang(d) => {
                                tokio::time::sleep(d).await;
                                (200, "text/plain", None, b"late_metric 1\n".to_vec())
                            }
                            Behavior::Status(code) => (code, "text/plain", None, Vec::new()),
                            Behavior::Generated(f) => {
                                (200, "text/plain; version=0.0.4", None, f().into_bytes())
                            }
                        };
                    let mut head = format!(
                        "HTTP/1.1 {status} X\r\nContent-Type: {ctype}\r\nContent-Length: {}\r\nConnection: close\r\n",
                        body.len()
                    );
                    if let Some(e) = enc {
                        head.push_str(&format!("Content-Encoding: {e}\r\n"));
                    }
                    head.push_str("\r\n");
                    let _ = sock.write_all(head.as_bytes()).await;
                    let _ = sock.write_all(&body).await;
                    let _ = sock.shutdown().await;
                });
            }
        });
        TestTarget {
            addr,
            behavior,
            scrapes,
            task,
        }
    }

    pub fn set(&self, b: Behavior) {
        *self.behavior.lock().unwrap() = b;
    }

    pub fn scrapes(&self) -> u64 {
        *self.scrapes.lock().unwrap()
    }

    /// Stops listening: later scrapes get "connection refused".
    pub fn close(&self) {
        self.task.abort();
    }
}

impl Drop for TestTarget {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// Seconds since the Unix epoch, as a float.
pub fn unix_now() -> f64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs_f64())
        .unwrap_or(0.0)
}

/// The first of `names` on the PATH; `None` with a loud SKIP line when none
/// is installed, and a failure under CI, whose `.ci/run` must install
/// `package`.
pub fn required_program(names: &[&str], package: &str) -> Option<PathBuf> {
    let found = names.iter().find_map(|n| find_program(n));
    if found.is_none() {
        assert!(
            std::env::var_os("CI").is_none(),
            "{} is not installed but CI=true: .ci/run must install the Debian package {package}",
            names[0]
        );
        eprintln!(
            "SKIP: {} not installed (apt-get install {package}); this comparison is skipped",
            names[0]
        );
    }
    found
}

/// Starts a Debian-packaged server on a free port with `config` written to
/// `config_name` in its own temp dir; `args` gets the config path, the data
/// dir and the listen address.
async fn start_packaged(
    names: &[&str],
    package: &str,
    config_name: &str,
    config: &str,
    args: impl Fn(&Path, &Path, SocketAddr) -> Vec<String>,
) -> Option<(ServerProcess, SocketAddr)> {
    let bin = required_program(names, package)?;
    let addr: SocketAddr = format!("127.0.0.1:{}", free_port()).parse().ok()?;
    let dir = temp_dir();
    let cfg = dir.path().join(config_name);
    std::fs::write(&cfg, config).ok()?;
    let args = args(&cfg, &dir.path().join("data"), addr);
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let mut p = ServerProcess::spawn(names[0], &bin, &args, &[]).ok()?;
    p.keep.push(dir);
    p.wait_for_port(addr, Duration::from_secs(30)).await;
    Some((p, addr))
}

/// The real Prometheus (Debian package `prometheus`) with `config` as its
/// prometheus.yml, on a free port with its own data dir; `None` with a loud
/// note when it is not installed (CI installs it, so there it must exist).
pub async fn start_prometheus(config: &str) -> Option<(ServerProcess, SocketAddr)> {
    start_packaged(
        &["prometheus"],
        "prometheus",
        "prometheus.yml",
        config,
        |cfg, data, addr| {
            vec![
                format!("--config.file={}", cfg.display()),
                format!("--storage.tsdb.path={}", data.display()),
                format!("--web.listen-address={addr}"),
            ]
        },
    )
    .await
}

/// A blocking HTTP GET for tests that run outside an async context.
pub fn http_get(addr: SocketAddr, path: &str) -> std::io::Result<String> {
    let mut s = TcpStream::connect_timeout(&addr, Duration::from_secs(2))?;
    s.set_read_timeout(Some(Duration::from_secs(10)))?;
    write!(s, "GET {path} HTTP/1.0\r\nHost: {addr}\r\n\r\n")?;
    let mut out = String::new();
    s.read_to_string(&mut out)?;
    Ok(out)
}

/// The real Alertmanager (Debian package `prometheus-alertmanager`) with
/// `config` as its alertmanager.yml, on a free port, clustering off; `None`
/// with a loud note when it is not installed (CI installs it).
pub async fn start_alertmanager(config: &str) -> Option<(ServerProcess, SocketAddr)> {
    start_packaged(
        &["prometheus-alertmanager", "alertmanager"],
        "prometheus-alertmanager",
        "alertmanager.yml",
        config,
        |cfg, data, addr| {
            vec![
                format!("--config.file={}", cfg.display()),
                format!("--storage.path={}", data.display()),
                format!("--web.listen-address={addr}"),
                "--cluster.listen-address=".to_string(),
            ]
        },
    )
    .await
}

/// GET `url` and parse the body as JSON (panics with the body otherwise).
pub async fn get_json(url: &str) -> serde_json::Value {
    let body = reqwest::get(url)
        .await
        .unwrap_or_else(|e| panic!("GET {url}: {e}"))
        .text()
        .await
        .unwrap_or_default();
    serde_json::from_str(&body).unwrap_or_else(|e| panic!("GET {url}: not JSON ({e}): {body}"))
}

/// A running `homeostat run` on a free port with `config` (which must use
/// `{listen}` for `web.listen_address` and `{state}` for the database path).
pub struct Homeostat {
    pub process: ServerProcess,
    pub addr: SocketAddr,
    pub dir: TempDir,
    env: Vec<(String, String)>,
    /// Runs as `nobody` (uid and gid 65534) when the tests run as root.
    unprivileged: bool,
}

impl Homeostat {
    pub async fn start(config: &str) -> Homeostat {
        Self::start_with_env(config, &[]).await
    }

    /// As [`Homeostat::start`], but as an unprivileged user: `nobody`
    /// through `setpriv` when the tests run as root (CI), else the user
    /// running them. Its directory (state database, config) is opened to
    /// every user.
    pub async fn start_unprivileged(config: &str) -> Homeostat {
        Self::start_inner(config, &[], true).await
    }

    /// As [`Homeostat::start`], with extra environment variables.
    pub async fn start_with_env(config: &str, env: &[(&str, &str)]) -> Homeostat {
        Self::start_inner(config, env, false).await
    }

    async fn start_inner(config: &str, env: &[(&str, &str)], unprivileged: bool) -> Homeostat {
        let dir = temp_dir();
        let addr: SocketAddr = format!("127.0.0.1:{}", free_port()).parse().expect("addr");
        let cfg = config.replace("{listen}", &addr.to_string()).replace(
            "{state}",
            &dir.path().join("state.db").display().to_string(),
        );
        let path = dir.path().join("homeostat.yaml");
        std::fs::write(&path, cfg).expect("write config");
        let env: Vec<(String, String)> = env
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        if unprivileged {
            use std::os::unix::fs::PermissionsExt;
            std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o777))
                .expect("open the daemon's directory to every user");
        }
        let process = Self::spawn(&dir, addr, &env, unprivileged).await;
        Homeostat {
            process,
            addr,
            dir,
            env,
            unprivileged,
        }
    }

    async fn spawn(
        dir: &TempDir,
        addr: SocketAddr,
        env: &[(String, String)],
        unprivileged: bool,
    ) -> ServerProcess {
        let path = dir.path().join("homeostat.yaml").display().to_string();
        let env: Vec<(&str, &str)> = env.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
        let bin = homeostat_bin();
        let bin_s = bin.display().to_string();
        let (program, args): (PathBuf, Vec<&str>) = if unprivileged && db::is_root() {
            (
                PathBuf::from("setpriv"),
                vec![
                    "--reuid=65534",
                    "--regid=65534",
                    "--clear-groups",
                    "--",
                    &bin_s,
                    "run",
                    "--config",
                    &path,
                ],
            )
        } else {
            (bin, vec!["run", "--config", &path])
        };
        let mut process = ServerProcess::spawn(
            "homeostat",
            &program,
            &args,
            &[&[("HOMEOSTAT_LOG_LEVEL", "info")], env.as_slice()].concat(),
        )
        .expect("spawn homeostat");
        process.wait_for_port(addr, Duration::from_secs(30)).await;
        process
    }

    /// Kills the daemon with SIGKILL (no chance to clean up) and starts it
    /// again on the same config, state database and port.
    pub async fn kill_and_restart(&mut self) {
        self.process.signal(9);
        self.process.stop(Duration::from_secs(5));
        self.process = Self::spawn(&self.dir, self.addr, &self.env, self.unprivileged).await;
    }

    /// Stops the daemon cleanly (SIGTERM) and starts it again.
    pub async fn restart(&mut self) {
        self.process.stop(Duration::from_secs(10));
        self.process = Self::spawn(&self.dir, self.addr, &self.env, self.unprivileged).await;
    }

    /// POSTs JSON to the API from loopback; returns the status and body.
    pub async fn post(&self, path: &str, body: serde_json::Value) -> (u16, serde_json::Value) {
        let rsp = reqwest::Client::new()
            .post(format!("http://{}{path}", self.addr))
            .header("X-Homeostat-User", "e2e")
            .json(&body)
            .timeout(Duration::from_secs(30))
            .send()
            .await
            .expect("POST to homeostat");
        let status = rsp.status().as_u16();
        (status, rsp.json().await.unwrap_or(serde_json::Value::Null))
    }

    /// Runs of `playbook`, newest first.
    pub async fn runs(&self, playbook: &str) -> Vec<serde_json::Value> {
        let v = get_json(&format!(
            "http://{}/api/v1/runs?playbook={}",
            self.addr,
            form_urlencode(playbook)
        ))
        .await;
        v["data"].as_array().cloned().unwrap_or_default()
    }

    /// One run with its steps and audit trail.
    pub async fn run(&self, id: &str) -> serde_json::Value {
        get_json(&format!("http://{}/api/v1/runs/{id}", self.addr)).await["data"].clone()
    }

    /// Waits until run `id` is in one of `states`; returns it with steps.
    pub async fn wait_run_state(
        &self,
        id: &str,
        states: &[&str],
        timeout: Duration,
    ) -> serde_json::Value {
        let deadline = Instant::now() + timeout;
        loop {
            let r = self.run(id).await;
            if states.iter().any(|s| r["state"] == *s) {
                return r;
            }
            if Instant::now() > deadline {
                panic!(
                    "run {id} not in {states:?} within {timeout:?}: {r:#}\nlog:\n{}",
                    self.process.log()
                );
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// An instant query's result vector: (labels, value) per series.
    pub async fn query(
        &self,
        promql: &str,
    ) -> Vec<(serde_json::Map<String, serde_json::Value>, f64)> {
        let url = format!(
            "http://{}/api/v1/query?query={}",
            self.addr,
            form_urlencode(promql)
        );
        let v = get_json(&url).await;
        assert_eq!(v["status"], "success", "query {promql}: {v}");
        v["data"]["result"]
            .as_array()
            .cloned()
            .unwrap_or_default()
            .into_iter()
            .map(|r| {
                let labels = r["metric"].as_object().cloned().unwrap_or_default();
                let value = r["value"][1]
                    .as_str()
                    .and_then(|s| s.parse::<f64>().ok())
                    .unwrap_or(f64::NAN);
                (labels, value)
            })
            .collect()
    }

    /// The single value of `promql`, once it has one, waiting up to `timeout`.
    pub async fn wait_value(&self, promql: &str, timeout: Duration) -> Option<f64> {
        let deadline = Instant::now() + timeout;
        loop {
            let r = self.query(promql).await;
            if let Some((_, v)) = r.first() {
                return Some(*v);
            }
            if Instant::now() > deadline {
                return None;
            }
            tokio::time::sleep(Duration::from_millis(250)).await;
        }
    }

    /// Active targets of `job` from `/api/v1/targets`.
    pub async fn targets(&self, job: &str) -> Vec<serde_json::Value> {
        let v = get_json(&format!("http://{}/api/v1/targets", self.addr)).await;
        v["data"]["activeTargets"]
            .as_array()
            .cloned()
            .unwrap_or_default()
            .into_iter()
            .filter(|t| t["labels"]["job"] == job)
            .collect()
    }

    /// Waits until the target of `job` with this `instance` has been scraped
    /// and has `health`, returning it.
    pub async fn wait_target(
        &self,
        job: &str,
        instance: &str,
        health: &str,
        timeout: Duration,
    ) -> serde_json::Value {
        let deadline = Instant::now() + timeout;
        loop {
            let t = self
                .targets(job)
                .await
                .into_iter()
                .find(|t| t["labels"]["instance"] == instance);
            if let Some(t) = &t {
                if t["health"] == health {
                    return t.clone();
                }
            }
            assert!(
                Instant::now() < deadline,
                "target {job}/{instance} never became {health}: {t:?}\nlog:\n{}",
                self.process.log()
            );
            tokio::time::sleep(Duration::from_millis(250)).await;
        }
    }
}

/// Percent-encodes a query parameter value.
pub fn form_urlencode(s: &str) -> String {
    let mut out = String::with_capacity(s.len() * 3);
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.' | b'~') {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

/// A programmed failure a notification stand-in (Slack, PagerDuty) gives
/// instead of its normal answer; see `fail_next` on each.
#[derive(Debug, Clone, PartialEq)]
pub enum Fail {
    /// 429 with `Retry-After: retry_after_s`.
    RateLimited { retry_after_s: u64 },
    /// This HTTP status with the service's usual error body.
    Status(u16),
    /// Answer (normally) only after this long, to exercise client timeouts.
    Hang(Duration),
    /// Close the connection without answering.
    Drop,
}

/// One request a [`Sink`] received.
#[derive(Debug, Clone)]
pub struct SinkRequest {
    pub method: String,
    /// Path and query as sent.
    pub path: String,
    /// Header names lower-cased; repeated headers joined with ", ".
    pub headers: std::collections::BTreeMap<String, String>,
    /// The raw body, byte for byte (for signature checks).
    pub body: Vec<u8>,
    /// The body parsed as JSON, `Null` when it is not JSON.
    pub json: serde_json::Value,
}

/// An HTTP endpoint that records every JSON body POSTed to it (escalation
/// webhooks, orchestrator calls), with its path and headers; stops when
/// dropped.
pub struct Sink {
    pub addr: SocketAddr,
    requests: Arc<Mutex<Vec<SinkRequest>>>,
    server: tokio::task::JoinHandle<()>,
}

impl Sink {
    pub async fn start() -> Sink {
        let requests: Arc<Mutex<Vec<SinkRequest>>> = Default::default();
        let r = requests.clone();
        let app = axum::Router::new().fallback(
            move |method: axum::http::Method,
                  uri: axum::http::Uri,
                  headers: axum::http::HeaderMap,
                  body: axum::body::Bytes| {
                let r = r.clone();
                async move {
                    let json = serde_json::from_slice(&body).unwrap_or(serde_json::Value::Null);
                    let req = SinkRequest {
                        method: method.to_string(),
                        path: uri
                            .path_and_query()
                            .map(|p| p.as_str().to_string())
                            .unwrap_or_else(|| uri.path().to_string()),
                        headers: header_map(&headers),
                        body: body.to_vec(),
                        json,
                    };
                    r.lock()
                        .unwrap_or_else(std::sync::PoisonError::into_inner)
                        .push(req);
                    "ok"
                }
            },
        );
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind sink");
        let addr = listener.local_addr().expect("sink addr");
        let server = tokio::spawn(async move {
            let _ = axum::serve(listener, app).await;
        });
        Sink {
            addr,
            requests,
            server,
        }
    }

    pub fn url(&self) -> String {
        format!("http://{}/", self.addr)
    }

    /// The JSON bodies received, in arrival order.
    pub fn bodies(&self) -> Vec<serde_json::Value> {
        self.requests().into_iter().map(|r| r.json).collect()
    }

    /// Every request received, in arrival order.
    pub fn requests(&self) -> Vec<SinkRequest> {
        self.requests
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .clone()
    }

    /// The requests whose path is `path` (query ignored).
    pub fn requests_to(&self, path: &str) -> Vec<SinkRequest> {
        self.requests()
            .into_iter()
            .filter(|r| r.path.split('?').next() == Some(path))
            .collect()
    }
}

impl Drop for Sink {
    fn drop(&mut self) {
        self.server.abort();
    }
}

/// Headers as a map of lower-cased names (repeats joined with ", ").
pub fn header_map(headers: &axum::http::HeaderMap) -> std::collections::BTreeMap<String, String> {
    let mut out = std::collections::BTreeMap::<String, String>::new();
    for (k, v) in headers {
        let v = String::from_utf8_lossy(v.as_bytes()).into_owned();
        out.entry(k.as_str().to_ascii_lowercase())
            .and_modify(|e| {
                e.push_str(", ");
                e.push_str(&v);
            })
            .or_insert(v);
    }
    out
}

/// The value of sample `name{labels}` in a Prometheus/OpenMetrics text
/// exposition, where `labels` must all be present on the sample (others
/// may be too); the sum over matching samples, `None` when none matches.
pub fn metric_sum(text: &str, name: &str, labels: &[(&str, &str)]) -> Option<f64> {
    let mut found = None;
    for line in text.lines() {
        if line.starts_with('#') {
            continue;
        }
        // `name{labels} value [timestamp]` or `name value [timestamp]`;
        // label values may hold spaces, so split after the closing brace.
        let (metric, lbls, rest) = match (line.find('{'), line.rfind('}')) {
            (Some(open), Some(close)) if open < close => {
                (&line[..open], &line[open + 1..close], &line[close + 1..])
            }
            _ => match line.split_once(char::is_whitespace) {
                Some((m, r)) => (m, "", r),
                None => continue,
            },
        };
        let Some(value) = rest.split_whitespace().next() else {
            continue;
        };
        if metric != name {
            continue;
        }
        if labels
            .iter()
            .all(|(k, v)| lbls.split(',').any(|p| p.trim() == format!("{k}=\"{v}\"")))
        {
            if let Ok(v) = value.parse::<f64>() {
                *found.get_or_insert(0.0) += v;
            }
        }
    }
    found
}
