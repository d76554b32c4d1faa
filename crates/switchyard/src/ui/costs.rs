//! `/costs`: spend over time by model, provider, deployment, key, team or
//! tag (per day or hour), savings, budget burn-down per key and team, the
//! CSV export, and what the same traffic would cost at the built-in price
//! lists.

use std::collections::BTreeMap;

use axum::extract::{Query, State};
use axum::http::{HeaderValue, header};
use axum::response::{IntoResponse, Response};
use maud::{Markup, html};
use serde::Deserialize;
use switchyard_store::{
    BudgetPeriod, CostRow, GroupBy, KeyFilter, Limits, PageRequest, SpendScope, Store,
};

use super::UiState;
use super::chart::{self, Axes, Series};
use super::data::{self, DAY, HOUR};
use super::error::UiError;
use super::format::{count, percent, usd};
use super::layout::{self, Chrome, Frame};
use super::session::{Scope, Session};
use crate::keys::unix_now;
use crate::limits::budget::period_start;
use crate::pricing::PriceList;

/// Lines drawn at most; the other groups are summed into one more.
const LINES: usize = 6;
/// Keys and teams whose budgets are shown at most.
const BUDGETS: u32 = 200;

/// The page's question, from its query string.
#[derive(Debug, Default, Deserialize)]
pub struct CostParams {
    /// `24h`, `7d`, `30d` or `90d`.
    range: Option<String>,
    /// The dimension.
    by: Option<String>,
    /// `day` or `hour`.
    bucket: Option<String>,
    /// The price list of the reprice view: `originals` or a relay.
    list: Option<String>,
}

/// The question, read and checked.
struct Ask {
    range: &'static str,
    from: i64,
    to: i64,
    by: GroupBy,
    bucket: GroupBy,
}

const RANGES: [(&str, i64); 4] = [
    ("24h", DAY),
    ("7d", 7 * DAY),
    ("30d", 30 * DAY),
    ("90d", 90 * DAY),
];
const DIMENSIONS: [GroupBy; 6] = [
    GroupBy::Model,
    GroupBy::Provider,
    GroupBy::Deployment,
    GroupBy::Key,
    GroupBy::Team,
    GroupBy::Tag,
];

impl Ask {
    fn read(params: &CostParams, scope: &Scope) -> Result<Self, UiError> {
        let range = params.range.as_deref().unwrap_or("30d");
        let (range, span) = RANGES
            .iter()
            .find(|(name, _)| *name == range)
            .copied()
            .ok_or_else(|| {
                UiError::Invalid(format!("range: `{range}` is not one of 24h, 7d, 30d, 90d"))
            })?;
        let by_name = params.by.as_deref().unwrap_or("model");
        let by = GroupBy::parse(by_name)
            .filter(|g| DIMENSIONS.contains(g))
            .ok_or_else(|| UiError::Invalid(format!("by: `{by_name}` is not a dimension")))?;
        if by == GroupBy::Team && !matches!(scope, Scope::All) {
            return Err(UiError::Forbidden(
                "a team's session sees its own team only",
            ));
        }
        let bucket = match params.bucket.as_deref() {
            None | Some("day") if span > DAY => GroupBy::Day,
            None | Some("day" | "hour") => GroupBy::Hour,
            Some(other) => {
                return Err(UiError::Invalid(format!(
                    "bucket: `{other}` is not day or hour"
                )));
            }
        };
        let to = data::hour_end(unix_now());
        let from = if bucket == GroupBy::Day {
            data::day_start(to - span) + DAY
        } else {
            to - span
        };
        Ok(Self {
            range,
            from,
            to,
            by,
            bucket,
        })
    }

    /// The start of the range's last bucket (today's, or this hour's).
    fn last_bucket(&self) -> i64 {
        (self.to - 1).div_euclid(self.step()) * self.step()
    }

    fn step(&self) -> i64 {
        if self.bucket == GroupBy::Day {
            DAY
        } else {
            HOUR
        }
    }

    fn query_string(&self) -> String {
        format!(
            "range={}&by={}&bucket={}",
            self.range,
            self.by.as_str(),
            self.bucket.as_str()
        )
    }
}

