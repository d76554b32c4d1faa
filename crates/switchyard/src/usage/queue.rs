//! The queue between the ends of requests and the usage writer.
//!
//! A vector behind a lock: a request's end pushes its [`Ended`] (a short
//! critical section, no allocation once the vector has grown), and the writer
//! takes the whole vector on each tick by swapping it with its own empty one.
//! Only the push that makes a batch (`usage.batch_size` records) wakes the
//! writer before its tick: under load the queue never holds much more than a
//! batch, where a tick's worth of records (35,000 a second on one core) stayed
//! in memory, and kept the vectors' room, until the next tick. It holds
//! `usage.queue` records at most;
//! past that a push is refused with the record, and [`Queue::push_waiting`]
//! waits for the writer's next take. At shutdown the writer first lets every
//! push in ([`Queue::last_call`], waking those waiting), then closes it at its
//! last take: later pushes are refused (and counted as lost), so a record is
//! never left in a queue nobody reads.

use std::sync::{Mutex, MutexGuard, PoisonError};

use tokio::sync::Notify;

use super::Ended;

/// The records the writer has not taken yet.
#[derive(Debug)]
pub(super) struct Queue {
    inner: Mutex<Inner>,
    /// Woken by each take and by the close, for pushes waiting for room.
    room: Notify,
    capacity: usize,
    /// Told once the queue holds a batch: the writer need not wait for its tick.
    batch: Notify,
    /// How many records make a batch (at least one).
    batch_size: usize,
}

#[derive(Debug, Default)]
struct Inner {
    items: Vec<Ended>,
    /// The writer is about to take its last records: pushes no longer wait
    /// for room.
    last_call: bool,
    closed: bool,
}

/// A push the queue refused, and why.
#[derive(Debug)]
pub(super) enum Refused {
    /// It holds `usage.queue` records: the record is given back (boxed: a
    /// rare path, and the common one then moves no large result).
    Full(Box<Ended>),
    /// The writer has taken its last records.
    Closed,
}

impl Queue {
    /// An empty queue of `capacity` records at most (at least one), that
    /// tells the writer when it holds `batch_size`.
    pub(super) fn new(capacity: usize, batch_size: usize) -> Self {
        Self {
            inner: Mutex::default(),
            room: Notify::new(),
            capacity: capacity.max(1),
            batch: Notify::new(),
            batch_size: batch_size.max(1),
        }
    }

    fn lock(&self) -> MutexGuard<'_, Inner> {
        // Nothing panics while holding it; a poisoned lock still holds a
        // consistent vector.
        self.inner.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Queues `ended` unless the queue is full or closed.
    pub(super) fn push(&self, ended: Ended) -> Result<(), Refused> {
        let mut inner = self.lock();
        if inner.closed {
            return Err(Refused::Closed);
        }
        if inner.items.len() >= self.capacity && !inner.last_call {
            return Err(Refused::Full(Box::new(ended)));
        }
        inner.items.push(ended);
        let batch = inner.items.len() == self.batch_size;
        drop(inner);
        if batch {
            self.batch.notify_one();
        }
        Ok(())
    }

    /// Waits until the queue has held a batch since the last wait ended.
    pub(super) async fn batch_ready(&self) {
        self.batch.notified().await;
    }

    /// Queues `ended`, waiting for room; refused only once the queue is closed.
    pub(super) async fn push_waiting(&self, mut ended: Ended) -> Result<(), Refused> {
        loop {
            let room = self.room.notified();
            tokio::pin!(room);
            // Registered before the try, so a take between the two wakes it.
            room.as_mut().enable();
            match self.push(ended) {
                Err(Refused::Full(back)) => ended = *back,
                done => return done,
            }
            room.await;
        }
    }

    /// Moves every queued record to the end of `into` (kept empty by the caller
    /// between takes, so the two vectors swap and neither allocates again).
    pub(super) fn take(&self, into: &mut Vec<Ended>) {
        {
            let mut inner = self.lock();
            if into.is_empty() {
                std::mem::swap(&mut inner.items, into);
            } else {
                into.append(&mut inner.items);
            }
        }
        self.room.notify_waiters();
    }

