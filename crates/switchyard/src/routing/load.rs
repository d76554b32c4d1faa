//! The live load of one deployment: requests in flight, a peak-EWMA of its time
//! to first token, and the headroom its provider reports in `x-ratelimit-*`
//! headers. The `latency` strategy reads them through [`Load::score`].
//!
//! Everything is a lock-free atomic: recording and reading never lock or allocate.
//! Times are passed in (`now`), so tests run on simulated time without sleeping.

use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};
use std::sync::{Arc, LazyLock};
use std::time::{Duration, Instant};

use crate::admission::limit::take_below;

/// Time constant of the TTFT estimate: a sample's weight fades as
/// `exp(-elapsed / DECAY)`, and so does an estimate no sample has refreshed.
/// At 5 s a deployment that was 10× slower is back to its full share of
/// `latency` traffic about 20 s after it recovers.
pub const DECAY: Duration = Duration::from_secs(5);

/// What a failed attempt counts as, in time to first token.
pub const FAILURE_PENALTY: Duration = Duration::from_secs(5);

/// How long a rate-limit report holds without news.
pub const RATE_LIMIT_TTL: Duration = Duration::from_secs(60);

/// The smallest TTFT [`Load::score`] uses, so that requests in flight still count
/// for a deployment with no sample yet (or one idle for long).
pub const MIN_TTFT: Duration = Duration::from_millis(20);

/// The smallest headroom [`Load::score`] divides by: an exhausted deployment
/// scores 20 times worse than a fresh one, not infinitely.
pub const MIN_HEADROOM: f64 = 0.05;

/// The live load of one deployment, shared as `Arc<Load>` by the router and the
/// requests it sends there.
#[derive(Debug)]
pub struct Load {
    in_flight: AtomicU32,
    /// Peak-EWMA of the time to first token, in seconds.
    ttft: Stamped,
    /// The smaller of the request and token fractions left, `0.0..=1.0`.
    headroom: Stamped,
}

/// A request in flight to a deployment; dropping it ends the request.
#[derive(Debug)]
pub struct InFlight {
    load: Arc<Load>,
}

// === impl Load ===

impl Load {
    /// An idle deployment with no samples.
    pub fn new() -> Self {
        // Stamps count from the first load made, before any `now` it is given.
        LazyLock::force(&EPOCH);
        Self {
            in_flight: AtomicU32::new(0),
            ttft: Stamped::default(),
            headroom: Stamped::default(),
        }
    }

    /// Counts a request in flight until the guard drops.
    pub fn begin(self: &Arc<Self>) -> InFlight {
        self.in_flight.fetch_add(1, Ordering::Relaxed);
        InFlight { load: self.clone() }
    }

    /// Counts a request in flight until the guard drops, if fewer than `max`
    /// are (a deployment's `max_in_flight`): one compare-and-swap that never
    /// counts past `max`; a request that finds no room takes nothing.
    pub fn try_begin(self: &Arc<Self>, max: u32) -> Option<InFlight> {
        take_below(&self.in_flight, max).then(|| InFlight { load: self.clone() })
    }

    /// Requests in flight now.
    pub fn in_flight(&self) -> u32 {
        self.in_flight.load(Ordering::Relaxed)
    }

    /// Records a time to first token (Finagle's peak EWMA): a sample above the
    /// stored value replaces it at once; one below is blended in with weight
    /// `1 - exp(-elapsed / DECAY)`, `elapsed` being the time since the previous
    /// sample. Samples within the same millisecond as the previous one only
    /// count when they raise the peak.
    pub fn observe_ttft(&self, ttft: Duration, now: Instant) {
        let sample = ttft.as_secs_f64();
        self.ttft.update(now, |previous| match previous {
            Some((value, elapsed)) if sample < value => {
                let keep = fade(elapsed);
                value * keep + sample * (1.0 - keep)
            }
            _ => sample,
        });
    }

    /// Records a failed attempt as a sample of [`FAILURE_PENALTY`], so the
    /// `latency` strategy sheds a failing deployment.
    pub fn observe_failure(&self, now: Instant) {
        self.observe_ttft(FAILURE_PENALTY, now);
    }

