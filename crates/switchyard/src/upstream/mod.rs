//! Calling providers: the connections to each provider, the request with its
//! timeouts, and the relays that stream the answer back.
//!
//! Requests go over hyper with rustls (the platform's certificate verifier):
//! HTTP/1.1 through the gateway's own pool, whose connections are driven by
//! the task reading the answer ([`transport`]), HTTP/2 through hyper-util's
//! client. That is the stack reqwest is built on, without reqwest's
//! per-request layers (redirect bookkeeping that re-parses every URL, retry,
//! cookie and proxy hooks), which cost more than the rest of the gateway's
//! hot path.

pub mod attempts;
pub mod backoff;
pub mod breaker;
pub mod budget;
mod error;
mod keys;
mod pool;
mod relay;
mod transport;

use std::sync::Arc;
use std::time::Duration;

use axum::http::uri::Scheme;
use axum::http::{HeaderMap, HeaderName, HeaderValue, Method, Request, Uri, header};
use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use secrecy::ExposeSecret;
use switchyard_providers::openai::{Endpoint, ErrorBody, ErrorObject};
use switchyard_providers::{anthropic, gemini, openai};
use tokio::time::Instant;

use crate::config::{Provider, ProviderKind, Timeouts};
use crate::headers::{ANTHROPIC_BETA, ANTHROPIC_VERSION, HOPS, REQUEST_ID};
use keys::{KEY_COOLDOWN, Keys};
use transport::{SendError, Transport};

pub use error::{TimeoutPhase, UpstreamError};
pub use relay::{
    BodyUsage, FirstContent, RelayLimits, StreamMode, first_content, read_whole, relay_json,
    relay_sse,
};
pub use transport::UpstreamBody;

/// A provider's answer whose status is a success; its body still to be read.
pub type UpstreamResponse = axum::http::Response<UpstreamBody>;

/// Largest upstream error body read to report its message.
const MAX_ERROR_BODY: usize = 64 << 10;

/// The `user-agent` of every upstream request.
static USER_AGENT: HeaderValue =
    HeaderValue::from_static(concat!("switchyard/", env!("CARGO_PKG_VERSION")));

/// Why a provider client could not be built.
#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    /// The HTTP client (TLS roots, for instance).
    #[error("cannot build the HTTP client: {0}")]
    Http(String),
    /// An endpoint URL.
    #[error("invalid URL {0}")]
    Url(String),
}

/// The body format a provider takes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Wire {
    /// OpenAI's (OpenAI-compatible relays, Azure OpenAI, the mock).
    OpenAi,
    /// Anthropic's Messages API.
    Anthropic,
    /// Google Gemini's `generateContent`.
    Gemini,
}

/// Where one deployment's requests go, parsed once at start-up.
#[derive(Debug)]
pub struct Urls {
    /// Chat (OpenAI `chat/completions`, Anthropic `messages`, Gemini `generateContent`).
    pub chat: Uri,
    /// Chat with a streamed answer (differs from `chat` for Gemini only).
    pub chat_stream: Uri,
    /// Legacy completions, where the dialect has them.
    pub completions: Option<Uri>,
    /// Embeddings, where the dialect has them.
    pub embeddings: Option<Uri>,
}

/// A request to send to a provider.
#[derive(Debug)]
pub struct Outgoing<'a> {
    /// Where to.
    pub uri: &'a Uri,
    /// The body, in the provider's dialect.
    pub body: Bytes,
    /// Whether a streamed answer is asked for.
    pub stream: bool,
    /// The gateway's request id, passed on.
    pub request_id: &'a HeaderValue,
    /// The client's `anthropic-beta` header, passed on to Anthropic providers only.
    pub anthropic_beta: Option<&'a HeaderValue>,
    /// `x-switchyard-hops` for the provider: gateways passed, this one included.
    pub hops: &'a HeaderValue,
    /// When the call began: the first-byte timeout counts from here.
    pub sent: Instant,
    /// When the whole exchange must be over.
    pub deadline: Instant,
}

