//! The HTTP surface: the gateway's service, its routes and the shared state.
//!
//! Every request passes [`Gateway`], which in one step, without a layer stack:
//!
//! 1. keeps the client's `x-request-id` or makes one, and puts it on the response;
//! 2. marks `authorization` and `x-api-key` sensitive, so no debug output shows them;
//! 3. creates the request's [`RequestCx`], whose record ends exactly once;
//! 4. hands the proxy endpoints (`POST /v1/chat/completions`, `/v1/completions`,
//!    `/v1/embeddings`, `/v1/messages`) to the LLM pipeline ([`pipeline`]), and
//!    everything else to the axum router (`/v1/models`, `/health`, `/ready`,
//!    `/metrics`, `/admin/*`, and 404 or 405 in the client's dialect);
//! 5. turns a panic into a 500 in the client's dialect (OpenAI's, or
//!    Anthropic's on `/v1/messages`), recorded as such, not a dropped connection.
//!
//! A proxied request costs one boxed future on the way through (and a
//! stream's relay one more box, the body the server polls, see
//! `upstream::relay_sse`).

mod admin;
mod canary;
mod embed;
mod exchange;
mod health;
mod inbound;
mod pipeline;
mod proxy;
mod read;
mod request_id;
mod respond;
mod shadow;

