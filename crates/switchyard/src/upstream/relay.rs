//! Streaming a provider's answer back to the client, chunk by chunk, with the
//! idle and total timeouts, and reading usage on the way.

use std::convert::Infallible;
use std::sync::Arc;
use std::time::Duration;

use axum::body::Body;
use bytes::{Bytes, BytesMut};
use switchyard_providers::openai::{
    ErrorBody, ErrorObject, StreamEvent, classify_event, usage_of_response,
};
use switchyard_providers::sse::{SseEvent, SseParser};
use tokio::time::Instant;

use super::{ProviderClient, TimeoutPhase, UpstreamError};
use crate::telemetry::AccessLog;

/// Limits that apply while relaying one response.
#[derive(Debug, Clone, Copy)]
pub struct RelayLimits {
    /// Longest silence between two upstream chunks.
    pub idle: Duration,
    /// When the whole exchange must be over.
    pub deadline: Instant,
    /// Largest single upstream event.
    pub max_event_bytes: usize,
}

/// How much of a JSON answer is kept to read its usage at the end.
const USAGE_CAPTURE_LIMIT: usize = 1 << 20;

/// Relays a JSON body as it arrives; a body cut by the upstream or a timeout
/// cuts the client's connection too (an HTTP/1.1 body cannot carry an error).
pub fn relay_json(
    upstream: reqwest::Response,
    provider: Arc<ProviderClient>,
    limits: RelayLimits,
    log: AccessLog,
) -> Body {
    let relay = JsonRelay {
        upstream,
        provider,
        limits,
        captured: Vec::new(),
        log: Some(log),
    };
    Body::from_stream(futures_util::stream::unfold(
        relay,
        |mut relay| async move { relay.next().await.map(|item| (item, relay)) },
    ))
}

struct JsonRelay {
    upstream: reqwest::Response,
    provider: Arc<ProviderClient>,
    limits: RelayLimits,
    captured: Vec<u8>,
    /// `None` once the body is over.
    log: Option<AccessLog>,
}

impl JsonRelay {
    async fn next(&mut self) -> Option<Result<Bytes, std::io::Error>> {
        let mut log = self.log.take()?;
        match read_chunk(&mut self.upstream, &self.provider, &self.limits).await {
            Ok(Some(chunk)) => {
                log.first_token();
                if self.captured.len() + chunk.len() <= USAGE_CAPTURE_LIMIT {
                    self.captured.extend_from_slice(&chunk);
                }
                self.log = Some(log);
                Some(Ok(chunk))
            }
            Ok(None) => {
                if let Some(usage) = usage_of_response(&self.captured) {
                    log.usage(usage);
                }
                log.finish("ok");
                None
            }
            Err(e) => {
                log.finish(e.kind());
                Some(Err(std::io::Error::other(e.to_string())))
            }
        }
    }
}

/// Relays an OpenAI event stream event by event.
///
/// Every stream ends one of two ways: the upstream's finish and `[DONE]`, or an
/// error event (`data: {"error": …}`) with no `[DONE]` — when the upstream
/// reports an error in-band, breaks the format, goes silent past the idle
/// timeout, or closes before finishing. When the gateway added `include_usage`
/// on its own (`strip_usage`), the usage chunk is read and not passed on.
pub fn relay_sse(
    upstream: reqwest::Response,
    provider: Arc<ProviderClient>,
    limits: RelayLimits,
    strip_usage: bool,
    log: AccessLog,
) -> Body {
    let relay = SseRelay {
        upstream,
        parser: SseParser::new(limits.max_event_bytes),
        provider,
        limits,
        strip_usage,
        finished: false,
        log: Some(log),
    };
    Body::from_stream(futures_util::stream::unfold(
        relay,
        |mut relay| async move {
            relay
                .next()
                .await
                .map(|item| (Ok::<_, Infallible>(item), relay))
        },
    ))
}

struct SseRelay {
    upstream: reqwest::Response,
    parser: SseParser,
    provider: Arc<ProviderClient>,
    limits: RelayLimits,
    strip_usage: bool,
    /// A choice has carried a `finish_reason`.
    finished: bool,
    /// `None` once the stream is over.
    log: Option<AccessLog>,
}

impl SseRelay {
    async fn next(&mut self) -> Option<Bytes> {
        loop {
            let mut out = BytesMut::new();
            self.drain(&mut out);
            if !out.is_empty() {
                return Some(out.freeze());
            }
            self.log.as_ref()?;
            match read_chunk(&mut self.upstream, &self.provider, &self.limits).await {
                Ok(Some(chunk)) => self.parser.push(&chunk),
                Ok(None) if self.finished => {
                    // Some servers finish without `[DONE]`; the client still gets one.
                    out.extend_from_slice(b"data: [DONE]\n\n");
                    self.end("ok");
                    return Some(out.freeze());
                }
                Ok(None) => {
                    let error = UpstreamError::Protocol {
                        provider: self.provider.name.to_string(),
                        detail: "the stream ended before the response was finished".to_owned(),
                    };
                    return Some(self.fail(&error.to_openai(), error.kind()));
                }
                Err(e) => return Some(self.fail(&e.to_openai(), e.kind())),
            }
        }
    }

