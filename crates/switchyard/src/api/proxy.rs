//! The proxy endpoints: OpenAI's (`/v1/chat/completions`, `/v1/completions`,
//! `/v1/embeddings`) and Anthropic's (`/v1/messages`), to a provider of any
//! dialect.
//!
//! When the client's dialect is the provider's, the request passes through
//! with only `model` rewritten and the answer is relayed as it arrives. Between
//! dialects, the request is translated through the OpenAI chat shapes
//! (`switchyard_providers::translate`); a streamed answer is translated event by
//! event, a JSON answer once it is whole. Fields a translation leaves out are
//! named in `x-switchyard-dropped-fields`.

use std::sync::Arc;

use axum::extract::State;
use axum::http::{HeaderValue, Request, StatusCode, Uri, header};
use axum::response::{IntoResponse, Response};
use bytes::Bytes;
use http_body_util::{BodyExt, LengthLimitError, Limited};
use hyper::body::Incoming;
use serde::de::DeserializeOwned;
use switchyard_providers::openai::chat::{ChatCompletion, ChatRequest, StreamOptions};
use switchyard_providers::openai::embedding::EmbeddingRequest;
use switchyard_providers::openai::{
    ChunkDecoder, ChunkEncoder, Endpoint, InvalidRequest, RequestBody, Usage,
};
use switchyard_providers::translate::{StreamDecoder, StreamEncoder};
use switchyard_providers::{anthropic, gemini};
use tokio::time::Instant;

use super::{AppState, Authenticated};
use crate::error::{Dialect, GatewayError};
use crate::routing::Target;
use crate::telemetry::AccessLog;
use crate::upstream::{
    ANTHROPIC_BETA, BodyUsage, Outgoing, RelayLimits, StreamMode, UpstreamError, Wire, read_whole,
    relay_json, relay_sse,
};

/// `x-switchyard-dropped-fields`: request fields a translation left out.
static DROPPED_FIELDS: axum::http::HeaderName =
    axum::http::HeaderName::from_static("x-switchyard-dropped-fields");

/// `GET /v1/models`: the configured public models.
pub async fn models(State(state): State<Arc<AppState>>, _: Authenticated) -> Response {
    (
        [(header::CONTENT_TYPE, "application/json")],
        state.models_body.clone(),
    )
        .into_response()
}

/// A proxy endpoint, in the dialect its clients speak.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ProxyEndpoint {
    /// An OpenAI endpoint.
    OpenAi(Endpoint),
    /// Anthropic's `POST /v1/messages`.
    Messages,
}

impl ProxyEndpoint {
    /// The proxy endpoint at `path`, if it is one.
    pub fn at(path: &str) -> Option<Self> {
        match path {
            "/v1/chat/completions" => Some(Self::OpenAi(Endpoint::ChatCompletions)),
            "/v1/completions" => Some(Self::OpenAi(Endpoint::Completions)),
            "/v1/embeddings" => Some(Self::OpenAi(Endpoint::Embeddings)),
            "/v1/messages" => Some(Self::Messages),
            _ => None,
        }
    }

    /// The access log's name for it.
    pub fn name(self) -> &'static str {
        match self {
            Self::OpenAi(Endpoint::ChatCompletions) => "chat_completions",
            Self::OpenAi(Endpoint::Completions) => "completions",
            Self::OpenAi(Endpoint::Embeddings) => "embeddings",
            Self::Messages => "messages",
        }
    }

    /// The dialect of its clients (and so of its errors).
    pub fn dialect(self) -> Dialect {
        match self {
            Self::OpenAi(_) => Dialect::OpenAi,
            Self::Messages => Dialect::Anthropic,
        }
    }
}

