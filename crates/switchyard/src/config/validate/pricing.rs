//! `pricing:` validated: the price list read.

use std::path::Path;

use super::Validator;
use crate::config::raw::PricingConfig;
use crate::pricing::PriceList;

impl Validator<'_> {
    /// The list `pricing.file` names (a path relative to the working
    /// directory), else the built-in list; its problems are reported at
    /// `pricing.file`, each with its own place in the price list.
    pub(super) fn prices(&mut self, raw: &PricingConfig) -> Option<PriceList> {
        let read = match raw.file.as_deref().filter(|f| !f.is_empty()) {
            Some(file) => PriceList::load(Path::new(file)),
            None => PriceList::built_in().cloned().map_err(Clone::clone),
        };
        match read {
            Ok(list) => Some(list),
            Err(problems) => {
                for line in problems.to_string().lines() {
                    self.error(&["pricing", "file"], format!("`pricing.file`: {line}"));
                }
                None
            }
        }
    }
}
