//! The `x-ratelimit-*` headers, as OpenAI sends them, and
//! `x-switchyard-budget-remaining`.
//!
//! `x-ratelimit-limit-requests: 60`, `x-ratelimit-remaining-requests: 59`,
//! `x-ratelimit-reset-requests: 1s` (the time until the limit is whole again,
//! written like Go's durations: `17ms`, `8.64s`, `6m0s`, `1h2m3s`), and the
//! same three for `-tokens`. The budget's remainder is in USD, six decimals.

use std::time::Duration;

use axum::http::{HeaderMap, HeaderName, HeaderValue};

use super::Snapshot;
use super::gcra::Window;

const LIMIT_REQUESTS: HeaderName = HeaderName::from_static("x-ratelimit-limit-requests");
const REMAINING_REQUESTS: HeaderName = HeaderName::from_static("x-ratelimit-remaining-requests");
const RESET_REQUESTS: HeaderName = HeaderName::from_static("x-ratelimit-reset-requests");
const LIMIT_TOKENS: HeaderName = HeaderName::from_static("x-ratelimit-limit-tokens");
const REMAINING_TOKENS: HeaderName = HeaderName::from_static("x-ratelimit-remaining-tokens");
const RESET_TOKENS: HeaderName = HeaderName::from_static("x-ratelimit-reset-tokens");
const BUDGET_REMAINING: HeaderName = HeaderName::from_static("x-switchyard-budget-remaining");

/// Writes `snapshot`'s headers into `headers`.
pub fn write(snapshot: &Snapshot, headers: &mut HeaderMap) {
    let trios = [
        (
            snapshot.requests,
            [LIMIT_REQUESTS, REMAINING_REQUESTS, RESET_REQUESTS],
        ),
        (
            snapshot.tokens,
            [LIMIT_TOKENS, REMAINING_TOKENS, RESET_TOKENS],
        ),
    ];
    for (window, [limit, remaining, reset]) in trios {
        if let Some(Window {
            limit: l,
            remaining: r,
            reset: t,
        }) = window
        {
            headers.insert(limit, HeaderValue::from(l));
            headers.insert(remaining, HeaderValue::from(r));
            if let Ok(value) = HeaderValue::from_maybe_shared(bytes::Bytes::from(go_duration(t))) {
                headers.insert(reset, value);
            }
        }
    }
    if let Some(micros) = snapshot.budget_remaining
        && let Ok(value) = HeaderValue::from_maybe_shared(bytes::Bytes::from(usd(micros.max(0))))
    {
        headers.insert(BUDGET_REMAINING, value);
    }
}

/// Micro-USD as USD with six decimals.
fn usd(micros: i64) -> String {
    format!("{}.{:06}", micros / 1_000_000, micros % 1_000_000)
}

/// A duration as Go writes it: `0s`, `17ms`, `8.64s`, `6m0s`, `1h2m3s`.
fn go_duration(d: Duration) -> String {
    let ms = d.as_millis();
    if ms == 0 {
        return "0s".to_owned();
    }
    if ms < 1000 {
        return format!("{ms}ms");
    }
    let secs = d.as_secs();
    let fraction = |ms: u128| {
        let text = format!("{:03}", ms % 1000);
        let text = text.trim_end_matches('0');
        if text.is_empty() {
            String::new()
        } else {
            format!(".{text}")
        }
    };
    if secs < 60 {
        return format!("{secs}{}s", fraction(ms));
    }
    let (h, m, s) = (secs / 3600, secs % 3600 / 60, secs % 60);
    let s = format!("{s}{}s", fraction(ms));
    if h > 0 {
        format!("{h}h{m}m{s}")
    } else {
        format!("{m}m{s}")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_read_as_openai_writes_them() {
        for (ms, text) in [
            (0, "0s"),
            (17, "17ms"),
            (1000, "1s"),
            (8640, "8.64s"),
            (59_999, "59.999s"),
            (360_000, "6m0s"),
            (3_723_000, "1h2m3s"),
            (61_500, "1m1.5s"),
        ] {
            assert_eq!(go_duration(Duration::from_millis(ms)), text);
        }
    }

    #[test]
    fn headers_carry_the_tightest_limits_and_the_budget() {
        let snapshot = Snapshot {
            requests: Some(Window {
                limit: 60,
                remaining: 59,
                reset: Duration::from_secs(1),
            }),
            tokens: None,
            budget_remaining: Some(12_345_678),
        };
        let mut headers = HeaderMap::new();
        write(&snapshot, &mut headers);
        assert_eq!(headers["x-ratelimit-limit-requests"], "60");
        assert_eq!(headers["x-ratelimit-remaining-requests"], "59");
        assert_eq!(headers["x-ratelimit-reset-requests"], "1s");
        assert!(!headers.contains_key("x-ratelimit-limit-tokens"));
        assert_eq!(headers["x-switchyard-budget-remaining"], "12.345678");
        assert_eq!(usd(5), "0.000005");
    }
}
