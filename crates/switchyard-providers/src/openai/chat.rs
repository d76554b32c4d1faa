//! Typed OpenAI chat completions: the request, the response and the stream
//! chunk.
//!
//! These are the canonical shapes every translation goes through: a request in
//! another dialect becomes a [`ChatRequest`] before it is written in the
//! provider's dialect, and a provider's answer becomes a [`ChatCompletion`] (or
//! a series of [`ChatChunk`]s) before it is written in the client's. Fields the
//! types do not name are kept in `extra`, so nothing a client sent is lost
//! without the translation knowing it.

use std::borrow::Borrow;

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

/// `POST /v1/chat/completions` request body.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct ChatRequest {
    /// The public model name.
    pub model: String,
    /// The conversation.
    pub messages: Vec<Message>,
    /// Legacy completion token cap.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_tokens: Option<u64>,
    /// Completion token cap (reasoning tokens included).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_completion_tokens: Option<u64>,
    /// Sampling temperature.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub temperature: Option<f64>,
    /// Nucleus sampling.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub top_p: Option<f64>,
    /// Number of choices.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub n: Option<u64>,
    /// Stop sequences.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub stop: Option<Stop>,
    /// Whether to answer with server-sent events.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub stream: Option<bool>,
    /// Stream options (`include_usage`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub stream_options: Option<StreamOptions>,
    /// Tools the model may call.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tools: Option<Vec<Tool>>,
    /// Which tool the model must call, if any.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tool_choice: Option<ToolChoice>,
    /// Whether the model may call several tools in one turn.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub parallel_tool_calls: Option<bool>,
    /// Text, JSON object or JSON schema output.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub response_format: Option<ResponseFormat>,
    /// The end user, for abuse monitoring.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub user: Option<String>,
    /// Sampling seed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub seed: Option<i64>,
    /// Presence penalty.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub presence_penalty: Option<f64>,
    /// Frequency penalty.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub frequency_penalty: Option<f64>,
    /// Every other field, as sent.
    #[serde(flatten)]
    pub extra: Map<String, Value>,
}

impl ChatRequest {
    /// The completion token cap the client set, by either name.
    pub fn token_cap(&self) -> Option<u64> {
        self.max_completion_tokens.or(self.max_tokens)
    }

    /// Whether the client asked for a stream.
    pub fn streams(&self) -> bool {
        self.stream == Some(true)
    }

    /// Whether a streaming client asked for usage in the last chunk.
    pub fn wants_stream_usage(&self) -> bool {
        self.stream_options
            .as_ref()
            .and_then(|o| o.include_usage)
            .unwrap_or(false)
    }
}

/// `stop`: one sequence or several.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(untagged)]
pub enum Stop {
    /// One stop sequence.
    One(String),
    /// Several.
    Many(Vec<String>),
}

impl Stop {
    /// The sequences as a list.
    pub fn to_vec(&self) -> Vec<String> {
        match self {
            Self::One(s) => vec![s.clone()],
            Self::Many(v) => v.clone(),
        }
    }
}

/// `stream_options`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct StreamOptions {
    /// Send usage in a last chunk.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub include_usage: Option<bool>,
    /// Every other field, as sent.
    #[serde(flatten)]
    pub extra: Map<String, Value>,
}

/// A message's author.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Role {
    /// Instructions.
    System,
    /// Instructions (the newer name for `system` on reasoning models).
    Developer,
    /// The end user.
    User,
    /// The model.
    Assistant,
    /// A tool's result.
    Tool,
    /// A legacy function result.
    Function,
}

/// One message of the conversation.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Message {
    /// Who wrote it.
    pub role: Role,
    /// Text or parts; absent on an assistant turn that only calls tools.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub content: Option<Content>,
    /// Author name.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    /// The tools an assistant turn called.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tool_calls: Option<Vec<ToolCall>>,
    /// The call a `tool` message answers.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tool_call_id: Option<String>,
    /// Every other field, as sent.
    #[serde(flatten)]
    pub extra: Map<String, Value>,
}

impl Message {
    /// A message with text content and nothing else.
    pub fn text(role: Role, text: impl Into<String>) -> Self {
        Self {
            role,
            content: Some(Content::Text(text.into())),
            name: None,
            tool_calls: None,
            tool_call_id: None,
            extra: Map::new(),
        }
    }
}

/// A message's content: a string or typed parts.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(untagged)]
pub enum Content {
    /// Plain text.
    Text(String),
    /// Text, images, audio, files.
    Parts(Vec<Part>),
}

