//! Rate limits and budgets: decided before a request goes upstream, settled
//! when it ends.
//!
//! A request's limits, in order: its key's, its team's, its model's, and the
//! gateway's (`limits.global`), each in requests and tokens per minute
//! ([`gcra`]); then its key's and its team's budgets ([`budget`]). One
//! [`Limiter::reserve`] takes them all or none: a refusal gives back what the
//! scopes before it took. Tokens are reserved as an estimate (the prompt's
//! bytes / 4, plus the client's `max_tokens` when it set one) and moved to the
//! provider's reported usage at the end. A budget reserves the worst case —
//! the estimated prompt and the largest output cap at the dearest deployment
//! the request may reach — so concurrent requests can never spend past it by
//! more than nothing; at the end the reservation gives way to the real cost,
//! which goes to the store in batches ([`spend`]).
//!
//! Everything here is memory: a few atomic operations per scope. The cells of
//! keys and teams live with their entries in the key directory, so they are
//! bounded by it and follow a key through changes; the model and global cells
//! live as long as the process.

pub mod budget;
pub mod gcra;
pub mod headers;
pub mod shared;
pub mod spend;

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use switchyard_store::{BudgetPeriod, SpendScope};

use crate::config;
use crate::keys::{Directory, Tenant, unix_now};
use crate::telemetry::metrics::Metrics;
use budget::BudgetCell;
use gcra::{Gcra, Refused, Window};
use metrics::{Counter, Gauge};
use shared::{Fallback, Shared, SharedHold};
use spend::{SpendQueue, Spent};

/// The live counts of one key, team, model or of the gateway.
#[derive(Debug, Default)]
pub struct Meters {
    /// Requests per minute.
    pub requests: Gcra,
    /// Tokens per minute.
    pub tokens: Gcra,
}

/// A key's or a team's budget: its cap, period and live cell.
#[derive(Debug, Clone)]
pub struct Budget {
    /// The cap per period, in micro-USD.
    pub limit: i64,
    /// When it starts again.
    pub period: BudgetPeriod,
    /// What is spent and reserved.
    pub cell: Arc<BudgetCell>,
}

impl Budget {
    /// The share of its cap spent in the period that holds `now` (unix
    /// seconds), as far as this process knows; `None` for a cap of nothing.
    pub fn spent_share(&self, now: i64) -> Option<f64> {
        let spent = self.cell.spent_in(budget::period_start(self.period, now));
        (self.limit > 0).then(|| spent as f64 / self.limit as f64)
    }
}

/// Whose limit refused a request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Scope {
    /// The caller's key.
    Key,
    /// The key's team.
    Team,
    /// The model's limit over every caller.
    Model,
    /// `limits.global`.
    Global,
}

/// Which of a scope's rates.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Dimension {
    /// Requests per minute.
    Requests,
    /// Tokens per minute.
    Tokens,
}

/// Why a request was refused before it went upstream.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum LimitRefusal {
    /// A rate limit is used up for now.
    #[error("the {} {} per minute limit is reached; try again in {}s", scope_name(*.scope), dimension_name(*.dimension), .retry_after.as_secs_f64().ceil().max(1.0))]
    Rate {
        /// Whose.
        scope: Scope,
        /// Which.
        dimension: Dimension,
        /// When enough is free again.
        retry_after: Duration,
        /// The headers' numbers.
        snapshot: Snapshot,
    },
    /// The request alone needs more tokens than a whole minute's limit.
    #[error("this request needs an estimated {needed} tokens, more than the {} tokens per minute limit of {limit}", scope_name(*.scope))]
    TooLarge {
        /// Whose.
        scope: Scope,
        /// The estimate.
        needed: u64,
        /// The limit.
        limit: u64,
    },
    /// Redis, which decides the limits, cannot be reached and
    /// `redis.on_error` is `fail_closed`.
    #[error("the rate limiter is unreachable; try again shortly")]
    Unavailable,
    /// A budget cannot take the request's worst case.
    #[error("the {} budget is spent for this period", scope_name(*.scope))]
    Budget {
        /// The key's or the team's.
        scope: Scope,
        /// When the period starts again (unix seconds), unless it never does.
        resets_at: Option<i64>,
    },
}

