-- The usage log: one row per request, and rollups per hour and per day that
-- reports read instead of the raw rows. Record times are unix milliseconds (UTC);
-- a rollup's start is unix seconds; money is micro-USD.
-- Never edit this file once released: add 0003_….sql instead.

CREATE TABLE usage_records (
  id TEXT NOT NULL,                           -- random: with `at`, a batch written twice is written once
  at BIGINT NOT NULL,
  request_id TEXT NOT NULL,
  key_id TEXT,
  key_name TEXT,
  team_id TEXT,
  tags JSONB NOT NULL DEFAULT '[]',                       -- array of strings
  endpoint TEXT NOT NULL,
  model TEXT NOT NULL,                        -- the public model asked for
  provider TEXT NOT NULL,                     -- '' when no deployment was tried
  deployment TEXT NOT NULL,                   -- 'provider/upstream-model', or ''
  status BIGINT NOT NULL,
  error_type TEXT,
  input_tokens BIGINT NOT NULL,              -- cached and cache-written included
  cached_input_tokens BIGINT NOT NULL,
  cache_write_tokens BIGINT NOT NULL,
  reasoning_tokens BIGINT NOT NULL,          -- part of output_tokens
  output_tokens BIGINT NOT NULL,
  cost_micros BIGINT NOT NULL,
  saved_micros BIGINT NOT NULL,
  cost_estimated BOOLEAN NOT NULL DEFAULT FALSE,
  latency_us BIGINT NOT NULL,
  ttft_us BIGINT,
  attempts BIGINT NOT NULL,
  cache TEXT,
  route TEXT,
  stream BOOLEAN NOT NULL DEFAULT FALSE,
  PRIMARY KEY (at, id)
);
CREATE INDEX usage_records_key_at ON usage_records (key_id, at);

-- Sums per hour (span 3600) and per day (span 86400) and dimension: a report
-- over whole days reads the daily rows, its ragged ends and hourly reports the
-- hourly ones. A request counts once in the row whose tag is ''
-- and once more in a row for each of its tags: reports by tag read the tagged
-- rows, every other report the untagged ones.
CREATE TABLE usage_rollup (
  span BIGINT NOT NULL,                       -- 3600 or 86400
  start BIGINT NOT NULL,
  key_id TEXT NOT NULL,                       -- '' when no key
  team_id TEXT NOT NULL,
  model TEXT NOT NULL,
  provider TEXT NOT NULL,
  deployment TEXT NOT NULL,
  tag TEXT NOT NULL,
  requests BIGINT NOT NULL,
  errors BIGINT NOT NULL,
  cache_hits BIGINT NOT NULL,
  input_tokens BIGINT NOT NULL,
  cached_input_tokens BIGINT NOT NULL,
  cache_write_tokens BIGINT NOT NULL,
  reasoning_tokens BIGINT NOT NULL,
  output_tokens BIGINT NOT NULL,
  cost_micros BIGINT NOT NULL,
  saved_micros BIGINT NOT NULL,
  latency_us BIGINT NOT NULL,
  PRIMARY KEY (span, start, key_id, team_id, model, provider, deployment, tag)
);
