//! Gemini's `GenerateContentRequest`, as far as the mock reads it, and the [`Prompt`] in it.

use std::borrow::Cow;

use serde::Deserialize;
use serde::de::IgnoredAny;
use serde_json::Value;

use crate::error::MockError;
use crate::reply::{Prompt, token_cap};
use crate::text::count_words;

/// The most candidates one request may ask for.
const MAX_CANDIDATES: u32 = 8;

/// The fields of a `generateContent` body the mock reads; `safetySettings`,
/// `cachedContent` and the rest are accepted and ignored.
#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
pub(super) struct GenerateContentRequest {
    contents: Option<Vec<Content>>,
    system_instruction: Option<Content>,
    tools: Option<Vec<Tool>>,
    tool_config: Option<ToolConfig>,
    generation_config: Option<GenerationConfig>,
}

/// A `Content`: a role and parts.
#[derive(Debug, Deserialize)]
pub(super) struct Content {
    role: Option<String>,
    parts: Option<Vec<Part>>,
}

/// A `Part`: one of text, inline data, file data, a function call or response. Thought
/// parts are not part of the prompt.
#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
#[allow(
    dead_code,
    reason = "fields are parsed so that malformed parts are refused"
)]
pub(super) struct Part {
    text: Option<String>,
    thought: Option<bool>,
    inline_data: Option<Blob>,
    file_data: Option<FileData>,
    function_call: Option<FunctionCall>,
    function_response: Option<FunctionResponse>,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
#[allow(
    dead_code,
    reason = "fields are parsed so that malformed parts are refused"
)]
struct Blob {
    mime_type: String,
    data: String,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
#[allow(
    dead_code,
    reason = "fields are parsed so that malformed parts are refused"
)]
struct FileData {
    mime_type: Option<String>,
    file_uri: String,
}

#[derive(Debug, Deserialize)]
#[allow(
    dead_code,
    reason = "fields are parsed so that malformed parts are refused"
)]
struct FunctionCall {
    name: String,
    args: Option<IgnoredAny>,
}

#[derive(Debug, Deserialize)]
#[allow(
    dead_code,
    reason = "fields are parsed so that malformed parts are refused"
)]
struct FunctionResponse {
    name: String,
    response: Value,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
struct Tool {
    function_declarations: Option<Vec<FunctionDeclaration>>,
}

#[derive(Debug, Deserialize)]
struct FunctionDeclaration {
    name: String,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
struct ToolConfig {
    function_calling_config: Option<FunctionCallingConfig>,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
struct FunctionCallingConfig {
    mode: Option<String>,
    allowed_function_names: Option<Vec<String>>,
}

/// `generationConfig`; `temperature`, `topP`, `topK`, `responseMimeType`,
/// `responseSchema`, `responseJsonSchema` are accepted and not used.
#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
struct GenerationConfig {
    max_output_tokens: Option<u64>,
    stop_sequences: Option<Vec<String>>,
    candidate_count: Option<u32>,
    temperature: Option<f64>,
}

impl FunctionResponse {
    /// The response as text: the first string among `response.output`,
    /// `response.content` and `response.result`, else the response's compact JSON.
    fn text(&self) -> Cow<'_, str> {
        ["output", "content", "result"]
            .iter()
            .find_map(|key| self.response.get(key).and_then(Value::as_str))
            .map_or_else(|| Cow::Owned(self.response.to_string()), Cow::Borrowed)
    }
}

impl Content {
    fn parts(&self) -> &[Part] {
        self.parts.as_deref().unwrap_or_default()
    }

    fn is_user(&self) -> bool {
        self.role.as_deref().is_none_or(|role| role == "user")
    }

    /// Its text parts (thoughts left out).
    fn texts(&self) -> impl Iterator<Item = &str> {
        self.parts()
            .iter()
            .filter(|part| part.thought != Some(true))
            .filter_map(|part| part.text.as_deref())
    }

