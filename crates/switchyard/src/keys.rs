//! Virtual keys and teams on the request path: the [`Directory`] that knows
//! them, in memory.
//!
//! The request path never waits on the store. At start-up every live secret's
//! digest goes into an index (the digest's first eight bytes → key id, a few
//! dozen bytes a key), and up to `auth.key_cache` keys into a bounded cache
//! (moka). A presented key is hashed once:
//!
//! - a digest the index does not know is refused at once: no allocation, no
//!   store call, no cache entry — a flood of random keys costs nothing to keep;
//! - a known one is compared in full, in constant time, with the cached key's
//!   secrets, then its state (revoked, disabled, expired, its team) is checked;
//! - only a real key pushed out of a full cache is read from the store, within
//!   `auth.load_timeout` (503 past it).
//!
//! Changes arrive through the store's change feed ([`follow`]), read every
//! `store.poll_interval` and at once after a change made by this process, so a
//! revocation reaches every replica within a second. While the store is down,
//! the keys in memory keep working.

pub mod admin;
pub mod broadcast;
mod follow;
pub mod models;
pub mod secret;

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use arc_swap::ArcSwap;
use subtle::ConstantTimeEq;
use switchyard_store::{
    KeyRecord, Limits, SecretRecord, SpendScope, Store, StoreError, TeamRecord,
};

use models::AllowedModels;

use crate::config::Redis;

use crate::limits::budget::{BudgetCell, period_start};
use crate::limits::{Budget, Meters};

pub use follow::Follower;

/// A virtual key's refusal.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum KeyError {
    /// No such key, or revoked, or a rotated secret past its grace.
    #[error("invalid API key")]
    Invalid,
    /// The key's expiry has passed.
    #[error("API key expired")]
    Expired,
    /// The key, or its team, is disabled.
    #[error("API key disabled")]
    Disabled,
    /// The key may not use this model.
    #[error("this API key may not use the model `{0}`")]
    ModelNotAllowed(String),
    /// The key is not in memory and the store did not answer in time.
    #[error("the key store is unreachable; try again shortly")]
    StoreUnavailable,
}

/// A team, as the request path sees it.
#[derive(Debug)]
pub struct TeamEntry {
    /// Its id.
    pub id: Arc<str>,
    /// Its name.
    pub name: Arc<str>,
    /// The models its keys may use.
    pub models: AllowedModels,
    /// Its own limits, shared by its keys.
    pub limits: Limits,
    /// A disabled team's keys are refused.
    pub disabled: bool,
    /// Its live rate counts, shared by its keys.
    pub meters: Arc<Meters>,
    /// Its budget, when it has one.
    pub budget: Option<Budget>,
}

/// One issued secret of a key: its digest and when it stops working.
struct Secret {
    digest: [u8; 32],
    expires_at: Option<i64>,
}

/// A virtual key, as the request path sees it. Its `Debug` shows its id and
/// name only: never a digest.
pub struct KeyEntry {
    /// Its id.
    pub id: Arc<str>,
    /// Its name, for logs and route rules.
    pub name: Arc<str>,
    /// Its team's id.
    pub team: Option<Arc<str>>,
    /// The models it may use.
    pub models: AllowedModels,
    /// Its own limits.
    pub limits: Limits,
    /// Its live rate counts (carried over when the key changes).
    pub meters: Arc<Meters>,
    /// Its budget, when it has one.
    pub budget: Option<Budget>,
    expires_at: Option<i64>,
    disabled: bool,
    /// The secrets that work (or worked until their expiry).
    secrets: Box<[Secret]>,
}

impl std::fmt::Debug for KeyEntry {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("KeyEntry")
            .field("id", &self.id)
            .field("name", &self.name)
            .finish_non_exhaustive()
    }
}

impl PartialEq for KeyEntry {
    fn eq(&self, other: &Self) -> bool {
        self.id == other.id
    }
}

impl Eq for KeyEntry {}

impl KeyEntry {
    /// From the stored key and its secrets, with its live counts (those of
    /// `before`, the entry it replaces); `None` for a revoked key.
    fn new(
        key: &KeyRecord,
        secrets: &[SecretRecord],
        now: i64,
        meters: Arc<Meters>,
        budget: Option<Budget>,
    ) -> Option<Self> {
        if key.revoked_at.is_some() {
            return None;
        }
        Some(Self {
            id: Arc::from(key.id.as_str()),
            name: Arc::from(key.name.as_str()),
            team: key.team_id.as_deref().map(Arc::from),
            models: AllowedModels::new(&key.models),
            limits: key.limits,
            meters,
            budget,
            expires_at: key.expires_at,
            disabled: key.disabled,
            secrets: secrets
                .iter()
                .filter(|s| s.expires_at.is_none_or(|at| at > now))
                .map(|s| Secret {
                    digest: s.digest,
                    expires_at: s.expires_at,
                })
                .collect(),
        })
    }

