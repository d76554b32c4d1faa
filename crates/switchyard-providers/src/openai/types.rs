//! Shapes shared by requests, responses and stream chunks.

use serde::{Deserialize, Serialize};

use super::chat::{ChatUsage, CompletionTokensDetails, PromptTokensDetails};

/// Token counts as a provider reported them, in OpenAI's terms.
///
/// The three totals are OpenAI's own. The other counts break them down, and
/// each is a part of a total, never added to it:
///
/// - `cached_tokens` and `cache_write_tokens` are part of `prompt_tokens`
///   (the rest of it is uncached input);
/// - `reasoning_tokens` is part of `completion_tokens`.
///
/// On the wire it reads and writes as OpenAI's (and Azure's) `usage` object
/// (see [`ChatUsage`]): the breakdown lives in `prompt_tokens_details` and
/// `completion_tokens_details`, a missing count reads as zero, and a
/// breakdown that is all zero is not written.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(from = "ChatUsage", into = "ChatUsage")]
pub struct Usage {
    /// Tokens in the prompt, cached and cache-written ones included.
    pub prompt_tokens: u64,
    /// Tokens in the completion, reasoning included (zero for embeddings).
    pub completion_tokens: u64,
    /// Sum of both.
    pub total_tokens: u64,
    /// Prompt tokens read from the provider's prompt cache: OpenAI's
    /// `prompt_tokens_details.cached_tokens`, Anthropic's
    /// `cache_read_input_tokens`, Gemini's `cachedContentTokenCount`.
    pub cached_tokens: u64,
    /// Prompt tokens written to the provider's prompt cache: Anthropic's
    /// `cache_creation_input_tokens` (`prompt_tokens_details.cache_creation_tokens`
    /// in this gateway's OpenAI answers); OpenAI and Gemini report none.
    pub cache_write_tokens: u64,
    /// Completion tokens spent reasoning: OpenAI's
    /// `completion_tokens_details.reasoning_tokens`, Gemini's
    /// `thoughtsTokenCount`; Anthropic counts thinking in its output tokens
    /// without telling it apart, so it is zero there.
    pub reasoning_tokens: u64,
}

impl From<ChatUsage> for Usage {
    fn from(usage: ChatUsage) -> Self {
        usage.totals()
    }
}

impl From<Usage> for ChatUsage {
    /// The details only when one of their counts is not zero.
    fn from(usage: Usage) -> Self {
        Self {
            prompt_tokens: usage.prompt_tokens,
            completion_tokens: usage.completion_tokens,
            total_tokens: usage.total_tokens,
            prompt_tokens_details: (usage.cached_tokens > 0 || usage.cache_write_tokens > 0)
                .then_some(PromptTokensDetails {
                    cached_tokens: usage.cached_tokens,
                    cache_creation_tokens: usage.cache_write_tokens,
                }),
            completion_tokens_details: (usage.reasoning_tokens > 0).then_some(
                CompletionTokensDetails {
                    reasoning_tokens: usage.reasoning_tokens,
                },
            ),
        }
    }
}

/// `{"error": {...}}`, the body of every OpenAI error response.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ErrorBody {
    /// The error itself.
    pub error: ErrorObject,
}

/// The inner object of an OpenAI error.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ErrorObject {
    /// Human-readable explanation.
    #[serde(default)]
    pub message: String,
    /// Error class, e.g. `invalid_request_error`.
    #[serde(rename = "type", default)]
    pub kind: Option<String>,
    /// The request parameter at fault, when there is one.
    #[serde(default)]
    pub param: Option<String>,
    /// A machine-readable code, e.g. `model_not_found`.
    #[serde(default, deserialize_with = "code_as_string")]
    pub code: Option<String>,
}

/// Some OpenAI-compatible servers send numeric codes; keep them as text.
fn code_as_string<'de, D: serde::Deserializer<'de>>(de: D) -> Result<Option<String>, D::Error> {
    Ok(match serde_json::Value::deserialize(de)? {
        serde_json::Value::Null => None,
        serde_json::Value::String(s) => Some(s),
        other => Some(other.to_string()),
    })
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    /// Totals with no breakdown.
    const PLAIN: Usage = Usage {
        prompt_tokens: 5,
        completion_tokens: 2,
        total_tokens: 7,
        cached_tokens: 0,
        cache_write_tokens: 0,
        reasoning_tokens: 0,
    };

    #[test]
    fn details_missing_or_null_read_as_zero() {
        for json in [
            r#"{"prompt_tokens":5,"completion_tokens":2,"total_tokens":7}"#,
            r#"{"prompt_tokens":5,"completion_tokens":2,"total_tokens":7,
                "prompt_tokens_details":null,"completion_tokens_details":null}"#,
            r#"{"prompt_tokens":5,"completion_tokens":2,"total_tokens":7,
                "prompt_tokens_details":{"cached_tokens":null,"audio_tokens":null},
                "completion_tokens_details":{"reasoning_tokens":null}}"#,
            r#"{"prompt_tokens":5,"completion_tokens":2,"total_tokens":7,
                "prompt_tokens_details":{},"completion_tokens_details":{}}"#,
        ] {
            assert_eq!(
                serde_json::from_str::<Usage>(json).unwrap(),
                PLAIN,
                "{json}"
            );
        }
    }

    #[test]
    fn writes_openai_usage_with_the_details_only_when_there_are_some() {
        assert_eq!(
            serde_json::to_value(PLAIN).unwrap(),
            json!({"prompt_tokens": 5, "completion_tokens": 2, "total_tokens": 7})
        );
        let detailed = Usage {
            prompt_tokens: 4512,
            completion_tokens: 410,
            total_tokens: 4922,
            cached_tokens: 3000,
            cache_write_tokens: 1500,
            reasoning_tokens: 64,
        };
        let written = serde_json::to_value(detailed).unwrap();
        assert_eq!(
            written,
            json!({
                "prompt_tokens": 4512,
                "completion_tokens": 410,
                "total_tokens": 4922,
                "prompt_tokens_details": {"cached_tokens": 3000, "cache_creation_tokens": 1500},
                "completion_tokens_details": {"reasoning_tokens": 64}
            })
        );
        assert_eq!(serde_json::from_value::<Usage>(written).unwrap(), detailed);
    }
}
