//! The usage log's behaviour, the same on every backend (see `conformance.rs` for how
//! the backends are set up).

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, missing_docs)]

mod backends;

use std::sync::Arc;

use backends::{conformance, open, postgres, sqlite};
use switchyard_store::{CostQuery, GroupBy, Store, UsageCursor, UsageFilter, UsageRecord};

/// 2026-12-06T10:00:00Z, in unix seconds.
const HOUR: i64 = 1_796_551_200;

fn record(n: u32, at_ms: i64) -> UsageRecord {
    UsageRecord {
        id: format!("{n:032x}"),
        at: at_ms,
        request_id: format!("req-{n}"),
        key_id: Some(format!("key_{}", n % 2)),
        key_name: Some(format!("key {}", n % 2)),
        team_id: Some("team_a".into()),
        tags: Vec::new(),
        endpoint: "chat_completions".into(),
        model: "gpt-4.1".into(),
        provider: "relay".into(),
        deployment: "relay/gpt-4.1".into(),
        status: 200,
        error_type: None,
        input_tokens: 100,
        cached_input_tokens: 40,
        cache_write_tokens: 0,
        reasoning_tokens: 5,
        output_tokens: 20,
        cost_micros: 1_000 + i64::from(n),
        saved_micros: 0,
        cost_estimated: false,
        latency_us: 1_500,
        ttft_us: Some(700),
        attempts: 1,
        cache: Some("miss".into()),
        route: Some("relay/gpt-4.1=ok".into()),
        stream: n.is_multiple_of(3),
    }
}

fn costs(group_by: &[GroupBy]) -> CostQuery {
    CostQuery {
        from: HOUR - 86_400,
        to: HOUR + 86_400,
        group_by: group_by.to_vec(),
        ..CostQuery::default()
    }
}

async fn records_round_trip_and_are_written_once(store: &dyn Store) {
    let mut batch: Vec<UsageRecord> = (0..3)
        .map(|n| record(n, HOUR * 1000 + i64::from(n)))
        .collect();
    batch[0].tags = vec!["support".into(), "eu".into()];
    batch[1].error_type = Some("upstream_5xx".into());
    batch[1].status = 502;
    batch[1].ttft_us = None;
    batch[2].cache = Some("hit".into());
    batch[2].saved_micros = 77;
    assert_eq!(store.insert_records(&batch).await.unwrap(), 3);
    // The same batch again (a write whose commit was not acknowledged, a replay).
    assert_eq!(store.insert_records(&batch).await.unwrap(), 0);
    assert_eq!(store.insert_records(&[]).await.unwrap(), 0);
    // A batch of an old record and a new one: only the new one is added.
    let fresh = record(9, HOUR * 1000 + 9);
    let mixed = [batch[1].clone(), fresh.clone()];
    assert_eq!(store.insert_records(&mixed).await.unwrap(), 1);
    batch.push(fresh);
    // A new record given twice in one batch (a spill file read back beside
    // the buffer that wrote it): stored and rolled up once.
    let doubled = record(10, HOUR * 1000 + 10);
    let twice = [doubled.clone(), batch[0].clone(), doubled.clone()];
    assert_eq!(store.insert_records(&twice).await.unwrap(), 1);
    batch.push(doubled);

    let page = store
        .usage(&UsageFilter::default(), None, 10)
        .await
        .unwrap();
    let mut expected = batch.clone();
    expected.reverse();
    assert_eq!(page.records, expected);
    assert_eq!(page.next, None);

    let total = store.costs(&costs(&[])).await.unwrap();
    assert_eq!(total.len(), 1);
    let t = &total[0];
    assert!(t.group.is_empty());
    assert_eq!((t.requests, t.errors, t.cache_hits), (5, 1, 1));
    assert_eq!(
        (
            t.input_tokens,
            t.cached_input_tokens,
            t.reasoning_tokens,
            t.output_tokens
        ),
        (500, 200, 25, 100)
    );
    assert_eq!((t.cost_micros, t.saved_micros), (5_022, 77));
    assert_eq!(t.latency_us, 7_500);
}

