//! The reliability suite: each scenario drives the release build of the
//! gateway, with real Redis, PostgreSQL and `switchyard mock` on 127.0.0.1,
//! through a failure it promises to survive, and measures how it did. The
//! rows go to a table (`RELIABILITY.md` for the whole suite): the criterion,
//! the figure measured and the verdict of each.
//!
//! Run by `bench/reliability.sh` (`--quick`: the subset CI runs), which
//! builds the release binary, starts the services and names the binary in
//! `SWITCHYARD_BIN`. Each scenario is one file of this folder.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, missing_docs)]
// Scenarios wait for child processes synchronously, as the black-box tests do.
#![allow(clippy::disallowed_methods)]

use std::future::Future;
use std::pin::Pin;
use std::time::Instant;

mod fixtures;
#[path = "../gateway/harness.rs"]
#[allow(dead_code)]
mod harness;
mod load;
#[path = "../gateway/stores.rs"]
#[allow(dead_code, unused_imports, unused_macros)]
mod stores;
mod streams;
mod table;

mod cardinality;
mod client_leaves;
mod dead_deployment;
mod malformed;
mod outages;
mod overload;
mod partial_failure;
mod reload;
mod security;
mod shared_limits;
mod sigterm;
mod slow_clients;
mod soak;
mod stalls;
mod stream_cuts;

use table::{Row, Table};

/// A scenario's run: its rows.
type Run = fn(Mode) -> Pin<Box<dyn Future<Output = Vec<Row>> + Send>>;

/// How long a scenario may take: the quick subset shortens what it can.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    /// The subset CI runs (under 3 minutes in all).
    Quick,
    /// The whole suite (under 15 minutes).
    Full,
}

impl Mode {
    /// `quick` in the quick subset, else `full`.
    pub fn pick<T>(self, quick: T, full: T) -> T {
        match self {
            Self::Quick => quick,
            Self::Full => full,
        }
    }
}

/// Every scenario: its name, whether the quick subset runs it, and its run.
const SCENARIOS: &[(&str, bool, Run)] = &[
    ("partial failure", true, |mode| {
        Box::pin(partial_failure::run(mode))
    }),
    ("a dead deployment", true, |mode| {
        Box::pin(dead_deployment::run(mode))
    }),
    ("stalls", true, |mode| Box::pin(stalls::run(mode))),
    ("stream cuts", true, |mode| Box::pin(stream_cuts::run(mode))),
    ("malformed upstream streams", true, |mode| {
        Box::pin(malformed::run(mode))
    }),
    ("a client leaving", true, |mode| {
        Box::pin(client_leaves::run(mode))
    }),
    ("security", true, |mode| Box::pin(security::run(mode))),
    ("SIGTERM under load", true, |mode| {
        Box::pin(sigterm::run(mode))
    }),
    ("hot reload under load", true, |mode| {
        Box::pin(reload::run(mode))
    }),
    ("Redis and PostgreSQL outages", true, |mode| {
        Box::pin(outages::run(mode))
    }),
    ("distributed limits", true, |mode| {
        Box::pin(shared_limits::run(mode))
    }),
    ("a million random keys", true, |mode| {
        Box::pin(cardinality::run(mode))
    }),
    ("overload", true, |mode| Box::pin(overload::run(mode))),
    ("slow clients", true, |mode| {
        Box::pin(slow_clients::run(mode))
    }),
    ("soak", false, |mode| Box::pin(soak::run(mode))),
];

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "the reliability suite: bench/reliability.sh runs it against the release build"]
async fn reliability() {
    let mode = if std::env::var_os("RELIABILITY_QUICK").is_some() {
        Mode::Quick
    } else {
        Mode::Full
    };
    let only = std::env::var("RELIABILITY_ONLY").ok();
    let mut table = Table::new(mode);
    let started = Instant::now();
    for (name, quick, run) in SCENARIOS {
        if mode == Mode::Quick && !quick {
            continue;
        }
        if only.as_deref().is_some_and(|only| !name.contains(only)) {
            continue;
        }
        eprintln!("reliability: {name}");
        let began = Instant::now();
        let rows = run(mode).await;
        for row in &rows {
            eprintln!("  {row}");
        }
        table.add(name, rows, began.elapsed());
    }
    let out = std::env::var("RELIABILITY_OUT").unwrap_or_else(|_| {
        harness::repo_root()
            .join("bench/out/reliability.md")
            .display()
            .to_string()
    });
    table.write(std::path::Path::new(&out), started.elapsed());
    eprintln!("reliability: the table is in {out}");
    let failing = table.failing();
    assert!(failing.is_empty(), "failing: {failing:#?}");
}
