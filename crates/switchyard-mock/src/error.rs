//! The one place where the mock's failures become HTTP answers, in the error shape of
//! the dialect the route speaks: OpenAI's, Anthropic's or Google's.

use axum::Json;
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde::Serialize;

/// Why the mock answers with an error instead of a completion.
#[derive(Debug)]
pub(crate) enum MockError {
    /// The request is malformed (400); `param` names the offending field.
    InvalidRequest {
        /// What is wrong, for a human.
        message: String,
        /// The field at fault, when there is one.
        param: Option<&'static str>,
    },
    /// A failure injected by `--error-rate`.
    Injected {
        /// `--error-status`.
        status: StatusCode,
        /// `--retry-after`, sent with 429 only.
        retry_after: Option<u64>,
    },
    /// The request body is larger than the mock reads (413).
    TooLarge,
    /// Something that cannot fail did: a bug in the mock (500).
    Internal(String),
    /// No route for this method and path (404).
    NotFound {
        /// The request line, echoed in the message as OpenAI does.
        method: String,
        /// The path asked for.
        path: String,
    },
}

/// The JSON body of a request, or a 400 saying why it is not one.
pub(crate) fn parse_body<T: serde::de::DeserializeOwned>(body: &[u8]) -> Result<T, MockError> {
    serde_json::from_slice(body).map_err(|e| MockError::malformed(&e))
}

/// The request's `model`, which every endpoint requires.
pub(crate) fn required_model(model: Option<&str>) -> Result<&str, MockError> {
    model.ok_or_else(|| MockError::invalid("you must provide a model parameter", "model"))
}

impl MockError {
    /// A 400 about the field `param`.
    pub(crate) fn invalid(message: impl Into<String>, param: &'static str) -> Self {
        Self::InvalidRequest {
            message: message.into(),
            param: Some(param),
        }
    }

    /// A 500 for a failure that should not happen.
    pub(crate) fn internal(error: impl std::fmt::Display) -> Self {
        Self::Internal(error.to_string())
    }

    /// A 400 for a body that is not the JSON the endpoint expects.
    pub(crate) fn malformed(error: &serde_json::Error) -> Self {
        Self::InvalidRequest {
            message: format!("We could not parse the JSON body of your request: {error}"),
            param: None,
        }
    }
}

/// The wire format a route speaks, and so the shape of its errors.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Dialect {
    /// `{"error": {"message", "type", "param", "code"}}`.
    OpenAi,
    /// `{"type": "error", "error": {"type", "message"}}`.
    Anthropic,
    /// `{"error": {"code", "message", "status"}}`.
    Gemini,
}

impl Dialect {
    /// The dialect of the route at `path` (OpenAI's for paths no route serves).
    pub(crate) fn of_path(path: &str) -> Self {
        if path == "/v1/messages" {
            Self::Anthropic
        } else if path.starts_with("/v1beta/") {
            Self::Gemini
        } else {
            Self::OpenAi
        }
    }
}

/// OpenAI's error envelope: `{"error": {...}}`.
#[derive(Serialize)]
struct ErrorBody<'a> {
    error: ErrorObject<'a>,
}

/// OpenAI's `Error` object; every field is always present, `param` and `code` may be null.
#[derive(Serialize)]
struct ErrorObject<'a> {
    message: &'a str,
    #[serde(rename = "type")]
    kind: &'a str,
    param: Option<&'a str>,
    code: Option<&'a str>,
}

/// Anthropic's `ErrorResponse`.
#[derive(Serialize)]
struct AnthropicError<'a> {
    #[serde(rename = "type")]
    kind: &'static str,
    error: AnthropicErrorObject<'a>,
}

#[derive(Serialize)]
struct AnthropicErrorObject<'a> {
    #[serde(rename = "type")]
    kind: &'static str,
    message: &'a str,
}

/// Google's error envelope: a `google.rpc.Status` under `error`.
#[derive(Serialize)]
struct GoogleError<'a> {
    error: GoogleStatus<'a>,
}

#[derive(Serialize)]
struct GoogleStatus<'a> {
    code: u16,
    message: &'a str,
    status: &'static str,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    details: Vec<RetryInfo>,
}

/// `google.rpc.RetryInfo`, sent with a 429 when `--retry-after` is set.
#[derive(Serialize)]
struct RetryInfo {
    #[serde(rename = "@type")]
    kind: &'static str,
    #[serde(rename = "retryDelay")]
    retry_delay: String,
}

/// Anthropic's error `type` for a status.
fn anthropic_type(status: StatusCode) -> &'static str {
    match status.as_u16() {
        400 => "invalid_request_error",
        401 => "authentication_error",
        402 => "billing_error",
        403 => "permission_error",
        404 => "not_found_error",
        413 => "request_too_large",
        429 => "rate_limit_error",
        504 => "timeout_error",
        529 => "overloaded_error",
        500..=599 => "api_error",
        _ => "invalid_request_error",
    }
}

