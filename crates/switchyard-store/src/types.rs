//! The records the store holds and the requests that change them.
//!
//! Timestamps are unix seconds (UTC) and money is a count of micro-USD, in both
//! backends, so no time or decimal type crosses the store's boundary.

use serde_json::{Map, Value};

/// How long a budget runs before it starts again (UTC).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum BudgetPeriod {
    /// From 00:00 UTC each day.
    Day,
    /// From Monday 00:00 UTC each week.
    Week,
    /// From the 1st, 00:00 UTC, each month.
    Month,
    /// Never resets.
    Total,
}

impl BudgetPeriod {
    /// The name stored in the database and shown in the API.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Day => "day",
            Self::Week => "week",
            Self::Month => "month",
            Self::Total => "total",
        }
    }

    /// The period named `name`, as [`as_str`](Self::as_str) spells it.
    pub fn parse(name: &str) -> Option<Self> {
        match name {
            "day" => Some(Self::Day),
            "week" => Some(Self::Week),
            "month" => Some(Self::Month),
            "total" => Some(Self::Total),
            _ => None,
        }
    }
}

/// A spending cap: so many micro-USD per period.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Budget {
    /// The cap, in micro-USD.
    pub micros: i64,
    /// When the spend counts from zero again.
    pub period: BudgetPeriod,
}

/// The limits of a key or a team; `None` is "no limit".
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Limits {
    /// Requests per minute.
    pub rpm: Option<i64>,
    /// Tokens per minute.
    pub tpm: Option<i64>,
    /// Spend per period.
    pub budget: Option<Budget>,
}

/// A team: keys may belong to one, and its limits apply to all of them together.
#[derive(Clone, Debug, PartialEq)]
pub struct TeamRecord {
    /// Chosen by the caller at creation; never changes.
    pub id: String,
    /// Unique among teams, deleted ones included.
    pub name: String,
    /// Model name globs the team's keys may use; empty allows every model.
    pub models: Vec<String>,
    /// The team's own limits, shared by its keys.
    pub limits: Limits,
    /// A disabled team's keys are refused.
    pub disabled: bool,
    /// Free-form labels (a JSON object).
    pub metadata: Map<String, Value>,
    /// When it was created (unix seconds).
    pub created_at: i64,
    /// When it was last changed (unix seconds).
    pub updated_at: i64,
    /// When it was deleted (soft: the row stays, with its spend).
    pub deleted_at: Option<i64>,
}

/// A virtual key. Its secret is never stored, only the digests in [`SecretRecord`]s.
#[derive(Clone, Debug, PartialEq)]
pub struct KeyRecord {
    /// Chosen by the caller at creation; never changes.
    pub id: String,
    /// A label for people; not unique.
    pub name: String,
    /// The team whose limits and budget also apply.
    pub team_id: Option<String>,
    /// The start of the current secret (`sk-sy-AbC12`), for listings.
    pub prefix: String,
    /// Model name globs the key may use; empty allows every model (of its team).
    pub models: Vec<String>,
    /// The key's own limits.
    pub limits: Limits,
    /// After this instant (unix seconds) the key is refused.
    pub expires_at: Option<i64>,
    /// A disabled key is refused until enabled again.
    pub disabled: bool,
    /// When it was revoked: for good, unlike `disabled`.
    pub revoked_at: Option<i64>,
    /// Free-form labels (a JSON object).
    pub metadata: Map<String, Value>,
    /// When it was created (unix seconds).
    pub created_at: i64,
    /// When it was last changed (unix seconds).
    pub updated_at: i64,
}

/// One issued secret of a key: its SHA-256 digest, never the secret itself.
///
/// A key has exactly one current secret (`expires_at` is `None`); rotation gives the
/// ones before it an expiry, the end of their grace period.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SecretRecord {
    /// SHA-256 of the whole key text.
    pub digest: [u8; 32],
    /// The key it authenticates.
    pub key_id: String,
    /// The key text's start, safe to show (`sk-sy-AbC12`).
    pub prefix: String,
    /// When it was issued (unix seconds).
    pub created_at: i64,
    /// When it stops working (unix seconds); `None` for the current secret.
    pub expires_at: Option<i64>,
}

/// A signed-in dashboard session: only its token's digest is kept.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SessionRecord {
    /// SHA-256 of the session's token (the cookie holds the token).
    pub digest: [u8; 32],
    /// The virtual key that signed in; `None` for the admin.
    pub key_id: Option<String>,
    /// What it signed in with: a digest of the admin key's digest, or the
    /// digest of the key's secret (the session ends when that stops working).
    pub credential: [u8; 32],
    /// When it began (unix seconds).
    pub created_at: i64,
    /// When it ends (unix seconds).
    pub expires_at: i64,
}

/// A secret to store with a new or rotated key.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct NewSecret {
    /// SHA-256 of the whole key text.
    pub digest: [u8; 32],
    /// The key text's start, safe to show.
    pub prefix: String,
}

