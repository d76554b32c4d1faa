//! What both backends share: rows as read back, their conversion into records, and
//! the pure parts of each write (patches, pagination, spend batches, the clock).

use std::collections::{BTreeMap, HashMap};
use std::time::{SystemTime, UNIX_EPOCH};

use serde_json::{Map, Value};
use sqlx::types::Json;

use crate::{
    Budget, BudgetPeriod, Change, ChangeKind, KeyPatch, KeyRecord, Limits, LiveKey, NewKey,
    NewTeam, Page, Result, SecretRecord, SpendDelta, SpendScope, StoreError, TeamPatch, TeamRecord,
};

/// Now, in unix seconds.
pub(crate) fn now() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_secs()).unwrap_or(i64::MAX))
}

/// A `teams` row.
#[derive(sqlx::FromRow)]
pub(crate) struct TeamRow {
    id: String,
    name: String,
    models: Json<Vec<String>>,
    rpm: Option<i64>,
    tpm: Option<i64>,
    budget_micros: Option<i64>,
    budget_period: Option<String>,
    disabled: bool,
    metadata: Json<Map<String, Value>>,
    created_at: i64,
    updated_at: i64,
    deleted_at: Option<i64>,
}

/// A `keys` row with the prefix of its current secret.
#[derive(sqlx::FromRow)]
pub(crate) struct KeyRow {
    id: String,
    name: String,
    team_id: Option<String>,
    prefix: String,
    models: Json<Vec<String>>,
    rpm: Option<i64>,
    tpm: Option<i64>,
    budget_micros: Option<i64>,
    budget_period: Option<String>,
    expires_at: Option<i64>,
    disabled: bool,
    revoked_at: Option<i64>,
    metadata: Json<Map<String, Value>>,
    created_at: i64,
    updated_at: i64,
}

/// A `key_secrets` row.
#[derive(sqlx::FromRow)]
pub(crate) struct SecretRow {
    digest: Vec<u8>,
    key_id: String,
    prefix: String,
    created_at: i64,
    expires_at: Option<i64>,
}

/// A `changes` row.
#[derive(sqlx::FromRow)]
pub(crate) struct ChangeRow {
    seq: i64,
    kind: String,
    entity_id: String,
    at: i64,
}

fn limits(
    rpm: Option<i64>,
    tpm: Option<i64>,
    micros: Option<i64>,
    period: Option<String>,
) -> Result<Limits> {
    let budget = match (micros, period) {
        (Some(micros), Some(period)) => Some(Budget {
            micros,
            period: BudgetPeriod::parse(&period).ok_or(StoreError::Corrupt {
                what: "budget_period",
            })?,
        }),
        (None, None) => None,
        _ => return Err(StoreError::Corrupt { what: "budget" }),
    };
    Ok(Limits { rpm, tpm, budget })
}

impl TryFrom<TeamRow> for TeamRecord {
    type Error = StoreError;
    fn try_from(r: TeamRow) -> Result<Self> {
        Ok(Self {
            models: r.models.0,
            metadata: r.metadata.0,
            limits: limits(r.rpm, r.tpm, r.budget_micros, r.budget_period)?,
            id: r.id,
            name: r.name,
            disabled: r.disabled,
            created_at: r.created_at,
            updated_at: r.updated_at,
            deleted_at: r.deleted_at,
        })
    }
}

impl TryFrom<KeyRow> for KeyRecord {
    type Error = StoreError;
    fn try_from(r: KeyRow) -> Result<Self> {
        Ok(Self {
            models: r.models.0,
            metadata: r.metadata.0,
            limits: limits(r.rpm, r.tpm, r.budget_micros, r.budget_period)?,
            id: r.id,
            name: r.name,
            team_id: r.team_id,
            prefix: r.prefix,
            expires_at: r.expires_at,
            disabled: r.disabled,
            revoked_at: r.revoked_at,
            created_at: r.created_at,
            updated_at: r.updated_at,
        })
    }
}

impl TryFrom<SecretRow> for SecretRecord {
    type Error = StoreError;
    fn try_from(r: SecretRow) -> Result<Self> {
        Ok(Self {
            digest: r
                .digest
                .try_into()
                .map_err(|_| StoreError::Corrupt { what: "digest" })?,
            key_id: r.key_id,
            prefix: r.prefix,
            created_at: r.created_at,
            expires_at: r.expires_at,
        })
    }
}

impl TryFrom<ChangeRow> for Change {
    type Error = StoreError;
    fn try_from(r: ChangeRow) -> Result<Self> {
        let kind = match r.kind.as_str() {
            "key" => ChangeKind::Key,
            "team" => ChangeKind::Team,
            _ => {
                return Err(StoreError::Corrupt {
                    what: "change kind",
                });
            }
        };
        Ok(Self {
            seq: r.seq,
            kind,
            entity_id: r.entity_id,
            at: r.at,
        })
    }
}

