//! From a public model name to the deployments that may serve a request, in
//! the order they are tried: the model's own (picked by its strategy, skipping
//! those already tried, those whose circuit breaker is open — but for one
//! request in twenty when all of the model's are — those whose provider keys
//! all rest after a 429 while another is left, and, unless all of the model's
//! are, those unhealthy or ejected), then each fallback model's.
//!
//! What lives where:
//!
//! - [`Routes`] (here) and its [`ModelRoute`]s and [`Target`]s (`target.rs`)
//!   are immutable, built from one config by [`Routes::new`]: the models, their
//!   deployments in order, strategies, fallbacks, timeouts, header values and
//!   URLs, plus `Arc` handles to the live state below.
//! - The [`Registry`] (`registry.rs`) is made once per process and holds the
//!   live state, keyed by deployment (provider, upstream model): breakers,
//!   loads, health, latency windows; and by model: canaries, hedge and shadow
//!   metrics, the metric gauges. Routes built again from the same registry see
//!   the same state. The config reload will swap `Routes` behind an `ArcSwap`
//!   while the registry stays.
//! - A [`Plan`] and its [`Pick`]s (`plan.rs`) are one request's way through
//!   the routes; they read the live state through the handles, never through
//!   the registry (no lock, no map on the request path).

pub mod affinity;
pub mod canary;
pub mod health;
pub mod histogram;
pub mod load;
pub mod probe;
pub mod strategy;

mod plan;
mod registry;
mod target;

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use tokio::time::Instant;

use crate::admission::limit::Limit;
use crate::config::{CircuitBreaker, Config, HedgeAfter, Outlier, Route, Strategy};
use crate::error::GatewayError;
use crate::telemetry::ModelMeter;
use crate::telemetry::metrics::Metrics;
use crate::upstream::breaker::BreakerConfig;
use crate::upstream::{ClientError, ProviderClient};
use affinity::Affinity;
use canary::Canary;
pub use plan::{Dearest, Pick, Plan};
pub use registry::Registry;
use strategy::{MAX_MEMBERS, Member, Pool, Tokens};
pub use target::Target;

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
    /// Its `max_in_flight`, counted over every request that asked for it
    /// (whichever model serves it in the end).
    pub in_flight: Option<Limit>,
    /// How the response cache treats its answers.
    pub cache: crate::config::ModelCache,
    /// The handles its requests are counted with.
    pub meter: Arc<ModelMeter>,
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

/// Every public model and its deployments: immutable, built from one config
/// by [`Routes::new`] over the process's [`Registry`].
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

/// The most deployments a model can have (tried ones are kept in a 64-bit mask).
pub const MAX_DEPLOYMENTS: usize = MAX_MEMBERS;

impl ModelRoute {
    /// Its deployments.
    pub fn targets(&self) -> &[Target] {
        &self.targets
    }

    /// Its price for what a fallback saved: that of its first deployment
    /// with one, in config order.
    pub fn list_price(&self) -> Option<&Arc<crate::pricing::ModelPrice>> {
        self.targets.iter().find_map(Target::rates)
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
    /// Builds the table from `config`: each deployment's live state, each
    /// canary and each metric handle is taken from `registry` (made there on
    /// first use, metrics registered in `metrics`, which must be the same
    /// every time), so routes built again from a new config carry them over.
    pub fn new(
        config: &Config,
        clients: &HashMap<String, Arc<ProviderClient>>,
        registry: &Registry,
        metrics: &Metrics,
    ) -> Result<Self, (String, ClientError)> {
        describe(metrics);
        canary::describe(metrics);
        let breaker = breaker_config(&config.circuit_breaker);
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
            for d in model.deployments.iter().take(MAX_DEPLOYMENTS) {
                let Some(provider) = clients.get(&d.provider) else {
                    continue;
                };
                let mut target = Target::new(model, d, provider, &breaker, registry, metrics)
                    .map_err(|e| (provider.name.to_string(), e))?;
                target.rates = config
                    .prices
                    .for_deployment(d)
                    .map(|price| Arc::new(price.into_owned()));
                targets.push(target);
            }
            let members = targets
                .iter()
                .map(|t| Member {
                    weight: t.weight,
                    price: t.price,
                    load: t.load.clone(),
                })
                .collect();
            let hedge = model
                .hedge_after
                .map(|after| registry.hedge(metrics, &model.name, after));
            let canary = config.canary.get(&model.name).map(|c| {
                let canary = Canary::attach(&model.name, c, &mut targets, registry, metrics);
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
                    in_flight: model
                        .max_in_flight
                        .map(|max| registry.model_limit(&model.name, max)),
                    cache: model.cache.clone(),
                    meter: Arc::new(ModelMeter::new(
                        metrics,
                        &model.name,
                        &providers_of(config, clients, &model.name),
                    )),
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
                    shadow_route(&model.name, shadow, targets, registry, metrics),
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
        Ok(Plan::new(self, route, tokens))
    }
}

/// The providers that may serve a request for `model`: those of its
/// deployments and, through its fallbacks, of theirs; named as their clients
/// are (the names the requests' records carry).
fn providers_of(
    config: &Config,
    clients: &HashMap<String, Arc<ProviderClient>>,
    model: &str,
) -> Vec<Arc<str>> {
    let mut models = vec![model];
    let mut providers: Vec<Arc<str>> = Vec::new();
    let mut next = 0;
    while let Some(name) = models.get(next) {
        next += 1;
        let Some(model) = config.models.get(*name) else {
            continue;
        };
        for deployment in &model.deployments {
            if let Some(client) = clients.get(&deployment.provider)
                && !providers.contains(&client.name)
            {
                providers.push(client.name.clone());
            }
        }
        for fallback in &model.fallbacks {
            if !models.contains(&fallback.as_str()) {
                models.push(fallback);
            }
        }
    }
    providers
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
    registry: &Registry,
    metrics: &Metrics,
) -> ShadowRoute {
    let by_target = targets
        .iter()
        .map(|target| registry.shadow_metrics(metrics, model, &target.name))
        .collect();
    let (slots, skipped) = registry.shadow(metrics, model, shadow.max_in_flight);
    ShadowRoute {
        model: shadow.model.clone(),
        fraction: shadow.fraction,
        slots,
        skipped,
        by_target,
    }
}

/// The breaker settings of `circuit_breaker:`.
fn breaker_config(config: &CircuitBreaker) -> BreakerConfig {
    BreakerConfig {
        consecutive_failures: config.consecutive_failures,
        failure_rate: config.failure_rate,
        margin: config.margin,
        min_requests: config.min_requests,
        window: config.window,
        cooldown: config.cooldown,
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests;
