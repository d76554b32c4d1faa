//! A report as text: a table for people (aligned columns, a total line,
//! dollars with their micro-dollars, tokens with thousands separators), JSON
//! (money in exact micro-dollars beside USD) or CSV (one line per row, no
//! total).

use std::fmt::Write as _;

use serde::Serialize;
use serde::ser::{SerializeMap, Serializer};
use serde_json::Value;
use switchyard_store::CostRow;

use super::tally::{Compared, Costs, Grouping, Repriced, Traffic};
use super::{Format, Range, ReportError};
use crate::keys::admin::views::{rfc3339, usd};
use crate::pricing::PriceList;
use crate::usage::report::{COST_COLUMNS, cell, cost_values, thousands};

/// A report from the rollups.
pub(super) fn costs(
    format: Format,
    range: Range,
    grouping: &Grouping,
    costs: &Costs,
) -> Result<String, ReportError> {
    let row = |group: &[String], sums: &CostRow| {
        let mut fields = named(grouping, group);
        fields.extend(COST_COLUMNS.into_iter().zip(cost_values(sums)));
        Fields(fields)
    };
    match format {
        Format::Table => {
            let mut table = Table::new(
                &dim_names(grouping),
                &[
                    "requests",
                    "errors",
                    "input tokens",
                    "cached input",
                    "output tokens",
                    "cost",
                    "saved",
                ],
            );
            let cells = |sums: &CostRow| {
                vec![
                    thousands(sums.requests),
                    thousands(sums.errors),
                    thousands(sums.input_tokens),
                    thousands(sums.cached_input_tokens),
                    thousands(sums.output_tokens),
                    dollars(sums.cost_micros),
                    dollars(sums.saved_micros),
                ]
            };
            for sums in &costs.rows {
                table.row(&sums.group, cells(sums));
            }
            table.total(cells(&costs.total));
            Ok(format!("{}{}", title(range, grouping), table.render()))
        }
        Format::Json => {
            let view = CostsView {
                from: rfc3339(range.from),
                to: rfc3339(range.to),
                group_by: dim_names(grouping),
                rows: costs.rows.iter().map(|r| row(&r.group, r)).collect(),
                total: row(&[], &costs.total),
            };
            Ok(serde_json::to_string_pretty(&view)? + "\n")
        }
        Format::Csv => csv(
            grouping,
            &COST_COLUMNS,
            costs.rows.iter().map(|r| row(&r.group, r)),
        ),
    }
}

/// A report of the records priced again at `list` (read from `source`).
pub(super) fn repriced(
    format: Format,
    range: Range,
    grouping: &Grouping,
    (list, source): (&PriceList, &str),
    repriced: &Repriced,
) -> Result<String, ReportError> {
    let row = |group: &[String], compared: &Compared| {
        let mut fields = named(grouping, group);
        fields.extend(compared_values(compared));
        Fields(fields)
    };
    match format {
        Format::Table => {
            let mut table = Table::new(
                &dim_names(grouping),
                &[
                    "requests",
                    "input tokens",
                    "output tokens",
                    "actual",
                    "repriced",
                    "saved",
                    "saved %",
                ],
            );
            let cells = |c: &Compared| {
                vec![
                    thousands(c.traffic.requests),
                    thousands(c.traffic.input_tokens),
                    thousands(c.traffic.output_tokens),
                    dollars(c.traffic.actual_micros),
                    dollars(c.repriced_micros),
                    dollars(c.saved_micros()),
                    percent(c.saved_pct()),
                ]
            };
            for (group, compared) in &repriced.rows {
                table.row(group, cells(compared));
            }
            table.total(cells(&repriced.total));
            let mut out = title(range, grouping);
            let _ = writeln!(
                out,
                "repriced: at price list {} ({source}); saved = repriced - actual \
                 (positive: the requests cost less than at that list), saved % of repriced",
                list.version()
            );
            out.push_str(&table.render());
            if !repriced.unpriced.is_empty() {
                out.push('\n');
                out.push_str(&unpriced_note(list, repriced));
                let mut table = Table::new(
                    &["model", "deployment"],
                    &["requests", "input tokens", "output tokens", "actual"],
                );
                for ((model, deployment), t) in &repriced.unpriced {
                    table.row(
                        &[],
                        vec![
                            or_dash(model),
                            or_dash(deployment),
                            thousands(t.requests),
                            thousands(t.input_tokens),
                            thousands(t.output_tokens),
                            dollars(t.actual_micros),
                        ],
                    );
                }
                out.push_str(&table.render());
            }
            Ok(out)
        }
        Format::Json => {
            let view = RepricedView {
                from: rfc3339(range.from),
                to: rfc3339(range.to),
                group_by: dim_names(grouping),
                prices: PricesView {
                    version: list.version(),
                    source,
                },
                rows: repriced.rows.iter().map(|(g, c)| row(g, c)).collect(),
                total: row(&[], &repriced.total),
                unpriced: repriced
                    .unpriced
                    .iter()
                    .map(|((model, deployment), t)| {
                        let mut fields = vec![
                            ("model", Value::from(model.as_str())),
                            ("deployment", Value::from(deployment.as_str())),
                        ];
                        fields.extend(traffic_values(t));
                        Fields(fields)
                    })
                    .collect(),
            };
            Ok(serde_json::to_string_pretty(&view)? + "\n")
        }
        Format::Csv => csv(
            grouping,
            &REPRICED_COLUMNS,
            repriced.rows.iter().map(|(g, c)| row(g, c)),
        ),
    }
}

