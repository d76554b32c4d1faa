//! The circuit breaker of one deployment: it stops sending traffic to a
//! deployment that keeps failing, and lets a single probe through after a
//! cooldown to find out whether it has recovered.
//!
//! ```text
//!            N failures in a row, or
//!            failure rate over the window
//!   Closed ───────────────────────────────▶ Open
//!     ▲                                    │  ▲
//!     │ probe succeeds     cooldown passed │  │ probe fails
//!     │                    (one probe out) ▼  │
//!     └──────────────────────────────── HalfOpen
//! ```
//!
//! Time is passed in: the breaker never reads a clock, so tests drive it
//! with made-up instants.

use std::sync::atomic::{AtomicBool, AtomicU32, Ordering};
use std::sync::{Mutex, MutexGuard, PoisonError};
use std::time::Duration;

use tokio::time::Instant;

use super::budget::Window;

/// When a breaker opens, and for how long.
#[derive(Debug, Clone, PartialEq)]
pub struct BreakerConfig {
    /// Failures in a row that open the breaker; 0 turns this trigger off.
    pub consecutive_failures: u32,
    /// Share of failed requests over `window` (0.5: half) that opens the
    /// breaker, once the window holds `min_requests`; above 1 turns this
    /// trigger off.
    pub failure_rate: f64,
    /// Requests the window must hold before its failure rate counts (at
    /// least 1).
    pub min_requests: u32,
    /// How far back the failure rate looks.
    pub window: Duration,
    /// How long an open breaker sends nothing before it lets a probe
    /// through; also how long a probe may stay unanswered before another may
    /// go.
    pub cooldown: Duration,
}

impl Default for BreakerConfig {
    /// Opens on 5 failures in a row, or on a 50% failure rate over 30 s once
    /// 20 requests were seen; probes after a 30 s cooldown.
    fn default() -> Self {
        Self {
            consecutive_failures: 5,
            failure_rate: 0.5,
            min_requests: 20,
            window: Duration::from_secs(30),
            cooldown: Duration::from_secs(30),
        }
    }
}

/// Leave to send one attempt to the deployment.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Permit {
    /// The breaker is closed: an ordinary attempt.
    Normal,
    /// The breaker is half-open: this attempt decides whether it closes.
    Probe,
}

/// How an attempt ended, as far as the deployment's health goes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    /// The deployment answered well.
    Success,
    /// The deployment failed (unreachable, timed out, a 5xx, a 429).
    Failure,
    /// The attempt says nothing about the deployment: the client went away,
    /// or the request was the client's mistake. Not counted; a probe ending
    /// so frees the half-open slot for the next caller.
    Ignored,
}

/// A breaker's state, as `/metrics` shows it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CircuitState {
    /// Traffic flows.
    Closed,
    /// One probe may go, or is out.
    HalfOpen,
    /// No traffic until the cooldown has passed.
    Open,
}

impl CircuitState {
    /// Its name in `/admin/deployments`.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Closed => "closed",
            Self::HalfOpen => "half_open",
            Self::Open => "open",
        }
    }

    /// The `circuit_state` gauge: 0 closed, 1 half-open, 2 open.
    pub fn value(self) -> u8 {
        match self {
            Self::Closed => 0,
            Self::HalfOpen => 1,
            Self::Open => 2,
        }
    }
}

/// The circuit breaker of one deployment, shared by every request to it.
///
/// Asking a closed breaker for a permit is one atomic load. Results of
/// ordinary attempts are counted lock-free: failures in a row in an atomic,
/// requests and failures in a sliding window of ten buckets (see
/// `budget::Window`); so the rate trigger sees between 90% and 100% of
/// [`BreakerConfig::window`]. Transitions take a short lock, never held
/// across an await.
///
/// A probe that is never recorded (its request was cancelled) cannot wedge
/// the breaker: once it has been out for a cooldown, the next caller gets a
/// new probe. Results of ordinary attempts arriving while the breaker is not
/// closed (they started before it opened) are dropped, and so are results of
/// probes arriving once the breaker has left half-open.
#[derive(Debug)]
pub struct Breaker {
    /// The triggers and the cooldown.
    config: BreakerConfig,
    /// Whether `phase` is [`Phase::Closed`]: the lock-free fast path.
    closed: AtomicBool,
    /// Failures in a row while closed.
    consecutive: AtomicU32,
    /// Requests (first count) and failures (second count) while closed.
    window: Window,
    /// The state, changed only under this lock.
    phase: Mutex<Phase>,
}

