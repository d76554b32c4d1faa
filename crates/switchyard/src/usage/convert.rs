//! An ended request made a [`UsageRecord`], on the writer's task.

use std::time::{Duration, UNIX_EPOCH};

use switchyard_store::UsageRecord;

use super::Ended;
use crate::request::Principal;

/// Tags a request may carry at most, and the length of one; the rest are left out.
const MAX_TAGS: usize = 16;
const MAX_TAG_LEN: usize = 64;

/// The digits of an id.
const HEX: &[u8; 16] = b"0123456789abcdef";

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
    fn next(&mut self) -> String {
        self.next += 1;
        let mut id = String::with_capacity(32);
        for word in [self.prefix, self.next] {
            for shift in (0..16).rev() {
                let digit = (word >> (shift * 4)) & 0xf;
                id.push(char::from(HEX[usize::try_from(digit).unwrap_or(0)]));
            }
        }
        id
    }
}

/// The record of `ended`, with a new id.
pub(super) fn record(ended: Ended, ids: &mut Ids) -> UsageRecord {
    let (key_id, key_name, team_id) = match &ended.principal {
        Principal::VirtualKey(tenant) => (
            Some(String::from(&*tenant.key.id)),
            Some(String::from(&*tenant.key.name)),
            tenant.key.team.as_deref().map(String::from),
        ),
        Principal::ConfigKey(name) => (
            Some(["config:", name].concat()),
            Some(String::from(&**name)),
            None,
        ),
        Principal::Anonymous | Principal::Open => (None, None, None),
    };
    let (provider, deployment) = ended.served_by.as_ref().map_or_else(
        || (String::new(), String::new()),
        |s| {
            (
                String::from(&*s.provider),
                [&*s.provider, "/", &s.upstream_model].concat(),
            )
        },
    );
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
    UsageRecord {
        id: ids.next(),
        at: ended
            .at
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX)),
        request_id: ended.request_id.to_str().unwrap_or("-").to_owned(),
        key_id,
        key_name,
        team_id,
        tags: ended.tags.as_ref().map(tags).unwrap_or_default(),
        endpoint: ended.endpoint.to_owned(),
        model: ended.model.unwrap_or_default(),
        provider,
        deployment,
        status: i32::from(ended.status),
        error_type: ended.error.map(str::to_owned),
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
        cache: ended.cache.map(|c| c.as_str().to_owned()),
        route: ended
            .route
            .as_ref()
            .and_then(|r| r.to_str().ok())
            .map(str::to_owned),
        stream: ended.stream,
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
        assert_eq!(a.len(), 32);
        assert!(a.bytes().all(|c| c.is_ascii_hexdigit()));
    }
}
