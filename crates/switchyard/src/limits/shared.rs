//! Limits shared by every replica, in Redis: one script call per request
//! decides and records all of its rate limits and budgets, on Redis' clock
//! (`reserve.lua`); the settlement goes later, off the request's path, in
//! pipelined batches (`settle.lua`).
//!
//! No request waits on Redis longer than `redis.timeout`. A call that fails
//! or runs late marks Redis down (logged once per outage): while it is down
//! no request touches it, and `redis.on_error` decides — `fail_open` takes
//! the limits in this process instead, `fail_closed` refuses with 503. A
//! probe pings it every 250 ms and marks it up again as soon as it answers;
//! the connection itself reconnects on its own.
//!
//! Every key carries the hash tag `{prefix}`, so the script is legal on a
//! Redis Cluster too (all of them live in one slot).

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::Duration;

use metrics::{Counter, Gauge};
use redis::Script;
use redis::aio::ConnectionManager;
use switchyard_store::BudgetPeriod;
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

use super::gcra::Window;
use super::{Claims, Dimension, LimitRefusal, Name, Reservation, Scope, Snapshot, next_period};
use crate::config::{OnError, Redis};
use crate::limits::spend::SpendQueue;
use crate::telemetry::metrics::Metrics;

/// Redis could not decide: what the request gets instead.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Fallback {
    /// The limits are taken in this process (`fail_open`).
    Local,
    /// The request is refused (`fail_closed`).
    Refuse,
}

/// The connection to Redis and the scripts.
#[derive(Debug)]
pub struct Shared {
    conn: ConnectionManager,
    reserve: Script,
    timeout: Duration,
    on_error: OnError,
    prefix: String,
    /// How long a reservation is held for a replica that never settles it.
    hold: Duration,
    /// A tag of this process, for reservation ids.
    tag: u64,
    next: AtomicU64,
    up: Arc<AtomicBool>,
    settles: mpsc::Sender<Settle>,
    fallbacks: Counter,
    up_gauge: Gauge,
}

/// Settlements waiting for the settler at most.
const SETTLE_QUEUE: usize = 65_536;
/// Settlements sent in one round trip at most.
const SETTLE_BATCH: usize = 128;
/// How long a reservation is held for a replica that never settles it.
const HOLD: Duration = Duration::from_secs(600);

impl Shared {
    /// Connects to `config.url` and starts the settler and the probe.
    pub async fn connect(
        config: &Redis,
        metrics: &Metrics,
        stop: &CancellationToken,
    ) -> Result<Self, redis::RedisError> {
        let conn = crate::redis_link::connect(config).await?;
        metrics.describe(
            "switchyard_redis_up",
            None,
            "Whether Redis, which shares the limits across replicas, answers: 1 up, 0 down.",
        );
        metrics.describe(
            "switchyard_limits_fallback_total",
            None,
            "Requests whose limits were taken in this process because Redis was down (fail_open).",
        );
        let up_gauge = metrics.gauge("switchyard_redis_up", &[]);
        up_gauge.set(1.0);
        let (settles, queue) = mpsc::channel(SETTLE_QUEUE);
        let settle = Arc::new(Script::new(include_str!("settle.lua")));
        let reserve = Script::new(include_str!("reserve.lua"));
        // Loaded now, so requests call them by hash from the first one on.
        let mut loading = conn.clone();
        reserve.prepare_invoke().load_async(&mut loading).await?;
        settle.prepare_invoke().load_async(&mut loading).await?;
        let up = Arc::new(AtomicBool::new(true));
        tokio::spawn(settler(
            conn.clone(),
            settle,
            queue,
            config.timeout,
            stop.clone(),
        ));
        let gauge = up_gauge.clone();
        tokio::spawn(crate::redis_link::probe(
            conn.clone(),
            up.clone(),
            config.timeout,
            stop.clone(),
            move || {
                gauge.set(1.0);
                tracing::info!("redis answers again: limits are shared across replicas");
            },
        ));
        let mut tag = [0u8; 8];
        getrandom::fill(&mut tag)
            .map_err(|_| redis::RedisError::from(std::io::Error::other("no randomness")))?;
        Ok(Self {
            conn,
            reserve,
            timeout: config.timeout,
            on_error: config.on_error,
            prefix: config.prefix.clone(),
            hold: HOLD,
            tag: u64::from_le_bytes(tag),
            next: AtomicU64::new(0),
            up,
            settles,
            fallbacks: metrics.counter("switchyard_limits_fallback_total", &[]),
            up_gauge,
        })
    }

    fn key(&self, rest: std::fmt::Arguments<'_>) -> String {
        format!("{{{}}}:{rest}", self.prefix)
    }

