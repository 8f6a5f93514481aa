//! `homeostat forecast backtest` and `homeostat replay`: files in, files out, a
//! progress bar on stderr. The numbers come from `homeostat-ml` and the daemon's own
//! autoscale policy.

use std::io::Write;
use std::path::Path;
use std::time::Instant;

use anyhow::{bail, Context};
use homeostat::autoscale::{replay, Mode};
use homeostat::forecast::csvio::{format_ts, read_origins, read_series};
use homeostat_ml::{backtest as run_backtest, ModelConfig};
use indicatif::{ProgressBar, ProgressStyle};

fn bar(len: usize, what: &str) -> ProgressBar {
    let pb = ProgressBar::new(len as u64);
    pb.set_style(
        ProgressStyle::with_template(
            "{msg} [{bar:40}] {pos}/{len} ({elapsed} elapsed, ~{eta} left)",
        )
        .unwrap_or_else(|_| ProgressStyle::default_bar())
        .progress_chars("=> "),
    );
    pb.set_message(what.to_string());
    pb
}

fn create(out: &Path) -> anyhow::Result<std::io::BufWriter<std::fs::File>> {
    let f =
        std::fs::File::create(out).with_context(|| format!("cannot write {}", out.display()))?;
    Ok(std::io::BufWriter::new(f))
}

/// Float formatting that keeps full precision but drops noise like `12.000000`.
fn num(v: f64) -> String {
    if v.fract() == 0.0 && v.abs() < 1e15 {
        format!("{v:.1}")
    } else {
        format!("{v}")
    }
}

pub fn backtest(
    input: &Path,
    origins: &Path,
    horizon: usize,
    coverage: f64,
    refit_every: usize,
    out: &Path,
) -> anyhow::Result<()> {
    if horizon == 0 {
        bail!("--horizon must be at least 1");
    }
    if refit_every == 0 {
        bail!("--refit-every must be at least 1");
    }
    let (series, filled) = read_series(input)?;
    if filled > 0 {
        eprintln!(
            "{}: {filled} missing grid points filled by linear interpolation",
            input.display()
        );
    }
    let origins_ms = read_origins(origins)?;
    for o in &origins_ms {
        if series.index_of(*o).is_none() {
            bail!(
                "{}: origin {} is not a timestamp of {} (interval {} s)",
                origins.display(),
                format_ts(*o),
                input.display(),
                series.step_ms / 1000
            );
        }
    }
    let cfg = ModelConfig {
        horizon,
        coverage,
        ..ModelConfig::default()
    };
    cfg.validate()?;
    let started = Instant::now();
    let pb = bar(origins_ms.len(), "backtest");
    let rows = run_backtest(&series, &origins_ms, &cfg, refit_every, |done| {
        pb.set_position(done as u64)
    })?;
    pb.finish_and_clear();
    let mut w = create(out)?;
    writeln!(w, "origin,step,timestamp,yhat,lo,hi")?;
    for r in &rows {
        writeln!(
            w,
            "{},{},{},{},{},{}",
            format_ts(r.origin_ms),
            r.step,
            format_ts(r.timestamp_ms),
            num(r.yhat),
            num(r.lo),
            num(r.hi)
        )?;
    }
    w.flush()?;
    eprintln!(
        "{} origins × {horizon} steps written to {} in {:.2}s",
        origins_ms.len(),
        out.display(),
        started.elapsed().as_secs_f64()
    );
    Ok(())
}

pub fn replay(input: &Path, autoscale: &Path, out: &Path, details: bool) -> anyhow::Result<()> {
    let cfg = replay::load(autoscale)?;
    let (series, filled) = read_series(input)?;
    if filled > 0 {
        eprintln!(
            "{}: {filled} missing grid points filled by linear interpolation",
            input.display()
        );
    }
    let started = Instant::now();
    let pb = bar(series.len(), "replay");
    let decisions = replay::run(&cfg, &series, |done| {
        if done % 64 == 0 || done == series.len() {
            pb.set_position(done as u64)
        }
    });
    pb.finish_and_clear();
    let mut w = create(out)?;
    if details {
        writeln!(
            w,
            "timestamp,desired_replicas,demand,reactive,predictive,upper,mode,reason"
        )?;
    } else {
        writeln!(w, "timestamp,desired_replicas")?;
    }
    let mut predictive = 0usize;
    for d in &decisions {
        if matches!(d.mode, Mode::Predictive) {
            predictive += 1;
        }
        if details {
            let (mode, reason) = match &d.mode {
                Mode::Predictive => ("predictive", String::new()),
                Mode::Reactive(r) => ("reactive", r.replace(',', ";")),
            };
            writeln!(
                w,
                "{},{},{},{},{},{},{mode},{}",
                format_ts(d.at_ms),
                d.desired,
                num(d.demand),
                d.reactive,
                d.predictive.map(|p| p.to_string()).unwrap_or_default(),
                d.upper.map(num).unwrap_or_default(),
                reason
            )?;
        } else {
            writeln!(w, "{},{}", format_ts(d.at_ms), d.desired)?;
        }
    }
    w.flush()?;
    eprintln!(
        "{} decisions ({} predictive, {} reactive) written to {} in {:.2}s",
        decisions.len(),
        predictive,
        decisions.len() - predictive,
        out.display(),
        started.elapsed().as_secs_f64()
    );
    Ok(())
}
