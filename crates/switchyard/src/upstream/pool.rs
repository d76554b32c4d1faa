//! A provider's HTTP/1.1 connections: kept between requests, and driven by the
//! task that uses one rather than by a task of their own.
//!
//! hyper-util's pooled client spawns a task per connection, and every frame of
//! an answer (each event of a stream) crosses from that task to the request's
//! through a channel: a wake-up and two task switches per event. Here the
//! request's own task polls the connection while it waits for the answer's head
//! and while it reads the body ([`PooledBody`]), so a frame the connection
//! decodes is taken in the same poll. A connection whose answer was read to its
//! end goes back to the pool; one dropped before is closed, as hyper-util does.
//! HTTP/2 providers keep hyper-util's client, whose one connection multiplexes
//! the requests.

use std::collections::VecDeque;
use std::fmt;
use std::future::Future;
use std::pin::{Pin, pin};
use std::sync::{Arc, Mutex, PoisonError, Weak};
use std::task::{Context, Poll, Waker};
use std::time::{Duration, Instant};

use axum::http::uri::{Authority, Scheme};
use axum::http::{Request, Response, Uri};
use bytes::Bytes;
use http_body_util::Full;
use hyper::body::{Body, Frame, Incoming, SizeHint};
use hyper::client::conn::http1;
use hyper_rustls::{HttpsConnector, MaybeHttpsStream};
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioIo;
use tokio::net::TcpStream;
use tower::Service;

use super::transport::SendError;
use crate::config;

/// What a connection reads and writes: TCP, with TLS for `https`.
type Io = MaybeHttpsStream<TokioIo<TcpStream>>;

/// One connection: the handle requests go through, and the connection itself,
/// which reads and writes when it is polled.
struct Conn {
    sender: http1::SendRequest<Full<Bytes>>,
    driver: http1::Connection<Io, Full<Bytes>>,
    /// The connection future has completed (closed, failed, or told to
    /// close): it must not be polled again, nor be reused.
    over: bool,
}

impl Conn {
    /// Lets the connection read and write what it can, waking `cx` when it
    /// can do more.
    fn drive(&mut self, cx: &mut Context<'_>) {
        if !self.over {
            self.over = Pin::new(&mut self.driver).poll(cx).is_ready();
        }
    }

    /// Whether a request can be sent on it now: it takes in what the peer
    /// sent while it was idle (a close, say) and then asks.
    fn usable(&mut self) -> bool {
        self.drive(&mut Context::from_waker(Waker::noop()));
        !self.over && self.sender.is_ready()
    }
}

/// A connection waiting for its next request.
struct Idle {
    conn: Box<Conn>,
    since: Instant,
}

/// The idle connections, shared with the bodies that will give theirs back.
struct Shared {
    /// The most recently used last: it is taken first, its socket warmest.
    idle: Mutex<VecDeque<Idle>>,
    limits: config::Pool,
}

impl Shared {
    fn idle(&self) -> std::sync::MutexGuard<'_, VecDeque<Idle>> {
        // A panic while it was held leaves a plain list of connections.
        self.idle.lock().unwrap_or_else(PoisonError::into_inner)
    }

    fn expired(&self, idle: &Idle, now: Instant) -> bool {
        now.saturating_duration_since(idle.since) >= self.limits.idle_timeout
    }

    /// A connection to send a request on, the most recently used that is
    /// still open; those expired or closed are dropped on the way.
    fn checkout(&self) -> Option<Box<Conn>> {
        let now = Instant::now();
        loop {
            let idle = self.idle().pop_back()?;
            if self.expired(&idle, now) {
                // Every one before it has waited longer.
                self.drop_expired(now);
                return None;
            }
            let mut conn = idle.conn;
            if conn.usable() {
                return Some(conn);
            }
        }
    }

    /// Drops the connections idle past the limit, the oldest first.
    fn drop_expired(&self, now: Instant) {
        let mut stale = Vec::new();
        {
            let mut idle = self.idle();
            while idle.front().is_some_and(|oldest| self.expired(oldest, now)) {
                stale.extend(idle.pop_front());
            }
        }
        // Closed outside the lock.
        drop(stale);
    }

    /// Keeps `conn` for the next request, within the pool's limits.
    fn give_back(&self, conn: Box<Conn>) {
        if conn.over || self.limits.max_idle == 0 {
            return;
        }
        let since = Instant::now();
        let evicted = {
            let mut idle = self.idle();
            let evicted = if idle.len() >= self.limits.max_idle {
                idle.pop_front()
            } else {
                None
            };
            idle.push_back(Idle { conn, since });
            evicted
        };
        // Closed outside the lock.
        drop(evicted);
    }

    /// Drops the connections idle too long or closed by the peer.
    fn trim(&self, now: Instant) {
        let stale: Vec<Idle> = {
            let mut idle = self.idle();
            let mut stale = Vec::new();
            let mut kept = VecDeque::with_capacity(idle.len());
            for mut entry in idle.drain(..) {
                if self.expired(&entry, now) || !entry.conn.usable() {
                    stale.push(entry);
                } else {
                    kept.push_back(entry);
                }
            }
            *idle = kept;
            stale
        };
        drop(stale);
    }
}

/// A provider's HTTP/1.1 connections to its one origin (the scheme and host of
/// its API root, where every request and probe goes).
pub struct Pool {
    connector: HttpsConnector<HttpConnector>,
    scheme: Scheme,
    authority: Authority,
    shared: Arc<Shared>,
}

impl fmt::Debug for Pool {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Pool")
            .field(
                "origin",
                &format_args!("{}://{}", self.scheme, self.authority),
            )
            .field("idle", &self.shared.idle().len())
            .finish_non_exhaustive()
    }
}

