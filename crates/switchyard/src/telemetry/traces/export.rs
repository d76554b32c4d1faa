//! The exporter task: every `flush_interval` (or as soon as a batch is full)
//! it builds the queued requests' spans and posts them to the collector as
//! one OTLP/HTTP protobuf export, tried again on the failures the OTLP
//! specification calls retryable (no answer, 429, 502, 503, 504), honouring
//! `retry-after`.

use std::time::Duration;

use axum::http::{HeaderMap, HeaderName, HeaderValue, StatusCode, header};
use bytes::Bytes;
use metrics::Counter;
use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceResponse;
use opentelemetry_proto::tonic::common::v1::InstrumentationScope;
use opentelemetry_proto::tonic::resource::v1::Resource;
use opentelemetry_proto::tonic::trace::v1::Span;
use opentelemetry_sdk::trace::{RandomIdGenerator, Sampler};
use prost::Message;
use secrecy::ExposeSecret;
use tokio::sync::mpsc;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

use super::{Traced, Tracer, span};
use crate::config::Traces;
use crate::telemetry::metrics::Metrics;

/// Tries of one export after the first, and the first wait between them
/// (doubling; a `retry-after` is taken when it is longer, up to the export's
/// timeout).
const RETRIES: u32 = 3;
const FIRST_BACKOFF: Duration = Duration::from_millis(100);

/// The exporter could not be built from the config.
#[derive(Debug, thiserror::Error)]
#[error("telemetry.traces: {0}")]
pub struct StartError(String);

/// The running exporter task.
#[derive(Debug)]
pub struct Exporter {
    task: JoinHandle<()>,
}

impl Exporter {
    /// Waits until the task has sent what was queued at shutdown (or given up
    /// after one export's timeout).
    pub async fn stopped(self) {
        let _ = self.task.await;
    }
}

/// The exporter's counters.
struct Counts {
    exported: Counter,
    failed: Counter,
}

/// Where and how exports are posted, and what is said of the sender.
struct Collector {
    client: reqwest::Client,
    endpoint: String,
    headers: HeaderMap,
    timeout: Duration,
    /// The encoded `Resource` and `InstrumentationScope` every export carries.
    resource: Vec<u8>,
    scope: Vec<u8>,
}

/// Starts the exporter: the consumer that feeds it, and the task, which
/// stops on `stop` after one last export.
pub fn start(
    config: &Traces,
    metrics: &Metrics,
    stop: CancellationToken,
) -> Result<(Tracer, Exporter), StartError> {
    let mut headers = HeaderMap::with_capacity(config.headers.len() + 1);
    headers.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/x-protobuf"),
    );
    for (name, value) in &config.headers {
        let name = HeaderName::try_from(name.as_str()).map_err(|e| StartError(e.to_string()))?;
        let mut value =
            HeaderValue::try_from(value.expose_secret()).map_err(|e| StartError(e.to_string()))?;
        value.set_sensitive(true);
        headers.insert(name, value);
    }
    let client = reqwest::Client::builder()
        .connect_timeout(config.timeout)
        .build()
        .map_err(|e| StartError(e.to_string()))?;
    let version = env!("CARGO_PKG_VERSION");
    let resource = Resource {
        attributes: vec![
            span::text("service.name", config.service_name.as_str()),
            span::text("service.version", version),
        ],
        ..Resource::default()
    };
    let scope = InstrumentationScope {
        name: "switchyard".to_owned(),
        version: version.to_owned(),
        ..InstrumentationScope::default()
    };
    let collector = Collector {
        client,
        endpoint: config.endpoint.clone(),
        headers,
        timeout: config.timeout,
        resource: resource.encode_to_vec(),
        scope: scope.encode_to_vec(),
    };
    metrics.describe(
        "switchyard_trace_spans_exported_total",
        None,
        "Spans the OTLP collector took.",
    );
    metrics.describe(
        "switchyard_trace_spans_failed_total",
        None,
        "Spans the OTLP collector did not take (after the retries), or rejected.",
    );
    metrics.describe(
        "switchyard_trace_spans_dropped_total",
        None,
        "Sampled requests whose spans were dropped: the export queue was full.",
    );
    let (tx, rx) = mpsc::channel(config.queue);
    let tracer = Tracer {
        tx,
        sampler: Sampler::ParentBased(Box::new(Sampler::TraceIdRatioBased(config.sample_ratio))),
        ids: RandomIdGenerator::default(),
        dropped: metrics.counter("switchyard_trace_spans_dropped_total", &[]),
        content: config.content,
    };
    let counts = Counts {
        exported: metrics.counter("switchyard_trace_spans_exported_total", &[]),
        failed: metrics.counter("switchyard_trace_spans_failed_total", &[]),
    };
    let task = tokio::spawn(run(collector, rx, counts, config.clone(), stop));
    Ok((tracer, Exporter { task }))
}

