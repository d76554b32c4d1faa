//! OpenAI messages written as Gemini turns (`contents`) and the system
//! instruction.

use std::collections::HashMap;

use serde_json::{Map, Value};

use super::request::drop_field;
use super::response::SIGNATURE_MARK;
use super::types::{Blob, Content, FileData, FunctionCall, FunctionResponse, Part};
use crate::openai::InvalidRequest;
use crate::openai::chat::{self, Message, Role};

/// `(systemInstruction, contents)` of `messages`.
pub(super) fn encode_messages(
    messages: &[Message],
    dropped: &mut Vec<String>,
) -> Result<(Option<Content>, Vec<Content>), InvalidRequest> {
    let mut system: Vec<Part> = Vec::new();
    let mut contents: Vec<Content> = Vec::new();
    // Tool call id → function name, the latest call with an id winning (ids
    // made up per response, `call_0`, recur across turns).
    let mut names: HashMap<&str, &str> = HashMap::new();
    for (i, message) in messages.iter().enumerate() {
        if message.name.is_some() {
            drop_field(dropped, "messages.name");
        }
        for (key, value) in &message.extra {
            if !value.is_null() {
                drop_field(dropped, format!("messages.{key}"));
            }
        }
        let (role, parts) = match message.role {
            Role::System | Role::Developer => {
                system.extend(system_parts(message, i)?);
                continue;
            }
            Role::User => ("user", user_parts(message, i, dropped)?),
            Role::Assistant => {
                for call in message.tool_calls.iter().flatten() {
                    names.insert(&call.id, &call.function.name);
                }
                ("model", model_parts(message, i)?)
            }
            Role::Tool => ("user", vec![function_response(message, i, &names)?]),
            Role::Function => {
                return Err(InvalidRequest::new(
                    &format!("messages[{i}].role"),
                    "`function` messages are not supported for Gemini models: use tool messages",
                ));
            }
        };
        push_turn(&mut contents, role, parts);
    }
    if contents.is_empty() {
        return Err(InvalidRequest::new(
            "messages",
            "messages must hold at least one user or assistant message with content",
        ));
    }
    let system = (!system.is_empty()).then_some(Content {
        role: None,
        parts: system,
    });
    Ok((system, contents))
}

/// Appends `parts` as a turn of `role`, merged into the last turn when it has
/// the same role (Gemini expects turns to alternate).
fn push_turn(contents: &mut Vec<Content>, role: &str, parts: Vec<Part>) {
    if parts.is_empty() {
        return;
    }
    match contents.last_mut() {
        Some(last) if last.role.as_deref() == Some(role) => last.parts.extend(parts),
        _ => contents.push(Content {
            role: Some(role.to_owned()),
            parts,
        }),
    }
}

fn text_part(text: &str) -> Option<Part> {
    (!text.is_empty()).then(|| Part::text(text))
}

fn system_parts(message: &Message, i: usize) -> Result<Vec<Part>, InvalidRequest> {
    match &message.content {
        None => Ok(Vec::new()),
        Some(chat::Content::Text(text)) => Ok(text_part(text).into_iter().collect()),
        Some(chat::Content::Parts(parts)) => parts
            .iter()
            .filter_map(|part| match (&part.kind[..], &part.text) {
                ("text", Some(text)) => text_part(text).map(Ok),
                _ => Some(Err(unsupported_part(i, &part.kind, "a system message"))),
            })
            .collect(),
    }
}

fn user_parts(
    message: &Message,
    i: usize,
    dropped: &mut Vec<String>,
) -> Result<Vec<Part>, InvalidRequest> {
    let parts = match &message.content {
        None => return Ok(Vec::new()),
        Some(chat::Content::Text(text)) => return Ok(text_part(text).into_iter().collect()),
        Some(chat::Content::Parts(parts)) => parts,
    };
    let mut out = Vec::with_capacity(parts.len());
    for part in parts {
        match (&part.kind[..], &part.text, &part.image_url) {
            ("text", Some(text), _) => out.extend(text_part(text)),
            ("image_url", _, Some(image)) => {
                if image.detail.as_deref().is_some_and(|d| d != "auto") {
                    drop_field(dropped, "messages.content.image_url.detail");
                }
                out.push(image_part(&image.url, i)?);
            }
            ("input_audio", _, _) => out.push(audio_part(part.extra.get("input_audio"), i)?),
            ("file", _, _) => out.push(file_part(part.extra.get("file"), i)?),
            (kind, _, _) => return Err(unsupported_part(i, kind, "a user message")),
        }
    }
    Ok(out)
}

fn unsupported_part(i: usize, kind: &str, place: &str) -> InvalidRequest {
    InvalidRequest::new(
        &format!("messages[{i}].content"),
        format!("content parts of type `{kind}` are not supported in {place} for Gemini models"),
    )
}

fn inline(mime_type: &str, data: &str) -> Part {
    Part {
        inline_data: Some(Blob {
            mime_type: mime_type.to_owned(),
            data: data.to_owned(),
        }),
        ..Part::default()
    }
}

