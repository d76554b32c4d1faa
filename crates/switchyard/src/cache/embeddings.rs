//! Embeddings per input item: a batch is looked up item by item, so a batch
//! with 7 of its 10 inputs cached sends only the other 3 upstream and gets
//! its answer stitched back in input order.
//!
//! Each item's key hashes the request without its `input` (model, format,
//! dimensions, …) and the item itself. An item's entry holds its vector as
//! the provider wrote it (floats or base64, as the request's
//! `encoding_format` asked, which is in the key), and its share of the
//! batch's tokens and cost, split by the items' sizes.

use std::borrow::Cow;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use serde::Deserialize;
use serde_json::value::RawValue;
use switchyard_providers::openai::Usage;
use switchyard_providers::openai::embedding::{EmbeddingInput, EmbeddingRequest};
use xxhash_rust::xxh3::Xxh3;

use super::entry::{Entry, Form};
use super::key::{self, Key, Scope};
use super::{Cache, FillResult};
use crate::error::Dialect;

/// The top-level fields of an embeddings request left out of an item's key
/// (the item itself is hashed apart).
const BATCH_IGNORED: [&str; 3] = ["model", "user", "input"];

/// A batch of inputs, each with its key.
#[derive(Debug)]
pub struct Items {
    keys: Vec<Key>,
    /// Each item's size, by which tokens and cost are shared out.
    sizes: Vec<u64>,
    request: EmbeddingRequest,
    ttl: Option<Duration>,
}

/// What the lookup of a batch found.
#[derive(Debug)]
pub enum Found {
    /// Every item: the whole answer, built here.
    All {
        /// The answer's body.
        body: Bytes,
        /// The tokens its items stand for.
        usage: Usage,
        /// What they cost when they were fetched, in micro-USD.
        saved_micros: i64,
    },
    /// Some: the request for the others, and how to stitch their answer in.
    Some {
        /// The body sent upstream: the missing inputs only.
        body: Bytes,
        /// The stitch of the answer.
        stitch: Box<Stitch>,
    },
    /// None: the batch goes upstream whole, and its items are stored.
    None(Box<Items>),
}

/// Answers found, and the items still to fetch.
#[derive(Debug)]
pub struct Stitch {
    cache: Arc<Cache>,
    found: Vec<Option<Arc<Entry>>>,
    missing: Items,
}

impl Items {
    /// The items of a batch `body` (a list of two or more inputs), under `scope`
    /// and `model`; `None` for a single input or a body that is not one.
    pub(super) fn of(
        body: &[u8],
        scope: Scope<'_>,
        model: &str,
        ttl: Option<Duration>,
    ) -> Option<Self> {
        let request: EmbeddingRequest = serde_json::from_slice(body).ok()?;
        let base = key::digest(body, &BATCH_IGNORED).ok()?.hash;
        let hashes: Vec<(u128, u64)> = match &request.input {
            EmbeddingInput::Texts(texts) if texts.len() > 1 => texts
                .iter()
                .map(|t| (item_hash(b's', t.as_bytes()), t.len() as u64))
                .collect(),
            EmbeddingInput::TokenLists(lists) if lists.len() > 1 => lists
                .iter()
                .map(|tokens| {
                    let bytes: Vec<u8> = tokens.iter().flat_map(|t| t.to_le_bytes()).collect();
                    (item_hash(b't', &bytes), tokens.len() as u64)
                })
                .collect(),
            _ => return None,
        };
        let keys = hashes
            .iter()
            .map(|(hash, _)| Key::new(scope, "embedding-item", model, base ^ hash, b""))
            .collect();
        Some(Self {
            keys,
            sizes: hashes.iter().map(|(_, size)| (*size).max(1)).collect(),
            request,
            ttl,
        })
    }

    /// The keys of the items, in input order.
    pub(super) fn keys(&self) -> &[Key] {
        &self.keys
    }