/// `GET /costs`.
pub async fn page(
    State(state): State<UiState>,
    session: Session,
    Query(params): Query<CostParams>,
) -> Result<Response, UiError> {
    let store = state.app.process.keys.store().as_ref();
    let scope = session.viewer.scope();
    let ask = Ask::read(&params, &scope)?;
    let query = |by: Vec<GroupBy>| data::cost_query(&scope, ask.from, ask.to, by);
    let (over_time, priced, budgets) = tokio::join!(
        over_time(store, &scope, &ask),
        data::costs(store, query(vec![GroupBy::Model, GroupBy::Deployment])),
        budgets(store, &scope),
    );
    let ((groups, over_time), priced, budgets) = (over_time?, priced?, budgets?);
    let mut total = CostRow::default();
    groups.iter().for_each(|row| total.add(row));
    let series = series(&ask, &groups, &over_time);
    let chrome = session.chrome();
    let list = PriceList::built_in().ok();
    let body = html! {
        h1 { "Costs" }
        form.toolbar #cost-params method="get" action=(chrome.href("/costs")) {
            div { label for="range" { "Range" }
                select #range name="range" {
                    @for (name, _) in RANGES { option value=(name) selected[name == ask.range] { "last " (name) } }
                } }
            div { label for="by" { "By" }
                select #by name="by" {
                    @for dim in DIMENSIONS {
                        @if dim != GroupBy::Team || matches!(scope, Scope::All) {
                            option value=(dim.as_str()) selected[dim == ask.by] { (dim.as_str()) }
                        }
                    }
                } }
            div { label for="bucket" { "Per" }
                select #bucket name="bucket" {
                    option value="day" selected[ask.bucket == GroupBy::Day] { "day" }
                    option value="hour" selected[ask.bucket == GroupBy::Hour] { "hour" }
                } }
            button.primary type="submit" { "Show" }
            a.button #export-csv href={ (chrome.href("/costs.csv")) "?" (ask.query_string()) } download { "Export CSV" }
        }
        div.cards {
            div.card { div.label { "Spend" } div.value #range-spend { (usd(total.cost_micros)) } div.note { "last " (ask.range) } }
            div.card { div.label { "Requests" } div.value { (count(total.requests)) } div.note { (percent(total.errors, total.requests)) " failed" } }
            div.card { div.label { "Saved" } div.value #range-saved { (usd(total.saved_micros)) } div.note { "cache hits and cheaper fallbacks" } }
            div.card { div.label { "Tokens" } div.value { (count(total.input_tokens + total.output_tokens)) }
                div.note { (count(total.input_tokens)) " in · " (count(total.output_tokens)) " out" } }
        }
        div.panel #spend-chart {
            h2 { "Spend per " (ask.bucket.as_str()) " by " (ask.by.as_str()) }
            (chart::lines(&series, Axes {
                from: ask.from,
                to: ask.last_bucket(),
                hourly: ask.bucket == GroupBy::Hour,
                y_desc: if ask.bucket == GroupBy::Day { "USD per day" } else { "USD per hour" },
                y_label: chart::usd_axis,
                width: 1000,
            }))
        }
        div.table-wrap {
            table #cost-table {
                thead { tr {
                    th { (ask.by.as_str()) } th.num { "requests" } th.num { "errors" } th.num { "cache hits" }
                    th.num { "input tokens" } th.num { "output tokens" } th.num { "avg latency" }
                    th.num { "spend" } th.num { "saved" } th.num { "share" }
                } }
                tbody {
                    @for row in &groups {
                        @let name = row.group.first().map_or("", String::as_str);
                        tr {
                            td { @if name.is_empty() { span.muted { "(none)" } } @else { (name) } }
                            td.num { (count(row.requests)) }
                            td.num { (count(row.errors)) }
                            td.num { (count(row.cache_hits)) }
                            td.num { (count(row.input_tokens)) }
                            td.num { (count(row.output_tokens)) }
                            td.num { (super::format::micros(row.latency_us.checked_div(row.requests).unwrap_or(0))) }
                            td.num { (usd(row.cost_micros)) }
                            td.num { (usd(row.saved_micros)) }
                            td.num { (percent(row.cost_micros, total.cost_micros)) }
                        }
                    }
                    @if groups.is_empty() { tr { td colspan="10" .muted { "No requests in this range." } } }
                }
            }
        }
        h2 { "Budgets" }
        (budget_table(&chrome, &budgets))
        h2 { "Reprice" }
        @if let Some(list) = list {
            (reprice(&chrome, &ask, &params, list, &priced))
        }
    };
    let frame = Frame {
        name: "costs",
        section: "costs",
        title: "Costs",
        live: None,
    };
    Ok(layout::page(&chrome, frame, body))
}

