//! The one YAML config: loading, `${ENV}` interpolation, validation, and the
//! embedded default.
//!
//! Loading is two-phase, as in Vector and ripgrep: serde reads the raw text into
//! the typed sections (each section's type lives beside the component that uses
//! it), then every section validates itself and reports *all* problems at once,
//! each with file, line and field. Unknown keys are collected through
//! `serde_ignored` instead of `deny_unknown_fields`, so one typo does not hide the
//! next. This module never starts anything; reload decisions live in the daemon.

mod env;
pub mod locate;
mod secret;
pub mod units;

use std::collections::BTreeMap;
use std::fmt;
use std::path::{Path, PathBuf};

use serde::Deserialize;

pub use secret::Secret;
pub use units::{ByteSize, PromDuration};

use crate::collect::prometheus::ScrapeConfig;
use crate::notify::AlertingConfig;
use crate::query::QueryConfig;
use crate::rules::RulesConfig;
use crate::state::StateConfig;
use crate::store::StorageConfig;
use crate::web::WebConfig;

/// The config used by `homeostat run` without `--config`: no external service,
/// homeostat scrapes its own `/metrics`.
pub const EMBEDDED_DEFAULT: &str = include_str!("default.yaml");

/// The whole daemon config (`homeostat.yaml`).
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(default)]
pub struct Config {
    /// Defaults shared by every scrape job.
    pub global: GlobalConfig,
    /// HTTP server: dashboard, API, webhooks in, `/metrics`.
    pub web: WebConfig,
    /// The in-memory series store.
    pub storage: StorageConfig,
    /// PromQL engine limits.
    pub query: QueryConfig,
    /// The durable state database.
    pub state: StateConfig,
    /// Prometheus-format scrape jobs, written as in `prometheus.yml`.
    pub scrape_configs: Vec<ScrapeConfig>,
    /// Native collectors: GPUs, PostgreSQL, PgBouncer, Redis, Azure, cgroups,
    /// HTTP probes. Each is a scrape job of its own.
    pub collectors: crate::collect::native::CollectorsConfig,
    /// Prometheus rule files (globs; relative to this file), loaded unchanged.
    pub rule_files: Vec<String>,
    /// How rules are evaluated.
    pub rules: RulesConfig,
    /// Alertmanagers to deliver alerts to, written as in `prometheus.yml`.
    pub alerting: AlertingConfig,
    /// Remediation playbook files (globs; relative to this file).
    pub playbook_files: Vec<String>,
    /// How playbooks run: global dry-run and pause, escalation.
    pub playbooks: crate::playbooks::PlaybooksConfig,
    /// What actions may touch: HAProxy runtime APIs, PgBouncer configs, the
    /// environment of commands.
    pub act: crate::act::ActConfig,
    /// Circuit breakers served to the platform's applications.
    pub breakers: crate::act::BreakersConfig,
    /// Routing tree, receivers (Slack, PagerDuty, email, webhook),
    /// inhibition and time intervals, written as in `alertmanager.yml`.
    pub notify: crate::notify::NotifyConfig,
    /// Webhooks homeostat accepts: Alertmanager, PagerDuty, Slack.
    pub hooks: crate::web::hooks::HooksConfig,
    /// Learned forecasts published as `homeostat_forecast` series.
    pub forecasts: Vec<crate::forecast::ForecastConfig>,
    /// Predictive autoscalers, each acting through a playbook's `scale` step.
    pub autoscale: Vec<crate::autoscale::AutoscaleConfig>,
    /// Where forecasts and autoscalers may read past data (a remote Prometheus).
    pub history: crate::forecast::remote::HistorySourceConfig,
}

/// Settings every job inherits unless it sets its own.
#[derive(Debug, Clone, Deserialize)]
#[serde(default)]
pub struct GlobalConfig {
    /// How often to scrape targets (default 15s).
    pub scrape_interval: PromDuration,
    /// Per-scrape timeout (default 10s, or the interval when that is shorter).
    pub scrape_timeout: Option<PromDuration>,
    /// How often rule groups are evaluated unless a group sets its own
    /// `interval` (default 1m, as in Prometheus).
    pub evaluation_interval: PromDuration,
    /// Labels added to alerts sent out (never overriding the alert's own)
    /// and available to templates as `$externalLabels`.
    pub external_labels: BTreeMap<String, String>,
}

