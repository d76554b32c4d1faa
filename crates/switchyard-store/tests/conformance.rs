//! The store's behaviour, the same on every backend: each `async fn` below takes a
//! `&dyn Store` and is run once on a SQLite file and once on a fresh PostgreSQL
//! database (from `SWITCHYARD_TEST_PG_URL`, which `scripts/test` sets by starting
//! PostgreSQL through `scripts/services.sh`). Without that variable the PostgreSQL
//! tests fail: a backend is never skipped in silence.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, missing_docs)]

use std::sync::Arc;

use serde_json::{Map, json};
use switchyard_store::{
    Budget, BudgetPeriod, ChangeKind, KeyFilter, KeyPatch, Limits, NewKey, NewSecret, NewTeam,
    PageRequest, SessionRecord, SpendDelta, SpendScope, Store, StoreError, StoreOptions, TeamPatch,
};

mod backends;

use sqlx::Connection as _;

use backends::{conformance, open, postgres, sqlite};

// === fixtures ===

fn digest(n: u8) -> [u8; 32] {
    [n; 32]
}

fn secret(n: u8) -> NewSecret {
    NewSecret {
        digest: digest(n),
        prefix: format!("sk-sy-{n:05}"),
    }
}

fn new_key(id: &str, team_id: Option<&str>) -> NewKey {
    NewKey {
        id: id.into(),
        name: format!("{id} name"),
        team_id: team_id.map(Into::into),
        ..NewKey::default()
    }
}

fn new_team(id: &str) -> NewTeam {
    NewTeam {
        id: id.into(),
        name: format!("{id} name"),
        ..NewTeam::default()
    }
}

fn page(after: Option<&str>, limit: u32) -> PageRequest {
    PageRequest {
        after: after.map(Into::into),
        limit,
    }
}

fn object(value: serde_json::Value) -> Map<String, serde_json::Value> {
    match value {
        serde_json::Value::Object(map) => map,
        _ => Map::new(),
    }
}

/// The newest change's sequence number (0 when there is none).
async fn last_seq(store: &dyn Store) -> i64 {
    store
        .changes_after(0, 10_000)
        .await
        .unwrap()
        .last()
        .map_or(0, |c| c.seq)
}

fn delta(scope: SpendScope, scope_id: &str, period_start: i64, micros: i64) -> SpendDelta {
    SpendDelta {
        scope,
        scope_id: scope_id.into(),
        period_start,
        micros,
    }
}

/// Now, in unix seconds.
fn now() -> i64 {
    let since = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap();
    i64::try_from(since.as_secs()).unwrap()
}

/// A xorshift generator: the same batches on every run.
struct Shuffle(u64);

impl Shuffle {
    fn below(&mut self, n: u64) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0 % n
    }
}

// === behaviours ===

async fn pings(store: &dyn Store) {
    store.ping().await.unwrap();
}

async fn team_round_trip(store: &dyn Store) {
    let mut new = new_team("team_a");
    new.models = vec!["gpt-*".into(), "claude-?".into()];
    new.limits = Limits {
        rpm: Some(60),
        tpm: Some(1_000),
        budget: Some(Budget {
            micros: 12_345_678,
            period: BudgetPeriod::Month,
        }),
    };
    new.metadata = object(json!({"owner": "ops", "n": 3}));
    let created = store.create_team(new.clone()).await.unwrap();
    assert_eq!(
        (created.id.as_str(), created.name.as_str()),
        ("team_a", "team_a name")
    );
    assert_eq!(
        (created.models, created.limits, created.metadata),
        (new.models, new.limits, new.metadata)
    );
    assert!(!created.disabled && created.deleted_at.is_none());
    let got = store.team("team_a").await.unwrap().unwrap();
    assert_eq!(got, store.team("team_a").await.unwrap().unwrap());
    assert_eq!(got.limits.budget.unwrap().period, BudgetPeriod::Month);
    assert!(store.team("nope").await.unwrap().is_none());
}

