//! One request, from its arrival to its one end.
//!
//! [`RequestCx`] is created once per request by the gateway's service and
//! travels through every stage of the pipeline (`api::pipeline`) and, for an
//! answer relayed as it arrives, into the relay. It holds what is known so
//! far — request id, principal, dialect, endpoint, public model, route,
//! timings, tokens — as a typed [`RequestRecord`]. However the request ends
//! (a JSON answer, a stream completed or cut, the client gone, an error
//! before any upstream call, a panic) the record is handed exactly once to
//! [`Finish`], whose consumers act on it: the access line today; the usage
//! log, cost, budget settlement, limiter reconciliation and cache fill are
//! further consumers there.

mod finish;
mod record;

use std::cell::Cell;
use std::panic::AssertUnwindSafe;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use axum::http::HeaderValue;
use axum::response::Response;
use futures_util::future::CatchUnwind;
use futures_util::{FutureExt, Stream};
use switchyard_providers::openai::Usage;

use bytes::Bytes;

use crate::admission::Slot;
use crate::admission::limit::Share;
use crate::cache::{Entry, Fill, Status};
use crate::error::{Dialect, ErrorKind, GatewayError};
use crate::limits::Reservation;
use crate::pricing::{ModelPrice, Tokens};
use crate::routing::load::InFlight;
use crate::telemetry::{Bodies, ModelMeter};
pub use finish::{Consumer, Finish};
pub use record::{Ending, FailedAttempt, Principal, RecordedError, RequestRecord, ServedBy};

/// The context of one request: its record so far, and where it goes at the end.
///
/// Dropping it before it was ended records the request as closed by the
/// client — or as panicked, when dropped while a panic unwinds or after
/// [`catch_panic`] caught one.
#[derive(Debug)]
pub struct RequestCx {
    /// Boxed: the context moves from stage to stage and into the relay, and
    /// a pointer moves for less than the record would.
    record: Box<RequestRecord>,
    /// The dialect of the client, which its errors are written in.
    dialect: Dialect,
    finish: Arc<Finish>,
    ended: bool,
    /// The serving deployment's in-flight count, released when the request ends.
    in_flight: Option<InFlight>,
    /// The request's place among those the gateway works on, given back when it ends.
    slot: Option<Slot>,
    /// Its place under its key's `max_in_flight`, given back when it ends.
    key_share: Option<Share>,
    /// Its place under its model's `max_in_flight`, given back when it ends.
    model_share: Option<Share>,
    /// Its rate limits and budgets, settled when it ends (boxed: most
    /// requests have none, and the context moves from stage to stage).
    reservation: Option<Box<Reservation>>,
    /// The price of the deployment that serves it, for its cost.
    price: Option<Arc<ModelPrice>>,
    /// The price of the model asked for, when a fallback model serves it:
    /// what the fallback saved is measured against it.
    asked_price: Option<Arc<ModelPrice>>,
    /// The response cache's fill of a miss, stored when the request ends
    /// whole (boxed: most requests have none).
    fill: Option<Box<Fill>>,
}

impl RequestCx {
    /// The context of a request that arrived at `arrived`.
    pub fn new(
        id: HeaderValue,
        endpoint: &'static str,
        dialect: Dialect,
        arrived: Instant,
        finish: Arc<Finish>,
    ) -> Self {
        Self {
            record: Box::new(RequestRecord::new(id, endpoint, arrived)),
            dialect,
            finish,
            ended: false,
            in_flight: None,
            slot: None,
            key_share: None,
            model_share: None,
            reservation: None,
            price: None,
            asked_price: None,
            fill: None,
        }
    }

    /// The record so far.
    pub fn record(&self) -> &RequestRecord {
        &self.record
    }

    /// `x-request-id`.
    pub fn id(&self) -> &HeaderValue {
        &self.record.id
    }

    /// The client's dialect.
    pub fn dialect(&self) -> Dialect {
        self.dialect
    }

    /// Who sent the request.
    pub fn principal(&self) -> &Principal {
        &self.record.principal
    }

    /// Notes who sent the request.
    pub fn authenticated(&mut self, principal: Principal) {
        self.record.principal = principal;
    }

    /// Notes the request's `x-switchyard-tags`.
    pub fn tagged(&mut self, tags: HeaderValue) {
        self.record.tags = Some(tags);
    }

