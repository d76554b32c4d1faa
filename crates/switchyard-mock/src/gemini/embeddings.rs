//! `:embedContent` and `:batchEmbedContents`: the same unit vectors as
//! `POST /v1/embeddings` for the model of the path (bags of words for a `-words` model),
//! so a text embeds alike through either dialect. A content's text is its text parts
//! joined by a space; `outputDimensionality` defaults to 8.

use serde::{Deserialize, Serialize};

use super::request::Content;
use crate::embeddings::{Item, dimensions, embed};
use crate::error::MockError;

/// `EmbedContentRequest`; `taskType` and `title` are accepted and ignored.
#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
pub(super) struct EmbedContentRequest {
    model: Option<String>,
    content: Option<Content>,
    output_dimensionality: Option<u32>,
}

/// `BatchEmbedContentsRequest`.
#[derive(Debug, Deserialize)]
pub(super) struct BatchEmbedContentsRequest {
    requests: Option<Vec<EmbedContentRequest>>,
}

/// `EmbedContentResponse`.
#[derive(Serialize)]
pub(super) struct EmbedContentResponse {
    embedding: ContentEmbedding,
}

/// `BatchEmbedContentsResponse`.
#[derive(Serialize)]
pub(super) struct BatchEmbedContentsResponse {
    embeddings: Vec<ContentEmbedding>,
}

#[derive(Serialize)]
struct ContentEmbedding {
    values: Vec<f32>,
}

impl EmbedContentRequest {
    /// The vector of the request's content. `model`, when given, must be `models/<model>`
    /// of the path (`required` in a batch, where the real API requires it).
    fn embedding(&self, model: &str, required: bool) -> Result<ContentEmbedding, MockError> {
        match self.model.as_deref() {
            None if required => {
                return Err(MockError::invalid(
                    "* BatchEmbedContentsRequest.requests[].model: model is required",
                    "model",
                ));
            }
            Some(name) if name.strip_prefix("models/") != Some(model) => {
                return Err(MockError::invalid(
                    format!("Model {name} in the request does not match models/{model} of the URL"),
                    "model",
                ));
            }
            _ => {}
        }
        let Some(content) = self.content.as_ref() else {
            return Err(MockError::invalid(
                "* EmbedContentRequest.content: content is required",
                "content",
            ));
        };
        let text = content.text();
        if text.is_empty() {
            return Err(MockError::invalid(
                "* EmbedContentRequest.content.parts: contents.parts must have text",
                "content",
            ));
        }
        let dimensions = dimensions(self.output_dimensionality, "outputDimensionality")?;
        Ok(ContentEmbedding {
            values: embed(model, Item::Text(&text), dimensions),
        })
    }
}

/// The answer to `:embedContent` for `model`.
pub(super) fn embed_content(
    request: &EmbedContentRequest,
    model: &str,
) -> Result<EmbedContentResponse, MockError> {
    Ok(EmbedContentResponse {
        embedding: request.embedding(model, false)?,
    })
}

/// The answer to `:batchEmbedContents` for `model`.
pub(super) fn batch_embed_contents(
    batch: &BatchEmbedContentsRequest,
    model: &str,
) -> Result<BatchEmbedContentsResponse, MockError> {
    let requests = batch.requests.as_deref().unwrap_or_default();
    if requests.is_empty() {
        return Err(MockError::invalid(
            "* BatchEmbedContentsRequest.requests: requests must not be empty",
            "requests",
        ));
    }
    let embeddings = requests
        .iter()
        .map(|request| request.embedding(model, true))
        .collect::<Result<_, _>>()?;
    Ok(BatchEmbedContentsResponse { embeddings })
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use std::sync::Arc;

    use axum::extract::State;
    use bytes::Bytes;
    use serde_json::{Value, json};

    use super::*;
    use crate::{Mock, MockOptions};

    /// A content embeds as its text does on `POST /v1/embeddings`, for the same model.
    #[tokio::test]
    async fn a_text_embeds_alike_in_both_dialects() {
        let mock = Arc::new(Mock::new(MockOptions::default()));
        for model in ["mock-embed", "text-embedding-words"] {
            let body = json!({"model": model, "input": "What is the capital of France?",
                "dimensions": 64});
            let response =
                crate::embeddings::handle(State(mock.clone()), Bytes::from(body.to_string()))
                    .await
                    .unwrap();
            let bytes = axum::body::to_bytes(response.into_body(), usize::MAX)
                .await
                .unwrap();
            let list: Value = serde_json::from_slice(&bytes).unwrap();
            let openai: Vec<f32> =
                serde_json::from_value(list["data"][0]["embedding"].clone()).unwrap();
            let request: EmbedContentRequest = serde_json::from_value(json!({
                "content": {"parts": [{"text": "What is the"}, {"text": "capital of France?"}]},
                "outputDimensionality": 64
            }))
            .unwrap();
            let gemini = embed_content(&request, model).unwrap().embedding.values;
            assert_eq!(openai.len(), gemini.len());
            assert!(
                openai
                    .iter()
                    .zip(&gemini)
                    .all(|(a, b)| (a - b).abs() < 1e-6),
                "{model}"
            );
        }
    }
}