async fn team_names_and_ids_are_unique(store: &dyn Store) {
    store.create_team(new_team("t1")).await.unwrap();
    let before = last_seq(store).await;
    let mut same_name = new_team("t2");
    same_name.name = "t1 name".into();
    assert!(matches!(
        store.create_team(same_name).await,
        Err(StoreError::Conflict { field: "name" })
    ));
    let mut same_id = new_team("t1");
    same_id.name = "other".into();
    assert!(matches!(
        store.create_team(same_id).await,
        Err(StoreError::Conflict { field: "id" })
    ));
    assert_eq!(
        last_seq(store).await,
        before,
        "a refused write appends no change"
    );
    assert!(store.team("t2").await.unwrap().is_none());
}

async fn team_update_changes_only_named_fields(store: &dyn Store) {
    let mut new = new_team("t");
    new.limits.rpm = Some(10);
    new.limits.budget = Some(Budget {
        micros: 5,
        period: BudgetPeriod::Day,
    });
    let created = store.create_team(new).await.unwrap();
    let patch = TeamPatch {
        tpm: Some(Some(99)),
        budget: Some(None),
        disabled: Some(true),
        ..TeamPatch::default()
    };
    let updated = store.update_team("t", patch).await.unwrap();
    assert_eq!(updated.name, created.name);
    assert_eq!(
        updated.limits,
        Limits {
            rpm: Some(10),
            tpm: Some(99),
            budget: None
        }
    );
    assert!(updated.disabled);
    assert_eq!(store.team("t").await.unwrap().unwrap(), updated);
    assert!(matches!(
        store.update_team("nope", TeamPatch::default()).await,
        Err(StoreError::NotFound)
    ));
}

async fn team_delete_is_soft_and_refused_with_live_keys(store: &dyn Store) {
    store.create_team(new_team("t")).await.unwrap();
    store
        .create_key(new_key("k", Some("t")), secret(1))
        .await
        .unwrap();
    assert!(matches!(
        store.delete_team("t").await,
        Err(StoreError::TeamHasKeys)
    ));
    store.revoke_key("k").await.unwrap();
    let deleted = store.delete_team("t").await.unwrap();
    assert!(deleted.deleted_at.is_some());
    assert_eq!(
        store.team("t").await.unwrap().unwrap().deleted_at,
        deleted.deleted_at
    );
    assert!(
        store
            .list_teams(&page(None, 10))
            .await
            .unwrap()
            .items
            .is_empty()
    );
    assert!(matches!(
        store.delete_team("t").await,
        Err(StoreError::NotFound)
    ));
    assert!(matches!(
        store.update_team("t", TeamPatch::default()).await,
        Err(StoreError::NotFound)
    ));
    assert!(matches!(
        store.create_key(new_key("k2", Some("t")), secret(2)).await,
        Err(StoreError::Missing { field: "team_id" })
    ));
}

async fn teams_page_by_cursor(store: &dyn Store) {
    for id in ["t3", "t1", "t5", "t2", "t4"] {
        store.create_team(new_team(id)).await.unwrap();
    }
    let ids = |p: &switchyard_store::Page<switchyard_store::TeamRecord>| {
        p.items.iter().map(|t| t.id.clone()).collect::<Vec<_>>()
    };
    let first = store.list_teams(&page(None, 2)).await.unwrap();
    assert_eq!(
        (ids(&first), first.next_cursor.as_deref()),
        (vec!["t1".into(), "t2".into()], Some("t2"))
    );
    let second = store.list_teams(&page(Some("t2"), 2)).await.unwrap();
    assert_eq!(
        (ids(&second), second.next_cursor.as_deref()),
        (vec!["t3".into(), "t4".into()], Some("t4"))
    );
    let last = store.list_teams(&page(Some("t4"), 2)).await.unwrap();
    assert_eq!(
        (ids(&last), last.next_cursor),
        (vec!["t5".to_owned()], None)
    );
    let exact = store.list_teams(&page(None, 5)).await.unwrap();
    assert_eq!((exact.items.len(), exact.next_cursor), (5, None));
}

