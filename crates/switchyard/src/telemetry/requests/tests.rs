use std::time::Instant;

use axum::http::HeaderValue;

use super::*;
use crate::request::{Ending, RecordedError, ServedBy};

/// A registry, a consumer, and the meter of model `m` served by `p` and `q`.
fn setup() -> (Metrics, RequestMetrics, Arc<ModelMeter>, Arc<str>) {
    let metrics = Metrics::new();
    let consumer = RequestMetrics::new(&metrics);
    let p: Arc<str> = Arc::from("p");
    let meter = Arc::new(ModelMeter::new(&metrics, "m", &[p.clone(), Arc::from("q")]));
    (metrics, consumer, meter, p)
}

/// An answered chat of model `m` by provider `provider`.
fn answered(meter: &Arc<ModelMeter>, provider: &Arc<str>) -> RequestRecord {
    let mut record = RequestRecord::new(
        HeaderValue::from_static("r"),
        "chat_completions",
        Instant::now(),
    );
    record.model = Some("m".into());
    record.meter = Some(meter.clone());
    record.served_by = Some(ServedBy {
        provider: provider.clone(),
        upstream_model: "up".into(),
    });
    record.status = 200;
    record.latency = Duration::from_millis(300);
    record.ttft = Some(Duration::from_millis(100));
    record.upstream = Duration::from_micros(98_500);
    record.usage = Some(Usage {
        prompt_tokens: 10,
        completion_tokens: 20,
        total_tokens: 30,
        cached_tokens: 4,
        cache_write_tokens: 0,
        reasoning_tokens: 5,
    });
    record.cost_micros = 1_234;
    record
}

/// The value of the series `line` (name and labels) in `text`.
fn value(text: &str, line: &str) -> String {
    text.lines()
        .find_map(|l| l.strip_prefix(line)?.strip_prefix(' '))
        .unwrap_or_else(|| panic!("no `{line}` in:\n{text}"))
        .to_owned()
}

/// Asserts each series' value in `text`.
fn assert_values(text: &str, expected: &[(&str, &str)]) {
    for (series, count) in expected {
        assert_eq!(value(text, series), *count, "{series}");
    }
}