/// A provider ready to be called.
#[derive(Debug)]
pub struct ProviderClient {
    /// Its name in the config.
    pub name: Arc<str>,
    /// The dialect it speaks.
    pub kind: ProviderKind,
    /// The body format it takes.
    pub wire: Wire,
    /// The API root the endpoint paths are appended to.
    base_url: String,
    /// `api-version` of an Azure provider.
    api_version: String,
    /// The headers every request to it carries, built once and cloned for
    /// each (a clone copies the map's table; inserting each header again
    /// hashed its name every time): `content-type`, `user-agent`, the API
    /// version's header if its dialect has one, and `host` for providers
    /// spoken to in HTTP/1.1 (in HTTP/2, `:authority` replaces it, and the
    /// client sets that).
    fixed_headers: HeaderMap,
    /// The provider's keys, used in turn, each with its own rate-limit cooldown.
    keys: Keys,
    /// Timeouts for every call.
    pub timeouts: Timeouts,
    /// Its connections.
    transport: Transport,
}

impl ProviderClient {
    /// Builds the pooled client for `provider`; `base_url` overrides the configured
    /// one (used for the in-process mock, whose address is known only at start-up).
    pub fn new(provider: &Provider, base_url: Option<String>) -> Result<Self, ClientError> {
        let base_url = base_url.unwrap_or_else(|| provider.base_url.clone());
        let root = parse_url(&base_url)?;
        let transport = Transport::new(provider, &root)?;
        // Host and port only: any user info of the URL stays out of it.
        let host = match root.authority() {
            Some(authority) if !provider.http2 => match authority.port() {
                Some(port) => HeaderValue::from_str(&format!("{}:{port}", authority.host())),
                None => HeaderValue::from_str(authority.host()),
            }
            .ok(),
            _ => None,
        };
        let wire = match provider.kind {
            ProviderKind::Openai | ProviderKind::Azure | ProviderKind::Mock => Wire::OpenAi,
            ProviderKind::Anthropic => Wire::Anthropic,
            ProviderKind::Gemini => Wire::Gemini,
        };
        Ok(Self {
            name: Arc::from(provider.name.as_str()),
            kind: provider.kind,
            wire,
            base_url,
            api_version: provider.api_version.clone(),
            fixed_headers: fixed_headers(host, version_header(provider)),
            keys: Keys::new(provider),
            timeouts: provider.timeouts,
            transport,
        })
    }

