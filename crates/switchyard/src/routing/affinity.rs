//! Prompt-cache affinity: requests that share a long prompt prefix go back to
//! the deployment that served that prefix last, so the provider's prompt cache
//! keeps hitting.
//!
//! The prefix is the first `prefix_bytes` of the client's body (system prompt,
//! tools and first messages, as clients write them first); its hash picks one
//! of a fixed number of slots, each one atomic word holding a tag of the hash,
//! the deployment and when the entry expires. No lock, no allocation; a
//! collision only costs a cache miss.

use std::hash::{BuildHasher, Hasher};
use std::sync::LazyLock;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use tokio::time::Instant;

/// Slots per model.
const SLOTS: usize = 4096;

/// The zero point of expiry times.
static EPOCH: LazyLock<Instant> = LazyLock::new(Instant::now);

/// The hasher of prefixes, keyed once per process.
static HASHER: LazyLock<std::collections::hash_map::RandomState> =
    LazyLock::new(std::collections::hash_map::RandomState::new);

/// One model's affinity table.
#[derive(Debug)]
pub struct Affinity {
    prefix_bytes: usize,
    ttl: Duration,
    /// `tag (24 bits) | deployment (8) | expiry in seconds since EPOCH (32)`.
    slots: Box<[AtomicU64]>,
}

/// A request's prefix, hashed.
#[derive(Debug, Clone, Copy)]
pub struct Prefix(u64);

impl Affinity {
    /// Affinity for prefixes of `prefix_bytes`, remembered for `ttl`.
    pub fn new(prefix_bytes: usize, ttl: Duration) -> Self {
        Self {
            prefix_bytes,
            ttl,
            slots: (0..SLOTS).map(|_| AtomicU64::new(0)).collect(),
        }
    }

    /// The prefix of `body`, when it is long enough to count.
    pub fn prefix(&self, body: &[u8]) -> Option<Prefix> {
        let prefix = body.get(..self.prefix_bytes)?;
        let mut hasher = HASHER.build_hasher();
        hasher.write(prefix);
        Some(Prefix(hasher.finish()))
    }

    /// The deployment that served `prefix` last, if that is recent.
    pub fn get(&self, prefix: Prefix, now: Instant) -> Option<usize> {
        let word = self.slot(prefix).load(Ordering::Relaxed);
        let (tag, index, expires) = (word >> 40, (word >> 32) & 0xff, word & 0xffff_ffff);
        (word != 0 && tag == Self::tag(prefix) && expires > seconds(now)).then_some(index as usize)
    }

    /// Remembers that deployment `index` served `prefix`.
    pub fn set(&self, prefix: Prefix, index: usize, now: Instant) {
        let expires = seconds(now + self.ttl).max(1);
        let word = (Self::tag(prefix) << 40) | ((index as u64 & 0xff) << 32) | expires;
        self.slot(prefix).store(word, Ordering::Relaxed);
    }

    fn slot(&self, prefix: Prefix) -> &AtomicU64 {
        &self.slots[(prefix.0 as usize) % SLOTS]
    }

    fn tag(prefix: Prefix) -> u64 {
        prefix.0 >> 40
    }
}

fn seconds(at: Instant) -> u64 {
    at.saturating_duration_since(*EPOCH)
        .as_secs()
        .min(0xffff_ffff)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn remembers_a_prefix_until_it_expires() {
        let affinity = Affinity::new(8, Duration::from_secs(60));
        let now = Instant::now();
        assert!(affinity.prefix(b"short").is_none(), "too short to count");
        let prefix = affinity
            .prefix(b"a long shared prompt")
            .unwrap_or(Prefix(0));
        assert_eq!(affinity.get(prefix, now), None);
        affinity.set(prefix, 3, now);
        assert_eq!(affinity.get(prefix, now), Some(3));
        let same = affinity
            .prefix(b"a long sh... another ending")
            .unwrap_or(Prefix(1));
        assert_eq!(affinity.get(same, now), Some(3), "the same first 8 bytes");
        let other = affinity.prefix(b"something else").unwrap_or(Prefix(2));
        assert_eq!(affinity.get(other, now), None);
        assert_eq!(affinity.get(prefix, now + Duration::from_secs(61)), None);
    }
}
