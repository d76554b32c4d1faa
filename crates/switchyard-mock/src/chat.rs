//! `POST /v1/chat/completions`: JSON and server-sent events.

use std::borrow::Cow;
use std::sync::Arc;

use axum::extract::State;
use axum::response::Response;
use bytes::Bytes;
use serde::{Deserialize, Serialize};

use crate::error::{MockError, parse_body, required_model};
use crate::reply::{Prompt, Reply, Usage, token_cap, unix_now};
use crate::sse::{self, EventStream};
use crate::text::{count_words, pieces};
use crate::{Mock, json_response};

// === Request ===

/// The fields of a chat completion request the mock reads; the rest is ignored.
#[derive(Debug, Deserialize)]
struct ChatRequest {
    model: Option<String>,
    messages: Option<Vec<Message>>,
    stream: Option<bool>,
    stream_options: Option<StreamOptions>,
    max_tokens: Option<u64>,
    max_completion_tokens: Option<u64>,
    tools: Option<Vec<Tool>>,
    /// `stop`: one sequence or several.
    #[serde(default, deserialize_with = "one_or_many")]
    stop: Vec<String>,
}

/// A string or a list of strings, as a list.
fn one_or_many<'de, D: serde::Deserializer<'de>>(de: D) -> Result<Vec<String>, D::Error> {
    #[derive(Deserialize)]
    #[serde(untagged)]
    enum OneOrMany {
        One(String),
        Many(Vec<String>),
    }
    Ok(match Option::<OneOrMany>::deserialize(de)? {
        None => Vec::new(),
        Some(OneOrMany::One(one)) => vec![one],
        Some(OneOrMany::Many(many)) => many,
    })
}

#[derive(Debug, Deserialize)]
struct Message {
    role: String,
    content: Option<Content>,
}

/// A message's `content`: a string or an array of parts.
#[derive(Debug, Deserialize)]
#[serde(untagged)]
enum Content {
    Text(String),
    Parts(Vec<Part>),
}

/// A content part; only `{"type": "text", "text": ...}` parts count.
#[derive(Debug, Deserialize)]
struct Part {
    #[serde(rename = "type")]
    kind: Option<String>,
    text: Option<String>,
}

#[derive(Debug, Deserialize)]
struct StreamOptions {
    include_usage: Option<bool>,
}

#[derive(Debug, Deserialize)]
struct Tool {
    function: Option<FunctionName>,
}

#[derive(Debug, Deserialize)]
struct FunctionName {
    name: String,
}

impl Message {
    fn text_parts(&self) -> impl Iterator<Item = &str> {
        let (text, parts) = match &self.content {
            Some(Content::Text(text)) => (Some(text.as_str()), &[][..]),
            Some(Content::Parts(parts)) => (None, &parts[..]),
            None => (None, &[][..]),
        };
        text.into_iter().chain(parts.iter().filter_map(|part| {
            (part.kind.as_deref() == Some("text"))
                .then_some(part.text.as_deref())
                .flatten()
        }))
    }

    /// The message's text: its text parts joined by a space.
    fn text(&self) -> Cow<'_, str> {
        match &self.content {
            Some(Content::Text(text)) => Cow::Borrowed(text),
            _ => Cow::Owned(self.text_parts().collect::<Vec<_>>().join(" ")),
        }
    }

    fn words(&self) -> u64 {
        self.text_parts().map(count_words).sum()
    }
}

impl ChatRequest {
    fn prompt(&self) -> Result<Prompt<'_>, MockError> {
        let messages = self.messages.as_deref().unwrap_or_default();
        let Some(last) = messages.last() else {
            return Err(MockError::invalid(
                "messages must be a non-empty array",
                "messages",
            ));
        };
        let max_tokens = match token_cap(self.max_completion_tokens, "max_completion_tokens")? {
            Some(cap) => Some(cap),
            None => token_cap(self.max_tokens, "max_tokens")?,
        };
        let tool = match self.tools.as_deref() {
            Some([first, ..]) if last.role == "user" => match &first.function {
                Some(function) => Some(function.name.as_str()),
                None => {
                    return Err(MockError::invalid(
                        "tools[0].function.name is required",
                        "tools",
                    ));
                }
            },
            _ => None,
        };
        let echo = if last.role == "tool" || last.role == "user" {
            last.text()
        } else {
            messages
                .iter()
                .rev()
                .find(|m| m.role == "user")
                .map_or(Cow::Borrowed(""), Message::text)
        };
        Ok(Prompt {
            tokens: messages.iter().map(Message::words).sum(),
            echo,
            tool,
            max_tokens,
            stop_sequences: &self.stop,
        })
    }

    fn include_usage(&self) -> bool {
        self.stream_options
            .as_ref()
            .and_then(|o| o.include_usage)
            .unwrap_or(false)
    }
}

// === Response ===

/// OpenAI's `CreateChatCompletionResponse`.
#[derive(Serialize)]
struct ChatCompletion<'a> {
    id: &'a str,
    object: &'static str,
    created: u64,
    model: &'a str,
    choices: [Choice<'a>; 1],
    usage: &'a Usage,
}

