//! The attempt executor: tries a request's plan — its model's deployments,
//! then its fallbacks' — until one answers, as plain async code.
//!
//! Per attempt: the plan picks a deployment (its breaker's permit held by
//! the [`Pick`]), the request is written for it (`prepare`; a deployment
//! that cannot take it is passed over, not counted), sent (`send`), and its
//! outcome noted once: breaker, passive health, load, canary, route trace.
//! A failure whose class is in `retries.on` is tried again within the
//! model's attempts, the retry budget and the request's deadline: on another
//! deployment at once, on the same one after a full-jitter backoff (never
//! before its `retry-after`); a prompt too long goes on only to a fallback
//! with a larger context window. A model with `hedge:` races a second
//! deployment against a slow first one ([`hedge::race`]).
//!
//! What an attempt does is passed in (`prepare`, `send`): the gateway sends
//! HTTP; the unit tests of this module use a fake exchange on a paused clock.

pub mod hedge;
#[cfg(test)]
mod tests;

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use axum::http::{HeaderValue, Response};
use bytes::Bytes;
use tokio::time::Instant;

use super::UpstreamError;
use super::backoff::Backoff;
use super::breaker::Outcome;
use super::budget::RetryBudget;
use crate::config::FailureClass;
use crate::error::GatewayError;
use crate::headers::{ATTEMPTS, MODEL, PROVIDER, ROUTE};
use crate::mix::splitmix64;
use crate::request::{FailedAttempt, RequestCx};
use crate::routing::load::InFlight;
use crate::routing::{ModelRoute, Pick, Plan, Target};
use crate::telemetry::metrics::Metrics;
use hedge::Raced;

/// Why an attempt failed.
#[derive(Debug)]
pub enum Failure {
    /// The deployment failed: retried when its class is in `retries.on`.
    Upstream(UpstreamError),
    /// The request cannot go on (the gateway is shutting down): no retry,
    /// and nothing held against the deployment.
    Stop(GatewayError),
}

impl From<UpstreamError> for Failure {
    fn from(error: UpstreamError) -> Self {
        Self::Upstream(error)
    }
}

/// What `retries:` says is tried again, and how long to wait.
#[derive(Debug)]
pub struct RetryPolicy {
    /// The failure classes tried again (`retries.on`).
    pub on: Vec<FailureClass>,
    /// The backoff schedule.
    pub backoff: Backoff,
}

impl RetryPolicy {
    /// The policy of `retries:`.
    pub fn new(retries: &crate::config::Retries) -> Self {
        Self {
            on: retries.on.clone(),
            backoff: Backoff {
                base: retries.backoff_base,
                max: retries.backoff_max,
                retry_after_cap: retries.retry_after_cap,
            },
        }
    }
}

/// The retry budget every request shares, and the retry counters: they live
/// as long as the process.
#[derive(Debug)]
pub struct RetryLive {
    /// The retry budget shared by every request.
    pub budget: RetryBudget,
    /// `switchyard_retries_total`: attempts after the first, of any request.
    pub retries: metrics::Counter,
    /// `switchyard_fallbacks_total`: attempts moved on to a fallback model.
    pub fallbacks: metrics::Counter,
}

impl RetryLive {
    /// The budget of `retries:`, its counters registered in `metrics`.
    pub fn new(retries: &crate::config::Retries, metrics: &Metrics) -> Self {
        metrics.describe(
            "switchyard_retries_total",
            None,
            "Upstream attempts made after a request's first one failed.",
        );
        metrics.describe(
            "switchyard_fallbacks_total",
            None,
            "Retries that moved on to a fallback model.",
        );
        Self {
            budget: RetryBudget::new(
                retries.budget_ratio,
                retries.budget_min,
                retries.budget_window,
            ),
            retries: metrics.counter("switchyard_retries_total", &[]),
            fallbacks: metrics.counter("switchyard_fallbacks_total", &[]),
        }
    }
}

/// The attempt that served: its deployment, its request, and its answer.
#[derive(Debug)]
pub struct Served<'a, C, A> {
    /// The deployment, its permit already handed back with the success.
    pub pick: Pick<'a>,
    /// The request as that deployment took it.
    pub call: C,
    /// The answer, begun.
    pub answer: A,
    /// When the request was sent.
    pub sent: Instant,
    /// When the whole exchange must be over.
    pub deadline: Instant,
    /// Its place in the deployment's load, held until the answer ends.
    pub in_flight: InFlight,
}

