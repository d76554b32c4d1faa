//! The fill of a miss: the bytes the client got, kept (as shared chunks,
//! not copied) up to `cache.max_entry_bytes`, and turned into an entry when
//! the request ends complete — never for an error, a cut stream, or an
//! answer the model's rules leave out.

use std::sync::Arc;
use std::time::Duration;

use bytes::{Bytes, BytesMut};

use super::embeddings::Items;
use super::entry::{Entry, Form};
use super::flight::Leader;
use super::key::Key;
use super::semantic::Probe;
use super::{Cache, FillResult};
use crate::error::Dialect;
use crate::request::{Ending, RequestRecord};

/// Which answers a model keeps besides plain ones.
#[derive(Debug, Clone, Copy)]
pub struct Keep {
    /// Answers that call tools.
    pub tool_calls: bool,
    /// Answers cut by their token cap.
    pub length: bool,
}

/// The fill of one miss, carried by the request's context to its end.
#[derive(Debug)]
pub struct Fill {
    cache: Arc<Cache>,
    key: Key,
    ttl: Duration,
    keep: Keep,
    dialect: Dialect,
    stream: bool,
    parts: Vec<Bytes>,
    len: usize,
    over: bool,
    leader: Option<Leader>,
    /// An embeddings batch: stored item by item.
    items: Option<Box<Items>>,
    /// The semantic lookup of the request, and its prompt's embedding once
    /// had: kept with the answer.
    probe: Option<(Probe, Option<Vec<f32>>)>,
}

impl Fill {
    /// The fill of `key` for a request in `dialect` (a stream when `stream`).
    pub(super) fn new(
        cache: Arc<Cache>,
        key: Key,
        ttl: Duration,
        keep: Keep,
        (dialect, stream): (Dialect, bool),
        leader: Option<Leader>,
    ) -> Self {
        Self {
            cache,
            key,
            ttl,
            keep,
            dialect,
            stream,
            parts: Vec::new(),
            len: 0,
            over: false,
            leader,
            items: None,
            probe: None,
        }
    }

    /// Carries the semantic lookup of the request.
    pub(super) fn probing(mut self, probe: Probe) -> Self {
        self.probe = Some((probe, None));
        self
    }

    /// The semantic lookup the request is to make, if any.
    pub fn probe(&self) -> Option<&Probe> {
        self.probe.as_ref().map(|(probe, _)| probe)
    }

    /// Keeps the prompt's embedding, stored with the answer.
    pub fn remember(&mut self, vector: Vec<f32>) {
        if let Some((_, kept)) = &mut self.probe {
            *kept = Some(vector);
        }
    }

    /// The request was answered from the cache after all (a semantic
    /// match): the requests waiting on it get the same answer.
    pub fn answered_by(mut self, entry: Arc<Entry>) {
        if let Some(leader) = self.leader.take() {
            leader.land(entry);
        }
    }

    /// Stores the answer item by item, for an embeddings batch.
    pub(super) fn per_item(mut self, items: Box<Items>) -> Self {
        self.items = Some(items);
        self
    }

    /// Keeps `bytes`, sent to the client, unless the answer outgrew the limit.
    pub fn capture(&mut self, bytes: &Bytes) {
        if self.over {
            return;
        }
        self.len += bytes.len();
        if self.len > self.cache.settings.max_entry_bytes {
            self.over = true;
            self.parts = Vec::new();
            return;
        }
        self.parts.push(bytes.clone());
    }

    /// The request ended: stores its answer when it can be, and lands the
    /// flight it leads (waiters otherwise go on by themselves).
    pub fn finish(self, record: &RequestRecord, cost_micros: i64) {
        if let Some(items) = &self.items {
            let stored = self
                .whole(record)
                .and_then(|body| items.store(&self.cache, &body, record.usage, cost_micros));
            self.cache
                .count_fill(stored.map_or_else(|e| e, |()| FillResult::Stored));
            return;
        }
        let result = self.entry(record, cost_micros);
        self.cache.count_fill(match &result {
            Ok(_) => FillResult::Stored,
            Err(result) => *result,
        });
        if let Ok(entry) = result {
            let entry = Arc::new(entry);
            self.cache.store(self.key, entry.clone(), self.ttl);
            if let Some((probe, Some(vector))) = self.probe {
                self.cache
                    .remember(probe.bucket, self.key, vector, self.ttl);
            }
            if let Some(leader) = self.leader {
                leader.land(entry);
            }
        }
    }

