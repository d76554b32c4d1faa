//! An OpenAI chat request written as an Anthropic Messages request.

use serde_json::{Value, json};

use super::Dropped;
use super::tools::tools_and_choice;
use super::wire::{Block, InputMessage, MessagesRequest, Metadata, Source};
use crate::openai::InvalidRequest;
use crate::openai::chat::{ChatRequest, Content, Message, Part, Role};
use crate::translate::Encoded;

/// Writes `request` as a Messages request for `upstream_model`; `max_tokens`
/// (which Anthropic requires) is the client's cap, else `default_max_tokens`.
///
/// A field that cannot be expressed is refused (400) when leaving it out
/// would change what the answer means, and is otherwise left out and named
/// in [`Encoded::dropped`] (see the module doc for the names).
pub fn encode_request(
    request: &ChatRequest,
    upstream_model: &str,
    default_max_tokens: u64,
) -> Result<Encoded, InvalidRequest> {
    let mut dropped = Dropped::default();
    refuse_or_drop_top_level(request, &mut dropped)?;
    let mut system = Vec::new();
    let mut turns = Vec::new();
    // (turn, tool results it starts with), see `push_tool_result`.
    let mut leading = (usize::MAX, 0);
    for (i, message) in request.messages.iter().enumerate() {
        dropped.extra("messages", &message.extra);
        if message.name.is_some() {
            dropped.add("messages.name");
        }
        match message.role {
            Role::System | Role::Developer => {
                let text = message.content.as_ref().map(Content::joined_text);
                system.extend(text.filter(|t| !t.is_empty()));
            }
            Role::User => push(
                &mut turns,
                "user",
                content_blocks(i, message, &mut dropped)?,
            ),
            Role::Assistant => {
                let mut blocks = content_blocks(i, message, &mut dropped)?;
                blocks.extend(tool_uses(i, message)?);
                push(&mut turns, "assistant", blocks);
            }
            Role::Tool => push_tool_result(&mut turns, tool_result(i, message)?, &mut leading),
            Role::Function => {
                return Err(InvalidRequest::new(
                    &format!("messages[{i}].role"),
                    "`function` messages are not supported by this model; send `tool` messages",
                ));
            }
        }
    }
    let (tools, tool_choice) = tools_and_choice(request, &mut dropped)?;
    let body = MessagesRequest {
        model: upstream_model.to_owned(),
        messages: turns,
        max_tokens: request.token_cap().unwrap_or(default_max_tokens),
        system: (!system.is_empty()).then(|| system.join("\n\n")),
        stop_sequences: request.stop.as_ref().map(|s| s.to_vec()),
        temperature: request.temperature,
        top_p: request.top_p,
        stream: request.stream,
        metadata: request.user.clone().map(|user_id| Metadata {
            user_id: Some(user_id),
        }),
        tools,
        tool_choice,
    };
    Ok(Encoded {
        // Serializing these types into memory cannot fail.
        body: serde_json::to_vec(&body).unwrap_or_default(),
        dropped: dropped.into_names(),
    })
}

/// Refuses what changes the answer's meaning, names what is left out.
fn refuse_or_drop_top_level(
    request: &ChatRequest,
    dropped: &mut Dropped,
) -> Result<(), InvalidRequest> {
    if request.n.is_some_and(|n| n > 1) {
        return Err(InvalidRequest::new(
            "n",
            "this model answers with one choice: `n` must be 1",
        ));
    }
    for (name, value) in &request.extra {
        let refused = match name.as_str() {
            "logprobs" => value.as_bool() == Some(true),
            "top_logprobs" | "audio" => !value.is_null(),
            "modalities" => value
                .as_array()
                .is_some_and(|m| m.iter().any(|m| m.as_str() == Some("audio"))),
            _ => false,
        };
        if refused {
            return Err(InvalidRequest::new(
                name,
                format!("`{name}` is not supported by this model"),
            ));
        }
        let harmless = value.is_null()
            || (name == "logprobs" && value.as_bool() == Some(false))
            || name == "modalities";
        if !harmless {
            dropped.add(name);
        }
    }
    let named = [
        ("seed", request.seed.is_some()),
        ("presence_penalty", request.presence_penalty.is_some()),
        ("frequency_penalty", request.frequency_penalty.is_some()),
    ];
    for (name, _) in named.iter().filter(|(_, set)| *set) {
        dropped.add(*name);
    }
    Ok(())
}

/// Appends a turn, merged into the last one when it has the same role.
fn push(turns: &mut Vec<InputMessage>, role: &'static str, blocks: Vec<Block>) {
    if blocks.is_empty() {
        return;
    }
    match turns.last_mut() {
        Some(last) if last.role == role => last.content.extend(blocks),
        _ => turns.push(InputMessage {
            role,
            content: blocks,
        }),
    }
}

