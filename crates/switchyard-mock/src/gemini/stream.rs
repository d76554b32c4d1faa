//! `:streamGenerateContent`: every chunk a whole `GenerateContentResponse` carrying one
//! word piece (a function call comes whole, in one chunk); the last chunk also carries
//! `finishReason` and `usageMetadata`. With `?alt=sse` the chunks are server-sent events
//! `data: <json>\r\n\r\n`, with no event names and no terminator; without it they are
//! the elements of one JSON array, written as they are produced.

use bytes::Bytes;

use super::response::{GenerateContentResponse, Head, PartOut, UsageMetadata};
use crate::error::MockError;
use crate::sse::{self, EVENT_STREAM, EventStream};
use crate::text::pieces;

/// The in-band failure `--stream-error-rate` sends on an SSE stream, as Gemini does.
const SSE_ERROR: &[u8] = b"data: {\"error\":{\"code\":503,\"message\":\"The model is overloaded. Please try again later.\",\"status\":\"UNAVAILABLE\"}}\r\n\r\n";

/// The same failure as the last element of a JSON array stream.
const ARRAY_ERROR: &[u8] = b",\r\n{\"error\":{\"code\":503,\"message\":\"The model is overloaded. Please try again later.\",\"status\":\"UNAVAILABLE\"}}]";

/// How the chunks are framed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum Framing {
    /// `?alt=sse`.
    Sse,
    /// One JSON array.
    Array,
}

/// The parts the answer is streamed in: text word by word, a function call whole.
pub(super) fn parts<'a>(part: PartOut<'a>) -> Vec<PartOut<'a>> {
    match part {
        PartOut::Text(text) => pieces(text).into_iter().map(PartOut::Text).collect(),
        call @ PartOut::FunctionCall { .. } => vec![call],
    }
}

/// The whole stream of an answer made of `parts`.
pub(super) fn events(
    head: &Head<'_>,
    parts: &[PartOut<'_>],
    finish: &'static str,
    usage: UsageMetadata,
    framing: Framing,
) -> Result<EventStream, MockError> {
    let mut events = Vec::with_capacity(parts.len() + 1);
    for (i, part) in parts.iter().enumerate() {
        let last = i + 1 == parts.len();
        let chunk = GenerateContentResponse::new(head, *part, last.then_some((finish, usage)));
        events.push(match framing {
            Framing::Sse => sse::frame(b"data: ", &chunk, b"\r\n\r\n")?,
            Framing::Array if i == 0 => sse::frame(b"[", &chunk, b"")?,
            Framing::Array => sse::frame(b",\r\n", &chunk, b"")?,
        });
    }
    let content = 0..events.len();
    let (error_event, content_type) = match framing {
        Framing::Sse => (SSE_ERROR, EVENT_STREAM),
        Framing::Array => {
            events.push(Bytes::from_static(b"]"));
            (ARRAY_ERROR, "application/json")
        }
    };
    Ok(EventStream {
        events,
        content,
        error_event: Bytes::from_static(error_event),
        content_type,
    })
}
