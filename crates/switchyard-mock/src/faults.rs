//! Injected faults: latency, failed requests, cut streams, in-band stream errors.
//!
//! Every decision is a pure function of `--seed` and the request's sequence number (the
//! order in which `/v1/*` and `/v1beta/*` requests arrived since start or
//! `POST /mock/reset`), so a run with the same seed and the same request sequence makes the
//! same decisions; the request path takes no lock but the stream fault's, held for a copy.
//!
//! The error rate and status, the latency and the time to first token can be
//! changed while the mock runs (`POST /mock/faults`); each change holds from
//! the next request on.

use std::sync::Mutex;
use std::sync::atomic::{AtomicU16, AtomicU64, Ordering};
use std::time::Duration;

use axum::http::StatusCode;
use serde::{Deserialize, Serialize};

use crate::MockOptions;
use crate::error::MockError;

/// What happens to a streamed response.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum StreamFate {
    /// Every chunk, then `[DONE]`.
    Complete,
    /// The connection drops after half of the content chunks (`--stream-cut-rate`).
    Cut,
    /// An error event after this many content chunks (`--stream-error-after`, 1 by
    /// default), then a clean end without `[DONE]` (`--stream-error-rate`).
    InBandError(usize),
    /// The fault every stream gets while `stream_fault` is set (`POST /mock/faults`).
    Set(StreamFault),
}

/// A fault every stream gets, whatever the rates draw, while it is set
/// (`POST /mock/faults` `{"stream_fault": {"kind": …, "after": N}}`; `{"kind":
/// "none"}` clears it). `after` counts content events: the prelude (an OpenAI
/// role chunk, Anthropic's `message_start`) always goes out.
#[derive(Clone, Copy, Debug, Default, Deserialize, Serialize, PartialEq, Eq)]
#[serde(tag = "kind", rename_all = "snake_case", deny_unknown_fields)]
pub(crate) enum StreamFault {
    /// Streams play as the rates decide.
    #[default]
    None,
    /// The connection drops after `after` content events.
    CutAfter {
        /// Content events sent first.
        after: usize,
    },
    /// Silence after `after` content events: the connection stays open and
    /// nothing more comes until the mock stops.
    StallAfter {
        /// Content events sent first.
        after: usize,
    },
    /// After `after` content events, an event whose data is not JSON; then a
    /// clean end.
    BadJson {
        /// Content events sent first.
        after: usize,
    },
    /// After `after` content events, one event of `bytes` bytes of data; then
    /// a clean end.
    HugeEvent {
        /// Content events sent first.
        after: usize,
        /// The event's size.
        bytes: usize,
    },
    /// After `after` content events the body ends cleanly, with no finish and
    /// no terminator.
    NoTerminator {
        /// Content events sent first.
        after: usize,
    },
    /// After `after` content events, the dialect's in-band error event (an
    /// overload), then a clean end.
    InBandError {
        /// Content events sent first.
        after: usize,
    },
}

/// The decisions for one admitted request.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Admission {
    /// The request's sequence number, also used to name its response.
    pub seq: u64,
    /// What happens to its stream, if it asks for one.
    pub fate: StreamFate,
}

impl Admission {
    /// The `x-request-id` of the response.
    pub(crate) fn request_id(&self) -> String {
        format!("req-mock-{}", self.seq)
    }
}

/// The knobs `POST /mock/faults` changes (each one when given), and the
/// values it answers with.
#[derive(Clone, Copy, Debug, Default, Deserialize, Serialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub(crate) struct Knobs {
    /// Fraction of requests that fail, from 0 to 1.
    pub error_rate: Option<f64>,
    /// Their status, from 400 to 599.
    pub error_status: Option<u16>,
    /// Delay before the response headers, in milliseconds.
    pub latency_ms: Option<u64>,
    /// Delay before the first streamed token, in milliseconds.
    pub ttft_ms: Option<u64>,
    /// The fault every stream gets from the next request on.
    pub stream_fault: Option<StreamFault>,
}

/// The largest event `stream_fault` `huge_event` makes.
const MAX_EVENT: usize = 64 << 20;

/// Decides, per request, which faults to inject.
#[derive(Debug)]
pub(crate) struct Faults {
    /// Nanoseconds.
    latency: AtomicU64,
    /// Nanoseconds.
    ttft: AtomicU64,
    /// The bits of an `f64`.
    error_rate: AtomicU64,
    error_status: AtomicU16,
    retry_after: Option<u64>,
    stream_cut_rate: f64,
    stream_error_rate: f64,
    stream_error_after: usize,
    /// Read once per admitted request; written by `POST /mock/faults`.
    stream_fault: Mutex<StreamFault>,
    seed: u64,
    next_seq: AtomicU64,
}

