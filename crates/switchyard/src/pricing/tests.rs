#![allow(clippy::unwrap_used)]

use super::*;
use crate::config::{self, Deployment};

fn built_in() -> &'static PriceList {
    PriceList::built_in().unwrap_or_else(|problems| panic!("{problems}"))
}

fn cost(model: &str, tokens: Tokens) -> i64 {
    built_in().price(model).unwrap().cost(&tokens)
}

fn problems(text: &str) -> Vec<String> {
    let problems = PriceList::from_yaml(text).unwrap_err();
    problems
        .list
        .iter()
        .map(|p| match p.place {
            Some(place) => format!("{}:{} {}", place.line, place.column, p.message),
            None => p.message.clone(),
        })
        .collect()
}

fn config_price(input: f64, output: f64) -> config::Price {
    config::Price {
        input,
        output,
        cached_input: None,
        cache_write: None,
        reasoning: None,
    }
}

#[test]
fn the_built_in_list_reads_without_a_problem() {
    let list = built_in();
    assert_eq!(list.version(), "2026-12-01");
    assert!(list.entries().len() > 40);
    assert!(
        list.entries()
            .iter()
            .any(|e| e.relay.as_deref() == Some("holysheep"))
    );
}

#[test]
fn openai_cached_input_and_reasoning() {
    // o4-mini: 1.10 input, 0.275 cached, 4.40 output and reasoning.
    // 4,000 fresh × 1.10 + 6,000 cached × 0.275 + 500 × 4.40 + 1,500 × 4.40
    // = 4,400 + 1,650 + 2,200 + 6,600 = 14,850 micro-USD.
    let tokens = Tokens {
        input: 10_000,
        cached_input: 6_000,
        output: 2_000,
        reasoning: 1_500,
        ..Tokens::default()
    };
    assert_eq!(cost("o4-mini", tokens), 14_850);
    // gpt-4o-mini: 1,000 × 0.15 + 1 × 0.075 + 3 × 0.60 = 151.875 → 152.
    let tokens = Tokens {
        input: 1_001,
        cached_input: 1,
        output: 3,
        ..Tokens::default()
    };
    assert_eq!(cost("gpt-4o-mini", tokens), 152);
}

#[test]
fn anthropic_cache_reads_and_writes() {
    // claude-sonnet-4-5: 5,000 fresh × 3 + 30,000 read × 0.30 + 15,000
    // written × 3.75 + 1,000 × 15 = 15,000 + 9,000 + 56,250 + 15,000.
    let tokens = Tokens {
        input: 50_000,
        cached_input: 30_000,
        cache_write: 15_000,
        output: 1_000,
        reasoning: 0,
    };
    assert_eq!(cost("claude-sonnet-4-5-20250929", tokens), 95_250);
    // Past 200K prompt tokens every token pays the long-context prices:
    // 50,000 × 6 + 200,000 × 0.60 + 2,000 × 22.50 = 300,000 + 120,000 + 45,000.
    let tokens = Tokens {
        input: 250_000,
        cached_input: 200_000,
        output: 2_000,
        ..Tokens::default()
    };
    assert_eq!(cost("claude-sonnet-4-5", tokens), 465_000);
}

#[test]
fn gemini_long_prompts_pay_the_dearer_tier() {
    // gemini-2.5-pro over 200K: 200,000 fresh × 2.50 + 100,000 cached × 0.25
    // + 1,000 × 15 + 3,000 reasoning × 15 = 500,000 + 25,000 + 15,000 + 45,000.
    let tokens = Tokens {
        input: 300_000,
        cached_input: 100_000,
        output: 4_000,
        reasoning: 3_000,
        ..Tokens::default()
    };
    assert_eq!(cost("gemini-2.5-pro", tokens), 585_000);
    // The tier starts past its threshold: 200,000 × 1.25; 200,001 × 2.50 = 500,002.5 → 500,003.
    let prompt = |input| Tokens {
        input,
        ..Tokens::default()
    };
    assert_eq!(cost("gemini-2.5-pro", prompt(200_000)), 250_000);
    assert_eq!(cost("gemini-2.5-pro", prompt(200_001)), 500_003);
}

#[test]
fn deepseek_cache_hits() {
    // 2,345 × 0.28 + 10,000 × 0.028 + 678 × 0.42 = 656.6 + 280 + 284.76 = 1,221.36 → 1,222.
    let tokens = Tokens {
        input: 12_345,
        cached_input: 10_000,
        output: 678,
        ..Tokens::default()
    };
    assert_eq!(cost("deepseek-chat", tokens), 1_222);
    assert_eq!(cost("deepseek-v3.2", tokens), 1_222);
}

#[test]
fn qwen3_max_has_three_tiers() {
    let price = built_in().price("qwen3-max").unwrap();
    assert_eq!(price.rates(32_000).input, 1_200_000);
    assert_eq!(price.rates(32_001).input, 2_400_000);
    assert_eq!(price.rates(128_001).input, 3_000_000);
}

