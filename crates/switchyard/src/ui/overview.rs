//! `/`: the overview — today's requests, errors, latency and time to first
//! token, spend today and this month, savings, the top models, keys and
//! teams, and the last day hour by hour; it refreshes itself.

use axum::extract::State;
use axum::response::Response;
use maud::{Markup, html};
use switchyard_store::{CostRow, GroupBy, Store};

use super::UiState;
use super::chart::{self, Axes, Series};
use super::data::{self, DAY, HOUR};
use super::error::UiError;
use super::format::{count, micros, percent, quantile, usd};
use super::layout::{self, Frame};
use super::session::{Scope, Session};
use crate::keys::unix_now;
use crate::pricing::PriceList;

/// Seconds between refreshes.
const LIVE: u32 = 5;
/// Records the latency percentiles are taken over at most (the newest of
/// the last hour): one page of the log, read by its time index.
const LATENCY_SAMPLE: u32 = 1_000;
/// Rows of each top list.
const TOP: usize = 5;

/// `GET /`.
pub async fn page(State(state): State<UiState>, session: Session) -> Result<Response, UiError> {
    let store = state.app.process.keys.store().as_ref();
    let scope = session.viewer.scope();
    let now = unix_now();
    let end = data::hour_end(now);
    let (today, month) = (data::day_start(now), data::month_start(now));
    let query = |from, by: &[GroupBy]| data::cost_query(&scope, from, end, by.to_vec());
    let (today_total, month_total, models, keys, teams, hours, priced, recent) = tokio::join!(
        data::total(store, query(today, &[])),
        data::total(store, query(month, &[])),
        data::costs(store, query(month, &[GroupBy::Model])),
        data::costs(store, query(month, &[GroupBy::Key])),
        data::costs(store, query(month, &[GroupBy::Team])),
        data::costs(store, query(end - DAY, &[GroupBy::Hour])),
        data::costs(store, query(month, &[GroupBy::Model, GroupBy::Deployment])),
        async {
            let mut filter = data::usage_filter(&scope);
            filter.from = Some((now - HOUR) * 1000);
            store
                .usage(&filter, None, LATENCY_SAMPLE)
                .await
                .map_err(UiError::Store)
        },
    );
    let (today_total, month_total) = (today_total?, month_total?);
    let recent = recent?.records;
    let mut latencies: Vec<i64> = recent.iter().map(|r| r.latency_us).collect();
    latencies.sort_unstable();
    let mut ttfts: Vec<i64> = recent.iter().filter_map(|r| r.ttft_us).collect();
    ttfts.sort_unstable();
    let priced = priced?;
    let originals = PriceList::built_in()
        .ok()
        .map(|list| data::reprice(&priced, list, None))
        .unwrap_or_default();
    let vs_originals = originals.micros - originals.actual_micros;
    let hours = hours?;
    let (models, mut keys, mut teams) = (models?, keys?, teams?);
    keys.truncate(TOP);
    teams.truncate(TOP);
    name_keys(store, &mut keys).await?;
    name_teams(store, &mut teams).await?;
    let spend_series = vec![Series {
        name: "spend (USD per hour)".to_owned(),
        points: points(&hours, end - DAY, end, |r| r.cost_micros as f64 / 1e6),
    }];
    let request_series = vec![
        Series {
            name: "requests per hour".to_owned(),
            points: points(&hours, end - DAY, end, |r| r.requests as f64),
        },
        Series {
            name: "errors per hour".to_owned(),
            points: points(&hours, end - DAY, end, |r| r.errors as f64),
        },
    ];
    let axes = |y_desc, y_label| Axes {
        from: end - DAY,
        to: end - HOUR,
        hourly: true,
        y_desc,
        y_label,
        width: 640,
    };
    let card = |id: &str, label: &str, value: String, note: String| {
        html! {
            div.card {
                div.label { (label) }
                div.value #(id) { (value) }
                div.note { (note) }
            }
        }
    };
    let sample = if recent.is_empty() {
        "no request in the last hour".to_owned()
    } else {
        format!("last {} requests (past hour)", count(recent.len() as i64))
    };
    let body = html! {
        h1 { "Overview" }
        @if let Scope::Team(team) = &scope { p.muted { "Team " code { (team) } ", read-only." } }
        div.cards {
            (card("requests-today", "Requests today", count(today_total.requests),
                format!("{} this month", count(month_total.requests))))
            (card("error-rate", "Error rate today", percent(today_total.errors, today_total.requests),
                format!("{} failed", count(today_total.errors))))
            (card("latency-p50", "Latency p50", quantile(&latencies, 0.5).map_or("–".into(), micros), sample.clone()))
            (card("latency-p95", "Latency p95", quantile(&latencies, 0.95).map_or("–".into(), micros), sample.clone()))
            (card("ttft-p50", "Time to first token p50", quantile(&ttfts, 0.5).map_or("–".into(), micros),
                format!("p95 {}", quantile(&ttfts, 0.95).map_or("–".into(), micros))))
            (card("spend-today", "Spend today", usd(today_total.cost_micros),
                format!("{} cache hits", count(today_total.cache_hits))))
            (card("spend-month", "Spend this month", usd(month_total.cost_micros),
                format!("{} tokens", count(month_total.input_tokens + month_total.output_tokens))))
            (card("saved-month", "Saved this month", usd(month_total.saved_micros.max(0) + vs_originals.max(0)),
                saved_note(month_total.saved_micros, vs_originals)))
        }
        div.grid2 {
            div.panel {
                h2 { "Requests, last 24 hours" }
                (chart::lines(&request_series, axes("requests per hour", chart::count_axis)))
            }
            div.panel {
                h2 { "Spend, last 24 hours" }
                (chart::lines(&spend_series, axes("USD per hour", chart::usd_axis)))
            }
        }
        div.grid2 {
            (top("top-models", "Top models this month", "model", &models))
            @if !matches!(scope, Scope::Key(_)) {
                (top("top-keys", "Top keys this month", "key", &keys))
            }
            @if matches!(scope, Scope::All) {
                (top("top-teams", "Top teams this month", "team", &teams))
            }
        }
    };
    let frame = Frame {
        name: "overview",
        section: "overview",
        title: "Overview",
        live: Some(LIVE),
    };
    Ok(layout::page(&session.chrome(), frame, body))
}

