//! Streaming a provider's answer back to the client, chunk by chunk, with the
//! idle and total timeouts, and reading usage on the way.

use std::convert::Infallible;
use std::sync::Arc;
use std::time::Duration;

use axum::body::Body;
use bytes::{Bytes, BytesMut};
use switchyard_providers::openai::{
    ErrorBody, ErrorObject, StreamEvent, classify_event, usage_in_tail, usage_of_response,
    without_usage,
};
use switchyard_providers::sse::{SseEvent, SseParser};
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use super::{ProviderClient, TimeoutPhase, UpstreamError};
use crate::error::GatewayError;
use crate::telemetry::AccessLog;

/// Limits that apply while relaying one response.
#[derive(Debug, Clone)]
pub struct RelayLimits {
    /// Longest silence between two upstream chunks.
    pub idle: Duration,
    /// When the whole exchange must be over.
    pub deadline: Instant,
    /// Largest single upstream event.
    pub max_event_bytes: usize,
    /// Cancelled when the shutdown grace period is over.
    pub cut: CancellationToken,
}

/// Bodies up to this size are kept (as shared chunks, not copied) to read their usage.
const WHOLE_BODY_LIMIT: usize = 1 << 20;
/// Of a larger body, this much of the end is kept: usage comes last.
const TAIL_BYTES: usize = 64 << 10;

