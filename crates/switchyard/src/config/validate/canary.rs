//! `canary:` → [`Canary`]: each entry names a model and a tier of its
//! deployments, and the stages and bounds of the traffic shift.

use std::collections::BTreeMap;
use std::time::Duration;

use super::Validator;
use crate::config::problems::unknown;
use crate::config::raw::CanaryConfig;
use crate::config::units::HumanDuration;
use crate::config::{Canary, Model};

/// Stages of a canary that lists none, in percent.
const DEFAULT_STAGES: [u8; 5] = [5, 15, 30, 50, 100];

impl Validator<'_> {
    /// Every valid entry of `canary:`, by model.
    pub(super) fn canaries(
        &mut self,
        raw: BTreeMap<String, CanaryConfig>,
        models: &BTreeMap<String, Model>,
    ) -> BTreeMap<String, Canary> {
        raw.into_iter()
            .filter_map(|(name, entry)| {
                let canary = self.canary(&name, entry, models)?;
                Some((name, canary))
            })
            .collect()
    }

    fn canary(
        &mut self,
        name: &str,
        raw: CanaryConfig,
        models: &BTreeMap<String, Model>,
    ) -> Option<Canary> {
        let Some(model) = models.get(name) else {
            let names: Vec<&str> = models.keys().map(String::as_str).collect();
            self.error(&["canary", name], unknown("model", name, &names));
            return None;
        };
        let tier = self.required(raw.to, &["canary", name, "to"])?;
        let new = model
            .deployments
            .iter()
            .filter(|d| d.tier.as_deref() == Some(tier.as_str()))
            .count();
        if new == 0 {
            self.error(
                &["canary", name, "to"],
                format!("no deployment of `{name}` has `tier: {tier}`"),
            );
        } else if new == model.deployments.len() {
            self.error(
                &["canary", name, "to"],
                format!(
                    "every deployment of `{name}` has `tier: {tier}`: the canary needs other deployments to shift traffic from"
                ),
            );
        }
        let stages = self.stages(name, raw.stages);
        let max_error_rate = raw.max_error_rate.unwrap_or(0.05);
        if !(0.0..=1.0).contains(&max_error_rate) {
            self.error(
                &["canary", name, "max_error_rate"],
                "`max_error_rate` is a fraction of attempts, between 0 and 1",
            );
        }
        let min_requests = raw.min_requests.unwrap_or(20);
        if min_requests == 0 {
            self.error(
                &["canary", name, "min_requests"],
                "`min_requests` must be at least 1",
            );
        }
        let dwell = HumanDuration::or(raw.dwell, Duration::from_secs(300));
        let max_p99 = raw.max_p99.map(|d| d.0);
        for (key, value) in [("dwell", Some(dwell)), ("max_p99", max_p99)] {
            if value.is_some_and(|d| d.is_zero()) {
                self.error(
                    &["canary", name, key],
                    format!("`{key}` must be more than 0"),
                );
            }
        }
        Some(Canary {
            tier,
            stages,
            dwell,
            min_requests,
            max_error_rate,
            max_p99,
        })
    }

    /// The stages in percent: strictly increasing within 1..=100, the last 100.
    fn stages(&mut self, name: &str, raw: Option<Vec<u32>>) -> Vec<u8> {
        let Some(raw) = raw else {
            return DEFAULT_STAGES.to_vec();
        };
        let path = ["canary", name, "stages"];
        let stages: Vec<u8> = raw
            .iter()
            .filter_map(|s| u8::try_from(*s).ok())
            .filter(|s| (1..=100).contains(s))
            .collect();
        if stages.len() != raw.len() {
            self.error(&path, "each stage is a percent of requests, from 1 to 100");
        } else if stages.windows(2).any(|w| w[0] >= w[1]) {
            self.error(&path, "`stages` must be strictly increasing");
        } else if stages.last() != Some(&100) {
            self.error(
                &path,
                "the last stage must be 100 (every request on the new set)",
            );
        }
        stages
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use std::collections::HashMap;

    use crate::config::validate::check;

    /// Model `m` on an old and a new deployment, then `canary:` as given.
    fn check_canary(canary: &str) -> (Option<crate::config::Config>, Vec<String>) {
        let text = format!(
            "providers:\n  up: {{ kind: openai, base_url: http://127.0.0.1:1, api_key: k }}\nmodels:\n  m:\n    deployments:\n      - {{ provider: up, model: old }}\n      - {{ provider: up, model: new, tier: next }}\ncanary:\n{canary}"
        );
        let (config, problems) = check(&text, HashMap::new(), false);
        let errors = problems
            .into_iter()
            .filter(|p| p.is_error())
            .map(|p| p.message)
            .collect();
        (config, errors)
    }

    #[test]
    fn a_canary_gets_defaults_for_what_it_leaves_out() {
        let (config, errors) = check_canary("  m: { to: next }\n");
        assert!(errors.is_empty(), "{errors:?}");
        let canary = &config.unwrap().canary["m"];
        assert_eq!(canary.tier, "next");
        assert_eq!(canary.stages, [5, 15, 30, 50, 100]);
        assert_eq!(canary.dwell.as_secs(), 300);
        assert_eq!(canary.min_requests, 20);
        assert!((canary.max_error_rate - 0.05).abs() < 1e-9);
        assert_eq!(canary.max_p99, None);
    }

    #[test]
    fn every_mistake_of_a_canary_is_reported() {
        let cases = [
            ("  n: { to: next }\n", "unknown model `n`"),
            ("  m: { stages: [100] }\n", "missing key `to`"),
            (
                "  m: { to: later }\n",
                "no deployment of `m` has `tier: later`",
            ),
            ("  m: { to: next, stages: [0, 100] }\n", "from 1 to 100"),
            ("  m: { to: next, stages: [5, 300] }\n", "from 1 to 100"),
            (
                "  m: { to: next, stages: [50, 20, 100] }\n",
                "strictly increasing",
            ),
            (
                "  m: { to: next, stages: [5, 50] }\n",
                "the last stage must be 100",
            ),
            (
                "  m: { to: next, max_error_rate: 1.5 }\n",
                "between 0 and 1",
            ),
            (
                "  m: { to: next, dwell: 0s }\n",
                "`dwell` must be more than 0",
            ),
            (
                "  m: { to: next, max_p99: 0s }\n",
                "`max_p99` must be more than 0",
            ),
            ("  m: { to: next, min_requests: 0 }\n", "at least 1"),
            ("  m: { to: next, wait: 5m }\n", "unknown key `wait`"),
        ];
        for (canary, expected) in cases {
            let (config, errors) = check_canary(canary);
            assert!(config.is_none(), "{canary}");
            assert!(
                errors.iter().any(|e| e.contains(expected)),
                "{canary}: {errors:?}"
            );
        }
    }

    #[test]
    fn a_canary_needs_an_old_set_to_shift_from() {
        let text = "providers:\n  up: { kind: openai, base_url: http://127.0.0.1:1, api_key: k }\nmodels:\n  m:\n    deployments:\n      - { provider: up, model: new, tier: next }\ncanary:\n  m: { to: next }\n";
        let (config, problems) = check(text, HashMap::new(), false);
        assert!(config.is_none());
        assert!(
            problems.iter().any(|p| p
                .message
                .contains("every deployment of `m` has `tier: next`")),
            "{problems:?}"
        );
    }
}
