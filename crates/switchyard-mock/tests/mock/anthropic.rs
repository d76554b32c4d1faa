//! `POST /v1/messages`: the Anthropic dialect.

use serde_json::{Value, json};
use switchyard_mock::MockOptions;

use crate::common::{Mock, failing, read_events, start};

const PATH: &str = "/v1/messages";

/// A Messages request with one user message.
fn message(text: &str) -> Value {
    json!({
        "model": "claude-test",
        "max_tokens": 1024,
        "messages": [{"role": "user", "content": text}],
    })
}

fn tools() -> Value {
    json!([
        {"name": "get_weather", "description": "Weather", "input_schema": {"type": "object"}},
        {"name": "other", "input_schema": {"type": "object"}},
    ])
}

fn usage(input: u64, cached: u64, output: u64) -> Value {
    json!({
        "input_tokens": input,
        "cache_creation_input_tokens": 0,
        "cache_read_input_tokens": cached,
        "output_tokens": output,
    })
}

/// POSTs `body` with the `anthropic-version` header.
async fn send(mock: &Mock, body: &Value) -> reqwest::Response {
    mock.client
        .post(mock.url(PATH))
        .header("x-api-key", "sk-ant-test")
        .header("anthropic-version", "2023-06-01")
        .json(body)
        .send()
        .await
        .unwrap()
}

async fn send_json(mock: &Mock, body: &Value) -> (u16, Value) {
    let response = send(mock, body).await;
    let status = response.status().as_u16();
    (status, response.json().await.unwrap())
}

/// A stream's events as (name, data), and the error that ended it early, if any.
async fn send_stream(mock: &Mock, body: &Value) -> (Vec<(String, Value)>, Option<String>) {
    let mut body = body.clone();
    body["stream"] = json!(true);
    let (events, error) = read_events(send(mock, &body).await, "\n\n").await;
    let events = events
        .iter()
        .map(|event| {
            let (name, data) = event
                .strip_prefix("event: ")
                .and_then(|e| e.split_once("\ndata: "))
                .unwrap_or_else(|| panic!("not a named event: {event:?}"));
            let data: Value = serde_json::from_str(data).unwrap();
            if name != "error" {
                assert_eq!(data["type"], name, "the event name is the type");
            }
            (name.to_owned(), data)
        })
        .collect();
    (events, error)
}

/// Starts a mock with `options` and streams a reply to `text`.
async fn stream_with(options: MockOptions, text: &str) -> (Vec<(String, Value)>, Option<String>) {
    send_stream(&start(options).await, &message(text)).await
}

fn names(events: &[(String, Value)]) -> Vec<&str> {
    events.iter().map(|(name, _)| name.as_str()).collect()
}

/// The text or partial JSON of the content block deltas, concatenated.
fn streamed(events: &[(String, Value)], field: &str) -> String {
    events
        .iter()
        .filter(|(name, _)| name == "content_block_delta")
        .map(|(_, data)| data["delta"][field].as_str().unwrap())
        .collect()
}

#[tokio::test]
async fn json_reply_echoes_and_counts_exactly() {
    let mock = start(MockOptions::default()).await;
    let response = send(
        &mock,
        &json!({
            "model": "claude-test",
            "max_tokens": 1024,
            "system": "You are   terse.",
            "messages": [{"role": "user", "content": [{"type": "text", "text": "hello\nworld"}]}],
            "temperature": 0.5, "top_p": 0.9, "top_k": 5, "metadata": {"user_id": "u1"},
        }),
    )
    .await;
    assert_eq!(response.status(), 200);
    assert_eq!(response.headers()["content-type"], "application/json");
    let mut body: Value = response.json().await.unwrap();
    let id = body["id"].as_str().unwrap().to_owned();
    assert!(id.starts_with("msg_"), "{id}");
    body.as_object_mut().unwrap().remove("id");
    assert_eq!(
        body,
        json!({
            "type": "message",
            "role": "assistant",
            "model": "claude-test",
            "content": [{"type": "text", "text": "echo: hello world lorem ipsum dolor sit amet consectetur adipiscing elit sed do eiusmod tempor incididunt"}],
            "stop_reason": "end_turn",
            "stop_sequence": null,
            "usage": usage(5, 0, 16),
        })
    );
    let stats = mock.get_json("/mock/stats").await;
    assert_eq!(stats["by_path"], json!({PATH: 1}));
}

#[tokio::test]
async fn missing_version_or_max_tokens_is_a_400() {
    let mock = start(MockOptions::default()).await;
    let response = mock.post(PATH, &message("x")).await;
    assert_eq!(response.status(), 400);
    let body: Value = response.json().await.unwrap();
    assert_eq!(
        body,
        json!({"type": "error", "error": {"type": "invalid_request_error",
                                          "message": "anthropic-version: header is required"}})
    );

    let mut request = message("x");
    request.as_object_mut().unwrap().remove("max_tokens");
    let (status, body) = send_json(&mock, &request).await;
    assert_eq!(status, 400);
    assert_eq!(
        body,
        json!({"type": "error", "error": {"type": "invalid_request_error",
                                          "message": "max_tokens: Field required"}})
    );

    for request in [
        json!({"max_tokens": 5, "messages": [{"role": "user", "content": "x"}]}),
        json!({"model": "m", "max_tokens": 5, "messages": []}),
        json!({"model": "m", "max_tokens": 5, "messages": [{"role": "user", "content": [{"type": "image", "source": {"type": "nope"}}]}]}),
    ] {
        let (status, body) = send_json(&mock, &request).await;
        assert_eq!(status, 400, "{request}");
        assert_eq!(body["type"], "error");
        assert_eq!(body["error"]["type"], "invalid_request_error");
    }
}

