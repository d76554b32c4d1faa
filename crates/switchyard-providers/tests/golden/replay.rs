//! A stream stored as one completion and played back: the chunks of a
//! stream add up to the completion ([`ChatCompletion::from_chunks`]), and the
//! completion's own chunks ([`ChatCompletion::into_chunks`]) add up to it
//! again.

use bytes::BytesMut;
use serde_json::json;
use switchyard_providers::anthropic::MessageStreamDecoder;
use switchyard_providers::openai::chat::{ChatChunk, ChatCompletion};
use switchyard_providers::openai::{ChunkDecoder, ChunkEncoder};
use switchyard_providers::sse::SseParser;
use switchyard_providers::translate::{Progress, StreamDecoder, StreamEncoder};

use crate::{cases, input};

const CREATED: u64 = 1_700_000_000;

/// Every completion a translation makes (the `response.json` of the
/// directions towards an OpenAI client) comes back whole from its chunks.
#[test]
fn every_translated_completion_comes_back_from_its_chunks() {
    for case in cases("openai-to-anthropic")
        .into_iter()
        .chain(cases("openai-to-gemini"))
    {
        let Some(body) = input(&case, "response.json") else {
            continue;
        };
        let completion: ChatCompletion = serde_json::from_slice(&body).unwrap();
        assert_eq!(
            ChatCompletion::from_chunks(completion.clone().into_chunks()),
            Some(completion),
            "{}",
            case.display()
        );
    }
}

/// A stream as OpenAI sends it (`stream_options.include_usage` on): text,
/// then two tool calls whose arguments come in pieces, then the usage.
const OPENAI_STREAM: &str = r#"data: {"id":"chatcmpl-CK3vXq8Lr0Zb2bWm1nJ9tYQm7Hk2P","object":"chat.completion.chunk","created":1759000000,"model":"gpt-4.1-2025-04-14","service_tier":"default","system_fingerprint":"fp_b3f1157249","choices":[{"index":0,"delta":{"role":"assistant","content":"","refusal":null},"logprobs":null,"finish_reason":null}],"usage":null,"obfuscation":"xQ4"}

data: {"id":"chatcmpl-CK3vXq8Lr0Zb2bWm1nJ9tYQm7Hk2P","object":"chat.completion.chunk","created":1759000000,"model":"gpt-4.1-2025-04-14","service_tier":"default","system_fingerprint":"fp_b3f1157249","choices":[{"index":0,"delta":{"content":"I'll check"},"logprobs":null,"finish_reason":null}],"usage":null,"obfuscation":"a"}

data: {"id":"chatcmpl-CK3vXq8Lr0Zb2bWm1nJ9tYQm7Hk2P","object":"chat.completion.chunk","created":1759000000,"model":"gpt-4.1-2025-04-14","service_tier":"default","system_fingerprint":"fp_b3f1157249","choices":[{"index":0,"delta":{"content":" both."},"logprobs":null,"finish_reason":null}],"usage":null,"obfuscation":"Zk"}

data: {"id":"chatcmpl-CK3vXq8Lr0Zb2bWm1nJ9tYQm7Hk2P","object":"chat.completion.chunk","created":1759000000,"model":"gpt-4.1-2025-04-14","service_tier":"default","system_fingerprint":"fp_b3f1157249","choices":[{"index":0,"delta":{"tool_calls":[{"index":0,"id":"call_Wq3bX5d1hT0a","type":"function","function":{"name":"get_weather","arguments":""}}]},"logprobs":null,"finish_reason":null}],"usage":null,"obfuscation":"f"}

data: {"id":"chatcmpl-CK3vXq8Lr0Zb2bWm1nJ9tYQm7Hk2P","object":"chat.completion.chunk","created":1759000000,"model":"gpt-4.1-2025-04-14","service_tier":"default","system_fingerprint":"fp_b3f1157249","choices":[{"index":0,"delta":{"tool_calls":[{"index":0,"function":{"arguments":"{\"lo"}}]},"logprobs":null,"finish_reason":null}],"usage":null,"obfuscation":"Pq1"}

