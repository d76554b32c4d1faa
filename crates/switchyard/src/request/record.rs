//! [`RequestRecord`]: what is known of one request when it ends.

use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::http::HeaderValue;
use switchyard_providers::openai::Usage;

use crate::keys::Tenant;
use crate::telemetry::{Bodies, ModelMeter};

/// Who sent a request, as authentication established it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Principal {
    /// Not authenticated: the request ended before its key was checked, or
    /// on a path that needs no key (`/health`, `/metrics`, …).
    Anonymous,
    /// `auth.mode: open` (loopback only): no key is asked for.
    Open,
    /// A key from the config's `keys:`, by its name.
    ConfigKey(Arc<str>),
    /// A virtual key from the store, with its team.
    VirtualKey(Tenant),
}

impl Principal {
    /// The name of the client key, when one authenticated the request.
    pub fn key_name(&self) -> Option<&str> {
        match self {
            Self::ConfigKey(name) => Some(name),
            Self::VirtualKey(tenant) => Some(&tenant.key.name),
            Self::Anonymous | Self::Open => None,
        }
    }

    /// The key's id as the usage log records it: a virtual key's id, or
    /// `config:` and a configured key's name.
    pub fn key_id(&self) -> Option<String> {
        match self {
            Self::VirtualKey(tenant) => Some(tenant.key.id.to_string()),
            Self::ConfigKey(name) => Some(format!("config:{name}")),
            Self::Anonymous | Self::Open => None,
        }
    }

    /// Whether the caller may use `model`: a virtual key's allowed models
    /// (and its team's) say; every other caller may use every model.
    pub fn allows(&self, model: &str) -> bool {
        match self {
            Self::VirtualKey(tenant) => tenant.allows(model),
            Self::Anonymous | Self::Open | Self::ConfigKey(_) => true,
        }
    }
}

/// How a request ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Ending {
    /// The whole answer reached the client (or a refusal: see `error`).
    Completed,
    /// It ended with an error: refused before or by the upstream, or a
    /// stream that broke off (an error event ended it); `error` says which.
    Failed,
    /// The client went away before the answer was whole.
    ClientClosed,
    /// A handler or relay panicked; the client got a 500 (or an error event).
    Panicked,
}

/// An error that ended a request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RecordedError {
    /// A bounded name (`GatewayError::kind`), for logs and metric labels.
    pub kind: &'static str,
    /// What happened, scrubbed of secrets.
    pub detail: String,
}

/// One attempt that did not serve the request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FailedAttempt {
    /// The deployment (`provider/model`).
    pub deployment: String,
    /// The failure class, as `x-switchyard-route` shows it.
    pub outcome: &'static str,
    /// The attempt's error.
    pub detail: String,
    /// When it was sent.
    pub sent: Instant,
    /// How long it took to fail.
    pub took: Duration,
}

/// The deployment that served a request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ServedBy {
    /// Its provider.
    pub provider: Arc<str>,
    /// The model name the provider knows.
    pub upstream_model: String,
}

/// What is known of one request when it ends: built up as the request goes
/// through the pipeline, and handed once to [`super::Finish`].
#[derive(Debug, Clone)]
pub struct RequestRecord {
    /// `x-request-id`.
    pub id: HeaderValue,
    /// A bounded name of the endpoint (`chat_completions`, `messages`, `health`, …).
    pub endpoint: &'static str,
    /// Who sent it.
    pub principal: Principal,
    /// The public model asked for, once the body was read.
    pub model: Option<String>,
    /// The metric handles of the model it was routed to, once it was.
    pub meter: Option<Arc<ModelMeter>>,
    /// Whether the client asked for a stream.
    pub stream: bool,
    /// The deployment that served it (or was tried last).
    pub served_by: Option<ServedBy>,
    /// The status sent to the client (500 for a panic, 0 when none was sent).
    pub status: u16,
    /// How it ended.
    pub ending: Ending,
    /// What went wrong, when it failed.
    pub error: Option<RecordedError>,
    /// Upstream calls made.
    pub attempts: u32,
    /// Every attempt that failed, in order, with its error.
    pub failed_attempts: Vec<FailedAttempt>,
    /// `x-switchyard-route`, when the request was routed.
    pub route: Option<HeaderValue>,
    /// The prompt size estimated before routing (bytes / 4).
    pub estimated_input_tokens: u64,
    /// The token counts the provider reported.
    pub usage: Option<Usage>,
    /// Stream chunks relayed to the client.
    pub streamed_chunks: u32,
    /// What the response cache made of it, when the cache is on.
    pub cache: Option<crate::cache::Status>,
    /// What a cache hit saved: the cost of the stored answer, in micro-USD.
    pub saved_micros: i64,
    /// What it cost, in micro-USD (set as it ends).
    pub cost_micros: i64,
    /// No usage was reported: the tokens, and so the cost, are estimates.
    pub cost_estimated: bool,
    /// `x-switchyard-tags`, as sent.
    pub tags: Option<HeaderValue>,
    /// The client's `traceparent`, kept only while traces are on.
    pub traceparent: Option<HeaderValue>,
    /// When the attempt that serves the request was sent.
    pub serving_since: Option<Instant>,
    /// Its prompt and answer, kept for the bodies log or its span when
    /// `telemetry.log_bodies` or `telemetry.traces.content` is on (boxed:
    /// otherwise no request has them).
    pub bodies: Option<Box<Bodies>>,
    /// When the request arrived.
    pub arrived: Instant,
    /// Arrival → the first content sent to the client.
    pub ttft: Option<Duration>,
    /// Arrival → the end.
    pub latency: Duration,
    /// The time spent on providers: each round of attempts until its answer
    /// began (its headers; a stream's first content) or it failed, the
    /// backoff between them, and the semantic cache's embedding call.
    pub upstream: Duration,
}

impl RequestRecord {
    /// The record of a request that has just arrived.
    pub fn new(id: HeaderValue, endpoint: &'static str, arrived: Instant) -> Self {
        Self {
            id,
            endpoint,
            principal: Principal::Anonymous,
            model: None,
            meter: None,
            stream: false,
            served_by: None,
            status: 0,
            ending: Ending::Completed,
            error: None,
            attempts: 0,
            failed_attempts: Vec::new(),
            route: None,
            estimated_input_tokens: 0,
            usage: None,
            streamed_chunks: 0,
            cache: None,
            saved_micros: 0,
            cost_micros: 0,
            cost_estimated: false,
            tags: None,
            traceparent: None,
            serving_since: None,
            bodies: None,
            arrived,
            ttft: None,
            latency: Duration::ZERO,
            upstream: Duration::ZERO,
        }
    }

    /// Whether it came to a proxy endpoint (the LLM pipeline's).
    pub fn proxied(&self) -> bool {
        matches!(
            self.endpoint,
            "chat_completions" | "completions" | "embeddings" | "messages"
        )
    }

    /// The access line's `outcome`: `ok`, the error's kind,
    /// `client_disconnected` or `internal_error`.
    pub fn outcome(&self) -> &'static str {
        match (self.ending, &self.error) {
            (Ending::ClientClosed, _) => "client_disconnected",
            (Ending::Panicked, _) => "internal_error",
            (Ending::Completed | Ending::Failed, Some(error)) => error.kind,
            (Ending::Completed | Ending::Failed, None) => "ok",
        }
    }
}
