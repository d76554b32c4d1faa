//! The Anthropic Messages dialect (`POST /v1/messages`), both ways.
//!
//! - **Provider side** (an OpenAI client, an Anthropic provider):
//!   [`encode_request`], [`decode_response`], [`MessageStreamDecoder`],
//!   [`decode_error`]; what kind of failure an error is: [`classify_error`].
//! - **Pass-through** (an Anthropic client, an Anthropic provider): the body
//!   travels as sent, only `model` rewritten ([`peek`], [`with_model`]); the
//!   answer is only watched for usage and errors ([`usage_of_message`],
//!   [`EventWatch`]).
//! - **Client side** (an Anthropic client, a provider of another dialect),
//!   in [`client`] and re-exported here: [`decode_request`],
//!   [`encode_response`], [`MessageStreamEncoder`]; errors as Anthropic
//!   writes them: [`error_type`], [`error_body`].
//!
//! # JSON answers
//!
//! Anthropic has no `response_format`. A request for `json_object` or
//! `json_schema` gets a tool named `json_response` whose `input_schema` is the
//! schema, and a `tool_choice` forcing it (with the client's own tools, the
//! model must call one of them or `json_response`). The answer reads that
//! tool's input back as the message text, finish reason `stop`; in a stream
//! its `input_json_delta` pieces are content deltas. The name is reserved: a
//! client tool called `json_response` is refused.
//!
//! # Names of dropped fields
//!
//! What a translation leaves out is named once each, in the order met: a
//! top-level field by its name (`seed`, `top_k`, `thinking`), a nested one by
//! its dotted path without indices (`messages.name`,
//! `messages.content.image_url.detail`, `tools.function.strict`). An
//! Anthropic request's `cache_control` is named once as `cache_control`,
//! wherever it was sent. Fields sent as `null` are not named.
//!
//! # Choices made
//!
//! - `system` and `developer` messages, wherever they stand, become the one
//!   top-level `system` text, joined by a blank line.
//! - Turns of the same role in a row are merged into one (tool results first
//!   in a user turn); empty text is left out, as Anthropic refuses it. A
//!   `tool` message's content is its text, parts joined by a newline.
//! - `temperature` passes as sent: above Anthropic's 1.0 the provider's own
//!   400 says so.
//! - `reasoning_effort` is dropped (and named), not mapped to `thinking`:
//!   extended thinking changes the token budget, forbids forced tool choice
//!   and wants its signed blocks sent back, none of which an OpenAI client
//!   can honour.
//! - Thinking comes back as `reasoning_content`; its signature is lost, so a
//!   later turn cannot send the thinking back.

mod error;
mod passthrough;
mod request;
mod response;
mod stream;
mod tools;
mod wire;

pub mod client;

pub use client::{MessageStreamEncoder, decode_request, encode_response};
pub use error::{classify_error, decode_error, error_body, error_type, stream_error};
pub use passthrough::{EventWatch, Peek, peek, usage_of_message, with_model};
pub use request::encode_request;
pub use response::decode_response;
pub use stream::MessageStreamDecoder;

use serde_json::{Map, Value};

/// The names of fields a translation left out, each once, in order.
#[derive(Debug, Default)]
pub(crate) struct Dropped(Vec<String>);

impl Dropped {
    /// Names `name`, unless it was named already (or the list is full).
    pub(crate) fn add(&mut self, name: impl AsRef<str>) {
        crate::translate::note_dropped(&mut self.0, name.as_ref());
    }

    /// Names every non-null field of `extra` as `<path>.<field>`.
    pub(crate) fn extra(&mut self, path: &str, extra: &Map<String, Value>) {
        for (key, value) in extra {
            if !value.is_null() {
                self.add(format!("{path}.{key}"));
            }
        }
    }

    /// The names.
    pub(crate) fn into_names(self) -> Vec<String> {
        self.0
    }
}

#[cfg(test)]
mod tests {
    //! Usage read the same from every Anthropic path: a message passed
    //! through or translated, a stream watched or translated.

    use super::*;
    use crate::openai::Usage;
    use crate::sse::SseEvent;
    use crate::translate::StreamDecoder;

    /// 12 uncached input tokens, 3000 read from the cache and 1500 written to
    /// it; 410 output tokens, thinking included.
    const EXPECTED: Usage = Usage {
        prompt_tokens: 4512,
        completion_tokens: 410,
        total_tokens: 4922,
        cached_tokens: 3000,
        cache_write_tokens: 1500,
        reasoning_tokens: 0,
    };

