//! Soak: half the gateway's capacity for ten minutes with 1 % of upstream
//! requests failing and 1 % of streams cut; its memory stays flat over the
//! second half, its descriptors and threads from the first minute on.
//! A 60-minute soak:
//! `RELIABILITY_SOAK_MINUTES=60 RELIABILITY_ONLY=soak bench/reliability.sh`.

use std::time::{Duration, Instant};

use serde_json::json;

use crate::Mode;
use crate::fixtures::gateway_on;
use crate::harness::{CLIENT_KEY, Process, client, mock};
use crate::load::{self, percent};
use crate::table::Row;

/// Requests a second: half of what 50 in flight at 20 ms each allow.
const RATE: u32 = 1_250;

/// Resident memory (KiB), open descriptors and threads of process `pid`.
fn footprint(pid: u32) -> (u64, usize, u64) {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    let field = |name: &str| {
        status
            .lines()
            .find_map(|line| line.strip_prefix(name))
            .and_then(|rest| rest.trim().trim_end_matches("kB").trim().parse().ok())
            .unwrap_or(0)
    };
    let fds = std::fs::read_dir(format!("/proc/{pid}/fd")).map_or(0, Iterator::count);
    (field("VmRSS:"), fds, field("Threads:"))
}

/// The `i`th request: one in ten a stream.
fn mixed(gw: &Process, i: usize) -> reqwest::RequestBuilder {
    client()
        .post(gw.url("/v1/chat/completions"))
        .bearer_auth(CLIENT_KEY)
        .json(&json!({
            "model": "m",
            "stream": i.is_multiple_of(10),
            "messages": [{"role": "user", "content": format!("soak {i}")}],
        }))
}

pub async fn run(_mode: Mode) -> Vec<Row> {
    let minutes: u64 = std::env::var("RELIABILITY_SOAK_MINUTES")
        .ok()
        .and_then(|m| m.parse().ok())
        .unwrap_or(10);
    let faulty = |seed| {
        mock(&[
            "--latency",
            "20ms",
            "--error-rate",
            "0.01",
            "--stream-cut-rate",
            "0.01",
            "--seed",
            seed,
        ])
    };
    let (one, two) = (faulty("41"), faulty("42"));
    let gw = gateway_on(
        &[("one", &one), ("two", &two)],
        "",
        "admission: { max_in_flight: 50 }\n",
    );
    let pid = gw.pid();
    // The first minute warms everything (pools, caches, the store's pages).
    let warm = load::at_rate(RATE, Duration::from_secs(60), |i| mixed(&gw, i)).await;
    let start = footprint(pid);
    let started = Instant::now();
    let mut samples = vec![start];
    let mut outcomes = warm;
    while started.elapsed() < Duration::from_secs(60 * (minutes - 1)) {
        outcomes.extend(load::at_rate(RATE, Duration::from_secs(60), |i| mixed(&gw, i)).await);
        samples.push(footprint(pid));
    }
    let end = footprint(pid);
    let served = outcomes.iter().filter(|o| o.ok()).count();
    // Drift is judged over the second half: the first minutes still fill
    // bounded caches (the store's pages as the usage log grows, the pools).
    let middle = samples[samples.len() / 2];
    let drift = (end.0 as f64 - middle.0 as f64) / middle.0 as f64 * 100.0;
    let rss: Vec<String> = samples.iter().map(|s| (s.0 / 1024).to_string()).collect();
    vec![
        Row::new(
            format!(
                "soak: {minutes} min at {RATE} requests/s (half capacity), 1 % of upstream requests failing, 1 % of streams cut: resident memory drift < 5 % over the second half"
            ),
            format!(
                "{:+.1} % ({} → {} MiB; each minute from the first: {} MiB); {} of {} requests answered 200 ({})",
                drift,
                middle.0 / 1024,
                end.0 / 1024,
                rss.join(", "),
                served,
                outcomes.len(),
                percent(served, outcomes.len())
            ),
            drift < 5.0 && served * 100 >= outcomes.len() * 99,
        ),
        Row::new(
            "… descriptors and threads flat (within the connections a load's moment holds open)",
            format!(
                "descriptors {} → {}, threads {} → {}",
                start.1, end.1, start.2, end.2
            ),
            end.1 <= start.1 + start.1 / 5 + 10 && end.2 <= start.2 + 4,
        ),
    ]
}