fn scope_name(scope: Scope) -> &'static str {
    match scope {
        Scope::Key => "key's",
        Scope::Team => "team's",
        Scope::Model => "model's",
        Scope::Global => "gateway's",
    }
}

fn dimension_name(dimension: Dimension) -> &'static str {
    match dimension {
        Dimension::Requests => "requests",
        Dimension::Tokens => "tokens",
    }
}

impl LimitRefusal {
    /// A bounded name, for logs and `switchyard_rate_limited_total{reason}`.
    pub fn reason(&self) -> &'static str {
        match self {
            Self::Rate {
                scope, dimension, ..
            } => match (scope, dimension) {
                (Scope::Key, Dimension::Requests) => "key_requests",
                (Scope::Key, Dimension::Tokens) => "key_tokens",
                (Scope::Team, Dimension::Requests) => "team_requests",
                (Scope::Team, Dimension::Tokens) => "team_tokens",
                (Scope::Model, Dimension::Requests) => "model_requests",
                (Scope::Model, Dimension::Tokens) => "model_tokens",
                (Scope::Global, Dimension::Requests) => "global_requests",
                (Scope::Global, Dimension::Tokens) => "global_tokens",
            },
            Self::TooLarge { .. } => "request_too_large",
            Self::Unavailable => "limiter_unavailable",
            Self::Budget {
                scope: Scope::Team, ..
            } => "team_budget",
            Self::Budget { .. } => "key_budget",
        }
    }

    /// Seconds to wait before trying again, rounded up (at least 1).
    pub fn retry_after(&self) -> Option<u64> {
        match self {
            Self::Rate { retry_after, .. } => {
                Some(retry_after.as_secs_f64().ceil().max(1.0) as u64)
            }
            Self::TooLarge { .. } => None,
            Self::Unavailable => Some(1),
            Self::Budget { resets_at, .. } => resets_at.map(|at| (at - unix_now()).max(1) as u64),
        }
    }
}

/// The numbers of the `x-ratelimit-*` headers: for each of requests and
/// tokens, the tightest limit that applied.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Snapshot {
    /// Requests per minute.
    pub requests: Option<Window>,
    /// Tokens per minute.
    pub tokens: Option<Window>,
    /// What remains of the tightest budget, in micro-USD.
    pub budget_remaining: Option<i64>,
}

impl Snapshot {
    fn note(slot: &mut Option<Window>, window: Window) {
        if slot.is_none_or(|w| window.remaining < w.remaining) {
            *slot = Some(window);
        }
    }
}

/// Requests and tokens per minute; `None` is no limit.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Rates {
    /// Requests per minute.
    pub rpm: Option<u64>,
    /// Tokens per minute.
    pub tpm: Option<u64>,
}

/// The gateway's and the models' limits, and the live cells that count them;
/// lives as long as the process.
#[derive(Debug)]
pub struct Limiter {
    epoch: Instant,
    global: (Rates, Arc<Meters>),
    models: HashMap<String, (Rates, Arc<Meters>)>,
    key_defaults: Rates,
    spend: SpendQueue,
    /// Redis, when limits are shared across replicas.
    shared: Option<Shared>,
    refused: HashMap<&'static str, Counter>,
    /// `switchyard_budget_spent_ratio_max{scope="key"}` and `{scope="team"}`.
    budgets_spent: [Gauge; 2],
}

/// A request's demand, as stage 4b knows it.
#[derive(Debug, Clone, Copy)]
pub struct Demand<'a> {
    /// The caller, when a virtual key.
    pub tenant: Option<&'a Tenant>,
    /// The model that serves it.
    pub model: &'a str,
    /// Tokens to reserve: the prompt's estimate plus the client's `max_tokens`.
    pub tokens: u64,
    /// The estimated prompt tokens.
    pub prompt_tokens: u64,
    /// Output tokens at most (the client's `max_tokens`, else the largest cap).
    pub max_output_tokens: u64,
    /// The dearest input price, micro-USD per million tokens.
    pub input_price: u64,
    /// The dearest output price, micro-USD per million tokens.
    pub output_price: u64,
}

