//! Pass-through: an Anthropic client of an Anthropic provider. The request
//! body travels as the client sent it (thinking blocks, `cache_control`,
//! fields this gateway does not know) with only `model` rewritten, and the
//! answer travels unchanged while usage and errors are read off it.

use std::borrow::Cow;
use std::fmt;
use std::ops::Range;

use serde::Deserialize;
use serde::de::{self, Deserializer, IgnoredAny, MapAccess, Visitor};
use serde_json::value::RawValue;

use super::error::fault_of;
use super::wire::{ErrorDetail, Usage};
use crate::openai::InvalidRequest;
use crate::openai::chat::ChatUsage;
use crate::sse::SseEvent;
use crate::translate::{Progress, StreamError};

/// What the gateway reads of a Messages request it passes through.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Peek {
    /// The public model name.
    pub model: String,
    /// Where the top-level `model` value (a JSON string, quotes included)
    /// sits in the body; of a repeated `model`, the last, which is the one a
    /// JSON parser keeps.
    pub model_at: Range<usize>,
    /// Whether the client asked for a stream.
    pub stream: bool,
    /// `max_tokens`, when it is a whole number (the translation checks it).
    pub max_tokens: Option<u64>,
    /// Where the top-level `metadata` value sits in the body, when there is
    /// one; of a repeated one, the last.
    pub metadata_at: Option<Range<usize>>,
}

/// Checks that `body` is a JSON object with a non-empty string `model` (and a
/// boolean `stream`, if any) and finds where `model` sits, in one pass that
/// parses no other value.
pub fn peek(body: &[u8]) -> Result<Peek, InvalidRequest> {
    let head: Head<'_> = serde_json::from_slice(body).map_err(|e| InvalidRequest {
        message: format!("The request body is not a valid JSON object: {e}"),
        param: None,
    })?;
    let raw = head
        .model
        .ok_or_else(|| InvalidRequest::new("model", "model: Field required"))?;
    let model = serde_json::from_str::<String>(raw.get())
        .map_err(|_| InvalidRequest::new("model", "model: Input should be a valid string"))?;
    if model.is_empty() {
        return Err(InvalidRequest::new(
            "model",
            "model: String should have at least 1 character",
        ));
    }
    let stream = match head.stream.map(RawValue::get) {
        None | Some("null") => false,
        Some(raw) => serde_json::from_str::<bool>(raw).map_err(|_| {
            InvalidRequest::new("stream", "stream: Input should be a valid boolean")
        })?,
    };
    // A value borrowed from the body is a slice of it.
    let span = |raw: &RawValue| {
        let start = (raw.get().as_ptr() as usize).saturating_sub(body.as_ptr() as usize);
        start..start + raw.get().len()
    };
    let max_tokens = head
        .max_tokens
        .and_then(|raw| serde_json::from_str::<u64>(raw.get()).ok());
    Ok(Peek {
        model,
        model_at: span(raw),
        stream,
        max_tokens,
        metadata_at: head.metadata.map(span),
    })
}

/// `body` with the `model` that `peek` found replaced by `upstream_model`.
pub fn with_model(body: &[u8], peek: &Peek, upstream_model: &str) -> Vec<u8> {
    let (before, rest) = body.split_at(peek.model_at.start.min(body.len()));
    let after = rest.get(peek.model_at.len()..).unwrap_or_default();
    let mut out = Vec::with_capacity(body.len() + upstream_model.len());
    out.extend_from_slice(before);
    // Serializing a string into memory cannot fail.
    let _ = serde_json::to_writer(&mut out, upstream_model);
    out.extend_from_slice(after);
    out
}

/// The top-level `model`, `stream`, `max_tokens` and `metadata` of a
/// request, other values skipped.
struct Head<'a> {
    model: Option<&'a RawValue>,
    stream: Option<&'a RawValue>,
    max_tokens: Option<&'a RawValue>,
    metadata: Option<&'a RawValue>,
}

enum Field {
    Model,
    Stream,
    MaxTokens,
    Metadata,
    Other,
}

impl<'de> Deserialize<'de> for Field {
    fn deserialize<D: Deserializer<'de>>(de: D) -> Result<Self, D::Error> {
        struct Name;
        impl Visitor<'_> for Name {
            type Value = Field;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a field name")
            }
            fn visit_str<E: de::Error>(self, name: &str) -> Result<Field, E> {
                Ok(match name {
                    "model" => Field::Model,
                    "stream" => Field::Stream,
                    "max_tokens" => Field::MaxTokens,
                    "metadata" => Field::Metadata,
                    _ => Field::Other,
                })
            }
        }
        de.deserialize_identifier(Name)
    }
}

