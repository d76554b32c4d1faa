//! Black-box tests: a real mock on a loopback port, spoken to over HTTP.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, missing_docs)]

mod admin;
mod anthropic;
mod chat;
mod common;
mod completions;
mod embeddings;
mod faults;
mod gemini;