    /// Decides `claims` in Redis: the reservation, or its refusal; or, when
    /// Redis cannot answer in time, what to do instead.
    pub(crate) async fn reserve(
        &self,
        claims: &Claims<'_>,
        spend: &SpendQueue,
    ) -> Result<Result<Reservation, LimitRefusal>, Fallback> {
        if !self.up.load(Ordering::Acquire) {
            return Err(self.fallback());
        }
        let id = format!(
            "{:x}.{:x}",
            self.tag,
            self.next.fetch_add(1, Ordering::Relaxed)
        );
        let mut invocation = self.reserve.prepare_invoke();
        let mut rated = Vec::with_capacity(4);
        let mut tokens_keys = Vec::new();
        for claim in claims.rates.iter().flatten() {
            if claim.rates == super::Rates::default() {
                continue;
            }
            let name = match &claim.name {
                Name::Key(id) => format!("k:{id}"),
                Name::Team(id) => format!("t:{id}"),
                Name::Model(name) => format!("m:{name}"),
                Name::Global => "g".to_owned(),
            };
            let tokens_key = self.key(format_args!("t:{name}"));
            invocation.key(self.key(format_args!("q:{name}")));
            invocation.key(&tokens_key);
            if let Some(tpm) = claim.rates.tpm {
                tokens_keys.push((tokens_key, tpm));
            }
            rated.push((claim.scope, claim.rates));
        }
        invocation.arg(rated.len()).arg(claims.tokens);
        for (_, rates) in &rated {
            invocation
                .arg(rates.rpm.unwrap_or(0))
                .arg(rates.tpm.unwrap_or(0));
        }
        let budgets: Vec<_> = claims.budgets.iter().flatten().collect();
        invocation
            .arg(budgets.len())
            .arg(&id)
            .arg(u64::try_from(self.hold.as_millis()).unwrap_or(u64::MAX));
        let mut held = Vec::with_capacity(budgets.len());
        for claim in &budgets {
            let scope = claim.spend_scope.as_str();
            let hash = self.key(format_args!("b:{scope}:{}:{}", claim.id, claim.start));
            let set = self.key(format_args!("h:{scope}:{}:{}", claim.id, claim.start));
            invocation.key(&hash).key(&set);
            invocation
                .arg(claim.budget.limit)
                .arg(claims.cost)
                .arg(claim.budget.cell.spent())
                .arg(ttl(claim.budget.period));
            held.push((hash, set));
        }
        let mut conn = self.conn.clone();
        let reply: Vec<i64> =
            match tokio::time::timeout(self.timeout, invocation.invoke_async(&mut conn)).await {
                Ok(Ok(reply)) => reply,
                Ok(Err(e)) => return Err(self.down(&e.to_string())),
                Err(_) => return Err(self.down("no answer within redis.timeout")),
            };
        let [
            allowed,
            scope,
            dimension,
            wait,
            rl,
            rr,
            rt,
            tl,
            tr,
            tt,
            left,
        ] = reply[..]
        else {
            return Err(self.down("an unexpected answer from the script"));
        };
        let window = |limit: i64, remaining: i64, reset: i64| {
            (limit > 0).then(|| Window {
                limit: u64::try_from(limit).unwrap_or(0),
                remaining: u64::try_from(remaining).unwrap_or(0),
                reset: Duration::from_micros(u64::try_from(reset).unwrap_or(0)),
            })
        };
        let snapshot = Snapshot {
            requests: window(rl, rr, rt),
            tokens: window(tl, tr, tt),
            budget_remaining: (!budgets.is_empty() && left >= 0).then_some(left),
        };
        if allowed == 0 {
            return Ok(Err(refusal(
                &rated,
                &budgets,
                (scope, dimension, wait),
                snapshot,
                claims,
            )));
        }
        let job = Settle {
            id,
            tokens_keys,
            budgets: held,
            reserved: claims.cost,
            delta: 0,
            cost: 0,
        };
        let hold = SharedHold {
            job: Some(job),
            settles: self.settles.clone(),
        };
        Ok(Ok(Reservation::shared(claims, snapshot, hold, spend)))
    }

    /// Marks Redis down (logged once per outage) and says what to do instead.
    fn down(&self, why: &str) -> Fallback {
        if self.up.swap(false, Ordering::AcqRel) {
            self.up_gauge.set(0.0);
            match self.on_error {
                OnError::FailOpen => tracing::warn!(
                    error = why,
                    "redis is unreachable: limits fall back to this process until it answers"
                ),
                OnError::FailClosed => tracing::warn!(
                    error = why,
                    "redis is unreachable: limited requests are refused until it answers (fail_closed)"
                ),
            }
        }
        self.fallback()
    }

