//! `homeostat replay`: the daemon's policy over a recorded demand series, in simulated
//! time.
//!
//! Owns reading the one-entry AUTOSCALE.yaml and stepping the policy through the
//! series. Each decision sees only the points up to its timestamp, and the model is
//! retrained on the entry's `forecast.retrain` schedule in series time, as the daemon
//! would. The cycle is the series' own interval (one decision per input timestamp), so
//! `interval` and `forecast.step` of the entry are not used here.

use std::path::Path;

use homeostat_ml::Series;

use super::{AutoscaleConfig, Decision, Policy};
use crate::config::locate::LineIndex;
use crate::config::{parse_tracked, ConfigError, ConfigIssue, Validator};

/// Reads and validates one autoscale entry from a YAML file.
pub fn load(path: &Path) -> Result<AutoscaleConfig, ConfigError> {
    let file = path.display().to_string();
    let text = std::fs::read_to_string(path).map_err(|e| ConfigError {
        file: file.clone(),
        issues: vec![ConfigIssue {
            path: None,
            line: None,
            column: None,
            message: format!("cannot read: {e}"),
        }],
    })?;
    parse(&text, &file)
}

pub fn parse(text: &str, file: &str) -> Result<AutoscaleConfig, ConfigError> {
    let index = LineIndex::build(text);
    let (cfg, mut issues) = parse_tracked::<AutoscaleConfig>(text, &index);
    if let Some(c) = &cfg {
        let mut v = Validator::new();
        c.validate("", false, &mut v);
        for mut i in v.issues {
            // Top-level keys: drop the leading dot of the empty prefix.
            i.path = i.path.map(|p| p.trim_start_matches('.').to_string());
            issues.push(i);
        }
    }
    for i in &mut issues {
        if i.line.is_none() {
            if let Some((l, c)) = i.path.as_deref().and_then(|p| index.locate(p)) {
                i.line = Some(l);
                i.column = Some(c);
            }
        }
    }
    match cfg {
        Some(c) if issues.is_empty() => Ok(c),
        _ => Err(ConfigError {
            file: file.to_string(),
            issues,
        }),
    }
}

/// One decision per point of `demand`. `progress` is called with the number of
/// points done.
pub fn run(
    cfg: &AutoscaleConfig,
    demand: &Series,
    mut progress: impl FnMut(usize),
) -> Vec<Decision> {
    let step = demand.step_ms;
    let mut policy = Policy::new(cfg.settings(step));
    // The policy never looks further back than its training history plus the
    // seasonal lags (three weeks); pass a bounded window so a long series stays linear.
    let keep = ((cfg.forecast.history.as_millis() + 22 * 86_400_000) / step.max(1)) as usize;
    let mut out = Vec::with_capacity(demand.len());
    for t in 0..demand.len() {
        let from = (t + 1).saturating_sub(keep);
        let window = Series::new(
            demand.time_at(from as i64),
            step,
            demand.values[from..=t].to_vec(),
        );
        out.push(policy.cycle(demand.time_at(t as i64), &window));
        progress(t + 1);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn errors_name_the_field_and_line() {
        let err = parse(
            "name: llm\ncapacity_per_replica: 0\nmax: 10\nlead_time: 2m\nbogus: 1\n",
            "a.yaml",
        )
        .unwrap_err();
        let text = err.to_string();
        assert!(text.contains("capacity_per_replica"), "{text}");
        assert!(text.contains("bogus"), "{text}");
        assert!(err.issues.iter().any(|i| i.line == Some(2)), "{err:?}");
    }

    #[test]
    fn replay_decides_once_per_point_and_only_from_the_past() {
        let cfg = parse(
            "name: t\ncapacity_per_replica: 10\nmin: 1\nmax: 100\nlead_time: 10m\n",
            "a.yaml",
        )
        .unwrap();
        let values: Vec<f64> = (0..2000)
            .map(|i| 50.0 + 40.0 * ((i % 288) as f64 / 288.0 * std::f64::consts::TAU).sin())
            .collect();
        let a = run(&cfg, &Series::new(0, 300_000, values.clone()), |_| {});
        assert_eq!(a.len(), 2000);
        let mut changed = values;
        changed[1500..].iter_mut().for_each(|v| *v *= 3.0);
        let b = run(&cfg, &Series::new(0, 300_000, changed), |_| {});
        assert_eq!(
            a[..1500].iter().map(|d| d.desired).collect::<Vec<_>>(),
            b[..1500].iter().map(|d| d.desired).collect::<Vec<_>>()
        );
    }
}
