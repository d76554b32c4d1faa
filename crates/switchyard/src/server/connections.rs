//! Accepting client connections and serving each one: the header read and
//! idle timeouts, graceful closing at shutdown, and the accept loop's backoff.

use std::convert::Infallible;
use std::io::ErrorKind;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use axum::body::Body;
use axum::http::{Request, Response};
use bytes::Bytes;
use hyper::body::{Body as HttpBody, Frame, Incoming, SizeHint};
use hyper_util::rt::{TokioExecutor, TokioIo};
use hyper_util::server::conn::auto;
use tokio::net::{TcpListener, TcpStream};
use tokio::time::MissedTickBehavior;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::api::Gateway;

/// How many client connections may be open at once, and the count of those
/// refused past it (`switchyard_connections_refused_total`).
#[derive(Debug)]
pub(super) struct Capacity {
    pub(super) max_connections: u32,
    pub(super) refused: metrics::Counter,
}

/// How long a client connection may stay without progress (see [`drive`]).
#[derive(Debug, Clone, Copy)]
pub(super) struct ClientTimeouts {
    /// Until the first request head is complete.
    pub(super) header_read: Duration,
    /// Between requests.
    pub(super) idle: Duration,
}

/// Accepts connections and serves `gateway` on them (HTTP/1.1, and HTTP/2 with
/// prior knowledge), at most `capacity.max_connections` open at once — one
/// past it is closed as soon as it is accepted, and counted — until `stopping` is cancelled; then
/// closes the listener, lets every connection finish the requests it has and
/// returns when the last one has closed.
pub(super) async fn serve(
    listener: TcpListener,
    gateway: Gateway,
    capacity: Capacity,
    timeouts: ClientTimeouts,
    stopping: CancellationToken,
) {
    let builders = Arc::new(Builders {
        http1: auto::Builder::new(TokioExecutor::new()).http1_only(),
        http2: auto::Builder::new(TokioExecutor::new()).http2_only(),
    });
    let connections = TaskTracker::new();
    let drain = Arc::new(Drain::default());
    let mut accept_errors = Throttle::new(ACCEPT_ERROR_LOG_EVERY);
    let mut refusals = Throttle::new(ACCEPT_ERROR_LOG_EVERY);
    loop {
        let accepted = tokio::select! {
            () = stopping.cancelled() => break,
            accepted = listener.accept() => accepted,
        };
        let (tcp, peer) = match accepted {
            Ok(accepted) => accepted,
            // One client gave up before it was accepted: nothing to wait for.
            Err(e)
                if matches!(
                    e.kind(),
                    ErrorKind::ConnectionAborted
                        | ErrorKind::ConnectionReset
                        | ErrorKind::ConnectionRefused
                ) =>
            {
                continue;
            }
            Err(e) => {
                // Out of file descriptors, say: back off rather than spin, and
                // say so at most once a second.
                if let Some(suppressed) = accept_errors.hit(Instant::now()) {
                    tracing::warn!(error = %e, suppressed, "cannot accept a connection; retrying shortly");
                }
                tokio::time::sleep(ACCEPT_BACKOFF).await;
                continue;
            }
        };
        if drain.live.load(Ordering::Acquire) >= u64::from(capacity.max_connections) {
            // Closed at once: the client learns now, rather than after its
            // connect timeout, and a load balancer tries another replica.
            capacity.refused.increment(1);
            if let Some(suppressed) = refusals.hit(Instant::now()) {
                tracing::warn!(
                    max_connections = capacity.max_connections,
                    suppressed,
                    "client connection limit reached; closing new connections"
                );
            }
            continue;
        }
        // Small responses must not wait for Nagle's algorithm.
        let _ = tcp.set_nodelay(true);
        let gateway = gateway.for_connection(Some(peer));
        let counts = Counts {
            begun: gateway.requests(),
            answered: Arc::default(),
        };
        let service = Counted {
            gateway,
            answered: counts.answered.clone(),
        };
        let live = Live::new(drain.clone());
        let first_head_by = tokio::time::Instant::now() + timeouts.header_read;
        let builders = builders.clone();
        let stopping = stopping.clone();
        connections.spawn(async move {
            let protocol = tokio::select! {
                () = stopping.cancelled() => return,
                () = tokio::time::sleep_until(first_head_by) => return,
                protocol = sniff(&tcp) => protocol,
            };
            let builder = match protocol {
                Protocol::Http1 => &builders.http1,
                Protocol::Http2 => &builders.http2,
            };
            let connection = builder
                .serve_connection(TokioIo::new(tcp), service)
                .into_owned();
            drive(connection, counts, live, first_head_by, timeouts, stopping).await;
        });
    }
    drop(listener);
    connections.close();
    connections.wait().await;
}

/// The connection builders of the two protocols a client may speak.
struct Builders {
    http1: auto::Builder<TokioExecutor>,
    http2: auto::Builder<TokioExecutor>,
}

/// What a client connection speaks.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Protocol {
    Http1,
    /// HTTP/2 with prior knowledge.
    Http2,
}

/// The preface a client speaking HTTP/2 with prior knowledge opens with.
const HTTP2_PREFACE: &[u8; 24] = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n";

