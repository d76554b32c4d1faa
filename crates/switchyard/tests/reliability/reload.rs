//! Hot reload, 100 times under load: no request fails, and a file that is not
//! a valid config is refused while the one in force goes on serving.

use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use crate::Mode;
use crate::fixtures::{ADMIN_KEY, admin_json, ask};
use crate::harness::{CLIENT_KEY, Process, UPSTREAM_KEY, client, mock};
use crate::load::{self, percent};
use crate::table::Row;

/// A valid config, variant `i`: model `m`, and every other variant a second
/// model and another weight (what a reload changes).
fn config(upstream: &Process, i: usize) -> String {
    let extra = if i.is_multiple_of(2) {
        String::new()
    } else {
        format!(
            "  m2: {{ deployments: [{{ provider: up, model: mock-2, weight: {} }}] }}\n",
            i % 7 + 1
        )
    };
    format!(
        "server:\n  listen: 127.0.0.1:0\n  admin_key: {ADMIN_KEY}\nauth:\n  mode: keys\nkeys:\n  \
         - key: {CLIENT_KEY}\nproviders:\n  up: {{ kind: openai, base_url: {}, api_key: {UPSTREAM_KEY} }}\n\
         models:\n  m: {{ deployments: [{{ provider: up, model: mock-1, weight: {} }}] }}\n{extra}",
        upstream.url("/v1"),
        i % 5 + 1
    )
}

/// Files a reload must refuse: not YAML, and a model on a provider that does
/// not exist.
fn invalid(upstream: &Process, i: usize) -> String {
    if i.is_multiple_of(2) {
        "models: [this is: not {valid".to_owned()
    } else {
        config(upstream, i).replace(
            "provider: up, model: mock-1",
            "provider: nowhere, model: mock-1",
        )
    }
}

/// Writes `text` as the config at `path` and asks `gw` to reload it: the answer's status.
async fn reload(gw: &Process, path: &Path, text: &str) -> u16 {
    std::fs::write(path, text).expect("write the config");
    client()
        .post(gw.url("/admin/reload"))
        .bearer_auth(ADMIN_KEY)
        .send()
        .await
        .expect("POST /admin/reload")
        .status()
        .as_u16()
}

pub async fn run(mode: Mode) -> Vec<Row> {
    let upstream = mock(&[]);
    let dir = tempfile::tempdir().expect("a folder");
    let path = dir.path().join("switchyard.yaml");
    std::fs::write(&path, config(&upstream, 0)).expect("write the config");
    let gw = Process::spawn_in(
        &["serve", "--config", path.to_str().expect("a UTF-8 path")],
        dir.path(),
        &[],
    );
    let reloads: usize = 100;
    let pause = mode.pick(Duration::from_millis(50), Duration::from_millis(100));
    let steps = reloads + reloads / 10;
    // Traffic from before the first reload until after the last.
    let done = AtomicBool::new(false);
    let load = load::at_rate_while(200, || !done.load(Ordering::Relaxed), |i| ask(&gw, i));
    let changes = async {
        // Let the traffic start, then reload; every tenth file is refused.
        tokio::time::sleep(Duration::from_millis(500)).await;
        let (mut applied, mut refused, mut other) = (0, 0, Vec::new());
        for i in 1..=steps {
            let (text, valid) = if i.is_multiple_of(11) {
                (invalid(&upstream, i), false)
            } else {
                (config(&upstream, i), true)
            };
            match (reload(&gw, &path, &text).await, valid) {
                (200, true) => applied += 1,
                (422, false) => refused += 1,
                (status, _) => other.push(status),
            }
            tokio::time::sleep(pause).await;
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
        done.store(true, Ordering::Relaxed);
        (applied, refused, other)
    };
    let (outcomes, (applied, refused, other)) = tokio::join!(load, changes);
    let served = outcomes.iter().filter(|o| o.ok()).count();
    let status = admin_json(&gw, "/admin/status").await;
    let counted = status["config"]["reloads"].as_u64().unwrap_or(0);
    vec![
        Row::new(
            "100 hot reloads under 200 requests/s: no failed request",
            format!(
                "{served} of {} served ({}) across {applied} reloads ({counted} counted by /admin/status)",
                outcomes.len(),
                percent(served, outcomes.len())
            ),
            served == outcomes.len() && applied == reloads && counted >= reloads as u64,
        ),
        Row::new(
            "… invalid files refused (422), the config in force serving on",
            format!(
                "{refused} of {} invalid files refused{}",
                reloads / 10,
                if other.is_empty() {
                    String::new()
                } else {
                    format!("; unexpected answers: {other:?}")
                }
            ),
            refused == reloads / 10 && other.is_empty(),
        ),
    ]
}
