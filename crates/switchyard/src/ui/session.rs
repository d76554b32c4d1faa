//! Signing in and out, the session cookie, who a session is ([`Viewer`]) and
//! the CSRF token of its forms.
//!
//! A session is a random token (32 bytes) in an `HttpOnly`, `SameSite=Strict`
//! cookie limited to the dashboard's path, `Secure` behind TLS; the store
//! keeps only its SHA-256, with who signed in and when it expires, so every
//! replica knows it, a restart keeps it, and signing out ends it everywhere.
//! A form's CSRF token is a digest of the session's token: only a page of
//! the session can know it, and the server need not keep it.

use std::net::IpAddr;
use std::num::NonZeroU32;
use std::time::Duration;

use axum::Extension;
use axum::Form;
use axum::extract::{FromRequestParts, State};
use axum::http::request::Parts;
use axum::http::{HeaderMap, HeaderValue, Method, StatusCode, header};
use axum::response::{IntoResponse, Redirect, Response};
use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use governor::{DefaultKeyedRateLimiter, Quota, RateLimiter};
use maud::html;
use serde::Deserialize;
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;
use switchyard_store::{KeyRecord, SessionRecord, Store};

use super::error::UiError;
use super::layout::{self, Chrome};
use super::{Peer, UiState};
use crate::config::{SecureCookie, Ui};
use crate::keys::secret;
use crate::keys::unix_now;

/// The session cookie's name.
const COOKIE: &str = "switchyard_session";

/// Keys of client addresses kept by the sign-in limiter before the idle ones
/// are forgotten.
const SIGN_IN_ADDRESSES: usize = 10_000;

/// Who a session is.
#[derive(Debug, Clone)]
pub enum Viewer {
    /// The admin (signed in with `server.admin_key`): every page, every action.
    Admin,
    /// A virtual key: its own team's pages (or its own, without a team), read-only.
    Key {
        /// The key's id.
        id: String,
        /// The key's name.
        name: String,
        /// The key's team.
        team_id: Option<String>,
    },
}

/// Whose data a page shows.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Scope {
    /// Everyone's.
    All,
    /// One team's.
    Team(String),
    /// One key's.
    Key(String),
}

impl Viewer {
    /// Whether it may change things.
    pub fn is_admin(&self) -> bool {
        matches!(self, Self::Admin)
    }

    /// Whose data it may see.
    pub fn scope(&self) -> Scope {
        match self {
            Self::Admin => Scope::All,
            Self::Key {
                team_id: Some(team),
                ..
            } => Scope::Team(team.clone()),
            Self::Key { id, .. } => Scope::Key(id.clone()),
        }
    }

    /// How it is named in the page's header.
    pub fn label(&self) -> String {
        match self {
            Self::Admin => "admin".to_owned(),
            Self::Key {
                name,
                team_id: Some(team),
                ..
            } => format!("{name} ({team})"),
            Self::Key { name, .. } => name.clone(),
        }
    }
}

/// A signed-in request: who it is, and what its pages need.
#[derive(Debug, Clone)]
pub struct Session {
    /// Who signed in.
    pub viewer: Viewer,
    /// The CSRF token its forms carry.
    csrf: String,
    /// The dashboard's settings when the request arrived.
    pub ui: Ui,
}

impl Session {
    /// What every page's frame needs.
    pub fn chrome(&self) -> Chrome<'_> {
        Chrome {
            prefix: &self.ui.path,
            csrf: &self.csrf,
            viewer: &self.viewer,
        }
    }

    /// Refuses (403) a change whose form or header did not carry this
    /// session's CSRF token.
    pub fn check_csrf(&self, presented: &str) -> Result<(), UiError> {
        if bool::from(self.csrf.as_bytes().ct_eq(presented.as_bytes())) {
            Ok(())
        } else {
            Err(UiError::Forbidden(
                "the form's CSRF token is missing or stale: reload the page and try again",
            ))
        }
    }

    /// Refuses (403) a change asked by a read-only session.
    pub fn check_admin(&self) -> Result<(), UiError> {
        if self.viewer.is_admin() {
            Ok(())
        } else {
            Err(UiError::Forbidden(
                "this session is read-only: sign in with the admin key to change things",
            ))
        }
    }

    /// Both checks of a change: the CSRF token, then the admin.
    pub fn check_change(&self, presented: &str) -> Result<(), UiError> {
        self.check_csrf(presented)?;
        self.check_admin()
    }
}

impl FromRequestParts<UiState> for Session {
    type Rejection = UiError;

