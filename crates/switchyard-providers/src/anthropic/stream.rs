//! An Anthropic Messages stream read as OpenAI chunks.

use super::error::fault_of;
use super::response::finish_reason;
use super::wire::{Block, BlockDelta, JSON_TOOL, StreamEvent, Usage};
use crate::openai::chat::{ChatChunk, ChunkChoice, Delta, FunctionDelta, ToolCallDelta};
use crate::sse::SseEvent;
use crate::translate::{Progress, StreamDecoder, StreamError};

/// Reads a Messages stream event by event into `chat.completion.chunk`s: the
/// role at `message_start`, text, reasoning and tool-call deltas as they
/// come, the finish reason at `message_delta`, and at `message_stop` a last
/// chunk with no choices and the whole usage.
#[derive(Debug)]
pub struct MessageStreamDecoder {
    created: u64,
    id: String,
    model: String,
    usage: Usage,
    /// The content blocks begun and not yet stopped, by Anthropic's index.
    open: Vec<(u32, Kind)>,
    /// Tool calls begun so far (the JSON answer's not counted).
    tool_calls: u32,
    /// `message_stop` came.
    stopped: bool,
}

/// What a content block is, for reading its deltas.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    /// The n-th tool call of the turn.
    Tool(u32),
    /// The `json_response` tool: its input is the answer's text.
    Json,
    /// Text and thinking (whose deltas say what they are), or a block the
    /// chunks do not carry.
    Other,
}

impl MessageStreamDecoder {
    /// A decoder stamping `created` on every chunk (Anthropic sends no time).
    pub fn new(created: u64) -> Self {
        Self {
            created,
            id: String::new(),
            model: String::new(),
            usage: Usage::default(),
            open: Vec::new(),
            tool_calls: 0,
            stopped: false,
        }
    }

    fn chunk(&self, delta: Delta, finish_reason: Option<String>) -> ChatChunk {
        ChatChunk {
            id: self.id.clone(),
            object: "chat.completion.chunk".to_owned(),
            created: self.created,
            model: self.model.clone(),
            system_fingerprint: None,
            choices: vec![ChunkChoice {
                index: 0,
                delta,
                finish_reason,
                logprobs: None,
            }],
            usage: None,
        }
    }

    fn kind(&self, index: u32) -> Kind {
        self.open
            .iter()
            .find(|(i, _)| *i == index)
            .map_or(Kind::Other, |(_, kind)| *kind)
    }

    /// Notes a block begun; the delta it makes, if any.
    fn start_block(&mut self, index: u32, block: Block) -> Option<Delta> {
        let (kind, delta) = match block {
            Block::Text { text } => (Kind::Other, text_delta(text)),
            Block::Thinking { thinking, .. } => (Kind::Other, reasoning_delta(thinking)),
            Block::ToolUse { name, .. } if name == JSON_TOOL => (Kind::Json, None),
            Block::ToolUse { id, name, .. } => {
                let n = self.tool_calls;
                self.tool_calls += 1;
                let call = ToolCallDelta {
                    index: n,
                    id: Some(id),
                    kind: Some("function".to_owned()),
                    function: Some(FunctionDelta {
                        name: Some(name),
                        arguments: Some(String::new()),
                    }),
                };
                (Kind::Tool(n), Some(tool_delta(call)))
            }
            _ => (Kind::Other, None),
        };
        self.open.retain(|(i, _)| *i != index);
        self.open.push((index, kind));
        delta
    }

    /// The delta a `content_block_delta` makes, if any.
    fn add_to_block(&self, index: u32, delta: BlockDelta) -> Option<Delta> {
        match (delta, self.kind(index)) {
            (BlockDelta::TextDelta { text }, _) => text_delta(text),
            (BlockDelta::ThinkingDelta { thinking }, _) => reasoning_delta(thinking),
            (BlockDelta::InputJsonDelta { partial_json }, Kind::Json) => text_delta(partial_json),
            (BlockDelta::InputJsonDelta { partial_json }, Kind::Tool(n)) => {
                (!partial_json.is_empty()).then(|| {
                    tool_delta(ToolCallDelta {
                        index: n,
                        function: Some(FunctionDelta {
                            name: None,
                            arguments: Some(partial_json),
                        }),
                        ..ToolCallDelta::default()
                    })
                })
            }
            _ => None,
        }
    }
}

fn text_delta(text: String) -> Option<Delta> {
    (!text.is_empty()).then(|| Delta {
        content: Some(text),
        ..Delta::default()
    })
}

fn reasoning_delta(thinking: String) -> Option<Delta> {
    (!thinking.is_empty()).then(|| Delta {
        reasoning_content: Some(thinking),
        ..Delta::default()
    })
}

fn tool_delta(call: ToolCallDelta) -> Delta {
    Delta {
        tool_calls: Some(vec![call]),
        ..Delta::default()
    }
}

impl StreamDecoder for MessageStreamDecoder {
    fn event(
        &mut self,
        event: SseEvent<'_>,
        out: &mut Vec<ChatChunk>,
    ) -> Result<Progress, StreamError> {
        let parsed: StreamEvent = serde_json::from_slice(event.data).map_err(|e| {
            StreamError::Malformed(format!("an Anthropic stream event is not valid: {e}"))
        })?;
        let delta = match parsed {
            StreamEvent::MessageStart { message } => {
                self.id = message.id;
                self.model = message.model;
                self.usage = message.usage;
                Some(Delta {
                    role: Some("assistant".to_owned()),
                    content: Some(String::new()),
                    ..Delta::default()
                })
            }
            StreamEvent::ContentBlockStart {
                index,
                content_block,
            } => self.start_block(index, content_block),
            StreamEvent::ContentBlockDelta { index, delta } => self.add_to_block(index, delta),
            StreamEvent::ContentBlockStop { index } => {
                self.open.retain(|(i, _)| *i != index);
                None
            }
            StreamEvent::MessageDelta { delta, usage } => {
                self.usage.update(&usage);
                if let Some(reason) = delta.stop_reason {
                    let reason = finish_reason(&reason, self.tool_calls > 0).to_owned();
                    out.push(self.chunk(Delta::default(), Some(reason)));
                }
                None
            }
            StreamEvent::MessageStop => {
                let mut last = self.chunk(Delta::default(), None);
                last.choices.clear();
                last.usage = Some(self.usage.to_chat());
                out.push(last);
                self.stopped = true;
                return Ok(Progress::Done);
            }
            StreamEvent::Error { error } => return Err(StreamError::Upstream(fault_of(error))),
            StreamEvent::Other => None,
        };
        if let Some(delta) = delta {
            out.push(self.chunk(delta, None));
        }
        Ok(Progress::More)
    }

    fn end(&mut self, _out: &mut Vec<ChatChunk>) -> Result<(), StreamError> {
        if self.stopped {
            Ok(())
        } else {
            Err(StreamError::Malformed(
                "the stream ended before message_stop".to_owned(),
            ))
        }
    }
}
