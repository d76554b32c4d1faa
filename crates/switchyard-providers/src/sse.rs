//! An incremental parser for `text/event-stream` bodies (the WHATWG
//! Server-Sent Events format), with a bound on the size of one event.
//!
//! Events are handed out borrowed from the input buffer: the usual event (one
//! `data:` line) is neither copied nor reference-counted on its way through.

use bytes::{Buf, BytesMut};

/// One dispatched event: its `event:` type, if any, and its `data:` lines joined by `\n`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SseEvent<'a> {
    /// The `event:` field, when the upstream set one.
    pub event: Option<&'a str>,
    /// The data lines joined with `\n`, without the trailing newline.
    pub data: &'a [u8],
}

/// Why a stream could not be parsed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SseError {
    /// An event grew past the configured maximum before it was complete.
    #[error("an event-stream event exceeded {limit} bytes")]
    EventTooLarge {
        /// The configured maximum, in bytes.
        limit: usize,
    },
}

/// The data of the event being assembled.
#[derive(Debug)]
enum Data {
    /// No `data:` line yet.
    None,
    /// One `data:` line: its value's range in the buffer.
    Line(usize, usize),
    /// Several lines, joined in `SseParser::joined`.
    Joined,
}

/// Feeds on body chunks as they arrive and yields complete events.
#[derive(Debug)]
pub struct SseParser {
    buf: BytesMut,
    /// Where the event being assembled starts in `buf`.
    event_start: usize,
    /// Where the next line starts in `buf`.
    pos: usize,
    /// How far `buf` has been scanned for a line end without finding one.
    scanned: usize,
    data: Data,
    /// The data of a multi-line event.
    joined: Vec<u8>,
    /// The `event:` field of the event being assembled.
    event: Option<String>,
    /// Bytes of the event being assembled (lines already parsed).
    pending: usize,
    max_event_bytes: usize,
}

impl SseParser {
    /// A parser refusing events larger than `max_event_bytes`.
    pub fn new(max_event_bytes: usize) -> Self {
        Self {
            buf: BytesMut::new(),
            event_start: 0,
            pos: 0,
            scanned: 0,
            data: Data::None,
            joined: Vec::new(),
            event: None,
            pending: 0,
            max_event_bytes,
        }
    }

    /// Bytes received and not yet handed out as events.
    pub fn buffered(&self) -> usize {
        self.buf.len() - self.event_start
    }

