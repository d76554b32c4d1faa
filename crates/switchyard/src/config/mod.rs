//! Configuration: the YAML file (or the built-in default) → a validated runtime
//! [`Config`].
//!
//! Reading happens in three steps: the text becomes a [`tree::Node`] tree that
//! remembers places (`${VAR}` resolved on the way); the tree is deserialized into
//! the file's shape ([`raw::ConfigFile`]), removing each faulty node and trying
//! again so that every problem is found in one go; the shape is then validated
//! into the runtime types below. Secrets stay in [`SecretString`]s.

mod health;
mod problems;
mod raw;
pub(crate) mod read;
pub(crate) mod tree;
mod units;
mod validate;

use std::collections::{BTreeMap, HashMap};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use secrecy::SecretString;

pub use health::{HealthChecks, Outlier, Probe, ProbeKind};
pub use problems::{Problem, Problems};
pub use raw::{
    AuthMode, CacheBackend, CacheScope, FailureClass, OnError, PriceConfig as Price, ProviderKind,
    SecureCookie, Strategy,
};
pub use units::HedgeAfter;

/// The built-in configuration (see `default.yaml`).
const BUILT_IN: &str = include_str!("default.yaml");

/// The validated configuration the gateway runs on.
#[derive(Debug)]
pub struct Config {
    /// Listener and server limits.
    pub server: Server,
    /// How clients authenticate.
    pub auth: AuthMode,
    /// How virtual keys are cached and rotated (`auth:`).
    pub virtual_keys: VirtualKeys,
    /// Static client keys.
    pub keys: Vec<ClientKey>,
    /// Where keys, teams and spend are kept.
    pub store: Store,
    /// The usage log; `None` when turned off.
    pub usage: Option<Usage>,
    /// Spend alerts; `None` without a webhook.
    pub alerts: Option<Alerts>,
    /// Request bodies in the logs, and traces.
    pub telemetry: Telemetry,
    /// The dashboard.
    pub ui: Ui,
    /// Rate limits over every caller, per model, and for keys without their own.
    pub limits: RateLimits,
    /// Redis, when limits are shared across replicas.
    pub redis: Option<Redis>,
    /// Providers by name.
    pub providers: BTreeMap<String, Provider>,
    /// Public models by name.
    pub models: BTreeMap<String, Model>,
    /// Canary traffic shifts, by public model.
    pub canary: BTreeMap<String, Canary>,
    /// How failed calls are tried again.
    pub retries: Retries,
    /// When a deployment gets no traffic for a while.
    pub circuit_breaker: CircuitBreaker,
    /// Rules that pick the model or strategy from the request, in order.
    pub routes: Vec<Route>,
    /// Active health probes and passive outlier ejection.
    pub health_checks: HealthChecks,
    /// How much work the gateway takes on at once.
    pub admission: Admission,
    /// The response cache, when on.
    pub cache: Option<Cache>,
    /// The prices of deployments that set no `price` of their own (see
    /// [`crate::pricing::PriceList::for_deployment`]): `pricing.file`, else
    /// the built-in list.
    pub prices: crate::pricing::PriceList,
}

/// `cache:` with defaults applied.
#[derive(Debug, Clone)]
pub struct Cache {
    /// Where answers are kept.
    pub backend: CacheBackend,
    /// Who shares an answer.
    pub scope: CacheScope,
    /// How long an answer is kept, unless its model or request says.
    pub ttl: Duration,
    /// In memory, how long an answer not asked for is kept.
    pub idle_ttl: Option<Duration>,
    /// The longest TTL a request may ask for.
    pub max_ttl: Duration,
    /// The memory tier's size in bytes.
    pub max_bytes: u64,
    /// The largest answer kept, in bytes.
    pub max_entry_bytes: usize,
    /// Whether identical requests at once make one upstream call.
    pub coalesce: bool,
    /// How long such a request waits for the first one's answer.
    pub coalesce_wait: Duration,
    /// Answers waiting to be written to Redis at most.
    pub write_queue: usize,
    /// Vectors the semantic cache keeps at most.
    pub semantic_entries: usize,
    /// How long the embedding of a prompt may take.
    pub semantic_timeout: Duration,
}