/// Checks the key, validates, routes, calls the provider and relays its answer
/// in the client's dialect; writes the access line itself (when the body
/// ends, for a success).
pub async fn proxy(
    state: &AppState,
    endpoint: ProxyEndpoint,
    request: Request<Incoming>,
    request_id: &HeaderValue,
    arrived: std::time::Instant,
) -> Response {
    let dialect = endpoint.dialect();
    let mut log = AccessLog::start_at(request_id.to_str().unwrap_or("-"), endpoint.name(), arrived);
    if let Err(e) = state.auth.authenticate(request.headers()) {
        return fail(log, &e, dialect);
    }
    // The one client header that goes upstream, to an Anthropic provider of an
    // Anthropic client only (see `prepare_messages`).
    let beta = match endpoint {
        ProxyEndpoint::Messages => anthropic_beta(request.headers()),
        ProxyEndpoint::OpenAi(_) => None,
    };
    match prepare(state, endpoint, request, &mut log).await {
        Err(e) => fail(log, &e, dialect),
        Ok(call) => {
            let beta = beta.filter(|_| call.answer_is(Answer::Anthropic));
            let mut response = forward(state, request_id, beta.as_ref(), &call, log).await;
            let headers = response.headers_mut();
            headers.insert("x-switchyard-provider", call.target.provider_header.clone());
            headers.insert("x-switchyard-model", call.target.model_header.clone());
            if !call.dropped.is_empty() {
                headers.insert(DROPPED_FIELDS.clone(), dropped_header(&call.dropped));
            }
            response
        }
    }
}

/// Every `anthropic-beta` header of the client, joined.
fn anthropic_beta(headers: &axum::http::HeaderMap) -> Option<HeaderValue> {
    let mut values = headers.get_all(&ANTHROPIC_BETA).iter();
    let first = values.next()?;
    let rest: Vec<&[u8]> = values.map(HeaderValue::as_bytes).collect();
    if rest.is_empty() {
        return Some(first.clone());
    }
    let mut joined = first.as_bytes().to_vec();
    for value in rest {
        joined.extend_from_slice(b", ");
        joined.extend_from_slice(value);
    }
    HeaderValue::from_bytes(&joined).ok()
}

/// `x-switchyard-dropped-fields`: the names joined by `, `, any byte that
/// cannot stand in a header (a client's key may hold anything) written as `?`.
fn dropped_header(names: &[String]) -> HeaderValue {
    let text: String = names
        .join(", ")
        .chars()
        .map(|c| {
            if c.is_ascii_graphic() || c == ' ' {
                c
            } else {
                '?'
            }
        })
        .collect();
    HeaderValue::from_str(&text).unwrap_or(HeaderValue::from_static("?"))
}

/// A request ready to send upstream.
struct Call<'a> {
    target: &'a Target,
    uri: &'a Uri,
    body: Bytes,
    stream: bool,
    dialect: Dialect,
    answer: Answer,
    /// Fields the translation left out, for `x-switchyard-dropped-fields`.
    dropped: Vec<String>,
}

impl Call<'_> {
    fn answer_is(&self, answer: Answer) -> bool {
        std::mem::discriminant(&self.answer) == std::mem::discriminant(&answer)
    }
}

/// What becomes of the provider's answer.
#[derive(Debug, Clone, Copy)]
enum Answer {
    /// OpenAI to OpenAI, passed through; `strip_usage` when the gateway asked
    /// for stream usage on its own and must not pass it on.
    OpenAi { strip_usage: bool },
    /// Anthropic to Anthropic, passed through.
    Anthropic,
    /// A chat answer translated into the client's dialect.
    Chat {
        /// The (OpenAI) client asked for usage in its stream.
        include_usage: bool,
    },
    /// Gemini embeddings, translated into OpenAI's.
    GeminiEmbeddings {
        /// The client asked for base64 vectors.
        base64: bool,
    },
}

/// Reads, validates, routes and translates the request.
async fn prepare<'a>(
    state: &'a AppState,
    endpoint: ProxyEndpoint,
    request: Request<Incoming>,
    log: &mut AccessLog,
) -> Result<Call<'a>, GatewayError> {
    let body = tokio::time::timeout(state.body_timeout, read_body(request, state.max_body_bytes))
        .await
        .map_err(|_| GatewayError::BodyTimeout(state.body_timeout))??;
    match endpoint {
        ProxyEndpoint::OpenAi(endpoint) => prepare_openai(state, endpoint, &body, log),
        ProxyEndpoint::Messages => prepare_messages(state, &body, log),
    }
}

