//! The pass-through path: what goes upstream, what comes back.

use serde_json::{Value, json};

use crate::harness::*;

#[tokio::test]
async fn chat_answers_like_the_provider_and_says_who_served() {
    let mock = mock(&[]);
    let gw = gateway_for(&mock);
    let response = client()
        .post(gw.url("/v1/chat/completions"))
        .bearer_auth(CLIENT_KEY)
        .header("x-request-id", "req-123")
        .json(&chat("hello there", json!({})))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    let headers = response.headers().clone();
    assert_eq!(headers["x-request-id"], "req-123");
    assert_eq!(headers["x-switchyard-provider"], "up");
    assert_eq!(headers["x-switchyard-model"], "mock-1");
    assert!(
        headers["content-type"]
            .to_str()
            .unwrap()
            .starts_with("application/json")
    );
    let body: Value = response.json().await.unwrap();
    let content = body["choices"][0]["message"]["content"].as_str().unwrap();
    assert!(content.starts_with("echo: hello there "), "{content}");
    assert_eq!(content.split_whitespace().count(), 16);
    assert_eq!(body["usage"]["prompt_tokens"], 4);
    assert_eq!(body["usage"]["completion_tokens"], 16);
    assert_eq!(body["choices"][0]["finish_reason"], "stop");
    let line = gw.wait_for_log(&["request_id=req-123"]);
    for field in [
        "endpoint=\"chat_completions\"",
        "model=\"gpt-4.1\"",
        "provider=\"up\"",
        "status=200",
        "outcome=\"ok\"",
        "prompt_tokens=4",
        "completion_tokens=16",
        "latency_ms=",
    ] {
        assert!(line.contains(field), "{field} missing in {line}");
    }

    let generated = client()
        .post(gw.url("/v1/chat/completions"))
        .bearer_auth(CLIENT_KEY)
        .json(&chat("again", json!({})))
        .send()
        .await
        .unwrap();
    let id = generated.headers()["x-request-id"].to_str().unwrap();
    assert_eq!(id.len(), 36, "a UUID: {id}");
}

#[tokio::test]
async fn the_body_goes_upstream_with_only_the_model_rewritten_and_no_client_key() {
    let mock = mock(&[]);
    let gw = gateway_for(&mock);
    let body = chat(
        "keep my fields",
        json!({"x_vendor_field": {"nested": [1, 2]}, "temperature": 0.25, "seed": 7}),
    );
    let response = client()
        .post(gw.url("/v1/chat/completions"))
        .header("x-api-key", CLIENT_KEY)
        .header("openai-organization", "org-secret")
        .header("cookie", "session=abc")
        .json(&body)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    let seen = received(&mock).await;
    assert_eq!(seen.len(), 1);
    let upstream = &seen[0];
    assert_eq!(upstream["path"], "/v1/chat/completions");
    let mut expected = body.clone();
    expected["model"] = json!("mock-1");
    assert_eq!(upstream["body"], expected);
    let headers = upstream["headers"].as_object().unwrap();
    assert_eq!(headers["authorization"], format!("Bearer {UPSTREAM_KEY}"));
    assert_eq!(headers["host"], mock.addr.to_string());
    for forbidden in ["x-api-key", "openai-organization", "cookie"] {
        assert!(
            !headers.contains_key(forbidden),
            "{forbidden} was forwarded"
        );
    }
    let all = serde_json::to_string(upstream).unwrap();
    gw.wait_for_log(&["outcome=\"ok\""]);
    assert!(
        !all.contains(CLIENT_KEY),
        "the client key reached the provider"
    );
    assert!(
        !gw.logs().contains(UPSTREAM_KEY),
        "the provider key reached a log"
    );
    assert!(
        !gw.logs().contains(CLIENT_KEY),
        "the client key reached a log"
    );
    assert!(
        !gw.logs().contains("keep my fields"),
        "prompt text reached a log"
    );
}

