//! The live state of the deployments, for the life of the process.
//!
//! [`Routes`](super::Routes) are immutable and built from one config; what a
//! deployment has learnt by serving traffic lives here instead, so that
//! routes built again from a new config (the reload, which will swap them
//! behind an `ArcSwap` while this registry stays) carry it over:
//!
//! - per deployment, keyed by (provider name, upstream model), and shared by
//!   every public model it serves: its circuit breaker, its load (in flight,
//!   TTFT estimate, rate-limit headroom), its health (probes and ejections),
//!   and its latency windows for percentile hedges (one per quantile asked);
//! - per (public model, deployment) label pair: the handles of
//!   `switchyard_circuit_state` and `switchyard_deployment_healthy`;
//! - per public model: its canary, its hedge counters, its shadow
//!   traffic's slots and counters (those per shadow deployment by
//!   (model, deployment)), and its count of requests in flight (its
//!   `max_in_flight`'s).
//!
//! Each metric handle is registered once per label set, the first time routes
//! ask for it; routes must always be built with the same [`Metrics`].
//!
//! The maps sit behind one short [`Mutex`], taken only while routes are built:
//! routes hold `Arc`s and handles, so nothing here is looked up on the request
//! path. Entries are never removed: a deployment, model or canary that leaves
//! the config keeps its entry (one per deployment, model and label pair ever
//! configured, so bounded by the configs' size), and gets it back if it
//! returns.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::Duration;

use tokio::sync::Semaphore;

use super::canary::Canary;
use super::health::Health;
use super::histogram::LatencyWindow;
use super::load::Load;
use super::{Hedge, ShadowMetrics};
use crate::admission::limit::{Counts, Limit};
use crate::config::{self, HedgeAfter};
use crate::telemetry::metrics::Metrics;
use crate::upstream::breaker::{Breaker, BreakerConfig};

/// The period of the latency windows a percentile hedge reads (they span one
/// to two of them).
const HEDGE_WINDOW: Duration = Duration::from_secs(30);

/// The live state of every deployment, canary and routing metric, shared by
/// all the routes built in the process (see the module's documentation).
#[derive(Debug, Default)]
pub struct Registry {
    entries: Mutex<Entries>,
}

/// What the registry holds, by key.
#[derive(Debug, Default)]
struct Entries {
    /// By (provider, upstream model).
    deployments: HashMap<(String, String), Deployment>,
    /// By (provider, upstream model, the quantile's bits).
    windows: HashMap<(String, String, u64), Arc<LatencyWindow>>,
    /// By (public model, deployment name).
    gauges: HashMap<(String, String), Gauges>,
    /// By public model.
    canaries: HashMap<String, Arc<Canary>>,
    /// By public model: `sent` and `won`.
    hedges: HashMap<String, [metrics::Counter; 2]>,
    /// By public model.
    shadows: HashMap<String, Shadow>,
    /// By (public model, shadow deployment name).
    shadow_metrics: HashMap<(String, String), ShadowMetrics>,
    /// Requests in flight, by public model.
    in_flight: Counts,
}

/// One deployment's entry.
#[derive(Debug)]
struct Deployment {
    /// The settings its breaker was made with.
    settings: BreakerConfig,
    live: Live,
}

/// The live state of one deployment.
#[derive(Debug, Clone)]
pub(super) struct Live {
    /// Its circuit breaker.
    pub(super) breaker: Arc<Breaker>,
    /// Requests in flight, TTFT estimate, rate-limit headroom.
    pub(super) load: Arc<Load>,
    /// Healthy, unhealthy or ejected.
    pub(super) health: Arc<Health>,
}

/// The gauges of one deployment of one public model.
#[derive(Debug, Clone)]
pub(super) struct Gauges {
    /// `switchyard_circuit_state{model,deployment}`.
    pub(super) circuit: metrics::Gauge,
    /// `switchyard_deployment_healthy{model,deployment}`.
    pub(super) healthy: metrics::Gauge,
}

/// A public model's shadow traffic, as it outlives routes.
#[derive(Debug)]
struct Shadow {
    /// The bound `slots` was made with.
    max_in_flight: u32,
    /// Copies in flight.
    slots: Arc<Semaphore>,
    /// `switchyard_shadow_skipped_total{model}`.
    skipped: metrics::Counter,
}

// === impl Registry ===

impl Registry {
    /// An empty registry: every deployment starts fresh (closed breaker, no
    /// load, healthy), every canary at its first stage.
    pub fn new() -> Self {
        Self::default()
    }

    /// The live state of `model` on `provider`, made on first use. A breaker
    /// made with other settings than `breaker` is replaced by a new, closed
    /// one (the config's `circuit_breaker:` changed); load and health stay.
    pub(super) fn deployment(&self, provider: &str, model: &str, breaker: &BreakerConfig) -> Live {
        let mut entries = self.lock();
        let entry = entries
            .deployments
            .entry((provider.to_owned(), model.to_owned()))
            .or_insert_with(|| Deployment {
                settings: breaker.clone(),
                live: Live {
                    breaker: Arc::new(Breaker::new(breaker.clone())),
                    load: Arc::new(Load::new()),
                    health: Arc::new(Health::new()),
                },
            });
        if entry.settings != *breaker {
            entry.settings = breaker.clone();
            entry.live.breaker = Arc::new(Breaker::new(breaker.clone()));
        }
        entry.live.clone()
    }

