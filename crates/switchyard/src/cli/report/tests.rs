#![allow(clippy::unwrap_used)]

use switchyard_store::{CostRow, GroupBy, UsageRecord};

use super::render::{self, dollars, percent};
use super::tally::{Compared, Dimension, Grouping, Repriced, Repricing, Traffic};
use super::{Format, Range, ReportError};
use crate::pricing::PriceList;
use crate::usage::report::thousands;
use crate::usage::report::unix_seconds;

/// The other list: the providers' own prices, Gemini's with its tier of
/// prompts over 200,000 tokens.
const ORIGINALS: &str = "version: originals-1\nmodels:\n  - { provider: openai, model: gpt-4.1, input: 2, cached_input: 0.5, output: 8 }\n  - provider: google\n    model: gemini-2.5-pro\n    input: 1.25\n    cached_input: 0.125\n    output: 10\n    tiers: [{ above: 200000, input: 2.5, cached_input: 0.25, output: 15 }]\n";

/// A record at `at` (RFC 3339) of `model` served by `deployment`, with
/// (input, cached input, output) tokens, and its recorded cost.
fn record(
    at: &str,
    model: &str,
    deployment: &str,
    (input, cached, output): (i64, i64, i64),
    cost_micros: i64,
) -> UsageRecord {
    UsageRecord {
        id: format!("{at}-{model}"),
        at: unix_seconds(at).unwrap() * 1000 + 250,
        request_id: "req".to_owned(),
        key_id: Some("key_a".to_owned()),
        key_name: None,
        team_id: None,
        tags: Vec::new(),
        endpoint: "chat_completions".to_owned(),
        model: model.to_owned(),
        provider: deployment.split_once('/').map_or("", |(p, _)| p).to_owned(),
        deployment: deployment.to_owned(),
        status: 200,
        error_type: None,
        input_tokens: input,
        cached_input_tokens: cached,
        cache_write_tokens: 0,
        reasoning_tokens: 0,
        output_tokens: output,
        cost_micros,
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

/// The traffic of the tests, each record's price at [`ORIGINALS`] worked out
/// by hand (µ$ per token: gpt-4.1 2 in, 0.5 cached, 8 out; gemini-2.5-pro
/// 1.25 / 10, over 200,000 prompt tokens 2.5 / 15 for every token).
fn traffic() -> Vec<UsageRecord> {
    let mut hit = record("2026-11-08T08:00:00Z", "gpt-4.1", "", (10_000, 0, 1_000), 0);
    hit.cache = Some("hit".to_owned());
    vec![
        // 6,000 × 2 + 4,000 × 0.5 + 1,000 × 8 = 22,000.
        record(
            "2026-11-03T10:00:00Z",
            "gpt-4.1",
            "relay/gpt-4.1",
            (10_000, 4_000, 1_000),
            3_000,
        ),
        // A dated name: 1,234 × 2 + 1 × 0.5 + 567 × 8 = 7,004.5, rounded up.
        record(
            "2026-11-20T23:59:59Z",
            "gpt-4.1",
            "relay/gpt-4.1-2025-04-14",
            (1_235, 1, 567),
            1_000,
        ),
        // The next month: 100 × 2 + 50 × 8 = 600.
        record(
            "2026-12-01T00:00:00Z",
            "gpt-4.1",
            "relay/gpt-4.1",
            (100, 0, 50),
            60,
        ),
        // The long-prompt tier: 250,000 × 2.5 + 2,000 × 15 = 655,000
        // (332,500 at the base prices).
        record(
            "2026-11-05T12:00:00Z",
            "gemini-2.5-pro",
            "relay/gemini-2.5-pro",
            (250_000, 0, 2_000),
            150_000,
        ),
        // The base prices: 1,000 × 1.25 + 100 × 10 = 2,250.
        record(
            "2026-11-06T12:00:00Z",
            "gemini-2.5-pro",
            "relay/gemini-2.5-pro",
            (1_000, 0, 100),
            300,
        ),
        // In no list: counted apart.
        record(
            "2026-11-07T12:00:00Z",
            "mystery",
            "relay/mystery-1",
            (500, 0, 50),
            77,
        ),
        // A cache hit: no provider billed it, at either list.
        hit,
        // An upstream name the list lacks: priced by its public model,
        // 1,000 × 2 + 100 × 8 = 2,800.
        record(
            "2026-11-09T08:00:00Z",
            "gpt-4.1",
            "azure/my-gpt-deployment",
            (1_000, 0, 100),
            2_500,
        ),
    ]
}

fn compared(
    requests: i64,
    (input, cached, output): (i64, i64, i64),
    actual: i64,
    repriced: i64,
) -> Compared {
    Compared {
        traffic: Traffic {
            requests,
            input_tokens: input,
            cached_input_tokens: cached,
            cache_write_tokens: 0,
            reasoning_tokens: 0,
            output_tokens: output,
            actual_micros: actual,
        },
        repriced_micros: repriced,
    }
}

fn strings(values: &[&str]) -> Vec<String> {
    values.iter().map(|&v| v.to_owned()).collect()
}

fn reprice(grouping: &Grouping, tag: Option<&str>, records: &[UsageRecord]) -> Repriced {
    let list = PriceList::from_yaml(ORIGINALS).unwrap();
    let mut repricing = Repricing::new(&list, grouping, tag);
    for record in records {
        repricing.add(record);
    }
    repricing.finish()
}

#[test]
fn each_request_is_priced_at_the_other_list_by_model_and_month() {
    let grouping = Grouping::new(&[Dimension::Model, Dimension::Month]);
    let repriced = reprice(&grouping, None, &traffic());
    assert_eq!(
        repriced.rows,
        vec![
            (
                strings(&["gemini-2.5-pro", "2026-11"]),
                compared(2, (251_000, 0, 2_100), 150_300, 657_250),
            ),
            (
                strings(&["gpt-4.1", "2026-11"]),
                compared(4, (22_235, 4_001, 2_667), 6_500, 31_805),
            ),
            (
                strings(&["gpt-4.1", "2026-12"]),
                compared(1, (100, 0, 50), 60, 600),
            ),
        ]
    );
    assert_eq!(
        repriced.total,
        compared(7, (273_335, 4_001, 4_817), 156_860, 689_655)
    );
    assert_eq!(repriced.total.saved_micros(), 532_795);
    assert_eq!(
        repriced.unpriced,
        vec![(
            ("mystery".to_owned(), "relay/mystery-1".to_owned()),
            compared(1, (500, 0, 50), 77, 0).traffic,
        )]
    );
    assert_eq!(repriced.counted, 8);
}

#[test]
fn savings_are_the_other_price_less_the_actual_as_a_share_of_the_other() {
    let cheaper = compared(1, (0, 0, 0), 150_300, 657_250);
    assert_eq!(cheaper.saved_micros(), 506_950);
    assert_eq!(percent(cheaper.saved_pct()), "77.13%");
    let dearer = compared(1, (0, 0, 0), 1_200, 1_000);
    assert_eq!(dearer.saved_micros(), -200);
    assert_eq!(percent(dearer.saved_pct()), "-20.00%");
    assert_eq!(compared(1, (0, 0, 0), 0, 0).saved_pct(), None);
}

#[test]
fn a_tag_filters_records_and_grouping_by_tag_counts_each_of_them() {
    let mut records = traffic();
    records[0].tags = strings(&["batch", "nightly"]);
    records[2].tags = strings(&["batch"]);
    let grouping = Grouping::new(&[Dimension::Tag]);
    let by_tag = reprice(&grouping, None, &records);
    assert_eq!(
        by_tag.rows,
        vec![
            (
                strings(&["batch"]),
                compared(2, (10_100, 4_000, 1_050), 3_060, 22_600)
            ),
            (
                strings(&["nightly"]),
                compared(1, (10_000, 4_000, 1_000), 3_000, 22_000)
            ),
        ]
    );
    assert_eq!(
        by_tag.counted, 8,
        "records without tags are read, not shown"
    );
    let grouping = Grouping::new(&[Dimension::Model]);
    let batch = reprice(&grouping, Some("batch"), &records);
    assert_eq!(
        batch.rows,
        vec![(
            strings(&["gpt-4.1"]),
            compared(2, (10_100, 4_000, 1_050), 3_060, 22_600)
        )]
    );
    assert_eq!(batch.counted, 2);
}

#[test]
fn days_from_the_rollups_fold_into_months() {
    let row = |model: &str, day: &str, requests: i64, cost: i64| CostRow {
        group: vec![model.to_owned(), unix_seconds(day).unwrap().to_string()],
        requests,
        input_tokens: requests * 100,
        cost_micros: cost,
        latency_us: requests * 2_000,
        ..CostRow::default()
    };
    let grouping = Grouping::new(&[Dimension::Month, Dimension::Model, Dimension::Month]);
    assert_eq!(grouping.stored(), [GroupBy::Day, GroupBy::Model]);
    let stored = |model: &str, day: &str, requests, cost| {
        let mut r = row(model, day, requests, cost);
        r.group.reverse();
        r
    };
    let costs = grouping.fold(vec![
        stored("gpt-4.1", "2026-11-30", 2, 500),
        stored("gpt-4.1", "2026-12-01", 1, 7),
        stored("gpt-4.1", "2026-11-01", 3, 1_000),
        stored("claude", "2026-11-15", 1, 9),
    ]);
    let month = |month: &str, model: &str, requests: i64, cost: i64| CostRow {
        group: strings(&[month, model]),
        requests,
        input_tokens: requests * 100,
        cost_micros: cost,
        latency_us: requests * 2_000,
        ..CostRow::default()
    };
    assert_eq!(
        costs.rows,
        vec![
            month("2026-11", "claude", 1, 9),
            month("2026-11", "gpt-4.1", 5, 1_500),
            month("2026-12", "gpt-4.1", 1, 7),
        ]
    );
    assert_eq!(
        costs.total,
        CostRow {
            group: Vec::new(),
            ..month("", "", 7, 1_516)
        }
    );
}

#[test]
fn the_range_is_whole_hours_and_defaults_to_the_last_30_days() {
    let now = unix_seconds("2026-12-06T10:20:00Z").unwrap();
    let range = Range::new(None, None, now).unwrap();
    assert_eq!(range.from, unix_seconds("2026-11-06T10:00:00Z").unwrap());
    assert_eq!(range.to, unix_seconds("2026-12-06T11:00:00Z").unwrap());
    let from = unix_seconds("2026-11-01").unwrap();
    let to = unix_seconds("2026-12-01").unwrap();
    assert_eq!(
        Range::new(Some(from), Some(to), now).unwrap(),
        Range { from, to }
    );
    assert!(matches!(
        Range::new(Some(to), Some(from), now),
        Err(ReportError::EmptyRange)
    ));
}

#[test]
fn numbers_read_with_separators_and_money_to_the_micro_dollar() {
    assert_eq!(thousands(0), "0");
    assert_eq!(thousands(999), "999");
    assert_eq!(thousands(1_000), "1,000");
    assert_eq!(thousands(-1_234_567), "-1,234,567");
    assert_eq!(dollars(0), "$0.000000");
    assert_eq!(dollars(7_005), "$0.007005");
    assert_eq!(dollars(1_234_567_890), "$1,234.567890");
    assert_eq!(dollars(-250), "-$0.000250");
    assert_eq!(percent(None), "-");
}

#[test]
fn the_repricing_table_has_a_total_line_and_the_unpriced_below() {
    let list = PriceList::from_yaml(ORIGINALS).unwrap();
    let grouping = Grouping::new(&[Dimension::Model, Dimension::Month]);
    let repriced = reprice(&grouping, None, &traffic());
    let range = Range {
        from: unix_seconds("2026-11-01").unwrap(),
        to: unix_seconds("2026-12-31").unwrap(),
    };
    let text = render::repriced(
        Format::Table,
        range,
        &grouping,
        (&list, "originals.yaml"),
        &repriced,
    )
    .unwrap();
    let expected = "\
usage from 2026-11-01T00:00:00Z to 2026-12-31T00:00:00Z (UTC), by model, month
repriced: at price list originals-1 (originals.yaml); saved = repriced - actual (positive: the requests cost less than at that list), saved % of repriced
model           month    requests  input tokens  output tokens     actual   repriced      saved  saved %
gemini-2.5-pro  2026-11         2       251,000          2,100  $0.150300  $0.657250  $0.506950   77.13%
gpt-4.1         2026-11         4        22,235          2,667  $0.006500  $0.031805  $0.025305   79.56%
gpt-4.1         2026-12         1           100             50  $0.000060  $0.000600  $0.000540   90.00%
--------------------------------------------------------------------------------------------------------
total                           7       273,335          4,817  $0.156860  $0.689655  $0.532795   77.26%

not in price list originals-1, so left out of the rows: 1 request of relay/mystery-1, $0.000077 as recorded
model    deployment       requests  input tokens  output tokens     actual
mystery  relay/mystery-1         1           500             50  $0.000077
";
    assert_eq!(text, expected);
}

#[test]
fn the_costs_table_reads_the_rollups_sums() {
    let grouping = Grouping::new(&[Dimension::Key]);
    let costs = grouping.fold(vec![
        CostRow {
            group: vec![String::new()],
            requests: 2,
            errors: 1,
            input_tokens: 1_500,
            output_tokens: 20,
            cost_micros: 1_234_567,
            ..CostRow::default()
        },
        CostRow {
            group: vec!["key_b".to_owned()],
            requests: 1_000,
            input_tokens: 2_000_000,
            cached_input_tokens: 500_000,
            output_tokens: 10_000,
            cost_micros: 3,
            saved_micros: 40,
            ..CostRow::default()
        },
    ]);
    let range = Range {
        from: unix_seconds("2026-11-01").unwrap(),
        to: unix_seconds("2026-12-01").unwrap(),
    };
    let text = render::costs(Format::Table, range, &grouping, &costs).unwrap();
    let expected = "\
usage from 2026-11-01T00:00:00Z to 2026-12-01T00:00:00Z (UTC), by key
key    requests  errors  input tokens  cached input  output tokens       cost      saved
-             2       1         1,500             0             20  $1.234567  $0.000000
key_b     1,000       0     2,000,000       500,000         10,000  $0.000003  $0.000040
----------------------------------------------------------------------------------------
total     1,002       1     2,001,500       500,000         10,020  $1.234570  $0.000040
";
    assert_eq!(text, expected);
}
