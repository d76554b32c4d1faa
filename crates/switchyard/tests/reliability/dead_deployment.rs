//! A deployment that dies is skipped within five failures and taken back
//! within 45 s of its recovery; a deployment answering 429 with
//! `retry-after` is left alone for that long while its peer serves.

use std::time::{Duration, Instant};

use serde_json::json;

use crate::Mode;
use crate::fixtures::{ask, gateway_on};
use crate::harness::{mock, mock_requests, set_faults};
use crate::load::{self, percent};
use crate::table::Row;

pub async fn run(_mode: Mode) -> Vec<Row> {
    let mut rows = dies_and_recovers().await;
    rows.extend(rate_limited().await);
    rows
}

async fn dies_and_recovers() -> Vec<Row> {
    let dying = mock(&["--error-rate", "1", "--error-status", "500"]);
    let peer = mock(&[]);
    let gw = gateway_on(&[("dying", &dying), ("peer", &peer)], "", "");
    // Dead from the start: five seconds of traffic, 20 requests a second.
    let dead = load::at_rate(20, Duration::from_secs(5), |i| ask(&gw, i)).await;
    let failures = mock_requests(&dying).await;
    let served = dead.iter().filter(|o| o.ok()).count();
    // It recovers; traffic goes on until it serves its share again.
    set_faults(&dying, json!({"error_rate": 0})).await;
    let recovered = Instant::now();
    let before = mock_requests(&dying).await;
    let mut back = None;
    while recovered.elapsed() < Duration::from_secs(60) {
        load::at_rate(20, Duration::from_millis(500), |i| ask(&gw, i)).await;
        // Its share again: five requests past the probe that closed its breaker.
        if mock_requests(&dying).await >= before + 6 {
            back = Some(recovered.elapsed());
            break;
        }
    }
    vec![
        Row::new(
            "a dead deployment is skipped within 5 failures, its peer serving every request",
            format!(
                "{failures} requests reached it in 5 s of traffic; {served} of {} served",
                dead.len()
            ),
            failures <= 5 && served == dead.len(),
        ),
        Row::new(
            "… and back within 45 s of its recovery (breaker cooldown 30 s)",
            back.map_or_else(
                || "not back after 60 s".to_owned(),
                |at| format!("serving its share {:.1} s after", at.as_secs_f64()),
            ),
            back.is_some_and(|at| at <= Duration::from_secs(45)),
        ),
    ]
}

async fn rate_limited() -> Vec<Row> {
    let limited = mock(&[
        "--error-rate",
        "1",
        "--error-status",
        "429",
        "--retry-after",
        "2",
    ]);
    let peer = mock(&[]);
    let gw = gateway_on(&[("limited", &limited), ("peer", &peer)], "", "");
    let traffic = Duration::from_secs(5);
    let outcomes = load::at_rate(20, traffic, |i| ask(&gw, i)).await;
    let served = outcomes.iter().filter(|o| o.ok()).count();
    let asked = mock_requests(&limited).await;
    // A 429 rests the deployment for its retry-after: one request per
    // 2 s of traffic, plus those already on their way when it answered.
    let most = traffic.as_secs().div_ceil(2) + 2;
    vec![Row::new(
        "a 429 with retry-after 2 s is honoured (the deployment rests) while its peer serves",
        format!(
            "{asked} requests reached it in {} s of 20 requests/s (at most {most} allowed); {served} of {} served ({})",
            traffic.as_secs(),
            outcomes.len(),
            percent(served, outcomes.len())
        ),
        asked <= most && served == outcomes.len(),
    )]
}
