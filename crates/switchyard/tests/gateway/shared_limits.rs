//! Limits shared by several gateways through Redis: a key's requests per
//! minute and its budget hold across three processes, each request makes
//! one script call, and when Redis stops `fail_open` keeps serving while
//! `fail_closed` refuses — neither waiting past `redis.timeout` — until it
//! is back.

use std::time::{Duration, Instant};

use serde_json::{Value, json};

use crate::harness::{self, Process};
use crate::stores::{
    Backend, PrivateRedis, TestStore, ask as ask_with, known, priced_config as config, redis_calls,
    shared_redis_yaml,
};

async fn ask(gw: &Process, key: &str) -> (u16, reqwest::header::HeaderMap, Value) {
    ask_with(gw, key, &hello()).await
}

/// A request with room for 100 output tokens.
fn hello() -> Value {
    json!({ "model": "gpt-4.1", "max_tokens": 100,
            "messages": [{ "role": "user", "content": "hello there" }] })
}

#[tokio::test]
async fn rpm_60_holds_across_three_gateways_with_one_script_call_a_request() {
    let store = TestStore::new(Backend::Sqlite);
    let mut redis = PrivateRedis::start();
    let yaml = format!("redis:\n  url: \"{}\"\n", redis.url());
    let mock = harness::mock(&[]);
    let (key, _) = store.create_key("shared", &["--rpm", "60"]);
    let gateways: Vec<Process> = (0..3)
        .map(|_| harness::gateway(&config(&mock, &store, &yaml)))
        .collect();
    let before = redis_calls(&redis.url(), "evalsha");
    let started = Instant::now();
    let mut ok = 0;
    for round in 0..10 {
        let asks = (0..20).map(|n| ask(&gateways[(round + n) % 3], &key));
        ok += futures_util::future::join_all(asks)
            .await
            .iter()
            .filter(|(s, _, _)| *s == 200)
            .count();
    }
    let slack = started.elapsed().as_secs() as usize;
    assert!(
        (59..=61 + slack).contains(&ok),
        "{ok} of 200 across three gateways"
    );
    // One script call per request (rpm only: nothing to settle afterwards);
    // the first call also loads the script once per gateway.
    let calls = redis_calls(&redis.url(), "evalsha") - before;
    assert!(
        (200..=203).contains(&calls),
        "{calls} EVALSHA for 200 requests"
    );
    redis.stop();
}

#[tokio::test]
async fn a_budget_holds_across_three_gateways() {
    let store = TestStore::new(Backend::Postgres);
    let mock = harness::mock(&["--completion-tokens", "100", "--latency", "50ms"]);
    let yaml = shared_redis_yaml("");
    // About 860 micro-USD reserved per request: room for five.
    let (key, _) = store.create_key("budgeted", &["--budget-usd", "0.0045"]);
    let gateways: Vec<Process> = (0..3)
        .map(|_| harness::gateway(&config(&mock, &store, &yaml)))
        .collect();
    for gw in &gateways {
        known(gw, &key).await;
    }
    let asks = (0..30).map(|n| ask(&gateways[n % 3], &key));
    let answers = futures_util::future::join_all(asks).await;
    let served = answers.iter().filter(|(s, _, _)| *s == 200).count();
    assert!(
        (1..=5).contains(&served),
        "{served} served of a budget for five"
    );
    let refused = answers.iter().find(|(s, _, _)| *s == 429).unwrap();
    assert_eq!(refused.2["error"]["code"], "budget_exceeded");
}

#[tokio::test]
async fn when_redis_stops_fail_open_serves_fail_closed_refuses_and_both_recover() {
    let store = TestStore::new(Backend::Sqlite);
    let mut redis = PrivateRedis::start();
    let mock = harness::mock(&[]);
    let (key, _) = store.create_key("outage", &["--rpm", "1000"]);
    let redis_yaml = |on_error: &str| {
        format!(
            "redis:\n  url: \"{}\"\n  timeout: 50ms\n  on_error: {on_error}\n",
            redis.url()
        )
    };
    let open = harness::gateway(&config(&mock, &store, &redis_yaml("fail_open")));
    let closed = harness::gateway(&config(&mock, &store, &redis_yaml("fail_closed")));
    assert_eq!(ask(&open, &key).await.0, 200);
    assert_eq!(ask(&closed, &key).await.0, 200);

    redis.stop();
    for _ in 0..10 {
        let start = Instant::now();
        assert_eq!(ask(&open, &key).await.0, 200);
        let open_took = start.elapsed();
        let start = Instant::now();
        let (status, headers, body) = ask(&closed, &key).await;
        let closed_took = start.elapsed();
        assert_eq!(status, 503, "{body}");
        assert_eq!(body["error"]["code"], "rate_limiter_unavailable");
        assert_eq!(headers["retry-after"], "1");
        // Never waiting on Redis past its timeout (50ms), with room for a debug build.
        assert!(open_took < Duration::from_millis(250), "{open_took:?}");
        assert!(closed_took < Duration::from_millis(250), "{closed_took:?}");
    }
    open.wait_for_log(&["redis is unreachable: limits fall back"]);
    let metrics = harness::metrics(&open).await;
    assert!(metrics.contains("switchyard_redis_up 0"), "{metrics}");
    assert!(metrics.contains("switchyard_limits_fallback_total"));

    redis.resume();
    let deadline = Instant::now() + Duration::from_secs(5);
    while ask(&closed, &key).await.0 != 200 {
        assert!(Instant::now() < deadline, "fail_closed never recovered");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    open.wait_for_log(&["redis answers again"]);
    // Shared again: the requests of both gateways meet in Redis.
    let before = redis_calls(&redis.url(), "evalsha");
    for _ in 0..5 {
        assert_eq!(ask(&open, &key).await.0, 200);
        assert_eq!(ask(&closed, &key).await.0, 200);
    }
    assert!(redis_calls(&redis.url(), "evalsha") - before >= 10);
}

#[tokio::test]
async fn a_revocation_announced_on_redis_reaches_every_gateway_at_once() {
    let store = TestStore::new(Backend::Postgres);
    let mock = harness::mock(&[]);
    let redis_yaml = shared_redis_yaml("");
    // Polls far apart: only the announcement can bring the change in time.
    let yaml =
        config(&mock, &store, &redis_yaml).replace("poll_interval: 200ms", "poll_interval: 30s");
    let (key, id) = store.create_key("announced", &[]);
    let gateways: Vec<Process> = (0..2).map(|_| harness::gateway(&yaml)).collect();
    for gw in &gateways {
        assert_eq!(ask(gw, &key).await.0, 200);
    }
    // The CLI reads the same configuration: the store, and Redis to announce on.
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("switchyard.yaml");
    std::fs::write(&path, &yaml).unwrap();
    let output = std::process::Command::new(env!("CARGO_BIN_EXE_switchyard"))
        .args(["keys", "revoke", &id, "--config", path.to_str().unwrap()])
        .output()
        .unwrap();
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    let revoked = Instant::now();
    for gw in &gateways {
        while ask(gw, &key).await.0 != 401 {
            assert!(
                revoked.elapsed() < Duration::from_secs(1),
                "not refused within a second"
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
}
