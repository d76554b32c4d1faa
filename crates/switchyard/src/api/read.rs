//! Reading a proxied request: its body (bounded in size and time) and the
//! headers the gateway acts on.

use std::time::Duration;

use axum::http::{HeaderMap, HeaderValue, Request, header};
use bytes::Bytes;
use http_body_util::{BodyExt, LengthLimitError, Limited};
use hyper::body::Incoming;

use crate::cache::Ask;
use crate::error::GatewayError;
use crate::headers::{ANTHROPIC_BETA, CACHE_TTL, HOPS, MAX_COST, TAGS, TASK, TRACEPARENT};

/// The whole request body within `timeout`, refused with 413 past `limit` bytes.
pub(super) async fn body(
    request: Request<Incoming>,
    limit: usize,
    timeout: Duration,
) -> Result<Bytes, GatewayError> {
    match tokio::time::timeout(timeout, read_body(request, limit)).await {
        Err(_) => Err(GatewayError::BodyTimeout(timeout)),
        Ok(read) => read,
    }
}

async fn read_body(request: Request<Incoming>, limit: usize) -> Result<Bytes, GatewayError> {
    let declared = request
        .headers()
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    let mut body = request.into_body();
    if let Some(len) = declared.filter(|len| *len > limit as u64) {
        // A body up to twice the limit is read on and thrown away (for a
        // second at most), so that the client, still sending, gets the 413
        // rather than a reset connection, and may keep the connection.
        if len <= 2 * limit as u64 {
            discard(&mut body).await;
        }
        return Err(GatewayError::PayloadTooLarge { limit });
    }
    match Limited::new(body, limit).collect().await {
        Ok(collected) => Ok(collected.to_bytes()),
        Err(e) if e.downcast_ref::<LengthLimitError>().is_some() => {
            Err(GatewayError::PayloadTooLarge { limit })
        }
        Err(e) => Err(GatewayError::BodyRead(e.to_string())),
    }
}

/// How long a refused request body is read on, to be thrown away.
const DISCARD_TIME: Duration = Duration::from_secs(1);

/// Reads `body` to its end and drops it, for [`DISCARD_TIME`] at most.
async fn discard(body: &mut Incoming) {
    let read = async { while let Some(Ok(_)) = body.frame().await {} };
    let _ = tokio::time::timeout(DISCARD_TIME, read).await;
}

/// The headers of a proxied request that steer it (its credentials aside),
/// found in one pass over the client's headers: a lookup of each would hash
/// its name, and most are not sent. Of a repeated header the first value
/// counts, as a lookup's would; `cache-control` and `anthropic-beta` count
/// every value.
#[derive(Default)]
pub(super) struct Steering<'h> {
    /// `x-switchyard-hops`.
    hops: Option<&'h HeaderValue>,
    /// `x-switchyard-task`.
    task: Option<&'h HeaderValue>,
    /// `x-switchyard-max-cost`.
    max_cost: Option<&'h HeaderValue>,
    /// `x-switchyard-tags`.
    pub(super) tags: Option<&'h HeaderValue>,
    /// `traceparent`.
    pub(super) traceparent: Option<&'h HeaderValue>,
    /// `cache-control` and `x-switchyard-cache-ttl`.
    pub(super) cache: Ask,
    /// `x-switchyard-cache-ttl`.
    cache_ttl: Option<&'h HeaderValue>,
    /// The first `anthropic-beta`, and whether more followed.
    beta: Option<&'h HeaderValue>,
    more_beta: bool,
}

impl<'h> Steering<'h> {
    /// Reads `headers` once.
    pub(super) fn of(headers: &'h HeaderMap) -> Self {
        let mut found = Self::default();
        for (name, value) in headers {
            let slot = if name == header::CACHE_CONTROL {
                found.cache.control(value);
                continue;
            } else if name == CACHE_TTL {
                &mut found.cache_ttl
            } else if name == ANTHROPIC_BETA {
                found.more_beta |= found.beta.is_some();
                &mut found.beta
            } else if name == HOPS {
                &mut found.hops
            } else if name == TASK {
                &mut found.task
            } else if name == MAX_COST {
                &mut found.max_cost
            } else if name == TAGS {
                &mut found.tags
            } else if name == TRACEPARENT {
                &mut found.traceparent
            } else {
                continue;
            };
            slot.get_or_insert(value);
        }
        found.cache.ttl = found.cache_ttl.and_then(Ask::ttl_of);
        found
    }

    /// `x-switchyard-hops` for the provider (gateways passed, this one
    /// included), or the loop refused past `max_hops`.
    pub(super) fn hops(&self, max_hops: u32) -> Result<HeaderValue, GatewayError> {
        let passed = self
            .hops
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.trim().parse::<u32>().ok())
            .unwrap_or(0);
        if passed >= max_hops {
            return Err(GatewayError::LoopDetected(passed));
        }
        Ok(HeaderValue::from(passed + 1))
    }

    /// `x-switchyard-task`, when sent.
    pub(super) fn task(&self) -> Option<String> {
        self.task.and_then(|v| v.to_str().ok()).map(str::to_owned)
    }

    /// `x-switchyard-max-cost`, when sent: a non-negative number of USD.
    pub(super) fn max_cost(&self) -> Result<Option<f64>, GatewayError> {
        let Some(value) = self.max_cost else {
            return Ok(None);
        };
        value
            .to_str()
            .ok()
            .and_then(|v| v.trim().parse::<f64>().ok())
            .filter(|max| max.is_finite() && *max >= 0.0)
            .map(Some)
            .ok_or(GatewayError::BadMaxCost)
    }

    /// Every `anthropic-beta` header of the client (in `headers`, the map
    /// this was read from), joined.
    pub(super) fn anthropic_beta(&self, headers: &HeaderMap) -> Option<HeaderValue> {
        let first = self.beta?;
        if !self.more_beta {
            return Some(first.clone());
        }
        let mut joined = Vec::new();
        for value in headers.get_all(&ANTHROPIC_BETA) {
            if !joined.is_empty() {
                joined.extend_from_slice(b", ");
            }
            joined.extend_from_slice(value.as_bytes());
        }
        HeaderValue::from_bytes(&joined).ok()
    }
}