data: {"id":"chatcmpl-CK3vXq8Lr0Zb2bWm1nJ9tYQm7Hk2P","object":"chat.completion.chunk","created":1759000000,"model":"gpt-4.1-2025-04-14","service_tier":"default","system_fingerprint":"fp_b3f1157249","choices":[{"index":0,"delta":{"tool_calls":[{"index":0,"function":{"arguments":"cation\": \"Pa"}}]},"logprobs":null,"finish_reason":null}],"usage":null,"obfuscation":"7"}

data: {"id":"chatcmpl-CK3vXq8Lr0Zb2bWm1nJ9tYQm7Hk2P","object":"chat.completion.chunk","created":1759000000,"model":"gpt-4.1-2025-04-14","service_tier":"default","system_fingerprint":"fp_b3f1157249","choices":[{"index":0,"delta":{"tool_calls":[{"index":0,"function":{"arguments":"ris\"}"}}]},"logprobs":null,"finish_reason":null}],"usage":null,"obfuscation":"Lm"}

data: {"id":"chatcmpl-CK3vXq8Lr0Zb2bWm1nJ9tYQm7Hk2P","object":"chat.completion.chunk","created":1759000000,"model":"gpt-4.1-2025-04-14","service_tier":"default","system_fingerprint":"fp_b3f1157249","choices":[{"index":0,"delta":{"tool_calls":[{"index":1,"id":"call_Kd82mZ0pQe4r","type":"function","function":{"name":"get_time","arguments":""}}]},"logprobs":null,"finish_reason":null}],"usage":null,"obfuscation":"u"}

data: {"id":"chatcmpl-CK3vXq8Lr0Zb2bWm1nJ9tYQm7Hk2P","object":"chat.completion.chunk","created":1759000000,"model":"gpt-4.1-2025-04-14","service_tier":"default","system_fingerprint":"fp_b3f1157249","choices":[{"index":0,"delta":{"tool_calls":[{"index":1,"function":{"arguments":"{\"timezone\""}}]},"logprobs":null,"finish_reason":null}],"usage":null,"obfuscation":"Rr"}

data: {"id":"chatcmpl-CK3vXq8Lr0Zb2bWm1nJ9tYQm7Hk2P","object":"chat.completion.chunk","created":1759000000,"model":"gpt-4.1-2025-04-14","service_tier":"default","system_fingerprint":"fp_b3f1157249","choices":[{"index":0,"delta":{"tool_calls":[{"index":1,"function":{"arguments":": \"Europe/Paris\"}"}}]},"logprobs":null,"finish_reason":null}],"usage":null,"obfuscation":"c"}

data: {"id":"chatcmpl-CK3vXq8Lr0Zb2bWm1nJ9tYQm7Hk2P","object":"chat.completion.chunk","created":1759000000,"model":"gpt-4.1-2025-04-14","service_tier":"default","system_fingerprint":"fp_b3f1157249","choices":[{"index":0,"delta":{},"logprobs":null,"finish_reason":"tool_calls"}],"usage":null,"obfuscation":"9dX"}

data: {"id":"chatcmpl-CK3vXq8Lr0Zb2bWm1nJ9tYQm7Hk2P","object":"chat.completion.chunk","created":1759000000,"model":"gpt-4.1-2025-04-14","service_tier":"default","system_fingerprint":"fp_b3f1157249","choices":[],"usage":{"prompt_tokens":82,"completion_tokens":49,"total_tokens":131,"prompt_tokens_details":{"cached_tokens":0,"audio_tokens":0},"completion_tokens_details":{"reasoning_tokens":0,"audio_tokens":0,"accepted_prediction_tokens":0,"rejected_prediction_tokens":0}},"obfuscation":"T"}

