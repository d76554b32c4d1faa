//! From a public model name to the deployment that serves the request.

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use axum::http::HeaderValue;

use crate::config::{Config, ProviderKind};
use crate::error::GatewayError;
use crate::mix::splitmix64;
use crate::upstream::ProviderClient;

/// One deployment, ready to call.
#[derive(Debug)]
pub struct Target {
    /// The provider's client.
    pub provider: Arc<ProviderClient>,
    /// The model name the provider knows.
    pub upstream_model: String,
    /// `x-switchyard-provider` for answers from this deployment.
    pub provider_header: HeaderValue,
    /// `x-switchyard-model` for answers from this deployment.
    pub model_header: HeaderValue,
    weight: u64,
}

#[derive(Debug)]
struct ModelRoute {
    targets: Vec<Target>,
    total_weight: u64,
}

/// Every public model and its deployments.
#[derive(Debug)]
pub struct Routes {
    models: HashMap<String, ModelRoute>,
    counter: AtomicU64,
}

impl Routes {
    /// Builds the table; deployments on providers this version cannot call are left out.
    pub fn new(config: &Config, clients: &HashMap<String, Arc<ProviderClient>>) -> Self {
        let models = config
            .models
            .values()
            .map(|model| {
                let targets: Vec<Target> = model
                    .deployments
                    .iter()
                    .filter_map(|d| {
                        let provider = clients.get(&d.provider)?;
                        if !matches!(provider.kind, ProviderKind::Openai | ProviderKind::Mock) {
                            return None;
                        }
                        Some(Target {
                            provider: provider.clone(),
                            upstream_model: d.model.clone(),
                            provider_header: header_value(&provider.name),
                            model_header: header_value(&d.model),
                            weight: u64::from(d.weight),
                        })
                    })
                    .collect();
                let total_weight = targets.iter().map(|t| t.weight).sum();
                (
                    model.name.clone(),
                    ModelRoute {
                        targets,
                        total_weight,
                    },
                )
            })
            .collect();
        Self {
            models,
            counter: AtomicU64::new(0x5eed),
        }
    }

    /// Public models none of whose deployments this version can call, sorted.
    pub fn unservable(&self) -> Vec<&str> {
        let mut names: Vec<&str> = self
            .models
            .iter()
            .filter(|(_, route)| route.total_weight == 0)
            .map(|(name, _)| name.as_str())
            .collect();
        names.sort_unstable();
        names
    }

    /// Picks a deployment of `model` at random in proportion to the weights.
    pub fn pick(&self, model: &str) -> Result<&Target, GatewayError> {
        let route = self
            .models
            .get(model)
            .ok_or_else(|| GatewayError::ModelNotFound(model.to_owned()))?;
        if route.total_weight == 0 {
            return Err(GatewayError::NoDeployment(model.to_owned()));
        }
        let mut ticket =
            splitmix64(self.counter.fetch_add(1, Ordering::Relaxed)) % route.total_weight;
        for target in &route.targets {
            if ticket < target.weight {
                return Ok(target);
            }
            ticket -= target.weight;
        }
        Err(GatewayError::NoDeployment(model.to_owned()))
    }
}

/// A header value for a name from the config (names that cannot be one show as `-`).
fn header_value(name: &str) -> HeaderValue {
    HeaderValue::from_str(name).unwrap_or(HeaderValue::from_static("-"))
}
