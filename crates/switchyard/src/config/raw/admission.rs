//! `admission:`, as serde reads it.

use serde::Deserialize;

use super::HumanDuration;

/// `admission:`: how much work the gateway takes on at once, and what
/// waits for room.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AdmissionConfig {
    /// Proxied requests in flight at most (default: sized from the descriptor limit, at most 4096).
    pub max_in_flight: Option<u32>,
    /// Requests waiting for room at most (default 1024; 0: none waits).
    pub max_queue: Option<u32>,
    /// How long a request may wait for room (default 1s).
    pub queue_timeout: Option<HumanDuration>,
}
