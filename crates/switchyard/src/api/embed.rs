//! The gateway embedding a text for itself, through its own routes: the
//! semantic cache's lookup of a prompt. The call goes the way a client's
//! embeddings request would — the model's deployments, retries, breakers —
//! and is read whole.

use serde::Deserialize;
use switchyard_providers::openai::Endpoint;

use super::exchange::{self, Forward};
use super::inbound::Inbound;
use super::proxy::ProxyEndpoint;
use super::respond::Begun;
use super::{AppState, Settings};
use crate::routing::strategy::Tokens;
use crate::upstream::attempts::{Attempts, Served, execute};

/// The embedding of `text` by the public `model` (with `dimensions`, when
/// set); `None` when it cannot be had.
pub(super) async fn embed(
    state: &AppState,
    settings: &Settings,
    forward: &Forward<'_>,
    model: &str,
    text: &str,
    dimensions: Option<u32>,
) -> Option<Vec<f32>> {
    let mut request = serde_json::json!({"model": model, "input": text});
    if let Some(dimensions) = dimensions {
        request["dimensions"] = dimensions.into();
    }
    let body = serde_json::to_vec(&request).ok()?;
    let mut inbound = Inbound::parse(ProxyEndpoint::OpenAi(Endpoint::Embeddings), &body).ok()?;
    let tokens = Tokens {
        input: body.len() as u64 / 4,
        output: 0,
    };
    let mut plan = settings.routes.plan(model, tokens).ok()?;
    let mut attempts = Attempts::new(&settings.retries, &state.process.retries, &plan, false);
    let Served { answer, .. } = execute(
        &mut attempts,
        &mut plan,
        |target| inbound.call(target),
        |target, call, sent, deadline| {
            exchange::attempt(
                forward,
                target,
                forward.outgoing(call, sent, deadline),
                call.shape(),
            )
        },
    )
    .await
    .ok()?;
    let Begun::Whole(whole) = answer else {
        return None;
    };
    let list: List = serde_json::from_slice(&whole.body).ok()?;
    list.data.into_iter().next().map(|item| item.embedding)
}

/// An embeddings list of floats.
#[derive(Deserialize)]
struct List {
    data: Vec<Item>,
}

#[derive(Deserialize)]
struct Item {
    embedding: Vec<f32>,
}