async fn costs_group_and_filter(store: &dyn Store) {
    let mut batch = Vec::new();
    for n in 0..12u32 {
        // Two days, three hours each day, two keys.
        let day = i64::from(n / 6);
        let hour = i64::from(n % 3);
        let mut r = record(n, (HOUR + day * 86_400 + hour * 3_600) * 1000 + 5);
        if n % 4 == 0 {
            r.model = "deepseek-v3.2".into();
            r.tags = vec!["batch".into()];
        } else {
            r.tags = vec!["support".into(), "batch".into()];
        }
        batch.push(r);
    }
    store.insert_records(&batch).await.unwrap();
    let query = CostQuery {
        from: HOUR,
        to: HOUR + 3 * 86_400,
        ..costs(&[GroupBy::Model])
    };
    let by_model = store.costs(&query).await.unwrap();
    let sum = |pick: &dyn Fn(&UsageRecord) -> bool| -> (i64, i64) {
        batch
            .iter()
            .filter(|r| pick(r))
            .fold((0, 0), |(n, c), r| (n + 1, c + r.cost_micros))
    };
    let deepseek = sum(&|r| r.model == "deepseek-v3.2");
    let gpt = sum(&|r| r.model == "gpt-4.1");
    let got: Vec<_> = by_model
        .iter()
        .map(|r| (r.group.clone(), r.requests, r.cost_micros))
        .collect();
    // Largest cost first.
    assert_eq!(
        got,
        vec![
            (vec!["gpt-4.1".to_owned()], gpt.0, gpt.1),
            (vec!["deepseek-v3.2".to_owned()], deepseek.0, deepseek.1),
        ]
    );

    let by_day_key = store
        .costs(&CostQuery {
            group_by: vec![GroupBy::Day, GroupBy::Key],
            ..query.clone()
        })
        .await
        .unwrap();
    assert_eq!(by_day_key.len(), 4);
    for row in &by_day_key {
        let day: i64 = row.group[0].parse().unwrap();
        assert_eq!(day % 86_400, 0);
        let expect = sum(&|r| {
            r.at / 1000 / 86_400 * 86_400 == day && r.key_id.as_deref() == Some(&row.group[1])
        });
        assert_eq!((row.requests, row.cost_micros), expect, "{row:?}");
    }

    let by_hour = store
        .costs(&CostQuery {
            group_by: vec![GroupBy::Hour],
            ..query.clone()
        })
        .await
        .unwrap();
    assert_eq!(by_hour.len(), 6);
    assert_eq!(by_hour.iter().map(|r| r.requests).sum::<i64>(), 12);

    // A request counts under each of its tags.
    let by_tag = store
        .costs(&CostQuery {
            group_by: vec![GroupBy::Tag],
            ..query.clone()
        })
        .await
        .unwrap();
    let tags: Vec<_> = by_tag
        .iter()
        .map(|r| (r.group[0].as_str(), r.requests))
        .collect();
    assert_eq!(tags, vec![("batch", 12), ("support", 9)]);
    let support = store
        .costs(&CostQuery {
            tag: Some("support".into()),
            ..query.clone()
        })
        .await
        .unwrap();
    assert_eq!(support[0].requests, 9);

    let filtered = store
        .costs(&CostQuery {
            key_id: Some("key_1".into()),
            model: Some("gpt-4.1".into()),
            ..query.clone()
        })
        .await
        .unwrap();
    assert_eq!(
        (filtered[0].requests, filtered[0].cost_micros),
        sum(&|r| r.key_id.as_deref() == Some("key_1") && r.model == "gpt-4.1")
    );
    // A range with nothing in it: no rows.
    let empty = store
        .costs(&CostQuery {
            from: HOUR + 10 * 86_400,
            to: HOUR + 11 * 86_400,
            ..query
        })
        .await
        .unwrap();
    assert!(empty.is_empty());
}

async fn records_page_newest_first_by_cursor(store: &dyn Store) {
    let mut batch: Vec<UsageRecord> = (0..25)
        .map(|n| record(n, HOUR * 1000 + i64::from(n / 2)))
        .collect();
    batch[7].status = 429;
    batch[7].error_type = Some("rate_limited".into());
    batch[8].cache = Some("semantic".into());
    batch[9].cache = None;
    store.insert_records(&batch).await.unwrap();
    let mut seen = Vec::new();
    let mut after: Option<UsageCursor> = None;
    loop {
        let page = store
            .usage(&UsageFilter::default(), after.as_ref(), 10)
            .await
            .unwrap();
        assert!(page.records.len() <= 10);
        seen.extend(page.records.iter().map(|r| (r.at, r.id.clone())));
        match page.next {
            Some(next) => after = Some(next),
            None => break,
        }
    }
    let mut expected: Vec<_> = batch.iter().map(|r| (r.at, r.id.clone())).collect();
    expected.sort();
    expected.reverse();
    assert_eq!(seen, expected);

    let only = |filter: UsageFilter| async move {
        store
            .usage(&filter, None, 100)
            .await
            .unwrap()
            .records
            .into_iter()
            .map(|r| r.request_id)
            .collect::<Vec<_>>()
    };
    assert_eq!(
        only(UsageFilter {
            status: Some(429),
            ..UsageFilter::default()
        })
        .await,
        vec!["req-7"]
    );
    assert_eq!(
        only(UsageFilter {
            error_type: Some("rate_limited".into()),
            ..UsageFilter::default()
        })
        .await,
        vec!["req-7"]
    );
    assert_eq!(
        only(UsageFilter {
            cached: Some(true),
            ..UsageFilter::default()
        })
        .await,
        vec!["req-8"]
    );
    assert_eq!(
        only(UsageFilter {
            cached: Some(false),
            ..UsageFilter::default()
        })
        .await
        .len(),
        24
    );
    assert_eq!(
        only(UsageFilter {
            key_id: Some("key_1".into()),
            from: Some(HOUR * 1000 + 10),
            ..UsageFilter::default()
        })
        .await,
        vec!["req-23", "req-21"]
    );
}

