//! The sums of a report: the rollups' rows under the report's grouping
//! (months folded from days), and the records of the usage log priced again
//! at another list, one by one.

use std::collections::BTreeMap;

use clap::ValueEnum;
use switchyard_store::{CostRow, GroupBy, UsageRecord};

use crate::pricing::{PriceList, Tokens};
use crate::usage::report::{label, time_label};

/// A dimension a report is grouped by.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Dimension {
    /// The public model asked for.
    Model,
    /// The deployment that served, `provider/upstream-model`.
    Deployment,
    /// The provider that served.
    Provider,
    /// The key's id.
    Key,
    /// The team's id.
    Team,
    /// Each tag (a request with two tags counts under both, one without
    /// tags under none).
    Tag,
    /// The UTC day.
    Day,
    /// The UTC hour.
    Hour,
    /// The UTC month.
    Month,
}

impl Dimension {
    /// Its name, as `--by` takes it and as the JSON and CSV name its column.
    pub(super) fn name(self) -> &'static str {
        match self {
            Self::Month => "month",
            other => other.stored().as_str(),
        }
    }

    /// The store's dimension its values come from (a month's from days).
    fn stored(self) -> GroupBy {
        match self {
            Self::Model => GroupBy::Model,
            Self::Deployment => GroupBy::Deployment,
            Self::Provider => GroupBy::Provider,
            Self::Key => GroupBy::Key,
            Self::Team => GroupBy::Team,
            Self::Tag => GroupBy::Tag,
            Self::Day | Self::Month => GroupBy::Day,
            Self::Hour => GroupBy::Hour,
        }
    }

    /// A value of the store's dimension, as the report writes it.
    fn label(self, value: &str) -> String {
        let mut text = label(self.stored(), value);
        if self == Self::Month {
            text.truncate(7);
        }
        text
    }

    /// The value of a time dimension at `secs` (unix seconds).
    fn at(self, secs: i64) -> String {
        let mut text = time_label(self.stored(), secs);
        if self == Self::Month {
            text.truncate(7);
        }
        text
    }
}

/// A report's dimensions, and the store's grouping they are read from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct Grouping {
    /// Each once, in the order asked for.
    dims: Vec<Dimension>,
    /// The store's dimensions, each once.
    stored: Vec<GroupBy>,
    /// Where each of `dims` is in `stored`.
    index: Vec<usize>,
}

impl Grouping {
    /// The grouping by `dims` (repeats left out).
    pub(super) fn new(dims: &[Dimension]) -> Self {
        let mut grouping = Self {
            dims: Vec::new(),
            stored: Vec::new(),
            index: Vec::new(),
        };
        for &dim in dims {
            if grouping.dims.contains(&dim) {
                continue;
            }
            let stored = dim.stored();
            let at = match grouping.stored.iter().position(|&s| s == stored) {
                Some(at) => at,
                None => {
                    grouping.stored.push(stored);
                    grouping.stored.len() - 1
                }
            };
            grouping.dims.push(dim);
            grouping.index.push(at);
        }
        grouping
    }

    /// The report's dimensions, in order.
    pub(super) fn dims(&self) -> &[Dimension] {
        &self.dims
    }

    /// The store's dimensions to ask the rollups for.
    pub(super) fn stored(&self) -> &[GroupBy] {
        &self.stored
    }

    /// The rollups' rows (grouped by [`Grouping::stored`]) under the
    /// report's dimensions, as people read them, in the order of their
    /// values (dimension by dimension; times in time order): days of the
    /// same month added up into the month's row.
    pub(super) fn fold(&self, rows: Vec<CostRow>) -> Costs {
        let mut groups: BTreeMap<Vec<String>, CostRow> = BTreeMap::new();
        for row in rows {
            let key: Vec<String> = self
                .dims
                .iter()
                .zip(&self.index)
                .map(|(dim, &i)| dim.label(row.group.get(i).map_or("", String::as_str)))
                .collect();
            groups.entry(key).or_default().add(&row);
        }
        let mut total = CostRow::default();
        let rows = groups
            .into_iter()
            .map(|(group, mut row)| {
                total.add(&row);
                row.group = group;
                row
            })
            .collect();
        Costs { rows, total }
    }

