//! `exec`: run a command (restart a wedged worker, call an orchestrator's
//! CLI). argv without a shell unless `shell: true`, a timeout that kills the
//! process, and an environment built from `act.exec.env_allow` plus the
//! step's own `env` — nothing else of homeostat's environment leaks.

use std::collections::BTreeMap;
use std::process::Stdio;
use std::time::Duration;

use serde::Deserialize;
use serde_json::{json, Value};
use tokio::io::AsyncReadExt;

use super::{typed, Action, ActionError, Ctx, ParamIssue};
use crate::config::PromDuration;

/// Output kept per stream in the audit log.
const MAX_OUTPUT: usize = 16 * 1024;

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct Params {
    pub argv: Vec<String>,
    /// Run `argv[0]` through `sh -c` (the rest become `$1…`).
    #[serde(default)]
    pub shell: bool,
    #[serde(default)]
    pub env: BTreeMap<String, String>,
    pub timeout: Option<PromDuration>,
    pub dir: Option<std::path::PathBuf>,
}

fn check(p: &Params) -> Result<(), ParamIssue> {
    if p.argv.is_empty() || p.argv[0].is_empty() {
        return Err(ParamIssue::new("argv", "must name a program"));
    }
    Ok(())
}

pub struct Exec;

/// Output of a finished command.
pub(crate) struct Finished {
    pub code: Option<i32>,
    pub stdout: String,
    pub stderr: String,
}

/// Runs argv with the allowed environment and a hard timeout.
pub(crate) async fn run(
    p: &Params,
    env_allow: &[String],
    extra_env: &[(&str, String)],
    timeout: Duration,
) -> Result<Finished, ActionError> {
    let mut cmd = if p.shell {
        let mut c = tokio::process::Command::new("/bin/sh");
        c.arg("-c").arg(&p.argv[0]).arg("homeostat-exec");
        c.args(&p.argv[1..]);
        c
    } else {
        let mut c = tokio::process::Command::new(&p.argv[0]);
        c.args(&p.argv[1..]);
        c
    };
    cmd.env_clear();
    for k in env_allow {
        if let Ok(v) = std::env::var(k) {
            cmd.env(k, v);
        }
    }
    for (k, v) in &p.env {
        cmd.env(k, v);
    }
    for (k, v) in extra_env {
        cmd.env(k, v);
    }
    if let Some(d) = &p.dir {
        cmd.current_dir(d);
    }
    cmd.stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true);
    let mut child = cmd
        .spawn()
        .map_err(|e| ActionError::Failed(format!("cannot start {:?}: {e}", p.argv[0])))?;
    let mut out = child.stdout.take();
    let mut err = child.stderr.take();
    let read = async {
        let mut o = Vec::new();
        let mut e = Vec::new();
        let (r1, r2) = tokio::join!(
            async {
                match out.as_mut() {
                    Some(s) => s.read_to_end(&mut o).await.map(|_| ()),
                    None => Ok(()),
                }
            },
            async {
                match err.as_mut() {
                    Some(s) => s.read_to_end(&mut e).await.map(|_| ()),
                    None => Ok(()),
                }
            }
        );
        let status = child.wait().await;
        (r1.and(r2).and(status.map(|s| s.code())), o, e)
    };
    match tokio::time::timeout(timeout, read).await {
        Ok((Ok(code), o, e)) => Ok(Finished {
            code,
            stdout: tail(&o),
            stderr: tail(&e),
        }),
        Ok((Err(e), _, _)) => Err(ActionError::Failed(format!("{:?}: {e}", p.argv[0]))),
        // Dropping the future drops the child: kill_on_drop ends it.
        Err(_) => Err(ActionError::Failed(format!(
            "{:?} did not finish within {}; killed",
            p.argv[0],
            PromDuration(timeout)
        ))),
    }
}

fn tail(b: &[u8]) -> String {
    let s = String::from_utf8_lossy(b);
    if s.len() <= MAX_OUTPUT {
        return s.into_owned();
    }
    let mut start = s.len() - MAX_OUTPUT;
    while !s.is_char_boundary(start) {
        start += 1;
    }
    format!("…{}", &s[start..])
}

#[async_trait::async_trait]
impl Action for Exec {
    fn name(&self) -> &'static str {
        "exec"
    }

    fn validate(&self, params: &Value) -> Result<(), ParamIssue> {
        check(&typed::<Params>(params)?)
    }

    fn describe(&self, params: &Value) -> String {
        match typed::<Params>(params) {
            Ok(p) => format!(
                "run {:?}{}",
                p.argv,
                if p.shell { " through sh -c" } else { "" }
            ),
            Err(e) => format!("exec (invalid: {})", e.message),
        }
    }

    async fn execute(&self, ctx: &Ctx<'_>, params: &Value) -> Result<Value, ActionError> {
        let p: Params = typed(params).map_err(|e| ActionError::Params(e.message))?;
        check(&p).map_err(|e| ActionError::Params(e.message))?;
        let timeout = p
            .timeout
            .map(|d| d.0)
            .unwrap_or(ctx.timeout)
            .min(ctx.timeout);
        let extra = [
            ("HOMEOSTAT_RUN_ID", ctx.run_id.to_string()),
            ("HOMEOSTAT_PLAYBOOK", ctx.playbook.to_string()),
            ("HOMEOSTAT_TARGET", ctx.target.to_string()),
        ];
        let f = run(&p, &ctx.deps.act.exec.env_allow, &extra, timeout).await?;
        let out = json!({ "exit_code": f.code, "stdout": f.stdout, "stderr": f.stderr });
        if f.code != Some(0) {
            return Err(ActionError::Failed(format!(
                "{:?} exited with {}: {}",
                p.argv[0],
                f.code.map_or("a signal".to_string(), |c| c.to_string()),
                f.stderr.trim()
            )));
        }
        Ok(out)
    }
}
