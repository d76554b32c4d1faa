//! A Gemini provider's answers: a stream's events as a translation decodes
//! them, its in-band errors, and whole answers (chat and embeddings) decoded.

#![no_main]

use libfuzzer_sys::fuzz_target;
use switchyard_fuzz::{assert_well_formed, events, translate};
use switchyard_providers::gemini::{self, GenerateStreamDecoder};

fuzz_target!(|input: &[u8]| {
    let _ = gemini::decode_response(input, "fuzz-model", 0);
    let _ = gemini::decode_embeddings(input, "fuzz-model", true);
    let _ = gemini::decode_error(500, input);
    let events = events(input);
    for (_, data) in &events {
        let _ = gemini::stream_error(data);
    }
    let decoder = GenerateStreamDecoder::new("fuzz-model", 0);
    for out in translate(Box::new(decoder), &events) {
        assert_well_formed(&out);
    }
});
