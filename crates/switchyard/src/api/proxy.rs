//! The proxy endpoints: OpenAI's (`/v1/chat/completions`, `/v1/completions`,
//! `/v1/embeddings`) and Anthropic's (`/v1/messages`), to a provider of any
//! dialect.
//!
//! When the client's dialect is the provider's, the request passes through
//! with only `model` rewritten and the answer is relayed as it arrives. Between
//! dialects, the request is translated through the OpenAI chat shapes
//! (`switchyard_providers::translate`); a streamed answer is translated event by
//! event, a JSON answer once it is whole. Fields a translation leaves out are
//! named in `x-switchyard-dropped-fields`.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use axum::extract::State;
use axum::http::{HeaderName, HeaderValue, Request, StatusCode, header};
use axum::response::{IntoResponse, Response};
use bytes::Bytes;
use http_body_util::{BodyExt, LengthLimitError, Limited};
use hyper::body::Incoming;
use switchyard_providers::openai::chat::ChatCompletion;
use switchyard_providers::openai::{ChunkDecoder, ChunkEncoder, Endpoint, Usage};
use switchyard_providers::translate::{StreamDecoder, StreamEncoder};
use switchyard_providers::{anthropic, gemini};
use tokio::time::Instant;

use super::hedge::{self, Raced};
use super::inbound::{Answer, Call, Inbound};
use super::shadow;
use super::{AppState, Authenticated};
use crate::config::FailureClass;
use crate::error::{Dialect, GatewayError};
use crate::mix::splitmix64;
use crate::routing::load::{InFlight, Load};
use crate::routing::strategy::Tokens;
use crate::routing::{Facts, ModelRoute, Pick, Plan, Target};
use crate::telemetry::AccessLog;
use crate::upstream::breaker::Outcome;
use crate::upstream::first_content;
use crate::upstream::{
    ANTHROPIC_BETA, BodyUsage, HOPS, Outgoing, RelayLimits, StreamMode, UpstreamError,
    UpstreamResponse, Wire, read_whole, relay_json, relay_sse,
};

/// `x-switchyard-dropped-fields`: request fields a translation left out.
static DROPPED_FIELDS: axum::http::HeaderName =
    axum::http::HeaderName::from_static("x-switchyard-dropped-fields");

/// `GET /v1/models`: the configured public models.
pub async fn models(State(state): State<Arc<AppState>>, _: Authenticated) -> Response {
    (
        [(header::CONTENT_TYPE, "application/json")],
        state.models_body.clone(),
    )
        .into_response()
}

/// A proxy endpoint, in the dialect its clients speak.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ProxyEndpoint {
    /// An OpenAI endpoint.
    OpenAi(Endpoint),
    /// Anthropic's `POST /v1/messages`.
    Messages,
}

impl ProxyEndpoint {
    /// The proxy endpoint at `path`, if it is one.
    pub fn at(path: &str) -> Option<Self> {
        match path {
            "/v1/chat/completions" => Some(Self::OpenAi(Endpoint::ChatCompletions)),
            "/v1/completions" => Some(Self::OpenAi(Endpoint::Completions)),
            "/v1/embeddings" => Some(Self::OpenAi(Endpoint::Embeddings)),
            "/v1/messages" => Some(Self::Messages),
            _ => None,
        }
    }

    /// The access log's name for it.
    pub fn name(self) -> &'static str {
        match self {
            Self::OpenAi(Endpoint::ChatCompletions) => "chat_completions",
            Self::OpenAi(Endpoint::Completions) => "completions",
            Self::OpenAi(Endpoint::Embeddings) => "embeddings",
            Self::Messages => "messages",
        }
    }

    /// The dialect of its clients (and so of its errors).
    pub fn dialect(self) -> Dialect {
        match self {
            Self::OpenAi(_) => Dialect::OpenAi,
            Self::Messages => Dialect::Anthropic,
        }
    }
}