impl Content {
    /// The text of the content: the string, or the text parts joined by `\n`.
    pub fn joined_text(&self) -> String {
        match self {
            Self::Text(text) => text.clone(),
            Self::Parts(parts) => parts
                .iter()
                .filter_map(|p| p.text.as_deref())
                .collect::<Vec<_>>()
                .join("\n"),
        }
    }
}

/// A content part: `{"type": "text", "text"}`, `{"type": "image_url",
/// "image_url": {"url", "detail"}}`, or another type kept whole in `extra`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Part {
    /// `text`, `image_url`, `input_audio`, `file`, …
    #[serde(rename = "type")]
    pub kind: String,
    /// The text of a `text` part.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub text: Option<String>,
    /// The image of an `image_url` part.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub image_url: Option<ImageUrl>,
    /// Every other field, as sent.
    #[serde(flatten)]
    pub extra: Map<String, Value>,
}

impl Part {
    /// A text part.
    pub fn text(text: impl Into<String>) -> Self {
        Self {
            kind: "text".to_owned(),
            text: Some(text.into()),
            image_url: None,
            extra: Map::new(),
        }
    }
}

/// `image_url`: an `https:` URL or a `data:<media type>;base64,<data>` URL.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ImageUrl {
    /// The URL.
    pub url: String,
    /// `auto`, `low` or `high`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub detail: Option<String>,
}

impl ImageUrl {
    /// `(media type, base64 data)` of a `data:` URL.
    pub fn as_base64(&self) -> Option<(&str, &str)> {
        let rest = self.url.strip_prefix("data:")?;
        let (media_type, data) = rest.split_once(',')?;
        let media_type = media_type.strip_suffix(";base64")?;
        Some((media_type, data))
    }
}

/// A tool call of an assistant turn (request history or response).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ToolCall {
    /// The call's id, echoed by the `tool` message that answers it.
    pub id: String,
    /// Always `function`.
    #[serde(rename = "type", default = "function_type")]
    pub kind: String,
    /// The function and its arguments.
    pub function: FunctionCall,
}

fn function_type() -> String {
    "function".to_owned()
}

/// A function call: its name and its arguments as a JSON text.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct FunctionCall {
    /// The function's name.
    pub name: String,
    /// The arguments, a JSON object as text.
    pub arguments: String,
}

/// A tool the model may call.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Tool {
    /// Always `function`.
    #[serde(rename = "type", default = "function_type")]
    pub kind: String,
    /// The function.
    pub function: FunctionDefinition,
}

/// A function's declaration.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct FunctionDefinition {
    /// Its name.
    pub name: String,
    /// What it does.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
    /// Its parameters as a JSON schema.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub parameters: Option<Value>,
    /// Strict schema adherence.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub strict: Option<bool>,
}

/// `tool_choice`: `none`, `auto`, `required`, or one named function.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(untagged)]
pub enum ToolChoice {
    /// `none`, `auto` or `required`.
    Mode(String),
    /// `{"type": "function", "function": {"name"}}`.
    Named(NamedToolChoice),
}

/// A tool choice naming one function.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct NamedToolChoice {
    /// Always `function`.
    #[serde(rename = "type", default = "function_type")]
    pub kind: String,
    /// The function.
    pub function: FunctionName,
}

/// `{"name"}`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct FunctionName {
    /// The function's name.
    pub name: String,
}

/// `response_format`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ResponseFormat {
    /// `text`, `json_object` or `json_schema`.
    #[serde(rename = "type")]
    pub kind: String,
    /// The schema of a `json_schema` format.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub json_schema: Option<JsonSchema>,
}

/// `response_format.json_schema`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct JsonSchema {
    /// The schema's name.
    pub name: String,
    /// What the output is for.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
    /// The JSON schema.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub schema: Option<Value>,
    /// Strict adherence.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub strict: Option<bool>,
}

/// A `chat.completion` response.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ChatCompletion {
    /// The response id.
    pub id: String,
    /// Always `chat.completion`.
    pub object: String,
    /// Unix seconds.
    pub created: u64,
    /// The model that answered.
    pub model: String,
    /// The backend configuration that answered, as OpenAI reports it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub system_fingerprint: Option<String>,
    /// The answers.
    pub choices: Vec<Choice>,
    /// Token counts.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub usage: Option<ChatUsage>,
    /// Every other field, as received.
    #[serde(flatten)]
    pub extra: Map<String, Value>,
}

