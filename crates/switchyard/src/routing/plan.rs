//! One request's way through the routes: a [`Plan`] walks the requested
//! model's deployments, then its fallbacks', handing out a [`Pick`] per
//! attempt with the breaker's permit for it.
//!
//! A plan borrows the immutable [`Routes`] it was made from; picking reads
//! only atomics of the deployments' live state (held in the
//! [`Registry`](super::Registry)), never a lock or a map of it.
//!
//! Deployments whose breaker is open, those at their `max_in_flight`, and
//! those whose provider keys all rest after a 429, are passed over by every
//! strategy. (At its limit is a look here: the executor takes the room, with
//! [`Target::try_begin`], and passes over a deployment that filled up since.) When every breaker of a
//! model is open, one request in twenty goes through all the same (panic mode,
//! see [`Breaker::panic_permit`](crate::upstream::breaker::Breaker::panic_permit));
//! when every deployment left rests, the one whose key wakes first is handed
//! out, for the caller to refuse or to wait for.

use std::sync::atomic::{AtomicU8, Ordering};

use tokio::time::Instant;

use super::affinity::Prefix;
use super::strategy::Tokens;
use super::{ModelRoute, Routes, Target};
use crate::config::Strategy;
use crate::upstream::breaker::{CircuitState, Outcome, Permit, Transition};

/// How many times a request may go through its chain of deployments (its
/// attempts are bounded by `retries.attempts` first; this bounds the walk
/// over deployments that cannot take the request at all).
const MAX_PASSES: u8 = 16;

/// Below this rate-limit headroom a deployment is not held to by affinity.
const AFFINITY_MIN_HEADROOM: f64 = 0.1;

/// The dearest prices (USD per million tokens) and the largest output cap
/// among the deployments a request may reach.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct Dearest {
    /// USD per million input tokens.
    pub input: f64,
    /// USD per million output tokens.
    pub output: f64,
    /// The largest completion token cap.
    pub max_output_tokens: u32,
}

/// One request's way through the deployments of its model and its fallbacks
/// (looked up by name when they are reached: no allocation per request).
#[derive(Debug)]
pub struct Plan<'a> {
    routes: &'a Routes,
    first: &'a ModelRoute,
    /// The request's estimated size, for the `cost` strategy.
    tokens: Tokens,
    /// `x-switchyard-max-cost`: deployments estimated dearer are left out.
    max_cost: Option<f64>,
    /// A route's strategy, instead of the models' own.
    strategy: Option<Strategy>,
    /// The request's prompt prefix, for the requested model's affinity.
    prefix: Option<Prefix>,
    /// The model being tried: 0 the requested one, n its n-th fallback.
    current: usize,
    /// Deployments of the current model already tried (bit i = target i).
    excluded: u64,
    /// Deployments of the requested model's canary set not drawn for this
    /// request, left out while the drawn set has one to try.
    held: u64,
    /// Times the whole chain has been gone through.
    passes: u8,
    /// Whether the plan has asked a breaker for a panic permit: once per
    /// request, however often the chain is gone through.
    panicked: bool,
}

/// A deployment to try, with the breaker's permit for it.
#[derive(Debug)]
pub struct Pick<'a> {
    /// The model it serves (the requested one, or a fallback).
    pub model: &'a ModelRoute,
    /// The deployment.
    pub target: &'a Target,
    /// What the breaker allowed, until it is handed back (see [`Pick::settle`]).
    permit: Held,
    /// Why it was picked, for `x-switchyard-route`: the strategy's name,
    /// `affinity` (it served the prompt's prefix before), `canary` (of the
    /// canary's new set) or `hedge` (asked alongside a slow first one).
    pub why: &'static str,
}

/// A breaker permit not handed back yet: 0 none, else the permit + 1.
#[derive(Debug)]
struct Held(AtomicU8);

// === impl Held ===

impl Held {
    fn new(permit: Permit) -> Self {
        Self(AtomicU8::new(Self::code(permit)))
    }

    fn code(permit: Permit) -> u8 {
        match permit {
            Permit::Normal => 1,
            Permit::Probe => 2,
        }
    }

    fn take(&self) -> Option<Permit> {
        match self.0.swap(0, Ordering::Relaxed) {
            1 => Some(Permit::Normal),
            2 => Some(Permit::Probe),
            _ => None,
        }
    }
}

