//! Start-up and shutdown: providers, the listener, signals and the grace period.

mod connections;
mod descriptors;

use connections::{Capacity, ClientTimeouts, serve};

use std::collections::HashMap;
use std::io::Write;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use bytes::Bytes;
use tokio::net::TcpListener;
use tokio::time::MissedTickBehavior;
use tokio_util::sync::CancellationToken;

use arc_swap::ArcSwap;

use crate::admission::Admission;
use crate::api::{AppState, Gateway, Limits, Process, Settings};
use crate::auth::{AdminAuth, Authenticator};
use crate::cache::Cache;
use crate::config::{CacheBackend, Config, ProviderKind};
use crate::keys::Directory;
use crate::limits::Limiter;
use crate::limits::shared::Shared;
use crate::request::Finish;
use crate::routing::{Registry, Routes};
use crate::telemetry::metrics::Metrics;
use crate::telemetry::{AccessLog, BodyLog, RequestMetrics};
use crate::upstream::ProviderClient;
use crate::upstream::attempts::{RetryLive, RetryPolicy};

/// Why the gateway could not start.
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    /// The listen address could not be bound.
    #[error("cannot listen on {addr}: {source}")]
    Bind {
        /// The address.
        addr: SocketAddr,
        /// The OS error.
        source: std::io::Error,
    },
    /// A provider's HTTP client could not be built.
    #[error("cannot set up provider `{provider}`: {source}")]
    Client {
        /// Provider name.
        provider: String,
        /// What failed.
        source: crate::upstream::ClientError,
    },
    /// The signal handlers could not be installed.
    #[error("cannot listen for SIGTERM/SIGINT: {0}")]
    Signals(std::io::Error),
    /// The in-process mock provider could not start.
    #[error("cannot start the in-process mock provider: {0}")]
    Mock(std::io::Error),
    /// Redis, which shares the limits, could not be reached.
    #[error("cannot reach redis (`redis.url`): {0}")]
    Redis(redis::RedisError),
    /// The store could not be opened, migrated or read.
    #[error("cannot use the store: {0}")]
    Store(#[from] switchyard_store::StoreError),
    /// The trace exporter could not be set up.
    #[error(transparent)]
    Traces(#[from] crate::telemetry::traces::StartError),
}

/// Where the running configuration came from, and its text (for reloads).
#[derive(Debug)]
pub struct Loaded {
    /// The file (or the built-in default).
    pub source: crate::config::Source,
    /// Its text as read at start-up.
    pub text: String,
}

/// After the grace period, how long open streams get to send their error event.
const CUT_FLUSH: Duration = Duration::from_secs(1);

/// Runs the gateway until SIGTERM or SIGINT, then drains:
///
/// 1. `/ready` answers 503 while the listener still accepts, for `server.shutdown_delay`
///    (so a load balancer stops sending before connections are refused);
/// 2. the listener closes and in-flight requests finish, for at most `server.shutdown_grace`
///    (keep-alive connections idle meanwhile stay open, so that a probe on them meets the 503);
/// 3. streams still open then end with an error event (code `service_unavailable`), and the process exits.
pub async fn run(config: Config, loaded: Loaded) -> Result<(), StartError> {
    // Registered before the address is announced: a SIGTERM right after start-up drains too.
    let mut signals = Signals::register().map_err(StartError::Signals)?;
    let hangups = crate::reload::hangups();
    let descriptors = descriptors::raise();
    let sized = descriptors::sized(descriptors);
    let max_in_flight = config
        .admission
        .max_in_flight
        .unwrap_or(sized.max_in_flight);
    let max_connections = config
        .server
        .max_connections
        .unwrap_or(sized.max_connections);
    descriptors::check(descriptors, max_in_flight, max_connections);
    tracing::info!(max_in_flight, max_connections, "admission limits");
    let internal = CancellationToken::new();
    let keys = open_keys(&config).await?;
    let clients = provider_clients(&config, &internal).await?;
    let listener = TcpListener::bind(config.server.listen)
        .await
        .map_err(|source| StartError::Bind {
            addr: config.server.listen,
            source,
        })?;
    let addr = listener.local_addr().map_err(|source| StartError::Bind {
        addr: config.server.listen,
        source,
    })?;
    let ready = Arc::new(AtomicBool::new(true));
    let cut = CancellationToken::new();
    let metrics = Metrics::new();
    // The deployments' live state, for the life of the process (routes built
    // again from a new config carry it over).
    let registry = Registry::new();
    // Before the keys: it keeps their in-flight counts.
    let admission = Admission::new(&config.admission, max_in_flight, &metrics);
    metrics.describe(
        "switchyard_connections_refused_total",
        None,
        "Client connections closed as soon as accepted: server.max_connections were open.",
    );
    let refused = metrics.counter("switchyard_connections_refused_total", &[]);
    let (spend, spend_writer) = crate::limits::spend::start(
        keys.store().clone(),
        config.store.spend_queue,
        config.store.flush_interval,
        config
            .alerts
            .as_ref()
            .map(|alerts| crate::alerts::Alerts::new(alerts, keys.store().clone())),
        internal.clone(),
    );
    let shared = match &config.redis {
        Some(redis) => Some(
            Shared::connect(redis, &metrics, &internal)
                .await
                .map_err(StartError::Redis)?,
        ),
        None => None,
    };
    let cache = match &config.cache {
        Some(cache) => {
            let shared = match (&config.redis, cache.backend) {
                (Some(redis), CacheBackend::Redis | CacheBackend::MemoryRedis) => Some(
                    crate::cache::Shared::connect(
                        redis,
                        (cache.write_queue, cache.semantic_entries),
                        &metrics,
                        &internal,
                    )
                    .await
                    .map_err(StartError::Redis)?,
                ),
                _ => None,
            };
            let cache = Arc::new(Cache::new(
                cache,
                shared,
                config.models.keys().map(String::as_str),
                &metrics,
            ));
            cache.follow_vectors(&internal);
            Some(cache)
        }
        None => None,
    };
    // The ends of requests: the access line, the bodies line (when on), the
    // metrics, the usage log, then traces.
    let mut consumers: Vec<Arc<dyn crate::request::Consumer>> = vec![Arc::new(AccessLog)];
    let recent_bodies = config.telemetry.log_bodies.then(|| {
        let log = BodyLog::new(config.telemetry.recent_bodies);
        let recent = log.recent.clone();
        consumers.push(Arc::new(log));
        recent
    });
    consumers.push(Arc::new(RequestMetrics::new(&metrics)));
    let usage_writer = config.usage.as_ref().map(|usage| {
        let (log, writer) =
            crate::usage::start(keys.store().clone(), usage, &metrics, internal.clone());
        consumers.push(Arc::new(log));
        writer
    });
    let trace_exporter = match &config.telemetry.traces {
        Some(traces) => {
            let (tracer, exporter) =
                crate::telemetry::traces::start(traces, &metrics, internal.clone())?;
            consumers.push(Arc::new(tracer));
            Some(exporter)
        }
        None => None,
    };
    let (control, reload_asks) = crate::reload::Control::new(&loaded.source, &loaded.text);
    let process = Process {
        limits: Limiter::new(&config.limits, spend, shared, &metrics),
        admission,
        keys: keys.clone(),
        registry,
        retries: RetryLive::new(&config.retries, &metrics),
        metrics,
        finish: Arc::new(Finish::new(consumers)),
        cache,
        traced: trace_exporter.is_some(),
        kept_bodies: config.telemetry.kept_bodies(),
        recent_bodies,
        ready: ready.clone(),
        cut: Arc::new(cut.clone()),
        config: control,
    };
    let settings = Arc::new(settings(&config, &clients, &process)?);
    let generation = internal.child_token();
    supervise(&settings, &config, config.redis.as_ref(), &generation)?;
    let state = Arc::new(AppState {
        settings: ArcSwap::new(settings),
        process,
    });
    crate::reload::spawn(
        crate::reload::Reloader {
            source: loaded.source,
            started: loaded.text,
            listen: addr,
            redis: config.redis.clone(),
            clients,
            internal: internal.clone(),
            generation,
            hangups,
        },
        state.clone(),
        reload_asks,
    );
    tokio::spawn(metrics_upkeep(state.clone(), internal.clone()));
    let poll = config.store.poll_interval;
    let stop = internal.clone();
    if let Some(redis) = config.redis.clone() {
        tokio::spawn(crate::keys::broadcast::listen(
            redis,
            keys.clone(),
            internal.clone(),
        ));
    }
    tokio::spawn(async move { keys.follow(poll, stop).await });
    announce(addr);
    tracing::info!(%addr, providers = config.providers.len(), models = config.models.len(), auth = ?config.auth, "switchyard is serving");

    let stopping = CancellationToken::new();
    let server = serve(
        listener,
        Gateway::new(state),
        Capacity {
            max_connections,
            refused,
        },
        ClientTimeouts {
            header_read: config.server.header_read_timeout,
            idle: config.server.idle_timeout,
        },
        stopping.clone(),
    );
    tokio::pin!(server);

    tokio::select! {
        () = &mut server => {}
        () = signals.recv() => drain(&mut server, &config, &ready, &stopping, &cut).await,
    }
    internal.cancel();
    // The spend settled by the last requests, and their usage records, reach
    // the store (or the usage spill file); their spans leave for the collector.
    let usage_stopped = async {
        if let Some(writer) = usage_writer {
            writer.stopped().await;
        }
    };
    let traces_stopped = async {
        if let Some(exporter) = trace_exporter {
            exporter.stopped().await;
        }
    };
    let _ = tokio::join!(spend_writer, usage_stopped, traces_stopped);
    Ok(())
}

/// Opens the store (applying its migrations) and loads its keys and teams.
async fn open_keys(config: &Config) -> Result<Arc<Directory>, StartError> {
    let store = switchyard_store::open(&config.store.url, &config.store.options).await?;
    let keys = &config.virtual_keys;
    let directory =
        Directory::load(store, keys.cache, keys.load_timeout, config.redis.clone()).await?;
    tracing::info!(
        store = store_kind(&config.store.url),
        keys = directory.len(),
        "virtual keys loaded"
    );
    Ok(Arc::new(directory))
}

/// The store's backend, for the log (never the URL: it may hold a password).
fn store_kind(url: &str) -> &'static str {
    if url.starts_with("sqlite:") {
        "sqlite"
    } else {
        "postgres"
    }
}

