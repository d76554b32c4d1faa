//! Changes to keys and teams announced through Redis, when it is configured:
//! whoever changes the store (the admin API of any replica, the CLI)
//! publishes on `{prefix}:changes`, and every replica that hears it reads the
//! change feed at once instead of at its next poll. The message carries
//! nothing but the news; the store stays the one source, and the poll the
//! backstop for a message lost while a subscriber reconnects.

use std::sync::Arc;
use std::time::Duration;

use futures_util::StreamExt;
use tokio_util::sync::CancellationToken;

use super::Directory;
use crate::config::Redis;

/// How long a publish may take before it is given up (the poll still carries the change).
const PUBLISH_WAIT: Duration = Duration::from_millis(500);

/// The wait before a lost subscription is made again.
const RESUBSCRIBE: Duration = Duration::from_secs(1);

fn channel(redis: &Redis) -> String {
    format!("{{{}}}:changes", redis.prefix)
}

/// Announces a change to every replica listening (best effort).
pub async fn publish(redis: &Redis) {
    let send = async {
        let client = redis::Client::open(redis.url.as_str())?;
        let mut conn = client.get_multiplexed_async_connection().await?;
        redis::cmd("PUBLISH")
            .arg(channel(redis))
            .arg(1)
            .query_async::<i64>(&mut conn)
            .await
    };
    match tokio::time::timeout(PUBLISH_WAIT, send).await {
        Ok(Ok(_)) => {}
        Ok(Err(e)) => {
            tracing::warn!(error = %e, "a key change could not be announced on redis; replicas see it at their next poll")
        }
        Err(_) => tracing::warn!(
            "announcing a key change on redis took too long; replicas see it at their next poll"
        ),
    }
}

/// Reads the change feed whenever a change is announced, until `stop`.
pub async fn listen(redis: Redis, directory: Arc<Directory>, stop: CancellationToken) {
    let channel = channel(&redis);
    loop {
        let subscribed = async {
            let client = redis::Client::open(redis.url.as_str())?;
            let mut pubsub = client.get_async_pubsub().await?;
            pubsub.subscribe(&channel).await?;
            Ok::<_, redis::RedisError>(pubsub)
        };
        match subscribed.await {
            Ok(mut pubsub) => {
                let mut messages = pubsub.on_message();
                loop {
                    tokio::select! {
                        () = stop.cancelled() => return,
                        message = messages.next() => match message {
                            Some(_) => {
                                if let Err(e) = directory.sync().await {
                                    tracing::warn!(error = %e, "an announced key change could not be read from the store");
                                }
                            }
                            None => break,
                        },
                    }
                }
            }
            Err(e) => tracing::debug!(error = %e, "cannot subscribe to key changes on redis"),
        }
        tokio::select! {
            () = stop.cancelled() => return,
            () = tokio::time::sleep(RESUBSCRIBE) => {}
        }
    }
}
