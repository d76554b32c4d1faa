//! Numbers, money, durations and times as the pages show them.

use crate::keys::admin::views::rfc3339;

/// Micro-USD as dollars: cents above a dollar, four decimals below.
pub fn usd(micros: i64) -> String {
    let dollars = micros as f64 / 1e6;
    if micros == 0 {
        "$0".to_owned()
    } else if dollars.abs() >= 1.0 {
        let cents = (dollars * 100.0).round() as i64;
        let sign = if cents < 0 { "-" } else { "" };
        format!(
            "{sign}${}.{:02}",
            count(cents.abs() / 100),
            cents.abs() % 100
        )
    } else if dollars.abs() >= 0.01 {
        format!("${dollars:.4}")
    } else {
        format!("${dollars:.6}")
    }
}

/// A count with thousands separated: `1,234,567`.
pub fn count(n: i64) -> String {
    crate::usage::report::thousands(n)
}

/// Microseconds for people: `840 µs`, `12.3 ms`, `2.41 s`.
pub fn micros(us: i64) -> String {
    if us < 1_000 {
        format!("{us} µs")
    } else if us < 1_000_000 {
        format!("{:.1} ms", us as f64 / 1e3)
    } else {
        format!("{:.2} s", us as f64 / 1e6)
    }
}

/// A share as a percentage: `2.5 %`.
pub fn percent(part: i64, whole: i64) -> String {
    if whole == 0 {
        return "–".to_owned();
    }
    format!("{:.1} %", part as f64 * 100.0 / whole as f64)
}

/// Unix milliseconds as `2026-12-07 03:45:12` (UTC).
pub fn time_ms(ms: i64) -> String {
    rfc3339(ms.div_euclid(1000))
        .trim_end_matches('Z')
        .replacen('T', " ", 1)
}

/// The value at quantile `q` (0..=1) of `sorted` (ascending), nearest rank.
pub fn quantile(sorted: &[i64], q: f64) -> Option<i64> {
    if sorted.is_empty() {
        return None;
    }
    let rank = ((q * sorted.len() as f64).ceil() as usize).clamp(1, sorted.len());
    sorted.get(rank - 1).copied()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn numbers_read_as_people_write_them() {
        assert_eq!(count(1_234_567), "1,234,567");
        assert_eq!(count(-999), "-999");
        assert_eq!(count(1_000), "1,000");
        assert_eq!(usd(0), "$0");
        assert_eq!(usd(1_234_567_890), "$1,234.57");
        assert_eq!(usd(42_000), "$0.0420");
        assert_eq!(usd(32), "$0.000032");
        assert_eq!(usd(-2_500_000), "-$2.50");
        assert_eq!(micros(840), "840 µs");
        assert_eq!(micros(12_340), "12.3 ms");
        assert_eq!(micros(2_410_000), "2.41 s");
        assert_eq!(percent(1, 40), "2.5 %");
        assert_eq!(percent(1, 0), "–");
        assert_eq!(time_ms(1_796_515_200_123), "2026-12-06 00:00:00");
        let sorted = [1, 2, 3, 4, 5, 6, 7, 8, 9, 10];
        assert_eq!(quantile(&sorted, 0.5), Some(5));
        assert_eq!(quantile(&sorted, 0.95), Some(10));
        assert_eq!(quantile(&[], 0.5), None);
    }
}
