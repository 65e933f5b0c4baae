//! A latency histogram with fixed buckets, the shape Prometheus exposes
//! (`_bucket{le=...}`, `_sum`, `_count`): every layer that times something
//! for a status page records into the same buckets, so that pages and
//! dashboards can put them side by side.
//!
//! Buckets are log-linear in microseconds: 1, 1.5, 2, 3, 5 and 7 times each
//! power of ten from 10 µs to 10 ms, where ekv's requests and syncs fall,
//! then 1, 2 and 5 times each power of ten up to 10 s, then `+Inf`.
//! Finding a bucket is a binary search over 28 bounds (five comparisons),
//! cheap enough for a request path.

/// Upper bounds (inclusive, microseconds) of every bucket but the last,
/// which is `+Inf`.
pub const BUCKET_BOUNDS_MICROS: [u64; 28] = [
    10, 15, 20, 30, 50, 70, 100, 150, 200, 300, 500, 700, 1_000, 1_500, 2_000, 3_000, 5_000, 7_000, 10_000,
    20_000, 50_000, 100_000, 200_000, 500_000, 1_000_000, 2_000_000, 5_000_000, 10_000_000,
];

/// Number of buckets, `+Inf` included.
pub const BUCKETS: usize = BUCKET_BOUNDS_MICROS.len() + 1;

/// The bucket a duration of `nanos` falls in: the first whose bound is at
/// least the duration rounded up to whole microseconds.
#[inline]
pub fn bucket_of(nanos: u64) -> usize {
    let micros = nanos.div_ceil(1_000);
    BUCKET_BOUNDS_MICROS.partition_point(|&b| b < micros)
}

/// Counts of durations per bucket (not cumulative) and their sum.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Histogram {
    /// Durations recorded in each bucket; the last is `+Inf`.
    pub counts: [u64; BUCKETS],
    /// Sum of the durations recorded, in nanoseconds.
    pub sum_nanos: u64,
}

impl Histogram {
    /// Records one duration.
    #[inline]
    pub fn record_nanos(&mut self, nanos: u64) {
        self.counts[bucket_of(nanos)] += 1;
        self.sum_nanos = self.sum_nanos.wrapping_add(nanos);
    }

    /// Durations recorded.
    pub fn count(&self) -> u64 {
        self.counts.iter().sum()
    }

    /// Adds `other`'s counts to these.
    pub fn merge(&mut self, other: &Histogram) {
        for (a, b) in self.counts.iter_mut().zip(other.counts.iter()) {
            *a += b;
        }
        self.sum_nanos = self.sum_nanos.wrapping_add(other.sum_nanos);
    }

    /// `(bound in microseconds, durations at or below it)` for each bucket,
    /// cumulative as Prometheus wants them; the last bound is `None` (`+Inf`)
    /// and its count is [`Histogram::count`].
    pub fn cumulative(&self) -> impl Iterator<Item = (Option<u64>, u64)> + '_ {
        let mut acc = 0u64;
        self.counts.iter().enumerate().map(move |(i, c)| {
            acc += c;
            (BUCKET_BOUNDS_MICROS.get(i).copied(), acc)
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_land_in_the_first_bucket_that_holds_them() {
        assert_eq!(bucket_of(0), 0);
        assert_eq!(bucket_of(10_000), 0, "10 µs is at most the 10 µs bound");
        assert_eq!(bucket_of(10_001), 1, "a nanosecond over rounds up to the next bucket");
        assert_eq!(bucket_of(100_000), 6);
        assert_eq!(bucket_of(10_000_000_000), BUCKETS - 2);
        assert_eq!(bucket_of(10_000_000_001), BUCKETS - 1, "+Inf");
        assert_eq!(bucket_of(u64::MAX), BUCKETS - 1);
        assert!(BUCKET_BOUNDS_MICROS.windows(2).all(|w| w[0] < w[1]), "bounds rise");
    }

    #[test]
    fn cumulative_counts_end_at_the_total() {
        let mut h = Histogram::default();
        for n in [5_000, 120_000, 120_000, 3_000_000, u64::from(u32::MAX) * 10_000] {
            h.record_nanos(n);
        }
        let c: Vec<_> = h.cumulative().collect();
        assert_eq!(c.len(), BUCKETS);
        assert!(c.windows(2).all(|w| w[0].1 <= w[1].1));
        assert_eq!(c.last(), Some(&(None, 5)));
        assert_eq!(c[0], (Some(10), 1));
        assert_eq!(c[7], (Some(150), 3));
        let mut twice = h.clone();
        twice.merge(&h);
        assert_eq!(twice.count(), 10);
        assert_eq!(twice.sum_nanos, h.sum_nanos.wrapping_mul(2));
    }
}
