//! Client side: an Anthropic client (`POST /v1/messages`) of a provider of
//! another dialect, through the OpenAI chat shapes.
//!
//! # Choices made
//!
//! - A `tool_result` becomes a `tool` message placed before the rest of its
//!   user turn; its text blocks are joined by a newline, and one marked
//!   `is_error` is prefixed `Error: ` (OpenAI has no such flag, and the model
//!   should still know the call failed). Images in a tool result are refused.
//! - `system` text blocks are joined by a blank line into one system message;
//!   an assistant turn's text blocks are joined as they are.
//! - A base64 `document` (a PDF) becomes an OpenAI `file` part with a
//!   `data:` URL, named by its `title` (else `document.pdf`); a plain-text
//!   document becomes a text part. A document by URL, and any source by
//!   `file_id`, are refused: OpenAI file parts carry data, not addresses.
//! - Thinking is neither sent (assistant `thinking` blocks are dropped and
//!   named) nor returned (`reasoning_content` has no signature, which a
//!   `thinking` block needs).
//! - A tool call whose arguments are not JSON comes back with `input: {}`,
//!   and the rest of the answer as usual.
//! - `stop_sequence` is always `null`: OpenAI does not say which sequence
//!   stopped the answer, so `stop` reads as `end_turn`.

mod request;
mod response;
mod stream;
mod tools;

pub use request::decode_request;
pub use response::encode_response;
pub use stream::MessageStreamEncoder;

/// Anthropic's stop reason for OpenAI's finish reason.
fn stop_reason(finish_reason: Option<&str>) -> &'static str {
    match finish_reason {
        Some("length") => "max_tokens",
        Some("tool_calls" | "function_call") => "tool_use",
        Some("content_filter") => "refusal",
        _ => "end_turn",
    }
}
