//! Picking one deployment of a public model by its strategy.
//!
//! A [`Pool`] is built once per public model and picked from on every attempt.
//! A pick reads only atomics and the members' fixed fields: no lock, no
//! allocation, a few hundred nanoseconds at 50 members (`benches/pick.rs`).
//! Randomness is a per-pool counter mixed by [`splitmix64`].

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Instant;

use super::load::Load;
use crate::config::{Price, Strategy};
use crate::mix::splitmix64;

/// The most members a pool picks from: the `excluded` mask of [`Pool::pick`]
/// has one bit per member. Members past it are never picked; the config
/// validator should reject models with more deployments.
pub const MAX_MEMBERS: usize = 64;

/// One deployment of a public model, as the strategies see it.
#[derive(Debug, Clone)]
pub struct Member {
    /// Share of traffic (`weighted`), and the odds in random tie-breaks and in
    /// the `latency` strategy's draw of two.
    pub weight: u32,
    /// USD per million tokens; a member without one is the most expensive.
    pub price: Option<Price>,
    /// Its live load.
    pub load: Arc<Load>,
}

/// The request's estimated size, for the `cost` strategy.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Tokens {
    /// Prompt tokens.
    pub input: u64,
    /// Completion tokens.
    pub output: u64,
}

/// The deployments of one public model and how to pick among them.
#[derive(Debug)]
pub struct Pool {
    strategy: Strategy,
    members: Vec<Member>,
    turn: AtomicU64,
}

// === impl Pool ===

impl Pool {
    /// A pool picking among `members` by `strategy` (see [`MAX_MEMBERS`]).
    pub fn new(strategy: Strategy, members: Vec<Member>) -> Self {
        Self {
            strategy,
            members,
            turn: AtomicU64::new(0),
        }
    }

    /// How many members it has.
    pub fn len(&self) -> usize {
        self.members.len()
    }

    /// Whether it has no member.
    pub fn is_empty(&self) -> bool {
        self.members.is_empty()
    }

    /// Its members, in the order indices refer to.
    pub fn members(&self) -> &[Member] {
        &self.members
    }

    /// The index of the member to try next, or `None` when none is left.
    ///
    /// Candidates are the members whose bit is clear in `excluded` (bit `i` set:
    /// member `i` was already tried) and for which `usable(i)` holds (the
    /// caller's circuit breaker; called once per candidate). Among them:
    ///
    /// - `weighted`: at random, in proportion to weight;
    /// - `round_robin`: the next in turn, ignoring weights;
    /// - `least_busy`: the fewest requests in flight, ties by weight;
    /// - `latency`: two distinct members drawn by weight, the lower
    ///   [`Load::score`] wins (power of two choices);
    /// - `cost`: the cheapest for `tokens` (input × input price + output ×
    ///   output price), ties by weight.
    ///
    /// Draws "by weight" fall back to uniform odds if every weight is 0.
    pub fn pick(
        &self,
        excluded: u64,
        usable: impl Fn(usize) -> bool,
        tokens: Tokens,
        now: Instant,
    ) -> Option<usize> {
        self.pick_by(self.strategy, excluded, usable, tokens, now)
    }

    /// [`Pool::pick`] by `strategy` instead of the pool's own (a route's choice).
    pub fn pick_by(
        &self,
        strategy: Strategy,
        excluded: u64,
        usable: impl Fn(usize) -> bool,
        tokens: Tokens,
        now: Instant,
    ) -> Option<usize> {
        let candidates = self.candidates(excluded, usable);
        if candidates == 0 {
            return None;
        }
        let turn = self.turn.fetch_add(1, Ordering::Relaxed);
        let random = splitmix64(turn);
        match strategy {
            Strategy::Weighted => self.by_weight(candidates, random),
            Strategy::RoundRobin => nth(candidates, turn % u64::from(candidates.count_ones())),
            Strategy::LeastBusy => self.by_weight(self.least_busy(candidates), random),
            Strategy::Latency => self.power_of_two(candidates, random, now),
            Strategy::Cost => self.by_weight(self.cheapest(candidates, tokens), random),
        }
    }

    /// The mask of members neither excluded nor unusable.
    fn candidates(&self, excluded: u64, usable: impl Fn(usize) -> bool) -> u64 {
        let mut mask = 0;
        for i in 0..self.members.len().min(MAX_MEMBERS) {
            if excluded & (1 << i) == 0 && usable(i) {
                mask |= 1 << i;
            }
        }
        mask
    }

    /// A member of the non-empty `mask`, drawn in proportion to weight by `random`.
    fn by_weight(&self, mask: u64, random: u64) -> Option<usize> {
        let total: u64 = bits(mask).map(|i| u64::from(self.members[i].weight)).sum();
        if total == 0 {
            return nth(mask, below(random, u64::from(mask.count_ones())));
        }
        let mut ticket = below(random, total);
        for i in bits(mask) {
            let weight = u64::from(self.members[i].weight);
            if ticket < weight {
                return Some(i);
            }
            ticket -= weight;
        }
        None
    }

    /// The members of `mask` with the fewest requests in flight.
    fn least_busy(&self, mask: u64) -> u64 {
        lowest(mask, |i| self.members[i].load.in_flight())
    }

    /// The members of `mask` cheapest for `tokens`.
    fn cheapest(&self, mask: u64, tokens: Tokens) -> u64 {
        lowest(mask, |i| {
            self.members[i].price.map_or(f64::INFINITY, |p| {
                p.input * tokens.input as f64 + p.output * tokens.output as f64
            })
        })
    }

    /// Two distinct members drawn by weight; the lower score wins.
    fn power_of_two(&self, mask: u64, random: u64, now: Instant) -> Option<usize> {
        let first = self.by_weight(mask, random)?;
        let rest = mask & !(1 << first);
        if rest == 0 {
            return Some(first);
        }
        let second = self.by_weight(rest, splitmix64(random))?;
        let score = |i: usize| self.members[i].load.score(now);
        Some(if score(second) < score(first) {
            second
        } else {
            first
        })
    }
}

/// The members of the non-empty `mask` with the lowest `key` (never empty).
fn lowest<K: PartialOrd>(mask: u64, key: impl Fn(usize) -> K) -> u64 {
    let mut best = None;
    let mut ties = 0;
    for i in bits(mask) {
        let k = key(i);
        match &best {
            Some(b) if k > *b => {}
            Some(b) if k == *b => ties |= 1 << i,
            _ => {
                best = Some(k);
                ties = 1 << i;
            }
        }
    }
    ties
}

/// The indices of the set bits of `mask`, lowest first.
fn bits(mut mask: u64) -> impl Iterator<Item = usize> {
    std::iter::from_fn(move || {
        if mask == 0 {
            return None;
        }
        let i = mask.trailing_zeros() as usize;
        mask &= mask - 1;
        Some(i)
    })
}

/// The index of the `n`th set bit of `mask`, counting from 0.
fn nth(mask: u64, n: u64) -> Option<usize> {
    bits(mask).nth(usize::try_from(n).ok()?)
}

/// `random` scaled to `0..n` (Lemire's multiply-shift).
fn below(random: u64, n: u64) -> u64 {
    ((u128::from(random) * u128::from(n)) >> 64) as u64
}

#[cfg(test)]
mod tests;