    /// The index values of its secrets.
    fn indexes(&self) -> impl Iterator<Item = u64> + '_ {
        self.secrets.iter().map(|s| secret::index_of(&s.digest))
    }

    /// Whether `digest` is one of its secrets that works at `now`.
    fn opened_by(&self, digest: &[u8; 32], now: i64) -> bool {
        self.secrets
            .iter()
            .any(|s| bool::from(s.digest.ct_eq(digest)) && s.expires_at.is_none_or(|at| at > now))
    }
}

/// A key that authenticated a request, with its team.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Tenant {
    /// The key.
    pub key: Arc<KeyEntry>,
    /// Its team, if it has one.
    pub team: Option<Arc<TeamEntry>>,
}

impl PartialEq for TeamEntry {
    fn eq(&self, other: &Self) -> bool {
        self.id == other.id
    }
}

impl Eq for TeamEntry {}

impl Tenant {
    /// Whether the key, and its team, may use `model`.
    pub fn allows(&self, model: &str) -> bool {
        self.key.models.allows(model) && self.team.as_ref().is_none_or(|t| t.models.allows(model))
    }

    /// Whether every model is allowed.
    pub fn allows_all(&self) -> bool {
        self.key.models.is_all() && self.team.as_ref().is_none_or(|t| t.models.is_all())
    }
}

/// The index of every live secret: the digest's first eight bytes → key ids,
/// and each key's index values (to take them out again).
#[derive(Default, Clone)]
struct Index {
    /// Shared slices: a lookup takes its candidates with one reference count.
    by_digest: HashMap<u64, Arc<[Arc<str>]>>,
    by_key: HashMap<Arc<str>, Box<[u64]>>,
}

impl Index {
    /// Puts `entry`'s secrets in, in place of what the key had.
    fn put(&mut self, entry: &KeyEntry) {
        self.remove(&entry.id);
        let values: Box<[u64]> = entry.indexes().collect();
        for value in &values {
            let ids = self.by_digest.entry(*value).or_default();
            *ids = ids.iter().cloned().chain([entry.id.clone()]).collect();
        }
        self.by_key.insert(entry.id.clone(), values);
    }

    /// Takes the key `id` out.
    fn remove(&mut self, id: &str) {
        let Some(values) = self.by_key.remove(id) else {
            return;
        };
        for value in values {
            if let Some(ids) = self.by_digest.get_mut(&value) {
                let kept: Arc<[Arc<str>]> = ids.iter().filter(|k| &***k != id).cloned().collect();
                if kept.is_empty() {
                    self.by_digest.remove(&value);
                } else {
                    *ids = kept;
                }
            }
        }
    }
}

/// Every virtual key and team, in memory; lives as long as the process.
pub struct Directory {
    store: Arc<dyn Store>,
    index: ArcSwap<Index>,
    entries: moka::sync::Cache<Arc<str>, Arc<KeyEntry>>,
    teams: ArcSwap<HashMap<Arc<str>, Arc<TeamEntry>>>,
    load_timeout: Duration,
    follower: tokio::sync::Mutex<Follower>,
    /// Redis, on which changes made here are announced.
    announce: Option<Redis>,
}

impl std::fmt::Debug for Directory {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Directory")
            .field("keys", &self.index.load().by_key.len())
            .field("cached", &self.entries.entry_count())
            .finish_non_exhaustive()
    }
}

/// The largest of `shares`, 0 when there is none.
fn largest(shares: impl Iterator<Item = Option<f64>>) -> f64 {
    shares.flatten().fold(0.0, f64::max)
}

/// Keys and teams read from the store per page at start-up.
const LOAD_PAGE: u32 = 1000;

impl Directory {
    /// Loads every live key and team of `store`: up to `cache` keys into
    /// memory, every live secret into the index.
    pub async fn load(
        store: Arc<dyn Store>,
        cache: u64,
        load_timeout: Duration,
        announce: Option<Redis>,
    ) -> Result<Self, StoreError> {
        // From before the load: a change made while loading is read again.
        let follower = Follower::new(store.last_change().await?);
        let directory = Self {
            entries: moka::sync::Cache::new(cache),
            store,
            index: ArcSwap::default(),
            teams: ArcSwap::default(),
            load_timeout,
            follower: tokio::sync::Mutex::new(follower),
            announce,
        };
        directory.load_teams().await?;
        directory.load_keys().await?;
        Ok(directory)
    }

