//! The response cache: an answer kept under the hash of its canonical
//! request, and given again, in microseconds and at no cost, to the same
//! request from whoever shares the scope (`key`, `team` or `global`).
//!
//! The pipeline looks a request up once it is routed and allowed
//! ([`Cache::plan`], then [`Cache::lookup`]); a hit is answered at once, in
//! the shape asked for (JSON or an event stream, whichever way it was
//! stored, [`entry`]); a miss carries a [`Fill`] in its context, which keeps
//! the bytes the client gets and stores them when the request ends whole.
//! Identical misses at once make one upstream call ([`flight`]).

mod capture;
mod embeddings;
mod entry;
mod flight;
mod key;
mod memory;
pub mod semantic;
mod shared;

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use axum::http::HeaderValue;
use metrics::Counter;

pub use capture::{Fill, Keep};
pub use embeddings::Stitch;
use embeddings::{Found, Items};
pub use entry::{Entry, Replay, Shape};
use flight::{Flights, Joined};
pub use key::{Digest, Key, Malformed, Scope, digest};
use memory::Memory;
pub use semantic::Probe;
use semantic::Vectors;
pub use shared::{Shared, VectorRecord};

use crate::config::{self, CacheScope, ModelCache};
use crate::error::Dialect;
use crate::request::Principal;
use crate::telemetry::metrics::Metrics;

/// In front of Redis, how long the memory tier keeps an entry at most: a
/// refresh made through another replica is seen here within it.
const LOCAL_TTL: Duration = Duration::from_secs(60);

/// What the cache made of a request, as `x-switchyard-cache` says.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Status {
    /// Answered from the cache.
    Hit,
    /// Answered from the cache, for a prompt close enough to a cached one.
    Semantic,
    /// Not found: served upstream (and stored, when it can be).
    Miss,
    /// The cache was not used (`no-store`, a model or request it does not apply to).
    Bypass,
}

impl Status {
    /// Its name, as the header and the access line say it.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Hit => "hit",
            Self::Semantic => "semantic",
            Self::Miss => "miss",
            Self::Bypass => "bypass",
        }
    }

    /// Its `x-switchyard-cache` value.
    pub fn header(self) -> HeaderValue {
        HeaderValue::from_static(self.as_str())
    }
}

/// What a request asks of the cache in its headers.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Ask {
    /// `cache-control: no-cache`: not looked up; the answer refreshes the entry.
    pub no_cache: bool,
    /// `cache-control: no-store`: neither looked up nor stored.
    pub no_store: bool,
    /// `x-switchyard-cache-ttl`: how long to keep the answer (0: not at all).
    pub ttl: Option<Duration>,
}

impl Ask {
    /// Takes in the directives of one `cache-control` value.
    pub fn control(&mut self, value: &HeaderValue) {
        for directive in value.to_str().unwrap_or_default().split(',') {
            match directive.trim().to_ascii_lowercase().as_str() {
                "no-cache" => self.no_cache = true,
                "no-store" => self.no_store = true,
                _ => {}
            }
        }
    }

    /// An `x-switchyard-cache-ttl` value: whole seconds, or a duration such
    /// as `5m`.
    pub fn ttl_of(value: &HeaderValue) -> Option<Duration> {
        let text = value.to_str().ok()?.trim();
        match text.parse::<u64>() {
            Ok(seconds) => Some(Duration::from_secs(seconds)),
            Err(_) => humantime::parse_duration(text).ok(),
        }
    }
}

/// Why a request went without the cache.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Bypass {
    /// `cache-control: no-store`.
    NoStore,
    /// The model's answers are not cached.
    Model,
    /// `only_deterministic`, and neither temperature 0 nor a seed.
    NotDeterministic,
    /// More than one answer asked for (`n`).
    Choices,
    /// A stream of an endpoint whose streams are not kept (legacy completions).
    Stream,
}

/// A request's way through the cache, decided before it is looked up.
#[derive(Debug)]
pub struct Planned {
    key: Key,
    /// An embeddings batch, looked up item by item.
    items: Option<Items>,
    /// The semantic lookup, when the model has one.
    probe: Option<Probe>,
    read: bool,
    ttl: Option<Duration>,
    keep: Keep,
    dialect: Dialect,
    stream: bool,
}

/// What the lookup found.
#[derive(Debug)]
pub enum Looked {
    /// A stored answer (of an identical request in flight, when `coalesced`).
    Hit {
        /// The answer.
        entry: Arc<Entry>,
        /// It was another request's, awaited.
        coalesced: bool,
    },
    /// None: the fill to carry to the request's end, when it may be stored.
    Miss(Option<Box<Fill>>),
    /// Some items of an embeddings batch: the request for the others, and
    /// the stitch of their answer.
    Partial {
        /// The body to send upstream instead of the client's.
        body: bytes::Bytes,
        /// Puts the answer together.
        stitch: Box<Stitch>,
    },
}

