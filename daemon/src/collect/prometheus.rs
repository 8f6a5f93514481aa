//! The Prometheus scrape collector: fetches `/metrics` over HTTP and feeds the
//! exposition parser's samples into the batch. Also the `scrape_configs` entry
//! that configures it, written as in `prometheus.yml`.
//!
//! Owns the HTTP exchange (headers Prometheus sends, gzip, status handling, the
//! body size limit). Timing, health and staleness belong to the scrape loop.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use serde::Deserialize;

use super::exposition::{Entry, Format, Parser};
use super::relabel::{valid_label_name, RelabelConfig};
use parking_lot::Mutex;

use super::{CollectError, Collector, MetadataMap, ScrapeBatch};
use crate::config::{ByteSize, GlobalConfig, PromDuration, Validator};

/// What Prometheus 2.42 asks for, so targets that negotiate answer us alike.
const ACCEPT: &str = "application/openmetrics-text;version=1.0.0,application/openmetrics-text;version=0.0.1;q=0.75,text/plain;version=0.0.4;q=0.5,*/*;q=0.1";

/// Default cap on one scrape's (uncompressed) body. Prometheus has no cap by
/// default; a runaway target should fail alone rather than exhaust memory.
pub const DEFAULT_BODY_SIZE_LIMIT: u64 = 64 << 20;

/// One scrape job.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(default)]
pub struct ScrapeConfig {
    /// Name of the job; becomes the `job` label.
    pub job_name: String,
    /// Defaults to `global.scrape_interval`.
    pub scrape_interval: Option<PromDuration>,
    /// Defaults to `global.scrape_timeout`, capped at the interval.
    pub scrape_timeout: Option<PromDuration>,
    pub metrics_path: String,
    /// `http` or `https`.
    pub scheme: String,
    /// Keep the target's labels when they clash with target labels.
    pub honor_labels: bool,
    /// Use the timestamps the target exposes.
    pub honor_timestamps: bool,
    /// Maximum uncompressed body size; `0` means the default (64MiB).
    pub body_size_limit: ByteSize,
    /// URL query parameters added to every scrape.
    pub params: BTreeMap<String, Vec<String>>,
    pub static_configs: Vec<StaticConfig>,
    pub file_sd_configs: Vec<FileSdConfig>,
    pub metric_relabel_configs: Vec<RelabelConfig>,
}

impl Default for ScrapeConfig {
    fn default() -> Self {
        ScrapeConfig {
            job_name: String::new(),
            scrape_interval: None,
            scrape_timeout: None,
            metrics_path: "/metrics".into(),
            scheme: "http".into(),
            honor_labels: false,
            honor_timestamps: true,
            body_size_limit: ByteSize(0),
            params: BTreeMap::new(),
            static_configs: Vec::new(),
            file_sd_configs: Vec::new(),
            metric_relabel_configs: Vec::new(),
        }
    }
}

/// A fixed list of targets with shared labels.
#[derive(Debug, Clone, PartialEq, Default, Deserialize)]
#[serde(default)]
pub struct StaticConfig {
    /// `host:port` of each target.
    pub targets: Vec<String>,
    pub labels: BTreeMap<String, String>,
}

/// Target lists read from JSON or YAML files, in Prometheus's file_sd format.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(default)]
pub struct FileSdConfig {
    /// File paths or globs (`targets/*.json`); relative to the config file.
    pub files: Vec<PathBuf>,
    /// Files are checked for changes every second and re-read when they
    /// change; this forces a full re-read regardless (default 5m).
    pub refresh_interval: PromDuration,
}

impl Default for FileSdConfig {
    fn default() -> Self {
        FileSdConfig {
            files: Vec::new(),
            refresh_interval: PromDuration::from_secs(300),
        }
    }
}

pub(crate) fn valid_address(t: &str) -> Result<(), String> {
    if t.contains('/') {
        return Err(format!(
            "{t:?} is not a valid target address: write host:port without a scheme or path"
        ));
    }
    match t.rsplit_once(':') {
        Some((host, port)) if !host.is_empty() && port.parse::<u16>().is_ok() => Ok(()),
        _ => Err(format!(
            "{t:?} is not a valid target address: expected host:port"
        )),
    }
}

