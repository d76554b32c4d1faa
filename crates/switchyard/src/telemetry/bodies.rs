//! `telemetry.log_bodies`: each proxied request's prompt and answer in one
//! more log line (target `switchyard::bodies`), secrets redacted, each body
//! cut at `telemetry.log_bodies_max`.
//!
//! - [`Bodies`]: what a request keeps of its bodies while it goes, on its
//!   record (only when the feature is on: otherwise no request has one);
//! - [`BodyLog`]: the consumer that writes the line as the request ends;
//! - [`mod@excerpt`]: a kept body as the line shows it, redacted and cut;
//! - [`redact`]: where the secrets in a body's text are;
//! - [`mod@line`]: the line's fields, in the access line's format;
//! - [`recent`]: the last requests' bodies, for the dashboard's request pages.
//!
//! Nothing here runs with the feature off: the pipeline makes no [`Bodies`],
//! and the consumer is not registered.

mod excerpt;
mod line;
pub mod recent;
mod redact;

use std::sync::Arc;
use std::time::SystemTime;

use super::{ACCESS_SINK, ErrorType, request_id};
use crate::request::{Consumer, RequestRecord};
use excerpt::excerpt;
use line::BodiesLine;

/// The log target of the lines: `RUST_LOG=switchyard::bodies=off` silences them.
const BODIES_TARGET: &str = "switchyard::bodies";

/// Bytes kept past `log_bodies_max`, so that a secret that begins before the
/// cut is seen long enough to be known (and redacted whole).
const LOOKAHEAD: usize = 256;

/// What a request keeps of its bodies for the log: the first
/// `log_bodies_max` bytes of each (and a little more), and their full sizes.
#[derive(Debug, Clone)]
pub struct Bodies {
    /// Bytes of each body shown at most.
    max: usize,
    /// The request body, as the client sent it.
    request: Kept,
    /// The answer, as the client got it: a JSON body, or a stream's events.
    answer: Kept,
}

impl Bodies {
    /// Keeps `request` (the client's body), to show at most `max` bytes of each body.
    pub fn new(request: &[u8], max: usize) -> Self {
        let mut bodies = Self {
            max,
            request: Kept::default(),
            answer: Kept::default(),
        };
        bodies.request.add(request, bodies.limit());
        bodies
    }

    /// Keeps `bytes`, the next part of the answer sent to the client.
    pub fn answered(&mut self, bytes: &[u8]) {
        let limit = self.limit();
        self.answer.add(bytes, limit);
    }

    /// The request body as shown: redacted, cut.
    pub fn request_shown(&self) -> String {
        self.request.shown(self.max)
    }

    /// The answer as shown, when one was sent: redacted, cut.
    pub fn answer_shown(&self) -> Option<String> {
        (self.answer.total > 0).then(|| self.answer.shown(self.max))
    }

    /// Bytes of a body kept: those shown, and the look-ahead.
    fn limit(&self) -> usize {
        self.max.saturating_add(LOOKAHEAD)
    }
}

/// The start of one body, and how long it was.
#[derive(Debug, Clone, Default)]
struct Kept {
    bytes: Vec<u8>,
    total: usize,
}

impl Kept {
    /// Adds `part`, keeping at most `limit` bytes in all.
    fn add(&mut self, part: &[u8], limit: usize) {
        self.total += part.len();
        let room = limit.saturating_sub(self.bytes.len()).min(part.len());
        self.bytes.extend_from_slice(&part[..room]);
    }

    /// The body as the line shows it: redacted, cut at `max` bytes.
    fn shown(&self, max: usize) -> String {
        excerpt(&self.bytes, self.total, max)
    }
}

/// The bodies log: one line per proxied request whose body was read, with
/// its request id, endpoint, route, error type, and both bodies redacted
/// (see the module); the same bodies are kept in `recent` for the
/// dashboard. Registered only when `telemetry.log_bodies` is on.
#[derive(Debug, Clone)]
pub struct BodyLog {
    /// The last requests' bodies.
    pub recent: Arc<recent::RecentBodies>,
}

impl BodyLog {
    /// A bodies log that keeps the last `recent_bytes` of bodies (each
    /// already cut at `telemetry.log_bodies_max`) for the dashboard.
    pub fn new(recent_bytes: usize) -> Self {
        Self {
            recent: Arc::new(recent::RecentBodies::new(recent_bytes)),
        }
    }
}

impl Consumer for BodyLog {
    fn consume(&self, record: &RequestRecord) {
        let Some(bodies) = record.bodies.as_deref() else {
            return;
        };
        let request = bodies.request_shown();
        let answer = bodies.answer_shown();
        let sink = ACCESS_SINK.get();
        if sink.is_none() || tracing::enabled!(target: BODIES_TARGET, tracing::Level::INFO) {
            self.write(record, &request, answer.as_deref(), sink);
        }
        self.recent.keep(recent::Shown {
            request_id: request_id(record).to_owned(),
            key_id: record.principal.key_id(),
            request,
            answer,
        });
    }
}

impl BodyLog {
    /// Writes the line of `record`'s bodies.
    fn write(
        &self,
        record: &RequestRecord,
        request: &str,
        answer: Option<&str>,
        sink: Option<&super::AccessSink>,
    ) {
        let line = BodiesLine {
            request_id: request_id(record),
            endpoint: record.endpoint,
            route: record.route.as_ref().and_then(|r| r.to_str().ok()),
            error_type: ErrorType::of(record).map(ErrorType::as_str),
            request,
            response: answer,
        };
        match sink {
            Some(sink) => {
                let now = SystemTime::now();
                sink.write(|buf, format| line.format(buf, format, now));
            }
            // No sink installed (unit tests, embedders with their own
            // subscriber): an event, as for the access line.
            None => tracing::info!(
                target: BODIES_TARGET,
                request_id = line.request_id,
                endpoint = line.endpoint,
                route = line.route,
                error_type = line.error_type,
                request = line.request,
                response = line.response,
                "bodies"
            ),
        }
    }
}

#[cfg(test)]
mod tests;
