//! Client connections: an idle or stalled one is closed, a busy one is not.

use std::time::{Duration, Instant};

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use crate::harness::*;

/// Reads until the gateway closes the connection; how long that took.
async fn closed_within(tcp: &mut TcpStream, limit: Duration) -> Duration {
    let started = Instant::now();
    let mut buf = vec![0; 4096];
    loop {
        let read = tokio::time::timeout(limit, tcp.read(&mut buf))
            .await
            .expect("the connection is still open");
        if matches!(read, Ok(0) | Err(_)) {
            return started.elapsed();
        }
    }
}

/// One `GET /health` on a raw keep-alive connection.
async fn health_on(tcp: &mut TcpStream) {
    tcp.write_all(b"GET /health HTTP/1.1\r\nhost: gw\r\n\r\n")
        .await
        .unwrap();
    let mut buf = vec![0; 4096];
    let n = tokio::time::timeout(Duration::from_secs(2), tcp.read(&mut buf))
        .await
        .unwrap()
        .unwrap();
    assert!(buf[..n].starts_with(b"HTTP/1.1 200"));
}

fn gateway_idle_after(mock: &Process, idle: &str) -> Process {
    gateway(&config(
        &mock.url("/v1"),
        "connect: 1s",
        &format!("  idle_timeout: {idle}"),
    ))
}

#[tokio::test]
async fn an_idle_keep_alive_connection_is_closed() {
    let mock = mock(&[]);
    let gw = gateway_idle_after(&mock, "400ms");
    let mut tcp = TcpStream::connect(gw.addr).await.unwrap();
    health_on(&mut tcp).await;
    // Closed within 1¼ idle timeouts of the last request, not before one.
    let waited = closed_within(&mut tcp, Duration::from_secs(3)).await;
    assert!(
        waited >= Duration::from_millis(300),
        "closed after {waited:?}"
    );
}

#[tokio::test]
async fn a_client_too_slow_to_send_its_headers_is_cut_off() {
    let mock = mock(&[]);
    let gw = gateway_idle_after(&mock, "400ms");
    let partial = b"POST /v1/chat/completions HTTP/1.1\r\nhost: gw\r\n";
    // On a new connection.
    let mut tcp = TcpStream::connect(gw.addr).await.unwrap();
    tcp.write_all(partial).await.unwrap();
    closed_within(&mut tcp, Duration::from_secs(3)).await;
    // After a first request.
    let mut tcp = TcpStream::connect(gw.addr).await.unwrap();
    health_on(&mut tcp).await;
    tcp.write_all(partial).await.unwrap();
    closed_within(&mut tcp, Duration::from_secs(3)).await;
}

#[tokio::test]
async fn a_stream_longer_than_the_idle_timeout_is_not_cut() {
    // 12 words at 10 per second: over a second, three idle timeouts.
    let mock = mock(&["--tokens-per-second", "10", "--completion-tokens", "12"]);
    let gw = gateway_idle_after(&mock, "400ms");
    let response = post_stream(&gw, "slow").await;
    assert_eq!(response.status(), 200);
    let events = sse_data(&response.text().await.unwrap());
    assert_eq!(events.last().map(String::as_str), Some("[DONE]"));
    assert_eq!(stream_text(&events).split_whitespace().count(), 12);
}