/// Every reason a request can be refused here.
const REASONS: [&str; 12] = [
    "limiter_unavailable",
    "key_requests",
    "key_tokens",
    "team_requests",
    "team_tokens",
    "model_requests",
    "model_tokens",
    "global_requests",
    "global_tokens",
    "request_too_large",
    "key_budget",
    "team_budget",
];

impl Limiter {
    /// The limits of `config`, counted from now; spend goes to `spend`; with
    /// `shared`, limits are decided in Redis across replicas.
    pub fn new(
        config: &config::RateLimits,
        spend: SpendQueue,
        shared: Option<Shared>,
        metrics: &Metrics,
    ) -> Self {
        metrics.describe(
            "switchyard_rate_limited_total",
            None,
            "Requests refused by a rate limit or a budget, by reason.",
        );
        metrics.describe(
            "switchyard_budget_spent_ratio_max",
            None,
            "The largest share of its budget that a key (scope=key) or a team (scope=team) in this process's memory has spent in the current period.",
        );
        let budgets_spent = ["key", "team"]
            .map(|scope| metrics.gauge("switchyard_budget_spent_ratio_max", &[("scope", scope)]));
        Self {
            epoch: Instant::now(),
            global: (config.global, Arc::default()),
            models: config
                .models
                .iter()
                .map(|(name, rates)| (name.clone(), (*rates, Arc::default())))
                .collect(),
            key_defaults: config.key_defaults,
            spend,
            shared,
            refused: REASONS
                .iter()
                .map(|reason| {
                    let counter =
                        metrics.counter("switchyard_rate_limited_total", &[("reason", reason)]);
                    (*reason, counter)
                })
                .collect(),
            budgets_spent,
        }
    }

    /// Sets `switchyard_budget_spent_ratio_max` from the budgets of the keys
    /// and teams `keys` holds in memory (when `/metrics` is read).
    pub fn export_budgets(&self, keys: &Directory) {
        let [by_keys, by_teams] = keys.budgets_spent(unix_now());
        let [key_gauge, team_gauge] = &self.budgets_spent;
        key_gauge.set(by_keys);
        team_gauge.set(by_teams);
    }

    /// Whether any limit could apply to a request of `tenant` for `model`.
    pub fn applies(&self, tenant: Option<&Tenant>, model: &str) -> bool {
        tenant.is_some() || self.global.0 != Rates::default() || self.models.contains_key(model)
    }

    fn now(&self) -> u64 {
        u64::try_from(self.epoch.elapsed().as_nanos()).unwrap_or(u64::MAX)
    }

    /// Takes every limit of `demand`, or none; the reservation settles when
    /// the request ends (or gives everything back if dropped unsettled).
    /// With Redis, one script decides them all across replicas; when Redis
    /// cannot answer within `redis.timeout`, `redis.on_error` decides.
    pub async fn reserve(&self, demand: &Demand<'_>) -> Result<Reservation, LimitRefusal> {
        let claims = self.claims(demand);
        let result = match &self.shared {
            Some(_) if claims.is_empty() => Ok(Reservation::new(claims.tokens, &self.spend)),
            Some(shared) => match shared.reserve(&claims, &self.spend).await {
                Ok(decided) => decided,
                Err(Fallback::Local) => self.take_locally(claims),
                Err(Fallback::Refuse) => Err(LimitRefusal::Unavailable),
            },
            None => self.take_locally(claims),
        };
        if let Err(refusal) = &result
            && let Some(counter) = self.refused.get(refusal.reason())
        {
            counter.increment(1);
        }
        result
    }

