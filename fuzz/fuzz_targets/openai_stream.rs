//! An OpenAI provider's answers: a stream's events as the pass-through relay
//! reads them (classified, probed for content, usage stripped) and as a
//! translation decodes them, and a whole answer's usage.

#![no_main]

use libfuzzer_sys::fuzz_target;
use switchyard_fuzz::{assert_well_formed, events, translate};
use switchyard_providers::openai::{
    ChunkDecoder, StreamEvent, carries_content, classify_event, usage_of_response, without_usage,
};

fuzz_target!(|input: &[u8]| {
    let _ = usage_of_response(input);
    let events = events(input);
    for (_, data) in &events {
        let class = classify_event(data);
        let _ = carries_content(data);
        if let (StreamEvent::Chunk { usage: Some(_), .. }, Some(stripped)) =
            (class, without_usage(data))
        {
            serde_json::from_slice::<serde_json::Value>(&stripped)
                .unwrap_or_else(|e| panic!("a chunk without its usage is not JSON: {e}"));
        }
    }
    for out in translate(Box::new(ChunkDecoder::default()), &events) {
        assert_well_formed(&out);
    }
});
