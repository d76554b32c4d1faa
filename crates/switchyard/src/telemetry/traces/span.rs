//! The spans of one request, as OTLP protobuf messages: the server span of
//! the request, and a client span per upstream attempt under it.
//!
//! Built straight into the wire types (not through the SDK's `SpanData`,
//! whose conversion to them copies every attribute once more).

use std::time::{Duration, SystemTime};

use opentelemetry::trace::{SpanContext, SpanId};
use opentelemetry_proto::tonic::common::v1::{AnyValue, KeyValue, any_value};
use opentelemetry_proto::tonic::trace::v1::{Span, Status, span, status};
use opentelemetry_sdk::trace::{IdGenerator, RandomIdGenerator};
use switchyard_providers::openai::Usage;

use super::Traced;
use crate::request::Principal;

/// `gen_ai.operation.name` of an endpoint.
fn operation(endpoint: &str) -> &'static str {
    match endpoint {
        "completions" => "text_completion",
        "embeddings" => "embeddings",
        _ => "chat",
    }
}

/// An attribute of any value.
fn attribute(key: &str, value: any_value::Value) -> KeyValue {
    KeyValue {
        key: key.to_owned(),
        value: Some(AnyValue { value: Some(value) }),
        ..KeyValue::default()
    }
}

/// A text attribute.
pub(super) fn text(key: &str, value: impl Into<String>) -> KeyValue {
    attribute(key, any_value::Value::StringValue(value.into()))
}

/// A count attribute.
fn int(key: &str, value: u64) -> KeyValue {
    attribute(
        key,
        any_value::Value::IntValue(i64::try_from(value).unwrap_or(i64::MAX)),
    )
}

/// A number attribute.
fn float(key: &str, value: f64) -> KeyValue {
    attribute(key, any_value::Value::DoubleValue(value))
}

/// A yes-or-no attribute.
fn flag(key: &str, value: bool) -> KeyValue {
    attribute(key, any_value::Value::BoolValue(value))
}

/// Nanoseconds since the Unix epoch.
fn nanos(at: SystemTime) -> u64 {
    at.duration_since(SystemTime::UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_nanos()).unwrap_or(u64::MAX))
}

/// An error status saying `message`.
fn error(message: impl Into<String>) -> Option<Status> {
    Some(Status {
        message: message.into(),
        code: status::StatusCode::Error as i32,
    })
}

/// A span's flags (OTLP `SpanFlags`): sampled (the W3C trace flag), and
/// whether its parent is known to be local or remote, and which.
const SAMPLED: u32 = 0x01;
const HAS_IS_REMOTE: u32 = 0x100;
const IS_REMOTE: u32 = 0x200;

/// What every span of one request shares.
struct Frame<'a> {
    trace_id: Vec<u8>,
    trace_state: String,
    parent: Vec<u8>,
    start: SystemTime,
    operation: &'static str,
    ids: &'a RandomIdGenerator,
}

impl Frame<'_> {
    /// A span of the request, `after` its arrival, lasting `took`.
    fn span(
        &self,
        span_id: SpanId,
        kind: span::SpanKind,
        name: String,
        after: Duration,
        took: Duration,
    ) -> Span {
        let start = self.start + after;
        Span {
            trace_id: self.trace_id.clone(),
            span_id: span_id.to_bytes().to_vec(),
            trace_state: self.trace_state.clone(),
            parent_span_id: self.parent.clone(),
            name,
            kind: kind as i32,
            start_time_unix_nano: nanos(start),
            end_time_unix_nano: nanos(start + took),
            flags: SAMPLED | HAS_IS_REMOTE,
            ..Span::default()
        }
    }

    /// A client span of an attempt, child of `parent`.
    fn attempt(&self, parent: SpanId, model: &str, after: Duration, took: Duration) -> Span {
        let mut span = self.span(
            self.ids.new_span_id(),
            span::SpanKind::Client,
            format!("{} {model}", self.operation),
            after,
            took,
        );
        span.parent_span_id = parent.to_bytes().to_vec();
        span.attributes
            .push(text("gen_ai.operation.name", self.operation));
        span.attributes.push(text("gen_ai.request.model", model));
        span
    }
}