    /// Parses `chunk` (after what is buffered) and hands every complete event
    /// to `on_event`, in order, until it returns `false`; what is left waits
    /// for the next chunk. An event without data (a `data:` keep-alive, a lone
    /// `event:`) is not dispatched.
    ///
    /// Events that arrive whole in one chunk are handed out from the chunk
    /// itself: only an event cut across chunks is copied.
    pub fn feed(
        &mut self,
        chunk: &[u8],
        mut on_event: impl FnMut(SseEvent<'_>) -> bool,
    ) -> Result<(), SseError> {
        if self.buf.is_empty() {
            let result = self.parse(chunk, &mut on_event);
            let done = self.event_start;
            self.buf.extend_from_slice(&chunk[done..]);
            self.shift(done);
            return result;
        }
        self.buf.extend_from_slice(chunk);
        let buf = std::mem::take(&mut self.buf);
        let result = self.parse(&buf, &mut on_event);
        self.buf = buf;
        let done = self.event_start;
        self.buf.advance(done);
        self.shift(done);
        result
    }

    fn parse(
        &mut self,
        src: &[u8],
        on_event: &mut impl FnMut(SseEvent<'_>) -> bool,
    ) -> Result<(), SseError> {
        loop {
            let Some((line_end, eol_len)) = self.find_line_end(src) else {
                if self.pending + (src.len() - self.pos) > self.max_event_bytes {
                    return Err(self.too_large());
                }
                return Ok(());
            };
            let (start, next) = (self.pos, line_end + eol_len);
            self.pos = next;
            self.scanned = next;
            self.pending += next - start;
            if self.pending > self.max_event_bytes {
                return Err(self.too_large());
            }
            if line_end > start {
                self.field(src, start, line_end);
                continue;
            }
            self.pending = 0;
            self.event_start = next;
            let data = match std::mem::replace(&mut self.data, Data::None) {
                Data::None => continue,
                Data::Line(from, to) => &src[from..to],
                Data::Joined => &self.joined[..],
            };
            let event = self.event.take();
            let go_on = data.is_empty()
                || on_event(SseEvent {
                    event: event.as_deref(),
                    data,
                });
            self.joined.clear();
            if !go_on {
                return Ok(());
            }
        }
    }

    /// Moves every position back by `done` bytes, dropped from the front.
    fn shift(&mut self, done: usize) {
        self.event_start -= done;
        self.pos -= done;
        self.scanned -= done;
        if let Data::Line(from, to) = &mut self.data {
            *from -= done;
            *to -= done;
        }
    }

    fn too_large(&self) -> SseError {
        SseError::EventTooLarge {
            limit: self.max_event_bytes,
        }
    }

    /// The end of the line starting at `pos` and the length of its terminator.
    fn find_line_end(&mut self, bytes: &[u8]) -> Option<(usize, usize)> {
        match memchr::memchr2(b'\n', b'\r', &bytes[self.scanned..]) {
            None => {
                self.scanned = bytes.len();
                None
            }
            Some(offset) => {
                let at = self.scanned + offset;
                if bytes[at] == b'\n' {
                    return Some((at, 1));
                }
                match bytes.get(at + 1) {
                    Some(b'\n') => Some((at, 2)),
                    Some(_) => Some((at, 1)),
                    None => {
                        // A lone `\r` at the end: wait to see whether `\n` follows.
                        self.scanned = at;
                        None
                    }
                }
            }
        }
    }

    fn field(&mut self, src: &[u8], start: usize, end: usize) {
        let line = &src[start..end];
        if line[0] == b':' {
            return;
        }
        let (name_end, value_start) = match memchr::memchr(b':', line) {
            Some(colon) if line.get(colon + 1) == Some(&b' ') => (colon, colon + 2),
            Some(colon) => (colon, colon + 1),
            None => (line.len(), line.len()),
        };
        let value = start + value_start..end;
        match &line[..name_end] {
            b"data" => {
                self.data = match std::mem::replace(&mut self.data, Data::None) {
                    // The usual event has one data line: only its range is kept.
                    Data::None => Data::Line(value.start, value.end),
                    Data::Line(from, to) => {
                        self.joined.extend_from_slice(&src[from..to]);
                        self.joined.push(b'\n');
                        self.joined.extend_from_slice(&src[value]);
                        Data::Joined
                    }
                    Data::Joined => {
                        self.joined.push(b'\n');
                        self.joined.extend_from_slice(&src[value]);
                        Data::Joined
                    }
                };
            }
            b"event" => {
                self.event = Some(String::from_utf8_lossy(&src[value]).into_owned());
            }
            _ => {}
        }
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    /// `(event, data)` of every complete event.
    type Owned = Vec<(Option<String>, Vec<u8>)>;

    fn feed(parser: &mut SseParser, chunk: &[u8]) -> Result<Owned, SseError> {
        let mut out = Vec::new();
        parser.feed(chunk, |e| {
            out.push((e.event.map(str::to_owned), e.data.to_vec()));
            true
        })?;
        Ok(out)
    }

    fn data(events: &Owned) -> Vec<&[u8]> {
        events.iter().map(|e| &e.1[..]).collect()
    }

    #[test]
    fn parses_events_split_at_every_byte() {
        let input = b"data: {\"a\":1}\n\n: comment\nevent: ping\ndata: x\ndata: y\r\n\r\ndata: [DONE]\r\r\n";
        for split in 1..input.len() {
            let mut parser = SseParser::new(1024);
            let mut events = Vec::new();
            for piece in input.chunks(split) {
                events.extend(feed(&mut parser, piece).unwrap());
            }
            assert_eq!(
                data(&events),
                vec![&b"{\"a\":1}"[..], b"x\ny", b"[DONE]"],
                "split {split}"
            );
            assert_eq!(events[1].0.as_deref(), Some("ping"));
            assert_eq!(events[0].0, None);
        }
    }

    #[test]
    fn incomplete_event_is_not_dispatched() {
        let mut parser = SseParser::new(1024);
        assert!(feed(&mut parser, b"data: partial").unwrap().is_empty());
        assert!(feed(&mut parser, b"\n").unwrap().is_empty());
        assert_eq!(
            data(&feed(&mut parser, b"\n").unwrap()),
            vec![&b"partial"[..]]
        );
    }

    #[test]
    fn event_without_data_is_skipped() {
        let mut parser = SseParser::new(1024);
        let events = feed(&mut parser, b"event: ping\n\ndata:\n\ndata:nospace\n\n").unwrap();
        assert_eq!(data(&events), vec![&b"nospace"[..]]);
        assert_eq!(events[0].0, None);
    }

    #[test]
    fn oversized_event_is_refused() {
        let mut parser = SseParser::new(16);
        assert_eq!(
            feed(&mut parser, b"data: 0123456789abcdef"),
            Err(SseError::EventTooLarge { limit: 16 })
        );
        let mut parser = SseParser::new(16);
        assert_eq!(
            feed(&mut parser, b"data: 0123\ndata: 456789abcdef\n"),
            Err(SseError::EventTooLarge { limit: 16 })
        );
        // Across chunks too.
        let mut parser = SseParser::new(16);
        assert!(feed(&mut parser, b"data: 0123456").unwrap().is_empty());
        assert_eq!(
            feed(&mut parser, b"789abcdef"),
            Err(SseError::EventTooLarge { limit: 16 })
        );
    }

    #[test]
    fn stops_when_asked_and_resumes() {
        let mut parser = SseParser::new(1024);
        let mut seen = Vec::new();
        parser
            .feed(b"data: 1\n\ndata: 2\n\ndata: 3\n", |e| {
                seen.push(e.data.to_vec());
                false
            })
            .unwrap();
        assert_eq!(seen, vec![b"1".to_vec()]);
        assert_eq!(
            data(&feed(&mut parser, b"\n").unwrap()),
            vec![&b"2"[..], b"3"]
        );
    }

    /// The events of `chunks` fed in turn to a parser of `limit`, and whether
    /// the parse failed.
    fn parse_all<'a>(limit: usize, chunks: impl Iterator<Item = &'a [u8]>) -> (Owned, bool) {
        let mut parser = SseParser::new(limit);
        let mut events = Vec::new();
        for chunk in chunks {
            let parsed = parser.feed(chunk, |e| {
                events.push((e.event.map(str::to_owned), e.data.to_vec()));
                true
            });
            if parsed.is_err() {
                return (events, true);
            }
        }
        (events, false)
    }

    /// Streams made of the pieces that matter to the format: field names,
    /// every line ending, comments, and short values.
    fn stream() -> impl proptest::strategy::Strategy<Value = Vec<u8>> {
        use proptest::prelude::*;
        let piece = prop_oneof![
            Just(b"data: ".to_vec()),
            Just(b"data:".to_vec()),
            Just(b"event: e".to_vec()),
            Just(b"id: 1".to_vec()),
            Just(b": comment".to_vec()),
            Just(b"\n".to_vec()),
            Just(b"\r".to_vec()),
            Just(b"\r\n".to_vec()),
            Just(b"\n\n".to_vec()),
            proptest::collection::vec(any::<u8>(), 0..12),
            "[a-z{}\":, ]{0,12}".prop_map(String::into_bytes),
        ];
        proptest::collection::vec(piece, 0..48).prop_map(|pieces| pieces.concat())
    }

    proptest::proptest! {
        #![proptest_config(proptest::prelude::ProptestConfig::with_cases(2000))]

        /// Any split of any stream parses to the same events as the whole,
        /// and fails (an event past the limit) after the same events.
        #[test]
        fn any_split_parses_to_the_same_events(
            stream in stream(),
            cuts in proptest::collection::vec(0usize..40, 0..24),
            limit in proptest::prop_oneof![proptest::strategy::Just(1usize << 20), 8usize..64],
        ) {
            let whole = parse_all(limit, std::iter::once(&stream[..]));
            let mut chunks = Vec::new();
            let mut rest = &stream[..];
            for cut in cuts {
                let (chunk, after) = rest.split_at(cut.min(rest.len()));
                chunks.push(chunk);
                rest = after;
            }
            chunks.push(rest);
            proptest::prop_assert_eq!(whole, parse_all(limit, chunks.into_iter()));
        }
    }

    #[test]
    fn many_events_through_a_small_window() {
        let mut parser = SseParser::new(64);
        let mut count = 0;
        for i in 0..1000 {
            let chunk = format!("event: e\ndata: {i}\ndata: x\n\n");
            // Events cut at every third byte, then whole.
            let mut got = Vec::new();
            for piece in chunk.as_bytes().chunks(if i % 2 == 0 { 3 } else { 64 }) {
                got.extend(feed(&mut parser, piece).unwrap());
            }
            for (event, data) in got {
                assert_eq!(event.as_deref(), Some("e"));
                assert_eq!(data, format!("{count}\nx").into_bytes());
                count += 1;
            }
        }
        assert_eq!(count, 1000);
    }
}