impl ScrapeConfig {
    pub(crate) fn inherit(&mut self, g: &GlobalConfig) {
        let interval = *self.scrape_interval.get_or_insert(g.scrape_interval);
        if self.scrape_timeout.is_none() {
            // Prometheus: an inherited timeout never exceeds the job's interval.
            self.scrape_timeout = Some(g.timeout().min(interval));
        }
    }

    pub fn interval(&self) -> Duration {
        self.scrape_interval
            .map(|d| d.0)
            .unwrap_or(Duration::from_secs(15))
    }

    pub fn timeout(&self) -> Duration {
        self.scrape_timeout
            .map(|d| d.0)
            .unwrap_or(Duration::from_secs(10))
    }

    pub fn body_limit(&self) -> u64 {
        if self.body_size_limit.0 == 0 {
            DEFAULT_BODY_SIZE_LIMIT
        } else {
            self.body_size_limit.0
        }
    }

    pub fn validate(&self, path: &str, v: &mut Validator) {
        if self.job_name.is_empty() {
            v.error(format!("{path}.job_name"), "job_name is required");
        }
        if self.interval().is_zero() {
            v.error(format!("{path}.scrape_interval"), "must be greater than 0");
        }
        if self.timeout() > self.interval() {
            v.error(
                format!("{path}.scrape_timeout"),
                format!(
                    "scrape_timeout {} is greater than scrape_interval {}",
                    PromDuration(self.timeout()),
                    PromDuration(self.interval())
                ),
            );
        }
        if self.timeout().is_zero() {
            v.error(format!("{path}.scrape_timeout"), "must be greater than 0");
        }
        if !self.metrics_path.starts_with('/') {
            v.error(format!("{path}.metrics_path"), "must start with '/'");
        }
        if self.scheme != "http" && self.scheme != "https" {
            v.error(
                format!("{path}.scheme"),
                format!("unsupported scheme {:?}: use http or https", self.scheme),
            );
        }
        for (i, sc) in self.static_configs.iter().enumerate() {
            for (j, t) in sc.targets.iter().enumerate() {
                if let Err(e) = valid_address(t) {
                    v.error(format!("{path}.static_configs.{i}.targets.{j}"), e);
                }
            }
            for name in sc.labels.keys() {
                if !valid_label_name(name) {
                    v.error(
                        format!("{path}.static_configs.{i}.labels.{name}"),
                        format!("{name:?} is not a valid label name"),
                    );
                }
            }
        }
        for (i, fc) in self.file_sd_configs.iter().enumerate() {
            if fc.files.is_empty() {
                v.error(
                    format!("{path}.file_sd_configs.{i}.files"),
                    "at least one file or glob is required",
                );
            }
            for (j, f) in fc.files.iter().enumerate() {
                let ext_ok = f
                    .extension()
                    .and_then(|e| e.to_str())
                    .is_some_and(|e| matches!(e, "json" | "yml" | "yaml"));
                if !ext_ok {
                    v.error(
                        format!("{path}.file_sd_configs.{i}.files.{j}"),
                        format!(
                            "{}: file_sd files must end in .json, .yml or .yaml",
                            f.display()
                        ),
                    );
                } else if let Some(s) = f.to_str() {
                    if let Err(e) = glob::Pattern::new(s) {
                        v.error(
                            format!("{path}.file_sd_configs.{i}.files.{j}"),
                            format!("invalid glob: {e}"),
                        );
                    }
                }
            }
        }
        for (i, r) in self.metric_relabel_configs.iter().enumerate() {
            r.validate(&format!("{path}.metric_relabel_configs.{i}"), v);
        }
    }
}

/// Scrapes one URL.
pub struct HttpCollector {
    client: reqwest::Client,
    url: String,
    timeout: Duration,
    body_limit: u64,
    buf: Vec<u8>,
    metadata: Arc<Mutex<MetadataMap>>,
    scratch: MetadataMap,
}

impl HttpCollector {
    pub fn new(
        client: reqwest::Client,
        url: String,
        timeout: Duration,
        body_limit: u64,
        metadata: Arc<Mutex<MetadataMap>>,
    ) -> Self {
        HttpCollector {
            client,
            url,
            timeout,
            body_limit,
            buf: Vec::new(),
            metadata,
            scratch: MetadataMap::new(),
        }
    }

