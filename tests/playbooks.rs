//! Playbooks end to end against the real binary: every guard stopping an
//! action that would otherwise run, approval, dry-run, resume after SIGKILL,
//! verify + rollback + escalation, the self-breaker, alert triggers, the
//! webhook trigger's auth, and `homeostat playbook check`.
//!
//! Steps are `exec` commands appending to a file, so each test can count
//! exactly what was done to the "system".

use std::path::Path;
use std::time::{Duration, Instant};

use homeostat_e2e::{homeostat_bin, Behavior, Homeostat, Sink, TestTarget};
use serde_json::{json, Value};

const TOKEN: &str = "hook-token-0123456789";

fn write(dir: &Path, name: &str, text: &str) {
    std::fs::write(dir.join(name), text).expect("write file");
}

fn lines(p: &Path) -> Vec<String> {
    std::fs::read_to_string(p)
        .unwrap_or_default()
        .lines()
        .map(str::to_string)
        .collect()
}

/// A playbook whose one step appends `<label> $target` to `out`.
fn append_playbook(name: &str, trigger: &str, guards: &str, out: &Path) -> String {
    format!(
        r#"name: {name}
description: appends the target to a file
trigger:
{trigger}
target: '{{{{ $labels.instance }}}}'
guards:
{guards}
steps:
  - name: append
    action: exec
    params:
      argv: ['/bin/sh', '-c', 'echo "{name} $HOMEOSTAT_TARGET" >> {out}']
"#,
        out = out.display()
    )
}

async fn hook(h: &Homeostat, playbook: &str, instance: &str, token: &str) -> (u16, Value) {
    let rsp = reqwest::Client::new()
        .post(format!("http://{}/hooks/playbooks/{playbook}", h.addr))
        .bearer_auth(token)
        .json(&json!({ "labels": { "instance": instance } }))
        .send()
        .await
        .expect("hook");
    let status = rsp.status().as_u16();
    (status, rsp.json().await.unwrap_or(Value::Null))
}

fn config(dir: &Path, extra: &str) -> String {
    format!(
        r#"global:
  scrape_interval: 1s
  evaluation_interval: 1s
web:
  listen_address: '{{listen}}'
state:
  path: '{{state}}'
playbook_files: ['{}/*.yml']
{extra}
"#,
        dir.display()
    )
}

