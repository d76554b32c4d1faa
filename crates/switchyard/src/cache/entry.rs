//! A cached answer, its encoding for Redis, and its replay in the shape a
//! hitting request asks for.

use bytes::{Buf, BufMut, Bytes, BytesMut};
use switchyard_providers::anthropic;
use switchyard_providers::openai::chat::{ChatChunk, ChatCompletion, ChatUsage};
use switchyard_providers::openai::{ChunkDecoder, ChunkEncoder, Usage};
use switchyard_providers::sse::SseParser;
use switchyard_providers::translate::{StreamDecoder, StreamEncoder};

use crate::error::Dialect;

/// What an entry's body is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Form {
    /// The JSON answer the client got, as it got it.
    Json,
    /// An OpenAI chat completion built from a streamed answer.
    Completion,
    /// A streamed answer, as the client got it (made a [`Form::Completion`]
    /// when first replayed).
    Events,
}

/// One cached answer.
#[derive(Debug, Clone, PartialEq)]
pub struct Entry {
    /// The body (see `form`).
    pub body: Bytes,
    /// What the body is.
    pub form: Form,
    /// The dialect of the client that asked.
    pub dialect: Dialect,
    /// The tokens the answer stands for.
    pub usage: Option<Usage>,
    /// What the answer cost upstream, in micro-USD (what a hit saves).
    pub cost_micros: i64,
    /// When it was stored, in Unix milliseconds.
    pub stored_at: u64,
}

/// How a hitting request wants the answer.
#[derive(Debug, Clone, Copy)]
pub struct Shape<'a> {
    /// As an event stream.
    pub stream: bool,
    /// With the usage chunk (an OpenAI stream that asked for it).
    pub include_usage: bool,
    /// The model name an Anthropic stream announces.
    pub model: &'a str,
}

/// A replayed answer: its body, and whether it is an event stream.
#[derive(Debug)]
pub struct Replay {
    /// The body.
    pub body: Bytes,
    /// `text/event-stream` rather than JSON.
    pub stream: bool,
}

/// The version of the encoding below.
const VERSION: u8 = 1;
/// Flags of the encoding.
const COMPLETION: u8 = 1;
const ANTHROPIC: u8 = 2;
const HAS_USAGE: u8 = 4;
const EVENTS: u8 = 8;
/// The fixed part of the encoding: version, flags, stored_at, usage (3), cost.
/// Of the usage only the three totals are kept: an entry read back from Redis
/// has no cached, cache-write or reasoning counts.
const HEADER: usize = 2 + 8 + 3 * 8 + 8;
/// What holds an entry in memory besides its body, about: the memory
/// tier's slot, table and deadline, the key, the `Arc`, this struct, and the
/// allocator's rounding. Counting body and header alone, a full 256 MiB tier
/// of 1 KB answers was measured at about 1.5 × that in resident memory; with
/// this added, the process stays under the bound (257 MB resident for the
/// 268 MB of a full tier, `switchyard-cache-miss` in BENCHMARKS.md).
const HELD: usize = 512;

impl Entry {
    /// The bytes it weighs in memory: its body, and what holds it (the
    /// cache's node, the key, two `Arc`s, this header).
    pub fn weight(&self) -> u32 {
        u32::try_from(self.body.len() + HEADER + HELD).unwrap_or(u32::MAX)
    }

    /// Encodes it for Redis.
    pub fn encode(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(HEADER + self.body.len());
        let mut flags = match self.form {
            Form::Json => 0,
            Form::Completion => COMPLETION,
            Form::Events => EVENTS,
        };
        if self.dialect == Dialect::Anthropic {
            flags |= ANTHROPIC;
        }
        if self.usage.is_some() {
            flags |= HAS_USAGE;
        }
        out.put_u8(VERSION);
        out.put_u8(flags);
        out.put_u64_le(self.stored_at);
        let usage = self.usage.unwrap_or_default();
        out.put_u64_le(usage.prompt_tokens);
        out.put_u64_le(usage.completion_tokens);
        out.put_u64_le(usage.total_tokens);
        out.put_i64_le(self.cost_micros);
        out.extend_from_slice(&self.body);
        out
    }

