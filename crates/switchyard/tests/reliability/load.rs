//! Traffic for the scenarios: many requests at a concurrency, or a fixed rate
//! for a while, each answer reduced to its status, its attempts and its time.

use std::time::{Duration, Instant};

use futures_util::StreamExt;

/// One request's answer.
#[derive(Debug, Clone, Copy)]
pub struct Outcome {
    /// Its status; 0 when no answer came (refused, reset, timed out).
    pub status: u16,
    /// Its head came, and its body broke off (or a stream ended unfinished).
    pub cut: bool,
    /// Its `x-switchyard-attempts`, when it had one.
    pub attempts: Option<u32>,
    /// From sending to the last byte of the body.
    pub latency: Duration,
}

impl Outcome {
    /// Whether it was served whole (2xx, not cut).
    pub fn ok(&self) -> bool {
        (200..300).contains(&self.status) && !self.cut
    }
}

/// Sends `request`, reads the whole answer.
pub async fn send(request: reqwest::RequestBuilder) -> Outcome {
    send_from(request, Instant::now()).await
}

/// [`send`], its time counted from `began` (when it was due, for traffic
/// that must not leave out the wait for a turn to run).
async fn send_from(request: reqwest::RequestBuilder, began: Instant) -> Outcome {
    let (status, cut, attempts) = match request.send().await {
        Ok(response) => {
            let status = response.status().as_u16();
            let attempts = response
                .headers()
                .get("x-switchyard-attempts")
                .and_then(|v| v.to_str().ok())
                .and_then(|v| v.parse().ok());
            match response.bytes().await {
                Ok(_) => (status, false, attempts),
                Err(_) => (status, true, attempts),
            }
        }
        Err(_) => (0, false, None),
    };
    Outcome {
        status,
        cut,
        attempts,
        latency: began.elapsed(),
    }
}

/// Sends `count` requests, the `i`th made by `request(i)`, `concurrency` at a
/// time.
pub async fn many(
    count: usize,
    concurrency: usize,
    request: impl Fn(usize) -> reqwest::RequestBuilder,
) -> Vec<Outcome> {
    futures_util::stream::iter(0..count)
        .map(|i| send(request(i)))
        .buffer_unordered(concurrency)
        .collect()
        .await
}

/// Sends `rate` requests a second for `duration`, each on its tick whatever
/// the others are doing (an open loop: a slow answer does not slow the
/// traffic); the `i`th is made by `request(i)`.
pub async fn at_rate(
    rate: u32,
    duration: Duration,
    request: impl Fn(usize) -> reqwest::RequestBuilder,
) -> Vec<Outcome> {
    let start = Instant::now();
    at_rate_while(rate, || start.elapsed() < duration, request).await
}

/// [`at_rate`] for as long as `going()` says.
pub async fn at_rate_while(
    rate: u32,
    going: impl Fn() -> bool,
    request: impl Fn(usize) -> reqwest::RequestBuilder,
) -> Vec<Outcome> {
    let period = Duration::from_secs(1) / rate.max(1);
    let mut ticks = tokio::time::interval(period);
    ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Burst);
    let mut pending = Vec::new();
    let mut i = 0;
    while going() {
        ticks.tick().await;
        pending.push(tokio::spawn(send_from(request(i), Instant::now())));
        i += 1;
    }
    let mut outcomes = Vec::with_capacity(pending.len());
    for task in pending {
        outcomes.push(task.await.expect("a request task"));
    }
    outcomes
}

/// The `p`th percentile (0 to 100) of `values`; zero when there are none.
pub fn percentile(values: impl IntoIterator<Item = Duration>, p: f64) -> Duration {
    let mut values: Vec<Duration> = values.into_iter().collect();
    if values.is_empty() {
        return Duration::ZERO;
    }
    values.sort_unstable();
    let rank = ((p / 100.0) * values.len() as f64).ceil() as usize;
    values[rank.clamp(1, values.len()) - 1]
}

/// `d` in milliseconds, for a table.
pub fn ms(d: Duration) -> String {
    let ms = d.as_secs_f64() * 1000.0;
    if ms < 10.0 {
        format!("{ms:.1} ms")
    } else {
        format!("{ms:.0} ms")
    }
}

/// `part` of `whole` in percent, for a table.
pub fn percent(part: usize, whole: usize) -> String {
    format!("{:.2} %", part as f64 * 100.0 / whole.max(1) as f64)
}
