//! What the fuzz targets share: an input cut into event-stream events, and a
//! provider's stream decoded and written in both client dialects, as the
//! gateway's relay does.

use bytes::BytesMut;
use switchyard_providers::anthropic::MessageStreamEncoder;
use switchyard_providers::openai::ChunkEncoder;
use switchyard_providers::sse::{SseEvent, SseParser};
use switchyard_providers::translate::{StreamDecoder, StreamEncoder};

/// The largest event the targets' parsers take: far below the gateway's
/// default and the inputs' 64 KiB, so that the fuzzer reaches the limit's
/// paths.
pub const MAX_EVENT_BYTES: usize = 4 << 10;

/// Events as `(event, data)`.
pub type Events = Vec<(Option<String>, Vec<u8>)>;

/// The events of `input` read as an event stream, until the end or a parse
/// failure.
pub fn events(input: &[u8]) -> Events {
    let mut out = Vec::new();
    let mut parser = SseParser::new(MAX_EVENT_BYTES);
    let _ = parser.feed(input, |event| {
        out.push((event.event.map(str::to_owned), event.data.to_vec()));
        true
    });
    out
}

/// Feeds `events` to `decoder` and writes every chunk it makes with the
/// OpenAI and the Anthropic encoder, then ends the stream, as the relay does.
/// Answers the bytes written for each dialect.
pub fn translate(mut decoder: Box<dyn StreamDecoder>, events: &Events) -> [BytesMut; 2] {
    let mut encoders: [Box<dyn StreamEncoder>; 2] = [
        Box::new(ChunkEncoder::new(true)),
        Box::new(MessageStreamEncoder::new("fuzz-model")),
    ];
    let mut out = [BytesMut::new(), BytesMut::new()];
    let mut chunks = Vec::new();
    let mut ended = false;
    for (name, data) in events {
        let event = SseEvent {
            event: name.as_deref(),
            data,
        };
        let progress = decoder.event(event, &mut chunks);
        encode(&mut encoders, &mut chunks, &mut out);
        match progress {
            Ok(switchyard_providers::translate::Progress::More) => {}
            Ok(switchyard_providers::translate::Progress::Done) => {
                ended = true;
                break;
            }
            Err(_) => return out,
        }
    }
    if !ended {
        let end = decoder.end(&mut chunks);
        encode(&mut encoders, &mut chunks, &mut out);
        if end.is_err() {
            return out;
        }
    }
    for (encoder, out) in encoders.iter_mut().zip(out.iter_mut()) {
        encoder.done(out);
    }
    out
}

fn encode(
    encoders: &mut [Box<dyn StreamEncoder>; 2],
    chunks: &mut Vec<switchyard_providers::openai::chat::ChatChunk>,
    out: &mut [BytesMut; 2],
) {
    for chunk in chunks.drain(..) {
        for (encoder, out) in encoders.iter_mut().zip(out.iter_mut()) {
            encoder.chunk(&chunk, out);
        }
    }
}

/// Every event written to a client is well formed: `data:` lines of JSON
/// (or OpenAI's `[DONE]`), each event ended by a blank line.
pub fn assert_well_formed(stream: &[u8]) {
    let text = std::str::from_utf8(stream).expect("a client stream is UTF-8");
    for event in text.split_terminator("\n\n") {
        for line in event.lines() {
            if let Some(data) = line.strip_prefix("data: ") {
                if data != "[DONE]" {
                    serde_json::from_str::<&serde_json::value::RawValue>(data)
                        .unwrap_or_else(|e| panic!("not JSON ({e}): {data}"));
                }
            } else {
                assert!(line.starts_with("event: "), "not an event line: {line:?}");
            }
        }
    }
}
