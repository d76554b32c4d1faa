//! A rate limit per minute as one atomic number: the generic cell rate
//! algorithm (GCRA).
//!
//! A limit of `L` per minute spaces units `T = 60 s / L` apart. The cell keeps
//! the theoretical arrival time (`tat`) of the next unit; taking `n` units
//! moves it `n·T` ahead of `max(tat, now)`, and is allowed while it stays
//! within one minute of now (a burst of up to `L` at once). Unlike a windowed
//! counter it never lets `2L` through across a window's edge, and unlike
//! `governor`'s cells it can take many units at once, give them back, and be
//! moved after the fact — which a token limit needs, since a request's tokens
//! are known only when it ends. The Redis script of the shared limiter does
//! the same arithmetic on the same numbers.

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

/// One minute, in nanoseconds.
pub const MINUTE_NS: u64 = 60_000_000_000;

/// What a take left: units remaining now, and how long until the limit is
/// whole again.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Window {
    /// The limit per minute.
    pub limit: u64,
    /// Units that could be taken at once now.
    pub remaining: u64,
    /// How long until all `limit` units are free again.
    pub reset: Duration,
}

/// A refused take.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refused {
    /// Enough units come free after this wait.
    Wait(Duration),
    /// More units than the whole limit: never allowed.
    TooLarge,
}

/// A limit's cell: the theoretical arrival time, in nanoseconds since the
/// limiter's epoch (0: never used).
#[derive(Debug, Default)]
pub struct Gcra {
    tat: AtomicU64,
}

/// The spacing of units under `limit` per minute (at least 1 ns).
fn spacing(limit: u64) -> u64 {
    (MINUTE_NS / limit.max(1)).max(1)
}

impl Gcra {
    /// Takes `n` units of `limit` per minute at `now` (ns since the epoch).
    pub fn take(&self, now: u64, n: u64, limit: u64) -> Result<Window, Refused> {
        if n > limit {
            return Err(Refused::TooLarge);
        }
        let step = spacing(limit);
        let mut current = self.tat.load(Ordering::Acquire);
        loop {
            let next = current.max(now) + n * step;
            let ahead = next - now;
            if ahead > MINUTE_NS {
                return Err(Refused::Wait(Duration::from_nanos(ahead - MINUTE_NS)));
            }
            match self
                .tat
                .compare_exchange_weak(current, next, Ordering::AcqRel, Ordering::Acquire)
            {
                Ok(_) => {
                    return Ok(Window {
                        limit,
                        remaining: (MINUTE_NS - ahead) / step,
                        reset: Duration::from_nanos(ahead),
                    });
                }
                Err(seen) => current = seen,
            }
        }
    }

    /// Moves the cell by `delta` units of `limit` per minute: back (a
    /// negative delta: units given back) or ahead (units used after the fact).
    pub fn adjust(&self, delta: i64, limit: u64) {
        let step = spacing(limit);
        let units = delta.unsigned_abs().min(limit);
        let by = units * step;
        if delta >= 0 {
            self.tat.fetch_add(by, Ordering::AcqRel);
        } else {
            // Never below zero: "free" is any time before now.
            let _ = self
                .tat
                .fetch_update(Ordering::AcqRel, Ordering::Acquire, |tat| {
                    Some(tat.saturating_sub(by))
                });
        }
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    const SECOND: u64 = 1_000_000_000;

    #[test]
    fn a_burst_of_the_limit_then_one_per_spacing() {
        let cell = Gcra::default();
        let t0 = 5 * SECOND;
        for i in 0..60 {
            let window = cell.take(t0, 1, 60).unwrap();
            assert_eq!(window.remaining, 59 - i);
        }
        assert_eq!(
            cell.take(t0, 1, 60),
            Err(Refused::Wait(Duration::from_secs(1)))
        );
        // One second later, exactly one more.
        assert!(cell.take(t0 + SECOND, 1, 60).is_ok());
        assert!(cell.take(t0 + SECOND, 1, 60).is_err());
        // A minute of quiet makes it whole again.
        let window = cell.take(t0 + 62 * SECOND, 1, 60).unwrap();
        assert_eq!(window.remaining, 59);
    }

    #[test]
    fn many_units_at_once_given_back_and_moved_after_the_fact() {
        let cell = Gcra::default();
        let now = SECOND;
        assert_eq!(cell.take(now, 1001, 1000), Err(Refused::TooLarge));
        let window = cell.take(now, 600, 1000).unwrap();
        assert_eq!(window.remaining, 400);
        assert_eq!(window.reset, Duration::from_secs(36));
        assert!(cell.take(now, 500, 1000).is_err());
        cell.adjust(-200, 1000);
        assert_eq!(cell.take(now, 500, 1000).unwrap().remaining, 100);
        // The request reported more than it reserved.
        cell.adjust(100, 1000);
        assert!(cell.take(now, 1, 1000).is_err());
        // Giving back more than was taken leaves a whole limit, no more.
        cell.adjust(-5000, 1000);
        cell.adjust(-5000, 1000);
        assert_eq!(cell.take(now, 1000, 1000).unwrap().remaining, 0);
    }
}
