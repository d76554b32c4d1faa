//! `switchyard report` on a usage log written straight into a fresh store:
//! the sums of the rollups by provider and month, and every request priced
//! again at a fixture price list (a long-prompt tier, a prompt exactly at its
//! threshold, a model the list lacks), as JSON, CSV and a table, each figure
//! worked out by hand.

use serde_json::{Value, json};
use switchyard_store::{StoreOptions, UsageRecord};

use crate::stores::{Backend, TestStore, on_both_stores};

/// The other list: the providers' own prices (USD per million tokens).
const PRICES: &str = "\
version: fixture-1
models:
  - { provider: openai, model: gpt-4.1, input: 2, cached_input: 0.5, output: 8 }
  - provider: google
    model: gemini-2.5-pro
    input: 1.25
    output: 10
    tiers: [{ above: 200000, input: 2.5, output: 15 }]
";

/// A record of `model` through the relay's deployment of it, at `at`, with
/// (input, cached input, reasoning, output) tokens and its recorded cost.
fn record(n: u32, at: &str, model: &str, tokens: (i64, i64, i64, i64), cost: i64) -> UsageRecord {
    let at = humantime::parse_rfc3339(at)
        .unwrap()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap();
    UsageRecord {
        id: format!("{n:032x}"),
        at: i64::try_from(at.as_millis()).unwrap(),
        request_id: format!("req-{n}"),
        key_id: Some("key_a".to_owned()),
        key_name: Some("a".to_owned()),
        team_id: None,
        tags: Vec::new(),
        endpoint: "chat_completions".to_owned(),
        model: model.to_owned(),
        provider: "relay".to_owned(),
        deployment: format!("relay/{model}"),
        status: 200,
        error_type: None,
        input_tokens: tokens.0,
        cached_input_tokens: tokens.1,
        cache_write_tokens: 0,
        reasoning_tokens: tokens.2,
        output_tokens: tokens.3,
        cost_micros: cost,
        saved_micros: 0,
        cost_estimated: false,
        latency_us: 1_000,
        ttft_us: None,
        attempts: 1,
        cache: None,
        route: None,
        stream: false,
    }
}

/// Five requests; in comments, each one's price at [`PRICES`] in µ$
/// (USD per million tokens is µ$ per token).
fn usage_log() -> Vec<UsageRecord> {
    vec![
        // 1,000 × 2 + 1,000 × 0.5 + 300 × 8 = 4,900.
        record(
            1,
            "2026-11-02T09:15:00Z",
            "gpt-4.1",
            (2_000, 1_000, 0, 300),
            400,
        ),
        // Reasoning at the output price: 333 × 2 + 77 × 8 = 1,282.
        record(2, "2026-11-28T18:00:00Z", "gpt-4.1", (333, 0, 20, 77), 90),
        // Over the tier: 300,001 × 2.5 + 1,000 × 15 = 765,002.5, rounded up.
        record(
            3,
            "2026-12-03T00:30:00Z",
            "gemini-2.5-pro",
            (300_001, 0, 0, 1_000),
            50_000,
        ),
        // At the threshold, not over: 200,000 × 1.25 + 1,000 × 10 = 260,000.
        record(
            4,
            "2026-12-04T00:00:00Z",
            "gemini-2.5-pro",
            (200_000, 0, 0, 1_000),
            30_000,
        ),
        // Not in the list.
        record(
            5,
            "2026-12-05T12:00:00Z",
            "kimi-k2",
            (1_000, 0, 0, 100),
            120,
        ),
    ]
}

/// Runs `switchyard report --store URL <args>`: stdout and stderr; it must
/// succeed.
fn report(store: &TestStore, args: &[&str]) -> (String, String) {
    let mut all = vec!["report", "--from", "2026-11-01", "--to", "2027-01-01"];
    all.extend_from_slice(args);
    let output = store.cli_output(&all);
    let text = |bytes: Vec<u8>| String::from_utf8(bytes).unwrap();
    let (stdout, stderr) = (text(output.stdout), text(output.stderr));
    assert!(output.status.success(), "{args:?}: {stderr}");
    (stdout, stderr)
}