/// How often the metric registry folds its histogram samples in.
const METRICS_UPKEEP: Duration = Duration::from_secs(5);

/// Keeps the metric registry's memory bounded when `/metrics` is not read:
/// histogram samples wait in buckets of their own until the next render or upkeep.
async fn metrics_upkeep(state: Arc<AppState>, stop: CancellationToken) {
    let mut ticks = tokio::time::interval(METRICS_UPKEEP);
    ticks.set_missed_tick_behavior(MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            () = stop.cancelled() => return,
            _ = ticks.tick() => state.process.metrics.upkeep(),
        }
    }
}

/// Steps 1–3 of the shutdown (see [`run`]).
async fn drain<F>(
    server: &mut std::pin::Pin<&mut F>,
    config: &Config,
    ready: &AtomicBool,
    stopping: &CancellationToken,
    cut: &CancellationToken,
) where
    F: Future<Output = ()>,
{
    ready.store(false, Ordering::Relaxed);
    let delay = config.server.shutdown_delay;
    if !delay.is_zero() {
        tracing::info!(?delay, "shutdown: /ready answers 503; still serving");
        if tokio::time::timeout(delay, server.as_mut()).await.is_ok() {
            return;
        }
    }
    let grace = config.server.shutdown_grace;
    tracing::info!(
        ?grace,
        "shutdown: no new connections; waiting for in-flight requests"
    );
    stopping.cancel();
    if tokio::time::timeout(grace, server.as_mut()).await.is_ok() {
        tracing::info!("shutdown complete");
        return;
    }
    tracing::warn!(
        ?grace,
        "shutdown grace period over; ending the requests still in flight"
    );
    cut.cancel();
    let _ = tokio::time::timeout(CUT_FLUSH, server.as_mut()).await;
}

