//! Durations (`250ms`, `10s`, `5m`) and sizes (`10MiB`) as the config writes them.

use std::fmt;
use std::time::Duration;

use serde::Deserialize;
use serde::de::{self, Deserializer, Visitor};

/// A duration read from `250ms`, `10s`, `5m`, `1h` (or a bare number of seconds),
/// at most [`MAX_DURATION`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct HumanDuration(pub Duration);

/// The longest duration a config may set: a year. Every timeout, interval and
/// ejection is added to the clock, which must not overflow.
pub const MAX_DURATION: Duration = Duration::from_secs(365 * 24 * 3600);

/// `duration` if it is at most [`MAX_DURATION`].
fn bounded<E: de::Error>(duration: Duration, text: &str) -> Result<HumanDuration, E> {
    if duration > MAX_DURATION {
        return Err(E::custom(format!(
            "the duration `{text}` is longer than a year"
        )));
    }
    Ok(HumanDuration(duration))
}

impl<'de> Deserialize<'de> for HumanDuration {
    fn deserialize<D: Deserializer<'de>>(de: D) -> Result<Self, D::Error> {
        struct V;
        impl Visitor<'_> for V {
            type Value = HumanDuration;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a duration such as `250ms`, `10s` or `5m`")
            }
            fn visit_u64<E: de::Error>(self, v: u64) -> Result<HumanDuration, E> {
                bounded(Duration::from_secs(v), &v.to_string())
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<HumanDuration, E> {
                let duration = humantime::parse_duration(v.trim()).map_err(|e| {
                    E::custom(format!(
                        "invalid duration `{v}`: {e} (write e.g. `250ms`, `10s`, `5m`)"
                    ))
                })?;
                bounded(duration, v)
            }
        }
        de.deserialize_any(V)
    }
}

/// When a hedge is sent: after a fixed wait, or after a percentile of the
/// deployment's recent times to first byte (`p95`).
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum HedgeAfter {
    /// This long.
    Fixed(Duration),
    /// The deployment's recent quantile `q` (0–1) of its times to first byte.
    Quantile(f64),
}

impl<'de> Deserialize<'de> for HedgeAfter {
    fn deserialize<D: Deserializer<'de>>(de: D) -> Result<Self, D::Error> {
        struct V;
        impl Visitor<'_> for V {
            type Value = HedgeAfter;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a duration such as `500ms`, or a percentile such as `p95`")
            }
            fn visit_u64<E: de::Error>(self, v: u64) -> Result<HedgeAfter, E> {
                bounded(Duration::from_secs(v), &v.to_string()).map(|d| HedgeAfter::Fixed(d.0))
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<HedgeAfter, E> {
                let text = v.trim();
                if let Some(percent) = text.strip_prefix('p') {
                    return match percent.parse::<f64>() {
                        Ok(p) if (50.0..100.0).contains(&p) => Ok(HedgeAfter::Quantile(p / 100.0)),
                        _ => Err(E::custom(format!(
                            "invalid percentile `{v}` (write e.g. `p90`, `p95`, `p99`: from p50 to below p100)"
                        ))),
                    };
                }
                HumanDuration::deserialize(de::value::StrDeserializer::<E>::new(text))
                    .map(|d| HedgeAfter::Fixed(d.0))
            }
        }
        de.deserialize_any(V)
    }
}

/// A size in bytes read from `10MiB`, `512KB`, `1GiB` or a bare number of bytes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ByteSize(pub u64);

impl ByteSize {
    fn parse(text: &str) -> Option<u64> {
        let text = text.trim();
        let split = text
            .find(|c: char| !(c.is_ascii_digit() || c == '.'))
            .unwrap_or(text.len());
        let (number, unit) = text.split_at(split);
        let number: f64 = number.parse().ok()?;
        let factor: u64 = match unit.trim().to_ascii_lowercase().as_str() {
            "" | "b" => 1,
            "kb" => 1_000,
            "kib" | "k" => 1 << 10,
            "mb" => 1_000_000,
            "mib" | "m" => 1 << 20,
            "gb" => 1_000_000_000,
            "gib" | "g" => 1 << 30,
            _ => return None,
        };
        let bytes = number * factor as f64;
        (bytes.is_finite() && bytes >= 0.0 && bytes < u64::MAX as f64).then_some(bytes as u64)
    }
}

impl<'de> Deserialize<'de> for ByteSize {
    fn deserialize<D: Deserializer<'de>>(de: D) -> Result<Self, D::Error> {
        struct V;
        impl Visitor<'_> for V {
            type Value = ByteSize;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a size such as `10MiB` or `512KB`")
            }
            fn visit_u64<E: de::Error>(self, v: u64) -> Result<ByteSize, E> {
                Ok(ByteSize(v))
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<ByteSize, E> {
                ByteSize::parse(v).map(ByteSize).ok_or_else(|| {
                    E::custom(format!("invalid size `{v}` (write e.g. `10MiB`, `512KB`)"))
                })
            }
        }
        de.deserialize_any(V)
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn parses_sizes() {
        assert_eq!(ByteSize::parse("10MiB"), Some(10 << 20));
        assert_eq!(ByteSize::parse("512 KB"), Some(512_000));
        assert_eq!(ByteSize::parse("1.5GiB"), Some(3 << 29));
        assert_eq!(ByteSize::parse("42"), Some(42));
        assert_eq!(ByteSize::parse("ten"), None);
        assert_eq!(ByteSize::parse("10 parsecs"), None);
    }
}
