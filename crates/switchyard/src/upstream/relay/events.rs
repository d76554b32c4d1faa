//! Server-sent events as the relay passes them on. (Its own error events
//! are rendered by `crate::error::render`, as every error the client sees.)

use bytes::BytesMut;

/// Appends `[event: NAME]` and `data` as one event.
pub(super) fn push_event(out: &mut BytesMut, event: Option<&str>, data: &[u8]) {
    if let Some(name) = event {
        out.extend_from_slice(b"event: ");
        out.extend_from_slice(name.as_bytes());
        out.extend_from_slice(b"\n");
    }
    out.reserve(data.len() + 8);
    // A data field cannot hold a newline: multi-line data goes in several fields.
    let mut rest = data;
    while let Some(at) = memchr::memchr(b'\n', rest) {
        out.extend_from_slice(b"data: ");
        out.extend_from_slice(&rest[..at]);
        out.extend_from_slice(b"\n");
        rest = &rest[at + 1..];
    }
    out.extend_from_slice(b"data: ");
    out.extend_from_slice(rest);
    out.extend_from_slice(b"\n\n");
}
