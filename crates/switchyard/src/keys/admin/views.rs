//! What the admin API and the CLI read and write: requests to make or change
//! keys and teams, and the views of them. None holds a digest, and only
//! [`KeyCreated`] holds a key's text.

use serde::{Deserialize, Deserializer, Serialize};
use serde_json::{Map, Value};
use switchyard_store::{BudgetPeriod, KeyRecord, TeamRecord};

/// How long a budget runs before it starts again (UTC).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "snake_case")]
pub enum Period {
    /// From 00:00 UTC each day.
    Day,
    /// From Monday 00:00 UTC each week.
    Week,
    /// From the 1st, 00:00 UTC, each month.
    Month,
    /// Never resets.
    Total,
}

impl From<Period> for BudgetPeriod {
    fn from(period: Period) -> Self {
        match period {
            Period::Day => Self::Day,
            Period::Week => Self::Week,
            Period::Month => Self::Month,
            Period::Total => Self::Total,
        }
    }
}

impl From<BudgetPeriod> for Period {
    fn from(period: BudgetPeriod) -> Self {
        match period {
            BudgetPeriod::Day => Self::Day,
            BudgetPeriod::Week => Self::Week,
            BudgetPeriod::Month => Self::Month,
            BudgetPeriod::Total => Self::Total,
        }
    }
}

/// `POST /admin/keys`: a new key.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CreateKey {
    /// A label for people (1–128 characters).
    pub name: String,
    /// The team it belongs to.
    #[serde(alias = "team")]
    pub team_id: Option<String>,
    /// Model name globs it may use (`gpt-*`); empty or absent: every model.
    #[serde(default)]
    pub models: Vec<String>,
    /// Requests per minute.
    pub rpm: Option<i64>,
    /// Tokens per minute.
    pub tpm: Option<i64>,
    /// Spend allowed per `budget_period`, in USD.
    pub budget_usd: Option<f64>,
    /// When the budget starts again (default `total`: never).
    pub budget_period: Option<Period>,
    /// When it stops working (RFC 3339, e.g. `2027-01-01T00:00:00Z`).
    pub expires_at: Option<String>,
    /// Whether it starts disabled.
    #[serde(default)]
    pub disabled: bool,
    /// Free-form labels (a JSON object, at most 16 KiB).
    pub metadata: Option<Map<String, Value>>,
}

/// `PATCH /admin/keys/{id}`: the fields to change; `null` clears one.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct UpdateKey {
    /// A new name.
    pub name: Option<String>,
    /// Another team, or none (`null`).
    #[serde(default, deserialize_with = "present", alias = "team")]
    pub team_id: Option<Option<String>>,
    /// New model globs (empty: every model).
    pub models: Option<Vec<String>>,
    /// New requests per minute, or none.
    #[serde(default, deserialize_with = "present")]
    pub rpm: Option<Option<i64>>,
    /// New tokens per minute, or none.
    #[serde(default, deserialize_with = "present")]
    pub tpm: Option<Option<i64>>,
    /// A new budget in USD, or none.
    #[serde(default, deserialize_with = "present")]
    pub budget_usd: Option<Option<f64>>,
    /// A new budget period.
    pub budget_period: Option<Period>,
    /// A new expiry (RFC 3339), or none.
    #[serde(default, deserialize_with = "present")]
    pub expires_at: Option<Option<String>>,
    /// Disable or enable.
    pub disabled: Option<bool>,
    /// New labels.
    pub metadata: Option<Map<String, Value>>,
}

/// `POST /admin/teams`: a new team.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CreateTeam {
    /// Unique among teams (1–128 characters).
    pub name: String,
    /// Model name globs its keys may use; empty or absent: every model.
    #[serde(default)]
    pub models: Vec<String>,
    /// Requests per minute, shared by its keys.
    pub rpm: Option<i64>,
    /// Tokens per minute, shared by its keys.
    pub tpm: Option<i64>,
    /// Spend allowed per `budget_period`, in USD, shared by its keys.
    pub budget_usd: Option<f64>,
    /// When the budget starts again (default `total`: never).
    pub budget_period: Option<Period>,
    /// Whether it starts disabled.
    #[serde(default)]
    pub disabled: bool,
    /// Free-form labels (a JSON object, at most 16 KiB).
    pub metadata: Option<Map<String, Value>>,
}

/// `PATCH /admin/teams/{id}`: the fields to change; `null` clears one.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct UpdateTeam {
    /// A new name.
    pub name: Option<String>,
    /// New model globs (empty: every model).
    pub models: Option<Vec<String>>,
    /// New requests per minute, or none.
    #[serde(default, deserialize_with = "present")]
    pub rpm: Option<Option<i64>>,
    /// New tokens per minute, or none.
    #[serde(default, deserialize_with = "present")]
    pub tpm: Option<Option<i64>>,
    /// A new budget in USD, or none.
    #[serde(default, deserialize_with = "present")]
    pub budget_usd: Option<Option<f64>>,
    /// A new budget period.
    pub budget_period: Option<Period>,
    /// Disable or enable.
    pub disabled: Option<bool>,
    /// New labels.
    pub metadata: Option<Map<String, Value>>,
}

