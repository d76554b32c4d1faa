//! The catalog of a config: its providers and its public models with their
//! deployments.

use super::*;
use crate::config::Pool;

impl Validator<'_> {
    pub(super) fn providers(
        &mut self,
        raw: BTreeMap<String, raw::ProviderConfig>,
    ) -> BTreeMap<String, Provider> {
        let mut providers = BTreeMap::new();
        for (name, p) in raw {
            let path = ["providers", name.as_str()];
            let Some(kind) = self.required(p.kind, &["providers", &name, "kind"]) else {
                continue;
            };
            let base_url = match (kind, p.base_url) {
                (ProviderKind::Mock, Some(_)) => {
                    self.error(
                        &["providers", &name, "base_url"],
                        "a `mock` provider runs in this process and takes no `base_url`",
                    );
                    continue;
                }
                (ProviderKind::Mock, None) => String::new(),
                (_, None) => {
                    self.required::<()>(None, &["providers", &name, "base_url"]);
                    continue;
                }
                (_, Some(url)) => match url.parse::<axum::http::Uri>() {
                    Ok(parsed)
                        if parsed.authority().is_some()
                            && matches!(parsed.scheme_str(), Some("http" | "https")) =>
                    {
                        if !self.base_url_target(&name, &url, &parsed, p.allow_private_networks) {
                            continue;
                        }
                        url.trim_end_matches('/').to_owned()
                    }
                    _ => {
                        self.error(
                            &["providers", &name, "base_url"],
                            format!(
                                "`base_url`: `{}` is not an http(s) URL such as `https://api.deepseek.com/v1`",
                                urls::redacted(&url)
                            ),
                        );
                        continue;
                    }
                },
            };
            let api_version = match (kind, p.api_version, p.anthropic_version) {
                (ProviderKind::Azure, version, None) => {
                    version.unwrap_or_else(|| DEFAULT_AZURE_API_VERSION.to_owned())
                }
                (ProviderKind::Anthropic, None, version) => {
                    version.unwrap_or_else(|| DEFAULT_ANTHROPIC_VERSION.to_owned())
                }
                (_, None, None) => String::new(),
                (_, azure, _) => {
                    let key = if azure.is_some() {
                        "api_version"
                    } else {
                        "anthropic_version"
                    };
                    let owner = if azure.is_some() {
                        "azure"
                    } else {
                        "anthropic"
                    };
                    self.error(
                        &["providers", &name, key],
                        format!(
                            "`{key}` applies to `{owner}` providers only; `{name}` is of kind `{}`",
                            kind.as_str()
                        ),
                    );
                    continue;
                }
            };
            if axum::http::HeaderValue::from_str(&api_version).is_err() {
                self.error(&path, "the API version must be printable ASCII");
                continue;
            }
            if p.api_key.is_some() && p.api_keys.is_some() {
                self.error(
                    &["providers", &name, "api_keys"],
                    "give either `api_key` or `api_keys`, not both",
                );
            }
            let api_keys: Vec<SecretString> = p
                .api_key
                .into_iter()
                .chain(p.api_keys.into_iter().flatten())
                .filter(|k| !k.is_empty())
                .map(SecretString::from)
                .collect();
            if api_keys.is_empty() && kind != ProviderKind::Mock {
                self.warn(
                    &path,
                    format!("provider `{name}` has no `api_key` (is its variable unset?): requests go out without credentials"),
                );
            }
            let t = p.timeouts;
            let timeouts = Timeouts {
                connect: HumanDuration::or(t.connect, Duration::from_secs(5)),
                // A non-streamed answer of a reasoning model arrives only when it is
                // complete: minutes, not seconds.
                first_byte: HumanDuration::or(t.first_byte, Duration::from_secs(300)),
                idle: HumanDuration::or(t.idle, Duration::from_secs(300)),
                total: HumanDuration::or(t.total, Duration::from_secs(600)),
                first_token: Duration::ZERO,
                stream_total: Duration::ZERO,
            };
            let timeouts = Timeouts {
                first_token: HumanDuration::or(t.first_token, timeouts.first_byte),
                stream_total: HumanDuration::or(t.stream_total, timeouts.total),
                ..timeouts
            };
            for (label, value) in [
                ("connect", timeouts.connect),
                ("first_byte", timeouts.first_byte),
                ("idle", timeouts.idle),
                ("total", timeouts.total),
                ("first_token", timeouts.first_token),
                ("stream_total", timeouts.stream_total),
            ] {
                if value.is_zero() {
                    self.error(
                        &["providers", &name, "timeouts", label],
                        format!("`{label}` must be more than 0"),
                    );
                }
            }
            let pool = self.pool(&name, &p.pool);
            providers.insert(
                name.clone(),
                Provider {
                    name,
                    kind,
                    base_url,
                    api_keys,
                    api_version,
                    timeouts,
                    pool,
                    http2: p.http2,
                },
            );
        }
        providers
    }

    /// `pool:` of provider `name`, with its defaults.
    fn pool(&mut self, name: &str, raw: &raw::PoolConfig) -> Pool {
        let defaults = Pool::default();
        let idle_timeout = HumanDuration::or(raw.idle_timeout, defaults.idle_timeout);
        if idle_timeout.is_zero() {
            self.error(
                &["providers", name, "pool", "idle_timeout"],
                "`idle_timeout` must be more than 0 (set `max_idle: 0` to keep no idle connection)",
            );
        }
        Pool {
            max_idle: raw.max_idle.map_or(defaults.max_idle, |n| {
                usize::try_from(n).unwrap_or(usize::MAX)
            }),
            idle_timeout,
        }
    }

    /// `declared` holds every provider name of the file, valid or not: a deployment
    /// on a provider that has its own problem is not reported again.
    pub(super) fn models(
        &mut self,
        raw: BTreeMap<String, raw::ModelConfig>,
        declared: &[String],
        providers: &BTreeMap<String, Provider>,
        attempts: u32,
    ) -> BTreeMap<String, Model> {
        let names: Vec<&str> = raw.keys().map(String::as_str).collect();
        let provider_names: Vec<&str> = declared.iter().map(String::as_str).collect();
        let mut models = BTreeMap::new();
        for (name, m) in &raw {
            if m.deployments.is_empty() {
                self.error(
                    &["models", name],
                    format!("model `{name}` has no deployments"),
                );
            }
            let mut deployments = Vec::new();
            for (i, d) in m.deployments.iter().enumerate() {
                let place = self
                    .tree
                    .find(&[
                        Step::Key("models".into()),
                        Step::Key(name.clone()),
                        Step::Key("deployments".into()),
                        Step::Index(i),
                    ])
                    .map(|(_, place)| place);
                let (Some(provider), Some(model)) = (d.provider.clone(), d.model.clone()) else {
                    let missing = if d.provider.is_none() {
                        "provider"
                    } else {
                        "model"
                    };
                    self.problems
                        .push(Problem::at(place, format!("missing key `{missing}`")));
                    continue;
                };
                if !declared.contains(&provider) {
                    let message = unknown("provider", &provider, &provider_names);
                    self.problems.push(Problem::at(place, message));
                    continue;
                }
                if !providers.contains_key(&provider) {
                    continue;
                }
                if d.weight == Some(0) {
                    self.problems.push(Problem::at(
                        place,
                        "`weight` must be at least 1 (remove the deployment to send it nothing)",
                    ));
                }
                if let Some(price) = d.price {
                    self.price(&price, name, i);
                }
                let max_output_tokens = d
                    .max_output_tokens
                    .or(m.max_output_tokens)
                    .unwrap_or(DEFAULT_MAX_OUTPUT_TOKENS);
                if max_output_tokens == 0 {
                    self.problems
                        .push(Problem::at(place, "`max_output_tokens` must be at least 1"));
                }
                if d.max_in_flight == Some(0) {
                    self.problems.push(Problem::at(place, NO_ROOM));
                }
                if deployments
                    .iter()
                    .any(|d: &Deployment| d.provider == provider && d.model == model)
                {
                    self.problems.push(Problem::at(
                        place,
                        format!("model `{name}` lists the deployment `{provider}/{model}` twice (one entry with the sum of the weights does the same)"),
                    ));
                }
                deployments.push(Deployment {
                    provider,
                    model,
                    weight: d.weight.unwrap_or(1).max(1),
                    price: d.price,
                    max_output_tokens,
                    tier: d.tier.clone(),
                    max_in_flight: d.max_in_flight,
                });
            }
            let strategy = m.strategy.unwrap_or(Strategy::Weighted);
            if m.deployments.len() > crate::routing::MAX_DEPLOYMENTS {
                self.error(
                    &["models", name, "deployments"],
                    format!(
                        "model `{name}` has {} deployments; at most {} are supported",
                        m.deployments.len(),
                        crate::routing::MAX_DEPLOYMENTS
                    ),
                );
            }
            for fallback in &m.fallbacks {
                if fallback == name {
                    self.error(
                        &["models", name, "fallbacks"],
                        format!("model `{name}` lists itself as a fallback"),
                    );
                } else if !raw.contains_key(fallback) {
                    let message = unknown("model", fallback, &names);
                    self.error(&["models", name, "fallbacks"], message);
                }
            }
            for alias in &m.aliases {
                let taken_by_model = raw.contains_key(alias);
                let taken_by_alias = raw
                    .iter()
                    .filter(|(other, _)| *other != name)
                    .any(|(_, other)| other.aliases.contains(alias));
                if taken_by_model
                    || taken_by_alias
                    || m.aliases.iter().filter(|a| *a == alias).count() > 1
                {
                    self.error(
                        &["models", name, "aliases"],
                        format!("the alias `{alias}` names another model or alias too"),
                    );
                }
            }
            if m.context_window == Some(0) {
                self.error(
                    &["models", name, "context_window"],
                    "`context_window` must be at least 1 token",
                );
            }
            if m.hedge
                .as_ref()
                .is_some_and(|h| h.after == crate::config::HedgeAfter::Fixed(Duration::ZERO))
            {
                self.error(
                    &["models", name, "hedge", "after"],
                    "`after` must be more than 0",
                );
            }
            if m.max_in_flight == Some(0) {
                self.error(&["models", name, "max_in_flight"], NO_ROOM);
            }
            let attempts = m.retries.attempts.unwrap_or(attempts);
            if attempts == 0 {
                self.error(
                    &["models", name, "retries", "attempts"],
                    "`attempts` counts the first one too: it must be at least 1",
                );
            }
            models.insert(
                name.clone(),
                Model {
                    name: name.clone(),
                    strategy,
                    deployments,
                    fallbacks: m.fallbacks.clone(),
                    aliases: m.aliases.clone(),
                    timeouts: self.model_timeouts(name, &m.timeouts),
                    context_window: m.context_window,
                    hedge_after: m.hedge.as_ref().map(|h| h.after),
                    shadow: self.shadow(name, m, &names),
                    affinity: m.affinity.as_ref().map(|a| Affinity {
                        prefix_bytes: a
                            .prefix_bytes
                            .map_or(1024, |b| usize::try_from(b.0).unwrap_or(usize::MAX))
                            .max(1),
                        ttl: HumanDuration::or(a.ttl, Duration::from_secs(300)),
                    }),
                    attempts,
                    max_in_flight: m.max_in_flight,
                    cache: self.model_cache(name, &m.cache),
                },
            );
        }
        models
    }

    /// A deployment's `price`: every given price finite and not negative.
    fn price(&mut self, price: &raw::PriceConfig, model: &str, index: usize) {
        let prices = [
            ("input", Some(price.input)),
            ("output", Some(price.output)),
            ("cached_input", price.cached_input),
            ("cache_write", price.cache_write),
            ("reasoning", price.reasoning),
        ];
        for (key, value) in prices {
            if value.is_some_and(|p| !(p.is_finite() && p >= 0.0)) {
                let place = self
                    .tree
                    .find(&[
                        Step::Key("models".into()),
                        Step::Key(model.to_owned()),
                        Step::Key("deployments".into()),
                        Step::Index(index),
                        Step::Key("price".into()),
                        Step::Key(key.into()),
                    ])
                    .map(|(_, place)| place);
                self.problems.push(Problem::at(
                    place,
                    format!("`price.{key}` must be non-negative USD per million tokens"),
                ));
            }
        }
    }
}
