//! The response cache, counted with the mock's stats: what hits, what
//! misses, what is never stored, streams replayed across shapes and
//! dialects, coalescing, and scopes.

use std::time::{Duration, Instant};

use reqwest::header::HeaderMap;
use serde_json::{Value, json};

use crate::harness::*;

const KEY_B: &str = "sk-client-other";

/// A gateway with the memory cache in front of `mock`: `gpt-4.1` (OpenAI),
/// `claude` (Anthropic) and `embed` (OpenAI embeddings); two config keys.
fn cached_gateway(mock: &Process, cache_extra: &str) -> Process {
    let root = mock.url("");
    let root = root.trim_end_matches('/');
    gateway(&format!(
        r#"
server:
  listen: 127.0.0.1:0
auth:
  mode: keys
keys:
  - {{ name: a, key: {CLIENT_KEY} }}
  - {{ name: b, key: {KEY_B} }}
providers:
  up: {{ kind: openai, base_url: {root}/v1, api_key: {UPSTREAM_KEY} }}
  claude: {{ kind: anthropic, base_url: {root}, api_key: {UPSTREAM_KEY} }}
models:
  gpt-4.1:
    deployments: [{{ provider: up, model: mock-1 }}]
  claude:
    deployments: [{{ provider: claude, model: claude-x }}]
  embed:
    deployments: [{{ provider: up, model: embed-1 }}]
  translated:
    deployments: [{{ provider: claude, model: claude-y }}]
cache:
  backend: memory
{cache_extra}
"#
    ))
}

/// POSTs `body` to `path` with `key` and `headers`: status, headers, body text.
async fn send(
    gw: &Process,
    path: &str,
    key: &str,
    headers: &[(&str, &str)],
    body: &Value,
) -> (u16, HeaderMap, String) {
    let mut request = client()
        .post(gw.url(path))
        .bearer_auth(key)
        .header("x-api-key", key);
    for (name, value) in headers {
        request = request.header(*name, *value);
    }
    let response = request.json(body).send().await.unwrap();
    let status = response.status().as_u16();
    let headers = response.headers().clone();
    (status, headers, response.text().await.unwrap())
}

fn cache_header(headers: &HeaderMap) -> &str {
    headers
        .get("x-switchyard-cache")
        .map_or("none", |v| v.to_str().unwrap())
}

#[tokio::test]
async fn a_repeated_request_hits_with_the_same_body_and_no_upstream_call() {
    let mock = mock(&[]);
    let gw = cached_gateway(&mock, "");
    let body = chat("what is a cache", json!({"temperature": 0}));
    let (status, headers, first) = send(&gw, "/v1/chat/completions", CLIENT_KEY, &[], &body).await;
    assert_eq!((status, cache_header(&headers)), (200, "miss"));
    assert_eq!(mock_requests(&mock).await, 1);
    let (status, headers, second) = send(&gw, "/v1/chat/completions", CLIENT_KEY, &[], &body).await;
    assert_eq!((status, cache_header(&headers)), (200, "hit"));
    assert_eq!(second, first);
    assert_eq!(headers["x-switchyard-attempts"], "0");
    assert_eq!(headers["x-switchyard-route"], "cache=hit");
    assert!(headers.contains_key("age"));
    assert_eq!(mock_requests(&mock).await, 1);

    // Key order, whitespace and `user` do not count.
    let reordered = r#"{ "temperature": 0.0, "user": "someone",
        "messages": [{"content": "be brief", "role": "system"}, {"role": "user", "content": "what is a cache"}],
        "model": "gpt-4.1" }"#;
    let response = client()
        .post(gw.url("/v1/chat/completions"))
        .bearer_auth(CLIENT_KEY)
        .header("content-type", "application/json")
        .body(reordered)
        .send()
        .await
        .unwrap();
    assert_eq!(response.headers()["x-switchyard-cache"], "hit");
    assert_eq!(response.text().await.unwrap(), first);

    // A changed temperature is another request.
    let warmer = chat("what is a cache", json!({"temperature": 0.5}));
    let (_, headers, _) = send(&gw, "/v1/chat/completions", CLIENT_KEY, &[], &warmer).await;
    assert_eq!(cache_header(&headers), "miss");
    assert_eq!(mock_requests(&mock).await, 2);

    let metrics = metrics(&gw).await;
    assert!(
        metrics.contains("switchyard_cache_requests_total{result=\"hit\"} 2"),
        "{metrics}"
    );
    assert!(
        metrics.contains("switchyard_cache_requests_total{result=\"miss\"} 2"),
        "{metrics}"
    );
    assert!(
        metrics.contains("switchyard_cache_fills_total{result=\"stored\"} 2"),
        "{metrics}"
    );
    assert!(
        metrics.contains("switchyard_cache_saved_tokens_total{model=\"gpt-4.1\"}"),
        "{metrics}"
    );
}

