//! The usage writer: one task per process, writing records in batches.
//!
//! On each tick (`usage.flush_interval`), or sooner when the queue holds a
//! batch and the store is taking records, it takes what the queue holds, writes
//! it in batches of `usage.batch_size` (one transaction each, rollups
//! included), then reads back the spill file if there is one, and once an hour
//! deletes what is past the retention. A batch the store refuses stays at the
//! front of the buffer for the next tick; the buffer holds `usage.buffer`
//! records at most, and the newest past that go to the spill file.

use std::collections::VecDeque;
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use metrics::{Counter, Gauge};
use switchyard_store::{Store, UsageRecord, UsageRow};
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

use super::convert::{Ids, Queued};
use super::queue::Queue;
use super::spill::Spill;
use super::{Ended, UsageLog};
use crate::config;
use crate::telemetry::metrics::Metrics;

/// How long one batch may take to write before it counts as failed.
const WRITE_TIMEOUT: Duration = Duration::from_secs(10);

/// How long shutdown lets the pushes waiting for room in before its last take.
const LAST_CALL: Duration = Duration::from_millis(20);

/// How long shutdown tries to write what is left before spilling it.
const LAST_FLUSH: Duration = Duration::from_secs(5);

/// How often records and rollups past their retention are deleted, and how
/// many rows one statement deletes at most.
const TRIM_EVERY: Duration = Duration::from_secs(3600);
const TRIM_ROWS: u32 = 10_000;

/// Spill-file batches read back per tick at most, so the queue is still
/// emptied often while a large file is written.
const REPLAY_BATCHES_PER_TICK: usize = 20;

/// The running writer; [`Writer::stopped`] waits for its last batch.
#[derive(Debug)]
pub struct Writer {
    task: JoinHandle<()>,
}

impl Writer {
    /// Waits until the writer has written (or spilled) everything, after its
    /// stop token was cancelled.
    pub async fn stopped(self) {
        let _ = self.task.await;
    }
}

/// The writer's counters.
#[derive(Debug, Clone)]
struct Counts {
    written: Counter,
    spilled: Counter,
    dropped: Counter,
    buffered: Gauge,
}

impl Counts {
    fn new(metrics: &Metrics) -> Self {
        metrics.describe(
            "switchyard_usage_records_written_total",
            None,
            "Usage records written to the store.",
        );
        metrics.describe(
            "switchyard_usage_records_spilled_total",
            None,
            "Usage records written to the spill file while the store could not take them.",
        );
        metrics.describe(
            "switchyard_usage_records_dropped_total",
            None,
            "Usage records lost: not even the spill file could take them.",
        );
        metrics.describe(
            "switchyard_usage_buffer_records",
            None,
            "Usage records waiting in memory for the store.",
        );
        Self {
            written: metrics.counter("switchyard_usage_records_written_total", &[]),
            spilled: metrics.counter("switchyard_usage_records_spilled_total", &[]),
            dropped: metrics.counter("switchyard_usage_records_dropped_total", &[]),
            buffered: metrics.gauge("switchyard_usage_buffer_records", &[]),
        }
    }
}

/// Starts the writer: the consumer that feeds it, and the task.
pub fn start(
    store: Arc<dyn Store>,
    config: &config::Usage,
    metrics: &Metrics,
    stop: CancellationToken,
) -> (UsageLog, Writer) {
    let queue = Arc::new(Queue::new(config.queue, config.batch_size));
    let counts = Counts::new(metrics);
    let log = UsageLog {
        queue: Arc::clone(&queue),
        dropped: counts.dropped.clone(),
    };
    let state = State {
        store,
        queue,
        taken: Vec::new(),
        pending: VecDeque::new(),
        ids: Ids::new(),
        spill: Spill::new(config.spill_file.clone()),
        spill_offset: 0,
        failing: false,
        counts,
        config: config.clone(),
        last_trim: None,
    };
    let task = tokio::spawn(run(state, stop));
    (log, Writer { task })
}

struct State {
    store: Arc<dyn Store>,
    queue: Arc<Queue>,
    /// The records of the last take (empty between takes: swapped with the queue's).
    taken: Vec<Ended>,
    pending: VecDeque<Queued>,
    ids: Ids,
    spill: Spill,
    /// Where the next read of the spill file starts.
    spill_offset: u64,
    /// The store refused the last write (logged once a spell).
    failing: bool,
    counts: Counts,
    config: config::Usage,
    last_trim: Option<Instant>,
}

async fn run(mut state: State, stop: CancellationToken) {
    let mut ticks = tokio::time::interval(state.config.flush_interval);
    ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    // The queue is read on each tick, or once it holds a batch: one request's
    // end in a batch's wakes this task. While the store refuses records, only
    // the tick retries it.
    loop {
        tokio::select! {
            _ = ticks.tick() => {}
            () = state.queue.batch_ready(), if !state.failing => {}
            () = stop.cancelled() => break,
        }
        // A stop ends a round at once: a write cut short is rolled back
        // and its batch is still at the front of the buffer.
        tokio::select! {
            () = state.round() => {}
            () = stop.cancelled() => break,
        }
    }
    // Pushes waiting for room get in before the last take.
    state.queue.last_call();
    tokio::time::sleep(LAST_CALL).await;
    state.queue.close(&mut state.taken);
    state.take_queued().await;
    let _ = tokio::time::timeout(LAST_FLUSH, state.flush()).await;
    if !state.pending.is_empty() {
        let left: Vec<Queued> = state.pending.drain(..).collect();
        tracing::warn!(
            records = left.len(),
            file = %state.spill.path().display(),
            "usage records could not be written before shutdown; spilled for the next start"
        );
        state.spill(left).await;
    }
    state.counts.buffered.set(0.0);
}

