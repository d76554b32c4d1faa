//! Hot reload: a ConfigMap-style update of the config file (its directory's
//! `..data` symlink swapped) is applied, an invalid one refused while the old
//! config serves, SIGHUP and `POST /admin/reload` reload, twenty reloads under
//! load fail no request, and what the deployments live through (a paused
//! canary) is carried over.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use serde_json::Value;

use crate::harness::*;

const ADMIN_KEY: &str = "sk-admin-reload";

/// A config in front of `mock` serving `models` (each on `mock-1`), with
/// `extra` appended.
fn config_for(mock: &Process, models: &[&str], extra: &str) -> String {
    let mut text = format!(
        "server:\n  listen: 127.0.0.1:0\n  admin_key: {ADMIN_KEY}\nauth:\n  mode: keys\nkeys:\n  - key: {CLIENT_KEY}\nproviders:\n  up: {{ kind: openai, base_url: {}, api_key: k }}\nmodels:\n",
        mock.url("/v1")
    );
    for model in models {
        text.push_str(&format!(
            "  {model}:\n    deployments:\n      - {{ provider: up, model: mock-1 }}\n"
        ));
    }
    text.push_str(extra);
    text
}

/// A directory laid out as Kubernetes mounts a ConfigMap: `switchyard.yaml`
/// → `..data/switchyard.yaml`, `..data` → a directory of this version.
struct ConfigMap {
    dir: tempfile::TempDir,
    versions: u32,
}

impl ConfigMap {
    fn new(text: &str) -> Self {
        let mut map = Self {
            dir: tempfile::tempdir().unwrap(),
            versions: 0,
        };
        map.update(text);
        std::os::unix::fs::symlink("..data/switchyard.yaml", map.file()).unwrap();
        map
    }

    fn file(&self) -> PathBuf {
        self.dir.path().join("switchyard.yaml")
    }

    /// Writes `text` as a new version and swaps `..data` to it at once (a
    /// new symlink renamed over the old one), as the kubelet does.
    fn update(&mut self, text: &str) {
        self.versions += 1;
        let version = format!("..v{}", self.versions);
        std::fs::create_dir(self.dir.path().join(&version)).unwrap();
        std::fs::write(self.dir.path().join(&version).join("switchyard.yaml"), text).unwrap();
        let next = self.dir.path().join("..data_tmp");
        std::os::unix::fs::symlink(&version, &next).unwrap();
        std::fs::rename(&next, self.dir.path().join("..data")).unwrap();
    }

    fn serve(&self) -> Process {
        let file = self.file();
        let file = file.to_str().unwrap();
        Process::spawn_in(&["serve", "--config", file], self.dir.path(), &[])
    }
}

/// `method path` with the admin key: the status and the JSON body.
async fn admin(gw: &Process, method: reqwest::Method, path: &str) -> (u16, Value) {
    let response = client()
        .request(method, gw.url(path))
        .bearer_auth(ADMIN_KEY)
        .send()
        .await
        .unwrap();
    (response.status().as_u16(), response.json().await.unwrap())
}

/// `GET /admin/status`'s `config`.
async fn config_status(gw: &Process) -> Value {
    let (status, body) = admin(gw, reqwest::Method::GET, "/admin/status").await;
    assert_eq!(status, 200, "{body}");
    body["config"].clone()
}