/// A field that is present, `null` included (`Some(None)`); absent is `None`
/// through `#[serde(default)]`.
fn present<'de, D, T>(deserializer: D) -> Result<Option<Option<T>>, D::Error>
where
    D: Deserializer<'de>,
    T: Deserialize<'de>,
{
    Option::<T>::deserialize(deserializer).map(Some)
}

/// A key, as the admin API and the CLI show it: never its text or digest.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct KeyView {
    /// Its id (`key_…`).
    pub id: String,
    /// Its name.
    pub name: String,
    /// The start of its current secret (`sk-sy-AbC12`).
    pub prefix: String,
    /// Its team.
    pub team_id: Option<String>,
    /// The model globs it may use; empty: every model.
    pub models: Vec<String>,
    /// Requests per minute.
    pub rpm: Option<i64>,
    /// Tokens per minute.
    pub tpm: Option<i64>,
    /// Spend allowed per period, in USD.
    pub budget_usd: Option<f64>,
    /// The budget's period.
    pub budget_period: Option<Period>,
    /// Spent in the current budget period, in USD, as the store holds it
    /// (shown for one key with a budget; `null` in listings).
    pub spent_usd: Option<f64>,
    /// When it stops working (RFC 3339).
    pub expires_at: Option<String>,
    /// Whether it is disabled.
    pub disabled: bool,
    /// When it was revoked (RFC 3339).
    pub revoked_at: Option<String>,
    /// Free-form labels.
    pub metadata: Map<String, Value>,
    /// When it was created (RFC 3339).
    pub created_at: String,
    /// When it was last changed (RFC 3339).
    pub updated_at: String,
}

impl From<KeyRecord> for KeyView {
    fn from(key: KeyRecord) -> Self {
        Self {
            id: key.id,
            name: key.name,
            prefix: key.prefix,
            team_id: key.team_id,
            models: key.models,
            rpm: key.limits.rpm,
            tpm: key.limits.tpm,
            budget_usd: key.limits.budget.map(|b| usd(b.micros)),
            budget_period: key.limits.budget.map(|b| b.period.into()),
            spent_usd: None,
            expires_at: key.expires_at.map(rfc3339),
            disabled: key.disabled,
            revoked_at: key.revoked_at.map(rfc3339),
            metadata: key.metadata,
            created_at: rfc3339(key.created_at),
            updated_at: rfc3339(key.updated_at),
        }
    }
}

/// A key just made or rotated: the only answer that holds its text.
#[derive(Debug, Clone, Serialize)]
pub struct KeyCreated {
    /// The key text, shown this once: it is stored only as a digest.
    pub key: String,
    /// The key.
    #[serde(flatten)]
    pub view: KeyView,
}

/// A team, as the admin API and the CLI show it.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct TeamView {
    /// Its id (`team_…`).
    pub id: String,
    /// Its name.
    pub name: String,
    /// The model globs its keys may use; empty: every model.
    pub models: Vec<String>,
    /// Requests per minute, shared by its keys.
    pub rpm: Option<i64>,
    /// Tokens per minute, shared by its keys.
    pub tpm: Option<i64>,
    /// Spend allowed per period, in USD.
    pub budget_usd: Option<f64>,
    /// The budget's period.
    pub budget_period: Option<Period>,
    /// Spent in the current budget period, in USD, as the store holds it
    /// (shown for one team with a budget; `null` in listings).
    pub spent_usd: Option<f64>,
    /// Whether it is disabled.
    pub disabled: bool,
    /// Free-form labels.
    pub metadata: Map<String, Value>,
    /// When it was created (RFC 3339).
    pub created_at: String,
    /// When it was last changed (RFC 3339).
    pub updated_at: String,
    /// When it was deleted (RFC 3339).
    pub deleted_at: Option<String>,
}

impl From<TeamRecord> for TeamView {
    fn from(team: TeamRecord) -> Self {
        Self {
            id: team.id,
            name: team.name,
            models: team.models,
            rpm: team.limits.rpm,
            tpm: team.limits.tpm,
            budget_usd: team.limits.budget.map(|b| usd(b.micros)),
            budget_period: team.limits.budget.map(|b| b.period.into()),
            spent_usd: None,
            disabled: team.disabled,
            metadata: team.metadata,
            created_at: rfc3339(team.created_at),
            updated_at: rfc3339(team.updated_at),
            deleted_at: team.deleted_at.map(rfc3339),
        }
    }
}

/// One page of a listing.
#[derive(Debug, Clone, Serialize)]
pub struct Listing<T> {
    /// The items, by id.
    pub data: Vec<T>,
    /// Pass as `cursor` for the next page; `null` on the last one.
    pub next_cursor: Option<String>,
}

/// Micro-USD as USD.
pub fn usd(micros: i64) -> f64 {
    micros as f64 / 1e6
}

/// Unix seconds as RFC 3339 (UTC).
pub fn rfc3339(at: i64) -> String {
    let at = std::time::UNIX_EPOCH + std::time::Duration::from_secs(u64::try_from(at).unwrap_or(0));
    humantime::format_rfc3339_seconds(at).to_string()
}
