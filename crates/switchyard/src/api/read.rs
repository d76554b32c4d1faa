//! Reading a proxied request: its body (bounded in size and time) and the
//! headers the gateway acts on.

use std::time::Duration;

use axum::http::{HeaderMap, HeaderValue, Request, header};
use bytes::Bytes;
use http_body_util::{BodyExt, LengthLimitError, Limited};
use hyper::body::Incoming;

use crate::error::GatewayError;
use crate::headers::{ANTHROPIC_BETA, HOPS, MAX_COST, TASK};

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

/// `x-switchyard-hops` for the provider (gateways passed, this one
/// included), or the loop refused past `max_hops`.
pub(super) fn hops(headers: &HeaderMap, max_hops: u32) -> Result<HeaderValue, GatewayError> {
    let passed = headers
        .get(&HOPS)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.trim().parse::<u32>().ok())
        .unwrap_or(0);
    if passed >= max_hops {
        return Err(GatewayError::LoopDetected(passed));
    }
    Ok(HeaderValue::from(passed + 1))
}

/// `x-switchyard-task`, when sent.
pub(super) fn task(headers: &HeaderMap) -> Option<String> {
    headers
        .get(&TASK)
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned)
}

/// `x-switchyard-max-cost`, when sent: a non-negative number of USD.
pub(super) fn max_cost(headers: &HeaderMap) -> Result<Option<f64>, GatewayError> {
    let Some(value) = headers.get(&MAX_COST) else {
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

/// `metadata.task` of an OpenAI or Anthropic body, for `routes:` rules.
pub(super) fn task_in(body: &[u8]) -> Option<String> {
    #[derive(serde::Deserialize)]
    struct Metadata {
        task: Option<String>,
    }
    #[derive(serde::Deserialize)]
    struct Probe {
        metadata: Option<Metadata>,
    }
    serde_json::from_slice::<Probe>(body).ok()?.metadata?.task
}

/// `metadata.tags` of a body — a comma-separated string or an array of
/// strings — as an `x-switchyard-tags` value, for the usage log. The body is
/// read again only when it mentions `"metadata"` (a vectorised search).
pub(super) fn tags_in(body: &[u8]) -> Option<HeaderValue> {
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
    #[derive(serde::Deserialize)]
    struct Probe {
        metadata: Option<Metadata>,
    }
    memchr::memmem::find(body, b"\"metadata\"")?;
    let joined = match serde_json::from_slice::<Probe>(body).ok()?.metadata?.tags? {
        Tags::Joined(text) => text,
        Tags::Each(tags) => tags.join(","),
    };
    HeaderValue::from_str(&joined).ok()
}

/// Every `anthropic-beta` header of the client, joined.
pub(super) fn anthropic_beta(headers: &HeaderMap) -> Option<HeaderValue> {
    let mut values = headers.get_all(&ANTHROPIC_BETA).iter();
    let first = values.next()?;
    let rest: Vec<&[u8]> = values.map(HeaderValue::as_bytes).collect();
    if rest.is_empty() {
        return Some(first.clone());
    }
    let mut joined = first.as_bytes().to_vec();
    for value in rest {
        joined.extend_from_slice(b", ");
        joined.extend_from_slice(value);
    }
    HeaderValue::from_bytes(&joined).ok()
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn tags_are_read_from_metadata_as_a_string_or_an_array() {
        let tags = |body: &str| tags_in(body.as_bytes()).map(|v| v.to_str().unwrap().to_owned());
        assert_eq!(
            tags(r#"{"model":"m","metadata":{"tags":"a, b"}}"#).as_deref(),
            Some("a, b")
        );
        assert_eq!(
            tags(r#"{"metadata":{"tags":["a","b"],"user":"u"}}"#).as_deref(),
            Some("a,b")
        );
        assert_eq!(tags(r#"{"metadata":{"task":"x"}}"#), None);
        assert_eq!(tags(r#"{"model":"m"}"#), None);
        assert_eq!(tags(r#"{"metadata":{"tags":7}}"#), None);
    }

    #[test]
    fn every_anthropic_beta_header_is_passed_on() {
        let mut headers = HeaderMap::new();
        assert!(anthropic_beta(&headers).is_none());
        headers.append(&ANTHROPIC_BETA, HeaderValue::from_static("a-2025"));
        assert_eq!(anthropic_beta(&headers).unwrap(), "a-2025");
        headers.append(&ANTHROPIC_BETA, HeaderValue::from_static("b-2025"));
        assert_eq!(anthropic_beta(&headers).unwrap(), "a-2025, b-2025");
    }

    #[test]
    fn hops_and_max_cost_are_read_or_refused() {
        let mut headers = HeaderMap::new();
        assert_eq!(hops(&headers, 3).unwrap(), "1");
        headers.insert(&HOPS, HeaderValue::from_static("3"));
        assert!(matches!(
            hops(&headers, 3),
            Err(GatewayError::LoopDetected(3))
        ));
        assert_eq!(max_cost(&headers).unwrap(), None);
        headers.insert(&MAX_COST, HeaderValue::from_static(" 0.25 "));
        assert_eq!(max_cost(&headers).unwrap(), Some(0.25));
        headers.insert(&MAX_COST, HeaderValue::from_static("-1"));
        assert!(matches!(max_cost(&headers), Err(GatewayError::BadMaxCost)));
    }
}
