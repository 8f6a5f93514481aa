//! Native collectors in the one config: the `collectors:` section, and how each
//! configured server becomes a target of the scrape manager.
//!
//! A native collector is a scrape job like any other: it has a `job` name, an
//! interval and a timeout, one target per configured server (its `instance`
//! label is the server's `name`), and gets `up`, `scrape_duration_seconds`,
//! staleness and `/api/v1/targets` from the scrape loop. This module only
//! maps config to targets and builds the collector for each; what a collector
//! reads lives in its own file (`postgres.rs`, `redis.rs`, …). It never
//! touches the store.

use std::collections::BTreeMap;
use std::time::Duration;

use serde::Deserialize;

use super::cgroup::CgroupConfig;
use super::postgres::{PgbouncerServer, PostgresServer};
use super::probe::ProbeTarget;
use super::redis::RedisServer;
use super::relabel::valid_label_name;
use super::{BoxedCollector, MetadataMap};
use crate::config::{GlobalConfig, PromDuration, Validator};
use std::sync::Arc;

/// Defines a collector's config section: the job settings every kind shares
/// (`job_name`, `scrape_interval`, `scrape_timeout`), then the kind's own
/// fields. Written out per kind rather than `#[serde(flatten)]`ed, because
/// flattening would swallow misspelt keys instead of reporting them.
macro_rules! section {
    ($(#[$m:meta])* $name:ident { $($(#[$fm:meta])* $field:ident : $ty:ty,)* }) => {
        $(#[$m])*
        #[derive(Debug, Clone, Default, PartialEq, Deserialize)]
        #[serde(default)]
        pub struct $name {
            /// The `job` label (defaults to the section's name).
            pub job_name: Option<String>,
            /// Defaults to `global.scrape_interval`.
            pub scrape_interval: Option<PromDuration>,
            /// Defaults to `global.scrape_timeout`, capped at the interval.
            pub scrape_timeout: Option<PromDuration>,
            $($(#[$fm])* pub $field: $ty,)*
        }

        impl $name {
            fn job(&self) -> JobSettings<'_> {
                JobSettings {
                    job_name: self.job_name.as_deref(),
                    scrape_interval: self.scrape_interval,
                    scrape_timeout: self.scrape_timeout,
                }
            }
        }
    };
}

section!(
    /// `collectors.gpu`: the NVIDIA GPUs of this host.
    GpuSection {
        /// Path of `libnvidia-ml.so` (default: the system's).
        library_path: Option<std::path::PathBuf>,
    }
);
section!(
    /// `collectors.postgres`: PostgreSQL servers.
    PostgresSection {
        servers: Vec<PostgresServer>,
    }
);
section!(
    /// `collectors.pgbouncer`: PgBouncer admin consoles.
    PgbouncerSection {
        servers: Vec<PgbouncerServer>,
    }
);
section!(
    /// `collectors.redis`: Redis servers.
    RedisSection {
        servers: Vec<RedisServer>,
    }
);

section!(
    /// `collectors.azure`: Azure Container Apps and Azure Monitor metrics.
    AzureSection {
        /// Azure Resource Manager (default `https://management.azure.com`).
        management_endpoint: Option<String>,
        /// Entra ID authority for tokens (default
        /// `https://login.microsoftonline.com`, or `$AZURE_AUTHORITY_HOST`).
        authority_host: Option<String>,
        /// Container App resource IDs whose revisions and replicas to list.
        container_apps: Vec<String>,
        /// Resources whose Azure Monitor metrics to read.
        metrics: Vec<super::azure::MetricsTarget>,
    }
);
section!(
    /// `collectors.cgroups`: cgroup v2 groups of this host.
    CgroupSection {
        /// Root of the cgroup v2 hierarchy (default: `/sys/fs/cgroup`, or
        /// `/sys/fs/cgroup/unified` on a hybrid host).
        root: Option<std::path::PathBuf>,
        /// How deep below the root to report groups (default 3).
        max_depth: Option<usize>,
    }
);
section!(
    /// `collectors.http_probes`: blackbox-style HTTP probes.
    ProbeSection {
        targets: Vec<ProbeTarget>,
    }
);

/// `collectors:` — every native collector; a section that is absent is off.
#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
#[serde(default)]
pub struct CollectorsConfig {
    /// NVIDIA GPUs on this host, through NVML (DCGM exporter's names).
    pub gpu: Option<GpuSection>,
    /// PostgreSQL servers (postgres_exporter's metric names).
    pub postgres: Option<PostgresSection>,
    /// PgBouncer admin consoles (pgbouncer_exporter's metric names).
    pub pgbouncer: Option<PgbouncerSection>,
    /// Redis servers (redis_exporter's metric names).
    pub redis: Option<RedisSection>,
    /// Azure Container Apps and Azure Monitor metrics.
    pub azure: Option<AzureSection>,
    /// cgroup v2 groups on this host (cAdvisor's metric names).
    pub cgroups: Option<CgroupSection>,
    /// Blackbox-style HTTP probes (blackbox_exporter's metric names).
    pub http_probes: Option<ProbeSection>,
}

/// The job settings of one section.
struct JobSettings<'a> {
    job_name: Option<&'a str>,
    scrape_interval: Option<PromDuration>,
    scrape_timeout: Option<PromDuration>,
}

impl JobSettings<'_> {
    fn interval(&self, g: &GlobalConfig) -> Duration {
        self.scrape_interval.unwrap_or(g.scrape_interval).0
    }

    fn timeout(&self, g: &GlobalConfig) -> Duration {
        self.scrape_timeout
            .map(|d| d.0)
            .unwrap_or_else(|| g.timeout().0.min(self.interval(g)))
    }

    fn job(&self, default: &str, g: &GlobalConfig, targets: Vec<NativeTarget>) -> NativeJob {
        NativeJob {
            job_name: self.job_name.unwrap_or(default).to_string(),
            interval: self.interval(g),
            timeout: self.timeout(g),
            targets,
        }
    }

    fn validate(&self, path: &str, g: &GlobalConfig, v: &mut Validator) {
        if self.job_name == Some("") {
            v.error(format!("{path}.job_name"), "must not be empty");
        }
        if self.interval(g).is_zero() {
            v.error(format!("{path}.scrape_interval"), "must be greater than 0");
        }
        if self.timeout(g).is_zero() {
            v.error(format!("{path}.scrape_timeout"), "must be greater than 0");
        }
        if self.timeout(g) > self.interval(g) {
            v.error(
                format!("{path}.scrape_timeout"),
                format!(
                    "scrape_timeout {} is greater than scrape_interval {}",
                    PromDuration(self.timeout(g)),
                    PromDuration(self.interval(g))
                ),
            );
        }
    }
}

/// A native job, ready for the scrape manager. Compared on reload: a job
/// whose config did not change keeps its loops (and their connections).
#[derive(Debug, Clone, PartialEq)]
pub struct NativeJob {
    pub job_name: String,
    pub interval: Duration,
    pub timeout: Duration,
    pub targets: Vec<NativeTarget>,
}

/// One server of a native job.
#[derive(Debug, Clone, PartialEq)]
pub struct NativeTarget {
    /// The `instance` label.
    pub instance: String,
    /// Shown as the target's URL in `/api/v1/targets`; never holds a secret.
    pub display: String,
    /// Extra target labels (`role`, and the server's `labels`).
    pub labels: BTreeMap<String, String>,
    pub spec: NativeSpec,
}

/// What to build for a target.
#[derive(Debug, Clone, PartialEq)]
pub enum NativeSpec {
    Gpu(super::gpu::GpuConfig),
    Postgres(PostgresServer),
    Pgbouncer(PgbouncerServer),
    Redis(RedisServer),
    Azure(super::azure::AzureTarget),
    Cgroups(CgroupConfig),
    Probe(ProbeTarget),
}

impl NativeSpec {
    /// The part of the platform this collector watches (the dashboard's
    /// target groups).
    pub fn group(&self) -> &'static str {
        match self {
            NativeSpec::Gpu(_) => "gpu",
            NativeSpec::Postgres(_) | NativeSpec::Pgbouncer(_) => "postgres",
            NativeSpec::Redis(_) => "redis",
            NativeSpec::Azure(_) | NativeSpec::Cgroups(_) => "containers",
            NativeSpec::Probe(_) => "probes",
        }
    }

    /// A fresh collector for one loop. `timeout` is the job's scrape timeout,
    /// which collectors that have their own deadline (probes) stay under.
    pub fn build(
        &self,
        timeout: Duration,
        metadata: Arc<parking_lot::Mutex<MetadataMap>>,
    ) -> BoxedCollector {
        let c: Box<dyn super::DynCollector> = match self {
            NativeSpec::Gpu(c) => Box::new(super::gpu::GpuCollector::new(c.clone())),
            NativeSpec::Postgres(s) => {
                Box::new(super::postgres::PostgresCollector::new(s.clone(), timeout))
            }
            NativeSpec::Pgbouncer(s) => {
                Box::new(super::postgres::PgbouncerCollector::new(s.clone()))
            }
            NativeSpec::Redis(s) => Box::new(super::redis::RedisCollector::new(s.clone(), timeout)),
            NativeSpec::Azure(t) => Box::new(super::azure::AzureCollector::new(t.clone(), timeout)),
            NativeSpec::Cgroups(c) => Box::new(super::cgroup::CgroupCollector::new(c.clone())),
            NativeSpec::Probe(p) => Box::new(super::probe::ProbeCollector::new(p.clone(), timeout)),
        };
        // Native collectors describe their families up front, so
        // `/api/v1/metadata` and Grafana's metric browser know them.
        *metadata.lock() = self.metadata();
        BoxedCollector(c)
    }

    fn metadata(&self) -> MetadataMap {
        let families: &[(&str, &str, &str)] = match self {
            NativeSpec::Gpu(_) => super::gpu::FAMILIES.as_slice(),
            NativeSpec::Postgres(_) => super::postgres::PG_FAMILIES,
            NativeSpec::Pgbouncer(_) => super::postgres::PGBOUNCER_FAMILIES,
            NativeSpec::Redis(_) => super::redis::FAMILIES.as_slice(),
            NativeSpec::Azure(_) => super::azure::FAMILIES,
            NativeSpec::Cgroups(_) => super::cgroup::FAMILIES,
            NativeSpec::Probe(_) => super::probe::FAMILIES,
        };
        families
            .iter()
            .map(|(name, kind, help)| {
                (
                    name.to_string(),
                    super::MetricMeta {
                        kind: kind.to_string(),
                        help: help.to_string(),
                        unit: String::new(),
                    },
                )
            })
            .collect()
    }
}

