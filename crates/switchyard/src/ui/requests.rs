//! `/requests`: the usage log, newest first, filtered and paged by cursor
//! (an index range per page, however long the log); `/requests/{at}.{id}`:
//! one request — its route attempt by attempt, tokens, cost and timings.

use axum::Json;
use axum::extract::{Path, Query, State};
use axum::response::Response;
use maud::{Markup, html};
use serde::Deserialize;
use serde_json::json;
use switchyard_store::{UsageCursor, UsageFilter, UsageRecord};

use super::UiState;
use super::data::{self, DAY};
use super::error::UiError;
use super::format::{count, micros, time_ms, usd};
use super::layout::{self, Chrome, Frame};
use super::session::{Scope, Session};
use crate::keys::unix_now;

/// Records on one page.
const PAGE: u32 = 50;

/// The filters of the log, from the query string (an empty field is no filter).
#[derive(Debug, Default, Deserialize)]
pub struct LogParams {
    key: Option<String>,
    team: Option<String>,
    model: Option<String>,
    status: Option<String>,
    error_type: Option<String>,
    /// `yes` or `no`.
    cached: Option<String>,
    /// `2026-12-07T10:00` (UTC), as a `datetime-local` field sends it.
    from: Option<String>,
    /// The same.
    to: Option<String>,
    /// Where the page starts: `{at}.{id}` of the last record before it.
    after: Option<String>,
}

fn given(field: &Option<String>) -> Option<&str> {
    field.as_deref().map(str::trim).filter(|v| !v.is_empty())
}

/// A `datetime-local` value (UTC) or a date, as unix milliseconds.
fn instant(field: &'static str, value: Option<&str>) -> Result<Option<i64>, UiError> {
    value
        .map(|v| {
            let text = if v.len() == 16 {
                format!("{v}:00Z")
            } else {
                v.to_owned()
            };
            crate::usage::report::unix_seconds(&text)
                .and_then(|secs| secs.checked_mul(1000))
                .ok_or_else(|| {
                    UiError::Invalid(format!(
                        "{field}: `{v}` is not a time such as 2026-12-07T10:00"
                    ))
                })
        })
        .transpose()
}

impl LogParams {
    /// The store's filter, within what `scope` may see; and whether a
    /// default window was put on it (filters no index serves).
    fn filter(&self, scope: &Scope) -> Result<(UsageFilter, bool), UiError> {
        let mut filter = data::usage_filter(scope);
        let key = given(&self.key);
        let team = given(&self.team);
        match scope {
            Scope::All => {
                filter.key_id = key.map(str::to_owned);
                filter.team_id = team.map(str::to_owned);
            }
            Scope::Team(own) => {
                if team.is_some_and(|t| t != own) {
                    return Err(UiError::Forbidden(
                        "a team's session sees its own team only",
                    ));
                }
                filter.key_id = key.map(str::to_owned);
            }
            Scope::Key(own) => {
                if key.is_some_and(|k| k != own) || team.is_some() {
                    return Err(UiError::Forbidden(
                        "a key's session sees its own requests only",
                    ));
                }
            }
        }
        filter.model = given(&self.model).map(str::to_owned);
        filter.status = given(&self.status)
            .map(|s| {
                s.parse::<i32>()
                    .map_err(|_| UiError::Invalid(format!("status: `{s}` is not a number")))
            })
            .transpose()?;
        filter.error_type = given(&self.error_type).map(str::to_owned);
        filter.cached = match given(&self.cached) {
            None | Some("any") => None,
            Some("yes") => Some(true),
            Some("no") => Some(false),
            Some(other) => {
                return Err(UiError::Invalid(format!(
                    "cached: `{other}` is not yes or no"
                )));
            }
        };
        filter.from = instant("from", given(&self.from))?;
        filter.to = instant("to", given(&self.to))?;
        // Status, error and cache filters have no index: without a start
        // they look at the last day only, so a page never reads the whole log.
        let unindexed =
            filter.status.is_some() || filter.error_type.is_some() || filter.cached.is_some();
        let windowed = unindexed && filter.from.is_none();
        if windowed {
            filter.from = Some((unix_now() - DAY) * 1000);
        }
        Ok((filter, windowed))
    }

