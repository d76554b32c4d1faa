//! Hedging: a slow first deployment loses to a second one asked after the
//! model's `hedge.after`.

use std::time::{Duration, Instant};

use serde_json::{Value, json};

use crate::harness::*;

/// Model `m` on a slow mock (weight 1000: nearly always asked first) and a
/// fast one, hedged after 100 ms.
fn hedged_gateway(slow: &Process, fast: &Process) -> Process {
    hedged_after(slow, fast, "100ms")
}

fn hedged_after(slow: &Process, fast: &Process, after: &str) -> Process {
    gateway(&format!(
        "server:\n  listen: 127.0.0.1:0\nauth:\n  mode: keys\nkeys:\n  - key: {CLIENT_KEY}\nproviders:\n  slow: {{ kind: openai, base_url: {}, api_key: k }}\n  fast: {{ kind: openai, base_url: {}, api_key: k }}\nmodels:\n  m:\n    hedge: {{ after: {after} }}\n    deployments:\n      - {{ provider: slow, model: mock-1, weight: 1000 }}\n      - {{ provider: fast, model: mock-1, weight: 1 }}\n",
        slow.url("/v1"),
        fast.url("/v1")
    ))
}

fn ask(stream: bool) -> Value {
    json!({"model": "m", "stream": stream, "messages": [{"role": "user", "content": "hedge me"}]})
}

#[tokio::test]
async fn a_slow_deployment_is_overtaken_by_the_hedge() {
    let slow = mock(&["--latency", "3s"]);
    let fast = mock(&[]);
    let gw = hedged_gateway(&slow, &fast);
    let started = Instant::now();
    let response = post(&gw, "/v1/chat/completions", &ask(false)).await;
    assert_eq!(response.status(), 200);
    assert!(
        started.elapsed() < Duration::from_secs(2),
        "{:?}",
        started.elapsed()
    );
    assert_eq!(response.headers()["x-switchyard-provider"], "fast");
    assert_eq!(response.headers()["x-switchyard-attempts"], "2");
    assert_eq!(
        response.headers()["x-switchyard-route"],
        "slow/mock-1[weighted]=hedge_lost, fast/mock-1[hedge]=ok"
    );
    let body: Value = response.json().await.unwrap();
    assert!(
        body["choices"][0]["message"]["content"]
            .as_str()
            .unwrap()
            .starts_with("echo: hedge me")
    );
    let metrics = metrics(&gw).await;
    assert!(
        metrics.contains(r#"switchyard_hedges_total{model="m",outcome="sent"} 1"#),
        "{metrics}"
    );
    assert!(
        metrics.contains(r#"switchyard_hedges_total{model="m",outcome="won"} 1"#),
        "{metrics}"
    );
}

#[tokio::test]
async fn a_stream_slow_to_its_first_token_is_overtaken_too() {
    let slow = mock(&["--ttft", "3s"]);
    let fast = mock(&[]);
    let gw = hedged_gateway(&slow, &fast);
    let started = Instant::now();
    let response = post(&gw, "/v1/chat/completions", &ask(true)).await;
    assert_eq!(response.status(), 200);
    assert_eq!(response.headers()["x-switchyard-provider"], "fast");
    let text = stream_text(&sse_data(&response.text().await.unwrap()));
    assert!(text.starts_with("echo: hedge me"), "{text}");
    assert!(
        started.elapsed() < Duration::from_secs(2),
        "{:?}",
        started.elapsed()
    );
}

#[tokio::test]
async fn a_quick_answer_sends_no_hedge() {
    let slow = mock(&[]);
    let fast = mock(&[]);
    let gw = hedged_gateway(&slow, &fast);
    for _ in 0..5 {
        let response = post(&gw, "/v1/chat/completions", &ask(false)).await;
        assert_eq!(response.status(), 200);
        assert_eq!(response.headers()["x-switchyard-attempts"], "1");
    }
    assert_eq!(mock_requests(&fast).await + mock_requests(&slow).await, 5);
}

#[tokio::test]
async fn a_percentile_hedge_waits_the_deployments_own_p95() {
    let slow = mock(&["--latency", "40ms"]);
    let fast = mock(&[]);
    let gw = hedged_after(&slow, &fast, "p95");
    // Too few samples yet: no hedge, however long the answer takes.
    for _ in 0..25 {
        let response = post(&gw, "/v1/chat/completions", &ask(false)).await;
        assert_eq!(response.status(), 200);
    }
    // Now about 40 ms is its p95: an answer taking 3 s is hedged soon after.
    set_faults(&slow, json!({"latency_ms": 3000})).await;
    tokio::time::sleep(Duration::from_millis(1100)).await;
    let started = Instant::now();
    let response = post(&gw, "/v1/chat/completions", &ask(false)).await;
    assert_eq!(response.status(), 200);
    assert_eq!(response.headers()["x-switchyard-provider"], "fast");
    assert!(
        started.elapsed() < Duration::from_secs(1),
        "{:?}",
        started.elapsed()
    );
}