    async fn load_teams(&self) -> Result<(), StoreError> {
        let mut teams = HashMap::new();
        let mut page = switchyard_store::PageRequest {
            after: None,
            limit: LOAD_PAGE,
        };
        loop {
            let loaded = self.store.list_teams(&page).await?;
            for team in &loaded.items {
                teams.insert(
                    Arc::from(team.id.as_str()),
                    Arc::new(self.team_entry(team).await?),
                );
            }
            match loaded.next_cursor {
                Some(cursor) => page.after = Some(cursor),
                None => break,
            }
        }
        self.teams.store(Arc::new(teams));
        Ok(())
    }

    async fn load_keys(&self) -> Result<(), StoreError> {
        let now = unix_now();
        let mut index = Index::default();
        let mut page = switchyard_store::PageRequest {
            after: None,
            limit: LOAD_PAGE,
        };
        loop {
            let loaded = self.store.live_keys(&page).await?;
            for live in &loaded.items {
                if let Some(entry) = self.key_entry(&live.key, &live.secrets, now).await? {
                    index.put(&entry);
                    self.entries.insert(entry.id.clone(), Arc::new(entry));
                }
            }
            match loaded.next_cursor {
                Some(cursor) => page.after = Some(cursor),
                None => break,
            }
        }
        self.index.store(Arc::new(index));
        Ok(())
    }

    /// The store behind it.
    pub fn store(&self) -> &Arc<dyn Store> {
        &self.store
    }

    /// Live keys known (each with every working secret in the index).
    pub fn len(&self) -> usize {
        self.index.load().by_key.len()
    }

    /// Whether no key is known.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The virtual key whose digest is `digest`: `Ok(None)` when no live key
    /// has it, an error when it is known but refused.
    pub async fn find(&self, digest: &[u8; 32]) -> Result<Option<Tenant>, KeyError> {
        let candidates = {
            let index = self.index.load();
            match index.by_digest.get(&secret::index_of(digest)) {
                None => return Ok(None),
                Some(ids) => ids.clone(),
            }
        };
        let now = unix_now();
        for id in candidates.iter() {
            let entry = match self.entries.get(id) {
                Some(entry) => entry,
                None => self.fetch(id).await?,
            };
            if entry.opened_by(digest, now) {
                return self.admit(entry, now).map(Some);
            }
        }
        Ok(None)
    }

    /// The live virtual key `id`, checked as [`Directory::find`] checks one
    /// (for the dashboard's playground, whose caller is known by its
    /// session, not by a secret): `Ok(None)` when no live key has this id.
    pub async fn by_id(&self, id: &str) -> Result<Option<Tenant>, KeyError> {
        let Some(id) = self
            .index
            .load()
            .by_key
            .get_key_value(id)
            .map(|(k, _)| k.clone())
        else {
            return Ok(None);
        };
        let entry = match self.entries.get(&id) {
            Some(entry) => entry,
            None => self.fetch(&id).await?,
        };
        self.admit(entry, unix_now()).map(Some)
    }

    /// A key pushed out of the cache, read again from the store.
    async fn fetch(&self, id: &Arc<str>) -> Result<Arc<KeyEntry>, KeyError> {
        let read = async {
            let Some(key) = self.store.key(id).await? else {
                return Ok(None);
            };
            let secrets = self.store.secrets(id).await?;
            self.key_entry(&key, &secrets, unix_now()).await
        };
        let found = match tokio::time::timeout(self.load_timeout, read).await {
            Ok(Ok(found)) => found,
            Ok(Err(e)) => {
                tracing::warn!(error = %e, "a key could not be read from the store");
                return Err(KeyError::StoreUnavailable);
            }
            Err(_) => return Err(KeyError::StoreUnavailable),
        };
        let entry = found.ok_or(KeyError::Invalid)?;
        let entry = Arc::new(entry);
        self.entries.insert(id.clone(), entry.clone());
        Ok(entry)
    }

    /// The checks after the secret matched: the key's state and its team's.
    fn admit(&self, key: Arc<KeyEntry>, now: i64) -> Result<Tenant, KeyError> {
        if key.disabled {
            return Err(KeyError::Disabled);
        }
        if key.expires_at.is_some_and(|at| at <= now) {
            return Err(KeyError::Expired);
        }
        let team = match &key.team {
            None => None,
            Some(id) => match self.teams.load().get(id) {
                Some(team) if !team.disabled => Some(team.clone()),
                _ => return Err(KeyError::Disabled),
            },
        };
        Ok(Tenant { key, team })
    }

    /// The entry of a stored key, with the live counts of the entry it
    /// replaces; `None` for a revoked key.
    async fn key_entry(
        &self,
        key: &KeyRecord,
        secrets: &[SecretRecord],
        now: i64,
    ) -> Result<Option<KeyEntry>, StoreError> {
        if key.revoked_at.is_some() {
            return Ok(None);
        }
        let before = self.entries.get(key.id.as_str());
        let meters = before
            .as_ref()
            .map_or_else(Arc::default, |b| b.meters.clone());
        let before_budget = before.as_ref().and_then(|b| b.budget.as_ref());
        let budget = self
            .budget(SpendScope::Key, &key.id, &key.limits, before_budget)
            .await?;
        Ok(KeyEntry::new(key, secrets, now, meters, budget))
    }