/// Checks the key, validates, then tries the model's deployments (and its
/// fallbacks) until one answers, and relays that answer in the client's
/// dialect; writes the access line itself (when the body ends, for a success).
///
/// A failure before the provider's answer begins is retried when its class is
/// in `retries.on`, within the model's attempts, the retry budget and the
/// request's deadline: on another deployment at once, on the same one after a
/// full-jitter backoff (never before its `retry-after`). A 400 of the client's
/// own making is never retried. The answer says what happened in
/// `x-switchyard-attempts` and `x-switchyard-route`.
pub async fn proxy(
    state: &AppState,
    endpoint: ProxyEndpoint,
    request: Request<Incoming>,
    request_id: &HeaderValue,
    arrived: std::time::Instant,
) -> Response {
    let dialect = endpoint.dialect();
    let mut log = AccessLog::start_at(request_id.to_str().unwrap_or("-"), endpoint.name(), arrived);
    let key = match state.auth.authenticate(request.headers()) {
        Ok(key) => key,
        Err(e) => return fail(log, &e, dialect),
    };
    // The one client header that goes upstream, to an Anthropic provider of an
    // Anthropic client only.
    let beta = match endpoint {
        ProxyEndpoint::Messages => anthropic_beta(request.headers()),
        ProxyEndpoint::OpenAi(_) => None,
    };
    let passed = request
        .headers()
        .get(&HOPS)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.trim().parse::<u32>().ok())
        .unwrap_or(0);
    if passed >= state.max_hops {
        return fail(log, &GatewayError::LoopDetected(passed), dialect);
    }
    let hops = HeaderValue::from(passed + 1);
    let task = request
        .headers()
        .get(&TASK)
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned);
    let max_cost = match request.headers().get(&MAX_COST).map(|v| {
        v.to_str()
            .ok()
            .and_then(|v| v.trim().parse::<f64>().ok())
            .filter(|max| max.is_finite() && *max >= 0.0)
    }) {
        None => None,
        Some(Some(max)) => Some(max),
        Some(None) => return fail(log, &GatewayError::BadMaxCost, dialect),
    };
    let read = tokio::time::timeout(state.body_timeout, read_body(request, state.max_body_bytes));
    let body = match read.await {
        Err(_) => return fail(log, &GatewayError::BodyTimeout(state.body_timeout), dialect),
        Ok(Err(e)) => return fail(log, &e, dialect),
        Ok(Ok(body)) => body,
    };
    let mut inbound = match Inbound::parse(endpoint, &body) {
        Ok(inbound) => inbound,
        Err(e) => return fail(log, &e, dialect),
    };
    log.request(inbound.model(), inbound.stream());
    // A rough size for the `cost` strategy: four bytes a token, and a typical answer.
    let tokens = Tokens {
        input: body.len() as u64 / 4,
        output: EXPECTED_OUTPUT_TOKENS,
    };
    let task = task.or_else(|| state.routes.reads_task().then(|| task_in(&body)).flatten());
    let routed = state.routes.apply(Facts {
        model: inbound.model(),
        task: task.as_deref(),
        prompt_tokens: tokens.input,
        key,
    });
    let mut plan = match state.routes.plan(routed.model, tokens) {
        Ok(plan) => plan,
        Err(e) => return fail(log, &e, dialect),
    };
    if let Some(strategy) = routed.strategy {
        plan.use_strategy(strategy);
    }
    if let Some(max) = max_cost {
        plan.limit_cost(max);
    }
    plan.prompt(&body);
    if let Some(max) = max_cost
        && !plan.affordable()
    {
        let error = GatewayError::OverMaxCost {
            model: plan.model().name.clone(),
            max,
        };
        return fail(log, &error, dialect);
    }
    let mut attempts = Attempts::new(state, plan.model().attempts);
    if let Some(rule) = routed.rule {
        attempts.trace = format!("routes[{rule}]={}", routed.model);
    }
    if let Some(shadow) = &plan.model().shadow {
        shadow::copy(state, shadow, &mut inbound, tokens, request_id, &hops);
    }
    let forward = Forward {
        request_id,
        beta: beta.as_ref(),
        hops: &hops,
        max_event_bytes: state.max_stream_event_bytes,
    };
    let mut next = plan.next(attempts.now());
    loop {
        let Some(pick) = next.take() else {
            let error = attempts
                .last_error
                .take()
                .unwrap_or_else(|| GatewayError::NoDeployment(plan.model().name.clone()));
            return attempts.headers(fail(log, &error, dialect));
        };
        let call = match inbound.call(pick.target) {
            Ok(call) => call,
            Err(e) => {
                // This deployment cannot take the request (its dialect lacks the
                // endpoint or a field): another one may.
                pick.settle(Outcome::Ignored, attempts.now());
                attempts.not_served(&pick, plan.in_fallback(), e);
                next = plan.next(attempts.now());
                continue;
            }
        };
        log.route(&pick.target.provider.name, &pick.target.upstream_model);
        let fallback = plan.in_fallback();
        let (primary, exchange) = attempts.start(pick, call, &forward);
        let hedge = primary
            .pick
            .model
            .hedge
            .as_ref()
            .and_then(|hedge| Some((hedge, primary.pick.target.hedge_delay(hedge.after)?)));
        let raced = match hedge {
            Some((hedge, delay)) => {
                let second = || {
                    let (second, exchange) =
                        hedge_attempt(&mut attempts, &mut plan, &mut inbound, &forward)?;
                    hedge.sent.increment(1);
                    Some((second, exchange))
                };
                // Boxed: the race holds two exchanges and a timer, which would
                // otherwise enlarge (and make dearer to move) every request's future.
                Box::pin(hedge::race(exchange, delay, second)).await
            }
            None => Raced {
                primary: Some(exchange.await),
                hedge: None,
            },
        };
        // Each side's outcome noted, the winner (if any) kept.
        let mut won = None;
        let mut failed = None;
        let sides = std::iter::once((primary, raced.primary)).chain(raced.hedge);
        for (side, (attempt, result)) in sides.enumerate() {
            match result {
                Some(Ok(answer)) => won = Some((attempt, answer, side == 1)),
                Some(Err(e)) => {
                    let Attempt {
                        pick, in_flight, ..
                    } = attempt;
                    drop(in_flight);
                    attempts.note_failure(&pick, fallback, e);
                    failed = Some((pick.target, pick.model));
                }
                None => attempts.cancelled(&attempt.pick, fallback),
            }
        }
        // When the answer began: its time to first content, before a whole
        // answer is read.
        let begun = Instant::now();
        let Some((attempt, exchanged, by_hedge)) = won else {
            next = match failed {
                Some((target, model)) => {
                    continue_after(&mut attempts, &mut plan, target, model).await
                }
                None => None,
            };
            continue;
        };
        let Attempt {
            pick,
            call,
            sent,
            deadline,
            in_flight,
        } = attempt;
        if let Some(hedge) = &pick.model.hedge
            && by_hedge
        {
            hedge.won.increment(1);
        }
        let answer = match relayed(&call, &exchanged.0) {
            Some(relayed) => Answered::Relay(exchanged, relayed),
            None => match read_translated(state, exchanged.0, &call, deadline).await {
                Ok(whole) => Answered::Whole(whole),
                Err(GatewayError::Upstream(e)) => {
                    drop(in_flight);
                    attempts.note_failure(&pick, fallback, e);
                    next = continue_after(&mut attempts, &mut plan, pick.target, pick.model).await;
                    continue;
                }
                Err(e) => {
                    pick.settle(Outcome::Ignored, attempts.now());
                    return attempts.headers(fail(log, &e, dialect));
                }
            },
        };
        pick.settle(Outcome::Success, attempts.now());
        pick.observe(Outcome::Success, attempts.now());
        let ttft = begun.saturating_duration_since(sent);
        pick.target
            .load
            .observe_ttft(ttft, std::time::Instant::now());
        pick.target.canary_success(ttft);
        pick.target.record_latency(ttft);
        log.route(&pick.target.provider.name, &pick.target.upstream_model);
        log.hold(in_flight);
        attempts.served(&pick, fallback);
        plan.served(&pick, attempts.now());
        let mut response = match answer {
            Answered::Relay(exchanged, relayed) => {
                respond(state, exchanged, relayed, &call, deadline, log)
            }
            Answered::Whole(whole) => whole_response(whole, log),
        };
        let headers = response.headers_mut();
        headers.insert(PROVIDER.clone(), pick.target.provider_header.clone());
        headers.insert(MODEL.clone(), pick.target.model_header.clone());
        if !call.dropped.is_empty() {
            headers.insert(DROPPED_FIELDS.clone(), dropped_header(&call.dropped));
        }
        return attempts.headers(response);
    }
}

