//! An OpenAI `chat.completion` written as an Anthropic `message`.

use serde::Serialize;
use serde_json::{Value, json};

use super::stop_reason;
use crate::anthropic::wire::{Block, Usage};
use crate::openai::chat::{ChatCompletion, ChatUsage};

/// The `message` body, as the Messages API returns it.
#[derive(Serialize)]
struct Message<'a> {
    id: &'a str,
    #[serde(rename = "type")]
    kind: &'static str,
    role: &'static str,
    model: &'a str,
    content: Vec<Block>,
    stop_reason: &'static str,
    stop_sequence: Option<String>,
    usage: Usage,
}

/// Writes the first choice of `completion` as a Messages response: its text
/// (or refusal) as a text block, its tool calls as `tool_use` blocks.
pub fn encode_response(completion: &ChatCompletion) -> Vec<u8> {
    let choice = completion.choices.first();
    let message = choice.map(|c| &c.message);
    let mut content = Vec::new();
    let text = message.and_then(|m| m.content.as_deref().or(m.refusal.as_deref()));
    if let Some(text) = text.filter(|t| !t.is_empty()) {
        content.push(Block::text(text));
    }
    for call in message
        .and_then(|m| m.tool_calls.as_deref())
        .unwrap_or_default()
    {
        content.push(Block::ToolUse {
            id: call.id.clone(),
            name: call.function.name.clone(),
            input: arguments(&call.function.arguments),
        });
    }
    let finish = choice.and_then(|c| c.finish_reason.as_deref());
    let refused = message.is_some_and(|m| m.refusal.is_some() && m.content.is_none());
    let body = Message {
        id: &completion.id,
        kind: "message",
        role: "assistant",
        model: &completion.model,
        content,
        stop_reason: if refused {
            "refusal"
        } else {
            stop_reason(finish)
        },
        stop_sequence: None,
        usage: Usage::of_chat(&completion.usage.unwrap_or_else(|| ChatUsage::new(0, 0))),
    };
    // Serializing these types into memory cannot fail.
    serde_json::to_vec(&body).unwrap_or_default()
}

/// A tool call's arguments as the `input` object (`{}` when they are not one).
fn arguments(text: &str) -> Value {
    match serde_json::from_str::<Value>(text) {
        Ok(input) if input.is_object() => input,
        _ => json!({}),
    }
}
