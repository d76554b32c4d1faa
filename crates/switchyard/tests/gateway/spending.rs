//! Rate limits and budgets of virtual keys and teams: requests and tokens
//! per minute refused at the limit with OpenAI's headers, a budget that
//! concurrent requests cannot overspend, and a stored spend that equals the
//! sum of the requests' costs to the micro-dollar, and spend alerts sent once
//! per threshold to a webhook. Each test runs on SQLite and on PostgreSQL.

use std::time::{Duration, Instant};

use serde_json::{Value, json};

use crate::harness::{self, client};
use crate::stores::{Backend, TestStore, ask, known, on_both_stores, priced_config as config};

fn hello() -> Value {
    json!({ "model": "gpt-4.1", "messages": [{ "role": "user", "content": "hello there" }] })
}

/// The cost of a response's usage at 2/8 USD per million tokens, in micro-USD
/// rounded up, as the gateway computes it.
fn cost_of(body: &Value) -> i64 {
    let usage = &body["usage"];
    let (input, output) = (
        usage["prompt_tokens"].as_i64().unwrap(),
        usage["completion_tokens"].as_i64().unwrap(),
    );
    (input * 2_000_000 + output * 8_000_000 + 999_999) / 1_000_000
}

/// The key's spend in its budget period, as the store holds it (micro-USD).
fn stored_spend(store: &TestStore, id: &str) -> i64 {
    let shown: Value = serde_json::from_str(&store.cli(&["keys", "show", id])).unwrap();
    (shown["spent_usd"].as_f64().unwrap() * 1e6).round() as i64
}

on_both_stores!(
    a_key_with_rpm_60_gets_60_of_200_rapid_requests,
    tpm_is_refused_once_reported_usage_reaches_it,
    a_teams_limit_is_shared_by_its_keys,
    concurrent_requests_cannot_overspend_and_the_store_holds_the_exact_sum,
    failed_requests_cost_nothing_and_cut_streams_what_they_used,
    each_spend_threshold_is_alerted_once_across_replicas,
);

async fn a_key_with_rpm_60_gets_60_of_200_rapid_requests(backend: Backend) {
    let store = TestStore::new(backend);
    let mock = harness::mock(&[]);
    let gw = harness::gateway(&config(&mock, &store, ""));
    let (key, _) = store.create_key("rpm", &["--rpm", "60"]);
    known(&gw, &key).await;
    let started = Instant::now();
    let mut answers = Vec::new();
    let body = hello();
    for _ in 0..10 {
        let batch: Vec<_> = (0..20).map(|_| ask(&gw, &key, &body)).collect();
        answers.extend(futures_util::future::join_all(batch).await);
    }
    let took = started.elapsed();
    let ok = answers.iter().filter(|(s, _, _)| *s == 200).count();
    // One more comes free each second of the run.
    let slack = took.as_secs() as usize;
    assert!((60..=60 + slack).contains(&ok), "{ok} in {took:?}");
    let (_, headers, _) = answers.iter().find(|(s, _, _)| *s == 200).unwrap();
    assert_eq!(headers["x-ratelimit-limit-requests"], "60");
    let refused: Vec<_> = answers.iter().filter(|(s, _, _)| *s == 429).collect();
    assert_eq!(refused.len(), 200 - ok);
    let (_, headers, body) = refused[0];
    assert_eq!(body["error"]["code"], "rate_limit_exceeded", "{body}");
    assert_eq!(body["error"]["type"], "requests");
    assert_eq!(headers["x-ratelimit-remaining-requests"], "0");
    let retry: u64 = headers["retry-after"].to_str().unwrap().parse().unwrap();
    assert!((1..=60).contains(&retry), "{retry}");
    // A key without limits beside it is not slowed.
    let (free, _) = store.create_key("free", &[]);
    known(&gw, &free).await;
    let (status, headers, _) = ask(&gw, &free, &hello()).await;
    assert_eq!(status, 200);
    assert!(!headers.contains_key("x-ratelimit-limit-requests"));
}

