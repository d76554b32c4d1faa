//! `canary:` as the file writes it.

use serde::Deserialize;

use crate::config::units::HumanDuration;

/// A model's entry of `canary:`: a traffic shift to its deployments of one tier.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CanaryConfig {
    /// The tier of the new deployments; the model's other deployments are the old set.
    pub to: Option<String>,
    /// Percent of the model's requests sent to the new set, stage by stage.
    pub stages: Option<Vec<u32>>,
    /// Time at each stage before the next.
    pub dwell: Option<HumanDuration>,
    /// New-set attempts a stage needs before it is judged.
    pub min_requests: Option<u32>,
    /// Failures / attempts of the new set in a stage above which it is rolled back.
    pub max_error_rate: Option<f64>,
    /// p99 time to first content of the new set in a stage above which it is rolled back.
    pub max_p99: Option<HumanDuration>,
}
