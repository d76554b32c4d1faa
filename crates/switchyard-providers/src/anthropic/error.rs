//! Errors both ways: an Anthropic error read into OpenAI's shape (for an
//! OpenAI client of an Anthropic provider), and any error written as
//! Anthropic's (for an Anthropic client).
//!
//! Anthropic's error types are kept as the OpenAI `type` (most are OpenAI's
//! names too); a rate limit also gets OpenAI's code `rate_limit_exceeded`,
//! which OpenAI clients look for.

use super::wire::{ErrorDetail, ErrorEnvelope};
use crate::ErrorClass;
use crate::error_class::Wording;
use crate::openai::ErrorObject;
use crate::translate::Fault;

/// The longest error text kept from a body that is not an Anthropic error.
const MAX_TEXT: usize = 500;

/// An Anthropic error response (`{"type":"error","error":{"type","message"}}`)
/// in OpenAI's shape; a body of another shape gives its text (trimmed, at most
/// 500 characters) or `upstream status N`, with the type the status stands for.
pub fn decode_error(status: u16, body: &[u8]) -> ErrorObject {
    if let Ok(envelope) = serde_json::from_slice::<ErrorEnvelope>(body) {
        return object_of(envelope.error);
    }
    let text = String::from_utf8_lossy(body);
    let text = text.trim();
    let message = if text.is_empty() {
        format!("upstream status {status}")
    } else {
        text.chars().take(MAX_TEXT).collect()
    };
    ErrorObject {
        message,
        kind: Some(error_type(status).to_owned()),
        param: None,
        code: None,
    }
}

/// The data of an `event: error` of a stream, with the status the same error
/// gets outside one; `None` when it is not Anthropic's error shape.
pub fn stream_error(data: &[u8]) -> Option<Fault> {
    let envelope = serde_json::from_slice::<ErrorEnvelope>(data).ok()?;
    Some(fault_of(envelope.error))
}

/// An error event inside a stream, with the status the same error gets
/// outside one.
pub(crate) fn fault_of(detail: ErrorDetail) -> Fault {
    Fault {
        status: status_of_type(&detail.kind),
        error: object_of(detail),
    }
}

fn object_of(detail: ErrorDetail) -> ErrorObject {
    let code = (detail.kind == "rate_limit_error").then(|| "rate_limit_exceeded".to_owned());
    ErrorObject {
        message: detail.message,
        kind: Some(detail.kind),
        param: None,
        code,
    }
}

/// The HTTP status Anthropic answers an error type with (500 for
/// `api_error` and types it does not document).
fn status_of_type(kind: &str) -> u16 {
    documented_status(kind).unwrap_or(500)
}

/// The HTTP status of an error type Anthropic documents.
fn documented_status(kind: &str) -> Option<u16> {
    match kind {
        "invalid_request_error" => Some(400),
        "authentication_error" => Some(401),
        "billing_error" => Some(402),
        "permission_error" => Some(403),
        "not_found_error" => Some(404),
        "request_too_large" => Some(413),
        "rate_limit_error" => Some(429),
        "api_error" => Some(500),
        "timeout_error" => Some(504),
        "overloaded_error" => Some(529),
        _ => None,
    }
}

/// How Anthropic words a refusal its error type does not tell apart (both
/// come as `invalid_request_error`).
const WORDING: Wording = Wording {
    context_length: &["prompt is too long", "exceed context limit"],
    content_policy: &["content filtering policy"],
};

/// What kind of failure an Anthropic error is: `body` an error response
/// (`{"type":"error","error":{"type","message"}}`) of HTTP `status`, or the
/// data of a stream's `event: error` with the status its [`Fault`] stands for
/// (see [`stream_error`]).
///
/// A status that settles it (401–404, 408, 429, 5xx) comes first; then the
/// error type, read as the status Anthropic answers it with
/// (`billing_error` is [`Auth`](ErrorClass::Auth), `overloaded_error`
/// [`Overloaded`](ErrorClass::Overloaded), `request_too_large`
/// [`InvalidRequest`](ErrorClass::InvalidRequest)). An
/// `invalid_request_error` is a context length when its message says the
/// prompt is too long or exceeds the context limit, a content policy when it
/// names the content filtering policy. A body of another shape (or an unknown
/// type) is classed by its status, and its text read the same way for a 400,
/// 413 or 422.
pub fn classify_error(status: u16, body: &[u8]) -> ErrorClass {
    if let Some(class) = ErrorClass::settled_by(status) {
        return class;
    }
    match serde_json::from_slice::<ErrorEnvelope>(body) {
        Ok(envelope) => {
            let detail = envelope.error;
            let typed = documented_status(&detail.kind).unwrap_or(status);
            ErrorClass::of_status(typed).or_worded(status, &detail.message, &WORDING)
        }
        Err(_) => ErrorClass::of_text(status, body, &WORDING),
    }
}

/// Anthropic's error type for an HTTP status: the type Anthropic itself
/// answers that status with; 503 reads as `overloaded_error` (the provider is
/// unavailable, retry later), any other 4xx as `invalid_request_error`, any
/// other status as `api_error`.
pub fn error_type(status: u16) -> &'static str {
    match status {
        401 => "authentication_error",
        402 => "billing_error",
        403 => "permission_error",
        404 => "not_found_error",
        413 => "request_too_large",
        429 => "rate_limit_error",
        503 | 529 => "overloaded_error",
        504 => "timeout_error",
        // 400, and any other client error.
        400..=499 => "invalid_request_error",
        _ => "api_error",
    }
}

