//! `/admin/teams`: make, list, show, change and delete teams, through the
//! operations of [`crate::keys::admin`].

use std::sync::Arc;

use axum::Json;
use axum::extract::State;
use axum::http::StatusCode;

use super::json::{AdminJson, AdminQuery, Id};
use super::openapi::{Bodied, ErrorBody, Guarded, Stored};
use super::{Admin, store, written};
use crate::api::AppState;
use crate::error::GatewayError;
use crate::keys::admin;
use crate::keys::admin::views::{
    CreateTeam, DEFAULT_PAGE, Listing, PageQuery, TeamView, UpdateTeam,
};

/// `POST /admin/teams`: a new team.
#[utoipa::path(
    post,
    operation_id = "create_team",
    path = "/admin/teams",
    tag = "teams",
    request_body = CreateTeam,
    responses((status = 201, description = "The new team", body = TeamView), Guarded, Stored, Bodied),
)]
pub async fn create(
    State(state): State<Arc<AppState>>,
    _: Admin,
    AdminJson(request): AdminJson<CreateTeam>,
) -> Result<(StatusCode, Json<TeamView>), GatewayError> {
    let team = written(&state, admin::create_team(store(&state), request).await).await?;
    Ok((StatusCode::CREATED, Json(team)))
}

/// `GET /admin/teams`: one page of the teams that are not deleted, by id.
#[utoipa::path(
    get,
    operation_id = "list_teams",
    path = "/admin/teams",
    tag = "teams",
    params(PageQuery),
    responses(
        (status = 200, description = "A page of teams; `next_cursor` is `null` on the last", body = Listing<TeamView>),
        Guarded,
        Stored,
    ),
)]
pub async fn list(
    State(state): State<Arc<AppState>>,
    _: Admin,
    AdminQuery(query): AdminQuery<PageQuery>,
) -> Result<Json<Listing<TeamView>>, GatewayError> {
    let limit = query.limit.unwrap_or(DEFAULT_PAGE);
    Ok(Json(
        admin::list_teams(store(&state), query.cursor, limit).await?,
    ))
}

/// `GET /admin/teams/{id}`: one team, deleted or not.
#[utoipa::path(
    get,
    operation_id = "show_team",
    path = "/admin/teams/{id}",
    tag = "teams",
    params(("id" = String, Path, description = "The team's id (`team_…`)")),
    responses((status = 200, description = "The team", body = TeamView), Guarded, Stored),
)]
pub async fn show(
    State(state): State<Arc<AppState>>,
    _: Admin,
    Id(id): Id,
) -> Result<Json<TeamView>, GatewayError> {
    Ok(Json(admin::show_team(store(&state), &id).await?))
}

/// `PATCH /admin/teams/{id}`: changes the fields the body names; `null` clears one.
#[utoipa::path(
    patch,
    operation_id = "update_team",
    path = "/admin/teams/{id}",
    tag = "teams",
    params(("id" = String, Path, description = "The team's id (`team_…`)")),
    request_body = UpdateTeam,
    responses((status = 200, description = "The team as changed", body = TeamView), Guarded, Stored, Bodied),
)]
pub async fn update(
    State(state): State<Arc<AppState>>,
    _: Admin,
    Id(id): Id,
    AdminJson(request): AdminJson<UpdateTeam>,
) -> Result<Json<TeamView>, GatewayError> {
    let team = admin::update_team(store(&state), &id, request).await;
    Ok(Json(written(&state, team).await?))
}

/// `DELETE /admin/teams/{id}`: deletes the team (its record and spend stay);
/// refused while it has keys that are not revoked.
#[utoipa::path(
    delete,
    operation_id = "delete_team",
    path = "/admin/teams/{id}",
    tag = "teams",
    params(("id" = String, Path, description = "The team's id (`team_…`)")),
    responses(
        (status = 200, description = "The team, deleted", body = TeamView),
        (status = 409, description = "The team still has keys that are not revoked (`team_has_keys`)", body = ErrorBody),
        Guarded,
        Stored,
    ),
)]
pub async fn delete(
    State(state): State<Arc<AppState>>,
    _: Admin,
    Id(id): Id,
) -> Result<Json<TeamView>, GatewayError> {
    let team = admin::delete_team(store(&state), &id).await;
    Ok(Json(written(&state, team).await?))
}
