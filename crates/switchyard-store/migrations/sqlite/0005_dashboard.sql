-- The dashboard: its sign-in sessions, and the index its team request logs read by.
-- Never edit this file once released: add 0006_….sql instead.

-- One row per signed-in browser. The cookie holds the session's random token;
-- only its SHA-256 is kept here, as keys' secrets are. A session is the
-- admin's (key_id NULL) or a virtual key's, which sees its own team's pages;
-- `credential` is what it signed in with — a digest of the admin key's digest,
-- or the digest of the key's secret — so that it ends when that does.
CREATE TABLE ui_sessions (
  digest BLOB PRIMARY KEY CHECK (length(digest) = 32),
  key_id TEXT,
  credential BLOB NOT NULL CHECK (length(credential) = 32),
  created_at INTEGER NOT NULL,
  expires_at INTEGER NOT NULL
);
CREATE INDEX ui_sessions_expires ON ui_sessions (expires_at);

-- The request log of a team (every page of a team's session), newest first,
-- reads this instead of every record of its time range. (Each index costs
-- every record written; filters by model, status, error or cache have none
-- and look at a bounded time range instead.)
CREATE INDEX usage_records_team_at ON usage_records (team_id, at);
