//! An Anthropic Messages request read as an OpenAI chat request.

use std::collections::BTreeMap;

use serde::Deserialize;
use serde_json::value::RawValue;
use serde_json::{Map, Value, json};

use super::tools::{AnthropicToolChoice, read_tools};
use crate::anthropic::Dropped;
use crate::anthropic::wire::{Block, Metadata, Source};
use crate::openai::InvalidRequest;
use crate::openai::chat::{
    ChatRequest, Content, FunctionCall, ImageUrl, Message, Part, Role, Stop, ToolCall,
};
use crate::translate::Decoded;

/// Reads a Messages request. A bad shape is a 400 naming the field (as
/// Anthropic's `messages.0.content: …`); what the OpenAI shape cannot carry
/// without changing the answer (server tools, images in tool results, …) is
/// refused; the rest that it cannot carry is dropped and named (see the
/// module doc of [`crate::anthropic`]).
///
/// Each field is read straight from its text in the body (the body is parsed
/// once into raw field values, never into a `Value` tree).
pub fn decode_request(body: &[u8]) -> Result<Decoded, InvalidRequest> {
    let mut fields: Fields<'_> = serde_json::from_slice(body).map_err(|e| InvalidRequest {
        message: format!("The request body is not a valid JSON object: {e}"),
        param: None,
    })?;
    let mut dropped = Dropped::default();
    let model: String = required(take(&mut fields, "model")?, "model")?;
    let raw_messages: Vec<InputMessage<'_>> = required(take(&mut fields, "messages")?, "messages")?;
    let max_tokens: u64 = required(take(&mut fields, "max_tokens")?, "max_tokens")?;
    let mut messages = Vec::with_capacity(raw_messages.len() + 1);
    if let Some(system) = take::<&RawValue>(&mut fields, "system")? {
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
    let tools = match take::<Vec<&RawValue>>(&mut fields, "tools")? {
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
        stream,
        tools,
        tool_choice,
        parallel_tool_calls,
        user,
        ..ChatRequest::default()
    };
    // What is left has no OpenAI counterpart: top_k, thinking, service_tier, …
    for (name, value) in &fields {
        if value.get() != "null" {
            dropped.add(name);
        }
    }
    Ok(Decoded {
        request,
        dropped: dropped.into_names(),
    })
}

/// The request's top-level fields, each as its text in the body (a field sent
/// twice keeps its last value).
type Fields<'a> = BTreeMap<String, &'a RawValue>;

/// Removes and reads the field `name` (`None` when absent or null).
fn take<'a, T: Deserialize<'a>>(
    fields: &mut Fields<'a>,
    name: &str,
) -> Result<Option<T>, InvalidRequest> {
    match fields.remove(name) {
        None => Ok(None),
        Some(raw) if raw.get() == "null" => Ok(None),
        Some(raw) => read(raw, || name.to_owned()).map(Some),
    }
}

/// Reads `raw` as a `T`, a 400 naming the field at `path` when it is not one
/// (the path is written only then).
pub(super) fn read<'a, T: Deserialize<'a>>(
    raw: &'a RawValue,
    path: impl FnOnce() -> String,
) -> Result<T, InvalidRequest> {
    serde_json::from_str(raw.get()).map_err(|e| {
        let path = path();
        InvalidRequest::new(&path, format!("{path}: {}", without_position(&e)))
    })
}

/// serde's message without its "at line 1 column N", which would count from
/// the field's start, not the body's.
fn without_position(e: &serde_json::Error) -> String {
    let text = e.to_string();
    let suffix = format!(" at line {} column {}", e.line(), e.column());
    match text.strip_suffix(&suffix) {
        Some(message) => message.to_owned(),
        None => text,
    }
}

fn required<T>(value: Option<T>, name: &str) -> Result<T, InvalidRequest> {
    value.ok_or_else(|| InvalidRequest::new(name, format!("{name}: Field required")))
}

