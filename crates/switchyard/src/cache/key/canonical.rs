//! The canonical digest of a JSON body, read straight from its bytes.
//!
//! The body is written out once, in a canonical form, on a tape: a string
//! as its decoded text (so `"\u0041"` is `"A"`), an integral number as its
//! integer (so `1` is `1.0`), an array as its items in order, and an object
//! as one digest: the sum of its members' hashes, each member (its name and
//! its value's form) hashed once — a sum, so key order does not count, and
//! no member list is kept or sorted. Whitespace is never written. A member
//! is taken off the tape once hashed, so the tape holds only the members
//! still open.
//!
//! The body reaching the cache has passed the parse stage, which read it as
//! JSON (its UTF-8 included), so this reader is built for speed on valid
//! input: a string is found with one vectorised search for its closing quote
//! and its bytes copied as they stand unless it holds an escape. Input that
//! is not a JSON object still gets an error, never a panic; a body that reads
//! as JSON here but not to `serde_json` never gets this far.

use std::ops::Range;

use xxhash_rust::xxh3::xxh3_128_with_seed;

/// How deep arrays and objects may nest (`serde_json`'s limit too).
const MAX_DEPTH: usize = 128;

/// Seeds of a member's hash and of an object's digest.
const MEMBER: u64 = 1;
const OBJECT: u64 = 2;

/// The tags of the canonical form: every value's form starts with its tag,
/// and strings and names carry their length, so no two values' forms, nor
/// two sequences of them, are the same bytes.
const STRING: u8 = b's';
const NAME: u8 = b'k';
const INTEGER: u8 = b'i';
const FLOAT: u8 = b'f';
const TRUE: u8 = b't';
const FALSE: u8 = b'F';
const NULL: u8 = b'n';
const ARRAY: u8 = b'[';
const ARRAY_END: u8 = b']';
const OBJECT_DIGEST: u8 = b'o';

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
        tape: Vec::with_capacity(body.len()),
    };
    reader.space();
    let (mut temperature, mut seeded, mut choices) = (None, false, None);
    let hash = reader.object(1, |reader, name| {
        let at = reader.at;
        reader.value(1)?;
        let name = &reader.tape[name];
        if ignored.iter().any(|field| field.as_bytes() == name) {
            return Ok(false);
        }
        let text = &body[at..reader.at];
        match name {
            b"temperature" => temperature = number(text),
            b"n" => choices = number(text),
            b"seed" => seeded = text != b"null",
            _ => {}
        }
        Ok(true)
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

/// A cursor over the body, and the tape its canonical form is written on.
struct Reader<'a> {
    bytes: &'a [u8],
    at: usize,
    tape: Vec<u8>,
}

impl Reader<'_> {
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

    /// Writes the canonical form of the value at the cursor, `depth`
    /// containers deep.
    fn value(&mut self, depth: usize) -> Result<(), Malformed> {
        match self.bytes.get(self.at).ok_or(Malformed)? {
            b'"' => self.string(STRING).map(drop),
            b'[' => self.array(depth + 1),
            b'{' => {
                let digest = self.object(depth + 1, |reader, _| {
                    reader.value(depth + 1).map(|()| true)
                })?;
                self.tape.push(OBJECT_DIGEST);
                self.tape.extend_from_slice(&digest.to_le_bytes());
                Ok(())
            }
            b't' => self.literal(b"true", TRUE),
            b'f' => self.literal(b"false", FALSE),
            b'n' => self.literal(b"null", NULL),
            b'-' | b'0'..=b'9' => self.number(),
            _ => Err(Malformed),
        }
    }

    /// The digest of the object at the cursor, `depth` containers deep:
    /// `member` is called with the place of each member's name on the tape,
    /// writes its value after it, and says whether the member counts.
    fn object(
        &mut self,
        depth: usize,
        mut member: impl FnMut(&mut Self, Range<usize>) -> Result<bool, Malformed>,
    ) -> Result<u128, Malformed> {
        if depth > MAX_DEPTH {
            return Err(Malformed);
        }
        self.expect(b'{')?;
        let (mut sum, mut members) = (0u128, 0u64);
        self.space();
        if !self.eat(b'}') {
            loop {
                self.space();
                let start = self.tape.len();
                let name = self.string(NAME)?;
                self.space();
                self.expect(b':')?;
                self.space();
                if member(self, name)? {
                    sum = sum.wrapping_add(xxh3_128_with_seed(&self.tape[start..], MEMBER));
                    members += 1;
                }
                self.tape.truncate(start);
                self.space();
                if self.eat(b'}') {
                    break;
                }
                self.expect(b',')?;
            }
        }
        let mut form = [0u8; 24];
        form[..16].copy_from_slice(&sum.to_le_bytes());
        form[16..].copy_from_slice(&members.to_le_bytes());
        Ok(xxh3_128_with_seed(&form, OBJECT))
    }

    fn array(&mut self, depth: usize) -> Result<(), Malformed> {
        if depth > MAX_DEPTH {
            return Err(Malformed);
        }
        self.at += 1;
        self.tape.push(ARRAY);
        self.space();
        if !self.eat(b']') {
            loop {
                self.space();
                self.value(depth)?;
                self.space();
                if self.eat(b']') {
                    break;
                }
                self.expect(b',')?;
            }
        }
        self.tape.push(ARRAY_END);
        Ok(())
    }

    fn literal(&mut self, word: &[u8], tag: u8) -> Result<(), Malformed> {
        if !self.bytes[self.at..].starts_with(word) {
            return Err(Malformed);
        }
        self.at += word.len();
        self.tape.push(tag);
        Ok(())
    }

    fn number(&mut self) -> Result<(), Malformed> {
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
            self.integer(v);
            return Ok(());
        }
        let v = text
            .parse::<f64>()
            .ok()
            .filter(|v| v.is_finite())
            .ok_or(Malformed)?;
        // 2^127: integral floats below it are written as the integer they are.
        const LIMIT: f64 = 170_141_183_460_469_231_731_687_303_715_884_105_728.0;
        if v.fract() == 0.0 && v.abs() < LIMIT {
            #[allow(clippy::cast_possible_truncation)]
            self.integer(v as i128);
        } else {
            self.tape.push(FLOAT);
            self.tape.extend_from_slice(&v.to_bits().to_le_bytes());
        }
        Ok(())
    }

    fn integer(&mut self, v: i128) {
        self.tape.push(INTEGER);
        self.tape.extend_from_slice(&v.to_le_bytes());
    }

    /// Writes the string at the cursor, decoded, after `tag` and its length;
    /// gives where its text lies on the tape.
    fn string(&mut self, tag: u8) -> Result<Range<usize>, Malformed> {
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
        let decoded;
        let text = if escaped {
            decoded =
                serde_json::from_slice::<String>(&bytes[start..self.at]).map_err(|_| Malformed)?;
            decoded.as_bytes()
        } else {
            &bytes[start + 1..at]
        };
        let len = u32::try_from(text.len()).map_err(|_| Malformed)?;
        self.tape.push(tag);
        self.tape.extend_from_slice(&len.to_le_bytes());
        let from = self.tape.len();
        self.tape.extend_from_slice(text);
        Ok(from..self.tape.len())
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
