//! How long to wait before retrying: exponential backoff with full jitter,
//! and the provider's `retry-after` honoured up to a cap.
//!
//! Full jitter (a uniform pick between zero and the exponential ceiling)
//! spreads the retries of many callers failing at once, where a fixed
//! schedule would have them all come back together.

use std::time::Duration;

use tokio::time::Instant;

use crate::mix::splitmix64;

/// A retry delay schedule.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Backoff {
    /// The ceiling of the first retry's delay; it doubles with every retry.
    pub base: Duration,
    /// The highest ceiling.
    pub max: Duration,
    /// The longest `retry-after` worth waiting for; a provider asking for
    /// more is not retried.
    pub retry_after_cap: Duration,
}

impl Default for Backoff {
    /// Ceilings from 100 ms doubling up to 5 s; `retry-after` honoured up to
    /// 30 s.
    fn default() -> Self {
        Self {
            base: Duration::from_millis(100),
            max: Duration::from_secs(5),
            retry_after_cap: Duration::from_secs(30),
        }
    }
}

impl Backoff {
    /// The wait before retry number `attempt` (0 for the first retry), or
    /// `None` when the provider's `retry_after` exceeds
    /// [`Backoff::retry_after_cap`] and the deployment should not be retried.
    ///
    /// The wait is a uniform pick in `[0, min(max, base * 2^attempt)]`, drawn
    /// from `seed` (any value, a counter will do: it is mixed here), and never
    /// shorter than `retry_after`.
    pub fn delay(
        &self,
        attempt: u32,
        retry_after: Option<Duration>,
        seed: u64,
    ) -> Option<Duration> {
        let factor = 1u32.checked_shl(attempt).unwrap_or(u32::MAX);
        let ceiling = self.base.saturating_mul(factor).min(self.max);
        let ceiling = u64::try_from(ceiling.as_nanos()).unwrap_or(u64::MAX);
        // Lemire's multiply-shift: uniform in [0, ceiling] without a division.
        let pick = (u128::from(splitmix64(seed)) * (u128::from(ceiling) + 1)) >> 64;
        let jittered = Duration::from_nanos(u64::try_from(pick).unwrap_or(ceiling));
        match retry_after {
            Some(wait) if wait > self.retry_after_cap => None,
            Some(wait) => Some(jittered.max(wait)),
            None => Some(jittered),
        }
    }
}

/// Whether an attempt started after waiting `delay` from `now` would still
/// begin before `deadline`.
pub fn fits(delay: Duration, now: Instant, deadline: Instant) -> bool {
    now.checked_add(delay).is_some_and(|start| start < deadline)
}

#[cfg(test)]
mod tests {
    use super::*;

    const MS: Duration = Duration::from_millis(1);
    const SEEDS: u64 = 10_000;

    /// The delays of `attempt` over every seed.
    fn delays(backoff: &Backoff, attempt: u32) -> Vec<Duration> {
        (0..SEEDS)
            .map(|seed| backoff.delay(attempt, None, seed).unwrap())
            .collect()
    }

    #[test]
    fn delays_stay_within_a_doubling_ceiling() {
        let backoff = Backoff::default();
        for (attempt, ceiling) in [(0, 100), (1, 200), (2, 400), (5, 3200), (6, 5000)] {
            let ceiling = ceiling * MS;
            let delays = delays(&backoff, attempt);
            let highest = delays.iter().max().unwrap();
            let lowest = delays.iter().min().unwrap();
            assert!(*highest <= ceiling, "attempt {attempt}: {highest:?}");
            // Full jitter: the picks cover the whole range.
            assert!(
                *highest > ceiling.mul_f64(0.99),
                "attempt {attempt}: {highest:?}"
            );
            assert!(
                *lowest < ceiling.mul_f64(0.01),
                "attempt {attempt}: {lowest:?}"
            );
            let mean = delays.iter().sum::<Duration>() / SEEDS as u32;
            let half = ceiling / 2;
            assert!(
                mean.abs_diff(half) < half / 20,
                "attempt {attempt}: mean {mean:?}"
            );
        }
    }

    #[test]
    fn huge_attempts_do_not_overflow() {
        let backoff = Backoff::default();
        for attempt in [31, 32, 100, u32::MAX] {
            for seed in 0..100 {
                assert!(backoff.delay(attempt, None, seed).unwrap() <= backoff.max);
            }
        }
        let unbounded = Backoff {
            base: Duration::MAX,
            max: Duration::MAX,
            ..Backoff::default()
        };
        assert!(unbounded.delay(100, None, 7).is_some());
    }

    #[test]
    fn same_seed_same_delay() {
        let backoff = Backoff::default();
        assert_eq!(backoff.delay(3, None, 42), backoff.delay(3, None, 42));
        assert_ne!(backoff.delay(3, None, 42), backoff.delay(3, None, 43));
    }

    #[test]
    fn zero_base_retries_at_once() {
        let backoff = Backoff {
            base: Duration::ZERO,
            ..Backoff::default()
        };
        assert_eq!(backoff.delay(4, None, 1), Some(Duration::ZERO));
    }

    #[test]
    fn retry_after_is_honoured_up_to_the_cap() {
        let backoff = Backoff::default();
        let wait = Duration::from_secs(2);
        for seed in 0..SEEDS {
            let delay = backoff.delay(0, Some(wait), seed).unwrap();
            assert_eq!(delay, wait, "seed {seed}");
            // A longer backoff ceiling may pick beyond it, never before it.
            assert!(backoff.delay(8, Some(wait), seed).unwrap() >= wait);
        }
        let cap = backoff.retry_after_cap;
        assert_eq!(backoff.delay(0, Some(cap), 1), Some(cap));
        assert_eq!(backoff.delay(0, Some(cap + MS), 1), None);
    }

    #[test]
    fn fits_before_the_deadline() {
        let now = Instant::now();
        let deadline = now + Duration::from_secs(1);
        assert!(fits(999 * MS, now, deadline));
        assert!(!fits(1000 * MS, now, deadline));
        assert!(!fits(Duration::MAX, now, deadline));
    }
}
