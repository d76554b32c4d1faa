//! The SQLite backend: one file in WAL mode, one writer connection, read-only readers.
//!
//! SQLite allows one writer at a time per file. Every write here goes through the single
//! writer connection in a `BEGIN IMMEDIATE` transaction, which takes the write lock at
//! its start: a transaction never has to upgrade a read lock, so another process
//! writing the same file (the offline CLI beside a server) makes it wait for the busy
//! timeout instead of failing with "database is locked". Readers use their own
//! read-only connections, which WAL lets run beside the writer.

use std::str::FromStr;

use sqlx::sqlite::{
    SqliteConnectOptions, SqliteJournalMode, SqlitePool, SqlitePoolOptions, SqliteSynchronous,
};
use sqlx::{Pool, Sqlite};

use crate::{Result, StoreError, StoreOptions};

/// The page size of a new file (SQLite's default is 4 KiB; an existing file keeps
/// its own). The usage log appends a batch of records per transaction, and each
/// page it dirties is written to the WAL and again at the checkpoint, one
/// `pwrite` per page: with 16 KiB pages a JSON request's share was 0.5 `pwrite`
/// against 0.8, for about 2.5 % more requests per CPU-second with the full stack.
/// 64 KiB pages measured slower than 4 KiB (each write copies a whole page).
const PAGE_SIZE: u32 = 16384;

/// Where the writer keeps its temporary files: in memory. A statement of a
/// transaction that may fail part-way (a usage batch's rollup upserts, a trim)
/// keeps a statement journal, to undo that statement alone. SQLite's default put
/// any such journal over 64 KiB in a new deleted file under /var/tmp: an open,
/// writes and a close per statement. In memory it costs no system call; it holds
/// the pages one statement changes, which the batch and trim sizes bound.
const TEMP_STORE: &str = "memory";

static MIGRATIONS: sqlx::migrate::Migrator = sqlx::migrate!("migrations/sqlite");

/// Keys and teams in a SQLite file.
pub(crate) struct SqliteStore {
    writer: SqlitePool,
    readers: SqlitePool,
}

impl SqliteStore {
    /// Opens (creating if need be) the file `url` names and applies the migrations.
    pub(crate) async fn open(url: &str, options: &StoreOptions) -> Result<Self> {
        if url.contains(":memory:") || url.contains("mode=memory") {
            return Err(StoreError::InMemory);
        }
        let base = SqliteConnectOptions::from_str(url)
            .map_err(|_| StoreError::Url)?
            .busy_timeout(options.busy_timeout)
            .foreign_keys(true);
        let writer = SqlitePoolOptions::new()
            .max_connections(1)
            .acquire_timeout(options.acquire_timeout)
            .connect_with(
                base.clone()
                    .create_if_missing(true)
                    .page_size(PAGE_SIZE)
                    .journal_mode(SqliteJournalMode::Wal)
                    .synchronous(SqliteSynchronous::Normal)
                    .pragma("temp_store", TEMP_STORE),
            )
            .await?;
        MIGRATIONS.run(&writer).await?;
        // The planner's statistics, for the tables that have none or have
        // grown since (the usage writer's hourly trim asks again).
        sqlx::query("PRAGMA optimize=0x10002")
            .execute(&writer)
            .await?;
        let readers = SqlitePoolOptions::new()
            .max_connections(options.max_connections.max(1))
            .acquire_timeout(options.acquire_timeout)
            .connect_with(base.read_only(true))
            .await?;
        Ok(Self { writer, readers })
    }

    fn reader(&self) -> &Pool<Sqlite> {
        &self.readers
    }

    /// A write transaction holding the file's write lock from its start.
    async fn begin(&self) -> Result<sqlx::Transaction<'static, Sqlite>> {
        Ok(self.writer.begin_with("BEGIN IMMEDIATE").await?)
    }

    /// The same as [`begin`](Self::begin): SQLite has one writer, whatever it writes.
    pub(crate) async fn begin_off_feed(&self) -> Result<sqlx::Transaction<'static, Sqlite>> {
        self.begin().await
    }
}

crate::queries::backend!(SqliteStore, Sqlite);
crate::usage::queries::usage_backend!(SqliteStore, Sqlite);

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]

    use sqlx::Row as _;

    use super::*;
    use crate::usage::sql;

    /// The records of one key, or of one team, are read through their partial
    /// indexes (records without a key or a team are not in them).
    #[tokio::test]
    async fn a_key_or_a_team_reads_its_records_by_its_partial_index() {
        let dir = tempfile::tempdir().unwrap();
        let url = format!("sqlite://{}", dir.path().join("plan.db").display());
        let store = SqliteStore::open(&url, &StoreOptions::default())
            .await
            .unwrap();
        for (column, index) in sql::RECORD_INDEXES {
            let query = format!("EXPLAIN QUERY PLAN {}", sql::list_by(column));
            let plan: Vec<String> = sqlx::query(sqlx::AssertSqlSafe(query))
                .fetch_all(store.reader())
                .await
                .unwrap()
                .iter()
                .map(|row| row.get::<String, _>(3))
                .collect();
            assert!(
                plan.iter().any(|step| step.contains(index)),
                "{column}: {plan:?}"
            );
        }
    }
}
