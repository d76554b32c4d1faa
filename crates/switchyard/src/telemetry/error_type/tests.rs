use std::collections::HashMap;
use std::time::{Duration, Instant};

use axum::http::HeaderValue;
use switchyard_providers::ErrorClass;
use switchyard_providers::openai::{ErrorObject, InvalidRequest};

use super::*;
use crate::admission::limit::LimitError;
use crate::error::GatewayError;
use crate::keys::KeyError;
use crate::keys::admin::AdminError;
use crate::keys::secret::NoRandomness;
use crate::limits::{Dimension, LimitRefusal, Scope, Snapshot};
use crate::request::RecordedError;
use crate::routing::canary::CanaryError;
use crate::upstream::{TimeoutPhase, UpstreamError};

/// The name of `error`'s variant, the variants of the errors inside it
/// included. It does not compile when a variant is added anywhere in the
/// tree: add one of its errors to [`every_error`] too.
fn variant(error: &GatewayError) -> String {
    let name = match error {
        GatewayError::InvalidRequest(_) => "InvalidRequest",
        GatewayError::PayloadTooLarge { .. } => "PayloadTooLarge",
        GatewayError::BodyTimeout(_) => "BodyTimeout",
        GatewayError::BodyRead(_) => "BodyRead",
        GatewayError::Unauthenticated(_) => "Unauthenticated",
        GatewayError::Forbidden(_) => "Forbidden",
        GatewayError::Key(e) => match e {
            KeyError::Invalid => "Key::Invalid",
            KeyError::Expired => "Key::Expired",
            KeyError::Disabled => "Key::Disabled",
            KeyError::ModelNotAllowed(_) => "Key::ModelNotAllowed",
            KeyError::StoreUnavailable => "Key::StoreUnavailable",
        },
        GatewayError::Limited(refusal) => match refusal {
            LimitRefusal::Rate {
                scope, dimension, ..
            } => return format!("Limited::Rate::{scope:?}::{dimension:?}"),
            LimitRefusal::TooLarge { .. } => "Limited::TooLarge",
            LimitRefusal::Unavailable => "Limited::Unavailable",
            LimitRefusal::Budget { scope, .. } => return format!("Limited::Budget::{scope:?}"),
        },
        GatewayError::ModelNotFound(_) => "ModelNotFound",
        GatewayError::NoDeployment(_) => "NoDeployment",
        GatewayError::EndpointNotServed { .. } => "EndpointNotServed",
        GatewayError::RouteNotFound(_) => "RouteNotFound",
        GatewayError::MethodNotAllowed(_) => "MethodNotAllowed",
        GatewayError::BadMaxCost => "BadMaxCost",
        GatewayError::OverMaxCost { .. } => "OverMaxCost",
        GatewayError::LoopDetected(_) => "LoopDetected",
        GatewayError::ShuttingDown => "ShuttingDown",
        GatewayError::Overloaded(_) => "Overloaded",
        GatewayError::OverLimit(e) => match e {
            LimitError::Model(_) => "OverLimit::Model",
            LimitError::Deployments(_) => "OverLimit::Deployments",
            LimitError::Key => "OverLimit::Key",
        },
        GatewayError::Internal => "Internal",
        GatewayError::Canary(e) => match e {
            CanaryError::NotFound(_) => "Canary::NotFound",
            CanaryError::Refused { .. } => "Canary::Refused",
        },
        GatewayError::Admin(e) => match e {
            AdminError::Invalid { .. } => "Admin::Invalid",
            AdminError::NotFound(_) => "Admin::NotFound",
            AdminError::Conflict { .. } => "Admin::Conflict",
            AdminError::TeamHasKeys => "Admin::TeamHasKeys",
            AdminError::Revoked => "Admin::Revoked",
            AdminError::Unavailable(_) => "Admin::Unavailable",
            AdminError::NoRandomness(_) => "Admin::NoRandomness",
        },
        GatewayError::Upstream(e) => match e {
            UpstreamError::Connect { .. } => "Upstream::Connect",
            UpstreamError::Timeout { .. } => "Upstream::Timeout",
            UpstreamError::Status { class, .. } => return format!("Upstream::Status::{class:?}"),
            UpstreamError::KeysResting { .. } => "Upstream::KeysResting",
            UpstreamError::TooLarge { .. } => "Upstream::TooLarge",
            UpstreamError::Local { .. } => "Upstream::Local",
            UpstreamError::Broken { .. } => "Upstream::Broken",
            UpstreamError::Protocol { .. } => "Upstream::Protocol",
        },
    };
    name.to_owned()
}

