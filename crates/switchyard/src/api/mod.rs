//! The HTTP surface: the gateway's service, its routes and the shared state.
//!
//! Every request passes [`Gateway`], which in one step, without a layer stack:
//!
//! 1. keeps the client's `x-request-id` or makes one, and puts it on the response;
//! 2. marks `authorization` and `x-api-key` sensitive, so no debug output shows them;
//! 3. hands the proxy endpoints (`POST /v1/chat/completions`, `/v1/completions`,
//!    `/v1/embeddings`) straight to their handler, and everything else to the axum
//!    router (`/v1/models`, `/health`, `/ready`, and 404 or 405 in OpenAI's shape);
//! 4. turns a panic in a handler into a 500 in OpenAI's shape, not a dropped connection;
//! 5. writes the access line of a request whose handler does not (the proxy
//!    handlers write theirs when the body ends, with usage and time to first token).
//!
//! The proxy handlers check the key (401 in OpenAI's shape) before reading the
//! body (bounded by `server.max_body_bytes` and `server.body_timeout`), then
//! validate → route → call the provider → relay the answer (JSON or SSE). A proxied
//! request costs one boxed future on the way through (a stream's relay also runs
//! as a task of its own, see `upstream::relay_sse`).

mod admin;
mod canary;
mod health;
mod hedge;
mod inbound;
mod proxy;
mod request_id;
mod shadow;

use std::convert::Infallible;
use std::panic::AssertUnwindSafe;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use axum::Router;
use axum::body::Body;
use axum::extract::{FromRequestParts, Request};
use axum::http::request::Parts;
use axum::http::{HeaderMap, HeaderName, HeaderValue, Method, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use bytes::Bytes;
use futures_util::FutureExt;
use hyper::body::Incoming;
use tokio_util::sync::CancellationToken;
use tower::ServiceExt;

use crate::auth::{AdminAuth, Authenticator};
use crate::error::{ErrorKind, GatewayError};
use crate::routing::Routes;
use crate::telemetry::AccessLog;
use crate::telemetry::metrics::Metrics;

use proxy::ProxyEndpoint;
use request_id::RequestIds;

/// What every handler shares.
#[derive(Debug)]
pub struct AppState {
    /// Models → deployments.
    pub routes: Routes,
    /// Client authentication.
    pub auth: Authenticator,
    /// Admin authentication (`/admin/*`).
    pub admin: AdminAuth,
    /// The metric registry (`/metrics`).
    pub metrics: Metrics,
    /// Counters of the request path, registered once.
    pub counters: Counters,
    /// `server.max_body_bytes`.
    pub max_body_bytes: usize,
    /// `server.body_timeout`.
    pub body_timeout: Duration,
    /// `server.max_stream_event_bytes`.
    pub max_stream_event_bytes: usize,
    /// `server.max_response_bytes`.
    pub max_response_bytes: usize,
    /// `server.max_hops`.
    pub max_hops: u32,
    /// `retries:`.
    pub retries: crate::config::Retries,
    /// The backoff schedule of `retries:`.
    pub backoff: crate::upstream::backoff::Backoff,
    /// The retry budget shared by every request.
    pub budget: crate::upstream::budget::RetryBudget,
    /// False once shutdown has begun.
    pub ready: Arc<AtomicBool>,
    /// `health_checks.ready_needs_every_model`.
    pub ready_needs_every_model: bool,
    /// Cancelled when the shutdown grace period is over: open streams end with an error event.
    /// (Behind an `Arc`: cloning a token itself takes a lock.)
    pub cut: Arc<CancellationToken>,
    /// The `GET /v1/models` body, built once.
    pub models_body: Bytes,
}

/// Counters of the request path: handles registered at start-up, so that
/// counting is one atomic add.
#[derive(Debug)]
pub struct Counters {
    /// `switchyard_retries_total`: attempts after the first, of any request.
    pub retries: metrics::Counter,
    /// `switchyard_fallbacks_total`: attempts moved on to a fallback model.
    pub fallbacks: metrics::Counter,
}

impl Counters {
    /// Registers the counters in `metrics`.
    pub fn new(metrics: &Metrics) -> Self {
        metrics.describe(
            "switchyard_retries_total",
            None,
            "Upstream attempts made after a request's first one failed.",
        );
        metrics.describe(
            "switchyard_fallbacks_total",
            None,
            "Retries that moved on to a fallback model.",
        );
        Self {
            retries: metrics.counter("switchyard_retries_total", &[]),
            fallbacks: metrics.counter("switchyard_fallbacks_total", &[]),
        }
    }
}

/// The `x-request-id` header.
pub static REQUEST_ID: HeaderName = HeaderName::from_static("x-request-id");

/// The gateway's HTTP service: one clone per connection, shared state behind an `Arc`.
#[derive(Clone)]
pub struct Gateway {
    state: Arc<AppState>,
    ids: RequestIds,
    /// Requests begun on this service's connection (see [`Gateway::for_connection`]).
    requests: Arc<AtomicU64>,
    /// The endpoints off the proxy path.
    router: Router,
}

impl Gateway {
    /// The service for `state`.
    pub fn new(state: Arc<AppState>) -> Self {
        let router = Router::new()
            .route("/v1/models", get(proxy::models))
            .route("/health", get(health::health))
            .route("/ready", get(health::ready))
            .route("/metrics", get(admin::metrics))
            .route("/admin/deployments", get(admin::deployments))
            .route("/admin/canary", get(canary::list))
            .route("/admin/canary/{model}/{action}", post(canary::act))
            .fallback(not_found)
            .method_not_allowed_fallback(method_not_allowed)
            .with_state(state.clone());
        Self {
            state,
            ids: RequestIds::default(),
            requests: Arc::default(),
            router,
        }
    }

    /// The service for one client connection, with its own request counter.
    pub fn for_connection(&self) -> Self {
        Self {
            requests: Arc::default(),
            ..self.clone()
        }
    }

    /// The counter of requests begun on this connection, to tell an idle one.
    pub fn requests(&self) -> Arc<AtomicU64> {
        self.requests.clone()
    }

    /// The client's `x-request-id`, or a fresh one written into `headers`.
    fn request_id(&self, headers: &mut HeaderMap) -> HeaderValue {
        if let Some(id) = headers.get(&REQUEST_ID) {
            return id.clone();
        }
        let id = self.ids.next();
        headers.insert(REQUEST_ID.clone(), id.clone());
        id
    }
}

impl std::fmt::Debug for Gateway {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Gateway").finish_non_exhaustive()
    }
}