impl<'de> Deserialize<'de> for Head<'de> {
    fn deserialize<D: Deserializer<'de>>(de: D) -> Result<Self, D::Error> {
        struct Fields;
        impl<'de> Visitor<'de> for Fields {
            type Value = Head<'de>;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a JSON object")
            }
            fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Head<'de>, A::Error> {
                let mut head = Head {
                    model: None,
                    stream: None,
                    max_tokens: None,
                    metadata: None,
                };
                while let Some(field) = map.next_key::<Field>()? {
                    match field {
                        Field::Model => head.model = Some(map.next_value()?),
                        Field::Stream => head.stream = Some(map.next_value()?),
                        Field::MaxTokens => head.max_tokens = Some(map.next_value()?),
                        Field::Metadata => head.metadata = Some(map.next_value()?),
                        Field::Other => {
                            map.next_value::<IgnoredAny>()?;
                        }
                    }
                }
                Ok(head)
            }
        }
        de.deserialize_map(Fields)
    }
}

/// The usage of a Messages response, in OpenAI's terms.
pub fn usage_of_message(body: &[u8]) -> Option<ChatUsage> {
    #[derive(Deserialize)]
    struct Message {
        usage: Usage,
    }
    serde_json::from_slice::<Message>(body)
        .ok()
        .map(|m| m.usage.to_chat())
}

/// Watches a Messages stream passing through unchanged: usage from
/// `message_start` and `message_delta`, the end at `message_stop`, an error
/// event as an error. Content events are not parsed, only checked to look
/// like a JSON object.
#[derive(Debug, Default)]
pub struct EventWatch {
    usage: Option<Usage>,
    stopped: bool,
}

/// The fields of an event the watch reads.
#[derive(Deserialize)]
struct Probe<'a> {
    #[serde(rename = "type", borrow)]
    kind: Cow<'a, str>,
    #[serde(default)]
    message: Option<UsageOf>,
    #[serde(default)]
    usage: Option<Usage>,
    #[serde(default)]
    error: Option<ErrorDetail>,
}

#[derive(Deserialize)]
struct UsageOf {
    #[serde(default)]
    usage: Usage,
}

impl EventWatch {
    /// A watch at the start of a stream.
    pub fn new() -> Self {
        Self::default()
    }

    /// Reads one event.
    pub fn event(&mut self, event: SseEvent<'_>) -> Result<Progress, StreamError> {
        if let Some("content_block_delta" | "content_block_start" | "content_block_stop" | "ping") =
            event.event
        {
            let data = event.data.trim_ascii();
            return if data.starts_with(b"{") && data.ends_with(b"}") {
                Ok(Progress::More)
            } else {
                Err(malformed(event.event))
            };
        }
        let probe: Probe<'_> =
            serde_json::from_slice(event.data).map_err(|_| malformed(event.event))?;
        match probe.kind.as_ref() {
            "message_start" => {
                self.usage = Some(probe.message.map(|m| m.usage).unwrap_or_default());
            }
            "message_delta" => {
                let usage = self.usage.get_or_insert_with(Usage::default);
                usage.update(&probe.usage.unwrap_or_default());
            }
            "message_stop" => {
                self.stopped = true;
                return Ok(Progress::Done);
            }
            "error" => {
                let error = probe.error.unwrap_or(ErrorDetail {
                    kind: "api_error".to_owned(),
                    message: "the provider reported an error".to_owned(),
                });
                return Err(StreamError::Upstream(fault_of(error)));
            }
            _ => {}
        }
        Ok(Progress::More)
    }

    /// The usage so far (complete after `message_stop`), once `message_start` came.
    pub fn usage(&self) -> Option<ChatUsage> {
        self.usage.map(Usage::to_chat)
    }

    /// Whether the stream, now ended, was complete.
    pub fn end(&self) -> Result<(), StreamError> {
        if self.stopped {
            Ok(())
        } else {
            Err(StreamError::Malformed(
                "the stream ended before message_stop".to_owned(),
            ))
        }
    }
}

