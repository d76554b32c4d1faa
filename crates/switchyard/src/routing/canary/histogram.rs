//! A latency histogram for percentiles, written from many requests at once
//! without a lock: atomic counters in log-scale buckets, four per power of
//! two (a percentile is off by at most a quarter of its value).

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

/// Powers of two covered, in microseconds: up to 2^41 µs, about 25 days.
const OCTAVES: usize = 41;

/// Buckets: one each for 0–3 µs, then four per power of two.
const BUCKETS: usize = 4 * (OCTAVES - 1);

/// Counts of latencies by bucket.
#[derive(Debug)]
pub struct Histogram {
    buckets: [AtomicU64; BUCKETS],
}

impl Default for Histogram {
    fn default() -> Self {
        Self {
            buckets: std::array::from_fn(|_| AtomicU64::new(0)),
        }
    }
}

impl Histogram {
    /// Counts one latency.
    pub fn record(&self, latency: Duration) {
        let micros = u64::try_from(latency.as_micros()).unwrap_or(u64::MAX);
        self.buckets[bucket(micros)].fetch_add(1, Ordering::Relaxed);
    }

    /// Forgets every latency.
    pub fn clear(&self) {
        for b in &self.buckets {
            b.store(0, Ordering::Relaxed);
        }
    }

    /// The latency under which a `q` fraction of those counted fall (the upper
    /// bound of its bucket), or `None` when none was counted.
    pub fn quantile(&self, q: f64) -> Option<Duration> {
        let counts: Vec<u64> = self
            .buckets
            .iter()
            .map(|b| b.load(Ordering::Relaxed))
            .collect();
        let total: u64 = counts.iter().sum();
        if total == 0 {
            return None;
        }
        // The rank of the value sought, 1-based.
        let rank = ((q * total as f64).ceil() as u64).clamp(1, total);
        let mut seen = 0;
        let index = counts.iter().position(|c| {
            seen += c;
            seen >= rank
        })?;
        Some(Duration::from_micros(upper_bound(index)))
    }
}

/// The bucket of a latency of `micros`.
fn bucket(micros: u64) -> usize {
    if micros < 4 {
        return micros as usize;
    }
    let octave = (63 - micros.leading_zeros()) as usize;
    if octave >= OCTAVES {
        return BUCKETS - 1;
    }
    // The two bits after the leading one pick the quarter.
    let quarter = ((micros >> (octave - 2)) & 3) as usize;
    4 * (octave - 1) + quarter
}

/// The first latency, in microseconds, past bucket `index`.
fn upper_bound(index: usize) -> u64 {
    if index < 4 {
        return index as u64 + 1;
    }
    let (octave, quarter) = (index / 4 + 1, (index % 4) as u64);
    (5 + quarter) << (octave - 2)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn buckets_are_contiguous_and_bound_their_values() {
        let mut last = 0;
        for micros in 0..100_000u64 {
            let index = bucket(micros);
            assert!(index == last || index == last + 1, "{micros}");
            assert!(micros < upper_bound(index), "{micros}");
            // A bucket is at most a quarter of its values wide.
            assert!(upper_bound(index) <= micros + micros / 4 + 1, "{micros}");
            last = index;
        }
        assert_eq!(bucket(u64::MAX), BUCKETS - 1);
    }

    #[test]
    fn the_p99_is_near_the_slowest_percent() {
        let histogram = Histogram::default();
        assert_eq!(histogram.quantile(0.99), None);
        for _ in 0..990 {
            histogram.record(Duration::from_millis(10));
        }
        for _ in 0..10 {
            histogram.record(Duration::from_millis(800));
        }
        let p99 = histogram.quantile(0.99).unwrap_or_default();
        assert!(
            p99 > Duration::from_millis(10) && p99 <= Duration::from_millis(13),
            "{p99:?}"
        );
        histogram.record(Duration::from_millis(800));
        let p99 = histogram.quantile(0.99).unwrap_or_default();
        assert!(
            p99 > Duration::from_millis(800) && p99 <= Duration::from_millis(1000),
            "{p99:?}"
        );
        histogram.clear();
        assert_eq!(histogram.quantile(0.99), None);
    }
}