    /// Notes the client's `traceparent`, the parent of the request's span.
    pub fn trace_parent(&mut self, traceparent: HeaderValue) {
        self.record.traceparent = Some(traceparent);
    }

    /// Notes when the attempt that serves the request was sent.
    pub fn serving_since(&mut self, sent: Instant) {
        self.record.serving_since = Some(sent);
    }

    /// The public model asked for, whether a stream is, and the estimated
    /// prompt tokens.
    pub fn requested(&mut self, model: &str, stream: bool, estimated_input_tokens: u64) {
        self.record.model = Some(model.to_owned());
        self.record.stream = stream;
        self.record.estimated_input_tokens = estimated_input_tokens;
    }

    /// Notes the model the request was routed to, by its metric handles.
    pub fn routed(&mut self, meter: &Arc<ModelMeter>) {
        self.record.meter = Some(meter.clone());
    }

    /// Adds `time` spent on providers (see [`RequestRecord::upstream`]).
    pub fn waited(&mut self, time: Duration) {
        self.record.upstream += time;
    }

    /// The deployment that serves the request (or is being tried).
    pub fn served_by(&mut self, provider: &Arc<str>, upstream_model: &str) {
        match &mut self.record.served_by {
            Some(served) if *served.provider == **provider => {
                if served.upstream_model != upstream_model {
                    upstream_model.clone_into(&mut served.upstream_model);
                }
            }
            slot => {
                *slot = Some(ServedBy {
                    provider: provider.clone(),
                    upstream_model: upstream_model.to_owned(),
                });
            }
        }
    }

    /// The attempts made: their number, those that failed, and the route header.
    pub fn attempted(
        &mut self,
        attempts: u32,
        failed: Vec<FailedAttempt>,
        route: Option<HeaderValue>,
    ) {
        self.record.attempts = attempts;
        self.record.failed_attempts = failed;
        self.record.route = route;
    }

    /// Holds the request's place among those in flight until it ends.
    pub fn admitted(&mut self, slot: Slot) {
        self.slot = Some(slot);
    }

    /// Holds the request's place under its key's in-flight limit until it ends.
    pub fn admitted_for_key(&mut self, share: Share) {
        self.key_share = Some(share);
    }

    /// Holds the request's place under its model's in-flight limit until it ends.
    pub fn admitted_for_model(&mut self, share: Share) {
        self.model_share = Some(share);
    }

    /// Keeps the serving deployment counted as busy until the request ends.
    pub fn hold(&mut self, in_flight: InFlight) {
        self.in_flight = Some(in_flight);
    }

    /// Holds the request's limits and budgets until it ends.
    pub fn reserved(&mut self, reservation: Reservation) {
        self.reservation = Some(Box::new(reservation));
    }

    /// The price of the deployment serving the request (none: free).
    pub fn priced(&mut self, price: Option<Arc<ModelPrice>>) {
        self.price = price;
    }

    /// Notes the price of the model asked for, when a fallback model serves
    /// the request: what it costs less is counted as saved.
    pub fn fallen_back_from(&mut self, asked: Option<Arc<ModelPrice>>) {
        self.asked_price = asked;
    }

    /// Notes what the response cache made of the request.
    pub fn cache(&mut self, status: Status) {
        self.record.cache = Some(status);
    }

    /// Carries the fill of a cache miss to the request's end.
    pub fn filling(&mut self, fill: Box<Fill>) {
        self.fill = Some(fill);
    }

    /// Keeps the client's body `request` for the bodies log, and the answer
    /// as it is sent, each to show at most `max` bytes of.
    pub fn keep_bodies(&mut self, request: &[u8], max: usize) {
        self.record.bodies = Some(Box::new(Bodies::new(request, max)));
    }

    /// Keeps `bytes`, sent to the client, for the cache fill and the bodies
    /// log (those the request has).
    pub fn capture(&mut self, bytes: &Bytes) {
        if let Some(fill) = &mut self.fill {
            fill.capture(bytes);
        }
        self.capture_for_log(bytes);
    }

    /// Keeps `bytes`, sent to the client, for the bodies log only (an
    /// answer that fills no cache: a cache hit, a stitched batch).
    pub fn capture_for_log(&mut self, bytes: &[u8]) {
        if let Some(bodies) = &mut self.record.bodies {
            bodies.answered(bytes);
        }
    }

