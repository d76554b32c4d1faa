//! Client authentication: `auth.mode: open` or the configured keys.
//!
//! Keys are kept only as SHA-256 digests; a presented key is hashed, looked up,
//! and the digests compared in constant time.

use std::collections::HashMap;
use std::sync::Arc;

use axum::http::{HeaderMap, header};
use secrecy::ExposeSecret;
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

use crate::config::{AuthMode, ClientKey};
use crate::error::GatewayError;

/// Who is calling.
#[derive(Debug, Clone)]
pub struct Principal {
    /// The key's name, or `anonymous` in open mode.
    pub name: Arc<str>,
}

/// Checks the key of each request.
#[derive(Debug)]
pub struct Authenticator {
    mode: AuthMode,
    keys: HashMap<[u8; 32], Arc<str>>,
}

impl Authenticator {
    /// From the configured mode and keys.
    pub fn new(mode: AuthMode, keys: &[ClientKey]) -> Self {
        let keys = keys
            .iter()
            .map(|k| (digest(k.key.expose_secret()), Arc::from(k.name.as_str())))
            .collect();
        Self { mode, keys }
    }

    /// The caller behind `headers` (`Authorization: Bearer …` or `x-api-key`).
    pub fn authenticate(&self, headers: &HeaderMap) -> Result<Principal, GatewayError> {
        if self.mode == AuthMode::Open {
            return Ok(Principal {
                name: Arc::from("anonymous"),
            });
        }
        let key = presented_key(headers).ok_or(GatewayError::Unauthenticated(
            "missing API key: send `Authorization: Bearer <key>` or `x-api-key: <key>`",
        ))?;
        let presented = digest(key);
        match self.keys.get_key_value(&presented) {
            Some((stored, name)) if bool::from(stored.ct_eq(&presented)) => {
                Ok(Principal { name: name.clone() })
            }
            _ => Err(GatewayError::Unauthenticated("invalid API key")),
        }
    }
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

    fn auth() -> Authenticator {
        Authenticator::new(
            AuthMode::Keys,
            &[ClientKey {
                name: "app".into(),
                key: SecretString::from("sk-good"),
            }],
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
        assert_eq!(
            &*a.authenticate(&headers(&[("authorization", "Bearer sk-good")]))
                .unwrap()
                .name,
            "app"
        );
        assert_eq!(
            &*a.authenticate(&headers(&[("authorization", "bearer  sk-good ")]))
                .unwrap()
                .name,
            "app"
        );
        assert_eq!(
            &*a.authenticate(&headers(&[("x-api-key", "sk-good")]))
                .unwrap()
                .name,
            "app"
        );
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
        let open = Authenticator::new(AuthMode::Open, &[]);
        assert!(open.authenticate(&headers(&[])).is_ok());
    }
}