/// The machine-readable start-up line on stdout (logs go to stderr).
pub fn announce(addr: SocketAddr) {
    let mut out = std::io::stdout().lock();
    let _ = writeln!(out, "listening on {addr}");
    let _ = out.flush();
}

/// One client per provider; `mock` providers are started in this process first.
async fn provider_clients(
    config: &Config,
    internal: &CancellationToken,
) -> Result<HashMap<String, Arc<ProviderClient>>, StartError> {
    let mut clients = HashMap::new();
    for provider in config.providers.values() {
        clients.insert(
            provider.name.clone(),
            provider_client(provider, internal).await?,
        );
    }
    Ok(clients)
}

/// The client of `provider`; for the in-process mock provider, its server
/// too (serving until `internal` is cancelled).
pub(crate) async fn provider_client(
    provider: &crate::config::Provider,
    internal: &CancellationToken,
) -> Result<Arc<ProviderClient>, StartError> {
    let base_url = if provider.kind == ProviderKind::Mock {
        let listener = TcpListener::bind("127.0.0.1:0")
            .await
            .map_err(StartError::Mock)?;
        let addr = listener.local_addr().map_err(StartError::Mock)?;
        let stop = internal.clone().cancelled_owned();
        tokio::spawn(async move {
            if let Err(e) =
                switchyard_mock::serve(listener, switchyard_mock::MockOptions::default(), stop)
                    .await
            {
                tracing::error!(error = %e, "the in-process mock provider stopped");
            }
        });
        Some(format!("http://{addr}/v1"))
    } else {
        None
    };
    let client = ProviderClient::new(provider, base_url).map_err(|source| StartError::Client {
        provider: provider.name.clone(),
        source,
    })?;
    Ok(Arc::new(client))
}

