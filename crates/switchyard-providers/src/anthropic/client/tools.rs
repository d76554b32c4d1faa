//! An Anthropic request's tools and `tool_choice` as OpenAI's.

use serde::Deserialize;
use serde_json::value::RawValue;

use super::request::{note_cache_control, read};
use crate::anthropic::Dropped;
use crate::anthropic::wire::ToolDefinition;
use crate::openai::InvalidRequest;
use crate::openai::chat::{FunctionDefinition, FunctionName, NamedToolChoice, Tool, ToolChoice};

/// Custom tools as function tools; server tools are refused.
pub(super) fn read_tools(
    tools: Vec<&RawValue>,
    dropped: &mut Dropped,
) -> Result<Vec<Tool>, InvalidRequest> {
    let mut out = Vec::with_capacity(tools.len());
    for (j, tool) in tools.into_iter().enumerate() {
        note_cache_control(tool, dropped);
        let tool: ToolDefinition = read(tool, || format!("tools.{j}"))?;
        if let Some(kind) = tool.kind.as_deref().filter(|k| *k != "custom") {
            let path = format!("tools.{j}");
            return Err(InvalidRequest::new(
                &path,
                format!("{path}: server tools (`{kind}`) are not supported by this model"),
            ));
        }
        out.push(Tool {
            kind: "function".to_owned(),
            function: FunctionDefinition {
                name: tool.name,
                description: tool.description,
                parameters: tool.input_schema,
                strict: None,
            },
        });
    }
    Ok(out)
}

/// `tool_choice`: `{type: auto|any|tool|none, name, disable_parallel_tool_use}`.
#[derive(Deserialize)]
pub(super) struct AnthropicToolChoice {
    #[serde(rename = "type")]
    kind: String,
    #[serde(default)]
    name: Option<String>,
    #[serde(default)]
    disable_parallel_tool_use: Option<bool>,
}

impl AnthropicToolChoice {
    pub(super) fn into_openai(self) -> Result<(Option<ToolChoice>, Option<bool>), InvalidRequest> {
        let mode = |mode: &str| ToolChoice::Mode(mode.to_owned());
        let choice = match (self.kind.as_str(), self.name) {
            ("auto", _) => mode("auto"),
            ("any", _) => mode("required"),
            ("none", _) => mode("none"),
            ("tool", Some(name)) => ToolChoice::Named(NamedToolChoice {
                kind: "function".to_owned(),
                function: FunctionName { name },
            }),
            ("tool", None) => {
                return Err(InvalidRequest::new(
                    "tool_choice.name",
                    "tool_choice.name: Field required",
                ));
            }
            (other, _) => {
                return Err(InvalidRequest::new(
                    "tool_choice.type",
                    format!(
                        "tool_choice.type: `{other}` is not one of 'auto', 'any', 'tool', 'none'"
                    ),
                ));
            }
        };
        let parallel = self.disable_parallel_tool_use.filter(|d| *d).map(|_| false);
        Ok((Some(choice), parallel))
    }
}
