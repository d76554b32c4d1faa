//! `store:`, as serde reads it.

use serde::Deserialize;

use super::HumanDuration;

/// `store:`: where keys, teams and spend are kept.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StoreConfig {
    /// `sqlite://path` or `postgres://user@host/db` (default `sqlite://switchyard.db`).
    pub url: Option<String>,
    /// Connections in the pool (PostgreSQL) or read-only connections (SQLite) (default 8).
    pub max_connections: Option<u32>,
    /// How long an operation waits for a free connection (default 5s).
    pub acquire_timeout: Option<HumanDuration>,
    /// How long SQLite waits on a lock another process holds (default 5s).
    pub busy_timeout: Option<HumanDuration>,
    /// How often the change feed is read, so changes made elsewhere arrive (default 500ms).
    pub poll_interval: Option<HumanDuration>,
    /// How often settled spend is written, in one batch (default 1s).
    pub flush_interval: Option<HumanDuration>,
    /// Settled costs waiting for the writer at most before a request's end waits apart (default 65536).
    pub spend_queue: Option<usize>,
}

/// `usage:`: the usage log, one record per request, written to the store.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct UsageConfig {
    /// Whether records are kept (default true).
    pub enabled: Option<bool>,
    /// How often records are written, in batches (default 1s).
    pub flush_interval: Option<HumanDuration>,
    /// Records written in one transaction at most (default 1000).
    pub batch_size: Option<usize>,
    /// Records waiting for the writer at most before a request's end waits apart (default 65536).
    pub queue: Option<usize>,
    /// Records kept in memory while the store cannot take them; past it they go to the spill file (default 100000).
    pub buffer: Option<usize>,
    /// Where records wait, past the buffer and at shutdown, while the store cannot take them (default `switchyard-usage.spill.jsonl`).
    pub spill_file: Option<String>,
    /// How long records are kept (default 30d; `0s`: forever).
    pub retention: Option<HumanDuration>,
    /// How long the hourly rollups that reports read are kept (default 400d; `0s`: forever).
    pub rollup_retention: Option<HumanDuration>,
}

/// `alerts:`: spend alerts to a webhook.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AlertsConfig {
    /// Where alerts are posted (Slack-compatible JSON); absent: no alerts.
    pub webhook_url: Option<String>,
    /// Percentages of a budget that raise an alert when spend reaches them (default [80, 95]).
    pub thresholds: Option<Vec<u8>>,
    /// How long one post may take (default 5s).
    pub timeout: Option<HumanDuration>,
    /// How many times a failed post is tried again, after 1s, 2s, 4s, … (default 5).
    pub retries: Option<u32>,
}

/// `limits:`: rate limits beyond each key's and team's own.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LimitsConfig {
    /// Over every request the gateway serves.
    pub global: Option<RatesConfig>,
    /// For virtual keys that set none of their own.
    pub key_defaults: Option<RatesConfig>,
    /// Per public model, over every caller.
    #[serde(default)]
    pub models: std::collections::BTreeMap<String, RatesConfig>,
}

/// Requests and tokens per minute.
#[derive(Debug, Default, Clone, Copy, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RatesConfig {
    /// Requests per minute.
    pub rpm: Option<u64>,
    /// Tokens per minute.
    pub tpm: Option<u64>,
}

/// `redis:`: limits shared by every replica.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RedisConfig {
    /// `redis://host:port/db`; empty or absent: limits stay in each process.
    pub url: Option<String>,
    /// How long a request waits on Redis at most (default 50ms).
    pub timeout: Option<HumanDuration>,
    /// When Redis cannot answer: `fail_open` (default) or `fail_closed`.
    pub on_error: Option<OnError>,
    /// The start of every key, in braces (a Redis Cluster hash tag) (default `sy`).
    pub prefix: Option<String>,
}

/// What limited requests get while Redis cannot answer.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum OnError {
    /// Limits are taken in each process meanwhile.
    FailOpen,
    /// Limited requests are refused (503) meanwhile.
    FailClosed,
}
