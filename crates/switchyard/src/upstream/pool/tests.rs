//! The pool against a provider written by hand on 127.0.0.1, whose every
//! connection is counted and whose way of answering each test chooses.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use axum::http::{Request, Uri, header};
use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::body::Body;
use hyper_util::client::legacy::connect::HttpConnector;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

use super::Pool;
use crate::config;

/// How the provider answers.
#[derive(Clone, Copy)]
enum Answer {
    /// `ok`, keeping the connection open.
    KeepAlive,
    /// `ok`, then closes the connection without saying so beforehand.
    ThenClose,
    /// The start of a chunked body that never ends.
    Endless,
}

/// A provider on 127.0.0.1: the URL of its API, the connections it accepted,
/// and those its client closed.
struct Provider {
    root: Uri,
    accepted: Arc<AtomicUsize>,
    closed: Arc<AtomicUsize>,
}

async fn provider(answer: Answer) -> Provider {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let root = format!("http://{}/v1", listener.local_addr().unwrap())
        .parse()
        .unwrap();
    let accepted = Arc::new(AtomicUsize::new(0));
    let closed = Arc::new(AtomicUsize::new(0));
    let (counted, ended) = (accepted.clone(), closed.clone());
    tokio::spawn(async move {
        while let Ok((socket, _)) = listener.accept().await {
            counted.fetch_add(1, Ordering::SeqCst);
            let ended = ended.clone();
            tokio::spawn(async move {
                serve(socket, answer).await;
                ended.fetch_add(1, Ordering::SeqCst);
            });
        }
    });
    Provider {
        root,
        accepted,
        closed,
    }
}

/// Answers the requests of one connection until its client closes it (or
/// the answer closes it).
async fn serve(mut socket: TcpStream, answer: Answer) {
    let mut read = Vec::new();
    loop {
        // A request: its head, then the body its length gives.
        let head_end = loop {
            if let Some(at) = read.windows(4).position(|w| w == b"\r\n\r\n") {
                break at + 4;
            }
            let mut buffer = [0; 4096];
            match socket.read(&mut buffer).await {
                Ok(0) | Err(_) => return,
                Ok(n) => read.extend_from_slice(&buffer[..n]),
            }
        };
        let head = String::from_utf8_lossy(&read[..head_end]).to_ascii_lowercase();
        let length: usize = head
            .lines()
            .find_map(|line| line.strip_prefix("content-length:"))
            .map_or(0, |n| n.trim().parse().unwrap());
        assert!(
            head.starts_with("post /v1/chat/completions http/1.1"),
            "{head}"
        );
        assert!(head.contains("\r\nhost: 127.0.0.1:"), "{head}");
        while read.len() < head_end + length {
            let mut buffer = [0; 4096];
            match socket.read(&mut buffer).await {
                Ok(0) | Err(_) => return,
                Ok(n) => read.extend_from_slice(&buffer[..n]),
            }
        }
        read.drain(..head_end + length);
        match answer {
            Answer::KeepAlive | Answer::ThenClose => {
                let ok = b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\nok";
                if socket.write_all(ok).await.is_err() {
                    return;
                }
                if matches!(answer, Answer::ThenClose) {
                    return;
                }
            }
            Answer::Endless => {
                let start = b"HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\n5\r\nhello\r\n";
                if socket.write_all(start).await.is_err() {
                    return;
                }
                // Until the client goes.
                let mut buffer = [0; 64];
                while matches!(socket.read(&mut buffer).await, Ok(n) if n > 0) {}
                return;
            }
        }
    }
}

fn pool(root: &Uri, limits: config::Pool) -> Pool {
    let mut http = HttpConnector::new();
    http.enforce_http(false);
    let connector = hyper_rustls::HttpsConnectorBuilder::new()
        .try_with_platform_verifier()
        .unwrap()
        .https_or_http()
        .enable_http1()
        .wrap_connector(http);
    Pool::new(connector, root, limits)
}

fn chat_uri(root: &Uri) -> Uri {
    format!("{root}/chat/completions").parse().unwrap()
}

fn request(root: &Uri) -> Request<Full<Bytes>> {
    let mut request = Request::post("/v1/chat/completions")
        .body(Full::new(Bytes::from_static(b"{}")))
        .unwrap();
    let host = root.authority().unwrap().as_str().parse().unwrap();
    request.headers_mut().insert(header::HOST, host);
    request
}

/// Sends a request and reads its answer whole.
async fn call(pool: &Pool, root: &Uri) -> Bytes {
    let response = pool.send(&chat_uri(root), request(root)).await.unwrap();
    assert_eq!(response.status(), 200);
    response.into_body().collect().await.unwrap().to_bytes()
}

