//! The fake LLM provider behind `switchyard mock`, the gateway's in-process `kind: mock`
//! provider, the tests and the benchmarks. It speaks the OpenAI, Anthropic Messages and
//! Gemini wire formats, each with its own errors and stream framing.
//!
//! It is deterministic, in every dialect: a chat reply is `echo: ` + the last user
//! message's text, padded with filler words to `--completion-tokens` words; when tools are
//! offered and the last message is the user's text, it calls the first tool with
//! `{"echo": "<that text>"}`; after a tool result it echoes the result's text. Usage counts
//! whitespace-separated words exactly; faults (latency, failures, cut streams, in-band
//! stream errors) are decided by `--seed` and the order of requests alone.
//!
//! Routes:
//!
//! | route | answer |
//! | --- | --- |
//! | `POST /v1/chat/completions` | a `chat.completion`, or SSE chunks with `"stream": true` |
//! | `POST /v1/completions` | a `text_completion`, or SSE chunks |
//! | `POST /v1/embeddings` | unit vectors hashed from the inputs, floats or base64; for a model named `…-words` (e.g. `text-embedding-words`) bags of words instead, so texts with the same words are close (ask for a few hundred `dimensions`: in the default 8, unrelated words share dimensions) |
//! | `GET /v1/models` | a fixed list |
//! | `POST /openai/deployments/{deployment}/chat/completions`, `/completions`, `/embeddings` | Azure OpenAI: the same as the `/v1/*` routes, `?api-version=` required |
//! | `POST /v1/messages` | an Anthropic `message`, or its named SSE events with `"stream": true`; words of `cache_control` blocks are `cache_read_input_tokens` |
//! | `POST /v1beta/models/{model}:generateContent` | a Gemini `GenerateContentResponse` |
//! | `POST /v1beta/models/{model}:streamGenerateContent` | the same in chunks: SSE with `?alt=sse`, else one JSON array |
//! | `POST /v1beta/models/{model}:embedContent`, `:batchEmbedContents` | the `/v1/embeddings` vectors, in Gemini's shape |
//! | `GET /mock/stats` | `{"requests": N, "by_path": {…}, "by_status": {…}}` |
//! | `GET /mock/requests` | the last 100 requests: method, path, query, headers, JSON body |
//! | `POST /mock/reset` | zeroes the stats, forgets the requests, restarts the fault sequence |
//! | `POST /mock/faults` | `{"error_rate"?: F, "error_status"?: N, "latency_ms"?: N, "ttft_ms"?: N, "stream_fault"?: {"kind": K, "after": N}}`: changes those knobs from the next request on (the others, and `/mock/reset`, leave them); answers every knob's value. `stream_fault` applies to every stream while set: `kind` is `cut_after`, `stall_after`, `bad_json`, `huge_event` (with `"bytes": N`), `no_terminator`, `in_band_error`, or `none`; `after` content events go out first |
//!
//! Every request except `/mock/*` is counted and logged; every `/v1/*` and `/v1beta/*`
//! request waits `--latency` and may fail with `--error-status` (`--error-rate`) before it
//! is read, in the error shape of its dialect.

mod anthropic;
mod chat;
mod completions;
mod embeddings;
mod error;
mod faults;
mod gemini;
mod options;
mod reply;
mod sse;
mod stats;
mod text;

use std::future::{Future, IntoFuture};
use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::body::Body;
use axum::extract::{DefaultBodyLimit, Request, State};
use axum::http::{HeaderMap, HeaderValue, header};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::serve::ListenerExt;
use bytes::Bytes;
use serde::Serialize;
use tokio::sync::watch;

pub use options::MockOptions;

use error::{Dialect, MockError};
use faults::{Faults, Knobs};
use stats::Stats;

/// The largest request body the mock reads.
const BODY_LIMIT: usize = 32 * 1024 * 1024;

/// How long [`serve`] waits for open streams after `shutdown` resolves before it cuts them.
const SHUTDOWN_GRACE: Duration = Duration::from_secs(3);

