//! An OpenAI chat request written as a Gemini `GenerateContentRequest`.

use serde_json::Value;

use super::contents::encode_messages;
use super::schema::declarations;
use super::types::{FunctionCallingConfig, GenerateContentRequest, GenerationConfig, ToolConfig};
use crate::openai::InvalidRequest;
use crate::openai::chat::{ChatRequest, ToolChoice};
use crate::translate::Encoded;

/// Writes `request` as the body of `models/{model}:generateContent` (or
/// `:streamGenerateContent`, which takes the same body). The model is not in
/// the body: the gateway puts it in the URL.
///
/// Fields Gemini cannot express are named in [`Encoded::dropped`] when leaving
/// them out does not change what the answer means, and refused otherwise; see
/// the [module documentation](super) for the list.
pub fn encode_request(request: &ChatRequest) -> Result<Encoded, InvalidRequest> {
    let mut dropped = Vec::new();
    let (system_instruction, contents) = encode_messages(&request.messages, &mut dropped)?;
    let tools = match &request.tools {
        Some(tools) => declarations(tools, &mut dropped)?,
        None => Vec::new(),
    };
    let tool_config = request.tool_choice.as_ref().map(tool_config).transpose()?;
    let generation_config = generation_config(request)?;
    extras(request, &mut dropped)?;
    let body = GenerateContentRequest {
        contents,
        system_instruction,
        tools,
        tool_config,
        generation_config,
    };
    encoded(&body, dropped)
}

/// `body` as JSON, with the fields it leaves out.
pub(super) fn encoded(
    body: &impl serde::Serialize,
    dropped: Vec<String>,
) -> Result<Encoded, InvalidRequest> {
    // Writing these types into memory cannot fail; should it, the client learns why.
    let body = serde_json::to_vec(body).map_err(|e| InvalidRequest {
        message: format!("the request could not be written for Gemini: {e}"),
        param: None,
    })?;
    Ok(Encoded { body, dropped })
}

/// Names `field` among the dropped ones, once.
pub(super) fn drop_field(dropped: &mut Vec<String>, field: impl AsRef<str>) {
    crate::translate::note_dropped(dropped, field.as_ref());
}

fn generation_config(request: &ChatRequest) -> Result<GenerationConfig, InvalidRequest> {
    let mut config = GenerationConfig {
        stop_sequences: request
            .stop
            .as_ref()
            .map(|s| s.to_vec())
            .unwrap_or_default(),
        candidate_count: request.n,
        max_output_tokens: request.token_cap(),
        temperature: request.temperature,
        top_p: request.top_p,
        seed: request.seed,
        presence_penalty: request.presence_penalty,
        frequency_penalty: request.frequency_penalty,
        ..GenerationConfig::default()
    };
    if let Some(format) = &request.response_format {
        match format.kind.as_str() {
            "text" => {}
            "json_object" => config.response_mime_type = Some("application/json"),
            "json_schema" => {
                config.response_mime_type = Some("application/json");
                config.response_json_schema =
                    format.json_schema.as_ref().and_then(|s| s.schema.clone());
            }
            other => {
                return Err(InvalidRequest::new(
                    "response_format",
                    format!("response_format type `{other}` is not supported"),
                ));
            }
        }
    }
    Ok(config)
}

fn tool_config(choice: &ToolChoice) -> Result<ToolConfig, InvalidRequest> {
    let (mode, allowed_function_names) = match choice {
        ToolChoice::Mode(mode) => match mode.as_str() {
            "none" => ("NONE", Vec::new()),
            "auto" => ("AUTO", Vec::new()),
            "required" => ("ANY", Vec::new()),
            other => {
                return Err(InvalidRequest::new(
                    "tool_choice",
                    format!("tool_choice `{other}` is not one of none, auto, required"),
                ));
            }
        },
        ToolChoice::Named(named) if named.kind == "function" => {
            ("ANY", vec![named.function.name.clone()])
        }
        ToolChoice::Named(named) => {
            return Err(InvalidRequest::new(
                "tool_choice",
                format!("tool_choice type `{}` is not supported", named.kind),
            ));
        }
    };
    Ok(ToolConfig {
        function_calling_config: FunctionCallingConfig {
            mode,
            allowed_function_names,
        },
    })
}

/// Sorts the fields Gemini has no room for into dropped and refused.
fn extras(request: &ChatRequest, dropped: &mut Vec<String>) -> Result<(), InvalidRequest> {
    if request.user.is_some() {
        drop_field(dropped, "user");
    }
    if request.parallel_tool_calls.is_some() {
        drop_field(dropped, "parallel_tool_calls");
    }
    for (key, value) in &request.extra {
        match key.as_str() {
            "logprobs" if value.as_bool() == Some(true) => {
                return Err(InvalidRequest::new(
                    "logprobs",
                    "logprobs are not supported for Gemini models",
                ));
            }
            "logprobs" if value.is_null() || value.as_bool() == Some(false) => {}
            "functions" | "function_call" => {
                return Err(InvalidRequest::new(
                    key,
                    format!(
                        "`{key}` is not supported for Gemini models: use tools and tool_choice"
                    ),
                ));
            }
            "audio" if !value.is_null() => {
                return Err(InvalidRequest::new(
                    "audio",
                    "audio output is not supported for Gemini models",
                ));
            }
            "modalities" if !text_only(value) => {
                return Err(InvalidRequest::new(
                    "modalities",
                    "only text output is supported for Gemini models",
                ));
            }
            _ => drop_field(dropped, key.as_str()),
        }
    }
    Ok(())
}

/// Whether `modalities` asks for text alone.
fn text_only(modalities: &Value) -> bool {
    match modalities {
        Value::Null => true,
        Value::Array(items) => items.iter().all(|m| m.as_str() == Some("text")),
        _ => false,
    }
}
