//! Provider kinds other than OpenAI's: where their requests go, with which
//! headers, and the limits of translation. (What is translated, and how, is
//! checked by the golden tests of `switchyard-providers` and, with the official
//! SDKs, by the end-to-end suite.)

use serde_json::{Value, json};

use crate::harness::*;

/// A gateway with one model per provider kind, all on `mock`.
fn dialect_gateway(mock: &Process, server_extra: &str) -> Process {
    let root = mock.url("");
    let root = root.trim_end_matches('/');
    gateway(&format!(
        r#"
server:
  listen: 127.0.0.1:0
{server_extra}
auth:
  mode: keys
keys:
  - key: {CLIENT_KEY}
providers:
  az:
    kind: azure
    base_url: {root}
    api_key: {UPSTREAM_KEY}
    api_version: 2025-01-01-preview
  claude:
    kind: anthropic
    base_url: {root}
    api_key: {UPSTREAM_KEY}
  gem:
    kind: gemini
    base_url: {root}
    api_key: {UPSTREAM_KEY}
models:
  azure-gpt:
    deployments:
      - {{ provider: az, model: my-gpt-deployment }}
  claude:
    max_output_tokens: 300
    deployments:
      - {{ provider: claude, model: claude-mock }}
  claude-small:
    deployments:
      - {{ provider: claude, model: claude-mock, max_output_tokens: 20 }}
  gemini:
    deployments:
      - {{ provider: gem, model: gemini-mock }}
"#
    ))
}

fn body_of(request: &Value) -> &Value {
    &request["body"]
}

#[tokio::test]
async fn each_kind_gets_its_url_and_key_header() {
    let mock = mock(&[]);
    let gw = dialect_gateway(&mock, "");
    for model in ["azure-gpt", "claude", "gemini"] {
        let mut body = chat("hello", json!({}));
        body["model"] = json!(model);
        let response = post(&gw, "/v1/chat/completions", &body).await;
        assert_eq!(response.status(), 200, "{model}");
        let answer: Value = response.json().await.unwrap();
        let content = answer["choices"][0]["message"]["content"].as_str().unwrap();
        assert!(content.starts_with("echo: hello"), "{model}: {answer}");
    }
    let stream = post(
        &gw,
        "/v1/chat/completions",
        &json!({"model": "gemini", "stream": true, "messages": [{"role": "user", "content": "hi"}]}),
    )
    .await;
    assert_eq!(stream.status(), 200);
    let events = sse_data(&stream.text().await.unwrap());
    assert_eq!(events.last().unwrap(), "[DONE]");
    assert!(stream_text(&events).starts_with("echo: hi"));

    let seen = received(&mock).await;
    assert_eq!(seen.len(), 4);
    let (azure, claude, gemini, gemini_stream) = (&seen[0], &seen[1], &seen[2], &seen[3]);
    assert_eq!(
        azure["path"],
        "/openai/deployments/my-gpt-deployment/chat/completions"
    );
    assert_eq!(azure["query"], "api-version=2025-01-01-preview");
    assert_eq!(azure["headers"]["api-key"], UPSTREAM_KEY);
    assert_eq!(body_of(azure)["model"], "my-gpt-deployment");

    assert_eq!(claude["path"], "/v1/messages");
    assert_eq!(claude["headers"]["x-api-key"], UPSTREAM_KEY);
    assert_eq!(claude["headers"]["anthropic-version"], "2023-06-01");
    assert_eq!(body_of(claude)["model"], "claude-mock");
    assert_eq!(
        body_of(claude)["max_tokens"],
        300,
        "the model's max_output_tokens, as the client set no cap"
    );

    assert_eq!(gemini["path"], "/v1beta/models/gemini-mock:generateContent");
    assert_eq!(gemini["headers"]["x-goog-api-key"], UPSTREAM_KEY);
    assert_eq!(
        gemini_stream["path"],
        "/v1beta/models/gemini-mock:streamGenerateContent"
    );
    assert_eq!(gemini_stream["query"], "alt=sse");
    for request in &seen {
        let headers = request["headers"].as_object().unwrap();
        assert!(!headers.contains_key("authorization"), "{request}");
        assert!(
            !request.to_string().contains(CLIENT_KEY),
            "the client's key never goes upstream"
        );
    }
}

