//! What picking a deployment costs, per strategy, in a pool of 50:
//! `cargo bench -p switchyard --bench pick`. The target is under 2 µs a pick.
//!
//! The pool looks like a busy one: every member has a TTFT estimate, some
//! requests in flight, a price and a rate-limit report; one in seven is
//! refused by the circuit breaker, and one member was already tried.

#![allow(missing_docs, clippy::unwrap_used, clippy::expect_used)]

use std::sync::Arc;
use std::time::{Duration, Instant};

use divan::{Bencher, black_box};
use switchyard::config::{Price, Strategy};
use switchyard::routing::load::{InFlight, Load};
use switchyard::routing::strategy::{Member, Pool, Tokens};

const MEMBERS: usize = 50;

fn main() {
    divan::main();
}

/// A pool of 50 busy members, and the requests keeping them busy.
fn busy_pool(strategy: Strategy) -> (Pool, Vec<InFlight>, Instant) {
    let loads: Vec<Arc<Load>> = (0..MEMBERS).map(|_| Arc::new(Load::new())).collect();
    let now = Instant::now();
    let mut in_flight = Vec::new();
    let members = loads
        .into_iter()
        .enumerate()
        .map(|(i, load)| {
            let step = i as u64;
            load.observe_ttft(Duration::from_millis(200 + 37 * step % 400), now);
            load.observe_rate_limit(Some(100 - step), Some(100), None, None, now);
            in_flight.extend((0..i % 5).map(|_| load.begin()));
            Member {
                weight: 1 + (i % 3) as u32,
                price: Some(Price {
                    input: 0.5 + (i % 7) as f64,
                    output: 2.0 + (i % 11) as f64,
                    cached_input: None,
                    cache_write: None,
                    reasoning: None,
                }),
                load,
            }
        })
        .collect();
    (Pool::new(strategy, members), in_flight, now)
}

#[divan::bench(args = ["weighted", "round_robin", "least_busy", "latency", "cost"])]
fn pick(bencher: Bencher, strategy: &str) {
    let strategy = match strategy {
        "weighted" => Strategy::Weighted,
        "round_robin" => Strategy::RoundRobin,
        "least_busy" => Strategy::LeastBusy,
        "latency" => Strategy::Latency,
        _ => Strategy::Cost,
    };
    let (pool, _in_flight, now) = busy_pool(strategy);
    let healthy: Vec<bool> = (0..MEMBERS).map(|i| i % 7 != 3).collect();
    let tokens = Tokens {
        input: 1_200,
        output: 400,
    };
    bencher.bench_local(|| {
        pool.pick(
            black_box(1 << 4),
            |i| healthy[i],
            black_box(tokens),
            black_box(now),
        )
    });
}