    /// The URLs of a deployment of `model` (the name the provider knows).
    pub fn urls(&self, model: &str) -> Result<Urls, ClientError> {
        let base = &self.base_url;
        let in_path = matches!(self.kind, ProviderKind::Azure | ProviderKind::Gemini);
        if in_path
            && (model.is_empty()
                || model.contains("..")
                || !model
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b"-._:".contains(&b)))
        {
            return Err(ClientError::Url(format!(
                "the model name `{model}` cannot stand in a URL path (letters, digits, `-`, `.`, `_` and `:` only)"
            )));
        }
        let at = |path: String| parse_url(&format!("{base}{path}"));
        Ok(match self.kind {
            ProviderKind::Openai | ProviderKind::Mock => Urls {
                chat: at(Endpoint::ChatCompletions.path().to_owned())?,
                chat_stream: at(Endpoint::ChatCompletions.path().to_owned())?,
                completions: Some(at(Endpoint::Completions.path().to_owned())?),
                embeddings: Some(at(Endpoint::Embeddings.path().to_owned())?),
            },
            ProviderKind::Azure => {
                let version = &self.api_version;
                let path = |endpoint: Endpoint| {
                    format!(
                        "/openai/deployments/{model}{}?api-version={version}",
                        endpoint.path()
                    )
                };
                Urls {
                    chat: at(path(Endpoint::ChatCompletions))?,
                    chat_stream: at(path(Endpoint::ChatCompletions))?,
                    completions: Some(at(path(Endpoint::Completions))?),
                    embeddings: Some(at(path(Endpoint::Embeddings))?),
                }
            }
            ProviderKind::Anthropic => Urls {
                chat: at("/v1/messages".to_owned())?,
                chat_stream: at("/v1/messages".to_owned())?,
                completions: None,
                embeddings: None,
            },
            ProviderKind::Gemini => Urls {
                chat: at(format!("/v1beta/models/{model}:generateContent"))?,
                chat_stream: at(format!(
                    "/v1beta/models/{model}:streamGenerateContent?alt=sse"
                ))?,
                completions: None,
                embeddings: Some(at(format!("/v1beta/models/{model}:batchEmbedContents"))?),
            },
        })
    }

    /// Sends a request and waits for the response headers.
    ///
    /// The request is built from scratch: no header of the client's goes upstream
    /// (but `anthropic-beta` to an Anthropic provider). A non-2xx answer becomes
    /// [`UpstreamError::Status`] with the provider's message (its error body is
    /// read, bounded, within the deadline). The first-byte timeout counts from
    /// `sent`, the time the caller took the call's total `deadline` from.
    pub async fn send(&self, outgoing: Outgoing<'_>) -> Result<UpstreamResponse, UpstreamError> {
        self.exchange(Method::POST, outgoing).await
    }

    /// A health probe: `GET uri`, or `body` POSTed to it, answered with a 2xx
    /// and read whole within `timeout`. Probes pass no breaker and are not
    /// counted as traffic.
    pub async fn probe(
        &self,
        uri: &Uri,
        body: Option<Bytes>,
        timeout: Duration,
    ) -> Result<(), UpstreamError> {
        let sent = Instant::now();
        let deadline = sent + timeout;
        let method = if body.is_some() {
            Method::POST
        } else {
            Method::GET
        };
        let outgoing = Outgoing {
            uri,
            body: body.unwrap_or_default(),
            stream: false,
            request_id: &PROBE_ID,
            anthropic_beta: None,
            hops: &PROBE_HOPS,
            sent,
            deadline,
        };
        let response = self.exchange(method, outgoing).await?;
        tokio::time::timeout_at(deadline, read_bounded(response, MAX_ERROR_BODY))
            .await
            .map(drop)
            .map_err(|_| self.timeout_at(deadline, deadline, TimeoutPhase::Total))
    }

    /// The URL of `path` under the provider's API root (`/models`, say).
    pub fn url(&self, path: &str) -> Result<Uri, ClientError> {
        parse_url(&format!("{}{path}", self.base_url))
    }

    /// [`ProviderClient::send`] with any method.
    async fn exchange(
        &self,
        method: Method,
        outgoing: Outgoing<'_>,
    ) -> Result<UpstreamResponse, UpstreamError> {
        let Outgoing {
            uri,
            body,
            stream,
            request_id,
            anthropic_beta,
            hops,
            sent,
            deadline,
        } = outgoing;
        let mut request = Request::new(Full::new(body));
        *request.method_mut() = method;
        *request.headers_mut() = self.fixed_headers.clone();
        let headers = request.headers_mut();
        headers.insert(
            header::ACCEPT,
            HeaderValue::from_static(if stream {
                "text/event-stream"
            } else {
                "application/json"
            }),
        );
        headers.insert(REQUEST_ID.clone(), request_id.clone());
        headers.insert(HOPS.clone(), hops.clone());
        let key = match self.keys.pick(sent) {
            Ok(key) => key,
            Err(wait) => return Err(self.keys_cooling(wait)),
        };
        if let Some((name, value)) = key.map(|key| &key.header) {
            headers.insert(name.clone(), value.clone());
        }
        if let Some(beta) = anthropic_beta
            && self.wire == Wire::Anthropic
        {
            headers.insert(ANTHROPIC_BETA.clone(), beta.clone());
        }
        let first_byte = deadline.min(sent + self.timeouts.first_byte);
        let response = match tokio::time::timeout_at(first_byte, self.transport.send(uri, request))
            .await
        {
            Err(_) => return Err(self.timeout_at(first_byte, deadline, TimeoutPhase::FirstByte)),
            Ok(Err(e)) => return Err(self.send_error(&e)),
            Ok(Ok(response)) => response,
        };
        if response.status().is_success() {
            return Ok(response);
        }
        let error = self.status_error(response, deadline).await;
        if let (
            Some(key),
            UpstreamError::Status {
                status: 429,
                retry_after,
                ..
            },
        ) = (key, &error)
        {
            key.cool_down(Instant::now() + retry_after.map_or(KEY_COOLDOWN, Duration::from_secs));
        }
        Err(error)
    }

    /// The timeout error for a wait on `phase` that ended at `at`: the total
    /// deadline's when that is what ran out.
    pub(crate) fn timeout_at(
        &self,
        at: Instant,
        deadline: Instant,
        phase: TimeoutPhase,
    ) -> UpstreamError {
        let (phase, limit) = match phase {
            _ if at >= deadline => (TimeoutPhase::Total, self.timeouts.total),
            TimeoutPhase::FirstByte => (phase, self.timeouts.first_byte),
            TimeoutPhase::Idle => (phase, self.timeouts.idle),
            TimeoutPhase::Connect => (phase, self.timeouts.connect),
            TimeoutPhase::Total => (phase, self.timeouts.total),
        };
        UpstreamError::Timeout {
            provider: self.name.to_string(),
            phase,
            limit,
        }
    }

    fn send_error(&self, e: &SendError) -> UpstreamError {
        if io_cause(e, |io| {
            LOCAL_ERRNOS.contains(&io.raw_os_error().unwrap_or(0))
        }) {
            return UpstreamError::Local {
                provider: self.name.to_string(),
                detail: self.scrub(&error_chain(e)),
            };
        }
        if e.connecting() && io_cause(e, |io| io.kind() == std::io::ErrorKind::TimedOut) {
            return UpstreamError::Timeout {
                provider: self.name.to_string(),
                phase: TimeoutPhase::Connect,
                limit: self.timeouts.connect,
            };
        }
        UpstreamError::Connect {
            provider: self.name.to_string(),
            detail: self.scrub(&error_chain(e)),
        }
    }

    async fn status_error(&self, response: UpstreamResponse, deadline: Instant) -> UpstreamError {
        let mut status = response.status().as_u16();
        let mut retry_after = retry_after(response.headers());
        let idle = deadline.min(Instant::now() + self.timeouts.idle);
        let body = tokio::time::timeout_at(idle, read_bounded(response, MAX_ERROR_BODY))
            .await
            .unwrap_or_default();
        // Each dialect classes its own errors, from its codes and types.
        let class = match self.wire {
            Wire::OpenAi => openai::classify_error(status, &body),
            Wire::Anthropic => anthropic::classify_error(status, &body),
            Wire::Gemini => gemini::classify_error(status, &body),
        };
        let mut error = match self.wire {
            Wire::OpenAi => serde_json::from_slice::<ErrorBody>(&body)
                .map(|b| b.error)
                .unwrap_or_else(|_| ErrorObject {
                    message: String::from_utf8_lossy(&body).chars().take(500).collect(),
                    kind: None,
                    param: None,
                    code: None,
                }),
            Wire::Anthropic => anthropic::decode_error(status, &body),
            Wire::Gemini => {
                retry_after = retry_after.or_else(|| gemini::retry_delay(&body));
                let error = gemini::decode_error(status, &body);
                // Google refuses a bad key with 400: the gateway's fault, not the client's.
                if error.kind.as_deref() == Some("authentication_error") {
                    status = 401;
                }
                error
            }
        };
        error.message = self.scrub(&error.message);
        if error.message.is_empty() {
            error.message = format!("upstream status {status}");
        }
        UpstreamError::Status {
            provider: self.name.to_string(),
            status,
            class,
            error: Box::new(error),
            retry_after,
        }
    }

    /// Removes the provider's keys from text the provider sent back.
    pub fn scrub(&self, text: &str) -> String {
        let mut text = text.to_owned();
        for key in &self.keys.list {
            let secret = key.secret.expose_secret();
            if !secret.is_empty() && text.contains(secret) {
                text = text.replace(secret, "[redacted]");
            }
        }
        text
    }

    /// Whether an answer's body is read by the task that reads it (HTTP/1.1),
    /// not handed over by a connection task of its own (HTTP/2), which a
    /// reader gathering what has arrived might give a turn to.
    pub fn reads_in_task(&self) -> bool {
        self.transport.reads_in_task()
    }

    /// Whether the provider has several keys and one of them is free now, so
    /// that an attempt that got a 429 can go again at once with another.
    pub fn has_free_key(&self, now: Instant) -> bool {
        self.key_count() > 1 && self.keys.resting(now).is_none()
    }

    /// How long until one of the provider's keys is free again, when every
    /// one rests after a 429 at `now`; `None` when one is free (or the
    /// provider has no keys). One atomic load per key.
    pub fn resting(&self, now: Instant) -> Option<Duration> {
        self.keys.resting(now)
    }

    /// How many API keys the provider has.
    pub fn key_count(&self) -> usize {
        self.keys.list.len()
    }

    /// The failure of an attempt when every key is resting after a 429.
    fn keys_cooling(&self, wait: Duration) -> UpstreamError {
        UpstreamError::KeysResting {
            provider: self.name.to_string(),
            // Rounded up: a client that waits this long finds a key free.
            retry_after: u64::try_from(wait.as_millis().div_ceil(1000))
                .unwrap_or(u64::MAX)
                .max(1),
        }
    }
}