#[tokio::test]
async fn no_store_and_no_cache_behave_as_asked() {
    let mock = mock(&[]);
    let gw = cached_gateway(&mock, "");
    let body = chat("fresh please", json!({}));
    let no_store = [("cache-control", "no-store")];
    for _ in 0..2 {
        let (_, headers, _) = send(&gw, "/v1/chat/completions", CLIENT_KEY, &no_store, &body).await;
        assert_eq!(cache_header(&headers), "bypass");
    }
    assert_eq!(mock_requests(&mock).await, 2);
    // Nothing was stored: a plain request misses, then hits.
    let (_, headers, _) = send(&gw, "/v1/chat/completions", CLIENT_KEY, &[], &body).await;
    assert_eq!(cache_header(&headers), "miss");
    let (_, headers, _) = send(&gw, "/v1/chat/completions", CLIENT_KEY, &[], &body).await;
    assert_eq!(cache_header(&headers), "hit");
    assert_eq!(mock_requests(&mock).await, 3);
    // no-cache goes upstream and refreshes the entry.
    let no_cache = [("cache-control", "no-cache")];
    let (_, headers, _) = send(&gw, "/v1/chat/completions", CLIENT_KEY, &no_cache, &body).await;
    assert_eq!(cache_header(&headers), "miss");
    assert_eq!(mock_requests(&mock).await, 4);
    let (_, headers, _) = send(&gw, "/v1/chat/completions", CLIENT_KEY, &[], &body).await;
    assert_eq!(cache_header(&headers), "hit");
    // A TTL of 0 stores nothing.
    let other = chat("not kept", json!({}));
    let zero = [("x-switchyard-cache-ttl", "0")];
    send(&gw, "/v1/chat/completions", CLIENT_KEY, &zero, &other).await;
    let (_, headers, _) = send(&gw, "/v1/chat/completions", CLIENT_KEY, &[], &other).await;
    assert_eq!(cache_header(&headers), "miss");
}

#[tokio::test]
async fn one_keys_answers_never_reach_another_key() {
    let mock = mock(&[]);
    let gw = cached_gateway(&mock, "");
    let body = chat("private question", json!({}));
    send(&gw, "/v1/chat/completions", CLIENT_KEY, &[], &body).await;
    let (_, headers, _) = send(&gw, "/v1/chat/completions", KEY_B, &[], &body).await;
    assert_eq!(cache_header(&headers), "miss");
    assert_eq!(mock_requests(&mock).await, 2);
    // With `scope: global` they share.
    let shared = cached_gateway(&mock, "  scope: global");
    send(&shared, "/v1/chat/completions", CLIENT_KEY, &[], &body).await;
    let (_, headers, _) = send(&shared, "/v1/chat/completions", KEY_B, &[], &body).await;
    assert_eq!(cache_header(&headers), "hit");
    assert_eq!(mock_requests(&mock).await, 3);
}