    async fn from_request_parts(parts: &mut Parts, state: &UiState) -> Result<Self, UiError> {
        let ui = state.app.settings.load().ui.clone();
        let signed_out = || UiError::SignedOut {
            login: matches!(parts.method, Method::GET | Method::HEAD)
                .then(|| format!("{}/login", ui.path)),
        };
        let token = cookie(&parts.headers).ok_or_else(signed_out)?;
        let viewer = viewer_of(&state.app, &ui, token)
            .await?
            .ok_or_else(signed_out)?;
        Ok(Self {
            viewer,
            csrf: csrf_of(token),
            ui,
        })
    }
}

/// Whether a key may still sign in and stay signed in: not revoked,
/// disabled or expired, nor in a disabled team.
async fn usable(store: &dyn Store, key: &KeyRecord, now: i64) -> Result<bool, UiError> {
    if key.revoked_at.is_some() || key.disabled || key.expires_at.is_some_and(|at| at <= now) {
        return Ok(false);
    }
    let Some(team) = &key.team_id else {
        return Ok(true);
    };
    let team = store.team(team).await.map_err(UiError::Store)?;
    Ok(team.is_some_and(|t| !t.disabled && t.deleted_at.is_none()))
}

/// The session token in the request's cookies.
fn cookie(headers: &HeaderMap) -> Option<&str> {
    headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|pair| pair.trim().split_once('='))
        .find(|(name, _)| *name == COOKIE)
        .map(|(_, value)| value.trim())
        .filter(|value| !value.is_empty())
}

/// The CSRF token of a session's token.
fn csrf_of(token: &str) -> String {
    let mut hash = Sha256::new();
    hash.update(b"switchyard-ui-csrf\0");
    hash.update(token.as_bytes());
    URL_SAFE_NO_PAD.encode(hash.finalize())
}

/// Sign-ins tried per client address, limited. An IPv6 client counts by
/// its /64 (one host can hold all of it). The addresses not seen for a
/// minute are forgotten at most once a second; while more than
/// [`SIGN_IN_ADDRESSES`] are still fresh, new ones share one count.
#[derive(Debug)]
pub struct SignIns {
    limiter: DefaultKeyedRateLimiter<IpAddr>,
    /// When the limiter was last trimmed (`Instant`s since `start`, ms).
    trimmed: std::sync::atomic::AtomicU64,
    start: std::time::Instant,
}

impl SignIns {
    /// At most `per_minute` sign-ins a minute from one address (all of them
    /// at once, then one every `60 / per_minute` seconds).
    pub fn new(per_minute: u32) -> Self {
        let n = NonZeroU32::new(per_minute).unwrap_or(NonZeroU32::MIN);
        Self {
            limiter: RateLimiter::keyed(Quota::per_minute(n)),
            trimmed: std::sync::atomic::AtomicU64::new(0),
            start: std::time::Instant::now(),
        }
    }

    /// Takes one attempt for `address`, or says how long to wait.
    fn take(&self, address: IpAddr) -> Result<(), Duration> {
        use std::sync::atomic::Ordering;
        let mut address = match address {
            IpAddr::V6(v6) if v6.to_ipv4_mapped().is_none() => {
                let prefix = u128::from(v6) & !((1u128 << 64) - 1);
                IpAddr::V6(prefix.into())
            }
            IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(address, IpAddr::V4),
            IpAddr::V4(_) => address,
        };
        if self.limiter.len() > SIGN_IN_ADDRESSES {
            let now = u64::try_from(self.start.elapsed().as_millis()).unwrap_or(u64::MAX);
            let last = self.trimmed.load(Ordering::Relaxed);
            if now.saturating_sub(last) >= 1_000
                && self
                    .trimmed
                    .compare_exchange(last, now, Ordering::Relaxed, Ordering::Relaxed)
                    .is_ok()
            {
                self.limiter.retain_recent();
            }
            if self.limiter.len() > SIGN_IN_ADDRESSES {
                address = IpAddr::from([0, 0, 0, 0]);
            }
        }
        self.limiter.check_key(&address).map_err(|not_until| {
            not_until.wait_time_from(governor::clock::Clock::now(
                &governor::clock::DefaultClock::default(),
            ))
        })
    }
}

/// The sign-in form's fields.
#[derive(Debug, Deserialize)]
pub struct SignInForm {
    #[serde(default)]
    key: String,
}

/// `GET /login`: the sign-in page.
pub async fn login_page(State(state): State<UiState>) -> Response {
    let ui = state.app.settings.load().ui.clone();
    login(&state, &ui, StatusCode::OK, None)
}

