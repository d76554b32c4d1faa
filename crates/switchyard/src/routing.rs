//! From a public model name to the deployments that may serve a request, in
//! the order they are tried: the model's own (picked by its strategy, skipping
//! those already tried, those whose circuit breaker is open and, unless all of
//! the model's are, those unhealthy or ejected), then each fallback model's.

pub mod affinity;
pub mod canary;
pub mod health;
pub mod histogram;
pub mod load;
pub mod probe;
pub mod strategy;

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use axum::http::HeaderValue;
use std::time::Duration;

use tokio::time::Instant;

use crate::config::{Config, HedgeAfter, Outlier, Route, Strategy};
use crate::error::GatewayError;
use crate::telemetry::metrics::Metrics;
use crate::upstream::breaker::{Breaker, BreakerConfig, CircuitState, Outcome, Permit};
use crate::upstream::{ClientError, ProviderClient, Urls};
use affinity::{Affinity, Prefix};
use canary::Canary;
use health::Health;
use load::Load;
use strategy::{MAX_MEMBERS, Member, Pool, Tokens};

/// One deployment, ready to call.
#[derive(Debug)]
pub struct Target {
    /// `provider/model`, as `/admin/deployments` and the metrics name it.
    pub name: String,
    /// Its share of the model's traffic.
    pub weight: u32,
    /// The provider's client.
    pub provider: Arc<ProviderClient>,
    /// The model name the provider knows.
    pub upstream_model: String,
    /// Where this deployment's requests go.
    pub urls: Urls,
    /// The completion token cap sent to providers that require one, when the
    /// client sets none.
    pub max_output_tokens: u32,
    /// `x-switchyard-provider` for answers from this deployment.
    pub provider_header: HeaderValue,
    /// `x-switchyard-model` for answers from this deployment.
    pub model_header: HeaderValue,
    /// Sends it no traffic while it keeps failing.
    pub breaker: Breaker,
    /// `x-switchyard-route` of a request this deployment served at the first
    /// attempt (the usual case), built once.
    pub served_first: HeaderValue,
    /// Its live load: requests in flight, time to first token, rate-limit headroom.
    pub load: Arc<Load>,
    /// Healthy, unhealthy (active probes) or ejected (live failures).
    pub health: Arc<Health>,
    /// `switchyard_deployment_healthy{model,deployment}`, set when metrics are read.
    healthy_gauge: metrics::Gauge,
    /// Its tier, if it has one.
    pub tier: Option<String>,
    /// The canary it is new in, if any: its attempts are reported there.
    canary: Option<Arc<Canary>>,
    /// USD per million tokens, when known.
    price: Option<crate::config::Price>,
    /// `switchyard_circuit_state{model,deployment}`, set when metrics are read.
    circuit_gauge: metrics::Gauge,
    /// Its recent times to first byte, when its model hedges after a percentile of them.
    latency: Option<histogram::LatencyWindow>,
    /// The whole exchange (the model's timeout, else the provider's).
    pub total: Duration,
    /// Request sent → a stream's first content.
    pub first_token: Duration,
    /// A streamed exchange, all of it.
    pub stream_total: Duration,
}

impl Target {
    /// Counts a time to first byte (or first content) for hedging.
    pub fn record_latency(&self, latency: Duration) {
        if let Some(window) = &self.latency {
            window.record(latency, std::time::Instant::now());
        }
    }

    /// How long to wait for this deployment before a hedge: `after`, or the
    /// percentile of its recent times (`None` while it has too few).
    pub fn hedge_delay(&self, after: HedgeAfter) -> Option<Duration> {
        match after {
            HedgeAfter::Fixed(delay) => Some(delay),
            HedgeAfter::Quantile(_) => self.latency.as_ref()?.quantile(std::time::Instant::now()),
        }
    }