/// An upstream error of `status` and `class`.
fn upstream_status(status: u16, class: ErrorClass) -> GatewayError {
    GatewayError::Upstream(UpstreamError::Status {
        provider: "p".into(),
        status,
        class,
        error: Box::new(ErrorObject {
            message: "m".into(),
            kind: None,
            param: None,
            code: None,
        }),
        retry_after: None,
    })
}

/// One error of every variant (see [`variant`]).
fn every_error() -> Vec<GatewayError> {
    let provider = || "p".to_owned();
    let mut errors = vec![
        GatewayError::InvalidRequest(InvalidRequest {
            message: "m".into(),
            param: None,
        }),
        GatewayError::PayloadTooLarge { limit: 1 },
        GatewayError::BodyTimeout(Duration::from_secs(1)),
        GatewayError::BodyRead("reset".into()),
        GatewayError::Unauthenticated("no key"),
        GatewayError::Forbidden("no token"),
        KeyError::Invalid.into(),
        KeyError::Expired.into(),
        KeyError::Disabled.into(),
        KeyError::ModelNotAllowed("m".into()).into(),
        KeyError::StoreUnavailable.into(),
        LimitRefusal::TooLarge {
            scope: Scope::Key,
            needed: 2,
            limit: 1,
        }
        .into(),
        LimitRefusal::Unavailable.into(),
        GatewayError::ModelNotFound("m".into()),
        GatewayError::NoDeployment("m".into()),
        GatewayError::EndpointNotServed {
            model: "m".into(),
            kind: "gemini",
            endpoint: "completions",
        },
        GatewayError::RouteNotFound("GET /x".into()),
        GatewayError::MethodNotAllowed("GET /v1/messages".into()),
        GatewayError::BadMaxCost,
        GatewayError::OverMaxCost {
            model: "m".into(),
            max: 0.01,
        },
        GatewayError::LoopDetected(9),
        GatewayError::ShuttingDown,
        GatewayError::Overloaded("full"),
        LimitError::Model("m".into()).into(),
        LimitError::Deployments("m".into()).into(),
        LimitError::Key.into(),
        GatewayError::Internal,
        CanaryError::NotFound("m".into()).into(),
        CanaryError::Refused {
            model: "m".into(),
            action: "promote",
            state: "rolled back",
        }
        .into(),
        AdminError::Invalid {
            field: "name",
            message: "m".into(),
        }
        .into(),
        AdminError::NotFound("key").into(),
        AdminError::Conflict { field: "name" }.into(),
        AdminError::TeamHasKeys.into(),
        AdminError::Revoked.into(),
        AdminError::Unavailable(switchyard_store::StoreError::Scheme).into(),
        AdminError::NoRandomness(NoRandomness::for_tests()).into(),
        UpstreamError::Connect {
            provider: provider(),
            detail: "refused".into(),
        }
        .into(),
        UpstreamError::Timeout {
            provider: provider(),
            phase: TimeoutPhase::FirstByte,
            limit: Duration::from_secs(1),
        }
        .into(),
        UpstreamError::KeysResting {
            provider: provider(),
            retry_after: 1,
        }
        .into(),
        UpstreamError::TooLarge {
            provider: provider(),
            limit: 1,
        }
        .into(),
        UpstreamError::Local {
            provider: provider(),
            detail: "no descriptor".into(),
        }
        .into(),
        UpstreamError::Broken {
            provider: provider(),
            detail: "reset".into(),
        }
        .into(),
        UpstreamError::Protocol {
            provider: provider(),
            detail: "bad event".into(),
        }
        .into(),
    ];
    for scope in [Scope::Key, Scope::Team, Scope::Model, Scope::Global] {
        for dimension in [Dimension::Requests, Dimension::Tokens] {
            errors.push(
                LimitRefusal::Rate {
                    scope,
                    dimension,
                    retry_after: Duration::from_secs(1),
                    snapshot: Snapshot::default(),
                }
                .into(),
            );
        }
    }
    for scope in [Scope::Key, Scope::Team] {
        errors.push(
            LimitRefusal::Budget {
                scope,
                resets_at: None,
            }
            .into(),
        );
    }
    for (status, class) in [
        (400, ErrorClass::ContextLength),
        (400, ErrorClass::ContentPolicy),
        (503, ErrorClass::Overloaded),
        (429, ErrorClass::RateLimited),
        (401, ErrorClass::Auth),
        (404, ErrorClass::NotFound),
        (422, ErrorClass::InvalidRequest),
        (500, ErrorClass::Server),
    ] {
        errors.push(upstream_status(status, class));
    }
    errors
}

