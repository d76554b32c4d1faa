//! Server-sent event streams: equal text, usage, and how every stream ends.

use std::time::Duration;

use serde_json::{Value, json};

use crate::harness::*;

async fn stream_body(gw: &Process, body: &Value) -> (reqwest::StatusCode, String) {
    let response = post(gw, "/v1/chat/completions", body).await;
    let status = response.status();
    assert_eq!(response.headers()["content-type"], "text/event-stream");
    (status, response.text().await.unwrap())
}

#[tokio::test]
async fn streamed_text_equals_the_json_text() {
    let mock = mock(&[]);
    let gw = gateway_for(&mock);
    let json_body: Value = post(&gw, "/v1/chat/completions", &chat("same words", json!({})))
        .await
        .json()
        .await
        .unwrap();
    let (status, body) = stream_body(&gw, &chat("same words", json!({"stream": true}))).await;
    assert_eq!(status, 200);
    let events = sse_data(&body);
    assert_eq!(
        stream_text(&events),
        json_body["choices"][0]["message"]["content"]
            .as_str()
            .unwrap()
    );
    assert_eq!(events.last().unwrap(), "[DONE]");
    let finish: Vec<&String> = events
        .iter()
        .filter(|e| e.contains("\"finish_reason\":\"stop\""))
        .collect();
    assert_eq!(finish.len(), 1);
}

#[tokio::test]
async fn usage_is_asked_upstream_but_only_shown_when_the_client_asked() {
    let mock = mock(&[]);
    let gw = gateway_for(&mock);
    let (_, body) = stream_body(&gw, &chat("count me", json!({"stream": true}))).await;
    let events = sse_data(&body);
    for event in events.iter().filter(|e| *e != "[DONE]") {
        let chunk: Value = serde_json::from_str(event).unwrap();
        assert!(
            chunk["usage"].is_null(),
            "usage reached a client that did not ask: {event}"
        );
        assert!(
            !chunk["choices"].as_array().unwrap().is_empty(),
            "a usage-only chunk reached the client"
        );
    }
    let seen = received(&mock).await;
    assert_eq!(
        seen[0]["body"]["stream_options"],
        json!({"include_usage": true})
    );
    gw.wait_for_log(&["completion_tokens=16"]);

    let (_, body) = stream_body(
        &gw,
        &chat(
            "count me",
            json!({"stream": true, "stream_options": {"include_usage": true}}),
        ),
    )
    .await;
    let events = sse_data(&body);
    assert_eq!(events.last().unwrap(), "[DONE]");
    let usage: Value = serde_json::from_str(&events[events.len() - 2]).unwrap();
    assert_eq!(usage["choices"], json!([]));
    assert_eq!(usage["usage"]["prompt_tokens"], 4);
    assert_eq!(usage["usage"]["completion_tokens"], 16);
}

#[tokio::test]
async fn tool_calls_stream_through() {
    let mock = mock(&[]);
    let gw = gateway_for(&mock);
    let tools = json!([{"type": "function", "function": {"name": "lookup", "parameters": {"type": "object"}}}]);
    let (_, body) = stream_body(
        &gw,
        &chat("find it", json!({"stream": true, "tools": tools})),
    )
    .await;
    let events = sse_data(&body);
    let arguments: String = events
        .iter()
        .filter(|d| *d != "[DONE]")
        .map(|d| serde_json::from_str::<Value>(d).unwrap())
        .filter_map(|v| {
            v["choices"][0]["delta"]["tool_calls"][0]["function"]["arguments"]
                .as_str()
                .map(str::to_owned)
        })
        .collect();
    assert_eq!(
        serde_json::from_str::<Value>(&arguments).unwrap(),
        json!({"echo": "find it"})
    );
    assert!(body.contains("\"finish_reason\":\"tool_calls\""));
    assert_eq!(events.last().unwrap(), "[DONE]");
}

#[tokio::test]
async fn completions_stream_too() {
    let mock = mock(&[]);
    let gw = gateway_for(&mock);
    let response = post(
        &gw,
        "/v1/completions",
        &json!({"model": "gpt-4.1", "prompt": "go", "stream": true}),
    )
    .await;
    let events = sse_data(&response.text().await.unwrap());
    let text: String = events
        .iter()
        .filter(|d| *d != "[DONE]")
        .filter_map(|d| serde_json::from_str::<Value>(d).ok())
        .filter_map(|v| v["choices"][0]["text"].as_str().map(str::to_owned))
        .collect();
    assert!(text.starts_with("echo: go "), "{text}");
    assert_eq!(events.last().unwrap(), "[DONE]");
}

