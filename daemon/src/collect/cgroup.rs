//! cgroup v2 collector: CPU, memory, IO and task counts of every group under a
//! root, with cAdvisor's metric names (`container_cpu_usage_seconds_total`,
//! `container_memory_working_set_bytes`, …) and its `id` label (the group's
//! path below the root, `/` for the root itself).
//!
//! Owns the walk and the parsing of the interface files; reads only. Files a
//! group lacks (controllers not enabled for it, or the group removed during
//! the walk) are skipped, not errors. A group that cannot be read for any
//! other reason (permission denied, typically, when homeostat runs
//! unprivileged) is skipped with its reason in the target's `lastError` while
//! the target stays up; an unreadable root fails the round. cgroup
//! v1 hierarchies are not read: v2 is what every current distribution and
//! container runtime uses.

use std::path::{Path, PathBuf};

use super::native::{NativeSpec, NativeTarget};
use super::{CollectError, Collector, ScrapeBatch};

/// What `collectors.cgroups` resolves to.
#[derive(Debug, Clone, PartialEq)]
pub struct CgroupConfig {
    /// `None`: find the v2 hierarchy (`/sys/fs/cgroup`, or
    /// `/sys/fs/cgroup/unified` on a hybrid host).
    pub root: Option<PathBuf>,
    /// Levels below the root to report (the root is level 0).
    pub max_depth: usize,
}

impl CgroupConfig {
    pub(crate) fn target(&self) -> NativeTarget {
        let shown = self
            .root
            .as_ref()
            .map(|p| p.display().to_string())
            .unwrap_or_else(|| "auto".into());
        NativeTarget {
            instance: "localhost".into(),
            display: format!("cgroup2://{shown}"),
            labels: Default::default(),
            spec: NativeSpec::Cgroups(self.clone()),
        }
    }
}

pub const FAMILIES: &[(&str, &str, &str)] = &[
    (
        "container_cpu_usage_seconds_total",
        "counter",
        "CPU time consumed (cpu.stat usage_usec).",
    ),
    (
        "container_cpu_user_seconds_total",
        "counter",
        "User CPU time (cpu.stat user_usec).",
    ),
    (
        "container_cpu_system_seconds_total",
        "counter",
        "System CPU time (cpu.stat system_usec).",
    ),
    (
        "container_cpu_cfs_periods_total",
        "counter",
        "Enforcement periods elapsed (cpu.stat nr_periods).",
    ),
    (
        "container_cpu_cfs_throttled_periods_total",
        "counter",
        "Periods in which the group was throttled (cpu.stat nr_throttled).",
    ),
    (
        "container_cpu_cfs_throttled_seconds_total",
        "counter",
        "Time throttled (cpu.stat throttled_usec).",
    ),
    (
        "container_spec_cpu_quota",
        "gauge",
        "CPU quota per period, microseconds (cpu.max; absent when unlimited).",
    ),
    (
        "container_spec_cpu_period",
        "gauge",
        "CPU period, microseconds (cpu.max).",
    ),
    (
        "container_memory_usage_bytes",
        "gauge",
        "Memory in use, page cache included (memory.current).",
    ),
    (
        "container_memory_working_set_bytes",
        "gauge",
        "memory.current minus inactive_file: what the OOM killer looks at.",
    ),
    (
        "container_memory_rss",
        "gauge",
        "Anonymous memory (memory.stat anon).",
    ),
    (
        "container_memory_cache",
        "gauge",
        "Page cache (memory.stat file).",
    ),
    (
        "container_memory_swap",
        "gauge",
        "Swap in use (memory.swap.current).",
    ),
    (
        "container_spec_memory_limit_bytes",
        "gauge",
        "memory.max (0 when unlimited, as cAdvisor).",
    ),
    (
        "container_oom_events_total",
        "counter",
        "Processes killed by the OOM killer (memory.events oom_kill).",
    ),
    (
        "container_memory_events_total",
        "counter",
        "memory.events by event (low, high, max, oom, oom_kill).",
    ),
    (
        "container_fs_reads_bytes_total",
        "counter",
        "Bytes read per device (io.stat rbytes).",
    ),
    (
        "container_fs_writes_bytes_total",
        "counter",
        "Bytes written per device (io.stat wbytes).",
    ),
    (
        "container_fs_reads_total",
        "counter",
        "Reads per device (io.stat rios).",
    ),
    (
        "container_fs_writes_total",
        "counter",
        "Writes per device (io.stat wios).",
    ),
    (
        "container_threads",
        "gauge",
        "Tasks in the group (pids.current).",
    ),
    (
        "container_threads_max",
        "gauge",
        "Task limit (pids.max; 0 when unlimited).",
    ),
];

/// One sample, produced off the async threads.
type Sample = (&'static str, Vec<(&'static str, String)>, f64);

