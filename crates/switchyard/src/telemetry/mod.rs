//! Logging: the subscriber set-up and the one access-log line per request.

use std::io::{IsTerminal, Write as _};
use std::sync::{Arc, OnceLock};
use std::time::{Duration, Instant, SystemTime};

use switchyard_providers::openai::Usage;

use crate::routing::load::InFlight;
use tracing_appender::non_blocking::{NonBlocking, WorkerGuard};
use tracing_subscriber::EnvFilter;

use line::{Line, format_line, micros, with_line_buffer};

mod line;
pub mod metrics;

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
/// Lines are written by a background thread so a request never waits on a
/// `write` to stderr; the returned guard flushes what is queued when dropped,
/// so keep it alive until the process exits. Access lines bypass the
/// subscriber's formatter (see [`AccessLog`]) but go through the same writer
/// thread, filtered by the same `RUST_LOG` as target `switchyard::access`.
pub fn init(format: LogFormat) -> WorkerGuard {
    let (writer, guard) = tracing_appender::non_blocking::NonBlockingBuilder::default()
        .lossy(false)
        .buffered_lines_limit(LOG_QUEUE_LINES)
        // Lines queued together leave in one write; the queue's end flushes.
        .finish(std::io::BufWriter::with_capacity(
            LOG_WRITE_BUFFER,
            std::io::stderr(),
        ));
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

/// Where access lines go once [`init`] has run: the subscriber's own
/// non-blocking writer, so they interleave whole with every other line.
static ACCESS_SINK: OnceLock<AccessSink> = OnceLock::new();

/// The writer and format of access lines.
struct AccessSink {
    writer: NonBlocking,
    format: LogFormat,
}

impl AccessSink {
    /// Formats `line` stamped `now` and queues it in one write.
    fn write_line(&self, line: &Line<'_>, now: SystemTime) {
        with_line_buffer(|buf| {
            format_line(buf, self.format, now, line);
            // `NonBlocking` queues each write as one message; an error means
            // the writer thread is gone (shutdown), and the line with it.
            let mut writer = self.writer.clone();
            let _ = writer.write_all(buf);
        });
    }
}

/// The access-log target: `RUST_LOG=switchyard::access=off` silences the lines.
const ACCESS_TARGET: &str = "switchyard::access";

/// Whether the global filter lets access lines through.
fn access_enabled() -> bool {
    tracing::enabled!(target: ACCESS_TARGET, tracing::Level::INFO)
}

/// Bytes of log lines gathered into one write to stderr.
const LOG_WRITE_BUFFER: usize = 64 << 10;

/// Log lines queued for the writer thread before a request has to wait (none is dropped).
const LOG_QUEUE_LINES: usize = 64 * 1024;

/// What is known about one request; logged once when the request is over.
///
/// The line carries no prompt or completion text. When a response body is cut
/// because the client went away, the line is written when the body is dropped.
#[derive(Debug)]
pub struct AccessLog {
    request_id: String,
    endpoint: &'static str,
    model: Option<String>,
    provider: Option<Arc<str>>,
    upstream_model: Option<String>,
    stream: bool,
    started: Instant,
    ttft: Option<Duration>,
    usage: Option<Usage>,
    status: u16,
    done: bool,
    /// The serving deployment's in-flight count, released with the record.
    in_flight: Option<InFlight>,
}

impl AccessLog {
    /// Starts the record of a request that arrived at `started`.
    pub fn start_at(request_id: &str, endpoint: &'static str, started: Instant) -> Self {
        Self {
            request_id: request_id.to_owned(),
            endpoint,
            model: None,
            provider: None,
            upstream_model: None,
            stream: false,
            started,
            ttft: None,
            usage: None,
            status: 0,
            done: false,
            in_flight: None,
        }
    }

    /// Keeps the serving deployment counted as busy until the response ends
    /// (the record is written, or dropped).
    pub fn hold(&mut self, in_flight: InFlight) {
        self.in_flight = Some(in_flight);
    }

    /// The public model asked for, and whether the client streams.
    pub fn request(&mut self, model: &str, stream: bool) {
        self.model = Some(model.to_owned());
        self.stream = stream;
    }

    /// The deployment that serves the request.
    pub fn route(&mut self, provider: &Arc<str>, upstream_model: &str) {
        self.provider = Some(provider.clone());
        self.upstream_model = Some(upstream_model.to_owned());
    }

    /// The status sent to the client.
    pub fn status(&mut self, status: u16) {
        self.status = status;
    }

    /// Marks the first content sent to the client (once).
    pub fn first_token(&mut self) {
        if self.ttft.is_none() {
            self.ttft = Some(self.started.elapsed());
        }
    }

    /// The token counts the provider reported.
    pub fn usage(&mut self, usage: Usage) {
        self.usage = Some(usage);
    }

    /// Writes the line; `outcome` is `ok` or a bounded error kind.
    pub fn finish(mut self, outcome: &str) {
        self.write(outcome, None);
    }

    /// Writes the line of a failed request with what went wrong (never a secret:
    /// provider texts are scrubbed before they get here).
    pub fn fail(mut self, outcome: &str, detail: &str) {
        self.write(outcome, Some(detail));
    }

    /// Writes the line once: formatted here into a reused buffer and queued on
    /// the log writer thread in one piece, when `RUST_LOG` lets target
    /// `switchyard::access` through at `info`.
    fn write(&mut self, outcome: &str, error: Option<&str>) {
        if self.done {
            return;
        }
        self.done = true;
        let Some(sink) = ACCESS_SINK.get() else {
            self.write_event(outcome, error);
            return;
        };
        if !access_enabled() {
            return;
        }
        let usage = self.usage.unwrap_or_default();
        let line = Line {
            request_id: &self.request_id,
            endpoint: self.endpoint,
            model: self.model.as_deref().unwrap_or("-"),
            provider: self.provider.as_deref().unwrap_or("-"),
            upstream_model: self.upstream_model.as_deref().unwrap_or("-"),
            stream: self.stream,
            status: self.status,
            outcome,
            error,
            latency_us: micros(self.started.elapsed()),
            ttft_us: self.ttft.map(micros),
            prompt_tokens: usage.prompt_tokens,
            completion_tokens: usage.completion_tokens,
        };
        sink.write_line(&line, SystemTime::now());
    }

    /// The line as a `tracing` event, when [`init`] has not installed the sink
    /// (unit tests, embedders with their own subscriber).
    fn write_event(&self, outcome: &str, error: Option<&str>) {
        let latency_ms = self.started.elapsed().as_secs_f64() * 1000.0;
        let ttft_ms = self.ttft.map(|t| t.as_secs_f64() * 1000.0);
        let usage = self.usage.unwrap_or_default();
        tracing::info!(
            target: ACCESS_TARGET,
            request_id = %self.request_id,
            endpoint = self.endpoint,
            model = self.model.as_deref().unwrap_or("-"),
            provider = self.provider.as_deref().unwrap_or("-"),
            upstream_model = self.upstream_model.as_deref().unwrap_or("-"),
            stream = self.stream,
            status = self.status,
            outcome,
            error,
            latency_ms,
            ttft_ms,
            prompt_tokens = usage.prompt_tokens,
            completion_tokens = usage.completion_tokens,
            "request"
        );
    }
}

impl Drop for AccessLog {
    fn drop(&mut self) {
        if std::thread::panicking() {
            // Dropped while a handler or relay unwinds: the client gets a 500
            // (or an error event), and the line says why.
            self.status(500);
            self.write("internal_error", Some("the request handler panicked"));
        } else {
            self.write("client_disconnected", None);
        }
    }
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
    fn sink_queues_whole_lines_for_the_writer_thread() {
        #[derive(Clone, Default)]
        struct Shared(Arc<std::sync::Mutex<Vec<Vec<u8>>>>);
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
        let (writer, guard) = tracing_appender::non_blocking::NonBlockingBuilder::default()
            .lossy(false)
            .finish(out.clone());
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
        let writes = out.0.lock().unwrap().clone();
        assert_eq!(writes.len(), 2);
        assert_eq!(writes[0], format(LogFormat::Text, &sample()).as_bytes());
        assert!(
            writes[1].starts_with(b"2026-11-22T01:01:01.123456Z  INFO request request_id=second ")
        );
        assert!(writes[1].ends_with(b" completion_tokens=16\n"));
    }
}
