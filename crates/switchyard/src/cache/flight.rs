//! Coalescing: identical requests missing at the same time make one
//! upstream call. The first is the leader; the others wait for its answer,
//! and when it fails (or takes too long) go on by themselves.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::sync::watch;

use super::entry::Entry;
use super::key::{Key, KeyHasher};

/// Shards of the map of flights in the air (a lock is held for an insert
/// or a removal only).
const SHARDS: usize = 16;

/// Where a flight stands.
#[derive(Debug, Clone)]
enum State {
    Pending,
    Landed(Arc<Entry>),
    Failed,
}

type Flying = Mutex<HashMap<Key, watch::Receiver<State>, KeyHasher>>;

/// The flights in the air, by key.
#[derive(Debug)]
pub struct Flights {
    shards: Box<[Flying]>,
}

/// What joining a flight made of a request.
#[derive(Debug)]
pub enum Joined {
    /// It leads: its answer is awaited by the others.
    Leader(Leader),
    /// Another request leads; wait for it.
    Waiter(Waiter),
}

/// The leader's end of a flight: resolved by [`Leader::land`], failed
/// when dropped without.
#[derive(Debug)]
pub struct Leader {
    flights: Arc<Flights>,
    key: Key,
    state: watch::Sender<State>,
}

/// A waiter's end of a flight.
#[derive(Debug)]
pub struct Waiter {
    state: watch::Receiver<State>,
}

impl Default for Flights {
    fn default() -> Self {
        Self {
            shards: (0..SHARDS).map(|_| Mutex::default()).collect(),
        }
    }
}

impl Flights {
    fn shard(&self, key: Key) -> &Flying {
        #[allow(clippy::cast_possible_truncation)]
        &self.shards[(key.0 as usize) % SHARDS]
    }

    /// Leads the flight of `key`, or waits for the one in the air.
    pub fn join(self: &Arc<Self>, key: Key) -> Joined {
        let mut flying = self
            .shard(key)
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        if let Some(state) = flying.get(&key) {
            return Joined::Waiter(Waiter {
                state: state.clone(),
            });
        }
        let (state, receiver) = watch::channel(State::Pending);
        flying.insert(key, receiver);
        Joined::Leader(Leader {
            flights: self.clone(),
            key,
            state,
        })
    }

    /// Flights in the air.
    #[cfg(test)]
    fn len(&self) -> usize {
        self.shards
            .iter()
            .map(|s| s.lock().map_or(0, |m| m.len()))
            .sum()
    }
}

impl Leader {
    /// The leader's answer was stored: the waiters get it.
    pub fn land(self, entry: Arc<Entry>) {
        // The map holds one receiver; any other is a waiter's. Without one,
        // nobody is woken (a waiter joining after this look is released
        // when the leader drops, and goes on by itself).
        if self.state.receiver_count() > 1 {
            self.state.send_replace(State::Landed(entry));
        }
    }
}

impl Drop for Leader {
    fn drop(&mut self) {
        self.flights
            .shard(self.key)
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .remove(&self.key);
        if self.state.receiver_count() == 0 {
            return;
        }
        // Not landed: the waiters go on by themselves.
        self.state.send_if_modified(|state| {
            if matches!(state, State::Pending) {
                *state = State::Failed;
                true
            } else {
                false
            }
        });
    }
}

impl Waiter {
    /// The leader's stored answer, or `None` when it failed or `wait` ran out.
    pub async fn wait(mut self, wait: Duration) -> Option<Arc<Entry>> {
        let landed =
            tokio::time::timeout(wait, self.state.wait_for(|s| !matches!(s, State::Pending)))
                .await
                .ok()?
                .ok()?;
        match &*landed {
            State::Landed(entry) => Some(entry.clone()),
            State::Pending | State::Failed => None,
        }
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use bytes::Bytes;

    use super::*;
    use crate::cache::entry::Form;
    use crate::error::Dialect;

    fn entry() -> Arc<Entry> {
        Arc::new(Entry {
            body: Bytes::from_static(b"{}"),
            form: Form::Json,
            dialect: Dialect::OpenAi,
            usage: None,
            cost_micros: 0,
            stored_at: 0,
        })
    }

    #[tokio::test]
    async fn a_landed_leader_answers_every_waiter() {
        let flights = Arc::new(Flights::default());
        let Joined::Leader(leader) = flights.join(Key(1)) else {
            panic!("the first leads");
        };
        let waiters: Vec<_> = (0..100)
            .map(|_| match flights.join(Key(1)) {
                Joined::Waiter(w) => tokio::spawn(w.wait(Duration::from_secs(5))),
                Joined::Leader(_) => panic!("the others wait"),
            })
            .collect();
        // Another key flies apart.
        assert!(matches!(flights.join(Key(2)), Joined::Leader(_)));
        leader.land(entry());
        for waiter in waiters {
            assert_eq!(waiter.await.unwrap(), Some(entry()));
        }
        assert_eq!(flights.len(), 0);
    }

    #[tokio::test]
    async fn a_leader_dropped_unlanded_releases_its_waiters() {
        let flights = Arc::new(Flights::default());
        let leader = flights.join(Key(1));
        let Joined::Waiter(waiter) = flights.join(Key(1)) else {
            panic!("the second waits");
        };
        let waiting = tokio::spawn(waiter.wait(Duration::from_secs(5)));
        drop(leader);
        assert_eq!(waiting.await.unwrap(), None);
        // The next request leads a new flight.
        assert!(matches!(flights.join(Key(1)), Joined::Leader(_)));
    }

    #[tokio::test(start_paused = true)]
    async fn a_waiter_gives_up_after_its_wait() {
        let flights = Arc::new(Flights::default());
        let _leader = flights.join(Key(1));
        let Joined::Waiter(waiter) = flights.join(Key(1)) else {
            panic!("the second waits");
        };
        let started = tokio::time::Instant::now();
        assert_eq!(waiter.wait(Duration::from_secs(3)).await, None);
        assert_eq!(started.elapsed(), Duration::from_secs(3));
    }
}
