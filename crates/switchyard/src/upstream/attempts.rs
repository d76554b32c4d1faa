//! The attempt executor: tries a request's plan — its model's deployments,
//! then its fallbacks' — until one answers, as plain async code.
//!
//! Per attempt: the plan picks a deployment (its breaker's permit held by
//! the [`Pick`]), the attempt takes its room under the deployment's
//! `max_in_flight` (one that filled up since the plan looked is passed over,
//! not counted), the request is written for it (`prepare`; a deployment
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
mod ledger;
#[cfg(test)]
mod tests;

use std::time::Duration;

use tokio::time::Instant;

use super::UpstreamError;
use super::backoff::Backoff;
use super::breaker::Outcome;
use super::budget::RetryBudget;
use crate::admission::limit::LimitError;
use crate::config::FailureClass;
use crate::error::GatewayError;
use crate::routing::load::InFlight;
use crate::routing::{ModelRoute, Pick, Plan, Target};
use crate::telemetry::metrics::Metrics;
use hedge::Raced;
pub use ledger::{Attempts, Trace};

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
    if let Some(refusal) = refused_while_resting(attempts, plan, &mut next) {
        return Err(refusal);
    }
    loop {
        let Some(pick) = next.take() else {
            return Err(attempts.last_error.take().unwrap_or_else(|| {
                let model = plan.model().name.clone();
                if plan.some_at_limit() {
                    LimitError::Deployments(model).into()
                } else {
                    GatewayError::NoDeployment(model)
                }
            }));
        };
        let Some(in_flight) = pick.target.try_begin() else {
            // It filled up since the plan looked: passed over like one whose
            // breaker is open.
            pick.settle(Outcome::Ignored, Instant::now());
            let model = plan.model().name.clone();
            attempts.passed_over(
                &pick,
                plan.in_fallback(),
                "at_limit",
                LimitError::Deployments(model).into(),
            );
            next = plan.next(Instant::now());
            continue;
        };
        let call = match prepare(pick.target) {
            Ok(call) => call,
            Err(e) => {
                // This deployment cannot take the request (its dialect lacks
                // the endpoint or a field): another one may.
                pick.settle(Outcome::Ignored, Instant::now());
                attempts.passed_over(&pick, plan.in_fallback(), "not_served", e);
                next = plan.next(Instant::now());
                continue;
            }
        };
        let fallback = plan.in_fallback();
        let primary = attempts.start(pick, call, in_flight);
        let round = primary.sent;
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
                Some(Ok(answer)) => {
                    let took = answer.1.saturating_duration_since(attempt.sent);
                    attempt.pick.target.exchanged(took, None);
                    won = Some((attempt, answer, side == 1));
                }
                Some(Err(Failure::Upstream(e))) => {
                    let Attempt {
                        pick,
                        in_flight,
                        sent,
                        ..
                    } = attempt;
                    drop(in_flight);
                    let took = Instant::now().saturating_duration_since(sent);
                    pick.target.exchanged(took, Some(&e));
                    attempts.note_failure(&pick, fallback, e, sent);
                    failed = Some((pick.target, pick.model));
                }
                Some(Err(Failure::Stop(e))) => {
                    attempt.pick.settle(Outcome::Ignored, Instant::now());
                    return Err(e);
                }
                None => attempts.cancelled(&attempt.pick, fallback),
            }
        }
        // The round waited on the providers until an answer began, or all failed.
        let over = match &won {
            Some((_, (_, begun), _)) => *begun,
            None => Instant::now(),
        };
        attempts.waited(over.saturating_duration_since(round));
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

/// A request whose first deployment rests after a 429 (the plan hands one
/// out only when every deployment left does) is answered at once: the 429 of
/// its provider's keys, with the wait until one is free as `retry-after`,
/// traced as an attempt that was rate limited.
fn refused_while_resting(
    attempts: &mut Attempts<'_>,
    plan: &Plan<'_>,
    next: &mut Option<Pick<'_>>,
) -> Option<GatewayError> {
    let now = Instant::now();
    let wait = next.as_ref()?.target.provider.resting(now)?;
    let pick = next.take()?;
    let error = pick.target.provider.keys_cooling(wait);
    attempts.note_failure(&pick, plan.in_fallback(), error, now);
    attempts.last_error.take()
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
    // Room at the deployment first: a hedge that cannot go is not written.
    let ready = pick
        .target
        .try_begin()
        .and_then(|in_flight| match prepare(pick.target) {
            Ok(call) if attempts.live.budget.try_retry(now) => Some((call, in_flight)),
            _ => None,
        });
    match ready {
        Some((call, in_flight)) => Some(attempts.start(pick, call, in_flight)),
        None => {
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
        attempts.waited(delay);
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
