//! The key of a cached answer: a 128-bit hash of who may share it, the
//! endpoint, the model that serves it, and the request in canonical form.
//!
//! The canonical form is a Merkle digest computed in one pass over the
//! client's JSON, with no tree built: a string hashes its decoded text (so
//! `"\u0041"` is `"A"`), an integral number its integer (so `1` is `1.0`),
//! an array its children's digests in order, and an object its `(key,
//! value)` digest pairs sorted — so key order and whitespace do not count,
//! and neither do the top-level fields that cannot change the answer
//! (`user`, `metadata`, `stream`, …).

use std::fmt;

use serde::de::{self, DeserializeSeed, Deserializer, IgnoredAny, MapAccess, SeqAccess, Visitor};
use xxhash_rust::xxh3::{Xxh3, xxh3_128, xxh3_128_with_seed};

/// The key of one cached answer.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Key(pub u128);

impl Key {
    /// The key of a request: `scope` (who may share the answer), `endpoint`,
    /// the `model` that serves it, the body's canonical digest, and `extra`
    /// (headers that change the answer, such as `anthropic-beta`).
    pub fn new(scope: Scope<'_>, endpoint: &str, model: &str, body: u128, extra: &[u8]) -> Self {
        let mut h = Xxh3::new();
        h.update(&[scope.kind]);
        for part in [scope.id.as_bytes(), endpoint.as_bytes(), model.as_bytes()] {
            h.update(&(part.len() as u64).to_le_bytes());
            h.update(part);
        }
        h.update(&body.to_le_bytes());
        h.update(extra);
        Self(h.digest128())
    }

    /// The key as 32 hex digits (Redis keys).
    pub fn hex(&self) -> String {
        format!("{:032x}", self.0)
    }
}

/// Who may share a cached answer: a kind (a virtual key, a config key, a
/// team, everyone, …) and an id within it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Scope<'a> {
    /// The kind of sharer, a byte of its own.
    pub kind: u8,
    /// The sharer within its kind.
    pub id: &'a str,
}

/// What the digest of a request found besides its hash.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Digest {
    /// The canonical hash of the body, ignored fields left out.
    pub hash: u128,
    /// The top-level `temperature`, when a number.
    pub temperature: Option<f64>,
    /// A top-level `seed` other than `null` was given.
    pub seeded: bool,
    /// The top-level `n` (answers asked for), when a number.
    pub choices: Option<f64>,
}

/// The canonical digest of a JSON request `body`, leaving out the top-level
/// fields named in `ignored`.
pub fn digest(body: &[u8], ignored: &[&str]) -> Result<Digest, serde_json::Error> {
    let mut de = serde_json::Deserializer::from_slice(body);
    let digest = de.deserialize_map(Top { ignored })?;
    de.end()?;
    Ok(digest)
}

/// Seeds of the leaves, so that values of different types never share a digest.
const STRING: u64 = 1;
const KEY: u64 = 2;
const INTEGER: u8 = b'i';
const FLOAT: u8 = b'f';

fn integer(v: i128) -> u128 {
    let mut bytes = [0u8; 17];
    bytes[0] = INTEGER;
    bytes[1..].copy_from_slice(&v.to_le_bytes());
    xxh3_128(&bytes)
}

fn float(v: f64) -> u128 {
    // 2^63: integral floats below it hash as the integer they are.
    const LIMIT: f64 = 9_223_372_036_854_775_808.0;
    if v.fract() == 0.0 && v.abs() < LIMIT {
        #[allow(clippy::cast_possible_truncation)]
        return integer(i128::from(v as i64));
    }
    let mut bytes = [0u8; 9];
    bytes[0] = FLOAT;
    bytes[1..].copy_from_slice(&v.to_bits().to_le_bytes());
    xxh3_128(&bytes)
}

/// The top-level object: fields in `ignored` are skipped, and the facts
/// the cache's policy reads are noted on the way.
struct Top<'i> {
    ignored: &'i [&'i str],
}

