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
}