/// How a fill ended, for `switchyard_cache_fills_total{result}`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum FillResult {
    Stored,
    Error,
    TooLarge,
    Length,
    ToolCalls,
    Filtered,
    Unreadable,
}

impl FillResult {
    const ALL: [Self; 7] = [
        Self::Stored,
        Self::Error,
        Self::TooLarge,
        Self::Length,
        Self::ToolCalls,
        Self::Filtered,
        Self::Unreadable,
    ];

    fn as_str(self) -> &'static str {
        match self {
            Self::Stored => "stored",
            Self::Error => "error",
            Self::TooLarge => "too_large",
            Self::Length => "length",
            Self::ToolCalls => "tool_calls",
            Self::Filtered => "filtered",
            Self::Unreadable => "unreadable",
        }
    }
}

/// What a request is, to the cache: its endpoint's name in the key, the
/// top-level fields that cannot change its answer, and whether its streams
/// are kept.
#[derive(Debug, Clone, Copy)]
pub struct Kind {
    /// The endpoint, in the key.
    pub name: &'static str,
    /// Top-level fields left out of the key.
    pub ignored: &'static [&'static str],
    /// A stream of it can be stored and replayed.
    pub streams: bool,
}

impl Kind {
    /// `POST /v1/chat/completions`.
    pub const CHAT: Self = Self {
        name: "chat",
        ignored: &[
            "model",
            "stream",
            "stream_options",
            "user",
            "metadata",
            "store",
            "service_tier",
            "prompt_cache_key",
            "safety_identifier",
        ],
        streams: true,
    };
    /// `POST /v1/completions`.
    pub const COMPLETIONS: Self = Self {
        name: "completions",
        ignored: &["model", "stream", "stream_options", "user"],
        streams: false,
    };
    /// `POST /v1/embeddings`.
    pub const EMBEDDINGS: Self = Self {
        name: "embeddings",
        ignored: &["model", "user"],
        streams: false,
    };
    /// `POST /v1/messages`.
    pub const MESSAGES: Self = Self {
        name: "messages",
        ignored: &["model", "stream", "metadata"],
        streams: true,
    };
}

/// A request as the cache plans it.
#[derive(Debug, Clone, Copy)]
pub struct Request<'a> {
    /// What it asks in its headers.
    pub ask: Ask,
    /// Its endpoint.
    pub kind: Kind,
    /// The public model that serves it, and its cache settings.
    pub model: (&'a str, &'a ModelCache),
    /// Its body.
    pub body: &'a [u8],
    /// Headers that change the answer (`anthropic-beta`).
    pub extra: &'a [u8],
    /// The client's dialect.
    pub dialect: Dialect,
    /// Whether it asks for a stream.
    pub stream: bool,
}

/// The response cache. Process-lifetime.
#[derive(Debug)]
pub struct Cache {
    settings: config::Cache,
    /// The memory tier (`memory`, and in front of Redis with `memory+redis`).
    memory: Option<Memory>,
    /// The Redis tier (`redis`, `memory+redis`).
    shared: Option<Shared>,
    /// The semantic cache's vectors.
    vectors: Vectors,
    flights: Arc<Flights>,
    /// `switchyard_cache_requests_total{result}`: hit, semantic, miss, bypass.
    results: [Counter; 4],
    /// `switchyard_cache_fills_total{result}`, as [`FillResult::ALL`].
    fills: [Counter; 7],
    /// `switchyard_cache_saved_tokens_total{model}`, by public model.
    saved: HashMap<String, Counter>,
    entries: metrics::Gauge,
    bytes: metrics::Gauge,
    semantic_vectors: metrics::Gauge,
    /// `switchyard_cache_backend_errors_total{backend="embedding",op="embed"}`.
    embed_errors: Counter,
}