/// A breaker's state with what its transitions need.
#[derive(Debug, Clone, Copy)]
enum Phase {
    /// Traffic flows.
    Closed,
    /// Opened at `since`.
    Open {
        /// When it opened.
        since: Instant,
    },
    /// Waiting for a probe.
    HalfOpen {
        /// When the probe now out left; `None` when none is.
        probe_since: Option<Instant>,
    },
}

impl Breaker {
    /// A closed breaker.
    pub fn new(config: BreakerConfig) -> Self {
        Self {
            window: Window::new(config.window),
            config,
            closed: AtomicBool::new(true),
            consecutive: AtomicU32::new(0),
            phase: Mutex::new(Phase::Closed),
        }
    }

    /// Leave to send an attempt at `now`, or `None` while the breaker is
    /// open or its one probe is out. Every permit should be given back to
    /// [`Breaker::record`].
    pub fn allow(&self, now: Instant) -> Option<Permit> {
        if self.closed.load(Ordering::Acquire) {
            return Some(Permit::Normal);
        }
        let mut phase = self.lock();
        let probe = match *phase {
            Phase::Closed => return Some(Permit::Normal),
            Phase::Open { since } => self.cooled(since, now),
            Phase::HalfOpen { probe_since } => probe_since.is_none_or(|s| self.cooled(s, now)),
        };
        probe.then(|| {
            *phase = Phase::HalfOpen {
                probe_since: Some(now),
            };
            Permit::Probe
        })
    }

    /// Records how the attempt sent under `permit` ended, at `now`.
    pub fn record(&self, permit: Permit, outcome: Outcome, now: Instant) {
        match (permit, outcome) {
            (Permit::Normal, Outcome::Ignored) => {}
            (Permit::Normal, Outcome::Success) => self.record_normal(false, now),
            (Permit::Normal, Outcome::Failure) => self.record_normal(true, now),
            (Permit::Probe, outcome) => self.record_probe(outcome, now),
        }
    }

    /// The state at `now`; an open breaker past its cooldown is half-open.
    pub fn state(&self, now: Instant) -> CircuitState {
        if self.closed.load(Ordering::Acquire) {
            return CircuitState::Closed;
        }
        match *self.lock() {
            Phase::Closed => CircuitState::Closed,
            Phase::Open { since } if !self.cooled(since, now) => CircuitState::Open,
            Phase::Open { .. } | Phase::HalfOpen { .. } => CircuitState::HalfOpen,
        }
    }

    /// Counts an ordinary attempt's result and opens the breaker when a
    /// trigger fires.
    fn record_normal(&self, failed: bool, now: Instant) {
        if !self.closed.load(Ordering::Acquire) {
            return;
        }
        self.window.add(now, 1, u64::from(failed));
        if !failed {
            if self.consecutive.load(Ordering::Relaxed) != 0 {
                self.consecutive.store(0, Ordering::Relaxed);
            }
            return;
        }
        let streak = self
            .consecutive
            .fetch_add(1, Ordering::Relaxed)
            .saturating_add(1);
        let limit = self.config.consecutive_failures;
        if (limit > 0 && streak >= limit) || self.rate_exceeded(now) {
            let mut phase = self.lock();
            if let Phase::Closed = *phase {
                *phase = Phase::Open { since: now };
                self.closed.store(false, Ordering::Release);
            }
        }
    }

