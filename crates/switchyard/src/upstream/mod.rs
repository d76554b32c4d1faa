//! Calling providers: one pooled HTTP client per provider, the request with its
//! timeouts, and the relays that stream the answer back.
//!
//! The client is hyper-util's pooled client with rustls (the platform's
//! certificate verifier, HTTP/2 where the provider offers it through ALPN):
//! the same stack reqwest is built on, without reqwest's per-request layers
//! (redirect bookkeeping that re-parses every URL, retry, cookie and proxy
//! hooks), which cost more than the rest of the gateway's hot path.

mod error;
mod relay;

use std::sync::Arc;
use std::time::Duration;

use axum::http::uri::Scheme;
use axum::http::{HeaderMap, HeaderValue, Method, Request, Uri, header};
use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper_rustls::HttpsConnector;
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::{TokioExecutor, TokioTimer};
use secrecy::ExposeSecret;
use switchyard_providers::openai::{Endpoint, ErrorBody, ErrorObject};
use tokio::time::Instant;

use crate::config::{Provider, ProviderKind, Timeouts};

pub use error::{TimeoutPhase, UpstreamError};
pub use relay::{RelayLimits, relay_json, relay_sse};

/// A provider's answer whose status is a success; its body still to be read.
pub type UpstreamResponse = axum::http::Response<Incoming>;

/// Largest upstream error body read to report its message.
const MAX_ERROR_BODY: usize = 64 << 10;

/// How long an unused upstream connection stays in the pool.
const POOL_IDLE_TIMEOUT: Duration = Duration::from_secs(90);

/// Idle upstream connections kept per provider host.
const POOL_MAX_IDLE_PER_HOST: usize = 1024;

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

/// The provider's endpoint URLs, parsed once at start-up.
#[derive(Debug)]
struct EndpointUrls {
    chat_completions: Uri,
    completions: Uri,
    embeddings: Uri,
}

/// A provider ready to be called.
#[derive(Debug)]
pub struct ProviderClient {
    /// Its name in the config.
    pub name: Arc<str>,
    /// The dialect it speaks.
    pub kind: ProviderKind,
    urls: EndpointUrls,
    /// The `host` header for plain-HTTP providers (always HTTP/1.1), built once;
    /// the pooled client would format it for every request. Over TLS, where ALPN
    /// may pick HTTP/2 and `:authority` replaces it, the client sets it.
    host: Option<HeaderValue>,
    /// `Bearer <key>`, marked sensitive so it never shows in debug output.
    authorization: Option<HeaderValue>,
    /// The raw key, to scrub it from anything the provider echoes back.
    secret: Option<secrecy::SecretString>,
    /// Timeouts for every call.
    pub timeouts: Timeouts,
    client: Client<HttpsConnector<HttpConnector>, Full<Bytes>>,
}

