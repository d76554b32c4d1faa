//! A JSON object read as `(key, raw value)` pairs: no value is parsed until asked
//! for, and writing the object back copies the client's bytes.

use std::borrow::Cow;
use std::collections::HashMap;
use std::fmt;

use serde::Deserialize;
use serde::de::{self, Deserializer, MapAccess, Visitor};
use serde_json::value::RawValue;

/// Past this many fields, duplicates are found with a hash map instead of a scan.
const SCAN_LIMIT: usize = 16;

/// The top-level object as `(name, raw value)` pairs in the client's order;
/// a repeated name keeps its last value, as JSON parsers commonly do.
#[derive(Debug)]
pub(crate) struct RawObject<'a>(pub(crate) Vec<(Key<'a>, &'a RawValue)>);

impl<'a> RawObject<'a> {
    /// Parses `json` as an object.
    pub(crate) fn parse(json: &'a [u8]) -> serde_json::Result<Self> {
        serde_json::from_slice(json)
    }

    /// The raw value of `name`.
    pub(crate) fn get(&self, name: &str) -> Option<&'a RawValue> {
        self.0
            .iter()
            .find(|(k, _)| k.as_str() == name)
            .map(|(_, v)| *v)
    }

    /// Writes the object back, leaving out the field `skip`, values as they were.
    pub(crate) fn write(&self, skip: Option<&str>) -> Vec<u8> {
        let mut out = Vec::with_capacity(
            self.0
                .iter()
                .map(|(k, v)| k.as_str().len() + v.get().len() + 4)
                .sum::<usize>()
                + 2,
        );
        out.push(b'{');
        for (key, value) in self.0.iter().filter(|(k, _)| Some(k.as_str()) != skip) {
            push_field(&mut out, key, value.get().as_bytes());
        }
        out.push(b'}');
        out
    }

    fn dedup(fields: &mut Vec<(Key<'a>, &'a RawValue)>) {
        if fields.len() <= SCAN_LIMIT {
            // Later values overwrite the first occurrence; the rest close up in order.
            let mut kept = 0;
            for i in 0..fields.len() {
                match fields[..kept].iter().position(|(k, _)| *k == fields[i].0) {
                    Some(first) => fields[first].1 = fields[i].1,
                    None => {
                        fields.swap(kept, i);
                        kept += 1;
                    }
                }
            }
            fields.truncate(kept);
            return;
        }
        let mut last: HashMap<&str, usize> = HashMap::with_capacity(fields.len());
        for (i, (k, _)) in fields.iter().enumerate() {
            last.insert(k.as_str(), i);
        }
        if last.len() == fields.len() {
            return;
        }
        let keep: Vec<bool> = fields
            .iter()
            .enumerate()
            .map(|(i, (k, _))| last.get(k.as_str()) == Some(&i))
            .collect();
        let mut index = 0;
        fields.retain(|_| {
            index += 1;
            keep[index - 1]
        });
    }
}

/// Appends `,"key":raw` (without the comma for the first field).
pub(crate) fn push_field(out: &mut Vec<u8>, key: &Key<'_>, raw_value: &[u8]) {
    if out.len() > 1 {
        out.push(b',');
    }
    key.write(out);
    out.push(b':');
    out.extend_from_slice(raw_value);
}

/// An object key: borrowed from the body when it has no escapes (and can be
/// written back as is), owned otherwise.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Key<'a>(pub(crate) Cow<'a, str>);

impl Key<'_> {
    pub(crate) fn as_str(&self) -> &str {
        &self.0
    }

    /// Writes the key as a JSON string.
    pub(crate) fn write(&self, out: &mut Vec<u8>) {
        match &self.0 {
            Cow::Borrowed(raw) => {
                out.push(b'"');
                out.extend_from_slice(raw.as_bytes());
                out.push(b'"');
            }
            // Serializing a str into a Vec cannot fail.
            Cow::Owned(text) => {
                let _ = serde_json::to_writer(&mut *out, text);
            }
        }
    }
}

impl<'de> Deserialize<'de> for RawObject<'de> {
    fn deserialize<D: Deserializer<'de>>(de: D) -> Result<Self, D::Error> {
        struct ObjectVisitor;
        impl<'de> Visitor<'de> for ObjectVisitor {
            type Value = RawObject<'de>;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a JSON object")
            }
            fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Self::Value, A::Error> {
                let mut fields = Vec::with_capacity(map.size_hint().unwrap_or(8));
                while let Some(key) = map.next_key::<Key<'de>>()? {
                    fields.push((key, map.next_value::<&'de RawValue>()?));
                }
                RawObject::dedup(&mut fields);
                Ok(RawObject(fields))
            }
        }
        de.deserialize_map(ObjectVisitor)
    }
}

impl<'de> Deserialize<'de> for Key<'de> {
    fn deserialize<D: Deserializer<'de>>(de: D) -> Result<Self, D::Error> {
        struct KeyVisitor;
        impl<'de> Visitor<'de> for KeyVisitor {
            type Value = Key<'de>;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a string key")
            }
            fn visit_borrowed_str<E: de::Error>(self, v: &'de str) -> Result<Self::Value, E> {
                Ok(Key(Cow::Borrowed(v)))
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<Self::Value, E> {
                Ok(Key(Cow::Owned(v.to_owned())))
            }
        }
        de.deserialize_str(KeyVisitor)
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    fn names(json: &str) -> Vec<(String, String)> {
        RawObject::parse(json.as_bytes())
            .unwrap()
            .0
            .iter()
            .map(|(k, v)| (k.as_str().to_owned(), v.get().to_owned()))
            .collect()
    }

    #[test]
    fn last_duplicate_wins_at_the_first_place() {
        assert_eq!(
            names(r#"{"a":1,"b":2,"a":3}"#),
            [
                ("a".to_owned(), "3".to_owned()),
                ("b".to_owned(), "2".to_owned())
            ]
        );
        assert_eq!(
            names(r#"{"a":1,"b":2,"a":3,"c":4,"a":5,"b":6}"#),
            [
                ("a".to_owned(), "5".to_owned()),
                ("b".to_owned(), "6".to_owned()),
                ("c".to_owned(), "4".to_owned())
            ]
        );
        let many: Vec<String> = (0..40).map(|i| format!("\"k{}\":{i}", i % 20)).collect();
        let parsed = names(&format!("{{{}}}", many.join(",")));
        assert_eq!(parsed.len(), 20);
        assert_eq!(parsed[0], ("k0".to_owned(), "20".to_owned()));
    }

    #[test]
    fn many_distinct_keys_parse_in_linear_time() {
        let fields: Vec<String> = (0..200_000).map(|i| format!("\"k{i}\":0")).collect();
        let body = format!("{{{}}}", fields.join(","));
        let object = RawObject::parse(body.as_bytes()).unwrap();
        assert_eq!(object.0.len(), 200_000);
    }

    #[test]
    fn writes_back_raw_values_in_order_with_escaped_keys() {
        let json = r#"{"z":1,"usage":{"x":12345678901234567890123},"we\"ird":[1, 2],"a":"é"}"#;
        let out = RawObject::parse(json.as_bytes())
            .unwrap()
            .write(Some("usage"));
        assert_eq!(
            String::from_utf8(out).unwrap(),
            r#"{"z":1,"we\"ird":[1, 2],"a":"é"}"#
        );
    }
}