/// An Anthropic error body for an error of `status`:
/// `{"type":"error","error":{"type","message"}}`, the type from the status.
pub fn error_body(status: u16, error: &ErrorObject) -> Vec<u8> {
    let envelope = ErrorEnvelope {
        kind: "error".to_owned(),
        error: ErrorDetail {
            kind: error_type(status).to_owned(),
            message: error.message.clone(),
        },
    };
    // Serializing strings into memory cannot fail.
    serde_json::to_vec(&envelope).unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::error_class::{assert_classes, assert_stream_classes};

    #[test]
    fn types_and_statuses_agree() {
        for status in [400, 401, 402, 403, 404, 413, 429, 504, 529] {
            assert_eq!(status_of_type(error_type(status)), status);
        }
        assert_eq!(error_type(503), "overloaded_error");
        assert_eq!(error_type(422), "invalid_request_error");
        assert_eq!(error_type(502), "api_error");
    }

    #[test]
    fn a_body_of_another_shape_gives_its_text() {
        let long = "x".repeat(600);
        assert_eq!(decode_error(502, long.as_bytes()).message.len(), 500);
        assert_eq!(decode_error(502, b"  \n").message, "upstream status 502");
        assert_eq!(
            decode_error(503, b" Service Unavailable\n").kind.as_deref(),
            Some("overloaded_error")
        );
    }

    /// An Anthropic error body.
    fn anthropic(kind: &str, message: &str) -> String {
        format!(r#"{{"type":"error","error":{{"type":"{kind}","message":"{message}"}}}}"#)
    }

    #[test]
    fn refusals_told_apart_by_their_words() {
        let invalid = |message| anthropic("invalid_request_error", message);
        assert_classes(
            classify_error,
            &[
                (
                    400,
                    invalid("prompt is too long: 208310 tokens > 200000 maximum"),
                    ErrorClass::ContextLength,
                ),
                (
                    400,
                    invalid(
                        "input length and `max_tokens` exceed context limit: 195000 + 8192 > 200000, decrease input length or `max_tokens` and try again",
                    ),
                    ErrorClass::ContextLength,
                ),
                (
                    400,
                    invalid("Output blocked by content filtering policy"),
                    ErrorClass::ContentPolicy,
                ),
                (
                    400,
                    invalid("max_tokens: Field required"),
                    ErrorClass::InvalidRequest,
                ),
            ],
        );
    }

    #[test]
    fn types_and_statuses() {
        assert_classes(
            classify_error,
            &[
                (
                    529,
                    anthropic("overloaded_error", "Overloaded"),
                    ErrorClass::Overloaded,
                ),
                (
                    429,
                    anthropic(
                        "rate_limit_error",
                        "Number of request tokens has exceeded your per-minute rate limit (https://docs.anthropic.com/en/api/rate-limits); see the response headers for current usage.",
                    ),
                    ErrorClass::RateLimited,
                ),
                (
                    401,
                    anthropic("authentication_error", "invalid x-api-key"),
                    ErrorClass::Auth,
                ),
                (
                    403,
                    anthropic(
                        "permission_error",
                        "Your API key does not have permission to use the specified resource.",
                    ),
                    ErrorClass::Auth,
                ),
                (
                    402,
                    anthropic(
                        "billing_error",
                        "Your credit balance is too low to access the Anthropic API.",
                    ),
                    ErrorClass::Auth,
                ),
                (
                    404,
                    anthropic("not_found_error", "model: claude-opus-9-20300101"),
                    ErrorClass::NotFound,
                ),
                (
                    413,
                    anthropic(
                        "request_too_large",
                        "Request exceeds the maximum allowed number of bytes.",
                    ),
                    ErrorClass::InvalidRequest,
                ),
                (
                    500,
                    anthropic("api_error", "Internal server error"),
                    ErrorClass::Server,
                ),
                (
                    504,
                    anthropic("timeout_error", "Request timed out"),
                    ErrorClass::Server,
                ),
                // A type the status does not settle still tells.
                (
                    400,
                    anthropic("authentication_error", "invalid x-api-key"),
                    ErrorClass::Auth,
                ),
                // An unknown type leaves it to the status.
                (
                    400,
                    anthropic("brand_new_error", "prompt is too long"),
                    ErrorClass::ContextLength,
                ),
                (
                    409,
                    anthropic("brand_new_error", "conflict"),
                    ErrorClass::InvalidRequest,
                ),
            ],
        );
    }

    #[test]
    fn stream_errors_with_the_status_they_stand_for() {
        assert_stream_classes(
            stream_error,
            classify_error,
            &[
                (
                    anthropic("overloaded_error", "Overloaded"),
                    ErrorClass::Overloaded,
                ),
                (
                    anthropic("api_error", "Internal server error"),
                    ErrorClass::Server,
                ),
                (
                    anthropic(
                        "invalid_request_error",
                        "prompt is too long: 201000 tokens > 200000 maximum",
                    ),
                    ErrorClass::ContextLength,
                ),
            ],
        );
    }

    #[test]
    fn bodies_of_another_shape_by_status() {
        assert_classes(
            classify_error,
            &[
                (
                    502,
                    "<html><head><title>502 Bad Gateway</title></head></html>",
                    ErrorClass::Server,
                ),
                (503, "Service Unavailable", ErrorClass::Overloaded),
                (429, "", ErrorClass::RateLimited),
                (404, "Not Found", ErrorClass::NotFound),
                (400, "prompt is too long", ErrorClass::ContextLength),
                (400, "Bad Request", ErrorClass::InvalidRequest),
                (
                    400,
                    r#"{"error":{"message":"no type"}}"#,
                    ErrorClass::InvalidRequest,
                ),
            ],
        );
    }
}
