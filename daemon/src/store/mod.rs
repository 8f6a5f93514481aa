//! In-memory series store: series identity, label index, compressed samples.
//!
//! Owns the public `Store` API (create series, append, select, metadata
//! queries, retention, stats), sharded locking of series data and the
//! error types. Must not do I/O or networking, and knows nothing about
//! scraping or PromQL: those layers call in through this API. All
//! sample values are user data, so nothing here panics on them.

mod chunk;
mod config;
mod index;
mod labels;
mod matcher;
mod series;

use std::fmt;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};

use parking_lot::{Mutex, RwLock};

pub use self::chunk::{MAX_CHUNK_SPAN_MS, SAMPLES_PER_CHUNK};
pub use self::config::StorageConfig;
pub use self::labels::{Label, Labels, LabelsBuilder, METRIC_NAME};
pub use self::matcher::{MatchOp, Matcher};

use self::index::Index;
use self::series::{AppendOutcome, Series};

/// Prometheus's staleness marker: a specific NaN that must be compared by
/// bits, since every NaN compares unequal.
pub const STALE_NAN_BITS: u64 = 0x7ff0000000000002;

pub fn stale_nan() -> f64 {
    f64::from_bits(STALE_NAN_BITS)
}

pub fn is_stale_nan(v: f64) -> bool {
    v.to_bits() == STALE_NAN_BITS
}

// ------------------------------------------------------------ errors

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AppendError {
    OutOfOrder,
    DuplicateTimestamp,
    SeriesLimit {
        limit: usize,
    },
    /// The ref was never issued by this store or its series was deleted by
    /// retention; call `get_or_create` again.
    UnknownSeries,
}

impl fmt::Display for AppendError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            AppendError::OutOfOrder => f.write_str("out of order sample"),
            AppendError::DuplicateTimestamp => f.write_str("duplicate sample for timestamp"),
            AppendError::SeriesLimit { limit } => write!(f, "series limit of {limit} reached"),
            AppendError::UnknownSeries => f.write_str("unknown series reference"),
        }
    }
}

impl std::error::Error for AppendError {}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum StoreError {
    InvalidRegex { pattern: String, message: String },
    Append(AppendError),
}

impl fmt::Display for StoreError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            StoreError::InvalidRegex { pattern, message } => {
                write!(f, "invalid regex {pattern:?}: {message}")
            }
            StoreError::Append(e) => write!(f, "append failed: {e}"),
        }
    }
}

impl std::error::Error for StoreError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            StoreError::Append(e) => Some(e),
            StoreError::InvalidRegex { .. } => None,
        }
    }
}

impl From<AppendError> for StoreError {
    fn from(e: AppendError) -> Self {
        StoreError::Append(e)
    }
}

// ------------------------------------------------------------- types

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct StoreConfig {
    pub retention_ms: i64,
    pub max_series: usize,
}

impl Default for StoreConfig {
    fn default() -> Self {
        StoreConfig {
            retention_ms: 6 * 3600 * 1000,
            max_series: 2_000_000,
        }
    }
}

/// Opaque handle to a series: `id << 24 | slot`. The 40-bit id is never
/// reused, so a ref to a deleted series fails with `UnknownSeries` instead
/// of silently hitting the series that reused its slot; the slot makes
/// `append` a direct array index with no hashing. Refs also order by
/// creation, which keeps postings lists sorted by plain push.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct SeriesRef(u64);

const SLOT_BITS: u32 = 24;
const SLOT_MASK: u64 = (1 << SLOT_BITS) - 1;
const MAX_ID: u64 = (1 << (64 - SLOT_BITS)) - 1;

impl SeriesRef {
    pub fn id(self) -> u64 {
        self.0
    }
}

/// Runs of `SHARD_RUN` consecutive ids share a shard. A target's series are
/// created together and appended in the same order every scrape, so this
/// turns its appends into a sequential walk over one slab with a hot lock,
/// instead of hopping across 64 slabs; different targets still mostly land
/// in different shards.
const SHARD_RUN_BITS: u32 = 6;

#[inline]
fn shard_of_id(id: u64) -> usize {
    ((id >> SHARD_RUN_BITS) % NUM_SHARDS as u64) as usize
}

#[inline]
fn shard_of(r: u64) -> usize {
    shard_of_id(r >> SLOT_BITS)
}

#[inline]
fn slot_of(r: u64) -> usize {
    (r & SLOT_MASK) as usize
}

#[derive(Clone, Debug, PartialEq)]
pub struct SeriesSamples {
    pub labels: Labels,
    pub samples: Vec<(i64, f64)>,
}

