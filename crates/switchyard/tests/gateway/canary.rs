//! Canary traffic shifts: rollback by the canary's bounds, promotion stage by
//! stage, and the operators' actions.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use serde_json::Value;

use crate::harness::*;

const ADMIN_KEY: &str = "sk-admin-test";

/// `gpt-4.1` on `old` (the old set) and `new` (tier `next`), with a canary
/// to `next` of `canary` (its keys besides `to`).
fn canary_gateway(old: &Process, new: &Process, canary: &str) -> Process {
    gateway(&canary_config(old, new, canary))
}

/// The config of [`canary_gateway`].
fn canary_config(old: &Process, new: &Process, canary: &str) -> String {
    format!(
        "server:\n  listen: 127.0.0.1:0\n  admin_key: {ADMIN_KEY}\nauth:\n  mode: keys\nkeys:\n  - key: {CLIENT_KEY}\nproviders:\n  old: {{ kind: openai, base_url: {}, api_key: k }}\n  new: {{ kind: openai, base_url: {}, api_key: k }}\nmodels:\n  gpt-4.1:\n    deployments:\n      - {{ provider: old, model: stable }}\n      - {{ provider: new, model: next, tier: next }}\ncanary:\n  gpt-4.1: {{ to: next, {canary} }}\n",
        old.url("/v1"),
        new.url("/v1"),
    )
}

/// `method path` with `key`: the status and the JSON body.
async fn admin(gw: &Process, method: reqwest::Method, path: &str, key: &str) -> (u16, Value) {
    let request = client().request(method, gw.url(path)).bearer_auth(key);
    let response = request.send().await.unwrap();
    (response.status().as_u16(), response.json().await.unwrap())
}

/// The canary of `gpt-4.1` as `GET /admin/canary` shows it.
async fn canary_state(gw: &Process) -> Value {
    let (status, body) = admin(gw, reqwest::Method::GET, "/admin/canary", ADMIN_KEY).await;
    assert_eq!(status, 200, "{body}");
    body["canaries"][0].clone()
}

/// `POST /admin/canary/{model}/{action}`.
async fn act(gw: &Process, model: &str, action: &str) -> (u16, Value) {
    let path = format!("/admin/canary/{model}/{action}");
    admin(gw, reqwest::Method::POST, &path, ADMIN_KEY).await
}

/// Sends `n` chat requests at once on `http` (one client for all: building
/// one per request costs more than the request); asserts each succeeded and
/// returns how many the new set served.
async fn send(http: &reqwest::Client, gw: &Process, n: usize) -> usize {
    let body = chat("hi", Value::Null);
    let requests = (0..n).map(|_| {
        http.post(gw.url("/v1/chat/completions"))
            .bearer_auth(CLIENT_KEY)
            .json(&body)
            .send()
    });
    let mut on_new = 0;
    for response in futures_util::future::join_all(requests).await {
        let response = response.unwrap();
        assert_eq!(response.status(), 200);
        on_new += usize::from(response.headers()["x-switchyard-provider"] == "new");
    }
    on_new
}

