//! One model's prices, and the cost of a request at them.
//!
//! Prices are held as whole micro-dollars per million tokens, which is
//! pico-dollars per token: a request's cost is summed exactly in `u128` and
//! rounded up to a whole micro-dollar once, at the end (as
//! [`crate::limits::budget::cost_micros`] does).

use crate::config;
use crate::limits::budget::micros_per_mtok;

/// Pico-dollars in a micro-dollar.
const PICOS_PER_MICRO: u128 = 1_000_000;

/// The tokens of one request, as its provider reports them.
///
/// The parts are counted inside the wholes: `cached_input` and `cache_write`
/// are among the `input` tokens, `reasoning` among the `output` tokens.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Tokens {
    /// Every prompt token, those read from and written to a cache included.
    pub input: u64,
    /// Prompt tokens read from the provider's cache.
    pub cached_input: u64,
    /// Prompt tokens written to the provider's cache.
    pub cache_write: u64,
    /// Every completion token, reasoning included.
    pub output: u64,
    /// Reasoning ("thinking") tokens.
    pub reasoning: u64,
}

/// The prices of one kind of token each, in micro-USD per million tokens
/// (which is pico-USD per token).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Rates {
    /// A prompt token neither read from nor written to a cache.
    pub input: u64,
    /// A prompt token read from the cache.
    pub cached_input: u64,
    /// A prompt token written to the cache.
    pub cache_write: u64,
    /// A completion token that is not reasoning.
    pub output: u64,
    /// A reasoning token.
    pub reasoning: u64,
}

impl Rates {
    /// Prices given in USD per million tokens, with the defaults of the price
    /// list and of a deployment's `price`: `cached_input` and `cache_write`
    /// cost as `input` and `reasoning` as `output` when not given. A negative
    /// or non-finite price counts as 0 (validation refuses them first).
    pub(super) fn from_usd(
        input: f64,
        cached_input: Option<f64>,
        cache_write: Option<f64>,
        output: f64,
        reasoning: Option<f64>,
    ) -> Self {
        Self {
            input: micros_per_mtok(input),
            cached_input: micros_per_mtok(cached_input.unwrap_or(input)),
            cache_write: micros_per_mtok(cache_write.unwrap_or(input)),
            output: micros_per_mtok(output),
            reasoning: micros_per_mtok(reasoning.unwrap_or(output)),
        }
    }

    /// The cost of `tokens` in pico-dollars. Parts larger than their whole
    /// are cut to fit: cached tokens to the input, then cache writes to the
    /// input left, reasoning to the output.
    fn picos(&self, tokens: &Tokens) -> u128 {
        let cached = tokens.cached_input.min(tokens.input);
        let written = tokens.cache_write.min(tokens.input - cached);
        let fresh = tokens.input - cached - written;
        let reasoning = tokens.reasoning.min(tokens.output);
        let answer = tokens.output - reasoning;
        [
            (fresh, self.input),
            (cached, self.cached_input),
            (written, self.cache_write),
            (answer, self.output),
            (reasoning, self.reasoning),
        ]
        .into_iter()
        .fold(0u128, |sum, (count, price)| {
            sum.saturating_add(u128::from(count) * u128::from(price))
        })
    }
}

/// The prices a request pays when its prompt is longer than `above` tokens.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Tier {
    /// The prompt size (cached and written tokens included) past which the tier applies.
    pub above: u64,
    /// The prices of every token of such a request.
    pub rates: Rates,
}

/// One model's prices: base rates, and the tiers of long prompts, if any.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ModelPrice {
    base: Rates,
    /// In ascending order of `above`.
    tiers: Vec<Tier>,
}

impl ModelPrice {
    /// A price from its base rates and its tiers, in ascending order of `above`.
    pub(super) fn new(base: Rates, tiers: Vec<Tier>) -> Self {
        Self { base, tiers }
    }

    /// The rates of prompts up to the first tier.
    pub fn base(&self) -> &Rates {
        &self.base
    }

    /// The tiers of long prompts, in ascending order of size.
    pub fn tiers(&self) -> &[Tier] {
        &self.tiers
    }

    /// The rates a request with `prompt_tokens` prompt tokens (cached and
    /// written ones included) pays for all of its tokens: those of the
    /// largest tier it is above, else the base rates.
    pub fn rates(&self, prompt_tokens: u64) -> &Rates {
        self.tiers
            .iter()
            .rev()
            .find(|tier| prompt_tokens > tier.above)
            .map_or(&self.base, |tier| &tier.rates)
    }

    /// What `tokens` cost, in micro-USD rounded up once:
    ///
    /// (input − cached − written) × input + cached × cached_input
    /// + written × cache_write + (output − reasoning) × output
    /// + reasoning × reasoning,
    ///
    /// at the rates of the request's prompt size. Parts larger than their
    /// whole are cut to fit; a cost past `i64::MAX` is `i64::MAX`.
    pub fn cost(&self, tokens: &Tokens) -> i64 {
        let picos = self.rates(tokens.input).picos(tokens);
        i64::try_from(picos.div_ceil(PICOS_PER_MICRO)).unwrap_or(i64::MAX)
    }
}

impl ModelPrice {
    /// What `tokens` summed over many requests cost at the base rates, in
    /// micro-USD (a sum cannot tell which of its requests were long enough
    /// for a tier).
    pub fn base_cost(&self, tokens: &Tokens) -> i64 {
        let picos = self.base.picos(tokens);
        i64::try_from(picos.div_ceil(PICOS_PER_MICRO)).unwrap_or(i64::MAX)
    }
}

/// A deployment's own `price` from the configuration (no tiers).
impl From<config::Price> for ModelPrice {
    fn from(price: config::Price) -> Self {
        let base = Rates::from_usd(
            price.input,
            price.cached_input,
            price.cache_write,
            price.output,
            price.reasoning,
        );
        Self::new(base, Vec::new())
    }
}
