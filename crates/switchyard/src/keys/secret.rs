//! The secret text of a key: how a virtual key is made, and what is kept of it.
//!
//! A virtual key is `sk-sy-` and 32 base64url characters: 24 bytes (192 bits)
//! straight from the operating system's generator. Only its SHA-256 digest is
//! stored. With that much randomness no salt or slow hash is needed — nobody can
//! guess a key from its digest, and hashing costs well under a microsecond per
//! request — and every replica and the offline CLI hash the same way without a
//! shared secret.

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use sha2::{Digest, Sha256};

/// What every virtual key starts with.
pub const KEY_PREFIX: &str = "sk-sy-";

/// Random bytes in a key.
const KEY_BYTES: usize = 24;

/// Characters of a key shown in listings: `sk-sy-` and five more.
const SHOWN: usize = KEY_PREFIX.len() + 5;

/// The digest of a key text, as stored and compared.
pub fn digest(key: &str) -> [u8; 32] {
    Sha256::digest(key.as_bytes()).into()
}

/// The first eight bytes of a digest, which index the known keys.
pub fn index_of(digest: &[u8; 32]) -> u64 {
    let mut first = [0u8; 8];
    first.copy_from_slice(&digest[..8]);
    u64::from_le_bytes(first)
}

/// A new key: its text (shown once) and what is stored of it.
pub struct Issued {
    /// The key text, for the caller alone.
    pub key: String,
    /// Its digest and shown start, for the store.
    pub stored: switchyard_store::NewSecret,
}

impl std::fmt::Debug for Issued {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Issued")
            .field("prefix", &self.stored.prefix)
            .finish_non_exhaustive()
    }
}

/// The operating system could not give random bytes.
#[derive(Debug, thiserror::Error)]
#[error("the operating system's random number generator failed: {0}")]
pub struct NoRandomness(getrandom::Error);

#[cfg(test)]
impl NoRandomness {
    /// The error, for tests that need one of every error.
    pub(crate) fn for_tests() -> Self {
        Self(getrandom::Error::UNSUPPORTED)
    }
}

/// Makes a new key.
pub fn issue() -> Result<Issued, NoRandomness> {
    let mut bytes = [0u8; KEY_BYTES];
    getrandom::fill(&mut bytes).map_err(NoRandomness)?;
    let key = format!("{KEY_PREFIX}{}", URL_SAFE_NO_PAD.encode(bytes));
    let stored = switchyard_store::NewSecret {
        digest: digest(&key),
        prefix: key[..SHOWN].to_owned(),
    };
    Ok(Issued { key, stored })
}

/// A new random token (a dashboard session's): 32 bytes as base64url.
pub fn token() -> Result<String, NoRandomness> {
    let mut bytes = [0u8; 32];
    getrandom::fill(&mut bytes).map_err(NoRandomness)?;
    Ok(URL_SAFE_NO_PAD.encode(bytes))
}

/// A new record id: `tag` and 16 random hex digits (`key_3f9c…`).
pub fn new_id(tag: &str) -> Result<String, NoRandomness> {
    let mut bytes = [0u8; 8];
    getrandom::fill(&mut bytes).map_err(NoRandomness)?;
    Ok(format!("{tag}_{:016x}", u64::from_be_bytes(bytes)))
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn keys_are_long_random_and_stored_only_as_digests() {
        let a = issue().unwrap();
        let b = issue().unwrap();
        assert_ne!(a.key, b.key);
        assert!(a.key.starts_with(KEY_PREFIX));
        assert_eq!(a.key.len(), KEY_PREFIX.len() + 32);
        assert!(
            a.key[KEY_PREFIX.len()..]
                .bytes()
                .all(|c| c.is_ascii_alphanumeric() || c == b'-' || c == b'_')
        );
        assert_eq!(a.stored.digest, digest(&a.key));
        assert!(a.key.starts_with(&a.stored.prefix));
        assert_eq!(a.stored.prefix.len(), 11);
        assert!(!format!("{a:?}").contains(&a.key));
        let id = new_id("key").unwrap();
        assert!(id.starts_with("key_") && id.len() == 20, "{id}");
    }
}
