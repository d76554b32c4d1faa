//! One pass over a request body that is valid as it stands: every check of
//! `request` is made while the bytes are read, and what rewriting needs — where
//! `model` and `stream_options` sit — is kept as byte ranges. No field is copied
//! and no message is read twice.
//!
//! The pass answers only "valid, and here is where": a refusal, or a field the
//! client sent twice, makes it give up, and the field-by-field reading of
//! `request` then names the fault or settles the duplicate.

use std::borrow::Cow;
use std::fmt;
use std::ops::Range;

use serde::Deserialize;
use serde::de::{self, Deserializer, IgnoredAny, MapAccess, SeqAccess, Visitor};
use serde_json::value::RawValue;

use super::raw::Key;
use super::request::{Endpoint, Input, MessageProbe, StreamOptions};

/// A valid body as one pass found it.
#[derive(Debug)]
pub(crate) struct Scan<'a> {
    /// The public model.
    pub(crate) model: Cow<'a, str>,
    /// Where the `model` value (a JSON string) sits in the body.
    pub(crate) model_at: Range<usize>,
    /// Whether the client asked for a stream.
    pub(crate) stream: bool,
    /// Whether the client asked for the usage chunk itself.
    pub(crate) include_usage: bool,
    /// Where the `stream_options` value sits, when there is one.
    pub(crate) stream_options_at: Option<Range<usize>>,
    /// `max_completion_tokens`, else `max_tokens`, when the client set one.
    pub(crate) max_output_tokens: Option<u64>,
    /// Where the top-level `metadata` value sits, when there is one (of a
    /// repeated one, the last, which is the one a JSON parser keeps).
    pub(crate) metadata_at: Option<Range<usize>>,
}

impl Scan<'_> {
    /// The same, holding its own copy of the model's name.
    pub(crate) fn into_owned(self) -> Scan<'static> {
        Scan {
            model: Cow::Owned(self.model.into_owned()),
            ..self
        }
    }
}

/// Reads `body` for `endpoint`; `None` unless it is a valid request that names
/// each known field once.
pub(crate) fn scan(endpoint: Endpoint, body: &[u8]) -> Option<Scan<'_>> {
    // One check of the whole body spares the parser a UTF-8 check per string.
    let text = std::str::from_utf8(body).ok()?;
    let mut de = serde_json::Deserializer::from_str(text);
    let found = de.deserialize_map(Fields { endpoint }).ok()?;
    de.end().ok()?;
    let span = |raw: &RawValue| {
        // Borrowed raw values are slices of `body`.
        let start = (raw.get().as_ptr() as usize).checked_sub(body.as_ptr() as usize)?;
        let end = start + raw.get().len();
        (end <= body.len()).then_some(start..end)
    };
    let model = serde_json::from_str::<Key<'_>>(found.model.get()).ok()?.0;
    if model.is_empty() {
        return None;
    }
    let stream_options_at = match found.stream_options {
        Some(raw) => Some(span(raw)?),
        None => None,
    };
    let metadata_at = match found.metadata {
        Some(raw) => Some(span(raw)?),
        None => None,
    };
    Some(Scan {
        model,
        model_at: span(found.model)?,
        stream: found.stream,
        include_usage: found.include_usage,
        stream_options_at,
        max_output_tokens: found.max_completion_tokens.or(found.max_tokens),
        metadata_at,
    })
}

/// The fields this pass checks. Each has a bit, to notice one sent twice.
#[derive(Clone, Copy)]
enum Field {
    Model,
    Messages,
    Tools,
    Prompt,
    Input,
    EncodingFormat,
    Stream,
    StreamOptions,
    Temperature,
    TopP,
    PresencePenalty,
    FrequencyPenalty,
    N,
    MaxTokens,
    MaxCompletionTokens,
    Dimensions,
}

impl Field {
    /// The field `name` stands for at `endpoint`; `None` for one passed on unread.
    fn of(endpoint: Endpoint, name: &str) -> Option<Self> {
        let chat = endpoint == Endpoint::ChatCompletions;
        let streams = endpoint != Endpoint::Embeddings;
        Some(match name {
            "model" => Self::Model,
            "messages" if chat => Self::Messages,
            "tools" if chat => Self::Tools,
            "prompt" if endpoint == Endpoint::Completions => Self::Prompt,
            "input" if endpoint == Endpoint::Embeddings => Self::Input,
            "encoding_format" if endpoint == Endpoint::Embeddings => Self::EncodingFormat,
            "stream" if streams => Self::Stream,
            "stream_options" if streams => Self::StreamOptions,
            "temperature" => Self::Temperature,
            "top_p" => Self::TopP,
            "presence_penalty" => Self::PresencePenalty,
            "frequency_penalty" => Self::FrequencyPenalty,
            "n" => Self::N,
            "max_tokens" => Self::MaxTokens,
            "max_completion_tokens" => Self::MaxCompletionTokens,
            "dimensions" => Self::Dimensions,
            _ => return None,
        })
    }

    fn bit(self) -> u32 {
        1 << self as u32
    }
}

