//! The retry budget: retries may add at most a fixed share of extra load on
//! the providers, so that an outage does not turn into a retry storm.
//!
//! Finagle's idea: every first attempt deposits `ratio` of a retry, every
//! retry withdraws one, and a small allowance per window lets a quiet gateway
//! still retry. Both counts live in a sliding `Window` of time buckets,
//! which the circuit breaker uses too for its failure rate.

use std::sync::OnceLock;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use tokio::time::Instant;

/// A Finagle-style retry budget, shared by every request to the providers
/// behind it.
///
/// A retry is allowed when, over the last `window`,
/// `retries + 1 <= ratio * requests + min_retries_per_window`. The check and
/// the count are two atomic steps, not one: callers racing for the last
/// retry of a window may overshoot it by at most their number.
#[derive(Debug)]
pub struct RetryBudget {
    /// Share of first attempts that may be retried (0.2: 20% extra load).
    ratio: f64,
    /// Retries allowed per window whatever the traffic.
    min_retries: f64,
    /// First attempts (first count) and retries (second count).
    window: Window,
}

impl RetryBudget {
    /// A budget letting retries add `ratio` of the first attempts (0.2: at
    /// most 20% more upstream calls) plus `min_retries_per_window`, counted
    /// over a sliding `window`. A negative or NaN `ratio` counts as 0.
    pub fn new(ratio: f64, min_retries_per_window: u32, window: Duration) -> Self {
        Self {
            ratio: ratio.max(0.0),
            min_retries: f64::from(min_retries_per_window),
            window: Window::new(window),
        }
    }

    /// Counts a first attempt: call it once per request, not per retry.
    pub fn record_request(&self, now: Instant) {
        self.window.add(now, 1, 0);
    }

    /// Whether one more retry fits the budget; when it does, it is counted.
    pub fn try_retry(&self, now: Instant) -> bool {
        let (requests, retries) = self.window.totals(now);
        // Totals stay far below 2^53: exact in an f64.
        let allowed = self.ratio * requests as f64 + self.min_retries;
        if (retries + 1) as f64 <= allowed {
            self.window.add(now, 0, 1);
            true
        } else {
            false
        }
    }
}

impl Default for RetryBudget {
    /// 50% extra load, plus 10 retries per window, over a 10 s window:
    /// enough to retry every failure of a deployment failing 30% of requests
    /// (0.3 + 0.09 retries per request with 3 attempts), while the breakers,
    /// opening at a 50% failure share, keep a failing deployment's load to a
    /// trickle before the budget is needed to.
    fn default() -> Self {
        Self::new(0.5, 10, Duration::from_secs(10))
    }
}

/// Buckets in a [`Window`].
const BUCKETS: u64 = 10;

/// Bits of a bucket's epoch (its number since the window's origin, wrapping).
const EPOCH_BITS: u32 = 24;
/// Bits of each of a bucket's two counts.
const COUNT_BITS: u32 = 20;
/// The mask of an epoch.
const EPOCH_MASK: u64 = (1 << EPOCH_BITS) - 1;
/// The mask of a count, and the most a bucket counts.
const COUNT_MAX: u64 = (1 << COUNT_BITS) - 1;

/// Two event counts over a sliding time window, lock-free.
///
/// The window is a ring of ten buckets, each `span / 10` long, each one
/// `AtomicU64` packing the bucket's epoch (24 bits) with its two counts
/// (20 bits each), updated by compare-and-swap. [`Window::totals`] adds the
/// current bucket and the nine before it, so it covers between 90% and 100%
/// of `span`. A bucket stops counting at 2^20 − 1 of either count (at once
/// for both, so ratios hold); epochs wrap after 2^24 buckets, which an idle
/// slot could mistake for the present only if untouched for exactly a
/// multiple of that (194 days with 1 s buckets).
///
/// Bucket epochs start at the first `now` the window sees, so that time is
/// only ever what callers pass in.
#[derive(Debug)]
pub(super) struct Window {
    /// The ring, indexed by epoch modulo [`BUCKETS`].
    buckets: [AtomicU64; BUCKETS as usize],
    /// One bucket's length in nanoseconds, at least 1.
    bucket_nanos: u64,
    /// The first `now` seen.
    origin: OnceLock<Instant>,
}

impl Window {
    /// An empty window spanning `span`.
    pub(super) fn new(span: Duration) -> Self {
        let bucket_nanos = u64::try_from(span.as_nanos() / u128::from(BUCKETS)).unwrap_or(u64::MAX);
        Self {
            buckets: Default::default(),
            bucket_nanos: bucket_nanos.max(1),
            origin: OnceLock::new(),
        }
    }

    /// The epoch (wrapped to [`EPOCH_BITS`]) of the bucket holding `now`.
    fn epoch(&self, now: Instant) -> u64 {
        let origin = *self.origin.get_or_init(|| now);
        let nanos =
            u64::try_from(now.saturating_duration_since(origin).as_nanos()).unwrap_or(u64::MAX);
        (nanos / self.bucket_nanos) & EPOCH_MASK
    }

    /// Adds `first` and `second` (0 or 1 each) to the bucket holding `now`.
    /// An event older than the bucket now in its slot is dropped.
    pub(super) fn add(&self, now: Instant, first: u64, second: u64) {
        let epoch = self.epoch(now);
        let slot = &self.buckets[(epoch % BUCKETS) as usize];
        let mut current = slot.load(Ordering::Relaxed);
        loop {
            let (held, a, b) = unpack(current);
            let age = epoch.wrapping_sub(held) & EPOCH_MASK;
            let next = if age == 0 {
                if a + first > COUNT_MAX || b + second > COUNT_MAX {
                    return;
                }
                pack(epoch, a + first, b + second)
            } else if age < 1 << (EPOCH_BITS - 1) {
                pack(epoch, first, second)
            } else {
                return;
            };
            match slot.compare_exchange_weak(current, next, Ordering::Relaxed, Ordering::Relaxed) {
                Ok(_) => return,
                Err(seen) => current = seen,
            }
        }
    }

