//! Client authentication: `auth.mode: open` or the configured keys.
//!
//! Keys are kept only as SHA-256 digests. A presented key is hashed; the first
//! eight bytes of its digest find the candidates, and the whole digest is
//! compared in constant time. Timing can reveal at most a digest prefix, never
//! anything about a key.

use std::collections::HashMap;
use std::sync::Arc;

use axum::http::{HeaderMap, header};
use secrecy::ExposeSecret;
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

use crate::admission::Admission;
use crate::admission::limit::Limit;
use crate::config::{AuthMode, ClientKey};
use crate::error::GatewayError;
use crate::request::Principal;

/// A configured key.
#[derive(Debug)]
struct KnownKey {
    digest: [u8; 32],
    name: Arc<str>,
    /// Its `max_in_flight`, when it has one.
    limit: Option<Limit>,
}

/// Who sent a request, and the in-flight limit of its key, if any.
#[derive(Debug)]
pub struct Caller<'a> {
    /// Who it is.
    pub principal: Principal,
    /// Its key's `max_in_flight`.
    pub limit: Option<&'a Limit>,
}

/// Checks the key of each request.
#[derive(Debug)]
pub struct Authenticator {
    mode: AuthMode,
    /// Digests of the configured keys and their names, by the digests' first
    /// eight bytes.
    keys: HashMap<u64, Vec<KnownKey>>,
}

impl Authenticator {
    /// From the configured mode and keys; the in-flight counts of keys with
    /// a `max_in_flight` come from `admission` (by key name, carried over
    /// from keys built before).
    pub fn new(mode: AuthMode, keys: &[ClientKey], admission: &Admission) -> Self {
        let mut map: HashMap<u64, Vec<KnownKey>> = HashMap::new();
        for key in keys {
            let digest = digest(key.key.expose_secret());
            map.entry(prefix(&digest)).or_default().push(KnownKey {
                digest,
                name: Arc::from(key.name.as_str()),
                limit: key
                    .max_in_flight
                    .map(|max| admission.key_limit(&key.name, max)),
            });
        }
        Self { mode, keys: map }
    }

    /// Accepts or refuses the caller behind `headers` (`Authorization: Bearer …`
    /// or `x-api-key`): who it is, and its key's in-flight limit.
    pub fn authenticate(&self, headers: &HeaderMap) -> Result<Caller<'_>, GatewayError> {
        if self.mode == AuthMode::Open {
            return Ok(Caller {
                principal: Principal::Open,
                limit: None,
            });
        }
        let key = presented_key(headers).ok_or(GatewayError::Unauthenticated(
            "missing API key: send `Authorization: Bearer <key>` or `x-api-key: <key>`",
        ))?;
        let presented = digest(key);
        let known = self.keys.get(&prefix(&presented)).and_then(|candidates| {
            candidates
                .iter()
                .find(|known| bool::from(known.digest.ct_eq(&presented)))
        });
        if let Some(known) = known {
            Ok(Caller {
                principal: Principal::ConfigKey(known.name.clone()),
                limit: known.limit.as_ref(),
            })
        } else {
            Err(GatewayError::Unauthenticated("invalid API key"))
        }
    }
}

/// Checks the admin key of `/admin/*` requests (`Authorization: Bearer <admin_key>`).
#[derive(Debug)]
pub struct AdminAuth {
    /// The digest of `server.admin_key`; `None` turns the admin API off.
    digest: Option<[u8; 32]>,
}

impl AdminAuth {
    /// From `server.admin_key`.
    pub fn new(key: Option<&secrecy::SecretString>) -> Self {
        Self {
            digest: key.map(|k| digest(k.expose_secret())),
        }
    }

    /// Accepts the admin, refuses anyone else with 401, and answers 404 for
    /// every admin path when the admin API is off.
    pub fn authenticate(&self, headers: &HeaderMap, path: &str) -> Result<(), GatewayError> {
        let Some(stored) = &self.digest else {
            return Err(GatewayError::RouteNotFound(format!(
                "{path} (the admin API is off: set `server.admin_key`)"
            )));
        };
        let key = presented_key(headers).ok_or(GatewayError::Unauthenticated(
            "missing admin key: send `Authorization: Bearer <admin_key>`",
        ))?;
        if bool::from(stored.ct_eq(&digest(key))) {
            Ok(())
        } else {
            Err(GatewayError::Unauthenticated("invalid admin key"))
        }
    }
}

