//! One end of request: every request leaves exactly one record (its access
//! line), whichever way it ends; an error after a stream began is one event
//! in the client's dialect.

use std::time::Duration;

use serde_json::{Value, json};

use crate::harness::*;

/// A gateway with a fast model (`fast`), one whose streams are cut half-way
/// (`cut`, OpenAI-compatible; `claude-cut`, Anthropic), and a slow one
/// (`slow`, five tokens a second).
fn world() -> (Process, [Process; 3]) {
    let fast = mock(&[]);
    let cut = mock(&["--stream-cut-rate", "1"]);
    let slow = mock(&["--tokens-per-second", "5", "--completion-tokens", "50"]);
    let yaml = format!(
        r#"
server:
  listen: 127.0.0.1:0
auth:
  mode: keys
keys:
  - name: tests
    key: {CLIENT_KEY}
retries: {{ attempts: 1 }}
providers:
  fast: {{ kind: openai, base_url: "{fast}", api_key: {UPSTREAM_KEY} }}
  cut: {{ kind: openai, base_url: "{cut}", api_key: {UPSTREAM_KEY} }}
  claude: {{ kind: anthropic, base_url: "{cut_root}", api_key: {UPSTREAM_KEY} }}
  slow: {{ kind: openai, base_url: "{slow}", api_key: {UPSTREAM_KEY} }}
models:
  fast: {{ deployments: [{{ provider: fast, model: mock-1 }}] }}
  cut: {{ deployments: [{{ provider: cut, model: mock-1 }}] }}
  claude-cut: {{ deployments: [{{ provider: claude, model: claude-mock }}] }}
  slow: {{ deployments: [{{ provider: slow, model: mock-1 }}] }}
"#,
        fast = fast.url("/v1"),
        cut = cut.url("/v1"),
        cut_root = cut.url(""),
        slow = slow.url("/v1"),
    );
    (gateway(&yaml), [fast, cut, slow])
}

/// Sends `body` to `path` with request id `id` (and the client key unless `keyless`).
async fn send(
    gw: &Process,
    id: &str,
    path: &str,
    body: &Value,
    keyless: bool,
) -> reqwest::Response {
    let mut request = client()
        .post(gw.url(path))
        .header("x-request-id", id)
        .json(body);
    if !keyless {
        request = request.bearer_auth(CLIENT_KEY);
    }
    request.send().await.unwrap()
}

fn chat_of(model: &str, stream: bool) -> Value {
    json!({"model": model, "stream": stream, "messages": [{"role": "user", "content": "hello there"}]})
}

fn messages_of(model: &str) -> Value {
    json!({"model": model, "max_tokens": 100, "stream": true, "messages": [{"role": "user", "content": "hello there"}]})
}

/// The access lines of request `id`, once its first one is there and a
/// moment has passed for any second one.
fn lines_of(gw: &Process, id: &str) -> Vec<String> {
    let needle = format!("request_id={id} ");
    gw.wait_for_log(&[&needle]);
    std::thread::sleep(Duration::from_millis(300));
    gw.logs()
        .lines()
        .filter(|line| line.contains(&needle))
        .map(str::to_owned)
        .collect()
}