impl Pool {
    /// A pool for the origin of `root`, connecting through `connector`. Within
    /// a runtime, a task drops the connections idle past the limit, or closed
    /// by the peer, and ends with the pool.
    pub fn new(connector: HttpsConnector<HttpConnector>, root: &Uri, limits: config::Pool) -> Self {
        let shared = Arc::new(Shared {
            idle: Mutex::new(VecDeque::new()),
            limits,
        });
        if tokio::runtime::Handle::try_current().is_ok() && limits.max_idle > 0 {
            tokio::spawn(trim_every(
                Arc::downgrade(&shared),
                limits.idle_timeout.max(Duration::from_secs(1)),
            ));
        }
        Self {
            connector,
            scheme: root.scheme().cloned().unwrap_or(Scheme::HTTP),
            authority: root
                .authority()
                .cloned()
                .unwrap_or_else(|| Authority::from_static("localhost")),
            shared,
        }
    }

    /// Sends `request` (its URI in origin form, `/path?query`) to `uri`, on an
    /// idle connection when one is open, and answers its head; the body is
    /// read through the same connection. A request that an idle connection
    /// closed before it was sent goes again, once, on a new connection.
    pub async fn send(
        &self,
        uri: &Uri,
        mut request: Request<Full<Bytes>>,
    ) -> Result<Response<PooledBody>, SendError> {
        let pooled = uri.scheme() == Some(&self.scheme) && uri.authority() == Some(&self.authority);
        let mut idle = if pooled { self.shared.checkout() } else { None };
        loop {
            let reused = idle.is_some();
            let mut conn = match idle.take() {
                Some(conn) => conn,
                // Boxed: connecting (TCP, TLS) is a large future, and it
                // would otherwise make every request's future as large.
                None => Box::pin(self.connect(uri)).await?,
            };
            match head(&mut conn, request).await {
                Ok(response) => {
                    let pool = if pooled {
                        Arc::downgrade(&self.shared)
                    } else {
                        Weak::new()
                    };
                    return Ok(response.map(|body| PooledBody {
                        body,
                        conn: Some(conn),
                        pool,
                    }));
                }
                Err(mut e) => match e.take_message() {
                    Some(unsent) if reused => request = unsent,
                    _ => return Err(SendError::Http(e.into_error())),
                },
            }
        }
    }

    /// A new connection to `uri`'s host.
    async fn connect(&self, uri: &Uri) -> Result<Box<Conn>, SendError> {
        let io = self
            .connector
            .clone()
            .call(uri.clone())
            .await
            .map_err(SendError::Connect)?;
        let (sender, driver) = http1::handshake(io).await?;
        // Boxed once, for its life: it is large (the connection's buffers
        // and state), and moves with every answer and every return to the pool.
        Ok(Box::new(Conn {
            sender,
            driver,
            over: false,
        }))
    }
}

/// Sends `request` on `conn` and waits for the answer's head, driving the
/// connection meanwhile.
async fn head(
    conn: &mut Conn,
    request: Request<Full<Bytes>>,
) -> Result<Response<Incoming>, hyper::client::conn::TrySendError<Request<Full<Bytes>>>> {
    let mut answer = pin!(conn.sender.try_send_request(request));
    std::future::poll_fn(|cx| {
        conn.drive(cx);
        answer.as_mut().poll(cx)
    })
    .await
}

/// Drops stale idle connections every `period`, until the pool is gone.
async fn trim_every(shared: Weak<Shared>, period: Duration) {
    let mut tick = tokio::time::interval(period);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    tick.tick().await;
    loop {
        tick.tick().await;
        let Some(shared) = shared.upgrade() else {
            return;
        };
        shared.trim(Instant::now());
    }
}

/// An answer's body, read through the connection it came on: each poll that
/// finds no frame ready lets the connection read and decode the next. Read to
/// its end, it gives the connection back to its pool; dropped before, it
/// closes it.
pub struct PooledBody {
    body: Incoming,
    conn: Option<Box<Conn>>,
    pool: Weak<Shared>,
}

impl fmt::Debug for PooledBody {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("PooledBody")
            .field("body", &self.body)
            .finish_non_exhaustive()
    }
}

impl PooledBody {
    fn give_back(&mut self) {
        if let Some(conn) = self.conn.take()
            && let Some(pool) = self.pool.upgrade()
        {
            pool.give_back(conn);
        }
    }
}

impl Body for PooledBody {
    type Data = Bytes;
    type Error = hyper::Error;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, hyper::Error>>> {
        let this = self.get_mut();
        let frame = match Pin::new(&mut this.body).poll_frame(cx) {
            Poll::Ready(frame) => frame,
            Poll::Pending => {
                let Some(conn) = &mut this.conn else {
                    return Poll::Pending;
                };
                conn.drive(cx);
                match Pin::new(&mut this.body).poll_frame(cx) {
                    Poll::Ready(frame) => frame,
                    Poll::Pending => return Poll::Pending,
                }
            }
        };
        match &frame {
            None => this.give_back(),
            Some(Ok(_)) if this.body.is_end_stream() => this.give_back(),
            Some(Err(_)) => this.conn = None,
            Some(Ok(_)) => {}
        }
        Poll::Ready(frame)
    }

    fn is_end_stream(&self) -> bool {
        self.body.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.body.size_hint()
    }
}

impl Drop for PooledBody {
    fn drop(&mut self) {
        // A body read to its last byte by a reader that did not ask for its end.
        if self.body.is_end_stream() {
            self.give_back();
        }
    }
}

#[cfg(test)]
mod tests;
