//! What the mock answers, whatever the wire format: an echo padded with filler words, or
//! a call of the first offered tool, and the exact usage of both.

use std::borrow::Cow;

use serde::Serialize;
use sha2::{Digest, Sha256};

use crate::error::MockError;
use crate::text::{self, EchoText};

/// What a request asks of the mock, read from its wire format.
#[derive(Debug)]
pub(crate) struct Prompt<'a> {
    /// Words over all message texts: the prompt's token count.
    pub tokens: u64,
    /// The text to echo, or the `echo` argument of the tool call.
    pub echo: Cow<'a, str>,
    /// Call this tool instead of answering in text.
    pub tool: Option<&'a str>,
    /// The request's cap on completion tokens.
    pub max_tokens: Option<u64>,
    /// A text answer is cut before the first of these it contains.
    pub stop_sequences: &'a [String],
}

/// The answer to a [`Prompt`].
#[derive(Debug)]
pub(crate) enum Reply {
    /// A text answer.
    Text(EchoText),
    /// A call of the first tool offered.
    ToolCall(ToolCall),
}

/// A function call made by the mock.
#[derive(Debug)]
pub(crate) struct ToolCall {
    /// 8 hex digits of a hash of the call, from which each dialect makes its call id.
    pub tag: String,
    /// `call_` and the tag: OpenAI's call id.
    pub id: String,
    /// The function's name.
    pub name: String,
    /// `{"echo":"<text>"}` as a JSON string.
    pub arguments: String,
}

/// Why the answer ended.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Finish {
    /// The reply is complete.
    Stop,
    /// `max_tokens` cut the reply.
    Length,
    /// A stop sequence cut the reply.
    StopSequence,
    /// The reply is a tool call.
    ToolCalls,
}

impl Finish {
    /// OpenAI's `finish_reason`.
    pub(crate) fn openai(self) -> &'static str {
        match self {
            Self::Stop | Self::StopSequence => "stop",
            Self::Length => "length",
            Self::ToolCalls => "tool_calls",
        }
    }

    /// Anthropic's `stop_reason`.
    pub(crate) fn anthropic(self) -> &'static str {
        match self {
            Self::Stop => "end_turn",
            Self::Length => "max_tokens",
            Self::StopSequence => "stop_sequence",
            Self::ToolCalls => "tool_use",
        }
    }

    /// Gemini's `finishReason` (a function call ends with `STOP` too).
    pub(crate) fn gemini(self) -> &'static str {
        match self {
            Self::Stop | Self::StopSequence | Self::ToolCalls => "STOP",
            Self::Length => "MAX_TOKENS",
        }
    }
}

impl Reply {
    /// Answers `prompt`, padding a text reply to `completion_tokens` words.
    pub(crate) fn new(prompt: &Prompt<'_>, completion_tokens: u32) -> Self {
        match prompt.tool {
            Some(name) => Self::ToolCall(ToolCall::new(name, &prompt.echo)),
            None => Self::Text(prompt.echo_text(completion_tokens)),
        }
    }

    /// Tokens (words) the reply is made of: the text's, or the arguments string's.
    pub(crate) fn tokens(&self) -> u64 {
        match self {
            Self::Text(text) => text.words,
            Self::ToolCall(call) => text::count_words(&call.arguments),
        }
    }

    /// Why it ended.
    pub(crate) fn finish(&self) -> Finish {
        match self {
            Self::Text(text) => Finish::of(text),
            Self::ToolCall(_) => Finish::ToolCalls,
        }
    }
}

impl Prompt<'_> {
    /// The text answer: the echo padded to `completion_tokens` words, cut to `max_tokens`,
    /// then before the first stop sequence it contains.
    pub(crate) fn echo_text(&self, completion_tokens: u32) -> EchoText {
        let mut text = text::echo(&self.echo, u64::from(completion_tokens), self.max_tokens);
        text.stop_at(self.stop_sequences);
        text
    }
}

impl Finish {
    /// Why a text answer ended.
    pub(crate) fn of(text: &EchoText) -> Self {
        if text.stop_sequence.is_some() {
            Self::StopSequence
        } else if text.truncated {
            Self::Length
        } else {
            Self::Stop
        }
    }
}

impl ToolCall {
    fn new(name: &str, echo: &str) -> Self {
        let arguments = serde_json::json!({ "echo": echo }).to_string();
        let digest = Sha256::new()
            .chain_update(name)
            .chain_update([0])
            .chain_update(&arguments)
            .finalize();
        let tag = digest[..4].iter().fold(String::new(), |mut tag, byte| {
            tag.push_str(&format!("{byte:02x}"));
            tag
        });
        Self {
            id: format!("call_{tag}"),
            tag,
            name: name.to_owned(),
            arguments,
        }
    }
}

/// Token counts, serialized as OpenAI's `CompletionUsage` (details all zero).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
pub(crate) struct Usage {
    /// Words of the prompt.
    pub prompt_tokens: u64,
    /// Words of the reply.
    pub completion_tokens: u64,
    /// Their sum.
    pub total_tokens: u64,
    prompt_tokens_details: PromptTokensDetails,
    completion_tokens_details: CompletionTokensDetails,
}

