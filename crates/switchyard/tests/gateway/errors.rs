//! Every client mistake and upstream failure: status, OpenAI error body, headers.

use serde_json::{Value, json};

use crate::harness::*;

async fn error_of(response: reqwest::Response) -> (u16, Value) {
    let status = response.status().as_u16();
    assert!(response.headers().contains_key("x-request-id"));
    let body: Value = response.json().await.unwrap();
    assert!(body["error"]["message"].is_string(), "{body}");
    assert!(body["error"]["type"].is_string(), "{body}");
    (status, body)
}

#[tokio::test]
async fn client_mistakes_are_4xx_in_openai_shape() {
    let mock = mock(&[]);
    let gw = gateway(&config(
        &mock.url("/v1"),
        "connect: 1s",
        "  max_body_bytes: 4KiB",
    ));
    let raw = |body: &'static str| {
        client()
            .post(gw.url("/v1/chat/completions"))
            .bearer_auth(CLIENT_KEY)
            .header("content-type", "application/json")
            .body(body)
    };
    let (status, body) = error_of(raw("{not json").send().await.unwrap()).await;
    assert_eq!(
        (status, body["error"]["type"].as_str()),
        (400, Some("invalid_request_error"))
    );
    let (status, body) = error_of(raw(r#"{"model":"gpt-4.1"}"#).send().await.unwrap()).await;
    assert_eq!(
        (status, body["error"]["param"].as_str()),
        (400, Some("messages"))
    );
    let (status, body) = error_of(
        raw(r#"{"model":"gpt-4.1","messages":[{"role":"user","content":"x"}],"stream":"yes"}"#)
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert_eq!(
        (status, body["error"]["param"].as_str()),
        (400, Some("stream"))
    );
    let (status, body) = error_of(
        post(
            &gw,
            "/v1/chat/completions",
            &json!({"model": "gpt-5-nope", "messages": [{"role": "user", "content": "x"}]}),
        )
        .await,
    )
    .await;
    assert_eq!(
        (status, body["error"]["code"].as_str()),
        (404, Some("model_not_found"))
    );
    let big = "word ".repeat(2000);
    let (status, body) =
        error_of(post(&gw, "/v1/chat/completions", &chat(&big, json!({}))).await).await;
    assert_eq!(
        (status, body["error"]["code"].as_str()),
        (413, Some("request_too_large"))
    );
    let (status, _) = error_of(
        client()
            .get(gw.url("/v1/nothing-here"))
            .bearer_auth(CLIENT_KEY)
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert_eq!(status, 404);
    let wrong_method = client()
        .get(gw.url("/v1/chat/completions"))
        .bearer_auth(CLIENT_KEY)
        .send()
        .await
        .unwrap();
    let (status, body) = error_of(wrong_method).await;
    assert_eq!(
        (status, body["error"]["code"].as_str()),
        (405, Some("method_not_allowed"))
    );
    // None of these reached the provider.
    assert!(received(&mock).await.is_empty());
}

#[tokio::test]
async fn a_missing_or_wrong_key_is_401() {
    let mock = mock(&[]);
    let gw = gateway_for(&mock);
    let body = chat("x", json!({}));
    let none = client()
        .post(gw.url("/v1/chat/completions"))
        .json(&body)
        .send()
        .await
        .unwrap();
    let (status, error) = error_of(none).await;
    assert_eq!(
        (status, error["error"]["code"].as_str()),
        (401, Some("invalid_api_key"))
    );
    let wrong = client()
        .post(gw.url("/v1/chat/completions"))
        .bearer_auth("sk-wrong")
        .json(&body)
        .send()
        .await
        .unwrap();
    assert_eq!(error_of(wrong).await.0, 401);
    let models = client().get(gw.url("/v1/models")).send().await.unwrap();
    assert_eq!(error_of(models).await.0, 401);
    gw.wait_for_log(&[
        "endpoint=\"chat_completions\"",
        "status=401",
        "outcome=\"unauthenticated\"",
    ]);
    gw.wait_for_log(&["endpoint=\"models\"", "status=401"]);
    assert!(received(&mock).await.is_empty());
}

#[tokio::test]
async fn an_unreachable_provider_is_502() {
    let port = closed_port();
    let gw = gateway(&config(
        &format!("http://127.0.0.1:{port}/v1"),
        "connect: 1s",
        "",
    ));
    let response = post(&gw, "/v1/chat/completions", &chat("x", json!({}))).await;
    assert_eq!(response.headers()["x-switchyard-provider"], "up");
    let (status, body) = error_of(response).await;
    assert_eq!(
        (status, body["error"]["code"].as_str()),
        (502, Some("upstream_error"))
    );
    // The cause stays in the log.
    gw.wait_for_log(&[
        "outcome=\"upstream_connect\"",
        "error=",
        "Connection refused",
    ]);
    assert!(!body.to_string().contains(UPSTREAM_KEY));
}

#[tokio::test]
async fn a_provider_slower_than_the_first_byte_timeout_is_504() {
    let mock = mock(&["--latency", "3s"]);
    let gw = gateway(&config(&mock.url("/v1"), "first_byte: 300ms", ""));
    let started = std::time::Instant::now();
    let (status, body) =
        error_of(post(&gw, "/v1/chat/completions", &chat("x", json!({}))).await).await;
    assert!(started.elapsed() < std::time::Duration::from_secs(2));
    assert_eq!(
        (status, body["error"]["code"].as_str()),
        (504, Some("upstream_timeout"))
    );
    // Streams fail the same way before their first byte.
    let (status, _) = error_of(
        post(
            &gw,
            "/v1/chat/completions",
            &chat("x", json!({"stream": true})),
        )
        .await,
    )
    .await;
    assert_eq!(status, 504);
}

#[tokio::test]
async fn the_total_timeout_bounds_the_whole_exchange() {
    let mock = mock(&["--latency", "3s"]);
    let gw = gateway(&config(
        &mock.url("/v1"),
        "first_byte: 10s, total: 400ms",
        "",
    ));
    let (status, body) =
        error_of(post(&gw, "/v1/chat/completions", &chat("x", json!({}))).await).await;
    assert_eq!(status, 504);
    assert!(
        body["error"]["message"].as_str().unwrap().contains("total"),
        "{body}"
    );
}

#[tokio::test]
async fn upstream_rate_limits_pass_on_with_retry_after() {
    let mock = mock(&[
        "--error-rate",
        "1",
        "--error-status",
        "429",
        "--retry-after",
        "7",
    ]);
    let gw = gateway_for(&mock);
    let response = post(&gw, "/v1/chat/completions", &chat("x", json!({}))).await;
    assert_eq!(response.headers()["retry-after"], "7");
    let (status, body) = error_of(response).await;
    assert_eq!(
        (status, body["error"]["type"].as_str()),
        (429, Some("rate_limit_error"))
    );
}

#[tokio::test]
async fn upstream_failures_are_502_and_never_leak_the_provider_key() {
    let mock = mock(&["--error-rate", "1", "--error-status", "500"]);
    let gw = gateway_for(&mock);
    let (status, body) =
        error_of(post(&gw, "/v1/chat/completions", &chat("x", json!({}))).await).await;
    assert_eq!(
        (status, body["error"]["type"].as_str()),
        (502, Some("server_error"))
    );
    let mock401 = crate::harness::mock(&["--error-rate", "1", "--error-status", "401"]);
    let gw401 = gateway_for(&mock401);
    let (status, body) =
        error_of(post(&gw401, "/v1/chat/completions", &chat("x", json!({}))).await).await;
    assert_eq!(
        (status, body["error"]["code"].as_str()),
        (502, Some("upstream_auth_failed"))
    );
    assert!(!body.to_string().contains(UPSTREAM_KEY));
}

#[tokio::test]
async fn a_client_too_slow_to_send_its_body_gets_408() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mock = mock(&[]);
    let gw = gateway(&config(
        &mock.url("/v1"),
        "connect: 1s",
        "  body_timeout: 300ms",
    ));
    let mut socket = tokio::net::TcpStream::connect(gw.addr).await.unwrap();
    let head = format!(
        "POST /v1/chat/completions HTTP/1.1\r\nhost: x\r\nauthorization: Bearer {CLIENT_KEY}\r\ncontent-type: application/json\r\ncontent-length: 100\r\n\r\n{{\"model\":"
    );
    socket.write_all(head.as_bytes()).await.unwrap();
    let mut answer = Vec::new();
    let read = tokio::time::timeout(
        std::time::Duration::from_secs(3),
        socket.read_to_end(&mut answer),
    )
    .await;
    let answer = String::from_utf8_lossy(&answer);
    assert!(read.is_ok(), "no answer within 3 s");
    assert!(answer.starts_with("HTTP/1.1 408"), "{answer}");
    assert!(answer.contains("\"code\":\"request_timeout\""), "{answer}");
}
