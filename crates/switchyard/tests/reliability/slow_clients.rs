//! Slow clients: a thousand connections trickling their request heads a byte
//! at a time are closed at the header timeout, unanswered, while normal
//! clients are served as before.

use std::time::{Duration, Instant};

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use crate::Mode;
use crate::fixtures::ask;
use crate::harness::{CLIENT_KEY, gateway, mock};
use crate::load::{self, ms, percent, percentile};
use crate::table::Row;

/// Trickling connections.
const SLOW: usize = 1_000;

/// Connects to `addr` and sends a request head one byte every 200 ms: how
/// long until the gateway closed the connection (`None`: still open after
/// `limit`), and whether it answered anything.
async fn trickle(addr: std::net::SocketAddr, limit: Duration) -> (Option<Duration>, bool) {
    let Ok(mut tcp) = TcpStream::connect(addr).await else {
        // Not a slow client at all: the row fails on it.
        return (None, true);
    };
    let head = format!(
        "POST /v1/chat/completions HTTP/1.1\r\nhost: gw\r\nauthorization: Bearer {CLIENT_KEY}\r\n\r\n"
    );
    let started = Instant::now();
    let mut buf = [0u8; 1024];
    for byte in head.bytes() {
        if tcp.write_all(&[byte]).await.is_err() {
            return (Some(started.elapsed()), false);
        }
        match tokio::time::timeout(Duration::from_millis(200), tcp.read(&mut buf)).await {
            Err(_) => {}
            Ok(Ok(0) | Err(_)) => return (Some(started.elapsed()), false),
            Ok(Ok(_)) => return (Some(started.elapsed()), true),
        }
        if started.elapsed() > limit {
            break;
        }
    }
    (None, false)
}

pub async fn run(_mode: Mode) -> Vec<Row> {
    let upstream = mock(&[]);
    let gw = gateway(&format!(
        "server:\n  listen: 127.0.0.1:0\n  header_read_timeout: 2s\nauth:\n  mode: keys\nkeys:\n  \
         - key: {CLIENT_KEY}\nproviders:\n  up: {{ kind: openai, base_url: {}, api_key: sk-upstream }}\n\
         models:\n  m: {{ deployments: [{{ provider: up, model: mock-1 }}] }}\n",
        upstream.url("/v1")
    ));
    let baseline = load::at_rate(100, Duration::from_secs(3), |i| ask(&gw, i)).await;
    // The slow connections on a runtime of their own, so that their timers
    // and writes do not delay the normal clients' measurements in this process.
    let addr = gw.addr;
    let slow = std::thread::spawn(move || {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("a runtime");
        runtime.block_on(async move {
            let limit = Duration::from_secs(10);
            let tasks: Vec<_> = (0..SLOW)
                .map(|_| tokio::spawn(trickle(addr, limit)))
                .collect();
            let mut results = Vec::new();
            for task in tasks {
                results.push(task.await.expect("a trickling connection"));
            }
            results
        })
    });
    // Normal clients meanwhile.
    tokio::time::sleep(Duration::from_millis(200)).await;
    let during = load::at_rate(100, Duration::from_secs(3), |i| ask(&gw, i)).await;
    let mut closed = Vec::new();
    let mut answered = 0;
    for (after, got) in slow.join().expect("the slow connections") {
        answered += usize::from(got);
        closed.push(after);
    }
    let open = closed.iter().filter(|c| c.is_none()).count();
    let latest = closed
        .iter()
        .flatten()
        .max()
        .copied()
        .unwrap_or(Duration::ZERO);
    let earliest = closed
        .iter()
        .flatten()
        .min()
        .copied()
        .unwrap_or(Duration::ZERO);
    let served = during.iter().filter(|o| o.ok()).count();
    let (base, loaded) = (
        percentile(baseline.iter().map(|o| o.latency), 99.0),
        percentile(during.iter().map(|o| o.latency), 99.0),
    );
    vec![
        Row::new(
            "1,000 connections trickling their heads: each closed at the header timeout (2 s), within a second, unanswered",
            format!(
                "{} closed, between {} and {}; {open} still open after 10 s (or never connected); {answered} answered",
                SLOW - open,
                ms(earliest),
                ms(latest)
            ),
            open == 0
                && answered == 0
                && earliest >= Duration::from_millis(1900)
                && latest <= Duration::from_secs(3),
        ),
        Row::new(
            "… normal clients unaffected: all served, p99 ≤ 2× (or + 10 ms) without the slow ones",
            format!(
                "{served} of {} served ({}), p99 {} against {} before",
                during.len(),
                percent(served, during.len()),
                ms(loaded),
                ms(base)
            ),
            served == during.len() && loaded <= (base * 2).max(base + Duration::from_millis(10)),
        ),
    ]
}
