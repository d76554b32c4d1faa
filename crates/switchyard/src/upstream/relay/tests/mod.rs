//! Unit tests of the relays, on scripted upstream bodies and tokio's paused
//! clock: no socket, no real wait.

use std::collections::BTreeMap;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::Duration;

use axum::body::Body;
use axum::http::Response;
use bytes::Bytes;
use http_body_util::BodyExt;
use hyper::body::{Body as HttpBody, Frame, SizeHint};
use secrecy::SecretString;
use tokio::sync::mpsc;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;
use tracing_subscriber::layer::SubscriberExt as _;

use super::RelayLimits;
use crate::config::{Provider, ProviderKind, Timeouts};
use crate::error::Dialect as ClientDialect;
use crate::request::{Finish, RequestCx};
use crate::telemetry::AccessLog;
use crate::upstream::ProviderClient;

mod first;
mod json;
mod sse;

/// The provider's API key: it must never reach the client.
const KEY: &str = "sk-test-key";

/// The provider's idle timeout, and the relay's.
const IDLE: Duration = Duration::from_secs(1);

/// How long an exchange may take, unless a test says otherwise.
const TOTAL: Duration = Duration::from_secs(10);

/// A provider client of `kind` (no connection is made), idle timeout [`IDLE`].
fn provider(kind: ProviderKind) -> Arc<ProviderClient> {
    let second = Duration::from_secs(1);
    let provider = Provider {
        name: "up".to_owned(),
        kind,
        base_url: "http://127.0.0.1:9/v1".to_owned(),
        api_keys: vec![SecretString::from(KEY)],
        api_version: "2023-06-01".to_owned(),
        timeouts: Timeouts {
            connect: second,
            first_byte: 2 * second,
            idle: IDLE,
            total: 10 * second,
            first_token: 3 * second,
            stream_total: 10 * second,
        },
        pool: crate::config::Pool::default(),
        http2: false,
    };
    Arc::new(ProviderClient::new(&provider, None).unwrap())
}

/// The limits of a relay whose exchange must be over in `total`.
fn limits(total: Duration) -> RelayLimits {
    RelayLimits {
        idle: IDLE,
        deadline: Instant::now() + total,
        max_event_bytes: 64 << 10,
        cut: Arc::new(CancellationToken::new()),
    }
}

/// A new request, whose record goes to the access log.
fn access_log() -> RequestCx {
    let finish = Arc::new(Finish::new(vec![Arc::new(AccessLog)]));
    RequestCx::new(
        axum::http::HeaderValue::from_static("test"),
        "chat",
        ClientDialect::OpenAi,
        std::time::Instant::now(),
        finish,
    )
}

/// An OpenAI stream: the role chunk, content, the finish, the usage, the end.
const ROLE: &str = concat!(
    r#"data: {"id":"c","object":"chat.completion.chunk","created":1,"model":"m","choices":[{"index":0,"delta":{"role":"assistant","content":""},"finish_reason":null}]}"#,
    "\n\n"
);
const HELLO: &str = concat!(
    r#"data: {"id":"c","object":"chat.completion.chunk","created":1,"model":"m","choices":[{"index":0,"delta":{"content":"Hello"},"finish_reason":null}]}"#,
    "\n\n"
);
const STOP: &str = concat!(
    r#"data: {"id":"c","object":"chat.completion.chunk","created":1,"model":"m","choices":[{"index":0,"delta":{},"finish_reason":"stop"}]}"#,
    "\n\n"
);
const USAGE: &str = concat!(
    r#"data: {"id":"c","object":"chat.completion.chunk","created":1,"model":"m","choices":[],"usage":{"prompt_tokens":5,"completion_tokens":7,"total_tokens":12}}"#,
    "\n\n"
);
const DONE: &str = "data: [DONE]\n\n";

/// An Anthropic stream, up to its first text and from there to its end.
const MESSAGE_START: &str = concat!(
    "event: message_start\n",
    r#"data: {"type":"message_start","message":{"id":"m","content":[],"usage":{"input_tokens":10,"output_tokens":1}}}"#,
    "\n\n"
);
const BLOCK_START: &str = concat!(
    "event: content_block_start\n",
    r#"data: {"type":"content_block_start","index":0,"content_block":{"type":"text","text":""}}"#,
    "\n\n"
);
const TEXT: &str = concat!(
    "event: content_block_delta\n",
    r#"data: {"type":"content_block_delta","index":0,"delta":{"type":"text_delta","text":"Hello"}}"#,
    "\n\n"
);
const MESSAGE_END: &str = concat!(
    "event: content_block_stop\n",
    r#"data: {"type":"content_block_stop","index":0}"#,
    "\n\n",
    "event: message_delta\n",
    r#"data: {"type":"message_delta","delta":{"stop_reason":"end_turn"},"usage":{"output_tokens":3}}"#,
    "\n\n",
    "event: message_stop\n",
    r#"data: {"type":"message_stop"}"#,
    "\n\n"
);