    fn fallback(&self) -> Fallback {
        match self.on_error {
            OnError::FailOpen => {
                self.fallbacks.increment(1);
                Fallback::Local
            }
            OnError::FailClosed => Fallback::Refuse,
        }
    }
}

/// The refusal the script answered.
fn refusal(
    rated: &[(Scope, super::Rates)],
    budgets: &[&super::BudgetClaim],
    (scope, dimension, wait): (i64, i64, i64),
    snapshot: Snapshot,
    claims: &Claims<'_>,
) -> LimitRefusal {
    let index = usize::try_from(scope - 1).unwrap_or(0);
    if dimension == 3 {
        let claim = budgets.get(index);
        return LimitRefusal::Budget {
            scope: claim.map_or(Scope::Key, |c| c.scope),
            resets_at: claim.and_then(|c| next_period(c.budget.period, claims.today)),
        };
    }
    let (scope, rates) = rated
        .get(index)
        .copied()
        .unwrap_or((Scope::Key, super::Rates::default()));
    let dimension = if dimension == 1 {
        Dimension::Requests
    } else {
        Dimension::Tokens
    };
    if wait < 0 {
        return LimitRefusal::TooLarge {
            scope,
            needed: claims.tokens,
            limit: rates.tpm.unwrap_or(0),
        };
    }
    LimitRefusal::Rate {
        scope,
        dimension,
        retry_after: Duration::from_micros(u64::try_from(wait).unwrap_or(0)),
        snapshot,
    }
}

/// How long a budget's counts live in Redis: its period and a day.
fn ttl(period: BudgetPeriod) -> u64 {
    const DAY: u64 = 86_400;
    match period {
        BudgetPeriod::Day => 2 * DAY,
        BudgetPeriod::Week => 8 * DAY,
        BudgetPeriod::Month => 32 * DAY,
        BudgetPeriod::Total => 400 * DAY,
    }
}

/// One request's settlement, for the settler.
#[derive(Debug)]
struct Settle {
    id: String,
    tokens_keys: Vec<(String, u64)>,
    budgets: Vec<(String, String)>,
    reserved: i64,
    delta: i64,
    cost: i64,
}

/// What a request holds in Redis until it ends.
#[derive(Debug)]
pub(crate) struct SharedHold {
    job: Option<Settle>,
    settles: mpsc::Sender<Settle>,
}

impl SharedHold {
    /// Queues the settlement: tokens moved by `delta`, budgets to `cost`.
    pub(crate) fn settle(mut self, delta: i64, cost: i64) {
        if let Some(mut job) = self.job.take() {
            if job.tokens_keys.is_empty() && job.budgets.is_empty() {
                return;
            }
            job.delta = delta;
            job.cost = cost;
            if let Err(mpsc::error::TrySendError::Full(job)) = self.settles.try_send(job) {
                let settles = self.settles.clone();
                tokio::spawn(async move {
                    let _ = settles.send(job).await;
                });
            }
        }
    }
}

/// Sends settlements in pipelined batches.
async fn settler(
    conn: ConnectionManager,
    script: Arc<Script>,
    mut queue: mpsc::Receiver<Settle>,
    timeout: Duration,
    stop: CancellationToken,
) {
    let mut batch = Vec::with_capacity(SETTLE_BATCH);
    loop {
        tokio::select! {
            () = stop.cancelled() => return,
            received = queue.recv_many(&mut batch, SETTLE_BATCH) => {
                if received == 0 {
                    return;
                }
            }
        }
        let mut pipe = redis::pipe();
        for job in batch.drain(..) {
            let cmd = pipe.cmd("EVALSHA").arg(script.get_hash());
            cmd.arg(job.tokens_keys.len() + 2 * job.budgets.len());
            for (key, _) in &job.tokens_keys {
                cmd.arg(key);
            }
            for (hash, set) in &job.budgets {
                cmd.arg(hash).arg(set);
            }
            cmd.arg(job.tokens_keys.len()).arg(job.delta);
            for (_, tpm) in &job.tokens_keys {
                cmd.arg(tpm);
            }
            cmd.arg(job.budgets.len()).arg(&job.id);
            for _ in &job.budgets {
                cmd.arg(job.reserved).arg(job.cost);
            }
            cmd.ignore();
        }
        let mut conn = conn.clone();
        let sent = tokio::time::timeout(timeout * 4, pipe.query_async::<()>(&mut conn)).await;
        if let Ok(Err(e)) = &sent
            && e.kind() == redis::ErrorKind::Server(redis::ServerErrorKind::NoScript)
        {
            // Redis restarted and forgot the script: load it and resend.
            let _ = script.prepare_invoke().load_async(&mut conn).await;
            let _ = tokio::time::timeout(timeout * 4, pipe.query_async::<()>(&mut conn)).await;
        }
    }
}