/// What every attempt of a request sends along besides its body.
struct Forward<'r> {
    request_id: &'r HeaderValue,
    /// The client's `anthropic-beta`, for Anthropic providers of Anthropic clients.
    beta: Option<&'r HeaderValue>,
    /// `x-switchyard-hops` for the provider.
    hops: &'r HeaderValue,
    /// `server.max_stream_event_bytes`.
    max_event_bytes: usize,
}

/// One attempt under way: its deployment, its request, and its place in the
/// deployment's load.
struct Attempt<'a> {
    pick: Pick<'a>,
    call: Call<'a>,
    sent: Instant,
    deadline: Instant,
    in_flight: InFlight,
}

/// An answer whose first content has arrived: the response and, for a
/// stream, the chunks read so far.
type Exchanged = (UpstreamResponse, Vec<Bytes>);

/// Sends a request and waits for its answer to begin: its headers, and for a
/// stream its first content (so that a stream failing before that is the
/// attempt's failure, and may be retried). Borrows nothing of the attempt.
async fn exchange(
    target: &Target,
    outgoing: Outgoing<'_>,
    max_event_bytes: usize,
) -> Result<Exchanged, UpstreamError> {
    let (stream, sent, deadline) = (outgoing.stream, outgoing.sent, outgoing.deadline);
    let provider = &target.provider;
    let mut upstream = provider.send(outgoing).await?;
    observe_rate_limit(&target.load, upstream.headers());
    let mut first = Vec::new();
    if stream && is_sse(&upstream) {
        let first_token = target.first_token;
        let until = deadline.min(sent + first_token);
        first = first_content(
            &mut upstream,
            provider,
            first_token,
            until,
            deadline,
            max_event_bytes,
        )
        .await?;
    }
    Ok((upstream, first))
}

/// A second deployment for a hedge, when the model has another one that can
/// take the request and the retry budget allows the extra load.
fn hedge_attempt<'a, 'f>(
    attempts: &mut Attempts<'_>,
    plan: &mut Plan<'a>,
    inbound: &mut Inbound<'_>,
    forward: &'f Forward<'f>,
) -> Option<(
    Attempt<'a>,
    impl Future<Output = Result<Exchanged, UpstreamError>> + use<'a, 'f>,
)>
where
    'a: 'f,
{
    let now = attempts.now();
    // A hedge is an attempt: not for a model that allows one only, nor past
    // the request's deadline.
    if attempts.allowed < 2 || attempts.past_deadline(now) {
        return None;
    }
    let mut pick = plan.next_alongside(now)?;
    pick.why = "hedge";
    let call = match inbound.call(pick.target) {
        Ok(call) if attempts.state.budget.try_retry(now) => call,
        _ => {
            pick.settle(Outcome::Ignored, now);
            return None;
        }
    };
    Some(attempts.start(pick, call, forward))
}

/// Completion tokens assumed for a request, for the `cost` strategy.
const EXPECTED_OUTPUT_TOKENS: u64 = 256;

