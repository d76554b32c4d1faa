//! Which deployment serves: aliases, and `x-switchyard-max-cost`.

use serde_json::{Value, json};

use crate::harness::*;

/// Model `m` (alias `m-latest`) on a cheap and a dear deployment of one mock.
fn priced_gateway(mock: &Process) -> Process {
    gateway(&format!(
        "server:\n  listen: 127.0.0.1:0\nauth:\n  mode: keys\nkeys:\n  - key: {CLIENT_KEY}\nproviders:\n  up: {{ kind: openai, base_url: {}, api_key: k }}\nmodels:\n  m:\n    aliases: [m-latest]\n    strategy: round_robin\n    deployments:\n      - {{ provider: up, model: cheap, price: {{ input: 0.1, output: 0.4 }} }}\n      - {{ provider: up, model: dear, price: {{ input: 30.0, output: 60.0 }} }}\n",
        mock.url("/v1")
    ))
}

async fn ask(gw: &Process, model: &str, max_cost: Option<&str>) -> reqwest::Response {
    let mut request = client()
        .post(gw.url("/v1/chat/completions"))
        .bearer_auth(CLIENT_KEY)
        .json(&json!({"model": model, "messages": [{"role": "user", "content": "hi"}]}));
    if let Some(max) = max_cost {
        request = request.header("x-switchyard-max-cost", max);
    }
    request.send().await.unwrap()
}

#[tokio::test]
async fn an_alias_reaches_its_model_and_is_listed() {
    let mock = mock(&[]);
    let gw = priced_gateway(&mock);
    assert_eq!(ask(&gw, "m-latest", None).await.status(), 200);
    let models = get_json(&gw.url("/v1/models")).await;
    let ids: Vec<&str> = models["data"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["id"].as_str().unwrap())
        .collect();
    assert_eq!(ids, ["m", "m-latest"]);
}

#[tokio::test]
async fn a_cost_cap_leaves_out_the_dear_deployments() {
    let mock = mock(&[]);
    let gw = priced_gateway(&mock);
    // About 20 prompt tokens and 256 expected completion tokens: the cheap one
    // costs about 0.0001 USD, the dear one about 0.016.
    for _ in 0..6 {
        let response = ask(&gw, "m", Some("0.001")).await;
        assert_eq!(response.status(), 200);
        assert_eq!(response.headers()["x-switchyard-model"], "cheap");
    }
    let refused = ask(&gw, "m", Some("0.00001")).await;
    assert_eq!(refused.status(), 400);
    let body: Value = refused.json().await.unwrap();
    assert_eq!(body["error"]["code"], "max_cost_exceeded");
    assert_eq!(body["error"]["param"], "x-switchyard-max-cost");
    let bad = ask(&gw, "m", Some("cheap please")).await;
    assert_eq!(bad.status(), 400);
    assert_eq!(received(&mock).await.len(), 6);
}

#[tokio::test]
async fn requests_sharing_a_long_prompt_prefix_stick_to_one_deployment() {
    let (one, two) = (mock(&[]), mock(&[]));
    let gw = gateway(&format!(
        "server:\n  listen: 127.0.0.1:0\nauth:\n  mode: keys\nkeys:\n  - key: {CLIENT_KEY}\nproviders:\n  one: {{ kind: openai, base_url: {}, api_key: k }}\n  two: {{ kind: openai, base_url: {}, api_key: k }}\nmodels:\n  m:\n    strategy: round_robin\n    affinity: {{ prefix_bytes: 200 }}\n    deployments:\n      - {{ provider: one, model: mock-1 }}\n      - {{ provider: two, model: mock-1 }}\n",
        one.url("/v1"),
        two.url("/v1")
    ));
    let system = "You are the dispatcher's assistant. ".repeat(10);
    let ask = |system: &str, question: &str| {
        json!({"model": "m", "messages": [
            {"role": "system", "content": system},
            {"role": "user", "content": question},
        ]})
    };
    let mut served = Vec::new();
    for i in 0..6 {
        let response = post(
            &gw,
            "/v1/chat/completions",
            &ask(&system, &format!("question {i}")),
        )
        .await;
        assert_eq!(response.status(), 200);
        served.push(
            response.headers()["x-switchyard-provider"]
                .to_str()
                .unwrap()
                .to_owned(),
        );
    }
    assert!(
        served.iter().all(|p| *p == served[0]),
        "one deployment: {served:?}"
    );
    // Without the shared prefix, round robin alternates.
    let mut spread = Vec::new();
    for i in 0..4 {
        let response = post(&gw, "/v1/chat/completions", &ask(&format!("{i}"), "short")).await;
        spread.push(
            response.headers()["x-switchyard-provider"]
                .to_str()
                .unwrap()
                .to_owned(),
        );
    }
    assert!(
        spread.contains(&"one".to_owned()) && spread.contains(&"two".to_owned()),
        "{spread:?}"
    );
}

