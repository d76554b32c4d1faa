//! The health of one deployment, as active probes and live traffic see it.
//!
//! ```text
//!             unhealthy_threshold probes fail
//!   Healthy ───────────────────────────────▶ Unhealthy
//!    │  ▲ ◀─────────────────────────────────
//!    │  │     healthy_threshold probes succeed
//!    │  │
//!    │  │ the ejection's time passes, or a probe succeeds
//!    ▼  │
//!   Ejected (consecutive_failures live failures in a row;
//!            for ejection × 2^(ejections − 1), at most max_ejection)
//! ```
//!
//! Routing reads the state with one atomic load; transitions are rare and
//! take a short lock, never held across an await. Time is passed in, as for
//! the breaker, so tests drive it with made-up instants.

use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};
use std::sync::{Mutex, MutexGuard, PoisonError};
use std::time::Duration;

use tokio::time::Instant;

use super::{ModelRoute, Pick, Routes, Target};
use crate::config::Outlier;
use crate::upstream::breaker::Outcome;

/// [`Health::state`]'s word for a healthy deployment.
const HEALTHY: u64 = 0;
/// … for one that active probes found unhealthy.
const UNHEALTHY: u64 = 1;
/// … for an ejected one: this plus the nanoseconds from the epoch to the
/// ejection's end.
const EJECTED: u64 = 2;

/// A deployment's health, as `/admin/deployments` shows it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum State {
    /// Takes traffic.
    Healthy,
    /// Active probes failed: no traffic until they succeed again.
    Unhealthy,
    /// Live traffic failed: no traffic for this much longer.
    Ejected(Duration),
}

impl State {
    /// Its name in `/admin/deployments`.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Healthy => "healthy",
            Self::Unhealthy => "unhealthy",
            Self::Ejected(_) => "ejected",
        }
    }
}

/// A change of state, for the log.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Transition {
    /// Live failures ejected it for this long.
    Ejected(Duration),
    /// Its ejection's time passed.
    EjectionOver,
    /// A probe succeeded while it was ejected.
    EjectionEndedByProbe,
    /// Probes failed in a row.
    Unhealthy,
    /// Probes succeeded in a row.
    Healthy,
}

/// The result of one active probe.
#[derive(Debug, Clone, PartialEq)]
pub struct ProbeResult {
    /// Whether the deployment answered well.
    pub ok: bool,
    /// How long the probe took.
    pub latency: Duration,
    /// When it ended.
    pub at: Instant,
    /// Why it failed.
    pub error: Option<String>,
}

/// The health of one deployment, shared by its routing and its prober.
#[derive(Debug)]
pub struct Health {
    /// The zero point of ejection ends in `state`.
    epoch: Instant,
    /// [`HEALTHY`], [`UNHEALTHY`], or [`EJECTED`] + the ejection's end.
    state: AtomicU64,
    /// Live failures in a row.
    failures: AtomicU32,
    /// What transitions need, changed under this lock.
    inner: Mutex<Inner>,
}

/// Counters of probes and ejections.
#[derive(Debug, Default)]
struct Inner {
    /// Probes in a row that succeeded.
    probe_successes: u32,
    /// Probes in a row that failed.
    probe_failures: u32,
    /// The last probe's result.
    last_probe: Option<ProbeResult>,
    /// Ejections since the deployment last stayed in for `max_ejection`.
    ejections: u32,
    /// When the last ejection ended, or ends.
    ejection_end: Option<Instant>,
}

impl Default for Health {
    fn default() -> Self {
        Self::new()
    }
}

impl Health {
    /// A healthy deployment.
    pub fn new() -> Self {
        Self {
            epoch: Instant::now(),
            state: AtomicU64::new(HEALTHY),
            failures: AtomicU32::new(0),
            inner: Mutex::new(Inner::default()),
        }
    }

    /// Whether it takes traffic at `now`: healthy, or its ejection is over.
    /// One atomic load.
    pub fn routable(&self, now: Instant) -> bool {
        match self.state.load(Ordering::Acquire) {
            HEALTHY => true,
            UNHEALTHY => false,
            ejected => ejected - EJECTED <= self.nanos(now),
        }
    }

    /// Its state at `now`.
    pub fn state(&self, now: Instant) -> State {
        match self.state.load(Ordering::Acquire) {
            HEALTHY => State::Healthy,
            UNHEALTHY => State::Unhealthy,
            ejected => {
                let end = self.epoch + Duration::from_nanos(ejected - EJECTED);
                match end.checked_duration_since(now) {
                    Some(left) if !left.is_zero() => State::Ejected(left),
                    _ => State::Healthy,
                }
            }
        }
    }

