use std::sync::atomic::AtomicUsize;
use std::sync::{Arc, Barrier};

use super::*;

const MS: Duration = Duration::from_millis(1);
const COOLDOWN: Duration = Duration::from_secs(30);

/// The defaults before they judged a rate: 5 failures in a row, or a
/// plain 50% share of at least 20 requests over 30 s.
fn in_a_row() -> BreakerConfig {
    BreakerConfig {
        consecutive_failures: 5,
        failure_rate: 0.5,
        margin: 0.0,
        min_requests: 20,
        window: Duration::from_secs(30),
        cooldown: COOLDOWN,
    }
}

/// A breaker opening on 5 failures in a row, opened at the returned instant.
fn opened() -> (Breaker, Instant) {
    let breaker = Breaker::new(in_a_row());
    let t0 = Instant::now();
    for _ in 0..5 {
        breaker.record(Permit::Normal, Outcome::Failure, t0);
    }
    assert_eq!(breaker.state(t0), CircuitState::Open);
    (breaker, t0)
}

#[test]
fn opens_after_exactly_the_configured_failures() {
    let breaker = Breaker::new(in_a_row());
    let t0 = Instant::now();
    for _ in 0..4 {
        assert_eq!(breaker.allow(t0), Some(Permit::Normal));
        breaker.record(Permit::Normal, Outcome::Failure, t0);
    }
    // A success breaks the streak.
    breaker.record(Permit::Normal, Outcome::Success, t0);
    for _ in 0..4 {
        breaker.record(Permit::Normal, Outcome::Failure, t0);
    }
    assert_eq!(breaker.state(t0), CircuitState::Closed);
    assert_eq!(breaker.allow(t0), Some(Permit::Normal));
    breaker.record(Permit::Normal, Outcome::Failure, t0);
    assert_eq!(breaker.state(t0), CircuitState::Open);
    assert_eq!(breaker.allow(t0), None);
}

#[test]
fn nothing_during_the_cooldown_then_one_probe() {
    let (breaker, t0) = opened();
    let mut t = t0;
    while t < t0 + COOLDOWN {
        assert_eq!(breaker.allow(t), None, "at {:?}", t - t0);
        assert_eq!(breaker.state(t), CircuitState::Open);
        t += 100 * MS;
    }
    let t30 = t0 + COOLDOWN;
    assert_eq!(breaker.state(t30), CircuitState::HalfOpen);
    assert_eq!(breaker.allow(t30), Some(Permit::Probe));
    assert_eq!(breaker.allow(t30), None);
    assert_eq!(breaker.allow(t30 + COOLDOWN / 2), None);
    assert_eq!(breaker.state(t30), CircuitState::HalfOpen);
}

#[test]
fn one_probe_among_concurrent_callers() {
    let (breaker, t0) = opened();
    let breaker = Arc::new(breaker);
    let probes = Arc::new(AtomicUsize::new(0));
    let barrier = Arc::new(Barrier::new(8));
    let after = t0 + COOLDOWN;
    let threads: Vec<_> = (0..8)
        .map(|_| {
            let (breaker, probes, barrier) = (
                Arc::clone(&breaker),
                Arc::clone(&probes),
                Arc::clone(&barrier),
            );
            std::thread::spawn(move || {
                barrier.wait();
                for _ in 0..1000 {
                    match breaker.allow(after) {
                        Some(Permit::Probe) => {
                            probes.fetch_add(1, Ordering::Relaxed);
                        }
                        Some(Permit::Normal) => panic!("a normal permit while half-open"),
                        None => {}
                    }
                }
            })
        })
        .collect();
    for thread in threads {
        thread.join().unwrap();
    }
    assert_eq!(probes.load(Ordering::Relaxed), 1);
}

#[test]
fn probe_success_closes_and_resets() {
    let (breaker, t0) = opened();
    let t30 = t0 + COOLDOWN;
    assert_eq!(breaker.allow(t30), Some(Permit::Probe));
    breaker.record(Permit::Probe, Outcome::Success, t30);
    assert_eq!(breaker.state(t30), CircuitState::Closed);
    assert_eq!(breaker.allow(t30), Some(Permit::Normal));
    // The streak starts over: four failures do not reopen it.
    for _ in 0..4 {
        breaker.record(Permit::Normal, Outcome::Failure, t30);
    }
    assert_eq!(breaker.state(t30), CircuitState::Closed);
}