#[tokio::test]
async fn routes_pick_the_model_from_the_task_and_the_prompt_size() {
    let mock = mock(&[]);
    let gw = gateway(&format!(
        "server:\n  listen: 127.0.0.1:0\nauth:\n  mode: keys\nkeys:\n  - {{ name: app, key: {CLIENT_KEY} }}\nproviders:\n  up: {{ kind: openai, base_url: {}, api_key: k }}\nmodels:\n  small:\n    deployments: [{{ provider: up, model: small-upstream }}]\n  large:\n    deployments: [{{ provider: up, model: large-upstream }}]\nroutes:\n  - when: {{ task: [summarize, classify] }}\n    model: small\n  - when: {{ min_prompt_tokens: 200 }}\n    model: large\n  - when: {{ key: [app] }}\n    strategy: cost\n",
        mock.url("/v1")
    ));
    let served = |response: &reqwest::Response| {
        response.headers()["x-switchyard-model"]
            .to_str()
            .unwrap()
            .to_owned()
    };
    let body = |model: &str, text: &str, extra: Value| {
        let mut body = json!({"model": model, "messages": [{"role": "user", "content": text}]});
        body.as_object_mut()
            .unwrap()
            .extend(extra.as_object().unwrap().clone());
        body
    };
    let by_header = client()
        .post(gw.url("/v1/chat/completions"))
        .bearer_auth(CLIENT_KEY)
        .header("x-switchyard-task", "summarize")
        .json(&body("large", "hi", json!({})))
        .send()
        .await
        .unwrap();
    assert_eq!(served(&by_header), "small-upstream");
    assert_eq!(
        by_header.headers()["x-switchyard-route"],
        "routes[0]=small, up/small-upstream[weighted]=ok"
    );
    let by_metadata = post(
        &gw,
        "/v1/chat/completions",
        &body("large", "hi", json!({"metadata": {"task": "classify"}})),
    )
    .await;
    assert_eq!(served(&by_metadata), "small-upstream");
    let long = post(
        &gw,
        "/v1/chat/completions",
        &body("small", &"word ".repeat(200), json!({})),
    )
    .await;
    assert_eq!(served(&long), "large-upstream");
    let plain = post(&gw, "/v1/chat/completions", &body("large", "hi", json!({}))).await;
    assert_eq!(served(&plain), "large-upstream");
    assert_eq!(
        plain.headers()["x-switchyard-route"],
        "routes[2]=large, up/large-upstream[cost]=ok"
    );
}

/// Sends `total` requests for model `m`, `concurrency` at a time.
async fn load(gw: &Process, total: usize, concurrency: usize) {
    let body =
        json!({"model": "m", "max_tokens": 1, "messages": [{"role": "user", "content": "w"}]});
    let mut sent = 0;
    while sent < total {
        let batch = concurrency.min(total - sent);
        let requests = (0..batch).map(|_| post(gw, "/v1/chat/completions", &body));
        for response in futures_util::future::join_all(requests).await {
            assert_eq!(response.status(), 200);
        }
        sent += batch;
    }
}

