//! What every dialect's translation offers the gateway.
//!
//! Translation pivots on the OpenAI chat shapes of [`crate::openai::chat`]: a
//! request is decoded from the client's dialect into a [`ChatRequest`] and
//! encoded into the provider's; the provider's answer is decoded into a
//! [`ChatCompletion`], or event by event into [`ChatChunk`]s, and encoded into
//! the client's dialect. Streams are translated as they arrive: one upstream
//! event in, the client bytes it makes out, nothing held back.
//!
//! [`ChatRequest`]: crate::openai::chat::ChatRequest
//! [`ChatCompletion`]: crate::openai::chat::ChatCompletion

use bytes::BytesMut;

use crate::openai::ErrorObject;
use crate::openai::chat::ChatChunk;
use crate::sse::SseEvent;

/// A request written in a provider's dialect.
#[derive(Debug, Clone, PartialEq)]
pub struct Encoded {
    /// The upstream request body.
    pub body: Vec<u8>,
    /// Request fields the dialect cannot express, left out of `body` because
    /// leaving them out does not change what the answer means. The gateway
    /// names them in `x-switchyard-dropped-fields`.
    pub dropped: Vec<String>,
}

/// An upstream body that is not what its dialect promises.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("the provider's answer could not be read: {0}")]
pub struct DecodeError(pub String);

/// An error reported by a provider, in OpenAI's terms.
#[derive(Debug, Clone, PartialEq)]
pub struct Fault {
    /// The HTTP status that stands for it (the response's own status, or for an
    /// error inside a stream the status the same error gets outside one, e.g.
    /// 529 for Anthropic's `overloaded_error`).
    pub status: u16,
    /// The provider's message, type and code, in OpenAI's shape.
    pub error: ErrorObject,
}

/// Why a translated stream cannot go on.
#[derive(Debug, Clone, PartialEq)]
pub enum StreamError {
    /// The provider reported an error inside the stream.
    Upstream(Fault),
    /// An event is not what the dialect promises.
    Malformed(String),
}

/// Whether a stream goes on after an event.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Progress {
    /// More events are expected.
    More,
    /// The provider said the answer is complete.
    Done,
}

/// Reads a provider's event stream into OpenAI chunks, one event at a time.
pub trait StreamDecoder: Send {
    /// Reads one upstream event and appends the chunks it makes to `out`.
    fn event(
        &mut self,
        event: SseEvent<'_>,
        out: &mut Vec<ChatChunk>,
    ) -> Result<Progress, StreamError>;

    /// Called when the upstream body ends: `Ok` when the answer was complete
    /// (and then any last chunk it still holds is appended), an error when the
    /// stream was cut short.
    fn end(&mut self, out: &mut Vec<ChatChunk>) -> Result<(), StreamError>;
}

/// Writes OpenAI chunks as the client's event stream.
pub trait StreamEncoder: Send {
    /// Appends the events for one chunk.
    fn chunk(&mut self, chunk: &ChatChunk, out: &mut BytesMut);

    /// Appends what ends a complete answer.
    fn done(&mut self, out: &mut BytesMut);

    /// Appends the error event that ends a failed stream.
    fn error(&mut self, fault: &Fault, out: &mut BytesMut);
}

/// A client's request read into the OpenAI chat shape.
#[derive(Debug, Clone, PartialEq)]
pub struct Decoded {
    /// The request.
    pub request: crate::openai::chat::ChatRequest,
    /// Fields of the client's dialect the OpenAI shape cannot carry, left out
    /// because leaving them out does not change what the answer means.
    pub dropped: Vec<String>,
}

/// The most dropped fields a translation names; past it, one last entry
/// [`MORE_DROPPED`] says that more were left out. (A request can hold any
/// number of unknown keys; naming each would make the check for repeats, and
/// the response header, grow without bound.)
pub const MAX_DROPPED_NAMES: usize = 32;

/// The entry that ends a list of dropped fields cut at [`MAX_DROPPED_NAMES`].
pub const MORE_DROPPED: &str = "+more";

/// Adds `name` to the dropped fields `names`, unless it is there already or
/// the list is full (see [`MAX_DROPPED_NAMES`]).
pub fn note_dropped(names: &mut Vec<String>, name: &str) {
    if names.len() > MAX_DROPPED_NAMES || names.iter().any(|n| n == name) {
        return;
    }
    if names.len() == MAX_DROPPED_NAMES {
        names.push(MORE_DROPPED.to_owned());
    } else {
        names.push(name.to_owned());
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dropped_names_are_kept_once_and_cut_at_the_limit() {
        let mut names = Vec::new();
        note_dropped(&mut names, "seed");
        note_dropped(&mut names, "seed");
        assert_eq!(names, ["seed"]);
        for i in 0..1000 {
            note_dropped(&mut names, &format!("k{i}"));
        }
        assert_eq!(names.len(), MAX_DROPPED_NAMES + 1);
        assert_eq!(names.last().map(String::as_str), Some(MORE_DROPPED));
        assert_eq!(names.iter().filter(|n| *n == MORE_DROPPED).count(), 1);
    }
}
