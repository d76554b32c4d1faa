//! The canonical digest of a JSON body, read straight from its bytes.
//!
//! A Merkle digest with no tree built: a string hashes its decoded text (so
//! `"\u0041"` is `"A"`), an integral number its integer (so `1` is `1.0`),
//! an array its children's digests in order, an object its `(key, value)`
//! digest pairs sorted — so key order and whitespace do not count.
//!
//! The body reaching the cache has passed the parse stage, which read it as
//! JSON (its UTF-8 included), so this reader is built for speed on valid
//! input: a string is found with one vectorised search for its closing quote
//! and its bytes hashed as they stand unless it holds an escape. Input that
//! is not a JSON object still gets an error, never a panic; a body that reads
//! as JSON here but not to `serde_json` never gets this far.

use std::borrow::Cow;

use xxhash_rust::xxh3::{xxh3_128, xxh3_128_with_seed};

/// How deep arrays and objects may nest (`serde_json`'s limit too).
const MAX_DEPTH: usize = 128;

/// Seeds of the leaves and containers, so that values of different types
/// never share a digest.
const STRING: u64 = 1;
const KEY: u64 = 2;
const INTEGER: u64 = 3;
const FLOAT: u64 = 4;
const ARRAY: u64 = 5;
const OBJECT: u64 = 6;
const LITERAL: u64 = 7;

/// A body's canonical digest, and the facts the cache's policy reads.
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

/// The body is not a JSON object.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Malformed;

/// The canonical digest of a JSON object `body`, leaving out the top-level
/// fields named in `ignored`.
pub fn digest(body: &[u8], ignored: &[&str]) -> Result<Digest, Malformed> {
    let mut reader = Reader {
        bytes: body,
        at: 0,
        pairs: Vec::new(),
    };
    reader.space();
    let (mut temperature, mut seeded, mut choices) = (None, false, None);
    let hash = reader.object(1, |reader, name| {
        let at = reader.at;
        let value = reader.value(1)?;
        if ignored.iter().any(|field| field.as_bytes() == name) {
            return Ok(None);
        }
        let text = &body[at..reader.at];
        match name {
            b"temperature" => temperature = number(text),
            b"n" => choices = number(text),
            b"seed" => seeded = text != b"null",
            _ => {}
        }
        Ok(Some(value))
    })?;
    reader.space();
    if reader.at != body.len() {
        return Err(Malformed);
    }
    Ok(Digest {
        hash,
        temperature,
        seeded,
        choices,
    })
}

/// A number's value, when `text` is one.
fn number(text: &[u8]) -> Option<f64> {
    std::str::from_utf8(text).ok()?.parse().ok()
}

/// The digest of a leaf's bytes, `seed` its type. A seeded hash of more than
/// 240 bytes would derive a secret of its own on every call, so a long leaf
/// is hashed unseeded and its hash then seeded.
fn leaf(seed: u64, bytes: &[u8]) -> u128 {
    if bytes.len() <= 240 {
        xxh3_128_with_seed(bytes, seed)
    } else {
        xxh3_128_with_seed(&xxh3_128(bytes).to_le_bytes(), seed)
    }
}

/// Two digests made one.
fn combine(seed: u64, a: u128, b: u128) -> u128 {
    let mut bytes = [0u8; 32];
    bytes[..16].copy_from_slice(&a.to_le_bytes());
    bytes[16..].copy_from_slice(&b.to_le_bytes());
    xxh3_128_with_seed(&bytes, seed)
}

fn integer(v: i128) -> u128 {
    xxh3_128_with_seed(&v.to_le_bytes(), INTEGER)
}

fn float(v: f64) -> u128 {
    // 2^127: integral floats below it hash as the integer they are.
    const LIMIT: f64 = 170_141_183_460_469_231_731_687_303_715_884_105_728.0;
    if v.fract() == 0.0 && v.abs() < LIMIT {
        #[allow(clippy::cast_possible_truncation)]
        return integer(v as i128);
    }
    xxh3_128_with_seed(&v.to_bits().to_le_bytes(), FLOAT)
}

/// A cursor over the body, and the `(key, value)` pairs of the objects
/// still open (each object's pairs on top of its parent's).
struct Reader<'a> {
    bytes: &'a [u8],
    at: usize,
    pairs: Vec<(u128, u128)>,
}

impl<'a> Reader<'a> {
    fn space(&mut self) {
        while let Some(b' ' | b'\t' | b'\n' | b'\r') = self.bytes.get(self.at) {
            self.at += 1;
        }
    }

    fn eat(&mut self, byte: u8) -> bool {
        let found = self.bytes.get(self.at) == Some(&byte);
        self.at += usize::from(found);
        found
    }

    fn expect(&mut self, byte: u8) -> Result<(), Malformed> {
        if self.eat(byte) {
            Ok(())
        } else {
            Err(Malformed)
        }
    }

