//! Hot reload of the configuration: on SIGHUP, when the config file changes
//! (its directory is watched, since Kubernetes updates a mounted ConfigMap by
//! swapping a symlink; events are debounced), and on `POST /admin/reload`.
//!
//! A reload reads the file and validates it in full, then builds the settings
//! it makes (routes, the keys of `keys:`, the admin key, the server's limits on
//! requests, retries) and swaps them in at once: a request under way finishes
//! on the settings it began with. What the deployments learnt (breakers,
//! health, load, canary stages) lives in the process's registry, and keys,
//! limits and budgets in the process too, so a deployment or model that stays
//! keeps its state. An invalid file is refused with every reason, and the
//! settings in use go on serving. The sections read only at start-up (the
//! listener, the store, Redis, the usage log, …) are compared with those the
//! process started with: a change there takes effect at the next start, and
//! the status names it.
//!
//! One task does every reload, in turn; [`Control`] asks it and keeps the
//! status that `GET /admin/status` shows.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use metrics::Counter;
use serde::Serialize;
use serde_json::Value;
use sha2::{Digest as _, Sha256};
use tokio::sync::{mpsc, oneshot};
use tokio_util::sync::CancellationToken;

use crate::api::AppState;
use crate::config::{self, AuthMode, Config, Source};
use crate::telemetry::metrics::Metrics;
use crate::upstream::ProviderClient;
use watch::{Watch, next_change};

#[cfg(target_os = "linux")]
mod watch;
/// The config file is watched through inotify, on Linux only; elsewhere
/// SIGHUP and the admin API reload.
#[cfg(not(target_os = "linux"))]
mod watch {
    /// No watch off Linux.
    pub(super) enum Watch {}
    impl Watch {
        pub(super) fn start(_: &std::path::Path, _: std::time::Duration) -> Option<Self> {
            tracing::info!(
                "the config file is not watched off Linux; reload with SIGHUP or POST /admin/reload"
            );
            None
        }
    }
    /// Never.
    pub(super) async fn next_change(_: &mut Option<Watch>) {
        std::future::pending().await
    }
}

/// How long the file must stay unchanged before a change is read.
const DEBOUNCE: Duration = Duration::from_millis(300);

/// The sections read only at start-up: a change to one applies at the next start.
const AT_START: &[&[&str]] = &[
    &["server", "listen"],
    &["server", "max_connections"],
    &["server", "header_read_timeout"],
    &["server", "idle_timeout"],
    &["server", "shutdown_delay"],
    &["server", "shutdown_grace"],
    &["retries", "budget_ratio"],
    &["retries", "budget_min"],
    &["retries", "budget_window"],
    &["auth", "key_cache"],
    &["auth", "load_timeout"],
    &["store"],
    &["usage"],
    &["alerts"],
    &["telemetry"],
    &["limits"],
    &["redis"],
    &["admission"],
    &["cache"],
    &["ui", "sign_in_attempts"],
];

/// What asked for a reload.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Trigger {
    /// SIGHUP.
    Signal,
    /// The config file changed.
    File,
    /// `POST /admin/reload`.
    Admin,
}

impl Trigger {
    /// Its name in logs and the status.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Signal => "signal",
            Self::File => "file",
            Self::Admin => "admin",
        }
    }
}

/// What a reload did.
#[derive(Debug, Clone, Serialize)]
#[serde(tag = "result", rename_all = "snake_case")]
pub enum Outcome {
    /// The new settings serve from now on.
    Applied {
        /// The config's version (the first 16 hex digits of its SHA-256).
        version: String,
        /// Changed sections that apply only at the next start.
        restart_needed: Vec<String>,
    },
    /// The file is the one in use: nothing was done (a change seen by the
    /// watch only; SIGHUP and the admin API always apply the file).
    Unchanged {
        /// The config's version.
        version: String,
    },
    /// The file was refused; the settings in use go on serving.
    Refused {
        /// Every reason, `file:line:column: message` where there is a place.
        reasons: Vec<String>,
    },
}

