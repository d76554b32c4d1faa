//! Reading an upstream body within the idle and total timeouts and the
//! shutdown cut, with one timer and one cancellation waiter for the whole body.

use std::pin::Pin;
use std::sync::Arc;
use std::task::Poll;
use std::time::Duration;

use bytes::{Bytes, BytesMut};
use futures_util::FutureExt;
use http_body_util::BodyExt;
use hyper::body::Body as HttpBody;
use tokio::time::{Instant, Sleep};
use tokio_util::sync::{CancellationToken, WaitForCancellationFutureOwned};

use super::RelayLimits;
use crate::error::GatewayError;
use crate::upstream::{ProviderClient, TimeoutPhase, UpstreamError, error_chain};

/// The most bytes gathered into one write to the client.
const MAX_BATCH: usize = 64 << 10;

/// Chunks that arrived together, joined without a copy when there is only one.
#[derive(Default)]
pub(super) struct Batch {
    first: Option<Bytes>,
    joined: Option<BytesMut>,
}

impl Batch {
    /// Adds a chunk; a second one and those after it are copied into one buffer.
    pub(super) fn add(&mut self, chunk: Bytes) {
        match (&mut self.joined, self.first.take()) {
            (Some(joined), _) => joined.extend_from_slice(&chunk),
            (None, None) => self.first = Some(chunk),
            (None, Some(first)) => {
                let mut joined = BytesMut::with_capacity(first.len() + chunk.len());
                joined.extend_from_slice(&first);
                joined.extend_from_slice(&chunk);
                self.joined = Some(joined);
            }
        }
    }

    /// The chunks as one, `None` when there were none.
    pub(super) fn into_bytes(self) -> Option<Bytes> {
        self.joined.map(BytesMut::freeze).or(self.first)
    }
}

/// Why the next chunk did not come.
pub(super) enum ReadError {
    /// A timeout ran out, or the body broke.
    Upstream(UpstreamError),
    /// The shutdown grace period ran out.
    Cut,
}

impl ReadError {
    /// The error as the client is told it.
    pub(super) fn into_gateway(self) -> GatewayError {
        match self {
            Self::Upstream(e) => GatewayError::Upstream(e),
            Self::Cut => GatewayError::ShuttingDown,
        }
    }
}

/// Reads an upstream body within the idle and total timeouts and the shutdown
/// cut, with one timer and one cancellation waiter for the whole body.
pub(super) struct Reader<B> {
    body: B,
    provider: Arc<ProviderClient>,
    idle: Duration,
    deadline: Instant,
    cut: Arc<CancellationToken>,
    /// Built at the first read that has to wait: a body that is always there
    /// when asked for (a JSON answer, a fast stream) never needs a timer.
    waiters: Option<Waiters>,
    /// Reads that found data waiting, to look at the clock only now and then.
    ready_reads: u32,
    /// The end of the body, when it was found while collecting a batch.
    ended: Option<Result<(), ReadError>>,
    /// Whether a read may wait scheduler turns for more of a batch: only
    /// where a connection task of its own hands the body over (HTTP/2). An
    /// HTTP/1.1 body is decoded by the read itself, so one that finds nothing
    /// has nothing more to wait for.
    turns_help: bool,
}

/// What a read that waits for data races against.
struct Waiters {
    /// Reset to the idle limit before each wait.
    idle: Pin<Box<Sleep>>,
    /// Set once, to the total deadline.
    total: Pin<Box<Sleep>>,
    cut: Pin<Box<WaitForCancellationFutureOwned>>,
}

/// A read that found data waiting looks at the clock for the total deadline
/// once in this many (and at the first).
const CLOCK_EVERY: u32 = 32;

