//! `store:` and the virtual keys' part of `auth:`, validated.

use std::time::Duration;

use switchyard_store::StoreOptions;

use super::Validator;
use std::collections::BTreeMap;

use crate::config::problems::unknown;
use crate::config::raw::{
    AlertsConfig, AuthConfig, LimitsConfig, OnError, RatesConfig, RedisConfig, StoreConfig,
    UsageConfig,
};
use crate::config::units::HumanDuration;
use crate::config::{Alerts, Model, RateLimits, Redis, Store, Usage, VirtualKeys};
use crate::limits::Rates;

/// The store when `store.url` is not set: a SQLite file in the working directory.
const DEFAULT_STORE_URL: &str = "sqlite://switchyard.db";

/// How often the change feed is read when `store.poll_interval` is not set: a
/// change made on another replica (or by the CLI) arrives within a second.
const DEFAULT_POLL_INTERVAL: Duration = Duration::from_millis(500);

/// How often settled spend is written when `store.flush_interval` is not set.
const DEFAULT_FLUSH_INTERVAL: Duration = Duration::from_secs(1);

/// Settled costs waiting for the writer at most when `store.spend_queue` is not set.
const DEFAULT_SPEND_QUEUE: usize = 65_536;

/// The usage log's defaults: records written in one transaction at most, waiting
/// for the writer, kept in memory while the store is down, where they spill past
/// that, and how long records and rollups are kept.
const DEFAULT_USAGE_BATCH: usize = 1_000;
const DEFAULT_USAGE_QUEUE: usize = 65_536;
const DEFAULT_USAGE_BUFFER: usize = 100_000;
const DEFAULT_SPILL_FILE: &str = "switchyard-usage.spill.jsonl";
const DEFAULT_RETENTION: Duration = Duration::from_secs(30 * 86_400);
const DEFAULT_ROLLUP_RETENTION: Duration = Duration::from_secs(400 * 86_400);

/// How long a spend alert's post may take, and how many times it is tried
/// again, when `alerts:` does not say.
const DEFAULT_ALERT_TIMEOUT: Duration = Duration::from_secs(5);
const DEFAULT_ALERT_RETRIES: u32 = 5;

/// How long a request waits on Redis when `redis.timeout` is not set.
const DEFAULT_REDIS_TIMEOUT: Duration = Duration::from_millis(50);

/// Virtual keys kept in memory when `auth.key_cache` is not set.
const DEFAULT_KEY_CACHE: u64 = 100_000;

/// How long a key missing from memory may take to load when `auth.load_timeout` is not set.
const DEFAULT_LOAD_TIMEOUT: Duration = Duration::from_millis(200);

/// How long a rotated key's old secret works when `auth.rotation_grace` is not set.
const DEFAULT_ROTATION_GRACE: Duration = Duration::from_secs(3600);