    /// Its state for `/admin/deployments`.
    pub fn status(&self, now: Instant) -> serde_json::Value {
        let clock = now.into_std();
        let mut status = serde_json::json!({
            "deployment": self.name,
            "provider": &*self.provider.name,
            "model": self.upstream_model,
            "weight": self.weight,
            "tier": self.tier,
            "circuit": self.breaker.state(now).as_str(),
            "in_flight": self.load.in_flight(),
            "ttft_ms": self.load.ttft_estimate(clock).as_secs_f64() * 1e3,
            "rate_limit_headroom": self.load.headroom(clock),
            "health": self.health.state(now).as_str(),
        });
        self.health.report(now, &mut status);
        status
    }

    /// Tells the canary it is new in (if any) that an attempt succeeded, its
    /// first content after `latency`.
    pub fn canary_success(&self, latency: Duration) {
        if let Some(canary) = &self.canary {
            canary.success(latency);
        }
    }

    /// Tells the canary it is new in (if any) that an attempt failed.
    pub fn canary_failure(&self) {
        if let Some(canary) = &self.canary {
            canary.failure();
        }
    }

    /// Whether a request of `tokens` costs at most `max` USD here (an unknown
    /// price does not).
    fn within(&self, tokens: Tokens, max: f64) -> bool {
        self.price.is_some_and(|p| {
            (p.input * tokens.input as f64 + p.output * tokens.output as f64) / 1e6 <= max
        })
    }
}

/// A public model: its deployments and what to do when they fail.
#[derive(Debug)]
pub struct ModelRoute {
    /// The public name.
    pub name: String,
    targets: Vec<Target>,
    /// How a deployment is picked.
    pool: Pool,
    /// Prompt-cache affinity, when the model asks for it.
    affinity: Option<Affinity>,
    /// How its deployments are picked (a route may override it per request).
    strategy: Strategy,
    /// Models tried, in order, when every deployment of this one failed.
    fallbacks: Vec<String>,
    /// Attempts per request, the first included.
    pub attempts: u32,
    /// Its context window in tokens, when known.
    context_window: Option<u64>,
    /// Hedging, when on.
    pub hedge: Option<Hedge>,
    /// Shadow traffic, when on.
    pub shadow: Option<ShadowRoute>,
    /// When live failures eject a deployment.
    outlier: Outlier,
    /// Held while an ejection is decided.
    ejecting: Mutex<()>,
    /// Its canary, if it has one.
    canary: Option<Arc<Canary>>,
}

/// A model's hedging: after `after` without a first byte, a second deployment
/// is asked too.
#[derive(Debug)]
pub struct Hedge {
    /// When the second request goes.
    pub after: HedgeAfter,
    /// `switchyard_hedges_total{model,outcome="sent"}`.
    pub sent: metrics::Counter,
    /// `switchyard_hedges_total{model,outcome="won"}`: the second answered first.
    pub won: metrics::Counter,
}

/// A model's shadow traffic: a share of its requests also goes to another model.
#[derive(Debug)]
pub struct ShadowRoute {
    /// The model that gets the copies.
    pub model: String,
    /// The share copied, from 0 to 1.
    pub fraction: f64,
    /// Copies in flight, bounded.
    pub slots: Arc<tokio::sync::Semaphore>,
    /// `switchyard_shadow_skipped_total{model}`: copies not made, the slots full.
    pub skipped: metrics::Counter,
    /// Per deployment of the shadow model, in its order.
    pub by_target: Vec<ShadowMetrics>,
}

/// What is measured of the copies one shadow deployment answers.
#[derive(Debug, Clone)]
pub struct ShadowMetrics {
    /// `switchyard_shadow_requests_total{model,deployment,outcome="ok"}`.
    pub ok: metrics::Counter,
    /// `switchyard_shadow_requests_total{model,deployment,outcome="error"}`.
    pub failed: metrics::Counter,
    /// `switchyard_shadow_duration_seconds{model,deployment}`: the whole answer.
    pub duration: metrics::Histogram,
    /// `switchyard_shadow_first_byte_seconds{model,deployment}`: to the first body bytes.
    pub first_byte: metrics::Histogram,
}

