//! The PostgreSQL backend: a connection pool shared by reads and writes.
//!
//! Writes are rare (admin changes), and each takes one transaction-scoped advisory lock
//! before anything else, so they run one at a time across every replica. That keeps
//! the change feed free of gaps: a `BIGSERIAL` taken by a transaction that commits
//! after a later one would otherwise appear behind a follower's back.
//!
//! Writes that append no change (spend, trimming the feed) skip that lock: spend is
//! written often, by every replica at once. Each batch upserts its rows in one sorted
//! order, so two batches that share rows wait for each other's row locks in the same
//! order and never deadlock.

use std::str::FromStr;

use sqlx::postgres::{PgConnectOptions, PgPool, PgPoolOptions};
use sqlx::{Pool, Postgres};

use crate::{Result, StoreError, StoreOptions};

static MIGRATIONS: sqlx::migrate::Migrator = sqlx::migrate!("migrations/postgres");

/// The advisory lock every write transaction takes ("swyd" in ASCII).
const WRITE_LOCK: i64 = 0x7377_7964;

/// Keys and teams in a PostgreSQL database.
pub(crate) struct PgStore {
    pub(crate) pool: PgPool,
}

impl PgStore {
    /// Connects to the database `url` names and applies the migrations (under
    /// PostgreSQL's migration lock, so replicas may start together).
    pub(crate) async fn open(url: &str, options: &StoreOptions) -> Result<Self> {
        let connect = PgConnectOptions::from_str(url).map_err(|_| StoreError::Url)?;
        let pool = PgPoolOptions::new()
            .max_connections(options.max_connections.max(1))
            .acquire_timeout(options.acquire_timeout)
            .connect_with(connect)
            .await?;
        MIGRATIONS.run(&pool).await?;
        Ok(Self { pool })
    }

    fn reader(&self) -> &Pool<Postgres> {
        &self.pool
    }

    /// A write transaction, after every earlier writer's commit.
    async fn begin(&self) -> Result<sqlx::Transaction<'static, Postgres>> {
        let mut tx = self.pool.begin().await?;
        sqlx::query("SELECT pg_advisory_xact_lock($1)")
            .bind(WRITE_LOCK)
            .execute(&mut *tx)
            .await?;
        Ok(tx)
    }

    /// A write transaction for what appends no change: it waits only for the row
    /// locks its statements take.
    async fn begin_off_feed(&self) -> Result<sqlx::Transaction<'static, Postgres>> {
        Ok(self.pool.begin().await?)
    }
}

crate::queries::backend!(PgStore, Postgres);
crate::usage::queries::usage_backend!(PgStore, Postgres);
