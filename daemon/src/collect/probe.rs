//! Blackbox-style HTTP probes, with blackbox_exporter's metric names
//! (`probe_success`, `probe_duration_seconds`, `probe_http_status_code`,
//! `probe_ssl_earliest_cert_expiry`, …) and config field names.
//!
//! Owns the probe request and its verdict. As with blackbox_exporter, a probe
//! that fails is a successful scrape reporting `probe_success 0`; `up` only
//! says whether homeostat could run the probe. The probe's own deadline stays
//! half a second under the scrape timeout so a slow endpoint reads as a failed
//! probe, not as a missing scrape.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use serde::Deserialize;

use super::native::{validate_target_labels, NativeSpec, NativeTarget};
use super::{CollectError, Collector, ScrapeBatch};
use crate::config::{PromDuration, Validator};

/// One probe under `collectors.http_probes.targets`.
#[derive(Debug, Clone, PartialEq, Default, Deserialize)]
#[serde(default)]
pub struct ProbeTarget {
    /// `http://` or `https://` URL to request.
    pub url: String,
    /// The `instance` label (default: the URL, as the blackbox convention).
    pub name: Option<String>,
    /// HTTP method (default GET).
    pub method: Option<String>,
    pub headers: BTreeMap<String, String>,
    /// Request body.
    pub body: Option<String>,
    /// Accepted status codes (default: any 2xx).
    pub valid_status_codes: Vec<u16>,
    /// The probe fails unless the body matches every one of these.
    pub fail_if_body_not_matches_regexp: Vec<String>,
    /// The probe fails if the body matches any of these.
    pub fail_if_body_matches_regexp: Vec<String>,
    /// Probe deadline (default and maximum: the scrape timeout minus 0.5s).
    pub timeout: Option<PromDuration>,
    pub tls_config: ProbeTls,
    pub labels: BTreeMap<String, String>,
}

/// TLS settings of a probe.
#[derive(Debug, Clone, PartialEq, Default, Deserialize)]
#[serde(default)]
pub struct ProbeTls {
    /// PEM file of CA certificates to trust besides the built-in roots.
    pub ca_file: Option<PathBuf>,
    /// Accept any certificate (the expiry is still reported).
    pub insecure_skip_verify: bool,
}

impl ProbeTarget {
    pub(crate) fn target(&self) -> NativeTarget {
        NativeTarget {
            instance: self.name.clone().unwrap_or_else(|| self.url.clone()),
            display: self.url.clone(),
            labels: self.labels.clone(),
            spec: NativeSpec::Probe(self.clone()),
        }
    }

    pub(crate) fn validate(&self, path: &str, v: &mut Validator) {
        match reqwest::Url::parse(&self.url) {
            Ok(u) if u.scheme() == "http" || u.scheme() == "https" => {}
            Ok(u) => v.error(
                format!("{path}.url"),
                format!("unsupported scheme {:?}: use http or https", u.scheme()),
            ),
            Err(e) => v.error(format!("{path}.url"), format!("not a valid URL: {e}")),
        }
        if let Some(m) = &self.method {
            if reqwest::Method::from_bytes(m.as_bytes()).is_err() {
                v.error(
                    format!("{path}.method"),
                    format!("{m:?} is not an HTTP method"),
                );
            }
        }
        for (i, c) in self.valid_status_codes.iter().enumerate() {
            if !(100..=599).contains(c) {
                v.error(
                    format!("{path}.valid_status_codes.{i}"),
                    format!("{c} is not an HTTP status code"),
                );
            }
        }
        for (field, list) in [
            (
                "fail_if_body_not_matches_regexp",
                &self.fail_if_body_not_matches_regexp,
            ),
            (
                "fail_if_body_matches_regexp",
                &self.fail_if_body_matches_regexp,
            ),
        ] {
            for (i, r) in list.iter().enumerate() {
                if let Err(e) = regex::Regex::new(r) {
                    v.error(
                        format!("{path}.{field}.{i}"),
                        format!("invalid regexp: {e}"),
                    );
                }
            }
        }
        for (k, val) in &self.headers {
            if reqwest::header::HeaderName::from_bytes(k.as_bytes()).is_err()
                || reqwest::header::HeaderValue::from_str(val).is_err()
            {
                v.error(format!("{path}.headers.{k}"), "not a valid HTTP header");
            }
        }
        if let Some(t) = self.timeout {
            if t.0.is_zero() {
                v.error(format!("{path}.timeout"), "must be greater than 0");
            }
        }
        if let Some(ca) = &self.tls_config.ca_file {
            if !ca.exists() {
                v.error(
                    format!("{path}.tls_config.ca_file"),
                    format!("{} does not exist", ca.display()),
                );
            }
        }
        validate_target_labels(path, &self.labels, v);
    }
}

