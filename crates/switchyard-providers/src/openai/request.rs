//! Request bodies: parsed just enough to validate and rewrite them.

use std::borrow::Cow;
use std::fmt;
use std::ops::Range;

use serde::Deserialize;
use serde::de::{self, Deserializer, SeqAccess, Visitor};
use serde_json::value::RawValue;

use super::raw::RawObject;
use super::scan::{Scan, scan};

/// The OpenAI endpoints the gateway serves.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Endpoint {
    /// `POST /v1/chat/completions`
    ChatCompletions,
    /// `POST /v1/completions`
    Completions,
    /// `POST /v1/embeddings`
    Embeddings,
}

impl Endpoint {
    /// The path below the provider's base URL (`…/v1`).
    pub fn path(self) -> &'static str {
        match self {
            Self::ChatCompletions => "/chat/completions",
            Self::Completions => "/completions",
            Self::Embeddings => "/embeddings",
        }
    }

    /// Whether requests to this endpoint may ask for a stream.
    pub(super) fn streams(self) -> bool {
        !matches!(self, Self::Embeddings)
    }
}

/// A request the gateway refuses, with the parameter at fault.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{message}")]
pub struct InvalidRequest {
    /// What is wrong, for the client.
    pub message: String,
    /// The offending parameter, as OpenAI names it in `error.param`.
    pub param: Option<String>,
}

impl InvalidRequest {
    /// An error about `param`.
    pub fn new(param: &str, message: impl Into<String>) -> Self {
        Self {
            message: message.into(),
            param: Some(param.to_owned()),
        }
    }
}

/// A validated request body, kept as the client's bytes.
#[derive(Debug)]
pub struct RequestBody<'a> {
    /// The client's bytes; rewritten with each field once when it sent one twice.
    body: Cow<'a, [u8]>,
    model: Cow<'a, str>,
    /// Where the `model` value sits in `body`.
    model_at: Range<usize>,
    stream: bool,
    include_usage: bool,
    /// Where the `stream_options` value sits in `body`, when there is one.
    stream_options_at: Option<Range<usize>>,
    max_output_tokens: Option<u64>,
    /// Where the top-level `metadata` value sits in `body`, when there is one.
    metadata_at: Option<Range<usize>>,
}

impl<'a> RequestBody<'a> {
    /// Parses and validates `body` for `endpoint`. Fields the gateway does not
    /// read pass upstream as sent, a repeated one included; a repeated field it
    /// reads keeps its last value, once.
    pub fn parse(endpoint: Endpoint, body: &'a [u8]) -> Result<Self, InvalidRequest> {
        if let Some(found) = scan(endpoint, body) {
            return Ok(Self::new(Cow::Borrowed(body), found));
        }
        // Refused, or a field sent twice: read field by field, which names the fault,
        // or keeps the last value of a repeated field (as JSON parsers commonly do)
        // in a body rewritten with each field once.
        let fields = RawObject::parse(body).map_err(|e| InvalidRequest {
            message: format!("the request body is not a valid JSON object: {e}"),
            param: None,
        })?;
        Checks(&fields).validate(endpoint)?;
        let rewritten = fields.write(None);
        let found = scan(endpoint, &rewritten)
            .map(Scan::into_owned)
            .ok_or_else(|| InvalidRequest {
                message: "the request body could not be read".to_owned(),
                param: None,
            })?;
        Ok(Self::new(Cow::Owned(rewritten), found))
    }

    fn new(body: Cow<'a, [u8]>, found: Scan<'a>) -> Self {
        Self {
            body,
            model: found.model,
            model_at: found.model_at,
            stream: found.stream,
            include_usage: found.include_usage,
            stream_options_at: found.stream_options_at,
            max_output_tokens: found.max_output_tokens,
            metadata_at: found.metadata_at,
        }
    }

    /// The top-level `metadata` value as sent (JSON text), when there is one;
    /// of a repeated one, the last.
    pub fn metadata(&self) -> Option<&[u8]> {
        self.body.get(self.metadata_at.clone()?)
    }

    /// The client's cap on completion tokens (`max_completion_tokens`, else
    /// `max_tokens`), when it set one.
    pub fn max_output_tokens(&self) -> Option<u64> {
        self.max_output_tokens
    }

