//! The spans of one request: the server span of the request, and a client
//! span per upstream attempt under it.

use opentelemetry::trace::{SpanContext, SpanId, SpanKind, Status, TraceFlags, TraceState};
use opentelemetry::{InstrumentationScope, KeyValue};
use opentelemetry_sdk::trace::{IdGenerator, RandomIdGenerator, SpanData, SpanEvents, SpanLinks};
use std::borrow::Cow;
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

/// Appends the spans of `traced` to `spans`.
pub(super) fn build(
    traced: Traced,
    scope: &InstrumentationScope,
    ids: &RandomIdGenerator,
    spans: &mut Vec<SpanData>,
) {
    let operation = operation(traced.endpoint);
    let request_span = ids.new_span_id();
    let context = |span_id| {
        SpanContext::new(
            traced.trace_id,
            span_id,
            TraceFlags::SAMPLED,
            false,
            traced
                .parent
                .as_ref()
                .map_or_else(TraceState::default, |p| p.trace_state().clone()),
        )
    };
    let start = traced.arrived;
    let end = start + traced.latency;

    for (after, attempt) in &traced.failed {
        let (provider, model) = attempt
            .deployment
            .split_once('/')
            .unwrap_or((attempt.deployment.as_str(), ""));
        spans.push(SpanData {
            span_context: context(ids.new_span_id()),
            parent_span_id: request_span,
            parent_span_is_remote: false,
            span_kind: SpanKind::Client,
            name: format!("{operation} {model}").into(),
            start_time: start + *after,
            end_time: start + *after + attempt.took,
            attributes: vec![
                KeyValue::new("gen_ai.operation.name", operation),
                KeyValue::new("gen_ai.request.model", model.to_owned()),
                KeyValue::new("switchyard.provider", provider.to_owned()),
                KeyValue::new("switchyard.deployment", attempt.deployment.clone()),
                KeyValue::new("error.type", attempt.outcome),
            ],
            dropped_attributes_count: 0,
            events: SpanEvents::default(),
            links: SpanLinks::default(),
            status: Status::error(attempt.detail.clone()),
            instrumentation_scope: scope.clone(),
        });
    }

    if let (Some(after), Some(served)) = (traced.serving_after, &traced.served_by) {
        let mut attributes = vec![
            KeyValue::new("gen_ai.operation.name", operation),
            KeyValue::new("gen_ai.request.model", served.upstream_model.clone()),
            KeyValue::new("gen_ai.response.model", served.upstream_model.clone()),
            KeyValue::new("switchyard.provider", served.provider.to_string()),
            KeyValue::new(
                "switchyard.deployment",
                format!("{}/{}", served.provider, served.upstream_model),
            ),
        ];
        usage_attributes(traced.usage.as_ref(), &mut attributes);
        spans.push(SpanData {
            span_context: context(ids.new_span_id()),
            parent_span_id: request_span,
            parent_span_is_remote: false,
            span_kind: SpanKind::Client,
            name: format!("{operation} {}", served.upstream_model).into(),
            start_time: start + after,
            end_time: end.max(start + after),
            attributes,
            dropped_attributes_count: 0,
            events: SpanEvents::default(),
            links: SpanLinks::default(),
            status: if traced.error.is_some() {
                Status::error("")
            } else {
                Status::Unset
            },
            instrumentation_scope: scope.clone(),
        });
    }

    let model = traced.model.as_deref().unwrap_or("");
    let mut attributes = vec![
        KeyValue::new("gen_ai.operation.name", operation),
        KeyValue::new("gen_ai.request.model", model.to_owned()),
        KeyValue::new("http.response.status_code", i64::from(traced.status)),
        KeyValue::new(
            "switchyard.request_id",
            String::from_utf8_lossy(traced.request_id.as_bytes()).into_owned(),
        ),
        KeyValue::new("switchyard.attempts", i64::from(traced.attempts)),
        KeyValue::new("switchyard.stream", traced.stream),
        KeyValue::new("switchyard.cost_usd", traced.cost_micros as f64 / 1e6),
        KeyValue::new("switchyard.cost_estimated", traced.cost_estimated),
    ];
    if let Some(served) = &traced.served_by {
        attributes.push(KeyValue::new(
            "gen_ai.response.model",
            served.upstream_model.clone(),
        ));
        attributes.push(KeyValue::new(
            "switchyard.provider",
            served.provider.to_string(),
        ));
    }
    usage_attributes(traced.usage.as_ref(), &mut attributes);
    if let Some(key) = traced.principal.key_name() {
        attributes.push(KeyValue::new("switchyard.key", key.to_owned()));
    }
    if let Principal::VirtualKey(tenant) = &traced.principal
        && let Some(team) = &tenant.team
    {
        attributes.push(KeyValue::new("switchyard.team", team.name.to_string()));
    }
    if let Some(cache) = traced.cache {
        attributes.push(KeyValue::new("switchyard.cache", cache.as_str()));
    }
    if let Some(route) = traced.route.as_ref().and_then(|r| r.to_str().ok()) {
        attributes.push(KeyValue::new("switchyard.route", route.to_owned()));
    }
    if let Some(ttft) = traced.ttft {
        attributes.push(KeyValue::new(
            "switchyard.time_to_first_token",
            ttft.as_secs_f64(),
        ));
    }
    if let Some(bodies) = &traced.bodies {
        attributes.push(KeyValue::new(
            "switchyard.request.body",
            bodies.request_shown(),
        ));
        if let Some(answer) = bodies.answer_shown() {
            attributes.push(KeyValue::new("switchyard.response.body", answer));
        }
    }
    let status = match traced.error {
        Some(error) => {
            attributes.push(KeyValue::new("error.type", error.as_str()));
            Status::error(error.as_str())
        }
        None => Status::Unset,
    };
    let mut events = SpanEvents::default();
    if let Some(ttft) = traced.ttft.filter(|_| traced.stream) {
        events.events.push(opentelemetry::trace::Event::new(
            "gen_ai.first_token",
            start + ttft,
            Vec::new(),
            0,
        ));
    }
    spans.push(SpanData {
        span_context: context(request_span),
        parent_span_id: traced
            .parent
            .as_ref()
            .map_or(SpanId::INVALID, SpanContext::span_id),
        parent_span_is_remote: traced.parent.is_some(),
        span_kind: SpanKind::Server,
        name: Cow::Owned(if model.is_empty() {
            operation.to_owned()
        } else {
            format!("{operation} {model}")
        }),
        start_time: start,
        end_time: end,
        attributes,
        dropped_attributes_count: 0,
        events,
        links: SpanLinks::default(),
        status,
        instrumentation_scope: scope.clone(),
    });
}

/// The GenAI token counts of `usage`.
fn usage_attributes(usage: Option<&Usage>, attributes: &mut Vec<KeyValue>) {
    let Some(usage) = usage else {
        return;
    };
    let count = |n: u64| i64::try_from(n).unwrap_or(i64::MAX);
    attributes.push(KeyValue::new(
        "gen_ai.usage.input_tokens",
        count(usage.prompt_tokens),
    ));
    attributes.push(KeyValue::new(
        "gen_ai.usage.output_tokens",
        count(usage.completion_tokens),
    ));
    for (name, n) in [
        ("gen_ai.usage.cache_read.input_tokens", usage.cached_tokens),
        (
            "gen_ai.usage.cache_creation.input_tokens",
            usage.cache_write_tokens,
        ),
        ("switchyard.usage.reasoning_tokens", usage.reasoning_tokens),
    ] {
        if n > 0 {
            attributes.push(KeyValue::new(name, count(n)));
        }
    }
}
