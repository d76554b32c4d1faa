//! [`relay_json`] and [`read_whole`]: a JSON answer relayed as it comes, or read whole.

use super::*;
use crate::error::GatewayError;
use crate::upstream::{BodyUsage, TimeoutPhase, UpstreamError, read_whole, relay_json};

/// An OpenAI answer, in the two pieces it arrives in.
const ANSWER: [&str; 2] = [
    r#"{"id":"c","object":"chat.completion","created":1,"model":"m","choices":[{"index":0,"message":{"role":"assistant","#,
    r#""content":"Hello"},"finish_reason":"stop"}],"usage":{"prompt_tokens":5,"completion_tokens":7,"total_tokens":12}}"#,
];

/// Relays `upstream`, whose usage is where `usage` says.
fn relay(upstream: Response<Scripted>, usage: BodyUsage) -> Body {
    let provider = provider(ProviderKind::Openai);
    let limits = limits(TOTAL);
    relay_json(upstream, provider, limits, usage, access_log())
}

#[tokio::test(start_paused = true)]
async fn a_body_passes_through_whole_and_its_usage_is_read() {
    let (lines, _guard) = AccessLines::install();
    let upstream = upstream(vec![data(0, ANSWER[0]), data(10, ANSWER[1])]);
    let (text, cut) = read_body(relay(upstream, BodyUsage::OpenAi)).await;
    assert_eq!(cut, None);
    assert_eq!(text, ANSWER.concat());
    let line = lines.only();
    assert_eq!((&*line.outcome, line.tokens), ("ok", (5, 7)));
}

#[tokio::test(start_paused = true)]
async fn the_usage_of_an_anthropic_message_is_read() {
    let (lines, _guard) = AccessLines::install();
    let message = r#"{"id":"m","type":"message","role":"assistant","content":[{"type":"text","text":"Hello"}],"model":"c","stop_reason":"end_turn","usage":{"input_tokens":10,"output_tokens":3}}"#;
    let (text, _) = read_body(relay(
        upstream(vec![data(0, message)]),
        BodyUsage::Anthropic,
    ))
    .await;
    assert_eq!(text, message);
    assert_eq!(lines.only().tokens, (10, 3));
}

#[tokio::test(start_paused = true)]
async fn a_body_is_over_once_its_declared_length_is_relayed() {
    let (lines, _guard) = AccessLines::install();
    let mut upstream = upstream(vec![data(0, ANSWER[0]), data(10, ANSWER[1]), hang(0)]);
    upstream.body_mut().length = Some(ANSWER.concat().len() as u64);
    let (text, cut) = read_body(relay(upstream, BodyUsage::OpenAi)).await;
    assert_eq!((text, cut), (ANSWER.concat(), None));
    assert_eq!(lines.only().outcome, "ok");
}

#[tokio::test(start_paused = true)]
async fn a_body_broken_midway_cuts_the_client_body_with_an_error() {
    let (lines, _guard) = AccessLines::install();
    let upstream = upstream(vec![data(0, ANSWER[0]), fail(10)]);
    let (text, cut) = read_body(relay(upstream, BodyUsage::OpenAi)).await;
    assert_eq!(text, ANSWER[0]);
    assert_eq!(
        cut.unwrap(),
        "provider `up` broke off its answer: error reading a body from connection: connection reset, key [redacted]"
    );
    assert_eq!(lines.only().outcome, "upstream_protocol");
}

/// Reads `upstream` whole, refusing more than `limit` bytes.
async fn whole(upstream: Response<Scripted>, limit: usize) -> Result<Bytes, GatewayError> {
    let provider = provider(ProviderKind::Openai);
    read_whole(upstream, provider, &limits(TOTAL), limit).await
}

#[tokio::test(start_paused = true)]
async fn read_whole_returns_the_body() {
    let upstream = upstream(vec![data(0, ANSWER[0]), data(10, ANSWER[1])]);
    let body = whole(upstream, 1 << 10).await.unwrap();
    assert_eq!(body, ANSWER.concat());
}

#[tokio::test(start_paused = true)]
async fn read_whole_refuses_a_body_over_the_limit() {
    let upstream = upstream(vec![data(0, ANSWER[0]), data(10, ANSWER[1]), hang(0)]);
    let Err(GatewayError::Upstream(UpstreamError::TooLarge { limit, .. })) =
        whole(upstream, ANSWER[0].len() + 1).await
    else {
        panic!("not refused as too large");
    };
    assert_eq!(limit, ANSWER[0].len() + 1);
}

#[tokio::test(start_paused = true)]
async fn read_whole_times_out_on_a_silence_past_idle() {
    let upstream = upstream(vec![data(0, ANSWER[0]), hang(0)]);
    let started = Instant::now();
    let Err(GatewayError::Upstream(UpstreamError::Timeout { phase, .. })) =
        whole(upstream, 1 << 10).await
    else {
        panic!("not a timeout");
    };
    assert_eq!(phase, TimeoutPhase::Idle);
    assert_eq!(started.elapsed(), IDLE);
}
