//! `/providers`: each model's deployments — health, circuit, requests in
//! flight, time to first token, rate-limit headroom, the last probe — and
//! each canary's stage with its pause, resume, promote and abort; live.

use axum::Form;
use axum::extract::{Path, State};
use axum::response::Response;
use maud::{Markup, html};
use serde_json::Value;
use tokio::time::Instant;

use super::UiState;
use super::error::UiError;
use super::layout::{self, Chrome, Frame};
use super::session::{CsrfForm, Session, see_other};
use crate::routing::canary::Action;

/// Seconds between refreshes.
const LIVE: u32 = 5;

fn badge(value: &str) -> Markup {
    let class = match value {
        "healthy" | "closed" | "running" | "promoted" => "ok",
        "half_open" | "paused" | "degraded" => "warn",
        "unhealthy" | "ejected" | "open" | "rolled_back" => "bad",
        _ => "",
    };
    html! { span.badge.(class) { (value.replace('_', " ")) } }
}

fn text(value: &Value) -> String {
    match value {
        Value::String(s) => s.clone(),
        Value::Null => "–".to_owned(),
        Value::Number(n) => n.as_f64().map_or_else(
            || n.to_string(),
            |f| {
                if f.fract() == 0.0 {
                    format!("{f:.0}")
                } else {
                    format!("{f:.1}")
                }
            },
        ),
        other => other.to_string(),
    }
}

/// `GET /providers`.
pub async fn page(State(state): State<UiState>, session: Session) -> Result<Response, UiError> {
    let now = Instant::now();
    let settings = state.app.settings.load();
    let chrome = session.chrome();
    let canaries: Vec<Value> = settings
        .routes
        .canaries()
        .iter()
        .map(|c| c.status(now))
        .collect();
    let body = html! {
        h1 { "Providers and models" }
        @if !canaries.is_empty() {
            h2 { "Canaries" }
            div.table-wrap {
                table #canaries {
                    thead { tr { th { "model" } th { "to" } th { "state" } th.num { "traffic" } th.num { "attempts" }
                        th.num { "error rate" } th.num { "p99" } @if session.viewer.is_admin() { th { "actions" } } } }
                    tbody {
                        @for c in &canaries { (canary_row(&chrome, c, session.viewer.is_admin())) }
                    }
                }
            }
        }
        @for model in settings.routes.models() {
            h2 { (model.name) " " span.badge { (model.strategy().as_str()) } }
            div.table-wrap {
                table.deployments data-model=(model.name) {
                    thead { tr {
                        th { "deployment" } th.num { "tier" } th.num { "weight" } th { "health" } th { "circuit" }
                        th.num { "in flight" } th.num { "first token (est.)" } th.num { "rate-limit headroom" } th { "last probe" }
                    } }
                    tbody {
                        @for target in model.targets() {
                            @let s = target.status(now);
                            tr data-deployment=(text(&s["deployment"])) {
                                td { code { (text(&s["deployment"])) } }
                                td.num { (text(&s["tier"])) }
                                td.num { (text(&s["weight"])) }
                                td { (badge(&text(&s["health"]))) }
                                td { (badge(&text(&s["circuit"]))) }
                                td.num { (text(&s["in_flight"])) @if !s["max_in_flight"].is_null() { " / " (text(&s["max_in_flight"])) } }
                                td.num { (text(&s["ttft_ms"])) " ms" }
                                td.num { (format!("{:.0} %", s["rate_limit_headroom"].as_f64().unwrap_or(1.0) * 100.0)) }
                                td { @match s.get("probe") {
                                    Some(p) => {
                                        @if p["ok"].as_bool() == Some(true) { span.badge.ok { "ok" } } @else { span.badge.bad { "failed" } }
                                        " " span.small.muted { (text(&p["latency_ms"])) " ms, " (text(&p["ago_ms"])) " ms ago" }
                                    }
                                    None => span.muted { "–" },
                                } }
                            }
                        }
                    }
                }
            }
        }
    };
    let frame = Frame {
        name: "providers",
        section: "providers",
        title: "Providers",
        live: Some(LIVE),
    };
    Ok(layout::page(&chrome, frame, body))
}

fn canary_row(chrome: &Chrome<'_>, c: &Value, admin: bool) -> Markup {
    let model = text(&c["model"]);
    let path: String =
        percent_encoding::utf8_percent_encode(&model, percent_encoding::NON_ALPHANUMERIC)
            .to_string();
    html! {
        tr data-canary=(model) {
            td { (model) }
            td { (text(&c["to"])) }
            td { (badge(&text(&c["state"]))) }
            td.num { (text(&c["percent"])) " %" }
            td.num { (text(&c["attempts"])) }
            td.num { (format!("{:.2} %", c["error_rate"].as_f64().unwrap_or(0.0) * 100.0)) }
            td.num { (text(&c["p99_ms"])) " ms" }
            @if admin {
                td {
                    @for action in ["pause", "resume", "promote", "abort"] {
                        form.inline method="post" action=(chrome.href(&format!("/providers/canary/{path}/{action}")))
                            data-confirm=[(action == "abort" || action == "promote").then(|| format!("{action} the canary of {model}?"))] {
                            (chrome.csrf_field())
                            button type="submit" .danger[action == "abort"] data-action=(action) { (action) }
                        }
                        " "
                    }
                }
            }
        }
    }
}

/// `POST /providers/canary/{model}/{action}`: an operator's action on a canary.
pub async fn canary(
    State(state): State<UiState>,
    session: Session,
    Path((model, action)): Path<(String, String)>,
    Form(form): Form<CsrfForm>,
) -> Result<Response, UiError> {
    session.check_change(&form.csrf)?;
    let action = Action::parse(&action)
        .ok_or_else(|| UiError::NotFound(format!("canary action `{action}`")))?;
    let settings = state.app.settings.load();
    let canary = settings
        .routes
        .canary(&model)
        .ok_or_else(|| UiError::NotFound(format!("canary of `{model}`")))?;
    canary
        .act(action, Instant::now())
        .map_err(|e| UiError::Conflict(e.to_string()))?;
    tracing::info!(model = %model, ?action, "dashboard: canary action");
    Ok(see_other(&session.chrome().href("/providers"), None))
}
