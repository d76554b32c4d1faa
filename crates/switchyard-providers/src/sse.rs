//! An incremental parser for `text/event-stream` bodies (the WHATWG
//! Server-Sent Events format), with a bound on the size of one event.

use bytes::{Buf, Bytes, BytesMut};

/// One dispatched event: its `event:` type, if any, and its `data:` lines joined by `\n`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SseEvent {
    /// The `event:` field, when the upstream set one.
    pub event: Option<String>,
    /// The data lines joined with `\n`, without the trailing newline.
    pub data: Bytes,
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

/// Feeds on body chunks as they arrive and yields complete events.
#[derive(Debug)]
pub struct SseParser {
    buf: BytesMut,
    /// How far `buf` has been scanned for a line end without finding one.
    scanned: usize,
    data: Vec<u8>,
    has_data: bool,
    event: Option<String>,
    /// Bytes consumed for the event being assembled (lines already parsed).
    pending: usize,
    max_event_bytes: usize,
}

impl SseParser {
    /// A parser that refuses any event larger than `max_event_bytes`.
    pub fn new(max_event_bytes: usize) -> Self {
        Self {
            buf: BytesMut::new(),
            scanned: 0,
            data: Vec::new(),
            has_data: false,
            event: None,
            pending: 0,
            max_event_bytes,
        }
    }

    /// Appends a chunk of the body.
    pub fn push(&mut self, chunk: &[u8]) {
        self.buf.extend_from_slice(chunk);
    }

    /// Returns the next complete event, or `None` when more input is needed.
    pub fn next_event(&mut self) -> Result<Option<SseEvent>, SseError> {
        loop {
            let Some((line_len, eol_len)) = self.find_line_end() else {
                if self.pending + self.buf.len() > self.max_event_bytes {
                    return Err(SseError::EventTooLarge {
                        limit: self.max_event_bytes,
                    });
                }
                return Ok(None);
            };
            let line = self.buf.split_to(line_len);
            self.buf.advance(eol_len);
            self.scanned = 0;
            self.pending += line_len + eol_len;
            if self.pending > self.max_event_bytes {
                return Err(SseError::EventTooLarge {
                    limit: self.max_event_bytes,
                });
            }
            if line.is_empty() {
                self.pending = 0;
                if let Some(event) = self.dispatch() {
                    return Ok(Some(event));
                }
                continue;
            }
            self.field(&line);
        }
    }

    /// Finds the end of the next line: its length and the length of its terminator.
    /// A lone `\r` at the very end of the buffer waits for the next chunk, which may
    /// start with the `\n` of a `\r\n` pair.
    fn find_line_end(&mut self) -> Option<(usize, usize)> {
        let bytes = &self.buf[..];
        let start = self.scanned;
        match bytes[start..]
            .iter()
            .position(|&b| b == b'\n' || b == b'\r')
        {
            None => {
                self.scanned = bytes.len();
                None
            }
            Some(offset) => {
                let at = start + offset;
                if bytes[at] == b'\n' {
                    return Some((at, 1));
                }
                match bytes.get(at + 1) {
                    Some(b'\n') => Some((at, 2)),
                    Some(_) => Some((at, 1)),
                    None => {
                        self.scanned = at;
                        None
                    }
                }
            }
        }
    }

    fn field(&mut self, line: &[u8]) {
        if line.first() == Some(&b':') {
            return;
        }
        let (name, value) = match line.iter().position(|&b| b == b':') {
            Some(colon) => {
                let value = &line[colon + 1..];
                (&line[..colon], value.strip_prefix(b" ").unwrap_or(value))
            }
            None => (line, &b""[..]),
        };
        match name {
            b"data" => {
                if self.has_data {
                    self.data.push(b'\n');
                }
                self.data.extend_from_slice(value);
                self.has_data = true;
            }
            b"event" => self.event = Some(String::from_utf8_lossy(value).into_owned()),
            _ => {}
        }
    }

    fn dispatch(&mut self) -> Option<SseEvent> {
        let event = self.event.take();
        // An event whose data is empty is not dispatched (`data:` keep-alives).
        if !std::mem::take(&mut self.has_data) || self.data.is_empty() {
            self.data.clear();
            return None;
        }
        let data = Bytes::from(std::mem::take(&mut self.data));
        Some(SseEvent { event, data })
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    fn all(parser: &mut SseParser) -> Vec<SseEvent> {
        let mut out = Vec::new();
        while let Some(event) = parser.next_event().unwrap() {
            out.push(event);
        }
        out
    }

    fn data(events: &[SseEvent]) -> Vec<&[u8]> {
        events.iter().map(|e| &e.data[..]).collect()
    }

    #[test]
    fn parses_events_split_at_every_byte() {
        let input = b"data: {\"a\":1}\n\n: comment\nevent: ping\ndata: x\ndata: y\r\n\r\ndata: [DONE]\r\r\n";
        for split in 1..input.len() {
            let mut parser = SseParser::new(1024);
            let mut events = Vec::new();
            for piece in input.chunks(split) {
                parser.push(piece);
                events.extend(all(&mut parser));
            }
            assert_eq!(
                data(&events),
                vec![&b"{\"a\":1}"[..], b"x\ny", b"[DONE]"],
                "split {split}"
            );
            assert_eq!(events[1].event.as_deref(), Some("ping"));
            assert_eq!(events[0].event, None);
        }
    }

    #[test]
    fn incomplete_event_is_not_dispatched() {
        let mut parser = SseParser::new(1024);
        parser.push(b"data: partial");
        assert_eq!(parser.next_event().unwrap(), None);
        parser.push(b"\n");
        assert_eq!(parser.next_event().unwrap(), None);
        parser.push(b"\n");
        assert_eq!(&parser.next_event().unwrap().unwrap().data[..], b"partial");
    }

    #[test]
    fn event_without_data_is_skipped() {
        let mut parser = SseParser::new(1024);
        parser.push(b"event: ping\n\ndata:\n\ndata:nospace\n\n");
        let events = all(&mut parser);
        assert_eq!(data(&events), vec![&b"nospace"[..]]);
        assert_eq!(events[0].event, None);
    }

    #[test]
    fn oversized_event_is_refused() {
        let mut parser = SseParser::new(16);
        parser.push(b"data: 0123456789abcdef");
        assert_eq!(
            parser.next_event(),
            Err(SseError::EventTooLarge { limit: 16 })
        );
        let mut parser = SseParser::new(16);
        parser.push(b"data: 0123\ndata: 456789abcdef\n");
        assert_eq!(
            parser.next_event(),
            Err(SseError::EventTooLarge { limit: 16 })
        );
    }
}
