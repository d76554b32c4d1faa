//! The Redis tier: answers shared by every replica, compressed.
//!
//! A lookup is one `GET` within `redis.timeout`; a store is queued to a
//! writer task that sends `SET … PX` in pipelined batches, off the
//! request's path (a full queue drops the write, counted). A call that
//! fails or runs late marks Redis down (logged once per outage): while it
//! is down the tier is skipped without a call, every request is a miss
//! served upstream, and a probe pings it every 250 ms until it answers.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use bytes::Bytes;
use metrics::Counter;
use redis::aio::ConnectionManager;
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

use super::entry::Entry;
use super::key::Key;
use crate::config::Redis;
use crate::telemetry::metrics::Metrics;

/// Stores sent in one round trip at most.
const WRITE_BATCH: usize = 64;
/// Values from this size on are compressed (below it lz4 saves little).
const COMPRESS_FROM: usize = 1024;
/// The first byte of a value: stored as is, or compressed.
const RAW: u8 = b'r';
const LZ4: u8 = b'z';

/// One queued write.
enum Write {
    /// An answer, kept for `ttl_ms`; with `None`, put in the place of the
    /// one stored under `key`, keeping its TTL (nothing when there is none).
    Entry {
        key: String,
        value: Vec<u8>,
        ttl_ms: Option<u64>,
    },
    /// A prompt's vector, for every replica's semantic index.
    Vector(VectorRecord),
}

/// A semantic vector as the replicas share it.
#[derive(Debug, Clone, PartialEq)]
pub struct VectorRecord {
    /// Its bucket.
    pub bucket: u128,
    /// The key of the entry it points at.
    pub key: Key,
    /// When it expires, in Unix milliseconds.
    pub expires_at: u64,
    /// The vector.
    pub vector: Vec<f32>,
}

/// Vectors read from the shared stream in one call at most.
const FOLLOW_BATCH: usize = 512;
/// How often the shared stream of vectors is read.
const FOLLOW_EVERY: Duration = Duration::from_millis(200);

/// The Redis tier.
pub struct Shared {
    conn: ConnectionManager,
    prefix: String,
    timeout: Duration,
    up: Arc<AtomicBool>,
    writes: mpsc::Sender<Write>,
    /// `switchyard_cache_backend_errors_total{op}`: get, set.
    get_errors: Counter,
    set_errors: Counter,
}

impl std::fmt::Debug for Shared {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Shared")
            .field("prefix", &self.prefix)
            .finish_non_exhaustive()
    }
}

impl Shared {
    /// Connects to `config.url` and starts the writer (a queue of
    /// `queue` stores; the stream of vectors trimmed to about
    /// `max_vectors`) and the probe.
    pub async fn connect(
        config: &Redis,
        (queue, max_vectors): (usize, usize),
        metrics: &Metrics,
        stop: &CancellationToken,
    ) -> Result<Self, redis::RedisError> {
        let conn = crate::redis_link::connect(config).await?;
        let counter = |op| {
            metrics.counter(
                "switchyard_cache_backend_errors_total",
                &[("backend", "redis"), ("op", op)],
            )
        };
        let set_errors = counter("set");
        let up = Arc::new(AtomicBool::new(true));
        let (writes, queued) = mpsc::channel(queue);
        tokio::spawn(writer(
            conn.clone(),
            queued,
            (format!("{{{}}}:c:vectors", config.prefix), max_vectors),
            config.timeout,
            set_errors.clone(),
            stop.clone(),
        ));
        tokio::spawn(crate::redis_link::probe(
            conn.clone(),
            up.clone(),
            config.timeout,
            stop.clone(),
            || tracing::info!("redis answers again: the response cache's shared tier is back"),
        ));
        Ok(Self {
            conn,
            prefix: config.prefix.clone(),
            timeout: config.timeout,
            up,
            writes,
            get_errors: counter("get"),
            set_errors,
        })
    }

    fn key(&self, key: Key) -> String {
        format!("{{{}}}:c:{}", self.prefix, key.hex())
    }

    /// The entry under `key`, within `redis.timeout`; `None` when missing,
    /// unreadable, or Redis cannot answer in time.
    pub async fn get(&self, key: Key) -> Option<Entry> {
        if !self.up.load(Ordering::Acquire) {
            self.get_errors.increment(1);
            return None;
        }
        let mut conn = self.conn.clone();
        let mut cmd = redis::cmd("GET");
        cmd.arg(self.key(key));
        let get = cmd.query_async::<Option<Vec<u8>>>(&mut conn);
        match tokio::time::timeout(self.timeout, get).await {
            Ok(Ok(value)) => decode(&value?),
            Ok(Err(e)) => {
                self.down(&e.to_string());
                None
            }
            Err(_) => {
                self.down("no answer within redis.timeout");
                None
            }
        }
    }