async fn key_round_trip(store: &dyn Store) {
    store.create_team(new_team("t")).await.unwrap();
    let mut new = new_key("k", Some("t"));
    new.models = vec!["gpt-4o*".into()];
    new.limits = Limits {
        rpm: Some(60),
        tpm: None,
        budget: Some(Budget {
            micros: 1_000_000,
            period: BudgetPeriod::Week,
        }),
    };
    new.expires_at = Some(4_000_000_000);
    new.metadata = object(json!({"app": "billing"}));
    let created = store.create_key(new.clone(), secret(7)).await.unwrap();
    assert_eq!(created.prefix, "sk-sy-00007");
    assert_eq!(
        (created.models.clone(), created.limits, created.expires_at),
        (new.models, new.limits, new.expires_at)
    );
    assert_eq!(
        (
            created.team_id.as_deref(),
            created.revoked_at,
            created.disabled
        ),
        (Some("t"), None, false)
    );
    assert_eq!(store.key("k").await.unwrap().unwrap(), created);
    let found = store.key_by_digest(&digest(7)).await.unwrap().unwrap();
    assert_eq!(found.key, created);
    assert_eq!(
        (found.secret.key_id.as_str(), found.secret.expires_at),
        ("k", None)
    );
    assert!(store.key_by_digest(&digest(8)).await.unwrap().is_none());
    assert!(store.key("nope").await.unwrap().is_none());
}

async fn key_refuses_missing_team_and_taken_ids(store: &dyn Store) {
    assert!(matches!(
        store
            .create_key(new_key("k", Some("nope")), secret(1))
            .await,
        Err(StoreError::Missing { field: "team_id" })
    ));
    store
        .create_key(new_key("k", None), secret(1))
        .await
        .unwrap();
    let before = last_seq(store).await;
    assert!(matches!(
        store.create_key(new_key("k", None), secret(2)).await,
        Err(StoreError::Conflict { field: "id" })
    ));
    assert!(matches!(
        store.create_key(new_key("k2", None), secret(1)).await,
        Err(StoreError::Conflict { field: "digest" })
    ));
    assert!(
        store.key("k2").await.unwrap().is_none(),
        "the key row is rolled back with its secret"
    );
    assert!(store.key_by_digest(&digest(2)).await.unwrap().is_none());
    assert_eq!(last_seq(store).await, before);
}

async fn key_update_changes_only_named_fields(store: &dyn Store) {
    store.create_team(new_team("t")).await.unwrap();
    let mut new = new_key("k", Some("t"));
    new.limits.rpm = Some(5);
    new.expires_at = Some(4_000_000_000);
    let created = store.create_key(new, secret(1)).await.unwrap();
    let patch = KeyPatch {
        name: Some("renamed".into()),
        team_id: Some(None),
        expires_at: Some(None),
        metadata: Some(object(json!({"a": [1, 2]}))),
        ..KeyPatch::default()
    };
    let updated = store.update_key("k", patch).await.unwrap();
    assert_eq!(
        (
            updated.name.as_str(),
            updated.team_id.clone(),
            updated.expires_at
        ),
        ("renamed", None, None)
    );
    assert_eq!(
        (updated.limits, updated.prefix.clone()),
        (created.limits, created.prefix)
    );
    assert_eq!(updated.metadata, object(json!({"a": [1, 2]})));
    assert_eq!(store.key("k").await.unwrap().unwrap(), updated);
    let to_missing = KeyPatch {
        team_id: Some(Some("nope".into())),
        ..KeyPatch::default()
    };
    assert!(matches!(
        store.update_key("k", to_missing).await,
        Err(StoreError::Missing { field: "team_id" })
    ));
    assert!(matches!(
        store.update_key("nope", KeyPatch::default()).await,
        Err(StoreError::NotFound)
    ));
}