fn prefix(digest: &[u8; 32]) -> u64 {
    let mut first = [0u8; 8];
    first.copy_from_slice(&digest[..8]);
    u64::from_le_bytes(first)
}

fn digest(key: &str) -> [u8; 32] {
    Sha256::digest(key.as_bytes()).into()
}

fn presented_key(headers: &HeaderMap) -> Option<&str> {
    if let Some(value) = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
    {
        let (scheme, token) = value.trim().split_once(' ')?;
        return scheme
            .eq_ignore_ascii_case("bearer")
            .then(|| token.trim())
            .filter(|t| !t.is_empty());
    }
    headers
        .get("x-api-key")
        .and_then(|v| v.to_str().ok())
        .map(str::trim)
        .filter(|k| !k.is_empty())
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use secrecy::SecretString;

    fn admission() -> Admission {
        let config = crate::config::Admission {
            max_in_flight: Some(8),
            max_queue: 0,
            queue_timeout: std::time::Duration::from_secs(1),
        };
        Admission::new(&config, 1, &crate::telemetry::metrics::Metrics::new())
    }

    fn auth() -> Authenticator {
        Authenticator::new(
            AuthMode::Keys,
            &[ClientKey {
                name: "app".into(),
                key: SecretString::from("sk-good"),
                max_in_flight: None,
            }],
            &admission(),
        )
    }

    fn headers(pairs: &[(&'static str, &str)]) -> HeaderMap {
        let mut map = HeaderMap::new();
        for (k, v) in pairs {
            map.insert(*k, v.parse().unwrap());
        }
        map
    }

    #[test]
    fn accepts_both_headers_and_refuses_the_rest() {
        let a = auth();
        for good in [
            headers(&[("authorization", "Bearer sk-good")]),
            headers(&[("authorization", "bearer  sk-good ")]),
            headers(&[("x-api-key", "sk-good")]),
        ] {
            assert!(a.authenticate(&good).is_ok(), "{good:?}");
        }
        for bad in [
            headers(&[]),
            headers(&[("authorization", "Bearer sk-bad")]),
            headers(&[("authorization", "Basic sk-good")]),
            headers(&[("authorization", "Bearer")]),
            headers(&[("x-api-key", "sk-goo")]),
            headers(&[("authorization", "Bearer sk-bad"), ("x-api-key", "sk-good")]),
        ] {
            assert!(a.authenticate(&bad).is_err(), "{bad:?}");
        }
        let open = Authenticator::new(AuthMode::Open, &[], &admission());
        assert!(open.authenticate(&headers(&[])).is_ok());
    }

    #[test]
    fn a_keys_limit_is_its_own_and_outlives_the_keys_built_again() {
        let admission = admission();
        let keys = |max| {
            let key = |name: &str, max_in_flight| ClientKey {
                name: name.into(),
                key: SecretString::from(format!("sk-{name}")),
                max_in_flight,
            };
            Authenticator::new(
                AuthMode::Keys,
                &[key("limited", Some(max)), key("free", None)],
                &admission,
            )
        };
        let before = keys(1);
        let limited = headers(&[("x-api-key", "sk-limited")]);
        let share = before
            .authenticate(&limited)
            .unwrap()
            .limit
            .unwrap()
            .try_take();
        assert!(share.is_some());
        let free = headers(&[("x-api-key", "sk-free")]);
        assert!(before.authenticate(&free).unwrap().limit.is_none());
        // Built again (a reload): the request under way still counts.
        let after = keys(1);
        let limit = after.authenticate(&limited).unwrap().limit.unwrap();
        assert!(limit.try_take().is_none());
        drop(share);
        assert!(limit.try_take().is_some());
    }

    #[test]
    fn the_admin_key_alone_opens_the_admin_api() {
        let admin = AdminAuth::new(Some(&SecretString::from("sk-admin")));
        let ok = headers(&[("authorization", "Bearer sk-admin")]);
        assert!(admin.authenticate(&ok, "/admin/x").is_ok());
        for bad in [
            headers(&[]),
            headers(&[("authorization", "Bearer sk-good")]),
        ] {
            let e = admin.authenticate(&bad, "/admin/x").unwrap_err();
            assert_eq!(e.status(), axum::http::StatusCode::UNAUTHORIZED);
        }
        let off = AdminAuth::new(None);
        let e = off.authenticate(&ok, "/admin/x").unwrap_err();
        assert_eq!(e.status(), axum::http::StatusCode::NOT_FOUND);
    }
}
