//! The gateways the scenarios put in front of their mocks, and what they read
//! back from them.

use std::time::Duration;

use serde_json::{Value, json};

use crate::harness::{CLIENT_KEY, Process, UPSTREAM_KEY, client, gateway};

/// The admin key of every scenario's gateway.
pub const ADMIN_KEY: &str = "sk-reliability-admin";

/// A gateway in keys mode (the key [`CLIENT_KEY`], the admin API on with
/// [`ADMIN_KEY`], usage records written every 100 ms to its SQLite store)
/// with model `m` on one deployment per `(provider, mock)`, in that order,
/// each provider with `timeouts` (`connect: 1s, first_byte: 5s` when empty),
/// and `extra` YAML (top-level blocks) after.
pub fn gateway_on(deployments: &[(&str, &Process)], timeouts: &str, extra: &str) -> Process {
    let timeouts = if timeouts.is_empty() {
        "connect: 1s, first_byte: 5s"
    } else {
        timeouts
    };
    let mut providers = String::new();
    let mut list = String::new();
    for (name, mock) in deployments {
        providers.push_str(&format!(
            "  {name}:\n    kind: openai\n    base_url: {}\n    api_key: {UPSTREAM_KEY}\n    \
             timeouts: {{ {timeouts} }}\n",
            mock.url("/v1")
        ));
        list.push_str(&format!("      - {{ provider: {name}, model: mock-1 }}\n"));
    }
    gateway(&format!(
        "server:\n  listen: 127.0.0.1:0\n  admin_key: {ADMIN_KEY}\nauth:\n  mode: keys\nkeys:\n  \
         - key: {CLIENT_KEY}\nusage:\n  flush_interval: 100ms\nproviders:\n{providers}models:\n  \
         m:\n    deployments:\n{list}{extra}"
    ))
}

/// A chat request for model `m` of `gw`, numbered `i`.
pub fn ask(gw: &Process, i: usize) -> reqwest::RequestBuilder {
    client()
        .post(gw.url("/v1/chat/completions"))
        .bearer_auth(CLIENT_KEY)
        .json(&json!({"model": "m", "messages": [{"role": "user", "content": format!("ask {i}")}]}))
}

/// A streamed chat request for model `m` of `gw`.
pub fn ask_stream(gw: &Process, model: &str) -> reqwest::RequestBuilder {
    client()
        .post(gw.url("/v1/chat/completions"))
        .bearer_auth(CLIENT_KEY)
        .json(&json!({
            "model": model,
            "stream": true,
            "messages": [{"role": "user", "content": "stream please"}],
        }))
}

/// The newest usage records of `gw` (at most 1,000), once `count` are there
/// (or after 5 s, whatever is there).
pub async fn usage_records(gw: &Process, count: usize) -> Vec<Value> {
    let started = std::time::Instant::now();
    loop {
        let response = client()
            .get(gw.url("/admin/usage?limit=1000"))
            .bearer_auth(ADMIN_KEY)
            .send()
            .await
            .expect("/admin/usage");
        let page: Value = response.json().await.expect("a page of records");
        let records = page["data"].as_array().cloned().unwrap_or_default();
        if records.len() >= count || started.elapsed() > Duration::from_secs(5) {
            return records;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// A gateway like [`gateway_on`] with model `m` on `first` alone and, when
/// its attempt fails, the fallback model `backup` on `second`.
pub fn fallback_gateway(first: &Process, second: &Process, timeouts: &str) -> Process {
    gateway(&format!(
        "server:\n  listen: 127.0.0.1:0\n  admin_key: {ADMIN_KEY}\nauth:\n  mode: keys\nkeys:\n  \
         - key: {CLIENT_KEY}\nusage:\n  flush_interval: 100ms\nproviders:\n  \
         first: {{ kind: openai, base_url: {}, api_key: {UPSTREAM_KEY}, timeouts: {{ {timeouts} }} }}\n  \
         second: {{ kind: openai, base_url: {}, api_key: {UPSTREAM_KEY}, timeouts: {{ {timeouts} }} }}\n\
         models:\n  m:\n    deployments: [{{ provider: first, model: mock-1 }}]\n    \
         fallbacks: [backup]\n  backup:\n    deployments: [{{ provider: second, model: mock-2 }}]\n\
         retries: {{ attempts: 2 }}\n",
        first.url("/v1"),
        second.url("/v1")
    ))
}

/// The error type of `gw`'s newest usage record, once there is one
/// (`none` for a request that succeeded or when none came within 5 s).
pub async fn newest_error_type(gw: &Process) -> String {
    let records = usage_records(gw, 1).await;
    records
        .first()
        .and_then(|r| r["error_type"].as_str())
        .unwrap_or("none")
        .to_owned()
}

/// `GET path` of `gw`'s admin API, as JSON (null when it is not JSON).
pub async fn admin_json(gw: &Process, path: &str) -> Value {
    client()
        .get(gw.url(path))
        .bearer_auth(ADMIN_KEY)
        .send()
        .await
        .expect("the admin API")
        .json()
        .await
        .unwrap_or(Value::Null)
}

/// The usage records `gw`'s store holds, counted by `/admin/costs`.
pub async fn stored_records(gw: &Process) -> u64 {
    let costs = admin_json(gw, "/admin/costs?group_by=model").await;
    costs["rows"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|row| row["requests"].as_u64())
        .sum()
}
