//! From text to a validated [`Config`], gathering every problem on the way.

mod health;

use std::collections::{BTreeMap, HashMap, HashSet};
use std::net::SocketAddr;
use std::time::Duration;

use secrecy::SecretString;

use super::problems::{Problem, unknown};
use super::raw::{self, AuthMode, ConfigFile, FailureClass, ProviderKind, Strategy};
use super::read::{Read, read};
use super::tree::{Node, Place, Step};
use super::units::HumanDuration;
use super::{
    Affinity, CircuitBreaker, ClientKey, Config, Deployment, Model, Provider, Retries, Server,
    Timeouts,
};
use super::{ModelTimeouts, Route, Shadow};

mod admission;
mod cache;
mod canary;
mod catalog;
mod pricing;
mod store;
mod telemetry;
mod ui;
mod urls;

/// `api-version` of Azure providers that set none: the latest GA version.
const DEFAULT_AZURE_API_VERSION: &str = "2024-10-21";

/// `anthropic-version` of Anthropic providers that set none.
const DEFAULT_ANTHROPIC_VERSION: &str = "2023-06-01";

/// The completion token cap sent to providers that require one when neither
/// the client nor the config sets one.
const DEFAULT_MAX_OUTPUT_TOKENS: u32 = 4096;

/// The problem with `max_in_flight: 0` on a model, a deployment or a key.
const NO_ROOM: &str = "`max_in_flight` must be at least 1 (leave it out for no limit)";

/// Parses and validates; returns the config when there is no error, and every
/// problem found.
pub fn check(
    text: &str,
    env: HashMap<String, String>,
    built_in: bool,
) -> (Option<Config>, Vec<Problem>) {
    let read = match read::<ConfigFile>(text, env) {
        Ok(read) => read,
        Err(problem) => return (None, vec![problem]),
    };
    let Read {
        value,
        tree,
        removed,
        mut problems,
    } = read;
    let Some(mut file) = value else {
        return (None, problems);
    };
    if built_in {
        keep_configured_providers(&mut file);
    }
    let config = Validator {
        tree: &tree,
        removed: &removed,
        problems: &mut problems,
    }
    .config(file);
    let has_errors = problems.iter().any(Problem::is_error);
    (config.filter(|_| !has_errors), problems)
}

/// In the built-in default, a real provider joins only when its key is set.
fn keep_configured_providers(file: &mut ConfigFile) {
    file.providers.retain(|_, p| {
        p.kind == Some(ProviderKind::Mock)
            || p.api_key.as_deref().is_some_and(|k| !k.is_empty())
            || p.api_keys
                .as_ref()
                .is_some_and(|keys| keys.iter().any(|k| !k.is_empty()))
    });
    for model in file.models.values_mut() {
        model.deployments.retain(|d| {
            d.provider
                .as_ref()
                .is_some_and(|p| file.providers.contains_key(p))
        });
    }
    file.models.retain(|_, m| !m.deployments.is_empty());
    let names: HashSet<String> = file.models.keys().cloned().collect();
    for model in file.models.values_mut() {
        model.fallbacks.retain(|f| names.contains(f));
    }
}

struct Validator<'a> {
    tree: &'a Node,
    removed: &'a [Vec<Step>],
    problems: &'a mut Vec<Problem>,
}

