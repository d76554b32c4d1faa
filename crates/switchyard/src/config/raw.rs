//! The configuration file's shape, as serde reads it. Validation and defaults
//! happen in [`super::validate`]; nothing here is used at request time.

use std::collections::BTreeMap;
use std::time::Duration;

use serde::Deserialize;

use super::units::{ByteSize, HedgeAfter, HumanDuration};

mod health;

pub use health::{HealthCheckConfig, HealthChecksConfig, OutlierConfig};
mod canary;
pub use canary::CanaryConfig;
mod admission;
pub use admission::AdmissionConfig;
mod cache;
pub use cache::{CacheBackend, CacheConfig, CacheScope, ModelCacheConfig, ModelSemanticConfig};
mod store;
mod telemetry;
mod ui;
pub use store::{
    AlertsConfig, LimitsConfig, OnError, RatesConfig, RedisConfig, StoreConfig, UsageConfig,
};
pub use telemetry::{TelemetryConfig, TracesConfig};
pub use ui::{SecureCookie, UiConfig};

/// The whole file.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ConfigFile {
    /// Listener, limits, shutdown.
    #[serde(default)]
    pub server: ServerConfig,
    /// Where keys, teams and spend are kept.
    #[serde(default)]
    pub store: StoreConfig,
    /// The usage log.
    #[serde(default)]
    pub usage: UsageConfig,
    /// Spend alerts.
    #[serde(default)]
    pub alerts: AlertsConfig,
    /// Rate limits over every caller, per model, and for keys without their own.
    #[serde(default)]
    pub limits: LimitsConfig,
    /// Limits shared by every replica.
    #[serde(default)]
    pub redis: RedisConfig,
    /// How clients authenticate.
    #[serde(default)]
    pub auth: AuthConfig,
    /// Static client keys.
    #[serde(default)]
    pub keys: Vec<KeyConfig>,
    /// Upstream providers by name.
    #[serde(default)]
    pub providers: BTreeMap<String, ProviderConfig>,
    /// Public models by name.
    #[serde(default)]
    pub models: BTreeMap<String, ModelConfig>,
    /// Canary traffic shifts, by public model.
    #[serde(default)]
    pub canary: BTreeMap<String, CanaryConfig>,
    /// How failed calls are tried again.
    #[serde(default)]
    pub retries: RetriesConfig,
    /// When a deployment gets no traffic for a while.
    #[serde(default)]
    pub circuit_breaker: CircuitBreakerConfig,
    /// Rules that pick the model or strategy from the request.
    #[serde(default)]
    pub routes: Vec<RouteConfig>,
    /// Active health probes and passive outlier ejection.
    #[serde(default)]
    pub health_checks: HealthChecksConfig,
    /// How much work the gateway takes on at once.
    #[serde(default)]
    pub admission: AdmissionConfig,
    /// The response cache; absent: off.
    pub cache: Option<CacheConfig>,
    /// The price list of models whose deployments set no `price`.
    #[serde(default)]
    pub pricing: PricingConfig,
    /// Request bodies in the logs, and traces.
    #[serde(default)]
    pub telemetry: TelemetryConfig,
    /// The dashboard.
    #[serde(default)]
    pub ui: UiConfig,
}

/// An entry of `routes:`: a request matching `when` is served by `model`
/// and/or picked by `strategy`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RouteConfig {
    /// What the request must match (every condition given).
    #[serde(default)]
    pub when: RouteMatchConfig,
    /// The public model that serves it.
    pub model: Option<String>,
    /// The strategy that picks its deployment.
    pub strategy: Option<Strategy>,
}

/// A route's `when:`.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RouteMatchConfig {
    /// The model the client asked for.
    pub model: Option<String>,
    /// One of these tasks (`x-switchyard-task`, or `metadata.task` in the body).
    #[serde(default)]
    pub task: Vec<String>,
    /// At least this many estimated prompt tokens.
    pub min_prompt_tokens: Option<u64>,
    /// At most this many estimated prompt tokens.
    pub max_prompt_tokens: Option<u64>,
    /// One of these client keys, by name.
    #[serde(default)]
    pub key: Vec<String>,
}