    /// The limits `demand` is under.
    fn claims<'d>(&self, demand: &Demand<'d>) -> Claims<'d> {
        let tenant = demand.tenant;
        let key = tenant.map(|t| {
            let own = t.key.limits;
            let rates = Rates {
                rpm: own.rpm.map(to_u64).or(self.key_defaults.rpm),
                tpm: own.tpm.map(to_u64).or(self.key_defaults.tpm),
            };
            RateClaim {
                scope: Scope::Key,
                name: Name::Key(t.key.id.clone()),
                rates,
                meters: t.key.meters.clone(),
            }
        });
        let team = tenant.and_then(|t| t.team.as_ref()).map(|team| RateClaim {
            scope: Scope::Team,
            name: Name::Team(team.id.clone()),
            rates: Rates {
                rpm: team.limits.rpm.map(to_u64),
                tpm: team.limits.tpm.map(to_u64),
            },
            meters: team.meters.clone(),
        });
        let model = self
            .models
            .get(demand.model)
            .map(|(rates, meters)| RateClaim {
                scope: Scope::Model,
                name: Name::Model(demand.model),
                rates: *rates,
                meters: meters.clone(),
            });
        let global = (self.global.0 != Rates::default()).then(|| RateClaim {
            scope: Scope::Global,
            name: Name::Global,
            rates: self.global.0,
            meters: self.global.1.clone(),
        });
        let today = unix_now();
        let budget = |scope, spend_scope, id: &Arc<str>, budget: Option<&Budget>| {
            budget.map(|budget| BudgetClaim {
                scope,
                spend_scope,
                id: id.clone(),
                start: budget::period_start(budget.period, today),
                budget: budget.clone(),
            })
        };
        let budgets = match tenant {
            Some(t) => [
                budget(
                    Scope::Key,
                    SpendScope::Key,
                    &t.key.id,
                    t.key.budget.as_ref(),
                ),
                t.team.as_ref().and_then(|team| {
                    budget(
                        Scope::Team,
                        SpendScope::Team,
                        &team.id,
                        team.budget.as_ref(),
                    )
                }),
            ],
            None => [None, None],
        };
        Claims {
            rates: [key, team, model, global],
            budgets,
            tokens: demand.tokens,
            cost: budget::cost_micros(
                demand.prompt_tokens,
                demand.max_output_tokens,
                demand.input_price,
                demand.output_price,
            ),
            today,
        }
    }

    /// Takes the claims in this process's own cells.
    fn take_locally(&self, claims: Claims<'_>) -> Result<Reservation, LimitRefusal> {
        let now = self.now();
        let mut reservation = Reservation::new(claims.tokens, &self.spend);
        for (slot, claim) in claims.rates.into_iter().enumerate() {
            if let Some(claim) = claim {
                reservation.take(slot, claim, now)?;
            }
        }
        for (slot, claim) in claims.budgets.into_iter().enumerate() {
            if let Some(claim) = claim {
                reservation.hold(slot, claim, claims.cost, claims.today)?;
            }
        }
        Ok(reservation)
    }
}

/// What a rate scope is called in Redis.
#[derive(Debug, Clone)]
pub(crate) enum Name<'a> {
    /// A key, by id.
    Key(Arc<str>),
    /// A team, by id.
    Team(Arc<str>),
    /// A model, by public name.
    Model(&'a str),
    /// The gateway.
    Global,
}

/// A rate scope a request is under.
#[derive(Debug)]
pub(crate) struct RateClaim<'a> {
    pub(crate) scope: Scope,
    pub(crate) name: Name<'a>,
    pub(crate) rates: Rates,
    pub(crate) meters: Arc<Meters>,
}

/// A budget a request is under.
#[derive(Debug)]
pub(crate) struct BudgetClaim {
    pub(crate) scope: Scope,
    pub(crate) spend_scope: SpendScope,
    pub(crate) id: Arc<str>,
    pub(crate) budget: Budget,
    /// The start of the current period.
    pub(crate) start: i64,
}

impl Claims<'_> {
    /// Whether no limit and no budget applies (nothing to ask Redis).
    fn is_empty(&self) -> bool {
        self.budgets.iter().all(Option::is_none)
            && self
                .rates
                .iter()
                .flatten()
                .all(|claim| claim.rates == Rates::default())
    }
}