    /// Settles a half-open breaker on its probe's result.
    fn record_probe(&self, outcome: Outcome, now: Instant) {
        let mut phase = self.lock();
        if !matches!(*phase, Phase::HalfOpen { .. }) {
            return;
        }
        *phase = match outcome {
            Outcome::Success => {
                self.consecutive.store(0, Ordering::Relaxed);
                self.window.clear();
                self.closed.store(true, Ordering::Release);
                Phase::Closed
            }
            Outcome::Failure => Phase::Open { since: now },
            Outcome::Ignored => Phase::HalfOpen { probe_since: None },
        };
    }

    /// Whether the window's failure rate opens the breaker at `now`.
    fn rate_exceeded(&self, now: Instant) -> bool {
        let (requests, failures) = self.window.totals(now);
        requests >= u64::from(self.config.min_requests.max(1))
            && failures as f64 >= self.config.failure_rate * requests as f64
    }

    /// Whether a cooldown begun at `since` is over at `now`.
    fn cooled(&self, since: Instant, now: Instant) -> bool {
        now.saturating_duration_since(since) >= self.config.cooldown
    }

    /// The state lock; nothing panics under it, so poisoning is ignored.
    fn lock(&self) -> MutexGuard<'_, Phase> {
        self.phase.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::AtomicUsize;
    use std::sync::{Arc, Barrier};

    use super::*;

    const MS: Duration = Duration::from_millis(1);
    const COOLDOWN: Duration = Duration::from_secs(30);

    /// A breaker on the default config, opened at the returned instant.
    fn opened() -> (Breaker, Instant) {
        let breaker = Breaker::new(BreakerConfig::default());
        let t0 = Instant::now();
        for _ in 0..5 {
            breaker.record(Permit::Normal, Outcome::Failure, t0);
        }
        assert_eq!(breaker.state(t0), CircuitState::Open);
        (breaker, t0)
    }

    #[test]
    fn opens_after_exactly_the_configured_failures() {
        let breaker = Breaker::new(BreakerConfig::default());
        let t0 = Instant::now();
        for _ in 0..4 {
            assert_eq!(breaker.allow(t0), Some(Permit::Normal));
            breaker.record(Permit::Normal, Outcome::Failure, t0);
        }
        // A success breaks the streak.
        breaker.record(Permit::Normal, Outcome::Success, t0);
        for _ in 0..4 {
            breaker.record(Permit::Normal, Outcome::Failure, t0);
        }
        assert_eq!(breaker.state(t0), CircuitState::Closed);
        assert_eq!(breaker.allow(t0), Some(Permit::Normal));
        breaker.record(Permit::Normal, Outcome::Failure, t0);
        assert_eq!(breaker.state(t0), CircuitState::Open);
        assert_eq!(breaker.allow(t0), None);
    }

    #[test]
    fn nothing_during_the_cooldown_then_one_probe() {
        let (breaker, t0) = opened();
        let mut t = t0;
        while t < t0 + COOLDOWN {
            assert_eq!(breaker.allow(t), None, "at {:?}", t - t0);
            assert_eq!(breaker.state(t), CircuitState::Open);
            t += 100 * MS;
        }
        let t30 = t0 + COOLDOWN;
        assert_eq!(breaker.state(t30), CircuitState::HalfOpen);
        assert_eq!(breaker.allow(t30), Some(Permit::Probe));
        assert_eq!(breaker.allow(t30), None);
        assert_eq!(breaker.allow(t30 + COOLDOWN / 2), None);
        assert_eq!(breaker.state(t30), CircuitState::HalfOpen);
    }