async fn keys_page_and_filter(store: &dyn Store) {
    store.create_team(new_team("t")).await.unwrap();
    for (n, id) in ["k1", "k2", "k3", "k4", "k5"].into_iter().enumerate() {
        let team = if n % 2 == 0 { Some("t") } else { None };
        store
            .create_key(new_key(id, team), secret(n as u8 + 1))
            .await
            .unwrap();
    }
    store.revoke_key("k3").await.unwrap();
    let ids = |filter: KeyFilter, after: Option<&'static str>, limit: u32| async move {
        let p = store.list_keys(&filter, &page(after, limit)).await.unwrap();
        (
            p.items.into_iter().map(|k| k.id).collect::<Vec<_>>(),
            p.next_cursor,
        )
    };
    let all = KeyFilter {
        include_revoked: true,
        ..KeyFilter::default()
    };
    assert_eq!(
        ids(all.clone(), None, 2).await,
        (vec!["k1".into(), "k2".into()], Some("k2".into()))
    );
    assert_eq!(
        ids(all.clone(), Some("k2"), 2).await,
        (vec!["k3".into(), "k4".into()], Some("k4".into()))
    );
    assert_eq!(ids(all, Some("k4"), 2).await, (vec!["k5".into()], None));
    assert_eq!(
        ids(KeyFilter::default(), None, 10).await.0,
        ["k1", "k2", "k4", "k5"]
    );
    let team = KeyFilter {
        team_id: Some("t".into()),
        ..KeyFilter::default()
    };
    assert_eq!(ids(team, None, 10).await.0, ["k1", "k5"]);
    let prefix = KeyFilter {
        prefix: Some("sk-sy-00004".into()),
        ..KeyFilter::default()
    };
    assert_eq!(ids(prefix, None, 10).await.0, ["k4"]);
    let wide = KeyFilter {
        prefix: Some("sk-sy-0000".into()),
        ..KeyFilter::default()
    };
    assert_eq!(ids(wide, None, 10).await.0.len(), 4);
    let pattern = KeyFilter {
        prefix: Some("sk-sy-%".into()),
        ..KeyFilter::default()
    };
    assert!(
        ids(pattern, None, 10).await.0.is_empty(),
        "the prefix is text, not a pattern"
    );
}

async fn rotation_keeps_the_old_secret_for_its_grace(store: &dyn Store) {
    store
        .create_key(new_key("k", None), secret(1))
        .await
        .unwrap();
    let rotated = store
        .rotate_key("k", secret(2), 2_000_000_000)
        .await
        .unwrap();
    assert_eq!(rotated.prefix, "sk-sy-00002");
    assert_eq!(store.key("k").await.unwrap().unwrap(), rotated);
    let new = store.key_by_digest(&digest(2)).await.unwrap().unwrap();
    assert_eq!((new.key.id.as_str(), new.secret.expires_at), ("k", None));
    let old = store.key_by_digest(&digest(1)).await.unwrap().unwrap();
    assert_eq!(old.secret.expires_at, Some(2_000_000_000));
    assert_eq!(old.key.prefix, "sk-sy-00002");
    // A later rotation never extends an earlier grace.
    store
        .rotate_key("k", secret(3), 3_000_000_000)
        .await
        .unwrap();
    let secrets = store.secrets("k").await.unwrap();
    let seen: Vec<_> = secrets
        .iter()
        .map(|s| (s.digest[0], s.expires_at))
        .collect();
    assert_eq!(
        seen,
        [
            (3, None),
            (2, Some(3_000_000_000)),
            (1, Some(2_000_000_000))
        ]
    );
    assert!(matches!(
        store.rotate_key("nope", secret(4), 0).await,
        Err(StoreError::NotFound)
    ));
    store.revoke_key("k").await.unwrap();
    assert!(matches!(
        store.rotate_key("k", secret(4), 0).await,
        Err(StoreError::Revoked)
    ));
}

async fn revocation_is_final_and_idempotent(store: &dyn Store) {
    store
        .create_key(new_key("k", None), secret(1))
        .await
        .unwrap();
    let revoked = store.revoke_key("k").await.unwrap();
    assert!(revoked.revoked_at.is_some());
    let seq = last_seq(store).await;
    let again = store.revoke_key("k").await.unwrap();
    assert_eq!(again.revoked_at, revoked.revoked_at);
    assert_eq!(last_seq(store).await, seq, "revoking twice changes nothing");
    let found = store.key_by_digest(&digest(1)).await.unwrap().unwrap();
    assert_eq!(found.key.revoked_at, revoked.revoked_at);
    assert!(matches!(
        store.revoke_key("nope").await,
        Err(StoreError::NotFound)
    ));
}

