//! `/admin/keys`: make, list, show, change, rotate and revoke virtual keys,
//! through the operations of [`crate::keys::admin`].

use std::sync::Arc;

use axum::Json;
use axum::extract::State;
use axum::http::StatusCode;
use switchyard_store::KeyFilter;

use super::json::{AdminJson, AdminQuery, Id};
use super::openapi::{Bodied, Guarded, Stored};
use super::{Admin, store, written};
use crate::api::AppState;
use crate::error::GatewayError;
use crate::keys::admin;
use crate::keys::admin::views::{
    CreateKey, DEFAULT_PAGE, KeyCreated, KeyQuery, KeyView, Listing, RotateKey, UpdateKey,
};

/// `POST /admin/keys`: a new key; its text is in this answer and nowhere else, ever.
#[utoipa::path(
    post,
    operation_id = "create_key",
    path = "/admin/keys",
    tag = "keys",
    request_body = CreateKey,
    responses(
        (status = 201, description = "The new key, with its text: shown this once", body = KeyCreated),
        Guarded,
        Stored,
        Bodied,
    ),
)]
pub async fn create(
    State(state): State<Arc<AppState>>,
    _: Admin,
    AdminJson(request): AdminJson<CreateKey>,
) -> Result<(StatusCode, Json<KeyCreated>), GatewayError> {
    let created = written(&state, admin::create_key(store(&state), request).await).await?;
    Ok((StatusCode::CREATED, Json(created)))
}

/// `GET /admin/keys`: one page of keys, by id.
#[utoipa::path(
    get,
    operation_id = "list_keys",
    path = "/admin/keys",
    tag = "keys",
    params(KeyQuery),
    responses(
        (status = 200, description = "A page of keys; `next_cursor` is `null` on the last", body = Listing<KeyView>),
        Guarded,
        Stored,
    ),
)]
pub async fn list(
    State(state): State<Arc<AppState>>,
    _: Admin,
    AdminQuery(query): AdminQuery<KeyQuery>,
) -> Result<Json<Listing<KeyView>>, GatewayError> {
    let filter = KeyFilter {
        team_id: query.team_id,
        prefix: query.prefix,
        include_revoked: query.include_revoked.unwrap_or(false),
    };
    let limit = query.limit.unwrap_or(DEFAULT_PAGE);
    let page = admin::list_keys(store(&state), &filter, query.cursor, limit).await?;
    Ok(Json(page))
}

/// `GET /admin/keys/{id}`: one key, revoked or not.
#[utoipa::path(
    get,
    operation_id = "show_key",
    path = "/admin/keys/{id}",
    tag = "keys",
    params(("id" = String, Path, description = "The key's id (`key_…`)")),
    responses((status = 200, description = "The key", body = KeyView), Guarded, Stored),
)]
pub async fn show(
    State(state): State<Arc<AppState>>,
    _: Admin,
    Id(id): Id,
) -> Result<Json<KeyView>, GatewayError> {
    Ok(Json(admin::show_key(store(&state), &id).await?))
}

/// `PATCH /admin/keys/{id}`: changes the fields the body names; `null` clears one.
#[utoipa::path(
    patch,
    operation_id = "update_key",
    path = "/admin/keys/{id}",
    tag = "keys",
    params(("id" = String, Path, description = "The key's id (`key_…`)")),
    request_body = UpdateKey,
    responses((status = 200, description = "The key as changed", body = KeyView), Guarded, Stored, Bodied),
)]
pub async fn update(
    State(state): State<Arc<AppState>>,
    _: Admin,
    Id(id): Id,
    AdminJson(request): AdminJson<UpdateKey>,
) -> Result<Json<KeyView>, GatewayError> {
    let key = admin::update_key(store(&state), &id, request).await;
    Ok(Json(written(&state, key).await?))
}

/// `POST /admin/keys/{id}/rotate`: a new secret for the key; the old one
/// keeps working for the grace period. The body is optional.
#[utoipa::path(
    post,
    operation_id = "rotate_key",
    path = "/admin/keys/{id}/rotate",
    tag = "keys",
    params(("id" = String, Path, description = "The key's id (`key_…`)")),
    request_body(
        content = Option<RotateKey>,
        description = "Optional: the grace period (no body, or `null`: `auth.rotation_grace`)"
    ),
    responses(
        (status = 200, description = "The key with its new text: shown this once", body = KeyCreated),
        Guarded,
        Stored,
        Bodied,
    ),
)]
pub async fn rotate(
    State(state): State<Arc<AppState>>,
    _: Admin,
    Id(id): Id,
    request: Option<AdminJson<Option<RotateKey>>>,
) -> Result<Json<KeyCreated>, GatewayError> {
    let grace = request
        .and_then(|AdminJson(request)| request?.grace)
        .unwrap_or_else(|| state.settings.load().rotation_grace);
    let rotated = admin::rotate_key(store(&state), &id, grace).await;
    Ok(Json(written(&state, rotated).await?))
}

/// `DELETE /admin/keys/{id}`: revokes the key for good (again: no change).
#[utoipa::path(
    delete,
    operation_id = "revoke_key",
    path = "/admin/keys/{id}",
    tag = "keys",
    params(("id" = String, Path, description = "The key's id (`key_…`)")),
    responses((status = 200, description = "The key, revoked", body = KeyView), Guarded, Stored),
)]
pub async fn revoke(
    State(state): State<Arc<AppState>>,
    _: Admin,
    Id(id): Id,
) -> Result<Json<KeyView>, GatewayError> {
    let key = admin::revoke_key(store(&state), &id).await;
    Ok(Json(written(&state, key).await?))
}
