//! `/playground`: a chat with any model the signed-in caller may use,
//! streamed, with the route, the tokens and the cost it was recorded with.
//!
//! The chat itself (`POST /playground/chat`) is an ordinary
//! `/v1/chat/completions` request sent through the LLM pipeline: the
//! gateway hands it there with the session's caller as its principal
//! ([`caller`]) — a virtual key's session is that key, with its limits,
//! budget and allowed models; the admin's is the configured name
//! [`ADMIN_CALLER`] — so its record, limits and cost are those of any other
//! request.

use std::sync::Arc;

use axum::extract::State;
use axum::http::HeaderMap;
use axum::response::Response;
use maud::html;

use super::UiState;
use super::error::UiError;
use super::layout::{self, Frame};
use super::session::{self, Session, Viewer};
use crate::api::AppState;
use crate::request::Principal;

/// The name the admin's playground requests are recorded under.
pub const ADMIN_CALLER: &str = "dashboard";

/// Who a playground chat is sent as: the session's caller, when the request
/// has a session and its CSRF token (`x-csrf-token`); else why not, in the
/// OpenAI dialect the playground's script reads.
pub async fn caller(
    app: &AppState,
    headers: &HeaderMap,
) -> Result<Principal, crate::error::GatewayError> {
    let viewer = session::caller(app, headers)
        .await
        .map_err(|e| e.to_gateway())?;
    match viewer {
        Viewer::Admin => Ok(Principal::ConfigKey(Arc::from(ADMIN_CALLER))),
        Viewer::Key { id, .. } => match app.process.keys.by_id(&id).await? {
            Some(tenant) => Ok(Principal::VirtualKey(tenant)),
            None => Err(crate::error::GatewayError::Unauthenticated(
                "the session's key is no longer live: sign in again",
            )),
        },
    }
}

/// `GET /playground`.
pub(super) async fn page(
    State(state): State<UiState>,
    session: Session,
) -> Result<Response, UiError> {
    let settings = state.app.settings.load();
    let tenant = match &session.viewer {
        Viewer::Admin => None,
        Viewer::Key { id, .. } => state
            .app
            .process
            .keys
            .by_id(id)
            .await
            .map_err(|_| UiError::Unavailable("the session's key cannot be read"))?,
    };
    let models: Vec<&str> = settings
        .routes
        .models()
        .map(|m| m.name.as_str())
        .filter(|name| tenant.as_ref().is_none_or(|t| t.allows(name)))
        .collect();
    let chrome = session.chrome();
    let body = html! {
        h1 { "Playground" }
        p.muted {
            "Sent as " strong { @match &session.viewer { Viewer::Admin => (ADMIN_CALLER), Viewer::Key { name, .. } => (name) } }
            " through the gateway like any request: its limits, budget, cache and routing apply, and it is recorded in the usage log."
        }
        div.grid2 {
            form.panel #playground {
                div.form-grid {
                    div { label for="model" { "Model" }
                        select #model name="model" required {
                            @for m in &models { option value=(m) { (m) } }
                        } }
                    div { label for="max_tokens" { "Max tokens" } input #max_tokens name="max_tokens" inputmode="numeric" value="256"; }
                }
                label for="system" { "System" }
                textarea #system name="system" rows="2" placeholder="You are a helpful assistant." {}
                label for="prompt" { "Message" }
                textarea #prompt name="prompt" required placeholder="Say hello in three languages." {}
                p { button #send.primary type="submit" disabled[models.is_empty()] { "Send" } " " span #status.muted {} }
                @if models.is_empty() { p.flash.warn { "No model is allowed to this key." } }
            }
            div.panel {
                h2 { "Answer" }
                pre #answer.answer {}
                p #error.small role="alert" style="color: var(--bad)" {}
                dl.facts {
                    dt { "served by" } dd #served { "–" }
                    dt { "route" } dd { code #route { "–" } }
                    dt { "tokens" } dd #tokens { "–" }
                    dt { "cost" } dd #cost { "–" }
                    dt { "timing" } dd #timing { "–" }
                }
            }
        }
    };
    let frame = Frame {
        name: "playground",
        section: "playground",
        title: "Playground",
        live: None,
    };
    Ok(layout::page(&chrome, frame, body))
}