    /// Notes a cache hit: the tokens its answer stands for, at no cost, and
    /// the cost it saved.
    pub fn cache_hit(&mut self, entry: &Entry, status: Status) {
        self.record.cache = Some(status);
        self.record.usage = entry.usage;
        self.record.saved_micros = entry.cost_micros;
        self.price = None;
    }

    /// Notes what the cached parts of an answer saved, in micro-USD.
    pub fn saved(&mut self, micros: i64) {
        self.record.saved_micros = micros;
    }

    /// The status sent to the client.
    pub fn set_status(&mut self, status: u16) {
        self.record.status = status;
    }

    /// Marks the first content sent to the client (once).
    pub fn first_token(&mut self) {
        if self.record.ttft.is_none() {
            self.record.ttft = Some(self.record.arrived.elapsed());
        }
    }

    /// Marks a chunk of a stream relayed to the client (the first one is
    /// the first token).
    pub fn chunk_sent(&mut self) {
        self.first_token();
        self.record.streamed_chunks += 1;
    }

    /// The token counts the provider reported.
    pub fn usage(&mut self, usage: Usage) {
        self.record.usage = Some(usage);
    }

    /// Ends a request whose answer reached the client whole.
    pub fn complete(mut self) {
        self.end(Ending::Completed, None);
    }

    /// Ends a request whose answer had begun (its status sent) when `kind`
    /// of error broke it off.
    pub fn break_off(mut self, kind: &'static str, detail: &str) {
        let error = RecordedError {
            kind,
            detail: detail.to_owned(),
        };
        self.end(Ending::Failed, Some(error));
    }

    /// Ends the request with `error`, answered in the client's dialect.
    pub fn refuse(mut self, error: &GatewayError) -> Response {
        let response = error.to_response_in(self.dialect);
        self.record.status = response.status().as_u16();
        let recorded = RecordedError {
            kind: error.kind(),
            detail: error.to_string(),
        };
        self.end(Ending::Failed, Some(recorded));
        response
    }

    /// Ends a request answered by `response` (off the proxy path): its status,
    /// and the error kind an error answer carries.
    pub fn answered(mut self, response: &Response) {
        self.record.status = response.status().as_u16();
        match response.extensions().get::<ErrorKind>() {
            Some(kind) => {
                let error = RecordedError {
                    kind: kind.0,
                    detail: String::new(),
                };
                self.end(Ending::Failed, Some(error));
            }
            None => self.end(Ending::Completed, None),
        }
    }

    fn end(&mut self, ending: Ending, error: Option<RecordedError>) {
        if std::mem::replace(&mut self.ended, true) {
            return;
        }
        self.record.ending = ending;
        self.record.error = error;
        self.record.latency = self.record.arrived.elapsed();
        let (tokens, cost) = self.spent();
        let used = tokens.input + tokens.output;
        self.record.cost_micros = cost;
        if let Some(asked) = &self.asked_price {
            self.record.saved_micros += (asked.cost(&tokens) - cost).max(0);
        }
        self.record.cost_estimated = self.record.usage.is_none() && used > 0;
        if let Some(reservation) = self.reservation.take() {
            (*reservation).settle(used, cost);
        }
        if let Some(fill) = self.fill.take() {
            fill.finish(&self.record, cost);
        }
        self.finish.finish(&self.record);
        self.in_flight = None;
        self.slot = None;
        self.key_share = None;
        self.model_share = None;
    }
}

impl RequestCx {
    /// The tokens the request used and what they cost (micro-USD): the
    /// provider's usage; for a stream cut before its usage came, the prompt's
    /// estimate and a token per relayed chunk; for a request that got no
    /// answer, nothing.
    fn spent(&self) -> (Tokens, i64) {
        let record = &self.record;
        let usage = record.usage.unwrap_or_default();
        let (input, output) = match &record.usage {
            Some(usage) => (usage.prompt_tokens, usage.completion_tokens),
            None if record.streamed_chunks > 0 => (
                record.estimated_input_tokens,
                u64::from(record.streamed_chunks),
            ),
            None if record.ending == Ending::Completed && (200..300).contains(&record.status) => {
                (record.estimated_input_tokens, 0)
            }
            None => (0, 0),
        };
        let tokens = Tokens {
            input,
            cached_input: usage.cached_tokens,
            cache_write: usage.cache_write_tokens,
            output,
            reasoning: usage.reasoning_tokens,
        };
        let cost = self.price.as_ref().map_or(0, |price| price.cost(&tokens));
        (tokens, cost)
    }
}