    /// The entry of a stored team, with the live counts of the one it replaces.
    async fn team_entry(&self, team: &TeamRecord) -> Result<TeamEntry, StoreError> {
        let before = self.teams.load().get(team.id.as_str()).cloned();
        let before_budget = before.as_ref().and_then(|b| b.budget.as_ref());
        let budget = self
            .budget(SpendScope::Team, &team.id, &team.limits, before_budget)
            .await?;
        Ok(TeamEntry {
            id: Arc::from(team.id.as_str()),
            name: Arc::from(team.name.as_str()),
            models: AllowedModels::new(&team.models),
            limits: team.limits,
            disabled: team.disabled || team.deleted_at.is_some(),
            meters: before.map_or_else(Arc::default, |b| b.meters.clone()),
            budget,
        })
    }

    /// The budget of a key or team with `limits`: the cell of `before` when
    /// the period is the same, else a new one from the store's total.
    async fn budget(
        &self,
        scope: SpendScope,
        id: &str,
        limits: &Limits,
        before: Option<&Budget>,
    ) -> Result<Option<Budget>, StoreError> {
        let Some(budget) = limits.budget else {
            return Ok(None);
        };
        let cell = match before {
            Some(old) if old.period == budget.period => old.cell.clone(),
            _ => {
                let start = period_start(budget.period, unix_now());
                let spent = self.store.spend(scope, id, start).await?;
                Arc::new(BudgetCell::new(start, spent))
            }
        };
        Ok(Some(Budget {
            limit: budget.micros,
            period: budget.period,
            cell,
        }))
    }

    /// The largest share of its budget spent in the period that holds `now`
    /// (unix seconds) by a key in memory, and by a team: 0 when none has a
    /// budget.
    pub fn budgets_spent(&self, now: i64) -> [f64; 2] {
        let share = |budget: Option<&Budget>| budget.and_then(|b| b.spent_share(now));
        let keys = self
            .entries
            .iter()
            .map(|(_, key)| share(key.budget.as_ref()));
        let teams = self.teams.load();
        let teams = teams.values().map(|team| share(team.budget.as_ref()));
        [largest(keys), largest(teams)]
    }

    /// The team `id`, when it is known and live.
    pub fn team(&self, id: &str) -> Option<Arc<TeamEntry>> {
        self.teams.load().get(id).cloned()
    }

    /// After a change made here: applies it at once, and announces it to the
    /// other replicas when Redis is configured.
    pub async fn changed(&self) {
        if let Err(e) = self.sync().await {
            tracing::warn!(error = %e, "a change just made could not be read back from the store");
        }
        if let Some(redis) = &self.announce {
            broadcast::publish(redis).await;
        }
    }

    /// Reads the change feed now, and applies what changed since the last
    /// read. Called every `store.poll_interval`, and after a change made here.
    pub async fn sync(&self) -> Result<usize, StoreError> {
        let mut follower = self.follower.lock().await;
        let changes = follower.poll(self.store.as_ref()).await?;
        if changes.is_empty() {
            return Ok(0);
        }
        let now = unix_now();
        let mut index = Index::clone(&self.index.load());
        let mut teams = None;
        for change in &changes {
            match change.kind {
                switchyard_store::ChangeKind::Key => {
                    let entry = match self.store.key(&change.entity_id).await? {
                        Some(key) => {
                            let secrets = self.store.secrets(&change.entity_id).await?;
                            self.key_entry(&key, &secrets, now).await?
                        }
                        None => None,
                    };
                    match entry {
                        Some(entry) => {
                            index.put(&entry);
                            self.entries.insert(entry.id.clone(), Arc::new(entry));
                        }
                        None => {
                            index.remove(&change.entity_id);
                            self.entries.invalidate(change.entity_id.as_str());
                        }
                    }
                }
                switchyard_store::ChangeKind::Team => {
                    let teams = teams.get_or_insert_with(|| HashMap::clone(&self.teams.load()));
                    match self.store.team(&change.entity_id).await? {
                        Some(team) => {
                            teams.insert(
                                Arc::from(team.id.as_str()),
                                Arc::new(self.team_entry(&team).await?),
                            );
                        }
                        None => {
                            teams.remove(change.entity_id.as_str());
                        }
                    }
                }
            }
        }
        self.index.store(Arc::new(index));
        if let Some(teams) = teams {
            self.teams.store(Arc::new(teams));
        }
        follower.applied(&changes);
        Ok(changes.len())
    }
}

/// The wall clock in unix seconds, as the store writes it.
pub fn unix_now() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_secs()).unwrap_or(i64::MAX))
}