data: [DONE]

"#;

#[test]
fn an_openai_stream_adds_up_to_its_completion() {
    let chunks = decode(OPENAI_STREAM.as_bytes(), &mut ChunkDecoder::default());
    let completion = ChatCompletion::from_chunks(&chunks).unwrap();
    assert_eq!(
        serde_json::to_value(&completion).unwrap(),
        json!({
            "id": "chatcmpl-CK3vXq8Lr0Zb2bWm1nJ9tYQm7Hk2P",
            "object": "chat.completion",
            "created": 1_759_000_000,
            "model": "gpt-4.1-2025-04-14",
            "system_fingerprint": "fp_b3f1157249",
            "choices": [{
                "index": 0,
                "message": {
                    "role": "assistant",
                    "content": "I'll check both.",
                    "refusal": null,
                    "tool_calls": [
                        {"id": "call_Wq3bX5d1hT0a", "type": "function", "function":
                            {"name": "get_weather", "arguments": "{\"location\": \"Paris\"}"}},
                        {"id": "call_Kd82mZ0pQe4r", "type": "function", "function":
                            {"name": "get_time", "arguments": "{\"timezone\": \"Europe/Paris\"}"}}
                    ]
                },
                "finish_reason": "tool_calls",
                "logprobs": null
            }],
            "usage": {
                "prompt_tokens": 82, "completion_tokens": 49, "total_tokens": 131,
                "prompt_tokens_details": {"cached_tokens": 0},
                "completion_tokens_details": {"reasoning_tokens": 0}
            }
        })
    );
    assert_eq!(played_back(&completion), completion);
}

/// A Messages stream as Anthropic sends it: thinking, text, then two tool
/// calls whose input comes in pieces, usage at the start and the end.
const ANTHROPIC_STREAM: &str = r#"event: message_start
data: {"type":"message_start","message":{"id":"msg_01GZq3XkYb7cTn2qVv4iWm8R","type":"message","role":"assistant","model":"claude-sonnet-4-5-20250929","content":[],"stop_reason":null,"stop_sequence":null,"usage":{"input_tokens":472,"cache_creation_input_tokens":0,"cache_read_input_tokens":1024,"cache_creation":{"ephemeral_5m_input_tokens":0,"ephemeral_1h_input_tokens":0},"output_tokens":2,"service_tier":"standard"}}}

event: content_block_start
data: {"type":"content_block_start","index":0,"content_block":{"type":"thinking","thinking":"","signature":""}}

event: content_block_delta
data: {"type":"content_block_delta","index":0,"delta":{"type":"thinking_delta","thinking":"Two cities, "}}

event: content_block_delta
data: {"type":"content_block_delta","index":0,"delta":{"type":"thinking_delta","thinking":"two calls."}}

event: content_block_delta
data: {"type":"content_block_delta","index":0,"delta":{"type":"signature_delta","signature":"EqQBCgIYAhIM1gbcDa9GJwZA2b3h"}}

event: content_block_stop
data: {"type":"content_block_stop","index":0}

event: content_block_start
data: {"type":"content_block_start","index":1,"content_block":{"type":"text","text":""}}

event: ping
data: {"type": "ping"}

event: content_block_delta
data: {"type":"content_block_delta","index":1,"delta":{"type":"text_delta","text":"Looking up "}}

event: content_block_delta
data: {"type":"content_block_delta","index":1,"delta":{"type":"text_delta","text":"both."}}

event: content_block_stop
data: {"type":"content_block_stop","index":1}

event: content_block_start
data: {"type":"content_block_start","index":2,"content_block":{"type":"tool_use","id":"toolu_01A09q90qw90lq917835lq9","name":"get_weather","input":{}}}

event: content_block_delta
data: {"type":"content_block_delta","index":2,"delta":{"type":"input_json_delta","partial_json":""}}

