//! A Gemini `streamGenerateContent?alt=sse` stream read as OpenAI chunks.

use super::error::{error_object, status_of};
use super::response::{CallIds, Pieces, finish_reason, response_id, usage};
use super::types::{GenerateContentResponse, UsageMetadata};
use crate::openai::chat::{ChatChunk, ChunkChoice, Delta, FunctionDelta, ToolCallDelta};
use crate::sse::SseEvent;
use crate::translate::{Fault, Progress, StreamDecoder, StreamError};

/// Reads a Gemini event stream: every event's data is a whole
/// `GenerateContentResponse` holding the next piece of each candidate.
///
/// Each event becomes at most one chunk: the first delta of a choice carries
/// the role, text becomes `content` (reasoning `reasoning_content`), each
/// function call one complete tool call delta, and a finish reason the
/// choice's `finish_reason`. Gemini sends no end marker: the stream is
/// complete when the body ends after a finish reason, and then the last usage
/// Gemini reported is sent as a `choices: []` chunk.
#[derive(Debug)]
pub struct GenerateStreamDecoder {
    /// The response id, from the first event.
    id: Option<String>,
    model: String,
    created: u64,
    /// What each choice has been sent so far.
    choices: Vec<ChoiceState>,
    ids: CallIds,
    finished: bool,
    usage: Option<UsageMetadata>,
}

#[derive(Debug)]
struct ChoiceState {
    index: u32,
    /// Tool calls sent so far.
    calls: u32,
}

impl GenerateStreamDecoder {
    /// A decoder for a stream answering with `model` (used when Gemini
    /// reports no `modelVersion`), its chunks stamped `created`.
    pub fn new(model: &str, created: u64) -> Self {
        Self {
            id: None,
            model: model.to_owned(),
            created,
            choices: Vec::new(),
            ids: CallIds::default(),
            finished: false,
            usage: None,
        }
    }

    fn chunk(&self, choices: Vec<ChunkChoice>) -> ChatChunk {
        ChatChunk {
            id: self.id.clone().unwrap_or_default(),
            object: "chat.completion.chunk".to_owned(),
            created: self.created,
            model: self.model.clone(),
            system_fingerprint: None,
            choices,
            usage: None,
        }
    }

    /// The delta of one candidate's piece, `None` when it adds nothing.
    fn choice(&mut self, index: u32, pieces: Pieces, reason: Option<&str>) -> Option<ChunkChoice> {
        let (first, state) = match self.choices.iter().position(|c| c.index == index) {
            Some(at) => (false, &mut self.choices[at]),
            None => {
                self.choices.push(ChoiceState { index, calls: 0 });
                let last = self.choices.len() - 1;
                (true, &mut self.choices[last])
            }
        };
        let tool_calls: Vec<ToolCallDelta> = pieces
            .calls
            .into_iter()
            .map(|call| {
                let delta = ToolCallDelta {
                    index: state.calls,
                    id: Some(call.id),
                    kind: Some(call.kind),
                    function: Some(FunctionDelta {
                        name: Some(call.function.name),
                        arguments: Some(call.function.arguments),
                    }),
                };
                state.calls += 1;
                delta
            })
            .collect();
        let finish_reason = finish_reason(reason, state.calls > 0);
        let delta = Delta {
            role: first.then(|| "assistant".to_owned()),
            content: (!pieces.text.is_empty()).then_some(pieces.text),
            reasoning_content: (!pieces.thoughts.is_empty()).then_some(pieces.thoughts),
            tool_calls: (!tool_calls.is_empty()).then_some(tool_calls),
            refusal: None,
        };
        if delta == Delta::default() && finish_reason.is_none() {
            return None;
        }
        self.finished |= finish_reason.is_some();
        Some(ChunkChoice {
            index,
            delta,
            finish_reason,
            logprobs: None,
        })
    }
}

impl StreamDecoder for GenerateStreamDecoder {
    fn event(
        &mut self,
        event: SseEvent<'_>,
        out: &mut Vec<ChatChunk>,
    ) -> Result<Progress, StreamError> {
        let data = event.data.trim_ascii();
        let response: GenerateContentResponse = serde_json::from_slice(data).map_err(|e| {
            StreamError::Malformed(format!("a Gemini stream event is not valid: {e}"))
        })?;
        if let Some(error) = &response.error {
            let status = status_of(error);
            return Err(StreamError::Upstream(Fault {
                status,
                error: error_object(status, error),
            }));
        }
        if self.id.is_none() {
            self.id = Some(response_id(response.response_id.as_deref(), data));
        }
        if let Some(version) = &response.model_version {
            version.clone_into(&mut self.model);
        }
        if response.usage_metadata.is_some() {
            self.usage = response.usage_metadata;
        }
        let choices: Vec<ChunkChoice> = if response.prompt_blocked() {
            // Read as a candidate stopped by the safety filters: `content_filter`.
            self.choice(0, Pieces::default(), Some("SAFETY"))
                .into_iter()
                .collect()
        } else {
            let mut choices = Vec::with_capacity(response.candidates.len());
            for (position, candidate) in response.candidates.iter().enumerate() {
                let pieces = Pieces::of(candidate.content.as_ref(), &mut self.ids);
                let index = candidate.index.unwrap_or(position as u32);
                choices.extend(self.choice(index, pieces, candidate.finish_reason.as_deref()));
            }
            choices
        };
        if !choices.is_empty() {
            out.push(self.chunk(choices));
        }
        Ok(Progress::More)
    }

    fn end(&mut self, out: &mut Vec<ChatChunk>) -> Result<(), StreamError> {
        if !self.finished {
            return Err(StreamError::Malformed(
                "the Gemini stream was cut before a finish reason".to_owned(),
            ));
        }
        if let Some(meta) = &self.usage {
            let mut chunk = self.chunk(Vec::new());
            chunk.usage = Some(usage(meta));
            out.push(chunk);
        }
        Ok(())
    }
}