async fn tpm_is_refused_once_reported_usage_reaches_it(backend: Backend) {
    let store = TestStore::new(backend);
    let mock = harness::mock(&["--completion-tokens", "100"]);
    let gw = harness::gateway(&config(&mock, &store, ""));
    let (key, _) = store.create_key("tpm", &["--tpm", "1000"]);
    known(&gw, &key).await;
    let mut used = 0;
    let mut refused = None;
    for _ in 0..20 {
        let (status, headers, body) = ask(&gw, &key, &hello()).await;
        if status == 429 {
            refused = Some((headers, body));
            break;
        }
        assert_eq!(status, 200, "{body}");
        assert_eq!(headers["x-ratelimit-limit-tokens"], "1000");
        used += body["usage"]["total_tokens"].as_u64().unwrap();
    }
    let (headers, body) = refused.expect("never refused");
    // Refused once the reported usage left no room for another request.
    assert!((900..=1100).contains(&used), "{used}");
    assert_eq!(body["error"]["type"], "tokens", "{body}");
    assert_eq!(headers["x-ratelimit-remaining-tokens"], "0");
    assert!(headers.contains_key("retry-after"));
}

async fn a_teams_limit_is_shared_by_its_keys(backend: Backend) {
    let store = TestStore::new(backend);
    let mock = harness::mock(&[]);
    let gw = harness::gateway(&config(&mock, &store, ""));
    let team: Value = serde_json::from_str(&store.cli(&[
        "teams", "create", "--name", "shared", "--rpm", "10", "--json",
    ]))
    .unwrap();
    let team = team["id"].as_str().unwrap();
    let (a, _) = store.create_key("a", &["--team", team]);
    let (b, _) = store.create_key("b", &["--team", team]);
    known(&gw, &a).await;
    known(&gw, &b).await;
    let mut ok = 0;
    for n in 0..30 {
        let key = if n % 2 == 0 { &a } else { &b };
        if ask(&gw, key, &hello()).await.0 == 200 {
            ok += 1;
        }
    }
    assert!((10..=11).contains(&ok), "{ok}");
}