/// The range's sums per group (largest cost first), and per bucket and
/// group for the chart. Grouped by key — hundreds of groups, each with its
/// rows per model and deployment — the groups come first, then the buckets
/// of the largest few by themselves, and the rest as the whole less those;
/// by anything else, one read gives both.
async fn over_time(
    store: &dyn Store,
    scope: &Scope,
    ask: &Ask,
) -> Result<(Vec<CostRow>, Vec<CostRow>), UiError> {
    let query = |by: Vec<GroupBy>| data::cost_query(scope, ask.from, ask.to, by);
    if ask.by != GroupBy::Key {
        let rows = data::costs(store, query(vec![ask.bucket, ask.by])).await?;
        return Ok((per_group(&rows, 1), rows));
    }
    // The sums per key read every key's rollups of the range: its two
    // halves are read at once (two of the store's connections), then added.
    let days = (ask.to - ask.from).div_euclid(DAY);
    let middle = if ask.bucket == GroupBy::Day && days >= 2 {
        ask.from + days / 2 * DAY
    } else {
        ask.to
    };
    let half = |from: i64, to: i64| data::cost_query(scope, from, to, vec![GroupBy::Key]);
    let (first, second, whole) = tokio::join!(
        data::costs(store, half(ask.from, middle)),
        async {
            if middle < ask.to {
                data::costs(store, half(middle, ask.to)).await
            } else {
                Ok(Vec::new())
            }
        },
        data::costs(store, query(vec![ask.bucket])),
    );
    let (mut groups, whole) = (first?, whole?);
    groups.extend(second?);
    let groups = per_group(&groups, 0);
    let top: Vec<&str> = groups
        .iter()
        .take(LINES)
        .filter_map(|r| r.group.first().map(String::as_str))
        .collect();
    let lines = futures_util::future::try_join_all(top.iter().map(|key| {
        let mut one = query(vec![ask.bucket]);
        one.key_id = Some((*key).to_owned());
        data::costs(store, one)
    }))
    .await?;
    let mut rows = Vec::new();
    let mut rest: BTreeMap<String, CostRow> = whole
        .into_iter()
        .filter_map(|r| Some((r.group.first()?.clone(), r)))
        .collect();
    for (key, line) in top.iter().zip(lines) {
        for mut row in line {
            let Some(at) = row.group.first().cloned() else {
                continue;
            };
            if let Some(left) = rest.get_mut(&at) {
                left.cost_micros -= row.cost_micros;
            }
            row.group = vec![at, (*key).to_owned()];
            rows.push(row);
        }
    }
    // What the other keys spent, per bucket: a name no key has, so that the
    // chart draws it as "others".
    rows.extend(rest.into_iter().map(|(at, row)| CostRow {
        group: vec![at, "\u{0}others".to_owned()],
        ..row
    }));
    Ok((groups, rows))
}

/// Rows grouped by a time bucket and a dimension, summed per dimension;
/// the largest cost first, then by name.
fn per_group(rows: &[CostRow], dimension: usize) -> Vec<CostRow> {
    let mut sums: BTreeMap<&str, CostRow> = BTreeMap::new();
    for row in rows {
        let name = row.group.get(dimension).map_or("", String::as_str);
        sums.entry(name)
            .or_insert_with(|| CostRow {
                group: vec![name.to_owned()],
                ..CostRow::default()
            })
            .add(row);
    }
    let mut groups: Vec<CostRow> = sums.into_values().collect();
    groups.sort_by(|a, b| {
        b.cost_micros
            .cmp(&a.cost_micros)
            .then_with(|| a.group.cmp(&b.group))
    });
    groups
}

/// The lines of the chart: the groups that cost most, and the rest as one,
/// each bucket of the range a point (zero when it had no request).
fn series(ask: &Ask, groups: &[CostRow], over_time: &[CostRow]) -> Vec<Series> {
    let top: Vec<&str> = groups
        .iter()
        .take(LINES)
        .map(|r| r.group.first().map_or("", String::as_str))
        .collect();
    let others = groups.len() > LINES;
    let mut sums: BTreeMap<(usize, i64), f64> = BTreeMap::new();
    for row in over_time {
        let (Some(at), Some(name)) = (
            row.group.first().and_then(|t| t.parse::<i64>().ok()),
            row.group.get(1),
        ) else {
            continue;
        };
        let line = top.iter().position(|t| t == name).unwrap_or(LINES);
        *sums.entry((line, at)).or_default() += row.cost_micros as f64 / 1e6;
    }
    let lines = top.len() + usize::from(others);
    (0..lines)
        .map(|line| {
            let name = top
                .get(line)
                .map_or("others", |n| if n.is_empty() { "(none)" } else { n });
            let index = if line < top.len() { line } else { LINES };
            let points = (ask.from..ask.to)
                .step_by(usize::try_from(ask.step()).unwrap_or(1))
                .map(|at| (at, sums.get(&(index, at)).copied().unwrap_or(0.0)))
                .collect();
            Series {
                name: name.to_owned(),
                points,
            }
        })
        .collect()
}