/// `retries:`
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RetriesConfig {
    /// Attempts per request in all, the first included, over every deployment
    /// and fallback model (default 3).
    pub attempts: Option<u32>,
    /// The first backoff step; each retry doubles it, with full jitter (default 100ms).
    pub backoff_base: Option<HumanDuration>,
    /// The longest backoff (default 5s).
    pub backoff_max: Option<HumanDuration>,
    /// The longest `retry-after` honoured; a deployment asking for more is
    /// not tried again in the request (default 30s).
    pub retry_after_cap: Option<HumanDuration>,
    /// Retry budget: retries allowed as a fraction of requests (default 0.5).
    pub budget_ratio: Option<f64>,
    /// Retries allowed per budget window whatever the traffic (default 10).
    pub budget_min: Option<u32>,
    /// The budget's sliding window (default 10s).
    pub budget_window: Option<HumanDuration>,
    /// The failure classes that are tried again.
    pub on: Option<Vec<FailureClass>>,
}

/// Why an attempt failed, as `retries.on` names it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum FailureClass {
    /// The provider could not be reached.
    Connect,
    /// A timeout ran out (connect, first byte, idle).
    Timeout,
    /// 429.
    RateLimited,
    /// 503 or 529: the provider says it is overloaded.
    Overloaded,
    /// Another 5xx, or a broken answer.
    ServerError,
    /// 401 or 403: the provider refused the gateway's key.
    UpstreamAuth,
    /// The prompt is longer than the model's context window.
    ContextLength,
    /// The provider's content policy refused the request.
    ContentPolicy,
}

impl FailureClass {
    /// The name as the config and the route header write it.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Connect => "connect",
            Self::Timeout => "timeout",
            Self::RateLimited => "rate_limited",
            Self::Overloaded => "overloaded",
            Self::ServerError => "server_error",
            Self::UpstreamAuth => "upstream_auth",
            Self::ContextLength => "context_length",
            Self::ContentPolicy => "content_policy",
        }
    }
}

/// `circuit_breaker:`
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CircuitBreakerConfig {
    /// Failures in a row that open a deployment's breaker (default 0: off).
    pub consecutive_failures: Option<u32>,
    /// The failure rate over `window` that opens it (default 0.5)…
    pub failure_rate: Option<f64>,
    /// …cleared by this many standard errors (default 2; 0: the plain share)…
    pub margin: Option<f64>,
    /// …once the window holds at least this many attempts (default 5).
    pub min_requests: Option<u32>,
    /// The failure rate's sliding window (default 10s).
    pub window: Option<HumanDuration>,
    /// How long an open breaker sends nothing before one probe (default 30s).
    pub cooldown: Option<HumanDuration>,
}

/// `server:`
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ServerConfig {
    /// Address to listen on (default `127.0.0.1:8080`).
    pub listen: Option<String>,
    /// Key for `/admin/*`; empty or absent turns the admin API off.
    pub admin_key: Option<String>,
    /// Largest accepted request body (default 10 MiB).
    pub max_body_bytes: Option<ByteSize>,
    /// After SIGTERM, how long `/ready` answers 503 before the listener closes (default 0 s).
    pub shutdown_delay: Option<HumanDuration>,
    /// How long in-flight requests may take to finish after SIGTERM (default 30 s).
    pub shutdown_grace: Option<HumanDuration>,
    /// How long a client may take to send its request body (default 30 s).
    pub body_timeout: Option<HumanDuration>,
    /// How long a new connection may take to send its first request head (default 10 s).
    pub header_read_timeout: Option<HumanDuration>,
    /// Client connections open at once at most (default: sized from the descriptor limit).
    pub max_connections: Option<u32>,
    /// How long a client connection may go without a new request (default 75 s).
    pub idle_timeout: Option<HumanDuration>,
    /// Largest single event accepted from an upstream stream (default 1 MiB).
    pub max_stream_event_bytes: Option<ByteSize>,
    /// Largest non-streamed provider answer translated between dialects (default 32 MiB).
    pub max_response_bytes: Option<ByteSize>,
    /// Gateways a request may pass before it is refused as a loop (default 5).
    pub max_hops: Option<u32>,
}

/// `auth:`
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AuthConfig {
    /// `open` (loopback only) or `keys` (default `keys`).
    pub mode: Option<AuthMode>,
    /// Virtual keys kept in memory at most (default 100000).
    pub key_cache: Option<u64>,
    /// How long a key missing from memory may take to load from the store (default 200ms).
    pub load_timeout: Option<HumanDuration>,
    /// How long a rotated key's old secret keeps working (default 1h).
    pub rotation_grace: Option<HumanDuration>,
}

