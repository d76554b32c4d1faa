//! OpenAI chunks written as an Anthropic Messages stream.

use bytes::{BufMut, BytesMut};
use serde::Serialize;
use serde_json::{Value, json};

use super::stop_reason;
use crate::anthropic::error::error_type;
use crate::anthropic::wire::Usage;
use crate::openai::chat::{ChatChunk, ChatUsage, ToolCallDelta};
use crate::translate::{Fault, StreamEncoder};

/// Writes chunks as Messages stream events, in Anthropic's order:
/// `message_start`; per block `content_block_start`, its
/// `content_block_delta`s and `content_block_stop`; then `message_delta`
/// (stop reason and usage, which OpenAI sends at the end in either order)
/// and `message_stop`. Text goes out with the chunk that brings it.
///
/// A tool call is one block: its arguments go out as `input_json_delta`
/// while it is the open block. Pieces of a call whose block was already
/// closed by a later block (a provider interleaving parallel calls) cannot
/// be written in Anthropic's format and are left out.
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
    finish_reason: Option<String>,
    usage: Option<ChatUsage>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Open {
    Text,
    Tool(u32),
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
            finish_reason: None,
            usage: None,
        }
    }

    fn start(&mut self, id: &str, out: &mut BytesMut) {
        if self.started {
            return;
        }
        self.started = true;
        let message = json!({
            "type": "message_start",
            "message": {
                "id": id,
                "type": "message",
                "role": "assistant",
                "model": self.model,
                "content": [],
                "stop_reason": null,
                "stop_sequence": null,
                "usage": {"input_tokens": 0, "output_tokens": 0},
            },
        });
        push_event(out, "message_start", &message);
    }

    /// Closes the open block, if any, and opens `block` with `content_block`.
    fn open_block(&mut self, block: Open, content_block: Value, out: &mut BytesMut) {
        self.close(out);
        let start = json!({"type": "content_block_start", "index": self.next, "content_block": content_block});
        push_event(out, "content_block_start", &start);
        self.open = Some(block);
    }

    fn close(&mut self, out: &mut BytesMut) {
        if self.open.take().is_some() {
            let stop = json!({"type": "content_block_stop", "index": self.next});
            push_event(out, "content_block_stop", &stop);
            self.next += 1;
        }
    }

    fn text(&mut self, text: &str, out: &mut BytesMut) {
        if text.is_empty() {
            return;
        }
        if self.open != Some(Open::Text) {
            self.open_block(Open::Text, json!({"type": "text", "text": ""}), out);
        }
        let delta = json!({"type": "content_block_delta", "index": self.next, "delta": {"type": "text_delta", "text": text}});
        push_event(out, "content_block_delta", &delta);
    }

    fn tool_call(&mut self, call: &ToolCallDelta, out: &mut BytesMut) {
        let function = call.function.as_ref();
        if self.open != Some(Open::Tool(call.index)) {
            if self.tools.contains(&call.index) {
                return;
            }
            self.tools.push(call.index);
            let id = call
                .id
                .clone()
                .unwrap_or_else(|| format!("toolu_{}", call.index));
            let name = function.and_then(|f| f.name.as_deref()).unwrap_or_default();
            let block = json!({"type": "tool_use", "id": id, "name": name, "input": {}});
            self.open_block(Open::Tool(call.index), block, out);
        }
        let arguments = function
            .and_then(|f| f.arguments.as_deref())
            .unwrap_or_default();
        if !arguments.is_empty() {
            let delta = json!({"type": "content_block_delta", "index": self.next, "delta": {"type": "input_json_delta", "partial_json": arguments}});
            push_event(out, "content_block_delta", &delta);
        }
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
        let usage = Usage::of_chat(&self.usage.unwrap_or_else(|| ChatUsage::new(0, 0)));
        let delta = json!({
            "type": "message_delta",
            "delta": {"stop_reason": stop_reason(self.finish_reason.as_deref()), "stop_sequence": null},
            "usage": usage,
        });
        push_event(out, "message_delta", &delta);
        push_event(out, "message_stop", &json!({"type": "message_stop"}));
    }

    fn error(&mut self, fault: &Fault, out: &mut BytesMut) {
        let error = json!({
            "type": "error",
            "error": {"type": error_type(fault.status), "message": fault.error.message},
        });
        push_event(out, "error", &error);
    }
}

/// `event: <name>\ndata: <json>\n\n`.
fn push_event(out: &mut BytesMut, name: &str, data: &impl Serialize) {
    out.extend_from_slice(b"event: ");
    out.extend_from_slice(name.as_bytes());
    out.extend_from_slice(b"\ndata: ");
    let mut writer = std::mem::take(out).writer();
    // Serializing JSON values into memory cannot fail.
    let _ = serde_json::to_writer(&mut writer, data);
    *out = writer.into_inner();
    out.extend_from_slice(b"\n\n");
}
