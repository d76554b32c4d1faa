//! `POST /v1/embeddings`: a unit vector per input, a pure function of the model's name,
//! the input and the dimensions. Gemini's embedding routes use the same vectors
//! ([`embed`]).
//!
//! - Most models: the vector is derived from a SHA-256 hash of the input, so any two
//!   inputs that differ at all are unrelated (cosine near 0 with many dimensions).
//! - Models whose name ends in `-words` (e.g. `text-embedding-words`): a bag of words, so
//!   that texts with the same words are close. The input is lower-cased and split on
//!   every character that is not a letter or a digit (a token id is a word, written in
//!   decimal); each word adds ±1 to one of the dimensions, both chosen by the SHA-256 of
//!   the word; the sum is normalized. The same words in any order give the same vector;
//!   a text of ten words with one changed has a cosine near 0.9 with the original;
//!   texts with no word in common are near 0, less near with few dimensions (words then
//!   share dimensions: ask for a few hundred). An input with no word, or whose words
//!   cancel out, gets the hash vector.

use std::sync::Arc;

use axum::extract::State;
use axum::response::Response;
use base64::Engine;
use bytes::Bytes;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::error::{MockError, parse_body, required_model};
use crate::text::count_words;
use crate::{Mock, json_response};

/// Dimensions of an embedding when the request does not say.
const DEFAULT_DIMENSIONS: u32 = 8;
/// The end of the names of models whose embeddings are bags of words.
const WORDS_SUFFIX: &str = "-words";
/// The most dimensions the mock computes.
const MAX_DIMENSIONS: u32 = 16_384;

// === Request ===

/// The fields of an embeddings request the mock reads; the rest is ignored.
#[derive(Debug, Deserialize)]
struct EmbeddingRequest {
    model: Option<String>,
    input: Option<Input>,
    dimensions: Option<u32>,
    encoding_format: Option<String>,
}

/// `input`: a string, strings, tokens, or token lists.
#[derive(Debug, Deserialize)]
#[serde(untagged)]
enum Input {
    Text(String),
    Texts(Vec<String>),
    Tokens(Vec<i64>),
    TokenLists(Vec<Vec<i64>>),
}

/// One thing to embed.
#[derive(Clone, Copy, Debug)]
pub(crate) enum Item<'a> {
    /// A text.
    Text(&'a str),
    /// Token ids.
    Tokens(&'a [i64]),
}

impl Input {
    fn items(&self) -> Vec<Item<'_>> {
        match self {
            Self::Text(text) => vec![Item::Text(text)],
            Self::Texts(texts) => texts.iter().map(|t| Item::Text(t)).collect(),
            Self::Tokens(tokens) => vec![Item::Tokens(tokens)],
            Self::TokenLists(lists) => lists.iter().map(|t| Item::Tokens(t)).collect(),
        }
    }
}

impl Item<'_> {
    fn is_empty(self) -> bool {
        match self {
            Self::Text(text) => text.is_empty(),
            Self::Tokens(tokens) => tokens.is_empty(),
        }
    }

    fn tokens(self) -> u64 {
        match self {
            Self::Text(text) => count_words(text),
            Self::Tokens(tokens) => tokens.len() as u64,
        }
    }

    fn digest(self) -> [u8; 32] {
        let mut hasher = Sha256::new();
        match self {
            Self::Text(text) => hasher.update(text.as_bytes()),
            Self::Tokens(tokens) => tokens.iter().for_each(|t| hasher.update(t.to_le_bytes())),
        }
        hasher.finalize().into()
    }
}

/// A unit vector (L2 norm 1) of `dimensions` components for `item`: a bag of its words
/// for a `-words` model, else derived from its hash (see the module's doc).
pub(crate) fn embed(model: &str, item: Item<'_>, dimensions: u32) -> Vec<f32> {
    if model.ends_with(WORDS_SUFFIX) {
        let words = bag_of_words(item, dimensions);
        if words.iter().any(|x| *x != 0.0) {
            return unit(&words);
        }
    }
    unit(&hashed(item, dimensions))
}

/// The item's digest expanded, 8 components per SHA-256 block, into numbers in `[-1, 1]`.
fn hashed(item: Item<'_>, dimensions: u32) -> Vec<f64> {
    let digest = item.digest();
    let mut raw = Vec::with_capacity(dimensions as usize);
    for block in 0u32.. {
        let words = Sha256::new()
            .chain_update(digest)
            .chain_update(block.to_le_bytes())
            .finalize();
        for word in words.chunks_exact(4) {
            if raw.len() == dimensions as usize {
                break;
            }
            let bits = u32::from_le_bytes([word[0], word[1], word[2], word[3]]);
            raw.push(f64::from(bits) / f64::from(u32::MAX) * 2.0 - 1.0);
        }
        if raw.len() == dimensions as usize {
            break;
        }
    }
    raw
}