/// A model's `cache:` with defaults applied.
#[derive(Debug, Clone, Default)]
pub struct ModelCache {
    /// Whether its answers are cached (when the cache is on).
    pub enabled: bool,
    /// How long its answers are kept, when not `cache.ttl`.
    pub ttl: Option<Duration>,
    /// Only requests with temperature 0 or a seed are cached.
    pub only_deterministic: bool,
    /// Answers that call tools are kept too.
    pub tool_calls: bool,
    /// Answers cut by their token cap are kept too.
    pub length: bool,
    /// The semantic cache, when on.
    pub semantic: Option<Semantic>,
}

/// A model's semantic cache.
#[derive(Debug, Clone)]
pub struct Semantic {
    /// The public model that embeds the last user turn.
    pub embedding_model: String,
    /// The least cosine similarity of a match.
    pub threshold: f32,
    /// The `dimensions` asked of the embedding model.
    pub dimensions: Option<u32>,
}

/// `admission:` with defaults applied.
#[derive(Debug, Clone, Copy)]
pub struct Admission {
    /// Proxied requests in flight at most; `None`: sized from the descriptor
    /// limit at start-up.
    pub max_in_flight: Option<u32>,
    /// Requests waiting for room at most.
    pub max_queue: u32,
    /// How long a request may wait for room.
    pub queue_timeout: Duration,
}

/// `store:` with defaults applied.
#[derive(Debug, Clone)]
pub struct Store {
    /// `sqlite://…` or `postgres://…`.
    pub url: String,
    /// How it connects.
    pub options: switchyard_store::StoreOptions,
    /// How often the change feed is read.
    pub poll_interval: Duration,
    /// How often settled spend is written.
    pub flush_interval: Duration,
    /// Settled costs waiting for the writer at most.
    pub spend_queue: usize,
}

/// `usage:` with defaults applied.
#[derive(Debug, Clone)]
pub struct Usage {
    /// How often records are written.
    pub flush_interval: Duration,
    /// Records written in one transaction at most.
    pub batch_size: usize,
    /// Records waiting for the writer at most.
    pub queue: usize,
    /// Records kept in memory at most while the store cannot take them.
    pub buffer: usize,
    /// Where records wait past the buffer, and at shutdown, while the store is down.
    pub spill_file: std::path::PathBuf,
    /// How long records are kept; `None`: forever.
    pub retention: Option<Duration>,
    /// How long the hourly rollups are kept; `None`: forever.
    pub rollup_retention: Option<Duration>,
}

/// `alerts:` with defaults applied.
#[derive(Debug, Clone)]
pub struct Alerts {
    /// Where alerts are posted.
    pub webhook_url: String,
    /// Percentages of a budget that raise an alert, ascending.
    pub thresholds: Vec<u8>,
    /// How long one post may take.
    pub timeout: Duration,
    /// How many times a failed post is tried again.
    pub retries: u32,
}

/// `telemetry:` with defaults applied.
#[derive(Debug, Clone)]
pub struct Telemetry {
    /// Whether prompts and answers are logged.
    pub log_bodies: bool,
    /// Bytes of each body logged (or put in a span) at most.
    pub bodies_max: usize,
    /// Bytes of the last requests' bodies kept for the dashboard (with `log_bodies`).
    pub recent_bodies: usize,
    /// Where spans are exported; `None`: no traces.
    pub traces: Option<Traces>,
}

impl Telemetry {
    /// Bytes of each body a request keeps, when the logs or the spans show them.
    pub fn kept_bodies(&self) -> Option<usize> {
        let content = self.traces.as_ref().is_some_and(|t| t.content);
        (self.log_bodies || content).then_some(self.bodies_max)
    }
}

/// `ui:` with defaults applied.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Ui {
    /// Whether the dashboard is served.
    pub enabled: bool,
    /// Where: `/ui`, with no `/` at the end.
    pub path: String,
    /// How long a sign-in lasts.
    pub session_ttl: Duration,
    /// Whether a virtual key may sign in (read-only, its own team).
    pub key_sign_in: bool,
    /// Sign-ins tried per minute from one client address at most.
    pub sign_in_attempts: u32,
    /// When the session cookie is marked `Secure`.
    pub secure_cookie: SecureCookie,
}