    /// The public model the client asked for.
    pub fn model(&self) -> &str {
        &self.model
    }

    /// Whether the client asked for a server-sent event stream.
    pub fn stream(&self) -> bool {
        self.stream
    }

    /// Whether a streaming client asked for the usage chunk itself.
    pub fn include_usage(&self) -> bool {
        self.include_usage
    }

    /// The body for the upstream: `model` replaced by `upstream_model`, and when the
    /// client streams without asking for usage, `stream_options.include_usage` set
    /// so the gateway still learns the token counts. Every other byte is the
    /// client's, unchanged.
    pub fn to_upstream(&self, upstream_model: &str) -> Vec<u8> {
        let body: &[u8] = &self.body;
        let options = (self.stream && !self.include_usage).then(|| self.options_with_usage());
        let mut edits = [
            Some((self.model_at.clone(), Edit::Model)),
            options
                .as_ref()
                .map(|(at, bytes)| (at.clone(), Edit::Bytes(bytes))),
        ];
        edits.sort_by_key(|edit| edit.as_ref().map_or(usize::MAX, |(at, _)| at.start));
        let mut out = Vec::with_capacity(
            body.len() + upstream_model.len() + options.as_ref().map_or(0, |(_, b)| b.len()) + 2,
        );
        let mut from = 0;
        for (at, edit) in edits.into_iter().flatten() {
            out.extend_from_slice(body.get(from..at.start).unwrap_or_default());
            match edit {
                // Serializing a str into a Vec cannot fail.
                Edit::Model => {
                    let _ = serde_json::to_writer(&mut out, upstream_model);
                }
                Edit::Bytes(bytes) => out.extend_from_slice(bytes),
            }
            from = at.end;
        }
        out.extend_from_slice(body.get(from..).unwrap_or_default());
        out
    }

    /// Where `stream_options` goes and what it becomes with `include_usage` set.
    fn options_with_usage(&self) -> (Range<usize>, Vec<u8>) {
        let Some(at) = self.stream_options_at.clone() else {
            // A new last field.
            let end = self
                .body
                .iter()
                .rposition(|&b| b == b'}')
                .unwrap_or(self.body.len());
            return (
                end..end,
                br#","stream_options":{"include_usage":true}"#.to_vec(),
            );
        };
        // The client's other stream options stay, in their order.
        let mut options = self
            .body
            .get(at.clone())
            .and_then(|raw| RawObject::parse(raw).ok())
            .map_or_else(|| b"{}".to_vec(), |o| o.write(Some("include_usage")));
        options.pop();
        if options.len() > 1 {
            options.push(b',');
        }
        options.extend_from_slice(br#""include_usage":true}"#);
        (at, options)
    }
}

/// One change to the client's bytes.
enum Edit<'a> {
    /// The upstream model's name, as a JSON string.
    Model,
    /// These bytes.
    Bytes(&'a [u8]),
}

/// The field-by-field checks, for a body the one-pass scan gave up on: the first
/// fault found is named.
struct Checks<'f, 'a>(&'f RawObject<'a>);

impl<'a> Checks<'_, 'a> {
    fn get(&self, name: &str) -> Option<&'a RawValue> {
        self.0.get(name)
    }

    fn validate(&self, endpoint: Endpoint) -> Result<(), InvalidRequest> {
        let model = self
            .get("model")
            .ok_or_else(|| InvalidRequest::new("model", "you must provide a model parameter"))?;
        let model: Cow<'a, str> = typed(model, "model", "a string")?;
        if model.is_empty() {
            return Err(InvalidRequest::new("model", "`model` must not be empty"));
        }
        match endpoint {
            Endpoint::ChatCompletions => self.validate_chat()?,
            Endpoint::Completions => self.validate_completion()?,
            Endpoint::Embeddings => self.validate_embeddings()?,
        }
        if endpoint.streams() {
            if let Some(stream) = self.get("stream") {
                typed::<Option<bool>>(stream, "stream", "a boolean")?;
            }
            if let Some(options) = self.get("stream_options") {
                typed::<Option<StreamOptions>>(
                    options,
                    "stream_options",
                    "an object with a boolean `include_usage`",
                )?;
            }
        }
        for (name, what) in NUMBERS {
            if let Some(value) = self.get(name) {
                typed::<Option<f64>>(value, name, what)?;
            }
        }
        for name in POSITIVE_INTEGERS {
            if let Some(value) = self.get(name)
                && typed::<Option<u64>>(value, name, "a positive integer")? == Some(0)
            {
                return Err(InvalidRequest::new(
                    name,
                    format!("`{name}` must be at least 1"),
                ));
            }
        }
        Ok(())
    }

    fn validate_chat(&self) -> Result<(), InvalidRequest> {
        let messages = self.get("messages").ok_or_else(|| {
            InvalidRequest::new("messages", "you must provide a messages parameter")
        })?;
        let messages: Vec<MessageProbe<'_>> =
            typed(messages, "messages", "an array of message objects")?;
        if messages.is_empty() {
            return Err(InvalidRequest::new(
                "messages",
                "`messages` must contain at least one message",
            ));
        }
        for (i, message) in messages.iter().enumerate() {
            message.validate(i)?;
        }
        if let Some(tools) = self.get("tools") {
            typed::<Option<Vec<&RawValue>>>(tools, "tools", "an array")?;
        }
        Ok(())
    }

    fn validate_completion(&self) -> Result<(), InvalidRequest> {
        let prompt = self
            .get("prompt")
            .ok_or_else(|| InvalidRequest::new("prompt", "you must provide a prompt parameter"))?;
        typed::<Input>(
            prompt,
            "prompt",
            "a string, an array of strings or an array of tokens",
        )?;
        Ok(())
    }

    fn validate_embeddings(&self) -> Result<(), InvalidRequest> {
        let input = self
            .get("input")
            .ok_or_else(|| InvalidRequest::new("input", "you must provide an input parameter"))?;
        let input: Input = typed(
            input,
            "input",
            "a string, an array of strings or an array of tokens",
        )?;
        if input.is_empty() {
            return Err(InvalidRequest::new("input", "`input` must not be empty"));
        }
        if let Some(format) = self.get("encoding_format") {
            let format: Option<Cow<'_, str>> = typed(format, "encoding_format", "a string")?;
            if !matches!(format.as_deref(), None | Some("float" | "base64")) {
                return Err(InvalidRequest::new(
                    "encoding_format",
                    "`encoding_format` must be `float` or `base64`",
                ));
            }
        }
        Ok(())
    }
}

