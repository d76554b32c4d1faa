//! Prices of models and the cost of a request, to the micro-dollar.
//!
//! - [`PriceList`] (`list.rs`): a versioned list of model prices, looked up by
//!   the name a provider knows (with case, provider prefixes and date
//!   suffixes forgiven). The built-in one is `prices.yaml`, embedded in the
//!   binary; another file in the same format can stand in for it
//!   (`pricing.file` in the configuration, `switchyard prices --file`). The
//!   file's shape and its validation are in `file.rs`.
//! - [`ModelPrice`] (`price.rs`): one model's prices, with the tiers some
//!   providers charge for long prompts, and [`ModelPrice::cost`], a pure
//!   function from a request's [`Tokens`] to whole micro-dollars.
//!
//! A deployment's own `price` in the configuration wins over the list
//! ([`PriceList::for_deployment`]).

mod file;
mod list;
mod price;

pub use list::{PriceEntry, PriceList};
pub use price::{ModelPrice, Rates, Tier, Tokens};

#[cfg(test)]
mod tests;
