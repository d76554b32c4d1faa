//! How a call to a provider can fail, and what the client is told.

use std::time::Duration;

use axum::http::StatusCode;
use switchyard_providers::openai::ErrorObject;

use crate::config::FailureClass;

/// The phase of an upstream call that ran out of time.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TimeoutPhase {
    /// Connecting (TCP + TLS).
    Connect,
    /// Waiting for the response headers.
    FirstByte,
    /// Waiting for the next body chunk.
    Idle,
    /// The whole exchange.
    Total,
}

impl TimeoutPhase {
    fn describe(self) -> &'static str {
        match self {
            Self::Connect => "connect",
            Self::FirstByte => "first byte",
            Self::Idle => "idle",
            Self::Total => "total",
        }
    }
}

/// A failed call to a provider.
#[derive(Debug, Clone, thiserror::Error)]
pub enum UpstreamError {
    /// The provider could not be reached.
    #[error("provider `{provider}` could not be reached: {detail}")]
    Connect {
        /// Provider name.
        provider: String,
        /// What the connection attempt said.
        detail: String,
    },
    /// A timeout ran out.
    #[error("provider `{provider}` timed out ({} timeout of {:?})", phase.describe(), limit)]
    Timeout {
        /// Provider name.
        provider: String,
        /// Which timeout.
        phase: TimeoutPhase,
        /// Its configured length.
        limit: Duration,
    },
    /// The provider answered with an error status.
    #[error("provider `{provider}` answered {status}: {}", error.message)]
    Status {
        /// Provider name.
        provider: String,
        /// The upstream status.
        status: u16,
        /// The provider's error, scrubbed of secrets.
        error: Box<ErrorObject>,
        /// Seconds the provider asked us to wait.
        retry_after: Option<u64>,
    },
    /// Every API key of the provider is resting after a 429: it was not called.
    #[error("every API key of provider `{provider}` is rate limited for {retry_after}s more")]
    KeysResting {
        /// Provider name.
        provider: String,
        /// Seconds until a key is free again.
        retry_after: u64,
    },
    /// A whole answer (one translated between dialects) is larger than
    /// `server.max_response_bytes`: the request's doing, not the provider's
    /// fault, so not tried again elsewhere.
    #[error(
        "the answer of provider `{provider}` is larger than server.max_response_bytes ({limit} bytes)"
    )]
    TooLarge {
        /// Provider name.
        provider: String,
        /// The limit, in bytes.
        limit: usize,
    },
    /// The provider broke the protocol (a cut body, an unreadable stream).
    #[error("provider `{provider}` failed mid-response: {detail}")]
    Protocol {
        /// Provider name.
        provider: String,
        /// What went wrong.
        detail: String,
    },
}

impl UpstreamError {
    /// The status the client gets.
    pub fn status(&self) -> StatusCode {
        match self {
            Self::Connect { .. } | Self::Protocol { .. } | Self::TooLarge { .. } => {
                StatusCode::BAD_GATEWAY
            }
            Self::KeysResting { .. } => StatusCode::TOO_MANY_REQUESTS,
            Self::Timeout { .. } => StatusCode::GATEWAY_TIMEOUT,
            Self::Status { status, .. } => match *status {
                // The client's own request was refused: same answer, same status class.
                400 | 413 | 422 => StatusCode::BAD_REQUEST,
                429 => StatusCode::TOO_MANY_REQUESTS,
                503 | 529 => StatusCode::SERVICE_UNAVAILABLE,
                // 401/403 mean the gateway's provider key is wrong; 404 a misconfigured
                // upstream model; 5xx a provider failure: all the gateway's problem.
                _ => StatusCode::BAD_GATEWAY,
            },
        }
    }

