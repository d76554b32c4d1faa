//! An OpenAI request's tools, tool choice and JSON response format, as
//! Anthropic tools and `tool_choice`.

use serde_json::{Value, json};

use super::Dropped;
use super::wire::{JSON_TOOL, ToolDefinition};
use crate::openai::InvalidRequest;
use crate::openai::chat::{ChatRequest, ToolChoice};

/// `tools`, `tool_choice`, `parallel_tool_calls` and `response_format`, which
/// becomes a tool the model must call.
pub(super) fn tools_and_choice(
    request: &ChatRequest,
    dropped: &mut Dropped,
) -> Result<(Option<Vec<ToolDefinition>>, Option<Value>), InvalidRequest> {
    let mut tools = Vec::new();
    for tool in request.tools.as_deref().unwrap_or_default() {
        if tool.kind != "function" {
            return Err(InvalidRequest::new(
                "tools",
                format!(
                    "tools of type `{}` are not supported by this model",
                    tool.kind
                ),
            ));
        }
        if tool.function.name == JSON_TOOL {
            return Err(InvalidRequest::new(
                "tools",
                format!("the tool name `{JSON_TOOL}` is reserved by the gateway"),
            ));
        }
        if tool.function.strict.is_some() {
            dropped.add("tools.function.strict");
        }
        tools.push(ToolDefinition {
            kind: None,
            name: tool.function.name.clone(),
            description: tool.function.description.clone(),
            input_schema: Some(
                tool.function
                    .parameters
                    .clone()
                    .unwrap_or_else(|| json!({"type": "object", "properties": {}})),
            ),
        });
    }
    let has_user_tools = !tools.is_empty();
    let mut choice = match &request.tool_choice {
        None => None,
        Some(ToolChoice::Mode(mode)) => Some(match mode.as_str() {
            "auto" => json!({"type": "auto"}),
            "required" => json!({"type": "any"}),
            "none" => json!({"type": "none"}),
            other => {
                return Err(InvalidRequest::new(
                    "tool_choice",
                    format!("`{other}` is not a tool choice: use none, auto or required"),
                ));
            }
        }),
        Some(ToolChoice::Named(named)) => {
            Some(json!({"type": "tool", "name": named.function.name}))
        }
    };
    if let Some(json_tool) = json_tool(request, dropped)? {
        tools.push(json_tool);
        let kind = choice.as_ref().and_then(|c| c.get("type")?.as_str());
        choice = match kind {
            // The user's tools, or the answer, as the model sees fit.
            Some("any" | "tool") if has_user_tools => choice,
            None | Some("auto") if has_user_tools => Some(json!({"type": "any"})),
            _ => Some(json!({"type": "tool", "name": JSON_TOOL})),
        };
    }
    if tools.is_empty() {
        for (name, set) in [
            ("tool_choice", choice.is_some()),
            ("parallel_tool_calls", request.parallel_tool_calls.is_some()),
        ] {
            if set {
                dropped.add(name);
            }
        }
        return Ok((None, None));
    }
    if request.parallel_tool_calls == Some(false) {
        let choice = choice.get_or_insert_with(|| json!({"type": "auto"}));
        if choice.get("type").and_then(Value::as_str) != Some("none") {
            choice["disable_parallel_tool_use"] = Value::Bool(true);
        }
    }
    Ok((Some(tools), choice))
}

/// The tool that carries a JSON answer, when `response_format` asks for one.
fn json_tool(
    request: &ChatRequest,
    dropped: &mut Dropped,
) -> Result<Option<ToolDefinition>, InvalidRequest> {
    let Some(format) = &request.response_format else {
        return Ok(None);
    };
    let (schema, description) = match format.kind.as_str() {
        "text" => return Ok(None),
        "json_object" => (json!({"type": "object"}), None),
        "json_schema" => {
            let spec = format.json_schema.as_ref().ok_or_else(|| {
                InvalidRequest::new("response_format.json_schema", "`json_schema` is required")
            })?;
            if spec.strict == Some(true) {
                dropped.add("response_format.json_schema.strict");
            }
            let schema = spec
                .schema
                .clone()
                .unwrap_or_else(|| json!({"type": "object"}));
            (schema, spec.description.clone())
        }
        other => {
            return Err(InvalidRequest::new(
                "response_format",
                format!("`{other}` is not a response format: use text, json_object or json_schema"),
            ));
        }
    };
    Ok(Some(ToolDefinition {
        kind: None,
        name: JSON_TOOL.to_owned(),
        description: Some(description.unwrap_or_else(|| {
            "Give your answer by calling this tool: its input is the whole answer, as JSON following the schema.".to_owned()
        })),
        input_schema: Some(schema),
    }))
}