/// A block's `cache_control` is dropped (and named once). Only a block whose
/// text mentions it is parsed to see whether it is its own, non-null field.
pub(super) fn note_cache_control(block: &RawValue, dropped: &mut Dropped) {
    #[derive(Deserialize)]
    struct Probe {
        #[serde(default)]
        cache_control: Option<serde::de::IgnoredAny>,
    }
    if memchr::memmem::find(block.get().as_bytes(), b"\"cache_control\"").is_some()
        && serde_json::from_str::<Probe>(block.get()).is_ok_and(|p| p.cache_control.is_some())
    {
        dropped.add("cache_control");
    }
}

/// `"…"` (a JSON string) or `[…]` (a list), by its first character.
fn is_string(raw: &RawValue) -> bool {
    raw.get().starts_with('"')
}

/// `system`: a string, or text blocks joined by a blank line.
fn system_text(system: &RawValue, dropped: &mut Dropped) -> Result<String, InvalidRequest> {
    let refused = || {
        InvalidRequest::new(
            "system",
            "system: Input should be a valid string or a list of text blocks",
        )
    };
    if is_string(system) {
        return serde_json::from_str(system.get()).map_err(|_| refused());
    }
    let blocks: Vec<&RawValue> = serde_json::from_str(system.get()).map_err(|_| refused())?;
    let mut texts = Vec::with_capacity(blocks.len());
    for (j, block) in blocks.into_iter().enumerate() {
        note_cache_control(block, dropped);
        match read::<Block>(block, || format!("system.{j}"))? {
            Block::Text { text } => texts.push(text),
            _ => {
                let path = format!("system.{j}");
                return Err(InvalidRequest::new(
                    &path,
                    format!("{path}: system blocks must be text blocks"),
                ));
            }
        }
    }
    Ok(texts.join("\n\n"))
}

/// A message as sent, its content still text.
#[derive(Deserialize)]
struct InputMessage<'a> {
    role: String,
    #[serde(borrow)]
    content: &'a RawValue,
}

/// Appends the OpenAI messages one Anthropic turn makes.
fn read_message(
    i: usize,
    message: InputMessage<'_>,
    out: &mut Vec<Message>,
    dropped: &mut Dropped,
) -> Result<(), InvalidRequest> {
    let InputMessage { role, content } = message;
    let assistant = match role.as_str() {
        "user" => false,
        "assistant" => true,
        _ => {
            let path = format!("messages.{i}.role");
            return Err(InvalidRequest::new(
                &path,
                format!("{path}: Input should be 'user' or 'assistant'"),
            ));
        }
    };
    let refused = || {
        let path = format!("messages.{i}.content");
        InvalidRequest::new(
            &path,
            format!("{path}: Input should be a valid string or a list of content blocks"),
        )
    };
    if is_string(content) {
        let role = if assistant {
            Role::Assistant
        } else {
            Role::User
        };
        let text: String = serde_json::from_str(content.get()).map_err(|_| refused())?;
        out.push(Message::text(role, text));
        return Ok(());
    }
    let blocks: Vec<&RawValue> = serde_json::from_str(content.get()).map_err(|_| refused())?;
    let mut turn = Turn::default();
    for (j, block) in blocks.into_iter().enumerate() {
        note_cache_control(block, dropped);
        let path = || format!("messages.{i}.content.{j}");
        match (read::<Block>(block, path)?, assistant) {
            (Block::Text { text }, _) => turn.text(text, assistant),
            (Block::Image { source }, false) => turn.parts.push(image(source, &path())?),
            (Block::Document { source, title }, false) => {
                turn.parts.push(document(source, title, &path())?)
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
                    &path(),
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
            (Block::Thinking { .. }, true) => dropped.add("messages.content.thinking"),
            (Block::RedactedThinking, true) => dropped.add("messages.content.redacted_thinking"),
            _ => {
                #[derive(Deserialize)]
                struct Kind {
                    #[serde(rename = "type", default)]
                    kind: String,
                }
                let kind = serde_json::from_str::<Kind>(block.get())
                    .map_or_else(|_| String::new(), |k| k.kind);
                let path = path();
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
            let blocks: Vec<Block> = serde_json::from_value(blocks)
                .map_err(|e| InvalidRequest::new(&path, format!("{path}: {e}")))?;
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
