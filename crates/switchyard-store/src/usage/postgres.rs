//! PostgreSQL's write of a batch of records: streamed with `COPY` (its binary
//! format) into a temporary staging table, then one statement moves the new
//! ones into `usage_records` and adds them to the rollups, server-side
//! ([`sql::PG_INSERT_STAGED`]). Our side only frames the values: none is
//! bound, escaped or formatted as text, and no rollup is summed here.

use sqlx::Row as _;

use crate::Result;
use crate::postgres::PgStore;
use crate::usage::{UsageRow, sql};

/// How much `COPY` data is gathered before it is sent.
const CHUNK: usize = 64 * 1024;

/// The columns of a record (those of [`sql::PG_COPY_STAGED`]).
const COLUMNS: i16 = 27;

/// The start of a binary `COPY` stream: its signature, no flags, no header
/// extension.
const HEADER: &[u8] = b"PGCOPY\n\xff\r\n\0\0\0\0\0\0\0\0\0";

/// Rows in `COPY`'s binary format, written into one buffer: each row its
/// column count, then each value as its length in bytes and the bytes (a
/// NULL as length -1): text as it is, a `bigint` as 8 bytes and a `boolean`
/// as one, both big-endian, and `jsonb` as its version (1) and the JSON text.
/// A text value needs no escaping and a number no formatting.
struct CopyRows {
    buf: Vec<u8>,
}

impl CopyRows {
    /// A buffer that begins the stream.
    fn new(capacity: usize) -> Self {
        let mut buf = Vec::with_capacity(capacity);
        buf.extend_from_slice(HEADER);
        Self { buf }
    }

    /// Writes the columns of `r`, in the order of the record columns.
    fn record(&mut self, r: &UsageRow<'_>) {
        self.buf.extend_from_slice(&COLUMNS.to_be_bytes());
        self.text(r.id);
        self.int(r.at);
        self.text(r.request_id);
        self.opt_text(r.key_id);
        self.opt_text(r.key_name);
        self.opt_text(r.team_id);
        self.tags(r.tags);
        self.text(r.endpoint);
        self.text(r.model);
        self.text(r.provider);
        self.text(r.deployment);
        self.int(i64::from(r.status));
        self.opt_text(r.error_type);
        self.int(r.input_tokens);
        self.int(r.cached_input_tokens);
        self.int(r.cache_write_tokens);
        self.int(r.reasoning_tokens);
        self.int(r.output_tokens);
        self.int(r.cost_micros);
        self.int(r.saved_micros);
        self.boolean(r.cost_estimated);
        self.int(r.latency_us);
        match r.ttft_us {
            Some(ttft) => self.int(ttft),
            None => self.null(),
        }
        self.int(i64::from(r.attempts));
        self.opt_text(r.cache);
        self.opt_text(r.route);
        self.boolean(r.stream);
    }

    /// Ends the stream.
    fn finish(&mut self) {
        self.buf.extend_from_slice(&(-1_i16).to_be_bytes());
    }

    /// A value's length; a longer one than a column can hold (1 GB) is refused
    /// by the database, so it is written as such and the batch fails whole.
    fn length(&mut self, n: usize) {
        let n = i32::try_from(n).unwrap_or(i32::MAX);
        self.buf.extend_from_slice(&n.to_be_bytes());
    }

    fn text(&mut self, value: &str) {
        self.length(value.len());
        self.buf.extend_from_slice(value.as_bytes());
    }

    fn opt_text(&mut self, value: Option<&str>) {
        match value {
            Some(value) => self.text(value),
            None => self.null(),
        }
    }

    fn null(&mut self) {
        self.buf.extend_from_slice(&(-1_i32).to_be_bytes());
    }

    fn int(&mut self, value: i64) {
        let mut field = [0; 12];
        field[..4].copy_from_slice(&8_i32.to_be_bytes());
        field[4..].copy_from_slice(&value.to_be_bytes());
        self.buf.extend_from_slice(&field);
    }

    fn boolean(&mut self, value: bool) {
        self.buf.extend_from_slice(&[0, 0, 0, 1, u8::from(value)]);
    }