    /// The last probe's result, if it was probed.
    pub fn last_probe(&self) -> Option<ProbeResult> {
        self.lock().last_probe.clone()
    }

    /// A live attempt succeeded: the failure streak ends.
    pub fn live_success(&self) {
        if self.failures.load(Ordering::Relaxed) != 0 {
            self.failures.store(0, Ordering::Relaxed);
        }
    }

    /// A live attempt failed. `true` when the failure streak has reached
    /// `threshold` on a deployment that takes traffic: time to eject it, if
    /// the model can spare it (see [`Health::eject`]).
    pub fn live_failure(&self, now: Instant, threshold: u32) -> bool {
        if !self.routable(now) {
            // An answer of a request sent before it left, or in panic mode.
            return false;
        }
        let streak = self
            .failures
            .fetch_add(1, Ordering::Relaxed)
            .saturating_add(1);
        streak >= threshold
    }

    /// Ejects it at `now` for `outlier.ejection` × 2^(ejections − 1), at most
    /// `outlier.max_ejection`; the count of ejections starts over once it
    /// has stayed in for `max_ejection`. `None` when it no longer takes
    /// traffic (a probe found it unhealthy meanwhile, or another caller
    /// ejected it).
    pub fn eject(&self, now: Instant, outlier: &Outlier) -> Option<Transition> {
        let mut inner = self.lock();
        if !self.routable(now) {
            return None;
        }
        if inner
            .ejection_end
            .is_some_and(|end| now.saturating_duration_since(end) >= outlier.max_ejection)
        {
            inner.ejections = 0;
        }
        inner.ejections = inner.ejections.saturating_add(1);
        let factor = 1u32.checked_shl(inner.ejections - 1).unwrap_or(u32::MAX);
        let length = outlier
            .ejection
            .checked_mul(factor)
            .unwrap_or(Duration::MAX)
            .min(outlier.max_ejection);
        let end = now + length;
        inner.ejection_end = Some(end);
        self.failures.store(0, Ordering::Relaxed);
        self.state
            .store(EJECTED + self.nanos(end), Ordering::Release);
        Some(Transition::Ejected(length))
    }

    /// Counts a probe's result; the thresholds are the provider's.
    pub fn probed(
        &self,
        result: ProbeResult,
        healthy_threshold: u32,
        unhealthy_threshold: u32,
    ) -> Option<Transition> {
        let now = result.at;
        let mut inner = self.lock();
        let ok = result.ok;
        inner.last_probe = Some(result);
        let state = self.state(now);
        if ok {
            inner.probe_successes = inner.probe_successes.saturating_add(1);
            inner.probe_failures = 0;
            let transition = match state {
                State::Unhealthy if inner.probe_successes >= healthy_threshold => {
                    Transition::Healthy
                }
                State::Ejected(_) => Transition::EjectionEndedByProbe,
                _ => return self.settle(now),
            };
            self.failures.store(0, Ordering::Relaxed);
            self.state.store(HEALTHY, Ordering::Release);
            Some(transition)
        } else {
            inner.probe_failures = inner.probe_failures.saturating_add(1);
            inner.probe_successes = 0;
            if state == State::Unhealthy || inner.probe_failures < unhealthy_threshold {
                return None;
            }
            self.state.store(UNHEALTHY, Ordering::Release);
            Some(Transition::Unhealthy)
        }
    }

    /// Marks an ejection whose time has passed as over (once: the caller
    /// that gets the transition logs it).
    pub fn settle(&self, now: Instant) -> Option<Transition> {
        let word = self.state.load(Ordering::Acquire);
        let over = word >= EJECTED && word - EJECTED <= self.nanos(now);
        (over
            && self
                .state
                .compare_exchange(word, HEALTHY, Ordering::AcqRel, Ordering::Relaxed)
                .is_ok())
        .then_some(Transition::EjectionOver)
    }

    /// Nanoseconds from the epoch to `at` (584 years fit).
    fn nanos(&self, at: Instant) -> u64 {
        u64::try_from(at.saturating_duration_since(self.epoch).as_nanos()).unwrap_or(u64::MAX / 2)
    }

