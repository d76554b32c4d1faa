-- The dashboard: its sign-in sessions, and the indexes its request log reads by.
-- Never edit this file once released: add 0006_….sql instead.

-- One row per signed-in browser. The cookie holds the session's random token;
-- only its SHA-256 is kept here, as keys' secrets are. A session is the
-- admin's (key_id NULL) or a virtual key's, which sees its own team's pages;
-- `credential` is what it signed in with — a digest of the admin key's digest,
-- or the digest of the key's secret — so that it ends when that does.
CREATE TABLE ui_sessions (
  digest BYTEA PRIMARY KEY CHECK (octet_length(digest) = 32),
  key_id TEXT,
  credential BYTEA NOT NULL CHECK (octet_length(credential) = 32),
  created_at BIGINT NOT NULL,
  expires_at BIGINT NOT NULL
);
CREATE INDEX ui_sessions_expires ON ui_sessions (expires_at);

-- The request log filtered by team or by model, newest first, reads these
-- instead of every record of its time range.
CREATE INDEX usage_records_team_at ON usage_records (team_id, at);
CREATE INDEX usage_records_model_at ON usage_records (model, at);
