//! SIGTERM under 300 requests a second of mixed traffic (JSON answers and
//! streams): every request the gateway had taken is answered whole within the
//! drain, those sent after are refused rather than cut, and every answered
//! request's usage record is in the store when the gateway has exited.

use std::path::Path;
use std::time::Duration;

use serde_json::json;

use crate::Mode;
use crate::fixtures::{ADMIN_KEY, stored_records};
use crate::harness::{CLIENT_KEY, Process, UPSTREAM_KEY, client, mock};
use crate::load::{self, Outcome};
use crate::streams;
use crate::table::Row;

/// Starts the gateway in `dir` (its SQLite store stays there across runs).
fn gateway_in(dir: &Path, upstream: &Process) -> Process {
    let config = format!(
        "server:\n  listen: 127.0.0.1:0\n  admin_key: {ADMIN_KEY}\n  shutdown_grace: 10s\nauth:\n  \
         mode: keys\nkeys:\n  - key: {CLIENT_KEY}\nusage:\n  flush_interval: 1s\nproviders:\n  \
         up: {{ kind: openai, base_url: {}, api_key: {UPSTREAM_KEY} }}\nmodels:\n  \
         m: {{ deployments: [{{ provider: up, model: mock-1 }}] }}\n",
        upstream.url("/v1")
    );
    let path = dir.join("switchyard.yaml");
    std::fs::write(&path, config).expect("write the config");
    let path = path.to_str().expect("a UTF-8 path");
    Process::spawn_in(&["serve", "--config", path], dir, &[])
}

/// The `i`th request: one in three a stream of two seconds, the others JSON
/// answers of 50 ms.
fn mixed(gw: &Process, i: usize) -> reqwest::RequestBuilder {
    let stream = i.is_multiple_of(3);
    client()
        .post(gw.url("/v1/chat/completions"))
        .bearer_auth(CLIENT_KEY)
        .json(&json!({
            "model": "m",
            "stream": stream,
            "messages": [{"role": "user", "content": format!("mixed {i}")}],
        }))
}

/// The answer to `request`: a stream is cut unless it ended with `[DONE]`.
async fn whole(request: reqwest::RequestBuilder, stream: bool) -> Outcome {
    if !stream {
        return load::send(request).await;
    }
    let read = streams::read(request, Duration::from_secs(20)).await;
    Outcome {
        status: read.status,
        cut: read.status != 0 && !(read.done() && read.clean_end),
        attempts: None,
        latency: read.ended,
    }
}

pub async fn run(_mode: Mode) -> Vec<Row> {
    let upstream = mock(&["--latency", "50ms", "--tokens-per-second", "8"]);
    let dir = tempfile::tempdir().expect("a folder");
    let mut gw = gateway_in(dir.path(), &upstream);
    let rate = 300;
    let period = Duration::from_secs(1) / rate;
    // Two seconds of traffic, then SIGTERM while it goes on for one more.
    let mut before = Vec::new();
    let mut after = Vec::new();
    let mut ticks = tokio::time::interval(period);
    let started = std::time::Instant::now();
    let mut signalled = false;
    let mut i = 0;
    while started.elapsed() < Duration::from_secs(3) {
        ticks.tick().await;
        if !signalled && started.elapsed() >= Duration::from_secs(2) {
            gw.terminate();
            signalled = true;
        }
        let task = tokio::spawn(whole(mixed(&gw, i), i.is_multiple_of(3)));
        if signalled {
            after.push(task)
        } else {
            before.push(task)
        }
        i += 1;
    }
    let mut taken = Vec::new();
    for task in before {
        taken.push(task.await.expect("a request"));
    }
    let mut late = Vec::new();
    for task in after {
        late.push(task.await.expect("a request"));
    }
    let exit = gw.wait_exit(Duration::from_secs(30));
    let answered_before = taken.iter().filter(|o| o.ok()).count();
    let late_served = late.iter().filter(|o| o.ok()).count();
    let late_refused = late.iter().filter(|o| o.status == 0).count();
    let cut = taken.iter().chain(&late).filter(|o| o.cut).count();
    let answered = answered_before + late_served;

    // The records, read back by the next gateway on the same store.
    let next = gateway_in(dir.path(), &upstream);
    let stored = stored_records(&next).await;
    vec![
        Row::new(
            "SIGTERM under 300 requests/s (one in three a 2 s stream): every request taken before it answered whole",
            format!(
                "{answered_before} of {} answered whole (streams to [DONE]); the gateway exited {}",
                taken.len(),
                exit.code()
                    .map_or_else(|| "by a signal".to_owned(), |c| format!("with {c}"))
            ),
            answered_before == taken.len() && exit.success(),
        ),
        Row::new(
            "… requests sent after it are refused (no answer begun) or served; no answer is cut",
            format!(
                "{} sent after: {late_served} served whole, {late_refused} refused; {cut} cut in all",
                late.len()
            ),
            late.iter().all(|o| o.ok() || o.status == 0) && cut == 0,
        ),
        Row::new(
            "… every answered request's usage record stored",
            format!("{stored} records for {answered} answered requests"),
            stored == answered as u64,
        ),
    ]
}
