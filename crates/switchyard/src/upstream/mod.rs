//! Calling providers: one pooled HTTP client per provider, the request with its
//! timeouts, and the relays that stream the answer back.

mod error;
mod relay;

use std::sync::Arc;
use std::time::Duration;

use axum::http::{HeaderValue, header};
use bytes::Bytes;
use secrecy::ExposeSecret;
use switchyard_providers::openai::{Endpoint, ErrorBody, ErrorObject};
use tokio::time::Instant;

use crate::config::{Provider, ProviderKind, Timeouts};

pub use error::{TimeoutPhase, UpstreamError};
pub use relay::{RelayLimits, relay_json, relay_sse};

/// Largest upstream error body read to report its message.
const MAX_ERROR_BODY: usize = 64 << 10;

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

/// The provider's endpoint URLs, parsed once at start-up.
#[derive(Debug)]
struct EndpointUrls {
    chat_completions: reqwest::Url,
    completions: reqwest::Url,
    embeddings: reqwest::Url,
}

/// A provider ready to be called.
#[derive(Debug)]
pub struct ProviderClient {
    /// Its name in the config.
    pub name: Arc<str>,
    /// The dialect it speaks.
    pub kind: ProviderKind,
    urls: EndpointUrls,
    /// `Bearer <key>`, marked sensitive so it never shows in debug output.
    authorization: Option<HeaderValue>,
    /// The raw key, to scrub it from anything the provider echoes back.
    secret: Option<secrecy::SecretString>,
    /// Timeouts for every call.
    pub timeouts: Timeouts,
    client: reqwest::Client,
}

impl ProviderClient {
    /// Builds the pooled client for `provider`; `base_url` overrides the configured
    /// one (used for the in-process mock, whose address is known only at start-up).
    pub fn new(provider: &Provider, base_url: Option<String>) -> Result<Self, ClientError> {
        let client = reqwest::Client::builder()
            .connect_timeout(provider.timeouts.connect)
            .pool_idle_timeout(Duration::from_secs(90))
            .pool_max_idle_per_host(1024)
            .tcp_nodelay(true)
            .redirect(reqwest::redirect::Policy::none())
            .user_agent(concat!("switchyard/", env!("CARGO_PKG_VERSION")))
            .build()
            .map_err(|e| ClientError::Http(e.to_string()))?;
        let base_url = base_url.unwrap_or_else(|| provider.base_url.clone());
        let url = |endpoint: Endpoint| {
            reqwest::Url::parse(&format!("{base_url}{}", endpoint.path()))
                .map_err(|e| ClientError::Url(format!("{base_url}: {e}")))
        };
        let urls = EndpointUrls {
            chat_completions: url(Endpoint::ChatCompletions)?,
            completions: url(Endpoint::Completions)?,
            embeddings: url(Endpoint::Embeddings)?,
        };
        let authorization = provider.api_key.as_ref().and_then(|key| {
            let mut value =
                HeaderValue::from_str(&format!("Bearer {}", key.expose_secret())).ok()?;
            value.set_sensitive(true);
            Some(value)
        });
        Ok(Self {
            name: Arc::from(provider.name.as_str()),
            kind: provider.kind,
            urls,
            authorization,
            secret: provider.api_key.clone(),
            timeouts: provider.timeouts,
            client,
        })
    }

    /// Sends `body` to `endpoint` and waits for the response headers.
    ///
    /// A non-2xx answer becomes [`UpstreamError::Status`] with the provider's
    /// message (its error body is read, bounded, within the deadline).
    pub async fn send(
        &self,
        endpoint: Endpoint,
        body: Bytes,
        stream: bool,
        request_id: &HeaderValue,
        deadline: Instant,
    ) -> Result<reqwest::Response, UpstreamError> {
        let url = match endpoint {
            Endpoint::ChatCompletions => &self.urls.chat_completions,
            Endpoint::Completions => &self.urls.completions,
            Endpoint::Embeddings => &self.urls.embeddings,
        }
        .clone();
        let mut request = self
            .client
            .post(url)
            .header(header::CONTENT_TYPE, "application/json")
            .header(
                header::ACCEPT,
                if stream {
                    "text/event-stream"
                } else {
                    "application/json"
                },
            )
            .header("x-request-id", request_id.clone())
            .body(body);
        if let Some(auth) = &self.authorization {
            request = request.header(header::AUTHORIZATION, auth.clone());
        }
        let first_byte = deadline.min(Instant::now() + self.timeouts.first_byte);
        let response = match tokio::time::timeout_at(first_byte, request.send()).await {
            Err(_) => return Err(self.timeout_at(first_byte, deadline, TimeoutPhase::FirstByte)),
            Ok(Err(e)) => return Err(self.send_error(&e)),
            Ok(Ok(response)) => response,
        };
        if response.status().is_success() {
            return Ok(response);
        }
        Err(self.status_error(response, deadline).await)
    }

    /// The timeout error for a wait on `phase` that ended at `at`: the total
    /// deadline's when that is what ran out.
    fn timeout_at(&self, at: Instant, deadline: Instant, phase: TimeoutPhase) -> UpstreamError {
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

    fn send_error(&self, e: &reqwest::Error) -> UpstreamError {
        if e.is_timeout() {
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

    async fn status_error(&self, response: reqwest::Response, deadline: Instant) -> UpstreamError {
        let status = response.status().as_u16();
        let retry_after = retry_after(response.headers());
        let idle = deadline.min(Instant::now() + self.timeouts.idle);
        let body = tokio::time::timeout_at(idle, read_bounded(response, MAX_ERROR_BODY))
            .await
            .unwrap_or_default();
        let mut error = serde_json::from_slice::<ErrorBody>(&body)
            .map(|b| b.error)
            .unwrap_or_else(|_| ErrorObject {
                message: String::from_utf8_lossy(&body).chars().take(500).collect(),
                kind: None,
                param: None,
                code: None,
            });
        error.message = self.scrub(&error.message);
        if error.message.is_empty() {
            error.message = format!("upstream status {status}");
        }
        UpstreamError::Status {
            provider: self.name.to_string(),
            status,
            error: Box::new(error),
            retry_after,
        }
    }

    /// Removes the provider's key from text the provider sent back.
    pub fn scrub(&self, text: &str) -> String {
        match &self.secret {
            Some(key) if !key.expose_secret().is_empty() && text.contains(key.expose_secret()) => {
                text.replace(key.expose_secret(), "[redacted]")
            }
            _ => text.to_owned(),
        }
    }
}

/// `retry-after` as whole seconds (from seconds or `retry-after-ms`).
fn retry_after(headers: &reqwest::header::HeaderMap) -> Option<u64> {
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

async fn read_bounded(mut response: reqwest::Response, limit: usize) -> Bytes {
    let mut body = Vec::new();
    while let Ok(Some(chunk)) = response.chunk().await {
        let room = limit.saturating_sub(body.len());
        body.extend_from_slice(&chunk[..chunk.len().min(room)]);
        if body.len() >= limit {
            break;
        }
    }
    Bytes::from(body)
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