pub const FAMILIES: &[(&str, &str, &str)] = &[
    (
        "probe_success",
        "gauge",
        "1 when the probe met every condition.",
    ),
    (
        "probe_duration_seconds",
        "gauge",
        "How long the probe took.",
    ),
    (
        "probe_http_status_code",
        "gauge",
        "Status code of the final response (0 when none arrived).",
    ),
    (
        "probe_http_content_length",
        "gauge",
        "Length of the response body, bytes.",
    ),
    ("probe_http_redirects", "gauge", "Redirects followed."),
    (
        "probe_http_ssl",
        "gauge",
        "1 when the final response came over TLS.",
    ),
    (
        "probe_ssl_earliest_cert_expiry",
        "gauge",
        "When the server's certificate expires, unix seconds.",
    ),
    (
        "probe_failed_due_to_regex",
        "gauge",
        "1 when a body regexp condition failed.",
    ),
];

/// Runs one probe per round.
pub struct ProbeCollector {
    target: ProbeTarget,
    deadline: Duration,
    client: Result<reqwest::Client, String>,
    /// Redirects the last request followed, written by the redirect policy.
    redirects: Arc<AtomicU32>,
    must_match: Vec<regex::Regex>,
    must_not_match: Vec<regex::Regex>,
}

impl ProbeCollector {
    pub fn new(target: ProbeTarget, scrape_timeout: Duration) -> Self {
        let cap = scrape_timeout
            .saturating_sub(Duration::from_millis(500))
            .max(Duration::from_millis(100));
        let deadline = target.timeout.map(|t| t.0.min(cap)).unwrap_or(cap);
        let redirects = Arc::new(AtomicU32::new(0));
        let client = Self::client(&target, deadline, redirects.clone());
        let compile = |list: &[String]| {
            list.iter()
                .filter_map(|r| regex::Regex::new(r).ok())
                .collect()
        };
        ProbeCollector {
            must_match: compile(&target.fail_if_body_not_matches_regexp),
            must_not_match: compile(&target.fail_if_body_matches_regexp),
            target,
            deadline,
            client,
            redirects,
        }
    }

    fn client(
        t: &ProbeTarget,
        deadline: Duration,
        redirects: Arc<AtomicU32>,
    ) -> Result<reqwest::Client, String> {
        // blackbox_exporter's limit, and it counts what it followed.
        let policy = reqwest::redirect::Policy::custom(move |a| {
            let n = a.previous().len();
            redirects.store(n as u32, Ordering::Relaxed);
            if n > 10 {
                a.error("more than 10 redirects")
            } else {
                a.follow()
            }
        });
        let mut b = reqwest::Client::builder()
            .redirect(policy)
            .timeout(deadline)
            .tls_info(true)
            .user_agent(concat!("homeostat/", env!("CARGO_PKG_VERSION")))
            .danger_accept_invalid_certs(t.tls_config.insecure_skip_verify);
        if let Some(ca) = &t.tls_config.ca_file {
            let pem = std::fs::read(ca)
                .map_err(|e| format!("cannot read tls_config.ca_file {}: {e}", ca.display()))?;
            let certs = reqwest::Certificate::from_pem_bundle(&pem)
                .map_err(|e| format!("tls_config.ca_file {}: {e}", ca.display()))?;
            for c in certs {
                b = b.add_root_certificate(c);
            }
        }
        b.build()
            .map_err(|e| format!("cannot build HTTP client: {e}"))
    }

