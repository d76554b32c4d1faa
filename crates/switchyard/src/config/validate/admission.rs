//! `admission:` validated.

use std::time::Duration;

use super::Validator;
use crate::config::Admission;
use crate::config::raw::AdmissionConfig;
use crate::config::units::HumanDuration;

/// Requests waiting for room when `admission.max_queue` is not set.
const DEFAULT_MAX_QUEUE: u32 = 1024;

/// How long a request may wait for room when `admission.queue_timeout` is not set.
const DEFAULT_QUEUE_TIMEOUT: Duration = Duration::from_secs(1);

impl Validator<'_> {
    /// `admission:` with its defaults.
    pub(super) fn admission(&mut self, raw: &AdmissionConfig) -> Admission {
        if raw.max_in_flight == Some(0) {
            self.error(
                &["admission", "max_in_flight"],
                "`max_in_flight` must be at least 1 (leave it out to size it from the descriptor limit)",
            );
        }
        let queue_timeout = HumanDuration::or(raw.queue_timeout, DEFAULT_QUEUE_TIMEOUT);
        if queue_timeout.is_zero() {
            self.error(
                &["admission", "queue_timeout"],
                "`queue_timeout` must be more than 0 (set `max_queue: 0` for no queue)",
            );
        }
        Admission {
            max_in_flight: raw.max_in_flight.map(|n| n.max(1)),
            max_queue: raw.max_queue.unwrap_or(DEFAULT_MAX_QUEUE),
            queue_timeout,
        }
    }
}
