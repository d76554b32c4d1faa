-- The usage log: one row per request, and rollups per hour and per day that
-- reports read instead of the raw rows. Record times are unix milliseconds (UTC);
-- a rollup's start is unix seconds; money is micro-USD.
-- Never edit this file once released: add 0003_….sql instead.

CREATE TABLE usage_records (
  id TEXT NOT NULL,                           -- random: with `at`, a batch written twice is written once
  at INTEGER NOT NULL,
  request_id TEXT NOT NULL,
  key_id TEXT,
  key_name TEXT,
  team_id TEXT,
  tags TEXT NOT NULL DEFAULT '[]',                       -- array of strings
  endpoint TEXT NOT NULL,
  model TEXT NOT NULL,                        -- the public model asked for
  provider TEXT NOT NULL,                     -- '' when no deployment was tried
  deployment TEXT NOT NULL,                   -- 'provider/upstream-model', or ''
  status INTEGER NOT NULL,
  error_type TEXT,
  input_tokens INTEGER NOT NULL,              -- cached and cache-written included
  cached_input_tokens INTEGER NOT NULL,
  cache_write_tokens INTEGER NOT NULL,
  reasoning_tokens INTEGER NOT NULL,          -- part of output_tokens
  output_tokens INTEGER NOT NULL,
  cost_micros INTEGER NOT NULL,
  saved_micros INTEGER NOT NULL,
  cost_estimated INTEGER NOT NULL DEFAULT 0,
  latency_us INTEGER NOT NULL,
  ttft_us INTEGER,
  attempts INTEGER NOT NULL,
  cache TEXT,
  route TEXT,
  stream INTEGER NOT NULL DEFAULT 0,
  PRIMARY KEY (at, id)
) WITHOUT ROWID;                              -- kept in time order: appends, pages newest first
CREATE INDEX usage_records_key_at ON usage_records (key_id, at);

-- Sums per hour (span 3600) and per day (span 86400) and dimension: a report
-- over whole days reads the daily rows, its ragged ends and hourly reports the
-- hourly ones. A request counts once in the row whose tag is ''
-- and once more in a row for each of its tags: reports by tag read the tagged
-- rows, every other report the untagged ones.
CREATE TABLE usage_rollup (
  span INTEGER NOT NULL,                       -- 3600 or 86400
  start INTEGER NOT NULL,
  key_id TEXT NOT NULL,                       -- '' when no key
  team_id TEXT NOT NULL,
  model TEXT NOT NULL,
  provider TEXT NOT NULL,
  deployment TEXT NOT NULL,
  tag TEXT NOT NULL,
  requests INTEGER NOT NULL,
  errors INTEGER NOT NULL,
  cache_hits INTEGER NOT NULL,
  input_tokens INTEGER NOT NULL,
  cached_input_tokens INTEGER NOT NULL,
  cache_write_tokens INTEGER NOT NULL,
  reasoning_tokens INTEGER NOT NULL,
  output_tokens INTEGER NOT NULL,
  cost_micros INTEGER NOT NULL,
  saved_micros INTEGER NOT NULL,
  latency_us INTEGER NOT NULL,
  PRIMARY KEY (span, start, key_id, team_id, model, provider, deployment, tag)
);
