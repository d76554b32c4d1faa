//! [`UsageBackend`](crate::usage::UsageBackend) for both databases, from one text, as
//! [`crate::queries`] does for keys: `usage_backend!(Store, Database)` for a type with
//! `fn reader(&self) -> &Pool<Database>`, `async fn begin_off_feed(&self)` and
//! `async fn write_usage(&self, &[UsageRow]) -> Result<u64>`: each database
//! writes records its own way (see `usage::sqlite` and `usage::postgres`);
//! and `async fn after_trim(&self) -> Result<()>`, its upkeep once an hour.

macro_rules! usage_backend {
    ($store:ident, $db:ident) => {
        mod usage_queries {
            use sqlx::types::Json;
            use sqlx::{QueryBuilder, Row as _, $db};

            use super::$store;

            use $crate::Result;
            use $crate::usage::sql;
            use $crate::usage::{
                ALL, CostQuery, CostRow, GroupBy, UsageBackend, UsageCursor, UsageFilter,
                UsagePage, UsageRecord, UsageRow, merged, spans,
            };

            type DbRow = <$db as sqlx::Database>::Row;

            fn record(row: &DbRow) -> Result<UsageRecord> {
                let status: i64 = row.try_get(11)?;
                let attempts: i64 = row.try_get(23)?;
                let Json(tags): Json<Vec<String>> = row.try_get(6)?;
                Ok(UsageRecord {
                    id: row.try_get(0)?,
                    at: row.try_get(1)?,
                    request_id: row.try_get(2)?,
                    key_id: row.try_get(3)?,
                    key_name: row.try_get(4)?,
                    team_id: row.try_get(5)?,
                    tags,
                    endpoint: row.try_get(7)?,
                    model: row.try_get(8)?,
                    provider: row.try_get(9)?,
                    deployment: row.try_get(10)?,
                    status: i32::try_from(status).unwrap_or(i32::MAX),
                    error_type: row.try_get(12)?,
                    input_tokens: row.try_get(13)?,
                    cached_input_tokens: row.try_get(14)?,
                    cache_write_tokens: row.try_get(15)?,
                    reasoning_tokens: row.try_get(16)?,
                    output_tokens: row.try_get(17)?,
                    cost_micros: row.try_get(18)?,
                    saved_micros: row.try_get(19)?,
                    cost_estimated: row.try_get(20)?,
                    latency_us: row.try_get(21)?,
                    ttft_us: row.try_get(22)?,
                    attempts: i32::try_from(attempts).unwrap_or(i32::MAX),
                    cache: row.try_get(24)?,
                    route: row.try_get(25)?,
                    stream: row.try_get(26)?,
                })
            }

            /// ` AND column = value` for each column given a value: only
            /// those, so that an index serves the query (`$n IS NULL OR …`
            /// would hide it).
            fn push_equal(
                select: &mut QueryBuilder<$db>,
                columns: &[(&'static str, &Option<String>)],
            ) {
                for (column, value) in columns {
                    if let Some(value) = value {
                        select
                            .push(" AND ")
                            .push(*column)
                            .push(" = ")
                            .push_bind(value.as_str());
                    }
                }
            }

            /// The SQL of a grouping dimension, as text.
            fn dimension(group: GroupBy) -> &'static str {
                match group {
                    GroupBy::Model => "model",
                    GroupBy::Deployment => "deployment",
                    GroupBy::Provider => "provider",
                    GroupBy::Key => "key_id",
                    GroupBy::Team => "team_id",
                    GroupBy::Tag => "tag",
                    GroupBy::Day => "CAST((start / 86400) * 86400 AS TEXT)",
                    GroupBy::Hour => "CAST(start AS TEXT)",
                }
            }

            impl $store {
                /// The sums of the rollups of `span` starting from `from` to
                /// before `to` that `query` asks for, grouped as it asks. Only
                /// the filters given are written out, so that the key serves.
                async fn sums(
                    &self,
                    query: &CostQuery,
                    span: i64,
                    from: i64,
                    to: i64,
                ) -> Result<Vec<CostRow>> {
                    let mut select = QueryBuilder::<$db>::new("SELECT ");
                    for group in &query.group_by {
                        select.push(dimension(*group)).push(", ");
                    }
                    select.push(sql::SUMS);
                    select
                        .push(" FROM usage_rollup WHERE span = ")
                        .push_bind(span);
                    select.push(" AND start >= ").push_bind(from);
                    select.push(" AND start < ").push_bind(to);
                    push_equal(
                        &mut select,
                        &[
                            ("key_id", &query.key_id),
                            ("team_id", &query.team_id),
                            ("model", &query.model),
                            ("provider", &query.provider),
                        ],
                    );
                    // The level of rollups the report needs: per key, per
                    // team over its keys, or over everyone.
                    let by = |group| query.group_by.contains(&group);
                    if query.key_id.is_some() || by(GroupBy::Key) {
                        select.push(" AND key_id <> ").push_bind(ALL);
                    } else {
                        select.push(" AND key_id = ").push_bind(ALL);
                        if query.team_id.is_some() || by(GroupBy::Team) {
                            select.push(" AND team_id <> ").push_bind(ALL);
                        } else {
                            select.push(" AND team_id = ").push_bind(ALL);
                        }
                    }
                    match &query.tag {
                        Some(tag) => {
                            select.push(" AND tag = ").push_bind(tag.as_str());
                        }
                        None if query.group_by.contains(&GroupBy::Tag) => {
                            select.push(" AND tag <> ''");
                        }
                        None => {
                            select.push(" AND tag = ''");
                        }
                    }
                    if !query.group_by.is_empty() {
                        select.push(" GROUP BY ");
                        for (i, group) in query.group_by.iter().enumerate() {
                            if i > 0 {
                                select.push(", ");
                            }
                            select.push(dimension(*group));
                        }
                    }
                    let rows = select.build().fetch_all(self.reader()).await?;
                    let dims = query.group_by.len();
                    let mut out = Vec::with_capacity(rows.len());
                    for row in &rows {
                        let sum = |i: usize| row.try_get::<i64, _>(dims + i);
                        let requests = sum(0)?;
                        if requests == 0 {
                            continue;
                        }
                        out.push(CostRow {
                            group: (0..dims)
                                .map(|i| row.try_get::<String, _>(i))
                                .collect::<std::result::Result<_, _>>()?,
                            requests,
                            errors: sum(1)?,
                            cache_hits: sum(2)?,
                            input_tokens: sum(3)?,
                            cached_input_tokens: sum(4)?,
                            cache_write_tokens: sum(5)?,
                            reasoning_tokens: sum(6)?,
                            output_tokens: sum(7)?,
                            cost_micros: sum(8)?,
                            saved_micros: sum(9)?,
                            latency_us: sum(10)?,
                        });
                    }
                    Ok(out)
                }
            }

            impl UsageBackend for $store {
                async fn insert_usage(&self, rows: &[UsageRow<'_>]) -> Result<u64> {
                    self.write_usage(rows).await
                }

                async fn usage(
                    &self,
                    filter: &UsageFilter,
                    after: Option<&UsageCursor>,
                    limit: u32,
                ) -> Result<UsagePage> {
                    let limit = limit.clamp(1, 1000);
                    // Only the filters given are written out, so that an index
                    // serves the query (`$n IS NULL OR …` would hide it).
                    let mut select = QueryBuilder::<$db>::new(sql::LIST);
                    if let Some(from) = filter.from {
                        select.push(" AND at >= ").push_bind(from);
                    }
                    if let Some(to) = filter.to {
                        select.push(" AND at < ").push_bind(to);
                    }
                    push_equal(
                        &mut select,
                        &[
                            ("key_id", &filter.key_id),
                            ("team_id", &filter.team_id),
                            ("model", &filter.model),
                            ("provider", &filter.provider),
                            ("error_type", &filter.error_type),
                            ("request_id", &filter.request_id),
                        ],
                    );
                    if let Some(status) = filter.status {
                        select.push(" AND status = ").push_bind(i64::from(status));
                    }
                    if let Some(cached) = filter.cached {
                        select
                            .push(" AND COALESCE(cache IN ('hit', 'semantic'), FALSE) = ")
                            .push_bind(cached);
                    }
                    if let Some(after) = after {
                        select
                            .push(" AND (at < ")
                            .push_bind(after.at)
                            .push(" OR (at = ")
                            .push_bind(after.at)
                            .push(" AND id < ")
                            .push_bind(after.id.as_str())
                            .push("))");
                    }
                    select
                        .push(" ORDER BY at DESC, id DESC LIMIT ")
                        .push_bind(i64::from(limit) + 1);
                    let rows = select.build().fetch_all(self.reader()).await?;
                    let mut records = rows.iter().map(record).collect::<Result<Vec<_>>>()?;
                    let more = records.len() > limit as usize;
                    records.truncate(limit as usize);
                    let next = more.then(|| records.last()).flatten().map(|r| UsageCursor {
                        at: r.at,
                        id: r.id.clone(),
                    });
                    Ok(UsagePage { records, next })
                }

                async fn costs(&self, query: &CostQuery) -> Result<Vec<CostRow>> {
                    let hourly = query.group_by.contains(&GroupBy::Hour);
                    let mut parts = Vec::new();
                    for (span, from, to) in spans(query.from, query.to, hourly) {
                        parts.push(self.sums(query, span, from, to).await?);
                    }
                    Ok(merged(parts))
                }

                async fn trim_usage(
                    &self,
                    records_before: i64,
                    rollups_before: i64,
                    limit: u32,
                ) -> Result<u64> {
                    let mut tx = self.begin_off_feed().await?;
                    let records = sqlx::query(sql::TRIM_RECORDS)
                        .bind(records_before)
                        .bind(i64::from(limit))
                        .execute(&mut *tx)
                        .await?
                        .rows_affected();
                    let rollups = sqlx::query(sql::TRIM_ROLLUPS)
                        .bind(rollups_before)
                        .bind(i64::from(limit))
                        .execute(&mut *tx)
                        .await?
                        .rows_affected();
                    tx.commit().await?;
                    self.after_trim().await?;
                    Ok(records + rollups)
                }
            }
        }
    };
}

pub(crate) use usage_backend;