#[test]
fn answered_requests_count_with_the_handles_registered_for_their_model() {
    let (metrics, consumer, meter, p) = setup();
    let json = answered(&meter, &p);
    let mut stream = answered(&meter, &p);
    stream.stream = true;
    consumer.consume(&json);
    consumer.consume(&stream);
    let text = metrics.render();
    let requests =
        r#"switchyard_requests_total{model="m",provider="p",status="200",error_type="none"}"#;
    assert_eq!(value(&text, requests), "2");
    // Registered with the routes, before any request: a rate from zero.
    let q = r#"switchyard_requests_total{model="m",provider="q",status="200",error_type="none"}"#;
    assert_eq!(value(&text, q), "0");
    for (direction, count) in [
        ("input", "20"),
        ("output", "40"),
        ("cached_input", "8"),
        ("cache_write", "0"),
        ("reasoning", "10"),
    ] {
        let line = format!(r#"switchyard_tokens_total{{model="m",direction="{direction}"}}"#);
        assert_eq!(value(&text, &line), count, "{direction}");
    }
    assert_eq!(
        value(
            &text,
            r#"switchyard_cost_usd_total{model="m",provider="p"}"#
        ),
        "0.002468"
    );
    let count = |name: &str| value(&text, &format!(r#"{name}_count{{model="m"}}"#));
    assert_eq!(count("switchyard_request_duration_seconds"), "2");
    // Only the stream has a time to first token and per output token:
    // (300 - 100) ms over 20 tokens.
    assert_eq!(count("switchyard_time_to_first_token_seconds"), "1");
    assert_eq!(count("switchyard_time_per_output_token_seconds"), "1");
    assert_eq!(
        value(
            &text,
            r#"switchyard_time_per_output_token_seconds_sum{model="m"}"#
        ),
        "0.01"
    );
    // The gateway's own time: 100 ms to the first content, 98.5 of them upstream.
    assert_eq!(value(&text, "switchyard_overhead_seconds_count"), "2");
    assert_eq!(
        value(&text, r#"switchyard_overhead_seconds_bucket{le="0.001"}"#),
        "0"
    );
    assert_eq!(
        value(&text, r#"switchyard_overhead_seconds_bucket{le="0.0025"}"#),
        "2"
    );
}

#[test]
fn failures_count_with_their_status_and_error_type() {
    let (metrics, consumer, meter, p) = setup();
    let mut upstream_500 = answered(&meter, &p);
    upstream_500.status = 502;
    upstream_500.ending = Ending::Failed;
    upstream_500.error = Some(RecordedError {
        kind: "upstream_5xx",
        detail: String::new(),
    });
    upstream_500.usage = None;
    upstream_500.ttft = None;
    upstream_500.cost_micros = 0;
    consumer.consume(&upstream_500);

    let mut cut = answered(&meter, &p);
    cut.stream = true;
    cut.ending = Ending::Failed;
    cut.error = Some(RecordedError {
        kind: "upstream_protocol",
        detail: String::new(),
    });
    consumer.consume(&cut);

    let mut unauthenticated =
        RequestRecord::new(HeaderValue::from_static("r"), "messages", Instant::now());
    unauthenticated.status = 401;
    unauthenticated.ending = Ending::Failed;
    unauthenticated.error = Some(RecordedError {
        kind: "unauthenticated",
        detail: String::new(),
    });
    consumer.consume(&unauthenticated);

    let mut unknown = unauthenticated.clone();
    unknown.model = Some("nope".into());
    unknown.status = 404;
    unknown.error = Some(RecordedError {
        kind: "model_not_found",
        detail: String::new(),
    });
    consumer.consume(&unknown);

    // Not a proxy endpoint: not counted.
    let mut health = unknown.clone();
    health.endpoint = "health";
    consumer.consume(&health);

    let text = metrics.render();
    for (labels, count) in [
        (
            r#"model="m",provider="p",status="502",error_type="upstream_5xx""#,
            "1",
        ),
        (
            r#"model="m",provider="p",status="200",error_type="stream_cut""#,
            "1",
        ),
        (
            r#"model="m",provider="p",status="200",error_type="none""#,
            "0",
        ),
        (
            r#"model="none",provider="none",status="401",error_type="auth""#,
            "1",
        ),
        (
            r#"model="other",provider="none",status="404",error_type="client_error""#,
            "1",
        ),
    ] {
        let line = format!("switchyard_requests_total{{{labels}}}");
        assert_eq!(value(&text, &line), count, "{labels}");
    }
    // The cut stream's tokens and cost count; its time per token does not.
    assert_eq!(
        value(
            &text,
            r#"switchyard_tokens_total{model="m",direction="output"}"#
        ),
        "20"
    );
    assert_eq!(
        value(
            &text,
            r#"switchyard_cost_usd_total{model="m",provider="p"}"#
        ),
        "0.001234"
    );
    assert_eq!(
        value(
            &text,
            r#"switchyard_time_per_output_token_seconds_count{model="m"}"#
        ),
        "0"
    );
    assert_eq!(
        value(
            &text,
            r#"switchyard_time_to_first_token_seconds_count{model="m"}"#
        ),
        "1"
    );
    assert_eq!(value(&text, "switchyard_overhead_seconds_count"), "0");
    assert_eq!(
        value(
            &text,
            r#"switchyard_request_duration_seconds_count{model="none"}"#
        ),
        "1"
    );
}

#[test]
fn cache_hits_count_as_the_caches_without_tokens_or_times_of_a_provider() {
    let (metrics, consumer, meter, p) = setup();
    let mut hit = answered(&meter, &p);
    hit.served_by = None;
    hit.cache = Some(Status::Hit);
    hit.cost_micros = 0;
    hit.stream = true;
    consumer.consume(&hit);
    assert_values(
        &metrics.render(),
        &[
            (
                r#"switchyard_requests_total{model="m",provider="cache",status="200",error_type="none"}"#,
                "1",
            ),
            (
                r#"switchyard_tokens_total{model="m",direction="input"}"#,
                "0",
            ),
            (
                r#"switchyard_time_to_first_token_seconds_count{model="m"}"#,
                "0",
            ),
            ("switchyard_overhead_seconds_count", "0"),
        ],
    );
}

#[test]
fn a_provider_unknown_to_the_meter_is_still_counted() {
    let (metrics, consumer, meter, _) = setup();
    let elsewhere: Arc<str> = Arc::from("z");
    consumer.consume(&answered(&meter, &elsewhere));
    assert_values(
        &metrics.render(),
        &[
            (
                r#"switchyard_requests_total{model="m",provider="z",status="200",error_type="none"}"#,
                "1",
            ),
            (
                r#"switchyard_cost_usd_total{model="m",provider="z"}"#,
                "0.001234",
            ),
        ],
    );
}

#[test]
fn attempts_are_timed_by_outcome() {
    let metrics = Metrics::new();
    let meter = UpstreamMeter::new(&metrics, "p");
    let provider = "p".to_owned();
    meter.record(Duration::from_millis(20), None);
    for failure in [
        UpstreamError::Connect {
            provider: provider.clone(),
            detail: String::new(),
        },
        UpstreamError::TooLarge {
            provider: provider.clone(),
            limit: 1,
        },
        // Never sent: not an exchange.
        UpstreamError::KeysResting {
            provider,
            retry_after: 1,
        },
    ] {
        meter.record(Duration::from_millis(30), Some(&failure));
    }
    let text = metrics.render();
    for outcome in ["ok", "error", "refused"] {
        let line = format!(
            r#"switchyard_upstream_duration_seconds_count{{provider="p",outcome="{outcome}"}}"#
        );
        assert_eq!(value(&text, &line), "1", "{outcome}");
    }
}
