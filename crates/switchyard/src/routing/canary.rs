//! Canary traffic shifts: a model's deployments of one tier (the new set) get
//! a growing share of its requests, stage by stage, while their failures and
//! latency stay within the canary's bounds; past them, the share drops to 0 %
//! at once.
//!
//! On the request path a canary costs one atomic read (the current percent)
//! and, between 0 and 100 %, one counter draw: [`Canary::held_back`] names the
//! set the request's first pick leaves out. Attempts on the new set report
//! here ([`Canary::success`], [`Canary::failure`]) into lock-free statistics
//! of the current stage. The [`supervise`] task judges each canary a few times
//! per dwell and moves it through its stages ([`control`]); operators act
//! through the admin API ([`Canary::act`]).

mod control;
pub mod fleet;

use std::sync::atomic::{AtomicU8, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::Duration;

use axum::http::StatusCode;
use tokio::time::{Instant, MissedTickBehavior};
use tokio_util::sync::CancellationToken;

use super::histogram::Histogram;
use super::{Registry, Target};
use crate::config;
use crate::mix::splitmix64;
use crate::redis_link::Clocks;
use crate::telemetry::metrics::Metrics;
pub use control::{Action, State};
use control::{Control, Refused, Snapshot, Verdict};

/// The controller ticks at most this far apart…
const MAX_TICK: Duration = Duration::from_millis(250);
/// …and at least this far.
const MIN_TICK: Duration = Duration::from_millis(10);

/// A public model's canary.
#[derive(Debug)]
pub struct Canary {
    model: String,
    config: config::Canary,
    /// Its deployments in the new set (bit i = target i), and the others.
    new_set: u64,
    old_set: u64,
    /// The percent of requests the new set gets now: the request path's view of `control`.
    percent: AtomicU8,
    /// Drawn from for each request's set.
    draws: AtomicU64,
    stats: StageStats,
    /// Touched by the controller and operators only, never on the request path.
    control: Mutex<Control>,
    percent_gauge: metrics::Gauge,
    state_gauge: metrics::Gauge,
    rollbacks: metrics::Counter,
}

/// The new set's attempts in the current stage.
#[derive(Debug, Default)]
struct StageStats {
    attempts: AtomicU64,
    failures: AtomicU64,
    latency: Histogram,
}

/// Why an operator's action on a canary was refused.
#[derive(Debug, thiserror::Error)]
pub enum CanaryError {
    /// The model has no canary.
    #[error("the model `{0}` has no canary")]
    NotFound(String),
    /// The canary's state does not allow the action.
    #[error("cannot {action} the canary of `{model}`: it is {state}")]
    Refused {
        /// The model.
        model: String,
        /// The action asked for.
        action: &'static str,
        /// The canary's state.
        state: &'static str,
    },
}

impl CanaryError {
    /// Its HTTP status: 404 or 409.
    pub fn status(&self) -> StatusCode {
        match self {
            Self::NotFound(_) => StatusCode::NOT_FOUND,
            Self::Refused { .. } => StatusCode::CONFLICT,
        }
    }
}

/// Gives the canary metrics their `# HELP` lines.
pub fn describe(metrics: &Metrics) {
    metrics.describe(
        "switchyard_canary_percent",
        None,
        "Percent of a model's requests sent to its canary's new deployments.",
    );
    metrics.describe(
        "switchyard_canary_state",
        None,
        "State of a model's canary: 0 running, 1 paused, 2 rolled back, 3 promoted.",
    );
    metrics.describe(
        "switchyard_canary_rollbacks_total",
        None,
        "Canary rollbacks, by its bounds or by an operator.",
    );
}

// === impl Canary ===

impl Canary {
    /// The canary `config` of `model` over its `targets` (their `tier` tells
    /// the new set), attached to each target of the new set: the one
    /// `registry` runs for the model when its config and sets are unchanged,
    /// else a new one at its first stage (see [`Registry`]).
    pub fn attach(
        model: &str,
        config: &config::Canary,
        targets: &mut [Target],
        registry: &Registry,
        metrics: &Metrics,
    ) -> Arc<Self> {
        let in_new = |t: &Target| t.tier.as_deref() == Some(config.tier.as_str());
        let new_set = mask(targets.iter().map(in_new));
        let old_set = mask(targets.iter().map(|t| !in_new(t)));
        let canary = registry.canary(model, config, [new_set, old_set], metrics);
        for target in targets.iter_mut().filter(|t| in_new(t)) {
            target.canary = Some(canary.clone());
        }
        canary
    }

    /// The canary `config` of `model` whose new and old sets are `sets`.
    pub(super) fn new(
        model: &str,
        config: &config::Canary,
        sets: [u64; 2],
        metrics: &Metrics,
    ) -> Self {
        let labels = [("model", model)];
        let control = Control::new(Instant::now());
        Self {
            model: model.to_owned(),
            new_set: sets[0],
            old_set: sets[1],
            percent: AtomicU8::new(control.percent(&config.stages)),
            draws: AtomicU64::new(0),
            stats: StageStats::default(),
            control: Mutex::new(control),
            config: config.clone(),
            percent_gauge: metrics.gauge("switchyard_canary_percent", &labels),
            state_gauge: metrics.gauge("switchyard_canary_state", &labels),
            rollbacks: metrics.counter("switchyard_canary_rollbacks_total", &labels),
        }
    }

    /// Whether it is the canary `config` over the new and old `sets`.
    pub(super) fn runs(&self, config: &config::Canary, sets: [u64; 2]) -> bool {
        let config::Canary {
            tier,
            stages,
            dwell,
            min_requests,
            max_error_rate,
            max_p99,
        } = config;
        let own = &self.config;
        [self.new_set, self.old_set] == sets
            && own.tier == *tier
            && own.stages == *stages
            && own.dwell == *dwell
            && own.min_requests == *min_requests
            && own.max_error_rate == *max_error_rate
            && own.max_p99 == *max_p99
    }

    /// The deployments a request's first pick leaves out: the old set for a
    /// request drawn for the new one (the current percent of them), else the new set.
    pub fn held_back(&self) -> u64 {
        match self.percent.load(Ordering::Relaxed) {
            0 => self.new_set,
            100.. => self.old_set,
            percent => {
                let draw = splitmix64(self.draws.fetch_add(1, Ordering::Relaxed)) % 100;
                if draw < u64::from(percent) {
                    self.old_set
                } else {
                    self.new_set
                }
            }
        }
    }

    /// An attempt on the new set succeeded, its first content after `latency`.
    pub fn success(&self, latency: Duration) {
        self.stats.latency.record(latency);
        self.stats.attempts.fetch_add(1, Ordering::Relaxed);
    }

    /// An attempt on the new set failed (as its breaker counts failures).
    pub fn failure(&self) {
        self.stats.failures.fetch_add(1, Ordering::Relaxed);
        self.stats.attempts.fetch_add(1, Ordering::Relaxed);
    }

    /// How often the controller should judge it: 20 times per dwell, within bounds.
    fn tick(&self) -> Duration {
        (self.config.dwell / 20).clamp(MIN_TICK, MAX_TICK)
    }

    /// Judges it at `now`, and moves it on, rolls it back or promotes it.
    fn judge(&self, now: Instant) {
        let mut control = self.lock();
        let stats = self.stats.snapshot();
        let verdict = control.judge(&self.config, &stats, now);
        let stage = control.stage();
        control.apply(verdict, now);
        let percent = self.settle(&control);
        let model = self.model.as_str();
        match verdict {
            Verdict::Hold => {}
            Verdict::Advance => {
                self.stats.clear();
                tracing::info!(
                    model,
                    stage = control.stage(),
                    percent,
                    "canary: next stage"
                );
            }
            Verdict::Promote => tracing::info!(model, stage, "canary: promoted"),
            Verdict::RollBack(breach) => {
                self.rollbacks.increment(1);
                tracing::warn!(
                    model,
                    stage,
                    attempts = stats.attempts,
                    error_rate = stats.error_rate(),
                    max_error_rate = self.config.max_error_rate,
                    p99_ms = stats.p99.map(|d| d.as_secs_f64() * 1e3),
                    max_p99_ms = self.config.max_p99.map(|d| d.as_secs_f64() * 1e3),
                    %breach,
                    "canary: rolled back"
                );
            }
        }
    }

    /// Carries out an operator's action; its new state for the admin API.
    pub fn act(&self, action: Action, now: Instant) -> Result<serde_json::Value, CanaryError> {
        let mut control = self.lock();
        control
            .act(action, &self.config.stages, now)
            .map_err(|Refused { action, state }| CanaryError::Refused {
                model: self.model.clone(),
                action: action.as_str(),
                state: state.as_str(),
            })?;
        match action {
            Action::Resume => self.stats.clear(),
            Action::Abort => self.rollbacks.increment(1),
            Action::Pause | Action::Promote => {}
        }
        let percent = self.settle(&control);
        tracing::info!(
            model = self.model.as_str(),
            action = action.as_str(),
            state = control.state().as_str(),
            percent,
            "canary: operator action"
        );
        Ok(self.report(&control, now))
    }

    /// Its state for `GET /admin/canary`.
    pub fn status(&self, now: Instant) -> serde_json::Value {
        self.report(&self.lock(), now)
    }

    /// Sets the gauges that show its state.
    pub fn export(&self) {
        let control = self.lock();
        self.percent_gauge
            .set(f64::from(control.percent(&self.config.stages)));
        self.state_gauge.set(f64::from(control.state().value()));
    }

    /// Publishes `control`'s percent to the request path; returns it.
    fn settle(&self, control: &Control) -> u8 {
        let percent = control.percent(&self.config.stages);
        self.percent.store(percent, Ordering::Relaxed);
        percent
    }

    fn report(&self, control: &Control, now: Instant) -> serde_json::Value {
        let stats = self.stats.snapshot();
        let elapsed = now.saturating_duration_since(control.since());
        let since = std::time::SystemTime::now()
            .checked_sub(elapsed)
            .and_then(|t| t.duration_since(std::time::UNIX_EPOCH).ok())
            .map_or(0, |d| d.as_secs());
        let config = &self.config;
        serde_json::json!({
            "model": self.model,
            "to": config.tier,
            "state": control.state().as_str(),
            "stage": control.stage(),
            "stages": config.stages,
            "percent": control.percent(&config.stages),
            "since": since,
            "elapsed_ms": millis(elapsed),
            "attempts": stats.attempts,
            "failures": stats.failures,
            "error_rate": stats.error_rate(),
            "p99_ms": stats.p99.map(millis),
            "thresholds": {
                "dwell_ms": millis(config.dwell),
                "min_requests": config.min_requests,
                "max_error_rate": config.max_error_rate,
                "max_p99_ms": config.max_p99.map(millis),
            },
            "reason": control.reason(),
        })
    }

    fn lock(&self) -> MutexGuard<'_, Control> {
        self.control.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Its model.
    pub fn model(&self) -> &str {
        &self.model
    }

    /// Its config: replicas share the state of canaries configured alike only.
    pub fn config(&self) -> &config::Canary {
        &self.config
    }

    /// Its state for the other replicas: its version (see
    /// [`control::Version`]) and its state, stage, reason and start.
    pub(super) fn shared(&self, me: u64) -> fleet::Shared {
        let control = self.lock();
        let fresh = control.fresh();
        fleet::Shared {
            version: control.version(me),
            fresh,
            state: control.state().as_str().to_owned(),
            stage: control.stage(),
            reason: control.reason().map(str::to_owned),
            since_ms: Clocks::read().wall(control.since()),
        }
    }

    /// Takes another replica's state when it is newer than ours (`me` being
    /// this replica), or ours is fresh.
    pub(super) fn adopt(&self, shared: fleet::Shared, me: u64) {
        let Some(state) = State::parse(&shared.state) else {
            return;
        };
        let stage = shared.stage.min(self.config.stages.len().saturating_sub(1));
        let since = Clocks::read().instant(shared.since_ms);
        let mut control = self.lock();
        // Taken only when newer than ours now: a change made here since the
        // sync read ours stays, and reaches the others at the next sync. A
        // replica just started takes the fleet's state whatever its order.
        if !control.fresh() && shared.version <= control.version(me) {
            return;
        }
        let moved = (control.state(), control.stage()) != (state, stage);
        control.adopt(shared.version, (state, stage, shared.reason), since);
        let percent = self.settle(&control);
        if moved {
            self.stats.clear();
            tracing::info!(
                model = self.model.as_str(),
                state = state.as_str(),
                stage,
                percent,
                "canary: state taken from another replica"
            );
        }
    }
}

// === impl StageStats ===

impl StageStats {
    fn snapshot(&self) -> Snapshot {
        Snapshot {
            attempts: self.attempts.load(Ordering::Relaxed),
            failures: self.failures.load(Ordering::Relaxed),
            p99: self.latency.quantile(0.99),
        }
    }

    fn clear(&self) {
        self.attempts.store(0, Ordering::Relaxed);
        self.failures.store(0, Ordering::Relaxed);
        self.latency.clear();
    }
}

/// Judges every canary in turn until `stop` is cancelled (returns at once
/// when there is none).
pub async fn supervise(canaries: Vec<Arc<Canary>>, stop: CancellationToken) {
    let Some(period) = canaries.iter().map(|c| c.tick()).min() else {
        return;
    };
    let mut ticks = tokio::time::interval(period);
    ticks.set_missed_tick_behavior(MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            () = stop.cancelled() => return,
            _ = ticks.tick() => {}
        }
        let now = Instant::now();
        for canary in &canaries {
            canary.judge(now);
        }
    }
}

/// The bit mask of the `true`s (bit i for the i-th).
fn mask(members: impl Iterator<Item = bool>) -> u64 {
    members
        .enumerate()
        .filter(|(i, member)| *member && *i < 64)
        .fold(0, |mask, (i, _)| mask | 1 << i)
}

fn millis(d: Duration) -> f64 {
    d.as_secs_f64() * 1e3
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests;
