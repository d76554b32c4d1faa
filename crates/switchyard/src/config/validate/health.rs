//! `health_checks:` and each provider's `health_check:`, validated.

use std::collections::BTreeMap;
use std::time::Duration;

use super::Validator;
use crate::config::raw::{HealthCheckConfig, HealthChecksConfig, ProviderConfig};
use crate::config::units::HumanDuration;
use crate::config::{HealthChecks, Outlier, Probe, ProbeKind, Provider};

/// Takes each provider's `health_check:` out of the file, by provider name.
pub(super) fn take_probes(
    providers: &mut BTreeMap<String, ProviderConfig>,
) -> Vec<(String, HealthCheckConfig)> {
    providers
        .iter_mut()
        .filter_map(|(name, p)| Some((name.clone(), p.health_check.take()?)))
        .collect()
}

impl Validator<'_> {
    /// `health_checks:` with defaults, and the probe of each valid provider
    /// that asks for one.
    pub(super) fn health_checks(
        &mut self,
        raw: HealthChecksConfig,
        probes: Vec<(String, HealthCheckConfig)>,
        providers: &BTreeMap<String, Provider>,
    ) -> HealthChecks {
        let defaults = HealthCheckConfig {
            path: None,
            chat: None,
            interval: raw.interval,
            timeout: raw.timeout,
            healthy_threshold: raw.healthy_threshold,
            unhealthy_threshold: raw.unhealthy_threshold,
        };
        self.probe_timing(&defaults, &["health_checks"]);
        let outlier = self.outlier(&raw.outlier);
        let probes = probes
            .into_iter()
            .filter(|(name, _)| providers.contains_key(name))
            .filter_map(|(name, check)| {
                let probe = self.probe(&name, check, &defaults)?;
                Some((name, probe))
            })
            .collect();
        HealthChecks {
            ready_needs_every_model: raw.ready_needs_every_model.unwrap_or(true),
            outlier,
            probes,
        }
    }

    /// A provider's probe, its unset timings taken from `defaults`.
    fn probe(
        &mut self,
        provider: &str,
        check: HealthCheckConfig,
        defaults: &HealthCheckConfig,
    ) -> Option<Probe> {
        let path = ["providers", provider, "health_check"];
        self.probe_timing(&check, &path);
        let kind = match (check.path, check.chat) {
            (Some(p), None | Some(false)) if p.starts_with('/') && valid_path(&p) => {
                ProbeKind::Path(p)
            }
            (Some(p), None | Some(false)) => {
                self.error(
                    &[path[0], path[1], path[2], "path"],
                    format!(
                        "`path`: `{p}` must be a URL path starting with `/`, such as `/models`"
                    ),
                );
                return None;
            }
            (None, Some(true)) => ProbeKind::Chat,
            _ => {
                self.error(
                    &path,
                    "a `health_check` needs exactly one of `path: /models` and `chat: true`",
                );
                return None;
            }
        };
        Some(Probe {
            kind,
            interval: HumanDuration::or(
                check.interval.or(defaults.interval),
                Duration::from_secs(10),
            ),
            timeout: HumanDuration::or(check.timeout.or(defaults.timeout), Duration::from_secs(5)),
            healthy_threshold: check
                .healthy_threshold
                .or(defaults.healthy_threshold)
                .unwrap_or(2),
            unhealthy_threshold: check
                .unhealthy_threshold
                .or(defaults.unhealthy_threshold)
                .unwrap_or(3),
        })
    }

    /// Checks the timings set in `check`, found at `path`.
    fn probe_timing(&mut self, check: &HealthCheckConfig, path: &[&str]) {
        for (key, value) in [("interval", check.interval), ("timeout", check.timeout)] {
            if value.is_some_and(|d| d.0.is_zero()) {
                self.error(
                    &[path, &[key]].concat(),
                    format!("`{key}` must be more than 0"),
                );
            }
        }
        for (key, value) in [
            ("healthy_threshold", check.healthy_threshold),
            ("unhealthy_threshold", check.unhealthy_threshold),
        ] {
            if value == Some(0) {
                self.error(
                    &[path, &[key]].concat(),
                    format!("`{key}` must be at least 1"),
                );
            }
        }
    }

    /// `health_checks.outlier:` with defaults.
    fn outlier(&mut self, raw: &crate::config::raw::OutlierConfig) -> Outlier {
        let default = Outlier::default();
        let outlier = Outlier {
            consecutive_failures: raw
                .consecutive_failures
                .unwrap_or(default.consecutive_failures),
            ejection: HumanDuration::or(raw.ejection, default.ejection),
            max_ejection: HumanDuration::or(raw.max_ejection, default.max_ejection),
            max_ejected_percent: raw
                .max_ejected_percent
                .unwrap_or(default.max_ejected_percent),
        };
        let at = |key| ["health_checks", "outlier", key];
        if outlier.consecutive_failures == 0 {
            self.error(
                &at("consecutive_failures"),
                "`consecutive_failures` must be at least 1",
            );
        }
        for (key, value) in [
            ("ejection", outlier.ejection),
            ("max_ejection", outlier.max_ejection),
        ] {
            if value.is_zero() {
                self.error(&at(key), format!("`{key}` must be more than 0"));
            }
        }
        if outlier.max_ejection < outlier.ejection {
            self.error(
                &at("max_ejection"),
                "`max_ejection` must not be shorter than `ejection`",
            );
        }
        if outlier.max_ejected_percent > 100 {
            self.error(
                &at("max_ejected_percent"),
                "`max_ejected_percent` is a percentage, from 0 to 100",
            );
        }
        outlier
    }
}

