//! Routes built again from a config over the same registry: live state carried over.

use std::time::Duration;

use tokio_util::sync::CancellationToken;

use super::*;
use crate::upstream::breaker::{Breaker, CircuitState, Outcome};

/// Model `m` on `up/a` and `up/b` (tier `next`, in a canary), hedged after
/// its p90; `extra` is added to its deployments.
fn config_text(extra: &str) -> String {
    format!(
        "server:\n  listen: 127.0.0.1:0\nauth: {{ mode: open }}\nproviders:\n  up: {{ kind: openai, base_url: http://127.0.0.1:9/v1, api_key: k }}\nmodels:\n  m:\n    hedge: {{ after: p90 }}\n    deployments:\n      - {{ provider: up, model: a }}\n      - {{ provider: up, model: b, tier: next }}\n{extra}canary:\n  m: {{ to: next, stages: [10, 50, 100], dwell: 1s, min_requests: 5, max_error_rate: 0.5 }}\ncircuit_breaker: {{ consecutive_failures: 2 }}\n"
    )
}

/// The config of `text`.
fn config(text: &str) -> Config {
    crate::config::from_yaml(text)
}

/// The config of [`config_text`] without extra deployments, and the same
/// with `from` replaced by `to`.
fn configs(from: &str, to: &str) -> (Config, Config) {
    let text = config_text("");
    (config(&text), config(&text.replace(from, to)))
}

/// What outlives routes in a process: the registry, the metrics, the clients.
struct Process {
    registry: Registry,
    metrics: Metrics,
    clients: HashMap<String, Arc<ProviderClient>>,
}

impl Process {
    /// A process with the provider clients of `config`.
    fn new(config: &Config) -> Self {
        let clients = config
            .providers
            .values()
            .map(|p| {
                let client = ProviderClient::new(p, None).unwrap();
                (p.name.clone(), Arc::new(client))
            })
            .collect();
        Self {
            registry: Registry::new(),
            metrics: Metrics::new(),
            clients,
        }
    }

    /// Routes built from `config` over its registry.
    fn routes(&self, config: &Config) -> Routes {
        Routes::new(config, &self.clients, &self.registry, &self.metrics).unwrap()
    }
}

/// Deployment `name` of model `m`.
fn target<'r>(routes: &'r Routes, name: &str) -> &'r Target {
    let model = routes.plan("m", Tokens::default()).unwrap().model();
    model.targets().iter().find(|t| t.name == name).unwrap()
}

/// Asserts that `metrics` render `series` once, at `value`.
fn shows(metrics: &Metrics, series: &str, value: u8) {
    let text = metrics.render();
    let lines: Vec<&str> = text.lines().filter(|l| l.starts_with(series)).collect();
    assert_eq!(lines, [format!("{series} {value}")], "{text}");
}

/// Fails attempts on `breaker` at `now` until it opens.
fn open(breaker: &Breaker, now: Instant) {
    while breaker.state(now) != CircuitState::Open {
        let permit = breaker.allow(now).unwrap();
        breaker.record(permit, Outcome::Failure, now);
    }
}

const CIRCUIT_A: &str = r#"switchyard_circuit_state{model="m",deployment="up/a"}"#;
const HEALTHY_A: &str = r#"switchyard_deployment_healthy{model="m",deployment="up/a"}"#;

