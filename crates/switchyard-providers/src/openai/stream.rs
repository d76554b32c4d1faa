//! Classifying the events of a streamed OpenAI response.

use std::sync::LazyLock;

use aho_corasick::packed::{self, Searcher};
use serde::Deserialize;
use serde_json::value::RawValue;

use super::raw::RawObject;
use super::types::{ErrorObject, Usage};

/// What one `data:` event of an OpenAI stream means to the gateway.
#[derive(Debug, Clone, PartialEq)]
pub enum StreamEvent {
    /// The `[DONE]` sentinel.
    Done,
    /// A chunk with choices; `finished` when one of them carries a `finish_reason`,
    /// `usage` when the upstream attached usage to it.
    Chunk {
        /// A choice in this chunk has a finish reason.
        finished: bool,
        /// Usage carried by this chunk, if any.
        usage: Option<Usage>,
    },
    /// The usage-only chunk (`choices: []`) sent when `include_usage` was asked for.
    UsageOnly(Usage),
    /// An error the upstream reported inside a 200 stream.
    Error(ErrorObject),
    /// Data that is neither JSON nor `[DONE]`: the stream is broken.
    Malformed,
}

#[derive(Deserialize)]
struct ChunkProbe<'a> {
    #[serde(default, borrow)]
    error: Option<&'a RawValue>,
    #[serde(default, borrow)]
    usage: Option<&'a RawValue>,
    #[serde(default)]
    choices: Option<Vec<ChoiceProbe>>,
}

#[derive(Deserialize)]
struct ChoiceProbe {
    #[serde(default)]
    finish_reason: Option<serde::de::IgnoredAny>,
}

/// Classifies the data of one event.
///
/// Most events are plain content chunks: when the data has no `error` key, no
/// non-null `finish_reason` and no `usage` object, it is not parsed at all. (In
/// JSON text, a quote inside a string is escaped, so these keys cannot be
/// mistaken for content; a false alarm only costs a full parse.) Such a chunk is
/// passed on as the upstream sent it, without validating all of its JSON.
pub fn classify_event(data: &[u8]) -> StreamEvent {
    let trimmed = data.trim_ascii();
    if trimmed == b"[DONE]" {
        return StreamEvent::Done;
    }
    if !(trimmed.starts_with(b"{") && trimmed.ends_with(b"}")) {
        return StreamEvent::Malformed;
    }
    if !worth_parsing(trimmed) {
        return StreamEvent::Chunk {
            finished: false,
            usage: None,
        };
    }
    classify_parsed(trimmed)
}

/// Whether `data` may hold an `error` key, a non-null `finish_reason` or a
/// `usage` object: one vectorised pass looks for the three keys at once.
fn worth_parsing(data: &[u8]) -> bool {
    let Some(keys) = &*KEYS else {
        return true;
    };
    keys.find_iter(data).any(|found| {
        let value = value_after(data, found.end());
        match (found.pattern().as_usize(), value) {
            (ERROR, _) => true,
            (FINISH_REASON, Some(value)) => !value.starts_with(b"null"),
            (USAGE, Some(value)) => value.starts_with(b"{"),
            _ => false,
        }
    })
}

/// The text of the value of the key that ends at `end` of `data`, from its
/// first byte to the end of `data`; `None` when no `:` follows the key.
fn value_after(data: &[u8], end: usize) -> Option<&[u8]> {
    data.get(end..)
        .unwrap_or_default()
        .trim_ascii_start()
        .strip_prefix(b":")
        .map(<[u8]>::trim_ascii_start)
}

/// The keys that make a chunk worth parsing, in the order of [`KEYS`].
const ERROR: usize = 0;
const FINISH_REASON: usize = 1;
const USAGE: usize = 2;

/// The searcher for those keys, built once (building one costs more than
/// searching a chunk with it): the SIMD "Teddy" multi-substring searcher, which
/// finds all three in one pass. Should the CPU lack the instructions for it,
/// every chunk is parsed.
static KEYS: LazyLock<Option<Searcher>> = LazyLock::new(|| {
    let mut builder = packed::Config::new().builder();
    for key in [&b"\"error\""[..], b"\"finish_reason\"", b"\"usage\""] {
        builder.add(key);
    }
    builder.build()
});

