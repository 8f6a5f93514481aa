//! Regular time series: the one shape every model here consumes.
//!
//! Owns turning irregular `(timestamp, value)` points into a grid with a fixed step.
//! Must not read files or clocks: callers hand in points and get a grid back.

use crate::MlError;

/// Values on a regular grid: `values[i]` is the value at `start_ms + i * step_ms`.
#[derive(Debug, Clone, PartialEq)]
pub struct Series {
    pub start_ms: i64,
    pub step_ms: i64,
    pub values: Vec<f64>,
}

impl Series {
    pub fn new(start_ms: i64, step_ms: i64, values: Vec<f64>) -> Self {
        Series {
            start_ms,
            step_ms,
            values,
        }
    }

    pub fn len(&self) -> usize {
        self.values.len()
    }

    pub fn is_empty(&self) -> bool {
        self.values.is_empty()
    }

    /// Timestamp of index `i` (which may lie past the end, for forecasts).
    pub fn time_at(&self, i: i64) -> i64 {
        self.start_ms + i * self.step_ms
    }

    /// Index of the grid point at `ts_ms`, if `ts_ms` lies on the grid and inside it.
    pub fn index_of(&self, ts_ms: i64) -> Option<usize> {
        let off = ts_ms - self.start_ms;
        if off < 0 || off % self.step_ms != 0 {
            return None;
        }
        let i = (off / self.step_ms) as usize;
        (i < self.values.len()).then_some(i)
    }

    /// The prefix that ends at index `end` (inclusive): what was known at that time.
    pub fn up_to(&self, end: usize) -> Series {
        Series {
            start_ms: self.start_ms,
            step_ms: self.step_ms,
            values: self.values[..=end.min(self.values.len().saturating_sub(1))].to_vec(),
        }
    }

    /// Builds a grid from points sorted by time. The step is the median spacing;
    /// points are snapped to the nearest grid slot (the NAB series carry a constant
    /// seconds offset, which the grid keeps from its first point), and slots without a
    /// point are filled by linear interpolation between their neighbours, because a
    /// missed scrape should read as "about the same", not as zero demand.
    pub fn regularize(points: &[(i64, f64)]) -> Result<Series, MlError> {
        if points.len() < 2 {
            return Err(MlError::TooShort {
                needed: 2,
                got: points.len(),
            });
        }
        let mut gaps: Vec<i64> = points.windows(2).map(|w| w[1].0 - w[0].0).collect();
        if gaps.iter().any(|g| *g <= 0) {
            return Err(MlError::NotIncreasing);
        }
        gaps.sort_unstable();
        let step = gaps[gaps.len() / 2];
        let start = points[0].0;
        let last = points[points.len() - 1].0;
        let n = ((last - start) as f64 / step as f64).round() as usize + 1;
        let mut slots = vec![f64::NAN; n];
        for &(ts, v) in points {
            let i = ((ts - start) as f64 / step as f64).round() as usize;
            if i < n && v.is_finite() {
                slots[i] = v;
            }
        }
        fill_gaps(&mut slots);
        Ok(Series::new(start, step, slots))
    }
}

/// Linear interpolation over NaN runs; leading and trailing runs copy the nearest value.
pub fn fill_gaps(values: &mut [f64]) {
    let known: Vec<usize> = (0..values.len())
        .filter(|&i| values[i].is_finite())
        .collect();
    let (Some(&first), Some(&last)) = (known.first(), known.last()) else {
        values.iter_mut().for_each(|v| *v = 0.0);
        return;
    };
    let (head, tail) = (values[first], values[last]);
    values[..first].iter_mut().for_each(|v| *v = head);
    values[last + 1..].iter_mut().for_each(|v| *v = tail);
    for w in known.windows(2) {
        let (a, b) = (w[0], w[1]);
        if b > a + 1 {
            let (va, vb) = (values[a], values[b]);
            for (k, v) in values[a + 1..b].iter_mut().enumerate() {
                let f = (k + 1) as f64 / (b - a) as f64;
                *v = va + (vb - va) * f;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn regularize_fills_a_missing_step_linearly() {
        let pts = [(0, 1.0), (300_000, 2.0), (900_000, 4.0), (1_200_000, 5.0)];
        let s = Series::regularize(&pts).unwrap();
        assert_eq!(s.step_ms, 300_000);
        assert_eq!(s.values, vec![1.0, 2.0, 3.0, 4.0, 5.0]);
        assert_eq!(s.index_of(600_000), Some(2));
        assert_eq!(s.index_of(600_001), None);
    }

    #[test]
    fn regularize_refuses_unsorted_input() {
        let pts = [(10, 1.0), (5, 2.0), (20, 3.0)];
        assert!(matches!(
            Series::regularize(&pts),
            Err(MlError::NotIncreasing)
        ));
    }
}
