//! One attempt over HTTP: the request sent to a deployment, its answer
//! awaited until it begins — its headers, a stream's first content — and an
//! answer that is translated whole read and translated, all while the
//! attempt is open, so that any failure on the way is the attempt's (and may
//! be tried again elsewhere).

use std::sync::Arc;

use axum::http::{HeaderMap, HeaderValue};
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use super::inbound::{Answer, Call};
use super::respond::{Begun, Shape, is_sse, relayed, translate_answer};
use crate::api::Limits;
use crate::error::GatewayError;
use crate::headers::provider_rate_limit;
use crate::routing::Target;
use crate::routing::load::Load;
use crate::upstream::attempts::Failure;
use crate::upstream::{
    FirstContent, Outgoing, RelayLimits, UpstreamError, UpstreamResponse, first_content, read_whole,
};

/// What every attempt of a request sends along besides its body, and the
/// limits its answer is read within.
#[derive(Debug)]
pub(super) struct Forward<'r> {
    pub(super) request_id: &'r HeaderValue,
    /// The client's `anthropic-beta`, for Anthropic providers of Anthropic clients.
    pub(super) beta: Option<HeaderValue>,
    /// `x-switchyard-hops` for the provider.
    pub(super) hops: HeaderValue,
    pub(super) limits: Limits,
    /// The shutdown cut.
    pub(super) cut: &'r Arc<CancellationToken>,
    /// Every answer is read whole, none relayed (an answer stitched
    /// together with cached parts).
    pub(super) whole: bool,
}

impl Forward<'_> {
    /// The request of `call` to send at `sent`, to be over by `deadline`.
    pub(super) fn outgoing<'s>(
        &'s self,
        call: &Call<'s>,
        sent: Instant,
        deadline: Instant,
    ) -> Outgoing<'s> {
        Outgoing {
            uri: call.uri,
            body: call.body.clone(),
            stream: call.stream,
            request_id: self.request_id,
            anthropic_beta: self
                .beta
                .as_ref()
                .filter(|_| matches!(call.answer, Answer::Anthropic)),
            hops: &self.hops,
            sent,
            deadline,
        }
    }

    /// The limits of relaying an answer of `target` due by `deadline`.
    pub(super) fn relay_limits(&self, target: &Target, deadline: Instant) -> RelayLimits {
        RelayLimits {
            idle: target.provider.timeouts.idle,
            deadline,
            max_event_bytes: self.limits.max_stream_event_bytes,
            cut: self.cut.clone(),
        }
    }
}

/// One attempt: sends `outgoing` to `target` and waits for the answer to
/// begin; an answer the client gets only whole and translated is read and
/// translated here. Resolves to the answer and when it began.
pub(super) async fn attempt<'f>(
    forward: &'f Forward<'f>,
    target: &'f Target,
    outgoing: Outgoing<'f>,
    shape: Shape,
) -> Result<(Begun, Instant), Failure> {
    let deadline = outgoing.deadline;
    let (upstream, first) =
        exchange(target, outgoing, forward.limits.max_stream_event_bytes).await?;
    // When the answer began: its time to first content, before a whole
    // answer is read.
    let begun = Instant::now();
    if !forward.whole
        && let Some(how) = relayed(shape, target, &upstream)
    {
        let answer = Begun::Relay {
            upstream,
            first,
            how,
        };
        return Ok((answer, begun));
    }
    let limits = forward.relay_limits(target, deadline);
    let provider = &target.provider;
    let body = read_whole(
        upstream,
        provider.clone(),
        &limits,
        forward.limits.max_response_bytes,
    )
    .await
    .map_err(|e| match e {
        GatewayError::Upstream(e) => Failure::Upstream(e),
        other => Failure::Stop(other),
    })?;
    let whole = translate_answer(shape, target, &body).map_err(|detail| {
        Failure::Upstream(UpstreamError::Protocol {
            provider: provider.name.to_string(),
            detail: provider.scrub(&detail),
        })
    })?;
    Ok((Begun::Whole(whole), begun))
}