const NUMBERS: [(&str, &str); 4] = [
    ("temperature", "a number"),
    ("top_p", "a number"),
    ("presence_penalty", "a number"),
    ("frequency_penalty", "a number"),
];

const POSITIVE_INTEGERS: [&str; 4] = ["n", "max_tokens", "max_completion_tokens", "dimensions"];

/// Deserializes one raw field, turning a type mismatch into a 400 naming the field.
fn typed<'a, T: Deserialize<'a>>(
    raw: &'a RawValue,
    name: &str,
    what: &str,
) -> Result<T, InvalidRequest> {
    serde_json::from_str(raw.get()).map_err(|_| {
        InvalidRequest::new(
            name,
            format!(
                "invalid type for `{name}`: expected {what}, got {}",
                raw.get().chars().take(40).collect::<String>()
            ),
        )
    })
}

/// `stream_options`, as far as the gateway reads it.
#[derive(Deserialize)]
pub(super) struct StreamOptions {
    #[serde(default)]
    pub(super) include_usage: Option<bool>,
}

/// One message, as far as validation reads it.
#[derive(Deserialize)]
pub(super) struct MessageProbe<'a> {
    #[serde(borrow)]
    role: Option<Cow<'a, str>>,
    #[serde(default, borrow)]
    content: Option<&'a RawValue>,
    #[serde(default, borrow)]
    tool_call_id: Option<&'a RawValue>,
}

