-- Keys, their secrets' digests, teams, spend and the change feed (SQLite).
-- Timestamps are unix seconds (UTC); money is an integer count of micro-USD.
-- Never edit this file once released: add 0002_….sql instead.

CREATE TABLE teams (
  id TEXT PRIMARY KEY,
  name TEXT NOT NULL UNIQUE,
  models TEXT NOT NULL DEFAULT '[]',          -- JSON array of globs; '[]' = every model
  rpm INTEGER,
  tpm INTEGER,
  budget_micros INTEGER,
  budget_period TEXT CHECK (budget_period IN ('day', 'week', 'month', 'total')),
  disabled INTEGER NOT NULL DEFAULT 0,
  metadata TEXT NOT NULL DEFAULT '{}',        -- JSON object
  created_at INTEGER NOT NULL,
  updated_at INTEGER NOT NULL,
  deleted_at INTEGER,
  CHECK ((budget_micros IS NULL) = (budget_period IS NULL))
);

CREATE TABLE keys (
  id TEXT PRIMARY KEY,
  name TEXT NOT NULL,
  team_id TEXT REFERENCES teams(id),
  models TEXT NOT NULL DEFAULT '[]',
  rpm INTEGER,
  tpm INTEGER,
  budget_micros INTEGER,
  budget_period TEXT CHECK (budget_period IN ('day', 'week', 'month', 'total')),
  expires_at INTEGER,
  disabled INTEGER NOT NULL DEFAULT 0,
  revoked_at INTEGER,
  metadata TEXT NOT NULL DEFAULT '{}',
  created_at INTEGER NOT NULL,
  updated_at INTEGER NOT NULL,
  CHECK ((budget_micros IS NULL) = (budget_period IS NULL))
);
CREATE INDEX keys_team ON keys(team_id);

-- One row per issued secret: the SHA-256 of the key, never the key. The current
-- secret has no expiry; rotation sets the others' to the end of their grace.
CREATE TABLE key_secrets (
  digest BLOB PRIMARY KEY CHECK (length(digest) = 32),
  key_id TEXT NOT NULL REFERENCES keys(id),
  prefix TEXT NOT NULL,                       -- 'sk-sy-AbC12', for listings
  created_at INTEGER NOT NULL,
  expires_at INTEGER
);
CREATE INDEX key_secrets_key ON key_secrets(key_id);
CREATE UNIQUE INDEX key_secrets_current ON key_secrets(key_id) WHERE expires_at IS NULL;

CREATE TABLE spend (
  scope TEXT NOT NULL CHECK (scope IN ('key', 'team')),
  scope_id TEXT NOT NULL,
  period_start INTEGER NOT NULL,              -- UTC unix seconds; 0 for 'total'
  spent_micros INTEGER NOT NULL DEFAULT 0,
  updated_at INTEGER NOT NULL,
  PRIMARY KEY (scope, scope_id, period_start)
);

CREATE TABLE changes (
  seq INTEGER PRIMARY KEY AUTOINCREMENT,
  kind TEXT NOT NULL CHECK (kind IN ('key', 'team')),
  entity_id TEXT NOT NULL,
  at INTEGER NOT NULL
);
