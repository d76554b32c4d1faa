//! `cache:` and a model's `cache:`, validated.

use std::time::Duration;

use super::Validator;
use crate::config::raw::{
    CacheBackend, CacheConfig, CacheScope, ModelCacheConfig, ModelSemanticConfig,
};
use crate::config::units::HumanDuration;
use crate::config::{Cache, Model, ModelCache, Semantic};

/// How long an answer is kept when `cache.ttl` is not set.
const DEFAULT_TTL: Duration = Duration::from_secs(3600);

/// The longest TTL a request may ask for when `cache.max_ttl` is not set.
const DEFAULT_MAX_TTL: Duration = Duration::from_secs(24 * 3600);

/// The memory tier's size when `cache.max_bytes` is not set: alone, and in front of Redis.
const DEFAULT_MAX_BYTES: u64 = 256 << 20;
const DEFAULT_LOCAL_BYTES: u64 = 32 << 20;

/// The largest answer kept when `cache.max_entry_bytes` is not set.
const DEFAULT_MAX_ENTRY_BYTES: u64 = 1 << 20;

/// How long a request waits for an identical one's answer when `cache.coalesce_wait` is not set.
const DEFAULT_COALESCE_WAIT: Duration = Duration::from_secs(30);

/// Answers waiting for Redis at most when `cache.write_queue` is not set.
const DEFAULT_WRITE_QUEUE: usize = 4096;

/// Vectors the semantic cache keeps when `cache.semantic.max_entries` is not set.
const DEFAULT_SEMANTIC_ENTRIES: usize = 100_000;

/// How long a prompt's embedding may take when `cache.semantic.timeout` is not set.
const DEFAULT_SEMANTIC_TIMEOUT: Duration = Duration::from_secs(2);

/// The least similarity of a semantic match when a model's `threshold` is not set.
const DEFAULT_THRESHOLD: f64 = 0.95;

/// The smallest memory tier: a few answers of the largest size must fit.
const MIN_MAX_BYTES: u64 = 1 << 20;