    /// A bounded label for logs and metrics.
    pub fn kind(&self) -> &'static str {
        match self {
            Self::Connect { .. } => "upstream_connect",
            Self::Timeout { .. } => "upstream_timeout",
            Self::Protocol { .. } => "upstream_protocol",
            Self::TooLarge { .. } => "upstream_too_large",
            Self::KeysResting { .. } => "upstream_rate_limited",
            Self::Status { status, .. } => match *status {
                429 => "upstream_rate_limited",
                400..=499 => "upstream_4xx",
                _ => "upstream_5xx",
            },
        }
    }

    /// Why the attempt failed, for the retry decision: `None` when the
    /// provider refused the client's own request (a 400 of its making), which
    /// no other deployment would answer differently.
    pub fn class(&self) -> Option<FailureClass> {
        match self {
            Self::Connect { .. } => Some(FailureClass::Connect),
            Self::Timeout { .. } => Some(FailureClass::Timeout),
            Self::Protocol { .. } => Some(FailureClass::ServerError),
            Self::TooLarge { .. } => None,
            Self::KeysResting { .. } => Some(FailureClass::RateLimited),
            Self::Status { status, error, .. } => match *status {
                429 => Some(FailureClass::RateLimited),
                503 | 529 => Some(FailureClass::Overloaded),
                401 | 403 => Some(FailureClass::UpstreamAuth),
                400 | 413 | 422 if mentions(error, CONTEXT_LENGTH) => {
                    Some(FailureClass::ContextLength)
                }
                400 | 422 if mentions(error, CONTENT_POLICY) => Some(FailureClass::ContentPolicy),
                // A misconfigured upstream model or URL: another deployment may serve.
                404 => Some(FailureClass::ServerError),
                400..=499 => None,
                _ => Some(FailureClass::ServerError),
            },
        }
    }

    /// Seconds to wait before retrying, when the provider said so.
    pub fn retry_after(&self) -> Option<u64> {
        match self {
            Self::Status { retry_after, .. } => *retry_after,
            Self::KeysResting { retry_after, .. } => Some(*retry_after),
            _ => None,
        }
    }

    /// Whether the provider was not called because all its keys rest.
    pub fn keys_resting(&self) -> bool {
        matches!(self, Self::KeysResting { .. })
    }

    /// The error as the client sees it, in OpenAI's shape.
    pub fn to_openai(&self) -> ErrorObject {
        let Self::Status {
            status,
            error,
            provider,
            ..
        } = self
        else {
            return match self {
                // The cause (addresses, TLS details) goes to the log, not to the client.
                Self::Connect { provider, .. } => server_error(
                    format!("provider `{provider}` could not be reached"),
                    "upstream_error",
                ),
                Self::Timeout { .. } => server_error(self.to_string(), "upstream_timeout"),
                Self::KeysResting { .. } => ErrorObject {
                    message: self.to_string(),
                    kind: Some("rate_limit_error".to_owned()),
                    param: None,
                    code: Some("rate_limit_exceeded".to_owned()),
                },
                _ => server_error(self.to_string(), "upstream_error"),
            };
        };
        match self.status() {
            // The client's own request was refused: the provider's words, in its shape.
            StatusCode::BAD_REQUEST | StatusCode::TOO_MANY_REQUESTS => ErrorObject {
                message: error.message.clone(),
                kind: error
                    .kind
                    .clone()
                    .or_else(|| Some(default_type(*status).to_owned())),
                param: error.param.clone(),
                code: error.code.clone(),
            },
            StatusCode::SERVICE_UNAVAILABLE => server_error(
                format!(
                    "provider `{provider}` is overloaded ({status}): {}",
                    error.message
                ),
                "upstream_overloaded",
            ),
            // The provider's text may quote part of its key: never pass it on.
            _ if matches!(status, 401 | 403) => server_error(
                format!("provider `{provider}` refused the gateway's credentials ({status})"),
                "upstream_auth_failed",
            ),
            _ => server_error(self.to_string(), "upstream_error"),
        }
    }
}

/// How providers word a prompt longer than the context window (OpenAI's code,
/// Anthropic's and Gemini's messages).
const CONTEXT_LENGTH: &[&str] = &[
    "context_length_exceeded",
    "context length",
    "context window",
    "prompt is too long",
    "maximum number of tokens",
];

/// How providers word a refusal by their content policy.
const CONTENT_POLICY: &[&str] = &[
    "content_policy_violation",
    "content_filter",
    "content management policy",
    "safety",
];

/// Whether the error's code or message holds one of `needles` (ASCII, any case).
fn mentions(error: &ErrorObject, needles: &[&str]) -> bool {
    let code = error.code.as_deref().unwrap_or_default();
    let message = error.message.to_ascii_lowercase();
    needles
        .iter()
        .any(|needle| code == *needle || message.contains(needle))
}

/// An OpenAI `server_error` object with `code`.
fn server_error(message: String, code: &str) -> ErrorObject {
    ErrorObject {
        message,
        kind: Some("server_error".to_owned()),
        param: None,
        code: Some(code.to_owned()),
    }
}

fn default_type(status: u16) -> &'static str {
    match status {
        429 => "rate_limit_error",
        _ => "invalid_request_error",
    }
}
