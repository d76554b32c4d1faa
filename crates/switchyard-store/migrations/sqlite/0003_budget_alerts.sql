-- Spend alerts sent: one row per key or team, budget period and threshold, so
-- that however many replicas see a budget cross a threshold, one sends the alert.
-- Never edit this file once released: add 0004_….sql instead.

CREATE TABLE budget_alerts (
  scope TEXT NOT NULL CHECK (scope IN ('key', 'team')),
  scope_id TEXT NOT NULL,
  period_start INTEGER NOT NULL,                -- UTC unix seconds; 0 for 'total'
  threshold_pct INTEGER NOT NULL,               -- 80 for 80 %
  claimed_at INTEGER NOT NULL,
  PRIMARY KEY (scope, scope_id, period_start, threshold_pct)
);
