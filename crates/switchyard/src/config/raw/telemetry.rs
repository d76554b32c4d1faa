//! `telemetry:`, as serde reads it.

use std::collections::BTreeMap;

use serde::Deserialize;

use super::{ByteSize, HumanDuration};

/// `telemetry:`: request bodies in the logs, and traces.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TelemetryConfig {
    /// Whether each proxied request's prompt and answer are logged, secrets redacted (default false).
    pub log_bodies: Option<bool>,
    /// Bytes of each body logged at most; the rest is cut (default 64KiB).
    pub log_bodies_max: Option<ByteSize>,
    /// Bytes of the last requests' bodies kept in memory for the dashboard's request pages (default 8MiB; 0: none).
    pub recent_bodies: Option<ByteSize>,
    /// OpenTelemetry traces over OTLP/HTTP; absent: none.
    pub traces: Option<TracesConfig>,
}

/// `telemetry.traces:`: where and how spans are exported.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TracesConfig {
    /// The collector's OTLP/HTTP traces URL (e.g. `http://otel-collector:4318/v1/traces`).
    pub endpoint: Option<String>,
    /// Headers sent with every export (e.g. `authorization` for a hosted collector).
    #[serde(default)]
    pub headers: BTreeMap<String, String>,
    /// `service.name` of the spans (default `switchyard`).
    pub service_name: Option<String>,
    /// Whether the request span carries the prompt and the answer, redacted and cut as the bodies log does (default false).
    pub content: Option<bool>,
    /// The share of requests traced when the client sent no sampled `traceparent`, 0 to 1 (default 1).
    pub sample_ratio: Option<f64>,
    /// Requests waiting to be exported at most; past it their spans are dropped and counted (default 8192).
    pub queue: Option<usize>,
    /// Requests' spans sent in one export at most (default 512).
    pub batch_size: Option<usize>,
    /// How often spans are exported (default 2s).
    pub flush_interval: Option<HumanDuration>,
    /// How long one export may take (default 10s).
    pub timeout: Option<HumanDuration>,
}