/// Whether `path` can follow a base URL (no spaces, no fragment).
fn valid_path(path: &str) -> bool {
    !path.contains('#') && format!("http://h{path}").parse::<axum::http::Uri>().is_ok()
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use std::collections::HashMap;

    use super::super::check;
    use super::*;

    const PROVIDER: &str = "auth: { mode: open }\nproviders:\n  up:\n    kind: openai\n    base_url: http://127.0.0.1:1/v1\n    api_key: k\n";

    fn errors(yaml: &str) -> Vec<String> {
        let (_, problems) = check(yaml, HashMap::new(), false);
        problems
            .into_iter()
            .filter(|p| p.is_error())
            .map(|p| p.message)
            .collect()
    }

    #[test]
    fn defaults_apply_and_a_provider_overrides_them() {
        let yaml = format!(
            "{PROVIDER}    health_check: {{ path: /models, timeout: 1s }}\nhealth_checks:\n  interval: 2s\n  outlier: {{ ejection: 1m }}\n"
        );
        let (config, problems) = check(&yaml, HashMap::new(), false);
        assert!(problems.is_empty(), "{problems:?}");
        let checks = config.unwrap().health_checks;
        assert_eq!(
            checks.probes["up"],
            Probe {
                kind: ProbeKind::Path("/models".into()),
                interval: Duration::from_secs(2),
                timeout: Duration::from_secs(1),
                healthy_threshold: 2,
                unhealthy_threshold: 3,
            }
        );
        assert_eq!(
            checks.outlier,
            Outlier {
                ejection: Duration::from_secs(60),
                ..Outlier::default()
            }
        );
    }

    #[test]
    fn a_provider_without_health_check_is_not_probed() {
        let (config, _) = check(PROVIDER, HashMap::new(), false);
        assert!(config.unwrap().health_checks.probes.is_empty());
    }

    #[test]
    fn bad_values_are_refused() {
        let yaml = format!(
            "{PROVIDER}    health_check: {{ path: models, chat: true }}\nhealth_checks:\n  interval: 0s\n  unhealthy_threshold: 0\n  outlier: {{ consecutive_failures: 0, ejection: 1m, max_ejection: 30s, max_ejected_percent: 101 }}\n"
        );
        assert_eq!(
            errors(&yaml),
            [
                "`interval` must be more than 0",
                "`unhealthy_threshold` must be at least 1",
                "`consecutive_failures` must be at least 1",
                "`max_ejection` must not be shorter than `ejection`",
                "`max_ejected_percent` is a percentage, from 0 to 100",
                "a `health_check` needs exactly one of `path: /models` and `chat: true`",
            ]
        );
        let yaml = format!("{PROVIDER}    health_check: {{ path: models }}\n");
        assert_eq!(
            errors(&yaml),
            ["`path`: `models` must be a URL path starting with `/`, such as `/models`"]
        );
        let yaml = format!("{PROVIDER}    health_check: {{ chat: false }}\n");
        assert_eq!(errors(&yaml).len(), 1);
    }
}
