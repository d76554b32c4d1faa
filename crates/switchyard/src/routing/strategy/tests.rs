use std::cell::Cell;
use std::time::Duration;

use super::*;
use crate::routing::load::InFlight;

const ALL: [Strategy; 5] = [
    Strategy::Weighted,
    Strategy::RoundRobin,
    Strategy::LeastBusy,
    Strategy::Latency,
    Strategy::Cost,
];

const NO_TOKENS: Tokens = Tokens {
    input: 0,
    output: 0,
};

fn member(weight: u32, price: Option<(f64, f64)>) -> Member {
    Member {
        weight,
        price: price.map(|(input, output)| Price {
            input,
            output,
            cached_input: None,
            cache_write: None,
            reasoning: None,
        }),
        load: Arc::new(Load::new()),
    }
}

fn pool(strategy: Strategy, weights: &[u32]) -> Pool {
    Pool::new(strategy, weights.iter().map(|&w| member(w, None)).collect())
}

fn any(_: usize) -> bool {
    true
}

/// How often each member is picked in `n` picks.
fn shares(pool: &Pool, n: usize, now: Instant) -> Vec<f64> {
    let mut counts = vec![0usize; pool.len()];
    for _ in 0..n {
        counts[pool.pick(0, any, NO_TOKENS, now).unwrap()] += 1;
    }
    counts.iter().map(|&c| c as f64 / n as f64).collect()
}

#[test]
fn weighted_meets_85_10_5_within_2_points() {
    let pool = pool(Strategy::Weighted, &[85, 10, 5]);
    let shares = shares(&pool, 10_000, Instant::now());
    for (share, expected) in shares.iter().zip([0.85, 0.10, 0.05]) {
        assert!((share - expected).abs() < 0.02, "{shares:?}");
    }
}

#[test]
fn every_strategy_honours_exclusion_and_usable() {
    for strategy in ALL {
        let pool = Pool::new(
            strategy,
            (0..5)
                .map(|i| member(1 + i, Some((f64::from(i), 1.0))))
                .collect(),
        );
        let tokens = Tokens {
            input: 1000,
            output: 100,
        };
        let now = Instant::now();
        let mut seen = 0u64;
        for _ in 0..200 {
            let calls = Cell::new(0u64);
            let usable = |i: usize| {
                assert_eq!(calls.get() & (1 << i), 0, "usable({i}) called twice");
                calls.set(calls.get() | 1 << i);
                i != 2
            };
            let picked = pool.pick(0b1_0001, usable, tokens, now).unwrap();
            assert!([1, 3].contains(&picked), "{strategy:?} picked {picked}");
            assert_eq!(
                calls.get(),
                0b0_1110,
                "{strategy:?}: usable asked for the excluded"
            );
            seen |= 1 << picked;
        }
        if matches!(
            strategy,
            Strategy::Weighted | Strategy::RoundRobin | Strategy::LeastBusy
        ) {
            assert_eq!(seen, 0b1010, "{strategy:?} never picked one of the two");
        }
        assert_eq!(pool.pick(0b1_1111, any, tokens, now), None);
        assert_eq!(pool.pick(0, |_| false, tokens, now), None);
        assert_eq!(
            pool.pick(0b0_1010, |i| i != 0 && i != 4, tokens, now),
            Some(2)
        );
    }
}

#[test]
fn an_empty_pool_picks_nothing() {
    for strategy in ALL {
        let pool = Pool::new(strategy, Vec::new());
        assert!(pool.is_empty());
        assert_eq!(pool.pick(0, any, NO_TOKENS, Instant::now()), None);
    }
}

#[test]
fn members_past_the_maximum_are_never_picked() {
    let pool = pool(Strategy::RoundRobin, &[1; MAX_MEMBERS + 2]);
    let now = Instant::now();
    for _ in 0..3 * MAX_MEMBERS {
        assert!(pool.pick(0, any, NO_TOKENS, now).unwrap() < MAX_MEMBERS);
    }
    assert_eq!(pool.pick(u64::MAX, any, NO_TOKENS, now), None);
}

#[test]
fn round_robin_cycles_through_the_usable() {
    let pool = pool(Strategy::RoundRobin, &[5, 1, 1]);
    let now = Instant::now();
    let picks: Vec<_> = (0..6)
        .map(|_| pool.pick(0, any, NO_TOKENS, now).unwrap())
        .collect();
    assert_eq!(picks, [0, 1, 2, 0, 1, 2]);
    let shares: Vec<_> = (0..1000)
        .map(|_| pool.pick(0, |i| i != 1, NO_TOKENS, now).unwrap())
        .fold([0; 3], |mut counts, i| {
            counts[i] += 1;
            counts
        })
        .to_vec();
    assert_eq!(shares, [500, 0, 500]);
}

#[test]
fn least_busy_follows_requests_in_flight() {
    let pool = pool(Strategy::LeastBusy, &[1, 1, 1]);
    let now = Instant::now();
    let begin = |i: usize| pool.members()[i].load.begin();
    let mut guards: Vec<InFlight> = vec![begin(0), begin(0), begin(1)];
    assert_eq!(pool.pick(0, any, NO_TOKENS, now), Some(2));
    guards.extend([begin(2), begin(2), begin(2)]);
    assert_eq!(pool.pick(0, any, NO_TOKENS, now), Some(1));
    assert_eq!(pool.pick(0b10, any, NO_TOKENS, now), Some(0));
    guards.clear();
    assert!(pool.members().iter().all(|m| m.load.in_flight() == 0));
}