/// Checks a server's `name` and `labels`, shared by every kind with a list
/// of servers.
pub(crate) fn validate_target_labels(
    path: &str,
    labels: &BTreeMap<String, String>,
    v: &mut Validator,
) {
    for name in labels.keys() {
        if !valid_label_name(name) || name.starts_with("__") {
            v.error(
                format!("{path}.labels.{name}"),
                format!("{name:?} is not a valid label name"),
            );
        } else if name == "job" || name == "instance" {
            v.error(
                format!("{path}.labels.{name}"),
                format!(
                    "{name:?} is set by homeostat; use the section's job_name or the server's name"
                ),
            );
        }
    }
}

impl CollectorsConfig {
    /// Every native job, with global defaults applied.
    pub fn jobs(&self, g: &GlobalConfig) -> Vec<NativeJob> {
        let mut jobs = Vec::new();
        if let Some(s) = &self.gpu {
            let t = super::gpu::GpuConfig {
                library_path: s.library_path.clone(),
            };
            jobs.push(s.job().job("gpu", g, vec![t.target()]));
        }
        if let Some(s) = &self.postgres {
            let t = s.servers.iter().map(PostgresServer::target).collect();
            jobs.push(s.job().job("postgres", g, t));
        }
        if let Some(s) = &self.pgbouncer {
            let t = s.servers.iter().map(PgbouncerServer::target).collect();
            jobs.push(s.job().job("pgbouncer", g, t));
        }
        if let Some(s) = &self.redis {
            let t = s.servers.iter().map(RedisServer::target).collect();
            jobs.push(s.job().job("redis", g, t));
        }

        if let Some(s) = &self.azure {
            jobs.push(s.job().job("azure", g, super::azure::targets(s)));
        }
        if let Some(s) = &self.cgroups {
            let c = CgroupConfig {
                root: s.root.clone(),
                max_depth: s.max_depth.unwrap_or(3),
            };
            jobs.push(s.job().job("cgroups", g, vec![c.target()]));
        }
        if let Some(s) = &self.http_probes {
            let t = s.targets.iter().map(ProbeTarget::target).collect();
            jobs.push(s.job().job("blackbox", g, t));
        }
        jobs
    }

