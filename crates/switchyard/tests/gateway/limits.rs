//! In-flight limits per model, per deployment and per key, against a mock
//! that answers slowly: the requests within a limit succeed, the others are
//! refused at once (503, or 429 for a key) with `retry-after`, in the
//! client's dialect; a deployment at its limit hands its requests to a peer.

use std::time::{Duration, Instant};

use serde_json::{Value, json};

use crate::harness::*;

/// How long the mock takes to answer: far longer than a refusal may take.
const LATENCY: &str = "600ms";

/// A refusal comes well before the slow answers.
const AT_ONCE: Duration = Duration::from_millis(300);

/// One answer: status, `retry-after`, time taken, served by (`x-switchyard-model`), body.
struct Answer {
    status: u16,
    retry_after: Option<String>,
    took: Duration,
    served_by: Option<String>,
    body: Value,
}

async fn answer(response: reqwest::Response, started: Instant) -> Answer {
    let header = |name| {
        response
            .headers()
            .get(name)
            .map(|v: &reqwest::header::HeaderValue| v.to_str().unwrap().to_owned())
    };
    let (retry_after, served_by) = (header("retry-after"), header("x-switchyard-model"));
    Answer {
        status: response.status().as_u16(),
        retry_after,
        took: started.elapsed(),
        served_by,
        body: response.json().await.unwrap(),
    }
}

/// `n` chat requests for `model` with `key`, all at once.
async fn burst(gw: &Process, key: &str, model: &str, n: usize) -> Vec<Answer> {
    let body = json!({"model": model, "messages": [{"role": "user", "content": "hi"}]});
    let sent = (0..n).map(|_| async {
        let started = Instant::now();
        let response = client()
            .post(gw.url("/v1/chat/completions"))
            .bearer_auth(key)
            .json(&body)
            .send()
            .await
            .unwrap();
        answer(response, started).await
    });
    futures_util::future::join_all(sent).await
}

/// The answers with `status`.
fn with_status(answers: &[Answer], status: u16) -> Vec<&Answer> {
    answers.iter().filter(|a| a.status == status).collect()
}

/// Asserts that every answer is a refusal with `status`, `retry-after: 1` and
/// `code`, given at once.
fn refused_at_once(refused: &[&Answer], status: u16, code: &str) {
    for a in refused {
        assert_eq!(a.status, status, "{}", a.body);
        assert_eq!(a.retry_after.as_deref(), Some("1"), "{}", a.body);
        assert_eq!(a.body["error"]["code"], code, "{}", a.body);
        assert!(a.took < AT_ONCE, "refused after {:?}", a.took);
    }
}

/// `switchyard_requests_shed_total{reason}` as `/metrics` shows it.
async fn shed(gw: &Process, reason: &str) -> u64 {
    let series = format!("switchyard_requests_shed_total{{reason=\"{reason}\"}} ");
    metrics(gw)
        .await
        .lines()
        .find_map(|l| l.strip_prefix(series.as_str()))
        .map_or(0, |v| v.trim().parse().unwrap())
}

/// A gateway in front of `mock` whose `models:` section is `models`; the
/// test key has `key_extra` in its entry, and key `sk-other` has no limit.
fn gateway_with_models(mock: &Process, models: &str, key_extra: &str) -> Process {
    gateway(&format!(
        "server:\n  listen: 127.0.0.1:0\nauth:\n  mode: keys\nkeys:\n  - {{ name: tests, key: {CLIENT_KEY}{key_extra} }}\n  - {{ name: other, key: sk-other }}\nproviders:\n  up: {{ kind: openai, base_url: {}, api_key: k }}\nmodels:\n{models}",
        mock.url("/v1")
    ))
}

#[tokio::test]
async fn a_model_past_its_limit_sheds_at_once_and_the_rest_succeed() {
    let mock = mock(&["--latency", LATENCY]);
    let gw = gateway_with_models(
        &mock,
        "  m:\n    max_in_flight: 3\n    deployments: [{ provider: up, model: mock-1 }]\n  free:\n    deployments: [{ provider: up, model: mock-1 }]\n",
        "",
    );
    let (limited, free) = tokio::join!(
        burst(&gw, CLIENT_KEY, "m", 8),
        burst(&gw, CLIENT_KEY, "free", 4),
    );
    assert_eq!(with_status(&limited, 200).len(), 3);
    refused_at_once(&with_status(&limited, 503), 503, "overloaded");
    assert_eq!(with_status(&limited, 503).len(), 5);
    assert!(
        with_status(&limited, 503)[0].body["error"]["message"]
            .as_str()
            .unwrap()
            .contains("`m` is at its in-flight limit")
    );
    // Another model is not held back.
    assert_eq!(with_status(&free, 200).len(), 4);
    assert_eq!(shed(&gw, "model_limit").await, 5);
    assert_eq!(mock_requests(&mock).await, 7);
    // Every place was given back: the model takes three again.
    let again = burst(&gw, CLIENT_KEY, "m", 3).await;
    assert_eq!(with_status(&again, 200).len(), 3);
}

