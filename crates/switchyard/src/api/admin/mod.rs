//! The admin API (`/admin/*`, `Authorization: Bearer <server.admin_key>`; off,
//! every path 404, when no admin key is set) and `GET /metrics`.
//!
//! Keys and teams ([`keys`], [`teams`]) are described by the OpenAPI document
//! of [`openapi`], read with the extractors of [`json`], and written through
//! [`crate::keys::admin`], which checks every field; after each change this
//! replica's key directory reads the change feed before the answer goes, so
//! the change is live here at once (other replicas follow the feed).

pub mod json;
pub mod keys;
pub mod openapi;
pub mod teams;
pub mod usage;

use std::sync::Arc;

use axum::Json;
use axum::extract::{FromRequestParts, State};
use axum::http::request::Parts;
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde_json::{Value, json};

use super::AppState;
use crate::error::GatewayError;
use crate::keys::admin::AdminError;
use crate::reload::{Outcome, Trigger};

/// Proof that the caller presented the admin key.
#[derive(Debug, Clone, Copy)]
pub struct Admin;

impl FromRequestParts<Arc<AppState>> for Admin {
    type Rejection = GatewayError;

    async fn from_request_parts(
        parts: &mut Parts,
        state: &Arc<AppState>,
    ) -> Result<Self, Self::Rejection> {
        state
            .settings
            .load()
            .admin
            .authenticate(&parts.headers, parts.uri.path())
            .map(|()| Self)
    }
}

/// The store behind the key directory.
fn store(state: &AppState) -> &dyn switchyard_store::Store {
    state.process.keys.store().as_ref()
}

/// The result of a change; when it was made, after this replica's key
/// directory has taken it in and the other replicas were told (through
/// Redis, when configured; a failure is logged: the change is made, and
/// every directory follows at its next poll).
async fn written<T>(state: &AppState, result: Result<T, AdminError>) -> Result<T, GatewayError> {
    let value = result?;
    state.process.keys.changed().await;
    Ok(value)
}

/// `GET /admin/deployments`: every model's deployments and their state.
pub async fn deployments(State(state): State<Arc<AppState>>, _: Admin) -> Json<Value> {
    let now = tokio::time::Instant::now();
    let settings = state.settings.load();
    let models: Vec<Value> = settings
        .routes
        .models()
        .map(|model| {
            let deployments: Vec<Value> = model
                .targets()
                .iter()
                .map(|target| target.status(now))
                .collect();
            json!({
                "model": model.name,
                "strategy": model.strategy().as_str(),
                "deployments": deployments,
            })
        })
        .collect();
    Json(json!({ "models": models }))
}

/// `POST /admin/reload`: reads and applies the config file now (see
/// [`crate::reload`]): 200 with what was done, 422 with every reason when the
/// file is refused (the config in use goes on serving).
pub async fn reload(State(state): State<Arc<AppState>>, _: Admin) -> Response {
    let outcome = state.process.config.reload(Trigger::Admin).await;
    let status = match outcome {
        Outcome::Refused { .. } => StatusCode::UNPROCESSABLE_ENTITY,
        Outcome::Applied { .. } | Outcome::Unchanged { .. } => StatusCode::OK,
    };
    (status, Json(outcome)).into_response()
}

/// `GET /admin/status`: the gateway's version, whether it is ready, and its
/// configuration: the version in use, when it loaded, the last refusal.
pub async fn status(State(state): State<Arc<AppState>>, _: Admin) -> Json<Value> {
    Json(json!({
        "version": env!("CARGO_PKG_VERSION"),
        "ready": state.process.ready.load(std::sync::atomic::Ordering::Relaxed),
        "config": state.process.config.status(),
    }))
}

/// `GET /metrics`: every metric in the Prometheus text format.
pub async fn metrics(State(state): State<Arc<AppState>>) -> Response {
    state
        .settings
        .load()
        .routes
        .export_state(tokio::time::Instant::now());
    state.process.admission.export();
    state.process.limits.export_budgets(&state.process.keys);
    if let Some(cache) = &state.process.cache {
        cache.upkeep();
    }
    (
        [(
            header::CONTENT_TYPE,
            HeaderValue::from_static("text/plain; version=0.0.4; charset=utf-8"),
        )],
        state.process.metrics.render(),
    )
        .into_response()
}
