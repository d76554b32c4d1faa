//! The executor on a paused clock, with a fake exchange: each deployment
//! answers from a script, after a made-up delay. No HTTP.

#![allow(clippy::unwrap_used, clippy::panic)]

use std::collections::{HashMap, VecDeque};
use std::sync::{Arc, Mutex};

use axum::http::HeaderValue;
use switchyard_providers::openai::ErrorObject;

use super::*;
use crate::config::from_yaml;
use crate::error::Dialect;
use crate::request::{Finish, RequestCx};
use crate::routing::strategy::Tokens;
use crate::routing::{Registry, Routes};
use crate::upstream::ProviderClient;

/// What a deployment does when asked: wait, then answer or fail.
type Step = (Duration, Result<&'static str, UpstreamError>);

/// The fake provider side: each deployment's (`upstream model`) script, and
/// the calls made, in order.
#[derive(Default)]
struct Script {
    steps: Mutex<HashMap<&'static str, VecDeque<Step>>>,
    calls: Mutex<Vec<String>>,
}

impl Script {
    fn new(steps: &[(&'static str, Step)]) -> Self {
        let script = Self::default();
        for (model, step) in steps {
            script
                .steps
                .lock()
                .unwrap()
                .entry(model)
                .or_default()
                .push_back(step.clone());
        }
        script
    }

    /// The exchange of one attempt on `target`.
    fn send(
        &self,
        target: &Target,
    ) -> impl Future<Output = Result<(&'static str, Instant), Failure>> + use<> {
        let model = target.upstream_model.clone();
        self.calls.lock().unwrap().push(model.clone());
        let step = self
            .steps
            .lock()
            .unwrap()
            .get_mut(model.as_str())
            .and_then(VecDeque::pop_front)
            .unwrap_or_else(|| panic!("{model} was not expected to be called again"));
        async move {
            tokio::time::sleep(step.0).await;
            step.1
                .map(|answer| (answer, Instant::now()))
                .map_err(Failure::Upstream)
        }
    }

    fn calls(&self) -> Vec<String> {
        self.calls.lock().unwrap().clone()
    }
}

fn failed(status: u16, retry_after: Option<u64>) -> Result<&'static str, UpstreamError> {
    Err(UpstreamError::Status {
        provider: "p".into(),
        status,
        class: switchyard_providers::openai::classify_error(status, b""),
        error: Box::new(ErrorObject {
            message: format!("status {status}"),
            kind: None,
            param: None,
            code: None,
        }),
        retry_after,
    })
}

const OK: Result<&str, UpstreamError> = Ok("answer");

const fn after(millis: u64) -> Duration {
    Duration::from_millis(millis)
}

/// A gateway's routes and retry settings for `models` (YAML under `models:`),
/// with providers `a`, `b` and `c` that are never called, and `retries`
/// (YAML under `retries:`).
struct World {
    routes: Routes,
    policy: RetryPolicy,
    live: RetryLive,
}

impl World {
    fn new(models: &str, retries: &str) -> Self {
        let yaml = format!(
            r#"
server: {{ listen: "127.0.0.1:0" }}
providers:
  a: {{ kind: openai, base_url: "http://127.0.0.1:9/v1", timeouts: {{ total: 10s }} }}
  b: {{ kind: openai, base_url: "http://127.0.0.1:9/v1", timeouts: {{ total: 10s }} }}
  c: {{ kind: openai, base_url: "http://127.0.0.1:9/v1", timeouts: {{ total: 1s }} }}
retries: {{ backoff_base: 100ms, backoff_max: 1s, {retries} }}
models:
{models}
"#
        );
        let config = from_yaml(&yaml);
        let clients = config
            .providers
            .values()
            .map(|p| {
                (
                    p.name.clone(),
                    Arc::new(ProviderClient::new(p, None).unwrap()),
                )
            })
            .collect();
        let metrics = Metrics::new();
        Self {
            routes: Routes::new(&config, &clients, &Registry::new(), &metrics).unwrap(),
            policy: RetryPolicy::new(&config.retries),
            live: RetryLive::new(&config.retries, &metrics),
        }
    }

    /// Serves one request of `model` through `script`: the answer's
    /// deployment (or the error), and the request's record.
    async fn serve(
        &self,
        model: &str,
        script: &Script,
        refuse: &[&str],
    ) -> (Result<String, GatewayError>, crate::request::RequestRecord) {
        let tokens = Tokens {
            input: 10,
            output: 10,
        };
        let mut plan = self.routes.plan(model, tokens).unwrap();
        let mut attempts = Attempts::new(&self.policy, &self.live, &plan, false);
        let served = execute(
            &mut attempts,
            &mut plan,
            |target: &Target| {
                if refuse.contains(&target.upstream_model.as_str()) {
                    Err(GatewayError::NoDeployment("refused".into()))
                } else {
                    Ok(())
                }
            },
            |target, (), _sent, _deadline| script.send(target),
        )
        .await;
        let mut cx = RequestCx::new(
            HeaderValue::from_static("test"),
            "chat_completions",
            Dialect::OpenAi,
            std::time::Instant::now(),
            Arc::new(Finish::new(Vec::new())),
        );
        let result = served.map(|served| {
            assert_eq!(served.answer, "answer");
            let target = served.pick.target;
            cx.served_by(&target.provider.name, &target.upstream_model);
            target.upstream_model.clone()
        });
        let _ = attempts.conclude(&mut cx);
        let record = cx.record().clone();
        cx.complete();
        (result, record)
    }
}

/// Two deployments of `m`: `m-a` on `a` (cheaper, so tried first), `m-b` on `b`.
const TWO: &str = r#"
  m:
    strategy: cost
    deployments:
      - { provider: a, model: m-a, price: { input: 1, output: 1 } }
      - { provider: b, model: m-b, price: { input: 2, output: 2 } }
"#;

fn route(record: &crate::request::RequestRecord) -> &str {
    record.route.as_ref().unwrap().to_str().unwrap()
}

#[tokio::test(start_paused = true)]
async fn a_failure_moves_on_to_the_next_deployment_at_once() {
    let world = World::new(TWO, "");
    let script = Script::new(&[
        ("m-a", (after(20), failed(500, None))),
        ("m-b", (after(20), OK)),
    ]);
    let started = Instant::now();
    let (served, record) = world.serve("m", &script, &[]).await;
    assert_eq!(served.unwrap(), "m-b");
    assert_eq!(script.calls(), ["m-a", "m-b"]);
    // No backoff before another deployment.
    assert_eq!(started.elapsed(), after(40));
    // All of it on the providers (the gateway's own work takes no time here).
    assert_eq!(record.upstream, after(40));
    assert_eq!(record.attempts, 2);
    assert_eq!(route(&record), "a/m-a[cost]=server_error, b/m-b[cost]=ok");
    let [failure] = record.failed_attempts.as_slice() else {
        panic!("{:?}", record.failed_attempts)
    };
    assert_eq!(
        (failure.deployment.as_str(), failure.outcome),
        ("a/m-a", "server_error")
    );
    assert!(failure.detail.contains("status 500"), "{}", failure.detail);
}

#[tokio::test(start_paused = true)]
async fn the_same_deployment_is_tried_again_after_its_retry_after() {
    let world = World::new(ONE, "");
    let script = Script::new(&[
        ("m-a", (after(10), failed(429, Some(2)))),
        ("m-a", (after(10), OK)),
    ]);
    let started = Instant::now();
    let (served, record) = world.serve("m", &script, &[]).await;
    assert_eq!(served.unwrap(), "m-a");
    assert_eq!(script.calls(), ["m-a", "m-a"]);
    // The provider asked for two seconds: never sooner (the jittered backoff is below it).
    let waited = started.elapsed() - after(20);
    assert!(
        waited >= Duration::from_secs(2) && waited < Duration::from_millis(2100),
        "{waited:?}"
    );
    // The wait for the provider counts as time on providers.
    assert_eq!(record.upstream, started.elapsed());
    assert_eq!(
        route(&record),
        "a/m-a[weighted]=rate_limited, a/m-a[weighted]=ok"
    );
}

#[tokio::test(start_paused = true)]
async fn a_model_that_fails_falls_back_to_the_next() {
    let models = r#"
  m:
    deployments: [{ provider: a, model: m-a }]
    fallbacks: [spare]
  spare:
    deployments: [{ provider: b, model: spare-b }]
"#;
    let world = World::new(models, "");
    let script = Script::new(&[
        ("m-a", (after(5), failed(503, None))),
        ("spare-b", (after(5), OK)),
    ]);
    let (served, record) = world.serve("m", &script, &[]).await;
    assert_eq!(served.unwrap(), "spare-b");
    assert_eq!(
        route(&record),
        "a/m-a[weighted]=overloaded, spare>b/spare-b[weighted]=ok"
    );
    assert_eq!(record.attempts, 2);
}

#[tokio::test(start_paused = true)]
async fn the_clients_own_mistake_is_not_tried_again() {
    let world = World::new(TWO, "");
    let script = Script::new(&[("m-a", (after(5), failed(400, None)))]);
    let (served, record) = world.serve("m", &script, &[]).await;
    let error = served.unwrap_err();
    assert_eq!(error.status(), axum::http::StatusCode::BAD_REQUEST);
    assert_eq!(script.calls(), ["m-a"]);
    assert_eq!(route(&record), "a/m-a[cost]=client_error");
}

#[tokio::test(start_paused = true)]
async fn without_budget_a_failure_is_not_retried() {
    let world = World::new(TWO, "budget_ratio: 0, budget_min: 0");
    let script = Script::new(&[("m-a", (after(5), failed(500, None)))]);
    let (served, record) = world.serve("m", &script, &[]).await;
    assert_eq!(
        served.unwrap_err().status(),
        axum::http::StatusCode::BAD_GATEWAY
    );
    assert_eq!(script.calls(), ["m-a"]);
    assert_eq!(route(&record), "a/m-a[cost]=server_error, budget_exhausted");
}

#[tokio::test(start_paused = true)]
async fn every_attempt_failing_names_each_error_and_answers_with_the_last() {
    let world = World::new(TWO, "attempts: 2");
    let script = Script::new(&[
        ("m-a", (after(5), failed(500, None))),
        ("m-b", (after(5), failed(502, None))),
    ]);
    let (served, record) = world.serve("m", &script, &[]).await;
    let error = served.unwrap_err();
    assert!(error.to_string().contains("status 502"), "{error}");
    let outcomes: Vec<_> = record
        .failed_attempts
        .iter()
        .map(|f| (f.deployment.as_str(), f.detail.contains("status 50")))
        .collect();
    assert_eq!(outcomes, [("a/m-a", true), ("b/m-b", true)]);
    // The answer names who failed last.
    assert_eq!(record.served_by.unwrap().upstream_model, "m-b");
}

#[tokio::test(start_paused = true)]
async fn no_attempt_starts_past_the_deadline() {
    // `c` gives a request one second in all; its first attempt fails after two.
    let models = r#"
  m:
    strategy: cost
    deployments:
      - { provider: c, model: m-c, price: { input: 1, output: 1 } }
      - { provider: b, model: m-b, price: { input: 2, output: 2 } }
"#;
    let world = World::new(models, "");
    let script = Script::new(&[("m-c", (Duration::from_secs(2), failed(500, None)))]);
    let (served, _) = world.serve("m", &script, &[]).await;
    assert!(served.is_err());
    assert_eq!(script.calls(), ["m-c"]);
}

#[tokio::test(start_paused = true)]
async fn a_slow_first_answer_is_overtaken_by_a_hedge() {
    let models = r#"
  m:
    strategy: cost
    hedge: { after: 100ms }
    deployments:
      - { provider: a, model: m-a, price: { input: 1, output: 1 } }
      - { provider: b, model: m-b, price: { input: 2, output: 2 } }
"#;
    let world = World::new(models, "");
    let script = Script::new(&[
        ("m-a", (Duration::from_secs(5), OK)),
        ("m-b", (after(30), OK)),
    ]);
    let started = Instant::now();
    let (served, record) = world.serve("m", &script, &[]).await;
    assert_eq!(served.unwrap(), "m-b");
    assert_eq!(started.elapsed(), after(130));
    // The race, once: from the first request sent to the hedge's answer.
    assert_eq!(record.upstream, after(130));
    assert_eq!(route(&record), "a/m-a[cost]=hedge_lost, b/m-b[hedge]=ok");
    assert_eq!(record.attempts, 2);
}

#[tokio::test(start_paused = true)]
async fn a_deployment_that_cannot_take_the_request_is_passed_over() {
    let world = World::new(TWO, "");
    let script = Script::new(&[("m-b", (after(5), OK))]);
    let (served, record) = world.serve("m", &script, &["m-a"]).await;
    assert_eq!(served.unwrap(), "m-b");
    assert_eq!(script.calls(), ["m-b"]);
    assert_eq!(record.attempts, 1);
    assert_eq!(route(&record), "a/m-a[cost]=not_served, b/m-b[cost]=ok");
}

const ONE: &str = "  m:\n    deployments: [{ provider: a, model: m-a }]\n";

#[tokio::test(start_paused = true)]
async fn a_retry_after_not_below_the_cap_is_answered_at_once() {
    // The default cap is 30 s: a provider asking for exactly that is not waited for.
    let world = World::new(ONE, "");
    let script = Script::new(&[("m-a", (after(10), failed(429, Some(30))))]);
    let started = Instant::now();
    let (served, record) = world.serve("m", &script, &[]).await;
    assert_eq!(
        served.unwrap_err().status(),
        axum::http::StatusCode::TOO_MANY_REQUESTS
    );
    assert_eq!(started.elapsed(), after(10));
    assert_eq!(script.calls(), ["m-a"]);
    assert_eq!(route(&record), "a/m-a[weighted]=rate_limited");
}

#[tokio::test(start_paused = true)]
async fn a_request_sleeps_through_one_retry_after_at_most() {
    let world = World::new(ONE, "attempts: 3");
    let script = Script::new(&[
        ("m-a", (after(10), failed(429, Some(2)))),
        ("m-a", (after(10), failed(429, Some(2)))),
    ]);
    let started = Instant::now();
    let (served, record) = world.serve("m", &script, &[]).await;
    assert_eq!(
        served.unwrap_err().status(),
        axum::http::StatusCode::TOO_MANY_REQUESTS
    );
    // One wait of two seconds, then the second 429 goes back to the client.
    let waited = started.elapsed() - after(20);
    assert!(
        waited >= Duration::from_secs(2) && waited < Duration::from_millis(2100),
        "{waited:?}"
    );
    assert_eq!(script.calls(), ["m-a", "m-a"]);
    assert_eq!(record.attempts, 2);
}

fn local() -> Result<&'static str, UpstreamError> {
    Err(UpstreamError::Local {
        provider: "a".into(),
        detail: "Too many open files (os error 24)".into(),
    })
}

#[tokio::test(start_paused = true)]
async fn a_failure_inside_the_gateway_counts_against_no_deployment() {
    let world = World::new(ONE, "");
    for _ in 0..10 {
        let script = Script::new(&[("m-a", (after(1), local()))]);
        let (served, record) = world.serve("m", &script, &[]).await;
        let error = served.unwrap_err();
        assert_eq!(error.status(), axum::http::StatusCode::SERVICE_UNAVAILABLE);
        assert_eq!(route(&record), "a/m-a[weighted]=local");
    }
    // Ten in a row, and the deployment's breaker is as closed as before.
    let target = &world
        .routes
        .plan(
            "m",
            Tokens {
                input: 1,
                output: 1,
            },
        )
        .unwrap()
        .model()
        .targets()[0];
    assert_eq!(
        target.breaker.state(Instant::now()),
        crate::upstream::breaker::CircuitState::Closed
    );
}

#[tokio::test(start_paused = true)]
async fn a_retry_after_every_key_resting_takes_nothing_from_the_budget() {
    let world = World::new(TWO, "budget_ratio: 0, budget_min: 0");
    let resting = Err(UpstreamError::KeysResting {
        provider: "a".into(),
        retry_after: 3,
    });
    let script = Script::new(&[("m-a", (after(0), resting)), ("m-b", (after(5), OK))]);
    let (served, record) = world.serve("m", &script, &[]).await;
    assert_eq!(served.unwrap(), "m-b");
    assert_eq!(route(&record), "a/m-a[cost]=rate_limited, b/m-b[cost]=ok");
}