/// One answer of a [`ChatCompletion`].
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Choice {
    /// Its position.
    pub index: u32,
    /// The assistant's message.
    pub message: ResponseMessage,
    /// Why generation stopped: `stop`, `length`, `tool_calls`, `content_filter`.
    pub finish_reason: Option<String>,
    /// Log probabilities (always sent, `null` when not asked for).
    #[serde(default)]
    pub logprobs: Option<Value>,
}

/// The assistant's message in a response.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct ResponseMessage {
    /// Always `assistant`.
    pub role: String,
    /// The text (`null` when the turn only calls tools).
    pub content: Option<String>,
    /// A refusal (`null` when there is none).
    #[serde(default)]
    pub refusal: Option<String>,
    /// The tools called.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tool_calls: Option<Vec<ToolCall>>,
    /// The model's reasoning, as some providers return it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reasoning_content: Option<String>,
    /// Every other field, as received.
    #[serde(flatten)]
    pub extra: Map<String, Value>,
}

/// Token counts of a chat answer (a count missing on the wire reads as zero).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ChatUsage {
    /// Prompt tokens, cached and cache-written ones included.
    #[serde(default)]
    pub prompt_tokens: u64,
    /// Completion tokens, reasoning included.
    #[serde(default)]
    pub completion_tokens: u64,
    /// Their sum.
    #[serde(default)]
    pub total_tokens: u64,
    /// Where prompt tokens came from.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub prompt_tokens_details: Option<PromptTokensDetails>,
    /// What completion tokens were spent on.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub completion_tokens_details: Option<CompletionTokensDetails>,
}

impl ChatUsage {
    /// Usage with `total_tokens` the sum of the other two.
    pub fn new(prompt_tokens: u64, completion_tokens: u64) -> Self {
        Self {
            prompt_tokens,
            completion_tokens,
            total_tokens: prompt_tokens.saturating_add(completion_tokens),
            prompt_tokens_details: None,
            completion_tokens_details: None,
        }
    }

    /// The counts the request record keeps: the totals and, from the
    /// details, the cached, cache-written and reasoning tokens.
    pub fn totals(&self) -> super::Usage {
        let prompt = self.prompt_tokens_details.unwrap_or_default();
        let completion = self.completion_tokens_details.unwrap_or_default();
        super::Usage {
            prompt_tokens: self.prompt_tokens,
            completion_tokens: self.completion_tokens,
            total_tokens: self.total_tokens,
            cached_tokens: prompt.cached_tokens,
            cache_write_tokens: prompt.cache_creation_tokens,
            reasoning_tokens: completion.reasoning_tokens,
        }
    }
}

/// `usage.prompt_tokens_details` (a count missing or `null` reads as zero:
/// some OpenAI-compatible servers write `null` for what they do not count).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct PromptTokensDetails {
    /// Prompt tokens read from the provider's prompt cache.
    #[serde(default, deserialize_with = "zero_if_null")]
    pub cached_tokens: u64,
    /// Prompt tokens written to the provider's prompt cache (Anthropic bills
    /// them apart; OpenAI has no such count, so it is left out when zero).
    #[serde(
        default,
        deserialize_with = "zero_if_null",
        skip_serializing_if = "is_zero"
    )]
    pub cache_creation_tokens: u64,
}

/// `usage.completion_tokens_details` (a count missing or `null` reads as zero).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct CompletionTokensDetails {
    /// Tokens spent reasoning.
    #[serde(default, deserialize_with = "zero_if_null")]
    pub reasoning_tokens: u64,
}

fn is_zero(n: &u64) -> bool {
    *n == 0
}

fn zero_if_null<'de, D: serde::Deserializer<'de>>(de: D) -> Result<u64, D::Error> {
    Ok(Option::<u64>::deserialize(de)?.unwrap_or(0))
}

/// A `chat.completion.chunk` of a stream.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ChatChunk {
    /// The response id, the same in every chunk.
    pub id: String,
    /// Always `chat.completion.chunk`.
    pub object: String,
    /// Unix seconds.
    pub created: u64,
    /// The model that answers.
    pub model: String,
    /// The backend configuration that answers, as OpenAI reports it (the
    /// same in every chunk).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub system_fingerprint: Option<String>,
    /// Deltas; empty in the usage chunk.
    pub choices: Vec<ChunkChoice>,
    /// Token counts, in the last chunk only.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub usage: Option<ChatUsage>,
}

/// One choice's delta in a chunk.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ChunkChoice {
    /// The choice's position.
    pub index: u32,
    /// What is new.
    pub delta: Delta,
    /// Set in the choice's last chunk.
    pub finish_reason: Option<String>,
    /// Log probabilities (always sent, `null` when not asked for).
    #[serde(default)]
    pub logprobs: Option<Value>,
}