impl GlobalConfig {
    /// The timeout in force: as set, or 10s capped at the interval (Prometheus).
    pub fn timeout(&self) -> PromDuration {
        self.scrape_timeout
            .unwrap_or(PromDuration::from_secs(10).min(self.scrape_interval))
    }
}

impl Default for GlobalConfig {
    fn default() -> Self {
        GlobalConfig {
            scrape_interval: PromDuration::from_secs(15),
            scrape_timeout: None,
            evaluation_interval: PromDuration::from_secs(60),
            external_labels: BTreeMap::new(),
        }
    }
}

/// Where a config came from; relative paths inside it resolve against `base_dir`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ConfigSource {
    Embedded,
    File(PathBuf),
}

impl ConfigSource {
    pub fn name(&self) -> String {
        match self {
            ConfigSource::Embedded => "<embedded default config>".into(),
            ConfigSource::File(p) => p.display().to_string(),
        }
    }

    /// Directory that relative paths in the config are resolved against, as
    /// Prometheus does for `file_sd_configs` and rule files.
    pub fn base_dir(&self) -> PathBuf {
        match self {
            ConfigSource::Embedded => PathBuf::from("."),
            ConfigSource::File(p) => p
                .parent()
                .filter(|d| !d.as_os_str().is_empty())
                .map(Path::to_path_buf)
                .unwrap_or_else(|| PathBuf::from(".")),
        }
    }
}

/// A validated config with its origin.
#[derive(Debug, Clone)]
pub struct LoadedConfig {
    pub config: Config,
    pub source: ConfigSource,
}

impl LoadedConfig {
    pub fn resolve_path(&self, p: &Path) -> PathBuf {
        if p.is_absolute() {
            p.to_path_buf()
        } else {
            self.source.base_dir().join(p)
        }
    }
}

/// One problem in a config file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigIssue {
    /// Dotted field path (`scrape_configs.0.scrape_timeout`), when known.
    pub path: Option<String>,
    pub line: Option<usize>,
    pub column: Option<usize>,
    pub message: String,
}

impl ConfigIssue {
    pub fn at_path(path: impl Into<String>, message: impl Into<String>) -> Self {
        ConfigIssue {
            path: Some(path.into()),
            line: None,
            column: None,
            message: message.into(),
        }
    }

    pub fn at_line(line: usize, message: String) -> Self {
        ConfigIssue {
            path: None,
            line: Some(line),
            column: None,
            message,
        }
    }
}

/// Every problem found in one file.
#[derive(Debug, Clone, thiserror::Error)]
pub struct ConfigError {
    pub file: String,
    pub issues: Vec<ConfigIssue>,
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let n = self.issues.len();
        write!(
            f,
            "{}: {n} error{}",
            self.file,
            if n == 1 { "" } else { "s" }
        )?;
        for i in &self.issues {
            write!(f, "\n  {}", self.file)?;
            if let Some(l) = i.line {
                write!(f, ":{l}")?;
                if let Some(c) = i.column {
                    write!(f, ":{c}")?;
                }
            }
            f.write_str(": ")?;
            if let Some(p) = &i.path {
                write!(f, "{}: ", locate::display_path(p))?;
            }
            f.write_str(&i.message)?;
        }
        Ok(())
    }
}

/// `${VAR}` / `${VAR:-default}` interpolation from the process environment,
/// as in the config file, for the other YAML files homeostat reads.
pub fn interpolate_env(text: &str) -> Result<String, Vec<ConfigIssue>> {
    env::interpolate(text, &|k| std::env::var(k).ok())
}

/// Collects validation problems under a field path.
pub struct Validator {
    pub(crate) issues: Vec<ConfigIssue>,
}

impl Validator {
    pub(crate) fn new() -> Self {
        Validator { issues: Vec::new() }
    }

    /// Records a problem with the field at `path` (dotted, with list indexes).
    pub fn error(&mut self, path: impl Into<String>, message: impl Into<String>) {
        self.issues.push(ConfigIssue::at_path(path, message));
    }
}

