//! The YAML document as a tree that remembers where each node came from.
//!
//! The file is parsed once (with `${VAR}` interpolation) into [`Node`]s carrying
//! their line and column. The typed configuration is then deserialized from the
//! tree, which lets `switchyard check` report every problem with its place, and
//! remove a faulty node to go on looking for more.

use std::fmt;

use serde::Deserialize;
use serde::de::value::{MapDeserializer, SeqDeserializer, StrDeserializer};
use serde::de::{self, Deserializer, IntoDeserializer, MapAccess, SeqAccess, Visitor};
use serde_saphyr::Spanned;

/// A place in the configuration file (1-based).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Place {
    /// Line number.
    pub line: u64,
    /// Column number.
    pub column: u64,
}

impl<T> From<&Spanned<T>> for Place {
    fn from(s: &Spanned<T>) -> Self {
        Self {
            line: s.referenced.line(),
            column: s.referenced.column(),
        }
    }
}

/// One node of the document with its place.
#[derive(Debug, Clone)]
pub struct Node {
    /// Where the node starts.
    pub place: Place,
    /// What it holds.
    pub value: Value,
}

/// The value of a node.
#[derive(Debug, Clone)]
pub enum Value {
    /// `~`, `null`, or an unset `${VAR}`.
    Null,
    /// `true` / `false`.
    Bool(bool),
    /// A non-negative integer.
    UInt(u64),
    /// A negative integer.
    Int(i64),
    /// A float.
    Float(f64),
    /// Text.
    Str(String),
    /// A sequence.
    Seq(Vec<Node>),
    /// A mapping, in document order, with the place of each key.
    Map(Vec<(String, Place, Node)>),
}

/// A step of the path to a node, as `serde_path_to_error` reports it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Step {
    /// A mapping key.
    Key(String),
    /// A sequence index.
    Index(usize),
}

impl Node {
    /// Parses YAML text; `env` resolves `${VAR}` references.
    pub fn parse(
        text: &str,
        env: std::collections::HashMap<String, String>,
    ) -> Result<Self, serde_saphyr::Error> {
        let mut options = serde_saphyr::options! {
            property_syntax: serde_saphyr::PropertySyntax::DockerComposeWithNulls,
        };
        options = options.with_properties(env);
        let spanned: Spanned<RawNode> = serde_saphyr::from_str_with_options(text, options)?;
        Ok(spanned.into())
    }

    /// The node at `path`, and the place of its key when it is a mapping entry.
    pub fn find(&self, path: &[Step]) -> Option<(&Node, Place)> {
        let mut node = self;
        let mut place = self.place;
        for step in path {
            (node, place) = match (step, &node.value) {
                (Step::Key(k), Value::Map(entries)) => entries
                    .iter()
                    .find(|(name, _, _)| name == k)
                    .map(|(_, key_place, value)| (value, *key_place))?,
                (Step::Index(i), Value::Seq(items)) => items.get(*i).map(|n| (n, n.place))?,
                _ => return None,
            };
        }
        Some((node, place))
    }

    /// Removes the node at `path`; returns false when there is nothing to remove.
    pub fn remove(&mut self, path: &[Step]) -> bool {
        let Some((last, parent_path)) = path.split_last() else {
            return false;
        };
        let mut node = self;
        for step in parent_path {
            node = match (step, &mut node.value) {
                (Step::Key(k), Value::Map(entries)) => {
                    match entries.iter_mut().find(|(name, _, _)| name == k) {
                        Some((_, _, value)) => value,
                        None => return false,
                    }
                }
                (Step::Index(i), Value::Seq(items)) => match items.get_mut(*i) {
                    Some(n) => n,
                    None => return false,
                },
                _ => return false,
            };
        }
        match (last, &mut node.value) {
            (Step::Key(k), Value::Map(entries)) => {
                let before = entries.len();
                entries.retain(|(name, _, _)| name != k);
                entries.len() != before
            }
            (Step::Index(i), Value::Seq(items)) if *i < items.len() => {
                items.remove(*i);
                true
            }
            _ => false,
        }
    }
}

