//! `/mock/*`, `/v1/models`, unknown routes and shutdown.

use std::time::{Duration, Instant};

use serde_json::{Value, json};
use switchyard_mock::MockOptions;

use crate::common::{chat, read_sse, start, streaming};

#[tokio::test]
async fn stats_count_every_request_but_the_mocks_own_and_reset_zeroes_them() {
    let mock = start(MockOptions::default()).await;
    assert_eq!(
        mock.post("/v1/chat/completions", &chat("x")).await.status(),
        200
    );
    assert_eq!(
        mock.post("/v1/chat/completions", &chat("y")).await.status(),
        200
    );
    assert_eq!(
        mock.post("/v1/embeddings", &json!({"model": "m"}))
            .await
            .status(),
        400
    );
    mock.get_json("/v1/models").await;
    let missing = mock
        .client
        .get(mock.url("/v2/nothing"))
        .send()
        .await
        .unwrap();
    assert_eq!(missing.status(), 404);
    let body: Value = missing.json().await.unwrap();
    assert_eq!(
        body,
        json!({"error": {"message": "Invalid URL (GET /v2/nothing)", "type": "invalid_request_error",
                         "param": null, "code": null}})
    );
    mock.get_json("/mock/requests").await;

    assert_eq!(
        mock.get_json("/mock/stats").await,
        json!({
            "requests": 5,
            "by_path": {
                "/v1/chat/completions": 2,
                "/v1/embeddings": 1,
                "/v1/models": 1,
                "/v2/nothing": 1,
            },
            "by_status": {"200": 3, "400": 1, "404": 1},
        })
    );

    let reset = mock
        .client
        .post(mock.url("/mock/reset"))
        .send()
        .await
        .unwrap();
    assert_eq!(reset.status(), 204);
    assert_eq!(
        mock.get_json("/mock/stats").await,
        json!({"requests": 0, "by_path": {}, "by_status": {}})
    );
    assert_eq!(mock.get_json("/mock/requests").await, json!([]));
}

#[tokio::test]
async fn the_request_log_shows_what_was_received() {
    let mock = start(MockOptions::default()).await;
    let body = json!({
        "model": "upstream-model",
        "messages": [{"role": "user", "content": "hi"}],
        "stream": true,
        "stream_options": {"include_usage": true},
        "vendor_extension": {"nested": [1, 2]},
    });
    let response = mock
        .client
        .post(mock.url("/v1/chat/completions"))
        .header("authorization", "Bearer sk-upstream")
        .header("X-Custom", "yes")
        .json(&body)
        .send()
        .await
        .unwrap();
    read_sse(response, Instant::now()).await;
    mock.client
        .post(mock.url("/v1/embeddings"))
        .body("not json")
        .send()
        .await
        .unwrap();

    let log = mock.get_json("/mock/requests").await;
    let log = log.as_array().unwrap();
    assert_eq!(log.len(), 2, "{log:#?}");
    let first = &log[0];
    assert_eq!(first["method"], "POST");
    assert_eq!(first["path"], "/v1/chat/completions");
    assert_eq!(first["body"], body);
    let headers = first["headers"].as_object().unwrap();
    assert_eq!(headers["authorization"], "Bearer sk-upstream");
    assert_eq!(headers["x-custom"], "yes");
    assert_eq!(headers["content-type"], "application/json");
    assert!(headers.keys().all(|k| k == &k.to_lowercase()));
    assert_eq!(log[1]["path"], "/v1/embeddings");
    assert_eq!(log[1]["body"], Value::Null);
}

#[tokio::test]
async fn the_request_log_keeps_the_last_hundred() {
    let mock = start(MockOptions::default()).await;
    for i in 0..105 {
        let mut request = chat("x");
        request["n"] = json!(i);
        mock.post("/v1/chat/completions", &request).await;
    }
    let log = mock.get_json("/mock/requests").await;
    let numbers: Vec<u64> = log
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["body"]["n"].as_u64().unwrap())
        .collect();
    assert_eq!(numbers, (5..105).collect::<Vec<u64>>());
}

#[tokio::test]
async fn models_are_listed() {
    let mock = start(MockOptions::default()).await;
    let models = mock.get_json("/v1/models").await;
    assert_eq!(models["object"], "list");
    let data = models["data"].as_array().unwrap();
    assert!(!data.is_empty());
    assert_eq!(
        data[0],
        json!({"id": "mock-1", "object": "model", "created": 0, "owned_by": "switchyard-mock"})
    );
    for model in data {
        assert_eq!(model["object"], "model");
        assert!(model["id"].is_string());
    }
}

#[tokio::test]
async fn serve_returns_after_shutdown() {
    let mock = start(MockOptions::default()).await;
    assert_eq!(
        mock.post("/v1/chat/completions", &chat("x")).await.status(),
        200
    );
    let stopped = Instant::now();
    mock.stop().await.unwrap();
    assert!(
        stopped.elapsed() < Duration::from_secs(2),
        "{:?}",
        stopped.elapsed()
    );
}

#[tokio::test]
async fn shutdown_does_not_wait_forever_on_a_slow_stream() {
    // 100 words at one per second: far longer than the shutdown grace.
    let mock = start(MockOptions {
        tokens_per_second: 1.0,
        completion_tokens: 100,
        ..MockOptions::default()
    })
    .await;
    let response = mock
        .post("/v1/chat/completions", &streaming(chat("slow"), json!({})))
        .await;
    assert_eq!(response.status(), 200);
    let reader = tokio::spawn(read_sse(response, Instant::now()));
    let stopped = Instant::now();
    mock.stop().await.unwrap();
    assert!(
        stopped.elapsed() < Duration::from_secs(8),
        "{:?}",
        stopped.elapsed()
    );
    // The stream was cut, not left running.
    let sse = tokio::time::timeout(Duration::from_secs(2), reader)
        .await
        .expect("the stream outlived the server")
        .unwrap();
    assert!(sse.error.is_some(), "{sse:?}");
    assert!(!sse.data().contains(&"[DONE]"));
    assert!(sse.events.len() < 10, "{sse:?}");
}
