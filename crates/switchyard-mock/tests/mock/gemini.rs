//! `POST /v1beta/models/{model}:{method}`: the Gemini dialect.

use serde_json::{Value, json};
use switchyard_mock::MockOptions;

use crate::common::{Mock, failing, read_events, start};

const GENERATE: &str = "/v1beta/models/gemini-test:generateContent";
const STREAM: &str = "/v1beta/models/gemini-test:streamGenerateContent";

/// A request with one user content.
fn contents(text: &str) -> Value {
    json!({"contents": [{"role": "user", "parts": [{"text": text}]}]})
}

fn tools() -> Value {
    json!([{"functionDeclarations": [
        {"name": "get_weather", "description": "Weather", "parameters": {"type": "object"}},
        {"name": "other"},
    ]}])
}

fn usage(prompt: u64, candidates: u64) -> Value {
    json!({"promptTokenCount": prompt, "candidatesTokenCount": candidates,
           "totalTokenCount": prompt + candidates})
}

/// POSTs `body` with the key in the header.
async fn send(mock: &Mock, path: &str, body: &Value) -> reqwest::Response {
    mock.client
        .post(mock.url(path))
        .header("x-goog-api-key", "test-key")
        .json(body)
        .send()
        .await
        .unwrap()
}

async fn send_json(mock: &Mock, path: &str, body: &Value) -> (u16, Value) {
    let response = send(mock, path, body).await;
    let status = response.status().as_u16();
    (status, response.json().await.unwrap())
}

/// `?alt=sse`: the `data:` chunks (CRLF-framed, unnamed) and the error that ended the
/// stream early, if any.
async fn send_sse(mock: &Mock, body: &Value) -> (Vec<Value>, Option<String>) {
    let response = send(mock, &format!("{STREAM}?alt=sse&key=k"), body).await;
    let (events, error) = read_events(response, "\r\n\r\n").await;
    let chunks = events
        .iter()
        .map(|event| {
            let data = event
                .strip_prefix("data: ")
                .unwrap_or_else(|| panic!("not a data event: {event:?}"));
            assert!(!data.contains('\n'), "{event:?}");
            serde_json::from_str(data).unwrap()
        })
        .collect();
    (chunks, error)
}

/// The text of a response's (or chunks') first candidate.
fn text_of(chunks: &[Value]) -> String {
    chunks
        .iter()
        .map(|c| {
            c["candidates"][0]["content"]["parts"][0]["text"]
                .as_str()
                .unwrap()
        })
        .collect()
}

#[tokio::test]
async fn generate_content_echoes_and_counts_exactly() {
    let mock = start(MockOptions::default()).await;
    let (status, body) = send_json(
        &mock,
        GENERATE,
        &json!({
            "systemInstruction": {"parts": [{"text": "You are   terse."}]},
            "contents": [{"role": "user", "parts": [
                {"text": "hello\nworld"},
                {"inlineData": {"mimeType": "image/png", "data": "iVBORw0KGgo="}},
            ]}],
            "generationConfig": {"temperature": 0.2, "topP": 0.9, "topK": 4, "responseMimeType": "text/plain"},
            "safetySettings": [{"category": "HARM_CATEGORY_HARASSMENT", "threshold": "BLOCK_NONE"}],
        }),
    )
    .await;
    assert_eq!(status, 200);
    assert_eq!(
        body,
        json!({
            "candidates": [{
                "content": {"parts": [{"text": "echo: hello world lorem ipsum dolor sit amet consectetur adipiscing elit sed do eiusmod tempor incididunt"}],
                            "role": "model"},
                "finishReason": "STOP",
                "index": 0,
            }],
            "usageMetadata": usage(5, 16),
            "modelVersion": "gemini-test",
            "responseId": "mock-0",
        })
    );
    let stats = mock.get_json("/mock/stats").await;
    assert_eq!(stats["by_path"], json!({GENERATE: 1}));
}

#[tokio::test]
async fn sse_chunks_carry_pieces_and_the_last_one_finishes() {
    let mock = start(MockOptions {
        completion_tokens: 4,
        ..MockOptions::default()
    })
    .await;
    let (chunks, error) = send_sse(&mock, &contents("stream me")).await;
    assert_eq!(error, None);
    assert_eq!(chunks.len(), 4, "{chunks:#?}");
    assert_eq!(text_of(&chunks), "echo: stream me lorem");
    let (last, earlier) = chunks.split_last().unwrap();
    for chunk in earlier {
        assert!(chunk.get("usageMetadata").is_none(), "{chunk}");
        assert!(
            chunk["candidates"][0].get("finishReason").is_none(),
            "{chunk}"
        );
        assert_eq!(chunk["modelVersion"], "gemini-test");
        assert_eq!(chunk["responseId"], last["responseId"]);
    }
    assert_eq!(
        last,
        &json!({
            "candidates": [{"content": {"parts": [{"text": " lorem"}], "role": "model"},
                            "finishReason": "STOP", "index": 0}],
            "usageMetadata": usage(2, 4),
            "modelVersion": "gemini-test",
            "responseId": last["responseId"],
        })
    );

    // Without alt=sse: the same chunks as one JSON array.
    let response = send(&mock, STREAM, &contents("stream me")).await;
    assert_eq!(response.headers()["content-type"], "application/json");
    let array: Vec<Value> = response.json().await.unwrap();
    let without_id = |chunks: &[Value]| {
        let mut chunks = chunks.to_vec();
        for chunk in &mut chunks {
            chunk.as_object_mut().unwrap().remove("responseId");
        }
        chunks
    };
    assert_eq!(without_id(&array), without_id(&chunks));
}