    #[test]
    fn one_probe_among_concurrent_callers() {
        let (breaker, t0) = opened();
        let breaker = Arc::new(breaker);
        let probes = Arc::new(AtomicUsize::new(0));
        let barrier = Arc::new(Barrier::new(8));
        let after = t0 + COOLDOWN;
        let threads: Vec<_> = (0..8)
            .map(|_| {
                let (breaker, probes, barrier) = (
                    Arc::clone(&breaker),
                    Arc::clone(&probes),
                    Arc::clone(&barrier),
                );
                std::thread::spawn(move || {
                    barrier.wait();
                    for _ in 0..1000 {
                        match breaker.allow(after) {
                            Some(Permit::Probe) => {
                                probes.fetch_add(1, Ordering::Relaxed);
                            }
                            Some(Permit::Normal) => panic!("a normal permit while half-open"),
                            None => {}
                        }
                    }
                })
            })
            .collect();
        for thread in threads {
            thread.join().unwrap();
        }
        assert_eq!(probes.load(Ordering::Relaxed), 1);
    }

    #[test]
    fn probe_success_closes_and_resets() {
        let (breaker, t0) = opened();
        let t30 = t0 + COOLDOWN;
        assert_eq!(breaker.allow(t30), Some(Permit::Probe));
        breaker.record(Permit::Probe, Outcome::Success, t30);
        assert_eq!(breaker.state(t30), CircuitState::Closed);
        assert_eq!(breaker.allow(t30), Some(Permit::Normal));
        // The streak starts over: four failures do not reopen it.
        for _ in 0..4 {
            breaker.record(Permit::Normal, Outcome::Failure, t30);
        }
        assert_eq!(breaker.state(t30), CircuitState::Closed);
    }

    #[test]
    fn probe_failure_reopens_for_a_new_cooldown() {
        let (breaker, t0) = opened();
        let t40 = t0 + COOLDOWN + Duration::from_secs(10);
        assert_eq!(breaker.allow(t40), Some(Permit::Probe));
        breaker.record(Permit::Probe, Outcome::Failure, t40);
        assert_eq!(breaker.state(t40), CircuitState::Open);
        assert_eq!(breaker.allow(t40 + COOLDOWN - MS), None);
        assert_eq!(breaker.allow(t40 + COOLDOWN), Some(Permit::Probe));
    }

    #[test]
    fn ignored_probe_frees_the_slot() {
        let (breaker, t0) = opened();
        let t30 = t0 + COOLDOWN;
        assert_eq!(breaker.allow(t30), Some(Permit::Probe));
        breaker.record(Permit::Probe, Outcome::Ignored, t30);
        assert_eq!(breaker.state(t30), CircuitState::HalfOpen);
        assert_eq!(breaker.allow(t30), Some(Permit::Probe));
        assert_eq!(breaker.allow(t30), None);
    }

    #[test]
    fn lost_probe_expires_after_a_cooldown() {
        let (breaker, t0) = opened();
        let t30 = t0 + COOLDOWN;
        assert_eq!(breaker.allow(t30), Some(Permit::Probe));
        // Its request was cancelled: no record.
        assert_eq!(breaker.allow(t30 + COOLDOWN - MS), None);
        assert_eq!(breaker.allow(t30 + COOLDOWN), Some(Permit::Probe));
        breaker.record(Permit::Probe, Outcome::Success, t30 + COOLDOWN);
        // The first probe answering late changes nothing.
        breaker.record(Permit::Probe, Outcome::Failure, t30 + COOLDOWN);
        assert_eq!(breaker.state(t30 + COOLDOWN), CircuitState::Closed);
    }

    #[test]
    fn late_normal_results_do_not_count_while_open() {
        let (breaker, t0) = opened();
        let t30 = t0 + COOLDOWN;
        for _ in 0..100 {
            breaker.record(Permit::Normal, Outcome::Success, t0);
        }
        assert_eq!(breaker.state(t0), CircuitState::Open);
        assert_eq!(breaker.allow(t30), Some(Permit::Probe));
        breaker.record(Permit::Normal, Outcome::Success, t30);
        assert_eq!(breaker.state(t30), CircuitState::HalfOpen);
    }

