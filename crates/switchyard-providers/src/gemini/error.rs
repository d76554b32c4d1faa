//! Google API errors (`{"error": {"code", "message", "status", "details"}}`)
//! read as OpenAI errors.

use serde::Deserialize;
use serde_json::Value;

use crate::openai::ErrorObject;
use crate::translate::Fault;

/// How much of a body that is not a Google error is kept as the message.
const MAX_MESSAGE_CHARS: usize = 500;

/// The inner object of a Google API error (`google.rpc.Status` as JSON).
#[derive(Debug, Clone, Default, Deserialize)]
pub(super) struct Status {
    #[serde(default)]
    pub code: Option<u16>,
    #[serde(default)]
    pub message: String,
    #[serde(default)]
    pub status: Option<String>,
    #[serde(default)]
    pub details: Vec<Value>,
}

#[derive(Deserialize)]
struct Wrapped {
    error: Status,
}

/// Google sends the error object alone, or (some endpoints) in a JSON array.
/// The array is tried first: serde reads a struct from an array too.
#[derive(Deserialize)]
#[serde(untagged)]
enum Body {
    Many(Vec<Wrapped>),
    One(Wrapped),
}

/// Reads an error answer of the Gemini API (HTTP `status`, `body`) as an
/// OpenAI error: the message kept, `type` from the status (and from a
/// `API_KEY_INVALID` reason, which Google sends with 400), `code` Google's
/// status name in lower case (`resource_exhausted`). A body that is not a
/// Google error becomes the message, cut to 500 characters, or
/// `upstream status N` when it is empty.
pub fn decode_error(status: u16, body: &[u8]) -> ErrorObject {
    let error = match serde_json::from_slice::<Body>(body) {
        Ok(Body::One(wrapped)) => Some(wrapped.error),
        Ok(Body::Many(list)) => list.into_iter().next().map(|w| w.error),
        Err(_) => None,
    };
    match error {
        Some(error) => error_object(status, &error),
        None => {
            let text = String::from_utf8_lossy(body);
            let text = text.trim();
            ErrorObject {
                message: if text.is_empty() {
                    format!("upstream status {status}")
                } else {
                    text.chars().take(MAX_MESSAGE_CHARS).collect()
                },
                kind: Some(kind_of(status).to_owned()),
                param: None,
                code: None,
            }
        }
    }
}

/// The error a stream event carries instead of a response (`{"error": {…}}`),
/// with the status it stands for (its `code`, else its status name's).
pub fn stream_error(data: &[u8]) -> Option<Fault> {
    let wrapped = serde_json::from_slice::<Wrapped>(data).ok()?;
    let status = status_of(&wrapped.error);
    Some(Fault {
        status,
        error: error_object(status, &wrapped.error),
    })
}

/// The wait a Google error asks for, in whole seconds: the `retryDelay` of its
/// `google.rpc.RetryInfo` detail (`"7s"`, `"0.5s"`). Gemini sends it in the
/// body, with no `retry-after` header.
pub fn retry_delay(body: &[u8]) -> Option<u64> {
    let error = match serde_json::from_slice::<Body>(body).ok()? {
        Body::One(wrapped) => wrapped.error,
        Body::Many(list) => list.into_iter().next()?.error,
    };
    error.details.iter().find_map(|detail| {
        let delay = detail.get("retryDelay")?.as_str()?;
        let seconds: f64 = delay.strip_suffix('s')?.parse().ok()?;
        (seconds.is_finite() && seconds >= 0.0).then(|| seconds.ceil() as u64)
    })
}

/// `error` in OpenAI's shape, for an answer of HTTP `status`.
pub(super) fn error_object(status: u16, error: &Status) -> ErrorObject {
    let kind = if key_invalid(error) {
        "authentication_error"
    } else {
        kind_of(status)
    };
    ErrorObject {
        message: error.message.clone(),
        kind: Some(kind.to_owned()),
        param: None,
        code: error.status.as_deref().map(str::to_ascii_lowercase),
    }
}

/// The HTTP status of an error sent inside a stream: its `code`, else the one
/// its status name stands for.
pub(super) fn status_of(error: &Status) -> u16 {
    if let Some(code) = error.code {
        return code;
    }
    match error.status.as_deref() {
        Some("INVALID_ARGUMENT" | "FAILED_PRECONDITION" | "OUT_OF_RANGE") => 400,
        Some("UNAUTHENTICATED") => 401,
        Some("PERMISSION_DENIED") => 403,
        Some("NOT_FOUND") => 404,
        Some("RESOURCE_EXHAUSTED") => 429,
        Some("UNAVAILABLE") => 503,
        Some("DEADLINE_EXCEEDED") => 504,
        _ => 500,
    }
}

fn kind_of(status: u16) -> &'static str {
    match status {
        401 => "authentication_error",
        403 => "permission_error",
        404 => "not_found_error",
        429 => "rate_limit_error",
        400..=499 => "invalid_request_error",
        _ => "server_error",
    }
}

/// Whether the details name an invalid API key.
fn key_invalid(error: &Status) -> bool {
    error
        .details
        .iter()
        .any(|d| d.get("reason").and_then(Value::as_str) == Some("API_KEY_INVALID"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_arrays_text_and_empty_bodies() {
        let array = br#"[{"error":{"code":429,"message":"quota","status":"RESOURCE_EXHAUSTED"}}]"#;
        let error = decode_error(429, array);
        assert_eq!(error.message, "quota");
        assert_eq!(error.kind.as_deref(), Some("rate_limit_error"));
        assert_eq!(error.code.as_deref(), Some("resource_exhausted"));

        let long = "x".repeat(600);
        let error = decode_error(502, long.as_bytes());
        assert_eq!(error.message.len(), MAX_MESSAGE_CHARS);
        assert_eq!(error.kind.as_deref(), Some("server_error"));

        assert_eq!(decode_error(504, b"  ").message, "upstream status 504");
    }

    #[test]
    fn reads_the_retry_delay() {
        let body = br#"{"error":{"code":429,"message":"quota","status":"RESOURCE_EXHAUSTED","details":[{"@type":"type.googleapis.com/google.rpc.RetryInfo","retryDelay":"6.2s"}]}}"#;
        assert_eq!(retry_delay(body), Some(7));
        assert_eq!(
            retry_delay(br#"{"error":{"code":429,"message":"q"}}"#),
            None
        );
        assert_eq!(retry_delay(b"not json"), None);
    }

    #[test]
    fn stream_errors_without_a_code_get_one_from_the_status_name() {
        let error = Status {
            status: Some("UNAVAILABLE".to_owned()),
            ..Status::default()
        };
        assert_eq!(status_of(&error), 503);
    }
}