/// The shape serde-saphyr fills in: like [`Node`], with [`Spanned`] places.
enum RawNode {
    Null,
    Bool(bool),
    UInt(u64),
    Int(i64),
    Float(f64),
    Str(String),
    Seq(Vec<Spanned<RawNode>>),
    Map(Vec<(Spanned<String>, Spanned<RawNode>)>),
}

impl From<Spanned<RawNode>> for Node {
    fn from(spanned: Spanned<RawNode>) -> Self {
        let place = Place::from(&spanned);
        let value = match spanned.value {
            RawNode::Null => Value::Null,
            RawNode::Bool(b) => Value::Bool(b),
            RawNode::UInt(u) => Value::UInt(u),
            RawNode::Int(i) => Value::Int(i),
            RawNode::Float(f) => Value::Float(f),
            RawNode::Str(s) => Value::Str(s),
            RawNode::Seq(items) => Value::Seq(items.into_iter().map(Node::from).collect()),
            RawNode::Map(entries) => Value::Map(
                entries
                    .into_iter()
                    .map(|(k, v)| {
                        let key_place = Place::from(&k);
                        (k.value, key_place, Node::from(v))
                    })
                    .collect(),
            ),
        };
        Self { place, value }
    }
}

impl<'de> Deserialize<'de> for RawNode {
    fn deserialize<D: Deserializer<'de>>(de: D) -> Result<Self, D::Error> {
        de.deserialize_any(RawNodeVisitor)
    }
}

struct RawNodeVisitor;

impl<'de> Visitor<'de> for RawNodeVisitor {
    type Value = RawNode;
    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("any YAML value")
    }
    fn visit_unit<E>(self) -> Result<RawNode, E> {
        Ok(RawNode::Null)
    }
    fn visit_none<E>(self) -> Result<RawNode, E> {
        Ok(RawNode::Null)
    }
    fn visit_some<D: Deserializer<'de>>(self, de: D) -> Result<RawNode, D::Error> {
        RawNode::deserialize(de)
    }
    fn visit_bool<E>(self, v: bool) -> Result<RawNode, E> {
        Ok(RawNode::Bool(v))
    }
    fn visit_u64<E>(self, v: u64) -> Result<RawNode, E> {
        Ok(RawNode::UInt(v))
    }
    fn visit_i64<E>(self, v: i64) -> Result<RawNode, E> {
        Ok(if v >= 0 {
            RawNode::UInt(v.unsigned_abs())
        } else {
            RawNode::Int(v)
        })
    }
    fn visit_f64<E>(self, v: f64) -> Result<RawNode, E> {
        Ok(RawNode::Float(v))
    }
    fn visit_str<E>(self, v: &str) -> Result<RawNode, E> {
        Ok(RawNode::Str(v.to_owned()))
    }
    fn visit_string<E>(self, v: String) -> Result<RawNode, E> {
        Ok(RawNode::Str(v))
    }
    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<RawNode, A::Error> {
        let mut items = Vec::new();
        while let Some(item) = seq.next_element()? {
            items.push(item);
        }
        Ok(RawNode::Seq(items))
    }
    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<RawNode, A::Error> {
        let mut entries = Vec::new();
        while let Some(key) = map.next_key::<Spanned<String>>()? {
            entries.push((key, map.next_value()?));
        }
        Ok(RawNode::Map(entries))
    }
}

/// What went wrong while deserializing the typed config from the tree.
#[derive(Debug, Clone, PartialEq)]
pub enum TreeError {
    /// A key the schema does not have.
    UnknownField {
        /// The key as written.
        field: String,
        /// The keys allowed there.
        expected: &'static [&'static str],
    },
    /// A value outside an enumeration.
    UnknownVariant {
        /// The value as written.
        variant: String,
        /// The values allowed there.
        expected: &'static [&'static str],
    },
    /// A required key is absent.
    MissingField(&'static str),
    /// Anything else: a type mismatch or a value refused by its parser.
    Message(String),
}

impl fmt::Display for TreeError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::UnknownField { field, .. } => write!(f, "unknown key `{field}`"),
            Self::UnknownVariant { variant, expected } => {
                write!(
                    f,
                    "unknown value `{variant}`, expected one of: {}",
                    expected.join(", ")
                )
            }
            Self::MissingField(field) => write!(f, "missing key `{field}`"),
            Self::Message(m) => f.write_str(m),
        }
    }
}

