//! The memory tier: a bounded quick_cache map, weighed in bytes.
//!
//! Each entry carries its deadline and the time it was last read, on tokio's
//! clock, and both are checked on every read: the TTL and the idle TTL are
//! exact (and testable on a paused clock). A sweep every [`SWEEP_EVERY`]
//! gives back the memory of entries past either; between sweeps, the size
//! bound alone decides what stays.
//!
//! quick_cache rather than moka: with every request a miss, each answer is
//! stored and an older one evicted, and moka's insert (its entry nodes, the
//! queues its housekeeping drains, its table's re-hash of removed keys) cost
//! about 1.7 µs where quick_cache's, whose entries live in each shard's slab
//! with nothing to drain, costs 0.6 µs. Its eviction (CLOCK-Pro, with ghost
//! entries) also keeps answers asked for twice ahead of one-offs.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Weak};
use std::time::Duration;

use quick_cache::sync::Cache;
use tokio::time::Instant;

use super::entry::Entry;
use super::key::{Key, KeyHasher};

/// How often expired entries are swept out.
const SWEEP_EVERY: Duration = Duration::from_secs(30);

/// At most this many shards (each locked on its own); fewer when the tier is
/// small, so that each shard holds several of the largest entries.
const MAX_SHARDS: u64 = 16;

/// An entry, its deadline, and when it was last read (with an idle TTL
/// only: without one, storing an answer allocates nothing more).
#[derive(Debug, Clone)]
struct Stored {
    entry: Arc<Entry>,
    expires: Instant,
    /// Milliseconds from the tier's epoch to the last read (or the store).
    read_ms: Option<Arc<AtomicU64>>,
}

/// Weighs an entry by the bytes it holds.
#[derive(Debug, Clone, Copy)]
struct Weigh;

impl quick_cache::Weighter<Key, Stored> for Weigh {
    fn weight(&self, _key: &Key, stored: &Stored) -> u64 {
        u64::from(stored.entry.weight())
    }
}

type Entries = Cache<Key, Stored, Weigh, KeyHasher>;

/// The memory tier.
#[derive(Debug)]
pub struct Memory {
    entries: Arc<Entries>,
    /// When unread this long, an entry is gone.
    idle: Option<Duration>,
    /// The time `read_ms` counts from.
    epoch: Instant,
}

impl Memory {
    /// A tier of `max_bytes` for answers up to `max_entry_bytes`, entries
    /// dropped after `idle` unread. Inside a tokio runtime it sweeps itself
    /// while it lives.
    pub fn new(max_bytes: u64, max_entry_bytes: usize, idle: Option<Duration>) -> Self {
        let widest = (max_entry_bytes as u64).saturating_mul(4).max(1);
        let shards = (max_bytes / widest).clamp(1, MAX_SHARDS);
        let shards = 1 << shards.ilog2();
        #[expect(
            clippy::expect_used,
            reason = "building fails only when a capacity is not set, and both are"
        )]
        let options = quick_cache::OptionsBuilder::new()
            .weight_capacity(max_bytes)
            // Answers of about 2 KiB; the tables grow past it when needed.
            .estimated_items_capacity(usize::try_from(max_bytes / 2048).unwrap_or(usize::MAX))
            .shards(shards)
            .build()
            .expect("weight and item capacities given");
        let entries = Arc::new(Cache::with_options(
            options,
            Weigh,
            KeyHasher::default(),
            quick_cache::sync::DefaultLifecycle::default(),
        ));
        let memory = Self {
            entries,
            idle,
            epoch: Instant::now(),
        };
        if tokio::runtime::Handle::try_current().is_ok() {
            tokio::spawn(sweep(Arc::downgrade(&memory.entries), idle, memory.epoch));
        }
        memory
    }

    /// The entry under `key`, unless missing or expired.
    pub fn get(&self, key: Key) -> Option<Arc<Entry>> {
        let stored = self.entries.get(&key)?;
        let now = Instant::now();
        if expired(&stored, now, self.idle, self.epoch) {
            self.entries
                .remove_if(&key, |s| Arc::ptr_eq(&s.entry, &stored.entry));
            return None;
        }
        if let Some(read) = &stored.read_ms {
            read.store(millis(self.epoch, now), Ordering::Relaxed);
        }
        Some(stored.entry)
    }

    /// Keeps `entry` under `key` for `ttl`.
    pub fn insert(&self, key: Key, entry: Arc<Entry>, ttl: Duration) {
        let now = Instant::now();
        self.store(key, entry, now + ttl, now);
    }

    /// Puts `entry` in the place of the one under `key`, keeping its deadline.
    pub fn replace(&self, key: Key, entry: Arc<Entry>) {
        if let Some(stored) = self.entries.get(&key) {
            self.store(key, entry, stored.expires, Instant::now());
        }
    }

    fn store(&self, key: Key, entry: Arc<Entry>, expires: Instant, now: Instant) {
        let stored = Stored {
            entry,
            expires,
            read_ms: self
                .idle
                .map(|_| Arc::new(AtomicU64::new(millis(self.epoch, now)))),
        };
        self.entries.insert(key, stored);
    }

    /// Entries kept, and the bytes they weigh.
    pub fn size(&self) -> (u64, u64) {
        (self.entries.len() as u64, self.entries.weight())
    }
}