async fn report_reprices_every_request_and_sums_the_rollups(backend: Backend) {
    let store = TestStore::new(backend);
    let opened = switchyard_store::open(&store.url, &StoreOptions::default())
        .await
        .unwrap();
    assert_eq!(opened.insert_records(&usage_log()).await.unwrap(), 5);
    drop(opened);
    let dir = tempfile::tempdir().unwrap();
    let prices = dir.path().join("fixture-prices.yaml");
    std::fs::write(&prices, PRICES).unwrap();
    let prices = prices.to_str().unwrap();

    let (json_text, stderr) = report(&store, &["--reprice", prices, "--format", "json"]);
    assert!(
        !stderr.contains("records"),
        "no progress bar without a terminal: {stderr}"
    );
    let got: Value = serde_json::from_str(&json_text).unwrap();
    let expected = json!({
        "from": "2026-11-01T00:00:00Z",
        "to": "2027-01-01T00:00:00Z",
        "group_by": ["model", "month"],
        "prices": { "version": "fixture-1", "source": prices },
        "rows": [
            {
                "model": "gemini-2.5-pro", "month": "2026-12",
                "requests": 2, "input_tokens": 500_001, "cached_input_tokens": 0,
                "cache_write_tokens": 0, "reasoning_tokens": 0, "output_tokens": 2_000,
                "actual_micros": 80_000, "actual_usd": 0.08,
                "repriced_micros": 1_025_003, "repriced_usd": 1.025003,
                "saved_micros": 945_003, "saved_usd": 0.945003, "saved_pct": 92.2,
            },
            {
                "model": "gpt-4.1", "month": "2026-11",
                "requests": 2, "input_tokens": 2_333, "cached_input_tokens": 1_000,
                "cache_write_tokens": 0, "reasoning_tokens": 20, "output_tokens": 377,
                "actual_micros": 490, "actual_usd": 0.00049,
                "repriced_micros": 6_182, "repriced_usd": 0.006182,
                "saved_micros": 5_692, "saved_usd": 0.005692, "saved_pct": 92.07,
            },
        ],
        "total": {
            "requests": 4, "input_tokens": 502_334, "cached_input_tokens": 1_000,
            "cache_write_tokens": 0, "reasoning_tokens": 20, "output_tokens": 2_377,
            "actual_micros": 80_490, "actual_usd": 0.08049,
            "repriced_micros": 1_031_185, "repriced_usd": 1.031185,
            "saved_micros": 950_695, "saved_usd": 0.950695, "saved_pct": 92.19,
        },
        "unpriced": [{
            "model": "kimi-k2", "deployment": "relay/kimi-k2",
            "requests": 1, "input_tokens": 1_000, "cached_input_tokens": 0,
            "cache_write_tokens": 0, "reasoning_tokens": 0, "output_tokens": 100,
            "actual_micros": 120, "actual_usd": 0.00012,
        }],
    });
    assert_eq!(got, expected, "{json_text}");

    let (csv, stderr) = report(&store, &["--reprice", prices, "--format", "csv"]);
    assert_eq!(
        csv,
        "\
model,month,requests,input_tokens,cached_input_tokens,cache_write_tokens,reasoning_tokens,output_tokens,actual_micros,actual_usd,repriced_micros,repriced_usd,saved_micros,saved_usd,saved_pct
gemini-2.5-pro,2026-12,2,500001,0,0,0,2000,80000,0.08,1025003,1.025003,945003,0.945003,92.2
gpt-4.1,2026-11,2,2333,1000,0,20,377,490,0.00049,6182,0.006182,5692,0.005692,92.07
"
    );
    assert!(
        stderr.ends_with("not in price list fixture-1, so left out of the rows: 1 request of relay/kimi-k2, $0.000120 as recorded\n"),
        "{stderr}"
    );

    let (table, _) = report(&store, &["--reprice", prices]);
    let lines: Vec<&str> = table.lines().collect();
    assert_eq!(
        lines[..3],
        [
            "usage from 2026-11-01T00:00:00Z to 2027-01-01T00:00:00Z (UTC), by model, month",
            &format!(
                "repriced: at price list fixture-1 ({prices}); saved = repriced - actual \
                 (positive: the requests cost less than at that list), saved % of repriced"
            ),
            "model           month    requests  input tokens  output tokens     actual   repriced      saved  saved %",
        ],
        "{table}"
    );
    assert_eq!(
        lines[6],
        "total                           4       502,334          2,377  $0.080490  $1.031185  $0.950695   92.19%",
        "{table}"
    );

    // Without --reprice: the rollups, the days folded into months.
    let (csv, _) = report(&store, &["--by", "provider,month", "--format", "csv"]);
    assert_eq!(
        csv,
        "\
provider,month,requests,errors,cache_hits,input_tokens,cached_input_tokens,cache_write_tokens,reasoning_tokens,output_tokens,cost_micros,cost_usd,saved_micros,saved_usd,avg_latency_ms,error_rate
relay,2026-11,2,0,0,2333,1000,0,20,377,490,0.00049,0,0.0,1.0,0.0
relay,2026-12,3,0,0,501001,0,0,0,2100,80120,0.08012,0,0.0,1.0,0.0
"
    );
    let (table, _) = report(&store, &["--model", "gpt-4.1"]);
    assert_eq!(
        table,
        "\
usage from 2026-11-01T00:00:00Z to 2027-01-01T00:00:00Z (UTC), by model, day
model    day         requests  errors  input tokens  cached input  output tokens       cost      saved
gpt-4.1  2026-11-02         1       0         2,000         1,000            300  $0.000400  $0.000000
gpt-4.1  2026-11-28         1       0           333             0             77  $0.000090  $0.000000
------------------------------------------------------------------------------------------------------
total                       2       0         2,333         1,000            377  $0.000490  $0.000000
"
    );
}

on_both_stores!(report_reprices_every_request_and_sums_the_rollups);

#[test]
fn report_refuses_a_price_list_with_problems_and_an_empty_range() {
    let store = TestStore::new(Backend::Sqlite);
    let dir = tempfile::tempdir().unwrap();
    let prices = dir.path().join("bad.yaml");
    std::fs::write(
        &prices,
        "version: x\nmodels:\n  - { provider: openai, model: m }\n",
    )
    .unwrap();
    let output = store.cli_output(&["report", "--reprice", prices.to_str().unwrap()]);
    assert_eq!(output.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains("bad.yaml:3:"), "{stderr}");
    let output = store.cli_output(&["report", "--from", "2026-12-02", "--to", "2026-12-01"]);
    assert_eq!(output.status.code(), Some(1));
    assert_eq!(
        String::from_utf8_lossy(&output.stderr),
        "error: `--from` must be before `--to`\n"
    );
    let output = store.cli_output(&["report", "--from", "yesterday"]);
    assert_eq!(output.status.code(), Some(2), "clap refuses it");
}
