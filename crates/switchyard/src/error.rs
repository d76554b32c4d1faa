//! Every error a client can see, and the one place where each becomes an HTTP answer.

use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use bytes::Bytes;
use switchyard_providers::anthropic;
use switchyard_providers::openai::{ErrorBody, ErrorObject, InvalidRequest};
use switchyard_providers::translate::Fault;

use crate::admission::limit::LimitError;
use crate::keys::KeyError;
use crate::keys::admin::AdminError;
use crate::limits::{Dimension, LimitRefusal};
use crate::routing::canary::CanaryError;
use crate::upstream::UpstreamError;

/// An error on the request path.
#[derive(Debug, thiserror::Error)]
pub enum GatewayError {
    /// The request is malformed or has an ill-typed field.
    #[error(transparent)]
    InvalidRequest(#[from] InvalidRequest),
    /// The body is larger than `server.max_body_bytes`.
    #[error("the request body exceeds the limit of {limit} bytes")]
    PayloadTooLarge {
        /// The configured limit.
        limit: usize,
    },
    /// The client took longer than `server.body_timeout` to send its body.
    #[error("the request body did not arrive within {0:?}")]
    BodyTimeout(std::time::Duration),
    /// The body could not be read from the client.
    #[error("the request body could not be read: {0}")]
    BodyRead(String),
    /// No key, or a key that is not valid.
    #[error("{0}")]
    Unauthenticated(&'static str),
    /// Authenticated, but not allowed this (the dashboard's playground
    /// without its CSRF token).
    #[error("{0}")]
    Forbidden(&'static str),
    /// A virtual key refused: not valid, or not for this model.
    #[error(transparent)]
    Key(#[from] KeyError),
    /// A rate limit or a budget refused the request before it went upstream.
    #[error(transparent)]
    Limited(#[from] LimitRefusal),
    /// The public model does not exist.
    #[error("the model `{0}` does not exist")]
    ModelNotFound(String),
    /// The model exists but none of its deployments can be called.
    #[error("the model `{0}` has no deployment that can serve it")]
    NoDeployment(String),
    /// The model's deployment speaks a dialect without this endpoint.
    #[error(
        "the model `{model}` is served by a provider of kind `{kind}`, which has no {endpoint} endpoint"
    )]
    EndpointNotServed {
        /// The public model.
        model: String,
        /// The provider's kind.
        kind: &'static str,
        /// The endpoint asked for.
        endpoint: &'static str,
    },
    /// No such route.
    #[error("no route for {0}")]
    RouteNotFound(String),
    /// The route exists, not with this method.
    #[error("{0} is not allowed here")]
    MethodNotAllowed(String),
    /// `x-switchyard-max-cost` is not a non-negative number.
    #[error("x-switchyard-max-cost must be a non-negative number of USD, such as 0.01")]
    BadMaxCost,
    /// No deployment of the model (or its fallbacks) fits `x-switchyard-max-cost`.
    #[error("no deployment of `{model}` is estimated to cost at most {max} USD for this request")]
    OverMaxCost {
        /// The public model.
        model: String,
        /// The limit, in USD.
        max: f64,
    },
    /// The request has passed more gateways than `server.max_hops`: a loop.
    #[error("the request has passed {0} gateways (x-switchyard-hops): a routing loop?")]
    LoopDetected(u32),
    /// The server is shutting down.
    #[error("the gateway is shutting down")]
    ShuttingDown,
    /// The gateway is at its in-flight limit and cannot queue the request.
    #[error("the gateway is overloaded: {0}; try again shortly")]
    Overloaded(&'static str),
    /// A narrower in-flight limit than the gateway's was reached: the
    /// model's or its deployments' (503), or the client key's (429).
    #[error(transparent)]
    OverLimit(#[from] LimitError),
    /// A handler or relay panicked: the gateway's own fault.
    #[error("internal error")]
    Internal,
    /// An operator's action on a canary could not be carried out.
    #[error(transparent)]
    Canary(#[from] CanaryError),
    /// An admin operation on keys or teams was refused.
    #[error(transparent)]
    Admin(#[from] AdminError),
    /// The upstream failed.
    #[error(transparent)]
    Upstream(#[from] UpstreamError),
}

impl GatewayError {
    /// The HTTP status for this error.
    pub fn status(&self) -> StatusCode {
        match self {
            Self::InvalidRequest(_)
            | Self::BodyRead(_)
            | Self::EndpointNotServed { .. }
            | Self::BadMaxCost
            | Self::OverMaxCost { .. } => StatusCode::BAD_REQUEST,
            Self::PayloadTooLarge { .. } => StatusCode::PAYLOAD_TOO_LARGE,
            Self::BodyTimeout(_) => StatusCode::REQUEST_TIMEOUT,
            Self::Unauthenticated(_)
            | Self::Key(KeyError::Invalid | KeyError::Expired | KeyError::Disabled) => {
                StatusCode::UNAUTHORIZED
            }
            Self::Key(KeyError::ModelNotAllowed(_)) | Self::Forbidden(_) => StatusCode::FORBIDDEN,
            Self::Limited(LimitRefusal::Unavailable) => StatusCode::SERVICE_UNAVAILABLE,
            Self::Limited(_) => StatusCode::TOO_MANY_REQUESTS,
            Self::Key(KeyError::StoreUnavailable) => StatusCode::SERVICE_UNAVAILABLE,
            Self::ModelNotFound(_) | Self::RouteNotFound(_) => StatusCode::NOT_FOUND,
            Self::MethodNotAllowed(_) => StatusCode::METHOD_NOT_ALLOWED,
            Self::NoDeployment(_)
            | Self::ShuttingDown
            | Self::Overloaded(_)
            | Self::OverLimit(LimitError::Model(_) | LimitError::Deployments(_)) => {
                StatusCode::SERVICE_UNAVAILABLE
            }
            Self::OverLimit(LimitError::Key) => StatusCode::TOO_MANY_REQUESTS,
            Self::Internal => StatusCode::INTERNAL_SERVER_ERROR,
            Self::LoopDetected(_) => StatusCode::LOOP_DETECTED,
            Self::Canary(e) => e.status(),
            Self::Admin(e) => admin_answer(e).status,
            Self::Upstream(e) => e.status(),
        }
    }

    /// A short, bounded name for logs and metric labels.
    pub fn kind(&self) -> &'static str {
        match self {
            Self::InvalidRequest(_) => "invalid_request",
            Self::PayloadTooLarge { .. } => "payload_too_large",
            Self::BodyRead(_) => "body_read",
            Self::BodyTimeout(_) => "body_timeout",
            Self::Unauthenticated(_)
            | Self::Key(KeyError::Invalid | KeyError::Expired | KeyError::Disabled) => {
                "unauthenticated"
            }
            Self::Key(KeyError::ModelNotAllowed(_)) => "model_not_allowed",
            Self::Forbidden(_) => "forbidden",
            Self::Limited(refusal) => refusal.reason(),
            Self::Key(KeyError::StoreUnavailable) => "key_store_unavailable",
            Self::ModelNotFound(_) => "model_not_found",
            Self::NoDeployment(_) => "no_deployment",
            Self::EndpointNotServed { .. } => "endpoint_not_served",
            Self::RouteNotFound(_) => "route_not_found",
            Self::MethodNotAllowed(_) => "method_not_allowed",
            Self::ShuttingDown => "shutting_down",
            Self::Overloaded(_) => "overloaded",
            Self::OverLimit(e) => e.reason(),
            Self::Internal => "internal_error",
            Self::LoopDetected(_) => "loop_detected",
            Self::BadMaxCost => "invalid_request",
            Self::OverMaxCost { .. } => "over_max_cost",
            Self::Canary(CanaryError::NotFound(_)) => "canary_not_found",
            Self::Canary(CanaryError::Refused { .. }) => "canary_conflict",
            Self::Admin(e) => admin_answer(e).code,
            Self::Upstream(e) => e.kind(),
        }
    }

    /// The OpenAI error object for this error.
    pub fn to_openai(&self) -> ErrorObject {
        let (kind, code, param) = match self {
            Self::InvalidRequest(e) => ("invalid_request_error", None, e.param.clone()),
            Self::PayloadTooLarge { .. } => {
                ("invalid_request_error", Some("request_too_large"), None)
            }
            Self::BodyRead(_) => ("invalid_request_error", None, None),
            Self::BodyTimeout(_) => ("invalid_request_error", Some("request_timeout"), None),
            Self::Unauthenticated(_) | Self::Key(KeyError::Invalid) => {
                ("invalid_request_error", Some("invalid_api_key"), None)
            }
            Self::Key(KeyError::Expired) => {
                ("invalid_request_error", Some("expired_api_key"), None)
            }
            Self::Key(KeyError::Disabled) => {
                ("invalid_request_error", Some("disabled_api_key"), None)
            }
            Self::Key(KeyError::ModelNotAllowed(_)) => (
                "permission_error",
                Some("model_not_allowed"),
                Some("model".to_owned()),
            ),
            Self::Key(KeyError::StoreUnavailable) => {
                ("server_error", Some("key_store_unavailable"), None)
            }
            Self::Forbidden(_) => ("permission_error", Some("forbidden"), None),
            Self::Limited(LimitRefusal::Rate {
                dimension: Dimension::Requests,
                ..
            }) => ("requests", Some("rate_limit_exceeded"), None),
            Self::Limited(
                LimitRefusal::Rate {
                    dimension: Dimension::Tokens,
                    ..
                }
                | LimitRefusal::TooLarge { .. },
            ) => ("tokens", Some("rate_limit_exceeded"), None),
            Self::Limited(LimitRefusal::Budget { .. }) => {
                ("insufficient_quota", Some("budget_exceeded"), None)
            }
            Self::Limited(LimitRefusal::Unavailable) => {
                ("server_error", Some("rate_limiter_unavailable"), None)
            }
            Self::ModelNotFound(_) => (
                "invalid_request_error",
                Some("model_not_found"),
                Some("model".to_owned()),
            ),
            Self::EndpointNotServed { .. } => (
                "invalid_request_error",
                Some("unsupported_endpoint"),
                Some("model".to_owned()),
            ),
            Self::RouteNotFound(_) => ("invalid_request_error", Some("unknown_url"), None),
            Self::MethodNotAllowed(_) => {
                ("invalid_request_error", Some("method_not_allowed"), None)
            }
            Self::NoDeployment(_) | Self::ShuttingDown => {
                ("server_error", Some("service_unavailable"), None)
            }
            Self::Internal => ("server_error", Some("internal_error"), None),
            Self::Overloaded(_)
            | Self::OverLimit(LimitError::Model(_) | LimitError::Deployments(_)) => {
                ("server_error", Some("overloaded"), None)
            }
            Self::OverLimit(LimitError::Key) => {
                ("rate_limit_error", Some("rate_limit_exceeded"), None)
            }
            Self::LoopDetected(_) => ("invalid_request_error", Some("loop_detected"), None),
            Self::Canary(CanaryError::NotFound(_)) => {
                ("invalid_request_error", Some("not_found"), None)
            }
            Self::Canary(CanaryError::Refused { .. }) => {
                ("invalid_request_error", Some("conflict"), None)
            }
            Self::BadMaxCost | Self::OverMaxCost { .. } => (
                "invalid_request_error",
                Some("max_cost_exceeded"),
                Some("x-switchyard-max-cost".to_owned()),
            ),
            Self::Admin(e) => {
                let answer = admin_answer(e);
                (answer.kind, Some(answer.code), admin_param(e))
            }
            Self::Upstream(e) => return e.to_openai(),
        };
        ErrorObject {
            message: self.to_string(),
            kind: Some(kind.to_owned()),
            param,
            code: code.map(str::to_owned),
        }
    }
}

impl IntoResponse for GatewayError {
    fn into_response(self) -> Response {
        self.to_response()
    }
}

/// The API dialect a client speaks, which its errors are written in.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Dialect {
    /// OpenAI's: `{"error": {"message", "type", "param", "code"}}`.
    OpenAi,
    /// Anthropic's: `{"type": "error", "error": {"type", "message"}}`.
    Anthropic,
}

/// How an error reaches the client.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Form {
    /// As the body of an error answer.
    Body,
    /// As an event that ends a stream already under way.
    Event,
}

/// The one rendering of every error the client sees: `fault` in `dialect`,
/// as an answer's body or as the event that ends a stream.
///
/// OpenAI: `{"error": {"message", "type", "param", "code"}}`, as a body or as
/// a `data:` event. Anthropic: `{"type": "error", "error": {"type", "message"}}`,
/// as a body or as an `event: error`.
pub fn render(fault: &Fault, dialect: Dialect, form: Form) -> Bytes {
    let body = match dialect {
        Dialect::OpenAi => {
            let body = ErrorBody {
                error: fault.error.clone(),
            };
            // Serializing plain strings cannot fail.
            serde_json::to_vec(&body).unwrap_or_default()
        }
        Dialect::Anthropic => anthropic::error_body(fault.status, &fault.error),
    };
    match (form, dialect) {
        (Form::Body, _) => Bytes::from(body),
        (Form::Event, Dialect::OpenAi) => sse_event(None, &body),
        (Form::Event, Dialect::Anthropic) => sse_event(Some("error"), &body),
    }
}

/// `[event: NAME\n]data: DATA\n\n` (error bodies are one line of JSON).
fn sse_event(name: Option<&str>, data: &[u8]) -> Bytes {
    let mut out = Vec::with_capacity(data.len() + 24);
    if let Some(name) = name {
        out.extend_from_slice(b"event: ");
        out.extend_from_slice(name.as_bytes());
        out.push(b'\n');
    }
    out.extend_from_slice(b"data: ");
    out.extend_from_slice(data);
    out.extend_from_slice(b"\n\n");
    Bytes::from(out)
}

impl GatewayError {
    /// The status for a client of `dialect`: an overloaded provider is 529 to
    /// Anthropic's clients (their SDKs retry it as such), 503 to OpenAI's.
    pub fn status_in(&self, dialect: Dialect) -> StatusCode {
        let overloaded_529 = matches!(
            self,
            Self::Upstream(UpstreamError::Status { status: 529, .. })
        );
        if overloaded_529 && dialect == Dialect::Anthropic {
            StatusCode::from_u16(529).unwrap_or(StatusCode::SERVICE_UNAVAILABLE)
        } else {
            self.status()
        }
    }

    /// The error as a stream or translation sees it.
    pub fn to_fault(&self, dialect: Dialect) -> Fault {
        Fault {
            status: self.status_in(dialect).as_u16(),
            error: self.to_openai(),
        }
    }

    /// The answer for this error in OpenAI's shape (status, body, `retry-after`).
    pub fn to_response(&self) -> Response {
        self.to_response_in(Dialect::OpenAi)
    }

    /// Seconds the client should wait before trying again, when there is a
    /// wait to tell (sent as `retry-after`).
    pub fn retry_after(&self) -> Option<u64> {
        match self {
            Self::Upstream(e) => e.retry_after(),
            Self::Admin(e) => admin_answer(e).retry_after,
            // A slot comes free as soon as any request ends.
            Self::Overloaded(_) | Self::OverLimit(_) | Self::Key(KeyError::StoreUnavailable) => {
                Some(1)
            }
            Self::Limited(refusal) => refusal.retry_after(),
            Self::Key(
                KeyError::Invalid
                | KeyError::Expired
                | KeyError::Disabled
                | KeyError::ModelNotAllowed(_),
            )
            | Self::InvalidRequest(_)
            | Self::PayloadTooLarge { .. }
            | Self::BodyTimeout(_)
            | Self::BodyRead(_)
            | Self::Unauthenticated(_)
            | Self::Forbidden(_)
            | Self::ModelNotFound(_)
            | Self::NoDeployment(_)
            | Self::EndpointNotServed { .. }
            | Self::RouteNotFound(_)
            | Self::MethodNotAllowed(_)
            | Self::BadMaxCost
            | Self::OverMaxCost { .. }
            | Self::LoopDetected(_)
            | Self::ShuttingDown
            | Self::Internal
            | Self::Canary(_) => None,
        }
    }

    /// The event that ends a stream already under way with this error, in `dialect`.
    pub fn to_event_in(&self, dialect: Dialect) -> Bytes {
        render(&self.to_fault(dialect), dialect, Form::Event)
    }

    /// The answer for this error in `dialect` (status, body, `retry-after`).
    pub fn to_response_in(&self, dialect: Dialect) -> Response {
        let fault = self.to_fault(dialect);
        let status = StatusCode::from_u16(fault.status).unwrap_or(StatusCode::BAD_GATEWAY);
        let body = render(&fault, dialect, Form::Body);
        let mut response =
            (status, [(header::CONTENT_TYPE, "application/json")], body).into_response();
        if matches!(
            self,
            Self::PayloadTooLarge { .. } | Self::BodyTimeout(_) | Self::BodyRead(_)
        ) {
            // The rest of the body is still on the wire: this connection cannot carry another request.
            response
                .headers_mut()
                .insert(header::CONNECTION, HeaderValue::from_static("close"));
        }
        if let Some(secs) = self.retry_after() {
            response
                .headers_mut()
                .insert(header::RETRY_AFTER, HeaderValue::from(secs));
        }
        if let Self::Limited(LimitRefusal::Rate { snapshot, .. }) = self {
            crate::limits::headers::write(snapshot, response.headers_mut());
        }
        response.extensions_mut().insert(ErrorKind(self.kind()));
        response
    }
}

/// Marks an error response with its kind, for the access log.
#[derive(Debug, Clone, Copy)]
pub struct ErrorKind(pub &'static str);

// === impl AdminError's answers ===

/// How an admin refusal is answered.
struct AdminAnswer {
    status: StatusCode,
    /// The OpenAI error type.
    kind: &'static str,
    /// The OpenAI error code, also the kind for logs and metrics.
    code: &'static str,
    /// `retry-after`, in seconds.
    retry_after: Option<u64>,
}

impl GatewayError {
    /// The status of an admin refusal (the dashboard's forms answer with it too).
    pub fn admin_status(e: &AdminError) -> StatusCode {
        admin_answer(e).status
    }
}

/// The answer to an admin refusal. The store's connections come back on
/// their own (`retry-after: 1`); the system's randomness may not.
fn admin_answer(e: &AdminError) -> AdminAnswer {
    let unavailable = StatusCode::SERVICE_UNAVAILABLE;
    let (status, code, retry_after) = match e {
        AdminError::Invalid { .. } => (StatusCode::BAD_REQUEST, "invalid_value", None),
        AdminError::NotFound(_) => (StatusCode::NOT_FOUND, "not_found", None),
        AdminError::Conflict { .. } => (StatusCode::CONFLICT, "conflict", None),
        AdminError::TeamHasKeys => (StatusCode::CONFLICT, "team_has_keys", None),
        AdminError::Revoked => (StatusCode::CONFLICT, "key_revoked", None),
        AdminError::Unavailable(_) => (unavailable, "store_unavailable", Some(1)),
        AdminError::NoRandomness(_) => (unavailable, "no_randomness", None),
    };
    let kind = if status.is_server_error() {
        "server_error"
    } else {
        "invalid_request_error"
    };
    AdminAnswer {
        status,
        kind,
        code,
        retry_after,
    }
}

/// The request field an admin refusal is about.
fn admin_param(e: &AdminError) -> Option<String> {
    match e {
        AdminError::Invalid { field, .. } | AdminError::Conflict { field } => {
            Some((*field).to_owned())
        }
        AdminError::NotFound(_)
        | AdminError::TeamHasKeys
        | AdminError::Revoked
        | AdminError::Unavailable(_)
        | AdminError::NoRandomness(_) => None,
    }
}