    /// Decodes what [`Entry::encode`] wrote; `None` for anything else.
    pub fn decode(mut bytes: Bytes) -> Option<Self> {
        if bytes.len() < HEADER || bytes[0] != VERSION {
            return None;
        }
        bytes.advance(1);
        let flags = bytes.get_u8();
        let stored_at = bytes.get_u64_le();
        let usage = Usage {
            prompt_tokens: bytes.get_u64_le(),
            completion_tokens: bytes.get_u64_le(),
            total_tokens: bytes.get_u64_le(),
            ..Usage::default()
        };
        let cost_micros = bytes.get_i64_le();
        Some(Self {
            body: bytes,
            form: if flags & COMPLETION != 0 {
                Form::Completion
            } else if flags & EVENTS != 0 {
                Form::Events
            } else {
                Form::Json
            },
            dialect: if flags & ANTHROPIC != 0 {
                Dialect::Anthropic
            } else {
                Dialect::OpenAi
            },
            usage: (flags & HAS_USAGE != 0).then_some(usage),
            cost_micros,
            stored_at,
        })
    }

    /// The answer in the shape `shape` asks for; `None` when the body cannot
    /// be read back (the entry is then treated as missing).
    pub fn replay(&self, shape: Shape<'_>) -> Option<Replay> {
        let settled;
        let entry = if self.form == Form::Events {
            settled = self.settled()?;
            &settled
        } else {
            self
        };
        entry.replay_settled(shape)
    }

    fn replay_settled(&self, shape: Shape<'_>) -> Option<Replay> {
        match (shape.stream, self.form, self.dialect) {
            (false, Form::Events, _) => None,
            (false, Form::Json, _) | (false, Form::Completion, Dialect::OpenAi) => Some(Replay {
                body: self.body.clone(),
                stream: false,
            }),
            (false, Form::Completion, Dialect::Anthropic) => Some(Replay {
                body: Bytes::from(anthropic::encode_response(&self.completion()?)),
                stream: false,
            }),
            (true, ..) => {
                let mut encoder: Box<dyn StreamEncoder> = match self.dialect {
                    Dialect::OpenAi => Box::new(ChunkEncoder::new(shape.include_usage)),
                    Dialect::Anthropic => {
                        Box::new(anthropic::MessageStreamEncoder::new(shape.model))
                    }
                };
                let mut out = BytesMut::with_capacity(2 * self.body.len() + 256);
                for chunk in self.completion()?.into_chunks() {
                    encoder.chunk(&chunk, &mut out);
                }
                encoder.done(&mut out);
                Some(Replay {
                    body: out.freeze(),
                    stream: true,
                })
            }
        }
    }

    /// A streamed answer ([`Form::Events`]) as the completion its chunks
    /// add up to, its usage the one recorded; `None` for another form, or
    /// events that cannot be read back.
    pub fn settled(&self) -> Option<Self> {
        if self.form != Form::Events {
            return None;
        }
        let mut decoder: Box<dyn StreamDecoder> = match self.dialect {
            Dialect::OpenAi => Box::new(ChunkDecoder::default()),
            Dialect::Anthropic => {
                Box::new(anthropic::MessageStreamDecoder::new(self.stored_at / 1000))
            }
        };
        let mut chunks: Vec<ChatChunk> = Vec::new();
        let mut failed = false;
        let mut parser = SseParser::new(self.body.len() + 1);
        let parsed = parser.feed(&self.body, |event| {
            failed |= decoder.event(event, &mut chunks).is_err();
            !failed
        });
        if parsed.is_err() || failed || decoder.end(&mut chunks).is_err() {
            return None;
        }
        let mut completion = ChatCompletion::from_chunks(chunks)?;
        if let Some(usage) = self.usage {
            completion.usage = Some(ChatUsage::new(usage.prompt_tokens, usage.completion_tokens));
        }
        Some(Self {
            body: Bytes::from(serde_json::to_vec(&completion).ok()?),
            form: Form::Completion,
            ..self.clone()
        })
    }

    /// The answer as an OpenAI chat completion.
    fn completion(&self) -> Option<ChatCompletion> {
        match (self.form, self.dialect) {
            (Form::Json, Dialect::Anthropic) => {
                anthropic::decode_response(&self.body, self.stored_at / 1000).ok()
            }
            _ => serde_json::from_slice(&self.body).ok(),
        }
    }
}
