//! The usage log: one [`UsageRecord`] per request, written in batches, and rollups
//! per hour and per day kept beside the records in the same transaction, so that reports
//! ([`UsageStore::costs`]) never scan raw rows.
//!
//! A record's id is random and unique: writing a batch a second time (after a write
//! whose commit was not acknowledged, or replayed from the gateway's spill file)
//! stores nothing twice and adds nothing twice to the rollups — only the records a
//! batch really inserted are rolled up.
//!
//! Each database writes a batch its own way: SQLite binds the records and adds
//! the rollups that [`rollups`] sums here (`usage::sqlite`); PostgreSQL streams
//! the records with `COPY` and sums the same rollups itself, in the same
//! statement that keeps the new records (`usage::postgres`).

mod postgres;
pub(crate) mod queries;
pub(crate) mod sql;
mod sqlite;

use std::future::Future;

use futures_util::future::BoxFuture;
use serde::{Deserialize, Serialize};

use crate::Result;

/// What is known of one request once it ended.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct UsageRecord {
    /// Unique and random (32 hex digits).
    pub id: String,
    /// When the request arrived, unix milliseconds.
    pub at: i64,
    /// `x-request-id`.
    pub request_id: String,
    /// The virtual key's id (or a config key's name), when one authenticated it.
    pub key_id: Option<String>,
    /// The key's name.
    pub key_name: Option<String>,
    /// The key's team.
    pub team_id: Option<String>,
    /// Tags from `x-switchyard-tags` or the body's `metadata.tags`.
    pub tags: Vec<String>,
    /// The endpoint (`chat_completions`, `messages`, `embeddings`, …).
    pub endpoint: String,
    /// The public model asked for ('' when the request ended before it was read).
    pub model: String,
    /// The provider of the deployment that served it ('' when none was tried).
    pub provider: String,
    /// The deployment, `provider/upstream-model` ('' when none was tried).
    pub deployment: String,
    /// The status sent to the client (0 when none was).
    pub status: i32,
    /// The error's type when it failed.
    pub error_type: Option<String>,
    /// Prompt tokens, cached and cache-written ones included.
    pub input_tokens: i64,
    /// Prompt tokens read from the provider's prompt cache.
    pub cached_input_tokens: i64,
    /// Prompt tokens written to the provider's prompt cache.
    pub cache_write_tokens: i64,
    /// Output tokens spent on reasoning (part of `output_tokens`).
    pub reasoning_tokens: i64,
    /// Output tokens.
    pub output_tokens: i64,
    /// What it cost, micro-USD.
    pub cost_micros: i64,
    /// What it saved (a cache hit, a cheaper fallback model than asked for), micro-USD.
    pub saved_micros: i64,
    /// The provider reported no usage: the tokens, and so the cost, are estimates.
    pub cost_estimated: bool,
    /// Arrival to end, microseconds.
    pub latency_us: i64,
    /// Arrival to the first content sent, microseconds.
    pub ttft_us: Option<i64>,
    /// Upstream calls made.
    pub attempts: i32,
    /// What the response cache made of it (`hit`, `miss`, …), when on.
    pub cache: Option<String>,
    /// `x-switchyard-route`: each attempt and its outcome.
    pub route: Option<String>,
    /// The client asked for a stream.
    pub stream: bool,
}

/// A record as it is written: [`UsageRecord`]'s fields, borrowed from whatever
/// holds them, so that a writer hands the store what it has without copying
/// it into a record first ([`UsageRecord::row`] borrows a record's). It
/// serializes as its record does.
#[derive(Debug, Clone, Copy, Serialize)]
#[allow(missing_docs)] // each field is the record's of the same name
pub struct UsageRow<'a> {
    pub id: &'a str,
    pub at: i64,
    pub request_id: &'a str,
    pub key_id: Option<&'a str>,
    pub key_name: Option<&'a str>,
    pub team_id: Option<&'a str>,
    pub tags: &'a [String],
    pub endpoint: &'a str,
    pub model: &'a str,
    pub provider: &'a str,
    pub deployment: &'a str,
    pub status: i32,
    pub error_type: Option<&'a str>,
    pub input_tokens: i64,
    pub cached_input_tokens: i64,
    pub cache_write_tokens: i64,
    pub reasoning_tokens: i64,
    pub output_tokens: i64,
    pub cost_micros: i64,
    pub saved_micros: i64,
    pub cost_estimated: bool,
    pub latency_us: i64,
    pub ttft_us: Option<i64>,
    pub attempts: i32,
    pub cache: Option<&'a str>,
    pub route: Option<&'a str>,
    pub stream: bool,
}