    /// The groups a record counts in: one, or one per tag when grouped by
    /// tag (none for a record without tags).
    fn keys(&self, record: &UsageRecord) -> Vec<Vec<String>> {
        let secs = record.at.div_euclid(1000);
        let mut keys = vec![Vec::with_capacity(self.dims.len())];
        for &dim in &self.dims {
            let values = match dim {
                Dimension::Model => vec![record.model.clone()],
                Dimension::Deployment => vec![record.deployment.clone()],
                Dimension::Provider => vec![record.provider.clone()],
                Dimension::Key => vec![record.key_id.clone().unwrap_or_default()],
                Dimension::Team => vec![record.team_id.clone().unwrap_or_default()],
                Dimension::Tag => record
                    .tags
                    .iter()
                    .filter(|t| !t.is_empty())
                    .cloned()
                    .collect(),
                Dimension::Day | Dimension::Hour | Dimension::Month => vec![dim.at(secs)],
            };
            keys = keys
                .iter()
                .flat_map(|key| {
                    values.iter().map(move |value| {
                        let mut key = key.clone();
                        key.push(value.clone());
                        key
                    })
                })
                .collect();
        }
        keys
    }
}

/// The rows of a report from the rollups, and their total.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct Costs {
    /// Each group's sums, its `group` the report's values (dates, months).
    pub(super) rows: Vec<CostRow>,
    /// The rows' sums.
    pub(super) total: CostRow,
}

/// The requests of a group, their tokens, and what they cost.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub(super) struct Traffic {
    /// Requests.
    pub(super) requests: i64,
    /// Prompt tokens.
    pub(super) input_tokens: i64,
    /// Prompt tokens read from a provider's cache.
    pub(super) cached_input_tokens: i64,
    /// Prompt tokens written to a provider's cache.
    pub(super) cache_write_tokens: i64,
    /// Reasoning tokens.
    pub(super) reasoning_tokens: i64,
    /// Output tokens.
    pub(super) output_tokens: i64,
    /// What they cost, as recorded, micro-USD.
    pub(super) actual_micros: i64,
}

impl Traffic {
    fn add_record(&mut self, r: &UsageRecord) {
        self.add(&Self {
            requests: 1,
            input_tokens: r.input_tokens,
            cached_input_tokens: r.cached_input_tokens,
            cache_write_tokens: r.cache_write_tokens,
            reasoning_tokens: r.reasoning_tokens,
            output_tokens: r.output_tokens,
            actual_micros: r.cost_micros,
        });
    }

    fn add(&mut self, other: &Self) {
        self.requests = self.requests.saturating_add(other.requests);
        self.input_tokens = self.input_tokens.saturating_add(other.input_tokens);
        self.cached_input_tokens = self
            .cached_input_tokens
            .saturating_add(other.cached_input_tokens);
        self.cache_write_tokens = self
            .cache_write_tokens
            .saturating_add(other.cache_write_tokens);
        self.reasoning_tokens = self.reasoning_tokens.saturating_add(other.reasoning_tokens);
        self.output_tokens = self.output_tokens.saturating_add(other.output_tokens);
        self.actual_micros = self.actual_micros.saturating_add(other.actual_micros);
    }
}

/// Requests priced at both lists: as recorded, and at the other one.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub(super) struct Compared {
    /// The requests, their tokens and their recorded cost.
    pub(super) traffic: Traffic,
    /// What they would have cost at the other list, micro-USD.
    pub(super) repriced_micros: i64,
}

impl Compared {
    fn add(&mut self, other: &Self) {
        self.traffic.add(&other.traffic);
        self.repriced_micros = self.repriced_micros.saturating_add(other.repriced_micros);
    }

