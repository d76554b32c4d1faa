//! The one place where the mock's failures become HTTP answers, shaped like OpenAI's.

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

impl IntoResponse for MockError {
    fn into_response(self) -> Response {
        let (status, message, kind, param, code) = match &self {
            Self::InvalidRequest { message, param } => (
                StatusCode::BAD_REQUEST,
                message.clone(),
                "invalid_request_error",
                *param,
                None,
            ),
            Self::Injected { status, .. } => {
                let (kind, code) = match *status {
                    StatusCode::TOO_MANY_REQUESTS => {
                        ("rate_limit_error", Some("rate_limit_exceeded"))
                    }
                    s if s.is_server_error() => ("server_error", None),
                    _ => ("invalid_request_error", None),
                };
                (
                    *status,
                    format!("mock injected failure ({})", status.as_u16()),
                    kind,
                    None,
                    code,
                )
            }
            Self::TooLarge => (
                StatusCode::PAYLOAD_TOO_LARGE,
                "The request body is too large for the mock.".to_owned(),
                "invalid_request_error",
                None,
                None,
            ),
            Self::Internal(message) => (
                StatusCode::INTERNAL_SERVER_ERROR,
                format!("mock internal error: {message}"),
                "server_error",
                None,
                None,
            ),
            Self::NotFound { method, path } => (
                StatusCode::NOT_FOUND,
                format!("Invalid URL ({method} {path})"),
                "invalid_request_error",
                None,
                None,
            ),
        };
        let body = ErrorBody {
            error: ErrorObject {
                message: &message,
                kind,
                param,
                code,
            },
        };
        let mut response = (status, Json(body)).into_response();
        if let Self::Injected {
            status: StatusCode::TOO_MANY_REQUESTS,
            retry_after: Some(secs),
        } = self
        {
            response
                .headers_mut()
                .insert(header::RETRY_AFTER, HeaderValue::from(secs));
        }
        response
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::panic)]
mod tests {
    use super::*;

    async fn render(error: MockError) -> (StatusCode, Option<String>, serde_json::Value) {
        let response = error.into_response();
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
}