/// What the top-level object yields.
struct Found<'a> {
    model: &'a RawValue,
    stream: bool,
    include_usage: bool,
    stream_options: Option<&'a RawValue>,
    max_tokens: Option<u64>,
    max_completion_tokens: Option<u64>,
    metadata: Option<&'a RawValue>,
}

/// The top-level object's visitor.
struct Fields {
    endpoint: Endpoint,
}

/// The error of this pass: its text is never shown (the slow reading explains).
fn give_up<E: de::Error>() -> E {
    E::custom("not valid as it stands")
}

impl<'de> Visitor<'de> for Fields {
    type Value = Found<'de>;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a request object")
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Found<'de>, A::Error> {
        let mut seen = 0u32;
        let mut model = None;
        let mut stream = false;
        let mut include_usage = false;
        let mut stream_options = None;
        let (mut max_tokens, mut max_completion_tokens) = (None, None);
        let mut metadata = None;
        while let Some(key) = map.next_key::<Key<'de>>()? {
            let Some(field) = Field::of(self.endpoint, key.as_str()) else {
                if key.as_str() == "metadata" {
                    // Kept where it is, for its tags and task: passed on
                    // as sent, repeated or not, and read only when needed.
                    metadata = Some(map.next_value::<&'de RawValue>()?);
                } else {
                    map.next_value::<IgnoredAny>()?;
                }
                continue;
            };
            if seen & field.bit() != 0 {
                return Err(give_up());
            }
            seen |= field.bit();
            match field {
                Field::Model => model = Some(map.next_value::<&'de RawValue>()?),
                Field::Messages => map.next_value::<Messages>().map(drop)?,
                Field::Tools => map.next_value::<Option<AnyArray>>().map(drop)?,
                Field::Prompt => map.next_value::<Input>().map(drop)?,
                Field::Input => {
                    if map.next_value::<Input>()?.is_empty() {
                        return Err(give_up());
                    }
                }
                Field::EncodingFormat => {
                    let format = map.next_value::<Option<Key<'de>>>()?;
                    if !matches!(
                        format.as_ref().map(Key::as_str),
                        None | Some("float" | "base64")
                    ) {
                        return Err(give_up());
                    }
                }
                Field::Stream => stream = map.next_value::<Option<bool>>()?.unwrap_or(false),
                Field::StreamOptions => {
                    let raw = map.next_value::<&'de RawValue>()?;
                    let options = serde_json::from_str::<Option<StreamOptions>>(raw.get())
                        .map_err(|_| give_up::<A::Error>())?;
                    include_usage = options.and_then(|o| o.include_usage).unwrap_or(false);
                    stream_options = Some(raw);
                }
                Field::Temperature
                | Field::TopP
                | Field::PresencePenalty
                | Field::FrequencyPenalty => map.next_value::<Option<f64>>().map(drop)?,
                Field::N | Field::MaxTokens | Field::MaxCompletionTokens | Field::Dimensions => {
                    let value = map.next_value::<Option<u64>>()?;
                    if value == Some(0) {
                        return Err(give_up());
                    }
                    match field {
                        Field::MaxTokens => max_tokens = value,
                        Field::MaxCompletionTokens => max_completion_tokens = value,
                        _ => {}
                    }
                }
            }
        }
        let required = match self.endpoint {
            Endpoint::ChatCompletions => Field::Messages,
            Endpoint::Completions => Field::Prompt,
            Endpoint::Embeddings => Field::Input,
        };
        match model {
            Some(model) if seen & required.bit() != 0 => Ok(Found {
                model,
                stream,
                include_usage,
                stream_options,
                max_tokens,
                max_completion_tokens,
                metadata,
            }),
            _ => Err(give_up()),
        }
    }
}

/// A non-empty array of valid messages, checked one by one as they are read.
struct Messages;

impl<'de> Deserialize<'de> for Messages {
    fn deserialize<D: Deserializer<'de>>(de: D) -> Result<Self, D::Error> {
        struct MessagesVisitor;
        impl<'de> Visitor<'de> for MessagesVisitor {
            type Value = Messages;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("an array of message objects")
            }
            fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Messages, A::Error> {
                let mut count = 0;
                while let Some(message) = seq.next_element::<MessageProbe<'de>>()? {
                    message.validate(count).map_err(|_| give_up::<A::Error>())?;
                    count += 1;
                }
                if count == 0 {
                    return Err(give_up());
                }
                Ok(Messages)
            }
        }
        de.deserialize_seq(MessagesVisitor)
    }
}

/// An array of anything.
struct AnyArray;

impl<'de> Deserialize<'de> for AnyArray {
    fn deserialize<D: Deserializer<'de>>(de: D) -> Result<Self, D::Error> {
        struct AnyArrayVisitor;
        impl<'de> Visitor<'de> for AnyArrayVisitor {
            type Value = AnyArray;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("an array")
            }
            fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<AnyArray, A::Error> {
                while seq.next_element::<IgnoredAny>()?.is_some() {}
                Ok(AnyArray)
            }
        }
        de.deserialize_seq(AnyArrayVisitor)
    }
}