/// The settings `config` makes, with the process's live state (the start's,
/// and each reload's).
pub(crate) fn settings(
    config: &Config,
    clients: &HashMap<String, Arc<ProviderClient>>,
    process: &Process,
) -> Result<Settings, StartError> {
    Ok(Settings {
        routes: Routes::new(config, clients, &process.registry, &process.metrics)
            .map_err(|(provider, source)| StartError::Client { provider, source })?,
        auth: Authenticator::new(config.auth, &config.keys, &process.admission),
        admin: AdminAuth::new(config.server.admin_key.as_ref()),
        limits: Limits {
            max_body_bytes: config.server.max_body_bytes,
            body_timeout: config.server.body_timeout,
            max_stream_event_bytes: config.server.max_stream_event_bytes,
            max_response_bytes: config.server.max_response_bytes,
            max_hops: config.server.max_hops,
        },
        retries: RetryPolicy::new(&config.retries),
        ready_needs_every_model: config.health_checks.ready_needs_every_model,
        models_body: models_body(config),
        rotation_grace: config.virtual_keys.rotation_grace,
        ui: config.ui.clone(),
    })
}

/// Starts the tasks of `settings` (health probes, canary supervision, and
/// with `redis` the canaries' and breakers' sync with the other replicas),
/// which end when `generation` is cancelled.
pub(crate) fn supervise(
    settings: &Settings,
    config: &Config,
    redis: Option<&crate::config::Redis>,
    generation: &CancellationToken,
) -> Result<(), StartError> {
    crate::routing::probe::spawn(&settings.routes, &config.health_checks, generation)
        .map_err(|(provider, source)| StartError::Client { provider, source })?;
    let canaries = settings.routes.canaries().to_vec();
    if let Some(redis) = redis {
        tokio::spawn(crate::routing::canary::fleet::share(
            canaries.clone(),
            redis.clone(),
            generation.clone(),
        ));
        let mut breakers: Vec<(String, Arc<crate::upstream::breaker::Breaker>)> = settings
            .routes
            .models()
            .flat_map(|model| model.targets())
            .map(|target| (target.name.clone(), target.breaker.clone()))
            .collect();
        breakers.sort_by(|a, b| a.0.cmp(&b.0));
        breakers.dedup_by(|a, b| a.0 == b.0);
        tokio::spawn(crate::upstream::breaker::fleet::share(
            breakers,
            redis.clone(),
            generation.clone(),
        ));
    }
    tokio::spawn(crate::routing::canary::supervise(
        canaries,
        generation.clone(),
    ));
    Ok(())
}

fn models_body(config: &Config) -> Bytes {
    let created = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs());
    let data: Vec<serde_json::Value> = config
        .models
        .values()
        .flat_map(|m| std::iter::once(&m.name).chain(&m.aliases))
        .map(|name| serde_json::json!({ "id": name, "object": "model", "created": created, "owned_by": "switchyard" }))
        .collect();
    Bytes::from(serde_json::json!({ "object": "list", "data": data }).to_string())
}

/// SIGTERM and SIGINT, listened for from the moment they are registered.
pub struct Signals {
    #[cfg(unix)]
    terminate: tokio::signal::unix::Signal,
    #[cfg(unix)]
    interrupt: tokio::signal::unix::Signal,
}

impl Signals {
    /// Installs the handlers.
    pub fn register() -> std::io::Result<Self> {
        #[cfg(unix)]
        {
            use tokio::signal::unix::{SignalKind, signal};
            Ok(Self {
                terminate: signal(SignalKind::terminate())?,
                interrupt: signal(SignalKind::interrupt())?,
            })
        }
        #[cfg(not(unix))]
        Ok(Self {})
    }

    /// Waits for the next SIGTERM or SIGINT.
    pub async fn recv(&mut self) {
        #[cfg(unix)]
        tokio::select! {
            _ = self.terminate.recv() => {}
            _ = self.interrupt.recv() => {}
        }
        #[cfg(not(unix))]
        let _ = tokio::signal::ctrl_c().await;
    }
}