#[tokio::test]
async fn errors_cut_streams_length_and_tool_calls_are_not_stored() {
    let mock = mock(&[]);
    let gw = cached_gateway(&mock, "");
    let path = "/v1/chat/completions";
    // An upstream error.
    set_faults(&mock, json!({"error_rate": 1.0})).await;
    let body = chat("failing", json!({}));
    let (status, ..) = send(&gw, path, CLIENT_KEY, &[], &body).await;
    assert_ne!(status, 200);
    set_faults(&mock, json!({"error_rate": 0.0})).await;
    let (status, headers, _) = send(&gw, path, CLIENT_KEY, &[], &body).await;
    assert_eq!((status, cache_header(&headers)), (200, "miss"));
    // A stream cut in the middle, every time.
    let cutting = self::mock(&["--stream-cut-rate", "1"]);
    let cut_gw = cached_gateway(&cutting, "");
    let streamed = chat("cut short", json!({"stream": true}));
    for _ in 0..2 {
        let (_, headers, text) = send(&cut_gw, path, CLIENT_KEY, &[], &streamed).await;
        assert!(!text.ends_with("[DONE]\n\n"), "{text}");
        assert_eq!(cache_header(&headers), "miss");
    }
    // An answer cut by max_tokens (finish_reason length).
    let capped = chat("too long", json!({"max_tokens": 2}));
    for _ in 0..2 {
        let (_, headers, text) = send(&gw, path, CLIENT_KEY, &[], &capped).await;
        assert!(text.contains("\"length\""), "{text}");
        assert_eq!(cache_header(&headers), "miss");
    }
    // The same, streamed.
    let capped = chat("too long", json!({"max_tokens": 2, "stream": true}));
    for _ in 0..2 {
        let (_, headers, text) = send(&gw, path, CLIENT_KEY, &[], &capped).await;
        assert!(text.contains("\"length\""), "{text}");
        assert_eq!(cache_header(&headers), "miss");
    }
    // An answer that calls a tool.
    let tools = chat(
        "weather",
        json!({"tools": [{"type": "function", "function": {"name": "weather", "parameters": {"type": "object"}}}]}),
    );
    for _ in 0..2 {
        let (_, headers, text) = send(&gw, path, CLIENT_KEY, &[], &tools).await;
        assert!(text.contains("tool_calls"), "{text}");
        assert_eq!(cache_header(&headers), "miss");
    }
    let metrics = metrics(&gw).await;
    for result in ["error", "length", "tool_calls"] {
        assert!(
            metrics.contains(&format!(
                "switchyard_cache_fills_total{{result=\"{result}\"}}"
            )),
            "{result}: {metrics}"
        );
    }
}

#[tokio::test]
async fn a_stored_stream_answers_json_and_a_stored_json_answers_a_stream() {
    let mock = mock(&[]);
    let gw = cached_gateway(&mock, "");
    let path = "/v1/chat/completions";
    // Streamed first, then asked as JSON.
    let streamed = chat("stream me", json!({"stream": true}));
    let (_, headers, text) = send(&gw, path, CLIENT_KEY, &[], &streamed).await;
    assert_eq!(cache_header(&headers), "miss");
    let streamed_text = stream_text(&sse_data(&text));
    let whole = chat("stream me", json!({}));
    let (_, headers, text) = send(&gw, path, CLIENT_KEY, &[], &whole).await;
    assert_eq!(cache_header(&headers), "hit");
    assert_eq!(headers["content-type"], "application/json");
    let answer: Value = serde_json::from_str(&text).unwrap();
    assert_eq!(
        answer["choices"][0]["message"]["content"],
        streamed_text.as_str()
    );
    assert!(
        answer["usage"]["total_tokens"].as_u64().unwrap() > 0,
        "{answer}"
    );
    // JSON first, then asked as a stream, with usage.
    let whole = chat("json me", json!({}));
    let (_, _, text) = send(&gw, path, CLIENT_KEY, &[], &whole).await;
    let answer: Value = serde_json::from_str(&text).unwrap();
    let streamed = chat(
        "json me",
        json!({"stream": true, "stream_options": {"include_usage": true}}),
    );
    let (_, headers, text) = send(&gw, path, CLIENT_KEY, &[], &streamed).await;
    assert_eq!(cache_header(&headers), "hit");
    assert_eq!(headers["content-type"], "text/event-stream");
    let events = sse_data(&text);
    assert_eq!(events.last().unwrap(), "[DONE]");
    assert_eq!(
        stream_text(&events),
        answer["choices"][0]["message"]["content"].as_str().unwrap()
    );
    let usage: Value = serde_json::from_str(&events[events.len() - 2]).unwrap();
    for count in ["prompt_tokens", "completion_tokens", "total_tokens"] {
        assert_eq!(usage["usage"][count], answer["usage"][count], "{usage}");
    }
    assert_eq!(mock_requests(&mock).await, 2);
}

#[tokio::test]
async fn anthropic_clients_hit_in_their_own_dialect_both_ways() {
    let mock = mock(&[]);
    let gw = cached_gateway(&mock, "");
    for model in ["claude", "gpt-4.1"] {
        let message = |stream: bool| {
            json!({"model": model, "max_tokens": 100, "stream": stream,
                   "messages": [{"role": "user", "content": format!("hello {model}")}]})
        };
        let (status, headers, text) =
            send(&gw, "/v1/messages", CLIENT_KEY, &[], &message(true)).await;
        assert_eq!((status, cache_header(&headers)), (200, "miss"), "{text}");
        assert!(text.contains("event: message_stop"), "{text}");
        let (_, headers, json_text) =
            send(&gw, "/v1/messages", CLIENT_KEY, &[], &message(false)).await;
        assert_eq!(cache_header(&headers), "hit", "{model}");
        let answer: Value = serde_json::from_str(&json_text).unwrap();
        assert_eq!(answer["type"], "message", "{answer}");
        let said = answer["content"][0]["text"].as_str().unwrap();
        assert!(said.starts_with(&format!("echo: hello {model}")), "{said}");
        // The JSON entry answers a stream too.
        let (_, headers, text) = send(&gw, "/v1/messages", CLIENT_KEY, &[], &message(true)).await;
        assert_eq!(cache_header(&headers), "hit");
        assert!(text.contains("event: message_stop"), "{text}");
    }
    assert_eq!(mock_requests(&mock).await, 2);
}

