//! What every user of Redis shares: the connection (reconnecting by
//! itself, every call bounded by `redis.timeout`) and the probe that finds
//! a Redis marked down answering again.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use redis::aio::ConnectionManager;
use tokio_util::sync::CancellationToken;

use crate::config::Redis;

/// How often a Redis marked down is pinged.
const PROBE_EVERY: Duration = Duration::from_millis(250);

/// Connects to `config.url`, waiting `redis.timeout` (2 s at least) for it.
pub async fn connect(config: &Redis) -> Result<ConnectionManager, redis::RedisError> {
    let client = redis::Client::open(config.url.as_str())?;
    let manager = redis::aio::ConnectionManagerConfig::new()
        .set_connection_timeout(Some(config.timeout))
        .set_response_timeout(Some(config.timeout));
    tokio::time::timeout(
        config.timeout.max(Duration::from_secs(2)),
        client.get_connection_manager_with_config(manager),
    )
    .await
    .map_err(|_| redis::RedisError::from(std::io::Error::from(std::io::ErrorKind::TimedOut)))?
}

/// Pings Redis every 250 ms while `up` is false; when it answers, sets
/// `up` and calls `back`. Stops with `stop`.
pub async fn probe(
    mut conn: ConnectionManager,
    up: Arc<AtomicBool>,
    timeout: Duration,
    stop: CancellationToken,
    back: impl Fn(),
) {
    let mut ticks = tokio::time::interval(PROBE_EVERY);
    loop {
        tokio::select! {
            () = stop.cancelled() => return,
            _ = ticks.tick() => {}
        }
        if up.load(Ordering::Acquire) {
            continue;
        }
        let ping = redis::cmd("PING");
        if let Ok(Ok(_)) =
            tokio::time::timeout(timeout, ping.query_async::<String>(&mut conn)).await
        {
            up.store(true, Ordering::Release);
            back();
        }
    }
}

/// The rounds of a task that syncs state with the other replicas through
/// Redis: one every period, its connection made at the first round (and again
/// after a failed attempt).
pub struct Rounds {
    conn: Option<ConnectionManager>,
    ticks: tokio::time::Interval,
}

impl Rounds {
    /// A round every `period` (a late one not made up for).
    pub fn every(period: Duration) -> Self {
        let mut ticks = tokio::time::interval(period);
        ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        Self { conn: None, ticks }
    }

    /// Waits for the next round with a connection to `config.url` (rounds
    /// while Redis does not answer are skipped, logged at debug for `what`);
    /// `None` once `stop` is cancelled.
    pub async fn next(
        &mut self,
        config: &Redis,
        what: &str,
        stop: &CancellationToken,
    ) -> Option<&mut ConnectionManager> {
        loop {
            tokio::select! {
                () = stop.cancelled() => return None,
                _ = self.ticks.tick() => {}
            }
            if self.conn.is_none() {
                match connect(config).await {
                    Ok(conn) => self.conn = Some(conn),
                    Err(e) => tracing::debug!(error = %e, what, "redis does not answer"),
                }
            }
            if self.conn.is_some() {
                break;
            }
        }
        self.conn.as_mut()
    }
}

/// This process's clock and the wall clock, read at one moment: instants
/// travel between replicas as unix milliseconds.
#[derive(Debug, Clone, Copy)]
pub struct Clocks {
    /// This process's clock.
    pub now: tokio::time::Instant,
    wall_ms: u64,
}

impl Clocks {
    /// Both clocks now.
    pub fn read() -> Self {
        let wall = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap_or_default();
        Self {
            now: tokio::time::Instant::now(),
            wall_ms: millis(wall),
        }
    }

    /// `at` (now at the latest) in unix milliseconds.
    pub fn wall(&self, at: tokio::time::Instant) -> u64 {
        self.wall_ms
            .saturating_sub(millis(self.now.saturating_duration_since(at)))
    }

    /// The instant of the unix milliseconds `ms` (now at the latest).
    pub fn instant(&self, ms: u64) -> tokio::time::Instant {
        let ago = Duration::from_millis(self.wall_ms.saturating_sub(ms));
        self.now.checked_sub(ago).unwrap_or(self.now)
    }
}

/// `d` in whole milliseconds.
pub fn millis(d: Duration) -> u64 {
    u64::try_from(d.as_millis()).unwrap_or(u64::MAX)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn instants_travel_as_unix_milliseconds_and_back() {
        let clocks = Clocks::read();
        let earlier = clocks.now - Duration::from_millis(1_500);
        let ms = clocks.wall(earlier);
        assert_eq!(clocks.wall(clocks.now) - ms, 1_500);
        assert_eq!(clocks.instant(ms), earlier);
        // The future is now, on either side.
        assert_eq!(clocks.instant(ms + 60_000), clocks.now);
        assert_eq!(
            clocks.wall(clocks.now + Duration::from_secs(5)),
            clocks.wall(clocks.now)
        );
    }
}