// === impl Pick ===

impl Pick<'_> {
    /// Hands the breaker's permit back with the attempt's outcome (once: a
    /// second call does nothing).
    pub fn settle(&self, outcome: Outcome, now: Instant) {
        if let Some(permit) = self.permit.take()
            && let Some(transition) = self.target.breaker.record(permit, outcome, now)
        {
            log(&self.model.name, &self.target.name, transition);
        }
    }

    /// Holds a fresh permit of the same deployment (after a wait, say), the
    /// earlier one handed back.
    pub fn rearm(&mut self, permit: Permit) {
        self.settle(Outcome::Ignored, Instant::now());
        self.permit = Held::new(permit);
    }
}

impl Drop for Pick<'_> {
    /// A pick dropped before its outcome was known (the client went away
    /// mid-attempt, a hedge was given up) hands its permit back as saying
    /// nothing, so that a half-open breaker's probe slot is never lost.
    fn drop(&mut self) {
        self.settle(Outcome::Ignored, Instant::now());
    }
}

// === impl Plan ===

impl<'a> Plan<'a> {
    /// The way through `first` (a model of `routes`) and its fallbacks for
    /// one request of about `tokens`.
    pub(super) fn new(routes: &'a Routes, first: &'a ModelRoute, tokens: Tokens) -> Self {
        Self {
            routes,
            first,
            tokens,
            max_cost: None,
            strategy: None,
            prefix: None,
            current: 0,
            excluded: 0,
            held: first.canary.as_ref().map_or(0, |c| c.held_back()),
            passes: 0,
            panicked: false,
        }
    }

