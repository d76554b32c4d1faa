//! [`relay_sse`]: every stream ends with its finish or with exactly one error
//! event in the client's dialect.

use super::*;
use crate::error::Dialect;
use crate::upstream::{FirstContent, StreamMode, first_content, relay_sse};

/// Relays `upstream` to an OpenAI client, with `first` already read.
fn openai(
    upstream: Response<Scripted>,
    first: Option<Box<FirstContent>>,
    limits: RelayLimits,
) -> Body {
    let mode = StreamMode::OpenAi { strip_usage: false };
    let provider = provider(ProviderKind::Openai);
    let log = access_log();
    relay_sse(
        upstream,
        first,
        provider,
        limits,
        mode,
        Dialect::OpenAi,
        log,
    )
}

/// What an OpenAI client reads of `upstream` relayed within `limits`.
async fn openai_text(upstream: Response<Scripted>, limits: RelayLimits) -> String {
    sse_text(openai(upstream, None, limits)).await
}

/// Reads `upstream` from a provider of `kind` up to its first content, as an
/// attempt does.
async fn peeked(upstream: &mut Response<Scripted>, kind: ProviderKind) -> Box<FirstContent> {
    let provider = provider(kind);
    let (first_token, deadline) = (Duration::from_secs(3), Instant::now() + TOTAL);
    let until = Instant::now() + first_token;
    let first = first_content(upstream, &provider, first_token, until, deadline, 1 << 10);
    first.await.unwrap()
}

/// What an Anthropic client reads of `upstream`, from an Anthropic provider,
/// with `first` already read.
async fn anthropic_text(upstream: Response<Scripted>, first: Option<Box<FirstContent>>) -> String {
    let provider = provider(ProviderKind::Anthropic);
    let (mode, dialect, log) = (StreamMode::Anthropic, Dialect::Anthropic, access_log());
    let body = relay_sse(upstream, first, provider, limits(TOTAL), mode, dialect, log);
    sse_text(body).await
}

/// The text of an event stream, which is never cut: it ends with an event.
async fn sse_text(body: Body) -> String {
    let (text, cut) = read_body(body).await;
    assert_eq!(cut, None);
    text
}

/// `text` with its last event, an OpenAI error event, taken off: what came
/// before it, and the error object, which must be the only one.
fn openai_error(text: &str) -> (&str, serde_json::Value) {
    assert_eq!(
        text.matches("data: {\"error\"").count(),
        1,
        "one error event: {text}"
    );
    let at = text.rfind("data: {\"error\"").unwrap();
    let event = text[at..].strip_suffix("\n\n").unwrap();
    let body: serde_json::Value = serde_json::from_str(&event["data: ".len()..]).unwrap();
    (&text[..at], body["error"].clone())
}

#[tokio::test(start_paused = true)]
async fn a_complete_openai_stream_passes_through_byte_for_byte() {
    let (lines, _guard) = AccessLines::install();
    let steps = vec![
        data(0, ROLE),
        data(10, HELLO),
        data(10, HELLO),
        data(0, STOP),
        data(0, USAGE),
        data(0, DONE),
    ];
    // The events read before the relay began go out first.
    let mut upstream = upstream(steps);
    let first = peeked(&mut upstream, ProviderKind::Openai).await;
    assert_eq!(first.events.len(), 2);
    let text = sse_text(openai(upstream, Some(first), limits(TOTAL))).await;
    assert_eq!(text, [ROLE, HELLO, HELLO, STOP, USAGE, DONE].concat());
    let line = lines.only();
    assert_eq!((&*line.outcome, line.tokens), ("ok", (5, 7)));
}

#[tokio::test(start_paused = true)]
async fn events_after_the_first_content_in_its_chunk_are_relayed_once() {
    let (lines, _guard) = AccessLines::install();
    let together: &'static str = [ROLE, HELLO, HELLO].concat().leak();
    let steps = vec![
        data(0, together),
        data(10, STOP),
        data(0, USAGE),
        data(0, DONE),
    ];
    let mut upstream = upstream(steps);
    let first = peeked(&mut upstream, ProviderKind::Openai).await;
    // The peek stops at the first content; its parser holds the rest.
    assert_eq!(
        (first.events.len(), first.parser.buffered()),
        (2, HELLO.len())
    );
    let text = sse_text(openai(upstream, Some(first), limits(TOTAL))).await;
    assert_eq!(text, [ROLE, HELLO, HELLO, STOP, USAGE, DONE].concat());
    assert_eq!(lines.only().tokens, (5, 7));
}