/// The models `GET /v1/models` lists; any model name is accepted in requests.
const MODELS: [&str; 3] = ["mock-1", "mock-2", "mock-embed"];

/// The state shared by every route.
#[derive(Debug)]
struct Mock {
    options: MockOptions,
    faults: Faults,
    stats: Stats,
    /// Set when [`serve`] stops waiting for open streams.
    stop_streams: watch::Sender<bool>,
}

impl Mock {
    fn new(options: MockOptions) -> Self {
        Self {
            faults: Faults::new(&options),
            stats: Stats::default(),
            options,
            stop_streams: watch::Sender::new(false),
        }
    }

    fn pacing(&self) -> sse::Pacing {
        sse::Pacing {
            ttft: self.faults.ttft(),
            interval: self.options.token_interval(),
            stop: self.stop_streams.subscribe(),
        }
    }
}

/// Router with all routes; state inside. Whoever serves it should set TCP_NODELAY on
/// accepted connections (as [`serve`] does), or small stream writes wait for delayed ACKs.
pub fn router(options: MockOptions) -> Router {
    routes(Arc::new(Mock::new(options)))
}

fn routes(mock: Arc<Mock>) -> Router {
    Router::new()
        .route("/v1/chat/completions", post(chat::handle))
        .route("/v1/completions", post(completions::handle))
        .route("/v1/embeddings", post(embeddings::handle))
        .route("/v1/models", get(models))
        // Azure OpenAI: the deployment in the path, `api-version` required.
        .route(
            "/openai/deployments/{deployment}/chat/completions",
            post(chat::handle).layer(middleware::from_fn(azure_api_version)),
        )
        .route(
            "/openai/deployments/{deployment}/completions",
            post(completions::handle).layer(middleware::from_fn(azure_api_version)),
        )
        .route(
            "/openai/deployments/{deployment}/embeddings",
            post(embeddings::handle).layer(middleware::from_fn(azure_api_version)),
        )
        .route("/v1/messages", post(anthropic::handle))
        // axum captures whole segments: `{model}:{method}` is split by the handler.
        .route("/v1beta/models/{action}", post(gemini::handle))
        .route("/mock/stats", get(stats))
        .route("/mock/requests", get(requests))
        .route("/mock/reset", post(reset))
        .route("/mock/faults", post(set_faults))
        .fallback(not_found)
        // Outermost first:
        // 1. record: counts and logs the request (reading its body, up to BODY_LIMIT);
        // 2. the body limit is already enforced by 1, so extractors take what it read.
        .layer(DefaultBodyLimit::disable())
        .layer(middleware::from_fn_with_state(mock.clone(), record))
        .with_state(mock)
}

/// Serve on an already-bound listener until `shutdown` resolves (graceful: open
/// responses get [`SHUTDOWN_GRACE`] to finish, then streams still running are cut).
pub async fn serve(
    listener: tokio::net::TcpListener,
    options: MockOptions,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    let mock = Arc::new(Mock::new(options));
    let (stopping, stopped) = tokio::sync::oneshot::channel::<()>();
    // Without TCP_NODELAY each small SSE write after the first waits for the client's
    // delayed ACK (about 40 ms).
    let listener = listener.tap_io(|tcp| {
        let _ = tcp.set_nodelay(true);
    });
    let server = axum::serve(listener, routes(mock.clone()))
        .with_graceful_shutdown(async move {
            shutdown.await;
            let _ = stopping.send(());
        })
        .into_future();
    let deadline = async {
        if stopped.await.is_ok() {
            tokio::time::sleep(SHUTDOWN_GRACE).await;
            mock.stop_streams.send_replace(true);
        }
        // The server returns once the cut streams' connections are closed.
        std::future::pending::<()>().await;
    };
    tokio::select! {
        result = server => result,
        () = deadline => Ok(()),
    }
}

