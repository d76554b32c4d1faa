//! What the pages read, and how: the rollups of the usage log for every
//! sum, the log itself only a page at a time, always limited to what the
//! session may see.

use switchyard_store::{BudgetPeriod, CostQuery, CostRow, GroupBy, Store, UsageFilter};

use crate::limits::budget::period_start;

use super::error::UiError;
use super::session::Scope;
use crate::pricing::{PriceList, Tokens};

/// Seconds in an hour and a day.
pub const HOUR: i64 = 3_600;
/// See [`HOUR`].
pub const DAY: i64 = 86_400;

/// The end of the hour `now` falls in: a range up to it includes this hour.
pub fn hour_end(now: i64) -> i64 {
    now.div_euclid(HOUR) * HOUR + HOUR
}

/// The start of the UTC day `now` falls in.
pub fn day_start(now: i64) -> i64 {
    period_start(BudgetPeriod::Day, now)
}

/// The start of the UTC month `now` falls in.
pub fn month_start(now: i64) -> i64 {
    period_start(BudgetPeriod::Month, now)
}

/// A cost question over `from..to`, grouped by `group_by`, of what `scope` may see.
pub fn cost_query(scope: &Scope, from: i64, to: i64, group_by: Vec<GroupBy>) -> CostQuery {
    let mut query = CostQuery {
        from,
        to,
        group_by,
        ..CostQuery::default()
    };
    match scope {
        Scope::All => {}
        Scope::Team(team) => query.team_id = Some(team.clone()),
        Scope::Key(key) => query.key_id = Some(key.clone()),
    }
    query
}

/// A filter of the usage log to what `scope` may see.
pub fn usage_filter(scope: &Scope) -> UsageFilter {
    let mut filter = UsageFilter::default();
    match scope {
        Scope::All => {}
        Scope::Team(team) => filter.team_id = Some(team.clone()),
        Scope::Key(key) => filter.key_id = Some(key.clone()),
    }
    filter
}

/// The sums `query` asks for.
pub async fn costs(store: &dyn Store, query: CostQuery) -> Result<Vec<CostRow>, UiError> {
    store.costs(&query).await.map_err(UiError::Store)
}

/// The one row of a query grouped by nothing (zeros when there was no request).
pub async fn total(store: &dyn Store, query: CostQuery) -> Result<CostRow, UiError> {
    Ok(costs(store, query)
        .await?
        .into_iter()
        .next()
        .unwrap_or_default())
}

/// What traffic would have cost at another price list.
#[derive(Debug, Clone, Default)]
pub struct Repriced {
    /// At the list, micro-USD (the requests it has a price for).
    pub micros: i64,
    /// What those same requests cost, micro-USD.
    pub actual_micros: i64,
    /// The models it has no price for, with what they cost.
    pub unpriced: Vec<(String, i64)>,
}

/// Prices `rows` (grouped by model, then deployment) again at `list`: each
/// by its upstream model, else its public model; at `relay`'s price when one
/// is named (`holysheep`), else the model's own provider's (the originals).
/// Sums are priced at base rates: a sum cannot tell which of its requests
/// were long enough for a long-prompt tier.
pub fn reprice(rows: &[CostRow], list: &PriceList, relay: Option<&str>) -> Repriced {
    let mut out = Repriced::default();
    for row in rows {
        let model = row.group.first().map_or("", String::as_str);
        let deployment = row.group.get(1).map_or("", String::as_str);
        let upstream = deployment.split_once('/').map_or(deployment, |(_, m)| m);
        let find = |name: &str| {
            if name.is_empty() {
                return None;
            }
            match relay {
                Some(relay) => list.price(&format!("{relay}/{name}")),
                None => list
                    .entry(name)
                    .filter(|entry| entry.relay.is_none())
                    .map(|entry| &entry.price),
            }
        };
        let tokens = Tokens {
            input: u64::try_from(row.input_tokens).unwrap_or(0),
            cached_input: u64::try_from(row.cached_input_tokens).unwrap_or(0),
            cache_write: u64::try_from(row.cache_write_tokens).unwrap_or(0),
            output: u64::try_from(row.output_tokens).unwrap_or(0),
            reasoning: u64::try_from(row.reasoning_tokens).unwrap_or(0),
        };
        match find(upstream).or_else(|| find(model)) {
            Some(price) => {
                out.micros = out.micros.saturating_add(price.base_cost(&tokens));
                out.actual_micros = out.actual_micros.saturating_add(row.cost_micros);
            }
            None if row.requests > 0 => {
                let name = if model.is_empty() { deployment } else { model };
                out.unpriced.push((name.to_owned(), row.cost_micros));
            }
            None => {}
        }
    }
    out
}

/// The relays the list has prices of (`holysheep`, …), in the list's order.
pub fn relays(list: &PriceList) -> Vec<String> {
    let mut relays: Vec<String> = Vec::new();
    for entry in list.entries() {
        if let Some(relay) = &entry.relay
            && !relays.contains(relay)
        {
            relays.push(relay.clone());
        }
    }
    relays
}