/// Feeds the provider's rate-limit headers (OpenAI's `x-ratelimit-*`,
/// Anthropic's `anthropic-ratelimit-*`) to the deployment's load, so that the
/// `latency` strategy sheds a nearly exhausted deployment.
fn observe_rate_limit(load: &Load, headers: &axum::http::HeaderMap) {
    let number = |names: &[HeaderName; 2]| {
        names
            .iter()
            .find_map(|name| headers.get(name))
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.trim().parse::<u64>().ok())
    };
    let [
        remaining_requests,
        limit_requests,
        remaining_tokens,
        limit_tokens,
    ] = &*RATE_LIMIT;
    let remaining = (number(remaining_requests), number(remaining_tokens));
    if remaining == (None, None) {
        return;
    }
    load.observe_rate_limit(
        remaining.0,
        number(limit_requests),
        remaining.1,
        number(limit_tokens),
        std::time::Instant::now(),
    );
}

/// The rate-limit headers, OpenAI's and Anthropic's name each: remaining and
/// limit of requests, then of tokens.
static RATE_LIMIT: std::sync::LazyLock<[[HeaderName; 2]; 4]> = std::sync::LazyLock::new(|| {
    let pair = |openai: &'static str, anthropic: &'static str| {
        [
            HeaderName::from_static(openai),
            HeaderName::from_static(anthropic),
        ]
    };
    [
        pair(
            "x-ratelimit-remaining-requests",
            "anthropic-ratelimit-requests-remaining",
        ),
        pair(
            "x-ratelimit-limit-requests",
            "anthropic-ratelimit-requests-limit",
        ),
        pair(
            "x-ratelimit-remaining-tokens",
            "anthropic-ratelimit-tokens-remaining",
        ),
        pair(
            "x-ratelimit-limit-tokens",
            "anthropic-ratelimit-tokens-limit",
        ),
    ]
});

/// After a failed attempt (noted in `attempts`) on `failed` of `model`: the
/// deployment to try next, if the failure may be retried. A prompt too long
/// for the model goes on only to a fallback with a larger context window. A
/// deployment already tried in this request (the same one again, or the chain
/// starting over) is tried only after a backoff that honours its
/// `retry-after` — unless the failure was a 429 and the provider has another
/// key free. No attempt starts past the request's deadline, and a retry takes
/// from the budget only when it happens.
async fn continue_after<'a>(
    attempts: &mut Attempts<'_>,
    plan: &mut Plan<'a>,
    failed: &Target,
    model: &ModelRoute,
) -> Option<Pick<'a>> {
    if !attempts.retryable() {
        return None;
    }
    let now = attempts.now();
    if attempts.past_deadline(now) {
        return None;
    }
    let mut next = if attempts.last_class == Some(FailureClass::ContextLength) {
        // Only a larger window: the first fallback with one that has a
        // deployment to try (never the chain from its start again).
        loop {
            if !plan.next_larger_model() {
                return None;
            }
            attempts.entered(plan);
            if let Some(pick) = plan.next_alongside(now) {
                break pick;
            }
        }
    } else {
        if attempts.model_exhausted(plan) && !plan.next_model() {
            return None;
        }
        plan.next(now)?
    };
    let again = attempts.tried(next.target);
    let other_key = attempts.last_class == Some(FailureClass::RateLimited)
        && std::ptr::eq(next.target, failed)
        && next.target.provider.has_free_key(now);
    if again && !other_key {
        // The permit is handed back for the wait: the breaker may open meanwhile.
        next.settle(Outcome::Ignored, now);
        let delay = attempts.backoff()?;
        tokio::time::sleep(delay).await;
        let now = attempts.now();
        match next.target.breaker.allow(now) {
            Some(permit) => next.rearm(permit),
            None => next = plan.next(now)?,
        }
    }
    if !attempts.spend_retry() {
        next.settle(Outcome::Ignored, attempts.now());
        return None;
    }
    if !std::ptr::eq(next.model, model) {
        attempts.state.counters.fallbacks.increment(1);
    }
    Some(next)
}

/// One request's attempts: their count, the retry decisions, and the trace
/// for `x-switchyard-attempts` and `x-switchyard-route`.
struct Attempts<'s> {
    state: &'s AppState,
    /// Attempts the model allows.
    allowed: u32,
    made: u32,
    /// The request's deadline, set by the first deployment's total timeout.
    deadline: Option<Instant>,
    /// `x-switchyard-route`: `provider/model[why]=outcome` per attempt.
    trace: String,
    last_error: Option<GatewayError>,
    /// The class of the last failure, `None` for the client's own.
    last_class: Option<FailureClass>,
    /// The `retry-after` of the last failure.
    last_retry_after: Option<Duration>,
    /// `x-switchyard-provider` and `-model` of the last deployment tried,
    /// which name who failed on an error answer.
    last_target: Option<(HeaderValue, HeaderValue)>,
    /// The route of a request served at the first attempt, prebuilt.
    served_first: Option<HeaderValue>,
    /// The deployments tried (their addresses), to know a retry of one.
    tried: Vec<usize>,
    /// Which model of the plan the attempts are counted for, and how many it made.
    model_index: usize,
    in_model: u32,
}

impl<'s> Attempts<'s> {
    fn new(state: &'s AppState, allowed: u32) -> Self {
        state.budget.record_request(Instant::now());
        Self {
            state,
            allowed,
            made: 0,
            deadline: None,
            trace: String::new(),
            last_error: None,
            last_class: None,
            last_retry_after: None,
            last_target: None,
            served_first: None,
            tried: Vec::new(),
            model_index: 0,
            in_model: 0,
        }
    }