/// Independent draws taken for each request.
#[derive(Clone, Copy)]
enum Draw {
    Error = 0,
    Cut = 1,
    InBand = 2,
}

impl Faults {
    /// The faults asked for by `options`; an `--error-status` outside 400..=599 means 500.
    pub(crate) fn new(options: &MockOptions) -> Self {
        let error_status = StatusCode::from_u16(options.error_status)
            .ok()
            .filter(|s| s.is_client_error() || s.is_server_error())
            .unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
        Self {
            latency: AtomicU64::new(nanos(options.latency)),
            ttft: AtomicU64::new(nanos(options.ttft)),
            error_rate: AtomicU64::new(options.error_rate.to_bits()),
            error_status: AtomicU16::new(error_status.as_u16()),
            retry_after: options.retry_after,
            stream_cut_rate: options.stream_cut_rate,
            stream_error_rate: options.stream_error_rate,
            stream_error_after: options.stream_error_after,
            stream_fault: Mutex::new(StreamFault::None),
            seed: options.seed,
            next_seq: AtomicU64::new(0),
        }
    }

    /// Waits `--latency`, then either fails the request (`--error-rate`) or admits it
    /// with its stream's fate.
    pub(crate) async fn admit(&self) -> Result<Admission, MockError> {
        let seq = self.next_seq.fetch_add(1, Ordering::Relaxed);
        let latency = self.latency.load(Ordering::Relaxed);
        if latency != 0 {
            tokio::time::sleep(Duration::from_nanos(latency)).await;
        }
        self.decide(seq)
    }

    /// The delay before the first streamed token.
    pub(crate) fn ttft(&self) -> Duration {
        Duration::from_nanos(self.ttft.load(Ordering::Relaxed))
    }

    /// Applies the knobs that `knobs` sets, after checking them all; returns
    /// every knob's value, or what is wrong.
    pub(crate) fn set(&self, knobs: Knobs) -> Result<Knobs, MockError> {
        if knobs.error_rate.is_some_and(|r| !(0.0..=1.0).contains(&r)) {
            return Err(MockError::invalid(
                "error_rate must be from 0 to 1",
                "error_rate",
            ));
        }
        if knobs
            .error_status
            .is_some_and(|s| !(400..=599).contains(&s))
        {
            return Err(MockError::invalid(
                "error_status must be from 400 to 599",
                "error_status",
            ));
        }
        if let Some(StreamFault::HugeEvent { bytes, .. }) = knobs.stream_fault
            && bytes > MAX_EVENT
        {
            return Err(MockError::invalid(
                "a huge event is at most 64 MiB",
                "stream_fault",
            ));
        }
        let ms = |m: u64| nanos(Duration::from_millis(m));
        if let Some(rate) = knobs.error_rate {
            self.error_rate.store(rate.to_bits(), Ordering::Relaxed);
        }
        if let Some(status) = knobs.error_status {
            self.error_status.store(status, Ordering::Relaxed);
        }
        if let Some(latency) = knobs.latency_ms {
            self.latency.store(ms(latency), Ordering::Relaxed);
        }
        if let Some(ttft) = knobs.ttft_ms {
            self.ttft.store(ms(ttft), Ordering::Relaxed);
        }
        if let Some(fault) = knobs.stream_fault {
            *self.stream_fault() = fault;
        }
        let millis = |nanos: &AtomicU64| nanos.load(Ordering::Relaxed) / 1_000_000;
        Ok(Knobs {
            error_rate: Some(f64::from_bits(self.error_rate.load(Ordering::Relaxed))),
            error_status: Some(self.error_status.load(Ordering::Relaxed)),
            latency_ms: Some(millis(&self.latency)),
            ttft_ms: Some(millis(&self.ttft)),
            stream_fault: Some(*self.stream_fault()),
        })
    }

    /// Restarts the sequence, so that the decisions after a reset repeat those after start.
    pub(crate) fn reset(&self) {
        self.next_seq.store(0, Ordering::Relaxed);
    }

    fn decide(&self, seq: u64) -> Result<Admission, MockError> {
        if self.chance(seq, Draw::Error) < f64::from_bits(self.error_rate.load(Ordering::Relaxed)) {
            let status = StatusCode::from_u16(self.error_status.load(Ordering::Relaxed))
                .unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
            return Err(MockError::Injected {
                status,
                retry_after: self.retry_after,
            });
        }
        let set = *self.stream_fault();
        let fate = if set != StreamFault::None {
            StreamFate::Set(set)
        } else if self.chance(seq, Draw::Cut) < self.stream_cut_rate {
            StreamFate::Cut
        } else if self.chance(seq, Draw::InBand) < self.stream_error_rate {
            StreamFate::InBandError(self.stream_error_after)
        } else {
            StreamFate::Complete
        };
        Ok(Admission { seq, fate })
    }