    /// The entries under `keys`, in one round trip (`MGET`) within
    /// `redis.timeout`; all `None` when Redis cannot answer in time.
    pub async fn get_many(&self, keys: &[Key]) -> Vec<Option<Entry>> {
        let none = || keys.iter().map(|_| None).collect();
        if !self.up.load(Ordering::Acquire) {
            self.get_errors.increment(1);
            return none();
        }
        let mut conn = self.conn.clone();
        let mut cmd = redis::cmd("MGET");
        for key in keys {
            cmd.arg(self.key(*key));
        }
        let get = cmd.query_async::<Vec<Option<Vec<u8>>>>(&mut conn);
        match tokio::time::timeout(self.timeout, get).await {
            Ok(Ok(values)) if values.len() == keys.len() => {
                values.into_iter().map(|value| decode(&value?)).collect()
            }
            Ok(Ok(_)) => none(),
            Ok(Err(e)) => {
                self.down(&e.to_string());
                none()
            }
            Err(_) => {
                self.down("no answer within redis.timeout");
                none()
            }
        }
    }

    /// Queues `entry` to be kept under `key` for `ttl`.
    pub fn set(&self, key: Key, entry: &Entry, ttl: Duration) {
        self.queue(
            key,
            entry,
            Some(u64::try_from(ttl.as_millis()).unwrap_or(u64::MAX).max(1)),
        );
    }

    /// Queues `entry` to take the place of the one kept under `key`, with
    /// the time it has left (`SET … XX KEEPTTL`): a streamed answer read
    /// back is stored as the completion it was made, so no replica makes it
    /// again.
    pub fn replace(&self, key: Key, entry: &Entry) {
        self.queue(key, entry, None);
    }

    fn queue(&self, key: Key, entry: &Entry, ttl_ms: Option<u64>) {
        if !self.up.load(Ordering::Acquire) {
            self.set_errors.increment(1);
            return;
        }
        let write = Write::Entry {
            key: self.key(key),
            value: encode(entry),
            ttl_ms,
        };
        if self.writes.try_send(write).is_err() {
            self.set_errors.increment(1);
        }
    }

    /// Queues `record` for the shared stream of vectors, which every
    /// replica follows ([`Shared::follow`]).
    pub fn publish(&self, record: VectorRecord) {
        if !self.up.load(Ordering::Acquire) || self.writes.try_send(Write::Vector(record)).is_err()
        {
            self.set_errors.increment(1);
        }
    }

    fn stream(&self) -> String {
        format!("{{{}}}:c:vectors", self.prefix)
    }

    /// Reads the shared stream of vectors from its start, then as it grows,
    /// handing each record to `insert`; stops with `stop`.
    pub async fn follow(&self, mut insert: impl FnMut(VectorRecord), stop: CancellationToken) {
        let stream = self.stream();
        let mut last = "0-0".to_owned();
        let mut ticks = tokio::time::interval(FOLLOW_EVERY);
        loop {
            tokio::select! {
                () = stop.cancelled() => return,
                _ = ticks.tick() => {}
            }
            if !self.up.load(Ordering::Acquire) {
                continue;
            }
            let mut conn = self.conn.clone();
            let mut cmd = redis::cmd("XREAD");
            cmd.arg("COUNT")
                .arg(FOLLOW_BATCH)
                .arg("STREAMS")
                .arg(&stream)
                .arg(&last);
            let read = cmd.query_async::<redis::streams::StreamReadReply>(&mut conn);
            let Ok(Ok(reply)) = tokio::time::timeout(self.timeout * 4, read).await else {
                continue;
            };
            for id in reply.keys.into_iter().flat_map(|k| k.ids) {
                if let Some(record) = read_record(&id.map) {
                    insert(record);
                }
                last = id.id;
            }
        }
    }

    fn down(&self, why: &str) {
        self.get_errors.increment(1);
        if self.up.swap(false, Ordering::AcqRel) {
            tracing::warn!(
                error = why,
                "redis is unreachable: the response cache goes without its shared tier until it answers"
            );
        }
    }
}