#[tokio::test]
async fn the_first_contents_batch_is_written_before_the_relay_reads_on() {
    let (sender, mut upstream) = fed();
    let first: &'static str = [ROLE, HELLO].concat().leak();
    sender
        .send(Ok(Frame::data(Bytes::from_static(first.as_bytes()))))
        .await
        .unwrap();
    let peeked = peeked(&mut upstream, ProviderKind::Openai).await;
    // The rest is there already when the server asks for more of the body.
    sender
        .send(Ok(Frame::data(Bytes::from_static(STOP.as_bytes()))))
        .await
        .unwrap();
    let mut body = openai(upstream, Some(peeked), limits(TOTAL));
    let mut cx = Context::from_waker(std::task::Waker::noop());
    let mut poll = || match Pin::new(&mut body).poll_frame(&mut cx) {
        Poll::Ready(Some(Ok(frame))) => Some(frame.into_data().unwrap()),
        Poll::Pending => None,
        other => panic!("{other:?}"),
    };
    assert_eq!(poll().as_deref(), Some(first.as_bytes()));
    // One poll that yields, so that the server writes the first token now,
    // instead of polling on and writing it with the rest.
    assert_eq!(poll(), None);
    assert_eq!(poll().as_deref(), Some(STOP.as_bytes()));
    drop(sender);
}

#[tokio::test(start_paused = true)]
async fn an_anthropic_stream_read_up_to_its_text_is_relayed_whole() {
    let (lines, _guard) = AccessLines::install();
    let head: &'static str = [MESSAGE_START, BLOCK_START].concat().leak();
    let steps = vec![data(0, head), data(10, TEXT), data(10, MESSAGE_END)];
    let mut upstream = upstream(steps);
    let first = peeked(&mut upstream, ProviderKind::Anthropic).await;
    let names: Vec<_> = first.events.iter().map(|e| e.name.as_deref()).collect();
    let expected = [
        "message_start",
        "content_block_start",
        "content_block_delta",
    ];
    assert_eq!(names, expected.map(Some));
    let text = anthropic_text(upstream, Some(first)).await;
    assert_eq!(
        text,
        [MESSAGE_START, BLOCK_START, TEXT, MESSAGE_END].concat()
    );
    let line = lines.only();
    assert_eq!((&*line.outcome, line.tokens), ("ok", (10, 3)));
}

#[tokio::test(start_paused = true)]
async fn a_finished_stream_without_done_gets_one() {
    let upstream = upstream(vec![data(0, ROLE), data(10, HELLO), data(10, STOP)]);
    let text = openai_text(upstream, limits(TOTAL)).await;
    assert_eq!(text, [ROLE, HELLO, STOP, DONE].concat());
}

#[tokio::test(start_paused = true)]
async fn usage_the_client_did_not_ask_for_is_read_and_not_passed_on() {
    let (lines, _guard) = AccessLines::install();
    let steps = vec![
        data(0, ROLE),
        data(10, HELLO),
        data(10, STOP),
        data(10, USAGE),
        data(0, DONE),
    ];
    let mode = StreamMode::OpenAi { strip_usage: true };
    let (provider, log) = (provider(ProviderKind::Openai), access_log());
    let body = relay_sse(
        upstream(steps),
        None,
        provider,
        limits(TOTAL),
        mode,
        Dialect::OpenAi,
        log,
    );
    assert_eq!(sse_text(body).await, [ROLE, HELLO, STOP, DONE].concat());
    assert_eq!(lines.only().tokens, (5, 7));
}

#[tokio::test(start_paused = true)]
async fn an_openai_stream_cut_by_the_upstream_ends_with_one_error_event() {
    let (lines, _guard) = AccessLines::install();
    let upstream = upstream(vec![data(0, ROLE), data(10, HELLO)]);
    let text = openai_text(upstream, limits(TOTAL)).await;
    let (before, error) = openai_error(&text);
    assert_eq!(before, [ROLE, HELLO].concat());
    let message =
        "provider `up` failed mid-response: the stream ended before the response was finished";
    assert_eq!(error["message"], message);
    assert_eq!(lines.only().outcome, "upstream_protocol");
}

#[tokio::test(start_paused = true)]
async fn an_event_over_the_size_limit_ends_with_one_error_event() {
    let (lines, _guard) = AccessLines::install();
    // One event larger than `max_event_bytes` (64 KiB here), never terminated.
    let huge: &'static str = Box::leak(format!("data: {}", "x".repeat(70 << 10)).into_boxed_str());
    let upstream = upstream(vec![data(0, ROLE), data(10, huge), data(10, HELLO)]);
    let text = openai_text(upstream, limits(TOTAL)).await;
    let (before, error) = openai_error(&text);
    assert_eq!(before, ROLE);
    assert_eq!(error["code"], "upstream_error");
    assert_eq!(lines.only().outcome, "upstream_protocol");
}