#[tokio::test]
async fn every_stop_reason_json_and_streamed() {
    let mock = start(MockOptions::default()).await;
    let mut tool = message("weather in Paris");
    tool["tools"] = tools();
    let mut capped = message("hello world again");
    capped["max_tokens"] = json!(3);
    let mut stopped = message("hello world again");
    stopped["stop_sequences"] = json!(["never", "world"]);
    let cases = [
        (message("hi"), "end_turn", Value::Null, 16),
        (capped, "max_tokens", Value::Null, 3),
        (stopped, "stop_sequence", json!("world"), 2),
        (tool, "tool_use", Value::Null, 3),
    ];
    for (request, reason, sequence, output) in cases {
        let (status, body) = send_json(&mock, &request).await;
        assert_eq!(status, 200);
        assert_eq!(body["stop_reason"], reason);
        assert_eq!(body["stop_sequence"], sequence);
        assert_eq!(body["usage"]["output_tokens"], output, "{reason}");
        let (events, error) = send_stream(&mock, &request).await;
        assert_eq!(error, None);
        let delta = &events[events.len() - 2].1;
        assert_eq!(
            delta,
            &json!({"type": "message_delta",
                    "delta": {"stop_reason": reason, "stop_sequence": sequence},
                    "usage": {"output_tokens": output}})
        );
        match &body["content"][0] {
            block if block["type"] == "text" => {
                assert_eq!(streamed(&events, "text"), block["text"].as_str().unwrap());
            }
            block => {
                let input: Value =
                    serde_json::from_str(&streamed(&events, "partial_json")).unwrap();
                assert_eq!(input, block["input"]);
            }
        }
    }
    let (_, body) = send_json(&mock, &{
        let mut r = message("hello world again");
        r["stop_sequences"] = json!(["world"]);
        r
    })
    .await;
    assert_eq!(body["content"][0]["text"], "echo: hello ");
    let (_, body) = send_json(&mock, &{
        let mut r = message("hello world again");
        r["max_tokens"] = json!(3);
        r
    })
    .await;
    assert_eq!(body["content"][0]["text"], "echo: hello world");
}

#[tokio::test]
async fn text_stream_events_in_the_real_order() {
    let options = MockOptions {
        completion_tokens: 4,
        ..MockOptions::default()
    };
    let (events, error) = stream_with(options, "stream me").await;
    assert_eq!(error, None);
    assert_eq!(
        names(&events),
        [
            "message_start",
            "content_block_start",
            "ping",
            "content_block_delta",
            "content_block_delta",
            "content_block_delta",
            "content_block_delta",
            "content_block_stop",
            "message_delta",
            "message_stop",
        ]
    );
    let start = &events[0].1["message"];
    assert!(start["id"].as_str().unwrap().starts_with("msg_"));
    let mut start = start.clone();
    start.as_object_mut().unwrap().remove("id");
    assert_eq!(
        start,
        json!({"type": "message", "role": "assistant", "model": "claude-test", "content": [],
               "stop_reason": null, "stop_sequence": null, "usage": usage(2, 0, 1)})
    );
    assert_eq!(
        events[1].1,
        json!({"type": "content_block_start", "index": 0, "content_block": {"type": "text", "text": ""}})
    );
    assert_eq!(events[2].1, json!({"type": "ping"}));
    let deltas: Vec<&Value> = events[3..7].iter().map(|(_, d)| d).collect();
    assert_eq!(
        deltas[1],
        &json!({"type": "content_block_delta", "index": 0, "delta": {"type": "text_delta", "text": " stream"}})
    );
    assert_eq!(streamed(&events, "text"), "echo: stream me lorem");
    assert_eq!(
        events[7].1,
        json!({"type": "content_block_stop", "index": 0})
    );
    assert_eq!(events[9].1, json!({"type": "message_stop"}));
}