/// The future of one request.
type Handled = Pin<Box<dyn Future<Output = Result<Response, Infallible>> + Send>>;

impl hyper::service::Service<axum::http::Request<Incoming>> for Gateway {
    type Response = Response;
    type Error = Infallible;
    type Future = Handled;

    fn call(&self, mut request: axum::http::Request<Incoming>) -> Handled {
        let started = Instant::now();
        self.requests.fetch_add(1, Ordering::Relaxed);
        let headers = request.headers_mut();
        let id = self.request_id(headers);
        for name in [&header::AUTHORIZATION, &X_API_KEY] {
            if let header::Entry::Occupied(mut entry) = headers.entry(name) {
                entry.iter_mut().for_each(|value| value.set_sensitive(true));
            }
        }
        let path = request.uri().path();
        let (endpoint, name) = (ProxyEndpoint::at(path), endpoint_name(path));
        // The proxy handlers write their own access line, also when they panic
        // (their record is written as it is dropped).
        let handler_logs = endpoint.is_some() && request.method() == Method::POST;
        let state = self.state.clone();
        let router = self.router.clone();
        Box::pin(async move {
            let handled = AssertUnwindSafe(async {
                match endpoint {
                    Some(endpoint) if handler_logs => {
                        proxy::proxy(&state, endpoint, request, &id, started).await
                    }
                    Some(endpoint) => GatewayError::MethodNotAllowed(format!(
                        "{} {}",
                        request.method(),
                        request.uri().path()
                    ))
                    .to_response_in(endpoint.dialect()),
                    None => {
                        let Ok(response) = router.oneshot(request.map(Body::new)).await;
                        response
                    }
                }
            })
            .catch_unwind()
            .await;
            let mut response = handled.unwrap_or_else(panic_response);
            if !handler_logs {
                log_unless_probe(&id, name, started, &response);
            }
            response.headers_mut().insert(REQUEST_ID.clone(), id);
            Ok(response)
        })
    }
}

/// `x-api-key`, the other header a client key comes in.
static X_API_KEY: HeaderName = HeaderName::from_static("x-api-key");

/// Proof that the caller presented a known key (or that `auth.mode` is `open`).
#[derive(Debug, Clone, Copy)]
pub struct Authenticated;

impl FromRequestParts<Arc<AppState>> for Authenticated {
    type Rejection = GatewayError;

    async fn from_request_parts(
        parts: &mut Parts,
        state: &Arc<AppState>,
    ) -> Result<Self, Self::Rejection> {
        state.auth.authenticate(&parts.headers).map(|_| Self)
    }
}

/// Writes the access line of a request no handler logged (probes only at debug level).
fn log_unless_probe(
    id: &HeaderValue,
    endpoint: &'static str,
    started: Instant,
    response: &Response,
) {
    let status = response.status().as_u16();
    let outcome = response
        .extensions()
        .get::<ErrorKind>()
        .map_or("ok", |k| k.0);
    let id = id.to_str().unwrap_or("-");
    if matches!(endpoint, "health" | "ready" | "metrics") {
        // Probes come every few seconds: keep them out of the info log.
        tracing::debug!(target: "switchyard::access", request_id = id, endpoint, status, outcome, "request");
    } else {
        let mut log = AccessLog::start_at(id, endpoint, started);
        log.status(status);
        log.finish(outcome);
    }
}

/// A bounded name for a request path, for the access log.
fn endpoint_name(path: &str) -> &'static str {
    match path {
        "/v1/models" => "models",
        "/health" => "health",
        "/ready" => "ready",
        "/metrics" => "metrics",
        p if p.starts_with("/admin/") => "admin",
        _ => ProxyEndpoint::at(path).map_or("other", ProxyEndpoint::name),
    }
}

async fn not_found(request: Request) -> Response {
    GatewayError::RouteNotFound(format!("{} {}", request.method(), request.uri().path()))
        .into_response()
}

async fn method_not_allowed(request: Request) -> Response {
    GatewayError::MethodNotAllowed(format!("{} {}", request.method(), request.uri().path()))
        .into_response()
}

fn panic_response(_: Box<dyn std::any::Any + Send + 'static>) -> Response {
    tracing::error!("a request handler panicked");
    let body = r#"{"error":{"message":"internal error","type":"server_error","param":null,"code":"internal_error"}}"#;
    let mut response = (
        StatusCode::INTERNAL_SERVER_ERROR,
        [(header::CONTENT_TYPE, "application/json")],
        body,
    )
        .into_response();
    response
        .extensions_mut()
        .insert(ErrorKind("internal_error"));
    response
}
