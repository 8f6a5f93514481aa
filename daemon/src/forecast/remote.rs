//! Training history from a remote Prometheus (or anything that answers its
//! `/api/v1/query_range`: Thanos, Mimir, VictoriaMetrics, another homeostat),
//! so a forecast or autoscaler added today learns from the weeks that server
//! already holds instead of waiting for homeostat's own history to grow.
//!
//! Owns the `history:` config section and the HTTP calls; it must not write
//! the state database or decide what to keep (that is [`super::history`]).

use std::sync::Arc;
use std::time::Duration;

use parking_lot::RwLock;
use serde::Deserialize;

use crate::config::{PromDuration, Secret, Validator};

/// Steps asked for per request: under Prometheus's 11,000 points per series.
const STEPS_PER_REQUEST: i64 = 10_000;
/// Largest answer read per request; a bigger one fails the backfill.
const MAX_BODY: usize = 64 << 20;

/// `history:` — where past data for forecasts and autoscalers may come from.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct HistorySourceConfig {
    /// Base URL of a Prometheus-compatible server, e.g. `http://prometheus:9090`.
    /// Unset: history starts with what homeostat itself has stored.
    pub prometheus_url: Option<String>,
    /// Per request.
    pub timeout: PromDuration,
    /// Sent as `Authorization: Bearer` when set.
    pub bearer_token: Option<Secret>,
}

impl Default for HistorySourceConfig {
    fn default() -> Self {
        HistorySourceConfig {
            prometheus_url: None,
            timeout: PromDuration::from_secs(30),
            bearer_token: None,
        }
    }
}