/// Always zero: the mock neither caches nor hears.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
struct PromptTokensDetails {
    cached_tokens: u64,
    audio_tokens: u64,
}

/// Always zero: the mock neither reasons nor speaks.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
struct CompletionTokensDetails {
    reasoning_tokens: u64,
    audio_tokens: u64,
    accepted_prediction_tokens: u64,
    rejected_prediction_tokens: u64,
}

impl Usage {
    /// The usage of answering `prompt` with `completion_tokens` tokens.
    pub(crate) fn new(prompt: &Prompt<'_>, completion_tokens: u64) -> Self {
        Self {
            prompt_tokens: prompt.tokens,
            completion_tokens,
            total_tokens: prompt.tokens + completion_tokens,
            prompt_tokens_details: PromptTokensDetails {
                cached_tokens: 0,
                audio_tokens: 0,
            },
            completion_tokens_details: CompletionTokensDetails {
                reasoning_tokens: 0,
                audio_tokens: 0,
                accepted_prediction_tokens: 0,
                rejected_prediction_tokens: 0,
            },
        }
    }
}

/// A token cap must be a positive number when present.
pub(crate) fn token_cap(value: Option<u64>, param: &'static str) -> Result<Option<u64>, MockError> {
    match value {
        Some(0) => Err(MockError::invalid(
            format!("{param} must be at least 1"),
            param,
        )),
        other => Ok(other),
    }
}

/// Now, in Unix seconds: the `created` of every response.
pub(crate) fn unix_now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::panic)]
mod tests {
    use super::*;

    fn prompt<'a>(echo: &'a str, tool: Option<&'a str>, max_tokens: Option<u64>) -> Prompt<'a> {
        Prompt {
            tokens: 7,
            echo: Cow::Borrowed(echo),
            tool,
            max_tokens,
            stop_sequences: &[],
        }
    }

    #[test]
    fn text_reply_and_usage() {
        let p = prompt("hi there", None, None);
        let reply = Reply::new(&p, 4);
        let Reply::Text(text) = &reply else {
            panic!("{reply:?}")
        };
        assert_eq!(text.text, "echo: hi there lorem");
        assert_eq!(reply.finish(), Finish::Stop);
        let usage = Usage::new(&p, reply.tokens());
        assert_eq!(
            (
                usage.prompt_tokens,
                usage.completion_tokens,
                usage.total_tokens
            ),
            (7, 4, 11)
        );
    }

    #[test]
    fn max_tokens_means_length() {
        let reply = Reply::new(&prompt("hi", None, Some(1)), 16);
        assert_eq!(reply.tokens(), 1);
        assert_eq!(reply.finish(), Finish::Length);
        assert_eq!(reply.finish().openai(), "length");
        assert_eq!(reply.finish().anthropic(), "max_tokens");
        assert_eq!(reply.finish().gemini(), "MAX_TOKENS");
    }

    #[test]
    fn a_stop_sequence_wins_over_max_tokens_when_it_comes_first() {
        let stops = ["ipsum".to_owned(), "hi".to_owned()];
        let mut p = prompt("oh hi", None, Some(3));
        p.stop_sequences = &stops;
        let reply = Reply::new(&p, 16);
        let Reply::Text(text) = &reply else {
            panic!("{reply:?}")
        };
        assert_eq!(text.text, "echo: oh ");
        assert_eq!(text.stop_sequence.as_deref(), Some("hi"));
        assert_eq!(reply.tokens(), 2);
        assert_eq!(reply.finish(), Finish::StopSequence);
        assert_eq!(
            (
                reply.finish().openai(),
                reply.finish().anthropic(),
                reply.finish().gemini()
            ),
            ("stop", "stop_sequence", "STOP")
        );
        // "ipsum" lies beyond max_tokens: the cap ends the reply first.
        p.echo = Cow::Borrowed("oh");
        assert_eq!(Reply::new(&p, 16).finish(), Finish::Length);
    }

    #[test]
    fn tool_call_escapes_and_counts_its_arguments() {
        let p = prompt("say \"hi\"\nnow", Some("lookup"), Some(1));
        let reply = Reply::new(&p, 16);
        let Reply::ToolCall(call) = &reply else {
            panic!("{reply:?}")
        };
        assert_eq!(call.name, "lookup");
        assert_eq!(call.arguments, r#"{"echo":"say \"hi\"\nnow"}"#);
        let parsed: serde_json::Value = serde_json::from_str(&call.arguments).unwrap();
        assert_eq!(parsed["echo"], "say \"hi\"\nnow");
        assert!(call.id.starts_with("call_"));
        assert_eq!(call.id.len(), 13);
        assert_eq!(call.id[5..], call.tag);
        assert!(call.id[5..].chars().all(|c| c.is_ascii_hexdigit()));
        // Deterministic, and different for another call.
        let again = ToolCall::new("lookup", "say \"hi\"\nnow");
        assert_eq!(again.id, call.id);
        assert_ne!(ToolCall::new("lookup", "other").id, call.id);
        // `{"echo":"say`, `\"hi\"\nnow"}`: max_tokens does not cut a call.
        assert_eq!(reply.tokens(), 2);
        assert_eq!(reply.finish(), Finish::ToolCalls);
    }
}
