//! The price list file's shape, as serde reads it, and its validation into a
//! [`PriceList`], every problem with its line and column (the format is
//! described at the top of `prices.yaml`).

use std::collections::HashMap;

use serde::Deserialize;

use super::list::{PriceEntry, PriceList, key};
use super::price::{ModelPrice, Rates, Tier};
use crate::config::read::{Read, read as read_yaml};
use crate::config::tree::{Node, Place, Step};
use crate::config::{Problem, Problems};

/// The whole file.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct PriceListFile {
    /// A label for the list.
    version: Option<String>,
    /// The entries.
    #[serde(default)]
    models: Vec<EntryConfig>,
}

/// An entry of `models:`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct EntryConfig {
    model: Option<String>,
    provider: Option<String>,
    relay: Option<String>,
    #[serde(default)]
    aliases: Vec<String>,
    input: Option<f64>,
    cached_input: Option<f64>,
    cache_write: Option<f64>,
    output: Option<f64>,
    reasoning: Option<f64>,
    #[serde(default)]
    tiers: Vec<TierConfig>,
}

/// An entry's `tiers:` item.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct TierConfig {
    above: Option<u64>,
    input: Option<f64>,
    cached_input: Option<f64>,
    cache_write: Option<f64>,
    output: Option<f64>,
    reasoning: Option<f64>,
}

/// The five prices of an entry or a tier, in USD per million tokens.
struct PricesConfig {
    input: Option<f64>,
    cached_input: Option<f64>,
    cache_write: Option<f64>,
    output: Option<f64>,
    reasoning: Option<f64>,
}

/// Reads a price list; `source` names it in the problems.
pub(super) fn read(text: &str, source: &str) -> Result<PriceList, Problems> {
    let problems = |list| Problems {
        source: source.to_owned(),
        list,
    };
    let Read {
        value,
        tree,
        removed,
        problems: list,
    } = read_yaml::<PriceListFile>(text, HashMap::new()).map_err(|p| problems(vec![p]))?;
    let mut checker = Checker {
        tree: &tree,
        removed: &removed,
        problems: list,
    };
    let prices = value.and_then(|file| checker.list(file));
    match prices {
        Some(prices) if checker.problems.is_empty() => Ok(prices),
        _ => Err(problems(checker.problems)),
    }
}

/// Validates the shape serde read, gathering every problem.
struct Checker<'a> {
    tree: &'a Node,
    removed: &'a [Vec<Step>],
    problems: Vec<Problem>,
}

