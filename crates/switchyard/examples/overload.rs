//! A closed-loop load generator that tells accepted answers from shed ones:
//! `--clients` connections, each sending one POST after another for
//! `--duration`, and the latency percentiles of the 200s and of the 503s
//! apart (wrk reports them mixed). Used by `bench/overload.sh`.
//!
//! ```text
//! cargo run --release --example overload -- --url http://127.0.0.1:8080/v1/chat/completions \
//!     --body bench/payloads/chat.json --key sk-bench --clients 600 --duration 10
//! ```
//!
//! Prints one JSON object: per status, the count and p50/p99/max in
//! microseconds; and how many requests failed without an answer.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::{Duration, Instant};

use bytes::Bytes;
use clap::Parser;
use http_body_util::{BodyExt, Full};
use hyper::Request;
use hyper::client::conn::http1;
use hyper_util::rt::TokioIo;
use tokio::net::TcpStream;

#[derive(Parser)]
struct Args {
    /// Where to POST (plain HTTP).
    #[arg(long)]
    url: hyper::Uri,
    /// The request body (JSON).
    #[arg(long)]
    body: PathBuf,
    /// Sent as `authorization: Bearer <key>`.
    #[arg(long)]
    key: String,
    /// Connections, each with one request outstanding at a time.
    #[arg(long)]
    clients: usize,
    /// Seconds of load.
    #[arg(long, default_value_t = 10)]
    duration: u64,
    /// Milliseconds a client waits after a 503 before its next request.
    #[arg(long, default_value_t = 0)]
    shed_pause: u64,
}

/// What one client saw: latencies in microseconds by status, and failures.
#[derive(Default)]
struct Seen {
    by_status: BTreeMap<u16, Vec<u64>>,
    failed: u64,
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args = Args::parse();
    let body = Bytes::from(std::fs::read(&args.body)?);
    let authority = args
        .url
        .authority()
        .ok_or("the URL has no host")?
        .to_string();
    let until = Instant::now() + Duration::from_secs(args.duration);
    let clients: Vec<_> = (0..args.clients)
        .map(|_| {
            tokio::spawn(client(
                args.url.clone(),
                authority.clone(),
                format!("Bearer {}", args.key),
                body.clone(),
                until,
                Duration::from_millis(args.shed_pause),
            ))
        })
        .collect();
    let mut all = Seen::default();
    for client in clients {
        let seen = client.await?;
        all.failed += seen.failed;
        for (status, mut times) in seen.by_status {
            all.by_status.entry(status).or_default().append(&mut times);
        }
    }
    let mut statuses = serde_json::Map::new();
    for (status, mut times) in all.by_status {
        times.sort_unstable();
        let at = |q: f64| times[((times.len() - 1) as f64 * q).round() as usize];
        statuses.insert(
            status.to_string(),
            serde_json::json!({
                "count": times.len(),
                "p50_us": at(0.5),
                "p99_us": at(0.99),
                "max_us": at(1.0),
            }),
        );
    }
    println!(
        "{}",
        serde_json::json!({ "clients": args.clients, "duration_s": args.duration,
            "statuses": statuses, "failed": all.failed })
    );
    Ok(())
}

/// One connection sending requests one after another until `until`
/// (connecting again when the server closes it).
async fn client(
    url: hyper::Uri,
    authority: String,
    authorization: String,
    body: Bytes,
    until: Instant,
    shed_pause: Duration,
) -> Seen {
    let mut seen = Seen::default();
    'connect: while Instant::now() < until {
        let Ok(tcp) = TcpStream::connect(&authority).await else {
            seen.failed += 1;
            tokio::time::sleep(Duration::from_millis(10)).await;
            continue;
        };
        let _ = tcp.set_nodelay(true);
        let Ok((mut sender, connection)) = http1::handshake(TokioIo::new(tcp)).await else {
            seen.failed += 1;
            continue;
        };
        tokio::spawn(connection);
        while Instant::now() < until {
            let Ok(request) = Request::post(url.clone())
                .header("host", &authority)
                .header("authorization", &authorization)
                .header("content-type", "application/json")
                .body(Full::new(body.clone()))
            else {
                // A key that is no header value: nothing to send.
                seen.failed += 1;
                return seen;
            };
            let started = Instant::now();
            let answer = match sender.send_request(request).await {
                Ok(response) => {
                    let status = response.status().as_u16();
                    response.into_body().collect().await.map(|_| status)
                }
                Err(e) => Err(e),
            };
            let Ok(status) = answer else {
                seen.failed += 1;
                continue 'connect;
            };
            let micros = u64::try_from(started.elapsed().as_micros()).unwrap_or(u64::MAX);
            seen.by_status.entry(status).or_default().push(micros);
            if status == 503 && !shed_pause.is_zero() {
                tokio::time::sleep(shed_pause).await;
            }
        }
    }
    seen
}