    /// Lets every push in, room or not, and wakes those waiting for room, so
    /// that they are in the queue when [`Queue::close`] takes it last.
    pub(super) fn last_call(&self) {
        self.lock().last_call = true;
        self.room.notify_waiters();
    }

    /// Takes what is left and refuses every push from now on.
    pub(super) fn close(&self, into: &mut Vec<Ended>) {
        {
            let mut inner = self.lock();
            inner.closed = true;
            into.append(&mut inner.items);
        }
        self.room.notify_waiters();
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;
    use std::time::Instant;

    use axum::http::HeaderValue;
    use futures_util::FutureExt;

    use super::*;
    use crate::request::RequestRecord;

    fn ended(n: u32) -> Ended {
        let id =
            HeaderValue::from_str(&format!("req-{n}")).unwrap_or(HeaderValue::from_static("-"));
        Ended::of(&RequestRecord::new(id, "chat_completions", Instant::now()))
    }

    fn ids(taken: &[Ended]) -> Vec<&str> {
        taken
            .iter()
            .map(|e| e.request_id.to_str().unwrap_or(""))
            .collect()
    }

    #[tokio::test]
    async fn the_push_that_makes_a_batch_tells_the_writer() {
        let queue = Queue::new(10, 3);
        assert!(queue.push(ended(1)).is_ok());
        assert!(queue.push(ended(2)).is_ok());
        let told = || queue.batch_ready().now_or_never().is_some();
        assert!(!told());
        assert!(queue.push(ended(3)).is_ok());
        assert!(told());
        // Told once per batch: the next push does not tell again.
        assert!(queue.push(ended(4)).is_ok());
        assert!(!told());
        let mut taken = Vec::new();
        queue.take(&mut taken);
        for n in 5..8 {
            assert!(queue.push(ended(n)).is_ok());
        }
        assert!(told());
    }

    #[test]
    fn a_full_queue_gives_the_record_back_and_a_take_empties_it() {
        let queue = Queue::new(2, 10);
        assert!(queue.push(ended(1)).is_ok());
        assert!(queue.push(ended(2)).is_ok());
        assert!(matches!(queue.push(ended(3)), Err(Refused::Full(e)) if e.request_id == "req-3"));
        let mut taken = Vec::new();
        queue.take(&mut taken);
        assert_eq!(ids(&taken), ["req-1", "req-2"]);
        assert!(queue.push(ended(4)).is_ok());
        // Taken into a vector that still holds records: appended after them.
        queue.take(&mut taken);
        assert_eq!(ids(&taken), ["req-1", "req-2", "req-4"]);
    }

    #[tokio::test]
    async fn a_push_waits_for_room_gets_in_at_the_last_call_and_is_refused_once_closed() {
        let queue = Arc::new(Queue::new(1, 10));
        assert!(queue.push(ended(1)).is_ok());
        let waiting = tokio::spawn({
            let queue = Arc::clone(&queue);
            async move { queue.push_waiting(ended(2)).await.is_ok() }
        });
        tokio::task::yield_now().await;
        assert!(!waiting.is_finished());
        let mut taken = Vec::new();
        queue.take(&mut taken);
        assert!(waiting.await.unwrap_or(false));

        // Full again: a push waits; the last call lets it in.
        let admitted = tokio::spawn({
            let queue = Arc::clone(&queue);
            async move { queue.push_waiting(ended(3)).await.is_ok() }
        });
        tokio::task::yield_now().await;
        assert!(!admitted.is_finished());
        queue.last_call();
        assert!(admitted.await.unwrap_or(false));
        let mut last = Vec::new();
        queue.close(&mut last);
        assert_eq!(ids(&last), ["req-2", "req-3"]);
        assert!(matches!(queue.push(ended(4)), Err(Refused::Closed)));
        let refused = queue.push_waiting(ended(5)).await;
        assert!(matches!(refused, Err(Refused::Closed)));
    }
}
