//! Partial failure: two deployments failing 30 % of requests at random serve
//! nearly every request within the retry budget; when both are down, the
//! breakers stop the traffic to them and errors come back at once.

use std::time::Duration;

use crate::Mode;
use crate::fixtures::{ask, gateway_on};
use crate::harness::{Process, metrics, mock, mock_requests};
use crate::load::{self, ms, percent, percentile};
use crate::table::Row;

pub async fn run(mode: Mode) -> Vec<Row> {
    let mut rows = flaky().await;
    rows.extend(dead(mode).await);
    rows
}

/// Upstream requests `mocks` received.
async fn received(mocks: [&Process; 2]) -> u64 {
    mock_requests(mocks[0]).await + mock_requests(mocks[1]).await
}

/// Two deployments failing 30 % at random (independent draws: with three
/// attempts, 1 − 0.3³ = 97.3 % is the best that can be served).
async fn flaky() -> Vec<Row> {
    let flaky = |seed| {
        mock(&[
            "--error-rate",
            "0.3",
            "--error-status",
            "500",
            "--seed",
            seed,
        ])
    };
    let (one, two) = (flaky("21"), flaky("22"));
    let gw = gateway_on(&[("one", &one), ("two", &two)], "", "");
    // Enough requests that the share served is within 0.1 % of what the
    // retries can give (its standard deviation at 20,000 is 0.11 %).
    let count = 20_000;
    let outcomes = load::many(count, 32, |i| ask(&gw, i)).await;
    let served = outcomes.iter().filter(|o| o.ok()).count();
    let most = outcomes
        .iter()
        .filter_map(|o| o.attempts)
        .max()
        .unwrap_or(0);
    let upstream = received([&one, &two]).await;
    // Not closed now, or opened at any moment of the run (each opening is logged).
    let mut open: Vec<String> = metrics(&gw)
        .await
        .lines()
        .filter(|line| line.starts_with("switchyard_circuit_state{") && !line.ends_with(" 0"))
        .map(str::to_owned)
        .collect();
    let logs = gw.logs();
    open.extend(
        logs.lines()
            .filter(|line| line.contains("circuit breaker opened"))
            .map(str::to_owned),
    );
    vec![
        Row::new(
            "two deployments failing 30 % at random: ≥ 97 % of requests served",
            format!("{served} of {count} ({})", percent(served, count)),
            served * 100 >= count * 97,
        ),
        Row::new(
            "… with ≤ 3 upstream attempts per request",
            format!(
                "at most {most}, {:.2} on average",
                upstream as f64 / count as f64
            ),
            most <= 3 && outcomes.iter().all(|o| o.attempts.is_some()),
        ),
        Row::new(
            "… and no breaker opens: random failures eject neither deployment",
            if open.is_empty() {
                "both breakers closed throughout (no opening logged)".to_owned()
            } else {
                format!("not closed: {open:?}")
            },
            open.is_empty(),
        ),
    ]
}

/// Both deployments down: after 10 s the breakers let through at most 1.2
/// upstream attempts per request, and every error is answered at once.
async fn dead(mode: Mode) -> Vec<Row> {
    let dead = |seed| mock(&["--error-rate", "1", "--error-status", "500", "--seed", seed]);
    let (one, two) = (dead("31"), dead("32"));
    let gw = gateway_on(&[("one", &one), ("two", &two)], "", "");
    let rate = 100;
    let first = load::at_rate(rate, Duration::from_secs(10), |i| ask(&gw, i)).await;
    let before = received([&one, &two]).await;
    let after = load::at_rate(
        rate,
        mode.pick(Duration::from_secs(4), Duration::from_secs(10)),
        |i| ask(&gw, i),
    )
    .await;
    let upstream = received([&one, &two]).await - before;
    let per_request = upstream as f64 / after.len() as f64;
    let answered = first.iter().chain(&after).filter(|o| o.status != 0);
    let all = first.len() + after.len();
    let p99_after = percentile(after.iter().map(|o| o.latency), 99.0);
    let p99_all = percentile(first.iter().chain(&after).map(|o| o.latency), 99.0);
    vec![
        Row::new(
            "both deployments down: ≤ 1.2 upstream attempts per request after 10 s",
            format!(
                "{per_request:.3} ({upstream} for {} requests; {before} for the first {})",
                after.len(),
                first.len()
            ),
            per_request <= 1.2,
        ),
        Row::new(
            "… errors answered in ≤ 50 ms p99 once the breakers are open",
            format!(
                "p99 {} after 10 s ({} over the whole outage)",
                ms(p99_after),
                ms(p99_all)
            ),
            p99_after <= Duration::from_millis(50) && answered.count() == all,
        ),
    ]
}