/// One attempt under way.
struct Attempt<'a, C> {
    pick: Pick<'a>,
    call: C,
    sent: Instant,
    deadline: Instant,
    in_flight: InFlight,
}

/// Tries `plan` until a deployment answers.
///
/// `prepare` writes the request for a deployment (an error: it cannot take
/// it); `send(target, call, sent, deadline)` sends it and resolves, once the
/// answer has begun, to the answer and when it began. The future `send`
/// returns must not borrow the call: a hedge writes its own while the first
/// one is under way.
pub async fn execute<'a, C, A, P, S, F>(
    attempts: &mut Attempts<'_>,
    plan: &mut Plan<'a>,
    mut prepare: P,
    send: S,
) -> Result<Served<'a, C, A>, GatewayError>
where
    P: FnMut(&'a Target) -> Result<C, GatewayError>,
    S: Fn(&'a Target, &C, Instant, Instant) -> F,
    F: Future<Output = Result<(A, Instant), Failure>>,
{
    let mut next = plan.next(Instant::now());
    loop {
        let Some(pick) = next.take() else {
            return Err(attempts
                .last_error
                .take()
                .unwrap_or_else(|| GatewayError::NoDeployment(plan.model().name.clone())));
        };
        let call = match prepare(pick.target) {
            Ok(call) => call,
            Err(e) => {
                // This deployment cannot take the request (its dialect lacks
                // the endpoint or a field): another one may.
                pick.settle(Outcome::Ignored, Instant::now());
                attempts.not_served(&pick, plan.in_fallback(), e);
                next = plan.next(Instant::now());
                continue;
            }
        };
        let fallback = plan.in_fallback();
        let primary = attempts.start(pick, call);
        let exchange = send(
            primary.pick.target,
            &primary.call,
            primary.sent,
            primary.deadline,
        );
        let hedge = primary
            .pick
            .model
            .hedge
            .as_ref()
            .and_then(|hedge| Some((hedge, primary.pick.target.hedge_delay(hedge.after)?)));
        let raced = match hedge {
            Some((hedge, delay)) => {
                let second = || {
                    let second = hedge_attempt(attempts, plan, &mut prepare)?;
                    hedge.sent.increment(1);
                    let exchange = send(
                        second.pick.target,
                        &second.call,
                        second.sent,
                        second.deadline,
                    );
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
                Some(Err(Failure::Upstream(e))) => {
                    let Attempt {
                        pick, in_flight, ..
                    } = attempt;
                    drop(in_flight);
                    attempts.note_failure(&pick, fallback, e);
                    failed = Some((pick.target, pick.model));
                }
                Some(Err(Failure::Stop(e))) => {
                    attempt.pick.settle(Outcome::Ignored, Instant::now());
                    return Err(e);
                }
                None => attempts.cancelled(&attempt.pick, fallback),
            }
        }
        let Some((attempt, (answer, begun), by_hedge)) = won else {
            next = match failed {
                Some((target, model)) => continue_after(attempts, plan, target, model).await,
                None => None,
            };
            continue;
        };
        if let (Some(hedge), true) = (&attempt.pick.model.hedge, by_hedge) {
            hedge.won.increment(1);
        }
        succeeded(&attempt.pick, begun.saturating_duration_since(attempt.sent));
        attempts.served(&attempt.pick, fallback);
        plan.served(&attempt.pick, Instant::now());
        return Ok(Served {
            pick: attempt.pick,
            call: attempt.call,
            answer,
            sent: attempt.sent,
            deadline: attempt.deadline,
            in_flight: attempt.in_flight,
        });
    }
}

/// Everything a deployment learns from an attempt that served, its answer
/// begun `ttft` after it was sent: its breaker and health, its load's
/// time-to-first-token estimate, its canary, its hedging latency window.
fn succeeded(pick: &Pick<'_>, ttft: Duration) {
    let now = Instant::now();
    pick.settle(Outcome::Success, now);
    pick.observe(Outcome::Success, now);
    let target = pick.target;
    target.load.observe_ttft(ttft, std::time::Instant::now());
    target.canary_success(ttft);
    target.record_latency(ttft);
}

/// A second deployment for a hedge, when the model has another one that can
/// take the request and the retry budget allows the extra load.
fn hedge_attempt<'a, C, P>(
    attempts: &mut Attempts<'_>,
    plan: &mut Plan<'a>,
    prepare: &mut P,
) -> Option<Attempt<'a, C>>
where
    P: FnMut(&'a Target) -> Result<C, GatewayError>,
{
    let now = Instant::now();
    // A hedge is an attempt: not for a model that allows one only, nor past
    // the request's deadline.
    if attempts.allowed < 2 || attempts.past_deadline(now) {
        return None;
    }
    let mut pick = plan.next_alongside(now)?;
    pick.why = "hedge";
    match prepare(pick.target) {
        Ok(call) if attempts.live.budget.try_retry(now) => Some(attempts.start(pick, call)),
        _ => {
            pick.settle(Outcome::Ignored, now);
            None
        }
    }
}

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
    let now = Instant::now();
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
        let now = Instant::now();
        match next.target.breaker.allow(now) {
            Some(permit) => next.rearm(permit),
            None => next = plan.next(now)?,
        }
    }
    if !attempts.spend_retry() {
        next.settle(Outcome::Ignored, Instant::now());
        return None;
    }
    if !std::ptr::eq(next.model, model) {
        attempts.live.fallbacks.increment(1);
    }
    Some(next)
}

/// Seeds the backoff jitter: a different draw for every retry of every request.
static JITTER: AtomicU64 = AtomicU64::new(0);

/// One request's attempts: their count, the retry decisions, the errors, and
/// the trace for `x-switchyard-attempts` and `x-switchyard-route`.
#[derive(Debug)]
pub struct Attempts<'s> {
    policy: &'s RetryPolicy,
    live: &'s RetryLive,
    /// Attempts the model being tried allows.
    allowed: u32,
    made: u32,
    /// The request's deadline, set by the first deployment's total timeout.
    deadline: Option<Instant>,
    /// Whether the request streams (its deadline is then the stream's).
    stream: bool,
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
    /// The provider and upstream model of the last deployment that failed.
    last_failed: Option<(std::sync::Arc<str>, String)>,
    /// The route of a request served at the first attempt, prebuilt.
    served_first: Option<HeaderValue>,
    /// Every failed attempt, with its error, for the request's record.
    failed: Vec<FailedAttempt>,
    /// The deployments tried (their addresses), to know a retry of one.
    tried: Vec<usize>,
    /// Which model of the plan the attempts are counted for, and how many it made.
    model_index: usize,
    in_model: u32,
}

