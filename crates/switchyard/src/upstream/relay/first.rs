//! A stream's first chunks, read before anything is sent to the client.

use std::time::Duration;

use bytes::Bytes;
use hyper::body::Body as HttpBody;
use switchyard_providers::openai::{self, StreamEvent, classify_event};
use switchyard_providers::sse::{SseEvent, SseParser};
use switchyard_providers::translate::Fault;
use switchyard_providers::{ErrorClass, anthropic, gemini};
use tokio::time::Instant;

use super::reader::next_data;
use crate::upstream::{ProviderClient, TimeoutPhase, UpstreamError, Wire, error_chain};

/// Reads a streamed answer up to its first content, before anything is sent
/// to the client, so that a stream that fails at once can still be tried
/// elsewhere: a body that ends or breaks before content, content later than
/// `until` (the first-token timeout, `first_token` after the request was sent)
/// or after a silence longer than the idle timeout, and an error event before
/// content are failures of the attempt. The chunks read go to [`relay_sse`](super::relay_sse) as its
/// `first`; past `limit` bytes without a verdict the stream is taken as it is.
pub async fn first_content<B>(
    upstream: &mut axum::http::Response<B>,
    provider: &ProviderClient,
    first_token: Duration,
    until: Instant,
    deadline: Instant,
    limit: usize,
) -> Result<Vec<Bytes>, UpstreamError>
where
    B: HttpBody<Data = Bytes> + Unpin,
    B::Error: std::error::Error + 'static,
{
    let broken = |detail: String| UpstreamError::Protocol {
        provider: provider.name.to_string(),
        detail,
    };
    let mut chunks = Vec::new();
    let mut read = 0;
    let mut parser = SseParser::new(limit);
    loop {
        // The first-byte timeout bounds the wait for content; the idle timeout
        // each silence on the way.
        let idle = Instant::now() + provider.timeouts.idle;
        let (wait, phase) = if idle < until {
            (idle, TimeoutPhase::Idle)
        } else {
            (until, TimeoutPhase::FirstByte)
        };
        let chunk = match tokio::time::timeout_at(wait, next_data(upstream.body_mut())).await {
            Err(_) if phase == TimeoutPhase::FirstByte && wait < deadline => {
                return Err(UpstreamError::Timeout {
                    provider: provider.name.to_string(),
                    phase,
                    limit: first_token,
                });
            }
            Err(_) => return Err(provider.timeout_at(wait, deadline, phase)),
            Ok(Err(e)) => {
                return Err(UpstreamError::Broken {
                    provider: provider.name.to_string(),
                    detail: provider.scrub(&error_chain(&e)),
                });
            }
            Ok(Ok(None)) => {
                return Err(broken(
                    "the stream ended before its first content".to_owned(),
                ));
            }
            Ok(Ok(Some(chunk))) => chunk,
        };
        let mut verdict = None;
        let parsed = parser.feed(&chunk, |event| {
            verdict = look(event, provider.wire);
            verdict.is_none()
        });
        read += chunk.len();
        chunks.push(chunk);
        match verdict {
            Some(Look::Content) => return Ok(chunks),
            Some(Look::Broken(detail)) => return Err(broken(detail.to_owned())),
            Some(Look::Error(Fault { status, mut error }, class)) => {
                error.message = provider.scrub(&error.message);
                return Err(UpstreamError::Status {
                    provider: provider.name.to_string(),
                    status,
                    class,
                    error: Box::new(error),
                    retry_after: None,
                });
            }
            // Too much, or unreadable, before content: the relay will say so.
            None if read > limit || parsed.is_err() => return Ok(chunks),
            None => {}
        }
    }
}

/// What an event before the first content says.
enum Look {
    /// Content (or the end of an answer that has none): the stream can go.
    Content,
    /// The provider's error, with the status it stands for, as its dialect classes it.
    Error(Fault, ErrorClass),
    /// A stream that breaks its format before its first content.
    Broken(&'static str),
}

/// The verdict of `event`, `None` for an event that comes before content (a
/// role chunk, `message_start`, `ping`).
fn look(event: SseEvent<'_>, wire: Wire) -> Option<Look> {
    match wire {
        Wire::OpenAi => match classify_event(event.data) {
            StreamEvent::Error(error) => {
                let status = openai::status_of(&error);
                let class = openai::classify_error(status, event.data);
                Some(Look::Error(Fault { status, error }, class))
            }
            StreamEvent::Done | StreamEvent::Chunk { finished: true, .. } => Some(Look::Content),
            // Nothing has reached the client yet: the attempt fails, and
            // another deployment may serve.
            StreamEvent::Malformed => Some(Look::Broken(
                "the stream carried an event that is not JSON before its first content",
            )),
            StreamEvent::UsageOnly(_) => None,
            StreamEvent::Chunk { .. } => {
                openai::carries_content(event.data).then_some(Look::Content)
            }
        },
        Wire::Anthropic => match event.event {
            Some("error") => {
                let fault = anthropic::stream_error(event.data).unwrap_or_else(|| Fault {
                    status: 500,
                    error: anthropic::decode_error(500, event.data),
                });
                let class = anthropic::classify_error(fault.status, event.data);
                Some(Look::Error(fault, class))
            }
            Some("message_start" | "ping" | "content_block_start") => None,
            _ => Some(Look::Content),
        },
        Wire::Gemini => Some(
            gemini::stream_error(event.data).map_or(Look::Content, |fault| {
                let class = gemini::classify_error(fault.status, event.data);
                Look::Error(fault, class)
            }),
        ),
    }
}