    /// The digest of the value at the cursor, `depth` containers deep.
    fn value(&mut self, depth: usize) -> Result<u128, Malformed> {
        match self.bytes.get(self.at).ok_or(Malformed)? {
            b'"' => Ok(leaf(STRING, &self.string()?)),
            b'[' => self.array(depth + 1),
            b'{' => self.object(depth + 1, |reader, _| reader.value(depth + 1).map(Some)),
            b't' => self.literal(b"true"),
            b'f' => self.literal(b"false"),
            b'n' => self.literal(b"null"),
            b'-' | b'0'..=b'9' => self.number(),
            _ => Err(Malformed),
        }
    }

    /// The digest of the object at the cursor, `depth` containers deep:
    /// `member` reads each member's value after its name, and gives its
    /// digest, or `None` to leave the member out.
    fn object(
        &mut self,
        depth: usize,
        mut member: impl FnMut(&mut Self, &[u8]) -> Result<Option<u128>, Malformed>,
    ) -> Result<u128, Malformed> {
        if depth > MAX_DEPTH {
            return Err(Malformed);
        }
        self.expect(b'{')?;
        let start = self.pairs.len();
        self.space();
        if !self.eat(b'}') {
            loop {
                self.space();
                let name = self.string()?;
                self.space();
                self.expect(b':')?;
                self.space();
                if let Some(value) = member(self, &name)? {
                    self.pairs.push((leaf(KEY, &name), value));
                }
                self.space();
                if self.eat(b'}') {
                    break;
                }
                self.expect(b',')?;
            }
        }
        // Its pairs, sorted, then taken off the stack.
        let pairs = &mut self.pairs[start..];
        pairs.sort_unstable();
        let mut hash = xxh3_128_with_seed(&[], OBJECT);
        for &(name, value) in pairs.iter() {
            hash = combine(OBJECT, combine(OBJECT, hash, name), value);
        }
        self.pairs.truncate(start);
        Ok(hash)
    }

    fn array(&mut self, depth: usize) -> Result<u128, Malformed> {
        if depth > MAX_DEPTH {
            return Err(Malformed);
        }
        self.at += 1;
        let mut hash = xxh3_128_with_seed(&[], ARRAY);
        self.space();
        if self.eat(b']') {
            return Ok(hash);
        }
        loop {
            self.space();
            hash = combine(ARRAY, hash, self.value(depth)?);
            self.space();
            if self.eat(b']') {
                return Ok(hash);
            }
            self.expect(b',')?;
        }
    }

    fn literal(&mut self, word: &[u8]) -> Result<u128, Malformed> {
        if !self.bytes[self.at..].starts_with(word) {
            return Err(Malformed);
        }
        self.at += word.len();
        Ok(xxh3_128_with_seed(word, LITERAL))
    }

    fn number(&mut self) -> Result<u128, Malformed> {
        let start = self.at;
        let mut integral = true;
        while let Some(&byte) = self.bytes.get(self.at) {
            match byte {
                b'0'..=b'9' | b'-' | b'+' => {}
                b'.' | b'e' | b'E' => integral = false,
                _ => break,
            }
            self.at += 1;
        }
        let text = std::str::from_utf8(&self.bytes[start..self.at]).map_err(|_| Malformed)?;
        if integral && let Ok(v) = text.parse::<i128>() {
            return Ok(integer(v));
        }
        text.parse::<f64>()
            .ok()
            .filter(|v| v.is_finite())
            .map(float)
            .ok_or(Malformed)
    }

