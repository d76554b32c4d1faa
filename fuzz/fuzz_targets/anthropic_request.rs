//! An Anthropic client's Messages request: the peek a pass-through reads and
//! its model rewrite, and the decoding into the OpenAI shape that a
//! translation starts from.

#![no_main]

use libfuzzer_sys::fuzz_target;
use switchyard_providers::{anthropic, gemini};

fuzz_target!(|body: &[u8]| {
    let json = serde_json::from_slice::<serde_json::Value>(body).is_ok();
    if let Ok(peek) = anthropic::peek(body) {
        assert!(peek.model_at.end <= body.len());
        let rewritten = anthropic::with_model(body, &peek, "fuzz-upstream");
        if json {
            let sent: serde_json::Value = serde_json::from_slice(&rewritten)
                .unwrap_or_else(|e| panic!("the rewritten body is not JSON: {e}"));
            assert_eq!(sent["model"], "fuzz-upstream");
        }
    }
    if let Ok(decoded) = anthropic::decode_request(body) {
        if let Ok(encoded) = anthropic::encode_request(&decoded.request, "fuzz-upstream", 1024) {
            serde_json::from_slice::<serde_json::Value>(&encoded.body).expect("Anthropic JSON");
        }
        if let Ok(encoded) = gemini::encode_request(&decoded.request) {
            serde_json::from_slice::<serde_json::Value>(&encoded.body).expect("Gemini JSON");
        }
    }
});
