//! Switchyard: a self-hosted AI gateway.
//!
//! Applications speak the OpenAI API to Switchyard; Switchyard validates each
//! request, authenticates the caller, picks a deployment of the requested model
//! and forwards the request to that provider, streaming the answer back.
//! `ARCHITECTURE.md` draws the request flow; [`api`] lists the layers in order.

pub mod admission;
pub mod alerts;
pub mod api;
pub mod auth;
pub mod cache;
pub mod cli;
pub mod config;
pub mod error;
pub mod headers;
pub mod keys;
pub mod limits;
pub mod mix;
pub mod pricing;
pub mod redis_link;
pub mod reload;
pub mod request;
pub mod routing;
pub mod server;
pub mod telemetry;
pub mod ui;
pub mod upstream;
pub mod usage;