    /// Its text parts joined by a space.
    pub(super) fn text(&self) -> String {
        self.texts().collect::<Vec<_>>().join(" ")
    }

    /// Its function responses as text, joined by a space, if it has any.
    fn function_responses(&self) -> Option<String> {
        let responses: Vec<Cow<'_, str>> = self
            .parts()
            .iter()
            .filter_map(|part| part.function_response.as_ref().map(FunctionResponse::text))
            .collect();
        (!responses.is_empty()).then(|| responses.join(" "))
    }

    /// Words of its texts and function responses.
    fn words(&self) -> u64 {
        let responses = self.function_responses().map_or(0, |r| count_words(&r));
        self.texts().map(count_words).sum::<u64>() + responses
    }
}

impl GenerateContentRequest {
    /// What the request asks of the mock, and how many candidates it wants.
    pub(super) fn prompt(&self) -> Result<(Prompt<'_>, u32), MockError> {
        let contents = self.contents.as_deref().unwrap_or_default();
        let Some(last) = contents.last() else {
            return Err(MockError::invalid(
                "* GenerateContentRequest.contents: contents is not specified",
                "contents",
            ));
        };
        if let Some(i) = contents.iter().position(|c| c.parts().is_empty()) {
            return Err(MockError::invalid(
                format!(
                    "* GenerateContentRequest.contents[{i}].parts: contents.parts must not be empty."
                ),
                "contents",
            ));
        }
        if contents
            .iter()
            .any(|c| !matches!(c.role.as_deref(), None | Some("user" | "model")))
        {
            return Err(MockError::invalid(
                "Please use a valid role: user, model.",
                "contents",
            ));
        }
        let config = self.generation_config.as_ref();
        let candidates = config.and_then(|c| c.candidate_count).unwrap_or(1);
        if !(1..=MAX_CANDIDATES).contains(&candidates) {
            return Err(MockError::invalid(
                format!(
                    "* GenerationConfig.candidate_count: must be between 1 and {MAX_CANDIDATES}"
                ),
                "generationConfig",
            ));
        }
        if let Some(t) = config.and_then(|c| c.temperature)
            && !(0.0..=2.0).contains(&t)
        {
            return Err(MockError::invalid(
                "* GenerationConfig.temperature: must be between 0 and 2",
                "generationConfig",
            ));
        }
        let responses = last.is_user().then(|| last.function_responses()).flatten();
        let tool = if last.is_user() && responses.is_none() {
            self.tool_to_call()
        } else {
            None
        };
        let echo = match responses {
            Some(responses) => responses,
            None => contents
                .iter()
                .rev()
                .find(|c| c.is_user())
                .map_or_else(String::new, Content::text),
        };
        let tokens = self.system_instruction.as_ref().map_or(0, Content::words)
            + contents.iter().map(Content::words).sum::<u64>();
        let max_tokens = token_cap(
            config.and_then(|c| c.max_output_tokens),
            "generationConfig.maxOutputTokens",
        )?;
        let prompt = Prompt {
            tokens,
            echo: Cow::Owned(echo),
            tool,
            max_tokens,
            stop_sequences: config
                .and_then(|c| c.stop_sequences.as_deref())
                .unwrap_or_default(),
        };
        Ok((prompt, candidates))
    }

    /// The function to call after a user's text: the first declared (of those
    /// `allowedFunctionNames` allows); none in mode `NONE`.
    fn tool_to_call(&self) -> Option<&str> {
        let calling = self
            .tool_config
            .as_ref()
            .and_then(|c| c.function_calling_config.as_ref());
        if calling.and_then(|c| c.mode.as_deref()) == Some("NONE") {
            return None;
        }
        let allowed = calling
            .and_then(|c| c.allowed_function_names.as_deref())
            .filter(|names| !names.is_empty());
        self.tools
            .iter()
            .flatten()
            .filter_map(|tool| tool.function_declarations.as_deref())
            .flatten()
            .map(|declaration| declaration.name.as_str())
            .find(|name| allowed.is_none_or(|allowed| allowed.iter().any(|a| a == name)))
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::panic)]
mod tests {
    use super::*;
    use serde_json::json;

