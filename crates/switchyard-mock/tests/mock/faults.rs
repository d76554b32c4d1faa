//! Injected faults: failures, latency, pacing, cut streams, in-band stream errors.

use std::time::{Duration, Instant};

use serde_json::{Value, json};
use switchyard_mock::MockOptions;

use crate::common::{Mock, chat, start, streaming};

const CHAT: &str = "/v1/chat/completions";

#[tokio::test]
async fn error_rate_one_fails_every_v1_route_with_429_and_retry_after() {
    let mock = start(MockOptions {
        error_rate: 1.0,
        error_status: 429,
        retry_after: Some(7),
        ..MockOptions::default()
    })
    .await;
    let requests = [
        mock.client.post(mock.url(CHAT)).json(&chat("x")),
        mock.client
            .post(mock.url(CHAT))
            .json(&streaming(chat("x"), json!({}))),
        mock.client
            .post(mock.url("/v1/completions"))
            .json(&json!({"model": "m", "prompt": "x"})),
        mock.client
            .post(mock.url("/v1/embeddings"))
            .json(&json!({"model": "m", "input": "x"})),
        mock.client.get(mock.url("/v1/models")),
    ];
    for request in requests {
        let response = request.send().await.unwrap();
        assert_eq!(response.status(), 429);
        assert_eq!(response.headers()["retry-after"], "7");
        assert_eq!(response.headers()["content-type"], "application/json");
        let body: Value = response.json().await.unwrap();
        assert_eq!(
            body,
            json!({"error": {
                "message": "mock injected failure (429)",
                "type": "rate_limit_error",
                "param": null,
                "code": "rate_limit_exceeded",
            }})
        );
    }
    // The mock's own routes are not failed, and the failures are counted.
    let stats = mock.get_json("/mock/stats").await;
    assert_eq!(stats["requests"], 5);
    assert_eq!(stats["by_status"], json!({"429": 5}));
}

#[tokio::test]
async fn server_errors_have_no_retry_after() {
    let mock = start(MockOptions {
        error_rate: 1.0,
        error_status: 503,
        retry_after: Some(7),
        ..MockOptions::default()
    })
    .await;
    let response = mock.post(CHAT, &chat("x")).await;
    assert_eq!(response.status(), 503);
    assert!(response.headers().get("retry-after").is_none());
    let body: Value = response.json().await.unwrap();
    assert_eq!(body["error"]["type"], "server_error");
}

async fn statuses(mock: &Mock, n: usize) -> Vec<u16> {
    let mut statuses = Vec::new();
    for _ in 0..n {
        statuses.push(mock.post(CHAT, &chat("x")).await.status().as_u16());
    }
    statuses
}

#[tokio::test]
async fn decisions_follow_the_seed_and_the_request_order() {
    let options = |seed| MockOptions {
        error_rate: 0.5,
        seed,
        ..MockOptions::default()
    };
    let a = start(options(7)).await;
    let b = start(options(7)).await;
    let other = start(options(8)).await;
    let first = statuses(&a, 40).await;
    assert!(first.contains(&200) && first.contains(&500), "{first:?}");
    assert_eq!(statuses(&b, 40).await, first);
    assert_ne!(statuses(&other, 40).await, first);
    // A reset restarts the sequence.
    let reset = a.client.post(a.url("/mock/reset")).send().await.unwrap();
    assert_eq!(reset.status(), 204);
    assert_eq!(statuses(&a, 40).await, first);
}

#[tokio::test]
async fn latency_delays_the_headers() {
    let mock = start(MockOptions {
        latency: Duration::from_millis(300),
        ..MockOptions::default()
    })
    .await;
    let sent = Instant::now();
    let response = mock.post(CHAT, &chat("x")).await;
    assert_eq!(response.status(), 200);
    assert!(
        sent.elapsed() >= Duration::from_millis(300),
        "{:?}",
        sent.elapsed()
    );
    // Not the mock's own routes.
    let sent = Instant::now();
    mock.get_json("/mock/stats").await;
    assert!(sent.elapsed() < Duration::from_millis(300));
}

#[tokio::test]
async fn ttft_and_pace_shape_the_stream_and_chunks_flow_as_produced() {
    let mock = start(MockOptions {
        ttft: Duration::from_millis(300),
        tokens_per_second: 5.0,
        completion_tokens: 4,
        ..MockOptions::default()
    })
    .await;
    let sse = mock.post_sse(CHAT, &streaming(chat("go"), json!({}))).await;
    assert_eq!(sse.data().last(), Some(&"[DONE]"));
    // role, 4 words, finish, [DONE]
    assert_eq!(sse.events.len(), 7);
    let first_word = sse.events[1].1;
    let last_word = sse.events[4].1;
    assert!(first_word >= Duration::from_millis(300), "{first_word:?}");
    assert!(
        last_word >= Duration::from_millis(300 + 3 * 200),
        "{last_word:?}"
    );
    // The first word was not held back until the stream was done.
    assert!(
        last_word - first_word >= Duration::from_millis(300),
        "{first_word:?} {last_word:?}"
    );
}

#[tokio::test]
async fn unpaced_streams_are_not_stalled_by_delayed_acks() {
    let mock = start(MockOptions::default()).await;
    let request = streaming(chat("quick"), json!({}));
    let mut totals = Vec::new();
    // One keep-alive connection: without TCP_NODELAY on the mock's side, a stream's
    // small writes wait for the client's delayed ACK (about 40 ms each stream).
    for _ in 0..11 {
        let sse = mock.post_sse(CHAT, &request).await;
        assert_eq!(sse.data().last(), Some(&"[DONE]"));
        totals.push(sse.events.last().unwrap().1);
    }
    totals.sort();
    assert!(totals[5] < Duration::from_millis(20), "{totals:?}");
}