    /// The tags as `jsonb`: its version, then a JSON array of strings. Its
    /// length is known once written, so four bytes are kept for it first.
    fn tags(&mut self, tags: &[String]) {
        let at = self.buf.len();
        self.buf.extend_from_slice(&[0, 0, 0, 0, 1, b'[']);
        for (i, tag) in tags.iter().enumerate() {
            if i > 0 {
                self.buf.push(b',');
            }
            self.json_string(tag);
        }
        self.buf.push(b']');
        let n = i32::try_from(self.buf.len() - at - 4).unwrap_or(i32::MAX);
        self.buf[at..at + 4].copy_from_slice(&n.to_be_bytes());
    }

    /// `value` as a JSON string: a quote, a backslash and every control
    /// character escaped.
    fn json_string(&mut self, value: &str) {
        const HEX: &[u8; 16] = b"0123456789abcdef";
        self.buf.push(b'"');
        let bytes = value.as_bytes();
        let mut from = 0;
        for (at, &b) in bytes.iter().enumerate() {
            if b != b'"' && b != b'\\' && b >= 0x20 {
                continue;
            }
            self.buf.extend_from_slice(&bytes[from..at]);
            match b {
                b'"' => self.buf.extend_from_slice(b"\\\""),
                b'\\' => self.buf.extend_from_slice(b"\\\\"),
                _ => self.buf.extend_from_slice(&[
                    b'\\',
                    b'u',
                    b'0',
                    b'0',
                    HEX[usize::from(b >> 4)],
                    HEX[usize::from(b & 0xf)],
                ]),
            }
            from = at + 1;
        }
        self.buf.extend_from_slice(&bytes[from..]);
        self.buf.push(b'"');
    }
}

impl PgStore {
    /// The hourly upkeep after a trim: none (autovacuum gathers the
    /// planner's statistics).
    #[allow(clippy::unused_async)] // the same signature as SQLite's
    pub(crate) async fn after_trim(&self) -> Result<()> {
        Ok(())
    }

