//! Streamed responses: rendered events (server-sent events, or the pieces of Gemini's
//! JSON array) played back with the configured pacing, each written to the connection as
//! it is produced, and the stream faults applied.

use std::io;
use std::ops::Range;
use std::time::Duration;

use axum::body::Body;
use axum::http::{HeaderValue, header};
use axum::response::Response;
use bytes::Bytes;
use serde::Serialize;
use tokio::sync::watch;

use crate::error::MockError;
use crate::faults::{StreamFate, StreamFault};
use crate::insert_request_id;

/// The terminating event of an OpenAI stream.
pub(crate) const DONE: &[u8] = b"data: [DONE]\n\n";

/// The in-band failure OpenAI-style upstreams send in place of the rest of a stream.
pub(crate) const IN_BAND_ERROR: &[u8] = b"data: {\"error\":{\"message\":\"mock in-band failure\",\"type\":\"server_error\",\"code\":null,\"param\":null}}\n\n";

/// How long a cut stream waits, after its last event, before it fails.
const FLUSH_BEFORE_CUT: Duration = Duration::from_millis(20);

/// The content type of server-sent events.
pub(crate) const EVENT_STREAM: &str = "text/event-stream";

/// `data: <json>\n\n`.
pub(crate) fn data(value: &impl Serialize) -> Result<Bytes, MockError> {
    frame(b"data: ", value, b"\n\n")
}

/// `<before><json><after>`: one event, however the dialect frames it.
pub(crate) fn frame(
    before: &[u8],
    value: &impl Serialize,
    after: &[u8],
) -> Result<Bytes, MockError> {
    let mut buf = Vec::with_capacity(256);
    buf.extend_from_slice(before);
    serde_json::to_writer(&mut buf, value).map_err(MockError::internal)?;
    buf.extend_from_slice(after);
    Ok(Bytes::from(buf))
}

/// A whole stream, rendered, before pacing and faults.
#[derive(Debug)]
pub(crate) struct EventStream {
    /// Every event of a complete stream, in order, terminator included.
    pub events: Vec<Bytes>,
    /// The events that carry content (text or tool-call pieces).
    pub content: Range<usize>,
    /// What `--stream-error-rate` sends after the first content event, ending the stream.
    pub error_event: Bytes,
    /// The response's `content-type`.
    pub content_type: &'static str,
}

impl EventStream {
    /// An OpenAI event stream: its in-band error is [`IN_BAND_ERROR`].
    pub(crate) fn openai(events: Vec<Bytes>, content: Range<usize>) -> Self {
        Self {
            events,
            content,
            error_event: Bytes::from_static(IN_BAND_ERROR),
            content_type: EVENT_STREAM,
        }
    }
}

/// When the events go out.
#[derive(Clone, Debug)]
pub(crate) struct Pacing {
    /// The wait before the first content event.
    pub ttft: Duration,
    /// The wait before each later content event.
    pub interval: Option<Duration>,
    /// Turns true when the server stops waiting for open streams: a stream still waiting
    /// then ends at once, dropping its connection.
    pub stop: watch::Receiver<bool>,
}

impl EventStream {
    /// A `200 text/event-stream` response that plays the stream back as `fate` decides.
    pub(crate) fn into_response(
        self,
        pacing: Pacing,
        fate: StreamFate,
        request_id: &str,
    ) -> Response {
        let content_type = HeaderValue::from_static(self.content_type);
        let playback = Playback::new(self, pacing, fate);
        let body = Body::from_stream(futures_util::stream::unfold(playback, Playback::next));
        let mut response = Response::new(body);
        let headers = response.headers_mut();
        headers.insert(header::CONTENT_TYPE, content_type);
        headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-cache"));
        insert_request_id(headers, request_id);
        response
    }
}

/// The state of a stream being played back.
struct Playback {
    events: std::vec::IntoIter<Bytes>,
    /// Index of the next event.
    next: usize,
    content: Range<usize>,
    pacing: Pacing,
    /// What happens once the events run out.
    end: End,
}

/// How a stream's body ends once its events have gone out.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum End {
    /// The body ends.
    Clean,
    /// With an error: hyper drops the connection.
    Cut,
    /// Not at all: silence until the mock stops.
    Stall,
}