impl Cache {
    /// The cache of `settings`, for the public `models`; `shared` is its
    /// Redis tier, when its backend has one.
    pub fn new<'m>(
        settings: &config::Cache,
        shared: Option<Shared>,
        models: impl Iterator<Item = &'m str>,
        metrics: &Metrics,
    ) -> Self {
        metrics.describe(
            "switchyard_cache_requests_total",
            None,
            "Proxied requests by what the response cache made of them: hit, semantic, miss, bypass.",
        );
        metrics.describe(
            "switchyard_cache_fills_total",
            None,
            "Answers of cache misses by what became of them: stored, or why not.",
        );
        metrics.describe(
            "switchyard_cache_saved_tokens_total",
            None,
            "Tokens answered from the cache instead of upstream, by public model.",
        );
        metrics.describe(
            "switchyard_cache_semantic_vectors",
            None,
            "Prompt embeddings the semantic cache keeps.",
        );
        metrics.describe(
            "switchyard_cache_entries",
            None,
            "Answers kept in the memory tier of the response cache.",
        );
        metrics.describe(
            "switchyard_cache_bytes",
            None,
            "Bytes the memory tier of the response cache holds.",
        );
        metrics.describe(
            "switchyard_cache_backend_errors_total",
            None,
            "Response cache calls that failed, ran late or were dropped: to Redis by operation (get, set; \
             a full write queue drops a set), and the semantic cache's embeddings (backend embedding, op embed).",
        );
        let results = [Status::Hit, Status::Semantic, Status::Miss, Status::Bypass]
            .map(|s| metrics.counter("switchyard_cache_requests_total", &[("result", s.as_str())]));
        let fills = FillResult::ALL
            .map(|r| metrics.counter("switchyard_cache_fills_total", &[("result", r.as_str())]));
        Self {
            settings: settings.clone(),
            memory: (settings.backend != config::CacheBackend::Redis).then(|| {
                Memory::new(
                    settings.max_bytes,
                    settings.max_entry_bytes,
                    settings.idle_ttl,
                )
            }),
            shared,
            vectors: Vectors::new(settings.semantic_entries),
            flights: Arc::default(),
            results,
            fills,
            saved: models
                .map(|model| {
                    let counter =
                        metrics.counter("switchyard_cache_saved_tokens_total", &[("model", model)]);
                    (model.to_owned(), counter)
                })
                .collect(),
            semantic_vectors: metrics.gauge("switchyard_cache_semantic_vectors", &[]),
            embed_errors: metrics.counter(
                "switchyard_cache_backend_errors_total",
                &[("backend", "embedding"), ("op", "embed")],
            ),
            entries: metrics.gauge("switchyard_cache_entries", &[]),
            bytes: metrics.gauge("switchyard_cache_bytes", &[]),
        }
    }

    /// Decides a request's way through the cache: its key, whether it is
    /// looked up and stored; or why it goes without.
    pub fn plan(&self, request: &Request<'_>, principal: &Principal) -> Result<Planned, Bypass> {
        let (model, settings) = request.model;
        if !settings.enabled {
            return Err(Bypass::Model);
        }
        if request.ask.no_store {
            return Err(Bypass::NoStore);
        }
        if request.stream && !request.kind.streams {
            return Err(Bypass::Stream);
        }
        // A body that is not an object was refused by parsing already.
        let digest = key::digest(request.body, request.kind.ignored).map_err(|_| Bypass::Model)?;
        if digest.choices.is_some_and(|n| n > 1.0) {
            return Err(Bypass::Choices);
        }
        if settings.only_deterministic && digest.temperature != Some(0.0) && !digest.seeded {
            return Err(Bypass::NotDeterministic);
        }
        let scope = self.scope(principal);
        let key = Key::new(scope, request.kind.name, model, digest.hash, request.extra);
        let ttl = match request.ask.ttl {
            Some(asked) if asked.is_zero() => None,
            Some(asked) => Some(asked.min(self.settings.max_ttl)),
            None => Some(settings.ttl.unwrap_or(self.settings.ttl)),
        };
        let items = (request.kind.name == Kind::EMBEDDINGS.name)
            .then(|| Items::of(request.body, scope, model, ttl))
            .flatten();
        let probe = settings
            .semantic
            .as_ref()
            .filter(|_| request.kind.streams && !request.ask.no_cache)
            .and_then(|semantic| {
                Probe::of(
                    request.body,
                    request.kind.ignored,
                    scope,
                    (request.kind.name, model),
                    semantic,
                )
            });
        Ok(Planned {
            key,
            items,
            probe,
            read: !request.ask.no_cache,
            ttl,
            keep: Keep {
                tool_calls: settings.tool_calls,
                length: settings.length,
            },
            dialect: request.dialect,
            stream: request.stream,
        })
    }

    /// Who shares the answers of `principal`'s requests.
    fn scope<'p>(&self, principal: &'p Principal) -> Scope<'p> {
        match (self.settings.scope, principal) {
            (CacheScope::Global, _) => Scope { kind: b'g', id: "" },
            (CacheScope::Team, Principal::VirtualKey(tenant)) if tenant.team.is_some() => Scope {
                kind: b't',
                id: tenant.key.team.as_deref().unwrap_or_default(),
            },
            (_, Principal::VirtualKey(tenant)) => Scope {
                kind: b'k',
                id: &tenant.key.id,
            },
            (_, Principal::ConfigKey(name)) => Scope {
                kind: b'c',
                id: name,
            },
            (_, Principal::Open | Principal::Anonymous) => Scope { kind: b'o', id: "" },
        }
    }

    /// Looks `planned` up; on a miss that may be stored, waits for an
    /// identical request in flight, or leads the flight others wait for.
    pub async fn lookup(self: &Arc<Self>, mut planned: Planned) -> Looked {
        if let Some(items) = planned.items.take() {
            return self.lookup_items(items, planned).await;
        }
        if planned.read
            && let Some(entry) = self.get(planned.key).await
        {
            return Looked::Hit {
                entry,
                coalesced: false,
            };
        }
        let Some(ttl) = planned.ttl else {
            return Looked::Miss(None);
        };
        let mut leader = None;
        if self.settings.coalesce && planned.read {
            match self.flights.join(planned.key) {
                Joined::Leader(lead) => {
                    // Landed between the lookup and the join: no second call.
                    if let Some(entry) = self.memory.as_ref().and_then(|m| m.get(planned.key)) {
                        return Looked::Hit {
                            entry,
                            coalesced: true,
                        };
                    }
                    leader = Some(lead);
                }
                Joined::Waiter(waiter) => {
                    if let Some(entry) = waiter.wait(self.settings.coalesce_wait).await {
                        return Looked::Hit {
                            entry,
                            coalesced: true,
                        };
                    }
                }
            }
        }
        let fill = Fill::new(
            self.clone(),
            planned.key,
            ttl,
            planned.keep,
            (planned.dialect, planned.stream),
            leader,
        );
        Looked::Miss(Some(Box::new(match planned.probe {
            Some(probe) => fill.probing(probe),
            None => fill,
        })))
    }

    /// The cached answer of the prompt nearest to `vector` in `probe`'s
    /// bucket, at the model's threshold or above, and its similarity.
    pub async fn nearest(&self, probe: &Probe, vector: &[f32]) -> Option<(Arc<Entry>, f32)> {
        let (key, score) = self
            .vectors
            .nearest(probe.bucket, vector, probe.settings.threshold)?;
        match self.get(key).await {
            Some(entry) => Some((entry, score)),
            None => {
                // Its answer expired or was pushed out.
                self.vectors.forget(probe.bucket, vector.len(), key);
                None
            }
        }
    }

    /// With Redis, follows the vectors every replica publishes into this
    /// one's semantic index, until `stop`.
    pub fn follow_vectors(self: &Arc<Self>, stop: &tokio_util::sync::CancellationToken) {
        if self.shared.is_none() {
            return;
        }
        let cache = self.clone();
        let stop = stop.clone();
        tokio::spawn(async move {
            if let Some(shared) = &cache.shared {
                let vectors = &cache.vectors;
                shared
                    .follow(
                        |record| {
                            let left = record.expires_at.saturating_sub(capture::unix_millis());
                            if left > 0 {
                                vectors.insert(
                                    record.bucket,
                                    record.key,
                                    &record.vector,
                                    Duration::from_millis(left),
                                );
                            }
                        },
                        stop,
                    )
                    .await;
            }
        });
    }

    /// Keeps a prompt's `vector` in `bucket`, pointing at the entry `key`,
    /// for `ttl`: here, and with Redis on every replica.
    fn remember(&self, bucket: u128, key: Key, vector: Vec<f32>, ttl: Duration) {
        self.vectors.insert(bucket, key, &vector, ttl);
        if let Some(shared) = &self.shared {
            let expires_at = capture::unix_millis()
                .saturating_add(u64::try_from(ttl.as_millis()).unwrap_or(u64::MAX));
            shared.publish(VectorRecord {
                bucket,
                key,
                expires_at,
                vector,
            });
        }
    }

    /// How long the embedding of a prompt may take.
    pub fn semantic_timeout(&self) -> Duration {
        self.settings.semantic_timeout
    }

    /// A prompt's embedding failed or ran past [`Cache::semantic_timeout`]:
    /// the request went on as a miss.
    pub fn embedding_failed(&self) {
        self.embed_errors.increment(1);
    }

    /// Looks an embeddings batch up item by item (in memory, then the
    /// others in one Redis round trip).
    async fn lookup_items(self: &Arc<Self>, items: Items, planned: Planned) -> Looked {
        let keys = items.keys();
        let mut found: Vec<Option<Arc<Entry>>> = if planned.read {
            keys.iter()
                .map(|key| self.memory.as_ref().and_then(|m| m.get(*key)))
                .collect()
        } else {
            vec![None; keys.len()]
        };
        if planned.read
            && let Some(shared) = &self.shared
            && found.iter().any(Option::is_none)
        {
            let wanted: Vec<Key> = (0..keys.len())
                .filter(|&i| found[i].is_none())
                .map(|i| keys[i])
                .collect();
            let mut fetched = shared.get_many(&wanted).await.into_iter();
            for slot in found.iter_mut().filter(|slot| slot.is_none()) {
                *slot = fetched.next().flatten().map(Arc::new);
            }
        }
        match items.found(self, found) {
            Ok(Found::All {
                body,
                usage,
                saved_micros,
            }) => Looked::Hit {
                entry: Arc::new(Entry {
                    body,
                    form: entry::Form::Json,
                    dialect: Dialect::OpenAi,
                    usage: Some(usage),
                    cost_micros: saved_micros,
                    stored_at: capture::unix_millis(),
                }),
                coalesced: false,
            },
            Ok(Found::Some { body, stitch }) => Looked::Partial { body, stitch },
            Ok(Found::None(items)) => match planned.ttl {
                Some(ttl) => Looked::Miss(Some(Box::new(
                    Fill::new(
                        self.clone(),
                        planned.key,
                        ttl,
                        planned.keep,
                        (planned.dialect, planned.stream),
                        None,
                    )
                    .per_item(items),
                ))),
                None => Looked::Miss(None),
            },
            Err(_) => Looked::Miss(None),
        }
    }

    /// The entry under `key`: in memory, else in Redis (one round trip,
    /// kept in memory a while when found).
    async fn get(&self, key: Key) -> Option<Arc<Entry>> {
        if let Some(entry) = self.memory.as_ref().and_then(|m| m.get(key)) {
            return Some(self.settle(key, entry));
        }
        let shared = self.shared.as_ref()?;
        let entry = Arc::new(shared.get(key).await?);
        let entry = match entry.settled() {
            Some(settled) => {
                shared.replace(key, &settled);
                Arc::new(settled)
            }
            None => entry,
        };
        if let Some(memory) = &self.memory {
            memory.insert(key, entry.clone(), self.settings.ttl.min(LOCAL_TTL));
        }
        Some(entry)
    }

    /// A streamed answer in memory, found for the first time, is made the
    /// completion it adds up to once, in its place (keeping its deadline):
    /// a miss never pays for it, and later hits do not again.
    fn settle(&self, key: Key, entry: Arc<Entry>) -> Arc<Entry> {
        let (Some(settled), Some(memory)) = (entry.settled(), &self.memory) else {
            return entry;
        };
        let settled = Arc::new(settled);
        memory.replace(key, settled.clone());
        settled
    }

    /// Keeps `entry` under `key` for `ttl` in every tier.
    fn store(&self, key: Key, entry: Arc<Entry>, ttl: Duration) {
        if let Some(shared) = &self.shared {
            shared.set(key, &entry, ttl);
        }
        if let Some(memory) = &self.memory {
            let local = if self.shared.is_some() {
                ttl.min(LOCAL_TTL)
            } else {
                ttl
            };
            memory.insert(key, entry, local);
        }
    }

    /// Counts a request by what the cache made of it; a hit's tokens are
    /// counted as saved for `model`.
    pub fn count(&self, status: Status, model: &str, saved: Option<&Entry>) {
        let index = match status {
            Status::Hit => 0,
            Status::Semantic => 1,
            Status::Miss => 2,
            Status::Bypass => 3,
        };
        self.results[index].increment(1);
        if let (Some(usage), Some(counter)) = (saved.and_then(|e| e.usage), self.saved.get(model)) {
            counter.increment(usage.total_tokens);
        }
    }

    fn count_fill(&self, result: FillResult) {
        let index = FillResult::ALL
            .iter()
            .position(|r| *r == result)
            .unwrap_or(0);
        self.fills[index].increment(1);
    }

    /// Brings the size gauges up to date (when `/metrics` is read).
    pub fn upkeep(&self) {
        #[allow(clippy::cast_precision_loss)]
        self.semantic_vectors.set(self.vectors.len() as f64);
        let Some(memory) = &self.memory else {
            return;
        };
        let (entries, bytes) = memory.size();
        #[allow(clippy::cast_precision_loss)]
        {
            self.entries.set(entries as f64);
            self.bytes.set(bytes as f64);
        }
    }
}

#[cfg(test)]
mod tests;