/// A key and the secret that matched a digest.
#[derive(Clone, Debug, PartialEq)]
pub struct KeyMatch {
    /// The key.
    pub key: KeyRecord,
    /// The secret whose digest was looked up (it may be in its grace period).
    pub secret: SecretRecord,
}

/// What a new team is made of.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct NewTeam {
    /// Its id (the caller makes it, e.g. `team_` and random hex).
    pub id: String,
    /// Unique among teams.
    pub name: String,
    /// Model name globs; empty allows every model.
    pub models: Vec<String>,
    /// Its limits.
    pub limits: Limits,
    /// Whether it starts disabled.
    pub disabled: bool,
    /// Free-form labels.
    pub metadata: Map<String, Value>,
}

/// What a new key is made of.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct NewKey {
    /// Its id (the caller makes it, e.g. `key_` and random hex).
    pub id: String,
    /// A label for people.
    pub name: String,
    /// A live team's id, if any.
    pub team_id: Option<String>,
    /// Model name globs; empty allows every model.
    pub models: Vec<String>,
    /// Its limits.
    pub limits: Limits,
    /// When it stops working (unix seconds).
    pub expires_at: Option<i64>,
    /// Whether it starts disabled.
    pub disabled: bool,
    /// Free-form labels.
    pub metadata: Map<String, Value>,
}

/// A change to a team: each `Some` replaces the field (`Some(None)` clears it).
#[derive(Clone, Debug, Default, PartialEq)]
pub struct TeamPatch {
    /// A new name.
    pub name: Option<String>,
    /// New model globs.
    pub models: Option<Vec<String>>,
    /// New requests per minute.
    pub rpm: Option<Option<i64>>,
    /// New tokens per minute.
    pub tpm: Option<Option<i64>>,
    /// A new budget.
    pub budget: Option<Option<Budget>>,
    /// Disable or enable.
    pub disabled: Option<bool>,
    /// New labels.
    pub metadata: Option<Map<String, Value>>,
}

/// A change to a key: each `Some` replaces the field (`Some(None)` clears it).
#[derive(Clone, Debug, Default, PartialEq)]
pub struct KeyPatch {
    /// A new name.
    pub name: Option<String>,
    /// Another team, or none.
    pub team_id: Option<Option<String>>,
    /// New model globs.
    pub models: Option<Vec<String>>,
    /// New requests per minute.
    pub rpm: Option<Option<i64>>,
    /// New tokens per minute.
    pub tpm: Option<Option<i64>>,
    /// A new budget.
    pub budget: Option<Option<Budget>>,
    /// A new expiry.
    pub expires_at: Option<Option<i64>>,
    /// Disable or enable.
    pub disabled: Option<bool>,
    /// New labels.
    pub metadata: Option<Map<String, Value>>,
}

/// Which keys a listing returns.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct KeyFilter {
    /// Only the keys of this team.
    pub team_id: Option<String>,
    /// Only keys with a secret (current or earlier) starting with this text.
    pub prefix: Option<String>,
    /// Revoked keys too.
    pub include_revoked: bool,
}

/// One page of a listing ordered by id: the items after `after`, at most `limit`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PageRequest {
    /// The cursor: the last id of the previous page.
    pub after: Option<String>,
    /// At most this many items (1 at least).
    pub limit: u32,
}

/// One page of a listing.
#[derive(Clone, Debug, PartialEq)]
pub struct Page<T> {
    /// The items, in id order.
    pub items: Vec<T>,
    /// The cursor for the next page, or `None` on the last page.
    pub next_cursor: Option<String>,
}

/// What a change-feed row is about.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum ChangeKind {
    /// A key or one of its secrets.
    Key,
    /// A team.
    Team,
}

impl ChangeKind {
    /// The name stored in the database.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Key => "key",
            Self::Team => "team",
        }
    }
}

/// One row of the change feed: the record `entity_id` of `kind` changed at `at`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Change {
    /// Increasing; followers ask for the changes after the last one they saw.
    pub seq: i64,
    /// What changed.
    pub kind: ChangeKind,
    /// Its id.
    pub entity_id: String,
    /// When (unix seconds).
    pub at: i64,
}

/// Whose spend a [`SpendDelta`] counts: a key's own, or its team's.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum SpendScope {
    /// A key's spend.
    Key,
    /// A team's spend, shared by its keys.
    Team,
}

impl SpendScope {
    /// The name stored in the database.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Key => "key",
            Self::Team => "team",
        }
    }
}

/// Money to add to one scope's spend in one budget period.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SpendDelta {
    /// Key or team.
    pub scope: SpendScope,
    /// The key's or team's id.
    pub scope_id: String,
    /// The start of the budget period (unix seconds, UTC); 0 for a `total` budget.
    pub period_start: i64,
    /// How much, in micro-USD; negative for a refund.
    pub micros: i64,
}

/// An unrevoked key and the secrets that still authenticate it.
#[derive(Clone, Debug, PartialEq)]
pub struct LiveKey {
    /// The key.
    pub key: KeyRecord,
    /// Its secrets that have not expired, the current one first.
    pub secrets: Vec<SecretRecord>,
}