    /// Records the provider's `x-ratelimit-{remaining,limit}-{requests,tokens}`:
    /// the headroom becomes the smaller fraction left. A pair without its limit
    /// only counts when nothing remains; with nothing usable the report is ignored.
    pub fn observe_rate_limit(
        &self,
        remaining_requests: Option<u64>,
        limit_requests: Option<u64>,
        remaining_tokens: Option<u64>,
        limit_tokens: Option<u64>,
        now: Instant,
    ) {
        let requests = fraction_left(remaining_requests, limit_requests);
        let tokens = fraction_left(remaining_tokens, limit_tokens);
        let left = match (requests, tokens) {
            (Some(r), Some(t)) => r.min(t),
            (Some(f), None) | (None, Some(f)) => f,
            (None, None) => return,
        };
        self.headroom.update(now, |_| left);
    }

    /// The TTFT estimate at `now`: the peak-EWMA, faded toward zero by
    /// `exp(-elapsed / DECAY)` since the last sample, so that a deployment nobody
    /// has tried lately looks fast again and gets a probe (about every
    /// `DECAY × ln(slowdown)`, 12 s for a deployment 10× slower than its peers).
    /// Zero before the first sample, so a new deployment gets tried.
    pub fn ttft_estimate(&self, now: Instant) -> Duration {
        Duration::try_from_secs_f64(self.ttft_secs(now)).unwrap_or(Duration::MAX)
    }

    /// The fraction of its rate limits the provider last reported left,
    /// `0.0..=1.0`; 1.0 when it reported none in the last [`RATE_LIMIT_TTL`].
    pub fn headroom(&self, now: Instant) -> f64 {
        match self.headroom.get(now) {
            Some((left, elapsed)) if elapsed <= RATE_LIMIT_TTL => left,
            _ => 1.0,
        }
    }

    /// The `latency` strategy's cost of sending one more request here (lower is
    /// better): `max(ttft_estimate, MIN_TTFT)` in seconds × `(in_flight + 1)` /
    /// `max(headroom, MIN_HEADROOM)`. Slow, busy and nearly rate-limited
    /// deployments all score higher.
    pub fn score(&self, now: Instant) -> f64 {
        let ttft = self.ttft_secs(now).max(MIN_TTFT.as_secs_f64());
        ttft * (f64::from(self.in_flight()) + 1.0) / self.headroom(now).max(MIN_HEADROOM)
    }

    fn ttft_secs(&self, now: Instant) -> f64 {
        self.ttft
            .get(now)
            .map_or(0.0, |(value, elapsed)| value * fade(elapsed))
    }
}

impl Default for Load {
    fn default() -> Self {
        Self::new()
    }
}

// === impl InFlight ===

impl Drop for InFlight {
    fn drop(&mut self) {
        self.load.in_flight.fetch_sub(1, Ordering::Relaxed);
    }
}

/// `remaining / limit`, clamped to `0.0..=1.0`; without a limit, 0.0 when
/// nothing remains and unknown otherwise.
fn fraction_left(remaining: Option<u64>, limit: Option<u64>) -> Option<f64> {
    match (remaining?, limit) {
        (remaining, Some(limit)) if limit > 0 => Some((remaining as f64 / limit as f64).min(1.0)),
        (0, _) => Some(0.0),
        _ => None,
    }
}

/// The weight left to a value after `elapsed`: `exp(-elapsed / DECAY)`.
fn fade(elapsed: Duration) -> f64 {
    (-elapsed.as_secs_f64() / DECAY.as_secs_f64()).exp()
}

// === Stamped ===

/// The instant stamps count from; a `now` before it counts as it.
static EPOCH: LazyLock<Instant> = LazyLock::new(Instant::now);

/// Bits of a [`Stamped`] word holding the value; the stamp has the rest.
const VALUE_BITS: u32 = 24;

/// Largest stamp, in milliseconds since [`EPOCH`] (about 34 years).
const MAX_STAMP: u64 = (1 << (64 - VALUE_BITS)) - 1;

/// A non-negative value and the millisecond it was stored, in one atomic word
/// so that readers never see one without the other and writers update both
/// with one compare-and-swap.
///
/// The value is an `f32` without its sign bit and its 8 lowest mantissa bits
/// (15 bits of mantissa: 0.003 % precision); the stamp counts milliseconds from
/// [`EPOCH`] plus one, so the word 0 means "never stored".
#[derive(Debug, Default)]
struct Stamped(AtomicU64);