    /// The verdict and what was measured; never an error, as a failed probe
    /// is a result.
    async fn probe(&self, client: &reqwest::Client) -> ProbeResult {
        let mut r = ProbeResult::default();
        let method = self
            .target
            .method
            .as_deref()
            .and_then(|m| reqwest::Method::from_bytes(m.as_bytes()).ok())
            .unwrap_or(reqwest::Method::GET);
        let mut req = client.request(method, &self.target.url);
        for (k, v) in &self.target.headers {
            req = req.header(k, v);
        }
        if let Some(b) = &self.target.body {
            req = req.body(b.clone());
        }
        self.redirects.store(0, Ordering::Relaxed);
        let started = Instant::now();
        let resp = match req.send().await {
            Ok(resp) => resp,
            Err(e) => {
                r.duration = started.elapsed();
                r.error = Some(error_chain(&e));
                return r;
            }
        };
        r.status = resp.status().as_u16();
        r.ssl = resp.url().scheme() == "https";
        if let Some(info) = resp.extensions().get::<reqwest::tls::TlsInfo>() {
            r.cert_expiry = info.peer_certificate().and_then(not_after);
        }
        r.redirects = self.redirects.load(Ordering::Relaxed);
        let body = match resp.bytes().await {
            Ok(b) => b,
            Err(e) => {
                r.duration = started.elapsed();
                r.error = Some(format!("reading body: {}", error_chain(&e)));
                return r;
            }
        };
        r.duration = started.elapsed();
        r.content_length = body.len();
        let status_ok = if self.target.valid_status_codes.is_empty() {
            (200..300).contains(&r.status)
        } else {
            self.target.valid_status_codes.contains(&r.status)
        };
        let text = String::from_utf8_lossy(&body);
        r.regex_failed = self.must_match.iter().any(|re| !re.is_match(&text))
            || self.must_not_match.iter().any(|re| re.is_match(&text));
        r.success = status_ok && !r.regex_failed;
        if !status_ok {
            r.error = Some(format!("unexpected status {}", r.status));
        } else if r.regex_failed {
            r.error = Some("body regexp condition failed".into());
        }
        r
    }
}

#[derive(Default)]
struct ProbeResult {
    success: bool,
    duration: Duration,
    status: u16,
    content_length: usize,
    redirects: u32,
    ssl: bool,
    cert_expiry: Option<i64>,
    regex_failed: bool,
    error: Option<String>,
}

/// The full cause of a request error ("error sending request: … connection refused").
fn error_chain(e: &dyn std::error::Error) -> String {
    let mut s = e.to_string();
    let mut src = e.source();
    while let Some(c) = src {
        s.push_str(": ");
        s.push_str(&c.to_string());
        src = c.source();
    }
    s
}

/// A DER certificate's notAfter, unix seconds.
fn not_after(der: &[u8]) -> Option<i64> {
    let (_, cert) = x509_parser::parse_x509_certificate(der).ok()?;
    Some(cert.validity().not_after.timestamp())
}

impl Collector for ProbeCollector {
    async fn collect(&mut self, out: &mut ScrapeBatch<'_>) -> Result<(), CollectError> {
        let client = self
            .client
            .as_ref()
            .map_err(|e| CollectError::Other(e.clone()))?;
        let mut r = tokio::time::timeout(self.deadline, self.probe(client))
            .await
            .unwrap_or_else(|_| ProbeResult {
                duration: self.deadline,
                error: Some(format!("probe timed out after {:?}", self.deadline)),
                ..Default::default()
            });
        if let Some(e) = r.error.take() {
            // Shown as the target's last error; the target itself stays up.
            out.warn(format!("probe failed: {e}"));
        }
        let b = |x: bool| if x { 1.0 } else { 0.0 };
        out.add("probe_success", &[], b(r.success))?;
        out.add("probe_duration_seconds", &[], r.duration.as_secs_f64())?;
        out.add("probe_http_status_code", &[], f64::from(r.status))?;
        out.add("probe_http_content_length", &[], r.content_length as f64)?;
        out.add("probe_http_redirects", &[], f64::from(r.redirects))?;
        out.add("probe_http_ssl", &[], b(r.ssl))?;
        out.add("probe_failed_due_to_regex", &[], b(r.regex_failed))?;
        if let Some(t) = r.cert_expiry {
            out.add("probe_ssl_earliest_cert_expiry", &[], t as f64)?;
        }
        Ok(())
    }
}
