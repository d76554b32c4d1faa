//! The usage log's statements. Those of the shared code (listings, reports,
//! trimming) are the same text for SQLite and PostgreSQL (see [`crate::sql`]);
//! each database writes records its own way (SQLite: bound inserts,
//! PostgreSQL: `COPY` into a staging table), and their statements follow those.
//! Statements that take a variable number of rows or a chosen grouping are
//! built with sqlx's `QueryBuilder` from the fixed parts here; every value is
//! bound or copied, never written into the SQL text.

/// The columns of `usage_records`, in the order rows are bound and read.
macro_rules! record_columns {
    () => {
        "id, at, request_id, key_id, key_name, team_id, tags, endpoint, model, provider, \
         deployment, status, error_type, input_tokens, cached_input_tokens, \
         cache_write_tokens, reasoning_tokens, output_tokens, cost_micros, saved_micros, \
         cost_estimated, latency_us, ttft_us, attempts, cache, route, stream"
    };
}

/// The columns of a record.
const RECORD_COLUMNS: usize = 27;

/// How many rows one insert of records takes: a batch is written as
/// statements of these sizes, largest first, so that only these few texts are
/// ever prepared (each once per connection, then reused).
///
/// Each statement is a trip to sqlx's worker thread and back: on a busy core,
/// two context switches. Small statements cost SQLite fewer instructions a
/// row (the text values of 16 rows fit in the connection's lookaside memory,
/// those of 256 went to `malloc` one by one: 40.3k instructions a record at
/// 256 rows, 35.5k at 8), but 64 rows, a quarter of the trips of 16 for about
/// 2k more instructions a request, served 4 % more requests per CPU-second
/// with the usage log on (256 did no better).
pub(crate) const INSERT_SIZES: [usize; 4] = [64, 16, 4, 1];

/// SQLite's insert of `rows` records (one of [`INSERT_SIZES`]); a record
/// already stored is skipped, and with `returning` the ids of those inserted
/// are answered. `OR IGNORE`, not `ON CONFLICT DO NOTHING`: a statement that
/// cannot fail part-way needs no statement journal, the copy SQLite otherwise
/// makes of every page a statement of a transaction changes, to undo that
/// statement alone (5k instructions a record with 16 KiB pages). The columns
/// `OR IGNORE` also covers, the NOT NULL ones, are bound from values that are
/// never null. Its placeholders are anonymous (`?`): SQLite looks a numbered
/// one up by a walk of every name before it, which a statement of thousands
/// makes quadratic.
pub(crate) fn insert_records(rows: usize, returning: bool) -> &'static str {
    static TEXTS: std::sync::OnceLock<[[String; 4]; 2]> = std::sync::OnceLock::new();
    let texts = TEXTS.get_or_init(|| {
        [false, true].map(|returning| INSERT_SIZES.map(|rows| insert_text(rows, returning)))
    });
    let at = INSERT_SIZES
        .iter()
        .position(|&n| n == rows)
        .unwrap_or(INSERT_SIZES.len() - 1);
    &texts[usize::from(returning)][at]
}

fn insert_text(rows: usize, returning: bool) -> String {
    let mut text = concat!(
        "INSERT OR IGNORE INTO usage_records (",
        record_columns!(),
        ") VALUES "
    )
    .to_owned();
    for row in 0..rows {
        text.push_str(if row == 0 { "(" } else { ", (" });
        for column in 0..RECORD_COLUMNS {
            text.push_str(if column == 0 { "?" } else { ", ?" });
        }
        text.push(')');
    }
    if returning {
        text.push_str(" RETURNING id");
    }
    text
}

/// How many rollup rows one statement binds (SQLite's limit is 32,766 values).
pub(crate) const ROLLUPS_PER_STATEMENT: usize = 500;

/// The columns of `usage_rollup`: its key, then its sums.
macro_rules! rollup_columns {
    () => {
        "span, start, key_id, team_id, model, provider, deployment, tag, requests, errors, \
         cache_hits, input_tokens, cached_input_tokens, cache_write_tokens, reasoning_tokens, \
         output_tokens, cost_micros, saved_micros, latency_us"
    };
}

