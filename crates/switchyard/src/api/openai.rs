//! The OpenAI-dialect endpoints: pass-through to OpenAI-compatible providers.

use std::sync::Arc;

use axum::extract::{Request, State};
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use http_body_util::{BodyExt, LengthLimitError, Limited};
use switchyard_providers::openai::{Endpoint, RequestBody};
use tokio::time::Instant;

use super::{AppState, REQUEST_ID, request_id};
use crate::error::GatewayError;
use crate::telemetry::AccessLog;
use crate::upstream::{ProviderClient, RelayLimits, relay_json, relay_sse};

/// `POST /v1/chat/completions`
pub async fn chat_completions(State(state): State<Arc<AppState>>, request: Request) -> Response {
    proxy(&state, Endpoint::ChatCompletions, request).await
}

/// `POST /v1/completions`
pub async fn completions(State(state): State<Arc<AppState>>, request: Request) -> Response {
    proxy(&state, Endpoint::Completions, request).await
}

/// `POST /v1/embeddings`
pub async fn embeddings(State(state): State<Arc<AppState>>, request: Request) -> Response {
    proxy(&state, Endpoint::Embeddings, request).await
}

/// `GET /v1/models`: the configured public models.
pub async fn models(State(state): State<Arc<AppState>>) -> Response {
    (
        [(header::CONTENT_TYPE, "application/json")],
        state.models_body.clone(),
    )
        .into_response()
}

/// A bounded name for a request path, for the access log.
pub fn endpoint_name(path: &str) -> &'static str {
    match path {
        "/v1/chat/completions" => "chat_completions",
        "/v1/completions" => "completions",
        "/v1/embeddings" => "embeddings",
        "/v1/models" => "models",
        _ => "other",
    }
}

fn name_of(endpoint: Endpoint) -> &'static str {
    match endpoint {
        Endpoint::ChatCompletions => "chat_completions",
        Endpoint::Completions => "completions",
        Endpoint::Embeddings => "embeddings",
    }
}

async fn proxy(state: &AppState, endpoint: Endpoint, request: Request) -> Response {
    let mut log = AccessLog::start(request_id(&request), name_of(endpoint));
    let request_id = request
        .headers()
        .get(&REQUEST_ID)
        .cloned()
        .unwrap_or(HeaderValue::from_static("-"));
    let call = match prepare(state, endpoint, request, &mut log).await {
        Ok(call) => call,
        Err(e) => return fail(log, &e),
    };
    let deadline = Instant::now() + call.provider.timeouts.total;
    let upstream = match call
        .provider
        .send(endpoint, call.body, call.stream, &request_id, deadline)
        .await
    {
        Ok(upstream) => upstream,
        Err(e) => return fail(log, &GatewayError::from(e)),
    };
    log.status(StatusCode::OK.as_u16());
    let limits = RelayLimits {
        idle: call.provider.timeouts.idle,
        deadline,
        max_event_bytes: state.max_stream_event_bytes,
    };
    let is_sse = upstream
        .headers()
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.starts_with("text/event-stream"));
    let provider_header =
        HeaderValue::from_str(&call.provider.name).unwrap_or(HeaderValue::from_static("-"));
    let model_header =
        HeaderValue::from_str(&call.upstream_model).unwrap_or(HeaderValue::from_static("-"));
    let mut response = if call.stream && is_sse {
        let mut response = Response::new(relay_sse(
            upstream,
            call.provider,
            limits,
            call.strip_usage,
            log,
        ));
        let headers = response.headers_mut();
        headers.insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static("text/event-stream"),
        );
        headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-cache"));
        headers.insert("x-accel-buffering", HeaderValue::from_static("no"));
        response
    } else {
        let length = upstream.headers().get(header::CONTENT_LENGTH).cloned();
        let mut response = Response::new(relay_json(upstream, call.provider, limits, log));
        let headers = response.headers_mut();
        headers.insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static("application/json"),
        );
        // Known length: one write instead of chunked framing.
        if let Some(length) = length {
            headers.insert(header::CONTENT_LENGTH, length);
        }
        response
    };
    let headers = response.headers_mut();
    headers.insert("x-switchyard-provider", provider_header);
    headers.insert("x-switchyard-model", model_header);
    response
}

fn fail(mut log: AccessLog, error: &GatewayError) -> Response {
    log.status(error.status().as_u16());
    log.finish(error.kind());
    error.to_response()
}

/// A request ready to send upstream.
struct Call {
    provider: Arc<ProviderClient>,
    upstream_model: String,
    body: Vec<u8>,
    stream: bool,
    /// The gateway asked for usage on its own and must not pass it on.
    strip_usage: bool,
}

/// Reads, validates and routes the request.
async fn prepare(
    state: &AppState,
    endpoint: Endpoint,
    request: Request,
    log: &mut AccessLog,
) -> Result<Call, GatewayError> {
    let body = tokio::time::timeout(state.body_timeout, read_body(request, state.max_body_bytes))
        .await
        .map_err(|_| GatewayError::BodyTimeout(state.body_timeout))??;
    let parsed = RequestBody::parse(endpoint, &body)?;
    log.request(parsed.model(), parsed.stream());
    let target = state.routes.pick(parsed.model())?;
    log.route(&target.provider.name, &target.upstream_model);
    Ok(Call {
        provider: target.provider.clone(),
        upstream_model: target.upstream_model.clone(),
        body: parsed.to_upstream(&target.upstream_model),
        stream: parsed.stream(),
        strip_usage: parsed.stream() && !parsed.include_usage(),
    })
}

/// The whole request body, refused with 413 past `limit` bytes.
async fn read_body(request: Request, limit: usize) -> Result<bytes::Bytes, GatewayError> {
    let declared = request
        .headers()
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    if declared.is_some_and(|len| len > limit as u64) {
        return Err(GatewayError::PayloadTooLarge { limit });
    }
    match Limited::new(request.into_body(), limit).collect().await {
        Ok(collected) => Ok(collected.to_bytes()),
        Err(e) if e.downcast_ref::<LengthLimitError>().is_some() => {
            Err(GatewayError::PayloadTooLarge { limit })
        }
        Err(e) => Err(GatewayError::BodyRead(e.to_string())),
    }
}
