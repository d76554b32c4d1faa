//! `cache:` and a model's `cache:`, as serde reads them.

use serde::Deserialize;

use super::{ByteSize, HumanDuration};

/// `cache:`: the response cache. Absent: no answer is cached.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CacheConfig {
    /// Where answers are kept: `memory` (default), `redis`, `memory+redis`.
    pub backend: Option<CacheBackend>,
    /// Who shares an answer: `key` (default), `team`, `global`.
    pub scope: Option<CacheScope>,
    /// How long an answer is kept (default 1h).
    pub ttl: Option<HumanDuration>,
    /// In memory, an answer not asked for this long is dropped (default: never).
    pub idle_ttl: Option<HumanDuration>,
    /// The longest `x-switchyard-cache-ttl` a request may ask for (default 24h).
    pub max_ttl: Option<HumanDuration>,
    /// The memory tier's size (default 256MiB; 32MiB in front of Redis).
    pub max_bytes: Option<ByteSize>,
    /// The largest answer kept (default 1MiB).
    pub max_entry_bytes: Option<ByteSize>,
    /// Identical requests at once make one upstream call (default true).
    pub coalesce: Option<bool>,
    /// How long such a request waits for the first one's answer (default 30s).
    pub coalesce_wait: Option<HumanDuration>,
    /// Answers waiting to be written to Redis at most (default 4096).
    pub write_queue: Option<usize>,
    /// The semantic cache's settings, for the models that turn it on.
    #[serde(default)]
    pub semantic: SemanticCacheConfig,
}

/// `cache.semantic:`.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SemanticCacheConfig {
    /// Vectors kept at most, over every model and scope (default 100000).
    pub max_entries: Option<usize>,
    /// How long the embedding of a prompt may take before the lookup is given up (default 2s).
    pub timeout: Option<HumanDuration>,
}

/// Where cached answers are kept.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
pub enum CacheBackend {
    /// In this process.
    #[serde(rename = "memory")]
    Memory,
    /// In Redis, shared by every replica.
    #[serde(rename = "redis")]
    Redis,
    /// A small tier in this process in front of Redis.
    #[serde(rename = "memory+redis")]
    MemoryRedis,
}

/// Who shares a cached answer.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum CacheScope {
    /// Only the key that asked.
    Key,
    /// Every key of its team (a key without a team: itself).
    Team,
    /// Every caller.
    Global,
}

/// A model's `cache:`.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ModelCacheConfig {
    /// Whether the model's answers are cached (default true).
    pub enabled: Option<bool>,
    /// How long its answers are kept (default: `cache.ttl`).
    pub ttl: Option<HumanDuration>,
    /// Only requests with temperature 0 or a seed are cached (default false).
    pub only_deterministic: Option<bool>,
    /// Answers that call tools are kept too (default false).
    pub tool_calls: Option<bool>,
    /// Answers cut by their token cap (`finish_reason: length`) are kept too (default false).
    pub length: Option<bool>,
    /// A paraphrase of a cached prompt gets its answer (off by default).
    pub semantic: Option<ModelSemanticConfig>,
}

/// A model's `cache.semantic:`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ModelSemanticConfig {
    /// The public model that embeds the last user turn.
    pub embedding_model: String,
    /// The least cosine similarity of a match (default 0.95).
    pub threshold: Option<f64>,
    /// The `dimensions` asked of the embedding model (default: its own).
    pub dimensions: Option<u32>,
}