/// Relays a JSON body as it arrives; a body cut by the upstream or a timeout
/// cuts the client's connection too (an HTTP/1.1 body cannot carry an error).
pub fn relay_json(
    upstream: reqwest::Response,
    provider: Arc<ProviderClient>,
    limits: RelayLimits,
    log: AccessLog,
) -> Body {
    let relay = JsonRelay {
        expected: upstream.content_length(),
        upstream,
        provider,
        limits,
        relayed: 0,
        chunks: Vec::new(),
        tail: None,
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
    /// The upstream's `content-length`: once that much is relayed the body is over
    /// (the server stops polling a body whose declared length is reached).
    expected: Option<u64>,
    relayed: u64,
    /// The body so far, while it is small.
    chunks: Vec<Bytes>,
    /// The end of the body, once it is large.
    tail: Option<BytesMut>,
    /// `None` once the body is over.
    log: Option<AccessLog>,
}

impl JsonRelay {
    async fn next(&mut self) -> Option<Result<Bytes, std::io::Error>> {
        let mut log = self.log.take()?;
        match read_chunk(&mut self.upstream, &self.provider, &self.limits).await {
            Ok(Some(chunk)) => {
                log.first_token();
                self.keep(&chunk);
                if self.expected.is_some_and(|len| self.relayed >= len) {
                    self.complete(log);
                } else {
                    self.log = Some(log);
                }
                Some(Ok(chunk))
            }
            Ok(None) => {
                self.complete(log);
                None
            }
            Err(e) => {
                let error = e.into_gateway();
                log.fail(error.kind(), &error.to_string());
                Some(Err(std::io::Error::other(error.to_string())))
            }
        }
    }

    fn keep(&mut self, chunk: &Bytes) {
        self.relayed += chunk.len() as u64;
        if let Some(tail) = &mut self.tail {
            tail.extend_from_slice(chunk);
            if tail.len() > 2 * TAIL_BYTES {
                let _ = tail.split_to(tail.len() - TAIL_BYTES);
            }
        } else if self.relayed as usize <= WHOLE_BODY_LIMIT {
            self.chunks.push(chunk.clone());
        } else {
            let mut tail = BytesMut::new();
            for kept in self.chunks.drain(..) {
                tail.extend_from_slice(&kept);
            }
            tail.extend_from_slice(chunk);
            self.tail = Some(tail);
        }
    }

    fn complete(&mut self, mut log: AccessLog) {
        let usage = match (&self.tail, self.chunks.as_slice()) {
            (Some(tail), _) => usage_in_tail(tail),
            (None, [one]) => usage_of_response(one),
            (None, many) => usage_of_response(&many.concat()),
        };
        if let Some(usage) = usage {
            log.usage(usage);
        }
        log.finish("ok");
    }
}

/// Relays an OpenAI event stream event by event.
///
/// Every stream ends one of two ways: the upstream's finish and `[DONE]`, or an
/// error event (`data: {"error": …}`) with no `[DONE]` — when the upstream
/// reports an error in-band, breaks the format, goes silent past the idle
/// timeout, closes before finishing, or the shutdown grace period runs out.
/// When the gateway added `include_usage` on its own (`strip_usage`), the usage
/// is read and not passed on.
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
                    self.end("ok", None);
                    return Some(out.freeze());
                }
                Ok(None) => {
                    let error =
                        self.protocol_error("the stream ended before the response was finished");
                    return Some(self.fail(&error));
                }
                Err(e) => return Some(self.fail(&e.into_gateway())),
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
                    let error = self.protocol_error(&e.to_string());
                    out.extend_from_slice(&self.fail(&error));
                }
            }
        }
    }

    fn on_event(&mut self, event: SseEvent, out: &mut BytesMut) {
        match classify_event(&event.data) {
            StreamEvent::Done => {
                out.extend_from_slice(b"data: [DONE]\n\n");
                self.end("ok", None);
            }
            StreamEvent::Chunk { finished, usage } => {
                if let Some(log) = self.log.as_mut() {
                    log.first_token();
                    if let Some(usage) = usage {
                        log.usage(usage);
                    }
                }
                self.finished |= finished;
                match usage.and_then(|_| {
                    self.strip_usage
                        .then(|| without_usage(&event.data))
                        .flatten()
                }) {
                    Some(stripped) => push_event(out, event.event.as_deref(), &stripped),
                    None => push_event(out, event.event.as_deref(), &event.data),
                }
            }
            StreamEvent::UsageOnly(usage) => {
                if let Some(log) = self.log.as_mut() {
                    log.usage(usage);
                }
                if !self.strip_usage {
                    push_event(out, event.event.as_deref(), &event.data);
                }
            }
            StreamEvent::Error(mut error) => {
                error.message = self.provider.scrub(&error.message);
                error.kind.get_or_insert_with(|| "server_error".to_owned());
                let detail = error.message.clone();
                self.end("upstream_in_band_error", Some(&detail));
                out.extend_from_slice(&error_event(&error));
            }
            StreamEvent::Malformed => {
                let error = self.protocol_error("the stream carried an event that is not JSON");
                out.extend_from_slice(&self.fail(&error));
            }
        }
    }

    fn protocol_error(&self, detail: &str) -> GatewayError {
        GatewayError::Upstream(UpstreamError::Protocol {
            provider: self.provider.name.to_string(),
            detail: detail.to_owned(),
        })
    }

    /// Ends the stream with an error event.
    fn fail(&mut self, error: &GatewayError) -> Bytes {
        self.end(error.kind(), Some(&error.to_string()));
        error_event(&error.to_openai())
    }

    fn end(&mut self, outcome: &str, detail: Option<&str>) {
        if let Some(log) = self.log.take() {
            match detail {
                Some(detail) => log.fail(outcome, detail),
                None => log.finish(outcome),
            }
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

fn push_event(out: &mut BytesMut, event: Option<&str>, data: &[u8]) {
    if let Some(name) = event {
        out.extend_from_slice(b"event: ");
        out.extend_from_slice(name.as_bytes());
        out.extend_from_slice(b"\n");
    }
    // A data field cannot hold a newline: multi-line data goes in several fields.
    for line in data.split(|&b| b == b'\n') {
        out.extend_from_slice(b"data: ");
        out.extend_from_slice(line);
        out.extend_from_slice(b"\n");
    }
    out.extend_from_slice(b"\n");
}

/// Why the next chunk did not come.
enum ReadError {
    Upstream(UpstreamError),
    /// The shutdown grace period ran out.
    Cut,
}

impl ReadError {
    fn into_gateway(self) -> GatewayError {
        match self {
            Self::Upstream(e) => GatewayError::Upstream(e),
            Self::Cut => GatewayError::ShuttingDown,
        }
    }
}

/// The next body chunk within the idle and total timeouts.
async fn read_chunk(
    upstream: &mut reqwest::Response,
    provider: &ProviderClient,
    limits: &RelayLimits,
) -> Result<Option<Bytes>, ReadError> {
    let wait = limits.deadline.min(Instant::now() + limits.idle);
    let read = tokio::select! {
        biased;
        () = limits.cut.cancelled() => return Err(ReadError::Cut),
        read = tokio::time::timeout_at(wait, upstream.chunk()) => read,
    };
    match read {
        Ok(Ok(chunk)) => Ok(chunk),
        Ok(Err(e)) => Err(ReadError::Upstream(UpstreamError::Protocol {
            provider: provider.name.to_string(),
            detail: provider.scrub(&super::error_chain(&e)),
        })),
        Err(_) => Err(ReadError::Upstream(provider.timeout_at(
            wait,
            limits.deadline,
            TimeoutPhase::Idle,
        ))),
    }
}
