//! The OpenAI dialect as one side of a translation: its event stream read into
//! chunks (for a client of another dialect) and chunks written as its event
//! stream (for an OpenAI client of another provider).

use bytes::BytesMut;
use serde::Deserialize;

use super::chat::ChatChunk;
use super::types::ErrorObject;
use crate::sse::SseEvent;
use crate::translate::{Fault, Progress, StreamDecoder, StreamEncoder, StreamError};

/// Reads an OpenAI-compatible provider's event stream.
#[derive(Debug, Default)]
pub struct ChunkDecoder {
    /// A choice has carried a `finish_reason`.
    finished: bool,
}

#[derive(Deserialize)]
struct ErrorProbe {
    error: Option<ErrorObject>,
}

impl StreamDecoder for ChunkDecoder {
    fn event(
        &mut self,
        event: SseEvent<'_>,
        out: &mut Vec<ChatChunk>,
    ) -> Result<Progress, StreamError> {
        let data = event.data.trim_ascii();
        if data == b"[DONE]" {
            return Ok(Progress::Done);
        }
        if let Ok(ErrorProbe { error: Some(error) }) = serde_json::from_slice(data) {
            return Err(StreamError::Upstream(Fault {
                status: status_of(&error),
                error,
            }));
        }
        let chunk: ChatChunk = serde_json::from_slice(data)
            .map_err(|e| StreamError::Malformed(format!("a stream chunk is not valid: {e}")))?;
        self.finished |= chunk.choices.iter().any(|c| c.finish_reason.is_some());
        out.push(chunk);
        Ok(Progress::More)
    }

    fn end(&mut self, _out: &mut Vec<ChatChunk>) -> Result<(), StreamError> {
        // Some servers finish without `[DONE]`: a finish reason is enough.
        if self.finished {
            Ok(())
        } else {
            Err(StreamError::Malformed(
                "the stream ended before the response was finished".to_owned(),
            ))
        }
    }
}

/// The HTTP status an OpenAI error type stands for.
pub fn status_of(error: &ErrorObject) -> u16 {
    named_status(error).unwrap_or(500)
}

/// The HTTP status an error's type (or rate limit code) names, when it names
/// one.
pub(super) fn named_status(error: &ErrorObject) -> Option<u16> {
    match (error.kind.as_deref(), error.code.as_deref()) {
        (Some("rate_limit_error" | "rate_limit_exceeded"), _)
        | (_, Some("rate_limit_exceeded")) => Some(429),
        (Some("invalid_request_error"), _) => Some(400),
        (Some("authentication_error"), _) => Some(401),
        (Some("overloaded_error"), _) => Some(529),
        _ => None,
    }
}

/// Writes chunks as an OpenAI event stream: `data: <chunk>` per chunk,
/// `data: [DONE]` at the end, `data: {"error": …}` on failure.
#[derive(Debug)]
pub struct ChunkEncoder {
    include_usage: bool,
}

impl ChunkEncoder {
    /// An encoder for a client that did (`include_usage`) or did not ask for
    /// usage in the stream; usage a chunk carries is left out in the latter case.
    pub fn new(include_usage: bool) -> Self {
        Self { include_usage }
    }
}

impl StreamEncoder for ChunkEncoder {
    fn chunk(&mut self, chunk: &ChatChunk, out: &mut BytesMut) {
        if chunk.usage.is_some() && !self.include_usage {
            if chunk.choices.is_empty() {
                return;
            }
            let mut without = chunk.clone();
            without.usage = None;
            push_data(out, &without);
        } else {
            push_data(out, chunk);
        }
    }

    fn done(&mut self, out: &mut BytesMut) {
        out.extend_from_slice(b"data: [DONE]\n\n");
    }

    fn error(&mut self, fault: &Fault, out: &mut BytesMut) {
        push_data(
            out,
            &super::ErrorBody {
                error: fault.error.clone(),
            },
        );
    }
}

/// `data: <json>\n\n` (serde_json writes no newline, so one data line holds it).
fn push_data(out: &mut BytesMut, value: &impl serde::Serialize) {
    out.extend_from_slice(b"data: ");
    let mut writer = bytes::BufMut::writer(std::mem::take(out));
    // Serializing these types into memory cannot fail.
    let _ = serde_json::to_writer(&mut writer, value);
    *out = writer.into_inner();
    out.extend_from_slice(b"\n\n");
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use crate::openai::chat::{ChatUsage, ChunkChoice, Delta};

    fn chunk(content: Option<&str>, finish: Option<&str>, usage: Option<ChatUsage>) -> ChatChunk {
        ChatChunk {
            id: "c".to_owned(),
            object: "chat.completion.chunk".to_owned(),
            created: 1,
            model: "m".to_owned(),
            system_fingerprint: None,
            choices: content
                .map(|text| ChunkChoice {
                    index: 0,
                    delta: Delta {
                        content: Some(text.to_owned()),
                        ..Delta::default()
                    },
                    finish_reason: finish.map(str::to_owned),
                    logprobs: None,
                })
                .into_iter()
                .collect(),
            usage,
        }
    }

    #[test]
    fn decodes_chunks_errors_and_the_end() {
        let mut decoder = ChunkDecoder::default();
        let mut out = Vec::new();
        let event = |data: &'static str| SseEvent {
            event: None,
            data: data.as_bytes(),
        };
        let data = r#"{"id":"c","object":"chat.completion.chunk","created":1,"model":"m","choices":[{"index":0,"delta":{"content":"hi"},"finish_reason":null}]}"#;
        assert_eq!(decoder.event(event(data), &mut out), Ok(Progress::More));
        assert_eq!(out, vec![chunk(Some("hi"), None, None)]);
        assert!(decoder.end(&mut out).is_err(), "no finish reason yet");
        let error = decoder
            .event(
                event(r#"{"error":{"message":"slow down","type":"rate_limit_error"}}"#),
                &mut out,
            )
            .unwrap_err();
        assert!(matches!(
            error,
            StreamError::Upstream(Fault { status: 429, .. })
        ));
        assert!(matches!(
            decoder.event(event("{oops"), &mut out),
            Err(StreamError::Malformed(_))
        ));
        assert_eq!(decoder.event(event("[DONE]"), &mut out), Ok(Progress::Done));
    }

    #[test]
    fn leaves_usage_out_unless_asked() {
        let usage = Some(ChatUsage::new(3, 2));
        let mut out = BytesMut::new();
        ChunkEncoder::new(false).chunk(&chunk(None, None, usage), &mut out);
        assert!(out.is_empty(), "a usage-only chunk is not sent");
        ChunkEncoder::new(false).chunk(&chunk(Some("x"), Some("stop"), usage), &mut out);
        assert!(!String::from_utf8_lossy(&out).contains("usage"));
        out.clear();
        ChunkEncoder::new(true).chunk(&chunk(None, None, usage), &mut out);
        assert!(out.starts_with(b"data: {") && out.ends_with(b"\"total_tokens\":5}}\n\n"));
    }
}
