//! Admission control: how many proxied requests the gateway works on at
//! once, and a bounded, time-limited wait for the others. Past that a
//! request is shed at once — 503 with `retry-after`, in the client's dialect
//! — so that the requests accepted keep their latency and the process its
//! memory and descriptors (Envoy's `max_requests` and pending-request limits).
//!
//! On the request path, a free slot costs two atomic read-modify-writes
//! (taking it and giving it back) and an `Arc` clone — no lock: the queue's `Notify` is
//! touched only while requests wait. The gauges are set when `/metrics` is read.
//!
//! Narrower limits, without a queue, are in [`limit`]: per public model and
//! per client key (counted here, in [`Admission::key_limit`]), while a
//! deployment's is its load's in-flight count
//! ([`Load::try_begin`](crate::routing::load::Load::try_begin)).

pub mod limit;

use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use tokio::sync::Notify;

use crate::config;
use crate::error::GatewayError;
use crate::telemetry::metrics::Metrics;
use limit::{Counts, Limit, LimitError, take_below};

/// The gate every proxied request passes. Process-lifetime.
#[derive(Debug)]
pub struct Admission {
    gate: Arc<Gate>,
    max_queue: u32,
    queue_timeout: Duration,
    /// `switchyard_requests_shed_total{reason="queue_full"}`.
    shed_full: metrics::Counter,
    /// `switchyard_requests_shed_total{reason="queue_timeout"}`.
    shed_timeout: metrics::Counter,
    /// `switchyard_requests_shed_total{reason}` for `model_limit`,
    /// `deployment_limit` and `key_limit`, in that order.
    shed_limited: [metrics::Counter; 3],
    /// The client keys' in-flight counts, by key name (taken only while
    /// the keys are built from a config, never on the request path).
    keys: Mutex<Counts>,
    /// `switchyard_in_flight_requests`.
    in_flight: metrics::Gauge,
    /// `switchyard_queued_requests`.
    queued: metrics::Gauge,
}

/// The counts a slot is taken from and given back to.
#[derive(Debug)]
struct Gate {
    max_in_flight: u32,
    in_flight: AtomicU32,
    /// Requests waiting for a slot now.
    waiting: AtomicU32,
    /// Wakes a waiting request when a slot comes free.
    freed: Notify,
}

impl Gate {
    /// Takes a slot if one is free (never counting past the limit, even for a
    /// moment: a request that finds none takes nothing).
    fn try_take(self: &Arc<Self>) -> Option<Slot> {
        take_below(&self.in_flight, self.max_in_flight).then(|| Slot { gate: self.clone() })
    }

    /// Gives a slot back, and wakes a waiting request if there is one.
    fn give_back(&self) {
        self.in_flight.fetch_sub(1, Ordering::AcqRel);
        if self.waiting.load(Ordering::Acquire) > 0 {
            self.freed.notify_one();
        }
    }
}

/// A request's place among those in flight, given back when dropped.
#[derive(Debug)]
pub struct Slot {
    gate: Arc<Gate>,
}

impl Drop for Slot {
    fn drop(&mut self) {
        self.gate.give_back();
    }
}

/// Counts a request as waiting while it lives.
struct Waiting<'a>(&'a AtomicU32);

impl Drop for Waiting<'_> {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::AcqRel);
    }
}

impl Admission {
    /// The gate of `admission:`, its metrics registered in `metrics`;
    /// `sized_max_in_flight` is the limit when `config` sets none (see
    /// [`crate::server`]'s sizing from the descriptor limit).
    pub fn new(config: &config::Admission, sized_max_in_flight: u32, metrics: &Metrics) -> Self {
        metrics.describe(
            "switchyard_requests_shed_total",
            None,
            "Requests refused at once because an in-flight limit was reached (503; 429 for a key's), by reason.",
        );
        metrics.describe(
            "switchyard_in_flight_requests",
            None,
            "Proxied requests being served.",
        );
        metrics.describe(
            "switchyard_queued_requests",
            None,
            "Proxied requests waiting for room.",
        );
        let shed =
            |reason| metrics.counter("switchyard_requests_shed_total", &[("reason", reason)]);
        Self {
            gate: Arc::new(Gate {
                max_in_flight: config.max_in_flight.unwrap_or(sized_max_in_flight),
                in_flight: AtomicU32::new(0),
                waiting: AtomicU32::new(0),
                freed: Notify::new(),
            }),
            max_queue: config.max_queue,
            queue_timeout: config.queue_timeout,
            shed_full: shed("queue_full"),
            shed_timeout: shed("queue_timeout"),
            shed_limited: ["model_limit", "deployment_limit", "key_limit"].map(shed),
            keys: Mutex::default(),
            in_flight: metrics.gauge("switchyard_in_flight_requests", &[]),
            queued: metrics.gauge("switchyard_queued_requests", &[]),
        }
    }

