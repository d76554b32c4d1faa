//! Why a dashboard request was refused, and the page (or redirect) that
//! says so: every error of the dashboard becomes an answer here.

use std::time::Duration;

use axum::extract::Request;
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use maud::html;
use switchyard_store::StoreError;

use super::layout;
use super::session::see_other;
use crate::error::GatewayError;
use crate::keys::admin::AdminError;

/// Why a dashboard request was refused.
#[derive(Debug, thiserror::Error)]
pub enum UiError {
    /// No session (or an expired one): a page redirects to `login`, anything
    /// else is refused (401).
    #[error("sign in first")]
    SignedOut {
        /// The sign-in page, for a page's GET.
        login: Option<String>,
    },
    /// A change without its CSRF token, or by a read-only session.
    #[error("{0}")]
    Forbidden(&'static str),
    /// No such page or record.
    #[error("not found: {0}")]
    NotFound(String),
    /// An action its object's state does not allow.
    #[error("{0}")]
    Conflict(String),
    /// A query parameter that cannot be read.
    #[error("{0}")]
    Invalid(String),
    /// Too many sign-ins from this address; try again after this long.
    #[error("too many sign-in attempts from this address: try again in {}s", .0.as_secs().max(1))]
    TooManySignIns(Duration),
    /// The store did not answer.
    #[error("the store cannot be used right now: {0}")]
    Store(#[source] StoreError),
    /// A key or team operation was refused.
    #[error(transparent)]
    Admin(#[from] AdminError),
    /// Something the gateway needs is missing.
    #[error("{0}")]
    Unavailable(&'static str),
}

impl UiError {
    /// The status it is answered with.
    pub fn status(&self) -> StatusCode {
        match self {
            Self::SignedOut { login: Some(_) } => StatusCode::SEE_OTHER,
            Self::SignedOut { login: None } => StatusCode::UNAUTHORIZED,
            Self::Forbidden(_) => StatusCode::FORBIDDEN,
            Self::NotFound(_) => StatusCode::NOT_FOUND,
            Self::Invalid(_) => StatusCode::BAD_REQUEST,
            Self::Conflict(_) => StatusCode::CONFLICT,
            Self::TooManySignIns(_) => StatusCode::TOO_MANY_REQUESTS,
            Self::Store(_) | Self::Unavailable(_) => StatusCode::SERVICE_UNAVAILABLE,
            Self::Admin(e) => GatewayError::admin_status(e),
        }
    }

    /// The same refusal for the playground's chat, in the OpenAI dialect its
    /// script reads.
    pub fn to_gateway(&self) -> GatewayError {
        match self {
            Self::SignedOut { .. } => {
                GatewayError::Unauthenticated("sign in to the dashboard first")
            }
            Self::Forbidden(why) => GatewayError::Forbidden(why),
            other => {
                tracing::warn!(error = %other, "dashboard: the playground's caller could not be read");
                GatewayError::Overloaded("the dashboard's store cannot be used right now")
            }
        }
    }
}

impl IntoResponse for UiError {
    fn into_response(self) -> Response {
        if let Self::SignedOut { login: Some(login) } = &self {
            return see_other(login, None);
        }
        let status = self.status();
        match &self {
            Self::Store(e) => tracing::warn!(error = %e, "dashboard: the store failed"),
            Self::Admin(AdminError::Unavailable(e)) => {
                tracing::warn!(error = %e, "dashboard: the store failed");
            }
            _ => {}
        }
        let title = status.canonical_reason().unwrap_or("Error");
        let prefix = super::prefix();
        let body = html! {
            div.signin {
                h1 { (status.as_u16()) " " (title) }
                p.flash.error role="alert" { (self.to_string()) }
                p { a href={ (prefix) "/" } { "Back to the dashboard" } }
            }
        };
        let mut response = (status, layout::bare(&prefix, title, body)).into_response();
        if let Self::TooManySignIns(wait) = &self
            && let Ok(value) = HeaderValue::from_str(&wait.as_secs().max(1).to_string())
        {
            response.headers_mut().insert(header::RETRY_AFTER, value);
        }
        response
    }
}

/// No such page.
pub async fn not_found(request: Request) -> UiError {
    UiError::NotFound(request.uri().path().to_owned())
}