fn classify_parsed(data: &[u8]) -> StreamEvent {
    let Ok(probe) = serde_json::from_slice::<ChunkProbe<'_>>(data) else {
        return StreamEvent::Malformed;
    };
    if let Some(raw) = probe.error.filter(|raw| raw.get() != "null") {
        let error =
            serde_json::from_str::<ErrorObject>(raw.get()).unwrap_or_else(|_| ErrorObject {
                message: raw.get().to_owned(),
                kind: None,
                param: None,
                code: None,
            });
        return StreamEvent::Error(error);
    }
    // Usage is read best-effort: an odd usage object must not break a healthy stream.
    let usage = probe
        .usage
        .filter(|raw| raw.get() != "null")
        .and_then(|raw| serde_json::from_str::<Usage>(raw.get()).ok());
    match probe.choices {
        Some(choices) if !choices.is_empty() => StreamEvent::Chunk {
            finished: choices.iter().any(|c| c.finish_reason.is_some()),
            usage,
        },
        _ => match usage {
            Some(usage) => StreamEvent::UsageOnly(usage),
            None => StreamEvent::Chunk {
                finished: false,
                usage: None,
            },
        },
    }
}

/// What [`carries_content_parsed`] reads of a chunk: its deltas' fields, borrowed
/// as raw JSON text (nothing decoded, nothing allocated but the list).
#[derive(Deserialize)]
struct ContentProbe<'a> {
    #[serde(default, borrow)]
    choices: Vec<DeltaHolder<'a>>,
}

#[derive(Deserialize)]
struct DeltaHolder<'a> {
    #[serde(default, borrow)]
    delta: Option<DeltaProbe<'a>>,
}

#[derive(Deserialize)]
struct DeltaProbe<'a> {
    #[serde(default, borrow)]
    content: Option<&'a RawValue>,
    #[serde(default, borrow)]
    reasoning_content: Option<&'a RawValue>,
    #[serde(default, borrow)]
    refusal: Option<&'a RawValue>,
    #[serde(default, borrow)]
    tool_calls: Option<&'a RawValue>,
}

/// Whether a chunk's data carries text, reasoning, a refusal or a tool call:
/// what makes a stream's first content.
///
/// One vectorised pass looks for the four keys: a text key counts when its
/// value is a string that is not empty, `tool_calls` when its value is not
/// `null`. (In JSON text a quote inside a string is escaped, so no key is
/// found inside content; a list of log probabilities under a `content` or
/// `refusal` key is not a string.) A full parse of a chunk cost 5.8k
/// instructions, the pass a few hundred.
pub fn carries_content(data: &[u8]) -> bool {
    let Some(keys) = &*CONTENT_KEYS else {
        return carries_content_parsed(data);
    };
    keys.find_iter(data).any(|found| {
        match (found.pattern().as_usize(), value_after(data, found.end())) {
            (TOOL_CALLS, Some(value)) => !value.starts_with(b"null"),
            (_, Some(value)) => value.starts_with(b"\"") && !value.starts_with(b"\"\""),
            (_, None) => false,
        }
    })
}

/// The keys whose value is a delta's content, in the order of
/// [`CONTENT_KEYS`]; the last, whose value is a list, is [`TOOL_CALLS`].
const TOOL_CALLS: usize = 3;

/// The searcher for the keys of a delta's content (see [`KEYS`]).
static CONTENT_KEYS: LazyLock<Option<Searcher>> = LazyLock::new(|| {
    let mut builder = packed::Config::new().builder();
    for key in [
        &b"\"content\""[..],
        b"\"reasoning_content\"",
        b"\"refusal\"",
        b"\"tool_calls\"",
    ] {
        builder.add(key);
    }
    builder.build()
});

