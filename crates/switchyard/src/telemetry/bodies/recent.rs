//! The bodies of this replica's last requests, as the bodies log wrote
//! them, kept in memory for the dashboard's request pages: at most
//! `telemetry.recent_bodies` bytes of text, the oldest dropped first.

use std::collections::VecDeque;
use std::sync::Mutex;

/// One request's bodies as the bodies log showed them: redacted and cut.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Shown {
    /// Its `x-request-id` (the client's, or made by the gateway).
    pub request_id: String,
    /// The key that sent it, as its usage record names it (a virtual key's
    /// id, `config:` and a configured key's name), when one did: a client
    /// chooses its request ids, so the id alone could find another's bodies.
    pub key_id: Option<String>,
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

    /// The newest bodies of the request `request_id` sent with `key_id`,
    /// when still kept.
    pub fn find(&self, request_id: &str, key_id: Option<&str>) -> Option<Shown> {
        let kept = self.kept.lock().ok()?;
        kept.bodies
            .iter()
            .rev()
            .find(|s| s.request_id == request_id && s.key_id.as_deref() == key_id)
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
            key_id: Some("key_a".to_owned()),
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
        let a = Some("key_a");
        assert_eq!(
            recent.find("a", a),
            None,
            "three of 100 bytes do not fit in 250"
        );
        assert_eq!(recent.find("c", a).unwrap().request.len(), 99);
        assert!(recent.find("b", a).is_some());
        assert_eq!(
            recent.find("b", Some("key_b")),
            None,
            "another key's request of that id"
        );
        assert_eq!(recent.find("b", None), None);
        recent.keep(shown("d", 1_000));
        assert_eq!(recent.find("b", a), None);
        assert_eq!(
            recent.find("d", a),
            None,
            "one larger than the bound is not kept either"
        );
    }
}