/// Waits (5 s at most) until the config status satisfies `done`.
async fn wait_status(gw: &Process, done: impl Fn(&Value) -> bool) -> Value {
    let start = Instant::now();
    loop {
        let status = config_status(gw).await;
        if done(&status) {
            return status;
        }
        assert!(
            start.elapsed() < Duration::from_secs(5),
            "not reloaded: {status}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// A chat request for `model`: its status.
async fn chat_status(gw: &Process, model: &str) -> u16 {
    let body = chat("hi", serde_json::json!({ "model": model }));
    let response = post(gw, "/v1/chat/completions", &body).await;
    response.status().as_u16()
}

/// The value of the metric line starting with `series`.
fn sample(text: &str, series: &str) -> Option<f64> {
    text.lines()
        .find_map(|line| line.strip_prefix(series)?.trim().parse().ok())
}

fn file_name(path: &Path) -> &str {
    path.file_name()
        .and_then(|n| n.to_str())
        .unwrap_or_default()
}

#[tokio::test]
async fn a_config_map_update_is_applied_and_an_invalid_one_refused() {
    let mock = mock(&[]);
    let mut map = ConfigMap::new(&config_for(&mock, &["gpt-4.1"], ""));
    let gw = map.serve();
    let first = config_status(&gw).await;
    assert_eq!(first["reloads"], 0);
    assert!(first["last_refusal"].is_null());
    assert_eq!(
        file_name(Path::new(first["source"].as_str().unwrap())),
        "switchyard.yaml"
    );
    assert_eq!(model_ids(&gw, CLIENT_KEY).await, ["gpt-4.1"]);

    // A new model, and a section that applies only at the next start.
    map.update(&config_for(
        &mock,
        &["gpt-4.1", "gpt-5"],
        "usage:\n  enabled: false\n",
    ));
    let applied = wait_status(&gw, |s| s["reloads"] == 1).await;
    assert_ne!(applied["version"], first["version"]);
    assert_eq!(applied["restart_needed"], serde_json::json!(["usage"]));
    assert_eq!(model_ids(&gw, CLIENT_KEY).await, ["gpt-4.1", "gpt-5"]);
    assert_eq!(chat_status(&gw, "gpt-5").await, 200);

    // A misspelt key: refused with its place; the config in use serves on.
    map.update(&config_for(&mock, &["gpt-4.1"], "modles: {}\n"));
    let refused = wait_status(&gw, |s| !s["last_refusal"].is_null()).await;
    assert_eq!(refused["version"], applied["version"]);
    assert_eq!(refused["last_refusal"]["trigger"], "file");
    let reasons = refused["last_refusal"]["reasons"].to_string();
    assert!(reasons.contains("modles"), "{reasons}");
    assert_eq!(model_ids(&gw, CLIENT_KEY).await, ["gpt-4.1", "gpt-5"]);
    assert_eq!(chat_status(&gw, "gpt-5").await, 200);

    let (status, body) = admin(&gw, reqwest::Method::POST, "/admin/reload").await;
    assert_eq!(status, 422, "{body}");
    assert_eq!(body["result"], "refused");
    assert!(body["reasons"].to_string().contains("modles"), "{body}");

    // Fixed: the admin API reloads it at once.
    map.update(&config_for(&mock, &["gpt-4.1"], ""));
    let (status, body) = admin(&gw, reqwest::Method::POST, "/admin/reload").await;
    assert_eq!(status, 200, "{body}");
    assert!(
        body["result"] == "applied" || body["result"] == "unchanged",
        "{body}"
    );
    assert_eq!(model_ids(&gw, CLIENT_KEY).await, ["gpt-4.1"]);
    assert_eq!(chat_status(&gw, "gpt-5").await, 404);

    let text = metrics(&gw).await;
    let applied = sample(&text, "switchyard_config_reloads_total{result=\"applied\"}");
    let refused = sample(&text, "switchyard_config_reloads_total{result=\"refused\"}");
    assert!(applied.is_some_and(|n| n >= 2.0), "{text}");
    assert!(refused.is_some_and(|n| n >= 2.0), "{text}");
    let (status, _) = admin(&gw, reqwest::Method::POST, "/admin/reload").await;
    assert_eq!(status, 200);
    let unauthorized = client().post(gw.url("/admin/reload")).send().await.unwrap();
    assert_eq!(unauthorized.status(), 401);
}

#[tokio::test]
async fn sighup_reloads_and_a_paused_canary_stays_paused() {
    let (old, new) = (mock(&[]), mock(&[]));
    let canary = |extra_model: &str| {
        format!(
            "server:\n  listen: 127.0.0.1:0\n  admin_key: {ADMIN_KEY}\nauth:\n  mode: keys\nkeys:\n  - key: {CLIENT_KEY}\nproviders:\n  old: {{ kind: openai, base_url: {}, api_key: k }}\n  new: {{ kind: openai, base_url: {}, api_key: k }}\nmodels:\n  gpt-4.1:\n    deployments:\n      - {{ provider: old, model: stable }}\n      - {{ provider: new, model: next, tier: next }}\n{extra_model}canary:\n  gpt-4.1: {{ to: next, stages: [10, 100], dwell: 1h, min_requests: 20 }}\n",
            old.url("/v1"),
            new.url("/v1"),
        )
    };
    let map = ConfigMap::new(&canary(""));
    let gw = map.serve();
    let (status, body) = admin(&gw, reqwest::Method::POST, "/admin/canary/gpt-4.1/pause").await;
    assert_eq!(
        (status, body["state"].as_str()),
        (200, Some("paused")),
        "{body}"
    );

    // The file itself rewritten (no symlink swap), then SIGHUP.
    let target = map.dir.path().join("..data/switchyard.yaml");
    std::fs::write(
        &target,
        canary("  gpt-5:\n    deployments:\n      - { provider: old, model: stable }\n"),
    )
    .unwrap();
    gw.signal("HUP");
    wait_status(&gw, |s| s["reloads"].as_u64() >= Some(1)).await;
    assert_eq!(model_ids(&gw, CLIENT_KEY).await, ["gpt-4.1", "gpt-5"]);
    assert_eq!(chat_status(&gw, "gpt-5").await, 200);
    let (status, body) = admin(&gw, reqwest::Method::GET, "/admin/canary").await;
    assert_eq!(status, 200);
    let canary = &body["canaries"][0];
    assert_eq!(
        (canary["state"].as_str(), canary["percent"].as_u64()),
        (Some("paused"), Some(10)),
        "{body}"
    );
}

/// Twenty reloads while requests keep coming: none fails.
#[tokio::test(flavor = "multi_thread")]
async fn reloads_under_load_fail_no_request() {
    let mock = mock(&["--latency", "20ms"]);
    let mut map = ConfigMap::new(&config_for(&mock, &["gpt-4.1"], ""));
    let gw = map.serve();
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let load: Vec<_> = (0..8)
        .map(|worker| {
            let (url, stop) = (gw.url("/v1/chat/completions"), stop.clone());
            tokio::spawn(async move {
                let mut statuses = Vec::new();
                let mut n = 0;
                while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                    let body = chat(&format!("w{worker} n{n}"), Value::Null);
                    let response = client()
                        .post(&url)
                        .bearer_auth(CLIENT_KEY)
                        .json(&body)
                        .send()
                        .await
                        .unwrap();
                    statuses.push(response.status().as_u16());
                    n += 1;
                }
                statuses
            })
        })
        .collect();
    for round in 0..20 {
        let models: &[&str] = if round % 2 == 0 {
            &["gpt-4.1", "gpt-5"]
        } else {
            &["gpt-4.1"]
        };
        map.update(&config_for(&mock, models, ""));
        let (status, body) = admin(&gw, reqwest::Method::POST, "/admin/reload").await;
        assert_eq!(status, 200, "{body}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    let mut sent = 0;
    for worker in load {
        let statuses = worker.await.unwrap();
        sent += statuses.len();
        assert!(statuses.iter().all(|s| *s == 200), "{statuses:?}");
    }
    assert!(sent >= 100, "only {sent} requests sent during the reloads");
    assert!(config_status(&gw).await["reloads"].as_u64() >= Some(20));
}
