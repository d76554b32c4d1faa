//! The Anthropic Messages request, as far as the mock reads it, and the [`Prompt`] in it.

use std::borrow::Cow;

use serde::Deserialize;
use serde::de::IgnoredAny;

use crate::error::MockError;
use crate::reply::{Prompt, token_cap};
use crate::text::count_words;

/// The fields of a `POST /v1/messages` body the mock reads; `top_p`, `top_k`,
/// `metadata` and the rest are accepted and ignored.
#[derive(Debug, Deserialize)]
pub(super) struct MessagesRequest {
    pub model: Option<String>,
    max_tokens: Option<u64>,
    messages: Option<Vec<Message>>,
    system: Option<Content>,
    tools: Option<Vec<Tool>>,
    tool_choice: Option<ToolChoice>,
    stop_sequences: Option<Vec<String>>,
    pub stream: Option<bool>,
    temperature: Option<f64>,
}

#[derive(Debug, Deserialize)]
struct Message {
    role: String,
    content: Content,
}

/// A message's (or the system prompt's, or a tool result's) `content`: a string or blocks.
#[derive(Debug, Deserialize)]
#[serde(untagged)]
enum Content {
    Text(String),
    Blocks(Vec<Block>),
}

/// A content block. Only text and tool results carry words the mock counts; a block of a
/// type the mock does not know is accepted and ignored.
#[derive(Debug, Deserialize)]
#[allow(
    dead_code,
    reason = "fields are parsed so that malformed blocks are refused"
)]
#[serde(tag = "type", rename_all = "snake_case")]
enum Block {
    Text {
        text: String,
        cache_control: Option<IgnoredAny>,
    },
    Image {
        source: ImageSource,
    },
    ToolUse {
        id: String,
        name: String,
        input: IgnoredAny,
    },
    ToolResult {
        tool_use_id: String,
        content: Option<Content>,
        is_error: Option<bool>,
        cache_control: Option<IgnoredAny>,
    },
    Thinking {
        thinking: String,
    },
    #[serde(other)]
    Other,
}

/// An image's `source`.
#[derive(Debug, Deserialize)]
#[allow(
    dead_code,
    reason = "fields are parsed so that malformed sources are refused"
)]
#[serde(tag = "type", rename_all = "snake_case")]
enum ImageSource {
    Base64 { media_type: String, data: String },
    Url { url: String },
    File { file_id: String },
}

#[derive(Debug, Deserialize)]
struct Tool {
    name: String,
}

/// `tool_choice`; `disable_parallel_tool_use` is accepted and ignored.
#[derive(Debug, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
enum ToolChoice {
    Auto {},
    Any {},
    Tool {
        name: String,
    },
    #[serde(rename = "none")]
    Never {},
}

/// Words of a prompt: all of them, and those under `cache_control`.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub(super) struct Words {
    /// Every counted word.
    pub total: u64,
    /// Words of blocks that carry `cache_control` (or lie inside a tool result that does).
    pub cached: u64,
}

impl Words {
    fn add(&mut self, text: &str, cached: bool) {
        let n = count_words(text);
        self.total += n;
        if cached {
            self.cached += n;
        }
    }
}

impl Content {
    /// The text: a string as is, text blocks joined by a space.
    fn text(&self) -> Cow<'_, str> {
        match self {
            Self::Text(text) => Cow::Borrowed(text),
            Self::Blocks(blocks) => Cow::Owned(
                blocks
                    .iter()
                    .filter_map(|block| match block {
                        Block::Text { text, .. } => Some(text.as_str()),
                        _ => None,
                    })
                    .collect::<Vec<_>>()
                    .join(" "),
            ),
        }
    }

    /// The text of its tool results joined by a space, if it has any.
    fn tool_results(&self) -> Option<String> {
        let Self::Blocks(blocks) = self else {
            return None;
        };
        let results: Vec<Cow<'_, str>> = blocks
            .iter()
            .filter_map(|block| match block {
                Block::ToolResult { content, .. } => {
                    Some(content.as_ref().map_or(Cow::Borrowed(""), Content::text))
                }
                _ => None,
            })
            .collect();
        (!results.is_empty()).then(|| results.join(" "))
    }

    /// Adds its words to `words`; all of them are cached if `cached`.
    fn count(&self, cached: bool, words: &mut Words) {
        match self {
            Self::Text(text) => words.add(text, cached),
            Self::Blocks(blocks) => {
                for block in blocks {
                    match block {
                        Block::Text {
                            text,
                            cache_control,
                        } => words.add(text, cached || cache_control.is_some()),
                        Block::ToolResult {
                            content: Some(content),
                            cache_control,
                            ..
                        } => content.count(cached || cache_control.is_some(), words),
                        _ => {}
                    }
                }
            }
        }
    }
}

