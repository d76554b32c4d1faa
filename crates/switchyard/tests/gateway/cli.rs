//! `switchyard check`: every problem at once, with places and suggestions.

use std::process::Command;

fn check(yaml: &str) -> (i32, String) {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("bad.yaml");
    std::fs::write(&path, yaml).unwrap();
    let output = Command::new(env!("CARGO_BIN_EXE_switchyard"))
        .args(["check", "--config", path.to_str().unwrap()])
        .output()
        .unwrap();
    let out = String::from_utf8_lossy(&output.stdout).replace(path.to_str().unwrap(), "bad.yaml");
    (output.status.code().unwrap(), out)
}

#[test]
fn check_lists_every_problem_and_exits_1() {
    let (code, out) = check(
        "server:\n  listen: 0.0.0.0:8080\n  shutdown_grace: forever\nauth:\n  mode: open\nproviders:\n  up:\n    kind: openai\n    base_url: http://127.0.0.1:1/v1\n    api_kye: x\nmodels:\n  m:\n    deployments:\n      - { provider: up, model: x, wieght: 2 }\n",
    );
    assert_eq!(code, 1, "{out}");
    let expected = [
        "bad.yaml:3:3: `shutdown_grace`: invalid duration `forever`",
        "bad.yaml:10:5: unknown key `api_kye`, did you mean `api_key`?",
        "bad.yaml:14:35: unknown key `wieght`, did you mean `weight`?",
        "bad.yaml:5:3: `auth.mode: open` is only allowed on a loopback address",
        "bad.yaml:7:3: warning: provider `up` has no `api_key`",
        "bad.yaml: 4 problem(s)",
    ];
    let lines: Vec<&str> = out.lines().collect();
    assert_eq!(lines.len(), expected.len(), "{out}");
    for (line, want) in lines.iter().zip(expected) {
        assert!(line.starts_with(want), "got {line:?}, want {want:?}");
    }
}

#[test]
fn check_accepts_a_valid_file_and_exits_0() {
    let (code, out) = check(
        "auth: { mode: open }\nproviders:\n  m: { kind: mock }\nmodels:\n  x:\n    deployments: [{ provider: m, model: mock-1 }]\n",
    );
    assert_eq!(code, 0, "{out}");
    assert!(
        out.ends_with("bad.yaml: ok (1 providers, 1 models)\n"),
        "{out}"
    );
}

#[test]
fn serve_refuses_an_invalid_config() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("c.yaml");
    std::fs::write(&path, "modles: {}\n").unwrap();
    let output = Command::new(env!("CARGO_BIN_EXE_switchyard"))
        .args(["serve", "--config", path.to_str().unwrap()])
        .output()
        .unwrap();
    assert_eq!(output.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&output.stderr).contains("did you mean `models`?"));
}

#[test]
fn check_refuses_a_version_key_on_the_wrong_kind() {
    let (code, out) = check(
        "auth: { mode: open }\nproviders:\n  up:\n    kind: openai\n    base_url: http://127.0.0.1:1/v1\n    api_key: k\n    anthropic_version: 2023-06-01\n  az:\n    kind: azure\n    base_url: https://x.openai.azure.com\n    api_key: k\n    api_version: 2024-10-21\nmodels:\n  x:\n    max_output_tokens: 0\n    deployments: [{ provider: az, model: gpt }]\n",
    );
    assert_eq!(code, 1, "{out}");
    assert!(
        out.contains("`anthropic_version` applies to `anthropic` providers only"),
        "{out}"
    );
    assert!(
        out.contains("`max_output_tokens` must be at least 1"),
        "{out}"
    );
    assert!(!out.contains("az"), "a valid azure provider: {out}");
}

#[test]
fn check_refuses_an_alias_that_names_another_model() {
    let (code, out) = check(
        "auth: { mode: open }\nproviders:\n  m: { kind: mock }\nmodels:\n  a:\n    aliases: [b]\n    deployments: [{ provider: m, model: mock-1 }]\n  b:\n    deployments: [{ provider: m, model: mock-1 }]\n",
    );
    assert_eq!(code, 1, "{out}");
    assert!(
        out.contains("the alias `b` names another model or alias too"),
        "{out}"
    );
}

#[test]
fn check_refuses_routes_to_nowhere() {
    let (code, out) = check(
        "auth: { mode: open }\nproviders:\n  m: { kind: mock }\nmodels:\n  small:\n    deployments: [{ provider: m, model: mock-1 }]\nroutes:\n  - when: { task: [summarize] }\n    model: smal\n  - when: { min_prompt_tokens: 10, max_prompt_tokens: 5 }\n",
    );
    assert_eq!(code, 1, "{out}");
    assert!(
        out.contains("unknown model `smal`, did you mean `small`?"),
        "{out}"
    );
    assert!(
        out.contains("a route needs a `model`, a `strategy`, or both"),
        "{out}"
    );
    assert!(
        out.contains("`min_prompt_tokens` is above `max_prompt_tokens`"),
        "{out}"
    );
}

#[test]
fn check_refuses_a_metadata_base_url_with_its_place() {
    let (code, out) = check(
        "auth: { mode: open }\nproviders:\n  up:\n    kind: openai\n    base_url: http://169.254.169.254/latest/meta-data\n    api_key: k\nmodels:\n  x:\n    deployments: [{ provider: up, model: gpt }]\n",
    );
    assert_eq!(code, 1, "{out}");
    assert!(
        out.contains("bad.yaml:5:5: provider `up`: `base_url` points at `169.254.169.254`, a link-local or cloud metadata address"),
        "{out}"
    );
    assert!(out.contains("allow_private_networks: true"), "{out}");
}

fn prices(args: &[&str]) -> (i32, String, String) {
    let output = Command::new(env!("CARGO_BIN_EXE_switchyard"))
        .arg("prices")
        .args(args)
        .output()
        .unwrap();
    let text = |bytes: &[u8]| String::from_utf8_lossy(bytes).into_owned();
    (
        output.status.code().unwrap(),
        text(&output.stdout),
        text(&output.stderr),
    )
}

#[test]
fn prices_prints_the_built_in_list_and_the_models_asked_for() {
    let (code, out, _) = prices(&[]);
    assert_eq!(code, 0);
    let lines: Vec<&str> = out.lines().collect();
    assert!(
        lines[0].starts_with("price list 2026-12-01 (built-in)"),
        "{out}"
    );
    assert!(lines[1].starts_with("model "), "{out}");
    assert!(
        lines.iter().any(|l| l.starts_with("holysheep/gpt-4.1 ")),
        "{out}"
    );
    let (code, out, err) = prices(&["gpt-4.1-2025-04-14", "no-such-model", "--format", "json"]);
    assert_eq!(code, 1, "{err}");
    assert!(
        err.contains("`no-such-model` is not in the price list 2026-12-01"),
        "{err}"
    );
    let json: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert_eq!(json["models"][0]["model"], "gpt-4.1");
    assert_eq!(json["models"][0]["cached_input"], 0.5);
}

#[test]
fn prices_checks_another_list_and_lists_its_problems() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("prices.yaml");
    std::fs::write(
        &path,
        "version: 1\nmodels:\n  - { provider: p, model: m, input: -2, output: 1 }\n",
    )
    .unwrap();
    let (code, _, err) = prices(&["--file", path.to_str().unwrap()]);
    assert_eq!(code, 1);
    let err = err.replace(path.to_str().unwrap(), "prices.yaml");
    assert_eq!(
        err,
        "prices.yaml:3:30: `input` must be non-negative USD per million tokens\nprices.yaml: 1 problem(s)\n"
    );
}
