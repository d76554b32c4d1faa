//! Switchyard's durable state: virtual keys, their secrets' digests, teams, and the
//! change feed that tells every replica what changed.
//!
//! The gateway sees the [`Store`] trait, never SQL. [`open`] picks the backend by the
//! URL's scheme and applies the embedded migrations (one folder per backend):
//!
//! - `sqlite://path/to/switchyard.db`: a file in WAL mode, with a busy timeout and
//!   foreign keys on; one writer connection (every write is a `BEGIN IMMEDIATE`
//!   transaction) beside a pool of read-only connections (an in-memory database is
//!   refused);
//! - `postgres://user@host/db`: a connection pool.
//!
//! Every write that changes a key, a secret or a team appends a row to the change feed
//! ([`Store::changes_after`]) in the same transaction, so a follower that reads the
//! feed in order misses nothing. Statements bind every value; no value is ever part of
//! the SQL text.
//!
//! Spend is a ledger of micro-USD per key or team and budget period, kept apart from
//! the change feed: the gateway adds it in batches ([`Store::add_spend`]), one
//! transaction each, which on PostgreSQL lock their rows in one order so that
//! replicas adding at once never deadlock.

mod backend;
mod error;
mod postgres;
mod queries;
mod row;
mod sql;
mod sqlite;
mod types;
mod usage;

use std::sync::Arc;
use std::time::Duration;

use futures_util::future::BoxFuture;

pub use error::{MigrateFailure, StoreError, Unavailable};
pub use types::{
    Budget, BudgetPeriod, Change, ChangeKind, KeyFilter, KeyMatch, KeyPatch, KeyRecord, Limits,
    LiveKey, NewKey, NewSecret, NewTeam, Page, PageRequest, SecretRecord, SessionRecord,
    SpendDelta, SpendScope, TeamPatch, TeamRecord,
};
pub use usage::{
    CostQuery, CostRow, GroupBy, UsageCursor, UsageFilter, UsagePage, UsageRecord, UsageRow,
    UsageStore,
};

/// The result of a store operation.
pub type Result<T> = std::result::Result<T, StoreError>;

