//! Shadow traffic: a share of a model's requests is also sent to another
//! model, whose answers are read to the end, measured and dropped, so that a
//! new provider can be judged on real traffic before any client sees it.
//!
//! A copy never delays or changes the client's request: it is made in a task
//! of its own, only while fewer than `max_in_flight` copies are out, and it
//! neither counts for nor asks the shadow deployment's circuit breaker.

use std::sync::atomic::{AtomicU64, Ordering};

use http_body_util::BodyExt;
use tokio::time::Instant;

use super::exchange::Forward;
use super::inbound::Inbound;
use crate::mix::splitmix64;
use crate::routing::strategy::Tokens;
use crate::routing::{Routes, ShadowMetrics, ShadowRoute};
use crate::upstream::Outgoing;
use crate::upstream::breaker::Outcome;

/// Draws which requests are copied.
static DRAW: AtomicU64 = AtomicU64::new(0);

/// Sends a copy of the request to the shadow model, when the draw picks it
/// and a slot is free.
pub(super) fn copy(
    routes: &Routes,
    shadow: &ShadowRoute,
    inbound: &mut Inbound<'_>,
    tokens: Tokens,
    forward: &Forward<'_>,
) {
    let draw = splitmix64(DRAW.fetch_add(1, Ordering::Relaxed)) as f64 / u64::MAX as f64;
    if draw >= shadow.fraction {
        return;
    }
    let Ok(slot) = shadow.slots.clone().try_acquire_owned() else {
        shadow.skipped.increment(1);
        return;
    };
    let Ok(mut plan) = routes.plan(&shadow.model, tokens) else {
        return;
    };
    let now = Instant::now();
    let Some(pick) = plan.next_alongside(now) else {
        return;
    };
    // Copies leave the breaker alone: it judges the shadow model's own traffic.
    pick.settle(Outcome::Ignored, now);
    let (Some(metrics), Ok(call)) = (
        pick.model
            .index_of(pick.target)
            .and_then(|i| shadow.by_target.get(i)),
        inbound.call(pick.target),
    ) else {
        return;
    };
    let metrics = metrics.clone();
    let provider = pick.target.provider.clone();
    let uri = call.uri.clone();
    let (body, stream) = (call.body, call.stream);
    let total = if stream {
        pick.target.stream_total
    } else {
        pick.target.total
    };
    let (request_id, hops) = (forward.request_id.clone(), forward.hops.clone());
    let deployment = pick.target.name.clone();
    tokio::spawn(async move {
        let sent = Instant::now();
        let outgoing = Outgoing {
            uri: &uri,
            body,
            stream,
            request_id: &request_id,
            anthropic_beta: None,
            hops: &hops,
            sent,
            deadline: sent + total,
        };
        let result = match provider.send(outgoing).await {
            Ok(response) => drain(response, sent + total).await,
            Err(e) => Err(e.to_string()),
        };
        record(&metrics, sent, result, &deployment);
        drop(slot);
    });
}

/// Reads an answer to its end, by `deadline`; when its first bytes came.
async fn drain(
    response: crate::upstream::UpstreamResponse,
    deadline: Instant,
) -> Result<Option<Instant>, String> {
    let mut body = response.into_body();
    let mut first = None;
    loop {
        let frame = match tokio::time::timeout_at(deadline, body.frame()).await {
            Err(_) => return Err("the answer did not end within its total timeout".into()),
            Ok(None) => return Ok(first),
            Ok(Some(frame)) => frame.map_err(|e| format!("the answer broke off: {e}"))?,
        };
        if frame.data_ref().is_some_and(|data| !data.is_empty()) {
            first.get_or_insert_with(Instant::now);
        }
    }
}

fn record(
    metrics: &ShadowMetrics,
    sent: Instant,
    result: Result<Option<Instant>, String>,
    deployment: &str,
) {
    match result {
        Ok(first) => {
            metrics.ok.increment(1);
            metrics.duration.record(sent.elapsed().as_secs_f64());
            if let Some(first) = first {
                metrics
                    .first_byte
                    .record(first.duration_since(sent).as_secs_f64());
            }
        }
        Err(e) => {
            metrics.failed.increment(1);
            tracing::debug!(deployment, error = e, "shadow request failed");
        }
    }
}