/// An OpenAI request: passed through to OpenAI-compatible providers, translated
/// for the others.
fn prepare_openai<'a>(
    state: &'a AppState,
    endpoint: Endpoint,
    body: &[u8],
    log: &mut AccessLog,
) -> Result<Call<'a>, GatewayError> {
    let parsed = RequestBody::parse(endpoint, body)?;
    let stream = parsed.stream();
    log.request(parsed.model(), stream);
    let target = state.routes.pick(parsed.model())?;
    log.route(&target.provider.name, &target.upstream_model);
    let urls = &target.urls;
    let mut call = Call {
        target,
        uri: &urls.chat,
        body: Bytes::new(),
        stream,
        dialect: Dialect::OpenAi,
        answer: Answer::OpenAi {
            strip_usage: stream && !parsed.include_usage(),
        },
        dropped: Vec::new(),
    };
    match (target.provider.wire, endpoint) {
        (Wire::OpenAi, _) => {
            call.uri = match endpoint {
                Endpoint::ChatCompletions => Some(&urls.chat),
                Endpoint::Completions => urls.completions.as_ref(),
                Endpoint::Embeddings => urls.embeddings.as_ref(),
            }
            .ok_or_else(|| not_served(parsed.model(), target, endpoint))?;
            call.body = Bytes::from(parsed.to_upstream(&target.upstream_model));
        }
        (wire @ (Wire::Anthropic | Wire::Gemini), Endpoint::ChatCompletions) => {
            let request: ChatRequest = typed(body)?;
            let encoded = match wire {
                Wire::Anthropic => anthropic::encode_request(
                    &request,
                    &target.upstream_model,
                    u64::from(target.max_output_tokens),
                )?,
                _ => gemini::encode_request(&request)?,
            };
            call.uri = if stream {
                &urls.chat_stream
            } else {
                &urls.chat
            };
            call.body = Bytes::from(encoded.body);
            call.dropped = encoded.dropped;
            call.answer = Answer::Chat {
                include_usage: request.wants_stream_usage(),
            };
        }
        (Wire::Gemini, Endpoint::Embeddings) => {
            let request: EmbeddingRequest = typed(body)?;
            let encoded = gemini::encode_embeddings(&request, &target.upstream_model)?;
            call.uri = urls
                .embeddings
                .as_ref()
                .ok_or_else(|| not_served(parsed.model(), target, endpoint))?;
            call.body = Bytes::from(encoded.body);
            call.dropped = encoded.dropped;
            call.answer = Answer::GeminiEmbeddings {
                base64: request.encoding_format.as_deref() == Some("base64"),
            };
        }
        (_, endpoint) => return Err(not_served(parsed.model(), target, endpoint)),
    }
    Ok(call)
}

/// An Anthropic request: passed through to Anthropic, translated for the others.
fn prepare_messages<'a>(
    state: &'a AppState,
    body: &[u8],
    log: &mut AccessLog,
) -> Result<Call<'a>, GatewayError> {
    let peek = anthropic::peek(body)?;
    log.request(&peek.model, peek.stream);
    let target = state.routes.pick(&peek.model)?;
    log.route(&target.provider.name, &target.upstream_model);
    let urls = &target.urls;
    let mut call = Call {
        target,
        uri: if peek.stream {
            &urls.chat_stream
        } else {
            &urls.chat
        },
        body: Bytes::new(),
        stream: peek.stream,
        dialect: Dialect::Anthropic,
        answer: Answer::Anthropic,
        dropped: Vec::new(),
    };
    if target.provider.wire == Wire::Anthropic {
        call.body = Bytes::from(anthropic::with_model(body, &peek, &target.upstream_model));
        return Ok(call);
    }
    let decoded = anthropic::decode_request(body)?;
    let mut request = decoded.request;
    call.dropped = decoded.dropped;
    call.answer = Answer::Chat {
        include_usage: false,
    };
    if target.provider.wire == Wire::Gemini {
        let encoded = gemini::encode_request(&request)?;
        call.body = Bytes::from(encoded.body);
        // Named as the Anthropic client sent them.
        call.dropped
            .extend(encoded.dropped.into_iter().map(|name| match name.as_str() {
                "user" => "metadata.user_id".to_owned(),
                "parallel_tool_calls" => "tool_choice.disable_parallel_tool_use".to_owned(),
                _ => name,
            }));
    } else {
        request.model.clone_from(&target.upstream_model);
        if peek.stream {
            // OpenAI-compatible providers stream usage only when asked.
            request.stream_options = Some(StreamOptions {
                include_usage: Some(true),
                ..StreamOptions::default()
            });
        }
        call.body = Bytes::from(serde_json::to_vec(&request).map_err(|e| {
            GatewayError::InvalidRequest(InvalidRequest {
                message: format!("the request cannot be translated: {e}"),
                param: None,
            })
        })?);
    }
    Ok(call)
}