#[tokio::test]
async fn guards_each_stop_an_action_that_would_otherwise_run() {
    let books = tempfile::tempdir().unwrap();
    let d = books.path();
    let out = d.join("out.txt");
    let webhook = format!("  webhook: {{token: {TOKEN}}}");
    write(
        d,
        "cool.yml",
        &append_playbook("cool", &webhook, "  cooldown: 1h", &out),
    );
    write(
        d,
        "capped.yml",
        &append_playbook("capped", &webhook, "  max_runs: 2\n  window: 1h", &out),
    );
    // Dedup: the first run is still waiting when the second arrives.
    write(
        d,
        "slow.yml",
        &append_playbook("slow", &webhook, "  cooldown: 0s", &out).replace(
            "steps:\n",
            "steps:\n  - name: settle\n    action: wait\n    params: {duration: 2s}\n",
        ),
    );
    write(
        d,
        "gated.yml",
        &append_playbook("gated", &webhook, "  approval: {timeout: 1m}", &out),
    );
    write(
        d,
        "hasty.yml",
        &append_playbook("hasty", &webhook, "  approval: {timeout: 1s}", &out),
    );
    let h = Homeostat::start(&config(d, "")).await;

    // Cooldown: per target, after a run that acted.
    let (s, r) = hook(&h, "cool", "a", TOKEN).await;
    assert_eq!(s, 202, "{r}");
    h.wait_run_state(
        r["data"]["id"].as_str().unwrap(),
        &["succeeded"],
        Duration::from_secs(10),
    )
    .await;
    let (_, r2) = hook(&h, "cool", "a", TOKEN).await;
    assert_eq!(r2["data"]["state"], "skipped", "{r2}");
    assert!(
        r2["data"]["reason"].as_str().unwrap().contains("cooldown"),
        "{r2}"
    );
    let (_, r3) = hook(&h, "cool", "b", TOKEN).await;
    h.wait_run_state(
        r3["data"]["id"].as_str().unwrap(),
        &["succeeded"],
        Duration::from_secs(10),
    )
    .await;

    // Rate limit: at most two runs per window for the playbook.
    for t in ["a", "b"] {
        let (_, r) = hook(&h, "capped", t, TOKEN).await;
        h.wait_run_state(
            r["data"]["id"].as_str().unwrap(),
            &["succeeded"],
            Duration::from_secs(10),
        )
        .await;
    }
    let (_, r) = hook(&h, "capped", "c", TOKEN).await;
    assert_eq!(r["data"]["state"], "skipped");
    assert!(
        r["data"]["reason"]
            .as_str()
            .unwrap()
            .contains("at the limit of 2"),
        "{r}"
    );

    // Dedup: one run per (playbook, target) at a time.
    let (_, first) = hook(&h, "slow", "a", TOKEN).await;
    let (_, second) = hook(&h, "slow", "a", TOKEN).await;
    assert_eq!(second["data"]["state"], "skipped", "{second}");
    assert!(
        second["data"]["reason"].as_str().unwrap().contains("still"),
        "{second}"
    );
    h.wait_run_state(
        first["data"]["id"].as_str().unwrap(),
        &["succeeded"],
        Duration::from_secs(10),
    )
    .await;

    // Dry run: described and recorded, nothing touched.
    let before = lines(&out).len();
    let (s, dry) = h
        .post(
            "/api/v1/playbooks/cool/run",
            json!({"target": "z", "dry_run": true}),
        )
        .await;
    assert_eq!(s, 200, "{dry}");
    let done = h
        .wait_run_state(
            dry["data"]["id"].as_str().unwrap(),
            &["succeeded"],
            Duration::from_secs(10),
        )
        .await;
    assert_eq!(done["dry_run"], true);
    assert_eq!(done["steps"][0]["state"], "dry_run");
    assert!(done["steps"][0]["output"]["would"]
        .as_str()
        .unwrap()
        .contains("run [\"/bin/sh\""));
    assert_eq!(lines(&out).len(), before);

    // Approval: nothing happens until approved; denied runs never act;
    // undecided runs expire.
    let (_, wait) = hook(&h, "gated", "a", TOKEN).await;
    let id = wait["data"]["id"].as_str().unwrap().to_string();
    assert_eq!(wait["data"]["state"], "awaiting_approval");
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert!(!lines(&out).contains(&"gated a".to_string()));
    let (s, ok) = h
        .post(&format!("/api/v1/runs/{id}/approve"), json!({}))
        .await;
    assert_eq!(s, 200, "{ok}");
    let done = h
        .wait_run_state(&id, &["succeeded"], Duration::from_secs(10))
        .await;
    assert_eq!(done["decided_by"], "e2e");
    assert!(lines(&out).contains(&"gated a".to_string()));
    let (s, _) = h
        .post(&format!("/api/v1/runs/{id}/approve"), json!({}))
        .await;
    assert_eq!(s, 409, "a decided run cannot be decided again");
    let (_, wait) = hook(&h, "gated", "b", TOKEN).await;
    let id = wait["data"]["id"].as_str().unwrap().to_string();
    h.post(&format!("/api/v1/runs/{id}/deny"), json!({})).await;
    h.wait_run_state(&id, &["denied"], Duration::from_secs(5))
        .await;
    let (_, wait) = hook(&h, "hasty", "a", TOKEN).await;
    let id = wait["data"]["id"].as_str().unwrap().to_string();
    h.wait_run_state(&id, &["expired"], Duration::from_secs(10))
        .await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    let all = lines(&out);
    assert!(!all.contains(&"gated b".to_string()) && !all.contains(&"hasty a".to_string()));

    // Global pause stops automatic runs, and is remembered.
    let (s, _) = h.post("/api/v1/pause", json!({})).await;
    assert_eq!(s, 200);
    let (_, r) = hook(&h, "cool", "p", TOKEN).await;
    assert_eq!(r["data"]["state"], "skipped");
    assert!(
        r["data"]["reason"].as_str().unwrap().contains("paused"),
        "{r}"
    );
    h.post("/api/v1/resume", json!({})).await;

    // A wrong token changes nothing.
    let n = h.runs("cool").await.len();
    let (s, _) = hook(&h, "cool", "q", "wrong-token-0123456789").await;
    assert_eq!(s, 401);
    assert_eq!(h.runs("cool").await.len(), n);

    // Exactly the runs that were allowed acted, each once.
    let mut got = lines(&out);
    got.sort();
    assert_eq!(
        got,
        ["capped a", "capped b", "cool a", "cool b", "gated a", "slow a"],
        "{}",
        h.process.log()
    );
    // Guard blocks are metrics too.
    let metrics = reqwest::get(format!("http://{}/metrics", h.addr))
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    for guard in ["cooldown", "max_runs", "dedup", "pause"] {
        assert!(
            metrics.contains(&format!("guard=\"{guard}\"")),
            "no block counted for {guard}"
        );
    }
    // The audit log names who did what.
    let audit = homeostat_e2e::get_json(&format!("http://{}/api/v1/audit?limit=200", h.addr)).await;
    let text = audit.to_string();
    assert!(text.contains("\"action\":\"run.approve\"") && text.contains("\"actor\":\"e2e\""));
}