    /// The stream fault set; a panic while it was held left a whole value.
    fn stream_fault(&self) -> std::sync::MutexGuard<'_, StreamFault> {
        self.stream_fault
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// A uniform number in `[0, 1)` for draw `draw` of request `seq`.
    fn chance(&self, seq: u64, draw: Draw) -> f64 {
        let bits =
            splitmix64(self.seed ^ splitmix64(seq.wrapping_mul(3).wrapping_add(draw as u64)));
        (bits >> 11) as f64 / (1u64 << 53) as f64
    }
}

/// `d` in nanoseconds (at most 584 years).
fn nanos(d: Duration) -> u64 {
    u64::try_from(d.as_nanos()).unwrap_or(u64::MAX)
}

/// SplitMix64's output function: a fast, well-mixed 64-bit hash.
fn splitmix64(x: u64) -> u64 {
    let mut z = x.wrapping_add(0x9E37_79B9_7F4A_7C15);
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::panic)]
mod tests {
    use super::*;

    fn faults(options: MockOptions) -> Faults {
        Faults::new(&options)
    }

    fn outcomes(f: &Faults, n: u64) -> Vec<Option<StreamFate>> {
        (0..n)
            .map(|seq| f.decide(seq).ok().map(|a| a.fate))
            .collect()
    }

    #[test]
    fn rates_zero_and_one_are_absolute() {
        let never = faults(MockOptions::default());
        assert!(
            outcomes(&never, 1000)
                .iter()
                .all(|o| *o == Some(StreamFate::Complete))
        );

        let always = faults(MockOptions {
            error_rate: 1.0,
            ..MockOptions::default()
        });
        assert!(outcomes(&always, 1000).iter().all(Option::is_none));

        let cut = faults(MockOptions {
            stream_cut_rate: 1.0,
            stream_error_rate: 1.0,
            ..MockOptions::default()
        });
        assert!(
            outcomes(&cut, 1000)
                .iter()
                .all(|o| *o == Some(StreamFate::Cut))
        );
    }

    #[test]
    fn rates_are_honoured_roughly() {
        let f = faults(MockOptions {
            error_rate: 0.3,
            stream_error_rate: 0.5,
            ..MockOptions::default()
        });
        let all = outcomes(&f, 20_000);
        let failed = all.iter().filter(|o| o.is_none()).count();
        let in_band = all
            .iter()
            .filter(|o| matches!(o, Some(StreamFate::InBandError(_))))
            .count();
        assert!((5_400..6_600).contains(&failed), "{failed}");
        // Half of the 70 % admitted.
        assert!((6_300..7_700).contains(&in_band), "{in_band}");
    }

    #[test]
    fn same_seed_same_decisions_other_seed_other_decisions() {
        let options = |seed| MockOptions {
            error_rate: 0.5,
            seed,
            ..MockOptions::default()
        };
        assert_eq!(
            outcomes(&faults(options(7)), 200),
            outcomes(&faults(options(7)), 200)
        );
        assert_ne!(
            outcomes(&faults(options(7)), 200),
            outcomes(&faults(options(8)), 200)
        );
    }

    #[tokio::test]
    async fn admit_numbers_requests_and_reset_restarts() {
        let f = faults(MockOptions::default());
        assert_eq!(f.admit().await.unwrap().seq, 0);
        assert_eq!(f.admit().await.unwrap().seq, 1);
        f.reset();
        assert_eq!(f.admit().await.unwrap().seq, 0);
    }

    #[tokio::test(start_paused = true)]
    async fn admit_waits_the_latency() {
        let f = faults(MockOptions {
            latency: Duration::from_millis(250),
            ..MockOptions::default()
        });
        let start = tokio::time::Instant::now();
        f.admit().await.unwrap();
        assert_eq!(start.elapsed(), Duration::from_millis(250));
    }

    #[test]
    fn odd_error_status_means_500() {
        let f = faults(MockOptions {
            error_rate: 1.0,
            error_status: 200,
            ..MockOptions::default()
        });
        match f.decide(0) {
            Err(MockError::Injected { status, .. }) => assert_eq!(status, 500),
            other => panic!("{other:?}"),
        }
    }
}
