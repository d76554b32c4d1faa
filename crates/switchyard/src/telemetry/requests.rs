//! The per-request metrics: a consumer of every ended request
//! ([`RequestMetrics`]) and the handles it counts with ([`ModelMeter`]).
//!
//! The handles are registered when the routes are built: one [`ModelMeter`]
//! per public model, holding its histograms, its token counters and, per
//! provider that may serve it (its deployments' and its fallbacks'), the
//! counter of its answered requests and of their cost. The pipeline puts the
//! routed model's meter on the request's record, so that counting an
//! answered request is a handful of atomic additions: no label is formatted,
//! no registry looked up, nothing allocated, no lock taken. What went wrong
//! (any other status, an error type) is counted through the registry, with
//! its labels formatted then: errors may be slower.
//!
//! Label values are bounded: the model is a configured one (`other` for a
//! name that is not, `none` when the request ended before its model was
//! read), the provider a configured one (`cache` for an answer from the
//! response cache, `none` when no provider was tried), the status as sent,
//! the error type one of [`ErrorType::ALL`] (`none` for an answer).

use std::sync::Arc;
use std::time::Duration;

use metrics::Counter;
use switchyard_providers::openai::Usage;

use crate::config::FailureClass;
use crate::upstream::UpstreamError;

use super::ErrorType;
use super::metrics::{DurationHistogram, Metrics, MicroCounter};
use crate::cache::Status;
use crate::request::{Consumer, RequestRecord};

const REQUESTS: &str = "switchyard_requests_total";
const DURATION: &str = "switchyard_request_duration_seconds";
const TTFT: &str = "switchyard_time_to_first_token_seconds";
const TPOT: &str = "switchyard_time_per_output_token_seconds";
const TOKENS: &str = "switchyard_tokens_total";
const COST: &str = "switchyard_cost_usd_total";
const OVERHEAD: &str = "switchyard_overhead_seconds";
const UPSTREAM: &str = "switchyard_upstream_duration_seconds";

/// Buckets of whole requests and of upstream exchanges, in seconds.
const DURATION_BUCKETS: [f64; 16] = [
    0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 20.0, 30.0, 60.0, 120.0, 300.0,
];
/// Buckets of times to first token, in seconds.
const TTFT_BUCKETS: [f64; 16] = [
    0.01, 0.025, 0.05, 0.1, 0.2, 0.3, 0.5, 0.75, 1.0, 1.5, 2.0, 3.0, 5.0, 10.0, 20.0, 60.0,
];
/// Buckets of times per output token, in seconds.
const TPOT_BUCKETS: [f64; 14] = [
    0.001, 0.0025, 0.005, 0.0075, 0.01, 0.015, 0.02, 0.03, 0.05, 0.075, 0.1, 0.2, 0.5, 1.0,
];
/// Buckets of the gateway's own time, in seconds: from 10 µs.
const OVERHEAD_BUCKETS: [f64; 16] = [
    0.00001, 0.000025, 0.00005, 0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05,
    0.1, 0.25, 0.5, 1.0,
];

/// `direction` of `switchyard_tokens_total`, in [`ModelMeter::tokens`]'
/// order, with OpenTelemetry GenAI's meaning: `input` and `output` are all
/// the prompt's and the answer's tokens; `cached_input` and `cache_write`
/// (of the prompt) and `reasoning` (of the answer) are parts of them,
/// counted apart too.
const DIRECTIONS: [&str; 5] = [
    "input",
    "output",
    "cached_input",
    "cache_write",
    "reasoning",
];

/// The `model` of a request for a model that is not configured.
const OTHER_MODEL: &str = "other";
/// `model` and `provider` when the request ended before either was known.
const NONE: &str = "none";
/// The `provider` of an answer from the response cache.
const CACHE: &str = "cache";

/// The per-request metric handles of one public model.
pub struct ModelMeter {
    /// The `model` label.
    name: Arc<str>,
    duration: DurationHistogram,
    ttft: DurationHistogram,
    tpot: DurationHistogram,
    /// `switchyard_tokens_total` by direction, in [`DIRECTIONS`]' order.
    tokens: [Counter; 5],
    /// Answers from the response cache.
    cached: Counter,
    /// Per provider that may serve the model.
    providers: Box<[ProviderMeter]>,
}

/// The handles of one model's requests served by one provider.
struct ProviderMeter {
    /// The `provider` label (the name its client has, shared with the routes).
    name: Arc<str>,
    /// `switchyard_requests_total{status="200",error_type="none"}`.
    answered: Counter,
    /// `switchyard_cost_usd_total`.
    cost: MicroCounter,
}

impl std::fmt::Debug for ModelMeter {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ModelMeter")
            .field("model", &self.name)
            .finish_non_exhaustive()
    }
}

