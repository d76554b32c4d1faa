//! OpenAI chunks written as an Anthropic Messages stream.

use bytes::{BufMut, BytesMut};
use serde::Serialize;
use serde_json::{Map, Value};

use super::stop_reason;
use crate::anthropic::error::error_type;
use crate::anthropic::wire::{ErrorDetail, Usage};
use crate::openai::chat::{ChatChunk, ChatUsage, ToolCallDelta};
use crate::translate::{Fault, StreamEncoder};

/// Writes chunks as Messages stream events, in Anthropic's order:
/// `message_start`; per block `content_block_start`, its
/// `content_block_delta`s and `content_block_stop`; then `message_delta`
/// (stop reason and usage, which OpenAI sends at the end in either order)
/// and `message_stop`. Text goes out with the chunk that brings it.
///
/// A tool call is one block: its arguments go out as `input_json_delta`
/// while it is the open block. A block cannot be reopened once closed, and
/// OpenAI providers may interleave the pieces of parallel calls; so the first
/// tool block stays open to the end, and what comes while it is open (another
/// call, more text) is kept and written as whole blocks after it, at the end:
/// nothing is lost, and a single call still streams as it comes.
#[derive(Debug)]
pub struct MessageStreamEncoder {
    model: String,
    started: bool,
    /// The index of the next block.
    next: u32,
    /// The open block.
    open: Option<Open>,
    /// The tool calls (OpenAI indices) that have had a block.
    tools: Vec<u32>,
    /// Blocks that came while a tool block was open, written at the end.
    later: Vec<Later>,
    finish_reason: Option<String>,
    usage: Option<ChatUsage>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Open {
    Text,
    Tool(u32),
}

/// A block kept for the end (see [`MessageStreamEncoder`]).
#[derive(Debug)]
enum Later {
    Text(String),
    Tool {
        index: u32,
        id: String,
        name: String,
        arguments: String,
    },
}

impl MessageStreamEncoder {
    /// An encoder naming `model` (the model the client asked for) in
    /// `message_start`.
    pub fn new(model: &str) -> Self {
        Self {
            model: model.to_owned(),
            started: false,
            next: 0,
            open: None,
            tools: Vec::new(),
            later: Vec::new(),
            finish_reason: None,
            usage: None,
        }
    }

    fn start(&mut self, id: &str, out: &mut BytesMut) {
        if self.started {
            return;
        }
        self.started = true;
        let message = StartMessage {
            id,
            kind: "message",
            role: "assistant",
            model: &self.model,
            content: [],
            stop_reason: None,
            stop_sequence: None,
            usage: Usage {
                input_tokens: Some(0),
                output_tokens: Some(0),
                ..Usage::default()
            },
        };
        push_event(out, &Event::MessageStart { message });
    }

    /// Closes the open block, if any, and opens `block` with `content_block`.
    fn open_block(&mut self, block: Open, content_block: StartBlock<'_>, out: &mut BytesMut) {
        self.close(out);
        let index = self.next;
        push_event(
            out,
            &Event::ContentBlockStart {
                index,
                content_block,
            },
        );
        self.open = Some(block);
    }

    fn close(&mut self, out: &mut BytesMut) {
        if self.open.take().is_some() {
            push_event(out, &Event::ContentBlockStop { index: self.next });
            self.next += 1;
        }
    }

    fn text(&mut self, text: &str, out: &mut BytesMut) {
        if text.is_empty() {
            return;
        }
        if matches!(self.open, Some(Open::Tool(_))) {
            match self.later.last_mut() {
                Some(Later::Text(kept)) => kept.push_str(text),
                _ => self.later.push(Later::Text(text.to_owned())),
            }
            return;
        }
        if self.open != Some(Open::Text) {
            self.open_block(Open::Text, StartBlock::Text { text: "" }, out);
        }
        let delta = BlockDelta::TextDelta { text };
        push_event(
            out,
            &Event::ContentBlockDelta {
                index: self.next,
                delta,
            },
        );
    }

    fn tool_call(&mut self, call: &ToolCallDelta, out: &mut BytesMut) {
        let function = call.function.as_ref();
        let arguments = function.and_then(|f| f.arguments.as_deref());
        if self.open != Some(Open::Tool(call.index))
            && (matches!(self.open, Some(Open::Tool(_))) || self.tools.contains(&call.index))
        {
            self.keep_call(call);
            return;
        }
        if self.open != Some(Open::Tool(call.index)) {
            self.tools.push(call.index);
            let id = call
                .id
                .clone()
                .unwrap_or_else(|| format!("toolu_{}", call.index));
            let name = function.and_then(|f| f.name.as_deref()).unwrap_or_default();
            let block = StartBlock::ToolUse {
                id: &id,
                name,
                input: Map::new(),
            };
            self.open_block(Open::Tool(call.index), block, out);
        }
        let partial_json = arguments.unwrap_or_default();
        if !partial_json.is_empty() {
            let delta = BlockDelta::InputJsonDelta { partial_json };
            push_event(
                out,
                &Event::ContentBlockDelta {
                    index: self.next,
                    delta,
                },
            );
        }
    }
}

impl MessageStreamEncoder {
    /// Keeps a piece of a call that cannot go out now, for the end.
    fn keep_call(&mut self, call: &ToolCallDelta) {
        let function = call.function.as_ref();
        let arguments = function
            .and_then(|f| f.arguments.as_deref())
            .unwrap_or_default();
        let kept = self.later.iter_mut().find_map(|later| match later {
            Later::Tool {
                index, arguments, ..
            } if *index == call.index => Some(arguments),
            _ => None,
        });
        match kept {
            Some(kept) => kept.push_str(arguments),
            None => self.later.push(Later::Tool {
                index: call.index,
                id: call
                    .id
                    .clone()
                    .unwrap_or_else(|| format!("toolu_{}", call.index)),
                name: function.and_then(|f| f.name.clone()).unwrap_or_default(),
                arguments: arguments.to_owned(),
            }),
        }
    }

