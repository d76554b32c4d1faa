//! Golden tests of every translation direction, against the fixtures in
//! `tests/fixtures/<direction>/<case>/`.
//!
//! A case holds any of these pairs (input → expected output):
//!
//! | input | expected | what is checked |
//! | --- | --- | --- |
//! | `request.json` | `upstream_request.json` (+ `dropped.json`) | the request as the provider gets it |
//! | `upstream_response.json` | `response.json` | the answer as the client gets it |
//! | `upstream_stream.sse` | `stream.sse` | a stream transcript, event by event |
//! | `upstream_error.json` (+ `status.txt`) | `error.json` | an error as the client gets it |
//!
//! JSON is compared as values (key order and spacing do not matter); streams
//! are compared event by event (event name and JSON data). Run with
//! `UPDATE_GOLDEN=1` to write the expected files from the code's output, then
//! read the diff before committing it.
//!
//! Besides, `replay` checks that a stream adds up to one completion and that
//! the completion, played back as a stream, adds up to itself again (how a
//! stored answer is replayed).

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, missing_docs)]

mod anthropic;
mod gemini;
mod replay;
mod roundtrip;

use std::path::{Path, PathBuf};

use bytes::BytesMut;
use serde_json::Value;
use switchyard_providers::openai::chat::ChatChunk;
use switchyard_providers::sse::SseParser;
use switchyard_providers::translate::{Progress, StreamDecoder, StreamEncoder, StreamError};

/// The case folders of one direction, sorted.
pub fn cases(direction: &str) -> Vec<PathBuf> {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures")
        .join(direction);
    let mut cases: Vec<PathBuf> = std::fs::read_dir(&root)
        .unwrap_or_else(|e| panic!("{}: {e}", root.display()))
        .map(|entry| entry.unwrap().path())
        .filter(|path| path.is_dir())
        .collect();
    cases.sort();
    assert!(!cases.is_empty(), "no cases in {}", root.display());
    cases
}

/// The bytes of `case/name`, when the case has that file.
pub fn input(case: &Path, name: &str) -> Option<Vec<u8>> {
    std::fs::read(case.join(name)).ok()
}

fn updating() -> bool {
    std::env::var_os("UPDATE_GOLDEN").is_some()
}

/// Compares `actual` with the JSON in `case/name` (or writes it there).
pub fn check_json(case: &Path, name: &str, actual: &Value) {
    let path = case.join(name);
    if updating() {
        let mut text = serde_json::to_string_pretty(actual).unwrap();
        text.push('\n');
        std::fs::write(&path, text).unwrap();
        return;
    }
    let expected: Value = read_json(&path);
    assert_eq!(
        actual,
        &expected,
        "{}: got\n{}",
        path.display(),
        serde_json::to_string_pretty(actual).unwrap()
    );
}

/// The JSON in `path`.
pub fn read_json(path: &Path) -> Value {
    let text = std::fs::read(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    serde_json::from_slice(&text).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

/// Compares the event stream `actual` with `case/name` (or writes it there).
pub fn check_sse(case: &Path, name: &str, actual: &[u8]) {
    let path = case.join(name);
    if updating() {
        std::fs::write(&path, actual).unwrap();
        return;
    }
    let expected = std::fs::read(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    assert_eq!(
        events(actual),
        events(&expected),
        "{}: got\n{}",
        path.display(),
        String::from_utf8_lossy(actual)
    );
}

/// `(event name, data)` of every event, data parsed as JSON when it is JSON.
pub fn events(stream: &[u8]) -> Vec<(Option<String>, Value)> {
    let mut parser = SseParser::new(usize::MAX);
    let mut events = Vec::new();
    parser
        .feed(stream, |event| {
            let data = serde_json::from_slice(event.data).unwrap_or_else(|_| {
                Value::String(String::from_utf8_lossy(event.data).into_owned())
            });
            events.push((event.event.map(str::to_owned), data));
            true
        })
        .unwrap();
    events
}

/// Runs `stream` through `decoder` and `encoder` as the gateway does, the
/// upstream bytes arriving a few at a time (so no event is seen whole before
/// its last byte arrived), and returns what the client gets.
pub fn translate_stream(
    stream: &[u8],
    decoder: &mut dyn StreamDecoder,
    encoder: &mut dyn StreamEncoder,
) -> Vec<u8> {
    let mut parser = SseParser::new(1 << 20);
    let mut out = BytesMut::new();
    let mut chunks: Vec<ChatChunk> = Vec::new();
    let mut outcome: Option<Result<(), StreamError>> = None;
    for piece in stream.chunks(7) {
        if outcome.is_some() {
            break;
        }
        parser
            .feed(piece, |event| {
                match decoder.event(event, &mut chunks) {
                    Ok(Progress::More) => {}
                    Ok(Progress::Done) => outcome = Some(Ok(())),
                    Err(e) => outcome = Some(Err(e)),
                }
                for chunk in chunks.drain(..) {
                    encoder.chunk(&chunk, &mut out);
                }
                outcome.is_none()
            })
            .unwrap();
    }
    let outcome = outcome.unwrap_or_else(|| decoder.end(&mut chunks));
    for chunk in chunks.drain(..) {
        encoder.chunk(&chunk, &mut out);
    }
    match outcome {
        Ok(()) => encoder.done(&mut out),
        Err(StreamError::Upstream(fault)) => encoder.error(&fault, &mut out),
        Err(StreamError::Malformed(detail)) => {
            let fault = switchyard_providers::translate::Fault {
                status: 502,
                error: switchyard_providers::openai::ErrorObject {
                    message: detail,
                    kind: Some("server_error".to_owned()),
                    param: None,
                    code: Some("upstream_error".to_owned()),
                },
            };
            encoder.error(&fault, &mut out);
        }
    }
    out.to_vec()
}
