//! The Anthropic `Message` the mock answers with, whole or as the stream's first event.

use serde::Serialize;
use serde_json::value::RawValue;

/// Anthropic's `Message`.
#[derive(Serialize)]
pub(super) struct Message<'a> {
    pub id: &'a str,
    #[serde(rename = "type")]
    pub kind: &'static str,
    pub role: &'static str,
    pub model: &'a str,
    pub content: &'a [ContentBlock<'a>],
    pub stop_reason: Option<&'static str>,
    pub stop_sequence: Option<&'a str>,
    pub usage: Usage,
}

/// A content block of the answer.
#[derive(Serialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub(super) enum ContentBlock<'a> {
    /// Text.
    Text { text: &'a str },
    /// A tool call; `input` is a JSON object.
    ToolUse {
        id: &'a str,
        name: &'a str,
        input: &'a RawValue,
    },
}

/// Anthropic's `Usage`: input words outside `cache_control` blocks are `input_tokens`,
/// those inside are `cache_read_input_tokens`; the mock never writes a cache.
#[derive(Clone, Copy, Debug, Serialize)]
pub(super) struct Usage {
    pub input_tokens: u64,
    pub cache_creation_input_tokens: u64,
    pub cache_read_input_tokens: u64,
    pub output_tokens: u64,
}

/// What every response to one request shares.
pub(super) struct Head<'a> {
    /// `msg_mock_<seq>`.
    pub id: &'a str,
    /// The request's model.
    pub model: &'a str,
    /// The tool call's id: `toolu_` and the call's tag.
    pub tool_use_id: &'a str,
}

impl<'a> Message<'a> {
    /// The message, with `content` and, when it is finished, why it stopped.
    pub(super) fn new(
        head: &Head<'a>,
        content: &'a [ContentBlock<'a>],
        stop: Option<(&'static str, Option<&'a str>)>,
        usage: Usage,
    ) -> Self {
        Self {
            id: head.id,
            kind: "message",
            role: "assistant",
            model: head.model,
            content,
            stop_reason: stop.map(|(reason, _)| reason),
            stop_sequence: stop.and_then(|(_, sequence)| sequence),
            usage,
        }
    }
}
