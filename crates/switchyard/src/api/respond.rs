//! The provider's answer as the client gets it: relayed as it arrives (an
//! event stream event by event, a JSON body chunk by chunk), or read whole
//! and translated into the client's dialect.

use std::sync::Arc;

use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use bytes::Bytes;
use switchyard_providers::openai::chat::ChatCompletion;
use switchyard_providers::openai::{ChunkDecoder, ChunkEncoder, Usage, usage_of_response};
use switchyard_providers::translate::{StreamDecoder, StreamEncoder};
use switchyard_providers::{anthropic, gemini};
use tokio::time::Instant;

use super::exchange::Forward;
use super::inbound::Answer;
use crate::cache::{Entry, Replay, Status, Stitch};
use crate::error::{Dialect, GatewayError};
use crate::headers::{ATTEMPTS, CACHE, CACHE_SIMILARITY, ROUTE, X_ACCEL_BUFFERING};
use crate::pricing::{ModelPrice, Tokens};
use crate::request::RequestCx;
use crate::routing::Target;
use crate::upstream::{
    BodyUsage, FirstContent, StreamMode, UpstreamError, UpstreamResponse, Wire, relay_json,
    relay_sse,
};

/// What becomes of a call's answer: all an attempt needs to know of the call
/// once it is sent.
#[derive(Debug, Clone, Copy)]
pub(super) struct Shape {
    /// How the answer is passed on.
    pub(super) answer: Answer,
    /// Whether the client asked for a stream.
    pub(super) stream: bool,
    /// The client's dialect.
    pub(super) dialect: Dialect,
}

/// A provider's answer that has begun, ready for the client.
pub(super) enum Begun {
    /// Passed on as it arrives: the response, what was read of a stream so
    /// far, and how.
    Relay {
        upstream: UpstreamResponse,
        first: Option<Box<FirstContent>>,
        how: Relayed,
    },
    /// Read whole and translated.
    Whole(Translated),
}

/// How a provider's answer is passed on as it arrives.
pub(super) enum Relayed {
    /// An event stream, in this mode.
    Stream(StreamMode),
    /// A JSON body, its usage read where the dialect keeps it.
    Json(BodyUsage),
}

/// How `upstream` of `target` is relayed to the client; `None` when the
/// client gets it only whole and translated (a JSON answer between dialects).
pub(super) fn relayed(
    shape: Shape,
    target: &Target,
    upstream: &UpstreamResponse,
) -> Option<Relayed> {
    let stream = shape.stream && is_sse(upstream);
    Some(match shape.answer {
        Answer::OpenAi { strip_usage } if stream => {
            Relayed::Stream(StreamMode::OpenAi { strip_usage })
        }
        Answer::Anthropic if stream => Relayed::Stream(StreamMode::Anthropic),
        Answer::Chat { include_usage } if stream => Relayed::Stream(StreamMode::Translate {
            decoder: decoder_for(target),
            encoder: encoder_for(shape.dialect, target, include_usage),
        }),
        Answer::OpenAi { .. } => Relayed::Json(BodyUsage::OpenAi),
        Answer::Anthropic => Relayed::Json(BodyUsage::Anthropic),
        Answer::Chat { .. } | Answer::GeminiEmbeddings { .. } => return None,
    })
}

/// Whether the provider answers with an event stream.
pub(super) fn is_sse(upstream: &UpstreamResponse) -> bool {
    upstream
        .headers()
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.starts_with("text/event-stream"))
}

/// The client's response for an answer of `target` that has begun; the
/// request ends when its body does.
pub(super) fn respond(
    begun: Begun,
    target: &Target,
    dialect: Dialect,
    forward: &Forward<'_>,
    deadline: Instant,
    mut cx: RequestCx,
) -> Response {
    cx.set_status(StatusCode::OK.as_u16());
    let (upstream, first, how) = match begun {
        Begun::Relay {
            upstream,
            first,
            how,
        } => (upstream, first, how),
        Begun::Whole(whole) => return whole_response(whole, cx),
    };
    let provider = target.provider.clone();
    let limits = forward.relay_limits(target, deadline);
    let usage = match how {
        Relayed::Stream(mode) => {
            return sse_response(relay_sse(
                upstream, first, provider, limits, mode, dialect, cx,
            ));
        }
        Relayed::Json(usage) => usage,
    };
    let length = upstream.headers().get(header::CONTENT_LENGTH).cloned();
    let mut response = Response::new(relay_json(upstream, provider, limits, usage, cx));
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
    headers.insert(X_ACCEL_BUFFERING.clone(), HeaderValue::from_static("no"));
    response
}

/// Reads the provider's event stream.
fn decoder_for(target: &Target) -> Box<dyn StreamDecoder> {
    match target.provider.wire {
        Wire::OpenAi => Box::new(ChunkDecoder::default()),
        Wire::Anthropic => Box::new(anthropic::MessageStreamDecoder::new(unix_now())),
        Wire::Gemini => Box::new(gemini::GenerateStreamDecoder::new(
            &target.upstream_model,
            unix_now(),
        )),
    }
}

/// Writes the client's event stream.
fn encoder_for(dialect: Dialect, target: &Target, include_usage: bool) -> Box<dyn StreamEncoder> {
    match dialect {
        Dialect::OpenAi => Box::new(ChunkEncoder::new(include_usage)),
        Dialect::Anthropic => {
            Box::new(anthropic::MessageStreamEncoder::new(&target.upstream_model))
        }
    }
}