/// The points of an hourly report over `from..to`: each hour's start and
/// its value (zero for an hour without requests).
fn points(
    rows: &[CostRow],
    from: i64,
    to: i64,
    value: impl Fn(&CostRow) -> f64,
) -> Vec<(i64, f64)> {
    (from..to)
        .step_by(HOUR as usize)
        .map(|hour| {
            let row = rows
                .iter()
                .find(|r| r.group.first().and_then(|g| g.parse::<i64>().ok()) == Some(hour));
            (hour, row.map_or(0.0, &value))
        })
        .collect()
}

/// Puts each key's name in place of its id in `rows` (a configured key's
/// `config:name` is its name already).
async fn name_keys(store: &dyn Store, rows: &mut [CostRow]) -> Result<(), UiError> {
    for row in rows {
        if let Some(id) = row.group.first_mut()
            && id.starts_with("key_")
            && let Some(key) = store.key(id).await.map_err(UiError::Store)?
        {
            *id = key.name;
        }
    }
    Ok(())
}

/// Puts each team's name in place of its id in `rows`.
async fn name_teams(store: &dyn Store, rows: &mut [CostRow]) -> Result<(), UiError> {
    for row in rows {
        if let Some(id) = row.group.first_mut()
            && !id.is_empty()
            && let Some(team) = store.team(id).await.map_err(UiError::Store)?
        {
            *id = team.name;
        }
    }
    Ok(())
}

/// What the saving is made of: the cache and cheaper fallbacks, and the
/// difference from the original providers' list prices (either way).
fn saved_note(by_gateway: i64, vs_originals: i64) -> String {
    let list = if vs_originals >= 0 {
        format!("{} under the originals' list prices", usd(vs_originals))
    } else {
        format!("{} over the originals' list prices", usd(-vs_originals))
    };
    format!("{} by cache and fallbacks; {list}", usd(by_gateway))
}

/// A top list: the first rows of a report grouped by one dimension.
fn top(id: &str, title: &str, dimension: &str, rows: &[CostRow]) -> Markup {
    html! {
        div.panel {
            h2 { (title) }
            table #(id) {
                thead { tr { th { (dimension) } th.num { "requests" } th.num { "tokens" } th.num { "spend" } } }
                tbody {
                    @for row in rows.iter().take(TOP) {
                        @let name = row.group.first().map_or("", String::as_str);
                        tr {
                            td { @if name.is_empty() { span.muted { "(none)" } } @else { (name) } }
                            td.num { (count(row.requests)) }
                            td.num { (count(row.input_tokens + row.output_tokens)) }
                            td.num { (usd(row.cost_micros)) }
                        }
                    }
                    @if rows.is_empty() { tr { td colspan="4" .muted { "No requests this month." } } }
                }
            }
        }
    }
}
