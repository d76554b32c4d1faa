//! The memory tier: a bounded moka cache, weighed in bytes.
//!
//! moka reads its own clock, so each entry also carries its deadline on
//! tokio's clock, checked on every read: the TTL is exact (and testable on a
//! paused clock); moka's own expiry only gives the memory back.

use std::sync::Arc;
use std::time::Duration;

use moka::sync::Cache;
use tokio::time::Instant;

use super::entry::Entry;
use super::key::{Key, KeyHasher};

/// An entry and its deadline.
#[derive(Debug)]
struct Stored {
    entry: Arc<Entry>,
    expires: Instant,
}

/// The memory tier.
#[derive(Debug)]
pub struct Memory {
    entries: Cache<Key, Arc<Stored>, KeyHasher>,
}

/// Gives each entry its own TTL, and an idle TTL when one is set.
struct Expiry {
    idle: Option<Duration>,
}

impl moka::Expiry<Key, Arc<Stored>> for Expiry {
    fn expire_after_create(
        &self,
        _key: &Key,
        value: &Arc<Stored>,
        _created_at: std::time::Instant,
    ) -> Option<Duration> {
        let left = value.expires.saturating_duration_since(Instant::now());
        Some(self.idle.map_or(left, |idle| idle.min(left)))
    }

    fn expire_after_read(
        &self,
        _key: &Key,
        value: &Arc<Stored>,
        _read_at: std::time::Instant,
        left: Option<Duration>,
        _last_modified_at: std::time::Instant,
    ) -> Option<Duration> {
        match self.idle {
            Some(idle) => Some(idle.min(value.expires.saturating_duration_since(Instant::now()))),
            None => left,
        }
    }
}

impl Memory {
    /// A tier of `max_bytes`, entries dropped after `idle` unread.
    pub fn new(max_bytes: u64, idle: Option<Duration>) -> Self {
        Self {
            entries: Cache::builder()
                .max_capacity(max_bytes)
                .weigher(|_: &Key, stored: &Arc<Stored>| stored.entry.weight())
                .expire_after(Expiry { idle })
                .build_with_hasher(KeyHasher::default()),
        }
    }

    /// The entry under `key`, unless missing or expired.
    pub fn get(&self, key: Key) -> Option<Arc<Entry>> {
        let stored = self.entries.get(&key)?;
        if stored.expires <= Instant::now() {
            self.entries.invalidate(&key);
            return None;
        }
        Some(stored.entry.clone())
    }

    /// Keeps `entry` under `key` for `ttl`.
    pub fn insert(&self, key: Key, entry: Arc<Entry>, ttl: Duration) {
        let expires = Instant::now() + ttl;
        self.entries
            .insert(key, Arc::new(Stored { entry, expires }));
    }

    /// Puts `entry` in the place of the one under `key`, keeping its deadline.
    pub fn replace(&self, key: Key, entry: Arc<Entry>) {
        if let Some(stored) = self.entries.get(&key) {
            let expires = stored.expires;
            self.entries
                .insert(key, Arc::new(Stored { entry, expires }));
        }
    }

    /// Entries kept, and the bytes they weigh (as of the last upkeep).
    pub fn size(&self) -> (u64, u64) {
        self.entries.run_pending_tasks();
        (self.entries.entry_count(), self.entries.weighted_size())
    }
}
