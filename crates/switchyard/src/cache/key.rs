//! The key of a cached answer: a 128-bit hash of who may share it, the
//! endpoint, the model that serves it, and the request in canonical form
//! ([`canonical`]: key order and whitespace do not count, and neither do the
//! top-level fields that cannot change the answer, such as `user`,
//! `metadata` and `stream`).

mod canonical;

pub use canonical::{Digest, Malformed, digest};
use xxhash_rust::xxh3::xxh3_128;

/// The key of one cached answer.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Key(pub u128);

/// How the maps holding [`Key`]s hash them. A key is already a digest, so a
/// fast hasher seeded per process is enough: SipHash, the default, cost the
/// memory tier more than its own work (its table re-hashes every key as it
/// grows and sheds evicted ones).
pub type KeyHasher = foldhash::fast::RandomState;

impl Key {
    /// The key of a request: `scope` (who may share the answer), `endpoint`,
    /// the `model` that serves it, the body's canonical digest, and `extra`
    /// (headers that change the answer, such as `anthropic-beta`).
    pub fn new(scope: Scope<'_>, endpoint: &str, model: &str, body: u128, extra: &[u8]) -> Self {
        /// Keys are written out on the stack up to this length (a streaming
        /// hasher's state alone is larger), on the heap past it.
        const ON_STACK: usize = 256;
        let parts = [scope.id.as_bytes(), endpoint.as_bytes(), model.as_bytes()];
        let len = 1 + parts.iter().map(|p| 8 + p.len()).sum::<usize>() + 16 + extra.len();
        let write = |out: &mut [u8]| {
            let mut at = 0;
            let mut put = |bytes: &[u8]| {
                out[at..at + bytes.len()].copy_from_slice(bytes);
                at += bytes.len();
            };
            put(&[scope.kind]);
            for part in parts {
                put(&(part.len() as u64).to_le_bytes());
                put(part);
            }
            put(&body.to_le_bytes());
            put(extra);
        };
        if len <= ON_STACK {
            let mut out = [0u8; ON_STACK];
            write(&mut out[..len]);
            Self(xxh3_128(&out[..len]))
        } else {
            let mut out = vec![0u8; len];
            write(&mut out);
            Self(xxh3_128(&out))
        }
    }

    /// The key as 32 hex digits (Redis keys).
    pub fn hex(&self) -> String {
        format!("{:032x}", self.0)
    }
}

/// Who may share a cached answer: a kind (a virtual key, a config key, a
/// team, everyone, …) and an id within it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Scope<'a> {
    /// The kind of sharer, a byte of its own.
    pub kind: u8,
    /// The sharer within its kind.
    pub id: &'a str,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn scopes_endpoints_and_models_make_different_keys() {
        let a = Scope {
            kind: b'k',
            id: "1",
        };
        let b = Scope {
            kind: b'k',
            id: "2",
        };
        let key = Key::new(a, "chat", "m", 7, b"");
        assert_ne!(key, Key::new(b, "chat", "m", 7, b""));
        assert_ne!(
            key,
            Key::new(
                Scope {
                    kind: b't',
                    id: "1"
                },
                "chat",
                "m",
                7,
                b""
            )
        );
        assert_ne!(key, Key::new(a, "completions", "m", 7, b""));
        assert_ne!(key, Key::new(a, "chat", "n", 7, b""));
        assert_ne!(key, Key::new(a, "chat", "m", 7, b"beta"));
        // Written out on the heap past 256 bytes, still told apart.
        let long = "x".repeat(300);
        assert_ne!(
            Key::new(a, "chat", "m", 7, long.as_bytes()),
            Key::new(a, "chat", "m", 7, &long.as_bytes()[1..])
        );
        // Lengths are hashed: parts cannot slide into each other.
        assert_ne!(
            Key::new(
                Scope {
                    kind: b'k',
                    id: "1c"
                },
                "hat",
                "m",
                7,
                b""
            ),
            key
        );
    }
}
