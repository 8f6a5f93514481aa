//! Collectors that read this host or probe URLs: GPUs through a fake
//! `libnvidia-ml.so` built here from C, the machine's own cgroup v2 tree, and
//! blackbox-style HTTP probes against local servers (HTTPS included).

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use homeostat_e2e::{temp_dir, Behavior, Homeostat, ServerProcess, TestTarget};

const T: Duration = Duration::from_secs(30);

/// Builds the fake NVML library (tests/testdata/fake_nvml) into `dir`.
fn build_fake_nvml(dir: &Path) -> PathBuf {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("testdata/fake_nvml/fake_nvml.c");
    let out = dir.join("libnvidia-ml.so.1");
    let st = Command::new("cc")
        .args(["-shared", "-fPIC", "-O0", "-o"])
        .arg(&out)
        .arg(&src)
        .status()
        .expect("cc (Debian gcc) is needed to build the fake NVML library");
    assert!(st.success(), "building {}", src.display());
    out
}

fn gpu_config(lib: &Path, timeout: &str) -> String {
    format!(
        r#"
web:
  listen_address: {{listen}}
state:
  path: {{state}}
collectors:
  gpu:
    scrape_interval: 1s
    scrape_timeout: {timeout}
    library_path: {}
"#,
        lib.display()
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn gpu_series_from_the_fake_nvml_library() {
    let dir = temp_dir();
    let lib = build_fake_nvml(dir.path());
    let h = Homeostat::start(&gpu_config(&lib, "900ms")).await;
    let tg = h.wait_target("gpu", "localhost", "up", T).await;
    const H100: &str = r#"gpu="0",UUID="GPU-00000000-1111-2222-3333-444444444444",modelName="NVIDIA H100 80GB HBM3",pci_bus_id="00000000:17:00.0""#;
    for (expr, want) in [
        (format!("DCGM_FI_DEV_GPU_UTIL{{{H100}}}"), 87.0),
        (format!("DCGM_FI_DEV_MEM_COPY_UTIL{{{H100}}}"), 43.0),
        (format!("DCGM_FI_DEV_FB_USED{{{H100}}}"), 61440.0),
        (format!("DCGM_FI_DEV_FB_FREE{{{H100}}}"), 19607.0),
        (format!("DCGM_FI_DEV_FB_TOTAL{{{H100}}}"), 81559.0),
        (format!("DCGM_FI_DEV_GPU_TEMP{{{H100}}}"), 71.0),
        (format!("DCGM_FI_DEV_POWER_USAGE{{{H100}}}"), 312.5),
        (format!("DCGM_FI_DEV_POWER_MGMT_LIMIT{{{H100}}}"), 700.0),
        (format!("DCGM_FI_DEV_SM_CLOCK{{{H100}}}"), 1980.0),
        (format!("DCGM_FI_DEV_FAN_SPEED{{{H100}}}"), 35.0),
        (
            format!("DCGM_FI_DEV_PCIE_TX_THROUGHPUT{{{H100}}}"),
            123456.0,
        ),
        (format!("DCGM_FI_DEV_ECC_SBE_AGG_TOTAL{{{H100}}}"), 17.0),
        (format!("DCGM_FI_DEV_ECC_DBE_AGG_TOTAL{{{H100}}}"), 1.0),
        (format!("DCGM_FI_DEV_CLOCK_THROTTLE_REASONS{{{H100}}}"), 4.0),
        (
            r#"homeostat_gpu_throttle_active{gpu="0",reason="sw_power_cap"}"#.into(),
            1.0,
        ),
        (
            r#"homeostat_gpu_throttle_active{gpu="0",reason="hw_slowdown"}"#.into(),
            0.0,
        ),
        (r#"DCGM_FI_DEV_RETIRED_SBE{gpu="0"}"#.into(), 2.0),
        (r#"DCGM_FI_DEV_XID_ERRORS{gpu="0"}"#.into(), 79.0),
        (
            r#"homeostat_gpu_xid_errors_total{gpu="0",xid="79"}"#.into(),
            1.0,
        ),
        (
            r#"homeostat_gpu_process_used_memory_bytes{gpu="0",pid="4242"}"#.into(),
            64424509440.0,
        ),
        (
            r#"DCGM_FI_DEV_GPU_UTIL{gpu="1",modelName="NVIDIA A100-SXM4-40GB"}"#.into(),
            5.0,
        ),
        (
            r#"homeostat_gpu_info{driver_version="550.54.15"}"#.into(),
            1.0,
        ),
    ] {
        let v = h.wait_value(&expr, T).await;
        assert_eq!(v, Some(want), "{expr}\nlog:\n{}", h.process.log());
    }
    // GPU 1 does not support fans or ECC (absent, silently) and fails its
    // temperature read (absent, and named in the target's last error).
    for absent in [
        r#"DCGM_FI_DEV_FAN_SPEED{gpu="1"}"#,
        r#"DCGM_FI_DEV_ECC_SBE_VOL_TOTAL{gpu="1"}"#,
        r#"DCGM_FI_DEV_GPU_TEMP{gpu="1"}"#,
    ] {
        assert!(
            h.query(absent).await.is_empty(),
            "{absent} should be absent"
        );
    }
    let err = tg["lastError"].as_str().unwrap_or_default();
    assert!(
        err.contains("gpu 1: temperature"),
        "the failing field is reported: {err:?}"
    );
    assert!(
        !err.contains("fan"),
        "unsupported fields are not errors: {err:?}"
    );
    // The XID event is counted once, not once per scrape.
    tokio::time::sleep(Duration::from_secs(2)).await;
    let v = h
        .query(r#"homeostat_gpu_xid_errors_total{gpu="0",xid="79"}"#)
        .await;
    assert_eq!(v.first().map(|x| x.1), Some(1.0));
}

/// MIG: each GPU instance gets the readings NVML answers on its handle, with
/// `GPU_I_ID` and `GPU_I_PROFILE`; board-wide readings stay on the parent.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn gpu_mig_instances() {
    let dir = temp_dir();
    let lib = build_fake_nvml(dir.path());
    let h =
        Homeostat::start_with_env(&gpu_config(&lib, "900ms"), &[("FAKE_NVML_MODE", "mig")]).await;
    h.wait_target("gpu", "localhost", "up", T).await;
    for (expr, want) in [
        (
            r#"DCGM_FI_DEV_FB_USED{gpu="0",GPU_I_ID="1",GPU_I_PROFILE="3g.40gb",modelName="NVIDIA H100 80GB HBM3"}"#,
            30720.0,
        ),
        (r#"DCGM_FI_DEV_FB_FREE{gpu="0",GPU_I_ID="2"}"#, 39168.0),
        (r#"DCGM_FI_DEV_FB_TOTAL{gpu="0",GPU_I_ID="2"}"#, 40192.0),
        (r#"DCGM_FI_DEV_GPU_UTIL{gpu="0",GPU_I_ID="1"}"#, 60.0),
        (r#"DCGM_FI_DEV_MEM_COPY_UTIL{gpu="0",GPU_I_ID="1"}"#, 25.0),
        // The whole board, without instance labels.
        (r#"DCGM_FI_DEV_FB_USED{gpu="0",GPU_I_ID=""}"#, 61440.0),
        (r#"DCGM_FI_DEV_POWER_USAGE{gpu="0",GPU_I_ID=""}"#, 312.5),
        (
            r#"homeostat_gpu_process_used_memory_bytes{gpu="0",GPU_I_ID="1",pid="4242"}"#,
            32212254720.0,
        ),
        (
            r#"homeostat_gpu_process_used_memory_bytes{gpu="0",GPU_I_ID="2",pid="4343"}"#,
            536870912.0,
        ),
    ] {
        let v = h.wait_value(expr, T).await;
        assert_eq!(v, Some(want), "{expr}\nlog:\n{}", h.process.log());
    }
    // Utilization where NVML does not report it (instance 2, and the
    // MIG-enabled board itself), and board-wide readings per instance: absent.
    for absent in [
        r#"DCGM_FI_DEV_GPU_UTIL{gpu="0",GPU_I_ID="2"}"#,
        r#"DCGM_FI_DEV_GPU_UTIL{gpu="0",GPU_I_ID=""}"#,
        r#"DCGM_FI_DEV_GPU_TEMP{GPU_I_ID!=""}"#,
        r#"DCGM_FI_DEV_POWER_USAGE{GPU_I_ID!=""}"#,
    ] {
        assert!(
            h.query(absent).await.is_empty(),
            "{absent} should be absent"
        );
    }
    // Two instances on GPU 0, none on GPU 1.
    assert_eq!(
        h.wait_value(r#"count(DCGM_FI_DEV_FB_USED{GPU_I_ID!=""})"#, T)
            .await,
        Some(2.0)
    );
    let tg = h.wait_target("gpu", "localhost", "up", T).await;
    let err = tg["lastError"].as_str().unwrap_or_default();
    assert!(
        !err.contains("mig") && !err.contains("utilization"),
        "what a MIG handle cannot report is not an error: {err:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn gpu_failures_are_up_0_with_a_reason_and_the_daemon_runs_on() {
    let dir = temp_dir();
    let lib = build_fake_nvml(dir.path());
    // Driver not loaded.
    let h = Homeostat::start_with_env(
        &gpu_config(&lib, "900ms"),
        &[("FAKE_NVML_MODE", "init_fail")],
    )
    .await;
    let tg = h.wait_target("gpu", "localhost", "down", T).await;
    assert!(
        tg["lastError"]
            .as_str()
            .unwrap_or_default()
            .contains("driver is not loaded"),
        "{tg}"
    );
    // The device files are not ours to open.
    let denied = Homeostat::start_with_env(
        &gpu_config(&lib, "900ms"),
        &[("FAKE_NVML_MODE", "no_permission")],
    )
    .await;
    let tg = denied.wait_target("gpu", "localhost", "down", T).await;
    assert!(
        tg["lastError"]
            .as_str()
            .unwrap_or_default()
            .contains("no permission to talk to the NVIDIA driver"),
        "{tg}"
    );
    drop(denied);
    // One GPU falls off the bus: the other is still read, the target stays
    // up, and the lost GPU is named once in the reason.
    let lost = Homeostat::start_with_env(
        &gpu_config(&lib, "900ms"),
        &[("FAKE_NVML_MODE", "gpu1_lost")],
    )
    .await;
    assert_eq!(
        lost.wait_value(r#"DCGM_FI_DEV_GPU_UTIL{gpu="0"}"#, T).await,
        Some(87.0)
    );
    let tg = lost.wait_target("gpu", "localhost", "up", T).await;
    let err = tg["lastError"].as_str().unwrap_or_default();
    assert!(
        err.contains("gpu 1:") && err.contains("fell off the bus"),
        "{err:?}"
    );
    assert_eq!(
        err.matches("gpu 1:").count(),
        1,
        "one line per lost GPU: {err:?}"
    );
    assert!(lost
        .query(r#"DCGM_FI_DEV_GPU_UTIL{gpu="1"}"#)
        .await
        .is_empty());
    drop(lost);
    // No driver at all.
    let none = Homeostat::start(&gpu_config(
        &dir.path().join("missing/libnvidia-ml.so.1"),
        "900ms",
    ))
    .await;
    let tg = none.wait_target("gpu", "localhost", "down", T).await;
    assert!(
        tg["lastError"]
            .as_str()
            .unwrap_or_default()
            .contains("no NVIDIA driver"),
        "{tg}"
    );
    assert!(
        homeostat_e2e::http_get(none.addr, "/-/healthy")
            .map(|r| r.contains("200"))
            .unwrap_or(false),
        "the daemon keeps running without a GPU"
    );
    // A driver that hangs: the round times out, and the next rounds fail
    // fast instead of piling up behind the stuck call.
    let hang =
        Homeostat::start_with_env(&gpu_config(&lib, "500ms"), &[("FAKE_NVML_MODE", "hang")]).await;
    let tg = hang.wait_target("gpu", "localhost", "down", T).await;
    let err = tg["lastError"].as_str().unwrap_or_default().to_string();
    assert!(
        err.contains("timed out") || err.contains("still waiting"),
        "{err}"
    );
    tokio::time::sleep(Duration::from_secs(2)).await;
    let tg = hang.wait_target("gpu", "localhost", "down", T).await;
    assert!(
        tg["lastError"]
            .as_str()
            .unwrap_or_default()
            .contains("still waiting"),
        "{tg}"
    );
    assert!(
        tg["lastScrapeDuration"].as_f64().unwrap_or(9.0) < 0.5,
        "later rounds fail fast: {tg}"
    );
    // The GPU's log line is said once, not every second.
    let log = hang.process.log();
    assert!(
        log.matches("still waiting").count() <= 2,
        "the reason is logged once per change:\n{log}"
    );
}

/// The cgroup v2 mount of this machine, if any.
fn cgroup2_root() -> Option<PathBuf> {
    ["/sys/fs/cgroup", "/sys/fs/cgroup/unified"]
        .iter()
        .map(PathBuf::from)
        .find(|p| p.join("cgroup.controllers").exists())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cgroups_of_this_machine() {
    let Some(root) = cgroup2_root() else {
        eprintln!("SKIP: this machine has no cgroup v2 hierarchy; the unit tests cover the parser");
        return;
    };
    // Our own group with a busy process in it, when the tree lets us make
    // one (root on a writable cgroupfs); otherwise the root group alone.
    let name = format!("homeostat-e2e-{}", std::process::id());
    let group = root.join(&name);
    let mut busy = None;
    if std::fs::create_dir(&group).is_ok() {
        let child = Command::new("sh")
            .args(["-c", "while :; do :; done"])
            .spawn()
            .expect("spawn busy loop");
        if std::fs::write(group.join("cgroup.procs"), child.id().to_string()).is_ok() {
            busy = Some(child);
        } else {
            let mut c = child;
            let _ = c.kill();
            let _ = c.wait();
        }
    }
    let config = r#"
web:
  listen_address: {listen}
state:
  path: {state}
collectors:
  cgroups:
    scrape_interval: 1s
    max_depth: 1
  http_probes:
    targets: []
  redis:
    servers: []
"#;
    let h = Homeostat::start(config).await;
    h.wait_target("cgroups", "localhost", "up", T).await;
    let rootv = h
        .wait_value(
            r#"container_cpu_usage_seconds_total{job="cgroups",id="/"}"#,
            T,
        )
        .await;
    assert!(rootv.unwrap_or(0.0) > 0.0, "root group CPU: {rootv:?}");
    if let Some(mut child) = busy {
        let expr = format!(r#"rate(container_cpu_usage_seconds_total{{id="/{name}"}}[3s])"#);
        let ok = homeostat_e2e::wait_until(T, || async {
            h.query(&expr)
                .await
                .first()
                .map(|x| x.1 > 0.5)
                .unwrap_or(false)
        })
        .await;
        let _ = child.kill();
        let _ = child.wait();
        tokio::time::sleep(Duration::from_millis(200)).await;
        let _ = std::fs::remove_dir(&group);
        assert!(
            ok,
            "a busy loop in /{name} should use about one CPU: {:?}",
            h.query(&expr).await
        );
    } else {
        eprintln!("note: cannot create a child cgroup here; checked the root group only");
    }
    // A root that does not exist is the target's error, not a crash.
    let bad = Homeostat::start(
        "web:\n  listen_address: {listen}\nstate:\n  path: {state}\ncollectors:\n  cgroups:\n    scrape_interval: 1s\n    root: /nonexistent/cgroup\n",
    )
    .await;
    let tg = bad.wait_target("cgroups", "localhost", "down", T).await;
    assert!(
        tg["lastError"]
            .as_str()
            .unwrap_or_default()
            .contains("cannot read cgroup root"),
        "{tg}"
    );
}

/// homeostat as an unprivileged user (`nobody` when the tests run as root)
/// over a cgroup v2-shaped tree where one group, then the root itself, is
/// closed to it: the group is named in `lastError` while the rest is read;
/// the root is the target's `up 0`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cgroups_permission_denied() {
    use std::os::unix::fs::PermissionsExt;
    let mode = |p: &Path, m: u32| {
        std::fs::set_permissions(p, std::fs::Permissions::from_mode(m)).expect("chmod")
    };
    let dir = temp_dir();
    mode(dir.path(), 0o755);
    let root = dir.path().join("cg");
    let open = root.join("open.slice");
    let closed = root.join("closed.slice");
    for d in [&open, &closed] {
        std::fs::create_dir_all(d).expect("mkdir");
        std::fs::write(d.join("cpu.stat"), "usage_usec 500000\n").expect("write");
    }
    std::fs::write(root.join("cgroup.controllers"), "cpu memory pids\n").expect("write");
    std::fs::write(root.join("cpu.stat"), "usage_usec 2000000\n").expect("write");
    mode(&closed, 0o000);
    let config = |root: &Path| {
        format!(
            "web:\n  listen_address: {{listen}}\nstate:\n  path: {{state}}\ncollectors:\n  cgroups:\n    scrape_interval: 1s\n    max_depth: 1\n    root: {}\n",
            root.display()
        )
    };
    let h = Homeostat::start_unprivileged(&config(&root)).await;
    assert_eq!(
        h.wait_value(r#"container_cpu_usage_seconds_total{id="/"}"#, T)
            .await,
        Some(2.0)
    );
    assert_eq!(
        h.wait_value(r#"container_cpu_usage_seconds_total{id="/open.slice"}"#, T)
            .await,
        Some(0.5)
    );
    let tg = h.wait_target("cgroups", "localhost", "up", T).await;
    let err = tg["lastError"].as_str().unwrap_or_default();
    assert!(
        err.contains("cgroup /closed.slice") && err.contains("Permission denied"),
        "{err:?}\nlog:\n{}",
        h.process.log()
    );
    assert!(h
        .query(r#"container_cpu_usage_seconds_total{id="/closed.slice"}"#)
        .await
        .is_empty());
    drop(h);
    let h = Homeostat::start_unprivileged(&config(&closed)).await;
    let tg = h.wait_target("cgroups", "localhost", "down", T).await;
    let err = tg["lastError"].as_str().unwrap_or_default();
    assert!(
        err.contains("cannot read cgroup root") && err.contains("Permission denied"),
        "{err:?}"
    );
    drop(h);
    mode(&closed, 0o755);
}

/// A self-signed certificate valid for `days`, and an HTTPS server using it.
async fn https_server(dir: &Path, days: u32) -> Option<(ServerProcess, std::net::SocketAddr)> {
    let openssl = homeostat_e2e::required_program(&["openssl"], "openssl")?;
    let st = Command::new(openssl)
        .current_dir(dir)
        .args([
            "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", "key.pem", "-out",
            "cert.pem",
        ])
        .args([
            "-days",
            &days.to_string(),
            "-subj",
            "/CN=127.0.0.1",
            "-addext",
            "subjectAltName=IP:127.0.0.1",
        ])
        .output()
        .expect("openssl");
    assert!(
        st.status.success(),
        "{}",
        String::from_utf8_lossy(&st.stderr)
    );
    let port = homeostat_e2e::free_port();
    let script = format!(
        "import http.server, ssl\n\
         s = http.server.HTTPServer(('127.0.0.1', {port}), http.server.SimpleHTTPRequestHandler)\n\
         c = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)\n\
         c.load_cert_chain('{d}/cert.pem', '{d}/key.pem')\n\
         s.socket = c.wrap_socket(s.socket, server_side=True)\n\
         s.serve_forever()\n",
        d = dir.display()
    );
    let py = homeostat_e2e::required_program(&["python3"], "python3")?;
    let mut p = ServerProcess::spawn("https", &py, &["-c", &script], &[]).ok()?;
    let addr: std::net::SocketAddr = format!("127.0.0.1:{port}").parse().ok()?;
    p.wait_for_port(addr, T).await;
    Some((p, addr))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn http_probes() {
    let ok = TestTarget::start(Behavior::Text("status: ready\n".into())).await;
    let failing = TestTarget::start(Behavior::Status(503)).await;
    let slow = TestTarget::start(Behavior::Hang(Duration::from_secs(10))).await;
    let closed = homeostat_e2e::free_port();
    let dir = temp_dir();
    let Some((_https, https)) = https_server(dir.path(), 30).await else {
        return;
    };
    let config = format!(
        r#"
web:
  listen_address: {{listen}}
state:
  path: {{state}}
collectors:
  http_probes:
    scrape_interval: 1s
    scrape_timeout: 1s
    targets:
      - url: http://{ok}/ready
        name: ok
        fail_if_body_not_matches_regexp: ["status: ready"]
      - url: http://{ok}/ready
        name: wrong-body
        fail_if_body_not_matches_regexp: ["status: degraded"]
      - url: http://{failing}/
        name: failing
      - url: http://{failing}/
        name: failing-expected
        valid_status_codes: [503]
      - url: http://{slow}/
        name: slow
        timeout: 300ms
      - url: http://127.0.0.1:{closed}/
        name: refused
      - url: https://{https}/
        name: tls
        tls_config: {{insecure_skip_verify: true}}
      - url: https://{https}/
        name: tls-untrusted
"#,
        ok = ok.addr,
        failing = failing.addr,
        slow = slow.addr,
    );
    let h = Homeostat::start(&config).await;
    for (instance, success, status) in [
        ("ok", 1.0, 200.0),
        ("wrong-body", 0.0, 200.0),
        ("failing", 0.0, 503.0),
        ("failing-expected", 1.0, 503.0),
        ("slow", 0.0, 0.0),
        ("refused", 0.0, 0.0),
        ("tls", 1.0, 200.0),
        ("tls-untrusted", 0.0, 0.0),
    ] {
        // A failed probe is a successful scrape: up 1, probe_success 0.
        let tg = h.wait_target("blackbox", instance, "up", T).await;
        let got = h
            .wait_value(&format!(r#"probe_success{{instance="{instance}"}}"#), T)
            .await;
        assert_eq!(got, Some(success), "{instance}: probe_success; target {tg}");
        let got = h
            .wait_value(
                &format!(r#"probe_http_status_code{{instance="{instance}"}}"#),
                T,
            )
            .await;
        assert_eq!(got, Some(status), "{instance}: status code");
        if success == 0.0 {
            let err = tg["lastError"].as_str().unwrap_or_default();
            assert!(
                err.starts_with("probe failed"),
                "{instance}: reason in the target list: {err:?}"
            );
        }
    }
    let d = h
        .wait_value(r#"probe_duration_seconds{instance="slow"}"#, T)
        .await
        .unwrap_or(9.0);
    assert!(d < 0.9, "the probe's own timeout bounds it: {d}");
    assert_eq!(
        h.wait_value(r#"probe_failed_due_to_regex{instance="wrong-body"}"#, T)
            .await,
        Some(1.0)
    );
    // The certificate expires in 30 days.
    let expiry = h
        .wait_value(r#"probe_ssl_earliest_cert_expiry{instance="tls"}"#, T)
        .await
        .unwrap_or(0.0);
    let days = (expiry - homeostat_e2e::unix_now()) / 86400.0;
    assert!((29.0..=30.5).contains(&days), "cert expiry in {days} days");
    assert_eq!(
        h.wait_value(r#"probe_http_ssl{instance="tls"}"#, T).await,
        Some(1.0)
    );
}
