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
/// The secrets that work at `$3` of the unrevoked keys with ids from `$1` to `$2`,
/// each key's current one first.
pub(crate) const LIVE_SECRETS: &str = "SELECT s.digest, s.key_id, s.prefix, s.created_at, \
    s.expires_at FROM key_secrets s JOIN keys k ON k.id = s.key_id \
    WHERE s.key_id >= $1 AND s.key_id <= $2 AND k.revoked_at IS NULL \
    AND (s.expires_at IS NULL OR s.expires_at > $3) \
    ORDER BY s.expires_at IS NOT NULL, s.expires_at DESC, s.created_at DESC";
/// Ends the grace of every secret of key `$1` at `$2`, or earlier if it ended earlier.
pub(crate) const EXPIRE_SECRETS: &str = "UPDATE key_secrets SET expires_at = \
    CASE WHEN expires_at IS NULL OR expires_at > $2 THEN $2 ELSE expires_at END \
    WHERE key_id = $1";

pub(crate) const INSERT_CHANGE: &str =
    "INSERT INTO changes (kind, entity_id, at) VALUES ($1, $2, $3)";
pub(crate) const CHANGES_AFTER: &str =
    "SELECT seq, kind, entity_id, at FROM changes WHERE seq > $1 ORDER BY seq LIMIT $2";
pub(crate) const LAST_CHANGE: &str = "SELECT COALESCE(MAX(seq), 0) FROM changes";
/// Deletes the changes made before `$1`, from the first up to the first one that was
/// not (`$2` when none): what stays is a tail of the feed, with no gap in it even where
/// a change's time is earlier than the one before it (a writer reads the clock before
/// it waits for the write lock).
pub(crate) const TRIM_CHANGES: &str = "DELETE FROM changes WHERE at < $1 \
    AND seq < COALESCE((SELECT MIN(seq) FROM changes WHERE at >= $1), $2)";

/// Adds `$4` micro-USD to the spend of scope `$1`, id `$2`, period `$3`, at `$5`.
pub(crate) const ADD_SPEND: &str = "INSERT INTO spend \
    (scope, scope_id, period_start, spent_micros, updated_at) VALUES ($1, $2, $3, $4, $5) \
    ON CONFLICT (scope, scope_id, period_start) DO UPDATE SET \
    spent_micros = spend.spent_micros + excluded.spent_micros, \
    updated_at = excluded.updated_at";
pub(crate) const SPEND: &str = "SELECT spent_micros FROM spend \
    WHERE scope = $1 AND scope_id = $2 AND period_start = $3";

/// Claims the alert of scope `$1`, id `$2`, period `$3`, threshold `$4` at `$5`;
/// a second claim inserts nothing.
pub(crate) const CLAIM_ALERT: &str = "INSERT INTO budget_alerts \
    (scope, scope_id, period_start, threshold_pct, claimed_at) VALUES ($1, $2, $3, $4, $5) \
    ON CONFLICT DO NOTHING";

/// Gives back a claimed alert that could not be sent, so it is claimed and sent again.
pub(crate) const RELEASE_ALERT: &str = "DELETE FROM budget_alerts \
    WHERE scope = $1 AND scope_id = $2 AND period_start = $3 AND threshold_pct = $4";

/// A new dashboard session: digest `$1`, key `$2`, credential `$3`, begun
/// `$4`, ending `$5`.
pub(crate) const CREATE_SESSION: &str = "INSERT INTO ui_sessions \
    (digest, key_id, credential, created_at, expires_at) VALUES ($1, $2, $3, $4, $5)";
/// The sessions that ended before `$1`.
pub(crate) const TRIM_SESSIONS: &str = "DELETE FROM ui_sessions WHERE expires_at <= $1";
/// The session of digest `$1` if it ends after `$2`.
pub(crate) const SESSION: &str = "SELECT key_id, credential, created_at, expires_at FROM ui_sessions \
    WHERE digest = $1 AND expires_at > $2";
/// Signing out: the session of digest `$1` goes.
pub(crate) const DELETE_SESSION: &str = "DELETE FROM ui_sessions WHERE digest = $1";
