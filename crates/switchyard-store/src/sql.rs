//! The statements, the same text for SQLite and PostgreSQL: `$N` placeholders (which
//! sqlx's SQLite driver binds by number), JSON columns bound and read as
//! `sqlx::types::Json` (TEXT in SQLite, JSONB in PostgreSQL), and no dialect-only
//! syntax. Every value is bound.

macro_rules! team_columns {
    () => {
        "SELECT id, name, models, rpm, tpm, budget_micros, budget_period, disabled, metadata, \
         created_at, updated_at, deleted_at FROM teams"
    };
}

/// Keys joined with their current secret (the one without an expiry) for the prefix.
macro_rules! key_columns {
    () => {
        "SELECT k.id, k.name, k.team_id, s.prefix, k.models, k.rpm, k.tpm, k.budget_micros, \
         k.budget_period, k.expires_at, k.disabled, k.revoked_at, k.metadata, k.created_at, \
         k.updated_at FROM keys k JOIN key_secrets s ON s.key_id = k.id AND s.expires_at IS NULL"
    };
}

pub(crate) const PING: &str = "SELECT 1";

pub(crate) const TEAM: &str = concat!(team_columns!(), " WHERE id = $1");
pub(crate) const LIST_TEAMS: &str = concat!(
    team_columns!(),
    " WHERE deleted_at IS NULL AND ($1 IS NULL OR id > $1) ORDER BY id LIMIT $2"
);
pub(crate) const TEAM_IS_LIVE: &str =
    "SELECT EXISTS (SELECT 1 FROM teams WHERE id = $1 AND deleted_at IS NULL)";
pub(crate) const TEAM_HAS_KEYS: &str =
    "SELECT EXISTS (SELECT 1 FROM keys WHERE team_id = $1 AND revoked_at IS NULL)";
pub(crate) const INSERT_TEAM: &str = "INSERT INTO teams (id, name, models, rpm, tpm, \
    budget_micros, budget_period, disabled, metadata, created_at, updated_at, deleted_at) \
    VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12)";
pub(crate) const UPDATE_TEAM: &str = "UPDATE teams SET name = $2, models = $3, rpm = $4, \
    tpm = $5, budget_micros = $6, budget_period = $7, disabled = $8, metadata = $9, \
    created_at = $10, updated_at = $11, deleted_at = $12 WHERE id = $1";

pub(crate) const KEY: &str = concat!(key_columns!(), " WHERE k.id = $1");
pub(crate) const LIST_KEYS: &str = concat!(
    key_columns!(),
    " WHERE ($1 IS NULL OR k.team_id = $1) AND ($2 OR k.revoked_at IS NULL) \
     AND ($3 IS NULL OR k.id > $3) \
     AND ($4 IS NULL OR EXISTS (SELECT 1 FROM key_secrets p \
          WHERE p.key_id = k.id AND substr(p.prefix, 1, length($4)) = $4)) \
     ORDER BY k.id LIMIT $5"
);
pub(crate) const INSERT_KEY: &str = "INSERT INTO keys (id, name, team_id, models, rpm, tpm, \
    budget_micros, budget_period, expires_at, disabled, revoked_at, metadata, created_at, \
    updated_at) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14)";
pub(crate) const UPDATE_KEY: &str = "UPDATE keys SET name = $2, team_id = $3, models = $4, \
    rpm = $5, tpm = $6, budget_micros = $7, budget_period = $8, expires_at = $9, \
    disabled = $10, revoked_at = $11, metadata = $12, created_at = $13, updated_at = $14 \
    WHERE id = $1";

pub(crate) const SECRET: &str =
    "SELECT digest, key_id, prefix, created_at, expires_at FROM key_secrets WHERE digest = $1";
/// The current secret first, then the others by expiry, latest first.
pub(crate) const SECRETS: &str = "SELECT digest, key_id, prefix, created_at, expires_at \
    FROM key_secrets WHERE key_id = $1 \
    ORDER BY expires_at IS NOT NULL, expires_at DESC, created_at DESC";
pub(crate) const INSERT_SECRET: &str = "INSERT INTO key_secrets \
    (digest, key_id, prefix, created_at, expires_at) VALUES ($1, $2, $3, $4, NULL)";
/// Ends the grace of every secret of key `$1` at `$2`, or earlier if it ended earlier.
pub(crate) const EXPIRE_SECRETS: &str = "UPDATE key_secrets SET expires_at = \
    CASE WHEN expires_at IS NULL OR expires_at > $2 THEN $2 ELSE expires_at END \
    WHERE key_id = $1";

pub(crate) const INSERT_CHANGE: &str =
    "INSERT INTO changes (kind, entity_id, at) VALUES ($1, $2, $3)";
pub(crate) const CHANGES_AFTER: &str =
    "SELECT seq, kind, entity_id, at FROM changes WHERE seq > $1 ORDER BY seq LIMIT $2";
