//! `POST /v1/chat/completions`.

use serde_json::{Value, json};
use switchyard_mock::MockOptions;

use crate::common::{chat, start, streaming};

const PATH: &str = "/v1/chat/completions";

fn usage(prompt: u64, completion: u64) -> Value {
    json!({
        "prompt_tokens": prompt,
        "completion_tokens": completion,
        "total_tokens": prompt + completion,
        "prompt_tokens_details": {"cached_tokens": 0, "audio_tokens": 0},
        "completion_tokens_details": {
            "reasoning_tokens": 0,
            "audio_tokens": 0,
            "accepted_prediction_tokens": 0,
            "rejected_prediction_tokens": 0,
        },
    })
}

/// Removes and checks the fields that vary between runs.
fn strip_id_and_created(body: &mut Value, prefix: &str) {
    let id = body["id"].as_str().unwrap().to_owned();
    assert!(id.starts_with(prefix), "{id}");
    let created = body["created"].as_u64().unwrap();
    assert!(created > 1_700_000_000, "{created}");
    let object = body.as_object_mut().unwrap();
    object.remove("id");
    object.remove("created");
}

fn tools() -> Value {
    json!([
        {"type": "function", "function": {"name": "get_weather", "parameters": {"type": "object"}}},
        {"type": "function", "function": {"name": "other"}},
    ])
}

#[tokio::test]
async fn json_reply_echoes_and_counts_exactly() {
    let mock = start(MockOptions::default()).await;
    let response = mock
        .post(
            PATH,
            &json!({
                "model": "gpt-test",
                "messages": [
                    {"role": "system", "content": "You are   terse."},
                    {"role": "user", "content": "hello\nworld"},
                ],
                "unknown_field": {"kept": true},
            }),
        )
        .await;
    assert_eq!(response.status(), 200);
    assert_eq!(response.headers()["content-type"], "application/json");
    assert!(response.headers().contains_key("x-request-id"));
    let mut body: Value = response.json().await.unwrap();
    strip_id_and_created(&mut body, "chatcmpl-");
    assert_eq!(
        body,
        json!({
            "object": "chat.completion",
            "model": "gpt-test",
            "choices": [{
                "index": 0,
                "message": {
                    "role": "assistant",
                    "content": "echo: hello world lorem ipsum dolor sit amet consectetur adipiscing elit sed do eiusmod tempor incididunt",
                    "refusal": null,
                    "annotations": [],
                },
                "logprobs": null,
                "finish_reason": "stop",
            }],
            "usage": usage(5, 16),
        })
    );
}

#[tokio::test]
async fn completion_tokens_and_content_parts() {
    let mock = start(MockOptions {
        completion_tokens: 4,
        ..MockOptions::default()
    })
    .await;
    let (status, body) = mock
        .post_json(
            PATH,
            &json!({
                "model": "m",
                "messages": [
                    {"role": "user", "content": "an older question"},
                    {"role": "assistant", "content": "an answer"},
                    {"role": "user", "content": [
                        {"type": "text", "text": "look at"},
                        {"type": "image_url", "image_url": {"url": "https://example.com/a.png"}},
                        {"type": "text", "text": "this"},
                    ]},
                ],
            }),
        )
        .await;
    assert_eq!(status, 200);
    assert_eq!(
        body["choices"][0]["message"]["content"],
        "echo: look at this"
    );
    assert_eq!(body["usage"], usage(8, 4));

    // A short echo is padded to the configured length.
    let (_, body) = mock.post_json(PATH, &chat("hi")).await;
    assert_eq!(
        body["choices"][0]["message"]["content"],
        "echo: hi lorem ipsum"
    );
    assert_eq!(body["usage"], usage(1, 4));
}

#[tokio::test]
async fn max_tokens_cuts_with_length() {
    let mock = start(MockOptions::default()).await;
    for (field, cap) in [("max_tokens", 3), ("max_completion_tokens", 2)] {
        let mut request = chat("hello world again");
        request[field] = json!(cap);
        let (status, body) = mock.post_json(PATH, &request).await;
        assert_eq!(status, 200);
        let expected = ["echo: hello world", "echo: hello"][(3 - cap) as usize];
        assert_eq!(body["choices"][0]["message"]["content"], expected);
        assert_eq!(body["choices"][0]["finish_reason"], "length");
        assert_eq!(body["usage"], usage(3, cap));

        let sse = mock.post_sse(PATH, &streaming(request, json!({}))).await;
        let chunks = sse.json();
        let finish = &chunks[chunks.len() - 1]["choices"][0];
        assert_eq!(finish["finish_reason"], "length");
        let content: String = chunks
            .iter()
            .filter_map(|c| c["choices"][0]["delta"]["content"].as_str())
            .collect();
        assert_eq!(content, expected);
    }
}

