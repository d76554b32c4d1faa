//! Logging: the subscriber set-up and the one access-log line per request.

use std::io::IsTerminal;
use std::sync::Arc;
use std::time::{Duration, Instant};

use switchyard_providers::openai::Usage;
use tracing_appender::non_blocking::WorkerGuard;
use tracing_subscriber::EnvFilter;

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
/// so keep it alive until the process exits.
pub fn init(format: LogFormat) -> WorkerGuard {
    let (writer, guard) = tracing_appender::non_blocking::NonBlockingBuilder::default()
        .lossy(false)
        .buffered_lines_limit(LOG_QUEUE_LINES)
        // Lines queued together leave in one write; the queue's end flushes.
        .finish(std::io::BufWriter::with_capacity(
            LOG_WRITE_BUFFER,
            std::io::stderr(),
        ));
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info"));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(writer)
        .with_ansi(std::io::stderr().is_terminal())
        .with_target(false);
    let _ = match format {
        LogFormat::Text => builder.try_init(),
        LogFormat::Json => builder
            .json()
            .flatten_event(true)
            .with_current_span(false)
            .try_init(),
    };
    guard
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
}

impl AccessLog {
    /// Starts the record of a request now.
    pub fn start(request_id: &str, endpoint: &'static str) -> Self {
        Self::start_at(request_id, endpoint, Instant::now())
    }

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
        }
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

    fn write(&mut self, outcome: &str, error: Option<&str>) {
        if self.done {
            return;
        }
        self.done = true;
        let latency_ms = self.started.elapsed().as_secs_f64() * 1000.0;
        let ttft_ms = self.ttft.map(|t| t.as_secs_f64() * 1000.0);
        let usage = self.usage.unwrap_or_default();
        tracing::info!(
            target: "switchyard::access",
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
        self.write("client_disconnected", None);
    }
}
