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