async fn every_write_appends_one_change(store: &dyn Store) {
    let start = last_seq(store).await;
    store.create_team(new_team("t")).await.unwrap();
    store
        .update_team(
            "t",
            TeamPatch {
                disabled: Some(true),
                ..TeamPatch::default()
            },
        )
        .await
        .unwrap();
    store
        .create_key(new_key("k", Some("t")), secret(1))
        .await
        .unwrap();
    store
        .update_key(
            "k",
            KeyPatch {
                rpm: Some(Some(1)),
                ..KeyPatch::default()
            },
        )
        .await
        .unwrap();
    store.rotate_key("k", secret(2), 0).await.unwrap();
    store.revoke_key("k").await.unwrap();
    store.delete_team("t").await.unwrap();
    let changes = store.changes_after(start, 100).await.unwrap();
    let seen: Vec<_> = changes
        .iter()
        .map(|c| (c.kind, c.entity_id.as_str()))
        .collect();
    use ChangeKind::{Key, Team};
    assert_eq!(
        seen,
        [
            (Team, "t"),
            (Team, "t"),
            (Key, "k"),
            (Key, "k"),
            (Key, "k"),
            (Key, "k"),
            (Team, "t")
        ]
    );
    assert!(changes.windows(2).all(|w| w[0].seq < w[1].seq));
    assert!(changes.iter().all(|c| c.at > 1_700_000_000));
    // Paging through the feed sees each change once.
    let first = store.changes_after(start, 3).await.unwrap();
    let rest = store.changes_after(first[2].seq, 100).await.unwrap();
    assert_eq!([first, rest].concat(), changes);
    assert!(
        store
            .changes_after(changes[6].seq, 100)
            .await
            .unwrap()
            .is_empty()
    );
}

async fn concurrent_writers_all_land(store: &dyn Store, other: Arc<dyn Store>) {
    let start = last_seq(store).await;
    let writer = tokio::spawn(async move {
        for n in 0..20u8 {
            other
                .create_key(new_key(&format!("b{n:02}"), None), secret(100 + n))
                .await
                .unwrap();
        }
    });
    for n in 0..20u8 {
        store
            .create_key(new_key(&format!("a{n:02}"), None), secret(n))
            .await
            .unwrap();
    }
    writer.await.unwrap();
    let all = store
        .list_keys(&KeyFilter::default(), &page(None, 100))
        .await
        .unwrap();
    assert_eq!(all.items.len(), 40);
    assert_eq!(store.changes_after(start, 100).await.unwrap().len(), 40);
}

async fn spend_adds_exactly_per_scope_and_period(store: &dyn Store) {
    use SpendScope::{Key, Team};
    assert_eq!(store.spend(Key, "k", 100).await.unwrap(), 0);
    let seq = last_seq(store).await;
    store.add_spend(&[]).await.unwrap();
    store
        .add_spend(&[
            delta(Key, "k", 100, 5),
            delta(Team, "k", 100, 7),
            delta(Key, "k", 200, 1),
            delta(Key, "k", 100, 10),
            delta(Key, "j", 100, 3),
        ])
        .await
        .unwrap();
    let spent = |scope, id: &'static str, period| async move {
        store.spend(scope, id, period).await.unwrap()
    };
    assert_eq!(spent(Key, "k", 100).await, 15);
    assert_eq!(spent(Team, "k", 100).await, 7);
    assert_eq!(spent(Key, "k", 200).await, 1);
    assert_eq!(spent(Key, "j", 100).await, 3);
    assert_eq!(spent(Team, "j", 100).await, 0);
    assert_eq!(spent(Key, "k", 300).await, 0);
    // Across batches, with refunds, and past 32 bits.
    store
        .add_spend(&[
            delta(Key, "k", 100, -4),
            delta(Key, "k", 100, 1_000_000_000_000),
        ])
        .await
        .unwrap();
    store.add_spend(&[delta(Key, "k", 100, 2)]).await.unwrap();
    assert_eq!(spent(Key, "k", 100).await, 1_000_000_000_013);
    // A batch that overflows is refused whole.
    assert!(matches!(
        store
            .add_spend(&[
                delta(Key, "k", 100, 1),
                delta(Key, "x", 0, i64::MAX),
                delta(Key, "x", 0, 1),
            ])
            .await,
        Err(StoreError::Overflow)
    ));
    assert_eq!(spent(Key, "k", 100).await, 1_000_000_000_013);
    assert_eq!(spent(Key, "x", 0).await, 0);
    assert_eq!(
        last_seq(store).await,
        seq,
        "spend is not in the change feed"
    );
}

