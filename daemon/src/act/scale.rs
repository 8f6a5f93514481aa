//! `scale`: move a service's replica floor. On Azure Container Apps the
//! running count cannot be set, so the lever is `template.scale.minReplicas`
//! (optionally `maxReplicas`) under KEDA's own reactive rules; any other
//! orchestrator is reached through a command or an HTTP call.
//!
//! The request (`replicas: 5`, `+2`, `-1`, `x1.5`) is applied to the current
//! value, then clamped to `[min, max]` and to `max_step` — the blast-radius
//! limits, which every scale step must state.

use std::time::{Duration, Instant};

use serde::Deserialize;
use serde_json::{json, Value};

use super::{typed, Action, ActionError, Ctx, ParamIssue};

/// How a step says what it wants.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Request {
    Absolute(u32),
    Relative(i64),
    Factor(f64),
}

impl Request {
    pub fn parse(s: &str) -> Result<Request, String> {
        let s = s.trim();
        let bad = || {
            format!(
                "{s:?} is not a replica request: use a count (5), a change (+2, -1) or a factor (x1.5)"
            )
        };
        if let Some(f) = s.strip_prefix('x').or_else(|| s.strip_prefix('*')) {
            let f: f64 = f.trim().parse().map_err(|_| bad())?;
            if !(f.is_finite() && f > 0.0) {
                return Err(bad());
            }
            return Ok(Request::Factor(f));
        }
        if s.starts_with('+') || s.starts_with('-') {
            return s.parse::<i64>().map(Request::Relative).map_err(|_| bad());
        }
        s.parse::<u32>().map(Request::Absolute).map_err(|_| bad())
    }

    /// The wanted count from the current one, before limits. A factor
    /// rounds up: scaling for load errs on the side of capacity.
    pub fn apply(self, current: u32) -> i64 {
        match self {
            Request::Absolute(n) => i64::from(n),
            Request::Relative(d) => i64::from(current) + d,
            Request::Factor(f) => (f64::from(current) * f).ceil() as i64,
        }
    }
}

/// Blast-radius limits.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Limits {
    pub min: u32,
    pub max: u32,
    pub max_step: Option<u32>,
}