impl Playback {
    fn new(stream: EventStream, pacing: Pacing, fate: StreamFate) -> Self {
        let EventStream {
            mut events,
            content,
            error_event,
            content_type: _,
        } = stream;
        let first_content = content.start;
        let keep = |after: usize| first_content + content.len().min(after);
        let mut end = End::Clean;
        match fate {
            StreamFate::Complete => {}
            StreamFate::Cut => {
                events.truncate(first_content + content.len().div_ceil(2));
                end = End::Cut;
            }
            StreamFate::InBandError(after)
            | StreamFate::Set(StreamFault::InBandError { after }) => {
                events.truncate(keep(after));
                events.push(error_event);
            }
            StreamFate::Set(fault) => match fault {
                StreamFault::None | StreamFault::InBandError { .. } => {}
                StreamFault::CutAfter { after } => {
                    events.truncate(keep(after));
                    end = End::Cut;
                }
                StreamFault::StallAfter { after } => {
                    events.truncate(keep(after));
                    end = End::Stall;
                }
                StreamFault::NoTerminator { after } => events.truncate(keep(after)),
                StreamFault::BadJson { after } => {
                    events.truncate(keep(after));
                    events.push(Bytes::from_static(b"data: {\"choices\": [{\"delta\"\n\n"));
                }
                StreamFault::HugeEvent { after, bytes } => {
                    events.truncate(keep(after));
                    let mut event = Vec::with_capacity(bytes + 16);
                    event.extend_from_slice(b"data: \"");
                    event.resize(event.len() + bytes, b'x');
                    event.extend_from_slice(b"\"\n\n");
                    events.push(Bytes::from(event));
                }
            },
        }
        Self {
            events: events.into_iter(),
            next: 0,
            content,
            pacing,
            end,
        }
    }

    fn delay_before(&self, index: usize) -> Option<Duration> {
        if index == self.content.start {
            Some(self.pacing.ttft).filter(|d| !d.is_zero())
        } else if self.content.contains(&index) {
            self.pacing.interval
        } else {
            None
        }
    }

    async fn next(mut self) -> Option<(io::Result<Bytes>, Self)> {
        match self.events.next() {
            Some(event) => {
                if let Some(delay) = self.delay_before(self.next)
                    && !self.wait(delay).await
                {
                    return self.abort("mock server shutting down");
                }
                self.next += 1;
                Some((Ok(event), self))
            }
            // hyper drops the connection without the terminating chunk. It also drops
            // whatever it has not written yet: give it time to send what went before.
            None if self.end == End::Cut => {
                self.wait(FLUSH_BEFORE_CUT).await;
                self.abort("mock stream cut")
            }
            None if self.end == End::Stall => {
                let _ = self.pacing.stop.wait_for(|stop| *stop).await;
                self.abort("mock server shutting down")
            }
            None => None,
        }
    }

    /// Waits `delay`; false if the server stopped waiting for streams meanwhile.
    async fn wait(&mut self, delay: Duration) -> bool {
        tokio::select! {
            () = tokio::time::sleep(delay) => true,
            _ = self.pacing.stop.wait_for(|stop| *stop) => false,
        }
    }

    /// Fails the body, which makes hyper drop the connection; nothing follows.
    fn abort(mut self, why: &str) -> Option<(io::Result<Bytes>, Self)> {
        self.events = Vec::new().into_iter();
        self.end = End::Clean;
        Some((Err(io::Error::other(why.to_owned())), self))
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::panic)]
mod tests {
    use super::*;
    use futures_util::StreamExt;
    use tokio::time::Instant;

    /// prelude, three content events, finish, done.
    fn stream() -> EventStream {
        EventStream::openai(
            ["p", "c1", "c2", "c3", "f", "d"]
                .into_iter()
                .map(|s| Bytes::from_static(s.as_bytes()))
                .collect(),
            1..4,
        )
    }

    /// The items and the instants they arrived at, relative to the start.
    async fn play(pacing: Pacing, fate: StreamFate) -> Vec<(Result<String, String>, Duration)> {
        let start = Instant::now();
        futures_util::stream::unfold(Playback::new(stream(), pacing, fate), Playback::next)
            .map(|item| {
                (
                    item.map(|b| String::from_utf8(b.to_vec()).unwrap())
                        .map_err(|e| e.to_string()),
                    start.elapsed(),
                )
            })
            .collect()
            .await
    }

    fn pacing(ttft: u64, interval: Option<u64>) -> (watch::Sender<bool>, Pacing) {
        let (stop, stopped) = watch::channel(false);
        let pacing = Pacing {
            ttft: Duration::from_millis(ttft),
            interval: interval.map(Duration::from_millis),
            stop: stopped,
        };
        (stop, pacing)
    }

    fn items(played: &[(Result<String, String>, Duration)]) -> Vec<Result<&str, &str>> {
        played
            .iter()
            .map(|(item, _)| item.as_deref().map_err(String::as_str))
            .collect()
    }

