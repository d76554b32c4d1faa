//! An event stream relayed event by event, in the client's dialect, as the
//! client's connection asks for more of the body.

use std::convert::Infallible;
use std::sync::Arc;

use axum::body::Body;
use bytes::{Bytes, BytesMut};
use futures_util::StreamExt as _;
use hyper::body::Body as HttpBody;
use switchyard_providers::anthropic::EventWatch;
use switchyard_providers::openai::chat::ChatChunk;
use switchyard_providers::openai::{self, StreamEvent, classify_event, without_usage};
use switchyard_providers::sse::{SseEvent, SseParser};
use switchyard_providers::translate::{Fault, Progress, StreamDecoder, StreamEncoder, StreamError};

use super::RelayLimits;
use super::events::push_event;
use super::first::{FirstContent, FirstEvent};
use super::reader::{Reader, run_others_first};
use crate::error::{Dialect, Form, GatewayError, render};
use crate::request::{Panicked, RequestCx, catch_stream_panic};
use crate::upstream::{ProviderClient, UpstreamError};

/// Room for what the relay adds to a batch of events (`[DONE]`, an error event).
const OUT_SLACK: usize = 256;

/// How many scheduler turns the HTTP/2 client gets to hand over more of a
/// batch (its connection task hands over one frame per turn, and may first
/// have to read the socket); an HTTP/1.1 body needs none (see `Reader`).
const BATCH_YIELDS: usize = 8;

/// Turns given while a stream's first chunks are read: one lets the client's
/// connection task decode what came in the same read (the role chunk and the
/// first content usually do), without holding back a first token that is late.
const FIRST_TURNS: usize = 1;

/// The chunks a client waits for first: the role chunk and the first content.
/// A batch that carries one of them is written before the relay reads on.
const FIRST_CHUNKS: usize = 2;

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
pub fn relay_sse<B>(
    upstream: axum::http::Response<B>,
    first: Option<Box<FirstContent>>,
    provider: Arc<ProviderClient>,
    limits: RelayLimits,
    mode: StreamMode,
    dialect: Dialect,
    log: RequestCx,
) -> Body
where
    B: HttpBody<Data = Bytes> + Send + Unpin + 'static,
    B::Error: std::error::Error + Send + 'static,
{
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
    let reader = Reader::new(upstream, provider.clone(), &limits);
    let mut relay = SseRelay {
        parser: SseParser::new(limits.max_event_bytes),
        received: Vec::new(),
        reader,
        provider,
        mode,
        dialect,
        chunks_sent: 0,
        chunks_handed_over: 0,
        flush_first: false,
        log: Some(log),
        finished: None,
    };
    // The events read before the answer began (the first content) become the
    // body's first batch here, ready when the server writes the response's
    // head: head and first events leave in one write.
    let mut out = BytesMut::new();
    if let Some(first) = first {
        relay.take_over(*first, &mut out);
    }
    let first = (!out.is_empty()).then(|| Ok::<_, Infallible>(relay.hand_over(out.freeze())));
    // The rest is made as the server polls the body, in the task of the
    // client's connection, which also drives the upstream connection (see
    // `upstream::pool`): what arrived between two polls leaves as one batch,
    // with no task and no channel between the two connections. When the
    // client goes, the server drops the body, and the request ends as
    // `client_disconnected`.
    let batches = futures_util::stream::unfold(relay, |mut relay| async move {
        let batch = relay.next().await?;
        Some((batch, relay))
    });
    let rest = catch_stream_panic(batches).map(move |batch| {
        // A panic is recorded as one; the client gets its error event.
        Ok::<_, Infallible>(
            batch.unwrap_or_else(|Panicked| GatewayError::Internal.to_event_in(dialect)),
        )
    });
    Body::from_stream(futures_util::stream::iter(first).chain(rest))
}

struct SseRelay<B> {
    reader: Reader<B>,
    /// Chunks read and not yet parsed (kept between reads for its capacity).
    received: Vec<Bytes>,
    parser: SseParser,
    provider: Arc<ProviderClient>,
    mode: Mode,
    /// The client's dialect, for the relay's own error events.
    dialect: Dialect,
    /// Chunks relayed so far.
    chunks_sent: usize,
    /// Chunks relayed in the batches handed over so far.
    chunks_handed_over: usize,
    /// The last batch handed over carries one of the first chunks: the server
    /// must write it before the relay reads on.
    flush_first: bool,
    /// `None` once the stream is over.
    log: Option<RequestCx>,
    /// The context of a stream that completed in the batch being made: it
    /// ends once that batch, its last, is handed over (and captured).
    finished: Option<RequestCx>,
}

