//! Logging and metrics: the subscriber set-up, the one access-log line per
//! request (and its bodies line, when `telemetry.log_bodies` is on), the
//! metric registry, and the per-request metrics.

use std::io::IsTerminal;
use std::sync::OnceLock;
use std::time::SystemTime;

use crate::request::{Consumer, RequestRecord};
use tracing_subscriber::EnvFilter;

use line::{Line, format_line, micros};
use log_writer::LogWriter;

pub mod bodies;
mod error_type;
mod line;
mod log_writer;
pub mod metrics;
mod requests;
pub mod traces;

pub use bodies::{Bodies, BodyLog};
pub use error_type::ErrorType;
pub use log_writer::{Delivery, LogGuard};
pub use requests::{ModelMeter, RequestMetrics, UpstreamMeter};

/// How log lines are written.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum LogFormat {
    /// Human-readable lines.
    Text,
    /// One JSON object per line.
    Json,
}

/// Installs the global subscriber: stderr, level from `RUST_LOG` (default `info`).
///
/// [`Delivery::Batched`], lines are written in batches by a background
/// thread (see [`log_writer`]), so a request never waits on a `write` to
/// stderr nor wakes a thread; the returned guard writes what is left when
/// dropped, so keep it alive until the process exits. Access lines bypass the
/// subscriber's formatter (see [`AccessLog`]) but go through the same
/// writer, filtered by the same `RUST_LOG` as target `switchyard::access`;
/// so do bodies lines ([`BodyLog`]), as target `switchyard::bodies`.
pub fn init(format: LogFormat, delivery: Delivery) -> LogGuard {
    let (writer, guard) = LogWriter::new(delivery, std::io::stderr());
    let access_writer = writer.clone();
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info"));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(writer)
        .with_ansi(std::io::stderr().is_terminal())
        .with_target(false);
    let installed = match format {
        LogFormat::Text => builder.try_init(),
        LogFormat::Json => builder
            .json()
            .flatten_event(true)
            .with_current_span(false)
            .try_init(),
    };
    // Only when our subscriber is the global one: otherwise access lines keep
    // going to whatever subscriber was installed first, as events.
    if installed.is_ok() {
        let _ = ACCESS_SINK.set(AccessSink {
            writer: access_writer,
            format,
        });
    }
    guard
}

/// Where access and bodies lines go once [`init`] has run: the subscriber's
/// own non-blocking writer, so they interleave whole with every other line.
static ACCESS_SINK: OnceLock<AccessSink> = OnceLock::new();

/// The writer and format of access and bodies lines.
struct AccessSink {
    writer: LogWriter,
    format: LogFormat,
}

impl AccessSink {
    /// Formats `line` stamped `now` into the log writer's buffer.
    fn write_line(&self, line: &Line<'_>, now: SystemTime) {
        self.write(|buf, format| format_line(buf, format, now, line));
    }

    /// Appends the line `format` writes (in the sink's format), whole.
    fn write(&self, format: impl FnOnce(&mut Vec<u8>, LogFormat)) {
        self.writer.append(|buf| format(buf, self.format));
    }
}

/// The access-log target: `RUST_LOG=switchyard::access=off` silences the lines.
const ACCESS_TARGET: &str = "switchyard::access";

/// Whether the global filter lets access lines through.
fn access_enabled() -> bool {
    tracing::enabled!(target: ACCESS_TARGET, tracing::Level::INFO)
}

/// The access log: one line per request, the first consumer of every
/// [`RequestRecord`]. The line carries no prompt or completion text (those
/// are the [`BodyLog`]'s, when it is on).
/// Probes (`/health`, `/ready`, `/metrics`) come every few seconds: their
/// lines are written at debug level only.
#[derive(Debug, Clone, Copy, Default)]
pub struct AccessLog;

impl Consumer for AccessLog {
    fn consume(&self, record: &RequestRecord) {
        if matches!(record.endpoint, "health" | "ready" | "metrics") {
            tracing::debug!(
                target: ACCESS_TARGET,
                request_id = record.id.to_str().unwrap_or("-"),
                endpoint = record.endpoint,
                status = record.status,
                outcome = record.outcome(),
                "request"
            );
            return;
        }
        write_record(record);
    }
}

/// Writes the line of `record`: formatted here straight into the log
/// writer's buffer of this thread, when `RUST_LOG` lets target
/// `switchyard::access` through at `info`.
fn write_record(record: &RequestRecord) {
    let Some(sink) = ACCESS_SINK.get() else {
        write_event(record);
        return;
    };
    if !access_enabled() {
        return;
    }
    let attempt_errors = attempt_errors(record);
    let usage = record.usage.unwrap_or_default();
    let served = record.served_by.as_ref();
    let line = Line {
        request_id: request_id(record),
        endpoint: record.endpoint,
        model: record.model.as_deref().unwrap_or("-"),
        provider: served.map_or("-", |s| &s.provider),
        upstream_model: served.map_or("-", |s| &s.upstream_model),
        stream: record.stream,
        status: record.status,
        outcome: record.outcome(),
        error_type: ErrorType::of(record).map(ErrorType::as_str),
        error: error_detail(record),
        attempt_errors: attempt_errors.as_deref(),
        latency_us: micros(record.latency),
        ttft_us: record.ttft.map(micros),
        prompt_tokens: usage.prompt_tokens,
        completion_tokens: usage.completion_tokens,
        cache: record.cache.map(crate::cache::Status::as_str),
        saved_micros: record.saved_micros,
        route: record.route.as_ref().and_then(|r| r.to_str().ok()),
    };
    sink.write_line(&line, SystemTime::now());
}