/// What `GET /admin/status` shows of the configuration.
#[derive(Debug, Clone, Serialize)]
pub struct Status {
    /// Where the configuration is read from.
    pub source: String,
    /// The version in use (the first 16 hex digits of the file's SHA-256).
    pub version: String,
    /// When it was loaded, unix seconds.
    pub loaded_at: i64,
    /// Reloads applied since the start.
    pub reloads: u64,
    /// Sections changed since the start that apply only at the next start.
    pub restart_needed: Vec<String>,
    /// The last reload refused, if any.
    pub last_refusal: Option<Refusal>,
}

/// A refused reload.
#[derive(Debug, Clone, Serialize)]
pub struct Refusal {
    /// When, unix seconds.
    pub at: i64,
    /// What asked for it.
    pub trigger: &'static str,
    /// Every reason.
    pub reasons: Vec<String>,
}

/// A reload asked for, and where its outcome goes.
type Ask = (Trigger, oneshot::Sender<Outcome>);

/// Asks the reload task for reloads, and keeps the status.
#[derive(Debug)]
pub struct Control {
    asks: mpsc::Sender<Ask>,
    status: Mutex<Status>,
}

impl Control {
    /// The control of a process started on `text` read from `source`, and
    /// the receiver its reload task reads.
    pub fn new(source: &Source, text: &str) -> (Arc<Self>, mpsc::Receiver<Ask>) {
        let (asks, rx) = mpsc::channel(8);
        let status = Status {
            source: source.name(),
            version: version(text),
            loaded_at: crate::keys::unix_now(),
            reloads: 0,
            restart_needed: Vec::new(),
            last_refusal: None,
        };
        let control = Self {
            asks,
            status: Mutex::new(status),
        };
        (Arc::new(control), rx)
    }

    /// Reloads now (after any reload under way) and answers what it did.
    pub async fn reload(&self, trigger: Trigger) -> Outcome {
        let (tx, rx) = oneshot::channel();
        let stopped = || Outcome::Refused {
            reasons: vec!["the gateway is shutting down".to_owned()],
        };
        if self.asks.send((trigger, tx)).await.is_err() {
            return stopped();
        }
        rx.await.unwrap_or_else(|_| stopped())
    }

    /// The status now.
    pub fn status(&self) -> Status {
        self.status
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }

    fn update(&self, change: impl FnOnce(&mut Status)) {
        change(&mut self.status.lock().unwrap_or_else(PoisonError::into_inner));
    }
}

/// What the reload task builds new settings with.
pub struct Reloader {
    /// Where the configuration is read from.
    pub source: Source,
    /// The text the process started with.
    pub started: String,
    /// The address the listener is bound to (the listener stays).
    pub listen: SocketAddr,
    /// The Redis the process started with (a reload keeps it).
    pub redis: Option<config::Redis>,
    /// The providers' clients, reused by a reload for a provider whose
    /// section is unchanged (its connections and, for the mock, its server).
    pub clients: HashMap<String, Arc<ProviderClient>>,
    /// Ends the process's tasks.
    pub internal: CancellationToken,
    /// Ends the tasks of the settings in use (health probes, canary
    /// supervision); cancelled when a reload replaces them.
    pub generation: CancellationToken,
    /// SIGHUP, its handler installed at start-up.
    pub hangups: Hangups,
}

/// The reload counters.
struct Counts {
    applied: Counter,
    unchanged: Counter,
    refused: Counter,
}

impl Counts {
    fn new(metrics: &Metrics) -> Self {
        metrics.describe(
            "switchyard_config_reloads_total",
            None,
            "Reloads of the configuration by result: applied, unchanged (the file changed back, or a neighbour did) or refused.",
        );
        Self {
            applied: metrics.counter("switchyard_config_reloads_total", &[("result", "applied")]),
            unchanged: metrics.counter(
                "switchyard_config_reloads_total",
                &[("result", "unchanged")],
            ),
            refused: metrics.counter("switchyard_config_reloads_total", &[("result", "refused")]),
        }
    }
}

