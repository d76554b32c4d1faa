//! [`first_content`]: a stream read up to its first content, or failed.

use super::*;
use crate::upstream::{FirstContent, TimeoutPhase, UpstreamError, first_content};

/// The first-token timeout the tests give.
const FIRST_TOKEN: Duration = Duration::from_secs(3);

/// Peeks `upstream` of `kind` with a first-token timeout of [`FIRST_TOKEN`],
/// a total deadline [`TOTAL`] away and at most `limit` bytes.
async fn peek(
    kind: ProviderKind,
    mut upstream: Response<Scripted>,
    limit: usize,
) -> Result<Box<FirstContent>, UpstreamError> {
    let now = Instant::now();
    let provider = provider(kind);
    first_content(
        &mut upstream,
        &provider,
        FIRST_TOKEN,
        now + FIRST_TOKEN,
        now + TOTAL,
        limit,
    )
    .await
}

/// The events `first` hands on, written back as unnamed events, and the bytes
/// its parser holds.
fn read(first: &FirstContent) -> (String, usize) {
    let events = first.events.iter().map(|e| {
        assert_eq!(e.name, None);
        format!("data: {}\n\n", std::str::from_utf8(&e.data).unwrap())
    });
    (events.collect(), first.parser.buffered())
}

/// A limit no test reaches.
const LIMIT: usize = 64 << 10;

#[tokio::test(start_paused = true)]
async fn the_role_chunk_then_content_are_returned_as_read() {
    let upstream = upstream(vec![data(0, ROLE), data(300, HELLO), hang(0)]);
    let first = peek(ProviderKind::Openai, upstream, LIMIT).await.unwrap();
    assert_eq!(read(&first), ([ROLE, HELLO].concat(), 0));
}

#[tokio::test(start_paused = true)]
async fn an_openai_error_before_content_fails_with_its_status() {
    let error = concat!(
        r#"data: {"error":{"message":"Rate limit reached for sk-test-key","type":"rate_limit_error","code":"rate_limit_exceeded"}}"#,
        "\n\n"
    );
    let upstream = upstream(vec![data(0, ROLE), data(10, error), hang(0)]);
    let Err(UpstreamError::Status { status, error, .. }) =
        peek(ProviderKind::Openai, upstream, LIMIT).await
    else {
        panic!("not an error status");
    };
    assert_eq!(
        (status, &*error.message),
        (429, "Rate limit reached for [redacted]")
    );
}

#[tokio::test(start_paused = true)]
async fn an_anthropic_error_event_before_content_fails_with_its_status() {
    let error = concat!(
        "event: error\n",
        r#"data: {"type":"error","error":{"type":"overloaded_error","message":"Overloaded"}}"#,
        "\n\n"
    );
    let upstream = upstream(vec![data(0, MESSAGE_START), data(10, error), hang(0)]);
    let Err(UpstreamError::Status { status, error, .. }) =
        peek(ProviderKind::Anthropic, upstream, LIMIT).await
    else {
        panic!("not an error status");
    };
    assert_eq!((status, &*error.message), (529, "Overloaded"));
}

#[tokio::test(start_paused = true)]
async fn a_stream_ending_before_content_is_a_protocol_error() {
    let upstream = upstream(vec![data(0, ROLE)]);
    let Err(UpstreamError::Protocol { detail, .. }) =
        peek(ProviderKind::Openai, upstream, LIMIT).await
    else {
        panic!("not a protocol error");
    };
    assert_eq!(detail, "the stream ended before its first content");
}

#[tokio::test(start_paused = true)]
async fn an_event_that_is_not_json_before_content_fails_the_attempt() {
    let upstream = upstream(vec![
        data(0, ROLE),
        data(10, "data: <html>bad gateway</html>\n\n"),
        hang(0),
    ]);
    let Err(UpstreamError::Protocol { detail, .. }) =
        peek(ProviderKind::Openai, upstream, LIMIT).await
    else {
        panic!("not a protocol error");
    };
    assert_eq!(
        detail,
        "the stream carried an event that is not JSON before its first content"
    );
}

#[tokio::test(start_paused = true)]
async fn a_body_breaking_before_content_is_a_broken_answer_with_its_causes() {
    let upstream = upstream(vec![data(0, ROLE), fail(10)]);
    let Err(UpstreamError::Broken { detail, .. }) =
        peek(ProviderKind::Openai, upstream, LIMIT).await
    else {
        panic!("not a broken answer");
    };
    assert_eq!(
        detail,
        "error reading a body from connection: connection reset, key [redacted]"
    );
}

#[tokio::test(start_paused = true)]
async fn no_content_by_the_first_token_time_is_a_first_byte_timeout() {
    // Comments every 400 ms: never idle, never content.
    let mut steps = vec![data(0, ROLE)];
    steps.extend((0..20).map(|_| data(400, ": keep-alive\n\n")));
    let started = Instant::now();
    let Err(UpstreamError::Timeout { phase, limit, .. }) =
        peek(ProviderKind::Openai, upstream(steps), LIMIT).await
    else {
        panic!("not a timeout");
    };
    assert_eq!((phase, limit), (TimeoutPhase::FirstByte, FIRST_TOKEN));
    assert_eq!(started.elapsed(), FIRST_TOKEN);
}

#[tokio::test(start_paused = true)]
async fn a_silence_longer_than_idle_is_an_idle_timeout() {
    let upstream = upstream(vec![data(0, ROLE), hang(0)]);
    let started = Instant::now();
    let Err(UpstreamError::Timeout { phase, limit, .. }) =
        peek(ProviderKind::Openai, upstream, LIMIT).await
    else {
        panic!("not a timeout");
    };
    assert_eq!((phase, limit), (TimeoutPhase::Idle, IDLE));
    assert_eq!(started.elapsed(), IDLE);
}

#[tokio::test(start_paused = true)]
async fn past_the_limit_without_a_verdict_the_chunks_read_are_returned() {
    let upstream = upstream(vec![data(0, ROLE), data(10, ROLE), data(10, ROLE), hang(0)]);
    let first = peek(ProviderKind::Openai, upstream, ROLE.len() + 1)
        .await
        .unwrap();
    assert_eq!(read(&first), ([ROLE, ROLE].concat(), 0));
}