#[tokio::test(start_paused = true)]
async fn an_anthropic_stream_cut_by_the_upstream_ends_with_one_error_event() {
    let steps = vec![data(0, MESSAGE_START), data(0, BLOCK_START), data(10, TEXT)];
    let text = anthropic_text(upstream(steps), None).await;
    let (before, error) = text.split_at(text.find("event: error\n").unwrap());
    assert_eq!(before, [MESSAGE_START, BLOCK_START, TEXT].concat());
    let data = error.strip_prefix("event: error\ndata: ").unwrap();
    let body: serde_json::Value = serde_json::from_str(data.strip_suffix("\n\n").unwrap()).unwrap();
    assert_eq!(body["type"], "error");
    let message = "provider `up` failed mid-response: the stream ended before message_stop";
    assert_eq!(body["error"]["message"], message);
}

#[tokio::test(start_paused = true)]
async fn a_complete_anthropic_stream_passes_through_with_its_usage_read() {
    let (lines, _guard) = AccessLines::install();
    let steps = vec![
        data(0, MESSAGE_START),
        data(0, BLOCK_START),
        data(10, TEXT),
        data(10, MESSAGE_END),
    ];
    let text = anthropic_text(upstream(steps), None).await;
    assert_eq!(
        text,
        [MESSAGE_START, BLOCK_START, TEXT, MESSAGE_END].concat()
    );
    let line = lines.only();
    assert_eq!((&*line.outcome, line.tokens), ("ok", (10, 3)));
}

#[tokio::test(start_paused = true)]
async fn a_silence_past_the_idle_timeout_ends_with_one_error_event() {
    let upstream = upstream(vec![data(0, ROLE), data(10, HELLO), hang(0)]);
    let started = Instant::now();
    let text = openai_text(upstream, limits(TOTAL)).await;
    let (before, error) = openai_error(&text);
    assert_eq!(before, [ROLE, HELLO].concat());
    assert_eq!(
        error["message"],
        "provider `up` timed out (idle timeout of 1s)"
    );
    assert_eq!(started.elapsed(), Duration::from_millis(10) + IDLE);
}

#[tokio::test(start_paused = true)]
async fn a_stream_still_flowing_at_the_deadline_ends_with_one_error_event() {
    let mut steps = vec![data(0, ROLE)];
    steps.extend((0..50).map(|_| data(400, HELLO)));
    let started = Instant::now();
    let text = openai_text(upstream(steps), limits(Duration::from_secs(3))).await;
    let (before, error) = openai_error(&text);
    assert_eq!(
        before,
        [ROLE].into_iter().chain([HELLO; 7]).collect::<String>()
    );
    // The message names the provider's total timeout, whatever cut it short.
    assert_eq!(
        error["message"],
        "provider `up` timed out (total timeout of 10s)"
    );
    assert_eq!(started.elapsed(), Duration::from_secs(3));
}

#[tokio::test(start_paused = true)]
async fn the_shutdown_cut_ends_the_stream_with_one_error_event() {
    let upstream = upstream(vec![data(0, ROLE), data(10, HELLO), hang(0)]);
    let limits = limits(TOTAL);
    let cut = limits.cut.clone();
    tokio::spawn(async move {
        tokio::time::sleep(Duration::from_millis(500)).await;
        cut.cancel();
    });
    let text = openai_text(upstream, limits).await;
    let (before, error) = openai_error(&text);
    assert_eq!(before, [ROLE, HELLO].concat());
    assert_eq!(error["code"], "service_unavailable");
}

#[tokio::test(start_paused = true)]
async fn a_broken_body_ends_with_one_error_event_without_its_internals() {
    let upstream = upstream(vec![data(0, ROLE), data(10, HELLO), fail(10)]);
    let text = openai_text(upstream, limits(TOTAL)).await;
    let (before, error) = openai_error(&text);
    assert_eq!(before, [ROLE, HELLO].concat());
    // What the connection said is for the log, not for the client.
    assert_eq!(error["message"], "provider `up` broke off its answer");
    assert!(!text.contains("connection reset"), "{text}");
}

#[tokio::test(start_paused = true)]
async fn the_relay_stops_when_the_client_goes_away() {
    let (lines, _guard) = AccessLines::install();
    let (upstream, response) = fed();
    let role = Frame::data(Bytes::from_static(ROLE.as_bytes()));
    upstream.send(Ok(role)).await.unwrap();
    let mut body = openai(response, None, limits(TOTAL));
    let first = body.frame().await.unwrap().unwrap().into_data().unwrap();
    assert_eq!(first, ROLE);
    drop(body);
    // The relay's task ends, and lets go of the upstream body, well before any timeout.
    tokio::time::timeout(Duration::from_millis(1), upstream.closed())
        .await
        .unwrap();
    assert_eq!(lines.only().outcome, "client_disconnected");
}