    #[test]
    fn ignored_results_do_not_count() {
        let breaker = Breaker::new(BreakerConfig::default());
        let t0 = Instant::now();
        for _ in 0..4 {
            breaker.record(Permit::Normal, Outcome::Failure, t0);
        }
        for _ in 0..100 {
            breaker.record(Permit::Normal, Outcome::Ignored, t0);
        }
        assert_eq!(breaker.state(t0), CircuitState::Closed);
        // Ignored results neither broke the streak…
        breaker.record(Permit::Normal, Outcome::Failure, t0);
        assert_eq!(breaker.state(t0), CircuitState::Open);
        // …nor count as requests for the rate.
        assert_eq!(breaker.window.totals(t0), (5, 5));
    }

    /// A breaker that opens on the rate only.
    fn rate_only() -> Breaker {
        Breaker::new(BreakerConfig {
            consecutive_failures: 0,
            ..BreakerConfig::default()
        })
    }

    #[test]
    fn failure_rate_opens_once_min_requests_are_seen() {
        let breaker = rate_only();
        let t0 = Instant::now();
        for _ in 0..9 {
            breaker.record(Permit::Normal, Outcome::Success, t0);
        }
        // 100% failures, but only 19 requests.
        for _ in 0..10 {
            breaker.record(Permit::Normal, Outcome::Failure, t0);
        }
        assert_eq!(breaker.state(t0), CircuitState::Closed);
        // The 20th request, a success: 10 of 20 failed, but a success never
        // opens the breaker.
        breaker.record(Permit::Normal, Outcome::Success, t0);
        assert_eq!(breaker.state(t0), CircuitState::Closed);
        // 11 of 21.
        breaker.record(Permit::Normal, Outcome::Failure, t0);
        assert_eq!(breaker.state(t0), CircuitState::Open);
    }

    #[test]
    fn failure_rate_below_the_threshold_stays_closed() {
        let breaker = rate_only();
        let t0 = Instant::now();
        for i in 0..1000 {
            let outcome = if i % 5 < 2 {
                Outcome::Failure
            } else {
                Outcome::Success
            };
            breaker.record(Permit::Normal, outcome, t0 + i * MS);
        }
        assert_eq!(
            breaker.state(t0 + Duration::from_secs(1)),
            CircuitState::Closed
        );
    }

    #[test]
    fn old_failures_leave_the_window() {
        let breaker = rate_only();
        let t0 = Instant::now();
        for _ in 0..19 {
            breaker.record(Permit::Normal, Outcome::Failure, t0);
        }
        // A window later they no longer count: 1 failure in 20 requests.
        let later = t0 + Duration::from_secs(31);
        for _ in 0..19 {
            breaker.record(Permit::Normal, Outcome::Success, later);
        }
        breaker.record(Permit::Normal, Outcome::Failure, later);
        assert_eq!(breaker.state(later), CircuitState::Closed);
    }

    /// The issue's scenario: a deployment failing every call, asked every
    /// 10 ms for two minutes, is called 5 times to open, then only by one
    /// probe per cooldown.
    #[test]
    fn failing_deployment_sees_only_probes_while_open() {
        let breaker = Breaker::new(BreakerConfig::default());
        let t0 = Instant::now();
        let mut calls = Vec::new();
        for i in 0..12_000 {
            let now = t0 + i * 10 * MS;
            if let Some(permit) = breaker.allow(now) {
                calls.push((now - t0, permit));
                breaker.record(permit, Outcome::Failure, now);
            }
        }
        let expected: Vec<_> = (0..5)
            .map(|i| (i * 10 * MS, Permit::Normal))
            .chain((1..=3).map(|i| (40 * MS + i * COOLDOWN, Permit::Probe)))
            .collect();
        assert_eq!(calls, expected);
    }

    #[test]
    fn gauge_values() {
        assert_eq!(CircuitState::Closed.value(), 0);
        assert_eq!(CircuitState::HalfOpen.value(), 1);
        assert_eq!(CircuitState::Open.value(), 2);
    }

    #[test]
    fn breaker_is_shareable() {
        fn shareable<T: Send + Sync>() {}
        shareable::<Breaker>();
    }
}