impl Config {
    /// Reads and validates a config file.
    pub fn load_file(path: &Path) -> Result<LoadedConfig, ConfigError> {
        let source = ConfigSource::File(path.to_path_buf());
        let text = std::fs::read_to_string(path).map_err(|e| ConfigError {
            file: source.name(),
            issues: vec![ConfigIssue {
                path: None,
                line: None,
                column: None,
                message: format!("cannot read config file: {e}"),
            }],
        })?;
        Self::load_str(&text, source)
    }

    /// The embedded default config, through the same path as a file.
    pub fn load_embedded() -> Result<LoadedConfig, ConfigError> {
        Self::load_str(EMBEDDED_DEFAULT, ConfigSource::Embedded)
    }

    pub fn load_str(text: &str, source: ConfigSource) -> Result<LoadedConfig, ConfigError> {
        Self::load_with_env(text, source, &|k| std::env::var(k).ok())
    }

    pub fn load_with_env(
        raw: &str,
        source: ConfigSource,
        lookup: &dyn Fn(&str) -> Option<String>,
    ) -> Result<LoadedConfig, ConfigError> {
        let fail = |issues| ConfigError {
            file: source.name(),
            issues,
        };
        let text = env::interpolate(raw, lookup).map_err(fail)?;
        let index = locate::LineIndex::build(&text);

        let (mut config, mut issues) = parse_tracked::<Config>(&text, &index);

        if let Some(c) = config.as_mut() {
            c.resolve_defaults();
            let mut v = Validator::new();
            c.validate(&mut v);
            issues.extend(v.issues);
        }

        for i in &mut issues {
            if i.line.is_none() {
                if let Some((l, c)) = i.path.as_deref().and_then(|p| index.locate(p)) {
                    i.line = Some(l);
                    i.column = Some(c);
                }
            }
        }
        issues.sort_by_key(|i| (i.line.unwrap_or(0), i.column.unwrap_or(0)));

        match config {
            Some(config) if issues.is_empty() => Ok(LoadedConfig { config, source }),
            _ => Err(fail(issues)),
        }
    }

    /// Fills per-job values inherited from `global`, as Prometheus does.
    fn resolve_defaults(&mut self) {
        for job in &mut self.scrape_configs {
            job.inherit(&self.global);
        }
    }

    fn validate(&self, v: &mut Validator) {
        if self.global.scrape_interval.0.is_zero() {
            v.error("global.scrape_interval", "must be greater than 0");
        }
        if self.global.timeout() > self.global.scrape_interval {
            v.error(
                "global.scrape_timeout",
                format!(
                    "scrape_timeout {} is greater than scrape_interval {}",
                    self.global.timeout(),
                    self.global.scrape_interval
                ),
            );
        }
        for name in self.global.external_labels.keys() {
            if !crate::collect::relabel::valid_label_name(name) {
                v.error(
                    format!("global.external_labels.{name}"),
                    format!("{name:?} is not a valid label name"),
                );
            }
        }
        if self.global.evaluation_interval.0.is_zero() {
            v.error("global.evaluation_interval", "must be greater than 0");
        }
        self.rules.validate("rules", v);
        self.alerting.validate("alerting", v);
        for (i, f) in self.rule_files.iter().enumerate() {
            if let Err(e) = glob::Pattern::new(f) {
                v.error(
                    format!("rule_files.{i}"),
                    format!("{f:?} is not a valid glob: {e}"),
                );
            }
        }
        for (i, f) in self.playbook_files.iter().enumerate() {
            if let Err(e) = glob::Pattern::new(f) {
                v.error(
                    format!("playbook_files.{i}"),
                    format!("{f:?} is not a valid glob: {e}"),
                );
            }
        }
        self.playbooks.validate("playbooks", v);
        self.act.validate("act", v);
        self.breakers.validate("breakers", v);
        self.notify.validate("notify", v);
        self.hooks.validate("hooks", v);
        crate::forecast::runner::validate_all(&self.forecasts, "forecasts", v);
        crate::autoscale::validate_all(&self.autoscale, "autoscale", v);
        self.history.validate("history", v);
        self.web.validate("web", v);
        self.storage.validate("storage", v);
        self.query.validate("query", v);
        self.state.validate("state", v);
        let mut seen = std::collections::HashMap::new();
        for (i, job) in self.scrape_configs.iter().enumerate() {
            let path = format!("scrape_configs.{i}");
            if let Some(first) = seen.insert(job.job_name.clone(), i) {
                v.error(
                    format!("{path}.job_name"),
                    format!(
                        "duplicate job_name {:?} (first used by scrape_configs[{first}])",
                        job.job_name
                    ),
                );
            }
            job.validate(&path, v);
        }
        self.collectors.validate("collectors", &self.global, v);
        for job in self.collectors.jobs(&self.global) {
            if let Some(i) = seen.get(&job.job_name) {
                v.error(
                    "collectors",
                    format!(
                        "job name {:?} is used by scrape_configs[{i}] and by a collector: set the collector's job_name",
                        job.job_name
                    ),
                );
            }
        }
    }
}

