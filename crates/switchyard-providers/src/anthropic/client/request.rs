//! An Anthropic Messages request read as an OpenAI chat request.

use serde::Deserialize;
use serde::de::DeserializeOwned;
use serde_json::{Map, Value, json};

use super::tools::{AnthropicToolChoice, read_tools};
use crate::anthropic::Dropped;
use crate::anthropic::wire::{Block, Metadata, Source};
use crate::openai::InvalidRequest;
use crate::openai::chat::{
    ChatRequest, Content, FunctionCall, ImageUrl, Message, Part, Role, Stop, StreamOptions,
    ToolCall,
};
use crate::translate::Decoded;

/// Reads a Messages request. A bad shape is a 400 naming the field (as
/// Anthropic's `messages.0.content: …`); what the OpenAI shape cannot carry
/// without changing the answer (server tools, images in tool results, …) is
/// refused; the rest that it cannot carry is dropped and named (see the
/// module doc of [`crate::anthropic`]).
pub fn decode_request(body: &[u8]) -> Result<Decoded, InvalidRequest> {
    let mut fields: Map<String, Value> =
        serde_json::from_slice(body).map_err(|e| InvalidRequest {
            message: format!("The request body is not a valid JSON object: {e}"),
            param: None,
        })?;
    let mut dropped = Dropped::default();
    let model: String = required(take(&mut fields, "model")?, "model")?;
    let raw_messages: Vec<Value> = required(take(&mut fields, "messages")?, "messages")?;
    let max_tokens: u64 = required(take(&mut fields, "max_tokens")?, "max_tokens")?;
    let mut messages = Vec::with_capacity(raw_messages.len() + 1);
    if let Some(system) = take::<Value>(&mut fields, "system")? {
        let text = system_text(system, &mut dropped)?;
        if !text.is_empty() {
            messages.push(Message::text(Role::System, text));
        }
    }
    for (i, message) in raw_messages.into_iter().enumerate() {
        read_message(i, message, &mut messages, &mut dropped)?;
    }
    let stream = take::<bool>(&mut fields, "stream")?;
    let user = take::<Metadata>(&mut fields, "metadata")?.and_then(|m| m.user_id);
    let tools = match take::<Vec<Value>>(&mut fields, "tools")? {
        Some(tools) => Some(read_tools(tools, &mut dropped)?),
        None => None,
    };
    let (tool_choice, parallel_tool_calls) =
        match take::<AnthropicToolChoice>(&mut fields, "tool_choice")? {
            Some(choice) => choice.into_openai()?,
            None => (None, None),
        };
    let request = ChatRequest {
        model,
        messages,
        max_tokens: Some(max_tokens),
        stop: take::<Vec<String>>(&mut fields, "stop_sequences")?
            .filter(|s| !s.is_empty())
            .map(Stop::Many),
        temperature: take(&mut fields, "temperature")?,
        top_p: take(&mut fields, "top_p")?,
        stream_options: (stream == Some(true)).then(|| StreamOptions {
            include_usage: Some(true),
            extra: Map::new(),
        }),
        stream,
        tools,
        tool_choice,
        parallel_tool_calls,
        user,
        ..ChatRequest::default()
    };
    // What is left has no OpenAI counterpart: top_k, thinking, service_tier, …
    for (name, value) in &fields {
        if !value.is_null() {
            dropped.add(name);
        }
    }
    Ok(Decoded {
        request,
        dropped: dropped.into_names(),
    })
}

/// Removes and reads the field `name` (`None` when absent or null).
fn take<T: DeserializeOwned>(
    fields: &mut Map<String, Value>,
    name: &str,
) -> Result<Option<T>, InvalidRequest> {
    match fields.remove(name) {
        None | Some(Value::Null) => Ok(None),
        Some(value) => read(value, name).map(Some),
    }
}

/// Reads `value` as a `T`, a 400 naming `path` when it is not one.
pub(super) fn read<T: DeserializeOwned>(value: Value, path: &str) -> Result<T, InvalidRequest> {
    serde_json::from_value(value).map_err(|e| InvalidRequest::new(path, format!("{path}: {e}")))
}

fn required<T>(value: Option<T>, name: &str) -> Result<T, InvalidRequest> {
    value.ok_or_else(|| InvalidRequest::new(name, format!("{name}: Field required")))
}

/// A block's `cache_control` is dropped (and named once).
pub(super) fn note_cache_control(block: &Value, dropped: &mut Dropped) {
    if block.get("cache_control").is_some_and(|c| !c.is_null()) {
        dropped.add("cache_control");
    }
}

/// `system`: a string, or text blocks joined by a blank line.
fn system_text(system: Value, dropped: &mut Dropped) -> Result<String, InvalidRequest> {
    let blocks = match system {
        Value::String(text) => return Ok(text),
        Value::Array(blocks) => blocks,
        _ => {
            return Err(InvalidRequest::new(
                "system",
                "system: Input should be a valid string or a list of text blocks",
            ));
        }
    };
    let mut texts = Vec::with_capacity(blocks.len());
    for (j, block) in blocks.into_iter().enumerate() {
        note_cache_control(&block, dropped);
        let path = format!("system.{j}");
        match read::<Block>(block, &path)? {
            Block::Text { text } => texts.push(text),
            _ => {
                return Err(InvalidRequest::new(
                    &path,
                    format!("{path}: system blocks must be text blocks"),
                ));
            }
        }
    }
    Ok(texts.join("\n\n"))
}

#[derive(Deserialize)]
struct InputMessage {
    role: String,
    content: Value,
}

