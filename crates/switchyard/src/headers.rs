//! Every HTTP header name the gateway reads or writes itself, in one place.

use axum::http::HeaderName;

/// `x-request-id`: the client's, else one the gateway makes; on every
/// response and every upstream request.
pub static REQUEST_ID: HeaderName = HeaderName::from_static("x-request-id");

/// `x-api-key`: the other header a client key comes in (besides `authorization`),
/// and the one an Anthropic provider's key goes in.
pub static X_API_KEY: HeaderName = HeaderName::from_static("x-api-key");

/// `api-key`: an Azure OpenAI provider's key.
pub static AZURE_API_KEY: HeaderName = HeaderName::from_static("api-key");

/// `x-goog-api-key`: a Gemini provider's key.
pub static GOOG_API_KEY: HeaderName = HeaderName::from_static("x-goog-api-key");

/// `anthropic-version`: the API version an Anthropic provider is called with.
pub static ANTHROPIC_VERSION: HeaderName = HeaderName::from_static("anthropic-version");

/// `x-switchyard-hops`: how many gateways a request has passed, so that chained
/// gateways that route back to each other stop.
pub static HOPS: HeaderName = HeaderName::from_static("x-switchyard-hops");

/// `anthropic-beta`, the one client header an Anthropic provider gets.
pub static ANTHROPIC_BETA: HeaderName = HeaderName::from_static("anthropic-beta");

/// `x-switchyard-tags`: the request's tags for the usage log and reports,
/// comma-separated.
pub static TAGS: HeaderName = HeaderName::from_static("x-switchyard-tags");

/// W3C Trace Context: the client's span, parent of the request's span when traces are on.
pub static TRACEPARENT: HeaderName = HeaderName::from_static("traceparent");

/// `x-switchyard-task`: what the request is for, as `routes:` rules read it.
pub static TASK: HeaderName = HeaderName::from_static("x-switchyard-task");

/// `x-switchyard-max-cost`: the most a request may cost, in USD.
pub static MAX_COST: HeaderName = HeaderName::from_static("x-switchyard-max-cost");

/// `x-switchyard-provider`: the provider of the deployment that served (or
/// last failed).
pub static PROVIDER: HeaderName = HeaderName::from_static("x-switchyard-provider");

/// `x-switchyard-model`: the upstream model of that deployment.
pub static MODEL: HeaderName = HeaderName::from_static("x-switchyard-model");

/// `x-switchyard-attempts`: upstream calls made for the request.
pub static ATTEMPTS: HeaderName = HeaderName::from_static("x-switchyard-attempts");

/// `x-switchyard-route`: each attempt's deployment, why it was picked, and its outcome.
pub static ROUTE: HeaderName = HeaderName::from_static("x-switchyard-route");

/// `x-switchyard-dropped-fields`: request fields a translation left out.
pub static DROPPED_FIELDS: HeaderName = HeaderName::from_static("x-switchyard-dropped-fields");

/// `x-accel-buffering: no` on event streams, so that proxies in front pass them on at once.
pub static X_ACCEL_BUFFERING: HeaderName = HeaderName::from_static("x-accel-buffering");

/// Which rate-limit figure a provider's header `name` carries, and whose name
/// it is: `(figure, family)`, figure 0 to 3 being the remaining and limit of
/// requests, then of tokens; family 0 OpenAI's `x-ratelimit-*`, 1 Anthropic's
/// `anthropic-ratelimit-*`. Matched as text, so that one pass over a
/// response's headers finds all eight names without hashing any.
pub fn provider_rate_limit(name: &str) -> Option<(usize, usize)> {
    if let Some(rest) = name.strip_prefix("x-ratelimit-") {
        let figure = match rest {
            "remaining-requests" => 0,
            "limit-requests" => 1,
            "remaining-tokens" => 2,
            "limit-tokens" => 3,
            _ => return None,
        };
        return Some((figure, 0));
    }
    let figure = match name.strip_prefix("anthropic-ratelimit-")? {
        "requests-remaining" => 0,
        "requests-limit" => 1,
        "tokens-remaining" => 2,
        "tokens-limit" => 3,
        _ => return None,
    };
    Some((figure, 1))
}

/// `x-switchyard-cache`: what the response cache made of the request
/// (`hit`, `miss`, `bypass`).
pub static CACHE: HeaderName = HeaderName::from_static("x-switchyard-cache");

/// `x-switchyard-cache-ttl`: how long the response cache keeps this
/// request's answer (seconds, or a duration such as `5m`; 0: not at all).
pub static CACHE_TTL: HeaderName = HeaderName::from_static("x-switchyard-cache-ttl");

/// `x-switchyard-cache-similarity`: on a semantic cache hit, the cosine
/// similarity of the prompt to the cached one.
pub static CACHE_SIMILARITY: HeaderName = HeaderName::from_static("x-switchyard-cache-similarity");