    /// The whole answer the client got, when the request ended whole.
    fn whole(&self, record: &RequestRecord) -> Result<Bytes, FillResult> {
        if record.ending != Ending::Completed || record.status != 200 || record.error.is_some() {
            return Err(FillResult::Error);
        }
        if self.over {
            return Err(FillResult::TooLarge);
        }
        // Copied to a buffer of its own: a chunk relayed may be a slice of a
        // far larger read buffer, which a stored entry would keep alive.
        Ok(match self.parts.as_slice() {
            [one] => Bytes::copy_from_slice(one),
            many => {
                let mut body = BytesMut::with_capacity(self.len);
                for part in many {
                    body.extend_from_slice(part);
                }
                body.freeze()
            }
        })
    }

    fn entry(&self, record: &RequestRecord, cost_micros: i64) -> Result<Entry, FillResult> {
        let body = self.whole(record)?;
        let stored_at = unix_millis();
        // How it finished, read by a byte search (no parse of the answer).
        self.check(finish_reason(&body, self.dialect))?;
        // A stream is kept as the client got it: made a completion on its
        // first hit (a miss pays no decoding).
        let form = if self.stream {
            Form::Events
        } else {
            Form::Json
        };
        Ok(Entry {
            body,
            form,
            dialect: self.dialect,
            usage: record.usage,
            cost_micros,
            stored_at,
        })
    }

    /// Whether the model keeps an answer that finished for `reason`.
    fn check(&self, reason: Option<&str>) -> Result<(), FillResult> {
        match reason {
            Some("length" | "max_tokens") if !self.keep.length => Err(FillResult::Length),
            Some("tool_calls" | "tool_use" | "function_call") if !self.keep.tool_calls => {
                Err(FillResult::ToolCalls)
            }
            Some("content_filter" | "refusal") => Err(FillResult::Filtered),
            _ => Ok(()),
        }
    }
}

/// How an answer (a JSON body, OpenAI chunks or Anthropic events, as the
/// client got it) finished: the last string value of its dialect's field
/// (`finish_reason`, `stop_reason`), searched from the end. An answer holds
/// one choice (requests for more go without the cache), and a stream gives
/// its reason in its last events, so the search stops near the end instead
/// of reading every event. A pattern with its quotes cannot stand inside a
/// JSON string (whose quotes are escaped), so only the field itself is found.
fn finish_reason(body: &[u8], dialect: Dialect) -> Option<&str> {
    let field: &[u8] = match dialect {
        Dialect::OpenAi => b"\"finish_reason\":",
        Dialect::Anthropic => b"\"stop_reason\":",
    };
    // Searched from the end by its underscore, a byte rare in JSON's syntax:
    // a vectorised search for one byte is far cheaper than a backwards
    // substring search.
    let underscore = field.iter().position(|&b| b == b'_')?;
    memchr::memrchr_iter(b'_', body).find_map(|at| {
        let start = at.checked_sub(underscore)?;
        let rest = body.get(start..)?.strip_prefix(field)?.trim_ascii_start();
        let rest = rest.strip_prefix(b"\"")?;
        let end = memchr::memchr(b'"', rest)?;
        std::str::from_utf8(&rest[..end]).ok()
    })
}

/// Now, in Unix milliseconds.
pub(super) fn unix_millis() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
}

#[cfg(test)]
mod tests {
    use super::finish_reason;
    use crate::error::Dialect;

    #[test]
    fn an_answers_finish_reason_is_found_and_quoted_text_is_not() {
        let openai = br#"data: {"choices":[{"delta":{"content":"say \"finish_reason\":\"length\""},"finish_reason":null}]}

data: {"choices":[{"delta":{},"finish_reason": "tool_calls"}]}

data: [DONE]
"#;
        assert_eq!(finish_reason(openai, Dialect::OpenAi), Some("tool_calls"));
        let anthropic = br#"event: message_delta
data: {"type":"message_delta","delta":{"stop_reason":"max_tokens","stop_sequence":null}}
"#;
        assert_eq!(
            finish_reason(anthropic, Dialect::Anthropic),
            Some("max_tokens")
        );
        // Before its last event, an Anthropic stream says `null`.
        let started = br#"data: {"type":"message_start","message":{"stop_reason":null}}
"#;
        assert_eq!(finish_reason(started, Dialect::Anthropic), None);
        let json = br#"{"id":"c","choices":[{"index":0,"message":{"content":"hi"},"finish_reason":"stop"}]}"#;
        assert_eq!(finish_reason(json, Dialect::OpenAi), Some("stop"));
        let usage_last = br#"data: {"choices":[{"delta":{},"finish_reason":"length"}]}

data: {"choices":[],"usage":{"prompt_tokens":1}}

data: [DONE]
"#;
        assert_eq!(finish_reason(usage_last, Dialect::OpenAi), Some("length"));
    }
}