    /// Looks the items up: `found` holds each item's entry, if any.
    pub(super) fn found(
        self,
        cache: &Arc<Cache>,
        found: Vec<Option<Arc<Entry>>>,
    ) -> Result<Found, FillResult> {
        if found.iter().all(Option::is_some) {
            let entries: Vec<Arc<Entry>> = found.into_iter().flatten().collect();
            let tokens = entries
                .iter()
                .filter_map(|e| e.usage)
                .map(|u| u.prompt_tokens)
                .sum();
            let saved_micros = entries.iter().map(|e| e.cost_micros).sum();
            let model = entries.first().map_or("", |e| split_item(&e.body).0);
            let vectors = entries.iter().map(|e| split_item(&e.body).1);
            return Ok(Found::All {
                body: list(vectors, model, tokens),
                usage: Usage {
                    prompt_tokens: tokens,
                    completion_tokens: 0,
                    total_tokens: tokens,
                    ..Usage::default()
                },
                saved_micros,
            });
        }
        if found.iter().all(Option::is_none) {
            return Ok(Found::None(Box::new(self)));
        }
        let wanted: Vec<usize> = (0..found.len()).filter(|&i| found[i].is_none()).collect();
        let mut missing = Items {
            keys: wanted.iter().map(|&i| self.keys[i]).collect(),
            sizes: wanted.iter().map(|&i| self.sizes[i]).collect(),
            request: self.request.clone(),
            ttl: self.ttl,
        };
        missing.request.input = match &self.request.input {
            EmbeddingInput::Texts(texts) => {
                EmbeddingInput::Texts(wanted.iter().map(|&i| texts[i].clone()).collect())
            }
            EmbeddingInput::TokenLists(lists) => {
                EmbeddingInput::TokenLists(wanted.iter().map(|&i| lists[i].clone()).collect())
            }
            // `Items::of` makes batches of lists only.
            single => single.clone(),
        };
        let body = serde_json::to_vec(&missing.request).map_err(|_| FillResult::Unreadable)?;
        Ok(Found::Some {
            body: Bytes::from(body),
            stitch: Box::new(Stitch {
                cache: cache.clone(),
                found,
                missing,
            }),
        })
    }

    /// Stores each item of `answer`, an embeddings list for these items in
    /// order, with its share of `usage` and `cost_micros`.
    pub(super) fn store(
        &self,
        cache: &Cache,
        answer: &[u8],
        usage: Option<Usage>,
        cost_micros: i64,
    ) -> Result<(), FillResult> {
        let Some(ttl) = self.ttl else {
            return Ok(());
        };
        let list: List<'_> = serde_json::from_slice(answer).map_err(|_| FillResult::Unreadable)?;
        if list.data.len() != self.keys.len() {
            return Err(FillResult::Unreadable);
        }
        let total_size: u64 = self.sizes.iter().sum();
        let tokens = usage.map_or(0, |u| u.prompt_tokens);
        let stored_at = super::capture::unix_millis();
        for item in &list.data {
            let Some(&key) = self.keys.get(item.index) else {
                return Err(FillResult::Unreadable);
            };
            let size = self.sizes[item.index];
            let share = share(tokens, size, total_size);
            let entry = Entry {
                body: item_body(&list.model, item.embedding.get().as_bytes()),
                form: Form::Json,
                dialect: Dialect::OpenAi,
                usage: Some(Usage {
                    prompt_tokens: share,
                    completion_tokens: 0,
                    total_tokens: share,
                    ..Usage::default()
                }),
                cost_micros: i64::try_from(share_i(cost_micros, size, total_size)).unwrap_or(0),
                stored_at,
            };
            cache.store(key, Arc::new(entry), ttl);
        }
        Ok(())
    }
}

