//! Shapes shared by requests, responses and stream chunks.

use serde::{Deserialize, Serialize};

/// Token counts as OpenAI reports them.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Usage {
    /// Tokens in the prompt.
    #[serde(default)]
    pub prompt_tokens: u64,
    /// Tokens in the completion (zero for embeddings).
    #[serde(default)]
    pub completion_tokens: u64,
    /// Sum of both.
    #[serde(default)]
    pub total_tokens: u64,
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