/// Every limit a request is under, and what it would take of them.
#[derive(Debug)]
pub(crate) struct Claims<'a> {
    /// Key, team, model, global.
    pub(crate) rates: [Option<RateClaim<'a>>; 4],
    /// Key, team.
    pub(crate) budgets: [Option<BudgetClaim>; 2],
    /// Tokens to reserve.
    pub(crate) tokens: u64,
    /// The worst-case cost to reserve, micro-USD.
    pub(crate) cost: i64,
    /// Now, in unix seconds.
    pub(crate) today: i64,
}

/// When the budget period after the one holding `now` starts.
fn next_period(period: BudgetPeriod, now: i64) -> Option<i64> {
    let start = budget::period_start(period, now);
    match period {
        BudgetPeriod::Day => Some(start + 86_400),
        BudgetPeriod::Week => Some(start + 7 * 86_400),
        // The 1st of next month: 32 days on is always in it.
        BudgetPeriod::Month => Some(budget::period_start(period, start + 32 * 86_400)),
        BudgetPeriod::Total => None,
    }
}

fn to_u64(n: i64) -> u64 {
    u64::try_from(n).unwrap_or(0)
}

/// A scope's rates taken by a request: one request, and its tokens.
#[derive(Debug)]
struct Taken {
    meters: Arc<Meters>,
    rates: Rates,
}

/// A budget reserved by a request.
#[derive(Debug)]
struct Held {
    scope: SpendScope,
    id: Arc<str>,
    /// The budget, micro-USD, for spend alerts.
    limit: i64,
    cell: Arc<BudgetCell>,
    /// Reserved in the cell here (0 when Redis holds the reservation).
    reserved: i64,
    period_start: i64,
}

/// What a request holds of its limits until it ends: dropped unsettled (a
/// panic), it gives everything back.
#[derive(Debug)]
pub struct Reservation {
    tokens: u64,
    /// Key, team, model, global (taken in this process).
    rates: [Option<Taken>; 4],
    /// Key, team.
    budgets: [Option<Held>; 2],
    snapshot: Snapshot,
    spend: SpendQueue,
    /// Held in Redis: settled there.
    shared: Option<SharedHold>,
}

impl Reservation {
    fn new(tokens: u64, spend: &SpendQueue) -> Self {
        Self {
            tokens,
            rates: Default::default(),
            budgets: Default::default(),
            snapshot: Snapshot::default(),
            spend: spend.clone(),
            shared: None,
        }
    }

    /// A reservation Redis decided: it settles there; the budgets' cells
    /// here count the spend for the store.
    pub(crate) fn shared(
        claims: &Claims<'_>,
        snapshot: Snapshot,
        hold: SharedHold,
        spend: &SpendQueue,
    ) -> Self {
        let mut reservation = Self::new(claims.tokens, spend);
        reservation.snapshot = snapshot;
        reservation.shared = Some(hold);
        for (slot, claim) in claims.budgets.iter().enumerate() {
            if let (Some(claim), Some(held)) = (claim, reservation.budgets.get_mut(slot)) {
                *held = Some(Held {
                    scope: claim.spend_scope,
                    id: claim.id.clone(),
                    limit: claim.budget.limit,
                    cell: claim.budget.cell.clone(),
                    reserved: 0,
                    period_start: claim.start,
                });
            }
        }
        reservation
    }

    /// The numbers for the answer's `x-ratelimit-*` headers.
    pub fn snapshot(&self) -> Snapshot {
        self.snapshot
    }

    /// Takes a scope's rates into slot `slot`; a refusal gives back what
    /// this one took (the scopes before are given back when `self` drops).
    fn take(&mut self, slot: usize, claim: RateClaim<'_>, now: u64) -> Result<(), LimitRefusal> {
        let RateClaim {
            scope,
            rates,
            meters,
            ..
        } = claim;
        if rates == Rates::default() {
            return Ok(());
        }
        if let Some(rpm) = rates.rpm {
            match meters.requests.take(now, 1, rpm) {
                Ok(window) => Snapshot::note(&mut self.snapshot.requests, window),
                Err(refused) => return Err(self.refusal(scope, Dimension::Requests, refused, rpm)),
            }
        }
        if let Some(tpm) = rates.tpm {
            match meters.tokens.take(now, self.tokens, tpm) {
                Ok(window) => Snapshot::note(&mut self.snapshot.tokens, window),
                Err(refused) => {
                    if let Some(rpm) = rates.rpm {
                        meters.requests.adjust(-1, rpm);
                    }
                    return Err(self.refusal(scope, Dimension::Tokens, refused, tpm));
                }
            }
        }
        if let Some(taken) = self.rates.get_mut(slot) {
            *taken = Some(Taken { meters, rates });
        }
        Ok(())
    }

