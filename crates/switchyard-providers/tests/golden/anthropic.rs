//! The Anthropic Messages dialect both ways: `openai-to-anthropic` (an OpenAI
//! client, an Anthropic provider) and `anthropic-to-openai` (an Anthropic
//! client, an OpenAI provider).
//!
//! Besides the runner's pairs, a case may expect `rejected.json` instead of
//! `upstream_request.json`: `{"param", "message"}` of the 400 its request
//! gets. `dropped.json` is checked when the request drops a field or the
//! case has one.

use std::path::Path;

use serde_json::{Value, json};
use switchyard_providers::anthropic::{
    self, EventWatch, MessageStreamDecoder, MessageStreamEncoder,
};
use switchyard_providers::openai::chat::{ChatCompletion, ChatRequest};
use switchyard_providers::openai::{ChunkDecoder, ChunkEncoder, ErrorBody, InvalidRequest};
use switchyard_providers::sse::SseParser;
use switchyard_providers::translate::{Progress, StreamError};

use crate::{cases, check_json, check_sse, events, input, translate_stream};

const CREATED: u64 = 1_700_000_000;
const UPSTREAM_MODEL: &str = "claude-sonnet-4-5-20250929";
const DEFAULT_MAX_TOKENS: u64 = 4096;
/// The model an Anthropic client asked for.
const CLIENT_MODEL: &str = "claude-sonnet-4-5";

#[test]
fn openai_to_anthropic() {
    for case in cases("openai-to-anthropic") {
        if let Some(body) = input(&case, "request.json") {
            let request: ChatRequest = serde_json::from_slice(&body).unwrap();
            let encoded = anthropic::encode_request(&request, UPSTREAM_MODEL, DEFAULT_MAX_TOKENS)
                .map(|e| (json_of(&e.body), e.dropped));
            check_request(&case, encoded);
        }
        if let Some(body) = input(&case, "upstream_response.json") {
            let completion = anthropic::decode_response(&body, CREATED).unwrap();
            check_json(
                &case,
                "response.json",
                &serde_json::to_value(completion).unwrap(),
            );
        }
        if let Some(stream) = input(&case, "upstream_stream.sse") {
            let mut decoder = MessageStreamDecoder::new(CREATED);
            let out = translate_stream(&stream, &mut decoder, &mut ChunkEncoder::new(true));
            check_sse(&case, "stream.sse", &out);
            watch_agrees(&case, &stream, &out);
        }
        if let Some(body) = input(&case, "upstream_error.json") {
            let error = anthropic::decode_error(status(&case), &body);
            check_json(
                &case,
                "error.json",
                &serde_json::to_value(ErrorBody { error }).unwrap(),
            );
        }
    }
}

#[test]
fn anthropic_to_openai() {
    for case in cases("anthropic-to-openai") {
        if let Some(body) = input(&case, "request.json") {
            let decoded = anthropic::decode_request(&body)
                .map(|d| (serde_json::to_value(d.request).unwrap(), d.dropped));
            check_request(&case, decoded);
        }
        if let Some(body) = input(&case, "upstream_response.json") {
            let completion: ChatCompletion = serde_json::from_slice(&body).unwrap();
            check_json(
                &case,
                "response.json",
                &json_of(&anthropic::encode_response(&completion)),
            );
        }
        if let Some(stream) = input(&case, "upstream_stream.sse") {
            let mut encoder = MessageStreamEncoder::new(CLIENT_MODEL);
            let out = translate_stream(&stream, &mut ChunkDecoder::default(), &mut encoder);
            check_sse(&case, "stream.sse", &out);
        }
        if let Some(body) = input(&case, "upstream_error.json") {
            let body: ErrorBody = serde_json::from_slice(&body).unwrap();
            let error = anthropic::error_body(status(&case), &body.error);
            check_json(&case, "error.json", &json_of(&error));
        }
    }
}

/// The translated request and what it dropped, or the 400 it got.
fn check_request(case: &Path, outcome: Result<(Value, Vec<String>), InvalidRequest>) {
    match outcome {
        Ok((request, dropped)) => {
            check_json(case, "upstream_request.json", &request);
            if !dropped.is_empty() || case.join("dropped.json").exists() {
                check_json(case, "dropped.json", &json!(dropped));
            }
        }
        Err(e) => check_json(
            case,
            "rejected.json",
            &json!({"param": e.param, "message": e.message}),
        ),
    }
}

/// What the pass-through watch reads off the same Anthropic stream agrees
/// with the translation: the same usage, the same outcome.
fn watch_agrees(case: &Path, upstream: &[u8], translated: &[u8]) {
    let mut watch = EventWatch::new();
    let mut outcome = None;
    SseParser::new(1 << 20)
        .feed(upstream, |event| {
            match watch.event(event) {
                Ok(Progress::More) => return true,
                Ok(Progress::Done) => outcome = Some(Ok(())),
                Err(e) => outcome = Some(Err(e)),
            }
            false
        })
        .unwrap();
    let outcome = outcome.unwrap_or_else(|| watch.end());
    let translated = events(translated);
    let usage = translated
        .iter()
        .find_map(|(_, data)| data.get("usage").cloned())
        .map(|u| serde_json::from_value(u).unwrap());
    let name = case.display();
    match outcome {
        Ok(()) => {
            assert_eq!(watch.usage(), usage, "{name}: usage");
            assert_eq!(translated.last().unwrap().1, json!("[DONE]"), "{name}");
        }
        Err(StreamError::Upstream(_) | StreamError::Malformed(_)) => {
            let last = &translated.last().unwrap().1;
            assert!(last.get("error").is_some(), "{name}: ends with an error");
        }
    }
}

fn json_of(body: &[u8]) -> Value {
    serde_json::from_slice(body).unwrap()
}

fn status(case: &Path) -> u16 {
    let text = input(case, "status.txt").expect("status.txt");
    String::from_utf8(text).unwrap().trim().parse().unwrap()
}
