//! How a provider is reached: over HTTP/1.1, the gateway's own pool of
//! connections, each driven by the task of the request that uses it
//! ([`Pool`]); over HTTP/2, hyper-util's client, whose one connection
//! multiplexes the requests. And the body of an answer from either.

use std::pin::Pin;
use std::task::{Context, Poll};

use axum::http::{Request, Response, Uri};
use bytes::Bytes;
use http_body_util::Full;
use hyper::body::{Body, Frame, Incoming, SizeHint};
use hyper_rustls::HttpsConnector;
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::{TokioExecutor, TokioTimer};

use super::ClientError;
use super::pool::{Pool, PooledBody};
use crate::config::Provider;

/// Why a request got no answer head.
#[derive(Debug, thiserror::Error)]
pub enum SendError {
    /// No connection could be made (TCP or TLS).
    #[error("cannot connect")]
    Connect(#[source] Box<dyn std::error::Error + Send + Sync>),
    /// The connection failed while the request was sent or its head awaited.
    #[error(transparent)]
    Http(#[from] hyper::Error),
    /// HTTP/2's client failed, connecting or after.
    #[error(transparent)]
    Shared(#[from] hyper_util::client::legacy::Error),
}

impl SendError {
    /// Whether no connection could be made.
    pub fn connecting(&self) -> bool {
        match self {
            Self::Connect(_) => true,
            Self::Http(_) => false,
            Self::Shared(e) => e.is_connect(),
        }
    }
}

/// A provider's connections.
#[derive(Debug)]
pub enum Transport {
    /// HTTP/1.1: a connection per request in flight, kept between requests.
    Pooled(Pool),
    /// HTTP/2 (`http2: true`): hyper-util's client.
    Shared(Box<Client<HttpsConnector<HttpConnector>, Full<Bytes>>>),
}

impl Transport {
    /// The connections to `provider`, whose requests all go to the origin of
    /// `root`: TLS with the platform's certificate verifier where the URL is
    /// `https`, TCP without Nagle's delay.
    pub fn new(provider: &Provider, root: &Uri) -> Result<Self, ClientError> {
        let mut http = HttpConnector::new();
        http.enforce_http(false);
        http.set_nodelay(true);
        http.set_connect_timeout(Some(provider.timeouts.connect));
        let https = hyper_rustls::HttpsConnectorBuilder::new()
            .try_with_platform_verifier()
            .map_err(|e| ClientError::Http(e.to_string()))?
            .https_or_http();
        // HTTP/1.1 unless told otherwise, also where TLS could negotiate
        // HTTP/2: hyper-util's pool keeps one HTTP/2 connection per host and
        // never opens a second, so requests past the provider's stream limit
        // (often 100 to 256) would queue here, and their time to first byte
        // with them. HTTP/1.1 gives each request in flight a connection.
        if !provider.http2 {
            let connector = https.enable_http1().wrap_connector(http);
            return Ok(Self::Pooled(Pool::new(connector, root, provider.pool)));
        }
        let client = Client::builder(TokioExecutor::new())
            .http2_only(true)
            .pool_idle_timeout(provider.pool.idle_timeout)
            .pool_max_idle_per_host(provider.pool.max_idle)
            .pool_timer(TokioTimer::new())
            .timer(TokioTimer::new())
            .build(https.enable_http2().wrap_connector(http));
        Ok(Self::Shared(Box::new(client)))
    }

    /// Sends `request` to `uri` and answers its head.
    pub async fn send(
        &self,
        uri: &Uri,
        mut request: Request<Full<Bytes>>,
    ) -> Result<Response<UpstreamBody>, SendError> {
        match self {
            Self::Pooled(pool) => {
                // HTTP/1.1 names the path on the request line; the host goes
                // in `host`.
                *request.uri_mut() = uri
                    .path_and_query()
                    .cloned()
                    .map_or_else(Uri::default, Uri::from);
                let response = pool.send(uri, request).await?;
                Ok(response.map(UpstreamBody::Pooled))
            }
            Self::Shared(client) => {
                *request.uri_mut() = uri.clone();
                let response = client.request(request).await?;
                Ok(response.map(UpstreamBody::Shared))
            }
        }
    }

    /// Whether an answer's body is read by the task that reads it, and not
    /// handed over by a connection task of its own (which a reader might
    /// wait a turn for).
    pub fn reads_in_task(&self) -> bool {
        matches!(self, Self::Pooled(_))
    }
}

/// The body of a provider's answer.
#[derive(Debug)]
pub enum UpstreamBody {
    /// Read through its HTTP/1.1 connection.
    Pooled(PooledBody),
    /// Handed over by hyper-util's HTTP/2 client.
    Shared(Incoming),
}

impl Body for UpstreamBody {
    type Data = Bytes;
    type Error = hyper::Error;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, hyper::Error>>> {
        match self.get_mut() {
            Self::Pooled(body) => Pin::new(body).poll_frame(cx),
            Self::Shared(body) => Pin::new(body).poll_frame(cx),
        }
    }

    fn is_end_stream(&self) -> bool {
        match self {
            Self::Pooled(body) => body.is_end_stream(),
            Self::Shared(body) => body.is_end_stream(),
        }
    }

    fn size_hint(&self) -> SizeHint {
        match self {
            Self::Pooled(body) => body.size_hint(),
            Self::Shared(body) => body.size_hint(),
        }
    }
}