/// A key's or team's budget in its current period.
#[derive(Debug)]
struct Burn {
    kind: &'static str,
    id: String,
    name: String,
    budget: i64,
    period: BudgetPeriod,
    spent: i64,
    /// Where the spend is headed by the period's end at its pace so far.
    projected: Option<i64>,
}

/// The budgets `scope` may see, with their spend so far.
async fn budgets(store: &dyn Store, scope: &Scope) -> Result<Vec<Burn>, UiError> {
    let page = PageRequest {
        after: None,
        limit: BUDGETS,
    };
    let mut owners: Vec<(&'static str, String, String, Limits)> = Vec::new();
    let team = match scope {
        Scope::All => None,
        Scope::Team(team) => Some(team.clone()),
        Scope::Key(key) => {
            if let Some(k) = store.key(key).await.map_err(UiError::Store)? {
                owners.push(("key", k.id, k.name, k.limits));
            }
            None
        }
    };
    if !matches!(scope, Scope::Key(_)) {
        let filter = KeyFilter {
            team_id: team.clone(),
            ..KeyFilter::default()
        };
        let keys = store
            .list_keys(&filter, &page)
            .await
            .map_err(UiError::Store)?;
        owners.extend(
            keys.items
                .into_iter()
                .map(|k| ("key", k.id, k.name, k.limits)),
        );
        match &team {
            Some(team) => {
                if let Some(t) = store.team(team).await.map_err(UiError::Store)? {
                    owners.push(("team", t.id, t.name, t.limits));
                }
            }
            None => {
                let teams = store.list_teams(&page).await.map_err(UiError::Store)?;
                owners.extend(
                    teams
                        .items
                        .into_iter()
                        .map(|t| ("team", t.id, t.name, t.limits)),
                );
            }
        }
    }
    let now = unix_now();
    let spends =
        futures_util::future::try_join_all(owners.iter().filter_map(|(kind, id, _, limits)| {
            let budget = limits.budget?;
            let scope = if *kind == "key" {
                SpendScope::Key
            } else {
                SpendScope::Team
            };
            Some(store.spend(scope, id, period_start(budget.period, now)))
        }))
        .await
        .map_err(UiError::Store)?;
    let budgeted = owners
        .into_iter()
        .filter_map(|(kind, id, name, limits)| Some((kind, id, name, limits.budget?)));
    let mut burns = Vec::new();
    for ((kind, id, name, budget), spent) in budgeted.zip(spends) {
        let start = period_start(budget.period, now);
        let end = match budget.period {
            BudgetPeriod::Day => Some(start + DAY),
            BudgetPeriod::Week => Some(start + 7 * DAY),
            BudgetPeriod::Month => Some(period_start(BudgetPeriod::Month, start + 32 * DAY)),
            BudgetPeriod::Total => None,
        };
        let projected = end.map(|end| {
            let elapsed = (now - start).max(HOUR) as f64;
            (spent as f64 * (end - start) as f64 / elapsed) as i64
        });
        burns.push(Burn {
            kind,
            id,
            name,
            budget: budget.micros,
            period: budget.period,
            spent,
            projected,
        });
    }
    burns.sort_by(|a, b| {
        let share = |b: &Burn| b.spent as f64 / b.budget.max(1) as f64;
        share(b).total_cmp(&share(a))
    });
    Ok(burns)
}

/// The burn-down of a budget of `micros` per `period` that `scope` spends
/// against: its spend so far this period, added up day by day (hour by hour
/// for a daily budget), beside the budget; `None` for a budget that never
/// resets.
pub async fn burn_chart(
    store: &dyn Store,
    scope: &Scope,
    micros: i64,
    period: BudgetPeriod,
) -> Result<Option<Markup>, UiError> {
    let now = unix_now();
    let start = period_start(period, now);
    let (end, bucket, step) = match period {
        BudgetPeriod::Day => (start + DAY, GroupBy::Hour, HOUR),
        BudgetPeriod::Week => (start + 7 * DAY, GroupBy::Day, DAY),
        BudgetPeriod::Month => (
            period_start(BudgetPeriod::Month, start + 32 * DAY),
            GroupBy::Day,
            DAY,
        ),
        BudgetPeriod::Total => return Ok(None),
    };
    let rows = data::costs(
        store,
        data::cost_query(scope, start, data::hour_end(now), vec![bucket]),
    )
    .await?;
    let mut spent = 0.0;
    let mut points = Vec::new();
    for at in (start..data::hour_end(now).min(end)).step_by(usize::try_from(step).unwrap_or(1)) {
        let row = rows
            .iter()
            .find(|r| r.group.first().and_then(|g| g.parse::<i64>().ok()) == Some(at));
        spent += row.map_or(0.0, |r| r.cost_micros as f64 / 1e6);
        points.push((at, spent));
    }
    let budget = micros as f64 / 1e6;
    let series = vec![
        Series {
            name: "spent so far".to_owned(),
            points,
        },
        Series {
            name: "budget".to_owned(),
            points: vec![(start, budget), (end - step, budget)],
        },
    ];
    Ok(Some(chart::lines(
        &series,
        Axes {
            from: start,
            to: end - step,
            hourly: bucket == GroupBy::Hour,
            y_desc: "USD this period",
            y_label: chart::usd_axis,
            width: 640,
        },
    )))
}

fn budget_table(chrome: &Chrome<'_>, burns: &[Burn]) -> Markup {
    html! {
        div.table-wrap {
            table #budgets {
                thead { tr {
                    th { "key or team" } th { "period" } th.num { "spent" } th.num { "budget" }
                    th { "used" } th.num { "at this pace by the period's end" }
                } }
                tbody {
                    @for burn in burns {
                        @let used = burn.spent as f64 / burn.budget.max(1) as f64;
                        @let level = if used >= 1.0 { "bad" } else if used >= 0.8 { "warn" } else { "" };
                        tr data-budget-of=(burn.id) {
                            td { span.badge { (burn.kind) } " "
                                a href=(chrome.href(&format!("/{}s/{}", burn.kind, burn.id))) { (burn.name) } }
                            td { (burn.period.as_str()) }
                            td.num { (usd(burn.spent)) }
                            td.num { (usd(burn.budget)) }
                            td { div.bar.(level) title=(format!("{:.1} %", used * 100.0)) {
                                span style=(format!("width: {:.1}%", (used * 100.0).min(100.0))) {} } }
                            td.num {
                                @match burn.projected {
                                    Some(p) => {
                                        (usd(p)) " "
                                        @if p > burn.budget { span.badge.bad { "over" } } @else { span.badge.ok { "within" } }
                                    }
                                    None => span.muted { "never resets" },
                                }
                            }
                        }
                    }
                    @if burns.is_empty() { tr { td colspan="6" .muted { "No key or team has a budget." } } }
                }
            }
        }
    }
}

