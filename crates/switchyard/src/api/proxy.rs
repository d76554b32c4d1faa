//! The proxy endpoints — OpenAI's (`/v1/chat/completions`, `/v1/completions`,
//! `/v1/embeddings`) and Anthropic's (`/v1/messages`) — and `GET /v1/models`.

use std::sync::Arc;

use axum::extract::State;
use axum::http::header;
use axum::response::{IntoResponse, Response};
use bytes::Bytes;
use switchyard_providers::openai::Endpoint;

use super::{AppState, Authenticated};
use crate::error::Dialect;
use crate::keys::Tenant;
use crate::request::Principal;

/// `GET /v1/models`: the configured public models, those the caller's key
/// may use.
pub async fn models(
    State(state): State<Arc<AppState>>,
    Authenticated(principal): Authenticated,
) -> Response {
    let all = state.settings.load().models_body.clone();
    let body = match &principal {
        Principal::VirtualKey(tenant) if !tenant.allows_all() => allowed_models(&all, tenant),
        _ => all,
    };
    ([(header::CONTENT_TYPE, "application/json")], body).into_response()
}

/// The models list `all` with only the models `tenant` may use.
fn allowed_models(all: &Bytes, tenant: &Tenant) -> Bytes {
    let Ok(mut list) = serde_json::from_slice::<serde_json::Value>(all) else {
        return all.clone();
    };
    if let Some(data) = list.get_mut("data").and_then(|d| d.as_array_mut()) {
        data.retain(|model| {
            model
                .get("id")
                .and_then(|id| id.as_str())
                .is_some_and(|id| tenant.allows(id))
        });
    }
    Bytes::from(list.to_string())
}

/// A proxy endpoint, in the dialect its clients speak.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ProxyEndpoint {
    /// An OpenAI endpoint.
    OpenAi(Endpoint),
    /// Anthropic's `POST /v1/messages`.
    Messages,
}

impl ProxyEndpoint {
    /// What a request to it is, to the response cache.
    pub fn cache_kind(self) -> crate::cache::Kind {
        use crate::cache::Kind;
        match self {
            Self::OpenAi(Endpoint::ChatCompletions) => Kind::CHAT,
            Self::OpenAi(Endpoint::Completions) => Kind::COMPLETIONS,
            Self::OpenAi(Endpoint::Embeddings) => Kind::EMBEDDINGS,
            Self::Messages => Kind::MESSAGES,
        }
    }

    /// The proxy endpoint at `path`, if it is one.
    pub fn at(path: &str) -> Option<Self> {
        match path {
            "/v1/chat/completions" => Some(Self::OpenAi(Endpoint::ChatCompletions)),
            "/v1/completions" => Some(Self::OpenAi(Endpoint::Completions)),
            "/v1/embeddings" => Some(Self::OpenAi(Endpoint::Embeddings)),
            "/v1/messages" => Some(Self::Messages),
            _ => None,
        }
    }

    /// The access log's name for it.
    pub fn name(self) -> &'static str {
        match self {
            Self::OpenAi(Endpoint::ChatCompletions) => "chat_completions",
            Self::OpenAi(Endpoint::Completions) => "completions",
            Self::OpenAi(Endpoint::Embeddings) => "embeddings",
            Self::Messages => "messages",
        }
    }

    /// The dialect of its clients (and so of its errors).
    pub fn dialect(self) -> Dialect {
        match self {
            Self::OpenAi(_) => Dialect::OpenAi,
            Self::Messages => Dialect::Anthropic,
        }
    }
}