/// What an upsert of rollup rows adds to a row already there.
macro_rules! rollup_add {
    () => {
        " ON CONFLICT (span, start, key_id, team_id, model, provider, deployment, tag) \
         DO UPDATE SET requests = usage_rollup.requests + excluded.requests, \
         errors = usage_rollup.errors + excluded.errors, \
         cache_hits = usage_rollup.cache_hits + excluded.cache_hits, \
         input_tokens = usage_rollup.input_tokens + excluded.input_tokens, \
         cached_input_tokens = usage_rollup.cached_input_tokens + excluded.cached_input_tokens, \
         cache_write_tokens = usage_rollup.cache_write_tokens + excluded.cache_write_tokens, \
         reasoning_tokens = usage_rollup.reasoning_tokens + excluded.reasoning_tokens, \
         output_tokens = usage_rollup.output_tokens + excluded.output_tokens, \
         cost_micros = usage_rollup.cost_micros + excluded.cost_micros, \
         saved_micros = usage_rollup.saved_micros + excluded.saved_micros, \
         latency_us = usage_rollup.latency_us + excluded.latency_us"
    };
}

/// The columns of `usage_rollup`: its key, then its sums.
pub(crate) const ROLLUP_COLUMNS: &str = rollup_columns!();

/// What an upsert of rollup rows adds to a row already there.
pub(crate) const ROLLUP_ADD: &str = rollup_add!();

/// The columns of a listing of records (its filters, cursor and order follow).
pub(crate) const LIST: &str = concat!(
    "SELECT ",
    record_columns!(),
    " FROM usage_records WHERE TRUE"
);

/// The records' partial indexes, each with the column it serves.
#[cfg(test)]
pub(crate) const RECORD_INDEXES: [(&str, &str); 2] = [
    ("key_id", "usage_records_key_at"),
    ("team_id", "usage_records_team_at"),
];

/// A page of the request log filtered by `column`, as [`LIST`] is written out,
/// for a test to ask the planner how it reads it.
#[cfg(test)]
pub(crate) fn list_by(column: &str) -> String {
    format!("{LIST} AND at >= 0 AND {column} = 'k' ORDER BY at DESC, id DESC LIMIT 51")
}

/// The sums of the rollups (the `SELECT` list follows the grouping's columns), as
/// `BIGINT` (PostgreSQL sums `BIGINT`s as `NUMERIC`) and 0 over no rows.
pub(crate) const SUMS: &str = "CAST(COALESCE(SUM(requests), 0) AS BIGINT), \
    CAST(COALESCE(SUM(errors), 0) AS BIGINT), \
    CAST(COALESCE(SUM(cache_hits), 0) AS BIGINT), \
    CAST(COALESCE(SUM(input_tokens), 0) AS BIGINT), \
    CAST(COALESCE(SUM(cached_input_tokens), 0) AS BIGINT), \
    CAST(COALESCE(SUM(cache_write_tokens), 0) AS BIGINT), \
    CAST(COALESCE(SUM(reasoning_tokens), 0) AS BIGINT), \
    CAST(COALESCE(SUM(output_tokens), 0) AS BIGINT), \
    CAST(COALESCE(SUM(cost_micros), 0) AS BIGINT), \
    CAST(COALESCE(SUM(saved_micros), 0) AS BIGINT), \
    CAST(COALESCE(SUM(latency_us), 0) AS BIGINT)";

/// Deletes up to `$2` records older than `$1`.
pub(crate) const TRIM_RECORDS: &str = "DELETE FROM usage_records WHERE (at, id) IN \
    (SELECT at, id FROM usage_records WHERE at < $1 ORDER BY at LIMIT $2)";
/// Deletes up to `$2` rollup rows that start before `$1`.
pub(crate) const TRIM_ROLLUPS: &str = "DELETE FROM usage_rollup WHERE (span, start, key_id, \
    team_id, model, provider, deployment, tag) IN (SELECT span, start, key_id, team_id, model, \
    provider, deployment, tag FROM usage_rollup WHERE start < $1 ORDER BY start LIMIT $2)";

