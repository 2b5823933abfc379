//! A lock-free histogram with fixed bucket bounds, for the store's (and the orchestrator's)
//! metrics. Written by hand rather than taken from a metrics crate because `engine` depends on
//! no other Ledgerstack crate and should pull in nothing for a few atomics; the API renders
//! snapshots in Prometheus' text format (`api::metrics`).
//!
//! Observations are whole numbers in the unit the owner chooses (microseconds for latencies,
//! events for batch sizes): no floats, so sums are exact.

use std::sync::atomic::{AtomicU64, Ordering};

/// Upper bounds, in microseconds, for latencies from a fast fsync (tens of microseconds on an
/// NVMe) to a slow driver command (tens of seconds).
pub const LATENCY_BOUNDS_MICROS: &[u64] = &[
    50, 100, 250, 500, 1_000, 2_500, 5_000, 10_000, 25_000, 50_000, 100_000, 250_000, 500_000,
    1_000_000, 2_500_000, 5_000_000, 10_000_000, 30_000_000,
];

/// Upper bounds, in events, for how many events one group commit (one fsync) covers: a lone
/// appender commits alone, a crowd shares fsyncs up to the committer's batch limit.
pub const BATCH_BOUNDS_EVENTS: &[u64] = &[1, 2, 4, 8, 16, 32, 64, 128, 256, 512, 1024, 4096];

/// Counts observations into buckets `value <= bound` (plus one for everything above the last
/// bound), with their exact sum.
#[derive(Debug)]
pub struct Histogram {
    bounds: &'static [u64],
    /// One per bound plus the overflow bucket; *not* cumulative (a snapshot adds them up).
    buckets: Box<[AtomicU64]>,
    sum: AtomicU64,
}

/// A histogram's counts at one moment, cumulative as Prometheus expects.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HistogramSnapshot {
    /// The upper bounds, in the histogram's unit.
    pub bounds: &'static [u64],
    /// Observations `<=` each bound (same length as `bounds`).
    pub cumulative: Vec<u64>,
    /// Sum of every observation.
    pub sum: u64,
    /// Number of observations (the `+Inf` bucket).
    pub count: u64,
}

impl Histogram {
    /// An empty histogram with these (ascending) upper bounds.
    pub fn new(bounds: &'static [u64]) -> Self {
        Histogram {
            bounds,
            buckets: (0..=bounds.len()).map(|_| AtomicU64::new(0)).collect(),
            sum: AtomicU64::new(0),
        }
    }

    /// Counts one observation.
    pub fn observe(&self, value: u64) {
        let bucket = self.bounds.partition_point(|&bound| bound < value);
        self.buckets[bucket].fetch_add(1, Ordering::Relaxed);
        self.sum.fetch_add(value, Ordering::Relaxed);
    }

    /// Counts one duration, in whole microseconds.
    pub fn observe_micros(&self, elapsed: std::time::Duration) {
        self.observe(u64::try_from(elapsed.as_micros()).unwrap_or(u64::MAX));
    }

    /// The counts now. Taken without a lock, so under concurrent observations `sum` may be a
    /// step ahead of or behind the buckets; `count` is added up from the buckets, so it is never
    /// below a cumulative bucket, and every figure is monotonic across snapshots.
    pub fn snapshot(&self) -> HistogramSnapshot {
        let mut running = 0u64;
        let mut cumulative: Vec<u64> = self
            .buckets
            .iter()
            .map(|b| {
                running += b.load(Ordering::Relaxed);
                running
            })
            .collect();
        let count = cumulative.pop().unwrap_or(0);
        HistogramSnapshot {
            bounds: self.bounds,
            cumulative,
            sum: self.sum.load(Ordering::Relaxed),
            count,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn observations_land_in_the_first_bucket_that_holds_them() {
        let h = Histogram::new(&[1, 4, 16]);
        for v in [0, 1, 2, 4, 5, 16, 17, 100] {
            h.observe(v);
        }
        let s = h.snapshot();
        assert_eq!(s.cumulative, vec![2, 4, 6]);
        assert_eq!(s.count, 8);
        assert_eq!(s.sum, 145);
    }
}