impl std::error::Error for TreeError {}

impl de::Error for TreeError {
    fn custom<T: fmt::Display>(msg: T) -> Self {
        Self::Message(msg.to_string())
    }
    fn unknown_field(field: &str, expected: &'static [&'static str]) -> Self {
        Self::UnknownField {
            field: field.to_owned(),
            expected,
        }
    }
    fn unknown_variant(variant: &str, expected: &'static [&'static str]) -> Self {
        Self::UnknownVariant {
            variant: variant.to_owned(),
            expected,
        }
    }
    fn missing_field(field: &'static str) -> Self {
        Self::MissingField(field)
    }
}

impl<'a> IntoDeserializer<'a, TreeError> for &'a Node {
    type Deserializer = &'a Node;
    fn into_deserializer(self) -> Self {
        self
    }
}

impl<'de> Deserializer<'de> for &'de Node {
    type Error = TreeError;

    fn deserialize_any<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, TreeError> {
        match &self.value {
            Value::Null => visitor.visit_unit(),
            Value::Bool(b) => visitor.visit_bool(*b),
            Value::UInt(u) => visitor.visit_u64(*u),
            Value::Int(i) => visitor.visit_i64(*i),
            Value::Float(f) => visitor.visit_f64(*f),
            Value::Str(s) => visitor.visit_borrowed_str(s),
            Value::Seq(items) => visitor.visit_seq(SeqDeserializer::new(items.iter())),
            Value::Map(entries) => visitor.visit_map(MapDeserializer::new(
                entries.iter().map(|(k, _, v)| (k.as_str(), v)),
            )),
        }
    }

    fn deserialize_option<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, TreeError> {
        match self.value {
            Value::Null => visitor.visit_none(),
            _ => visitor.visit_some(self),
        }
    }

    /// Scalars read as text where text is wanted: `key: 12345` is the string "12345".
    fn deserialize_str<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, TreeError> {
        match &self.value {
            Value::UInt(u) => visitor.visit_string(u.to_string()),
            Value::Int(i) => visitor.visit_string(i.to_string()),
            Value::Float(f) => visitor.visit_string(f.to_string()),
            Value::Bool(b) => visitor.visit_string(b.to_string()),
            _ => self.deserialize_any(visitor),
        }
    }

    fn deserialize_string<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, TreeError> {
        self.deserialize_str(visitor)
    }

    fn deserialize_enum<V: Visitor<'de>>(
        self,
        name: &'static str,
        variants: &'static [&'static str],
        visitor: V,
    ) -> Result<V::Value, TreeError> {
        match &self.value {
            Value::Str(s) => {
                let de: StrDeserializer<'_, TreeError> = s.as_str().into_deserializer();
                de.deserialize_enum(name, variants, visitor)
            }
            _ => Err(de::Error::invalid_type(self.unexpected(), &"a string")),
        }
    }

    fn deserialize_newtype_struct<V: Visitor<'de>>(
        self,
        _: &'static str,
        visitor: V,
    ) -> Result<V::Value, TreeError> {
        visitor.visit_newtype_struct(self)
    }

    serde::forward_to_deserialize_any! {
        bool i8 i16 i32 i64 i128 u8 u16 u32 u64 u128 f32 f64 char bytes byte_buf unit unit_struct seq tuple
        tuple_struct map struct identifier ignored_any
    }
}

impl Node {
    fn unexpected(&self) -> de::Unexpected<'_> {
        match &self.value {
            Value::Null => de::Unexpected::Unit,
            Value::Bool(b) => de::Unexpected::Bool(*b),
            Value::UInt(u) => de::Unexpected::Unsigned(*u),
            Value::Int(i) => de::Unexpected::Signed(*i),
            Value::Float(f) => de::Unexpected::Float(*f),
            Value::Str(s) => de::Unexpected::Str(s),
            Value::Seq(_) => de::Unexpected::Seq,
            Value::Map(_) => de::Unexpected::Map,
        }
    }
}