/// Appends the spans of `traced` to `spans`.
pub(super) fn build(traced: Traced, ids: &RandomIdGenerator, spans: &mut Vec<Span>) {
    let operation = operation(traced.endpoint);
    let request_span = ids.new_span_id();
    let frame = Frame {
        trace_id: traced.trace_id.to_bytes().to_vec(),
        trace_state: traced
            .parent
            .as_ref()
            .map(|p| p.trace_state().header())
            .unwrap_or_default(),
        parent: traced
            .parent
            .as_ref()
            .map(SpanContext::span_id)
            .map(|id| id.to_bytes().to_vec())
            .unwrap_or_default(),
        start: traced.arrived,
        operation,
        ids,
    };

    for (after, failed) in &traced.failed {
        let (provider, model) = failed
            .deployment
            .split_once('/')
            .unwrap_or((failed.deployment.as_str(), ""));
        let mut span = frame.attempt(request_span, model, *after, failed.took);
        span.attributes.push(text("switchyard.provider", provider));
        span.attributes
            .push(text("switchyard.deployment", failed.deployment.as_str()));
        span.attributes.push(text("error.type", failed.outcome));
        span.status = error(failed.detail.as_str());
        spans.push(span);
    }

    if let (Some(after), Some(served)) = (traced.serving_after, &traced.served_by) {
        let took = traced.latency.saturating_sub(after);
        let mut span = frame.attempt(request_span, &served.upstream_model, after, took);
        span.attributes.push(text(
            "gen_ai.response.model",
            served.upstream_model.as_str(),
        ));
        span.attributes
            .push(text("switchyard.provider", served.provider.as_ref()));
        span.attributes.push(text(
            "switchyard.deployment",
            format!("{}/{}", served.provider, served.upstream_model),
        ));
        usage_attributes(traced.usage.as_ref(), &mut span.attributes);
        if traced.error.is_some() {
            span.status = error("");
        }
        spans.push(span);
    }

    let model = traced.model.as_deref().unwrap_or("");
    let name = if model.is_empty() {
        operation.to_owned()
    } else {
        format!("{operation} {model}")
    };
    let mut span = frame.span(
        request_span,
        span::SpanKind::Server,
        name,
        Duration::ZERO,
        traced.latency,
    );
    if traced.parent.is_some() {
        // The parent is the client's, across the wire.
        span.flags |= IS_REMOTE;
    }
    let attributes = &mut span.attributes;
    attributes.extend([
        text("gen_ai.operation.name", operation),
        text("gen_ai.request.model", model),
        int("http.response.status_code", u64::from(traced.status)),
        text(
            "switchyard.request_id",
            String::from_utf8_lossy(traced.request_id.as_bytes()),
        ),
        int("switchyard.attempts", u64::from(traced.attempts)),
        flag("switchyard.stream", traced.stream),
        float("switchyard.cost_usd", traced.cost_micros as f64 / 1e6),
        flag("switchyard.cost_estimated", traced.cost_estimated),
    ]);
    if let Some(served) = &traced.served_by {
        attributes.push(text(
            "gen_ai.response.model",
            served.upstream_model.as_str(),
        ));
        attributes.push(text("switchyard.provider", served.provider.as_ref()));
    }
    usage_attributes(traced.usage.as_ref(), attributes);
    if let Some(key) = traced.principal.key_name() {
        attributes.push(text("switchyard.key", key));
    }
    if let Principal::VirtualKey(tenant) = &traced.principal
        && let Some(team) = &tenant.team
    {
        attributes.push(text("switchyard.team", team.name.as_ref()));
    }
    if let Some(cache) = traced.cache {
        attributes.push(text("switchyard.cache", cache.as_str()));
    }
    if let Some(route) = traced.route.as_ref().and_then(|r| r.to_str().ok()) {
        attributes.push(text("switchyard.route", route));
    }
    if let Some(ttft) = traced.ttft {
        attributes.push(float("switchyard.time_to_first_token", ttft.as_secs_f64()));
        if traced.stream {
            span.events.push(span::Event {
                time_unix_nano: nanos(traced.arrived + ttft),
                name: "gen_ai.first_token".to_owned(),
                ..span::Event::default()
            });
        }
    }
    if let Some(bodies) = &traced.bodies {
        span.attributes
            .push(text("switchyard.request.body", bodies.request_shown()));
        if let Some(answer) = bodies.answer_shown() {
            span.attributes
                .push(text("switchyard.response.body", answer));
        }
    }
    if let Some(error_type) = traced.error {
        span.attributes
            .push(text("error.type", error_type.as_str()));
        span.status = error(error_type.as_str());
    }
    spans.push(span);
}

/// The GenAI token counts of `usage`.
fn usage_attributes(usage: Option<&Usage>, attributes: &mut Vec<KeyValue>) {
    let Some(usage) = usage else {
        return;
    };
    attributes.push(int("gen_ai.usage.input_tokens", usage.prompt_tokens));
    attributes.push(int("gen_ai.usage.output_tokens", usage.completion_tokens));
    for (name, n) in [
        ("gen_ai.usage.cache_read.input_tokens", usage.cached_tokens),
        (
            "gen_ai.usage.cache_creation.input_tokens",
            usage.cache_write_tokens,
        ),
        ("switchyard.usage.reasoning_tokens", usage.reasoning_tokens),
    ] {
        if n > 0 {
            attributes.push(int(name, n));
        }
    }
}