impl Validator<'_> {
    /// `cache:` with its defaults; `redis` says whether `redis.url` is set.
    pub(super) fn cache(&mut self, raw: CacheConfig, redis: bool) -> Cache {
        let backend = raw.backend.unwrap_or(CacheBackend::Memory);
        if backend != CacheBackend::Memory && !redis {
            self.error(
                &["cache", "backend"],
                "a `redis` cache needs `redis.url` (or use `backend: memory`)",
            );
        }
        let ttl = HumanDuration::or(raw.ttl, DEFAULT_TTL);
        let max_ttl = HumanDuration::or(raw.max_ttl, DEFAULT_MAX_TTL);
        for (name, value) in [("ttl", ttl), ("max_ttl", max_ttl)] {
            if value.is_zero() {
                self.error(&["cache", name], format!("`{name}` must be more than 0"));
            }
        }
        if ttl > max_ttl {
            self.error(&["cache", "ttl"], "`ttl` must be at most `max_ttl`");
        }
        let idle_ttl = raw.idle_ttl.map(|d| d.0);
        if let Some(idle) = idle_ttl {
            if idle.is_zero() {
                self.error(
                    &["cache", "idle_ttl"],
                    "`idle_ttl` must be more than 0 (leave it out for none)",
                );
            }
            if backend == CacheBackend::Redis {
                self.error(
                    &["cache", "idle_ttl"],
                    "`idle_ttl` applies to the memory tier; `backend: redis` has none",
                );
            }
        }
        let default_bytes = match backend {
            CacheBackend::MemoryRedis => DEFAULT_LOCAL_BYTES,
            CacheBackend::Memory | CacheBackend::Redis => DEFAULT_MAX_BYTES,
        };
        let max_bytes = raw.max_bytes.map_or(default_bytes, |b| b.0);
        if max_bytes < MIN_MAX_BYTES {
            self.error(&["cache", "max_bytes"], "`max_bytes` must be at least 1MiB");
        }
        let max_entry_bytes = raw.max_entry_bytes.map_or(DEFAULT_MAX_ENTRY_BYTES, |b| b.0);
        if max_entry_bytes == 0 {
            self.error(
                &["cache", "max_entry_bytes"],
                "`max_entry_bytes` must be more than 0",
            );
        } else if backend != CacheBackend::Redis && max_entry_bytes > max_bytes / 16 {
            self.error(
                &["cache", "max_entry_bytes"],
                "`max_entry_bytes` must be at most a sixteenth of `max_bytes`, so that one answer never pushes out many",
            );
        }
        let coalesce_wait = HumanDuration::or(raw.coalesce_wait, DEFAULT_COALESCE_WAIT);
        if coalesce_wait.is_zero() {
            self.error(
                &["cache", "coalesce_wait"],
                "`coalesce_wait` must be more than 0 (set `coalesce: false` to turn it off)",
            );
        }
        if raw.semantic.max_entries == Some(0) {
            self.error(
                &["cache", "semantic", "max_entries"],
                "`max_entries` must be at least 1",
            );
        }
        if raw.semantic.timeout.is_some_and(|d| d.0.is_zero()) {
            self.error(
                &["cache", "semantic", "timeout"],
                "`timeout` must be more than 0",
            );
        }
        if raw.write_queue == Some(0) {
            self.error(
                &["cache", "write_queue"],
                "`write_queue` must be at least 1",
            );
        }
        Cache {
            backend,
            scope: raw.scope.unwrap_or(CacheScope::Key),
            ttl,
            idle_ttl,
            max_ttl,
            max_bytes,
            max_entry_bytes: usize::try_from(max_entry_bytes).unwrap_or(usize::MAX),
            coalesce: raw.coalesce.unwrap_or(true),
            coalesce_wait,
            write_queue: raw.write_queue.unwrap_or(DEFAULT_WRITE_QUEUE).max(1),
            semantic_entries: raw
                .semantic
                .max_entries
                .unwrap_or(DEFAULT_SEMANTIC_ENTRIES)
                .max(1),
            semantic_timeout: HumanDuration::or(raw.semantic.timeout, DEFAULT_SEMANTIC_TIMEOUT),
        }
    }

    /// A model's `cache:` with its defaults.
    pub(super) fn model_cache(&mut self, name: &str, raw: &ModelCacheConfig) -> ModelCache {
        let ttl = raw.ttl.map(|d| d.0);
        if ttl.is_some_and(|d| d.is_zero()) {
            self.error(
                &["models", name, "cache", "ttl"],
                "`ttl` must be more than 0 (set `enabled: false` to cache nothing)",
            );
        }
        ModelCache {
            enabled: raw.enabled.unwrap_or(true),
            ttl,
            only_deterministic: raw.only_deterministic.unwrap_or(false),
            tool_calls: raw.tool_calls.unwrap_or(false),
            length: raw.length.unwrap_or(false),
            semantic: raw.semantic.as_ref().map(|s| self.semantic(name, s)),
        }
    }

    /// A model's `cache.semantic:` (its embedding model is checked with
    /// every model known, in [`Validator::semantic_models`]).
    fn semantic(&mut self, name: &str, raw: &ModelSemanticConfig) -> Semantic {
        let threshold = raw.threshold.unwrap_or(DEFAULT_THRESHOLD);
        if !(threshold > 0.0 && threshold <= 1.0) {
            self.error(
                &["models", name, "cache", "semantic", "threshold"],
                "`threshold` must be more than 0 and at most 1",
            );
        }
        if raw.dimensions == Some(0) {
            self.error(
                &["models", name, "cache", "semantic", "dimensions"],
                "`dimensions` must be at least 1",
            );
        }
        #[allow(clippy::cast_possible_truncation)]
        Semantic {
            embedding_model: raw.embedding_model.clone(),
            threshold: threshold as f32,
            dimensions: raw.dimensions,
        }
    }

    /// Every semantic cache's embedding model must be another model of the file.
    pub(super) fn semantic_models(&mut self, models: &std::collections::BTreeMap<String, Model>) {
        let names: Vec<&str> = models.keys().map(String::as_str).collect();
        for (name, model) in models {
            let Some(semantic) = &model.cache.semantic else {
                continue;
            };
            let path = [
                "models",
                name.as_str(),
                "cache",
                "semantic",
                "embedding_model",
            ];
            if semantic.embedding_model == *name {
                self.error(&path, "a model cannot embed its own prompts");
            } else if !models.contains_key(&semantic.embedding_model) {
                self.error(
                    &path,
                    crate::config::problems::unknown("model", &semantic.embedding_model, &names),
                );
            }
        }
    }
}