/// PostgreSQL: begins the transaction that writes a batch, with this
/// connection's staging table (temporary, emptied at every commit, made on the
/// connection's first batch; the notice that it exists already is not sent).
pub(crate) const PG_BEGIN_STAGED: &str = "BEGIN; SET LOCAL client_min_messages = warning; \
    CREATE TEMP TABLE IF NOT EXISTS usage_staging (LIKE usage_records) ON COMMIT DELETE ROWS";

/// PostgreSQL: streams a batch into the staging table, in `COPY`'s binary format.
pub(crate) const PG_COPY_STAGED: &str = concat!(
    "COPY usage_staging (",
    record_columns!(),
    ") FROM STDIN (FORMAT binary)"
);

/// PostgreSQL: moves the staged records that are new into `usage_records`
/// (those stored already, by `(at, id)`, are skipped) and adds exactly those to
/// the rollups, as `usage::rollups` does: per hour and per day (the start of the
/// UTC hour or day of `at`, rounded down also before 1970), per key, per team
/// (key '*') and overall (key and team '*'), a missing key or team as '', one
/// row untagged and one more per non-empty tag (a tag given twice counts twice). The rows are grouped and upserted in the order of their key,
/// text compared byte by byte (`COLLATE "C"`, as Rust compares `str`: one sort
/// serves both), so that two writers lock shared rows in the same order.
/// Answers how many records were new.
pub(crate) const PG_INSERT_STAGED: &str = concat!(
    "WITH fresh AS (INSERT INTO usage_records (",
    record_columns!(),
    ") SELECT ",
    record_columns!(),
    " FROM usage_staging ON CONFLICT (at, id) DO NOTHING RETURNING at, key_id, team_id, \
     model, provider, deployment, tags, error_type, cache, input_tokens, \
     cached_input_tokens, cache_write_tokens, reasoning_tokens, output_tokens, cost_micros, \
     saved_micros, latency_us), \
     rolled AS (INSERT INTO usage_rollup (",
    rollup_columns!(),
    ") SELECT span, start, key_id, team_id, model, provider, deployment, tag, COUNT(*), \
     COUNT(error_type), COUNT(*) FILTER (WHERE cache IN ('hit', 'semantic')), \
     CAST(SUM(input_tokens) AS BIGINT), CAST(SUM(cached_input_tokens) AS BIGINT), \
     CAST(SUM(cache_write_tokens) AS BIGINT), CAST(SUM(reasoning_tokens) AS BIGINT), \
     CAST(SUM(output_tokens) AS BIGINT), CAST(SUM(cost_micros) AS BIGINT), \
     CAST(SUM(saved_micros) AS BIGINT), CAST(SUM(latency_us) AS BIGINT) \
     FROM (SELECT s.span, \
     (n.at - ((n.at % (1000 * s.span)) + 1000 * s.span) % (1000 * s.span)) / 1000 AS start, \
     CASE WHEN l.level = 0 THEN COALESCE(n.key_id, '') ELSE '*' END COLLATE \"C\" AS key_id, \
     CASE WHEN l.level = 2 THEN '*' ELSE COALESCE(n.team_id, '') END COLLATE \"C\" AS team_id, \
     n.model COLLATE \"C\" AS model, \
     n.provider COLLATE \"C\" AS provider, n.deployment COLLATE \"C\" AS deployment, \
     t.tag COLLATE \"C\" AS tag, n.error_type, n.cache, n.input_tokens, \
     n.cached_input_tokens, n.cache_write_tokens, n.reasoning_tokens, n.output_tokens, \
     n.cost_micros, n.saved_micros, n.latency_us \
     FROM fresh n CROSS JOIN (VALUES (CAST(3600 AS BIGINT)), (86400)) AS s (span) \
     CROSS JOIN (VALUES (0), (1), (2)) AS l (level) \
     CROSS JOIN LATERAL (SELECT '' UNION ALL SELECT e FROM jsonb_array_elements_text(n.tags) \
     AS e WHERE e <> '') AS t (tag)) AS r \
     GROUP BY span, start, key_id, team_id, model, provider, deployment, tag \
     ORDER BY span, start, key_id, team_id, model, provider, deployment, tag",
    rollup_add!(),
    ") SELECT COUNT(*) FROM fresh"
);