#[tokio::test]
async fn weights_85_10_5_hold_over_10000_requests() {
    let mocks = [mock(&[]), mock(&[]), mock(&[])];
    let gw = gateway(&format!(
        "server:\n  listen: 127.0.0.1:0\nauth:\n  mode: keys\nkeys:\n  - key: {CLIENT_KEY}\nproviders:\n  a: {{ kind: openai, base_url: {}, api_key: k }}\n  b: {{ kind: openai, base_url: {}, api_key: k }}\n  c: {{ kind: openai, base_url: {}, api_key: k }}\nmodels:\n  m:\n    deployments:\n      - {{ provider: a, model: mock-1, weight: 85 }}\n      - {{ provider: b, model: mock-1, weight: 10 }}\n      - {{ provider: c, model: mock-1, weight: 5 }}\n",
        mocks[0].url("/v1"),
        mocks[1].url("/v1"),
        mocks[2].url("/v1"),
    ));
    let total = 10_000;
    load(&gw, total, 32).await;
    let mut shares = Vec::new();
    for mock in &mocks {
        shares.push(mock_requests(mock).await as f64 * 100.0 / total as f64);
    }
    for (share, want) in shares.iter().zip([85.0, 10.0, 5.0]) {
        assert!(
            (share - want).abs() <= 2.0,
            "shares {shares:?}, want 85/10/5 ±2"
        );
    }
}

/// Requests served by each mock of `mocks` so far.
async fn served(mocks: &[&Process]) -> Vec<u64> {
    let mut counts = Vec::new();
    for mock in mocks {
        counts.push(mock_requests(mock).await);
    }
    counts
}

#[tokio::test]
async fn a_10x_slower_deployment_sheds_latency_traffic_and_regains_it() {
    let quick = mock(&["--latency", "10ms"]);
    let slow = mock(&["--latency", "100ms"]);
    let gw = gateway(&format!(
        "server:\n  listen: 127.0.0.1:0\nauth:\n  mode: keys\nkeys:\n  - key: {CLIENT_KEY}\nproviders:\n  quick: {{ kind: openai, base_url: {}, api_key: k }}\n  slow: {{ kind: openai, base_url: {}, api_key: k }}\nmodels:\n  m:\n    strategy: latency\n    deployments:\n      - {{ provider: quick, model: mock-1 }}\n      - {{ provider: slow, model: mock-1 }}\n",
        quick.url("/v1"),
        slow.url("/v1"),
    ));
    // Warm up, then measure the slow one's share.
    // One at a time: the quick one scores its time to first token (at least
    // 20 ms, peak-EWMA) against the slow one's 100 ms faded since its last
    // sample, so only a stall of more than 100 ms on the quick one, or the
    // fading probe of the slow one, sends traffic its way. With more in flight
    // the quick one's score multiplies (at four, 25 ms tips it), and a machine
    // busy with other tests stretches its 10 ms that far.
    load(&gw, 50, 1).await;
    let before = served(&[&quick, &slow]).await;
    load(&gw, 300, 1).await;
    let after = served(&[&quick, &slow]).await;
    let slow_share = (after[1] - before[1]) as f64 / 300.0;
    // An even split would send it half.
    assert!(
        slow_share < 0.10,
        "the 10x slower deployment got {slow_share:.3} of the traffic"
    );

    // It recovers: within 30 s its share of a 2-second window is back near half.
    set_faults(&slow, json!({"latency_ms": 10})).await;
    let recovered = std::time::Instant::now();
    loop {
        let before = served(&[&quick, &slow]).await;
        let window = std::time::Instant::now();
        while window.elapsed() < std::time::Duration::from_secs(2) {
            load(&gw, 8, 4).await;
        }
        let after = served(&[&quick, &slow]).await;
        let share = (after[1] - before[1]) as f64
            / ((after[0] - before[0]) + (after[1] - before[1])) as f64;
        if share >= 0.35 {
            break;
        }
        assert!(
            recovered.elapsed() < std::time::Duration::from_secs(30),
            "30 s after recovering its share is {share:.2}"
        );
    }
}
