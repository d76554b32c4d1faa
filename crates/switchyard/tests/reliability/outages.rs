//! The gateway's own dependencies failing under load: Redis stopped, Redis
//! black-holed (frozen: connections taken, nothing answered), PostgreSQL
//! stopped. Requests keep being served, waiting on Redis no longer than its
//! timeout, and no usage record is lost.

use std::time::{Duration, Instant};

use serde_json::json;

use crate::Mode;
use crate::fixtures::{ADMIN_KEY, stored_records};
use crate::harness::{Process, client, gateway, metrics, mock};
use crate::load::{self, Outcome, ms, percent, percentile};
use crate::stores::{Backend, PrivatePostgres, PrivateRedis, TestStore, redis_calls};
use crate::table::Row;

/// A keys-mode gateway on `store` in front of `upstream` (model `m`), the
/// admin API on, usage records written every 100 ms, and `extra` YAML.
fn config(upstream: &Process, store: &TestStore, extra: &str) -> String {
    format!(
        "server:\n  listen: 127.0.0.1:0\n  admin_key: {ADMIN_KEY}\n{}  flush_interval: 100ms\n\
         usage:\n  flush_interval: 100ms\n{extra}auth:\n  mode: keys\nproviders:\n  \
         up: {{ kind: openai, base_url: {}, api_key: sk-upstream }}\nmodels:\n  \
         m: {{ deployments: [{{ provider: up, model: mock-1 }}] }}\n",
        store.yaml(),
        upstream.url("/v1")
    )
}

/// A chat request of `key` for model `m`.
fn chat(gw: &Process, key: &str, i: usize) -> reqwest::RequestBuilder {
    client()
        .post(gw.url("/v1/chat/completions"))
        .bearer_auth(key)
        .json(&json!({"model": "m", "messages": [{"role": "user", "content": format!("outage {i}")}]}))
}

/// Requests a second in every phase.
const RATE: u32 = 200;

pub async fn run(mode: Mode) -> Vec<Row> {
    let mut rows = redis(mode).await;
    rows.extend(postgres(mode).await);
    rows
}

/// Sends traffic in quarter-second slices until Redis has seen a script call
/// for nearly every request of a slice (the limits are shared again): how long
/// that took, at most 10 s.
async fn shared_again(gw: &Process, key: &str, redis: &PrivateRedis) -> Option<Duration> {
    let started = Instant::now();
    while started.elapsed() < Duration::from_secs(10) {
        let before = redis_calls(&redis.url(), "evalsha");
        let sent = load::at_rate(RATE, Duration::from_millis(250), |i| chat(gw, key, i)).await;
        if redis_calls(&redis.url(), "evalsha") - before >= sent.len() as u64 * 9 / 10 {
            return Some(started.elapsed());
        }
    }
    None
}

/// The share served and the p99 of `outcomes`, for a table.
fn served(outcomes: &[Outcome]) -> (usize, Duration) {
    let served = outcomes.iter().filter(|o| o.ok()).count();
    (served, percentile(outcomes.iter().map(|o| o.latency), 99.0))
}

async fn redis(mode: Mode) -> Vec<Row> {
    let store = TestStore::new(Backend::Sqlite);
    let mut redis = PrivateRedis::start();
    let upstream = mock(&[]);
    let (key, _) = store.create_key("outage", &["--rpm", "1000000"]);
    let redis_yaml = format!(
        "redis:\n  url: \"{}\"\n  timeout: 50ms\n  on_error: fail_open\n",
        redis.url()
    );
    let gw = gateway(&config(&upstream, &store, &redis_yaml));
    let window = mode.pick(Duration::from_secs(3), Duration::from_secs(10));
    let baseline = load::at_rate(RATE, window, |i| chat(&gw, &key, i)).await;
    let (_, base_p99) = served(&baseline);
    let mut rows = Vec::new();
    for outage in ["stopped", "black-holed (frozen)"] {
        if outage == "stopped" {
            redis.stop();
        } else {
            redis.freeze();
        }
        let during = load::at_rate(RATE, window, |i| chat(&gw, &key, i)).await;
        if outage == "stopped" {
            redis.resume();
        } else {
            redis.thaw();
        }
        let back = shared_again(&gw, &key, &redis).await;
        let (ok, p99) = served(&during);
        let added = p99.saturating_sub(base_p99);
        rows.push(Row::new(
            format!("Redis {outage} under {RATE} requests/s: ≥ 99.9 % served, added p99 ≤ redis.timeout (50 ms) + 5 ms"),
            format!(
                "{ok} of {} served ({}); p99 {} against {} with Redis up (+{})",
                during.len(),
                percent(ok, during.len()),
                ms(p99),
                ms(base_p99),
                ms(added)
            ),
            ok * 1000 >= during.len() * 999 && added <= Duration::from_millis(55),
        ));
        rows.push(Row::new(
            "… limits shared through Redis again once it is back",
            back.map_or_else(
                || "not within 10 s".to_owned(),
                |at| format!("every request through Redis again {} after", ms(at)),
            ),
            back.is_some(),
        ));
    }
    rows
}

async fn postgres(mode: Mode) -> Vec<Row> {
    let pg = PrivatePostgres::start();
    let store = TestStore::at(&pg.url);
    let upstream = mock(&[]);
    let (key, _) = store.create_key("outage", &[]);
    let gw = gateway(&config(&upstream, &store, ""));
    let rate = 100;
    let down = mode.pick(Duration::from_secs(10), Duration::from_secs(30));
    let before = load::at_rate(rate, Duration::from_secs(2), |i| chat(&gw, &key, i)).await;
    pg.stop();
    let during = load::at_rate(rate, down, |i| chat(&gw, &key, i)).await;
    pg.resume();
    let after = load::at_rate(rate, Duration::from_secs(2), |i| chat(&gw, &key, i)).await;
    let answered = [&before, &during, &after]
        .iter()
        .map(|phase| phase.iter().filter(|o| o.ok()).count())
        .sum::<usize>();
    let (ok, _) = served(&during);
    // The records the store holds once the gateway has caught up (at most 30 s).
    let started = Instant::now();
    let mut stored = 0;
    while started.elapsed() < Duration::from_secs(30) {
        stored = stored_records(&gw).await;
        if stored >= answered as u64 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let dropped = metrics(&gw)
        .await
        .lines()
        .find_map(|line| line.strip_prefix("switchyard_usage_records_dropped_total "))
        .and_then(|v| v.trim().parse::<f64>().ok())
        .unwrap_or(0.0);
    vec![
        Row::new(
            format!(
                "PostgreSQL stopped for {} s under {rate} requests/s: a known key served throughout",
                down.as_secs()
            ),
            format!(
                "{ok} of {} served while it was down ({})",
                during.len(),
                percent(ok, during.len())
            ),
            ok == during.len(),
        ),
        Row::new(
            "… no usage record lost",
            format!(
                "{stored} records stored for {answered} answered requests, {} in {:.1} s after it was back; {dropped} dropped",
                if stored == answered as u64 {
                    "all"
                } else {
                    "not all"
                },
                started.elapsed().as_secs_f64()
            ),
            stored == answered as u64 && dropped == 0.0,
        ),
    ]
}
