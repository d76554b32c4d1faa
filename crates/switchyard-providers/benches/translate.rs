//! What translating between dialects costs over pass-through, per request and
//! per stream event: `cargo bench -p switchyard-providers --bench translate`.
//!
//! The request is a 2 KB chat request (system prompt, eight turns with a tool
//! call and its result, two tools);
//! each benchmark does everything the gateway does with it for one route:
//! validate, read the model, and write the upstream body.

#![allow(missing_docs, clippy::unwrap_used, clippy::expect_used)]

use bytes::BytesMut;
use divan::{Bencher, black_box};
use serde_json::json;
use switchyard_providers::openai::chat::{ChatCompletion, ChatRequest};
use switchyard_providers::openai::{ChunkEncoder, Endpoint, RequestBody, classify_event};
use switchyard_providers::sse::SseEvent;
use switchyard_providers::translate::{StreamDecoder, StreamEncoder};
use switchyard_providers::{anthropic, gemini};

fn main() {
    divan::main();
}

/// A 2 KB OpenAI chat request.
fn openai_request() -> Vec<u8> {
    let turn = "Could you look at the shipment schedule for the northern yard and tell me which \
                trains are late, and by how much, compared with yesterday's plan?";
    let body = json!({
        "model": "claude-sonnet-4.5",
        "messages": [
            {"role": "system", "content": "You are the dispatcher's assistant at the northern yard. Answer briefly, with numbers, and say which track each train waits on."},
            {"role": "user", "content": turn},
            {"role": "assistant", "content": "Three trains are late: 12 (20 min), 31 (45 min) and 47 (5 min)."},
            {"role": "user", "content": turn},
            {"role": "assistant", "content": "Train 31 waits for a crew change; the others for a free track."},
            {"role": "user", "content": turn},
            {"role": "assistant", "content": null, "tool_calls": [{"id": "call_1", "type": "function",
                "function": {"name": "delays", "arguments": "{\"train\":31}"}}]},
            {"role": "tool", "tool_call_id": "call_1", "content": "Crew change at Northgate: 40 minutes, then 5 minutes for the brake test. The relief crew left the depot at 09:12 and is expected on track 4 at 09:55; the train departs after the brake test, at 10:00 at the earliest."},
            {"role": "user", "content": [{"type": "text", "text": turn}]},
        ],
        "tools": [
            {"type": "function", "function": {"name": "schedule", "description": "Reads the schedule of a yard.",
                "parameters": {"type": "object", "properties": {"yard": {"type": "string"}, "day": {"type": "string"}}, "required": ["yard"]}}},
            {"type": "function", "function": {"name": "delays", "description": "Lists the delays of a train.",
                "parameters": {"type": "object", "properties": {"train": {"type": "integer"}}, "required": ["train"]}}},
        ],
        "temperature": 0.2,
        "max_tokens": 512,
        "user": "dispatcher-7",
    });
    let bytes = serde_json::to_vec(&body).unwrap();
    assert!((1900..2300).contains(&bytes.len()), "{} bytes", bytes.len());
    bytes
}

/// The same conversation as an Anthropic Messages request.
fn anthropic_request() -> Vec<u8> {
    let request: ChatRequest = serde_json::from_slice(&openai_request()).unwrap();
    anthropic::encode_request(&request, "claude-sonnet-4.5", 1024)
        .unwrap()
        .body
}

#[divan::bench]
fn request_pass_through(bencher: Bencher) {
    let body = openai_request();
    bencher.bench(|| {
        let parsed = RequestBody::parse(Endpoint::ChatCompletions, black_box(&body)).unwrap();
        parsed.to_upstream("gpt-4.1")
    });
}

#[divan::bench]
fn request_openai_to_anthropic(bencher: Bencher) {
    let body = openai_request();
    bencher.bench(|| {
        let parsed = RequestBody::parse(Endpoint::ChatCompletions, black_box(&body)).unwrap();
        black_box(parsed.model());
        let request: ChatRequest = serde_json::from_slice(&body).unwrap();
        anthropic::encode_request(&request, "claude-sonnet-4-5", 1024).unwrap()
    });
}

#[divan::bench]
fn request_openai_to_gemini(bencher: Bencher) {
    let body = openai_request();
    bencher.bench(|| {
        let parsed = RequestBody::parse(Endpoint::ChatCompletions, black_box(&body)).unwrap();
        black_box(parsed.model());
        let request: ChatRequest = serde_json::from_slice(&body).unwrap();
        gemini::encode_request(&request).unwrap()
    });
}

