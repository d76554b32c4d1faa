//! `telemetry:`, validated.

use std::time::Duration;

use secrecy::SecretString;

use super::Validator;
use crate::config::raw::{TelemetryConfig, TracesConfig};
use crate::config::units::HumanDuration;
use crate::config::{Telemetry, Traces};

/// Bytes of each body logged at most when `telemetry.log_bodies_max` is not set.
const DEFAULT_LOG_BODIES_MAX: u64 = 64 << 10;

/// Bytes of the last requests' bodies kept for the dashboard when
/// `telemetry.recent_bodies` is not set.
const RECENT_BYTES: usize = 8 << 20;

/// The traces' defaults: `service.name`, requests waiting to be exported,
/// requests per export, how often and how long an export may take.
const DEFAULT_SERVICE_NAME: &str = "switchyard";
const DEFAULT_TRACE_QUEUE: usize = 8_192;
const DEFAULT_TRACE_BATCH: usize = 512;
const DEFAULT_TRACE_INTERVAL: Duration = Duration::from_secs(2);
const DEFAULT_TRACE_TIMEOUT: Duration = Duration::from_secs(10);

impl Validator<'_> {
    /// `telemetry:` with its defaults.
    pub(super) fn telemetry(&mut self, raw: TelemetryConfig) -> Telemetry {
        let max = raw.log_bodies_max.map_or(DEFAULT_LOG_BODIES_MAX, |s| s.0);
        if max == 0 {
            self.error(
                &["telemetry", "log_bodies_max"],
                "`log_bodies_max` must be at least 1 byte",
            );
        }
        Telemetry {
            log_bodies: raw.log_bodies.unwrap_or(false),
            bodies_max: usize::try_from(max).unwrap_or(usize::MAX),
            recent_bodies: raw
                .recent_bodies
                .map_or(RECENT_BYTES, |s| usize::try_from(s.0).unwrap_or(usize::MAX)),
            traces: raw.traces.and_then(|traces| self.traces(traces)),
        }
    }

    /// `telemetry.traces:`; `None` without an endpoint.
    fn traces(&mut self, raw: TracesConfig) -> Option<Traces> {
        let at = |key: &'static str| ["telemetry", "traces", key];
        let endpoint = raw.endpoint.filter(|e| !e.trim().is_empty());
        let Some(endpoint) = endpoint else {
            self.error(
                &at("endpoint"),
                "`endpoint` is required: the collector's OTLP/HTTP traces URL, e.g. `http://127.0.0.1:4318/v1/traces`",
            );
            return None;
        };
        if !(endpoint.starts_with("http://") || endpoint.starts_with("https://")) {
            self.error(
                &at("endpoint"),
                "`endpoint` must start with `http://` or `https://`",
            );
        }
        let mut headers = Vec::with_capacity(raw.headers.len());
        for (name, value) in raw.headers {
            let valid = axum::http::HeaderName::try_from(name.as_str()).is_ok()
                && axum::http::HeaderValue::try_from(value.as_str()).is_ok();
            if !valid {
                self.error(
                    &["telemetry", "traces", "headers", name.as_str()],
                    format!("`{name}` is not a valid header name and value"),
                );
            }
            headers.push((name, SecretString::from(value)));
        }
        let sample_ratio = raw.sample_ratio.unwrap_or(1.0);
        if !(0.0..=1.0).contains(&sample_ratio) {
            self.error(&at("sample_ratio"), "`sample_ratio` must be from 0 to 1");
        }
        for (name, value) in [("queue", raw.queue), ("batch_size", raw.batch_size)] {
            if value == Some(0) {
                self.error(&at(name), format!("`{name}` must be at least 1"));
            }
        }
        let flush_interval = HumanDuration::or(raw.flush_interval, DEFAULT_TRACE_INTERVAL);
        let timeout = HumanDuration::or(raw.timeout, DEFAULT_TRACE_TIMEOUT);
        for (name, value) in [("flush_interval", flush_interval), ("timeout", timeout)] {
            if value.is_zero() {
                self.error(&at(name), format!("`{name}` must be more than 0"));
            }
        }
        Some(Traces {
            endpoint,
            headers,
            service_name: raw
                .service_name
                .filter(|s| !s.is_empty())
                .unwrap_or_else(|| DEFAULT_SERVICE_NAME.to_owned()),
            sample_ratio,
            content: raw.content.unwrap_or(false),
            queue: raw.queue.unwrap_or(DEFAULT_TRACE_QUEUE).max(1),
            batch_size: raw.batch_size.unwrap_or(DEFAULT_TRACE_BATCH).max(1),
            flush_interval,
            timeout,
        })
    }
}