    /// The counters' lock; nothing panics under it, so poisoning is ignored.
    fn lock(&self) -> MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

impl Health {
    /// Adds `ejected_for_ms` (when ejected) and `probe` (the last probe's
    /// result, when probed) to a deployment's `/admin/deployments` entry.
    pub fn report(&self, now: Instant, status: &mut serde_json::Value) {
        let Some(fields) = status.as_object_mut() else {
            return;
        };
        if let State::Ejected(left) = self.state(now) {
            fields.insert("ejected_for_ms".into(), millis(left).into());
        }
        if let Some(probe) = self.last_probe() {
            fields.insert(
                "probe".into(),
                serde_json::json!({
                    "ok": probe.ok,
                    "latency_ms": probe.latency.as_secs_f64() * 1e3,
                    "ago_ms": millis(now.saturating_duration_since(probe.at)),
                    "error": probe.error,
                }),
            );
        }
    }
}

// === impl ModelRoute, Pick, Routes ===

impl ModelRoute {
    /// Feeds the outcome of a live attempt on `target`, one of this model's
    /// deployments, to its passive health: ejects it at its
    /// `consecutive_failures`-th failure in a row, unless that would leave
    /// more than `max_ejected_percent` of the model's deployments out (ejected,
    /// or unhealthy by the active probes).
    fn observe(&self, target: &Target, outcome: Outcome, now: Instant) {
        if outcome == Outcome::Ignored {
            return;
        }
        if let Some(transition) = target.health.settle(now) {
            log(&self.name, &target.name, transition, None);
        }
        if outcome == Outcome::Success {
            target.health.live_success();
        } else if target
            .health
            .live_failure(now, self.outlier.consecutive_failures)
        {
            // One ejection at a time per model, so that two cannot both pass the cap.
            let _one = self.ejecting.lock().unwrap_or_else(PoisonError::into_inner);
            // Out already: ejected, or unhealthy by the active probes.
            let ejected = self
                .targets
                .iter()
                .filter(|t| !t.health.routable(now))
                .count();
            let cap = self.outlier.max_ejected_percent as usize * self.targets.len();
            if (ejected + 1) * 100 > cap {
                tracing::debug!(model = %self.name, deployment = %target.name, ejected, "not ejected: max_ejected_percent reached");
            } else if let Some(transition) = target.health.eject(now, &self.outlier) {
                log(&self.name, &target.name, transition, None);
            }
        }
    }
}

impl Pick<'_> {
    /// Feeds the attempt's outcome (as its breaker counted it) to the
    /// deployment's passive health.
    pub fn observe(&self, outcome: Outcome, now: Instant) {
        self.model.observe(self.target, outcome, now);
    }
}

impl Routes {
    /// The public models without a deployment that takes traffic at `now`
    /// (each one unhealthy or ejected), by name.
    pub fn unhealthy_models(&self, now: Instant) -> Vec<&str> {
        self.models()
            .filter(|m| !m.targets.iter().any(|t| t.health.routable(now)))
            .map(|m| m.name.as_str())
            .collect()
    }
}

/// Whole milliseconds of `d`.
fn millis(d: Duration) -> u64 {
    u64::try_from(d.as_millis()).unwrap_or(u64::MAX)
}

