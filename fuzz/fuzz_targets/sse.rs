//! The event-stream parser: any bytes, cut into chunks anywhere, parse to the
//! same events as the whole, and no event past the limit is handed out.

#![no_main]

use libfuzzer_sys::fuzz_target;
use switchyard_fuzz::Events;
use switchyard_providers::sse::SseParser;

/// The limit of an event here: small, so that inputs reach it.
const LIMIT: usize = 256;

/// The events of `chunks` fed in turn, and whether the parse failed.
fn parse<'a>(chunks: impl Iterator<Item = &'a [u8]>) -> (Events, bool) {
    let mut parser = SseParser::new(LIMIT);
    let mut events = Vec::new();
    for chunk in chunks {
        let parsed = parser.feed(chunk, |event| {
            assert!(
                event.data.len() <= LIMIT,
                "an event past the limit was handed out"
            );
            events.push((event.event.map(str::to_owned), event.data.to_vec()));
            true
        });
        if parsed.is_err() {
            return (events, true);
        }
        assert!(parser.buffered() <= LIMIT + chunk.len());
    }
    (events, false)
}

fuzz_target!(|input: (Vec<u8>, &[u8])| {
    let (cuts, stream) = input;
    let whole = parse(std::iter::once(stream));
    // The cuts: each byte is the length of the next chunk.
    let mut chunks = Vec::new();
    let mut rest = stream;
    for &cut in &cuts {
        let at = usize::from(cut).min(rest.len());
        let (chunk, after) = rest.split_at(at);
        chunks.push(chunk);
        rest = after;
    }
    chunks.push(rest);
    let cut = parse(chunks.into_iter());
    assert_eq!(whole, cut, "a cut stream parsed differently from the whole");
});