event: content_block_delta
data: {"type":"content_block_delta","index":2,"delta":{"type":"input_json_delta","partial_json":"{\"city\": \"Os"}}

event: content_block_delta
data: {"type":"content_block_delta","index":2,"delta":{"type":"input_json_delta","partial_json":"lo\"}"}}

event: content_block_stop
data: {"type":"content_block_stop","index":2}

event: content_block_start
data: {"type":"content_block_start","index":3,"content_block":{"type":"tool_use","id":"toolu_01B7hY2kLmN3pQ4rS5tU6vW","name":"get_weather","input":{}}}

event: content_block_delta
data: {"type":"content_block_delta","index":3,"delta":{"type":"input_json_delta","partial_json":"{\"ci"}}

event: content_block_delta
data: {"type":"content_block_delta","index":3,"delta":{"type":"input_json_delta","partial_json":"ty\": \"Bergen\"}"}}

event: content_block_stop
data: {"type":"content_block_stop","index":3}

event: message_delta
data: {"type":"message_delta","delta":{"stop_reason":"tool_use","stop_sequence":null},"usage":{"output_tokens":118}}

event: message_stop
data: {"type":"message_stop"}

"#;

#[test]
fn an_anthropic_stream_adds_up_to_its_completion() {
    let chunks = decode(
        ANTHROPIC_STREAM.as_bytes(),
        &mut MessageStreamDecoder::new(CREATED),
    );
    let completion = ChatCompletion::from_chunks(&chunks).unwrap();
    assert_eq!(
        serde_json::to_value(&completion).unwrap(),
        json!({
            "id": "msg_01GZq3XkYb7cTn2qVv4iWm8R",
            "object": "chat.completion",
            "created": CREATED,
            "model": "claude-sonnet-4-5-20250929",
            "choices": [{
                "index": 0,
                "message": {
                    "role": "assistant",
                    "content": "Looking up both.",
                    "reasoning_content": "Two cities, two calls.",
                    "refusal": null,
                    "tool_calls": [
                        {"id": "toolu_01A09q90qw90lq917835lq9", "type": "function", "function":
                            {"name": "get_weather", "arguments": "{\"city\": \"Oslo\"}"}},
                        {"id": "toolu_01B7hY2kLmN3pQ4rS5tU6vW", "type": "function", "function":
                            {"name": "get_weather", "arguments": "{\"city\": \"Bergen\"}"}}
                    ]
                },
                "finish_reason": "tool_calls",
                "logprobs": null
            }],
            "usage": {
                "prompt_tokens": 1496, "completion_tokens": 118, "total_tokens": 1614,
                "prompt_tokens_details": {"cached_tokens": 1024}
            }
        })
    );
    assert_eq!(played_back(&completion), completion);
}

/// The chunks `decoder` reads from `stream`, its bytes arriving a few at a
/// time; the stream must be complete.
pub fn decode(stream: &[u8], decoder: &mut dyn StreamDecoder) -> Vec<ChatChunk> {
    let mut parser = SseParser::new(1 << 20);
    let mut chunks = Vec::new();
    let mut done = false;
    for piece in stream.chunks(7) {
        parser
            .feed(piece, |event| {
                assert!(!done, "an event after the end");
                done = decoder.event(event, &mut chunks).unwrap() == Progress::Done;
                true
            })
            .unwrap();
    }
    assert!(done, "the stream did not end");
    decoder.end(&mut chunks).unwrap();
    chunks
}

/// `completion` played back to an OpenAI client as a stream and read again.
pub fn played_back(completion: &ChatCompletion) -> ChatCompletion {
    let mut encoder = ChunkEncoder::new(true);
    let mut stream = BytesMut::new();
    for chunk in completion.clone().into_chunks() {
        encoder.chunk(&chunk, &mut stream);
    }
    encoder.done(&mut stream);
    let chunks = decode(&stream, &mut ChunkDecoder::default());
    ChatCompletion::from_chunks(chunks).unwrap()
}
