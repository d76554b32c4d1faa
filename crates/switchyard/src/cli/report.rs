//! `switchyard report`: usage and cost from the store, over a time range,
//! grouped and filtered, as a table, JSON or CSV.
//!
//! Without `--reprice`, the sums come from the hourly rollups (one query,
//! however many requests); a month is folded from the store's days. With
//! `--reprice FILE`, every record of the usage log in the range is read, page
//! by page, and priced again at the other list, one request at a time (a
//! long-prompt tier depends on each request's own prompt): `tally.rs` adds
//! them up, `render.rs` writes the result.
//!
//! Both count whole UTC hours, the rollups' grain: from the start of the hour
//! `--from` falls in, to the end of the hour `--to` falls in (unless `--to`
//! is that hour's start), so that both see the same requests.

mod render;
mod tally;
#[cfg(test)]
mod tests;

use std::fmt;
use std::io::Write as _;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use clap::{Args, ValueEnum};
use indicatif::{ProgressBar, ProgressDrawTarget, ProgressState, ProgressStyle};
use switchyard_store::{CostQuery, Store, StoreError, UsageCursor, UsageFilter};

use super::StoreAt;
use crate::config::Problems;
use crate::pricing::PriceList;
use crate::usage::report::{now_secs, unix_seconds};
use tally::{Dimension, Grouping, Repricing};

/// The span of a report when `--from` is not given.
const DEFAULT_SPAN: i64 = 30 * 86_400;

/// Records read from the store at once (the most it answers).
const PAGE: u32 = 1_000;

/// The seconds of an hour, the rollups' grain.
const HOUR: i64 = 3_600;

/// `switchyard report`
#[derive(Debug, Args)]
pub struct ReportArgs {
    /// Where the store is.
    #[command(flatten)]
    store: StoreAt,
    /// From this time: RFC 3339, a date (its midnight UTC) or unix seconds
    /// [default: 30 days before --to].
    #[arg(long, value_parser = time)]
    from: Option<i64>,
    /// Before this time (the same forms) [default: now].
    #[arg(long, value_parser = time)]
    to: Option<i64>,
    /// Group by these, comma-separated [default: model,day; with --reprice: model,month].
    #[arg(long, value_enum, value_delimiter = ',')]
    by: Vec<Dimension>,
    /// Only the requests of this key (its id).
    #[arg(long)]
    key: Option<String>,
    /// Only the requests of this team (its id).
    #[arg(long)]
    team: Option<String>,
    /// Only the requests for this public model.
    #[arg(long)]
    model: Option<String>,
    /// Only the requests served by this provider.
    #[arg(long)]
    provider: Option<String>,
    /// Only the requests with this tag.
    #[arg(long)]
    tag: Option<String>,
    /// What the same requests would have cost at this price list (a file in
    /// the format of `pricing.file`, or `builtin`), each priced by its
    /// upstream model, else by its public model.
    #[arg(long, value_name = "FILE|builtin")]
    reprice: Option<PathBuf>,
    /// `table`, `json` or `csv`.
    #[arg(long, value_enum, default_value = "table")]
    format: Format,
    /// No progress bar while `--reprice` reads the usage log.
    #[arg(long, short)]
    quiet: bool,
}

/// How the report is printed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Format {
    /// Aligned columns and a total line, for people.
    Table,
    /// One object: the range, the grouping, the rows and their total.
    Json,
    /// A header line and one line per row.
    Csv,
}