    fn now(&self) -> Instant {
        Instant::now()
    }

    /// The deadline of an attempt on `target`: the request's, which the first
    /// attempt sets from its provider's total timeout, and no later than this
    /// provider's own.
    fn deadline(&mut self, target: &Target, stream: bool) -> Instant {
        let limit = if stream {
            target.stream_total
        } else {
            target.total
        };
        let own = Instant::now() + limit;
        let request = *self.deadline.get_or_insert(own);
        request.min(own)
    }

    /// Begins an attempt of `call` on the picked deployment: its deadline,
    /// its place in the deployment's load, and the exchange to await.
    fn start<'a, 'f>(
        &mut self,
        pick: Pick<'a>,
        call: Call<'a>,
        forward: &'f Forward<'f>,
    ) -> (
        Attempt<'a>,
        impl Future<Output = Result<Exchanged, UpstreamError>> + use<'a, 'f>,
    )
    where
        'a: 'f,
    {
        let target = pick.target;
        let deadline = self.deadline(target, call.stream);
        let sent = Instant::now();
        let outgoing = Outgoing {
            uri: call.uri,
            body: call.body.clone(),
            stream: call.stream,
            request_id: forward.request_id,
            anthropic_beta: forward
                .beta
                .filter(|_| matches!(call.answer, Answer::Anthropic)),
            hops: forward.hops,
            sent,
            deadline,
        };
        let attempt = Attempt {
            in_flight: target.load.begin(),
            pick,
            call,
            sent,
            deadline,
        };
        (attempt, exchange(target, outgoing, forward.max_event_bytes))
    }

    /// Records an attempt given up because the other side of its hedge
    /// answered first: it says nothing of the deployment's health.
    fn cancelled(&mut self, pick: &Pick<'_>, fallback: bool) {
        pick.settle(Outcome::Ignored, self.now());
        self.tried.push(std::ptr::from_ref(pick.target) as usize);
        self.in_model += 1;
        self.note(pick, fallback, "hedge_lost");
    }

    /// Counts an attempt and traces it.
    fn note(&mut self, pick: &Pick<'_>, fallback: bool, outcome: &str) {
        self.made += 1;
        self.trace(pick, fallback, outcome);
    }

    /// Adds `[model>]provider/model[why]=outcome` to the route trace.
    fn trace(&mut self, pick: &Pick<'_>, fallback: bool, outcome: &str) {
        if !self.trace.is_empty() {
            self.trace.push_str(", ");
        }
        if fallback {
            self.trace.push_str(&pick.model.name);
            self.trace.push('>');
        }
        self.trace.push_str(&pick.target.provider.name);
        self.trace.push('/');
        self.trace.push_str(&pick.target.upstream_model);
        self.trace.push('[');
        self.trace.push_str(pick.why);
        self.trace.push(']');
        self.trace.push('=');
        self.trace.push_str(outcome);
    }

    fn served(&mut self, pick: &Pick<'_>, fallback: bool) {
        if self.made == 0
            && !fallback
            && self.trace.is_empty()
            && pick.why == pick.model.strategy().as_str()
        {
            self.made = 1;
            self.served_first = Some(pick.target.served_first.clone());
        } else {
            self.note(pick, fallback, "ok");
        }
    }

    /// Records a failed attempt: its breaker outcome, trace entry and error.
    fn note_failure(&mut self, pick: &Pick<'_>, fallback: bool, failure: UpstreamError) {
        let now = self.now();
        let class = failure.class();
        let label = match (&failure, class) {
            (UpstreamError::TooLarge { .. }, _) => "too_large",
            (_, Some(class)) => class.as_str(),
            (_, None) => "client_error",
        };
        // What says nothing of the deployment's health: the client's own
        // request, a refusal of its content, a key resting or one key's 429
        // when others remain, or a request whose own deadline ran out.
        let says_nothing = match class {
            None | Some(FailureClass::ContextLength | FailureClass::ContentPolicy) => true,
            Some(FailureClass::RateLimited) => {
                failure.keys_resting() || pick.target.provider.key_count() > 1
            }
            Some(FailureClass::Timeout) => self.past_deadline(now),
            Some(_) => false,
        };
        let outcome = if says_nothing {
            Outcome::Ignored
        } else {
            pick.target.load.observe_failure(now.into_std());
            pick.target.canary_failure();
            Outcome::Failure
        };
        pick.settle(outcome, now);
        pick.observe(outcome, now);
        self.last_class = class;
        self.last_retry_after = failure.retry_after().map(Duration::from_secs);
        self.last_error = Some(GatewayError::from(failure));
        self.tried.push(std::ptr::from_ref(pick.target) as usize);
        self.in_model += 1;
        self.note(pick, fallback, label);
        self.last_target = Some((
            pick.target.provider_header.clone(),
            pick.target.model_header.clone(),
        ));
    }

    /// Records a deployment that cannot take the request (not an attempt).
    fn not_served(&mut self, pick: &Pick<'_>, fallback: bool, error: GatewayError) {
        self.trace(pick, fallback, "not_served");
        // An upstream failure says more than a dialect that does not fit.
        self.last_error.get_or_insert(error);
    }

