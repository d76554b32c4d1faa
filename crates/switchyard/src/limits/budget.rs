//! Budgets: money as whole micro-dollars, budget periods in UTC, and the
//! cell that reserves against a budget and settles.
//!
//! Before a request goes upstream its worst case is reserved; when it ends,
//! the reservation gives way to what it really cost. A cell's spend is what
//! the store held when last read plus what this process settled since (not
//! yet written there), so the decision never waits on the store.

use std::sync::atomic::{AtomicI64, Ordering};

use switchyard_store::BudgetPeriod;

/// Micro-dollars per dollar.
const MICROS: f64 = 1e6;

/// A price in USD per million tokens as micro-USD per million tokens.
pub fn micros_per_mtok(usd_per_mtok: f64) -> u64 {
    if usd_per_mtok.is_finite() && usd_per_mtok > 0.0 {
        // Validated prices are far below u64's range.
        (usd_per_mtok * MICROS).round() as u64
    } else {
        0
    }
}

/// The cost of `input` and `output` tokens at prices in micro-USD per million
/// tokens, rounded up to a whole micro-dollar, once per request.
pub fn cost_micros(input: u64, output: u64, input_price: u64, output_price: u64) -> i64 {
    let total =
        u128::from(input) * u128::from(input_price) + u128::from(output) * u128::from(output_price);
    i64::try_from(total.div_ceil(1_000_000)).unwrap_or(i64::MAX)
}

/// Seconds in a day.
const DAY: i64 = 86_400;

/// The start (unix seconds, UTC) of the budget period that holds `now`;
/// 0 for a budget that never resets.
pub fn period_start(period: BudgetPeriod, now: i64) -> i64 {
    let days = now.div_euclid(DAY);
    match period {
        BudgetPeriod::Day => days * DAY,
        // 1970-01-01 was a Thursday: Monday is three days on.
        BudgetPeriod::Week => (days - (days + 3).rem_euclid(7)) * DAY,
        BudgetPeriod::Month => {
            let (year, month, _) = civil_from_days(days);
            days_from_civil(year, month, 1) * DAY
        }
        BudgetPeriod::Total => 0,
    }
}

/// Year, month (1–12) and day (1–31) of `days` since 1970-01-01 (Howard
/// Hinnant's `civil_from_days`).
fn civil_from_days(days: i64) -> (i64, i64, i64) {
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    (yoe + era * 400 + i64::from(month <= 2), month, day)
}