impl Stitch {
    /// The client's answer: the stored vectors and the fetched ones (an
    /// embeddings list for the missing items), in input order; the fetched
    /// items are stored. `usage` and `cost_micros` are the upstream's.
    pub fn answer(
        &self,
        fetched: &[u8],
        usage: Option<Usage>,
        cost_micros: i64,
    ) -> Option<(Bytes, i64)> {
        let list: List<'_> = serde_json::from_slice(fetched).ok()?;
        if list.data.len() != self.missing.keys.len() {
            return None;
        }
        let mut fresh: Vec<Option<&RawValue>> = vec![None; list.data.len()];
        for item in &list.data {
            *fresh.get_mut(item.index)? = Some(item.embedding);
        }
        let mut fresh = fresh.into_iter();
        let mut vectors = Vec::with_capacity(self.found.len());
        for entry in &self.found {
            vectors.push(match entry {
                Some(entry) => split_item(&entry.body).1,
                None => fresh.next()??.get().as_bytes(),
            });
        }
        let stored_tokens: u64 = self
            .found
            .iter()
            .flatten()
            .filter_map(|e| e.usage)
            .map(|u| u.prompt_tokens)
            .sum();
        let saved_micros = self.found.iter().flatten().map(|e| e.cost_micros).sum();
        let tokens = stored_tokens + usage.map_or(0, |u| u.prompt_tokens);
        let body = self::list(vectors.into_iter(), &list.model, tokens);
        let stored = self.missing.store(&self.cache, fetched, usage, cost_micros);
        self.cache
            .count_fill(stored.map_or_else(|e| e, |()| FillResult::Stored));
        Some((body, saved_micros))
    }
}

/// An item's entry body: the model that answered (length first), then the
/// vector as it was written.
fn item_body(model: &str, vector: &[u8]) -> Bytes {
    let model = &model.as_bytes()[..model.len().min(usize::from(u8::MAX))];
    let mut body = Vec::with_capacity(1 + model.len() + vector.len());
    body.push(u8::try_from(model.len()).unwrap_or(u8::MAX));
    body.extend_from_slice(model);
    body.extend_from_slice(vector);
    Bytes::from(body)
}

/// The model and the vector of an item's entry body.
fn split_item(body: &[u8]) -> (&str, &[u8]) {
    let Some((&len, rest)) = body.split_first() else {
        return ("", body);
    };
    let (model, vector) = rest.split_at(usize::from(len).min(rest.len()));
    (std::str::from_utf8(model).unwrap_or_default(), vector)
}

fn item_hash(kind: u8, bytes: &[u8]) -> u128 {
    let mut h = Xxh3::new();
    h.update(&[kind]);
    h.update(bytes);
    h.digest128()
}

/// `total` shared out by `size` of `sizes_sum`.
fn share(total: u64, size: u64, sizes_sum: u64) -> u64 {
    u64::try_from(u128::from(total) * u128::from(size) / u128::from(sizes_sum.max(1)))
        .unwrap_or(total)
}

fn share_i(total: i64, size: u64, sizes_sum: u64) -> i128 {
    i128::from(total) * i128::from(size) / i128::from(sizes_sum.max(1))
}

/// An embeddings list as read: each item's vector left as written.
#[derive(Deserialize)]
struct List<'a> {
    #[serde(borrow)]
    data: Vec<ListItem<'a>>,
    #[serde(default, borrow)]
    model: Cow<'a, str>,
}

#[derive(Deserialize)]
struct ListItem<'a> {
    index: usize,
    #[serde(borrow)]
    embedding: &'a RawValue,
}

/// An embeddings list of `vectors` (each as written), in order.
fn list<'v>(vectors: impl Iterator<Item = &'v [u8]>, model: &str, tokens: u64) -> Bytes {
    let mut out = Vec::with_capacity(256);
    out.extend_from_slice(br#"{"object":"list","data":["#);
    for (index, vector) in vectors.enumerate() {
        if index > 0 {
            out.push(b',');
        }
        out.extend_from_slice(br#"{"object":"embedding","index":"#);
        out.extend_from_slice(itoa::Buffer::new().format(index).as_bytes());
        out.extend_from_slice(br#","embedding":"#);
        out.extend_from_slice(vector);
        out.push(b'}');
    }
    out.extend_from_slice(br#"],"model":"#);
    out.extend_from_slice(&serde_json::to_vec(model).unwrap_or_else(|_| b"\"\"".to_vec()));
    out.extend_from_slice(br#","usage":{"prompt_tokens":"#);
    out.extend_from_slice(itoa::Buffer::new().format(tokens).as_bytes());
    out.extend_from_slice(br#","total_tokens":"#);
    out.extend_from_slice(itoa::Buffer::new().format(tokens).as_bytes());
    out.extend_from_slice(b"}}");
    Bytes::from(out)
}
