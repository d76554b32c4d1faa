//! SIGTERM: stop accepting, finish what is in flight, exit 0.

use std::time::Duration;

use futures_util::StreamExt;
use serde_json::json;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use crate::harness::*;

/// A streamed request (200), its first chunk read: the rest, and that chunk.
async fn slow_stream_begun(
    gw: &Process,
) -> (
    impl futures_util::Stream<Item = reqwest::Result<bytes::Bytes>> + Unpin + use<>,
    String,
) {
    let response = post_stream(gw, "slow").await;
    assert_eq!(response.status(), 200);
    let mut stream = response.bytes_stream();
    let body = String::from_utf8(stream.next().await.unwrap().unwrap().to_vec()).unwrap();
    (stream, body)
}

#[tokio::test]
async fn sigterm_lets_a_slow_stream_finish_and_exits_zero() {
    // 20 words at 10 per second: about two seconds of streaming.
    let mock = mock(&["--tokens-per-second", "10", "--completion-tokens", "20"]);
    let mut gw = gateway_for(&mock);
    let (mut stream, mut body) = slow_stream_begun(&gw).await;
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

/// `GET path` on a raw keep-alive connection; what came back within 2 s
/// (until `until` is in it).
async fn get_on(tcp: &mut TcpStream, path: &str, until: &str) -> String {
    tcp.write_all(format!("GET {path} HTTP/1.1\r\nhost: gw\r\n\r\n").as_bytes())
        .await
        .unwrap();
    let mut answer = Vec::new();
    let mut buf = vec![0; 4096];
    let deadline = tokio::time::Instant::now() + Duration::from_secs(2);
    while !String::from_utf8_lossy(&answer).contains(until) {
        let read = tokio::time::timeout_at(deadline, tcp.read(&mut buf)).await;
        match read {
            Ok(Ok(n)) if n > 0 => answer.extend_from_slice(&buf[..n]),
            _ => break,
        }
    }
    String::from_utf8_lossy(&answer).into_owned()
}

#[tokio::test]
async fn ready_answers_503_on_an_open_connection_during_the_drain() {
    // shutdown_delay at its default of 0: the listener closes at once.
    let mock = mock(&["--tokens-per-second", "10", "--completion-tokens", "20"]);
    let mut gw = gateway_for(&mock);
    // A load balancer's keep-alive connection, idle when the drain begins.
    let mut prober = TcpStream::connect(gw.addr).await.unwrap();
    let answer = get_on(&mut prober, "/health", "\"ok\"").await;
    assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");
    // A stream keeps the drain going for about two seconds.
    let (mut stream, mut body) = slow_stream_begun(&gw).await;
    gw.terminate();
    tokio::time::sleep(Duration::from_millis(300)).await;
    let refused = client().get(gw.url("/ready")).send().await;
    assert!(refused.is_err(), "still accepting after SIGTERM");
    // The open connection is answered, and closed after the answer.
    let answer = get_on(&mut prober, "/ready", "shutting_down").await;
    assert!(answer.starts_with("HTTP/1.1 503"), "{answer}");
    let mut rest = Vec::new();
    let closed = tokio::time::timeout(Duration::from_secs(2), prober.read_to_end(&mut rest)).await;
    assert!(closed.is_ok(), "the prober's connection is still open");
    while let Some(chunk) = stream.next().await {
        body.push_str(std::str::from_utf8(&chunk.unwrap()).unwrap());
    }
    assert_eq!(sse_data(&body).last().unwrap(), "[DONE]", "{body}");
    assert_eq!(gw.wait_exit(Duration::from_secs(10)).code(), Some(0));
}
