//! An ended request as the writer keeps it ([`Queued`]) until the store has
//! it: the request's end itself, with its record's id and the little text
//! the row needs that the end does not hold as such. Its row
//! ([`Queued::row`]) borrows the rest, so nothing else is copied on the way
//! to the store.

use std::time::{Duration, UNIX_EPOCH};

use switchyard_store::UsageRow;

use super::Ended;
use crate::request::Principal;

/// Tags a request may carry at most, and the length of one; the rest are left out.
const MAX_TAGS: usize = 16;
const MAX_TAG_LEN: usize = 64;

/// The digits of an id.
const HEX: &[u8; 16] = b"0123456789abcdef";

/// A record's id: 32 hex digits.
type Id = [u8; 32];

/// Unique record ids: a random prefix per process and a count.
#[derive(Debug)]
pub(super) struct Ids {
    prefix: u64,
    next: u64,
}

impl Ids {
    /// Ids with a random prefix (time-based when the system has no randomness).
    pub(super) fn new() -> Self {
        let prefix = getrandom::u64().unwrap_or_else(|_| {
            let nanos = UNIX_EPOCH.elapsed().map_or(0, |d| d.as_nanos());
            #[allow(clippy::cast_possible_truncation)]
            let nanos = nanos as u64;
            nanos ^ u64::from(std::process::id())
        });
        Self { prefix, next: 0 }
    }

    /// The next id: the prefix and the count, 16 hex digits each.
    fn next(&mut self) -> Id {
        self.next += 1;
        let mut id = [0; 32];
        let bytes = [self.prefix.to_be_bytes(), self.next.to_be_bytes()];
        for (digits, byte) in id.chunks_exact_mut(2).zip(bytes.as_flattened()) {
            digits[0] = HEX[usize::from(byte >> 4)];
            digits[1] = HEX[usize::from(byte & 0xf)];
        }
        id
    }
}

/// An ended request waiting for the store.
#[derive(Debug)]
pub(super) struct Queued {
    id: Id,
    tags: Vec<String>,
    /// The texts the end holds in pieces, one after the other: a config
    /// key's id (`config:` and its name), then the deployment
    /// (`provider/model`), [`Queued::split`] between them.
    joined: String,
    split: usize,
    ended: Ended,
}

impl Queued {
    /// `ended` with a new id from `ids`.
    pub(super) fn new(ended: Ended, ids: &mut Ids) -> Self {
        let mut joined = String::new();
        if let Principal::ConfigKey(name) = &ended.principal {
            joined.reserve(7 + name.len());
            joined.push_str("config:");
            joined.push_str(name);
        }
        let split = joined.len();
        if let Some(s) = &ended.served_by {
            joined.reserve(s.provider.len() + 1 + s.upstream_model.len());
            joined.push_str(&s.provider);
            joined.push('/');
            joined.push_str(&s.upstream_model);
        }
        Self {
            id: ids.next(),
            tags: ended.tags.as_ref().map(tags).unwrap_or_default(),
            joined,
            split,
            ended,
        }
    }