#[tokio::test]
async fn the_client_cap_wins_over_the_configured_one() {
    let mock = mock(&[]);
    let gw = dialect_gateway(&mock, "");
    for (model, extra, cap) in [
        ("claude", json!({"max_tokens": 7}), 7),
        ("claude", json!({"max_completion_tokens": 9}), 9),
        ("claude-small", json!({}), 20),
    ] {
        let mut body = chat("hello", extra);
        body["model"] = json!(model);
        assert_eq!(post(&gw, "/v1/chat/completions", &body).await.status(), 200);
        let seen = received(&mock).await;
        assert_eq!(body_of(seen.last().unwrap())["max_tokens"], cap, "{model}");
    }
}

#[tokio::test]
async fn endpoints_a_dialect_lacks_are_refused_before_any_upstream_call() {
    let mock = mock(&[]);
    let gw = dialect_gateway(&mock, "");
    for (path, body) in [
        (
            "/v1/completions",
            json!({"model": "claude", "prompt": "hi"}),
        ),
        (
            "/v1/completions",
            json!({"model": "gemini", "prompt": "hi"}),
        ),
        ("/v1/embeddings", json!({"model": "claude", "input": "hi"})),
    ] {
        let response = post(&gw, path, &body).await;
        assert_eq!(response.status(), 400, "{path} {body}");
        let error: Value = response.json().await.unwrap();
        assert_eq!(error["error"]["code"], "unsupported_endpoint");
        assert_eq!(error["error"]["param"], "model");
    }
    assert!(received(&mock).await.is_empty());
}

#[tokio::test]
async fn a_translated_answer_larger_than_the_limit_is_a_502() {
    let mock = mock(&["--completion-tokens", "400"]);
    let gw = dialect_gateway(&mock, "  max_response_bytes: 1KiB");
    let mut body = chat("hello", json!({}));
    body["model"] = json!("gemini");
    let response = post(&gw, "/v1/chat/completions", &body).await;
    assert_eq!(response.status(), 502);
    let error: Value = response.json().await.unwrap();
    let message = error["error"]["message"].as_str().unwrap();
    assert!(message.contains("max_response_bytes"), "{message}");
    // A short answer fits.
    body["max_tokens"] = json!(5);
    assert_eq!(post(&gw, "/v1/chat/completions", &body).await.status(), 200);
}

#[tokio::test]
async fn the_messages_endpoint_answers_in_anthropics_shape() {
    let mock = mock(&[]);
    let gw = dialect_gateway(&mock, "");
    let wrong_method = client()
        .get(gw.url("/v1/messages"))
        .bearer_auth(CLIENT_KEY)
        .send()
        .await
        .unwrap();
    assert_eq!(wrong_method.status(), 405);
    let body: Value = wrong_method.json().await.unwrap();
    assert_eq!(body["type"], "error");
    assert_eq!(body["error"]["type"], "invalid_request_error");
    let no_key = client()
        .post(gw.url("/v1/messages"))
        .json(&json!({"model": "claude", "max_tokens": 5, "messages": []}))
        .send()
        .await
        .unwrap();
    assert_eq!(no_key.status(), 401);
    let body: Value = no_key.json().await.unwrap();
    assert_eq!(body["error"]["type"], "authentication_error");
    // An Anthropic client's beta header reaches an Anthropic provider, nothing else does.
    let response = client()
        .post(gw.url("/v1/messages"))
        .header("x-api-key", CLIENT_KEY)
        .header("anthropic-beta", "one-2025")
        .header("anthropic-beta", "two-2025")
        .header("x-custom", "private")
        .json(&json!({"model": "claude", "max_tokens": 5, "messages": [{"role": "user", "content": "hi"}]}))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    let seen = received(&mock).await;
    let headers = seen.last().unwrap()["headers"].as_object().unwrap();
    assert_eq!(headers["anthropic-beta"], "one-2025, two-2025");
    assert!(!headers.contains_key("x-custom"));
    assert!(!headers.contains_key("x-api-key") || headers["x-api-key"] == UPSTREAM_KEY);
}