fn malformed(event: Option<&str>) -> StreamError {
    StreamError::Malformed(format!(
        "an Anthropic stream event ({}) is not a JSON object",
        event.unwrap_or("unnamed")
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rewrite(body: &str, upstream: &str) -> String {
        let peek = peek(body.as_bytes()).unwrap();
        String::from_utf8(with_model(body.as_bytes(), &peek, upstream)).unwrap()
    }

    #[test]
    fn rewrites_only_the_model() {
        let body = r#"{"max_tokens":5,"model":"claude","messages":[{"role":"user","content":"model"}],"stream":true}"#;
        let peek = peek(body.as_bytes()).unwrap();
        assert_eq!((peek.model.as_str(), peek.stream), ("claude", true));
        assert_eq!(&body[peek.model_at.clone()], r#""claude""#);
        assert_eq!(peek.metadata_at, None);
        assert_eq!(
            rewrite(body, "claude-sonnet-4-5"),
            body.replace(r#""model":"claude""#, r#""model":"claude-sonnet-4-5""#)
        );
    }

    #[test]
    fn finds_the_last_top_level_metadata() {
        let body = r#"{"model":"c","metadata":{"tags":"a"},"messages":[{"role":"user","content":"x","metadata":1}],"metadata" : {"tags":"b"} }"#;
        let at = peek(body.as_bytes()).unwrap().metadata_at.unwrap();
        assert_eq!(&body[at], r#"{"tags":"b"}"#);
    }

    #[test]
    fn reads_escaped_names_and_writes_them_escaped() {
        let body = " {\n  \"model\" :\t\"a\\\"b\\u00e9\" ,\"stream\":null}\n";
        let peek = peek(body.as_bytes()).unwrap();
        assert_eq!((peek.model.as_str(), peek.stream), ("a\"bé", false));
        assert_eq!(
            rewrite(body, "x\"y\n"),
            " {\n  \"model\" :\t\"x\\\"y\\n\" ,\"stream\":null}\n"
        );
    }

    #[test]
    fn a_repeated_model_keeps_the_last() {
        let body = r#"{"model":"first","model":"second","messages":[]}"#;
        assert_eq!(peek(body.as_bytes()).unwrap().model, "second");
        assert_eq!(
            rewrite(body, "up"),
            r#"{"model":"first","model":"up","messages":[]}"#
        );
    }

    #[test]
    fn refuses_bodies_without_a_string_model() {
        for (body, param) in [
            (r#"{"messages":[]}"#, Some("model")),
            (r#"{"model":42}"#, Some("model")),
            (r#"{"model":""}"#, Some("model")),
            (r#"{"model":"m","stream":"yes"}"#, Some("stream")),
            (r#"["model"]"#, None),
            (r#"{"model":"m"} trailing"#, None),
            ("", None),
        ] {
            let error = peek(body.as_bytes()).unwrap_err();
            assert_eq!(error.param.as_deref(), param, "{body}");
        }
    }

    fn event<'a>(name: &'a str, data: &'a str) -> SseEvent<'a> {
        SseEvent {
            event: Some(name),
            data: data.as_bytes(),
        }
    }

    #[test]
    fn watches_usage_errors_and_the_end() {
        let mut watch = EventWatch::new();
        assert_eq!(watch.usage(), None);
        let start = r#"{"type":"message_start","message":{"id":"m","content":[],"usage":{"input_tokens":10,"cache_read_input_tokens":5,"output_tokens":1}}}"#;
        assert_eq!(
            watch.event(event("message_start", start)),
            Ok(Progress::More)
        );
        let delta =
            r#"{"type":"content_block_delta","index":0,"delta":{"type":"text_delta","text":"hi"}}"#;
        assert_eq!(
            watch.event(event("content_block_delta", delta)),
            Ok(Progress::More)
        );
        assert!(watch.end().is_err(), "cut before message_stop");
        let delta = r#"{"type":"message_delta","delta":{"stop_reason":"end_turn"},"usage":{"output_tokens":7}}"#;
        assert_eq!(
            watch.event(event("message_delta", delta)),
            Ok(Progress::More)
        );
        let stop = r#"{"type":"message_stop"}"#;
        assert_eq!(watch.event(event("message_stop", stop)), Ok(Progress::Done));
        assert_eq!(watch.end(), Ok(()));
        let usage = watch.usage().unwrap();
        assert_eq!((usage.prompt_tokens, usage.completion_tokens), (15, 7));
        assert_eq!(usage.prompt_tokens_details.unwrap().cached_tokens, 5);
    }

    #[test]
    fn an_error_event_or_garbage_ends_the_watch() {
        let mut watch = EventWatch::new();
        let error =
            r#"{"type":"error","error":{"type":"overloaded_error","message":"Overloaded"}}"#;
        match watch.event(event("error", error)) {
            Err(StreamError::Upstream(fault)) => {
                assert_eq!(fault.status, 529);
                assert_eq!(fault.error.message, "Overloaded");
            }
            other => panic!("{other:?}"),
        }
        for (name, data) in [("content_block_delta", "{oops"), ("message_delta", "{oops")] {
            assert!(matches!(
                watch.event(event(name, data)),
                Err(StreamError::Malformed(_))
            ));
        }
    }
}
