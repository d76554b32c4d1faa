-- A record without a key (auth.mode open, a key of the config file) or without
-- a team is never looked up by it: `key_id = …` and `team_id = …` are the only
-- filters these indexes serve, and neither matches a null. Leaving those
-- records out saves an index insert for each, on the write path of every
-- request; the planners use a partial index for `x = …` since it implies
-- `x IS NOT NULL`.
DROP INDEX usage_records_key_at;
CREATE INDEX usage_records_key_at ON usage_records (key_id, at) WHERE key_id IS NOT NULL;
DROP INDEX usage_records_team_at;
CREATE INDEX usage_records_team_at ON usage_records (team_id, at) WHERE team_id IS NOT NULL;