/// What an answer says of its request's attempts.
#[derive(Debug)]
pub struct Trace {
    /// `x-switchyard-attempts`.
    attempts: HeaderValue,
    /// `x-switchyard-route`.
    route: Option<HeaderValue>,
    /// `x-switchyard-provider` and `-model` of the last deployment that
    /// failed, for an answer no deployment served.
    last_target: Option<(HeaderValue, HeaderValue)>,
}

impl Trace {
    /// Writes the headers on `response`.
    pub fn apply<B>(self, mut response: Response<B>) -> Response<B> {
        let headers = response.headers_mut();
        if let Some((provider, model)) = self.last_target
            && !headers.contains_key(&PROVIDER)
        {
            headers.insert(PROVIDER.clone(), provider);
            headers.insert(MODEL.clone(), model);
        }
        headers.insert(ATTEMPTS.clone(), self.attempts);
        if let Some(route) = self.route {
            headers.insert(ROUTE.clone(), route);
        }
        response
    }
}

impl<'s> Attempts<'s> {
    /// The attempts of a request of `plan` (counted in the retry budget);
    /// `stream` when it asks for a streamed answer.
    pub fn new(
        policy: &'s RetryPolicy,
        live: &'s RetryLive,
        plan: &Plan<'_>,
        stream: bool,
    ) -> Self {
        live.budget.record_request(Instant::now());
        Self {
            policy,
            live,
            allowed: plan.model().attempts,
            made: 0,
            deadline: None,
            stream,
            trace: String::new(),
            last_error: None,
            last_class: None,
            last_retry_after: None,
            last_target: None,
            last_failed: None,
            served_first: None,
            failed: Vec::new(),
            tried: Vec::new(),
            model_index: 0,
            in_model: 0,
        }
    }

