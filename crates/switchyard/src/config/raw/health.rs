//! `health_checks:` and a provider's `health_check:`, as serde reads them.

use serde::Deserialize;

use super::HumanDuration;

/// `health_checks:`: the defaults of every provider's probe, and passive
/// outlier ejection.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HealthChecksConfig {
    /// Between two probes (default 10s).
    pub interval: Option<HumanDuration>,
    /// How long one probe may take (default 5s).
    pub timeout: Option<HumanDuration>,
    /// Probes in a row that make an unhealthy deployment healthy (default 2).
    pub healthy_threshold: Option<u32>,
    /// Probes in a row that make a healthy deployment unhealthy (default 3).
    pub unhealthy_threshold: Option<u32>,
    /// Whether `/ready` fails while a model has no healthy deployment (default true).
    pub ready_needs_every_model: Option<bool>,
    /// Passive ejection from live traffic.
    #[serde(default)]
    pub outlier: OutlierConfig,
}

/// `health_checks.outlier:`
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct OutlierConfig {
    /// Live failures in a row that eject a deployment (default 5).
    pub consecutive_failures: Option<u32>,
    /// The first ejection's length; each further one doubles it (default 30s).
    pub ejection: Option<HumanDuration>,
    /// The longest ejection (default 5m).
    pub max_ejection: Option<HumanDuration>,
    /// The most of a model's deployments ejected at once, in percent (default 50).
    pub max_ejected_percent: Option<u32>,
}

/// A provider's `health_check:`: active probes, with overrides of the
/// `health_checks:` defaults.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HealthCheckConfig {
    /// `GET base_url + path`, once for all the provider's deployments.
    pub path: Option<String>,
    /// A one-token chat request to each of the provider's deployments.
    pub chat: Option<bool>,
    /// Between two probes.
    pub interval: Option<HumanDuration>,
    /// How long one probe may take.
    pub timeout: Option<HumanDuration>,
    /// Probes in a row that make an unhealthy deployment healthy.
    pub healthy_threshold: Option<u32>,
    /// Probes in a row that make a healthy deployment unhealthy.
    pub unhealthy_threshold: Option<u32>,
}