impl State {
    /// One tick's work: take the queue, write the buffer, read back the
    /// spill file, trim what is past its retention.
    async fn round(&mut self) {
        self.take_queued().await;
        self.flush().await;
        self.replay().await;
        self.trim().await;
    }

    /// Takes what the queue holds into the buffer; spills the newest past
    /// `usage.buffer`.
    async fn take_queued(&mut self) {
        self.queue.take(&mut self.taken);
        let ids = &mut self.ids;
        self.pending
            .extend(self.taken.drain(..).map(|ended| Queued::new(ended, ids)));
        if self.pending.len() > self.config.buffer {
            let over: Vec<Queued> = self.pending.drain(self.config.buffer..).collect();
            self.spill(over).await;
        }
        self.counts.buffered.set(self.pending.len() as f64);
    }

    /// Writes the buffer in batches until it is empty or the store refuses one.
    async fn flush(&mut self) {
        while !self.pending.is_empty() {
            let n = self.pending.len().min(self.config.batch_size);
            let rows: Vec<UsageRow<'_>> = self.pending.make_contiguous()[..n]
                .iter()
                .map(Queued::row)
                .collect();
            if !write(&*self.store, &mut self.failing, &self.counts, &rows).await {
                return;
            }
            self.pending.drain(..n);
            self.counts.buffered.set(self.pending.len() as f64);
        }
    }

    /// Writes the spill file back once the buffer is empty, a few batches a tick.
    async fn replay(&mut self) {
        for _ in 0..REPLAY_BATCHES_PER_TICK {
            if self.failing || !self.pending.is_empty() || !self.spill.pending(self.spill_offset) {
                return;
            }
            let spill = self.spill.clone();
            let (offset, max) = (self.spill_offset, self.config.batch_size);
            let back = match tokio::task::spawn_blocking(move || spill.read(offset, max)).await {
                Ok(Ok(back)) => back,
                Ok(Err(e)) => {
                    tracing::error!(error = %e, file = %self.spill.path().display(), "the usage spill file cannot be read");
                    return;
                }
                Err(_) => return,
            };
            if back.unreadable > 0 {
                self.counts.dropped.increment(back.unreadable);
                tracing::error!(
                    lines = back.unreadable,
                    "lines of the usage spill file are not records (cut short when the process died?)"
                );
            }
            let rows: Vec<UsageRow<'_>> = back.records.iter().map(UsageRecord::row).collect();
            if !rows.is_empty()
                && !write(&*self.store, &mut self.failing, &self.counts, &rows).await
            {
                return;
            }
            self.spill_offset = back.next;
            if back.at_end {
                if let Err(e) = self.spill.remove() {
                    tracing::error!(error = %e, "the usage spill file cannot be removed");
                    return;
                }
                self.spill_offset = 0;
                tracing::info!("the usage spill file is written to the store");
                return;
            }
        }
    }

    /// Appends `records` to the spill file (off the runtime's threads).
    async fn spill(&mut self, records: Vec<Queued>) {
        let n = records.len() as u64;
        let spill = self.spill.clone();
        let append = move || {
            let rows: Vec<UsageRow<'_>> = records.iter().map(Queued::row).collect();
            spill.append(&rows)
        };
        match tokio::task::spawn_blocking(append).await {
            Ok(Ok(())) => self.counts.spilled.increment(n),
            Ok(Err(e)) => {
                self.counts.dropped.increment(n);
                tracing::error!(error = %e, records = n, file = %self.spill.path().display(), "usage records lost: the spill file cannot be written");
            }
            Err(_) => self.counts.dropped.increment(n),
        }
    }

    /// Deletes records and rollups past their retention, once an hour.
    async fn trim(&mut self) {
        if self.failing || self.last_trim.is_some_and(|t| t.elapsed() < TRIM_EVERY) {
            return;
        }
        self.last_trim = Some(Instant::now());
        let now = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .unwrap_or_default();
        let before =
            |keep: Option<Duration>| keep.map_or(Duration::ZERO, |keep| now.saturating_sub(keep));
        let records = i64::try_from(before(self.config.retention).as_millis()).unwrap_or(0);
        let rollups = i64::try_from(before(self.config.rollup_retention).as_secs()).unwrap_or(0);
        loop {
            match self.store.trim_usage(records, rollups, TRIM_ROWS).await {
                Ok(n) if n >= u64::from(TRIM_ROWS) => tokio::task::yield_now().await,
                Ok(_) => return,
                Err(e) => {
                    tracing::warn!(error = %e, "old usage records could not be deleted");
                    return;
                }
            }
        }
    }
}

/// Writes one batch; answers whether the store took it. `failing` notes
/// whether the store refuses writes (so that a spell is logged once).
async fn write(
    store: &dyn Store,
    failing: &mut bool,
    counts: &Counts,
    batch: &[UsageRow<'_>],
) -> bool {
    match tokio::time::timeout(WRITE_TIMEOUT, store.insert_usage(batch)).await {
        Ok(Ok(_)) => {
            counts.written.increment(batch.len() as u64);
            if std::mem::replace(failing, false) {
                tracing::info!("usage records are written to the store again");
            }
            true
        }
        failed => {
            if !std::mem::replace(failing, true) {
                let error = match failed {
                    Ok(Err(e)) => e.to_string(),
                    _ => format!("no answer within {WRITE_TIMEOUT:?}"),
                };
                tracing::warn!(
                    error,
                    "usage records cannot be written to the store; they are kept and tried again"
                );
            }
            false
        }
    }
}
