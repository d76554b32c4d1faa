//! Secrets and headers: no client key reaches a provider, on any provider
//! kind or retry path, nor does a hop-by-hop header; no key (issued or the
//! provider's) shows in trace-level logs, `/metrics`, admin answers or the
//! database; a near-miss key and a bearer token full of SQL get the same 401
//! as any wrong key.

use std::collections::BTreeSet;

use serde_json::{Value, json};

use crate::Mode;
use crate::fixtures::ADMIN_KEY;
use crate::harness::{CLIENT_KEY, Process, client, gateway_with_env, metrics, mock, received};
use crate::table::Row;

/// Each provider kind's key, as the config gives it.
const PROVIDER_KEYS: [(&str, &str); 5] = [
    ("oa", "sk-provider-openai-0123456789"),
    ("an", "sk-provider-anthropic-0123456789"),
    ("ge", "provider-gemini-0123456789"),
    ("az", "provider-azure-0123456789"),
    ("broken", "sk-provider-broken-0123456789"),
];

/// Headers that belong to one connection, or name the client's credentials:
/// none may reach a provider.
const NEVER_FORWARDED: [&str; 7] = [
    "connection",
    "keep-alive",
    "proxy-authorization",
    "proxy-connection",
    "x-hop-custom",
    "te",
    "trailer",
];

fn config(up: &Process, broken: &Process) -> String {
    let root = up.url("");
    let root = root.trim_end_matches('/');
    let key = |name: &str| PROVIDER_KEYS.iter().find(|(n, _)| *n == name).unwrap().1;
    format!(
        r#"
server:
  listen: 127.0.0.1:0
  admin_key: {ADMIN_KEY}
auth:
  mode: keys
keys:
  - key: {CLIENT_KEY}
usage:
  flush_interval: 100ms
providers:
  oa: {{ kind: openai, base_url: {root}/v1, api_key: {oa} }}
  an: {{ kind: anthropic, base_url: {root}, api_key: {an} }}
  ge: {{ kind: gemini, base_url: {root}, api_key: {ge} }}
  az: {{ kind: azure, base_url: {root}, api_key: {az}, api_version: 2025-01-01-preview }}
  broken: {{ kind: openai, base_url: {broken}/v1, api_key: {broken_key} }}
models:
  m-openai: {{ deployments: [{{ provider: oa, model: mock-1 }}] }}
  m-anthropic: {{ deployments: [{{ provider: an, model: claude-mock }}] }}
  m-gemini: {{ deployments: [{{ provider: ge, model: gemini-mock }}] }}
  m-azure: {{ deployments: [{{ provider: az, model: my-deployment }}] }}
  m-retry:
    strategy: round_robin
    deployments: [{{ provider: broken, model: mock-1 }}, {{ provider: oa, model: mock-1 }}]
"#,
        oa = key("oa"),
        an = key("an"),
        ge = key("ge"),
        az = key("az"),
        broken = broken.url("").trim_end_matches('/'),
        broken_key = key("broken"),
    )
}

/// A request of `model` in OpenAI's dialect, or Anthropic's, sent with
/// `key` and every hop-by-hop header a client might send.
fn request(gw: &Process, model: &str, anthropic: bool, key: &str) -> reqwest::RequestBuilder {
    let builder = if anthropic {
        client()
            .post(gw.url("/v1/messages"))
            .header("x-api-key", key)
            .header("anthropic-version", "2023-06-01")
            .json(&json!({"model": model, "max_tokens": 32, "messages": [{"role": "user", "content": "hi"}]}))
    } else {
        client()
            .post(gw.url("/v1/chat/completions"))
            .bearer_auth(key)
            .json(&json!({"model": model, "messages": [{"role": "user", "content": "hi"}]}))
    };
    builder
        .header("connection", "keep-alive, x-hop-custom")
        .header("x-hop-custom", "1")
        .header("keep-alive", "timeout=5")
        .header("proxy-authorization", format!("Basic {key}"))
        .header("proxy-connection", "keep-alive")
        .header("te", "trailers")
        .header("trailer", "x-checksum")
}

