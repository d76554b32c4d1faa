//! The per-request metrics, black-box: known traffic (answered chats with
//! known usage, a stream, a cache hit, a 401, an upstream 500, an unknown
//! model) gives exact counters, token and cost sums and histogram counts,
//! in a scrape that `promtool check metrics` accepts; the alert rules and
//! their tests pass `promtool`, and the alert rules and the Grafana
//! dashboard name only metrics the gateway exports.

use std::collections::BTreeSet;
use std::time::{Duration, Instant};

use reqwest::header::HeaderMap;
use serde_json::{Value, json};

use crate::harness::*;

/// A gateway in front of `mock`: `gpt-4.1` on provider `up` at 2 and 8 USD
/// per million input and output tokens, one attempt per request, the
/// response cache and the usage log on.
fn world(mock: &Process) -> Process {
    gateway(&format!(
        r#"
server:
  listen: 127.0.0.1:0
auth:
  mode: keys
keys:
  - name: tests
    key: {CLIENT_KEY}
retries: {{ attempts: 1 }}
cache: {{ backend: memory }}
usage: {{ flush_interval: 100ms }}
providers:
  up: {{ kind: openai, base_url: "{}", api_key: {UPSTREAM_KEY} }}
models:
  gpt-4.1:
    deployments:
      - {{ provider: up, model: mock-1, price: {{ input: 2.0, output: 8.0 }} }}
"#,
        mock.url("/v1")
    ))
}

/// The token counts of answers, by `switchyard_tokens_total` direction, and
/// their cost in micro-USD at 2/8 USD per million (rounded up per request).
#[derive(Debug, Default)]
struct Spent {
    input: u64,
    output: u64,
    cached_input: u64,
    cache_write: u64,
    reasoning: u64,
    micros: u64,
}

impl Spent {
    /// Adds an answer's OpenAI `usage`.
    fn add(&mut self, usage: &Value) {
        let count = |v: &Value| v.as_u64().unwrap_or(0);
        let (input, output) = (
            count(&usage["prompt_tokens"]),
            count(&usage["completion_tokens"]),
        );
        assert!(input > 0 && output > 0, "{usage}");
        self.input += input;
        self.output += output;
        self.cached_input += count(&usage["prompt_tokens_details"]["cached_tokens"]);
        self.cache_write += count(&usage["prompt_tokens_details"]["cache_creation_tokens"]);
        self.reasoning += count(&usage["completion_tokens_details"]["reasoning_tokens"]);
        self.micros += (input * 2_000_000 + output * 8_000_000).div_ceil(1_000_000);
    }
}

/// A chat of `text` to `model` with `key`: its status, headers and body.
async fn ask(gw: &Process, key: &str, model: &str, text: &str) -> (u16, HeaderMap, Value) {
    let body = json!({ "model": model, "messages": [{ "role": "user", "content": text }] });
    crate::stores::ask(gw, key, &body).await
}

/// The value of the series `series` (name and labels, as rendered) in `text`.
fn value(text: &str, series: &str) -> Option<String> {
    text.lines()
        .find_map(|line| line.strip_prefix(series)?.strip_prefix(' '))
        .map(str::to_owned)
}

/// `series` in `text`, which must be there.
fn must(text: &str, series: &str) -> String {
    value(text, series).unwrap_or_else(|| panic!("no `{series}` in:\n{text}"))
}

