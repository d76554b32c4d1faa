//! `GET /health` (the process is alive) and `GET /ready` (it takes traffic).

use std::sync::Arc;
use std::sync::atomic::Ordering;

use axum::Json;
use axum::extract::State;
use axum::http::StatusCode;
use serde_json::{Value, json};

use super::AppState;
use crate::routing::Routes;
use crate::routing::health::State as HealthState;
use crate::upstream::breaker::CircuitState;

/// Always 200 while the process runs.
pub async fn health() -> Json<Value> {
    Json(json!({ "status": "ok" }))
}

/// 200 while serving and every public model has a healthy deployment (not
/// unhealthy, not ejected); 503 `unhealthy` naming the models that have
/// none — unless `health_checks.ready_needs_every_model` is off: then 200,
/// naming them all the same; 503 `shutting_down` once shutdown has begun.
/// While serving, the body shows each deployment's state by model.
pub async fn ready(State(state): State<Arc<AppState>>) -> (StatusCode, Json<Value>) {
    if !state.process.ready.load(Ordering::Relaxed) {
        return (
            StatusCode::SERVICE_UNAVAILABLE,
            Json(json!({ "status": "shutting_down" })),
        );
    }
    let now = tokio::time::Instant::now();
    let settings = state.settings.load();
    let unhealthy = settings.routes.unhealthy_models(now);
    let deployments = deployment_states(&settings.routes, now);
    if unhealthy.is_empty() {
        let body = json!({ "status": "ready", "deployments": deployments });
        (StatusCode::OK, Json(body))
    } else if !settings.ready_needs_every_model {
        let body =
            json!({ "status": "ready", "unhealthy_models": unhealthy, "deployments": deployments });
        (StatusCode::OK, Json(body))
    } else {
        let body =
            json!({ "status": "unhealthy", "models": unhealthy, "deployments": deployments });
        (StatusCode::SERVICE_UNAVAILABLE, Json(body))
    }
}

/// `{model: {deployment: state}}`: `healthy`, `unhealthy`, `ejected`, or
/// `circuit_open` for a healthy one whose breaker is open.
fn deployment_states(routes: &Routes, now: tokio::time::Instant) -> Value {
    let models: serde_json::Map<String, Value> = routes
        .models()
        .map(|model| {
            let deployments: serde_json::Map<String, Value> = model
                .targets()
                .iter()
                .map(|target| {
                    let health = target.health.state(now);
                    let shown = match health {
                        HealthState::Healthy if target.breaker.state(now) == CircuitState::Open => {
                            "circuit_open"
                        }
                        _ => health.as_str(),
                    };
                    (target.name.clone(), Value::from(shown))
                })
                .collect();
            (model.name.clone(), Value::Object(deployments))
        })
        .collect();
    Value::Object(models)
}