/// The line saying which deployments' requests the list has no price for,
/// and what they cost as recorded.
pub(super) fn unpriced_note(list: &PriceList, repriced: &Repriced) -> String {
    let mut total = Traffic::default();
    let mut names = Vec::new();
    for ((_, deployment), traffic) in &repriced.unpriced {
        total.requests += traffic.requests;
        total.actual_micros += traffic.actual_micros;
        if !names.contains(&deployment.as_str()) {
            names.push(deployment.as_str());
        }
    }
    let requests = if total.requests == 1 {
        "request"
    } else {
        "requests"
    };
    format!(
        "not in price list {}, so left out of the rows: {} {requests} of {}, {} as recorded\n",
        list.version(),
        thousands(total.requests),
        names.join(", "),
        dollars(total.actual_micros),
    )
}

/// The first line of a table: the range and the grouping.
fn title(range: Range, grouping: &Grouping) -> String {
    let by = dim_names(grouping);
    let by = if by.is_empty() {
        String::new()
    } else {
        format!(", by {}", by.join(", "))
    };
    format!(
        "usage from {} to {} (UTC){by}\n",
        rfc3339(range.from),
        rfc3339(range.to)
    )
}

/// The columns of a repriced row after its dimensions.
const REPRICED_COLUMNS: [&str; 13] = [
    "requests",
    "input_tokens",
    "cached_input_tokens",
    "cache_write_tokens",
    "reasoning_tokens",
    "output_tokens",
    "actual_micros",
    "actual_usd",
    "repriced_micros",
    "repriced_usd",
    "saved_micros",
    "saved_usd",
    "saved_pct",
];

/// The first eight of [`REPRICED_COLUMNS`], for `traffic`.
fn traffic_values(t: &Traffic) -> Vec<(&'static str, Value)> {
    let values: [Value; 8] = [
        t.requests.into(),
        t.input_tokens.into(),
        t.cached_input_tokens.into(),
        t.cache_write_tokens.into(),
        t.reasoning_tokens.into(),
        t.output_tokens.into(),
        t.actual_micros.into(),
        usd(t.actual_micros).into(),
    ];
    REPRICED_COLUMNS.into_iter().zip(values).collect()
}

/// [`REPRICED_COLUMNS`] for `c`; the percentage to two decimals.
fn compared_values(c: &Compared) -> Vec<(&'static str, Value)> {
    let mut fields = traffic_values(&c.traffic);
    let values: [Value; 5] = [
        c.repriced_micros.into(),
        usd(c.repriced_micros).into(),
        c.saved_micros().into(),
        usd(c.saved_micros()).into(),
        c.saved_pct()
            .map_or(Value::Null, |p| ((p * 100.0).round() / 100.0).into()),
    ];
    fields.extend(REPRICED_COLUMNS.into_iter().skip(8).zip(values));
    fields
}

/// The names of the grouping's dimensions.
fn dim_names(grouping: &Grouping) -> Vec<&'static str> {
    grouping.dims().iter().map(|d| d.name()).collect()
}

/// A group's values under the names of the grouping's dimensions.
fn named(grouping: &Grouping, group: &[String]) -> Vec<(&'static str, Value)> {
    grouping
        .dims()
        .iter()
        .zip(group)
        .map(|(dim, value)| (dim.name(), Value::from(value.as_str())))
        .collect()
}

