//! `GET /admin/usage` (the usage log, newest first, by cursor) and `GET
//! /admin/costs` (sums from the rollups, grouped), as JSON or, with
//! `format=csv`, as CSV.
//!
//! Times in queries are RFC 3339 (`2026-12-06T10:00:00Z`), a date
//! (`2026-12-06`, its midnight UTC) or unix seconds. Money is exact: integer
//! micro-USD (`cost_micros`), with `cost_usd` beside it in the cost report.

use std::sync::Arc;
use std::time::Duration;

use axum::Json;
use axum::extract::State;
use axum::http::{HeaderValue, header};
use axum::response::{IntoResponse, Response};
use serde::Deserialize;
use serde_json::{Map, Value, json};
use switchyard_store::{CostQuery, CostRow, GroupBy, UsageCursor, UsageFilter, UsageRecord};

use super::json::AdminQuery;
use super::{Admin, store};
use crate::api::AppState;
use switchyard_providers::openai::InvalidRequest;

use crate::error::GatewayError;
use crate::keys::admin::AdminError;
use crate::keys::admin::views::rfc3339;
use crate::usage::report::{self, COST_COLUMNS, cost_values};

/// Records per page when `limit` is not given, and at most.
const DEFAULT_PAGE: u32 = 100;
const MAX_PAGE: u32 = 1_000;

/// The span of a cost report when `from` is not given: the last 30 days.
const DEFAULT_SPAN: Duration = Duration::from_secs(30 * 86_400);

/// How an answer is written.
#[derive(Debug, Clone, Copy, Default, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum Format {
    /// JSON (the default).
    #[default]
    Json,
    /// CSV, a header line first.
    Csv,
}

/// The query of `GET /admin/usage`.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct UsageQuery {
    from: Option<String>,
    to: Option<String>,
    key_id: Option<String>,
    team_id: Option<String>,
    model: Option<String>,
    provider: Option<String>,
    status: Option<i32>,
    error_type: Option<String>,
    cached: Option<bool>,
    limit: Option<u32>,
    cursor: Option<String>,
    #[serde(default)]
    format: Format,
}

/// The query of `GET /admin/costs`.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CostsQuery {
    from: Option<String>,
    to: Option<String>,
    key_id: Option<String>,
    team_id: Option<String>,
    model: Option<String>,
    provider: Option<String>,
    tag: Option<String>,
    /// Dimensions, comma-separated: model, deployment, provider, key, team, tag, day, hour.
    group_by: Option<String>,
    #[serde(default)]
    format: Format,
}

/// `GET /admin/usage`: one page of the usage log.
pub async fn usage(
    State(state): State<Arc<AppState>>,
    _: Admin,
    AdminQuery(query): AdminQuery<UsageQuery>,
) -> Result<Response, GatewayError> {
    let filter = UsageFilter {
        from: query
            .from
            .as_deref()
            .map(|t| instant("from", t))
            .transpose()?
            .map(millis),
        to: query
            .to
            .as_deref()
            .map(|t| instant("to", t))
            .transpose()?
            .map(millis),
        key_id: query.key_id,
        team_id: query.team_id,
        model: query.model,
        provider: query.provider,
        status: query.status,
        error_type: query.error_type,
        cached: query.cached,
        request_id: None,
    };
    let limit = query.limit.unwrap_or(DEFAULT_PAGE);
    if !(1..=MAX_PAGE).contains(&limit) {
        return Err(invalid(
            "limit",
            format!("`limit` must be from 1 to {MAX_PAGE}"),
        ));
    }
    let cursor = query.cursor.as_deref().map(cursor).transpose()?;
    let page = store(&state)
        .usage(&filter, cursor.as_ref(), limit)
        .await
        .map_err(AdminError::Unavailable)?;
    let next = page.next.map(|c| format!("{}.{}", c.at, c.id));
    Ok(match query.format {
        Format::Json => Json(json!({ "data": page.records, "next_cursor": next })).into_response(),
        Format::Csv => {
            let mut rows = vec![RECORD_HEADER.map(str::to_owned).to_vec()];
            rows.extend(page.records.iter().map(record_row));
            let mut response = csv(&rows);
            if let Some(next) = next.and_then(|n| HeaderValue::from_str(&n).ok()) {
                response.headers_mut().insert("x-next-cursor", next);
            }
            response
        }
    })
}