#[test]
fn parts_larger_than_their_whole_are_cut_to_fit() {
    // 100 prompt tokens all cached (no room left for writes), 10 output tokens
    // all reasoning: 100 × 0.30 + 10 × 15 = 180.
    let tokens = Tokens {
        input: 100,
        cached_input: 500,
        cache_write: 50,
        output: 10,
        reasoning: 99,
    };
    assert_eq!(cost("claude-sonnet-4-5", tokens), 180);
    let huge = Tokens {
        input: u64::MAX,
        output: u64::MAX,
        ..Tokens::default()
    };
    assert_eq!(cost("claude-opus-4-1", huge), i64::MAX);
    assert_eq!(cost("gpt-4.1", Tokens::default()), 0);
}

#[test]
fn a_config_price_costs_as_the_budgets_do() {
    use crate::limits::budget::{cost_micros, micros_per_mtok};
    let price = ModelPrice::from(config_price(0.42, 1.68));
    let tokens = Tokens {
        input: 10,
        output: 16,
        ..Tokens::default()
    };
    let budget = cost_micros(10, 16, micros_per_mtok(0.42), micros_per_mtok(1.68));
    assert_eq!((price.cost(&tokens), budget), (32, 32));
    // Cached input and cache writes default to the input price, reasoning to the output price.
    let price = ModelPrice::from(config::Price {
        cached_input: Some(0.30),
        ..config_price(3.0, 15.0)
    });
    let rates = price.base();
    assert_eq!(
        (rates.cached_input, rates.cache_write, rates.reasoning),
        (300_000, 3_000_000, 15_000_000)
    );
}

#[test]
fn names_are_found_without_case_prefixes_or_dates() {
    let list = built_in();
    let found = |name: &str| list.entry(name).map(|e| e.name().into_owned());
    for (name, entry) in [
        ("gpt-4.1", "gpt-4.1"),
        ("GPT-4.1", "gpt-4.1"),
        ("openai/gpt-4.1", "gpt-4.1"),
        ("gpt-4.1-2025-04-14", "gpt-4.1"),
        ("gpt-4o-2024-08-06", "gpt-4o"),
        ("gpt-4o-2024-05-13", "gpt-4o-2024-05-13"),
        ("claude-sonnet-4-5-20250929", "claude-sonnet-4-5"),
        ("claude-sonnet-4-5@20250929", "claude-sonnet-4-5"),
        ("claude-sonnet-4.5", "claude-sonnet-4-5"),
        ("anthropic/claude-opus-4-1-20250805", "claude-opus-4-1"),
        ("models/gemini-2.5-pro", "gemini-2.5-pro"),
        ("holysheep/gpt-4.1", "holysheep/gpt-4.1"),
        ("HolySheep/deepseek-v3.2", "holysheep/deepseek-chat"),
    ] {
        assert_eq!(found(name).as_deref(), Some(entry), "{name}");
    }
    // A relay's name is looked up among the relay's entries only.
    assert_eq!(found("holysheep/gpt-4.1-nano"), None);
    assert_eq!(found("gpt-4.1-2025"), None);
    assert_eq!(found("no-such-model"), None);
}

#[test]
fn a_deployments_own_price_wins_over_the_list() {
    let list = built_in();
    let deployment = |provider: &str, model: &str, price| Deployment {
        provider: provider.to_owned(),
        model: model.to_owned(),
        weight: 1,
        price,
        max_output_tokens: 4096,
        tier: None,
        max_in_flight: None,
    };
    let input = |d: &Deployment| list.for_deployment(d).map(|p| p.base().input);
    let own = deployment("relay", "gpt-4.1", Some(config_price(8.0, 24.0)));
    assert_eq!(input(&own), Some(8_000_000));
    assert_eq!(
        input(&deployment("relay", "gpt-4.1", None)),
        Some(2_000_000)
    );
    assert_eq!(
        input(&deployment("holysheep", "gpt-4.1", None)),
        Some(300_000)
    );
    assert_eq!(input(&deployment("up", "mock-1", None)), None);
}

#[test]
fn every_problem_of_a_list_is_reported_with_its_place() {
    let text = "\
version: ''
models:
  - { provider: openai, model: a, input: -1, output: 2 }
  - { provider: openai, model: A, input: 1, output: 2 }
  - { provider: openai, model: b/c, input: 1 }
  - { model: d, input: 1, output: 1, outpt: 2 }
  - provider: google
    model: e
    input: 1
    output: 1
    tiers: [{ above: 10, input: 1, output: 1 }, { above: 5, input: 1 }]
";
    let expected = [
        "6:38 unknown key `outpt`, did you mean `output`?",
        "1:1 `version` must not be empty",
        "3:35 `input` must be non-negative USD per million tokens",
        "4:25 `a` is listed twice (line 3)",
        "5:25 a name must not contain `/` (it separates a relay or provider prefix in a lookup)",
        "5:5 missing key `output`",
        "6:5 missing key `provider`",
        "11:51 `above` must be more than the tier before's (10)",
        "11:49 missing key `output`",
    ];
    assert_eq!(problems(text), expected);
}

#[test]
fn a_list_that_is_not_yaml_or_lacks_a_version_is_refused() {
    assert_eq!(
        problems("models: [\n"),
        ["1:9 unclosed bracket '[' at line 1, column 9"]
    );
    assert_eq!(problems("models: []\n"), ["1:1 missing key `version`"]);
    let list = PriceList::from_yaml("version: 1\n").unwrap();
    assert_eq!((list.version(), list.entries().len()), ("1", 0));
}