/// The count to set: the request, clamped to `[min, max]`, then moved at
/// most `max_step` away from `current`. Returns the count and what limited
/// it, if anything.
pub fn decide(current: u32, req: Request, l: Limits) -> (u32, Option<String>) {
    let wanted = req.apply(current);
    let mut why = None;
    let mut n = wanted;
    if n < i64::from(l.min) {
        why = Some(format!("raised from {wanted} to min {}", l.min));
        n = i64::from(l.min);
    }
    if n > i64::from(l.max) {
        why = Some(format!("lowered from {wanted} to max {}", l.max));
        n = i64::from(l.max);
    }
    if let Some(step) = l.max_step {
        let step = i64::from(step);
        let cur = i64::from(current);
        if (n - cur).abs() > step {
            let limited = if n > cur { cur + step } else { cur - step };
            why = Some(format!(
                "moved {} of the {} asked (max_step {step})",
                (limited - cur).abs(),
                (n - cur).abs()
            ));
            n = limited;
        }
    }
    (n.clamp(0, i64::from(u32::MAX)) as u32, why)
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct ExecBackend {
    /// Prints the current count on stdout.
    get: Vec<String>,
    /// Sets the count; receives it as `$HOMEOSTAT_REPLICAS` and in place of
    /// any argument that is exactly `{replicas}`.
    set: Vec<String>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct HttpBackend {
    /// GET; the answer is JSON and `pointer` (RFC 6901, e.g.
    /// `/spec/replicas`) locates the current count.
    get_url: String,
    pointer: String,
    /// Called with `set_method` (default PUT); `{replicas}` in the URL or
    /// body is replaced by the count.
    set_url: String,
    #[serde(default = "default_put")]
    set_method: String,
    set_body: Option<String>,
    #[serde(default)]
    headers: std::collections::BTreeMap<String, String>,
}

fn default_put() -> String {
    "PUT".into()
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Params {
    /// Full ARM id of a Container App.
    container_app: Option<String>,
    exec: Option<ExecBackend>,
    http: Option<HttpBackend>,
    /// For the floor (Container Apps: minReplicas) or the count.
    replicas: Value,
    /// Container Apps only: also move maxReplicas (same syntax, clamped to
    /// `max_replicas_limit`).
    max_replicas: Option<Value>,
    /// Never below / above; both must be stated.
    min: u32,
    max: u32,
    max_step: Option<u32>,
    /// Upper bound for `max_replicas` (default `max`).
    max_replicas_limit: Option<u32>,
    /// Container Apps: wait until the app is provisioned again (default true).
    #[serde(default = "yes")]
    wait: bool,
}

fn yes() -> bool {
    true
}

fn request_of(v: &Value, field: &str) -> Result<Option<Request>, ParamIssue> {
    let s = match v {
        Value::Number(n) => n.to_string(),
        Value::String(s) => s.clone(),
        _ => return Err(ParamIssue::new(field, "must be a count, +N, -N or xF")),
    };
    if s.contains("{{") {
        return Ok(None);
    }
    Request::parse(&s)
        .map(Some)
        .map_err(|e| ParamIssue::new(field, e))
}

fn check(p: &Params) -> Result<(), ParamIssue> {
    let backends = [
        p.container_app.is_some(),
        p.exec.is_some(),
        p.http.is_some(),
    ]
    .iter()
    .filter(|b| **b)
    .count();
    if backends != 1 {
        return Err(ParamIssue::new(
            "",
            "name exactly one of container_app, exec or http",
        ));
    }
    request_of(&p.replicas, "replicas")?;
    if let Some(m) = &p.max_replicas {
        if p.container_app.is_none() {
            return Err(ParamIssue::new(
                "max_replicas",
                "only Container Apps have a separate maximum",
            ));
        }
        request_of(m, "max_replicas")?;
    }
    if p.min > p.max {
        return Err(ParamIssue::new(
            "min",
            format!("min {} is greater than max {}", p.min, p.max),
        ));
    }
    if p.max_step == Some(0) {
        return Err(ParamIssue::new("max_step", "must be at least 1"));
    }
    if let Some(e) = &p.exec {
        if e.get.is_empty() || e.set.is_empty() {
            return Err(ParamIssue::new("exec", "get and set must name a program"));
        }
    }
    Ok(())
}

fn rendered(p: &Value) -> Result<(Params, Request, Option<Request>), ActionError> {
    let params: Params = typed(p).map_err(|e| ActionError::Params(e.message))?;
    check(&params).map_err(|e| ActionError::Params(format!("{}: {}", e.field, e.message)))?;
    let parse = |v: &Value| -> Result<Request, ActionError> {
        let s = match v {
            Value::Number(n) => n.to_string(),
            Value::String(s) => s.clone(),
            _ => String::new(),
        };
        Request::parse(&s).map_err(ActionError::Params)
    };
    let req = parse(&params.replicas)?;
    let max_req = params.max_replicas.as_ref().map(parse).transpose()?;
    Ok((params, req, max_req))
}

pub struct Scale;

#[async_trait::async_trait]
impl Action for Scale {
    fn name(&self) -> &'static str {
        "scale"
    }

    fn validate(&self, params: &Value) -> Result<(), ParamIssue> {
        check(&typed::<Params>(params)?)
    }

    fn describe(&self, params: &Value) -> String {
        match rendered(params) {
            Ok((p, _, _)) => {
                let what = match (&p.container_app, &p.exec, &p.http) {
                    (Some(id), _, _) => format!("minReplicas of Container App {id}"),
                    (_, Some(e), _) => format!("replicas via {:?}", e.set),
                    (_, _, Some(h)) => format!("replicas via {} {}", h.set_method, h.set_url),
                    _ => "replicas".into(),
                };
                format!(
                    "set {what} to {} (within {}..={}{})",
                    value_text(&p.replicas),
                    p.min,
                    p.max,
                    p.max_step
                        .map(|s| format!(", at most {s} at a time"))
                        .unwrap_or_default()
                )
            }
            Err(e) => format!("scale (invalid: {e})"),
        }
    }

    async fn execute(&self, ctx: &Ctx<'_>, params: &Value) -> Result<Value, ActionError> {
        let (p, req, max_req) = rendered(params)?;
        let limits = Limits {
            min: p.min,
            max: p.max,
            max_step: p.max_step,
        };
        if let Some(id) = &p.container_app {
            return azure(ctx, id, &p, req, max_req, limits).await;
        }
        let timeout = ctx.timeout;
        if let Some(e) = &p.exec {
            let get = super::exec::Params {
                argv: e.get.clone(),
                shell: false,
                env: Default::default(),
                timeout: None,
                dir: None,
            };
            let env_allow = &ctx.deps.act.exec.env_allow;
            let out = super::exec::run(&get, env_allow, &[], timeout).await?;
            if out.code != Some(0) {
                return Err(ActionError::Failed(format!(
                    "{:?} exited with {:?}: {}",
                    e.get, out.code, out.stderr
                )));
            }
            let current: u32 = out.stdout.trim().parse().map_err(|_| {
                ActionError::Failed(format!(
                    "{:?} printed {:?}, not a replica count",
                    e.get,
                    out.stdout.trim()
                ))
            })?;
            let (n, limited) = decide(current, req, limits);
            if n == current {
                return Ok(
                    json!({ "from": current, "to": n, "changed": false, "limited": limited }),
                );
            }
            let set = super::exec::Params {
                argv: e
                    .set
                    .iter()
                    .map(|a| {
                        if a == "{replicas}" {
                            n.to_string()
                        } else {
                            a.clone()
                        }
                    })
                    .collect(),
                shell: false,
                env: Default::default(),
                timeout: None,
                dir: None,
            };
            let out = super::exec::run(
                &set,
                env_allow,
                &[("HOMEOSTAT_REPLICAS", n.to_string())],
                timeout,
            )
            .await?;
            if out.code != Some(0) {
                return Err(ActionError::Failed(format!(
                    "{:?} exited with {:?}: {}",
                    e.set, out.code, out.stderr
                )));
            }
            return Ok(json!({ "from": current, "to": n, "changed": true, "limited": limited }));
        }
        if let Some(h) = &p.http {
            let mut req_b = ctx.deps.http.get(&h.get_url).timeout(timeout);
            for (k, v) in &h.headers {
                req_b = req_b.header(k, v);
            }
            let body: Value = req_b
                .send()
                .await
                .and_then(reqwest::Response::error_for_status)
                .map_err(|e| ActionError::Failed(format!("GET {}: {e}", h.get_url)))?
                .json()
                .await
                .map_err(|e| ActionError::Failed(format!("GET {}: {e}", h.get_url)))?;
            let current = body
                .pointer(&h.pointer)
                .and_then(Value::as_u64)
                .and_then(|n| u32::try_from(n).ok())
                .ok_or_else(|| {
                    ActionError::Failed(format!(
                        "GET {}: no replica count at {}",
                        h.get_url, h.pointer
                    ))
                })?;
            let (n, limited) = decide(current, req, limits);
            if n == current {
                return Ok(
                    json!({ "from": current, "to": n, "changed": false, "limited": limited }),
                );
            }
            let set = super::http::Params {
                method: h.set_method.clone(),
                url: h.set_url.replace("{replicas}", &n.to_string()),
                headers: h.headers.clone(),
                body: h
                    .set_body
                    .as_ref()
                    .map(|b| Value::String(b.replace("{replicas}", &n.to_string()))),
                expect_status: Vec::new(),
                timeout: None,
            };
            let (status, _) = super::http::send(&ctx.deps.http, &set, timeout).await?;
            return Ok(
                json!({ "from": current, "to": n, "changed": true, "limited": limited, "status": status }),
            );
        }
        Err(ActionError::Params("no backend".into()))
    }
}

fn value_text(v: &Value) -> String {
    match v {
        Value::String(s) => s.clone(),
        other => other.to_string(),
    }
}

async fn azure(
    ctx: &Ctx<'_>,
    id: &str,
    p: &Params,
    req: Request,
    max_req: Option<Request>,
    limits: Limits,
) -> Result<Value, ActionError> {
    let started = Instant::now();
    // Each ARM call gets a share of the step's time; the wait below gets the rest.
    let per_call = (ctx.timeout / 4).max(Duration::from_secs(1));
    let client = crate::collect::azure::client_for(
        &ctx.deps.azure_endpoint,
        ctx.deps.azure_authority.as_deref(),
        per_call,
    )
    .map_err(ActionError::failed)?;
    let now = client.app_scale(id).await.map_err(ActionError::failed)?;
    let current_min = now.min_replicas.unwrap_or(0).max(0) as u32;
    // ARM's default maximum when unset.
    let current_max = now.max_replicas.unwrap_or(10).max(1) as u32;
    let (min, limited) = decide(current_min, req, limits);
    let max = match max_req {
        Some(r) => {
            let cap = p.max_replicas_limit.unwrap_or(limits.max);
            Some(
                decide(
                    current_max,
                    r,
                    Limits {
                        min: min.max(1),
                        max: cap,
                        max_step: None,
                    },
                )
                .0,
            )
        }
        // Raising the floor above the ceiling would be refused by ARM.
        None if min > current_max => {
            return Err(ActionError::Refused(format!(
            "minReplicas {min} would exceed the app's maxReplicas {current_max}; set max_replicas"
        )))
        }
        None => None,
    };
    if min == current_min && max.is_none_or(|m| m == current_max) {
        return Ok(json!({
            "container_app": id, "from": current_min, "to": min, "changed": false,
            "limited": limited, "provisioning_state": now.provisioning_state,
        }));
    }
    let status = client
        .set_app_scale(id, &now.location, min as i32, max.map(|m| m as i32))
        .await
        .map_err(ActionError::failed)?;
    let mut state = String::new();
    if p.wait {
        // 202 means ARM is still provisioning; 200 may still show InProgress
        // for a moment. Either way, done is `Succeeded`.
        loop {
            let s = client.app_scale(id).await.map_err(ActionError::failed)?;
            state = s.provisioning_state;
            match state.as_str() {
                "Succeeded" => break,
                "Failed" | "Canceled" => {
                    return Err(ActionError::Failed(format!(
                    "Container App {id} provisioning ended {state} after setting minReplicas {min}"
                )))
                }
                _ => {}
            }
            if started.elapsed() + Duration::from_millis(500) >= ctx.timeout {
                return Err(ActionError::Failed(format!(
                    "Container App {id} still {state:?} when the step's time ran out"
                )));
            }
            tokio::time::sleep(Duration::from_millis(250)).await;
        }
    }
    Ok(json!({
        "container_app": id, "from": current_min, "to": min,
        "max_from": current_max, "max_to": max,
        "changed": true, "limited": limited, "status": status, "provisioning_state": state,
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn requests_parse_and_apply() {
        assert_eq!(Request::parse("5"), Ok(Request::Absolute(5)));
        assert_eq!(Request::parse("+2"), Ok(Request::Relative(2)));
        assert_eq!(Request::parse("-1"), Ok(Request::Relative(-1)));
        assert_eq!(Request::parse("x1.5"), Ok(Request::Factor(1.5)));
        assert!(Request::parse("x0").is_err());
        assert!(Request::parse("lots").is_err());
        assert_eq!(Request::Factor(1.5).apply(3), 5);
        assert_eq!(Request::Relative(-5).apply(3), -2);
    }

    #[test]
    fn limits_clamp_and_step() {
        let l = Limits {
            min: 1,
            max: 10,
            max_step: Some(3),
        };
        assert_eq!(decide(2, Request::Relative(2), l).0, 4);
        // Clamped to max, then to the step.
        let (n, why) = decide(2, Request::Absolute(50), l);
        assert_eq!(n, 5);
        assert!(why.unwrap().contains("max_step"));
        assert_eq!(decide(2, Request::Relative(-5), l).0, 1);
        let free = Limits {
            min: 2,
            max: 8,
            max_step: None,
        };
        assert_eq!(
            decide(4, Request::Factor(3.0), free),
            (8, Some("lowered from 12 to max 8".into()))
        );
        assert_eq!(decide(4, Request::Absolute(0), free).0, 2);
    }

    #[test]
    fn validation_names_fields() {
        let bad = |v: Value| Scale.validate(&v).unwrap_err();
        assert_eq!(
            bad(json!({"container_app": "/x", "replicas": "lots", "min": 1, "max": 2})).field,
            "replicas"
        );
        assert_eq!(
            bad(json!({"container_app": "/x", "replicas": 1, "min": 3, "max": 2})).field,
            "min"
        );
        assert!(bad(json!({"replicas": 1, "min": 1, "max": 2}))
            .message
            .contains("exactly one"));
        assert_eq!(
            bad(json!({"container_app": "/x", "replicas": 1, "min": 1, "max": 2, "maxx": 1})).field,
            "maxx"
        );
        // Templates are checked once rendered.
        Scale
            .validate(
                &json!({"container_app": "/x", "replicas": "{{ $labels.n }}", "min": 1, "max": 2}),
            )
            .unwrap();
    }
}
