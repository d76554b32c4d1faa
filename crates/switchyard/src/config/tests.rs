#![allow(clippy::unwrap_used)]

use std::collections::HashMap;

use super::validate::check;
use super::*;

fn env(pairs: &[(&str, &str)]) -> HashMap<String, String> {
    pairs
        .iter()
        .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
        .collect()
}

fn problems(text: &str) -> Vec<String> {
    let (_, list) = check(text, env(&[]), false);
    list.into_iter()
        .map(|p| {
            let label = if p.is_error() { "" } else { "warning: " };
            match p.place {
                Some(place) => format!("{}:{} {label}{}", place.line, place.column, p.message),
                None => format!("{label}{}", p.message),
            }
        })
        .collect()
}

const DESIGN_SAMPLE: &str = r#"
server:
  listen: 127.0.0.1:8080
  admin_key: ${SWITCHYARD_ADMIN_KEY:-}   # empty: admin API off
auth:
  mode: open          # open (loopback only) | keys
keys:
  - name: app
    key: ${APP_KEY:-sk-app-test}
providers:
  relay:
    kind: openai
    base_url: ${RELAY_BASE_URL:-https://api.holysheep.ai/v1}
    api_key: ${RELAY_API_KEY}
  claude:
    kind: anthropic
    base_url: https://api.anthropic.com
    api_key: ${ANTHROPIC_API_KEY}
models:
  gpt-4.1:
    deployments:
      - { provider: relay, model: gpt-4.1, price: { input: 8.0, output: 24.0 } }
  claude-sonnet-4.5:
    deployments:
      - { provider: claude, model: claude-sonnet-4-5 }
  deepseek-v3:
    strategy: latency
    deployments:
      - { provider: relay, model: deepseek-v3.2, weight: 80, price: { input: 0.42, output: 1.68 } }
    fallbacks: [gpt-4.1]
"#;

#[test]
fn the_design_sample_is_valid_and_interpolated() {
    let (config, list) = check(DESIGN_SAMPLE, env(&[("RELAY_API_KEY", "sk-relay")]), false);
    let config = config.unwrap();
    assert!(list.iter().all(|p| !p.is_error()), "{list:?}");
    assert_eq!(config.server.listen.to_string(), "127.0.0.1:8080");
    assert!(config.server.admin_key.is_none());
    assert_eq!(config.auth, AuthMode::Open);
    assert_eq!(config.keys[0].name, "app");
    use secrecy::ExposeSecret;
    assert_eq!(config.keys[0].key.expose_secret(), "sk-app-test");
    let relay = &config.providers["relay"];
    assert_eq!(relay.base_url, "https://api.holysheep.ai/v1");
    assert_eq!(relay.api_keys[0].expose_secret(), "sk-relay");
    assert!(config.providers["claude"].api_keys.is_empty());
    let model = &config.models["deepseek-v3"];
    assert_eq!(model.strategy, Strategy::Latency);
    assert_eq!(model.deployments[0].weight, 80);
    assert_eq!(model.fallbacks, vec!["gpt-4.1".to_owned()]);
    assert_eq!(config.server.max_body_bytes, 10 << 20);
    assert_eq!(relay.timeouts.connect, Duration::from_secs(5));
}

#[test]
fn every_problem_is_reported_with_its_place() {
    let text = "\
server:
  listen: 127.0.0.1:8080
  max_body_byte: 1MiB
retires: 3
auth:
  mode: opn
providers:
  up:
    kind: opnai
    base_url: http://127.0.0.1:1/v1
    timeouts: { connect: soon }
  down:
    kind: openai
models:
  m:
    deployments:
      - { provider: upp, model: x }
    fallbacks: [nope]
";
    let list = problems(text);
    let expected = [
        "3:3 unknown key `max_body_byte`, did you mean `max_body_bytes`?",
        "4:1 unknown key `retires`, did you mean `retries`?",
        "6:3 unknown value for `mode` `opn`, did you mean `open`?",
        "9:5 unknown value for `kind` `opnai`, did you mean `openai`?",
        "11:17 `connect`: invalid duration `soon`",
        "12:3 missing key `base_url`",
        "17:9 unknown provider `upp`, did you mean `up`?",
        "18:5 unknown model `nope` (expected one of: m)",
    ];
    assert_eq!(list.len(), expected.len(), "{list:#?}");
    for (got, want) in list.iter().zip(expected) {
        assert!(got.starts_with(want), "got {got:?}, want {want:?}");
    }
}

#[test]
fn telemetry_is_checked_with_every_reason() {
    let text = "auth: { mode: open }\ntelemetry:\n  log_bodies: true\n  log_bodies_max: 0\n  traces:\n    endpoint: collector:4318\n    sample_ratio: 2\n    queue: 0\n    timeout: 0s\n";
    assert_eq!(
        problems(text),
        vec![
            "4:3 `log_bodies_max` must be at least 1 byte".to_owned(),
            "6:5 `endpoint` must start with `http://` or `https://`".to_owned(),
            "7:5 `sample_ratio` must be from 0 to 1".to_owned(),
            "8:5 `queue` must be at least 1".to_owned(),
            "9:5 `timeout` must be more than 0".to_owned(),
        ]
    );
    let ok = "auth: { mode: open }\ntelemetry:\n  log_bodies: true\n  traces: { endpoint: 'http://127.0.0.1:4318/v1/traces', headers: { authorization: Bearer x } }\n";
    let config = check(ok, env(&[]), false).0.unwrap();
    assert!(config.telemetry.log_bodies);
    assert_eq!(config.telemetry.kept_bodies(), Some(64 << 10));
    let traces = config.telemetry.traces.unwrap();
    assert_eq!(traces.service_name, "switchyard");
    assert_eq!(traces.headers.len(), 1);
    let off = check("auth: { mode: open }\n", env(&[]), false).0.unwrap();
    assert!(!off.telemetry.log_bodies && off.telemetry.traces.is_none());
    assert_eq!(off.telemetry.kept_bodies(), None);
    let content = "auth: { mode: open }\ntelemetry:\n  log_bodies_max: 1KiB\n  traces: { endpoint: 'http://127.0.0.1:4318/v1/traces', content: true }\n";
    let content = check(content, env(&[]), false).0.unwrap();
    assert!(!content.telemetry.log_bodies);
    assert_eq!(content.telemetry.kept_bodies(), Some(1024));
}

#[test]
fn prices_of_cached_reasoning_tokens_are_optional_and_checked() {
    let text = "auth: { mode: open }\nproviders:\n  m: { kind: mock }\nmodels:\n  x:\n    deployments:\n      - { provider: m, model: a, price: { input: 3, output: 15, cached_input: 0.3, cache_write: 3.75, reasoning: 15 } }\n      - { provider: m, model: b, price: { input: 3, output: 15 } }\n      - { provider: m, model: c, price: { input: 3, output: 15, cached_input: -1, reasoning: -0.5 } }\n";
    assert_eq!(
        problems(text),
        [
            "9:65 `price.cached_input` must be non-negative USD per million tokens",
            "9:83 `price.reasoning` must be non-negative USD per million tokens",
        ]
    );
    let config = from_yaml(&text.replace("-1, reasoning: -0.5", "0.3"));
    let price = config.models["x"].deployments[0].price.unwrap();
    assert_eq!(
        (price.cached_input, price.cache_write, price.reasoning),
        (Some(0.3), Some(3.75), Some(15.0))
    );
    assert_eq!(config.prices.version(), "2026-12-01");
}

#[test]
fn a_price_list_file_replaces_the_built_in_one() {
    let dir = tempfile::tempdir().unwrap();
    let good = dir.path().join("good.yaml");
    std::fs::write(
        &good,
        "version: ours\nmodels:\n  - { provider: p, model: m, input: 1, output: 2 }\n",
    )
    .unwrap();
    let bad = dir.path().join("bad.yaml");
    std::fs::write(
        &bad,
        "version: ours\nmodels:\n  - { provider: p, model: m, input: 1 }\n",
    )
    .unwrap();
    let config = |file: &std::path::Path| {
        format!(
            "auth: {{ mode: open }}\npricing:\n  file: {}\n",
            file.display()
        )
    };
    let (ours, _) = check(&config(&good), env(&[]), false);
    let ours = ours.unwrap();
    assert_eq!(ours.prices.version(), "ours");
    assert_eq!(ours.prices.price("p/m").unwrap().base().output, 2_000_000);
    let list = problems(&config(&bad));
    assert_eq!(
        list,
        [format!(
            "3:3 `pricing.file`: {}:3:5: missing key `output`",
            bad.display()
        )]
    );
    let list = problems("auth: { mode: open }\npricing: { file: /no/such/prices.yaml }\n");
    assert_eq!(list.len(), 1);
    assert!(
        list[0].starts_with("2:12 `pricing.file`: /no/such/prices.yaml: cannot read the file"),
        "{list:?}"
    );
}

#[test]
fn cache_settings_are_checked() {
    let list = problems(
        "auth: { mode: open }\ncache:\n  backend: redis\n  ttl: 2d\n  max_ttl: 1d\n  idle_ttl: 1m\n  max_bytes: 1KiB\n  coalesce_wait: 0s\n  scope: everyone\n",
    );
    let expected = [
        "8:3 `coalesce_wait`",
        "9:3 unknown value for `scope` `everyone`",
    ];
    for want in expected {
        assert!(
            list.iter().any(|p| p.starts_with(want)),
            "{want}: {list:#?}"
        );
    }
    for want in [
        "a `redis` cache needs `redis.url`",
        "`ttl` must be at most `max_ttl`",
        "`idle_ttl` applies to the memory tier",
        "`max_bytes` must be at least 1MiB",
    ] {
        assert!(list.iter().any(|p| p.contains(want)), "{want}: {list:#?}");
    }
    assert!(problems("auth: { mode: open }\ncache: { backend: memory }\n").is_empty());
}

#[test]
fn open_auth_is_refused_off_loopback() {
    let list = problems("server: { listen: 0.0.0.0:8080 }\nauth: { mode: open }\n");
    assert_eq!(list.len(), 1, "{list:?}");
    assert!(
        list[0].starts_with("2:9 `auth.mode: open` is only allowed on a loopback address"),
        "{list:?}"
    );
}

#[test]
fn zero_sizes_and_an_idle_timeout_of_zero_are_refused() {
    let list = problems("server:\n  max_body_bytes: 0\n  idle_timeout: 0s\nauth: { mode: open }\n");
    assert_eq!(
        list,
        [
            "2:3 `max_body_bytes` must be more than 0",
            "3:3 `idle_timeout` must be more than 0"
        ]
    );
}

#[test]
fn client_read_timeouts_have_defaults_and_must_be_more_than_zero() {
    let (config, _) = check("auth: { mode: open }\n", env(&[]), false);
    let server = config.unwrap().server;
    assert_eq!(server.header_read_timeout, Duration::from_secs(10));
    assert_eq!(server.body_timeout, Duration::from_secs(30));
    let list =
        problems("server:\n  header_read_timeout: 0s\n  body_timeout: 0s\nauth: { mode: open }\n");
    assert_eq!(
        list,
        [
            "2:3 `header_read_timeout` must be more than 0",
            "3:3 `body_timeout` must be more than 0"
        ]
    );
}

#[test]
fn yaml_syntax_errors_have_a_place() {
    let list = problems("server:\n  listen: [1,\n");
    assert_eq!(list.len(), 1);
    assert!(
        list[0].starts_with("2:") || list[0].starts_with("3:"),
        "{list:?}"
    );
}

#[test]
fn required_variables_fail_clearly() {
    let list = problems("server:\n  listen: ${LISTEN:?set LISTEN}\n");
    assert_eq!(list.len(), 1, "{list:?}");
    assert!(list[0].contains("LISTEN"), "{list:?}");
}

#[test]
fn the_built_in_default_keeps_only_configured_providers() {
    let (config, list) = check(BUILT_IN, env(&[]), true);
    let config = config.unwrap();
    assert!(list.is_empty(), "{list:?}");
    assert_eq!(config.providers.keys().collect::<Vec<_>>(), ["mock"]);
    assert_eq!(config.models.keys().collect::<Vec<_>>(), ["mock"]);
    assert_eq!(config.auth, AuthMode::Open);

    let (config, _) = check(
        BUILT_IN,
        env(&[("DEEPSEEK_API_KEY", "sk-d"), ("OPENAI_API_KEY", "sk-o")]),
        true,
    );
    let config = config.unwrap();
    assert_eq!(
        config.providers.keys().collect::<Vec<_>>(),
        ["deepseek", "mock", "openai"]
    );
    let gpt = &config.models["gpt-4.1"];
    assert_eq!(gpt.deployments.len(), 1);
    assert_eq!(gpt.deployments[0].provider, "openai");
    assert!(config.models.contains_key("deepseek-chat"));
    assert!(!config.models.contains_key("claude-sonnet-4.5"));
}

#[test]
fn durations_past_a_year_and_duplicate_deployments_are_refused() {
    let text = "\
auth: { mode: open }
server: { body_timeout: 400d }
providers:
  up: { kind: openai, base_url: 'http://127.0.0.1:1/v1', api_key: k }
models:
  m:
    deployments:
      - { provider: up, model: x }
      - { provider: up, model: x, weight: 3 }
";
    let list = problems(text);
    assert_eq!(list.len(), 2, "{list:#?}");
    assert!(
        list[0].starts_with("2:11 `body_timeout`: the duration `400d` is longer than a year"),
        "{list:?}"
    );
    assert!(list[1].contains("`up/x` twice"), "{list:?}");
}

/// A valid config but for provider `up`, whose `base_url` is on line 5 and
/// whose other keys are `extra` (indented lines).
fn with_base_url(base_url: &str, extra: &str) -> String {
    format!(
        "auth: {{ mode: open }}\nproviders:\n  up:\n    kind: openai\n    base_url: {base_url}\n    api_key: k\n{extra}models:\n  m:\n    deployments: [{{ provider: up, model: x }}]\n"
    )
}

#[test]
fn credentials_in_a_base_url_are_refused_without_being_echoed() {
    let list = problems(&with_base_url("https://bob:s3cret@api.example.com/v1", ""));
    assert_eq!(
        list,
        [
            "5:5 provider `up`: `base_url` `https://***@api.example.com/v1` has credentials in it; move them into `api_key` (the URL is logged and shown in /admin)"
        ]
    );
    let list = problems(&with_base_url("ftp://bob:s3cret@api.example.com", ""));
    assert_eq!(list.len(), 1, "{list:?}");
    assert!(
        list[0].contains("`ftp://***@api.example.com` is not an http(s) URL"),
        "{list:?}"
    );
    assert!(
        !list[0].contains("s3cret") && !list[0].contains("bob"),
        "{list:?}"
    );
}

#[test]
fn a_metadata_base_url_is_refused_unless_private_networks_are_allowed() {
    for url in [
        "http://169.254.169.254/latest",
        "'http://[fd00:ec2::254]/latest'",
        "http://metadata.google.internal/computeMetadata/v1",
        "http://2852039166/latest",
    ] {
        let (config, list) = check(&with_base_url(url, ""), env(&[]), false);
        assert!(config.is_none(), "{url}");
        assert_eq!(list.len(), 1, "{list:?}");
        assert!(list[0].is_error(), "{list:?}");
        assert!(
            list[0]
                .message
                .starts_with("provider `up`: `base_url` points at `")
                && list[0]
                    .message
                    .contains("a link-local or cloud metadata address"),
            "{list:?}"
        );
    }
    assert_eq!(
        problems(&with_base_url("http://169.254.169.254/latest", "")),
        [
            "5:5 provider `up`: `base_url` points at `169.254.169.254`, a link-local or cloud metadata address where an instance's credentials are served; set `allow_private_networks: true` if that is really meant"
        ]
    );
    let allowed = with_base_url(
        "http://169.254.169.254/latest",
        "    allow_private_networks: true\n",
    );
    let (config, list) = check(&allowed, env(&[]), false);
    assert!(list.is_empty(), "{list:?}");
    assert_eq!(
        config.unwrap().providers["up"].base_url,
        "http://169.254.169.254/latest"
    );
}

#[test]
fn a_private_base_url_is_a_warning_unless_private_networks_are_allowed() {
    let (config, _) = check(
        &with_base_url("http://10.0.0.5:8000/v1", ""),
        env(&[]),
        false,
    );
    assert!(config.is_some(), "a warning leaves the config usable");
    assert_eq!(
        problems(&with_base_url("http://10.0.0.5:8000/v1", "")),
        [
            "5:5 warning: provider `up`: `base_url` points at `10.0.0.5`, on a private network; set `allow_private_networks: true` if that is meant"
        ]
    );
    for url in ["http://192.168.1.20/v1", "'http://[fd12::7]:8000/v1'"] {
        let list = problems(&with_base_url(url, ""));
        assert_eq!(list.len(), 1, "{list:?}");
        assert!(list[0].starts_with("5:5 warning: "), "{list:?}");
    }
    let allowed = with_base_url(
        "http://10.0.0.5:8000/v1",
        "    allow_private_networks: true\n",
    );
    assert_eq!(problems(&allowed), Vec::<String>::new());
}

#[test]
fn loopback_and_public_base_urls_pass_silently() {
    for url in [
        "http://127.0.0.1:8000/v1",
        "http://localhost:11434/v1",
        "'http://[::1]:8000/v1'",
        "https://api.openai.com/v1",
        "https://8.8.8.8/v1",
    ] {
        assert_eq!(
            problems(&with_base_url(url, "")),
            Vec::<String>::new(),
            "{url}"
        );
    }
}

#[test]
fn breakers_judge_a_share_by_default_and_every_old_key_still_works() {
    let config = from_yaml("auth: { mode: open }\n");
    let breaker = config.circuit_breaker;
    assert_eq!(
        (
            breaker.consecutive_failures,
            breaker.failure_rate,
            breaker.margin
        ),
        (0, 0.5, 2.0)
    );
    assert_eq!(breaker.min_requests, 5);
    assert_eq!(breaker.window, Duration::from_secs(10));
    assert_eq!(config.retries.budget_ratio, 0.5);
    let old = "auth: { mode: open }\ncircuit_breaker: { consecutive_failures: 5, failure_rate: 1.0, min_requests: 20, window: 30s, cooldown: 30s }\n";
    assert_eq!(problems(old), Vec::<String>::new());
    assert_eq!(
        problems("auth: { mode: open }\ncircuit_breaker: { margin: 6 }\n"),
        ["2:20 `margin` is standard errors, between 0 and 5 (2: about 95% confidence)"]
    );
}

#[test]
fn in_flight_limits_of_zero_are_refused_and_the_others_kept() {
    let text = "\
auth: { mode: keys }
keys:
  - { name: a, key: sk-a, max_in_flight: 0 }
  - { name: b, key: sk-b, max_in_flight: 20 }
providers:
  up: { kind: openai, base_url: 'http://127.0.0.1:1/v1', api_key: k }
models:
  m:
    max_in_flight: 0
    deployments:
      - { provider: up, model: x, max_in_flight: 0 }
      - { provider: up, model: y, max_in_flight: 50 }
";
    let list = problems(text);
    let no_room = "`max_in_flight` must be at least 1 (leave it out for no limit)";
    assert_eq!(
        list,
        [
            format!("3:5 {no_room}"),
            format!("11:9 {no_room}"),
            format!("9:5 {no_room}"),
        ],
        "{list:#?}"
    );
    let (config, _) = check(&text.replace(": 0", ": 3"), env(&[]), false);
    let config = config.unwrap();
    assert_eq!(config.keys[1].max_in_flight, Some(20));
    let model = &config.models["m"];
    assert_eq!(model.max_in_flight, Some(3));
    assert_eq!(model.deployments[1].max_in_flight, Some(50));
    // Misspelt, it is an unknown key.
    let list = problems(&text.replace("max_in_flight: 0 }", "max_inflight: 1 }"));
    assert!(list.iter().any(|p| p.contains("max_inflight")), "{list:?}");
}
