//! `POST /v1/completions` (legacy).

use serde_json::{Value, json};
use switchyard_mock::MockOptions;

use crate::common::{start, streaming};

const PATH: &str = "/v1/completions";

#[tokio::test]
async fn json_reply_echoes_the_prompt() {
    let mock = start(MockOptions {
        completion_tokens: 5,
        ..MockOptions::default()
    })
    .await;
    let (status, mut body) = mock
        .post_json(
            PATH,
            &json!({"model": "davinci-test", "prompt": "once upon"}),
        )
        .await;
    assert_eq!(status, 200);
    assert!(body["id"].as_str().unwrap().starts_with("cmpl-"));
    assert!(body["created"].as_u64().unwrap() > 1_700_000_000);
    body.as_object_mut().unwrap().remove("id");
    body.as_object_mut().unwrap().remove("created");
    assert_eq!(
        body,
        json!({
            "object": "text_completion",
            "model": "davinci-test",
            "choices": [{
                "text": "echo: once upon lorem ipsum",
                "index": 0,
                "logprobs": null,
                "finish_reason": "stop",
            }],
            "usage": {
                "prompt_tokens": 2,
                "completion_tokens": 5,
                "total_tokens": 7,
                "prompt_tokens_details": {"cached_tokens": 0, "audio_tokens": 0},
                "completion_tokens_details": {
                    "reasoning_tokens": 0,
                    "audio_tokens": 0,
                    "accepted_prediction_tokens": 0,
                    "rejected_prediction_tokens": 0,
                },
            },
        })
    );

    // An array of prompts: the first one is answered.
    let (_, body) = mock
        .post_json(
            PATH,
            &json!({"model": "m", "prompt": ["a b c d e f", "ignored"], "max_tokens": 3}),
        )
        .await;
    assert_eq!(body["choices"][0]["text"], "echo: a b");
    assert_eq!(body["choices"][0]["finish_reason"], "length");
    assert_eq!(body["usage"]["prompt_tokens"], 6);
    assert_eq!(body["usage"]["completion_tokens"], 3);
}

#[tokio::test]
async fn stream_pieces_concatenate_and_usage_comes_last_when_asked() {
    let mock = start(MockOptions::default()).await;
    let request = json!({"model": "m", "prompt": "stream  this"});
    let (_, body) = mock.post_json(PATH, &request).await;
    let expected = body["choices"][0]["text"].as_str().unwrap();

    for include_usage in [false, true] {
        let sse = mock
            .post_sse(
                PATH,
                &streaming(
                    request.clone(),
                    json!({"stream_options": {"include_usage": include_usage}}),
                ),
            )
            .await;
        assert_eq!(sse.error, None);
        assert_eq!(sse.data().last(), Some(&"[DONE]"));
        let mut chunks = sse.json();
        if include_usage {
            let last = chunks.pop().unwrap();
            assert_eq!(last["choices"], json!([]));
            assert_eq!(last["usage"], body["usage"]);
            assert!(
                chunks
                    .iter()
                    .all(|c| c["usage"] == Value::Null && c.get("usage").is_some())
            );
        } else {
            assert!(chunks.iter().all(|c| c.get("usage").is_none()));
        }
        // 16 words, then the finish chunk.
        assert_eq!(chunks.len(), 17);
        let (finish, words) = chunks.split_last().unwrap();
        assert_eq!(
            finish["choices"],
            json!([{"text": "", "index": 0, "logprobs": null, "finish_reason": "stop"}])
        );
        let mut text = String::new();
        for chunk in words {
            assert_eq!(chunk["object"], "text_completion");
            assert_eq!(chunk["model"], "m");
            assert_eq!(chunk["id"], finish["id"]);
            assert_eq!(chunk["choices"][0]["finish_reason"], Value::Null);
            text.push_str(chunk["choices"][0]["text"].as_str().unwrap());
        }
        assert_eq!(text, expected);
    }
}

#[tokio::test]
async fn empty_or_missing_prompt_is_refused() {
    let mock = start(MockOptions::default()).await;
    for request in [
        json!({"model": "m"}),
        json!({"model": "m", "prompt": ""}),
        json!({"model": "m", "prompt": []}),
    ] {
        let (status, body) = mock.post_json(PATH, &request).await;
        assert_eq!(status, 400, "{request}");
        assert_eq!(body["error"]["param"], "prompt");
        assert_eq!(body["error"]["type"], "invalid_request_error");
    }
    let (status, body) = mock.post_json(PATH, &json!({"prompt": "x"})).await;
    assert_eq!(status, 400);
    assert_eq!(body["error"]["param"], "model");
}