/// A record of the shared stream of vectors; `None` when malformed.
fn read_record(fields: &std::collections::HashMap<String, redis::Value>) -> Option<VectorRecord> {
    let bytes = |name: &str| match fields.get(name)? {
        redis::Value::BulkString(bytes) => Some(bytes.as_slice()),
        _ => None,
    };
    let u128_of = |name: &str| Some(u128::from_le_bytes(bytes(name)?.try_into().ok()?));
    let expires_at = std::str::from_utf8(bytes("e")?).ok()?.parse().ok()?;
    let vector = bytes("v")?;
    if vector.len() % 4 != 0 {
        return None;
    }
    Some(VectorRecord {
        bucket: u128_of("b")?,
        key: Key(u128_of("k")?),
        expires_at,
        vector: vector
            .chunks_exact(4)
            .map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]]))
            .collect(),
    })
}

/// An entry as Redis keeps it: a marker byte, then the encoding, compressed
/// when large.
fn encode(entry: &Entry) -> Vec<u8> {
    let encoded = entry.encode();
    if encoded.len() < COMPRESS_FROM {
        let mut value = Vec::with_capacity(encoded.len() + 1);
        value.push(RAW);
        value.extend_from_slice(&encoded);
        return value;
    }
    let mut value = vec![LZ4];
    value.extend_from_slice(&lz4_flex::compress_prepend_size(&encoded));
    value
}

fn decode(value: &[u8]) -> Option<Entry> {
    let (marker, rest) = value.split_first()?;
    let encoded = match *marker {
        RAW => Bytes::copy_from_slice(rest),
        LZ4 => Bytes::from(lz4_flex::decompress_size_prepended(rest).ok()?),
        _ => return None,
    };
    Entry::decode(encoded)
}

/// Sends queued stores in pipelined batches.
async fn writer(
    conn: ConnectionManager,
    mut queue: mpsc::Receiver<Write>,
    (stream, max_vectors): (String, usize),
    timeout: Duration,
    errors: Counter,
    stop: CancellationToken,
) {
    let mut batch = Vec::with_capacity(WRITE_BATCH);
    loop {
        tokio::select! {
            () = stop.cancelled() => return,
            received = queue.recv_many(&mut batch, WRITE_BATCH) => {
                if received == 0 {
                    return;
                }
            }
        }
        let mut pipe = redis::pipe();
        let count = batch.len() as u64;
        for write in batch.drain(..) {
            match write {
                Write::Entry { key, value, ttl_ms } => {
                    let set = pipe.cmd("SET").arg(key).arg(value);
                    match ttl_ms {
                        Some(ttl_ms) => set.arg("PX").arg(ttl_ms),
                        None => set.arg("XX").arg("KEEPTTL"),
                    }
                    .ignore();
                }
                Write::Vector(record) => {
                    let vector: Vec<u8> =
                        record.vector.iter().flat_map(|x| x.to_le_bytes()).collect();
                    pipe.cmd("XADD")
                        .arg(&stream)
                        .arg("MAXLEN")
                        .arg("~")
                        .arg(max_vectors)
                        .arg("*")
                        .arg("b")
                        .arg(record.bucket.to_le_bytes().as_slice())
                        .arg("k")
                        .arg(record.key.0.to_le_bytes().as_slice())
                        .arg("e")
                        .arg(record.expires_at)
                        .arg("v")
                        .arg(vector)
                        .ignore();
                }
            }
        }
        let mut conn = conn.clone();
        let sent = tokio::time::timeout(timeout * 4, pipe.query_async::<()>(&mut conn)).await;
        if !matches!(sent, Ok(Ok(()))) {
            errors.increment(count);
        }
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use crate::cache::entry::Form;
    use crate::error::Dialect;

    #[test]
    fn values_small_and_large_come_back_as_they_went() {
        for size in [10, 5000] {
            let entry = Entry {
                body: Bytes::from(vec![b'a'; size]),
                form: Form::Json,
                dialect: Dialect::OpenAi,
                usage: None,
                cost_micros: 9,
                stored_at: 1,
            };
            let value = encode(&entry);
            assert_eq!(value[0], if size < COMPRESS_FROM { RAW } else { LZ4 });
            if size >= COMPRESS_FROM {
                assert!(value.len() < size / 10);
            }
            assert_eq!(decode(&value), Some(entry));
        }
        assert_eq!(decode(b"x"), None);
        assert_eq!(decode(b""), None);
    }
}