/// Deserializes a YAML document, collecting every unknown key and the first
/// type error as issues with their field path and position. Shared by the
/// config and rule files, which report problems the same way.
pub fn parse_tracked<T: serde::de::DeserializeOwned>(
    text: &str,
    index: &locate::LineIndex,
) -> (Option<T>, Vec<ConfigIssue>) {
    let mut issues = Vec::new();
    // path_to_error must be the outer wrapper: inside serde_ignored it
    // loses the field segment of errors raised by custom types.
    let mut unknown = Vec::new();
    let mut on_unknown = |p: serde_ignored::Path<'_>| unknown.push(path_string(&p));
    let de = serde_ignored::Deserializer::new(
        serde_norway::Deserializer::from_str(text),
        &mut on_unknown,
    );
    let mut track = serde_path_to_error::Track::new();
    let parsed: Result<T, _> =
        serde::Deserialize::deserialize(serde_path_to_error::Deserializer::new(de, &mut track));
    for p in unknown {
        let field = p.rsplit('.').next().unwrap_or(&p).to_string();
        issues.push(ConfigIssue::at_path(p, format!("unknown field {field:?}")));
    }
    let value = match parsed {
        Ok(c) => Some(c),
        Err(e) => {
            let path = tracked_path(&track.path());
            // serde_norway points at the enclosing mapping; the index
            // knows where the offending field itself is.
            let pos = index
                .locate(&path)
                .or_else(|| e.location().map(|l| (l.line(), l.column())));
            issues.push(ConfigIssue {
                path: (!path.is_empty()).then_some(path),
                line: pos.map(|p| p.0),
                column: pos.map(|p| p.1),
                message: bare_message(&e.to_string()),
            });
            None
        }
    };
    for i in &mut issues {
        if i.line.is_none() {
            if let Some((l, c)) = i.path.as_deref().and_then(|p| index.locate(p)) {
                i.line = Some(l);
                i.column = Some(c);
            }
        }
    }
    (value, issues)
}

/// serde_norway's message without its own path prefix and position suffix,
/// which the issue carries separately.
fn bare_message(msg: &str) -> String {
    let msg = match msg.find(" at line ") {
        Some(i) => &msg[..i],
        None => msg,
    };
    match msg.split_once(": ") {
        Some((prefix, rest)) if !prefix.contains(' ') => rest.to_string(),
        _ => msg.to_string(),
    }
}

fn tracked_path(p: &serde_path_to_error::Path) -> String {
    use serde_path_to_error::Segment;
    let mut out = String::new();
    for seg in p.iter() {
        let s = match seg {
            Segment::Seq { index } => index.to_string(),
            Segment::Map { key } => key.clone(),
            Segment::Enum { variant } => variant.clone(),
            Segment::Unknown => continue,
        };
        out = join(out, &s);
    }
    out
}

fn path_string(p: &serde_ignored::Path<'_>) -> String {
    use serde_ignored::Path;
    match p {
        Path::Root => String::new(),
        Path::Seq { parent, index } => join(path_string(parent), &index.to_string()),
        Path::Map { parent, key } => join(path_string(parent), key),
        Path::Some { parent }
        | Path::NewtypeStruct { parent }
        | Path::NewtypeVariant { parent } => path_string(parent),
    }
}