#[tokio::test(start_paused = true)]
async fn builds_routes_twice_from_the_same_config_and_shows_the_state_carried_over() {
    let config = config(&config_text(""));
    let process = Process::new(&config);
    let first = process.routes(&config);
    let now = Instant::now();
    let clock = now.into_std();

    // Deployment a: its breaker opened, ejected, busy, slow, timed for hedges.
    let a = target(&first, "up/a");
    open(&a.breaker, now);
    let outlier = config.health_checks.outlier;
    assert!(a.health.eject(now, &outlier).is_some());
    let _in_flight = a.load.begin();
    a.load.observe_ttft(Duration::from_millis(300), clock);
    for ms in 1..=40 {
        a.record_latency(Duration::from_millis(ms));
    }
    let hedge_after = HedgeAfter::Quantile(0.9);
    let delay = a.hedge_delay(hedge_after).unwrap();

    // The canary: past its first stage, and some attempts into the second.
    let stop = CancellationToken::new();
    let supervisor = tokio::spawn(canary::supervise(first.canaries().to_vec(), stop.clone()));
    let b = target(&first, "up/b");
    for _ in 0..5 {
        b.canary_success(Duration::from_millis(10));
    }
    tokio::time::sleep(Duration::from_millis(1_500)).await;
    stop.cancel();
    supervisor.await.unwrap();
    b.canary_failure();
    let canary = first.canary("m").unwrap().status(Instant::now());
    assert_eq!(
        (canary["stage"].as_u64(), canary["percent"].as_u64()),
        (Some(1), Some(50))
    );

    first.export_state(now);
    let second = process.routes(&config);
    let again = target(&second, "up/a");
    assert!(Arc::ptr_eq(&a.breaker, &again.breaker));
    assert_eq!(again.breaker.state(now), CircuitState::Open);
    assert!(matches!(again.health.state(now), health::State::Ejected(_)));
    assert!(!again.health.routable(now));
    assert_eq!(again.load.in_flight(), 1);
    assert_eq!(again.load.ttft_estimate(clock), a.load.ttft_estimate(clock));
    assert_eq!(again.hedge_delay(hedge_after), Some(delay));

    let carried = second.canary("m").unwrap();
    assert!(Arc::ptr_eq(carried, first.canary("m").unwrap()));
    let status = carried.status(Instant::now());
    assert_eq!(
        (status["stage"].as_u64(), status["percent"].as_u64()),
        (Some(1), Some(50))
    );
    assert_eq!(
        (status["attempts"].as_u64(), status["failures"].as_u64()),
        (Some(1), Some(1))
    );
    // The second routes' deployment of the new set reports to the same canary.
    target(&second, "up/b").canary_failure();
    assert_eq!(carried.status(Instant::now())["failures"], 2);

    // One series each, set through the first routes' handles.
    shows(&process.metrics, CIRCUIT_A, 2);
    shows(&process.metrics, HEALTHY_A, 0);
    a.circuit_gauge.set(1.0);
    shows(&process.metrics, CIRCUIT_A, 1);
    second.export_state(now);
    shows(&process.metrics, CIRCUIT_A, 2);
    shows(
        &process.metrics,
        r#"switchyard_canary_percent{model="m"}"#,
        50,
    );
}

#[tokio::test]
async fn a_deployment_added_by_the_second_config_starts_fresh_and_the_others_keep_their_state() {
    let before = config(&config_text(""));
    let after = config(&config_text("      - { provider: up, model: c }\n"));
    let process = Process::new(&before);
    let first = process.routes(&before);
    let now = Instant::now();
    let a = target(&first, "up/a");
    open(&a.breaker, now);
    let _in_flight = a.load.begin();
    a.health.eject(now, &before.health_checks.outlier);
    first
        .canary("m")
        .unwrap()
        .act(canary::Action::Pause, now)
        .unwrap();

    let second = process.routes(&after);
    let kept = target(&second, "up/a");
    assert_eq!(kept.breaker.state(now), CircuitState::Open);
    assert_eq!(kept.load.in_flight(), 1);
    assert!(!kept.health.routable(now));
    let added = target(&second, "up/c");
    assert_eq!(added.breaker.state(now), CircuitState::Closed);
    assert_eq!(added.load.in_flight(), 0);
    assert!(added.health.routable(now));
    assert_eq!(added.hedge_delay(HedgeAfter::Quantile(0.9)), None);
    // The canary's sets changed (c is in the old one now): it starts again.
    let canary = second.canary("m").unwrap();
    assert!(!Arc::ptr_eq(canary, first.canary("m").unwrap()));
    assert_eq!(canary.status(now)["state"], "running");
    // Every series once, the new deployment's included.
    second.export_state(now);
    shows(&process.metrics, CIRCUIT_A, 2);
    let circuit_c = r#"switchyard_circuit_state{model="m",deployment="up/c"}"#;
    shows(&process.metrics, circuit_c, 0);
}

#[tokio::test]
async fn an_unchanged_canary_is_carried_over_and_a_changed_one_starts_again() {
    let (config, changed) = configs("dwell: 1s", "dwell: 2s");
    let process = Process::new(&config);
    let now = Instant::now();
    let first = process.routes(&config);
    first
        .canary("m")
        .unwrap()
        .act(canary::Action::Pause, now)
        .unwrap();
    let same = process.routes(&config);
    assert_eq!(same.canary("m").unwrap().status(now)["state"], "paused");
    let other = process.routes(&changed);
    assert_eq!(other.canary("m").unwrap().status(now)["state"], "running");
    // The deployments' state does not depend on the canary's config.
    assert!(Arc::ptr_eq(
        &target(&first, "up/b").health,
        &target(&other, "up/b").health
    ));
}