impl ProviderClient {
    /// Builds the pooled client for `provider`; `base_url` overrides the configured
    /// one (used for the in-process mock, whose address is known only at start-up).
    pub fn new(provider: &Provider, base_url: Option<String>) -> Result<Self, ClientError> {
        let mut http = HttpConnector::new();
        http.enforce_http(false);
        http.set_nodelay(true);
        http.set_connect_timeout(Some(provider.timeouts.connect));
        let https = hyper_rustls::HttpsConnectorBuilder::new()
            .try_with_platform_verifier()
            .map_err(|e| ClientError::Http(e.to_string()))?
            .https_or_http()
            .enable_all_versions()
            .wrap_connector(http);
        let client = Client::builder(TokioExecutor::new())
            .pool_idle_timeout(POOL_IDLE_TIMEOUT)
            .pool_max_idle_per_host(POOL_MAX_IDLE_PER_HOST)
            .pool_timer(TokioTimer::new())
            .timer(TokioTimer::new())
            .build(https);
        let base_url = base_url.unwrap_or_else(|| provider.base_url.clone());
        let url = |endpoint: Endpoint| {
            let text = format!("{base_url}{}", endpoint.path());
            match text.parse::<Uri>() {
                Ok(uri)
                    if uri.authority().is_some()
                        && matches!(uri.scheme(), Some(s) if *s == Scheme::HTTP || *s == Scheme::HTTPS) =>
                {
                    Ok(uri)
                }
                Ok(_) => Err(ClientError::Url(format!("{base_url}: not an http(s) URL"))),
                Err(e) => Err(ClientError::Url(format!("{base_url}: {e}"))),
            }
        };
        let urls = EndpointUrls {
            chat_completions: url(Endpoint::ChatCompletions)?,
            completions: url(Endpoint::Completions)?,
            embeddings: url(Endpoint::Embeddings)?,
        };
        // Host and port only: any user info of the URL stays out of it.
        let host = match urls.chat_completions.authority() {
            Some(authority) if urls.chat_completions.scheme() == Some(&Scheme::HTTP) => {
                match authority.port() {
                    Some(port) => HeaderValue::from_str(&format!("{}:{port}", authority.host())),
                    None => HeaderValue::from_str(authority.host()),
                }
                .ok()
            }
            _ => None,
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
            host,
            authorization,
            secret: provider.api_key.clone(),
            timeouts: provider.timeouts,
            client,
        })
    }

    /// Sends `body` to `endpoint` and waits for the response headers.
    ///
    /// The request is built from scratch: no header of the client's goes upstream.
    /// A non-2xx answer becomes [`UpstreamError::Status`] with the provider's
    /// message (its error body is read, bounded, within the deadline). The
    /// first-byte timeout counts from `sent`, the time the caller took the call's
    /// total `deadline` from.
    pub async fn send(
        &self,
        endpoint: Endpoint,
        body: Bytes,
        stream: bool,
        request_id: &HeaderValue,
        sent: Instant,
        deadline: Instant,
    ) -> Result<UpstreamResponse, UpstreamError> {
        let uri = match endpoint {
            Endpoint::ChatCompletions => &self.urls.chat_completions,
            Endpoint::Completions => &self.urls.completions,
            Endpoint::Embeddings => &self.urls.embeddings,
        }
        .clone();
        let mut request = Request::new(Full::new(body));
        *request.method_mut() = Method::POST;
        *request.uri_mut() = uri;
        let headers = request.headers_mut();
        headers.reserve(7);
        if let Some(host) = &self.host {
            headers.insert(header::HOST, host.clone());
        }
        headers.insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static("application/json"),
        );
        headers.insert(
            header::ACCEPT,
            HeaderValue::from_static(if stream {
                "text/event-stream"
            } else {
                "application/json"
            }),
        );
        headers.insert(header::USER_AGENT, USER_AGENT.clone());
        headers.insert(crate::api::REQUEST_ID.clone(), request_id.clone());
        if let Some(auth) = &self.authorization {
            headers.insert(header::AUTHORIZATION, auth.clone());
        }
        let first_byte = deadline.min(sent + self.timeouts.first_byte);
        let response = match tokio::time::timeout_at(first_byte, self.client.request(request)).await
        {
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

    fn send_error(&self, e: &hyper_util::client::legacy::Error) -> UpstreamError {
        if e.is_connect() && caused_by_timeout(e) {
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

/// Whether a connect error comes from the connect timeout.
fn caused_by_timeout(e: &(dyn std::error::Error + 'static)) -> bool {
    let mut source = Some(e);
    while let Some(s) = source {
        if s.downcast_ref::<std::io::Error>()
            .is_some_and(|io| io.kind() == std::io::ErrorKind::TimedOut)
        {
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
#[allow(clippy::unwrap_used)]
mod tests {
    use std::time::Duration;

    use super::*;
    use crate::config::{Provider, ProviderKind, Timeouts};

    fn provider(base_url: &str) -> Provider {
        let second = Duration::from_secs(1);
        Provider {
            name: "up".to_owned(),
            kind: ProviderKind::Openai,
            base_url: base_url.to_owned(),
            api_key: None,
            timeouts: Timeouts {
                connect: second,
                first_byte: second,
                idle: second,
                total: second,
            },
        }
    }

    #[test]
    fn the_host_header_names_host_and_port_only() {
        let client =
            ProviderClient::new(&provider("http://user:secret@127.0.0.1:9999/v1"), None).unwrap();
        assert_eq!(client.host.unwrap(), "127.0.0.1:9999");
        let client = ProviderClient::new(&provider("http://relay.internal/v1"), None).unwrap();
        assert_eq!(client.host.unwrap(), "relay.internal");
        // Over TLS the HTTP client sets it (HTTP/2 carries `:authority` instead).
        let client = ProviderClient::new(&provider("https://api.example.com/v1"), None).unwrap();
        assert!(client.host.is_none());
    }
}
