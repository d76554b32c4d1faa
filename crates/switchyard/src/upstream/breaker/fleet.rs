//! Circuit-breaker hints shared by the replicas through Redis, when it is
//! configured: a breaker that opens on one replica opens the same
//! deployment's breaker on every other within a sync period, as of the same
//! moment, so the fleet stops sending to a deployment that is down after the
//! first replica finds out rather than after each has failed on it.
//!
//! A hint is `{prefix}:breaker:{provider/model}` holding when the breaker
//! opened (unix milliseconds), kept for the rest of its cooldown. Every
//! [`SYNC`] each replica writes the hints of its breakers that opened and
//! reads the others', in one pipelined round trip. A hint opens only a
//! closed breaker; each replica then probes the deployment itself after the
//! cooldown, and closes its own breaker on its own probe's success.
//!
//! Off the request path, from one task. While Redis is down each replica
//! judges alone.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use tokio_util::sync::CancellationToken;

use super::Breaker;
use crate::config::Redis;
use crate::redis_link::{Clocks, millis};

/// How often each replica syncs its breakers' hints.
pub const SYNC: Duration = Duration::from_millis(250);

/// Shares the hints of `breakers` (each deployment's, by its
/// `provider/model` name) through `redis` every [`SYNC`] until `stop`.
pub async fn share(breakers: Vec<(String, Arc<Breaker>)>, redis: Redis, stop: CancellationToken) {
    if breakers.is_empty() {
        return;
    }
    let keys: Vec<String> = breakers
        .iter()
        .map(|(name, _)| format!("{{{}}}:breaker:{name}", redis.prefix))
        .collect();
    // The opening of each breaker last written, or taken from a hint, unix
    // ms: neither is written again.
    let mut known: HashMap<usize, u64> = HashMap::new();
    let mut rounds = crate::redis_link::Rounds::every(SYNC);
    while let Some(connection) = rounds.next(&redis, "breaker hints", &stop).await {
        let clocks = Clocks::read();
        let now = clocks.now;
        let mut pipe = redis::pipe();
        let mut writing = Vec::new();
        for (i, (_, breaker)) in breakers.iter().enumerate() {
            let Some(since) = breaker.opened_at() else {
                continue;
            };
            let since_ms = clocks.wall(since);
            let left = millis(
                breaker
                    .cooldown()
                    .saturating_sub(now.saturating_duration_since(since)),
            );
            if left > 0 && known.get(&i).is_none_or(|k| k.abs_diff(since_ms) > 5) {
                // The first opening written stands until it expires: a later
                // one would reopen replicas whose probe has just succeeded.
                pipe.cmd("SET")
                    .arg(&keys[i])
                    .arg(since_ms)
                    .arg("NX")
                    .arg("PX")
                    .arg(left)
                    .ignore();
                writing.push((i, since_ms));
            }
        }
        pipe.cmd("MGET").arg(&keys);
        let answer = tokio::time::timeout(
            redis.timeout,
            pipe.query_async::<(Vec<Option<u64>>,)>(connection),
        )
        .await;
        let hints = match answer {
            Ok(Ok((hints,))) => {
                // Noted only once written: a failed round writes them again.
                known.extend(writing);
                hints
            }
            Ok(Err(e)) => {
                tracing::debug!(error = %e, "breaker hints could not be synced through redis");
                continue;
            }
            Err(_) => {
                tracing::debug!("syncing breaker hints through redis took too long");
                continue;
            }
        };
        for (i, hint) in hints.into_iter().enumerate() {
            let (Some(since_ms), Some((name, breaker))) = (hint, breakers.get(i)) else {
                continue;
            };
            if known.get(&i).is_some_and(|k| k.abs_diff(since_ms) <= 5) {
                continue;
            }
            let since = clocks.instant(since_ms);
            known.insert(i, since_ms);
            if breaker.hint_open(since, now) {
                tracing::warn!(
                    deployment = name.as_str(),
                    opened_ms_ago = millis(now.saturating_duration_since(since)),
                    "circuit breaker opened: another replica's opened"
                );
            }
        }
    }
}