/// Google's canonical `status` for an HTTP status.
fn google_status(status: StatusCode) -> &'static str {
    match status.as_u16() {
        400 => "INVALID_ARGUMENT",
        401 => "UNAUTHENTICATED",
        403 => "PERMISSION_DENIED",
        404 => "NOT_FOUND",
        409 => "ABORTED",
        429 => "RESOURCE_EXHAUSTED",
        499 => "CANCELLED",
        501 => "UNIMPLEMENTED",
        503 => "UNAVAILABLE",
        504 => "DEADLINE_EXCEEDED",
        500..=599 => "INTERNAL",
        _ => "FAILED_PRECONDITION",
    }
}

impl MockError {
    /// The HTTP status of the answer.
    fn status(&self) -> StatusCode {
        match self {
            Self::InvalidRequest { .. } => StatusCode::BAD_REQUEST,
            Self::Injected { status, .. } => *status,
            Self::TooLarge => StatusCode::PAYLOAD_TOO_LARGE,
            Self::Internal(_) => StatusCode::INTERNAL_SERVER_ERROR,
            Self::NotFound { .. } => StatusCode::NOT_FOUND,
        }
    }

    /// What went wrong, for a human.
    fn message(&self) -> String {
        match self {
            Self::InvalidRequest { message, .. } => message.clone(),
            Self::Injected { status, .. } => {
                format!("mock injected failure ({})", status.as_u16())
            }
            Self::TooLarge => "The request body is too large for the mock.".to_owned(),
            Self::Internal(message) => format!("mock internal error: {message}"),
            Self::NotFound { method, path } => format!("Invalid URL ({method} {path})"),
        }
    }

    /// OpenAI's `type`, `param` and `code`.
    fn openai_fields(&self) -> (&'static str, Option<&'static str>, Option<&'static str>) {
        match self {
            Self::InvalidRequest { param, .. } => ("invalid_request_error", *param, None),
            Self::Injected { status, .. } => match *status {
                StatusCode::TOO_MANY_REQUESTS => {
                    ("rate_limit_error", None, Some("rate_limit_exceeded"))
                }
                s if s.is_server_error() => ("server_error", None, None),
                _ => ("invalid_request_error", None, None),
            },
            Self::Internal(_) => ("server_error", None, None),
            Self::TooLarge | Self::NotFound { .. } => ("invalid_request_error", None, None),
        }
    }

    /// `--retry-after`, when this is an injected 429 and it is set.
    fn retry_after(&self) -> Option<u64> {
        match self {
            Self::Injected {
                status: StatusCode::TOO_MANY_REQUESTS,
                retry_after,
            } => *retry_after,
            _ => None,
        }
    }

    /// The answer, in `dialect`'s error shape; an injected 429 carries `retry-after`.
    pub(crate) fn render(self, dialect: Dialect) -> Response {
        let status = self.status();
        let message = self.message();
        let retry_after = self.retry_after();
        let mut response = match dialect {
            Dialect::OpenAi => {
                let (kind, param, code) = self.openai_fields();
                let error = ErrorObject {
                    message: &message,
                    kind,
                    param,
                    code,
                };
                (status, Json(ErrorBody { error })).into_response()
            }
            Dialect::Anthropic => {
                let error = AnthropicErrorObject {
                    kind: anthropic_type(status),
                    message: &message,
                };
                let body = AnthropicError {
                    kind: "error",
                    error,
                };
                (status, Json(body)).into_response()
            }
            Dialect::Gemini => {
                let details = retry_after
                    .map(|secs| RetryInfo {
                        kind: "type.googleapis.com/google.rpc.RetryInfo",
                        retry_delay: format!("{secs}s"),
                    })
                    .into_iter()
                    .collect();
                let error = GoogleStatus {
                    code: status.as_u16(),
                    message: &message,
                    status: google_status(status),
                    details,
                };
                (status, Json(GoogleError { error })).into_response()
            }
        };
        if let Some(secs) = retry_after {
            response
                .headers_mut()
                .insert(header::RETRY_AFTER, HeaderValue::from(secs));
        }
        response
    }
}

impl IntoResponse for MockError {
    fn into_response(self) -> Response {
        self.render(Dialect::OpenAi)
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::panic)]
mod tests {
    use super::*;

    async fn render(error: MockError) -> (StatusCode, Option<String>, serde_json::Value) {
        render_in(error, Dialect::OpenAi).await
    }

