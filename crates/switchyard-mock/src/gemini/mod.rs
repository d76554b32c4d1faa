//! Gemini's `POST /v1beta/models/{model}:{method}`: `generateContent`,
//! `streamGenerateContent` (`?alt=sse` for server-sent events, else a JSON array),
//! `embedContent` and `batchEmbedContents`. The API key (`x-goog-api-key` or `?key=`) is
//! accepted and not checked.
//!
//! The answer follows the last `user` content: its text parts are echoed, or a call of
//! the first declared function is made (`toolConfig` mode `NONE` makes none,
//! `allowedFunctionNames` narrows the choice); after a `functionResponse` the response is
//! echoed as text (the first string among `response.output`, `response.content` and
//! `response.result`, else the response's compact JSON). `finishReason` is `STOP`, also
//! for a function call and when a stop sequence cut the text, or `MAX_TOKENS` when
//! `maxOutputTokens` cut it.

mod embeddings;
mod request;
mod response;
mod stream;

use std::sync::Arc;

use axum::extract::{Path, RawQuery, State};
use axum::response::Response;
use bytes::Bytes;
use serde_json::value::RawValue;

use crate::error::{Dialect, MockError, parse_body};
use crate::faults::Admission;
use crate::reply::Reply;
use crate::{Mock, json_response};
use request::GenerateContentRequest;
use response::{GenerateContentResponse, Head, PartOut, UsageMetadata};
use stream::Framing;

/// The methods the mock serves.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Method {
    Generate,
    Stream,
    Embed,
    BatchEmbed,
}

/// `POST /v1beta/models/{model}:{method}`; failures in Google's error shape.
pub(crate) async fn handle(
    State(mock): State<Arc<Mock>>,
    Path(action): Path<String>,
    RawQuery(query): RawQuery,
    body: Bytes,
) -> Response {
    answer(&mock, &action, query.as_deref(), &body)
        .await
        .unwrap_or_else(|error| error.render(Dialect::Gemini))
}

async fn answer(
    mock: &Mock,
    action: &str,
    query: Option<&str>,
    body: &[u8],
) -> Result<Response, MockError> {
    let method = action.rsplit_once(':').and_then(|(model, method)| {
        let method = match method {
            "generateContent" => Method::Generate,
            "streamGenerateContent" => Method::Stream,
            "embedContent" => Method::Embed,
            "batchEmbedContents" => Method::BatchEmbed,
            _ => return None,
        };
        (!model.is_empty()).then_some((model, method))
    });
    let Some((model, method)) = method else {
        return Err(MockError::NotFound {
            method: "POST".to_owned(),
            path: format!("/v1beta/models/{action}"),
        });
    };
    let admission = mock.faults.admit().await?;
    match method {
        Method::Embed => json_response(
            &embeddings::embed_content(&parse_body(body)?, model)?,
            &admission.request_id(),
        ),
        Method::BatchEmbed => json_response(
            &embeddings::batch_embed_contents(&parse_body(body)?, model)?,
            &admission.request_id(),
        ),
        Method::Generate => generate(mock, admission, model, body, None),
        Method::Stream => {
            let sse = query.is_some_and(|q| q.split('&').any(|pair| pair == "alt=sse"));
            let framing = if sse { Framing::Sse } else { Framing::Array };
            generate(mock, admission, model, body, Some(framing))
        }
    }
}

/// `generateContent`, or `streamGenerateContent` framed as `framing` says.
fn generate(
    mock: &Mock,
    admission: Admission,
    model: &str,
    body: &[u8],
    framing: Option<Framing>,
) -> Result<Response, MockError> {
    let request: GenerateContentRequest = parse_body(body)?;
    let (prompt, candidates) = request.prompt()?;
    let reply = Reply::new(&prompt, mock.options.completion_tokens);
    let candidates_tokens = reply.tokens() * u64::from(candidates);
    let usage = UsageMetadata {
        prompt_token_count: prompt.tokens,
        candidates_token_count: candidates_tokens,
        total_token_count: prompt.tokens + candidates_tokens,
    };
    let response_id = format!("mock-{}", admission.seq);
    let head = Head {
        model,
        response_id: &response_id,
        candidates,
    };
    let part = match &reply {
        Reply::Text(text) => PartOut::Text(&text.text),
        Reply::ToolCall(call) => PartOut::FunctionCall {
            name: &call.name,
            args: serde_json::from_str::<&RawValue>(&call.arguments)
                .map_err(MockError::internal)?,
        },
    };
    let finish = reply.finish().gemini();
    let request_id = admission.request_id();
    match framing {
        None => json_response(
            &GenerateContentResponse::new(&head, part, Some((finish, usage))),
            &request_id,
        ),
        Some(framing) => Ok(
            stream::events(&head, &stream::parts(part), finish, usage, framing)?.into_response(
                mock.pacing(),
                admission.fate,
                &request_id,
            ),
        ),
    }
}