impl MessagesRequest {
    /// What the request asks of the mock, and its words.
    pub(super) fn prompt(&self) -> Result<(Prompt<'_>, Words), MockError> {
        let Some(messages) = &self.messages else {
            return Err(MockError::invalid("messages: Field required", "messages"));
        };
        let Some(last) = messages.last() else {
            return Err(MockError::invalid(
                "messages: at least one message is required",
                "messages",
            ));
        };
        if let Some(i) = messages
            .iter()
            .position(|m| m.role != "user" && m.role != "assistant")
        {
            return Err(MockError::invalid(
                format!("messages.{i}.role: Input should be 'user' or 'assistant'"),
                "messages",
            ));
        }
        let Some(max_tokens) = self.max_tokens else {
            return Err(MockError::invalid(
                "max_tokens: Field required",
                "max_tokens",
            ));
        };
        if let Some(t) = self.temperature
            && !(0.0..=1.0).contains(&t)
        {
            return Err(MockError::invalid(
                "temperature: Input should be between 0 and 1",
                "temperature",
            ));
        }
        let results = (last.role == "user")
            .then(|| last.content.tool_results())
            .flatten();
        let tool = if last.role == "user" && results.is_none() {
            self.tool_to_call()?
        } else {
            None
        };
        let echo = match results {
            Some(results) => Cow::Owned(results),
            None => messages
                .iter()
                .rev()
                .find(|m| m.role == "user")
                .map_or(Cow::Borrowed(""), |m| m.content.text()),
        };
        let mut words = Words::default();
        if let Some(system) = &self.system {
            system.count(false, &mut words);
        }
        for message in messages {
            message.content.count(false, &mut words);
        }
        let prompt = Prompt {
            tokens: words.total,
            echo,
            tool,
            max_tokens: token_cap(Some(max_tokens), "max_tokens")?,
            stop_sequences: self.stop_sequences.as_deref().unwrap_or_default(),
        };
        Ok((prompt, words))
    }

    /// The tool to call after a user's text: the first offered, or the one `tool_choice`
    /// names; none with `tool_choice: {"type": "none"}`.
    fn tool_to_call(&self) -> Result<Option<&str>, MockError> {
        let Some(first) = self.tools.as_deref().and_then(<[Tool]>::first) else {
            return Ok(None);
        };
        match &self.tool_choice {
            Some(ToolChoice::Never {}) => Ok(None),
            Some(ToolChoice::Tool { name }) => self
                .tools
                .iter()
                .flatten()
                .find(|tool| tool.name == *name)
                .map(|tool| Some(tool.name.as_str()))
                .ok_or_else(|| {
                    MockError::invalid(
                        format!("tool_choice.name: no tool named {name:?} in tools"),
                        "tool_choice",
                    )
                }),
            Some(ToolChoice::Auto {} | ToolChoice::Any {}) | None => Ok(Some(&first.name)),
        }
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::panic)]
mod tests {
    use super::*;
    use serde_json::json;

    fn prompt_of(body: serde_json::Value) -> Result<(String, Option<String>, Words), MockError> {
        let request: MessagesRequest = serde_json::from_value(body).unwrap();
        request
            .prompt()
            .map(|(p, words)| (p.echo.into_owned(), p.tool.map(str::to_owned), words))
    }