/// `task` of a request's `metadata` value (its JSON text), for `routes:` rules.
pub(super) fn task_in(metadata: &[u8]) -> Option<String> {
    #[derive(serde::Deserialize)]
    struct Metadata {
        task: Option<String>,
    }
    serde_json::from_slice::<Option<Metadata>>(metadata)
        .ok()??
        .task
}

/// `tags` of a request's `metadata` value (its JSON text) — a comma-separated
/// string or an array of strings — as an `x-switchyard-tags` value, for the
/// usage log.
pub(super) fn tags_in(metadata: &[u8]) -> Option<HeaderValue> {
    #[derive(serde::Deserialize)]
    #[serde(untagged)]
    enum Tags {
        Joined(String),
        Each(Vec<String>),
    }
    #[derive(serde::Deserialize)]
    struct Metadata {
        tags: Option<Tags>,
    }
    let joined = match serde_json::from_slice::<Option<Metadata>>(metadata)
        .ok()??
        .tags?
    {
        Tags::Joined(text) => text,
        Tags::Each(tags) => tags.join(","),
    };
    HeaderValue::from_str(&joined).ok()
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn tags_are_read_from_metadata_as_a_string_or_an_array() {
        let tags =
            |metadata: &str| tags_in(metadata.as_bytes()).map(|v| v.to_str().unwrap().to_owned());
        assert_eq!(tags(r#"{"tags":"a, b"}"#).as_deref(), Some("a, b"));
        assert_eq!(
            tags(r#"{"tags":["a","b"],"user":"u"}"#).as_deref(),
            Some("a,b")
        );
        assert_eq!(tags(r#"{"task":"x"}"#), None);
        assert_eq!(tags("null"), None);
        assert_eq!(tags(r#"{"tags":7}"#), None);
        assert_eq!(tags(r#"{"tags":"a\nb"}"#), None);
    }

    #[test]
    fn the_task_is_read_from_metadata() {
        assert_eq!(
            task_in(br#"{"task":"classify","tags":"x"}"#).as_deref(),
            Some("classify")
        );
        assert_eq!(task_in(br#"{"tags":"x"}"#), None);
        assert_eq!(task_in(b"null"), None);
        assert_eq!(task_in(b"[1]"), None);
    }

    #[test]
    fn every_anthropic_beta_header_is_passed_on() {
        let mut headers = HeaderMap::new();
        let beta = |headers: &HeaderMap| Steering::of(headers).anthropic_beta(headers);
        assert!(beta(&headers).is_none());
        headers.append(&ANTHROPIC_BETA, HeaderValue::from_static("a-2025"));
        assert_eq!(beta(&headers).unwrap(), "a-2025");
        headers.append(&ANTHROPIC_BETA, HeaderValue::from_static("b-2025"));
        assert_eq!(beta(&headers).unwrap(), "a-2025, b-2025");
    }

    #[test]
    fn hops_and_max_cost_are_read_or_refused() {
        let mut headers = HeaderMap::new();
        assert_eq!(Steering::of(&headers).hops(3).unwrap(), "1");
        headers.insert(&HOPS, HeaderValue::from_static("3"));
        assert!(matches!(
            Steering::of(&headers).hops(3),
            Err(GatewayError::LoopDetected(3))
        ));
        assert_eq!(Steering::of(&headers).max_cost().unwrap(), None);
        headers.insert(&MAX_COST, HeaderValue::from_static(" 0.25 "));
        assert_eq!(Steering::of(&headers).max_cost().unwrap(), Some(0.25));
        headers.insert(&MAX_COST, HeaderValue::from_static("-1"));
        assert!(matches!(
            Steering::of(&headers).max_cost(),
            Err(GatewayError::BadMaxCost)
        ));
    }

    #[test]
    fn one_pass_finds_each_header_and_keeps_the_first_of_a_repeated_one() {
        let mut headers = HeaderMap::new();
        for (name, value) in [
            ("authorization", "Bearer k"),
            ("x-switchyard-task", "classify"),
            ("cache-control", "no-cache"),
            ("x-switchyard-tags", "a,b"),
            ("x-switchyard-cache-ttl", "5m"),
            (
                "traceparent",
                "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01",
            ),
            ("x-switchyard-task", "summarize"),
            ("cache-control", "No-Store"),
            ("x-switchyard-cache-ttl", "1s"),
        ] {
            headers.append(name, HeaderValue::from_static(value));
        }
        let found = Steering::of(&headers);
        assert_eq!(found.task().as_deref(), Some("classify"));
        assert_eq!(found.tags.unwrap(), "a,b");
        assert!(
            found
                .traceparent
                .unwrap()
                .as_bytes()
                .starts_with(b"00-0af7")
        );
        assert_eq!(
            found.cache,
            Ask {
                no_cache: true,
                no_store: true,
                ttl: Some(std::time::Duration::from_secs(300)),
            }
        );
        assert!(found.anthropic_beta(&headers).is_none());
        let empty = HeaderMap::new();
        let none = Steering::of(&empty);
        assert!(none.task().is_none() && none.tags.is_none() && none.traceparent.is_none());
        assert_eq!(none.cache, Ask::default());
    }
}