impl<B> SseRelay<B>
where
    B: HttpBody<Data = Bytes> + Unpin,
    B::Error: std::error::Error + 'static,
{
    /// The next batch for the client: what has arrived since the last one,
    /// waited for when nothing has; `None` once the stream is over.
    async fn next(&mut self) -> Option<Bytes> {
        if std::mem::take(&mut self.flush_first) {
            // The server polls the body again before it writes what it has, and
            // would wait for the rest of what arrived: the first token leaves
            // now, in a write of its own, and the relay reads on after it.
            run_others_first().await;
        }
        loop {
            self.log.as_ref()?;
            let received = &mut self.received;
            // The role chunk and the first content go out at once (time to first
            // token); after them, batching what has arrived saves writes.
            let turns = if self.chunks_sent >= FIRST_CHUNKS {
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
                        return Some(self.hand_over(out.freeze()));
                    }
                }
                Ok(false) => {
                    self.upstream_ended(&mut out);
                    return Some(self.hand_over(out.freeze()));
                }
                Err(e) => return Some(self.fail(&e.into_gateway())),
            }
        }
    }

    /// A batch for the client: captured for the cache fill, and the end of
    /// a stream that completed in it.
    fn hand_over(&mut self, batch: Bytes) -> Bytes {
        self.flush_first = self.chunks_handed_over < FIRST_CHUNKS;
        self.chunks_handed_over = self.chunks_sent;
        if let Some(log) = self.log.as_mut() {
            log.capture(&batch);
        } else if let Some(mut log) = self.finished.take() {
            log.capture(&batch);
            log.complete();
        }
        batch
    }

    /// Takes over from [`first_content`](super::first_content): relays the
    /// events it parsed (as it classified them), then what its parser holds.
    fn take_over(&mut self, first: FirstContent, out: &mut BytesMut) {
        let FirstContent {
            events,
            parser,
            error,
        } = first;
        let read: usize = events.iter().map(|e| e.data.len()).sum();
        out.reserve(read + parser.buffered() + OUT_SLACK);
        for FirstEvent { name, data, class } in events {
            if self.log.is_none() {
                return;
            }
            let event = SseEvent {
                event: name.as_deref(),
                data: &data,
            };
            match (class, &self.mode) {
                (Some(class), Mode::OpenAi { .. }) => self.on_openai_event(event, class, out),
                _ => self.on_event(event, out),
            }
        }
        self.parser = parser;
        if let Some(e) = error
            && self.log.is_some()
        {
            let error = self.protocol_error(&e.to_string());
            out.extend_from_slice(&self.fail(&error));
        }
        // The rest of the chunk the first content came in, which the parser holds.
        self.received.push(Bytes::new());
        self.drain(out);
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
            Mode::OpenAi { .. } => self.on_openai_event(event, classify_event(event.data), out),
            Mode::Anthropic(watch) => {
                let progress = watch.event(event);
                if let Some(log) = self.log.as_mut() {
                    log.chunk_sent();
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
                    log.chunk_sent();
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

    /// Relays an OpenAI event, classified as `class`.
    fn on_openai_event(&mut self, event: SseEvent<'_>, class: StreamEvent, out: &mut BytesMut) {
        let Mode::OpenAi {
            strip_usage,
            finished,
        } = &mut self.mode
        else {
            return;
        };
        let strip_usage = *strip_usage;
        match class {
            StreamEvent::Done => {
                out.extend_from_slice(b"data: [DONE]\n\n");
                self.complete();
            }
            StreamEvent::Chunk {
                finished: chunk_finished,
                usage,
            } => {
                if let Some(log) = self.log.as_mut() {
                    log.chunk_sent();
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

    /// Ends the request: its answer reached the client whole, once the
    /// batch being made is handed over.
    fn complete(&mut self) {
        self.finished = self.log.take();
    }

    /// Ends the request: `kind` of error broke the stream off.
    fn end(&mut self, kind: &'static str, detail: &str) {
        if let Some(log) = self.log.take() {
            log.break_off(kind, detail);
        }
    }
}