    /// Its row, borrowing what it holds.
    pub(super) fn row(&self) -> UsageRow<'_> {
        let ended = &self.ended;
        let (key_id, key_name, team_id) = match &ended.principal {
            Principal::VirtualKey(tenant) => (
                Some(&*tenant.key.id),
                Some(&*tenant.key.name),
                tenant.key.team.as_deref(),
            ),
            Principal::ConfigKey(name) => (Some(&self.joined[..self.split]), Some(&**name), None),
            Principal::Anonymous | Principal::Open => (None, None, None),
        };
        let provider = ended.served_by.as_ref().map_or("", |s| &*s.provider);
        // Tokens as reported; without a report, what the cost was estimated from.
        let usage = ended.usage.unwrap_or_default();
        let (input, output) = match ended.usage {
            Some(u) => (u.prompt_tokens, u.completion_tokens),
            None if ended.cost_estimated => (
                ended.estimated_input_tokens,
                u64::from(ended.streamed_chunks),
            ),
            None => (0, 0),
        };
        let count = |n: u64| i64::try_from(n).unwrap_or(i64::MAX);
        let micros = |d: Duration| i64::try_from(d.as_micros()).unwrap_or(i64::MAX);
        UsageRow {
            // Hex digits: always UTF-8.
            id: std::str::from_utf8(&self.id).unwrap_or_default(),
            at: ended
                .at
                .duration_since(UNIX_EPOCH)
                .map_or(0, |d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX)),
            // A header value's bytes are visible ASCII, tabs or (rarely) other
            // bytes: read as UTF-8 (a word at a time), not byte by byte.
            request_id: std::str::from_utf8(ended.request_id.as_bytes()).unwrap_or("-"),
            key_id,
            key_name,
            team_id,
            tags: &self.tags,
            endpoint: ended.endpoint,
            model: ended.model.as_deref().unwrap_or_default(),
            provider,
            deployment: &self.joined[self.split..],
            status: i32::from(ended.status),
            error_type: ended.error,
            input_tokens: count(input),
            cached_input_tokens: count(usage.cached_tokens),
            cache_write_tokens: count(usage.cache_write_tokens),
            reasoning_tokens: count(usage.reasoning_tokens),
            output_tokens: count(output),
            cost_micros: ended.cost_micros,
            saved_micros: ended.saved_micros,
            cost_estimated: ended.cost_estimated,
            latency_us: micros(ended.latency),
            ttft_us: ended.ttft.map(micros),
            attempts: i32::try_from(ended.attempts).unwrap_or(i32::MAX),
            cache: ended.cache.map(|c| c.as_str()),
            route: ended
                .route
                .as_ref()
                .and_then(|r| std::str::from_utf8(r.as_bytes()).ok()),
            stream: ended.stream,
        }
    }
}

/// The tags of an `x-switchyard-tags` value: comma-separated, trimmed, the
/// empty ones and repeats left out, at most [`MAX_TAGS`] of [`MAX_TAG_LEN`]
/// bytes (longer ones cut at a character boundary).
fn tags(header: &axum::http::HeaderValue) -> Vec<String> {
    let Ok(text) = header.to_str() else {
        return Vec::new();
    };
    let mut tags: Vec<String> = Vec::new();
    for tag in text.split(',').map(str::trim).filter(|t| !t.is_empty()) {
        let mut end = tag.len().min(MAX_TAG_LEN);
        while !tag.is_char_boundary(end) {
            end -= 1;
        }
        let tag = &tag[..end];
        if !tags.iter().any(|t| t == tag) {
            tags.push(tag.to_owned());
        }
        if tags.len() == MAX_TAGS {
            break;
        }
    }
    tags
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::http::HeaderValue;

    fn tags_of(value: &str) -> Vec<String> {
        tags(&HeaderValue::from_str(value).unwrap_or(HeaderValue::from_static("")))
    }

    #[test]
    fn tags_are_split_trimmed_deduplicated_and_bounded() {
        assert_eq!(tags_of("support, eu ,,support"), ["support", "eu"]);
        assert!(tags_of("").is_empty());
        let many: Vec<String> = (0..40).map(|i| format!("t{i}")).collect();
        assert_eq!(tags_of(&many.join(",")).len(), MAX_TAGS);
        assert_eq!(tags_of(&"x".repeat(100))[0].len(), MAX_TAG_LEN);
    }

    #[test]
    fn ids_are_unique_and_32_hex_digits() {
        let mut ids = Ids::new();
        let (a, b) = (ids.next(), ids.next());
        assert_ne!(a, b);
        assert!(a.iter().all(u8::is_ascii_hexdigit));
        let prefix = format!("{:016x}", ids.prefix);
        assert_eq!(&a[..16], prefix.as_bytes());
        assert_eq!(&a[16..], b"0000000000000001");
    }
}