/// Every public model and its deployments.
#[derive(Debug)]
pub struct Routes {
    models: HashMap<String, ModelRoute>,
    /// The models' canaries.
    canaries: Vec<Arc<Canary>>,
    /// Alias → the model's name.
    aliases: HashMap<String, String>,
    /// `routes:`, in order.
    rules: Vec<Route>,
}

/// What the `routes:` rules read of a request.
#[derive(Debug, Clone, Copy)]
pub struct Facts<'r> {
    /// The model asked for.
    pub model: &'r str,
    /// `x-switchyard-task` or `metadata.task`.
    pub task: Option<&'r str>,
    /// The estimated prompt tokens.
    pub prompt_tokens: u64,
    /// The name of the client's key.
    pub key: Option<&'r str>,
}

/// The outcome of the `routes:` rules for a request.
#[derive(Debug, Clone, Copy)]
pub struct Routed<'r> {
    /// The model that serves it.
    pub model: &'r str,
    /// The strategy, when a rule sets one.
    pub strategy: Option<Strategy>,
    /// The rule that matched (its position), if one did.
    pub rule: Option<usize>,
}

/// The period of the latency windows a percentile hedge reads (they span one
/// to two of them).
const HEDGE_WINDOW: Duration = Duration::from_secs(30);

/// How many times a request may go through its chain of deployments (its
/// attempts are bounded by `retries.attempts` first; this bounds the walk
/// over deployments that cannot take the request at all).
const MAX_PASSES: u8 = 16;

/// Below this rate-limit headroom a deployment is not held to by affinity.
const AFFINITY_MIN_HEADROOM: f64 = 0.1;

/// The most deployments a model can have (tried ones are kept in a 64-bit mask).
pub const MAX_DEPLOYMENTS: usize = MAX_MEMBERS;

impl ModelRoute {
    /// Its deployments.
    pub fn targets(&self) -> &[Target] {
        &self.targets
    }

    /// Its own strategy.
    pub fn strategy(&self) -> Strategy {
        self.strategy
    }

    /// The index of `target` among its deployments.
    pub fn index_of(&self, target: &Target) -> Option<usize> {
        self.targets.iter().position(|t| std::ptr::eq(t, target))
    }
}