    /// Whether the last failure's class is one `retries.on` tries again, and
    /// attempts remain in all.
    fn retryable(&self) -> bool {
        self.last_class
            .is_some_and(|c| self.state.retries.on.contains(&c))
    }

    /// Whether the model being tried has used its attempts (the plan then
    /// moves on to the next fallback model, which has its own).
    fn model_exhausted(&mut self, plan: &Plan<'_>) -> bool {
        if plan.current() != self.model_index {
            self.model_index = plan.current();
            self.in_model = 1;
            self.allowed = plan.current_model().attempts;
        }
        if self.in_model >= self.allowed {
            self.in_model = 0;
            self.model_index += 1;
            if let Some(next) = plan.model_after() {
                self.allowed = next.attempts;
            }
            return true;
        }
        false
    }

    /// Starts counting the attempts of the model the plan has moved on to.
    fn entered(&mut self, plan: &Plan<'_>) {
        self.model_index = plan.current();
        self.in_model = 0;
        self.allowed = plan.current_model().attempts;
    }

    /// Whether `target` has been tried in this request.
    fn tried(&self, target: &Target) -> bool {
        self.tried.contains(&(std::ptr::from_ref(target) as usize))
    }

    /// Whether the request's deadline has passed.
    fn past_deadline(&self, now: Instant) -> bool {
        self.deadline.is_some_and(|deadline| now >= deadline)
    }

    /// Takes a retry from the budget, or notes that it had none.
    fn spend_retry(&mut self) -> bool {
        if self.state.budget.try_retry(Instant::now()) {
            self.state.counters.retries.increment(1);
            return true;
        }
        self.trace.push_str(", budget_exhausted");
        false
    }

    /// How long to wait before trying a deployment again: `None` when it asked
    /// for longer than `retries.retry_after_cap` or the wait would pass the
    /// deadline.
    fn backoff(&self) -> Option<Duration> {
        let seed = splitmix64(JITTER.fetch_add(1, Ordering::Relaxed));
        let delay =
            self.state
                .backoff
                .delay(self.made.saturating_sub(1), self.last_retry_after, seed)?;
        let deadline = self.deadline?;
        (Instant::now() + delay < deadline).then_some(delay)
    }

    /// Writes `x-switchyard-attempts` and `x-switchyard-route` on `response`.
    fn headers(self, mut response: Response) -> Response {
        let headers = response.headers_mut();
        if let Some((provider, model)) = &self.last_target
            && !headers.contains_key(&PROVIDER)
        {
            headers.insert(PROVIDER.clone(), provider.clone());
            headers.insert(MODEL.clone(), model.clone());
        }
        headers.insert(ATTEMPTS.clone(), HeaderValue::from(self.made));
        let route = match self.served_first {
            Some(route) => Some(route),
            None => HeaderValue::from_maybe_shared(Bytes::from(self.trace)).ok(),
        };
        if let Some(route) = route {
            headers.insert(ROUTE.clone(), route);
        }
        response
    }
}

/// `x-switchyard-provider`: the deployment's provider.
static PROVIDER: HeaderName = HeaderName::from_static("x-switchyard-provider");

/// `x-switchyard-model`: the deployment's upstream model.
static MODEL: HeaderName = HeaderName::from_static("x-switchyard-model");

/// `x-switchyard-task`: what the request is for, as `routes:` rules read it.
static TASK: HeaderName = HeaderName::from_static("x-switchyard-task");

/// `metadata.task` of an OpenAI or Anthropic body, for `routes:` rules.
fn task_in(body: &[u8]) -> Option<String> {
    #[derive(serde::Deserialize)]
    struct Metadata {
        task: Option<String>,
    }
    #[derive(serde::Deserialize)]
    struct Probe {
        metadata: Option<Metadata>,
    }
    serde_json::from_slice::<Probe>(body).ok()?.metadata?.task
}

/// Seeds the backoff jitter: a different draw for every retry of every request.
static JITTER: AtomicU64 = AtomicU64::new(0);

/// `x-switchyard-max-cost`: the most a request may cost, in USD.
static MAX_COST: axum::http::HeaderName =
    axum::http::HeaderName::from_static("x-switchyard-max-cost");

/// `x-switchyard-attempts`: upstream calls made for the request.
static ATTEMPTS: axum::http::HeaderName =
    axum::http::HeaderName::from_static("x-switchyard-attempts");

/// `x-switchyard-route`: each attempt's deployment and outcome.
static ROUTE: axum::http::HeaderName = axum::http::HeaderName::from_static("x-switchyard-route");

/// Every `anthropic-beta` header of the client, joined.
fn anthropic_beta(headers: &axum::http::HeaderMap) -> Option<HeaderValue> {
    let mut values = headers.get_all(&ANTHROPIC_BETA).iter();
    let first = values.next()?;
    let rest: Vec<&[u8]> = values.map(HeaderValue::as_bytes).collect();
    if rest.is_empty() {
        return Some(first.clone());
    }
    let mut joined = first.as_bytes().to_vec();
    for value in rest {
        joined.extend_from_slice(b", ");
        joined.extend_from_slice(value);
    }
    HeaderValue::from_bytes(&joined).ok()
}