/// Keys, secrets, teams and (through [`UsageStore`]) the usage log, in SQLite or
/// PostgreSQL.
///
/// It is dyn-compatible (`Arc<dyn Store>`): each method returns a boxed future. Gets
/// answer `Ok(None)` for an unknown id; changes answer [`StoreError::NotFound`].
pub trait Store: UsageStore + Send + Sync + 'static {
    /// Checks that the database answers.
    fn ping(&self) -> BoxFuture<'_, Result<()>>;

    /// Creates a team.
    fn create_team<'a>(&'a self, team: NewTeam) -> BoxFuture<'a, Result<TeamRecord>>;
    /// The team `id`, deleted or not.
    fn team<'a>(&'a self, id: &'a str) -> BoxFuture<'a, Result<Option<TeamRecord>>>;
    /// Teams that are not deleted, by id.
    fn list_teams<'a>(&'a self, page: &'a PageRequest) -> BoxFuture<'a, Result<Page<TeamRecord>>>;
    /// Changes the fields `patch` names.
    fn update_team<'a>(
        &'a self,
        id: &'a str,
        patch: TeamPatch,
    ) -> BoxFuture<'a, Result<TeamRecord>>;
    /// Deletes the team (softly: the row stays). Refused while it has unrevoked keys.
    fn delete_team<'a>(&'a self, id: &'a str) -> BoxFuture<'a, Result<TeamRecord>>;

    /// Creates a key with its first secret.
    fn create_key<'a>(&'a self, key: NewKey, secret: NewSecret)
    -> BoxFuture<'a, Result<KeyRecord>>;
    /// The key `id`, revoked or not.
    fn key<'a>(&'a self, id: &'a str) -> BoxFuture<'a, Result<Option<KeyRecord>>>;
    /// The key that has a secret with this digest, and that secret (it may have
    /// expired: the caller compares `expires_at` with its clock).
    fn key_by_digest<'a>(&'a self, digest: &'a [u8; 32])
    -> BoxFuture<'a, Result<Option<KeyMatch>>>;
    /// Keys matching `filter`, by id.
    fn list_keys<'a>(
        &'a self,
        filter: &'a KeyFilter,
        page: &'a PageRequest,
    ) -> BoxFuture<'a, Result<Page<KeyRecord>>>;
    /// Changes the fields `patch` names.
    fn update_key<'a>(&'a self, id: &'a str, patch: KeyPatch) -> BoxFuture<'a, Result<KeyRecord>>;
    /// Gives the key a new current secret; its earlier secrets keep working until
    /// `grace_until` (unix seconds), or their own earlier expiry.
    fn rotate_key<'a>(
        &'a self,
        id: &'a str,
        secret: NewSecret,
        grace_until: i64,
    ) -> BoxFuture<'a, Result<KeyRecord>>;
    /// Revokes the key for good (its row and spend stay). Revoking twice keeps the
    /// first instant.
    fn revoke_key<'a>(&'a self, id: &'a str) -> BoxFuture<'a, Result<KeyRecord>>;
    /// The key's secrets, newest first.
    fn secrets<'a>(&'a self, key_id: &'a str) -> BoxFuture<'a, Result<Vec<SecretRecord>>>;

    /// Unrevoked keys by id, each with its secrets that work now (current or in
    /// their grace), for loading a key directory. Read [`last_change`](Self::last_change)
    /// first and follow the feed from there: what changes while the pages are read
    /// then comes again through [`changes_after`](Self::changes_after).
    fn live_keys<'a>(&'a self, page: &'a PageRequest) -> BoxFuture<'a, Result<Page<LiveKey>>>;

    /// At most `limit` changes with a sequence number above `seq`, in order.
    fn changes_after(&self, seq: i64, limit: u32) -> BoxFuture<'_, Result<Vec<Change>>>;
    /// The highest sequence number in the feed, 0 when it is empty.
    fn last_change(&self) -> BoxFuture<'_, Result<i64>>;
    /// Deletes the changes made before `before` (unix seconds) and answers how many.
    /// Only the feed's head goes (an old change behind a newer one stays), so a
    /// follower finds no gap in what is left; sequence numbers are never given again.
    fn trim_changes(&self, before: i64) -> BoxFuture<'_, Result<u64>>;

    /// Adds every delta in one transaction. Deltas of the same scope, id and period
    /// are summed first ([`StoreError::Overflow`] past an `i64`); an empty slice
    /// touches nothing.
    fn add_spend<'a>(&'a self, deltas: &'a [SpendDelta]) -> BoxFuture<'a, Result<()>>;
    /// Claims the alert that `scope_id`'s spend crossed `threshold_pct` % of its budget
    /// in the period starting `period_start`: `true` for the one caller (of every
    /// replica) that claimed it first, who sends it; `false` for every later one.
    fn claim_alert<'a>(
        &'a self,
        scope: SpendScope,
        scope_id: &'a str,
        period_start: i64,
        threshold_pct: u8,
    ) -> BoxFuture<'a, Result<bool>>;
    /// Gives back an alert claimed by [`Store::claim_alert`] that could not be
    /// sent: the next caller to claim it sends it.
    fn release_alert<'a>(
        &'a self,
        scope: SpendScope,
        scope_id: &'a str,
        period_start: i64,
        threshold_pct: u8,
    ) -> BoxFuture<'a, Result<()>>;
    /// The spend of `scope_id` in the period starting `period_start`, 0 when none.
    fn spend<'a>(
        &'a self,
        scope: SpendScope,
        scope_id: &'a str,
        period_start: i64,
    ) -> BoxFuture<'a, Result<i64>>;

    /// Keeps a new dashboard session, and deletes the sessions that have expired.
    fn create_session<'a>(&'a self, session: &'a SessionRecord) -> BoxFuture<'a, Result<()>>;
    /// The session whose token has this digest, if it has not expired at `now`
    /// (unix seconds).
    fn session<'a>(
        &'a self,
        digest: &'a [u8; 32],
        now: i64,
    ) -> BoxFuture<'a, Result<Option<SessionRecord>>>;
    /// Ends the session whose token has this digest (signing out).
    fn delete_session<'a>(&'a self, digest: &'a [u8; 32]) -> BoxFuture<'a, Result<()>>;
}

/// How the store connects.
#[derive(Clone, Debug)]
pub struct StoreOptions {
    /// Connections in the pool (PostgreSQL), or read-only connections (SQLite).
    pub max_connections: u32,
    /// How long an operation waits for a free connection.
    pub acquire_timeout: Duration,
    /// How long SQLite waits on a lock held by another process.
    pub busy_timeout: Duration,
}

impl Default for StoreOptions {
    fn default() -> Self {
        Self {
            max_connections: 8,
            acquire_timeout: Duration::from_secs(5),
            busy_timeout: Duration::from_secs(5),
        }
    }
}

/// Opens the store at `url` (`sqlite://…` or `postgres://…`) and applies its
/// migrations.
pub async fn open(url: &str, options: &StoreOptions) -> Result<Arc<dyn Store>> {
    if url.starts_with("sqlite:") {
        Ok(Arc::new(sqlite::SqliteStore::open(url, options).await?))
    } else if url.starts_with("postgres:") || url.starts_with("postgresql:") {
        Ok(Arc::new(postgres::PgStore::open(url, options).await?))
    } else {
        Err(StoreError::Scheme)
    }
}