async fn live_keys_page_unrevoked_keys_with_working_secrets(store: &dyn Store) {
    for n in 1..=5u8 {
        store
            .create_key(new_key(&format!("k{n}"), None), secret(n))
            .await
            .unwrap();
    }
    store.revoke_key("k3").await.unwrap();
    store
        .rotate_key("k2", secret(12), now() + 3_600)
        .await
        .unwrap();
    store.rotate_key("k4", secret(14), 1).await.unwrap();
    let load = |after: Option<&'static str>| async move {
        let p = store.live_keys(&page(after, 2)).await.unwrap();
        let items: Vec<_> = p
            .items
            .iter()
            .map(|live| {
                let digests: Vec<u8> = live.secrets.iter().map(|s| s.digest[0]).collect();
                (live.key.id.clone(), digests)
            })
            .collect();
        (items, p.next_cursor, p.items)
    };
    let (first, cursor, records) = load(None).await;
    assert_eq!(
        (first, cursor.as_deref()),
        (
            vec![("k1".into(), vec![1]), ("k2".into(), vec![12, 2])],
            Some("k2")
        )
    );
    assert_eq!(records[1].key, store.key("k2").await.unwrap().unwrap());
    assert_eq!(records[1].secrets, store.secrets("k2").await.unwrap());
    let (second, cursor, _) = load(Some("k2")).await;
    assert_eq!(
        (second, cursor),
        (vec![("k4".into(), vec![14]), ("k5".into(), vec![5])], None),
        "k3 is revoked; the grace of k4's first secret is over"
    );
    let (rest, cursor, _) = load(Some("k5")).await;
    assert!(rest.is_empty() && cursor.is_none());
}

async fn change_feed_trims_and_never_reuses_seq(store: &dyn Store) {
    assert_eq!(store.last_change().await.unwrap(), 0);
    assert_eq!(store.trim_changes(i64::MAX).await.unwrap(), 0);
    store.create_team(new_team("t1")).await.unwrap();
    store.create_team(new_team("t2")).await.unwrap();
    let old = store.changes_after(0, 10).await.unwrap();
    assert_eq!(store.last_change().await.unwrap(), old[1].seq);
    while now() <= old[1].at {
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    store.create_team(new_team("t3")).await.unwrap();
    let newer = store.changes_after(old[1].seq, 10).await.unwrap();
    assert_eq!(newer.len(), 1);
    assert_eq!(store.trim_changes(old[0].at).await.unwrap(), 0);
    assert_eq!(store.trim_changes(newer[0].at).await.unwrap(), 2);
    assert_eq!(store.changes_after(0, 10).await.unwrap(), newer);
    assert_eq!(store.changes_after(old[0].seq, 10).await.unwrap(), newer);
    assert_eq!(store.last_change().await.unwrap(), newer[0].seq);
    // With the feed emptied, the next change still comes after every earlier one.
    assert_eq!(store.trim_changes(newer[0].at + 1).await.unwrap(), 1);
    assert_eq!(store.last_change().await.unwrap(), 0);
    store.create_team(new_team("t4")).await.unwrap();
    let after = store.changes_after(0, 10).await.unwrap();
    assert_eq!(after.len(), 1);
    assert!(
        after[0].seq > newer[0].seq,
        "a trimmed sequence number came back"
    );
    assert_eq!(store.last_change().await.unwrap(), after[0].seq);
}

/// Eight tasks, half on each store, add 50 batches each of 30 deltas in random order
/// over the same 20 keys: every total is exact, and no batch fails (or deadlocks).
async fn concurrent_spend_adds_up(one: Arc<dyn Store>, other: Arc<dyn Store>) {
    const KEYS: u64 = 20;
    let tasks: Vec<_> = (0..8u64)
        .map(|task| {
            let store = Arc::clone(if task % 2 == 0 { &one } else { &other });
            tokio::spawn(async move {
                let mut shuffle = Shuffle(task + 1);
                let mut totals = [0i64; KEYS as usize];
                for _ in 0..50 {
                    let batch: Vec<_> = (0..30)
                        .map(|_| {
                            let k = shuffle.below(KEYS);
                            let micros = shuffle.below(1_000) as i64 - 100;
                            totals[k as usize] += micros;
                            delta(SpendScope::Key, &format!("k{k:02}"), 0, micros)
                        })
                        .collect();
                    store.add_spend(&batch).await.unwrap();
                }
                totals
            })
        })
        .collect();
    let mut expected = [0i64; KEYS as usize];
    for task in tasks {
        for (sum, total) in expected.iter_mut().zip(task.await.unwrap()) {
            *sum += total;
        }
    }
    for (k, sum) in expected.into_iter().enumerate() {
        let id = format!("k{k:02}");
        assert_eq!(one.spend(SpendScope::Key, &id, 0).await.unwrap(), sum);
        assert_eq!(other.spend(SpendScope::Key, &id, 0).await.unwrap(), sum);
    }
}

// === backends ===

conformance!(
    pings,
    team_round_trip,
    team_names_and_ids_are_unique,
    team_update_changes_only_named_fields,
    team_delete_is_soft_and_refused_with_live_keys,
    teams_page_by_cursor,
    key_round_trip,
    key_refuses_missing_team_and_taken_ids,
    key_update_changes_only_named_fields,
    keys_page_and_filter,
    rotation_keeps_the_old_secret_for_its_grace,
    revocation_is_final_and_idempotent,
    every_write_appends_one_change,
    spend_adds_exactly_per_scope_and_period,
    live_keys_page_unrevoked_keys_with_working_secrets,
    change_feed_trims_and_never_reuses_seq,
    an_alert_is_claimed_once_until_given_back,
    sessions_are_found_until_they_expire_or_end,
);

async fn an_alert_is_claimed_once_until_given_back(store: &dyn Store) {
    let claim = |scope, id: &'static str, period, pct| async move {
        store.claim_alert(scope, id, period, pct).await.unwrap()
    };
    assert!(claim(SpendScope::Key, "key_a", 100, 80).await);
    assert!(!claim(SpendScope::Key, "key_a", 100, 80).await);
    // Another threshold, period, id or scope is another alert.
    assert!(claim(SpendScope::Key, "key_a", 100, 95).await);
    assert!(claim(SpendScope::Key, "key_a", 200, 80).await);
    assert!(claim(SpendScope::Key, "key_b", 100, 80).await);
    assert!(claim(SpendScope::Team, "key_a", 100, 80).await);
    // One given back (it could not be sent) is claimed again, once.
    store
        .release_alert(SpendScope::Key, "key_a", 100, 80)
        .await
        .unwrap();
    assert!(claim(SpendScope::Key, "key_a", 100, 80).await);
    assert!(!claim(SpendScope::Key, "key_a", 100, 80).await);
}