fn login(state: &UiState, ui: &Ui, status: StatusCode, error: Option<&str>) -> Response {
    let settings = state.app.settings.load();
    let admin = settings.admin.is_on();
    let hint = match (admin, ui.key_sign_in) {
        (true, true) => {
            "Sign in with the admin key, or with a virtual key to see its team's usage (read-only)."
        }
        (true, false) => "Sign in with the admin key.",
        (false, true) => {
            "Sign in with a virtual key to see its team's usage (read-only). Set `server.admin_key` to manage keys here."
        }
        (false, false) => "No one can sign in: set `server.admin_key`, or `ui.key_sign_in: true`.",
    };
    let body = html! {
        div.signin {
            h1 { "Switchyard" }
            p.muted { (hint) }
            @if let Some(error) = error {
                p.flash.error role="alert" { (error) }
            }
            form #signin method="post" action={ (ui.path) "/login" } {
                label for="key" { "Key" }
                input #key type="password" name="key" autocomplete="current-password" required autofocus;
                button #signin-submit.primary type="submit" { "Sign in" }
            }
        }
    };
    (status, layout::bare(&ui.path, "Sign in", body)).into_response()
}

/// `POST /login`: signs in with the admin key or a virtual key.
pub async fn sign_in(
    State(state): State<UiState>,
    Extension(Peer(peer)): Extension<Peer>,
    headers: HeaderMap,
    Form(form): Form<SignInForm>,
) -> Result<Response, UiError> {
    let ui = state.app.settings.load().ui.clone();
    let address = peer.unwrap_or(IpAddr::from([0, 0, 0, 0]));
    state
        .sign_ins
        .take(address)
        .map_err(UiError::TooManySignIns)?;
    let key = form.key.trim();
    let now = unix_now();
    let admin = &state.app.settings.load().admin;
    let (key_id, credential) =
        if let Some(fingerprint) = admin.fingerprint().filter(|_| admin.accepts(key)) {
            (None, fingerprint)
        } else {
            let store = state.app.process.keys.store();
            let found = if ui.key_sign_in && !key.is_empty() {
                store
                    .key_by_digest(&secret::digest(key))
                    .await
                    .map_err(UiError::Store)?
            } else {
                None
            };
            let found = match found {
                Some(m)
                    if m.secret.expires_at.is_none_or(|at| at > now)
                        && usable(store.as_ref(), &m.key, now).await? =>
                {
                    Some(m)
                }
                _ => None,
            };
            match found {
                Some(found) => (Some(found.key.id), found.secret.digest),
                None => {
                    tracing::info!(client = %address, "dashboard sign-in refused");
                    return Ok(login(
                        &state,
                        &ui,
                        StatusCode::UNAUTHORIZED,
                        Some("That key cannot sign in here."),
                    ));
                }
            }
        };
    let token = secret::token().map_err(|_| UiError::Unavailable("no randomness for a session"))?;
    let ttl = i64::try_from(ui.session_ttl.as_secs()).unwrap_or(i64::MAX);
    let session = SessionRecord {
        digest: secret::digest(&token),
        key_id,
        credential,
        created_at: now,
        expires_at: now.saturating_add(ttl),
    };
    state
        .app
        .process
        .keys
        .store()
        .create_session(&session)
        .await
        .map_err(UiError::Store)?;
    let cookie = format!(
        "{COOKIE}={token}; Path={}; Max-Age={ttl}; HttpOnly; SameSite=Strict{}",
        ui.path,
        if secure(&ui, &headers) {
            "; Secure"
        } else {
            ""
        }
    );
    Ok(see_other(&format!("{}/", ui.path), Some(cookie)))
}

/// The fields of a form that only carries its CSRF token.
#[derive(Debug, Deserialize)]
pub struct CsrfForm {
    /// The session's CSRF token (missing: refused as a wrong one).
    #[serde(default)]
    pub csrf: String,
}

/// `POST /logout`: ends the session here and on every replica.
pub async fn sign_out(
    State(state): State<UiState>,
    session: Session,
    headers: HeaderMap,
    Form(form): Form<CsrfForm>,
) -> Result<Response, UiError> {
    session.check_csrf(&form.csrf)?;
    if let Some(token) = cookie(&headers) {
        state
            .app
            .process
            .keys
            .store()
            .delete_session(&secret::digest(token))
            .await
            .map_err(UiError::Store)?;
    }
    let ui = &session.ui;
    let cookie = format!(
        "{COOKIE}=; Path={}; Max-Age=0; HttpOnly; SameSite=Strict{}",
        ui.path,
        if secure(ui, &headers) { "; Secure" } else { "" }
    );
    Ok(see_other(&format!("{}/login", ui.path), Some(cookie)))
}