#[tokio::test]
async fn completions_embeddings_and_models() {
    let mock = mock(&[]);
    let gw = gateway_for(&mock);
    let completion: Value = post(
        &gw,
        "/v1/completions",
        &json!({"model": "gpt-4.1", "prompt": "say this", "max_tokens": 5}),
    )
    .await
    .json()
    .await
    .unwrap();
    assert_eq!(completion["object"], "text_completion");
    assert_eq!(
        completion["choices"][0]["text"],
        "echo: say this lorem ipsum"
    );
    assert_eq!(completion["choices"][0]["finish_reason"], "length");

    let embeddings = post(
        &gw,
        "/v1/embeddings",
        &json!({"model": "gpt-4.1", "input": ["a b", "c"], "dimensions": 4}),
    )
    .await;
    assert_eq!(embeddings.status(), 200);
    let embeddings: Value = embeddings.json().await.unwrap();
    assert_eq!(embeddings["data"].as_array().unwrap().len(), 2);
    let vector: Vec<f64> =
        serde_json::from_value(embeddings["data"][0]["embedding"].clone()).unwrap();
    assert_eq!(vector.len(), 4);
    let norm: f64 = vector.iter().map(|x| x * x).sum::<f64>().sqrt();
    assert!((norm - 1.0).abs() < 1e-4, "{norm}");
    assert_eq!(embeddings["usage"]["prompt_tokens"], 3);

    let models = get_json(&gw.url("/v1/models")).await;
    assert_eq!(models["object"], "list");
    assert_eq!(models["data"][0]["id"], "gpt-4.1");
    assert_eq!(models["data"].as_array().unwrap().len(), 1);
}

#[tokio::test]
async fn health_and_ready_need_no_key() {
    let mock = mock(&[]);
    let gw = gateway_for(&mock);
    for path in ["/health", "/ready"] {
        let response = client().get(gw.url(path)).send().await.unwrap();
        assert_eq!(response.status(), 200, "{path}");
    }
}

#[tokio::test]
async fn the_built_in_default_serves_the_in_process_mock() {
    let dir = tempfile::tempdir().unwrap();
    let check = std::process::Command::new(env!("CARGO_BIN_EXE_switchyard"))
        .arg("check")
        .current_dir(dir.path())
        .env_remove("OPENAI_API_KEY")
        .output()
        .unwrap();
    let out = String::from_utf8_lossy(&check.stdout);
    assert!(check.status.success(), "{out}");
    assert!(
        out.contains("<built-in>: ok (1 providers, 1 models)"),
        "{out}"
    );
    let gw = builtin_gateway(dir.path());
    let body: Value = client()
        .post(gw.url("/v1/chat/completions"))
        .json(&json!({"model": "mock", "messages": [{"role": "user", "content": "hi"}]}))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert!(
        body["choices"][0]["message"]["content"]
            .as_str()
            .unwrap()
            .starts_with("echo: hi")
    );
}

fn builtin_gateway(dir: &std::path::Path) -> Process {
    // The built-in default listens on SWITCHYARD_LISTEN (127.0.0.1:8080 when unset).
    Process::spawn_in(&["serve"], dir, &[("SWITCHYARD_LISTEN", "127.0.0.1:0")])
}

#[tokio::test]
async fn json_logs_are_one_object_per_line() {
    let mock = mock(&[]);
    let gw = gateway_with(
        &config(&mock.url("/v1"), "connect: 1s", ""),
        &["--log-format", "json"],
    );
    let response = client()
        .post(gw.url("/v1/chat/completions"))
        .bearer_auth(CLIENT_KEY)
        .header("x-request-id", "req-json")
        .json(&chat("log me", json!({})))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    let _ = response.text().await.unwrap();
    let line = gw.wait_for_log(&["req-json"]);
    let record: Value = serde_json::from_str(&line).unwrap_or_else(|e| panic!("{e}: {line}"));
    assert_eq!(record["request_id"], "req-json");
    assert_eq!(record["model"], "gpt-4.1");
    assert_eq!(record["provider"], "up");
    assert_eq!(record["status"], 200);
    assert_eq!(record["outcome"], "ok");
    assert_eq!(record["completion_tokens"], 16);
    assert!(record["latency_ms"].as_f64().unwrap() > 0.0);
    for line in gw.logs().lines() {
        serde_json::from_str::<Value>(line).unwrap_or_else(|e| panic!("not JSON ({e}): {line}"));
    }
}

#[tokio::test]
async fn a_provider_is_spoken_to_in_http1_unless_it_is_set_to_http2() {
    let mock = mock(&[]);
    let http1 = gateway_for(&mock);
    let http2 = gateway(
        &config(&mock.url("/v1"), "connect: 1s", "")
            .replace("    timeouts:", "    http2: true\n    timeouts:"),
    );
    for gw in [&http1, &http2] {
        let response = post(gw, "/v1/chat/completions", &chat("hello", json!({}))).await;
        assert_eq!(response.status(), 200);
        let stream = post_stream(gw, "hi").await;
        assert_eq!(stream.status(), 200);
        let events = sse_data(&stream.text().await.unwrap());
        assert_eq!(events.last().map(String::as_str), Some("[DONE]"));
    }
    let versions: Vec<Value> = received(&mock)
        .await
        .iter()
        .map(|r| r["version"].clone())
        .collect();
    assert_eq!(versions, ["HTTP/1.1", "HTTP/1.1", "HTTP/2.0", "HTTP/2.0"]);
}
