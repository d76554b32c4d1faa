//! The circuit breaker of one deployment: it stops sending traffic to a
//! deployment that keeps failing, and lets a single probe through after a
//! cooldown to find out whether it has recovered.
//!
//! ```text
//!            failure share over the window
//!            (or N failures in a row)
//!   Closed ───────────────────────────────▶ Open
//!     ▲                                    │  ▲
//!     │ probe succeeds     cooldown passed │  │ probe fails
//!     │                    (one probe out) ▼  │
//!     └──────────────────────────────── HalfOpen
//! ```
//!
//! The failure share is judged with a margin for small samples (the lower
//! end of its Wilson score interval): a deployment failing every request
//! opens it after `min_requests`, while one failing a third of them at
//! random does not, however the failures happen to bunch up in a handful of
//! requests.
//!
//! Time is passed in: the breaker never reads a clock, so tests drive it
//! with made-up instants.

use std::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, Ordering};
use std::sync::{Mutex, MutexGuard, PoisonError};
use std::time::Duration;

use tokio::time::Instant;

use super::budget::Window;

pub mod fleet;

/// When a breaker opens, and for how long.
#[derive(Debug, Clone, PartialEq)]
pub struct BreakerConfig {
    /// Failures in a row that open the breaker; 0 turns this trigger off.
    pub consecutive_failures: u32,
    /// Share of failed requests over `window` (0.5: half) that opens the
    /// breaker, once the window holds `min_requests`; above 1 turns this
    /// trigger off.
    pub failure_rate: f64,
    /// Standard errors by which the window's failure share must clear
    /// `failure_rate`: the lower end of its Wilson score interval with this
    /// z is what is compared. 0 compares the plain share.
    pub margin: f64,
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
    /// Opens when the failure share over 10 s, less a margin of 2 standard
    /// errors, reaches 50% once 5 requests were seen (a dead deployment:
    /// after 5 requests; one failing 30% at random: about once in 300 fresh
    /// windows, and practically never once the window holds 50 requests);
    /// no trigger on failures in a row; probes after a 30 s cooldown.
    fn default() -> Self {
        Self {
            consecutive_failures: 0,
            failure_rate: 0.5,
            margin: 2.0,
            min_requests: 5,
            window: Duration::from_secs(10),
            cooldown: Duration::from_secs(30),
        }
    }
}

/// Of requests that find every breaker of their model open, one in this many
/// is let through anyway (see [`Breaker::panic_permit`]).
const PANIC_ONE_IN: u64 = 20;

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

