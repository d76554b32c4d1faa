//! Cardinality: a flood of distinct random keys — a million, every one
//! refused — costs the gateway nothing it keeps: its resident memory stays
//! under 200 MB, its metrics gain no series, and a real key still works.

use std::time::Instant;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use crate::Mode;
use crate::harness::{Process, client, gateway, metrics, mock};
use crate::stores::{Backend, TestStore};
use crate::table::Row;

/// Keys sent in all.
const KEYS: usize = 1_000_000;
/// Connections sending them at once.
const CONNECTIONS: usize = 64;
/// Requests written at once on each connection before their answers are read.
const DEPTH: usize = 64;

/// Sends `count` requests on one connection, each with a key never seen
/// before (`seed` keeps connections apart), pipelined `DEPTH` at a time;
/// answers how many got a 401.
async fn flood(gw: &Process, seed: usize, count: usize) -> usize {
    let mut stream = TcpStream::connect(gw.addr).await.unwrap();
    stream.set_nodelay(true).unwrap();
    let mut refused = 0;
    let mut sent = 0;
    let mut buffer = Vec::with_capacity(1 << 16);
    while sent < count {
        let batch = DEPTH.min(count - sent);
        let mut requests = String::with_capacity(batch * 120);
        for n in sent..sent + batch {
            // A virtual key's shape, a different one each time.
            requests.push_str(&format!(
                "GET /v1/models HTTP/1.1\r\nhost: gw\r\nauthorization: Bearer sk-sy-{seed:08x}{n:024x}\r\n\r\n"
            ));
        }
        stream.write_all(requests.as_bytes()).await.unwrap();
        sent += batch;
        let mut answers = 0;
        while answers < batch {
            match answer_len(&buffer) {
                Some((len, status)) => {
                    refused += usize::from(status == 401);
                    buffer.drain(..len);
                    answers += 1;
                }
                None => {
                    let mut chunk = [0u8; 16384];
                    let n = stream.read(&mut chunk).await.unwrap();
                    assert!(n > 0, "the gateway closed the connection");
                    buffer.extend_from_slice(&chunk[..n]);
                }
            }
        }
    }
    refused
}

/// The length and status of the whole answer at the start of `buffer`, once
/// it is all there.
fn answer_len(buffer: &[u8]) -> Option<(usize, u16)> {
    let head_end = buffer.windows(4).position(|w| w == b"\r\n\r\n")? + 4;
    let head = std::str::from_utf8(&buffer[..head_end]).ok()?;
    let status = head.get(9..12)?.parse().ok()?;
    let body: usize = head
        .lines()
        .find_map(|line| {
            let (name, value) = line.split_once(':')?;
            name.eq_ignore_ascii_case("content-length")
                .then(|| value.trim().parse().ok())?
        })
        .unwrap_or(0);
    (buffer.len() >= head_end + body).then_some((head_end + body, status))
}

/// The metric series `/metrics` lists (its lines that are not comments).
async fn series(gw: &Process) -> usize {
    metrics(gw)
        .await
        .lines()
        .filter(|l| !l.starts_with('#') && !l.is_empty())
        .count()
}

/// Whether `key` is served `GET /v1/models`.
async fn works(gw: &Process, key: &str) -> bool {
    let answer = client()
        .get(gw.url("/v1/models"))
        .bearer_auth(key)
        .send()
        .await;
    answer.is_ok_and(|a| a.status() == 200)
}

pub async fn run(_mode: Mode) -> Vec<Row> {
    let store = TestStore::new(Backend::Sqlite);
    let (known, _) = store.create_key("real", &["--rpm", "100000"]);
    let upstream = mock(&[]);
    let gw = gateway(&format!(
        "server:\n  listen: 127.0.0.1:0\n{}auth:\n  mode: keys\nproviders:\n  up: {{ kind: openai, base_url: \"{}\", api_key: k }}\nmodels:\n  gpt-4.1:\n    deployments: [{{ provider: up, model: mock-1 }}]\n",
        store.yaml(),
        upstream.url("/v1")
    ));
    // The real key is known and counted before the flood.
    let before = works(&gw, &known).await;
    let series_before = series(&gw).await;
    let started = Instant::now();
    let floods = (0..CONNECTIONS).map(|seed| {
        let gw = &gw;
        async move { flood(gw, seed, KEYS / CONNECTIONS).await }
    });
    let refused: usize = futures_util::future::join_all(floods)
        .await
        .into_iter()
        .sum();
    let took = started.elapsed();
    let sent = KEYS / CONNECTIONS * CONNECTIONS;
    let rss_mib = gw.rss_kib() / 1024;
    let series_after = series(&gw).await;
    let after = works(&gw, &known).await;
    vec![
        Row::new(
            "a million random keys: every one refused, resident memory under 200 MB",
            format!(
                "{refused} of {sent} refused in {:.1} s; {rss_mib} MiB resident after",
                took.as_secs_f64()
            ),
            refused == sent && rss_mib < 200,
        ),
        Row::new(
            "… metric series constant, and the real key served before and after",
            format!(
                "{series_before} series before, {series_after} after; the real key {}",
                if before && after {
                    "served both times"
                } else {
                    "refused"
                }
            ),
            series_before == series_after && before && after,
        ),
    ]
}
