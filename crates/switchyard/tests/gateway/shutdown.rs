//! SIGTERM: stop accepting, finish what is in flight, exit 0.

use std::time::Duration;

use futures_util::StreamExt;
use serde_json::json;

use crate::harness::*;

#[tokio::test]
async fn sigterm_lets_a_slow_stream_finish_and_exits_zero() {
    // 20 words at 10 per second: about two seconds of streaming.
    let mock = mock(&["--tokens-per-second", "10", "--completion-tokens", "20"]);
    let mut gw = gateway_for(&mock);
    let response = post_stream(&gw, "slow").await;
    assert_eq!(response.status(), 200);
    let mut stream = response.bytes_stream();
    let mut body = String::from_utf8(stream.next().await.unwrap().unwrap().to_vec()).unwrap();
    gw.terminate();
    // New connections are refused once shutdown begins.
    tokio::time::sleep(Duration::from_millis(300)).await;
    let refused = client().get(gw.url("/health")).send().await;
    assert!(refused.is_err(), "still accepting after SIGTERM");
    while let Some(chunk) = stream.next().await {
        body.push_str(std::str::from_utf8(&chunk.unwrap()).unwrap());
    }
    let events = sse_data(&body);
    assert_eq!(events.last().unwrap(), "[DONE]", "{body}");
    assert_eq!(stream_text(&events).split_whitespace().count(), 20);
    let status = gw.wait_exit(Duration::from_secs(10));
    assert_eq!(status.code(), Some(0), "{}", gw.logs());
    gw.wait_for_log(&["shutdown complete"]);
}

#[tokio::test]
async fn the_grace_period_bounds_the_drain() {
    let mock = mock(&["--tokens-per-second", "2", "--completion-tokens", "40"]);
    let mut gw = gateway(
        &config(&mock.url("/v1"), "connect: 1s", "")
            .replace("shutdown_grace: 10s", "shutdown_grace: 500ms"),
    );
    let response = post_stream(&gw, "slow").await;
    let mut stream = response.bytes_stream();
    let mut body = String::from_utf8(stream.next().await.unwrap().unwrap().to_vec()).unwrap();
    gw.terminate();
    let started = std::time::Instant::now();
    while let Some(Ok(chunk)) = stream.next().await {
        body.push_str(&String::from_utf8_lossy(&chunk));
    }
    // The cut stream says why it ends.
    let events = sse_data(&body);
    assert!(!events.iter().any(|e| e == "[DONE]"), "{body}");
    let last: serde_json::Value = serde_json::from_str(events.last().unwrap()).unwrap();
    assert_eq!(last["error"]["code"], "service_unavailable", "{body}");
    let status = gw.wait_exit(Duration::from_secs(10));
    assert!(started.elapsed() < Duration::from_secs(5));
    assert_eq!(status.code(), Some(0));
    gw.wait_for_log(&["grace period over"]);
    gw.wait_for_log(&["outcome=\"shutting_down\""]);
}

#[tokio::test]
async fn ready_turns_503_while_the_listener_still_serves() {
    let mock = mock(&[]);
    let mut gw = gateway(&config(
        &mock.url("/v1"),
        "connect: 1s",
        "  shutdown_delay: 1s",
    ));
    assert_eq!(
        client()
            .get(gw.url("/ready"))
            .send()
            .await
            .unwrap()
            .status(),
        200
    );
    gw.terminate();
    let started = std::time::Instant::now();
    let mut saw_503 = false;
    while started.elapsed() < Duration::from_millis(800) {
        let ready = client().get(gw.url("/ready")).send().await.unwrap();
        if ready.status() == 503 {
            saw_503 = true;
            // Still serving traffic meanwhile.
            let chat = post(&gw, "/v1/chat/completions", &chat("still here", json!({}))).await;
            assert_eq!(chat.status(), 200);
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert!(saw_503, "/ready never answered 503 during shutdown_delay");
    assert_eq!(gw.wait_exit(Duration::from_secs(10)).code(), Some(0));
}
