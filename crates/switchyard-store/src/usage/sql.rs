//! The usage log's statements, the same text for SQLite and PostgreSQL (see
//! [`crate::sql`]). Statements that take a variable number of rows or a chosen
//! grouping are built with sqlx's `QueryBuilder` from the fixed parts here; every
//! value is bound.

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
/// ever prepared (each once per connection, then reused). Small statements are
/// cheaper per row in SQLite: the text values of 16 rows fit in the
/// connection's lookaside memory, those of 256 went to `malloc` one by one
/// (measured: 40.3k instructions a record at 256 rows, 36.7k at 32, 35.5k at 8).
pub(crate) const INSERT_SIZES: [usize; 3] = [16, 4, 1];

/// The insert of `rows` records (one of [`INSERT_SIZES`]); a record already
/// stored is skipped, and with `returning` the ids of those inserted are
/// answered. SQLite's placeholders are anonymous (`?`): it looks a numbered one
/// up by a walk of every name before it, which a statement of thousands makes
/// quadratic.
pub(crate) fn insert_records(rows: usize, anonymous: bool, returning: bool) -> &'static str {
    type Texts = [[[String; 3]; 2]; 2];
    static TEXTS: std::sync::OnceLock<Texts> = std::sync::OnceLock::new();
    let texts = TEXTS.get_or_init(|| {
        [false, true].map(|anonymous| {
            [false, true]
                .map(|returning| INSERT_SIZES.map(|rows| insert_text(rows, anonymous, returning)))
        })
    });
    let at = INSERT_SIZES.iter().position(|&n| n == rows).unwrap_or(2);
    &texts[usize::from(anonymous)][usize::from(returning)][at]
}

fn insert_text(rows: usize, anonymous: bool, returning: bool) -> String {
    use std::fmt::Write as _;
    let mut text = concat!(
        "INSERT INTO usage_records (",
        record_columns!(),
        ") VALUES "
    )
    .to_owned();
    for row in 0..rows {
        text.push_str(if row == 0 { "(" } else { ", (" });
        for column in 0..RECORD_COLUMNS {
            text.push_str(if column == 0 { "" } else { ", " });
            if anonymous {
                text.push('?');
            } else {
                let _ = write!(text, "${}", row * RECORD_COLUMNS + column + 1);
            }
        }
        text.push(')');
    }
    text.push_str(" ON CONFLICT (at, id) DO NOTHING");
    if returning {
        text.push_str(" RETURNING id");
    }
    text
}

/// How many rollup rows one statement binds (SQLite's limit is 32,766 values).
pub(crate) const ROLLUPS_PER_STATEMENT: usize = 500;

/// The columns of `usage_rollup`: its key, then its sums.
pub(crate) const ROLLUP_COLUMNS: &str = "span, start, key_id, team_id, model, provider, deployment, \
    tag, requests, errors, cache_hits, input_tokens, cached_input_tokens, \
    cache_write_tokens, reasoning_tokens, output_tokens, cost_micros, saved_micros, latency_us";

/// What an upsert of rollup rows adds to a row already there.
pub(crate) const ROLLUP_ADD: &str = " ON CONFLICT (span, start, key_id, team_id, model, \
    provider, deployment, tag) DO UPDATE SET requests = usage_rollup.requests + excluded.requests, \
    errors = usage_rollup.errors + excluded.errors, \
    cache_hits = usage_rollup.cache_hits + excluded.cache_hits, \
    input_tokens = usage_rollup.input_tokens + excluded.input_tokens, \
    cached_input_tokens = usage_rollup.cached_input_tokens + excluded.cached_input_tokens, \
    cache_write_tokens = usage_rollup.cache_write_tokens + excluded.cache_write_tokens, \
    reasoning_tokens = usage_rollup.reasoning_tokens + excluded.reasoning_tokens, \
    output_tokens = usage_rollup.output_tokens + excluded.output_tokens, \
    cost_micros = usage_rollup.cost_micros + excluded.cost_micros, \
    saved_micros = usage_rollup.saved_micros + excluded.saved_micros, \
    latency_us = usage_rollup.latency_us + excluded.latency_us";

/// The columns of a listing of records (its filters, cursor and order follow).
pub(crate) const LIST: &str = concat!(
    "SELECT ",
    record_columns!(),
    " FROM usage_records WHERE TRUE"
);

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