#[tokio::test]
async fn stream_deltas_concatenate_to_the_json_content() {
    let mock = start(MockOptions::default()).await;
    let request = chat("tell me  something");
    let (_, json_body) = mock.post_json(PATH, &request).await;
    let expected = json_body["choices"][0]["message"]["content"]
        .as_str()
        .unwrap();

    let sse = mock.post_sse(PATH, &streaming(request, json!({}))).await;
    assert_eq!(sse.error, None);
    assert_eq!(sse.data().last(), Some(&"[DONE]"));
    let chunks = sse.json();
    // role chunk, 16 words, finish chunk.
    assert_eq!(chunks.len(), 18, "{chunks:#?}");
    let id = chunks[0]["id"].as_str().unwrap();
    assert!(id.starts_with("chatcmpl-"));
    for chunk in &chunks {
        assert_eq!(chunk["id"], id);
        assert_eq!(chunk["object"], "chat.completion.chunk");
        assert_eq!(chunk["model"], "gpt-test");
        assert_eq!(chunk["created"], chunks[0]["created"]);
        assert!(
            chunk.get("usage").is_none(),
            "usage without include_usage: {chunk}"
        );
        assert_eq!(chunk["choices"].as_array().unwrap().len(), 1);
        assert_eq!(chunk["choices"][0]["index"], 0);
        assert_eq!(chunk["choices"][0]["logprobs"], Value::Null);
    }
    assert_eq!(
        chunks[0]["choices"][0]["delta"],
        json!({"role": "assistant", "content": "", "refusal": null})
    );
    let words: Vec<&str> = chunks[1..17]
        .iter()
        .map(|c| {
            assert_eq!(c["choices"][0]["finish_reason"], Value::Null);
            c["choices"][0]["delta"]["content"].as_str().unwrap()
        })
        .collect();
    assert_eq!(words[..3], ["echo:", " tell", " me"]);
    assert_eq!(words.concat(), expected);
    assert_eq!(
        chunks[17]["choices"][0],
        json!({"index": 0, "delta": {}, "logprobs": null, "finish_reason": "stop"})
    );
}

#[tokio::test]
async fn include_usage_adds_a_last_chunk_and_nulls_before_it() {
    let mock = start(MockOptions::default()).await;
    let sse = mock
        .post_sse(
            PATH,
            &streaming(
                chat("count me"),
                json!({"stream_options": {"include_usage": true}}),
            ),
        )
        .await;
    assert_eq!(sse.data().last(), Some(&"[DONE]"));
    let chunks = sse.json();
    assert_eq!(chunks.len(), 19);
    let (last, earlier) = chunks.split_last().unwrap();
    for chunk in earlier {
        assert_eq!(chunk.get("usage"), Some(&Value::Null), "{chunk}");
    }
    assert_eq!(last["choices"], json!([]));
    assert_eq!(last["usage"], usage(2, 16));
    assert_eq!(last["id"], chunks[0]["id"]);

    // include_usage: false is the same as not asking.
    let sse = mock
        .post_sse(
            PATH,
            &streaming(
                chat("count me"),
                json!({"stream_options": {"include_usage": false}}),
            ),
        )
        .await;
    assert!(sse.json().iter().all(|c| c.get("usage").is_none()));
}

#[tokio::test]
async fn tools_are_called_after_a_user_message() {
    let mock = start(MockOptions::default()).await;
    let mut request = chat("weather in \"Paris\"\ntoday");
    request["tools"] = tools();
    let (status, body) = mock.post_json(PATH, &request).await;
    assert_eq!(status, 200);
    let choice = &body["choices"][0];
    assert_eq!(choice["finish_reason"], "tool_calls");
    assert_eq!(choice["message"]["content"], Value::Null);
    assert_eq!(choice["message"]["refusal"], Value::Null);
    let calls = choice["message"]["tool_calls"].as_array().unwrap();
    assert_eq!(calls.len(), 1);
    let call = &calls[0];
    let id = call["id"].as_str().unwrap();
    assert!(
        id.len() == 13 && id.starts_with("call_") && id[5..].chars().all(|c| c.is_ascii_hexdigit()),
        "{id}"
    );
    assert_eq!(call["type"], "function");
    assert_eq!(call["function"]["name"], "get_weather");
    let arguments = call["function"]["arguments"].as_str().unwrap();
    assert_eq!(
        serde_json::from_str::<Value>(arguments).unwrap(),
        json!({"echo": "weather in \"Paris\"\ntoday"})
    );
    // `{"echo":"weather`, `in`, `\"Paris\"\ntoday"}`
    assert_eq!(body["usage"], usage(4, 3));

    // Streamed: the id, type and name first, then the arguments in pieces.
    let sse = mock.post_sse(PATH, &streaming(request, json!({}))).await;
    assert_eq!(sse.data().last(), Some(&"[DONE]"));
    let chunks = sse.json();
    assert_eq!(
        chunks[0]["choices"][0]["delta"],
        json!({"role": "assistant", "content": null, "refusal": null})
    );
    let deltas: Vec<&Value> = chunks[1..chunks.len() - 1]
        .iter()
        .map(|c| &c["choices"][0]["delta"]["tool_calls"][0])
        .collect();
    assert_eq!(
        deltas[0],
        &json!({"index": 0, "id": id, "type": "function",
                "function": {"name": "get_weather", "arguments": ""}})
    );
    assert!(deltas.len() >= 3, "{deltas:?}");
    let mut streamed = String::new();
    for delta in &deltas[1..] {
        assert_eq!(delta["index"], 0);
        assert!(delta.get("id").is_none() && delta["function"].get("name").is_none());
        streamed.push_str(delta["function"]["arguments"].as_str().unwrap());
    }
    assert_eq!(streamed, arguments);
    assert_eq!(
        chunks.last().unwrap()["choices"][0]["finish_reason"],
        "tool_calls"
    );
}

