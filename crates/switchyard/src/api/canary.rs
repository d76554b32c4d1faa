//! `/admin/canary`: every canary's state, and operators' actions on one
//! (`POST /admin/canary/{model}/pause|resume|promote|abort`).

use std::sync::Arc;

use axum::Json;
use axum::extract::{Path, State};
use serde_json::{Value, json};
use tokio::time::Instant;

use super::AppState;
use super::admin::Admin;
use crate::error::GatewayError;
use crate::routing::canary::{Action, CanaryError};

/// `GET /admin/canary`: every canary, its stage and its stage's record.
pub async fn list(State(state): State<Arc<AppState>>, _: Admin) -> Json<Value> {
    let now = Instant::now();
    let settings = state.settings.load();
    let canaries: Vec<Value> = settings
        .routes
        .canaries()
        .iter()
        .map(|canary| canary.status(now))
        .collect();
    Json(json!({ "canaries": canaries }))
}

/// `POST /admin/canary/{model}/{action}`: the canary's new state; 404 for a
/// model without a canary or an unknown action, 409 for an action its state
/// does not allow.
pub async fn act(
    State(state): State<Arc<AppState>>,
    _: Admin,
    Path((model, action)): Path<(String, String)>,
) -> Result<Json<Value>, GatewayError> {
    let Some(action) = Action::parse(&action) else {
        return Err(GatewayError::RouteNotFound(format!(
            "POST /admin/canary/{model}/{action}"
        )));
    };
    let settings = state.settings.load();
    let canary = settings
        .routes
        .canary(&model)
        .ok_or(CanaryError::NotFound(model))?;
    Ok(Json(canary.act(action, Instant::now())?))
}