/// What a chunk adds to a choice.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Delta {
    /// `assistant`, in the first chunk.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub role: Option<String>,
    /// More text.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub content: Option<String>,
    /// More reasoning text, as some providers stream it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reasoning_content: Option<String>,
    /// Tool calls begun or continued.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tool_calls: Option<Vec<ToolCallDelta>>,
    /// A refusal.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub refusal: Option<String>,
}

/// A tool call in a stream: the first delta of a call carries its `id`, `type`
/// and name; later ones add to its arguments.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct ToolCallDelta {
    /// Which call of the turn (0, 1, …).
    pub index: u32,
    /// The call's id (first delta only).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub id: Option<String>,
    /// `function` (first delta only).
    #[serde(rename = "type", default, skip_serializing_if = "Option::is_none")]
    pub kind: Option<String>,
    /// Name (first delta) and argument text.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub function: Option<FunctionDelta>,
}

/// Part of a function call in a stream.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct FunctionDelta {
    /// The function's name (first delta only).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    /// More of the arguments' JSON text.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub arguments: Option<String>,
}

impl ChatCompletion {
    /// The chunks of a stream that says the same as this completion: per
    /// choice, one chunk with the role, the text, the refusal, the reasoning,
    /// the whole tool calls and the log probabilities, and one with the finish
    /// reason; then one with the usage. (For a client that asked for a stream
    /// from a provider that answered at once, and for a stored answer played
    /// back as a stream.)
    ///
    /// [`from_chunks`](Self::from_chunks) reads them back into this
    /// completion, but for what a chunk has no place for: the fields kept in
    /// the completion's and its messages' `extra`, and a choice list that is
    /// empty or not in `index` order.
    pub fn into_chunks(self) -> Vec<ChatChunk> {
        let chunk = |choices: Vec<ChunkChoice>, usage: Option<ChatUsage>| ChatChunk {
            id: self.id.clone(),
            object: "chat.completion.chunk".to_owned(),
            created: self.created,
            model: self.model.clone(),
            system_fingerprint: self.system_fingerprint.clone(),
            choices,
            usage,
        };
        let mut chunks = Vec::with_capacity(2 * self.choices.len() + 1);
        for choice in self.choices {
            let message = choice.message;
            let tool_calls = message.tool_calls.map(|calls| {
                calls
                    .into_iter()
                    .zip(0..)
                    .map(|(call, index)| ToolCallDelta {
                        index,
                        id: Some(call.id),
                        kind: Some(call.kind),
                        function: Some(FunctionDelta {
                            name: Some(call.function.name),
                            arguments: Some(call.function.arguments),
                        }),
                    })
                    .collect()
            });
            let delta = Delta {
                role: Some(message.role),
                content: message.content,
                reasoning_content: message.reasoning_content,
                tool_calls,
                refusal: message.refusal,
            };
            chunks.push(chunk(
                vec![ChunkChoice {
                    index: choice.index,
                    delta,
                    finish_reason: None,
                    logprobs: choice.logprobs,
                }],
                None,
            ));
            chunks.push(chunk(
                vec![ChunkChoice {
                    index: choice.index,
                    delta: Delta::default(),
                    finish_reason: choice.finish_reason,
                    logprobs: None,
                }],
                None,
            ));
        }
        if let Some(usage) = self.usage {
            chunks.push(chunk(Vec::new(), Some(usage)));
        }
        chunks
    }