/// What the range's traffic would have cost at the built-in list: at the
/// original providers' prices, or at a relay's.
fn reprice(
    chrome: &Chrome<'_>,
    ask: &Ask,
    params: &CostParams,
    list: &PriceList,
    priced: &[CostRow],
) -> Markup {
    let relays = data::relays(list);
    let chosen = params
        .list
        .as_deref()
        .filter(|l| relays.iter().any(|r| r == l))
        .map(str::to_owned);
    let mut options: Vec<(String, String)> = vec![(
        "originals".to_owned(),
        "the original providers' prices".to_owned(),
    )];
    options.extend(relays.iter().map(|r| (r.clone(), format!("{r}'s prices"))));
    let rows: Vec<(String, data::Repriced)> = options
        .iter()
        .map(|(name, label)| {
            let relay = (name != "originals").then_some(name.as_str());
            (label.clone(), data::reprice(priced, list, relay))
        })
        .collect();
    let selected = chosen.as_deref().unwrap_or("originals");
    html! {
        div.panel #reprice {
            p.muted { "What this range's traffic would have cost at the built-in price list "
                code { (list.version()) } ", each request priced by its upstream model (else its public model), at base rates." }
            form.toolbar method="get" action=(chrome.href("/costs")) {
                input type="hidden" name="range" value=(ask.range);
                input type="hidden" name="by" value=(ask.by.as_str());
                input type="hidden" name="bucket" value=(ask.bucket.as_str());
                div { label for="price-list" { "At" }
                    select #price-list name="list" {
                        @for (name, label) in &options { option value=(name) selected[name == selected] { (label) } }
                    } }
                button type="submit" { "Reprice" }
            }
            table {
                thead { tr { th { "price list" } th.num { "would have cost" } th.num { "actually cost" } th.num { "difference" } } }
                tbody {
                    @for ((name, _), (label, r)) in options.iter().zip(&rows) {
                        tr.selected[name == selected] {
                            td { (label) }
                            td.num { (usd(r.micros)) }
                            td.num { (usd(r.actual_micros)) }
                            td.num { (usd(r.micros - r.actual_micros)) " " span.muted { (percent(r.micros - r.actual_micros, r.micros)) } }
                        }
                    }
                }
            }
            @if let Some((_, r)) = options.iter().zip(&rows).find(|((n, _), _)| n == selected).map(|(o, r)| (o, &r.1)) {
                @if !r.unpriced.is_empty() {
                    p.small.muted { "Not in that list (left out above): "
                        @for (i, (model, cost)) in r.unpriced.iter().enumerate() {
                            @if i > 0 { ", " } code { (model) } " (" (usd(*cost)) ")"
                        } }
                }
            }
        }
    }
}

