//! A client's request, read once, and written for each deployment it is sent
//! to: as the client's bytes with `model` spliced in when the dialects match,
//! translated otherwise.

use axum::http::Uri;
use bytes::Bytes;
use serde::de::DeserializeOwned;
use switchyard_providers::anthropic::{self, Peek};
use switchyard_providers::gemini;
use switchyard_providers::openai::chat::{ChatRequest, StreamOptions};
use switchyard_providers::openai::embedding::EmbeddingRequest;
use switchyard_providers::openai::{Endpoint, InvalidRequest, RequestBody};
use switchyard_providers::translate::Decoded;

use super::proxy::ProxyEndpoint;
use super::respond::Shape;
use crate::error::{Dialect, GatewayError};
use crate::routing::Target;
use crate::upstream::Wire;

/// A request ready to send to one deployment.
pub(super) struct Call<'a> {
    pub(super) uri: &'a Uri,
    pub(super) body: Bytes,
    pub(super) stream: bool,
    pub(super) dialect: Dialect,
    pub(super) answer: Answer,
    /// Fields the translation left out, for `x-switchyard-dropped-fields`.
    pub(super) dropped: Vec<String>,
}

impl Call<'_> {
    /// What becomes of its answer.
    pub(super) fn shape(&self) -> Shape {
        Shape {
            answer: self.answer,
            stream: self.stream,
            dialect: self.dialect,
        }
    }
}

/// What becomes of the provider's answer.
#[derive(Debug, Clone, Copy)]
pub(super) enum Answer {
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

/// The client's request, validated; its typed forms read on first need.
pub(super) enum Inbound<'b> {
    /// An OpenAI request.
    OpenAi {
        endpoint: Endpoint,
        body: &'b [u8],
        parsed: RequestBody<'b>,
        chat: Option<ChatRequest>,
    },
    /// An Anthropic Messages request.
    Messages {
        body: &'b [u8],
        peek: Peek,
        decoded: Option<Decoded>,
    },
}

impl<'b> Inbound<'b> {
    /// Validates `body` for `endpoint`.
    pub(super) fn parse(endpoint: ProxyEndpoint, body: &'b [u8]) -> Result<Self, GatewayError> {
        Ok(match endpoint {
            ProxyEndpoint::OpenAi(endpoint) => Self::OpenAi {
                endpoint,
                body,
                parsed: RequestBody::parse(endpoint, body)?,
                chat: None,
            },
            ProxyEndpoint::Messages => Self::Messages {
                body,
                peek: anthropic::peek(body)?,
                decoded: None,
            },
        })
    }

    /// The public model asked for.
    pub(super) fn model(&self) -> &str {
        match self {
            Self::OpenAi { parsed, .. } => parsed.model(),
            Self::Messages { peek, .. } => &peek.model,
        }
    }

    /// Whether a stream is asked for.
    pub(super) fn stream(&self) -> bool {
        match self {
            Self::OpenAi { parsed, .. } => parsed.stream(),
            Self::Messages { peek, .. } => peek.stream,
        }
    }

    /// Whether an OpenAI stream asks for its usage chunk.
    pub(super) fn include_usage(&self) -> bool {
        match self {
            Self::OpenAi { parsed, .. } => parsed.include_usage(),
            Self::Messages { .. } => false,
        }
    }

    /// The client's cap on completion tokens, when it set one.
    pub(super) fn max_output_tokens(&self) -> Option<u64> {
        match self {
            Self::OpenAi { parsed, .. } => parsed.max_output_tokens(),
            Self::Messages { peek, .. } => peek.max_tokens,
        }
    }

    /// The top-level `metadata` value as sent (JSON text), when there is one.
    pub(super) fn metadata(&self) -> Option<&[u8]> {
        match self {
            Self::OpenAi { parsed, .. } => parsed.metadata(),
            Self::Messages { body, peek, .. } => body.get(peek.metadata_at.clone()?),
        }
    }

    /// The request as `target` takes it.
    pub(super) fn call<'a>(&mut self, target: &'a Target) -> Result<Call<'a>, GatewayError> {
        match self {
            Self::OpenAi {
                endpoint,
                body,
                parsed,
                chat,
            } => openai_call(*endpoint, body, parsed, chat, target),
            Self::Messages {
                body,
                peek,
                decoded,
            } => messages_call(body, peek, decoded, target),
        }
    }
}

/// An OpenAI request: passed through to OpenAI-compatible providers, translated
/// for the others.
fn openai_call<'a>(
    endpoint: Endpoint,
    body: &[u8],
    parsed: &RequestBody<'_>,
    chat: &mut Option<ChatRequest>,
    target: &'a Target,
) -> Result<Call<'a>, GatewayError> {
    let stream = parsed.stream();
    let urls = &target.urls;
    let mut call = Call {
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
            let request = match chat {
                Some(request) => request,
                None => chat.insert(typed(body)?),
            };
            let encoded = match wire {
                Wire::Anthropic => anthropic::encode_request(
                    request,
                    &target.upstream_model,
                    u64::from(target.max_output_tokens),
                )?,
                _ => gemini::encode_request(request)?,
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
fn messages_call<'a>(
    body: &[u8],
    peek: &Peek,
    decoded: &mut Option<Decoded>,
    target: &'a Target,
) -> Result<Call<'a>, GatewayError> {
    let urls = &target.urls;
    let mut call = Call {
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
        call.body = Bytes::from(anthropic::with_model(body, peek, &target.upstream_model));
        return Ok(call);
    }
    let decoded = match decoded {
        Some(decoded) => decoded,
        None => decoded.insert(anthropic::decode_request(body)?),
    };
    call.dropped.clone_from(&decoded.dropped);
    call.answer = Answer::Chat {
        include_usage: false,
    };
    if target.provider.wire == Wire::Gemini {
        let encoded = gemini::encode_request(&decoded.request)?;
        call.body = Bytes::from(encoded.body);
        // Named as the Anthropic client sent them.
        call.dropped
            .extend(encoded.dropped.into_iter().map(|name| match name.as_str() {
                "user" => "metadata.user_id".to_owned(),
                "parallel_tool_calls" => "tool_choice.disable_parallel_tool_use".to_owned(),
                _ => name,
            }));
    } else {
        let mut request = decoded.request.clone();
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