/// Sends a request and waits for its answer to begin: its headers, and for a
/// stream its first content (so that a stream failing before that is the
/// attempt's failure, and may be retried).
async fn exchange(
    target: &Target,
    outgoing: Outgoing<'_>,
    max_event_bytes: usize,
) -> Result<(UpstreamResponse, Option<Box<FirstContent>>), UpstreamError> {
    let (stream, sent, deadline) = (outgoing.stream, outgoing.sent, outgoing.deadline);
    let provider = &target.provider;
    let mut upstream = provider.send(outgoing).await?;
    observe_rate_limit(&target.load, upstream.headers());
    let mut first = None;
    if stream && is_sse(&upstream) {
        let first_token = target.first_token;
        let until = deadline.min(sent + first_token);
        let read = first_content(
            &mut upstream,
            provider,
            first_token,
            until,
            deadline,
            max_event_bytes,
        );
        first = Some(read.await?);
    }
    Ok((upstream, first))
}

/// Feeds the provider's rate-limit headers (OpenAI's `x-ratelimit-*`,
/// Anthropic's `anthropic-ratelimit-*`) to the deployment's load, so that the
/// `latency` strategy sheds a nearly exhausted deployment.
fn observe_rate_limit(load: &Load, headers: &HeaderMap) {
    // Each figure's first value under OpenAI's name, else Anthropic's.
    let mut found: [[Option<&HeaderValue>; 2]; 4] = Default::default();
    for (name, value) in headers {
        if let Some((figure, family)) = provider_rate_limit(name.as_str()) {
            found[figure][family].get_or_insert(value);
        }
    }
    let number = |figure: usize| {
        let [openai, anthropic] = found[figure];
        openai
            .or(anthropic)?
            .to_str()
            .ok()?
            .trim()
            .parse::<u64>()
            .ok()
    };
    let remaining = (number(0), number(2));
    if remaining == (None, None) {
        return;
    }
    load.observe_rate_limit(
        remaining.0,
        number(1),
        remaining.1,
        number(3),
        std::time::Instant::now(),
    );
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    fn headroom_after(headers: &[(&'static str, &'static str)]) -> f64 {
        let mut map = HeaderMap::new();
        for (name, value) in headers {
            map.append(*name, HeaderValue::from_static(value));
        }
        let load = Load::new();
        observe_rate_limit(&load, &map);
        load.headroom(std::time::Instant::now())
    }

    #[test]
    fn provider_rate_limits_are_read_under_either_name() {
        assert_eq!(headroom_after(&[("content-type", "application/json")]), 1.0);
        // OpenAI's: the smaller fraction left, of requests and of tokens.
        let openai = [
            ("x-ratelimit-limit-requests", "100"),
            ("x-ratelimit-remaining-requests", " 50 "),
            ("x-ratelimit-limit-tokens", "1000"),
            ("x-ratelimit-remaining-tokens", "100"),
        ];
        assert!((headroom_after(&openai) - 0.1).abs() < 1e-3);
        let anthropic = [
            ("anthropic-ratelimit-requests-remaining", "30"),
            ("anthropic-ratelimit-requests-limit", "100"),
            ("anthropic-ratelimit-tokens-remaining", "900"),
        ];
        assert!((headroom_after(&anthropic) - 0.3).abs() < 1e-3);
        // Under both names, OpenAI's counts; of a repeated header, the first.
        let both = [
            ("anthropic-ratelimit-requests-remaining", "90"),
            ("x-ratelimit-remaining-requests", "20"),
            ("x-ratelimit-remaining-requests", "80"),
            ("x-ratelimit-limit-requests", "100"),
        ];
        assert!((headroom_after(&both) - 0.2).abs() < 1e-3);
        // A limit without what remains says nothing; neither does junk.
        assert_eq!(headroom_after(&[("x-ratelimit-limit-tokens", "9")]), 1.0);
        assert_eq!(
            headroom_after(&[("x-ratelimit-remaining-tokens", "many")]),
            1.0
        );
    }
}
