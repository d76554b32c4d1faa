//! What the reports of the usage log share — `GET /admin/costs` and
//! `switchyard report`: how their times are read, how a time group is
//! written for people, and the columns of a cost row.

use std::time::{SystemTime, UNIX_EPOCH};

use serde_json::Value;
use switchyard_store::{CostRow, GroupBy};

use crate::keys::admin::views::{rfc3339, usd};

/// A time as reports take it — RFC 3339 (`2026-12-06T10:00:00Z`), a date
/// (`2026-12-06`, its midnight UTC) or unix seconds — in unix seconds.
pub fn unix_seconds(text: &str) -> Option<i64> {
    if let Ok(secs) = text.parse::<i64>() {
        return Some(secs);
    }
    let full = if text.len() == 10 {
        format!("{text}T00:00:00Z")
    } else {
        text.to_owned()
    };
    humantime::parse_rfc3339_weak(&full)
        .ok()
        .and_then(|t| t.duration_since(UNIX_EPOCH).ok())
        .and_then(|d| i64::try_from(d.as_secs()).ok())
}

/// Now, in unix seconds.
pub fn now_secs() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_secs()).unwrap_or(i64::MAX))
}

/// The value of a group's dimension, for people: a day as its date
/// (`2026-12-06`), an hour as RFC 3339 (`2026-12-06T10:00:00Z`); other
/// dimensions as they are.
pub fn label(group: GroupBy, value: &str) -> String {
    match (group, value.parse::<i64>()) {
        (GroupBy::Day | GroupBy::Hour, Ok(secs)) => time_label(group, secs),
        _ => value.to_owned(),
    }
}

/// The day or the hour that `secs` (unix seconds) falls in, as [`label`]
/// writes it; any other dimension as RFC 3339.
pub fn time_label(group: GroupBy, secs: i64) -> String {
    match group {
        GroupBy::Day => rfc3339(secs).chars().take(10).collect(),
        GroupBy::Hour => rfc3339(secs - secs.rem_euclid(3600)),
        _ => rfc3339(secs),
    }
}

/// The columns of a cost row after its dimensions.
pub const COST_COLUMNS: [&str; 14] = [
    "requests",
    "errors",
    "cache_hits",
    "input_tokens",
    "cached_input_tokens",
    "cache_write_tokens",
    "reasoning_tokens",
    "output_tokens",
    "cost_micros",
    "cost_usd",
    "saved_micros",
    "saved_usd",
    "avg_latency_ms",
    "error_rate",
];

/// The values of [`COST_COLUMNS`] for `row`.
pub fn cost_values(row: &CostRow) -> [Value; 14] {
    let per_request = |n: i64| {
        if row.requests == 0 {
            0.0
        } else {
            n as f64 / row.requests as f64
        }
    };
    [
        row.requests.into(),
        row.errors.into(),
        row.cache_hits.into(),
        row.input_tokens.into(),
        row.cached_input_tokens.into(),
        row.cache_write_tokens.into(),
        row.reasoning_tokens.into(),
        row.output_tokens.into(),
        row.cost_micros.into(),
        usd(row.cost_micros).into(),
        row.saved_micros.into(),
        usd(row.saved_micros).into(),
        (per_request(row.latency_us) / 1000.0).into(),
        per_request(row.errors).into(),
    ]
}

/// A value of a report as a CSV cell (`null` as an empty one).
pub fn cell(value: &Value) -> String {
    match value {
        Value::String(s) => s.clone(),
        Value::Null => String::new(),
        other => other.to_string(),
    }
}

/// `n` with a comma between each three digits.
pub fn thousands(n: i64) -> String {
    let digits = n.unsigned_abs().to_string();
    let mut out = String::with_capacity(digits.len() + digits.len() / 3 + 1);
    if n < 0 {
        out.push('-');
    }
    for (i, digit) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i).is_multiple_of(3) {
            out.push(',');
        }
        out.push(digit);
    }
    out
}