#[tokio::test]
async fn concurrent_identical_misses_make_one_upstream_call() {
    let mock = mock(&["--latency", "300ms"]);
    let gw = cached_gateway(&mock, "");
    let sent = (0..100).map(|i| {
        let gw = &gw;
        async move {
            let body = chat("everyone asks this", json!({"stream": i % 2 == 0}));
            send(gw, "/v1/chat/completions", CLIENT_KEY, &[], &body).await
        }
    });
    let answers = futures_util::future::join_all(sent).await;
    assert_eq!(mock_requests(&mock).await, 1);
    let mut hits = 0;
    for (i, (status, headers, text)) in answers.iter().enumerate() {
        assert_eq!(*status, 200, "{text}");
        if cache_header(headers) == "hit" {
            hits += 1;
        }
        let said = if i % 2 == 0 {
            stream_text(&sse_data(text))
        } else {
            let answer: Value = serde_json::from_str(text).unwrap();
            answer["choices"][0]["message"]["content"]
                .as_str()
                .unwrap()
                .to_owned()
        };
        assert!(said.starts_with("echo: everyone asks this"), "{said}");
    }
    assert_eq!(hits, 99);
}

#[tokio::test]
async fn embeddings_and_completions_are_cached_too() {
    let mock = mock(&[]);
    let gw = cached_gateway(&mock, "");
    let embed = json!({"model": "embed", "input": ["one", "two"]});
    let (_, _, first) = send(&gw, "/v1/embeddings", CLIENT_KEY, &[], &embed).await;
    let (_, headers, second) = send(&gw, "/v1/embeddings", CLIENT_KEY, &[], &embed).await;
    assert_eq!(cache_header(&headers), "hit");
    assert_eq!(first, second);
    let complete = json!({"model": "gpt-4.1", "prompt": "once upon"});
    send(&gw, "/v1/completions", CLIENT_KEY, &[], &complete).await;
    let (_, headers, _) = send(&gw, "/v1/completions", CLIENT_KEY, &[], &complete).await;
    assert_eq!(cache_header(&headers), "hit");
    // A streamed legacy completion goes without the cache.
    let streamed = json!({"model": "gpt-4.1", "prompt": "once upon", "stream": true});
    let (_, headers, _) = send(&gw, "/v1/completions", CLIENT_KEY, &[], &streamed).await;
    assert_eq!(cache_header(&headers), "bypass");
    assert_eq!(mock_requests(&mock).await, 3);
}

#[tokio::test]
async fn a_model_can_turn_its_cache_off_or_keep_only_deterministic_answers() {
    let mock = mock(&[]);
    let gw = gateway(&openai_config(
        &mock,
        "",
        r#"  off:
    cache: { enabled: false }
    deployments: [{ provider: up, model: m }]
  strict:
    cache: { only_deterministic: true, ttl: 10m }
    deployments: [{ provider: up, model: m }]
cache: { backend: memory }"#,
    ));
    let ask = |model: &str, extra: Value| {
        let mut body = chat("hi", extra);
        body["model"] = json!(model);
        body
    };
    let path = "/v1/chat/completions";
    let (_, headers, _) = send(&gw, path, CLIENT_KEY, &[], &ask("off", json!({}))).await;
    assert_eq!(cache_header(&headers), "bypass");
    let (_, headers, _) = send(
        &gw,
        path,
        CLIENT_KEY,
        &[],
        &ask("strict", json!({"temperature": 1})),
    )
    .await;
    assert_eq!(cache_header(&headers), "bypass");
    let seeded = ask("strict", json!({"temperature": 1, "seed": 4}));
    send(&gw, path, CLIENT_KEY, &[], &seeded).await;
    let (_, headers, _) = send(&gw, path, CLIENT_KEY, &[], &seeded).await;
    assert_eq!(cache_header(&headers), "hit");
}