    /// Writes the blocks kept for the end, each whole.
    fn write_later(&mut self, out: &mut BytesMut) {
        for later in std::mem::take(&mut self.later) {
            match later {
                Later::Text(text) => {
                    self.open_block(Open::Text, StartBlock::Text { text: "" }, out);
                    let delta = BlockDelta::TextDelta { text: &text };
                    push_event(
                        out,
                        &Event::ContentBlockDelta {
                            index: self.next,
                            delta,
                        },
                    );
                }
                Later::Tool {
                    index,
                    id,
                    name,
                    arguments,
                } => {
                    let block = StartBlock::ToolUse {
                        id: &id,
                        name: &name,
                        input: Map::new(),
                    };
                    self.open_block(Open::Tool(index), block, out);
                    if !arguments.is_empty() {
                        let delta = BlockDelta::InputJsonDelta {
                            partial_json: &arguments,
                        };
                        push_event(
                            out,
                            &Event::ContentBlockDelta {
                                index: self.next,
                                delta,
                            },
                        );
                    }
                }
            }
        }
        self.close(out);
    }
}

impl StreamEncoder for MessageStreamEncoder {
    fn chunk(&mut self, chunk: &ChatChunk, out: &mut BytesMut) {
        self.start(&chunk.id, out);
        if let Some(usage) = chunk.usage {
            self.usage = Some(usage);
        }
        // An Anthropic message has one answer: the first choice's.
        for choice in chunk.choices.iter().filter(|c| c.index == 0) {
            let delta = &choice.delta;
            self.text(delta.content.as_deref().unwrap_or_default(), out);
            self.text(delta.refusal.as_deref().unwrap_or_default(), out);
            for call in delta.tool_calls.as_deref().unwrap_or_default() {
                self.tool_call(call, out);
            }
            if let Some(reason) = &choice.finish_reason {
                self.finish_reason = Some(reason.clone());
            }
        }
    }

    fn done(&mut self, out: &mut BytesMut) {
        self.start("", out);
        self.close(out);
        self.write_later(out);
        let usage = Usage::of_chat(&self.usage.unwrap_or_else(|| ChatUsage::new(0, 0)));
        let delta = Stop {
            stop_reason: stop_reason(self.finish_reason.as_deref()),
            stop_sequence: None,
        };
        push_event(out, &Event::MessageDelta { delta, usage });
        push_event(out, &Event::MessageStop);
    }

    fn error(&mut self, fault: &Fault, out: &mut BytesMut) {
        let error = ErrorDetail {
            kind: error_type(fault.status).to_owned(),
            message: fault.error.message.clone(),
        };
        push_event(out, &Event::Error { error });
    }
}

/// A Messages stream event, `type` first as Anthropic writes it.
#[derive(Serialize)]
#[serde(tag = "type", rename_all = "snake_case")]
enum Event<'a> {
    MessageStart {
        message: StartMessage<'a>,
    },
    ContentBlockStart {
        index: u32,
        content_block: StartBlock<'a>,
    },
    ContentBlockDelta {
        index: u32,
        delta: BlockDelta<'a>,
    },
    ContentBlockStop {
        index: u32,
    },
    MessageDelta {
        delta: Stop,
        usage: Usage,
    },
    MessageStop,
    Error {
        error: ErrorDetail,
    },
}

impl Event<'_> {
    fn name(&self) -> &'static str {
        match self {
            Self::MessageStart { .. } => "message_start",
            Self::ContentBlockStart { .. } => "content_block_start",
            Self::ContentBlockDelta { .. } => "content_block_delta",
            Self::ContentBlockStop { .. } => "content_block_stop",
            Self::MessageDelta { .. } => "message_delta",
            Self::MessageStop => "message_stop",
            Self::Error { .. } => "error",
        }
    }
}

/// The message of `message_start`: no content yet, no usage known yet.
#[derive(Serialize)]
struct StartMessage<'a> {
    id: &'a str,
    #[serde(rename = "type")]
    kind: &'static str,
    role: &'static str,
    model: &'a str,
    content: [(); 0],
    stop_reason: Option<&'static str>,
    stop_sequence: Option<&'static str>,
    usage: Usage,
}

#[derive(Serialize)]
#[serde(tag = "type", rename_all = "snake_case")]
enum StartBlock<'a> {
    Text {
        text: &'a str,
    },
    ToolUse {
        id: &'a str,
        name: &'a str,
        input: Map<String, Value>,
    },
}

#[derive(Serialize)]
#[serde(tag = "type", rename_all = "snake_case")]
enum BlockDelta<'a> {
    TextDelta { text: &'a str },
    InputJsonDelta { partial_json: &'a str },
}

/// The `delta` of `message_delta`.
#[derive(Serialize)]
struct Stop {
    stop_reason: &'static str,
    stop_sequence: Option<&'static str>,
}

/// `event: <name>\ndata: <json>\n\n`.
fn push_event(out: &mut BytesMut, event: &Event<'_>) {
    out.extend_from_slice(b"event: ");
    out.extend_from_slice(event.name().as_bytes());
    out.extend_from_slice(b"\ndata: ");
    let mut writer = std::mem::take(out).writer();
    // Serializing these types into memory cannot fail.
    let _ = serde_json::to_writer(&mut writer, event);
    *out = writer.into_inner();
    out.extend_from_slice(b"\n\n");
}
