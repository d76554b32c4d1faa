//! Client connections: an idle or stalled one is closed, a busy one is not.

use std::time::{Duration, Instant};

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use crate::harness::*;

/// On a blocking socket, writes `burst` at once, then `trickled` one byte
/// `every` apart, until the gateway answers or closes the connection, or
/// `limit` has passed; how long the connection was watched (`None`: still
/// open and silent at `limit`) and the answer's first bytes.
fn trickle(
    addr: std::net::SocketAddr,
    burst: &[u8],
    trickled: &[u8],
    every: Duration,
    limit: Duration,
) -> (Option<Duration>, String) {
    use std::io::{ErrorKind, Read, Write};
    let mut tcp = std::net::TcpStream::connect(addr).unwrap();
    tcp.set_read_timeout(Some(every)).unwrap();
    let started = Instant::now();
    tcp.write_all(burst).unwrap();
    let mut buf = [0; 4096];
    let mut next = trickled.iter();
    while started.elapsed() < limit {
        if let Some(byte) = next.next()
            && tcp.write_all(&[*byte]).is_err()
        {
            return (Some(started.elapsed()), String::new());
        }
        match tcp.read(&mut buf) {
            Ok(n) => {
                let answer = String::from_utf8_lossy(&buf[..n]).into_owned();
                return (Some(started.elapsed()), answer);
            }
            Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => {}
            Err(_) => return (Some(started.elapsed()), String::new()),
        }
    }
    (None, String::new())
}

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

/// A gateway in front of `mock` with `server.<key>: <value>`.
fn gateway_with(mock: &Process, key: &str, value: &str) -> Process {
    gateway(&config(
        &mock.url("/v1"),
        "connect: 1s",
        &format!("  {key}: {value}"),
    ))
}

fn gateway_idle_after(mock: &Process, idle: &str) -> Process {
    gateway_with(mock, "idle_timeout", idle)
}

/// The head of a chat request, with `extra` header lines.
fn chat_head(extra: &str) -> String {
    format!(
        "POST /v1/chat/completions HTTP/1.1\r\nhost: gw\r\nauthorization: Bearer {CLIENT_KEY}\r\ncontent-type: application/json\r\n{extra}\r\n"
    )
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

#[tokio::test]
async fn a_request_head_trickled_slower_than_the_header_read_timeout_is_cut_off() {
    let mock = mock(&[]);
    let gw = gateway_with(&mock, "header_read_timeout", "1s");
    let addr = gw.addr;
    // One byte every 200 ms: the head would take over 20 s.
    let head = chat_head("");
    let slow = tokio::task::spawn_blocking(move || {
        trickle(
            addr,
            b"",
            head.as_bytes(),
            Duration::from_millis(200),
            Duration::from_secs(5),
        )
    });
    // Meanwhile another connection is served as usual.
    let chat = post(
        &gw,
        "/v1/chat/completions",
        &chat("hello", serde_json::json!({})),
    )
    .await;
    assert_eq!(chat.status(), 200);
    let (open_for, answer) = slow.await.unwrap();
    let open_for = open_for.expect("the trickling connection is still open after 5 s");
    assert!(
        open_for >= Duration::from_millis(800) && open_for < Duration::from_millis(2500),
        "closed after {open_for:?}"
    );
    assert_eq!(answer, "", "nothing is answered to a head never finished");
}

#[tokio::test]
async fn a_body_trickled_slower_than_the_body_timeout_gets_408() {
    let mock = mock(&[]);
    let gw = gateway_with(&mock, "body_timeout", "1s");
    let addr = gw.addr;
    let head = chat_head("content-length: 100\r\n");
    let answered = tokio::task::spawn_blocking(move || {
        // The head at once, then a byte every 100 ms: steady, but the whole
        // body would take 10 s.
        trickle(
            addr,
            head.as_bytes(),
            &[b' '; 100],
            Duration::from_millis(100),
            Duration::from_secs(5),
        )
    });
    let (answered_after, answer) = answered.await.unwrap();
    assert!(answer.starts_with("HTTP/1.1 408"), "{answer}");
    let answered_after = answered_after.unwrap();
    assert!(
        answered_after < Duration::from_millis(2500),
        "answered after {answered_after:?}"
    );
}

#[tokio::test]
async fn a_client_speaking_http2_with_prior_knowledge_is_served() {
    let mock = mock(&[]);
    let gw = gateway_for(&mock);
    let h2 = reqwest::Client::builder()
        .http2_prior_knowledge()
        .timeout(Duration::from_secs(5))
        .build()
        .unwrap();
    let response = h2
        .post(gw.url("/v1/chat/completions"))
        .bearer_auth(CLIENT_KEY)
        .json(&chat("hello", serde_json::json!({})))
        .send()
        .await
        .unwrap();
    assert_eq!(response.version(), reqwest::Version::HTTP_2);
    assert_eq!(response.status(), 200);
    // HTTP/1.1 on the same server is served as before.
    let response = post(
        &gw,
        "/v1/chat/completions",
        &chat("hi", serde_json::json!({})),
    )
    .await;
    assert_eq!(response.version(), reqwest::Version::HTTP_11);
    assert_eq!(response.status(), 200);
}

#[tokio::test]
async fn an_http2_preface_sent_in_two_parts_is_still_http2() {
    let mock = mock(&[]);
    let gw = gateway_for(&mock);
    let preface = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n";
    let mut tcp = TcpStream::connect(gw.addr).await.unwrap();
    tcp.write_all(&preface[..7]).await.unwrap();
    tokio::time::sleep(Duration::from_millis(100)).await;
    tcp.write_all(&preface[7..]).await.unwrap();
    // An empty SETTINGS frame: length 0, type 4, no flags, stream 0.
    tcp.write_all(&[0, 0, 0, 4, 0, 0, 0, 0, 0]).await.unwrap();
    let mut frame = [0; 9];
    tokio::time::timeout(Duration::from_secs(2), tcp.read_exact(&mut frame))
        .await
        .expect("the server answers")
        .unwrap();
    assert_eq!(
        frame[3], 4,
        "the server's first frame is its SETTINGS: {frame:?}"
    );
}

#[tokio::test]
async fn past_max_connections_a_new_connection_is_closed_at_once() {
    let mock = mock(&[]);
    let gw = gateway_with(&mock, "max_connections", "2");
    let mut first = TcpStream::connect(gw.addr).await.unwrap();
    health_on(&mut first).await;
    let mut second = TcpStream::connect(gw.addr).await.unwrap();
    health_on(&mut second).await;
    let mut third = TcpStream::connect(gw.addr).await.unwrap();
    let waited = closed_within(&mut third, Duration::from_secs(2)).await;
    assert!(
        waited < Duration::from_millis(500),
        "closed after {waited:?}"
    );
    // The two open ones are still served; once one closes, there is room.
    health_on(&mut second).await;
    drop(first);
    tokio::time::sleep(Duration::from_millis(100)).await;
    let mut fourth = TcpStream::connect(gw.addr).await.unwrap();
    health_on(&mut fourth).await;
    drop((second, fourth));
    tokio::time::sleep(Duration::from_millis(100)).await;
    let metrics = metrics(&gw).await;
    assert!(
        metrics.contains("switchyard_connections_refused_total 1\n"),
        "{metrics}"
    );
}