#[test]
fn every_kind_of_error_maps_to_one_member_of_the_list() {
    let errors = every_error();
    let variants: std::collections::HashSet<String> = errors.iter().map(variant).collect();
    assert_eq!(variants.len(), errors.len(), "one error per variant");
    let mut types: HashMap<&str, ErrorType> = HashMap::new();
    for error in &errors {
        let kind = error.kind();
        let Some(error_type) = ErrorType::of_kind(kind) else {
            panic!(
                "the kind `{kind}` of {} maps to no error type",
                variant(error)
            );
        };
        assert!(ErrorType::ALL.contains(&error_type));
        // A kind names one type, whichever error has it.
        let first = *types.entry(kind).or_insert(error_type);
        assert_eq!(first, error_type, "`{kind}`");
    }
    // A relay breaks a stream off with one kind of its own.
    assert_eq!(
        ErrorType::of_kind("upstream_in_band_error"),
        Some(ErrorType::Upstream5xx)
    );
    assert_eq!(ErrorType::of_kind("no_such_kind"), None);
}

#[test]
fn errors_map_to_what_an_operator_acts_on() {
    let budget = LimitRefusal::Budget {
        scope: Scope::Team,
        resets_at: None,
    };
    for (error, expected) in [
        (
            GatewayError::ModelNotFound("m".into()),
            ErrorType::ClientError,
        ),
        (KeyError::Expired.into(), ErrorType::Auth),
        (LimitError::Key.into(), ErrorType::RateLimited),
        (budget.into(), ErrorType::Budget),
        (
            upstream_status(503, ErrorClass::Overloaded),
            ErrorType::UpstreamOverloaded,
        ),
        (
            upstream_status(429, ErrorClass::RateLimited),
            ErrorType::UpstreamOverloaded,
        ),
        (
            upstream_status(500, ErrorClass::Server),
            ErrorType::Upstream5xx,
        ),
        (
            upstream_status(401, ErrorClass::Auth),
            ErrorType::Upstream4xx,
        ),
        (GatewayError::ShuttingDown, ErrorType::Internal),
    ] {
        assert_eq!(ErrorType::of_kind(error.kind()), Some(expected), "{error}");
    }
}

#[test]
fn the_list_has_distinct_snake_case_names() {
    let names: std::collections::HashSet<&str> =
        ErrorType::ALL.iter().map(|t| t.as_str()).collect();
    assert_eq!(names.len(), ErrorType::ALL.len());
    assert!(!names.contains("none"), "`none` is the label of a success");
    for name in names {
        assert!(
            name.bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_'),
            "{name}"
        );
    }
}

fn record(ending: Ending, status: u16, kind: Option<&'static str>) -> RequestRecord {
    let mut record = RequestRecord::new(
        HeaderValue::from_static("r"),
        "chat_completions",
        Instant::now(),
    );
    record.ending = ending;
    record.status = status;
    record.error = kind.map(|kind| RecordedError {
        kind,
        detail: String::new(),
    });
    record
}

#[test]
fn the_ending_decides_before_the_kind() {
    for (ending, status, kind, expected) in [
        (Ending::Completed, 200, None, None),
        (
            Ending::Failed,
            401,
            Some("unauthenticated"),
            Some(ErrorType::Auth),
        ),
        // Broken off once its status was sent: a cut stream, whatever the kind.
        (
            Ending::Failed,
            200,
            Some("upstream_timeout"),
            Some(ErrorType::StreamCut),
        ),
        (Ending::ClientClosed, 0, None, Some(ErrorType::ClientClosed)),
        (
            Ending::ClientClosed,
            200,
            None,
            Some(ErrorType::ClientClosed),
        ),
        (
            Ending::Panicked,
            500,
            Some("internal_error"),
            Some(ErrorType::Internal),
        ),
        (
            Ending::Failed,
            500,
            Some("no_such_kind"),
            Some(ErrorType::Internal),
        ),
    ] {
        assert_eq!(
            ErrorType::of(&record(ending, status, kind)),
            expected,
            "{ending:?} {status} {kind:?}"
        );
    }
}