/// The request id as text (`-` for one that is not UTF-8).
fn request_id(record: &RequestRecord) -> &str {
    std::str::from_utf8(record.id.as_bytes()).unwrap_or("-")
}

/// The error's detail, when it has one.
fn error_detail(record: &RequestRecord) -> Option<&str> {
    record
        .error
        .as_ref()
        .map(|e| e.detail.as_str())
        .filter(|d| !d.is_empty())
}

/// `deployment=outcome: error; …` of the failed attempts, when one failed
/// and the request was not served (a served request's route header tells
/// its retries; the errors are what a failed request's operator needs).
fn attempt_errors(record: &RequestRecord) -> Option<String> {
    if record.failed_attempts.is_empty() || record.error.is_none() {
        return None;
    }
    let mut text = String::new();
    for attempt in &record.failed_attempts {
        if !text.is_empty() {
            text.push_str("; ");
        }
        text.push_str(&attempt.deployment);
        text.push('=');
        text.push_str(attempt.outcome);
        text.push_str(": ");
        text.push_str(&attempt.detail);
    }
    Some(text)
}

/// The line as a `tracing` event, when [`init`] has not installed the sink
/// (unit tests, embedders with their own subscriber).
fn write_event(record: &RequestRecord) {
    let latency_ms = record.latency.as_secs_f64() * 1000.0;
    let ttft_ms = record.ttft.map(|t| t.as_secs_f64() * 1000.0);
    let usage = record.usage.unwrap_or_default();
    let served = record.served_by.as_ref();
    tracing::info!(
        target: ACCESS_TARGET,
        request_id = request_id(record),
        endpoint = record.endpoint,
        model = record.model.as_deref().unwrap_or("-"),
        provider = served.map_or("-", |s| &*s.provider),
        upstream_model = served.map_or("-", |s| s.upstream_model.as_str()),
        stream = record.stream,
        status = record.status,
        outcome = record.outcome(),
        error_type = ErrorType::of(record).map(ErrorType::as_str),
        error = error_detail(record),
        attempt_errors = attempt_errors(record),
        latency_ms,
        ttft_ms,
        prompt_tokens = usage.prompt_tokens,
        completion_tokens = usage.completion_tokens,
        "request"
    );
}

#[cfg(test)]
mod tests {
    use super::line::tests::{at, format, sample};
    use super::*;

    #[test]
    fn enabled_follows_the_env_filter() {
        use tracing_subscriber::layer::SubscriberExt as _;
        let enabled = |directives: &str| {
            let subscriber = tracing_subscriber::registry().with(EnvFilter::new(directives));
            tracing::subscriber::with_default(subscriber, access_enabled)
        };
        assert!(enabled("info"));
        assert!(enabled("debug"));
        assert!(!enabled("warn"));
        assert!(!enabled("info,switchyard::access=off"));
        assert!(!enabled("info,switchyard=warn"));
        assert!(enabled("warn,switchyard::access=info"));
        assert!(enabled("off,switchyard=info"));
        assert!(enabled("info"));
    }

    #[test]
    fn sink_appends_whole_lines_for_the_writer_thread() {
        #[derive(Clone, Default)]
        struct Shared(std::sync::Arc<std::sync::Mutex<Vec<Vec<u8>>>>);
        impl std::io::Write for Shared {
            fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
                self.0.lock().unwrap().push(buf.to_vec());
                Ok(buf.len())
            }
            fn flush(&mut self) -> std::io::Result<()> {
                Ok(())
            }
        }
        let out = Shared::default();
        let (writer, guard) = LogWriter::start(out.clone());
        let sink = AccessSink {
            writer,
            format: LogFormat::Text,
        };
        sink.write_line(&sample(), at());
        sink.write_line(
            &Line {
                request_id: "second",
                ..sample()
            },
            at(),
        );
        drop(guard);
        // Both lines leave in one write, whole.
        let writes = out.0.lock().unwrap().clone();
        assert_eq!(writes.len(), 1);
        let text = String::from_utf8(writes[0].clone()).unwrap();
        let lines: Vec<&str> = text.split_inclusive('\n').collect();
        assert_eq!(lines.len(), 2);
        assert_eq!(lines[0], format(LogFormat::Text, &sample()));
        assert!(
            lines[1].starts_with("2026-11-22T01:01:01.123456Z  INFO request request_id=second ")
        );
        assert!(lines[1].ends_with(" completion_tokens=16\n"));
    }
}
