//! Black-box tests: the real `switchyard` binary in front of `switchyard mock`.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, missing_docs)]

mod cli;
mod errors;
mod forwarding;
mod harness;
mod shutdown;
mod streaming;