/// Waits, bounded, for `test` to hold.
async fn eventually(test: impl Fn() -> bool) {
    for _ in 0..200 {
        if test() {
            return;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    assert!(test(), "not within 2 s");
}

fn limits(max_idle: usize, idle_timeout: Duration) -> config::Pool {
    config::Pool {
        max_idle,
        idle_timeout,
    }
}

#[tokio::test]
async fn answers_read_to_their_end_share_one_connection() {
    let provider = provider(Answer::KeepAlive).await;
    let pool = pool(&provider.root, limits(8, Duration::from_secs(60)));
    for _ in 0..3 {
        assert_eq!(call(&pool, &provider.root).await, "ok");
    }
    assert_eq!(provider.accepted.load(Ordering::SeqCst), 1);
    assert_eq!(provider.closed.load(Ordering::SeqCst), 0);
}

#[tokio::test]
async fn requests_at_once_each_get_a_connection_and_all_are_kept() {
    let provider = provider(Answer::KeepAlive).await;
    let pool = pool(&provider.root, limits(8, Duration::from_secs(60)));
    let root = &provider.root;
    let (a, b, c) = tokio::join!(call(&pool, root), call(&pool, root), call(&pool, root));
    assert_eq!((a, b, c), ("ok".into(), "ok".into(), "ok".into()));
    assert_eq!(provider.accepted.load(Ordering::SeqCst), 3);
    let (a, b, c) = tokio::join!(call(&pool, root), call(&pool, root), call(&pool, root));
    assert_eq!((a, b, c), ("ok".into(), "ok".into(), "ok".into()));
    assert_eq!(provider.accepted.load(Ordering::SeqCst), 3);
}

#[tokio::test]
async fn a_body_dropped_before_its_end_closes_its_connection() {
    let provider = provider(Answer::Endless).await;
    let pool = pool(&provider.root, limits(8, Duration::from_secs(60)));
    let root = &provider.root;
    let response = pool.send(&chat_uri(root), request(root)).await.unwrap();
    let mut body = response.into_body();
    let first = body.frame().await.unwrap().unwrap().into_data().unwrap();
    assert_eq!(first, "hello");
    assert!(!body.is_end_stream());
    drop(body);
    eventually(|| provider.closed.load(Ordering::SeqCst) == 1).await;
    // The next request cannot have it: a new connection.
    let response = pool.send(&chat_uri(root), request(root)).await.unwrap();
    assert_eq!(response.status(), 200);
    assert_eq!(provider.accepted.load(Ordering::SeqCst), 2);
}

#[tokio::test]
async fn a_connection_the_provider_closed_while_idle_is_not_used() {
    let provider = provider(Answer::ThenClose).await;
    let pool = pool(&provider.root, limits(8, Duration::from_secs(60)));
    assert_eq!(call(&pool, &provider.root).await, "ok");
    eventually(|| provider.closed.load(Ordering::SeqCst) == 1).await;
    // Its close reached the idle connection: a new one serves the next.
    tokio::time::sleep(Duration::from_millis(20)).await;
    assert_eq!(call(&pool, &provider.root).await, "ok");
    assert_eq!(provider.accepted.load(Ordering::SeqCst), 2);
}

#[tokio::test]
async fn no_request_fails_when_the_provider_closes_after_each_answer() {
    let provider = provider(Answer::ThenClose).await;
    let pool = pool(&provider.root, limits(8, Duration::from_secs(60)));
    for _ in 0..20 {
        assert_eq!(call(&pool, &provider.root).await, "ok");
    }
    assert_eq!(provider.accepted.load(Ordering::SeqCst), 20);
}

#[tokio::test]
async fn none_are_kept_with_max_idle_zero() {
    let provider = provider(Answer::KeepAlive).await;
    let pool = pool(&provider.root, limits(0, Duration::from_secs(60)));
    assert_eq!(call(&pool, &provider.root).await, "ok");
    eventually(|| provider.closed.load(Ordering::SeqCst) == 1).await;
    assert_eq!(call(&pool, &provider.root).await, "ok");
    assert_eq!(provider.accepted.load(Ordering::SeqCst), 2);
}

#[tokio::test]
async fn the_most_kept_is_max_idle_the_oldest_closed_first() {
    let provider = provider(Answer::KeepAlive).await;
    let pool = pool(&provider.root, limits(2, Duration::from_secs(60)));
    let root = &provider.root;
    tokio::join!(call(&pool, root), call(&pool, root), call(&pool, root));
    assert_eq!(provider.accepted.load(Ordering::SeqCst), 3);
    eventually(|| provider.closed.load(Ordering::SeqCst) == 1).await;
    assert_eq!(pool.shared.idle().len(), 2);
}

#[tokio::test]
async fn connections_idle_past_the_timeout_are_closed() {
    let provider = provider(Answer::KeepAlive).await;
    let pool = pool(&provider.root, limits(8, Duration::from_millis(100)));
    assert_eq!(call(&pool, &provider.root).await, "ok");
    tokio::time::sleep(Duration::from_millis(150)).await;
    assert_eq!(call(&pool, &provider.root).await, "ok");
    assert_eq!(provider.accepted.load(Ordering::SeqCst), 2);
    // With no request to find it, the pool's own pass closes the second,
    // within a second or two.
    eventually(|| provider.closed.load(Ordering::SeqCst) == 2).await;
}