    fn cursor(&self) -> Result<Option<UsageCursor>, UiError> {
        given(&self.after)
            .map(|after| {
                parse_id(after).map(|(at, id)| UsageCursor {
                    at,
                    id: id.to_owned(),
                })
            })
            .transpose()
    }

    /// This query string with the cursor `after`.
    fn with_after(&self, after: &UsageCursor) -> String {
        let mut q = form_urlencoded::Serializer::new(String::new());
        for (name, value) in [
            ("key", &self.key),
            ("team", &self.team),
            ("model", &self.model),
            ("status", &self.status),
            ("error_type", &self.error_type),
            ("cached", &self.cached),
            ("from", &self.from),
            ("to", &self.to),
        ] {
            if let Some(v) = given(value) {
                q.append_pair(name, v);
            }
        }
        q.append_pair("after", &format!("{}.{}", after.at, after.id));
        q.finish()
    }
}

/// A record's place in the log, `{at}.{id}`, read back.
fn parse_id(text: &str) -> Result<(i64, &str), UiError> {
    text.split_once('.')
        .and_then(|(at, id)| Some((at.parse::<i64>().ok()?, id)))
        .filter(|(_, id)| {
            !id.is_empty() && id.len() <= 64 && id.bytes().all(|b| b.is_ascii_alphanumeric())
        })
        .ok_or_else(|| UiError::NotFound(format!("request `{text}`")))
}

/// `GET /requests`.
pub async fn page(
    State(state): State<UiState>,
    session: Session,
    Query(params): Query<LogParams>,
) -> Result<Response, UiError> {
    let scope = session.viewer.scope();
    let (filter, windowed) = params.filter(&scope)?;
    let cursor = params.cursor()?;
    let store = state.app.process.keys.store();
    let page = store
        .usage(&filter, cursor.as_ref(), PAGE)
        .await
        .map_err(UiError::Store)?;
    let chrome = session.chrome();
    let field = |name: &str, label: &str, value: &Option<String>, placeholder: &str| {
        html! { div { label for=(name) { (label) }
        input #(name) name=(name) value=[given(value)] placeholder=(placeholder); } }
    };
    let body = html! {
        h1 { "Requests" }
        form.panel #filters method="get" action=(chrome.href("/requests")) {
            div.form-grid {
                div { label for="from" { "From (UTC)" } input #from type="datetime-local" name="from" value=[given(&params.from)]; }
                div { label for="to" { "To (UTC)" } input #to type="datetime-local" name="to" value=[given(&params.to)]; }
                @if !matches!(scope, Scope::Key(_)) { (field("key", "Key id", &params.key, "key_…")) }
                @if matches!(scope, Scope::All) { (field("team", "Team id", &params.team, "team_…")) }
                (field("model", "Model", &params.model, "gpt-4.1-mini"))
                (field("status", "Status", &params.status, "429"))
                (field("error_type", "Error type", &params.error_type, "upstream_timeout"))
                div { label for="cached" { "Cache" }
                    select #cached name="cached" {
                        @for (value, label) in [("any", "any"), ("yes", "hits"), ("no", "not hits")] {
                            option value=(value) selected[given(&params.cached).unwrap_or("any") == value] { (label) }
                        }
                    } }
                div { button.primary type="submit" { "Filter" } " " a.button href=(chrome.href("/requests")) { "Clear" } }
            }
        }
        @if windowed { p.flash.warn { "Model, status, error and cache filters look at the last 24 hours unless a start is given." } }
        div.table-wrap { (table(&chrome, &page.records)) }
        div.pager {
            @if cursor.is_some() { a.button href=(chrome.href("/requests")) { "← Newest" } } @else { span {} }
            @if let Some(next) = &page.next {
                a.button #next-page href={ (chrome.href("/requests")) "?" (params.with_after(next)) } { "Older →" }
            }
        }
    };
    let frame = Frame {
        name: "requests",
        section: "requests",
        title: "Requests",
        live: None,
    };
    Ok(layout::page(&chrome, frame, body))
}

fn status_badge(record: &UsageRecord) -> Markup {
    let class = match record.status {
        200..=299 if record.error_type.is_none() => "ok",
        400..=499 => "warn",
        _ => "bad",
    };
    html! { span.badge.(class) title=[record.error_type.as_deref()] { (record.status) } }
}

fn table(chrome: &Chrome<'_>, records: &[UsageRecord]) -> Markup {
    html! {
        table #requests {
            thead { tr {
                th { "time" } th { "status" } th { "model" } th { "served by" } th { "key" }
                th.num { "tokens in / out" } th.num { "cost" } th.num { "latency" } th.num { "first token" }
                th { "cache" } th.num { "attempts" }
            } }
            tbody {
                @for r in records {
                    tr data-request-id=(r.request_id) {
                        td { a.request-link href=(chrome.href(&format!("/requests/{}.{}", r.at, r.id))) { (time_ms(r.at)) } }
                        td { (status_badge(r)) @if let Some(e) = &r.error_type { " " span.small.muted { (e) } } }
                        td { (r.model) }
                        td { @if r.deployment.is_empty() { span.muted { "–" } } @else { (r.deployment) } }
                        td { (r.key_name.as_deref().or(r.key_id.as_deref()).unwrap_or("–")) }
                        td.num { (count(r.input_tokens)) " / " (count(r.output_tokens)) }
                        td.num { (usd(r.cost_micros)) }
                        td.num { (micros(r.latency_us)) }
                        td.num { (r.ttft_us.map_or("–".to_owned(), micros)) }
                        td { (r.cache.as_deref().unwrap_or("–")) }
                        td.num { (r.attempts) }
                    }
                }
                @if records.is_empty() { tr { td colspan="11" .muted { "No request matches." } } }
            }
        }
    }
}

/// The record at `{at}.{id}`, if `scope` may see it.
async fn find(
    state: &UiState,
    scope: &Scope,
    at: i64,
    id: &str,
) -> Result<Option<UsageRecord>, UiError> {
    let mut filter = data::usage_filter(scope);
    filter.from = Some(at);
    filter.to = Some(at.saturating_add(1));
    let page = state
        .app
        .process
        .keys
        .store()
        .usage(&filter, None, 1000)
        .await
        .map_err(UiError::Store)?;
    Ok(page.records.into_iter().find(|r| r.id == id))
}

/// One step of a route: `provider/model[why]=outcome`, or `what=value`.
struct Step<'a> {
    target: &'a str,
    why: Option<&'a str>,
    outcome: &'a str,
}