    /// A slot for one request: at once when one is free; else after waiting
    /// in the queue, at most `queue_timeout`; else (the queue is full, or the
    /// wait ran out) the request is shed.
    pub async fn admit(&self) -> Result<Slot, GatewayError> {
        let gate = &self.gate;
        if let Some(slot) = gate.try_take() {
            return Ok(slot);
        }
        let ahead = gate.waiting.fetch_add(1, Ordering::AcqRel);
        let _waiting = Waiting(&gate.waiting);
        if ahead >= self.max_queue {
            self.shed_full.increment(1);
            return Err(GatewayError::Overloaded(
                "its in-flight limit and its queue are full",
            ));
        }
        let wait = async {
            loop {
                // Registered before the look, so that a slot freed between
                // the two is not missed.
                let freed = gate.freed.notified();
                tokio::pin!(freed);
                freed.as_mut().enable();
                if let Some(slot) = gate.try_take() {
                    return slot;
                }
                freed.await;
            }
        };
        match tokio::time::timeout(self.queue_timeout, wait).await {
            Ok(slot) => Ok(slot),
            Err(_) => {
                self.shed_timeout.increment(1);
                Err(GatewayError::Overloaded(
                    "no room came free within its queue timeout",
                ))
            }
        }
    }

    /// The in-flight limit of `max` on the client key `name`, its count
    /// carried over from keys built before under that name.
    pub fn key_limit(&self, name: &str, max: u32) -> Limit {
        self.keys
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .limit(name, max)
    }

    /// Counts a request refused for `error` in `switchyard_requests_shed_total`.
    pub fn shed(&self, error: &LimitError) {
        let [model, deployments, key] = &self.shed_limited;
        match error {
            LimitError::Model(_) => model,
            LimitError::Deployments(_) => deployments,
            LimitError::Key => key,
        }
        .increment(1);
    }

    /// Sets the gauges from the gate's state (when `/metrics` is read).
    pub fn export(&self) {
        let gate = &self.gate;
        let in_flight = gate
            .in_flight
            .load(Ordering::Relaxed)
            .min(gate.max_in_flight);
        self.in_flight.set(f64::from(in_flight));
        self.queued
            .set(f64::from(gate.waiting.load(Ordering::Relaxed)));
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    fn gate(max_in_flight: u32, max_queue: u32) -> Arc<Admission> {
        let config = config::Admission {
            max_in_flight: None,
            max_queue,
            queue_timeout: Duration::from_millis(100),
        };
        Arc::new(Admission::new(&config, max_in_flight, &Metrics::new()))
    }

    #[tokio::test(start_paused = true)]
    async fn past_the_limit_a_request_waits_in_the_queue_or_is_shed() {
        let gate = gate(2, 1);
        let first = gate.admit().await.unwrap();
        let _second = gate.admit().await.unwrap();
        // The third waits; while it does, a fourth finds the queue full at once.
        let waiter = tokio::spawn({
            let gate = gate.clone();
            async move { gate.admit().await.map(drop) }
        });
        tokio::task::yield_now().await;
        let started = tokio::time::Instant::now();
        let shed = gate.admit().await.unwrap_err();
        assert_eq!(started.elapsed(), Duration::ZERO);
        assert_eq!(shed.status(), axum::http::StatusCode::SERVICE_UNAVAILABLE);
        assert_eq!(shed.retry_after(), Some(1));
        // A slot comes free: the waiting request takes it.
        drop(first);
        waiter.await.unwrap().unwrap();
    }

    #[tokio::test(start_paused = true)]
    async fn a_wait_longer_than_the_queue_timeout_is_shed() {
        let gate = gate(1, 4);
        let _only = gate.admit().await.unwrap();
        let started = tokio::time::Instant::now();
        let shed = gate.admit().await.unwrap_err();
        assert_eq!(started.elapsed(), Duration::from_millis(100));
        assert_eq!(shed.kind(), "overloaded");
        gate.export();
        assert_eq!(gate.gate.waiting.load(Ordering::Relaxed), 0);
    }
}
