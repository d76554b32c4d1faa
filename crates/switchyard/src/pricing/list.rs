//! A versioned list of model prices, and how a model's name finds its entry.

use std::borrow::Cow;
use std::collections::HashMap;
use std::path::Path;
use std::sync::LazyLock;

use super::file;
use super::price::ModelPrice;
use crate::config::{Deployment, Problem, Problems};

/// The built-in list, embedded in the binary.
const BUILT_IN: &str = include_str!("prices.yaml");

/// The built-in list, read on first use.
static BUILT_IN_LIST: LazyLock<Result<PriceList, Problems>> =
    LazyLock::new(|| file::read(BUILT_IN, "<built-in prices>"));

/// One model's entry in a price list.
#[derive(Debug, Clone, PartialEq)]
pub struct PriceEntry {
    /// The family it belongs to (`openai`, `anthropic`, `google`, …).
    pub provider: String,
    /// The name its provider's API knows.
    pub model: String,
    /// The reseller whose price this is, if not the provider's own.
    pub relay: Option<String>,
    /// Other names of the same model at the same price.
    pub aliases: Vec<String>,
    /// Its prices.
    pub price: ModelPrice,
}

impl PriceEntry {
    /// The name it is found by: `relay/model` for a relay's price.
    pub fn name(&self) -> Cow<'_, str> {
        match &self.relay {
            Some(relay) => Cow::Owned(format!("{relay}/{}", self.model)),
            None => Cow::Borrowed(&self.model),
        }
    }
}

/// A versioned list of model prices.
///
/// A name finds its entry ([`PriceList::entry`]) in these steps, without
/// regard to case, the first that matches winning:
///
/// 1. the name as given, among the models and aliases of the list;
/// 2. with a `prefix/` left out: `openai/gpt-4.1` and `models/gemini-2.5-pro`
///    find `gpt-4.1` and `gemini-2.5-pro` (the part after the last `/`), but
///    a prefix that names a relay of the list, as in `holysheep/gpt-4.1`,
///    finds the relay's entry, and only among the relay's entries;
/// 3. with a date suffix left out as well: `gpt-4.1-2025-04-14`,
///    `claude-sonnet-4-5-20250929` and `claude-sonnet-4-5@20250929` find
///    `gpt-4.1` and `claude-sonnet-4-5` (a dated name listed itself, such as
///    `gpt-4o-2024-05-13`, is found in the first step).
#[derive(Debug, Clone)]
pub struct PriceList {
    version: String,
    entries: Vec<PriceEntry>,
    /// Lower-cased names and aliases (`relay/name` for a relay's) → entry.
    index: HashMap<String, usize>,
    /// The relays named in the list, lower-cased.
    relays: Vec<String>,
}

impl PriceList {
    /// Reads a price list in the format of the built-in one (`prices.yaml`):
    /// `version` and `models`, each with `model`, `provider`, optional `relay`
    /// and `aliases`, prices in USD per million tokens (`input`, `output`,
    /// optional `cached_input`, `cache_write`, `reasoning`) and optional
    /// `tiers` of long prompts. Every problem is reported with its line and
    /// column (the `source` of the problems is `<prices>`).
    pub fn from_yaml(text: &str) -> Result<Self, Problems> {
        file::read(text, "<prices>")
    }

    /// Reads a price list file (see [`PriceList::from_yaml`]).
    pub fn load(path: &Path) -> Result<Self, Problems> {
        let source = path.display().to_string();
        match std::fs::read_to_string(path) {
            Ok(text) => file::read(&text, &source),
            Err(e) => Err(Problems {
                source,
                list: vec![Problem::at(None, format!("cannot read the file: {e}"))],
            }),
        }
    }

    /// The list built into this binary (its problems can only be those of a
    /// broken build; a unit test reads it).
    pub fn built_in() -> Result<&'static Self, &'static Problems> {
        BUILT_IN_LIST.as_ref()
    }