/// What a top-level key is to the digest.
enum TopKey {
    Ignored,
    Temperature(u128),
    Seed(u128),
    Choices(u128),
    Other(u128),
}

struct TopKeySeed<'i> {
    ignored: &'i [&'i str],
}

impl<'de> DeserializeSeed<'de> for TopKeySeed<'_> {
    type Value = TopKey;

    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<TopKey, D::Error> {
        d.deserialize_str(self)
    }
}

impl Visitor<'_> for TopKeySeed<'_> {
    type Value = TopKey;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a field name")
    }

    fn visit_str<E: de::Error>(self, v: &str) -> Result<TopKey, E> {
        if self.ignored.contains(&v) {
            return Ok(TopKey::Ignored);
        }
        let hash = xxh3_128_with_seed(v.as_bytes(), KEY);
        Ok(match v {
            "temperature" => TopKey::Temperature(hash),
            "seed" => TopKey::Seed(hash),
            "n" => TopKey::Choices(hash),
            _ => TopKey::Other(hash),
        })
    }
}

impl<'de> Visitor<'de> for Top<'_> {
    type Value = Digest;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a JSON object")
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Digest, A::Error> {
        let mut pairs = Pairs::default();
        let mut digest = Digest {
            hash: 0,
            temperature: None,
            seeded: false,
            choices: None,
        };
        let seed = || TopKeySeed {
            ignored: self.ignored,
        };
        while let Some(key) = map.next_key_seed(seed())? {
            let key = match key {
                TopKey::Ignored => {
                    map.next_value::<IgnoredAny>()?;
                    continue;
                }
                TopKey::Temperature(key) => {
                    let (value, number) = map.next_value_seed(Noting)?;
                    digest.temperature = number;
                    pairs.push(key, value);
                    continue;
                }
                TopKey::Choices(key) => {
                    let (value, number) = map.next_value_seed(Noting)?;
                    digest.choices = number;
                    pairs.push(key, value);
                    continue;
                }
                TopKey::Seed(key) => {
                    let value = map.next_value_seed(Value)?;
                    digest.seeded = value != null();
                    pairs.push(key, value);
                    continue;
                }
                TopKey::Other(key) => key,
            };
            let value = map.next_value_seed(Value)?;
            pairs.push(key, value);
        }
        digest.hash = pairs.finish();
        Ok(digest)
    }
}

fn null() -> u128 {
    xxh3_128(b"n")
}

/// A value's digest, and the number it is, when it is one.
struct Noting;

impl<'de> DeserializeSeed<'de> for Noting {
    type Value = (u128, Option<f64>);

    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<Self::Value, D::Error> {
        d.deserialize_any(NotingVisitor)
    }
}

struct NotingVisitor;

impl<'de> Visitor<'de> for NotingVisitor {
    type Value = (u128, Option<f64>);

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a JSON value")
    }

    #[allow(clippy::cast_precision_loss)]
    fn visit_i64<E: de::Error>(self, v: i64) -> Result<Self::Value, E> {
        Ok((integer(i128::from(v)), Some(v as f64)))
    }

    #[allow(clippy::cast_precision_loss)]
    fn visit_u64<E: de::Error>(self, v: u64) -> Result<Self::Value, E> {
        Ok((integer(i128::from(v)), Some(v as f64)))
    }

    fn visit_f64<E: de::Error>(self, v: f64) -> Result<Self::Value, E> {
        Ok((float(v), Some(v)))
    }

    fn visit_bool<E: de::Error>(self, v: bool) -> Result<Self::Value, E> {
        Ok((ValueVisitor.visit_bool(v)?, None))
    }

    fn visit_str<E: de::Error>(self, v: &str) -> Result<Self::Value, E> {
        Ok((ValueVisitor.visit_str(v)?, None))
    }

    fn visit_unit<E: de::Error>(self) -> Result<Self::Value, E> {
        Ok((ValueVisitor.visit_unit()?, None))
    }

    fn visit_seq<A: SeqAccess<'de>>(self, seq: A) -> Result<Self::Value, A::Error> {
        Ok((ValueVisitor.visit_seq(seq)?, None))
    }

    fn visit_map<A: MapAccess<'de>>(self, map: A) -> Result<Self::Value, A::Error> {
        Ok((ValueVisitor.visit_map(map)?, None))
    }
}