    #[tokio::test(start_paused = true)]
    async fn complete_plays_everything_with_ttft_and_interval() {
        let (_stop, pacing) = pacing(100, Some(10));
        let played = play(pacing, StreamFate::Complete).await;
        assert_eq!(
            items(&played),
            [Ok("p"), Ok("c1"), Ok("c2"), Ok("c3"), Ok("f"), Ok("d")]
        );
        let at: Vec<u64> = played.iter().map(|(_, t)| t.as_millis() as u64).collect();
        assert_eq!(at, [0, 100, 110, 120, 120, 120]);
    }

    #[tokio::test(start_paused = true)]
    async fn cut_stops_after_half_the_content_with_an_error() {
        let (_stop, pacing) = pacing(0, None);
        let played = play(pacing, StreamFate::Cut).await;
        assert_eq!(
            items(&played),
            [Ok("p"), Ok("c1"), Ok("c2"), Err("mock stream cut")]
        );
    }

    #[tokio::test(start_paused = true)]
    async fn in_band_error_follows_the_first_content_and_ends_cleanly() {
        let (_stop, pacing) = pacing(0, None);
        let played = play(pacing, StreamFate::InBandError(1)).await;
        let error = std::str::from_utf8(IN_BAND_ERROR).unwrap();
        assert_eq!(items(&played), [Ok("p"), Ok("c1"), Ok(error)]);
    }

    #[tokio::test(start_paused = true)]
    async fn stop_ends_a_waiting_stream_with_an_error() {
        let (stop, pacing) = pacing(0, Some(1000));
        let stopper = tokio::spawn(async move {
            tokio::time::sleep(Duration::from_millis(1500)).await;
            stop.send_replace(true);
        });
        let played = play(pacing, StreamFate::Complete).await;
        stopper.await.unwrap();
        assert_eq!(
            items(&played),
            [
                Ok("p"),
                Ok("c1"),
                Ok("c2"),
                Err("mock server shutting down")
            ]
        );
        assert_eq!(played[3].1, Duration::from_millis(1500));
    }

    #[tokio::test(start_paused = true)]
    async fn a_set_fault_applies_after_that_many_content_events() {
        let fault = |fault| StreamFate::Set(fault);
        let (_stop, pacing) = pacing(0, None);
        let cut = play(pacing.clone(), fault(StreamFault::CutAfter { after: 0 })).await;
        assert_eq!(items(&cut), [Ok("p"), Err("mock stream cut")]);
        let ended = play(
            pacing.clone(),
            fault(StreamFault::NoTerminator { after: 2 }),
        )
        .await;
        assert_eq!(items(&ended), [Ok("p"), Ok("c1"), Ok("c2")]);
        let bad = play(pacing.clone(), fault(StreamFault::BadJson { after: 1 })).await;
        assert_eq!(
            items(&bad),
            [Ok("p"), Ok("c1"), Ok("data: {\"choices\": [{\"delta\"\n\n")]
        );
        let huge = fault(StreamFault::HugeEvent {
            after: 5,
            bytes: 2 << 20,
        });
        let huge = play(pacing.clone(), huge).await;
        assert_eq!(&items(&huge)[..4], [Ok("p"), Ok("c1"), Ok("c2"), Ok("c3")]);
        let event = huge[4].0.as_ref().unwrap();
        assert_eq!(event.len(), (2 << 20) + "data: \"\"\n\n".len());
        let in_band = play(pacing, fault(StreamFault::InBandError { after: 3 })).await;
        let error = std::str::from_utf8(IN_BAND_ERROR).unwrap();
        assert_eq!(
            items(&in_band),
            [Ok("p"), Ok("c1"), Ok("c2"), Ok("c3"), Ok(error)]
        );
    }

    #[tokio::test(start_paused = true)]
    async fn a_stalled_stream_stays_silent_until_the_mock_stops() {
        let (stop, pacing) = pacing(0, None);
        let stopper = tokio::spawn(async move {
            tokio::time::sleep(Duration::from_secs(60)).await;
            stop.send_replace(true);
        });
        let played = play(
            pacing,
            StreamFate::Set(StreamFault::StallAfter { after: 1 }),
        )
        .await;
        stopper.await.unwrap();
        assert_eq!(
            items(&played),
            [Ok("p"), Ok("c1"), Err("mock server shutting down")]
        );
        assert_eq!(played[2].1, Duration::from_secs(60));
    }

    #[test]
    fn data_frames_json() {
        let event = data(&serde_json::json!({"a": 1})).unwrap();
        assert_eq!(&event[..], b"data: {\"a\":1}\n\n");
    }
}
