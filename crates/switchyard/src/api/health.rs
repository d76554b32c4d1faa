//! `GET /health` (the process is alive) and `GET /ready` (it takes traffic).

use std::sync::Arc;
use std::sync::atomic::Ordering;

use axum::Json;
use axum::extract::State;
use axum::http::StatusCode;
use serde_json::{Value, json};

use super::AppState;

/// Always 200 while the process runs.
pub async fn health() -> Json<Value> {
    Json(json!({ "status": "ok" }))
}

/// 200 while serving and every public model has a healthy deployment (not
/// unhealthy, not ejected); 503 `unhealthy` naming the models that have
/// none — unless `health_checks.ready_needs_every_model` is off: then 200,
/// naming them all the same; 503 `shutting_down` once shutdown has begun.
pub async fn ready(State(state): State<Arc<AppState>>) -> (StatusCode, Json<Value>) {
    if !state.ready.load(Ordering::Relaxed) {
        return (
            StatusCode::SERVICE_UNAVAILABLE,
            Json(json!({ "status": "shutting_down" })),
        );
    }
    let unhealthy = state.routes.unhealthy_models(tokio::time::Instant::now());
    if unhealthy.is_empty() {
        (StatusCode::OK, Json(json!({ "status": "ready" })))
    } else if !state.ready_needs_every_model {
        (
            StatusCode::OK,
            Json(json!({ "status": "ready", "unhealthy_models": unhealthy })),
        )
    } else {
        (
            StatusCode::SERVICE_UNAVAILABLE,
            Json(json!({ "status": "unhealthy", "models": unhealthy })),
        )
    }
}