impl UsageRecord {
    /// The record's fields, borrowed.
    pub fn row(&self) -> UsageRow<'_> {
        UsageRow {
            id: &self.id,
            at: self.at,
            request_id: &self.request_id,
            key_id: self.key_id.as_deref(),
            key_name: self.key_name.as_deref(),
            team_id: self.team_id.as_deref(),
            tags: &self.tags,
            endpoint: &self.endpoint,
            model: &self.model,
            provider: &self.provider,
            deployment: &self.deployment,
            status: self.status,
            error_type: self.error_type.as_deref(),
            input_tokens: self.input_tokens,
            cached_input_tokens: self.cached_input_tokens,
            cache_write_tokens: self.cache_write_tokens,
            reasoning_tokens: self.reasoning_tokens,
            output_tokens: self.output_tokens,
            cost_micros: self.cost_micros,
            saved_micros: self.saved_micros,
            cost_estimated: self.cost_estimated,
            latency_us: self.latency_us,
            ttft_us: self.ttft_us,
            attempts: self.attempts,
            cache: self.cache.as_deref(),
            route: self.route.as_deref(),
            stream: self.stream,
        }
    }
}

/// Which records a listing returns; every field set must match.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct UsageFilter {
    /// From this time on, unix milliseconds.
    pub from: Option<i64>,
    /// Before this time, unix milliseconds.
    pub to: Option<i64>,
    /// Of this key.
    pub key_id: Option<String>,
    /// Of this team.
    pub team_id: Option<String>,
    /// For this public model.
    pub model: Option<String>,
    /// Served by this provider.
    pub provider: Option<String>,
    /// Answered with this status.
    pub status: Option<i32>,
    /// Failed with this error type.
    pub error_type: Option<String>,
    /// Answered from the response cache (`true`) or not (`false`).
    pub cached: Option<bool>,
    /// With this `x-request-id` (best with a time range: no index holds it).
    pub request_id: Option<String>,
}

/// Where a listing of records goes on: after the record with this time and id
/// (records are listed newest first).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct UsageCursor {
    /// The last record's time.
    pub at: i64,
    /// The last record's id.
    pub id: String,
}

/// One page of records, newest first, and where the next one starts.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UsagePage {
    /// The records.
    pub records: Vec<UsageRecord>,
    /// The cursor of the next page, when there may be one.
    pub next: Option<UsageCursor>,
}

/// A dimension that costs are grouped by.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum GroupBy {
    /// The public model.
    Model,
    /// The deployment (`provider/upstream-model`).
    Deployment,
    /// The provider.
    Provider,
    /// The key's id.
    Key,
    /// The team's id.
    Team,
    /// Each tag (a request with two tags counts under both).
    Tag,
    /// The UTC day: unix seconds at its start.
    Day,
    /// The UTC hour: unix seconds at its start.
    Hour,
}

impl GroupBy {
    /// Its name in the API (`model`, `day`, …).
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Model => "model",
            Self::Deployment => "deployment",
            Self::Provider => "provider",
            Self::Key => "key",
            Self::Team => "team",
            Self::Tag => "tag",
            Self::Day => "day",
            Self::Hour => "hour",
        }
    }

    /// The dimension named `name`.
    pub fn parse(name: &str) -> Option<Self> {
        [
            Self::Model,
            Self::Deployment,
            Self::Provider,
            Self::Key,
            Self::Team,
            Self::Tag,
            Self::Day,
            Self::Hour,
        ]
        .into_iter()
        .find(|g| g.as_str() == name)
    }
}