#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct TruncateStats {
    pub chunks_removed: usize,
    pub samples_removed: usize,
    pub series_removed: usize,
}

#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct StoreStats {
    pub num_series: usize,
    pub samples_appended_total: u64,
    pub out_of_order_total: u64,
    pub duplicate_total: u64,
    pub series_limit_rejections_total: u64,
    pub chunks: usize,
    /// Estimate: chunk bytes + per-series structs + index.
    pub memory_bytes: usize,
    /// Compressed sample bytes only (head chunks at capacity).
    pub chunk_bytes: usize,
    pub samples_stored: usize,
}

// ------------------------------------------------------------- store

const NUM_SHARDS: usize = 64;

/// Aligned so a slot's header and the head chunk's hot fields share one
/// cache line (and the pair of lines a slot spans is prefetched together).
#[repr(C, align(64))]
struct Slot {
    /// Full ref of the occupant; 0 = vacant (id 0 is never issued).
    r: u64,
    series: Series,
}

#[derive(Default)]
struct Shard {
    /// Slab of series; vacant slots are recycled via `free`, so churn does
    /// not grow it.
    slots: Vec<Slot>,
    free: Vec<u32>,
    // Counters live under the shard lock rather than in global atomics so
    // concurrent appenders do not bounce one cache line per sample.
    appended: u64,
    out_of_order: u64,
    duplicate: u64,
}

impl Shard {
    #[inline]
    fn get(&self, r: u64) -> Option<&Series> {
        self.slots
            .get(slot_of(r))
            .filter(|s| s.r == r && r != 0)
            .map(|s| &s.series)
    }

    #[inline]
    fn get_mut(&mut self, r: u64) -> Option<&mut Series> {
        self.slots
            .get_mut(slot_of(r))
            .filter(|s| s.r == r && r != 0)
            .map(|s| &mut s.series)
    }

    /// Places a new series, returning its ref, or None if the shard's slot
    /// space (2^24) is exhausted.
    fn insert(&mut self, id: u64, series: Series) -> Option<u64> {
        let slot = match self.free.pop() {
            Some(s) => s as u64,
            None => {
                let s = self.slots.len() as u64;
                if s > SLOT_MASK {
                    return None;
                }
                self.slots.push(Slot {
                    r: 0,
                    series: Series::new(0),
                });
                s
            }
        };
        let r = (id << SLOT_BITS) | slot;
        let dst = self.slots.get_mut(slot as usize)?;
        *dst = Slot { r, series };
        Some(r)
    }

    fn remove(&mut self, r: u64) {
        let slot = slot_of(r);
        if let Some(dst) = self.slots.get_mut(slot).filter(|s| s.r == r && r != 0) {
            *dst = Slot {
                r: 0,
                series: Series::new(0),
            };
            self.free.push(slot as u32);
        }
    }

    fn iter(&self) -> impl Iterator<Item = (u64, &Series)> {
        self.slots
            .iter()
            .filter(|s| s.r != 0)
            .map(|s| (s.r, &s.series))
    }
}

/// Padded so neighbouring shard locks do not share a cache line.
#[repr(align(128))]
#[derive(Default)]
struct PaddedShard(Mutex<Shard>);

pub struct Store {
    cfg: StoreConfig,
    /// Lock order: `index` before any shard. Written only on series
    /// creation and deletion.
    index: RwLock<Index>,
    shards: Box<[PaddedShard]>,
    next_id: AtomicU64,
    truncate_epoch: AtomicU64,
    series_limit_rejections: AtomicU64,
    /// Changed by config reloads; starts as `cfg.max_series`.
    max_series: AtomicUsize,
}

impl fmt::Debug for Store {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Store")
            .field("series", &self.index.read().len())
            .field("max_series", &self.max_series())
            .finish_non_exhaustive()
    }
}

impl Default for Store {
    fn default() -> Self {
        Store::new(StoreConfig::default())
    }
}

impl Store {
    pub fn new(cfg: StoreConfig) -> Self {
        Store {
            index: RwLock::new(Index::default()),
            shards: (0..NUM_SHARDS).map(|_| PaddedShard::default()).collect(),
            next_id: AtomicU64::new(1),
            truncate_epoch: AtomicU64::new(0),
            series_limit_rejections: AtomicU64::new(0),
            max_series: AtomicUsize::new(cfg.max_series),
            cfg,
        }
    }

    pub fn config(&self) -> &StoreConfig {
        &self.cfg
    }