    /// The completion the chunks of a stream add up to, the inverse of
    /// [`into_chunks`](Self::into_chunks); `None` when no chunk has a choice.
    ///
    /// The id, time and model are those of the first chunk with a choice
    /// (Azure OpenAI opens a stream with a chunk of prompt filter results and
    /// none of them), the system fingerprint is the first one sent, the usage
    /// the last one sent. Each choice (by `index`, in `index` order) joins its
    /// deltas: the role is the first one sent (`assistant` when none is),
    /// text, refusal and reasoning are concatenated (and stay `None` when no
    /// delta carried them), the finish reason is the last one sent. Tool calls
    /// are put together by their `index`, in `index` order: id, type and name
    /// are the first ones sent that are not empty (some servers repeat them in
    /// every delta), the argument pieces are concatenated. Log probabilities
    /// join their token lists (`content`, `refusal`).
    pub fn from_chunks<C: Borrow<ChatChunk>>(chunks: impl IntoIterator<Item = C>) -> Option<Self> {
        let mut head = None;
        let mut system_fingerprint = None;
        let mut usage = None;
        let mut choices: Vec<ChoiceSum> = Vec::new();
        for chunk in chunks {
            let chunk = chunk.borrow();
            if system_fingerprint.is_none() {
                system_fingerprint.clone_from(&chunk.system_fingerprint);
            }
            if chunk.usage.is_some() {
                usage = chunk.usage;
            }
            if chunk.choices.is_empty() {
                continue;
            }
            head.get_or_insert_with(|| (chunk.id.clone(), chunk.created, chunk.model.clone()));
            for part in &chunk.choices {
                let at = match choices.iter().position(|c| c.index == part.index) {
                    Some(at) => at,
                    None => {
                        choices.push(ChoiceSum {
                            index: part.index,
                            ..ChoiceSum::default()
                        });
                        choices.len() - 1
                    }
                };
                choices[at].add(part);
            }
        }
        let (id, created, model) = head?;
        choices.sort_by_key(|c| c.index);
        Some(Self {
            id,
            object: "chat.completion".to_owned(),
            created,
            model,
            system_fingerprint,
            choices: choices.into_iter().map(ChoiceSum::into_choice).collect(),
            usage,
            extra: Map::new(),
        })
    }
}

/// One choice of a stream as far as its deltas have told it.
#[derive(Default)]
struct ChoiceSum {
    index: u32,
    role: Option<String>,
    content: Option<String>,
    reasoning_content: Option<String>,
    refusal: Option<String>,
    /// The tool calls begun, each with the `index` its deltas name.
    tool_calls: Option<Vec<(u32, ToolCall)>>,
    finish_reason: Option<String>,
    logprobs: Option<Value>,
}

impl ChoiceSum {
    fn add(&mut self, part: &ChunkChoice) {
        let delta = &part.delta;
        if self.role.is_none() {
            self.role.clone_from(&delta.role);
        }
        append(&mut self.content, delta.content.as_deref());
        append(
            &mut self.reasoning_content,
            delta.reasoning_content.as_deref(),
        );
        append(&mut self.refusal, delta.refusal.as_deref());
        if let Some(calls) = &delta.tool_calls {
            let sums = self.tool_calls.get_or_insert_with(Vec::new);
            for call in calls {
                add_call(sums, call);
            }
        }
        if part.finish_reason.is_some() {
            self.finish_reason.clone_from(&part.finish_reason);
        }
        if let Some(logprobs) = &part.logprobs {
            add_logprobs(&mut self.logprobs, logprobs);
        }
    }

    fn into_choice(self) -> Choice {
        let tool_calls = self.tool_calls.map(|mut calls| {
            calls.sort_by_key(|(index, _)| *index);
            calls
                .into_iter()
                .map(|(_, mut call)| {
                    if call.kind.is_empty() {
                        call.kind = function_type();
                    }
                    call
                })
                .collect()
        });
        Choice {
            index: self.index,
            message: ResponseMessage {
                role: self.role.unwrap_or_else(|| "assistant".to_owned()),
                content: self.content,
                refusal: self.refusal,
                tool_calls,
                reasoning_content: self.reasoning_content,
                extra: Map::new(),
            },
            finish_reason: self.finish_reason,
            logprobs: self.logprobs,
        }
    }
}

/// Adds `more`, when a delta carries it, to the text so far.
fn append(text: &mut Option<String>, more: Option<&str>) {
    if let Some(more) = more {
        text.get_or_insert_with(String::new).push_str(more);
    }
}

/// Adds a tool call delta to the calls begun so far.
fn add_call(calls: &mut Vec<(u32, ToolCall)>, delta: &ToolCallDelta) {
    let at = match calls.iter().position(|(index, _)| *index == delta.index) {
        Some(at) => at,
        None => {
            let call = ToolCall {
                id: String::new(),
                kind: String::new(),
                function: FunctionCall {
                    name: String::new(),
                    arguments: String::new(),
                },
            };
            calls.push((delta.index, call));
            calls.len() - 1
        }
    };
    let call = &mut calls[at].1;
    fill(&mut call.id, delta.id.as_deref());
    fill(&mut call.kind, delta.kind.as_deref());
    if let Some(function) = &delta.function {
        fill(&mut call.function.name, function.name.as_deref());
        if let Some(arguments) = &function.arguments {
            call.function.arguments.push_str(arguments);
        }
    }
}

