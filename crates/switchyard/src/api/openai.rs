//! The OpenAI-dialect endpoints: pass-through to OpenAI-compatible providers.

use std::sync::Arc;

use axum::extract::State;
use axum::http::Request;
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use bytes::Bytes;
use http_body_util::{BodyExt, LengthLimitError, Limited};
use hyper::body::Incoming;
use switchyard_providers::openai::{Endpoint, RequestBody};
use tokio::time::Instant;

use super::{AppState, Authenticated};
use crate::error::GatewayError;
use crate::routing::Target;
use crate::telemetry::AccessLog;
use crate::upstream::{RelayLimits, relay_json, relay_sse};

/// `GET /v1/models`: the configured public models.
pub async fn models(State(state): State<Arc<AppState>>, _: Authenticated) -> Response {
    (
        [(header::CONTENT_TYPE, "application/json")],
        state.models_body.clone(),
    )
        .into_response()
}

/// The access log's name for a proxy endpoint.
pub fn name_of(endpoint: Endpoint) -> &'static str {
    match endpoint {
        Endpoint::ChatCompletions => "chat_completions",
        Endpoint::Completions => "completions",
        Endpoint::Embeddings => "embeddings",
    }
}

/// `POST /v1/chat/completions`, `/v1/completions` and `/v1/embeddings`: checks the
/// key, validates, routes, calls the provider and relays its answer; writes the
/// access line itself (when the body ends, for a success).
pub async fn proxy(
    state: &AppState,
    endpoint: Endpoint,
    request: Request<Incoming>,
    request_id: &HeaderValue,
    arrived: std::time::Instant,
) -> Response {
    let mut log = AccessLog::start_at(
        request_id.to_str().unwrap_or("-"),
        name_of(endpoint),
        arrived,
    );
    if let Err(e) = state.auth.authenticate(request.headers()) {
        return fail(log, &e);
    }
    match prepare(state, endpoint, request, &mut log).await {
        Err(e) => fail(log, &e),
        Ok(call) => {
            let mut response = forward(state, endpoint, request_id, &call, log).await;
            let headers = response.headers_mut();
            headers.insert("x-switchyard-provider", call.target.provider_header.clone());
            headers.insert("x-switchyard-model", call.target.model_header.clone());
            response
        }
    }
}

/// Sends the call and turns the provider's answer into the client's response.
async fn forward(
    state: &AppState,
    endpoint: Endpoint,
    request_id: &HeaderValue,
    call: &Call<'_>,
    mut log: AccessLog,
) -> Response {
    let provider = &call.target.provider;
    let sent = Instant::now();
    let deadline = sent + provider.timeouts.total;
    let upstream = match provider
        .send(
            endpoint,
            call.body.clone(),
            call.stream,
            request_id,
            sent,
            deadline,
        )
        .await
    {
        Ok(upstream) => upstream,
        Err(e) => return fail(log, &GatewayError::from(e)),
    };
    log.status(StatusCode::OK.as_u16());
    let limits = RelayLimits {
        idle: provider.timeouts.idle,
        deadline,
        max_event_bytes: state.max_stream_event_bytes,
        cut: state.cut.clone(),
    };
    let is_sse = upstream
        .headers()
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.starts_with("text/event-stream"));
    if call.stream && is_sse {
        let mut response = Response::new(relay_sse(
            upstream,
            provider.clone(),
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
        let mut response = Response::new(relay_json(upstream, provider.clone(), limits, log));
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
    }
}

fn fail(mut log: AccessLog, error: &GatewayError) -> Response {
    log.status(error.status().as_u16());
    log.fail(error.kind(), &error.to_string());
    error.to_response()
}

/// A request ready to send upstream.
struct Call<'a> {
    target: &'a Target,
    body: Bytes,
    stream: bool,
    /// The gateway asked for usage on its own and must not pass it on.
    strip_usage: bool,
}

/// Reads, validates and routes the request.
async fn prepare<'a>(
    state: &'a AppState,
    endpoint: Endpoint,
    request: Request<Incoming>,
    log: &mut AccessLog,
) -> Result<Call<'a>, GatewayError> {
    let body = tokio::time::timeout(state.body_timeout, read_body(request, state.max_body_bytes))
        .await
        .map_err(|_| GatewayError::BodyTimeout(state.body_timeout))??;
    let parsed = RequestBody::parse(endpoint, &body)?;
    log.request(parsed.model(), parsed.stream());
    let target = state.routes.pick(parsed.model())?;
    log.route(&target.provider.name, &target.upstream_model);
    Ok(Call {
        target,
        body: Bytes::from(parsed.to_upstream(&target.upstream_model)),
        stream: parsed.stream(),
        strip_usage: parsed.stream() && !parsed.include_usage(),
    })
}

/// The whole request body, refused with 413 past `limit` bytes.
async fn read_body(request: Request<Incoming>, limit: usize) -> Result<Bytes, GatewayError> {
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
