//! `POST /v1/completions`, the legacy text completions: JSON and server-sent events.

use std::borrow::Cow;
use std::sync::Arc;

use axum::extract::State;
use axum::response::Response;
use bytes::Bytes;
use serde::{Deserialize, Serialize};

use crate::error::{MockError, parse_body, required_model};
use crate::reply::{Finish, Prompt, Usage, token_cap, unix_now};
use crate::sse::{self, EventStream};
use crate::text::{EchoText, count_words, pieces};
use crate::{Mock, json_response};

// === Request ===

/// The fields of a completion request the mock reads; the rest is ignored.
#[derive(Debug, Deserialize)]
struct CompletionRequest {
    model: Option<String>,
    prompt: Option<PromptInput>,
    stream: Option<bool>,
    stream_options: Option<StreamOptions>,
    max_tokens: Option<u64>,
}

/// `prompt`: a string, strings (the first is used), tokens, or token lists (the first).
#[derive(Debug, Deserialize)]
#[serde(untagged)]
enum PromptInput {
    Text(String),
    Texts(Vec<String>),
    Tokens(Vec<i64>),
    TokenLists(Vec<Vec<i64>>),
}

#[derive(Debug, Deserialize)]
struct StreamOptions {
    include_usage: Option<bool>,
}

impl CompletionRequest {
    fn prompt(&self) -> Result<Prompt<'_>, MockError> {
        let text: Cow<'_, str> = match &self.prompt {
            Some(PromptInput::Text(text)) => Cow::Borrowed(text),
            Some(PromptInput::Texts(texts)) => texts
                .first()
                .map_or(Cow::Borrowed(""), |t| Cow::Borrowed(t)),
            Some(PromptInput::Tokens(tokens)) => Cow::Owned(join(tokens)),
            Some(PromptInput::TokenLists(lists)) => {
                Cow::Owned(lists.first().map_or_else(String::new, |t| join(t)))
            }
            None => Cow::Borrowed(""),
        };
        if text.trim().is_empty() {
            return Err(MockError::invalid(
                "prompt must be a non-empty string",
                "prompt",
            ));
        }
        Ok(Prompt {
            tokens: count_words(&text),
            echo: text,
            tool: None,
            max_tokens: token_cap(self.max_tokens, "max_tokens")?,
            stop_sequences: &[],
        })
    }
}

/// Token ids as words.
fn join(tokens: &[i64]) -> String {
    tokens
        .iter()
        .map(i64::to_string)
        .collect::<Vec<_>>()
        .join(" ")
}

// === Response ===

/// OpenAI's `CreateCompletionResponse`; stream chunks have the same shape.
#[derive(Serialize)]
struct TextCompletion<'a> {
    id: &'a str,
    object: &'static str,
    created: u64,
    model: &'a str,
    choices: &'a [Choice<'a>],
    /// Always present on a whole response. In a stream: absent unless usage was asked
    /// for, then null except in the last chunk.
    #[serde(skip_serializing_if = "Option::is_none")]
    usage: Option<Option<&'a Usage>>,
}

#[derive(Serialize)]
struct Choice<'a> {
    text: &'a str,
    index: u32,
    logprobs: Option<()>,
    finish_reason: Option<&'static str>,
}

/// `POST /v1/completions`.
pub(crate) async fn handle(
    State(mock): State<Arc<Mock>>,
    body: Bytes,
) -> Result<Response, MockError> {
    let admission = mock.faults.admit().await?;
    let request: CompletionRequest = parse_body(&body)?;
    let model = required_model(request.model.as_deref())?;
    let prompt = request.prompt()?;
    let text = prompt.echo_text(mock.options.completion_tokens);
    let usage = Usage::new(&prompt, text.words);
    let finish = Finish::of(&text).openai();
    let id = format!("cmpl-mock-{}", admission.seq);
    let request_id = admission.request_id();
    let created = unix_now();
    if request.stream != Some(true) {
        return json_response(
            &TextCompletion {
                id: &id,
                object: "text_completion",
                created,
                model,
                choices: &[Choice {
                    text: &text.text,
                    index: 0,
                    logprobs: None,
                    finish_reason: Some(finish),
                }],
                usage: Some(Some(&usage)),
            },
            &request_id,
        );
    }
    let include_usage = request
        .stream_options
        .as_ref()
        .and_then(|o| o.include_usage)
        .unwrap_or(false);
    Ok(
        events(&id, created, model, &text, finish, &usage, include_usage)?.into_response(
            mock.pacing(),
            admission.fate,
            &request_id,
        ),
    )
}

fn events(
    id: &str,
    created: u64,
    model: &str,
    text: &EchoText,
    finish: &'static str,
    usage: &Usage,
    include_usage: bool,
) -> Result<EventStream, MockError> {
    let chunk = |choices: &[Choice<'_>], usage| {
        sse::data(&TextCompletion {
            id,
            object: "text_completion",
            created,
            model,
            choices,
            usage,
        })
    };
    let usage_field = include_usage.then_some(None);
    let choice = |text, finish_reason| Choice {
        text,
        index: 0,
        logprobs: None,
        finish_reason,
    };
    let mut events = pieces(&text.text)
        .into_iter()
        .map(|piece| chunk(&[choice(piece, None)], usage_field))
        .collect::<Result<Vec<_>, _>>()?;
    let content = 0..events.len();
    events.push(chunk(&[choice("", Some(finish))], usage_field)?);
    if include_usage {
        events.push(chunk(&[], Some(Some(usage)))?);
    }
    events.push(Bytes::from_static(sse::DONE));
    Ok(EventStream::openai(events, content))
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::panic)]
mod tests {
    use super::*;
    use serde_json::json;

    fn prompt_of(body: serde_json::Value) -> Result<(String, u64), MockError> {
        let request: CompletionRequest = serde_json::from_value(body).unwrap();
        request.prompt().map(|p| (p.echo.into_owned(), p.tokens))
    }

    #[test]
    fn prompt_forms() {
        assert_eq!(
            prompt_of(json!({"prompt": "a b"})).unwrap(),
            ("a b".into(), 2)
        );
        assert_eq!(
            prompt_of(json!({"prompt": ["a b c", "d"]})).unwrap(),
            ("a b c".into(), 3)
        );
        assert_eq!(
            prompt_of(json!({"prompt": [1, 2]})).unwrap(),
            ("1 2".into(), 2)
        );
        assert_eq!(
            prompt_of(json!({"prompt": [[5], [6, 7]]})).unwrap(),
            ("5".into(), 1)
        );
    }

    #[test]
    fn empty_prompts_are_refused() {
        for body in [
            json!({}),
            json!({"prompt": ""}),
            json!({"prompt": "  "}),
            json!({"prompt": []}),
            json!({"prompt": [[]]}),
        ] {
            assert!(
                matches!(
                    prompt_of(body.clone()),
                    Err(MockError::InvalidRequest {
                        param: Some("prompt"),
                        ..
                    })
                ),
                "{body}"
            );
        }
    }
}
