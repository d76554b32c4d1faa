//! The semantic cache: a paraphrase of a cached prompt gets its answer.
//!
//! Only the last user turn may differ: every other part of the request —
//! model, system prompt, earlier turns, tools, parameters — makes the
//! *bucket* a search looks in (with the scope, so tenants never cross).
//! The last user turn is embedded through the gateway's own routes (any
//! embeddings model it serves), and the nearest stored turn of the bucket
//! whose cosine similarity reaches the model's threshold points at the
//! exact entry that answers.
//!
//! Vectors live in [`index::VectorIndex`]es, one per dimension, bounded in
//! number; a bucket grown large gets an IVF layer built on a blocking
//! thread and swapped in, so no request waits for a build.

pub mod index;

use std::collections::HashMap;
use std::num::NonZeroUsize;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, RwLock};
use std::time::{Duration, Instant};

use serde_json::Value;

use super::key::{self, Key, Scope};
use crate::config;
use index::VectorIndex;

/// What a request's semantic lookup needs: the bucket it searches, the
/// text to embed, and the model's settings.
#[derive(Debug, Clone)]
pub struct Probe {
    /// The compatibility key: everything but the last user turn.
    pub bucket: u128,
    /// The last user turn's text.
    pub text: String,
    /// The model's semantic settings.
    pub settings: config::Semantic,
}

impl Probe {
    /// The probe of a chat or messages `body` whose last message is the
    /// user's, with text; `None` otherwise.
    pub(super) fn of(
        body: &[u8],
        ignored: &[&str],
        scope: Scope<'_>,
        (endpoint, model): (&str, &str),
        settings: &config::Semantic,
    ) -> Option<Self> {
        let mut request: Value = serde_json::from_slice(body).ok()?;
        let messages = request.get_mut("messages")?.as_array_mut()?;
        let last = messages.pop()?;
        if last.get("role")?.as_str()? != "user" {
            return None;
        }
        let text = text_of(last.get("content")?)?;
        let rest = serde_json::to_vec(&request).ok()?;
        let hash = key::digest(&rest, ignored).ok()?.hash;
        let bucket = Key::new(scope, endpoint, model, hash, b"semantic").0;
        Some(Self {
            bucket,
            text,
            settings: settings.clone(),
        })
    }
}

/// A message's text: a string, or its text parts joined by newlines.
fn text_of(content: &Value) -> Option<String> {
    let text = match content {
        Value::String(text) => text.clone(),
        Value::Array(parts) => parts
            .iter()
            .filter(|p| p.get("type").and_then(Value::as_str) == Some("text"))
            .filter_map(|p| p.get("text").and_then(Value::as_str))
            .collect::<Vec<_>>()
            .join("\n"),
        _ => return None,
    };
    (!text.trim().is_empty()).then_some(text)
}

/// The vector indexes, one per dimension.
#[derive(Debug)]
pub struct Vectors {
    max_entries: NonZeroUsize,
    by_dims: RwLock<HashMap<usize, Arc<Held>>>,
}

/// One index and whether an IVF build for it is under way.
#[derive(Debug)]
struct Held {
    index: RwLock<VectorIndex>,
    building: AtomicBool,
}

impl Vectors {
    /// Indexes holding `max_entries` vectors each at most.
    pub fn new(max_entries: usize) -> Self {
        Self {
            max_entries: NonZeroUsize::new(max_entries).unwrap_or(NonZeroUsize::MIN),
            by_dims: RwLock::default(),
        }
    }

    fn held(&self, dims: usize) -> Option<Arc<Held>> {
        self.by_dims.read().ok()?.get(&dims).cloned()
    }

    /// The best stored match for `vector` in `bucket`, at `threshold` or
    /// above: the key of its entry and its similarity.
    pub fn nearest(&self, bucket: u128, vector: &[f32], threshold: f32) -> Option<(Key, f32)> {
        let held = self.held(vector.len())?;
        let index = held.index.read().ok()?;
        let found = index
            .search(bucket, vector, threshold, Instant::now())
            .ok()??;
        Some((Key(found.id), found.score))
    }

    /// Forgets the vector of `key` (its entry is gone).
    pub fn forget(&self, bucket: u128, dims: usize, key: Key) {
        if let Some(held) = self.held(dims)
            && let Ok(mut index) = held.index.write()
        {
            index.remove(bucket, key.0);
        }
    }

