//! The dashboard: usage, cost and savings, keys and teams, the request log,
//! the providers' health and a playground, served by the gateway itself at
//! `ui.path` (`/ui`).
//!
//! Pages are rendered on the server ([`maud`] templates) from the store and
//! the live deployment state; charts are SVG drawn on the server
//! ([`chart`]); the one stylesheet and script are embedded in the binary
//! ([`assets`]): nothing is fetched from anywhere else, so it works in a
//! closed network, and building it needs no Node toolchain.
//!
//! The request of a page, in order:
//!
//! 1. [`Gateway`](crate::api::Gateway) sees the path under `ui.path` (when
//!    `ui.enabled`) and hands it here with the client's address, the path
//!    cut to the part after the prefix;
//! 2. the router below picks the page; its [`Session`] extractor reads the
//!    session cookie, finds the session in the store (only its token's
//!    SHA-256 is kept there) and who it is: the admin, or a virtual key that
//!    sees its own team's pages, read-only ([`Viewer`]); without one a page
//!    redirects to the sign-in page and a form is refused (401);
//! 3. a form's CSRF token (derived from the session's token) is checked
//!    before anything is changed (403 without it);
//! 4. the page is read: sums from the usage rollups, pages of the usage log
//!    by cursor, keys and teams from the store — never a scan of the log;
//! 5. errors become pages in one place ([`UiError`]).
//!
//! The playground's chat (`POST {ui.path}/playground/chat`) is not served
//! here: the gateway sends it through the LLM pipeline like any chat, with
//! the session's caller as its principal ([`playground::caller`]).

mod assets;
mod chart;
mod costs;
mod data;
mod error;
mod format;
mod forms;
mod keys;
mod layout;
mod overview;
pub mod playground;
mod providers;
mod requests;
mod session;
mod teams;

use std::net::SocketAddr;
use std::sync::Arc;

use axum::Router;
use axum::body::Body;
use axum::extract::Request;
use axum::http::{Method, Uri};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use tower::ServiceExt;

use crate::api::AppState;
use crate::config::Ui;

pub use error::UiError;
pub use session::{Session, Viewer};

/// The dashboard's router and what lives as long as it.
#[derive(Clone)]
pub struct Dashboard {
    router: Router,
}

impl std::fmt::Debug for Dashboard {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Dashboard").finish_non_exhaustive()
    }
}

/// Where a path under the dashboard's prefix goes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Place {
    /// A page, a form or an asset: the dashboard's router.
    Page,
    /// The playground's chat: the LLM pipeline.
    Chat,
}

tokio::task_local! {
    /// The dashboard's path while one of its requests is served, for the
    /// error pages (which are made without the request).
    static PREFIX: String;
}

/// The dashboard's path of the request being served (`/ui`).
fn prefix() -> String {
    PREFIX.try_with(Clone::clone).unwrap_or_default()
}

/// The client's address, for the sign-in limiter (`None` off a TCP connection).
#[derive(Debug, Clone, Copy)]
struct Peer(Option<std::net::IpAddr>);

/// The state of the dashboard's handlers.
#[derive(Clone)]
struct UiState {
    app: Arc<AppState>,
    sign_ins: Arc<session::SignIns>,
}

impl Dashboard {
    /// The dashboard of `app`; sign-ins (every try) are limited to
    /// `ui.sign_in_attempts` a minute per client address.
    pub fn new(app: Arc<AppState>) -> Self {
        let attempts = app.settings.load().ui.sign_in_attempts;
        let state = UiState {
            app,
            sign_ins: Arc::new(session::SignIns::new(attempts)),
        };
        let router = Router::new()
            .route("/", get(overview::page))
            .route("/login", get(session::login_page).post(session::sign_in))
            .route("/logout", post(session::sign_out))
            .route("/costs", get(costs::page))
            .route("/costs.csv", get(costs::csv))
            .route("/requests", get(requests::page))
            .route("/requests/{id}", get(requests::detail))
            .route(
                "/requests/by-request-id/{request_id}",
                get(requests::by_request_id),
            )
            .route("/keys", get(keys::page).post(keys::create))
            .route("/keys/{id}", get(keys::detail).post(keys::update))
            .route("/keys/{id}/rotate", post(keys::rotate))
            .route("/keys/{id}/revoke", post(keys::revoke))
            .route("/teams", get(teams::page).post(teams::create))
            .route("/teams/{id}", get(teams::detail).post(teams::update))
            .route("/providers", get(providers::page))
            .route(
                "/providers/canary/{model}/{action}",
                post(providers::canary),
            )
            .route("/playground", get(playground::page))
            .route("/assets/{name}", get(assets::serve))
            .fallback(error::not_found)
            .with_state(state);
        Self { router }
    }

    /// Where `path` goes, when it is under the dashboard's prefix and the
    /// dashboard is on.
    pub fn place(ui: &Ui, path: &str) -> Option<Place> {
        let rest = under(ui, path)?;
        Some(if rest == "/playground/chat" {
            Place::Chat
        } else {
            Place::Page
        })
    }

    /// Serves a page of the dashboard to the client at `peer`.
    pub async fn serve(&self, ui: &Ui, mut request: Request, peer: Option<SocketAddr>) -> Response {
        if let axum::http::header::Entry::Occupied(mut cookie) =
            request.headers_mut().entry(axum::http::header::COOKIE)
        {
            cookie
                .iter_mut()
                .for_each(|value| value.set_sensitive(true));
        }
        if !matches!(*request.method(), Method::GET | Method::HEAD)
            && !session::same_origin(request.headers())
        {
            return PREFIX
                .scope(ui.path.clone(), async {
                    UiError::Forbidden("sent from another site").into_response()
                })
                .await;
        }
        let rest = under(ui, request.uri().path()).unwrap_or("/");
        let rest = if rest.is_empty() { "/" } else { rest };
        let uri = match request.uri().query() {
            Some(query) => format!("{rest}?{query}"),
            None => rest.to_owned(),
        };
        if let Ok(uri) = uri.parse::<Uri>() {
            *request.uri_mut() = uri;
        }
        request.extensions_mut().insert(Peer(peer.map(|p| p.ip())));
        let router = self.router.clone();
        let Ok(response) = PREFIX
            .scope(ui.path.clone(), router.oneshot(request.map(Body::new)))
            .await;
        response
    }
}

/// The part of `path` after the dashboard's prefix ('' for the prefix
/// itself), when the dashboard is on and `path` is under it.
fn under<'p>(ui: &Ui, path: &'p str) -> Option<&'p str> {
    if !ui.enabled {
        return None;
    }
    let rest = path.strip_prefix(ui.path.as_str())?;
    (rest.is_empty() || rest.starts_with('/')).then_some(rest)
}