    pub fn validate(&self, path: &str, g: &GlobalConfig, v: &mut Validator) {
        if let Some(s) = &self.gpu {
            s.job().validate(&format!("{path}.gpu"), g, v);
        }
        if let Some(s) = &self.postgres {
            let p = format!("{path}.postgres");
            s.job().validate(&p, g, v);
            for (i, t) in s.servers.iter().enumerate() {
                t.validate(&format!("{p}.servers.{i}"), v);
            }
        }
        if let Some(s) = &self.pgbouncer {
            let p = format!("{path}.pgbouncer");
            s.job().validate(&p, g, v);
            for (i, t) in s.servers.iter().enumerate() {
                t.validate(&format!("{p}.servers.{i}"), v);
            }
        }
        if let Some(s) = &self.redis {
            let p = format!("{path}.redis");
            s.job().validate(&p, g, v);
            for (i, t) in s.servers.iter().enumerate() {
                t.validate(&format!("{p}.servers.{i}"), v);
            }
        }

        if let Some(s) = &self.azure {
            let p = format!("{path}.azure");
            s.job().validate(&p, g, v);
            super::azure::validate(s, &p, v);
        }
        if let Some(s) = &self.cgroups {
            s.job().validate(&format!("{path}.cgroups"), g, v);
        }
        if let Some(s) = &self.http_probes {
            let p = format!("{path}.http_probes");
            s.job().validate(&p, g, v);
            for (i, t) in s.targets.iter().enumerate() {
                t.validate(&format!("{p}.targets.{i}"), v);
            }
        }
        // Two servers with one name would write one set of series.
        for job in self.jobs(g) {
            let mut seen = std::collections::HashSet::new();
            for t in &job.targets {
                if !seen.insert(&t.instance) {
                    v.error(
                        path.to_string(),
                        format!(
                            "job {:?} has two targets named {:?}: give each server a distinct name",
                            job.job_name, t.instance
                        ),
                    );
                }
            }
        }
    }
}