    /// The requested model.
    pub fn model(&self) -> &'a ModelRoute {
        self.first
    }

    /// The model `n` of the chain: the requested one, then its fallbacks (the
    /// validator makes sure they exist; one that does not ends the chain).
    fn chain(&self, n: usize) -> Option<&'a ModelRoute> {
        match n {
            0 => Some(self.first),
            n => self.routes.models.get(self.first.fallbacks.get(n - 1)?),
        }
    }

    /// The next deployment to try: an untried one of the current model, else
    /// of the next fallback; when every one has been tried, the chain starts
    /// over (a retry of the same deployments). `None` when no deployment's
    /// breaker lets a request through.
    pub fn next(&mut self, now: Instant) -> Option<Pick<'a>> {
        loop {
            if self.passes >= MAX_PASSES {
                return None;
            }
            let model = self.chain(self.current)?;
            if let Some(pick) = self.pick_in(model, now) {
                return Some(pick);
            }
            self.current += 1;
            self.excluded = 0;
            if self.chain(self.current).is_none() {
                self.current = 0;
                self.passes += 1;
            }
        }
    }

    /// Leaves out deployments whose estimated cost for the request exceeds
    /// `max` USD (and those without a price).
    pub fn limit_cost(&mut self, max: f64) {
        self.max_cost = Some(max);
    }

    /// Picks deployments by `strategy` instead of each model's own.
    pub fn use_strategy(&mut self, strategy: Strategy) {
        self.strategy = Some(strategy);
    }

    /// Notes the request's body for the requested model's prompt-cache affinity.
    pub fn prompt(&mut self, body: &[u8]) {
        self.prefix = self.first.affinity.as_ref().and_then(|a| a.prefix(body));
    }

    /// Remembers who served the request's prompt prefix (when the requested
    /// model has affinity).
    pub fn served(&self, pick: &Pick<'_>, now: Instant) {
        if let (Some(affinity), Some(prefix)) = (&self.first.affinity, self.prefix)
            && std::ptr::eq(pick.model, self.first)
            && let Some(index) = self
                .first
                .targets
                .iter()
                .position(|t| std::ptr::eq(t, pick.target))
        {
            affinity.set(prefix, index, now);
        }
    }

    /// The worst case of the deployments the request may reach (its model's
    /// and its fallbacks'): the dearest input and output prices and the
    /// largest output cap. A deployment without a price counts as free.
    pub fn dearest(&self) -> Dearest {
        let mut dearest = Dearest::default();
        for target in (0..).map_while(|n| self.chain(n)).flat_map(|m| &m.targets) {
            if let Some(price) = target.price {
                dearest.input = dearest.input.max(price.input);
                dearest.output = dearest.output.max(price.output);
            }
            dearest.max_output_tokens = dearest.max_output_tokens.max(target.max_output_tokens);
        }
        dearest
    }

    /// Whether some deployment of the chain fits `x-switchyard-max-cost`.
    pub fn affordable(&self) -> bool {
        let Some(max) = self.max_cost else {
            return true;
        };
        (0..)
            .map_while(|n| self.chain(n))
            .any(|model| model.targets.iter().any(|t| t.within(self.tokens, max)))
    }

    /// Which model of the chain is being tried (0: the requested one).
    pub fn current(&self) -> usize {
        self.current
    }

    /// The model being tried.
    pub fn current_model(&self) -> &'a ModelRoute {
        self.chain(self.current).unwrap_or(self.first)
    }

    /// The model after the one being tried, if the chain has one.
    pub fn model_after(&self) -> Option<&'a ModelRoute> {
        self.chain(self.current + 1)
    }

    /// Moves on to the next model of the chain; `false` at its end.
    pub fn next_model(&mut self) -> bool {
        if self.passes >= MAX_PASSES || self.chain(self.current + 1).is_none() {
            return false;
        }
        self.current += 1;
        self.excluded = 0;
        self.held = 0;
        true
    }

    /// Moves on to the first model of the chain after the one being tried
    /// whose context window is larger than that one's; `false` when there is
    /// none (or the window of the one being tried is not known).
    pub fn next_larger_model(&mut self) -> bool {
        let Some(window) = self.current_model().context_window else {
            return false;
        };
        let larger = (self.current + 1..)
            .map_while(|n| Some((n, self.chain(n)?)))
            .find(|(_, model)| model.context_window.is_some_and(|w| w > window));
        match larger {
            Some((n, _)) => {
                self.current = n;
                self.excluded = 0;
                self.held = 0;
                true
            }
            None => false,
        }
    }

    /// Another untried deployment of the model being tried, never one of the
    /// next model (for a hedge, which must not move the plan on).
    pub fn next_alongside(&mut self, now: Instant) -> Option<Pick<'a>> {
        let model = self.chain(self.current)?;
        self.pick_in(model, now)
    }

    /// Whether a deployment of the requested model or its fallbacks is at
    /// its `max_in_flight` now (why a plan that handed out no deployment had
    /// none to hand out, when no attempt failed).
    pub fn some_at_limit(&self) -> bool {
        (0..)
            .map_while(|n| self.chain(n))
            .any(|model| model.targets.iter().any(|t| !t.has_room()))
    }

    /// Whether the last pick came from a fallback model.
    pub fn in_fallback(&self) -> bool {
        self.current > 0
    }

    /// A deployment of `model` not tried yet, by the model's strategy, whose
    /// breaker lets the request through, and which is healthy unless none of
    /// the model's deployments is (panic mode: then health is ignored); of the
    /// canary set drawn for the request while it has one, else of the other.
    fn pick_in(&mut self, model: &'a ModelRoute, now: Instant) -> Option<Pick<'a>> {
        let pick = self.pick_untried(model, now);
        if pick.is_some() || self.held == 0 {
            return pick;
        }
        self.held = 0;
        self.pick_untried(model, now)
    }

    /// [`Plan::pick_in`] among the deployments not held back.
    fn pick_untried(&mut self, model: &'a ModelRoute, now: Instant) -> Option<Pick<'a>> {
        let clock = now.into_std();
        // Back to the deployment that served this prompt prefix, while it is
        // healthy and not nearly rate limited; else the strategy decides.
        if let (Some(affinity), Some(prefix)) = (&model.affinity, self.prefix)
            && std::ptr::eq(model, self.first)
            && let Some(index) = affinity.get(prefix, now)
            && index < model.targets.len()
            && (self.excluded | self.held) & (1 << index) == 0
            && model.targets[index].health.routable(now)
            && model.targets[index].has_room()
            && model.targets[index].provider.resting(now).is_none()
        {
            let target = &model.targets[index];
            let fits = self
                .max_cost
                .is_none_or(|max| target.within(self.tokens, max));
            if fits && target.load.headroom(clock) >= AFFINITY_MIN_HEADROOM {
                self.excluded |= 1 << index;
                if let Some(permit) = target.breaker.allow(now) {
                    return Some(Pick {
                        model,
                        target,
                        permit: Held::new(permit),
                        why: "affinity",
                    });
                }
            }
        }
        let (tokens, max_cost) = (self.tokens, self.max_cost);
        // Within the cost limit, and with room under its in-flight limit.
        let fits = |i: usize| {
            let target = &model.targets[i];
            target.has_room() && max_cost.is_none_or(|max| target.within(tokens, max))
        };
        // Fits, and with a provider key free.
        let awake = |i: usize| fits(i) && model.targets[i].provider.resting(now).is_none();
        loop {
            let closed =
                |i: usize| awake(i) && model.targets[i].breaker.state(now) != CircuitState::Open;
            let excluded = self.excluded | self.held;
            let pick = |usable: &dyn Fn(usize) -> bool| match self.strategy {
                Some(strategy) => model
                    .pool
                    .pick_by(strategy, excluded, usable, tokens, clock),
                None => model.pool.pick(excluded, usable, tokens, clock),
            };
            let healthy = |i: usize| model.targets[i].health.routable(now) && closed(i);
            let found = match pick(&healthy) {
                None if !model.targets.iter().any(|t| t.health.routable(now)) => pick(&closed),
                found => found,
            };
            let Some(index) = found else {
                // Panic mode: every breaker open, a trickle goes through.
                let all_open = model
                    .targets
                    .iter()
                    .all(|t| t.breaker.state(now) != CircuitState::Closed);
                if all_open && !self.panicked {
                    self.panicked = true;
                    let index = pick(&awake)?;
                    self.excluded |= 1 << index;
                    let target = &model.targets[index];
                    let permit = target.breaker.panic_permit()?;
                    return Some(Pick {
                        model,
                        target,
                        permit: Held::new(permit),
                        why: "panic",
                    });
                }
                return self.soonest_awake(model, now, &fits);
            };
            self.excluded |= 1 << index;
            let target = &model.targets[index];
            if let Some(permit) = target.breaker.allow(now) {
                return Some(Pick {
                    model,
                    target,
                    permit: Held::new(permit),
                    why: self.why(model, target),
                });
            }
        }
    }

    /// When every deployment of `model` left to try (that `fits`: within the
    /// cost limit and its in-flight limit; its breaker not open) rests after
    /// a 429: the one whose provider has a key free soonest.
    fn soonest_awake(
        &mut self,
        model: &'a ModelRoute,
        now: Instant,
        fits: &dyn Fn(usize) -> bool,
    ) -> Option<Pick<'a>> {
        let excluded = self.excluded | self.held;
        let (index, _) = model
            .targets
            .iter()
            .enumerate()
            .filter(|&(i, t)| {
                excluded & (1 << i) == 0 && fits(i) && t.breaker.state(now) != CircuitState::Open
            })
            .filter_map(|(i, t)| Some((i, t.provider.resting(now)?)))
            .min_by_key(|&(_, wait)| wait)?;
        self.excluded |= 1 << index;
        let target = &model.targets[index];
        let permit = target.breaker.allow(now)?;
        Some(Pick {
            model,
            target,
            permit: Held::new(permit),
            why: self.why(model, target),
        })
    }

    /// Why `target` of `model` was picked, for the route header.
    fn why(&self, model: &ModelRoute, target: &Target) -> &'static str {
        match (&target.canary, self.strategy) {
            (Some(_), _) => "canary",
            (None, Some(strategy)) => strategy.as_str(),
            (None, None) => model.strategy.as_str(),
        }
    }
}

/// Logs a breaker's opening (a warning, with the failure share that opened
/// it) or closing, with the model and deployment it happened under.
fn log(model: &str, deployment: &str, transition: Transition) {
    match transition {
        Transition::Opened {
            requests,
            failure_rate,
        } => tracing::warn!(
            model,
            deployment,
            requests,
            failure_rate,
            "circuit breaker opened"
        ),
        Transition::Closed => tracing::info!(
            model,
            deployment,
            reason = "probe succeeded",
            "circuit breaker closed"
        ),
    }
}
