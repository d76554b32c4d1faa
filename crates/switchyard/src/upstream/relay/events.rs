//! Server-sent events as the relay writes them: passed-on events and its own
//! error events, in each dialect.

use bytes::{Bytes, BytesMut};
use switchyard_providers::anthropic;
use switchyard_providers::openai::{ErrorBody, ErrorObject};
use switchyard_providers::translate::Fault;

/// `data: {"error": …}\n\n`
pub(super) fn error_event(error: &ErrorObject) -> Bytes {
    let body = ErrorBody {
        error: error.clone(),
    };
    let mut out = b"data: ".to_vec();
    // Serializing plain strings cannot fail.
    let _ = serde_json::to_writer(&mut out, &body);
    out.extend_from_slice(b"\n\n");
    Bytes::from(out)
}

/// `event: error` with Anthropic's error body.
pub(super) fn anthropic_error_event(fault: &Fault) -> Bytes {
    let mut out = BytesMut::new();
    push_event(
        &mut out,
        Some("error"),
        &anthropic::error_body(fault.status, &fault.error),
    );
    out.freeze()
}

/// Writes one event named `event` (if named) carrying `data`.
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