#[test]
fn least_busy_breaks_ties_by_weight() {
    let pool = pool(Strategy::LeastBusy, &[3, 1]);
    let shares = shares(&pool, 10_000, Instant::now());
    assert!((shares[0] - 0.75).abs() < 0.02, "{shares:?}");
}

#[test]
fn cost_picks_the_cheapest_then_the_next() {
    let pool = Pool::new(
        Strategy::Cost,
        vec![
            member(1, None),
            member(1, Some((3.0, 15.0))),
            member(1, Some((0.5, 30.0))),
            member(1, Some((1.0, 20.0))),
        ],
    );
    let now = Instant::now();
    let long_prompt = Tokens {
        input: 100_000,
        output: 100,
    };
    let long_answer = Tokens {
        input: 100,
        output: 10_000,
    };
    assert_eq!(pool.pick(0, any, long_prompt, now), Some(2));
    assert_eq!(pool.pick(0b0100, any, long_prompt, now), Some(3));
    assert_eq!(pool.pick(0b1100, any, long_prompt, now), Some(1));
    assert_eq!(pool.pick(0b1110, any, long_prompt, now), Some(0));
    assert_eq!(pool.pick(0, any, long_answer, now), Some(1));
    assert_eq!(pool.pick(0, |i| i != 1, long_answer, now), Some(3));
}

#[test]
fn cost_breaks_ties_by_weight() {
    let pool = Pool::new(
        Strategy::Cost,
        vec![member(9, Some((1.0, 2.0))), member(1, Some((1.0, 2.0)))],
    );
    let shares = shares(&pool, 10_000, Instant::now());
    assert!((shares[0] - 0.9).abs() < 0.02, "{shares:?}");
}

/// A simulated stream of requests through a `latency` pool: one every 10 ms,
/// each in flight for its time to first token and then recorded.
struct Traffic {
    pool: Pool,
    now: Instant,
    /// When each request gets its first token, how long it took, where it went.
    pending: Vec<(Instant, Duration, usize, InFlight)>,
}

impl Traffic {
    fn new(members: usize) -> Self {
        let pool = pool(Strategy::Latency, &vec![1; members]);
        Self {
            pool,
            now: Instant::now(),
            pending: Vec::new(),
        }
    }

    /// Runs for `span`; returns how many requests went to each member.
    fn run(&mut self, span: Duration, ttft: impl Fn(usize) -> Duration) -> Vec<usize> {
        let mut counts = vec![0; self.pool.len()];
        let end = self.now + span;
        while self.now < end {
            let now = self.now;
            let members = self.pool.members();
            self.pending.retain(|&(done, took, i, _)| {
                if done <= now {
                    members[i].load.observe_ttft(took, done);
                }
                done > now
            });
            let i = self.pool.pick(0, any, NO_TOKENS, now).unwrap();
            counts[i] += 1;
            let took = ttft(i);
            let guard = self.pool.members()[i].load.begin();
            self.pending.push((now + took, took, i, guard));
            self.now += Duration::from_millis(10);
        }
        counts
    }
}

fn share(counts: &[usize], i: usize) -> f64 {
    counts[i] as f64 / counts.iter().sum::<usize>() as f64
}

#[test]
fn latency_sheds_a_slow_member_and_takes_it_back_when_it_recovers() {
    let fast = Duration::from_millis(100);
    let mut traffic = Traffic::new(2);
    let slow = traffic.run(Duration::from_secs(100), |i| {
        if i == 1 { fast * 10 } else { fast }
    });
    assert!(share(&slow, 1) < 0.10, "{slow:?}");

    // Its share per 5 s after recovering: back to about half within 30 s.
    let windows: Vec<f64> = (0..8)
        .map(|_| share(&traffic.run(Duration::from_secs(5), |_| fast), 1))
        .collect();
    assert!(windows[0] < 0.35, "{windows:?}");
    assert!(windows[4..].iter().all(|&s| s > 0.4), "{windows:?}");
}

#[test]
fn latency_sheds_a_member_near_its_rate_limit() {
    let mut traffic = Traffic::new(2);
    let t0 = traffic.now;
    let mut counts = vec![0; 2];
    for second in 0..60 {
        let now = t0 + Duration::from_secs(second);
        traffic.pool.members()[0]
            .load
            .observe_rate_limit(Some(1), Some(100), None, None, now);
        let got = traffic.run(Duration::from_secs(1), |_| Duration::from_millis(200));
        counts.iter_mut().zip(got).for_each(|(c, g)| *c += g);
    }
    assert!(share(&counts, 0) < 0.10, "{counts:?}");
}

#[test]
fn latency_with_one_candidate_picks_it() {
    let pool = pool(Strategy::Latency, &[1, 1, 1]);
    let now = Instant::now();
    pool.members()[1]
        .load
        .observe_ttft(Duration::from_secs(30), now);
    assert_eq!(pool.pick(0b101, any, NO_TOKENS, now), Some(1));
    assert_eq!(pool.pick(0, |i| i == 1, NO_TOKENS, now), Some(1));
}