/// How clients authenticate.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum AuthMode {
    /// No key needed; only allowed on a loopback listener.
    Open,
    /// Every request needs a valid key.
    Keys,
}

/// An entry of `keys:`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct KeyConfig {
    /// A name for logs and reports.
    pub name: Option<String>,
    /// The secret the client sends.
    pub key: Option<String>,
    /// This key's requests in flight at most (none: no limit of its own).
    pub max_in_flight: Option<u32>,
}

/// An entry of `providers:`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ProviderConfig {
    /// The wire dialect.
    pub kind: Option<ProviderKind>,
    /// The API root, e.g. `https://api.deepseek.com/v1`.
    pub base_url: Option<String>,
    /// The provider's API key.
    pub api_key: Option<String>,
    /// Several API keys, used in turn (instead of `api_key`).
    pub api_keys: Option<Vec<String>>,
    /// `api-version` of an `azure` provider (default `2024-10-21`).
    pub api_version: Option<String>,
    /// `anthropic-version` of an `anthropic` provider (default `2023-06-01`).
    pub anthropic_version: Option<String>,
    /// Timeouts for calls to this provider.
    #[serde(default)]
    pub timeouts: TimeoutsConfig,
    /// Active health probes of this provider's deployments.
    pub health_check: Option<HealthCheckConfig>,
    /// Lets `base_url` point at a private network without a warning, or at a
    /// link-local (cloud metadata) address at all (default false).
    #[serde(default)]
    pub allow_private_networks: bool,
    /// The pool of idle connections to this provider.
    #[serde(default)]
    pub pool: PoolConfig,
    /// Speak HTTP/2 to it: prior knowledge over `http://`, only `h2` offered
    /// over TLS (default false: HTTP/1.1).
    #[serde(default)]
    pub http2: bool,
}

/// `pool:` of a provider.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PoolConfig {
    /// Idle connections kept at most (default 1024; 0: none is kept).
    pub max_idle: Option<u32>,
    /// How long an idle connection is kept (default 90 s).
    pub idle_timeout: Option<HumanDuration>,
}

/// The dialects a provider can speak.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ProviderKind {
    /// OpenAI and every OpenAI-compatible API.
    Openai,
    /// Anthropic Messages API.
    Anthropic,
    /// Google Gemini.
    Gemini,
    /// Azure OpenAI.
    Azure,
    /// The built-in fake provider, run inside this process.
    Mock,
}

impl ProviderKind {
    /// The name as the config writes it.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Openai => "openai",
            Self::Anthropic => "anthropic",
            Self::Gemini => "gemini",
            Self::Azure => "azure",
            Self::Mock => "mock",
        }
    }
}

/// `timeouts:` of a provider.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TimeoutsConfig {
    /// TCP + TLS connect (default 5 s).
    pub connect: Option<HumanDuration>,
    /// From sending the request to the response headers (default 60 s).
    pub first_byte: Option<HumanDuration>,
    /// Longest silence between two body chunks (default 60 s).
    pub idle: Option<HumanDuration>,
    /// The whole exchange, body included (default 10 min).
    pub total: Option<HumanDuration>,
    /// From sending the request to a stream's first content (default: `first_byte`).
    pub first_token: Option<HumanDuration>,
    /// A streamed exchange, all of it (default: `total`).
    pub stream_total: Option<HumanDuration>,
}

/// A model's `timeouts:`, over its providers' own.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ModelTimeoutsConfig {
    /// The whole exchange.
    pub total: Option<HumanDuration>,
    /// From sending the request to a stream's first content.
    pub first_token: Option<HumanDuration>,
    /// A streamed exchange, all of it.
    pub stream_total: Option<HumanDuration>,
}