async fn sessions_are_found_until_they_expire_or_end(store: &dyn Store) {
    let now = now();
    let session = |n: u8, key_id: Option<&str>, expires_at: i64| SessionRecord {
        digest: digest(n),
        key_id: key_id.map(Into::into),
        credential: digest(100 + n),
        created_at: now,
        expires_at,
    };
    let admin = session(1, None, now + 3_600);
    let key = session(2, Some("key_a"), now + 60);
    store.create_session(&admin).await.unwrap();
    store.create_session(&key).await.unwrap();
    assert_eq!(
        store.session(&digest(1), now).await.unwrap(),
        Some(admin.clone())
    );
    assert_eq!(
        store.session(&digest(2), now).await.unwrap(),
        Some(key.clone())
    );
    assert_eq!(
        store.session(&digest(3), now).await.unwrap(),
        None,
        "unknown"
    );
    // Expired: not found, and gone once another session is made.
    assert_eq!(store.session(&digest(2), now + 60).await.unwrap(), None);
    let later = SessionRecord {
        created_at: now + 100,
        ..session(3, None, now + 7_200)
    };
    store.create_session(&later).await.unwrap();
    assert_eq!(
        store.session(&digest(2), now - 1).await.unwrap(),
        None,
        "trimmed"
    );
    // Signing out ends it; again is no error.
    store.delete_session(&digest(1)).await.unwrap();
    store.delete_session(&digest(1)).await.unwrap();
    assert_eq!(store.session(&digest(1), now).await.unwrap(), None);
    assert!(store.session(&digest(3), now).await.unwrap().is_some());
    // A token's digest is one session's.
    assert!(
        store
            .create_session(&session(3, None, now + 1))
            .await
            .is_err()
    );
}

/// Two stores on one SQLite file (a server and the offline CLI) write at once: the
/// second writer waits for the lock instead of failing.
#[tokio::test]
async fn sqlite_two_processes_write_one_file() {
    let (_dir, url) = sqlite().await;
    let store = open(&url).await;
    concurrent_writers_all_land(&*store, open(&url).await).await;
}