/// `telemetry.traces:` with defaults applied.
#[derive(Debug, Clone)]
pub struct Traces {
    /// The collector's OTLP/HTTP traces URL.
    pub endpoint: String,
    /// Headers sent with every export (they may hold a secret: never logged).
    pub headers: Vec<(String, SecretString)>,
    /// `service.name` of the spans.
    pub service_name: String,
    /// Whether the request span carries the prompt and the answer (redacted).
    pub content: bool,
    /// The share of requests traced when the client sent no sampled `traceparent`.
    pub sample_ratio: f64,
    /// Requests waiting to be exported at most.
    pub queue: usize,
    /// Requests' spans sent in one export at most.
    pub batch_size: usize,
    /// How often spans are exported.
    pub flush_interval: Duration,
    /// How long one export may take.
    pub timeout: Duration,
}

/// `redis:` with defaults applied.
#[derive(Debug, Clone)]
pub struct Redis {
    /// `redis://…`.
    pub url: String,
    /// How long a request waits on it at most.
    pub timeout: Duration,
    /// What limited requests get while it cannot answer.
    pub on_error: OnError,
    /// The hash tag every key starts with.
    pub prefix: String,
}

/// `limits:` with defaults applied (absent limits are `None`).
#[derive(Debug, Clone, Default)]
pub struct RateLimits {
    /// Over every request.
    pub global: crate::limits::Rates,
    /// For virtual keys without their own.
    pub key_defaults: crate::limits::Rates,
    /// Per public model, over every caller.
    pub models: BTreeMap<String, crate::limits::Rates>,
}

/// The virtual keys' settings of `auth:`, with defaults applied.
#[derive(Debug, Clone, Copy)]
pub struct VirtualKeys {
    /// Keys kept in memory at most.
    pub cache: u64,
    /// How long a key missing from memory may take to load.
    pub load_timeout: Duration,
    /// How long a rotated key's old secret keeps working, unless the rotation says.
    pub rotation_grace: Duration,
}

/// A rule of `routes:`.
#[derive(Debug, Clone)]
pub struct Route {
    /// The model the client asked for, when the rule is for one.
    pub for_model: Option<String>,
    /// Tasks of which the request must name one (empty: any).
    pub tasks: Vec<String>,
    /// Bounds of the estimated prompt tokens.
    pub prompt_tokens: std::ops::RangeInclusive<u64>,
    /// Client key names of which the request must use one (empty: any).
    pub keys: Vec<String>,
    /// The model that serves a matching request.
    pub model: Option<String>,
    /// The strategy for a matching request.
    pub strategy: Option<Strategy>,
}

/// `retries:` with defaults applied.
#[derive(Debug, Clone)]
pub struct Retries {
    /// Attempts per request in all (a model may set its own).
    pub attempts: u32,
    /// The first backoff step.
    pub backoff_base: Duration,
    /// The longest backoff.
    pub backoff_max: Duration,
    /// The longest `retry-after` honoured.
    pub retry_after_cap: Duration,
    /// Retries allowed as a fraction of requests.
    pub budget_ratio: f64,
    /// Retries allowed per window whatever the traffic.
    pub budget_min: u32,
    /// The budget's window.
    pub budget_window: Duration,
    /// The failure classes tried again.
    pub on: Vec<FailureClass>,
}

/// `circuit_breaker:` with defaults applied.
#[derive(Debug, Clone, Copy)]
pub struct CircuitBreaker {
    /// Failures in a row that open a breaker.
    pub consecutive_failures: u32,
    /// The failure rate over `window` that opens it.
    pub failure_rate: f64,
    /// Standard errors by which the window's failure share must clear
    /// `failure_rate` (0: the plain share).
    pub margin: f64,
    /// Attempts the window must hold for the rate to count.
    pub min_requests: u32,
    /// The failure rate's window.
    pub window: Duration,
    /// How long an open breaker sends nothing.
    pub cooldown: Duration,
}

