//! Traces: one OpenTelemetry span per proxied request, with a child span per
//! upstream attempt, exported over OTLP/HTTP (protobuf).
//!
//! Nothing on the request path opens, enters or closes a span. When a request
//! ends, [`Tracer`] (a consumer of every ended request) decides whether it is
//! sampled — the client's `traceparent` decides when it sent one (parent-based
//! sampling), `telemetry.traces.sample_ratio` otherwise — and queues what its
//! spans need. The exporter task ([`export`]) builds the spans from the
//! record's timings on each tick and sends them in batches with the official
//! OTLP exporter. A full queue drops a request's spans and counts them
//! (`switchyard_trace_spans_dropped_total`): traces are a sample, never a
//! reason for a request to wait. Span attributes follow the OpenTelemetry
//! GenAI conventions; no prompt or answer text is put in a span unless
//! `telemetry.traces.content` asks for it (then redacted and cut as the
//! bodies log shows them).

mod export;
mod span;

use std::time::{Duration, SystemTime};

use axum::http::HeaderValue;
use metrics::Counter;
use opentelemetry::Context;
use opentelemetry::propagation::{Extractor, TextMapPropagator};
use opentelemetry::trace::{SpanContext, SpanKind, TraceContextExt, TraceId};
use opentelemetry_sdk::propagation::TraceContextPropagator;
use opentelemetry_sdk::trace::{IdGenerator, RandomIdGenerator, Sampler, ShouldSample};
use switchyard_providers::openai::Usage;
use tokio::sync::mpsc;

use crate::cache::Status;
use crate::request::{Consumer, FailedAttempt, Principal, RequestRecord, ServedBy};
use crate::telemetry::{Bodies, ErrorType};
pub use export::{Exporter, StartError, start};

/// What the spans of one ended request are built from.
#[derive(Debug)]
struct Traced {
    /// The trace it belongs to, and the client's span when it sent one.
    trace_id: TraceId,
    parent: Option<SpanContext>,
    /// When it arrived, and how long it took (to its first content, to its end).
    arrived: SystemTime,
    ttft: Option<Duration>,
    latency: Duration,
    request_id: HeaderValue,
    endpoint: &'static str,
    principal: Principal,
    model: Option<String>,
    served_by: Option<ServedBy>,
    /// When the serving attempt was sent, after arrival.
    serving_after: Option<Duration>,
    failed: Vec<(Duration, FailedAttempt)>,
    status: u16,
    error: Option<ErrorType>,
    usage: Option<Usage>,
    cost_micros: i64,
    cost_estimated: bool,
    attempts: u32,
    cache: Option<Status>,
    route: Option<HeaderValue>,
    stream: bool,
    /// Its bodies, when the spans carry them (`telemetry.traces.content`).
    bodies: Option<Box<Bodies>>,
}

impl Traced {
    fn of(
        record: &RequestRecord,
        trace_id: TraceId,
        parent: Option<SpanContext>,
        content: bool,
    ) -> Self {
        let since_arrival = |at: std::time::Instant| at.saturating_duration_since(record.arrived);
        Self {
            trace_id,
            parent,
            arrived: SystemTime::now()
                .checked_sub(record.arrived.elapsed())
                .unwrap_or(SystemTime::UNIX_EPOCH),
            ttft: record.ttft,
            latency: record.latency,
            request_id: record.id.clone(),
            endpoint: record.endpoint,
            principal: record.principal.clone(),
            model: record.model.clone(),
            served_by: record.served_by.clone(),
            serving_after: record.serving_since.map(since_arrival),
            failed: record
                .failed_attempts
                .iter()
                .map(|attempt| (since_arrival(attempt.sent), attempt.clone()))
                .collect(),
            status: record.status,
            error: ErrorType::of(record),
            usage: record.usage,
            cost_micros: record.cost_micros,
            cost_estimated: record.cost_estimated,
            attempts: record.attempts,
            cache: record.cache,
            route: record.route.clone(),
            stream: record.stream,
            bodies: if content { record.bodies.clone() } else { None },
        }
    }
}

/// The consumer that samples each proxied request and queues it for the exporter.
#[derive(Debug)]
pub struct Tracer {
    tx: mpsc::Sender<Traced>,
    sampler: Sampler,
    ids: RandomIdGenerator,
    dropped: Counter,
    /// Whether spans carry the request's bodies.
    content: bool,
}

impl Consumer for Tracer {
    fn consume(&self, record: &RequestRecord) {
        if !record.proxied() {
            return;
        }
        let parent = record.traceparent.as_ref().and_then(remote_parent);
        let trace_id = parent
            .as_ref()
            .map_or_else(|| self.ids.new_trace_id(), SpanContext::trace_id);
        if !self.sampled(parent.as_ref(), trace_id) {
            return;
        }
        if self
            .tx
            .try_send(Traced::of(record, trace_id, parent, self.content))
            .is_err()
        {
            self.dropped.increment(1);
        }
    }
}

impl Tracer {
    /// Whether the request's spans are kept: the parent's decision when the
    /// client sent one, the ratio of `trace_id` otherwise.
    fn sampled(&self, parent: Option<&SpanContext>, trace_id: TraceId) -> bool {
        let context = parent.map(|p| Context::new().with_remote_span_context(p.clone()));
        self.sampler
            .should_sample(context.as_ref(), trace_id, "", &SpanKind::Server, &[], &[])
            .decision
            == opentelemetry_sdk::trace::SamplingDecision::RecordAndSample
    }
}

/// The client's span, from its `traceparent` (W3C Trace Context), when valid.
fn remote_parent(traceparent: &HeaderValue) -> Option<SpanContext> {
    let value = traceparent.to_str().ok()?;
    // Fields of their exact widths (the propagator takes shorter hex numbers).
    let widths = value.split('-').take(4).map(str::len);
    if !widths.eq([2, 32, 16, 2]) {
        return None;
    }
    let context = TraceContextPropagator::new().extract(&Traceparent(value));
    let span = context.span().span_context().clone();
    span.is_valid().then_some(span)
}

/// A carrier holding only `traceparent`.
struct Traceparent<'a>(&'a str);

impl Extractor for Traceparent<'_> {
    fn get(&self, key: &str) -> Option<&str> {
        (key == "traceparent").then_some(self.0)
    }

    fn keys(&self) -> Vec<&str> {
        vec!["traceparent"]
    }
}

#[cfg(test)]
mod tests;