impl ModelMeter {
    /// The handles of `model`, served by `providers`, registered in `metrics`.
    pub fn new(metrics: &Metrics, model: &str, providers: &[Arc<str>]) -> Self {
        let model_label = [("model", model)];
        let histogram = |name, bounds| metrics.duration_histogram(name, &model_label, bounds);
        Self {
            name: Arc::from(model),
            duration: histogram(DURATION, &DURATION_BUCKETS),
            ttft: histogram(TTFT, &TTFT_BUCKETS),
            tpot: histogram(TPOT, &TPOT_BUCKETS),
            tokens: DIRECTIONS.map(|direction| {
                metrics.counter(TOKENS, &[("model", model), ("direction", direction)])
            }),
            cached: answered(metrics, model, CACHE),
            providers: providers
                .iter()
                .map(|provider| ProviderMeter::new(metrics, model, provider.clone()))
                .collect(),
        }
    }

    /// The handles of `provider`, when it may serve the model.
    fn provider(&self, provider: &Arc<str>) -> Option<&ProviderMeter> {
        self.providers
            .iter()
            .find(|p| Arc::ptr_eq(&p.name, provider) || p.name == *provider)
    }

    /// Counts the tokens of `usage`.
    fn count_tokens(&self, usage: &Usage) {
        let counts = [
            usage.prompt_tokens,
            usage.completion_tokens,
            usage.cached_tokens,
            usage.cache_write_tokens,
            usage.reasoning_tokens,
        ];
        for (counter, count) in self.tokens.iter().zip(counts) {
            if count > 0 {
                counter.increment(count);
            }
        }
    }
}

impl ProviderMeter {
    fn new(metrics: &Metrics, model: &str, provider: Arc<str>) -> Self {
        Self {
            answered: answered(metrics, model, &provider),
            cost: metrics.micro_counter(COST, &[("model", model), ("provider", &provider)]),
            name: provider,
        }
    }
}

/// `switchyard_requests_total{status="200",error_type="none"}` of `model`
/// answered by `provider`.
fn answered(metrics: &Metrics, model: &str, provider: &str) -> Counter {
    let labels = [
        ("model", model),
        ("provider", provider),
        ("status", "200"),
        ("error_type", NONE),
    ];
    metrics.counter(REQUESTS, &labels)
}

/// The histograms of one provider's attempts, by outcome: `ok`, `error`
/// (the provider failed: 5xx, overloaded, 429, timeout, unreachable, its
/// answer broken, the gateway's credentials refused), `refused` (it refused
/// the client's own request: 4xx, a context window or content filter, an
/// answer larger than the gateway reads whole).
#[derive(Debug, Clone)]
pub struct UpstreamMeter {
    ok: DurationHistogram,
    error: DurationHistogram,
    refused: DurationHistogram,
}

impl UpstreamMeter {
    /// The histograms of `provider`, registered in `metrics`.
    pub fn new(metrics: &Metrics, provider: &str) -> Self {
        let histogram = |outcome| {
            let labels = [("provider", provider), ("outcome", outcome)];
            metrics.duration_histogram(UPSTREAM, &labels, &DURATION_BUCKETS)
        };
        Self {
            ok: histogram("ok"),
            error: histogram("error"),
            refused: histogram("refused"),
        }
    }

    /// Records an attempt that took `took`, and failed with `failure` if it
    /// did; one that never reached the provider (this process out of
    /// resources, every key resting) is not an exchange.
    pub fn record(&self, took: Duration, failure: Option<&UpstreamError>) {
        let histogram = match failure {
            None => &self.ok,
            Some(failure) if failure.is_local() => return,
            Some(failure) => match failure.class() {
                None | Some(FailureClass::ContextLength | FailureClass::ContentPolicy) => {
                    &self.refused
                }
                Some(
                    FailureClass::Connect
                    | FailureClass::Timeout
                    | FailureClass::ServerError
                    | FailureClass::Overloaded
                    | FailureClass::RateLimited
                    | FailureClass::UpstreamAuth,
                ) => &self.error,
            },
        };
        histogram.record(took);
    }
}

/// The consumer that counts every proxied request in the per-request metrics.
pub struct RequestMetrics {
    /// For what is counted with labels formatted on the spot: errors.
    metrics: Metrics,
    /// `switchyard_overhead_seconds`.
    overhead: DurationHistogram,
    /// `switchyard_request_duration_seconds` of requests for a model that
    /// is not configured.
    other: DurationHistogram,
    /// `switchyard_request_duration_seconds` of requests that ended before
    /// their model was read.
    none: DurationHistogram,
}

impl std::fmt::Debug for RequestMetrics {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RequestMetrics").finish_non_exhaustive()
    }
}

impl RequestMetrics {
    /// The consumer, counting in `metrics` (where the routes register their
    /// models' meters).
    pub fn new(metrics: &Metrics) -> Self {
        describe(metrics);
        let duration =
            |model| metrics.duration_histogram(DURATION, &[("model", model)], &DURATION_BUCKETS);
        Self {
            overhead: metrics.duration_histogram(OVERHEAD, &[], &OVERHEAD_BUCKETS),
            other: duration(OTHER_MODEL),
            none: duration(NONE),
            metrics: metrics.clone(),
        }
    }