    /// A list of validated entries: names and aliases unique, tiers in order.
    pub(super) fn new(version: String, entries: Vec<PriceEntry>) -> Self {
        let mut index = HashMap::new();
        let mut relays: Vec<String> = Vec::new();
        for (i, entry) in entries.iter().enumerate() {
            let relay = entry.relay.as_deref().map(str::to_lowercase);
            for name in std::iter::once(&entry.model).chain(&entry.aliases) {
                index.insert(key(relay.as_deref(), &name.to_lowercase()), i);
            }
            if let Some(relay) = relay
                && !relays.contains(&relay)
            {
                relays.push(relay);
            }
        }
        Self {
            version,
            entries,
            index,
            relays,
        }
    }

    /// The list's version, as its file gives it.
    pub fn version(&self) -> &str {
        &self.version
    }

    /// Every entry, in the order of the file.
    pub fn entries(&self) -> &[PriceEntry] {
        &self.entries
    }

    /// The entry a model's name finds (see [`PriceList`] for the steps).
    pub fn entry(&self, name: &str) -> Option<&PriceEntry> {
        let name = name.to_lowercase();
        let (relay, model) = match name.split_once('/') {
            Some((prefix, _)) => {
                let last = name.rsplit('/').next().unwrap_or_default();
                let relay = self.relays.iter().any(|r| r == prefix).then_some(prefix);
                (relay, last)
            }
            None => (None, name.as_str()),
        };
        let find = |model: &str| {
            self.index
                .get(&key(relay, model))
                .and_then(|&i| self.entries.get(i))
        };
        find(model).or_else(|| without_date(model).and_then(find))
    }

    /// The prices a model's name finds (see [`PriceList`] for the steps).
    pub fn price(&self, name: &str) -> Option<&ModelPrice> {
        self.entry(name).map(|entry| &entry.price)
    }

    /// The prices a deployment is billed at: its own `price` from the
    /// configuration when it has one, else those `provider/model` finds in
    /// this list — the model's own, or a relay's when the provider is named
    /// after a relay of the list (`holysheep`) — else none (it counts as
    /// free). A lookup allocates: resolve a deployment's price once, when
    /// the configuration is loaded, not per request.
    pub fn for_deployment(&self, deployment: &Deployment) -> Option<Cow<'_, ModelPrice>> {
        match deployment.price {
            Some(price) => Some(Cow::Owned(ModelPrice::from(price))),
            None => self
                .price(&format!("{}/{}", deployment.provider, deployment.model))
                .map(Cow::Borrowed),
        }
    }
}

/// The index key of a lower-cased name: `relay/name` for a relay's entry.
pub(super) fn key(relay: Option<&str>, name: &str) -> String {
    match relay {
        Some(relay) => format!("{relay}/{name}"),
        None => name.to_owned(),
    }
}

/// `name` without a date at its end: `-2025-04-14` (OpenAI), `-20250929`
/// (Anthropic) or `@20250929` (Vertex AI).
fn without_date(name: &str) -> Option<&str> {
    let digits = |s: &str, n: usize| s.len() == n && s.bytes().all(|b| b.is_ascii_digit());
    let dashed = || {
        let stem = name.get(..name.len().checked_sub(11)?)?;
        let date = name.get(stem.len()..)?.strip_prefix('-')?;
        let mut parts = date.split('-');
        let ymd = (parts.next()?, parts.next()?, parts.next()?);
        (digits(ymd.0, 4) && digits(ymd.1, 2) && digits(ymd.2, 2)).then_some(stem)
    };
    let compact = || {
        let stem = name.get(..name.len().checked_sub(9)?)?;
        let tail = name.get(stem.len()..)?;
        let date = tail.strip_prefix('-').or_else(|| tail.strip_prefix('@'))?;
        (digits(date, 8) && date.starts_with("20")).then_some(stem)
    };
    dashed().or_else(compact).filter(|stem| !stem.is_empty())
}
