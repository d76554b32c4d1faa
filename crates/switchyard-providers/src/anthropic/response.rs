//! An Anthropic `message` read as an OpenAI `chat.completion`.

use serde_json::Map;

use super::wire::{JSON_TOOL, MessageResponse};
use crate::openai::chat::{ChatCompletion, Choice, FunctionCall, ResponseMessage, ToolCall};
use crate::translate::DecodeError;

/// Reads a Messages response: text blocks are the content (the
/// `json_response` tool's input too, see the module doc), `tool_use` blocks
/// the tool calls, thinking the `reasoning_content`; `created` is the time
/// the gateway stamps on it (Anthropic sends none).
pub fn decode_response(body: &[u8], created: u64) -> Result<ChatCompletion, DecodeError> {
    let message: MessageResponse = serde_json::from_slice(body)
        .map_err(|e| DecodeError(format!("not an Anthropic message: {e}")))?;
    let mut text = String::new();
    let mut reasoning = String::new();
    let mut calls = Vec::new();
    for block in message.content {
        match (block.kind.as_ref(), block.name) {
            ("text", _) => text.push_str(block.text.as_deref().unwrap_or_default()),
            ("thinking", _) => reasoning.push_str(block.thinking.as_deref().unwrap_or_default()),
            ("tool_use", Some(name)) => {
                let input = block
                    .input
                    .map_or_else(|| "{}".to_owned(), |raw| compact(raw.get()));
                if name == JSON_TOOL {
                    text.push_str(&input);
                } else {
                    calls.push(ToolCall {
                        id: block.id.unwrap_or_default(),
                        kind: "function".to_owned(),
                        function: FunctionCall {
                            name,
                            arguments: input,
                        },
                    });
                }
            }
            // redacted_thinking, and server tools' blocks.
            _ => {}
        }
    }
    let finish_reason = message
        .stop_reason
        .as_deref()
        .map(|reason| finish_reason(reason, !calls.is_empty()).to_owned());
    let content = (!text.is_empty() || calls.is_empty()).then_some(text);
    Ok(ChatCompletion {
        id: message.id,
        object: "chat.completion".to_owned(),
        created,
        model: message.model,
        system_fingerprint: None,
        choices: vec![Choice {
            index: 0,
            message: ResponseMessage {
                role: "assistant".to_owned(),
                content,
                refusal: None,
                tool_calls: (!calls.is_empty()).then_some(calls),
                reasoning_content: (!reasoning.is_empty()).then_some(reasoning),
                extra: Map::new(),
            },
            finish_reason,
            logprobs: None,
        }],
        usage: Some(message.usage.to_chat()),
        extra: Map::new(),
    })
}

/// OpenAI's finish reason for Anthropic's stop reason; `tool_use` with no
/// call but the JSON answer's is a plain `stop`.
pub(crate) fn finish_reason(stop_reason: &str, called_tools: bool) -> &'static str {
    match stop_reason {
        "max_tokens" | "model_context_window_exceeded" => "length",
        "tool_use" if called_tools => "tool_calls",
        "refusal" => "content_filter",
        // end_turn, stop_sequence, pause_turn, and tool_use of the JSON answer.
        _ => "stop",
    }
}

/// Valid JSON text without the whitespace between tokens.
fn compact(json: &str) -> String {
    let mut out = String::with_capacity(json.len());
    let (mut in_string, mut escaped) = (false, false);
    for c in json.chars() {
        if in_string {
            if escaped {
                escaped = false;
            } else if c == '\\' {
                escaped = true;
            } else if c == '"' {
                in_string = false;
            }
        } else if c == '"' {
            in_string = true;
        } else if c.is_ascii_whitespace() {
            continue;
        }
        out.push(c);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn compacts_json_text_keeping_strings() {
        let text = "{ \"b\" : [1, 2],\n \"a\": \"x \\\" y\" }";
        assert_eq!(compact(text), r#"{"b":[1,2],"a":"x \" y"}"#);
    }
}