    /// The series limit in force.
    pub fn max_series(&self) -> usize {
        self.max_series.load(Ordering::Relaxed)
    }

    /// Changes the series limit (config reload). Lowering it below the current
    /// count refuses new series until old ones expire; nothing is evicted.
    pub fn set_max_series(&self, n: usize) {
        self.max_series.store(n, Ordering::Relaxed);
    }

    #[inline]
    fn shard(&self, r: u64) -> &Mutex<Shard> {
        &self.shards[shard_of(r)].0
    }

    /// Returns the series for `labels`, creating it if needed. Label strings
    /// are interned against the index so repeated names/values are stored
    /// once. The fast path takes only the index read lock.
    pub fn get_or_create(&self, labels: &Labels) -> Result<SeriesRef, AppendError> {
        let fp = labels.fingerprint();
        if let Some(id) = self.index.read().lookup(fp, labels) {
            return Ok(SeriesRef(id));
        }
        let mut idx = self.index.write();
        // Another thread may have created it between the two locks.
        if let Some(id) = idx.lookup(fp, labels) {
            return Ok(SeriesRef(id));
        }
        let limit = self.max_series();
        if idx.len() >= limit {
            self.series_limit_rejections.fetch_add(1, Ordering::Relaxed);
            return Err(AppendError::SeriesLimit { limit });
        }
        let limit_err = || {
            self.series_limit_rejections.fetch_add(1, Ordering::Relaxed);
            AppendError::SeriesLimit { limit }
        };
        // Only ever incremented under the index write lock.
        let id = self.next_id.load(Ordering::Relaxed);
        if id > MAX_ID {
            return Err(limit_err());
        }
        let epoch = self.truncate_epoch.load(Ordering::Relaxed) as u32;
        let r = self.shards[shard_of_id(id)]
            .0
            .lock()
            .insert(id, Series::new(epoch))
            .ok_or_else(limit_err)?;
        self.next_id.store(id + 1, Ordering::Relaxed);
        idx.insert(r, fp, labels);
        Ok(SeriesRef(r))
    }

    /// Looks a series up without creating it.
    pub fn get(&self, labels: &Labels) -> Option<SeriesRef> {
        self.index
            .read()
            .lookup(labels.fingerprint(), labels)
            .map(SeriesRef)
    }

    pub fn append(&self, r: SeriesRef, t_ms: i64, v: f64) -> Result<(), AppendError> {
        let mut shard = self.shard(r.0).lock();
        let shard = &mut *shard;
        let s = shard.get_mut(r.0).ok_or(AppendError::UnknownSeries)?;
        match s.append(t_ms, v) {
            AppendOutcome::Appended => {
                shard.appended += 1;
                Ok(())
            }
            AppendOutcome::NoOp => Ok(()),
            AppendOutcome::OutOfOrder => {
                shard.out_of_order += 1;
                Err(AppendError::OutOfOrder)
            }
            AppendOutcome::Duplicate => {
                shard.duplicate += 1;
                Err(AppendError::DuplicateTimestamp)
            }
        }
    }

    /// Matching ids with their labels, sorted by labels. Labels are cloned
    /// (cheap: shared `Arc<str>`s) so the index lock is not held while
    /// samples are decoded.
    fn matching(&self, matchers: &[Matcher]) -> Vec<(Labels, u64)> {
        let idx = self.index.read();
        let ids = idx.select_ids(matchers);
        let mut hits: Vec<(Labels, u64)> = ids
            .into_iter()
            .filter_map(|id| idx.labels_of(id).map(|l| (l.clone(), id)))
            .collect();
        drop(idx);
        hits.sort_unstable_by(|a, b| a.0.cmp(&b.0));
        hits
    }

    /// Series matching all matchers with at least one sample in
    /// [mint_ms, maxt_ms] (inclusive), sorted by labels.
    pub fn select(&self, matchers: &[Matcher], mint_ms: i64, maxt_ms: i64) -> Vec<SeriesSamples> {
        if mint_ms > maxt_ms {
            return Vec::new();
        }
        let hits = self.matching(matchers);
        let mut out = Vec::with_capacity(hits.len());
        for (labels, id) in hits {
            let mut samples = Vec::new();
            {
                let shard = self.shard(id).lock();
                match shard.get(id) {
                    Some(s) => s.collect(mint_ms, maxt_ms, &mut samples),
                    None => continue,
                }
            }
            if !samples.is_empty() {
                out.push(SeriesSamples { labels, samples });
            }
        }
        out
    }

