//! Distributed limits: three replicas on one store and one Redis hold a key
//! of 60 requests a minute to 60, however the requests are spread.

use std::time::Instant;

use futures_util::StreamExt;
use serde_json::json;

use crate::Mode;
use crate::harness::{Process, client, gateway, mock};
use crate::stores::{Backend, TestStore, shared_redis_yaml};
use crate::table::Row;

pub async fn run(_mode: Mode) -> Vec<Row> {
    let store = TestStore::new(Backend::Sqlite);
    let upstream = mock(&[]);
    let (key, _) = store.create_key("shared", &["--rpm", "60"]);
    let config = format!(
        "server:\n  listen: 127.0.0.1:0\n{}{}auth:\n  mode: keys\nproviders:\n  \
         up: {{ kind: openai, base_url: {}, api_key: sk-upstream }}\nmodels:\n  \
         m: {{ deployments: [{{ provider: up, model: mock-1 }}] }}\n",
        store.yaml(),
        shared_redis_yaml(""),
        upstream.url("/v1")
    );
    let replicas: Vec<Process> = (0..3).map(|_| gateway(&config)).collect();
    // 300 requests, in turn to each replica, 30 at a time.
    let started = Instant::now();
    let statuses: Vec<u16> = futures_util::stream::iter(0..300)
        .map(|i| {
            let request = client()
                .post(replicas[i % 3].url("/v1/chat/completions"))
                .bearer_auth(&key)
                .json(&json!({"model": "m", "messages": [{"role": "user", "content": "hi"}]}));
            async move { request.send().await.map_or(0, |r| r.status().as_u16()) }
        })
        .buffer_unordered(30)
        .collect()
        .await;
    let took = started.elapsed();
    let accepted = statuses.iter().filter(|s| **s == 200).count();
    let limited = statuses.iter().filter(|s| **s == 429).count();
    // GCRA refills one request a second: those the offer's own time allows.
    let refill = took.as_secs() as usize;
    vec![Row::new(
        "3 replicas, a 60 rpm key offered 300 requests: 60 ± 1 accepted (plus one per second the offer took)",
        format!(
            "{accepted} accepted, {limited} refused with 429, in {:.1} s",
            took.as_secs_f64()
        ),
        (59..=61 + refill).contains(&accepted) && accepted + limited == 300,
    )]
}
