//! Following the store's change feed: which changes are new, and the loop
//! that reads them.
//!
//! Sequence numbers come from the database. In SQLite (one writer) they commit
//! in order; in PostgreSQL two transactions may commit out of order, so a read
//! can see change 12 before change 11 exists. The follower therefore keeps a
//! floor (every change up to it is applied) and the changes seen above it, and
//! reads from the floor each time: a late change fills its hole when it
//! commits. A hole that stays open for [`HOLE_WAIT`] is a number the database
//! gave out and never used (a transaction rolled back), and is passed over.

use std::collections::BTreeSet;
use std::time::{Duration, Instant};

use switchyard_store::{Change, Store, StoreError};
use tokio_util::sync::CancellationToken;

use super::Directory;

/// Changes read at most per poll.
const POLL_LIMIT: u32 = 1000;

/// How long a hole in the sequence is waited on before it is passed over.
const HOLE_WAIT: Duration = Duration::from_secs(10);

/// Where a reader of the change feed is.
#[derive(Debug)]
pub struct Follower {
    /// Every change up to this one is applied.
    floor: i64,
    /// Changes applied above the floor (there is a hole under them).
    seen: BTreeSet<i64>,
    /// Since when the hole above the floor is open.
    hole_since: Option<Instant>,
}

impl Follower {
    /// A follower that has applied every change up to `floor`.
    pub fn new(floor: i64) -> Self {
        Self {
            floor,
            seen: BTreeSet::new(),
            hole_since: None,
        }
    }

    /// The changes not applied yet.
    pub(super) async fn poll(&mut self, store: &dyn Store) -> Result<Vec<Change>, StoreError> {
        let mut changes = store.changes_after(self.floor, POLL_LIMIT).await?;
        changes.retain(|c| !self.seen.contains(&c.seq));
        Ok(changes)
    }

    /// Records `changes` as applied.
    pub(super) fn applied(&mut self, changes: &[Change]) {
        self.seen.extend(changes.iter().map(|c| c.seq));
        self.advance(Instant::now());
    }

    fn advance(&mut self, now: Instant) {
        while self.seen.remove(&(self.floor + 1)) {
            self.floor += 1;
        }
        match (self.seen.first(), self.hole_since) {
            (None, _) => self.hole_since = None,
            (Some(_), None) => self.hole_since = Some(now),
            (Some(&next), Some(since)) if now.duration_since(since) >= HOLE_WAIT => {
                self.floor = next - 1;
                self.hole_since = None;
                self.advance(now);
            }
            (Some(_), Some(_)) => {}
        }
    }
}

impl Directory {
    /// Reads the change feed every `every` until `stop`. A store that cannot
    /// be read is logged once per outage; the keys in memory keep working.
    pub async fn follow(&self, every: Duration, stop: CancellationToken) {
        let mut ticks = tokio::time::interval(every);
        ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let mut down = false;
        loop {
            tokio::select! {
                () = stop.cancelled() => return,
                _ = ticks.tick() => {}
            }
            match self.sync().await {
                Ok(_) if down => {
                    down = false;
                    tracing::info!("the store answers again: key changes are followed");
                }
                Ok(_) => {}
                Err(e) if !down => {
                    down = true;
                    tracing::warn!(error = %e, "the store cannot be read: the keys in memory keep working, changes wait");
                }
                Err(_) => {}
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn change(seq: i64) -> Change {
        Change {
            seq,
            kind: switchyard_store::ChangeKind::Key,
            entity_id: format!("key_{seq}"),
            at: 0,
        }
    }

    #[test]
    fn the_floor_waits_under_a_hole_then_passes_it() {
        let t0 = Instant::now();
        let mut follower = Follower::new(10);
        follower.seen.extend([11, 13]);
        follower.advance(t0);
        assert_eq!(follower.floor, 11);
        // 12 is not committed yet: 13 is kept as seen, and the floor waits.
        assert_eq!(follower.seen.iter().copied().collect::<Vec<_>>(), [13]);
        follower.advance(t0 + Duration::from_secs(1));
        assert_eq!(follower.floor, 11);
        // 12 commits: the floor moves past both.
        follower.applied(&[change(12)]);
        assert_eq!((follower.floor, follower.seen.len()), (13, 0));
        // A hole that never fills is passed over after HOLE_WAIT.
        follower.seen.insert(15);
        follower.advance(t0);
        follower.advance(t0 + HOLE_WAIT);
        assert_eq!((follower.floor, follower.seen.len()), (15, 0));
        assert!(follower.hole_since.is_none());
    }
}