/// Starts the reload task for `state`, reading `asks` from its [`Control`],
/// SIGHUP, and the config file's directory.
pub fn spawn(reloader: Reloader, state: Arc<AppState>, asks: mpsc::Receiver<Ask>) {
    tokio::spawn(run(reloader, state, asks));
}

async fn run(mut reloader: Reloader, state: Arc<AppState>, mut asks: mpsc::Receiver<Ask>) {
    let counts = Counts::new(&state.process.metrics);
    let started = Sections::of(&reloader.started);
    let mut sections = started.clone();
    let mut watch = match &reloader.source {
        Source::File(path) => Watch::start(path, DEBOUNCE),
        Source::BuiltIn => None,
    };
    let mut hangup = reloader.hangups.take();
    loop {
        let (trigger, answer) = tokio::select! {
            () = reloader.internal.cancelled() => return,
            ask = asks.recv() => match ask {
                Some((trigger, answer)) => (trigger, Some(answer)),
                None => return,
            },
            () = next_change(&mut watch) => (Trigger::File, None),
            () = next_hangup(&mut hangup) => (Trigger::Signal, None),
        };
        let outcome = reloader
            .reload(trigger, &state, &started, &mut sections)
            .await;
        match &outcome {
            Outcome::Applied { .. } => counts.applied.increment(1),
            Outcome::Unchanged { .. } => counts.unchanged.increment(1),
            Outcome::Refused { .. } => counts.refused.increment(1),
        }
        if let Some(answer) = answer {
            let _ = answer.send(outcome);
        }
    }
}

impl Reloader {
    async fn reload(
        &mut self,
        trigger: Trigger,
        state: &AppState,
        started: &Sections,
        sections: &mut Sections,
    ) -> Outcome {
        let control = &state.process.config;
        let refuse = |reasons: Vec<String>| {
            tracing::warn!(
                trigger = trigger.as_str(),
                ?reasons,
                "config reload refused; the config in use goes on serving"
            );
            control.update(|s| {
                s.last_refusal = Some(Refusal {
                    at: crate::keys::unix_now(),
                    trigger: trigger.as_str(),
                    reasons: reasons.clone(),
                });
            });
            Outcome::Refused { reasons }
        };
        let text = match self.source.read() {
            Ok(text) => text,
            Err(problems) => return refuse(problems.errors()),
        };
        let version = version(&text);
        if trigger == Trigger::File && control.status().version == version {
            return Outcome::Unchanged { version };
        }
        let checked = config::parse(&self.source, &text);
        let Some(config) = checked.config else {
            return refuse(checked.problems.errors());
        };
        if config.auth == AuthMode::Open && !self.listen.ip().is_loopback() {
            return refuse(vec![format!(
                "auth.mode `open` needs a loopback listener, and this gateway listens on {} (server.listen applies at the next start)",
                self.listen
            )]);
        }
        let new_sections = Sections::of(&text);
        let clients = match self.clients_for(&config, sections, &new_sections).await {
            Ok(clients) => clients,
            Err(e) => return refuse(vec![e.to_string()]),
        };
        let process = &state.process;
        let settings = match crate::server::settings(&config, &clients, process) {
            Ok(settings) => Arc::new(settings),
            Err(e) => return refuse(vec![e.to_string()]),
        };
        let generation = self.internal.child_token();
        if let Err(e) =
            crate::server::supervise(&settings, &config, self.redis.as_ref(), &generation)
        {
            generation.cancel();
            return refuse(vec![e.to_string()]);
        }
        // The new settings serve from here; the old ones' tasks stop.
        state.settings.store(settings);
        std::mem::replace(&mut self.generation, generation).cancel();
        self.clients = clients;
        *sections = new_sections;
        let restart_needed = started.changed(sections);
        tracing::info!(
            trigger = trigger.as_str(),
            %version,
            ?restart_needed,
            models = config.models.len(),
            providers = config.providers.len(),
            "config reloaded"
        );
        control.update(|s| {
            s.version.clone_from(&version);
            s.loaded_at = crate::keys::unix_now();
            s.reloads += 1;
            s.restart_needed.clone_from(&restart_needed);
        });
        Outcome::Applied {
            version,
            restart_needed,
        }
    }