/// The body read as `T`, or a 400 saying why it is not one.
fn typed<T: DeserializeOwned>(body: &[u8]) -> Result<T, GatewayError> {
    serde_json::from_slice(body).map_err(|e| {
        GatewayError::InvalidRequest(InvalidRequest {
            message: format!("the request body is not valid: {e}"),
            param: None,
        })
    })
}

fn not_served(model: &str, target: &Target, endpoint: Endpoint) -> GatewayError {
    GatewayError::EndpointNotServed {
        model: model.to_owned(),
        kind: target.provider.kind.as_str(),
        endpoint: ProxyEndpoint::OpenAi(endpoint).name(),
    }
}

/// Sends the call and turns the provider's answer into the client's response.
async fn forward(
    state: &AppState,
    request_id: &HeaderValue,
    anthropic_beta: Option<&HeaderValue>,
    call: &Call<'_>,
    mut log: AccessLog,
) -> Response {
    let provider = &call.target.provider;
    let sent = Instant::now();
    let deadline = sent + provider.timeouts.total;
    let outgoing = Outgoing {
        uri: call.uri,
        body: call.body.clone(),
        stream: call.stream,
        request_id,
        anthropic_beta,
        sent,
        deadline,
    };
    let upstream = match provider.send(outgoing).await {
        Ok(upstream) => upstream,
        Err(e) => return fail(log, &GatewayError::from(e), call.dialect),
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
    let usage = match call.answer {
        Answer::OpenAi { strip_usage } if call.stream && is_sse => {
            return sse_response(relay_sse(
                upstream,
                provider.clone(),
                limits,
                StreamMode::OpenAi { strip_usage },
                call.dialect,
                log,
            ));
        }
        Answer::Anthropic if call.stream && is_sse => {
            return sse_response(relay_sse(
                upstream,
                provider.clone(),
                limits,
                StreamMode::Anthropic,
                call.dialect,
                log,
            ));
        }
        Answer::Chat { include_usage } if call.stream && is_sse => {
            let mode = StreamMode::Translate {
                decoder: decoder_for(call),
                encoder: encoder_for(call, include_usage),
            };
            return sse_response(relay_sse(
                upstream,
                provider.clone(),
                limits,
                mode,
                call.dialect,
                log,
            ));
        }
        Answer::OpenAi { .. } => BodyUsage::OpenAi,
        Answer::Anthropic => BodyUsage::Anthropic,
        Answer::Chat { .. } | Answer::GeminiEmbeddings { .. } => {
            return translate_json(state, upstream, call, &limits, log).await;
        }
    };
    let length = upstream.headers().get(header::CONTENT_LENGTH).cloned();
    let mut response = Response::new(relay_json(upstream, provider.clone(), limits, usage, log));
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

fn sse_response(body: axum::body::Body) -> Response {
    let mut response = Response::new(body);
    let headers = response.headers_mut();
    headers.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/event-stream"),
    );
    headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-cache"));
    headers.insert("x-accel-buffering", HeaderValue::from_static("no"));
    response
}

/// Reads the provider's event stream.
fn decoder_for(call: &Call<'_>) -> Box<dyn StreamDecoder> {
    match call.target.provider.wire {
        Wire::OpenAi => Box::new(ChunkDecoder::default()),
        Wire::Anthropic => Box::new(anthropic::MessageStreamDecoder::new(unix_now())),
        Wire::Gemini => Box::new(gemini::GenerateStreamDecoder::new(
            &call.target.upstream_model,
            unix_now(),
        )),
    }
}

/// Writes the client's event stream.
fn encoder_for(call: &Call<'_>, include_usage: bool) -> Box<dyn StreamEncoder> {
    match call.dialect {
        Dialect::OpenAi => Box::new(ChunkEncoder::new(include_usage)),
        Dialect::Anthropic => Box::new(anthropic::MessageStreamEncoder::new(
            &call.target.upstream_model,
        )),
    }
}

/// Reads the provider's whole JSON answer and writes it in the client's dialect.
async fn translate_json(
    state: &AppState,
    upstream: crate::upstream::UpstreamResponse,
    call: &Call<'_>,
    limits: &RelayLimits,
    mut log: AccessLog,
) -> Response {
    let provider = &call.target.provider;
    let body = match read_whole(upstream, provider.clone(), limits, state.max_response_bytes).await
    {
        Ok(body) => body,
        Err(e) => return fail(log, &e, call.dialect),
    };
    log.first_token();
    let translated = translate_answer(call, &body).map_err(|detail| {
        GatewayError::Upstream(UpstreamError::Protocol {
            provider: provider.name.to_string(),
            detail: provider.scrub(&detail),
        })
    });
    match translated {
        Ok(answer) => {
            if let Some(usage) = answer.usage {
                log.usage(usage);
            }
            log.finish("ok");
            if answer.stream {
                sse_response(axum::body::Body::from(answer.body))
            } else {
                ([(header::CONTENT_TYPE, "application/json")], answer.body).into_response()
            }
        }
        Err(e) => fail(log, &e, call.dialect),
    }
}

/// A whole answer translated into the client's dialect.
struct Translated {
    body: Vec<u8>,
    /// An event stream (the client asked for one, the provider answered at once).
    stream: bool,
    usage: Option<Usage>,
}

/// The provider's answer in the client's dialect, and its usage.
fn translate_answer(call: &Call<'_>, body: &[u8]) -> Result<Translated, String> {
    let target = call.target;
    if let Answer::GeminiEmbeddings { base64 } = call.answer {
        let list =
            gemini::decode_embeddings(body, &target.upstream_model, base64).map_err(|e| e.0)?;
        // Gemini's batch endpoint counts no tokens: none is logged rather than zero.
        let usage = (list.usage.total_tokens > 0).then_some(Usage {
            prompt_tokens: list.usage.prompt_tokens,
            completion_tokens: 0,
            total_tokens: list.usage.total_tokens,
        });
        return Ok(Translated {
            body: serde_json::to_vec(&list).map_err(|e| e.to_string())?,
            stream: false,
            usage,
        });
    }
    let completion: ChatCompletion = match target.provider.wire {
        Wire::OpenAi => serde_json::from_slice(body).map_err(|e| e.to_string())?,
        Wire::Anthropic => anthropic::decode_response(body, unix_now()).map_err(|e| e.0)?,
        Wire::Gemini => {
            gemini::decode_response(body, &target.upstream_model, unix_now()).map_err(|e| e.0)?
        }
    };
    let usage = completion.usage.map(|u| u.totals());
    if let (true, Answer::Chat { include_usage }) = (call.stream, call.answer) {
        let mut encoder = encoder_for(call, include_usage);
        let mut out = bytes::BytesMut::new();
        for chunk in completion.into_chunks() {
            encoder.chunk(&chunk, &mut out);
        }
        encoder.done(&mut out);
        return Ok(Translated {
            body: out.to_vec(),
            stream: true,
            usage,
        });
    }
    let body = match call.dialect {
        Dialect::OpenAi => serde_json::to_vec(&completion).map_err(|e| e.to_string())?,
        Dialect::Anthropic => anthropic::encode_response(&completion),
    };
    Ok(Translated {
        body,
        stream: false,
        usage,
    })
}

fn unix_now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

fn fail(mut log: AccessLog, error: &GatewayError, dialect: Dialect) -> Response {
    log.status(error.status_in(dialect).as_u16());
    log.fail(error.kind(), &error.to_string());
    error.to_response_in(dialect)
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

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn the_dropped_fields_header_shows_every_name() {
        let names = ["seed".to_owned(), "bad\nkey\u{e9}".to_owned()];
        assert_eq!(dropped_header(&names), "seed, bad?key?");
    }

    #[test]
    fn every_anthropic_beta_header_is_passed_on() {
        let mut headers = axum::http::HeaderMap::new();
        assert!(anthropic_beta(&headers).is_none());
        headers.append(&ANTHROPIC_BETA, HeaderValue::from_static("a-2025"));
        assert_eq!(anthropic_beta(&headers).unwrap(), "a-2025");
        headers.append(&ANTHROPIC_BETA, HeaderValue::from_static("b-2025"));
        assert_eq!(anthropic_beta(&headers).unwrap(), "a-2025, b-2025");
    }
}
