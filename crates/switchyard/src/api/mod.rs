//! The HTTP surface: the router, its layers and the shared state.
//!
//! Layers, outermost first — every request passes them in this order. They wrap
//! the router once (not each route), so a request pays for each exactly once:
//!
//! 1. `CatchPanicLayer` — a bug becomes a 500 in OpenAI's shape, never a dropped connection.
//! 2. `SetSensitiveRequestHeadersLayer` — `authorization` and `x-api-key` are hidden from traces.
//! 3. `SetRequestIdLayer` — a request without `x-request-id` gets a fresh UUID-shaped id.
//! 4. `PropagateRequestIdLayer` — the response carries the same `x-request-id`.
//! 5. `access_log` — one line per request not logged by its handler (the proxy
//!    handlers log when their body ends, with usage and time to first token).
//! 6. The router, then the handler. `/v1/*` handlers take the [`Authenticated`]
//!    extractor (401 in OpenAI's shape); the proxy handlers read the body (bounded
//!    by `server.max_body_bytes` and `server.body_timeout`) → validate → route →
//!    call the provider → relay the answer (JSON or SSE).

mod health;
mod openai;
mod request_id;

use std::sync::Arc;
use std::sync::atomic::AtomicBool;
use std::time::{Duration, Instant};

use std::convert::Infallible;

use axum::body::Body;
use axum::extract::{FromRequestParts, Request};
use axum::http::request::Parts;
use axum::http::{HeaderName, StatusCode, header};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::IntoMakeService;
use axum::routing::{get, post};
use axum::{Router, ServiceExt};
use bytes::Bytes;
use tokio_util::sync::CancellationToken;
use tower::{Service, ServiceBuilder};
use tower_http::catch_panic::CatchPanicLayer;
use tower_http::request_id::{PropagateRequestIdLayer, SetRequestIdLayer};
use tower_http::sensitive_headers::SetSensitiveRequestHeadersLayer;

use crate::auth::Authenticator;
use crate::error::{ErrorKind, GatewayError};
use crate::routing::Routes;
use crate::telemetry::AccessLog;

/// What every handler shares.
#[derive(Debug)]
pub struct AppState {
    /// Models → deployments.
    pub routes: Routes,
    /// Client authentication.
    pub auth: Authenticator,
    /// `server.max_body_bytes`.
    pub max_body_bytes: usize,
    /// `server.body_timeout`.
    pub body_timeout: Duration,
    /// `server.max_stream_event_bytes`.
    pub max_stream_event_bytes: usize,
    /// False once shutdown has begun.
    pub ready: Arc<AtomicBool>,
    /// Cancelled when the shutdown grace period is over: open streams end with an error event.
    pub cut: CancellationToken,
    /// The `GET /v1/models` body, built once.
    pub models_body: Bytes,
}

/// The `x-request-id` header.
pub static REQUEST_ID: HeaderName = HeaderName::from_static("x-request-id");

/// Builds the router wrapped in its layers (see the module docs for the order),
/// ready for `axum::serve`.
pub fn app(
    state: Arc<AppState>,
) -> IntoMakeService<
    impl Service<
        Request,
        Response = Response,
        Error = Infallible,
        Future = impl Future<Output = Result<Response, Infallible>> + Send,
    > + Clone
    + Send
    + 'static,
> {
    let router = Router::new()
        .route("/v1/chat/completions", post(openai::chat_completions))
        .route("/v1/completions", post(openai::completions))
        .route("/v1/embeddings", post(openai::embeddings))
        .route("/v1/models", get(openai::models))
        .route("/health", get(health::health))
        .route("/ready", get(health::ready))
        .fallback(not_found)
        .method_not_allowed_fallback(method_not_allowed)
        .with_state(state);
    ServiceBuilder::new()
        // The panic layer boxes the body in its own type: back to axum's.
        .map_response(|response: axum::http::Response<_>| response.map(Body::new))
        .layer(CatchPanicLayer::custom(panic_response))
        .layer(SetSensitiveRequestHeadersLayer::new([
            header::AUTHORIZATION,
            HeaderName::from_static("x-api-key"),
        ]))
        .layer(SetRequestIdLayer::new(
            REQUEST_ID.clone(),
            request_id::FastRequestId::default(),
        ))
        .layer(PropagateRequestIdLayer::new(REQUEST_ID.clone()))
        .layer(middleware::from_fn(access_log))
        .service(router)
        .into_make_service()
}

/// Proof that the caller presented a known key (or that `auth.mode` is `open`).
#[derive(Debug, Clone, Copy)]
pub struct Authenticated;

impl FromRequestParts<Arc<AppState>> for Authenticated {
    type Rejection = GatewayError;

    async fn from_request_parts(
        parts: &mut Parts,
        state: &Arc<AppState>,
    ) -> Result<Self, Self::Rejection> {
        state.auth.authenticate(&parts.headers).map(|()| Self)
    }
}

/// The request id set by the layer (always present inside the router).
fn request_id(request: &Request) -> &str {
    request
        .headers()
        .get(&REQUEST_ID)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("-")
}

/// Marks a response whose handler writes the access line itself.
#[derive(Debug, Clone, Copy)]
struct HandlerLogged;

async fn access_log(request: Request, next: Next) -> Response {
    let started = Instant::now();
    let endpoint = endpoint_name(request.uri().path());
    let id = request.headers().get(&REQUEST_ID).cloned();
    let response = next.run(request).await;
    if response.extensions().get::<HandlerLogged>().is_some() {
        return response;
    }
    let status = response.status().as_u16();
    let outcome = response
        .extensions()
        .get::<ErrorKind>()
        .map_or("ok", |k| k.0);
    let id = id.as_ref().and_then(|v| v.to_str().ok()).unwrap_or("-");
    if matches!(endpoint, "health" | "ready") {
        // Probes come every few seconds: keep them out of the info log.
        tracing::debug!(target: "switchyard::access", request_id = id, endpoint, status, outcome, "request");
    } else {
        let mut log = AccessLog::start_at(id, endpoint, started);
        log.status(status);
        log.finish(outcome);
    }
    response
}

/// A bounded name for a request path, for the access log.
fn endpoint_name(path: &str) -> &'static str {
    match path {
        "/v1/chat/completions" => "chat_completions",
        "/v1/completions" => "completions",
        "/v1/embeddings" => "embeddings",
        "/v1/models" => "models",
        "/health" => "health",
        "/ready" => "ready",
        _ => "other",
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
    (
        StatusCode::INTERNAL_SERVER_ERROR,
        [(header::CONTENT_TYPE, "application/json")],
        body,
    )
        .into_response()
}
