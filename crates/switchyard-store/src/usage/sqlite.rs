//! SQLite's write of a batch of records: bound inserts of a few fixed sizes,
//! then the rollups the new records add, summed here ([`rollups`]) and upserted
//! in one order.

use std::collections::HashSet;

use sqlx::{QueryBuilder, Row as _, Sqlite};

use crate::Result;
use crate::sqlite::SqliteStore;
use crate::usage::{UsageRow, rollups, sql};

type Query<'q> = sqlx::query::Query<'q, Sqlite, <Sqlite as sqlx::Database>::Arguments>;

/// Binds the columns of `r`, in the order of the record columns.
fn bind_record<'q>(query: Query<'q>, r: &UsageRow<'q>) -> Query<'q> {
    query
        .bind(r.id)
        .bind(r.at)
        .bind(r.request_id)
        .bind(r.key_id)
        .bind(r.key_name)
        .bind(r.team_id)
        .bind(sqlx::types::Json(r.tags))
        .bind(r.endpoint)
        .bind(r.model)
        .bind(r.provider)
        .bind(r.deployment)
        .bind(i64::from(r.status))
        .bind(r.error_type)
        .bind(r.input_tokens)
        .bind(r.cached_input_tokens)
        .bind(r.cache_write_tokens)
        .bind(r.reasoning_tokens)
        .bind(r.output_tokens)
        .bind(r.cost_micros)
        .bind(r.saved_micros)
        .bind(r.cost_estimated)
        .bind(r.latency_us)
        .bind(r.ttft_us)
        .bind(i64::from(r.attempts))
        .bind(r.cache)
        .bind(r.route)
        .bind(r.stream)
}

/// Which records of a batch an insert stored.
enum Inserted {
    /// Every one.
    All,
    /// Those with these ids.
    Only(HashSet<String>),
}

impl Inserted {
    /// Whether the record of `id` was stored by this insert: once only, so
    /// that an id given twice in one batch is rolled up once.
    fn take(&mut self, id: &str) -> bool {
        match self {
            Self::All => true,
            Self::Only(ids) => ids.remove(id),
        }
    }
}

/// Inserts `records` in `tx`, a few statements of fixed sizes. With `learn`,
/// answers the ids inserted (those stored already skipped); without,
/// [`Inserted::All`] when every record was new and `None` when one was not
/// (`tx` must then be undone).
async fn insert_records(
    tx: &mut sqlx::Transaction<'static, Sqlite>,
    records: &[UsageRow<'_>],
    learn: bool,
) -> Result<Option<Inserted>> {
    let mut inserted = HashSet::new();
    let mut rest = records;
    while !rest.is_empty() {
        let rows = sql::INSERT_SIZES
            .into_iter()
            .find(|&n| n <= rest.len())
            .unwrap_or(1);
        let (chunk, after) = rest.split_at(rows);
        rest = after;
        let mut insert = sqlx::query(sql::insert_records(rows, learn));
        for r in chunk {
            insert = bind_record(insert, r);
        }
        if learn {
            for row in insert.fetch_all(&mut **tx).await? {
                inserted.insert(row.try_get::<String, _>(0)?);
            }
        } else if insert.execute(&mut **tx).await?.rows_affected() != rows as u64 {
            return Ok(None);
        }
    }
    Ok(Some(if learn {
        Inserted::Only(inserted)
    } else {
        Inserted::All
    }))
}

impl SqliteStore {
    /// The hourly upkeep after a trim: `PRAGMA optimize` gathers the
    /// planner's statistics of the tables that grew, so that a report for one
    /// key reads that key's rollups by their index, not a whole time range.
    pub(crate) async fn after_trim(&self) -> Result<()> {
        let mut tx = self.begin_off_feed().await?;
        sqlx::query("PRAGMA optimize").execute(&mut *tx).await?;
        Ok(tx.commit().await?)
    }

    /// Writes `records` and adds the new ones to the rollups, in one
    /// transaction; answers how many were new.
    pub(crate) async fn write_usage(&self, records: &[UsageRow<'_>]) -> Result<u64> {
        if records.is_empty() {
            return Ok(0);
        }
        // Most batches are new records: inserted without asking which were.
        // When some were stored already (a batch written again, a spill file
        // read back), the batch is undone and inserted again, learning which
        // ids are new, so that only those are added to the rollups.
        let mut tx = self.begin_off_feed().await?;
        let mut inserted = match insert_records(&mut tx, records, false).await? {
            Some(all) => all,
            None => {
                tx.rollback().await?;
                tx = self.begin_off_feed().await?;
                insert_records(&mut tx, records, true)
                    .await?
                    .unwrap_or(Inserted::Only(Default::default()))
            }
        };
        let stored = match &inserted {
            Inserted::All => records.len() as u64,
            Inserted::Only(ids) => ids.len() as u64,
        };
        let new = records.iter().filter(|r| inserted.take(r.id));
        let rows: Vec<_> = rollups(new).into_iter().collect();
        for chunk in rows.chunks(sql::ROLLUPS_PER_STATEMENT) {
            let mut upsert = QueryBuilder::<Sqlite>::new("INSERT INTO usage_rollup (");
            upsert.push(sql::ROLLUP_COLUMNS).push(") ");
            upsert.push_values(chunk, |mut row, (key, sums)| {
                row.push_bind(key.0)
                    .push_bind(key.1)
                    .push_bind(key.2)
                    .push_bind(key.3)
                    .push_bind(key.4)
                    .push_bind(key.5)
                    .push_bind(key.6)
                    .push_bind(key.7)
                    .push_bind(sums.requests)
                    .push_bind(sums.errors)
                    .push_bind(sums.cache_hits)
                    .push_bind(sums.input_tokens)
                    .push_bind(sums.cached_input_tokens)
                    .push_bind(sums.cache_write_tokens)
                    .push_bind(sums.reasoning_tokens)
                    .push_bind(sums.output_tokens)
                    .push_bind(sums.cost_micros)
                    .push_bind(sums.saved_micros)
                    .push_bind(sums.latency_us);
            });
            upsert.push(sql::ROLLUP_ADD);
            upsert.build().execute(&mut *tx).await?;
        }
        tx.commit().await?;
        Ok(stored)
    }
}