#[test]
fn probe_failure_reopens_for_a_new_cooldown() {
    let (breaker, t0) = opened();
    let t40 = t0 + COOLDOWN + Duration::from_secs(10);
    assert_eq!(breaker.allow(t40), Some(Permit::Probe));
    breaker.record(Permit::Probe, Outcome::Failure, t40);
    assert_eq!(breaker.state(t40), CircuitState::Open);
    assert_eq!(breaker.allow(t40 + COOLDOWN - MS), None);
    assert_eq!(breaker.allow(t40 + COOLDOWN), Some(Permit::Probe));
}

#[test]
fn ignored_probe_frees_the_slot() {
    let (breaker, t0) = opened();
    let t30 = t0 + COOLDOWN;
    assert_eq!(breaker.allow(t30), Some(Permit::Probe));
    breaker.record(Permit::Probe, Outcome::Ignored, t30);
    assert_eq!(breaker.state(t30), CircuitState::HalfOpen);
    assert_eq!(breaker.allow(t30), Some(Permit::Probe));
    assert_eq!(breaker.allow(t30), None);
}

#[test]
fn lost_probe_expires_after_a_cooldown() {
    let (breaker, t0) = opened();
    let t30 = t0 + COOLDOWN;
    assert_eq!(breaker.allow(t30), Some(Permit::Probe));
    // Its request was cancelled: no record.
    assert_eq!(breaker.allow(t30 + COOLDOWN - MS), None);
    assert_eq!(breaker.allow(t30 + COOLDOWN), Some(Permit::Probe));
    breaker.record(Permit::Probe, Outcome::Success, t30 + COOLDOWN);
    // The first probe answering late changes nothing.
    breaker.record(Permit::Probe, Outcome::Failure, t30 + COOLDOWN);
    assert_eq!(breaker.state(t30 + COOLDOWN), CircuitState::Closed);
}

#[test]
fn late_normal_results_do_not_count_while_open() {
    let (breaker, t0) = opened();
    let t30 = t0 + COOLDOWN;
    for _ in 0..100 {
        breaker.record(Permit::Normal, Outcome::Success, t0);
    }
    assert_eq!(breaker.state(t0), CircuitState::Open);
    assert_eq!(breaker.allow(t30), Some(Permit::Probe));
    breaker.record(Permit::Normal, Outcome::Success, t30);
    assert_eq!(breaker.state(t30), CircuitState::HalfOpen);
}

#[test]
fn ignored_results_do_not_count() {
    let breaker = Breaker::new(in_a_row());
    let t0 = Instant::now();
    for _ in 0..4 {
        breaker.record(Permit::Normal, Outcome::Failure, t0);
    }
    for _ in 0..100 {
        breaker.record(Permit::Normal, Outcome::Ignored, t0);
    }
    assert_eq!(breaker.state(t0), CircuitState::Closed);
    // Ignored results neither broke the streak…
    breaker.record(Permit::Normal, Outcome::Failure, t0);
    assert_eq!(breaker.state(t0), CircuitState::Open);
    // …nor count as requests for the rate.
    assert_eq!(breaker.window.totals(t0), (5, 5));
}

/// A breaker that opens on the rate only.
fn rate_only() -> Breaker {
    Breaker::new(BreakerConfig {
        consecutive_failures: 0,
        ..in_a_row()
    })
}

#[test]
fn failure_rate_opens_once_min_requests_are_seen() {
    let breaker = rate_only();
    let t0 = Instant::now();
    for _ in 0..9 {
        breaker.record(Permit::Normal, Outcome::Success, t0);
    }
    // 100% failures, but only 19 requests.
    for _ in 0..10 {
        breaker.record(Permit::Normal, Outcome::Failure, t0);
    }
    assert_eq!(breaker.state(t0), CircuitState::Closed);
    // The 20th request, a success: 10 of 20 failed, but a success never
    // opens the breaker.
    breaker.record(Permit::Normal, Outcome::Success, t0);
    assert_eq!(breaker.state(t0), CircuitState::Closed);
    // 11 of 21.
    breaker.record(Permit::Normal, Outcome::Failure, t0);
    assert_eq!(breaker.state(t0), CircuitState::Open);
}

