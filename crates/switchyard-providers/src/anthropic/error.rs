//! Errors both ways: an Anthropic error read into OpenAI's shape (for an
//! OpenAI client of an Anthropic provider), and any error written as
//! Anthropic's (for an Anthropic client).
//!
//! Anthropic's error types are kept as the OpenAI `type` (most are OpenAI's
//! names too); a rate limit also gets OpenAI's code `rate_limit_exceeded`,
//! which OpenAI clients look for.

use super::wire::{ErrorDetail, ErrorEnvelope};
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

/// The HTTP status Anthropic answers an error type with.
fn status_of_type(kind: &str) -> u16 {
    match kind {
        "invalid_request_error" => 400,
        "authentication_error" => 401,
        "billing_error" => 402,
        "permission_error" => 403,
        "not_found_error" => 404,
        "request_too_large" => 413,
        "rate_limit_error" => 429,
        "timeout_error" => 504,
        "overloaded_error" => 529,
        _ => 500,
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
}