/// Groups named in one round's warning before the rest are only counted.
const MAX_GROUP_WARNINGS: usize = 5;

/// Finds the cgroup v2 mount when none is configured.
pub fn find_root() -> Result<PathBuf, CollectError> {
    for p in ["/sys/fs/cgroup", "/sys/fs/cgroup/unified"] {
        if Path::new(p).join("cgroup.controllers").exists() {
            return Ok(PathBuf::from(p));
        }
    }
    Err(CollectError::Other(
        "no cgroup v2 hierarchy at /sys/fs/cgroup or /sys/fs/cgroup/unified (cgroup v1-only hosts are not supported); set collectors.cgroups.root".into(),
    ))
}

/// Reads every group under `root` down to `max_depth`: the samples, and one
/// line per group that could not be read (see the module doc).
pub fn read_tree(
    root: &Path,
    max_depth: usize,
) -> Result<(Vec<Sample>, Vec<String>), CollectError> {
    // The root must be readable: that failing is the target's error.
    std::fs::read_dir(root).map_err(|e| {
        CollectError::Other(format!("cannot read cgroup root {}: {e}", root.display()))
    })?;
    if !root.join("cgroup.controllers").exists() {
        return Err(CollectError::Other(format!(
            "{} is not a cgroup v2 directory (no cgroup.controllers)",
            root.display()
        )));
    }
    let mut out = Vec::new();
    let mut warnings = Vec::new();
    let mut stack = vec![(root.to_path_buf(), 0usize)];
    while let Some((dir, depth)) = stack.pop() {
        let rel = dir.strip_prefix(root).unwrap_or(Path::new(""));
        let id = format!("/{}", rel.display());
        let mut problem = None;
        read_group(&dir, &id, &mut out, &mut problem);
        let entries = if depth < max_depth {
            match std::fs::read_dir(&dir) {
                Ok(e) => Some(e),
                // A group removed while we walk is simply gone this round.
                Err(e) => {
                    note(&mut problem, "", &e);
                    None
                }
            }
        } else {
            None
        };
        if let Some(p) = problem {
            warnings.push(format!("cgroup {id}: {p}"));
        }
        let Some(entries) = entries else {
            continue;
        };
        let mut children: Vec<PathBuf> = entries
            .filter_map(Result::ok)
            .filter(|e| e.file_type().map(|t| t.is_dir()).unwrap_or(false))
            .map(|e| e.path())
            .collect();
        children.sort();
        stack.extend(children.into_iter().rev().map(|c| (c, depth + 1)));
    }
    if warnings.len() > MAX_GROUP_WARNINGS {
        let more = warnings.len() - MAX_GROUP_WARNINGS;
        warnings.truncate(MAX_GROUP_WARNINGS);
        warnings.push(format!("and {more} more groups"));
    }
    Ok((out, warnings))
}

/// Keeps the first problem of a group; a missing file or group is none.
fn note(problem: &mut Option<String>, file: &str, e: &std::io::Error) {
    if e.kind() != std::io::ErrorKind::NotFound && problem.is_none() {
        *problem = Some(if file.is_empty() {
            e.to_string()
        } else {
            format!("{file}: {e}")
        });
    }
}

fn read(dir: &Path, file: &str, problem: &mut Option<String>) -> Option<String> {
    std::fs::read_to_string(dir.join(file))
        .map_err(|e| note(problem, file, &e))
        .ok()
}

/// `key value` lines (cpu.stat, memory.stat, memory.events).
fn flat_keyed(text: &str) -> impl Iterator<Item = (&str, f64)> {
    text.lines().filter_map(|l| {
        let (k, v) = l.split_once(' ')?;
        Some((k, v.trim().parse::<f64>().ok()?))
    })
}