/// Why a report could not be made.
#[derive(Debug, thiserror::Error)]
pub enum ReportError {
    /// `--from` is not before `--to`.
    #[error("`--from` must be before `--to`")]
    EmptyRange,
    /// The price list of `--reprice` has problems.
    #[error("{0}{source}: {count} problem(s)", source = .0.source, count = .0.list.len())]
    Prices(Problems),
    /// The store failed a query.
    #[error("the store: {0}")]
    Store(#[from] StoreError),
    /// The report could not be written out.
    #[error("cannot write the report: {0}")]
    Write(#[from] std::io::Error),
    /// The report could not be made JSON.
    #[error("cannot write the report as JSON: {0}")]
    Json(#[from] serde_json::Error),
    /// The report could not be made CSV.
    #[error("cannot write the report as CSV: {0}")]
    Csv(#[from] csv::Error),
}

/// Runs `switchyard report`: exit 1 when the arguments, the price list or
/// the store fail it.
pub async fn report(args: ReportArgs) -> ExitCode {
    let plan = match plan(&args, now_secs()) {
        Ok(plan) => plan,
        Err(e) => return failed(&e),
    };
    let Some(opened) = super::open(&args.store).await else {
        return ExitCode::FAILURE;
    };
    let written = run(opened.store.as_ref(), &args, &plan)
        .await
        .and_then(|text| Ok(std::io::stdout().lock().write_all(text.as_bytes())?));
    match written {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => failed(&e),
    }
}

fn failed(e: &ReportError) -> ExitCode {
    eprintln!("error: {e}");
    ExitCode::FAILURE
}

/// What a report is of, from its arguments.
struct Plan {
    range: Range,
    grouping: Grouping,
    /// The other price list and its name, with `--reprice`.
    reprice: Option<(PriceList, String)>,
}

/// A range of whole hours, unix seconds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Range {
    /// The start of the first hour.
    from: i64,
    /// The end of the last hour.
    to: i64,
}

impl Range {
    /// The hours from the one `from` falls in to the one before `to`
    /// (the one `to` falls in too, unless `to` is its start); `to` defaults
    /// to just after `now`, `from` to [`DEFAULT_SPAN`] before `to`.
    fn new(from: Option<i64>, to: Option<i64>, now: i64) -> Result<Self, ReportError> {
        let to = to.unwrap_or(now.saturating_add(1));
        let from = from.unwrap_or(to.saturating_sub(DEFAULT_SPAN));
        if from >= to {
            return Err(ReportError::EmptyRange);
        }
        Ok(Self {
            from: from.div_euclid(HOUR) * HOUR,
            to: to.saturating_add(HOUR - 1).div_euclid(HOUR) * HOUR,
        })
    }
}

/// The range, the grouping and the other price list of `args`.
fn plan(args: &ReportArgs, now: i64) -> Result<Plan, ReportError> {
    let range = Range::new(args.from, args.to, now)?;
    let dims = match (args.by.is_empty(), &args.reprice) {
        (false, _) => args.by.clone(),
        (true, None) => vec![Dimension::Model, Dimension::Day],
        (true, Some(_)) => vec![Dimension::Model, Dimension::Month],
    };
    let reprice = match &args.reprice {
        None => None,
        Some(path) if path.as_os_str() == "builtin" => {
            let list = PriceList::built_in()
                .cloned()
                .map_err(|problems| ReportError::Prices(problems.clone()))?;
            Some((list, "built-in".to_owned()))
        }
        Some(path) => {
            let list = PriceList::load(path).map_err(ReportError::Prices)?;
            Some((list, path.display().to_string()))
        }
    };
    Ok(Plan {
        range,
        grouping: Grouping::new(&dims),
        reprice,
    })
}

/// The report's text.
async fn run(store: &dyn Store, args: &ReportArgs, plan: &Plan) -> Result<String, ReportError> {
    let query = CostQuery {
        from: plan.range.from,
        to: plan.range.to,
        key_id: args.key.clone(),
        team_id: args.team.clone(),
        model: args.model.clone(),
        provider: args.provider.clone(),
        tag: args.tag.clone(),
        group_by: plan.grouping.stored().to_vec(),
    };
    let Some((list, source)) = &plan.reprice else {
        let costs = plan.grouping.fold(store.costs(&query).await?);
        return render::costs(args.format, plan.range, &plan.grouping, &costs);
    };
    // The rollups' count of the requests, for the progress bar and to tell
    // when the records of the range are fewer (trimmed sooner).
    let totals = CostQuery {
        group_by: Vec::new(),
        ..query
    };
    let in_rollups = store
        .costs(&totals)
        .await
        .ok()
        .and_then(|rows| rows.first().map(|row| row.requests))
        .and_then(|n| u64::try_from(n).ok())
        .filter(|&n| n > 0);
    let filter = UsageFilter {
        from: Some(plan.range.from.saturating_mul(1000)),
        to: Some(plan.range.to.saturating_mul(1000)),
        key_id: args.key.clone(),
        team_id: args.team.clone(),
        model: args.model.clone(),
        provider: args.provider.clone(),
        ..UsageFilter::default()
    };
    let mut repricing = Repricing::new(list, &plan.grouping, args.tag.as_deref());
    let bar = progress(in_rollups, args.quiet);
    let scanned = scan(store, &filter, &bar, &mut repricing).await;
    bar.finish_and_clear();
    scanned?;
    let repriced = repricing.finish();
    if let Some(in_rollups) = in_rollups
        && repriced.counted < in_rollups
    {
        eprintln!(
            "note: the rollups count {} requests in this range, the usage log keeps {} of them \
             (records are trimmed after `usage.retention`): only those are repriced",
            crate::usage::report::thousands(i64::try_from(in_rollups).unwrap_or(i64::MAX)),
            crate::usage::report::thousands(i64::try_from(repriced.counted).unwrap_or(i64::MAX)),
        );
    }
    if args.format == Format::Csv && !repriced.unpriced.is_empty() {
        eprint!("{}", render::unpriced_note(list, &repriced));
    }
    render::repriced(
        args.format,
        plan.range,
        &plan.grouping,
        (list, source),
        &repriced,
    )
}

/// Reads every record `filter` finds, newest first, into `repricing`.
async fn scan(
    store: &dyn Store,
    filter: &UsageFilter,
    bar: &ProgressBar,
    repricing: &mut Repricing<'_>,
) -> Result<(), StoreError> {
    let mut after: Option<UsageCursor> = None;
    loop {
        let page = store.usage(filter, after.as_ref(), PAGE).await?;
        for record in &page.records {
            repricing.add(record);
        }
        bar.inc(page.records.len() as u64);
        match page.next {
            Some(next) => after = Some(next),
            None => return Ok(()),
        }
    }
}

/// A progress bar on stderr over `total` records, or a spinner with a count
/// when the total is unknown; hidden with `quiet` or when stderr is not a
/// terminal.
fn progress(total: Option<u64>, quiet: bool) -> ProgressBar {
    let (bar, template) = match total {
        Some(total) => (
            ProgressBar::new(total),
            "{wide_bar} {human_pos}/{human_len} records ({rate}, {eta} left)",
        ),
        None => (
            ProgressBar::new_spinner(),
            "{spinner} {human_pos} records ({rate})",
        ),
    };
    if quiet {
        bar.set_draw_target(ProgressDrawTarget::hidden());
    }
    if let Ok(style) = ProgressStyle::with_template(template) {
        bar.set_style(
            style.with_key("rate", |state: &ProgressState, w: &mut dyn fmt::Write| {
                let _ = write!(w, "{:.0}/s", state.per_sec());
            }),
        );
    }
    bar.enable_steady_tick(Duration::from_millis(100));
    bar
}

/// A time argument, in unix seconds.
fn time(text: &str) -> Result<i64, String> {
    unix_seconds(text)
        .ok_or_else(|| "must be RFC 3339, a date (YYYY-MM-DD) or unix seconds".to_owned())
}
