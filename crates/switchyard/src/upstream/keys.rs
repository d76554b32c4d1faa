//! A provider's API keys, used in turn; a key that got a 429 rests for the
//! provider's `retry-after` while the others carry on.

use std::sync::LazyLock;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use axum::http::{HeaderName, HeaderValue, header};
use secrecy::ExposeSecret;
use tokio::time::Instant;

use crate::config::{Provider, ProviderKind};
use crate::headers::{AZURE_API_KEY, GOOG_API_KEY, X_API_KEY};

/// How long a key rests after a 429 that gave no `retry-after`.
pub(super) const KEY_COOLDOWN: Duration = Duration::from_secs(5);

/// A provider's API keys, used in turn; a key that got a 429 rests for the
/// provider's `retry-after` while the others carry on.
#[derive(Debug)]
pub(super) struct Keys {
    pub(super) list: Vec<Key>,
    turn: AtomicU64,
}

/// One API key: its header, and until when it rests.
#[derive(Debug)]
pub(super) struct Key {
    /// The header carrying it, in the provider's dialect, marked sensitive.
    pub(super) header: (HeaderName, HeaderValue),
    /// The raw key, to scrub it from anything the provider echoes back.
    pub(super) secret: secrecy::SecretString,
    /// Milliseconds since [`KEY_EPOCH`] before which it is not used (0: free).
    resting_until: AtomicU64,
}

/// The zero point of the keys' rest times.
static KEY_EPOCH: LazyLock<Instant> = LazyLock::new(Instant::now);

impl Keys {
    pub(super) fn new(provider: &Provider) -> Self {
        let list = provider
            .api_keys
            .iter()
            .filter_map(|secret| {
                Some(Key {
                    header: key_header(provider.kind, secret.expose_secret())?,
                    secret: secret.clone(),
                    resting_until: AtomicU64::new(0),
                })
            })
            .collect();
        Self {
            list,
            turn: AtomicU64::new(0),
        }
    }

    /// How long until the first key is free again, when every key rests at
    /// `now` (`None` when one is free, or the provider has none). Read only:
    /// one atomic load per key.
    pub(super) fn resting(&self, now: Instant) -> Option<Duration> {
        let soonest = self
            .list
            .iter()
            .map(|key| key.resting_until.load(Ordering::Relaxed))
            .min()?;
        // A key that never rested: no clock to read.
        if soonest == 0 {
            return None;
        }
        let now = millis_since_epoch(now);
        (soonest > now).then(|| Duration::from_millis(soonest - now))
    }

    /// The next key in turn that is not resting (`None` for a provider
    /// without keys), or how long until the first one is free again.
    pub(super) fn pick(&self, now: Instant) -> Result<Option<&Key>, Duration> {
        let count = self.list.len();
        if count == 0 {
            return Ok(None);
        }
        if count == 1 && self.list[0].resting_until.load(Ordering::Relaxed) == 0 {
            return Ok(self.list.first());
        }
        let now = millis_since_epoch(now);
        let start = self.turn.fetch_add(1, Ordering::Relaxed) as usize;
        let mut soonest = u64::MAX;
        for i in 0..count {
            let key = &self.list[(start + i) % count];
            let until = key.resting_until.load(Ordering::Relaxed);
            if until <= now {
                return Ok(Some(key));
            }
            soonest = soonest.min(until);
        }
        Err(Duration::from_millis(soonest.saturating_sub(now)))
    }
}

impl Key {
    /// Rests the key until `until`.
    pub(super) fn cool_down(&self, until: Instant) {
        self.resting_until
            .fetch_max(millis_since_epoch(until), Ordering::Relaxed);
    }
}

fn millis_since_epoch(at: Instant) -> u64 {
    u64::try_from(at.saturating_duration_since(*KEY_EPOCH).as_millis()).unwrap_or(u64::MAX)
}

/// The header that carries `key` in the dialect of `kind`, marked sensitive.
fn key_header(kind: ProviderKind, key: &str) -> Option<(HeaderName, HeaderValue)> {
    let (name, text) = match kind {
        ProviderKind::Openai | ProviderKind::Mock => {
            (header::AUTHORIZATION, format!("Bearer {key}"))
        }
        ProviderKind::Azure => (AZURE_API_KEY.clone(), key.to_owned()),
        ProviderKind::Anthropic => (X_API_KEY.clone(), key.to_owned()),
        ProviderKind::Gemini => (GOOG_API_KEY.clone(), key.to_owned()),
    };
    let mut value = HeaderValue::from_str(&text).ok()?;
    value.set_sensitive(true);
    Some((name, value))
}