#[derive(Serialize)]
struct Choice<'a> {
    index: u32,
    message: AssistantMessage<'a>,
    logprobs: Option<()>,
    finish_reason: &'static str,
}

#[derive(Serialize)]
struct AssistantMessage<'a> {
    role: &'static str,
    content: Option<&'a str>,
    refusal: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    tool_calls: Option<[ToolCallOut<'a>; 1]>,
    annotations: [(); 0],
}

#[derive(Serialize)]
struct ToolCallOut<'a> {
    id: &'a str,
    #[serde(rename = "type")]
    kind: &'static str,
    function: FunctionOut<'a>,
}

#[derive(Serialize)]
struct FunctionOut<'a> {
    name: &'a str,
    arguments: &'a str,
}

/// OpenAI's `CreateChatCompletionStreamResponse`.
#[derive(Serialize)]
struct ChatChunk<'a> {
    id: &'a str,
    object: &'static str,
    created: u64,
    model: &'a str,
    choices: &'a [ChunkChoice<'a>],
    /// Absent unless usage was asked for; then null except in the last chunk.
    #[serde(skip_serializing_if = "Option::is_none")]
    usage: Option<Option<&'a Usage>>,
}

#[derive(Serialize)]
struct ChunkChoice<'a> {
    index: u32,
    delta: Delta<'a>,
    logprobs: Option<()>,
    finish_reason: Option<&'static str>,
}

#[derive(Default, Serialize)]
struct Delta<'a> {
    #[serde(skip_serializing_if = "Option::is_none")]
    role: Option<&'static str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    content: Option<Option<&'a str>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    refusal: Option<Option<&'a str>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    tool_calls: Option<[ToolCallChunk<'a>; 1]>,
}

#[derive(Serialize)]
struct ToolCallChunk<'a> {
    index: u32,
    #[serde(skip_serializing_if = "Option::is_none")]
    id: Option<&'a str>,
    #[serde(rename = "type", skip_serializing_if = "Option::is_none")]
    kind: Option<&'static str>,
    function: FunctionChunk<'a>,
}

#[derive(Serialize)]
struct FunctionChunk<'a> {
    #[serde(skip_serializing_if = "Option::is_none")]
    name: Option<&'a str>,
    arguments: &'a str,
}

/// What every response to one request shares.
struct Head<'a> {
    id: &'a str,
    created: u64,
    model: &'a str,
}

fn completion<'a>(head: &Head<'a>, reply: &'a Reply, usage: &'a Usage) -> ChatCompletion<'a> {
    let (content, tool_calls) = match reply {
        Reply::Text(text) => (Some(text.text.as_str()), None),
        Reply::ToolCall(call) => (
            None,
            Some([ToolCallOut {
                id: &call.id,
                kind: "function",
                function: FunctionOut {
                    name: &call.name,
                    arguments: &call.arguments,
                },
            }]),
        ),
    };
    ChatCompletion {
        id: head.id,
        object: "chat.completion",
        created: head.created,
        model: head.model,
        choices: [Choice {
            index: 0,
            message: AssistantMessage {
                role: "assistant",
                content,
                refusal: None,
                tool_calls,
                annotations: [],
            },
            logprobs: None,
            finish_reason: reply.finish().openai(),
        }],
        usage,
    }
}

fn events(
    head: &Head<'_>,
    reply: &Reply,
    usage: &Usage,
    include_usage: bool,
) -> Result<EventStream, MockError> {
    let usage_field = include_usage.then_some(None);
    let chunk = |delta: Delta<'_>, finish_reason: Option<&'static str>| {
        sse::data(&ChatChunk {
            id: head.id,
            object: "chat.completion.chunk",
            created: head.created,
            model: head.model,
            choices: &[ChunkChoice {
                index: 0,
                delta,
                logprobs: None,
                finish_reason,
            }],
            usage: usage_field,
        })
    };
    let tool_call = |id, kind, name, arguments| Delta {
        tool_calls: Some([ToolCallChunk {
            index: 0,
            id,
            kind,
            function: FunctionChunk { name, arguments },
        }]),
        ..Delta::default()
    };

    let mut events = Vec::new();
    let content_start;
    match reply {
        Reply::Text(text) => {
            events.push(chunk(
                Delta {
                    role: Some("assistant"),
                    content: Some(Some("")),
                    refusal: Some(None),
                    ..Delta::default()
                },
                None,
            )?);
            content_start = events.len();
            for piece in pieces(&text.text) {
                events.push(chunk(
                    Delta {
                        content: Some(Some(piece)),
                        ..Delta::default()
                    },
                    None,
                )?);
            }
        }
        Reply::ToolCall(call) => {
            events.push(chunk(
                Delta {
                    role: Some("assistant"),
                    content: Some(None),
                    refusal: Some(None),
                    ..Delta::default()
                },
                None,
            )?);
            content_start = events.len();
            events.push(chunk(
                tool_call(Some(&call.id), Some("function"), Some(&call.name), ""),
                None,
            )?);
            for piece in pieces(&call.arguments) {
                events.push(chunk(tool_call(None, None, None, piece), None)?);
            }
        }
    }
    let content = content_start..events.len();
    events.push(chunk(Delta::default(), Some(reply.finish().openai()))?);
    if include_usage {
        events.push(sse::data(&ChatChunk {
            id: head.id,
            object: "chat.completion.chunk",
            created: head.created,
            model: head.model,
            choices: &[],
            usage: Some(Some(usage)),
        })?);
    }
    events.push(Bytes::from_static(sse::DONE));
    Ok(EventStream::openai(events, content))
}

