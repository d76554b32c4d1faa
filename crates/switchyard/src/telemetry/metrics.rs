//! Prometheus metrics (`GET /metrics`).
//!
//! Each gateway owns its own recorder (no global one: tests run several
//! gateways in one process, and a handle registered at start-up is a plain
//! atomic on the request path, with no registry lookup). Metrics that hold a
//! state rather than count events — a breaker's state, a deployment's health,
//! a canary's stage — are gauges set from that state when `/metrics` is read.
//!
//! Every name carries the `switchyard_` prefix; label values are bounded
//! (model, provider and deployment names from the config, outcome classes),
//! never a key, a prompt or a request id.
//!
//! What every request records (`telemetry::requests`) goes to metrics kept
//! here rather than the exporter's (`fixed.rs`): histograms of fixed buckets
//! that take no clock read and keep no samples, and exact decimal counters.

mod fixed;

use std::sync::Arc;

use metrics::{Counter, Gauge, Histogram, Key, Label, Metadata, Recorder, Unit};
use metrics_exporter_prometheus::{PrometheusBuilder, PrometheusHandle, PrometheusRecorder};

pub use fixed::{DurationHistogram, MicroCounter};

/// Histogram buckets, in seconds: from 5 ms to 5 minutes.
const BUCKETS: [f64; 16] = [
    0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 20.0, 30.0, 60.0, 120.0, 300.0,
];

/// Where metric metadata says the metrics come from.
static METADATA: Metadata<'static> =
    Metadata::new("switchyard", metrics::Level::INFO, Some(module_path!()));

/// The gateway's metric registry (clones share it).
#[derive(Clone)]
pub struct Metrics {
    recorder: Arc<PrometheusRecorder>,
    handle: PrometheusHandle,
    fixed: Arc<fixed::Fixed>,
}

impl std::fmt::Debug for Metrics {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Metrics").finish_non_exhaustive()
    }
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}

impl Metrics {
    /// An empty registry whose histograms have explicit buckets (so that they
    /// can be summed across replicas).
    pub fn new() -> Self {
        let builder = PrometheusBuilder::new();
        let recorder = match builder.set_buckets(&BUCKETS) {
            Ok(builder) => builder.build_recorder(),
            // Only an empty bucket list is refused.
            Err(_) => PrometheusBuilder::new().build_recorder(),
        };
        let handle = recorder.handle();
        Self {
            recorder: Arc::new(recorder),
            handle,
            fixed: Arc::default(),
        }
    }

    /// The counter `name` with `labels`, registered once; keep the handle.
    pub fn counter(&self, name: &'static str, labels: &[(&'static str, &str)]) -> Counter {
        self.recorder
            .register_counter(&key(name, labels), &METADATA)
    }

    /// The gauge `name` with `labels`, registered once; keep the handle.
    pub fn gauge(&self, name: &'static str, labels: &[(&'static str, &str)]) -> Gauge {
        self.recorder.register_gauge(&key(name, labels), &METADATA)
    }

    /// The histogram `name` with `labels`, registered once; keep the handle.
    pub fn histogram(&self, name: &'static str, labels: &[(&'static str, &str)]) -> Histogram {
        self.recorder
            .register_histogram(&key(name, labels), &METADATA)
    }

    /// The histogram of durations `name` with `labels` over the buckets
    /// `bounds` (seconds, ascending), registered once; keep the handle.
    pub fn duration_histogram(
        &self,
        name: &'static str,
        labels: &[(&'static str, &str)],
        bounds: &'static [f64],
    ) -> DurationHistogram {
        self.fixed.histogram(name, labels, bounds)
    }

    /// The counter of millionths `name` with `labels` (rendered as an exact
    /// decimal of units), registered once; keep the handle.
    pub fn micro_counter(
        &self,
        name: &'static str,
        labels: &[(&'static str, &str)],
    ) -> MicroCounter {
        self.fixed.micro_counter(name, labels)
    }

    /// Gives `name` its `# HELP` line.
    pub fn describe(&self, name: &'static str, unit: Option<Unit>, help: &'static str) {
        self.recorder.describe_gauge(name.into(), unit, help.into());
        self.fixed.describe(name, help);
    }

    /// Folds the histogram samples recorded since the last call (or render)
    /// into their buckets, freeing their memory.
    pub fn upkeep(&self) {
        self.handle.run_upkeep();
    }

    /// Everything, in the Prometheus text format.
    pub fn render(&self) -> String {
        let mut text = self.handle.render();
        self.fixed.render(&mut text);
        text
    }
}

fn key(name: &'static str, labels: &[(&'static str, &str)]) -> Key {
    let labels: Vec<Label> = labels
        .iter()
        .map(|(k, v)| Label::new(*k, (*v).to_owned()))
        .collect();
    Key::from_parts(name, labels)
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn registered_metrics_render_in_the_text_format() {
        let metrics = Metrics::new();
        metrics.describe("switchyard_retries_total", None, "Retries made.");
        let retries = metrics.counter("switchyard_retries_total", &[]);
        retries.increment(2);
        let state = metrics.gauge("switchyard_circuit_state", &[("deployment", "relay/gpt")]);
        state.set(1.0);
        let text = metrics.render();
        assert!(text.contains("# HELP switchyard_retries_total Retries made."));
        assert!(text.contains("switchyard_retries_total 2"));
        assert!(text.contains("switchyard_circuit_state{deployment=\"relay/gpt\"} 1"));
    }
}