impl HistorySourceConfig {
    pub fn validate(&self, path: &str, v: &mut Validator) {
        if let Some(u) = &self.prometheus_url {
            match reqwest::Url::parse(u) {
                Ok(url) if matches!(url.scheme(), "http" | "https") => {}
                _ => v.error(
                    format!("{path}.prometheus_url"),
                    format!("{u:?} is not an http(s) URL (e.g. http://prometheus:9090)"),
                ),
            }
        }
        if self.timeout.0.is_zero() {
            v.error(format!("{path}.timeout"), "must be greater than 0");
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum RemoteError {
    #[error("request to {url} failed: {source}")]
    Http {
        url: String,
        #[source]
        source: reqwest::Error,
    },
    #[error("{url} answered {status}: {message}")]
    Status {
        url: String,
        status: u16,
        message: String,
    },
    #[error("{url}: answer larger than {MAX_BODY} bytes")]
    TooLarge { url: String },
    #[error("{url}: not a query_range answer: {reason}")]
    Shape { url: String, reason: String },
}

/// A configured remote source; cheap to clone.
#[derive(Clone)]
pub struct RemoteHistory {
    client: reqwest::Client,
    base: String,
    timeout: Duration,
    token: Option<Secret>,
}

/// Shared between the daemon (which swaps it on reload) and the runners
/// (which read it when a feed opens).
pub type SharedRemote = Arc<RwLock<Option<RemoteHistory>>>;

impl RemoteHistory {
    pub fn from_config(cfg: &HistorySourceConfig, client: &reqwest::Client) -> Option<Self> {
        cfg.prometheus_url.as_ref().map(|u| RemoteHistory {
            client: client.clone(),
            base: u.trim_end_matches('/').to_string(),
            timeout: cfg.timeout.0,
            token: cfg.bearer_token.clone(),
        })
    }

    pub fn url(&self) -> &str {
        &self.base
    }

    /// `expr` on the grid `start_ms, start_ms + step_ms, … ≤ end_ms`, its series
    /// summed per timestamp (as the local sampler does); timestamps with no
    /// finite value are left out.
    pub async fn fetch(
        &self,
        expr: &str,
        start_ms: i64,
        end_ms: i64,
        step_ms: i64,
    ) -> Result<Vec<(i64, f64)>, RemoteError> {
        let mut out: std::collections::BTreeMap<i64, f64> = Default::default();
        let mut from = start_ms;
        while from <= end_ms {
            let to = (from + step_ms * (STEPS_PER_REQUEST - 1)).min(end_ms);
            for (t, v) in self.one(expr, from, to, step_ms).await? {
                *out.entry(t).or_default() += v;
            }
            from = to + step_ms;
        }
        Ok(out.into_iter().collect())
    }

    async fn one(
        &self,
        expr: &str,
        from: i64,
        to: i64,
        step: i64,
    ) -> Result<Vec<(i64, f64)>, RemoteError> {
        let url = format!("{}/api/v1/query_range", self.base);
        let secs = |ms: i64| format!("{:.3}", ms as f64 / 1000.0);
        let mut req = self.client.post(&url).timeout(self.timeout).form(&[
            ("query", expr.to_string()),
            ("start", secs(from)),
            ("end", secs(to)),
            ("step", secs(step)),
        ]);
        if let Some(t) = &self.token {
            req = req.bearer_auth(t.expose());
        }
        let http = |source| RemoteError::Http {
            url: url.clone(),
            source,
        };
        let mut rsp = req.send().await.map_err(http)?;
        let status = rsp.status().as_u16();
        let mut body = Vec::new();
        while let Some(chunk) = rsp.chunk().await.map_err(http)? {
            if body.len() + chunk.len() > MAX_BODY {
                return Err(RemoteError::TooLarge { url });
            }
            body.extend_from_slice(&chunk);
        }
        let v: serde_json::Value =
            serde_json::from_slice(&body).map_err(|e| RemoteError::Shape {
                url: url.clone(),
                reason: e.to_string(),
            })?;
        if status != 200 || v["status"] != "success" {
            return Err(RemoteError::Status {
                url,
                status,
                message: v["error"]
                    .as_str()
                    .unwrap_or("no error message")
                    .to_string(),
            });
        }
        parse_matrix(&v["data"]).map_err(|e| RemoteError::Shape { url, reason: e })
    }
}

/// `data` of a query_range answer → (ms, value) pairs of every series.
fn parse_matrix(data: &serde_json::Value) -> Result<Vec<(i64, f64)>, String> {
    if data["resultType"] != "matrix" {
        return Err(format!("resultType {} (want matrix)", data["resultType"]));
    }
    let mut out = Vec::new();
    for series in data["result"].as_array().ok_or("no result array")? {
        for pair in series["values"].as_array().ok_or("series without values")? {
            let t = pair[0].as_f64().ok_or("timestamp is not a number")?;
            let v: f64 = pair[1]
                .as_str()
                .ok_or("value is not a string")?
                .parse()
                .map_err(|e| format!("value: {e}"))?;
            if v.is_finite() {
                out.push(((t * 1000.0).round() as i64, v));
            }
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn matrix_series_are_flattened_and_non_finite_dropped() {
        let d = json!({"resultType": "matrix", "result": [
            {"metric": {"a": "1"}, "values": [[1700000000, "1.5"], [1700000060.5, "NaN"]]},
            {"metric": {"a": "2"}, "values": [[1700000000, "2"]]},
        ]});
        assert_eq!(
            parse_matrix(&d).unwrap(),
            vec![(1_700_000_000_000, 1.5), (1_700_000_000_000, 2.0)]
        );
        assert!(parse_matrix(&json!({"resultType": "vector", "result": []})).is_err());
        assert!(
            parse_matrix(&json!({"resultType": "matrix", "result": [{"values": [[1, 2]]}]}))
                .is_err()
        );
    }

    #[test]
    fn config_validation() {
        let mut v = Validator::new();
        HistorySourceConfig {
            prometheus_url: Some("prometheus:9090".into()),
            timeout: PromDuration::from_secs(0),
            bearer_token: None,
        }
        .validate("history", &mut v);
        let text = format!("{:?}", v.issues);
        assert!(text.contains("history.prometheus_url"), "{text}");
        assert!(text.contains("history.timeout"), "{text}");
    }
}
