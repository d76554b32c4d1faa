//! Deployment health: active probes, passive outlier ejection, panic mode, and
//! what `/ready`, `/admin/deployments` and `/metrics` say of it.

use std::time::{Duration, Instant};

use serde_json::{Value, json};

use crate::harness::*;

const ADMIN_KEY: &str = "sk-admin-health";

/// A gateway on `providers` and `models` (YAML blocks, indented as under their
/// keys), with the admin API on and `extra` top-level YAML.
fn health_gateway(providers: &str, models: &str, extra: &str) -> Process {
    gateway(&format!(
        "server:\n  listen: 127.0.0.1:0\n  admin_key: {ADMIN_KEY}\nauth:\n  mode: keys\nkeys:\n  - key: {CLIENT_KEY}\nproviders:\n{providers}models:\n{models}{extra}"
    ))
}

/// An OpenAI provider `name` on `mock`, with the extra keys `extra`.
fn provider(name: &str, mock: &Process, extra: &str) -> String {
    format!(
        "  {name}:\n    kind: openai\n    base_url: {}\n    api_key: {UPSTREAM_KEY}\n    timeouts: {{ connect: 1s, first_byte: 5s }}\n{extra}",
        mock.url("/v1")
    )
}

async fn admin(gw: &Process, path: &str) -> Value {
    client()
        .get(gw.url(path))
        .bearer_auth(ADMIN_KEY)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap()
}

/// The `/admin/deployments` entry of `deployment` in `model`.
async fn deployment(gw: &Process, model: &str, deployment: &str) -> Value {
    let body = admin(gw, "/admin/deployments").await;
    let models = body["models"].as_array().unwrap();
    let model = models.iter().find(|m| m["model"] == model).unwrap();
    let list = model["deployments"].as_array().unwrap();
    list.iter()
        .find(|d| d["deployment"] == deployment)
        .unwrap()
        .clone()
}

/// `/ready`: status and body.
async fn ready(gw: &Process) -> (u16, Value) {
    let response = client().get(gw.url("/ready")).send().await.unwrap();
    (response.status().as_u16(), response.json().await.unwrap())
}

