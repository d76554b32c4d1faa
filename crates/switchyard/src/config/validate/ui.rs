//! `ui:`, validated.

use std::time::Duration;

use super::Validator;
use crate::config::Ui;
use crate::config::raw::UiConfig;

/// Where the dashboard is served when `ui.path` is not set.
const DEFAULT_PATH: &str = "/ui";
/// How long a sign-in lasts when `ui.session_ttl` is not set.
const DEFAULT_SESSION_TTL: Duration = Duration::from_secs(12 * 3_600);
/// Sign-ins per minute from one address when `ui.sign_in_attempts` is not set.
const DEFAULT_SIGN_IN_ATTEMPTS: u32 = 10;
/// Paths the dashboard may not take: the API's own.
const TAKEN: &[&str] = &["/v1", "/admin", "/health", "/ready", "/metrics"];

impl Validator<'_> {
    /// `ui:` with its defaults.
    pub(super) fn ui(&mut self, raw: UiConfig) -> Ui {
        let path = raw.path.unwrap_or_else(|| DEFAULT_PATH.to_owned());
        let path = path.trim_end_matches('/').to_owned();
        let valid = path.starts_with('/')
            && path.len() > 1
            && path
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b"/-_.".contains(&b));
        if !valid {
            self.error(
                &["ui", "path"],
                "`path` must start with `/` and hold only letters, digits, `/`, `-`, `_` and `.` (e.g. `/ui`)",
            );
        } else if let Some(taken) = TAKEN
            .iter()
            .find(|t| path == **t || path.starts_with(&format!("{t}/")))
        {
            self.error(
                &["ui", "path"],
                format!("`{path}` is the gateway's own ({taken}); pick another (e.g. `/ui`)"),
            );
        }
        let session_ttl = raw.session_ttl.map_or(DEFAULT_SESSION_TTL, |d| d.0);
        if session_ttl < Duration::from_secs(60) {
            self.error(&["ui", "session_ttl"], "`session_ttl` must be at least 1m");
        }
        let sign_in_attempts = raw.sign_in_attempts.unwrap_or(DEFAULT_SIGN_IN_ATTEMPTS);
        if sign_in_attempts == 0 {
            self.error(
                &["ui", "sign_in_attempts"],
                "`sign_in_attempts` must be at least 1",
            );
        }
        Ui {
            enabled: raw.enabled.unwrap_or(true),
            path,
            session_ttl,
            key_sign_in: raw.key_sign_in.unwrap_or(true),
            sign_in_attempts: sign_in_attempts.max(1),
            secure_cookie: raw.secure_cookie.unwrap_or_default(),
        }
    }
}
