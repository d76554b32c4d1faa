#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::http::HeaderValue;
use opentelemetry::trace::TraceId;
use opentelemetry_proto::tonic::common::v1::any_value;
use opentelemetry_proto::tonic::trace::v1::{Span, span::SpanKind};
use opentelemetry_sdk::trace::{RandomIdGenerator, Sampler};
use tokio::sync::mpsc;

use super::{Traced, Tracer, remote_parent, span};
use crate::request::{Consumer, FailedAttempt, RequestRecord, ServedBy};

fn tracer(ratio: f64) -> (Tracer, mpsc::Receiver<Traced>) {
    let (tx, rx) = mpsc::channel(8);
    let tracer = Tracer {
        tx,
        sampler: Sampler::ParentBased(Box::new(Sampler::TraceIdRatioBased(ratio))),
        ids: RandomIdGenerator::default(),
        dropped: metrics::Counter::noop(),
        content: false,
    };
    (tracer, rx)
}

fn record(traceparent: Option<&'static str>) -> RequestRecord {
    let arrived = Instant::now();
    let mut record = RequestRecord::new(
        HeaderValue::from_static("req-1"),
        "chat_completions",
        arrived,
    );
    record.traceparent = traceparent.map(HeaderValue::from_static);
    record.model = Some("m".to_owned());
    record.status = 200;
    record.latency = Duration::from_millis(40);
    record
}

const SAMPLED: &str = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";
const NOT_SAMPLED: &str = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-00";

#[test]
fn a_valid_traceparent_is_the_parent_and_an_invalid_one_is_ignored() {
    let parent = remote_parent(&HeaderValue::from_static(SAMPLED)).unwrap();
    assert_eq!(
        parent.trace_id(),
        TraceId::from_hex("4bf92f3577b34da6a3ce929d0e0e4736").unwrap()
    );
    assert!(parent.is_remote() && parent.is_sampled());
    for bad in [
        "garbage",
        "00-00000000000000000000000000000000-00f067aa0ba902b7-01",
        "00-4bf92f3577b34da6a3ce929d0e0e4736-0000000000000000-01",
        "00-4bf92f3577b34da6a3ce929d0e0e473-00f067aa0ba902b7-01",
    ] {
        assert!(
            remote_parent(&HeaderValue::from_static(bad)).is_none(),
            "{bad}"
        );
    }
}

#[test]
fn the_parents_decision_wins_and_the_ratio_decides_the_rest() {
    let (never, mut rx) = tracer(0.0);
    never.consume(&record(None));
    assert!(rx.try_recv().is_err(), "ratio 0 keeps no root");
    never.consume(&record(Some(SAMPLED)));
    let kept = rx.try_recv().unwrap();
    assert_eq!(
        kept.trace_id,
        TraceId::from_hex("4bf92f3577b34da6a3ce929d0e0e4736").unwrap()
    );

    let (always, mut rx) = tracer(1.0);
    always.consume(&record(Some(NOT_SAMPLED)));
    assert!(rx.try_recv().is_err(), "an unsampled parent is respected");
    always.consume(&record(None));
    assert!(rx.try_recv().is_ok());
    let mut probe = record(None);
    probe.endpoint = "health";
    always.consume(&probe);
    assert!(rx.try_recv().is_err(), "only proxied requests are traced");
}

#[test]
fn attempts_are_children_placed_at_their_own_times() {
    let (tracer, mut rx) = tracer(1.0);
    let mut record = record(Some(SAMPLED));
    let arrived = record.arrived;
    record.failed_attempts = vec![FailedAttempt {
        deployment: "first/mock-1".to_owned(),
        outcome: "timeout",
        detail: "no answer".to_owned(),
        sent: arrived + Duration::from_millis(2),
        took: Duration::from_millis(10),
    }];
    record.served_by = Some(ServedBy {
        provider: Arc::from("second"),
        upstream_model: "mock-2".to_owned(),
    });
    record.serving_since = Some(arrived + Duration::from_millis(15));
    record.attempts = 2;
    tracer.consume(&record);
    let traced = rx.try_recv().unwrap();
    let mut spans = Vec::new();
    span::build(traced, &RandomIdGenerator::default(), &mut spans);
    let [failed, served, server] = spans.as_slice() else {
        panic!("{spans:#?}")
    };
    let nanos = |s: &Span| (s.start_time_unix_nano, s.end_time_unix_nano);
    let zero = server.start_time_unix_nano;
    let ms = |n: u64| zero + n * 1_000_000;
    assert_eq!(server.kind, SpanKind::Server as i32);
    assert_eq!(server.flags, 0x301, "sampled, with a remote parent");
    assert_eq!(
        server.parent_span_id,
        0x00f0_67aa_0ba9_02b7_u64.to_be_bytes()
    );
    assert_eq!(nanos(server), (zero, ms(40)));
    for child in [failed, served] {
        assert_eq!(child.kind, SpanKind::Client as i32);
        assert_eq!(child.flags, 0x101);
        assert_eq!(child.parent_span_id, server.span_id);
        assert_eq!(child.trace_id, server.trace_id);
    }
    assert_eq!(nanos(failed), (ms(2), ms(12)));
    assert_eq!(nanos(served), (ms(15), ms(40)));
    assert_eq!(text(failed, "error.type").as_deref(), Some("timeout"));
    assert_eq!(
        text(served, "switchyard.deployment").as_deref(),
        Some("second/mock-2")
    );
}

/// The text attribute `key` of `span`.
fn text(span: &Span, key: &str) -> Option<String> {
    span.attributes
        .iter()
        .find(|kv| kv.key == key)
        .and_then(|kv| match kv.value.as_ref()?.value.as_ref()? {
            any_value::Value::StringValue(s) => Some(s.clone()),
            _ => None,
        })
}

#[test]
fn bodies_are_in_the_span_only_when_asked_and_redacted() {
    let body = br#"{"model":"m","messages":[{"role":"user","content":"key sk-proj-abcdefghijklmnopqrstuvwxyz0123"}]}"#;
    let mut record = record(None);
    let mut bodies = crate::telemetry::Bodies::new(body, 1024);
    bodies.answered(br#"{"choices":[]}"#);
    record.bodies = Some(Box::new(bodies));
    let attribute = |content: bool, key: &str| {
        let (mut tracer, mut rx) = tracer(1.0);
        tracer.content = content;
        tracer.consume(&record);
        let mut spans = Vec::new();
        span::build(
            rx.try_recv().unwrap(),
            &RandomIdGenerator::default(),
            &mut spans,
        );
        text(spans.last().unwrap(), key)
    };
    assert_eq!(attribute(false, "switchyard.request.body"), None);
    let shown = attribute(true, "switchyard.request.body").unwrap();
    assert!(shown.contains("key [REDACTED]"), "{shown}");
    assert!(!shown.contains("sk-proj"), "{shown}");
    assert_eq!(
        attribute(true, "switchyard.response.body").as_deref(),
        Some(r#"{"choices":[]}"#)
    );
}
