//! OpenAI embeddings through Gemini's `models/{model}:batchEmbedContents`.

use base64::Engine as _;
use serde::{Deserialize, Serialize};

use super::request::{drop_field, encoded};
use super::types::{Content, Part};
use crate::openai::InvalidRequest;
use crate::openai::embedding::{
    Embedding, EmbeddingInput, EmbeddingRequest, EmbeddingResponse, EmbeddingUsage, EmbeddingVector,
};
use crate::translate::{DecodeError, Encoded};

#[derive(Serialize)]
struct BatchEmbedContentsRequest<'a> {
    requests: Vec<EmbedContentRequest<'a>>,
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct EmbedContentRequest<'a> {
    model: &'a str,
    content: Content,
    #[serde(skip_serializing_if = "Option::is_none")]
    output_dimensionality: Option<u32>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct BatchEmbedContentsResponse {
    #[serde(default)]
    embeddings: Vec<ContentEmbedding>,
    #[serde(default)]
    usage_metadata: Option<EmbeddingUsageMetadata>,
}

#[derive(Deserialize)]
struct ContentEmbedding {
    #[serde(default)]
    values: Vec<f32>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct EmbeddingUsageMetadata {
    #[serde(default)]
    prompt_token_count: u64,
    #[serde(default)]
    total_token_count: Option<u64>,
}

/// Writes `request` as a `batchEmbedContents` body for `upstream_model` (the
/// provider's name of the model, which every entry of the batch repeats):
/// one entry per input text, `dimensions` as `outputDimensionality`.
///
/// Token inputs are refused (Gemini embeds text only), as is an
/// `encoding_format` other than `float` or `base64` (which is applied to the
/// answer, see [`decode_embeddings`]); `user` and unknown fields are dropped.
pub fn encode_embeddings(
    request: &EmbeddingRequest,
    upstream_model: &str,
) -> Result<Encoded, InvalidRequest> {
    let texts: Vec<&str> = match &request.input {
        EmbeddingInput::Text(text) => vec![text.as_str()],
        EmbeddingInput::Texts(texts) if !texts.is_empty() => {
            texts.iter().map(String::as_str).collect()
        }
        EmbeddingInput::Texts(_) => {
            return Err(InvalidRequest::new("input", "input must not be empty"));
        }
        EmbeddingInput::Tokens(_) | EmbeddingInput::TokenLists(_) => {
            return Err(InvalidRequest::new(
                "input",
                "token inputs are not supported for Gemini models: send text",
            ));
        }
    };
    match request.encoding_format.as_deref() {
        None | Some("float" | "base64") => {}
        Some(other) => {
            return Err(InvalidRequest::new(
                "encoding_format",
                format!("encoding_format `{other}` is not one of float, base64"),
            ));
        }
    }
    let mut dropped = Vec::new();
    if request.user.is_some() {
        drop_field(&mut dropped, "user");
    }
    for key in request.extra.keys() {
        drop_field(&mut dropped, key.as_str());
    }
    let model = format!("models/{upstream_model}");
    let body = BatchEmbedContentsRequest {
        requests: texts
            .into_iter()
            .map(|text| EmbedContentRequest {
                model: &model,
                content: Content {
                    role: None,
                    parts: vec![Part::text(text)],
                },
                output_dimensionality: request.dimensions,
            })
            .collect(),
    };
    encoded(&body, dropped)
}

/// Reads a `batchEmbedContents` answer as an OpenAI embeddings list for
/// `model`, each vector as floats or, when `base64`, as base64 of its
/// little-endian `f32`s. Usage comes from `usageMetadata` when Gemini sends
/// it; the batch endpoint usually reports none, and then it is zero.
pub fn decode_embeddings(
    body: &[u8],
    model: &str,
    base64: bool,
) -> Result<EmbeddingResponse, DecodeError> {
    let response: BatchEmbedContentsResponse = serde_json::from_slice(body)
        .map_err(|e| DecodeError(format!("not a Gemini BatchEmbedContentsResponse: {e}")))?;
    let data = response
        .embeddings
        .into_iter()
        .enumerate()
        .map(|(index, embedding)| Embedding {
            object: "embedding".to_owned(),
            index: index as u32,
            embedding: if base64 {
                EmbeddingVector::Base64(encode_f32s(&embedding.values))
            } else {
                EmbeddingVector::Floats(embedding.values)
            },
        })
        .collect();
    let usage = response
        .usage_metadata
        .map(|meta| EmbeddingUsage {
            prompt_tokens: meta.prompt_token_count,
            total_tokens: meta.total_token_count.unwrap_or(meta.prompt_token_count),
        })
        .unwrap_or_default();
    Ok(EmbeddingResponse {
        object: "list".to_owned(),
        data,
        model: model.to_owned(),
        usage,
    })
}

fn encode_f32s(values: &[f32]) -> String {
    let bytes: Vec<u8> = values.iter().flat_map(|v| v.to_le_bytes()).collect();
    base64::engine::general_purpose::STANDARD.encode(bytes)
}