use std::convert::Infallible;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use arc_swap::ArcSwap;
use axum::Router;
use axum::body::Body;
use axum::extract::{FromRequestParts, Request};
use axum::http::request::Parts;
use axum::http::{HeaderMap, HeaderValue, Method, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use bytes::Bytes;
use hyper::body::Incoming;
use tokio_util::sync::CancellationToken;
use tower::ServiceExt;

use crate::admission::Admission;
use crate::auth::{AdminAuth, Authenticator};
use crate::error::{Dialect, GatewayError};
use crate::headers::{REQUEST_ID, X_API_KEY};
use crate::keys::Directory;
use crate::limits::Limiter;
use crate::request::{Finish, RequestCx, catch_panic, panic_settled};
use crate::routing::{Registry, Routes};
use crate::telemetry::metrics::Metrics;
use crate::ui::{Dashboard, Place, playground};
use crate::upstream::attempts::{RetryLive, RetryPolicy};

pub use proxy::ProxyEndpoint;
use request_id::RequestIds;

/// What every handler shares: what the config made, which a reload replaces
/// whole, and what lives as long as the process.
#[derive(Debug)]
pub struct AppState {
    /// Built from the config. A request loads it once and keeps it to its
    /// end, so a reload never changes a request under way.
    pub settings: ArcSwap<Settings>,
    /// Lives for the process: carried over by a reload.
    pub process: Process,
}

/// What the config made; a reload replaces it whole.
#[derive(Debug)]
pub struct Settings {
    /// Models → deployments (handles into the process's live deployment state).
    pub routes: Routes,
    /// Client authentication.
    pub auth: Authenticator,
    /// Admin authentication (`/admin/*`).
    pub admin: AdminAuth,
    /// The server's limits on requests and answers.
    pub limits: Limits,
    /// `retries:`: what is tried again, and how long to wait.
    pub retries: RetryPolicy,
    /// `health_checks.ready_needs_every_model`.
    pub ready_needs_every_model: bool,
    /// The `GET /v1/models` body, built once.
    pub models_body: Bytes,
    /// `auth.rotation_grace`: how long a rotated key's old secret keeps
    /// working when the rotation does not say.
    pub rotation_grace: Duration,
    /// `ui:`: the dashboard.
    pub ui: crate::config::Ui,
}

/// The limits of `server:` on requests and answers.
#[derive(Debug, Clone, Copy)]
pub struct Limits {
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
}

/// What lives as long as the process, whatever the config becomes.
#[derive(Debug)]
pub struct Process {
    /// How many proxied requests are worked on at once.
    pub admission: Admission,
    /// The virtual keys and teams, in memory, following the store.
    pub keys: Arc<Directory>,
    /// Rate limits and budgets: the live counts of the models and the gateway.
    pub limits: Limiter,
    /// The deployments' live state (breakers, load, health, latency windows,
    /// canaries, their metric handles), which `Routes` hold handles into.
    pub registry: Registry,
    /// The metric registry (`/metrics`).
    pub metrics: Metrics,
    /// The retry budget and the retry counters.
    pub retries: RetryLive,
    /// The end of every request: its record's consumers.
    pub finish: Arc<Finish>,
    /// The response cache, when `cache:` turns it on.
    pub cache: Option<Arc<crate::cache::Cache>>,
    /// Whether traces are on: the client's `traceparent` is then kept.
    pub traced: bool,
    /// Bytes of each body shown in the bodies log or a span, when
    /// `telemetry.log_bodies` or `telemetry.traces.content` turns it on
    /// (their consumers are in `finish`).
    pub kept_bodies: Option<usize>,
    /// The last requests' bodies, for the dashboard, when
    /// `telemetry.log_bodies` is on (kept by its bodies log).
    pub recent_bodies: Option<Arc<crate::telemetry::bodies::recent::RecentBodies>>,
    /// False once shutdown has begun.
    pub ready: Arc<AtomicBool>,
    /// Cancelled when the shutdown grace period is over: open streams end with an error event.
    /// (Behind an `Arc`: cloning a token itself takes a lock.)
    pub cut: Arc<CancellationToken>,
    /// Reloads of the configuration, and their status.
    pub config: Arc<crate::reload::Control>,
}

/// The gateway's HTTP service: one clone per connection, shared state behind an `Arc`.
#[derive(Clone)]
pub struct Gateway {
    state: Arc<AppState>,
    ids: RequestIds,
    /// Requests begun on this service's connection (see [`Gateway::for_connection`]).
    requests: Arc<AtomicU64>,
    /// The endpoints off the proxy path.
    router: Router,
    /// The dashboard (`ui.path`).
    dashboard: Dashboard,
    /// The client's address, on a connection's service.
    peer: Option<SocketAddr>,
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
            .route("/admin/reload", post(admin::reload))
            .route("/admin/status", get(admin::status))
            .route("/admin/usage", get(admin::usage::usage))
            .route("/admin/costs", get(admin::usage::costs))
            .route("/admin/canary", get(canary::list))
            .route("/admin/canary/{model}/{action}", post(canary::act))
            .merge(admin::openapi::router())
            .fallback(not_found)
            .method_not_allowed_fallback(method_not_allowed)
            .with_state(state.clone());
        Self {
            dashboard: Dashboard::new(state.clone()),
            state,
            ids: RequestIds::default(),
            requests: Arc::default(),
            router,
            peer: None,
        }
    }

    /// The service for one connection from the client at `peer`, with its
    /// own request counter.
    pub fn for_connection(&self, peer: Option<SocketAddr>) -> Self {
        Self {
            requests: Arc::default(),
            peer,
            ..self.clone()
        }
    }

    /// The counter of requests begun on this connection, to tell an idle one.
    pub fn requests(&self) -> Arc<AtomicU64> {
        self.requests.clone()
    }

    /// The client's `x-request-id`, or a fresh one. It travels with the
    /// request's context, not in the client's header map (which would have
    /// to grow to take it).
    fn request_id(&self, headers: &HeaderMap) -> HeaderValue {
        match headers.get(&REQUEST_ID) {
            Some(id) => id.clone(),
            None => self.ids.next(),
        }
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
        let arrived = Instant::now();
        self.requests.fetch_add(1, Ordering::Relaxed);
        let headers = request.headers_mut();
        let id = self.request_id(headers);
        for name in [&header::AUTHORIZATION, &X_API_KEY] {
            if let header::Entry::Occupied(mut entry) = headers.entry(name) {
                entry.iter_mut().for_each(|value| value.set_sensitive(true));
            }
        }
        let path = request.uri().path();
        let mut endpoint = ProxyEndpoint::at(path);
        // Off the proxy paths: the dashboard's, when it is on.
        let dashboard = match endpoint {
            Some(_) => None,
            None => Dashboard::place(&self.state.settings.load().ui, path),
        };
        if dashboard == Some(Place::Chat) {
            endpoint = ProxyEndpoint::at("/v1/chat/completions");
        }
        let dialect = endpoint.map_or(Dialect::OpenAi, ProxyEndpoint::dialect);
        let cx = RequestCx::new(
            id.clone(),
            match (dashboard, endpoint) {
                (Some(Place::Page), _) => "ui",
                (_, Some(endpoint)) => endpoint.name(),
                (Some(Place::Chat) | None, None) => endpoint_name(path),
            },
            dialect,
            arrived,
            self.state.process.finish.clone(),
        );
        let state = self.state.clone();
        let router = self.router.clone();
        let ui = self.dashboard.clone();
        let peer = self.peer;
        Box::pin(async move {
            let handled = catch_panic(async {
                match endpoint {
                    Some(endpoint) if request.method() == Method::POST => {
                        let signed_in = match dashboard {
                            Some(_) => match playground::caller(&state, request.headers()).await {
                                Ok(principal) => Some(principal),
                                Err(e) => return cx.refuse(&e),
                            },
                            None => None,
                        };
                        pipeline::handle(&state, endpoint, request, &id, cx, signed_in).await
                    }
                    Some(_) => cx.refuse(&GatewayError::MethodNotAllowed(format!(
                        "{} {}",
                        request.method(),
                        request.uri().path()
                    ))),
                    None if dashboard.is_some() => {
                        let settings = state.settings.load_full();
                        let response = ui.serve(&settings.ui, request.map(Body::new), peer).await;
                        cx.answered(&response);
                        response
                    }
                    None => {
                        let Ok(response) = router.oneshot(request.map(Body::new)).await;
                        cx.answered(&response);
                        response
                    }
                }
            })
            .await;
            panic_settled();
            Ok(answer(handled, dialect, id))
        })
    }
}

