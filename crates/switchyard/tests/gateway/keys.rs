//! Virtual keys from the store: made by `switchyard keys` while gateways run,
//! followed by every gateway on the same store, refused when revoked,
//! disabled, expired or rotated out, limited to their models, and never kept
//! as text. Each test runs on SQLite and on PostgreSQL.

use std::time::{Duration, Instant};

use serde_json::{Value, json};

use crate::harness::{self, Process, client, model_ids};
use crate::stores::{Backend, PrivatePostgres, TestStore, on_both_stores, pg_dump};

/// Two models, `gpt-4.1` and `claude-x`, in front of `mock`, keys mode with
/// no configured key: only the store's keys are accepted.
fn config(mock: &Process, store_yaml: &str) -> String {
    config_with(mock, store_yaml, "", "")
}

/// [`config`] with more lines under `server:` and `auth:` (indented).
pub fn config_with(
    mock: &Process,
    store_yaml: &str,
    server_extra: &str,
    auth_extra: &str,
) -> String {
    format!(
        r#"
server:
  listen: 127.0.0.1:0
{server_extra}
{store_yaml}
auth:
  mode: keys
{auth_extra}
providers:
  up:
    kind: openai
    base_url: {}
    api_key: {}
models:
  gpt-4.1:
    deployments:
      - {{ provider: up, model: mock-1 }}
  claude-x:
    deployments:
      - {{ provider: up, model: mock-2 }}
"#,
        mock.url("/v1"),
        harness::UPSTREAM_KEY
    )
}

pub async fn chat_with(gw: &Process, key: &str, model: &str) -> (u16, Value) {
    let response = client()
        .post(gw.url("/v1/chat/completions"))
        .bearer_auth(key)
        .json(&json!({ "model": model, "messages": [{ "role": "user", "content": "hi" }] }))
        .send()
        .await
        .unwrap();
    let status = response.status().as_u16();
    (status, response.json().await.unwrap_or(Value::Null))
}