/// Sets an empty `field` to `value`; a field already set stays.
fn fill(field: &mut String, value: Option<&str>) {
    if field.is_empty()
        && let Some(value) = value
    {
        field.push_str(value);
    }
}

/// Adds a chunk's log probabilities to the choice's so far: the first ones
/// are taken whole, later ones add to their token lists (`content`,
/// `refusal`) or fill those still `null`.
fn add_logprobs(sum: &mut Option<Value>, more: &Value) {
    let Some(sum) = sum.as_mut() else {
        *sum = Some(more.clone());
        return;
    };
    let (Value::Object(sum), Value::Object(more)) = (sum, more) else {
        return;
    };
    for (key, value) in more {
        match (sum.get_mut(key), value) {
            (Some(Value::Array(tokens)), Value::Array(more)) => tokens.extend(more.iter().cloned()),
            (None | Some(Value::Null), _) => {
                sum.insert(key.clone(), value.clone());
            }
            _ => {}
        }
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use serde_json::json;

    use super::*;

    #[test]
    fn a_completion_reads_as_the_stream_that_says_the_same() {
        let completion: ChatCompletion = serde_json::from_value(json!({
            "id": "c1", "object": "chat.completion", "created": 7, "model": "m",
            "choices": [{"index": 0, "finish_reason": "tool_calls", "logprobs": null,
                "message": {"role": "assistant", "content": "let me look", "refusal": null,
                    "tool_calls": [{"id": "call_1", "type": "function",
                        "function": {"name": "lookup", "arguments": "{\"q\":1}"}}]}}],
            "usage": {"prompt_tokens": 3, "completion_tokens": 4, "total_tokens": 7}
        }))
        .unwrap();
        let chunks = completion.into_chunks();
        assert_eq!(chunks.len(), 3);
        assert!(chunks.iter().all(|c| c.id == "c1" && c.created == 7));
        let first = &chunks[0].choices[0].delta;
        assert_eq!(first.role.as_deref(), Some("assistant"));
        assert_eq!(first.content.as_deref(), Some("let me look"));
        let call = &first.tool_calls.as_ref().unwrap()[0];
        assert_eq!((call.index, call.id.as_deref()), (0, Some("call_1")));
        let function = call.function.as_ref().unwrap();
        assert_eq!(function.arguments.as_deref(), Some("{\"q\":1}"));
        assert_eq!(
            chunks[1].choices[0].finish_reason.as_deref(),
            Some("tool_calls")
        );
        assert!(chunks[2].choices.is_empty());
        assert_eq!(chunks[2].usage.unwrap().total_tokens, 7);
    }

    /// Completions that a stream can say: text, several tool calls, a
    /// refusal, reasoning, several choices, log probabilities, usage.
    fn completions() -> Vec<ChatCompletion> {
        let values = [
            json!({
                "id": "chatcmpl-1", "object": "chat.completion", "created": 1_741_569_952,
                "model": "gpt-4.1-2025-04-14", "system_fingerprint": "fp_44709d6fcb",
                "choices": [{"index": 0, "finish_reason": "stop", "logprobs": null,
                    "message": {"role": "assistant", "content": "Un LLM prédit le mot suivant.",
                        "refusal": null}}],
                "usage": {"prompt_tokens": 19, "completion_tokens": 10, "total_tokens": 29,
                    "prompt_tokens_details": {"cached_tokens": 4},
                    "completion_tokens_details": {"reasoning_tokens": 0}}
            }),
            json!({
                "id": "chatcmpl-2", "object": "chat.completion", "created": 7, "model": "m",
                "choices": [{"index": 0, "finish_reason": "tool_calls", "logprobs": null,
                    "message": {"role": "assistant", "content": null, "refusal": null,
                        "tool_calls": [
                            {"id": "call_a", "type": "function", "function": {"name": "get_weather",
                                "arguments": "{\"location\":\"Oslo\",\"unit\":\"c\"}"}},
                            {"id": "call_b", "type": "function", "function": {"name": "get_time",
                                "arguments": "{\"timezone\":\"Europe/Oslo\"}"}},
                            {"id": "call_c", "type": "function", "function": {"name": "ping",
                                "arguments": "{}"}}]}}],
                "usage": {"prompt_tokens": 3, "completion_tokens": 4, "total_tokens": 7}
            }),
            json!({
                "id": "chatcmpl-3", "object": "chat.completion", "created": 7, "model": "m",
                "choices": [{"index": 0, "finish_reason": "stop", "logprobs": null,
                    "message": {"role": "assistant", "content": null,
                        "refusal": "I'm sorry, I can't help with that."}}]
            }),
            json!({
                "id": "msg_1", "object": "chat.completion", "created": 7, "model": "claude",
                "choices": [{"index": 0, "finish_reason": "tool_calls", "logprobs": null,
                    "message": {"role": "assistant", "content": "Checking.", "refusal": null,
                        "reasoning_content": "The user wants the weather.",
                        "tool_calls": [{"id": "toolu_1", "type": "function",
                            "function": {"name": "get_weather", "arguments": ""}}]}}],
                "usage": {"prompt_tokens": 192_107, "completion_tokens": 393,
                    "total_tokens": 192_500, "prompt_tokens_details":
                        {"cached_tokens": 4000, "cache_creation_tokens": 188_086}}
            }),
            json!({
                "id": "chatcmpl-4", "object": "chat.completion", "created": 7, "model": "m",
                "choices": [
                    {"index": 0, "finish_reason": "stop", "message": {"role": "assistant",
                        "content": "Madrid.", "refusal": null},
                        "logprobs": {"content": [
                            {"token": "Madrid", "logprob": -0.01, "bytes": [77, 97], "top_logprobs": []},
                            {"token": ".", "logprob": -0.2, "bytes": [46], "top_logprobs": []}],
                            "refusal": null}},
                    {"index": 1, "finish_reason": "length", "logprobs": null,
                        "message": {"role": "assistant", "content": "", "refusal": null}},
                    {"index": 2, "finish_reason": null, "logprobs": null,
                        "message": {"role": "assistant", "content": "Mad", "refusal": null}}],
                "usage": {"prompt_tokens": 30, "completion_tokens": 6, "total_tokens": 36}
            }),
        ];
        values
            .into_iter()
            .map(|v| serde_json::from_value(v).unwrap())
            .collect()
    }

    #[test]
    fn the_chunks_of_a_completion_add_up_to_it() {
        for completion in completions() {
            let chunks = completion.clone().into_chunks();
            assert_eq!(
                ChatCompletion::from_chunks(&chunks).as_ref(),
                Some(&completion)
            );
            assert_eq!(ChatCompletion::from_chunks(chunks), Some(completion));
        }
    }

    #[test]
    fn a_completion_cut_into_small_deltas_adds_up_to_itself() {
        for completion in completions() {
            let chunks = fragmented(completion.clone().into_chunks());
            assert_eq!(ChatCompletion::from_chunks(chunks), Some(completion));
        }
    }

    /// The same stream with each text and argument cut into pieces of three
    /// characters, one piece a chunk, the pieces of the tool calls taken in
    /// turn (as OpenAI interleaves parallel calls).
    fn fragmented(chunks: Vec<ChatChunk>) -> Vec<ChatChunk> {
        let mut out = Vec::new();
        for chunk in chunks {
            let Some(choice) = chunk.choices.first().cloned() else {
                out.push(chunk);
                continue;
            };
            let mut deltas = vec![Delta {
                role: choice.delta.role.clone(),
                ..Delta::default()
            }];
            for piece in pieces(choice.delta.content.as_deref()) {
                deltas.push(Delta {
                    content: Some(piece),
                    ..Delta::default()
                });
            }
            for piece in pieces(choice.delta.reasoning_content.as_deref()) {
                deltas.push(Delta {
                    reasoning_content: Some(piece),
                    ..Delta::default()
                });
            }
            for piece in pieces(choice.delta.refusal.as_deref()) {
                deltas.push(Delta {
                    refusal: Some(piece),
                    ..Delta::default()
                });
            }
            if let Some(calls) = &choice.delta.tool_calls {
                let heads = calls.iter().map(|call| ToolCallDelta {
                    function: call.function.as_ref().map(|f| FunctionDelta {
                        name: f.name.clone(),
                        arguments: None,
                    }),
                    ..call.clone()
                });
                deltas.push(Delta {
                    tool_calls: Some(heads.collect()),
                    ..Delta::default()
                });
                let arguments: Vec<Vec<String>> = calls
                    .iter()
                    .map(|call| pieces(call.function.as_ref().unwrap().arguments.as_deref()))
                    .collect();
                for turn in 0..arguments.iter().map(Vec::len).max().unwrap_or(0) {
                    for (call, pieces) in calls.iter().zip(&arguments) {
                        let Some(piece) = pieces.get(turn) else {
                            continue;
                        };
                        deltas.push(Delta {
                            tool_calls: Some(vec![ToolCallDelta {
                                index: call.index,
                                function: Some(FunctionDelta {
                                    name: None,
                                    arguments: Some(piece.clone()),
                                }),
                                ..ToolCallDelta::default()
                            }]),
                            ..Delta::default()
                        });
                    }
                }
            }
            for (n, delta) in deltas.into_iter().enumerate() {
                let part = ChunkChoice {
                    delta,
                    logprobs: if n == 0 {
                        choice.logprobs.clone()
                    } else {
                        None
                    },
                    ..choice.clone()
                };
                out.push(ChatChunk {
                    choices: vec![part],
                    ..chunk.clone()
                });
            }
        }
        out
    }

    /// `text` in pieces of three characters: none for `None`, one empty
    /// piece for `""`.
    fn pieces(text: Option<&str>) -> Vec<String> {
        let Some(text) = text else {
            return Vec::new();
        };
        let chars: Vec<char> = text.chars().collect();
        if chars.is_empty() {
            return vec![String::new()];
        }
        chars.chunks(3).map(|c| c.iter().collect()).collect()
    }

    #[test]
    fn deltas_add_up_by_choice_and_by_call() {
        let chunks: Vec<ChatChunk> = [
            json!({"choices": [{"index": 1, "delta": {"role": "assistant", "content": "B"},
                "logprobs": {"content": [{"token": "B"}], "refusal": null}}]}),
            json!({"choices": [{"index": 0, "delta": {"role": "assistant", "tool_calls": [
                {"index": 0, "id": "call_a", "type": "function",
                    "function": {"name": "f", "arguments": "{\"a\""}}]}}]}),
            // A server that repeats the id and name in every delta.
            json!({"choices": [{"index": 0, "delta": {"tool_calls": [
                {"index": 0, "id": "call_a", "type": "function",
                    "function": {"name": "f", "arguments": ":1}"}}]}}]}),
            json!({"choices": [{"index": 1, "delta": {"content": "ye"},
                "logprobs": {"content": [{"token": "ye"}], "refusal": null}}]}),
            json!({"choices": [{"index": 1, "delta": {}, "finish_reason": "stop"}]}),
            json!({"choices": [{"index": 0, "delta": {}, "finish_reason": "tool_calls"}],
                "usage": {"prompt_tokens": 1, "completion_tokens": 1, "total_tokens": 2}}),
            json!({"choices": [],
                "usage": {"prompt_tokens": 1, "completion_tokens": 3, "total_tokens": 4}}),
        ]
        .into_iter()
        .map(|mut chunk| {
            let head = json!({"id": "c", "object": "chat.completion.chunk", "created": 1,
                "model": "m", "system_fingerprint": "fp_1"});
            chunk
                .as_object_mut()
                .unwrap()
                .extend(head.as_object().unwrap().clone());
            serde_json::from_value(chunk).unwrap()
        })
        .collect();
        // Azure OpenAI's first chunk: no choice, no id, time or model.
        let azure: ChatChunk = serde_json::from_value(json!({
            "id": "", "object": "", "created": 0, "model": "", "choices": [],
            "prompt_filter_results": [{"prompt_index": 0, "content_filter_results": {}}]
        }))
        .unwrap();
        let completion = ChatCompletion::from_chunks([azure].into_iter().chain(chunks)).unwrap();
        assert_eq!(
            serde_json::to_value(completion).unwrap(),
            json!({
                "id": "c", "object": "chat.completion", "created": 1, "model": "m",
                "system_fingerprint": "fp_1",
                "choices": [
                    {"index": 0, "finish_reason": "tool_calls", "logprobs": null,
                        "message": {"role": "assistant", "content": null, "refusal": null,
                            "tool_calls": [{"id": "call_a", "type": "function",
                                "function": {"name": "f", "arguments": "{\"a\":1}"}}]}},
                    {"index": 1, "finish_reason": "stop",
                        "logprobs": {"content": [{"token": "B"}, {"token": "ye"}], "refusal": null},
                        "message": {"role": "assistant", "content": "Bye", "refusal": null}}],
                "usage": {"prompt_tokens": 1, "completion_tokens": 3, "total_tokens": 4}
            })
        );
    }

    #[test]
    fn chunks_without_a_choice_make_no_completion() {
        assert_eq!(ChatCompletion::from_chunks(Vec::<ChatChunk>::new()), None);
        let usage_only = ChatChunk {
            id: "c".to_owned(),
            object: "chat.completion.chunk".to_owned(),
            created: 1,
            model: "m".to_owned(),
            system_fingerprint: None,
            choices: Vec::new(),
            usage: Some(ChatUsage::new(1, 2)),
        };
        assert_eq!(ChatCompletion::from_chunks([usage_only]), None);
    }
}
