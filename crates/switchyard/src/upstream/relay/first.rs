//! A stream's first chunks, read before anything is sent to the client, and
//! what was parsed of them, handed on to the relay.

use std::time::Duration;

use bytes::Bytes;
use hyper::body::Body as HttpBody;
use switchyard_providers::openai::{self, StreamEvent, classify_event};
use switchyard_providers::sse::{SseError, SseEvent, SseParser};
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
/// content are failures of the attempt. What was read goes to
/// [`relay_sse`](super::relay_sse) as its `first`, parsed: its events and the
/// parser holding the rest. Past `limit` bytes without a verdict the stream is
/// taken as it is.
pub async fn first_content<B>(
    upstream: &mut axum::http::Response<B>,
    provider: &ProviderClient,
    first_token: Duration,
    until: Instant,
    deadline: Instant,
    limit: usize,
) -> Result<Box<FirstContent>, UpstreamError>
where
    B: HttpBody<Data = Bytes> + Unpin,
    B::Error: std::error::Error + 'static,
{
    let broken = |detail: String| UpstreamError::Protocol {
        provider: provider.name.to_string(),
        detail,
    };
    let mut events = Vec::new();
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
            let (look, class) = look(event, provider.wire);
            events.push(FirstEvent::new(&chunk, event, class));
            verdict = look;
            verdict.is_none()
        });
        read += chunk.len();
        match verdict {
            Some(Look::Content) => {
                return Ok(Box::new(FirstContent {
                    events,
                    parser,
                    error: None,
                }));
            }
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
            None if read > limit || parsed.is_err() => {
                return Ok(Box::new(FirstContent {
                    events,
                    parser,
                    error: parsed.err(),
                }));
            }
            None => {}
        }
    }
}

/// What [`first_content`] read, handed on to the relay so that no event is
/// parsed or scanned twice: the events up to the first content, and the parser
/// holding what followed them.
#[derive(Debug)]
pub struct FirstContent {
    /// The events read, in order.
    pub(super) events: Vec<FirstEvent>,
    /// The parser, holding what followed the last event.
    pub(super) parser: SseParser,
    /// The parse broke off (an event past the limit): the relay says so after
    /// relaying the events.
    pub(super) error: Option<SseError>,
}

/// One event of [`FirstContent`].
#[derive(Debug)]
pub(super) struct FirstEvent {
    /// Its `event:` field.
    pub(super) name: Option<Box<str>>,
    /// Its data: a slice of the chunk it came in (a copy for an event cut
    /// across chunks).
    pub(super) data: Bytes,
    /// Its classification, when the provider speaks OpenAI's dialect.
    pub(super) class: Option<StreamEvent>,
}

impl FirstEvent {
    fn new(chunk: &Bytes, event: SseEvent<'_>, class: Option<StreamEvent>) -> Self {
        let (whole, data) = (chunk.as_ptr_range(), event.data.as_ptr_range());
        let data = if whole.start <= data.start && data.end <= whole.end {
            chunk.slice_ref(event.data)
        } else {
            Bytes::copy_from_slice(event.data)
        };
        Self {
            name: event.event.map(Box::from),
            data,
            class,
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
/// role chunk, `message_start`, `ping`), and in OpenAI's dialect the event's
/// classification, which the relay takes over.
fn look(event: SseEvent<'_>, wire: Wire) -> (Option<Look>, Option<StreamEvent>) {
    match wire {
        Wire::OpenAi => {
            let class = classify_event(event.data);
            (look_openai(event, &class), Some(class))
        }
        Wire::Anthropic => (look_anthropic(event), None),
        Wire::Gemini => {
            let fault = gemini::stream_error(event.data);
            let look = fault.map_or(Look::Content, |fault| {
                let class = gemini::classify_error(fault.status, event.data);
                Look::Error(fault, class)
            });
            (Some(look), None)
        }
    }
}

/// [`look`] at an OpenAI event classified as `class`.
fn look_openai(event: SseEvent<'_>, class: &StreamEvent) -> Option<Look> {
    match class {
        StreamEvent::Error(error) => {
            let status = openai::status_of(error);
            let class = openai::classify_error(status, event.data);
            let error = error.clone();
            Some(Look::Error(Fault { status, error }, class))
        }
        StreamEvent::Done | StreamEvent::Chunk { finished: true, .. } => Some(Look::Content),
        // Nothing has reached the client yet: the attempt fails, and
        // another deployment may serve.
        StreamEvent::Malformed => Some(Look::Broken(
            "the stream carried an event that is not JSON before its first content",
        )),
        StreamEvent::UsageOnly(_) => None,
        StreamEvent::Chunk { .. } => openai::carries_content(event.data).then_some(Look::Content),
    }
}

/// [`look`] at an Anthropic event.
fn look_anthropic(event: SseEvent<'_>) -> Option<Look> {
    match event.event {
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
    }
}