impl Routes {
    /// Builds the table, registering each deployment's metrics in `metrics`.
    pub fn new(
        config: &Config,
        clients: &HashMap<String, Arc<ProviderClient>>,
        metrics: &Metrics,
    ) -> Result<Self, (String, ClientError)> {
        describe(metrics);
        canary::describe(metrics);
        let breaker = config.circuit_breaker;
        let mut models = HashMap::new();
        let mut canaries = Vec::new();
        let aliases = config
            .models
            .values()
            .flat_map(|m| {
                m.aliases
                    .iter()
                    .map(|alias| (alias.clone(), m.name.clone()))
            })
            .collect();
        for model in config.models.values() {
            let mut targets = Vec::new();
            let mut members = Vec::new();
            for d in model.deployments.iter().take(MAX_DEPLOYMENTS) {
                let Some(provider) = clients.get(&d.provider) else {
                    continue;
                };
                let load = Arc::new(Load::new());
                members.push(Member {
                    weight: d.weight,
                    price: d.price,
                    load: load.clone(),
                });
                let name = format!("{}/{}", provider.name, d.model);
                let labels = [
                    ("model", model.name.as_str()),
                    ("deployment", name.as_str()),
                ];
                targets.push(Target {
                    circuit_gauge: metrics.gauge("switchyard_circuit_state", &labels),
                    latency: match model.hedge_after {
                        Some(HedgeAfter::Quantile(q)) => {
                            Some(histogram::LatencyWindow::new(q, HEDGE_WINDOW))
                        }
                        _ => None,
                    },
                    healthy_gauge: metrics.gauge("switchyard_deployment_healthy", &labels),
                    health: Arc::new(Health::new()),
                    name,
                    weight: d.weight,
                    provider: provider.clone(),
                    upstream_model: d.model.clone(),
                    urls: provider
                        .urls(&d.model)
                        .map_err(|e| (provider.name.to_string(), e))?,
                    max_output_tokens: d.max_output_tokens,
                    provider_header: header_value(&provider.name),
                    served_first: header_value(&format!(
                        "{}/{}[{}]=ok",
                        provider.name,
                        d.model,
                        model.strategy.as_str()
                    )),
                    model_header: header_value(&d.model),
                    breaker: Breaker::new(BreakerConfig {
                        consecutive_failures: breaker.consecutive_failures,
                        failure_rate: breaker.failure_rate,
                        min_requests: breaker.min_requests,
                        window: breaker.window,
                        cooldown: breaker.cooldown,
                    }),
                    load,
                    tier: d.tier.clone(),
                    canary: None,
                    price: d.price,
                    total: model.timeouts.total.unwrap_or(provider.timeouts.total),
                    first_token: model
                        .timeouts
                        .first_token
                        .unwrap_or(provider.timeouts.first_token),
                    stream_total: model
                        .timeouts
                        .stream_total
                        .unwrap_or(provider.timeouts.stream_total),
                });
            }
            let hedge = model.hedge_after.map(|after| {
                let counter = |outcome| {
                    metrics.counter(
                        "switchyard_hedges_total",
                        &[("model", model.name.as_str()), ("outcome", outcome)],
                    )
                };
                Hedge {
                    after,
                    sent: counter("sent"),
                    won: counter("won"),
                }
            });
            let canary = config.canary.get(&model.name).map(|c| {
                let canary = Canary::attach(&model.name, c, &mut targets, metrics);
                canaries.push(canary.clone());
                canary
            });
            models.insert(
                model.name.clone(),
                ModelRoute {
                    hedge,
                    shadow: None,
                    context_window: model.context_window,
                    name: model.name.clone(),
                    targets,
                    pool: Pool::new(model.strategy, members),
                    strategy: model.strategy,
                    affinity: model.affinity.map(|a| Affinity::new(a.prefix_bytes, a.ttl)),
                    fallbacks: model.fallbacks.clone(),
                    attempts: model.attempts,
                    outlier: config.health_checks.outlier,
                    ejecting: Mutex::new(()),
                    canary,
                },
            );
        }
        // Shadows last: their metrics name the shadow model's deployments.
        let shadows: Vec<(String, ShadowRoute)> = config
            .models
            .values()
            .filter_map(|model| {
                let shadow = model.shadow.as_ref()?;
                let targets = &models.get(&shadow.model)?.targets;
                Some((
                    model.name.clone(),
                    shadow_route(&model.name, shadow, targets, metrics),
                ))
            })
            .collect();
        for (name, shadow) in shadows {
            if let Some(model) = models.get_mut(&name) {
                model.shadow = Some(shadow);
            }
        }
        Ok(Self {
            models,
            canaries,
            aliases,
            rules: config.routes.clone(),
        })
    }

    /// Every public model, by name.
    pub fn models(&self) -> impl Iterator<Item = &ModelRoute> {
        let mut models: Vec<&ModelRoute> = self.models.values().collect();
        models.sort_by(|a, b| a.name.cmp(&b.name));
        models.into_iter()
    }

    /// Every canary, by model.
    pub fn canaries(&self) -> &[Arc<Canary>] {
        &self.canaries
    }

    /// The canary of `model`, if it has one.
    pub fn canary(&self, model: &str) -> Option<&Arc<Canary>> {
        self.models.get(model)?.canary.as_ref()
    }

