//! What the mock has seen: counters for `GET /mock/stats` and the last requests for
//! `GET /mock/requests`, both cleared by `POST /mock/reset`.

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::sync::{Mutex, MutexGuard, PoisonError};

use axum::http::{HeaderMap, Method, StatusCode, Uri, Version};
use bytes::Bytes;
use serde::Serialize;
use serde_json::value::RawValue;

/// How many requests `GET /mock/requests` remembers.
pub(crate) const LOG_CAPACITY: usize = 100;

/// Counters and the request log, behind one short-held lock.
#[derive(Debug, Default)]
pub(crate) struct Stats {
    inner: Mutex<Inner>,
}

#[derive(Debug, Default)]
struct Inner {
    requests: u64,
    by_path: HashMap<String, u64>,
    by_status: BTreeMap<u16, u64>,
    /// Oldest first, at most [`LOG_CAPACITY`] entries.
    log: VecDeque<LoggedRequest>,
}

/// A request as received; rendered to JSON only when someone asks.
#[derive(Debug)]
struct LoggedRequest {
    method: Method,
    version: Version,
    path: String,
    query: Option<String>,
    headers: HeaderMap,
    body: Bytes,
}

/// The body of `GET /mock/stats`.
#[derive(Debug, Serialize)]
pub(crate) struct StatsSnapshot {
    requests: u64,
    by_path: BTreeMap<String, u64>,
    by_status: BTreeMap<u16, u64>,
}

/// One entry of `GET /mock/requests`.
#[derive(Debug, Serialize)]
pub(crate) struct RequestRecord {
    method: String,
    /// `HTTP/1.1` or `HTTP/2.0`.
    version: String,
    path: String,
    /// The query string, when the URL has one.
    #[serde(skip_serializing_if = "Option::is_none")]
    query: Option<String>,
    headers: BTreeMap<String, String>,
    /// The body as sent when it is JSON, else null.
    body: Option<Box<RawValue>>,
}

impl Stats {
    /// Counts a request and remembers it (the body is shared, not copied).
    pub(crate) fn received(
        &self,
        method: &Method,
        uri: &Uri,
        version: Version,
        headers: &HeaderMap,
        body: Bytes,
    ) {
        let path = uri.path();
        let mut inner = self.lock();
        inner.requests += 1;
        match inner.by_path.get_mut(path) {
            Some(count) => *count += 1,
            None => {
                inner.by_path.insert(path.to_owned(), 1);
            }
        }
        if inner.log.len() == LOG_CAPACITY {
            inner.log.pop_front();
        }
        inner.log.push_back(LoggedRequest {
            method: method.clone(),
            version,
            path: path.to_owned(),
            query: uri.query().map(str::to_owned),
            headers: headers.clone(),
            body,
        });
    }

    /// Counts the status a request was answered with.
    pub(crate) fn answered(&self, status: StatusCode) {
        *self.lock().by_status.entry(status.as_u16()).or_default() += 1;
    }

    /// Zeroes the counters and forgets the requests.
    pub(crate) fn reset(&self) {
        *self.lock() = Inner::default();
    }

    /// The counters now.
    pub(crate) fn snapshot(&self) -> StatsSnapshot {
        let inner = self.lock();
        StatsSnapshot {
            requests: inner.requests,
            by_path: inner
                .by_path
                .iter()
                .map(|(path, count)| (path.clone(), *count))
                .collect(),
            by_status: inner.by_status.clone(),
        }
    }

    /// The remembered requests, oldest first.
    pub(crate) fn requests(&self) -> Vec<RequestRecord> {
        let inner = self.lock();
        inner.log.iter().map(LoggedRequest::render).collect()
    }

    fn lock(&self) -> MutexGuard<'_, Inner> {
        // The counters stay meaningful even if a holder panicked.
        self.inner.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

impl LoggedRequest {
    fn render(&self) -> RequestRecord {
        let mut headers = BTreeMap::<String, String>::new();
        for (name, value) in &self.headers {
            let value = String::from_utf8_lossy(value.as_bytes());
            headers
                .entry(name.as_str().to_owned())
                .and_modify(|joined| {
                    joined.push_str(", ");
                    joined.push_str(&value);
                })
                .or_insert_with(|| value.into_owned());
        }
        RequestRecord {
            method: self.method.to_string(),
            version: format!("{:?}", self.version),
            path: self.path.clone(),
            query: self.query.clone(),
            headers,
            body: serde_json::from_slice::<&RawValue>(&self.body)
                .ok()
                .map(RawValue::to_owned),
        }
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::panic)]
mod tests {
    use super::*;
    use axum::http::HeaderValue;
    use serde_json::json;

    fn receive(stats: &Stats, path: &str, body: &'static str) {
        let mut headers = HeaderMap::new();
        headers.insert("x-one", HeaderValue::from_static("1"));
        headers.append("x-many", HeaderValue::from_static("a"));
        headers.append("x-many", HeaderValue::from_static("b"));
        stats.received(
            &Method::POST,
            &path.parse::<Uri>().unwrap(),
            Version::HTTP_11,
            &headers,
            Bytes::from_static(body.as_bytes()),
        );
    }

    #[test]
    fn counts_by_path_and_status() {
        let stats = Stats::default();
        receive(&stats, "/v1/chat/completions", "{}");
        receive(&stats, "/v1/chat/completions", "{}");
        receive(&stats, "/v1/embeddings", "{}");
        stats.answered(StatusCode::OK);
        stats.answered(StatusCode::OK);
        stats.answered(StatusCode::TOO_MANY_REQUESTS);
        assert_eq!(
            serde_json::to_value(stats.snapshot()).unwrap(),
            json!({
                "requests": 3,
                "by_path": {"/v1/chat/completions": 2, "/v1/embeddings": 1},
                "by_status": {"200": 2, "429": 1},
            })
        );
        stats.reset();
        assert_eq!(
            serde_json::to_value(stats.snapshot()).unwrap(),
            json!({"requests": 0, "by_path": {}, "by_status": {}})
        );
        assert!(stats.requests().is_empty());
    }

    #[test]
    fn log_renders_headers_and_json_bodies() {
        let stats = Stats::default();
        receive(
            &stats,
            "/v1/chat/completions",
            r#"{"model": "m", "x": [1]}"#,
        );
        receive(&stats, "/v1/models", "");
        assert_eq!(
            serde_json::to_value(stats.requests()).unwrap(),
            json!([
                {
                    "method": "POST",
                    "version": "HTTP/1.1",
                    "path": "/v1/chat/completions",
                    "headers": {"x-one": "1", "x-many": "a, b"},
                    "body": {"model": "m", "x": [1]},
                },
                {
                    "method": "POST",
                    "version": "HTTP/1.1",
                    "path": "/v1/models",
                    "headers": {"x-one": "1", "x-many": "a, b"},
                    "body": null,
                },
            ])
        );
    }

    #[test]
    fn log_keeps_the_last_hundred() {
        let stats = Stats::default();
        for i in 0..(LOG_CAPACITY + 30) {
            receive(&stats, &format!("/p/{i}"), "{}");
        }
        let log = stats.requests();
        assert_eq!(log.len(), LOG_CAPACITY);
        assert_eq!(log[0].path, "/p/30");
        assert_eq!(
            log[LOG_CAPACITY - 1].path,
            format!("/p/{}", LOG_CAPACITY + 29)
        );
        assert_eq!(stats.snapshot().requests, (LOG_CAPACITY + 30) as u64);
    }
}
