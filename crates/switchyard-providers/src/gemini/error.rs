//! Google API errors (`{"error": {"code", "message", "status", "details"}}`)
//! read as OpenAI errors.

use serde::Deserialize;
use serde_json::Value;

use crate::ErrorClass;
use crate::error_class::Wording;
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
    match parse(body) {
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
    parse(body)?.details.iter().find_map(|detail| {
        let delay = detail.get("retryDelay")?.as_str()?;
        let seconds: f64 = delay.strip_suffix('s')?.parse().ok()?;
        (seconds.is_finite() && seconds >= 0.0).then(|| seconds.ceil() as u64)
    })
}

/// How Google words a refusal its status name does not tell apart (both come
/// as `INVALID_ARGUMENT`).
const WORDING: Wording = Wording {
    context_length: &["input token count", "exceeds the maximum number of tokens"],
    content_policy: &["safety", "blocked"],
};

/// What kind of failure a Google API error is: `body` an error response
/// (`{"error": {"code", "message", "status", "details"}}`, alone or in a
/// list) of HTTP `status`, or the data of a stream event carrying an error
/// with the status its [`Fault`] stands for (see [`stream_error`]).
///
/// A status that settles it (401–404, 408, 429, 5xx) comes first; then an
/// `ErrorInfo` detail with reason `API_KEY_INVALID` (sent with 400) is
/// [`Auth`](ErrorClass::Auth), and so is `FAILED_PRECONDITION` (the API is
/// not open to the gateway's project: its region, its billing); other status
/// names are read as the status they stand for (`RESOURCE_EXHAUSTED` is
/// [`RateLimited`](ErrorClass::RateLimited), `UNAVAILABLE`
/// [`Overloaded`](ErrorClass::Overloaded)). An `INVALID_ARGUMENT` is a
/// context length when its message says the input token count exceeds the
/// maximum, a content policy when it speaks of safety or of a block. A body of
/// another shape (or with an unknown status name) is classed by its status,
/// and its text read the same way for a 400, 413 or 422.
pub fn classify_error(status: u16, body: &[u8]) -> ErrorClass {
    if let Some(class) = ErrorClass::settled_by(status) {
        return class;
    }
    match parse(body) {
        Some(error) => class_of(status, &error),
        None => ErrorClass::of_text(status, body, &WORDING),
    }
}

/// The class of a Google error of a status that does not settle it.
fn class_of(status: u16, error: &Status) -> ErrorClass {
    let name = error.status.as_deref();
    if key_invalid(error) || name == Some("FAILED_PRECONDITION") {
        return ErrorClass::Auth;
    }
    let named = name.and_then(status_of_name).unwrap_or(status);
    ErrorClass::of_status(named).or_worded(status, &error.message, &WORDING)
}

/// The first error of a Google error body, `None` when it is not one.
fn parse(body: &[u8]) -> Option<Status> {
    match serde_json::from_slice::<Body>(body).ok()? {
        Body::One(wrapped) => Some(wrapped.error),
        Body::Many(list) => list.into_iter().next().map(|w| w.error),
    }
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
    error
        .code
        .or_else(|| error.status.as_deref().and_then(status_of_name))
        .unwrap_or(500)
}

