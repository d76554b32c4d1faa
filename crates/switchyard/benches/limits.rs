//! What a virtual key costs on the request path, with the limits in memory:
//! `cargo bench -p switchyard --bench limits`. The target is under 5 µs for
//! authentication and every check together.
//!
//! - `authenticate`: the key hashed, found among 10,000 live keys, compared
//!   in constant time, its state and its team's checked;
//! - `reserve_and_settle`: its requests and tokens per minute, its team's,
//!   and its budget and its team's reserved, then settled to a cost;
//! - `unknown_key`: a random key refused (no allocation, no store call).

#![allow(missing_docs, clippy::unwrap_used, clippy::expect_used)]

use std::time::Duration;

use divan::{Bencher, black_box};
use futures_util::FutureExt;
use switchyard::config::RateLimits;
use switchyard::keys::admin::views::{CreateKey, CreateTeam, Period};
use switchyard::keys::{Directory, Tenant, admin, secret};
use switchyard::limits::{Demand, Limiter, spend};
use switchyard::telemetry::metrics::Metrics;

fn main() {
    divan::main();
}

/// A store of 10,000 keys, one of them limited in every way and in a team
/// that is too; the directory over it, and a limiter.
struct World {
    _dir: tempfile::TempDir,
    runtime: tokio::runtime::Runtime,
    directory: Directory,
    limiter: Limiter,
    key: String,
}

fn world() -> World {
    let dir = tempfile::tempdir().unwrap();
    // A worker of its own keeps the spend writer draining its queue.
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .unwrap();
    let url = format!("sqlite://{}", dir.path().join("bench.db").display());
    let (directory, limiter, key) = runtime.block_on(async {
        let store = switchyard_store::open(&url, &Default::default())
            .await
            .unwrap();
        for n in 0..10_000 {
            let request = CreateKey {
                name: format!("key-{n}"),
                ..CreateKey::default()
            };
            admin::create_key(store.as_ref(), request).await.unwrap();
        }
        let team = admin::create_team(
            store.as_ref(),
            CreateTeam {
                name: "bench".into(),
                rpm: Some(1_000_000_000),
                tpm: Some(1_000_000_000),
                budget_usd: Some(1e9),
                budget_period: Some(Period::Month),
                ..CreateTeam::default()
            },
        )
        .await
        .unwrap();
        let key = admin::create_key(
            store.as_ref(),
            CreateKey {
                name: "limited".into(),
                team_id: Some(team.id),
                models: vec!["gpt-*".into()],
                rpm: Some(1_000_000_000),
                tpm: Some(1_000_000_000),
                budget_usd: Some(1e9),
                budget_period: Some(Period::Day),
                ..CreateKey::default()
            },
        )
        .await
        .unwrap()
        .key;
        let directory = Directory::load(store.clone(), 100_000, Duration::from_secs(1), None)
            .await
            .unwrap();
        let (queue, _) = spend::start(
            store,
            1 << 20,
            Duration::from_secs(3600),
            None,
            Default::default(),
        );
        let limiter = Limiter::new(&RateLimits::default(), queue, None, &Metrics::new());
        (directory, limiter, key)
    });
    World {
        _dir: dir,
        runtime,
        directory,
        limiter,
        key,
    }
}

fn tenant(world: &World) -> Tenant {
    world
        .directory
        .find(&secret::digest(&world.key))
        .now_or_never()
        .unwrap()
        .unwrap()
        .unwrap()
}

#[divan::bench]
fn authenticate(bencher: Bencher) {
    let world = world();
    bencher.bench_local(|| {
        let digest = secret::digest(black_box(&world.key));
        let found = world.directory.find(&digest).now_or_never().unwrap();
        black_box(found.unwrap().unwrap())
    });
}

#[divan::bench]
fn unknown_key(bencher: Bencher) {
    let world = world();
    bencher.bench_local(|| {
        let digest = secret::digest(black_box("sk-sy-0123456789abcdefghijklmnopqrstuv"));
        black_box(
            world
                .directory
                .find(&digest)
                .now_or_never()
                .unwrap()
                .unwrap(),
        )
    });
}

#[divan::bench]
fn reserve_and_settle(bencher: Bencher) {
    let world = world();
    let tenant = tenant(&world);
    let _guard = world.runtime.enter();
    bencher.bench_local(|| {
        let demand = Demand {
            tenant: Some(&tenant),
            model: "gpt-4.1",
            tokens: 600,
            prompt_tokens: 100,
            max_output_tokens: 500,
            input_price: 2_000_000,
            output_price: 8_000_000,
        };
        let reservation = world
            .limiter
            .reserve(black_box(&demand))
            .now_or_never()
            .unwrap()
            .unwrap();
        reservation.settle(120, 480);
    });
}