/// Two pools on one database (two replicas) write at once.
#[tokio::test]
async fn postgres_two_replicas_write_one_database() {
    let url = postgres().await;
    let store = open(&url).await;
    concurrent_writers_all_land(&*store, open(&url).await).await;
}

/// Two stores on one SQLite file add overlapping spend batches at once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sqlite_two_processes_add_spend_at_once() {
    let (_dir, url) = sqlite().await;
    concurrent_spend_adds_up(open(&url).await, open(&url).await).await;
}

/// Two pools on one database add overlapping spend batches at once: the rows are
/// locked in one order, so no transaction deadlocks.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_two_replicas_add_spend_at_once() {
    let url = postgres().await;
    concurrent_spend_adds_up(open(&url).await, open(&url).await).await;
}

/// Appends changes made at 100, 300, 100 and 300 behind the store's back, as writers
/// would whose clocks were read before they waited for the write lock.
async fn append_changes_out_of_time_order(url: &str) {
    const APPEND: &str = "INSERT INTO changes (kind, entity_id, at) VALUES ('team', 't', 100); \
        INSERT INTO changes (kind, entity_id, at) VALUES ('team', 't', 300); \
        INSERT INTO changes (kind, entity_id, at) VALUES ('team', 't', 100); \
        INSERT INTO changes (kind, entity_id, at) VALUES ('team', 't', 300)";
    let append = sqlx::raw_sql(APPEND);
    if url.starts_with("sqlite:") {
        let mut raw = sqlx::SqliteConnection::connect(url).await.unwrap();
        append.execute(&mut raw).await.unwrap();
    } else {
        let mut raw = sqlx::PgConnection::connect(url).await.unwrap();
        append.execute(&mut raw).await.unwrap();
    }
}

/// A trim deletes old changes only up to the first newer one, so no gap opens behind a
/// follower.
async fn trim_keeps_a_tail_of_the_feed(url: &str) {
    let store = open(url).await;
    append_changes_out_of_time_order(url).await;
    let feed = store.changes_after(0, 10).await.unwrap();
    assert_eq!(store.trim_changes(200).await.unwrap(), 1);
    assert_eq!(store.changes_after(0, 10).await.unwrap(), feed[1..]);
    assert_eq!(store.trim_changes(301).await.unwrap(), 3);
    assert_eq!(store.last_change().await.unwrap(), 0);
}

#[tokio::test]
async fn sqlite_trim_keeps_a_tail_of_the_feed() {
    let (_dir, url) = sqlite().await;
    trim_keeps_a_tail_of_the_feed(&url).await;
}

#[tokio::test]
async fn postgres_trim_keeps_a_tail_of_the_feed() {
    trim_keeps_a_tail_of_the_feed(&postgres().await).await;
}

/// Opening a store twice applies the migrations once; an unknown scheme and an
/// in-memory SQLite database are refused.
#[tokio::test]
async fn reopening_keeps_the_data_and_unknown_schemes_are_refused() {
    let (_dir, url) = sqlite().await;
    open(&url).await.create_team(new_team("t")).await.unwrap();
    assert!(open(&url).await.team("t").await.unwrap().is_some());
    let pg = postgres().await;
    open(&pg).await.create_team(new_team("t")).await.unwrap();
    assert!(open(&pg).await.team("t").await.unwrap().is_some());
    let refused = switchyard_store::open("mysql://x/y", &StoreOptions::default()).await;
    assert!(matches!(refused, Err(StoreError::Scheme)));
    let memory = switchyard_store::open("sqlite::memory:", &StoreOptions::default()).await;
    assert!(matches!(memory, Err(StoreError::InMemory)));
}

/// The SQLite file is in WAL mode, so readers run beside the writer, and a new
/// file has 16 KiB pages (SQLite's default is 4 KiB).
#[tokio::test]
async fn sqlite_file_is_in_wal_mode_with_16k_pages() {
    let (_dir, url) = sqlite().await;
    let _store = open(&url).await;
    let mut raw = sqlx::SqliteConnection::connect(&url).await.unwrap();
    let mode: String = sqlx::query_scalar("PRAGMA journal_mode")
        .fetch_one(&mut raw)
        .await
        .unwrap();
    assert_eq!(mode, "wal");
    let page_size: i64 = sqlx::query_scalar("PRAGMA page_size")
        .fetch_one(&mut raw)
        .await
        .unwrap();
    assert_eq!(page_size, 16384);
}