/// A tool's result joins the user turn, after its other results and before
/// anything else in it (Anthropic wants results first). `leading` remembers
/// which turn has how many results first, so that many results in a row cost
/// linear time.
fn push_tool_result(turns: &mut Vec<InputMessage>, block: Block, leading: &mut (usize, usize)) {
    let index = turns.len().wrapping_sub(1);
    match turns.last_mut() {
        Some(last) if last.role == "user" => {
            if leading.0 != index {
                let count = last
                    .content
                    .iter()
                    .take_while(|b| matches!(b, Block::ToolResult { .. }))
                    .count();
                *leading = (index, count);
            }
            last.content.insert(leading.1, block);
            leading.1 += 1;
        }
        _ => {
            push(turns, "user", vec![block]);
            *leading = (turns.len() - 1, 1);
        }
    }
}

fn content_blocks(
    i: usize,
    message: &Message,
    dropped: &mut Dropped,
) -> Result<Vec<Block>, InvalidRequest> {
    match &message.content {
        None => Ok(Vec::new()),
        Some(Content::Text(text)) if text.is_empty() => Ok(Vec::new()),
        Some(Content::Text(text)) => Ok(vec![Block::text(text)]),
        Some(Content::Parts(parts)) => {
            let mut blocks = Vec::with_capacity(parts.len());
            for part in parts {
                blocks.extend(part_block(i, part, dropped)?);
            }
            Ok(blocks)
        }
    }
}

/// One content part as a block (`None` for empty text).
fn part_block(
    i: usize,
    part: &Part,
    dropped: &mut Dropped,
) -> Result<Option<Block>, InvalidRequest> {
    let refuse = |message: String| InvalidRequest::new(&format!("messages[{i}].content"), message);
    let block = match part.kind.as_str() {
        "text" | "refusal" => {
            dropped.extra("messages.content", &part.extra);
            let text = part
                .text
                .as_deref()
                .or_else(|| part.extra.get("refusal").and_then(Value::as_str))
                .unwrap_or_default();
            (!text.is_empty()).then(|| Block::text(text))
        }
        "image_url" => {
            dropped.extra("messages.content", &part.extra);
            let image = part
                .image_url
                .as_ref()
                .ok_or_else(|| refuse("an `image_url` part has no `image_url`".to_owned()))?;
            if image.detail.is_some() {
                dropped.add("messages.content.image_url.detail");
            }
            let source = if let Some((media_type, data)) = image.as_base64() {
                Source::Base64 {
                    media_type: media_type.to_owned(),
                    data: data.to_owned(),
                }
            } else if image.url.starts_with("https://") || image.url.starts_with("http://") {
                Source::Url {
                    url: image.url.clone(),
                }
            } else {
                return Err(refuse(
                    "an image must be an http(s) URL or a base64 `data:` URL".to_owned(),
                ));
            };
            Some(Block::Image { source })
        }
        "file" => Some(document(part).ok_or_else(|| {
            refuse("a `file` part must carry `file_data` as a base64 `data:` URL; `file_id` is not supported by this model".to_owned())
        })?),
        other => return Err(refuse(format!("content parts of type `{other}` are not supported by this model"))),
    };
    Ok(block)
}

/// A `file` part with inline data as a `document` block.
fn document(part: &Part) -> Option<Block> {
    let file = part.extra.get("file")?;
    let url = file.get("file_data")?.as_str()?;
    let (media_type, data) = url.strip_prefix("data:")?.split_once(";base64,")?;
    Some(Block::Document {
        source: Source::Base64 {
            media_type: media_type.to_owned(),
            data: data.to_owned(),
        },
        title: file
            .get("filename")
            .and_then(Value::as_str)
            .map(str::to_owned),
    })
}

/// An assistant turn's tool calls as `tool_use` blocks.
fn tool_uses(i: usize, message: &Message) -> Result<Vec<Block>, InvalidRequest> {
    let calls = message.tool_calls.as_deref().unwrap_or_default();
    calls
        .iter()
        .enumerate()
        .map(|(j, call)| {
            let arguments = call.function.arguments.trim();
            let input = if arguments.is_empty() {
                Ok(json!({}))
            } else {
                serde_json::from_str::<Value>(arguments)
            };
            match input {
                Ok(input) if input.is_object() => Ok(Block::ToolUse {
                    id: call.id.clone(),
                    name: call.function.name.clone(),
                    input,
                }),
                _ => Err(InvalidRequest::new(
                    &format!("messages[{i}].tool_calls"),
                    format!(
                        "messages[{i}].tool_calls[{j}].function.arguments is not a JSON object"
                    ),
                )),
            }
        })
        .collect()
}

/// A `tool` message as a `tool_result` block.
fn tool_result(i: usize, message: &Message) -> Result<Block, InvalidRequest> {
    let id = message.tool_call_id.as_ref().ok_or_else(|| {
        InvalidRequest::new(
            &format!("messages[{i}].tool_call_id"),
            "a `tool` message needs the `tool_call_id` it answers",
        )
    })?;
    Ok(Block::ToolResult {
        tool_use_id: id.clone(),
        content: message
            .content
            .as_ref()
            .map(|c| Value::String(c.joined_text())),
        is_error: None,
    })
}