#[test]
fn failure_rate_below_the_threshold_stays_closed() {
    let breaker = rate_only();
    let t0 = Instant::now();
    for i in 0..1000 {
        let outcome = if i % 5 < 2 {
            Outcome::Failure
        } else {
            Outcome::Success
        };
        breaker.record(Permit::Normal, outcome, t0 + i * MS);
    }
    assert_eq!(
        breaker.state(t0 + Duration::from_secs(1)),
        CircuitState::Closed
    );
}

#[test]
fn old_failures_leave_the_window() {
    let breaker = rate_only();
    let t0 = Instant::now();
    for _ in 0..19 {
        breaker.record(Permit::Normal, Outcome::Failure, t0);
    }
    // A window later they no longer count: 1 failure in 20 requests.
    let later = t0 + Duration::from_secs(31);
    for _ in 0..19 {
        breaker.record(Permit::Normal, Outcome::Success, later);
    }
    breaker.record(Permit::Normal, Outcome::Failure, later);
    assert_eq!(breaker.state(later), CircuitState::Closed);
}

/// The scenario: a deployment failing every call, asked every
/// 10 ms for two minutes, is called 5 times to open, then only by one
/// probe per cooldown.
#[test]
fn failing_deployment_sees_only_probes_while_open() {
    let breaker = Breaker::new(in_a_row());
    let t0 = Instant::now();
    let mut calls = Vec::new();
    for i in 0..12_000 {
        let now = t0 + i * 10 * MS;
        if let Some(permit) = breaker.allow(now) {
            calls.push((now - t0, permit));
            breaker.record(permit, Outcome::Failure, now);
        }
    }
    let expected: Vec<_> = (0..5)
        .map(|i| (i * 10 * MS, Permit::Normal))
        .chain((1..=3).map(|i| (40 * MS + i * COOLDOWN, Permit::Probe)))
        .collect();
    assert_eq!(calls, expected);
}

/// A deterministic stream of `share` failures at random (splitmix64).
fn random_outcomes(seed: u64, share: f64) -> impl Iterator<Item = Outcome> {
    let mut state = seed;
    std::iter::repeat_with(move || {
        state = state.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = state;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^= z >> 31;
        if ((z >> 11) as f64) < share * (1u64 << 53) as f64 {
            Outcome::Failure
        } else {
            Outcome::Success
        }
    })
}

/// The scenario: 30% of requests failing at random, at a steady
/// 20 requests a second for ten minutes, on twenty seeds: the default
/// breaker never opens (five in a row happen dozens of times).
#[test]
fn thirty_percent_random_failures_at_a_steady_rate_never_open_it() {
    for seed in 0..20 {
        let breaker = Breaker::new(BreakerConfig::default());
        let t0 = Instant::now();
        let (mut streak, mut runs_of_five) = (0, 0);
        for (i, outcome) in random_outcomes(seed, 0.3).take(12_000).enumerate() {
            let now = t0 + 50 * MS * i as u32;
            let permit = breaker.allow(now);
            assert_eq!(permit, Some(Permit::Normal), "seed {seed}, request {i}");
            assert_eq!(breaker.record(Permit::Normal, outcome, now), None);
            streak = if outcome == Outcome::Failure {
                streak + 1
            } else {
                0
            };
            runs_of_five += usize::from(streak == 5);
        }
        assert!(runs_of_five > 10, "seed {seed}: {runs_of_five}");
    }
}

/// A deployment failing every request opens the default breaker on its
/// `min_requests`-th failure, whether they come fast or slowly.
#[test]
fn a_dead_deployment_opens_it_within_min_requests() {
    let min = BreakerConfig::default().min_requests;
    for gap in [MS, 100 * MS, 1900 * MS] {
        let breaker = Breaker::new(BreakerConfig::default());
        let t0 = Instant::now();
        let mut calls = 0;
        let mut now = t0;
        while breaker.allow(now).is_some() {
            calls += 1;
            breaker.record(Permit::Normal, Outcome::Failure, now);
            now += gap;
        }
        assert_eq!(calls, min, "a request every {gap:?}");
    }
}