    /// The window of recent times to first byte of `model` on `provider`
    /// that keeps the `q` quantile, made on first use.
    pub(super) fn latency_window(&self, provider: &str, model: &str, q: f64) -> Arc<LatencyWindow> {
        let key = (provider.to_owned(), model.to_owned(), q.to_bits());
        self.lock()
            .windows
            .entry(key)
            .or_insert_with(|| Arc::new(LatencyWindow::new(q, HEDGE_WINDOW)))
            .clone()
    }

    /// The state gauges of `deployment` as a deployment of `model`,
    /// registered in `metrics` on first use.
    pub(super) fn gauges(&self, metrics: &Metrics, model: &str, deployment: &str) -> Gauges {
        by_labels(&mut self.lock().gauges, model, deployment, |labels| {
            Gauges {
                circuit: metrics.gauge("switchyard_circuit_state", labels),
                healthy: metrics.gauge("switchyard_deployment_healthy", labels),
            }
        })
    }

    /// The canary of `model` from `config` over the new and old `sets` of its
    /// deployments. The one running already is carried over, its stage,
    /// state and statistics kept, when its config and sets are the same;
    /// when either changed, a new canary starts at its first stage (its
    /// metric handles name the same series as the old one's).
    pub(super) fn canary(
        &self,
        model: &str,
        config: &config::Canary,
        sets: [u64; 2],
        metrics: &Metrics,
    ) -> Arc<Canary> {
        let mut entries = self.lock();
        if let Some(canary) = entries.canaries.get(model)
            && canary.runs(config, sets)
        {
            return canary.clone();
        }
        let canary = Arc::new(Canary::new(model, config, sets, metrics));
        entries.canaries.insert(model.to_owned(), canary.clone());
        canary
    }

    /// `model`'s hedging after `after`, its counters registered on first use.
    pub(super) fn hedge(&self, metrics: &Metrics, model: &str, after: HedgeAfter) -> Hedge {
        let [sent, won] = self
            .lock()
            .hedges
            .entry(model.to_owned())
            .or_insert_with(|| {
                ["sent", "won"].map(|outcome| {
                    metrics.counter(
                        "switchyard_hedges_total",
                        &[("model", model), ("outcome", outcome)],
                    )
                })
            })
            .clone();
        Hedge { after, sent, won }
    }

    /// The slots of `model`'s shadow copies in flight, and its
    /// `switchyard_shadow_skipped_total` counter. The slots are carried over
    /// (copies in flight keep counting) unless `max_in_flight` changed.
    pub(super) fn shadow(
        &self,
        metrics: &Metrics,
        model: &str,
        max_in_flight: u32,
    ) -> (Arc<Semaphore>, metrics::Counter) {
        let slots = || Arc::new(Semaphore::new(max_in_flight as usize));
        let mut entries = self.lock();
        let shadow = entries
            .shadows
            .entry(model.to_owned())
            .or_insert_with(|| Shadow {
                max_in_flight,
                slots: slots(),
                skipped: metrics.counter("switchyard_shadow_skipped_total", &[("model", model)]),
            });
        if shadow.max_in_flight != max_in_flight {
            shadow.max_in_flight = max_in_flight;
            shadow.slots = slots();
        }
        (shadow.slots.clone(), shadow.skipped.clone())
    }

    /// What is measured of `model`'s copies answered by `deployment`,
    /// registered on first use.
    pub(super) fn shadow_metrics(
        &self,
        metrics: &Metrics,
        model: &str,
        deployment: &str,
    ) -> ShadowMetrics {
        by_labels(
            &mut self.lock().shadow_metrics,
            model,
            deployment,
            |labels| {
                let outcome = |outcome| {
                    metrics.counter(
                        "switchyard_shadow_requests_total",
                        &[labels[0], labels[1], ("outcome", outcome)],
                    )
                };
                ShadowMetrics {
                    ok: outcome("ok"),
                    failed: outcome("error"),
                    duration: metrics.histogram("switchyard_shadow_duration_seconds", labels),
                    first_byte: metrics.histogram("switchyard_shadow_first_byte_seconds", labels),
                }
            },
        )
    }

    /// The in-flight limit of `max` on `model`, its count carried over from
    /// routes built before.
    pub(super) fn model_limit(&self, model: &str, max: u32) -> Limit {
        self.lock().in_flight.limit(model, max)
    }

    /// The maps; nothing panics under the lock, so poisoning is ignored.
    fn lock(&self) -> MutexGuard<'_, Entries> {
        self.entries.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

/// The handles of `map` for the label pair (`model`, `deployment`), made by
/// `register` with those labels on first use.
fn by_labels<T: Clone>(
    map: &mut HashMap<(String, String), T>,
    model: &str,
    deployment: &str,
    register: impl FnOnce(&[(&'static str, &str); 2]) -> T,
) -> T {
    map.entry((model.to_owned(), deployment.to_owned()))
        .or_insert_with(|| register(&[("model", model), ("deployment", deployment)]))
        .clone()
}