#[tokio::test]
async fn max_output_tokens_and_stop_sequences() {
    let mock = start(MockOptions::default()).await;
    let mut capped = contents("hello world again");
    capped["generationConfig"] = json!({"maxOutputTokens": 3});
    let (_, body) = send_json(&mock, GENERATE, &capped).await;
    assert_eq!(body["candidates"][0]["finishReason"], "MAX_TOKENS");
    assert_eq!(text_of(std::slice::from_ref(&body)), "echo: hello world");
    assert_eq!(body["usageMetadata"], usage(3, 3));
    let (chunks, _) = send_sse(&mock, &capped).await;
    assert_eq!(
        chunks.last().unwrap()["candidates"][0]["finishReason"],
        "MAX_TOKENS"
    );
    assert_eq!(text_of(&chunks), "echo: hello world");

    let mut stopped = contents("hello world again");
    stopped["generationConfig"] = json!({"stopSequences": ["again", "world"]});
    let (_, body) = send_json(&mock, GENERATE, &stopped).await;
    assert_eq!(body["candidates"][0]["finishReason"], "STOP");
    assert_eq!(text_of(std::slice::from_ref(&body)), "echo: hello ");
    assert_eq!(body["usageMetadata"], usage(3, 2));

    let mut two = contents("hi");
    two["generationConfig"] = json!({"candidateCount": 2, "maxOutputTokens": 2});
    let (_, body) = send_json(&mock, GENERATE, &two).await;
    let candidates = body["candidates"].as_array().unwrap();
    assert_eq!(candidates.len(), 2);
    assert_eq!(candidates[1]["index"], 1);
    assert_eq!(candidates[1]["content"], candidates[0]["content"]);
    assert_eq!(body["usageMetadata"], usage(1, 4));
}

#[tokio::test]
async fn function_call_and_the_response_follow_up() {
    let mock = start(MockOptions {
        completion_tokens: 6,
        ..MockOptions::default()
    })
    .await;
    let mut request = contents("weather in \"Paris\"");
    request["tools"] = tools();
    let (status, body) = send_json(&mock, GENERATE, &request).await;
    assert_eq!(status, 200);
    assert_eq!(
        body["candidates"],
        json!([{"content": {"parts": [{"functionCall": {"name": "get_weather",
                                                        "args": {"echo": "weather in \"Paris\""}}}],
                            "role": "model"},
                "finishReason": "STOP", "index": 0}])
    );
    assert_eq!(body["usageMetadata"], usage(3, 3));
    let (chunks, _) = send_sse(&mock, &request).await;
    assert_eq!(chunks.len(), 1);
    assert_eq!(chunks[0]["candidates"], body["candidates"]);
    assert_eq!(chunks[0]["usageMetadata"], body["usageMetadata"]);

    let (_, body) = send_json(
        &mock,
        GENERATE,
        &json!({
            "tools": tools(),
            "contents": [
                {"role": "user", "parts": [{"text": "weather in Paris"}]},
                {"role": "model", "parts": [{"functionCall": {"name": "get_weather", "args": {"echo": "weather in Paris"}}}]},
                {"role": "user", "parts": [{"functionResponse": {"name": "get_weather",
                                                                 "response": {"content": "sunny, 21 C"}}}]},
            ],
        }),
    )
    .await;
    assert_eq!(
        text_of(std::slice::from_ref(&body)),
        "echo: sunny, 21 C lorem ipsum"
    );
    assert_eq!(body["usageMetadata"], usage(6, 6));
}