    /// Starts the route trace with the `routes:` rule that chose the model
    /// (`routes[N]=model`).
    pub fn routed_by(&mut self, rule: String) {
        self.trace = rule;
    }

    /// Records the attempts in the request's record, and returns what the
    /// answer says of them.
    pub fn conclude(self, cx: &mut RequestCx) -> Trace {
        let route = match self.served_first {
            Some(route) => Some(route),
            None => HeaderValue::from_maybe_shared(Bytes::from(self.trace)).ok(),
        };
        if cx.record().served_by.is_none()
            && let Some((provider, upstream_model)) = &self.last_failed
        {
            cx.served_by(provider, upstream_model);
        }
        cx.attempted(self.made, self.failed, route.clone());
        Trace {
            attempts: HeaderValue::from(self.made),
            route,
            last_target: self.last_target,
        }
    }

    /// Whether the request's deadline has passed.
    fn past_deadline(&self, now: Instant) -> bool {
        self.deadline.is_some_and(|deadline| now >= deadline)
    }

    /// The deadline of an attempt on `target`: the request's, which the first
    /// attempt sets from its provider's total timeout, and no later than this
    /// provider's own.
    fn deadline(&mut self, target: &Target) -> Instant {
        let limit = if self.stream {
            target.stream_total
        } else {
            target.total
        };
        let own = Instant::now() + limit;
        let request = *self.deadline.get_or_insert(own);
        request.min(own)
    }

    /// Begins an attempt of `call` on the picked deployment: its deadline and
    /// its place in the deployment's load.
    fn start<'a, C>(&mut self, pick: Pick<'a>, call: C) -> Attempt<'a, C> {
        let deadline = self.deadline(pick.target);
        Attempt {
            in_flight: pick.target.load.begin(),
            pick,
            call,
            sent: Instant::now(),
            deadline,
        }
    }

    /// Records an attempt given up because the other side of its hedge
    /// answered first: it says nothing of the deployment's health.
    fn cancelled(&mut self, pick: &Pick<'_>, fallback: bool) {
        pick.settle(Outcome::Ignored, Instant::now());
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
        let now = Instant::now();
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
            Some(
                FailureClass::Connect
                | FailureClass::ServerError
                | FailureClass::Overloaded
                | FailureClass::UpstreamAuth,
            ) => false,
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
        self.failed.push(FailedAttempt {
            deployment: pick.target.name.clone(),
            outcome: label,
            detail: failure.to_string(),
        });
        self.last_error = Some(GatewayError::from(failure));
        self.tried.push(std::ptr::from_ref(pick.target) as usize);
        self.in_model += 1;
        self.note(pick, fallback, label);
        self.last_target = Some((
            pick.target.provider_header.clone(),
            pick.target.model_header.clone(),
        ));
        self.last_failed = Some((
            pick.target.provider.name.clone(),
            pick.target.upstream_model.clone(),
        ));
    }

    /// Records a deployment that cannot take the request (not an attempt).
    fn not_served(&mut self, pick: &Pick<'_>, fallback: bool, error: GatewayError) {
        self.trace(pick, fallback, "not_served");
        // An upstream failure says more than a dialect that does not fit.
        self.last_error.get_or_insert(error);
    }

    /// Whether the last failure's class is one `retries.on` tries again.
    fn retryable(&self) -> bool {
        self.last_class.is_some_and(|c| self.policy.on.contains(&c))
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

    /// Takes a retry from the budget, or notes that it had none.
    fn spend_retry(&mut self) -> bool {
        if self.live.budget.try_retry(Instant::now()) {
            self.live.retries.increment(1);
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
            self.policy
                .backoff
                .delay(self.made.saturating_sub(1), self.last_retry_after, seed)?;
        let deadline = self.deadline?;
        (Instant::now() + delay < deadline).then_some(delay)
    }
}