/// [`carries_content`] by a parse of the deltas, borrowed as raw JSON text,
/// where the CPU lacks the vector instructions of the pass. Data that is not
/// such a chunk counts as content, for the relay to judge.
fn carries_content_parsed(data: &[u8]) -> bool {
    let Ok(chunk) = serde_json::from_slice::<ContentProbe<'_>>(data) else {
        return true;
    };
    let text = |field: Option<&RawValue>| field.is_some_and(|raw| raw.get() != "\"\"");
    chunk
        .choices
        .iter()
        .filter_map(|choice| choice.delta.as_ref())
        .any(|delta| {
            text(delta.content)
                || text(delta.reasoning_content)
                || text(delta.refusal)
                || delta.tool_calls.is_some()
        })
}

/// The chunk without its `usage` field, every other byte as the upstream sent it
/// (used when the gateway asked for usage on the client's behalf).
pub fn without_usage(data: &[u8]) -> Option<Vec<u8>> {
    RawObject::parse(data)
        .ok()
        .map(|object| object.write(Some("usage")))
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use crate::openai::chat::ChatChunk;

    #[test]
    fn content_is_text_reasoning_a_refusal_or_a_tool_call() {
        for data in [
            r#"{"id":"c","choices":[{"index":0,"delta":{"content":"hi"}}]}"#,
            r#"{"choices":[{"delta":{"content":"\"quoted\" \u00e9"}}]}"#,
            r#"{"choices":[{"delta":{"role":"assistant","content":""}},{"delta":{"content":"b"}}]}"#,
            r#"{"choices":[{"delta":{"reasoning_content":"think"}}]}"#,
            r#"{"choices":[{"delta":{"refusal":"no"}}]}"#,
            r#"{"choices":[{"delta":{"tool_calls":[{"index":0,"id":"t"}]}}]}"#,
            r#"{ "choices": [ { "delta": { "content" : "spaced" } } ] }"#,
        ] {
            assert!(carries_content(data.as_bytes()), "{data}");
            assert!(carries_content_parsed(data.as_bytes()), "{data}");
        }
        assert!(carries_content_parsed(b"not json"));
        for data in [
            r#"{"id":"c","object":"chat.completion.chunk","choices":[{"index":0,"delta":{"role":"assistant","content":""},"logprobs":null,"finish_reason":null}]}"#,
            r#"{"choices":[{"delta":{"content":null,"refusal":null,"tool_calls":null}}]}"#,
            r#"{"choices":[{"index":0}]}"#,
            r#"{"choices":[],"usage":{"prompt_tokens":1}}"#,
            r#"{"object":"chat.completion.chunk"}"#,
            r#"{"choices":[{"delta":{"content":""},"logprobs":{"content":[],"refusal":null}}]}"#,
            r#"{"choices":[{"delta":{"role":"assistant"}}],"note":"\"content\":\"x\""}"#,
        ] {
            assert!(!carries_content(data.as_bytes()), "{data}");
            assert!(!carries_content_parsed(data.as_bytes()), "{data}");
        }
    }

    #[test]
    fn classifies_every_kind_of_event() {
        assert_eq!(classify_event(b"[DONE]"), StreamEvent::Done);
        assert_eq!(
            classify_event(br#"{"choices":[{"index":0,"delta":{"content":"hi"},"finish_reason":null}],"usage":null}"#),
            StreamEvent::Chunk { finished: false, usage: None }
        );
        assert_eq!(
            classify_event(br#"{"choices":[{"index":0,"delta":{},"finish_reason":"stop"}]}"#),
            StreamEvent::Chunk {
                finished: true,
                usage: None
            }
        );
        assert_eq!(
            classify_event(br#"{"choices":[],"usage":{"prompt_tokens":1,"completion_tokens":2,"total_tokens":3}}"#),
            StreamEvent::UsageOnly(Usage { prompt_tokens: 1, completion_tokens: 2, total_tokens: 3, ..Usage::default() })
        );
        match classify_event(
            br#"{"error":{"message":"overloaded","type":"server_error","code":529}}"#,
        ) {
            StreamEvent::Error(e) => {
                assert_eq!(e.message, "overloaded");
                assert_eq!(e.code.as_deref(), Some("529"));
            }
            other => panic!("expected an error, got {other:?}"),
        }
        assert_eq!(
            classify_event(b"{\"error\":\"boom\"}"),
            StreamEvent::Error(ErrorObject {
                message: "\"boom\"".into(),
                kind: None,
                param: None,
                code: None
            })
        );
        assert_eq!(classify_event(b"<html>"), StreamEvent::Malformed);
        // Spaced keys still take the careful path.
        assert_eq!(
            classify_event(br#"{ "choices": [{"delta": {}, "finish_reason" : "stop"}] }"#),
            StreamEvent::Chunk {
                finished: true,
                usage: None
            }
        );
        assert_eq!(
            classify_event(br#"{"choices": [], "usage" : {"prompt_tokens": 1, "completion_tokens": 1, "total_tokens": 2}}"#),
            StreamEvent::UsageOnly(Usage { prompt_tokens: 1, completion_tokens: 1, total_tokens: 2, ..Usage::default() })
        );
        // Keys quoted inside content are escaped: no false alarm, no parse needed.
        assert_eq!(
            classify_event(br#"{"choices":[{"delta":{"content":"say \"error\": \"usage\": {"},"finish_reason":null}]}"#),
            StreamEvent::Chunk { finished: false, usage: None }
        );
        assert_eq!(
            classify_event(br#"{"choices":[{"delta":{},"finish_reason":"stop"}],"usage":{"prompt_tokens":null,"completion_tokens":2.0}}"#),
            StreamEvent::Chunk { finished: true, usage: None }
        );
        assert_eq!(
            classify_event(br#"{"choices":[],"usage":null,"error":null}"#),
            StreamEvent::Chunk {
                finished: false,
                usage: None
            }
        );
    }
    #[test]
    fn the_usage_chunk_carries_cached_and_reasoning_tokens() {
        let expected = Usage {
            prompt_tokens: 1540,
            completion_tokens: 620,
            total_tokens: 2160,
            cached_tokens: 1408,
            cache_write_tokens: 0,
            reasoning_tokens: 448,
        };
        // OpenAI's last chunk, and Azure's (its keys in alphabetical order).
        let openai = br#"{"id":"chatcmpl-BOZ1q","object":"chat.completion.chunk","created":1745251500,"model":"o3-2025-04-16","service_tier":"default","system_fingerprint":null,"choices":[],"usage":{"prompt_tokens":1540,"completion_tokens":620,"total_tokens":2160,"prompt_tokens_details":{"cached_tokens":1408,"audio_tokens":0},"completion_tokens_details":{"reasoning_tokens":448,"audio_tokens":0,"accepted_prediction_tokens":0,"rejected_prediction_tokens":0}}}"#;
        let azure = br#"{"choices":[],"created":1745251500,"id":"chatcmpl-BOZ1q","model":"o3-2025-04-16","object":"chat.completion.chunk","system_fingerprint":null,"usage":{"completion_tokens":620,"completion_tokens_details":{"accepted_prediction_tokens":0,"audio_tokens":0,"reasoning_tokens":448,"rejected_prediction_tokens":0},"prompt_tokens":1540,"prompt_tokens_details":{"audio_tokens":0,"cached_tokens":1408},"total_tokens":2160}}"#;
        for data in [&openai[..], &azure[..]] {
            assert_eq!(classify_event(data), StreamEvent::UsageOnly(expected));
            // Decoded for a client of another dialect.
            let chunk: ChatChunk = serde_json::from_slice(data).unwrap();
            assert_eq!(chunk.usage.map(|u| u.totals()), Some(expected));
        }
        // Usage on the finishing chunk, as some compatible servers send it.
        let on_last = br#"{"id":"c","object":"chat.completion.chunk","created":1,"model":"m","choices":[{"index":0,"delta":{},"finish_reason":"stop"}],"usage":{"prompt_tokens":1540,"completion_tokens":620,"total_tokens":2160,"prompt_tokens_details":{"cached_tokens":1408},"completion_tokens_details":{"reasoning_tokens":448}}}"#;
        assert_eq!(
            classify_event(on_last),
            StreamEvent::Chunk {
                finished: true,
                usage: Some(expected)
            }
        );
    }
}