fn assert_metrics(text: &str, percent: u8, state: u8, rollbacks: u8) {
    for line in [
        format!(r#"switchyard_canary_percent{{model="gpt-4.1"}} {percent}"#),
        format!(r#"switchyard_canary_state{{model="gpt-4.1"}} {state}"#),
        format!(r#"switchyard_canary_rollbacks_total{{model="gpt-4.1"}} {rollbacks}"#),
    ] {
        assert!(text.contains(&line), "{line} in:\n{text}");
    }
}

#[tokio::test]
async fn a_failing_canary_rolls_back_by_itself_and_no_request_fails() {
    let old = mock(&[]);
    let new = mock(&["--error-rate", "0.2", "--seed", "7"]);
    let gw = canary_gateway(
        &old,
        &new,
        "stages: [20, 50, 100], dwell: 300ms, min_requests: 20, max_error_rate: 0.05",
    );
    let (http, start) = (client(), Instant::now());
    let canary = loop {
        // A failed attempt on the new set falls over to the old one.
        send(&http, &gw, 10).await;
        let canary = canary_state(&gw).await;
        if canary["state"] != "running" {
            break canary;
        }
        assert!(start.elapsed() < Duration::from_secs(10), "{canary}");
    };
    assert_eq!(canary["state"], "rolled_back", "{canary}");
    assert_eq!(
        (canary["stage"].as_u64(), canary["percent"].as_u64()),
        (Some(0), Some(0))
    );
    assert!(canary["attempts"].as_u64().unwrap() >= 20, "{canary}");
    assert!(canary["error_rate"].as_f64().unwrap() > 0.05, "{canary}");
    let reason = canary["reason"].as_str().unwrap();
    assert!(reason.starts_with("error rate"), "{reason}");
    gw.wait_for_log(&["canary: rolled back", "max_error_rate=0.05"]);

    // Rolled back, it stays at 0 %: the new set gets nothing more.
    let before = mock_requests(&new).await;
    assert_eq!(send(&http, &gw, 40).await, 0);
    tokio::time::sleep(Duration::from_millis(100)).await;
    assert_eq!(canary_state(&gw).await["state"], "rolled_back");
    assert_eq!(mock_requests(&new).await, before);
    assert_metrics(&metrics(&gw).await, 0, 2, 1);
}

#[tokio::test]
async fn a_healthy_canary_is_promoted_stage_by_stage() {
    let (old, new) = (mock(&[]), mock(&[]));
    let gw = canary_gateway(
        &old,
        &new,
        "stages: [20, 50, 100], dwell: 800ms, min_requests: 20, max_error_rate: 0.05",
    );
    // Requests, and those the new set served, by the percent they were sent at.
    let mut shares: BTreeMap<u64, (usize, usize)> = BTreeMap::new();
    let (http, start) = (client(), Instant::now());
    loop {
        let before = canary_state(&gw).await;
        if before["state"] == "promoted" {
            break;
        }
        assert_eq!(before["state"], "running", "{before}");
        assert!(start.elapsed() < Duration::from_secs(12), "{before}");
        let on_new = send(&http, &gw, 10).await;
        let after = canary_state(&gw).await;
        // A batch that straddles a change of stage says nothing of either.
        if (&after["state"], &after["stage"]) == (&before["state"], &before["stage"]) {
            let share = shares
                .entry(before["percent"].as_u64().unwrap())
                .or_default();
            *share = (share.0 + 10, share.1 + on_new);
        }
    }
    for (percent, (sent, on_new)) in &shares {
        let (sent, on_new) = (*sent as f64, *on_new as f64);
        let expected = *percent as f64 / 100.0;
        // Within four standard deviations of a binomial draw.
        let tolerance = 4.0 * (expected * (1.0 - expected) / sent).sqrt() + 0.02;
        assert!(
            (on_new / sent - expected).abs() <= tolerance,
            "{on_new} of {sent} at {percent}%: {shares:?}"
        );
    }
    assert!(shares.get(&20).is_some_and(|s| s.0 >= 40), "{shares:?}");
    assert!(shares.contains_key(&50), "{shares:?}");
    // Promoted, every request goes to the new set.
    assert_eq!(send(&http, &gw, 20).await, 20);
    let canary = canary_state(&gw).await;
    assert_eq!(
        (canary["stage"].as_u64(), canary["percent"].as_u64()),
        (Some(2), Some(100))
    );
    gw.wait_for_log(&["canary: promoted"]);
    assert_metrics(&metrics(&gw).await, 100, 3, 0);
}

#[tokio::test]
async fn operators_pause_resume_promote_and_abort_a_canary() {
    let (old, new) = (mock(&[]), mock(&[]));
    let gw = canary_gateway(&old, &new, "stages: [10, 100], dwell: 1h, min_requests: 20");
    let http = client();
    let list = admin(&gw, reqwest::Method::GET, "/admin/canary", "").await;
    assert_eq!(list.0, 401);
    let abort = "/admin/canary/gpt-4.1/abort";
    let refused = admin(&gw, reqwest::Method::POST, abort, CLIENT_KEY).await;
    assert_eq!(refused.0, 401, "{}", refused.1);

    let canary = canary_state(&gw).await;
    assert_eq!(canary["model"], "gpt-4.1");
    assert_eq!(canary["to"], "next");
    assert_eq!(
        (canary["state"].as_str(), canary["percent"].as_u64()),
        (Some("running"), Some(10))
    );
    assert_eq!(canary["thresholds"]["min_requests"], 20);
    assert_eq!(canary["thresholds"]["dwell_ms"], 3_600_000.0);

    let (status, body) = act(&gw, "gpt-4.1", "resume").await;
    assert_eq!(status, 409, "{body}");
    assert_eq!(body["error"]["code"], "conflict");
    let (status, body) = act(&gw, "gpt-4.1", "pause").await;
    assert_eq!((status, body["state"].as_str()), (200, Some("paused")));
    assert_eq!(body["percent"], 10);
    assert_eq!(act(&gw, "gpt-4.1", "pause").await.0, 409);
    let (status, body) = act(&gw, "gpt-4.1", "resume").await;
    assert_eq!((status, body["state"].as_str()), (200, Some("running")));

    let (status, body) = act(&gw, "gpt-4.1", "abort").await;
    assert_eq!((status, body["state"].as_str()), (200, Some("rolled_back")));
    assert_eq!(body["reason"], "aborted by operator");
    assert_eq!(body["percent"], 0);
    assert_eq!(send(&http, &gw, 10).await, 0);
    assert_eq!(act(&gw, "gpt-4.1", "abort").await.0, 409);
    gw.wait_for_log(&["canary: operator action", "abort", "rolled_back"]);

    let (status, body) = act(&gw, "gpt-4.1", "promote").await;
    assert_eq!((status, body["state"].as_str()), (200, Some("promoted")));
    assert_eq!(
        (body["stage"].as_u64(), body["percent"].as_u64()),
        (Some(1), Some(100))
    );
    assert_eq!(send(&http, &gw, 10).await, 10);
    assert_eq!(act(&gw, "gpt-4.1", "promote").await.0, 409);

    let (status, body) = act(&gw, "gpt-5", "pause").await;
    assert_eq!(status, 404, "{body}");
    assert_eq!(body["error"]["message"], "the model `gpt-5` has no canary");
    assert_eq!(act(&gw, "gpt-4.1", "restart").await.0, 404);
    assert_metrics(&metrics(&gw).await, 100, 3, 1);
}

/// Two replicas on one Redis: an operator's pause, resume and abort through
/// either is the canary's state on both within a second.
#[tokio::test]
async fn replicas_on_one_redis_share_the_canary_state() {
    let (old, new) = (mock(&[]), mock(&[]));
    let yaml = format!(
        "{}{}",
        canary_config(
            &old,
            &new,
            "stages: [10, 50, 100], dwell: 1h, min_requests: 20"
        ),
        crate::stores::shared_redis_yaml("")
    );
    let replicas = [gateway(&yaml), gateway(&yaml)];
    let state_on = |gw: &Process| {
        let gw = gw.url("/admin/canary");
        async move {
            let response = client()
                .get(gw)
                .bearer_auth(ADMIN_KEY)
                .send()
                .await
                .unwrap();
            let body: Value = response.json().await.unwrap();
            body["canaries"][0]["state"].as_str().unwrap().to_owned()
        }
    };
    for (through, to, action, state) in [
        (0, 1, "pause", "paused"),
        (1, 0, "resume", "running"),
        (0, 1, "abort", "rolled_back"),
    ] {
        let (status, body) = act(&replicas[through], "gpt-4.1", action).await;
        assert_eq!(
            (status, body["state"].as_str()),
            (200, Some(state)),
            "{body}"
        );
        let started = Instant::now();
        while state_on(&replicas[to]).await != state {
            assert!(
                started.elapsed() < Duration::from_secs(1),
                "{action} through one replica not seen by the other"
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
}
