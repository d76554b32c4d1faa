//! A Gemini `GenerateContentResponse` read as an OpenAI chat completion, and
//! the pieces of it the stream decoder shares.

use serde_json::{Map, Value};

use super::types::{Content, GenerateContentResponse, UsageMetadata};
use crate::openai::chat::{
    ChatCompletion, ChatUsage, Choice, CompletionTokensDetails, FunctionCall, PromptTokensDetails,
    ResponseMessage, ToolCall,
};
use crate::translate::DecodeError;

/// Reads the body of `generateContent` as a `chat.completion` of `model` (the
/// name the client asked for, used when Gemini reports no `modelVersion`).
///
/// Each candidate becomes a choice; see the [module documentation](super) for
/// finish reasons, blocked prompts, tool call ids and usage.
pub fn decode_response(
    body: &[u8],
    model: &str,
    created: u64,
) -> Result<ChatCompletion, DecodeError> {
    let response: GenerateContentResponse = serde_json::from_slice(body)
        .map_err(|e| DecodeError(format!("not a Gemini GenerateContentResponse: {e}")))?;
    let mut calls = CallIds::default();
    let choices = if response.prompt_blocked() {
        vec![choice(
            0,
            Pieces::default(),
            Some(CONTENT_FILTER.to_owned()),
        )]
    } else {
        response
            .candidates
            .iter()
            .enumerate()
            .map(|(position, candidate)| {
                let pieces = Pieces::of(candidate.content.as_ref(), &mut calls);
                let finish =
                    finish_reason(candidate.finish_reason.as_deref(), !pieces.calls.is_empty());
                choice(candidate.index.unwrap_or(position as u32), pieces, finish)
            })
            .collect()
    };
    Ok(ChatCompletion {
        id: response_id(response.response_id.as_deref(), body),
        object: "chat.completion".to_owned(),
        created,
        model: response.model_version.unwrap_or_else(|| model.to_owned()),
        system_fingerprint: None,
        choices,
        usage: response.usage_metadata.as_ref().map(usage),
        extra: Map::new(),
    })
}

fn choice(index: u32, pieces: Pieces, finish_reason: Option<String>) -> Choice {
    Choice {
        index,
        message: ResponseMessage {
            role: "assistant".to_owned(),
            content: non_empty(pieces.text),
            refusal: None,
            tool_calls: (!pieces.calls.is_empty()).then_some(pieces.calls),
            reasoning_content: non_empty(pieces.thoughts),
            extra: Map::new(),
        },
        finish_reason,
        logprobs: None,
    }
}

fn non_empty(text: String) -> Option<String> {
    (!text.is_empty()).then_some(text)
}

/// The finish reason of content the provider's filters stopped.
pub(super) const CONTENT_FILTER: &str = "content_filter";

/// OpenAI's finish reason for Gemini's; `None` while a candidate is unfinished.
pub(super) fn finish_reason(reason: Option<&str>, has_calls: bool) -> Option<String> {
    let mapped = match reason? {
        "MAX_TOKENS" => "length",
        "SAFETY"
        | "RECITATION"
        | "BLOCKLIST"
        | "PROHIBITED_CONTENT"
        | "SPII"
        | "IMAGE_SAFETY"
        | "IMAGE_PROHIBITED_CONTENT"
        | "IMAGE_RECITATION" => CONTENT_FILTER,
        // STOP, and the reasons with no OpenAI match (OTHER, LANGUAGE,
        // MALFORMED_FUNCTION_CALL, FINISH_REASON_UNSPECIFIED, newer ones): the
        // model stopped, with whatever content it sent.
        _ if has_calls => "tool_calls",
        _ => "stop",
    };
    Some(mapped.to_owned())
}

/// Gemini's usage in OpenAI's terms.
pub(super) fn usage(meta: &UsageMetadata) -> ChatUsage {
    let prompt_tokens = meta
        .prompt_token_count
        .saturating_add(meta.tool_use_prompt_token_count);
    let completion_tokens = meta
        .candidates_token_count
        .saturating_add(meta.thoughts_token_count);
    ChatUsage {
        prompt_tokens,
        completion_tokens,
        total_tokens: meta
            .total_token_count
            .unwrap_or(prompt_tokens.saturating_add(completion_tokens)),
        prompt_tokens_details: (meta.cached_content_token_count > 0).then_some(
            PromptTokensDetails {
                cached_tokens: meta.cached_content_token_count,
                cache_creation_tokens: 0,
            },
        ),
        completion_tokens_details: (meta.thoughts_token_count > 0).then_some(
            CompletionTokensDetails {
                reasoning_tokens: meta.thoughts_token_count,
            },
        ),
    }
}

/// `responseId`, or `chatcmpl-` and a hash of `bytes` when Gemini sent none.
pub(super) fn response_id(response_id: Option<&str>, bytes: &[u8]) -> String {
    match response_id {
        Some(id) => id.to_owned(),
        None => {
            // FNV-1a: the same body always gets the same id.
            let hash = bytes.iter().fold(0xcbf2_9ce4_8422_2325_u64, |hash, byte| {
                (hash ^ u64::from(*byte)).wrapping_mul(0x0100_0000_01b3)
            });
            format!("chatcmpl-{hash:016x}")
        }
    }
}

/// Between a tool call's id and the thought signature it carries.
pub(super) const SIGNATURE_MARK: &str = "__thought__";

/// Makes up the ids of the calls of one response (`call_0`, `call_1`, …)
/// when Gemini sends none, and appends the call's thought signature.
#[derive(Debug, Default)]
pub(super) struct CallIds(u32);

impl CallIds {
    fn next(&mut self, given: Option<&str>, signature: Option<&str>) -> String {
        let mut id = match given {
            Some(id) => id.to_owned(),
            None => format!("call_{}", self.0),
        };
        self.0 += 1;
        if let Some(signature) = signature {
            id.push_str(SIGNATURE_MARK);
            id.push_str(signature);
        }
        id
    }
}

/// What a candidate's parts say, sorted: answer text, reasoning text, calls.
#[derive(Debug, Default)]
pub(super) struct Pieces {
    pub text: String,
    pub thoughts: String,
    pub calls: Vec<ToolCall>,
}

impl Pieces {
    /// Text parts joined into `text` (or `thoughts` when marked `thought`),
    /// function calls with their arguments as compact JSON.
    pub fn of(content: Option<&Content>, ids: &mut CallIds) -> Self {
        let mut pieces = Self::default();
        for part in content.into_iter().flat_map(|c| &c.parts) {
            if let Some(text) = &part.text {
                if part.thought == Some(true) {
                    pieces.thoughts.push_str(text);
                } else {
                    pieces.text.push_str(text);
                }
            }
            if let Some(call) = &part.function_call {
                pieces.calls.push(ToolCall {
                    id: ids.next(call.id.as_deref(), part.thought_signature.as_deref()),
                    kind: "function".to_owned(),
                    function: FunctionCall {
                        name: call.name.clone(),
                        arguments: Value::Object(call.args.clone()).to_string(),
                    },
                });
            }
        }
        pieces
    }
}