    fn prompt_of(body: Value) -> Result<(String, Option<String>, u64), MockError> {
        let request: GenerateContentRequest = serde_json::from_value(body).unwrap();
        request
            .prompt()
            .map(|(p, _)| (p.echo.into_owned(), p.tool.map(str::to_owned), p.tokens))
    }

    #[test]
    fn texts_of_the_last_user_content_and_all_words() {
        let (echo, tool, tokens) = prompt_of(json!({
            "systemInstruction": {"parts": [{"text": "be brief"}]},
            "contents": [
                {"role": "user", "parts": [{"text": "old question"}]},
                {"role": "model", "parts": [{"text": "secret", "thought": true}, {"text": "old answer"}]},
                {"role": "user", "parts": [
                    {"text": "look at"},
                    {"inlineData": {"mimeType": "image/png", "data": "AAAA"}},
                    {"fileData": {"mimeType": "application/pdf", "fileUri": "gs://b/f"}},
                    {"text": "this"},
                ]},
            ],
        }))
        .unwrap();
        assert_eq!(echo, "look at this");
        assert_eq!(tool, None);
        assert_eq!(tokens, 9);
    }

    #[test]
    fn function_calls_and_responses() {
        let tools = json!([{"googleSearch": {}}, {"functionDeclarations": [{"name": "first"}, {"name": "second"}]}]);
        let asked =
            json!({"tools": tools, "contents": [{"role": "user", "parts": [{"text": "paris"}]}]});
        assert_eq!(
            prompt_of(asked.clone()).unwrap().1.as_deref(),
            Some("first")
        );
        let mut allowed = asked.clone();
        allowed["toolConfig"] =
            json!({"functionCallingConfig": {"mode": "ANY", "allowedFunctionNames": ["second"]}});
        assert_eq!(prompt_of(allowed).unwrap().1.as_deref(), Some("second"));
        let mut none = asked;
        none["toolConfig"] = json!({"functionCallingConfig": {"mode": "NONE"}});
        assert_eq!(prompt_of(none).unwrap().1, None);

        for (response, text) in [
            (json!({"content": "sunny 20 C"}), "sunny 20 C"),
            (json!({"result": "rainy"}), "rainy"),
            (json!({"output": "windy", "content": "no"}), "windy"),
            (json!({"temp": 20}), r#"{"temp":20}"#),
        ] {
            let (echo, tool, _) = prompt_of(json!({"tools": tools, "contents": [
                {"role": "user", "parts": [{"text": "paris"}]},
                {"role": "model", "parts": [{"functionCall": {"name": "first", "args": {"echo": "paris"}}}]},
                {"role": "user", "parts": [{"functionResponse": {"name": "first", "response": response}}]},
            ]}))
            .unwrap();
            assert_eq!(echo, text);
            assert_eq!(tool, None);
        }
    }

    #[test]
    fn refusals() {
        for body in [
            json!({}),
            json!({"contents": []}),
            json!({"contents": [{"role": "user", "parts": []}]}),
            json!({"contents": [{"role": "system", "parts": [{"text": "x"}]}]}),
            json!({"contents": [{"parts": [{"text": "x"}]}], "generationConfig": {"maxOutputTokens": 0}}),
            json!({"contents": [{"parts": [{"text": "x"}]}], "generationConfig": {"candidateCount": 9}}),
            json!({"contents": [{"parts": [{"text": "x"}]}], "generationConfig": {"temperature": 2.5}}),
        ] {
            assert!(
                matches!(
                    prompt_of(body.clone()),
                    Err(MockError::InvalidRequest { .. })
                ),
                "{body}"
            );
        }
    }
}