#[divan::bench]
fn request_anthropic_pass_through(bencher: Bencher) {
    let body = anthropic_request();
    bencher.bench(|| {
        let peek = anthropic::peek(black_box(&body)).unwrap();
        anthropic::with_model(&body, &peek, "claude-sonnet-4-5")
    });
}

#[divan::bench]
fn request_anthropic_to_openai(bencher: Bencher) {
    let body = anthropic_request();
    bencher.bench(|| {
        let peek = anthropic::peek(black_box(&body)).unwrap();
        black_box(&peek.model);
        let mut decoded = anthropic::decode_request(&body).unwrap();
        decoded.request.model = "gpt-4.1".to_owned();
        serde_json::to_vec(&decoded.request).unwrap()
    });
}

/// An Anthropic answer of about 2 KB.
fn anthropic_response() -> Vec<u8> {
    let text = "Train 31 is 45 minutes late. ".repeat(60);
    serde_json::to_vec(&json!({
        "id": "msg_01", "type": "message", "role": "assistant", "model": "claude-sonnet-4-5",
        "content": [{"type": "text", "text": text}],
        "stop_reason": "end_turn", "stop_sequence": null,
        "usage": {"input_tokens": 420, "output_tokens": 380, "cache_read_input_tokens": 0, "cache_creation_input_tokens": 0}
    }))
    .unwrap()
}

#[divan::bench]
fn response_anthropic_to_openai(bencher: Bencher) {
    let body = anthropic_response();
    bencher.bench(|| {
        let completion = anthropic::decode_response(black_box(&body), 1).unwrap();
        serde_json::to_vec(&completion).unwrap()
    });
}

#[divan::bench]
fn response_openai_to_anthropic(bencher: Bencher) {
    let completion = anthropic::decode_response(&anthropic_response(), 1).unwrap();
    let body = serde_json::to_vec(&completion).unwrap();
    bencher.bench(|| {
        let completion: ChatCompletion = serde_json::from_slice(black_box(&body)).unwrap();
        anthropic::encode_response(&completion)
    });
}

const OPENAI_EVENT: &str = r#"{"id":"chatcmpl-1","object":"chat.completion.chunk","created":1,"model":"m","choices":[{"index":0,"delta":{"content":" late"},"finish_reason":null}]}"#;
const ANTHROPIC_EVENT: &str =
    r#"{"type":"content_block_delta","index":0,"delta":{"type":"text_delta","text":" late"}}"#;

#[divan::bench]
fn stream_event_pass_through(bencher: Bencher) {
    bencher.bench(|| classify_event(black_box(OPENAI_EVENT.as_bytes())));
}

#[divan::bench]
fn stream_event_anthropic_to_openai(bencher: Bencher) {
    let mut decoder = anthropic::MessageStreamDecoder::new(1);
    let mut chunks = Vec::new();
    let start = r#"{"type":"message_start","message":{"id":"msg_01","type":"message","role":"assistant","model":"m","content":[],"stop_reason":null,"stop_sequence":null,"usage":{"input_tokens":3,"output_tokens":1}}}"#;
    for (name, data) in [
        ("message_start", start),
        (
            "content_block_start",
            r#"{"type":"content_block_start","index":0,"content_block":{"type":"text","text":""}}"#,
        ),
    ] {
        let event = SseEvent {
            event: Some(name),
            data: data.as_bytes(),
        };
        decoder.event(event, &mut chunks).unwrap();
    }
    chunks.clear();
    let mut encoder = ChunkEncoder::new(false);
    let mut out = BytesMut::with_capacity(1 << 16);
    bencher.bench_local(|| {
        let event = SseEvent {
            event: Some("content_block_delta"),
            data: black_box(ANTHROPIC_EVENT.as_bytes()),
        };
        decoder.event(event, &mut chunks).unwrap();
        for chunk in chunks.drain(..) {
            encoder.chunk(&chunk, &mut out);
        }
        out.clear();
    });
}

#[divan::bench]
fn stream_event_openai_to_anthropic(bencher: Bencher) {
    let mut decoder = switchyard_providers::openai::ChunkDecoder::default();
    let mut encoder = anthropic::MessageStreamEncoder::new("m");
    let mut chunks = Vec::new();
    let mut out = BytesMut::with_capacity(1 << 16);
    bencher.bench_local(|| {
        let event = SseEvent {
            event: None,
            data: black_box(OPENAI_EVENT.as_bytes()),
        };
        decoder.event(event, &mut chunks).unwrap();
        for chunk in chunks.drain(..) {
            encoder.chunk(&chunk, &mut out);
        }
        out.clear();
    });
}