/// Counts and logs every request outside `/mock/`, and counts its answer's status.
async fn record(State(mock): State<Arc<Mock>>, request: Request, next: Next) -> Response {
    if request.uri().path().starts_with("/mock/") {
        return next.run(request).await;
    }
    let (parts, body) = request.into_parts();
    let read = axum::body::to_bytes(body, BODY_LIMIT).await;
    let logged = read.as_ref().map(Bytes::clone).unwrap_or_default();
    mock.stats.received(
        &parts.method,
        &parts.uri,
        parts.version,
        &parts.headers,
        logged,
    );
    let response = match read {
        Ok(bytes) => {
            next.run(Request::from_parts(parts, Body::from(bytes)))
                .await
        }
        // A body that cannot be read whole is over the limit (or its sender is gone).
        Err(_) => MockError::TooLarge.render(Dialect::of_path(parts.uri.path())),
    };
    mock.stats.answered(response.status());
    response
}

/// Azure OpenAI refuses a request without the `api-version` query parameter.
async fn azure_api_version(request: Request, next: Next) -> Response {
    let has_version = request
        .uri()
        .query()
        .is_some_and(|q| q.split('&').any(|pair| pair.starts_with("api-version=")));
    if has_version {
        next.run(request).await
    } else {
        MockError::invalid(
            "Missing required query parameter: api-version",
            "api-version",
        )
        .into_response()
    }
}

/// A `200 application/json` response carrying `x-request-id`.
fn json_response(value: &impl Serialize, request_id: &str) -> Result<Response, MockError> {
    let body = serde_json::to_vec(value).map_err(MockError::internal)?;
    let mut response = Response::new(Body::from(body));
    let headers = response.headers_mut();
    headers.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    insert_request_id(headers, request_id);
    Ok(response)
}

/// Names a response for the logs of whoever called the mock.
fn insert_request_id(headers: &mut HeaderMap, request_id: &str) {
    if let Ok(id) = HeaderValue::from_str(request_id) {
        headers.insert("x-request-id", id);
    }
}

/// OpenAI's `ListModelsResponse`.
#[derive(Serialize)]
struct ModelList {
    object: &'static str,
    data: [Model; MODELS.len()],
}

#[derive(Serialize)]
struct Model {
    id: &'static str,
    object: &'static str,
    created: u64,
    owned_by: &'static str,
}

/// `GET /v1/models`.
async fn models(State(mock): State<Arc<Mock>>) -> Result<Response, MockError> {
    let admission = mock.faults.admit().await?;
    json_response(
        &ModelList {
            object: "list",
            data: MODELS.map(|id| Model {
                id,
                object: "model",
                created: 0,
                owned_by: "switchyard-mock",
            }),
        },
        &admission.request_id(),
    )
}

/// `GET /mock/stats`.
async fn stats(State(mock): State<Arc<Mock>>) -> impl IntoResponse {
    axum::Json(mock.stats.snapshot())
}

/// `GET /mock/requests`.
async fn requests(State(mock): State<Arc<Mock>>) -> impl IntoResponse {
    axum::Json(mock.stats.requests())
}

/// `POST /mock/reset`.
async fn reset(State(mock): State<Arc<Mock>>) -> impl IntoResponse {
    mock.stats.reset();
    mock.faults.reset();
    axum::http::StatusCode::NO_CONTENT
}

/// `POST /mock/faults`.
async fn set_faults(State(mock): State<Arc<Mock>>, body: Bytes) -> Result<Response, MockError> {
    let knobs: Knobs = serde_json::from_slice(&body)
        .map_err(|e| MockError::invalid(format!("not a faults object: {e}"), "error_rate"))?;
    Ok(axum::Json(mock.faults.set(knobs)?).into_response())
}

/// Any other route: a 404, in Gemini's shape under `/v1beta/`, else in OpenAI's.
async fn not_found(request: Request) -> Response {
    let path = request.uri().path();
    MockError::NotFound {
        method: request.method().to_string(),
        path: path.to_owned(),
    }
    .render(Dialect::of_path(path))
}
