//! Client authentication: `auth.mode: open`, the configured keys, or the
//! virtual keys of the store ([`crate::keys`]).
//!
//! Keys are kept only as SHA-256 digests. A presented key is hashed; the first
//! eight bytes of its digest find the candidates, and the whole digest is
//! compared in constant time. Timing can reveal at most a digest prefix, never
//! anything about a key.

use std::collections::HashMap;
use std::sync::Arc;

use axum::http::{HeaderMap, header};
use secrecy::ExposeSecret;
use subtle::ConstantTimeEq;

use crate::admission::Admission;
use crate::admission::limit::Limit;
use crate::config::{AuthMode, ClientKey};
use crate::error::GatewayError;
use crate::keys::secret::{digest, index_of};
use crate::keys::{Directory, KeyError};
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
            map.entry(index_of(&digest)).or_default().push(KnownKey {
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
    /// or `x-api-key`): who it is, and its key's in-flight limit. A key is
    /// looked up among the configured keys, then among the virtual keys of
    /// `directory`. In `open` mode no key is needed, but one that is known
    /// still names the caller (so its limits apply).
    pub async fn authenticate(
        &self,
        headers: &HeaderMap,
        directory: &Directory,
    ) -> Result<Caller<'_>, GatewayError> {
        let open = Caller {
            principal: Principal::Open,
            limit: None,
        };
        let Some(key) = presented_key(headers) else {
            return match self.mode {
                AuthMode::Open => Ok(open),
                AuthMode::Keys => Err(GatewayError::Unauthenticated(
                    "missing API key: send `Authorization: Bearer <key>` or `x-api-key: <key>`",
                )),
            };
        };
        let presented = digest(key);
        let found = self.find(&presented, directory).await;
        match (found, self.mode) {
            (Ok(Some(caller)), _) => Ok(caller),
            (_, AuthMode::Open) => Ok(open),
            (Ok(None), AuthMode::Keys) => Err(GatewayError::Unauthenticated("invalid API key")),
            (Err(e), AuthMode::Keys) => Err(e.into()),
        }
    }

    /// The configured or virtual key whose digest is `presented`.
    async fn find(
        &self,
        presented: &[u8; 32],
        directory: &Directory,
    ) -> Result<Option<Caller<'_>>, KeyError> {
        let known = self.keys.get(&index_of(presented)).and_then(|candidates| {
            candidates
                .iter()
                .find(|known| bool::from(known.digest.ct_eq(presented)))
        });
        if let Some(known) = known {
            return Ok(Some(Caller {
                principal: Principal::ConfigKey(known.name.clone()),
                limit: known.limit.as_ref(),
            }));
        }
        Ok(directory.find(presented).await?.map(|tenant| Caller {
            principal: Principal::VirtualKey(tenant),
            limit: None,
        }))
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

    /// Whether an admin key is set (the admin API is on).
    pub fn is_on(&self) -> bool {
        self.digest.is_some()
    }

    /// A digest of the admin key's digest: what a dashboard session of the
    /// admin keeps, so that it ends when the admin key changes.
    pub fn fingerprint(&self) -> Option<[u8; 32]> {
        self.digest.map(|d| {
            use sha2::Digest as _;
            sha2::Sha256::digest(d).into()
        })
    }

    /// Whether `key` is the admin key (compared in constant time).
    pub fn accepts(&self, key: &str) -> bool {
        self.digest
            .is_some_and(|stored| bool::from(stored.ct_eq(&digest(key))))
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

    /// The virtual keys of an empty store in a temporary directory.
    async fn directory() -> (tempfile::TempDir, Directory) {
        let dir = tempfile::tempdir().unwrap();
        let url = format!("sqlite://{}", dir.path().join("keys.db").display());
        let store = switchyard_store::open(&url, &Default::default())
            .await
            .unwrap();
        let keys = Directory::load(store, 100, std::time::Duration::from_secs(1), None)
            .await
            .unwrap();
        (dir, keys)
    }

    fn headers(pairs: &[(&'static str, &str)]) -> HeaderMap {
        let mut map = HeaderMap::new();
        for (k, v) in pairs {
            map.insert(*k, v.parse().unwrap());
        }
        map
    }

    #[tokio::test]
    async fn accepts_both_headers_and_refuses_the_rest() {
        let (_dir, keys) = directory().await;
        let a = auth();
        for good in [
            headers(&[("authorization", "Bearer sk-good")]),
            headers(&[("authorization", "bearer  sk-good ")]),
            headers(&[("x-api-key", "sk-good")]),
        ] {
            assert!(a.authenticate(&good, &keys).await.is_ok(), "{good:?}");
        }
        for bad in [
            headers(&[]),
            headers(&[("authorization", "Bearer sk-bad")]),
            headers(&[("authorization", "Basic sk-good")]),
            headers(&[("authorization", "Bearer")]),
            headers(&[("x-api-key", "sk-goo")]),
            headers(&[("authorization", "Bearer sk-bad"), ("x-api-key", "sk-good")]),
        ] {
            assert!(a.authenticate(&bad, &keys).await.is_err(), "{bad:?}");
        }
        let open = Authenticator::new(AuthMode::Open, &[], &admission());
        assert!(open.authenticate(&headers(&[]), &keys).await.is_ok());
    }

    #[tokio::test]
    async fn a_keys_limit_is_its_own_and_outlives_the_keys_built_again() {
        let (_dir, directory) = directory().await;
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
            .authenticate(&limited, &directory)
            .await
            .unwrap()
            .limit
            .unwrap()
            .try_take();
        assert!(share.is_some());
        let free = headers(&[("x-api-key", "sk-free")]);
        assert!(
            before
                .authenticate(&free, &directory)
                .await
                .unwrap()
                .limit
                .is_none()
        );
        // Built again (a reload): the request under way still counts.
        let after = keys(1);
        let caller = after.authenticate(&limited, &directory).await.unwrap();
        let limit = caller.limit.unwrap();
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