    /// Keeps `vector` in `bucket`, pointing at the entry `key`, for `ttl`.
    pub fn insert(&self, bucket: u128, key: Key, vector: &[f32], ttl: Duration) {
        let dims = vector.len();
        if dims == 0 {
            return;
        }
        let held = match self.held(dims) {
            Some(held) => held,
            None => {
                let Ok(mut all) = self.by_dims.write() else {
                    return;
                };
                all.entry(dims)
                    .or_insert_with(|| {
                        Arc::new(Held {
                            index: RwLock::new(VectorIndex::new(dims, self.max_entries)),
                            building: AtomicBool::new(false),
                        })
                    })
                    .clone()
            }
        };
        let now = Instant::now();
        let rebuild = {
            let Ok(mut index) = held.index.write() else {
                return;
            };
            if index.insert(bucket, key.0, vector, now + ttl, now).is_err() {
                return;
            }
            index.needs_rebuild(bucket)
        };
        if rebuild && !held.building.swap(true, Ordering::AcqRel) {
            rebuild_apart(held, bucket);
        }
    }

    /// Whether no vector is kept.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Vectors kept, over every dimension.
    pub fn len(&self) -> usize {
        self.by_dims.read().map_or(0, |all| {
            all.values()
                .map(|held| held.index.read().map_or(0, |i| i.len()))
                .sum()
        })
    }
}

/// Builds the IVF layer of `bucket` on a blocking thread, from a copy, and
/// swaps it in: searches wait only for the swap.
fn rebuild_apart(held: Arc<Held>, bucket: u128) {
    let job = held.index.read().ok().and_then(|i| i.rebuild_job(bucket));
    let Some(job) = job else {
        held.building.store(false, Ordering::Release);
        return;
    };
    tokio::task::spawn_blocking(move || {
        let layer = job.build();
        let retired = held.index.write().ok().map(|mut i| i.install(layer));
        held.building.store(false, Ordering::Release);
        drop(retired);
    });
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    fn settings() -> config::Semantic {
        config::Semantic {
            embedding_model: "e".into(),
            threshold: 0.9,
            dimensions: None,
        }
    }

    fn probe(body: &str) -> Option<Probe> {
        let scope = Scope { kind: b'o', id: "" };
        Probe::of(
            body.as_bytes(),
            &["model", "stream"],
            scope,
            ("chat", "m"),
            &settings(),
        )
    }

    #[test]
    fn only_the_last_user_turn_may_differ() {
        let a = probe(r#"{"messages":[{"role":"system","content":"s"},{"role":"user","content":"What is up?"}]}"#).unwrap();
        let b = probe(r#"{"stream":true,"messages":[{"role":"system","content":"s"},{"role":"user","content":[{"type":"text","text":"what's up"}]}]}"#).unwrap();
        assert_eq!(a.bucket, b.bucket);
        assert_eq!(
            (a.text.as_str(), b.text.as_str()),
            ("What is up?", "what's up")
        );
        let other_system = probe(r#"{"messages":[{"role":"system","content":"t"},{"role":"user","content":"What is up?"}]}"#).unwrap();
        assert_ne!(a.bucket, other_system.bucket);
        let warmer = probe(r#"{"temperature":1,"messages":[{"role":"system","content":"s"},{"role":"user","content":"What is up?"}]}"#).unwrap();
        assert_ne!(a.bucket, warmer.bucket);
        // The last turn must be the user's, with text.
        assert!(probe(r#"{"messages":[{"role":"assistant","content":"x"}]}"#).is_none());
        assert!(probe(r#"{"messages":[{"role":"user","content":" "}]}"#).is_none());
    }

    #[tokio::test]
    async fn a_close_vector_finds_its_entry_and_a_far_one_does_not() {
        let vectors = Vectors::new(100);
        vectors.insert(1, Key(7), &[1.0, 0.0, 0.0], Duration::from_secs(60));
        let (key, score) = vectors.nearest(1, &[0.99, 0.1, 0.0], 0.95).unwrap();
        assert_eq!(key, Key(7));
        assert!(score > 0.99);
        assert!(vectors.nearest(1, &[0.0, 1.0, 0.0], 0.95).is_none());
        assert!(vectors.nearest(2, &[1.0, 0.0, 0.0], 0.95).is_none());
        assert!(vectors.nearest(1, &[1.0, 0.0], 0.95).is_none());
        vectors.forget(1, 3, Key(7));
        assert!(vectors.nearest(1, &[1.0, 0.0, 0.0], 0.95).is_none());
        assert_eq!(vectors.len(), 0);
    }
}