#[tokio::test]
async fn an_embeddings_batch_sends_only_its_uncached_inputs_upstream() {
    let mock = mock(&[]);
    let gw = cached_gateway(&mock, "");
    let inputs: Vec<String> = (0..10).map(|i| format!("sentence number {i}")).collect();
    let batch = |items: &[String], format: &str| json!({"model": "embed", "input": items, "encoding_format": format});
    // Seven of the ten are fetched first.
    let (_, headers, _) = send(
        &gw,
        "/v1/embeddings",
        CLIENT_KEY,
        &[],
        &batch(&inputs[..7], "float"),
    )
    .await;
    assert_eq!(cache_header(&headers), "miss");
    assert_eq!(mock_requests(&mock).await, 1);
    // The ten: only the other three go upstream, and the answer is in order.
    let (status, headers, text) = send(
        &gw,
        "/v1/embeddings",
        CLIENT_KEY,
        &[],
        &batch(&inputs, "float"),
    )
    .await;
    assert_eq!(status, 200, "{text}");
    assert_eq!(cache_header(&headers), "miss");
    assert_eq!(mock_requests(&mock).await, 2);
    let sent = received(&mock).await;
    let last = &sent.last().unwrap()["body"];
    assert_eq!(last["input"], json!(inputs[7..]), "{last}");
    let stitched: Value = serde_json::from_str(&text).unwrap();
    // The same vectors the provider gives for the whole batch, in order.
    let direct: Value = client()
        .post(mock.url("/v1/embeddings"))
        .json(&json!({"model": "embed-1", "input": inputs, "encoding_format": "float"}))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let data = stitched["data"].as_array().unwrap();
    assert_eq!(data.len(), 10);
    for (i, item) in data.iter().enumerate() {
        assert_eq!(item["index"], i);
        assert_eq!(
            item["embedding"], direct["data"][i]["embedding"],
            "item {i}"
        );
    }
    assert!(stitched["usage"]["prompt_tokens"].as_u64().unwrap() > 0);
    // Now every item is cached: the batch is a hit, in any order of its own.
    let mut reversed = inputs.clone();
    reversed.reverse();
    let (_, headers, text) = send(
        &gw,
        "/v1/embeddings",
        CLIENT_KEY,
        &[],
        &batch(&reversed, "float"),
    )
    .await;
    assert_eq!(cache_header(&headers), "hit");
    let hit: Value = serde_json::from_str(&text).unwrap();
    assert_eq!(hit["data"][0]["embedding"], direct["data"][9]["embedding"]);
    // Another encoding is another entry.
    let (_, headers, _) = send(
        &gw,
        "/v1/embeddings",
        CLIENT_KEY,
        &[],
        &batch(&inputs, "base64"),
    )
    .await;
    assert_eq!(cache_header(&headers), "miss");
    assert_eq!(mock_requests(&mock).await, 4);
}

/// A keys-mode gateway with the test key and provider `up` (OpenAI, on
/// `mock`): `top` top-level YAML, then `rest` (`models:` on).
fn openai_config(mock: &Process, top: &str, rest: &str) -> String {
    let base = mock.url("/v1");
    format!(
        "server: {{ listen: 127.0.0.1:0 }}\nauth: {{ mode: keys }}\nkeys: [{{ key: {CLIENT_KEY} }}]\n{top}\nproviders:\n  up: {{ kind: openai, base_url: {base}, api_key: {UPSTREAM_KEY} }}\nmodels:\n{rest}\n"
    )
}

/// A gateway config whose `gpt-4.1` has a semantic cache (threshold 0.85)
/// over the mock's word embeddings (model `words`), with `backend`.
pub fn semantic_config(mock: &Process, top: &str, backend: &str) -> String {
    openai_config(
        mock,
        top,
        &format!(
            "  gpt-4.1:\n    cache:\n      semantic: {{ embedding_model: words, threshold: 0.85, dimensions: 512 }}\n    deployments: [{{ provider: up, model: mock-1 }}]\n  words:\n    deployments: [{{ provider: up, model: text-embedding-words }}]\ncache: {{ backend: {backend} }}"
        ),
    )
}

/// Chat calls the mock received.
async fn chat_calls(mock: &Process) -> u64 {
    get_json(&mock.url("/mock/stats")).await["by_path"]["/v1/chat/completions"]
        .as_u64()
        .unwrap_or(0)
}