/// `GET /admin/costs`: sums from the rollups over a time range, grouped.
pub async fn costs(
    State(state): State<Arc<AppState>>,
    _: Admin,
    AdminQuery(query): AdminQuery<CostsQuery>,
) -> Result<Response, GatewayError> {
    let to = match query.to.as_deref() {
        Some(text) => instant("to", text)?,
        None => report::now_secs() + 1,
    };
    let from = match query.from.as_deref() {
        Some(text) => instant("from", text)?,
        None => to - DEFAULT_SPAN.as_secs() as i64,
    };
    if from >= to {
        return Err(invalid("from", "`from` must be before `to`"));
    }
    let mut group_by = Vec::new();
    for name in query
        .group_by
        .iter()
        .flat_map(|g| g.split(','))
        .map(str::trim)
    {
        let Some(group) = GroupBy::parse(name) else {
            return Err(invalid(
                "group_by",
                format!(
                    "unknown dimension `{name}`: use model, deployment, provider, key, team, tag, day or hour"
                ),
            ));
        };
        if !group_by.contains(&group) {
            group_by.push(group);
        }
    }
    let cost_query = CostQuery {
        from,
        to,
        key_id: query.key_id,
        team_id: query.team_id,
        model: query.model,
        provider: query.provider,
        tag: query.tag,
        group_by,
    };
    let rows = store(&state)
        .costs(&cost_query)
        .await
        .map_err(AdminError::Unavailable)?;
    let names: Vec<&str> = cost_query.group_by.iter().map(|g| g.as_str()).collect();
    Ok(match query.format {
        Format::Json => {
            let rows: Vec<Value> = rows
                .iter()
                .map(|row| cost_json(&cost_query.group_by, row))
                .collect();
            Json(json!({
                "from": rfc3339(from),
                "to": rfc3339(to),
                "group_by": names,
                "rows": rows,
            }))
            .into_response()
        }
        Format::Csv => {
            let mut header: Vec<String> = names.iter().map(|n| (*n).to_owned()).collect();
            header.extend(COST_COLUMNS.map(str::to_owned));
            let mut lines = vec![header];
            lines.extend(rows.iter().map(|row| cost_row(&cost_query.group_by, row)));
            csv(&lines)
        }
    })
}

/// A time of a query, in unix seconds.
fn instant(param: &str, text: &str) -> Result<i64, GatewayError> {
    report::unix_seconds(text).ok_or_else(|| {
        invalid(
            param,
            format!("`{param}` must be RFC 3339, a date (YYYY-MM-DD) or unix seconds"),
        )
    })
}

fn millis(secs: i64) -> i64 {
    secs.saturating_mul(1000)
}

/// A `cursor` of `/admin/usage`: `<at>.<id>`, as `next_cursor` gave it.
fn cursor(text: &str) -> Result<UsageCursor, GatewayError> {
    text.split_once('.')
        .and_then(|(at, id)| {
            Some(UsageCursor {
                at: at.parse().ok()?,
                id: id.to_owned(),
            })
        })
        .ok_or_else(|| {
            invalid(
                "cursor",
                "`cursor` must be a `next_cursor` of an earlier page",
            )
        })
}

fn invalid(param: &str, message: impl Into<String>) -> GatewayError {
    GatewayError::InvalidRequest(InvalidRequest {
        message: message.into(),
        param: Some(param.to_owned()),
    })
}

fn cost_json(groups: &[GroupBy], row: &CostRow) -> Value {
    let mut object = Map::new();
    for (group, value) in groups.iter().zip(&row.group) {
        object.insert(
            group.as_str().to_owned(),
            Value::from(report::label(*group, value)),
        );
    }
    for (name, value) in COST_COLUMNS.iter().zip(cost_values(row)) {
        object.insert((*name).to_owned(), value);
    }
    Value::Object(object)
}

fn cost_row(groups: &[GroupBy], row: &CostRow) -> Vec<String> {
    let mut line: Vec<String> = groups
        .iter()
        .zip(&row.group)
        .map(|(g, v)| report::label(*g, v))
        .collect();
    line.extend(cost_values(row).iter().map(report::cell));
    line
}

/// The columns of a usage record in CSV.
const RECORD_HEADER: [&str; 27] = [
    "id",
    "time",
    "request_id",
    "key_id",
    "key_name",
    "team_id",
    "tags",
    "endpoint",
    "model",
    "provider",
    "deployment",
    "status",
    "error_type",
    "input_tokens",
    "cached_input_tokens",
    "cache_write_tokens",
    "reasoning_tokens",
    "output_tokens",
    "cost_micros",
    "saved_micros",
    "cost_estimated",
    "latency_us",
    "ttft_us",
    "attempts",
    "cache",
    "route",
    "stream",
];

fn record_row(r: &UsageRecord) -> Vec<String> {
    let opt = |v: &Option<String>| v.clone().unwrap_or_default();
    vec![
        r.id.clone(),
        format!(
            "{}.{:03}Z",
            rfc3339(r.at.div_euclid(1000)).trim_end_matches('Z'),
            r.at.rem_euclid(1000)
        ),
        r.request_id.clone(),
        opt(&r.key_id),
        opt(&r.key_name),
        opt(&r.team_id),
        r.tags.join(";"),
        r.endpoint.clone(),
        r.model.clone(),
        r.provider.clone(),
        r.deployment.clone(),
        r.status.to_string(),
        opt(&r.error_type),
        r.input_tokens.to_string(),
        r.cached_input_tokens.to_string(),
        r.cache_write_tokens.to_string(),
        r.reasoning_tokens.to_string(),
        r.output_tokens.to_string(),
        r.cost_micros.to_string(),
        r.saved_micros.to_string(),
        r.cost_estimated.to_string(),
        r.latency_us.to_string(),
        r.ttft_us.map(|t| t.to_string()).unwrap_or_default(),
        r.attempts.to_string(),
        opt(&r.cache),
        opt(&r.route),
        r.stream.to_string(),
    ]
}

/// `rows` as a CSV answer.
fn csv(rows: &[Vec<String>]) -> Response {
    let mut writer = csv::Writer::from_writer(Vec::new());
    for row in rows {
        // Writing to memory cannot fail.
        let _ = writer.write_record(row);
    }
    let body = writer.into_inner().unwrap_or_default();
    (
        [(
            header::CONTENT_TYPE,
            HeaderValue::from_static("text/csv; charset=utf-8"),
        )],
        body,
    )
        .into_response()
}