/// `server:` with defaults applied.
#[derive(Debug)]
pub struct Server {
    /// Where to listen.
    pub listen: SocketAddr,
    /// Admin API key, when the admin API is on.
    pub admin_key: Option<SecretString>,
    /// Largest accepted request body.
    pub max_body_bytes: usize,
    /// How long a client may take to send its request body.
    pub body_timeout: Duration,
    /// How long a new connection may take to send its first request head.
    pub header_read_timeout: Duration,
    /// Client connections open at once at most; `None`: sized from the
    /// descriptor limit at start-up.
    pub max_connections: Option<u32>,
    /// How long a client connection may go without a new request (an idle
    /// keep-alive connection, or a client too slow to send its headers).
    pub idle_timeout: Duration,
    /// After SIGTERM, how long `/ready` answers 503 while still serving.
    pub shutdown_delay: Duration,
    /// Grace period for in-flight requests after SIGTERM.
    pub shutdown_grace: Duration,
    /// Largest single event accepted from an upstream stream.
    pub max_stream_event_bytes: usize,
    /// Largest non-streamed provider answer translated between dialects (one
    /// passed through is streamed, never held whole).
    pub max_response_bytes: usize,
    /// Gateways a request may pass (`x-switchyard-hops`) before it is refused
    /// as a loop.
    pub max_hops: u32,
}

/// A client key from `keys:`.
#[derive(Debug)]
pub struct ClientKey {
    /// Its name, for logs.
    pub name: String,
    /// The secret.
    pub key: SecretString,
    /// Its requests in flight at most, when limited.
    pub max_in_flight: Option<u32>,
}

/// A provider with defaults applied.
#[derive(Debug)]
pub struct Provider {
    /// Its name in `providers:`.
    pub name: String,
    /// The dialect it speaks.
    pub kind: ProviderKind,
    /// API root without a trailing slash (empty for `mock`, which gets one at start-up).
    pub base_url: String,
    /// The provider's keys (none, one, or several used in turn).
    pub api_keys: Vec<SecretString>,
    /// `api-version` (Azure) or `anthropic-version` (Anthropic); empty for the others.
    pub api_version: String,
    /// Timeouts.
    pub timeouts: Timeouts,
    /// Its pool of idle connections.
    pub pool: Pool,
    /// HTTP/2 (one multiplexed connection) rather than HTTP/1.1.
    pub http2: bool,
}

/// The pool of idle connections to one provider.
#[derive(Debug, Clone, Copy)]
pub struct Pool {
    /// Idle connections kept at most.
    pub max_idle: usize,
    /// How long an idle connection is kept.
    pub idle_timeout: Duration,
}

impl Default for Pool {
    fn default() -> Self {
        Self {
            max_idle: 1024,
            idle_timeout: Duration::from_secs(90),
        }
    }
}

/// Timeouts for calls to one provider.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Timeouts {
    /// TCP + TLS connect.
    pub connect: Duration,
    /// Request sent → response headers.
    pub first_byte: Duration,
    /// Longest silence between body chunks.
    pub idle: Duration,
    /// The whole exchange.
    pub total: Duration,
    /// Request sent → a stream's first content.
    pub first_token: Duration,
    /// A streamed exchange, all of it.
    pub stream_total: Duration,
}

/// A model's own timeouts, each over its providers' when set.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ModelTimeouts {
    /// The whole exchange.
    pub total: Option<Duration>,
    /// Request sent → a stream's first content.
    pub first_token: Option<Duration>,
    /// A streamed exchange, all of it.
    pub stream_total: Option<Duration>,
}

/// A public model.
#[derive(Debug)]
pub struct Model {
    /// Its public name.
    pub name: String,
    /// How a deployment is picked.
    pub strategy: Strategy,
    /// Where it is served.
    pub deployments: Vec<Deployment>,
    /// Models to try when every deployment fails.
    pub fallbacks: Vec<String>,
    /// Other names clients may use for it.
    pub aliases: Vec<String>,
    /// Prompt-cache affinity, when asked for.
    pub affinity: Option<Affinity>,
    /// Attempts per request for this model.
    pub attempts: u32,
    /// Its own timeouts.
    pub timeouts: ModelTimeouts,
    /// Its context window in tokens, when known.
    pub context_window: Option<u64>,
    /// When a second deployment is asked, when hedging is on.
    pub hedge_after: Option<HedgeAfter>,
    /// Shadow traffic, when on.
    pub shadow: Option<Shadow>,
    /// Its requests in flight at most, when limited.
    pub max_in_flight: Option<u32>,
    /// How the response cache treats its answers.
    pub cache: ModelCache,
}

/// A model's shadow traffic.
#[derive(Debug, Clone)]
pub struct Shadow {
    /// The model that also gets the requests.
    pub model: String,
    /// The share of requests copied, from 0 to 1.
    pub fraction: f64,
    /// Copies in flight at most.
    pub max_in_flight: u32,
}

