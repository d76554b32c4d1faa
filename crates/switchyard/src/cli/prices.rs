//! `switchyard prices`: the built-in price list, or another file in its
//! format (read and checked), as a table or as JSON.
//!
//! The JSON has the shape of the price list file, every price spelled out,
//! so that it reads back with `--file` (YAML holds JSON).

use std::fmt::Write as _;
use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Args, ValueEnum};
use serde::Serialize;

use crate::pricing::{PriceEntry, PriceList, Rates};

/// Micro-dollars in a dollar.
const MICROS: u64 = 1_000_000;

/// `switchyard prices`
#[derive(Debug, Args)]
pub struct PricesArgs {
    /// Only these models, as a provider or a deployment names them
    /// (`gpt-4.1-2025-04-14`, `openai/gpt-4.1`, `holysheep/gpt-4.1`).
    models: Vec<String>,
    /// A price list file to read and print instead of the built-in list.
    #[arg(long)]
    file: Option<PathBuf>,
    /// `table` or `json`.
    #[arg(long, value_enum, default_value = "table")]
    format: Format,
}

/// How the list is printed.
#[derive(Debug, Clone, Copy, ValueEnum)]
pub enum Format {
    /// Aligned columns, one row per price tier.
    Table,
    /// The price list file's shape, as JSON.
    Json,
}

/// Runs `switchyard prices`: exit 1 when the file has problems (each printed
/// with its place) or a model asked for is not in the list.
pub fn prices(args: &PricesArgs) -> ExitCode {
    let (loaded, label) = match &args.file {
        Some(path) => (PriceList::load(path), path.display().to_string()),
        None => (
            PriceList::built_in().cloned().map_err(Clone::clone),
            "built-in".to_owned(),
        ),
    };
    let list = match loaded {
        Ok(list) => list,
        Err(problems) => {
            eprint!("{problems}");
            eprintln!("{}: {} problem(s)", problems.source, problems.list.len());
            return ExitCode::FAILURE;
        }
    };
    let mut code = ExitCode::SUCCESS;
    let entries: Vec<&PriceEntry> = if args.models.is_empty() {
        list.entries().iter().collect()
    } else {
        let mut found: Vec<&PriceEntry> = Vec::new();
        for name in &args.models {
            match list.entry(name) {
                Some(entry) if found.iter().any(|e| std::ptr::eq(*e, entry)) => {}
                Some(entry) => found.push(entry),
                None => {
                    eprintln!("`{name}` is not in the price list {}", list.version());
                    code = ExitCode::FAILURE;
                }
            }
        }
        found
    };
    match args.format {
        Format::Table => print!("{}", table(list.version(), &label, &entries)),
        Format::Json => match serde_json::to_string_pretty(&ListView::new(&list, &entries)) {
            Ok(text) => println!("{text}"),
            Err(e) => {
                eprintln!("error: {e}");
                code = ExitCode::FAILURE;
            }
        },
    }
    code
}

/// The entries as aligned columns under the list's version.
fn table(version: &str, label: &str, entries: &[&PriceEntry]) -> String {
    let mut rows: Vec<[String; 8]> = vec![
        [
            "model",
            "provider",
            "input",
            "cached input",
            "cache write",
            "output",
            "reasoning",
            "tier",
        ]
        .map(str::to_owned),
    ];
    for entry in entries {
        let price = &entry.price;
        let tiers = price.tiers();
        let base_note = tiers
            .first()
            .map_or(String::new(), |t| format!("prompt <= {}", t.above));
        rows.push(row(
            entry.name().into_owned(),
            entry.provider.clone(),
            price.base(),
            base_note,
        ));
        for (i, tier) in tiers.iter().enumerate() {
            let note = match tiers.get(i + 1) {
                Some(next) => format!("{} < prompt <= {}", tier.above, next.above),
                None => format!("prompt > {}", tier.above),
            };
            rows.push(row(String::new(), String::new(), &tier.rates, note));
        }
    }
    let mut widths = [0; 8];
    for row in &rows {
        for (width, cell) in widths.iter_mut().zip(row) {
            *width = (*width).max(cell.chars().count());
        }
    }
    let mut out = format!("price list {version} ({label}), USD per million tokens\n");
    for row in &rows {
        let mut line = String::new();
        for (i, (cell, width)) in row.iter().zip(widths).enumerate() {
            let gap = if i == 0 { "" } else { "  " };
            let _ = match i {
                2..=6 => write!(line, "{gap}{cell:>width$}"),
                _ => write!(line, "{gap}{cell:<width$}"),
            };
        }
        out.push_str(line.trim_end());
        out.push('\n');
    }
    out
}