async fn concurrent_requests_cannot_overspend_and_the_store_holds_the_exact_sum(backend: Backend) {
    let store = TestStore::new(backend);
    let mock = harness::mock(&["--completion-tokens", "100", "--latency", "50ms"]);
    let gw = harness::gateway(&config(&mock, &store, ""));
    // Each request reserves its prompt estimate at 2 USD and 100 output
    // tokens at 8 USD per million: about 860 micro-USD. The budget allows
    // ten such reservations.
    let body = json!({ "model": "gpt-4.1", "max_tokens": 100,
                       "messages": [{ "role": "user", "content": "hello there" }] });
    let (probe_key, _) = store.create_key("probe", &["--budget-usd", "1"]);
    known(&gw, &probe_key).await;
    let (_, headers, _) = ask(&gw, &probe_key, &body).await;
    let left: f64 = headers["x-switchyard-budget-remaining"]
        .to_str()
        .unwrap()
        .parse()
        .unwrap();
    let reservation = 1_000_000 - (left * 1e6).round() as i64;
    let budget = reservation * 10 + reservation / 2;
    let (key, id) = store.create_key(
        "budgeted",
        &[
            "--budget-usd",
            &format!("{:.6}", budget as f64 / 1e6),
            "--budget-period",
            "month",
        ],
    );
    known(&gw, &key).await;
    let answers = futures_util::future::join_all((0..50).map(|_| ask(&gw, &key, &body))).await;
    let served: Vec<&Value> = answers
        .iter()
        .filter(|(s, _, _)| *s == 200)
        .map(|(_, _, b)| b)
        .collect();
    let refused: Vec<&Value> = answers
        .iter()
        .filter(|(s, _, _)| *s == 429)
        .map(|(_, _, b)| b)
        .collect();
    assert_eq!(served.len() + refused.len(), 50);
    assert!(served.len() <= 10, "{} served", served.len());
    assert!(!served.is_empty());
    assert_eq!(
        refused[0]["error"]["code"], "budget_exceeded",
        "{}",
        refused[0]
    );
    let expected: i64 = served.iter().map(|b| cost_of(b)).sum();
    assert!(expected <= budget);
    // Written within the flush interval, exactly.
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        let stored = stored_spend(&store, &id);
        if stored == expected {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "stored {stored}, expected {expected}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    // A gateway started now knows the spend: the same key is refused there too.
    let fresh = harness::gateway(&config(&mock, &store, ""));
    let (status, _, body) = ask(&fresh, &key, &body).await;
    assert_eq!(status, 429, "{body}");
}

async fn failed_requests_cost_nothing_and_cut_streams_what_they_used(backend: Backend) {
    let store = TestStore::new(backend);
    let mock = harness::mock(&["--completion-tokens", "200"]);
    let gw = harness::gateway(&config(&mock, &store, ""));
    let (key, id) = store.create_key("settles", &["--budget-usd", "10"]);
    known(&gw, &key).await;
    let (status, _, body) = ask(&gw, &key, &hello()).await;
    assert_eq!(status, 200);
    let first = cost_of(&body);
    tokio::time::sleep(Duration::from_millis(400)).await;
    assert_eq!(stored_spend(&store, &id), first);

    // Upstream failures: nothing is spent.
    harness::set_faults(&mock, json!({ "error_rate": 1.0, "error_status": 500 })).await;
    for _ in 0..3 {
        let (status, _, _) = ask(&gw, &key, &hello()).await;
        assert_eq!(status, 502);
    }
    tokio::time::sleep(Duration::from_millis(400)).await;
    assert_eq!(stored_spend(&store, &id), first);

    // A stream cut mid-way (another provider, on the same store): more than
    // nothing, less than the whole answer.
    let cutting = harness::mock(&["--completion-tokens", "200", "--stream-cut-rate", "1"]);
    let other = harness::gateway(&config(&cutting, &store, ""));
    let response = client()
        .post(other.url("/v1/chat/completions"))
        .bearer_auth(&key)
        .json(&json!({ "model": "gpt-4.1", "stream": true,
                       "messages": [{ "role": "user", "content": "hello there" }] }))
        .send()
        .await
        .unwrap();
    let _ = response.text().await;
    tokio::time::sleep(Duration::from_millis(400)).await;
    let cut = stored_spend(&store, &id) - first;
    assert!(
        cut > 0 && cut < first,
        "cut stream cost {cut}, whole answer {first}"
    );
}

/// A webhook receiver on 127.0.0.1: every JSON body posted to it, in order.
/// It answers the first post 503 (so the sender must try again), then 200.
async fn webhook() -> (String, std::sync::Arc<std::sync::Mutex<Vec<Value>>>) {
    use axum::routing::post;
    let posts = std::sync::Arc::new(std::sync::Mutex::new(Vec::<Value>::new()));
    let seen = posts.clone();
    let app = axum::Router::new().route(
        "/hook",
        post(move |axum::Json(body): axum::Json<Value>| {
            let seen = seen.clone();
            async move {
                let mut posts = seen.lock().unwrap();
                posts.push(body);
                if posts.len() == 1 {
                    axum::http::StatusCode::SERVICE_UNAVAILABLE
                } else {
                    axum::http::StatusCode::OK
                }
            }
        }),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}/hook", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, app).await });
    (url, posts)
}

/// A key spends past 50 % and 75 % of its budget on one replica, then more on
/// a second: the webhook gets exactly one alert per threshold (the first post
/// refused and tried again), however often either replica flushes.
async fn each_spend_threshold_is_alerted_once_across_replicas(backend: Backend) {
    let store = TestStore::new(backend);
    let mock = harness::mock(&["--completion-tokens", "10"]);
    let (url, posts) = webhook().await;
    let extra = format!("alerts:\n  webhook_url: {url}\n  thresholds: [75, 50]\n");
    let gw = harness::gateway(&config(&mock, &store, &extra));
    let other = harness::gateway(&config(&mock, &store, &extra));
    let body = json!({ "model": "gpt-4.1", "max_tokens": 10,
                       "messages": [{ "role": "user", "content": "hello there" }] });
    let (probe, _) = store.create_key("probe", &[]);
    known(&gw, &probe).await;
    let (_, _, answer) = ask(&gw, &probe, &body).await;
    let each = cost_of(&answer);
    // Twelve requests' worth: nine on one replica (75 %), one on the other.
    let budget = format!("{:.6}", (each * 12) as f64 / 1e6);
    let (key, id) = store.create_key("budgeted", &["--budget-usd", &budget]);
    known(&gw, &key).await;
    known(&other, &key).await;
    for _ in 0..9 {
        assert_eq!(ask(&gw, &key, &body).await.0, 200);
    }
    assert_eq!(ask(&other, &key, &body).await.0, 200);
    let deadline = Instant::now() + Duration::from_secs(10);
    while posts.lock().unwrap().len() < 3 {
        assert!(Instant::now() < deadline, "{:?}", posts.lock().unwrap());
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    // Both replicas flush spend every 100 ms: give them a few rounds.
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let posts = posts.lock().unwrap().clone();
    assert_eq!(posts.len(), 3, "{posts:?}");
    let mut delivered: Vec<i64> = posts[1..]
        .iter()
        .map(|p| p["threshold_pct"].as_i64().unwrap())
        .collect();
    delivered.sort_unstable();
    assert_eq!(delivered, [50, 75], "{posts:?}");
    // The refused post was sent again, the same.
    assert!(posts[1..].contains(&posts[0]), "{posts:?}");
    for post in &posts {
        assert_eq!(post["scope"], "key");
        assert_eq!(post["id"], id.as_str());
        assert!(
            post["text"].as_str().unwrap().contains("budget alert"),
            "{post}"
        );
        assert!(post["spent_usd"].as_f64().unwrap() <= post["budget_usd"].as_f64().unwrap());
    }
}

/// A webhook that takes every post and answers none while `hanging`: its URL,
/// the posts, and the switch.
async fn hanging_webhook() -> (
    String,
    std::sync::Arc<std::sync::Mutex<Vec<Value>>>,
    std::sync::Arc<std::sync::atomic::AtomicBool>,
) {
    use axum::routing::post;
    use std::sync::atomic::{AtomicBool, Ordering};
    let posts = std::sync::Arc::new(std::sync::Mutex::new(Vec::<Value>::new()));
    let hanging = std::sync::Arc::new(AtomicBool::new(true));
    let (seen, hang) = (posts.clone(), hanging.clone());
    let app = axum::Router::new().route(
        "/hook",
        post(move |axum::Json(body): axum::Json<Value>| {
            let (seen, hang) = (seen.clone(), hang.clone());
            async move {
                seen.lock().unwrap().push(body);
                if hang.load(Ordering::SeqCst) {
                    tokio::time::sleep(Duration::from_secs(3600)).await;
                }
                axum::http::StatusCode::OK
            }
        }),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}/hook", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, app).await });
    (url, posts, hanging)
}

/// The webhook answers nothing while the gateway stops: the alert it was
/// sending is given back in the store, and the next process sends it once
/// the webhook answers (nothing lost, nothing sent twice).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_alert_unsent_at_shutdown_is_sent_by_the_next_process() {
    let store = TestStore::new(Backend::Sqlite);
    let mock = harness::mock(&["--completion-tokens", "10"]);
    let (url, posts, hanging) = hanging_webhook().await;
    let extra = format!(
        "alerts:\n  webhook_url: {url}\n  thresholds: [50]\n  timeout: 300ms\n  retries: 10\n"
    );
    let mut gw = harness::gateway(&config(&mock, &store, &extra));
    // Ten tokens at most: the budget reserves little per request.
    let hello = || {
        json!({ "model": "gpt-4.1", "max_tokens": 10,
                           "messages": [{ "role": "user", "content": "hello there" }] })
    };
    let (probe, _) = store.create_key("probe", &[]);
    known(&gw, &probe).await;
    let (_, _, answer) = ask(&gw, &probe, &hello()).await;
    let budget = format!("{:.6}", (cost_of(&answer) * 12) as f64 / 1e6);
    let (key, id) = store.create_key("budgeted", &["--budget-usd", &budget]);
    known(&gw, &key).await;
    for _ in 0..7 {
        assert_eq!(ask(&gw, &key, &hello()).await.0, 200);
    }
    let deadline = Instant::now() + Duration::from_secs(10);
    while posts.lock().unwrap().is_empty() {
        assert!(Instant::now() < deadline, "the alert was never posted");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    gw.terminate();
    assert!(gw.wait_exit(Duration::from_secs(20)).success());
    assert!(
        gw.logs().contains("given back to be sent again"),
        "{}",
        gw.logs()
    );
    let tried = posts.lock().unwrap().len();

    hanging.store(false, std::sync::atomic::Ordering::SeqCst);
    let gw = harness::gateway(&config(&mock, &store, &extra));
    known(&gw, &key).await;
    assert_eq!(ask(&gw, &key, &hello()).await.0, 200);
    let deadline = Instant::now() + Duration::from_secs(10);
    while posts.lock().unwrap().len() == tried {
        assert!(Instant::now() < deadline, "the alert was not sent again");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    tokio::time::sleep(Duration::from_millis(1000)).await;
    let posts = posts.lock().unwrap().clone();
    assert_eq!(posts.len(), tried + 1, "{posts:?}");
    let last = posts.last().unwrap();
    assert_eq!(last["id"], id.as_str());
    assert_eq!(last["threshold_pct"], 50);
}
