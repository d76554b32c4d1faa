//! Gemini's `GenerateContentResponse`: the whole answer, and each chunk of a stream.

use serde::Serialize;
use serde_json::value::RawValue;

/// Gemini's `GenerateContentResponse`.
#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
pub(super) struct GenerateContentResponse<'a> {
    pub candidates: Vec<Candidate<'a>>,
    /// On a whole answer and on a stream's last chunk only.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub usage_metadata: Option<UsageMetadata>,
    pub model_version: &'a str,
    pub response_id: &'a str,
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
pub(super) struct Candidate<'a> {
    content: CandidateContent<'a>,
    #[serde(skip_serializing_if = "Option::is_none")]
    finish_reason: Option<&'static str>,
    index: u32,
}

#[derive(Serialize)]
struct CandidateContent<'a> {
    parts: [PartOut<'a>; 1],
    role: &'static str,
}

/// A part of the answer.
#[derive(Clone, Copy, Serialize)]
#[serde(rename_all = "camelCase")]
pub(super) enum PartOut<'a> {
    /// `{"text": ...}`.
    Text(&'a str),
    /// `{"functionCall": {"name": ..., "args": {...}}}`.
    FunctionCall {
        /// The function's name.
        name: &'a str,
        /// Its arguments, a JSON object.
        args: &'a RawValue,
    },
}

/// Gemini's `UsageMetadata`.
#[derive(Clone, Copy, Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub(super) struct UsageMetadata {
    pub prompt_token_count: u64,
    pub candidates_token_count: u64,
    pub total_token_count: u64,
}

/// What every response to one request shares.
pub(super) struct Head<'a> {
    /// The model named in the path.
    pub model: &'a str,
    /// `mock-<seq>`.
    pub response_id: &'a str,
    /// How many (identical) candidates to send.
    pub candidates: u32,
}

impl<'a> GenerateContentResponse<'a> {
    /// `part` in every candidate; `finish` (why it ended, and the usage) ends the answer.
    pub(super) fn new(
        head: &Head<'a>,
        part: PartOut<'a>,
        finish: Option<(&'static str, UsageMetadata)>,
    ) -> Self {
        Self {
            candidates: (0..head.candidates)
                .map(|index| Candidate {
                    content: CandidateContent {
                        parts: [part],
                        role: "model",
                    },
                    finish_reason: finish.map(|(reason, _)| reason),
                    index,
                })
                .collect(),
            usage_metadata: finish.map(|(_, usage)| usage),
            model_version: head.model,
            response_id: head.response_id,
        }
    }
}