/// Waits until `key` gets `status` on `gw` for `model`; answers how long it took.
pub async fn until_status(gw: &Process, key: &str, model: &str, status: u16) -> Duration {
    let start = Instant::now();
    loop {
        let (got, body) = chat_with(gw, key, model).await;
        if got == status {
            return start.elapsed();
        }
        assert!(
            start.elapsed() < Duration::from_secs(5),
            "still {got} ({body}) after 5s, waiting for {status}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

on_both_stores!(
    keys_made_offline_work_everywhere_and_revocation_reaches_every_gateway_within_a_second,
    a_key_may_use_only_its_models,
    rotation_keeps_the_old_secret_for_its_grace_only,
    disabled_expired_and_team_disabled_keys_are_refused,
    the_store_never_holds_a_keys_text,
);

async fn keys_made_offline_work_everywhere_and_revocation_reaches_every_gateway_within_a_second(
    backend: Backend,
) {
    let store = TestStore::new(backend);
    let mock = harness::mock(&[]);
    let a = harness::gateway(&config(&mock, &store.yaml()));
    let b = harness::gateway(&config(&mock, &store.yaml()));
    // Made while both run, by the CLI alone.
    let (key, id) = store.create_key("app", &[]);
    for gw in [&a, &b] {
        until_status(gw, &key, "gpt-4.1", 200).await;
    }
    let (status, body) = chat_with(&a, "sk-sy-not-a-key-at-all-000000000000", "gpt-4.1").await;
    assert_eq!(status, 401, "{body}");
    assert_eq!(body["error"]["code"], "invalid_api_key");

    store.cli(&["keys", "revoke", &id]);
    let (ta, tb) = tokio::join!(
        until_status(&a, &key, "gpt-4.1", 401),
        until_status(&b, &key, "gpt-4.1", 401)
    );
    assert!(
        ta < Duration::from_secs(1) && tb < Duration::from_secs(1),
        "{ta:?} {tb:?}"
    );
    let (_, body) = chat_with(&b, &key, "gpt-4.1").await;
    assert_eq!(body["error"]["code"], "invalid_api_key", "{body}");
    // The listing shows the revocation, and never the key.
    let listed = store.cli(&["keys", "list", "--all", "--json"]);
    assert!(
        listed.contains("revoked_at") && !listed.contains(&key),
        "{listed}"
    );
}

async fn a_key_may_use_only_its_models(backend: Backend) {
    let store = TestStore::new(backend);
    let mock = harness::mock(&[]);
    let gw = harness::gateway(&config(&mock, &store.yaml()));
    let team: Value = serde_json::from_str(&store.cli(&[
        "teams",
        "create",
        "--name",
        "research",
        "--models",
        "gpt-*,claude-*",
        "--json",
    ]))
    .unwrap();
    let team = team["id"].as_str().unwrap();
    let (gpt_only, _) = store.create_key("gpt-only", &["--models", "gpt-*"]);
    let (team_key, _) = store.create_key("team", &["--team", team]);
    until_status(&gw, &gpt_only, "gpt-4.1", 200).await;
    until_status(&gw, &team_key, "claude-x", 200).await;

    let (status, body) = chat_with(&gw, &gpt_only, "claude-x").await;
    assert_eq!(status, 403, "{body}");
    assert_eq!(body["error"]["code"], "model_not_allowed");
    assert_eq!(body["error"]["param"], "model");
    // The same on the Anthropic endpoint, in Anthropic's shape.
    let response = client()
        .post(gw.url("/v1/messages"))
        .header("x-api-key", &gpt_only)
        .json(&json!({ "model": "claude-x", "max_tokens": 16,
                       "messages": [{ "role": "user", "content": "hi" }] }))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 403);
    let body: Value = response.json().await.unwrap();
    assert_eq!(body["error"]["type"], "permission_error", "{body}");
    // And on embeddings.
    let response = client()
        .post(gw.url("/v1/embeddings"))
        .bearer_auth(&gpt_only)
        .json(&json!({ "model": "claude-x", "input": "hi" }))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 403);

    // `/v1/models` lists only what the key may use.
    assert_eq!(model_ids(&gw, &gpt_only).await, ["gpt-4.1"]);
    assert_eq!(model_ids(&gw, &team_key).await, ["claude-x", "gpt-4.1"]);

    // Narrowing the team narrows its keys, within a second.
    store.cli(&["teams", "update", team, "--models", "gpt-*"]);
    let took = until_status(&gw, &team_key, "claude-x", 403).await;
    assert!(took < Duration::from_secs(1), "{took:?}");
    assert_eq!(model_ids(&gw, &team_key).await, ["gpt-4.1"]);
}

async fn rotation_keeps_the_old_secret_for_its_grace_only(backend: Backend) {
    let store = TestStore::new(backend);
    let mock = harness::mock(&[]);
    let gw = harness::gateway(&config(&mock, &store.yaml()));
    let (old, id) = store.create_key("app", &[]);
    until_status(&gw, &old, "gpt-4.1", 200).await;
    let rotated: Value =
        serde_json::from_str(&store.cli(&["keys", "rotate", &id, "--grace", "2s", "--json"]))
            .unwrap();
    let new = rotated["key"].as_str().unwrap().to_owned();
    assert_ne!(new, old);
    assert_eq!(rotated["id"], id.as_str());
    until_status(&gw, &new, "gpt-4.1", 200).await;
    assert_eq!(
        chat_with(&gw, &old, "gpt-4.1").await.0,
        200,
        "old key within its grace"
    );
    // The grace ends on a whole second: within 3s the old key is refused.
    let took = until_status(&gw, &old, "gpt-4.1", 401).await;
    assert!(took <= Duration::from_secs(4), "{took:?}");
    assert_eq!(chat_with(&gw, &new, "gpt-4.1").await.0, 200);
    // A gateway started after the rotation knows the new key only.
    let fresh = harness::gateway(&config(&mock, &store.yaml()));
    assert_eq!(chat_with(&fresh, &new, "gpt-4.1").await.0, 200);
    assert_eq!(chat_with(&fresh, &old, "gpt-4.1").await.0, 401);
}

async fn disabled_expired_and_team_disabled_keys_are_refused(backend: Backend) {
    let store = TestStore::new(backend);
    let mock = harness::mock(&[]);
    let gw = harness::gateway(&config(&mock, &store.yaml()));
    let (key, id) = store.create_key("app", &[]);
    until_status(&gw, &key, "gpt-4.1", 200).await;
    store.cli(&["keys", "update", &id, "--disabled", "true"]);
    until_status(&gw, &key, "gpt-4.1", 401).await;
    assert_eq!(
        chat_with(&gw, &key, "gpt-4.1").await.1["error"]["code"],
        "disabled_api_key"
    );
    store.cli(&["keys", "update", &id, "--disabled", "false"]);
    until_status(&gw, &key, "gpt-4.1", 200).await;

    // A key of a disabled team is refused; enabling the team lets it in again.
    let team: Value =
        serde_json::from_str(&store.cli(&["teams", "create", "--name", "ops", "--json"])).unwrap();
    let team = team["id"].as_str().unwrap();
    let (member, _) = store.create_key("member", &["--team", team]);
    until_status(&gw, &member, "gpt-4.1", 200).await;
    store.cli(&["teams", "update", team, "--disabled", "true"]);
    until_status(&gw, &member, "gpt-4.1", 401).await;
    store.cli(&["teams", "update", team, "--disabled", "false"]);
    until_status(&gw, &member, "gpt-4.1", 200).await;

    // An expiry two seconds out: it works, then it is refused as expired.
    let at = std::time::SystemTime::now() + Duration::from_secs(3);
    let at = humantime::format_rfc3339_seconds(at).to_string();
    let (expiring, _) = store.create_key("short", &["--expires-at", &at]);
    until_status(&gw, &expiring, "gpt-4.1", 200).await;
    until_status(&gw, &expiring, "gpt-4.1", 401).await;
    assert_eq!(
        chat_with(&gw, &expiring, "gpt-4.1").await.1["error"]["code"],
        "expired_api_key"
    );
    // A past expiry is refused by the CLI, naming the field.
    let output = store.cli_output(&[
        "keys",
        "create",
        "--name",
        "x",
        "--expires-at",
        "2001-01-01T00:00:00Z",
    ]);
    assert!(!output.status.success());
    assert!(String::from_utf8_lossy(&output.stderr).contains("expires_at"));
}

async fn the_store_never_holds_a_keys_text(backend: Backend) {
    let store = TestStore::new(backend);
    let mut keys = Vec::new();
    for n in 0..5 {
        keys.push(store.create_key(&format!("k{n}"), &[]).0);
    }
    let (_, id) = store.create_key("rotated", &[]);
    let rotated: Value =
        serde_json::from_str(&store.cli(&["keys", "rotate", &id, "--json"])).unwrap();
    keys.push(rotated["key"].as_str().unwrap().to_owned());
    let stored: Vec<u8> = match store.sqlite_path() {
        Some(path) => {
            // The database, its write-ahead log and shared memory, raw.
            let mut bytes = Vec::new();
            for suffix in ["", "-wal", "-shm"] {
                let mut name = path.clone().into_os_string();
                name.push(suffix);
                bytes.extend(std::fs::read(name).unwrap_or_default());
            }
            bytes
        }
        None => pg_dump(&store.url),
    };
    assert!(stored.len() > 1000);
    for key in &keys {
        // Neither the whole key nor its random part appears anywhere.
        let random = &key.as_bytes()["sk-sy-".len()..];
        assert!(
            !stored.windows(random.len()).any(|w| w == random),
            "a key's text is in the store"
        );
    }
}

/// With the database stopped, the keys the gateway knows keep working and an
/// unknown key is still refused at once; when it is back, new keys arrive.
#[tokio::test]
async fn known_keys_keep_working_while_postgres_is_down() {
    let pg = PrivatePostgres::start();
    let store = TestStore::at(&pg.url);
    let mock = harness::mock(&[]);
    let (key, _) = store.create_key("app", &[]);
    let gw = harness::gateway(&config(&mock, &store.yaml()));
    assert_eq!(chat_with(&gw, &key, "gpt-4.1").await.0, 200);

    pg.stop();
    let until = Instant::now() + Duration::from_secs(2);
    while Instant::now() < until {
        let start = Instant::now();
        assert_eq!(chat_with(&gw, &key, "gpt-4.1").await.0, 200);
        assert_eq!(
            chat_with(&gw, "sk-sy-unknown-key-00000000000000000", "gpt-4.1")
                .await
                .0,
            401
        );
        assert!(
            start.elapsed() < Duration::from_millis(500),
            "{:?}",
            start.elapsed()
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    gw.wait_for_log(&["the store cannot be read"]);

    pg.resume();
    let (late, _) = store.create_key("late", &[]);
    let took = until_status(&gw, &late, "gpt-4.1", 200).await;
    assert!(took < Duration::from_secs(5), "{took:?}");
    assert_eq!(chat_with(&gw, &key, "gpt-4.1").await.0, 200);
}

/// A real key the cache had no room for is read from the store when it is
/// used; with the database stopped that fails within `auth.load_timeout`, as
/// a 503 the client may retry, never a 401 and never a wait.
#[tokio::test]
async fn a_key_beyond_the_cache_gets_503_while_postgres_is_down() {
    let pg = PrivatePostgres::start();
    let store = TestStore::at(&pg.url);
    let mock = harness::mock(&[]);
    let keys: Vec<String> = (0..8)
        .map(|n| store.create_key(&format!("k{n}"), &[]).0)
        .collect();
    let yaml = config(&mock, &store.yaml()).replace(
        "auth:\n  mode: keys\n",
        "auth:\n  mode: keys\n  key_cache: 1\n  load_timeout: 200ms\n",
    );
    let gw = harness::gateway(&yaml);
    pg.stop();
    let deadline = Instant::now() + Duration::from_secs(5);
    let mut refused = None;
    while refused.is_none() {
        assert!(
            Instant::now() < deadline,
            "every key stayed in a cache of one"
        );
        for key in &keys {
            let start = Instant::now();
            let response = client()
                .post(gw.url("/v1/chat/completions"))
                .bearer_auth(key)
                .json(&json!({ "model": "gpt-4.1", "messages": [{ "role": "user", "content": "hi" }] }))
                .send()
                .await
                .unwrap();
            let took = start.elapsed();
            match response.status().as_u16() {
                200 => {}
                503 => {
                    let retry = response.headers()["retry-after"].clone();
                    let body: Value = response.json().await.unwrap();
                    refused = Some((took, retry, body));
                    break;
                }
                other => panic!("{other} for a real key while the store is down"),
            }
        }
    }
    let (took, retry, body) = refused.unwrap();
    assert_eq!(body["error"]["code"], "key_store_unavailable", "{body}");
    assert_eq!(retry, "1");
    assert!(took < Duration::from_millis(500), "{took:?}");
}