/// `x-switchyard-dropped-fields`: the names joined by `, `, any byte that
/// cannot stand in a header (a client's key may hold anything) written as `?`.
fn dropped_header(names: &[String]) -> HeaderValue {
    let text: String = names
        .join(", ")
        .chars()
        .map(|c| {
            if c.is_ascii_graphic() || c == ' ' {
                c
            } else {
                '?'
            }
        })
        .collect();
    HeaderValue::from_str(&text).unwrap_or(HeaderValue::from_static("?"))
}

/// A provider's answer, ready for the client.
enum Answered {
    /// Passed on as it arrives.
    Relay(Exchanged, Relayed),
    /// Read whole and translated.
    Whole(Translated),
}

/// How a provider's answer is passed on as it arrives.
enum Relayed {
    /// An event stream, in this mode.
    Stream(StreamMode),
    /// A JSON body, its usage read where the dialect keeps it.
    Json(BodyUsage),
}

/// How `upstream` is relayed to the client; `None` when the client gets it
/// only whole and translated (a JSON answer between dialects).
fn relayed(call: &Call<'_>, upstream: &UpstreamResponse) -> Option<Relayed> {
    let stream = call.stream && is_sse(upstream);
    Some(match call.answer {
        Answer::OpenAi { strip_usage } if stream => {
            Relayed::Stream(StreamMode::OpenAi { strip_usage })
        }
        Answer::Anthropic if stream => Relayed::Stream(StreamMode::Anthropic),
        Answer::Chat { include_usage } if stream => Relayed::Stream(StreamMode::Translate {
            decoder: decoder_for(call),
            encoder: encoder_for(call, include_usage),
        }),
        Answer::OpenAi { .. } => Relayed::Json(BodyUsage::OpenAi),
        Answer::Anthropic => Relayed::Json(BodyUsage::Anthropic),
        Answer::Chat { .. } | Answer::GeminiEmbeddings { .. } => return None,
    })
}

/// The limits of relaying the answer of `call`.
fn relay_limits(state: &AppState, call: &Call<'_>, deadline: Instant) -> RelayLimits {
    RelayLimits {
        idle: call.target.provider.timeouts.idle,
        deadline,
        max_event_bytes: state.max_stream_event_bytes,
        cut: state.cut.clone(),
    }
}

/// Passes the provider's answer on to the client as it arrives.
fn respond(
    state: &AppState,
    (upstream, first): Exchanged,
    relayed: Relayed,
    call: &Call<'_>,
    deadline: Instant,
    mut log: AccessLog,
) -> Response {
    let provider = &call.target.provider;
    log.status(StatusCode::OK.as_u16());
    let limits = relay_limits(state, call, deadline);
    let usage = match relayed {
        Relayed::Stream(mode) => {
            return sse_response(relay_sse(
                upstream,
                first,
                provider.clone(),
                limits,
                mode,
                call.dialect,
                log,
            ));
        }
        Relayed::Json(usage) => usage,
    };
    let length = upstream.headers().get(header::CONTENT_LENGTH).cloned();
    let mut response = Response::new(relay_json(upstream, provider.clone(), limits, usage, log));
    let headers = response.headers_mut();
    headers.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    // Known length: one write instead of chunked framing.
    if let Some(length) = length {
        headers.insert(header::CONTENT_LENGTH, length);
    }
    response
}

/// Whether the provider answers with an event stream.
fn is_sse(upstream: &UpstreamResponse) -> bool {
    upstream
        .headers()
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.starts_with("text/event-stream"))
}

fn sse_response(body: axum::body::Body) -> Response {
    let mut response = Response::new(body);
    let headers = response.headers_mut();
    headers.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/event-stream"),
    );
    headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-cache"));
    headers.insert("x-accel-buffering", HeaderValue::from_static("no"));
    response
}

/// Reads the provider's event stream.
fn decoder_for(call: &Call<'_>) -> Box<dyn StreamDecoder> {
    match call.target.provider.wire {
        Wire::OpenAi => Box::new(ChunkDecoder::default()),
        Wire::Anthropic => Box::new(anthropic::MessageStreamDecoder::new(unix_now())),
        Wire::Gemini => Box::new(gemini::GenerateStreamDecoder::new(
            &call.target.upstream_model,
            unix_now(),
        )),
    }
}

/// Writes the client's event stream.
fn encoder_for(call: &Call<'_>, include_usage: bool) -> Box<dyn StreamEncoder> {
    match call.dialect {
        Dialect::OpenAi => Box::new(ChunkEncoder::new(include_usage)),
        Dialect::Anthropic => Box::new(anthropic::MessageStreamEncoder::new(
            &call.target.upstream_model,
        )),
    }
}

/// Reads the provider's whole JSON answer and translates it into the
/// client's dialect — while the attempt is still open, so that an answer that
/// breaks off, is too large or cannot be read fails the attempt (and is tried
/// again like any other failure) instead of the request.
async fn read_translated(
    state: &AppState,
    upstream: UpstreamResponse,
    call: &Call<'_>,
    deadline: Instant,
) -> Result<Translated, GatewayError> {
    let provider = &call.target.provider;
    let limits = relay_limits(state, call, deadline);
    let body = read_whole(
        upstream,
        provider.clone(),
        &limits,
        state.max_response_bytes,
    )
    .await?;
    translate_answer(call, &body).map_err(|detail| {
        GatewayError::Upstream(UpstreamError::Protocol {
            provider: provider.name.to_string(),
            detail: provider.scrub(&detail),
        })
    })
}