    /// Turns every complete upstream event into client bytes.
    fn drain(&mut self, out: &mut BytesMut) {
        while self.log.is_some() {
            match self.parser.next_event() {
                Ok(Some(event)) => self.on_event(event, out),
                Ok(None) => return,
                Err(e) => {
                    let error = UpstreamError::Protocol {
                        provider: self.provider.name.to_string(),
                        detail: e.to_string(),
                    };
                    out.extend_from_slice(&self.fail(&error.to_openai(), error.kind()));
                }
            }
        }
    }

    fn on_event(&mut self, event: SseEvent, out: &mut BytesMut) {
        match classify_event(&event.data) {
            StreamEvent::Done => {
                out.extend_from_slice(b"data: [DONE]\n\n");
                self.end("ok");
            }
            StreamEvent::Chunk { finished, usage } => {
                if let Some(log) = self.log.as_mut() {
                    log.first_token();
                    if let Some(usage) = usage {
                        log.usage(usage);
                    }
                }
                self.finished |= finished;
                match usage {
                    Some(_) if self.strip_usage => {
                        push_event(out, &event.event, &without_usage(&event.data))
                    }
                    _ => push_event(out, &event.event, &event.data),
                }
            }
            StreamEvent::UsageOnly(usage) => {
                if let Some(log) = self.log.as_mut() {
                    log.usage(usage);
                }
                if !self.strip_usage {
                    push_event(out, &event.event, &event.data);
                }
            }
            StreamEvent::Error(mut error) => {
                error.message = self.provider.scrub(&error.message);
                error.kind.get_or_insert_with(|| "server_error".to_owned());
                out.extend_from_slice(&self.fail(&error, "upstream_in_band_error"));
            }
            StreamEvent::Malformed => {
                let error = UpstreamError::Protocol {
                    provider: self.provider.name.to_string(),
                    detail: "the stream carried an event that is not JSON".to_owned(),
                };
                out.extend_from_slice(&self.fail(&error.to_openai(), error.kind()));
            }
        }
    }

    /// Ends the stream with an error event.
    fn fail(&mut self, error: &ErrorObject, kind: &str) -> Bytes {
        self.end(kind);
        error_event(error)
    }

    fn end(&mut self, outcome: &str) {
        if let Some(log) = self.log.take() {
            log.finish(outcome);
        }
    }
}

/// `data: {"error": …}\n\n`
pub fn error_event(error: &ErrorObject) -> Bytes {
    let body = ErrorBody {
        error: error.clone(),
    };
    let mut out = b"data: ".to_vec();
    // Serializing plain strings cannot fail.
    let _ = serde_json::to_writer(&mut out, &body);
    out.extend_from_slice(b"\n\n");
    Bytes::from(out)
}

fn push_event(out: &mut BytesMut, event: &Option<String>, data: &[u8]) {
    if let Some(name) = event {
        out.extend_from_slice(b"event: ");
        out.extend_from_slice(name.as_bytes());
        out.extend_from_slice(b"\n");
    }
    // A data field cannot hold a newline: split multi-line data into several fields.
    for line in data.split(|&b| b == b'\n') {
        out.extend_from_slice(b"data: ");
        out.extend_from_slice(line);
        out.extend_from_slice(b"\n");
    }
    out.extend_from_slice(b"\n");
}

/// The chunk without its `usage` field (only used when the gateway asked for usage itself).
fn without_usage(data: &[u8]) -> Vec<u8> {
    match serde_json::from_slice::<serde_json::Map<String, serde_json::Value>>(data) {
        Ok(mut chunk) => {
            chunk.remove("usage");
            serde_json::to_vec(&chunk).unwrap_or_else(|_| data.to_vec())
        }
        Err(_) => data.to_vec(),
    }
}

/// The next body chunk within the idle and total timeouts.
async fn read_chunk(
    upstream: &mut reqwest::Response,
    provider: &ProviderClient,
    limits: &RelayLimits,
) -> Result<Option<Bytes>, UpstreamError> {
    let wait = limits.deadline.min(Instant::now() + limits.idle);
    match tokio::time::timeout_at(wait, upstream.chunk()).await {
        Ok(Ok(chunk)) => Ok(chunk),
        Ok(Err(e)) => Err(UpstreamError::Protocol {
            provider: provider.name.to_string(),
            detail: if e.is_decode() || e.is_body() {
                "the connection failed mid-response".to_owned()
            } else {
                provider.scrub(&e.to_string())
            },
        }),
        Err(_) => Err(provider.timeout_at(wait, limits.deadline, TimeoutPhase::Idle)),
    }
}