/// The client's response for a whole translated answer; the request ends here.
fn whole_response(answer: Translated, mut cx: RequestCx) -> Response {
    cx.first_token();
    if let Some(usage) = answer.usage {
        cx.usage(usage);
    }
    let body = Bytes::from(answer.body);
    cx.capture(&body);
    cx.complete();
    if answer.stream {
        sse_response(axum::body::Body::from(body))
    } else {
        ([(header::CONTENT_TYPE, "application/json")], body).into_response()
    }
}

/// The client's response for a cache hit (a semantic one when it has the
/// `similarity` of its prompt); the request ends here.
pub(super) fn cached(
    entry: &Entry,
    replay: Replay,
    similarity: Option<f32>,
    mut cx: RequestCx,
) -> Response {
    let status = if similarity.is_some() {
        Status::Semantic
    } else {
        Status::Hit
    };
    cx.set_status(StatusCode::OK.as_u16());
    cx.cache_hit(entry, status);
    cx.first_token();
    cx.capture_for_log(&replay.body);
    cx.complete();
    let mut response = if replay.stream {
        sse_response(axum::body::Body::from(replay.body))
    } else {
        let mut response = Response::new(axum::body::Body::from(replay.body));
        response.headers_mut().insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static("application/json"),
        );
        response
    };
    let headers = response.headers_mut();
    headers.insert(CACHE.clone(), status.header());
    headers.insert(ATTEMPTS.clone(), HeaderValue::from_static("0"));
    let route = match status {
        Status::Semantic => "cache=semantic",
        _ => "cache=hit",
    };
    headers.insert(ROUTE.clone(), HeaderValue::from_static(route));
    if let Some(similarity) = similarity
        && let Ok(value) = HeaderValue::from_str(&format!("{similarity:.4}"))
    {
        headers.insert(CACHE_SIMILARITY.clone(), value);
    }
    let age = unix_now().saturating_sub(entry.stored_at / 1000);
    headers.insert(header::AGE, HeaderValue::from(age));
    response
}

/// The client's response for an embeddings batch of which some items were
/// cached: the fetched answer (read whole) stitched with them; the request
/// ends here.
pub(super) fn stitched(
    begun: Begun,
    stitch: &Stitch,
    price: Option<&Arc<ModelPrice>>,
    mut cx: RequestCx,
) -> Response {
    let Begun::Whole(whole) = begun else {
        return cx.refuse(&GatewayError::Internal);
    };
    let cost = match (price, whole.usage) {
        (Some(price), Some(usage)) => price.cost(&Tokens {
            input: usage.prompt_tokens,
            ..Tokens::default()
        }),
        _ => 0,
    };
    let Some((body, saved)) = stitch.answer(&whole.body, whole.usage, cost) else {
        return cx.refuse(&GatewayError::Upstream(UpstreamError::Protocol {
            provider: "-".to_owned(),
            detail: "the embeddings answer does not match the inputs sent".to_owned(),
        }));
    };
    cx.set_status(StatusCode::OK.as_u16());
    cx.first_token();
    if let Some(usage) = whole.usage {
        cx.usage(usage);
    }
    cx.saved(saved);
    cx.capture_for_log(&body);
    cx.complete();
    ([(header::CONTENT_TYPE, "application/json")], body).into_response()
}

/// A whole answer translated into the client's dialect.
pub(super) struct Translated {
    pub(super) body: Vec<u8>,
    /// An event stream (the client asked for one, the provider answered at once).
    stream: bool,
    usage: Option<Usage>,
}

/// The provider's answer in the client's dialect, and its usage.
pub(super) fn translate_answer(
    shape: Shape,
    target: &Target,
    body: &[u8],
) -> Result<Translated, String> {
    if let Answer::OpenAi { .. } = shape.answer {
        // Read whole only to be stitched: passed on as it is.
        return Ok(Translated {
            body: body.to_vec(),
            stream: false,
            usage: usage_of_response(body),
        });
    }
    if let Answer::GeminiEmbeddings { base64 } = shape.answer {
        let list =
            gemini::decode_embeddings(body, &target.upstream_model, base64).map_err(|e| e.0)?;
        // Gemini's batch endpoint counts no tokens: none is logged rather than zero.
        let usage = (list.usage.total_tokens > 0).then_some(Usage {
            prompt_tokens: list.usage.prompt_tokens,
            completion_tokens: 0,
            total_tokens: list.usage.total_tokens,
            ..Usage::default()
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
    if let (true, Answer::Chat { include_usage }) = (shape.stream, shape.answer) {
        let mut encoder = encoder_for(shape.dialect, target, include_usage);
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
    let body = match shape.dialect {
        Dialect::OpenAi => serde_json::to_vec(&completion).map_err(|e| e.to_string())?,
        Dialect::Anthropic => anthropic::encode_response(&completion),
    };
    Ok(Translated {
        body,
        stream: false,
        usage,
    })
}

/// `x-switchyard-dropped-fields`: the names joined by `, `, any byte that
/// cannot stand in a header (a client's key may hold anything) written as `?`.
pub(super) fn dropped_header(names: &[String]) -> HeaderValue {
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

fn unix_now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
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
}