#[tokio::test]
async fn embeddings_equal_the_openai_routes_vectors() {
    let mock = start(MockOptions::default()).await;
    let (_, openai) = mock
        .post_json(
            "/v1/embeddings",
            &json!({"model": "m", "input": ["first text", "second"], "dimensions": 12}),
        )
        .await;
    let (status, batch) = send_json(
        &mock,
        "/v1beta/models/embed-test:batchEmbedContents",
        &json!({"requests": [
            {"model": "models/embed-test", "content": {"parts": [{"text": "first text"}]}, "outputDimensionality": 12},
            {"model": "models/embed-test", "content": {"parts": [{"text": "second"}]},
             "taskType": "RETRIEVAL_DOCUMENT", "outputDimensionality": 12},
        ]}),
    )
    .await;
    assert_eq!(status, 200);
    let embeddings = batch["embeddings"].as_array().unwrap();
    assert_eq!(embeddings.len(), 2);
    for (gemini, openai) in embeddings.iter().zip(openai["data"].as_array().unwrap()) {
        assert_eq!(gemini["values"], openai["embedding"]);
    }
    let (status, single) = send_json(
        &mock,
        "/v1beta/models/embed-test:embedContent",
        &json!({"content": {"parts": [{"text": "first text"}]}}),
    )
    .await;
    assert_eq!(status, 200);
    let (_, default) = mock
        .post_json(
            "/v1/embeddings",
            &json!({"model": "m", "input": "first text"}),
        )
        .await;
    assert_eq!(
        single["embedding"]["values"],
        default["data"][0]["embedding"]
    );
    assert_eq!(single["embedding"]["values"].as_array().unwrap().len(), 8);

    // A batch request must name the URL's model.
    let (status, body) = send_json(
        &mock,
        "/v1beta/models/embed-test:batchEmbedContents",
        &json!({"requests": [{"model": "models/other", "content": {"parts": [{"text": "x"}]}}]}),
    )
    .await;
    assert_eq!(status, 400);
    assert_eq!(body["error"]["status"], "INVALID_ARGUMENT");
}

#[tokio::test]
async fn errors_have_googles_shape() {
    let mock = start(MockOptions::default()).await;
    let (status, body) = send_json(&mock, GENERATE, &json!({"contents": []})).await;
    assert_eq!(status, 400);
    assert_eq!(
        body,
        json!({"error": {"code": 400, "status": "INVALID_ARGUMENT",
                         "message": "* GenerateContentRequest.contents: contents is not specified"}})
    );
    let (status, body) = send_json(
        &mock,
        "/v1beta/models/gemini-test:countTokens",
        &contents("x"),
    )
    .await;
    assert_eq!(status, 404);
    assert_eq!(body["error"]["status"], "NOT_FOUND");
    assert_eq!(body["error"]["code"], 404);

    for (code, name) in [
        (503, "UNAVAILABLE"),
        (500, "INTERNAL"),
        (504, "DEADLINE_EXCEEDED"),
    ] {
        let mock = failing(code, None).await;
        let (status, body) = send_json(&mock, GENERATE, &contents("x")).await;
        assert_eq!(status, code);
        assert_eq!(
            body,
            json!({"error": {"code": code, "message": format!("mock injected failure ({code})"), "status": name}})
        );
    }
    let mock = failing(429, Some(7)).await;
    for path in [
        GENERATE,
        &format!("{STREAM}?alt=sse"),
        "/v1beta/models/e:embedContent",
    ] {
        let response = send(&mock, path, &contents("x")).await;
        assert_eq!(response.status(), 429);
        assert_eq!(response.headers()["retry-after"], "7");
        let body: Value = response.json().await.unwrap();
        assert_eq!(body["error"]["status"], "RESOURCE_EXHAUSTED");
        assert_eq!(body["error"]["details"][0]["retryDelay"], "7s");
    }
}

#[tokio::test]
async fn stream_faults() {
    let mock = start(MockOptions {
        stream_error_rate: 1.0,
        ..MockOptions::default()
    })
    .await;
    let (chunks, error) = send_sse(&mock, &contents("fail me")).await;
    assert_eq!(error, None, "an in-band error is a clean end");
    assert_eq!(chunks.len(), 2, "{chunks:#?}");
    assert_eq!(text_of(&chunks[..1]), "echo:");
    assert_eq!(
        chunks[1],
        json!({"error": {"code": 503, "message": "The model is overloaded. Please try again later.",
                         "status": "UNAVAILABLE"}})
    );
    // The JSON array form stays a valid array.
    let response = send(&mock, STREAM, &contents("fail me")).await;
    let array: Vec<Value> = response.json().await.unwrap();
    assert_eq!(array.len(), 2);
    assert_eq!(array[1]["error"]["status"], "UNAVAILABLE");

    let mock = start(MockOptions {
        stream_cut_rate: 1.0,
        ..MockOptions::default()
    })
    .await;
    let (chunks, error) = send_sse(&mock, &contents("cut me")).await;
    assert!(error.is_some(), "the body ended cleanly: {chunks:?}");
    assert_eq!(chunks.len(), 8);
    assert!(chunks.iter().all(|c| c.get("usageMetadata").is_none()));
}
