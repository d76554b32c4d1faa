//! Shadow traffic: copies of a model's requests go to another model, whose
//! answers are measured and dropped.

use std::time::{Duration, Instant};

use serde_json::{Value, json};

use crate::harness::*;

/// Model `m` on `primary`, shadowed by model `candidate` on `shadow`.
fn shadowed_gateway(primary: &Process, shadow: &Process, shadow_extra: &str) -> Process {
    gateway(&format!(
        "server:\n  listen: 127.0.0.1:0\nauth:\n  mode: keys\nkeys:\n  - key: {CLIENT_KEY}\nproviders:\n  primary: {{ kind: openai, base_url: {}, api_key: k }}\n  shadow: {{ kind: openai, base_url: {}, api_key: k }}\nmodels:\n  m:\n    shadow: {{ model: candidate{shadow_extra} }}\n    deployments: [{{ provider: primary, model: mock-1 }}]\n  candidate:\n    deployments: [{{ provider: shadow, model: mock-2 }}]\n",
        primary.url("/v1"),
        shadow.url("/v1")
    ))
}

fn ask(i: usize) -> Value {
    json!({"model": "m", "messages": [{"role": "user", "content": format!("copy {i}")}]})
}

/// Waits until `/metrics` holds `needle`.
async fn wait_for_metric(gw: &Process, needle: &str) -> String {
    let start = Instant::now();
    loop {
        let text = metrics(gw).await;
        if text.contains(needle) {
            return text;
        }
        assert!(
            start.elapsed() < Duration::from_secs(10),
            "no {needle} in:\n{text}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test]
async fn every_request_is_copied_and_only_the_primary_answers() {
    let primary = mock(&[]);
    let shadow = mock(&[]);
    let gw = shadowed_gateway(&primary, &shadow, "");
    for i in 0..10 {
        let response = post(&gw, "/v1/chat/completions", &ask(i)).await;
        assert_eq!(response.status(), 200);
        assert_eq!(response.headers()["x-switchyard-provider"], "primary");
        assert_eq!(response.headers()["x-switchyard-attempts"], "1");
    }
    let text = wait_for_metric(
        &gw,
        r#"switchyard_shadow_requests_total{model="m",deployment="shadow/mock-2",outcome="ok"} 10"#,
    )
    .await;
    assert!(
        text.contains(
            r#"switchyard_shadow_duration_seconds_count{model="m",deployment="shadow/mock-2"} 10"#
        ),
        "{text}"
    );
    let copies = received(&shadow).await;
    assert_eq!(copies.len(), 10);
    assert_eq!(copies[0]["body"]["model"], "mock-2");
}

#[tokio::test]
async fn a_failing_shadow_is_counted_and_never_seen() {
    let primary = mock(&[]);
    let shadow = mock(&["--error-rate", "1", "--error-status", "500"]);
    let gw = shadowed_gateway(&primary, &shadow, "");
    for i in 0..5 {
        let response = post(&gw, "/v1/chat/completions", &ask(i)).await;
        assert_eq!(response.status(), 200);
        assert_eq!(response.headers()["x-switchyard-provider"], "primary");
    }
    wait_for_metric(
        &gw,
        r#"switchyard_shadow_requests_total{model="m",deployment="shadow/mock-2",outcome="error"} 5"#,
    )
    .await;
    // The shadow's failures do not open its breaker for its own traffic.
    let own = client()
        .post(gw.url("/v1/chat/completions"))
        .bearer_auth(CLIENT_KEY)
        .json(&json!({"model": "candidate", "messages": [{"role": "user", "content": "x"}]}))
        .send()
        .await
        .unwrap();
    assert_eq!(own.headers()["x-switchyard-attempts"], "3");
}

#[tokio::test]
async fn copies_beyond_max_in_flight_are_skipped_and_a_share_is_copied() {
    let primary = mock(&[]);
    let shadow = mock(&["--latency", "2s"]);
    let gw = shadowed_gateway(&primary, &shadow, ", max_in_flight: 2");
    for i in 0..8 {
        assert_eq!(
            post(&gw, "/v1/chat/completions", &ask(i)).await.status(),
            200
        );
    }
    wait_for_metric(&gw, r#"switchyard_shadow_skipped_total{model="m"} 6"#).await;

    let primary = mock(&[]);
    let shadow = mock(&[]);
    let gw = shadowed_gateway(&primary, &shadow, ", percent: 25");
    for i in 0..200 {
        assert_eq!(
            post(&gw, "/v1/chat/completions", &ask(i)).await.status(),
            200
        );
    }
    tokio::time::sleep(Duration::from_millis(200)).await;
    let copied = mock_requests(&shadow).await;
    assert!((25..=80).contains(&copied), "{copied} of 200 copied at 25%");
}