/// A question about costs: a time range, filters, and the dimensions to group by.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct CostQuery {
    /// From this time on, unix seconds (counted from the start of its hour).
    pub from: i64,
    /// Before this time, unix seconds (the hour it falls in is left out unless it
    /// starts exactly here).
    pub to: i64,
    /// Of this key.
    pub key_id: Option<String>,
    /// Of this team.
    pub team_id: Option<String>,
    /// For this public model.
    pub model: Option<String>,
    /// Served by this provider.
    pub provider: Option<String>,
    /// Of requests with this tag.
    pub tag: Option<String>,
    /// The dimensions, in order (none: one total row).
    pub group_by: Vec<GroupBy>,
}

/// The sums of one group.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct CostRow {
    /// The group's value of each dimension of [`CostQuery::group_by`], in order
    /// (times as unix seconds, written out as text).
    pub group: Vec<String>,
    /// Requests.
    pub requests: i64,
    /// Of which failed.
    pub errors: i64,
    /// Of which answered from the response cache.
    pub cache_hits: i64,
    /// Prompt tokens.
    pub input_tokens: i64,
    /// Prompt tokens read from a provider's cache.
    pub cached_input_tokens: i64,
    /// Prompt tokens written to a provider's cache.
    pub cache_write_tokens: i64,
    /// Reasoning tokens.
    pub reasoning_tokens: i64,
    /// Output tokens.
    pub output_tokens: i64,
    /// Cost, micro-USD.
    pub cost_micros: i64,
    /// Saved, micro-USD.
    pub saved_micros: i64,
    /// The sum of the requests' latencies, microseconds.
    pub latency_us: i64,
}

impl CostRow {
    /// Adds `other`'s sums to these (the group stays).
    pub fn add(&mut self, other: &CostRow) {
        self.requests += other.requests;
        self.errors += other.errors;
        self.cache_hits += other.cache_hits;
        self.input_tokens += other.input_tokens;
        self.cached_input_tokens += other.cached_input_tokens;
        self.cache_write_tokens += other.cache_write_tokens;
        self.reasoning_tokens += other.reasoning_tokens;
        self.output_tokens += other.output_tokens;
        self.cost_micros += other.cost_micros;
        self.saved_micros += other.saved_micros;
        self.latency_us += other.latency_us;
    }
}

/// The usage log in the store.
pub trait UsageStore: Send + Sync + 'static {
    /// Writes `rows` and adds them to the rollups, in one transaction; a record
    /// already stored (by its id) is skipped. Answers how many were new.
    fn insert_usage<'a>(&'a self, rows: &'a [UsageRow<'a>]) -> BoxFuture<'a, Result<u64>>;
    /// [`UsageStore::insert_usage`] of owned records.
    fn insert_records<'a>(&'a self, records: &'a [UsageRecord]) -> BoxFuture<'a, Result<u64>> {
        Box::pin(async move {
            let rows: Vec<UsageRow<'_>> = records.iter().map(UsageRecord::row).collect();
            self.insert_usage(&rows).await
        })
    }
    /// The records matching `filter`, newest first, `limit` at most, after `after`.
    fn usage<'a>(
        &'a self,
        filter: &'a UsageFilter,
        after: Option<&'a UsageCursor>,
        limit: u32,
    ) -> BoxFuture<'a, Result<UsagePage>>;
    /// The sums of the rollups that `query` asks for, largest cost first.
    fn costs<'a>(&'a self, query: &'a CostQuery) -> BoxFuture<'a, Result<Vec<CostRow>>>;
    /// Deletes records older than `records_before` (unix ms) and rollups older than
    /// `rollups_before` (unix seconds), at most `limit` rows of each; answers how
    /// many rows went.
    fn trim_usage(
        &self,
        records_before: i64,
        rollups_before: i64,
        limit: u32,
    ) -> BoxFuture<'_, Result<u64>>;
}