/// Named values, written as a JSON object in their order.
struct Fields(Vec<(&'static str, Value)>);

impl Serialize for Fields {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        let mut map = serializer.serialize_map(Some(self.0.len()))?;
        for (name, value) in &self.0 {
            map.serialize_entry(name, value)?;
        }
        map.end()
    }
}

/// The JSON of a report from the rollups.
#[derive(Serialize)]
struct CostsView {
    from: String,
    to: String,
    group_by: Vec<&'static str>,
    rows: Vec<Fields>,
    total: Fields,
}

/// The JSON of a repricing.
#[derive(Serialize)]
struct RepricedView<'a> {
    from: String,
    to: String,
    group_by: Vec<&'static str>,
    prices: PricesView<'a>,
    rows: Vec<Fields>,
    total: Fields,
    unpriced: Vec<Fields>,
}

/// The list a repricing priced at.
#[derive(Serialize)]
struct PricesView<'a> {
    version: &'a str,
    source: &'a str,
}

/// A header of the dimensions and `columns`, and a line per row.
fn csv(
    grouping: &Grouping,
    columns: &[&str],
    rows: impl Iterator<Item = Fields>,
) -> Result<String, ReportError> {
    let mut writer = csv::Writer::from_writer(Vec::new());
    writer.write_record(
        dim_names(grouping)
            .into_iter()
            .chain(columns.iter().copied()),
    )?;
    for row in rows {
        writer.write_record(row.0.iter().map(|(_, value)| cell(value)))?;
    }
    let bytes = writer
        .into_inner()
        .map_err(|e| ReportError::Write(e.into_error()))?;
    Ok(String::from_utf8_lossy(&bytes).into_owned())
}

/// Columns aligned: names to the left, numbers to the right; a rule and a
/// total line at the end.
struct Table {
    header: Vec<String>,
    /// How many columns, from the first, are aligned to the left.
    left: usize,
    rows: Vec<Vec<String>>,
    total: Option<Vec<String>>,
}

impl Table {
    /// A table of the columns `left` (aligned to the left), then `right`.
    fn new(left: &[&str], right: &[&str]) -> Self {
        Self {
            header: left.iter().chain(right).map(|&c| c.to_owned()).collect(),
            left: left.len(),
            rows: Vec::new(),
            total: None,
        }
    }

    /// A row of a group's values (`-` for none) and its `cells`.
    fn row(&mut self, group: &[String], cells: Vec<String>) {
        let mut row: Vec<String> = group.iter().map(|v| or_dash(v)).collect();
        row.extend(cells);
        self.rows.push(row);
    }

    /// The total line: `total` under the dimensions, then `cells`.
    fn total(&mut self, cells: Vec<String>) {
        let mut row = vec![String::new(); self.left];
        if let Some(first) = row.first_mut() {
            "total".clone_into(first);
        }
        row.extend(cells);
        self.total = Some(row);
    }

    fn render(&self) -> String {
        let mut widths = vec![0; self.header.len()];
        let all = std::iter::once(&self.header)
            .chain(&self.rows)
            .chain(&self.total);
        for row in all {
            for (width, cell) in widths.iter_mut().zip(row) {
                *width = (*width).max(cell.chars().count());
            }
        }
        let line = |row: &[String]| {
            let mut text = String::new();
            for (i, (cell, &width)) in row.iter().zip(&widths).enumerate() {
                let gap = if i == 0 { "" } else { "  " };
                let _ = if i < self.left {
                    write!(text, "{gap}{cell:<width$}")
                } else {
                    write!(text, "{gap}{cell:>width$}")
                };
            }
            format!("{}\n", text.trim_end())
        };
        let mut out = line(&self.header);
        for row in &self.rows {
            out.push_str(&line(row));
        }
        if let Some(total) = &self.total {
            let rule = widths.iter().sum::<usize>() + 2 * widths.len().saturating_sub(1);
            out.push_str(&"-".repeat(rule));
            out.push('\n');
            out.push_str(&line(total));
        }
        out
    }
}

/// `value`, or `-` when empty.
fn or_dash(value: &str) -> String {
    if value.is_empty() {
        "-".to_owned()
    } else {
        value.to_owned()
    }
}

/// Micro-USD as dollars to the micro-dollar: `$1,234.567890`, `-$0.000250`.
pub(super) fn dollars(micros: i64) -> String {
    let abs = micros.unsigned_abs();
    let whole = thousands(i64::try_from(abs / 1_000_000).unwrap_or(i64::MAX));
    let sign = if micros < 0 { "-" } else { "" };
    format!("{sign}${whole}.{:06}", abs % 1_000_000)
}

/// A percentage to two decimals (`-` for none).
pub(super) fn percent(pct: Option<f64>) -> String {
    pct.map_or_else(|| "-".to_owned(), |p| format!("{p:.2}%"))
}
