//! Streaming a provider's answer back to the client, chunk by chunk, with the
//! idle and total timeouts, and reading usage on the way.

use std::convert::Infallible;
use std::pin::Pin;
use std::sync::Arc;
use std::task::Poll;
use std::time::Duration;

use axum::body::Body;
use bytes::{Bytes, BytesMut};
use futures_util::FutureExt;
use http_body_util::BodyExt;
use hyper::body::Incoming;
use switchyard_providers::anthropic::{self, EventWatch};
use switchyard_providers::openai;
use switchyard_providers::openai::chat::ChatChunk;
use switchyard_providers::openai::{
    StreamEvent, classify_event, usage_in_tail, usage_of_response, without_usage,
};
use switchyard_providers::sse::{SseEvent, SseParser};
use switchyard_providers::translate::{Fault, Progress, StreamDecoder, StreamEncoder, StreamError};
use tokio::sync::mpsc;
use tokio::time::{Instant, Sleep};
use tokio_util::sync::{CancellationToken, WaitForCancellationFutureOwned};

use super::{ProviderClient, TimeoutPhase, UpstreamError, UpstreamResponse};
use crate::error::{Dialect, Form, GatewayError, render};
use crate::request::RequestCx;
use crate::request::catch_panic;

/// Limits that apply while relaying one response.
#[derive(Debug, Clone)]
pub struct RelayLimits {
    /// Longest silence between two upstream chunks.
    pub idle: Duration,
    /// When the whole exchange must be over.
    pub deadline: Instant,
    /// Largest single upstream event.
    pub max_event_bytes: usize,
    /// Cancelled when the shutdown grace period is over.
    pub cut: Arc<CancellationToken>,
}

/// The most bytes gathered into one write to the client.
const MAX_BATCH: usize = 64 << 10;

/// Room for what the relay adds to a batch of events (`[DONE]`, an error event).
const OUT_SLACK: usize = 256;

/// How many scheduler turns the HTTP client gets to hand over more of a batch
/// (its connection task hands over one frame per turn, and may first have to
/// read the socket).
const BATCH_YIELDS: usize = 8;

/// Turns given while a stream's first chunks are read: one lets the client's
/// connection task decode what came in the same read (the role chunk and the
/// first content usually do), without holding back a first token that is late.
const FIRST_TURNS: usize = 1;

/// Bodies up to this size are kept (as shared chunks, not copied) to read their usage.
const WHOLE_BODY_LIMIT: usize = 1 << 20;
/// Of a larger body, this much of the end is kept: usage comes last.
const TAIL_BYTES: usize = 64 << 10;

