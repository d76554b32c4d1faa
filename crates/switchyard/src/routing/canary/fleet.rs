//! Canary states shared by the replicas through Redis, when it is configured:
//! a stage reached, a rollback, an operator's pause, resume, promotion or
//! abort on one replica is taken by every other within a sync period.
//!
//! Each canary's state lives in one Redis key per model and canary config
//! (`{prefix}:canary:{model}:{digest of the config}`, so that a canary
//! configured anew starts afresh), with its version: how many changes it
//! follows, then the replica that made the last (see
//! [`super::control::Version`]). Every [`SYNC`] each replica sends its own
//! state to a script that keeps the newer of the two and answers the stored
//! one when it is newer; the replica then takes it. Two replicas changing a
//! canary at once make the same count of changes: the one with the larger id
//! wins everywhere, the other takes its state. Each replica judges the canary
//! by its own traffic, so any replica's rollback rolls back the fleet, and the
//! first to see a stage through moves the fleet on.
//!
//! Off the request path: one script call per canary per sync, from one task.
//! While Redis is down each replica goes on alone and syncs when it is back.

use std::sync::Arc;
use std::time::Duration;

use redis::Script;
use serde::{Deserialize, Serialize};
use sha2::{Digest as _, Sha256};
use tokio_util::sync::CancellationToken;

use super::Canary;
use super::control::Version;
use crate::config::Redis;

/// How often each replica syncs its canaries.
pub const SYNC: Duration = Duration::from_millis(250);

/// How long a canary's shared state outlives its last change.
const KEEP: Duration = Duration::from_secs(30 * 86_400);

/// Keeps the newer of the stored state and ours (`ARGV[1]`, its version
/// first, in a fixed width so that texts compare as versions do); answers
/// the stored one when it is newer, or when ours is a fresh replica's
/// (`ARGV[4]` = 1), which never replaces a stored state.
const SYNC_SCRIPT: &str = r"
local stored = redis.call('GET', KEYS[1])
local ours = ARGV[1]
local width = tonumber(ARGV[3])
if stored and ARGV[4] == '1' then
  return stored
end
if stored and string.sub(stored, 1, width) >= string.sub(ours, 1, width) then
  if string.sub(stored, 1, width) == string.sub(ours, 1, width) then
    return false
  end
  return stored
end
redis.call('SET', KEYS[1], ours, 'PX', ARGV[2])
return false
";

/// A canary's state as the replicas share it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Shared {
    /// Its version (not in the JSON: written before it).
    #[serde(skip)]
    pub version: Version,
    /// Ours has neither changed nor taken the fleet's since this replica
    /// began (not in the JSON).
    #[serde(skip)]
    pub fresh: bool,
    /// `running`, `paused`, `rolled_back` or `promoted`.
    pub state: String,
    /// Its stage's index.
    pub stage: usize,
    /// Why it was rolled back.
    pub reason: Option<String>,
    /// When its stage (or state) began, unix milliseconds.
    pub since_ms: u64,
}

/// The width of a version's text: twice 20 decimal digits and `|`, then 16
/// hex digits and `|`.
const VERSION_WIDTH: usize = 59;

impl Shared {
    /// Its text in Redis: the version, then the JSON.
    fn encode(&self) -> String {
        let (decisions, epoch, origin) = self.version;
        let json = serde_json::to_string(self).unwrap_or_default();
        format!("{decisions:020}|{epoch:020}|{origin:016x}|{json}")
    }

    /// The state in `text`, when it is one.
    fn decode(text: &str) -> Option<Self> {
        let (version, json) = (text.get(..VERSION_WIDTH)?, text.get(VERSION_WIDTH..)?);
        let decisions = version.get(..20)?.parse().ok()?;
        let epoch = version.get(21..41)?.parse().ok()?;
        let origin = u64::from_str_radix(version.get(42..58)?, 16).ok()?;
        let mut shared: Self = serde_json::from_str(json).ok()?;
        shared.version = (decisions, epoch, origin);
        Some(shared)
    }
}

/// The Redis key of `canary`'s state.
fn key(redis: &Redis, canary: &Canary) -> String {
    let digest = Sha256::digest(format!("{:?}", canary.config()).as_bytes());
    let digest: String = digest[..8].iter().map(|b| format!("{b:02x}")).collect();
    format!("{{{}}}:canary:{}:{digest}", redis.prefix, canary.model())
}

/// Syncs `canaries` with the other replicas through `redis` every [`SYNC`]
/// until `stop` (returns at once when there is none).
pub async fn share(canaries: Vec<Arc<Canary>>, redis: Redis, stop: CancellationToken) {
    if canaries.is_empty() {
        return;
    }
    let me = replica_id();
    let keys: Vec<String> = canaries.iter().map(|c| key(&redis, c)).collect();
    let script = Script::new(SYNC_SCRIPT);
    let mut rounds = crate::redis_link::Rounds::every(SYNC);
    while let Some(connection) = rounds.next(&redis, "canary sync", &stop).await {
        for (canary, key) in canaries.iter().zip(&keys) {
            let ours = canary.shared(me);
            let mut call = script.key(key);
            call.arg(ours.encode())
                .arg(u64::try_from(KEEP.as_millis()).unwrap_or(u64::MAX))
                .arg(VERSION_WIDTH - 1)
                .arg(u8::from(ours.fresh));
            let answer = tokio::time::timeout(
                redis.timeout,
                call.invoke_async::<Option<String>>(connection),
            )
            .await;
            match answer {
                Ok(Ok(Some(stored))) => {
                    if let Some(newer) = Shared::decode(&stored) {
                        canary.adopt(newer, me);
                    }
                }
                Ok(Ok(None)) => {}
                Ok(Err(e)) => {
                    tracing::debug!(error = %e, "a canary could not be synced through redis");
                    break;
                }
                Err(_) => {
                    tracing::debug!("syncing a canary through redis took too long");
                    break;
                }
            }
        }
    }
}

/// This replica's id, drawn once per process: a change of ours is written
/// with it.
fn replica_id() -> u64 {
    static ID: std::sync::OnceLock<u64> = std::sync::OnceLock::new();
    *ID.get_or_init(|| {
        getrandom::u64()
            .unwrap_or_else(|_| u64::from(std::process::id()))
            .max(1)
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn shared(decisions: u64, epoch: u64, origin: u64) -> Shared {
        Shared {
            version: (decisions, epoch, origin),
            fresh: false,
            state: "paused".to_owned(),
            stage: 1,
            reason: None,
            since_ms: 1_700_000_000_000,
        }
    }

    #[test]
    fn versions_compare_as_their_texts_do() {
        let ordered = [
            shared(0, 0, 5),
            shared(0, 1, 1),
            shared(0, 1, u64::MAX),
            shared(0, 10, 0),
            shared(1, 0, 3),
            shared(1, 2, 0),
            shared(12, 0, 0),
        ];
        for pair in ordered.windows(2) {
            let (a, b) = (pair[0].encode(), pair[1].encode());
            assert!(a[..VERSION_WIDTH - 1] < b[..VERSION_WIDTH - 1], "{a} < {b}");
            assert!(pair[0].version < pair[1].version);
        }
    }

    #[test]
    fn a_state_reads_back_as_written() {
        let written = Shared {
            reason: Some("error rate 0.5 over 0.1".to_owned()),
            ..shared(2, 7, 0xabc)
        };
        assert_eq!(Shared::decode(&written.encode()), Some(written));
        assert_eq!(Shared::decode("garbage"), None);
    }
}
