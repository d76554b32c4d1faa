//! Admission control: how many proxied requests the gateway works on at
//! once, and a bounded, time-limited wait for the others. Past that a
//! request is shed at once — 503 with `retry-after`, in the client's dialect
//! — so that the requests accepted keep their latency and the process its
//! memory and descriptors (Envoy's `max_requests` and pending-request limits).
//!
//! On the request path, a free slot costs one atomic read-modify-write on a
//! semaphore (and one on the `Arc` that owns it); the gauges are set when
//! `/metrics` is read.

use std::sync::Arc;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::Duration;

use tokio::sync::{OwnedSemaphorePermit, Semaphore};

use crate::config;
use crate::error::GatewayError;
use crate::telemetry::metrics::Metrics;

/// The gate every proxied request passes. Process-lifetime.
#[derive(Debug)]
pub struct Admission {
    slots: Arc<Semaphore>,
    max_in_flight: u32,
    /// Requests waiting for a slot now.
    waiting: AtomicU32,
    max_queue: u32,
    queue_timeout: Duration,
    /// `switchyard_requests_shed_total{reason="queue_full"}`.
    shed_full: metrics::Counter,
    /// `switchyard_requests_shed_total{reason="queue_timeout"}`.
    shed_timeout: metrics::Counter,
    /// `switchyard_in_flight_requests`.
    in_flight: metrics::Gauge,
    /// `switchyard_queued_requests`.
    queued: metrics::Gauge,
}

/// A request's place among those in flight, given back when dropped.
#[derive(Debug)]
pub struct Slot {
    _permit: OwnedSemaphorePermit,
}

/// Counts a request as waiting while it lives.
struct Waiting<'a>(&'a AtomicU32);

impl Drop for Waiting<'_> {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::Relaxed);
    }
}

impl Admission {
    /// The gate of `admission:`, its metrics registered in `metrics`.
    pub fn new(config: &config::Admission, metrics: &Metrics) -> Self {
        metrics.describe(
            "switchyard_requests_shed_total",
            None,
            "Requests answered 503 at once because the gateway was at its in-flight limit.",
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
            slots: Arc::new(Semaphore::new(config.max_in_flight as usize)),
            max_in_flight: config.max_in_flight,
            waiting: AtomicU32::new(0),
            max_queue: config.max_queue,
            queue_timeout: config.queue_timeout,
            shed_full: shed("queue_full"),
            shed_timeout: shed("queue_timeout"),
            in_flight: metrics.gauge("switchyard_in_flight_requests", &[]),
            queued: metrics.gauge("switchyard_queued_requests", &[]),
        }
    }

    /// A slot for one request: at once when one is free; else after waiting
    /// in the queue, at most `queue_timeout`; else (the queue is full, or the
    /// wait ran out) the request is shed.
    pub async fn admit(&self) -> Result<Slot, GatewayError> {
        if let Ok(permit) = self.slots.clone().try_acquire_owned() {
            return Ok(Slot { _permit: permit });
        }
        let ahead = self.waiting.fetch_add(1, Ordering::Relaxed);
        let _waiting = Waiting(&self.waiting);
        if ahead >= self.max_queue {
            self.shed_full.increment(1);
            return Err(GatewayError::Overloaded(
                "its in-flight limit and its queue are full",
            ));
        }
        match tokio::time::timeout(self.queue_timeout, self.slots.clone().acquire_owned()).await {
            Ok(Ok(permit)) => Ok(Slot { _permit: permit }),
            // The semaphore is never closed; a wait that ran out is shed.
            Ok(Err(_)) | Err(_) => {
                self.shed_timeout.increment(1);
                Err(GatewayError::Overloaded(
                    "no room came free within its queue timeout",
                ))
            }
        }
    }

    /// Sets the gauges from the gate's state (when `/metrics` is read).
    pub fn export(&self) {
        let free = u32::try_from(self.slots.available_permits()).unwrap_or(u32::MAX);
        self.in_flight
            .set(f64::from(self.max_in_flight.saturating_sub(free)));
        self.queued
            .set(f64::from(self.waiting.load(Ordering::Relaxed)));
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    fn gate(max_in_flight: u32, max_queue: u32) -> Arc<Admission> {
        let config = config::Admission {
            max_in_flight,
            max_queue,
            queue_timeout: Duration::from_millis(100),
        };
        Arc::new(Admission::new(&config, &Metrics::new()))
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
        assert_eq!(gate.waiting.load(Ordering::Relaxed), 0);
    }
}
