//! `POST /v1/messages`: the Anthropic Messages API, JSON and named server-sent events.
//!
//! The request must carry an `anthropic-version` header and `max_tokens` (400
//! `invalid_request_error` otherwise, as the real API answers). Stop reasons: `end_turn`;
//! `max_tokens` when `max_tokens` cuts the reply; `stop_sequence` when the reply contains
//! one of `stop_sequences` (cut before it); `tool_use`. Words of text blocks (and tool
//! results) that carry `cache_control`, in `system` or in messages, count as
//! `cache_read_input_tokens` instead of `input_tokens`.

mod request;
mod response;
mod stream;

use std::sync::Arc;

use axum::extract::State;
use axum::http::HeaderMap;
use axum::response::Response;
use bytes::Bytes;
use serde_json::value::RawValue;

use crate::error::{Dialect, MockError, parse_body};
use crate::reply::Reply;
use crate::{Mock, json_response};
use request::MessagesRequest;
use response::{ContentBlock, Head, Message, Usage};

/// `POST /v1/messages`; failures in Anthropic's error shape.
pub(crate) async fn handle(
    State(mock): State<Arc<Mock>>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    answer(&mock, &headers, &body)
        .await
        .unwrap_or_else(|error| error.render(Dialect::Anthropic))
}

async fn answer(mock: &Mock, headers: &HeaderMap, body: &[u8]) -> Result<Response, MockError> {
    let admission = mock.faults.admit().await?;
    if !headers.contains_key("anthropic-version") {
        return Err(MockError::invalid(
            "anthropic-version: header is required",
            "anthropic-version",
        ));
    }
    let request: MessagesRequest = parse_body(body)?;
    let Some(model) = request.model.as_deref() else {
        return Err(MockError::invalid("model: Field required", "model"));
    };
    let (prompt, words) = request.prompt()?;
    let reply = Reply::new(&prompt, mock.options.completion_tokens);
    let usage = Usage {
        input_tokens: words.total - words.cached,
        cache_creation_input_tokens: 0,
        cache_read_input_tokens: words.cached,
        output_tokens: reply.tokens(),
    };
    let id = format!("msg_mock_{}", admission.seq);
    let tool_use_id = match &reply {
        Reply::ToolCall(call) => format!("toolu_{}", call.tag),
        Reply::Text(_) => String::new(),
    };
    let head = Head {
        id: &id,
        model,
        tool_use_id: &tool_use_id,
    };
    let request_id = admission.request_id();
    if request.stream == Some(true) {
        return Ok(stream::events(&head, &reply, usage)?.into_response(
            mock.pacing(),
            admission.fate,
            &request_id,
        ));
    }
    let input;
    let (content, stop_sequence) = match &reply {
        Reply::Text(text) => (
            ContentBlock::Text { text: &text.text },
            text.stop_sequence.as_deref(),
        ),
        Reply::ToolCall(call) => {
            input =
                serde_json::from_str::<&RawValue>(&call.arguments).map_err(MockError::internal)?;
            (
                ContentBlock::ToolUse {
                    id: &tool_use_id,
                    name: &call.name,
                    input,
                },
                None,
            )
        }
    };
    let content = [content];
    let message = Message::new(
        &head,
        &content,
        Some((reply.finish().anthropic(), stop_sequence)),
        usage,
    );
    json_response(&message, &request_id)
}
