//! The `x-ratelimit-*` headers, as OpenAI sends them, and
//! `x-switchyard-budget-remaining`.
//!
//! `x-ratelimit-limit-requests: 60`, `x-ratelimit-remaining-requests: 59`,
//! `x-ratelimit-reset-requests: 1s` (the time until the limit is whole again,
//! written like Go's durations: `17ms`, `8.64s`, `6m0s`, `1h2m3s`), and the
//! same three for `-tokens`. The budget's remainder is in USD, six decimals.

use std::fmt::{self, Write};
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

/// Writes `snapshot`'s headers into `headers`: room for all of them made at
/// once, the texts formatted into one reused buffer.
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
    let count = trios.iter().filter(|(w, _)| w.is_some()).count() * 3
        + usize::from(snapshot.budget_remaining.is_some());
    headers.reserve(count);
    let mut text = String::with_capacity(32);
    for (window, [limit, remaining, reset]) in trios {
        if let Some(Window {
            limit: l,
            remaining: r,
            reset: t,
        }) = window
        {
            headers.insert(limit, HeaderValue::from(l));
            headers.insert(remaining, HeaderValue::from(r));
            if let Some(value) = value(&mut text, |w| go_duration(w, t)) {
                headers.insert(reset, value);
            }
        }
    }
    if let Some(micros) = snapshot.budget_remaining
        && let Some(value) = value(&mut text, |w| usd(w, micros.max(0)))
    {
        headers.insert(BUDGET_REMAINING, value);
    }
}

/// The header value `write` writes into `text` (emptied first; kept for
/// the next value), when it is a valid one.
fn value(text: &mut String, write: impl FnOnce(&mut String) -> fmt::Result) -> Option<HeaderValue> {
    text.clear();
    write(text).ok()?;
    HeaderValue::from_str(text).ok()
}

/// Micro-USD as USD with six decimals.
fn usd(out: &mut impl Write, micros: i64) -> fmt::Result {
    write!(out, "{}.{:06}", micros / 1_000_000, micros % 1_000_000)
}

/// A duration as Go writes it: `0s`, `17ms`, `8.64s`, `6m0s`, `1h2m3s`.
fn go_duration(out: &mut impl Write, d: Duration) -> fmt::Result {
    let ms = d.as_millis();
    if ms == 0 {
        return out.write_str("0s");
    }
    if ms < 1000 {
        return write!(out, "{ms}ms");
    }
    let secs = d.as_secs();
    let (h, m, s) = (secs / 3600, secs % 3600 / 60, secs % 60);
    if h > 0 {
        write!(out, "{h}h{m}m")?;
    } else if m > 0 {
        write!(out, "{m}m")?;
    }
    write!(out, "{s}")?;
    // Milliseconds without their trailing zeros: `.5`, `.64`, `.999`.
    let mut fraction = ms % 1000;
    if fraction > 0 {
        let mut width = 3;
        while fraction.is_multiple_of(10) {
            fraction /= 10;
            width -= 1;
        }
        write!(out, ".{fraction:0width$}")?;
    }
    out.write_str("s")
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
            (1010, "1.01s"),
            (60_000, "1m0s"),
            (3_600_000, "1h0m0s"),
            (3_600_500, "1h0m0.5s"),
        ] {
            let mut out = String::new();
            go_duration(&mut out, Duration::from_millis(ms)).unwrap();
            assert_eq!(out, text);
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
        let mut out = String::new();
        usd(&mut out, 5).unwrap();
        assert_eq!(out, "0.000005");
    }
}