    /// What the requests saved against the other list: its price less the
    /// recorded cost (negative when they cost more than they would have).
    pub(super) fn saved_micros(&self) -> i64 {
        self.repriced_micros
            .saturating_sub(self.traffic.actual_micros)
    }

    /// [`Compared::saved_micros`] as a percentage of the other list's price
    /// (none when that is 0).
    pub(super) fn saved_pct(&self) -> Option<f64> {
        (self.repriced_micros != 0)
            .then(|| self.saved_micros() as f64 * 100.0 / self.repriced_micros as f64)
    }
}

/// Records priced again at another list, added up by group as they come.
#[derive(Debug)]
pub(super) struct Repricing<'a> {
    list: &'a PriceList,
    grouping: &'a Grouping,
    tag: Option<&'a str>,
    rows: BTreeMap<Vec<String>, Compared>,
    unpriced: BTreeMap<(String, String), Traffic>,
    counted: u64,
}

/// The result of a repricing.
#[derive(Debug, Clone, PartialEq)]
pub(super) struct Repriced {
    /// Each group's requests that the other list prices, in the order of
    /// their values.
    pub(super) rows: Vec<(Vec<String>, Compared)>,
    /// The rows' sums.
    pub(super) total: Compared,
    /// The requests the other list has no price for, by public model and
    /// deployment: left out of the rows.
    pub(super) unpriced: Vec<((String, String), Traffic)>,
    /// The records counted (those of the tag asked for).
    pub(super) counted: u64,
}

impl<'a> Repricing<'a> {
    /// Nothing counted yet; records without `tag`, when given, will not be.
    pub(super) fn new(list: &'a PriceList, grouping: &'a Grouping, tag: Option<&'a str>) -> Self {
        Self {
            list,
            grouping,
            tag,
            rows: BTreeMap::new(),
            unpriced: BTreeMap::new(),
            counted: 0,
        }
    }

    /// Counts `record` in its groups, priced at the other list — or apart,
    /// when the list has no price for its model.
    pub(super) fn add(&mut self, record: &UsageRecord) {
        if let Some(tag) = self.tag
            && !record.tags.iter().any(|t| t == tag)
        {
            return;
        }
        self.counted += 1;
        let mut traffic = Traffic::default();
        traffic.add_record(record);
        let Some(repriced_micros) = repriced(self.list, record) else {
            self.unpriced
                .entry((record.model.clone(), record.deployment.clone()))
                .or_default()
                .add(&traffic);
            return;
        };
        let compared = Compared {
            traffic,
            repriced_micros,
        };
        for key in self.grouping.keys(record) {
            self.rows.entry(key).or_default().add(&compared);
        }
    }

    /// The rows, their total, and the requests left out.
    pub(super) fn finish(self) -> Repriced {
        let mut total = Compared::default();
        for compared in self.rows.values() {
            total.add(compared);
        }
        Repriced {
            rows: self.rows.into_iter().collect(),
            total,
            unpriced: self.unpriced.into_iter().collect(),
            counted: self.counted,
        }
    }
}

/// What `record` would have cost at `list`: nothing when no provider billed
/// it (answered from the response cache, or never sent to one); else its
/// tokens at the price of its upstream model (the deployment's part after
/// the first `/`), or of its public model when the list has no price for
/// that; none when it has neither.
fn repriced(list: &PriceList, record: &UsageRecord) -> Option<i64> {
    let cache_hit = matches!(record.cache.as_deref(), Some("hit" | "semantic"));
    if cache_hit || record.deployment.is_empty() {
        return Some(0);
    }
    let upstream = record
        .deployment
        .split_once('/')
        .map_or(record.deployment.as_str(), |(_, model)| model);
    let price = list.price(upstream).or_else(|| list.price(&record.model))?;
    let count = |n: i64| u64::try_from(n).unwrap_or(0);
    Some(price.cost(&Tokens {
        input: count(record.input_tokens),
        cached_input: count(record.cached_input_tokens),
        cache_write: count(record.cache_write_tokens),
        output: count(record.output_tokens),
        reasoning: count(record.reasoning_tokens),
    }))
}