    fn refusal(
        &self,
        scope: Scope,
        dimension: Dimension,
        refused: Refused,
        limit: u64,
    ) -> LimitRefusal {
        match refused {
            Refused::Wait(retry_after) => {
                let mut snapshot = self.snapshot;
                let spent = Window {
                    limit,
                    remaining: 0,
                    reset: retry_after,
                };
                match dimension {
                    Dimension::Requests => snapshot.requests = Some(spent),
                    Dimension::Tokens => snapshot.tokens = Some(spent),
                }
                LimitRefusal::Rate {
                    scope,
                    dimension,
                    retry_after,
                    snapshot,
                }
            }
            Refused::TooLarge => LimitRefusal::TooLarge {
                scope,
                needed: self.tokens,
                limit,
            },
        }
    }

    /// Reserves `cost` against a budget, in its cell here.
    fn hold(
        &mut self,
        slot: usize,
        claim: BudgetClaim,
        cost: i64,
        today: i64,
    ) -> Result<(), LimitRefusal> {
        let budget = &claim.budget;
        let Ok(remaining) = budget.cell.reserve(budget.limit, cost, claim.start) else {
            return Err(LimitRefusal::Budget {
                scope: claim.scope,
                resets_at: next_period(budget.period, today),
            });
        };
        let least = self
            .snapshot
            .budget_remaining
            .map_or(remaining, |r| r.min(remaining));
        self.snapshot.budget_remaining = Some(least);
        if let Some(held) = self.budgets.get_mut(slot) {
            *held = Some(Held {
                scope: claim.spend_scope,
                id: claim.id,
                limit: claim.budget.limit,
                cell: claim.budget.cell,
                reserved: cost,
                period_start: claim.start,
            });
        }
        Ok(())
    }

    /// Ends the reservation: the tokens move to `used`, and each budget to
    /// `cost` micro-USD, queued for the store.
    pub fn settle(mut self, used: u64, cost: i64) {
        let delta =
            i64::try_from(used).unwrap_or(i64::MAX) - i64::try_from(self.tokens).unwrap_or(0);
        for taken in self.rates.iter_mut().filter_map(Option::take) {
            if let Some(tpm) = taken.rates.tpm
                && delta != 0
            {
                taken.meters.tokens.adjust(delta, tpm);
            }
        }
        if let Some(hold) = self.shared.take() {
            hold.settle(delta, cost);
        }
        for held in self.budgets.iter_mut().filter_map(Option::take) {
            held.cell.settle(held.reserved, cost, held.period_start);
            if cost > 0 {
                self.spend.push(Spent {
                    scope: held.scope,
                    id: held.id,
                    limit: held.limit,
                    period_start: held.period_start,
                    micros: cost,
                    cell: held.cell,
                });
            }
        }
    }
}

impl Drop for Reservation {
    /// Unsettled (refused at a later scope, or a panic): every take is given back.
    fn drop(&mut self) {
        let tokens = i64::try_from(self.tokens).unwrap_or(i64::MAX);
        for taken in self.rates.iter_mut().filter_map(Option::take) {
            if let Some(rpm) = taken.rates.rpm {
                taken.meters.requests.adjust(-1, rpm);
            }
            if let Some(tpm) = taken.rates.tpm {
                taken.meters.tokens.adjust(-tokens, tpm);
            }
        }
        if let Some(hold) = self.shared.take() {
            hold.settle(-tokens, 0);
        }
        for held in self.budgets.iter_mut().filter_map(Option::take) {
            held.cell.settle(held.reserved, 0, held.period_start);
        }
    }
}