#[tokio::test]
async fn cut_streams_end_with_an_error_and_no_done() {
    let mock = start(MockOptions {
        stream_cut_rate: 1.0,
        ..MockOptions::default()
    })
    .await;
    let sse = mock
        .post_sse(
            CHAT,
            &streaming(
                chat("cut me"),
                json!({"stream_options": {"include_usage": true}}),
            ),
        )
        .await;
    assert!(sse.error.is_some(), "the body ended cleanly: {sse:?}");
    assert!(!sse.data().contains(&"[DONE]"));
    let chunks = sse.json();
    // The role chunk and half of the 16 words; no finish, no usage.
    assert_eq!(chunks.len(), 9, "{chunks:#?}");
    assert!(
        chunks
            .iter()
            .all(|c| c["choices"][0]["finish_reason"] == Value::Null)
    );

    // Legacy completions are cut too; whole responses are not.
    let sse = mock
        .post_sse(
            "/v1/completions",
            &json!({"model": "m", "prompt": "x", "stream": true}),
        )
        .await;
    assert!(sse.error.is_some());
    assert_eq!(sse.events.len(), 8);
    let (status, body) = mock.post_json(CHAT, &chat("whole")).await;
    assert_eq!(status, 200);
    assert_eq!(body["choices"][0]["finish_reason"], "stop");
}

#[tokio::test]
async fn in_band_errors_follow_the_first_word_and_end_the_stream() {
    let mock = start(MockOptions {
        stream_error_rate: 1.0,
        ..MockOptions::default()
    })
    .await;
    let sse = mock
        .post_sse(CHAT, &streaming(chat("fail me"), json!({})))
        .await;
    assert_eq!(sse.error, None, "an in-band error is a clean end");
    let data = sse.data();
    assert_eq!(data.len(), 3, "{data:#?}");
    let first: Value = serde_json::from_str(data[1]).unwrap();
    assert_eq!(first["choices"][0]["delta"]["content"], "echo:");
    assert_eq!(
        data[2],
        r#"{"error":{"message":"mock in-band failure","type":"server_error","code":null,"param":null}}"#
    );
    let stats = mock.get_json("/mock/stats").await;
    assert_eq!(stats["by_status"], json!({"200": 1}));
}

#[tokio::test]
async fn in_band_errors_can_come_before_any_content() {
    let mock = start(MockOptions {
        stream_error_rate: 1.0,
        stream_error_after: 0,
        ..MockOptions::default()
    })
    .await;
    let sse = mock
        .post_sse(CHAT, &streaming(chat("fail me"), json!({})))
        .await;
    let data = sse.data();
    assert_eq!(data.len(), 2, "the role chunk, then the error: {data:#?}");
    assert!(data[1].starts_with(r#"{"error":"#), "{}", data[1]);
}

/// `POST /mock/faults` with `knobs`.
async fn set_knobs(mock: &Mock, knobs: Value) -> reqwest::Response {
    mock.client
        .post(mock.url("/mock/faults"))
        .json(&knobs)
        .send()
        .await
        .unwrap()
}

#[tokio::test]
async fn mock_faults_change_the_knobs_for_the_next_requests() {
    let mock = start(MockOptions::default()).await;
    let set = |knobs: Value| set_knobs(&mock, knobs);
    let answer: Value = set(json!({"error_rate": 1.0, "error_status": 503}))
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(
        answer,
        json!({
            "error_rate": 1.0,
            "error_status": 503,
            "latency_ms": 0,
            "ttft_ms": 0,
            "stream_fault": {"kind": "none"}
        })
    );
    let chat_status = mock.client.post(mock.url(CHAT)).json(&chat("x")).send();
    assert_eq!(chat_status.await.unwrap().status(), 503);
    let models = mock
        .client
        .get(mock.url("/v1/models"))
        .send()
        .await
        .unwrap();
    assert_eq!(models.status(), 503);

    set(json!({"error_rate": 0, "latency_ms": 300, "ttft_ms": 200})).await;
    let start = Instant::now();
    let response = mock
        .client
        .post(mock.url(CHAT))
        .json(&streaming(chat("x"), json!({})))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    response.text().await.unwrap();
    assert!(
        start.elapsed() >= Duration::from_millis(500),
        "{:?}",
        start.elapsed()
    );

    let refused = set(json!({"error_rate": 2})).await;
    assert_eq!(refused.status(), 400);
    let unknown = set(json!({"latency": 2})).await;
    assert_eq!(unknown.status(), 400);
    let unknown_fault = set(json!({"stream_fault": {"kind": "explode"}}));
    assert_eq!(unknown_fault.await.status(), 400);
}

#[tokio::test]
async fn a_stream_fault_applies_to_every_stream_until_cleared() {
    let mock = start(MockOptions::default()).await;
    let set = |fault: Value| set_knobs(&mock, json!({ "stream_fault": fault }));
    let answer: Value = set(json!({"kind": "in_band_error", "after": 2}))
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(
        answer["stream_fault"],
        json!({"kind": "in_band_error", "after": 2})
    );
    for _ in 0..2 {
        let sse = mock
            .post_sse(CHAT, &streaming(chat("fail me"), json!({})))
            .await;
        let data = sse.data();
        assert_eq!(
            data.len(),
            4,
            "the role chunk, two contents, the error: {data:#?}"
        );
        assert!(data[3].starts_with(r#"{"error":"#), "{}", data[3]);
    }
    set(json!({"kind": "none"})).await;
    let sse = mock
        .post_sse(CHAT, &streaming(chat("whole"), json!({})))
        .await;
    assert_eq!(sse.data().last().copied(), Some("[DONE]"));
}
