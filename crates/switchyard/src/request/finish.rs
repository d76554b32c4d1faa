//! The one end of every request: its record handed to each consumer in turn.

use std::sync::Arc;

use super::RequestRecord;

/// Something done with every request's record when the request ends.
///
/// Called on the request's task (or its relay's) as the request ends: a
/// consumer must not block; anything slow (a database write) is queued.
pub trait Consumer: Send + Sync {
    /// Takes note of one ended request.
    fn consume(&self, record: &RequestRecord);
}

/// The consumers of ended requests, in order. Process-lifetime: a reload of
/// the config does not replace it.
pub struct Finish {
    consumers: Vec<Arc<dyn Consumer>>,
}

impl std::fmt::Debug for Finish {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Finish")
            .field("consumers", &self.consumers.len())
            .finish()
    }
}

impl Finish {
    /// The end step with `consumers`, called in their order.
    pub fn new(consumers: Vec<Arc<dyn Consumer>>) -> Self {
        Self { consumers }
    }

    /// Hands `record` to every consumer.
    pub fn finish(&self, record: &RequestRecord) {
        for consumer in &self.consumers {
            consumer.consume(record);
        }
    }
}