#[tokio::test]
async fn a_tool_result_is_echoed() {
    let mock = start(MockOptions {
        completion_tokens: 6,
        ..MockOptions::default()
    })
    .await;
    let (status, body) = mock
        .post_json(
            PATH,
            &json!({
                "model": "m",
                "tools": tools(),
                "messages": [
                    {"role": "user", "content": "weather in Paris"},
                    {"role": "assistant", "content": null, "tool_calls": [{
                        "id": "call_0", "type": "function",
                        "function": {"name": "get_weather", "arguments": "{\"echo\":\"weather in Paris\"}"},
                    }]},
                    {"role": "tool", "tool_call_id": "call_0", "content": "sunny, 21 C"},
                ],
            }),
        )
        .await;
    assert_eq!(status, 200);
    let choice = &body["choices"][0];
    assert_eq!(choice["finish_reason"], "stop");
    assert!(choice["message"].get("tool_calls").is_none());
    assert_eq!(
        choice["message"]["content"],
        "echo: sunny, 21 C lorem ipsum"
    );
    assert_eq!(body["usage"], usage(6, 6));
}

#[tokio::test]
async fn bad_requests_get_openai_errors() {
    let mock = start(MockOptions::default()).await;
    let malformed = mock
        .client
        .post(mock.url(PATH))
        .header("content-type", "application/json")
        .body("{\"model\": ")
        .send()
        .await
        .unwrap();
    assert_eq!(malformed.status(), 400);
    let body: Value = malformed.json().await.unwrap();
    assert_eq!(body["error"]["type"], "invalid_request_error");
    assert_eq!(body["error"]["param"], Value::Null);
    assert_eq!(body["error"]["code"], Value::Null);
    assert!(body["error"]["message"].as_str().unwrap().contains("parse"));

    for (request, param) in [
        (
            json!({"messages": [{"role": "user", "content": "x"}]}),
            "model",
        ),
        (json!({"model": "m", "messages": []}), "messages"),
        (json!({"model": "m"}), "messages"),
        (
            json!({"model": "m", "messages": [{"role": "user", "content": "x"}], "max_tokens": 0}),
            "max_tokens",
        ),
    ] {
        let (status, body) = mock.post_json(PATH, &request).await;
        assert_eq!(status, 400, "{request}");
        assert_eq!(body["error"]["type"], "invalid_request_error");
        assert_eq!(body["error"]["param"], param, "{request}");
        assert_eq!(body["error"]["code"], Value::Null);
        assert!(body["error"]["message"].is_string());
    }
}

#[tokio::test]
async fn a_stop_sequence_cuts_the_reply() {
    let mock = start(MockOptions::default()).await;
    let mut body = chat("hello there");
    body["stop"] = json!("there");
    let (status, reply) = mock.post_json(PATH, &body).await;
    assert_eq!(status, 200, "{reply}");
    assert_eq!(reply["choices"][0]["message"]["content"], "echo: hello ");
    assert_eq!(reply["choices"][0]["finish_reason"], "stop");
    body["stop"] = json!(["nothing", "hello"]);
    let (_, reply) = mock.post_json(PATH, &body).await;
    assert_eq!(reply["choices"][0]["message"]["content"], "echo: ");
}

#[tokio::test]
async fn azure_routes_need_an_api_version() {
    let mock = start(MockOptions::default()).await;
    let path = "/openai/deployments/my-gpt/chat/completions";
    let (status, reply) = mock.post_json(path, &chat("hello")).await;
    assert_eq!(status, 400, "{reply}");
    assert_eq!(reply["error"]["param"], "api-version");
    let (status, reply) = mock
        .post_json(&format!("{path}?api-version=2024-10-21"), &chat("hello"))
        .await;
    assert_eq!(status, 200, "{reply}");
    assert!(
        reply["choices"][0]["message"]["content"]
            .as_str()
            .unwrap()
            .starts_with("echo: hello")
    );
    let log = mock.get_json("/mock/requests").await;
    assert_eq!(log[1]["query"], "api-version=2024-10-21");
}