/// A name as a CSV cell a spreadsheet shows as text: one that begins as a
/// formula would (`=`, `+`, `-`, `@`, a tab or a carriage return) gets a `'`
/// in front (a tag or a model name is the client's text).
fn spreadsheet_safe(name: &str) -> String {
    if name.starts_with(['=', '+', '-', '@', '\t', '\r']) {
        format!("'{name}")
    } else {
        name.to_owned()
    }
}

/// `GET /costs.csv`: the page's report as CSV, one row per bucket and group.
pub async fn csv(
    State(state): State<UiState>,
    session: Session,
    Query(params): Query<CostParams>,
) -> Result<Response, UiError> {
    let store = state.app.process.keys.store().as_ref();
    let scope = session.viewer.scope();
    let ask = Ask::read(&params, &scope)?;
    let mut rows = data::costs(
        store,
        data::cost_query(&scope, ask.from, ask.to, vec![ask.bucket, ask.by]),
    )
    .await?;
    rows.sort_by(|a, b| a.group.cmp(&b.group));
    let mut out = csv::Writer::from_writer(Vec::new());
    let header = [
        ask.bucket.as_str(),
        ask.by.as_str(),
        "requests",
        "errors",
        "cache_hits",
        "input_tokens",
        "cached_input_tokens",
        "output_tokens",
        "reasoning_tokens",
        "cost_usd",
        "saved_usd",
    ];
    let failed = |e: csv::Error| {
        tracing::warn!(error = %e, "dashboard: the CSV could not be written");
        UiError::Unavailable("the CSV could not be written")
    };
    out.write_record(header).map_err(failed)?;
    for row in &rows {
        let at = row.group.first().map_or("", String::as_str);
        let name = row.group.get(1).map_or("", String::as_str);
        out.write_record([
            crate::usage::report::label(ask.bucket, at),
            spreadsheet_safe(name),
            row.requests.to_string(),
            row.errors.to_string(),
            row.cache_hits.to_string(),
            row.input_tokens.to_string(),
            row.cached_input_tokens.to_string(),
            row.output_tokens.to_string(),
            row.reasoning_tokens.to_string(),
            format!("{:.6}", row.cost_micros as f64 / 1e6),
            format!("{:.6}", row.saved_micros as f64 / 1e6),
        ])
        .map_err(failed)?;
    }
    let bytes = out
        .into_inner()
        .map_err(|_| UiError::Unavailable("the CSV could not be written"))?;
    let disposition = format!(
        "attachment; filename=\"switchyard-costs-{}-by-{}-{}.csv\"",
        ask.range,
        ask.by.as_str(),
        ask.bucket.as_str()
    );
    let mut response = (
        [(
            header::CONTENT_TYPE,
            HeaderValue::from_static("text/csv; charset=utf-8"),
        )],
        bytes,
    )
        .into_response();
    if let Ok(value) = HeaderValue::from_str(&disposition) {
        response
            .headers_mut()
            .insert(header::CONTENT_DISPOSITION, value);
    }
    response
        .headers_mut()
        .insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    Ok(response)
}