    /// Sets the gauges that show a state (each deployment's breaker and
    /// health, each canary's stage) from it.
    pub fn export_state(&self, now: Instant) {
        for canary in &self.canaries {
            canary.export();
        }
        for target in self.models.values().flat_map(|m| &m.targets) {
            target
                .circuit_gauge
                .set(f64::from(target.breaker.state(now).value()));
            let healthy = target.health.routable(now);
            target.healthy_gauge.set(f64::from(u8::from(healthy)));
        }
    }

    /// Whether a rule reads the task (so that the body's `metadata.task` is
    /// worth looking for).
    pub fn reads_task(&self) -> bool {
        self.rules.iter().any(|r| !r.tasks.is_empty())
    }

    /// The first rule of `routes:` the request matches, applied: the model it
    /// names (else the one asked for) and its strategy.
    pub fn apply<'r>(&'r self, facts: Facts<'r>) -> Routed<'r> {
        let matched = self.rules.iter().position(|rule| {
            rule.for_model.as_deref().is_none_or(|m| m == facts.model)
                && (rule.tasks.is_empty()
                    || facts
                        .task
                        .is_some_and(|t| rule.tasks.iter().any(|r| r == t)))
                && rule.prompt_tokens.contains(&facts.prompt_tokens)
                && (rule.keys.is_empty()
                    || facts.key.is_some_and(|k| rule.keys.iter().any(|r| r == k)))
        });
        match matched.map(|i| (i, &self.rules[i])) {
            Some((i, rule)) => Routed {
                model: rule.model.as_deref().unwrap_or(facts.model),
                strategy: rule.strategy,
                rule: Some(i),
            },
            None => Routed {
                model: facts.model,
                strategy: None,
                rule: None,
            },
        }
    }

    /// The way through `model`'s deployments and its fallbacks for one request
    /// of about `tokens`.
    pub fn plan(&self, model: &str, tokens: Tokens) -> Result<Plan<'_>, GatewayError> {
        let route = self
            .models
            .get(model)
            .or_else(|| self.models.get(self.aliases.get(model)?))
            .ok_or_else(|| GatewayError::ModelNotFound(model.to_owned()))?;
        Ok(Plan {
            routes: self,
            first: route,
            tokens,
            max_cost: None,
            strategy: None,
            prefix: None,
            current: 0,
            excluded: 0,
            held: route.canary.as_ref().map_or(0, |c| c.held_back()),
            passes: 0,
        })
    }
}

/// The `# HELP` of the metrics registered here.
fn describe(metrics: &Metrics) {
    metrics.describe(
        "switchyard_circuit_state",
        None,
        "Circuit breaker of a deployment: 0 closed, 1 half-open, 2 open.",
    );
    metrics.describe(
        "switchyard_deployment_healthy",
        None,
        "Whether a deployment takes traffic: 1 healthy, 0 unhealthy or ejected.",
    );
    metrics.describe(
        "switchyard_hedges_total",
        None,
        "Hedged requests: second requests sent, and those that answered first.",
    );
    metrics.describe(
        "switchyard_shadow_requests_total",
        None,
        "Copies of requests sent to a shadow deployment, by outcome.",
    );
    metrics.describe(
        "switchyard_shadow_skipped_total",
        None,
        "Requests not copied to the shadow model: its copies in flight were at the limit.",
    );
    metrics.describe(
        "switchyard_shadow_duration_seconds",
        Some(metrics::Unit::Seconds),
        "Shadow answers: request sent to the whole answer read.",
    );
    metrics.describe(
        "switchyard_shadow_first_byte_seconds",
        Some(metrics::Unit::Seconds),
        "Shadow answers: request sent to the first bytes of the body.",
    );
}