#[tokio::test]
async fn changed_breaker_settings_close_the_breaker_and_keep_load_and_health() {
    let (config, changed) = configs("consecutive_failures: 2", "consecutive_failures: 3");
    let process = Process::new(&config);
    let now = Instant::now();
    let first = process.routes(&config);
    let a = target(&first, "up/a");
    open(&a.breaker, now);
    let _in_flight = a.load.begin();
    let second = process.routes(&changed);
    let again = target(&second, "up/a");
    assert_eq!(again.breaker.state(now), CircuitState::Closed);
    assert_eq!(again.load.in_flight(), 1);
    assert!(Arc::ptr_eq(&a.health, &again.health));
}

#[tokio::test(start_paused = true)]
async fn with_every_breaker_open_one_request_in_twenty_goes_through_once() {
    let config = config(
        "server:\n  listen: 127.0.0.1:0\nauth: { mode: open }\nproviders:\n  up: { kind: openai, base_url: http://127.0.0.1:9/v1, api_key: k }\nmodels:\n  m:\n    deployments:\n      - { provider: up, model: a }\n      - { provider: up, model: b }\n",
    );
    let process = Process::new(&config);
    let routes = process.routes(&config);
    let now = Instant::now();
    let (a, b) = (target(&routes, "up/a"), target(&routes, "up/b"));
    open(&a.breaker, now);
    // One breaker open: the other deployment takes every request.
    let mut plan = routes.plan("m", Tokens::default()).unwrap();
    assert_eq!(
        plan.next(now).map(|pick| pick.target.name.as_str()),
        Some("up/b")
    );
    open(&b.breaker, now);
    let mut let_through = 0;
    for _ in 0..100 {
        let mut plan = routes.plan("m", Tokens::default()).unwrap();
        if let Some(pick) = plan.next(now) {
            assert_eq!(pick.why, "panic");
            pick.settle(Outcome::Failure, now);
            let_through += 1;
            // Once per request, however often the chain is gone through.
            assert!(plan.next(now).is_none());
        }
    }
    // One in twenty of each deployment's share of the hundred.
    assert!((4..=5).contains(&let_through), "{let_through}");
    // Their failures say nothing to the breakers: only probes close them.
    assert_eq!(a.breaker.state(now), CircuitState::Open);
    assert_eq!(b.breaker.state(now), CircuitState::Open);
}

#[tokio::test(start_paused = true)]
async fn a_deployment_at_its_limit_is_passed_over_by_every_strategy() {
    for strategy in ["weighted", "round_robin", "least_busy", "latency", "cost"] {
        let text = format!(
            "server:\n  listen: 127.0.0.1:0\nauth: {{ mode: open }}\nproviders:\n  up: {{ kind: openai, base_url: http://127.0.0.1:9/v1, api_key: k }}\nmodels:\n  m:\n    strategy: {strategy}\n    max_in_flight: 5\n    deployments:\n      - {{ provider: up, model: a, max_in_flight: 1, weight: 100, price: {{ input: 0, output: 0 }} }}\n      - {{ provider: up, model: b, max_in_flight: 2, price: {{ input: 9, output: 9 }} }}\n"
        );
        let config = config(&text);
        let process = Process::new(&config);
        let routes = process.routes(&config);
        let (a, b) = (target(&routes, "up/a"), target(&routes, "up/b"));
        let _busy = a.try_begin().unwrap();
        assert!(!a.has_room() && a.try_begin().is_none());
        let now = Instant::now();
        for _ in 0..10 {
            let mut plan = routes.plan("m", Tokens::default()).unwrap();
            let pick = plan.next(now).unwrap();
            assert_eq!(pick.target.name, "up/b", "{strategy}");
        }
        // Both full: the plan hands out none, and says why.
        let _b = [b.try_begin().unwrap(), b.try_begin().unwrap()];
        let mut plan = routes.plan("m", Tokens::default()).unwrap();
        assert!(plan.next(now).is_none(), "{strategy}");
        assert!(plan.some_at_limit());
    }
}

#[test]
fn a_models_count_is_carried_over_to_routes_built_again() {
    let text = config_text("").replace("  m:\n", "  m:\n    max_in_flight: 1\n");
    let config = config(&text);
    let process = Process::new(&config);
    let first = process.routes(&config);
    let limit = |routes: &Routes| {
        let plan = routes.plan("m", Tokens::default()).unwrap();
        plan.model().in_flight.clone().unwrap()
    };
    let share = limit(&first).try_take().unwrap();
    let second = process.routes(&config);
    assert!(limit(&second).try_take().is_none());
    drop(share);
    assert!(limit(&second).try_take().is_some());
}