/// Polls `/ready` until it answers `status`, for at most 10 s.
async fn wait_ready(gw: &Process, status: u16) -> Value {
    let start = Instant::now();
    loop {
        let (got, body) = ready(gw).await;
        if got == status {
            return body;
        }
        assert!(
            start.elapsed() < Duration::from_secs(10),
            "/ready still {got} {body}"
        );
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
}

/// Chat completions `mock` received.
async fn chats(mock: &Process) -> u64 {
    let stats = get_json(&mock.url("/mock/stats")).await;
    stats["by_path"]["/v1/chat/completions"]
        .as_u64()
        .unwrap_or(0)
}

fn ask(model: &str, text: &str) -> Value {
    json!({"model": model, "messages": [{"role": "user", "content": text}]})
}

#[tokio::test]
async fn a_path_probe_marks_an_outage_and_its_recovery() {
    let down = mock(&["--error-rate", "1", "--error-status", "503"]);
    let up = mock(&[]);
    let probe = "    health_check: { path: /models, interval: 50ms, timeout: 1s, unhealthy_threshold: 2, healthy_threshold: 2 }\n";
    let gw = health_gateway(
        &format!(
            "{}{}",
            provider("down", &down, probe),
            provider("up", &up, "")
        ),
        "  solo:\n    deployments: [{ provider: down, model: mock-1 }]\n  m:\n    strategy: round_robin\n    deployments: [{ provider: down, model: mock-1 }, { provider: up, model: mock-1 }]\n",
        "",
    );
    let body = wait_ready(&gw, 503).await;
    assert_eq!(body["status"], "unhealthy");
    assert_eq!(body["models"], json!(["solo"]));
    assert_eq!(
        body["deployments"]["solo"]["down/mock-1"], "unhealthy",
        "{body}"
    );
    assert_eq!(body["deployments"]["m"]["up/mock-1"], "healthy", "{body}");
    let solo = deployment(&gw, "solo", "down/mock-1").await;
    assert_eq!(solo["health"], "unhealthy", "{solo}");
    assert_eq!(solo["probe"]["ok"], false, "{solo}");
    assert!(solo["probe"]["latency_ms"].as_f64().is_some(), "{solo}");
    assert_eq!(deployment(&gw, "m", "up/mock-1").await["health"], "healthy");
    let metrics = metrics(&gw).await;
    let gauge = |model: &str, deployment: &str| {
        metrics
            .lines()
            .find(|l| {
                l.starts_with("switchyard_deployment_healthy{")
                    && l.contains(&format!("model=\"{model}\""))
                    && l.contains(&format!("deployment=\"{deployment}\""))
            })
            .map(|l| l.rsplit(' ').next().unwrap().to_owned())
    };
    assert_eq!(
        gauge("solo", "down/mock-1").as_deref(),
        Some("0"),
        "{metrics}"
    );
    assert_eq!(gauge("m", "up/mock-1").as_deref(), Some("1"), "{metrics}");
    gw.wait_for_log(&["deployment unhealthy", "solo", "down/mock-1"]);

    // Traffic avoids the unhealthy deployment.
    for i in 0..10 {
        let response = post(&gw, "/v1/chat/completions", &ask("m", &format!("q{i}"))).await;
        assert_eq!(response.status(), 200);
    }
    assert_eq!(chats(&down).await, 0);
    assert_eq!(chats(&up).await, 10);

    set_faults(&down, json!({"error_rate": 0})).await;
    let body = wait_ready(&gw, 200).await;
    assert_eq!(body["status"], "ready");
    assert!(body.get("models").is_none(), "{body}");
    assert_eq!(
        deployment(&gw, "solo", "down/mock-1").await["health"],
        "healthy"
    );
    gw.wait_for_log(&["deployment healthy", "solo", "down/mock-1"]);
}

#[tokio::test]
async fn chat_probes_reach_each_deployment_with_one_token_in_its_dialect() {
    let upstream = mock(&[]);
    let chat_probe = "    health_check: { chat: true, interval: 50ms }\n";
    let root = upstream.url("");
    let providers = format!(
        "{}  claude:\n    kind: anthropic\n    base_url: {root}\n    api_key: k\n{chat_probe}  gem:\n    kind: gemini\n    base_url: {root}\n    api_key: k\n{chat_probe}",
        provider("oa", &upstream, chat_probe)
    );
    let gw = health_gateway(
        &providers,
        "  m:\n    deployments: [{ provider: oa, model: mock-1 }, { provider: oa, model: mock-2 }, { provider: claude, model: claude-mock }, { provider: gem, model: gem-mock }]\n",
        "",
    );
    let wanted = [
        "/v1/chat/completions mock-1",
        "/v1/chat/completions mock-2",
        "/v1/messages claude-mock",
        "/v1beta/models/gem-mock:generateContent -",
    ];
    let start = Instant::now();
    let seen = loop {
        let seen: Vec<(String, Value)> = received(&upstream)
            .await
            .into_iter()
            .map(|r| {
                let body = r["body"].clone();
                let model = body["model"].as_str().unwrap_or("-").to_owned();
                (format!("{} {model}", r["path"].as_str().unwrap()), body)
            })
            .collect();
        if wanted.iter().all(|w| seen.iter().any(|(k, _)| k == w)) {
            break seen;
        }
        assert!(start.elapsed() < Duration::from_secs(10), "{seen:?}");
        tokio::time::sleep(Duration::from_millis(25)).await;
    };
    for (key, body) in &seen {
        let tokens = if key.starts_with("/v1beta") {
            &body["generationConfig"]["maxOutputTokens"]
        } else {
            &body["max_tokens"]
        };
        assert_eq!(*tokens, 1, "{key}: {body}");
        assert!(body.to_string().contains("ping"), "{key}: {body}");
    }
    let probed = deployment(&gw, "m", "claude/claude-mock").await;
    assert_eq!(probed["probe"]["ok"], true, "{probed}");
    assert_eq!(probed["health"], "healthy");
    // Probes are not traffic.
    assert_eq!(probed["circuit"], "closed");
}

/// The outlier settings of the ejection tests, with the breaker kept out of the way.
fn outlier(percent: u32, ejection: &str) -> String {
    format!(
        "circuit_breaker: {{ consecutive_failures: 1000, min_requests: 100000 }}\nretries: {{ attempts: 2, budget_min: 1000 }}\nhealth_checks:\n  outlier: {{ consecutive_failures: 3, ejection: {ejection}, max_ejection: {ejection}, max_ejected_percent: {percent} }}\n"
    )
}

#[tokio::test]
async fn live_failures_eject_a_deployment_until_its_time_passes() {
    let bad = mock(&["--error-rate", "1", "--error-status", "500"]);
    let good = mock(&[]);
    let gw = health_gateway(
        &format!(
            "{}{}",
            provider("bad", &bad, ""),
            provider("good", &good, "")
        ),
        "  m:\n    strategy: round_robin\n    deployments: [{ provider: bad, model: mock-1 }, { provider: good, model: mock-1 }]\n",
        &outlier(50, "2s"),
    );
    let mut sent = 0;
    while chats(&bad).await < 3 {
        let response = post(&gw, "/v1/chat/completions", &ask("m", &format!("a{sent}"))).await;
        assert_eq!(response.status(), 200);
        sent += 1;
        assert!(sent < 50, "the bad deployment got no traffic");
    }
    let ejected = deployment(&gw, "m", "bad/mock-1").await;
    assert_eq!(ejected["health"], "ejected", "{ejected}");
    let left = ejected["ejected_for_ms"].as_u64().unwrap();
    assert!(left > 0 && left <= 2000, "{ejected}");
    gw.wait_for_log(&[
        "deployment ejected",
        "bad/mock-1",
        "consecutive live failures",
    ]);
    let (status, _) = ready(&gw).await;
    assert_eq!(status, 200, "the good deployment keeps the model ready");

    for i in 0..20 {
        let response = post(&gw, "/v1/chat/completions", &ask("m", &format!("b{i}"))).await;
        assert_eq!(response.status(), 200);
    }
    assert_eq!(chats(&bad).await, 3, "an ejected deployment gets nothing");

    tokio::time::sleep(Duration::from_millis(2100)).await;
    for i in 0..4 {
        let response = post(&gw, "/v1/chat/completions", &ask("m", &format!("c{i}"))).await;
        assert_eq!(response.status(), 200);
    }
    assert!(chats(&bad).await > 3, "back in rotation after the ejection");
    gw.wait_for_log(&["back in rotation", "bad/mock-1", "ejection time passed"]);
}

#[tokio::test]
async fn max_ejected_percent_keeps_the_last_deployment_in() {
    let one = mock(&["--error-rate", "1", "--error-status", "500"]);
    let two = mock(&["--error-rate", "1", "--error-status", "500"]);
    let gw = health_gateway(
        &format!("{}{}", provider("one", &one, ""), provider("two", &two, "")),
        "  m:\n    strategy: round_robin\n    deployments: [{ provider: one, model: mock-1 }, { provider: two, model: mock-1 }]\n",
        &outlier(50, "30s"),
    );
    for i in 0..10 {
        let response = post(&gw, "/v1/chat/completions", &ask("m", &format!("a{i}"))).await;
        assert!(response.status().is_server_error());
    }
    let states = [
        deployment(&gw, "m", "one/mock-1").await["health"].clone(),
        deployment(&gw, "m", "two/mock-1").await["health"].clone(),
    ];
    assert!(
        states.contains(&json!("ejected")) && states.contains(&json!("healthy")),
        "{states:?}"
    );
    let (kept, out) = if states[0] == "healthy" {
        (&one, &two)
    } else {
        (&two, &one)
    };
    let (kept_before, out_before) = (chats(kept).await, chats(out).await);
    for i in 0..4 {
        post(&gw, "/v1/chat/completions", &ask("m", &format!("b{i}"))).await;
    }
    assert_eq!(chats(out).await, out_before);
    let kept_after = chats(kept).await;
    assert!(
        kept_after >= kept_before + 4,
        "{kept_before} -> {kept_after}"
    );
}

#[tokio::test]
async fn when_every_deployment_is_unhealthy_traffic_still_goes_to_them() {
    let upstream = mock(&[]);
    // The mock answers 404 on this path: the probe fails, chat requests do not.
    let probe =
        "    health_check: { path: /no-such-path, interval: 50ms, unhealthy_threshold: 1 }\n";
    let gw = health_gateway(
        &provider("up", &upstream, probe),
        "  m:\n    deployments: [{ provider: up, model: mock-1 }, { provider: up, model: mock-2 }]\n",
        "",
    );
    let body = wait_ready(&gw, 503).await;
    assert_eq!(body["status"], "unhealthy");
    assert_eq!(body["models"], json!(["m"]));
    for i in 0..4 {
        let response = post(&gw, "/v1/chat/completions", &ask("m", &format!("p{i}"))).await;
        assert_eq!(response.status(), 200);
    }
    assert_eq!(chats(&upstream).await, 4);
}

#[tokio::test]
async fn promtool_accepts_the_metrics_of_a_gateway_that_served_traffic() {
    let upstream = mock(&[]);
    let failing = mock(&["--error-rate", "1"]);
    let probe = "    health_check: { path: /models, interval: 50ms }\n";
    let gw = health_gateway(
        &format!(
            "{}{}",
            provider("up", &upstream, probe),
            provider("failing", &failing, "")
        ),
        "  m:\n    deployments: [{ provider: up, model: mock-1 }, { provider: failing, model: mock-1 }]\n",
        "",
    );
    for i in 0..6 {
        post(&gw, "/v1/chat/completions", &ask("m", &format!("t{i}"))).await;
    }
    let metrics = metrics(&gw).await;
    assert!(
        metrics.contains("switchyard_deployment_healthy"),
        "{metrics}"
    );
    promtool(&["check", "metrics"], Some(&metrics));
}

#[tokio::test]
async fn ready_can_leave_unhealthy_models_to_routing() {
    let down = mock(&["--error-rate", "1"]);
    let gw = health_gateway(
        &provider(
            "down",
            &down,
            "    health_check: { path: /models, interval: 50ms, unhealthy_threshold: 2 }\n",
        ),
        "  m:\n    deployments: [{ provider: down, model: mock-1 }]\n",
        "health_checks: { ready_needs_every_model: false }\n",
    );
    let start = Instant::now();
    loop {
        let (status, body) = ready(&gw).await;
        assert_eq!(status, 200, "{body}");
        if body["unhealthy_models"] == json!(["m"]) {
            break;
        }
        assert!(start.elapsed() < Duration::from_secs(10), "{body}");
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
}