/// What a scripted upstream does once a step's delay has passed.
enum Part {
    /// Sends these bytes.
    Data(&'static str),
    /// Breaks the body with [`Broken`].
    Fail,
    /// Stays open and silent until the relay lets go of the body.
    Hang,
}

/// After `ms` milliseconds, `text`.
fn data(ms: u64, text: &'static str) -> (Duration, Part) {
    (Duration::from_millis(ms), Part::Data(text))
}

/// After `ms` milliseconds, the body breaks.
fn fail(ms: u64) -> (Duration, Part) {
    (Duration::from_millis(ms), Part::Fail)
}

/// After `ms` milliseconds, silence until the body is dropped.
fn hang(ms: u64) -> (Duration, Part) {
    (Duration::from_millis(ms), Part::Hang)
}

/// How a scripted body breaks: an error with a source, to see the chain.
#[derive(Debug, thiserror::Error)]
#[error("error reading a body from connection")]
struct Broken(#[source] std::io::Error);

type Sent = Result<Frame<Bytes>, Broken>;

/// An upstream body fed through a channel.
struct Scripted {
    frames: mpsc::Receiver<Sent>,
    /// The `content-length` it declares.
    length: Option<u64>,
}

impl HttpBody for Scripted {
    type Data = Bytes;
    type Error = Broken;

    fn poll_frame(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Sent>> {
        self.frames.poll_recv(cx)
    }

    fn size_hint(&self) -> SizeHint {
        self.length.map(SizeHint::with_exact).unwrap_or_default()
    }
}

/// An upstream answer whose body a test feeds by hand; it ends when the
/// sender is dropped, and the sender sees the relay let go of it.
fn fed() -> (mpsc::Sender<Sent>, Response<Scripted>) {
    let (sender, frames) = mpsc::channel(1);
    let body = Scripted {
        frames,
        length: None,
    };
    (sender, Response::new(body))
}

/// An upstream answer whose body follows `steps`, then ends.
fn upstream(steps: Vec<(Duration, Part)>) -> Response<Scripted> {
    let (sender, response) = fed();
    tokio::spawn(async move {
        for (delay, part) in steps {
            if !delay.is_zero() {
                tokio::time::sleep(delay).await;
            }
            let frame = match part {
                Part::Data(text) => Ok(Frame::data(Bytes::from_static(text.as_bytes()))),
                Part::Fail => Err(Broken(std::io::Error::other(format!(
                    "connection reset, key {KEY}"
                )))),
                Part::Hang => {
                    sender.closed().await;
                    return;
                }
            };
            if sender.send(frame).await.is_err() {
                return;
            }
        }
    });
    response
}

/// What a client reads of a body: its bytes, and the error that cut it, if one did.
async fn read_body(body: Body) -> (String, Option<String>) {
    let mut body = body;
    let mut text = Vec::new();
    while let Some(frame) = body.frame().await {
        match frame {
            Ok(frame) => text.extend_from_slice(&frame.into_data().unwrap()),
            Err(e) => return (String::from_utf8(text).unwrap(), Some(e.to_string())),
        }
    }
    (String::from_utf8(text).unwrap(), None)
}

/// The access lines written while it is installed (see [`AccessLines::install`]),
/// each as its fields.
#[derive(Clone, Default)]
struct AccessLines(Arc<Mutex<Vec<BTreeMap<String, String>>>>);

impl AccessLines {
    /// Records the access lines of this thread (a test's runtime and every task
    /// it spawns run on it) until the guard is dropped.
    fn install() -> (Self, tracing::subscriber::DefaultGuard) {
        let lines = Self::default();
        let subscriber = tracing_subscriber::registry().with(lines.clone());
        (lines, tracing::subscriber::set_default(subscriber))
    }

    /// The one line written, which must be there.
    fn only(&self) -> Access {
        let lines = self.0.lock().unwrap();
        assert_eq!(lines.len(), 1, "{lines:?}");
        let tokens = |name: &str| lines[0][name].parse().unwrap();
        Access {
            outcome: lines[0]["outcome"].clone(),
            tokens: (tokens("prompt_tokens"), tokens("completion_tokens")),
        }
    }
}

/// What an access line says of a relayed answer.
struct Access {
    /// `ok` or what went wrong.
    outcome: String,
    /// Prompt and completion tokens (zero when no usage was read).
    tokens: (u64, u64),
}

impl<S: tracing::Subscriber> tracing_subscriber::Layer<S> for AccessLines {
    fn on_event(&self, event: &tracing::Event<'_>, _: tracing_subscriber::layer::Context<'_, S>) {
        if event.metadata().target() != "switchyard::access" {
            return;
        }
        let mut fields = Fields::default();
        event.record(&mut fields);
        self.0.lock().unwrap().push(fields.0);
    }
}

/// An event's fields, written out.
#[derive(Default)]
struct Fields(BTreeMap<String, String>);

impl tracing::field::Visit for Fields {
    fn record_str(&mut self, field: &tracing::field::Field, value: &str) {
        self.0.insert(field.name().to_owned(), value.to_owned());
    }

    fn record_debug(&mut self, field: &tracing::field::Field, value: &dyn std::fmt::Debug) {
        self.0.insert(field.name().to_owned(), format!("{value:?}"));
    }
}
