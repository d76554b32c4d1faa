//! From a public model name to the deployment that serves the request.

pub mod load;
pub mod strategy;

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use axum::http::HeaderValue;

use crate::config::Config;
use crate::error::GatewayError;
use crate::mix::splitmix64;
use crate::upstream::{ClientError, ProviderClient, Urls};

/// One deployment, ready to call.
#[derive(Debug)]
pub struct Target {
    /// The provider's client.
    pub provider: Arc<ProviderClient>,
    /// The model name the provider knows.
    pub upstream_model: String,
    /// Where this deployment's requests go.
    pub urls: Urls,
    /// The completion token cap sent to providers that require one, when the
    /// client sets none.
    pub max_output_tokens: u32,
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
    /// Builds the table.
    pub fn new(
        config: &Config,
        clients: &HashMap<String, Arc<ProviderClient>>,
    ) -> Result<Self, (String, ClientError)> {
        let mut models = HashMap::new();
        for model in config.models.values() {
            let mut targets = Vec::new();
            for d in &model.deployments {
                let Some(provider) = clients.get(&d.provider) else {
                    continue;
                };
                targets.push(Target {
                    provider: provider.clone(),
                    upstream_model: d.model.clone(),
                    urls: provider
                        .urls(&d.model)
                        .map_err(|e| (provider.name.to_string(), e))?,
                    max_output_tokens: d.max_output_tokens,
                    provider_header: header_value(&provider.name),
                    model_header: header_value(&d.model),
                    weight: u64::from(d.weight),
                });
            }
            let total_weight = targets.iter().map(|t| t.weight).sum();
            models.insert(
                model.name.clone(),
                ModelRoute {
                    targets,
                    total_weight,
                },
            );
        }
        Ok(Self {
            models,
            counter: AtomicU64::new(0x5eed),
        })
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
