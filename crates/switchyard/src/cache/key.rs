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

/// How the maps holding [`Key`]s hash them (the memory tier, the flights in
/// the air). A key is already a digest, so a fast hasher seeded per process
/// is enough; SipHash, the default, cost more than the maps' own work.
pub type KeyHasher = foldhash::fast::RandomState;

impl Key {
    /// The key of a request: `scope` (who may share the answer), `endpoint`,
    /// the `model` that serves it, the body's canonical digest, and `extra`
    /// (headers that change the answer, such as `anthropic-beta`).
    pub fn new(scope: Scope<'_>, endpoint: &str, model: &str, body: u128, extra: &[u8]) -> Self {
        let [id, endpoint, model] = [scope.id, endpoint, model].map(str::as_bytes);
        let lens = [id, endpoint, model].map(|part| (part.len() as u64).to_le_bytes());
        let body = body.to_le_bytes();
        Self(hash_joined(&[
            &[scope.kind],
            &lens[0],
            id,
            &lens[1],
            endpoint,
            &lens[2],
            model,
            &body,
            extra,
        ]))
    }

    /// The key as 32 hex digits (Redis keys).
    pub fn hex(&self) -> String {
        format!("{:032x}", self.0)
    }
}

/// The hash of `pieces` one after another, in one call: written out on the
/// stack up to 256 bytes (a streaming hasher's state alone is larger), on
/// the heap past it.
fn hash_joined(pieces: &[&[u8]]) -> u128 {
    let len: usize = pieces.iter().map(|piece| piece.len()).sum();
    let mut stack = [0u8; 256];
    let Some(out) = stack.get_mut(..len) else {
        return xxh3_128(&pieces.concat());
    };
    let mut at = 0;
    for piece in pieces {
        out[at..at + piece.len()].copy_from_slice(piece);
        at += piece.len();
    }
    xxh3_128(out)
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
