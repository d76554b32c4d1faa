//! Request ids: UUID-shaped, made without a system call.
//!
//! A v4 UUID from the operating system's generator costs a `getrandom` call per
//! request. These ids mix a per-process random seed with a counter through
//! SplitMix64: unique within the process, unpredictable enough to tell replicas
//! apart, and formatted as a version-4 UUID so log tooling accepts them.

use std::hash::{BuildHasher, RandomState};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use axum::http::HeaderValue;

use crate::mix::splitmix64;

/// Makes a fresh id for each request that arrives without one.
#[derive(Debug, Clone)]
pub struct RequestIds {
    inner: Arc<Ids>,
}

#[derive(Debug)]
struct Ids {
    seed: u64,
    counter: AtomicU64,
}

impl Default for RequestIds {
    fn default() -> Self {
        // `RandomState` is seeded from the OS once per process.
        let seed = RandomState::new().hash_one(std::process::id());
        Self {
            inner: Arc::new(Ids {
                seed,
                counter: AtomicU64::new(0),
            }),
        }
    }
}

impl RequestIds {
    /// The next id as a header value.
    pub fn next(&self) -> HeaderValue {
        let id = self.next_id();
        // Hex digits and dashes are always a valid header value.
        HeaderValue::from_bytes(&id).unwrap_or_else(|_| HeaderValue::from_static("-"))
    }

    /// The next id as 36 characters: `xxxxxxxx-xxxx-4xxx-yxxx-xxxxxxxxxxxx`.
    fn next_id(&self) -> [u8; 36] {
        let n = self.inner.counter.fetch_add(1, Ordering::Relaxed);
        let high = splitmix64(self.inner.seed ^ n);
        let low = splitmix64(high ^ self.inner.seed.rotate_left(32) ^ n);
        // Version 4, variant 10xx.
        let high = (high & !0xf000) | 0x4000;
        let low = (low & !(0xc << 60)) | (0x8 << 60);
        let bits = (u128::from(high) << 64) | u128::from(low);
        let mut out = [b'-'; 36];
        let mut nibble = 32;
        for (i, slot) in out.iter_mut().enumerate() {
            if matches!(i, 8 | 13 | 18 | 23) {
                continue;
            }
            nibble -= 1;
            let digit = ((bits >> (nibble * 4)) & 0xf) as u8;
            *slot = if digit < 10 {
                b'0' + digit
            } else {
                b'a' + digit - 10
            };
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use std::collections::HashSet;

    use super::*;

    #[test]
    fn ids_are_unique_version_4_uuids() {
        let ids = RequestIds::default();
        let mut seen = HashSet::new();
        for _ in 0..10_000 {
            let id = String::from_utf8(ids.next_id().to_vec()).unwrap();
            let parts: Vec<&str> = id.split('-').collect();
            assert_eq!(
                parts.iter().map(|p| p.len()).collect::<Vec<_>>(),
                [8, 4, 4, 4, 12],
                "{id}"
            );
            assert!(parts[2].starts_with('4'), "{id}");
            assert!(
                matches!(parts[3].as_bytes()[0], b'8' | b'9' | b'a' | b'b'),
                "{id}"
            );
            assert!(
                id.bytes().all(|b| b == b'-' || b.is_ascii_hexdigit()),
                "{id}"
            );
            assert!(seen.insert(id));
        }
    }
}