/// Whether a change asked by `headers` comes from the dashboard's own
/// pages: a browser says where a request comes from (`Sec-Fetch-Site`, else
/// `Origin`); one sent from another site is refused before anything is read
/// (the CSRF token covers signed-in forms; this covers signing in, which
/// has no session yet). A client that says nothing (curl) is let through.
pub fn same_origin(headers: &HeaderMap) -> bool {
    if let Some(site) = headers.get("sec-fetch-site") {
        return matches!(site.as_bytes(), b"same-origin" | b"none");
    }
    let Some(origin) = headers.get(header::ORIGIN).and_then(|o| o.to_str().ok()) else {
        return true;
    };
    let host = headers.get(header::HOST).and_then(|h| h.to_str().ok());
    let authority = origin.split_once("://").map(|(_, rest)| rest);
    matches!((authority, host), (Some(a), Some(h)) if a.eq_ignore_ascii_case(h))
}

/// Whether the session cookie is marked `Secure` for this request.
fn secure(ui: &Ui, headers: &HeaderMap) -> bool {
    match ui.secure_cookie {
        SecureCookie::Always => true,
        SecureCookie::Never => false,
        SecureCookie::Auto => headers
            .get("x-forwarded-proto")
            .and_then(|v| v.to_str().ok())
            .is_some_and(|proto| proto.trim().eq_ignore_ascii_case("https")),
    }
}

/// A 303 to `location`, setting `cookie` when given.
pub fn see_other(location: &str, cookie: Option<String>) -> Response {
    let mut response = Redirect::to(location).into_response();
    *response.status_mut() = StatusCode::SEE_OTHER;
    if let Some(value) = cookie.and_then(|c| HeaderValue::from_str(&c).ok()) {
        response.headers_mut().insert(header::SET_COOKIE, value);
    }
    response
}

/// Who the playground's chat is sent as: the session behind `headers`, when
/// it has one and the request carries its CSRF token in `x-csrf-token`.
pub(super) async fn caller(
    app: &crate::api::AppState,
    headers: &HeaderMap,
) -> Result<Viewer, UiError> {
    let ui = app.settings.load().ui.clone();
    let token = cookie(headers).ok_or(UiError::SignedOut { login: None })?;
    let presented = headers
        .get("x-csrf-token")
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default();
    let viewer = viewer_of(app, &ui, token)
        .await?
        .ok_or(UiError::SignedOut { login: None })?;
    if !same_origin(headers) {
        return Err(UiError::Forbidden("sent from another site"));
    }
    if bool::from(csrf_of(token).as_bytes().ct_eq(presented.as_bytes())) {
        Ok(viewer)
    } else {
        Err(UiError::Forbidden("missing or stale `x-csrf-token`"))
    }
}

/// Who the session of `token` is, when it has not expired and what it
/// signed in with still works: the admin key it was made with (not one
/// changed since), or the key's secret (not rotated out), the key and its
/// team still live.
async fn viewer_of(
    app: &crate::api::AppState,
    ui: &Ui,
    token: &str,
) -> Result<Option<Viewer>, UiError> {
    let store = app.process.keys.store().as_ref();
    let now = unix_now();
    let Some(found) = store
        .session(&secret::digest(token), now)
        .await
        .map_err(UiError::Store)?
    else {
        return Ok(None);
    };
    let Some(id) = found.key_id else {
        let admin = app.settings.load().admin.fingerprint();
        let same = admin.is_some_and(|f| bool::from(f.ct_eq(&found.credential)));
        return Ok(same.then_some(Viewer::Admin));
    };
    if !ui.key_sign_in {
        return Ok(None);
    }
    let Some(key) = store.key(&id).await.map_err(UiError::Store)? else {
        return Ok(None);
    };
    let secrets = store.secrets(&id).await.map_err(UiError::Store)?;
    let secret_works = secrets.iter().any(|s| {
        bool::from(s.digest.ct_eq(&found.credential)) && s.expires_at.is_none_or(|at| at > now)
    });
    if !secret_works || !usable(store, &key, now).await? {
        return Ok(None);
    }
    Ok(Some(Viewer::Key {
        id: key.id,
        name: key.name,
        team_id: key.team_id,
    }))
}
