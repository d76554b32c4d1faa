//! Request bodies: parsed just enough to validate and rewrite them.

use std::borrow::Cow;
use std::fmt;

use serde::Deserialize;
use serde::de::{self, Deserializer, SeqAccess, Visitor};
use serde_json::value::RawValue;

use super::raw::{Key, RawObject, push_field};

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
    fn streams(self) -> bool {
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
    fn new(param: &str, message: impl Into<String>) -> Self {
        Self {
            message: message.into(),
            param: Some(param.to_owned()),
        }
    }
}

/// A validated request body whose fields are kept as the client's raw JSON.
#[derive(Debug)]
pub struct RequestBody<'a> {
    fields: RawObject<'a>,
    model: Cow<'a, str>,
    stream: bool,
    include_usage: bool,
}

impl<'a> RequestBody<'a> {
    /// Parses and validates `body` for `endpoint`.
    pub fn parse(endpoint: Endpoint, body: &'a [u8]) -> Result<Self, InvalidRequest> {
        let fields = RawObject::parse(body).map_err(|e| InvalidRequest {
            message: format!("the request body is not a valid JSON object: {e}"),
            param: None,
        })?;
        let mut request = Self {
            fields,
            model: Cow::Borrowed(""),
            stream: false,
            include_usage: false,
        };
        request.validate(endpoint)?;
        Ok(request)
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

    fn get(&self, name: &str) -> Option<&'a RawValue> {
        self.fields.get(name)
    }

    fn validate(&mut self, endpoint: Endpoint) -> Result<(), InvalidRequest> {
        let model = self
            .get("model")
            .ok_or_else(|| InvalidRequest::new("model", "you must provide a model parameter"))?;
        let model: Cow<'a, str> = typed(model, "model", "a string")?;
        if model.is_empty() {
            return Err(InvalidRequest::new("model", "`model` must not be empty"));
        }
        self.model = model;
        match endpoint {
            Endpoint::ChatCompletions => self.validate_chat()?,
            Endpoint::Completions => self.validate_completion()?,
            Endpoint::Embeddings => self.validate_embeddings()?,
        }
        if endpoint.streams() {
            if let Some(stream) = self.get("stream") {
                self.stream =
                    typed::<Option<bool>>(stream, "stream", "a boolean")?.unwrap_or(false);
            }
            if let Some(options) = self.get("stream_options") {
                let options: Option<StreamOptions> = typed(
                    options,
                    "stream_options",
                    "an object with a boolean `include_usage`",
                )?;
                self.include_usage = options.and_then(|o| o.include_usage).unwrap_or(false);
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

    /// The body for the upstream: `model` replaced by `upstream_model`, and when the
    /// client streams without asking for usage, `stream_options.include_usage` set
    /// so the gateway still learns the token counts. All other fields are the
    /// client's bytes, unchanged.
    pub fn to_upstream(&self, upstream_model: &str) -> Vec<u8> {
        let size: usize = self
            .fields
            .0
            .iter()
            .map(|(k, v)| k.as_str().len() + v.get().len() + 4)
            .sum();
        let mut out = Vec::with_capacity(size + upstream_model.len() + 64);
        out.push(b'{');
        push_field(
            &mut out,
            &Key(Cow::Borrowed("model")),
            json_string(upstream_model).as_bytes(),
        );
        let force_usage = self.stream && !self.include_usage;
        for (name, value) in &self.fields.0 {
            match name.as_str() {
                "model" => {}
                "stream_options" if force_usage => {}
                _ => push_field(&mut out, name, value.get().as_bytes()),
            }
        }
        if force_usage {
            // The client's other stream options stay, in their order.
            let mut options = self
                .get("stream_options")
                .and_then(|raw| RawObject::parse(raw.get().as_bytes()).ok())
                .map_or_else(|| b"{}".to_vec(), |o| o.write_without("include_usage"));
            options.pop();
            if options.len() > 1 {
                options.push(b',');
            }
            options.extend_from_slice(br#""include_usage":true}"#);
            push_field(&mut out, &Key(Cow::Borrowed("stream_options")), &options);
        }
        out.push(b'}');
        out
    }
}

const NUMBERS: [(&str, &str); 4] = [
    ("temperature", "a number"),
    ("top_p", "a number"),
    ("presence_penalty", "a number"),
    ("frequency_penalty", "a number"),
];

const POSITIVE_INTEGERS: [&str; 4] = ["n", "max_tokens", "max_completion_tokens", "dimensions"];

fn json_string(s: &str) -> String {
    // Serializing a str cannot fail.
    serde_json::to_string(s).unwrap_or_default()
}

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

#[derive(Deserialize)]
struct StreamOptions {
    #[serde(default)]
    include_usage: Option<bool>,
}

#[derive(Deserialize)]
struct MessageProbe<'a> {
    #[serde(borrow)]
    role: Option<Cow<'a, str>>,
    #[serde(default, borrow)]
    content: Option<&'a RawValue>,
    #[serde(default, borrow)]
    tool_call_id: Option<&'a RawValue>,
}

impl MessageProbe<'_> {
    fn validate(&self, index: usize) -> Result<(), InvalidRequest> {
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
struct Input {
    empty: bool,
}

impl Input {
    fn is_empty(&self) -> bool {
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
    fn accepts_every_input_shape() {
        for input in [r#""a""#, r#"["a","b"]"#, "[1,2]", "[[1],[2,3]]"] {
            let body = format!(r#"{{"model":"m","input":{input}}}"#);
            RequestBody::parse(Endpoint::Embeddings, body.as_bytes()).unwrap();
        }
        let chat = r#"{"model":"m","messages":[{"role":"system","content":"s"},{"role":"user","content":[{"type":"text","text":"x"}]},{"role":"assistant","content":null,"tool_calls":[]},{"role":"tool","tool_call_id":"c","content":"r"}],"tools":[{"type":"function","function":{"name":"f"}}]}"#;
        RequestBody::parse(Endpoint::ChatCompletions, chat.as_bytes()).unwrap();
    }
}
