//! The usage log at scale: writes a million records (30 days, 200 keys in 20 teams,
//! 6 models, 3 providers, a tag on a third of them) to a fresh store, then times the
//! reports the admin API and `switchyard report` ask of it.
//!
//! ```sh
//! cargo run --release -p switchyard-store --example usage_scale -- sqlite:///tmp/usage.db
//! cargo run --release -p switchyard-store --example usage_scale -- postgres://user@127.0.0.1:5432/db [records] [now]
//! ```
//!
//! The store must be empty (a new SQLite file, a new PostgreSQL database). The
//! 30 days end at 2026-12-06T00:00:00Z, or with `now` at the end of this hour
//! (as `bench/dashboard.sh` seeds a store for the dashboard's pages).

#![allow(clippy::unwrap_used, clippy::expect_used, missing_docs)]

use std::time::{Duration, Instant};

use switchyard_store::{CostQuery, GroupBy, StoreOptions, UsageFilter, UsageRecord};

const DAY: i64 = 86_400;
const MODELS: [&str; 6] = [
    "gpt-4.1",
    "gpt-4.1-mini",
    "claude-sonnet-4",
    "deepseek-v3.2",
    "gemini-2.5-flash",
    "qwen-plus",
];
const PROVIDERS: [&str; 3] = ["holysheep", "deepseek", "openai"];

fn record(n: u64, start: i64, span: i64) -> UsageRecord {
    // A spread that is the same on every run (splitmix64).
    let mut mix = n.wrapping_add(0x9E37_79B9_7F4A_7C15);
    mix = (mix ^ (mix >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    mix = (mix ^ (mix >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    mix ^= mix >> 31;
    let at = start * 1000 + (n as i64 * span * 1000) / 1_000_000_000;
    let key = mix % 200;
    let model = MODELS[(mix >> 8) as usize % MODELS.len()];
    let provider = PROVIDERS[(mix >> 16) as usize % PROVIDERS.len()];
    let failed = (mix >> 24).is_multiple_of(50);
    UsageRecord {
        id: format!("{:032x}", u128::from(n) | (u128::from(mix) << 64)),
        at,
        request_id: format!("req-{n}"),
        key_id: Some(format!("key_{key:04}")),
        key_name: Some(format!("app {key}")),
        team_id: Some(format!("team_{:02}", key % 20)),
        tags: if (mix >> 32).is_multiple_of(3) {
            vec!["support".into()]
        } else {
            Vec::new()
        },
        endpoint: "chat_completions".into(),
        model: model.into(),
        provider: provider.into(),
        deployment: format!("{provider}/{model}"),
        status: if failed { 502 } else { 200 },
        error_type: failed.then(|| "upstream_5xx".into()),
        input_tokens: 500 + (mix >> 40) as i64 % 2000,
        cached_input_tokens: 0,
        cache_write_tokens: 0,
        reasoning_tokens: 0,
        output_tokens: 100 + (mix >> 48) as i64 % 400,
        cost_micros: 300 + (mix >> 20) as i64 % 5000,
        saved_micros: 0,
        cost_estimated: false,
        latency_us: 400_000,
        ttft_us: Some(150_000),
        attempts: 1,
        cache: Some("miss".into()),
        route: Some(format!("{provider}/{model}=ok")),
        stream: n.is_multiple_of(2),
    }
}

/// The median of five runs of `query`.
async fn time<F, Fut, T>(label: &str, mut query: F)
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = T>,
    T: std::fmt::Debug,
{
    let mut times: Vec<Duration> = Vec::new();
    let mut rows = String::new();
    for _ in 0..5 {
        let started = Instant::now();
        let answer = query().await;
        times.push(started.elapsed());
        rows = format!("{answer:?}").len().to_string();
    }
    times.sort();
    println!(
        "{label:<48} median {:>8.2} ms (answer {rows} bytes as Debug)",
        times[2].as_secs_f64() * 1e3
    );
}

#[tokio::main]
async fn main() {
    let mut args = std::env::args().skip(1);
    let url = args.next().expect("a store URL");
    let total: u64 = args.next().map_or(1_000_000, |n| n.parse().unwrap());
    let mut store = switchyard_store::open(&url, &StoreOptions::default())
        .await
        .unwrap();
    let end = match args.next().as_deref() {
        Some("now") => {
            let now = std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .unwrap()
                .as_secs() as i64;
            now - now % 3_600 + 3_600
        }
        _ => 1_796_515_200, // 2026-12-06T00:00:00Z
    };
    let start = end - 30 * DAY;
    let started = Instant::now();
    let batch = 1_000u64;
    let mut n = 0;
    while n < total {
        let records: Vec<UsageRecord> = (n..(n + batch).min(total))
            .map(|i| record(i * (1_000_000_000 / total.max(1)), start, 30 * DAY))
            .collect();
        store.insert_records(&records).await.unwrap();
        n += batch;
    }
    let took = started.elapsed();
    println!(
        "inserted {total} records in {:.1} s ({:.0} records/s)",
        took.as_secs_f64(),
        total as f64 / took.as_secs_f64()
    );
    if url.starts_with("postgres") {
        // PostgreSQL's autovacuum gathers the planner's statistics after a
        // write this large (within a minute); the reports are timed with them.
        use sqlx::Connection as _;
        let mut db = sqlx::PgConnection::connect(&url).await.unwrap();
        sqlx::raw_sql("ANALYZE").execute(&mut db).await.unwrap();
    } else {
        // So does the gateway's hourly `PRAGMA optimize` on SQLite (and on
        // opening the store).
        drop(store);
        store = switchyard_store::open(&url, &StoreOptions::default())
            .await
            .unwrap();
    }
    let query = |group_by: Vec<GroupBy>| CostQuery {
        from: start,
        to: end,
        group_by,
        ..CostQuery::default()
    };
    let store = &*store;
    let reports = [
        ("costs, 30 days, total", query(vec![])),
        ("costs, 30 days, by model", query(vec![GroupBy::Model])),
        (
            "costs, 30 days, by model and day",
            query(vec![GroupBy::Model, GroupBy::Day]),
        ),
        ("costs, 30 days, by key", query(vec![GroupBy::Key])),
        (
            "costs, 30 days, by team and provider",
            query(vec![GroupBy::Team, GroupBy::Provider]),
        ),
        ("costs, 30 days, by tag", query(vec![GroupBy::Tag])),
        (
            "costs, 1 day, by hour",
            CostQuery {
                from: end - DAY,
                ..query(vec![GroupBy::Hour])
            },
        ),
        (
            "costs, 30 days, one key, by day",
            CostQuery {
                key_id: Some("key_0007".into()),
                ..query(vec![GroupBy::Day])
            },
        ),
    ];
    for (label, report) in &reports {
        time(label, || store.costs(report)).await;
    }
    let filter = UsageFilter::default();
    time("records, newest page of 100", || {
        store.usage(&filter, None, 100)
    })
    .await;
    let by_key = UsageFilter {
        key_id: Some("key_0007".into()),
        ..UsageFilter::default()
    };
    time("records, one key, newest page of 100", || {
        store.usage(&by_key, None, 100)
    })
    .await;
    let failed = UsageFilter {
        status: Some(502),
        ..UsageFilter::default()
    };
    time("records, status 502, newest page of 100", || {
        store.usage(&failed, None, 100)
    })
    .await;
}
