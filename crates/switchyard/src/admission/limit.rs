//! In-flight limits narrower than the gateway's: `max_in_flight` on a public
//! model and on a client key. Each is a count shared by every request it
//! limits, taken with one compare-and-swap that never counts past the limit
//! (a request that finds no room takes nothing) and given back when the
//! request's [`Share`] drops. There is no queue: a request past its model's
//! or its key's limit is refused at once (the gateway-wide queue of
//! [`Admission`](super::Admission) is the only wait).
//!
//! The counts live for the process, kept by name in [`Counts`]: routes and
//! keys built again from a new config find the same count for the same name,
//! so requests under way keep counting and give back to the count they took
//! from, whatever the new limit is.

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicU32, Ordering};

/// Adds one to `count` if it is below `max`; never counts past `max`, even
/// for a moment. Whether it did.
pub fn take_below(count: &AtomicU32, max: u32) -> bool {
    count
        .fetch_update(Ordering::AcqRel, Ordering::Acquire, |taken| {
            (taken < max).then_some(taken + 1)
        })
        .is_ok()
}

/// At most `max` requests in flight under one name (a model or a key).
#[derive(Debug, Clone)]
pub struct Limit {
    max: u32,
    count: Arc<AtomicU32>,
}

/// One request's place under a [`Limit`], given back when dropped.
#[derive(Debug)]
pub struct Share {
    count: Arc<AtomicU32>,
}

/// The counts of in-flight limits by name, kept for the process. Entries are
/// never removed: one per name ever configured, bounded by the configs' size.
#[derive(Debug, Default)]
pub struct Counts {
    by_name: HashMap<String, Arc<AtomicU32>>,
}

/// Why a request was refused at once for a narrower in-flight limit than the gateway's.
#[derive(Debug, thiserror::Error)]
pub enum LimitError {
    /// The public model has `max_in_flight` requests in flight.
    #[error("the model `{0}` is at its in-flight limit; try again shortly")]
    Model(String),
    /// Every deployment of the model (and of its fallbacks) that could take
    /// the request has its `max_in_flight` requests in flight.
    #[error("every deployment of the model `{0}` is at its in-flight limit; try again shortly")]
    Deployments(String),
    /// The client key has its `max_in_flight` requests in flight.
    #[error("this API key has as many requests in flight as it may; try again shortly")]
    Key,
}

// === impl Limit ===

impl Limit {
    /// A place for one request, if fewer than the limit are in flight.
    pub fn try_take(&self) -> Option<Share> {
        take_below(&self.count, self.max).then(|| Share {
            count: self.count.clone(),
        })
    }
}

// === impl Share ===

impl Drop for Share {
    fn drop(&mut self) {
        self.count.fetch_sub(1, Ordering::AcqRel);
    }
}

// === impl Counts ===

impl Counts {
    /// The limit of `max` on `name`'s count, made on first use.
    pub fn limit(&mut self, name: &str, max: u32) -> Limit {
        let count = self.by_name.entry(name.to_owned()).or_default().clone();
        Limit { max, count }
    }
}

// === impl LimitError ===

impl LimitError {
    /// The `reason` label of `switchyard_requests_shed_total`, and the error's kind.
    pub fn reason(&self) -> &'static str {
        match self {
            Self::Model(_) => "model_limit",
            Self::Deployments(_) => "deployment_limit",
            Self::Key => "key_limit",
        }
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use std::sync::Barrier;

    use super::*;

    fn in_flight(limit: &Limit) -> u32 {
        limit.count.load(Ordering::Relaxed)
    }

    #[test]
    fn taking_stops_at_the_limit_and_a_dropped_share_makes_room() {
        let mut counts = Counts::default();
        let limit = counts.limit("m", 2);
        let first = limit.try_take().unwrap();
        let _second = limit.try_take().unwrap();
        assert!(limit.try_take().is_none());
        assert_eq!(in_flight(&limit), 2);
        drop(first);
        assert_eq!(in_flight(&limit), 1);
        assert!(limit.try_take().is_some());
    }

    #[test]
    fn under_contention_no_more_than_the_limit_are_ever_taken() {
        const THREADS: usize = 8;
        let limit = Counts::default().limit("k", 3);
        let barrier = Barrier::new(THREADS);
        let peak = AtomicU32::new(0);
        std::thread::scope(|scope| {
            for _ in 0..THREADS {
                scope.spawn(|| {
                    barrier.wait();
                    for _ in 0..2_000 {
                        let Some(share) = limit.try_take() else {
                            continue;
                        };
                        peak.fetch_max(in_flight(&limit), Ordering::Relaxed);
                        drop(share);
                    }
                });
            }
        });
        assert!(peak.load(Ordering::Relaxed) <= 3);
        assert_eq!(in_flight(&limit), 0);
    }

    #[test]
    fn a_name_keeps_its_count_across_limits_made_again() {
        let mut counts = Counts::default();
        let before = counts.limit("k", 1);
        let share = before.try_take().unwrap();
        // Made again (a reload) with a larger limit: the request under way still counts.
        let after = counts.limit("k", 2);
        assert_eq!(in_flight(&after), 1);
        let _second = after.try_take().unwrap();
        assert!(after.try_take().is_none());
        drop(share);
        assert_eq!(in_flight(&after), 1);
        assert_eq!(in_flight(&counts.limit("other", 1)), 0);
    }

    #[test]
    fn a_keys_refusal_is_a_429_and_the_others_a_503_with_retry_after() {
        use crate::error::{Dialect, GatewayError};
        let cases = [
            (LimitError::Key, 429, "rate_limit_error", "key_limit"),
            (
                LimitError::Model("m".into()),
                503,
                "overloaded_error",
                "model_limit",
            ),
            (
                LimitError::Deployments("m".into()),
                503,
                "overloaded_error",
                "deployment_limit",
            ),
        ];
        for (limit, status, anthropic_type, reason) in cases {
            let error = GatewayError::from(limit);
            assert_eq!(error.kind(), reason);
            for dialect in [Dialect::OpenAi, Dialect::Anthropic] {
                let response = error.to_response_in(dialect);
                assert_eq!(response.status(), status);
                assert_eq!(response.headers()["retry-after"], "1");
            }
            let fault = error.to_fault(Dialect::Anthropic);
            let body = crate::error::render(&fault, Dialect::Anthropic, crate::error::Form::Body);
            let body: serde_json::Value = serde_json::from_slice(&body).unwrap();
            assert_eq!(body["error"]["type"], anthropic_type, "{body}");
        }
    }
}