fn read_group(dir: &Path, id: &str, out: &mut Vec<Sample>, problem: &mut Option<String>) {
    let l = || vec![("id", id.to_string())];
    if let Some(t) = read(dir, "cpu.stat", problem) {
        for (k, v) in flat_keyed(&t) {
            let (name, scale) = match k {
                "usage_usec" => ("container_cpu_usage_seconds_total", 1e-6),
                "user_usec" => ("container_cpu_user_seconds_total", 1e-6),
                "system_usec" => ("container_cpu_system_seconds_total", 1e-6),
                "nr_periods" => ("container_cpu_cfs_periods_total", 1.0),
                "nr_throttled" => ("container_cpu_cfs_throttled_periods_total", 1.0),
                "throttled_usec" => ("container_cpu_cfs_throttled_seconds_total", 1e-6),
                _ => continue,
            };
            out.push((name, l(), v * scale));
        }
    }
    if let Some(t) = read(dir, "cpu.max", problem) {
        let mut parts = t.split_whitespace();
        if let (Some(q), Some(p)) = (parts.next(), parts.next()) {
            if let Ok(q) = q.parse::<f64>() {
                out.push(("container_spec_cpu_quota", l(), q));
            }
            if let Ok(p) = p.parse::<f64>() {
                out.push(("container_spec_cpu_period", l(), p));
            }
        }
    }
    let current = read(dir, "memory.current", problem).and_then(|t| t.trim().parse::<f64>().ok());
    if let Some(c) = current {
        out.push(("container_memory_usage_bytes", l(), c));
    }
    if let Some(t) = read(dir, "memory.stat", problem) {
        let mut inactive_file = 0.0;
        for (k, v) in flat_keyed(&t) {
            match k {
                "anon" => out.push(("container_memory_rss", l(), v)),
                "file" => out.push(("container_memory_cache", l(), v)),
                "inactive_file" => inactive_file = v,
                _ => {}
            }
        }
        if let Some(c) = current {
            out.push((
                "container_memory_working_set_bytes",
                l(),
                (c - inactive_file).max(0.0),
            ));
        }
    }
    if let Some(v) =
        read(dir, "memory.swap.current", problem).and_then(|t| t.trim().parse::<f64>().ok())
    {
        out.push(("container_memory_swap", l(), v));
    }
    if let Some(t) = read(dir, "memory.max", problem) {
        let v = t.trim().parse::<f64>().unwrap_or(0.0);
        out.push(("container_spec_memory_limit_bytes", l(), v));
    }
    if let Some(t) = read(dir, "memory.events", problem) {
        for (k, v) in flat_keyed(&t) {
            if k == "oom_kill" {
                out.push(("container_oom_events_total", l(), v));
            }
            let mut labels = l();
            labels.push(("event", k.to_string()));
            out.push(("container_memory_events_total", labels, v));
        }
    }
    if let Some(t) = read(dir, "io.stat", problem) {
        // 8:0 rbytes=1 wbytes=2 rios=3 wios=4 dbytes=0 dios=0
        for line in t.lines() {
            let mut parts = line.split_whitespace();
            let Some(dev) = parts.next() else { continue };
            for kv in parts {
                let Some((k, v)) = kv.split_once('=') else {
                    continue;
                };
                let name = match k {
                    "rbytes" => "container_fs_reads_bytes_total",
                    "wbytes" => "container_fs_writes_bytes_total",
                    "rios" => "container_fs_reads_total",
                    "wios" => "container_fs_writes_total",
                    _ => continue,
                };
                if let Ok(v) = v.parse::<f64>() {
                    out.push((
                        name,
                        vec![("device", dev.to_string()), ("id", id.to_string())],
                        v,
                    ));
                }
            }
        }
    }
    if let Some(v) = read(dir, "pids.current", problem).and_then(|t| t.trim().parse::<f64>().ok()) {
        out.push(("container_threads", l(), v));
    }
    if let Some(t) = read(dir, "pids.max", problem) {
        out.push((
            "container_threads_max",
            l(),
            t.trim().parse::<f64>().unwrap_or(0.0),
        ));
    }
}

/// Reads the configured (or found) cgroup v2 tree each round.
pub struct CgroupCollector {
    config: CgroupConfig,
}

impl CgroupCollector {
    pub fn new(config: CgroupConfig) -> Self {
        CgroupCollector { config }
    }
}