/// Half the requests failing is not enough while a handful were seen,
/// but is over a full window.
#[test]
fn the_margin_weighs_the_sample() {
    let breaker = Breaker::new(BreakerConfig::default());
    let t0 = Instant::now();
    let mut outcomes = [Outcome::Failure, Outcome::Success].into_iter().cycle();
    for i in 0..20 {
        let outcome = outcomes.next().unwrap_or(Outcome::Ignored);
        breaker.record(Permit::Normal, outcome, t0 + i * MS);
    }
    assert_eq!(breaker.state(t0 + 20 * MS), CircuitState::Closed);
    // 70% failing, never 3 in a row: 4 of 5 are not enough, 14 of 19 are.
    let busy = Breaker::new(BreakerConfig::default());
    let opened_at = (1..=40).find(|i| {
        let outcome = if matches!(i % 10, 0 | 3 | 6) {
            Outcome::Success
        } else {
            Outcome::Failure
        };
        busy.record(Permit::Normal, outcome, t0).is_some()
    });
    assert_eq!(opened_at, Some(19));
}

#[test]
fn opening_and_closing_are_reported_once() {
    let breaker = Arc::new(Breaker::new(BreakerConfig::default()));
    let t0 = Instant::now();
    let opened = Arc::new(AtomicUsize::new(0));
    let threads: Vec<_> = (0..4)
        .map(|_| {
            let (breaker, opened) = (Arc::clone(&breaker), Arc::clone(&opened));
            std::thread::spawn(move || {
                for _ in 0..100 {
                    if let Some(transition) = breaker.record(Permit::Normal, Outcome::Failure, t0) {
                        assert!(matches!(
                            transition,
                            Transition::Opened { failure_rate, requests }
                                if failure_rate == 1.0 && requests >= 5
                        ));
                        opened.fetch_add(1, Ordering::Relaxed);
                    }
                }
            })
        })
        .collect();
    for thread in threads {
        thread.join().unwrap();
    }
    assert_eq!(opened.load(Ordering::Relaxed), 1);
    // A failed probe keeps it open: nothing to report.
    let t30 = t0 + COOLDOWN;
    let probe = breaker.allow(t30).unwrap();
    assert_eq!(breaker.record(probe, Outcome::Failure, t30), None);
    let t60 = t30 + COOLDOWN;
    let probe = breaker.allow(t60).unwrap();
    assert_eq!(
        breaker.record(probe, Outcome::Success, t60),
        Some(Transition::Closed)
    );
    // A late probe answer, and ordinary results, report nothing more.
    assert_eq!(breaker.record(Permit::Probe, Outcome::Success, t60), None);
    assert_eq!(breaker.record(Permit::Normal, Outcome::Success, t60), None);
}

#[test]
fn panic_lets_one_request_in_twenty_through() {
    let (breaker, _) = opened();
    let let_through: Vec<_> = (1..=100)
        .filter(|_| breaker.panic_permit().is_some())
        .collect();
    assert_eq!(let_through, [20, 40, 60, 80, 100]);
}

#[test]
fn gauge_values() {
    assert_eq!(CircuitState::Closed.value(), 0);
    assert_eq!(CircuitState::HalfOpen.value(), 1);
    assert_eq!(CircuitState::Open.value(), 2);
}

#[test]
fn breaker_is_shareable() {
    fn shareable<T: Send + Sync>() {}
    shareable::<Breaker>();
}

#[test]
fn another_replicas_opening_opens_a_closed_breaker_as_of_then() {
    let breaker = Breaker::new(in_a_row());
    let now = Instant::now();
    let since = now - Duration::from_secs(1);
    assert!(breaker.hint_open(since, now));
    assert_eq!(breaker.opened_at(), Some(since));
    assert_eq!(breaker.state(now), CircuitState::Open);
    assert!(breaker.allow(now).is_none());
    // A second hint changes nothing; after the cooldown from the hint's
    // moment, this replica probes for itself.
    assert!(!breaker.hint_open(now, now));
    let cooled = since + breaker.cooldown();
    assert!(matches!(breaker.allow(cooled), Some(Permit::Probe)));
    assert_eq!(breaker.opened_at(), None);
    // A hint whose cooldown is over opens nothing.
    let fresh = Breaker::new(in_a_row());
    assert!(!fresh.hint_open(now - fresh.cooldown(), now));
    assert_eq!(fresh.state(now), CircuitState::Closed);
}
