//! The backends the store's tests run on: a fresh SQLite file, and a fresh
//! PostgreSQL database on the server `SWITCHYARD_TEST_PG_URL` names.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    missing_docs,
    dead_code
)]

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use sqlx::Connection;
use switchyard_store::{Store, StoreOptions};

static NEXT: AtomicU64 = AtomicU64::new(0);

pub fn unique(tag: &str) -> String {
    let n = NEXT.fetch_add(1, Ordering::Relaxed);
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .subsec_nanos();
    format!("{tag}_{}_{n}_{nanos:x}", std::process::id())
}

/// A store on a fresh SQLite file, and the directory that holds it.
pub async fn sqlite() -> (tempfile::TempDir, String) {
    let dir = tempfile::tempdir().unwrap();
    let url = format!("sqlite://{}", dir.path().join("store.db").display());
    (dir, url)
}

/// The URL of a fresh PostgreSQL database on the server `SWITCHYARD_TEST_PG_URL` names.
pub async fn postgres() -> String {
    let Ok(base) = std::env::var("SWITCHYARD_TEST_PG_URL") else {
        panic!(
            "SWITCHYARD_TEST_PG_URL is not set, so the PostgreSQL backend cannot be tested. \
             Run ./scripts/test, which starts PostgreSQL, or start it in your shell with \
             `source scripts/services.sh` and run cargo test again from that shell"
        );
    };
    let name = unique("t");
    let mut admin = sqlx::PgConnection::connect(&base).await.unwrap();
    sqlx::query(sqlx::AssertSqlSafe(format!("CREATE DATABASE {name}")))
        .execute(&mut admin)
        .await
        .unwrap();
    let (server, _) = base.rsplit_once('/').unwrap();
    format!("{server}/{name}")
}

pub async fn open(url: &str) -> Arc<dyn Store> {
    switchyard_store::open(url, &StoreOptions::default())
        .await
        .unwrap()
}

/// A test per behaviour and backend: each `async fn` named takes a `&dyn Store`.
macro_rules! conformance {
    ($($name:ident),* $(,)?) => {
        mod sqlite {
            $(#[tokio::test]
            async fn $name() {
                let (_dir, url) = super::sqlite().await;
                super::$name(&*super::open(&url).await).await;
            })*
        }
        mod postgres {
            $(#[tokio::test]
            async fn $name() {
                let url = super::postgres().await;
                super::$name(&*super::open(&url).await).await;
            })*
        }
    };
}

pub(crate) use conformance;
