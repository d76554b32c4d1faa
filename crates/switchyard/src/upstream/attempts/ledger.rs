//! [`Attempts`]: one request's attempts — their count, the retry decisions,
//! each one's error, and the trace the answer's headers show.

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use axum::http::{HeaderValue, Response};
use bytes::Bytes;
use tokio::time::Instant;

use super::{Attempt, RetryLive, RetryPolicy};
use crate::config::FailureClass;
use crate::error::GatewayError;
use crate::headers::{ATTEMPTS, MODEL, PROVIDER, ROUTE};
use crate::mix::splitmix64;
use crate::request::{FailedAttempt, RequestCx};
use crate::routing::load::InFlight;
use crate::routing::{Pick, Plan, Target};
use crate::upstream::UpstreamError;
use crate::upstream::breaker::Outcome;

/// Seeds the backoff jitter: a different draw for every retry of every request.
static JITTER: AtomicU64 = AtomicU64::new(0);

/// One request's attempts: their count, the retry decisions, the errors, and
/// the trace for `x-switchyard-attempts` and `x-switchyard-route`.
#[derive(Debug)]
pub struct Attempts<'s> {
    policy: &'s RetryPolicy,
    pub(super) live: &'s RetryLive,
    /// Attempts the model being tried allows.
    pub(super) allowed: u32,
    made: u32,
    /// The request's deadline, set by the first deployment's total timeout.
    deadline: Option<Instant>,
    /// Whether the request streams (its deadline is then the stream's).
    stream: bool,
    /// `x-switchyard-route`: `provider/model[why]=outcome` per attempt.
    trace: String,
    pub(super) last_error: Option<GatewayError>,
    /// The class of the last failure, `None` for the client's own.
    pub(super) last_class: Option<FailureClass>,
    /// The `retry-after` of the last failure.
    last_retry_after: Option<Duration>,
    /// Whether the request has slept through a `retry-after` already.
    waited_retry_after: bool,
    /// Whether the last failure happened inside this process.
    last_local: bool,
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
    /// The time spent on providers: rounds of attempts and the backoff between them.
    upstream: Duration,
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
            waited_retry_after: false,
            last_local: false,
            last_target: None,
            last_failed: None,
            served_first: None,
            failed: Vec::new(),
            tried: Vec::new(),
            model_index: 0,
            in_model: 0,
            upstream: Duration::ZERO,
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
        cx.waited(self.upstream);
        Trace {
            attempts: HeaderValue::from(self.made),
            route,
            last_target: self.last_target,
        }
    }

    /// Adds `time` spent on providers: a round of attempts, or a backoff.
    pub(super) fn waited(&mut self, time: Duration) {
        self.upstream += time;
    }

    /// Whether the request's deadline has passed.
    pub(super) fn past_deadline(&self, now: Instant) -> bool {
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

    /// Begins an attempt of `call` on the picked deployment, holding its
    /// place in the deployment's load (`in_flight`): its deadline.
    pub(super) fn start<'a, C>(
        &mut self,
        pick: Pick<'a>,
        call: C,
        in_flight: InFlight,
    ) -> Attempt<'a, C> {
        let deadline = self.deadline(pick.target);
        Attempt {
            in_flight,
            pick,
            call,
            sent: Instant::now(),
            deadline,
        }
    }

    /// Records an attempt given up because the other side of its hedge
    /// answered first: it says nothing of the deployment's health.
    pub(super) fn cancelled(&mut self, pick: &Pick<'_>, fallback: bool) {
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

    pub(super) fn served(&mut self, pick: &Pick<'_>, fallback: bool) {
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

    /// Records a failed attempt, `sent` at that time: its breaker outcome,
    /// trace entry and error.
    pub(super) fn note_failure(
        &mut self,
        pick: &Pick<'_>,
        fallback: bool,
        failure: UpstreamError,
        sent: Instant,
    ) {
        let now = Instant::now();
        let class = failure.class();
        let label = match (&failure, class) {
            (UpstreamError::TooLarge { .. }, _) => "too_large",
            (UpstreamError::Local { .. }, _) => "local",
            (_, Some(class)) => class.as_str(),
            (_, None) => "client_error",
        };
        // What says nothing of the deployment's health: a failure inside this
        // process (no descriptor, every key resting), the client's own
        // request, a refusal of its content, one key's 429 when others
        // remain, or a request whose own deadline ran out.
        let says_nothing = failure.is_local()
            || match class {
                None | Some(FailureClass::ContextLength | FailureClass::ContentPolicy) => true,
                Some(FailureClass::RateLimited) => pick.target.provider.key_count() > 1,
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
        self.last_local = failure.is_local();
        self.last_retry_after = failure.retry_after().map(Duration::from_secs);
        self.failed.push(FailedAttempt {
            deployment: pick.target.name.clone(),
            outcome: label,
            detail: failure.to_string(),
            sent: sent.into_std(),
            took: now.saturating_duration_since(sent),
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

    /// Records a deployment passed over (not an attempt) for `why`
    /// (`not_served`: it cannot take the request; `at_limit`: its in-flight
    /// limit was reached), with the error the client gets if nothing else
    /// is tried.
    pub(super) fn passed_over(
        &mut self,
        pick: &Pick<'_>,
        fallback: bool,
        why: &str,
        error: GatewayError,
    ) {
        self.trace(pick, fallback, why);
        // An upstream failure says more than a deployment passed over.
        self.last_error.get_or_insert(error);
    }

    /// Whether the last failure's class is one `retries.on` tries again.
    pub(super) fn retryable(&self) -> bool {
        self.last_class.is_some_and(|c| self.policy.on.contains(&c))
    }

    /// Whether the model being tried has used its attempts (the plan then
    /// moves on to the next fallback model, which has its own).
    pub(super) fn model_exhausted(&mut self, plan: &Plan<'_>) -> bool {
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
    pub(super) fn entered(&mut self, plan: &Plan<'_>) {
        self.model_index = plan.current();
        self.in_model = 0;
        self.allowed = plan.current_model().attempts;
    }

    /// Whether `target` has been tried in this request.
    pub(super) fn tried(&self, target: &Target) -> bool {
        self.tried.contains(&(std::ptr::from_ref(target) as usize))
    }

    /// Takes a retry from the budget, or notes that it had none. A retry
    /// after a failure inside this process (every key of a provider resting)
    /// takes nothing: it adds no load to a provider that failed.
    pub(super) fn spend_retry(&mut self) -> bool {
        if self.last_local || self.live.budget.try_retry(Instant::now()) {
            self.live.retries.increment(1);
            return true;
        }
        self.trace.push_str(", budget_exhausted");
        false
    }

    /// How long to wait before trying a deployment again: `None` when the
    /// wait would not end before the deadline, or when the provider asked for
    /// a `retry-after` that is not below `retries.retry_after_cap`, or for a
    /// second one in this request (a request sleeps through one `retry-after`
    /// at most: a provider that asks again is answered at once).
    pub(super) fn backoff(&mut self) -> Option<Duration> {
        if let Some(wait) = self.last_retry_after
            && (self.waited_retry_after || wait >= self.policy.backoff.retry_after_cap)
        {
            return None;
        }
        let seed = splitmix64(JITTER.fetch_add(1, Ordering::Relaxed));
        let delay =
            self.policy
                .backoff
                .delay(self.made.saturating_sub(1), self.last_retry_after, seed)?;
        let deadline = self.deadline?;
        if Instant::now() + delay >= deadline {
            return None;
        }
        self.waited_retry_after |= self.last_retry_after.is_some();
        Some(delay)
    }
}
