//! Writing spend to the store: one task per process, in batches.
//!
//! A request's settled cost goes onto a bounded queue (never awaited by the
//! request: when the queue is full, a task of its own waits for room, so
//! nothing is lost), which the writer empties on each tick. The writer merges what arrives per key or team and
//! period, and every `store.flush_interval` writes it in one transaction —
//! never one statement per request. It then reads back each total, which
//! also brings in what other replicas spent. A store that fails keeps the
//! batch for the next round; shutdown writes what is left.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use switchyard_store::{SpendDelta, SpendScope, Store};
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

use super::budget::BudgetCell;
use crate::alerts::Alerts;

/// Money spent by a key or team, on its way to the store.
#[derive(Debug)]
pub struct Spent {
    /// A key's or a team's.
    pub scope: SpendScope,
    /// Its id.
    pub id: Arc<str>,
    /// Its budget, micro-USD.
    pub limit: i64,
    /// The start of the budget period it counts in.
    pub period_start: i64,
    /// How much, in micro-USD.
    pub micros: i64,
    /// The cell that counts it meanwhile.
    pub cell: Arc<BudgetCell>,
}

/// The sending end: cheap to clone, never blocks.
#[derive(Debug, Clone)]
pub struct SpendQueue {
    tx: mpsc::Sender<Spent>,
}

impl SpendQueue {
    /// Queues `spent` for the writer.
    pub fn push(&self, spent: Spent) {
        if let Err(mpsc::error::TrySendError::Full(spent)) = self.tx.try_send(spent) {
            let tx = self.tx.clone();
            tokio::spawn(async move {
                let _ = tx.send(spent).await;
            });
        }
    }
}

/// One row of a batch: its amount and the cells counting it.
struct Pending {
    micros: i64,
    limit: i64,
    cell: Arc<BudgetCell>,
}

type Row = (SpendScope, Arc<str>, i64);

/// Starts the writer for `store`: a queue of `capacity`, written every `every`.
pub fn start(
    store: Arc<dyn Store>,
    capacity: usize,
    every: Duration,
    alerts: Option<Arc<Alerts>>,
    stop: CancellationToken,
) -> (SpendQueue, tokio::task::JoinHandle<()>) {
    let (tx, rx) = mpsc::channel(capacity.max(1));
    let task = tokio::spawn(write(store, rx, every, alerts, stop));
    (SpendQueue { tx }, task)
}

/// How long shutdown waits for the last batch.
const LAST_FLUSH: Duration = Duration::from_secs(5);

async fn write(
    store: Arc<dyn Store>,
    mut rx: mpsc::Receiver<Spent>,
    every: Duration,
    alerts: Option<Arc<Alerts>>,
    stop: CancellationToken,
) {
    let mut batch: HashMap<Row, Pending> = HashMap::new();
    let mut ticks = tokio::time::interval(every);
    ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut failing = false;
    // The queue is read on each tick, never awaited: a request's end then
    // never has to wake this task.
    loop {
        tokio::select! {
            _ = ticks.tick() => {}
            () = stop.cancelled() => break,
        }
        while let Ok(spent) = rx.try_recv() {
            add(&mut batch, spent);
        }
        if !batch.is_empty() {
            failing = flush(store.as_ref(), &mut batch, failing, alerts.as_ref()).await;
        }
    }
    while let Ok(spent) = rx.try_recv() {
        add(&mut batch, spent);
    }
    if !batch.is_empty() {
        let flushed = flush(store.as_ref(), &mut batch, failing, alerts.as_ref());
        let _ = tokio::time::timeout(LAST_FLUSH, flushed).await;
        if !batch.is_empty() {
            tracing::error!(
                rows = batch.len(),
                "spend could not be written before shutdown"
            );
        }
    }
    if let Some(alerts) = &alerts {
        alerts.stop().await;
    }
}

fn add(batch: &mut HashMap<Row, Pending>, spent: Spent) {
    batch
        .entry((spent.scope, spent.id, spent.period_start))
        .and_modify(|p| p.micros += spent.micros)
        .or_insert(Pending {
            micros: spent.micros,
            limit: spent.limit,
            cell: spent.cell,
        });
}

/// Writes `batch`; on success empties it, brings each cell up to the store's
/// total, and has `alerts` look at each total. Answers whether the store is
/// failing (logged once a spell).
async fn flush(
    store: &dyn Store,
    batch: &mut HashMap<Row, Pending>,
    failing: bool,
    alerts: Option<&Arc<Alerts>>,
) -> bool {
    let deltas: Vec<SpendDelta> = batch
        .iter()
        .map(|((scope, id, period), pending)| SpendDelta {
            scope: *scope,
            scope_id: id.to_string(),
            period_start: *period,
            micros: pending.micros,
        })
        .collect();
    if let Err(e) = store.add_spend(&deltas).await {
        if !failing {
            tracing::warn!(error = %e, rows = deltas.len(), "spend could not be written to the store; it is kept and tried again");
        }
        return true;
    }
    if failing {
        tracing::info!("spend is written to the store again");
    }
    for ((scope, id, period), pending) in batch.drain() {
        let total = store.spend(scope, &id, period).await.ok();
        pending.cell.flushed(period, pending.micros, total);
        if let (Some(alerts), Some(total)) = (alerts, total) {
            alerts.spent(scope, &id, period, pending.limit, total).await;
        }
    }
    false
}
