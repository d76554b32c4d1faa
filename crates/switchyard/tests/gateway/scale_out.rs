//! Scale-out: three gateways on one PostgreSQL and one Redis, the load spread
//! over them. A key's requests per minute hold in total; an answer cached
//! through one replica is a hit through another; a key revoked through one
//! is refused by every replica within a second; and SIGTERM to one replica
//! under load loses no request that had started there, while the others keep
//! serving, and no usage record. A replica added on a warm store is ready
//! within a second, a breaker that opens on one replica opens on the others,
//! and memory stays flat under constant load.

use std::time::{Duration, Instant};

use serde_json::{Value, json};

use crate::harness::{self, Process, client};
use crate::stores::{
    Backend, PRICED_ADMIN_KEY, TestStore, ask, known, priced_config, shared_redis_yaml,
};

/// A chat request of `key` asking `text`: its status and `x-switchyard-cache`.
async fn chat(gw: &Process, key: &str, text: &str) -> (u16, String) {
    let body = json!({ "model": "gpt-4.1", "messages": [{ "role": "user", "content": text }] });
    let (status, headers, _) = ask(gw, key, &body).await;
    let cache = headers
        .get("x-switchyard-cache")
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default()
        .to_owned();
    (status, cache)
}

/// The usage records of `key_id`, through `gw`'s admin API.
async fn records_of(gw: &Process, key_id: &str) -> usize {
    let mut count = 0;
    let mut path = format!("/admin/usage?limit=200&key_id={key_id}");
    loop {
        let response = client()
            .get(gw.url(&path))
            .bearer_auth(PRICED_ADMIN_KEY)
            .send()
            .await
            .unwrap_or_else(|e| panic!("GET {path}: {e}"));
        let status = response.status();
        let text = response.text().await.unwrap_or_default();
        assert_eq!(status, 200, "GET {path}: {text}");
        let page: Value = serde_json::from_str(&text).unwrap_or_else(|e| panic!("{e}: {text}"));
        count += page["data"].as_array().unwrap().len();
        match page["next_cursor"].as_str() {
            Some(next) => path = format!("/admin/usage?limit=200&key_id={key_id}&cursor={next}"),
            None => return count,
        }
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn three_replicas_on_one_postgres_and_one_redis_agree() {
    let store = TestStore::new(Backend::Postgres);
    // Answers take a while, so that a SIGTERM finds requests under way.
    let mock = harness::mock(&["--latency", "300ms"]);
    let yaml = shared_redis_yaml("cache:\n  backend: memory+redis\n");
    let mut gateways: Vec<Process> = (0..3)
        .map(|_| harness::gateway(&priced_config(&mock, &store, &yaml)))
        .collect();
    let (limited, _) = store.create_key("limited", &["--rpm", "120"]);
    let (app, app_id) = store.create_key("app", &[]);
    let (doomed, doomed_id) = store.create_key("doomed", &[]);
    for gw in &gateways {
        for key in [&limited, &app, &doomed] {
            known(gw, key).await;
        }
    }

    // 360 requests of a 120-rpm key, spread over the three: 120 pass in
    // total (the limit refills 2 a second while they run).
    let started = Instant::now();
    let asks = (0..360).map(|n| {
        let (gw, key) = (&gateways[n % 3], &limited);
        async move { chat(gw, key, &format!("limited {n}")).await.0 }
    });
    let statuses = futures_util::future::join_all(asks).await;
    let passed = statuses.iter().filter(|s| **s == 200).count();
    let refilled = (started.elapsed().as_secs_f64() * 2.0).ceil() as usize;
    assert!(
        (119..=121 + refilled).contains(&passed),
        "{passed} of 360 passed a 120 rpm limit across three gateways"
    );
    assert!(
        statuses.iter().all(|s| *s == 200 || *s == 429),
        "{statuses:?}"
    );

    // Cached through the first, a hit through the other two.
    assert_eq!(
        chat(&gateways[0], &app, "shared").await,
        (200, "miss".to_owned())
    );
    let mut answered = 1;
    for gw in &gateways[1..] {
        let deadline = Instant::now() + Duration::from_secs(2);
        loop {
            let (status, cache) = chat(gw, &app, "shared").await;
            assert_eq!(status, 200);
            answered += 1;
            if cache == "hit" {
                break;
            }
            assert!(
                Instant::now() < deadline,
                "never a hit through another replica"
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    // Revoked through the first: refused by every replica within a second.
    let response = client()
        .delete(gateways[0].url(&format!("/admin/keys/{doomed_id}")))
        .bearer_auth(PRICED_ADMIN_KEY)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    let revoked = Instant::now();
    for gw in &gateways {
        loop {
            if chat(gw, &doomed, "still there?").await.0 == 401 {
                break;
            }
            assert!(
                revoked.elapsed() < Duration::from_secs(1),
                "a replica still took a revoked key"
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
    assert!(revoked.elapsed() < Duration::from_secs(1));

    // SIGTERM to the third while 60 requests are under way on all three: each
    // is answered, the other two serve on, and every answer has its record.
    let (first_two, third) = gateways.split_at_mut(2);
    let third = &mut third[0];
    let under_way = (0..60).map(|n| {
        let gw: &Process = if n % 3 == 2 {
            &*third
        } else {
            &first_two[n % 3]
        };
        let key = &app;
        async move { chat(gw, key, &format!("under way {n}")).await.0 }
    });
    let terminate = async {
        tokio::time::sleep(Duration::from_millis(100)).await;
        third.terminate();
    };
    let (statuses, ()) = tokio::join!(futures_util::future::join_all(under_way), terminate);
    assert!(statuses.iter().all(|s| *s == 200), "{statuses:?}");
    assert!(third.wait_exit(Duration::from_secs(20)).success());
    let after: Vec<u16> = futures_util::future::join_all((0..20).map(|n| {
        let (gw, key) = (&first_two[n % 2], &app);
        async move { chat(gw, key, &format!("after {n}")).await.0 }
    }))
    .await;
    assert!(after.iter().all(|s| *s == 200), "{after:?}");
    answered += statuses.len() + after.len();
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let stored = records_of(&first_two[0], &app_id).await;
        if stored == answered {
            break;
        }
        assert!(stored < answered, "{stored} records for {answered} answers");
        assert!(
            Instant::now() < deadline,
            "{stored} of {answered} records stored"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// A replica added to a running fleet (its store warm: migrated, keys in it)
/// is ready, `/ready` answering 200, within a second of its start.
#[tokio::test]
async fn a_new_replica_is_ready_within_a_second_on_a_warm_store() {
    let store = TestStore::new(Backend::Postgres);
    let mock = harness::mock(&[]);
    let yaml = priced_config(&mock, &store, &shared_redis_yaml(""));
    for n in 0..50 {
        store.create_key(&format!("k{n}"), &[]);
    }
    drop(harness::gateway(&yaml));
    let started = Instant::now();
    let gw = harness::gateway(&yaml);
    loop {
        let response = client().get(gw.url("/ready")).send().await.unwrap();
        if response.status() == 200 {
            break;
        }
        assert!(
            started.elapsed() < Duration::from_secs(1),
            "not ready after a second"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let took = started.elapsed();
    assert!(took < Duration::from_secs(1), "ready after {took:?}");
}

/// The circuit of `deployment` as `gw`'s `/admin/deployments` shows it.
async fn circuit(gw: &Process, deployment: &str) -> String {
    let response = client()
        .get(gw.url("/admin/deployments"))
        .bearer_auth(PRICED_ADMIN_KEY)
        .send()
        .await
        .unwrap();
    let body: Value = response.json().await.unwrap();
    body["models"][0]["deployments"]
        .as_array()
        .unwrap()
        .iter()
        .find(|d| d["deployment"] == deployment)
        .map(|d| d["circuit"].as_str().unwrap().to_owned())
        .unwrap()
}

/// A breaker that opens on one replica opens on the other within a second,
/// before that one has sent the failing deployment anything.
#[tokio::test]
async fn a_breaker_opened_on_one_replica_opens_on_the_others() {
    let (bad, good) = (harness::mock(&["--error-rate", "1"]), harness::mock(&[]));
    let yaml = format!(
        "server:\n  listen: 127.0.0.1:0\n  admin_key: {PRICED_ADMIN_KEY}\nauth:\n  mode: keys\nkeys:\n  - key: {key}\nproviders:\n  bad: {{ kind: openai, base_url: {}, api_key: k }}\n  good: {{ kind: openai, base_url: {}, api_key: k }}\nmodels:\n  gpt-4.1:\n    strategy: round_robin\n    deployments:\n      - {{ provider: bad, model: m }}\n      - {{ provider: good, model: m }}\ncircuit_breaker: {{ consecutive_failures: 2, cooldown: 1m }}\n{}",
        bad.url("/v1"),
        good.url("/v1"),
        shared_redis_yaml(""),
        key = harness::CLIENT_KEY,
    );
    let (first, second) = (harness::gateway(&yaml), harness::gateway(&yaml));
    for n in 0..20 {
        if circuit(&first, "bad/m").await == "open" {
            break;
        }
        assert_eq!(
            chat(&first, harness::CLIENT_KEY, &format!("q{n}")).await.0,
            200
        );
    }
    assert_eq!(circuit(&first, "bad/m").await, "open");
    let opened = Instant::now();
    while circuit(&second, "bad/m").await != "open" {
        assert!(
            opened.elapsed() < Duration::from_secs(1),
            "the other replica's breaker stayed closed"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let before = harness::mock_requests(&bad).await;
    assert_eq!(
        chat(&second, harness::CLIENT_KEY, "served by good").await.0,
        200
    );
    assert_eq!(
        harness::mock_requests(&bad).await,
        before,
        "the open deployment was still sent a request"
    );
}

/// Under constant load (a virtual key's limits checked, its usage logged to
/// PostgreSQL, its answers' limits in Redis), resident memory levels off once
/// warm: over 15 s more of the same load it grows by less than 8 MiB.
#[tokio::test(flavor = "multi_thread")]
async fn memory_stays_flat_under_constant_load() {
    let store = TestStore::new(Backend::Postgres);
    let mock = harness::mock(&[]);
    let gw = harness::gateway(&priced_config(&mock, &store, &shared_redis_yaml("")));
    let (key, _) = store.create_key("steady", &["--rpm", "100000000", "--tpm", "1000000000"]);
    known(&gw, &key).await;
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let workers: Vec<_> = (0..16)
        .map(|worker| {
            let (url, key, stop) = (gw.url("/v1/chat/completions"), key.clone(), stop.clone());
            tokio::spawn(async move {
                let mut n = 0u64;
                while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                    let body = json!({ "model": "gpt-4.1",
                        "messages": [{ "role": "user", "content": format!("w{worker} n{n}") }] });
                    let response = client()
                        .post(&url)
                        .bearer_auth(&key)
                        .json(&body)
                        .send()
                        .await;
                    assert_eq!(response.unwrap().status(), 200);
                    n += 1;
                }
                n
            })
        })
        .collect();
    tokio::time::sleep(Duration::from_secs(5)).await;
    let warm = gw.rss_kib();
    let mut most = warm;
    for _ in 0..15 {
        tokio::time::sleep(Duration::from_secs(1)).await;
        most = most.max(gw.rss_kib());
    }
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    let mut sent = 0;
    for worker in workers {
        sent += worker.await.unwrap();
    }
    let grew = most.saturating_sub(warm);
    eprintln!("{sent} requests; resident {warm} KiB once warm, at most {most} KiB after");
    assert!(sent > 2_000, "only {sent} requests");
    assert!(
        grew < 8 * 1024,
        "resident memory grew {grew} KiB under constant load"
    );
}
