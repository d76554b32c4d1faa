//! `ui:`, as serde reads it.

use serde::Deserialize;

use super::HumanDuration;

/// `ui:`: the dashboard served by the gateway.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct UiConfig {
    /// Whether the dashboard is served (default true).
    pub enabled: Option<bool>,
    /// Where it is served (default `/ui`).
    pub path: Option<String>,
    /// How long a sign-in lasts (default 12h).
    pub session_ttl: Option<HumanDuration>,
    /// Whether a virtual key may sign in to see its own team's pages, read-only (default true).
    pub key_sign_in: Option<bool>,
    /// Sign-ins tried per minute from one client address at most (default 10).
    pub sign_in_attempts: Option<u32>,
    /// When the session cookie is marked `Secure`: `auto` (when the request came
    /// over TLS, as `x-forwarded-proto: https` says), `always` or `never` (default auto).
    pub secure_cookie: Option<SecureCookie>,
}

/// `ui.secure_cookie`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum SecureCookie {
    /// When the request came over TLS (`x-forwarded-proto: https`).
    #[default]
    Auto,
    /// Always.
    Always,
    /// Never.
    Never,
}
