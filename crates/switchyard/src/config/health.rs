//! `health_checks:` with defaults applied: active probes per provider and
//! passive outlier ejection.

use std::collections::BTreeMap;
use std::time::Duration;

/// Active probes and passive ejection.
#[derive(Debug, Clone, Default)]
pub struct HealthChecks {
    /// `/ready` fails while a public model has no healthy deployment.
    pub ready_needs_every_model: bool,
    /// Passive ejection from live traffic.
    pub outlier: Outlier,
    /// The probe of each provider that has one, by provider name.
    pub probes: BTreeMap<String, Probe>,
}

/// When live failures take a deployment out of rotation, and for how long.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Outlier {
    /// Live failures in a row that eject a deployment.
    pub consecutive_failures: u32,
    /// The first ejection's length; each further one doubles it.
    pub ejection: Duration,
    /// The longest ejection.
    pub max_ejection: Duration,
    /// The most of a model's deployments ejected at once, in percent.
    pub max_ejected_percent: u32,
}

impl Default for Outlier {
    /// 5 failures in a row eject for 30 s, doubling up to 5 min, at most half
    /// of a model's deployments at once.
    fn default() -> Self {
        Self {
            consecutive_failures: 5,
            ejection: Duration::from_secs(30),
            max_ejection: Duration::from_secs(300),
            max_ejected_percent: 50,
        }
    }
}

/// A provider's active probe.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Probe {
    /// What is sent.
    pub kind: ProbeKind,
    /// Between two probes.
    pub interval: Duration,
    /// How long one probe may take.
    pub timeout: Duration,
    /// Probes in a row that make an unhealthy deployment healthy.
    pub healthy_threshold: u32,
    /// Probes in a row that make a healthy deployment unhealthy.
    pub unhealthy_threshold: u32,
}

/// What a probe sends.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ProbeKind {
    /// `GET base_url + path`: one probe for all the provider's deployments.
    Path(String),
    /// A one-token chat request to each deployment.
    Chat,
}
