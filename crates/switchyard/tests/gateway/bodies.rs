//! `telemetry.log_bodies`: one bodies line per proxied request, with the
//! prompt and the answer, keys redacted; none when it is off.

use serde_json::{Value, json};

use crate::harness::*;

/// A key-like string the prompt carries (and the mock echoes back).
const PROMPT_KEY: &str = "sk-proj-Zx81qLmN0pQrStUvWxYz12345abcdEFGH";

/// The gateway in front of `mock`, JSON logs, with `telemetry` as given.
fn logged_gateway(mock: &Process, telemetry: &str) -> Process {
    let yaml = format!("{}{telemetry}", config(&mock.url("/v1"), "connect: 1s", ""));
    gateway_with(&yaml, &["--log-format", "json"])
}

/// Sends a chat with request id `id`, streamed or not, and reads its answer whole.
async fn chat_with_id(gw: &Process, id: &str, stream: bool) -> String {
    let body = chat(
        &format!("remember {PROMPT_KEY} please"),
        json!({"stream": stream, "max_tokens": 64}),
    );
    let response = client()
        .post(gw.url("/v1/chat/completions"))
        .bearer_auth(CLIENT_KEY)
        .header("x-request-id", id)
        .json(&body)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    response.text().await.unwrap()
}

/// The bodies line of request `id`, parsed.
fn bodies_line(gw: &Process, id: &str) -> Value {
    let needle = format!("\"request_id\":\"{id}\"");
    let line = gw.wait_for_log(&["\"message\":\"bodies\"", &needle]);
    serde_json::from_str(&line).unwrap_or_else(|e| panic!("not JSON ({e}): {line}"))
}

#[tokio::test]
async fn each_request_logs_its_prompt_and_answer_with_keys_redacted() {
    let mock = mock(&[]);
    let gw = logged_gateway(&mock, "telemetry:\n  log_bodies: true\n");

    let answer = chat_with_id(&gw, "bodies-json", false).await;
    assert!(
        answer.contains(PROMPT_KEY),
        "the client's answer is untouched"
    );
    let line = bodies_line(&gw, "bodies-json");
    assert_eq!(line["endpoint"], "chat_completions");
    let route = line["route"].as_str().unwrap();
    assert!(
        route.starts_with("up/mock-1") && route.ends_with("=ok"),
        "{route}"
    );
    assert!(line.get("error_type").is_none());
    let request = line["request"].as_str().unwrap();
    let sent: Value = serde_json::from_str(request).unwrap();
    assert_eq!(sent["messages"][1]["content"], "remember [REDACTED] please");
    assert_eq!(sent["max_tokens"], 64, "a token count is no secret");
    let response = line["response"].as_str().unwrap();
    let got: Value = serde_json::from_str(response).unwrap();
    let text = got["choices"][0]["message"]["content"].as_str().unwrap();
    assert!(
        text.starts_with("echo: remember [REDACTED] please"),
        "{text}"
    );

    let streamed = chat_with_id(&gw, "bodies-stream", true).await;
    assert!(streamed.ends_with("data: [DONE]\n\n"));
    let line = bodies_line(&gw, "bodies-stream");
    assert!(
        line["request"]
            .as_str()
            .unwrap()
            .contains("\"stream\":true")
    );
    // A stream is logged as the events the client got.
    let events = sse_data(line["response"].as_str().unwrap());
    assert_eq!(events.last().map(String::as_str), Some("[DONE]"));
    assert!(stream_text(&events).starts_with("echo: remember [REDACTED] please"));

    let logs = gw.logs();
    assert_eq!(logs.matches("\"message\":\"bodies\"").count(), 2);
    assert!(!logs.contains(PROMPT_KEY));
    assert!(!logs.contains(CLIENT_KEY) && !logs.contains(UPSTREAM_KEY));
}

#[tokio::test]
async fn with_log_bodies_off_no_bodies_line_is_written() {
    let mock = mock(&[]);
    let gw = logged_gateway(&mock, "");
    chat_with_id(&gw, "plain-json", false).await;
    chat_with_id(&gw, "plain-stream", true).await;
    chat_with_id(&gw, "plain-last", false).await;
    // Lines leave in order, each request's before the next one's: a bodies
    // line of the first two would be out before the third's access line.
    gw.wait_for_log(&["\"message\":\"request\"", "\"request_id\":\"plain-last\""]);
    let logs = gw.logs();
    assert!(!logs.contains("\"message\":\"bodies\""), "{logs}");
    assert!(!logs.contains(PROMPT_KEY));
}
