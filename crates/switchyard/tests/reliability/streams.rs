//! A streamed answer read as a client reads it: each event with the time it
//! arrived, and how the body ended.

use std::time::{Duration, Instant};

use futures_util::StreamExt;
use serde_json::Value;
use switchyard_providers::sse::SseParser;

/// What a client read of a streamed answer.
#[derive(Debug)]
pub struct Read {
    /// The status.
    pub status: u16,
    /// Each event's data, with when it arrived after the request was sent.
    pub events: Vec<(Duration, String)>,
    /// The body ended with its terminator (not cut, not timed out).
    pub clean_end: bool,
    /// When the body ended, after the request was sent.
    pub ended: Duration,
}

impl Read {
    /// The events that carry content (a chunk with some `delta.content`).
    pub fn content(&self) -> usize {
        self.json()
            .filter(|event| {
                event["choices"][0]["delta"]["content"]
                    .as_str()
                    .is_some_and(|text| !text.is_empty())
            })
            .count()
    }

    /// Whether the last event is `[DONE]`.
    pub fn done(&self) -> bool {
        self.events.last().is_some_and(|(_, data)| data == "[DONE]")
    }

    /// When the last content event arrived.
    pub fn last_content(&self) -> Duration {
        self.events
            .iter()
            .filter(|(_, data)| {
                data.contains("\"content\":\"") && !data.contains("\"content\":\"\"")
            })
            .map(|(at, _)| *at)
            .next_back()
            .unwrap_or(Duration::ZERO)
    }

    /// The error events, and whether each is a well-formed OpenAI error
    /// (an `error` object with a message and a type).
    pub fn errors(&self) -> Vec<bool> {
        self.events
            .iter()
            .filter(|(_, data)| data.contains("\"error\""))
            .map(|(_, data)| {
                serde_json::from_str::<Value>(data).is_ok_and(|event| {
                    event["error"]["message"].is_string() && event["error"]["type"].is_string()
                })
            })
            .collect()
    }

    /// When the first error event arrived.
    pub fn first_error(&self) -> Option<Duration> {
        self.events
            .iter()
            .find(|(_, data)| data.contains("\"error\""))
            .map(|(at, _)| *at)
    }

    fn json(&self) -> impl Iterator<Item = Value> + '_ {
        self.events
            .iter()
            .filter_map(|(_, data)| serde_json::from_str(data).ok())
    }
}

/// Sends `request` and reads its whole event stream, for at most `limit`.
pub async fn read(request: reqwest::RequestBuilder, limit: Duration) -> Read {
    let sent = Instant::now();
    let Ok(response) = request.send().await else {
        // No answer at all (refused, reset): status 0, no event.
        return Read {
            status: 0,
            events: Vec::new(),
            clean_end: false,
            ended: sent.elapsed(),
        };
    };
    let status = response.status().as_u16();
    let mut body = response.bytes_stream();
    let mut parser = SseParser::new(16 << 20);
    let mut events = Vec::new();
    let mut clean_end = false;
    while let Ok(next) = tokio::time::timeout_at((sent + limit).into(), body.next()).await {
        match next {
            Some(Ok(chunk)) => {
                let at = sent.elapsed();
                let _ = parser.feed(&chunk, |event| {
                    events.push((at, String::from_utf8_lossy(event.data).into_owned()));
                    true
                });
            }
            Some(Err(_)) => break,
            None => {
                clean_end = true;
                break;
            }
        }
    }
    Read {
        status,
        events,
        clean_end,
        ended: sent.elapsed(),
    }
}