impl MessageProbe<'_> {
    /// Checks the message at `index` of `messages`.
    pub(super) fn validate(&self, index: usize) -> Result<(), InvalidRequest> {
        // Only a refusal names the message: no formatting on the way through.
        let param = || format!("messages[{index}]");
        let role = self.role.as_deref().ok_or_else(|| {
            let param = param();
            InvalidRequest::new(&param, format!("`{param}` is missing `role`"))
        })?;
        let content = self.content.map(RawValue::get).filter(|c| *c != "null");
        let content_ok = match content {
            None => matches!(role, "assistant" | "function"),
            Some(c) => c.starts_with('"') || c.starts_with('['),
        };
        match role {
            "system" | "developer" | "user" | "assistant" | "function" => {}
            "tool" => {
                if self
                    .tool_call_id
                    .is_none_or(|id| !id.get().starts_with('"'))
                {
                    let param = param();
                    return Err(InvalidRequest::new(
                        &format!("{param}.tool_call_id"),
                        format!("`{param}` has role `tool` but no string `tool_call_id`"),
                    ));
                }
            }
            other => {
                let param = param();
                return Err(InvalidRequest::new(
                    &format!("{param}.role"),
                    format!(
                        "invalid role `{other}`: expected one of system, developer, user, assistant, tool, function"
                    ),
                ));
            }
        }
        if !content_ok {
            let param = param();
            return Err(InvalidRequest::new(
                &format!("{param}.content"),
                format!("`{param}.content` must be a string or an array of content parts"),
            ));
        }
        Ok(())
    }
}

/// The shape of `prompt` or `input` — text, texts, tokens or token arrays —
/// checked without copying it.
pub(super) struct Input {
    empty: bool,
}

impl Input {
    pub(super) fn is_empty(&self) -> bool {
        self.empty
    }
}

/// One element of an input array.
#[derive(PartialEq)]
enum Element {
    Text,
    Token,
    Tokens,
}

impl<'de> Deserialize<'de> for Input {
    fn deserialize<D: Deserializer<'de>>(de: D) -> Result<Self, D::Error> {
        struct InputVisitor;
        impl<'de> Visitor<'de> for InputVisitor {
            type Value = Input;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(
                    "a string, an array of strings, an array of tokens or an array of token arrays",
                )
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<Input, E> {
                Ok(Input {
                    empty: v.is_empty(),
                })
            }
            fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Input, A::Error> {
                let Some(first) = seq.next_element::<Element>()? else {
                    return Ok(Input { empty: true });
                };
                while let Some(next) = seq.next_element::<Element>()? {
                    if next != first {
                        return Err(de::Error::custom("array elements of different kinds"));
                    }
                }
                Ok(Input { empty: false })
            }
        }
        de.deserialize_any(InputVisitor)
    }
}