    /// Writes `records` and adds the new ones to the rollups, in one
    /// transaction; answers how many were new.
    pub(crate) async fn write_usage(&self, records: &[UsageRow<'_>]) -> Result<u64> {
        if records.is_empty() {
            return Ok(0);
        }
        let mut tx = self.pool.begin_with(sql::PG_BEGIN_STAGED).await?;
        let mut copy = tx.copy_in_raw(sql::PG_COPY_STAGED).await?;
        let mut rows = CopyRows::new(CHUNK + 4096);
        for r in records {
            rows.record(r);
            if rows.buf.len() >= CHUNK {
                copy.send(rows.buf.as_slice()).await?;
                rows.buf.clear();
            }
        }
        rows.finish();
        // On an error the copy and the transaction are dropped: sqlx then
        // fails the copy and rolls the transaction back.
        copy.send(rows.buf.as_slice()).await?;
        copy.finish().await?;
        let new: i64 = sqlx::query(sql::PG_INSERT_STAGED)
            .fetch_one(&mut *tx)
            .await?
            .try_get(0)?;
        tx.commit().await?;
        Ok(u64::try_from(new).unwrap_or_default())
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

    use std::collections::BTreeMap;

    use sqlx::Connection as _;

    use super::*;
    use crate::StoreOptions;
    use crate::usage::{UsageFilter, UsageRecord, UsageStore as _, rollups};

    /// A store on a fresh database of the server `SWITCHYARD_TEST_PG_URL` names.
    async fn store() -> PgStore {
        let Ok(base) = std::env::var("SWITCHYARD_TEST_PG_URL") else {
            panic!(
                "SWITCHYARD_TEST_PG_URL is not set, so PostgreSQL's rollups cannot be tested. \
                 Run ./scripts/test, or `source scripts/services.sh` and cargo test again"
            );
        };
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_nanos();
        let name = format!("rollups_{}_{nanos:x}", std::process::id());
        let mut admin = sqlx::PgConnection::connect(&base).await.unwrap();
        sqlx::query(sqlx::AssertSqlSafe(format!("CREATE DATABASE {name}")))
            .execute(&mut admin)
            .await
            .unwrap();
        let (server, _) = base.rsplit_once('/').unwrap();
        PgStore::open(&format!("{server}/{name}"), &StoreOptions::default())
            .await
            .unwrap()
    }

    /// Records of every shape the rollups tell apart: hours and days on either
    /// side of a boundary (1970 too), keys and teams missing or not, tags none,
    /// several, empty, repeated, and text that `COPY` and JSON must escape.
    fn records(n: u32, salt: &str) -> Vec<UsageRecord> {
        const TAGS: [&[&str]; 6] = [
            &[],
            &["support"],
            &["support", "eu"],
            &["eu", "eu"],
            &["", "batch"],
            &[
                "tab\there",
                "new\nline\r",
                "back\\slash \\N",
                "quote\" é",
                "ctl\u{1}\u{1f}",
            ],
        ];
        const TEXT: [&str; 4] = ["gpt-4.1", "odd\tmodel\\N", "\\.", "línea\nnueva"];
        let mut seed = 0x2545_f491_u64;
        let mut next = move |m: u64| {
            seed = seed.wrapping_mul(6_364_136_223_846_793_005).wrapping_add(1);
            (seed >> 33) % m
        };
        (0..n)
            .map(|i| {
                let base: i64 = if i % 7 == 0 { 0 } else { 1_796_601_599_000 };
                let at = base + next(7_200_000) as i64 - 3_600_000;
                let text = |k: u64| TEXT[k as usize].to_owned();
                UsageRecord {
                    id: format!("{salt}{i:028x}"),
                    at,
                    request_id: format!("req\t{i}"),
                    key_id: (next(4) > 0).then(|| format!("key_{}", next(3))),
                    key_name: (next(2) > 0).then(|| "a\\b".to_owned()),
                    team_id: (next(3) > 0).then(|| text(next(4))),
                    tags: TAGS[next(6) as usize]
                        .iter()
                        .map(|t| (*t).to_owned())
                        .collect(),
                    endpoint: "chat_completions".into(),
                    model: text(next(4)),
                    provider: ["relay", "", "p\\q"][next(3) as usize].into(),
                    deployment: text(next(4)),
                    status: [200, 502, 0][next(3) as usize],
                    error_type: (next(4) == 0).then(|| "upstream_5xx".to_owned()),
                    input_tokens: next(10_000) as i64,
                    cached_input_tokens: next(100) as i64,
                    cache_write_tokens: next(100) as i64,
                    reasoning_tokens: next(50) as i64,
                    output_tokens: next(1_000) as i64,
                    cost_micros: next(1_000_000) as i64 - 1,
                    saved_micros: next(100) as i64,
                    cost_estimated: next(2) == 0,
                    latency_us: next(1_000_000) as i64,
                    ttft_us: (next(2) == 0).then(|| next(1_000) as i64),
                    attempts: next(3) as i32,
                    cache: [None, Some("hit"), Some("semantic"), Some("miss")][next(4) as usize]
                        .map(str::to_owned),
                    route: (next(2) == 0).then(|| "a=ok\nb=\\fail\t".to_owned()),
                    stream: next(2) == 0,
                }
            })
            .collect()
    }

    type Key = (i64, i64, String, String, String, String, String, String);

    async fn stored_rollups(store: &PgStore) -> BTreeMap<Key, [i64; 11]> {
        let select = format!("SELECT {} FROM usage_rollup", sql::ROLLUP_COLUMNS);
        let rows = sqlx::query(sqlx::AssertSqlSafe(select))
            .fetch_all(&store.pool)
            .await
            .unwrap();
        rows.iter()
            .map(|row| {
                let key = (
                    row.get(0),
                    row.get(1),
                    row.get(2),
                    row.get(3),
                    row.get(4),
                    row.get(5),
                    row.get(6),
                    row.get(7),
                );
                (key, std::array::from_fn(|i| row.get(8 + i)))
            })
            .collect()
    }

    fn expected_rollups(records: &[UsageRecord]) -> BTreeMap<Key, [i64; 11]> {
        let rows: Vec<_> = records.iter().map(UsageRecord::row).collect();
        rollups(rows.iter())
            .into_iter()
            .map(|(k, s)| {
                let key = (
                    k.0,
                    k.1,
                    k.2.to_owned(),
                    k.3.to_owned(),
                    k.4.to_owned(),
                    k.5.to_owned(),
                    k.6.to_owned(),
                    k.7.to_owned(),
                );
                let sums = [
                    s.requests,
                    s.errors,
                    s.cache_hits,
                    s.input_tokens,
                    s.cached_input_tokens,
                    s.cache_write_tokens,
                    s.reasoning_tokens,
                    s.output_tokens,
                    s.cost_micros,
                    s.saved_micros,
                    s.latency_us,
                ];
                (key, sums)
            })
            .collect()
    }

    #[tokio::test]
    async fn rollups_summed_by_the_database_are_those_summed_in_rust() {
        let store = store().await;
        let first = records(1_000, "a");
        let second = records(600, "b");
        assert_eq!(store.insert_records(&first).await.unwrap(), 1_000);
        // Written again (a commit not acknowledged, a spill file read back).
        assert_eq!(store.insert_records(&first).await.unwrap(), 0);
        // Half old, half new, and one new record twice in the batch.
        let mut mixed: Vec<_> = first[..300].iter().chain(&second).cloned().collect();
        mixed.push(second[0].clone());
        assert_eq!(store.insert_records(&mixed).await.unwrap(), 600);
        assert_eq!(store.insert_records(&[]).await.unwrap(), 0);

        let all: Vec<_> = first.iter().chain(&second).cloned().collect();
        assert_eq!(stored_rollups(&store).await, expected_rollups(&all));

        let mut listed = Vec::new();
        let mut after = None;
        loop {
            let page = store
                .usage(&UsageFilter::default(), after.as_ref(), 1_000)
                .await
                .unwrap();
            listed.extend(page.records);
            match page.next {
                Some(next) => after = Some(next),
                None => break,
            }
        }
        let by_id = |v: &mut Vec<UsageRecord>| v.sort_by(|a, b| a.id.cmp(&b.id));
        let mut all = all;
        by_id(&mut all);
        by_id(&mut listed);
        assert_eq!(listed, all);
    }

    /// The migration that added the team and overall levels sums the rows
    /// written before it into exactly those the writer now adds.
    #[tokio::test]
    async fn the_levels_migration_rebuilds_the_levels_from_the_key_rows() {
        let store = store().await;
        let written = records(500, "m");
        assert_eq!(store.insert_records(&written).await.unwrap(), 500);
        sqlx::query("DELETE FROM usage_rollup WHERE key_id = '*'")
            .execute(&store.pool)
            .await
            .unwrap();
        let migration = include_str!("../../migrations/postgres/0004_rollup_levels.sql");
        assert_eq!(
            migration,
            include_str!("../../migrations/sqlite/0004_rollup_levels.sql"),
            "both stores migrate alike"
        );
        sqlx::raw_sql(migration).execute(&store.pool).await.unwrap();
        assert_eq!(stored_rollups(&store).await, expected_rollups(&written));
    }

    /// The records of one key, or of one team, can be read through their
    /// partial indexes (records without a key or a team are not in them).
    #[tokio::test]
    async fn a_key_or_a_team_reads_its_records_by_its_partial_index() {
        let store = store().await;
        let mut conn = store.pool.acquire().await.unwrap();
        // An empty table is read whole whatever the indexes: ask for a plan
        // that uses one if any can serve.
        sqlx::query("SET enable_seqscan = off")
            .execute(&mut *conn)
            .await
            .unwrap();
        for (column, index) in sql::RECORD_INDEXES {
            let query = format!("EXPLAIN {}", sql::list_by(column));
            let plan: Vec<String> = sqlx::query_scalar(sqlx::AssertSqlSafe(query))
                .fetch_all(&mut *conn)
                .await
                .unwrap();
            assert!(
                plan.iter().any(|step| step.contains(index)),
                "{column}: {plan:?}"
            );
        }
    }

    #[test]
    fn copy_rows_frame_values_in_the_binary_format() {
        let mut rows = CopyRows::new(64);
        rows.text("a\tb");
        rows.opt_text(None);
        rows.int(-2);
        rows.boolean(true);
        rows.tags(&["x\"y\\z\u{7}".to_owned(), String::new()]);
        rows.finish();
        let mut expected = b"PGCOPY\n\xff\r\n\0".to_vec();
        expected.extend_from_slice(&[0; 8]);
        expected.extend_from_slice(b"\0\0\0\x03a\tb");
        expected.extend_from_slice(b"\xff\xff\xff\xff");
        expected.extend_from_slice(b"\0\0\0\x08\xff\xff\xff\xff\xff\xff\xff\xfe");
        expected.extend_from_slice(b"\0\0\0\x01\x01");
        let json = br#"["x\"y\\z\u0007",""]"#;
        expected.extend_from_slice(&i32::try_from(json.len() + 1).unwrap().to_be_bytes());
        expected.push(1);
        expected.extend_from_slice(json);
        expected.extend_from_slice(b"\xff\xff");
        assert_eq!(rows.buf, expected);
    }
}