/// Days since 1970-01-01 of a civil date (Hinnant's `days_from_civil`).
fn days_from_civil(year: i64, month: i64, day: i64) -> i64 {
    let year = if month <= 2 { year - 1 } else { year };
    let era = year.div_euclid(400);
    let yoe = year - era * 400;
    let mp = if month > 2 { month - 3 } else { month + 9 };
    let doy = (153 * mp + 2) / 5 + day - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

/// The spend of one key or team in its current budget period.
#[derive(Debug, Default)]
pub struct BudgetCell {
    /// The period the numbers below are for.
    period_start: AtomicI64,
    /// The store's total when last read.
    stored: AtomicI64,
    /// Settled here since, not yet in `stored`.
    unflushed: AtomicI64,
    /// Reserved by requests under way.
    reserved: AtomicI64,
}

/// A refused reservation.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct OverBudget;

impl BudgetCell {
    /// A cell for `period_start` whose store total is `stored`.
    pub fn new(period_start: i64, stored: i64) -> Self {
        Self {
            period_start: AtomicI64::new(period_start),
            stored: AtomicI64::new(stored),
            ..Self::default()
        }
    }

    /// Starts a new period when `period_start` is later than the cell's.
    fn roll(&self, period_start: i64) {
        let current = self.period_start.load(Ordering::Acquire);
        if period_start > current
            && self
                .period_start
                .compare_exchange(current, period_start, Ordering::AcqRel, Ordering::Acquire)
                .is_ok()
        {
            self.stored.store(0, Ordering::Release);
            self.unflushed.store(0, Ordering::Release);
        }
    }

    /// Spent in the period starting `period_start`, as far as this process
    /// knows: nothing while the cell is on an earlier period.
    pub fn spent_in(&self, period_start: i64) -> i64 {
        if self.period_start.load(Ordering::Acquire) < period_start {
            0
        } else {
            self.spent()
        }
    }

    /// Spent in the period, as far as this process knows.
    pub fn spent(&self) -> i64 {
        self.stored.load(Ordering::Acquire) + self.unflushed.load(Ordering::Acquire)
    }

    /// Reserves `cost` against `limit` in the period starting `period_start`;
    /// answers what remains after it.
    pub fn reserve(&self, limit: i64, cost: i64, period_start: i64) -> Result<i64, OverBudget> {
        self.roll(period_start);
        let mut reserved = self.reserved.load(Ordering::Acquire);
        loop {
            let remaining = limit - self.spent() - reserved - cost;
            if remaining < 0 || (cost == 0 && limit - self.spent() - reserved <= 0) {
                return Err(OverBudget);
            }
            match self.reserved.compare_exchange_weak(
                reserved,
                reserved + cost,
                Ordering::AcqRel,
                Ordering::Acquire,
            ) {
                Ok(_) => return Ok(remaining),
                Err(seen) => reserved = seen,
            }
        }
    }

    /// Ends a reservation of `reserved`: `cost` is what it really cost, spent
    /// in the period starting `period_start`.
    pub fn settle(&self, reserved: i64, cost: i64, period_start: i64) {
        self.reserved.fetch_sub(reserved, Ordering::AcqRel);
        self.roll(period_start);
        if self.period_start.load(Ordering::Acquire) == period_start {
            self.unflushed.fetch_add(cost, Ordering::AcqRel);
        }
    }

    /// `amount` of the period starting `period_start` reached the store,
    /// whose total is now `stored` when it could be read back.
    pub fn flushed(&self, period_start: i64, amount: i64, stored: Option<i64>) {
        if self.period_start.load(Ordering::Acquire) == period_start {
            match stored {
                Some(total) => self.stored.store(total, Ordering::Release),
                None => {
                    self.stored.fetch_add(amount, Ordering::AcqRel);
                }
            }
            self.unflushed.fetch_sub(amount, Ordering::AcqRel);
        }
    }

    /// What remains of `limit` now, reservations included.
    pub fn remaining(&self, limit: i64) -> i64 {
        limit - self.spent() - self.reserved.load(Ordering::Acquire)
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn costs_are_whole_micro_dollars_rounded_up_once() {
        // 0.42 USD and 1.68 USD per million tokens.
        let (pin, pout) = (micros_per_mtok(0.42), micros_per_mtok(1.68));
        assert_eq!((pin, pout), (420_000, 1_680_000));
        // 10 input + 16 output tokens: 4.2 + 26.88 = 31.08 micro-USD → 32.
        assert_eq!(cost_micros(10, 16, pin, pout), 32);
        assert_eq!(cost_micros(0, 0, pin, pout), 0);
        assert_eq!(cost_micros(1_000_000, 0, pin, pout), 420_000);
        assert_eq!(micros_per_mtok(f64::NAN), 0);
    }

    #[test]
    fn periods_start_at_midnight_monday_and_the_first_in_utc() {
        // 2026-12-06T07:30:00Z is a Sunday.
        let now = 1_796_542_200;
        assert_eq!(period_start(BudgetPeriod::Day, now), 1_796_515_200); // 2026-12-06
        assert_eq!(period_start(BudgetPeriod::Week, now), 1_795_996_800); // Mon 2026-11-30
        assert_eq!(period_start(BudgetPeriod::Month, now), 1_796_083_200); // 2026-12-01
        assert_eq!(period_start(BudgetPeriod::Total, now), 0);
        // Leap day and the turn of a year.
        assert_eq!(
            period_start(BudgetPeriod::Month, 1_709_208_000),
            1_706_745_600
        ); // 2024-02-29 → 02-01
        assert_eq!(
            period_start(BudgetPeriod::Month, 1_735_689_599),
            1_733_011_200
        ); // 2024-12-31 → 12-01
        assert_eq!(period_start(BudgetPeriod::Week, 0), -259_200); // Mon 1969-12-29
        for days in -1000..3000 {
            let (y, m, d) = civil_from_days(days);
            assert_eq!(days_from_civil(y, m, d), days);
        }
    }

    #[test]
    fn reservations_bound_the_spend_and_settle_to_the_cost() {
        let cell = BudgetCell::new(100, 900);
        assert_eq!(cell.reserve(1000, 60, 100), Ok(40));
        assert_eq!(cell.reserve(1000, 60, 100), Err(OverBudget));
        cell.settle(60, 25, 100);
        assert_eq!(cell.spent(), 925);
        assert_eq!(cell.reserve(1000, 60, 100), Ok(15));
        cell.settle(60, 0, 100);
        cell.flushed(100, 25, Some(940));
        assert_eq!(cell.spent(), 940);
        // A new period starts from nothing.
        assert_eq!(cell.reserve(1000, 600, 200), Ok(400));
        assert_eq!(cell.spent(), 0);
        // A budget used up refuses even a free request.
        let spent = BudgetCell::new(0, 1000);
        assert_eq!(spent.reserve(1000, 0, 0), Err(OverBudget));
    }

    #[test]
    fn a_share_spent_is_of_the_current_period_only() {
        let day = 86_400;
        let budget = crate::limits::Budget {
            limit: 1000,
            period: BudgetPeriod::Day,
            cell: std::sync::Arc::new(BudgetCell::new(day, 900)),
        };
        assert_eq!(budget.spent_share(day + 60), Some(0.9));
        // The next day, before any request rolled the cell over: nothing yet.
        assert_eq!(budget.cell.spent_in(2 * day), 0);
        assert_eq!(budget.spent_share(2 * day + 60), Some(0.0));
        let nothing = crate::limits::Budget { limit: 0, ..budget };
        assert_eq!(nothing.spent_share(day), None);
    }
}