#[tokio::test]
async fn an_embedding_past_the_semantic_timeout_leaves_the_request_a_miss_and_is_counted() {
    let chat_mock = mock(&[]);
    let slow = mock(&["--latency", "3s"]);
    let yaml = semantic_config(&chat_mock, "", "memory")
        .replace(
            "cache: { backend: memory }",
            "cache: { backend: memory, semantic: { timeout: 200ms } }",
        )
        .replace(
            "  up: {",
            &format!(
                "  slow: {{ kind: openai, base_url: {}, api_key: {UPSTREAM_KEY} }}\n  up: {{",
                slow.url("/v1")
            ),
        )
        .replace(
            "[{ provider: up, model: text-embedding-words }]",
            "[{ provider: slow, model: text-embedding-words }]",
        );
    let gw = gateway(&yaml);
    for text in [
        "what is the capital of france",
        "what is the capital of france today",
    ] {
        let started = Instant::now();
        let (status, headers, _) = send(
            &gw,
            "/v1/chat/completions",
            CLIENT_KEY,
            &[],
            &json!({"model": "gpt-4.1", "messages": [{"role": "user", "content": text}]}),
        )
        .await;
        assert_eq!((status, cache_header(&headers)), (200, "miss"));
        assert!(
            started.elapsed() < Duration::from_millis(1500),
            "{:?}",
            started.elapsed()
        );
    }
    let metrics = metrics(&gw).await;
    assert!(
        metrics.contains(
            "switchyard_cache_backend_errors_total{backend=\"embedding\",op=\"embed\"} 2"
        ),
        "{metrics}"
    );
    assert_eq!(chat_calls(&chat_mock).await, 2);
}

#[tokio::test]
async fn a_paraphrase_hits_semantically_and_other_prompts_never_do() {
    let mock = mock(&[]);
    let gw = gateway(&semantic_config(&mock, "", "memory"));
    let ask = |system: &str, text: &str, stream: bool| {
        json!({"model": "gpt-4.1", "stream": stream, "messages": [
            {"role": "system", "content": system},
            {"role": "user", "content": text},
        ]})
    };
    let path = "/v1/chat/completions";
    let original = "please tell me what the capital city of france is today";
    let (_, headers, first) = send(
        &gw,
        path,
        CLIENT_KEY,
        &[],
        &ask("be brief", original, false),
    )
    .await;
    assert_eq!(cache_header(&headers), "miss");
    assert_eq!(chat_calls(&mock).await, 1);
    // One word of ten changed, and reordered: similar enough.
    let paraphrase = "Please tell me now: what is the capital city of France";
    let (_, headers, text) = send(
        &gw,
        path,
        CLIENT_KEY,
        &[],
        &ask("be brief", paraphrase, false),
    )
    .await;
    assert_eq!(cache_header(&headers), "semantic");
    assert_eq!(headers["x-switchyard-route"], "cache=semantic");
    let similarity: f32 = headers["x-switchyard-cache-similarity"]
        .to_str()
        .unwrap()
        .parse()
        .unwrap();
    assert!((0.85..1.0).contains(&similarity), "{similarity}");
    assert_eq!(text, first);
    // As a stream too.
    let (_, headers, text) = send(
        &gw,
        path,
        CLIENT_KEY,
        &[],
        &ask("be brief", paraphrase, true),
    )
    .await;
    assert_eq!(cache_header(&headers), "semantic");
    assert!(
        stream_text(&sse_data(&text)).starts_with("echo: please tell me"),
        "{text}"
    );
    assert_eq!(chat_calls(&mock).await, 1);
    // An unrelated prompt misses.
    let (_, headers, _) = send(
        &gw,
        path,
        CLIENT_KEY,
        &[],
        &ask("be brief", "write a haiku about autumn leaves", false),
    )
    .await;
    assert_eq!(cache_header(&headers), "miss");
    // The same words under another system prompt never match.
    let (_, headers, _) = send(
        &gw,
        path,
        CLIENT_KEY,
        &[],
        &ask("be verbose", original, false),
    )
    .await;
    assert_eq!(cache_header(&headers), "miss");
    assert_eq!(chat_calls(&mock).await, 3);
    let metrics = metrics(&gw).await;
    assert!(
        metrics.contains("switchyard_cache_requests_total{result=\"semantic\"} 2"),
        "{metrics}"
    );
    assert!(
        metrics.contains("switchyard_cache_semantic_vectors 3"),
        "{metrics}"
    );
}
