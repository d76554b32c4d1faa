//! [`ErrorType`]: the closed list of what went wrong with a request, for the
//! `error_type` label — mapped here, and only here, from the error's kind
//! ([`GatewayError::kind`](crate::error::GatewayError::kind)) and from how
//! the request ended.

use crate::request::{Ending, RequestRecord};

/// What went wrong with a request, as `switchyard_requests_total{error_type}`
/// says it (`none` for a request that was answered whole).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ErrorType {
    /// The client's request is wrong: malformed, too large, too slow to
    /// arrive, for a model or route that does not exist, over its own
    /// `x-switchyard-max-cost`, or asking for an answer larger than the
    /// gateway relays whole.
    ClientError,
    /// No key, a key that is not valid, or a key not allowed the model.
    Auth,
    /// Refused by one of the gateway's own limits: requests or tokens per
    /// minute, or the in-flight limits of the key, the model, its
    /// deployments or the gateway.
    RateLimited,
    /// A key's or team's budget is spent.
    Budget,
    /// A provider did not answer in time.
    UpstreamTimeout,
    /// A provider could not be reached.
    UpstreamConnect,
    /// A provider refused the request (its 4xx, the gateway's credentials
    /// refused included).
    Upstream4xx,
    /// A provider failed (its 5xx, a broken answer), or every deployment was
    /// passed over, its breaker open or its health down.
    Upstream5xx,
    /// A provider is overloaded or rate limits the gateway (its 429, 503 or
    /// 529 of that class, or every one of its keys resting after a 429).
    UpstreamOverloaded,
    /// The answer had begun (its status sent) when it broke off.
    StreamCut,
    /// The client went away before the answer was whole.
    ClientClosed,
    /// The gateway's own fault or state: a panic, the key store or the
    /// shared limiter unavailable, out of local resources, shutting down, a
    /// routing loop between gateways.
    Internal,
}

impl ErrorType {
    /// Every member, in the order of the docs.
    pub const ALL: [Self; 12] = [
        Self::ClientError,
        Self::Auth,
        Self::RateLimited,
        Self::Budget,
        Self::UpstreamTimeout,
        Self::UpstreamConnect,
        Self::Upstream4xx,
        Self::Upstream5xx,
        Self::UpstreamOverloaded,
        Self::StreamCut,
        Self::ClientClosed,
        Self::Internal,
    ];

    /// The label value.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::ClientError => "client_error",
            Self::Auth => "auth",
            Self::RateLimited => "rate_limited",
            Self::Budget => "budget",
            Self::UpstreamTimeout => "upstream_timeout",
            Self::UpstreamConnect => "upstream_connect",
            Self::Upstream4xx => "upstream_4xx",
            Self::Upstream5xx => "upstream_5xx",
            Self::UpstreamOverloaded => "upstream_overloaded",
            Self::StreamCut => "stream_cut",
            Self::ClientClosed => "client_closed",
            Self::Internal => "internal",
        }
    }

    /// What went wrong with the request of `record`; `None` when it was
    /// answered whole.
    pub fn of(record: &RequestRecord) -> Option<Self> {
        match record.ending {
            Ending::Completed => None,
            Ending::ClientClosed => Some(Self::ClientClosed),
            Ending::Panicked => Some(Self::Internal),
            // Its status was sent: an answer that broke off, whatever broke it.
            Ending::Failed if (200..300).contains(&record.status) => Some(Self::StreamCut),
            Ending::Failed => Some(
                record
                    .error
                    .as_ref()
                    .and_then(|error| Self::of_kind(error.kind))
                    .unwrap_or(Self::Internal),
            ),
        }
    }

    /// The type of an error of `kind` (`GatewayError::kind`, or the kind a
    /// relay breaks a stream off with); `None` for a kind unknown here,
    /// which the unit tests rule out.
    pub fn of_kind(kind: &str) -> Option<Self> {
        Some(match kind {
            "invalid_request"
            | "payload_too_large"
            | "body_read"
            | "body_timeout"
            | "model_not_found"
            | "endpoint_not_served"
            | "route_not_found"
            | "method_not_allowed"
            | "over_max_cost"
            | "upstream_too_large"
            | "canary_not_found"
            | "canary_conflict"
            | "invalid_value"
            | "not_found"
            | "conflict"
            | "team_has_keys"
            | "key_revoked" => Self::ClientError,
            "unauthenticated" | "model_not_allowed" | "forbidden" => Self::Auth,
            "key_requests" | "key_tokens" | "team_requests" | "team_tokens" | "model_requests"
            | "model_tokens" | "global_requests" | "global_tokens" | "request_too_large"
            | "overloaded" | "key_limit" | "model_limit" | "deployment_limit" => Self::RateLimited,
            "key_budget" | "team_budget" => Self::Budget,
            "upstream_timeout" => Self::UpstreamTimeout,
            "upstream_connect" => Self::UpstreamConnect,
            "upstream_4xx" => Self::Upstream4xx,
            "upstream_5xx" | "upstream_protocol" | "upstream_in_band_error" | "no_deployment" => {
                Self::Upstream5xx
            }
            "upstream_overloaded" | "upstream_rate_limited" => Self::UpstreamOverloaded,
            "internal_error"
            | "key_store_unavailable"
            | "limiter_unavailable"
            | "local_resources"
            | "shutting_down"
            | "loop_detected"
            | "store_unavailable"
            | "no_randomness" => Self::Internal,
            _ => return None,
        })
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::panic)]
mod tests;
