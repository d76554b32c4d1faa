//! A deployment as the routes hold it: what the config says of it, header
//! values and URLs built once, and handles to its live state (breaker, load,
//! health, latency window, metric gauges, canary), which the
//! [`Registry`] keeps across routes.

use std::sync::Arc;
use std::time::Duration;

use axum::http::HeaderValue;
use tokio::time::Instant;

use super::canary::Canary;
use super::health::Health;
use super::histogram::LatencyWindow;
use super::load::{InFlight, Load};
use super::registry::Registry;
use super::strategy::Tokens;
use crate::config::{self, HedgeAfter};
use crate::pricing::ModelPrice;
use crate::telemetry::UpstreamMeter;
use crate::telemetry::metrics::Metrics;
use crate::upstream::breaker::{Breaker, BreakerConfig};
use crate::upstream::{ClientError, ProviderClient, UpstreamError, Urls};

/// One deployment of one public model, ready to call. Its live state is
/// shared, through `Arc`s, with every model that has the same deployment and
/// with routes built again (see [`Registry`]).
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
    pub breaker: Arc<Breaker>,
    /// `x-switchyard-route` of a request this deployment served at the first
    /// attempt (the usual case), built once.
    pub served_first: HeaderValue,
    /// Its live load: requests in flight, time to first token, rate-limit headroom.
    pub load: Arc<Load>,
    /// Its `max_in_flight`: past it the deployment is passed over.
    max_in_flight: Option<u32>,
    /// Healthy, unhealthy (active probes) or ejected (live failures).
    pub health: Arc<Health>,
    /// `switchyard_deployment_healthy{model,deployment}`, set when metrics are read.
    pub(super) healthy_gauge: metrics::Gauge,
    /// Its tier, if it has one.
    pub tier: Option<String>,
    /// The canary it is new in, if any: its attempts are reported there.
    pub(super) canary: Option<Arc<Canary>>,
    /// USD per million tokens, when known.
    pub(super) price: Option<config::Price>,
    /// What its tokens cost, each kind apart: its own `price`, else the
    /// price list's for its model (see `Routes::new`); none: free.
    pub(super) rates: Option<Arc<ModelPrice>>,
    /// `switchyard_circuit_state{model,deployment}`, set when metrics are read.
    pub(super) circuit_gauge: metrics::Gauge,
    /// `switchyard_upstream_duration_seconds{provider,outcome}` of its attempts.
    upstream: UpstreamMeter,
    /// Its recent times to first byte, when its model hedges after a percentile of them.
    pub(super) latency: Option<Arc<LatencyWindow>>,
    /// The whole exchange (the model's timeout, else the provider's).
    pub total: Duration,
    /// Request sent → a stream's first content.
    pub first_token: Duration,
    /// A streamed exchange, all of it.
    pub stream_total: Duration,
}

// === impl Target ===

impl Target {
    /// Deployment `deployment` of `model` on `provider`, its live state
    /// (`breaker` the settings of a new breaker) and metric handles taken
    /// from `registry`. Not in a canary yet (see `Canary::attach`).
    pub(super) fn new(
        model: &config::Model,
        deployment: &config::Deployment,
        provider: &Arc<ProviderClient>,
        breaker: &BreakerConfig,
        registry: &Registry,
        metrics: &Metrics,
    ) -> Result<Self, ClientError> {
        let d = deployment;
        let name = format!("{}/{}", provider.name, d.model);
        let live = registry.deployment(&provider.name, &d.model, breaker);
        let gauges = registry.gauges(metrics, &model.name, &name);
        let timeouts = &model.timeouts;
        Ok(Self {
            latency: match model.hedge_after {
                Some(HedgeAfter::Quantile(q)) => {
                    Some(registry.latency_window(&provider.name, &d.model, q))
                }
                _ => None,
            },
            upstream: UpstreamMeter::new(metrics, &provider.name),
            circuit_gauge: gauges.circuit,
            healthy_gauge: gauges.healthy,
            breaker: live.breaker,
            load: live.load,
            max_in_flight: d.max_in_flight,
            health: live.health,
            weight: d.weight,
            provider: provider.clone(),
            upstream_model: d.model.clone(),
            urls: provider.urls(&d.model)?,
            max_output_tokens: d.max_output_tokens,
            provider_header: header_value(&provider.name),
            served_first: header_value(&format!("{name}[{}]=ok", model.strategy.as_str())),
            model_header: header_value(&d.model),
            name,
            tier: d.tier.clone(),
            canary: None,
            price: d.price,
            rates: None,
            total: timeouts.total.unwrap_or(provider.timeouts.total),
            first_token: timeouts
                .first_token
                .unwrap_or(provider.timeouts.first_token),
            stream_total: timeouts
                .stream_total
                .unwrap_or(provider.timeouts.stream_total),
        })
    }

    /// USD per million tokens, when known.
    pub fn price(&self) -> Option<config::Price> {
        self.price
    }

    /// What its tokens cost, each kind apart, when known.
    pub fn rates(&self) -> Option<&Arc<ModelPrice>> {
        self.rates.as_ref()
    }

    /// Whether it has room for another request under its `max_in_flight`
    /// (a look, for picking; [`Target::try_begin`] takes the room).
    pub fn has_room(&self) -> bool {
        self.max_in_flight
            .is_none_or(|max| self.load.in_flight() < max)
    }

    /// Counts a request in flight here until the guard drops: `None` when
    /// its `max_in_flight` are in flight already.
    pub fn try_begin(&self) -> Option<InFlight> {
        match self.max_in_flight {
            Some(max) => self.load.try_begin(max),
            None => Some(self.load.begin()),
        }
    }

    /// Counts a time to first byte (or first content) for hedging.
    pub fn record_latency(&self, latency: Duration) {
        if let Some(window) = &self.latency {
            window.record(latency, std::time::Instant::now());
        }
    }

    /// Records an attempt on it that took `took`, failed with `failure` if
    /// it did (`switchyard_upstream_duration_seconds`).
    pub fn exchanged(&self, took: Duration, failure: Option<&UpstreamError>) {
        self.upstream.record(took, failure);
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
            "max_in_flight": self.max_in_flight,
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
    pub(super) fn within(&self, tokens: Tokens, max: f64) -> bool {
        self.price.is_some_and(|p| {
            (p.input * tokens.input as f64 + p.output * tokens.output as f64) / 1e6 <= max
        })
    }
}

/// A header value for a name from the config (names that cannot be one show as `-`).
fn header_value(name: &str) -> HeaderValue {
    HeaderValue::from_str(name).unwrap_or(HeaderValue::from_static("-"))
}
