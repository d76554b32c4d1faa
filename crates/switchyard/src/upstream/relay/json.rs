//! A JSON answer: relayed to the client as it arrives, or read whole for translation.

use std::sync::Arc;

use axum::body::Body;
use bytes::{Bytes, BytesMut};
use hyper::body::Body as HttpBody;
use switchyard_providers::anthropic;
use switchyard_providers::openai::{usage_in_tail, usage_of_response};

use super::RelayLimits;
use super::reader::{Batch, Reader};
use crate::error::GatewayError;
use crate::request::RequestCx;
use crate::upstream::{ProviderClient, UpstreamError};

/// Bodies up to this size are kept (as shared chunks, not copied) to read their usage.
const WHOLE_BODY_LIMIT: usize = 1 << 20;
/// Of a larger body, this much of the end is kept: usage comes last.
const TAIL_BYTES: usize = 64 << 10;

/// Relays a JSON body as it arrives; a body cut by the upstream or a timeout
/// cuts the client's connection too (an HTTP/1.1 body cannot carry an error).
pub fn relay_json<B>(
    upstream: axum::http::Response<B>,
    provider: Arc<ProviderClient>,
    limits: RelayLimits,
    usage: BodyUsage,
    log: RequestCx,
) -> Body
where
    B: HttpBody<Data = Bytes> + Send + Unpin + 'static,
    B::Error: std::error::Error + Send + 'static,
{
    let relay = JsonRelay {
        usage,
        expected: HttpBody::size_hint(upstream.body()).exact(),
        reader: Reader::new(upstream, provider, &limits),
        relayed: 0,
        chunks: Vec::new(),
        tail: None,
        log: Some(log),
    };
    Body::from_stream(futures_util::stream::unfold(
        relay,
        |mut relay| async move { relay.next().await.map(|item| (item, relay)) },
    ))
}

/// Reads a whole upstream body, for translation, within the idle and total
/// timeouts; a body longer than `limit` bytes is refused.
pub async fn read_whole<B>(
    upstream: axum::http::Response<B>,
    provider: Arc<ProviderClient>,
    limits: &RelayLimits,
    limit: usize,
) -> Result<Bytes, GatewayError>
where
    B: HttpBody<Data = Bytes> + Unpin,
    B::Error: std::error::Error + 'static,
{
    let mut reader = Reader::new(upstream, provider.clone(), limits);
    let mut body = BytesMut::new();
    let mut over = false;
    loop {
        let mut take = |chunk: Bytes| {
            if body.len() + chunk.len() > limit {
                over = true;
            } else {
                body.extend_from_slice(&chunk);
            }
        };
        match reader.read(0, &mut take).await {
            Ok(true) if over => {
                return Err(GatewayError::Upstream(UpstreamError::TooLarge {
                    provider: provider.name.to_string(),
                    limit,
                }));
            }
            Ok(true) => {}
            Ok(false) => return Ok(body.freeze()),
            Err(e) => return Err(e.into_gateway()),
        }
    }
}

/// Where the usage of a body passed through is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BodyUsage {
    /// OpenAI's `usage` object, last in the body.
    OpenAi,
    /// Anthropic's `usage` of a message.
    Anthropic,
}

struct JsonRelay<B> {
    usage: BodyUsage,
    reader: Reader<B>,
    /// The upstream's `content-length`: once that much is relayed the body is over
    /// (the server stops polling a body whose declared length is reached).
    expected: Option<u64>,
    relayed: u64,
    /// The body so far, while it is small.
    chunks: Vec<Bytes>,
    /// The end of the body, once it is large.
    tail: Option<BytesMut>,
    /// `None` once the body is over.
    log: Option<RequestCx>,
}

impl<B> JsonRelay<B>
where
    B: HttpBody<Data = Bytes> + Unpin,
    B::Error: std::error::Error + 'static,
{
    async fn next(&mut self) -> Option<Result<Bytes, std::io::Error>> {
        let mut log = self.log.take()?;
        let mut batch = Batch::default();
        // A JSON answer arrives in a frame or a few: no waiting to batch them.
        match self.reader.read(0, &mut |chunk| batch.add(chunk)).await {
            Ok(more) => {
                let Some(chunk) = batch.into_bytes() else {
                    self.complete(log);
                    return None;
                };
                log.first_token();
                log.capture(&chunk);
                self.keep(&chunk);
                if !more || self.expected.is_some_and(|len| self.relayed >= len) {
                    self.complete(log);
                } else {
                    self.log = Some(log);
                }
                Some(Ok(chunk))
            }
            Err(e) => {
                let error = e.into_gateway();
                log.break_off(error.kind(), &error.to_string());
                Some(Err(std::io::Error::other(error.to_string())))
            }
        }
    }

    fn keep(&mut self, chunk: &Bytes) {
        self.relayed += chunk.len() as u64;
        if let Some(tail) = &mut self.tail {
            tail.extend_from_slice(chunk);
            if tail.len() > 2 * TAIL_BYTES {
                let _ = tail.split_to(tail.len() - TAIL_BYTES);
            }
        } else if self.relayed as usize <= WHOLE_BODY_LIMIT {
            self.chunks.push(chunk.clone());
        } else {
            let mut tail = BytesMut::new();
            for kept in self.chunks.drain(..) {
                tail.extend_from_slice(&kept);
            }
            tail.extend_from_slice(chunk);
            self.tail = Some(tail);
        }
    }

    fn complete(&mut self, mut log: RequestCx) {
        let usage = match (self.usage, &self.tail, self.chunks.as_slice()) {
            (BodyUsage::OpenAi, Some(tail), _) => usage_in_tail(tail),
            (BodyUsage::OpenAi, None, [one]) => usage_of_response(one),
            (BodyUsage::OpenAi, None, many) => usage_of_response(&many.concat()),
            // A message larger than the kept part has no readable usage.
            (BodyUsage::Anthropic, Some(_), _) => None,
            (BodyUsage::Anthropic, None, [one]) => {
                anthropic::usage_of_message(one).map(|u| u.totals())
            }
            (BodyUsage::Anthropic, None, many) => {
                anthropic::usage_of_message(&many.concat()).map(|u| u.totals())
            }
        };
        if let Some(usage) = usage {
            log.usage(usage);
        }
        log.complete();
    }
}