/// A chat request for `m-openai` sent with `key`.
fn chat(gw: &Process, key: &str) -> reqwest::RequestBuilder {
    client()
        .post(gw.url("/v1/chat/completions"))
        .bearer_auth(key)
        .json(&json!({"model": "m-openai", "messages": [{"role": "user", "content": "hi"}]}))
}

pub async fn run(_mode: Mode) -> Vec<Row> {
    let up = mock(&[]);
    let broken = mock(&["--error-rate", "1", "--error-status", "503"]);
    let gw = gateway_with_env(&config(&up, &broken), &[("RUST_LOG", "trace")]);
    let mut rows = Vec::new();

    // A key issued through the admin API, used like the configured one.
    let created: Value = client()
        .post(gw.url("/admin/keys"))
        .bearer_auth(ADMIN_KEY)
        .json(&json!({"name": "reliability"}))
        .send()
        .await
        .expect("create a key")
        .json()
        .await
        .expect("the key made");
    let issued = created["key"].as_str().expect("the key's text").to_owned();

    // Every provider kind, both client dialects, both keys, and the retry path.
    let mut sent = Vec::new();
    for key in [CLIENT_KEY, issued.as_str()] {
        for model in [
            "m-openai",
            "m-anthropic",
            "m-gemini",
            "m-azure",
            "m-retry",
            "m-retry",
        ] {
            for anthropic in [false, true] {
                let response = request(&gw, model, anthropic, key)
                    .send()
                    .await
                    .expect("send");
                sent.push((model, anthropic, response.status().as_u16()));
            }
        }
    }
    let served = sent.iter().filter(|(_, _, status)| *status == 200).count();
    let upstream: Vec<Value> = [received(&up).await, received(&broken).await].concat();
    let mut leaks = BTreeSet::new();
    let mut hops = BTreeSet::new();
    for request in &upstream {
        // The headers, the path, the query and the body as the provider got them.
        let whole = request.to_string();
        if whole.contains(CLIENT_KEY) || whole.contains(&issued) {
            leaks.insert(request["path"].as_str().unwrap_or("?").to_owned());
        }
        for (name, _) in request["headers"].as_object().into_iter().flatten() {
            if NEVER_FORWARDED.contains(&name.as_str()) {
                hops.insert(name.clone());
            }
        }
    }
    let retried = received(&broken).await.len();
    rows.push(Row::new(
        "no client key upstream, on any provider kind (OpenAI, Anthropic, Gemini, Azure), client dialect or retry path",
        format!(
            "{served} of {} requests served, {} upstream requests ({retried} on the retry path's failing deployment), client keys in their headers, paths, queries and bodies: {}",
            sent.len(),
            upstream.len(),
            if leaks.is_empty() { "none".to_owned() } else { format!("{leaks:?}") }
        ),
        served == sent.len() && retried > 0 && leaks.is_empty(),
    ));
    rows.push(Row::new(
        "no hop-by-hop or proxy credential header forwarded",
        if hops.is_empty() {
            format!(
                "none of {} in {} upstream requests",
                NEVER_FORWARDED.join(", "),
                upstream.len()
            )
        } else {
            format!("forwarded: {hops:?}")
        },
        hops.is_empty() && !upstream.is_empty(),
    ));

    // Where secrets could leak: logs at trace level, metrics, admin answers, the database.
    let mut places: Vec<(&str, String)> = vec![("the trace-level log", gw.logs())];
    places.push(("/metrics", metrics(&gw).await));
    for path in [
        "/admin/keys",
        "/admin/usage?limit=1000",
        "/admin/status",
        "/admin/costs?group_by=key",
    ] {
        let text = client()
            .get(gw.url(path))
            .bearer_auth(ADMIN_KEY)
            .send()
            .await
            .unwrap()
            .text()
            .await
            .unwrap();
        places.push((path, text));
    }
    let dir = gw.dir().expect("the gateway's folder").to_owned();
    let mut database = Vec::new();
    for entry in std::fs::read_dir(&dir).unwrap().flatten() {
        let name = entry.file_name().to_string_lossy().into_owned();
        if name.starts_with("switchyard.db") {
            database.extend(std::fs::read(entry.path()).unwrap_or_default());
        }
    }
    places.push((
        "the SQLite database and its WAL",
        String::from_utf8_lossy(&database).into_owned(),
    ));
    let secrets: Vec<&str> = PROVIDER_KEYS
        .iter()
        .map(|(_, key)| *key)
        .chain([issued.as_str(), CLIENT_KEY])
        .collect();
    let mut found = Vec::new();
    for (place, text) in &places {
        for secret in &secrets {
            if text.contains(secret) {
                found.push(format!("{place}: {}…", &secret[..8]));
            }
        }
    }
    let log_lines = places[0].1.lines().count();
    let detailed = places[0]
        .1
        .lines()
        .filter(|line| line.contains(" DEBUG ") || line.contains(" TRACE "))
        .count();
    rows.push(Row::new(
        "no issued, configured or provider key in trace-level logs, /metrics, admin answers or the database",
        if found.is_empty() {
            format!(
                "none of {} keys in {log_lines} log lines ({detailed} below info), /metrics, 4 admin answers, {} KiB of database",
                secrets.len(),
                database.len() / 1024
            )
        } else {
            format!("found: {found:?}")
        },
        found.is_empty() && detailed > 0 && !database.is_empty(),
    ));

    // Wrong keys: near misses of the issued key, and SQL.
    let mut near = issued.clone();
    let last = near.pop().unwrap();
    let near_misses = [
        format!("{near}{}", if last == 'a' { 'b' } else { 'a' }),
        near.clone(),
        format!("{issued}x"),
        issued.to_uppercase(),
        format!("sk-sy-{}", "0".repeat(issued.len().saturating_sub(6))),
    ];
    let sql = [
        "' OR '1'='1",
        "sk-sy-x' OR 1=1 --",
        "\"; DROP TABLE keys; --",
        "sk-sy-%' UNION SELECT secret_hash FROM keys --",
        "1; SELECT pg_sleep(5)",
    ];
    let answer = |key: String| {
        let gw = &gw;
        async move {
            let response = chat(gw, &key).send().await.unwrap();
            let status = response.status().as_u16();
            let mut headers: Vec<String> = response
                .headers()
                .iter()
                .filter(|(name, _)| {
                    !["date", "x-request-id", "content-length"].contains(&name.as_str())
                })
                .map(|(name, value)| format!("{name}: {}", value.to_str().unwrap_or("")))
                .collect();
            headers.sort();
            let body: Value = response.json().await.unwrap_or(Value::Null);
            (status, headers, body)
        }
    };
    let reference = answer("sk-sy-wrong".to_owned()).await;
    let mut differ = Vec::new();
    for key in &near_misses {
        if answer(key.clone()).await != reference {
            differ.push(format!("near miss of {} characters", key.len()));
        }
    }
    rows.push(Row::new(
        "identical 401s for near-miss keys (one character changed, one short, one long, upper case, same prefix)",
        if differ.is_empty() {
            format!("{} near misses answered {} exactly as a wrong key", near_misses.len(), reference.0)
        } else {
            format!("differ: {differ:?}")
        },
        differ.is_empty() && reference.0 == 401,
    ));
    let mut differ = Vec::new();
    for key in sql {
        if answer(key.to_owned()).await != reference {
            differ.push(key);
        }
    }
    let still = chat(&gw, &issued).send().await.unwrap().status().as_u16();
    rows.push(Row::new(
        "bearer tokens with SQL metacharacters get the same 401, and the keys are intact after",
        if differ.is_empty() {
            format!(
                "{} tokens answered {} as a wrong key; the issued key then: {still}",
                sql.len(),
                reference.0
            )
        } else {
            format!("differ: {differ:?}")
        },
        differ.is_empty() && still == 200,
    ));
    rows
}
