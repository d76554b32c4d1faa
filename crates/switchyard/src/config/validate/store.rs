//! `store:` and the virtual keys' part of `auth:`, validated.

use std::time::Duration;

use switchyard_store::StoreOptions;

use super::Validator;
use crate::config::raw::{AuthConfig, StoreConfig};
use crate::config::units::HumanDuration;
use crate::config::{Store, VirtualKeys};

/// The store when `store.url` is not set: a SQLite file in the working directory.
const DEFAULT_STORE_URL: &str = "sqlite://switchyard.db";

/// How often the change feed is read when `store.poll_interval` is not set: a
/// change made on another replica (or by the CLI) arrives within a second.
const DEFAULT_POLL_INTERVAL: Duration = Duration::from_millis(500);

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
        };
        for (name, value) in [
            ("acquire_timeout", store.options.acquire_timeout),
            ("poll_interval", store.poll_interval),
        ] {
            if value.is_zero() {
                self.error(&["store", name], format!("`{name}` must be more than 0"));
            }
        }
        store
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
