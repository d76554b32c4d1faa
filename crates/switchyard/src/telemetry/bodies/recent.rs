//! The bodies of this replica's last requests, as the bodies log wrote
//! them, kept in memory for the dashboard's request pages: at most
//! [`RECENT_BYTES`] of text, the oldest dropped first.

use std::collections::VecDeque;
use std::sync::Mutex;

/// Bytes of bodies kept at most (each body is already cut at
/// `telemetry.log_bodies_max`).
pub const RECENT_BYTES: usize = 8 << 20;

/// One request's bodies as the bodies log showed them: redacted and cut.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Shown {
    /// Its `x-request-id`.
    pub request_id: String,
    /// The request body.
    pub request: String,
    /// The answer, when one was sent.
    pub answer: Option<String>,
}

impl Shown {
    fn bytes(&self) -> usize {
        self.request_id.len() + self.request.len() + self.answer.as_ref().map_or(0, String::len)
    }
}

/// The last requests' bodies.
#[derive(Debug)]
pub struct RecentBodies {
    max_bytes: usize,
    kept: Mutex<Kept>,
}

#[derive(Debug, Default)]
struct Kept {
    bodies: VecDeque<Shown>,
    bytes: usize,
}

impl Default for RecentBodies {
    fn default() -> Self {
        Self::new(RECENT_BYTES)
    }
}

impl RecentBodies {
    /// Keeps at most `max_bytes` of bodies.
    pub fn new(max_bytes: usize) -> Self {
        Self {
            max_bytes,
            kept: Mutex::default(),
        }
    }

    /// Keeps `shown`, dropping the oldest past the bound.
    pub fn keep(&self, shown: Shown) {
        let Ok(mut kept) = self.kept.lock() else {
            return;
        };
        kept.bytes += shown.bytes();
        kept.bodies.push_back(shown);
        while kept.bytes > self.max_bytes {
            let Some(old) = kept.bodies.pop_front() else {
                break;
            };
            kept.bytes -= old.bytes();
        }
    }

    /// The newest bodies of the request `request_id`, when still kept.
    pub fn find(&self, request_id: &str) -> Option<Shown> {
        let kept = self.kept.lock().ok()?;
        kept.bodies
            .iter()
            .rev()
            .find(|s| s.request_id == request_id)
            .cloned()
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    fn shown(id: &str, size: usize) -> Shown {
        Shown {
            request_id: id.to_owned(),
            request: "x".repeat(size),
            answer: None,
        }
    }

    #[test]
    fn the_oldest_go_first_past_the_bound() {
        let recent = RecentBodies::new(250);
        for id in ["a", "b", "c"] {
            recent.keep(shown(id, 99));
        }
        assert_eq!(
            recent.find("a"),
            None,
            "three of 100 bytes do not fit in 250"
        );
        assert_eq!(recent.find("c").unwrap().request.len(), 99);
        assert!(recent.find("b").is_some());
        recent.keep(shown("d", 1_000));
        assert_eq!(recent.find("b"), None);
        assert_eq!(
            recent.find("d"),
            None,
            "one larger than the bound is not kept either"
        );
    }
}
