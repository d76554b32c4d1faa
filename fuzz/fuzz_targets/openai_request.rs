//! An OpenAI client's request body: the scan that reads its model and stream
//! flags and rewrites its model, and the typed request translated for
//! Anthropic and Gemini providers.

#![no_main]

use libfuzzer_sys::fuzz_target;
use switchyard_providers::openai::chat::ChatRequest;
use switchyard_providers::openai::{Endpoint, RequestBody};
use switchyard_providers::{anthropic, gemini};

fuzz_target!(|body: &[u8]| {
    let json = serde_json::from_slice::<serde_json::Value>(body).is_ok();
    for endpoint in [
        Endpoint::ChatCompletions,
        Endpoint::Completions,
        Endpoint::Embeddings,
    ] {
        let Ok(parsed) = RequestBody::parse(endpoint, body) else {
            continue;
        };
        let _ = (
            parsed.stream(),
            parsed.include_usage(),
            parsed.max_output_tokens(),
        );
        let upstream = parsed.to_upstream("fuzz-upstream");
        if json {
            // The body sent upstream is JSON, with the upstream model.
            let sent: serde_json::Value = serde_json::from_slice(&upstream)
                .unwrap_or_else(|e| panic!("the rewritten body is not JSON: {e}"));
            assert_eq!(sent["model"], "fuzz-upstream");
        }
    }
    if let Ok(request) = serde_json::from_slice::<ChatRequest>(body) {
        let _ = request.wants_stream_usage();
        if let Ok(encoded) = anthropic::encode_request(&request, "fuzz-upstream", 1024) {
            serde_json::from_slice::<serde_json::Value>(&encoded.body).expect("Anthropic JSON");
        }
        if let Ok(encoded) = gemini::encode_request(&request) {
            serde_json::from_slice::<serde_json::Value>(&encoded.body).expect("Gemini JSON");
        }
    }
});
