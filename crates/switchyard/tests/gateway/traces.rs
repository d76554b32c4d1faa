//! Traces, black-box: a collector on 127.0.0.1 receives the OTLP/HTTP
//! exports. A request that fails over is one server span (the child of the
//! client's `traceparent`) with a client span per attempt under it, carrying
//! the GenAI attributes and the answer's token counts; a client span that
//! says "not sampled" is respected; shutdown sends what is queued.

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest;
use opentelemetry_proto::tonic::common::v1::{AnyValue, KeyValue, any_value};
use opentelemetry_proto::tonic::trace::v1::{Span, span};
use prost::Message;
use serde_json::json;

use crate::harness::*;

/// What the collector received: each span with its resource's `service.name`.
type Received = Arc<Mutex<Vec<(String, Span)>>>;

/// An OTLP/HTTP collector on 127.0.0.1: its traces URL and what it received.
async fn collector() -> (String, Received) {
    use axum::routing::post;
    let received = Received::default();
    let seen = received.clone();
    let app = axum::Router::new().route(
        "/v1/traces",
        post(
            move |headers: axum::http::HeaderMap, body: axum::body::Bytes| {
                let seen = seen.clone();
                async move {
                    assert_eq!(headers["content-type"], "application/x-protobuf");
                    assert_eq!(headers["x-collector-token"], "secret-token");
                    let request = ExportTraceServiceRequest::decode(body).unwrap();
                    let mut seen = seen.lock().unwrap();
                    for resource in request.resource_spans {
                        let service = resource
                            .resource
                            .as_ref()
                            .and_then(|r| text(&r.attributes, "service.name"))
                            .unwrap_or_default();
                        for scope in resource.scope_spans {
                            for span in scope.spans {
                                seen.push((service.clone(), span));
                            }
                        }
                    }
                    axum::http::StatusCode::OK
                }
            },
        ),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}/v1/traces", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, app).await });
    (url, received)
}

fn value<'a>(attributes: &'a [KeyValue], key: &str) -> Option<&'a any_value::Value> {
    attributes
        .iter()
        .find(|kv| kv.key == key)
        .and_then(|kv| kv.value.as_ref())
        .and_then(|v: &AnyValue| v.value.as_ref())
}

fn text(attributes: &[KeyValue], key: &str) -> Option<String> {
    match value(attributes, key) {
        Some(any_value::Value::StringValue(s)) => Some(s.clone()),
        _ => None,
    }
}

fn int(attributes: &[KeyValue], key: &str) -> Option<i64> {
    match value(attributes, key) {
        Some(any_value::Value::IntValue(n)) => Some(*n),
        _ => None,
    }
}