async fn trim_deletes_what_is_older(store: &dyn Store) {
    let old = record(1, (HOUR - 40 * 86_400) * 1000);
    let new = record(2, HOUR * 1000);
    store.insert_records(&[old, new.clone()]).await.unwrap();
    // Records before HOUR, rollups before HOUR − 30 days.
    let gone = store
        .trim_usage(HOUR * 1000, HOUR - 30 * 86_400, 1_000)
        .await
        .unwrap();
    // The old record and its six rollup rows (its hour's and its day's, for
    // its key, its team and everyone).
    assert_eq!(gone, 7);
    let left = store
        .usage(&UsageFilter::default(), None, 10)
        .await
        .unwrap();
    assert_eq!(left.records, vec![new]);
    let rollups = store
        .costs(&CostQuery {
            from: HOUR - 50 * 86_400,
            to: HOUR + 86_400,
            ..CostQuery::default()
        })
        .await
        .unwrap();
    assert_eq!(rollups[0].requests, 1);
}

/// A batch larger than one statement (SQLite writes 64 rows a statement, then
/// 16, 4 and 1): every record stored and summed once, also when the batch is
/// sent again with new records among the old, every size of statement then
/// skipping the stored ones.
async fn large_batches_are_written_whole_and_once(store: &dyn Store) {
    let first: Vec<UsageRecord> = (0..150)
        .map(|n| record(n, HOUR * 1000 + i64::from(n)))
        .collect();
    assert_eq!(store.insert_records(&first).await.unwrap(), 150);
    assert_eq!(store.insert_records(&first).await.unwrap(), 0);
    let mut mixed: Vec<UsageRecord> = (100..250)
        .map(|n| record(n, HOUR * 1000 + i64::from(n)))
        .collect();
    mixed.reverse();
    assert_eq!(store.insert_records(&mixed).await.unwrap(), 100);
    let page = store
        .usage(&UsageFilter::default(), None, 1_000)
        .await
        .unwrap();
    assert_eq!(page.records.len(), 250);
    assert!(
        page.records
            .iter()
            .rev()
            .map(|r| r.at)
            .eq((0..250).map(|n| HOUR * 1000 + n))
    );
    let total = store.costs(&costs(&[])).await.unwrap();
    assert_eq!(total[0].requests, 250);
    assert_eq!(
        total[0].cost_micros,
        (0..250).map(|n| 1_000 + n).sum::<i64>()
    );
}

conformance!(
    records_round_trip_and_are_written_once,
    large_batches_are_written_whole_and_once,
    costs_group_and_filter,
    records_page_newest_first_by_cursor,
    trim_deletes_what_is_older,
);

/// Two writers (two replicas) insert batches that share rollup rows, at once: every
/// record is summed once, and neither deadlocks.
async fn concurrent_batches_add_up(one: Arc<dyn Store>, other: Arc<dyn Store>) {
    let writer = |store: Arc<dyn Store>, base: u32| {
        tokio::spawn(async move {
            for round in 0..10u32 {
                let batch: Vec<UsageRecord> = (0..50)
                    .map(|n| {
                        let n = base + round * 50 + n;
                        let mut r = record(n, (HOUR + i64::from(n % 4) * 3_600) * 1000);
                        r.tags = vec!["a".into(), "b".into()];
                        r
                    })
                    .collect();
                store.insert_records(&batch).await.unwrap();
            }
        })
    };
    let (a, b) = (writer(one.clone(), 0), writer(other, 100_000));
    a.await.unwrap();
    b.await.unwrap();
    let total = one.costs(&costs(&[])).await.unwrap();
    assert_eq!(total[0].requests, 1_000);
    let by_tag = one.costs(&costs(&[GroupBy::Tag])).await.unwrap();
    assert!(by_tag.iter().all(|r| r.requests == 1_000));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sqlite_two_processes_insert_usage_at_once() {
    let (_dir, url) = sqlite().await;
    concurrent_batches_add_up(open(&url).await, open(&url).await).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_two_replicas_insert_usage_at_once() {
    let url = postgres().await;
    concurrent_batches_add_up(open(&url).await, open(&url).await).await;
}