/// Any value's digest.
struct Value;

impl<'de> DeserializeSeed<'de> for Value {
    type Value = u128;

    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<u128, D::Error> {
        d.deserialize_any(ValueVisitor)
    }
}

/// An object key's digest.
struct KeySeed;

impl<'de> DeserializeSeed<'de> for KeySeed {
    type Value = u128;

    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<u128, D::Error> {
        d.deserialize_str(KeyVisitor)
    }
}

struct KeyVisitor;

impl Visitor<'_> for KeyVisitor {
    type Value = u128;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a field name")
    }

    fn visit_str<E: de::Error>(self, v: &str) -> Result<u128, E> {
        Ok(xxh3_128_with_seed(v.as_bytes(), KEY))
    }
}

struct ValueVisitor;

impl<'de> Visitor<'de> for ValueVisitor {
    type Value = u128;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a JSON value")
    }

    fn visit_bool<E: de::Error>(self, v: bool) -> Result<u128, E> {
        Ok(xxh3_128(if v { b"t" } else { b"f" }))
    }

    fn visit_i64<E: de::Error>(self, v: i64) -> Result<u128, E> {
        Ok(integer(i128::from(v)))
    }

    fn visit_u64<E: de::Error>(self, v: u64) -> Result<u128, E> {
        Ok(integer(i128::from(v)))
    }

    fn visit_f64<E: de::Error>(self, v: f64) -> Result<u128, E> {
        Ok(float(v))
    }

    fn visit_str<E: de::Error>(self, v: &str) -> Result<u128, E> {
        Ok(xxh3_128_with_seed(v.as_bytes(), STRING))
    }

    fn visit_unit<E: de::Error>(self) -> Result<u128, E> {
        Ok(null())
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<u128, A::Error> {
        let mut h = Xxh3::new();
        h.update(b"[");
        while let Some(item) = seq.next_element_seed(Value)? {
            h.update(&item.to_le_bytes());
        }
        Ok(h.digest128())
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<u128, A::Error> {
        let mut pairs = Pairs::default();
        while let Some(key) = map.next_key_seed(KeySeed)? {
            let value = map.next_value_seed(Value)?;
            pairs.push(key, value);
        }
        Ok(pairs.finish())
    }
}

/// An object's `(key, value)` digests, on the stack while they are few.
#[derive(Default)]
struct Pairs {
    inline: [(u128, u128); 16],
    len: usize,
    spilled: Vec<(u128, u128)>,
}

impl Pairs {
    fn push(&mut self, key: u128, value: u128) {
        if self.len < self.inline.len() {
            self.inline[self.len] = (key, value);
            self.len += 1;
        } else {
            self.spilled.push((key, value));
        }
    }

    /// The object's digest: its pairs sorted, then hashed.
    fn finish(mut self) -> u128 {
        let pairs: &mut [(u128, u128)] = if self.spilled.is_empty() {
            &mut self.inline[..self.len]
        } else {
            self.spilled.extend_from_slice(&self.inline[..self.len]);
            &mut self.spilled
        };
        pairs.sort_unstable();
        let mut h = Xxh3::new();
        h.update(b"{");
        for (key, value) in pairs.iter() {
            h.update(&key.to_le_bytes());
            h.update(&value.to_le_bytes());
        }
        h.digest128()
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    const CHAT: [&str; 3] = ["model", "user", "stream"];

    fn hash(body: &str) -> u128 {
        digest(body.as_bytes(), &CHAT).unwrap().hash
    }

    #[test]
    fn key_order_whitespace_escapes_and_number_forms_do_not_count() {
        let a = hash(r#"{"model":"m","messages":[{"role":"user","content":"A"}],"temperature":1}"#);
        let b = hash(
            r#"{ "temperature" : 1.0,
                 "messages" : [ { "content" : "\u0041", "role" : "user" } ], "model": "other" }"#,
        );
        assert_eq!(a, b);
    }

    #[test]
    fn ignored_fields_do_not_count_and_others_do() {
        let base = hash(r#"{"messages":[],"temperature":0}"#);
        assert_eq!(
            base,
            hash(r#"{"messages":[],"temperature":0,"user":"u1","stream":true}"#)
        );
        assert_ne!(base, hash(r#"{"messages":[],"temperature":0.5}"#));
        assert_ne!(base, hash(r#"{"messages":[],"temperature":0,"top_p":1}"#));
        assert_ne!(base, hash(r#"{"messages":[{}],"temperature":0}"#));
        // An ignored name deeper down counts: only the top level is left out.
        assert_ne!(hash(r#"{"a":{"user":1}}"#), hash(r#"{"a":{"user":2}}"#));
    }

    #[test]
    fn values_of_different_types_and_places_differ() {
        let values = [
            r#"{"a":"1"}"#,
            r#"{"a":1}"#,
            r#"{"a":1.5}"#,
            r#"{"a":true}"#,
            r#"{"a":null}"#,
            r#"{"a":[]}"#,
            r#"{"a":{}}"#,
            r#"{"a":["1"]}"#,
            r#"{"b":"1"}"#,
            r#"{"a":["x","y"]}"#,
            r#"{"a":["y","x"]}"#,
            r#"{"a":{"x":"y"}}"#,
            r#"{"a":{"y":"x"}}"#,
        ];
        let hashes: std::collections::HashSet<u128> = values.iter().map(|v| hash(v)).collect();
        assert_eq!(hashes.len(), values.len());
    }

    #[test]
    fn the_policy_facts_are_noted() {
        let d = digest(br#"{"temperature":0,"seed":7,"n":2}"#, &CHAT).unwrap();
        assert_eq!(
            (d.temperature, d.seeded, d.choices),
            (Some(0.0), true, Some(2.0))
        );
        let d = digest(br#"{"seed":null}"#, &CHAT).unwrap();
        assert_eq!((d.temperature, d.seeded, d.choices), (None, false, None));
    }

    #[test]
    fn an_object_of_many_fields_is_canonical_too() {
        let fields: Vec<String> = (0..40).map(|i| format!("\"f{i}\":{i}")).collect();
        let forward = format!("{{{}}}", fields.join(","));
        let backward = format!(
            "{{{}}}",
            fields.iter().rev().cloned().collect::<Vec<_>>().join(",")
        );
        assert_eq!(hash(&forward), hash(&backward));
    }

    #[test]
    fn scopes_endpoints_and_models_make_different_keys() {
        let a = Scope {
            kind: b'k',
            id: "1",
        };
        let b = Scope {
            kind: b'k',
            id: "2",
        };
        let key = Key::new(a, "chat", "m", 7, b"");
        assert_ne!(key, Key::new(b, "chat", "m", 7, b""));
        assert_ne!(
            key,
            Key::new(
                Scope {
                    kind: b't',
                    id: "1"
                },
                "chat",
                "m",
                7,
                b""
            )
        );
        assert_ne!(key, Key::new(a, "completions", "m", 7, b""));
        assert_ne!(key, Key::new(a, "chat", "n", 7, b""));
        assert_ne!(key, Key::new(a, "chat", "m", 7, b"beta"));
        // Lengths are hashed: parts cannot slide into each other.
        assert_ne!(
            Key::new(
                Scope {
                    kind: b'k',
                    id: "1c"
                },
                "hat",
                "m",
                7,
                b""
            ),
            key
        );
    }

    #[test]
    fn not_an_object_is_an_error() {
        assert!(digest(b"[1]", &CHAT).is_err());
        assert!(digest(b"{\"a\":1} x", &CHAT).is_err());
    }
}
