//! The exporter task: every `flush_interval` (or as soon as a batch is full)
//! it builds the queued requests' spans and sends them to the collector.

use std::collections::HashMap;
use std::time::Duration;

use metrics::Counter;
use opentelemetry::InstrumentationScope;
use opentelemetry_otlp::{Protocol, WithExportConfig, WithHttpConfig};
use opentelemetry_sdk::Resource;
use opentelemetry_sdk::trace::{RandomIdGenerator, Sampler, SpanData, SpanExporter as _};
use secrecy::ExposeSecret;
use tokio::sync::mpsc;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

use super::{Traced, Tracer, span};
use crate::config::Traces;
use crate::telemetry::metrics::Metrics;

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

/// Starts the exporter: the consumer that feeds it, and the task, which
/// stops on `stop` after one last export.
pub fn start(
    config: &Traces,
    metrics: &Metrics,
    stop: CancellationToken,
) -> Result<(Tracer, Exporter), StartError> {
    let headers: HashMap<String, String> = config
        .headers
        .iter()
        .map(|(name, value)| (name.clone(), value.expose_secret().to_owned()))
        .collect();
    let mut exporter = opentelemetry_otlp::SpanExporter::builder()
        .with_http()
        .with_protocol(Protocol::HttpBinary)
        .with_endpoint(config.endpoint.clone())
        .with_timeout(config.timeout)
        .with_headers(headers)
        .build()
        .map_err(|e| StartError(e.to_string()))?;
    exporter.set_resource(
        &Resource::builder_empty()
            .with_service_name(config.service_name.clone())
            .with_attribute(opentelemetry::KeyValue::new(
                "service.version",
                env!("CARGO_PKG_VERSION"),
            ))
            .build(),
    );
    metrics.describe(
        "switchyard_trace_spans_exported_total",
        None,
        "Spans sent to the OTLP collector.",
    );
    metrics.describe(
        "switchyard_trace_spans_failed_total",
        None,
        "Spans the OTLP collector did not take (after the exporter's retries).",
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
    let task = tokio::spawn(run(exporter, rx, counts, config.clone(), stop));
    Ok((tracer, Exporter { task }))
}

async fn run(
    exporter: opentelemetry_otlp::SpanExporter,
    mut rx: mpsc::Receiver<Traced>,
    counts: Counts,
    config: Traces,
    stop: CancellationToken,
) {
    let scope = InstrumentationScope::builder("switchyard")
        .with_version(env!("CARGO_PKG_VERSION"))
        .build();
    let ids = RandomIdGenerator::default();
    let mut ticks = tokio::time::interval(config.flush_interval);
    ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut batch = Vec::with_capacity(config.batch_size);
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
            let mut spans = Vec::with_capacity(batch.len() * 2);
            for traced in batch.drain(..) {
                span::build(traced, &scope, &ids, &mut spans);
            }
            send(&exporter, spans, config.timeout, &counts).await;
            if !full {
                break;
            }
        }
    }
}

/// Sends `spans` in one export, within `timeout` (the exporter's own retries included).
async fn send(
    exporter: &opentelemetry_otlp::SpanExporter,
    spans: Vec<SpanData>,
    timeout: Duration,
    counts: &Counts,
) {
    let n = spans.len() as u64;
    // The exporter retries within its own timeout per try; the whole is bounded here.
    match tokio::time::timeout(timeout * 2, exporter.export(spans)).await {
        Ok(Ok(())) => counts.exported.increment(n),
        Ok(Err(e)) => {
            counts.failed.increment(n);
            tracing::warn!(spans = n, error = %e, "traces could not be exported");
        }
        Err(_) => {
            counts.failed.increment(n);
            tracing::warn!(spans = n, "traces could not be exported in time");
        }
    }
}
