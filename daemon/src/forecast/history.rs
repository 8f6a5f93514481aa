//! Downsampled history of one PromQL expression: the training data of forecasts and
//! autoscalers.
//!
//! Owns sampling the expression onto a fixed grid, the in-memory copy models read, and
//! its persistence in the state database (bounded by age). The raw store keeps hours;
//! this keeps what a weekly pattern needs: the entry's own grid for `keep`, and, when
//! that grid is finer than 5 minutes, 5-minute means for 40 days as well.
//!
//! Each point is the expression evaluated at the end of its grid bucket, as a recording
//! rule with that interval would give; several series are summed (demand is usually
//! spread over replicas). A bucket with no result is left out and interpolated when
//! the series is read, because a missed scrape is not zero demand.

use std::collections::VecDeque;
use std::sync::Arc;

use homeostat_ml::series::fill_gaps;
use homeostat_ml::Series;
use parking_lot::RwLock;

use crate::query::{Engine, QueryValue};
use crate::state::{StateDb, StateError};
use crate::store::Store;

const FIVE_MIN_MS: i64 = 300_000;
/// How long the 5-minute means are kept: past 35 days, so five full weeks are there.
pub const COARSE_KEEP_MS: i64 = 40 * 86_400_000;
/// Upper bound on points kept per (series, step), whatever `keep` says.
pub const MAX_POINTS: usize = 20_160;

/// Where history comes from and goes to: the state database, the raw store
/// and its query engine, and the optional remote Prometheus. Shared by every
/// forecast and autoscaler; cheap to clone.
#[derive(Clone)]
pub struct Sources {
    pub db: StateDb,
    pub store: Arc<Store>,
    pub engine: Arc<RwLock<Engine>>,
    pub remote: super::remote::SharedRemote,
}

pub struct HistoryFeed {
    key: String,
    step_ms: i64,
    keep_ms: i64,
    points: VecDeque<(i64, f64)>,
    /// End of the last bucket evaluated.
    last_ms: i64,
    db: StateDb,
    store: Arc<Store>,
    engine: Arc<RwLock<Engine>>,
}

impl HistoryFeed {
    /// Loads what the state database has for `expr` on `step_ms`, keeping `keep_ms`;
    /// with a `remote` source, first fills the window from its `query_range`
    /// (homeostat's own points win where both have one). A remote that fails is
    /// logged and skipped: local history is still good history.
    pub async fn open(
        expr: &str,
        step_ms: i64,
        keep_ms: i64,
        now_ms: i64,
        sources: &Sources,
    ) -> Result<HistoryFeed, StateError> {
        let Sources {
            db, store, engine, ..
        } = sources.clone();
        let remote = sources.remote.read().clone();
        let keep_ms = keep_ms.min(MAX_POINTS as i64 * step_ms);
        let mut rows = db.history(expr, step_ms, now_ms - keep_ms).await?;
        if let Some(r) = remote {
            let start = floor(now_ms - keep_ms, step_ms) + step_ms;
            let end = floor(now_ms, step_ms);
            let started = std::time::Instant::now();
            match r.fetch(expr, start, end, step_ms).await {
                Ok(points) => {
                    let mut merged: std::collections::BTreeMap<i64, f64> =
                        points.into_iter().collect();
                    let remote_n = merged.len();
                    let local: std::collections::BTreeMap<i64, f64> =
                        rows.iter().copied().collect();
                    let fresh: Vec<(i64, f64)> = merged
                        .iter()
                        .filter(|(t, _)| !local.contains_key(t))
                        .map(|(t, v)| (*t, *v))
                        .collect();
                    db.put_history(expr, step_ms, &fresh).await?;
                    merged.extend(local);
                    rows = merged.into_iter().collect();
                    tracing::info!(
                        expr,
                        source = r.url(),
                        points = remote_n,
                        new = fresh.len(),
                        seconds = started.elapsed().as_secs_f64(),
                        "history filled from the remote Prometheus"
                    );
                }
                Err(e) => {
                    tracing::warn!(expr, error = %e, "cannot read history from the remote Prometheus; using local history only")
                }
            }
        }
        let last_ms = rows
            .last()
            .map(|(t, _)| *t)
            // Nothing stored: start from what the raw store still holds.
            .unwrap_or_else(|| floor(now_ms - keep_ms.min(6 * 3_600_000), step_ms));
        Ok(HistoryFeed {
            key: expr.to_string(),
            step_ms,
            keep_ms,
            points: rows.into_iter().collect(),
            last_ms,
            db,
            store,
            engine,
        })
    }