    const MESSAGE: &str = r#"{"id":"msg_01Aq9w938a90dw8q","type":"message","role":"assistant","model":"claude-sonnet-4-5-20250929","content":[{"type":"thinking","thinking":"The user wants a number.","signature":"EqQBCgIYAhIM"},{"type":"text","text":"42"}],"stop_reason":"end_turn","stop_sequence":null,"usage":{"input_tokens":12,"cache_creation_input_tokens":1500,"cache_read_input_tokens":3000,"cache_creation":{"ephemeral_5m_input_tokens":1500,"ephemeral_1h_input_tokens":0},"output_tokens":410,"service_tier":"standard"}}"#;

    /// A stream up to its `message_delta`, whose usage is the argument.
    fn stream(delta_usage: &str) -> Vec<(&'static str, String)> {
        let events = [
            (
                "message_start",
                r#"{"type":"message_start","message":{"id":"msg_01Aq9w938a90dw8q","type":"message","role":"assistant","model":"claude-sonnet-4-5-20250929","content":[],"stop_reason":null,"stop_sequence":null,"usage":{"input_tokens":12,"cache_creation_input_tokens":1500,"cache_read_input_tokens":3000,"cache_creation":{"ephemeral_5m_input_tokens":1500,"ephemeral_1h_input_tokens":0},"output_tokens":1,"service_tier":"standard"}}}"#,
            ),
            (
                "content_block_start",
                r#"{"type":"content_block_start","index":0,"content_block":{"type":"thinking","thinking":"","signature":""}}"#,
            ),
            (
                "content_block_delta",
                r#"{"type":"content_block_delta","index":0,"delta":{"type":"thinking_delta","thinking":"The user wants a number."}}"#,
            ),
            (
                "content_block_delta",
                r#"{"type":"content_block_delta","index":0,"delta":{"type":"signature_delta","signature":"EqQBCgIYAhIM"}}"#,
            ),
            (
                "content_block_stop",
                r#"{"type":"content_block_stop","index":0}"#,
            ),
            (
                "content_block_start",
                r#"{"type":"content_block_start","index":1,"content_block":{"type":"text","text":""}}"#,
            ),
            (
                "content_block_delta",
                r#"{"type":"content_block_delta","index":1,"delta":{"type":"text_delta","text":"42"}}"#,
            ),
            (
                "content_block_stop",
                r#"{"type":"content_block_stop","index":1}"#,
            ),
        ];
        let mut events: Vec<_> = events.map(|(name, data)| (name, data.to_owned())).into();
        events.push((
            "message_delta",
            format!(
                r#"{{"type":"message_delta","delta":{{"stop_reason":"end_turn","stop_sequence":null}},"usage":{delta_usage}}}"#
            ),
        ));
        events.push(("message_stop", r#"{"type":"message_stop"}"#.to_owned()));
        events
    }

    /// `message_delta` usage as the API sends it now (every count again,
    /// cumulative) and as it used to (the output tokens alone).
    const DELTA_USAGES: [&str; 2] = [
        r#"{"input_tokens":12,"cache_creation_input_tokens":1500,"cache_read_input_tokens":3000,"output_tokens":410}"#,
        r#"{"output_tokens":410}"#,
    ];

    #[test]
    fn a_message_reads_with_its_cache_counts() {
        let body = MESSAGE.as_bytes();
        assert_eq!(usage_of_message(body).map(|u| u.totals()), Some(EXPECTED));
        let completion = decode_response(body, 1_700_000_000).unwrap();
        assert_eq!(completion.usage.map(|u| u.totals()), Some(EXPECTED));
    }

    #[test]
    fn a_stream_counts_cache_writes_once_and_keeps_the_last_output_count() {
        for delta_usage in DELTA_USAGES {
            let mut watch = EventWatch::new();
            let mut decoder = MessageStreamDecoder::new(1_700_000_000);
            let mut chunks = Vec::new();
            for (name, data) in &stream(delta_usage) {
                let event = SseEvent {
                    event: Some(name),
                    data: data.as_bytes(),
                };
                let watched = watch.event(event).unwrap();
                assert_eq!(decoder.event(event, &mut chunks).unwrap(), watched);
            }
            assert_eq!(
                watch.usage().map(|u| u.totals()),
                Some(EXPECTED),
                "{delta_usage}"
            );
            let last = chunks.last().and_then(|chunk| chunk.usage);
            assert_eq!(last.map(|u| u.totals()), Some(EXPECTED), "{delta_usage}");
        }
    }
}
