//! Target discovery: static lists and Prometheus-format `file_sd` files.
//!
//! Produces target groups; never starts loops (the manager does). A file that
//! cannot be read or parsed keeps its previous targets, as in Prometheus, so a
//! half-written file never empties a job.

use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant, SystemTime};

use serde::Deserialize;

use super::prometheus::{valid_address, FileSdConfig, StaticConfig};
use super::relabel::valid_label_name;

/// Targets that share labels, from one source.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub struct TargetGroup {
    pub targets: Vec<String>,
    #[serde(default)]
    pub labels: BTreeMap<String, String>,
    /// Where the group came from (`__meta_filepath` for files).
    #[serde(skip)]
    pub source: String,
}

pub fn static_groups(cfgs: &[StaticConfig]) -> Vec<TargetGroup> {
    cfgs.iter()
        .enumerate()
        .map(|(i, c)| TargetGroup {
            targets: c.targets.clone(),
            labels: c.labels.clone(),
            source: format!("static/{i}"),
        })
        .collect()
}

#[derive(Debug, thiserror::Error)]
pub enum DiscoveryError {
    #[error("{path}: {msg}")]
    File { path: String, msg: String },
}

/// Reads one file_sd file (JSON or YAML by extension) and checks every entry.
pub fn read_sd_file(path: &Path) -> Result<Vec<TargetGroup>, DiscoveryError> {
    let err = |msg: String| DiscoveryError::File {
        path: path.display().to_string(),
        msg,
    };
    let text = std::fs::read_to_string(path).map_err(|e| err(e.to_string()))?;
    let is_json = path.extension().and_then(|e| e.to_str()) == Some("json");
    let mut groups: Vec<TargetGroup> = if is_json {
        serde_json::from_str(&text).map_err(|e| err(e.to_string()))?
    } else if text.trim().is_empty() {
        Vec::new()
    } else {
        serde_norway::from_str(&text).map_err(|e| err(e.to_string()))?
    };
    for (i, g) in groups.iter_mut().enumerate() {
        for t in &g.targets {
            valid_address(t).map_err(|e| err(format!("group {i}: {e}")))?;
        }
        for name in g.labels.keys() {
            if !valid_label_name(name) {
                return Err(err(format!(
                    "group {i}: {name:?} is not a valid label name"
                )));
            }
        }
        g.source = path.display().to_string();
    }
    Ok(groups)
}

/// Follows the files of one `file_sd_configs` entry.
pub struct FileSd {
    patterns: Vec<String>,
    refresh: Duration,
    last_full: Instant,
    /// Last good groups and the (mtime, len) they were read at, per file.
    files: HashMap<PathBuf, (Option<SystemTime>, u64, Vec<TargetGroup>)>,
}

impl FileSd {
    pub fn new(cfg: &FileSdConfig, base: &Path) -> Self {
        let patterns = cfg
            .files
            .iter()
            .map(|f| {
                if f.is_absolute() {
                    f.clone()
                } else {
                    base.join(f)
                }
            })
            .map(|p| p.to_string_lossy().into_owned())
            .collect();
        FileSd {
            patterns,
            refresh: cfg.refresh_interval.0.max(Duration::from_secs(1)),
            last_full: Instant::now(),
            files: HashMap::new(),
        }
    }

    fn matched(&self) -> Vec<PathBuf> {
        let mut out = Vec::new();
        for p in &self.patterns {
            if let Ok(paths) = glob::glob(p) {
                out.extend(paths.flatten());
            }
        }
        out.sort();
        out.dedup();
        out
    }

    /// Re-reads what changed; `Some(groups)` when the target set may differ.
    /// Read errors are logged and keep the file's previous groups.
    pub fn poll(&mut self) -> Option<Vec<TargetGroup>> {
        let full = self.last_full.elapsed() >= self.refresh;
        if full {
            self.last_full = Instant::now();
        }
        let matched = self.matched();
        let mut changed = false;
        let before = self.files.len();
        self.files.retain(|p, _| matched.contains(p));
        changed |= self.files.len() != before;
        for path in matched {
            let meta = std::fs::metadata(&path).ok();
            let mtime = meta.as_ref().and_then(|m| m.modified().ok());
            let len = meta.as_ref().map(|m| m.len()).unwrap_or(0);
            let same = matches!(self.files.get(&path), Some((t, l, _)) if *t == mtime && *l == len);
            if same && !full {
                continue;
            }
            match read_sd_file(&path) {
                Ok(groups) => {
                    let prev = self.files.insert(path, (mtime, len, groups.clone()));
                    changed |= prev.map(|p| p.2) != Some(groups);
                }
                Err(e) => {
                    tracing::error!(error = %e, "file_sd: cannot read target file; keeping its previous targets");
                    // Remember the mtime so a broken file is not re-read every
                    // second, but keep the last good groups.
                    let groups = self
                        .files
                        .get(&path)
                        .map(|f| f.2.clone())
                        .unwrap_or_default();
                    self.files.insert(path, (mtime, len, groups));
                }
            }
        }
        changed.then(|| self.groups())
    }

    pub fn groups(&self) -> Vec<TargetGroup> {
        let mut keys: Vec<_> = self.files.keys().collect();
        keys.sort();
        keys.into_iter()
            .flat_map(|k| self.files[k].2.clone())
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_json_and_yaml_and_follows_changes() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(
            dir.path().join("a.json"),
            r#"[{"targets":["h1:9100"],"labels":{"env":"prod"}}]"#,
        )
        .unwrap();
        std::fs::write(
            dir.path().join("b.yaml"),
            "- targets: ['h2:9100', 'h3:9100']\n",
        )
        .unwrap();
        let cfg = FileSdConfig {
            files: vec!["*.json".into(), "*.yaml".into()],
            ..Default::default()
        };
        let mut sd = FileSd::new(&cfg, dir.path());
        let groups = sd.poll().unwrap();
        assert_eq!(groups.len(), 2);
        assert_eq!(groups[0].labels["env"], "prod");
        assert!(groups[0].source.ends_with("a.json"));
        assert!(
            sd.poll().is_none(),
            "unchanged files must not report a change"
        );

        // A broken write keeps the previous targets.
        std::fs::write(dir.path().join("a.json"), "[{not json").unwrap();
        assert!(sd.poll().is_none());
        assert_eq!(sd.groups().len(), 2);

        std::fs::write(dir.path().join("a.json"), r#"[{"targets":["h9:1"]}]"#).unwrap();
        let groups = sd.poll().unwrap();
        assert_eq!(groups[0].targets, vec!["h9:1"]);

        std::fs::remove_file(dir.path().join("b.yaml")).unwrap();
        assert_eq!(sd.poll().unwrap().len(), 1);
    }

    #[test]
    fn rejects_bad_addresses() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("x.json");
        std::fs::write(&p, r#"[{"targets":["http://h1:9100/metrics"]}]"#).unwrap();
        let e = read_sd_file(&p).unwrap_err().to_string();
        assert!(
            e.contains("x.json") && e.contains("not a valid target address"),
            "{e}"
        );
    }
}
