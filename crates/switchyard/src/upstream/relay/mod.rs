//! Streaming a provider's answer back to the client, chunk by chunk, with the
//! idle and total timeouts, and reading usage on the way.
//!
//! - [`reader`]: reads an upstream body within the idle and total timeouts and
//!   the shutdown cut, handing out what arrived together as one batch;
//! - [`first`]: a stream's first chunks, read before anything is sent, so that
//!   a stream failing at once can be tried elsewhere;
//! - [`json`]: a JSON answer relayed as it arrives, or read whole;
//! - [`sse`]: an event stream relayed event by event, in the client's dialect;
//! - [`events`]: the events it writes, its own error events among them.
//!
//! The relays read any HTTP body of [`Bytes`](bytes::Bytes) (a
//! [`hyper::body::Body`]): the gateway passes the HTTP client's, monomorphised,
//! and the unit tests scripted ones.

use std::sync::Arc;
use std::time::Duration;

use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

mod events;
mod first;
mod json;
mod reader;
mod sse;
#[cfg(test)]
mod tests;

pub use first::{FirstContent, first_content};
pub use json::{BodyUsage, read_whole, relay_json};
pub use sse::{StreamMode, relay_sse};

/// Limits that apply while relaying one response.
#[derive(Debug, Clone)]
pub struct RelayLimits {
    /// Longest silence between two upstream chunks.
    pub idle: Duration,
    /// When the whole exchange must be over.
    pub deadline: Instant,
    /// Largest single upstream event.
    pub max_event_bytes: usize,
    /// Cancelled when the shutdown grace period is over.
    pub cut: Arc<CancellationToken>,
}