/// The shadow traffic of `model`, with its metrics per deployment of the
/// shadow model (`targets`, in their order).
fn shadow_route(
    model: &str,
    shadow: &crate::config::Shadow,
    targets: &[Target],
    metrics: &Metrics,
) -> ShadowRoute {
    let by_target = targets
        .iter()
        .map(|target| {
            let labels = [("model", model), ("deployment", target.name.as_str())];
            let outcome = |outcome| {
                metrics.counter(
                    "switchyard_shadow_requests_total",
                    &[labels[0], labels[1], ("outcome", outcome)],
                )
            };
            ShadowMetrics {
                ok: outcome("ok"),
                failed: outcome("error"),
                duration: metrics.histogram("switchyard_shadow_duration_seconds", &labels),
                first_byte: metrics.histogram("switchyard_shadow_first_byte_seconds", &labels),
            }
        })
        .collect();
    ShadowRoute {
        model: shadow.model.clone(),
        fraction: shadow.fraction,
        slots: Arc::new(tokio::sync::Semaphore::new(shadow.max_in_flight as usize)),
        skipped: metrics.counter("switchyard_shadow_skipped_total", &[("model", model)]),
        by_target,
    }
}

/// One request's way through the deployments of its model and its fallbacks
/// (looked up by name when they are reached: no allocation per request).
#[derive(Debug)]
pub struct Plan<'a> {
    routes: &'a Routes,
    first: &'a ModelRoute,
    /// The request's estimated size, for the `cost` strategy.
    tokens: Tokens,
    /// `x-switchyard-max-cost`: deployments estimated dearer are left out.
    max_cost: Option<f64>,
    /// A route's strategy, instead of the models' own.
    strategy: Option<Strategy>,
    /// The request's prompt prefix, for the requested model's affinity.
    prefix: Option<Prefix>,
    /// The model being tried: 0 the requested one, n its n-th fallback.
    current: usize,
    /// Deployments of the current model already tried (bit i = target i).
    excluded: u64,
    /// Deployments of the requested model's canary set not drawn for this
    /// request, left out while the drawn set has one to try.
    held: u64,
    /// Times the whole chain has been gone through.
    passes: u8,
}

/// A deployment to try, with the breaker's permit for it.
#[derive(Debug)]
pub struct Pick<'a> {
    /// The model it serves (the requested one, or a fallback).
    pub model: &'a ModelRoute,
    /// The deployment.
    pub target: &'a Target,
    /// What the breaker allowed, until it is handed back (see [`Pick::settle`]).
    permit: Held,
    /// Why it was picked, for `x-switchyard-route`: the strategy's name,
    /// `affinity` (it served the prompt's prefix before), `canary` (of the
    /// canary's new set) or `hedge` (asked alongside a slow first one).
    pub why: &'static str,
}

/// A breaker permit not handed back yet: 0 none, else the permit + 1.
#[derive(Debug)]
struct Held(std::sync::atomic::AtomicU8);

impl Held {
    fn new(permit: Permit) -> Self {
        Self(std::sync::atomic::AtomicU8::new(Self::code(permit)))
    }

    fn code(permit: Permit) -> u8 {
        match permit {
            Permit::Normal => 1,
            Permit::Probe => 2,
        }
    }

    fn take(&self) -> Option<Permit> {
        match self.0.swap(0, std::sync::atomic::Ordering::Relaxed) {
            1 => Some(Permit::Normal),
            2 => Some(Permit::Probe),
            _ => None,
        }
    }
}

impl Pick<'_> {
    /// Hands the breaker's permit back with the attempt's outcome (once: a
    /// second call does nothing).
    pub fn settle(&self, outcome: Outcome, now: Instant) {
        if let Some(permit) = self.permit.take() {
            self.target.breaker.record(permit, outcome, now);
        }
    }

    /// Holds a fresh permit of the same deployment (after a wait, say), the
    /// earlier one handed back.
    pub fn rearm(&mut self, permit: Permit) {
        self.settle(Outcome::Ignored, Instant::now());
        self.permit = Held::new(permit);
    }
}