#[tokio::test]
async fn tool_use_and_the_tool_result_follow_up() {
    let mock = start(MockOptions {
        completion_tokens: 6,
        ..MockOptions::default()
    })
    .await;
    let mut request = message("weather in \"Paris\"");
    request["tools"] = tools();
    let (status, body) = send_json(&mock, &request).await;
    assert_eq!(status, 200);
    let block = &body["content"][0];
    assert_eq!(body["content"].as_array().unwrap().len(), 1);
    let id = block["id"].as_str().unwrap();
    assert!(
        id.len() == 14
            && id.starts_with("toolu_")
            && id[6..].chars().all(|c| c.is_ascii_hexdigit()),
        "{id}"
    );
    assert_eq!(
        block,
        &json!({"type": "tool_use", "id": id, "name": "get_weather",
                "input": {"echo": "weather in \"Paris\""}})
    );
    assert_eq!(body["stop_reason"], "tool_use");

    // Streamed: the block starts with the id, name and empty input, then the input JSON
    // comes in pieces.
    let (events, _) = send_stream(&mock, &request).await;
    assert_eq!(
        events[1].1["content_block"],
        json!({"type": "tool_use", "id": id, "name": "get_weather", "input": {}})
    );
    let pieces: Vec<&Value> = events
        .iter()
        .filter(|(name, _)| name == "content_block_delta")
        .map(|(_, data)| &data["delta"])
        .collect();
    assert!(pieces.len() >= 2, "{pieces:?}");
    assert!(pieces.iter().all(|p| p["type"] == "input_json_delta"));

    // The same with one word: still two pieces.
    let mut one = message("paris");
    one["tools"] = tools();
    let (events, _) = send_stream(&mock, &one).await;
    assert_eq!(streamed(&events, "partial_json"), r#"{"echo":"paris"}"#);
    assert_eq!(
        names(&events)
            .iter()
            .filter(|n| **n == "content_block_delta")
            .count(),
        2
    );

    let (status, body) = send_json(
        &mock,
        &json!({
            "model": "claude-test",
            "max_tokens": 100,
            "tools": tools(),
            "messages": [
                {"role": "user", "content": "weather in Paris"},
                {"role": "assistant", "content": [
                    {"type": "text", "text": "Let me look."},
                    {"type": "tool_use", "id": id, "name": "get_weather", "input": {"echo": "weather in Paris"}},
                ]},
                {"role": "user", "content": [
                    {"type": "tool_result", "tool_use_id": id, "content": [{"type": "text", "text": "sunny, 21 C"}]},
                ]},
            ],
        }),
    )
    .await;
    assert_eq!(status, 200);
    assert_eq!(
        body["content"],
        json!([{"type": "text", "text": "echo: sunny, 21 C lorem ipsum"}])
    );
    assert_eq!(body["stop_reason"], "end_turn");
    // 3 + 3 + 3 words of text; tool_use input is not counted.
    assert_eq!(body["usage"], usage(9, 0, 6));
}

#[tokio::test]
async fn cache_control_blocks_are_cache_reads() {
    let mock = start(MockOptions::default()).await;
    let request = json!({
        "model": "claude-test",
        "max_tokens": 100,
        "system": [
            {"type": "text", "text": "a long cached system prompt", "cache_control": {"type": "ephemeral"}},
            {"type": "text", "text": "not cached"},
        ],
        "messages": [
            {"role": "user", "content": [
                {"type": "text", "text": "cached question", "cache_control": {"type": "ephemeral", "ttl": "1h"}},
                {"type": "text", "text": "fresh words here"},
            ]},
        ],
    });
    let (_, body) = send_json(&mock, &request).await;
    assert_eq!(body["usage"], usage(5, 7, 16));
    let (events, _) = send_stream(&mock, &request).await;
    assert_eq!(events[0].1["message"]["usage"], usage(5, 7, 1));
}

#[tokio::test]
async fn injected_errors_have_anthropics_shape() {
    for (code, kind) in [
        (529, "overloaded_error"),
        (500, "api_error"),
        (503, "api_error"),
    ] {
        let mock = failing(code, None).await;
        let (status, body) = send_json(&mock, &message("x")).await;
        assert_eq!(status, code);
        assert_eq!(
            body,
            json!({"type": "error", "error": {"type": kind, "message": format!("mock injected failure ({code})")}})
        );
    }
    let mock = failing(429, Some(7)).await;
    let response = send(&mock, &message("x")).await;
    assert_eq!(response.status(), 429);
    assert_eq!(response.headers()["retry-after"], "7");
    let body: Value = response.json().await.unwrap();
    assert_eq!(body["error"]["type"], "rate_limit_error");
    let stats = mock.get_json("/mock/stats").await;
    assert_eq!(stats["by_status"], json!({"429": 1}));
}

#[tokio::test]
async fn stream_faults() {
    let options = MockOptions {
        stream_error_rate: 1.0,
        ..MockOptions::default()
    };
    let (events, error) = stream_with(options, "fail me").await;
    assert_eq!(error, None, "an in-band error is a clean end");
    assert_eq!(
        names(&events),
        [
            "message_start",
            "content_block_start",
            "ping",
            "content_block_delta",
            "error"
        ]
    );
    assert_eq!(
        events[4].1,
        json!({"type": "error", "error": {"type": "overloaded_error", "message": "Overloaded"}})
    );

    let options = MockOptions {
        stream_cut_rate: 1.0,
        ..MockOptions::default()
    };
    let (events, error) = stream_with(options, "cut me").await;
    assert!(error.is_some(), "the body ended cleanly: {events:?}");
    // Start, block start, ping and half of the 16 words.
    assert_eq!(events.len(), 11, "{events:?}");
    assert!(!names(&events).contains(&"message_stop"));
}