impl Collector for CgroupCollector {
    async fn collect(&mut self, out: &mut ScrapeBatch<'_>) -> Result<(), CollectError> {
        let root = match &self.config.root {
            Some(r) => r.clone(),
            None => find_root()?,
        };
        let depth = self.config.max_depth;
        // Hundreds of small file reads: keep them off the async threads.
        let (samples, warnings) = tokio::task::spawn_blocking(move || read_tree(&root, depth))
            .await
            .map_err(|e| CollectError::Other(format!("cgroup walk failed: {e}")))??;
        for (name, labels, v) in &samples {
            let l: Vec<(&str, &str)> = labels.iter().map(|(k, v)| (*k, v.as_str())).collect();
            out.add(name, &l, *v)?;
        }
        if !warnings.is_empty() {
            out.warn(warnings.join("; "));
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn write(dir: &Path, file: &str, text: &str) {
        std::fs::write(dir.join(file), text).expect("write fixture");
    }

    #[test]
    fn reads_a_v2_tree_with_cadvisor_names() {
        let root = tempfile::tempdir().expect("tempdir");
        let r = root.path();
        write(r, "cgroup.controllers", "cpu memory io pids\n");
        write(
            r,
            "cpu.stat",
            "usage_usec 2000000\nuser_usec 1500000\nsystem_usec 500000\n",
        );
        let app = r.join("app.slice");
        std::fs::create_dir(&app).expect("mkdir");
        write(&app, "cpu.stat", "usage_usec 1000000\nuser_usec 1\nsystem_usec 1\nnr_periods 10\nnr_throttled 4\nthrottled_usec 250000\n");
        write(&app, "cpu.max", "50000 100000\n");
        write(&app, "memory.current", "104857600\n");
        write(
            &app,
            "memory.stat",
            "anon 52428800\nfile 41943040\ninactive_file 20971520\n",
        );
        write(&app, "memory.max", "max\n");
        write(
            &app,
            "memory.events",
            "low 0\nhigh 0\nmax 3\noom 1\noom_kill 1\n",
        );
        write(
            &app,
            "io.stat",
            "8:0 rbytes=4096 wbytes=8192 rios=1 wios=2 dbytes=0 dios=0\n",
        );
        write(&app, "pids.current", "7\n");
        write(&app, "pids.max", "100\n");
        let deep = app.join("a").join("b");
        std::fs::create_dir_all(&deep).expect("mkdir");
        write(&deep, "cpu.stat", "usage_usec 1\n");

        let (samples, warnings) = read_tree(r, 1).expect("read");
        assert_eq!(
            warnings,
            Vec::<String>::new(),
            "missing files are not problems"
        );
        let get = |name: &str, id: &str| {
            samples
                .iter()
                .find(|(n, l, _)| *n == name && l.iter().any(|(k, v)| *k == "id" && v == id))
                .map(|s| s.2)
        };
        assert_eq!(get("container_cpu_usage_seconds_total", "/"), Some(2.0));
        assert_eq!(
            get("container_cpu_usage_seconds_total", "/app.slice"),
            Some(1.0)
        );
        assert_eq!(
            get("container_cpu_cfs_throttled_periods_total", "/app.slice"),
            Some(4.0)
        );
        assert_eq!(
            get("container_cpu_cfs_throttled_seconds_total", "/app.slice"),
            Some(0.25)
        );
        assert_eq!(get("container_spec_cpu_quota", "/app.slice"), Some(50000.0));
        assert_eq!(
            get("container_memory_working_set_bytes", "/app.slice"),
            Some(83886080.0)
        );
        assert_eq!(
            get("container_spec_memory_limit_bytes", "/app.slice"),
            Some(0.0)
        );
        assert_eq!(get("container_oom_events_total", "/app.slice"), Some(1.0));
        assert_eq!(
            get("container_fs_writes_bytes_total", "/app.slice"),
            Some(8192.0)
        );
        assert_eq!(get("container_threads", "/app.slice"), Some(7.0));
        // max_depth 1: the grandchildren are not reported.
        assert_eq!(
            get("container_cpu_usage_seconds_total", "/app.slice/a"),
            None
        );
    }

    #[test]
    fn an_unreadable_group_is_named_and_the_others_still_read() {
        let root = tempfile::tempdir().expect("tempdir");
        let r = root.path();
        write(r, "cgroup.controllers", "cpu memory\n");
        write(r, "cpu.stat", "usage_usec 1000000\n");
        // An interface file that cannot be read as one: not "missing".
        let bad = r.join("bad.slice");
        std::fs::create_dir_all(bad.join("cpu.stat")).expect("mkdir");
        write(&bad, "memory.current", "42\n");
        let (samples, warnings) = read_tree(r, 1).expect("read");
        assert_eq!(warnings.len(), 1, "{warnings:?}");
        assert!(
            warnings[0].starts_with("cgroup /bad.slice: cpu.stat: "),
            "{warnings:?}"
        );
        assert!(samples
            .iter()
            .any(|(n, l, v)| *n == "container_memory_usage_bytes"
                && l.iter().any(|(_, id)| id == "/bad.slice")
                && *v == 42.0));
        assert!(samples
            .iter()
            .any(|(n, l, _)| *n == "container_cpu_usage_seconds_total"
                && l.iter().any(|(_, id)| id == "/")));
        // Many broken groups: five named, the rest counted.
        for i in 0..8 {
            std::fs::create_dir_all(r.join(format!("g{i}")).join("memory.max")).expect("mkdir");
        }
        let (_, warnings) = read_tree(r, 1).expect("read");
        assert_eq!(warnings.len(), MAX_GROUP_WARNINGS + 1, "{warnings:?}");
        assert_eq!(
            warnings.last().map(String::as_str),
            Some("and 4 more groups")
        );
    }

    #[test]
    fn a_root_that_is_not_v2_is_a_clear_error() {
        let root = tempfile::tempdir().expect("tempdir");
        let e = read_tree(root.path(), 1).expect_err("not v2");
        assert!(e.to_string().contains("not a cgroup v2 directory"), "{e}");
        let e = read_tree(Path::new("/nonexistent/cg"), 1).expect_err("missing");
        assert!(e.to_string().contains("cannot read cgroup root"), "{e}");
    }
}
