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
        let mut counts = [0; BUCKETS];
        self.add_to(&mut counts);
        quantile_in(&counts, q)
    }

    /// Adds its counts to `counts`.
    fn add_to(&self, counts: &mut [u64; BUCKETS]) {
        for (count, bucket) in counts.iter_mut().zip(&self.buckets) {
            *count += bucket.load(Ordering::Relaxed);
        }
    }
}

/// The `q` quantile of bucket `counts` (see [`Histogram::quantile`]).
fn quantile_in(counts: &[u64; BUCKETS], q: f64) -> Option<Duration> {
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

/// Latencies of the last `period` or two, for a percentile read on the
/// request path: two histograms take turns (each `period`, the older one is
/// cleared and written to), and the percentile is worked out again at most
/// once per [`REFRESH`]; in between, reading it is two atomic loads.
#[derive(Debug)]
pub struct LatencyWindow {
    halves: [Histogram; 2],
    /// The period being written, counted from `base`.
    epoch: AtomicU64,
    base: std::time::Instant,
    period: Duration,
    /// The quantile kept.
    q: f64,
    /// The last quantile worked out, in microseconds + 1 (0: too few samples).
    cached: AtomicU64,
    /// When it was worked out, in milliseconds from `base` + 1 (0: never).
    cached_at: AtomicU64,
}

/// How often a window's quantile is worked out again.
pub const REFRESH: Duration = Duration::from_secs(1);

/// Samples a window needs before its quantile counts.
pub const MIN_SAMPLES: u64 = 20;

impl LatencyWindow {
    /// A window of one to two `period`s that keeps the `q` quantile.
    pub fn new(q: f64, period: Duration) -> Self {
        Self {
            halves: [Histogram::default(), Histogram::default()],
            epoch: AtomicU64::new(0),
            base: std::time::Instant::now(),
            period: period.max(Duration::from_millis(1)),
            q,
            cached: AtomicU64::new(0),
            cached_at: AtomicU64::new(0),
        }
    }

    /// Counts one latency, seen at `now`.
    pub fn record(&self, latency: Duration, now: std::time::Instant) {
        let epoch = self.turn(now);
        self.halves[(epoch % 2) as usize].record(latency);
    }

    /// The kept quantile of the window at `now`, or `None` while it holds
    /// fewer than [`MIN_SAMPLES`] latencies.
    pub fn quantile(&self, now: std::time::Instant) -> Option<Duration> {
        let at = self.millis(now) + 1;
        let cached_at = self.cached_at.load(Ordering::Relaxed);
        if cached_at == 0 || at.saturating_sub(cached_at) >= REFRESH.as_millis() as u64 {
            self.turn(now);
            let mut counts = [0; BUCKETS];
            self.halves.iter().for_each(|h| h.add_to(&mut counts));
            let value = if counts.iter().sum::<u64>() >= MIN_SAMPLES {
                quantile_in(&counts, self.q).map_or(0, |d| d.as_micros() as u64 + 1)
            } else {
                0
            };
            self.cached.store(value, Ordering::Relaxed);
            self.cached_at.store(at, Ordering::Relaxed);
        }
        match self.cached.load(Ordering::Relaxed) {
            0 => None,
            micros => Some(Duration::from_micros(micros - 1)),
        }
    }

    /// The period of `now`, turning the halves when it is a new one: the half
    /// it writes is cleared (both, after a silence of two periods or more).
    fn turn(&self, now: std::time::Instant) -> u64 {
        let epoch = (now.saturating_duration_since(self.base).as_nanos()
            / self.period.as_nanos().max(1)) as u64;
        let seen = self.epoch.load(Ordering::Relaxed);
        if epoch > seen
            && self
                .epoch
                .compare_exchange(seen, epoch, Ordering::Relaxed, Ordering::Relaxed)
                .is_ok()
        {
            self.halves[(epoch % 2) as usize].clear();
            if epoch - seen >= 2 {
                self.halves[((epoch + 1) % 2) as usize].clear();
            }
        }
        epoch
    }

    fn millis(&self, now: std::time::Instant) -> u64 {
        now.saturating_duration_since(self.base).as_millis() as u64
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

    #[test]
    fn a_window_keeps_its_quantile_for_two_periods_at_most() {
        let window = LatencyWindow::new(0.95, Duration::from_secs(10));
        let start = std::time::Instant::now();
        let at = |secs: u64| start + Duration::from_secs(secs);
        for _ in 0..(MIN_SAMPLES - 1) {
            window.record(Duration::from_millis(100), at(1));
        }
        assert_eq!(window.quantile(at(1)), None, "too few samples");
        window.record(Duration::from_millis(100), at(2));
        let p95 = window.quantile(at(4)).unwrap_or_default();
        assert!(
            p95 >= Duration::from_millis(100) && p95 <= Duration::from_millis(125),
            "{p95:?}"
        );
        // The next period still sees the last one; the one after forgets it.
        assert!(window.quantile(at(15)).is_some());
        assert_eq!(window.quantile(at(25)), None);
    }
}