    pub fn series(&self, matchers: &[Matcher], mint_ms: i64, maxt_ms: i64) -> Vec<Labels> {
        if mint_ms > maxt_ms {
            return Vec::new();
        }
        self.matching(matchers)
            .into_iter()
            .filter(|(_, id)| {
                self.shard(*id)
                    .lock()
                    .get(*id)
                    .is_some_and(|s| s.has_sample_in(mint_ms, maxt_ms))
            })
            .map(|(l, _)| l)
            .collect()
    }

    /// Sorted label names; with matchers, only names present on matching
    /// series. Not time-bounded: a name is listed while any series has it.
    pub fn label_names(&self, matchers: &[Matcher]) -> Vec<String> {
        let idx = self.index.read();
        if matchers.is_empty() {
            return idx.label_names();
        }
        let mut names: Vec<&str> = Vec::new();
        for id in idx.select_ids(matchers) {
            if let Some(ls) = idx.labels_of(id) {
                names.extend(ls.iter().map(|l| &*l.name));
            }
        }
        names.sort_unstable();
        names.dedup();
        names.into_iter().map(str::to_owned).collect()
    }

    pub fn label_values(&self, name: &str, matchers: &[Matcher]) -> Vec<String> {
        let idx = self.index.read();
        if matchers.is_empty() {
            return idx.label_values(name);
        }
        let mut vals: Vec<&str> = idx
            .select_ids(matchers)
            .into_iter()
            .filter_map(|id| idx.labels_of(id).and_then(|ls| ls.get(name)))
            .collect();
        vals.sort_unstable();
        vals.dedup();
        vals.into_iter().map(str::to_owned).collect()
    }

    /// Retention: drops chunks whose newest sample is before `mint_ms`, then
    /// deletes series left empty. A series that never received a sample is
    /// deleted only once it has survived a whole truncation interval, so a
    /// series created just before this call is not reaped before its first
    /// append.
    pub fn truncate_before(&self, mint_ms: i64) -> TruncateStats {
        let epoch = (self.truncate_epoch.fetch_add(1, Ordering::Relaxed) + 1) as u32;
        let reapable = |s: &Series| {
            s.is_empty() && (s.has_ever_had_samples() || epoch.wrapping_sub(s.born_epoch) >= 2)
        };
        let mut st = TruncateStats::default();
        let mut candidates: Vec<u64> = Vec::new();
        for shard in self.shards.iter() {
            let mut g = shard.0.lock();
            for slot in g.slots.iter_mut().filter(|s| s.r != 0) {
                let (c, n) = slot.series.truncate_before(mint_ms);
                st.chunks_removed += c;
                st.samples_removed += n;
                if reapable(&slot.series) {
                    candidates.push(slot.r);
                }
            }
        }
        if candidates.is_empty() {
            return st;
        }
        // Re-check under the index write lock: an append may have revived a
        // candidate, and no new lookup can hand out its ref while we hold it.
        let mut idx = self.index.write();
        let mut removed = Vec::with_capacity(candidates.len());
        for id in candidates {
            let mut g = self.shard(id).lock();
            if g.get(id).is_some_and(reapable) {
                g.remove(id);
                removed.push(id);
            }
        }
        idx.remove(&removed);
        st.series_removed = removed.len();
        st
    }

    /// Convenience for the daemon's retention loop.
    pub fn truncate_for_retention(&self, now_ms: i64) -> TruncateStats {
        self.truncate_before(now_ms.saturating_sub(self.cfg.retention_ms))
    }

    pub fn stats(&self) -> StoreStats {
        use std::mem::size_of;
        let mut st = StoreStats {
            series_limit_rejections_total: self.series_limit_rejections.load(Ordering::Relaxed),
            ..StoreStats::default()
        };
        let index_bytes = {
            let idx = self.index.read();
            st.num_series = idx.len();
            idx.memory_bytes()
        };
        let mut mem = index_bytes;
        for shard in self.shards.iter() {
            let g = shard.0.lock();
            st.samples_appended_total += g.appended;
            st.out_of_order_total += g.out_of_order;
            st.duplicate_total += g.duplicate;
            mem += g.slots.capacity() * size_of::<Slot>() + g.free.capacity() * 4;
            for (_, s) in g.iter() {
                st.chunks += s.num_chunks();
                st.chunk_bytes += s.chunk_bytes();
                st.samples_stored += s.num_samples();
                mem += s.chunk_bytes() + s.overhead_bytes();
            }
        }
        st.memory_bytes = mem;
        st
    }
}

#[cfg(test)]
mod tests;