    /// The decoded text of the string at the cursor.
    fn string(&mut self) -> Result<Cow<'a, [u8]>, Malformed> {
        let bytes = self.bytes;
        if bytes.get(self.at) != Some(&b'"') {
            return Err(Malformed);
        }
        let start = self.at;
        let mut at = start + 1;
        let mut escaped = false;
        loop {
            let found = memchr::memchr2(b'"', b'\\', &bytes[at..]).ok_or(Malformed)?;
            at += found;
            if bytes[at] == b'"' {
                break;
            }
            // A backslash and the byte it escapes (a `\u` escape's four hex
            // digits hold no quote or backslash).
            escaped = true;
            at += 2;
            if at > bytes.len() {
                return Err(Malformed);
            }
        }
        self.at = at + 1;
        if escaped {
            serde_json::from_slice::<String>(&bytes[start..self.at])
                .map(|text| Cow::Owned(text.into_bytes()))
                .map_err(|_| Malformed)
        } else {
            Ok(Cow::Borrowed(&bytes[start + 1..at]))
        }
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
        let a =
            hash(r#"{"model":"m","messages":[{"role":"user","content":"A\"b"}],"temperature":1}"#);
        let b = hash(
            r#"{ "temperature" : 1.0,
                 "messages" : [ { "content" : "\u0041\u0022b", "role" : "user" } ], "model": "other" }"#,
        );
        assert_eq!(a, b);
        assert_eq!(hash(r#"{"a":1e2}"#), hash(r#"{"a":100}"#));
        assert_eq!(hash(r#"{"a":-0.5}"#), hash(r#"{"a":-5e-1}"#));
        assert_eq!(hash(r#"{"a\u00e9":"\u00e9"}"#), hash(r#"{"aé":"é"}"#));
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
            r#"{"a":false}"#,
            r#"{"a":null}"#,
            r#"{"a":"null"}"#,
            r#"{"a":[]}"#,
            r#"{"a":{}}"#,
            r#"{"a":[[]]}"#,
            r#"{"a":[{}]}"#,
            r#"{"a":["1"]}"#,
            r#"{"b":"1"}"#,
            r#"{"a":["x","y"]}"#,
            r#"{"a":["y","x"]}"#,
            r#"{"a":["x"],"b":["y"]}"#,
            r#"{"a":["x","y"],"b":[]}"#,
            r#"{"a":{"x":"y"}}"#,
            r#"{"a":{"y":"x"}}"#,
            r#"{"a":{"x":"y","z":1}}"#,
            r#"{"a":{"x":"y"},"z":1}"#,
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
        let d = digest(br#"{"seed":null,"temperature":"hot"}"#, &CHAT).unwrap();
        assert_eq!((d.temperature, d.seeded, d.choices), (None, false, None));
    }

    #[test]
    fn an_object_of_many_fields_is_canonical_too() {
        let fields: Vec<String> = (0..40).map(|i| format!("\"f{i}\":{i}")).collect();
        let forward = format!("{{\"o\":{{{}}}}}", fields.join(","));
        let backward = format!(
            "{{\"o\":{{{}}}}}",
            fields.iter().rev().cloned().collect::<Vec<_>>().join(",")
        );
        assert_eq!(hash(&forward), hash(&backward));
    }

    #[test]
    fn what_is_not_a_json_object_is_an_error_and_never_a_panic() {
        for bad in [
            "[1]",
            "{\"a\":1} x",
            "{\"a\":1",
            "{\"a\" 1}",
            "{\"a\":tru}",
            "{\"a\":\"x}",
            "{\"a\":\"x\\",
            "{\"a\":[1,}",
            "{\"a\":-}",
            "{\"a\":1e999}",
            "{a:1}",
            "",
            "{",
        ] {
            assert_eq!(digest(bad.as_bytes(), &CHAT), Err(Malformed), "{bad}");
        }
        let deep = format!("{{\"a\":{}{}}}", "[".repeat(200), "]".repeat(200));
        assert_eq!(digest(deep.as_bytes(), &CHAT), Err(Malformed));
        let fine = format!("{{\"a\":{}{}}}", "[".repeat(100), "]".repeat(100));
        assert!(digest(fine.as_bytes(), &CHAT).is_ok());
        // Every prefix of a valid body.
        let body = br#"{"messages":[{"role":"user","content":"h\u00e9 \"x\""}],"t":[1.5,-2,true,null,{}]}"#;
        for end in 0..body.len() {
            assert_eq!(digest(&body[..end], &CHAT), Err(Malformed));
        }
    }

    /// The same canonical form, through `serde_json`'s own reading: bodies the
    /// reference finds equal have equal digests here, and the others differ.
    #[test]
    fn it_agrees_with_a_digest_of_the_parsed_value() {
        fn reference(v: &serde_json::Value) -> String {
            match v {
                serde_json::Value::Object(map) => {
                    let mut fields: Vec<String> = map
                        .iter()
                        .map(|(k, v)| format!("{k:?}:{}", reference(v)))
                        .collect();
                    fields.sort();
                    format!("{{{}}}", fields.join(","))
                }
                serde_json::Value::Array(items) => {
                    format!(
                        "[{}]",
                        items.iter().map(reference).collect::<Vec<_>>().join(",")
                    )
                }
                serde_json::Value::Number(n) => {
                    let f = n.as_f64().unwrap();
                    if f.fract() == 0.0 {
                        format!("{}", f as i128)
                    } else {
                        format!("{f:e}")
                    }
                }
                other => other.to_string(),
            }
        }
        let bodies = [
            r#"{"messages":[{"role":"user","content":"hi"}],"temperature":0}"#,
            r#"{"temperature":0.0,"messages":[{"content":"hi","role":"user"}]}"#,
            r#"{"messages":[{"role":"user","content":"h\u0069"}],"temperature":0}"#,
            r#"{"messages":[{"role":"user","content":"hi "}],"temperature":0}"#,
            r#"{"messages":[{"role":"user","content":"hi"}],"temperature":1e-1}"#,
            r#"{"messages":[{"role":"user","content":"hi"}],"temperature":0.1}"#,
            r#"{"tools":[{"type":"function","function":{"name":"f","parameters":{"a":[1,2]}}}]}"#,
            r#"{"tools":[{"function":{"parameters":{"a":[1,2.0]},"name":"f"},"type":"function"}]}"#,
            r#"{"tools":[{"function":{"parameters":{"a":[2,1]},"name":"f"},"type":"function"}]}"#,
            r#"{"stop":["\n","\t"],"x":null,"y":false}"#,
            r#"{"stop":["\u000a","\u0009"],"y":false,"x":null}"#,
        ];
        for a in bodies {
            for b in bodies {
                let same = reference(&serde_json::from_str(a).unwrap())
                    == reference(&serde_json::from_str(b).unwrap());
                assert_eq!(hash(a) == hash(b), same, "{a} vs {b}");
            }
        }
    }
}