    /// A client for one job: gzip on, rustls, per-request timeout as a backstop
    /// to the loop's own.
    pub fn client(timeout: Duration) -> Result<reqwest::Client, reqwest::Error> {
        reqwest::Client::builder()
            .gzip(true)
            .timeout(timeout)
            .connect_timeout(timeout)
            .user_agent(concat!("homeostat/", env!("CARGO_PKG_VERSION")))
            .pool_max_idle_per_host(1)
            .build()
    }

    async fn fetch(&mut self) -> Result<Format, CollectError> {
        let mut resp = self
            .client
            .get(&self.url)
            .header(reqwest::header::ACCEPT, ACCEPT)
            .header(
                "X-Prometheus-Scrape-Timeout-Seconds",
                format!("{}", self.timeout.as_secs_f64()),
            )
            .send()
            .await
            .map_err(|e| CollectError::Http(describe(&e)))?;
        if resp.status() != reqwest::StatusCode::OK {
            return Err(CollectError::Status(resp.status().to_string()));
        }
        let format = resp
            .headers()
            .get(reqwest::header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .map(Format::from_content_type)
            .unwrap_or(Format::Text);
        self.buf.clear();
        while let Some(chunk) = resp
            .chunk()
            .await
            .map_err(|e| CollectError::Http(describe(&e)))?
        {
            if (self.buf.len() + chunk.len()) as u64 > self.body_limit {
                return Err(CollectError::BodyTooLarge {
                    limit: self.body_limit,
                });
            }
            self.buf.extend_from_slice(&chunk);
        }
        // A huge scrape once should not pin its buffer for the target's life.
        if self.buf.capacity() > 4 * self.buf.len().max(1 << 20) {
            self.buf.shrink_to(self.buf.len());
        }
        Ok(format)
    }
}

/// reqwest's Display hides the cause ("error sending request"); the chain is
/// what an engineer needs ("connection refused").
fn describe(e: &reqwest::Error) -> String {
    let mut s = e.to_string();
    let mut src = std::error::Error::source(e);
    while let Some(inner) = src {
        s.push_str(": ");
        s.push_str(&inner.to_string());
        src = inner.source();
    }
    s
}

impl Collector for HttpCollector {
    async fn collect(&mut self, out: &mut ScrapeBatch<'_>) -> Result<(), CollectError> {
        let format = self.fetch().await?;
        self.scratch.clear();
        feed(&self.buf, format, out, Some(&mut self.scratch))?;
        let mut shared = self.metadata.lock();
        if *shared != self.scratch {
            std::mem::swap(&mut *shared, &mut self.scratch);
        }
        Ok(())
    }
}

/// Parses a body into the batch; the first malformed line fails the scrape.
/// `# HELP`, `# TYPE` and `# UNIT` lines go to `meta` when given.
pub fn feed(
    body: &[u8],
    format: Format,
    out: &mut ScrapeBatch<'_>,
    mut meta: Option<&mut MetadataMap>,
) -> Result<(), CollectError> {
    let mut parser = Parser::new(body, format);
    while let Some(entry) = parser.next_entry() {
        let s = match entry? {
            Entry::Sample(s) => s,
            Entry::Help { metric, text } => {
                if let Some(m) = meta.as_deref_mut() {
                    m.entry(metric.to_string()).or_default().help = text.into_owned();
                }
                continue;
            }
            Entry::Type { metric, kind } => {
                if let Some(m) = meta.as_deref_mut() {
                    m.entry(metric.to_string()).or_default().kind = kind.as_str().to_string();
                }
                continue;
            }
            Entry::Unit { metric, unit } => {
                if let Some(m) = meta.as_deref_mut() {
                    m.entry(metric.to_string()).or_default().unit = unit.to_string();
                }
                continue;
            }
            _ => continue,
        };
        out.add_with(
            s.series,
            |labels| {
                labels.push(("__name__".to_string(), s.name.to_string()));
                for l in s.labels() {
                    let (n, v) = l?;
                    if n == "__name__" {
                        return Err(CollectError::Labels(format!(
                            "label __name__ is not allowed in a label set: {}",
                            String::from_utf8_lossy(s.series)
                        )));
                    }
                    labels.push((n.to_string(), v.into_owned()));
                }
                Ok(())
            },
            s.timestamp_ms,
            s.value,
        )?;
    }
    Ok(())
}