/// Relays a JSON body as it arrives; a body cut by the upstream or a timeout
/// cuts the client's connection too (an HTTP/1.1 body cannot carry an error).
pub fn relay_json(
    upstream: UpstreamResponse,
    provider: Arc<ProviderClient>,
    limits: RelayLimits,
    usage: BodyUsage,
    log: RequestCx,
) -> Body {
    let relay = JsonRelay {
        usage,
        expected: hyper::body::Body::size_hint(upstream.body()).exact(),
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

/// Reads a streamed answer up to its first content, before anything is sent
/// to the client, so that a stream that fails at once can still be tried
/// elsewhere: a body that ends or breaks before content, content later than
/// `until` (the first-token timeout, `first_token` after the request was sent)
/// or after a silence longer than the idle timeout, and an error event before
/// content are failures of the attempt. The chunks read go to [`relay_sse`] as its
/// `first`; past `limit` bytes without a verdict the stream is taken as it is.
pub async fn first_content(
    upstream: &mut UpstreamResponse,
    provider: &ProviderClient,
    first_token: Duration,
    until: Instant,
    deadline: Instant,
    limit: usize,
) -> Result<Vec<Bytes>, UpstreamError> {
    let broken = |detail: String| UpstreamError::Protocol {
        provider: provider.name.to_string(),
        detail,
    };
    let mut chunks = Vec::new();
    let mut read = 0;
    let mut parser = SseParser::new(limit);
    loop {
        // The first-byte timeout bounds the wait for content; the idle timeout
        // each silence on the way.
        let idle = Instant::now() + provider.timeouts.idle;
        let (wait, phase) = if idle < until {
            (idle, TimeoutPhase::Idle)
        } else {
            (until, TimeoutPhase::FirstByte)
        };
        let chunk = match tokio::time::timeout_at(wait, next_data(upstream.body_mut())).await {
            Err(_) if phase == TimeoutPhase::FirstByte && wait < deadline => {
                return Err(UpstreamError::Timeout {
                    provider: provider.name.to_string(),
                    phase,
                    limit: first_token,
                });
            }
            Err(_) => return Err(provider.timeout_at(wait, deadline, phase)),
            Ok(Err(e)) => return Err(broken(provider.scrub(&super::error_chain(&e)))),
            Ok(Ok(None)) => {
                return Err(broken(
                    "the stream ended before its first content".to_owned(),
                ));
            }
            Ok(Ok(Some(chunk))) => chunk,
        };
        let mut verdict = None;
        let parsed = parser.feed(&chunk, |event| {
            verdict = look(event, provider.wire);
            verdict.is_none()
        });
        read += chunk.len();
        chunks.push(chunk);
        match verdict {
            Some(Look::Content) => return Ok(chunks),
            Some(Look::Error(Fault { status, mut error })) => {
                error.message = provider.scrub(&error.message);
                return Err(UpstreamError::Status {
                    provider: provider.name.to_string(),
                    status,
                    error: Box::new(error),
                    retry_after: None,
                });
            }
            // Too much, or unreadable, before content: the relay will say so.
            None if read > limit || parsed.is_err() => return Ok(chunks),
            None => {}
        }
    }
}

/// What an event before the first content says.
enum Look {
    /// Content (or the end of an answer that has none): the stream can go.
    Content,
    /// The provider's error, with the status it stands for.
    Error(Fault),
}

/// The verdict of `event`, `None` for an event that comes before content (a
/// role chunk, `message_start`, `ping`).
fn look(event: SseEvent<'_>, wire: super::Wire) -> Option<Look> {
    match wire {
        super::Wire::OpenAi => match classify_event(event.data) {
            StreamEvent::Error(error) => Some(Look::Error(Fault {
                status: openai::status_of(&error),
                error,
            })),
            StreamEvent::Done
            | StreamEvent::Malformed
            | StreamEvent::Chunk { finished: true, .. } => Some(Look::Content),
            StreamEvent::UsageOnly(_) => None,
            StreamEvent::Chunk { .. } => has_content(event.data).then_some(Look::Content),
        },
        super::Wire::Anthropic => match event.event {
            Some("error") => Some(Look::Error(
                anthropic::stream_error(event.data).unwrap_or_else(|| Fault {
                    status: 500,
                    error: anthropic::decode_error(500, event.data),
                }),
            )),
            Some("message_start" | "ping" | "content_block_start") => None,
            _ => Some(Look::Content),
        },
        super::Wire::Gemini => Some(
            switchyard_providers::gemini::stream_error(event.data)
                .map_or(Look::Content, Look::Error),
        ),
    }
}

/// Whether an OpenAI chunk carries text, reasoning or a tool call.
fn has_content(data: &[u8]) -> bool {
    serde_json::from_slice::<openai::chat::ChatChunk>(data).map_or(true, |chunk| {
        chunk.choices.iter().any(|choice| {
            let delta = &choice.delta;
            [&delta.content, &delta.reasoning_content, &delta.refusal]
                .iter()
                .any(|text| text.as_deref().is_some_and(|t| !t.is_empty()))
                || delta.tool_calls.is_some()
        })
    })
}

/// Reads a whole upstream body, for translation, within the idle and total
/// timeouts; a body longer than `limit` bytes is refused.
pub async fn read_whole(
    upstream: UpstreamResponse,
    provider: Arc<ProviderClient>,
    limits: &RelayLimits,
    limit: usize,
) -> Result<Bytes, GatewayError> {
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

struct JsonRelay {
    usage: BodyUsage,
    reader: Reader,
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

impl JsonRelay {
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

/// What the stream relay does with each upstream event.
pub enum StreamMode {
    /// OpenAI to OpenAI: events pass through; when the gateway added
    /// `include_usage` on its own (`strip_usage`), the usage is read and not
    /// passed on.
    OpenAi {
        /// Remove the usage the client did not ask for.
        strip_usage: bool,
    },
    /// Anthropic to Anthropic: events pass through unchanged, watched for
    /// usage, the end and in-band errors.
    Anthropic,
    /// Between dialects: each upstream event is decoded into OpenAI chunks,
    /// and each chunk written in the client's dialect as it comes.
    Translate {
        /// Reads the provider's events.
        decoder: Box<dyn StreamDecoder>,
        /// Writes the client's events.
        encoder: Box<dyn StreamEncoder>,
    },
}

/// The relay's state for its [`StreamMode`].
enum Mode {
    OpenAi {
        strip_usage: bool,
        /// A choice has carried a `finish_reason`.
        finished: bool,
    },
    Anthropic(EventWatch),
    Translate {
        decoder: Box<dyn StreamDecoder>,
        encoder: Box<dyn StreamEncoder>,
        /// Chunks decoded from the current event (kept for its capacity).
        chunks: Vec<ChatChunk>,
    },
}

/// Relays an event stream event by event, in the client's `dialect`.
///
/// Every stream ends one of two ways: the upstream's finish (and for OpenAI
/// clients `[DONE]`), or an error event in the client's dialect — when the
/// upstream reports an error in-band, breaks the format, goes silent past the
/// idle timeout, closes before finishing, or the shutdown grace period runs out.
pub fn relay_sse(
    upstream: UpstreamResponse,
    first: Vec<Bytes>,
    provider: Arc<ProviderClient>,
    limits: RelayLimits,
    mode: StreamMode,
    dialect: Dialect,
    log: RequestCx,
) -> Body {
    let mode = match mode {
        StreamMode::OpenAi { strip_usage } => Mode::OpenAi {
            strip_usage,
            finished: false,
        },
        StreamMode::Anthropic => Mode::Anthropic(EventWatch::new()),
        StreamMode::Translate { decoder, encoder } => Mode::Translate {
            decoder,
            encoder,
            chunks: Vec::new(),
        },
    };
    let mut reader = Reader::new(upstream, provider.clone(), &limits);
    reader.first = first;
    let relay = SseRelay {
        parser: SseParser::new(limits.max_event_bytes),
        received: Vec::new(),
        reader,
        provider,
        mode,
        dialect,
        chunks_sent: 0,
        log: Some(log),
    };
    // The relay runs in a task of its own and hands the response body whole
    // batches: the server's connection task is woken once per batch, not once
    // per upstream event (the HTTP client hands those over one at a time).
    let (batches, received) = mpsc::channel(STREAM_QUEUE);
    let on_panic = batches.clone();
    tokio::spawn(async move {
        if catch_panic(relay.run(batches)).await.is_none() {
            // The request is recorded as panicked; the client gets its error event.
            let _ = on_panic
                .send(GatewayError::Internal.to_event_in(dialect))
                .await;
        }
    });
    Body::from_stream(futures_util::stream::unfold(
        received,
        |mut received| async move {
            let batch = received.recv().await?;
            Some((Ok::<_, Infallible>(batch), received))
        },
    ))
}

/// Batches of a stream ready for the client and not yet taken by the server.
const STREAM_QUEUE: usize = 4;

struct SseRelay {
    reader: Reader,
    /// Chunks read and not yet parsed (kept between reads for its capacity).
    received: Vec<Bytes>,
    parser: SseParser,
    provider: Arc<ProviderClient>,
    mode: Mode,
    /// The client's dialect, for the relay's own error events.
    dialect: Dialect,
    /// Chunks relayed so far.
    chunks_sent: usize,
    /// `None` once the stream is over.
    log: Option<RequestCx>,
}

impl SseRelay {
    /// Relays the whole stream into `batches`; stops early when the client has
    /// gone (the access line then says `client_disconnected`).
    async fn run(mut self, batches: mpsc::Sender<Bytes>) {
        loop {
            let next = tokio::select! {
                biased;
                () = batches.closed() => return,
                next = self.next() => next,
            };
            let Some(batch) = next else {
                return;
            };
            if batches.send(batch).await.is_err() {
                return;
            }
        }
    }

    async fn next(&mut self) -> Option<Bytes> {
        loop {
            self.log.as_ref()?;
            let received = &mut self.received;
            // The role chunk and the first content go out at once (time to first
            // token); after them, batching what has arrived saves writes.
            let turns = if self.chunks_sent >= 2 {
                BATCH_YIELDS
            } else {
                FIRST_TURNS
            };
            let mut out = BytesMut::new();
            match self
                .reader
                .read(turns, &mut |chunk| received.push(chunk))
                .await
            {
                Ok(true) => {
                    self.drain(&mut out);
                    if !out.is_empty() {
                        return Some(out.freeze());
                    }
                }
                Ok(false) => {
                    self.upstream_ended(&mut out);
                    return Some(out.freeze());
                }
                Err(e) => return Some(self.fail(&e.into_gateway())),
            }
        }
    }

    /// Turns every complete event of the chunks received into client bytes.
    fn drain(&mut self, out: &mut BytesMut) {
        // Events pass through nearly unchanged: the output is about as long as
        // the input, so one allocation holds it.
        let received: usize = self.received.iter().map(Bytes::len).sum();
        out.reserve(self.parser.buffered() + received + OUT_SLACK);
        // The parser lends out its events while the rest of `self` handles them.
        let mut parser = std::mem::replace(&mut self.parser, SseParser::new(0));
        let mut chunks = std::mem::take(&mut self.received);
        for chunk in chunks.drain(..) {
            if self.log.is_none() {
                break;
            }
            let parsed = parser.feed(&chunk, |event| {
                self.on_event(event, out);
                self.log.is_some()
            });
            if let Err(e) = parsed
                && self.log.is_some()
            {
                let error = self.protocol_error(&e.to_string());
                out.extend_from_slice(&self.fail(&error));
            }
        }
        self.received = chunks;
        self.parser = parser;
    }

    fn on_event(&mut self, event: SseEvent<'_>, out: &mut BytesMut) {
        match &mut self.mode {
            Mode::OpenAi { .. } => self.on_openai_event(event, out),
            Mode::Anthropic(watch) => {
                let progress = watch.event(event);
                if let Some(log) = self.log.as_mut() {
                    log.first_token();
                }
                self.chunks_sent += 1;
                match progress {
                    Ok(progress) => {
                        push_event(out, event.event, event.data);
                        if progress == Progress::Done {
                            self.log_stream_usage();
                            self.complete();
                        }
                    }
                    Err(e) => self.stream_error(e, out),
                }
            }
            Mode::Translate {
                decoder,
                encoder,
                chunks,
            } => {
                let decoded = decoder.event(event, chunks);
                let mut usage = None;
                for chunk in chunks.drain(..) {
                    usage = usage.or(chunk.usage.map(|u| u.totals()));
                    encoder.chunk(&chunk, out);
                }
                self.chunks_sent += 1;
                if let Some(log) = self.log.as_mut() {
                    log.first_token();
                    if let Some(usage) = usage {
                        log.usage(usage);
                    }
                }
                match decoded {
                    Ok(Progress::More) => {}
                    Ok(Progress::Done) => {
                        if let Mode::Translate { encoder, .. } = &mut self.mode {
                            encoder.done(out);
                        }
                        self.complete();
                    }
                    Err(e) => self.stream_error(e, out),
                }
            }
        }
    }

    /// The upstream body ended: the end of a complete answer, or a cut.
    fn upstream_ended(&mut self, out: &mut BytesMut) {
        let ended = match &mut self.mode {
            Mode::OpenAi { finished, .. } => {
                if *finished {
                    // Some servers finish without `[DONE]`; the client still gets one.
                    out.extend_from_slice(b"data: [DONE]\n\n");
                    Ok(())
                } else {
                    Err(None)
                }
            }
            Mode::Anthropic(watch) => watch.end().map_err(Some),
            Mode::Translate {
                decoder,
                encoder,
                chunks,
            } => {
                let ended = decoder.end(chunks);
                let mut usage = None;
                for chunk in chunks.drain(..) {
                    usage = usage.or(chunk.usage.map(|u| u.totals()));
                    encoder.chunk(&chunk, out);
                }
                if let (Some(log), Some(usage)) = (self.log.as_mut(), usage) {
                    log.usage(usage);
                }
                if ended.is_ok()
                    && let Mode::Translate { encoder, .. } = &mut self.mode
                {
                    encoder.done(out);
                }
                ended.map_err(Some)
            }
        };
        match ended {
            Ok(()) => {
                self.log_stream_usage();
                self.complete();
            }
            Err(Some(e)) => self.stream_error(e, out),
            Err(None) => {
                let error =
                    self.protocol_error("the stream ended before the response was finished");
                out.extend_from_slice(&self.fail(&error));
            }
        }
    }

    /// Logs the usage a pass-through Anthropic stream reported.
    fn log_stream_usage(&mut self) {
        if let (Mode::Anthropic(watch), Some(log)) = (&self.mode, self.log.as_mut())
            && let Some(usage) = watch.usage()
        {
            log.usage(usage.totals());
        }
    }

    /// Ends the stream for a decoding failure or an in-band upstream error.
    fn stream_error(&mut self, error: StreamError, out: &mut BytesMut) {
        match error {
            StreamError::Upstream(mut fault) => {
                fault.error.message = self.provider.scrub(&fault.error.message);
                fault
                    .error
                    .kind
                    .get_or_insert_with(|| "server_error".to_owned());
                let detail = fault.error.message.clone();
                self.log_stream_usage();
                self.end("upstream_in_band_error", &detail);
                out.extend_from_slice(&self.error_bytes(&fault));
            }
            StreamError::Malformed(detail) => {
                let error = self.protocol_error(&self.provider.scrub(&detail));
                out.extend_from_slice(&self.fail(&error));
            }
        }
    }

    /// The error event that ends the stream, in the client's dialect.
    fn error_bytes(&self, fault: &Fault) -> Bytes {
        render(fault, self.dialect, Form::Event)
    }

    fn on_openai_event(&mut self, event: SseEvent<'_>, out: &mut BytesMut) {
        let Mode::OpenAi {
            strip_usage,
            finished,
        } = &mut self.mode
        else {
            return;
        };
        let strip_usage = *strip_usage;
        match classify_event(event.data) {
            StreamEvent::Done => {
                out.extend_from_slice(b"data: [DONE]\n\n");
                self.complete();
            }
            StreamEvent::Chunk {
                finished: chunk_finished,
                usage,
            } => {
                if let Some(log) = self.log.as_mut() {
                    log.first_token();
                    if let Some(usage) = usage {
                        log.usage(usage);
                    }
                }
                *finished |= chunk_finished;
                self.chunks_sent += 1;
                match usage.and_then(|_| strip_usage.then(|| without_usage(event.data)).flatten()) {
                    Some(stripped) => push_event(out, event.event, &stripped),
                    None => push_event(out, event.event, event.data),
                }
            }
            StreamEvent::UsageOnly(usage) => {
                if let Some(log) = self.log.as_mut() {
                    log.usage(usage);
                }
                if !strip_usage {
                    push_event(out, event.event, event.data);
                }
            }
            StreamEvent::Error(mut error) => {
                error.message = self.provider.scrub(&error.message);
                error.kind.get_or_insert_with(|| "server_error".to_owned());
                let detail = error.message.clone();
                self.end("upstream_in_band_error", &detail);
                let fault = Fault {
                    status: openai::status_of(&error),
                    error,
                };
                out.extend_from_slice(&self.error_bytes(&fault));
            }
            StreamEvent::Malformed => {
                let error = self.protocol_error("the stream carried an event that is not JSON");
                out.extend_from_slice(&self.fail(&error));
            }
        }
    }

    fn protocol_error(&self, detail: &str) -> GatewayError {
        GatewayError::Upstream(UpstreamError::Protocol {
            provider: self.provider.name.to_string(),
            detail: detail.to_owned(),
        })
    }

    /// Ends the stream with an error event.
    fn fail(&mut self, error: &GatewayError) -> Bytes {
        self.end(error.kind(), &error.to_string());
        let fault = error.to_fault(self.dialect);
        self.error_bytes(&fault)
    }

    /// Ends the request: its answer reached the client whole.
    fn complete(&mut self) {
        if let Some(log) = self.log.take() {
            log.complete();
        }
    }

    /// Ends the request: `kind` of error broke the stream off.
    fn end(&mut self, kind: &'static str, detail: &str) {
        if let Some(log) = self.log.take() {
            log.break_off(kind, detail);
        }
    }
}

fn push_event(out: &mut BytesMut, event: Option<&str>, data: &[u8]) {
    if let Some(name) = event {
        out.extend_from_slice(b"event: ");
        out.extend_from_slice(name.as_bytes());
        out.extend_from_slice(b"\n");
    }
    out.reserve(data.len() + 8);
    // A data field cannot hold a newline: multi-line data goes in several fields.
    let mut rest = data;
    while let Some(at) = memchr::memchr(b'\n', rest) {
        out.extend_from_slice(b"data: ");
        out.extend_from_slice(&rest[..at]);
        out.extend_from_slice(b"\n");
        rest = &rest[at + 1..];
    }
    out.extend_from_slice(b"data: ");
    out.extend_from_slice(rest);
    out.extend_from_slice(b"\n\n");
}

/// Chunks that arrived together, joined without a copy when there is only one.
#[derive(Default)]
struct Batch {
    first: Option<Bytes>,
    joined: Option<BytesMut>,
}

impl Batch {
    fn add(&mut self, chunk: Bytes) {
        match (&mut self.joined, self.first.take()) {
            (Some(joined), _) => joined.extend_from_slice(&chunk),
            (None, None) => self.first = Some(chunk),
            (None, Some(first)) => {
                let mut joined = BytesMut::with_capacity(first.len() + chunk.len());
                joined.extend_from_slice(&first);
                joined.extend_from_slice(&chunk);
                self.joined = Some(joined);
            }
        }
    }

    fn into_bytes(self) -> Option<Bytes> {
        self.joined.map(BytesMut::freeze).or(self.first)
    }
}

/// Why the next chunk did not come.
enum ReadError {
    Upstream(UpstreamError),
    /// The shutdown grace period ran out.
    Cut,
}

impl ReadError {
    fn into_gateway(self) -> GatewayError {
        match self {
            Self::Upstream(e) => GatewayError::Upstream(e),
            Self::Cut => GatewayError::ShuttingDown,
        }
    }
}

/// Reads an upstream body within the idle and total timeouts and the shutdown
/// cut, with one timer and one cancellation waiter for the whole body.
struct Reader {
    body: Incoming,
    provider: Arc<ProviderClient>,
    idle: Duration,
    deadline: Instant,
    cut: Arc<CancellationToken>,
    /// Built at the first read that has to wait: a body that is always there
    /// when asked for (a JSON answer, a fast stream) never needs a timer.
    waiters: Option<Waiters>,
    /// Reads that found data waiting, to look at the clock only now and then.
    ready_reads: u32,
    /// The end of the body, when it was found while collecting a batch.
    ended: Option<Result<(), ReadError>>,
    /// Chunks read before the relay began (see [`first_content`]), handed out first.
    first: Vec<Bytes>,
}

/// What a read that waits for data races against.
struct Waiters {
    /// Reset to the idle limit before each wait.
    idle: Pin<Box<Sleep>>,
    /// Set once, to the total deadline.
    total: Pin<Box<Sleep>>,
    cut: Pin<Box<WaitForCancellationFutureOwned>>,
}

/// A read that found data waiting looks at the clock for the total deadline
/// once in this many (and at the first).
const CLOCK_EVERY: u32 = 32;

impl Reader {
    fn new(
        upstream: UpstreamResponse,
        provider: Arc<ProviderClient>,
        limits: &RelayLimits,
    ) -> Self {
        Self {
            body: upstream.into_body(),
            provider,
            idle: limits.idle,
            deadline: limits.deadline,
            cut: limits.cut.clone(),
            waiters: None,
            ready_reads: 0,
            ended: None,
            first: Vec::new(),
        }
    }

    /// Whether the total deadline has passed: the registered timer says so once
    /// there is one, the clock (now and then) before.
    fn past_deadline(&mut self) -> bool {
        if let Some(waiters) = &self.waiters {
            return waiters.total.is_elapsed();
        }
        self.ready_reads = self.ready_reads.wrapping_add(1);
        self.ready_reads % CLOCK_EVERY == 1 && Instant::now() >= self.deadline
    }

    /// Waits for body bytes, then hands `take` every chunk that has arrived, so
    /// that what came together leaves together. `Ok(false)` once the body is over.
    ///
    /// It gives the HTTP client up to `turns` scheduler turns to hand over what it
    /// has already received (with none, it takes only what is ready now).
    async fn read(
        &mut self,
        turns: usize,
        take: &mut (dyn FnMut(Bytes) + Send),
    ) -> Result<bool, ReadError> {
        if !self.first.is_empty() {
            self.first.drain(..).for_each(&mut *take);
            return Ok(true);
        }
        if let Some(end) = self.ended.take() {
            return end.map(|()| false);
        }
        if self.cut.is_cancelled() {
            return Err(ReadError::Cut);
        }
        if self.past_deadline() {
            return Err(self.timed_out(self.deadline, TimeoutPhase::Total));
        }
        // Data already here needs no timer (no clock read, no timer-wheel update).
        match next_data(&mut self.body).now_or_never() {
            Some(Ok(first)) => self.batch(first, turns, take).await,
            Some(Err(e)) => Err(self.broken(&e)),
            None => {
                let wait = Instant::now() + self.idle;
                let waiters = self.waiters.get_or_insert_with(|| Waiters {
                    idle: Box::pin(tokio::time::sleep_until(wait)),
                    total: Box::pin(tokio::time::sleep_until(self.deadline)),
                    cut: Box::pin(CancellationToken::clone(&self.cut).cancelled_owned()),
                });
                waiters.idle.as_mut().reset(wait);
                let phase = tokio::select! {
                    biased;
                    () = waiters.cut.as_mut() => return Err(ReadError::Cut),
                    () = waiters.total.as_mut() => TimeoutPhase::Total,
                    () = waiters.idle.as_mut() => TimeoutPhase::Idle,
                    chunk = next_data(&mut self.body) => match chunk {
                        Ok(chunk) => return self.batch(chunk, turns, take).await,
                        Err(e) => return Err(self.broken(&e)),
                    },
                };
                let at = if phase == TimeoutPhase::Total {
                    self.deadline
                } else {
                    wait
                };
                Err(self.timed_out(at, phase))
            }
        }
    }

    /// Takes `first` and whatever follows it at once (see [`Reader::read`]).
    async fn batch(
        &mut self,
        first: Option<Bytes>,
        turns: usize,
        take: &mut (dyn FnMut(Bytes) + Send),
    ) -> Result<bool, ReadError> {
        let Some(first) = first else {
            return Ok(false);
        };
        let mut batched = first.len();
        take(first);
        // The HTTP client hands over one frame at a time through a task hop: give it
        // a few turns to decode what is already buffered, and batch it, so an answer
        // that arrived in one read leaves in one write instead of one per event.
        let mut yielded = 0;
        while batched < MAX_BATCH {
            match next_data(&mut self.body).now_or_never() {
                None if yielded < turns => {
                    yielded += 1;
                    run_others_first().await;
                }
                None => return Ok(true),
                Some(Ok(Some(chunk))) => {
                    yielded = 0;
                    batched += chunk.len();
                    take(chunk);
                }
                Some(Ok(None)) => {
                    self.ended = Some(Ok(()));
                    return Ok(true);
                }
                Some(Err(e)) => {
                    self.ended = Some(Err(self.broken(&e)));
                    return Ok(true);
                }
            }
        }
        Ok(true)
    }

    fn timed_out(&self, at: Instant, phase: TimeoutPhase) -> ReadError {
        ReadError::Upstream(self.provider.timeout_at(at, self.deadline, phase))
    }

    fn broken(&self, e: &hyper::Error) -> ReadError {
        ReadError::Upstream(UpstreamError::Protocol {
            provider: self.provider.name.to_string(),
            detail: self.provider.scrub(&super::error_chain(e)),
        })
    }
}

/// The next data chunk of an upstream body (trailers are skipped); `None` at its end.
async fn next_data(body: &mut Incoming) -> Result<Option<Bytes>, hyper::Error> {
    loop {
        match body.frame().await {
            None => return Ok(None),
            Some(Err(e)) => return Err(e),
            Some(Ok(frame)) => {
                if let Ok(data) = frame.into_data() {
                    return Ok(Some(data));
                }
            }
        }
    }
}

/// Lets the tasks already queued on this worker (the HTTP client's connection
/// task, decoding what it has read) run before this one continues. Unlike
/// `tokio::task::yield_now`, it does not make the worker poll the I/O driver
/// first: that costs an `epoll_wait` per turn, and the data is already read.
async fn run_others_first() {
    let mut queued = false;
    std::future::poll_fn(|cx| {
        if std::mem::replace(&mut queued, true) {
            Poll::Ready(())
        } else {
            // A task that wakes itself while running goes to the back of the queue.
            cx.waker().wake_by_ref();
            Poll::Pending
        }
    })
    .await;
}