/// Converts rows into records.
pub(crate) fn records<R, T: TryFrom<R, Error = StoreError>>(rows: Vec<R>) -> Result<Vec<T>> {
    rows.into_iter().map(T::try_from).collect()
}

impl TeamRecord {
    /// The record a new team becomes, created at `at`.
    pub(crate) fn created(new: NewTeam, at: i64) -> Self {
        Self {
            id: new.id,
            name: new.name,
            models: new.models,
            limits: new.limits,
            disabled: new.disabled,
            metadata: new.metadata,
            created_at: at,
            updated_at: at,
            deleted_at: None,
        }
    }

    /// Applies `patch`, changed at `at`.
    pub(crate) fn patch(&mut self, patch: TeamPatch, at: i64) {
        let TeamPatch {
            name,
            models,
            rpm,
            tpm,
            budget,
            disabled,
            metadata,
        } = patch;
        set(&mut self.name, name);
        set(&mut self.models, models);
        set(&mut self.limits.rpm, rpm);
        set(&mut self.limits.tpm, tpm);
        set(&mut self.limits.budget, budget);
        set(&mut self.disabled, disabled);
        set(&mut self.metadata, metadata);
        self.updated_at = at;
    }
}

impl KeyRecord {
    /// The record a new key becomes, created at `at` with a secret starting `prefix`.
    pub(crate) fn created(new: NewKey, prefix: String, at: i64) -> Self {
        Self {
            id: new.id,
            name: new.name,
            team_id: new.team_id,
            prefix,
            models: new.models,
            limits: new.limits,
            expires_at: new.expires_at,
            disabled: new.disabled,
            revoked_at: None,
            metadata: new.metadata,
            created_at: at,
            updated_at: at,
        }
    }

    /// Applies `patch`, changed at `at`.
    pub(crate) fn patch(&mut self, patch: KeyPatch, at: i64) {
        let KeyPatch {
            name,
            team_id,
            models,
            rpm,
            tpm,
            budget,
            expires_at,
            disabled,
            metadata,
        } = patch;
        set(&mut self.name, name);
        set(&mut self.team_id, team_id);
        set(&mut self.models, models);
        set(&mut self.limits.rpm, rpm);
        set(&mut self.limits.tpm, tpm);
        set(&mut self.limits.budget, budget);
        set(&mut self.expires_at, expires_at);
        set(&mut self.disabled, disabled);
        set(&mut self.metadata, metadata);
        self.updated_at = at;
    }
}

fn set<T>(field: &mut T, value: Option<T>) {
    if let Some(value) = value {
        *field = value;
    }
}

/// How many rows a page query fetches: one more than asked, to tell whether a next
/// page exists.
pub(crate) fn fetch_limit(limit: u32) -> i64 {
    i64::from(limit.max(1)) + 1
}

/// The page made of `rows` fetched with [`fetch_limit`], with `id` naming the cursor.
pub(crate) fn page<T>(mut items: Vec<T>, limit: u32, id: impl Fn(&T) -> &str) -> Page<T> {
    let limit = usize::try_from(limit.max(1)).unwrap_or(usize::MAX);
    let next_cursor = if items.len() > limit {
        items.truncate(limit);
        items.last().map(|last| id(last).to_owned())
    } else {
        None
    };
    Page { items, next_cursor }
}

/// Each key of `keys` with its secrets among `secrets`, in their order.
pub(crate) fn live(keys: Page<KeyRecord>, secrets: Vec<SecretRecord>) -> Page<LiveKey> {
    let mut by_key: HashMap<String, Vec<SecretRecord>> = HashMap::new();
    for secret in secrets {
        by_key
            .entry(secret.key_id.clone())
            .or_default()
            .push(secret);
    }
    let items = keys
        .items
        .into_iter()
        .map(|key| LiveKey {
            secrets: by_key.remove(&key.id).unwrap_or_default(),
            key,
        })
        .collect();
    Page {
        items,
        next_cursor: keys.next_cursor,
    }
}

/// `deltas` summed per spend row (scope, id, period start), in row order: every writer
/// upserts, and so locks, its rows in this one order, which keeps concurrent batches
/// from deadlocking.
pub(crate) fn merged(deltas: &[SpendDelta]) -> Result<BTreeMap<(SpendScope, &str, i64), i64>> {
    let mut sums = BTreeMap::new();
    for delta in deltas {
        let sum: &mut i64 = sums
            .entry((delta.scope, delta.scope_id.as_str(), delta.period_start))
            .or_default();
        *sum = sum.checked_add(delta.micros).ok_or(StoreError::Overflow)?;
    }
    Ok(sums)
}