/// The error event that ends a failed stream, checked to carry no `[DONE]`.
fn final_error(body: &str) -> Value {
    let events = sse_data(body);
    assert!(
        !events.iter().any(|e| e == "[DONE]"),
        "[DONE] after a failure: {body}"
    );
    let last: Value = serde_json::from_str(events.last().unwrap()).unwrap();
    assert!(
        last["error"]["message"].is_string(),
        "not an error event: {last}"
    );
    last
}

#[tokio::test]
async fn a_stream_cut_by_the_upstream_ends_with_an_error_event() {
    let mock = mock(&["--stream-cut-rate", "1"]);
    let gw = gateway_for(&mock);
    let (status, body) = stream_body(&gw, &chat("cut me", json!({"stream": true}))).await;
    assert_eq!(status, 200);
    let error = final_error(&body);
    assert_eq!(error["error"]["code"], "upstream_error");
    assert!(
        !stream_text(&sse_data(&body)).is_empty(),
        "the content before the cut is kept"
    );
}

#[tokio::test]
async fn an_in_band_upstream_error_is_an_error_not_content() {
    let mock = mock(&["--stream-error-rate", "1"]);
    let gw = gateway_for(&mock);
    let (_, body) = stream_body(&gw, &chat("fail inside", json!({"stream": true}))).await;
    let error = final_error(&body);
    assert_eq!(error["error"]["message"], "mock in-band failure");
    gw.wait_for_log(&["upstream_in_band_error"]);
}

#[tokio::test]
async fn an_upstream_silent_past_the_idle_timeout_ends_with_an_error_event() {
    // The first content comes at once, the next after 500 ms: past the 300 ms idle timeout.
    let mock = mock(&["--ttft", "0s", "--tokens-per-second", "2"]);
    let gw = gateway(&config(&mock.url("/v1"), "idle: 300ms", ""));
    let (body, error) = stream_ending_within(&gw, "wait", Duration::from_secs(2)).await;
    assert!(body.contains("\"content\":\"echo"), "{body}");
    assert_eq!(error["error"]["code"], "upstream_timeout");
    assert!(error["error"]["message"].as_str().unwrap().contains("idle"));
}

#[tokio::test]
async fn an_upstream_silent_before_its_first_content_fails_the_attempt() {
    // Nothing is committed to the client before content: each attempt times out
    // unseen, and the client gets the last one's error as the answer.
    let mock = mock(&["--ttft", "3s"]);
    let gw = gateway(&config(&mock.url("/v1"), "idle: 300ms", ""));
    let started = std::time::Instant::now();
    let response = post_stream(&gw, "wait").await;
    assert!(
        started.elapsed() < Duration::from_secs(2),
        "{:?}",
        started.elapsed()
    );
    assert_eq!(response.status(), 504);
    assert_eq!(response.headers()["x-switchyard-attempts"], "3");
    let error: Value = response.json().await.unwrap();
    assert_eq!(error["error"]["code"], "upstream_timeout");
    assert!(error["error"]["message"].as_str().unwrap().contains("idle"));
}

#[tokio::test]
async fn a_stream_still_flowing_at_the_total_timeout_ends_with_an_error_event() {
    // 16 tokens at 20 per second: tokens keep coming for 800 ms, past the 300 ms total.
    let mock = mock(&["--ttft", "0s", "--tokens-per-second", "20"]);
    let gw = gateway(&config(&mock.url("/v1"), "idle: 5s, total: 300ms", ""));
    let (body, error) = stream_ending_within(&gw, "flowing", Duration::from_millis(700)).await;
    assert!(
        body.contains("\"content\""),
        "some content came first: {body}"
    );
    assert_eq!(error["error"]["code"], "upstream_timeout");
    assert!(
        error["error"]["message"]
            .as_str()
            .unwrap()
            .contains("total")
    );
}

/// Streams a chat for `prompt`, checks the stream ended within `limit`, and
/// returns the body with its final error event.
async fn stream_ending_within(gw: &Process, prompt: &str, limit: Duration) -> (String, Value) {
    let started = std::time::Instant::now();
    let (_, body) = stream_body(gw, &chat(prompt, json!({"stream": true}))).await;
    assert!(started.elapsed() < limit, "{:?}", started.elapsed());
    let error = final_error(&body);
    (body, error)
}