/// `POST /v1/chat/completions`.
pub(crate) async fn handle(
    State(mock): State<Arc<Mock>>,
    body: Bytes,
) -> Result<Response, MockError> {
    let admission = mock.faults.admit().await?;
    let request: ChatRequest = parse_body(&body)?;
    let model = required_model(request.model.as_deref())?;
    let prompt = request.prompt()?;
    let window = mock.options.context_window;
    if window > 0 && prompt.tokens > window {
        return Err(MockError::invalid(
            format!(
                "This model's maximum context length is {window} tokens. However, your messages resulted in {} tokens.",
                prompt.tokens
            ),
            "messages",
        ));
    }
    let reply = Reply::new(&prompt, mock.options.completion_tokens);
    let usage = Usage::new(&prompt, reply.tokens());
    let id = format!("chatcmpl-mock-{}", admission.seq);
    let request_id = admission.request_id();
    let head = Head {
        id: &id,
        created: unix_now(),
        model,
    };
    if request.stream == Some(true) {
        Ok(
            events(&head, &reply, &usage, request.include_usage())?.into_response(
                mock.pacing(),
                admission.fate,
                &request_id,
            ),
        )
    } else {
        json_response(&completion(&head, &reply, &usage), &request_id)
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::panic)]
mod tests {
    use super::*;
    use serde_json::json;

    fn request(body: serde_json::Value) -> ChatRequest {
        serde_json::from_value(body).unwrap()
    }

    #[test]
    fn text_of_parts_skips_other_parts() {
        let r = request(
            json!({"model": "m", "messages": [{"role": "user", "content": [
                {"type": "text", "text": "hello  there"},
                {"type": "image_url", "image_url": {"url": "data:,x"}},
                {"type": "text", "text": "you"},
            ]}]}),
        );
        let prompt = r.prompt().unwrap();
        assert_eq!(prompt.echo, "hello  there you");
        assert_eq!(prompt.tokens, 3);
        assert_eq!(prompt.tool, None);
    }

    #[test]
    fn prompt_counts_all_roles_and_echoes_the_last_user_message() {
        let r = request(json!({"model": "m", "messages": [
            {"role": "system", "content": "be brief"},
            {"role": "user", "content": "first question"},
            {"role": "assistant", "content": "an answer", "tool_calls": []},
            {"role": "user", "content": "second one"},
            {"role": "assistant", "content": null},
        ]}));
        let prompt = r.prompt().unwrap();
        assert_eq!(prompt.tokens, 8);
        assert_eq!(prompt.echo, "second one");
    }

    #[test]
    fn tools_call_only_after_a_user_message() {
        let tools = json!([{"type": "function", "function": {"name": "get_weather", "parameters": {}}},
                           {"type": "function", "function": {"name": "other"}}]);
        let asked = request(json!({"model": "m", "tools": tools, "messages": [
            {"role": "user", "content": "paris"},
        ]}));
        assert_eq!(asked.prompt().unwrap().tool, Some("get_weather"));

        let answered = request(json!({"model": "m", "tools": tools, "messages": [
            {"role": "user", "content": "paris"},
            {"role": "assistant", "content": null, "tool_calls": [{"id": "call_1", "type": "function",
                "function": {"name": "get_weather", "arguments": "{}"}}]},
            {"role": "tool", "tool_call_id": "call_1", "content": "sunny 20C"},
        ]}));
        let prompt = answered.prompt().unwrap();
        assert_eq!(prompt.tool, None);
        assert_eq!(prompt.echo, "sunny 20C");
        assert_eq!(prompt.tokens, 3);
    }

    #[test]
    fn caps_prefer_max_completion_tokens_and_refuse_zero() {
        let r = request(
            json!({"model": "m", "messages": [{"role": "user", "content": "x"}],
            "max_tokens": 9, "max_completion_tokens": 3}),
        );
        assert_eq!(r.prompt().unwrap().max_tokens, Some(3));
        let r = request(
            json!({"model": "m", "messages": [{"role": "user", "content": "x"}],
            "max_tokens": 0}),
        );
        assert!(matches!(
            r.prompt(),
            Err(MockError::InvalidRequest {
                param: Some("max_tokens"),
                ..
            })
        ));
    }

    #[test]
    fn empty_messages_are_refused() {
        for body in [json!({"model": "m", "messages": []}), json!({"model": "m"})] {
            assert!(matches!(
                request(body).prompt(),
                Err(MockError::InvalidRequest {
                    param: Some("messages"),
                    ..
                })
            ));
        }
    }
}