/// Logs a change of a deployment's health.
pub fn log(model: &str, deployment: &str, transition: Transition, detail: Option<&str>) {
    match transition {
        Transition::Ejected(length) => tracing::warn!(
            model,
            deployment,
            reason = "consecutive live failures",
            ejection_ms = millis(length),
            "deployment ejected"
        ),
        Transition::EjectionOver => tracing::info!(
            model,
            deployment,
            reason = "ejection time passed",
            "deployment back in rotation"
        ),
        Transition::EjectionEndedByProbe => tracing::info!(
            model,
            deployment,
            reason = "health probe succeeded",
            "deployment back in rotation"
        ),
        Transition::Unhealthy => tracing::warn!(
            model,
            deployment,
            reason = "health probes failed",
            error = detail.unwrap_or("-"),
            "deployment unhealthy"
        ),
        Transition::Healthy => tracing::info!(
            model,
            deployment,
            reason = "health probes succeeded",
            "deployment healthy"
        ),
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    const SECOND: Duration = Duration::from_secs(1);

    fn outlier() -> Outlier {
        Outlier {
            consecutive_failures: 3,
            ejection: 10 * SECOND,
            max_ejection: 35 * SECOND,
            max_ejected_percent: 50,
        }
    }

    fn probe(ok: bool, at: Instant) -> ProbeResult {
        ProbeResult {
            ok,
            latency: Duration::from_millis(5),
            at,
            error: (!ok).then(|| "down".to_owned()),
        }
    }

    /// Fails `n` live attempts at `now`; whether the last one reached the threshold.
    fn fail(health: &Health, n: u32, now: Instant) -> bool {
        (0..n)
            .map(|_| health.live_failure(now, outlier().consecutive_failures))
            .last()
            .unwrap()
    }

    #[test]
    fn the_threshold_is_reached_at_exactly_n_failures_in_a_row() {
        let health = Health::new();
        let t0 = Instant::now();
        assert!(!fail(&health, 2, t0));
        health.live_success();
        assert!(!fail(&health, 2, t0));
        assert!(fail(&health, 1, t0));
    }

    #[test]
    fn ejections_double_up_to_the_cap_and_end_by_themselves() {
        let health = Health::new();
        let t0 = Instant::now();
        let mut now = t0;
        for expected in [10, 20, 35, 35] {
            assert!(fail(&health, 3, now));
            let length = Duration::from_secs(expected);
            assert_eq!(
                health.eject(now, &outlier()),
                Some(Transition::Ejected(length))
            );
            assert!(!health.routable(now));
            assert_eq!(health.state(now), State::Ejected(length));
            // Failures while ejected count for nothing.
            assert!(!fail(&health, 5, now));
            assert!(!health.routable(now + length - Duration::from_millis(1)));
            now += length;
            assert!(health.routable(now));
            assert_eq!(health.state(now), State::Healthy);
            assert_eq!(health.settle(now), Some(Transition::EjectionOver));
            assert_eq!(health.settle(now), None);
        }
    }

    #[test]
    fn the_doubling_starts_over_after_a_quiet_max_ejection() {
        let health = Health::new();
        let t0 = Instant::now();
        health.eject(t0, &outlier());
        let back = t0 + 10 * SECOND;
        health.eject(back, &outlier());
        let later = back + 20 * SECOND + 35 * SECOND;
        assert_eq!(
            health.eject(later, &outlier()),
            Some(Transition::Ejected(10 * SECOND))
        );
    }

    #[test]
    fn probes_turn_it_unhealthy_and_healthy_at_their_thresholds() {
        let health = Health::new();
        let t0 = Instant::now();
        assert_eq!(health.probed(probe(false, t0), 2, 3), None);
        assert_eq!(health.probed(probe(false, t0), 2, 3), None);
        // A success breaks the streak.
        assert_eq!(health.probed(probe(true, t0), 2, 3), None);
        assert_eq!(health.probed(probe(false, t0), 2, 3), None);
        assert_eq!(health.probed(probe(false, t0), 2, 3), None);
        assert_eq!(
            health.probed(probe(false, t0), 2, 3),
            Some(Transition::Unhealthy)
        );
        assert_eq!(health.probed(probe(false, t0), 2, 3), None);
        assert_eq!(health.state(t0), State::Unhealthy);
        assert!(!health.routable(t0));
        // Neither live failures nor an ejection touch an unhealthy deployment.
        assert!(!fail(&health, 3, t0));
        assert_eq!(health.eject(t0, &outlier()), None);
        assert_eq!(health.probed(probe(true, t0), 2, 3), None);
        assert_eq!(
            health.probed(probe(true, t0), 2, 3),
            Some(Transition::Healthy)
        );
        assert!(health.routable(t0));
        assert_eq!(health.last_probe(), Some(probe(true, t0)));
    }

    #[test]
    fn a_probe_success_ends_an_ejection() {
        let health = Health::new();
        let t0 = Instant::now();
        health.eject(t0, &outlier());
        assert_eq!(
            health.probed(probe(true, t0 + SECOND), 2, 3),
            Some(Transition::EjectionEndedByProbe)
        );
        assert!(health.routable(t0 + SECOND));
    }

    #[test]
    fn the_report_shows_the_ejection_and_the_last_probe() {
        let health = Health::new();
        let t0 = Instant::now();
        health.probed(probe(false, t0), 2, 3);
        health.eject(t0, &outlier());
        let mut status = serde_json::json!({});
        health.report(t0 + SECOND, &mut status);
        let left = status["ejected_for_ms"].as_u64().unwrap();
        assert!((8_999..=9_001).contains(&left), "{status}");
        assert_eq!(status["probe"]["ok"], false);
        assert_eq!(status["probe"]["error"], "down");
        assert_eq!(status["probe"]["ago_ms"], 1000);
    }

    #[test]
    fn health_is_shareable() {
        fn shareable<T: Send + Sync>() {}
        shareable::<Health>();
    }
}