impl<B> Reader<B>
where
    B: HttpBody<Data = Bytes> + Unpin,
    B::Error: std::error::Error + 'static,
{
    /// A reader of `upstream`'s body, within `limits`.
    pub(super) fn new(
        upstream: axum::http::Response<B>,
        provider: Arc<ProviderClient>,
        limits: &RelayLimits,
    ) -> Self {
        Self {
            body: upstream.into_body(),
            idle: limits.idle,
            deadline: limits.deadline,
            cut: limits.cut.clone(),
            turns_help: !provider.reads_in_task(),
            provider,
            waiters: None,
            ready_reads: 0,
            ended: None,
        }
    }

    /// Whether the total deadline has passed: the registered timer says so once
    /// there is one, the clock (now and then) before.
    fn past_deadline(&mut self) -> bool {
        if let Some(waiters) = &self.waiters {
            return waiters.total.is_elapsed();
        }
        self.ready_reads = self.ready_reads.wrapping_add(1);
        self.ready_reads % CLOCK_EVERY == 1 && Instant::now() >= self.deadline
    }

    /// Waits for body bytes, then hands `take` every chunk that has arrived, so
    /// that what came together leaves together. `Ok(false)` once the body is over.
    ///
    /// It gives the HTTP client up to `turns` scheduler turns to hand over what it
    /// has already received (with none, it takes only what is ready now); an
    /// HTTP/1.1 body, read in this task, needs none.
    pub(super) async fn read(
        &mut self,
        turns: usize,
        take: &mut (dyn FnMut(Bytes) + Send),
    ) -> Result<bool, ReadError> {
        if let Some(end) = self.ended.take() {
            return end.map(|()| false);
        }
        if self.cut.is_cancelled() {
            return Err(ReadError::Cut);
        }
        if self.past_deadline() {
            return Err(self.timed_out(self.deadline, TimeoutPhase::Total));
        }
        // Data already here needs no timer (no clock read, no timer-wheel update).
        match next_data(&mut self.body).now_or_never() {
            Some(Ok(first)) => self.batch(first, turns, take).await,
            Some(Err(e)) => Err(self.broken(&e)),
            None => {
                let wait = Instant::now() + self.idle;
                let waiters = self.waiters.get_or_insert_with(|| Waiters {
                    idle: Box::pin(tokio::time::sleep_until(wait)),
                    total: Box::pin(tokio::time::sleep_until(self.deadline)),
                    cut: Box::pin(CancellationToken::clone(&self.cut).cancelled_owned()),
                });
                waiters.idle.as_mut().reset(wait);
                let phase = tokio::select! {
                    biased;
                    () = waiters.cut.as_mut() => return Err(ReadError::Cut),
                    () = waiters.total.as_mut() => TimeoutPhase::Total,
                    () = waiters.idle.as_mut() => TimeoutPhase::Idle,
                    chunk = next_data(&mut self.body) => match chunk {
                        Ok(chunk) => return self.batch(chunk, turns, take).await,
                        Err(e) => return Err(self.broken(&e)),
                    },
                };
                let at = if phase == TimeoutPhase::Total {
                    self.deadline
                } else {
                    wait
                };
                Err(self.timed_out(at, phase))
            }
        }
    }

    /// Takes `first` and whatever follows it at once (see [`Reader::read`]).
    async fn batch(
        &mut self,
        first: Option<Bytes>,
        turns: usize,
        take: &mut (dyn FnMut(Bytes) + Send),
    ) -> Result<bool, ReadError> {
        let Some(first) = first else {
            return Ok(false);
        };
        let mut batched = first.len();
        take(first);
        // Over HTTP/2 the client's connection task hands over one frame at a time
        // through a task hop: give it a few turns to decode what is already
        // buffered, and batch it, so an answer that arrived in one read leaves in
        // one write instead of one per event. Over HTTP/1.1 the reads above
        // decode it themselves.
        let turns = if self.turns_help { turns } else { 0 };
        let mut yielded = 0;
        while batched < MAX_BATCH {
            match next_data(&mut self.body).now_or_never() {
                None if yielded < turns => {
                    yielded += 1;
                    run_others_first().await;
                }
                None => return Ok(true),
                Some(Ok(Some(chunk))) => {
                    yielded = 0;
                    batched += chunk.len();
                    take(chunk);
                }
                Some(Ok(None)) => {
                    self.ended = Some(Ok(()));
                    return Ok(true);
                }
                Some(Err(e)) => {
                    self.ended = Some(Err(self.broken(&e)));
                    return Ok(true);
                }
            }
        }
        Ok(true)
    }

    fn timed_out(&self, at: Instant, phase: TimeoutPhase) -> ReadError {
        ReadError::Upstream(self.provider.timeout_at(at, self.deadline, phase))
    }

    fn broken(&self, e: &B::Error) -> ReadError {
        ReadError::Upstream(UpstreamError::Broken {
            provider: self.provider.name.to_string(),
            detail: self.provider.scrub(&error_chain(e)),
        })
    }
}

/// The next data chunk of an upstream body (trailers are skipped); `None` at its end.
pub(super) async fn next_data<B>(body: &mut B) -> Result<Option<Bytes>, B::Error>
where
    B: HttpBody<Data = Bytes> + Unpin,
{
    loop {
        match body.frame().await {
            None => return Ok(None),
            Some(Err(e)) => return Err(e),
            Some(Ok(frame)) => {
                if let Ok(data) = frame.into_data() {
                    return Ok(Some(data));
                }
            }
        }
    }
}

/// Lets the tasks already queued on this worker (the HTTP client's connection
/// task, decoding what it has read) run before this one continues; polled by
/// the server as part of a response body, it also makes the server write what
/// it holds before it asks for more (the first token of a stream). Unlike
/// `tokio::task::yield_now`, it does not make the worker poll the I/O driver
/// first: that costs an `epoll_wait` per turn, and the data is already read.
pub(super) async fn run_others_first() {
    let mut queued = false;
    std::future::poll_fn(|cx| {
        if std::mem::replace(&mut queued, true) {
            Poll::Ready(())
        } else {
            // A task that wakes itself while running goes to the back of the queue.
            cx.waker().wake_by_ref();
            Poll::Pending
        }
    })
    .await;
}
