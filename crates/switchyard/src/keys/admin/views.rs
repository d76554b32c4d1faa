//! What the admin API and the CLI read and write: requests to make or change
//! keys and teams, and the views of them. None holds a digest, and only
//! [`KeyCreated`] holds a key's text.
//!
//! Their OpenAPI schemas are derived here too; the bounds they state (lengths,
//! ranges) are those [`super`] checks, and a test in `api::admin::openapi`
//! holds the two together.

use std::time::Duration;

use serde::{Deserialize, Deserializer, Serialize};
use serde_json::{Map, Value};
use switchyard_store::{BudgetPeriod, KeyRecord, TeamRecord};
use utoipa::openapi::schema::{ArrayBuilder, ObjectBuilder, SchemaType, Type};
use utoipa::{IntoParams, ToSchema};

/// How long a budget runs before it starts again (UTC).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, clap::ValueEnum, ToSchema)]
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
#[derive(Debug, Clone, Default, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CreateKey {
    /// A label for people (1–128 characters once trimmed, no control characters).
    #[schema(
        min_length = 1,
        max_length = 128,
        pattern = r"\S",
        example = "billing-service"
    )]
    pub name: String,
    /// The team it belongs to (a live team's id).
    #[serde(alias = "team")]
    #[schema(min_length = 1, max_length = 128)]
    pub team_id: Option<String>,
    /// Model name globs it may use (`gpt-*`); empty or absent: every model.
    #[serde(default)]
    #[schema(schema_with = globs_schema)]
    pub models: Vec<String>,
    /// Requests per minute.
    #[schema(minimum = 1, maximum = 1000000000)]
    pub rpm: Option<i64>,
    /// Tokens per minute.
    #[schema(minimum = 1, maximum = 1000000000)]
    pub tpm: Option<i64>,
    /// Spend allowed per `budget_period`, in USD.
    #[schema(minimum = 0.0, maximum = 1e9)]
    pub budget_usd: Option<f64>,
    /// When the budget starts again (default `total`: never); needs `budget_usd`.
    pub budget_period: Option<Period>,
    /// When it stops working: an RFC 3339 instant in the future (`2027-01-01T00:00:00Z`).
    #[schema(format = DateTime)]
    pub expires_at: Option<String>,
    /// Whether it starts disabled.
    #[serde(default)]
    pub disabled: bool,
    /// Free-form labels (a JSON object, at most 16 KiB).
    #[schema(value_type = Option<Object>)]
    pub metadata: Option<Map<String, Value>>,
}

/// `PATCH /admin/keys/{id}`: the fields to change; `null` clears one.
#[derive(Debug, Clone, Default, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct UpdateKey {
    /// A new name (`null`: unchanged).
    #[schema(min_length = 1, max_length = 128, pattern = r"\S")]
    pub name: Option<String>,
    /// Another team, or none (`null`).
    #[serde(default, deserialize_with = "present", alias = "team")]
    #[schema(value_type = Option<String>, min_length = 1, max_length = 128)]
    pub team_id: Option<Option<String>>,
    /// New model globs (empty: every model; `null`: unchanged).
    #[schema(schema_with = new_globs_schema)]
    pub models: Option<Vec<String>>,
    /// New requests per minute, or none (`null`).
    #[serde(default, deserialize_with = "present")]
    #[schema(value_type = Option<i64>, minimum = 1, maximum = 1000000000)]
    pub rpm: Option<Option<i64>>,
    /// New tokens per minute, or none (`null`).
    #[serde(default, deserialize_with = "present")]
    #[schema(value_type = Option<i64>, minimum = 1, maximum = 1000000000)]
    pub tpm: Option<Option<i64>>,
    /// A new budget in USD, or none (`null`).
    #[serde(default, deserialize_with = "present")]
    #[schema(value_type = Option<f64>, minimum = 0.0, maximum = 1e9)]
    pub budget_usd: Option<Option<f64>>,
    /// A new budget period (`null`: unchanged).
    pub budget_period: Option<Period>,
    /// A new expiry (an RFC 3339 instant in the future), or none (`null`).
    #[serde(default, deserialize_with = "present")]
    #[schema(value_type = Option<String>, format = DateTime)]
    pub expires_at: Option<Option<String>>,
    /// Disable or enable (`null`: unchanged).
    pub disabled: Option<bool>,
    /// New labels (`null`: unchanged).
    #[schema(value_type = Option<Object>)]
    pub metadata: Option<Map<String, Value>>,
}