#[tokio::test]
async fn every_request_ends_in_exactly_one_record() {
    let (gw, _mocks) = world();

    let json = send(
        &gw,
        "rec-json",
        "/v1/chat/completions",
        &chat_of("fast", false),
        false,
    )
    .await;
    assert_eq!(json.status(), 200);
    json.bytes().await.unwrap();

    let stream = send(
        &gw,
        "rec-stream",
        "/v1/chat/completions",
        &chat_of("fast", true),
        false,
    )
    .await;
    assert!(stream.text().await.unwrap().ends_with("data: [DONE]\n\n"));

    // A stream that breaks off after it began: one error event ends it.
    let cut = send(
        &gw,
        "rec-cut",
        "/v1/chat/completions",
        &chat_of("cut", true),
        false,
    )
    .await;
    assert_eq!(cut.status(), 200);
    let events = sse_data(&cut.text().await.unwrap());
    let last: Value = serde_json::from_str(events.last().unwrap()).unwrap();
    assert_eq!(last["error"]["type"], "server_error", "{events:?}");
    assert_eq!(events.iter().filter(|e| e.contains("\"error\"")).count(), 1);

    // The client hangs up mid-stream.
    let mut gone = send(
        &gw,
        "rec-gone",
        "/v1/chat/completions",
        &chat_of("slow", true),
        false,
    )
    .await;
    assert_eq!(gone.status(), 200);
    assert!(gone.chunk().await.unwrap().is_some());
    drop(gone);

    // Refused before any upstream call.
    let keyless = send(
        &gw,
        "rec-401",
        "/v1/chat/completions",
        &chat_of("fast", false),
        true,
    )
    .await;
    assert_eq!(keyless.status(), 401);
    let unknown = send(
        &gw,
        "rec-404",
        "/v1/chat/completions",
        &chat_of("nope", false),
        false,
    )
    .await;
    assert_eq!(unknown.status(), 404);
    let invalid = send(
        &gw,
        "rec-400",
        "/v1/chat/completions",
        &json!({"model": "fast"}),
        false,
    )
    .await;
    assert_eq!(invalid.status(), 400);

    let expected = [
        ("rec-json", "status=200 outcome=\"ok\""),
        ("rec-stream", "status=200 outcome=\"ok\""),
        ("rec-cut", "status=200 outcome=\"upstream_protocol\""),
        ("rec-gone", "status=200 outcome=\"client_disconnected\""),
        ("rec-401", "status=401 outcome=\"unauthenticated\""),
        ("rec-404", "status=404 outcome=\"model_not_found\""),
        ("rec-400", "status=400 outcome=\"invalid_request\""),
    ];
    for (id, says) in expected {
        let lines = lines_of(&gw, id);
        assert_eq!(lines.len(), 1, "{id}: {lines:#?}");
        assert!(lines[0].contains(says), "{id}: {}", lines[0]);
    }
}

#[tokio::test]
async fn a_stream_failing_mid_way_ends_with_one_anthropic_error_event() {
    let (gw, _mocks) = world();
    // Anthropic to Anthropic (passed through), and Anthropic to an
    // OpenAI-compatible provider (translated).
    for (id, model) in [
        ("rec-msg-pass", "claude-cut"),
        ("rec-msg-translated", "cut"),
    ] {
        let response = send(&gw, id, "/v1/messages", &messages_of(model), false).await;
        assert_eq!(response.status(), 200, "{model}");
        let text = response.text().await.unwrap();
        assert!(
            text.contains("event: content_block_delta"),
            "{model}: {text}"
        );
        let (_, tail) = text.rsplit_once("event: ").unwrap();
        let (name, data) = tail.split_once('\n').unwrap();
        assert_eq!(name, "error", "{model}: {text}");
        let error: Value = serde_json::from_str(data.trim().trim_start_matches("data: ")).unwrap();
        assert_eq!(error["type"], "error", "{model}: {data}");
        assert!(error["error"]["type"].is_string(), "{model}: {data}");
        assert_eq!(text.matches("event: error").count(), 1, "{model}: {text}");
        let lines = lines_of(&gw, id);
        assert_eq!(lines.len(), 1, "{id}: {lines:#?}");
    }
}

#[tokio::test]
async fn a_client_hanging_up_while_the_provider_is_silent_is_noticed_within_a_second() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    // First content at once, then a token every five seconds.
    let mock = mock(&["--tokens-per-second", "0.2", "--completion-tokens", "20"]);
    let gw = gateway_for(&mock);
    let body = serde_json::to_string(&chat("hello", json!({"stream": true}))).unwrap();
    let request = format!(
        "POST /v1/chat/completions HTTP/1.1\r\nhost: gw\r\nauthorization: Bearer {CLIENT_KEY}\r\n\
         x-request-id: rec-hangup\r\ncontent-type: application/json\r\ncontent-length: {}\r\n\r\n{body}",
        body.len()
    );
    let mut tcp = tokio::net::TcpStream::connect(gw.addr).await.unwrap();
    tcp.write_all(request.as_bytes()).await.unwrap();
    let mut seen = Vec::new();
    let mut buf = [0u8; 4096];
    while !String::from_utf8_lossy(&seen).contains("echo:") {
        let n = tcp.read(&mut buf).await.unwrap();
        assert!(n > 0, "closed early: {}", String::from_utf8_lossy(&seen));
        seen.extend_from_slice(&buf[..n]);
    }
    // The client hangs up; the provider has nothing to send for seconds.
    drop(tcp);
    let hung_up = std::time::Instant::now();
    let lines = lines_of(&gw, "rec-hangup");
    assert!(
        hung_up.elapsed() < Duration::from_millis(1800),
        "noticed after {:?}",
        hung_up.elapsed()
    );
    assert_eq!(lines.len(), 1, "{lines:#?}");
    assert!(
        lines[0].contains("outcome=\"client_disconnected\""),
        "{}",
        lines[0]
    );
}