/// A change of state worth a log line, reported once by [`Breaker::record`].
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Transition {
    /// It opened, the window holding this many requests, this share failed.
    Opened {
        /// Requests in the window.
        requests: u64,
        /// Share of them that failed.
        failure_rate: f64,
    },
    /// A probe succeeded: it closed.
    Closed,
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
    /// Requests that found every breaker of their model open and asked this
    /// one to let them through anyway.
    panics: AtomicU64,
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
            panics: AtomicU64::new(0),
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

    /// Panic mode, for a request that found every breaker of its model
    /// open: one such request in twenty (the 20th, the 40th…) is let
    /// through to this deployment all the same, so that an outage the
    /// breakers misjudged still serves a trickle. Its result is not counted
    /// (the breaker is not closed); only probes close it. One atomic add.
    pub fn panic_permit(&self) -> Option<Permit> {
        let turn = self.panics.fetch_add(1, Ordering::Relaxed);
        (turn + 1)
            .is_multiple_of(PANIC_ONE_IN)
            .then_some(Permit::Normal)
    }

    /// Records how the attempt sent under `permit` ended, at `now`; returns
    /// the transition it caused, if any (each opening and closing is
    /// reported once, to one caller).
    pub fn record(&self, permit: Permit, outcome: Outcome, now: Instant) -> Option<Transition> {
        match (permit, outcome) {
            (Permit::Normal, Outcome::Ignored) => None,
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

    /// How long it stays open before a probe.
    pub fn cooldown(&self) -> Duration {
        self.config.cooldown
    }

    /// When it opened, while it is open (not yet probing).
    pub fn opened_at(&self) -> Option<Instant> {
        if self.closed.load(Ordering::Acquire) {
            return None;
        }
        match *self.lock() {
            Phase::Open { since } => Some(since),
            Phase::Closed | Phase::HalfOpen { .. } => None,
        }
    }

    /// Another replica's breaker of this deployment opened at `since`: a
    /// closed breaker opens as of then (and probes after its cooldown as if
    /// it had opened itself); one not closed is left as it is. Answers
    /// whether it opened.
    pub fn hint_open(&self, since: Instant, now: Instant) -> bool {
        if !self.closed.load(Ordering::Acquire) || self.cooled(since, now) {
            return false;
        }
        let mut phase = self.lock();
        let Phase::Closed = *phase else {
            return false;
        };
        *phase = Phase::Open { since };
        self.closed.store(false, Ordering::Release);
        true
    }

    /// Counts an ordinary attempt's result and opens the breaker when a
    /// trigger fires.
    fn record_normal(&self, failed: bool, now: Instant) -> Option<Transition> {
        if !self.closed.load(Ordering::Acquire) {
            return None;
        }
        self.window.add(now, 1, u64::from(failed));
        if !failed {
            if self.consecutive.load(Ordering::Relaxed) != 0 {
                self.consecutive.store(0, Ordering::Relaxed);
            }
            return None;
        }
        let streak = self
            .consecutive
            .fetch_add(1, Ordering::Relaxed)
            .saturating_add(1);
        let limit = self.config.consecutive_failures;
        let (requests, failures) = self.window.totals(now);
        if !((limit > 0 && streak >= limit) || self.rate_exceeded(requests, failures)) {
            return None;
        }
        let mut phase = self.lock();
        let Phase::Closed = *phase else {
            return None;
        };
        *phase = Phase::Open { since: now };
        self.closed.store(false, Ordering::Release);
        Some(Transition::Opened {
            requests,
            // Totals stay far below 2^53: exact in an f64.
            failure_rate: failures as f64 / requests.max(1) as f64,
        })
    }

    /// Settles a half-open breaker on its probe's result.
    fn record_probe(&self, outcome: Outcome, now: Instant) -> Option<Transition> {
        let mut phase = self.lock();
        if !matches!(*phase, Phase::HalfOpen { .. }) {
            return None;
        }
        let (next, transition) = match outcome {
            Outcome::Success => {
                self.consecutive.store(0, Ordering::Relaxed);
                self.window.clear();
                self.closed.store(true, Ordering::Release);
                (Phase::Closed, Some(Transition::Closed))
            }
            Outcome::Failure => (Phase::Open { since: now }, None),
            Outcome::Ignored => (Phase::HalfOpen { probe_since: None }, None),
        };
        *phase = next;
        transition
    }

    /// Whether `failures` of `requests` in the window open the breaker: the
    /// window holds `min_requests`, and the failure share less the margin
    /// (the lower end of its Wilson score interval) reaches `failure_rate`.
    fn rate_exceeded(&self, requests: u64, failures: u64) -> bool {
        if requests < u64::from(self.config.min_requests.max(1)) {
            return false;
        }
        // Totals stay far below 2^53: exact in an f64.
        let (n, share) = (requests as f64, failures as f64 / requests as f64);
        let rate = self.config.failure_rate;
        if share < rate {
            return false;
        }
        let z2 = self.config.margin * self.config.margin;
        let spread = self.config.margin * (share * (1.0 - share) / n + z2 / (4.0 * n * n)).sqrt();
        (share + z2 / (2.0 * n) - spread) / (1.0 + z2 / n) >= rate
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
mod tests;