    async fn render_in(
        error: MockError,
        dialect: Dialect,
    ) -> (StatusCode, Option<String>, serde_json::Value) {
        let response = error.render(dialect);
        let status = response.status();
        let retry = response
            .headers()
            .get(header::RETRY_AFTER)
            .map(|v| v.to_str().unwrap().to_owned());
        let body = axum::body::to_bytes(response.into_body(), 1 << 16)
            .await
            .unwrap();
        (status, retry, serde_json::from_slice(&body).unwrap())
    }

    #[tokio::test]
    async fn injected_429_is_a_rate_limit_error_with_retry_after() {
        let (status, retry, body) = render(MockError::Injected {
            status: StatusCode::TOO_MANY_REQUESTS,
            retry_after: Some(3),
        })
        .await;
        assert_eq!(status, 429);
        assert_eq!(retry.as_deref(), Some("3"));
        assert_eq!(
            body,
            serde_json::json!({"error": {
                "message": "mock injected failure (429)",
                "type": "rate_limit_error",
                "param": null,
                "code": "rate_limit_exceeded",
            }})
        );
    }

    #[tokio::test]
    async fn injected_kinds_follow_the_status() {
        for (status, kind) in [
            (StatusCode::INTERNAL_SERVER_ERROR, "server_error"),
            (StatusCode::SERVICE_UNAVAILABLE, "server_error"),
            (StatusCode::BAD_REQUEST, "invalid_request_error"),
        ] {
            let (got, retry, body) = render(MockError::Injected {
                status,
                retry_after: Some(3),
            })
            .await;
            assert_eq!(got, status);
            assert_eq!(retry, None, "retry-after is for 429 only");
            assert_eq!(body["error"]["type"], kind);
            assert_eq!(body["error"]["code"], serde_json::Value::Null);
        }
    }

    #[tokio::test]
    async fn invalid_request_names_the_param() {
        let (status, _, body) = render(MockError::invalid("missing model", "model")).await;
        assert_eq!(status, 400);
        assert_eq!(
            body,
            serde_json::json!({"error": {
                "message": "missing model",
                "type": "invalid_request_error",
                "param": "model",
                "code": null,
            }})
        );
    }

    fn injected(code: u16, retry_after: Option<u64>) -> MockError {
        MockError::Injected {
            status: StatusCode::from_u16(code).unwrap(),
            retry_after,
        }
    }

    #[tokio::test]
    async fn anthropic_types_follow_the_status() {
        for (code, kind) in [
            (400, "invalid_request_error"),
            (401, "authentication_error"),
            (402, "billing_error"),
            (403, "permission_error"),
            (404, "not_found_error"),
            (413, "request_too_large"),
            (422, "invalid_request_error"),
            (429, "rate_limit_error"),
            (500, "api_error"),
            (502, "api_error"),
            (504, "timeout_error"),
            (529, "overloaded_error"),
        ] {
            let (status, retry, body) =
                render_in(injected(code, Some(2)), Dialect::Anthropic).await;
            assert_eq!(status, code);
            assert_eq!(retry.is_some(), code == 429, "{code}");
            assert_eq!(
                body,
                serde_json::json!({"type": "error", "error": {
                    "type": kind,
                    "message": format!("mock injected failure ({code})"),
                }})
            );
        }
    }

    #[tokio::test]
    async fn google_statuses_follow_the_code_and_429_says_when_to_retry() {
        for (code, name) in [
            (400, "INVALID_ARGUMENT"),
            (401, "UNAUTHENTICATED"),
            (403, "PERMISSION_DENIED"),
            (404, "NOT_FOUND"),
            (500, "INTERNAL"),
            (503, "UNAVAILABLE"),
            (504, "DEADLINE_EXCEEDED"),
        ] {
            let (status, retry, body) = render_in(injected(code, Some(2)), Dialect::Gemini).await;
            assert_eq!(status, code);
            assert_eq!(retry, None);
            assert_eq!(
                body,
                serde_json::json!({"error": {
                    "code": code,
                    "message": format!("mock injected failure ({code})"),
                    "status": name,
                }})
            );
        }
        let (_, retry, body) = render_in(injected(429, Some(7)), Dialect::Gemini).await;
        assert_eq!(retry.as_deref(), Some("7"));
        assert_eq!(
            body,
            serde_json::json!({"error": {
                "code": 429,
                "message": "mock injected failure (429)",
                "status": "RESOURCE_EXHAUSTED",
                "details": [{"@type": "type.googleapis.com/google.rpc.RetryInfo", "retryDelay": "7s"}],
            }})
        );
    }

    #[test]
    fn dialects_by_path() {
        assert_eq!(Dialect::of_path("/v1/messages"), Dialect::Anthropic);
        assert_eq!(
            Dialect::of_path("/v1beta/models/g:generateContent"),
            Dialect::Gemini
        );
        assert_eq!(Dialect::of_path("/v1/chat/completions"), Dialect::OpenAi);
        assert_eq!(Dialect::of_path("/nowhere"), Dialect::OpenAi);
    }
}
