//! The response cache's Redis tier: shared by every gateway, and skipped
//! (every request a miss served upstream) while Redis is down.

use std::time::{Duration, Instant};

use serde_json::json;

use crate::cache::semantic_config;
use crate::harness::{self, *};
use crate::stores::{PrivateRedis, redis_calls, redis_cli, shared_redis_yaml};

fn cached_gateway(mock: &Process, redis_yaml: &str, backend: &str) -> Process {
    harness::gateway(&format!(
        "{}\ncache:\n  backend: {backend}\n",
        config(&mock.url("/v1"), "connect: 1s", "")
            .replace("providers:", &format!("{redis_yaml}\nproviders:"))
    ))
}

async fn ask(gw: &Process, text: &str) -> (u16, String) {
    let response = post(gw, "/v1/chat/completions", &chat(text, json!({}))).await;
    let status = response.status().as_u16();
    let cache = response.headers()["x-switchyard-cache"]
        .to_str()
        .unwrap()
        .to_owned();
    (status, cache)
}

#[tokio::test]
async fn an_answer_cached_through_one_gateway_is_a_hit_through_another() {
    let mock = harness::mock(&[]);
    let redis = shared_redis_yaml("");
    let first = cached_gateway(&mock, &redis, "redis");
    let second = cached_gateway(&mock, &redis, "memory+redis");
    let third = cached_gateway(&mock, &redis, "memory+redis");
    assert_eq!(
        ask(&first, "shared question").await,
        (200, "miss".to_owned())
    );
    // The store is written off the request's path.
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert_eq!(
        ask(&second, "shared question").await,
        (200, "hit".to_owned())
    );
    assert_eq!(
        ask(&third, "shared question").await,
        (200, "hit".to_owned())
    );
    // Filled through a memory+redis gateway, found through a redis-only one.
    assert_eq!(ask(&second, "another one").await, (200, "miss".to_owned()));
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert_eq!(ask(&first, "another one").await, (200, "hit".to_owned()));
    assert_eq!(mock_requests(&mock).await, 2);
}

#[tokio::test]
async fn with_redis_stopped_requests_still_succeed_and_hits_come_back_with_it() {
    let mock = harness::mock(&[]);
    let mut redis = PrivateRedis::start();
    let yaml = format!("redis:\n  url: \"{}\"\n  timeout: 50ms\n", redis.url());
    let gw = cached_gateway(&mock, &yaml, "redis");
    assert_eq!(ask(&gw, "before").await, (200, "miss".to_owned()));
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert_eq!(ask(&gw, "before").await, (200, "hit".to_owned()));

    redis.stop();
    for i in 0..10 {
        let started = Instant::now();
        assert_eq!(
            ask(&gw, &format!("during {i}")).await,
            (200, "miss".to_owned())
        );
        // Never waiting on Redis past its timeout: the mock answers at once.
        assert!(
            started.elapsed() < Duration::from_millis(1000),
            "{:?}",
            started.elapsed()
        );
    }
    let metrics = metrics(&gw).await;
    assert!(
        metrics.contains("switchyard_cache_backend_errors_total{backend=\"redis\",op=\"get\"}"),
        "{metrics}"
    );
    gw.wait_for_log(&["the response cache goes without its shared tier"]);

    redis.resume();
    let mut back = false;
    for _ in 0..40 {
        tokio::time::sleep(Duration::from_millis(100)).await;
        ask(&gw, "after").await;
        tokio::time::sleep(Duration::from_millis(100)).await;
        if ask(&gw, "after").await.1 == "hit" {
            back = true;
            break;
        }
    }
    assert!(back, "{}", gw.logs());
}

#[tokio::test]
async fn a_streamed_answer_read_back_from_redis_is_stored_again_made_once_keeping_its_ttl() {
    let mock = harness::mock(&[]);
    let redis = PrivateRedis::start();
    let yaml = format!("redis:\n  url: \"{}\"\n", redis.url());
    let filler = cached_gateway(&mock, &yaml, "redis");
    let streamed = post_stream(&filler, "kept as its events").await;
    assert_eq!(streamed.headers()["x-switchyard-cache"], "miss");
    let text = stream_text(&sse_data(&streamed.text().await.unwrap()));
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert_eq!(redis_calls(&redis.url(), "set"), 1);

    // A Redis-only gateway keeps nothing in memory: each hit reads Redis.
    let reader = cached_gateway(&mock, &yaml, "redis");
    for _ in 0..3 {
        let response = post(
            &reader,
            "/v1/chat/completions",
            &chat("kept as its events", json!({})),
        )
        .await;
        assert_eq!(response.headers()["x-switchyard-cache"], "hit");
        let body: serde_json::Value = response.json().await.unwrap();
        assert_eq!(body["choices"][0]["message"]["content"], text.as_str());
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    // The first hit stored the completion in the events' place; the next
    // two found it made.
    assert_eq!(redis_calls(&redis.url(), "set"), 2);
    let keys = redis_cli(&redis.url(), &["--scan", "--pattern", "*:c:*"]);
    let key = keys.lines().find(|k| !k.ends_with(":vectors")).unwrap();
    let left: i64 = redis_cli(&redis.url(), &["PTTL", key])
        .trim()
        .parse()
        .unwrap();
    assert!(left > 3_000_000 && left <= 3_600_000, "{left} ms left");
    assert_eq!(mock_requests(&mock).await, 1);
}

#[tokio::test]
async fn embedding_items_cached_through_one_gateway_serve_a_batch_through_another() {
    let mock = harness::mock(&[]);
    let redis = shared_redis_yaml("");
    let first = cached_gateway(&mock, &redis, "redis");
    let second = cached_gateway(&mock, &redis, "redis");
    let batch = |items: &[&str]| json!({"model": "gpt-4.1", "input": items});
    let response = post(&first, "/v1/embeddings", &batch(&["a b", "c d"])).await;
    assert_eq!(response.status(), 200);
    tokio::time::sleep(Duration::from_millis(200)).await;
    let response = post(&second, "/v1/embeddings", &batch(&["c d", "e f", "a b"])).await;
    assert_eq!(response.status(), 200);
    let body: serde_json::Value = response.json().await.unwrap();
    assert_eq!(body["data"].as_array().unwrap().len(), 3);
    let sent = received(&mock).await;
    assert_eq!(sent.last().unwrap()["body"]["input"], json!(["e f"]));
    assert_eq!(mock_requests(&mock).await, 2);
}

#[tokio::test]
async fn a_paraphrase_of_a_prompt_cached_through_one_gateway_hits_through_another() {
    let mock = harness::mock(&[]);
    let redis = shared_redis_yaml("");
    let yaml = semantic_config(&mock, &redis, "redis");
    let first = harness::gateway(&yaml);
    let second = harness::gateway(&yaml);
    assert_eq!(
        ask(&first, "tell me what the capital city of france is today").await,
        (200, "miss".to_owned())
    );
    // The vector reaches the other gateway through Redis' stream.
    let mut arrived = false;
    for _ in 0..50 {
        if metrics(&second)
            .await
            .contains("switchyard_cache_semantic_vectors 1")
        {
            arrived = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(arrived, "{}", second.logs());
    assert_eq!(
        ask(&second, "tell me now what the capital city of france is").await,
        (200, "semantic".to_owned())
    );
    let by_path = get_json(&mock.url("/mock/stats")).await["by_path"].clone();
    assert_eq!(by_path["/v1/chat/completions"], 1, "{by_path}");
}