/// A model's prompt-cache affinity.
#[derive(Debug, Clone, Copy)]
pub struct Affinity {
    /// The body prefix that must match.
    pub prefix_bytes: usize,
    /// How long a prefix is remembered.
    pub ttl: Duration,
}

/// One place a model is served.
#[derive(Debug)]
pub struct Deployment {
    /// Provider name.
    pub provider: String,
    /// The model name the provider knows.
    pub model: String,
    /// Share of traffic.
    pub weight: u32,
    /// Price per million tokens, when known.
    pub price: Option<Price>,
    /// The completion token cap for providers that require one, when the client sets none.
    pub max_output_tokens: u32,
    /// Its tier, if it has one.
    pub tier: Option<String>,
    /// Requests in flight at it at most, when limited.
    pub max_in_flight: Option<u32>,
}

/// A model's `canary:`: a traffic shift to its deployments of one tier.
#[derive(Debug, Clone)]
pub struct Canary {
    /// The tier of the new set; the model's other deployments are the old set.
    pub tier: String,
    /// Percent of the model's requests sent to the new set, stage by stage (the last is 100).
    pub stages: Vec<u8>,
    /// Time at each stage before the next.
    pub dwell: Duration,
    /// New-set attempts a stage needs before it is judged.
    pub min_requests: u32,
    /// Failures / attempts of the new set above which it is rolled back.
    pub max_error_rate: f64,
    /// p99 time to first content of the new set above which it is rolled back
    /// (none: latency is not judged).
    pub max_p99: Option<Duration>,
}

/// Where a configuration comes from.
#[derive(Debug, Clone)]
pub enum Source {
    /// A YAML file.
    File(PathBuf),
    /// The built-in default.
    BuiltIn,
}

impl Source {
    /// `--config FILE` if given, else `./switchyard.yaml` if it exists, else the built-in default.
    pub fn resolve(explicit: Option<PathBuf>) -> Self {
        match explicit {
            Some(path) => Self::File(path),
            None if Path::new("switchyard.yaml").exists() => {
                Self::File(PathBuf::from("switchyard.yaml"))
            }
            None => Self::BuiltIn,
        }
    }

    /// Where it is read from, for messages: the path, or `<built-in>`.
    pub fn name(&self) -> String {
        match self {
            Self::File(path) => path.display().to_string(),
            Self::BuiltIn => "<built-in>".to_owned(),
        }
    }
}

/// The outcome of reading a configuration: the config when it is valid, and the
/// problems (errors make `config` `None`; warnings leave it usable).
#[derive(Debug)]
pub struct Checked {
    /// The runtime configuration, when there was no error.
    pub config: Option<Config>,
    /// Errors, when `config` is `None`; otherwise warnings.
    pub problems: Problems,
}

/// Reads and validates a configuration with the process environment for `${VAR}`.
pub fn load(source: &Source) -> Checked {
    match source.read() {
        Ok(text) => parse(source, &text),
        Err(problems) => Checked {
            config: None,
            problems,
        },
    }
}

impl Source {
    /// The configuration's text, or why it cannot be read.
    pub fn read(&self) -> Result<String, Problems> {
        match self {
            Self::BuiltIn => Ok(BUILT_IN.to_owned()),
            Self::File(path) => std::fs::read_to_string(path).map_err(|e| Problems {
                source: self.name(),
                list: vec![Problem::at(None, format!("cannot read the file: {e}"))],
            }),
        }
    }
}

/// Validates `text`, read from `source`, with the process environment for `${VAR}`.
pub fn parse(source: &Source, text: &str) -> Checked {
    let env: HashMap<String, String> = std::env::vars().collect();
    let (config, list) = validate::check(text, env, matches!(source, Source::BuiltIn));
    Checked {
        config,
        problems: Problems {
            source: source.name(),
            list,
        },
    }
}

/// A configuration from YAML text, without the environment; panics on a
/// problem (for tests that need a valid config).
#[cfg(test)]
#[allow(clippy::panic)]
pub(crate) fn from_yaml(text: &str) -> Config {
    let (config, problems) = validate::check(text, HashMap::new(), false);
    config.unwrap_or_else(|| panic!("not a valid config: {problems:?}"))
}

#[cfg(test)]
mod tests;
