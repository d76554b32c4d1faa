//! The Anthropic Messages stream: named server-sent events.
//!
//! `message_start` (the message with empty content, input usage and `output_tokens: 1`,
//! as the real API sends), `content_block_start`, `ping`, one `content_block_delta` per
//! word piece (`text_delta`; for a tool call `input_json_delta`, at least two pieces),
//! `content_block_stop`, `message_delta` (stop reason, stop sequence and the total
//! `output_tokens`), `message_stop`.

use bytes::Bytes;
use serde::Serialize;

use super::response::{ContentBlock, Head, Message, Usage};
use crate::error::MockError;
use crate::reply::Reply;
use crate::sse::{self, EVENT_STREAM, EventStream};
use crate::text::pieces;

/// The keep-alive event, byte for byte as the real API sends it.
const PING: &[u8] = b"event: ping\ndata: {\"type\": \"ping\"}\n\n";

/// The in-band failure `--stream-error-rate` sends, as the real API does when overloaded.
pub(super) const IN_BAND_ERROR: &[u8] = b"event: error\ndata: {\"type\":\"error\",\"error\":{\"type\":\"overloaded_error\",\"message\":\"Overloaded\"}}\n\n";

/// A stream event; its `type` is also its SSE event name.
#[derive(Serialize)]
#[serde(tag = "type", rename_all = "snake_case")]
enum Event<'a> {
    MessageStart {
        message: Message<'a>,
    },
    ContentBlockStart {
        index: u32,
        content_block: ContentBlock<'a>,
    },
    ContentBlockDelta {
        index: u32,
        delta: Delta<'a>,
    },
    ContentBlockStop {
        index: u32,
    },
    MessageDelta {
        delta: MessageDelta<'a>,
        usage: OutputUsage,
    },
    MessageStop,
}

#[derive(Serialize)]
#[serde(tag = "type", rename_all = "snake_case")]
enum Delta<'a> {
    TextDelta { text: &'a str },
    InputJsonDelta { partial_json: &'a str },
}

#[derive(Serialize)]
struct MessageDelta<'a> {
    stop_reason: &'static str,
    stop_sequence: Option<&'a str>,
}

#[derive(Serialize)]
struct OutputUsage {
    output_tokens: u64,
}

impl Event<'_> {
    fn name(&self) -> &'static str {
        match self {
            Self::MessageStart { .. } => "message_start",
            Self::ContentBlockStart { .. } => "content_block_start",
            Self::ContentBlockDelta { .. } => "content_block_delta",
            Self::ContentBlockStop { .. } => "content_block_stop",
            Self::MessageDelta { .. } => "message_delta",
            Self::MessageStop => "message_stop",
        }
    }

    /// `event: <type>\ndata: <json>\n\n`.
    fn render(&self) -> Result<Bytes, MockError> {
        sse::frame(
            format!("event: {}\ndata: ", self.name()).as_bytes(),
            self,
            b"\n\n",
        )
    }
}

/// The pieces a tool call's input is streamed in: the `{"echo":` key, then one piece per
/// word of the rest, so that there are always at least two.
fn input_pieces(arguments: &str) -> Vec<&str> {
    let key_end = arguments.find(':').map_or(0, |colon| colon + 1);
    let (key, rest) = arguments.split_at(key_end);
    std::iter::once(key)
        .filter(|key| !key.is_empty())
        .chain(pieces(rest))
        .collect()
}

/// The whole stream of `reply`.
pub(super) fn events(
    head: &Head<'_>,
    reply: &Reply,
    usage: Usage,
) -> Result<EventStream, MockError> {
    let empty_input =
        serde_json::value::to_raw_value(&serde_json::Map::new()).map_err(MockError::internal)?;
    let start_usage = Usage {
        output_tokens: 1,
        ..usage
    };
    let mut events = vec![
        Event::MessageStart {
            message: Message::new(head, &[], None, start_usage),
        }
        .render()?,
    ];
    let (block, deltas): (ContentBlock<'_>, Vec<Delta<'_>>) = match reply {
        Reply::Text(text) => (
            ContentBlock::Text { text: "" },
            pieces(&text.text)
                .into_iter()
                .map(|text| Delta::TextDelta { text })
                .collect(),
        ),
        Reply::ToolCall(call) => (
            ContentBlock::ToolUse {
                id: head.tool_use_id,
                name: &call.name,
                input: &empty_input,
            },
            input_pieces(&call.arguments)
                .into_iter()
                .map(|partial_json| Delta::InputJsonDelta { partial_json })
                .collect(),
        ),
    };
    events.push(
        Event::ContentBlockStart {
            index: 0,
            content_block: block,
        }
        .render()?,
    );
    events.push(Bytes::from_static(PING));
    let content_start = events.len();
    for delta in deltas {
        events.push(Event::ContentBlockDelta { index: 0, delta }.render()?);
    }
    let content = content_start..events.len();
    let stop_sequence = match reply {
        Reply::Text(text) => text.stop_sequence.as_deref(),
        Reply::ToolCall(_) => None,
    };
    for event in [
        Event::ContentBlockStop { index: 0 },
        Event::MessageDelta {
            delta: MessageDelta {
                stop_reason: reply.finish().anthropic(),
                stop_sequence,
            },
            usage: OutputUsage {
                output_tokens: usage.output_tokens,
            },
        },
        Event::MessageStop,
    ] {
        events.push(event.render()?);
    }
    Ok(EventStream {
        events,
        content,
        error_event: Bytes::from_static(IN_BAND_ERROR),
        content_type: EVENT_STREAM,
    })
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::panic)]
mod tests {
    use super::*;

    #[test]
    fn tool_input_comes_in_at_least_two_pieces() {
        assert_eq!(
            input_pieces(r#"{"echo":"paris"}"#),
            [r#"{"echo":"#, r#""paris"}"#]
        );
        assert_eq!(
            input_pieces(r#"{"echo":"a b"}"#),
            [r#"{"echo":"#, r#""a"#, r#" b"}"#]
        );
    }
}
