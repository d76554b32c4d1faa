-- Keys, their secrets' digests, teams, spend and the change feed (PostgreSQL).
-- Timestamps are unix seconds (UTC); money is an integer count of micro-USD.
-- Never edit this file once released: add 0002_….sql instead.

CREATE TABLE teams (
  id TEXT PRIMARY KEY,
  name TEXT NOT NULL CONSTRAINT teams_name_key UNIQUE,
  models JSONB NOT NULL DEFAULT '[]',         -- array of globs; [] = every model
  rpm BIGINT,
  tpm BIGINT,
  budget_micros BIGINT,
  budget_period TEXT CHECK (budget_period IN ('day', 'week', 'month', 'total')),
  disabled BOOLEAN NOT NULL DEFAULT FALSE,
  metadata JSONB NOT NULL DEFAULT '{}',
  created_at BIGINT NOT NULL,
  updated_at BIGINT NOT NULL,
  deleted_at BIGINT,
  CHECK ((budget_micros IS NULL) = (budget_period IS NULL))
);

CREATE TABLE keys (
  id TEXT PRIMARY KEY,
  name TEXT NOT NULL,
  team_id TEXT REFERENCES teams(id),
  models JSONB NOT NULL DEFAULT '[]',
  rpm BIGINT,
  tpm BIGINT,
  budget_micros BIGINT,
  budget_period TEXT CHECK (budget_period IN ('day', 'week', 'month', 'total')),
  expires_at BIGINT,
  disabled BOOLEAN NOT NULL DEFAULT FALSE,
  revoked_at BIGINT,
  metadata JSONB NOT NULL DEFAULT '{}',
  created_at BIGINT NOT NULL,
  updated_at BIGINT NOT NULL,
  CHECK ((budget_micros IS NULL) = (budget_period IS NULL))
);
CREATE INDEX keys_team ON keys(team_id);

-- One row per issued secret: the SHA-256 of the key, never the key. The current
-- secret has no expiry; rotation sets the others' to the end of their grace.
CREATE TABLE key_secrets (
  digest BYTEA CONSTRAINT key_secrets_digest_pkey PRIMARY KEY CHECK (octet_length(digest) = 32),
  key_id TEXT NOT NULL REFERENCES keys(id),
  prefix TEXT NOT NULL,                       -- 'sk-sy-AbC12', for listings
  created_at BIGINT NOT NULL,
  expires_at BIGINT
);
CREATE INDEX key_secrets_key ON key_secrets(key_id);
CREATE UNIQUE INDEX key_secrets_current ON key_secrets(key_id) WHERE expires_at IS NULL;

CREATE TABLE spend (
  scope TEXT NOT NULL CHECK (scope IN ('key', 'team')),
  scope_id TEXT NOT NULL,
  period_start BIGINT NOT NULL,               -- UTC unix seconds; 0 for 'total'
  spent_micros BIGINT NOT NULL DEFAULT 0,
  updated_at BIGINT NOT NULL,
  PRIMARY KEY (scope, scope_id, period_start)
);

CREATE TABLE changes (
  seq BIGSERIAL PRIMARY KEY,
  kind TEXT NOT NULL CHECK (kind IN ('key', 'team')),
  entity_id TEXT NOT NULL,
  at BIGINT NOT NULL
);