/// Waits until `received` holds at least `n` spans.
async fn wait_for(received: &Received, n: usize) -> Vec<(String, Span)> {
    let started = Instant::now();
    loop {
        let spans = received.lock().unwrap().clone();
        if spans.len() >= n || started.elapsed() > Duration::from_secs(15) {
            return spans;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// A gateway exporting traces to `url` every `flush`, model `m` on `first`
/// falling back to `backup` on `second`.
fn traced_gateway(first: &Process, second: &Process, url: &str, flush: &str) -> Process {
    gateway(&format!(
        "server:\n  listen: 127.0.0.1:0\nauth:\n  mode: keys\nkeys:\n  - {{ name: tracer, key: {CLIENT_KEY} }}\nproviders:\n  first: {{ kind: openai, base_url: {}, api_key: k }}\n  second: {{ kind: openai, base_url: {}, api_key: k }}\nmodels:\n  m:\n    deployments: [{{ provider: first, model: mock-1 }}]\n    fallbacks: [backup]\n  backup:\n    deployments: [{{ provider: second, model: mock-2 }}]\nretries: {{ attempts: 1 }}\ntelemetry:\n  traces:\n    endpoint: {url}\n    service_name: gw-under-test\n    flush_interval: {flush}\n    headers: {{ x-collector-token: secret-token }}\n",
        first.url("/v1"),
        second.url("/v1")
    ))
}

const TRACE_ID: &str = "4bf92f3577b34da6a3ce929d0e0e4736";
const PARENT_ID: &str = "00f067aa0ba902b7";

/// A chat of `text` to model `m`, the child of span `PARENT_ID` with trace `flags`.
async fn ask_with_parent(gw: &Process, flags: &str, text: &str) -> reqwest::Response {
    client()
        .post(gw.url("/v1/chat/completions"))
        .bearer_auth(CLIENT_KEY)
        .header("traceparent", format!("00-{TRACE_ID}-{PARENT_ID}-{flags}"))
        .json(&json!({ "model": "m", "messages": [{ "role": "user", "content": text }] }))
        .send()
        .await
        .unwrap()
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

#[tokio::test]
async fn a_request_is_a_server_span_with_a_client_span_per_attempt() {
    let (url, received) = collector().await;
    let failing = mock(&["--error-rate", "1"]);
    let good = mock(&[]);
    let gw = traced_gateway(&failing, &good, &url, "100ms");
    let response = ask_with_parent(&gw, "01", "trace me").await;
    assert_eq!(response.status(), 200);
    let answer: serde_json::Value = response.json().await.unwrap();
    let spans = wait_for(&received, 3).await;
    assert_eq!(spans.len(), 3, "{spans:#?}");
    assert!(spans.iter().all(|(service, _)| service == "gw-under-test"));
    let spans: Vec<Span> = spans.into_iter().map(|(_, s)| s).collect();
    assert!(spans.iter().all(|s| hex(&s.trace_id) == TRACE_ID));

    let server = spans
        .iter()
        .find(|s| s.kind == span::SpanKind::Server as i32)
        .unwrap();
    assert_eq!(hex(&server.parent_span_id), PARENT_ID);
    assert_eq!(server.name, "chat m");
    let attrs = &server.attributes;
    assert_eq!(
        text(attrs, "gen_ai.operation.name").as_deref(),
        Some("chat")
    );
    assert_eq!(text(attrs, "gen_ai.request.model").as_deref(), Some("m"));
    assert_eq!(
        text(attrs, "gen_ai.response.model").as_deref(),
        Some("mock-2")
    );
    assert_eq!(text(attrs, "switchyard.key").as_deref(), Some("tracer"));
    assert_eq!(int(attrs, "http.response.status_code"), Some(200));
    assert_eq!(int(attrs, "switchyard.attempts"), Some(2));
    assert_eq!(
        int(attrs, "gen_ai.usage.input_tokens"),
        answer["usage"]["prompt_tokens"].as_i64()
    );
    assert_eq!(
        int(attrs, "gen_ai.usage.output_tokens"),
        answer["usage"]["completion_tokens"].as_i64()
    );
    assert!(text(attrs, "error.type").is_none());
    assert!(
        spans
            .iter()
            .flat_map(|s| &s.attributes)
            .all(|kv| !format!("{:?}", kv.value).contains("trace me")),
        "no prompt text in spans"
    );

    let mut clients: Vec<&Span> = spans
        .iter()
        .filter(|s| s.kind == span::SpanKind::Client as i32)
        .collect();
    clients.sort_by_key(|s| s.start_time_unix_nano);
    let [failed, served] = clients.as_slice() else {
        panic!("{clients:#?}")
    };
    for child in [failed, served] {
        assert_eq!(child.parent_span_id, server.span_id);
        assert!(child.start_time_unix_nano >= server.start_time_unix_nano);
        assert!(child.end_time_unix_nano <= server.end_time_unix_nano);
    }
    assert_eq!(failed.name, "chat mock-1");
    assert_eq!(
        text(&failed.attributes, "error.type").as_deref(),
        Some("server_error")
    );
    assert_eq!(
        failed.status.as_ref().map(|s| s.code),
        Some(opentelemetry_proto::tonic::trace::v1::status::StatusCode::Error as i32)
    );
    assert!(failed.end_time_unix_nano <= served.start_time_unix_nano);
    assert_eq!(served.name, "chat mock-2");
    assert_eq!(
        text(&served.attributes, "switchyard.deployment").as_deref(),
        Some("second/mock-2")
    );
    assert!(
        metrics(&gw)
            .await
            .contains("switchyard_trace_spans_exported_total 3")
    );
}

#[tokio::test]
async fn the_clients_sampling_decision_is_kept() {
    let (url, received) = collector().await;
    let good = mock(&[]);
    let gw = traced_gateway(&good, &good, &url, "100ms");
    let unsampled = ask_with_parent(&gw, "00", "no").await;
    assert_eq!(unsampled.status(), 200);
    let stream = post_stream_to(&gw, "m").await;
    assert_eq!(stream.status(), 200);
    stream.text().await.unwrap();
    let spans = wait_for(&received, 2).await;
    assert_eq!(spans.len(), 2, "only the sampled request: {spans:#?}");
    assert!(spans.iter().all(|(_, s)| hex(&s.trace_id) != TRACE_ID));
    let server = &spans
        .iter()
        .find(|(_, s)| s.kind == span::SpanKind::Server as i32)
        .unwrap()
        .1;
    assert!(server.parent_span_id.is_empty());
    assert_eq!(
        server
            .events
            .iter()
            .map(|e| e.name.as_str())
            .collect::<Vec<_>>(),
        ["gen_ai.first_token"]
    );
}

/// A streamed chat to `model` of `gw`.
async fn post_stream_to(gw: &Process, model: &str) -> reqwest::Response {
    client()
        .post(gw.url("/v1/chat/completions"))
        .bearer_auth(CLIENT_KEY)
        .json(&json!({ "model": model, "stream": true,
                       "messages": [{ "role": "user", "content": "stream" }] }))
        .send()
        .await
        .unwrap()
}

// Multi-threaded: the collector answers while the test waits for the exit.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn spans_queued_at_shutdown_reach_the_collector() {
    let (url, received) = collector().await;
    let good = mock(&[]);
    let mut gw = traced_gateway(&good, &good, &url, "1h");
    for _ in 0..3 {
        let response = post(
            &gw,
            "/v1/chat/completions",
            &json!({ "model": "m",
            "messages": [{ "role": "user", "content": "later" }] }),
        )
        .await;
        assert_eq!(response.status(), 200);
    }
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert!(
        received.lock().unwrap().is_empty(),
        "nothing before shutdown"
    );
    gw.terminate();
    assert!(gw.wait_exit(Duration::from_secs(10)).success());
    assert_eq!(wait_for(&received, 6).await.len(), 6);
}
