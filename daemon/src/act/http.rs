//! `http`: call an HTTP endpoint (an orchestrator, a feature flag, a cache's
//! admin API) and check the status.

use std::collections::BTreeMap;

use serde::Deserialize;
use serde_json::{json, Value};

use super::{typed, Action, ActionError, Ctx, ParamIssue};
use crate::config::PromDuration;

/// Response body kept in the audit log.
const MAX_BODY: usize = 16 * 1024;

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct Params {
    #[serde(default = "default_method")]
    pub method: String,
    pub url: String,
    #[serde(default)]
    pub headers: BTreeMap<String, String>,
    /// Sent as is; a mapping or list is sent as JSON.
    pub body: Option<Value>,
    /// Accepted statuses (default: any 2xx).
    #[serde(default)]
    pub expect_status: Vec<u16>,
    pub timeout: Option<PromDuration>,
}

fn default_method() -> String {
    "POST".into()
}

fn check(p: &Params) -> Result<(), ParamIssue> {
    if reqwest::Method::from_bytes(p.method.as_bytes()).is_err() {
        return Err(ParamIssue::new(
            "method",
            format!("{:?} is not an HTTP method", p.method),
        ));
    }
    // A templated URL is checked once rendered.
    if !p.url.contains("{{") && reqwest::Url::parse(&p.url).is_err() {
        return Err(ParamIssue::new("url", format!("{:?} is not a URL", p.url)));
    }
    Ok(())
}

pub struct Http;

/// Sends one request as the parameters say; returns (status, body).
pub(crate) async fn send(
    client: &reqwest::Client,
    p: &Params,
    timeout: std::time::Duration,
) -> Result<(u16, String), ActionError> {
    let method = reqwest::Method::from_bytes(p.method.as_bytes())
        .map_err(|_| ActionError::Params(format!("{:?} is not an HTTP method", p.method)))?;
    let mut req = client.request(method, &p.url).timeout(timeout);
    for (k, v) in &p.headers {
        req = req.header(k, v);
    }
    req = match &p.body {
        None => req,
        Some(Value::String(s)) => req.body(s.clone()),
        Some(v) => req.json(v),
    };
    let rsp = req
        .send()
        .await
        .map_err(|e| ActionError::Failed(format!("{} {}: {e}", p.method, p.url)))?;
    let status = rsp.status().as_u16();
    let body = rsp.text().await.unwrap_or_default();
    let mut end = body.len().min(MAX_BODY);
    while !body.is_char_boundary(end) {
        end -= 1;
    }
    let ok = if p.expect_status.is_empty() {
        (200..300).contains(&status)
    } else {
        p.expect_status.contains(&status)
    };
    if !ok {
        return Err(ActionError::Failed(format!(
            "{} {} answered {status}: {}",
            p.method,
            p.url,
            &body[..end]
        )));
    }
    Ok((status, body[..end].to_string()))
}

#[async_trait::async_trait]
impl Action for Http {
    fn name(&self) -> &'static str {
        "http"
    }

    fn validate(&self, params: &Value) -> Result<(), ParamIssue> {
        check(&typed::<Params>(params)?)
    }

    fn describe(&self, params: &Value) -> String {
        match typed::<Params>(params) {
            Ok(p) => format!("{} {}", p.method, p.url),
            Err(e) => format!("http (invalid: {})", e.message),
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
        let (status, body) = send(&ctx.deps.http, &p, timeout).await?;
        Ok(json!({ "status": status, "body": body }))
    }
}