fn row(model: String, provider: String, rates: &Rates, note: String) -> [String; 8] {
    [
        model,
        provider,
        usd(rates.input),
        usd(rates.cached_input),
        usd(rates.cache_write),
        usd(rates.output),
        usd(rates.reasoning),
        note,
    ]
}

/// Micro-USD per million tokens as exact USD, with at least two decimals.
fn usd(micros: u64) -> String {
    let fraction = format!("{:06}", micros % MICROS);
    let fraction = fraction.trim_end_matches('0');
    format!("{}.{fraction:0<2}", micros / MICROS)
}

/// USD per million tokens, as the file writes them.
fn usd_f64(micros: u64) -> f64 {
    micros as f64 / MICROS as f64
}

/// The list as the file writes it.
#[derive(Serialize)]
struct ListView<'a> {
    version: &'a str,
    models: Vec<EntryView<'a>>,
}

impl<'a> ListView<'a> {
    fn new(list: &'a PriceList, entries: &[&'a PriceEntry]) -> Self {
        let models = entries
            .iter()
            .map(|entry| EntryView {
                provider: &entry.provider,
                model: &entry.model,
                relay: entry.relay.as_deref(),
                aliases: &entry.aliases,
                prices: PricesView::new(entry.price.base()),
                tiers: entry
                    .price
                    .tiers()
                    .iter()
                    .map(|tier| TierView {
                        above: tier.above,
                        prices: PricesView::new(&tier.rates),
                    })
                    .collect(),
            })
            .collect();
        Self {
            version: list.version(),
            models,
        }
    }
}

#[derive(Serialize)]
struct EntryView<'a> {
    provider: &'a str,
    model: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    relay: Option<&'a str>,
    #[serde(skip_serializing_if = "none")]
    aliases: &'a [String],
    #[serde(flatten)]
    prices: PricesView,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    tiers: Vec<TierView>,
}

fn none(aliases: &&[String]) -> bool {
    aliases.is_empty()
}

#[derive(Serialize)]
struct TierView {
    above: u64,
    #[serde(flatten)]
    prices: PricesView,
}

#[derive(Serialize)]
struct PricesView {
    input: f64,
    cached_input: f64,
    cache_write: f64,
    output: f64,
    reasoning: f64,
}

impl PricesView {
    fn new(rates: &Rates) -> Self {
        Self {
            input: usd_f64(rates.input),
            cached_input: usd_f64(rates.cached_input),
            cache_write: usd_f64(rates.cache_write),
            output: usd_f64(rates.output),
            reasoning: usd_f64(rates.reasoning),
        }
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    const LIST: &str = "version: test-1\nmodels:\n  - { provider: openai, model: gpt-4.1, input: 2, cached_input: 0.5, output: 8 }\n  - provider: google\n    model: gemini-2.5-pro\n    input: 1.25\n    cached_input: 0.125\n    output: 10\n    tiers: [{ above: 200000, input: 2.5, cached_input: 0.25, output: 15 }]\n  - { relay: holysheep, provider: deepseek, model: deepseek-chat, aliases: [deepseek-v3.2], input: 0.042, cached_input: 0.0042, output: 0.063 }\n";

    #[test]
    fn prices_print_exactly_with_two_decimals_at_least() {
        assert_eq!(usd(2_000_000), "2.00");
        assert_eq!(usd(275_000), "0.275");
        assert_eq!(usd(4_200), "0.0042");
        assert_eq!(usd(22_500_000), "22.50");
        assert_eq!(usd(0), "0.00");
    }

    #[test]
    fn the_table_has_the_version_on_top_and_a_row_per_tier() {
        let list = PriceList::from_yaml(LIST).unwrap();
        let entries: Vec<&PriceEntry> = list.entries().iter().collect();
        let expected = "\
price list test-1 (a.yaml), USD per million tokens
model                    provider  input  cached input  cache write  output  reasoning  tier
gpt-4.1                  openai     2.00          0.50         2.00    8.00       8.00
gemini-2.5-pro           google     1.25         0.125         1.25   10.00      10.00  prompt <= 200000
                                    2.50          0.25         2.50   15.00      15.00  prompt > 200000
holysheep/deepseek-chat  deepseek  0.042        0.0042        0.042   0.063      0.063
";
        assert_eq!(table(list.version(), "a.yaml", &entries), expected);
    }

    #[test]
    fn the_json_reads_back_as_the_same_list() {
        let list = PriceList::from_yaml(LIST).unwrap();
        let entries: Vec<&PriceEntry> = list.entries().iter().collect();
        let json = serde_json::to_string(&ListView::new(&list, &entries)).unwrap();
        let again = PriceList::from_yaml(&json).unwrap();
        assert_eq!(again.version(), "test-1");
        assert_eq!(again.entries(), list.entries());
    }
}