impl Stamped {
    /// The value and the time since it was stored, if it ever was.
    fn get(&self, now: Instant) -> Option<(f64, Duration)> {
        unpack(self.0.load(Ordering::Relaxed), stamp(now))
    }

    /// Stores `next(previous value and its age)`, stamped `now`.
    fn update(&self, now: Instant, next: impl Fn(Option<(f64, Duration)>) -> f64) {
        let now = stamp(now);
        // The closure always returns `Some`, so this cannot fail.
        let _ = self
            .0
            .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |word| {
                let value = next(unpack(word, now));
                // A writer with an older `now` must not move the stamp back.
                Some(pack(value, now.max(word >> VALUE_BITS)))
            });
    }
}

/// Milliseconds since [`EPOCH`], plus one.
fn stamp(now: Instant) -> u64 {
    let millis = now.saturating_duration_since(*EPOCH).as_millis();
    u64::try_from(millis).map_or(MAX_STAMP, |m| m.saturating_add(1).min(MAX_STAMP))
}

fn pack(value: f64, stamp: u64) -> u64 {
    // `max` also turns NaN into 0; a non-negative f32 has its sign bit clear.
    let bits = (value.max(0.0) as f32).to_bits() >> (32 - VALUE_BITS);
    (stamp << VALUE_BITS) | u64::from(bits)
}

fn unpack(word: u64, now: u64) -> Option<(f64, Duration)> {
    if word == 0 {
        return None;
    }
    let value = f32::from_bits(((word & ((1 << VALUE_BITS) - 1)) as u32) << (32 - VALUE_BITS));
    let elapsed = Duration::from_millis(now.saturating_sub(word >> VALUE_BITS));
    Some((f64::from(value), elapsed))
}

#[cfg(test)]
mod tests {
    use super::*;

    const MS: Duration = Duration::from_millis(1);

    fn close(a: f64, b: f64) -> bool {
        (a - b).abs() <= 1e-3 * b.abs().max(1e-3)
    }

    #[test]
    fn new_deployment_has_no_estimate_and_full_headroom() {
        let load = Load::new();
        let now = Instant::now();
        assert_eq!(load.ttft_estimate(now), Duration::ZERO);
        assert_eq!(load.headroom(now), 1.0);
        assert_eq!(load.in_flight(), 0);
        assert!(close(load.score(now), MIN_TTFT.as_secs_f64()));
    }

    #[test]
    fn in_flight_follows_guards() {
        let load = Arc::new(Load::new());
        let a = load.begin();
        let b = load.begin();
        assert_eq!(load.in_flight(), 2);
        drop(a);
        assert_eq!(load.in_flight(), 1);
        drop(b);
        assert_eq!(load.in_flight(), 0);
    }

    #[test]
    fn try_begin_stops_at_the_limit_and_a_dropped_guard_makes_room() {
        let load = Arc::new(Load::new());
        let _other = load.begin();
        let a = load.try_begin(2).unwrap();
        assert!(load.try_begin(2).is_none());
        assert_eq!(load.in_flight(), 2);
        drop(a);
        assert!(load.try_begin(2).is_some());
        assert_eq!(load.in_flight(), 1);
    }

    #[test]
    fn try_begin_never_counts_past_the_limit_under_contention() {
        let load = Arc::new(Load::new());
        let peak = AtomicU32::new(0);
        std::thread::scope(|scope| {
            for _ in 0..8 {
                scope.spawn(|| {
                    for _ in 0..2_000 {
                        if let Some(guard) = load.try_begin(3) {
                            peak.fetch_max(load.in_flight(), Ordering::Relaxed);
                            drop(guard);
                        }
                    }
                });
            }
        });
        assert!(peak.load(Ordering::Relaxed) <= 3);
        assert_eq!(load.in_flight(), 0);
    }

    #[test]
    fn peak_jumps_up_at_once() {
        let load = Load::new();
        let t0 = Instant::now();
        load.observe_ttft(100 * MS, t0);
        load.observe_ttft(2000 * MS, t0 + MS);
        assert!(close(load.ttft_estimate(t0 + MS).as_secs_f64(), 2.0));
    }