    /// Counts a request of `model` that was not answered whole, or with
    /// another status than 200, or by a provider its model's meter does not
    /// know: the labels formatted, the counter looked up.
    #[cold]
    fn count_other(&self, model: &str, record: &RequestRecord, error: Option<ErrorType>) {
        let status = record.status.to_string();
        let labels = [
            ("model", model),
            ("provider", provider_label(record)),
            ("status", &status),
            ("error_type", error.map_or(NONE, ErrorType::as_str)),
        ];
        self.metrics.counter(REQUESTS, &labels).increment(1);
    }

    /// Counts the cost of a request served by a provider its model's meter
    /// does not know.
    #[cold]
    fn count_cost(&self, model: &str, record: &RequestRecord, micros: u64) {
        let labels = [("model", model), ("provider", provider_label(record))];
        self.metrics.micro_counter(COST, &labels).add(micros);
    }
}

impl Consumer for RequestMetrics {
    fn consume(&self, record: &RequestRecord) {
        if !record.proxied() {
            return;
        }
        let error = ErrorType::of(record);
        let Some(meter) = record.meter.as_deref() else {
            // Never routed: no provider was asked, nothing was spent.
            let (model, duration) = match record.model {
                Some(_) => (OTHER_MODEL, &self.other),
                None => (NONE, &self.none),
            };
            self.count_other(model, record, error);
            duration.record(record.latency);
            return;
        };
        let cached = is_cache_hit(record);
        let provider = match &record.served_by {
            Some(served) if !cached => meter.provider(&served.provider),
            _ => None,
        };
        let answered = match provider {
            _ if cached => Some(&meter.cached),
            Some(provider) => Some(&provider.answered),
            None => None,
        };
        match answered {
            Some(answered) if error.is_none() && record.status == 200 => answered.increment(1),
            _ => self.count_other(&meter.name, record, error),
        }
        meter.duration.record(record.latency);
        if cached {
            // No provider's tokens, cost or times.
            return;
        }
        if let Some(usage) = &record.usage {
            meter.count_tokens(usage);
        }
        if let Some(ttft) = record.ttft.filter(|_| record.served_by.is_some()) {
            if record.stream {
                meter.ttft.record(ttft);
            }
            if error.is_none() {
                self.overhead.record(ttft.saturating_sub(record.upstream));
                if let Some(per_token) = time_per_output_token(record, ttft) {
                    meter.tpot.record(per_token);
                }
            }
        }
        let cost = u64::try_from(record.cost_micros).unwrap_or(0);
        if cost > 0 {
            match provider {
                Some(provider) => provider.cost.add(cost),
                None => self.count_cost(&meter.name, record, cost),
            }
        }
    }
}

/// Whether the response cache answered the request.
fn is_cache_hit(record: &RequestRecord) -> bool {
    matches!(record.cache, Some(Status::Hit | Status::Semantic))
}

/// The `provider` label of `record`.
fn provider_label(record: &RequestRecord) -> &str {
    match &record.served_by {
        _ if is_cache_hit(record) => CACHE,
        Some(served) => &served.provider,
        None => NONE,
    }
}

/// After the first token of a stream answered whole, the time per output
/// token: what followed it, over the output tokens the provider reported.
fn time_per_output_token(record: &RequestRecord, ttft: Duration) -> Option<Duration> {
    let tokens = record.usage.as_ref()?.completion_tokens;
    if !record.stream || tokens == 0 {
        return None;
    }
    let after = record.latency.saturating_sub(ttft);
    let nanos = u64::try_from(after.as_nanos()).unwrap_or(u64::MAX);
    Some(Duration::from_nanos(nanos / tokens))
}

/// The `# HELP` of the per-request metrics.
fn describe(metrics: &Metrics) {
    let seconds = Some(metrics::Unit::Seconds);
    metrics.describe(
        REQUESTS,
        None,
        "Proxied requests, by the model routed to, the provider that answered (or was tried last), status and error type.",
    );
    metrics.describe(
        DURATION,
        seconds,
        "Proxied requests: arrival to the end of the answer.",
    );
    metrics.describe(
        TTFT,
        seconds,
        "Streamed answers from a provider: arrival to the first content sent to the client.",
    );
    metrics.describe(
        TPOT,
        seconds,
        "Streamed answers from a provider: the time after the first token over the output tokens.",
    );
    metrics.describe(
        TOKENS,
        None,
        "Tokens the providers reported, by direction: input and output (each whole), cached_input and cache_write (parts of input), reasoning (part of output).",
    );
    metrics.describe(
        COST,
        None,
        "What the proxied requests cost, in USD, at the configured prices.",
    );
    metrics.describe(
        OVERHEAD,
        seconds,
        "The gateway's own time in an answered request: to its first content sent, less the time spent on providers.",
    );
    metrics.describe(
        UPSTREAM,
        seconds,
        "Upstream attempts: request sent to the answer beginning (its headers; a stream's first content), or to the failure.",
    );
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::panic)]
mod tests;