/// Appends the OpenAI messages one Anthropic turn makes.
fn read_message(
    i: usize,
    message: Value,
    out: &mut Vec<Message>,
    dropped: &mut Dropped,
) -> Result<(), InvalidRequest> {
    let path = format!("messages.{i}");
    let InputMessage { role, content } = read(message, &path)?;
    let assistant = match role.as_str() {
        "user" => false,
        "assistant" => true,
        _ => {
            let path = format!("{path}.role");
            return Err(InvalidRequest::new(
                &path,
                format!("{path}: Input should be 'user' or 'assistant'"),
            ));
        }
    };
    let blocks = match content {
        Value::String(text) => {
            let role = if assistant {
                Role::Assistant
            } else {
                Role::User
            };
            out.push(Message::text(role, text));
            return Ok(());
        }
        Value::Array(blocks) => blocks,
        _ => {
            let path = format!("{path}.content");
            return Err(InvalidRequest::new(
                &path,
                format!("{path}: Input should be a valid string or a list of content blocks"),
            ));
        }
    };
    let mut turn = Turn::default();
    for (j, block) in blocks.into_iter().enumerate() {
        note_cache_control(&block, dropped);
        let path = format!("{path}.content.{j}");
        let kind = block
            .get("type")
            .and_then(Value::as_str)
            .unwrap_or_default()
            .to_owned();
        match (read::<Block>(block, &path)?, assistant) {
            (Block::Text { text }, _) => turn.text(text, assistant),
            (Block::Image { source }, false) => turn.parts.push(image(source, &path)?),
            (Block::Document { source, title }, false) => {
                turn.parts.push(document(source, title, &path)?)
            }
            (
                Block::ToolResult {
                    tool_use_id,
                    content,
                    is_error,
                },
                false,
            ) => {
                out.push(tool_message(
                    tool_use_id,
                    content,
                    is_error == Some(true),
                    &path,
                )?);
            }
            (Block::ToolUse { id, name, input }, true) => turn.calls.push(ToolCall {
                id,
                kind: "function".to_owned(),
                function: FunctionCall {
                    name,
                    arguments: input.to_string(),
                },
            }),
            (Block::Thinking { .. } | Block::RedactedThinking, true) => {
                dropped.add(format!("messages.content.{kind}"));
            }
            _ => {
                let side = if assistant { "an assistant" } else { "a user" };
                return Err(InvalidRequest::new(
                    &path,
                    format!(
                        "{path}: `{kind}` blocks in {side} turn are not supported by this model"
                    ),
                ));
            }
        }
    }
    out.extend(turn.into_message(assistant));
    Ok(())
}

/// The rest of a turn, its tool results set apart.
#[derive(Default)]
struct Turn {
    parts: Vec<Part>,
    text: String,
    calls: Vec<ToolCall>,
}

impl Turn {
    fn text(&mut self, text: String, assistant: bool) {
        if assistant {
            self.text.push_str(&text);
        } else {
            self.parts.push(Part::text(text));
        }
    }

    fn into_message(self, assistant: bool) -> Option<Message> {
        if assistant {
            if self.text.is_empty() && self.calls.is_empty() {
                return None;
            }
            let mut message = Message::text(Role::Assistant, self.text);
            if message.content == Some(Content::Text(String::new())) {
                message.content = None;
            }
            message.tool_calls = (!self.calls.is_empty()).then_some(self.calls);
            Some(message)
        } else if self.parts.is_empty() {
            None
        } else {
            let mut message = Message::text(Role::User, String::new());
            message.content = Some(Content::Parts(self.parts));
            Some(message)
        }
    }
}

fn image(source: Source, path: &str) -> Result<Part, InvalidRequest> {
    let url = match source {
        Source::Base64 { media_type, data } => format!("data:{media_type};base64,{data}"),
        Source::Url { url } => url,
        Source::Text { .. } => {
            return Err(InvalidRequest::new(
                path,
                format!("{path}: an image source must be base64 or url"),
            ));
        }
    };
    Ok(Part {
        kind: "image_url".to_owned(),
        text: None,
        image_url: Some(ImageUrl { url, detail: None }),
        extra: Map::new(),
    })
}

/// A base64 document as a `file` part, a text document as a text part.
fn document(source: Source, title: Option<String>, path: &str) -> Result<Part, InvalidRequest> {
    match source {
        Source::Base64 { media_type, data } => {
            let mut extra = Map::new();
            let filename = title.unwrap_or_else(|| "document.pdf".to_owned());
            extra.insert(
                "file".to_owned(),
                json!({"filename": filename, "file_data": format!("data:{media_type};base64,{data}")}),
            );
            Ok(Part {
                kind: "file".to_owned(),
                text: None,
                image_url: None,
                extra,
            })
        }
        Source::Text { data, .. } => Ok(Part::text(data)),
        Source::Url { .. } => Err(InvalidRequest::new(
            path,
            format!(
                "{path}: documents by URL are not supported by this model; send them as base64"
            ),
        )),
    }
}

/// A `tool_result` as a `tool` message.
fn tool_message(
    id: String,
    content: Option<Value>,
    is_error: bool,
    path: &str,
) -> Result<Message, InvalidRequest> {
    let mut text = match content {
        None => String::new(),
        Some(Value::String(text)) => text,
        Some(blocks) => {
            let path = format!("{path}.content");
            let blocks: Vec<Block> = read(blocks, &path)?;
            let mut texts = Vec::with_capacity(blocks.len());
            for block in blocks {
                match block {
                    Block::Text { text } => texts.push(text),
                    _ => {
                        return Err(InvalidRequest::new(
                            &path,
                            format!(
                                "{path}: only text is supported in a tool_result by this model"
                            ),
                        ));
                    }
                }
            }
            texts.join("\n")
        }
    };
    if is_error {
        text.insert_str(0, "Error: ");
    }
    let mut message = Message::text(Role::Tool, text);
    message.tool_call_id = Some(id);
    Ok(message)
}