/// `POST /admin/teams`: a new team.
#[derive(Debug, Clone, Default, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CreateTeam {
    /// Unique among teams (1–128 characters once trimmed, no control characters).
    #[schema(
        min_length = 1,
        max_length = 128,
        pattern = r"\S",
        example = "research"
    )]
    pub name: String,
    /// Model name globs its keys may use; empty or absent: every model.
    #[serde(default)]
    #[schema(schema_with = globs_schema)]
    pub models: Vec<String>,
    /// Requests per minute, shared by its keys.
    #[schema(minimum = 1, maximum = 1000000000)]
    pub rpm: Option<i64>,
    /// Tokens per minute, shared by its keys.
    #[schema(minimum = 1, maximum = 1000000000)]
    pub tpm: Option<i64>,
    /// Spend allowed per `budget_period`, in USD, shared by its keys.
    #[schema(minimum = 0.0, maximum = 1e9)]
    pub budget_usd: Option<f64>,
    /// When the budget starts again (default `total`: never); needs `budget_usd`.
    pub budget_period: Option<Period>,
    /// Whether it starts disabled.
    #[serde(default)]
    pub disabled: bool,
    /// Free-form labels (a JSON object, at most 16 KiB).
    #[schema(value_type = Option<Object>)]
    pub metadata: Option<Map<String, Value>>,
}

/// `PATCH /admin/teams/{id}`: the fields to change; `null` clears one.
#[derive(Debug, Clone, Default, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct UpdateTeam {
    /// A new name (`null`: unchanged).
    #[schema(min_length = 1, max_length = 128, pattern = r"\S")]
    pub name: Option<String>,
    /// New model globs (empty: every model; `null`: unchanged).
    #[schema(schema_with = new_globs_schema)]
    pub models: Option<Vec<String>>,
    /// New requests per minute, or none (`null`).
    #[serde(default, deserialize_with = "present")]
    #[schema(value_type = Option<i64>, minimum = 1, maximum = 1000000000)]
    pub rpm: Option<Option<i64>>,
    /// New tokens per minute, or none (`null`).
    #[serde(default, deserialize_with = "present")]
    #[schema(value_type = Option<i64>, minimum = 1, maximum = 1000000000)]
    pub tpm: Option<Option<i64>>,
    /// A new budget in USD, or none (`null`).
    #[serde(default, deserialize_with = "present")]
    #[schema(value_type = Option<f64>, minimum = 0.0, maximum = 1e9)]
    pub budget_usd: Option<Option<f64>>,
    /// A new budget period (`null`: unchanged).
    pub budget_period: Option<Period>,
    /// Disable or enable (`null`: unchanged).
    pub disabled: Option<bool>,
    /// New labels (`null`: unchanged).
    #[schema(value_type = Option<Object>)]
    pub metadata: Option<Map<String, Value>>,
}

/// `POST /admin/keys/{id}/rotate`: how long the old secret keeps working.
#[derive(Debug, Clone, Default, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct RotateKey {
    /// A duration (`90s`, `1h`, `2d 12h`); absent or `null`: `auth.rotation_grace`.
    #[serde(default, deserialize_with = "duration")]
    #[schema(value_type = Option<String>, example = "1h")]
    pub grace: Option<Duration>,
}