async fn run(
    collector: Collector,
    mut rx: mpsc::Receiver<Traced>,
    counts: Counts,
    config: Traces,
    stop: CancellationToken,
) {
    let ids = RandomIdGenerator::default();
    let mut ticks = tokio::time::interval(config.flush_interval);
    ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut batch = Vec::with_capacity(config.batch_size);
    let mut spans = Vec::new();
    let mut stopping = false;
    while !stopping {
        tokio::select! {
            _ = ticks.tick() => {}
            () = stop.cancelled() => stopping = true,
        }
        // Everything queued leaves, a batch at a time; at shutdown too.
        loop {
            while batch.len() < config.batch_size {
                match rx.try_recv() {
                    Ok(traced) => batch.push(traced),
                    Err(_) => break,
                }
            }
            if batch.is_empty() {
                break;
            }
            let full = batch.len() == config.batch_size;
            for traced in batch.drain(..) {
                span::build(traced, &ids, &mut spans);
            }
            let n = spans.len() as u64;
            let body = collector.body(&spans);
            spans.clear();
            match collector.export(body).await {
                Ok(rejected) => {
                    counts.exported.increment(n.saturating_sub(rejected));
                    counts.failed.increment(rejected);
                }
                Err(failure) => {
                    counts.failed.increment(n);
                    tracing::warn!(spans = n, failure, "traces could not be exported");
                }
            }
            if !full {
                break;
            }
        }
    }
}

impl Collector {
    /// The `ExportTraceServiceRequest` of `spans`: one `ResourceSpans` of one
    /// `ScopeSpans`. The two wrappers are framed here around the spans, each
    /// encoded once (a whole request's encoding would measure every span
    /// again at each level).
    fn body(&self, spans: &[Span]) -> Bytes {
        use prost::encoding::{WireType, encode_key, encode_varint};
        let mut scope_spans = Vec::with_capacity(self.scope.len() + 16 + spans.len() * 512);
        field(1, &self.scope, &mut scope_spans);
        for span in spans {
            encode_key(2, WireType::LengthDelimited, &mut scope_spans);
            span.encode_length_delimited(&mut scope_spans)
                .unwrap_or_default();
        }
        let mut resource_spans = Vec::with_capacity(self.resource.len() + scope_spans.len() + 16);
        field(1, &self.resource, &mut resource_spans);
        field(2, &scope_spans, &mut resource_spans);
        let mut body = Vec::with_capacity(resource_spans.len() + 8);
        field(1, &resource_spans, &mut body);
        return Bytes::from(body);

        /// Appends `message`, an encoded message, as field `tag`.
        fn field(tag: u32, message: &[u8], out: &mut Vec<u8>) {
            encode_key(tag, WireType::LengthDelimited, out);
            encode_varint(message.len() as u64, out);
            out.extend_from_slice(message);
        }
    }

    /// Posts `body`, tried again on a retryable failure: the spans the
    /// collector rejected (a partial success), or why it failed.
    async fn export(&self, body: Bytes) -> Result<u64, String> {
        let mut backoff = FIRST_BACKOFF;
        let mut tries = 0;
        loop {
            let post = self
                .client
                .post(&self.endpoint)
                .headers(self.headers.clone())
                .body(body.clone())
                .send();
            let (failure, wait) = match tokio::time::timeout(self.timeout, post).await {
                Ok(Ok(response)) if response.status().is_success() => {
                    let answer = response.bytes().await.unwrap_or_default();
                    let rejected = ExportTraceServiceResponse::decode(answer)
                        .ok()
                        .and_then(|r| r.partial_success)
                        .map_or(0, |p| u64::try_from(p.rejected_spans).unwrap_or(0));
                    return Ok(rejected);
                }
                Ok(Ok(response)) => {
                    let status = response.status();
                    if !matches!(
                        status,
                        StatusCode::TOO_MANY_REQUESTS
                            | StatusCode::BAD_GATEWAY
                            | StatusCode::SERVICE_UNAVAILABLE
                            | StatusCode::GATEWAY_TIMEOUT
                    ) {
                        return Err(format!("status {status}"));
                    }
                    let wait = response
                        .headers()
                        .get(header::RETRY_AFTER)
                        .and_then(|v| v.to_str().ok()?.trim().parse().ok())
                        .map(Duration::from_secs);
                    (format!("status {status}"), wait)
                }
                Ok(Err(e)) => (e.without_url().to_string(), None),
                Err(_) => (format!("no answer within {:?}", self.timeout), None),
            };
            if tries == RETRIES {
                return Err(failure);
            }
            tries += 1;
            let wait = wait.map_or(backoff, |w| w.max(backoff)).min(self.timeout);
            tokio::time::sleep(wait).await;
            backoff = backoff.saturating_mul(2);
        }
    }
}