#[tokio::test]
async fn a_deployment_at_its_limit_hands_over_to_its_peer_and_all_full_is_a_503() {
    let mock = mock(&["--latency", LATENCY]);
    let gw = gateway_with_models(
        &mock,
        "  m:\n    deployments:\n      - { provider: up, model: a, weight: 100, max_in_flight: 2 }\n      - { provider: up, model: b, max_in_flight: 2 }\n",
        "",
    );
    // Four fit: each deployment takes two, whatever the weights say.
    let answers = burst(&gw, CLIENT_KEY, "m", 4).await;
    assert_eq!(with_status(&answers, 200).len(), 4);
    for model in ["a", "b"] {
        let served = answers
            .iter()
            .filter(|a| a.served_by.as_deref() == Some(model))
            .count();
        assert_eq!(served, 2, "{model}");
    }
    assert_eq!(shed(&gw, "deployment_limit").await, 0);

    // Six do not: the two past both limits are refused at once.
    let answers = burst(&gw, CLIENT_KEY, "m", 6).await;
    assert_eq!(with_status(&answers, 200).len(), 4);
    let refused = with_status(&answers, 503);
    assert_eq!(refused.len(), 2);
    refused_at_once(&refused, 503, "overloaded");
    assert_eq!(shed(&gw, "deployment_limit").await, 2);
    assert_eq!(mock_requests(&mock).await, 8);
    // Being full is not a failure: the breakers stay closed.
    let metrics = metrics(&gw).await;
    for deployment in ["up/a", "up/b"] {
        let closed =
            format!("switchyard_circuit_state{{model=\"m\",deployment=\"{deployment}\"}} 0");
        assert!(metrics.contains(&closed), "{metrics}");
    }
}

#[tokio::test]
async fn a_key_past_its_share_gets_429_and_another_key_is_unaffected() {
    let mock = mock(&["--latency", LATENCY]);
    let gw = gateway_with_models(
        &mock,
        "  m:\n    deployments: [{ provider: up, model: mock-1 }]\n",
        ", max_in_flight: 2",
    );
    // Three OpenAI and two Anthropic requests with the limited key, and four
    // with the other one, all at once.
    let anthropic = || async {
        let started = Instant::now();
        let response = client()
            .post(gw.url("/v1/messages"))
            .header("x-api-key", CLIENT_KEY)
            .json(&json!({"model": "m", "max_tokens": 5, "messages": [{"role": "user", "content": "hi"}]}))
            .send()
            .await
            .unwrap();
        answer(response, started).await
    };
    let (limited, anthropic, other) = tokio::join!(
        burst(&gw, CLIENT_KEY, "m", 3),
        futures_util::future::join(anthropic(), anthropic()),
        burst(&gw, "sk-other", "m", 4),
    );
    let anthropic = [anthropic.0, anthropic.1];
    let served = with_status(&limited, 200).len() + with_status(&anthropic, 200).len();
    assert_eq!(served, 2);
    refused_at_once(&with_status(&limited, 429), 429, "rate_limit_exceeded");
    for a in with_status(&anthropic, 429) {
        assert_eq!(a.body["type"], "error", "{}", a.body);
        assert_eq!(a.body["error"]["type"], "rate_limit_error", "{}", a.body);
        assert_eq!(a.retry_after.as_deref(), Some("1"));
        assert!(a.took < AT_ONCE, "refused after {:?}", a.took);
    }
    assert_eq!(with_status(&other, 200).len(), 4);
    assert_eq!(shed(&gw, "key_limit").await, 3);
    assert_eq!(mock_requests(&mock).await, 6);
    // The key's places were given back.
    let again = burst(&gw, CLIENT_KEY, "m", 2).await;
    assert_eq!(with_status(&again, 200).len(), 2);
}