fn join(base: String, seg: &str) -> String {
    if base.is_empty() {
        seg.to_string()
    } else {
        format!("{base}.{seg}")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn load(text: &str) -> Result<LoadedConfig, ConfigError> {
        Config::load_with_env(text, ConfigSource::File("test.yaml".into()), &|k| {
            (k == "PORT").then(|| "9100".to_string())
        })
    }

    #[test]
    fn embedded_default_is_valid() {
        let c = Config::load_embedded().expect("embedded config must load");
        assert_eq!(c.config.web.listen_address, "127.0.0.1:9400");
        assert_eq!(c.config.scrape_configs.len(), 1);
        assert_eq!(c.config.scrape_configs[0].job_name, "homeostat");
    }

    #[test]
    fn empty_file_gives_defaults() {
        let c = load("").unwrap().config;
        assert_eq!(c.global.scrape_interval, PromDuration::from_secs(15));
        assert!(c.scrape_configs.is_empty());
    }

    #[test]
    fn interpolates_and_inherits_global() {
        let c = load(
            "global:\n  scrape_interval: 30s\nscrape_configs:\n  - job_name: a\n    static_configs:\n      - targets: ['127.0.0.1:${PORT}']\n",
        )
        .unwrap()
        .config;
        let job = &c.scrape_configs[0];
        assert_eq!(job.static_configs[0].targets[0], "127.0.0.1:9100");
        assert_eq!(job.interval(), std::time::Duration::from_secs(30));
        assert_eq!(job.timeout(), std::time::Duration::from_secs(10));
    }

    #[test]
    fn reports_all_errors_with_lines_and_fields() {
        let err = load(
            "global:\n  scrape_interval: 5s\n  bogus: 1\nscrape_configs:\n  - job_name: a\n    scrape_timeout: 10s\n    static_configs:\n      - targets: ['nohost']\n  - job_name: a\n    metrics_pth: /m\n",
        )
        .unwrap_err();
        let text = err.to_string();
        assert!(
            text.contains("test.yaml:3:3: global.bogus: unknown field \"bogus\""),
            "{text}"
        );
        assert!(
            text.contains("test.yaml:6:5: scrape_configs[0].scrape_timeout"),
            "{text}"
        );
        assert!(
            text.contains("test.yaml:8:19: scrape_configs[0].static_configs[0].targets[0]"),
            "{text}"
        );
        assert!(
            text.contains("test.yaml:9:5: scrape_configs[1].job_name: duplicate job_name"),
            "{text}"
        );
        assert!(
            text.contains("test.yaml:10:5: scrape_configs[1].metrics_pth: unknown field"),
            "{text}"
        );
        assert_eq!(err.issues.len(), 5, "{text}");
    }

    #[test]
    fn type_errors_name_line_and_field() {
        let err = load("global:\n  scrape_interval: soon\n").unwrap_err();
        let text = err.to_string();
        assert!(text.contains("test.yaml:2:"), "{text}");
        assert!(text.contains("global.scrape_interval"), "{text}");
        assert!(text.contains("not a valid duration"), "{text}");
    }

    #[test]
    fn missing_env_var_names_line() {
        let err = load("web:\n  listen_address: ${NOPE}\n").unwrap_err();
        assert!(
            err.to_string()
                .contains("test.yaml:2: environment variable NOPE is not set"),
            "{err}"
        );
    }

    /// Every YAML example in the README is a config homeostat accepts, so
    /// the documentation cannot drift from the code. Files an example names
    /// (a CA bundle) need not exist here; every other problem fails.
    #[test]
    fn readme_examples_load() {
        let readme = include_str!("../../../README.md");
        let mut blocks = 0;
        for block in readme.split("```yaml\n").skip(1) {
            let Some((yaml, _)) = block.split_once("```") else {
                continue;
            };
            blocks += 1;
            let r = Config::load_with_env(yaml, ConfigSource::File("README.md".into()), &|_| {
                Some("secret".into())
            });
            if let Err(e) = r {
                let real: Vec<_> = e
                    .issues
                    .iter()
                    .filter(|i| !i.message.contains("does not exist"))
                    .collect();
                assert!(real.is_empty(), "README example fails to load: {e}\n{yaml}");
            }
        }
        assert!(blocks >= 2, "README lost its config examples");
    }
}
