//! Active health probes: one task per provider with a `health_check:`,
//! probing every `interval` from a jittered start (so that providers and
//! replicas do not probe in lockstep), until the gateway stops.
//!
//! A `path` probe is one `GET base_url + path` whose result applies to all
//! the provider's deployments; a `chat` probe is a one-token request to each
//! deployment, in the provider's wire format. Probes pass no breaker and are
//! not counted as traffic.

use std::collections::BTreeMap;
use std::hash::{BuildHasher, RandomState};
use std::sync::Arc;
use std::time::Duration;

use axum::http::Uri;
use bytes::Bytes;
use switchyard_providers::openai::chat::ChatRequest;
use switchyard_providers::{anthropic, gemini};
use tokio::time::{Instant, MissedTickBehavior};
use tokio_util::sync::CancellationToken;

use super::Routes;
use super::health::{Health, ProbeResult, log};
use crate::config::{HealthChecks, Probe, ProbeKind};
use crate::upstream::{ClientError, ProviderClient, Wire};

/// One provider's prober.
#[derive(Debug)]
struct Prober {
    provider: Arc<ProviderClient>,
    probe: Probe,
    checks: Vec<Check>,
}

/// One request of a probing round, and the deployments its result is for.
#[derive(Debug)]
struct Check {
    uri: Uri,
    /// The chat request; `None` for a `GET`.
    body: Option<Bytes>,
    members: Vec<Member>,
}

/// A deployment, as its probe's result updates it.
#[derive(Debug)]
struct Member {
    /// The models it serves (its health is the deployment's, whatever the model).
    models: Vec<String>,
    deployment: String,
    health: Arc<Health>,
}

/// Starts the probers of the providers in `checks.probes` that serve a model,
/// stopped by `stop`. Fails on a probe URL that cannot be built.
pub fn spawn(
    routes: &Routes,
    checks: &HealthChecks,
    stop: &CancellationToken,
) -> Result<(), (String, ClientError)> {
    for (name, probe) in &checks.probes {
        let prober = prober(routes, name, probe).map_err(|e| (name.clone(), e))?;
        if let Some(prober) = prober {
            tokio::spawn(prober.run(stop.clone()));
        }
    }
    Ok(())
}

/// The prober of provider `name`, if a model has a deployment on it.
fn prober(routes: &Routes, name: &str, probe: &Probe) -> Result<Option<Prober>, ClientError> {
    // (deployment name) → its check, in a stable order.
    let mut checks: BTreeMap<String, Check> = BTreeMap::new();
    let mut provider = None;
    for model in routes.models() {
        for target in model.targets().iter().filter(|t| &*t.provider.name == name) {
            provider = Some(target.provider.clone());
            let key = match probe.kind {
                ProbeKind::Path(_) => String::new(),
                ProbeKind::Chat => target.name.clone(),
            };
            let check = match checks.entry(key) {
                std::collections::btree_map::Entry::Occupied(entry) => entry.into_mut(),
                std::collections::btree_map::Entry::Vacant(entry) => {
                    entry.insert(match &probe.kind {
                        ProbeKind::Path(path) => Check {
                            uri: target.provider.url(path)?,
                            body: None,
                            members: Vec::new(),
                        },
                        ProbeKind::Chat => Check {
                            uri: target.urls.chat.clone(),
                            body: Some(chat_body(target.provider.wire, &target.upstream_model)?),
                            members: Vec::new(),
                        },
                    })
                }
            };
            // Models that share the deployment share its health: probed once.
            match check
                .members
                .iter_mut()
                .find(|m| Arc::ptr_eq(&m.health, &target.health))
            {
                Some(member) => member.models.push(model.name.clone()),
                None => check.members.push(Member {
                    models: vec![model.name.clone()],
                    deployment: target.name.clone(),
                    health: target.health.clone(),
                }),
            }
        }
    }
    Ok(provider.map(|provider| Prober {
        provider,
        probe: probe.clone(),
        checks: checks.into_values().collect(),
    }))
}

/// A one-token chat request ("ping", `max_tokens` 1) to `model` in the `wire`
/// format, built as live requests are translated.
fn chat_body(wire: Wire, model: &str) -> Result<Bytes, ClientError> {
    let invalid = |e: &dyn std::fmt::Display| {
        ClientError::Http(format!("cannot build the probe request: {e}"))
    };
    let request: ChatRequest = serde_json::from_value(serde_json::json!({
        "model": model,
        "max_tokens": 1,
        "messages": [{"role": "user", "content": "ping"}],
    }))
    .map_err(|e| invalid(&e))?;
    let body = match wire {
        Wire::OpenAi => serde_json::to_vec(&request).map_err(|e| invalid(&e))?,
        Wire::Anthropic => {
            anthropic::encode_request(&request, model, 1)
                .map_err(|e| invalid(&e))?
                .body
        }
        Wire::Gemini => {
            gemini::encode_request(&request)
                .map_err(|e| invalid(&e))?
                .body
        }
    };
    Ok(Bytes::from(body))
}

impl Prober {
    /// Probes every `interval` until `stop`; the first round comes after a
    /// random part of an interval.
    async fn run(self, stop: CancellationToken) {
        let interval = self.probe.interval;
        let jitter = RandomState::new().hash_one(&*self.provider.name)
            % u64::try_from(interval.as_millis())
                .unwrap_or(u64::MAX)
                .max(1);
        let start = Instant::now() + Duration::from_millis(jitter);
        let mut ticks = tokio::time::interval_at(start, interval);
        ticks.set_missed_tick_behavior(MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                () = stop.cancelled() => return,
                _ = ticks.tick() => {}
            }
            tokio::select! {
                () = stop.cancelled() => return,
                _ = futures_util::future::join_all(self.checks.iter().map(|c| self.check(c))) => {}
            }
        }
    }

    /// Sends one check and hands its result to its deployments.
    async fn check(&self, check: &Check) {
        let sent = Instant::now();
        let outcome = self
            .provider
            .probe(&check.uri, check.body.clone(), self.probe.timeout)
            .await;
        let at = Instant::now();
        // A rate-limited probe says the provider is there but busy: neither way.
        if let Err(e) = &outcome
            && e.class() == Some(crate::config::FailureClass::RateLimited)
        {
            tracing::debug!(provider = %self.provider.name, error = %e, "health probe rate limited; not counted");
            return;
        }
        let result = ProbeResult {
            ok: outcome.is_ok(),
            latency: at.saturating_duration_since(sent),
            at,
            error: outcome.err().map(|e| e.to_string()),
        };
        for member in &check.members {
            let transition = member.health.probed(
                result.clone(),
                self.probe.healthy_threshold,
                self.probe.unhealthy_threshold,
            );
            if let Some(transition) = transition {
                for model in &member.models {
                    log(
                        model,
                        &member.deployment,
                        transition,
                        result.error.as_deref(),
                    );
                }
            }
        }
    }
}