/// Whether `stored` is past its deadline, or unread for `idle`, at `now`.
fn expired(stored: &Stored, now: Instant, idle: Option<Duration>, epoch: Instant) -> bool {
    if stored.expires <= now {
        return true;
    }
    idle.zip(stored.read_ms.as_ref())
        .is_some_and(|(idle, read)| {
            let read = Duration::from_millis(read.load(Ordering::Relaxed));
            now.saturating_duration_since(epoch + read) >= idle
        })
}

fn millis(epoch: Instant, now: Instant) -> u64 {
    u64::try_from(now.saturating_duration_since(epoch).as_millis()).unwrap_or(u64::MAX)
}

/// Sweeps the expired entries out of `entries` every [`SWEEP_EVERY`], until
/// the tier is dropped.
async fn sweep(entries: Weak<Entries>, idle: Option<Duration>, epoch: Instant) {
    let mut ticks = tokio::time::interval(SWEEP_EVERY);
    ticks.tick().await;
    loop {
        ticks.tick().await;
        let Some(entries) = entries.upgrade() else {
            return;
        };
        let now = Instant::now();
        entries.retain(|_, stored| !expired(stored, now, idle, epoch));
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use bytes::Bytes;

    use super::*;
    use crate::cache::entry::Form;
    use crate::error::Dialect;

    fn entry(body: usize) -> Arc<Entry> {
        Arc::new(Entry {
            body: Bytes::from(vec![b'x'; body]),
            form: Form::Json,
            dialect: Dialect::OpenAi,
            usage: None,
            cost_micros: 0,
            stored_at: 0,
        })
    }

    #[tokio::test(start_paused = true)]
    async fn an_entry_lives_exactly_its_ttl() {
        let memory = Memory::new(1 << 20, 1 << 16, None);
        memory.insert(Key(1), entry(10), Duration::from_secs(60));
        tokio::time::advance(Duration::from_millis(59_999)).await;
        assert!(memory.get(Key(1)).is_some());
        tokio::time::advance(Duration::from_millis(1)).await;
        assert!(memory.get(Key(1)).is_none());
        assert_eq!(memory.size().0, 0, "an expired entry read is dropped");
    }

    #[tokio::test(start_paused = true)]
    async fn an_entry_unread_for_the_idle_ttl_is_gone_and_a_read_keeps_it() {
        let memory = Memory::new(1 << 20, 1 << 16, Some(Duration::from_secs(10)));
        memory.insert(Key(1), entry(10), Duration::from_secs(3600));
        memory.insert(Key(2), entry(10), Duration::from_secs(3600));
        for _ in 0..5 {
            tokio::time::advance(Duration::from_secs(9)).await;
            assert!(memory.get(Key(1)).is_some(), "read within the idle TTL");
        }
        assert!(memory.get(Key(2)).is_none(), "unread for 45 s");
    }

    #[tokio::test(start_paused = true)]
    async fn the_sweep_gives_back_the_memory_of_expired_entries() {
        let memory = Memory::new(1 << 20, 1 << 16, None);
        for i in 0..100 {
            let ttl = if i % 2 == 0 { 10 } else { 3600 };
            memory.insert(Key(i), entry(100), Duration::from_secs(ttl));
        }
        let (entries, bytes) = memory.size();
        assert_eq!(entries, 100);
        tokio::time::sleep(SWEEP_EVERY + Duration::from_secs(1)).await;
        tokio::task::yield_now().await;
        assert_eq!(memory.size(), (50, bytes / 2), "only the live half is left");
    }

    #[tokio::test(start_paused = true)]
    async fn a_replacement_keeps_the_deadline() {
        let memory = Memory::new(1 << 20, 1 << 16, None);
        memory.insert(Key(1), entry(10), Duration::from_secs(60));
        tokio::time::advance(Duration::from_secs(30)).await;
        memory.replace(Key(1), entry(20));
        assert_eq!(memory.get(Key(1)).unwrap().body.len(), 20);
        tokio::time::advance(Duration::from_secs(30)).await;
        assert!(memory.get(Key(1)).is_none());
        memory.replace(Key(2), entry(20));
        assert!(
            memory.get(Key(2)).is_none(),
            "nothing to replace, nothing kept"
        );
    }

    #[test]
    fn the_largest_entry_allowed_is_kept_and_the_size_bound_holds() {
        let (max_bytes, max_entry) = (1 << 20, 1 << 16);
        let memory = Memory::new(max_bytes, max_entry, None);
        memory.insert(Key(0), entry(max_entry), Duration::from_secs(60));
        assert!(memory.get(Key(0)).is_some());
        for i in 1..=1000 {
            memory.insert(Key(i), entry(2000), Duration::from_secs(60));
        }
        let (entries, bytes) = memory.size();
        assert!(bytes <= max_bytes, "{bytes} bytes held");
        assert!(entries > 300, "only {entries} entries kept");
    }
}