impl Validator<'_> {
    /// `store:` with its defaults.
    pub(super) fn store(&mut self, raw: StoreConfig) -> Store {
        let defaults = StoreOptions::default();
        let url = raw.url.unwrap_or_else(|| DEFAULT_STORE_URL.to_owned());
        if !["sqlite:", "postgres:", "postgresql:"]
            .iter()
            .any(|scheme| url.starts_with(scheme))
        {
            self.error(
                &["store", "url"],
                "`url` must start with `sqlite://` or `postgres://`",
            );
        }
        if raw.max_connections == Some(0) {
            self.error(
                &["store", "max_connections"],
                "`max_connections` must be at least 1",
            );
        }
        let store = Store {
            url,
            options: StoreOptions {
                max_connections: raw
                    .max_connections
                    .unwrap_or(defaults.max_connections)
                    .max(1),
                acquire_timeout: HumanDuration::or(raw.acquire_timeout, defaults.acquire_timeout),
                busy_timeout: HumanDuration::or(raw.busy_timeout, defaults.busy_timeout),
            },
            poll_interval: HumanDuration::or(raw.poll_interval, DEFAULT_POLL_INTERVAL),
            flush_interval: HumanDuration::or(raw.flush_interval, DEFAULT_FLUSH_INTERVAL),
            spend_queue: raw.spend_queue.unwrap_or(DEFAULT_SPEND_QUEUE).max(1),
        };
        if raw.spend_queue == Some(0) {
            self.error(
                &["store", "spend_queue"],
                "`spend_queue` must be at least 1",
            );
        }
        for (name, value) in [
            ("acquire_timeout", store.options.acquire_timeout),
            ("poll_interval", store.poll_interval),
            ("flush_interval", store.flush_interval),
        ] {
            if value.is_zero() {
                self.error(&["store", name], format!("`{name}` must be more than 0"));
            }
        }
        store
    }

    /// `usage:` with its defaults; `None` when turned off.
    pub(super) fn usage(&mut self, raw: UsageConfig) -> Option<Usage> {
        for (name, value) in [
            ("batch_size", raw.batch_size),
            ("queue", raw.queue),
            ("buffer", raw.buffer),
        ] {
            if value == Some(0) {
                self.error(&["usage", name], format!("`{name}` must be at least 1"));
            }
        }
        let usage = Usage {
            flush_interval: HumanDuration::or(raw.flush_interval, DEFAULT_FLUSH_INTERVAL),
            batch_size: raw.batch_size.unwrap_or(DEFAULT_USAGE_BATCH).max(1),
            queue: raw.queue.unwrap_or(DEFAULT_USAGE_QUEUE).max(1),
            buffer: raw.buffer.unwrap_or(DEFAULT_USAGE_BUFFER).max(1),
            spill_file: raw
                .spill_file
                .unwrap_or_else(|| DEFAULT_SPILL_FILE.to_owned())
                .into(),
            retention: Some(HumanDuration::or(raw.retention, DEFAULT_RETENTION))
                .filter(|d| !d.is_zero()),
            rollup_retention: Some(HumanDuration::or(
                raw.rollup_retention,
                DEFAULT_ROLLUP_RETENTION,
            ))
            .filter(|d| !d.is_zero()),
        };
        if usage.flush_interval.is_zero() {
            self.error(
                &["usage", "flush_interval"],
                "`flush_interval` must be more than 0",
            );
        }
        if usage.spill_file.as_os_str().is_empty() {
            self.error(&["usage", "spill_file"], "`spill_file` must not be empty");
        }
        raw.enabled.unwrap_or(true).then_some(usage)
    }

    /// `alerts:`; `None` without a webhook.
    pub(super) fn alerts(&mut self, raw: AlertsConfig) -> Option<Alerts> {
        let url = raw.webhook_url.filter(|u| !u.trim().is_empty())?;
        if !(url.starts_with("http://") || url.starts_with("https://")) {
            self.error(
                &["alerts", "webhook_url"],
                "`webhook_url` must start with `http://` or `https://`",
            );
        }
        let mut thresholds = raw.thresholds.unwrap_or_else(|| vec![80, 95]);
        if thresholds.is_empty() || thresholds.iter().any(|&t| t == 0 || t > 100) {
            self.error(
                &["alerts", "thresholds"],
                "`thresholds` must be percentages from 1 to 100",
            );
        }
        thresholds.sort_unstable();
        thresholds.dedup();
        let timeout = HumanDuration::or(raw.timeout, DEFAULT_ALERT_TIMEOUT);
        if timeout.is_zero() {
            self.error(&["alerts", "timeout"], "`timeout` must be more than 0");
        }
        Some(Alerts {
            webhook_url: url,
            thresholds,
            timeout,
            retries: raw.retries.unwrap_or(DEFAULT_ALERT_RETRIES),
        })
    }

    /// `limits:`: every model it names must exist, every limit be at least 1.
    pub(super) fn rate_limits(
        &mut self,
        raw: &LimitsConfig,
        models: &BTreeMap<String, Model>,
    ) -> RateLimits {
        let mut rates = |path: &[&str], raw: Option<RatesConfig>| {
            let raw = raw.unwrap_or_default();
            for (name, value) in [("rpm", raw.rpm), ("tpm", raw.tpm)] {
                if value == Some(0) {
                    let mut at = path.to_vec();
                    at.push(name);
                    self.error(
                        &at,
                        format!("`{name}` must be at least 1 (leave it out for no limit)"),
                    );
                }
            }
            Rates {
                rpm: raw.rpm.filter(|n| *n > 0),
                tpm: raw.tpm.filter(|n| *n > 0),
            }
        };
        let global = rates(&["limits", "global"], raw.global);
        let key_defaults = rates(&["limits", "key_defaults"], raw.key_defaults);
        let mut by_model = BTreeMap::new();
        for (name, model) in &raw.models {
            by_model.insert(
                name.clone(),
                rates(&["limits", "models", name], Some(*model)),
            );
        }
        for name in raw.models.keys() {
            if !models.contains_key(name) {
                let names: Vec<&str> = models.keys().map(String::as_str).collect();
                self.error(&["limits", "models", name], unknown("model", name, &names));
            }
        }
        RateLimits {
            global,
            key_defaults,
            models: by_model,
        }
    }

    /// `redis:`; `None` without a URL.
    pub(super) fn redis(&mut self, raw: RedisConfig) -> Option<Redis> {
        let url = raw.url.filter(|u| !u.trim().is_empty())?;
        if !(url.starts_with("redis://") || url.starts_with("rediss://")) {
            self.error(
                &["redis", "url"],
                "`url` must start with `redis://` (or `rediss://`)",
            );
        }
        let timeout = HumanDuration::or(raw.timeout, DEFAULT_REDIS_TIMEOUT);
        if timeout.is_zero() {
            self.error(&["redis", "timeout"], "`timeout` must be more than 0");
        }
        let prefix = raw.prefix.unwrap_or_else(|| "sy".to_owned());
        if prefix.is_empty() || prefix.contains(['{', '}']) {
            self.error(
                &["redis", "prefix"],
                "`prefix` must be non-empty, without braces",
            );
        }
        Some(Redis {
            url,
            timeout,
            on_error: raw.on_error.unwrap_or(OnError::FailOpen),
            prefix,
        })
    }

    /// The virtual keys' settings of `auth:`, with their defaults.
    pub(super) fn virtual_keys(&mut self, raw: &AuthConfig) -> VirtualKeys {
        if raw.key_cache == Some(0) {
            self.error(&["auth", "key_cache"], "`key_cache` must be at least 1");
        }
        let keys = VirtualKeys {
            cache: raw.key_cache.unwrap_or(DEFAULT_KEY_CACHE).max(1),
            load_timeout: HumanDuration::or(raw.load_timeout, DEFAULT_LOAD_TIMEOUT),
            rotation_grace: HumanDuration::or(raw.rotation_grace, DEFAULT_ROTATION_GRACE),
        };
        if keys.load_timeout.is_zero() {
            self.error(
                &["auth", "load_timeout"],
                "`load_timeout` must be more than 0",
            );
        }
        keys
    }
}
