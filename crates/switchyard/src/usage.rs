//! The usage log: one record per proxied request, written to the store in
//! batches, off the request path.
//!
//! [`UsageLog`] is a consumer of every ended request ([`crate::request::Finish`]):
//! it copies what the record needs (a few reference counts and two strings)
//! onto a bounded queue ([`queue`]) and returns; it never waits. The writer
//! ([`writer::start`]) empties the queue on each tick, turns each request into
//! a [`UsageRecord`] and writes them in batches, one transaction each, with
//! their rollups. Nothing is lost:
//!
//! - a full queue hands the record to a task of its own that waits for room;
//! - while the store cannot take records, they wait in a buffer of
//!   `usage.buffer` records, and past it go to the spill file
//!   (`usage.spill_file`, JSON lines), which is written to the store once it
//!   answers again (and at the next start, if the process stopped first);
//! - shutdown writes what is left, or spills it.
//!
//! `switchyard_usage_records_dropped_total` counts a record lost only when
//! even the spill file cannot be written.

mod convert;
mod queue;
pub mod report;
mod spill;
mod writer;

use std::sync::Arc;
use std::time::{Duration, SystemTime};

use axum::http::HeaderValue;
use switchyard_providers::openai::Usage;

use crate::cache::Status;
use crate::request::{Consumer, Principal, RequestRecord, ServedBy};
use crate::telemetry::ErrorType;
use metrics::Counter;
use queue::{Queue, Refused};
pub use switchyard_store::UsageRecord;
pub use writer::{Writer, start};

/// What the usage log keeps of one ended request, until the writer makes it a
/// [`UsageRecord`]: cheap to take (reference counts, two strings).
#[derive(Debug)]
pub struct Ended {
    at: SystemTime,
    request_id: HeaderValue,
    endpoint: &'static str,
    principal: Principal,
    model: Option<String>,
    served_by: Option<ServedBy>,
    status: u16,
    error: Option<&'static str>,
    usage: Option<Usage>,
    cost_micros: i64,
    cost_estimated: bool,
    saved_micros: i64,
    estimated_input_tokens: u64,
    streamed_chunks: u32,
    latency: Duration,
    ttft: Option<Duration>,
    attempts: u32,
    cache: Option<Status>,
    route: Option<HeaderValue>,
    stream: bool,
    tags: Option<HeaderValue>,
}

impl Ended {
    fn of(record: &RequestRecord) -> Self {
        Self {
            at: SystemTime::now()
                .checked_sub(record.latency)
                .unwrap_or(SystemTime::UNIX_EPOCH),
            request_id: record.id.clone(),
            endpoint: record.endpoint,
            principal: record.principal.clone(),
            model: record.model.clone(),
            served_by: record.served_by.clone(),
            status: record.status,
            error: ErrorType::of(record).map(ErrorType::as_str),
            usage: record.usage,
            cost_micros: record.cost_micros,
            cost_estimated: record.cost_estimated,
            saved_micros: record.saved_micros,
            estimated_input_tokens: record.estimated_input_tokens,
            streamed_chunks: record.streamed_chunks,
            latency: record.latency,
            ttft: record.ttft,
            attempts: record.attempts,
            cache: record.cache,
            route: record.route.clone(),
            stream: record.stream,
            tags: record.tags.clone(),
        }
    }
}

/// The consumer that queues each proxied request for the writer.
#[derive(Debug, Clone)]
pub struct UsageLog {
    queue: Arc<Queue>,
    dropped: Counter,
}

impl Consumer for UsageLog {
    fn consume(&self, record: &RequestRecord) {
        if !record.proxied() {
            return;
        }
        match self.queue.push(Ended::of(record)) {
            Ok(()) => {}
            Err(Refused::Full(ended)) => {
                let queue = Arc::clone(&self.queue);
                let dropped = self.dropped.clone();
                tokio::spawn(async move {
                    if queue.push_waiting(*ended).await.is_err() {
                        lost(&dropped);
                    }
                });
            }
            Err(Refused::Closed) => lost(&self.dropped),
        }
    }
}

/// Counts a record that could not be kept.
fn lost(dropped: &Counter) {
    dropped.increment(1);
    tracing::error!("a usage record was lost: the usage writer has stopped");
}