impl Drop for Pick<'_> {
    /// A pick dropped before its outcome was known (the client went away
    /// mid-attempt, a hedge was given up) hands its permit back as saying
    /// nothing, so that a half-open breaker's probe slot is never lost.
    fn drop(&mut self) {
        self.settle(Outcome::Ignored, Instant::now());
    }
}

impl<'a> Plan<'a> {
    /// The requested model.
    pub fn model(&self) -> &'a ModelRoute {
        self.first
    }

    /// The model `n` of the chain: the requested one, then its fallbacks (the
    /// validator makes sure they exist; one that does not ends the chain).
    fn chain(&self, n: usize) -> Option<&'a ModelRoute> {
        match n {
            0 => Some(self.first),
            n => self.routes.models.get(self.first.fallbacks.get(n - 1)?),
        }
    }

    /// The next deployment to try: an untried one of the current model, else
    /// of the next fallback; when every one has been tried, the chain starts
    /// over (a retry of the same deployments). `None` when no deployment's
    /// breaker lets a request through.
    pub fn next(&mut self, now: Instant) -> Option<Pick<'a>> {
        loop {
            if self.passes >= MAX_PASSES {
                return None;
            }
            let model = self.chain(self.current)?;
            if let Some(pick) = self.pick_in(model, now) {
                return Some(pick);
            }
            self.current += 1;
            self.excluded = 0;
            if self.chain(self.current).is_none() {
                self.current = 0;
                self.passes += 1;
            }
        }
    }

    /// Leaves out deployments whose estimated cost for the request exceeds
    /// `max` USD (and those without a price).
    pub fn limit_cost(&mut self, max: f64) {
        self.max_cost = Some(max);
    }

    /// Picks deployments by `strategy` instead of each model's own.
    pub fn use_strategy(&mut self, strategy: Strategy) {
        self.strategy = Some(strategy);
    }

    /// Notes the request's body for the requested model's prompt-cache affinity.
    pub fn prompt(&mut self, body: &[u8]) {
        self.prefix = self.first.affinity.as_ref().and_then(|a| a.prefix(body));
    }

    /// Remembers who served the request's prompt prefix (when the requested
    /// model has affinity).
    pub fn served(&self, pick: &Pick<'_>, now: Instant) {
        if let (Some(affinity), Some(prefix)) = (&self.first.affinity, self.prefix)
            && std::ptr::eq(pick.model, self.first)
            && let Some(index) = self
                .first
                .targets
                .iter()
                .position(|t| std::ptr::eq(t, pick.target))
        {
            affinity.set(prefix, index, now);
        }
    }

    /// Whether some deployment of the chain fits `x-switchyard-max-cost`.
    pub fn affordable(&self) -> bool {
        let Some(max) = self.max_cost else {
            return true;
        };
        (0..)
            .map_while(|n| self.chain(n))
            .any(|model| model.targets.iter().any(|t| t.within(self.tokens, max)))
    }

    /// Which model of the chain is being tried (0: the requested one).
    pub fn current(&self) -> usize {
        self.current
    }

    /// The model being tried.
    pub fn current_model(&self) -> &'a ModelRoute {
        self.chain(self.current).unwrap_or(self.first)
    }

    /// The model after the one being tried, if the chain has one.
    pub fn model_after(&self) -> Option<&'a ModelRoute> {
        self.chain(self.current + 1)
    }

    /// Moves on to the next model of the chain; `false` at its end.
    pub fn next_model(&mut self) -> bool {
        if self.passes >= MAX_PASSES || self.chain(self.current + 1).is_none() {
            return false;
        }
        self.current += 1;
        self.excluded = 0;
        self.held = 0;
        true
    }

    /// Moves on to the first model of the chain after the one being tried
    /// whose context window is larger than that one's; `false` when there is
    /// none (or the window of the one being tried is not known).
    pub fn next_larger_model(&mut self) -> bool {
        let Some(window) = self.current_model().context_window else {
            return false;
        };
        let larger = (self.current + 1..)
            .map_while(|n| Some((n, self.chain(n)?)))
            .find(|(_, model)| model.context_window.is_some_and(|w| w > window));
        match larger {
            Some((n, _)) => {
                self.current = n;
                self.excluded = 0;
                self.held = 0;
                true
            }
            None => false,
        }
    }

    /// Another untried deployment of the model being tried, never one of the
    /// next model (for a hedge, which must not move the plan on).
    pub fn next_alongside(&mut self, now: Instant) -> Option<Pick<'a>> {
        let model = self.chain(self.current)?;
        self.pick_in(model, now)
    }

    /// Whether the last pick came from a fallback model.
    pub fn in_fallback(&self) -> bool {
        self.current > 0
    }

    /// A deployment of `model` not tried yet, by the model's strategy, whose
    /// breaker lets the request through, and which is healthy unless none of
    /// the model's deployments is (panic mode: then health is ignored); of the
    /// canary set drawn for the request while it has one, else of the other.
    fn pick_in(&mut self, model: &'a ModelRoute, now: Instant) -> Option<Pick<'a>> {
        let pick = self.pick_untried(model, now);
        if pick.is_some() || self.held == 0 {
            return pick;
        }
        self.held = 0;
        self.pick_untried(model, now)
    }

    /// [`Plan::pick_in`] among the deployments not held back.
    fn pick_untried(&mut self, model: &'a ModelRoute, now: Instant) -> Option<Pick<'a>> {
        let clock = now.into_std();
        // Back to the deployment that served this prompt prefix, while it is
        // healthy and not nearly rate limited; else the strategy decides.
        if let (Some(affinity), Some(prefix)) = (&model.affinity, self.prefix)
            && std::ptr::eq(model, self.first)
            && let Some(index) = affinity.get(prefix, now)
            && index < model.targets.len()
            && (self.excluded | self.held) & (1 << index) == 0
            && model.targets[index].health.routable(now)
        {
            let target = &model.targets[index];
            let fits = self
                .max_cost
                .is_none_or(|max| target.within(self.tokens, max));
            if fits && target.load.headroom(clock) >= AFFINITY_MIN_HEADROOM {
                self.excluded |= 1 << index;
                if let Some(permit) = target.breaker.allow(now) {
                    return Some(Pick {
                        model,
                        target,
                        permit: Held::new(permit),
                        why: "affinity",
                    });
                }
            }
        }
        loop {
            let (tokens, max_cost) = (self.tokens, self.max_cost);
            let closed = |i: usize| {
                let target = &model.targets[i];
                max_cost.is_none_or(|max| target.within(tokens, max))
                    && target.breaker.state(now) != CircuitState::Open
            };
            let excluded = self.excluded | self.held;
            let pick = |usable: &dyn Fn(usize) -> bool| match self.strategy {
                Some(strategy) => model
                    .pool
                    .pick_by(strategy, excluded, usable, tokens, clock),
                None => model.pool.pick(excluded, usable, tokens, clock),
            };
            let healthy = |i: usize| model.targets[i].health.routable(now) && closed(i);
            let index = match pick(&healthy) {
                Some(index) => index,
                None if !model.targets.iter().any(|t| t.health.routable(now)) => pick(&closed)?,
                None => return None,
            };
            self.excluded |= 1 << index;
            let target = &model.targets[index];
            if let Some(permit) = target.breaker.allow(now) {
                let why = match (&target.canary, self.strategy) {
                    (Some(_), _) => "canary",
                    (None, Some(strategy)) => strategy.as_str(),
                    (None, None) => model.strategy.as_str(),
                };
                return Some(Pick {
                    model,
                    target,
                    permit: Held::new(permit),
                    why,
                });
            }
        }
    }
}

/// A header value for a name from the config (names that cannot be one show as `-`).
fn header_value(name: &str) -> HeaderValue {
    HeaderValue::from_str(name).unwrap_or(HeaderValue::from_static("-"))
}