/// What a database backend implements; see [`UsageStore`] for each method.
pub(crate) trait UsageBackend: Send + Sync + 'static {
    fn insert_usage(&self, rows: &[UsageRow<'_>]) -> impl Future<Output = Result<u64>> + Send;
    fn usage(
        &self,
        filter: &UsageFilter,
        after: Option<&UsageCursor>,
        limit: u32,
    ) -> impl Future<Output = Result<UsagePage>> + Send;
    fn costs(&self, query: &CostQuery) -> impl Future<Output = Result<Vec<CostRow>>> + Send;
    fn trim_usage(
        &self,
        records_before: i64,
        rollups_before: i64,
        limit: u32,
    ) -> impl Future<Output = Result<u64>> + Send;
}

impl<B: UsageBackend> UsageStore for B {
    fn insert_usage<'a>(&'a self, rows: &'a [UsageRow<'a>]) -> BoxFuture<'a, Result<u64>> {
        Box::pin(UsageBackend::insert_usage(self, rows))
    }
    fn usage<'a>(
        &'a self,
        filter: &'a UsageFilter,
        after: Option<&'a UsageCursor>,
        limit: u32,
    ) -> BoxFuture<'a, Result<UsagePage>> {
        Box::pin(UsageBackend::usage(self, filter, after, limit))
    }
    fn costs<'a>(&'a self, query: &'a CostQuery) -> BoxFuture<'a, Result<Vec<CostRow>>> {
        Box::pin(UsageBackend::costs(self, query))
    }
    fn trim_usage(
        &self,
        records_before: i64,
        rollups_before: i64,
        limit: u32,
    ) -> BoxFuture<'_, Result<u64>> {
        Box::pin(UsageBackend::trim_usage(
            self,
            records_before,
            rollups_before,
            limit,
        ))
    }
}

/// The sums a batch adds to one rollup row.
#[derive(Debug, Clone, Copy, Default)]
pub(crate) struct Sums {
    pub(crate) requests: i64,
    pub(crate) errors: i64,
    pub(crate) cache_hits: i64,
    pub(crate) input_tokens: i64,
    pub(crate) cached_input_tokens: i64,
    pub(crate) cache_write_tokens: i64,
    pub(crate) reasoning_tokens: i64,
    pub(crate) output_tokens: i64,
    pub(crate) cost_micros: i64,
    pub(crate) saved_micros: i64,
    pub(crate) latency_us: i64,
}

impl Sums {
    /// Adds another row's sums.
    fn merge(&mut self, other: &Self) {
        self.requests += other.requests;
        self.errors += other.errors;
        self.cache_hits += other.cache_hits;
        self.input_tokens += other.input_tokens;
        self.cached_input_tokens += other.cached_input_tokens;
        self.cache_write_tokens += other.cache_write_tokens;
        self.reasoning_tokens += other.reasoning_tokens;
        self.output_tokens += other.output_tokens;
        self.cost_micros += other.cost_micros;
        self.saved_micros += other.saved_micros;
        self.latency_us += other.latency_us;
    }

    fn add(&mut self, r: &UsageRow<'_>) {
        self.requests += 1;
        self.errors += i64::from(r.error_type.is_some());
        self.cache_hits += i64::from(r.cache.is_some_and(is_hit));
        self.input_tokens += r.input_tokens;
        self.cached_input_tokens += r.cached_input_tokens;
        self.cache_write_tokens += r.cache_write_tokens;
        self.reasoning_tokens += r.reasoning_tokens;
        self.output_tokens += r.output_tokens;
        self.cost_micros += r.cost_micros;
        self.saved_micros += r.saved_micros;
        self.latency_us += r.latency_us;
    }
}

/// Whether a record's cache result is a hit (`hit` or `semantic`: not a miss
/// or a bypass).
pub(crate) fn is_hit(cache: &str) -> bool {
    matches!(cache, "hit" | "semantic")
}

/// How long an hourly and a daily rollup row span, in seconds.
pub(crate) const HOUR: i64 = 3_600;
pub(crate) const DAY: i64 = 86_400;

/// A rollup row's key: span, start, key, team, model, provider, deployment, tag
/// (borrowed from the records it sums).
pub(crate) type RollupKey<'a> = (
    i64,
    i64,
    &'a str,
    &'a str,
    &'a str,
    &'a str,
    &'a str,
    &'a str,
);

/// The `key_id` of the rollup rows of a team over all its keys, and with
/// [`ALL`] as `team_id` too, of everyone.
pub(crate) const ALL: &str = "*";