#[tokio::test]
async fn sigkill_between_steps_never_repeats_a_finished_step() {
    let books = tempfile::tempdir().unwrap();
    let d = books.path();
    let out = d.join("out.txt");
    write(
        d,
        "two-steps.yml",
        &format!(
            r#"name: two-steps
trigger: {{manual: true}}
steps:
  - name: one
    action: exec
    params: {{argv: ['/bin/sh', '-c', 'echo one >> {out}']}}
  - name: settle
    action: wait
    idempotent: true
    params: {{duration: 3s}}
  - name: two
    action: exec
    params: {{argv: ['/bin/sh', '-c', 'echo two >> {out}']}}
"#,
            out = out.display()
        ),
    );
    let mut h = Homeostat::start(&config(d, "")).await;
    let (s, r) = h
        .post("/api/v1/playbooks/two-steps/run", json!({"target": "x"}))
        .await;
    assert_eq!(s, 200, "{r}");
    let id = r["data"]["id"].as_str().unwrap().to_string();
    let deadline = Instant::now() + Duration::from_secs(10);
    while lines(&out) != ["one"] {
        assert!(Instant::now() < deadline, "step one never ran");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    tokio::time::sleep(Duration::from_millis(300)).await;
    h.kill_and_restart().await;
    let done = h
        .wait_run_state(&id, &["succeeded"], Duration::from_secs(20))
        .await;
    assert_eq!(lines(&out), ["one", "two"], "{done:#}");
    let states: Vec<(String, String)> = done["steps"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| {
            (
                s["name"].as_str().unwrap().into(),
                s["state"].as_str().unwrap().into(),
            )
        })
        .collect();
    assert_eq!(
        states,
        [
            ("one".into(), "ok".into()),
            ("settle".into(), "interrupted".into()),
            ("settle".into(), "ok".into()),
            ("two".into(), "ok".into()),
        ]
    );
    assert!(done["audit"].to_string().contains("run.resumed"));
}

#[tokio::test]
async fn sigkill_during_a_non_idempotent_step_escalates_instead_of_repeating() {
    let books = tempfile::tempdir().unwrap();
    let d = books.path();
    let out = d.join("out.txt");
    let sink = Sink::start().await;
    write(
        d,
        "slow-exec.yml",
        &format!(
            r#"name: slow-exec
trigger: {{manual: true}}
steps:
  - name: migrate
    action: exec
    params: {{argv: ['/bin/sh', '-c', 'echo start >> {out}; sleep 30; echo end >> {out}']}}
    timeout: 1m
"#,
            out = out.display()
        ),
    );
    let extra = format!(
        "playbooks:\n  escalation:\n    alertmanager: false\n    webhook_urls: ['{}']\n",
        sink.url()
    );
    let mut h = Homeostat::start(&config(d, &extra)).await;
    let (_, r) = h
        .post("/api/v1/playbooks/slow-exec/run", json!({"target": "db"}))
        .await;
    let id = r["data"]["id"].as_str().unwrap().to_string();
    let deadline = Instant::now() + Duration::from_secs(10);
    while lines(&out).is_empty() {
        assert!(Instant::now() < deadline);
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    h.kill_and_restart().await;
    let done = h
        .wait_run_state(&id, &["interrupted"], Duration::from_secs(10))
        .await;
    assert!(done["reason"]
        .as_str()
        .unwrap()
        .contains("not declared idempotent"));
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(lines(&out), ["start"], "the step must not run again");
    let deadline = Instant::now() + Duration::from_secs(10);
    while !sink
        .bodies()
        .iter()
        .any(|b| b["alerts"][0]["labels"]["alertname"] == "HomeostatPlaybookEscalation")
    {
        assert!(
            Instant::now() < deadline,
            "no escalation: {:?}",
            sink.bodies()
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[tokio::test]
async fn failed_verification_rolls_back_escalates_and_trips_the_playbook_breaker() {
    let books = tempfile::tempdir().unwrap();
    let d = books.path();
    let out = d.join("out.txt");
    let sink = Sink::start().await;
    write(
        d,
        "flaky.yml",
        &format!(
            r#"name: flaky
description: a fix that never works
trigger: {{webhook: {{token: {TOKEN}}}}}
target: '{{{{ $labels.instance }}}}'
guards:
  breaker: {{failures: 2, window: 1h}}
steps:
  - name: fix
    action: exec
    params: {{argv: ['/bin/sh', '-c', 'echo fix $HOMEOSTAT_TARGET >> {out}']}}
verify:
  expr: 'vector(1) == 2'
  within: 1s
  interval: 200ms
on_failure:
  rollback:
    - name: undo
      action: exec
      params: {{argv: ['/bin/sh', '-c', 'echo undo {{{{ $target }}}} >> {out}']}}
"#,
            out = out.display()
        ),
    );
    let extra = format!(
        "playbooks:\n  escalation:\n    alertmanager: false\n    webhook_urls: ['{}']\n",
        sink.url()
    );
    let h = Homeostat::start(&config(d, &extra)).await;
    for t in ["a", "b"] {
        let (_, r) = hook(&h, "flaky", t, TOKEN).await;
        let done = h
            .wait_run_state(
                r["data"]["id"].as_str().unwrap(),
                &["escalated"],
                Duration::from_secs(10),
            )
            .await;
        assert_eq!(done["verify"]["held"], false, "{done:#}");
        assert_eq!(done["steps"][1]["phase"], "rollback");
    }
    assert_eq!(lines(&out), ["fix a", "undo a", "fix b", "undo b"]);
    // The breaker is open: the next trigger is refused and pages.
    let (_, r) = hook(&h, "flaky", "c", TOKEN).await;
    assert_eq!(r["data"]["state"], "skipped");
    assert!(
        r["data"]["reason"]
            .as_str()
            .unwrap()
            .contains("breaker is open"),
        "{r}"
    );
    let list = homeostat_e2e::get_json(&format!("http://{}/api/v1/playbooks", h.addr)).await;
    assert!(
        list["data"]["playbooks"][0]["breaker_open_since_ms"].is_i64(),
        "{list}"
    );
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        let summaries: Vec<String> = sink
            .bodies()
            .iter()
            .map(|b| {
                b["alerts"][0]["annotations"]["summary"]
                    .as_str()
                    .unwrap_or("")
                    .to_string()
            })
            .collect();
        if summaries
            .iter()
            .filter(|s| s.contains("did not hold"))
            .count()
            == 2
            && summaries.iter().any(|s| s.contains("stopped"))
        {
            // Alertmanager's webhook v4 shape, so existing receivers work.
            let b = &sink.bodies()[0];
            assert_eq!(b["version"], "4");
            assert_eq!(b["alerts"][0]["labels"]["severity"], "page");
            break;
        }
        assert!(Instant::now() < deadline, "{summaries:?}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    // A person resumes the playbook: it runs again.
    h.post("/api/v1/playbooks/flaky/resume", json!({})).await;
    let (_, r) = hook(&h, "flaky", "d", TOKEN).await;
    assert_ne!(r["data"]["state"], "skipped");
}

#[tokio::test]
async fn a_firing_alert_starts_its_playbook() {
    let target = TestTarget::start(Behavior::Text("x 1\n".into())).await;
    let books = tempfile::tempdir().unwrap();
    let d = books.path();
    let out = d.join("out.txt");
    write(
        d,
        "rules.yaml",
        "groups:\n  - name: t\n    interval: 1s\n    rules:\n      - alert: TargetDown\n        expr: up{job=\"t\"} == 0\n        labels: {severity: critical}\n",
    );
    let trigger = "  alert: TargetDown\n  matchers: ['severity=\"critical\"']";
    write(
        d,
        "restart.yml",
        &append_playbook("restart", trigger, "  cooldown: 1m", &out),
    );
    let extra = format!(
        "rule_files: ['{}/rules.yaml']\nscrape_configs:\n  - job_name: t\n    static_configs:\n      - targets: ['{}']\n",
        d.display(),
        target.addr
    );
    let h = Homeostat::start(&config(d, &extra)).await;
    h.wait_value("up{job=\"t\"} == 1", Duration::from_secs(10))
        .await;
    target.set(Behavior::Status(500));
    let deadline = Instant::now() + Duration::from_secs(15);
    while lines(&out).is_empty() {
        assert!(Instant::now() < deadline, "no run: {}", h.process.log());
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(lines(&out), [format!("restart {}", target.addr)]);
    let runs = h.runs("restart").await;
    assert_eq!(runs[0]["trigger"], "alert");
    assert_eq!(runs[0]["trigger_detail"]["alertname"], "TargetDown");
}

#[test]
fn playbook_check_names_file_line_and_field() {
    let dir = tempfile::tempdir().unwrap();
    let good = dir.path().join("good.yml");
    std::fs::write(
        &good,
        "name: ok\ntrigger: {manual: true}\nsteps:\n  - name: w\n    action: wait\n    params: {duration: 1s}\n",
    )
    .unwrap();
    let bad = dir.path().join("bad.yml");
    std::fs::write(
        &bad,
        "name: bad\ntrigger:\n  alert: X\nsteps:\n  - name: s\n    action: reboot\n  - name: f\n    action: redis.flush\n    params: {server: r, pattern: '*', max_keys: 1}\nverify:\n  expr: 'up{'\n  within: 1m\n",
    )
    .unwrap();
    let o = std::process::Command::new(homeostat_bin())
        .args(["playbook", "check"])
        .arg(&good)
        .arg(&bad)
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&o.stdout);
    assert_eq!(o.status.code(), Some(1), "{text}");
    assert!(
        text.contains("SUCCESS: ") && text.contains("good.yml is valid"),
        "{text}"
    );
    for want in [
        "bad.yml:1:1: target: missing target",
        "bad.yml:6:5: steps[0].action: unknown action \"reboot\"",
        "bad.yml:9:25: steps[1].params.pattern: must name a namespace",
        "bad.yml:11:3: verify.expr: bad PromQL",
    ] {
        assert!(text.contains(want), "missing {want:?} in:\n{text}");
    }
}

#[tokio::test]
async fn cli_runs_pauses_and_approves_against_a_running_daemon() {
    let books = tempfile::tempdir().unwrap();
    let d = books.path();
    let out = d.join("out.txt");
    write(
        d,
        "gated.yml",
        &append_playbook("gated", "  manual: true", "  approval: {timeout: 1m}", &out),
    );
    let h = Homeostat::start(&config(d, "")).await;
    let url = format!("http://{}", h.addr);
    let cli = |args: &[&str]| {
        let o = std::process::Command::new(homeostat_bin())
            .arg("playbook")
            .args(args)
            .args(["--url", &url, "--as", "alice"])
            .output()
            .unwrap();
        let text = String::from_utf8_lossy(&o.stdout).into_owned();
        (
            o.status.code(),
            serde_json::from_str::<Value>(&text).unwrap_or(Value::Null),
            text,
        )
    };
    // A dry run needs no approval and touches nothing.
    let (code, v, text) = cli(&["run", "gated", "--target", "x", "--dry-run"]);
    assert_eq!(code, Some(0), "{text}");
    assert_eq!(v["data"]["dry_run"], true);
    // A real one waits for a person.
    let (_, v, _) = cli(&["run", "gated", "--target", "y"]);
    let id = v["data"]["id"].as_str().unwrap().to_string();
    assert_eq!(v["data"]["state"], "awaiting_approval");
    let (_, v, _) = cli(&["runs", "--state", "awaiting_approval"]);
    assert_eq!(v["data"][0]["id"], id.as_str());
    let (code, _, text) = cli(&["approve", &id]);
    assert_eq!(code, Some(0), "{text}");
    let done = h
        .wait_run_state(&id, &["succeeded"], Duration::from_secs(10))
        .await;
    assert_eq!(done["decided_by"], "alice");
    assert_eq!(lines(&out), ["gated y"]);
    let (_, v, _) = cli(&["show", &id]);
    assert_eq!(v["data"]["steps"][0]["state"], "ok");
    let (code, _, _) = cli(&["pause"]);
    assert_eq!(code, Some(0));
    let (_, v, _) = cli(&["list"]);
    assert_eq!(v["data"]["paused"], true);
    let (code, _, text) = cli(&["run", "nope", "--target", "x"]);
    assert_eq!(code, Some(1), "{text}");
}