/// The client's response for a whole translated answer.
fn whole_response(answer: Translated, mut log: AccessLog) -> Response {
    log.status(StatusCode::OK.as_u16());
    log.first_token();
    if let Some(usage) = answer.usage {
        log.usage(usage);
    }
    log.finish("ok");
    if answer.stream {
        sse_response(axum::body::Body::from(answer.body))
    } else {
        ([(header::CONTENT_TYPE, "application/json")], answer.body).into_response()
    }
}

/// A whole answer translated into the client's dialect.
struct Translated {
    body: Vec<u8>,
    /// An event stream (the client asked for one, the provider answered at once).
    stream: bool,
    usage: Option<Usage>,
}

/// The provider's answer in the client's dialect, and its usage.
fn translate_answer(call: &Call<'_>, body: &[u8]) -> Result<Translated, String> {
    let target = call.target;
    if let Answer::GeminiEmbeddings { base64 } = call.answer {
        let list =
            gemini::decode_embeddings(body, &target.upstream_model, base64).map_err(|e| e.0)?;
        // Gemini's batch endpoint counts no tokens: none is logged rather than zero.
        let usage = (list.usage.total_tokens > 0).then_some(Usage {
            prompt_tokens: list.usage.prompt_tokens,
            completion_tokens: 0,
            total_tokens: list.usage.total_tokens,
        });
        return Ok(Translated {
            body: serde_json::to_vec(&list).map_err(|e| e.to_string())?,
            stream: false,
            usage,
        });
    }
    let completion: ChatCompletion = match target.provider.wire {
        Wire::OpenAi => serde_json::from_slice(body).map_err(|e| e.to_string())?,
        Wire::Anthropic => anthropic::decode_response(body, unix_now()).map_err(|e| e.0)?,
        Wire::Gemini => {
            gemini::decode_response(body, &target.upstream_model, unix_now()).map_err(|e| e.0)?
        }
    };
    let usage = completion.usage.map(|u| u.totals());
    if let (true, Answer::Chat { include_usage }) = (call.stream, call.answer) {
        let mut encoder = encoder_for(call, include_usage);
        let mut out = bytes::BytesMut::new();
        for chunk in completion.into_chunks() {
            encoder.chunk(&chunk, &mut out);
        }
        encoder.done(&mut out);
        return Ok(Translated {
            body: out.to_vec(),
            stream: true,
            usage,
        });
    }
    let body = match call.dialect {
        Dialect::OpenAi => serde_json::to_vec(&completion).map_err(|e| e.to_string())?,
        Dialect::Anthropic => anthropic::encode_response(&completion),
    };
    Ok(Translated {
        body,
        stream: false,
        usage,
    })
}

fn unix_now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

fn fail(mut log: AccessLog, error: &GatewayError, dialect: Dialect) -> Response {
    log.status(error.status_in(dialect).as_u16());
    log.fail(error.kind(), &error.to_string());
    error.to_response_in(dialect)
}

/// The whole request body, refused with 413 past `limit` bytes.
async fn read_body(request: Request<Incoming>, limit: usize) -> Result<Bytes, GatewayError> {
    let declared = request
        .headers()
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    let mut body = request.into_body();
    if let Some(len) = declared.filter(|len| *len > limit as u64) {
        // A body up to twice the limit is read on and thrown away (for a
        // second at most), so that the client, still sending, gets the 413
        // rather than a reset connection, and may keep the connection.
        if len <= 2 * limit as u64 {
            discard(&mut body).await;
        }
        return Err(GatewayError::PayloadTooLarge { limit });
    }
    match Limited::new(body, limit).collect().await {
        Ok(collected) => Ok(collected.to_bytes()),
        Err(e) if e.downcast_ref::<LengthLimitError>().is_some() => {
            Err(GatewayError::PayloadTooLarge { limit })
        }
        Err(e) => Err(GatewayError::BodyRead(e.to_string())),
    }
}

/// How long a refused request body is read on, to be thrown away.
const DISCARD_TIME: Duration = Duration::from_secs(1);

/// Reads `body` to its end and drops it, for [`DISCARD_TIME`] at most.
async fn discard(body: &mut Incoming) {
    let read = async { while let Some(Ok(_)) = body.frame().await {} };
    let _ = tokio::time::timeout(DISCARD_TIME, read).await;
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn the_dropped_fields_header_shows_every_name() {
        let names = ["seed".to_owned(), "bad\nkey\u{e9}".to_owned()];
        assert_eq!(dropped_header(&names), "seed, bad?key?");
    }

    #[test]
    fn every_anthropic_beta_header_is_passed_on() {
        let mut headers = axum::http::HeaderMap::new();
        assert!(anthropic_beta(&headers).is_none());
        headers.append(&ANTHROPIC_BETA, HeaderValue::from_static("a-2025"));
        assert_eq!(anthropic_beta(&headers).unwrap(), "a-2025");
        headers.append(&ANTHROPIC_BETA, HeaderValue::from_static("b-2025"));
        assert_eq!(anthropic_beta(&headers).unwrap(), "a-2025, b-2025");
    }
}
