//! Anthropic Messages wire types, named as Anthropic's API reference names
//! them, for the parts the translations read or write.

use std::borrow::Cow;

use serde::{Deserialize, Serialize};
use serde_json::Value;
use serde_json::value::RawValue;

use crate::openai::chat::{ChatUsage, PromptTokensDetails};

/// The name of the tool that carries a JSON answer (`response_format`): a
/// request with a JSON format forces it, and its input comes back as text.
pub(crate) const JSON_TOOL: &str = "json_response";

/// `POST /v1/messages` request body, as written for a provider. (A client's
/// body is read field by field, to name each fault; see `client::request`.)
#[derive(Debug, Serialize)]
pub(crate) struct MessagesRequest {
    pub(crate) model: String,
    pub(crate) messages: Vec<InputMessage>,
    pub(crate) max_tokens: u64,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) system: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) stop_sequences: Option<Vec<String>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) temperature: Option<f64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) top_p: Option<f64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) stream: Option<bool>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) metadata: Option<Metadata>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) tools: Option<Vec<ToolDefinition>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) tool_choice: Option<Value>,
}

/// One turn of the conversation.
#[derive(Debug, Serialize)]
pub(crate) struct InputMessage {
    pub(crate) role: &'static str,
    pub(crate) content: Vec<Block>,
}

/// `metadata`.
#[derive(Debug, Serialize, Deserialize)]
pub(crate) struct Metadata {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(crate) user_id: Option<String>,
}

/// A custom tool: `{name, description, input_schema}`.
#[derive(Debug, Serialize, Deserialize)]
pub(crate) struct ToolDefinition {
    /// `custom` or absent for a custom tool; a server tool's versioned type
    /// (`web_search_20250305`, `bash_20250124`, …) otherwise.
    #[serde(rename = "type", default, skip_serializing_if = "Option::is_none")]
    pub(crate) kind: Option<String>,
    pub(crate) name: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(crate) description: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(crate) input_schema: Option<Value>,
}

/// A content block of a request or a response. Types the translations do not
/// know read as [`Block::Unknown`].
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub(crate) enum Block {
    /// Text.
    Text { text: String },
    /// An image.
    Image { source: Source },
    /// A document (PDF or plain text).
    Document {
        source: Source,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        title: Option<String>,
    },
    /// A call of a tool by the model.
    ToolUse {
        id: String,
        name: String,
        input: Value,
    },
    /// A tool's answer, in a user turn.
    ToolResult {
        tool_use_id: String,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        content: Option<Value>,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        is_error: Option<bool>,
    },
    /// The model's reasoning.
    Thinking {
        thinking: String,
        #[serde(default)]
        signature: String,
    },
    /// Reasoning the provider keeps encrypted.
    RedactedThinking,
    /// Any other type (server tool blocks, search results, …).
    #[serde(other)]
    Unknown,
}

impl Block {
    /// A text block.
    pub(crate) fn text(text: impl Into<String>) -> Self {
        Self::Text { text: text.into() }
    }
}

/// An image's or a document's `source`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub(crate) enum Source {
    /// Inline data.
    Base64 { media_type: String, data: String },
    /// A URL the provider fetches.
    Url { url: String },
    /// Plain text (documents only).
    Text { media_type: String, data: String },
}

/// A `message` response.
#[derive(Debug, Deserialize)]
pub(crate) struct MessageResponse<'a> {
    pub(crate) id: String,
    pub(crate) model: String,
    #[serde(borrow)]
    pub(crate) content: Vec<ResponseBlock<'a>>,
    pub(crate) stop_reason: Option<String>,
    pub(crate) usage: Usage,
}

/// A content block of a response, read flat so that a tool's `input` is kept
/// as the provider wrote it (its keys in their order).
#[derive(Debug, Deserialize)]
pub(crate) struct ResponseBlock<'a> {
    #[serde(rename = "type", borrow)]
    pub(crate) kind: Cow<'a, str>,
    #[serde(default)]
    pub(crate) text: Option<String>,
    #[serde(default)]
    pub(crate) thinking: Option<String>,
    #[serde(default)]
    pub(crate) id: Option<String>,
    #[serde(default)]
    pub(crate) name: Option<String>,
    #[serde(default, borrow)]
    pub(crate) input: Option<&'a RawValue>,
}