/// The pause before peeking again at a connection that has sent only part of
/// the HTTP/2 preface.
const SNIFF_RETRY: Duration = Duration::from_millis(1);

/// Tells HTTP/2 with prior knowledge from HTTP/1.1 by peeking at the first
/// bytes, which stay in the socket. hyper then reads a request head and body
/// into its 8 KiB buffer in one go. (hyper-util's detection reads the
/// preface's length first and hands those bytes back, so that hyper's first
/// read is short and its read buffer doubles to 16 KiB on every connection.)
async fn sniff(tcp: &TcpStream) -> Protocol {
    let mut head = [0u8; HTTP2_PREFACE.len()];
    loop {
        let Ok(n) = tcp.peek(&mut head).await else {
            // hyper will meet the error itself.
            return Protocol::Http1;
        };
        if n == 0 || head[..n] != HTTP2_PREFACE[..n] {
            return Protocol::Http1;
        }
        if n == HTTP2_PREFACE.len() {
            return Protocol::Http2;
        }
        tokio::time::sleep(SNIFF_RETRY).await;
    }
}

/// One client connection as the server runs it.
type ClientConnection = auto::Connection<'static, TokioIo<TcpStream>, Counted, TokioExecutor>;

// === impl Counted ===

/// The gateway's service for one connection, counting the answers it has
/// finished sending, to tell a connection busy with a request from an idle one.
struct Counted {
    gateway: Gateway,
    answered: Arc<AtomicU64>,
}

/// Counts one answer when dropped: with the answer's body once sent, or with
/// the request's future if it never got that far.
struct Answered(Arc<AtomicU64>);

impl Drop for Answered {
    fn drop(&mut self) {
        self.0.fetch_add(1, Ordering::Relaxed);
    }
}

impl hyper::service::Service<Request<Incoming>> for Counted {
    type Response = Response<CountedBody>;
    type Error = Infallible;
    type Future = CountedFuture<<Gateway as hyper::service::Service<Request<Incoming>>>::Future>;

    fn call(&self, request: Request<Incoming>) -> Self::Future {
        CountedFuture {
            inner: self.gateway.call(request),
            answered: Some(Answered(self.answered.clone())),
        }
    }
}

pin_project_lite::pin_project! {
    /// The future of [`Counted`]: the gateway's, its answer's body counted.
    struct CountedFuture<F> {
        #[pin]
        inner: F,
        answered: Option<Answered>,
    }
}

impl<F> Future for CountedFuture<F>
where
    F: Future<Output = Result<Response<Body>, Infallible>>,
{
    type Output = Result<Response<CountedBody>, Infallible>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let this = self.project();
        let Ok(response) = std::task::ready!(this.inner.poll(cx));
        let answered = this.answered.take();
        Poll::Ready(Ok(response.map(|body| CountedBody {
            body,
            _answered: answered,
        })))
    }
}

pin_project_lite::pin_project! {
    /// An answer's body, counted as sent when hyper drops it.
    struct CountedBody {
        #[pin]
        body: Body,
        _answered: Option<Answered>,
    }
}

impl HttpBody for CountedBody {
    type Data = Bytes;
    type Error = axum::Error;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, axum::Error>>> {
        self.project().body.poll_frame(cx)
    }

    fn is_end_stream(&self) -> bool {
        self.body.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.body.size_hint()
    }
}

// === impl Drain ===

/// The connections of the server, while it drains: those still open, and
/// those of them parked (idle when the drain began, kept open so that a load
/// balancer probing on them meets `/ready`'s 503, not a closed connection).
/// The drain is over when every open connection is parked.
#[derive(Debug, Default)]
struct Drain {
    live: AtomicU64,
    parked: AtomicU64,
}

/// One open connection, counted in [`Drain::live`] until dropped.
struct Live(Arc<Drain>);

impl Live {
    fn new(drain: Arc<Drain>) -> Self {
        drain.live.fetch_add(1, Ordering::AcqRel);
        Self(drain)
    }

    /// Whether every open connection is parked: no request left to finish.
    fn drain_over(&self) -> bool {
        self.0.live.load(Ordering::Acquire) == self.0.parked.load(Ordering::Acquire)
    }

    /// Counts the connection as parked until the guard is dropped.
    fn park(&self) -> Parked {
        self.0.parked.fetch_add(1, Ordering::AcqRel);
        Parked(self.0.clone())
    }
}

impl Drop for Live {
    fn drop(&mut self) {
        self.0.live.fetch_sub(1, Ordering::AcqRel);
    }
}

/// A parked connection, counted in [`Drain::parked`] until dropped.
struct Parked(Arc<Drain>);

impl Drop for Parked {
    fn drop(&mut self) {
        self.0.parked.fetch_sub(1, Ordering::AcqRel);
    }
}

/// A connection's requests begun and answers sent.
struct Counts {
    begun: Arc<AtomicU64>,
    answered: Arc<AtomicU64>,
}

