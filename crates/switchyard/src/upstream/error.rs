//! How a call to a provider can fail, and what the client is told.

use std::time::Duration;

use axum::http::StatusCode;
use switchyard_providers::ErrorClass;
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
        /// What the error is, as the provider's dialect classes it.
        class: ErrorClass,
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
    /// This process ran out of something it needed to call the provider (file
    /// descriptors, memory, local ports): not the provider's fault, so it
    /// counts against no deployment, and is not tried again.
    #[error("the gateway could not call provider `{provider}`: {detail}")]
    Local {
        /// Provider name.
        provider: String,
        /// What the system said.
        detail: String,
    },
    /// The connection to the provider broke off mid-answer (a reset, a
    /// malformed chunk): what the transport said goes to the log, never to
    /// the client.
    #[error("provider `{provider}` broke off its answer: {detail}")]
    Broken {
        /// Provider name.
        provider: String,
        /// What the connection said (scrubbed of the provider's keys).
        detail: String,
    },
    /// The provider broke the protocol (a stream that ends unfinished, an
    /// unreadable event).
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
            Self::Connect { .. }
            | Self::Broken { .. }
            | Self::Protocol { .. }
            | Self::TooLarge { .. } => StatusCode::BAD_GATEWAY,
            Self::KeysResting { .. } => StatusCode::TOO_MANY_REQUESTS,
            Self::Local { .. } => StatusCode::SERVICE_UNAVAILABLE,
            Self::Timeout { .. } => StatusCode::GATEWAY_TIMEOUT,
            Self::Status { class, .. } => match class {
                // The client's own request was refused: same answer, same status class.
                ErrorClass::InvalidRequest
                | ErrorClass::ContextLength
                | ErrorClass::ContentPolicy => StatusCode::BAD_REQUEST,
                ErrorClass::RateLimited => StatusCode::TOO_MANY_REQUESTS,
                ErrorClass::Overloaded => StatusCode::SERVICE_UNAVAILABLE,
                // The gateway's provider credentials refused, a misconfigured
                // upstream model, a provider failure: all the gateway's problem.
                ErrorClass::Auth | ErrorClass::NotFound | ErrorClass::Server => {
                    StatusCode::BAD_GATEWAY
                }
            },
        }
    }

    /// A bounded label for logs and metrics.
    pub fn kind(&self) -> &'static str {
        match self {
            Self::Connect { .. } => "upstream_connect",
            Self::Timeout { .. } => "upstream_timeout",
            Self::Broken { .. } | Self::Protocol { .. } => "upstream_protocol",
            Self::TooLarge { .. } => "upstream_too_large",
            Self::KeysResting { .. } => "upstream_rate_limited",
            Self::Local { .. } => "local_resources",
            Self::Status { class, .. } => match class {
                ErrorClass::RateLimited => "upstream_rate_limited",
                ErrorClass::InvalidRequest
                | ErrorClass::ContextLength
                | ErrorClass::ContentPolicy
                | ErrorClass::Auth
                | ErrorClass::NotFound => "upstream_4xx",
                ErrorClass::Overloaded => "upstream_overloaded",
                ErrorClass::Server => "upstream_5xx",
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
            Self::Broken { .. } | Self::Protocol { .. } => Some(FailureClass::ServerError),
            Self::TooLarge { .. } | Self::Local { .. } => None,
            Self::KeysResting { .. } => Some(FailureClass::RateLimited),
            Self::Status { class, .. } => match class {
                ErrorClass::RateLimited => Some(FailureClass::RateLimited),
                ErrorClass::Overloaded => Some(FailureClass::Overloaded),
                ErrorClass::Auth => Some(FailureClass::UpstreamAuth),
                ErrorClass::ContextLength => Some(FailureClass::ContextLength),
                ErrorClass::ContentPolicy => Some(FailureClass::ContentPolicy),
                // A misconfigured upstream model or URL: another deployment may serve.
                ErrorClass::NotFound | ErrorClass::Server => Some(FailureClass::ServerError),
                ErrorClass::InvalidRequest => None,
            },
        }
    }

    /// Seconds to wait before retrying, when the provider said so.
    pub fn retry_after(&self) -> Option<u64> {
        match self {
            Self::Status { retry_after, .. } => *retry_after,
            Self::KeysResting { retry_after, .. } => Some(*retry_after),
            // Resources come back quickly, or the process is in trouble.
            Self::Local { .. } => Some(1),
            Self::Connect { .. }
            | Self::Timeout { .. }
            | Self::TooLarge { .. }
            | Self::Broken { .. }
            | Self::Protocol { .. } => None,
        }
    }

    /// Whether the provider was not called because all its keys rest.
    pub fn keys_resting(&self) -> bool {
        matches!(self, Self::KeysResting { .. })
    }

    /// Whether the failure happened inside this process (no descriptor, no
    /// memory, every key resting): it says nothing of the deployment, and a
    /// retry after it spends no retry budget.
    pub fn is_local(&self) -> bool {
        matches!(self, Self::Local { .. } | Self::KeysResting { .. })
    }

    /// The error as the client sees it, in OpenAI's shape.
    pub fn to_openai(&self) -> ErrorObject {
        let (status, class, error, provider) = match self {
            Self::Status {
                status,
                class,
                error,
                provider,
                ..
            } => (status, class, error, provider),
            // The cause (addresses, TLS details) goes to the log, not to the client.
            Self::Connect { provider, .. } => {
                return server_error(
                    format!("provider `{provider}` could not be reached"),
                    "upstream_error",
                );
            }
            Self::Timeout { .. } => return server_error(self.to_string(), "upstream_timeout"),
            Self::KeysResting { .. } => {
                return ErrorObject {
                    message: self.to_string(),
                    kind: Some("rate_limit_error".to_owned()),
                    param: None,
                    code: Some("rate_limit_exceeded".to_owned()),
                };
            }
            Self::Local { .. } => {
                return server_error(
                    "the gateway is out of resources for the moment".to_owned(),
                    "service_unavailable",
                );
            }
            Self::Broken { provider, .. } => {
                return server_error(
                    format!("provider `{provider}` broke off its answer"),
                    "upstream_error",
                );
            }
            Self::TooLarge { .. } | Self::Protocol { .. } => {
                return server_error(self.to_string(), "upstream_error");
            }
        };
        match class {
            // The client's own request was refused: the provider's words, in its shape.
            ErrorClass::InvalidRequest
            | ErrorClass::ContextLength
            | ErrorClass::ContentPolicy
            | ErrorClass::RateLimited => ErrorObject {
                message: error.message.clone(),
                kind: error
                    .kind
                    .clone()
                    .or_else(|| Some(default_type(*class).to_owned())),
                param: error.param.clone(),
                code: error.code.clone(),
            },
            ErrorClass::Overloaded => server_error(
                format!(
                    "provider `{provider}` is overloaded ({status}): {}",
                    error.message
                ),
                "upstream_overloaded",
            ),
            // The provider's text may quote part of its key: never pass it on.
            ErrorClass::Auth => server_error(
                format!("provider `{provider}` refused the gateway's credentials ({status})"),
                "upstream_auth_failed",
            ),
            ErrorClass::NotFound | ErrorClass::Server => {
                server_error(self.to_string(), "upstream_error")
            }
        }
    }
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

/// The OpenAI error type for a provider's error that names none.
fn default_type(class: ErrorClass) -> &'static str {
    match class {
        ErrorClass::RateLimited => "rate_limit_error",
        ErrorClass::InvalidRequest
        | ErrorClass::ContextLength
        | ErrorClass::ContentPolicy
        | ErrorClass::Overloaded
        | ErrorClass::Auth
        | ErrorClass::NotFound
        | ErrorClass::Server => "invalid_request_error",
    }
}