/// The `x-request-id` of health probes.
static PROBE_ID: HeaderValue = HeaderValue::from_static("switchyard-health-probe");

/// The `x-switchyard-hops` of health probes: they start at this gateway.
static PROBE_HOPS: HeaderValue = HeaderValue::from_static("1");

/// An http(s) URL with a host.
fn parse_url(text: &str) -> Result<Uri, ClientError> {
    match text.parse::<Uri>() {
        Ok(uri)
            if uri.authority().is_some()
                && matches!(uri.scheme(), Some(s) if *s == Scheme::HTTP || *s == Scheme::HTTPS) =>
        {
            Ok(uri)
        }
        Ok(_) => Err(ClientError::Url(format!("{text}: not an http(s) URL"))),
        Err(e) => Err(ClientError::Url(format!("{text}: {e}"))),
    }
}

/// The headers of [`ProviderClient::fixed_headers`], its table sized (and
/// kept so by each clone) for those each request adds too (`accept`, the
/// request id, the hops, the key, a beta).
fn fixed_headers(
    host: Option<HeaderValue>,
    version: Option<(HeaderName, HeaderValue)>,
) -> HeaderMap {
    let mut headers = HeaderMap::with_capacity(10);
    if let Some(host) = host {
        headers.insert(header::HOST, host);
    }
    headers.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    headers.insert(header::USER_AGENT, USER_AGENT.clone());
    if let Some((name, value)) = version {
        headers.insert(name, value);
    }
    headers
}

