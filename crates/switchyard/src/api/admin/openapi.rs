//! The admin API's routes with their OpenAPI document: `GET
//! /admin/openapi.json`, made once at start-up from the handlers'
//! `#[utoipa::path]` attributes and the types of `keys::admin::views`.

use std::sync::Arc;

use axum::http::{HeaderValue, header};
use axum::response::{IntoResponse, Response};
use axum::{Extension, Router};
use bytes::Bytes;
use serde::{Deserialize, Serialize};
use utoipa::openapi::security::{Http, HttpAuthScheme, SecurityScheme};
use utoipa::{IntoResponses, Modify, OpenApi, ToSchema};
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use super::{Admin, keys, teams};
use crate::api::AppState;

/// The security scheme's name in the document (also written out in `security(...)` below).
const ADMIN_KEY: &str = "admin_key";

#[derive(OpenApi)]
#[openapi(
    info(
        title = "Switchyard admin API",
        description = "Virtual keys and teams. Every route needs `Authorization: Bearer <server.admin_key>`; \
                       with no admin key configured every route answers 404. Errors have OpenAI's shape.",
    ),
    modifiers(&BearerAdminKey),
    security(("admin_key" = [])),
    components(schemas(ErrorBody)),
    tags(
        (name = "keys", description = "Virtual keys"),
        (name = "teams", description = "Teams of keys, with shared models and limits"),
        (name = "document", description = "This document"),
    ),
)]
struct AdminApi;

/// Adds the `Authorization: Bearer <server.admin_key>` scheme.
struct BearerAdminKey;

impl Modify for BearerAdminKey {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        let components = openapi.components.get_or_insert_with(Default::default);
        components.add_security_scheme(
            ADMIN_KEY,
            SecurityScheme::Http(Http::new(HttpAuthScheme::Bearer)),
        );
    }
}

/// The admin routes for keys and teams, and `GET /admin/openapi.json` serving
/// their document.
pub fn router() -> Router<Arc<AppState>> {
    let (router, api) = routes();
    // Serializing the document's own types cannot fail.
    let document = Document(Bytes::from(serde_json::to_vec(&api).unwrap_or_default()));
    router.layer(Extension(document))
}

/// The routes, and the document describing them.
fn routes() -> (Router<Arc<AppState>>, utoipa::openapi::OpenApi) {
    OpenApiRouter::with_openapi(AdminApi::openapi())
        .routes(routes!(keys::create, keys::list))
        .routes(routes!(keys::show, keys::update, keys::revoke))
        .routes(routes!(keys::rotate))
        .routes(routes!(teams::create, teams::list))
        .routes(routes!(teams::show, teams::update, teams::delete))
        .routes(routes!(document))
        .split_for_parts()
}

/// The OpenAPI document, as served.
#[derive(Debug, Clone)]
struct Document(Bytes);

/// `GET /admin/openapi.json`: this API's OpenAPI document.
#[utoipa::path(
    get,
    operation_id = "openapi_document",
    path = "/admin/openapi.json",
    tag = "document",
    responses(
        (status = 200, description = "The OpenAPI document", content_type = "application/json", body = Object),
        Guarded,
    ),
)]
async fn document(_: Admin, Extension(Document(bytes)): Extension<Document>) -> Response {
    (
        [(
            header::CONTENT_TYPE,
            HeaderValue::from_static("application/json"),
        )],
        bytes,
    )
        .into_response()
}

/// `{"error": {...}}`: the body of every error, in OpenAI's shape.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ErrorBody {
    /// The error.
    pub error: ErrorObject,
}

/// What went wrong.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ErrorObject {
    /// For people.
    pub message: String,
    /// `invalid_request_error` (the request's fault) or `server_error`.
    #[serde(rename = "type")]
    pub kind: String,
    /// The request field at fault, when there is one (`name`, `rpm`, `limit`, `id`).
    pub param: Option<String>,
    /// For programs: `invalid_value`, `not_found`, `conflict`, `team_has_keys`,
    /// `key_revoked`, `store_unavailable`, `invalid_api_key`, ….
    pub code: Option<String>,
}

/// The refusals of every admin route.
#[derive(IntoResponses)]
#[allow(
    dead_code,
    reason = "it describes answers in the document; GatewayError makes them"
)]
pub enum Guarded {
    /// No admin key, or a wrong one (`invalid_api_key`).
    #[response(status = 401)]
    Unauthorized(ErrorBody),
    /// The admin API is off (no `server.admin_key`), or no such key or team (`not_found`).
    #[response(status = 404)]
    NotFound(ErrorBody),
}

/// The errors of a route that reads or writes the store, besides [`Guarded`].
#[derive(IntoResponses)]
#[allow(
    dead_code,
    reason = "it describes answers in the document; GatewayError makes them"
)]
pub enum Stored {
    /// A query parameter, the path's id, the body or a field of it is not
    /// valid; `param` names it when it can.
    #[response(status = 400)]
    Invalid(ErrorBody),
    /// The store cannot be used right now (`store_unavailable`); try again.
    #[response(status = 503, headers(("retry-after" = u64, description = "Seconds to wait")))]
    Unavailable(ErrorBody),
}