/// `usage` of a message, of `message_start` or of `message_delta` (where each
/// count is cumulative and any may be missing).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct Usage {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(crate) input_tokens: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(crate) output_tokens: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(crate) cache_creation_input_tokens: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(crate) cache_read_input_tokens: Option<u64>,
}

impl Usage {
    /// Takes every count `later` has.
    pub(crate) fn update(&mut self, later: &Usage) {
        self.input_tokens = later.input_tokens.or(self.input_tokens);
        self.output_tokens = later.output_tokens.or(self.output_tokens);
        self.cache_creation_input_tokens = later
            .cache_creation_input_tokens
            .or(self.cache_creation_input_tokens);
        self.cache_read_input_tokens = later
            .cache_read_input_tokens
            .or(self.cache_read_input_tokens);
    }

    /// In OpenAI's terms: prompt tokens count the cached and the cache-written
    /// ones, which `prompt_tokens_details` names apart.
    pub(crate) fn to_chat(self) -> ChatUsage {
        let read = self.cache_read_input_tokens.unwrap_or(0);
        let written = self.cache_creation_input_tokens.unwrap_or(0);
        let prompt = self
            .input_tokens
            .unwrap_or(0)
            .saturating_add(read)
            .saturating_add(written);
        let mut usage = ChatUsage::new(prompt, self.output_tokens.unwrap_or(0));
        usage.prompt_tokens_details = Some(PromptTokensDetails {
            cached_tokens: read,
            cache_creation_tokens: written,
        });
        usage
    }

    /// From OpenAI's terms: input tokens are the prompt's uncached ones.
    pub(crate) fn of_chat(usage: &ChatUsage) -> Self {
        let details = usage.prompt_tokens_details.unwrap_or_default();
        Self {
            input_tokens: Some(
                usage
                    .prompt_tokens
                    .saturating_sub(details.cached_tokens)
                    .saturating_sub(details.cache_creation_tokens),
            ),
            output_tokens: Some(usage.completion_tokens),
            cache_creation_input_tokens: Some(details.cache_creation_tokens),
            cache_read_input_tokens: Some(details.cached_tokens),
        }
    }
}

/// `{"type": "error", "error": {"type", "message"}}`.
#[derive(Debug, Serialize, Deserialize)]
pub(crate) struct ErrorEnvelope {
    #[serde(rename = "type")]
    pub(crate) kind: String,
    pub(crate) error: ErrorDetail,
}

/// The inner `error` of an Anthropic error.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub(crate) struct ErrorDetail {
    #[serde(rename = "type")]
    pub(crate) kind: String,
    #[serde(default)]
    pub(crate) message: String,
}

/// One event of a Messages stream (its `data`; the `type` inside names it).
#[derive(Debug, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub(crate) enum StreamEvent {
    MessageStart {
        message: StartMessage,
    },
    ContentBlockStart {
        index: u32,
        content_block: Block,
    },
    ContentBlockDelta {
        index: u32,
        delta: BlockDelta,
    },
    ContentBlockStop {
        index: u32,
    },
    MessageDelta {
        delta: MessageDelta,
        #[serde(default)]
        usage: Usage,
    },
    MessageStop,
    Error {
        error: ErrorDetail,
    },
    /// `ping`, and types added later.
    #[serde(other)]
    Other,
}

/// The message of `message_start`, its content still empty.
#[derive(Debug, Deserialize)]
pub(crate) struct StartMessage {
    pub(crate) id: String,
    pub(crate) model: String,
    #[serde(default)]
    pub(crate) usage: Usage,
}

/// What a `content_block_delta` adds.
#[derive(Debug, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub(crate) enum BlockDelta {
    TextDelta {
        text: String,
    },
    InputJsonDelta {
        partial_json: String,
    },
    ThinkingDelta {
        thinking: String,
    },
    /// `signature_delta`, `citations_delta`, and types added later.
    #[serde(other)]
    Other,
}

/// The `delta` of `message_delta`.
#[derive(Debug, Deserialize)]
pub(crate) struct MessageDelta {
    #[serde(default)]
    pub(crate) stop_reason: Option<String>,
}