/// The scrape once `series` reads `expected` (requests are counted as they
/// end, which may be just after the client has read the answer).
async fn scrape_when(gw: &Process, series: &str, expected: &str) -> String {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let text = metrics(gw).await;
        if value(&text, series).as_deref() == Some(expected) {
            return text;
        }
        assert!(
            Instant::now() < deadline,
            "`{series}` never read {expected}:\n{text}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[tokio::test]
async fn known_traffic_gives_exact_counters_sums_and_counts() {
    let mock = mock(&[]);
    let gw = world(&mock);
    let mut spent = Spent::default();
    for i in 0..3 {
        let (status, _, body) = ask(&gw, CLIENT_KEY, "gpt-4.1", &format!("question {i}")).await;
        assert_eq!(status, 200, "{body}");
        spent.add(&body["usage"]);
    }
    spent.add(&stream_usage(&gw, CLIENT_KEY, "a streamed question", Value::Null).await);
    // The first question again: the cache answers, no provider is asked.
    let (status, headers, _) = ask(&gw, CLIENT_KEY, "gpt-4.1", "question 0").await;
    assert_eq!(
        (status, &headers["x-switchyard-cache"]),
        (200, &"hit".parse().unwrap())
    );
    let (status, _, _) = ask(&gw, "sk-not-a-key", "gpt-4.1", "who am I").await;
    assert_eq!(status, 401);
    let (status, _, _) = ask(&gw, CLIENT_KEY, "no-such-model", "anyone there").await;
    assert_eq!(status, 404);
    set_faults(&mock, json!({ "error_rate": 1.0, "error_status": 500 })).await;
    let (status, headers, body) = ask(&gw, CLIENT_KEY, "gpt-4.1", "a failing question").await;
    set_faults(&mock, json!({ "error_rate": 0.0 })).await;
    assert_eq!(status, 502, "{body}");
    assert_eq!(headers["x-switchyard-attempts"], "1");

    let series = |labels: &str| format!("switchyard_requests_total{{{labels}}}");
    let text = scrape_when(
        &gw,
        &series(r#"model="gpt-4.1",provider="up",status="502",error_type="upstream_5xx""#),
        "1",
    )
    .await;
    for (labels, count) in [
        (
            r#"model="gpt-4.1",provider="up",status="200",error_type="none""#,
            "4",
        ),
        (
            r#"model="gpt-4.1",provider="cache",status="200",error_type="none""#,
            "1",
        ),
        (
            r#"model="none",provider="none",status="401",error_type="auth""#,
            "1",
        ),
        (
            r#"model="other",provider="none",status="404",error_type="client_error""#,
            "1",
        ),
    ] {
        assert_eq!(must(&text, &series(labels)), count, "{labels}");
    }
    let requests: u64 = text
        .lines()
        .filter(|line| line.starts_with("switchyard_requests_total{"))
        .map(|line| line.rsplit(' ').next().unwrap().parse::<u64>().unwrap())
        .sum();
    assert_eq!(requests, 8, "every request counted once:\n{text}");

    // Tokens and cost: the sums of the answers' usage, at the configured price.
    for (direction, sum) in [
        ("input", spent.input),
        ("output", spent.output),
        ("cached_input", spent.cached_input),
        ("cache_write", spent.cache_write),
        ("reasoning", spent.reasoning),
    ] {
        let line = format!(r#"switchyard_tokens_total{{model="gpt-4.1",direction="{direction}"}}"#);
        assert_eq!(must(&text, &line), sum.to_string(), "{direction}");
    }
    assert_eq!(
        must(
            &text,
            r#"switchyard_cost_usd_total{model="gpt-4.1",provider="up"}"#
        ),
        format!(
            "{}.{:06}",
            spent.micros / 1_000_000,
            spent.micros % 1_000_000
        )
    );

    // Histograms: one value per request (every request's duration; the
    // stream's time to first token and per output token; the gateway's own
    // time of each answer from the provider; each attempt by its outcome).
    for (series, count) in [
        (
            r#"switchyard_request_duration_seconds_count{model="gpt-4.1"}"#,
            "6",
        ),
        (
            r#"switchyard_request_duration_seconds_count{model="none"}"#,
            "1",
        ),
        (
            r#"switchyard_request_duration_seconds_count{model="other"}"#,
            "1",
        ),
        (
            r#"switchyard_time_to_first_token_seconds_count{model="gpt-4.1"}"#,
            "1",
        ),
        (
            r#"switchyard_time_per_output_token_seconds_count{model="gpt-4.1"}"#,
            "1",
        ),
        ("switchyard_overhead_seconds_count", "4"),
        (
            r#"switchyard_upstream_duration_seconds_count{provider="up",outcome="ok"}"#,
            "4",
        ),
        (
            r#"switchyard_upstream_duration_seconds_count{provider="up",outcome="error"}"#,
            "1",
        ),
        (
            r#"switchyard_upstream_duration_seconds_count{provider="up",outcome="refused"}"#,
            "0",
        ),
    ] {
        assert_eq!(must(&text, series), count, "{series}");
    }
    assert_eq!(
        must(
            &text,
            r#"switchyard_request_duration_seconds_bucket{model="gpt-4.1",le="+Inf"}"#
        ),
        "6"
    );

    promtool(&["check", "metrics"], Some(&text));
}

/// The metric names a scrape shows (a histogram's with its series' suffixes).
fn exported(text: &str) -> BTreeSet<String> {
    let mut names = BTreeSet::new();
    for line in text.lines() {
        let Some(rest) = line.strip_prefix("# TYPE ") else {
            continue;
        };
        let mut words = rest.split(' ');
        let (Some(name), Some(kind)) = (words.next(), words.next()) else {
            continue;
        };
        names.insert(name.to_owned());
        if kind == "histogram" {
            for suffix in ["_bucket", "_sum", "_count"] {
                names.insert(format!("{name}{suffix}"));
            }
        }
    }
    names
}

/// Every `switchyard_…` name in `text`.
fn referenced(text: &str) -> BTreeSet<String> {
    let mut names = BTreeSet::new();
    let mut rest = text;
    while let Some(at) = rest.find("switchyard_") {
        let name: String = rest[at..]
            .chars()
            .take_while(|c| c.is_ascii_alphanumeric() || *c == '_')
            .collect();
        rest = &rest[at + name.len()..];
        names.insert(name);
    }
    names
}

/// Every PromQL expression of a Grafana dashboard (its panels' targets).
fn expressions(value: &Value, out: &mut Vec<String>) {
    match value {
        Value::Object(map) => {
            if let Some(Value::String(expr)) = map.get("expr") {
                out.push(expr.clone());
            }
            map.values().for_each(|v| expressions(v, out));
        }
        Value::Array(items) => items.iter().for_each(|v| expressions(v, out)),
        _ => {}
    }
}

#[tokio::test]
async fn alert_rules_and_dashboard_use_only_exported_metrics() {
    promtool(&["check", "rules", "deploy/prometheus/alerts.yml"], None);
    promtool(
        &["test", "rules", "deploy/prometheus/alerts.test.yml"],
        None,
    );

    let mock = mock(&[]);
    let gw = world(&mock);
    let exported = exported(&metrics(&gw).await);

    let alerts = std::fs::read_to_string(repo_root().join("deploy/prometheus/alerts.yml")).unwrap();
    let in_alerts = referenced(&alerts);
    assert!(in_alerts.len() >= 5, "{in_alerts:?}");
    let unknown: Vec<_> = in_alerts.difference(&exported).collect();
    assert!(
        unknown.is_empty(),
        "the alert rules name metrics the gateway does not export: {unknown:?}"
    );

    let text = std::fs::read_to_string(repo_root().join("deploy/grafana/switchyard.json")).unwrap();
    let dashboard: Value = serde_json::from_str(&text).expect("the dashboard is JSON");
    assert!(dashboard["panels"].as_array().is_some_and(|p| p.len() >= 9));
    let mut exprs = Vec::new();
    expressions(&dashboard, &mut exprs);
    let in_dashboard: BTreeSet<String> = exprs.iter().flat_map(|e| referenced(e)).collect();
    for needed in [
        "switchyard_requests_total",
        "switchyard_request_duration_seconds_bucket",
        "switchyard_time_to_first_token_seconds_bucket",
        "switchyard_tokens_total",
        "switchyard_cost_usd_total",
        "switchyard_cache_requests_total",
        "switchyard_circuit_state",
        "switchyard_usage_records_dropped_total",
    ] {
        assert!(
            in_dashboard.contains(needed),
            "the dashboard shows no {needed}"
        );
    }
    let unknown: Vec<_> = in_dashboard.difference(&exported).collect();
    assert!(
        unknown.is_empty(),
        "the dashboard names metrics the gateway does not export: {unknown:?}"
    );
}
