//! An Anthropic provider's answers: a stream's events as the pass-through
//! watch reads them and as a translation decodes them, its in-band errors,
//! and a whole answer decoded.

#![no_main]

use libfuzzer_sys::fuzz_target;
use switchyard_fuzz::{assert_well_formed, events, translate};
use switchyard_providers::anthropic::{self, EventWatch, MessageStreamDecoder};
use switchyard_providers::sse::SseEvent;

fuzz_target!(|input: &[u8]| {
    let _ = anthropic::decode_response(input, 0);
    let _ = anthropic::usage_of_message(input);
    let _ = anthropic::decode_error(500, input);
    let events = events(input);
    let mut watch = EventWatch::new();
    for (name, data) in &events {
        let _ = anthropic::stream_error(data);
        let event = SseEvent {
            event: name.as_deref(),
            data,
        };
        if watch.event(event).is_err() {
            break;
        }
    }
    let _ = (watch.usage(), watch.end());
    for out in translate(Box::new(MessageStreamDecoder::new(0)), &events) {
        assert_well_formed(&out);
    }
});