impl<'de> Deserialize<'de> for Element {
    fn deserialize<D: Deserializer<'de>>(de: D) -> Result<Self, D::Error> {
        struct ElementVisitor;
        impl<'de> Visitor<'de> for ElementVisitor {
            type Value = Element;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a string, a token or an array of tokens")
            }
            fn visit_str<E: de::Error>(self, _: &str) -> Result<Element, E> {
                Ok(Element::Text)
            }
            fn visit_u64<E: de::Error>(self, _: u64) -> Result<Element, E> {
                Ok(Element::Token)
            }
            fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Element, A::Error> {
                while seq.next_element::<u32>()?.is_some() {}
                Ok(Element::Tokens)
            }
        }
        de.deserialize_any(ElementVisitor)
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use serde_json::Value;

    fn upstream(endpoint: Endpoint, body: &str) -> Value {
        let request = RequestBody::parse(endpoint, body.as_bytes()).unwrap();
        serde_json::from_slice(&request.to_upstream("up-1")).unwrap()
    }

    fn refused(endpoint: Endpoint, body: &str) -> InvalidRequest {
        RequestBody::parse(endpoint, body.as_bytes()).unwrap_err()
    }

    #[test]
    fn rewrites_model_and_keeps_unknown_fields() {
        let out = upstream(
            Endpoint::ChatCompletions,
            r#"{"model":"gpt-4.1","messages":[{"role":"user","content":"hi"}],"x_custom":{"a":[1,2]},"temperature":0.5}"#,
        );
        assert_eq!(
            out,
            serde_json::json!({"model":"up-1","messages":[{"role":"user","content":"hi"}],"x_custom":{"a":[1,2]},"temperature":0.5})
        );
    }

    #[test]
    fn asks_for_usage_when_streaming_without_it() {
        let body = r#"{"model":"m","stream":true,"stream_options":{"other":1},"messages":[{"role":"user","content":"hi"}]}"#;
        let request = RequestBody::parse(Endpoint::ChatCompletions, body.as_bytes()).unwrap();
        assert!(request.stream() && !request.include_usage());
        let out = upstream(Endpoint::ChatCompletions, body);
        assert_eq!(
            out["stream_options"],
            serde_json::json!({"other":1,"include_usage":true})
        );
        let asked = r#"{"model":"m","stream":true,"stream_options":{"include_usage":true},"messages":[{"role":"user","content":"hi"}]}"#;
        assert!(
            RequestBody::parse(Endpoint::ChatCompletions, asked.as_bytes())
                .unwrap()
                .include_usage()
        );
        let plain = upstream(
            Endpoint::ChatCompletions,
            r#"{"model":"m","messages":[{"role":"user","content":"hi"}]}"#,
        );
        assert!(plain.get("stream_options").is_none());
    }

    #[test]
    fn escaped_keys_survive() {
        let out = upstream(
            Endpoint::Embeddings,
            r#"{"model":"m","input":"a","we\"ird":1,"model":"last"}"#,
        );
        assert_eq!(
            out,
            serde_json::json!({"model":"up-1","input":"a","we\"ird":1})
        );
    }

    #[test]
    fn refuses_bad_requests_naming_the_parameter() {
        let cases = [
            (Endpoint::ChatCompletions, "not json", None),
            (Endpoint::ChatCompletions, "[1]", None),
            (
                Endpoint::ChatCompletions,
                r#"{"messages":[]}"#,
                Some("model"),
            ),
            (
                Endpoint::ChatCompletions,
                r#"{"model":3,"messages":[]}"#,
                Some("model"),
            ),
            (
                Endpoint::ChatCompletions,
                r#"{"model":"m"}"#,
                Some("messages"),
            ),
            (
                Endpoint::ChatCompletions,
                r#"{"model":"m","messages":[]}"#,
                Some("messages"),
            ),
            (
                Endpoint::ChatCompletions,
                r#"{"model":"m","messages":"hi"}"#,
                Some("messages"),
            ),
            (
                Endpoint::ChatCompletions,
                r#"{"model":"m","messages":[{"content":"x"}]}"#,
                Some("messages[0]"),
            ),
            (
                Endpoint::ChatCompletions,
                r#"{"model":"m","messages":[{"role":"robot","content":"x"}]}"#,
                Some("messages[0].role"),
            ),
            (
                Endpoint::ChatCompletions,
                r#"{"model":"m","messages":[{"role":"user"}]}"#,
                Some("messages[0].content"),
            ),
            (
                Endpoint::ChatCompletions,
                r#"{"model":"m","messages":[{"role":"user","content":5}]}"#,
                Some("messages[0].content"),
            ),
            (
                Endpoint::ChatCompletions,
                r#"{"model":"m","messages":[{"role":"tool","content":"x"}]}"#,
                Some("messages[0].tool_call_id"),
            ),
            (
                Endpoint::ChatCompletions,
                r#"{"model":"m","messages":[{"role":"user","content":"x"}],"stream":"yes"}"#,
                Some("stream"),
            ),
            (
                Endpoint::ChatCompletions,
                r#"{"model":"m","messages":[{"role":"user","content":"x"}],"temperature":"hot"}"#,
                Some("temperature"),
            ),
            (
                Endpoint::ChatCompletions,
                r#"{"model":"m","messages":[{"role":"user","content":"x"}],"max_tokens":0}"#,
                Some("max_tokens"),
            ),
            (
                Endpoint::ChatCompletions,
                r#"{"model":"m","messages":[{"role":"user","content":"x"}],"n":-1}"#,
                Some("n"),
            ),
            (Endpoint::Completions, r#"{"model":"m"}"#, Some("prompt")),
            (
                Endpoint::Completions,
                r#"{"model":"m","prompt":{"a":1}}"#,
                Some("prompt"),
            ),
            (
                Endpoint::Embeddings,
                r#"{"model":"m","input":[]}"#,
                Some("input"),
            ),
            (
                Endpoint::Embeddings,
                r#"{"model":"m","input":"x","encoding_format":"hex"}"#,
                Some("encoding_format"),
            ),
        ];
        for (endpoint, body, param) in cases {
            assert_eq!(refused(endpoint, body).param.as_deref(), param, "{body}");
        }
    }

    #[test]
    fn only_the_model_changes_byte_for_byte() {
        let body = "{ \"temperature\" : 0.5,\n  \"model\" : \"gpt-4.1\" , \"messages\":[{\"role\":\"user\",\"content\":\"h\\u00e9\"}] }\n";
        let request = RequestBody::parse(Endpoint::ChatCompletions, body.as_bytes()).unwrap();
        assert_eq!(
            String::from_utf8(request.to_upstream("up\"1")).unwrap(),
            body.replace("\"gpt-4.1\"", "\"up\\\"1\"")
        );
    }

    #[test]
    fn usage_is_asked_for_after_the_last_field_and_inside_the_clients_options() {
        let body = r#"{"stream":true,"model":"m","messages":[{"role":"user","content":"}"}]}  "#;
        let request = RequestBody::parse(Endpoint::ChatCompletions, body.as_bytes()).unwrap();
        assert_eq!(
            String::from_utf8(request.to_upstream("u")).unwrap(),
            r#"{"stream":true,"model":"u","messages":[{"role":"user","content":"}"}],"stream_options":{"include_usage":true}}  "#
        );
        let body = r#"{"stream_options":{"include_usage":false,"x":1},"model":"m","stream":true,"prompt":"p"}"#;
        let request = RequestBody::parse(Endpoint::Completions, body.as_bytes()).unwrap();
        assert_eq!(
            String::from_utf8(request.to_upstream("u")).unwrap(),
            r#"{"stream_options":{"x":1,"include_usage":true},"model":"u","stream":true,"prompt":"p"}"#
        );
        let body = r#"{"model":"m","stream":true,"stream_options":null,"prompt":"p"}"#;
        let request = RequestBody::parse(Endpoint::Completions, body.as_bytes()).unwrap();
        assert_eq!(
            String::from_utf8(request.to_upstream("u")).unwrap(),
            r#"{"model":"u","stream":true,"stream_options":{"include_usage":true},"prompt":"p"}"#
        );
    }

    #[test]
    fn a_repeated_field_keeps_its_last_value() {
        let body = r#"{"model":"a","stream":true,"messages":[{"role":"user","content":"x"}],"model":"b","stream":false}"#;
        let request = RequestBody::parse(Endpoint::ChatCompletions, body.as_bytes()).unwrap();
        assert_eq!((request.model(), request.stream()), ("b", false));
        assert_eq!(
            String::from_utf8(request.to_upstream("u")).unwrap(),
            r#"{"model":"u","stream":false,"messages":[{"role":"user","content":"x"}]}"#
        );
        let refused = r#"{"model":"m","messages":[{"role":"user","content":"x"}],"max_tokens":5,"max_tokens":0}"#;
        assert_eq!(
            RequestBody::parse(Endpoint::ChatCompletions, refused.as_bytes())
                .unwrap_err()
                .param
                .as_deref(),
            Some("max_tokens")
        );
    }

    #[test]
    fn metadata_is_found_where_it_sits_in_the_body_read() {
        let metadata = |body: &str| {
            let request = RequestBody::parse(Endpoint::ChatCompletions, body.as_bytes()).unwrap();
            request
                .metadata()
                .map(|m| String::from_utf8(m.to_vec()).unwrap())
        };
        let messages = r#""messages":[{"role":"user","content":"\"metadata\""}]"#;
        assert_eq!(metadata(&format!(r#"{{"model":"m",{messages}}}"#)), None);
        assert_eq!(
            metadata(&format!(
                r#"{{"metadata" : {{"tags":"a"}},"model":"m",{messages},"metadata":{{"tags":["b"]}}}}"#
            ))
            .as_deref(),
            Some(r#"{"tags":["b"]}"#)
        );
        // In a body rewritten for a repeated field, it is found in the rewrite.
        assert_eq!(
            metadata(&format!(
                r#"{{"model":"a","metadata":{{"task":"t"}},{messages},"model":"b"}}"#
            ))
            .as_deref(),
            Some(r#"{"task":"t"}"#)
        );
    }

    /// The one-pass scan accepts exactly what the field-by-field checks accept.
    #[test]
    fn one_pass_and_field_by_field_agree() {
        let chat = |rest: &str| {
            format!(r#"{{"model":"m","messages":[{{"role":"user","content":"x"}}]{rest}}}"#)
        };
        let mut cases: Vec<(Endpoint, String)> = [
            ",\"stream\":null",
            ",\"stream\":1",
            ",\"stream_options\":null",
            ",\"stream_options\":[]",
            ",\"stream_options\":{\"include_usage\":\"yes\"}",
            ",\"stream_options\":{\"include_usage\":true}",
            ",\"tools\":null",
            ",\"tools\":{}",
            ",\"tools\":[1,{\"a\":[]}]",
            ",\"temperature\":null",
            ",\"temperature\":1e400",
            ",\"top_p\":\"1\"",
            ",\"n\":1",
            ",\"n\":1.5",
            ",\"dimensions\":0",
            ",\"prompt\":{}",
            ",\"input\":5",
            ",\"encoding_format\":\"hex\"",
            ",\"x\":{\"model\":1},\"y\":[null]",
        ]
        .iter()
        .map(|rest| (Endpoint::ChatCompletions, chat(rest)))
        .collect();
        for body in [
            r#"{"model":"","messages":[{"role":"user","content":"x"}]}"#,
            r#"{"model":"m\u0031","messages":[{"role":"user","content":"x"}]}"#,
            r#"{"mod\u0065l":"m","messages":[{"role":"user","content":"x"}]}"#,
            r#"{"model":"m","messages":[{"role":"user","content":"x"}]} x"#,
            r#"{"model":"m","messages":[{"role":"user","content":"x"},{"role":"tool","content":"r"}]}"#,
            r#"{"model":"m","messages":[{"role":"user","content":"x","role":"user"}]}"#,
            r#"{"model":null,"messages":[{"role":"user","content":"x"}]}"#,
        ] {
            cases.push((Endpoint::ChatCompletions, body.to_owned()));
        }
        for prompt in [r#""a""#, "[]", "[1,2]", r#"["a",1]"#, "[[1],[]]", "null"] {
            cases.push((
                Endpoint::Completions,
                format!(r#"{{"model":"m","prompt":{prompt}}}"#),
            ));
        }
        for rest in [
            r#""input":"""#,
            r#""input":[],"stream":"not read""#,
            r#""input":"a","encoding_format":null"#,
            r#""input":"a","encoding_format":"base64""#,
            r#""input":"a","encoding_format":"hex""#,
            r#""input":"a","encoding_format":"flo\u0061t""#,
            r#""input":"a","messages":5"#,
        ] {
            cases.push((Endpoint::Embeddings, format!(r#"{{"model":"m",{rest}}}"#)));
        }
        for (endpoint, body) in &cases {
            let by_field = RawObject::parse(body.as_bytes())
                .map_err(|_| ())
                .and_then(|fields| Checks(&fields).validate(*endpoint).map_err(|_| ()));
            let scanned = scan(*endpoint, body.as_bytes());
            assert_eq!(scanned.is_some(), by_field.is_ok(), "{body}");
            if let Some(found) = scanned {
                let model: String = serde_json::from_str(
                    RawObject::parse(body.as_bytes())
                        .unwrap()
                        .get("model")
                        .unwrap()
                        .get(),
                )
                .unwrap();
                assert_eq!(found.model, model, "{body}");
            }
        }
    }

    #[test]
    fn a_body_that_is_not_utf8_is_refused() {
        let body = b"{\"model\":\"m\",\"messages\":[{\"role\":\"user\",\"content\":\"\xff\"}]}";
        let error = RequestBody::parse(Endpoint::ChatCompletions, body).unwrap_err();
        assert_eq!(error.param, None);
        assert!(
            error.message.contains("not a valid JSON object"),
            "{}",
            error.message
        );
    }

    #[test]
    fn accepts_every_input_shape() {
        for input in [r#""a""#, r#"["a","b"]"#, "[1,2]", "[[1],[2,3]]"] {
            let body = format!(r#"{{"model":"m","input":{input}}}"#);
            RequestBody::parse(Endpoint::Embeddings, body.as_bytes()).unwrap();
        }
        let chat = r#"{"model":"m","messages":[{"role":"system","content":"s"},{"role":"user","content":[{"type":"text","text":"x"}]},{"role":"assistant","content":null,"tool_calls":[]},{"role":"tool","tool_call_id":"c","content":"r"}],"tools":[{"type":"function","function":{"name":"f"}}]}"#;
        RequestBody::parse(Endpoint::ChatCompletions, chat.as_bytes()).unwrap();
    }
}