/// The HTTP status Google answers a status name with; `None` for the other
/// names (`INTERNAL`, `UNKNOWN`, …), which stand for a 500.
fn status_of_name(name: &str) -> Option<u16> {
    match name {
        "INVALID_ARGUMENT" | "FAILED_PRECONDITION" | "OUT_OF_RANGE" => Some(400),
        "UNAUTHENTICATED" => Some(401),
        "PERMISSION_DENIED" => Some(403),
        "NOT_FOUND" => Some(404),
        "RESOURCE_EXHAUSTED" => Some(429),
        "UNAVAILABLE" => Some(503),
        "DEADLINE_EXCEEDED" => Some(504),
        _ => None,
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
    use crate::error_class::{assert_classes, assert_stream_classes};

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

    /// A Google error body.
    fn google(code: u16, status: &str, message: &str) -> String {
        format!(r#"{{"error":{{"code":{code},"message":"{message}","status":"{status}"}}}}"#)
    }

    #[test]
    fn refusals_told_apart_by_their_words() {
        let too_long = "The input token count (1205467) exceeds the maximum number of tokens allowed (1048575).";
        assert_classes(
            classify_error,
            &[
                (
                    400,
                    google(400, "INVALID_ARGUMENT", too_long),
                    ErrorClass::ContextLength,
                ),
                (
                    400,
                    format!("[{}]", google(400, "INVALID_ARGUMENT", too_long)),
                    ErrorClass::ContextLength,
                ),
                (
                    400,
                    google(
                        400,
                        "INVALID_ARGUMENT",
                        "The request was blocked because it violates the safety settings.",
                    ),
                    ErrorClass::ContentPolicy,
                ),
                (
                    400,
                    google(
                        400,
                        "INVALID_ARGUMENT",
                        r#"Invalid JSON payload received. Unknown name \"foo\": Cannot find field."#,
                    ),
                    ErrorClass::InvalidRequest,
                ),
            ],
        );
    }

    #[test]
    fn refusals_of_the_gateway_with_400_are_auth() {
        assert_classes(
            classify_error,
            &[
                (
                    400,
                    r#"{"error":{"code":400,"message":"API key not valid. Please pass a valid API key.","status":"INVALID_ARGUMENT","details":[{"@type":"type.googleapis.com/google.rpc.ErrorInfo","reason":"API_KEY_INVALID","domain":"googleapis.com","metadata":{"service":"generativelanguage.googleapis.com"}}]}}"#.to_owned(),
                    ErrorClass::Auth,
                ),
                (
                    400,
                    google(
                        400,
                        "FAILED_PRECONDITION",
                        "User location is not supported for the API use.",
                    ),
                    ErrorClass::Auth,
                ),
            ],
        );
    }

    #[test]
    fn status_names_and_statuses() {
        assert_classes(
            classify_error,
            &[
                (
                    429,
                    r#"{"error":{"code":429,"message":"You exceeded your current quota, please check your plan and billing details.","status":"RESOURCE_EXHAUSTED","details":[{"@type":"type.googleapis.com/google.rpc.QuotaFailure","violations":[{"quotaMetric":"generativelanguage.googleapis.com/generate_content_free_tier_requests","quotaId":"GenerateRequestsPerMinutePerProjectPerModel-FreeTier"}]},{"@type":"type.googleapis.com/google.rpc.RetryInfo","retryDelay":"21s"}]}}"#.to_owned(),
                    ErrorClass::RateLimited,
                ),
                (
                    503,
                    google(503, "UNAVAILABLE", "The model is overloaded. Please try again later."),
                    ErrorClass::Overloaded,
                ),
                (
                    403,
                    google(
                        403,
                        "PERMISSION_DENIED",
                        "Method doesn't allow unregistered callers (callers without established identity). Please use API Key or other form of API consumer identity to call this API.",
                    ),
                    ErrorClass::Auth,
                ),
                (
                    401,
                    google(401, "UNAUTHENTICATED", "Request had invalid authentication credentials."),
                    ErrorClass::Auth,
                ),
                (
                    404,
                    google(
                        404,
                        "NOT_FOUND",
                        "models/gemini-9.0-pro is not found for API version v1beta, or is not supported for generateContent. Call ListModels to see the list of available models and their supported methods.",
                    ),
                    ErrorClass::NotFound,
                ),
                (
                    500,
                    google(
                        500,
                        "INTERNAL",
                        "An internal error has occurred. Please retry or report in https://developers.generativeai.google/guide/troubleshooting",
                    ),
                    ErrorClass::Server,
                ),
                (
                    504,
                    google(504, "DEADLINE_EXCEEDED", "Deadline expired before operation could complete."),
                    ErrorClass::Server,
                ),
                // A name the status does not settle still tells.
                (400, google(400, "RESOURCE_EXHAUSTED", "quota"), ErrorClass::RateLimited),
                // An unknown name leaves it to the status.
                (409, google(409, "ABORTED", "conflict"), ErrorClass::InvalidRequest),
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
                    r#"{"error":{"code":503,"message":"The model is overloaded.","status":"UNAVAILABLE"}}"#,
                    ErrorClass::Overloaded,
                ),
                (
                    r#"{"error":{"message":"quota","status":"RESOURCE_EXHAUSTED"}}"#,
                    ErrorClass::RateLimited,
                ),
                (
                    r#"{"error":{"message":"Internal error","status":"INTERNAL"}}"#,
                    ErrorClass::Server,
                ),
                (
                    r#"{"error":{"code":400,"message":"The input token count (1100000) exceeds the maximum number of tokens allowed (1048576).","status":"INVALID_ARGUMENT"}}"#,
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
                    404,
                    "<!DOCTYPE html><html lang=en><title>Error 404 (Not Found)!!1</title></html>",
                    ErrorClass::NotFound,
                ),
                (502, "<html>Bad Gateway</html>", ErrorClass::Server),
                (503, "", ErrorClass::Overloaded),
                (429, "Too Many Requests", ErrorClass::RateLimited),
                (401, "Unauthorized", ErrorClass::Auth),
                (
                    400,
                    "The input token count exceeds the maximum number of tokens allowed",
                    ErrorClass::ContextLength,
                ),
                (400, "Bad Request", ErrorClass::InvalidRequest),
            ],
        );
    }
}