    /// Both counts over the window ending at `now`.
    pub(super) fn totals(&self, now: Instant) -> (u64, u64) {
        let epoch = self.epoch(now);
        self.buckets.iter().fold((0, 0), |(sum_a, sum_b), slot| {
            let (held, a, b) = unpack(slot.load(Ordering::Relaxed));
            if epoch.wrapping_sub(held) & EPOCH_MASK < BUCKETS {
                (sum_a + a, sum_b + b)
            } else {
                (sum_a, sum_b)
            }
        })
    }

    /// Forgets every count.
    pub(super) fn clear(&self) {
        for slot in &self.buckets {
            slot.store(0, Ordering::Relaxed);
        }
    }
}

/// One bucket as a word: epoch, first count, second count.
fn pack(epoch: u64, a: u64, b: u64) -> u64 {
    (epoch << (2 * COUNT_BITS)) | (a << COUNT_BITS) | b
}

/// A bucket's epoch, first count and second count.
fn unpack(word: u64) -> (u64, u64, u64) {
    (
        word >> (2 * COUNT_BITS),
        (word >> COUNT_BITS) & COUNT_MAX,
        word & COUNT_MAX,
    )
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use super::*;

    const SECOND: Duration = Duration::from_secs(1);

    #[test]
    fn ratio_bounds_the_retries() {
        let budget = RetryBudget::new(0.2, 0, Duration::from_secs(10));
        let t0 = Instant::now();
        for _ in 0..1000 {
            budget.record_request(t0);
        }
        let allowed = (0..1000).filter(|_| budget.try_retry(t0)).count();
        assert_eq!(allowed, 200);
        assert!(!budget.try_retry(t0 + SECOND));
        // New traffic earns new retries: 5 requests, one retry.
        for _ in 0..5 {
            budget.record_request(t0 + SECOND);
        }
        assert!(budget.try_retry(t0 + SECOND));
        assert!(!budget.try_retry(t0 + SECOND));
    }

    #[test]
    fn minimum_allows_retries_without_traffic() {
        let budget = RetryBudget::new(0.2, 3, Duration::from_secs(10));
        let t0 = Instant::now();
        assert_eq!((0..10).filter(|_| budget.try_retry(t0)).count(), 3);
    }

    #[test]
    fn window_slides() {
        let budget = RetryBudget::new(0.5, 0, Duration::from_secs(10));
        let t0 = Instant::now();
        for _ in 0..100 {
            budget.record_request(t0);
        }
        assert_eq!((0..10).filter(|_| budget.try_retry(t0)).count(), 10);
        // Still inside the window: 40 retries left.
        let t5 = t0 + 5 * SECOND;
        assert_eq!((0..100).filter(|_| budget.try_retry(t5)).count(), 40);
        // At 11 s the requests of 0 s no longer count, the retries of 5 s do.
        let t11 = t0 + 11 * SECOND;
        assert!(!budget.try_retry(t11));
        for _ in 0..100 {
            budget.record_request(t11);
        }
        assert_eq!((0..100).filter(|_| budget.try_retry(t11)).count(), 10);
        // At 16 s the retries of 5 s are gone too.
        let t16 = t0 + 16 * SECOND;
        assert_eq!((0..100).filter(|_| budget.try_retry(t16)).count(), 40);
    }

    #[test]
    fn default_is_documented() {
        let budget = RetryBudget::default();
        let t0 = Instant::now();
        for _ in 0..100 {
            budget.record_request(t0);
        }
        assert_eq!((0..100).filter(|_| budget.try_retry(t0)).count(), 60);
    }

    #[test]
    fn concurrent_use_counts_every_request() {
        let budget = Arc::new(RetryBudget::new(0.1, 0, Duration::from_secs(10)));
        let t0 = Instant::now();
        let threads: Vec<_> = (0..4)
            .map(|_| {
                let budget = Arc::clone(&budget);
                std::thread::spawn(move || {
                    for _ in 0..10_000 {
                        budget.record_request(t0);
                    }
                })
            })
            .collect();
        for thread in threads {
            thread.join().unwrap();
        }
        assert_eq!(budget.window.totals(t0), (40_000, 0));
        assert_eq!((0..5000).filter(|_| budget.try_retry(t0)).count(), 4000);
    }

    #[test]
    fn window_drops_late_events_and_saturates() {
        let window = Window::new(Duration::from_secs(10));
        let t0 = Instant::now();
        window.add(t0, 1, 1);
        // 10 s later the same slot holds a new bucket; an event from t0
        // arriving late must not land in it.
        let t10 = t0 + 10 * SECOND;
        window.add(t10, 1, 0);
        window.add(t0, 1, 1);
        assert_eq!(window.totals(t10), (1, 0));
        // A full bucket stops counting both.
        let slot = &window.buckets[0];
        slot.store(pack(window.epoch(t10), COUNT_MAX, 7), Ordering::Relaxed);
        window.add(t10, 1, 1);
        assert_eq!(window.totals(t10), (COUNT_MAX, 7));
        window.clear();
        assert_eq!(window.totals(t10), (0, 0));
    }

    #[test]
    fn zero_span_does_not_divide_by_zero() {
        let window = Window::new(Duration::ZERO);
        let t0 = Instant::now();
        window.add(t0, 1, 0);
        assert_eq!(window.totals(t0), (1, 0));
        assert_eq!(window.totals(t0 + SECOND), (0, 0));
    }
}