impl Drop for RequestCx {
    fn drop(&mut self) {
        if self.ended {
            return;
        }
        if std::thread::panicking() || UNWOUND.get() {
            self.record.status = 500;
            let error = RecordedError {
                kind: "internal_error",
                detail: "the request handler panicked".to_owned(),
            };
            self.end(Ending::Panicked, Some(error));
        } else {
            self.end(Ending::ClientClosed, None);
        }
    }
}

thread_local! {
    /// Set while the state of a future that panicked is dropped, after the
    /// panic was caught (the unwinding itself is over by then).
    static UNWOUND: Cell<bool> = const { Cell::new(false) };
}

/// Runs `future` to its end; when it panics, resolves to `None`, and what
/// the future holds is dropped as a panic's: a [`RequestCx`] inside records
/// [`Ending::Panicked`]. The caller awaits it in a statement of its own and
/// calls [`panic_settled`] right after, when the future (the temporary of
/// that statement) has been dropped:
///
/// ```
/// # use switchyard::request::{catch_panic, panic_settled};
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() {
/// let handled = catch_panic(async { 42 }).await;
/// panic_settled();
/// assert_eq!(handled, Some(42));
/// let panicked = catch_panic(async { panic!("a bug") }).await;
/// panic_settled();
/// assert_eq!(panicked, None::<()>);
/// # }
/// ```
///
/// The future is polled where it stands, never moved again: a request's
/// future is large, and each move of it is a copy.
pub fn catch_panic<F: Future>(future: F) -> CatchPanic<F> {
    CatchPanic {
        inner: AssertUnwindSafe(future).catch_unwind(),
    }
}

/// Ends what [`catch_panic`] began when its future panicked: drops after
/// this are ordinary again.
pub fn panic_settled() {
    UNWOUND.set(false);
}

/// What a stream guarded by [`catch_stream_panic`] yields once, in place of
/// the item whose poll panicked.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Panicked;

/// Guards each poll of `stream` as [`catch_panic`] guards a future's: when one
/// panics, the stream yields `Err(Panicked)` and ends, and what it holds is
/// dropped at once, as a panic's (a [`RequestCx`] inside records
/// [`Ending::Panicked`]). Boxed once, so that it can be dropped on its own.
pub fn catch_stream_panic<S: Stream>(stream: S) -> CatchStreamPanic<S> {
    CatchStreamPanic {
        inner: Some(Box::pin(stream)),
    }
}

/// The stream of [`catch_stream_panic`].
pub struct CatchStreamPanic<S> {
    /// `None` once it has ended.
    inner: Option<Pin<Box<S>>>,
}

impl<S: Stream> Stream for CatchStreamPanic<S> {
    type Item = Result<S::Item, Panicked>;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        let Some(inner) = self.inner.as_mut() else {
            return Poll::Ready(None);
        };
        match std::panic::catch_unwind(AssertUnwindSafe(|| inner.as_mut().poll_next(cx))) {
            Ok(Poll::Pending) => Poll::Pending,
            Ok(Poll::Ready(Some(item))) => Poll::Ready(Some(Ok(item))),
            Ok(Poll::Ready(None)) => {
                self.inner = None;
                Poll::Ready(None)
            }
            Err(_) => {
                tracing::error!("a request handler panicked");
                UNWOUND.set(true);
                self.inner = None;
                panic_settled();
                Poll::Ready(Some(Err(Panicked)))
            }
        }
    }
}

pin_project_lite::pin_project! {
    /// The future of [`catch_panic`].
    pub struct CatchPanic<F> {
        #[pin]
        inner: CatchUnwind<AssertUnwindSafe<F>>,
    }
}

impl<F: Future> Future for CatchPanic<F> {
    type Output = Option<F::Output>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        match self.project().inner.poll(cx) {
            Poll::Pending => Poll::Pending,
            Poll::Ready(Ok(output)) => Poll::Ready(Some(output)),
            Poll::Ready(Err(_)) => {
                tracing::error!("a request handler panicked");
                // Until `panic_settled`: the future's state is dropped in between.
                UNWOUND.set(true);
                Poll::Ready(None)
            }
        }
    }
}

#[cfg(test)]
mod tests;