    #[test]
    fn lower_samples_pull_the_estimate_down_with_the_time_constant() {
        let load = Load::new();
        let t0 = Instant::now();
        load.observe_ttft(Duration::from_secs(2), t0);
        // One DECAY later, a 0.1 s sample keeps e^-1 of the old 2 s.
        let t1 = t0 + DECAY;
        load.observe_ttft(100 * MS, t1);
        let keep = (-1.0f64).exp();
        let expected = 2.0 * keep + 0.1 * (1.0 - keep);
        assert!(close(load.ttft_estimate(t1).as_secs_f64(), expected));

        // Steady fast samples bring it to the fast value within a few DECAYs.
        let mut now = t1;
        for _ in 0..10_000 {
            now += 10 * MS;
            load.observe_ttft(100 * MS, now);
        }
        assert!(close(load.ttft_estimate(now).as_secs_f64(), 0.1));
    }

    #[test]
    fn an_unrefreshed_estimate_fades_toward_zero() {
        let load = Load::new();
        let t0 = Instant::now();
        load.observe_ttft(Duration::from_secs(1), t0);
        let later = t0 + DECAY * 2;
        let expected = (-2.0f64).exp();
        assert!(close(load.ttft_estimate(later).as_secs_f64(), expected));
        // Reading does not change what is stored.
        assert!(close(load.ttft_estimate(t0).as_secs_f64(), 1.0));
    }

    #[test]
    fn a_failure_counts_as_a_slow_sample() {
        let load = Load::new();
        let t0 = Instant::now();
        load.observe_ttft(100 * MS, t0);
        load.observe_failure(t0 + MS);
        assert!(close(
            load.ttft_estimate(t0 + MS).as_secs_f64(),
            FAILURE_PENALTY.as_secs_f64()
        ));
    }

    #[test]
    fn an_older_writer_does_not_move_the_stamp_back() {
        let load = Load::new();
        let t0 = Instant::now();
        load.observe_ttft(Duration::from_secs(1), t0 + DECAY);
        load.observe_ttft(Duration::from_secs(2), t0);
        // Stamped at t0 + DECAY, so not faded there.
        assert!(close(load.ttft_estimate(t0 + DECAY).as_secs_f64(), 2.0));
    }

    #[test]
    fn headroom_is_the_smaller_fraction_and_expires() {
        let load = Load::new();
        let t0 = Instant::now();
        load.observe_rate_limit(Some(50), Some(100), Some(1_000), Some(10_000), t0);
        assert!(close(load.headroom(t0), 0.1));
        // A report with nothing usable changes nothing.
        load.observe_rate_limit(Some(7), None, None, None, t0);
        assert!(close(load.headroom(t0), 0.1));
        // Nothing left, even without a limit.
        load.observe_rate_limit(Some(0), None, None, None, t0);
        assert_eq!(load.headroom(t0), 0.0);
        assert_eq!(load.headroom(t0 + RATE_LIMIT_TTL), 0.0);
        assert_eq!(load.headroom(t0 + RATE_LIMIT_TTL + MS), 1.0);
    }

    #[test]
    fn score_grows_with_ttft_in_flight_and_scarce_headroom() {
        let load = Arc::new(Load::new());
        let t0 = Instant::now();
        load.observe_ttft(Duration::from_millis(500), t0);
        assert!(close(load.score(t0), 0.5));
        let _a = load.begin();
        let _b = load.begin();
        assert!(close(load.score(t0), 1.5));
        load.observe_rate_limit(Some(0), Some(100), None, None, t0);
        assert!(close(load.score(t0), 1.5 / MIN_HEADROOM));
    }

    #[test]
    fn pack_round_trips() {
        for value in [0.0, 1e-6, 0.1, 1.0, 5.0, 3600.0] {
            let (back, elapsed) = unpack(pack(value, 42), 42).unwrap();
            assert!(close(back, value) || value == 0.0 && back == 0.0);
            assert_eq!(elapsed, Duration::ZERO);
        }
        assert_eq!(pack(f64::NAN, 1) & ((1 << VALUE_BITS) - 1), 0);
    }
}