/// Per word of the item, ±1 in one dimension: the dimension is the first 8 bytes of the
/// word's SHA-256 (little-endian) modulo `dimensions`, the sign the low bit of the 9th.
/// All zeros when the item has no word.
fn bag_of_words(item: Item<'_>, dimensions: u32) -> Vec<f64> {
    let mut raw = vec![0.0; dimensions as usize];
    let mut add = |word: &str| {
        let digest = Sha256::digest(word.as_bytes());
        let mut bucket = [0; 8];
        bucket.copy_from_slice(&digest[..8]);
        let at = u64::from_le_bytes(bucket) % u64::from(dimensions);
        raw[at as usize] += if digest[8] & 1 == 0 { 1.0 } else { -1.0 };
    };
    match item {
        Item::Text(text) => text
            .to_lowercase()
            .split(|c: char| !c.is_alphanumeric())
            .filter(|word| !word.is_empty())
            .for_each(&mut add),
        Item::Tokens(tokens) => tokens.iter().for_each(|t| add(&t.to_string())),
    }
    raw
}

/// `raw` scaled to length 1; the first axis when `raw` is all zeros.
fn unit(raw: &[f64]) -> Vec<f32> {
    let norm = raw.iter().map(|x| x * x).sum::<f64>().sqrt();
    if norm == 0.0 {
        // Never seen (a hash of zeros), but a unit vector is promised.
        return (0..raw.len())
            .map(|i| if i == 0 { 1.0 } else { 0.0 })
            .collect();
    }
    raw.iter().map(|x| (x / norm) as f32).collect()
}

/// The dimensions asked for in the field `param`, [`DEFAULT_DIMENSIONS`] when absent.
pub(crate) fn dimensions(requested: Option<u32>, param: &'static str) -> Result<u32, MockError> {
    let dimensions = requested.unwrap_or(DEFAULT_DIMENSIONS);
    if (1..=MAX_DIMENSIONS).contains(&dimensions) {
        Ok(dimensions)
    } else {
        Err(MockError::invalid(
            format!("{param} must be between 1 and {MAX_DIMENSIONS}"),
            param,
        ))
    }
}

// === Response ===

/// OpenAI's `CreateEmbeddingResponse`.
#[derive(Serialize)]
struct EmbeddingList<'a> {
    object: &'static str,
    data: Vec<Embedding>,
    model: &'a str,
    usage: EmbeddingUsage,
}

#[derive(Serialize)]
struct Embedding {
    object: &'static str,
    index: usize,
    embedding: Vector,
}

/// A float array, or with `encoding_format: "base64"` the base64 of its little-endian
/// `f32` bytes (what the official SDKs ask for and decode).
#[derive(Serialize)]
#[serde(untagged)]
enum Vector {
    Floats(Vec<f32>),
    Base64(String),
}

#[derive(Serialize)]
struct EmbeddingUsage {
    prompt_tokens: u64,
    total_tokens: u64,
}

/// `POST /v1/embeddings`.
pub(crate) async fn handle(
    State(mock): State<Arc<Mock>>,
    body: Bytes,
) -> Result<Response, MockError> {
    let admission = mock.faults.admit().await?;
    let request: EmbeddingRequest = parse_body(&body)?;
    let model = required_model(request.model.as_deref())?;
    let items = request.input.as_ref().map(Input::items).unwrap_or_default();
    if items.is_empty() || items.iter().any(|item| item.is_empty()) {
        return Err(MockError::invalid(
            "input must be a non-empty string or a non-empty array of non-empty inputs",
            "input",
        ));
    }
    let dimensions = dimensions(request.dimensions, "dimensions")?;
    let base64 = match request.encoding_format.as_deref() {
        None | Some("float") => false,
        Some("base64") => true,
        Some(other) => {
            return Err(MockError::invalid(
                format!("encoding_format must be 'float' or 'base64', not {other:?}"),
                "encoding_format",
            ));
        }
    };
    let data = items
        .iter()
        .enumerate()
        .map(|(index, item)| {
            let vector = embed(model, *item, dimensions);
            let embedding = if base64 {
                let bytes: Vec<u8> = vector.iter().flat_map(|x| x.to_le_bytes()).collect();
                Vector::Base64(base64::engine::general_purpose::STANDARD.encode(bytes))
            } else {
                Vector::Floats(vector)
            };
            Embedding {
                object: "embedding",
                index,
                embedding,
            }
        })
        .collect();
    let tokens = items.iter().map(|item| item.tokens()).sum();
    json_response(
        &EmbeddingList {
            object: "list",
            data,
            model,
            usage: EmbeddingUsage {
                prompt_tokens: tokens,
                total_tokens: tokens,
            },
        },
        &admission.request_id(),
    )
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::panic)]
mod tests {
    use super::*;

    const HASHED: &str = "mock-embed";
    const WORDS: &str = "text-embedding-words";

    fn norm(v: &[f32]) -> f64 {
        v.iter().map(|x| f64::from(*x).powi(2)).sum::<f64>().sqrt()
    }