impl Counts {
    /// No request in progress. (`begun` is counted on the connection's own
    /// task; a stale `answered`, from an HTTP/2 stream's task, only makes the
    /// connection look busy.)
    fn idle(&self) -> bool {
        self.answered.load(Ordering::Relaxed) >= self.begun.load(Ordering::Relaxed)
    }
}

/// While parked, how often a connection looks whether the drain is over.
const DRAIN_CHECK: Duration = Duration::from_millis(20);

/// How many times per `idle_timeout` a connection is checked for new requests.
const IDLE_CHECKS: u32 = 4;

/// Serves one connection until it closes. It is closed gracefully (the response
/// in flight, if any, finishes first) when the server drains, or when no
/// request has begun on it for `timeouts.idle` — an idle keep-alive
/// connection, or a client too slow to send its headers. A new connection
/// whose first request head is not complete by `first_head_by` (`timeouts.header_read` after it was accepted) is
/// closed at once.
///
/// A connection that has served requests and is idle when the drain begins
/// is parked rather than closed: it stays open while other connections finish
/// their requests, so that a load balancer probing `/ready` on it is answered
/// 503 (its next request is served, and the connection closed after it).
///
/// Idleness is told from the connection's request counter a few times per
/// period, not from a timer reset per request: that keeps the timer wheel off
/// the request path. (hyper's own header read timeout would run during the
/// idle wait between keep-alive requests too, and so close every keep-alive
/// connection after it, whatever the idle timeout says.)
async fn drive(
    connection: ClientConnection,
    counts: Counts,
    live: Live,
    first_head_by: tokio::time::Instant,
    timeouts: ClientTimeouts,
    stopping: CancellationToken,
) {
    tokio::pin!(connection);
    let first_head = tokio::time::sleep_until(first_head_by);
    tokio::pin!(first_head);
    let mut first_head_due = true;
    // (A timer period must not be zero, however small the configured timeout.)
    let period = (timeouts.idle / IDLE_CHECKS).max(Duration::from_millis(1));
    let mut checks = tokio::time::interval_at(tokio::time::Instant::now() + period, period);
    checks.set_missed_tick_behavior(MissedTickBehavior::Delay);
    let mut seen = counts.begun.load(Ordering::Relaxed);
    let mut quiet = 0;
    let mut closing = false;
    let mut draining = false;
    // While parked: the guard, and the requests begun when it was parked.
    let mut parked: Option<(Parked, u64)> = None;
    loop {
        tokio::select! {
            biased;
            result = connection.as_mut() => {
                if let Err(e) = result {
                    tracing::debug!(error = %e, "connection ended with an error");
                }
                return;
            }
            () = stopping.cancelled(), if !closing && !draining => {
                draining = true;
                let begun = counts.begun.load(Ordering::Relaxed);
                if begun > 0 && counts.idle() {
                    parked = Some((live.park(), begun));
                } else {
                    closing = true;
                    connection.as_mut().graceful_shutdown();
                }
            }
            () = tokio::time::sleep(DRAIN_CHECK), if parked.is_some() => {
                let asked = parked
                    .as_ref()
                    .is_some_and(|(_, begun)| *begun != counts.begun.load(Ordering::Relaxed));
                if asked || live.drain_over() {
                    parked = None;
                    closing = true;
                    connection.as_mut().graceful_shutdown();
                }
            }
            () = &mut first_head, if first_head_due => {
                first_head_due = false;
                if counts.begun.load(Ordering::Relaxed) == 0 {
                    // Still no request head: nothing to finish.
                    tracing::debug!("a client did not send its request head in time; closing");
                    return;
                }
            }
            _ = checks.tick(), if !closing => {
                let now = counts.begun.load(Ordering::Relaxed);
                quiet = if now == seen { quiet + 1 } else { 0 };
                seen = now;
                if quiet >= IDLE_CHECKS {
                    if seen == 0 {
                        // Not one request in all that time: nothing to finish.
                        // (A graceful shutdown would wait for the first one.)
                        return;
                    }
                    parked = None;
                    closing = true;
                    connection.as_mut().graceful_shutdown();
                }
            }
        }
    }
}

/// The pause after a failed `accept`.
const ACCEPT_BACKOFF: Duration = Duration::from_millis(100);

/// At most one warning per this long about failed `accept`s, and one about
/// connections refused.
const ACCEPT_ERROR_LOG_EVERY: Duration = Duration::from_secs(1);

/// Lets an event be logged at most once per period, counting the ones left
/// unlogged in between.
#[derive(Debug)]
pub(super) struct Throttle {
    every: Duration,
    last: Option<Instant>,
    suppressed: u64,
}

impl Throttle {
    fn new(every: Duration) -> Self {
        Self {
            every,
            last: None,
            suppressed: 0,
        }
    }

    /// One event at `now`: `Some(n)` when it should be logged, `n` being how
    /// many were not since the last one logged; `None` when it should not.
    fn hit(&mut self, now: Instant) -> Option<u64> {
        if self
            .last
            .is_some_and(|last| now.saturating_duration_since(last) < self.every)
        {
            self.suppressed += 1;
            return None;
        }
        self.last = Some(now);
        Some(std::mem::take(&mut self.suppressed))
    }
}

#[cfg(test)]
mod tests;