/// A `data:` URL sent inline, an `http(s):` URL as a file Gemini fetches; its
/// media type guessed from the extension, `image/jpeg` when there is none.
fn image_part(url: &str, i: usize) -> Result<Part, InvalidRequest> {
    let image = chat::ImageUrl {
        url: url.to_owned(),
        detail: None,
    };
    if let Some((mime_type, data)) = image.as_base64() {
        return Ok(inline(mime_type, data));
    }
    if !(url.starts_with("https://") || url.starts_with("http://")) {
        return Err(InvalidRequest::new(
            &format!("messages[{i}].content"),
            "an image URL must be an http(s) URL or a base64 data URL",
        ));
    }
    Ok(Part {
        file_data: Some(FileData {
            mime_type: image_type(url).to_owned(),
            file_uri: url.to_owned(),
        }),
        ..Part::default()
    })
}

fn image_type(url: &str) -> &'static str {
    let path = url.split(['?', '#']).next().unwrap_or(url);
    let extension = path.rsplit_once('.').map(|(_, e)| e.to_ascii_lowercase());
    match extension.as_deref() {
        Some("png") => "image/png",
        Some("webp") => "image/webp",
        Some("gif") => "image/gif",
        Some("heic") => "image/heic",
        Some("heif") => "image/heif",
        _ => "image/jpeg",
    }
}

/// `{"input_audio": {"data", "format"}}` → inline audio.
fn audio_part(audio: Option<&Value>, i: usize) -> Result<Part, InvalidRequest> {
    let field = |name: &str| audio.and_then(|a| a.get(name)).and_then(Value::as_str);
    let mime_type = match field("format") {
        Some(format @ ("wav" | "mp3" | "aiff" | "aac" | "ogg" | "flac")) => {
            format!("audio/{format}")
        }
        _ => {
            return Err(InvalidRequest::new(
                &format!("messages[{i}].content"),
                "input_audio needs data and a format of wav, mp3, aiff, aac, ogg or flac",
            ));
        }
    };
    match field("data") {
        Some(data) => Ok(inline(&mime_type, data)),
        None => Err(InvalidRequest::new(
            &format!("messages[{i}].content"),
            "input_audio needs data",
        )),
    }
}

/// `{"file": {"file_data": "data:…"}}` → inline data; file ids cannot be sent.
fn file_part(file: Option<&Value>, i: usize) -> Result<Part, InvalidRequest> {
    let url = file
        .and_then(|f| f.get("file_data"))
        .and_then(Value::as_str)
        .unwrap_or_default();
    let data_url = chat::ImageUrl {
        url: url.to_owned(),
        detail: None,
    };
    match data_url.as_base64() {
        Some((mime_type, data)) => Ok(inline(mime_type, data)),
        None => Err(InvalidRequest::new(
            &format!("messages[{i}].content"),
            "a file part must carry file_data as a base64 data URL (file ids are not supported for Gemini models)",
        )),
    }
}

fn model_parts(message: &Message, i: usize) -> Result<Vec<Part>, InvalidRequest> {
    let mut parts: Vec<Part> = message
        .content
        .as_ref()
        .and_then(|c| text_part(&c.joined_text()))
        .into_iter()
        .collect();
    for (j, call) in message.tool_calls.iter().flatten().enumerate() {
        let arguments = call.function.arguments.trim();
        let args = if arguments.is_empty() {
            Map::new()
        } else {
            match serde_json::from_str::<Value>(arguments) {
                Ok(Value::Object(args)) => args,
                _ => {
                    return Err(InvalidRequest::new(
                        &format!("messages[{i}].tool_calls[{j}].function.arguments"),
                        format!(
                            "messages[{i}]: the arguments of the call to `{}` are not a JSON object",
                            call.function.name
                        ),
                    ));
                }
            }
        };
        parts.push(Part {
            function_call: Some(FunctionCall {
                id: None,
                name: call.function.name.clone(),
                args,
            }),
            thought_signature: call
                .id
                .split_once(SIGNATURE_MARK)
                .map(|(_, signature)| signature.to_owned()),
            ..Part::default()
        });
    }
    Ok(parts)
}

/// A tool result, named after the call it answers; its content is sent as
/// the response object when it is a JSON object, else as `{"content": text}`.
fn function_response(
    message: &Message,
    i: usize,
    names: &HashMap<&str, &str>,
) -> Result<Part, InvalidRequest> {
    let param = format!("messages[{i}].tool_call_id");
    let id = message.tool_call_id.as_deref().ok_or_else(|| {
        InvalidRequest::new(
            &param,
            format!("messages[{i}]: a tool message needs a tool_call_id"),
        )
    })?;
    let name = names.get(id).ok_or_else(|| {
        InvalidRequest::new(
            &param,
            format!("messages[{i}]: tool_call_id `{id}` answers no earlier assistant tool call"),
        )
    })?;
    let text = message
        .content
        .as_ref()
        .map(chat::Content::joined_text)
        .unwrap_or_default();
    let response = match serde_json::from_str::<Value>(&text) {
        Ok(Value::Object(object)) => object,
        _ => Map::from_iter([("content".to_owned(), Value::String(text))]),
    };
    Ok(Part {
        function_response: Some(FunctionResponse {
            name: (*name).to_owned(),
            response,
        }),
        ..Part::default()
    })
}