/// The rollup rows `records` add to — hourly and daily, per key, per team
/// (key [`ALL`]) and overall (key and team [`ALL`]) — in one order (so that
/// two writers lock shared rows in the same order and never deadlock). SQLite's
/// writes use it; PostgreSQL's sum the same rows in SQL
/// ([`sql::PG_INSERT_STAGED`]), which a test holds to this.
pub(crate) fn rollups<'a>(
    records: impl Iterator<Item = &'a UsageRow<'a>>,
) -> std::collections::BTreeMap<RollupKey<'a>, Sums> {
    let mut rows = std::collections::BTreeMap::<RollupKey<'a>, Sums>::new();
    for r in records {
        let secs = r.at.div_euclid(1000);
        for span in [HOUR, DAY] {
            let start = secs.div_euclid(span) * span;
            let key = |tag: &'a str| {
                (
                    span,
                    start,
                    r.key_id.unwrap_or_default(),
                    r.team_id.unwrap_or_default(),
                    r.model,
                    r.provider,
                    r.deployment,
                    tag,
                )
            };
            rows.entry(key("")).or_default().add(r);
            for tag in r.tags.iter().filter(|t| !t.is_empty()) {
                rows.entry(key(tag)).or_default().add(r);
            }
        }
    }
    // The team and overall rows, from the key rows (fewer than the records).
    let per_key: Vec<(RollupKey<'a>, Sums)> = rows.iter().map(|(k, s)| (*k, *s)).collect();
    for ((span, start, _, team, model, provider, deployment, tag), sums) in per_key {
        for team in [team, ALL] {
            let key = (span, start, ALL, team, model, provider, deployment, tag);
            rows.entry(key).or_default().merge(&sums);
        }
    }
    rows
}

/// The parts of a cost report's range `from`..`to` (unix seconds, `from` at
/// the start of its hour) and the span of rollups each is read from: whole
/// days from the daily rows, the ragged ends (and every hourly report) from
/// the hourly ones.
pub(crate) fn spans(from: i64, to: i64, hourly: bool) -> Vec<(i64, i64, i64)> {
    let from = from.div_euclid(HOUR) * HOUR;
    let first_day = (from + DAY - 1).div_euclid(DAY) * DAY;
    let last_day = to.div_euclid(DAY) * DAY;
    if hourly || first_day >= last_day {
        return vec![(HOUR, from, to)];
    }
    let mut parts = vec![(DAY, first_day, last_day)];
    if from < first_day {
        parts.push((HOUR, from, first_day));
    }
    if last_day < to {
        parts.push((HOUR, last_day, to));
    }
    parts
}

/// Cost rows of the same group from several parts of a range, added up; the
/// largest cost first, then by group.
pub(crate) fn merged(parts: Vec<Vec<CostRow>>) -> Vec<CostRow> {
    let mut by_group: std::collections::BTreeMap<Vec<String>, CostRow> = Default::default();
    for row in parts.into_iter().flatten() {
        by_group
            .entry(row.group.clone())
            .or_insert_with(|| CostRow {
                group: row.group.clone(),
                ..CostRow::default()
            })
            .add(&row);
    }
    let mut rows: Vec<CostRow> = by_group.into_values().collect();
    rows.sort_by(|a, b| {
        b.cost_micros
            .cmp(&a.cost_micros)
            .then_with(|| a.group.cmp(&b.group))
    });
    rows
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn whole_days_are_read_from_daily_rows_and_the_ends_from_hourly_ones() {
        let day = 1_796_515_200; // a midnight
        // From 02:30 (counted from 02:00) to 02:00 two days later.
        assert_eq!(
            spans(day + 9_000, day + 2 * DAY + 7_200, false),
            vec![
                (DAY, day + DAY, day + 2 * DAY),
                (HOUR, day + 7_200, day + DAY),
                (HOUR, day + 2 * DAY, day + 2 * DAY + 7_200),
            ]
        );
        assert_eq!(
            spans(day, day + 2 * DAY, false),
            vec![(DAY, day, day + 2 * DAY)]
        );
        // Less than a whole day, or grouped by hour: hourly rows only.
        assert_eq!(
            spans(day + 3_600, day + DAY, false),
            vec![(HOUR, day + 3_600, day + DAY)]
        );
        assert_eq!(
            spans(day, day + 2 * DAY, true),
            vec![(HOUR, day, day + 2 * DAY)]
        );
    }
}