impl Checker<'_> {
    /// The place of `path`, or of the closest node above it.
    fn place(&self, path: &[Step]) -> Option<Place> {
        (0..=path.len())
            .rev()
            .find_map(|n| self.tree.find(&path[..n]).map(|(_, place)| place))
    }

    fn error(&mut self, path: &[Step], message: impl Into<String>) {
        let place = self.place(path);
        self.problems.push(Problem::at(place, message));
    }

    /// A required value; reports it missing unless an earlier problem removed it.
    fn required<T>(&mut self, value: Option<T>, path: &[Step]) -> Option<T> {
        if value.is_none() && !self.removed.iter().any(|r| r == path) {
            let (name, parent) = match path.split_last() {
                Some((Step::Key(name), parent)) => (name.as_str(), parent),
                _ => ("", path),
            };
            self.error(parent, format!("missing key `{name}`"));
        }
        value
    }

    fn list(&mut self, file: PriceListFile) -> Option<PriceList> {
        let version = self.required(file.version, &[Step::Key("version".into())]);
        if version.as_deref().is_some_and(|v| v.trim().is_empty()) {
            self.error(
                &[Step::Key("version".into())],
                "`version` must not be empty",
            );
        }
        // Each name (`relay/name` for a relay's) and the place it was first given.
        let mut seen: HashMap<String, Option<Place>> = HashMap::new();
        let mut entries = Vec::new();
        for (i, raw) in file.models.into_iter().enumerate() {
            let at = [Step::Key("models".into()), Step::Index(i)];
            if let Some(entry) = self.entry(raw, &at, &mut seen) {
                entries.push(entry);
            }
        }
        Some(PriceList::new(version?, entries))
    }

    fn entry(
        &mut self,
        raw: EntryConfig,
        at: &[Step],
        seen: &mut HashMap<String, Option<Place>>,
    ) -> Option<PriceEntry> {
        let model = self.required(raw.model, &path(at, "model"));
        let provider = self.required(raw.provider, &path(at, "provider"));
        if let Some(provider) = &provider {
            self.name(provider, &path(at, "provider"));
        }
        if let Some(relay) = &raw.relay {
            self.name(relay, &path(at, "relay"));
        }
        let relay = raw.relay.as_deref().map(str::to_lowercase);
        let names =
            model
                .iter()
                .map(|m| (m, path(at, "model")))
                .chain(raw.aliases.iter().enumerate().map(|(j, alias)| {
                    let mut place = path(at, "aliases");
                    place.push(Step::Index(j));
                    (alias, place)
                }));
        for (name, place) in names {
            if !self.name(name, &place) {
                continue;
            }
            let listed = key(relay.as_deref(), &name.to_lowercase());
            let here = self.place(&place);
            match seen.get(&listed) {
                Some(first) => {
                    let line = first.map_or(String::new(), |p| format!(" (line {})", p.line));
                    self.error(&place, format!("`{listed}` is listed twice{line}"));
                }
                None => {
                    seen.insert(listed, here);
                }
            }
        }
        let base = self.rates(
            PricesConfig {
                input: raw.input,
                cached_input: raw.cached_input,
                cache_write: raw.cache_write,
                output: raw.output,
                reasoning: raw.reasoning,
            },
            at,
        );
        let tiers = self.tiers(raw.tiers, at);
        Some(PriceEntry {
            provider: provider?,
            model: model?,
            relay: raw.relay,
            aliases: raw.aliases,
            price: ModelPrice::new(base?, tiers?),
        })
    }

    /// Whether `name` can be looked up: not empty, no `/` (which separates a
    /// prefix in a lookup); reports it when not.
    fn name(&mut self, name: &str, at: &[Step]) -> bool {
        let problem = if name.trim().is_empty() {
            "a name must not be empty"
        } else if name.contains('/') {
            "a name must not contain `/` (it separates a relay or provider prefix in a lookup)"
        } else {
            return true;
        };
        self.error(at, problem);
        false
    }

    /// The tiers of an entry, in ascending order of `above`.
    fn tiers(&mut self, raw: Vec<TierConfig>, entry: &[Step]) -> Option<Vec<Tier>> {
        let mut tiers: Vec<Tier> = Vec::new();
        let mut complete = true;
        for (j, tier) in raw.into_iter().enumerate() {
            let mut at = path(entry, "tiers");
            at.push(Step::Index(j));
            let above = self.required(tier.above, &path(&at, "above"));
            let last = tiers.last().map_or(0, |t: &Tier| t.above);
            if let Some(above) = above
                && above <= last
            {
                let message = if last == 0 {
                    "`above` must be more than 0".to_owned()
                } else {
                    format!("`above` must be more than the tier before's ({last})")
                };
                self.error(&path(&at, "above"), message);
            }
            let rates = self.rates(
                PricesConfig {
                    input: tier.input,
                    cached_input: tier.cached_input,
                    cache_write: tier.cache_write,
                    output: tier.output,
                    reasoning: tier.reasoning,
                },
                &at,
            );
            match (above, rates) {
                (Some(above), Some(rates)) => tiers.push(Tier { above, rates }),
                _ => complete = false,
            }
        }
        complete.then_some(tiers)
    }

    /// Prices: `input` and `output` required, each given one finite and not negative.
    fn rates(&mut self, prices: PricesConfig, at: &[Step]) -> Option<Rates> {
        for (name, value) in [
            ("input", prices.input),
            ("cached_input", prices.cached_input),
            ("cache_write", prices.cache_write),
            ("output", prices.output),
            ("reasoning", prices.reasoning),
        ] {
            if value.is_some_and(|v| !(v.is_finite() && v >= 0.0)) {
                self.error(
                    &path(at, name),
                    format!("`{name}` must be non-negative USD per million tokens"),
                );
            }
        }
        let input = self.required(prices.input, &path(at, "input"));
        let output = self.required(prices.output, &path(at, "output"));
        Some(Rates::from_usd(
            input?,
            prices.cached_input,
            prices.cache_write,
            output?,
            prices.reasoning,
        ))
    }
}

/// `at` and then the key `name`.
fn path(at: &[Step], name: &str) -> Vec<Step> {
    let mut path = at.to_vec();
    path.push(Step::Key(name.to_owned()));
    path
}