    pub fn step_ms(&self) -> i64 {
        self.step_ms
    }

    pub fn len(&self) -> usize {
        self.points.len()
    }

    pub fn is_empty(&self) -> bool {
        self.points.is_empty()
    }

    /// Evaluates every bucket that ended since the last call (catching up after a
    /// restart from the raw store), persists them and prunes by age. Returns the
    /// number of new points.
    pub async fn sample(&mut self, now_ms: i64) -> Result<usize, StateError> {
        let until = floor(now_ms, self.step_ms);
        if until <= self.last_ms {
            return Ok(0);
        }
        let from = self.last_ms + self.step_ms;
        let (engine, store, expr, step) = (
            self.engine.read().clone(),
            self.store.clone(),
            self.key.clone(),
            self.step_ms,
        );
        let fresh: Vec<(i64, f64)> = tokio::task::spawn_blocking(move || {
            let mut out = Vec::new();
            let mut t = from;
            while t <= until {
                if let Some(v) = evaluate(&engine, &store, &expr, t) {
                    out.push((t, v));
                }
                t += step;
            }
            out
        })
        .await
        .unwrap_or_default();
        self.last_ms = until;
        if fresh.is_empty() {
            return Ok(0);
        }
        self.db.put_history(&self.key, self.step_ms, &fresh).await?;
        let coarse_before = self.points.back().map(|(t, _)| floor(*t, FIVE_MIN_MS));
        self.points.extend(fresh.iter().copied());
        if self.step_ms < FIVE_MIN_MS {
            self.roll_up(coarse_before).await?;
        }
        let oldest = now_ms - self.keep_ms;
        while self.points.front().is_some_and(|(t, _)| *t < oldest) {
            self.points.pop_front();
        }
        self.db
            .prune_history(&self.key, self.step_ms, oldest)
            .await?;
        Ok(fresh.len())
    }

    /// Writes the 5-minute means of the buckets completed since `after`.
    async fn roll_up(&self, after: Option<i64>) -> Result<(), StateError> {
        let Some(&(newest, _)) = self.points.back() else {
            return Ok(());
        };
        let done_until = floor(newest, FIVE_MIN_MS);
        let start = after.unwrap_or(done_until - FIVE_MIN_MS);
        let mut out = Vec::new();
        let mut end = start + FIVE_MIN_MS;
        while end <= done_until {
            let vals: Vec<f64> = self
                .points
                .iter()
                .filter(|(t, _)| *t > end - FIVE_MIN_MS && *t <= end)
                .map(|(_, v)| *v)
                .collect();
            if !vals.is_empty() {
                out.push((end, vals.iter().sum::<f64>() / vals.len() as f64));
            }
            end += FIVE_MIN_MS;
        }
        if !out.is_empty() {
            self.db.put_history(&self.key, FIVE_MIN_MS, &out).await?;
            let newest = out.last().map(|(t, _)| *t).unwrap_or(0);
            self.db
                .prune_history(&self.key, FIVE_MIN_MS, newest - COARSE_KEEP_MS)
                .await?;
        }
        Ok(())
    }

    /// The history on its regular grid, gaps interpolated; empty before any point.
    pub fn series(&self) -> Series {
        let (Some(&(first, _)), Some(&(last, _))) = (self.points.front(), self.points.back())
        else {
            return Series::new(0, self.step_ms, Vec::new());
        };
        let n = ((last - first) / self.step_ms) as usize + 1;
        let mut values = vec![f64::NAN; n];
        for (t, v) in &self.points {
            let i = ((t - first) / self.step_ms) as usize;
            if i < n {
                values[i] = *v;
            }
        }
        fill_gaps(&mut values);
        Series::new(first, self.step_ms, values)
    }
}

/// Start of the grid bucket containing `t` (its end, for a point stamped at the end).
pub fn floor(t: i64, step: i64) -> i64 {
    t - t.rem_euclid(step)
}

/// The expression's value at `t`: the sum of its series, or `None` without a result.
pub fn evaluate(engine: &Engine, store: &Store, expr: &str, t: i64) -> Option<f64> {
    match engine.instant_query(store, expr, t).ok()?.value {
        QueryValue::Scalar { v, .. } if v.is_finite() => Some(v),
        QueryValue::Vector(v) if !v.is_empty() => {
            let s: f64 = v.iter().map(|s| s.v).filter(|x| x.is_finite()).sum();
            Some(s)
        }
        _ => None,
    }
}