    /// The clients of `config`'s providers: those in use when their section
    /// is unchanged, new ones otherwise.
    async fn clients_for(
        &self,
        config: &Config,
        old: &Sections,
        new: &Sections,
    ) -> Result<HashMap<String, Arc<ProviderClient>>, crate::server::StartError> {
        let mut clients = HashMap::new();
        for provider in config.providers.values() {
            let path = ["providers", provider.name.as_str()];
            let client = match self.clients.get(&provider.name) {
                Some(client) if old.get(&path) == new.get(&path) => client.clone(),
                _ => crate::server::provider_client(provider, &self.internal).await?,
            };
            clients.insert(provider.name.clone(), client);
        }
        Ok(clients)
    }
}

/// A config's YAML as a tree of values, to compare sections.
#[derive(Debug, Clone)]
struct Sections(Value);

impl Sections {
    /// The sections of `text` (nothing when it is not plain YAML: every
    /// section then compares as unchanged).
    fn of(text: &str) -> Self {
        Self(serde_saphyr::from_str::<Value>(text).unwrap_or(Value::Null))
    }

    fn get(&self, path: &[&str]) -> Option<&Value> {
        path.iter().try_fold(&self.0, |value, key| value.get(key))
    }

    /// The sections read only at start-up that differ in `now`, as dotted names.
    fn changed(&self, now: &Self) -> Vec<String> {
        AT_START
            .iter()
            .filter(|path| self.get(path) != now.get(path))
            .map(|path| path.join("."))
            .collect()
    }
}

/// SIGHUP's stream, when its handler could be installed.
#[cfg(unix)]
pub type Hangups = Option<tokio::signal::unix::Signal>;
/// No SIGHUP off Unix.
#[cfg(not(unix))]
pub type Hangups = Option<()>;

/// Installs SIGHUP's handler (at start-up: its default action would end the
/// process), for the reload task.
#[cfg(unix)]
pub fn hangups() -> Hangups {
    use tokio::signal::unix::{SignalKind, signal};
    signal(SignalKind::hangup())
        .inspect_err(|e| tracing::warn!(error = %e, "SIGHUP cannot be handled; reload with POST /admin/reload"))
        .ok()
}

/// No SIGHUP off Unix.
#[cfg(not(unix))]
pub fn hangups() -> Hangups {
    None
}

/// The next SIGHUP (never, without a handler).
#[cfg(unix)]
async fn next_hangup(hangup: &mut Option<tokio::signal::unix::Signal>) {
    match hangup {
        Some(signal) => {
            if signal.recv().await.is_none() {
                std::future::pending::<()>().await;
            }
        }
        None => std::future::pending().await,
    }
}

#[cfg(not(unix))]
async fn next_hangup(_: &mut Option<()>) {
    std::future::pending().await
}

/// A config's version: the first 16 hex digits of its text's SHA-256.
fn version(text: &str) -> String {
    let digest = Sha256::digest(text.as_bytes());
    digest[..8].iter().map(|b| format!("{b:02x}")).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sections_read_at_start_are_named_when_changed() {
        let before = Sections::of(
            "server:\n  listen: 127.0.0.1:8080\n  max_body_bytes: 1MiB\nstore:\n  url: sqlite://a.db\nmodels: {}\n",
        );
        let after = Sections::of(
            "server:\n  listen: 0.0.0.0:8080\n  max_body_bytes: 2MiB\nstore:\n  url: sqlite://a.db\nmodels: {m: {}}\nredis: {url: redis://x}\n",
        );
        assert_eq!(before.changed(&after), ["server.listen", "redis"]);
        assert!(before.changed(&before).is_empty());
    }

    #[test]
    fn versions_are_16_hex_digits_of_the_text() {
        assert_eq!(version("a"), version("a"));
        assert_ne!(version("a"), version("b"));
        assert_eq!(version("").len(), 16);
    }
}