    #[test]
    fn blocks_system_and_cache_control() {
        let (echo, tool, words) = prompt_of(json!({
            "model": "m", "max_tokens": 5,
            "system": [{"type": "text", "text": "be brief", "cache_control": {"type": "ephemeral"}}],
            "messages": [
                {"role": "user", "content": "old question"},
                {"role": "assistant", "content": [{"type": "thinking", "thinking": "hmm", "signature": "s"},
                                                  {"type": "text", "text": "old answer"}]},
                {"role": "user", "content": [
                    {"type": "image", "source": {"type": "url", "url": "https://x/a.png"}},
                    {"type": "text", "text": "look here", "cache_control": {"type": "ephemeral"}},
                    {"type": "document", "source": {"type": "text", "data": "ignored words"}},
                    {"type": "text", "text": "now"},
                ]},
            ],
        }))
        .unwrap();
        assert_eq!(echo, "look here now");
        assert_eq!(tool, None);
        assert_eq!(
            words,
            Words {
                total: 9,
                cached: 4
            }
        );
    }

    #[test]
    fn tool_results_are_echoed_and_tools_called_only_after_text() {
        let tools =
            json!([{"name": "first", "input_schema": {}}, {"name": "second", "input_schema": {}}]);
        let asked = json!({"model": "m", "max_tokens": 5, "tools": tools,
            "messages": [{"role": "user", "content": "paris"}]});
        assert_eq!(
            prompt_of(asked.clone()).unwrap().1.as_deref(),
            Some("first")
        );
        let mut named = asked.clone();
        named["tool_choice"] = json!({"type": "tool", "name": "second"});
        assert_eq!(prompt_of(named).unwrap().1.as_deref(), Some("second"));
        let mut none = asked.clone();
        none["tool_choice"] = json!({"type": "none"});
        assert_eq!(prompt_of(none).unwrap().1, None);
        let mut unknown = asked;
        unknown["tool_choice"] = json!({"type": "tool", "name": "third"});
        assert!(prompt_of(unknown).is_err());

        let (echo, tool, words) = prompt_of(json!({"model": "m", "max_tokens": 5, "tools": tools,
            "messages": [
                {"role": "user", "content": "paris"},
                {"role": "assistant", "content": [{"type": "tool_use", "id": "toolu_1", "name": "first", "input": {"echo": "paris"}}]},
                {"role": "user", "content": [
                    {"type": "tool_result", "tool_use_id": "toolu_1", "cache_control": {"type": "ephemeral"},
                     "content": [{"type": "text", "text": "sunny"}, {"type": "text", "text": "20 C"}]},
                    {"type": "tool_result", "tool_use_id": "toolu_2", "content": "windy", "is_error": true},
                ]},
            ]}))
        .unwrap();
        assert_eq!(echo, "sunny 20 C windy");
        assert_eq!(tool, None);
        assert_eq!(
            words,
            Words {
                total: 5,
                cached: 3
            }
        );
    }

    #[test]
    fn required_fields_and_ranges() {
        let ok =
            json!({"model": "m", "max_tokens": 5, "messages": [{"role": "user", "content": "x"}]});
        assert!(prompt_of(ok.clone()).is_ok());
        for (field, value, param) in [
            ("max_tokens", serde_json::Value::Null, "max_tokens"),
            ("max_tokens", json!(0), "max_tokens"),
            ("messages", serde_json::Value::Null, "messages"),
            ("messages", json!([]), "messages"),
            (
                "messages",
                json!([{"role": "system", "content": "x"}]),
                "messages",
            ),
            ("temperature", json!(1.5), "temperature"),
        ] {
            let mut body = ok.clone();
            if value.is_null() {
                body.as_object_mut().unwrap().remove(field);
            } else {
                body[field] = value;
            }
            match prompt_of(body) {
                Err(MockError::InvalidRequest { param: Some(p), .. }) => assert_eq!(p, param),
                other => panic!("{field}: {other:?}"),
            }
        }
    }
}
