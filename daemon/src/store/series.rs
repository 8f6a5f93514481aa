//! Per-series sample storage: the ordered list of chunks of one series.
//!
//! Owns ordering rules for appends (out-of-order / duplicate detection),
//! chunk cutting, range reads and retention of a single series. Must not
//! know about labels, the index, sharding/locking, scraping or PromQL.

use super::chunk::{ClosedChunk, HeadChunk};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AppendOutcome {
    Appended,
    /// Same timestamp and identical value bits: a re-delivered sample.
    NoOp,
    OutOfOrder,
    Duplicate,
}

/// `repr(C)`: the head goes first because it is what every append touches.
#[derive(Debug)]
#[repr(C)]
pub struct Series {
    /// The head also holds the last accepted sample, used for ordering
    /// checks. It is never `None` once a sample was appended, except after
    /// retention dropped everything, when the series is about to be deleted.
    head: Option<HeadChunk>,
    closed: Vec<ClosedChunk>,
    /// Truncation epoch at creation; lets retention reap series that were
    /// created but never appended to, without racing a fresh creation.
    pub born_epoch: u32,
    has_samples: bool,
}

impl Series {
    pub fn new(born_epoch: u32) -> Self {
        Series {
            head: None,
            closed: Vec::new(),
            born_epoch,
            has_samples: false,
        }
    }

    pub fn append(&mut self, t: i64, v: f64) -> AppendOutcome {
        if let Some(h) = &mut self.head {
            let last = h.max_t();
            if t < last {
                return AppendOutcome::OutOfOrder;
            }
            if t == last {
                return if v.to_bits() == h.last_value_bits() {
                    AppendOutcome::NoOp
                } else {
                    AppendOutcome::Duplicate
                };
            }
            if !h.is_full_for(t) {
                h.append(t, v);
                return AppendOutcome::Appended;
            }
        }
        if let Some(full) = self.head.take() {
            self.closed.push(full.close());
        }
        self.head = Some(HeadChunk::new(t, v));
        self.has_samples = true;
        AppendOutcome::Appended
    }

    pub fn has_ever_had_samples(&self) -> bool {
        self.has_samples
    }

    pub fn is_empty(&self) -> bool {
        self.closed.is_empty() && self.head.is_none()
    }

    pub fn num_chunks(&self) -> usize {
        self.closed.len() + self.head.is_some() as usize
    }

    /// Bytes of compressed sample data (head at capacity, since that is what
    /// it occupies) plus chunk metadata.
    pub fn chunk_bytes(&self) -> usize {
        self.closed.iter().map(|c| c.byte_len()).sum::<usize>()
            + self.head.as_ref().map_or(0, |h| h.byte_capacity())
    }

    pub fn overhead_bytes(&self) -> usize {
        self.closed.capacity() * std::mem::size_of::<ClosedChunk>()
    }

    pub fn num_samples(&self) -> usize {
        self.closed
            .iter()
            .map(|c| c.num_samples() as usize)
            .sum::<usize>()
            + self.head.as_ref().map_or(0, |h| h.num_samples() as usize)
    }

    /// Iterates chunks overlapping [mint, maxt] as (min_t, max_t, iterator),
    /// skipping the rest by their bounds alone.
    fn for_each_chunk<F>(&self, mint: i64, maxt: i64, mut f: F)
    where
        F: FnMut(i64, i64, super::chunk::ChunkIter<'_>, usize) -> bool,
    {
        let closed = self
            .closed
            .iter()
            .map(|c| (c.min_t(), c.max_t(), c.num_samples(), c.iter()));
        let head = self
            .head
            .iter()
            .map(|h| (h.min_t(), h.max_t(), h.num_samples(), h.iter()));
        for (lo, hi, n, it) in closed.chain(head) {
            if hi < mint {
                continue;
            }
            if lo > maxt {
                break;
            }
            if !f(lo, hi, it, n as usize) {
                break;
            }
        }
    }

    /// Appends samples in [mint, maxt] (inclusive) to `out`.
    pub fn collect(&self, mint: i64, maxt: i64, out: &mut Vec<(i64, f64)>) {
        self.for_each_chunk(mint, maxt, |lo, hi, it, n| {
            if lo >= mint && hi <= maxt {
                out.reserve(n);
                out.extend(it);
            } else {
                for (t, v) in it {
                    if t > maxt {
                        break;
                    }
                    if t >= mint {
                        out.push((t, v));
                    }
                }
            }
            true
        });
    }

    pub fn has_sample_in(&self, mint: i64, maxt: i64) -> bool {
        let mut found = false;
        self.for_each_chunk(mint, maxt, |lo, hi, mut it, _| {
            found = (lo >= mint && hi <= maxt) || it.any(|(t, _)| t >= mint && t <= maxt);
            !found
        });
        found
    }

    /// Drops chunks whose newest sample is before `mint`. Returns (chunks,
    /// samples) removed.
    pub fn truncate_before(&mut self, mint: i64) -> (usize, usize) {
        let k = self.closed.iter().take_while(|c| c.max_t() < mint).count();
        let mut samples: usize = self.closed[..k]
            .iter()
            .map(|c| c.num_samples() as usize)
            .sum();
        let mut chunks = k;
        self.closed.drain(..k);
        // Closed chunks are older than the head, so the head can only go
        // once they all have.
        let head_expired =
            self.closed.is_empty() && self.head.as_ref().is_some_and(|h| h.max_t() < mint);
        let dropped = if head_expired { self.head.take() } else { None };
        if let Some(h) = dropped {
            samples += h.num_samples() as usize;
            chunks += 1;
        }
        // Steady state keeps ~retention/chunk-span chunks; do not let the Vec
        // keep a doubling-sized buffer forever.
        if self.closed.capacity() > 2 * self.closed.len() + 4 {
            self.closed.shrink_to_fit();
        }
        (chunks, samples)
    }
}