/// An entry of `models:`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ModelConfig {
    /// How a deployment is picked.
    pub strategy: Option<Strategy>,
    /// Where the model is served.
    #[serde(default)]
    pub deployments: Vec<DeploymentConfig>,
    /// Models tried, in order, when every deployment fails.
    #[serde(default)]
    pub fallbacks: Vec<String>,
    /// Other names clients may use for this model (`gpt-4` for `gpt-4.1`).
    #[serde(default)]
    pub aliases: Vec<String>,
    /// Prompt-cache affinity: requests sharing a long prefix go back to the
    /// deployment that served it.
    pub affinity: Option<AffinityConfig>,
    /// The completion token cap sent to providers that require one (Anthropic)
    /// when the client sets none; a deployment's own value wins (default 4096).
    pub max_output_tokens: Option<u32>,
    /// This model's own `retries.attempts`.
    #[serde(default)]
    pub retries: ModelRetriesConfig,
    /// Timeouts of this model's requests, over its providers' own.
    #[serde(default)]
    pub timeouts: ModelTimeoutsConfig,
    /// The model's context window in tokens: a request that exceeds another
    /// model's falls back only to a model with a larger one.
    pub context_window: Option<u64>,
    /// Hedging: a second deployment is asked when the first is slow.
    pub hedge: Option<HedgeConfig>,
    /// Shadow traffic: a share of requests is also sent to another model.
    pub shadow: Option<ShadowConfig>,
    /// This model's requests in flight at most (none: no limit of its own).
    pub max_in_flight: Option<u32>,
    /// How the response cache treats this model's answers.
    #[serde(default)]
    pub cache: ModelCacheConfig,
}

/// A model's `hedge:`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HedgeConfig {
    /// How long the first deployment may take to its first byte (a stream:
    /// its first content) before a second one is asked: a duration, or a
    /// percentile of its recent times (`p95`).
    pub after: HedgeAfter,
}

/// A model's `shadow:`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ShadowConfig {
    /// The model that also gets the requests (its answers are measured, then dropped).
    pub model: String,
    /// The share of requests copied, in percent (default 100).
    pub percent: Option<f64>,
    /// Copies in flight at most; past it a request is not copied (default 16).
    pub max_in_flight: Option<u32>,
}

/// A model's `affinity:`.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AffinityConfig {
    /// The prefix of the body that must match (default 1024 bytes).
    pub prefix_bytes: Option<ByteSize>,
    /// How long a prefix is remembered (default 5m, as long as providers keep
    /// prompt caches).
    pub ttl: Option<HumanDuration>,
}

/// A model's `retries:`.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ModelRetriesConfig {
    /// Attempts per request for this model (default: `retries.attempts`).
    pub attempts: Option<u32>,
}

/// Deployment selection strategies.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Strategy {
    /// Random, in proportion to weights.
    Weighted,
    /// In turn.
    RoundRobin,
    /// Fewest requests in flight.
    LeastBusy,
    /// Fastest to first token.
    Latency,
    /// Cheapest first.
    Cost,
}

impl Strategy {
    /// The name as the config writes it.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Weighted => "weighted",
            Self::RoundRobin => "round_robin",
            Self::LeastBusy => "least_busy",
            Self::Latency => "latency",
            Self::Cost => "cost",
        }
    }
}

/// An entry of a model's `deployments:`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DeploymentConfig {
    /// The provider's name in `providers:`.
    pub provider: Option<String>,
    /// The model name the provider knows.
    pub model: Option<String>,
    /// Share of traffic (default 1).
    pub weight: Option<u32>,
    /// USD per million tokens.
    pub price: Option<PriceConfig>,
    /// The completion token cap sent when the client sets none (see the model's).
    pub max_output_tokens: Option<u32>,
    /// A name for a set of deployments (a canary shifts traffic to one tier).
    pub tier: Option<String>,
    /// Requests in flight at this deployment at most (none: no limit of its own).
    pub max_in_flight: Option<u32>,
}

/// USD per million tokens.
#[derive(Debug, Clone, Copy, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PriceConfig {
    /// Per million prompt tokens (those neither read from nor written to a cache).
    pub input: f64,
    /// Per million completion tokens (those that are not reasoning).
    pub output: f64,
    /// Per million prompt tokens read from the provider's cache (default: `input`).
    pub cached_input: Option<f64>,
    /// Per million prompt tokens written to the provider's cache (default: `input`).
    pub cache_write: Option<f64>,
    /// Per million reasoning tokens (default: `output`).
    pub reasoning: Option<f64>,
}

/// `pricing:`
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PricingConfig {
    /// A price list file in place of the built-in list.
    pub file: Option<String>,
}

impl HumanDuration {
    /// The duration, or `default` when unset.
    pub fn or(value: Option<Self>, default: Duration) -> Duration {
        value.map_or(default, |d| d.0)
    }
}
