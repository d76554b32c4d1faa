//! OpenAI clients in front of the Gemini API: `tests/fixtures/openai-to-gemini`.
//!
//! Besides the files of the common table, a case may hold:
//!
//! | input | expected | what is checked |
//! | --- | --- | --- |
//! | `request.json` | `rejected.json` (`{"message", "param"}`) | a request refused with 400 |
//! | `embedding_request.json` | `upstream_embedding_request.json` (+ `dropped.json`) or `rejected.json` | an embeddings request |
//! | `upstream_embedding_response.json` | `embedding_response.json` | embeddings as the client gets them (base64 when the case's request asks for it) |

use std::path::Path;

use serde_json::{Value, json};
use switchyard_providers::gemini::{
    GenerateStreamDecoder, decode_embeddings, decode_error, decode_response, encode_embeddings,
    encode_request,
};
use switchyard_providers::openai::ChunkEncoder;
use switchyard_providers::openai::InvalidRequest;
use switchyard_providers::openai::chat::ChatRequest;
use switchyard_providers::openai::embedding::EmbeddingRequest;
use switchyard_providers::translate::Encoded;

use crate::{cases, check_json, check_sse, input, translate_stream};

const DIRECTION: &str = "openai-to-gemini";
const MODEL: &str = "gemini-flash";
const UPSTREAM_MODEL: &str = "gemini-embedding-001";
const CREATED: u64 = 1_700_000_000;

#[test]
fn openai_to_gemini() {
    for case in cases(DIRECTION) {
        let mut checked = 0;
        if let Some(body) = input(&case, "request.json") {
            let request: ChatRequest = serde_json::from_slice(&body).unwrap();
            check_encoded(&case, "upstream_request.json", encode_request(&request));
            checked += 1;
        }
        if let Some(body) = input(&case, "upstream_response.json") {
            let response = decode_response(&body, MODEL, CREATED).unwrap();
            check_json(
                &case,
                "response.json",
                &serde_json::to_value(response).unwrap(),
            );
            checked += 1;
        }
        if let Some(stream) = input(&case, "upstream_stream.sse") {
            let out = translate_stream(
                &stream,
                &mut GenerateStreamDecoder::new(MODEL, CREATED),
                &mut ChunkEncoder::new(true),
            );
            check_sse(&case, "stream.sse", &out);
            checked += 1;
        }
        if let Some(body) = input(&case, "upstream_error.json") {
            let status: u16 = String::from_utf8(input(&case, "status.txt").unwrap())
                .unwrap()
                .trim()
                .parse()
                .unwrap();
            let error = decode_error(status, &body);
            check_json(&case, "error.json", &serde_json::to_value(error).unwrap());
            checked += 1;
        }
        let mut base64 = false;
        if let Some(body) = input(&case, "embedding_request.json") {
            let request: EmbeddingRequest = serde_json::from_slice(&body).unwrap();
            base64 = request.encoding_format.as_deref() == Some("base64");
            let encoded = encode_embeddings(&request, UPSTREAM_MODEL);
            check_encoded(&case, "upstream_embedding_request.json", encoded);
            checked += 1;
        }
        if let Some(body) = input(&case, "upstream_embedding_response.json") {
            let response = decode_embeddings(&body, "embed", base64).unwrap();
            // Through the bytes the client gets: `f32`s written at their precision.
            let bytes = serde_json::to_vec(&response).unwrap();
            let name = "embedding_response.json";
            check_json(&case, name, &serde_json::from_slice(&bytes).unwrap());
            checked += 1;
        }
        assert!(checked > 0, "{}: no input file", case.display());
    }
}

/// Checks an encoded request (and what it dropped) or the refusal.
fn check_encoded(case: &Path, name: &str, encoded: Result<Encoded, InvalidRequest>) {
    match encoded {
        Ok(encoded) => {
            let body: Value = serde_json::from_slice(&encoded.body).unwrap();
            check_json(case, name, &body);
            if !encoded.dropped.is_empty() || case.join("dropped.json").exists() {
                check_json(case, "dropped.json", &json!(encoded.dropped));
            }
        }
        Err(refused) => {
            let refused = json!({"message": refused.message, "param": refused.param});
            check_json(case, "rejected.json", &refused);
        }
    }
}

#[test]
fn base64_embeddings_are_little_endian_f32() {
    let body = br#"{"embeddings":[{"values":[1.0,-2.0]}]}"#;
    let response = decode_embeddings(body, "embed", true).unwrap();
    let value = serde_json::to_value(&response.data[0].embedding).unwrap();
    // 1.0 = 00 00 80 3f, -2.0 = 00 00 00 c0.
    assert_eq!(value, json!("AACAPwAAAMA="));
}

#[test]
fn stream_decoder_ends_only_after_a_finish_reason() {
    use switchyard_providers::sse::SseEvent;
    use switchyard_providers::translate::{StreamDecoder, StreamError};

    let mut decoder = GenerateStreamDecoder::new(MODEL, CREATED);
    let mut out = Vec::new();
    assert!(matches!(
        decoder.end(&mut out),
        Err(StreamError::Malformed(_))
    ));
    let data = br#"{"candidates":[{"finishReason":"STOP"}]}"#;
    let event = SseEvent {
        event: None,
        data: data.as_slice(),
    };
    decoder.event(event, &mut out).unwrap();
    assert_eq!(out.len(), 1);
    assert_eq!(out[0].choices[0].finish_reason.as_deref(), Some("stop"));
    assert_eq!(out[0].choices[0].delta.role.as_deref(), Some("assistant"));
    decoder.end(&mut out).unwrap();
    assert_eq!(out.len(), 1, "no usage was reported, so no usage chunk");
}