    /// The cosine of two texts' word vectors of `dimensions`.
    fn cosine(a: &str, b: &str, dimensions: u32) -> f64 {
        let a = embed(WORDS, Item::Text(a), dimensions);
        let b = embed(WORDS, Item::Text(b), dimensions);
        a.iter()
            .zip(&b)
            .map(|(x, y)| f64::from(*x) * f64::from(*y))
            .sum()
    }

    #[test]
    fn unit_vectors_of_any_dimension() {
        for model in [HASHED, WORDS] {
            for dimensions in [1, 7, 8, 9, 1536] {
                let v = embed(model, Item::Text("the capital of France"), dimensions);
                assert_eq!(v.len(), dimensions as usize);
                let norm = norm(&v);
                assert!((norm - 1.0).abs() < 1e-6, "{model} {dimensions}: {norm}");
                assert!(v.iter().all(|x| (-1.0..=1.0).contains(x)));
            }
        }
        assert_eq!(embed(HASHED, Item::Text("x"), 1), [1.0f32]);
    }

    #[test]
    fn deterministic_and_distinct() {
        assert_eq!(
            embed(HASHED, Item::Text("a"), 8),
            embed(HASHED, Item::Text("a"), 8)
        );
        assert_ne!(
            embed(HASHED, Item::Text("a"), 8),
            embed(HASHED, Item::Text("b"), 8)
        );
        assert_ne!(
            embed(HASHED, Item::Tokens(&[1, 2]), 8),
            embed(HASHED, Item::Tokens(&[2, 1]), 8)
        );
        // A longer vector starts in the same direction as a shorter one.
        let short = embed(HASHED, Item::Text("a"), 8);
        let long = embed(HASHED, Item::Text("a"), 16);
        let ratio = long[0] / short[0];
        assert!(
            short
                .iter()
                .zip(&long)
                .all(|(s, l)| (l / s - ratio).abs() < 1e-4)
        );
    }

    #[test]
    fn input_forms() {
        let parse = |v: serde_json::Value| serde_json::from_value::<Input>(v).unwrap();
        let tokens = |i: &Input| i.items().iter().map(|x| x.tokens()).collect::<Vec<_>>();
        assert_eq!(tokens(&parse(serde_json::json!("a b c"))), [3]);
        assert_eq!(tokens(&parse(serde_json::json!(["a", "b c"]))), [1, 2]);
        assert_eq!(tokens(&parse(serde_json::json!([1, 2, 3]))), [3]);
        assert_eq!(tokens(&parse(serde_json::json!([[1], [2, 3]]))), [1, 2]);
    }

    #[test]
    fn the_same_words_in_any_order_and_case_are_one_vector() {
        let cos = cosine(
            "What is the capital of France?",
            "the capital of FRANCE is... what",
            8,
        );
        assert!((cos - 1.0).abs() < 1e-6, "{cos}");
        assert_eq!(
            embed(WORDS, Item::Text("Un LLM prédit le mot"), 64),
            embed(WORDS, Item::Text("le mot PRÉDIT: un llm"), 64)
        );
        // A token id is a word.
        assert_eq!(
            embed(WORDS, Item::Tokens(&[12, 345]), 64),
            embed(WORDS, Item::Text("345 12"), 64)
        );
    }

    #[test]
    fn shared_words_make_texts_close_and_no_shared_word_far() {
        // Ten words, one changed: 9 / 10.
        let cos = cosine(
            "the quick brown fox jumps over one lazy sleeping dog",
            "the quick brown fox jumps over one lazy sleeping cat",
            1536,
        );
        assert!((cos - 0.9).abs() < 1e-6, "{cos}");
        // Three words shared (what, capital, france) of six, and `s` twice: 3 / √(6 · 7).
        let cos = cosine(
            "What is the capital of France?",
            "what's France's capital",
            1536,
        );
        assert!((cos - 3.0 / 42f64.sqrt()).abs() < 1e-6, "{cos}");
        for (a, b) in [
            (
                "What is the capital of France?",
                "Write a haiku about autumn leaves",
            ),
            (
                "How do I reverse a list in Python?",
                "What is the capital of France?",
            ),
        ] {
            let cos = cosine(a, b, 1536);
            assert!(cos.abs() < 1e-6, "{a} ~ {b}: {cos}");
        }
    }

    #[test]
    fn text_without_words_gets_the_hash_vector() {
        for text in ["?!", "   ", "—"] {
            assert_eq!(
                embed(WORDS, Item::Text(text), 8),
                embed(HASHED, Item::Text(text), 8)
            );
        }
        assert_ne!(
            embed(WORDS, Item::Text("a b"), 8),
            embed(HASHED, Item::Text("a b"), 8)
        );
        // Only models named `…-words` read words.
        assert_ne!(
            embed(HASHED, Item::Text("a b"), 8),
            embed(HASHED, Item::Text("b a"), 8)
        );
    }
}