/// The answer to a request: its handler's, or for one that panicked (`None`)
/// a 500 in the client's dialect; with its `x-request-id`.
fn answer(handled: Option<Response>, dialect: Dialect, id: HeaderValue) -> Response {
    let mut response = handled.unwrap_or_else(|| GatewayError::Internal.to_response_in(dialect));
    response.headers_mut().insert(REQUEST_ID.clone(), id);
    response
}

/// Proof that the caller presented a known key (or that `auth.mode` is
/// `open`): who the caller is.
#[derive(Debug, Clone)]
pub struct Authenticated(pub crate::request::Principal);

impl FromRequestParts<Arc<AppState>> for Authenticated {
    type Rejection = GatewayError;

    async fn from_request_parts(
        parts: &mut Parts,
        state: &Arc<AppState>,
    ) -> Result<Self, Self::Rejection> {
        let settings = state.settings.load_full();
        let caller = settings
            .auth
            .authenticate(&parts.headers, &state.process.keys)
            .await?;
        Ok(Self(caller.principal))
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

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::panic)]
mod tests {
    use http_body_util::BodyExt;

    use super::*;

    async fn body_of(response: Response) -> serde_json::Value {
        let bytes = response.into_body().collect().await.unwrap().to_bytes();
        serde_json::from_slice(&bytes).unwrap()
    }

    #[tokio::test]
    async fn a_handler_that_panics_gets_a_500_in_its_clients_dialect() {
        let id = HeaderValue::from_static("req-panic");
        for dialect in [Dialect::Anthropic, Dialect::OpenAi] {
            let handled = catch_panic(async {
                tokio::task::yield_now().await;
                panic!("a bug in a handler");
            })
            .await;
            panic_settled();
            let response: Response = answer(handled, dialect, id.clone());
            assert_eq!(response.status(), 500);
            assert_eq!(response.headers()[&REQUEST_ID], "req-panic");
            let body = body_of(response).await;
            match dialect {
                Dialect::Anthropic => {
                    assert_eq!(body["type"], "error", "{body}");
                    assert_eq!(body["error"]["type"], "api_error", "{body}");
                    assert_eq!(body["error"]["message"], "internal error", "{body}");
                }
                Dialect::OpenAi => {
                    assert_eq!(body["error"]["type"], "server_error", "{body}");
                    assert_eq!(body["error"]["code"], "internal_error", "{body}");
                }
            }
        }
    }

    #[test]
    fn a_stream_ended_by_an_error_gets_one_event_in_its_clients_dialect() {
        let anthropic = GatewayError::Internal.to_event_in(Dialect::Anthropic);
        let text = std::str::from_utf8(&anthropic).unwrap();
        let data = text.strip_prefix("event: error\ndata: ").unwrap();
        let body: serde_json::Value = serde_json::from_str(data.trim_end()).unwrap();
        assert_eq!(
            (&body["type"], &body["error"]["type"]),
            (&"error".into(), &"api_error".into())
        );
        let openai = GatewayError::ShuttingDown.to_event_in(Dialect::OpenAi);
        let text = std::str::from_utf8(&openai).unwrap();
        let body: serde_json::Value =
            serde_json::from_str(text.strip_prefix("data: ").unwrap().trim_end()).unwrap();
        assert_eq!(body["error"]["code"], "service_unavailable");
        assert!(text.ends_with("\n\n"));
    }
}
