//! Black-box tests: the real `switchyard` binary in front of `switchyard mock`.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, missing_docs)]
// Tests bound every request with a whole-request timeout and wait for child
// processes synchronously (nothing else runs on the test's runtime meanwhile).
#![allow(clippy::disallowed_methods)]

mod admin;
mod admin_api;
mod bodies;
mod cache;
mod canary;
mod cli;
mod connections;
mod dashboard;
mod dialects;
mod errors;
mod forwarding;
mod harness;
mod health;
mod hedging;
mod keys;
mod limits;
mod metrics;
mod overload;
mod records;
mod reload;
mod report;
mod resilience;
mod routing;
mod scale_out;
mod shadow;
mod shared_cache;
mod shared_limits;
mod shutdown;
mod spending;
mod stores;
mod streaming;
mod traces;
mod usage;
