//! Making, changing, rotating and revoking keys and teams: what the admin API
//! and the `switchyard keys|teams` commands both do, validated once, here.

pub mod views;

use std::time::Duration;

use serde_json::{Map, Value};
use switchyard_store::{
    Budget, KeyFilter, KeyPatch, Limits, NewKey, NewTeam, PageRequest, SpendScope, Store,
    StoreError, TeamPatch,
};

use super::secret;
use super::unix_now;
use crate::limits::budget::period_start;
use views::{
    CreateKey, CreateTeam, KeyCreated, KeyView, Listing, Period, TeamView, UpdateKey, UpdateTeam,
};

/// Why an admin operation was refused.
#[derive(Debug, thiserror::Error)]
pub enum AdminError {
    /// A field of the request is not valid.
    #[error("{field}: {message}")]
    Invalid {
        /// The field at fault.
        field: &'static str,
        /// What is wrong with it.
        message: String,
    },
    /// No such key or team.
    #[error("no such {0}")]
    NotFound(&'static str),
    /// Another record already has this value of `field`.
    #[error("a record with the same {field} exists")]
    Conflict {
        /// The field whose value is taken.
        field: &'static str,
    },
    /// A team with keys that are not revoked cannot be deleted.
    #[error("the team still has keys that are not revoked: revoke or move them first")]
    TeamHasKeys,
    /// A revoked key cannot be changed or rotated.
    #[error("the key is revoked")]
    Revoked,
    /// The store could not carry it out.
    #[error("the store cannot be used right now: {0}")]
    Unavailable(StoreError),
    /// No randomness for a new key.
    #[error(transparent)]
    NoRandomness(#[from] secret::NoRandomness),
}

impl AdminError {
    fn from_store(e: StoreError, what: &'static str) -> Self {
        match e {
            StoreError::NotFound => Self::NotFound(what),
            StoreError::Conflict { field } => Self::Conflict { field },
            StoreError::Missing { field } => Self::Invalid {
                field,
                message: "names no team (or a deleted one)".to_owned(),
            },
            StoreError::TeamHasKeys => Self::TeamHasKeys,
            StoreError::Revoked => Self::Revoked,
            other => Self::Unavailable(other),
        }
    }
}

/// The result of an admin operation.
pub type Result<T> = std::result::Result<T, AdminError>;

/// Longest name, glob or id accepted.
pub const MAX_NAME: usize = 128;
/// Most model globs on one key or team.
pub const MAX_GLOBS: usize = 64;
/// Highest requests or tokens per minute accepted.
pub const MAX_RATE: i64 = 1_000_000_000;
/// Largest budget accepted, in USD.
pub const MAX_BUDGET_USD: f64 = 1e9;
/// Largest metadata object accepted, as JSON.
const MAX_METADATA_BYTES: usize = 16 * 1024;
/// Most items on one page of a listing.
pub const MAX_PAGE: u32 = 200;

/// Makes a key; its text is in the answer, and nowhere else, ever.
pub async fn create_key(store: &dyn Store, request: CreateKey) -> Result<KeyCreated> {
    let now = unix_now();
    let new = NewKey {
        id: secret::new_id("key")?,
        name: name(&request.name)?,
        team_id: request.team_id.map(|id| text("team_id", id)).transpose()?,
        models: globs(request.models)?,
        limits: limits(
            request.rpm,
            request.tpm,
            request.budget_usd,
            request.budget_period,
        )?,
        expires_at: request.expires_at.map(|at| expiry(&at, now)).transpose()?,
        disabled: request.disabled,
        metadata: metadata(request.metadata)?,
    };
    let issued = secret::issue()?;
    let record = store
        .create_key(new, issued.stored)
        .await
        .map_err(|e| AdminError::from_store(e, "key"))?;
    Ok(KeyCreated {
        key: issued.key,
        view: record.into(),
    })
}

/// One page of keys (revoked ones too when `filter` says so).
pub async fn list_keys(
    store: &dyn Store,
    filter: &KeyFilter,
    after: Option<String>,
    limit: u32,
) -> Result<Listing<KeyView>> {
    let keys = store.list_keys(filter, &page(after, limit)?).await;
    listing(keys, "key")
}

/// The key `id`, with its spend in the current budget period.
pub async fn show_key(store: &dyn Store, id: &str) -> Result<KeyView> {
    let mut view: KeyView = found(store.key(id).await, "key")?;
    view.spent_usd = spent(store, SpendScope::Key, id, view.budget_period).await?;
    Ok(view)
}

/// Changes the fields `request` names.
pub async fn update_key(store: &dyn Store, id: &str, request: UpdateKey) -> Result<KeyView> {
    let current = show_key(store, id).await?;
    if current.revoked_at.is_some() {
        return Err(AdminError::Revoked);
    }
    let now = unix_now();
    let patch = KeyPatch {
        name: request.name.map(|n| name(&n)).transpose()?,
        team_id: request
            .team_id
            .map(|team| team.map(|id| text("team_id", id)).transpose())
            .transpose()?,
        models: request.models.map(globs).transpose()?,
        rpm: request.rpm.map(|r| rate("rpm", r)).transpose()?,
        tpm: request.tpm.map(|r| rate("tpm", r)).transpose()?,
        budget: budget_patch(
            request.budget_usd,
            request.budget_period,
            current.budget_usd,
            current.budget_period,
        )?,
        expires_at: request
            .expires_at
            .map(|at| at.map(|at| expiry(&at, now)).transpose())
            .transpose()?,
        disabled: request.disabled,
        metadata: request.metadata.map(|m| metadata(Some(m))).transpose()?,
    };
    store
        .update_key(id, patch)
        .await
        .map(KeyView::from)
        .map_err(|e| AdminError::from_store(e, "key"))
}

/// Gives the key a new secret; the old one keeps working for `grace`.
pub async fn rotate_key(store: &dyn Store, id: &str, grace: Duration) -> Result<KeyCreated> {
    let issued = secret::issue()?;
    let grace = i64::try_from(grace.as_secs()).unwrap_or(i64::MAX);
    let record = store
        .rotate_key(id, issued.stored, unix_now().saturating_add(grace))
        .await
        .map_err(|e| AdminError::from_store(e, "key"))?;
    Ok(KeyCreated {
        key: issued.key,
        view: record.into(),
    })
}

/// Revokes the key for good.
pub async fn revoke_key(store: &dyn Store, id: &str) -> Result<KeyView> {
    store
        .revoke_key(id)
        .await
        .map(KeyView::from)
        .map_err(|e| AdminError::from_store(e, "key"))
}

/// Makes a team.
pub async fn create_team(store: &dyn Store, request: CreateTeam) -> Result<TeamView> {
    let new = NewTeam {
        id: secret::new_id("team")?,
        name: name(&request.name)?,
        models: globs(request.models)?,
        limits: limits(
            request.rpm,
            request.tpm,
            request.budget_usd,
            request.budget_period,
        )?,
        disabled: request.disabled,
        metadata: metadata(request.metadata)?,
    };
    store
        .create_team(new)
        .await
        .map(TeamView::from)
        .map_err(|e| AdminError::from_store(e, "team"))
}

/// One page of the teams that are not deleted.
pub async fn list_teams(
    store: &dyn Store,
    after: Option<String>,
    limit: u32,
) -> Result<Listing<TeamView>> {
    listing(store.list_teams(&page(after, limit)?).await, "team")
}

/// The team `id`, with its spend in the current budget period.
pub async fn show_team(store: &dyn Store, id: &str) -> Result<TeamView> {
    let mut view: TeamView = found(store.team(id).await, "team")?;
    view.spent_usd = spent(store, SpendScope::Team, id, view.budget_period).await?;
    Ok(view)
}

/// What the store holds as spent in the current `period`, in USD.
async fn spent(
    store: &dyn Store,
    scope: SpendScope,
    id: &str,
    period: Option<Period>,
) -> Result<Option<f64>> {
    let Some(period) = period else {
        return Ok(None);
    };
    let start = period_start(period.into(), unix_now());
    let micros = store
        .spend(scope, id, start)
        .await
        .map_err(AdminError::Unavailable)?;
    Ok(Some(views::usd(micros)))
}

/// Changes the fields `request` names.
pub async fn update_team(store: &dyn Store, id: &str, request: UpdateTeam) -> Result<TeamView> {
    let current = show_team(store, id).await?;
    if current.deleted_at.is_some() {
        return Err(AdminError::NotFound("team"));
    }
    let patch = TeamPatch {
        name: request.name.map(|n| name(&n)).transpose()?,
        models: request.models.map(globs).transpose()?,
        rpm: request.rpm.map(|r| rate("rpm", r)).transpose()?,
        tpm: request.tpm.map(|r| rate("tpm", r)).transpose()?,
        budget: budget_patch(
            request.budget_usd,
            request.budget_period,
            current.budget_usd,
            current.budget_period,
        )?,
        disabled: request.disabled,
        metadata: request.metadata.map(|m| metadata(Some(m))).transpose()?,
    };
    store
        .update_team(id, patch)
        .await
        .map(TeamView::from)
        .map_err(|e| AdminError::from_store(e, "team"))
}

/// Deletes the team (its row and spend stay); refused while it has live keys.
pub async fn delete_team(store: &dyn Store, id: &str) -> Result<TeamView> {
    store
        .delete_team(id)
        .await
        .map(TeamView::from)
        .map_err(|e| AdminError::from_store(e, "team"))
}

/// A page of records as a listing of their views.
fn listing<R, V: From<R>>(
    page: std::result::Result<switchyard_store::Page<R>, StoreError>,
    what: &'static str,
) -> Result<Listing<V>> {
    let page = page.map_err(|e| AdminError::from_store(e, what))?;
    Ok(Listing {
        data: page.items.into_iter().map(V::from).collect(),
        next_cursor: page.next_cursor,
    })
}

/// A record's view, or `NotFound`.
fn found<R, V: From<R>>(
    record: std::result::Result<Option<R>, StoreError>,
    what: &'static str,
) -> Result<V> {
    record
        .map_err(|e| AdminError::from_store(e, what))?
        .map(V::from)
        .ok_or(AdminError::NotFound(what))
}

/// A new record's limits, checked.
fn limits(
    rpm: Option<i64>,
    tpm: Option<i64>,
    usd: Option<f64>,
    period: Option<Period>,
) -> Result<Limits> {
    Ok(Limits {
        rpm: rate("rpm", rpm)?,
        tpm: rate("tpm", tpm)?,
        budget: budget(usd, period)?,
    })
}

fn invalid(field: &'static str, message: impl Into<String>) -> AdminError {
    AdminError::Invalid {
        field,
        message: message.into(),
    }
}

/// A short piece of text: an id, a glob.
fn text(field: &'static str, value: String) -> Result<String> {
    if value.is_empty() || value.chars().count() > MAX_NAME {
        return Err(invalid(
            field,
            format!("must be 1 to {MAX_NAME} characters"),
        ));
    }
    if value.chars().any(char::is_control) {
        return Err(invalid(field, "must not hold control characters"));
    }
    Ok(value)
}

fn name(value: &str) -> Result<String> {
    let trimmed = value.trim();
    if trimmed.is_empty() {
        return Err(invalid("name", "must not be empty"));
    }
    text("name", trimmed.to_owned())
}

fn globs(models: Vec<String>) -> Result<Vec<String>> {
    if models.len() > MAX_GLOBS {
        return Err(invalid("models", format!("at most {MAX_GLOBS} globs")));
    }
    models
        .into_iter()
        .map(|glob| text("models", glob.trim().to_owned()))
        .collect()
}

fn rate(field: &'static str, value: Option<i64>) -> Result<Option<i64>> {
    match value {
        Some(n) if !(1..=MAX_RATE).contains(&n) => Err(invalid(
            field,
            format!("must be from 1 to {MAX_RATE} (leave it out for no limit)"),
        )),
        other => Ok(other),
    }
}

/// USD as micro-USD, checked.
fn micros(usd: f64) -> Result<i64> {
    if !usd.is_finite() || !(0.0..=MAX_BUDGET_USD).contains(&usd) {
        return Err(invalid(
            "budget_usd",
            format!("must be a number of USD from 0 to {MAX_BUDGET_USD}"),
        ));
    }
    // In range: at most 1e15 micro-USD.
    Ok((usd * 1e6).round() as i64)
}

fn budget(usd: Option<f64>, period: Option<Period>) -> Result<Option<Budget>> {
    match (usd, period) {
        (Some(usd), period) => Ok(Some(Budget {
            micros: micros(usd)?,
            period: period.unwrap_or(Period::Total).into(),
        })),
        (None, Some(_)) => Err(invalid(
            "budget_period",
            "needs `budget_usd` (a period without a budget limits nothing)",
        )),
        (None, None) => Ok(None),
    }
}

/// A budget change: a new amount, a new period for the current amount, or `null`.
fn budget_patch(
    usd: Option<Option<f64>>,
    period: Option<Period>,
    current_usd: Option<f64>,
    current_period: Option<Period>,
) -> Result<Option<Option<Budget>>> {
    match (usd, period) {
        (None, None) => Ok(None),
        (Some(None), _) => Ok(Some(None)),
        (Some(Some(usd)), period) => budget(Some(usd), period.or(current_period)).map(Some),
        (None, Some(period)) => match current_usd {
            Some(usd) => budget(Some(usd), Some(period)).map(Some),
            None => budget(None, Some(period)).map(Some),
        },
    }
}

/// An RFC 3339 instant after `now`, as unix seconds.
fn expiry(at: &str, now: i64) -> Result<i64> {
    let parsed = humantime::parse_rfc3339_weak(at.trim())
        .ok()
        .and_then(|t| t.duration_since(std::time::UNIX_EPOCH).ok())
        .and_then(|d| i64::try_from(d.as_secs()).ok())
        .ok_or_else(|| {
            invalid(
                "expires_at",
                "must be an RFC 3339 instant such as 2027-01-01T00:00:00Z",
            )
        })?;
    if parsed <= now {
        return Err(invalid("expires_at", "must be in the future"));
    }
    Ok(parsed)
}

fn metadata(value: Option<Map<String, Value>>) -> Result<Map<String, Value>> {
    let value = value.unwrap_or_default();
    let size = serde_json::to_vec(&value).map_or(usize::MAX, |v| v.len());
    if size > MAX_METADATA_BYTES {
        return Err(invalid(
            "metadata",
            format!("must be at most {MAX_METADATA_BYTES} bytes of JSON"),
        ));
    }
    Ok(value)
}

fn page(after: Option<String>, limit: u32) -> Result<PageRequest> {
    if !(1..=MAX_PAGE).contains(&limit) {
        return Err(invalid("limit", format!("must be from 1 to {MAX_PAGE}")));
    }
    Ok(PageRequest { after, limit })
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn budgets_are_whole_micro_dollars_and_need_an_amount() {
        let b = budget(Some(12.345_678_9), Some(Period::Month))
            .unwrap()
            .unwrap();
        assert_eq!(b.micros, 12_345_679);
        assert_eq!(b.period, switchyard_store::BudgetPeriod::Month);
        assert_eq!(
            budget(Some(1.0), None).unwrap().unwrap().period,
            switchyard_store::BudgetPeriod::Total
        );
        for bad in [f64::NAN, f64::INFINITY, -1.0, 2e9] {
            assert!(budget(Some(bad), None).is_err(), "{bad}");
        }
        assert!(budget(None, Some(Period::Day)).is_err());
        // A new period keeps the amount; `null` clears.
        let changed = budget_patch(None, Some(Period::Day), Some(5.0), Some(Period::Month))
            .unwrap()
            .unwrap()
            .unwrap();
        assert_eq!(
            (changed.micros, changed.period),
            (5_000_000, switchyard_store::BudgetPeriod::Day)
        );
        assert_eq!(
            budget_patch(Some(None), None, Some(5.0), None).unwrap(),
            Some(None)
        );
    }

    #[test]
    fn fields_are_checked_with_their_names() {
        let field = |r: Result<_>| match r {
            Err(AdminError::Invalid { field, .. }) => field,
            other => panic!("{other:?}"),
        };
        assert_eq!(field(name("  ").map(drop)), "name");
        assert_eq!(field(rate("rpm", Some(0)).map(drop)), "rpm");
        assert_eq!(field(globs(vec!["".into()]).map(drop)), "models");
        assert_eq!(field(expiry("yesterday", 0).map(drop)), "expires_at");
        assert_eq!(
            field(expiry("1970-01-01T00:00:01Z", 10).map(drop)),
            "expires_at"
        );
        assert_eq!(expiry("2027-01-01T00:00:00Z", 0).unwrap(), 1_798_761_600);
        assert_eq!(field(page(None, 0).map(drop)), "limit");
    }
}