fn steps(route: &str) -> Vec<Step<'_>> {
    route
        .split(", ")
        .filter(|s| !s.is_empty())
        .map(|step| {
            let (head, outcome) = step.rsplit_once('=').unwrap_or((step, ""));
            match head.split_once('[') {
                Some((target, why)) => Step {
                    target,
                    why: Some(why.trim_end_matches(']')),
                    outcome,
                },
                None => Step {
                    target: head,
                    why: None,
                    outcome,
                },
            }
        })
        .collect()
}

/// `GET /requests/{at}.{id}`.
pub async fn detail(
    State(state): State<UiState>,
    session: Session,
    Path(place): Path<String>,
) -> Result<Response, UiError> {
    let (at, id) = parse_id(&place)?;
    let scope = session.viewer.scope();
    let record = find(&state, &scope, at, id)
        .await?
        .ok_or_else(|| UiError::NotFound(format!("request `{place}`")))?;
    let chrome = session.chrome();
    let r = &record;
    let route = r.route.as_deref().map(steps).unwrap_or_default();
    let bodies = state
        .app
        .process
        .recent_bodies
        .as_ref()
        .map(|recent| recent.find(&r.request_id, r.key_id.as_deref()));
    let body = html! {
        p.small { a href=(chrome.href("/requests")) { "← Requests" } }
        h1 { "Request " code { (r.request_id) } }
        div.grid2 {
            div.panel {
                h2 { "What happened" }
                dl.facts {
                    dt { "time" } dd { (time_ms(r.at)) " UTC" }
                    dt { "status" } dd { (status_badge(r)) @if let Some(e) = &r.error_type { " " code { (e) } } }
                    dt { "endpoint" } dd { (r.endpoint) @if r.stream { " (stream)" } }
                    dt { "model asked" } dd { (r.model) }
                    dt { "served by" } dd { @if r.deployment.is_empty() { "–" } @else { (r.deployment) } }
                    dt { "key" } dd { (r.key_name.as_deref().unwrap_or("–")) " " span.muted { (r.key_id.as_deref().unwrap_or("")) } }
                    dt { "team" } dd { (r.team_id.as_deref().unwrap_or("–")) }
                    dt { "tags" } dd { @if r.tags.is_empty() { "–" } @else { (r.tags.join(", ")) } }
                    dt { "cache" } dd { (r.cache.as_deref().unwrap_or("–")) }
                }
            }
            div.panel {
                h2 { "Tokens and cost" }
                dl.facts #tokens {
                    dt { "input" } dd { (count(r.input_tokens)) }
                    dt { "of which cached" } dd { (count(r.cached_input_tokens)) }
                    dt { "written to cache" } dd { (count(r.cache_write_tokens)) }
                    dt { "output" } dd { (count(r.output_tokens)) }
                    dt { "of which reasoning" } dd { (count(r.reasoning_tokens)) }
                }
                dl.facts #cost {
                    dt { "cost" } dd { (usd(r.cost_micros)) @if r.cost_estimated { " " span.badge.warn { "estimated" } } }
                    dt { "saved" } dd { (usd(r.saved_micros)) }
                }
                h2 { "Timings" }
                dl.facts #timings {
                    dt { "first token" } dd { (r.ttft_us.map_or("–".to_owned(), micros)) }
                    dt { "whole request" } dd { (micros(r.latency_us)) }
                    dt { "upstream attempts" } dd { (r.attempts) }
                }
            }
        }
        div.panel {
            h2 { "Route" }
            table #route {
                thead { tr { th { "#" } th { "deployment or step" } th { "why it was picked" } th { "outcome" } } }
                tbody {
                    @for (i, step) in route.iter().enumerate() {
                        tr {
                            td { (i + 1) }
                            td { code { (step.target) } }
                            td { (step.why.unwrap_or("–")) }
                            td { @match step.outcome {
                                "ok" | "hit" | "semantic" => span.badge.ok { (step.outcome) },
                                "" => span.muted { "–" },
                                other => span.badge.bad { (other) },
                            } }
                        }
                    }
                    @if route.is_empty() { tr { td colspan="4" .muted { "No upstream was tried." } } }
                }
            }
            p.small.muted { "As sent in " code { "x-switchyard-route" } ": " code { (r.route.as_deref().unwrap_or("–")) } }
        }
        div.panel #bodies {
            h2 { "Bodies" }
            @match &bodies {
                None => p.muted { "Body logging is off (" code { "telemetry.log_bodies" } ")." },
                Some(None) => p.muted { "Not kept here: each replica keeps the bodies of its last requests (" code { "telemetry.recent_bodies" } "), redacted as the bodies log writes them." },
                Some(Some(shown)) => {
                    p.small.muted { "Redacted and cut as the bodies log writes them." }
                    h3 { "Request" } pre #request-body { (shown.request) }
                    h3 { "Answer" } pre #answer-body { (shown.answer.as_deref().unwrap_or("–")) }
                },
            }
        }
    };
    let frame = Frame {
        name: "request",
        section: "requests",
        title: "Request",
        live: None,
    };
    Ok(layout::page(&chrome, frame, body))
}

/// `GET /requests/by-request-id/{request_id}`: the newest record of the
/// last two minutes with this `x-request-id`, as the playground shows it
/// (no index holds request ids: the window bounds what is read).
pub async fn by_request_id(
    State(state): State<UiState>,
    session: Session,
    Path(request_id): Path<String>,
) -> Result<Json<serde_json::Value>, UiError> {
    let mut filter = data::usage_filter(&session.viewer.scope());
    filter.request_id = Some(request_id);
    filter.from = Some((unix_now() - 120) * 1000);
    let page = state
        .app
        .process
        .keys
        .store()
        .usage(&filter, None, 1)
        .await
        .map_err(UiError::Store)?;
    let chrome = session.chrome();
    Ok(Json(match page.records.first() {
        Some(r) => json!({
            "found": true,
            "cost": usd(r.cost_micros),
            "tokens": format!("{} in · {} out", count(r.input_tokens), count(r.output_tokens)),
            "route": r.route,
            "href": chrome.href(&format!("/requests/{}.{}", r.at, r.id)),
        }),
        None => json!({ "found": false }),
    }))
}
