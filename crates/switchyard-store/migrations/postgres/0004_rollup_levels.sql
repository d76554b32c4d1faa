-- Rollups at three levels, so that a report reads only as many rows as its
-- dimensions need: per key (as before), per team over its keys (key_id '*'),
-- and over everyone (key_id '*', team_id '*'). A report by or for a key reads
-- the first, by or for a team the second, every other report the third.
-- The rows written before this migration are summed into the two new levels.
INSERT INTO usage_rollup (span, start, key_id, team_id, model, provider, deployment, tag,
  requests, errors, cache_hits, input_tokens, cached_input_tokens, cache_write_tokens,
  reasoning_tokens, output_tokens, cost_micros, saved_micros, latency_us)
SELECT span, start, '*', team_id, model, provider, deployment, tag,
  SUM(requests), SUM(errors), SUM(cache_hits), SUM(input_tokens), SUM(cached_input_tokens),
  SUM(cache_write_tokens), SUM(reasoning_tokens), SUM(output_tokens), SUM(cost_micros),
  SUM(saved_micros), SUM(latency_us)
FROM usage_rollup WHERE key_id <> '*'
GROUP BY span, start, team_id, model, provider, deployment, tag;

INSERT INTO usage_rollup (span, start, key_id, team_id, model, provider, deployment, tag,
  requests, errors, cache_hits, input_tokens, cached_input_tokens, cache_write_tokens,
  reasoning_tokens, output_tokens, cost_micros, saved_micros, latency_us)
SELECT span, start, '*', '*', model, provider, deployment, tag,
  SUM(requests), SUM(errors), SUM(cache_hits), SUM(input_tokens), SUM(cached_input_tokens),
  SUM(cache_write_tokens), SUM(reasoning_tokens), SUM(output_tokens), SUM(cost_micros),
  SUM(saved_micros), SUM(latency_us)
FROM usage_rollup WHERE key_id <> '*' AND team_id <> '*'
GROUP BY span, start, model, provider, deployment, tag;

-- The team and overall levels, read by their own range.
CREATE INDEX IF NOT EXISTS usage_rollup_level ON usage_rollup (span, key_id, team_id, start);