/// `anthropic-version` of an Anthropic provider.
fn version_header(provider: &Provider) -> Option<(HeaderName, HeaderValue)> {
    (provider.kind == ProviderKind::Anthropic)
        .then(|| HeaderValue::from_str(&provider.api_version).ok())
        .flatten()
        .map(|version| (ANTHROPIC_VERSION.clone(), version))
}

/// `retry-after` as whole seconds (from seconds or `retry-after-ms`).
fn retry_after(headers: &HeaderMap) -> Option<u64> {
    let text = |name: &str| {
        headers
            .get(name)
            .and_then(|v| v.to_str().ok())
            .map(str::trim)
    };
    if let Some(secs) = text("retry-after").and_then(|v| v.parse::<f64>().ok()) {
        return Some(secs.max(0.0).ceil() as u64);
    }
    text("retry-after-ms")
        .and_then(|v| v.parse::<f64>().ok())
        .map(|ms| (ms.max(0.0) / 1000.0).ceil() as u64)
}

async fn read_bounded(response: UpstreamResponse, limit: usize) -> Bytes {
    let mut body = response.into_body();
    let mut read = Vec::new();
    while let Some(Ok(frame)) = body.frame().await {
        let Ok(chunk) = frame.into_data() else {
            continue;
        };
        let room = limit.saturating_sub(read.len());
        read.extend_from_slice(&chunk[..chunk.len().min(room)]);
        if read.len() >= limit {
            break;
        }
    }
    Bytes::from(read)
}

/// The system errors that say this process ran out of something, not that
/// the provider failed: too many open files (EMFILE), in the system
/// (ENFILE), no memory (ENOMEM), no buffer space (ENOBUFS), no local port
/// (EADDRNOTAVAIL). Linux's numbers (EMFILE and ENFILE are the same on the BSDs).
const LOCAL_ERRNOS: [i32; 5] = [24, 23, 12, 105, 99];

/// Whether an I/O error in the chain of `e` satisfies `test`.
fn io_cause(e: &(dyn std::error::Error + 'static), test: impl Fn(&std::io::Error) -> bool) -> bool {
    let mut source = Some(e);
    while let Some(s) = source {
        if s.downcast_ref::<std::io::Error>().is_some_and(&test) {
            return true;
        }
        source = s.source();
    }
    false
}

fn error_chain(e: &(dyn std::error::Error + 'static)) -> String {
    let mut text = e.to_string();
    let mut source = e.source();
    while let Some(s) = source {
        text.push_str(": ");
        text.push_str(&s.to_string());
        source = s.source();
    }
    text
}

#[cfg(test)]
mod tests;