/// The most items a page of a listing holds unless `limit` says otherwise.
pub const DEFAULT_PAGE: u32 = 50;

/// `GET /admin/keys`: which keys, and which page of them.
#[derive(Debug, Clone, Default, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct KeyQuery {
    /// Keys per page, 1–200 (default 50).
    #[param(minimum = 1, maximum = 200)]
    pub limit: Option<u32>,
    /// The `next_cursor` of the page before.
    pub cursor: Option<String>,
    /// Only the keys of this team.
    pub team_id: Option<String>,
    /// Only keys with a secret, current or earlier, starting with this (`sk-sy-AbC12`).
    pub prefix: Option<String>,
    /// Revoked keys too (default `false`).
    pub include_revoked: Option<bool>,
}

/// `GET /admin/teams`: which page of the teams.
#[derive(Debug, Clone, Default, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct PageQuery {
    /// Teams per page, 1–200 (default 50).
    #[param(minimum = 1, maximum = 200)]
    pub limit: Option<u32>,
    /// The `next_cursor` of the page before.
    pub cursor: Option<String>,
}

/// The schema of `models` in a new key or team: at most 64 globs, each
/// 1–128 characters and not blank (as [`super`] checks them, once trimmed).
fn globs_schema() -> utoipa::openapi::Array {
    globs_array(Type::Array.into())
}

/// The schema of `models` in a change: [`globs_schema`], or `null`.
fn new_globs_schema() -> utoipa::openapi::Array {
    globs_array(SchemaType::from_iter([Type::Array, Type::Null]))
}

fn globs_array(schema_type: SchemaType) -> utoipa::openapi::Array {
    let glob = ObjectBuilder::new()
        .schema_type(Type::String)
        .min_length(Some(1))
        .max_length(Some(super::MAX_NAME))
        .pattern(Some(r"\S"));
    ArrayBuilder::new()
        .schema_type(schema_type)
        .items(glob)
        .max_items(Some(super::MAX_GLOBS))
        .description(Some(
            "Model name globs (`gpt-*`, `claude-*`), at most 64; empty: every model",
        ))
        .build()
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

/// A duration as people write it (`90s`, `1h`), or `null`.
fn duration<'de, D: Deserializer<'de>>(deserializer: D) -> Result<Option<Duration>, D::Error> {
    Option::<String>::deserialize(deserializer)?
        .map(|text| humantime::parse_duration(text.trim()).map_err(serde::de::Error::custom))
        .transpose()
}

/// A key, as the admin API and the CLI show it: never its text or digest.
#[derive(Debug, Clone, PartialEq, Serialize, ToSchema)]
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
    #[schema(format = DateTime)]
    pub expires_at: Option<String>,
    /// Whether it is disabled.
    pub disabled: bool,
    /// When it was revoked (RFC 3339).
    #[schema(format = DateTime)]
    pub revoked_at: Option<String>,
    /// Free-form labels.
    #[schema(value_type = Object)]
    pub metadata: Map<String, Value>,
    /// When it was created (RFC 3339).
    #[schema(format = DateTime)]
    pub created_at: String,
    /// When it was last changed (RFC 3339).
    #[schema(format = DateTime)]
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
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct KeyCreated {
    /// The key text, shown this once: it is stored only as a digest.
    pub key: String,
    /// The key.
    #[serde(flatten)]
    pub view: KeyView,
}

/// A team, as the admin API and the CLI show it.
#[derive(Debug, Clone, PartialEq, Serialize, ToSchema)]
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
    #[schema(value_type = Object)]
    pub metadata: Map<String, Value>,
    /// When it was created (RFC 3339).
    #[schema(format = DateTime)]
    pub created_at: String,
    /// When it was last changed (RFC 3339).
    #[schema(format = DateTime)]
    pub updated_at: String,
    /// When it was deleted (RFC 3339).
    #[schema(format = DateTime)]
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
#[derive(Debug, Clone, Serialize, ToSchema)]
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