/// The errors of a route that takes a JSON body, besides [`Guarded`] and [`Stored`].
#[derive(IntoResponses)]
#[allow(
    dead_code,
    reason = "it describes answers in the document; GatewayError makes them"
)]
pub enum Bodied {
    /// The body did not arrive within `server.body_timeout`.
    #[response(status = 408)]
    Timeout(ErrorBody),
    /// A team's name is taken (`conflict`), or the key is revoked (`key_revoked`).
    #[response(status = 409)]
    Conflict(ErrorBody),
    /// The body is larger than 64 KiB.
    #[response(status = 413)]
    TooLarge(ErrorBody),
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::panic)]
mod tests {
    use http_body_util::BodyExt;
    use serde_json::Value;
    use switchyard_store::{StoreError, Unavailable};

    use super::*;
    use crate::error::GatewayError;
    use crate::keys::admin::{self, AdminError};

    fn document() -> Value {
        serde_json::to_value(routes().1).unwrap()
    }

    #[test]
    fn every_route_is_described_with_its_errors() {
        let document = document();
        assert!(document["openapi"].as_str().unwrap().starts_with("3."));
        let paths = document["paths"].as_object().unwrap();
        let mut operations = Vec::new();
        for (path, item) in paths {
            for (method, operation) in item.as_object().unwrap() {
                operations.push(format!("{method} {path}"));
                let responses = operation["responses"].as_object().unwrap();
                for status in ["401", "404"] {
                    let error = &responses[status]["content"]["application/json"]["schema"];
                    assert_eq!(
                        error["$ref"], "#/components/schemas/ErrorBody",
                        "{method} {path}"
                    );
                }
                if operation.get("requestBody").is_some() {
                    for status in ["400", "408", "413", "503"] {
                        assert!(responses.contains_key(status), "{method} {path} {status}");
                    }
                }
            }
        }
        operations.sort();
        assert_eq!(
            operations,
            [
                "delete /admin/keys/{id}",
                "delete /admin/teams/{id}",
                "get /admin/keys",
                "get /admin/keys/{id}",
                "get /admin/openapi.json",
                "get /admin/teams",
                "get /admin/teams/{id}",
                "patch /admin/keys/{id}",
                "patch /admin/teams/{id}",
                "post /admin/keys",
                "post /admin/keys/{id}/rotate",
                "post /admin/teams",
            ]
        );
        assert_eq!(document["security"][0][ADMIN_KEY], serde_json::json!([]));
        let scheme = &document["components"]["securitySchemes"][ADMIN_KEY];
        assert_eq!(
            (&scheme["type"], &scheme["scheme"]),
            (&"http".into(), &"bearer".into())
        );
    }

    #[test]
    fn the_documented_bounds_are_those_checked() {
        let document = document();
        let schemas = &document["components"]["schemas"];
        for body in ["CreateKey", "UpdateKey", "CreateTeam", "UpdateTeam"] {
            let fields = &schemas[body]["properties"];
            assert_eq!(fields["name"]["maxLength"], admin::MAX_NAME, "{body}");
            assert_eq!(fields["models"]["maxItems"], admin::MAX_GLOBS, "{body}");
            assert_eq!(
                fields["models"]["items"]["maxLength"],
                admin::MAX_NAME,
                "{body}"
            );
            assert_eq!(fields["rpm"]["maximum"], admin::MAX_RATE, "{body}");
            assert_eq!(fields["tpm"]["maximum"], admin::MAX_RATE, "{body}");
            assert_eq!(
                fields["budget_usd"]["maximum"].as_f64(),
                Some(admin::MAX_BUDGET_USD),
                "{body}"
            );
            assert_eq!(schemas[body]["additionalProperties"], false, "{body}");
        }
        for path in ["/admin/keys", "/admin/teams"] {
            let limit = &document["paths"][path]["get"]["parameters"][0];
            assert_eq!(limit["name"], "limit");
            assert_eq!(limit["schema"]["maximum"], admin::MAX_PAGE);
        }
    }

    #[tokio::test]
    async fn every_admin_error_has_the_documented_shape() {
        let refusals = [
            (
                AdminError::Invalid {
                    field: "rpm",
                    message: "must be from 1".to_owned(),
                },
                400,
                "invalid_value",
                Some("rpm"),
            ),
            (AdminError::NotFound("key"), 404, "not_found", None),
            (
                AdminError::Conflict { field: "name" },
                409,
                "conflict",
                Some("name"),
            ),
            (AdminError::TeamHasKeys, 409, "team_has_keys", None),
            (AdminError::Revoked, 409, "key_revoked", None),
            (
                AdminError::Unavailable(StoreError::Unavailable(Unavailable::Timeout)),
                503,
                "store_unavailable",
                None,
            ),
        ];
        for (refusal, status, code, param) in refusals {
            let response = GatewayError::from(refusal).to_response();
            assert_eq!(response.status(), status, "{code}");
            let retry_after = response.headers().get(header::RETRY_AFTER).cloned();
            assert_eq!(retry_after.is_some(), status == 503, "{code}");
            let bytes = response.into_body().collect().await.unwrap().to_bytes();
            let body: ErrorBody = serde_json::from_slice(&bytes).unwrap();
            assert_eq!(body.error.code.as_deref(), Some(code));
            assert_eq!(body.error.param.as_deref(), param, "{code}");
        }
    }
}
