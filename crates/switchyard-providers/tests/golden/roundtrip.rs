//! Translation round trips over generated inputs (proptest): what one side of
//! a translation writes, the other reads back to the same meaning.
//!
//! - an OpenAI completion, written for an Anthropic client (whole and as a
//!   stream) and read back, and played back as an OpenAI stream;
//! - an Anthropic client's request, read into the OpenAI shape and written
//!   for an Anthropic provider.

use bytes::BytesMut;
use proptest::prelude::*;
use serde_json::{Value, json};
use switchyard_providers::anthropic::{self, MessageStreamDecoder, MessageStreamEncoder};
use switchyard_providers::openai::chat::ChatCompletion;
use switchyard_providers::translate::StreamEncoder;

use crate::replay::{decode, played_back};

/// Text with something in it: letters, spaces, quotes, escapes and characters
/// outside ASCII.
fn text() -> impl Strategy<Value = String> {
    "[a-z][a-zA-Z0-9 .,!?'\"\\\\\n\té中🙂]{0,24}"
}

/// An OpenAI completion with text, a finish reason both dialects know, and usage.
fn completion() -> impl Strategy<Value = ChatCompletion> {
    let finish = prop_oneof![Just("stop"), Just("length")];
    (text(), finish, 0u64..100_000, 0u64..100_000).prop_map(|(text, finish, input, output)| {
        serde_json::from_value(json!({
            "id": "chatcmpl-roundtrip",
            "object": "chat.completion",
            "created": 1_700_000_000,
            "model": "model-a",
            "choices": [{
                "index": 0,
                "message": {"role": "assistant", "content": text},
                "finish_reason": finish,
                "logprobs": null
            }],
            "usage": {"prompt_tokens": input, "completion_tokens": output, "total_tokens": input + output}
        }))
        .unwrap()
    })
}

/// What a completion means: its text, its finish reason, its tokens in and out.
fn meaning(completion: &ChatCompletion) -> (Option<String>, Option<String>, Option<(u64, u64)>) {
    let choice = &completion.choices[0];
    (
        choice.message.content.clone(),
        choice.finish_reason.clone(),
        completion
            .usage
            .as_ref()
            .map(|u| (u.prompt_tokens, u.completion_tokens)),
    )
}

/// An Anthropic client's request: a system prompt or none, turns that
/// alternate from the user's, and the sampling fields both shapes carry.
fn messages_request() -> impl Strategy<Value = Value> {
    let turns = proptest::collection::vec(text(), 1..6);
    let stops = proptest::collection::vec(text(), 0..3);
    (
        proptest::option::of(text()),
        turns,
        1u64..8192,
        proptest::option::of(0u8..=4),
        stops,
        any::<bool>(),
    )
        .prop_map(|(system, turns, max_tokens, temperature, stops, stream)| {
            let messages: Vec<Value> = turns
                .iter()
                .enumerate()
                .map(|(i, text)| {
                    let role = if i % 2 == 0 { "user" } else { "assistant" };
                    json!({"role": role, "content": text})
                })
                .collect();
            let mut request = json!({
                "model": "model-a",
                "max_tokens": max_tokens,
                "messages": messages,
                "stream": stream,
            });
            if let Some(system) = system {
                request["system"] = json!(system);
            }
            if let Some(quarters) = temperature {
                request["temperature"] = json!(f64::from(quarters) / 4.0);
            }
            if !stops.is_empty() {
                request["stop_sequences"] = json!(stops);
            }
            request
        })
}

/// The text of a Messages content: a string, or the text of its text blocks.
fn content_text(content: &Value) -> String {
    match content {
        Value::String(text) => text.clone(),
        Value::Array(blocks) => blocks
            .iter()
            .map(|block| {
                assert_eq!(block["type"], "text", "{block}");
                block["text"].as_str().unwrap().to_owned()
            })
            .collect(),
        other => panic!("not a content: {other}"),
    }
}

/// What a Messages request means: its model, turns, system prompt and
/// sampling fields.
fn request_meaning(request: &Value) -> Value {
    let turns: Vec<Value> = request["messages"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| json!([m["role"], content_text(&m["content"])]))
        .collect();
    let system = match &request["system"] {
        Value::Null => Value::Null,
        system => json!(content_text(system)),
    };
    json!({
        "model": request["model"],
        "max_tokens": request["max_tokens"],
        "turns": turns,
        "system": system,
        "temperature": request["temperature"],
        "stop_sequences": request.get("stop_sequences").cloned().unwrap_or(json!(null)),
        "stream": request["stream"].as_bool().unwrap_or(false),
    })
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(200))]

    /// A completion written for an Anthropic client, whole, reads back the same.
    #[test]
    fn a_completion_comes_back_from_an_anthropic_message(completion in completion()) {
        let message = anthropic::encode_response(&completion);
        let back = anthropic::decode_response(&message, 1_700_000_000).unwrap();
        prop_assert_eq!(meaning(&back), meaning(&completion));
    }

    /// A completion streamed to an Anthropic client reads back the same.
    #[test]
    fn a_completion_comes_back_from_an_anthropic_stream(completion in completion()) {
        let mut encoder = MessageStreamEncoder::new("model-a");
        let mut stream = BytesMut::new();
        for chunk in completion.clone().into_chunks() {
            encoder.chunk(&chunk, &mut stream);
        }
        encoder.done(&mut stream);
        let chunks = decode(&stream, &mut MessageStreamDecoder::new(1_700_000_000));
        let back = ChatCompletion::from_chunks(chunks).unwrap();
        prop_assert_eq!(meaning(&back), meaning(&completion));
    }

    /// A completion played back as an OpenAI stream adds up to itself.
    #[test]
    fn a_completion_comes_back_from_an_openai_stream(completion in completion()) {
        prop_assert_eq!(played_back(&completion), completion);
    }

    /// An Anthropic client's request, read into the OpenAI shape and written
    /// for an Anthropic provider, asks for the same.
    #[test]
    fn an_anthropic_request_comes_back_through_the_openai_shape(request in messages_request()) {
        let body = serde_json::to_vec(&request).unwrap();
        let decoded = anthropic::decode_request(&body).unwrap();
        prop_assert!(decoded.dropped.is_empty(), "dropped {:?}", decoded.dropped);
        let encoded = anthropic::encode_request(&decoded.request, "model-a", 4096).unwrap();
        let sent: Value = serde_json::from_slice(&encoded.body).unwrap();
        prop_assert_eq!(request_meaning(&sent), request_meaning(&request));
    }
}