impl Validator<'_> {
    fn place(&self, path: &[&str]) -> Option<Place> {
        let steps: Vec<Step> = path.iter().map(|s| Step::Key((*s).to_owned())).collect();
        // Fall back to the closest enclosing node that exists.
        (0..=steps.len())
            .rev()
            .find_map(|n| self.tree.find(&steps[..n]).map(|(_, place)| place))
    }

    fn error(&mut self, path: &[&str], message: impl Into<String>) {
        let place = self.place(path);
        self.problems.push(Problem::at(place, message));
    }

    fn warn(&mut self, path: &[&str], message: impl AsRef<str>) {
        let place = self.place(path);
        self.problems
            .push(Problem::warning(place, message.as_ref()));
    }

    /// A required value; reports it missing unless an earlier problem removed it.
    fn required<T>(&mut self, value: Option<T>, path: &[&str]) -> Option<T> {
        if value.is_none() {
            let steps: Vec<Step> = path.iter().map(|s| Step::Key((*s).to_owned())).collect();
            if !self.removed.contains(&steps) {
                let (name, parent) = path.split_last().map_or(("", &[][..]), |(n, p)| (*n, p));
                self.error(parent, format!("missing key `{name}`"));
            }
        }
        value
    }

    fn config(&mut self, mut file: ConfigFile) -> Option<Config> {
        let server = self.server(file.server);
        let auth = file.auth.mode.unwrap_or(AuthMode::Keys);
        if let Some(server) = &server
            && auth == AuthMode::Open
            && !server.listen.ip().is_loopback()
        {
            self.error(
                &["auth", "mode"],
                format!(
                    "`auth.mode: open` is only allowed on a loopback address, but `server.listen` is {}; use `mode: keys`",
                    server.listen
                ),
            );
        }
        let keys = self.keys(file.keys);
        let declared: Vec<String> = file.providers.keys().cloned().collect();
        let probes = health::take_probes(&mut file.providers);
        let providers = self.providers(file.providers);
        let health_checks = self.health_checks(file.health_checks, probes, &providers);
        let retries = self.retries(file.retries);
        let models = self.models(file.models, &declared, &providers, retries.attempts);
        self.semantic_models(&models);
        let circuit_breaker = self.circuit_breaker(&file.circuit_breaker);
        let routes = self.routes(file.routes, &models);
        let canary = self.canaries(file.canary, &models);
        let admission = self.admission(&file.admission);
        let virtual_keys = self.virtual_keys(&file.auth);
        let store = self.store(file.store);
        let usage = self.usage(file.usage);
        let alerts = self.alerts(file.alerts);
        let telemetry = self.telemetry(file.telemetry);
        let ui = self.ui(file.ui);
        let limits = self.rate_limits(&file.limits, &models);
        let redis = self.redis(file.redis);
        let cache = file.cache.map(|raw| self.cache(raw, redis.is_some()));
        let prices = self.prices(&file.pricing);
        Some(Config {
            server: server?,
            auth,
            virtual_keys,
            keys,
            store,
            usage,
            alerts,
            telemetry,
            ui,
            limits,
            redis,
            providers,
            models,
            canary,
            retries,
            circuit_breaker,
            routes,
            health_checks,
            admission,
            cache,
            prices: prices?,
        })
    }

    fn model_timeouts(&mut self, name: &str, raw: &raw::ModelTimeoutsConfig) -> ModelTimeouts {
        let timeouts = ModelTimeouts {
            total: raw.total.map(|d| d.0),
            first_token: raw.first_token.map(|d| d.0),
            stream_total: raw.stream_total.map(|d| d.0),
        };
        for (label, value) in [
            ("total", timeouts.total),
            ("first_token", timeouts.first_token),
            ("stream_total", timeouts.stream_total),
        ] {
            if value.is_some_and(|d| d.is_zero()) {
                self.error(
                    &["models", name, "timeouts", label],
                    format!("`{label}` must be more than 0"),
                );
            }
        }
        timeouts
    }

    /// A model's `shadow:`; `names` are every model of the file.
    fn shadow(&mut self, name: &str, m: &raw::ModelConfig, names: &[&str]) -> Option<Shadow> {
        let raw = m.shadow.as_ref()?;
        let path = ["models", name, "shadow"];
        if raw.model == name {
            self.error(&path, format!("model `{name}` cannot shadow itself"));
        } else if !names.contains(&raw.model.as_str()) {
            self.error(&path, unknown("model", &raw.model, names));
        }
        let percent = raw.percent.unwrap_or(100.0);
        if !(percent > 0.0 && percent <= 100.0) {
            self.error(&path, "`percent` must be more than 0 and at most 100");
        }
        let max_in_flight = raw.max_in_flight.unwrap_or(16);
        if max_in_flight == 0 {
            self.error(&path, "`max_in_flight` must be at least 1");
        }
        Some(Shadow {
            model: raw.model.clone(),
            fraction: percent / 100.0,
            max_in_flight,
        })
    }

    fn routes(
        &mut self,
        raw: Vec<raw::RouteConfig>,
        models: &BTreeMap<String, Model>,
    ) -> Vec<Route> {
        let known = |name: &str| {
            models.contains_key(name)
                || models.values().any(|m| m.aliases.iter().any(|a| a == name))
        };
        let mut routes = Vec::new();
        for (i, rule) in raw.into_iter().enumerate() {
            let index = i.to_string();
            let path = ["routes", index.as_str()];
            if rule.model.is_none() && rule.strategy.is_none() {
                self.error(&path, "a route needs a `model`, a `strategy`, or both");
            }
            for name in rule.model.iter().chain(&rule.when.model) {
                if !known(name) {
                    let names: Vec<&str> = models.keys().map(String::as_str).collect();
                    self.error(&path, unknown("model", name, &names));
                }
            }
            let low = rule.when.min_prompt_tokens.unwrap_or(0);
            let high = rule.when.max_prompt_tokens.unwrap_or(u64::MAX);
            if low > high {
                self.error(&path, "`min_prompt_tokens` is above `max_prompt_tokens`");
            }
            routes.push(Route {
                for_model: rule.when.model,
                tasks: rule.when.task,
                prompt_tokens: low..=high,
                keys: rule.when.key,
                model: rule.model,
                strategy: rule.strategy,
            });
        }
        routes
    }

    fn retries(&mut self, raw: raw::RetriesConfig) -> Retries {
        let retries = Retries {
            attempts: raw.attempts.unwrap_or(3),
            backoff_base: HumanDuration::or(raw.backoff_base, Duration::from_millis(100)),
            backoff_max: HumanDuration::or(raw.backoff_max, Duration::from_secs(5)),
            retry_after_cap: HumanDuration::or(raw.retry_after_cap, Duration::from_secs(30)),
            budget_ratio: raw.budget_ratio.unwrap_or(0.5),
            budget_min: raw.budget_min.unwrap_or(10),
            budget_window: HumanDuration::or(raw.budget_window, Duration::from_secs(10)),
            on: raw.on.unwrap_or_else(|| {
                vec![
                    FailureClass::Connect,
                    FailureClass::Timeout,
                    FailureClass::RateLimited,
                    FailureClass::Overloaded,
                    FailureClass::ServerError,
                    FailureClass::UpstreamAuth,
                    FailureClass::ContextLength,
                ]
            }),
        };
        if retries.attempts == 0 {
            self.error(
                &["retries", "attempts"],
                "`attempts` counts the first one too: it must be at least 1",
            );
        }
        if !(0.0..=10.0).contains(&retries.budget_ratio) {
            self.error(
                &["retries", "budget_ratio"],
                "`budget_ratio` is retries per request, between 0 and 10 (0.2 = at most 20% extra load)",
            );
        }
        if retries.budget_window.is_zero() {
            self.error(
                &["retries", "budget_window"],
                "`budget_window` must be more than 0",
            );
        }
        if retries.backoff_max < retries.backoff_base {
            self.error(
                &["retries", "backoff_max"],
                "`backoff_max` must not be shorter than `backoff_base`",
            );
        }
        retries
    }

    fn circuit_breaker(&mut self, raw: &raw::CircuitBreakerConfig) -> CircuitBreaker {
        let breaker = CircuitBreaker {
            consecutive_failures: raw.consecutive_failures.unwrap_or(0),
            failure_rate: raw.failure_rate.unwrap_or(0.5),
            margin: raw.margin.unwrap_or(2.0),
            min_requests: raw.min_requests.unwrap_or(5),
            window: HumanDuration::or(raw.window, Duration::from_secs(10)),
            cooldown: HumanDuration::or(raw.cooldown, Duration::from_secs(30)),
        };
        if !(0.0..=5.0).contains(&breaker.margin) {
            self.error(
                &["circuit_breaker", "margin"],
                "`margin` is standard errors, between 0 and 5 (2: about 95% confidence)",
            );
        }
        if !(breaker.failure_rate > 0.0 && breaker.failure_rate <= 1.0) {
            self.error(
                &["circuit_breaker", "failure_rate"],
                "`failure_rate` is a fraction of attempts, more than 0 and at most 1",
            );
        }
        for (key, value) in [("window", breaker.window), ("cooldown", breaker.cooldown)] {
            if value.is_zero() {
                self.error(
                    &["circuit_breaker", key],
                    format!("`{key}` must be more than 0"),
                );
            }
        }
        breaker
    }

    fn server(&mut self, raw: raw::ServerConfig) -> Option<Server> {
        let listen_text = raw.listen.unwrap_or_else(|| "127.0.0.1:8080".to_owned());
        let listen = match listen_text.parse::<SocketAddr>() {
            Ok(addr) => Some(addr),
            Err(_) => {
                self.error(
                    &["server", "listen"],
                    format!("`listen`: `{listen_text}` is not an address such as `127.0.0.1:8080` or `0.0.0.0:8080`"),
                );
                None
            }
        };
        let max_body_bytes = raw.max_body_bytes.map_or(10 << 20, |s| s.0);
        if max_body_bytes == 0 {
            self.error(
                &["server", "max_body_bytes"],
                "`max_body_bytes` must be more than 0",
            );
        }
        let max_stream_event_bytes = raw.max_stream_event_bytes.map_or(1 << 20, |s| s.0);
        let max_response_bytes = raw.max_response_bytes.map_or(32 << 20, |s| s.0);
        if max_response_bytes == 0 {
            self.error(
                &["server", "max_response_bytes"],
                "`max_response_bytes` must be more than 0",
            );
        }
        if raw.max_connections == Some(0) {
            self.error(
                &["server", "max_connections"],
                "`max_connections` must be at least 1 (leave it out to size it from the descriptor limit)",
            );
        }
        let max_hops = raw.max_hops.unwrap_or(5);
        if max_hops == 0 {
            self.error(&["server", "max_hops"], "`max_hops` must be at least 1");
        }
        let idle_timeout = HumanDuration::or(raw.idle_timeout, Duration::from_secs(75));
        let header_read_timeout =
            HumanDuration::or(raw.header_read_timeout, Duration::from_secs(10));
        let body_timeout = HumanDuration::or(raw.body_timeout, Duration::from_secs(30));
        for (key, value) in [
            ("idle_timeout", idle_timeout),
            ("header_read_timeout", header_read_timeout),
            ("body_timeout", body_timeout),
        ] {
            if value.is_zero() {
                self.error(&["server", key], format!("`{key}` must be more than 0"));
            }
        }
        Some(Server {
            listen: listen?,
            admin_key: raw
                .admin_key
                .filter(|k| !k.is_empty())
                .map(SecretString::from),
            max_body_bytes: usize::try_from(max_body_bytes).unwrap_or(usize::MAX),
            shutdown_grace: HumanDuration::or(raw.shutdown_grace, Duration::from_secs(30)),
            body_timeout,
            header_read_timeout,
            max_connections: raw.max_connections,
            idle_timeout,
            shutdown_delay: HumanDuration::or(raw.shutdown_delay, Duration::ZERO),
            max_stream_event_bytes: usize::try_from(max_stream_event_bytes).unwrap_or(usize::MAX),
            max_response_bytes: usize::try_from(max_response_bytes).unwrap_or(usize::MAX),
            max_hops,
        })
    }

    fn keys(&mut self, raw: Vec<raw::KeyConfig>) -> Vec<ClientKey> {
        let mut seen = HashSet::new();
        let mut keys = Vec::new();
        for (i, entry) in raw.into_iter().enumerate() {
            let Some(key) = entry.key else {
                self.error_at_index("keys", i, "missing key `key`");
                continue;
            };
            if key.is_empty() {
                self.error_at_index(
                    "keys",
                    i,
                    "`key` is empty (is its environment variable unset?)",
                );
                continue;
            }
            if !seen.insert(key.clone()) {
                self.error_at_index("keys", i, "the same key is configured twice");
            }
            if entry.max_in_flight == Some(0) {
                self.error_at_index("keys", i, NO_ROOM);
            }
            if entry.name.as_deref() == Some(crate::ui::playground::ADMIN_CALLER) {
                self.error_at_index(
                    "keys",
                    i,
                    "the name `dashboard` is the dashboard's playground's (the admin's chats are recorded under it): pick another",
                );
            }
            keys.push(ClientKey {
                name: entry.name.unwrap_or_else(|| format!("key-{i}")),
                key: SecretString::from(key),
                max_in_flight: entry.max_in_flight,
            });
        }
        keys
    }

    fn error_at_index(&mut self, list: &str, index: usize, message: &str) {
        let place = self
            .tree
            .find(&[Step::Key(list.to_owned()), Step::Index(index)])
            .map(|(_, place)| place);
        self.problems.push(Problem::at(place, message));
    }
}
